/*
 * eval.c — rm_eval_run: a world read and checked, retrieval for every test
 * example, every generation through one engine, scores (see eval.h).
 *
 * The run is three passes. (1) The world: tasks.json, then for every task
 * its adapter's files and its data (test examples of the evaluated tasks;
 * the first `samples` train inputs of every task when a mode retrieves),
 * so that a missing piece fails before any model work, naming the file.
 * (2) Retrieval: the pool's index over every task's samples, and each
 * evaluated example's top RM_EVAL_TOP_K + 1, which serve both settings.
 * (3) Generation: one request per (example, mode, setting), task by task
 * and within a task example by example, so that the engine's batches
 * always mix many adapter sets; then each output is scored.
 */
#include "eval/eval.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "engine/engine.h"
#include "model/model.h"
#include "retrieval/embed.h"
#include "retrieval/retrieve.h"
#include "retrieval/tasks.h"

static const char *const mode_names[RM_EVAL_MODE_COUNT] = {"base", "perfect", "selection", "mixture", "fusion", "router"};
static const char *const setting_names[RM_EVAL_SETTING_COUNT] = {"id", "ood"};

const char *rm_eval_mode_name(rm_eval_mode m) { return (unsigned)m < RM_EVAL_MODE_COUNT ? mode_names[m] : "?"; }
const char *rm_eval_setting_name(rm_eval_setting s) {
    return (unsigned)s < RM_EVAL_SETTING_COUNT ? setting_names[s] : "?";
}

bool rm_eval_mode_from_name(const char *s, rm_eval_mode *out) {
    for (int i = 0; i < RM_EVAL_MODE_COUNT; i++)
        if (s && !strcmp(s, mode_names[i])) return *out = (rm_eval_mode)i, true;
    return false;
}

bool rm_eval_setting_from_name(const char *s, rm_eval_setting *out) {
    for (int i = 0; i < RM_EVAL_SETTING_COUNT; i++)
        if (s && !strcmp(s, setting_names[i])) return *out = (rm_eval_setting)i, true;
    return false;
}

bool rm_eval_mode_retrieves(rm_eval_mode m) { return m >= RM_EVAL_SELECTION && m < RM_EVAL_MODE_COUNT; }

void rm_eval_report_free(rm_eval_report *r) {
    if (!r) return;
    for (int t = 0; t < r->n_tasks; t++) {
        rm_eval_task *k = &r->tasks[t];
        for (int i = 0; i < k->n_test; i++) rm_free(k->inputs[i]), rm_free(k->outputs[i]);
        rm_free(k->inputs), rm_free(k->outputs), rm_free(k->name), rm_free(k->cluster);
    }
    for (int g = 0; g < r->n_gens; g++) rm_free(r->gens[g].output);
    rm_free(r->tasks), rm_free(r->gens), rm_free(r->world), rm_free(r->router), rm_free(r->layer), rm_free(r->pooling);
    rm_free(r);
}

double rm_eval_mean(const rm_eval_report *r, const char *cluster, rm_eval_setting s, rm_eval_mode m) {
    double sum = 0;
    int n = 0;
    for (int t = 0; t < r->n_tasks; t++) {
        const rm_eval_task *k = &r->tasks[t];
        if (!k->evaluated || (cluster && strcmp(cluster, k->cluster)) || isnan(k->score[s][m])) continue;
        sum += k->score[s][m], n++;
    }
    return n ? sum / n : NAN;
}

/* ---- the world ------------------------------------------------------------------ */

static rm_status need_file(const char *dir, const char *name, const char *what) {
    char *p = rm_path_join(dir, name);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    bool ok = rm_file_exists(p);
    rm_status st = ok ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "%s: missing (%s)", p, what);
    rm_free(p);
    return st;
}

