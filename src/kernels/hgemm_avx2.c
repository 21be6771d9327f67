/*
 * hgemm_avx2.c — the f16/bf16 GEMM micro-kernel with 256-bit registers and
 * F16C (hgemm.c has the design and hgemm.h the layouts).
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
