/*
 * qgemm_avx512.c — the q8_0 multi-row kernel with AVX-512 VNNI (vpdpbusd):
 * the 32 columns of a tile in two registers, up to four activation rows per
 * pass, so each 64-byte weight load feeds four vpdpbusd and each broadcast
 * activation word feeds 32 columns; the q8_0 tile packer with gathers,
 * which makes the per-call repacking a small part of the time even at
 * m = 32; and the q4_k / q6_k kernels, which read the compact tiles a model
 * keeps from load on (qgemm.h). Chosen only where cpuid reports AVX512_VNNI
 * (qgemm.c); the layouts are in qgemm.c and qgemm.h.
 *
 * The q4_k and q6_k kernels prefetch. At one activation row (decode) they
 * stream the packed tiles from memory once, and they read a block's lines
 * out of order (q4_k each 1 KiB chunk twice, q6_k three interleaved runs of
 * ql, ql and qh), which the hardware prefetchers follow poorly: on a Zen 4
 * core the tiles came at 18-24 GB/s of the ~36-45 a plain read gets. So
 * every step of a kernel's block loop asks for its share of the block
 * RM_K_PREFETCH_BLOCKS ahead (tiles are consecutive in a packed matrix).
 */
#include "kernels/qgemm.h"

#include <immintrin.h>
#include <stddef.h>

#define RM_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define RM_VNNI RM_VNNI_TARGET __attribute__((always_inline)) static inline

/* Lane masks of the first nc columns of a tile, 16 per register. */
static inline void col_masks(int nc, __mmask16 m[2]) {
    m[0] = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
    m[1] = (__mmask16)(nc >= 32 ? 0xffff : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
}

/* Rows r < NR of acc (32 columns each, as two registers) to y, the first
 * nc columns. */
RM_VNNI void store_rows(float *y, int64_t ldy, int nc, const int NR, __m512 acc[][2]) {
    __mmask16 m[2];
    col_masks(nc, m);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        _mm512_mask_storeu_ps(y + r * ldy, m[0], acc[r][0]);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m[1], acc[r][1]);
    }
}

RM_VNNI void vnni_rows(const uint8_t *xu, const float *xd, int64_t ldx, const int NR, const uint8_t *tile,
                       int64_t nb, float *y, int64_t ldy, int nc) {
    __m512 acc[RM_QGEMM_ROWS][2];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    int64_t ldd = ldx / RM_Q8_0_BLOCK;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + (size_t)b * RM_QGEMM_TILE_BLOCK;
        __m512i corr0 = _mm512_loadu_si512((const void *)(blk + RM_QGEMM_CORR_AT));
        __m512i corr1 = _mm512_loadu_si512((const void *)(blk + RM_QGEMM_CORR_AT + 64));
        __m512i s[RM_QGEMM_ROWS][2];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) s[r][0] = corr0, s[r][1] = corr1;
        const uint8_t *xb = xu + b * RM_Q8_0_BLOCK;
        #pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i w0 = _mm512_loadu_si512((const void *)(blk + 128 * g));
            __m512i w1 = _mm512_loadu_si512((const void *)(blk + 128 * g + 64));
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                int32_t word;
                __builtin_memcpy(&word, xb + r * ldx + 4 * g, 4);
                __m512i xv = _mm512_set1_epi32(word);
                s[r][0] = _mm512_dpbusd_epi32(s[r][0], xv, w0);
                s[r][1] = _mm512_dpbusd_epi32(s[r][1], xv, w1);
            }
        }
        __m512 d0 = _mm512_loadu_ps((const float *)(blk + RM_QGEMM_D_AT));
        __m512 d1 = _mm512_loadu_ps((const float *)(blk + RM_QGEMM_D_AT + 64));
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m512 dx = _mm512_set1_ps(xd[r * ldd + b]);
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][0]), _mm512_mul_ps(d0, dx), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][1]), _mm512_mul_ps(d1, dx), acc[r][1]);
        }
    }
    store_rows(y, ldy, nc, NR, acc);
}

