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

/* ---- q4_k ------------------------------------------------------------------ */

size_t rm_qgemm_k4_tile_bytes(int64_t nb) { return (size_t)nb * RM_QGEMM_K4_BLOCK; }

void rm_qgemm_k4_pack_tile(uint8_t *tile, const rm_block_q4_k *w, int64_t nb, int ncols) {
    memset(tile, 0, rm_qgemm_k4_tile_bytes(nb));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * RM_QGEMM_K4_BLOCK;
        for (int c = 0; c < ncols; c++) {
            const rm_block_q4_k *wb = &w[(size_t)c * (size_t)nb + (size_t)b];
            uint8_t sc[8], mn[8];
            rm_kern_unpack_k4(wb->scales, sc, mn);
            for (int j = 0; j < 8; j++) {
                for (int e = 0; e < 32; e++)
                    blk[j * RM_QGEMM_QS_BYTES + (e / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + e % 4] =
                        (uint8_t)((wb->qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 0xF);
                int32_t s32 = sc[j], m32 = mn[j];
                memcpy(blk + RM_QGEMM_K4_SC_AT + (j * RM_QGEMM_TILE_COLS + c) * 4, &s32, 4);
                memcpy(blk + RM_QGEMM_K4_MN_AT + (j * RM_QGEMM_TILE_COLS + c) * 4, &m32, 4);
            }
            float d = rm_f16_to_f32(wb->d), dmin = rm_f16_to_f32(wb->dmin);
            memcpy(blk + RM_QGEMM_K4_D_AT + c * 4, &d, 4);
            memcpy(blk + RM_QGEMM_K4_DMIN_AT + c * 4, &dmin, 4);
        }
    }
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
                    int32_t isum = 0, sc, mn;
                    for (int e = 0; e < 32; e++)
                        isum += blk[j * RM_QGEMM_QS_BYTES + (e / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + e % 4] *
                                xb->qs[32 * j + e];
                    memcpy(&sc, blk + RM_QGEMM_K4_SC_AT + (j * RM_QGEMM_TILE_COLS + c) * 4, 4);
                    memcpy(&mn, blk + RM_QGEMM_K4_MN_AT + (j * RM_QGEMM_TILE_COLS + c) * 4, 4);
                    S += sc * isum;
                    M += mn * (xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
                }
                float d, dmin;
                memcpy(&d, blk + RM_QGEMM_K4_D_AT + c * 4, 4);
                memcpy(&dmin, blk + RM_QGEMM_K4_DMIN_AT + c * 4, 4);
                acc[c] = fmaf((float)S, d * xb->d, acc[c]);
                acc[c] = fmaf(-(float)M, dmin * xb->d, acc[c]);
            }
        }
        for (int c = 0; c < nc; c++) y[r * ldy + c] = acc[c];
    }
}

rm_qgemm_k4_fn rm_qgemm_q4_k_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_q4_k_vnni;
    return NULL;
}

rm_qgemm_k4_pack_fn rm_qgemm_k4_pack_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_k4_pack_tile_vnni;
    return rm_qgemm_k4_pack_tile;
}

/* ---- q6_k ------------------------------------------------------------------ */

size_t rm_qgemm_k6_tile_bytes(int64_t nb) { return (size_t)nb * RM_QGEMM_K6_BLOCK; }

void rm_qgemm_k6_pack_tile(uint8_t *tile, const rm_block_q6_k *w, int64_t nb, int ncols) {
    memset(tile, 0, rm_qgemm_k6_tile_bytes(nb));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * RM_QGEMM_K6_BLOCK;
        for (int c = 0; c < ncols; c++) {
            const rm_block_q6_k *wb = &w[(size_t)c * (size_t)nb + (size_t)b];
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = wb->ql + 64 * h, *qh = wb->qh + 32 * h;
                for (int g = 0; g < 4; g++)
                    for (int l = 0; l < 32; l++) {
                        int lo = g < 2 ? ql[l + 32 * g] & 0xF : ql[l + 32 * (g - 2)] >> 4;
                        int e = 128 * h + 32 * g + l, ee = e % 16;
                        blk[(e / 16) * (RM_QGEMM_QS_BYTES / 2) + (ee / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + ee % 4] =
                            (uint8_t)(lo | (((qh[l] >> (2 * g)) & 3) << 4));
                    }
            }
            for (int j = 0; j < 16; j++) {
                int32_t s32 = wb->scales[j];
                memcpy(blk + RM_QGEMM_K6_SC_AT + (j * RM_QGEMM_TILE_COLS + c) * 4, &s32, 4);
            }
            float d = rm_f16_to_f32(wb->d);
            memcpy(blk + RM_QGEMM_K6_D_AT + c * 4, &d, 4);
        }
    }
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
                    int32_t isum = 0, sc;
                    for (int e = 0; e < 16; e++)
                        isum += blk[j * (RM_QGEMM_QS_BYTES / 2) + (e / 4) * RM_QGEMM_TILE_COLS * 4 + c * 4 + e % 4] *
                                xb->qs[16 * j + e];
                    memcpy(&sc, blk + RM_QGEMM_K6_SC_AT + (j * RM_QGEMM_TILE_COLS + c) * 4, 4);
                    S += sc * isum;
                    M += sc * xb->bsums[j];
                }
                float d;
                memcpy(&d, blk + RM_QGEMM_K6_D_AT + c * 4, 4);
                acc[c] = fmaf((float)(S - 32 * M), d * xb->d, acc[c]);
            }
        }
        for (int c = 0; c < nc; c++) y[r * ldy + c] = acc[c];
    }
}

rm_qgemm_k4_fn rm_qgemm_q6_k_get(const rm_kern_ops *ops) {
    if (ops->isa == RM_ISA_AVX512 && __builtin_cpu_supports("avx512vnni")) return rm_qgemm_q6_k_vnni;
    return NULL;
}
