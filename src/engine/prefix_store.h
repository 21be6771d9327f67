/*
 * prefix_store.h — KV rows of instruction prefixes that many embeddings
 * share, computed once and copied into each new embedding's sequence.
 *
 * Every retrieval embeds "instruction + text" with the base alone, so the
 * instruction's K and V rows are the same for every text: the engine keeps
 * them here after the first embedding computed them, and a later one with
 * the same leading tokens starts its prefill after them. An entry is its
 * tokens, how many layers its rows hold (an inner layer's embedding writes
 * only the layers below it), and the rows (rm_kv_get_rows). Entries are
 * few and small; the least recently used goes when a bound is reached.
 *
 * Lifetime: owned by one engine; not thread-safe (the driving thread).
 */
#ifndef RM_ENGINE_PREFIX_STORE_H
#define RM_ENGINE_PREFIX_STORE_H

#include "model/kv_cache.h"

typedef struct rm_prefix_store rm_prefix_store;

/* At most max_entries entries and max_bytes of rows. */
rm_status rm_prefix_store_new(int max_entries, size_t max_bytes, rm_prefix_store **out);
void      rm_prefix_store_free(rm_prefix_store *s); /* NULL is a no-op */

/* Rows for tokens [0, n) holding at least n_layers layers, or NULL. The
 * pointer stays valid until the next rm_prefix_store_add. */
const void *rm_prefix_store_find(rm_prefix_store *s, const int32_t *toks, int n, int n_layers);

/* Keep a copy of positions [0, n) of layers [0, n_layers) of `seq`, whose
 * tokens are toks[0, n). Replaces an entry of the same tokens with fewer
 * layers. A copy larger than the whole bound is not kept (not an error). */
rm_status rm_prefix_store_add(rm_prefix_store *s, const rm_kv_cache *kv, int seq, const int32_t *toks, int n,
                              int n_layers);

#endif
