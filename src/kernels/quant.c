/*
 * quant.c — ggml's 4-6 bit block formats: dequantisation, quantisation, the
 * 8-bit activation quantiser of the k-quants, and scalar integer dots.
 *
 * Dequantisation is the definition of the formats, so it reproduces ggml's
 * arithmetic exactly: each value is one float multiply of the block (or
 * sub-block) scale by the integer level, then one float add or subtract of
 * the offset, never fused (the library is built as ISO C, where GCC does not
 * contract a*b+c into an FMA). The tests compare it bit for bit with an
 * independent re-implementation. One scalar definition serves every ISA:
 * it runs once per weight at load or conversion time, and per panel on the
 * sgemm path, where sgemm dominates.
 *
 * Quantisation follows ggml's reference quantisers (no importance matrix),
 * so a file ramole writes holds what llama-quantize would write from the
 * same f32 weights, up to float rounding in the scale search:
 *   q4_0  d = -max/8 (max the value of largest magnitude), q = x/d + 8;
 *   q4_1  d = (max - min)/15, m = min, q = (x - m)/d;
 *   q4_k  per 32: a weighted least-squares search of scale and min over 20
 *         candidate grids (weights rms + |x|), then the 8 scales and 8 mins
 *         quantised to 6 bits against the block's largest of each;
 *   q5_k  the same with 31 levels and 15 grids;
 *   q6_k  per 16: a symmetric scale search weighted by x^2, then the 16
 *         scales quantised to int8 against the largest.
 *
 * Activations for the k-quants are quantised per 256 to int8 with an f32
 * scale (ggml's q8_K: iscale = -127/max, clamped to 127) plus the sums of
 * each run of 16, so the mins and the -32 offset of q6_k cost 16 products
 * per block instead of 256.
 */
#include "kernels/kern_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

_Static_assert(sizeof(rm_block_q4_0) == 18, "q4_0 block must be 18 bytes as in GGUF");
_Static_assert(sizeof(rm_block_q4_1) == 20, "q4_1 block must be 20 bytes as in GGUF");
_Static_assert(sizeof(rm_block_q4_k) == 144, "q4_k block must be 144 bytes as in GGUF");
_Static_assert(sizeof(rm_block_q5_k) == 176, "q5_k block must be 176 bytes as in GGUF");
_Static_assert(sizeof(rm_block_q6_k) == 210, "q6_k block must be 210 bytes as in GGUF");
_Static_assert(sizeof(rm_block_q8_k) == 292, "q8_K block must be 292 bytes as in ggml");

static inline float h2f(uint16_t h) { return rm_f16_to_f32(h); }

/* Round to nearest, ties to even (ggml's nearest_int, for |f| < 2^22). */
static inline int nearest_int(float f) { return (int)lrintf(f); }

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* The inverse of rm_kern_unpack_k4. */
static void pack_scale_min_k4(uint8_t *q, const int *ls, const int *lm) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = (uint8_t)ls[j];
            q[j + 4] = (uint8_t)lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* ---- dequantisation -------------------------------------------------------- */

