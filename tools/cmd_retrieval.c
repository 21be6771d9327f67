/*
 * cmd_retrieval.c — `ramole train retriever`, `ramole embed` and
 * `ramole retrieve`: the retrieval module (src/retrieval/) on the command
 * line.
 *
 * train retriever: every input of tasks.jsonl is pooled once through the
 * frozen base (the cache the whole training reads); a share of the tasks
 * is held out (never trained on: adapters uploaded later) and a share of
 * each remaining task's inputs too; the projection trains with InfoNCE on
 * the rest; top-1 retrieval accuracy of the held-out inputs, of the
 * held-out tasks' inputs and of the training inputs is printed before (the
 * plain embedder, no projection) and after training. The projection file
 * is written atomically only after training succeeded.
 * embed: one JSON line per text {"text", "embedding"}.
 * retrieve: task vectors from up to --samples inputs per task of --pool
 * (one entry each in a flat index), then per text one JSON line with the
 * top-k tasks and their cosine scores. The scoring and the accuracies are
 * the library's (src/retrieval/retrieve.h); this file parses and prints.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "retrieval/embed.h"
#include "retrieval/index.h"
#include "retrieval/infonce.h"
#include "retrieval/retrieve.h"
#include "retrieval/tasks.h"
#include "tokenizer/tokenizer.h"

#define MAX_TEXTS 4096

typedef struct {
    const char *model, *data, *out, *log, *projection, *pool, *file, *jsonl, *held, *prefix;
    const char *texts[MAX_TEXTS];
    char *owned[MAX_TEXTS]; /* texts read from --jsonl */
    int n_owned;
    int n_texts;
    int layer;
    bool layer_set, pooling_set, one_sided, quiet;
    rm_pooling pooling;
    long dim, steps, batch, samples, k, threads, max_tokens, warmup;
    double temperature, lr, wd, held_inputs;
    uint64_t seed;
} ret_opts;

static bool parse_layer(const char *cmd, const char *v, int *out) {
    if (!strcmp(v, "final")) {
        *out = RM_HIDDEN_FINAL;
        return true;
    }
    long l;
    if (!cli_int(cmd, "--layer", v, 0, 100000, &l)) return false;
    *out = (int)l;
    return true;
}

static bool parse_ret(const char *cmd, int argc, char **argv, int first, ret_opts *o) {
    memset(o, 0, sizeof *o);
    o->layer = RM_HIDDEN_FINAL;
    o->pooling = RM_POOL_MEAN;
    o->steps = 300, o->batch = 32, o->samples = 20, o->k = 3, o->warmup = -1;
    o->temperature = 0.05, o->lr = 2e-3, o->seed = 1, o->held_inputs = 0.2, o->wd = 10;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i], *v;
        double d;
