/*
 * hgemm_avx2.c — the f16/bf16 GEMM kernels with 256-bit registers and F16C
 * (hgemm.c has the design and hgemm.h the layouts): the micro-kernel, the
 * one-row kernel and the W packer. They run from tiles packed at load
 * (rm_hgemm_packed_get), not per call.
 *
 * Sixteen ymm registers hold a 6 x 16 block of Y (12 accumulators, two
 * widened W vectors, one broadcast X value), so a 32-column tile runs as two
 * 16-column halves and a micro-panel of 4, 8 or 12 rows as blocks of 6, 4
 * and 2 rows that read the panel's interleaved rows in place.
 */
#include "kernels/hgemm.h"

#include <immintrin.h>

static inline __m256 widen8(const uint16_t *p, bool bf16) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* Y rows [i0, i0 + R) of the panel (stride mr in xp) x columns [j0, j0 + 16) of the tile. */
static inline __attribute__((always_inline)) void block_body(const int R, const bool bf16, const float *xp, int mr,
                                                             int i0, const uint16_t *wp, int j0, int64_t kc,
                                                             float *y, int64_t ldy, int rows, int nc,
                                                             bool accumulate) {
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < kc; kk++) {
        const uint16_t *wk = wp + kk * RM_HGEMM_NR + j0;
        __m256 w0 = widen8(wk, bf16), w1 = widen8(wk + 8, bf16);
        const float *xk = xp + kk * mr + i0;
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            __m256 xb = _mm256_broadcast_ss(xk + i);
            c0[i] = _mm256_fmadd_ps(w0, xb, c0[i]);
            c1[i] = _mm256_fmadd_ps(w1, xb, c1[i]);
        }
    }
    float out[16];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        if (i0 + i >= rows) break;
        float *yr = y + (int64_t)(i0 + i) * ldy + j0;
        int n = nc - j0 < 16 ? nc - j0 : 16;
        _mm256_storeu_ps(out, c0[i]);
        _mm256_storeu_ps(out + 8, c1[i]);
        if (accumulate)
            for (int c = 0; c < n; c++) yr[c] += out[c];
        else
            for (int c = 0; c < n; c++) yr[c] = out[c];
    }
}

static inline __attribute__((always_inline)) void tile_avx2(const bool bf16, const float *xp, int mr,
                                                            const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                                                            int rows, int nc, bool accumulate) {
    for (int j0 = 0; j0 < nc; j0 += 16) {
        int i0 = 0;
        for (; i0 + 6 <= mr; i0 += 6) block_body(6, bf16, xp, mr, i0, wp, j0, kc, y, ldy, rows, nc, accumulate);
        if (i0 >= rows) continue; /* only padding left */
        if (mr - i0 == 4) block_body(4, bf16, xp, mr, i0, wp, j0, kc, y, ldy, rows, nc, accumulate);
        else if (mr - i0 == 2) block_body(2, bf16, xp, mr, i0, wp, j0, kc, y, ldy, rows, nc, accumulate);
    }
}

void rm_hgemm_tile_f16_avx2(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy, int rows,
                            int nc, bool accumulate) {
    tile_avx2(false, xp, mr, wp, kc, y, ldy, rows, nc, accumulate);
}

void rm_hgemm_tile_bf16_avx2(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                             int rows, int nc, bool accumulate) {
    tile_avx2(true, xp, mr, wp, kc, y, ldy, rows, nc, accumulate);
}

/* One row against a tile over the whole k (hgemm.h): two interleaved runs
 * of kk, each four 8-wide accumulators for the tile's 32 columns (eight of
 * the sixteen ymm registers), so consecutive FMAs into one accumulator are
 * a kk apart; the line RM_HGEMM_ROW_PREFETCH bytes ahead is fetched, as in
 * the AVX-512 row kernel. */
