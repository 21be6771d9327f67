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
#include "kernels/quant_simd.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

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

/* int16 lane e (< 8) of v, where v holds the same 8 lanes in both halves,
 * broadcast to all 16 lanes. */
static inline __m256i bcast16(__m256i v, int e) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * e + 1) << 8) | (2 * e))));
}

/* q4_k and q5_k (qh NULL for q4_k): eight sub-blocks of 32 with 6-bit scales;
 * the mins meet the activations' pair sums of bsums in one vpmaddwd. */
static inline float dot_k45_avx2(const rm_block_q8_k *x, const rm_block_q4_k *w4, const rm_block_q5_k *w5,
                                 int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), b16 = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *scales = w4 ? w4[b].scales : w5[b].scales, *qs = w4 ? w4[b].qs : w5[b].qs;
        uint16_t d = w4 ? w4[b].d : w5[b].d, dmin = w4 ? w4[b].dmin : w5[b].dmin;
        __m256i sm = k4_scales_mins(scales);
        __m256i sc2 = _mm256_permute2x128_si256(sm, sm, 0x00); /* the scales in both halves */
        __m128i mprod = k4_min_dot(sm, x[b].bsums);
        accm = _mm_fmadd_ps(_mm_set1_ps(x[b].d * _cvtsh_ss(dmin)), _mm_cvtepi32_ps(mprod), accm);
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
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ql, a0), bcast16(sc2, 2 * c));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(qh, a1), bcast16(sc2, 2 * c + 1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * _cvtsh_ss(d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum8f(acc) - _mm_cvtss_f32(m);
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
        __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[b].scales));
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h;
            const int8_t *a = x[b].qs + 128 * h;
            __m256i sh = h ? _mm256_permute2x128_si256(s16, s16, 0x11) : _mm256_permute2x128_si256(s16, s16, 0x00);
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
                /* scale 2g for weights 0..15 of the group, 2g + 1 for 16..31 */
                __m256i s = _mm256_shuffle_epi8(sh, _mm256_set_m128i(_mm_set1_epi16((short)(((4 * g + 3) << 8) | (4 * g + 2))),
                                                                     _mm_set1_epi16((short)(((4 * g + 1) << 8) | (4 * g)))));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * _cvtsh_ss(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8f(acc);
}

/* ---- dequantisation: quant.c's operations, 8 lanes at a time ----------------- */

/* y[0..32) = levels (32 signed bytes) * scale - offset, in four groups of 8
 * (offset NULL: no subtraction; add_off: + offset, as q4_1). */
static inline void store32(float *y, __m256i lv, __m256 scale, const __m256 *off, bool add_off) {
    __m128i h[2] = {_mm256_castsi256_si128(lv), _mm256_extracti128_si256(lv, 1)};
    for (int i = 0; i < 4; i++) {
        __m128i part = i & 1 ? _mm_srli_si128(h[i / 2], 8) : h[i / 2];
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part)), scale);
        if (off) v = add_off ? _mm256_add_ps(v, *off) : _mm256_sub_ps(v, *off);
        _mm256_storeu_ps(y + 8 * i, v);
    }
}

void rm_kern_dequant_q4_0_avx2(float *y, const void *src, int64_t k) {
    const rm_block_q4_0 *x = src;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        store32(y, _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8)), _mm256_set1_ps(_cvtsh_ss(x[i].d)), NULL,
                false);
}

void rm_kern_dequant_q4_1_avx2(float *y, const void *src, int64_t k) {
    const rm_block_q4_1 *x = src;
    for (int64_t i = 0; i < k / 32; i++, y += 32) {
        __m256 m = _mm256_set1_ps(_cvtsh_ss(x[i].m));
        store32(y, nibbles32(x[i].qs), _mm256_set1_ps(_cvtsh_ss(x[i].d)), &m, true);
    }
}

/* q4_k / q5_k blocks (qh NULL for q4_k); levels <= 31 fit signed bytes. */
static inline void dequant_k45_avx2(float *y, uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qs,
                                    const uint8_t *qh) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), b16 = _mm256_set1_epi8(16);
    uint8_t sc[8], mn[8];
    rm_kern_unpack_k4(scales, sc, mn);
    float d = _cvtsh_ss(dh), dmin = _cvtsh_ss(dminh);
    __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++, y += 64) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i ql = _mm256_and_si256(q, m4), qhi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            __m256i mlo = _mm256_set1_epi8((char)(1 << (2 * c))), mhi = _mm256_set1_epi8((char)(2 << (2 * c)));
            ql = _mm256_or_si256(ql, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mlo), mlo), b16));
            qhi = _mm256_or_si256(qhi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mhi), mhi), b16));
        }
        __m256 m1 = _mm256_set1_ps(dmin * mn[2 * c]), m2 = _mm256_set1_ps(dmin * mn[2 * c + 1]);
        store32(y, ql, _mm256_set1_ps(d * sc[2 * c]), &m1, false);
        store32(y + 32, qhi, _mm256_set1_ps(d * sc[2 * c + 1]), &m2, false);
    }
}

void rm_kern_dequant_q4_k_avx2(float *y, const void *src, int64_t k) {
    const rm_block_q4_k *x = src;
    for (int64_t i = 0; i < k / RM_QK_K; i++) dequant_k45_avx2(y + i * RM_QK_K, x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL);
}

void rm_kern_dequant_q5_k_avx2(float *y, const void *src, int64_t k) {
    const rm_block_q5_k *x = src;
    for (int64_t i = 0; i < k / RM_QK_K; i++)
        dequant_k45_avx2(y + i * RM_QK_K, x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh);
}

void rm_kern_dequant_q6_k_avx2(float *y, const void *src, int64_t k) {
    const rm_block_q6_k *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < k / RM_QK_K; i++) {
        float d = _cvtsh_ss(x[i].d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            __m256i q[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                            _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int g = 0; g < 4; g++) {
                __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * g), m2), 4);
                __m256i lv = _mm256_sub_epi8(_mm256_or_si256(q[g], hi), m32); /* -32..31 */
                /* weights 0..15 of the group take scale 2g, 16..31 scale 2g + 1 */
                __m256 s0 = _mm256_set1_ps(d * sc[2 * g]), s1 = _mm256_set1_ps(d * sc[2 * g + 1]);
                __m128i lo = _mm256_castsi256_si128(lv), up = _mm256_extracti128_si256(lv, 1);
                float *yg = y + 32 * g;
                _mm256_storeu_ps(yg, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(yg + 8, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(yg + 16, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(up))));
                _mm256_storeu_ps(yg + 24, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(up, 8)))));
            }
        }
    }
}