#define VAL() if (!(v = cli_value(cmd, argc, argv, &i))) return false
#define INT(dst, lo, hi) do { VAL(); if (!cli_int(cmd, a, v, lo, hi, &(dst))) return false; } while (0)
#define FLT(dst, lo, hi) do { VAL(); if (!cli_float(cmd, a, v, lo, hi, &d)) return false; (dst) = d; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); o->model = v; }
        else if (!strcmp(a, "-o")) { VAL(); o->out = v; }
        else if (!strcmp(a, "--data")) { VAL(); o->data = v; }
        else if (!strcmp(a, "--pool")) { VAL(); o->pool = v; }
        else if (!strcmp(a, "--projection")) { VAL(); o->projection = v; }
        else if (!strcmp(a, "--file")) { VAL(); o->file = v; }
        else if (!strcmp(a, "--jsonl")) { VAL(); o->jsonl = v; }
        else if (!strcmp(a, "--log")) { VAL(); o->log = v; }
        else if (!strcmp(a, "--held-out-tasks")) { VAL(); o->held = v; }
        else if (!strcmp(a, "--prefix")) { VAL(); o->prefix = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            VAL();
            if (o->n_texts == MAX_TEXTS) {
                fprintf(stderr, "ramole %s: at most %d texts with -p (use --file)\n", cmd, MAX_TEXTS);
                return false;
            }
            o->texts[o->n_texts++] = v;
        }
        else if (!strcmp(a, "--layer")) { VAL(); if (!parse_layer(cmd, v, &o->layer)) return false; o->layer_set = true; }
        else if (!strcmp(a, "--pooling")) {
            VAL();
            if (!rm_pooling_from_name(v, &o->pooling)) {
                fprintf(stderr, "ramole %s: unknown pooling '%s' (mean, mean_all, last)\n", cmd, v);
                return false;
            }
            o->pooling_set = true;
        }
        else if (!strcmp(a, "--dim")) INT(o->dim, 1, RM_EMBED_MAX_DIM);
        else if (!strcmp(a, "--steps")) INT(o->steps, 1, 100000000);
        else if (!strcmp(a, "--batch")) INT(o->batch, 2, 4096);
        else if (!strcmp(a, "--samples")) INT(o->samples, 1, 100000);
        else if (!strcmp(a, "-k") || !strcmp(a, "--top-k")) INT(o->k, 1, 100000);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT(o->threads, 1, 256);
        else if (!strcmp(a, "--max-tokens")) INT(o->max_tokens, 2, 1 << 20);
        else if (!strcmp(a, "--warmup")) INT(o->warmup, 0, 100000000);
        else if (!strcmp(a, "--temperature")) FLT(o->temperature, 1e-4, 100);
        else if (!strcmp(a, "--lr")) FLT(o->lr, 0, 10);
        else if (!strcmp(a, "--weight-decay")) FLT(o->wd, 0, 1000);
        else if (!strcmp(a, "--held-out-inputs")) FLT(o->held_inputs, 0, 0.9);
        else if (!strcmp(a, "--seed")) { VAL(); if (!cli_u64(cmd, a, v, &o->seed)) return false; }
        else if (!strcmp(a, "--one-sided")) o->one_sided = true;
        else if (!strcmp(a, "--quiet")) o->quiet = true;
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return false;
        }
#undef VAL
#undef INT
#undef FLT
    }
    if (!o->model) {
        fprintf(stderr, "ramole %s: -m MODEL is required\n", cmd);
        return false;
    }
    return true;
}

/* Model (with tokenizer), optional projection, embedder. */
static int open_embedder(const char *cmd, const ret_opts *o, rm_model **m, rm_projection **proj, rm_embedder **e) {
    rm_status st;
    if ((st = rm_model_open(o->model, m)) != RAMOLE_OK) return cli_fail(cmd, st);
    if (!(*m)->tokenizer) {
        fprintf(stderr, "ramole %s: %s has no tokenizer (tokenizer.json); the embedder reads text\n", cmd, o->model);
        return 1;
    }
    if (o->projection) {
        if ((st = rm_projection_load(o->projection, *m, proj)) != RAMOLE_OK) return cli_fail(cmd, st);
        if (o->layer_set || o->pooling_set || o->prefix)
            fprintf(stderr, "ramole %s: note: --layer, --pooling and --prefix are those of the projection file\n", cmd);
    }
    rm_embed_opts eo;
    rm_embed_opts_default(&eo);
    if (o->prefix) eo.prefix = o->prefix;
    eo.layer = o->layer;
    eo.pooling = o->pooling;
    eo.max_tokens = (int)o->max_tokens;
    eo.n_threads = (int)o->threads;
    if ((st = rm_embedder_new(*m, (*m)->tokenizer, &eo, *proj, e)) != RAMOLE_OK) return cli_fail(cmd, st);
    return 0;
}