RM_VNNI_TARGET void rm_qgemm_q8_0_vnni(const uint8_t *xu, const float *xd, int64_t ldx, int nr, const uint8_t *tile,
                                       int64_t nb, float *y, int64_t ldy, int nc) {
    switch (nr) {
    case 4: vnni_rows(xu, xd, ldx, 4, tile, nb, y, ldy, nc); break;
    case 3: vnni_rows(xu, xd, ldx, 3, tile, nb, y, ldy, nc); break;
    case 2: vnni_rows(xu, xd, ldx, 2, tile, nb, y, ldy, nc); break;
    default: vnni_rows(xu, xd, ldx, 1, tile, nb, y, ldy, nc); break;
    }
}

/*
 * Gathers do the 4-byte transpose: word g of block b of the 16 columns of
 * half h. corr comes from vpdpbusd against 128 in every byte (then negated),
 * the scales from a gather of each block's first word (its f16 scale).
 */
RM_VNNI_TARGET void rm_qgemm_pack_tile_vnni(uint8_t *tile, const rm_block_q8_0 *w, int64_t nb, int ncols) {
    const int32_t wrow = (int32_t)(nb * (int64_t)sizeof(rm_block_q8_0));
    const __m512i cols = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(wrow));
    const __m512i b128 = _mm512_set1_epi8((char)0x80), low16 = _mm512_set1_epi32(0xffff);
    __mmask16 mask[2];
    col_masks(ncols, mask);
    const uint8_t *base = (const uint8_t *)w;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * RM_QGEMM_TILE_BLOCK;
        for (int h = 0; h < 2; h++) {
            __m512i idx = _mm512_add_epi32(cols, _mm512_set1_epi32(16 * h * wrow + (int32_t)(b * sizeof(rm_block_q8_0))));
            __m512i sum = _mm512_setzero_si512();
            for (int g = 0; g < 8; g++) {
                __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask[h],
                                                        _mm512_add_epi32(idx, _mm512_set1_epi32(2 + 4 * g)), base, 1);
                _mm512_storeu_si512((void *)(blk + 128 * g + 64 * h), v);
                sum = _mm512_dpbusd_epi32(sum, b128, v);
            }
            _mm512_storeu_si512((void *)(blk + RM_QGEMM_CORR_AT + 64 * h), _mm512_sub_epi32(_mm512_setzero_si512(), sum));
            __m512i dh = _mm512_and_si512(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask[h], idx, base, 1), low16);
            _mm512_storeu_ps((float *)(blk + RM_QGEMM_D_AT + 64 * h), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh)));
        }
    }
}

/* ---- q4_k ------------------------------------------------------------------ */

/*
 * Two blocks ahead: measured at one row on 32000 x 2048 tiles (one Zen 4
 * core, weights from DRAM), q6_k 18 -> 47 GB/s and q4_k 24 -> 38 with two
 * blocks, fewer with 1 KiB, 4 KiB, one or four blocks ahead.
 */
#define RM_K_PREFETCH_BLOCKS 2

/* Step `part` of `parts` over a block of `bytes` (a multiple of 64): prefetch
 * that share of the lines of the block RM_K_PREFETCH_BLOCKS after blk. */
RM_VNNI void prefetch_part(const uint8_t *blk, const int bytes, const int part, const int parts) {
    const char *ahead = (const char *)blk + RM_K_PREFETCH_BLOCKS * bytes;
    const int lines = bytes / 64;
    for (int i = lines * part / parts; i < lines * (part + 1) / parts; i++) _mm_prefetch(ahead + 64 * i, _MM_HINT_T0);
}

/* Columns 16h .. 16h+15 of a u8 [32] row of a tile as int32 lanes. */
RM_VNNI __m512i tile_u8_lanes(const uint8_t *p, int h) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 16 * h)));
}
RM_VNNI __m512 tile_f16_lanes(const uint8_t *p, int h) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32 * h)));
}

/*
 * Sub-block j of a q4_k tile block: one 64-byte load per 16 columns and
 * group, its low or high nibbles the levels; each broadcast activation word
 * feeds both halves. Then S += isum * sc (exact int32).
 */
