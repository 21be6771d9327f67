/*
 * kv_cache.c — the paged key/value cache (see kv_cache.h).
 *
 * Bookkeeping is three arrays: the block table [n_seq][max_blocks], each
 * sequence's block count, and the free stack. A block id appears in exactly
 * one of them; rm_kv_check verifies that from scratch.
 */
#include "model/kv_cache.h"

#include <string.h>

struct rm_kv_cache {
    rm_kv_params p;
    int max_blocks;          /* per sequence: ceil(n_ctx / block) */
    size_t row_bytes;        /* one position's K (or V) row of one layer */
    size_t block_bytes;      /* one block of one layer: block * row_bytes */
    uint8_t *k, *v;          /* [n_layers][n_blocks][block][kv_dim] */
    int32_t *table;          /* [n_seq][max_blocks] */
    int32_t *n_owned;        /* [n_seq] */
    int32_t *free_stack;     /* [n_blocks]; [0..n_free) free */
    int n_free;
    size_t bytes;
};

size_t rm_kv_block_bytes(const rm_kv_params *p) {
    return 2 * (size_t)p->n_layers * (size_t)p->block * rm_type_row_bytes(p->type, p->kv_dim);
}

rm_status rm_kv_new(const rm_kv_params *p, rm_kv_cache **out) {
    *out = NULL;
    if (p->n_layers <= 0 || p->kv_dim <= 0 || p->n_seq <= 0 || p->n_ctx <= 0 || p->block <= 0 || p->n_blocks <= 0)
        return rm_err(RAMOLE_ERR_INVALID, "KV cache: sizes must be positive (layers %d, kv_dim %d, sequences %d, "
                      "context %d, block %d, blocks %d)", p->n_layers, p->kv_dim, p->n_seq, p->n_ctx, p->block,
                      p->n_blocks);
    if (p->type != RM_TYPE_F32 && p->type != RM_TYPE_F16)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "KV cache: type %s (f32 or f16)", rm_type_name(p->type));
    rm_kv_cache *kv = rm_calloc(1, sizeof *kv);
    if (!kv) return rm_err(RAMOLE_ERR_NOMEM, "KV cache: out of memory");
    kv->p = *p;
    kv->max_blocks = (p->n_ctx + p->block - 1) / p->block;
    kv->row_bytes = rm_type_row_bytes(p->type, p->kv_dim);
    size_t total;
    bool ok = rm_mul_ok(kv->row_bytes, (size_t)p->block, &kv->block_bytes) &&
              rm_mul_ok(kv->block_bytes, (size_t)p->n_blocks, &total) &&
              rm_mul_ok(total, (size_t)p->n_layers, &total);
    /* calloc: pages of blocks never used are never touched, so resident
     * memory follows the blocks sequences actually reached */
    if (ok) {
        kv->k = rm_calloc(1, total);
        kv->v = rm_calloc(1, total);
        kv->bytes = 2 * total;
    }
    kv->table = rm_calloc((size_t)p->n_seq * (size_t)kv->max_blocks, sizeof *kv->table);
    kv->n_owned = rm_calloc((size_t)p->n_seq, sizeof *kv->n_owned);
    kv->free_stack = rm_calloc((size_t)p->n_blocks, sizeof *kv->free_stack);
    if (!ok || !kv->k || !kv->v || !kv->table || !kv->n_owned || !kv->free_stack) {
        double mib = ok ? (double)total * 2 / (1 << 20) : -1;
        rm_kv_free(kv);
        return rm_err(RAMOLE_ERR_NOMEM, "KV cache: out of memory (%.1f MiB for %d blocks of %d positions)", mib,
                      p->n_blocks, p->block);
    }
    /* block 0 on top of the stack */
    for (int i = 0; i < p->n_blocks; i++) kv->free_stack[i] = p->n_blocks - 1 - i;
    kv->n_free = p->n_blocks;
    *out = kv;
    return RAMOLE_OK;
}

void rm_kv_free(rm_kv_cache *kv) {
    if (!kv) return;
    rm_free(kv->k);
    rm_free(kv->v);
    rm_free(kv->table);
    rm_free(kv->n_owned);
    rm_free(kv->free_stack);
    rm_free(kv);
}

int rm_kv_blocks_for(const rm_kv_cache *kv, int len) { return (len + kv->p.block - 1) / kv->p.block; }

int rm_kv_blocks_short(const rm_kv_cache *kv, int seq, int len) {
    int need = rm_kv_blocks_for(kv, len) - kv->n_owned[seq];
    return need > 0 ? need : 0;
}

rm_status rm_kv_grow(rm_kv_cache *kv, int seq, int len) {
    if (seq < 0 || seq >= kv->p.n_seq)
        return rm_err(RAMOLE_ERR_RANGE, "KV cache: sequence %d is out of range (%d sequences)", seq, kv->p.n_seq);
    if (len > kv->p.n_ctx)
        return rm_err(RAMOLE_ERR_RANGE, "KV cache: %d positions exceed the context of %d", len, kv->p.n_ctx);
    int need = rm_kv_blocks_short(kv, seq, len);
    if (need > kv->n_free)
        return rm_err(RAMOLE_ERR_RANGE, "KV cache: sequence %d needs %d more blocks, %d of %d are free", seq, need,
                      kv->n_free, kv->p.n_blocks);
    int32_t *row = kv->table + (size_t)seq * (size_t)kv->max_blocks;
    for (int i = 0; i < need; i++) row[kv->n_owned[seq]++] = kv->free_stack[--kv->n_free];
    return RAMOLE_OK;
}

