/*
 * ref.c — the naive references every fast kernel is tested against.
 *
 * Written for obviousness, not speed: double accumulation, weights
 * dequantised one element at a time with the scalar conversions, RoPE from
 * its textbook definition in double (frequencies, scaling and angles all
 * recomputed here, independently of ops.c).
 */
#include "kernels/kern_internal.h"

#include <math.h>
#include <stdlib.h>

/* Element j of weight row `row` (k elements) of type wt, as a double. */
static double weight_at(const void *w, rm_type wt, int64_t k, int64_t row, int64_t j) {
    const uint8_t *base = (const uint8_t *)w + (size_t)row * rm_type_row_bytes(wt, k);
    switch (wt) {
    case RM_TYPE_F32: return ((const float *)base)[j];
    case RM_TYPE_F16: return rm_f16_to_f32(((const uint16_t *)base)[j]);
    case RM_TYPE_BF16: return rm_bf16_to_f32(((const uint16_t *)base)[j]);
    case RM_TYPE_Q8_0: {
        const rm_block_q8_0 *b = (const rm_block_q8_0 *)base + j / RM_Q8_0_BLOCK;
        return (double)rm_f16_to_f32(b->d) * b->qs[j % RM_Q8_0_BLOCK];
    }
    default: return NAN;
    }
}

/* Row j of W as doubles: element by element, or (4-6 bit blocks) through
 * the exact scalar dequantisation of quant.c, one block at a time. */
static void weight_row(double *dst, const void *w, rm_type wt, int64_t k, int64_t row) {
    if (!rm_type_is_quant(wt) || wt == RM_TYPE_Q8_0) {
        for (int64_t l = 0; l < k; l++) dst[l] = weight_at(w, wt, k, row, l);
        return;
    }
    const uint8_t *base = (const uint8_t *)w + (size_t)row * rm_type_row_bytes(wt, k);
    int64_t be = rm_type_block_elems(wt);
    float blk[RM_QK_K];
    for (int64_t b = 0; b < k / be; b++) {
        rm_kern_dequantize(wt, blk, base + (size_t)b * rm_type_block_bytes(wt), be);
        for (int64_t l = 0; l < be; l++) dst[b * be + l] = blk[l];
    }
}

void rm_matmul_ref(float *y, const float *x, int64_t m, const void *w, rm_type wt, int64_t n, int64_t k) {
    double *row = malloc((size_t)k * sizeof *row);
    if (!row) { /* a test helper: say so rather than return garbage */
        for (int64_t i = 0; i < m * n; i++) y[i] = NAN;
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        weight_row(row, w, wt, k, j);
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) s += (double)x[i * k + l] * row[l];
            y[i * n + j] = (float)s;
        }
    }
    free(row);
}

void rm_rmsnorm_ref(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (float)(x[i] * scale * w[i]);
}

void rm_softmax_ref(float *x, int64_t n) {
    if (n <= 0) return;
    double mx = x[0], sum = 0;
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(exp((double)x[i] - mx) / sum);
}

void rm_swiglu_ref(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i];
        out[i] = (float)(g / (1.0 + exp(-g)) * up[i]);
    }
}

/* Frequency of pair i in double, with the scaling rule applied. */
static double rope_freq_ref(const rm_rope_params *p, int i) {
    double inv = 1.0 / pow((double)p->theta, (2.0 * i) / p->n_rot);
    if (p->scaling == RM_ROPE_SCALING_LINEAR) return inv / p->factor;
    if (p->scaling != RM_ROPE_SCALING_LLAMA3) return inv;
    double wavelen = 2.0 * M_PI / inv;
    double low_wavelen = p->original_max_pos / (double)p->low_freq_factor;
    double high_wavelen = p->original_max_pos / (double)p->high_freq_factor;
    if (wavelen < high_wavelen) return inv;             /* high frequency: kept */
    if (wavelen > low_wavelen) return inv / p->factor;  /* low frequency: scaled */
    double smooth = (p->original_max_pos / wavelen - p->low_freq_factor) /
                    (p->high_freq_factor - p->low_freq_factor);
    return (1.0 - smooth) * inv / p->factor + smooth * inv;
}

void rm_rope_ref(float *x, int n_heads, int head_dim, int64_t pos, const rm_rope_params *p) {
    int half = p->n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            double a = (double)pos * rope_freq_ref(p, i);
            int i0 = p->style == RM_ROPE_NEOX ? i : 2 * i;
            int i1 = p->style == RM_ROPE_NEOX ? i + half : 2 * i + 1;
            double x0 = v[i0], x1 = v[i1];
            v[i0] = (float)(x0 * cos(a) - x1 * sin(a));
            v[i1] = (float)(x0 * sin(a) + x1 * cos(a));
        }
    }
}
