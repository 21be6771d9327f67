/*
 * qgemm.c — the int8 multi-row path for q8_0 weights (prefill): Y = X W^T
 * with X quantised to q8_0 once per call and every product an int8 x int8
 * multiply summed exactly in int32 per 32-element block.
 *
 * Layouts (both private to src/kernels):
 *
 *  - An activation row: k bytes xu[e] = q[e] + 128 (the q8_0 levels as
 *    unsigned bytes, as vpdpbusd's unsigned operand wants them; the signed
 *    level is xu ^ 0x80), then nb f32 scales.
 *
 *  - A weight tile: RM_QGEMM_TILE_COLS (32) W rows repacked for a
 *    broadcast-activation kernel. Per block b, RM_QGEMM_TILE_BLOCK bytes:
 *      qs   [8 groups][32 columns][4 bytes]  the int8 levels, group g holds
 *                                            elements 4g .. 4g+3 of the block
 *      corr [32] int32                       -128 * sum of the column's levels
 *      d    [32] f32                         the column's block scale
 *    One 64-byte load of group g then meets one broadcast 4-byte word of an
 *    activation row: vpdpbusd adds the four products of 16 columns at once;
 *    two such loads cover the tile, so each broadcast word feeds 32 columns.
 *    Because xu = q + 128, sum xu w = sum q w + 128 sum w; corr starts the
 *    accumulator at the second term negated, so the block's int32 is exactly
 *    sum q w.
 *
 * Per block and (row, column) the kernel adds isum * (dx * dw) to an f32
 * accumulator with one fused multiply-add, the product dx * dw rounded first;
 * the scalar kernel here does the same operations in the same order, so every
 * variant gives the same bits (tests check that).
 */
#include "kernels/qgemm.h"

#include <math.h>
#include <string.h>

size_t rm_qgemm_tile_bytes(int64_t nb) { return (size_t)nb * RM_QGEMM_TILE_BLOCK; }

void rm_qgemm_pack_tile(uint8_t *tile, const rm_block_q8_0 *w, int64_t nb, int ncols) {
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * RM_QGEMM_TILE_BLOCK;
        int32_t corr[RM_QGEMM_TILE_COLS];
        float d[RM_QGEMM_TILE_COLS];
        for (int c = 0; c < RM_QGEMM_TILE_COLS; c++) {
            const rm_block_q8_0 *wb = c < ncols ? &w[(size_t)c * (size_t)nb + (size_t)b] : NULL;
            int32_t sum = 0;
            for (int e = 0; e < RM_Q8_0_BLOCK; e++) {
                int8_t q = wb ? wb->qs[e] : 0;
                blk[(e / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + e % 4] = (uint8_t)q;
                sum += q;
            }
            corr[c] = -128 * sum;
            d[c] = wb ? rm_f16_to_f32(wb->d) : 0.0f;
        }
        memcpy(blk + RM_QGEMM_CORR_AT, corr, sizeof corr);
        memcpy(blk + RM_QGEMM_D_AT, d, sizeof d);
    }
}

void rm_qgemm_pack_act(uint8_t *xu, float *xd, const rm_block_q8_0 *xq, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        xd[b] = rm_f16_to_f32(xq[b].d);
        for (int e = 0; e < RM_Q8_0_BLOCK; e++) xu[b * RM_Q8_0_BLOCK + e] = (uint8_t)(xq[b].qs[e] + 128);
    }
}

void rm_qgemm_q8_0_scalar(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile, int64_t nb,
                          float *y, int64_t ldy, int nc) {
    for (int r = 0; r < nr; r++) {
        float acc[RM_QGEMM_TILE_COLS] = {0};
        const uint8_t *x = xu + r * ldx;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = tile + (size_t)b * RM_QGEMM_TILE_BLOCK;
            int32_t corr[RM_QGEMM_TILE_COLS];
            float d[RM_QGEMM_TILE_COLS];
            memcpy(corr, blk + RM_QGEMM_CORR_AT, sizeof corr);
            memcpy(d, blk + RM_QGEMM_D_AT, sizeof d);
            float dx = xd[r * (ldx / RM_Q8_0_BLOCK) + b];
            for (int c = 0; c < RM_QGEMM_TILE_COLS; c++) {
                int32_t s = corr[c];
                for (int e = 0; e < RM_Q8_0_BLOCK; e++)
                    s += (int32_t)x[b * RM_Q8_0_BLOCK + e] * (int8_t)blk[(e / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + e % 4];
                acc[c] = fmaf((float)s, d[c] * dx, acc[c]);
            }
        }
        for (int c = 0; c < nc; c++) y[r * ldy + c] = acc[c];
    }
}

