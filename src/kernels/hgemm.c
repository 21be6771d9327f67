/*
 * hgemm.c — Y = X W^T for f16 and bf16 weights without widening W in memory.
 *
 * The older GEMM path widened whole panels of W rows (512+ rows x k) to f32
 * and handed them to OpenBLAS sgemm, which then packed them once more: on
 * TinyLlama prefill 12% of the time went to the widening and the panels'
 * memory traffic. Here W stays 16-bit until it is in a register:
 *
 *  - X is packed once per call (rows split over the pool) into micro-panels
 *    of up to RM_HGEMM_MR rows, k-major within blocks of RM_HGEMM_KC
 *    (xp[kk][i]; one block of all rows is L2 resident for prefill-sized m).
 *  - Each thread takes whole tiles of 32 W rows. A tile is transposed into
 *    wp[k][32] (16-bit, 64 x k bytes) reading its 32 rows side by side over
 *    the whole k, so each row is one sequential stream; then, per k-block
 *    (16 KiB of the tile, L1 resident), it runs against every X micro-panel.
 *  - The micro-kernel keeps a 12 x 32 block of Y in 24 vector registers; per
 *    kk it widens the tile's 32 values (two vcvtph2ps on AVX-512) and adds
 *    12 broadcast X values times them, 24 FMAs. Y is stored after the first
 *    k-block and added to after the others.
 *
 * Every product is an exact widening of the stored weight times an f32 X
 * value, summed in f32 in k order within a block and block after block in
 * Y, so the result equals the widening path up to summation order, and it
 * does not depend on how columns are split between threads.
 */
#include "kernels/hgemm.h"

#include <string.h>

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

static int64_t round4(int64_t v) { return (v + 3) & ~(int64_t)3; }

size_t rm_hgemm_x_bytes(int64_t m, int64_t k) { return align64((size_t)round4(m) * (size_t)k * 4); }
size_t rm_hgemm_w_bytes(int64_t k) { return align64((size_t)RM_HGEMM_NR * (size_t)k * 2); }
int64_t rm_hgemm_panels(int64_t m) { return (m + RM_HGEMM_MR - 1) / RM_HGEMM_MR; }

/* Rows of the micro-panel that starts with `left` X rows to go: 12, or the
 * remainder rounded up to 4 (so the padding is at most 3 rows). */
static int panel_mr(int64_t left) { return left >= RM_HGEMM_MR ? RM_HGEMM_MR : (int)round4(left); }

/* One micro-panel: `rows` rows of X from x (row stride ldx), kc elements, into xp[kk * mr + i]. */
static void pack_x_panel(float *xp, const float *x, int64_t ldx, int rows, int mr, int64_t kc) {
    for (int i = 0; i < mr; i++) {
        if (i >= rows) {
            for (int64_t kk = 0; kk < kc; kk++) xp[kk * mr + i] = 0.0f;
            continue;
        }
        const float *xr = x + i * ldx;
        for (int64_t kk = 0; kk < kc; kk++) xp[kk * mr + i] = xr[kk];
    }
}

/* Where k-block k0 (kc long) of the panel at row r0 lives in the packed X. */
static int64_t x_offset(int64_t m, int64_t k0, int64_t r0, int64_t kc) { return k0 * round4(m) + r0 * kc; }

void rm_hgemm_pack_x(float *xp, const float *x, int64_t m, int64_t k, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        int64_t r0 = p * RM_HGEMM_MR;
        int rows = m - r0 < RM_HGEMM_MR ? (int)(m - r0) : RM_HGEMM_MR;
        for (int64_t k0 = 0; k0 < k; k0 += RM_HGEMM_KC) {
            int64_t kc = k - k0 < RM_HGEMM_KC ? k - k0 : RM_HGEMM_KC;
            pack_x_panel(xp + x_offset(m, k0, r0, kc), x + r0 * k + k0, k, rows, panel_mr(m - r0), kc);
        }
    }
}

void rm_hgemm_pack_scalar(uint16_t *wp, const uint16_t *w, int64_t ldw, int nc, int64_t kc) {
    for (int64_t kk = 0; kk < kc; kk++)
        for (int c = 0; c < RM_HGEMM_NR; c++) wp[kk * RM_HGEMM_NR + c] = c < nc ? w[c * ldw + kk] : 0;
}