/* tasks.json's "tasks" entry i into k. */
static rm_status parse_task(const char *path, int i, json_t *o, rm_eval_task *k) {
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *cluster = json_string_value(json_object_get(o, "cluster"));
    const char *metric = json_string_value(json_object_get(o, "metric"));
    json_t *seen = json_object_get(o, "seen"), *mt = json_object_get(o, "max_tokens");
    if (!json_is_object(o)) return rm_err(RAMOLE_ERR_FORMAT, "%s: tasks[%d] is not an object", path, i);
    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tasks[%d] needs \"name\", a non-empty string without '/'", path, i);
    if (!cluster || !*cluster)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: task %s needs \"cluster\", a non-empty string", path, name);
    if (!rm_metric_from_name(metric, &k->metric))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: task %s: \"metric\" must be em, f1, bleu or rougeL", path, name);
    if (!json_is_boolean(seen)) return rm_err(RAMOLE_ERR_FORMAT, "%s: task %s needs \"seen\": true or false", path, name);
    if (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > 65536)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: task %s needs \"max_tokens\", an integer from 1 to 65536", path, name);
    k->seen = json_is_true(seen);
    k->max_tokens = (int)json_integer_value(mt);
    k->name = rm_strdup(name);
    k->cluster = rm_strdup(cluster);
    if (!k->name || !k->cluster) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int j = 0; j < RM_EVAL_SETTING_COUNT; j++)
        for (int m = 0; m < RM_EVAL_MODE_COUNT; m++) k->score[j][m] = NAN;
    return RAMOLE_OK;
}

static rm_status load_tasks_json(const char *world, rm_eval_report *r) {
    char *path = rm_path_join(world, "tasks.json"), *text = NULL;
    json_t *root = NULL;
    rm_status st;
    size_t len;
    if (!path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if ((st = rm_file_read(path, &text, &len)) != RAMOLE_OK) goto out;
    json_error_t je;
    if (!(root = json_loadb(text, len, 0, &je)) || !json_is_object(root)) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s:%d: %s", path, root ? 1 : je.line, root ? "not a JSON object" : je.text);
        goto out;
    }
    json_t *seed = json_object_get(root, "seed"), *ret = json_object_get(root, "retrieval");
    json_t *tasks = json_object_get(root, "tasks");
    r->seed = json_is_integer(seed) ? (uint64_t)json_integer_value(seed) : 0;
    json_t *samples = json_object_get(ret, "samples"), *layer = json_object_get(ret, "layer");
    const char *pooling = json_string_value(json_object_get(ret, "pooling"));
    if (!json_is_object(ret) || !json_is_integer(samples) || json_integer_value(samples) < 1 ||
        json_integer_value(samples) > 100000 || !(json_is_string(layer) || json_is_integer(layer)) || !pooling) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: needs \"retrieval\": {\"samples\": N >= 1, \"layer\": \"final\" or a number, "
                    "\"pooling\": NAME}", path);
        goto out;
    }
    r->samples = (int)json_integer_value(samples);
    r->layer = json_is_string(layer) ? rm_strdup(json_string_value(layer))
                                     : rm_asprintf("%lld", (long long)json_integer_value(layer));
    r->pooling = rm_strdup(pooling);
    if (!json_is_array(tasks) || json_array_size(tasks) == 0) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: needs \"tasks\", a non-empty array", path);
        goto out;
    }
    r->n_tasks = (int)json_array_size(tasks);
    if (!r->layer || !r->pooling || !(r->tasks = rm_calloc((size_t)r->n_tasks, sizeof *r->tasks))) {
        r->n_tasks = 0;
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < r->n_tasks; i++) {
        if ((st = parse_task(path, i, json_array_get(tasks, (size_t)i), &r->tasks[i])) != RAMOLE_OK) goto out;
        for (int j = 0; j < i; j++)
            if (!strcmp(r->tasks[j].name, r->tasks[i].name)) {
                st = rm_err(RAMOLE_ERR_FORMAT, "%s: task %s is listed twice", path, r->tasks[i].name);
                goto out;
            }
    }
    st = RAMOLE_OK;
