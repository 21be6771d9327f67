/*
 * kernels.h — the numeric kernels of ramole: tensor element types, type
 * conversion, matmul/matvec against f32/f16/bf16/q8_0 and ggml's 4-6 bit
 * block weights (q4_0, q4_1, q4_k, q5_k, q6_k), rmsnorm, RoPE, softmax,
 * SwiGLU.
 *
 * Activations are always f32. Weights are row-major [n][k] (n output rows of
 * k inputs each, as nn.Linear stores them and as GGUF stores ne = {k, n}).
 * Every kernel has a naive reference (rm_*_ref) used by the tests; fast
 * variants (scalar, AVX2, AVX-512) are picked once at start-up by cpuid and
 * can be forced for tests with rm_isa_set.
 */
#ifndef RM_KERNELS_H
#define RM_KERNELS_H

#include "core/core.h"

/* ---- element types ------------------------------------------------------ */

typedef enum {
    RM_TYPE_F32 = 0,
    RM_TYPE_F16,
    RM_TYPE_BF16,
    RM_TYPE_Q8_0, /* GGUF block: f16 scale d, then 32 int8 q; x = d * q */
    RM_TYPE_Q4_0, /* ggml blocks of 32 and 256 weights, layouts below */
    RM_TYPE_Q4_1,
    RM_TYPE_Q4_K,
    RM_TYPE_Q5_K,
    RM_TYPE_Q6_K,
    RM_TYPE_COUNT
} rm_type;

#define RM_Q8_0_BLOCK 32
typedef struct {
    uint16_t d; /* f16 */
    int8_t qs[RM_Q8_0_BLOCK];
} rm_block_q8_0; /* 34 bytes, packed as in GGUF */

/*
 * The 4-6 bit blocks, byte for byte as ggml lays them out in GGUF (all
 * scales f16; "nibble" = 4 bits, low nibbles first). Dequantisation is
 * ggml's, to the bit (kernels/quant.c):
 *   q4_0: x[j] = (q[j] - 8) * d, q[j] the low nibble of qs[j] for j < 16
 *         and the high nibble of qs[j - 16] otherwise.
 *   q4_1: x[j] = q[j] * d + m, the same nibbles.
 *   q4_k: eight sub-blocks of 32 with 6-bit scale sc and min mn packed in
 *         scales[12]; x = (d * sc) * q - (dmin * mn). Chunk c of 64 weights
 *         takes the low nibbles of qs[32c .. 32c+32) (sub-block 2c), then
 *         the high nibbles (sub-block 2c + 1).
 *   q5_k: q4_k plus a fifth bit: bit 2c of qh[l] for the low half, bit
 *         2c + 1 for the high half of chunk c.
 *   q6_k: sixteen sub-blocks of 16 with int8 scales; x = (d * sc) * (q - 32),
 *         q = 4 bits of ql and 2 bits of qh (layout in kernels/quant.c).
 */
#define RM_QK_K 256
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} rm_block_q4_0; /* 18 bytes */
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} rm_block_q4_1; /* 20 bytes */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[RM_QK_K / 2];
} rm_block_q4_k; /* 144 bytes */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[RM_QK_K / 8];
    uint8_t qs[RM_QK_K / 2];
} rm_block_q5_k; /* 176 bytes */
typedef struct {
    uint8_t ql[RM_QK_K / 2];
    uint8_t qh[RM_QK_K / 4];
    int8_t scales[RM_QK_K / 16];
    uint16_t d;
} rm_block_q6_k; /* 210 bytes */

const char *rm_type_name(rm_type t);            /* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k" */
/* True for the block types (q8_0 and the 4-6 bit ones). */
bool        rm_type_is_quant(rm_type t);
bool        rm_type_from_name(const char *name, rm_type *out);
int64_t     rm_type_block_elems(rm_type t);     /* 32 for q8_0/q4_0/q4_1, 256 for the k-quants, else 1 */
size_t      rm_type_block_bytes(rm_type t);     /* 34 for q8_0, 144 for q4_k, ..., else element size */
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t      rm_type_row_bytes(rm_type t, int64_t n);

float    rm_f16_to_f32(uint16_t h);
uint16_t rm_f32_to_f16(float f); /* round to nearest even, IEEE inf/nan */
float    rm_bf16_to_f32(uint16_t h);
uint16_t rm_f32_to_bf16(float f); /* round to nearest even, nan stays nan */