size_t rm_hgemm_tiles_bytes(int64_t n, int64_t k) {
    return (size_t)((n + RM_HGEMM_NR - 1) / RM_HGEMM_NR) * RM_HGEMM_NR * (size_t)k * 2;
}

void rm_hgemm_cols(const rm_hgemm_fns *f, float *y, int64_t ldy, const float *xp, int64_t m, int64_t k,
                   const uint16_t *w, const uint16_t *tiles, int64_t c0, int64_t c1, uint16_t *wp) {
    for (int64_t c = c0; c < c1; c += RM_HGEMM_NR) {
        int nc = c1 - c < RM_HGEMM_NR ? (int)(c1 - c) : RM_HGEMM_NR;
        const uint16_t *t = tiles ? tiles + c * k : wp; /* tile c / 32 starts at element 32 k (c / 32) */
        if (!tiles) f->pack(wp, w + c * k, k, nc, k);   /* whole rows: 32 sequential streams */
        for (int64_t k0 = 0; k0 < k; k0 += RM_HGEMM_KC) {
            int64_t kc = k - k0 < RM_HGEMM_KC ? k - k0 : RM_HGEMM_KC;
            for (int64_t r0 = 0; r0 < m; r0 += RM_HGEMM_MR) {
                int rows = m - r0 < RM_HGEMM_MR ? (int)(m - r0) : RM_HGEMM_MR;
                f->tile(xp + x_offset(m, k0, r0, kc), panel_mr(m - r0), t + k0 * RM_HGEMM_NR, kc,
                        y + r0 * ldy + c, ldy, rows, nc, k0 > 0);
            }
        }
    }
}

void rm_hgemm_cols_row(const rm_hgemm_fns *f, float *y, const float *x, int64_t k, const uint16_t *tiles, int64_t c0,
                       int64_t c1) {
    for (int64_t c = c0; c < c1; c += RM_HGEMM_NR)
        f->row(x, tiles + c * k, k, y + c, c1 - c < RM_HGEMM_NR ? (int)(c1 - c) : RM_HGEMM_NR);
}

bool rm_hgemm_get(const rm_kern_ops *ops, rm_type wt, rm_hgemm_fns *out) {
    memset(out, 0, sizeof *out);
    if (ops->isa == RM_ISA_AVX512 && (wt == RM_TYPE_F16 || wt == RM_TYPE_BF16)) {
        out->tile = wt == RM_TYPE_F16 ? rm_hgemm_tile_f16_avx512 : rm_hgemm_tile_bf16_avx512;
        out->row = wt == RM_TYPE_F16 ? rm_hgemm_row_f16_avx512 : rm_hgemm_row_bf16_avx512;
        out->pack = rm_hgemm_pack_avx512;
        return true;
    }
    /* The AVX2 kernels are not chosen per call: transposing each tile per
     * call, on the AVX-512 host with RAMOLE_ISA=avx2, they ran at 0.75x of
     * the widened panels (59-63 against 78-83 GFLOP/s, OpenBLAS running its
     * Haswell kernels). From tiles packed at load they are: below. */
    return false;
}

/* With the transposes done once at load, the AVX2 kernels beat the dot
 * path and the panels: 1.3-1.7x in batched decoding, even at prefill
 * (docs/BENCH.md, "f16 tiles on AVX2"). */
bool rm_hgemm_packed_get(const rm_kern_ops *ops, rm_type wt, rm_hgemm_fns *out) {
    if (rm_hgemm_get(ops, wt, out)) return true;
    if (ops->isa == RM_ISA_AVX2 && (wt == RM_TYPE_F16 || wt == RM_TYPE_BF16)) {
        out->tile = wt == RM_TYPE_F16 ? rm_hgemm_tile_f16_avx2 : rm_hgemm_tile_bf16_avx2;
        out->row = wt == RM_TYPE_F16 ? rm_hgemm_row_f16_avx2 : rm_hgemm_row_bf16_avx2;
        out->pack = rm_hgemm_pack_avx2;
        return true;
    }
    return false;
}