out:
    json_decref(root);
    rm_free(text);
    rm_free(path);
    return st;
}

/* Lines of tasks/TASK/FILE: {"input": string, "output": string}. */
typedef struct {
    int cap, n, max;              /* max: stop after this many (0: all) */
    char **inputs, **outputs;     /* outputs NULL: inputs only */
} jsonl_pairs;

static rm_status pair_line(const char *s, size_t n, int line, void *ctx) {
    jsonl_pairs *p = ctx;
    if (p->max && p->n >= p->max) return RAMOLE_OK;
    json_error_t je;
    json_t *o = json_loadb(s, n, 0, &je);
    const char *in = json_string_value(json_object_get(o, "input"));
    const char *out = json_string_value(json_object_get(o, "output"));
    rm_status st = RAMOLE_OK;
    if (!o) st = rm_err(RAMOLE_ERR_FORMAT, "%s", je.text);
    else if (!in || !out) st = rm_err(RAMOLE_ERR_FORMAT, "needs \"input\" and \"output\", both strings");
    else if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        char **a = rm_realloc(p->inputs, (size_t)cap * sizeof *a), **b = NULL;
        if (a) p->inputs = a;
        if (a && p->outputs && (b = rm_realloc(p->outputs, (size_t)cap * sizeof *b))) p->outputs = b;
        if (!a || (p->outputs && !b)) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else p->cap = cap;
    }
    if (st == RAMOLE_OK) {
        p->inputs[p->n] = rm_strdup(in);
        if (p->outputs) p->outputs[p->n] = rm_strdup(out);
        if (!p->inputs[p->n] || (p->outputs && !p->outputs[p->n])) {
            rm_free(p->inputs[p->n]);
            if (p->outputs) rm_free(p->outputs[p->n]);
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        } else
            p->n++;
    }
    json_decref(o);
    (void)line;
    return st;
}

static void pairs_free(jsonl_pairs *p) {
    for (int i = 0; i < p->n; i++) {
        rm_free(p->inputs[i]);
        if (p->outputs) rm_free(p->outputs[i]);
    }
    rm_free(p->inputs), rm_free(p->outputs);
    memset(p, 0, sizeof *p);
}

/* The first max (0: all) pairs of WORLD/tasks/TASK/file; an empty file is an error. */
static rm_status load_pairs(const char *world, const char *task, const char *file, int max, bool outputs,
                            jsonl_pairs *p) {
    memset(p, 0, sizeof *p);
    p->max = max;
    char *path = rm_asprintf("%s/tasks/%s/%s", world, task, file), *text = NULL;
    size_t len;
    if (!path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_file_read(path, &text, &len);
    if (st == RAMOLE_OK && outputs && !(p->outputs = rm_calloc(1, sizeof *p->outputs)))
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) st = rm_lines_each(text, len, path, pair_line, p);
    if (st == RAMOLE_OK && !p->n) st = rm_err(RAMOLE_ERR_FORMAT, "%s: no examples", path);
    if (st != RAMOLE_OK) pairs_free(p);
    rm_free(text);
    rm_free(path);
    return st;
}

/* Which tasks to evaluate (all, or params.tasks by name). */
static rm_status choose_tasks(const rm_eval_params *p, rm_eval_report *r) {
    for (int t = 0; t < r->n_tasks; t++) r->tasks[t].evaluated = !p->tasks;
    for (int i = 0; p->tasks && i < p->n_tasks; i++) {
        int t = 0;
        while (t < r->n_tasks && strcmp(r->tasks[t].name, p->tasks[i])) t++;
        if (t == r->n_tasks) return rm_err(RAMOLE_ERR_NOT_FOUND, "task '%s' is not in %s/tasks.json", p->tasks[i], p->world);
        r->tasks[t].evaluated = true;
    }
    return RAMOLE_OK;
}

