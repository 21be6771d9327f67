/*
 * pool.h — the in-memory retrieval pool of the registry: the active
 * adapters' unit embeddings with their tenant and visibility, searched by
 * exact inner product with the caller's visibility filter applied inside
 * the search (k results whenever k adapters are visible).
 *
 * Concurrency: the pool is an immutable snapshot behind one pointer.
 * Readers take the snapshot (a lock held for a pointer read and a reference
 * count increment, never for a search) and search it without locks; a
 * writer copies the snapshot with its change applied, swaps the pointer and
 * drops its reference to the old one, which is freed by whichever thread
 * releases it last. Writers are serialised among themselves. A search thus
 * sees the pool before or after a change, never half of one, and an adapter
 * removed while a search runs stays valid to that search.
 *
 * The search is one pass over the snapshot: for each visible row, the f32
 * dot product (rm_vec_dot) of the unit query and the unit row, and an
 * insertion into the k best (ties by id ascending), O(n (dim + k)); the
 * filter reads the snapshot's entries, never a hidden row's vector. A
 * change copies the entries only (O(n)), never vectors. An approximate
 * index can replace `search` behind the same calls.
 */
#ifndef RM_REGISTRY_POOL_H
#define RM_REGISTRY_POOL_H

#include "registry/registry.h"

typedef struct rm_reg_pool rm_reg_pool;

/* out[dim] = v / |v| (norm in double, then f32): how the pool normalises
 * rows and queries; *ok false (out zero) for a zero or non-finite v. */
void      rm_reg_pool_normalise(const float *v, int dim, float *out, bool *ok);

rm_status rm_reg_pool_new(int dim, rm_reg_pool **out);
void      rm_reg_pool_free(rm_reg_pool *p); /* NULL is a no-op; no search may be running */
int       rm_reg_pool_dim(const rm_reg_pool *p);
int       rm_reg_pool_size(rm_reg_pool *p);
/* Add (or replace) adapter `id` of `tenant`; vec[dim] is normalised here.
 * ERR_INVALID for a zero or non-finite vector or a name too long. */
rm_status rm_reg_pool_add(rm_reg_pool *p, int64_t id, int64_t tenant, bool is_public, const char *name,
                          const float *vec);
/* Replace the whole content with rows[i] where keep[i] (their embeddings
 * normalised here), in one swap: loading a pool costs O(n dim), not one
 * copy per row. ERR_INVALID for a kept row without a usable embedding. */
rm_status rm_reg_pool_replace(rm_reg_pool *p, const rm_reg_adapter *rows, const bool *keep, int n);
/* Remove adapter `id`; false when it was not there. */
bool      rm_reg_pool_remove(rm_reg_pool *p, int64_t id);
bool      rm_reg_pool_contains(rm_reg_pool *p, int64_t id);
/*
 * The min(k, visible) best rows for query q[dim] among those that `tenant`
 * may see (is_public, or the row's tenant), best first, into hits[k].
 * Returns the count (0 for k < 1 or a zero/non-finite query).
 */
int       rm_reg_pool_search(rm_reg_pool *p, const float *q, int64_t tenant, int k, rm_reg_hit *hits);

#endif
