/*
 * cmd_retrieval.c — `ramole train retriever`, `ramole embed` and
 * `ramole retrieve`: include/ramole/retrieval.h on the command line.
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
 * the library's (ramole_retriever_train); this file parses and prints.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_TEXTS 4096

typedef struct {
    const char *model, *data, *out, *log, *projection, *pool, *file, *jsonl, *held, *prefix;
    const char *texts[MAX_TEXTS];
    char *owned[MAX_TEXTS]; /* texts read from --jsonl */
    int n_owned;
    int n_texts;
    int layer;
    bool layer_set, pooling_set, one_sided, quiet;
    ramole_pooling pooling;
    long dim, steps, batch, samples, k, threads, max_tokens, warmup;
    double temperature, lr, wd, held_inputs;
    uint64_t seed;
} ret_opts;

static bool parse_layer(const char *cmd, const char *v, int *out) {
    if (!strcmp(v, "final")) {
        *out = RAMOLE_LAYER_FINAL;
        return true;
    }
    long l;
    if (!cli_int(cmd, "--layer", v, 0, 100000, &l)) return false;
    *out = (int)l;
    return true;
}

static bool parse_ret(const char *cmd, int argc, char **argv, int first, ret_opts *o) {
    memset(o, 0, sizeof *o);
    o->layer = RAMOLE_LAYER_FINAL;
    o->pooling = RAMOLE_POOL_MEAN;
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
            if (!ramole_pooling_from_name(v, &o->pooling)) {
                fprintf(stderr, "ramole %s: unknown pooling '%s' (mean, mean_all, last)\n", cmd, v);
                return false;
            }
            o->pooling_set = true;
        }
        else if (!strcmp(a, "--dim")) INT(o->dim, 1, RAMOLE_EMBED_MAX_DIM);
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

static int oom(const char *cmd) {
    fprintf(stderr, "ramole %s: out of memory\n", cmd);
    return 1;
}

static ramole_embedder_params embedder_params(const ret_opts *o) {
    return (ramole_embedder_params){.model = o->model, .projection = o->projection, .prefix = o->prefix,
                                    .layer = o->layer, .pooling = o->pooling, .max_tokens = (int)o->max_tokens,
                                    .n_threads = (int)o->threads};
}

/* The embedder of the options (model, optional projection). */
static int open_embedder(const char *cmd, const ret_opts *o, ramole_embedder **e) {
    ramole_embedder_params p = embedder_params(o);
    ramole_status st = ramole_embedder_open(&p, e);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    if (o->projection && (o->layer_set || o->pooling_set || o->prefix))
        fprintf(stderr, "ramole %s: note: --layer, --pooling and --prefix are those of the projection file\n", cmd);
    return 0;
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

static void print_eval(const char *when, const ramole_retrieval_eval *ev) {
    fprintf(stderr, "%s top-1 accuracy:", when);
    const ramole_retrieval_score *s[3] = {&ev->held_out_inputs, &ev->held_out_tasks, &ev->train};
    static const char *const what[3] = {"held-out inputs of training tasks", "held-out tasks", "training inputs"};
    for (int i = 0; i < 3; i++)
        if (s[i]->queries)
            fprintf(stderr, "%s %s %.4f (%d/%d)", i ? "," : "", what[i], ramole_retrieval_accuracy(s[i]), s[i]->correct,
                    s[i]->queries);
    fprintf(stderr, "\n");
}

/* The log's eval line; fractions as 0 when there were no queries of a kind. */
static void log_eval(FILE *logf, const char *when, const ramole_retrieval_eval *ev) {
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("eval"));
    json_object_set_new(l, "when", json_string(when));
    const ramole_retrieval_score *s[3] = {&ev->held_out_inputs, &ev->held_out_tasks, &ev->train};
    static const char *const key[3] = {"held_out_inputs", "held_out_tasks", "train"};
    for (int i = 0; i < 3; i++) {
        char k[48];
        snprintf(k, sizeof k, "%s_top1", key[i]);
        json_object_set_new(l, k, cli_json_num("%.6f", s[i]->queries ? ramole_retrieval_accuracy(s[i]) : 0.0));
        snprintf(k, sizeof k, "%s_queries", key[i]);
        json_object_set_new(l, k, json_integer(s[i]->queries));
    }
    cli_json_line(logf, l);
}