/* Every piece of the world the run will read, before any model work. */
static rm_status check_world(const rm_eval_params *p, rm_eval_report *r, char **adapter_paths) {
    bool routed = r->modes & (1u << RM_EVAL_ROUTER);
    char *base = rm_path_join(p->world, "base");
    if (!base) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = need_file(base, "config.json", "the base model");
    rm_free(base);
    RM_TRY(st);
    if (r->retrieval) RM_TRY(need_file(p->world, "projection.safetensors", "the retriever's projection"));
    if (routed) RM_TRY(need_file(r->router, "adapter_config.json", "the router"));
    for (int t = 0; t < r->n_tasks; t++) {
        rm_eval_task *k = &r->tasks[t];
        if (!(adapter_paths[t] = rm_asprintf("%s/adapters/%s", p->world, k->name)))
            return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        if (!k->evaluated && !r->retrieval) continue; /* not in any request */
        RM_TRY(need_file(adapter_paths[t], "adapter_config.json", "the task's adapter"));
        RM_TRY(need_file(adapter_paths[t], "adapter_model.safetensors", "the task's adapter"));
        if (!k->evaluated) continue;
        jsonl_pairs tp;
        RM_TRY(load_pairs(p->world, k->name, "test.jsonl", p->limit, true, &tp));
        k->n_test = tp.n, k->inputs = tp.inputs, k->outputs = tp.outputs;
    }
    return RAMOLE_OK;
}

/* ---- retrieval ------------------------------------------------------------------- */

/* The pool as retrieval's task data: every task's first `samples` train inputs. */
static rm_status pool_data(const char *world, const rm_eval_report *r, rm_task_data **out) {
    json_t *lines = json_array();
    rm_status st = lines ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int t = 0; st == RAMOLE_OK && t < r->n_tasks; t++) {
        jsonl_pairs tp;
        if ((st = load_pairs(world, r->tasks[t].name, "train.jsonl", r->samples, false, &tp)) != RAMOLE_OK) break;
        for (int i = 0; st == RAMOLE_OK && i < tp.n; i++)
            if (json_array_append_new(lines, json_pack("{s:s, s:s}", "task", r->tasks[t].name, "input", tp.inputs[i])))
                st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        pairs_free(&tp);
    }
    /* one object per line: compact JSON has no newlines inside */
    size_t total = 0;
    char **parts = NULL;
    size_t n = lines ? json_array_size(lines) : 0;
    if (st == RAMOLE_OK && !(parts = rm_calloc(n ? n : 1, sizeof *parts))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == RAMOLE_OK && i < n; i++) {
        if (!(parts[i] = json_dumps(json_array_get(lines, i), JSON_COMPACT))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else total += strlen(parts[i]) + 1;
    }
    char *text = st == RAMOLE_OK ? rm_malloc(total + 1) : NULL;
    if (st == RAMOLE_OK && !text) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) {
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(parts[i]);
            memcpy(text + off, parts[i], l);
            text[off + l] = '\n';
            off += l + 1;
        }
        text[off] = 0;
        st = rm_task_data_parse(text, off, "the pool's samples (tasks/*/train.jsonl)", 1, out);
    }
    for (size_t i = 0; parts && i < n; i++) free(parts[i]);
    rm_free(parts), rm_free(text);
    json_decref(lines);
    return st;
}

/* One retrieved adapter: its task number (-1 past the pool) and cosine. */
typedef struct {
    int task;
    float score;
} eval_hit;

/* hits[e][RM_EVAL_TOP_K + 1] for every evaluated example, in task order;
 * the top-1 and top-3 counts of each task. */
