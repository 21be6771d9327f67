/*
 * kern_avx512.c — AVX-512 (F/BW/VL/DQ) kernels, selected at run time only on
 * CPUs and OSes that support them (dispatch.c).
 *
 * This file parallels kern_avx2.c line for line with 16-wide vectors; tails
 * use masked loads/stores instead of scalar loops. The q8_0 dot and the
 * q8_0 quantiser stay 256-bit (the AVX2 code, legal here since AVX-512F
 * implies AVX2): their cost is the memory stream, not the lane width, and
 * sharing the code keeps the bit-exact quantisation rule in one shape.
 */
#include "kernels/kern_internal.h"
#include "kernels/kern_avx256.h"

#include <immintrin.h>
#include <math.h>

static inline __mmask16 tail_mask(int64_t left) {
    return (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
}

static inline __m512 load_f16x16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_f16x16_mask(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __m512 load_bf16x16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static inline __m512 load_bf16x16_mask(const uint16_t *p, __mmask16 m) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static float dot_f32(const float *x, const float *w, int64_t k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(w + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(w + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(w + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(w + i + 48), a3);
    }
    for (; i < k; i += 16) {
        __mmask16 m = tail_mask(k - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, w + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float dot_f16(const float *x, const uint16_t *w, int64_t k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load_f16x16(w + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load_f16x16(w + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), load_f16x16(w + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), load_f16x16(w + i + 48), a3);
    }
    for (; i < k; i += 16) {
        __mmask16 m = tail_mask(k - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), load_f16x16_mask(w + i, m), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* An f16 activation row against one weight row (matmul.c's long rows). */
#define DOT_HALF_X_BODY(LOADW, LOADW_MASK)                                                        \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                   \
    int64_t i = 0;                                                                                \
    for (; i + 64 <= k; i += 64) {                                                                \
        a0 = _mm512_fmadd_ps(load_f16x16(x + i), LOADW(w + i), a0);                               \
        a1 = _mm512_fmadd_ps(load_f16x16(x + i + 16), LOADW(w + i + 16), a1);                     \
        a2 = _mm512_fmadd_ps(load_f16x16(x + i + 32), LOADW(w + i + 32), a2);                     \
        a3 = _mm512_fmadd_ps(load_f16x16(x + i + 48), LOADW(w + i + 48), a3);                     \
    }                                                                                             \
    for (; i < k; i += 16) {                                                                      \
        __mmask16 m = tail_mask(k - i);                                                           \
        a0 = _mm512_fmadd_ps(load_f16x16_mask(x + i, m), LOADW_MASK(w + i, m), a0);               \
    }                                                                                             \
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));

static float dot_f16_f16(const uint16_t *x, const uint16_t *w, int64_t k) {
    DOT_HALF_X_BODY(load_f16x16, load_f16x16_mask)
}

static float dot_f16_bf16(const uint16_t *x, const uint16_t *w, int64_t k) {
    DOT_HALF_X_BODY(load_bf16x16, load_bf16x16_mask)
}

static float dot_bf16(const float *x, const uint16_t *w, int64_t k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load_bf16x16(w + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load_bf16x16(w + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), load_bf16x16(w + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), load_bf16x16(w + i + 48), a3);
    }
    for (; i < k; i += 16) {
        __mmask16 m = tail_mask(k - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), load_bf16x16_mask(w + i, m), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Four activation rows against one weight row (see kern_avx2.c). */
/* W bytes fetched ahead. The rows of an adapter's A (a few rows of 4-11
 * KB, then another adapter's) are streams too short for the hardware
 * prefetchers, which start again at every 4 KB page: decode's shrink
 * products ran at 3-4 GB/s without it. */
#define RM_DOT_PREFETCH 2048
#define DOT4_BODY(LOADW, LOADW_MASK)                                                     \
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];             \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
    int64_t i = 0;                                                                       \
    for (; i + 16 <= k; i += 16) {                                                       \
        _mm_prefetch((const char *)(w + i) + RM_DOT_PREFETCH, _MM_HINT_T0);              \
        __m512 w0 = LOADW(w + i);                                                        \
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + i), w0, a0);                           \
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x1 + i), w0, a1);                           \
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x2 + i), w0, a2);                           \
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x3 + i), w0, a3);                           \
    }                                                                                    \
    if (i < k) {                                                                         \
        __mmask16 m = tail_mask(k - i);                                                  \
        __m512 w0 = LOADW_MASK(w + i, m);                                                \
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x0 + i), w0, a0);                  \
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x1 + i), w0, a1);                  \
        a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x2 + i), w0, a2);                  \
        a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x3 + i), w0, a3);                  \
    }                                                                                    \
    out[0] = _mm512_reduce_add_ps(a0);                                                   \
    out[1] = _mm512_reduce_add_ps(a1);                                                   \
    out[2] = _mm512_reduce_add_ps(a2);                                                   \
    out[3] = _mm512_reduce_add_ps(a3);

