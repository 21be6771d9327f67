/*
 * kern_avx256.h — the 256-bit kernels that the AVX2 and AVX-512 files share
 * (each includes this header and compiles it with its own flags; private to
 * src/kernels):
 *   - hsum8, a horizontal sum;
 *   - the q8_0 integer dot products and the f32 -> q8_0 quantiser
 *     (AVX-512 has no faster form on the machines ramole targets, so both
 *     tables use these, and the bit-exact rounding rule has one shape);
 *   - short rows: matmul rows too short for one horizontal sum each, W rows
 *     of k elements, k a multiple of 8 and at most RM_KERN_SHORT_MAX_K (the
 *     LoRA expand, where k is the adapter's rank). Eight W rows at a time
 *     are multiplied into eight accumulators, which one transposing
 *     reduction turns into eight sums;
 *   - short rows added in place, the same products for the expand's many
 *     rows: W transposed once per block, then no horizontal sums at all.
 */
#ifndef RM_KERN_AVX256_H
#define RM_KERN_AVX256_H

#include <immintrin.h>

#include "kernels/kern_internal.h"

/* [sum(v0), ..., sum(v7)] */
static inline __m256 short_reduce8(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5, __m256 v6,
                                   __m256 v7) {
    __m256 t0 = _mm256_hadd_ps(v0, v1), t1 = _mm256_hadd_ps(v2, v3);
    __m256 t2 = _mm256_hadd_ps(v4, v5), t3 = _mm256_hadd_ps(v6, v7);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sum of x[i]*y[i] over 32 signed bytes, as 8 floats (ggml mul_sum_i8_pairs_float). */
static inline __m256 mul_sum_i8_pairs(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    __m256i dot = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)));
}

static inline __m256 q8_block_dot(const rm_block_q8_0 *x, const rm_block_q8_0 *w, __m256 acc) {
    __m256 d = _mm256_set1_ps(_cvtsh_ss(x->d) * _cvtsh_ss(w->d));
    __m256i qx = _mm256_loadu_si256((const __m256i *)x->qs);
    __m256i qw = _mm256_loadu_si256((const __m256i *)w->qs);
    return _mm256_fmadd_ps(d, mul_sum_i8_pairs(qx, qw), acc);
}

/*
 * Int32 sums of the 32 products of a block, as 8 partial sums: ggml's
 * maddubs(|x|, sign(w, x)) then madd with ones; |x| comes precomputed.
 */
static inline __m256i q8_block_isum(const rm_block_q8_0 *x, const uint8_t *ax, const rm_block_q8_0 *w) {
    __m256i qx = _mm256_loadu_si256((const __m256i *)x->qs);
    __m256i qw = _mm256_loadu_si256((const __m256i *)w->qs);
    __m256i dot = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)ax), _mm256_sign_epi8(qw, qx));
    return _mm256_madd_epi16(dot, _mm256_set1_epi16(1));
}

/*
 * Four blocks per step: three hadds fold the four blocks' partial sums into
 * one vector (block b in lanes b and b + 4); the four weight scales are
 * widened by one vcvtph2ps and multiplied by the activation's f32 scales.
 * With |x| precomputed this runs at 13.0 GB/s of weights in L2 on one Zen
 * core, against 9.6 for the one-block-at-a-time loop.
 */
static float dot_q8_0(rm_q8_act x, const rm_block_q8_0 *w, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *a = x.a + b * RM_Q8_0_BLOCK;
        __m256i s01 = _mm256_hadd_epi32(q8_block_isum(x.q + b, a, w + b), q8_block_isum(x.q + b + 1, a + 32, w + b + 1));
        __m256i s23 = _mm256_hadd_epi32(q8_block_isum(x.q + b + 2, a + 64, w + b + 2),
                                        q8_block_isum(x.q + b + 3, a + 96, w + b + 3));
        __m256 fs = _mm256_cvtepi32_ps(_mm256_hadd_epi32(s01, s23));
        __m128i hw = _mm_cvtsi32_si128((int)(w[b].d | (uint32_t)w[b + 1].d << 16));
        hw = _mm_insert_epi32(hw, (int)(w[b + 2].d | (uint32_t)w[b + 3].d << 16), 1);
        __m128 d4 = _mm_mul_ps(_mm_cvtph_ps(hw), _mm_loadu_ps(x.d + b));
        acc = _mm256_fmadd_ps(fs, _mm256_set_m128(d4, d4), acc);
    }
    for (; b < nb; b++) acc = q8_block_dot(x.q + b, w + b, acc);
    return hsum8(acc);
}

