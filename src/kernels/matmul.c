/*
 * matmul.c — Y = X W^T over the thread pool.
 *
 * Four paths, chosen per call by the weights' type and m (X's rows):
 *
 *  - Dot path (m below the GEMM paths' thresholds: decode and short batches). Memory
 *    bound: every weight byte should be read once per call. Threads take
 *    contiguous blocks of W rows (split of n by (ith, nth)) and walk them in
 *    tiles of 8 rows, dotting X rows four at a time (two-row and padded
 *    four-row kernels for leftovers) against each W row while the tile is
 *    in L1/L2. For q8_0 weights X is first quantised to q8_0 into the
 *    caller's scratch (once per call, rows split over the pool) and the dots
 *    run on int8, as llama.cpp; for the 4-6 bit weights the same, to q8_0
 *    (q4_0, q4_1) or q8_K blocks (the k-quants). One X row against f16 or
 *    bf16 weights with long rows is first rounded to f16 (RM_KERN_HALF_X_MIN_K).
 *
 *  - int8 GEMM path (q8_0 weights from m = RM_MM_QGEMM_MIN_M, q4_k / q6_k
 *    from RM_MM_GEMM_MIN_M or every m once packed at load, where the CPU has
 *    AVX-512 VNNI): X is quantised once per call (q8_0 or
 *    q8_K), each thread repacks 32 W rows at a time into a tile in its
 *    slice of the scratch and runs it against all X rows (qgemm.c). About
 *    1.4-1.7x the sgemm path's GFLOP/s on one Zen 4 core.
 *
 *  - f16/bf16 GEMM path (m >= 16, f16 and bf16 weights, where the CPU has
 *    AVX-512): W widened in registers, never in memory (hgemm.c). About
 *    1.7x the sgemm path's GFLOP/s on one AVX-512 core.
 *
 *  - GEMM path (m >= RM_MM_GEMM_MIN_M: prefill). Compute bound: each thread
 *    converts panels of its W rows to f32 in its own slice of the scratch
 *    (the 4-6 bit blocks with quant.c's exact dequantisation)
 *    and calls single-threaded OpenBLAS sgemm on (X, panel); f32 weights go
 *    to sgemm directly. OpenBLAS's own threading is switched off once, since
 *    the parallelism is ours.
 *
 * Scratch: rm_matmul_work_size gives the worst case of a call, and it never
 * shrinks as m grows, so sizing for the largest m of a model covers every
 * smaller call. If a caller passes less, rm_matmul still computes the right
 * answer on a path that needs no scratch (slower) and logs a warning once.
 */
#include "kernels/kern_internal.h"
#include "kernels/hgemm.h"
#include "kernels/qgemm.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int num_threads);

/*
 * Below this many activation rows the dot path beats sgemm on widened
 * panels. 2 Zen cores, 5632x2048 (bench_kernels --crossover), GFLOP/s dot
 * vs sgemm: f16 m=16 32 vs 23, m=32 33 vs 30, m=48 34 vs 34; q8_0 m=16 27
 * vs 22, m=32 41 vs 44.
 */
#define RM_MM_GEMM_MIN_M 32

/*
 * q8_0 weights leave the dot path for the int8 GEMM far sooner: the GEMM
 * reads each weight tile once for all rows, where the dot path's int8 dots
 * stay at 60-140 GFLOP/s whatever m. 2 AVX-512 VNNI Zen cores, the four
 * TinyLlama shapes from DRAM (bench_kernels --crossover), GFLOP/s GEMM vs
 * dot: m=4 46-128 vs 61-129 (dot ahead on three), m=5 78-153 vs 68-133
 * (GEMM ahead on all four), m=8 94-206 vs 74-134, m=16 190-287 vs 84-133.
 */
#define RM_MM_QGEMM_MIN_M 5

/* 0: each path's own crossover above; else one m for every path (tests and benchmarks) */
static int g_gemm_min_m;

void rm_kern_matmul_set_gemm_min_m(int m) { g_gemm_min_m = m < 0 ? 0 : m; }

/*
 * GEMM panels: OpenBLAS sgemm (X . panel^T) runs ~3x faster once the panel
 * has >= ~470 rows on this class of CPU (12 vs 33 GFLOP/s at m = 512 on
 * one Zen core, measured with a plain sgemm loop over panel sizes 16..2048),
 * so a thread's W rows are cut into panels of
 * 512..1023 rows (fewer if the thread has fewer rows).
 */
#define RM_MM_PANEL_TARGET 512
#define RM_MM_PANEL_MIN_ROWS 16

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

/* Rows per panel for a thread owning `chunk` W rows. */
static int64_t panel_rows(int64_t chunk) {
    if (chunk < 2 * RM_MM_PANEL_TARGET) return chunk;
    int64_t np = chunk / RM_MM_PANEL_TARGET;
    return (chunk + np - 1) / np;
}

static int64_t chunk_rows(int64_t n, int nth) { return (n + nth - 1) / nth; }

/*
 * A matrix-vector product streams W once and reads all of x again for every
 * W row, so x and one W row must share L1. With an f32 x (4 bytes per
 * element against W's 2) that fails past k of about 5000 on the AMD EPYC
 * bench host: x's lines are evicted before their next use and come back
 * from L2 against the W stream. Measured on one core, weights from DRAM,
 * GB/s with f32 x / x in f16 / a plain read of the same bytes: 2048 x 5632
 * (TinyLlama ffn_down) 32 / 40 / 45; 5632 x 2048 (ffn_up) 41 / 40 / 45.
 * Reading W rows in k-blocks, or several rows at once, keeps x in L1 but
 * breaks the single sequential W stream, which costs more (18-30 GB/s).
 *
 * So one X row against f16 or bf16 weights with k > RM_KERN_HALF_X_MIN_K
 * is scaled by a power of two (its largest magnitude lands in [2^14, 2^15):
 * no overflow, no subnormals lost) and rounded to f16 once per call;
 * products and sums stay f32. That adds a relative error of at most 2^-12
 * per product, the size of the rounding already in f16 weights and an
 * eighth of bf16's (llama.cpp rounds X to f16 for every f16 product and to
 * bf16 for bf16 ones).
 */
