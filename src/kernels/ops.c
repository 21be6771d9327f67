/*
 * ops.c — row ops (rmsnorm, softmax, SwiGLU, vector helpers) through the
 * current ISA's table, and RoPE.
 *
 * RoPE follows Hugging Face's float32 arithmetic so that logits match
 * transformers closely: inv_freq[i] = 1 / theta^(2i/d) in float, scaling
 * folded into inv_freq (linear: / factor; llama3: HF's
 * _compute_llama3_parameters), angle = (float)pos * inv_freq[i] in float,
 * then cos/sin of that float angle (computed in double, rounded once).
 * The cos/sin of a position are computed once and applied to every head.
 */
#include "kernels/kern_internal.h"

#include <math.h>

void rm_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    rm_kern_ops_get()->rmsnorm(y, x, w, n, eps);
}

void rm_softmax(float *x, int64_t n) { rm_kern_ops_get()->softmax(x, n); }

void rm_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    rm_kern_ops_get()->swiglu(out, gate, up, n);
}

float rm_vec_dot(const float *a, const float *b, int64_t n) { return rm_kern_ops_get()->dot_f32(a, b, n); }
void rm_vec_axpy(float *y, float a, const float *x, int64_t n) { rm_kern_ops_get()->axpy(y, a, x, n); }
void rm_vec_scale(float *y, float a, int64_t n) { rm_kern_ops_get()->scale(y, a, n); }
void rm_vec_add(float *y, const float *x, int64_t n) { rm_kern_ops_get()->add(y, x, n); }

/* HF _compute_llama3_parameters for one frequency, in float as torch does. */
static float rope_llama3_scale(const rm_rope_params *p, float inv) {
    const float pi = 3.141592653589793f;
    float wavelen = 2.0f * pi / inv;
    float low_wavelen = (float)p->original_max_pos / p->low_freq_factor;
    float high_wavelen = (float)p->original_max_pos / p->high_freq_factor;
    if (wavelen > low_wavelen) return inv / p->factor;
    if (wavelen < high_wavelen) return inv;
    float smooth = ((float)p->original_max_pos / wavelen - p->low_freq_factor) /
                   (p->high_freq_factor - p->low_freq_factor);
    return (1.0f - smooth) * inv / p->factor + smooth * inv;
}

/* inv_freq[0 .. n_rot/2) as HF computes it in float32, scaling folded in. */
void rm_rope_inv_freq(const rm_rope_params *p, float *inv_freq) {
    int half = p->n_rot / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)p->n_rot;
        float inv = 1.0f / powf(p->theta, e);
        if (p->scaling == RM_ROPE_SCALING_LINEAR) inv = inv / p->factor;
        else if (p->scaling == RM_ROPE_SCALING_LLAMA3) inv = rope_llama3_scale(p, inv);
        inv_freq[i] = inv;
    }
}

/* Rotate the pairs of one head with precomputed cos/sin for pairs [i0, i1). */
static void rope_head(float *v, int half, rm_rope_style style, const float *c, const float *s, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        int a = style == RM_ROPE_NEOX ? i : 2 * i;
        int b = style == RM_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c[i - i0] - x1 * s[i - i0];
        v[b] = x0 * s[i - i0] + x1 * c[i - i0];
    }
}

/*
 * Rotate the first n_rot dims of each of n_heads heads in place; dims past
 * n_rot pass through. cos/sin are computed once per call, in chunks of 128
 * pairs, and shared by all heads.
 */
void rm_rope(float *x, int n_heads, int head_dim, int64_t pos, const rm_rope_params *p, const float *inv_freq) {
    enum { CHUNK = 128 };
    float c[CHUNK], s[CHUNK];
    int n_rot = p->n_rot < head_dim ? p->n_rot : head_dim;
    int half = n_rot / 2;
    for (int i0 = 0; i0 < half; i0 += CHUNK) { /* one chunk for every head_dim <= 256 */
        int i1 = half - i0 < CHUNK ? half : i0 + CHUNK;
        for (int i = i0; i < i1; i++) {
            float angle = (float)pos * inv_freq[i];
            c[i - i0] = (float)cos((double)angle);
            s[i - i0] = (float)sin((double)angle);
        }
        for (int h = 0; h < n_heads; h++) rope_head(x + (size_t)h * head_dim, half, p->style, c, s, i0, i1);
    }
}
