/*
 * retrieval.c — include/ramole/retrieval.h over src/retrieval: the
 * embedder with the model and projection it owns, task pools and their
 * index, and the projection's training run (the split of tasks and
 * inputs, the pooled cache, InfoNCE steps, the accuracy before and after).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "retrieval/embed.h"
#include "retrieval/index.h"
#include "retrieval/infonce.h"
#include "retrieval/retrieve.h"
#include "retrieval/tasks.h"

_Static_assert((int)RAMOLE_POOL_LAST == (int)RM_POOL_LAST && RAMOLE_EMBED_MAX_DIM == RM_EMBED_MAX_DIM,
               "public and internal pooling must agree");
_Static_assert(sizeof(ramole_hit) == sizeof(rm_hit) && offsetof(ramole_hit, score) == offsetof(rm_hit, score),
               "ramole_hit and rm_hit must share their layout");
_Static_assert(sizeof(ramole_retrieval_score) == sizeof(rm_retrieval_score) &&
                   offsetof(ramole_retrieval_score, correct) == offsetof(rm_retrieval_score, correct),
               "ramole_retrieval_score and rm_retrieval_score must share their layout");

struct ramole_embedder {
    rm_model *m;
    rm_projection *proj;
    rm_embedder *e;
};

struct ramole_tasks {
    rm_task_data *d;
};

struct ramole_task_index {
    rm_index *ix;
};

int ramole_pooling_from_name(const char *s, ramole_pooling *out) {
    rm_pooling p;
    if (!rm_pooling_from_name(s, &p)) return 0;
    *out = (ramole_pooling)p;
    return 1;
}

/* ---- the embedder ------------------------------------------------------------------ */

ramole_status ramole_embedder_open(const ramole_embedder_params *p, ramole_embedder **out) {
    *out = NULL;
    ramole_embedder *pe = rm_calloc(1, sizeof *pe);
    if (!pe) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_model_open(p->model, &pe->m);
    if (st == RAMOLE_OK && !pe->m->tokenizer)
        st = rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer (tokenizer.json); the embedder reads text", p->model);
    if (st == RAMOLE_OK && p->projection) st = rm_projection_load(p->projection, pe->m, &pe->proj);
    if (st == RAMOLE_OK) {
        rm_embed_opts eo;
        rm_embed_opts_default(&eo);
        if (p->prefix) eo.prefix = p->prefix;
        eo.layer = p->layer;
        eo.pooling = (rm_pooling)p->pooling;
        eo.max_tokens = p->max_tokens;
        eo.n_threads = p->n_threads;
        st = rm_embedder_new(pe->m, pe->m->tokenizer, &eo, pe->proj, &pe->e);
    }
    if (st != RAMOLE_OK) {
        ramole_embedder_free(pe);
        return st;
    }
    *out = pe;
    return RAMOLE_OK;
}

void ramole_embedder_free(ramole_embedder *pe) {
    if (!pe) return;
    rm_embedder_free(pe->e);
    rm_projection_free(pe->proj);
    rm_model_free(pe->m);
    rm_free(pe);
}

int ramole_embedder_dim(const ramole_embedder *pe) { return rm_embedder_dim(pe->e); }

ramole_status ramole_embedder_embed(ramole_embedder *pe, const char *const *texts, int n, float *out) {
    return rm_embedder_embed(pe->e, texts, n, out);
}

/* ---- tasks and their index --------------------------------------------------------- */

ramole_status ramole_tasks_load(const char *path, int min_inputs, ramole_tasks **out) {
    *out = NULL;
    ramole_tasks *t = rm_calloc(1, sizeof *t);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_task_data_load(path, min_inputs, &t->d);
    if (st != RAMOLE_OK) {
        rm_free(t);
        return st;
    }
    *out = t;
    return RAMOLE_OK;
}

void ramole_tasks_free(ramole_tasks *t) {
    if (!t) return;
    rm_task_data_free(t->d);
    rm_free(t);
}

int ramole_tasks_count(const ramole_tasks *t) { return t->d->n_tasks; }
const char *ramole_tasks_name(const ramole_tasks *t, int task) { return t->d->names[task]; }

ramole_status ramole_task_index_build(ramole_embedder *e, const ramole_tasks *t, int samples,
                                      ramole_task_index **out) {
    *out = NULL;
    ramole_task_index *pix = rm_calloc(1, sizeof *pix);
    if (!pix) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_task_index_build(e->e, t->d, samples, &pix->ix);
    if (st != RAMOLE_OK) {
        rm_free(pix);
        return st;
    }
    *out = pix;
    return RAMOLE_OK;
}

void ramole_task_index_free(ramole_task_index *ix) {
    if (!ix) return;
    rm_index_free(ix->ix);
    rm_free(ix);
}

ramole_status ramole_task_retrieve(ramole_embedder *e, const ramole_task_index *ix, const char *const *texts, int n,
                                   int k, ramole_hit *hits, int *n_hits) {
    return rm_retrieve(e->e, ix->ix, texts, n, k, (rm_hit *)hits, n_hits);
}