static bool g_half_x = true;

void rm_kern_matmul_set_half_x(bool on) { g_half_x = on; }
bool rm_kern_matmul_half_x(void) { return g_half_x; }

static bool half_x_wanted(rm_type wt, int64_t m, int64_t k) {
    return (wt == RM_TYPE_F16 || wt == RM_TYPE_BF16) && m == 1 && k > RM_KERN_HALF_X_MIN_K;
}

static size_t half_x_bytes(int64_t k) { return align64((size_t)k * 2); }

/*
 * x (k elements) times a power of two, rounded to f16 into dst; *unscale
 * undoes the power of two. False when x is all zero or holds a NaN, an
 * infinity or magnitudes far outside f16's reach: the f32 path then gives
 * the answer (and its NaNs).
 */
static bool half_x_convert(const rm_kern_ops *ops, uint16_t *dst, const float *x, int64_t k, float *unscale) {
    float amax = 0;
    bool finite = true;
    for (int64_t i = 0; i < k; i++) {
        float a = fabsf(x[i]);
        finite &= a <= FLT_MAX; /* false for NaN and infinities */
        amax = a > amax ? a : amax;
    }
    if (!finite || amax == 0) return false;
    int q;
    frexpf(amax, &q); /* amax < 2^q */
    if (q < -100 || q > 100) return false;
    float s = ldexpf(1.0f, 15 - q), buf[256];
    for (int64_t i0 = 0; i0 < k; i0 += 256) {
        int64_t len = k - i0 < 256 ? k - i0 : 256;
        for (int64_t i = 0; i < len; i++) buf[i] = x[i0 + i] * s;
        ops->f32_to_f16(dst + i0, buf, len);
    }
    *unscale = ldexpf(1.0f, q - 15);
    return true;
}

/* Quantised X (rm_q8_act): m rows of q8_0 blocks, then |q| (m x k bytes), then scales (m x k/32 f32). */
static size_t quant_q_bytes(int64_t m, int64_t k) { return align64((size_t)m * rm_type_row_bytes(RM_TYPE_Q8_0, k)); }
static size_t quant_a_bytes(int64_t m, int64_t k) { return align64((size_t)m * (size_t)k); }

static size_t quant_bytes(int64_t m, int64_t k) {
    return quant_q_bytes(m, k) + quant_a_bytes(m, k) + align64((size_t)m * (size_t)(k / RM_Q8_0_BLOCK) * 4);
}

/* Quantised X for the 4-6 bit weights: m rows of rm_kern_act_row_bytes. */
static size_t act_bytes(rm_type wt, int64_t m, int64_t k) { return align64((size_t)m * rm_kern_act_row_bytes(wt, k)); }

/* The int8 GEMM path for q4_k and q6_k: X as q8_K rows, then one tile per thread. */
static size_t qgemm_k_tile_bytes(rm_type wt, int64_t k) {
    return wt == RM_TYPE_Q4_K ? rm_qgemm_k4_tile_bytes(k / RM_QK_K) : rm_qgemm_k6_tile_bytes(k / RM_QK_K);
}
static size_t qgemm_k_bytes(rm_type wt, int64_t m, int64_t k, int nth) {
    return act_bytes(wt, m, k) + (size_t)nth * qgemm_k_tile_bytes(wt, k);
}
/* The k-quant int8 GEMM kernel for wt on this CPU, or NULL. */
static rm_qgemm_k4_fn qgemm_k_kernel(const rm_kern_ops *ops, rm_type wt) {
    if (wt == RM_TYPE_Q4_K) return rm_qgemm_q4_k_get(ops);
    if (wt == RM_TYPE_Q6_K) return rm_qgemm_q6_k_get(ops);
    return NULL;
}

static size_t panel_bytes(int64_t rows, int64_t k) { return align64((size_t)rows * (size_t)k * 4); }

/*
 * The int8 GEMM path for q8_0 (qgemm.c): X as unsigned levels (m x k bytes)
 * and f32 scales (m x k/32), then one repacked weight tile per thread.
 * g_int8_gemm switches the whole int8 GEMM path (q8_0, q4_k, q6_k).
 */
static bool g_int8_gemm = true;

void rm_kern_matmul_set_int8_gemm(bool on) { g_int8_gemm = on; }
bool rm_kern_matmul_int8_gemm(void) { return g_int8_gemm; }

/* The m from which the sgemm and k-quant GEMM paths run. */
static int gemm_min_m(void) { return g_gemm_min_m ? g_gemm_min_m : RM_MM_GEMM_MIN_M; }

/* The m from which q8_0 weights take the int8 GEMM (when ops has its kernel). */
static int qgemm_min_m(void) { return g_gemm_min_m ? g_gemm_min_m : RM_MM_QGEMM_MIN_M; }

int rm_kern_matmul_gemm_min_m(rm_type wt) {
    if (wt == RM_TYPE_Q8_0 && g_int8_gemm && rm_qgemm_q8_0_get(rm_kern_ops_get())) return qgemm_min_m();
    return gemm_min_m();
}

static size_t qgemm_xu_bytes(int64_t m, int64_t k) { return align64((size_t)m * (size_t)k); }
static size_t qgemm_xd_bytes(int64_t m, int64_t k) { return align64((size_t)m * (size_t)(k / RM_Q8_0_BLOCK) * 4); }
static size_t qgemm_bytes(int64_t m, int64_t k, int nth) {
    return qgemm_xu_bytes(m, k) + qgemm_xd_bytes(m, k) + (size_t)nth * rm_qgemm_tile_bytes(k / RM_Q8_0_BLOCK);
}

/*
 * The f16/bf16 GEMM path (hgemm.c): W widened in registers; scratch: X
 * packed once, then one 16-bit W tile per thread. g_hgemm switches it
 * (off: the widened panels and sgemm).
 */
static bool g_hgemm = true;

