/*
 * quant_avx512.c — the 4-6 bit dots with 512-bit registers (AVX-512 F/BW,
 * selected with the AVX-512 table): the AVX2 dots of quant_avx2.c with two
 * 32- or 64-weight groups per instruction, so a block takes half the
 * unpacking, vpmaddubsw and vpmaddwd instructions (q4_0 and q4_1: two
 * blocks per pass, an odd last block through the AVX2 dot). One core (CPU
 * time, 512 x 2048 in cache): q4_k 50 -> 80 GFLOP/s, q6_k 34 -> 72. AVX-512
 * has no vpsignb, so q4_0's -8 comes off as 8 x the activations, as q6_k's
 * -32 does; the integer sums per block stay exact.
 */
#include "kernels/kern_internal.h"
#include "kernels/quant_simd.h"

/* Bytes 0..31 from p, 32..63 from q. */
static inline __m512i load_2x32(const int8_t *p, const int8_t *q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                              _mm256_loadu_si256((const __m256i *)q), 1);
}

/* int16 lane i of the 8 scales in every 128-bit lane of s8, for the low
 * 256 bits; lane j for the high 256 bits. */
static inline __m512i bcast16_2(__m512i s8, int i, int j) {
    __m256i mi = _mm256_set1_epi16((short)(((2 * i + 1) << 8) | (2 * i)));
    __m256i mj = _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j)));
    return _mm512_shuffle_epi8(s8, _mm512_inserti64x4(_mm512_castsi256_si512(mi), mj, 1));
}

/* Two 16-byte runs of nibbles -> 64 levels: per 256-bit half, the low
 * nibbles of its run in bytes 0..15 and the high ones in 16..31. */
static inline __m512i nibbles_2x16(const uint8_t *p, const uint8_t *q) {
    __m128i a = _mm_loadu_si128((const __m128i *)p), b = _mm_loadu_si128((const __m128i *)q);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(_mm_srli_epi16(a, 4), a)),
                                   _mm256_set_m128i(_mm_srli_epi16(b, 4), b), 1);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* Per-half scales: s for the low 8 lanes, t for the high 8. */
static inline __m512 halves_ps(float s, float t) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(s)), _mm256_castps_pd(_mm256_set1_ps(t)), 1));
}

/* int32 sums of 4 products of u8 levels and s8 activations. */
static inline __m512i dot4_u8s8(__m512i u, __m512i s) { return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)); }