RM_VNNI void vnni_k4_rows(const rm_block_q8_k *x, const int NR, const uint8_t *tile, int64_t nb, float *y,
                          int64_t ldy, int nc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[RM_QGEMM_ROWS][2];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + (size_t)b * RM_QGEMM_K4_BLOCK;
        __m512i S[RM_QGEMM_ROWS][2];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) S[r][0] = S[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = blk + (j / 2) * 1024;
            prefetch_part(blk, RM_QGEMM_K4_BLOCK, j, 8);
            __m512i is[RM_QGEMM_ROWS][2];
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) is[r][0] = is[r][1] = _mm512_setzero_si512();
            #pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m512i w0 = _mm512_loadu_si512((const void *)(q + 128 * g));
                __m512i w1 = _mm512_loadu_si512((const void *)(q + 128 * g + 64));
                if (j % 2) w0 = _mm512_srli_epi16(w0, 4), w1 = _mm512_srli_epi16(w1, 4);
                w0 = _mm512_and_si512(w0, m4), w1 = _mm512_and_si512(w1, m4);
                #pragma GCC unroll 4
                for (int r = 0; r < NR; r++) {
                    int32_t word;
                    __builtin_memcpy(&word, x[r * nb + b].qs + 32 * j + 4 * g, 4);
                    __m512i xv = _mm512_set1_epi32(word);
                    is[r][0] = _mm512_dpbusd_epi32(is[r][0], w0, xv);
                    is[r][1] = _mm512_dpbusd_epi32(is[r][1], w1, xv);
                }
            }
            __m512i sc0 = tile_u8_lanes(blk + RM_QGEMM_K4_SC_AT + j * 32, 0);
            __m512i sc1 = tile_u8_lanes(blk + RM_QGEMM_K4_SC_AT + j * 32, 1);
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                S[r][0] = _mm512_add_epi32(S[r][0], _mm512_mullo_epi32(is[r][0], sc0));
                S[r][1] = _mm512_add_epi32(S[r][1], _mm512_mullo_epi32(is[r][1], sc1));
            }
        }
        __m512 d0 = tile_f16_lanes(blk + RM_QGEMM_K4_D_AT, 0), d1 = tile_f16_lanes(blk + RM_QGEMM_K4_D_AT, 1);
        __m512 m0 = tile_f16_lanes(blk + RM_QGEMM_K4_DMIN_AT, 0), m1 = tile_f16_lanes(blk + RM_QGEMM_K4_DMIN_AT, 1);
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const rm_block_q8_k *xb = &x[r * nb + b];
            __m512i M0 = _mm512_setzero_si512(), M1 = M0;
            for (int j = 0; j < 8; j++) {
                __m512i bs = _mm512_set1_epi32(xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
                M0 = _mm512_add_epi32(M0, _mm512_mullo_epi32(tile_u8_lanes(blk + RM_QGEMM_K4_MN_AT + j * 32, 0), bs));
                M1 = _mm512_add_epi32(M1, _mm512_mullo_epi32(tile_u8_lanes(blk + RM_QGEMM_K4_MN_AT + j * 32, 1), bs));
            }
            __m512 dx = _mm512_set1_ps(xb->d);
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[r][0]), _mm512_mul_ps(d0, dx), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[r][1]), _mm512_mul_ps(d1, dx), acc[r][1]);
            acc[r][0] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M0), _mm512_mul_ps(m0, dx), acc[r][0]);
            acc[r][1] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M1), _mm512_mul_ps(m1, dx), acc[r][1]);
        }
    }
    store_rows(y, ldy, nc, NR, acc);
}

RM_VNNI_TARGET void rm_qgemm_q4_k_vnni(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y,
                                       int64_t ldy, int nc) {
    switch (nr) {
    case 4: vnni_k4_rows(x, 4, tile, nb, y, ldy, nc); break;
    case 3: vnni_k4_rows(x, 3, tile, nb, y, ldy, nc); break;
    case 2: vnni_k4_rows(x, 2, tile, nb, y, ldy, nc); break;
    default: vnni_k4_rows(x, 1, tile, nb, y, ldy, nc); break;
    }
}

/* ---- q6_k ------------------------------------------------------------------ */

/*
 * Levels of group gg of element run 32g of half h: the ql nibble (low for
 * g < 2, high otherwise) or'ed with the qh pair (bits 2g..2g+1) moved to
 * bits 4..5. The 16-bit shifts never carry a neighbour byte's bit into the
 * masked ones (shifts of at most 4 left, 2 right).
 */
