/*
 * kern_avx2.c — AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c,
 * selected only when dispatch.c has seen those features).
 *
 * Dot products keep four 8-wide accumulators (32 elements per iteration) so
 * that FMA latency is hidden and the loop is bound by loads; f16 weights are
 * widened with vcvtph2ps, bf16 by a 16-bit shift. The q8_0 dot is ggml's
 * integer core (|x| as unsigned bytes times sign-adjusted w via maddubs,
 * pairs summed by madd into int32), with the per-block scaling batched four
 * blocks at a time (see dot_q8_0). Four-row variants (dot4_*) serve batched
 * decode: each weight vector is widened once for four activation rows. exp for
 * softmax/SwiGLU is a Cephes-style polynomial (about 1 ulp). Tails run the
 * same arithmetic one element at a time.
 */
#include "kernels/kern_internal.h"
#include "kernels/kern_avx256.h"

#include <immintrin.h>
#include <math.h>

static inline __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_f32(const float *x, const float *w, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(w + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(w + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(w + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(w + i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(w + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; i++) s += x[i] * w[i];
    return s;
}

static float dot_f16(const float *x, const uint16_t *w, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load_f16x8(w + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load_f16x8(w + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load_f16x8(w + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load_f16x8(w + i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load_f16x8(w + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; i++) s += x[i] * _cvtsh_ss(w[i]);
    return s;
}

/* An f16 activation row against one weight row (matmul.c's long rows). */
#define DOT_HALF_X_BODY(LOADW, WIDEN1)                                                              \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                     \
    int64_t i = 0;                                                                                  \
    for (; i + 32 <= k; i += 32) {                                                                  \
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), LOADW(w + i), a0);                                  \
        a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), LOADW(w + i + 8), a1);                          \
        a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), LOADW(w + i + 16), a2);                        \
        a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), LOADW(w + i + 24), a3);                        \
    }                                                                                               \
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(x + i), LOADW(w + i), a0);           \
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));                   \
    for (; i < k; i++) s += _cvtsh_ss(x[i]) * WIDEN1(w[i]);                                         \
    return s;

static float dot_f16_f16(const uint16_t *x, const uint16_t *w, int64_t k) {
    DOT_HALF_X_BODY(load_f16x8, _cvtsh_ss)
}

static float dot_f16_bf16(const uint16_t *x, const uint16_t *w, int64_t k) {
    DOT_HALF_X_BODY(load_bf16x8, rm_bf16_to_f32)
}

static float dot_bf16(const float *x, const uint16_t *w, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load_bf16x8(w + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load_bf16x8(w + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load_bf16x8(w + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load_bf16x8(w + i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load_bf16x8(w + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; i++) s += x[i] * rm_bf16_to_f32(w[i]);
    return s;
}

/*
 * Four activation rows against one weight row. Two 8-wide steps per
 * iteration and row (8 accumulators); LOADW(p) widens 8 weights to f32.
 */
#define DOT4_BODY(LOADW, SCALARW)                                                        \
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];             \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                           \
    int64_t i = 0;                                                                       \
    for (; i + 16 <= k; i += 16) {                                                       \
        __m256 w0 = LOADW(w + i), w1 = LOADW(w + i + 8);                                 \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), w0, a0);                           \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), w0, a1);                           \
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), w0, a2);                           \
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), w0, a3);                           \
        b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i + 8), w1, b0);                       \
        b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i + 8), w1, b1);                       \
        b2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i + 8), w1, b2);                       \
        b3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i + 8), w1, b3);                       \
    }                                                                                    \
    for (; i + 8 <= k; i += 8) {                                                         \
        __m256 w0 = LOADW(w + i);                                                        \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), w0, a0);                           \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), w0, a1);                           \
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), w0, a2);                           \
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), w0, a3);                           \
    }                                                                                    \
    out[0] = hsum8(_mm256_add_ps(a0, b0));                                               \
    out[1] = hsum8(_mm256_add_ps(a1, b1));                                               \
    out[2] = hsum8(_mm256_add_ps(a2, b2));                                               \
    out[3] = hsum8(_mm256_add_ps(a3, b3));                                               \
    for (; i < k; i++) {                                                                 \
        float wv = SCALARW(w[i]);                                                        \
        out[0] += x0[i] * wv, out[1] += x1[i] * wv, out[2] += x2[i] * wv, out[3] += x3[i] * wv; \
    }