void rm_kv_release(rm_kv_cache *kv, int seq) {
    if (seq < 0 || seq >= kv->p.n_seq) return;
    int32_t *row = kv->table + (size_t)seq * (size_t)kv->max_blocks;
    /* pushed in reverse so that the sequence's first block is reused first */
    for (int i = kv->n_owned[seq] - 1; i >= 0; i--) kv->free_stack[kv->n_free++] = row[i];
    kv->n_owned[seq] = 0;
}

int rm_kv_free_blocks(const rm_kv_cache *kv) { return kv->n_free; }
int rm_kv_seq_blocks(const rm_kv_cache *kv, int seq) {
    return seq >= 0 && seq < kv->p.n_seq ? kv->n_owned[seq] : 0;
}
const rm_kv_params *rm_kv_params_of(const rm_kv_cache *kv) { return &kv->p; }
size_t rm_kv_bytes(const rm_kv_cache *kv) { return kv->bytes; }

static uint8_t *block_base(const rm_kv_cache *kv, bool v, int layer, int32_t block) {
    size_t i = (size_t)layer * (size_t)kv->p.n_blocks + (size_t)block;
    return (v ? kv->v : kv->k) + i * kv->block_bytes;
}

const void *rm_kv_block_rows(const rm_kv_cache *kv, bool v, int layer, int seq, int index) {
    return block_base(kv, v, layer, kv->table[(size_t)seq * (size_t)kv->max_blocks + (size_t)index]);
}

void *rm_kv_row(const rm_kv_cache *kv, bool v, int layer, int seq, int pos) {
    const uint8_t *b = rm_kv_block_rows(kv, v, layer, seq, pos / kv->p.block);
    return (void *)(b + (size_t)(pos % kv->p.block) * kv->row_bytes);
}

void rm_kv_store(rm_kv_cache *kv, int layer, int seq, int pos, const float *k, const float *v) {
    rm_convert(kv->p.type, rm_kv_row(kv, false, layer, seq, pos), RM_TYPE_F32, k, kv->p.kv_dim);
    rm_convert(kv->p.type, rm_kv_row(kv, true, layer, seq, pos), RM_TYPE_F32, v, kv->p.kv_dim);
}

size_t rm_kv_rows_bytes(const rm_kv_cache *kv, int n_pos, int n_layers) {
    return 2 * (size_t)n_layers * (size_t)n_pos * kv->row_bytes;
}

void rm_kv_get_rows(const rm_kv_cache *kv, int seq, int n_pos, int n_layers, void *dst) {
    uint8_t *d = dst;
    for (int v = 0; v < 2; v++)
        for (int l = 0; l < n_layers; l++)
            for (int p = 0; p < n_pos; p++, d += kv->row_bytes) memcpy(d, rm_kv_row(kv, v, l, seq, p), kv->row_bytes);
}

void rm_kv_put_rows(rm_kv_cache *kv, int seq, int n_pos, int n_layers, const rm_kv_rows *src) {
    const uint8_t *base = src->data;
    for (int v = 0; v < 2; v++)
        for (int l = 0; l < n_layers; l++) {
            /* the copy's own layout: its V half starts after all its layers' K */
            const uint8_t *s = base + ((size_t)v * (size_t)src->n_layers + (size_t)l) * (size_t)src->n_pos * kv->row_bytes;
            for (int p = 0; p < n_pos; p++, s += kv->row_bytes) memcpy(rm_kv_row(kv, v, l, seq, p), s, kv->row_bytes);
        }
}

void rm_kv_copy_rows(rm_kv_cache *kv, int src, int dst, int n_pos) {
    for (int v = 0; v < 2; v++)
        for (int l = 0; l < kv->p.n_layers; l++)
            for (int p = 0; p < n_pos; p++) memcpy(rm_kv_row(kv, v, l, dst, p), rm_kv_row(kv, v, l, src, p), kv->row_bytes);
}

rm_status rm_kv_check(const rm_kv_cache *kv) {
    int nb = kv->p.n_blocks;
    uint8_t *seen = rm_calloc((size_t)nb, 1);
    if (!seen) return rm_err(RAMOLE_ERR_NOMEM, "KV check: out of memory");
    rm_status st = RAMOLE_OK;
    int counted = kv->n_free;
    if (kv->n_free < 0 || kv->n_free > nb) {
        st = rm_err(RAMOLE_ERR_INTERNAL, "KV check: %d free blocks in a pool of %d", kv->n_free, nb);
        goto out;
    }
    for (int i = 0; i < kv->n_free; i++) {
        int32_t b = kv->free_stack[i];
        if (b < 0 || b >= nb || seen[b]++) {
            st = rm_err(RAMOLE_ERR_INTERNAL, "KV check: free block %d is out of range or listed twice", b);
            goto out;
        }
    }
    for (int s = 0; s < kv->p.n_seq; s++) {
        if (kv->n_owned[s] < 0 || kv->n_owned[s] > kv->max_blocks) {
            st = rm_err(RAMOLE_ERR_INTERNAL, "KV check: sequence %d owns %d blocks (at most %d)", s, kv->n_owned[s],
                        kv->max_blocks);
            goto out;
        }
        counted += kv->n_owned[s];
        for (int i = 0; i < kv->n_owned[s]; i++) {
            int32_t b = kv->table[(size_t)s * (size_t)kv->max_blocks + (size_t)i];
            if (b < 0 || b >= nb || seen[b]++) {
                st = rm_err(RAMOLE_ERR_INTERNAL, "KV check: block %d of sequence %d is out of range, free, or "
                            "shared", b, s);
                goto out;
            }
        }
    }
    if (counted != nb) st = rm_err(RAMOLE_ERR_INTERNAL, "KV check: %d of %d blocks accounted for (leak)", counted, nb);
out:
    rm_free(seen);
    return st;
}