#define RM_HGEMM_ROW_PREFETCH 2048
static inline __attribute__((always_inline)) void row_avx2(const bool bf16, const float *x, const uint16_t *wp,
                                                           int64_t k, float *y, int nc) {
    __m256 a[2][4];
    for (int u = 0; u < 2; u++)
        for (int v = 0; v < 4; v++) a[u][v] = _mm256_setzero_ps();
    int64_t kk = 0;
    for (; kk + 2 <= k; kk += 2)
#pragma GCC unroll 2
        for (int u = 0; u < 2; u++) {
            const uint16_t *wk = wp + (kk + u) * RM_HGEMM_NR;
            _mm_prefetch((const char *)wk + RM_HGEMM_ROW_PREFETCH, _MM_HINT_T0);
            __m256 xb = _mm256_broadcast_ss(x + kk + u);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) a[u][v] = _mm256_fmadd_ps(widen8(wk + 8 * v, bf16), xb, a[u][v]);
        }
    if (kk < k) {
        const uint16_t *wk = wp + kk * RM_HGEMM_NR;
        __m256 xb = _mm256_broadcast_ss(x + kk);
        for (int v = 0; v < 4; v++) a[0][v] = _mm256_fmadd_ps(widen8(wk + 8 * v, bf16), xb, a[0][v]);
    }
    float out[RM_HGEMM_NR];
    for (int v = 0; v < 4; v++) _mm256_storeu_ps(out + 8 * v, _mm256_add_ps(a[0][v], a[1][v]));
    for (int c = 0; c < nc; c++) y[c] = out[c];
}

void rm_hgemm_row_f16_avx2(const float *x, const uint16_t *wp, int64_t k, float *y, int nc) {
    row_avx2(false, x, wp, k, y, nc);
}
void rm_hgemm_row_bf16_avx2(const float *x, const uint16_t *wp, int64_t k, float *y, int nc) {
    row_avx2(true, x, wp, k, y, nc);
}

/* Transpose 8 rows of 8 16-bit values: three rounds of unpacking (16-, 32-
 * and 64-bit), after which r[j] holds column j of the eight rows. */
static inline void transpose8x8(__m128i a[8]) {
    __m128i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
        t[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 2; i++) {
            u[4 * h + 2 * i] = _mm_unpacklo_epi32(t[4 * h + i], t[4 * h + i + 2]);
            u[4 * h + 2 * i + 1] = _mm_unpackhi_epi32(t[4 * h + i], t[4 * h + i + 2]);
        }
    for (int j = 0; j < 4; j++) {
        a[2 * j] = _mm_unpacklo_epi64(u[j], u[j + 4]);
        a[2 * j + 1] = _mm_unpackhi_epi64(u[j], u[j + 4]);
    }
}

/* The tile layout of hgemm.h, 8 x 8 blocks at a time; the columns past the
 * last whole 8 rows and the k tail element by element. At load this packs
 * TinyLlama's f16 weights in about a quarter of the scalar packer's time. */
void rm_hgemm_pack_avx2(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc) {
    int c8 = nc & ~7;
    int64_t kb = 0;
    for (; kb + 8 <= kc; kb += 8) {
        for (int c0 = 0; c0 < c8; c0 += 8) {
            __m128i a[8];
            for (int i = 0; i < 8; i++) a[i] = _mm_loadu_si128((const __m128i *)(w + (c0 + i) * ldw + kb));
            transpose8x8(a);
            for (int j = 0; j < 8; j++) _mm_storeu_si128((__m128i *)(wp + (kb + j) * RM_HGEMM_NR + c0), a[j]);
        }
        for (int j = 0; j < 8; j++)
            for (int c = c8; c < RM_HGEMM_NR; c++) wp[(kb + j) * RM_HGEMM_NR + c] = c < nc ? w[c * ldw + kb + j] : 0;
    }
    for (; kb < kc; kb++)
        for (int c = 0; c < RM_HGEMM_NR; c++) wp[kb * RM_HGEMM_NR + c] = c < nc ? w[c * ldw + kb] : 0;
}
