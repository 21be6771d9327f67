/*
 * kern_scalar.c — portable kernels: the fallback on any x86-64 and the
 * tail code of the SIMD variants. Plain C with float accumulators (several
 * of them, so the compiler can keep the loops pipelined); results are within
 * float rounding of the double-precision references in ref.c.
 */
#include "kernels/kern_internal.h"

#include <math.h>

static float dot_f32(const float *x, const float *w, int64_t k) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        s0 += x[i] * w[i];
        s1 += x[i + 1] * w[i + 1];
        s2 += x[i + 2] * w[i + 2];
        s3 += x[i + 3] * w[i + 3];
    }
    for (; i < k; i++) s0 += x[i] * w[i];
    return (s0 + s1) + (s2 + s3);
}

static float dot_f16(const float *x, const uint16_t *w, int64_t k) {
    float s0 = 0, s1 = 0;
    int64_t i = 0;
    for (; i + 2 <= k; i += 2) {
        s0 += x[i] * rm_f16_to_f32(w[i]);
        s1 += x[i + 1] * rm_f16_to_f32(w[i + 1]);
    }
    for (; i < k; i++) s0 += x[i] * rm_f16_to_f32(w[i]);
    return s0 + s1;
}

/* An f16 activation row against one f16 or bf16 weight row (matmul.c's long rows). */
static inline float dot_half_x(const uint16_t *x, const uint16_t *w, int64_t k, bool w_bf16) {
    float s0 = 0, s1 = 0;
    int64_t i = 0;
#define WIDEN_W(v) (w_bf16 ? rm_bf16_to_f32(v) : rm_f16_to_f32(v))
    for (; i + 2 <= k; i += 2) {
        s0 += rm_f16_to_f32(x[i]) * WIDEN_W(w[i]);
        s1 += rm_f16_to_f32(x[i + 1]) * WIDEN_W(w[i + 1]);
    }
    for (; i < k; i++) s0 += rm_f16_to_f32(x[i]) * WIDEN_W(w[i]);
#undef WIDEN_W
    return s0 + s1;
}

static float dot_f16_f16(const uint16_t *x, const uint16_t *w, int64_t k) { return dot_half_x(x, w, k, false); }
static float dot_f16_bf16(const uint16_t *x, const uint16_t *w, int64_t k) { return dot_half_x(x, w, k, true); }

static float dot_bf16(const float *x, const uint16_t *w, int64_t k) {
    float s0 = 0, s1 = 0;
    int64_t i = 0;
    for (; i + 2 <= k; i += 2) {
        s0 += x[i] * rm_bf16_to_f32(w[i]);
        s1 += x[i + 1] * rm_bf16_to_f32(w[i + 1]);
    }
    for (; i < k; i++) s0 += x[i] * rm_bf16_to_f32(w[i]);
    return s0 + s1;
}

static float dot_q8_0(rm_q8_act x, const rm_block_q8_0 *w, int64_t nb) {
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t acc = 0;
        for (int j = 0; j < RM_Q8_0_BLOCK; j++) acc += (int32_t)x.q[b].qs[j] * w[b].qs[j];
        s += (float)acc * (x.d[b] * rm_f16_to_f32(w[b].d));
    }
    return s;
}

static void dot4_f32(const float *const x[4], int nr, const float *w, int64_t k, float *out) {
    for (int r = 0; r < nr; r++) out[r] = dot_f32(x[r], w, k);
}

static void dot4_f16(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out) {
    for (int r = 0; r < nr; r++) out[r] = dot_f16(x[r], w, k);
}

static void dot4_bf16(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out) {
    for (int r = 0; r < nr; r++) out[r] = dot_bf16(x[r], w, k);
}

static void dot4_q8_0(rm_q8_act x, int64_t ldx, const rm_block_q8_0 *w, int64_t nb, float *out) {
    for (int r = 0; r < 4; r++) {
        rm_q8_act xr = {x.q + r * ldx, x.a + r * ldx * RM_Q8_0_BLOCK, x.d + r * ldx};
        out[r] = dot_q8_0(xr, w, nb);
    }
}

float rm_kern_dot_f32_q8_0_scalar(const float *x, const rm_block_q8_0 *w, int64_t nb) {
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        float acc = 0;
        for (int j = 0; j < RM_Q8_0_BLOCK; j++) acc += x[b * RM_Q8_0_BLOCK + j] * w[b].qs[j];
        s += acc * rm_f16_to_f32(w[b].d);
    }
    return s;
}

/* ggml's quantize_row_q8_0_ref for one block. */
void rm_kern_quantize_block_q8_0(rm_block_q8_0 *dst, const float *src) {
    float amax = 0;
    for (int j = 0; j < RM_Q8_0_BLOCK; j++) amax = fmaxf(amax, fabsf(src[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    dst->d = rm_f32_to_f16(d);
    for (int j = 0; j < RM_Q8_0_BLOCK; j++) dst->qs[j] = (int8_t)roundf(src[j] * id);
}

static void f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = rm_f16_to_f32(src[i]);
}

static void f32_to_f16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = rm_f32_to_f16(src[i]);
}

static void bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = rm_bf16_to_f32(src[i]);
}

static void f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = rm_f32_to_bf16(src[i]);
}

static void q8_0_to_f32(float *dst, const rm_block_q8_0 *src, int64_t k) {
    for (int64_t b = 0; b < k / RM_Q8_0_BLOCK; b++) {
        float d = rm_f16_to_f32(src[b].d);
        for (int j = 0; j < RM_Q8_0_BLOCK; j++) dst[b * RM_Q8_0_BLOCK + j] = d * src[b].qs[j];
    }
}

static void f32_to_q8_0(rm_block_q8_0 *dst, const float *src, int64_t k) {
    for (int64_t b = 0; b < k / RM_Q8_0_BLOCK; b++)
        rm_kern_quantize_block_q8_0(&dst[b], src + b * RM_Q8_0_BLOCK);
}

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

static void softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = fmaxf(mx, x[i]);
    float sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void axpy(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale(float *y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static void add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

const rm_kern_ops rm_kern_ops_scalar = {
    .isa = RM_ISA_SCALAR,
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .dot_bf16 = dot_bf16,
    .dot_f16_f16 = dot_f16_f16,
    .dot_f16_bf16 = dot_f16_bf16,
    .dot_q8_0 = dot_q8_0,
    .dot4_f32 = dot4_f32,
    .dot4_f16 = dot4_f16,
    .dot4_bf16 = dot4_bf16,
    .dot4_q8_0 = dot4_q8_0,
    .dot_quant = {[RM_TYPE_Q4_0] = rm_kern_dot_q4_0_scalar, [RM_TYPE_Q4_1] = rm_kern_dot_q4_1_scalar,
                  [RM_TYPE_Q4_K] = rm_kern_dot_q4_k_scalar, [RM_TYPE_Q5_K] = rm_kern_dot_q5_k_scalar,
                  [RM_TYPE_Q6_K] = rm_kern_dot_q6_k_scalar},
    .dequant = {[RM_TYPE_Q4_0] = rm_kern_dequant_q4_0_scalar, [RM_TYPE_Q4_1] = rm_kern_dequant_q4_1_scalar,
                [RM_TYPE_Q4_K] = rm_kern_dequant_q4_k_scalar, [RM_TYPE_Q5_K] = rm_kern_dequant_q5_k_scalar,
                [RM_TYPE_Q6_K] = rm_kern_dequant_q6_k_scalar},
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