#define DOT2_BODY(LOADW, LOADW_MASK)                                                     \
    const float *x0 = x[0], *x1 = x[1];                                                  \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                            \
    int64_t i = 0;                                                                       \
    for (; i + 16 <= k; i += 16) {                                                       \
        _mm_prefetch((const char *)(w + i) + RM_DOT_PREFETCH, _MM_HINT_T0);              \
        __m512 w0 = LOADW(w + i);                                                        \
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + i), w0, a0);                           \
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x1 + i), w0, a1);                           \
    }                                                                                    \
    if (i < k) {                                                                         \
        __mmask16 m = tail_mask(k - i);                                                  \
        __m512 w0 = LOADW_MASK(w + i, m);                                                \
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x0 + i), w0, a0);                  \
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x1 + i), w0, a1);                  \
    }                                                                                    \
    out[0] = _mm512_reduce_add_ps(a0);                                                   \
    out[1] = _mm512_reduce_add_ps(a1);

#define LOAD_F32X16(p) _mm512_loadu_ps(p)
#define LOAD_F32X16_MASK(p, m) _mm512_maskz_loadu_ps(m, p)

static void dot2_f32(const float *const x[4], const float *w, int64_t k, float *out) {
    DOT2_BODY(LOAD_F32X16, LOAD_F32X16_MASK)
}

static void dot4_f32(const float *const x[4], int nr, const float *w, int64_t k, float *out) {
    if (nr <= 2) {
        dot2_f32(x, w, k, out);
        return;
    }
    DOT4_BODY(LOAD_F32X16, LOAD_F32X16_MASK)
}

static void dot2_f16(const float *const x[4], const uint16_t *w, int64_t k, float *out) {
    DOT2_BODY(load_f16x16, load_f16x16_mask)
}

static void dot4_f16(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out) {
    if (nr <= 2) {
        dot2_f16(x, w, k, out);
        return;
    }
    DOT4_BODY(load_f16x16, load_f16x16_mask)
}

static void dot2_bf16(const float *const x[4], const uint16_t *w, int64_t k, float *out) {
    DOT2_BODY(load_bf16x16, load_bf16x16_mask)
}

static void dot4_bf16(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out) {
    if (nr <= 2) {
        dot2_bf16(x, w, k, out);
        return;
    }
    DOT4_BODY(load_bf16x16, load_bf16x16_mask)
}

static void f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, load_f16x16_mask(src + i, m));
    }
}

static void f32_to_f16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(dst + i, m, h);
    }
}

static void bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, load_bf16x16_mask(src + i, m));
    }
}

static void f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512i u = _mm512_maskz_loadu_epi32(m, src + i);
        __mmask16 isnan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), inf);
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
        r = _mm512_mask_blend_epi32(isnan, r, q);
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(r));
    }
}

static void q8_0_to_f32(float *dst, const rm_block_q8_0 *src, int64_t k) {
    for (int64_t b = 0; b < k / RM_Q8_0_BLOCK; b++) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(src[b].d));
        for (int j = 0; j < RM_Q8_0_BLOCK; j += 16) {
            __m128i q = _mm_loadu_si128((const __m128i *)(src[b].qs + j));
            __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
            _mm512_storeu_ps(dst + b * RM_Q8_0_BLOCK + j, _mm512_mul_ps(v, d));
        }
    }
}

static inline __m512 exp16(__m512 x) {
    __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33f), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps((__mmask16)~tiny, p, _mm512_castsi512_ps(e));
}

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        acc = _mm512_fmadd_ps(v, v, acc);
    }
    float sc = 1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)n + eps);
    __m512 vs = _mm512_set1_ps(sc);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
    }
}

static void softmax(float *x, int64_t n) {
    if (n <= 0) return;
    __m512 vm = _mm512_set1_ps(x[0]);
    for (int64_t i = 0; i < n; i += 16)
        vm = _mm512_mask_max_ps(vm, tail_mask(n - i), vm, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmx)));
        _mm512_mask_storeu_ps(x + i, m, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    __m512 vi = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vi));
    }
}