/* Convert n elements (n a multiple of the block sizes involved).
 * Quantisation to q8_0 follows ggml: d = max|x| / 127, q = round(x / d).
 * Quantisation to q4_0, q4_1, q4_k, q5_k and q6_k follows ggml's reference
 * quantisers (no importance matrix): the block scales are searched to
 * minimise a weighted squared error. */
void rm_convert(rm_type dst_type, void *dst, rm_type src_type, const void *src, int64_t n);

/* ---- instruction-set dispatch --------------------------------------------- */

typedef enum { RM_ISA_SCALAR = 0, RM_ISA_AVX2, RM_ISA_AVX512, RM_ISA_COUNT } rm_isa;
const char *rm_isa_name(rm_isa isa);
bool   rm_isa_supported(rm_isa isa); /* by this CPU (cpuid + OS xsave state) */
rm_isa rm_isa_best(void);
rm_isa rm_isa_current(void);
/* Force a variant (tests, benchmarks). Fails if the CPU lacks it. */
rm_status rm_isa_set(rm_isa isa);

/* ---- matmul ------------------------------------------------------------- */

/*
 * Y[m][n] = X[m][k] . W[n][k]^T
 *   x: f32, m rows of k (row stride k); y: f32, m rows of n (row stride n);
 *   w: n rows of k elements of type wt (row stride rm_type_row_bytes(wt, k)).
 * For quantised weights, X is first quantised to 8 bits once per call (q8_0
 * blocks for q8_0/q4_0/q4_1 weights, blocks of 256 with an f32 scale and
 * sums of 16 for the k-quants, as llama.cpp does) and dot products run on
 * integers.
 *
 * Work is split over pool's threads. `work` is scratch of at least
 * rm_matmul_work_size(...) bytes reserved by the caller up front, so the
 * decode loop never allocates. Large m (>= 32) goes through OpenBLAS sgemm
 * on f32 panels of W (int8 GEMMs for q8_0/q4_k/q6_k with AVX-512 VNNI; for
 * f16/bf16 with AVX-512, from m = 16, a GEMM that widens W in registers);
 * small m through SIMD dot products (four X rows at a time). k must be a whole number of blocks of wt; otherwise Y is set to NaN
 * and an error is logged (a caller bug: shapes are checked at load time).
 */
typedef struct {
    rm_pool *pool;   /* NULL: run on the calling thread */
    void *work;      /* scratch */
    size_t work_size;
} rm_compute;

/*
 * Scratch bytes a call with these shapes on a pool of nthreads needs. Never
 * decreases as m grows, so the size for a model's largest batch covers every
 * smaller call. With less scratch rm_matmul still gives the right answer on
 * a slower path (and logs a warning once).
 */
size_t rm_matmul_work_size(rm_type wt, int64_t m, int64_t n, int64_t k, int nthreads);
void   rm_matmul(const rm_compute *c, float *y, const float *x, int64_t m,
                 const void *w, rm_type wt, int64_t n, int64_t k);
/*
 * Weights packed once at load for the GEMM kernels: for the int8 ones
 * (q4_k, q6_k and q8_0) tiles of 32 rows whose levels stay packed as in
 * the file (q4_k 148 bytes per 256 weights against the file's 144, q6_k 210
 * as in the file, q8_0 40 per 32 against 34), interleaved so that the
 * kernels read them directly; for f16 and bf16 the same 16-bit values as
 * tiles of 32 rows transposed to [k][32] (hgemm's layout), so that a batch
 * of a few rows reads W once. For prefill and decode alike.
 * rm_matmul_pack_bytes: size of the packed form of n rows of k (0: wt has
 * none). rm_matmul_pack_wanted: whether this CPU has the kernels that make
 * the packed form worth keeping (AVX-512 VNNI for the int8 types, AVX2 or
 * AVX-512 for f16/bf16). rm_matmul_pack writes it
 * (dst 64-byte aligned). rm_matmul_packed: Y as rm_matmul gives it, read
 * from `packed`; w (the same rows in the file's layout) is used only when
 * packed is NULL, the int8 path is switched off, or the scratch is short.
 */
size_t rm_matmul_pack_bytes(rm_type wt, int64_t n, int64_t k);
bool   rm_matmul_pack_wanted(rm_type wt);
void   rm_matmul_pack(void *dst, const void *w, rm_type wt, int64_t n, int64_t k);
void   rm_matmul_packed(const rm_compute *c, float *y, const float *x, int64_t m, const void *w,
                        const void *packed, rm_type wt, int64_t n, int64_t k);
