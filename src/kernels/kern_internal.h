/*
 * kern_internal.h — private to src/kernels: the per-ISA table of kernel
 * functions that dispatch.c selects from, and the variants that fill it.
 *
 * Each ISA file (kern_scalar.c, kern_avx2.c, kern_avx512.c) exports one
 * const table. The public functions in ops.c/matmul.c/types.c call through
 * rm_kern_ops_get(), so rm_isa_set switches every kernel at once.
 * All "row" functions take element counts; block functions take blocks.
 */
#ifndef RM_KERN_INTERNAL_H
#define RM_KERN_INTERNAL_H

#include "kernels/kernels.h"

/*
 * An activation row quantised for the int8 dot products: the GGUF q8_0
 * blocks, plus two derived arrays that take work out of the hot loop — |qs|
 * as unsigned bytes (32 per block) and the scales widened to f32
 * (d[b] == rm_f16_to_f32(q[b].d)).
 */
typedef struct {
    const rm_block_q8_0 *q;
    const uint8_t *a;
    const float *d;
} rm_q8_act;

#define RM_KERN_SHORT_MAX_K 64

typedef struct {
    rm_isa isa;
    /* dot products of an f32 activation row with one weight row of k elements */
    float (*dot_f32)(const float *x, const float *w, int64_t k);
    float (*dot_f16)(const float *x, const uint16_t *w, int64_t k);
    float (*dot_bf16)(const float *x, const uint16_t *w, int64_t k);
    /* integer dot of nb q8_0 blocks of a quantised activation row with a weight row */
    float (*dot_q8_0)(rm_q8_act x, const rm_block_q8_0 *w, int64_t nb);
    /*
     * nr in 2..4 activation rows x[0 .. nr) against one weight row:
     * out[0 .. nr). Each weight vector is loaded and widened once for all
     * rows — the batched-decode kernel (x[] has 4 valid entries; unused ones
     * may repeat a row).
     */
    void (*dot4_f32)(const float *const x[4], int nr, const float *w, int64_t k, float *out);
    void (*dot4_f16)(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out);
    void (*dot4_bf16)(const float *const x[4], int nr, const uint16_t *w, int64_t k, float *out);
    /*
     * Short rows: y[i * ldy + r] = x_i . w_r for m activation rows against
     * n weight rows of k elements, k a multiple of 8 and at most
     * RM_KERN_SHORT_MAX_K (NULL where the ISA has no such kernel).
     */
    void (*short_f32)(const float *x, int64_t m, const float *w, int64_t n, int64_t k, float *y, int64_t ldy);
    void (*short_f16)(const float *x, int64_t m, const uint16_t *w, int64_t n, int64_t k, float *y, int64_t ldy);
    /* The same for q8_0: rows x, x + ldx, ... (ldx in blocks). */
    void (*dot4_q8_0)(rm_q8_act x, int64_t ldx, const rm_block_q8_0 *w, int64_t nb, float *out);
    /* bulk conversions (n elements; q8_0 functions take k = 32 * blocks) */
    void (*f16_to_f32)(float *dst, const uint16_t *src, int64_t n);
    void (*f32_to_f16)(uint16_t *dst, const float *src, int64_t n);
    void (*bf16_to_f32)(float *dst, const uint16_t *src, int64_t n);
    void (*f32_to_bf16)(uint16_t *dst, const float *src, int64_t n);
    void (*q8_0_to_f32)(float *dst, const rm_block_q8_0 *src, int64_t k);
    void (*f32_to_q8_0)(rm_block_q8_0 *dst, const float *src, int64_t k);
    /* row ops, same contracts as the public functions */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*softmax)(float *x, int64_t n);
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    void (*scale)(float *y, float a, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
} rm_kern_ops;

extern const rm_kern_ops rm_kern_ops_scalar;
extern const rm_kern_ops rm_kern_ops_avx2;
extern const rm_kern_ops rm_kern_ops_avx512;

/* The table of the current ISA (never NULL). */
const rm_kern_ops *rm_kern_ops_get(void);

/* The m at which rm_matmul switches from dot products to sgemm (tuning only;
 * not thread-safe against concurrent rm_matmul calls). */
void rm_kern_matmul_set_gemm_min_m(int m);
int  rm_kern_matmul_gemm_min_m(void);

/* Scalar helpers shared by the variants (tails, fallbacks). */
float rm_kern_dot_f32_q8_0_scalar(const float *x, const rm_block_q8_0 *w, int64_t nb);
void  rm_kern_quantize_block_q8_0(rm_block_q8_0 *dst, const float *src);

#endif