void rm_kern_matmul_set_hgemm(bool on) { g_hgemm = on; }
bool rm_kern_matmul_hgemm(void) { return g_hgemm; }

static bool hgemm_type(rm_type wt) { return wt == RM_TYPE_F16 || wt == RM_TYPE_BF16; }

/*
 * f16/bf16 weights leave the dot path for this GEMM earlier than the other
 * types leave it for theirs. One AVX-512 core, ffn_up 5632 x 2048 from DRAM,
 * GEMM / dot time: m = 8 0.90, 12 1.06, 16 1.11, 24 1.30, 32 1.34 (two
 * threads: 0.87, 0.99, 1.03, ...; docs/BENCH.md).
 */
static int g_hgemm_min_m = 16;

void rm_kern_matmul_set_hgemm_min_m(int m) { g_hgemm_min_m = m < 1 ? 1 : m; }
int  rm_kern_matmul_hgemm_min_m(void) { return g_hgemm_min_m; }

static size_t hgemm_bytes(int64_t m, int64_t k, int nth) {
    return rm_hgemm_x_bytes(m, k) + (size_t)nth * rm_hgemm_w_bytes(k);
}

/* Scratch for the worst case of one call (see kernels.h); never shrinks as m grows. */
size_t rm_matmul_work_size(rm_type wt, int64_t m, int64_t n, int64_t k, int nthreads) {
    if (m <= 0 || n <= 0 || k <= 0 || wt == RM_TYPE_F32) return 0;
    if (nthreads < 1) nthreads = 1;
    size_t need = 0;
    /* sized for whichever path the ISA of the call takes (tests switch it):
     * the dot path's rows up to the sgemm crossover, q8_0's int8 GEMM from its own */
    int64_t gm = gemm_min_m(), mq = m < gm ? m : gm - 1; /* rows quantised on the dot path */
    if (wt == RM_TYPE_Q8_0) need = quant_bytes(mq, k);
    else if (rm_type_is_quant(wt)) need = act_bytes(wt, mq, k);
    else if (half_x_wanted(wt, 1, k)) need = half_x_bytes(k); /* for m = 1, on the dot path */
    if (hgemm_type(wt) && m >= g_hgemm_min_m && hgemm_bytes(m, k, nthreads) > need)
        need = hgemm_bytes(m, k, nthreads);
    if (hgemm_type(wt) && rm_hgemm_x_bytes(m, k) > need) need = rm_hgemm_x_bytes(m, k); /* from packed tiles */
    if (wt == RM_TYPE_Q8_0 && m >= qgemm_min_m() && qgemm_bytes(m, k, nthreads) > need)
        need = qgemm_bytes(m, k, nthreads);
    if (m >= gm) {
        size_t g = (size_t)nthreads * panel_bytes(panel_rows(chunk_rows(n, nthreads)), k);
        need = g > need ? g : need;
        if ((wt == RM_TYPE_Q4_K || wt == RM_TYPE_Q6_K) && qgemm_k_bytes(wt, m, k, nthreads) > need)
            need = qgemm_k_bytes(wt, m, k, nthreads);
    }
    return need;
}

typedef struct {
    const rm_kern_ops *ops;
    float *y;
    const float *x;
    int64_t m, n, k;
    const uint8_t *w;
    rm_type wt;
    size_t wrow;               /* bytes per W row */
    rm_block_q8_0 *xq;         /* quantised X (q8_0 dot path), or NULL */
    uint8_t *xa;               /* |xq.qs|, m x k */
    float *xd;                 /* xq scales in f32, m x k/32 */
    uint8_t *xk;               /* quantised X for the 4-6 bit weights (m rows of xk_row bytes), or NULL */
    const uint16_t *xh;        /* f16/bf16 weights, m = 1, long rows: X scaled and in f16 (k), or NULL */
    float xh_unscale;          /* the inverse of that scale */
    size_t xk_row;
    uint8_t *xu;               /* int8 GEMM path: X levels + 128, m x k bytes */
    float *xud;                /* their scales, m x k/32 */
    uint8_t *tiles;            /* one weight tile per thread */
    rm_qgemm_fn qgemm;
    rm_qgemm_k4_fn qgemm_k4;
    const uint8_t *packed;     /* tiles packed at load (rm_matmul_pack), or NULL */
    uint8_t *panels;           /* GEMM path: nth slices of panel_stride bytes */
    size_t panel_stride;
    int64_t panel_rows;        /* rows per panel (<= panel_stride / (4 k)) */
    rm_hgemm_fns hgemm;        /* f16/bf16 GEMM path: its kernels */
    float *hx;                 /* X packed for them; then one W tile per thread at tiles */
} mm_job;

static void job_quantize(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    int64_t lo, hi, nb = j->k / RM_Q8_0_BLOCK;
    rm_split(j->m, ith, nth, &lo, &hi);
    if (j->xk) {
        for (int64_t i = lo; i < hi; i++) rm_kern_act_quantize(j->ops, j->wt, j->xk + i * j->xk_row, j->x + i * j->k, j->k);
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        const rm_block_q8_0 *q = j->xq + i * nb;
        j->ops->f32_to_q8_0(j->xq + i * nb, j->x + i * j->k, j->k);
        for (int64_t b = 0; b < nb; b++) {
            j->xd[i * nb + b] = rm_f16_to_f32(q[b].d);
            for (int e = 0; e < RM_Q8_0_BLOCK; e++) /* |q| <= 127: the quantiser never makes -128 */
                j->xa[(i * nb + b) * RM_Q8_0_BLOCK + e] = (uint8_t)abs(q[b].qs[e]);
        }
    }
}

/*
 * x . w for a 4-6 bit weight row without scratch: each activation block is
 * quantised on the stack just before its weight block (slower, same answer).
 */