/*
 * Y[i][r] = x_i . W[r] for i < m, r < n, where row i of X is at xrows[i]
 * (read in place: a LoRA group's tokens lie scattered in the batch) and Y
 * has row stride ldy; W is f32, f16 or bf16 [n][k]. The dot path on the
 * calling thread, for callers that split work over threads themselves.
 * Row i's result is the same whatever m is (one kernel for every count).
 */
void   rm_matmul_rows(float *y, int64_t ldy, const float *const *xrows, int64_t m, const void *w, rm_type wt,
                      int64_t n, int64_t k);
/*
 * Y_i += Z_i . W^T for i < m: row i of Z at zrows[i] (k elements), row i of
 * Y at yrows[i] (n elements), W f32, f16 or bf16 [n][k]. The LoRA expand:
 * each token's delta added where its row lies. On the calling thread; row
 * i's result is the same whatever m is.
 */
void   rm_matmul_rows_add(float *const *yrows, const float *const *zrows, int64_t m, const void *w, rm_type wt,
                          int64_t n, int64_t k);
/* Set OpenBLAS to run each call on its calling thread (ramole's pool splits
 * the work), once per process. Code that calls cblas directly calls it first:
 * OpenBLAS's own threads would fight the pool's, and two threads calling a
 * multi-threaded OpenBLAS at once (a loader beside the forward) race. */
void   rm_blas_init(void);
/* Naive reference: double accumulation, weights dequantised element-wise. */
void   rm_matmul_ref(float *y, const float *x, int64_t m, const void *w, rm_type wt,
                     int64_t n, int64_t k);

/* ---- element-wise and row ops (one row; callers split rows) -------------- */

/* y = x / sqrt(mean(x^2) + eps) * w; y may alias x. */
void rm_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
void rm_rmsnorm_ref(float *y, const float *x, const float *w, int64_t n, float eps);

/* In place, numerically stable (subtracts the max). */
void rm_softmax(float *x, int64_t n);
void rm_softmax_ref(float *x, int64_t n);

/* out[i] = silu(gate[i]) * up[i]; silu(g) = g / (1 + exp(-g)). out may alias. */
void rm_swiglu(float *out, const float *gate, const float *up, int64_t n);
void rm_swiglu_ref(float *out, const float *gate, const float *up, int64_t n);

/* Small vector helpers used by attention. */
float rm_vec_dot(const float *a, const float *b, int64_t n);
void  rm_vec_axpy(float *y, float a, const float *x, int64_t n); /* y += a x */
void  rm_vec_scale(float *y, float a, int64_t n);
void  rm_vec_add(float *y, const float *x, int64_t n);            /* y += x */

/* ---- RoPE --------------------------------------------------------------- */

typedef enum {
    RM_ROPE_NORMAL = 0, /* rotate pairs (2i, 2i+1): GPT-J / llama.cpp "normal" (GGUF llama) */
    RM_ROPE_NEOX,       /* rotate pairs (i, i + d/2): HF rotate_half (HF llama, qwen2) */
} rm_rope_style;

typedef enum {
    RM_ROPE_SCALING_NONE = 0,
    RM_ROPE_SCALING_LINEAR, /* positions divided by factor */
    RM_ROPE_SCALING_LLAMA3, /* per-frequency smoothing, as HF _compute_llama3_parameters */
} rm_rope_scaling;

typedef struct {
    rm_rope_style style;
    int n_rot;          /* rotated dims per head (= head_dim for the families here) */
    float theta;        /* rope_theta / freq_base */
    rm_rope_scaling scaling;
    float factor;       /* linear and llama3 */
    float low_freq_factor, high_freq_factor; /* llama3 */
    int original_max_pos;                    /* llama3 original_max_position_embeddings */
} rm_rope_params;

/* inv_freq[i] for i < n_rot/2, scaling applied (linear folds 1/factor in). */
void rm_rope_inv_freq(const rm_rope_params *p, float *inv_freq);
/*
 * Rotate n_heads heads of head_dim floats at x (contiguous) for position pos.
 * inv_freq from rm_rope_inv_freq.
 */
void rm_rope(float *x, int n_heads, int head_dim, int64_t pos, const rm_rope_params *p,
             const float *inv_freq);
void rm_rope_ref(float *x, int n_heads, int head_dim, int64_t pos, const rm_rope_params *p);

#endif /* RM_KERNELS_H */