static rm_status retrieve_all(const rm_eval_params *p, rm_eval_report *r, const rm_model *m, rm_pool *pool,
                              int n_ex, eval_hit *hits) {
    rm_task_data *d = NULL;
    rm_projection *proj = NULL;
    rm_embedder *e = NULL;
    rm_index *ix = NULL;
    const char **texts = rm_malloc((size_t)(n_ex ? n_ex : 1) * sizeof *texts);
    const int K = RM_EVAL_TOP_K + 1;
    rm_hit *h = rm_malloc((size_t)(n_ex ? n_ex : 1) * K * sizeof *h);
    int *nh = rm_malloc((size_t)(n_ex ? n_ex : 1) * sizeof *nh);
    char *ppath = rm_path_join(p->world, "projection.safetensors");
    rm_status st = texts && h && nh && ppath ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    double t0 = rm_time_now();
    if (st == RAMOLE_OK) st = pool_data(p->world, r, &d);
    if (st == RAMOLE_OK && d->n_tasks != r->n_tasks)
        st = rm_err(RAMOLE_ERR_INTERNAL, "the pool has %d tasks of %d", d->n_tasks, r->n_tasks);
    if (st == RAMOLE_OK) st = rm_projection_load(ppath, m, &proj);
    if (st == RAMOLE_OK) { /* tasks.json and the projection must describe one embedder */
        const char *pl = rm_pooling_name(proj->pooling);
        char layer[24];
        if (proj->layer == RM_HIDDEN_FINAL) snprintf(layer, sizeof layer, "final");
        else snprintf(layer, sizeof layer, "%d", proj->layer);
        if (strcmp(layer, r->layer) || strcmp(pl, r->pooling))
            st = rm_err(RAMOLE_ERR_MISMATCH, "%s has layer %s and pooling %s, but %s/tasks.json's retrieval says layer %s "
                        "and pooling %s", ppath, layer, pl, p->world, r->layer, r->pooling);
    }
    if (st == RAMOLE_OK) {
        rm_embed_opts eo;
        rm_embed_opts_default(&eo);
        eo.pool = pool;
        st = rm_embedder_new(m, m->tokenizer, &eo, proj, &e);
    }
    if (st == RAMOLE_OK) st = rm_task_index_build(e, d, r->samples, &ix);
    int q = 0;
    for (int t = 0; t < r->n_tasks; t++)
        for (int i = 0; r->tasks[t].evaluated && i < r->tasks[t].n_test; i++) texts[q++] = r->tasks[t].inputs[i];
    if (st == RAMOLE_OK && n_ex) st = rm_retrieve(e, ix, texts, n_ex, K, h, nh);
    if (st == RAMOLE_OK) {
        q = 0;
        for (int t = 0; t < r->n_tasks; t++) {
            rm_eval_task *k = &r->tasks[t];
            for (int i = 0; k->evaluated && i < k->n_test; i++, q++) {
                for (int j = 0; j < K; j++)
                    hits[q * K + j] = j < nh[q] ? (eval_hit){(int)h[q * K + j].id, h[q * K + j].score}
                                                : (eval_hit){-1, 0};
                k->top1 += hits[q * K].task == t;
                for (int j = 0; j < RM_EVAL_TOP_K; j++) k->top3 += hits[q * K + j].task == t;
            }
        }
    }
    r->retrieval_seconds = rm_time_now() - t0;
    rm_index_free(ix);
    rm_embedder_free(e);
    rm_projection_free(proj);
    rm_task_data_free(d);
    rm_free(texts), rm_free(h), rm_free(nh), rm_free(ppath);
    return st;
}

/* ---- generation ------------------------------------------------------------------ */

/* The adapters of example q of task t under mode and setting (task numbers,
 * and their retrieval scores: 0 for perfect selection's, not retrieved);
 * their count. */
static int adapters_for(int t, rm_eval_mode mode, rm_eval_setting s, const eval_hit *hits, int *out, float *score) {
    if (mode == RM_EVAL_BASE) return 0;
    if (mode == RM_EVAL_PERFECT) return out[0] = t, score[0] = 0, 1;
    int want = mode == RM_EVAL_SELECTION ? 1 : RM_EVAL_TOP_K, n = 0;
    for (int j = 0; j < RM_EVAL_TOP_K + 1 && n < want; j++) {
        if (hits[j].task < 0) break;
        if (s == RM_EVAL_OOD && hits[j].task == t) continue;
        if (s == RM_EVAL_ID && j == RM_EVAL_TOP_K) break; /* k, not k + 1, in distribution */
        score[n] = hits[j].score;
        out[n++] = hits[j].task;
    }
    return n;
}