/* E[n][dim] = embeddings of the pooled states H[n][hidden] under P (or none). */
static void project_all(const rm_projection *P, const float *H, int n, int hidden, float *E) {
    int dim = P ? P->dim : hidden;
    for (int i = 0; i < n; i++) rm_projection_apply(P, hidden, H + (size_t)i * hidden, E + (size_t)i * dim);
}

/* ---- train retriever ----------------------------------------------------------------- */

static int usage_train(void) {
    fprintf(stderr,
            "usage: ramole train retriever -m MODEL --data tasks.jsonl -o PROJECTION.safetensors\n"
            "           [--dim D] [--layer L|final] [--pooling mean|mean_all|last] [--prefix TEXT]\n"
            "           [--temperature T] [--one-sided] [--steps N] [--lr LR] [--batch B] [--warmup N]\n"
            "           [--weight-decay W] [--seed S] [--held-out-tasks FILE|FRACTION] [--held-out-inputs FRACTION]\n"
            "           [--samples M]"
            " [--max-tokens N] [-t THREADS] [--log metrics.jsonl] [--quiet]\n"
            "data: JSONL lines {\"task\": NAME, \"input\": TEXT} (other keys ignored), at least 2 inputs per task.\n"
            "defaults: --dim = the model's hidden size (starts as the identity), --layer final, --pooling mean,\n"
            "        --temperature 0.05, --steps 300, --lr 2e-3, --batch 32, --warmup 5%% of the steps, --seed 1,\n"
            "        --weight-decay 10 (towards the initial projection, which keeps unseen tasks retrievable),\n"
            "        --held-out-tasks 0.25 (none with fewer than 3 tasks; 0 turns it off), --held-out-inputs 0.2\n"
            "        (of each training task, leaving 2 to train on), --samples 20\n"
            "        (inputs per task representation when measuring top-1 accuracy), -t: all CPUs\n");
    return 2;
}

static void print_eval(const char *when, const rm_retrieval_eval *ev) {
    fprintf(stderr, "%s top-1 accuracy:", when);
    const rm_retrieval_score *s[3] = {&ev->held_out_inputs, &ev->held_out_tasks, &ev->train};
    static const char *const what[3] = {"held-out inputs of training tasks", "held-out tasks", "training inputs"};
    for (int i = 0; i < 3; i++)
        if (s[i]->queries)
            fprintf(stderr, "%s %s %.4f (%d/%d)", i ? "," : "", what[i], rm_retrieval_accuracy(s[i]), s[i]->correct,
                    s[i]->queries);
    fprintf(stderr, "\n");
}

/* The log's eval line; fractions as 0 when there were no queries of a kind. */
static void log_eval(FILE *logf, const char *when, const rm_retrieval_eval *ev) {
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("eval"));
    json_object_set_new(l, "when", json_string(when));
    const rm_retrieval_score *s[3] = {&ev->held_out_inputs, &ev->held_out_tasks, &ev->train};
    static const char *const key[3] = {"held_out_inputs", "held_out_tasks", "train"};
    for (int i = 0; i < 3; i++) {
        char k[48];
        snprintf(k, sizeof k, "%s_top1", key[i]);
        json_object_set_new(l, k, cli_json_num("%.6f", s[i]->queries ? rm_retrieval_accuracy(s[i]) : 0.0));
        snprintf(k, sizeof k, "%s_queries", key[i]);
        json_object_set_new(l, k, json_integer(s[i]->queries));
    }
    cli_json_line(logf, l);
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