/*
 * Four q8_0 activation rows: one row at a time while the weight row sits in
 * L1. (Sharing |w| across rows inside the block loop runs out of the 16 ymm
 * registers and measured slower.)
 */
static void dot4_q8_0(rm_q8_act x, int64_t ldx, const rm_block_q8_0 *w, int64_t nb, float *out) {
    for (int r = 0; r < 4; r++) {
        rm_q8_act xr = {x.q + r * ldx, x.a + r * ldx * RM_Q8_0_BLOCK, x.d + r * ldx};
        out[r] = dot_q8_0(xr, w, nb);
    }
}

static inline __m256 short_load_f32(const float *w) { return _mm256_loadu_ps(w); }
static inline __m256 short_load_f16(const uint16_t *w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w)); }

/* y[i * ldy + r] = x_i . w_r for i < m, r < n; W row r starts at element r * k.
 * A macro rather than a function taking the loader, so that the loads inline. */
/* Eight W rows (row j at wr + j * k) against x rows 0..m-1: y[i * ldy + 0..8). */
#define SHORT_BLOCK(NAME, WT, LOAD)                                                                         \
    static inline void NAME(const float *x, int64_t m, const WT *wr, int64_t k, float *y, int64_t ldy) {    \
        for (int64_t i = 0; i < m; i++) {                                                                   \
            const float *xi = x + i * k;                                                                    \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0; \
            for (int64_t c = 0; c < k; c += 8) {                                                            \
                __m256 xv = _mm256_loadu_ps(xi + c);                                                        \
                a0 = _mm256_fmadd_ps(LOAD(wr + c), xv, a0);                                                 \
                a1 = _mm256_fmadd_ps(LOAD(wr + k + c), xv, a1);                                             \
                a2 = _mm256_fmadd_ps(LOAD(wr + 2 * k + c), xv, a2);                                         \
                a3 = _mm256_fmadd_ps(LOAD(wr + 3 * k + c), xv, a3);                                         \
                a4 = _mm256_fmadd_ps(LOAD(wr + 4 * k + c), xv, a4);                                         \
                a5 = _mm256_fmadd_ps(LOAD(wr + 5 * k + c), xv, a5);                                         \
                a6 = _mm256_fmadd_ps(LOAD(wr + 6 * k + c), xv, a6);                                         \
                a7 = _mm256_fmadd_ps(LOAD(wr + 7 * k + c), xv, a7);                                         \
            }                                                                                               \
            _mm256_storeu_ps(y + i * ldy, short_reduce8(a0, a1, a2, a3, a4, a5, a6, a7));                   \
        }                                                                                                   \
    }
SHORT_BLOCK(short_block_f32, float, short_load_f32)
SHORT_BLOCK(short_block_f16, uint16_t, short_load_f16)
#undef SHORT_BLOCK

/* y[i * ldy + r] = x_i . w_r for the rows r in [r0, n) left over after the blocks of eight. */
#define SHORT_TAIL(NAME, WT, LOAD)                                                                           \
    static inline void NAME(const float *x, int64_t m, const WT *w, int64_t r0, int64_t n, int64_t k, float *y, \
                            int64_t ldy) {                                                                   \
        for (; r0 < n; r0++)                                                                                 \
            for (int64_t i = 0; i < m; i++) {                                                                \
                __m256 a = _mm256_setzero_ps();                                                              \
                for (int64_t c = 0; c < k; c += 8)                                                           \
                    a = _mm256_fmadd_ps(LOAD(w + r0 * k + c), _mm256_loadu_ps(x + i * k + c), a);           \
                y[i * ldy + r0] = hsum8(a);                                                             \
            }                                                                                                \
    }
