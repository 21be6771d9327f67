/*
 * qgemm_avx2.c — the q8_0 multi-row kernel with AVX2: the 16 columns of a
 * tile group as four 256-bit quarters, one activation row per pass. AVX2 has
 * no unsigned-by-signed dot into int32 without 16-bit saturation, so it
 * uses the sign trick (|x| unsigned against sign(x) w, as the dot path
 * does), vpmaddubsw then vpmaddwd, and needs no correction term; the int32
 * block sums are the same integers as the VNNI kernel's, so the results are
 * the same bits. Weight levels of -128 (which ggml's quantiser never
 * writes) would wrap under vpsignb, as on the dot path.
 */
#include "kernels/qgemm.h"

#include <immintrin.h>
#include <string.h>

/* One activation row against the 32 columns, as four 8-column quarters. */
void rm_qgemm_q8_0_avx2(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile, int64_t nb,
                        float *y, int64_t ldy, int nc) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    int64_t ldd = ldx / RM_Q8_0_BLOCK;
    for (int r = 0; r < nr; r++) {
        __m256 acc[4];
        for (int q = 0; q < 4; q++) acc[q] = _mm256_setzero_ps();
        const uint8_t *xr = xu + r * ldx;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = tile + (size_t)b * RM_QGEMM_TILE_BLOCK;
            __m256i s[4];
            for (int q = 0; q < 4; q++) s[q] = _mm256_setzero_si256();
            for (int g = 0; g < 8; g++) {
                int32_t word;
                memcpy(&word, xr + b * RM_Q8_0_BLOCK + 4 * g, 4);
                __m256i xs = _mm256_xor_si256(_mm256_set1_epi32(word), flip), ax = _mm256_abs_epi8(xs);
                for (int q = 0; q < 4; q++) {
                    __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 128 * g + 32 * q));
                    s[q] = _mm256_add_epi32(s[q], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, xs)), ones));
                }
            }
            __m256 dx = _mm256_set1_ps(xd[r * ldd + b]);
            for (int q = 0; q < 4; q++) {
                __m256 dw = _mm256_loadu_ps((const float *)(blk + RM_QGEMM_D_AT + 32 * q));
                acc[q] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[q]), _mm256_mul_ps(dw, dx), acc[q]);
            }
        }
        float out[RM_QGEMM_TILE_COLS];
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(out + 8 * q, acc[q]);
        for (int c = 0; c < nc; c++) y[r * ldy + c] = out[c];
    }
}