rm_qgemm_fn rm_qgemm_q8_0_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_q8_0_vnni;
    return NULL; /* the AVX2 kernel reached 0.8x of the sgemm path (see rm_qgemm_q8_0_get) */
}

rm_qgemm_pack_fn rm_qgemm_pack_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_pack_tile_vnni;
    return rm_qgemm_pack_tile;
}

/* ---- q4_k and q6_k: compact tiles ---------------------------------------- */

/* Word w (4 bytes) of a column's level bytes to group w of a tile: the
 * interleave every k-quant tile shares, one column at a time. */
static void tile_words(uint8_t *dst, const uint8_t *src, int nwords, int c) {
    for (int w = 0; w < nwords; w++) memcpy(dst + ((size_t)w * RM_QGEMM_TILE_COLS + (size_t)c) * 4, src + 4 * w, 4);
}

/* Byte e % 4 of group e / 4 of column c in a 32-column interleave. */
static uint8_t tile_byte(const uint8_t *grp, int e, int c) { return grp[(e / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + e % 4]; }

size_t rm_qgemm_k4_tile_bytes(int64_t nb) { return (size_t)nb * RM_QGEMM_K4_BLOCK; }

void rm_qgemm_k4_pack_tile(uint8_t *tile, const rm_block_q4_k *w, int64_t nb, int ncols) {
    if (ncols < RM_QGEMM_TILE_COLS) memset(tile, 0, rm_qgemm_k4_tile_bytes(nb));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * RM_QGEMM_K4_BLOCK;
        for (int c = 0; c < ncols; c++) {
            const rm_block_q4_k *wb = &w[(size_t)c * (size_t)nb + (size_t)b];
            tile_words(blk, wb->qs, RM_QK_K / 8, c);
            uint8_t sc[8], mn[8];
            rm_kern_unpack_k4(wb->scales, sc, mn);
            for (int j = 0; j < 8; j++) {
                blk[RM_QGEMM_K4_SC_AT + j * RM_QGEMM_TILE_COLS + c] = sc[j];
                blk[RM_QGEMM_K4_MN_AT + j * RM_QGEMM_TILE_COLS + c] = mn[j];
            }
            memcpy(blk + RM_QGEMM_K4_D_AT + 2 * c, &wb->d, 2);
            memcpy(blk + RM_QGEMM_K4_DMIN_AT + 2 * c, &wb->dmin, 2);
        }
    }
}

/* The f16 scale of column c at blk + at. */
static float tile_f16(const uint8_t *blk, int at, int c) {
    uint16_t h;
    memcpy(&h, blk + at + 2 * c, 2);
    return rm_f16_to_f32(h);
}

