/*
 * index.h — the vector index of retrieval: a flat, exact index of unit
 * vectors with caller ids, queried for the top-k by cosine similarity.
 *
 * Vectors are normalised when added (a zero or non-finite vector is
 * refused), so a score is the cosine of the query and a stored vector,
 * computed in double. Order of results: score descending, ties by id
 * ascending; the result does not depend on the order of adds and removes.
 * Cost of a query: one dot product per stored vector plus an insertion
 * into the k best, O(n (dim + k)). Not thread-safe for writers; queries
 * may run concurrently with each other.
 */
#ifndef RM_RETRIEVAL_INDEX_H
#define RM_RETRIEVAL_INDEX_H

#include "core/core.h"

typedef struct rm_index rm_index;

typedef struct {
    int64_t id;
    float score;   /* cosine similarity, in [-1, 1] */
} rm_hit;

rm_status rm_index_new(int dim, rm_index **out);
void      rm_index_free(rm_index *ix); /* NULL is a no-op */
int       rm_index_dim(const rm_index *ix);
int       rm_index_size(const rm_index *ix);
/* Errors: ERR_INVALID (id already present; zero or non-finite vector). */
rm_status rm_index_add(rm_index *ix, int64_t id, const float *vec);
/* Errors: ERR_NOT_FOUND. */
rm_status rm_index_remove(rm_index *ix, int64_t id);
bool      rm_index_contains(const rm_index *ix, int64_t id);
/*
 * The min(k, size) best vectors for query q[dim] into hits[0..), best
 * first; returns that count (0 for a zero or non-finite query, and when
 * k > 64 and the scratch for the k best cannot be allocated).
 */
int       rm_index_query(const rm_index *ix, const float *q, int k, rm_hit *hits);

#endif /* RM_RETRIEVAL_INDEX_H */
