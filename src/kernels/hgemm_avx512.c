/*
 * hgemm_avx512.c — the f16/bf16 GEMM micro-kernel and W packer with 512-bit
 * registers (hgemm.c has the design and hgemm.h the layouts).
 */
#include "kernels/hgemm.h"

#include <immintrin.h>

static inline __m512 widen16(const uint16_t *p, bool bf16) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

static inline __mmask16 lane_mask(int n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* MR x 32 block of Y in 2 MR registers; MR a compile-time constant. */
static inline __attribute__((always_inline)) void tile_body(const int MR, const bool bf16, const float *xp,
                                                            const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                                                            int rows, int nc, bool accumulate) {
    __m512 c0[RM_HGEMM_MR], c1[RM_HGEMM_MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512 w0 = widen16(wp + kk * RM_HGEMM_NR, bf16), w1 = widen16(wp + kk * RM_HGEMM_NR + 16, bf16);
        const float *xk = xp + kk * MR;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 xb = _mm512_set1_ps(xk[i]);
            c0[i] = _mm512_fmadd_ps(w0, xb, c0[i]);
            c1[i] = _mm512_fmadd_ps(w1, xb, c1[i]);
        }
    }
    __mmask16 m0 = lane_mask(nc), m1 = lane_mask(nc - 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= rows) break;
        float *yr = y + i * ldy;
        if (accumulate) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yr));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, m0, c0[i]);
        _mm512_mask_storeu_ps(yr + 16, m1, c1[i]);
    }
}

#define HGEMM_TILE(NAME, BF16)                                                                                  \
    void NAME(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy, int rows, int nc, \
              bool accumulate) {                                                                                \
        if (mr == 12) tile_body(12, BF16, xp, wp, kc, y, ldy, rows, nc, accumulate);                            \
        else if (mr == 8) tile_body(8, BF16, xp, wp, kc, y, ldy, rows, nc, accumulate);                         \
        else tile_body(4, BF16, xp, wp, kc, y, ldy, rows, nc, accumulate);                                      \
    }

HGEMM_TILE(rm_hgemm_tile_f16_avx512, false)
HGEMM_TILE(rm_hgemm_tile_bf16_avx512, true)

/* One row against a tile over the whole k: four pairs of accumulators
 * (kk mod 4), so the FMAs of consecutive kk do not wait on each other.
 * Each kk is one 64-byte line of the tile; the line RM_HGEMM_ROW_PREFETCH
 * bytes ahead is fetched, as the dot kernels do (kern_avx512.c). */
#define RM_HGEMM_ROW_PREFETCH 2048
static inline __attribute__((always_inline)) void row_body(const bool bf16, const float *x, const uint16_t *wp,
                                                           int64_t k, float *y, int nc) {
    __m512 a0[4], a1[4];
    for (int u = 0; u < 4; u++) a0[u] = a1[u] = _mm512_setzero_ps();
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4)
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            _mm_prefetch((const char *)(wp + (kk + u) * RM_HGEMM_NR) + RM_HGEMM_ROW_PREFETCH, _MM_HINT_T0);
            __m512 xb = _mm512_set1_ps(x[kk + u]);
            a0[u] = _mm512_fmadd_ps(widen16(wp + (kk + u) * RM_HGEMM_NR, bf16), xb, a0[u]);
            a1[u] = _mm512_fmadd_ps(widen16(wp + (kk + u) * RM_HGEMM_NR + 16, bf16), xb, a1[u]);
        }
    for (int u = 0; kk < k; kk++, u++) {
        __m512 xb = _mm512_set1_ps(x[kk]);
        a0[u] = _mm512_fmadd_ps(widen16(wp + kk * RM_HGEMM_NR, bf16), xb, a0[u]);
        a1[u] = _mm512_fmadd_ps(widen16(wp + kk * RM_HGEMM_NR + 16, bf16), xb, a1[u]);
    }
    __m512 s0 = _mm512_add_ps(_mm512_add_ps(a0[0], a0[1]), _mm512_add_ps(a0[2], a0[3]));
    __m512 s1 = _mm512_add_ps(_mm512_add_ps(a1[0], a1[1]), _mm512_add_ps(a1[2], a1[3]));
    _mm512_mask_storeu_ps(y, lane_mask(nc), s0);
    _mm512_mask_storeu_ps(y + 16, lane_mask(nc - 16), s1);
}

void rm_hgemm_row_f16_avx512(const float *x, const uint16_t *wp, int64_t k, float *y, int nc) {
    row_body(false, x, wp, k, y, nc);
}
void rm_hgemm_row_bf16_avx512(const float *x, const uint16_t *wp, int64_t k, float *y, int nc) {
    row_body(true, x, wp, k, y, nc);
}

/*
 * Transpose 32 rows of 32 16-bit values in place: five butterfly stages;
 * stage b swaps element (i, c) with (i ^ b, c ^ b) where bit b of i and of
 * c differ (one vpermt2w per row and stage), which after all five moves
 * (i, c) to (c, i).
 */
static void transpose32(__m512i r[32]) {
    for (int b = 16; b >= 1; b >>= 1) {
        uint16_t lo[32], hi[32];
        for (int c = 0; c < 32; c++) {
            lo[c] = (uint16_t)((c & b) ? 32 + c - b : c);
            hi[c] = (uint16_t)((c & b) ? 32 + c : c + b);
        }
        __m512i ilo = _mm512_loadu_si512(lo), ihi = _mm512_loadu_si512(hi);
        for (int i = 0; i < 32; i++) {
            if (i & b) continue;
            __m512i a = r[i], d = r[i + b];
            r[i] = _mm512_permutex2var_epi16(a, ilo, d);
            r[i + b] = _mm512_permutex2var_epi16(a, ihi, d);
        }
    }
}

void rm_hgemm_pack_avx512(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc) {
    __m512i r[32];
    for (int64_t kb = 0; kb < kc; kb += 32) {
        int kn = kc - kb < 32 ? (int)(kc - kb) : 32;
        __mmask32 km = kn == 32 ? 0xffffffffu : (1u << kn) - 1;
        for (int c = 0; c < 32; c++)
            r[c] = c < nc ? _mm512_maskz_loadu_epi16(km, w + c * ldw + kb) : _mm512_setzero_si512();
        transpose32(r);
        for (int kk = 0; kk < kn; kk++) _mm512_storeu_si512(wp + (kb + kk) * RM_HGEMM_NR, r[kk]);
    }
}