static float dot_quant_unbuffered(const mm_job *j, const float *x, const uint8_t *wr) {
    int64_t be = rm_type_block_elems(j->wt);
    size_t wb = rm_type_block_bytes(j->wt);
    rm_block_q8_k act[1]; /* one q8_K block, or one q8_0 block for q4_0/q4_1 */
    _Static_assert(sizeof act >= sizeof(rm_block_q8_0), "stack block too small");
    float s = 0;
    for (int64_t b = 0; b < j->k / be; b++) {
        rm_kern_act_quantize(j->ops, j->wt, act, x + b * be, be);
        s += j->ops->dot_quant[j->wt](act, wr + (size_t)b * wb, 1);
    }
    return s;
}

/* Y[i][r] for one activation row i and one W row r. */
static float dot1_row(const mm_job *j, const uint8_t *wr, int64_t i) {
    int64_t k = j->k, nb = k / RM_Q8_0_BLOCK;
    const float *xi = j->x + i * k;
    switch (j->wt) {
    case RM_TYPE_F32: return j->ops->dot_f32(xi, (const float *)wr, k);
    case RM_TYPE_F16:
        if (j->xh) return j->ops->dot_f16_f16(j->xh, (const uint16_t *)wr, k) * j->xh_unscale;
        return j->ops->dot_f16(xi, (const uint16_t *)wr, k);
    case RM_TYPE_BF16:
        if (j->xh) return j->ops->dot_f16_bf16(j->xh, (const uint16_t *)wr, k) * j->xh_unscale;
        return j->ops->dot_bf16(xi, (const uint16_t *)wr, k);
    case RM_TYPE_Q4_0: case RM_TYPE_Q4_1: case RM_TYPE_Q4_K: case RM_TYPE_Q5_K: case RM_TYPE_Q6_K:
        if (!j->xk) return dot_quant_unbuffered(j, xi, wr);
        return j->ops->dot_quant[j->wt](j->xk + i * j->xk_row, wr, k / rm_type_block_elems(j->wt));
    default:
        if (!j->xq) return rm_kern_dot_f32_q8_0_scalar(xi, (const rm_block_q8_0 *)wr, nb);
        rm_q8_act xa = {j->xq + i * nb, j->xa + i * k, j->xd + i * nb};
        return j->ops->dot_q8_0(xa, (const rm_block_q8_0 *)wr, nb);
    }
}

/*
 * Y[i][r] for activation rows i0 .. i0 + nr - 1 (nr in 2..4), for one W row
 * r: out[0 .. nr). Three rows run the four-row kernel with the last row
 * repeated (f16/bf16 are bound by widening W, so the spare FMAs cost little).
 */
static void dot4_row(const mm_job *j, const uint8_t *wr, int64_t i0, int nr, float *out) {
    int64_t k = j->k, nb = k / RM_Q8_0_BLOCK;
    const float *xs[4];
    for (int q = 0; q < 4; q++) xs[q] = j->x + (i0 + (q < nr ? q : nr - 1)) * k;
    switch (j->wt) {
    case RM_TYPE_F32: j->ops->dot4_f32(xs, nr, (const float *)wr, k, out); break;
    case RM_TYPE_F16: j->ops->dot4_f16(xs, nr, (const uint16_t *)wr, k, out); break;
    case RM_TYPE_BF16: j->ops->dot4_bf16(xs, nr, (const uint16_t *)wr, k, out); break;
    case RM_TYPE_Q8_0:
        if (j->xq && nr == 4) {
            rm_q8_act xa = {j->xq + i0 * nb, j->xa + i0 * k, j->xd + i0 * nb};
            j->ops->dot4_q8_0(xa, nb, (const rm_block_q8_0 *)wr, nb, out);
        } else {
            for (int q = 0; q < nr; q++) out[q] = dot1_row(j, wr, i0 + q);
        }
        break;
    default: /* 4-6 bit weights: one row at a time while the weight row sits in L1 */
        for (int q = 0; q < nr; q++) out[q] = dot1_row(j, wr, i0 + q);
        break;
    }
}

/*
 * The dot path over W rows [lo, hi): tiles of RM_MM_DOT_TILE W rows (a few
 * tens of KB, L1/L2 resident) against X rows four at a time. Tiling keeps
 * the X traffic at one pass per tile instead of one per W row when m * k no
 * longer fits in L2.
 */
#define RM_MM_DOT_TILE 8

static void dot_rows(const mm_job *j, int64_t lo, int64_t hi) {
    for (int64_t r0 = lo; r0 < hi; r0 += RM_MM_DOT_TILE) {
        int64_t r1 = hi - r0 < RM_MM_DOT_TILE ? hi : r0 + RM_MM_DOT_TILE;
        for (int64_t i = 0; i < j->m; i += 4) {
            int nr = j->m - i < 4 ? (int)(j->m - i) : 4;
            for (int64_t r = r0; r < r1; r++) {
                float out[4];
                if (nr == 1) out[0] = dot1_row(j, j->w + (size_t)r * j->wrow, i);
                else dot4_row(j, j->w + (size_t)r * j->wrow, i, nr, out);
                for (int q = 0; q < nr; q++) j->y[(i + q) * j->n + r] = out[q];
            }
        }
    }
}

/* W rows of k <= RM_KERN_SHORT_MAX_K f32/f16 elements (k a multiple of 8):
 * the short-row kernel, eight rows per reduction. */
static bool use_short(const rm_kern_ops *ops, rm_type wt, int64_t k) {
    if (k % 8 || k > RM_KERN_SHORT_MAX_K) return false;
    return (wt == RM_TYPE_F32 && ops->short_f32) || (wt == RM_TYPE_F16 && ops->short_f16);
}

static void job_dot(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t lo, hi;
    rm_split(j->n, ith, nth, &lo, &hi);
    if (hi <= lo) return;
    if (use_short(j->ops, j->wt, j->k)) {
        const uint8_t *w = j->w + (size_t)lo * j->wrow;
        if (j->wt == RM_TYPE_F32) j->ops->short_f32(j->x, j->m, (const float *)w, hi - lo, j->k, j->y + lo, j->n);
        else j->ops->short_f16(j->x, j->m, (const uint16_t *)w, hi - lo, j->k, j->y + lo, j->n);
        return;
    }
    dot_rows(j, lo, hi);
}

