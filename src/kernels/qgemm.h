/*
 * qgemm.h — private to src/kernels: the int8 multi-row q8_0 kernels
 * (qgemm.c has the layouts and the design).
 */
#ifndef RM_QGEMM_H
#define RM_QGEMM_H

#include "kernels/kern_internal.h"

#define RM_QGEMM_TILE_COLS 32
/* One block of a tile: the levels, then corr, then the scales (bytes). */
#define RM_QGEMM_QS_BYTES (8 * RM_QGEMM_TILE_COLS * 4)
#define RM_QGEMM_CORR_AT RM_QGEMM_QS_BYTES
#define RM_QGEMM_D_AT (RM_QGEMM_CORR_AT + RM_QGEMM_TILE_COLS * 4)
#define RM_QGEMM_TILE_BLOCK (RM_QGEMM_D_AT + RM_QGEMM_TILE_COLS * 4)
#define RM_QGEMM_ROWS 4         /* activation rows per kernel call, at most */

/*
 * y[r * ldy + c] = sum over the nb blocks of X row r . W column c, for
 * r < nr (1..RM_QGEMM_ROWS) and c < nc (1..RM_QGEMM_TILE_COLS). Activation
 * row r is xu + r * ldx (ldx = k bytes) with scales xd + r * (ldx / 32).
 */
typedef void (*rm_qgemm_fn)(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile,
                            int64_t nb, float *y, int64_t ldy, int nc);

/* Bytes of one weight tile of nb blocks per column (a multiple of 64). */
size_t rm_qgemm_tile_bytes(int64_t nb);
/* Repack ncols (<= RM_QGEMM_TILE_COLS) consecutive W rows of nb q8_0 blocks
 * each into tile; the missing columns are zero. The scalar definition and
 * the AVX-512 one (gathers; needs VNNI too) write the same bytes. */
typedef void (*rm_qgemm_pack_fn)(uint8_t *tile, const rm_block_q8_0 *w, int64_t nb, int ncols);
void rm_qgemm_pack_tile(uint8_t *tile, const rm_block_q8_0 *w, int64_t nb, int ncols);
void rm_qgemm_pack_tile_vnni(uint8_t *tile, const rm_block_q8_0 *w, int64_t nb, int ncols);
/* One quantised activation row (nb blocks) to the kernel layout: xu (32 nb
 * bytes) and xd (nb scales). */
void rm_qgemm_pack_act(uint8_t *xu, float *xd, const rm_block_q8_0 *xq, int64_t nb);

/* The variants: scalar reference, AVX2 (vpmaddubsw/vpmaddwd), AVX-512 VNNI
 * (vpdpbusd). All give the same bits. */
void rm_qgemm_q8_0_scalar(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile, int64_t nb,
                          float *y, int64_t ldy, int nc);
void rm_qgemm_q8_0_avx2(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile, int64_t nb,
                        float *y, int64_t ldy, int nc);
void rm_qgemm_q8_0_vnni(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile, int64_t nb,
                        float *y, int64_t ldy, int nc);

/*
 * q4_k weights against q8_K activation rows (kern_internal.h), the same
 * scheme in a compact layout that is also the form a model keeps its q4_k
 * weights in after load (rm_matmul_pack). A tile is 32 W rows; per
 * 256-weight super-block RM_QGEMM_K4_BLOCK bytes (148 per column against the
 * file's 144):
 *   qs   [4 chunks][8 groups][32 columns][4]  the file's level bytes, word w
 *        of a column's qs at group w: low nibbles are sub-block 2c, high
 *        nibbles sub-block 2c + 1 (elements 4g .. 4g+3 of each)
 *   sc   [8 sub-blocks][32] u8  the 6-bit scales, unpacked
 *   mn   [8][32] u8             the 6-bit mins
 *   d    [32] f16, dmin [32] f16
 * The levels are unsigned, so vpdpbusd takes them as its unsigned operand
 * and the activations as the signed one: no correction term.
 */