/* What the run's events print and log. */
typedef struct {
    const char *cmd;
    const ret_opts *o;
    FILE *logf;
    bool tty, stepping, printed; /* printed: a message of this file already says why it stopped */
    long log_every;
    int last_step, dim, hidden;
} train_view;

static void print_start(const train_view *v, const ramole_retriever_event *ev) {
    const ret_opts *o = v->o;
    fprintf(stderr, "train retriever: %d tasks (%d held out), %d training inputs, projection %d x %d, %ld steps of "
                    "%ld pairs, temperature %g, lr %g (pooling took %.1f s); chance %.4f\n",
            ev->n_tasks, ev->n_held_tasks, ev->n_train_inputs, ev->dim, ev->hidden, o->steps, o->batch,
            o->temperature, o->lr, ev->pool_seconds, 1.0 / ev->n_tasks);
    if (ev->n_held_tasks) {
        fprintf(stderr, "held-out tasks (never trained on):");
        for (int t = 0, k = 0; t < ev->n_tasks; t++)
            if (ev->held[t]) fprintf(stderr, "%s %s", k++ ? "," : "", ramole_tasks_name(ev->tasks, t));
        fprintf(stderr, "\n");
    }
    print_eval("before:", &ev->eval);
}

static void log_start(FILE *logf, const ret_opts *o, const ramole_retriever_event *ev) {
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("start"));
    json_object_set_new(l, "kind", json_string("retriever"));
    json_object_set_new(l, "tasks", json_integer(ev->n_tasks));
    json_object_set_new(l, "held_out_tasks", json_integer(ev->n_held_tasks));
    json_object_set_new(l, "inputs", json_integer(ev->n_inputs));
    json_object_set_new(l, "train_inputs", json_integer(ev->n_train_inputs));
    json_object_set_new(l, "dim", json_integer(ev->dim));
    json_object_set_new(l, "hidden", json_integer(ev->hidden));
    json_object_set_new(l, "steps", json_integer(o->steps));
    json_object_set_new(l, "batch", json_integer(o->batch));
    json_object_set_new(l, "lr", cli_json_num("%g", o->lr));
    json_object_set_new(l, "temperature", cli_json_num("%g", o->temperature));
    json_object_set_new(l, "seed", cli_json_u64(o->seed));
    cli_json_line(logf, l);
    log_eval(logf, "before", &ev->eval);
    fflush(logf);
}