/* Convert rows [r0, r0+rows) of W to f32 into dst (rows x k). */
static void panel_fill(const mm_job *j, float *dst, int64_t r0, int64_t rows) {
    const uint8_t *src = j->w + (size_t)r0 * j->wrow;
    int64_t cnt = rows * j->k;
    switch (j->wt) {
    case RM_TYPE_F16: j->ops->f16_to_f32(dst, (const uint16_t *)src, cnt); break;
    case RM_TYPE_BF16: j->ops->bf16_to_f32(dst, (const uint16_t *)src, cnt); break;
    case RM_TYPE_Q8_0: j->ops->q8_0_to_f32(dst, (const rm_block_q8_0 *)src, cnt); break;
    case RM_TYPE_F32: memcpy(dst, src, (size_t)cnt * 4); break;
    default: j->ops->dequant[j->wt](dst, src, cnt); break;
    }
}

static void sgemm_xwt(const mm_job *j, const float *w, int64_t r0, int64_t rows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->m, (int)rows, (int)j->k, 1.0f, j->x,
                (int)j->k, w, (int)j->k, 0.0f, j->y + r0, (int)j->n);
}

static void job_gemm(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t lo, hi;
    rm_split(j->n, ith, nth, &lo, &hi);
    if (j->wt == RM_TYPE_F32) {
        if (hi > lo) sgemm_xwt(j, (const float *)(j->w + (size_t)lo * j->wrow), lo, hi - lo);
        return;
    }
    float *panel = (float *)(j->panels + (size_t)ith * j->panel_stride);
    int64_t pr = j->panel_rows;
    for (int64_t r = lo; r < hi; r += pr) {
        int64_t rows = hi - r < pr ? hi - r : pr;
        panel_fill(j, panel, r, rows);
        sgemm_xwt(j, panel, r, rows);
    }
}