static const rm_compose_mode compose_of[RM_EVAL_MODE_COUNT] = {
    RM_COMPOSE_NONE, RM_COMPOSE_SELECTION, RM_COMPOSE_SELECTION, RM_COMPOSE_MIXTURE, RM_COMPOSE_FUSION, RM_COMPOSE_ROUTER};

typedef struct {
    const rm_eval_params *p;
    const rm_eval_report *r;
    const rm_engine_result *results;
    const int *task_end;          /* [n_tasks]: one past the task's last generation */
    int cursor, tasks_done;
} progress_state;

static void on_progress(int done, int total, int64_t tokens, double seconds, void *user) {
    progress_state *ps = user;
    while (ps->cursor < total && ps->results[ps->cursor].finish != RM_FINISH_NONE) ps->cursor++;
    int n_eval = 0, finished = 0;
    for (int t = 0; t < ps->r->n_tasks; t++)
        if (ps->r->tasks[t].evaluated) {
            n_eval++;
            finished += ps->task_end[t] <= ps->cursor;
        }
    rm_eval_progress pr = {finished, n_eval, done, total, tokens, seconds};
    ps->p->progress(&pr, ps->p->user);
}

/* Build every request, run them all, score. */
static rm_status generate_all(const rm_eval_params *p, rm_eval_report *r, rm_engine *eng, char **adapter_paths,
                              const eval_hit *hits) {
    int n_modes_ret = 0, n_modes_once = 0, n_settings = 0, n_ex = 0;
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) rm_eval_mode_retrieves((rm_eval_mode)m) ? n_modes_ret++ : n_modes_once++;
    for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++) n_settings += !!(r->settings & (1u << s));
    for (int t = 0; t < r->n_tasks; t++) n_ex += r->tasks[t].evaluated ? r->tasks[t].n_test : 0;
    int n = n_ex * (n_modes_once + n_modes_ret * n_settings);
    rm_engine_request *reqs = rm_calloc((size_t)(n ? n : 1), sizeof *reqs);
    const rm_engine_request **ptrs = rm_calloc((size_t)(n ? n : 1), sizeof *ptrs);
    rm_engine_result *res = rm_calloc((size_t)(n ? n : 1), sizeof *res);
    int *task_end = rm_calloc((size_t)r->n_tasks, sizeof *task_end);
    r->gens = rm_calloc((size_t)(n ? n : 1), sizeof *r->gens);
    rm_status st = reqs && ptrs && res && task_end && r->gens ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    int g = 0, q = 0;
    for (int t = 0; st == RAMOLE_OK && t < r->n_tasks; t++) {
        rm_eval_task *k = &r->tasks[t];
        for (int i = 0; k->evaluated && i < k->n_test; i++, q++)
            for (int m = 0; m < RM_EVAL_MODE_COUNT; m++) {
                if (!(r->modes & (1u << m))) continue;
                for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++) {
                    if (rm_eval_mode_retrieves((rm_eval_mode)m) ? !(r->settings & (1u << s)) : s != RM_EVAL_ID) continue;
                    rm_eval_gen *gen = &r->gens[g];
                    rm_engine_request *rq = &reqs[g];
                    *gen = (rm_eval_gen){.task = t, .example = i, .mode = (rm_eval_mode)m, .setting = (rm_eval_setting)s};
                    gen->n_adapters = adapters_for(t, (rm_eval_mode)m, (rm_eval_setting)s,
                                                   hits ? hits + (size_t)q * (RM_EVAL_TOP_K + 1) : NULL, gen->adapters,
                                                   gen->retrieval);
                    rm_engine_request_init(rq);
                    rq->prompt = k->inputs[i];
                    rq->max_tokens = k->max_tokens;
                    rq->mode = gen->n_adapters ? compose_of[m] : RM_COMPOSE_NONE;
                    rq->n_adapters = gen->n_adapters;
                    for (int j = 0; j < gen->n_adapters; j++) {
                        rq->adapters[j] = adapter_paths[gen->adapters[j]];
                        rq->retrieval[j] = gen->retrieval[j]; /* a router with a retrieval prior weighs them in */
                    }
                    if (rq->mode == RM_COMPOSE_ROUTER) rq->router = r->router;
                    ptrs[g] = rq;
                    g++;
                }
            }
        task_end[t] = g;
    }
    r->n_gens = g;
    progress_state ps = {p, r, res, task_end, 0, 0};
    double t0 = rm_time_now();
    rm_engine_stats s0, s1;
    rm_engine_stats_get(eng, &s0);
    if (st == RAMOLE_OK)
        st = rm_engine_run_all(eng, ptrs, g, 0, res, p->progress ? on_progress : NULL, &ps);
    r->seconds = rm_time_now() - t0;
    rm_engine_stats_get(eng, &s1);
    r->tokens_generated = s1.tokens_generated - s0.tokens_generated;
    r->tokens_fed = s1.tokens_fed - s0.tokens_fed;
    for (int i = 0; st == RAMOLE_OK && i < g; i++) {
        rm_eval_gen *gen = &r->gens[i];
        const rm_eval_task *k = &r->tasks[gen->task];
        if (res[i].error || res[i].finish == RM_FINISH_NONE || res[i].finish == RM_FINISH_ERROR) {
            st = rm_err(RAMOLE_ERR_INVALID, "task %s, example %d of test.jsonl, mode %s (%s): %s", k->name,
                        gen->example + 1, rm_eval_mode_name(gen->mode), rm_eval_setting_name(gen->setting),
                        res[i].error ? res[i].error : "did not finish");
            break;
        }
        gen->output = res[i].text ? res[i].text : rm_strdup("");
        res[i].text = NULL;
        gen->n_tokens = res[i].n_tokens;
        if (!gen->output) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else st = rm_metric_score(k->metric, gen->output, k->outputs[gen->example], &gen->score);
    }
    for (int i = 0; res && i < n; i++) rm_engine_result_free(&res[i]);
    rm_free(reqs), rm_free(ptrs), rm_free(res), rm_free(task_end);
    return st;
}