SHORT_TAIL(short_tail_f32, float, short_load_f32)
SHORT_TAIL(short_tail_f16, uint16_t, short_load_f16)
#undef SHORT_TAIL

/* y[i * ldy + r] = x_i . w_r for i < m, r < n; W row r starts at element r * k. */
static void short_rows_f32(const float *x, int64_t m, const float *w, int64_t n, int64_t k, float *y, int64_t ldy) {
    int64_t r0 = 0;
    for (; r0 + 8 <= n; r0 += 8) short_block_f32(x, m, w + r0 * k, k, y + r0, ldy);
    short_tail_f32(x, m, w, r0, n, k, y, ldy);
}

#define SHORT_PREFETCH 2048
/* f16: with several x rows, each block of W is widened once into L1 and
 * shared by the rows, rather than converted again for every row. */
static void short_rows_f16(const float *x, int64_t m, const uint16_t *w, int64_t n, int64_t k, float *y,
                           int64_t ldy) {
    float buf[8 * RM_KERN_SHORT_MAX_K] __attribute__((aligned(32)));
    int64_t r0 = 0;
    for (; r0 + 8 <= n; r0 += 8) {
        /* a block is 8 rows of k halves; the blocks ahead are streamed in
         * (an adapter's B is read once per step, from memory) */
        const char *ahead = (const char *)(w + r0 * k) + SHORT_PREFETCH;
        for (int64_t b = 0; b < 16 * k; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
        if (m == 1) {
            short_block_f16(x, m, w + r0 * k, k, y + r0, ldy);
            continue;
        }
        for (int64_t c = 0; c < 8 * k; c += 8) _mm256_store_ps(buf + c, short_load_f16(w + r0 * k + c));
        short_block_f32(x, m, buf, k, y + r0, ldy);
    }
    short_tail_f16(x, m, w, r0, n, k, y, ldy);
}

/* r[j] <- column j of the 8x8 block whose rows are r[0..8), in place. */
static inline void transpose8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* y[0 .. nb) += a, nb <= 8 (the same f32 additions for a whole or a partial block) */
static inline void short_add_out(float *y, __m256 a, int nb) {
    if (nb == 8) {
        _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), a));
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, a);
    for (int j = 0; j < nb; j++) y[j] += t[j];
}

/*
 * t[c] <- elements c0 + c of W rows 0..nb-1 (rows nb..7 zero), c < 8: eight
 * elements of nb <= 8 rows of k, widened and transposed. Shared by the
 * short-add kernels of both widths.
 */
#define SHORT_WT8(NAME, WT, LOAD)                                                                            \
    static inline void NAME(__m256 *t, const WT *w, int64_t k, int64_t c0, int nb) {                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) t[j] =                                           \
            nb == 8 || j < nb ? LOAD(w + j * k + c0) : _mm256_setzero_ps();                                  \
        transpose8(t);                                                                                       \
    }
SHORT_WT8(short_wt8_f32, float, short_load_f32)
SHORT_WT8(short_wt8_f16, uint16_t, short_load_f16)
#undef SHORT_WT8

/*
 * R rows (R a constant: 8, 4 or 1) of the short-add kernel against one
 * transposed block: y[q][0 .. nb) += sum over c of z[q][c] * wt[c]. R
 * chains of FMAs hide their latency, each row's in c order, so a row's
 * sums are the same whichever R takes it.
 */
static inline __attribute__((always_inline)) void short_add_rows8(float *const *y, const float *const *z, int R,
                                                                  const __m256 *wt, int64_t k, int nb) {
    __m256 a[8];
    _Pragma("GCC unroll 8") for (int q = 0; q < R; q++) a[q] = _mm256_setzero_ps();
    for (int64_t c = 0; c < k; c++) {
        __m256 v = wt[c];
        _Pragma("GCC unroll 8") for (int q = 0; q < R; q++) a[q] = _mm256_fmadd_ps(_mm256_broadcast_ss(z[q] + c), v, a[q]);
    }
    _Pragma("GCC unroll 8") for (int q = 0; q < R; q++) short_add_out(y[q], a[q], nb);
}