static void swiglu(float *out, const float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

static void axpy(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

static void scale(float *y, float a, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

/* y[0 .. 16) += a where om is set (the same f32 additions for a whole or a partial block) */
static inline void add16(float *y, __m512 a, __mmask16 om) {
    _mm512_mask_storeu_ps(y, om, _mm512_add_ps(_mm512_maskz_loadu_ps(om, y), a));
}

/* kern_avx256.h's short_add_rows8 with one zmm of sixteen sums per row. */
static inline __attribute__((always_inline)) void short_add_rows16(float *const *y, const float *const *z, int R,
                                                                   const __m512 *wt, int64_t k, __mmask16 om) {
    __m512 a[8];
    _Pragma("GCC unroll 8") for (int q = 0; q < R; q++) a[q] = _mm512_setzero_ps();
    for (int64_t c = 0; c < k; c++) {
        __m512 v = wt[c];
        _Pragma("GCC unroll 8") for (int q = 0; q < R; q++) a[q] = _mm512_fmadd_ps(_mm512_set1_ps(z[q][c]), v, a[q]);
    }
    _Pragma("GCC unroll 8") for (int q = 0; q < R; q++) add16(y[q], a[q], om);
}

/*
 * Short rows added in place, sixteen W rows a block: kern_avx256.h's
 * SHORT_ADD (each block widened and transposed once into L1, as two 8x8
 * halves joined, then broadcast FMAs per row) with one zmm of sums per
 * row, so that each broadcast and each load of wt feeds twice the
 * products. A row's sums do not depend on m.
 */
#define SHORT_ADD16(NAME, WT, WT8)                                                                           \
    static void NAME(float *const *y, const float *const *z, int64_t m, const WT *w, int64_t n, int64_t k) {   \
        __m512 wt[RM_KERN_SHORT_MAX_K];                                                                      \
        float *yr[8];                                                                                        \
        for (int64_t r0 = 0; r0 < n; r0 += 16) {                                                             \
            int nb = n - r0 < 16 ? (int)(n - r0) : 16;                                                       \
            const WT *wb = w + r0 * k;                                                                       \
            for (int64_t b = 0; b < (int64_t)(16 * k * sizeof(WT)); b += 64)                                 \
                _mm_prefetch((const char *)wb + SHORT_PREFETCH + b, _MM_HINT_T0);                            \
            for (int64_t c0 = 0; c0 < k; c0 += 8) {                                                          \
                __m256 lo[8], hi[8];                                                                         \
                WT8(lo, wb, k, c0, nb < 8 ? nb : 8);                                                         \
                WT8(hi, wb + 8 * k, k, c0, nb > 8 ? nb - 8 : 0);                                             \
                for (int j = 0; j < 8; j++)                                                                  \
                    wt[c0 + j] = _mm512_insertf32x8(_mm512_castps256_ps512(lo[j]), hi[j], 1);                \
            }                                                                                                \
            __mmask16 om = (__mmask16)(nb == 16 ? 0xffff : (1u << nb) - 1);                                  \
            SHORT_ROW_BLOCKS(short_add_rows16, om);                                                          \
        }                                                                                                    \
    }
SHORT_ADD16(short_add16_f32, float, short_wt8_f32)
SHORT_ADD16(short_add16_f16, uint16_t, short_wt8_f16)
#undef SHORT_ADD16

const rm_kern_ops rm_kern_ops_avx512 = {
    .isa = RM_ISA_AVX512,
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .dot_bf16 = dot_bf16,
    .dot_f16_f16 = dot_f16_f16,
    .dot_f16_bf16 = dot_f16_bf16,
    .dot_q8_0 = dot_q8_0,
    .dot4_f32 = dot4_f32,
    .dot4_f16 = dot4_f16,
    .short_f32 = short_rows_f32,
    .short_f16 = short_rows_f16,
    .short_add_f32 = short_add16_f32,
    .short_add_f16 = short_add16_f16,
    .dot4_bf16 = dot4_bf16,
    .dot4_q8_0 = dot4_q8_0,
    RM_KERN_QUANT_OPS(avx512),
    .f16_to_f32 = f16_to_f32,
    .f32_to_f16 = f32_to_f16,
    .bf16_to_f32 = bf16_to_f32,
    .f32_to_bf16 = f32_to_bf16,
    .q8_0_to_f32 = q8_0_to_f32,
    .f32_to_q8_0 = f32_to_q8_0,
    .f32_to_q8_k = rm_kern_quantize_q8_k_avx512,
    .rmsnorm = rmsnorm,
    .softmax = softmax,
    .swiglu = swiglu,
    .axpy = axpy,
    .scale = scale,
    .add = add,
};