float rm_kern_dot_q4_0_avx512(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_0 *x = xq;
    const rm_block_q4_0 *w = wv;
    const __m512i b8 = _mm512_set1_epi8(8);
    __m512 acc = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        __m512i q = nibbles_2x16(w[b].qs, w[b + 1].qs);
        __m512i a = load_2x32(x[b].qs, x[b + 1].qs);
        /* (q - 8) a = q a - 8 a, each pair sum within int16 (15 * 127 * 2) */
        __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(q, a), _mm512_maddubs_epi16(b8, a));
        __m512i s = _mm512_madd_epi16(p, _mm512_set1_epi16(1));
        __m512 d = halves_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d), _cvtsh_ss(w[b + 1].d) * _cvtsh_ss(x[b + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    return b < nb ? sum + rm_kern_dot_q4_0_avx2(x + b, w + b, 1) : sum;
}

float rm_kern_dot_q4_1_avx512(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_0 *x = xq;
    const rm_block_q4_1 *w = wv;
    const __m512i ones = _mm512_set1_epi8(1);
    __m512 acc = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        __m512i a = load_2x32(x[b].qs, x[b + 1].qs);
        __m512i p = dot4_u8s8(nibbles_2x16(w[b].qs, w[b + 1].qs), a), sx = dot4_u8s8(ones, a);
        float dx0 = _cvtsh_ss(x[b].d), dx1 = _cvtsh_ss(x[b + 1].d);
        acc = _mm512_fmadd_ps(halves_ps(_cvtsh_ss(w[b].d) * dx0, _cvtsh_ss(w[b + 1].d) * dx1), _mm512_cvtepi32_ps(p), acc);
        acc = _mm512_fmadd_ps(halves_ps(_cvtsh_ss(w[b].m) * dx0, _cvtsh_ss(w[b + 1].m) * dx1), _mm512_cvtepi32_ps(sx), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    return b < nb ? sum + rm_kern_dot_q4_1_avx2(x + b, w + b, 1) : sum;
}

/*
 * q4_k and q5_k (w5 NULL for q4_k): per pass p, chunks 2p and 2p + 1 in the
 * two 256-bit halves, their low nibbles (sub-blocks 4p, 4p + 2) in one
 * register and high nibbles (4p + 1, 4p + 3) in another. q5_k's fifth bit
 * of sub-block j is bit j of qh[l], added as 16 under a byte mask.
 */
static inline float dot_k45_avx512(const rm_block_q8_k *x, const rm_block_q4_k *w4, const rm_block_q5_k *w5,
                                   int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *scales = w4 ? w4[b].scales : w5[b].scales, *qs = w4 ? w4[b].qs : w5[b].qs;
        uint16_t d = w4 ? w4[b].d : w5[b].d, dmin = w4 ? w4[b].dmin : w5[b].dmin;
        __m256i sm = k4_scales_mins(scales);
        __m512i s8 = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm)); /* the 8 scales, 4 times */
        accm = _mm_fmadd_ps(_mm_set1_ps(x[b].d * _cvtsh_ss(dmin)), _mm_cvtepi32_ps(k4_min_dot(sm, x[b].bsums)), accm);
        __m512i hbits = w5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w5[b].qh)) : _mm512_setzero_si512();
        __m512i sumi = _mm512_setzero_si512();
        for (int p = 0; p < 2; p++) { /* chunks 2p and 2p + 1: sub-blocks 4p .. 4p + 3 */
            __m512i q = _mm512_loadu_si512((const void *)(qs + 64 * p));
            __m512i ql = _mm512_and_si512(q, m4), qh = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            if (w5) {
                __m512i blo = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * p))),
                                                 _mm256_set1_epi8((char)(1 << (4 * p + 2))), 1);
                __m512i bhi = _mm512_add_epi8(blo, blo); /* the next bit up: sub-blocks 4p + 1, 4p + 3 */
                ql = _mm512_mask_add_epi8(ql, _mm512_test_epi8_mask(hbits, blo), ql, b16);
                qh = _mm512_mask_add_epi8(qh, _mm512_test_epi8_mask(hbits, bhi), qh, b16);
            }
            const int8_t *a = x[b].qs + 128 * p;
            __m512i al = load_2x32(a, a + 64), ah = load_2x32(a + 32, a + 96);
            __m512i p0 = _mm512_madd_epi16(_mm512_maddubs_epi16(ql, al), bcast16_2(s8, 4 * p, 4 * p + 2));
            __m512i p1 = _mm512_madd_epi16(_mm512_maddubs_epi16(qh, ah), bcast16_2(s8, 4 * p + 1, 4 * p + 3));
            sumi = _mm512_add_epi32(sumi, _mm512_add_epi32(p0, p1));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(x[b].d * _cvtsh_ss(d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(m);
}

float rm_kern_dot_q4_k_avx512(const void *xq, const void *w, int64_t nb) { return dot_k45_avx512(xq, w, NULL, nb); }
float rm_kern_dot_q5_k_avx512(const void *xq, const void *w, int64_t nb) { return dot_k45_avx512(xq, NULL, w, nb); }

/* A shuffle mask picking int16 lane e_k of each 128-bit lane k. */
static inline __m512i lanes16(int e0, int e1, int e2, int e3) {
#define RM_IDX16(e) _mm_set1_epi16((short)(((2 * (e) + 1) << 8) | (2 * (e))))
    __m512i m = _mm512_castsi128_si512(RM_IDX16(e0));
    m = _mm512_inserti32x4(m, RM_IDX16(e1), 1);
    m = _mm512_inserti32x4(m, RM_IDX16(e2), 2);
    return _mm512_inserti32x4(m, RM_IDX16(e3), 3);
#undef RM_IDX16
}

/*
 * q6_k: two 32-weight groups per instruction. Groups g = 0, 1 are the low
 * nibbles of ql[0..32) and ql[32..64), groups 2, 3 their high nibbles; the
 * two high bits of group g are bits 2g, 2g + 1 of qh (shifted per 256-bit
 * half by vpsrlvw). Each 128-bit lane of 16 weights has its own scale.
 */
float rm_kern_dot_q6_k_avx512(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_k *x = xq;
    const rm_block_q6_k *w = wv;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3), m32 = _mm512_set1_epi8(32);
    const __m512i shift01 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i shift23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i pick01 = lanes16(0, 1, 2, 3), pick23 = lanes16(4, 5, 6, 7);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[b].scales));
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i s8 = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(s16, 1) : _mm256_castsi256_si128(s16));
            __m512i l = _mm512_loadu_si512((const void *)(w[b].ql + 64 * h));
            __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            const int8_t *a = x[b].qs + 128 * h;
            __m512i v01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, shift01), m2), 4));
            __m512i v23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, shift23), m2), 4));
            __m512i a01 = _mm512_loadu_si512((const void *)a), a23 = _mm512_loadu_si512((const void *)(a + 64));
            __m512i p01 = _mm512_sub_epi16(_mm512_maddubs_epi16(v01, a01), _mm512_maddubs_epi16(m32, a01));
            __m512i p23 = _mm512_sub_epi16(_mm512_maddubs_epi16(v23, a23), _mm512_maddubs_epi16(m32, a23));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p01, _mm512_shuffle_epi8(s8, pick01)));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p23, _mm512_shuffle_epi8(s8, pick23)));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(x[b].d * _cvtsh_ss(w[b].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/*
 * q8_K activation blocks with rm_kern_quantize_q8_k's bits: the largest
 * magnitude by a vector max, the signed value that first reaches it by a
 * compare per 16 (the scalar loop keeps the first of equal magnitudes), the
 * same f32 products rounded to nearest even by vcvtps2dq (as lrintf), and
 * each sum of 16 levels as the reduction of one register. The scalar form
 * called lrintf per element: 3.2 ns an element, about 1.3 ms of a TinyLlama
 * decode step (400k activations quantised per token).
 */
void rm_kern_quantize_q8_k_avx512(rm_block_q8_k *y, const float *x, int64_t k) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512i top = _mm512_set1_epi32(127);
    for (int64_t i = 0; i < k / RM_QK_K; i++, x += RM_QK_K) {
        __m512 vmax = _mm512_setzero_ps();
        /* |x| first: vmaxps returns its second operand when one is NaN, so a
         * NaN never becomes the maximum, as in the scalar loop */
        for (int j = 0; j < RM_QK_K; j += 16) vmax = _mm512_max_ps(_mm512_andnot_ps(sign, _mm512_loadu_ps(x + j)), vmax);
        float amax = _mm512_reduce_max_ps(vmax);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const __m512 va = _mm512_set1_ps(amax);
        int first = 0;
        for (int j = 0; j < RM_QK_K; j += 16) {
            __mmask16 m = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(x + j)), va, _CMP_EQ_OQ);
            if (m) {
                first = j + __builtin_ctz(m);
                break;
            }
        }
        float iscale = -127.f / x[first];
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int j = 0; j < RM_QK_K / 16; j++) {
            __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * j))), top);
            __m128i q8 = _mm512_cvtepi32_epi8(q); /* the int8 the scalar form stores (a NaN's INT_MIN becomes 0) */
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * j), q8);
            y[i].bsums[j] = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q8));
        }
        y[i].d = 1 / iscale;
    }
}
