/*
 * prefix_store.h — KV rows of token sequences that later requests begin
 * with, computed once and copied into each new sequence that shares them.
 *
 * Two kinds of rows live in such stores (the engine keeps one of each):
 * the instruction prefix of retrieval's embeddings, the same for every
 * text, and the rows of finished generations, whose prompt a later
 * request may extend (the next turn of a chat, another continuation of
 * one context, the same system prompt). Rows depend on everything that
 * ran before them, adapters included, so an entry is filed under a key,
 * the caller's bytes for that (empty for the base alone). An entry is its
 * key, its tokens, how many layers its rows hold (an inner layer's
 * embedding writes only the layers below it), and the rows
 * (rm_kv_get_rows), and, when the request that left them recorded its
 * prompt's log-probabilities, those too (a later request scoring a prompt
 * that begins the same way needs them as much as the rows). Rows of
 * position p depend only on tokens [0, p], so
 * an entry serves any sequence that shares its first tokens, for as many
 * positions as they agree. The least recently used entry goes when a
 * bound is reached.
 *
 * Lifetime: owned by one engine; not thread-safe (the driving thread).
 */
#ifndef RM_ENGINE_PREFIX_STORE_H
#define RM_ENGINE_PREFIX_STORE_H

#include "engine/engine.h"
#include "model/kv_cache.h"

typedef struct rm_prefix_store rm_prefix_store;

/* At most max_entries entries and max_bytes of rows. */
rm_status rm_prefix_store_new(int max_entries, size_t max_bytes, rm_prefix_store **out);
void      rm_prefix_store_free(rm_prefix_store *s); /* NULL is a no-op */

/* What a match found, valid until the next rm_prefix_store_add: the
 * entry's rows, and its first tokens' log-probabilities (NULL: none). */
typedef struct {
    rm_kv_rows rows;
    const rm_logprob_list *lps;
} rm_prefix_hit;

/*
 * The entry filed under key (key_len bytes) with at least n_layers layers
 * whose tokens share the longest run of leading tokens with toks[0, n):
 * returns that run's length (0: none shares the first token) and fills
 * *hit. lps_top >= 0 asks for log-probabilities too: only entries holding
 * them with at least lps_top alternatives count, and a run counts no
 * further than they reach.
 */
int rm_prefix_store_match(rm_prefix_store *s, const void *key, size_t key_len, const int32_t *toks, int n,
                          int n_layers, int lps_top, rm_prefix_hit *hit);

/*
 * Keep a copy of positions [0, n) of layers [0, n_layers) of `seq`, whose
 * tokens are toks[0, n), under key, with the log-probabilities of its
 * first lps->n tokens (NULL or empty: none). When an entry of the key
 * already holds all that (these tokens first, as many layers, as many
 * log-probabilities with as many alternatives), nothing is copied (it
 * counts as used); entries of the key that this copy holds all of are
 * replaced. A copy larger than the whole bound is not kept (not an
 * error).
 */
rm_status rm_prefix_store_add(rm_prefix_store *s, const void *key, size_t key_len, const rm_kv_cache *kv, int seq,
                              const int32_t *toks, int n, int n_layers, const rm_logprob_list *lps);

/* Leading tokens a and b share, of at most n. */
int rm_prefix_common(const int32_t *a, const int32_t *b, int n);

/* Entries and bytes of rows kept now. */
int    rm_prefix_store_entries(const rm_prefix_store *s);
size_t rm_prefix_store_bytes(const rm_prefix_store *s);

#endif