#define RM_QGEMM_K4_SC_AT (4 * 8 * RM_QGEMM_TILE_COLS * 4)
#define RM_QGEMM_K4_MN_AT (RM_QGEMM_K4_SC_AT + 8 * RM_QGEMM_TILE_COLS)
#define RM_QGEMM_K4_D_AT (RM_QGEMM_K4_MN_AT + 8 * RM_QGEMM_TILE_COLS)
#define RM_QGEMM_K4_DMIN_AT (RM_QGEMM_K4_D_AT + RM_QGEMM_TILE_COLS * 2)
#define RM_QGEMM_K4_BLOCK (RM_QGEMM_K4_DMIN_AT + RM_QGEMM_TILE_COLS * 2)

/* y[r * ldy + c] for activation rows x + r * nb (r < nr) and column c < nc:
 * per super-block, S = sum_j sc_j isum_j and M = sum_j mn_j bsum_j in exact
 * int32, then acc += S (d dx) and acc -= M (dmin dx), each one fma. */
typedef void (*rm_qgemm_k4_fn)(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y,
                               int64_t ldy, int nc);
size_t rm_qgemm_k4_tile_bytes(int64_t nb);
/* Repack ncols (<= 32) consecutive W rows of nb q4_k blocks into tile (the
 * missing columns zero): 4-byte words moved, scales unpacked. */
void rm_qgemm_k4_pack_tile(uint8_t *tile, const rm_block_q4_k *w, int64_t nb, int ncols);
void rm_qgemm_q4_k_scalar(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y, int64_t ldy,
                          int nc);
void rm_qgemm_q4_k_vnni(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y, int64_t ldy,
                        int nc);
/* The q4_k kernel for this CPU: VNNI, else NULL (the sgemm path stays,
 * having no faster integer kernel to give). */
rm_qgemm_k4_fn rm_qgemm_q4_k_get(const rm_kern_ops *ops);

/*
 * q6_k the same way, 210 bytes per column as in the file: per super-block
 *   ql   [2 halves][2][8 groups][32 columns][4]  the file's ql bytes, word w
 *        of a column's ql at group w (ql byte 64h + 32p + l holds element
 *        128h + 32p + l in its low nibble, 128h + 32(p + 2) + l in its high)
 *   qh   [2 halves][8 groups][32][4]              the file's qh bytes, word w
 *        at group w (bits 2g..2g+1 of qh byte 32h + l: element 128h + 32g + l)
 *   sc   [16 sub-blocks of 16][32] i8,  d [32] f16
 * Per super-block T = sum_j sc_j (isum_j - 32 bsum_j) in exact int32 over
 * the levels 0..63 (the q8_K sums are per 16, as the sub-blocks), then
 * acc += T (d dx), one fma.
 */
#define RM_QGEMM_K6_QH_AT (4 * 8 * RM_QGEMM_TILE_COLS * 4)
#define RM_QGEMM_K6_SC_AT (RM_QGEMM_K6_QH_AT + 2 * 8 * RM_QGEMM_TILE_COLS * 4)
#define RM_QGEMM_K6_D_AT (RM_QGEMM_K6_SC_AT + 16 * RM_QGEMM_TILE_COLS)
#define RM_QGEMM_K6_BLOCK (RM_QGEMM_K6_D_AT + RM_QGEMM_TILE_COLS * 2)
size_t rm_qgemm_k6_tile_bytes(int64_t nb);
void rm_qgemm_k6_pack_tile(uint8_t *tile, const rm_block_q6_k *w, int64_t nb, int ncols);
void rm_qgemm_q6_k_scalar(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y, int64_t ldy,
                          int nc);
void rm_qgemm_q6_k_vnni(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y, int64_t ldy,
                        int nc);
/* VNNI, else NULL (q6_k keeps the sgemm path). */
rm_qgemm_k4_fn rm_qgemm_q6_k_get(const rm_kern_ops *ops);

/* The kernel and packer for the table ops and this CPU: the VNNI ones where
 * the CPU has AVX-512 VNNI, else NULL for the kernel (q8_0 keeps the sgemm
 * path: the AVX2 kernel ran at 0.8x of it on a Zen 4 core with RAMOLE_ISA=avx2,
 * 77-79 against 96-99 GFLOP/s at m = 512, OpenBLAS using AVX-512 there; it
 * stays, tested, for a measurement on an AVX2-only CPU). */
rm_qgemm_fn rm_qgemm_q8_0_get(const rm_kern_ops *ops);
rm_qgemm_pack_fn rm_qgemm_pack_get(const rm_kern_ops *ops);

#endif