static void dequant_q4_0(float *y, const rm_block_q4_0 *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(float *y, const rm_block_q4_1 *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (x[i].qs[j] & 0xF) * d + m;
            y[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* q4_k and q5_k share everything but the fifth bit (qh NULL for q4_k). */
static void dequant_k45(float *y, float d, float dmin, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh) {
    uint8_t sc[8], mn[8];
    rm_kern_unpack_k4(scales, sc, mn);
    for (int c = 0; c < 4; c++, y += 64) {
        float d1 = d * sc[2 * c], m1 = dmin * mn[2 * c];
        float d2 = d * sc[2 * c + 1], m2 = dmin * mn[2 * c + 1];
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            int h1 = qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0;
            y[l] = d1 * ((q[l] & 0xF) + h1) - m1;
        }
        for (int l = 0; l < 32; l++) {
            int h2 = qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
            y[l + 32] = d2 * ((q[l] >> 4) + h2) - m2;
        }
    }
}

/* q6_k: half h of the block (128 weights) takes ql[64h ..), qh[32h ..) and
 * scales[8h ..); weight 32g + l of the half (g < 4, l < 32) is the low (g
 * even) or high (g odd) nibble of ql[l + 32 (g & 1)] and bits 2g, 2g+1 of
 * qh[l], with scale 2g + l/16. */
static inline int q6_level(const uint8_t *ql, const uint8_t *qh, int g, int l) {
    int lo = g < 2 ? ql[l + 32 * g] & 0xF : ql[l + 32 * (g - 2)] >> 4;
    return (lo | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
}

static void dequant_q6_k(float *y, const rm_block_q6_k *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(x[i].d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++) y[32 * g + l] = d * sc[2 * g + l / 16] * q6_level(ql, qh, g, l);
        }
    }
}

void rm_kern_dequant_q4_0_scalar(float *dst, const void *src, int64_t k) { dequant_q4_0(dst, src, k / 32); }
void rm_kern_dequant_q4_1_scalar(float *dst, const void *src, int64_t k) { dequant_q4_1(dst, src, k / 32); }
void rm_kern_dequant_q6_k_scalar(float *dst, const void *src, int64_t k) { dequant_q6_k(dst, src, k / RM_QK_K); }

void rm_kern_dequant_q4_k_scalar(float *dst, const void *src, int64_t k) {
    const rm_block_q4_k *x = src;
    for (int64_t i = 0; i < k / RM_QK_K; i++)
        dequant_k45(dst + i * RM_QK_K, h2f(x[i].d), h2f(x[i].dmin), x[i].scales, x[i].qs, NULL);
}

void rm_kern_dequant_q5_k_scalar(float *dst, const void *src, int64_t k) {
    const rm_block_q5_k *x = src;
    for (int64_t i = 0; i < k / RM_QK_K; i++)
        dequant_k45(dst + i * RM_QK_K, h2f(x[i].d), h2f(x[i].dmin), x[i].scales, x[i].qs, x[i].qh);
}

void rm_kern_dequantize(rm_type t, float *dst, const void *src, int64_t k) {
    switch (t) {
    case RM_TYPE_Q4_0: rm_kern_dequant_q4_0_scalar(dst, src, k); break;
    case RM_TYPE_Q4_1: rm_kern_dequant_q4_1_scalar(dst, src, k); break;
    case RM_TYPE_Q4_K: rm_kern_dequant_q4_k_scalar(dst, src, k); break;
    case RM_TYPE_Q5_K: rm_kern_dequant_q5_k_scalar(dst, src, k); break;
    case RM_TYPE_Q6_K: rm_kern_dequant_q6_k_scalar(dst, src, k); break;
    default: break;
    }
}

/* ---- quantisation ---------------------------------------------------------- */

static void quant_q4_0(rm_block_q4_0 *y, const float *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        float d = max / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = rm_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = imin(15, (int8_t)(x[j] * id + 8.5f)), q1 = imin(15, (int8_t)(x[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void quant_q4_1(rm_block_q4_1 *y, const float *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) min = x[j] < min ? x[j] : min, max = x[j] > max ? x[j] : max;
        float d = (max - min) / 15, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = rm_f32_to_f16(d);
        y[i].m = rm_f32_to_f16(min);
        for (int j = 0; j < 16; j++) {
            int q0 = imin(15, (int8_t)((x[j] - min) * id + 0.5f));
            int q1 = imin(15, (int8_t)((x[j + 16] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/*
 * Scale and min (returned as a non-negative "min" to subtract) of n values
 * on levels 0..nmax, minimising sum w (scale l + min - x)^2: start from the
 * plain max-min grid, then try nstep + 1 grids of nmax + rmin + rdelta is
 * steps, each refitted by weighted least squares. L gets the levels.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, float rmin,
                           float rdelta, int nstep) {
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        L[i] = (uint8_t)l;
        float diff = scale * l + min - x[i];
        best += w[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* One q4_k (nmax 15) or q5_k (nmax 31) block: fills d, dmin, scales and the
 * levels L[256] for the caller to pack. */
static void quant_k45(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out, uint16_t *dmin_out,
                      uint8_t *scales, uint8_t *L) {
    float mins[8], sc[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        sc[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    int ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = imin(63, nearest_int(inv_scale * sc[j]));
        lm[j] = imin(63, nearest_int(inv_min * mins[j]));
    }
    pack_scale_min_k4(scales, ls, lm);
    *d_out = rm_f32_to_f16(max_scale / 63.f);
    *dmin_out = rm_f32_to_f16(max_min / 63.f);
    uint8_t s[8], m[8];
    rm_kern_unpack_k4(scales, s, m);
    for (int j = 0; j < 8; j++) { /* requantise against the scales as stored */
        float d = h2f(*d_out) * s[j];
        if (d == 0.0f) continue;
        float dm = h2f(*dmin_out) * m[j];
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

static void quant_q4_k(rm_block_q4_k *y, const float *x, int64_t nb) {
    uint8_t L[RM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += RM_QK_K) {
        quant_k45(x, 15, -1.0f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + l + 32] << 4));
    }
}

static void quant_q5_k(rm_block_q5_k *y, const float *x, int64_t nb) {
    uint8_t L[RM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += RM_QK_K) {
        quant_k45(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int l1 = L[64 * c + l], l2 = L[64 * c + l + 32];
                if (l1 > 15) l1 -= 16, y[i].qh[l] |= (uint8_t)(1 << (2 * c));
                if (l2 > 15) l2 -= 16, y[i].qh[l] |= (uint8_t)(2 << (2 * c));
                y[i].qs[32 * c + l] = (uint8_t)(l1 | (l2 << 4));
            }
    }
}

/*
 * Symmetric scale of n values on levels -nmax..nmax-1 (L gets level + nmax),
 * weighted by x^2: the max-magnitude grid, then 18 neighbouring grids, the
 * one with the best least-squares fit kept.
 */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quant_q6_k(rm_block_q6_k *y, const float *x, int64_t nb) {
    int8_t L[RM_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += RM_QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = fit_scale_sym(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs) max_abs = fabsf(scales[ib]), max_scale = scales[ib];
        }
        memset(&y[i], 0, sizeof y[i]);
        if (max_abs < 1e-15f) continue; /* all zero: d = 0 */
        float iscale = -128.f / max_scale;
        y[i].d = rm_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) y[i].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            float d = h2f(y[i].d) * y[i].scales[j];
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

void rm_kern_quantize(rm_type t, void *dst, const float *src, int64_t k) {
    int64_t nb = k / rm_type_block_elems(t);
    switch (t) {
    case RM_TYPE_Q4_0: quant_q4_0(dst, src, nb); break;
    case RM_TYPE_Q4_1: quant_q4_1(dst, src, nb); break;
    case RM_TYPE_Q4_K: quant_q4_k(dst, src, nb); break;
    case RM_TYPE_Q5_K: quant_q5_k(dst, src, nb); break;
    case RM_TYPE_Q6_K: quant_q6_k(dst, src, nb); break;
    default: break;
    }
}

/* ---- activations ------------------------------------------------------------- */

void rm_kern_quantize_q8_k(rm_block_q8_k *y, const float *x, int64_t k) {
    for (int64_t i = 0; i < k / RM_QK_K; i++, x += RM_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < RM_QK_K; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0.0f) continue;
        float iscale = -127.f / max;
        for (int j = 0; j < RM_QK_K; j++) y[i].qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < RM_QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

static bool act_is_q8_k(rm_type wt) { return wt == RM_TYPE_Q4_K || wt == RM_TYPE_Q5_K || wt == RM_TYPE_Q6_K; }

size_t rm_kern_act_row_bytes(rm_type wt, int64_t k) {
    if (act_is_q8_k(wt)) return (size_t)(k / RM_QK_K) * sizeof(rm_block_q8_k);
    return rm_type_row_bytes(RM_TYPE_Q8_0, k);
}

void rm_kern_act_quantize(const rm_kern_ops *ops, rm_type wt, void *dst, const float *x, int64_t k) {
    if (act_is_q8_k(wt)) ops->f32_to_q8_k(dst, x, k);
    else ops->f32_to_q8_0(dst, x, k);
}

/* ---- scalar integer dots ---------------------------------------------------- */

float rm_kern_dot_q4_0_scalar(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_0 *x = xq;
    const rm_block_q4_0 *w = wv;
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((w[b].qs[j] & 0xF) - 8) * x[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + 16];
        s += (float)sumi * (h2f(w[b].d) * h2f(x[b].d));
    }
    return s;
}

float rm_kern_dot_q4_1_scalar(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_0 *x = xq;
    const rm_block_q4_1 *w = wv;
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int sumi = 0, sumx = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (w[b].qs[j] & 0xF) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + 16];
            sumx += x[b].qs[j] + x[b].qs[j + 16];
        }
        float dx = h2f(x[b].d);
        s += (float)sumi * (h2f(w[b].d) * dx) + (float)sumx * (h2f(w[b].m) * dx);
    }
    return s;
}

/* q4_k / q5_k: sum_j sc_j (q . x)_j and sum_j mn_j (sums of x)_j per block. */
static float dot_k45(const rm_block_q8_k *x, uint16_t d, uint16_t dmin, const uint8_t *scales, const uint8_t *qs,
                     const uint8_t *qh) {
    int sumi = 0, summ = 0;
    uint8_t sc[8], mn[8];
    rm_kern_unpack_k4(scales, sc, mn);
    for (int c = 0; c < 4; c++) {
        int sc0 = sc[2 * c], mn0 = mn[2 * c], sc1 = sc[2 * c + 1], mn1 = mn[2 * c + 1], i0 = 0, i1 = 0;
        const uint8_t *q = qs + 32 * c;
        const int8_t *a = x->qs + 64 * c;
        for (int l = 0; l < 32; l++) {
            int h0 = qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0, h1 = qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
            i0 += ((q[l] & 0xF) + h0) * a[l];
            i1 += ((q[l] >> 4) + h1) * a[l + 32];
        }
        sumi += sc0 * i0 + sc1 * i1;
        summ += mn0 * (x->bsums[4 * c] + x->bsums[4 * c + 1]) + mn1 * (x->bsums[4 * c + 2] + x->bsums[4 * c + 3]);
    }
    return x->d * h2f(d) * (float)sumi - x->d * h2f(dmin) * (float)summ;
}

float rm_kern_dot_q4_k_scalar(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_k *x = xq;
    const rm_block_q4_k *w = wv;
    float s = 0;
    for (int64_t b = 0; b < nb; b++) s += dot_k45(&x[b], w[b].d, w[b].dmin, w[b].scales, w[b].qs, NULL);
    return s;
}

float rm_kern_dot_q5_k_scalar(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_k *x = xq;
    const rm_block_q5_k *w = wv;
    float s = 0;
    for (int64_t b = 0; b < nb; b++) s += dot_k45(&x[b], w[b].d, w[b].dmin, w[b].scales, w[b].qs, w[b].qh);
    return s;
}

float rm_kern_dot_q6_k_scalar(const void *xq, const void *wv, int64_t nb) {
    const rm_block_q8_k *x = xq;
    const rm_block_q6_k *w = wv;
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *a = x[b].qs + 128 * h, *sc = w[b].scales + 8 * h;
            for (int g = 0; g < 4; g++)
                for (int half = 0; half < 2; half++) {
                    int is = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) is += q6_level(ql, qh, g, l) * a[32 * g + l];
                    sumi += sc[2 * g + half] * is;
                }
        }
        s += x[b].d * h2f(w[b].d) * (float)sumi;
    }
    return s;
}
