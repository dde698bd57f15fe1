/* Exact MaxSim for any CPU (x86-64 AVX2/AVX-512, aarch64 NEON): float32 math, built on first use
 * by mm_retriever/maxsim_native.py with `cc -O3 -march=native` and loaded through ctypes.
 *
 * Same contract as _maxsim_amx.c, but the query is passed as float32 in a [D][G][16] layout
 * (qT[(d * G + g) * 16 + l] = q[16 g + l][d]). Page vectors (bfloat16, float16 or int8) are
 * converted to float32 exactly, 8 at a time, and multiplied against 16 query tokens per vector
 * register (GCC vector extensions: the compiler picks the widest SIMD the CPU has); each block's
 * similarities are folded into a running max at once, so nothing page-sized is written.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

enum { KIND_BF16 = 0, KIND_FP16 = 1, KIND_INT8 = 2 };
#define BLOCK 8

static inline int64_t elem_bytes(int kind) { return kind == KIND_INT8 ? 1 : 2; }

static inline vf vmax(vf a, vf b) {
    vi gt = a > b;
    return (vf)(((vi)a & gt) | ((vi)b & ~gt));
}

static void to_float(const char *src, int kind, int64_t D, float *dst) {
    if (kind == KIND_BF16) {
        const uint16_t *s = (const uint16_t *)src;
        for (int64_t d = 0; d < D; d++) {
            uint32_t bits = (uint32_t)s[d] << 16;
            memcpy(dst + d, &bits, 4);
        }
    } else if (kind == KIND_FP16) {
        const _Float16 *s = (const _Float16 *)src;
        for (int64_t d = 0; d < D; d++) dst[d] = (float)s[d];
    } else {
        const int8_t *s = (const int8_t *)src;
        for (int64_t d = 0; d < D; d++) dst[d] = (float)s[d];
    }
}

int mm_maxsim_generic(const void *values, int kind, int64_t D, const int64_t *offsets,
                      const int64_t *rows, int64_t n_rows, const float *qT, int G,
                      const int64_t *qoff, int n_queries, float *out, int64_t out_stride) {
    float *buf = aligned_alloc(64, (size_t)BLOCK * D * sizeof(float) + 64);
    vf *m = aligned_alloc(64, (size_t)G * sizeof(vf));
    if (!buf || !m) {
        free(buf);
        free(m);
        return -1;
    }
    const int64_t row_bytes = D * elem_bytes(kind);
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t start = offsets[rows[r]], L = offsets[rows[r] + 1] - start;
        const char *page = (const char *)values + start * row_bytes;
        if (L <= 0) {
            for (int j = 0; j < n_queries; j++) out[j * out_stride + r] = 0.0f;
            continue;
        }
        for (int g = 0; g < G; g++)
            for (int l = 0; l < 16; l++) m[g][l] = -INFINITY;
        for (int64_t t = 0; t < L; t += BLOCK) {
            int nt = L - t < BLOCK ? (int)(L - t) : BLOCK;
            for (int k = 0; k < BLOCK; k++) /* a short block repeats its first vector */
                to_float(page + (t + (k < nt ? k : 0)) * row_bytes, kind, D, buf + k * D);
            for (int g = 0; g < G; g++) {
                vf a[BLOCK] = {0};
                const float *q = qT + (int64_t)g * 16;
                for (int64_t d = 0; d < D; d++) {
                    vf qv;
                    memcpy(&qv, q + d * G * 16, sizeof(vf));
                    for (int k = 0; k < BLOCK; k++) a[k] += qv * buf[k * D + d];
                }
                vf best = m[g];
                for (int k = 0; k < BLOCK; k++) best = vmax(best, a[k]);
                m[g] = best;
            }
        }
        for (int j = 0; j < n_queries; j++) {
            float s = 0.0f;
            for (int64_t k = qoff[j]; k < qoff[j + 1]; k++) s += m[k / 16][k % 16];
            out[j * out_stride + r] = s;
        }
    }
    free(buf);
    free(m);
    return 0;
}