/* ---- training the projection ---------------------------------------------------------- */

double ramole_retrieval_accuracy(const ramole_retrieval_score *s) {
    return rm_retrieval_accuracy((const rm_retrieval_score *)s);
}

static void eval_to_public(const rm_retrieval_eval *in, ramole_retrieval_eval *out) {
    memcpy(&out->held_out_tasks, &in->held_out_tasks, sizeof out->held_out_tasks);
    memcpy(&out->held_out_inputs, &in->held_out_inputs, sizeof out->held_out_inputs);
    memcpy(&out->train, &in->train, sizeof out->train);
}

/* E[n][dim] = embeddings of the pooled states H[n][hidden] under P (or none). */
static void project_all(const rm_projection *P, const float *H, int n, int hidden, float *E) {
    int dim = P ? P->dim : hidden;
    for (int i = 0; i < n; i++) rm_projection_apply(P, hidden, H + (size_t)i * hidden, E + (size_t)i * dim);
}

/* A fraction in [0, 1), or false. */
static bool as_fraction(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno) return false;
    *out = v;
    return true;
}

/* Everything one training run holds, freed together. */
typedef struct {
    ramole_embedder *emb;
    ramole_tasks tasks;
    rm_infonce_trainer *tr;
    rm_projection *proj;
    float *H, *E;
    int *train_rows;
    unsigned char *held;  /* [n_tasks] */
    bool *train_task;     /* [n_tasks] */
    bool *masks[3];       /* [n]: held-out tasks' inputs, held-out inputs, training inputs */
} train_run;

static void train_run_free(train_run *r) {
    rm_infonce_trainer_free(r->tr);
    rm_projection_free(r->proj);
    ramole_embedder_free(r->emb);
    rm_task_data_free(r->tasks.d);
    rm_free(r->H), rm_free(r->E), rm_free(r->train_rows), rm_free(r->held), rm_free(r->train_task);
    for (int k = 0; k < 3; k++) rm_free(r->masks[k]);
}

static rm_status report(ramole_retriever_fn fn, void *user, const ramole_retriever_event *ev) {
    if (fn && fn(ev, user)) return rm_err(RAMOLE_ERR_INVALID, "stopped by the caller");
    return RAMOLE_OK;
}

/* Hold out tasks (a fraction or a file of names) and inputs of the others. */
static rm_status split(const ramole_retriever_train_params *p, train_run *r) {
    const rm_task_data *d = r->tasks.d;
    bool *held_task = r->train_task; /* filled as held, then turned into its complement */
    double frac = 0.25;
    rm_status st = RAMOLE_OK;
    if (p->held_out_tasks && !as_fraction(p->held_out_tasks, &frac)) st = rm_task_split_file(d, p->held_out_tasks, held_task);
    else if (!(frac >= 0 && frac < 1))
        return rm_err(RAMOLE_ERR_INVALID, "--held-out-tasks %s: a fraction from 0 to below 1, or a file of task names",
                      p->held_out_tasks);
    else if (p->held_out_tasks || d->n_tasks >= 3) st = rm_task_split_fraction(d, frac, p->seed, held_task);
    if (st != RAMOLE_OK) return rm_err_prefix(st, "--held-out-tasks");
    for (int t = 0; t < d->n_tasks; t++) {
        r->held[t] = held_task[t];
        r->train_task[t] = !held_task[t];
    }
    if ((st = rm_task_split_inputs(d, p->held_out_inputs, p->seed, r->train_task, r->masks[1])) != RAMOLE_OK)
        return rm_err_prefix(st, "--held-out-inputs");
    int n_train_tasks = 0;
    for (int t = 0; t < d->n_tasks; t++) n_train_tasks += r->train_task[t];
    if (n_train_tasks < 2)
        return rm_err(RAMOLE_ERR_INVALID, "--held-out-tasks leaves %d training task(s); at least 2 are needed",
                      n_train_tasks);
    for (int i = 0; i < d->n; i++) {
        r->masks[0][i] = !r->train_task[d->task[i]];
        r->masks[2][i] = r->train_task[d->task[i]] && !r->masks[1][i];
    }
    return RAMOLE_OK;
}

