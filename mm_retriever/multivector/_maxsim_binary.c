/* MaxSim of a float query against sign-bit page vectors (+-1 per dimension), any CPU.
 * Built on first use by mm_retriever/maxsim_native.py (`cc -O3 -march=native`), loaded through
 * ctypes; the caller splits pages over threads.
 *
 * A page vector is W packed bytes (np.packbits order: bit 7 of byte w is dimension 8 w). The
 * query comes as a lookup table lut[w][b][G][16] = sum over the 8 dimensions of byte w of
 * q[t][d] * (+1 if the bit of d is set in b, else -1), for every query token t (16 per group).
 * A page vector's similarity to every query token is then W table rows added up (vector adds of
 * 16 floats), folded at once into a running max per token; nothing page-sized is written.
 * The result equals the float dot products of the query with the unpacked +-1 vectors, up to
 * float32 summation order.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4))); /* the table: any alignment */

static inline vf vmax(vf a, vf b) {
    vi gt = a > b;
    return (vf)(((vi)a & gt) | ((vi)b & ~gt));
}

/* Four page vectors at a time (independent table loads in flight), G groups of 16 tokens. */
static inline __attribute__((always_inline)) void page_max(const uint8_t *page, int64_t L,
                                                           int64_t W, const vfu *table, int G,
                                                           vf *m) {
    int64_t t = 0;
    for (; t + 4 <= L; t += 4) {
        const uint8_t *v0 = page + t * W, *v1 = v0 + W, *v2 = v1 + W, *v3 = v2 + W;
        for (int g = 0; g < G; g++) {
            vf a0 = table[(int64_t)v0[0] * G + g], a1 = table[(int64_t)v1[0] * G + g];
            vf a2 = table[(int64_t)v2[0] * G + g], a3 = table[(int64_t)v3[0] * G + g];
            for (int64_t w = 1; w < W; w++) {
                const vfu *row = table + w * 256 * G + g;
                a0 += row[(int64_t)v0[w] * G];
                a1 += row[(int64_t)v1[w] * G];
                a2 += row[(int64_t)v2[w] * G];
                a3 += row[(int64_t)v3[w] * G];
            }
            m[g] = vmax(vmax(m[g], vmax(a0, a1)), vmax(a2, a3));
        }
    }
    for (; t < L; t++) {
        const uint8_t *v = page + t * W;
        for (int g = 0; g < G; g++) {
            vf a = table[(int64_t)v[0] * G + g];
            for (int64_t w = 1; w < W; w++) a += table[(w * 256 + v[w]) * G + g];
            m[g] = vmax(m[g], a);
        }
    }
}

int mm_maxsim_binary(const uint8_t *values, int64_t W, const int64_t *offsets, const int64_t *rows,
                     int64_t n_rows, const float *lut, int G, int Q, float *out) {
    vf *m = aligned_alloc(64, (size_t)G * sizeof(vf));
    if (!m) return -1;
    const vfu *table = (const vfu *)lut; /* [W][256][G] */
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t start = offsets[rows[r]], L = offsets[rows[r] + 1] - start;
        if (L <= 0) {
            out[r] = 0.0f;
            continue;
        }
        for (int g = 0; g < G; g++)
            for (int l = 0; l < 16; l++) m[g][l] = -INFINITY;
        const uint8_t *page = values + start * W;
        if (G == 1) /* constant G: the group loop unrolls, accumulators stay in registers */
            page_max(page, L, W, table, 1, m);
        else if (G == 2)
            page_max(page, L, W, table, 2, m);
        else
            page_max(page, L, W, table, G, m);
        float s = 0.0f;
        for (int k = 0; k < Q; k++) s += m[k / 16][k % 16];
        out[r] = s;
    }
    free(m);
    return 0;
}
