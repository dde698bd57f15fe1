/* Exact MaxSim on Intel AMX (bf16 tiles, float32 accumulation), built on first use by
 * mm_retriever/maxsim_native.py with the system C compiler and loaded through ctypes.
 *
 * Pages are rows of one flat [T_total, D] bfloat16, float16 or int8 matrix (`kind` 0, 1, 2;
 * int8 codes are converted to bf16 exactly, any scale is applied by the caller); page i is
 * values[offsets[i]:offsets[i+1]]. Query tokens of all queries are concatenated, padded to
 * G groups of 16 (G even) and pre-packed by the caller in AMX's VNNI layout for B tiles:
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

enum { KIND_BF16 = 0, KIND_FP16 = 1, KIND_INT8 = 2 };

static inline int64_t elem_bytes(int kind) { return kind == KIND_INT8 ? 1 : 2; }

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

/* float16 -> exact bf16 hi + lo split of a [16, D] block (rows beyond `rows` are zero).
 * hi = x with the low 16 bits of its float32 form cleared (8 significant bits), lo = x - hi
 * (at most 3 more bits): both are exact bf16 values, packed 32 at a time. */
static void split_fp16(const uint16_t *src, int rows, int64_t D, uint16_t *hi, uint16_t *lo) {
    const __m512i mask = _mm512_set1_epi32((int)0xFFFF0000u);
    for (int r = 0; r < rows; r++) {
        for (int64_t d = 0; d < D; d += 32) {
            const uint16_t *p = src + r * D + d;
            __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
            __m512 x1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 16)));
            __m512 h0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x0), mask));
            __m512 h1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x1), mask));
            __m512bh h = _mm512_cvtne2ps_pbh(h1, h0);
            __m512bh l = _mm512_cvtne2ps_pbh(_mm512_sub_ps(x1, h1), _mm512_sub_ps(x0, h0));
            _mm512_storeu_si512((void *)(hi + r * D + d), (__m512i)h);
            _mm512_storeu_si512((void *)(lo + r * D + d), (__m512i)l);
        }
    }
    if (rows < 16) {
        memset(hi + rows * D, 0, (16 - rows) * D * 2);
        memset(lo + rows * D, 0, (16 - rows) * D * 2);
    }
}

/* int8 codes -> bf16 (exact: |code| <= 128 fits a bf16 significand) of a [16, D] block. */
static void int8_to_bf16(const int8_t *src, int rows, int64_t D, uint16_t *hi) {
    for (int r = 0; r < rows; r++) {
        for (int64_t d = 0; d < D; d += 32) {
            const int8_t *p = src + r * D + d;
            __m512 x0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
            __m512 x1 =
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 16))));
            _mm512_storeu_si512((void *)(hi + r * D + d), (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
        }
    }
    if (rows < 16) memset(hi + rows * D, 0, (16 - rows) * D * 2);
}

static inline void fold_max(const float *cbuf, int rows, float *m) {
    /* max over `rows` rows of a 16 x 16 tile, four independent chains */
    __m512 a = _mm512_loadu_ps(m), b = a, c = a, d = a;
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        a = _mm512_max_ps(a, _mm512_load_ps(cbuf + (r + 0) * 16));
        b = _mm512_max_ps(b, _mm512_load_ps(cbuf + (r + 1) * 16));
        c = _mm512_max_ps(c, _mm512_load_ps(cbuf + (r + 2) * 16));
        d = _mm512_max_ps(d, _mm512_load_ps(cbuf + (r + 3) * 16));
    }
    for (; r < rows; r++) a = _mm512_max_ps(a, _mm512_load_ps(cbuf + r * 16));
    _mm512_storeu_ps(m, _mm512_max_ps(_mm512_max_ps(a, b), _mm512_max_ps(c, d)));
}

/* A 16-vector block of a page as bf16 tiles: `hi` (and `lo` for float16 pages), zero-padded. */
typedef struct {
    const uint16_t *hi, *lo;
    int rows;
} block;

static block make_block(const char *v, int64_t t, int64_t L, int64_t D, int kind,
                        uint16_t *hi_buf, uint16_t *lo_buf) {
    block b = {hi_buf, lo_buf, 0};
    if (t >= L) {
        memset(hi_buf, 0, 16 * D * 2);
        memset(lo_buf, 0, 16 * D * 2);
        return b;
    }
    b.rows = L - t < 16 ? (int)(L - t) : 16;
    if (kind == KIND_FP16) {
        split_fp16((const uint16_t *)v + t * D, b.rows, D, hi_buf, lo_buf);
    } else if (kind == KIND_INT8) {
        int8_to_bf16((const int8_t *)v + t * D, b.rows, D, hi_buf);
    } else if (b.rows < 16) {
        memset(hi_buf, 0, 16 * D * 2);
        memcpy(hi_buf, (const uint16_t *)v + t * D, b.rows * D * 2);
    } else {
        b.hi = (const uint16_t *)v + t * D; /* full bf16 block: tiles load straight from the page */
    }
    return b;
}