static int on_train_event(const ramole_retriever_event *ev, void *user) {
    train_view *v = user;
    const ret_opts *o = v->o;
    switch (ev->stage) {
    case RAMOLE_RETRIEVER_POOLING:
        if (!o->quiet)
            fprintf(stderr, "train retriever: pooling %d inputs of %d tasks through %s ...\n", ev->n_inputs,
                    ev->n_tasks, o->model);
        break;
    case RAMOLE_RETRIEVER_POOLED:
        if (ev->n_cut && !o->quiet)
            fprintf(stderr, "note: %d inputs were cut to %d tokens (--max-tokens)\n", ev->n_cut, ev->max_tokens);
        break;
    case RAMOLE_RETRIEVER_START:
        if (o->log && !(v->logf = fopen(o->log, "w"))) {
            fprintf(stderr, "ramole %s: cannot open the log %s\n", v->cmd, o->log);
            v->printed = true;
            return 1;
        }
        v->dim = ev->dim, v->hidden = ev->hidden;
        if (!o->quiet) print_start(v, ev);
        if (v->logf) log_start(v->logf, o, ev);
        v->stepping = true;
        break;
    case RAMOLE_RETRIEVER_STEP: {
        v->last_step = ev->step;
        if (v->logf) {
            json_t *l = json_object();
            json_object_set_new(l, "step", json_integer(ev->step));
            json_object_set_new(l, "loss", cli_json_num("%.6f", ev->loss));
            json_object_set_new(l, "lr", cli_json_num("%.6g", ev->lr));
            json_object_set_new(l, "grad_norm", cli_json_num("%.6g", ev->grad_norm));
            json_object_set_new(l, "elapsed_s", cli_json_num("%.3f", ev->seconds));
            cli_json_line(v->logf, l);
        }
        bool last = ev->step == o->steps;
        if (!o->quiet && (v->tty || ev->step % v->log_every == 0 || last || ev->step == 1)) {
            char etab[32];
            cli_fmt_time((double)(o->steps - ev->step) * ev->seconds / ev->step, etab, sizeof etab);
            fprintf(stderr, "%sstep %d/%ld  loss %.4f  lr %.2e  ETA %s%s", v->tty ? "\r" : "", ev->step, o->steps,
                    ev->loss, ev->lr, etab, v->tty ? "   " : "\n");
        }
        break;
    }
    case RAMOLE_RETRIEVER_DONE:
        v->stepping = false;
        if (v->tty) fprintf(stderr, "\n");
        if (!o->quiet) print_eval("after: ", &ev->eval);
        if (!o->quiet) fprintf(stderr, "train retriever: done, last loss %.4f, %.1f s\n", ev->loss, ev->seconds);
        if (v->logf) {
            log_eval(v->logf, "after", &ev->eval);
            json_t *l = json_object();
            json_object_set_new(l, "event", json_string("done"));
            json_object_set_new(l, "step", json_integer(ev->step));
            json_object_set_new(l, "loss", cli_json_num("%.6f", ev->loss));
            cli_json_line(v->logf, l);
        }
        break;
    }
    return 0;
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
    ramole_retriever_train_params tp = {.data = o.data, .out = o.out, .embedder = embedder_params(&o),
                                        .dim = (int)o.dim, .steps = (int)o.steps, .batch = (int)o.batch,
                                        .warmup = (int)o.warmup, .temperature = o.temperature, .lr = o.lr,
                                        .weight_decay = o.wd, .one_sided = o.one_sided, .seed = o.seed,
                                        .held_out_tasks = o.held, .held_out_inputs = o.held_inputs,
                                        .samples = (int)o.samples};
    train_view v = {.cmd = cmd, .o = &o, .tty = isatty(2) && !o.quiet,
                    .log_every = o.steps / 20 > 0 ? o.steps / 20 : 1};
    ramole_status st = ramole_retriever_train(&tp, on_train_event, &v);
    int rc = 0;
    if (st == RAMOLE_ERR_RANGE && v.stepping) { /* a non-finite loss */
        if (v.tty) fprintf(stderr, "\n");
        fprintf(stderr, "ramole %s: %s; training stopped, nothing written\n", cmd, ramole_last_error());
        if (v.logf) cli_json_line(v.logf, json_pack("{s:s, s:I}", "event", "nan", "step", (json_int_t)(v.last_step + 1)));
        rc = 1;
    } else if (st != RAMOLE_OK) {
        rc = v.printed ? 1 : cli_fail(cmd, st);
    } else if (!o.quiet) {
        fprintf(stderr, "wrote %s (projection %d x %d)\n", o.out, v.dim, v.hidden);
    }
    if (v.logf && fclose(v.logf) != 0 && rc == 0) {
        fprintf(stderr, "ramole %s: error writing the log %s\n", cmd, o.log);
        rc = 1;
    }
    return rc;
}

/* ---- embed and retrieve ---------------------------------------------------------------- */

static void free_owned(ret_opts *o);

/* Texts from --jsonl: the "input" of each line's object (blank lines
 * skipped), for texts that hold newlines (prompts); o->owned keeps them. */
static ramole_status jsonl_text(const char *s, size_t n, int line, void *ctx) {
    (void)line; /* ramole_lines_each puts "file:line: " in front of an error */
    ret_opts *o = ctx;
    json_error_t je;
    json_t *v = json_loadb(s, n, 0, &je);
    const char *in = json_is_object(v) ? json_string_value(json_object_get(v, "input")) : NULL;
    ramole_status st = RAMOLE_OK;
    if (!in) st = ramole_error_set(RAMOLE_ERR_FORMAT, "%s", !v ? je.text : "expected an object with a string \"input\"");
    else if (o->n_texts == MAX_TEXTS) st = ramole_error_set(RAMOLE_ERR_RANGE, "at most %d texts", MAX_TEXTS);
    else if (!(o->owned[o->n_owned] = strdup(in))) st = ramole_error_set(RAMOLE_ERR_NOMEM, "out of memory");
    else o->texts[o->n_texts++] = o->owned[o->n_owned++];
    json_decref(v);
    return st;
}