ramole_status ramole_retriever_train(const ramole_retriever_train_params *p, ramole_retriever_fn fn, void *user) {
    train_run r = {0};
    ramole_retriever_event ev = {0};
    rm_status st;
    if (p->embedder.projection)
        return rm_err(RAMOLE_ERR_INVALID, "--projection is for embed and retrieve; training starts afresh");
    if ((st = rm_task_data_load(p->data, 2, &r.tasks.d)) != RAMOLE_OK) goto out;
    const rm_task_data *d = r.tasks.d;
    if (d->n_tasks < 2) {
        st = rm_err(RAMOLE_ERR_INVALID, "%s has %d task; contrastive training needs at least 2", p->data, d->n_tasks);
        goto out;
    }
    if ((st = ramole_embedder_open(&p->embedder, &r.emb)) != RAMOLE_OK) goto out;
    const rm_model *m = r.emb->m;
    int hidden = m->cfg.hidden, dim = p->dim ? p->dim : hidden;
    r.held = rm_calloc((size_t)d->n_tasks, 1);
    r.train_task = rm_calloc((size_t)d->n_tasks, sizeof *r.train_task);
    for (int k = 0; k < 3; k++) r.masks[k] = rm_calloc((size_t)d->n, sizeof(bool));
    r.H = rm_malloc((size_t)d->n * (size_t)hidden * sizeof *r.H);
    r.E = rm_malloc((size_t)d->n * (size_t)(dim > hidden ? dim : hidden) * sizeof *r.E);
    r.train_rows = rm_malloc((size_t)d->n * sizeof *r.train_rows);
    if (!r.held || !r.train_task || !r.masks[0] || !r.masks[1] || !r.masks[2] || !r.H || !r.E || !r.train_rows) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = split(p, &r)) != RAMOLE_OK) goto out;
    ev.tasks = &r.tasks;
    ev.held = r.held;
    ev.n_inputs = d->n;
    ev.n_tasks = d->n_tasks;
    ev.dim = dim;
    ev.hidden = hidden;
    for (int t = 0; t < d->n_tasks; t++) ev.n_held_tasks += r.held[t];
    /* the cache: every input pooled once */
    double t0 = rm_time_now();
    ev.stage = RAMOLE_RETRIEVER_POOLING;
    if ((st = report(fn, user, &ev)) != RAMOLE_OK) goto out;
    if ((st = rm_embedder_pool(r.emb->e, (const char *const *)d->inputs, d->n, r.H)) != RAMOLE_OK) goto out;
    ev.stage = RAMOLE_RETRIEVER_POOLED;
    ev.pool_seconds = rm_time_now() - t0;
    ev.n_cut = rm_embedder_n_cut(r.emb->e);
    ev.max_tokens = p->embedder.max_tokens ? p->embedder.max_tokens : (m->cfg.max_pos < 512 ? m->cfg.max_pos : 512);
    if ((st = report(fn, user, &ev)) != RAMOLE_OK) goto out;
    for (int i = 0; i < d->n; i++)
        if (r.masks[2][i]) r.train_rows[ev.n_train_inputs++] = i;
    rm_infonce_params ip;
    rm_infonce_params_default(&ip);
    ip.dim = dim;
    ip.steps = p->steps;
    ip.batch = p->batch;
    ip.lr = p->lr;
    ip.weight_decay = p->weight_decay;
    ip.warmup = p->warmup;
    ip.tau = p->temperature;
    ip.symmetric = !p->one_sided;
    ip.seed = p->seed;
    if ((st = rm_infonce_trainer_new(r.H, d->task, r.train_rows, ev.n_train_inputs, hidden, d->n_tasks, &ip, &r.tr)) !=
        RAMOLE_OK)
        goto out;
    /* before: the plain embedder (no projection) */
    rm_retrieval_eval before = {0}, after = {0};
    project_all(NULL, r.H, d->n, hidden, r.E);
    if ((st = rm_retrieval_evaluate(d, r.E, hidden, p->samples, r.masks[0], r.masks[1], r.masks[2], &before)) !=
        RAMOLE_OK)
        goto out;
    ev.stage = RAMOLE_RETRIEVER_START;
    eval_to_public(&before, &ev.eval);
    if ((st = report(fn, user, &ev)) != RAMOLE_OK) goto out;
    rm_infonce_stats ss = {0};
    double t1 = rm_time_now();
    ev.stage = RAMOLE_RETRIEVER_STEP;
    for (int s = 0; s < p->steps; s++) {
        if ((st = rm_infonce_trainer_step(r.tr, &ss)) != RAMOLE_OK) goto out;
        ev.step = ss.step, ev.loss = ss.loss, ev.lr = ss.lr, ev.grad_norm = ss.grad_norm;
        ev.seconds = rm_time_now() - t1;
        if ((st = report(fn, user, &ev)) != RAMOLE_OK) goto out;
    }
    /* after */
    if ((st = rm_projection_new(m, dim, p->embedder.layer, p->embedder.prefix, (rm_pooling)p->embedder.pooling,
                                (float)p->temperature, &r.proj)) != RAMOLE_OK)
        goto out;
    rm_infonce_trainer_weights(r.tr, r.proj->w);
    project_all(r.proj, r.H, d->n, hidden, r.E);
    if ((st = rm_retrieval_evaluate(d, r.E, dim, p->samples, r.masks[0], r.masks[1], r.masks[2], &after)) != RAMOLE_OK)
        goto out;
    ev.stage = RAMOLE_RETRIEVER_DONE;
    ev.seconds = rm_time_now() - t1;
    eval_to_public(&after, &ev.eval);
    if ((st = report(fn, user, &ev)) != RAMOLE_OK) goto out;
    st = rm_projection_save(r.proj, p->out);
out:
    train_run_free(&r);
    return st;
}