/* C tiles 0..3 = (block x, group y) for x, y in {0, 1}: A tiles 4, 5; B tiles 6, 7. */
#define TDP4()                      \
    do {                            \
        _tile_dpbf16ps(0, 4, 6);    \
        _tile_dpbf16ps(1, 4, 7);    \
        _tile_dpbf16ps(2, 5, 6);    \
        _tile_dpbf16ps(3, 5, 7);    \
    } while (0)

/* Running max over one page's vectors for every padded query token (m[G*16], G even). */
static void page_max(const char *v, int64_t L, int64_t D, int kind, const uint16_t *Bh,
                     const uint16_t *Bl, int G, int use_lo, float *m, uint16_t *bufs, float *cbuf) {
    const int64_t S = D / 32, stride = D * 2;
    for (int i = 0; i < G * 16; i++) m[i] = -INFINITY;
    for (int64_t t = 0; t < L; t += 32) {
        /* prefetch the page 64 vectors ahead */
        const int64_t row_bytes = D * elem_bytes(kind);
        const char *ahead = v + (t + 64) * row_bytes, *page_end = v + L * row_bytes;
        for (int64_t off = 0; off < 32 * row_bytes && ahead + off < page_end; off += 64)
            _mm_prefetch(ahead + off, _MM_HINT_T0);
        block b0 = make_block(v, t, L, D, kind, bufs, bufs + 16 * D);
        block b1 = make_block(v, t + 16, L, D, kind, bufs + 32 * D, bufs + 48 * D);
        for (int g = 0; g < G; g += 2) {
            const uint16_t *bh0 = Bh + (int64_t)g * S * 512, *bh1 = bh0 + S * 512;
            const uint16_t *bl0 = Bl + (int64_t)g * S * 512, *bl1 = bl0 + S * 512;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t s = 0; s < S; s++) {
                _tile_loadd(4, b0.hi + 32 * s, stride);
                _tile_loadd(5, b1.hi + 32 * s, stride);
                _tile_loadd(6, bh0 + s * 512, 64);
                _tile_loadd(7, bh1 + s * 512, 64);
                TDP4();
                if (use_lo) {
                    _tile_loadd(6, bl0 + s * 512, 64);
                    _tile_loadd(7, bl1 + s * 512, 64);
                    TDP4();
                }
                if (kind == KIND_FP16) {
                    _tile_loadd(4, b0.lo + 32 * s, stride);
                    _tile_loadd(5, b1.lo + 32 * s, stride);
                    TDP4(); /* lo . Bl when use_lo (tiles 6, 7 hold Bl) */
                    if (use_lo) {
                        _tile_loadd(6, bh0 + s * 512, 64);
                        _tile_loadd(7, bh1 + s * 512, 64);
                        TDP4(); /* lo . Bh */
                    }
                }
            }
            _tile_stored(0, cbuf, 64);
            _tile_stored(1, cbuf + 256, 64);
            _tile_stored(2, cbuf + 512, 64);
            _tile_stored(3, cbuf + 768, 64);
            fold_max(cbuf, b0.rows, m + g * 16);
            fold_max(cbuf + 256, b0.rows, m + (g + 1) * 16);
            fold_max(cbuf + 512, b1.rows, m + g * 16);
            fold_max(cbuf + 768, b1.rows, m + (g + 1) * 16);
        }
    }
}

/* Scores of n_queries queries against pages rows[0..n_rows):
 * out[j * out_stride + r] = sum_{k in [qoff[j], qoff[j+1])} max_t <q_k, page_t>  (0 if empty).
 * Returns 0, or -1 when scratch memory cannot be had. */
int mm_maxsim_amx(const void *values, int kind, int64_t D, const int64_t *offsets,
                  const int64_t *rows, int64_t n_rows, const uint16_t *Bh, const uint16_t *Bl,
                  int G, int use_lo, const int64_t *qoff, int n_queries, float *out,
                  int64_t out_stride) {
    float *m = aligned_alloc(64, (size_t)G * 16 * sizeof(float));
    uint16_t *buf = aligned_alloc(64, (size_t)4 * 16 * D * 2);
    float *cbuf = aligned_alloc(64, 4 * 16 * 16 * sizeof(float));
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
        const char *page = (const char *)values + start * D * elem_bytes(kind);
        page_max(page, L, D, kind, Bh, Bl, G, use_lo, m, buf, cbuf);
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