void rm_qgemm_q4_k_scalar(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y, int64_t ldy,
                          int nc) {
    for (int r = 0; r < nr; r++) {
        float acc[RM_QGEMM_TILE_COLS] = {0};
        for (int64_t b = 0; b < nb; b++) {
            const rm_block_q8_k *xb = &x[r * nb + b];
            const uint8_t *blk = tile + (size_t)b * RM_QGEMM_K4_BLOCK;
            for (int c = 0; c < RM_QGEMM_TILE_COLS; c++) {
                int32_t S = 0, M = 0;
                for (int j = 0; j < 8; j++) {
                    const uint8_t *chunk = blk + (j / 2) * 8 * RM_QGEMM_TILE_COLS * 4;
                    int32_t isum = 0;
                    for (int e = 0; e < 32; e++) isum += ((tile_byte(chunk, e, c) >> (4 * (j % 2))) & 0xF) * xb->qs[32 * j + e];
                    S += blk[RM_QGEMM_K4_SC_AT + j * RM_QGEMM_TILE_COLS + c] * isum;
                    M += blk[RM_QGEMM_K4_MN_AT + j * RM_QGEMM_TILE_COLS + c] * (xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
                }
                acc[c] = fmaf((float)S, tile_f16(blk, RM_QGEMM_K4_D_AT, c) * xb->d, acc[c]);
                acc[c] = fmaf(-(float)M, tile_f16(blk, RM_QGEMM_K4_DMIN_AT, c) * xb->d, acc[c]);
            }
        }
        for (int c = 0; c < nc; c++) y[r * ldy + c] = acc[c];
    }
}

rm_qgemm_k4_fn rm_qgemm_q4_k_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_q4_k_vnni;
    return NULL;
}

size_t rm_qgemm_k6_tile_bytes(int64_t nb) { return (size_t)nb * RM_QGEMM_K6_BLOCK; }

void rm_qgemm_k6_pack_tile(uint8_t *tile, const rm_block_q6_k *w, int64_t nb, int ncols) {
    if (ncols < RM_QGEMM_TILE_COLS) memset(tile, 0, rm_qgemm_k6_tile_bytes(nb));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * RM_QGEMM_K6_BLOCK;
        for (int c = 0; c < ncols; c++) {
            const rm_block_q6_k *wb = &w[(size_t)c * (size_t)nb + (size_t)b];
            tile_words(blk, wb->ql, RM_QK_K / 8, c);
            tile_words(blk + RM_QGEMM_K6_QH_AT, wb->qh, RM_QK_K / 16, c);
            for (int j = 0; j < 16; j++) blk[RM_QGEMM_K6_SC_AT + j * RM_QGEMM_TILE_COLS + c] = (uint8_t)wb->scales[j];
            memcpy(blk + RM_QGEMM_K6_D_AT + 2 * c, &wb->d, 2);
        }
    }
}

/* Level (0..63) of element e (0..255) of column c in a q6_k tile block. */
static int k6_level(const uint8_t *blk, int e, int c) {
    int h = e / 128, g = (e % 128) / 32, l = e % 32;
    int lo = tile_byte(blk + (2 * h + g % 2) * 8 * RM_QGEMM_TILE_COLS * 4, l, c) >> (4 * (g / 2)) & 0xF;
    int hi = tile_byte(blk + RM_QGEMM_K6_QH_AT + h * 8 * RM_QGEMM_TILE_COLS * 4, l, c) >> (2 * g) & 3;
    return lo | hi << 4;
}

void rm_qgemm_q6_k_scalar(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y, int64_t ldy,
                          int nc) {
    for (int r = 0; r < nr; r++) {
        float acc[RM_QGEMM_TILE_COLS] = {0};
        for (int64_t b = 0; b < nb; b++) {
            const rm_block_q8_k *xb = &x[r * nb + b];
            const uint8_t *blk = tile + (size_t)b * RM_QGEMM_K6_BLOCK;
            for (int c = 0; c < RM_QGEMM_TILE_COLS; c++) {
                int32_t S = 0, M = 0;
                for (int j = 0; j < 16; j++) {
                    int32_t isum = 0, sc = (int8_t)blk[RM_QGEMM_K6_SC_AT + j * RM_QGEMM_TILE_COLS + c];
                    for (int e = 0; e < 16; e++) isum += k6_level(blk, 16 * j + e, c) * xb->qs[16 * j + e];
                    S += sc * isum;
                    M += sc * xb->bsums[j];
                }
                acc[c] = fmaf((float)(S - 32 * M), tile_f16(blk, RM_QGEMM_K6_D_AT, c) * xb->d, acc[c]);
            }
        }
        for (int c = 0; c < nc; c++) y[r * ldy + c] = acc[c];
    }
}

rm_qgemm_k4_fn rm_qgemm_q6_k_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_q6_k_vnni;
    return NULL;
}
