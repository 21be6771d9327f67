/*
 * retrieve.h — input-aware retrieval over a pool of tasks, and how well it
 * retrieves: what `ramole retrieve` and `ramole train retriever` measure,
 * and what a server's retrieval step and the evaluation run.
 *
 * A task stands for an adapter of the pool: its representation is the
 * renormalised mean embedding of up to m of its sample inputs (the first
 * m in file order, rm_task_samples), kept in a flat cosine index under the
 * task's number. A query text is embedded the same way (the embedder's
 * prefix, layer, pooling and projection) and gets the top-k tasks.
 */
#ifndef RM_RETRIEVAL_RETRIEVE_H
#define RM_RETRIEVAL_RETRIEVE_H

#include "retrieval/embed.h"
#include "retrieval/index.h"
#include "retrieval/tasks.h"

/*
 * A new index (dimension rm_embedder_dim(e)) holding every task of d
 * under id = task number, made from up to m samples each. Errors: the
 * embedder's, ERR_INVALID (a task whose representation is zero, named),
 * ERR_NOMEM. On failure *out is NULL.
 */
rm_status rm_task_index_build(rm_embedder *e, const rm_task_data *d, int m, rm_index **out);

/*
 * The best min(k, size) entries of ix for each of n texts, best first:
 * text i's are hits[i*k .. i*k + n_hits[i]) (hits: [n][k], n_hits: [n]).
 * Errors: the embedder's, ERR_INVALID (k < 1, an index of another
 * dimension), ERR_NOMEM.
 */
rm_status rm_retrieve(rm_embedder *e, const rm_index *ix, const char *const *texts, int n, int k, rm_hit *hits,
                      int *n_hits);

/* Top-1 accuracy of the three kinds of queries of a retriever's
 * evaluation: inputs of held-out tasks (adapters uploaded later, never
 * trained on), held-out inputs of the training tasks, and the training
 * inputs themselves. */
typedef struct {
    rm_retrieval_score held_out_tasks, held_out_inputs, train;
} rm_retrieval_eval;

/* Fraction right, NAN for a kind without queries. */
double rm_retrieval_accuracy(const rm_retrieval_score *s);

/*
 * rm_task_top1 of E[n][dim] (unit embeddings of every example) over the
 * examples of each kind: held_task[n], held_input[n], train[n] (per
 * example; NULL: no query of that kind). Candidates are all tasks, from
 * at most m inputs each, never the query itself.
 */
rm_status rm_retrieval_evaluate(const rm_task_data *d, const float *E, int dim, int m, const bool *held_task,
                                const bool *held_input, const bool *train, rm_retrieval_eval *out);

#endif /* RM_RETRIEVAL_RETRIEVE_H */
