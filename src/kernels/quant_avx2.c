/*
 * quant_avx2.c — AVX2 integer dots of the 4-6 bit weights with 8-bit
 * activations (built with -mavx2 -mfma -mf16c; used by the AVX2 and the
 * AVX-512 tables once dispatch.c has seen the features).
 *
 * The core is the one of the q8_0 dot: 32 weight levels as unsigned bytes
 * times 32 signed activation bytes by vpmaddubsw (pairs summed into int16,
 * which cannot saturate: at most 63 * 127 * 2), then vpmaddwd against the
 * sub-block scales (or ones) into int32. Offsets are folded in without
 * touching the weights again: q4_1's min and the k-quants' mins multiply
 * the activation sums (vpmaddubsw with ones, or q8_K's precomputed bsums),
 * q6_k's -32 subtracts 32 x the activations, q4_0's -8 is applied to the
 * levels (the sign trick keeps |w| unsigned). Integer sums per block are
 * exact; only the per-block float scaling rounds, so results agree with
 * the scalar dots of quant.c to float rounding (the tests compare them).
 */
#include "kernels/kern_internal.h"

#include <immintrin.h>

static inline float hsum8f(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes -> 32 levels: low nibbles in bytes 0..15, high nibbles in 16..31. */
static inline __m256i nibbles32(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* int32 x 8 sums of pairs of u8 x s8 products. */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

float rm_kern_dot_q4_0_avx2(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_0 *x = xq;
    const rm_block_q4_0 *w = wv;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i qw = _mm256_sub_epi8(nibbles32(w[b].qs), _mm256_set1_epi8(8));
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        /* |w| x (x with the sign of w): unsigned x signed for vpmaddubsw */
        __m256i p = dot_u8s8(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    return hsum8f(acc);
}

float rm_kern_dot_q4_1_avx2(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_0 *x = xq;
    const rm_block_q4_1 *w = wv;
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        __m256i p = dot_u8s8(nibbles32(w[b].qs), qx);
        __m256i sx = dot_u8s8(ones, qx);
        float dx = _cvtsh_ss(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[b].d) * dx), _mm256_cvtepi32_ps(p), acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[b].m) * dx), _mm256_cvtepi32_ps(sx), acc);
    }
    return hsum8f(acc);
}

/* sum_j mn[j] * (sum of activations of sub-block j), from the bsums of 16. */
static inline int k4_min_sum(const rm_block_q8_k *x, const uint8_t mn[8]) {
    int s = 0;
    for (int j = 0; j < 8; j++) s += mn[j] * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    return s;
}

/* q4_k and q5_k (qh NULL for q4_k): eight sub-blocks of 32 with 6-bit scales. */
static inline float dot_k45_avx2(const rm_block_q8_k *x, const rm_block_q4_k *w4, const rm_block_q5_k *w5,
                                 int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), b16 = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *scales = w4 ? w4[b].scales : w5[b].scales, *qs = w4 ? w4[b].qs : w5[b].qs;
        uint16_t d = w4 ? w4[b].d : w5[b].d, dmin = w4 ? w4[b].dmin : w5[b].dmin;
        uint8_t sc[8], mn[8];
        rm_kern_unpack_k4(scales, sc, mn);
        __m256i hbits = w5 ? _mm256_loadu_si256((const __m256i *)w5[b].qh) : _mm256_setzero_si256();
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i ql = _mm256_and_si256(q, m4), qh = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (w5) {
                __m256i mlo = _mm256_set1_epi8((char)(1 << (2 * c))), mhi = _mm256_set1_epi8((char)(2 << (2 * c)));
                ql = _mm256_or_si256(ql, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mlo), mlo), b16));
                qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mhi), mhi), b16));
            }
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c));
            __m256i a1 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ql, a0), _mm256_set1_epi16(sc[2 * c]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(qh, a1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * _cvtsh_ss(d)), _mm256_cvtepi32_ps(sumi), acc);
        accm += x[b].d * _cvtsh_ss(dmin) * (float)k4_min_sum(&x[b], mn);
    }
    return hsum8f(acc) - accm;
}

float rm_kern_dot_q4_k_avx2(const void *xq, const void *w, int64_t nb) { return dot_k45_avx2(xq, w, NULL, nb); }
float rm_kern_dot_q5_k_avx2(const void *xq, const void *w, int64_t nb) { return dot_k45_avx2(xq, NULL, w, nb); }

float rm_kern_dot_q6_k_avx2(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_k *x = xq;
    const rm_block_q6_k *w = wv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h;
            const int8_t *sc = w[b].scales + 8 * h, *a = x[b].qs + 128 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_and_si256(l0, m4);
            q[1] = _mm256_and_si256(l1, m4);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4);
            for (int g = 0; g < 4; g++) {
                __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * g), m2), 4);
                __m256i lv = _mm256_or_si256(q[g], hi); /* 0..63 */
                __m256i av = _mm256_loadu_si256((const __m256i *)(a + 32 * g));
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(lv, av), _mm256_maddubs_epi16(m32, av));
                __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * _cvtsh_ss(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8f(acc);
}
