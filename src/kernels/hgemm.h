/*
 * hgemm.h — private to src/kernels: the GEMM for 16-bit float weights (f16
 * and bf16) that widens them in registers (hgemm.c has the design).
 */
#ifndef RM_HGEMM_H
#define RM_HGEMM_H

#include "kernels/kern_internal.h"

#define RM_HGEMM_NR 32  /* W rows (output columns) per packed tile */
#define RM_HGEMM_MR 12  /* X rows per micro-panel, at most; panels have 4, 8 or 12 */
#define RM_HGEMM_KC 256 /* k per block: 32 x 256 x 2 = 16 KiB of a packed W tile (L1) */

/*
 * Layouts of one k-block of kc elements (kc <= RM_HGEMM_KC):
 *   X micro-panel of mr rows (mr in 4, 8, 12): xp[kk * mr + i] = X[r0 + i][k0 + kk],
 *     zero for rows past m.
 *   W tile: wp[kk * 32 + c] = W[c0 + c][k0 + kk] as stored (f16 or bf16 bits),
 *     zero for rows past the tile's nc.
 */

/*
 * The micro-kernel: for i < rows (<= mr) and c < nc (<= 32),
 *   y[i * ldy + c] (+)= sum over kk < kc of xp[kk * mr + i] * widen(wp[kk * 32 + c]),
 * summed in f32 in kk order; "+=" when accumulate, else "=".
 */
typedef void (*rm_hgemm_tile_fn)(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                                 int rows, int nc, bool accumulate);
/* Pack nc (<= 32) W rows of kc elements, row stride ldw elements, into the tile layout. */
typedef void (*rm_hgemm_pack_fn)(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc);
/*
 * One X row (x, k elements, not packed) against one tile packed whole:
 * y[c] = sum over kk < k of x[kk] * widen(wp[kk * 32 + c]) for c < nc (<= 32).
 * Decoding one sequence: the tile kernel would pad the row to 4 and do four
 * times the FMAs, which at one row cost more than reading W. Sums in f32
 * over interleaved runs of kk (four on AVX-512, two on AVX2), so a row's
 * bits differ from the tile kernel's (by rounding only).
 */
typedef void (*rm_hgemm_row_fn)(const float *x, const uint16_t *wp, int64_t k, float *y, int nc);

/* Every ISA with kernels has all three. */
typedef struct {
    rm_hgemm_tile_fn tile;
    rm_hgemm_pack_fn pack;
    rm_hgemm_row_fn row;
} rm_hgemm_fns;

/* The kernels for weights of type wt (f16 or bf16) under the table ops, or
 * false where there are none (other types, the scalar table): the caller
 * then keeps its widened-panel path. */
bool rm_hgemm_get(const rm_kern_ops *ops, rm_type wt, rm_hgemm_fns *out);
/* The kernels that read tiles packed at load (rm_matmul_pack), where they
 * can differ from the per-call ones: a superset of rm_hgemm_get. */
bool rm_hgemm_packed_get(const rm_kern_ops *ops, rm_type wt, rm_hgemm_fns *out);

/*
 * X packed for the kernel: micro-panel p holds rows 12p .. 12p + 11 (the
 * last 4, 8 or 12 rows, zero-padded); k-block k0 (kc long) of the panel at
 * row r0 starts at float k0 * round4(m) + r0 * kc. rm_hgemm_x_bytes: its
 * size; rm_hgemm_pack_x writes panels [p0, p1) of rm_hgemm_panels(m).
 */
size_t  rm_hgemm_x_bytes(int64_t m, int64_t k);
int64_t rm_hgemm_panels(int64_t m);
void    rm_hgemm_pack_x(float *xp, const float *x, int64_t m, int64_t k, int64_t p0, int64_t p1);
/* Bytes of one thread's W tile over the whole k (no alignment needed). */
size_t  rm_hgemm_w_bytes(int64_t k);

/*
 * W packed whole, once (at load; matmul.c packs it tile by tile with any
 * packer, which all write the same bytes): tile t (W rows 32t .. 32t + 31,
 * zero rows past n) over the whole k at tiles + t * 32 * k, in the tile
 * layout above (k-block k0 of a tile starts at element k0 * 32). The same
 * 2 bytes per weight as W, but for the last tile's padding.
 */
size_t  rm_hgemm_tiles_bytes(int64_t n, int64_t k);

/*
 * Y[i][c] = X[i] . W[c] for i < m and c in [c0, c1): xp X packed (above),
 * Y row stride ldy. W is either tiles (packed whole, above; c0 a multiple
 * of 32) or, when tiles is NULL, w (16-bit rows of k elements) packed tile
 * by tile into wp, this thread's rm_hgemm_w_bytes(k) bytes. Runs on the
 * calling thread. Each output is summed in the same order whatever
 * [c0, c1) and whichever W, so splitting columns over threads, or packing
 * at load, gives the same bits.
 */
void rm_hgemm_cols(const rm_hgemm_fns *f, float *y, int64_t ldy, const float *xp, int64_t m, int64_t k,
                   const uint16_t *w, const uint16_t *tiles, int64_t c0, int64_t c1, uint16_t *wp);
/* y[c] = x . W[c] for one X row (not packed) and c in [c0, c1) (c0 a
 * multiple of 32), from tiles packed whole, with f->row. */
void rm_hgemm_cols_row(const rm_hgemm_fns *f, float *y, const float *x, int64_t k, const uint16_t *tiles, int64_t c0,
                       int64_t c1);

/* The variants (hgemm_avx512.c, hgemm_avx2.c) and the portable packer. */
void rm_hgemm_tile_f16_avx512(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                              int rows, int nc, bool accumulate);
void rm_hgemm_tile_bf16_avx512(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                               int rows, int nc, bool accumulate);
void rm_hgemm_tile_f16_avx2(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                            int rows, int nc, bool accumulate);
void rm_hgemm_tile_bf16_avx2(const float *xp, int mr, const uint16_t *wp, int64_t kc, float *y, int64_t ldy,
                             int rows, int nc, bool accumulate);
void rm_hgemm_row_f16_avx2(const float *x, const uint16_t *wp, int64_t k, float *y, int nc);
void rm_hgemm_row_bf16_avx2(const float *x, const uint16_t *wp, int64_t k, float *y, int nc);
void rm_hgemm_row_f16_avx512(const float *x, const uint16_t *wp, int64_t k, float *y, int nc);
void rm_hgemm_row_bf16_avx512(const float *x, const uint16_t *wp, int64_t k, float *y, int nc);
void rm_hgemm_pack_avx2(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc);
void rm_hgemm_pack_avx512(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc);
void rm_hgemm_pack_scalar(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc);

#endif
