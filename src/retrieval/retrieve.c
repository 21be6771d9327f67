/*
 * retrieve.c — the task index and queries, and the three-way evaluation
 * (retrieve.h). Samples are embedded in one call (the embedder batches
 * them) and each task's mean is taken in double over its rows in file
 * order, the same rule rm_task_vectors and rm_task_top1 follow.
 */
#include "retrieval/retrieve.h"

#include <math.h>
#include <string.h>

rm_status rm_task_index_build(rm_embedder *e, const rm_task_data *d, int m, rm_index **out) {
    *out = NULL;
    int dim = rm_embedder_dim(e);
    rm_status st = RAMOLE_OK;
    const char **sample = rm_malloc((size_t)(d->n ? d->n : 1) * sizeof *sample);
    int *off = rm_malloc(((size_t)d->n_tasks + 1) * sizeof *off);
    int *rows = rm_malloc((size_t)(d->n ? d->n : 1) * sizeof *rows);
    float *E = NULL, *rep = rm_malloc((size_t)dim * sizeof *rep);
    double *acc = rm_malloc((size_t)dim * sizeof *acc);
    rm_index *ix = NULL;
    if (!sample || !off || !rows || !rep || !acc) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto out; }
    if ((st = rm_task_samples(d, m, off, rows)) != RAMOLE_OK) goto out;
    int ns = off[d->n_tasks];
    for (int i = 0; i < ns; i++) sample[i] = d->inputs[rows[i]];
    if (!(E = rm_malloc((size_t)(ns ? ns : 1) * (size_t)dim * sizeof *E))) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = rm_embedder_embed(e, sample, ns, E)) != RAMOLE_OK || (st = rm_index_new(dim, &ix)) != RAMOLE_OK) goto out;
    for (int t = 0; t < d->n_tasks && st == RAMOLE_OK; t++) {
        rm_embed_mean(E + (size_t)off[t] * dim, dim, NULL, off[t + 1] - off[t], acc, rep);
        if ((st = rm_index_add(ix, t, rep)) != RAMOLE_OK) rm_err_prefix(st, "task '%s'", d->names[t]);
    }
out:
    if (st == RAMOLE_OK) *out = ix;
    else rm_index_free(ix);
    rm_free(sample), rm_free(off), rm_free(rows), rm_free(E), rm_free(rep), rm_free(acc);
    return st;
}

rm_status rm_retrieve(rm_embedder *e, const rm_index *ix, const char *const *texts, int n, int k, rm_hit *hits,
                      int *n_hits) {
    int dim = rm_embedder_dim(e);
    if (k < 1) return rm_err(RAMOLE_ERR_INVALID, "retrieve: k must be at least 1, got %d", k);
    if (rm_index_dim(ix) != dim)
        return rm_err(RAMOLE_ERR_INVALID, "retrieve: the index holds %d-dimensional vectors, the embedder makes %d",
                      rm_index_dim(ix), dim);
    float *Q = rm_malloc((size_t)(n ? n : 1) * (size_t)dim * sizeof *Q);
    if (!Q) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_embedder_embed(e, texts, n, Q);
    for (int q = 0; st == RAMOLE_OK && q < n; q++)
        n_hits[q] = rm_index_query(ix, Q + (size_t)q * dim, k, hits + (size_t)q * k);
    rm_free(Q);
    return st;
}

double rm_retrieval_accuracy(const rm_retrieval_score *s) { return s->queries ? (double)s->correct / s->queries : NAN; }

rm_status rm_retrieval_evaluate(const rm_task_data *d, const float *E, int dim, int m, const bool *held_task,
                                const bool *held_input, const bool *train, rm_retrieval_eval *out) {
    memset(out, 0, sizeof *out);
    if (held_task) RM_TRY(rm_task_top1(d, E, dim, m, held_task, &out->held_out_tasks));
    if (held_input) RM_TRY(rm_task_top1(d, E, dim, m, held_input, &out->held_out_inputs));
    if (train) RM_TRY(rm_task_top1(d, E, dim, m, train, &out->train));
    return RAMOLE_OK;
}
