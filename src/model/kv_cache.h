/*
 * kv_cache.h — the paged key/value cache of an inference context.
 *
 * Memory is a pool of fixed-size blocks, each holding `block` positions of
 * every layer's K and V rows; a sequence owns a list of blocks (its block
 * table) that grows as it does, so memory follows each sequence's actual
 * length rather than the longest one a context allows (vLLM's paged
 * attention). A position p of sequence s lives in block table[s][p / block]
 * at row p % block.
 *
 * Storage: K and V are [n_layers][n_blocks][block][kv_dim] of `type` (f32,
 * or f16 to halve the cache). Free blocks are a stack: the block released
 * last is reused first, so a short-lived sequence touches pages that are
 * already resident.
 *
 * Capacity is all or nothing: rm_kv_grow either gives a sequence every
 * block it needs or changes nothing. The cache does not know batches; the
 * context (forward.c) asks for room before it writes and the engine decides
 * who waits when there is none.
 *
 * Lifetime: owned by one rm_ctx; not thread-safe (one step at a time).
 */
#ifndef RM_KV_CACHE_H
#define RM_KV_CACHE_H

#include "kernels/kernels.h"

typedef struct {
    int n_layers;
    int kv_dim;     /* n_kv_heads * head_dim */
    int n_seq;      /* sequence slots */
    int n_ctx;      /* positions a sequence may reach */
    int block;      /* positions per block (> 0) */
    int n_blocks;   /* blocks in the pool (> 0) */
    rm_type type;   /* RM_TYPE_F32 or RM_TYPE_F16 */
} rm_kv_params;

typedef struct rm_kv_cache rm_kv_cache;

rm_status rm_kv_new(const rm_kv_params *p, rm_kv_cache **out);
/* Bytes one block holds: K and V rows of `block` positions in every layer
 * (n_seq, n_ctx and n_blocks unused). For sizing a pool before making it. */
size_t    rm_kv_block_bytes(const rm_kv_params *p);
void      rm_kv_free(rm_kv_cache *kv); /* NULL is a no-op */

/* Blocks that hold `len` positions. */
int  rm_kv_blocks_for(const rm_kv_cache *kv, int len);
/* Blocks sequence `seq` must gain to hold `len` positions (0 if it has them). */
int  rm_kv_blocks_short(const rm_kv_cache *kv, int seq, int len);
/* Give `seq` blocks for `len` positions; ERR_RANGE (nothing changed) when
 * the pool has too few free blocks or len exceeds n_ctx. */
rm_status rm_kv_grow(rm_kv_cache *kv, int seq, int len);
/* Return every block of `seq` to the pool. */
void rm_kv_release(rm_kv_cache *kv, int seq);

int rm_kv_free_blocks(const rm_kv_cache *kv);
int rm_kv_seq_blocks(const rm_kv_cache *kv, int seq);
const rm_kv_params *rm_kv_params_of(const rm_kv_cache *kv);
size_t rm_kv_bytes(const rm_kv_cache *kv);

/* Row of K (v false) or V (v true) for (layer, seq, pos): the block must be
 * owned (a caller bug otherwise). Element type kv->type. */
void *rm_kv_row(const rm_kv_cache *kv, bool v, int layer, int seq, int pos);
/* The rows of one block of `seq`: K or V of `layer`, [block][kv_dim]. */
const void *rm_kv_block_rows(const rm_kv_cache *kv, bool v, int layer, int seq, int index);

/* Store one f32 row into the cache (converting to its type). */
void rm_kv_store(rm_kv_cache *kv, int layer, int seq, int pos, const float *k, const float *v);

/*
 * Raw copies of positions [0, n_pos) of layers [0, n_layers) of `seq`, in
 * the cache's own type: K then V, each [n_layers][n_pos][kv_dim]. A copy
 * taken from one sequence and put into another gives it the same states
 * (a shared instruction prefix, a finished request's prompt: computed
 * once). rm_kv_rows_bytes is the size of such a copy. The positions must
 * be owned (a caller bug otherwise); rm_kv_put_rows writes only, the
 * caller grows the sequence.
 */
typedef struct rm_kv_rows {
    const void *data;     /* as rm_kv_get_rows wrote it */
    int n_pos, n_layers;  /* what it holds */
} rm_kv_rows;
size_t rm_kv_rows_bytes(const rm_kv_cache *kv, int n_pos, int n_layers);
void rm_kv_get_rows(const rm_kv_cache *kv, int seq, int n_pos, int n_layers, void *dst);
/* The first n_pos positions of the first n_layers layers of src (at most
 * what it holds) into `seq`. */
void rm_kv_put_rows(rm_kv_cache *kv, int seq, int n_pos, int n_layers, const rm_kv_rows *src);
/* Copy positions [0, n_pos) of every layer from sequence src to dst, both
 * owning them (the caller grows dst): a prompt computed once for twins. */
void rm_kv_copy_rows(rm_kv_cache *kv, int src, int dst, int n_pos);

/*
 * Check the bookkeeping: every block is free exactly once or owned by
 * exactly one sequence once, and nothing else. ERR_INTERNAL naming the
 * first fault. For tests, after every step.
 */
rm_status rm_kv_check(const rm_kv_cache *kv);

#endif