/* int8 GEMM path, step 1: X rows to the kernel layout (rows split over the pool). */
static void job_qgemm_act(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t lo, hi, nb = j->k / RM_Q8_0_BLOCK;
    rm_split(j->m, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        for (int64_t b = 0; b < nb; b++) {
            rm_block_q8_0 q;
            j->ops->f32_to_q8_0(&q, j->x + i * j->k + b * RM_Q8_0_BLOCK, RM_Q8_0_BLOCK);
            rm_qgemm_pack_act(j->xu + i * j->k + b * RM_Q8_0_BLOCK, j->xud + i * nb + b, &q, 1);
        }
}

/* Bytes of one packed tile of 32 rows of k: the int8 GEMM's (q8_0, q4_k,
 * q6_k), or 0 where k is not whole blocks; the f16/bf16 GEMM's (hgemm.h). */
static size_t pack_tile_bytes(rm_type wt, int64_t k) {
    _Static_assert(RM_HGEMM_NR == RM_QGEMM_TILE_COLS, "one tile width for every packed type");
    if (hgemm_type(wt)) return rm_hgemm_tiles_bytes(RM_HGEMM_NR, k);
    if (wt == RM_TYPE_Q8_0) return k % RM_Q8_0_BLOCK ? 0 : rm_qgemm_tile_bytes(k / RM_Q8_0_BLOCK);
    return k % RM_QK_K ? 0 : qgemm_k_tile_bytes(wt, k);
}

/* Pack tile t (W rows from t * RM_QGEMM_TILE_COLS, nc of them; wrow bytes
 * each) of W into dst: at load (rm_matmul_pack) or per call. The q8_0 and
 * the f16/bf16 packers of every ISA write the same bytes. */
static void tile_pack(const rm_kern_ops *ops, uint8_t *dst, rm_type wt, const uint8_t *w, size_t wrow, int64_t t,
                      int64_t k, int nc) {
    const uint8_t *rows = w + (size_t)t * RM_QGEMM_TILE_COLS * wrow;
    if (hgemm_type(wt)) {
        rm_hgemm_fns h;
        rm_hgemm_pack_fn pack = rm_hgemm_packed_get(ops, wt, &h) ? h.pack : rm_hgemm_pack_scalar;
        pack((uint16_t *)dst, (const uint16_t *)rows, k, nc, k);
    } else if (wt == RM_TYPE_Q8_0) rm_qgemm_pack_get(ops)(dst, (const rm_block_q8_0 *)rows, k / RM_Q8_0_BLOCK, nc);
    else if (wt == RM_TYPE_Q4_K) rm_qgemm_k4_pack_tile(dst, (const rm_block_q4_k *)rows, k / RM_QK_K, nc);
    else rm_qgemm_k6_pack_tile(dst, (const rm_block_q6_k *)rows, k / RM_QK_K, nc);
}

/* Tile t of W: the one packed at load, else W's rows repacked into the
 * thread's slice of the scratch. */
static const uint8_t *tile_of(const mm_job *j, int ith, int64_t t, int nc) {
    size_t tb = pack_tile_bytes(j->wt, j->k);
    if (j->packed) return j->packed + (size_t)t * tb;
    uint8_t *tile = j->tiles + (size_t)ith * tb;
    tile_pack(j->ops, tile, j->wt, j->w, j->wrow, t, j->k, nc);
    return tile;
}

/* int8 GEMM path, step 2: each thread takes whole tiles of 32 W rows (packed
 * at load, or repacked into its own slice) and runs each against every X
 * row, four at a time. */
static void job_qgemm(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t nb = j->k / RM_Q8_0_BLOCK, ntiles = (j->n + RM_QGEMM_TILE_COLS - 1) / RM_QGEMM_TILE_COLS, lo, hi;
    rm_split(ntiles, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        int64_t c0 = t * RM_QGEMM_TILE_COLS;
        int nc = j->n - c0 < RM_QGEMM_TILE_COLS ? (int)(j->n - c0) : RM_QGEMM_TILE_COLS;
        const uint8_t *tile = tile_of(j, ith, t, nc);
        for (int64_t i = 0; i < j->m; i += RM_QGEMM_ROWS) {
            int nr = j->m - i < RM_QGEMM_ROWS ? (int)(j->m - i) : RM_QGEMM_ROWS;
            j->qgemm(j->xu + i * j->k, j->xud + i * nb, j->k, nr, tile, nb, j->y + i * j->n + c0, j->n, nc);
        }
    }
}


/* The q8_0 int8 GEMM: X to unsigned levels in the scratch (xu, then its
 * scales), then the tiles (j->packed, or repacked into j->tiles) against
 * them; the scalar kernel where the ISA has no VNNI one. */
static void run_q8_0_gemm(rm_pool *pool, mm_job *j) {
    j->xud = (float *)(j->xu + qgemm_xu_bytes(j->m, j->k));
    j->qgemm = rm_qgemm_q8_0_get(j->ops);
    if (!j->qgemm) j->qgemm = rm_qgemm_q8_0_scalar;
    if (j->m > 1) rm_pool_run(pool, job_qgemm_act, j);
    else job_qgemm_act(j, 0, 1);
    rm_pool_run(pool, job_qgemm, j);
}

/* The same for q4_k / q6_k weights against the q8_K rows in xk. */
static void job_qgemm_k(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t nb = j->k / RM_QK_K, ntiles = (j->n + RM_QGEMM_TILE_COLS - 1) / RM_QGEMM_TILE_COLS, lo, hi;
    rm_split(ntiles, ith, nth, &lo, &hi);
    const rm_block_q8_k *x = (const rm_block_q8_k *)j->xk;
    for (int64_t t = lo; t < hi; t++) {
        int64_t c0 = t * RM_QGEMM_TILE_COLS;
        int nc = j->n - c0 < RM_QGEMM_TILE_COLS ? (int)(j->n - c0) : RM_QGEMM_TILE_COLS;
        const uint8_t *tile = tile_of(j, ith, t, nc);
        for (int64_t i = 0; i < j->m; i += RM_QGEMM_ROWS) {
            int nr = j->m - i < RM_QGEMM_ROWS ? (int)(j->m - i) : RM_QGEMM_ROWS;
            j->qgemm_k4(x + i * nb, nr, tile, nb, j->y + i * j->n + c0, j->n, nc);
        }
    }
}

/* f16/bf16 GEMM path, step 1: X packed once (micro-panels split over the pool). */
static void job_hgemm_x(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t lo, hi;
    rm_split(rm_hgemm_panels(j->m), ith, nth, &lo, &hi);
    rm_hgemm_pack_x(j->hx, j->x, j->m, j->k, lo, hi);
}

/* Step 2: each thread whole tiles of 32 W rows against all X rows; with X
 * not packed (hx NULL: one row, from packed tiles), the row kernel. */
static void job_hgemm(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t ntiles = (j->n + RM_HGEMM_NR - 1) / RM_HGEMM_NR, lo, hi;
    rm_split(ntiles, ith, nth, &lo, &hi);
    int64_t c1 = hi * RM_HGEMM_NR < j->n ? hi * RM_HGEMM_NR : j->n;
    if (hi <= lo) return;
    if (!j->hx) {
        rm_hgemm_cols_row(&j->hgemm, j->y, j->x, j->k, (const uint16_t *)j->packed, lo * RM_HGEMM_NR, c1);
        return;
    }
    rm_hgemm_cols(&j->hgemm, j->y, j->n, j->hx, j->m, j->k, (const uint16_t *)j->w, (const uint16_t *)j->packed,
                  lo * RM_HGEMM_NR, c1, j->packed ? NULL : (uint16_t *)(j->tiles + (size_t)ith * rm_hgemm_w_bytes(j->k)));
}

static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static void blas_init(void) { openblas_set_num_threads(1); }
void rm_blas_init(void) { pthread_once(&g_blas_once, blas_init); }

static void warn_scratch_once(size_t have, size_t need) {
    static atomic_bool warned;
    if (!atomic_exchange(&warned, true))
        rm_log_warn("kernels: matmul scratch too small (%zu bytes, need %zu); using a slower path", have, need);
}

/*
 * Y = X W^T (kernels.h). Picks the path, hands out the scratch (quantised X
 * for the q8_0 dot path, per-thread f32 panels for the sgemm path) and runs
 * the jobs on c->pool. Never allocates.
 */
void rm_matmul(const rm_compute *c, float *y, const float *x, int64_t m, const void *w, rm_type wt,
               int64_t n, int64_t k) {
    if (m <= 0 || n <= 0 || k <= 0) return;
    if ((unsigned)wt >= RM_TYPE_COUNT || k % rm_type_block_elems(wt) != 0) {
        /* a caller bug (shapes are checked at load time): make it loud, not silent */
        rm_log_error("kernels: rm_matmul on %s weights with k = %lld (not a whole number of blocks)",
                     rm_type_name(wt), (long long)k);
        for (int64_t i = 0; i < m * n; i++) y[i] = NAN;
        return;
    }
    rm_pool *pool = c ? c->pool : NULL;
    int nth = rm_pool_size(pool);
    size_t have = c && c->work ? c->work_size : 0;
    mm_job j = {.ops = rm_kern_ops_get(), .y = y, .x = x, .m = m, .n = n, .k = k, .w = w, .wt = wt,
                .wrow = rm_type_row_bytes(wt, k)};
    if (m >= qgemm_min_m() && wt == RM_TYPE_Q8_0 && g_int8_gemm && rm_qgemm_q8_0_get(j.ops) &&
        have >= qgemm_bytes(m, k, nth)) {
        j.xu = c->work;
        j.tiles = j.xu + qgemm_xu_bytes(m, k) + qgemm_xd_bytes(m, k);
        run_q8_0_gemm(pool, &j);
        return;
    }
    if (m >= g_hgemm_min_m && hgemm_type(wt) && g_hgemm && rm_hgemm_get(j.ops, wt, &j.hgemm) &&
        have >= hgemm_bytes(m, k, nth)) {
        j.hx = c->work;
        j.tiles = (uint8_t *)c->work + rm_hgemm_x_bytes(m, k);
        rm_pool_run(pool, job_hgemm_x, &j);
        rm_pool_run(pool, job_hgemm, &j);
        return;
    }
    if (m >= gemm_min_m() && g_int8_gemm && qgemm_k_kernel(j.ops, wt) && have >= qgemm_k_bytes(wt, m, k, nth)) {
        j.xk = c->work;
        j.xk_row = rm_kern_act_row_bytes(wt, k);
        j.tiles = (uint8_t *)c->work + act_bytes(wt, m, k);
        j.qgemm_k4 = qgemm_k_kernel(j.ops, wt);
        rm_pool_run(pool, job_quantize, &j);
        rm_pool_run(pool, job_qgemm_k, &j);
        return;
    }
    if (m >= gemm_min_m()) {
        int64_t want = panel_rows(chunk_rows(n, nth));
        j.panel_stride = have / (size_t)nth & ~(size_t)63;
        int64_t fit = (int64_t)(j.panel_stride / ((size_t)k * 4)); /* smaller panels if scratch is short */
        j.panel_rows = want < fit ? want : fit;
        if (wt == RM_TYPE_F32 || j.panel_rows == want || j.panel_rows >= RM_MM_PANEL_MIN_ROWS) {
            pthread_once(&g_blas_once, blas_init);
            j.panels = c && c->work ? c->work : NULL;
            rm_pool_run(pool, job_gemm, &j);
            return;
        }
        warn_scratch_once(have, (size_t)nth * panel_bytes(want, k));
    }
    if (wt == RM_TYPE_Q8_0) {
        if (have >= quant_bytes(m, k)) {
            j.xq = c->work;
            j.xa = (uint8_t *)c->work + quant_q_bytes(m, k);
            j.xd = (float *)(j.xa + quant_a_bytes(m, k));
            if (m > 1) rm_pool_run(pool, job_quantize, &j);
            else job_quantize(&j, 0, 1);
        } else {
            warn_scratch_once(have, quant_bytes(m, k));
        }
    } else if (half_x_wanted(wt, m, k)) {
        /* without the scratch the f32 X path gives the answer, a little slower */
        if (g_half_x && have >= half_x_bytes(k) && half_x_convert(j.ops, c->work, x, k, &j.xh_unscale)) j.xh = c->work;
    } else if (rm_type_is_quant(wt)) {
        if (have >= act_bytes(wt, m, k)) {
            j.xk = c->work;
            j.xk_row = rm_kern_act_row_bytes(wt, k);
            if (m > 1) rm_pool_run(pool, job_quantize, &j);
            else job_quantize(&j, 0, 1);
        } else {
            warn_scratch_once(have, act_bytes(wt, m, k));
        }
    }
    rm_pool_run(pool, job_dot, &j);
}

/* ---- weights packed at load ------------------------------------------------ */

static bool pack_type(rm_type wt) {
    return wt == RM_TYPE_Q4_K || wt == RM_TYPE_Q6_K || wt == RM_TYPE_Q8_0 || hgemm_type(wt);
}

size_t rm_matmul_pack_bytes(rm_type wt, int64_t n, int64_t k) {
    if (!pack_type(wt) || n <= 0 || k <= 0) return 0;
    return (size_t)((n + RM_QGEMM_TILE_COLS - 1) / RM_QGEMM_TILE_COLS) * pack_tile_bytes(wt, k);
}

static bool g_pack_always;
void rm_kern_matmul_set_pack_always(bool on) { g_pack_always = on; }

bool rm_matmul_pack_wanted(rm_type wt) {
    if (!pack_type(wt)) return false;
    if (g_pack_always) return true;
    rm_hgemm_fns h;
    if (hgemm_type(wt)) return g_hgemm && rm_hgemm_packed_get(rm_kern_ops_get(), wt, &h);
    return rm_isa_supported(RM_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
}

void rm_matmul_pack(void *dst, const void *w, rm_type wt, int64_t n, int64_t k) {
    size_t tb = pack_tile_bytes(wt, k), wrow = rm_type_row_bytes(wt, k);
    const rm_kern_ops *ops = rm_kern_ops_get();
    for (int64_t t = 0; t * RM_QGEMM_TILE_COLS < n; t++) {
        int64_t left = n - t * RM_QGEMM_TILE_COLS;
        int nc = left < RM_QGEMM_TILE_COLS ? (int)left : RM_QGEMM_TILE_COLS;
        tile_pack(ops, (uint8_t *)dst + (size_t)t * tb, wt, w, wrow, t, k, nc);
    }
}

/*
 * f16/bf16 from the tiles packed at load, for every m: X packed (on the
 * calling thread when it is one micro-panel), then each thread its whole
 * tiles against all X rows, reading W once per call; one row (decoding one
 * sequence) is read in place by the row kernel. False where this ISA has
 * no such kernels, the path is off or the scratch is short.
 */
static bool hgemm_packed(const rm_compute *c, float *y, const float *x, int64_t m, const void *packed, rm_type wt,
                         int64_t n, int64_t k) {
    size_t have = c && c->work ? c->work_size : 0;
    rm_pool *pool = c ? c->pool : NULL;
    mm_job j = {.ops = rm_kern_ops_get(), .y = y, .x = x, .m = m, .n = n, .k = k, .wt = wt, .packed = packed};
    if (!g_hgemm || !rm_hgemm_packed_get(j.ops, wt, &j.hgemm)) return false;
    if (m > 1) { /* X packed; one row is read in place by the row kernel */
        if (have < rm_hgemm_x_bytes(m, k)) return false;
        j.hx = c->work;
        if (rm_hgemm_panels(m) > 1) rm_pool_run(pool, job_hgemm_x, &j);
        else job_hgemm_x(&j, 0, 1);
    }
    rm_pool_run(pool, job_hgemm, &j);
    return true;
}

/*
 * Y = X W^T from the packed tiles, for every m. f16/bf16: hgemm_packed.
 * The int8 types: X to q8_K rows once (split over the pool), then each
 * thread its whole tiles against all X rows; the scalar tile kernel stands
 * in where the current ISA has no VNNI one (tests forcing an ISA). Without
 * packed tiles, with the path off or without scratch, rm_matmul on w.
 */
void rm_matmul_packed(const rm_compute *c, float *y, const float *x, int64_t m, const void *w, const void *packed,
                      rm_type wt, int64_t n, int64_t k) {
    if (hgemm_type(wt)) {
        if (!packed || m <= 0 || !hgemm_packed(c, y, x, m, packed, wt, n, k)) rm_matmul(c, y, x, m, w, wt, n, k);
        return;
    }
    size_t have = c && c->work ? c->work_size : 0;
    if (!packed || !pack_type(wt) || !g_int8_gemm || m <= 0 || !pack_tile_bytes(wt, k) ||
        have < (wt == RM_TYPE_Q8_0 ? qgemm_xu_bytes(m, k) + qgemm_xd_bytes(m, k) : act_bytes(wt, m, k))) {
        rm_matmul(c, y, x, m, w, wt, n, k);
        return;
    }
    rm_pool *pool = c->pool;
    if (wt == RM_TYPE_Q8_0) {
        mm_job j = {.ops = rm_kern_ops_get(), .y = y, .x = x, .m = m, .n = n, .k = k, .w = w, .wt = wt,
                    .wrow = rm_type_row_bytes(wt, k), .packed = packed, .xu = c->work};
        run_q8_0_gemm(pool, &j);
        return;
    }
    mm_job j = {.ops = rm_kern_ops_get(), .y = y, .x = x, .m = m, .n = n, .k = k, .w = w, .wt = wt,
                .wrow = rm_type_row_bytes(wt, k), .packed = packed, .xk = c->work,
                .xk_row = rm_kern_act_row_bytes(wt, k)};
    j.qgemm_k4 = qgemm_k_kernel(j.ops, wt);
    if (!j.qgemm_k4) j.qgemm_k4 = wt == RM_TYPE_Q4_K ? rm_qgemm_q4_k_scalar : rm_qgemm_q6_k_scalar;
    if (m > 1) rm_pool_run(pool, job_quantize, &j);
    else job_quantize(&j, 0, 1);
    rm_pool_run(pool, job_qgemm_k, &j);
}

void rm_matmul_rows(float *y, int64_t ldy, const float *const *xrows, int64_t m, const void *w, rm_type wt,
                    int64_t n, int64_t k) {
    const rm_kern_ops *ops = rm_kern_ops_get();
    if (m <= 0 || n <= 0) return;
    if (wt != RM_TYPE_F32 && wt != RM_TYPE_F16 && wt != RM_TYPE_BF16) {
        rm_log_error("kernels: rm_matmul_rows on %s weights (f32, f16 or bf16 only)", rm_type_name(wt));
        for (int64_t i = 0; i < m; i++)
            for (int64_t r = 0; r < n; r++) y[i * ldy + r] = NAN;
        return;
    }
    size_t wrow = rm_type_row_bytes(wt, k);
    /* short rows (an expand's rank-16 rows): the short-row kernel row by
     * row, as rm_matmul's dot path takes them */
    if (use_short(ops, wt, k)) {
        for (int64_t i = 0; i < m; i++) {
            if (wt == RM_TYPE_F32) ops->short_f32(xrows[i], 1, (const float *)w, n, k, y + i * ldy, ldy);
            else ops->short_f16(xrows[i], 1, (const uint16_t *)w, n, k, y + i * ldy, ldy);
        }
        return;
    }
    /* tiles of W rows against X rows four at a time, as the dot path */
    for (int64_t r0 = 0; r0 < n; r0 += RM_MM_DOT_TILE) {
        int64_t r1 = n - r0 < RM_MM_DOT_TILE ? n : r0 + RM_MM_DOT_TILE;
        for (int64_t i = 0; i < m; i += 4) {
            int nr = m - i < 4 ? (int)(m - i) : 4;
            const float *xs[4];
            for (int q = 0; q < 4; q++) xs[q] = xrows[i + (q < nr ? q : nr - 1)];
            for (int64_t r = r0; r < r1; r++) {
                const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrow;
                float out[4];
                /* one kernel whatever the row count: a row's sum does not
                 * depend on how many rows share its group (a sequence gives
                 * the same tokens alone and in any batch) */
                if (wt == RM_TYPE_F32) {
                    ops->dot4_f32(xs, nr, (const float *)wr, k, out);
                } else if (wt == RM_TYPE_F16) {
                    ops->dot4_f16(xs, nr, (const uint16_t *)wr, k, out);
                } else {
                    ops->dot4_bf16(xs, nr, (const uint16_t *)wr, k, out);
                }
                for (int q = 0; q < nr; q++) y[(i + q) * ldy + r] = out[q];
            }
        }
    }
}

void rm_matmul_rows_add(float *const *yrows, const float *const *zrows, int64_t m, const void *w, rm_type wt,
                        int64_t n, int64_t k) {
    const rm_kern_ops *ops = rm_kern_ops_get();
    if (m <= 0 || n <= 0) return;
    if (use_short(ops, wt, k)) { /* the expand's rank-long rows, where this ISA has the kernel */
        if (wt == RM_TYPE_F32 && ops->short_add_f32) {
            ops->short_add_f32(yrows, zrows, m, (const float *)w, n, k);
            return;
        }
        if (wt == RM_TYPE_F16 && ops->short_add_f16) {
            ops->short_add_f16(yrows, zrows, m, (const uint16_t *)w, n, k);
            return;
        }
    }
    /* other shapes and ISAs: each row's products through rm_matmul_rows, a
     * slice of outputs at a time, then added */
    float t[256];
    size_t wrow = rm_type_row_bytes(wt, k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t r0 = 0; r0 < n; r0 += 256) {
            int64_t nr = n - r0 < 256 ? n - r0 : 256;
            rm_matmul_rows(t, nr, zrows + i, 1, (const uint8_t *)w + (size_t)r0 * wrow, wt, nr, k);
            for (int64_t r = 0; r < nr; r++) yrows[i][r0 + r] += t[r];
        }
}

