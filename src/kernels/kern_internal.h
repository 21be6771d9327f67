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

/* One X row against f16 or bf16 weight rows longer than this is rounded to f16
 * (times a power of two) before the dots: f32 X and a W row no longer share
 * L1 (matmul.c). */
#define RM_KERN_HALF_X_MIN_K 4096

/*
 * An activation row quantised for the k-quant dot products (ggml's q8_K):
 * 256 int8 values with one f32 scale (x ~ d * qs) and the sums of each run
 * of 16 qs, which fold the k-quants' mins and offsets into 16 products.
 */
typedef struct {
    float d;
    int8_t qs[RM_QK_K];
    int16_t bsums[RM_QK_K / 16];
} rm_block_q8_k; /* 292 bytes */

/*
 * Integer dot of nb weight blocks of one type with a quantised activation
 * row: xq is rm_block_q8_0 blocks (q4_0, q4_1) or rm_block_q8_k blocks (the
 * k-quants), as rm_kern_act_* describes.
 */
typedef float (*rm_qdot_fn)(const void *xq, const void *w, int64_t nb);
/* Dequantise k elements (whole blocks) of one 4-6 bit type to f32. */
typedef void (*rm_dequant_fn)(float *dst, const void *src, int64_t k);

typedef struct {
    rm_isa isa;
    /* dot products of an f32 activation row with one weight row of k elements */
    float (*dot_f32)(const float *x, const float *w, int64_t k);
    float (*dot_f16)(const float *x, const uint16_t *w, int64_t k);
    float (*dot_bf16)(const float *x, const uint16_t *w, int64_t k);
    /* an f16 activation row with one f16 weight row (f32 products and sums):
     * half the activation bytes, for rows too long for x and w to share L1 */
    float (*dot_f16_f16)(const uint16_t *x, const uint16_t *w, int64_t k);
    /* the same against one bf16 weight row */
    float (*dot_f16_bf16)(const uint16_t *x, const uint16_t *w, int64_t k);
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
    /* The same products added to rows in place: y[i][r] += z[i] . w_r for
     * i < m, r < n (row i at y[i], z[i]); row i's sums do not depend on m. */
    void (*short_add_f32)(float *const *y, const float *const *z, int64_t m, const float *w, int64_t n, int64_t k);
    void (*short_add_f16)(float *const *y, const float *const *z, int64_t m, const uint16_t *w, int64_t n,
                          int64_t k);
    /* The same for q8_0: rows x, x + ldx, ... (ldx in blocks). */
    void (*dot4_q8_0)(rm_q8_act x, int64_t ldx, const rm_block_q8_0 *w, int64_t nb, float *out);
    /* the 4-6 bit weights against a quantised activation row, by weight type
     * (NULL for f32/f16/bf16/q8_0, which have the kernels above) */
    rm_qdot_fn dot_quant[RM_TYPE_COUNT];
    /* their dequantisation, bit-identical on every ISA (quant.c's arithmetic) */
    rm_dequant_fn dequant[RM_TYPE_COUNT];
    /* bulk conversions (n elements; q8_0 functions take k = 32 * blocks) */
    void (*f16_to_f32)(float *dst, const uint16_t *src, int64_t n);
    void (*f32_to_f16)(uint16_t *dst, const float *src, int64_t n);
    void (*bf16_to_f32)(float *dst, const uint16_t *src, int64_t n);
    void (*f32_to_bf16)(uint16_t *dst, const float *src, int64_t n);
    void (*q8_0_to_f32)(float *dst, const rm_block_q8_0 *src, int64_t k);
    void (*f32_to_q8_0)(rm_block_q8_0 *dst, const float *src, int64_t k);
    /* activations to q8_K blocks (k = 256 * blocks), rm_kern_quantize_q8_k's
     * bits on every ISA */
    void (*f32_to_q8_k)(rm_block_q8_k *dst, const float *src, int64_t k);
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

/* The m at which rm_matmul leaves the dot products for wt's GEMM on the
 * current ISA (q8_0's int8 GEMM starts sooner than sgemm). Setting m > 0
 * makes it m for every type, 0 restores the measured thresholds (tuning
 * and tests only; not thread-safe against concurrent rm_matmul calls). */
void rm_kern_matmul_set_gemm_min_m(int m);
int  rm_kern_matmul_gemm_min_m(rm_type wt);
/* Whether q8_0, q4_k and q6_k weights (with AVX-512 VNNI) take the
 * int8 GEMM path (qgemm.c) from that m on, instead of dequantised panels and
 * sgemm (on by default; off for tuning and tests only). */
void rm_kern_matmul_set_int8_gemm(bool on);
bool rm_kern_matmul_int8_gemm(void);
/* Whether f16 and bf16 weights take the GEMM that widens them in registers
 * (hgemm.c, where the ISA has one) from that m on, instead of widened panels
 * and sgemm (on by default; off for tuning and tests only). */
void rm_kern_matmul_set_hgemm(bool on);
bool rm_kern_matmul_hgemm(void);
/* The m at which f16/bf16 weights switch from dot products to that GEMM
 * (where it runs; tuning and tests only, as above). */
void rm_kern_matmul_set_hgemm_min_m(int m);
int  rm_kern_matmul_hgemm_min_m(void);
/* Whether one X row against f16/bf16 rows longer than RM_KERN_HALF_X_MIN_K
 * is rounded to f16 first (on by default; off for benchmarks only). */
void rm_kern_matmul_set_half_x(bool on);
bool rm_kern_matmul_half_x(void);
/* Make rm_matmul_pack_wanted true for every type with a packed form,
 * whatever the CPU (tests of the packed path on CPUs without AVX-512 VNNI,
 * where the scalar tile kernels then run). Off by default. */
void rm_kern_matmul_set_pack_always(bool on);

/* Scalar helpers shared by the variants (tails, fallbacks). */
float rm_kern_dot_f32_q8_0_scalar(const float *x, const rm_block_q8_0 *w, int64_t nb);
void  rm_kern_quantize_block_q8_0(rm_block_q8_0 *dst, const float *src);

/* ---- 4-6 bit blocks (quant.c): one scalar definition shared by every ISA -- */

/* The eight 6-bit scales and mins of a q4_k/q5_k block (12 packed bytes):
 * sub-block j < 4 in the low six bits of bytes j and j + 4; j >= 4 split
 * into a nibble of byte j + 4 and the top two bits of bytes j - 4 and j. */
static inline void rm_kern_unpack_k4(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

/* Dequantise k elements (whole blocks) of a q4_0..q6_k row into dst: ggml's
 * arithmetic, bit for bit (no fused multiply-adds); the scalar definition,
 * which the reference and the tests use (kernels use ops->dequant). */
void rm_kern_dequantize(rm_type t, float *dst, const void *src, int64_t k);
/* Quantise k elements (whole blocks) with ggml's reference quantisers. */
void rm_kern_quantize(rm_type t, void *dst, const float *src, int64_t k);
/* ggml's q8_K activation quantiser for k elements (k a multiple of 256). */
void rm_kern_quantize_q8_k(rm_block_q8_k *dst, const float *x, int64_t k);
/* Bytes of one quantised activation row of k elements for weights of type
 * wt (q8_0 blocks for q8_0/q4_0/q4_1, q8_K blocks for the k-quants). */
size_t rm_kern_act_row_bytes(rm_type wt, int64_t k);
/* Quantise one activation row for weights of type wt into dst. */
void rm_kern_act_quantize(const rm_kern_ops *ops, rm_type wt, void *dst, const float *x, int64_t k);

/* The scalar dots (the reference the SIMD dots are tested against). */
float rm_kern_dot_q4_0_scalar(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q4_1_scalar(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q4_k_scalar(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q5_k_scalar(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q6_k_scalar(const void *xq, const void *w, int64_t nb);
/* The scalar dequantisers, one per type (rm_kern_dequantize's pieces). */
void rm_kern_dequant_q4_0_scalar(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q4_1_scalar(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q4_k_scalar(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q5_k_scalar(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q6_k_scalar(float *dst, const void *src, int64_t k);
/* AVX2 dequantisers: the same operations in the same order, 8 lanes wide. */
void rm_kern_dequant_q4_0_avx2(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q4_1_avx2(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q4_k_avx2(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q5_k_avx2(float *dst, const void *src, int64_t k);
void rm_kern_dequant_q6_k_avx2(float *dst, const void *src, int64_t k);
/* AVX2 dots (quant_avx2.c; the AVX-512 table shares them). */
float rm_kern_dot_q4_0_avx2(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q4_1_avx2(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q4_k_avx2(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q5_k_avx2(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q6_k_avx2(const void *xq, const void *w, int64_t nb);

/* The dots with 512-bit registers (quant_avx512.c). */
float rm_kern_dot_q4_0_avx512(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q4_1_avx512(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q4_k_avx512(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q5_k_avx512(const void *xq, const void *w, int64_t nb);
float rm_kern_dot_q6_k_avx512(const void *xq, const void *w, int64_t nb);
/* rm_kern_quantize_q8_k with 512-bit registers, the same bits (quant_avx512.c). */
void rm_kern_quantize_q8_k_avx512(rm_block_q8_k *dst, const float *x, int64_t k);

/* The 4-6 bit entries of the AVX2 and the AVX-512 tables: each table's own
 * dots (ISA the name suffix), the AVX2 dequantisers for both. */
#define RM_KERN_QUANT_OPS(ISA)                                                                              \
    .dot_quant = {[RM_TYPE_Q4_0] = rm_kern_dot_q4_0_##ISA, [RM_TYPE_Q4_1] = rm_kern_dot_q4_1_##ISA,           \
                  [RM_TYPE_Q4_K] = rm_kern_dot_q4_k_##ISA, [RM_TYPE_Q5_K] = rm_kern_dot_q5_k_##ISA,           \
                  [RM_TYPE_Q6_K] = rm_kern_dot_q6_k_##ISA},                                                 \
    .dequant = {[RM_TYPE_Q4_0] = rm_kern_dequant_q4_0_avx2, [RM_TYPE_Q4_1] = rm_kern_dequant_q4_1_avx2,       \
                [RM_TYPE_Q4_K] = rm_kern_dequant_q4_k_avx2, [RM_TYPE_Q5_K] = rm_kern_dequant_q5_k_avx2,       \
                [RM_TYPE_Q6_K] = rm_kern_dequant_q6_k_avx2}

#endif