int cmd_train_retriever(int argc, char **argv) {
    const char *cmd = "train retriever";
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage_train();
            return 0;
        }
    ret_opts o;
    if (!parse_ret(cmd, argc, argv, 2, &o)) return 2;
    if (!o.data || !o.out) {
        fprintf(stderr, "ramole %s: --data tasks.jsonl and -o PROJECTION are required\n", cmd);
        return usage_train();
    }
    if (o.projection) {
        fprintf(stderr, "ramole %s: --projection is for embed and retrieve; training starts afresh\n", cmd);
        return 2;
    }
    rm_model *m = NULL;
    rm_projection *none = NULL, *proj = NULL;
    rm_embedder *e = NULL;
    rm_task_data *d = NULL;
    rm_infonce_trainer *tr = NULL;
    float *H = NULL, *E = NULL;
    int *train_rows = NULL; /* the examples the projection trains on */
    bool *held_task = NULL, *masks[3] = {NULL, NULL, NULL}; /* unseen, held-out inputs, training inputs */
    FILE *logf = NULL;
    int rc = 1;
    rm_status st;
    if ((st = rm_task_data_load(o.data, 2, &d)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (d->n_tasks < 2) {
        fprintf(stderr, "ramole %s: %s has %d task; contrastive training needs at least 2\n", cmd, o.data, d->n_tasks);
        goto out;
    }
    if ((rc = open_embedder(cmd, &o, &m, &none, &e)) != 0) goto out;
    rc = 1;
    int hidden = m->cfg.hidden, dim = o.dim ? (int)o.dim : hidden;
    held_task = rm_calloc((size_t)d->n_tasks, sizeof *held_task);
    for (int k = 0; k < 3; k++) masks[k] = rm_calloc((size_t)d->n, sizeof(bool));
    H = rm_malloc((size_t)d->n * (size_t)hidden * sizeof *H);
    E = rm_malloc((size_t)d->n * (size_t)(dim > hidden ? dim : hidden) * sizeof *E);
    train_rows = rm_malloc((size_t)d->n * sizeof *train_rows);
    if (!held_task || !masks[0] || !masks[1] || !masks[2] || !H || !E || !train_rows) {
        rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory"));
        goto out;
    }
    /* held-out tasks (a fraction or a file of names), then held-out inputs of the others */
    double frac = 0.25;
    if (o.held && !as_fraction(o.held, &frac)) st = rm_task_split_file(d, o.held, held_task);
    else if (!(frac >= 0 && frac < 1)) {
        fprintf(stderr, "ramole %s: --held-out-tasks %s: a fraction from 0 to below 1, or a file of task names\n", cmd,
                o.held);
        goto out;
    } else if (!o.held && d->n_tasks < 3) st = RAMOLE_OK;
    else st = rm_task_split_fraction(d, frac, o.seed, held_task);
    if (st != RAMOLE_OK) { rc = cli_fail(cmd, rm_err_prefix(st, "--held-out-tasks")); goto out; }
    bool *train_task = held_task; /* reused below as its complement */
    for (int t = 0; t < d->n_tasks; t++) train_task[t] = !held_task[t];
    if ((st = rm_task_split_inputs(d, o.held_inputs, o.seed, train_task, masks[1])) != RAMOLE_OK) {
        rc = cli_fail(cmd, rm_err_prefix(st, "--held-out-inputs"));
        goto out;
    }
    int n_held_tasks = 0, n_train_tasks = 0, n_train_ex = 0;
    for (int t = 0; t < d->n_tasks; t++) n_train_tasks += train_task[t];
    n_held_tasks = d->n_tasks - n_train_tasks;
    if (n_train_tasks < 2) {
        fprintf(stderr, "ramole %s: --held-out-tasks leaves %d training task(s); at least 2 are needed\n", cmd,
                n_train_tasks);
        goto out;
    }
    for (int i = 0; i < d->n; i++) {
        masks[0][i] = !train_task[d->task[i]];
        masks[2][i] = train_task[d->task[i]] && !masks[1][i];
    }
    /* the cache: every input pooled once */
    double t0 = rm_time_now();
    if (!o.quiet) fprintf(stderr, "train retriever: pooling %d inputs of %d tasks through %s ...\n", d->n, d->n_tasks, o.model);
    if ((st = rm_embedder_pool(e, (const char *const *)d->inputs, d->n, H)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    double t_pool = rm_time_now() - t0;
    if (rm_embedder_n_cut(e) && !o.quiet)
        fprintf(stderr, "note: %d inputs were cut to %d tokens (--max-tokens)\n", rm_embedder_n_cut(e),
                o.max_tokens ? (int)o.max_tokens : (m->cfg.max_pos < 512 ? m->cfg.max_pos : 512));
    for (int i = 0; i < d->n; i++)
        if (masks[2][i]) train_rows[n_train_ex++] = i;
    rm_infonce_params ip;
    rm_infonce_params_default(&ip);
    ip.dim = dim;
    ip.steps = (int)o.steps;
    ip.batch = (int)o.batch;
    ip.lr = o.lr;
    ip.weight_decay = o.wd;
    ip.warmup = (int)o.warmup;
    ip.tau = o.temperature;
    ip.symmetric = !o.one_sided;
    ip.seed = o.seed;
    if ((st = rm_infonce_trainer_new(H, d->task, train_rows, n_train_ex, hidden, d->n_tasks, &ip, &tr)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    /* before: the plain embedder (no projection) */
    rm_retrieval_eval before = {0}, after = {0};
    project_all(NULL, H, d->n, hidden, E);
    if ((st = rm_retrieval_evaluate(d, E, hidden, (int)o.samples, masks[0], masks[1], masks[2], &before)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if (o.log && !(logf = fopen(o.log, "w"))) {
        fprintf(stderr, "ramole %s: cannot open the log %s\n", cmd, o.log);
        goto out;
    }
    if (!o.quiet)
        fprintf(stderr, "train retriever: %d tasks (%d held out), %d training inputs, projection %d x %d, %ld steps of "
                        "%ld pairs, temperature %g, lr %g (pooling took %.1f s); chance %.4f\n",
                d->n_tasks, n_held_tasks, n_train_ex, dim, hidden, o.steps, o.batch, o.temperature, o.lr, t_pool,
                1.0 / d->n_tasks);
    if (!o.quiet && n_held_tasks) {
        fprintf(stderr, "held-out tasks (never trained on):");
        for (int t = 0, k = 0; t < d->n_tasks; t++)
            if (!train_task[t]) fprintf(stderr, "%s %s", k++ ? "," : "", d->names[t]);
        fprintf(stderr, "\n");
    }
    if (!o.quiet) print_eval("before:", &before);
    if (logf) {
        json_t *l = json_object();
        json_object_set_new(l, "event", json_string("start"));
        json_object_set_new(l, "kind", json_string("retriever"));
        json_object_set_new(l, "tasks", json_integer(d->n_tasks));
        json_object_set_new(l, "held_out_tasks", json_integer(n_held_tasks));
        json_object_set_new(l, "inputs", json_integer(d->n));
        json_object_set_new(l, "train_inputs", json_integer(n_train_ex));
        json_object_set_new(l, "dim", json_integer(dim));
        json_object_set_new(l, "hidden", json_integer(hidden));
        json_object_set_new(l, "steps", json_integer(o.steps));
        json_object_set_new(l, "batch", json_integer(o.batch));
        json_object_set_new(l, "lr", cli_json_num("%g", o.lr));
        json_object_set_new(l, "temperature", cli_json_num("%g", o.temperature));
        json_object_set_new(l, "seed", cli_json_u64(o.seed));
        cli_json_line(logf, l);
        log_eval(logf, "before", &before);
        fflush(logf);
    }
    bool tty = isatty(2) && !o.quiet;
    long log_every = o.steps / 20 > 0 ? o.steps / 20 : 1;
    rm_infonce_stats ss = {0};
    double t1 = rm_time_now();
    for (long s = 0; s < o.steps; s++) {
        st = rm_infonce_trainer_step(tr, &ss);
        if (st == RAMOLE_ERR_RANGE) {
            if (tty) fprintf(stderr, "\n");
            fprintf(stderr, "ramole %s: %s; training stopped, nothing written\n", cmd, ramole_last_error());
            if (logf) cli_json_line(logf, json_pack("{s:s, s:I}", "event", "nan", "step", (json_int_t)(s + 1)));
            goto out;
        }
        if (st != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
        double el = rm_time_now() - t1, eta = (double)(o.steps - ss.step) * el / ss.step;
        if (logf) {
            json_t *l = json_object();
            json_object_set_new(l, "step", json_integer(ss.step));
            json_object_set_new(l, "loss", cli_json_num("%.6f", ss.loss));
            json_object_set_new(l, "lr", cli_json_num("%.6g", ss.lr));
            json_object_set_new(l, "grad_norm", cli_json_num("%.6g", ss.grad_norm));
            json_object_set_new(l, "elapsed_s", cli_json_num("%.3f", el));
            cli_json_line(logf, l);
        }
        bool last = ss.step == o.steps;
        if (!o.quiet && (tty || ss.step % log_every == 0 || last || ss.step == 1)) {
            char etab[32];
            cli_fmt_time(eta, etab, sizeof etab);
            fprintf(stderr, "%sstep %d/%ld  loss %.4f  lr %.2e  ETA %s%s", tty ? "\r" : "", ss.step, o.steps, ss.loss,
                    ss.lr, etab, tty ? "   " : "\n");
        }
    }
    if (tty) fprintf(stderr, "\n");
    /* after */
    if ((st = rm_projection_new(m, dim, o.layer, o.prefix, o.pooling, (float)o.temperature, &proj)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    rm_infonce_trainer_weights(tr, proj->w);
    project_all(proj, H, d->n, hidden, E);
    if ((st = rm_retrieval_evaluate(d, E, dim, (int)o.samples, masks[0], masks[1], masks[2], &after)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if (!o.quiet) print_eval("after: ", &after);
    if (!o.quiet) fprintf(stderr, "train retriever: done, last loss %.4f, %.1f s\n", ss.loss, rm_time_now() - t1);
    if (logf) {
        log_eval(logf, "after", &after);
        json_t *l = json_object();
        json_object_set_new(l, "event", json_string("done"));
        json_object_set_new(l, "step", json_integer(ss.step));
        json_object_set_new(l, "loss", cli_json_num("%.6f", ss.loss));
        cli_json_line(logf, l);
    }
    if ((st = rm_projection_save(proj, o.out)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (!o.quiet) fprintf(stderr, "wrote %s (projection %d x %d)\n", o.out, dim, hidden);
    rc = 0;
out:
    if (logf && fclose(logf) != 0 && rc == 0) {
        fprintf(stderr, "ramole %s: error writing the log %s\n", cmd, o.log);
        rc = 1;
    }
    rm_infonce_trainer_free(tr);
    rm_projection_free(proj);
    rm_embedder_free(e);
    rm_task_data_free(d);
    rm_free(H), rm_free(E), rm_free(train_rows), rm_free(held_task);
    for (int k = 0; k < 3; k++) rm_free(masks[k]);
    rm_model_free(m);
    return rc;
}

/* ---- embed and retrieve ---------------------------------------------------------------- */

static void free_owned(ret_opts *o);

/* Texts from --jsonl: the "input" of each line's object (blank lines
 * skipped), for texts that hold newlines (prompts); o->owned keeps them. */
static rm_status jsonl_text(const char *s, size_t n, int line, void *ctx) {
    (void)line; /* rm_lines_each puts "file:line: " in front of an error */
    ret_opts *o = ctx;
    json_error_t je;
    json_t *v = json_loadb(s, n, 0, &je);
    const char *in = json_is_object(v) ? json_string_value(json_object_get(v, "input")) : NULL;
    rm_status st = RAMOLE_OK;
    if (!in) st = rm_err(RAMOLE_ERR_FORMAT, "%s", !v ? je.text : "expected an object with a string \"input\"");
    else if (o->n_texts == MAX_TEXTS) st = rm_err(RAMOLE_ERR_RANGE, "at most %d texts", MAX_TEXTS);
    else if (!(o->owned[o->n_owned] = rm_strdup(in))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    else o->texts[o->n_texts++] = o->owned[o->n_owned++];
    json_decref(v);
    return st;
}

static bool gather_jsonl(const char *cmd, ret_opts *o) {
    char *text = NULL;
    size_t len;
    rm_status st = rm_file_read(o->jsonl, &text, &len);
    if (st == RAMOLE_OK) st = rm_lines_each(text, len, o->jsonl, jsonl_text, o);
    rm_free(text);
    if (st == RAMOLE_OK) return true;
    free_owned(o);
    cli_fail(cmd, st);
    return false;
}

static void free_owned(ret_opts *o) {
    for (int i = 0; i < o->n_owned; i++) rm_free(o->owned[i]);
    o->n_owned = 0;
}

/* Texts from -p and --file (one per line, blank lines skipped); *buf owns the file's. */
static bool gather_texts(const char *cmd, ret_opts *o, char **buf) {
    *buf = NULL;
    if (o->file) {
        size_t len;
        rm_status st = rm_file_read(o->file, buf, &len);
        if (st != RAMOLE_OK) {
            cli_fail(cmd, st);
            return false;
        }
        for (char *s = *buf; s && *s;) {
            char *nl = strchr(s, '\n');
            if (nl) *nl = 0;
            size_t n = strlen(s);
            if (n && s[n - 1] == '\r') s[--n] = 0;
            if (n) {
                if (o->n_texts == MAX_TEXTS) {
                    fprintf(stderr, "ramole %s: at most %d texts\n", cmd, MAX_TEXTS);
                    rm_free(*buf);
                    *buf = NULL;
                    return false;
                }
                o->texts[o->n_texts++] = s;
            }
            s = nl ? nl + 1 : s + n;
        }
    }
    if (o->jsonl && !gather_jsonl(cmd, o)) {
        rm_free(*buf);
        *buf = NULL;
        return false;
    }
    if (!o->n_texts) {
        fprintf(stderr, "ramole %s: give texts with -p TEXT (repeatable), --file FILE or --jsonl FILE\n", cmd);
        rm_free(*buf);
        *buf = NULL;
        return false;
    }
    return true;
}

int cmd_embed(int argc, char **argv) {
    const char *cmd = "embed";
    ret_opts o;
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: ramole embed -m MODEL [--projection P.safetensors] [--layer L|final] [--pooling mean|mean_all|last]\n"
               "           [--prefix TEXT] [--max-tokens N] [-t THREADS] (-p TEXT ... | --file FILE)\n"
               "prints one JSON line per text: {\"text\": ..., \"embedding\": [unit vector]}\n");
        return 0;
    }
    if (!parse_ret(cmd, argc, argv, 1, &o)) return 2;
    char *buf = NULL;
    if (!gather_texts(cmd, &o, &buf)) return 2;
    rm_model *m = NULL;
    rm_projection *proj = NULL;
    rm_embedder *e = NULL;
    float *E = NULL;
    int rc = open_embedder(cmd, &o, &m, &proj, &e);
    if (rc) goto out;
    rc = 1;
    int dim = rm_embedder_dim(e);
    E = rm_malloc((size_t)o.n_texts * (size_t)dim * sizeof *E);
    rm_status st = E ? rm_embedder_embed(e, o.texts, o.n_texts, E) : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    for (int i = 0; i < o.n_texts; i++) {
        json_t *v = json_array();
        for (int k = 0; k < dim; k++) json_array_append_new(v, json_real(E[(size_t)i * dim + k]));
        json_t *obj = json_object();
        if (obj) { /* the text as given, even when it is not valid UTF-8 */
            json_object_set_new(obj, "text", json_string_nocheck(o.texts[i]));
            json_object_set_new(obj, "embedding", v);
        } else
            json_decref(v);
        char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(8)) : NULL;
        json_decref(obj);
        if (!s) { rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory")); goto out; }
        printf("%s\n", s);
        free(s);
    }
    rc = 0;
out:
    rm_free(E);
    rm_embedder_free(e);
    rm_projection_free(proj);
    rm_model_free(m);
    rm_free(buf);
    free_owned(&o);
    return rc;
}

int cmd_retrieve(int argc, char **argv) {
    const char *cmd = "retrieve";
    ret_opts o;
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: ramole retrieve -m MODEL [--projection P.safetensors] --pool tasks.jsonl (-p TEXT ... | --file FILE | --jsonl FILE)\n"
               "           [-k K] [--samples M] [--layer L|final] [--pooling P] [--prefix TEXT] [-t THREADS]\n"
               "each task of the pool is the normalised mean embedding of up to M (20) of its inputs; prints one JSON\n"
               "line per text: {\"text\": ..., \"results\": [{\"task\": NAME, \"score\": cosine}, ...]} (top K, 3)\n"
               "       ramole retrieve -p TEXT [-k K] [--tenant T] [--registry URL]\n"
               "over the adapter registry (without --pool): one line per adapter, best first: NAME<TAB>SCORE\n");
        return 0;
    }
    /* over the registry unless a task file is given without --registry */
    bool pool = false, registry = false;
    for (int i = 1; i < argc; i++) pool |= !strcmp(argv[i], "--pool"), registry |= !strcmp(argv[i], "--registry");
    if (!pool || registry) return cmd_registry_retrieve(argc, argv);
    if (!parse_ret(cmd, argc, argv, 1, &o)) return 2;
    char *buf = NULL;
    if (!gather_texts(cmd, &o, &buf)) return 2;
    rm_model *m = NULL;
    rm_projection *proj = NULL;
    rm_embedder *e = NULL;
    rm_task_data *d = NULL;
    rm_index *ix = NULL;
    rm_hit *hits = NULL;
    int *n_hits = NULL;
    rm_status st;
    int rc = 1;
    if ((st = rm_task_data_load(o.pool, 1, &d)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if ((rc = open_embedder(cmd, &o, &m, &proj, &e)) != 0) goto out;
    rc = 1;
    hits = rm_malloc((size_t)o.n_texts * (size_t)o.k * sizeof *hits);
    n_hits = rm_malloc((size_t)o.n_texts * sizeof *n_hits);
    if (!hits || !n_hits) { rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory")); goto out; }
    if ((st = rm_task_index_build(e, d, (int)o.samples, &ix)) != RAMOLE_OK ||
        (st = rm_retrieve(e, ix, o.texts, o.n_texts, (int)o.k, hits, n_hits)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    for (int q = 0; q < o.n_texts; q++) {
        json_t *res = json_array();
        for (int h = 0; h < n_hits[q]; h++) {
            const rm_hit *hit = &hits[(size_t)q * o.k + h];
            json_array_append_new(res, json_pack("{s:s, s:f}", "task", d->names[hit->id], "score", (double)hit->score));
        }
        json_t *obj = json_object();
        if (obj) {
            json_object_set_new(obj, "text", json_string_nocheck(o.texts[q]));
            json_object_set_new(obj, "results", res);
        } else
            json_decref(res);
        char *js = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        json_decref(obj);
        if (!js) { rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory")); goto out; }
        printf("%s\n", js);
        free(js);
    }
    rc = 0;
out:
    rm_free(hits);
    rm_free(n_hits);
    rm_index_free(ix);
    rm_task_data_free(d);
    rm_embedder_free(e);
    rm_projection_free(proj);
    rm_model_free(m);
    rm_free(buf);
    free_owned(&o);
    return rc;
}