RM_VNNI __m512i k6_levels(const uint8_t *blk, int h, int g, int gg, int half) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512i lo = _mm512_loadu_si512((const void *)(blk + ((2 * h + g % 2) * 8 + gg) * 128 + 64 * half));
    __m512i qh = _mm512_loadu_si512((const void *)(blk + RM_QGEMM_K6_QH_AT + (h * 8 + gg) * 128 + 64 * half));
    if (g >= 2) lo = _mm512_srli_epi16(lo, 4);
    __m512i hb = g == 3 ? _mm512_srli_epi16(qh, 2) : _mm512_slli_epi16(qh, 4 - 2 * g);
    /* (lo & m4) | (hb & m30): the two masks are disjoint */
    return _mm512_or_si512(_mm512_and_si512(lo, m4), _mm512_and_si512(hb, m30));
}

/* acc += T (d dx) for rows r < NR: T the super-block's exact int32 sums
 * (S), d the columns' f16 scales, dx row r's q8_K scale; one fma each. */
RM_VNNI void k6_scale_rows(const uint8_t *blk, const rm_block_q8_k *x, int64_t nb, int64_t b, const int NR,
                           __m512i S[][2], __m512 acc[][2]) {
    __m512 d0 = tile_f16_lanes(blk + RM_QGEMM_K6_D_AT, 0), d1 = tile_f16_lanes(blk + RM_QGEMM_K6_D_AT, 1);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        __m512 dx = _mm512_set1_ps(x[r * nb + b].d);
        acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[r][0]), _mm512_mul_ps(d0, dx), acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[r][1]), _mm512_mul_ps(d1, dx), acc[r][1]);
    }
}

RM_VNNI void vnni_k6_rows(const rm_block_q8_k *x, const int NR, const uint8_t *tile, int64_t nb, float *y,
                          int64_t ldy, int nc) {
    __m512 acc[RM_QGEMM_ROWS][2];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + (size_t)b * RM_QGEMM_K6_BLOCK;
        __m512i S[RM_QGEMM_ROWS][2];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) S[r][0] = S[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            int h = j / 8, g = (j % 8) / 2, s = j % 2; /* sub-block j: elements 128h + 32g + 16s .. +15 */
            prefetch_part(blk, RM_QGEMM_K6_BLOCK, j, 16);
            __m512i is[RM_QGEMM_ROWS][2];
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) is[r][0] = is[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int gg = 4 * s; gg < 4 * s + 4; gg++) {
                __m512i w0 = k6_levels(blk, h, g, gg, 0), w1 = k6_levels(blk, h, g, gg, 1);
                #pragma GCC unroll 4
                for (int r = 0; r < NR; r++) {
                    int32_t word;
                    __builtin_memcpy(&word, x[r * nb + b].qs + 128 * h + 32 * g + 4 * gg, 4);
                    __m512i xv = _mm512_set1_epi32(word);
                    is[r][0] = _mm512_dpbusd_epi32(is[r][0], w0, xv);
                    is[r][1] = _mm512_dpbusd_epi32(is[r][1], w1, xv);
                }
            }
            const uint8_t *scp = blk + RM_QGEMM_K6_SC_AT + j * 32;
            __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)scp));
            __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(scp + 16)));
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                __m512i bs = _mm512_set1_epi32(x[r * nb + b].bsums[j]);
                S[r][0] = _mm512_add_epi32(S[r][0], _mm512_mullo_epi32(_mm512_sub_epi32(is[r][0], _mm512_slli_epi32(bs, 5)), sc0));
                S[r][1] = _mm512_add_epi32(S[r][1], _mm512_mullo_epi32(_mm512_sub_epi32(is[r][1], _mm512_slli_epi32(bs, 5)), sc1));
            }
        }
        k6_scale_rows(blk, x, nb, b, NR, S, acc);
    }
    store_rows(y, ldy, nc, NR, acc);
}