/* Two rows: bound by widening W, so twice the work of one row for free. */
#define DOT2_BODY(LOADW, SCALARW)                                                        \
    const float *x0 = x[0], *x1 = x[1];                                                  \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;                          \
    int64_t i = 0;                                                                       \
    for (; i + 16 <= k; i += 16) {                                                       \
        __m256 w0 = LOADW(w + i), w1 = LOADW(w + i + 8);                                 \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), w0, a0);                           \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), w0, a1);                           \
        b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i + 8), w1, b0);                       \
        b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i + 8), w1, b1);                       \
    }                                                                                    \
    for (; i + 8 <= k; i += 8) {                                                         \
        __m256 w0 = LOADW(w + i);                                                        \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), w0, a0);                           \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), w0, a1);                           \
    }                                                                                    \
    out[0] = hsum8(_mm256_add_ps(a0, b0));                                               \
    out[1] = hsum8(_mm256_add_ps(a1, b1));                                               \
    for (; i < k; i++) {                                                                 \
        float wv = SCALARW(w[i]);                                                        \
        out[0] += x0[i] * wv, out[1] += x1[i] * wv;                                      \
    }

#define LOAD_F32X8(p) _mm256_loadu_ps(p)
#define SCALAR_F32(v) (v)

static void dot2_f32(const float *const x[4], const float *w, int64_t k, float *out) {
    DOT2_BODY(LOAD_F32X8, SCALAR_F32)
}

static void dot4_f32(const float *const x[4], int nr, const float *w, int64_t k, float *out) {
    if (nr <= 2) {
        dot2_f32(x, w, k, out);
        return;
    }
    DOT4_BODY(LOAD_F32X8, SCALAR_F32)
}

static void dot2_f16(const float *const x[4], const uint16_t *w, int64_t k, float *out) {
    DOT2_BODY(load_f16x8, _cvtsh_ss)
}

static void dot4_f16(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out) {
    if (nr <= 2) {
        dot2_f16(x, w, k, out);
        return;
    }
    DOT4_BODY(load_f16x8, _cvtsh_ss)
}

static void dot2_bf16(const float *const x[4], const uint16_t *w, int64_t k, float *out) {
    DOT2_BODY(load_bf16x8, rm_bf16_to_f32)
}

static void dot4_bf16(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out) {
    if (nr <= 2) {
        dot2_bf16(x, w, k, out);
        return;
    }
    DOT4_BODY(load_bf16x8, rm_bf16_to_f32)
}

static void f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(src + i));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void f32_to_f16(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

static void bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
    for (; i < n; i++) dst[i] = rm_bf16_to_f32(src[i]);
}

/* 8 floats to bf16 in the low 16 bits of each int32 lane (ggml's rule). */
static inline __m256i bf16_round8(__m256i u) {
    __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                       _mm256_set1_epi32(0x7f800000));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    return _mm256_blendv_epi8(r, q, isnan);
}

static void f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i lo = bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i)));
        __m256i hi = bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i + 8)));
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
        _mm256_storeu_si256((__m256i *)(dst + i), p);
    }
    for (; i < n; i++) dst[i] = rm_f32_to_bf16(src[i]);
}

static void q8_0_to_f32(float *dst, const rm_block_q8_0 *src, int64_t k) {
    for (int64_t b = 0; b < k / RM_Q8_0_BLOCK; b++) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(src[b].d));
        for (int j = 0; j < RM_Q8_0_BLOCK; j += 8) {
            __m128i q = _mm_loadl_epi64((const __m128i *)(src[b].qs + j));
            __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            _mm256_storeu_ps(dst + b * RM_Q8_0_BLOCK + j, _mm256_mul_ps(v, d));
        }
    }
}

/* e^x, Cephes polynomial on [-ln2/2, ln2/2]; x clamped above to keep 2^n
 * finite, and 0 below -87.33 (where expf is subnormal). */
static inline __m256 exp8(__m256 x) {
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33f), _CMP_LT_OQ); /* -> 0, as expf underflows */
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    float ss = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) ss += x[i] * x[i];
    float sc = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 vs = _mm256_set1_ps(sc);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = (x[i] * sc) * w[i];
}

static void softmax(float *x, int64_t n) {
    if (n <= 0) return;
    __m256 vm = _mm256_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float mx = _mm_cvtss_f32(m4);
    for (; i < n; i++) mx = fmaxf(mx, x[i]);
    __m256 vmx = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum8(vsum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
    for (; i < n; i++) x[i] *= inv;
}

static void swiglu(float *out, const float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void axpy(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void scale(float *y, float a, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

static void add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

const rm_kern_ops rm_kern_ops_avx2 = {
    .isa = RM_ISA_AVX2,
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
    .short_add_f32 = short_add_f32,
    .short_add_f16 = short_add_f16,
    .dot4_bf16 = dot4_bf16,
    .dot4_q8_0 = dot4_q8_0,
    RM_KERN_QUANT_OPS(avx2),
    .f16_to_f32 = f16_to_f32,
    .f32_to_f16 = f32_to_f16,
    .bf16_to_f32 = bf16_to_f32,
    .f32_to_bf16 = f32_to_bf16,
    .q8_0_to_f32 = q8_0_to_f32,
    .f32_to_q8_0 = f32_to_q8_0,
    .f32_to_q8_k = rm_kern_quantize_q8_k,
    .rmsnorm = rmsnorm,
    .softmax = softmax,
    .swiglu = swiglu,
    .axpy = axpy,
    .scale = scale,
    .add = add,
};
