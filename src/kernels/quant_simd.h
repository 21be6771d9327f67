/*
 * quant_simd.h — private to src/kernels: helpers shared by the AVX2 and
 * AVX-512 block kernels (quant_avx2.c, quant_avx512.c); include only from
 * files built with at least AVX2.
 */
#ifndef RM_QUANT_SIMD_H
#define RM_QUANT_SIMD_H

#include <immintrin.h>
#include <string.h>

#include "kernels/kern_internal.h"

/*
 * The twelve packed bytes of 6-bit scales and mins as 16 int16: scales of
 * sub-blocks 0..7 in lanes 0..7, mins in lanes 8..15. Done on 32-bit words:
 * word 0 of the result is the low six bits of bytes 0..3; word 1 the
 * nibbles of bytes 8..11 under the top two bits of bytes 0..3; word 2 the
 * low six bits of bytes 4..7; word 3 the high nibbles of bytes 8..11 under
 * the top two bits of bytes 4..7 (the layout of rm_kern_unpack_k4).
 */
static inline __m256i k4_scales_mins(const uint8_t *packed) {
    uint32_t w[3], u[4];
    memcpy(w, packed, 12);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    u[0] = w[0] & low6;
    u[1] = (w[2] & low4) | (((w[0] >> 6) & low2) << 4);
    u[2] = w[1] & low6;
    u[3] = ((w[2] >> 4) & low4) | (((w[1] >> 6) & low2) << 4);
    return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)u));
}

/* mins (lanes 8..15 of sm) . pair sums of the activations' bsums: four
 * int32 partial sums of sum_j mn_j (bsums[2j] + bsums[2j + 1]). */
static inline __m128i k4_min_dot(__m256i sm, const int16_t *bsums) {
    __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), pairs);
}

#endif