/*
 * One or two rows (decode, short batches): the other loop order. Each group
 * gg loads its two ql words and its qh word once and builds the levels of
 * all four element runs g from them (3 loads per 4 level vectors instead of
 * 8), feeding four sub-blocks' accumulators at a time; with more rows
 * those accumulators would not fit the registers. Each accumulator starts
 * at -32 times its sub-block's activation sum, so it ends as the sub-block's
 * exact sum_e (level_e - 32) x_e. The int32 sums are the same integers in
 * another order, so the bits are the same.
 *
 * The loop over the four (h, s) quarters of a block stays rolled: fully
 * unrolled (as it was), GCC hoisted loads across quarters and spilled
 * accumulators to the stack, and the kernel ran about 10% slower on
 * cache-resident tiles (90 against 100-110 GB/s at one row).
 */
RM_VNNI void vnni_k6_rows_few(const rm_block_q8_k *x, const int NR, const uint8_t *tile, int64_t nb, float *y,
                              int64_t ldy, int nc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[2][2];
#pragma GCC unroll 2
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + (size_t)b * RM_QGEMM_K6_BLOCK;
        __m512i S[2][2];
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++) S[r][0] = S[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 1
        for (int hs = 0; hs < 4; hs++) {
            int h = hs / 2, s = hs % 2;
            prefetch_part(blk, RM_QGEMM_K6_BLOCK, hs, 4);
            const uint8_t *ql0 = blk + (16 * h + 4 * s) * 128, *ql1 = ql0 + 8 * 128;
            const uint8_t *qhp = blk + RM_QGEMM_K6_QH_AT + (8 * h + 4 * s) * 128;
            __m512i is[4][2][2]; /* [g][row][half] */
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
#pragma GCC unroll 2
                for (int r = 0; r < NR; r++)
                    is[g][r][0] = is[g][r][1] = _mm512_set1_epi32(-32 * x[r * nb + b].bsums[8 * h + 2 * g + s]);
#pragma GCC unroll 4
            for (int gi = 0; gi < 4; gi++) { /* group gg = 4s + gi */
#pragma GCC unroll 2
                for (int half = 0; half < 2; half++) {
                    __m512i l0 = _mm512_loadu_si512((const void *)(ql0 + 128 * gi + 64 * half));
                    __m512i l1 = _mm512_loadu_si512((const void *)(ql1 + 128 * gi + 64 * half));
                    __m512i qh = _mm512_loadu_si512((const void *)(qhp + 128 * gi + 64 * half));
                    __m512i lv[4];
                    lv[0] = _mm512_or_si512(_mm512_and_si512(l0, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
                    lv[1] = _mm512_or_si512(_mm512_and_si512(l1, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30));
                    lv[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4), _mm512_and_si512(qh, m30));
                    lv[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4),
                                            _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30));
#pragma GCC unroll 4
                    for (int g = 0; g < 4; g++)
#pragma GCC unroll 2
                        for (int r = 0; r < NR; r++) {
                            int32_t word;
                            __builtin_memcpy(&word, x[r * nb + b].qs + 128 * h + 32 * g + 16 * s + 4 * gi, 4);
                            is[g][r][half] = _mm512_dpbusd_epi32(is[g][r][half], lv[g], _mm512_set1_epi32(word));
                        }
                }
            }
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const uint8_t *scp = blk + RM_QGEMM_K6_SC_AT + (8 * h + 2 * g + s) * 32;
                __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)scp));
                __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(scp + 16)));
#pragma GCC unroll 2
                for (int r = 0; r < NR; r++) {
                    S[r][0] = _mm512_add_epi32(S[r][0], _mm512_mullo_epi32(is[g][r][0], sc0));
                    S[r][1] = _mm512_add_epi32(S[r][1], _mm512_mullo_epi32(is[g][r][1], sc1));
                }
            }
        }
        k6_scale_rows(blk, x, nb, b, NR, S, acc);
    }
    store_rows(y, ldy, nc, NR, acc);
}

RM_VNNI_TARGET void rm_qgemm_q6_k_vnni(const rm_block_q8_k *x, int nr, const uint8_t *tile, int64_t nb, float *y,
                                       int64_t ldy, int nc) {
    switch (nr) {
    case 4: vnni_k6_rows(x, 4, tile, nb, y, ldy, nc); break;
    case 3: vnni_k6_rows(x, 3, tile, nb, y, ldy, nc); break;
    case 2: vnni_k6_rows_few(x, 2, tile, nb, y, ldy, nc); break;
    default: vnni_k6_rows_few(x, 1, tile, nb, y, ldy, nc); break;
    }
}
