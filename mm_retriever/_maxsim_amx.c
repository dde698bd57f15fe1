/* Exact MaxSim on Intel AMX (bf16 tiles, float32 accumulation), built on first use by
 * mm_retriever/maxsim_native.py with the system C compiler and loaded through ctypes.
 *
 * Pages are rows of one flat [T_total, D] bfloat16 or float16 matrix; page i is
 * values[offsets[i]:offsets[i+1]]. Query tokens of all queries are concatenated, padded to
 * G groups of 16 and pre-packed by the caller in AMX's VNNI layout for B tiles:
 * B[g][s][kk][n][p] = q[16g + n][32s + 2kk + p] (g < G, s < D/32, kk < 16, n < 16, p < 2).
 * A query given in float32 is split into bf16 hi + lo parts (Bh, Bl) so its precision is kept;
 * float16 page vectors are split exactly into bf16 hi + lo parts on the fly (an fp16 significand
 * has 11 bits, hi + lo hold 16). Every product of two bf16 numbers is exact in float32, so the
 * only roundings are float32 accumulation and the 16-bit (hi + lo) split of a float32 query.
 *
 * Per page: 16 page vectors at a time, C[16 vectors x 16 query tokens] tiles are computed and
 * folded into a running max per query token (the similarity tile never leaves L1); at the end
 * of the page the maxima are summed per query. Nothing page-sized is written.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define GROUPS_PER_PASS 4

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_config;

/* Ask the kernel for permission to use AMX tile data; 0 on success. */
int mm_amx_init(void) {
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return -1;
    return 0;
}

static void load_config(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* float16 -> exact bf16 hi + lo split of a [16, D] block (rows beyond `rows` are zero). */
static void split_fp16(const uint16_t *src, int rows, int64_t D, uint16_t *hi, uint16_t *lo) {
    for (int r = 0; r < 16; r++) {
        for (int64_t d = 0; d < D; d += 16) {
            __m512 x = _mm512_setzero_ps();
            if (r < rows) x = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + r * D + d)));
            __m256bh h = _mm512_cvtneps_pbh(x);
            __m512 hf = _mm512_cvtpbh_ps(h);
            __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(x, hf));
            _mm256_storeu_si256((__m256i *)(hi + r * D + d), (__m256i)h);
            _mm256_storeu_si256((__m256i *)(lo + r * D + d), (__m256i)l);
        }
    }
}

/* C[j] += A(tile 4) . B(j) for the groups of this pass; B tiles are loaded into tile 6. */
#define DOT_GROUPS(Bbase, Atile)                                            \
    do {                                                                    \
        _tile_loadd(6, (Bbase) + ((int64_t)(g0 + 0) * S + s) * 512, 64);    \
        _tile_dpbf16ps(0, Atile, 6);                                        \
        if (ng > 1) {                                                       \
            _tile_loadd(6, (Bbase) + ((int64_t)(g0 + 1) * S + s) * 512, 64);\
            _tile_dpbf16ps(1, Atile, 6);                                    \
        }                                                                   \
        if (ng > 2) {                                                       \
            _tile_loadd(6, (Bbase) + ((int64_t)(g0 + 2) * S + s) * 512, 64);\
            _tile_dpbf16ps(2, Atile, 6);                                    \
        }                                                                   \
        if (ng > 3) {                                                       \
            _tile_loadd(6, (Bbase) + ((int64_t)(g0 + 3) * S + s) * 512, 64);\
            _tile_dpbf16ps(3, Atile, 6);                                    \
        }                                                                   \
    } while (0)

static inline void fold_max(float *cbuf, int rows, float *m) {
    __m512 mx = _mm512_loadu_ps(m);
    for (int r = 0; r < rows; r++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(cbuf + r * 16));
    _mm512_storeu_ps(m, mx);
}

