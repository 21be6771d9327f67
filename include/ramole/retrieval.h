/*
 * ramole/retrieval.h — input-aware adapter retrieval outside a registry:
 * the embedder (the base model's pooled hidden states with an optional
 * trained projection), task pools from a JSONL file, top-k retrieval, and
 * the contrastive (InfoNCE) training of the projection with its retrieval
 * accuracy before and after. Included by ramole.h.
 */
#ifndef RAMOLE_RETRIEVAL_H
#define RAMOLE_RETRIEVAL_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RAMOLE_EMBED_MAX_DIM 65536

typedef enum { RAMOLE_POOL_MEAN = 0, RAMOLE_POOL_MEAN_ALL, RAMOLE_POOL_LAST } ramole_pooling;
/* "mean", "mean_all", "last"; 0 when s names none. */
int ramole_pooling_from_name(const char *s, ramole_pooling *out);

typedef struct {
    const char *model;        /* the base, with its tokenizer (required) */
    const char *projection;   /* a projection file; its layer, pooling and prefix then rule */
    const char *prefix;       /* NULL: the paper's instruction prefix */
    int layer;                /* RAMOLE_LAYER_FINAL or 0..n_layers */
    ramole_pooling pooling;
    int max_tokens;           /* tokens of a text kept (0: the model's context, at most 512) */
    int n_threads;            /* 0: every core */
} ramole_embedder_params;

/* The embedder owns its model. Valid until ramole_embedder_free. */
typedef struct ramole_embedder ramole_embedder;

/* Errors name the model (one without a tokenizer cannot read text) or the
 * projection (made for another base). */
ramole_status ramole_embedder_open(const ramole_embedder_params *p, ramole_embedder **out);
void ramole_embedder_free(ramole_embedder *e);
/* Width of an embedding: the projection's, or the model's hidden size. */
int ramole_embedder_dim(const ramole_embedder *e);
/* Unit embeddings of texts[0..n) into out[n][dim]. */
ramole_status ramole_embedder_embed(ramole_embedder *e, const char *const *texts, int n, float *out);

/* Tasks of a JSONL file of {"task", "input"} lines, each with at least
 * min_inputs inputs. Valid until ramole_tasks_free. */
typedef struct ramole_tasks ramole_tasks;
ramole_status ramole_tasks_load(const char *path, int min_inputs, ramole_tasks **out);
void ramole_tasks_free(ramole_tasks *t);
int ramole_tasks_count(const ramole_tasks *t);
const char *ramole_tasks_name(const ramole_tasks *t, int task);

/* An index of tasks, each the normalised mean embedding of at most
 * `samples` of its inputs. Valid until ramole_task_index_free. */
typedef struct ramole_task_index ramole_task_index;
ramole_status ramole_task_index_build(ramole_embedder *e, const ramole_tasks *t, int samples,
                                      ramole_task_index **out);
void ramole_task_index_free(ramole_task_index *ix);

typedef struct {
    int64_t id;               /* the task's number (ramole_tasks_name) */
    float score;              /* cosine similarity */
} ramole_hit;

/* The top k tasks of each text, best first: hits[i * k + j], n_hits[i]. */
ramole_status ramole_task_retrieve(ramole_embedder *e, const ramole_task_index *ix, const char *const *texts, int n,
                                   int k, ramole_hit *hits, int *n_hits);

/* ---- training the projection ---------------------------------------------------- */

typedef struct {
    int queries, correct;
} ramole_retrieval_score;

/* Top-1 retrieval of each kind of query against every task. */
typedef struct {
    ramole_retrieval_score held_out_tasks;  /* inputs of tasks never trained on */
    ramole_retrieval_score held_out_inputs; /* held-out inputs of training tasks */
    ramole_retrieval_score train;           /* training inputs */
} ramole_retrieval_eval;

/* Fraction right; NAN without queries. */
double ramole_retrieval_accuracy(const ramole_retrieval_score *s);

typedef struct {
    const char *data;         /* JSONL of {"task", "input"} lines, 2+ inputs per task (required) */
    const char *out;          /* the projection file to write (required) */
    ramole_embedder_params embedder; /* projection must be NULL: training starts afresh */
    int dim;                  /* 0: the hidden size (starting as the identity) */
    int steps, batch, warmup; /* warmup < 0: 5% of the steps */
    double temperature, lr, weight_decay;
    int one_sided;            /* InfoNCE over inputs only, not inputs and tasks both */
    uint64_t seed;
    const char *held_out_tasks; /* a fraction ("0.25") or a file of task names; NULL: 0.25, none under 3 tasks */
    double held_out_inputs;   /* of each training task, leaving at least 2 */
    int samples;              /* inputs per task representation when measuring accuracy */
} ramole_retriever_train_params;

/* What the training reports, in order: POOLING, POOLED, START, STEP..., DONE. */
typedef enum {
    RAMOLE_RETRIEVER_POOLING = 0, /* n_inputs, n_tasks */
    RAMOLE_RETRIEVER_POOLED,      /* n_cut, max_tokens, pool_seconds */
    RAMOLE_RETRIEVER_START,       /* the split, the shapes, `eval` before training */
    RAMOLE_RETRIEVER_STEP,        /* step, loss, lr, grad_norm, seconds */
    RAMOLE_RETRIEVER_DONE,        /* step, loss, seconds, `eval` after training */
} ramole_retriever_stage;

typedef struct {
    ramole_retriever_stage stage;
    int n_inputs, n_tasks, n_held_tasks, n_train_inputs, dim, hidden;
    const ramole_tasks *tasks;    /* names of the tasks */
    const unsigned char *held;    /* [n_tasks]: 1 for a held-out task */
    int n_cut, max_tokens;        /* inputs cut to max_tokens tokens */
    double pool_seconds;
    ramole_retrieval_eval eval;   /* START: before, DONE: after */
    int step;
    double loss, lr, grad_norm;
    double seconds;               /* since the first step */
} ramole_retriever_event;

/* Return non-zero to stop the training (the call then fails with
 * RAMOLE_ERR_INVALID, "stopped by the caller"). */
typedef int (*ramole_retriever_fn)(const ramole_retriever_event *ev, void *user);

/*
 * Pool every input once through the frozen base, hold out tasks and
 * inputs, train the projection with InfoNCE on the rest, measure top-1
 * accuracy before and after, and write the projection atomically at
 * p->out only when all of that succeeded. A non-finite loss stops it with
 * RAMOLE_ERR_RANGE, writing nothing. Errors name the option at fault
 * (--held-out-tasks, --held-out-inputs), the data file and line, or the
 * model.
 */
ramole_status ramole_retriever_train(const ramole_retriever_train_params *p, ramole_retriever_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_RETRIEVAL_H */