static bool gather_jsonl(const char *cmd, ret_opts *o) {
    char *text = NULL;
    size_t len;
    ramole_status st = ramole_file_read(o->jsonl, &text, &len);
    if (st == RAMOLE_OK) st = ramole_lines_each(text, len, o->jsonl, jsonl_text, o);
    ramole_free(text);
    if (st == RAMOLE_OK) return true;
    free_owned(o);
    cli_fail(cmd, st);
    return false;
}

static void free_owned(ret_opts *o) {
    for (int i = 0; i < o->n_owned; i++) free(o->owned[i]);
    o->n_owned = 0;
}

/* Texts from -p and --file (one per line, blank lines skipped); *buf owns the file's. */
static bool gather_texts(const char *cmd, ret_opts *o, char **buf) {
    *buf = NULL;
    if (o->file) {
        size_t len;
        ramole_status st = ramole_file_read(o->file, buf, &len);
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
                    ramole_free(*buf);
                    *buf = NULL;
                    return false;
                }
                o->texts[o->n_texts++] = s;
            }
            s = nl ? nl + 1 : s + n;
        }
    }
    if (o->jsonl && !gather_jsonl(cmd, o)) {
        ramole_free(*buf);
        *buf = NULL;
        return false;
    }
    if (!o->n_texts) {
        fprintf(stderr, "ramole %s: give texts with -p TEXT (repeatable), --file FILE or --jsonl FILE\n", cmd);
        ramole_free(*buf);
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
    ramole_embedder *e = NULL;
    float *E = NULL;
    int rc = open_embedder(cmd, &o, &e);
    if (rc) goto out;
    rc = 1;
    int dim = ramole_embedder_dim(e);
    E = malloc((size_t)o.n_texts * (size_t)dim * sizeof *E);
    ramole_status st = E ? ramole_embedder_embed(e, o.texts, o.n_texts, E) : ramole_error_set(RAMOLE_ERR_NOMEM, "out of memory");
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
        if (!s) { rc = oom(cmd); goto out; }
        printf("%s\n", s);
        free(s);
    }
    rc = 0;
out:
    free(E);
    ramole_embedder_free(e);
    ramole_free(buf);
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
    ramole_embedder *e = NULL;
    ramole_tasks *d = NULL;
    ramole_task_index *ix = NULL;
    ramole_hit *hits = NULL;
    int *n_hits = NULL;
    ramole_status st;
    int rc = 1;
    if ((st = ramole_tasks_load(o.pool, 1, &d)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if ((rc = open_embedder(cmd, &o, &e)) != 0) goto out;
    rc = 1;
    hits = malloc((size_t)o.n_texts * (size_t)o.k * sizeof *hits);
    n_hits = malloc((size_t)o.n_texts * sizeof *n_hits);
    if (!hits || !n_hits) { rc = oom(cmd); goto out; }
    if ((st = ramole_task_index_build(e, d, (int)o.samples, &ix)) != RAMOLE_OK ||
        (st = ramole_task_retrieve(e, ix, o.texts, o.n_texts, (int)o.k, hits, n_hits)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    for (int q = 0; q < o.n_texts; q++) {
        json_t *res = json_array();
        for (int h = 0; h < n_hits[q]; h++) {
            const ramole_hit *hit = &hits[(size_t)q * o.k + h];
            json_array_append_new(res, json_pack("{s:s, s:f}", "task", ramole_tasks_name(d, (int)hit->id), "score",
                                                 (double)hit->score));
        }
        json_t *obj = json_object();
        if (obj) {
            json_object_set_new(obj, "text", json_string_nocheck(o.texts[q]));
            json_object_set_new(obj, "results", res);
        } else
            json_decref(res);
        char *js = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        json_decref(obj);
        if (!js) { rc = oom(cmd); goto out; }
        printf("%s\n", js);
        free(js);
    }
    rc = 0;
out:
    free(hits);
    free(n_hits);
    ramole_task_index_free(ix);
    ramole_tasks_free(d);
    ramole_embedder_free(e);
    ramole_free(buf);
    free_owned(&o);
    return rc;
}