/* Running max over one page's vectors for every padded query token (m[G*16]). */
static void page_max(const uint16_t *v, int64_t L, int64_t D, int is_fp16, const uint16_t *Bh,
                     const uint16_t *Bl, int G, int use_lo, float *m, uint16_t *scratch,
                     uint16_t *hi, uint16_t *lo, float *cbuf) {
    const int64_t S = D / 32;
    for (int i = 0; i < G * 16; i++) m[i] = -INFINITY;
    for (int g0 = 0; g0 < G; g0 += GROUPS_PER_PASS) {
        int ng = G - g0 < GROUPS_PER_PASS ? G - g0 : GROUPS_PER_PASS;
        for (int64_t t = 0; t < L; t += 16) {
            int rows = L - t < 16 ? (int)(L - t) : 16;
            const uint16_t *a = v + t * D;
            const int64_t stride = D * 2;
            if (is_fp16) {
                split_fp16(a, rows, D, hi, lo);
            } else if (rows < 16) {
                memset(scratch, 0, 16 * D * 2);
                memcpy(scratch, a, rows * D * 2);
                a = scratch;
            }
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t s = 0; s < S; s++) {
                if (is_fp16) {
                    _tile_loadd(4, hi + 32 * s, stride);
                    _tile_loadd(5, lo + 32 * s, stride);
                    DOT_GROUPS(Bh, 4);
                    DOT_GROUPS(Bh, 5);
                    if (use_lo) {
                        DOT_GROUPS(Bl, 4);
                        DOT_GROUPS(Bl, 5);
                    }
                } else {
                    _tile_loadd(4, a + 32 * s, stride);
                    DOT_GROUPS(Bh, 4);
                    if (use_lo) DOT_GROUPS(Bl, 4);
                }
            }
            _tile_stored(0, cbuf, 64);
            fold_max(cbuf, rows, m + (g0 + 0) * 16);
            if (ng > 1) {
                _tile_stored(1, cbuf, 64);
                fold_max(cbuf, rows, m + (g0 + 1) * 16);
            }
            if (ng > 2) {
                _tile_stored(2, cbuf, 64);
                fold_max(cbuf, rows, m + (g0 + 2) * 16);
            }
            if (ng > 3) {
                _tile_stored(3, cbuf, 64);
                fold_max(cbuf, rows, m + (g0 + 3) * 16);
            }
        }
    }
}

/* Scores of n_queries queries against pages rows[0..n_rows):
 * out[j * out_stride + r] = sum_{k in [qoff[j], qoff[j+1])} max_t <q_k, page_t>  (0 if empty).
 * Returns 0, or -1 when scratch memory cannot be had. */
int mm_maxsim_amx(const uint16_t *values, int is_fp16, int64_t D, const int64_t *offsets,
                  const int64_t *rows, int64_t n_rows, const uint16_t *Bh, const uint16_t *Bl,
                  int G, int use_lo, const int64_t *qoff, int n_queries, float *out,
                  int64_t out_stride) {
    float *m = aligned_alloc(64, (size_t)G * 16 * sizeof(float));
    uint16_t *buf = aligned_alloc(64, (size_t)3 * 16 * D * 2);
    float *cbuf = aligned_alloc(64, 16 * 16 * sizeof(float));
    if (!m || !buf || !cbuf) {
        free(m);
        free(buf);
        free(cbuf);
        return -1;
    }
    load_config();
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t row = rows[r];
        const int64_t start = offsets[row], L = offsets[row + 1] - start;
        if (L <= 0) {
            for (int j = 0; j < n_queries; j++) out[j * out_stride + r] = 0.0f;
            continue;
        }
        page_max(values + start * D, L, D, is_fp16, Bh, Bl, G, use_lo, m, buf, buf + 16 * D,
                 buf + 32 * D, cbuf);
        for (int j = 0; j < n_queries; j++) {
            float s = 0.0f;
            for (int64_t k = qoff[j]; k < qoff[j + 1]; k++) s += m[k];
            out[j * out_stride + r] = s;
        }
    }
    _tile_release();
    free(m);
    free(buf);
    free(cbuf);
    return 0;
}