/* Per task, setting and mode: the mean over its examples (BASE and PERFECT stand in both settings). */
static void aggregate(rm_eval_report *r) {
    for (int t = 0; t < r->n_tasks; t++) {
        double sum[RM_EVAL_SETTING_COUNT][RM_EVAL_MODE_COUNT] = {{0}};
        int cnt[RM_EVAL_SETTING_COUNT][RM_EVAL_MODE_COUNT] = {{0}};
        for (int g = 0; g < r->n_gens; g++)
            if (r->gens[g].task == t) {
                sum[r->gens[g].setting][r->gens[g].mode] += r->gens[g].score;
                cnt[r->gens[g].setting][r->gens[g].mode]++;
            }
        for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++)
            for (int m = 0; m < RM_EVAL_MODE_COUNT; m++) {
                int ss = rm_eval_mode_retrieves((rm_eval_mode)m) ? s : RM_EVAL_ID;
                r->tasks[t].score[s][m] = cnt[ss][m] ? sum[ss][m] / cnt[ss][m] : NAN;
            }
    }
}

rm_status rm_eval_run(const rm_eval_params *p, rm_eval_report **out) {
    *out = NULL;
    if (!p || !p->world) return rm_err(RAMOLE_ERR_INVALID, "rm_eval_run: no world");
    if (p->limit < 0) return rm_err(RAMOLE_ERR_INVALID, "rm_eval_run: limit must be >= 0");
    rm_eval_report *r = rm_calloc(1, sizeof *r);
    if (!r) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    char **adapter_paths = NULL, *base_path = NULL;
    rm_model *m = NULL;
    rm_engine *eng = NULL;
    eval_hit *hits = NULL;
    rm_status st;
    r->modes = p->modes ? p->modes & ((1u << RM_EVAL_MODE_COUNT) - 1) : (1u << RM_EVAL_MODE_COUNT) - 1;
    r->settings = p->settings ? p->settings & ((1u << RM_EVAL_SETTING_COUNT) - 1) : (1u << RM_EVAL_SETTING_COUNT) - 1;
    r->limit = p->limit;
    r->n_threads = p->n_threads ? p->n_threads : rm_cpu_count();
    for (int k = RM_EVAL_SELECTION; k < RM_EVAL_MODE_COUNT; k++) r->retrieval |= !!(r->modes & (1u << k));
    if (!r->modes || !r->settings) {
        st = rm_err(RAMOLE_ERR_INVALID, "rm_eval_run: no mode or no setting chosen");
        goto out;
    }
    if (!(r->world = rm_strdup(p->world))) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto out; }
    if ((st = load_tasks_json(p->world, r)) != RAMOLE_OK || (st = choose_tasks(p, r)) != RAMOLE_OK) goto out;
    if (!(adapter_paths = rm_calloc((size_t)r->n_tasks, sizeof *adapter_paths)) ||
        !(r->router = p->router ? rm_strdup(p->router) : rm_path_join(p->world, "router")) || !(base_path = rm_path_join(p->world, "base"))) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = check_world(p, r, adapter_paths)) != RAMOLE_OK) goto out;
    if ((st = rm_model_open(base_path, &m)) != RAMOLE_OK) goto out;
    if (!m->tokenizer) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s has no tokenizer.json; the evaluation reads text", base_path);
        goto out;
    }
    if (r->modes & (1u << RM_EVAL_ROUTER)) { /* what the router is, for the report */
        rm_adapter *ra = NULL;
        if ((st = rm_adapter_load(m, r->router, &ra)) != RAMOLE_OK) goto out;
        r->router_pooled = ra->gate_pool == RM_GATE_POOL_PROMPT;
        r->router_prior = ra->retrieval_prior;
        rm_adapter_free(ra);
    }
    /* offline: no stream waits on a step, so prompts take the whole budget */
    rm_engine_params ep = {.n_threads = p->n_threads, .max_seqs = p->max_seqs ? p->max_seqs : 32,
                           .prefill_tokens = -1, .max_adapters = RM_EVAL_TOP_K,
                           .prefix_cache_mib = p->prefix_cache_mib};
    if ((st = rm_engine_new(m, &ep, &eng)) != RAMOLE_OK) goto out;
    if (r->retrieval) {
        int n_ex = 0;
        for (int t = 0; t < r->n_tasks; t++) n_ex += r->tasks[t].evaluated ? r->tasks[t].n_test : 0;
        if (!(hits = rm_malloc((size_t)(n_ex ? n_ex : 1) * (RM_EVAL_TOP_K + 1) * sizeof *hits))) {
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((st = retrieve_all(p, r, m, rm_engine_pool(eng), n_ex, hits)) != RAMOLE_OK) goto out;
    }
    if ((st = generate_all(p, r, eng, adapter_paths, hits)) != RAMOLE_OK) goto out;
    aggregate(r);
out:
    for (int t = 0; adapter_paths && t < r->n_tasks; t++) rm_free(adapter_paths[t]);
    rm_free(adapter_paths), rm_free(base_path), rm_free(hits);
    rm_engine_free(eng);
    rm_model_free(m);
    if (st != RAMOLE_OK) rm_eval_report_free(r);
    else *out = r;
    return st;
}