/*
 * The m rows of Y against one transposed block, in blocks of 8, then 4,
 * then single rows, each through ROWS (a width's always-inline row helper,
 * whose last argument is LAST); yr holds the rows' pointers, offset to
 * the block's first output r0. Shared by both widths' short-add kernels.
 */
#define SHORT_ROW_BLOCKS(ROWS, LAST)                                                                         \
    do {                                                                                                     \
        int64_t i = 0;                                                                                       \
        for (; i + 8 <= m; i += 8) {                                                                         \
            for (int q = 0; q < 8; q++) yr[q] = y[i + q] + r0;                                               \
            ROWS(yr, z + i, 8, wt, k, LAST);                                                                 \
        }                                                                                                    \
        for (; i + 4 <= m; i += 4) {                                                                         \
            for (int q = 0; q < 4; q++) yr[q] = y[i + q] + r0;                                               \
            ROWS(yr, z + i, 4, wt, k, LAST);                                                                 \
        }                                                                                                    \
        for (; i < m; i++) {                                                                                 \
            yr[0] = y[i] + r0;                                                                               \
            ROWS(yr, z + i, 1, wt, k, LAST);                                                                 \
        }                                                                                                    \
    } while (0)

/*
 * Short rows added in place (the LoRA expand): y[i][r] += z[i] . w_r for
 * i < m, r < n. Each block of eight W rows is widened and transposed once
 * into L1 (wt[c]: element c of the eight rows); every z row then gathers
 * its eight sums as broadcast z[i][c] times wt[c]. No horizontal sums, and
 * a row's sums do not depend on m. inline: the AVX-512 table has its own.
 */
#define SHORT_ADD(NAME, WT, WT8)                                                                             \
    static inline void NAME(float *const *y, const float *const *z, int64_t m, const WT *w, int64_t n,         \
                            int64_t k) {                                                                     \
        __m256 wt[RM_KERN_SHORT_MAX_K];                                                                      \
        float *yr[8];                                                                                        \
        for (int64_t r0 = 0; r0 < n; r0 += 8) {                                                              \
            int nb = n - r0 < 8 ? (int)(n - r0) : 8;                                                         \
            const WT *wb = w + r0 * k;                                                                       \
            /* an adapter's B is read once per step, from memory: stream the blocks ahead */                 \
            for (int64_t b = 0; b < (int64_t)(8 * k * sizeof(WT)); b += 64)                                  \
                _mm_prefetch((const char *)wb + SHORT_PREFETCH + b, _MM_HINT_T0);                            \
            for (int64_t c0 = 0; c0 < k; c0 += 8) WT8(wt + c0, wb, k, c0, nb);                               \
            SHORT_ROW_BLOCKS(short_add_rows8, nb);                                                           \
        }                                                                                                    \
    }
SHORT_ADD(short_add_f32, float, short_wt8_f32)
SHORT_ADD(short_add_f16, uint16_t, short_wt8_f16)
#undef SHORT_ADD

/* roundf (half away from zero), exactly: trunc, then step by sign if |frac| >= 0.5. */
static inline __m256 round_away8(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 sgn = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                _mm256_or_ps(sgn, _mm256_set1_ps(1.0f)));
    return _mm256_add_ps(t, step);
}

static void f32_to_q8_0(rm_block_q8_0 *dst, const float *src, int64_t k) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < k / RM_Q8_0_BLOCK; b++) {
        const float *s = src + b * RM_Q8_0_BLOCK;
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(s + 8 * j);
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[j], abs_mask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        dst[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(round_away8(_mm256_mul_ps(v[0], vid)));
        __m256i i1 = _mm256_cvtps_epi32(round_away8(_mm256_mul_ps(v[1], vid)));
        __m256i i2 = _mm256_cvtps_epi32(round_away8(_mm256_mul_ps(v[2], vid)));
        __m256i i3 = _mm256_cvtps_epi32(round_away8(_mm256_mul_ps(v[3], vid)));
        i0 = _mm256_packs_epi32(i0, i1);
        i2 = _mm256_packs_epi32(i2, i3);
        i0 = _mm256_packs_epi16(i0, i2);
        i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)dst[b].qs, i0);
    }
}

#endif
