/*
 * tasks.c — task-grouped JSONL inputs, held-out task splits, task vectors
 * and top-1 accuracy (see tasks.h).
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "retrieval/embed.h"
#include "retrieval/tasks.h"

void rm_task_data_free(rm_task_data *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) rm_free(d->inputs[i]);
    for (int t = 0; t < d->n_tasks; t++) rm_free(d->names[t]);
    rm_free(d->inputs);
    rm_free(d->task);
    rm_free(d->line);
    rm_free(d->names);
    rm_free(d->count);
    rm_free(d);
}

int rm_task_data_find(const rm_task_data *d, const char *name) {
    for (int t = 0; t < d->n_tasks; t++)
        if (!strcmp(d->names[t], name)) return t;
    return -1;
}

static bool grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = rm_realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* One line -> (task, input) strings; messages get "name:line: " from the caller. */
static rm_status parse_line(const char *s, size_t n, char **task, char **input) {
    *task = *input = NULL;
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    if (!j) return rm_err(RAMOLE_ERR_FORMAT, "malformed JSON (column %d): %s", je.column, je.text);
    rm_status st = RAMOLE_OK;
    json_t *t = json_object_get(j, "task"), *in = json_object_get(j, "input");
    if (!json_is_object(j)) st = rm_err(RAMOLE_ERR_FORMAT, "expected a JSON object {\"task\": ..., \"input\": ...}");
    else if (!t || !json_is_string(t)) st = rm_err(RAMOLE_ERR_FORMAT, "missing or non-string \"task\"");
    else if (!in || !json_is_string(in)) st = rm_err(RAMOLE_ERR_FORMAT, "missing or non-string \"input\"");
    else if (!json_string_length(t)) st = rm_err(RAMOLE_ERR_INVALID, "empty \"task\"");
    else if (!json_string_length(in)) st = rm_err(RAMOLE_ERR_INVALID, "empty \"input\"");
    else if (strlen(json_string_value(t)) != json_string_length(t) ||
             strlen(json_string_value(in)) != json_string_length(in))
        st = rm_err(RAMOLE_ERR_FORMAT, "\"task\" or \"input\" contains a NUL character");
    else {
        *task = rm_strdup(json_string_value(t));
        *input = rm_strdup(json_string_value(in));
        if (!*task || !*input) {
            rm_free(*task), rm_free(*input);
            *task = *input = NULL;
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        }
    }
    json_decref(j);
    return st;
}

typedef struct {
    rm_task_data *d;
    int cap, tcap, cap2, cap3, tcap2; /* capacities of inputs, names, task, line, count */
} task_parse;

static rm_status task_line(const char *s, size_t n, int line, void *arg) {
    task_parse *c = arg;
    rm_task_data *d = c->d;
    char *task, *input;
    RM_TRY(parse_line(s, n, &task, &input));
    int t = rm_task_data_find(d, task);
    if (t < 0) {
        if (!grow((void **)&d->names, &c->tcap, d->n_tasks + 1, sizeof *d->names) ||
            !grow((void **)&d->count, &c->tcap2, d->n_tasks + 1, sizeof *d->count)) {
            rm_free(task), rm_free(input);
            return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        }
        t = d->n_tasks++;
        d->names[t] = task;
        d->count[t] = 0;
    } else {
        rm_free(task);
    }
    if (!grow((void **)&d->inputs, &c->cap, d->n + 1, sizeof *d->inputs) ||
        !grow((void **)&d->task, &c->cap2, d->n + 1, sizeof *d->task) ||
        !grow((void **)&d->line, &c->cap3, d->n + 1, sizeof *d->line)) {
        rm_free(input);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    d->inputs[d->n] = input;
    d->task[d->n] = t;
    d->line[d->n] = line;
    d->n++;
    d->count[t]++;
    return RAMOLE_OK;
}

rm_status rm_task_data_parse(const char *text, size_t len, const char *name, int min_per_task, rm_task_data **out) {
    *out = NULL;
    rm_task_data *d = rm_calloc(1, sizeof *d);
    if (!d) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    task_parse c = {.d = d};
    rm_status st = rm_lines_each(text, len, name, task_line, &c);
    if (!st && d->n == 0) st = rm_err(RAMOLE_ERR_INVALID, "%s: no examples", name);
    for (int t = 0; !st && t < d->n_tasks; t++)
        if (d->count[t] < min_per_task)
            st = rm_err(RAMOLE_ERR_INVALID, "%s: task '%s' has %d example%s; each task needs at least %d (a positive "
                        "pair is two different inputs of one task)", name, d->names[t], d->count[t],
                        d->count[t] == 1 ? "" : "s", min_per_task);
    if (st) {
        rm_task_data_free(d);
        return st;
    }
    *out = d;
    return RAMOLE_OK;
}

rm_status rm_task_data_load(const char *path, int min_per_task, rm_task_data **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    RM_TRY(rm_file_read(path, &text, &len));
    rm_status st = rm_task_data_parse(text, len, path, min_per_task, out);
    rm_free(text);
    return st;
}

/* ---- held-out tasks and inputs ------------------------------------------------------- */

static void shuffle(int *a, int n, uint64_t *r);

rm_status rm_task_split_fraction(const rm_task_data *d, double frac, uint64_t seed, bool *held) {
    int T = d->n_tasks;
    memset(held, 0, (size_t)T * sizeof *held);
    if (!(frac >= 0 && frac < 1)) return rm_err(RAMOLE_ERR_RANGE, "held-out fraction %g (0 to below 1)", frac);
    if (frac == 0) return RAMOLE_OK;
    int k = (int)lround(frac * T);
    if (k < 1) k = 1;
    if (k > T - 2) k = T - 2;
    if (k < 1)
        return rm_err(RAMOLE_ERR_INVALID, "cannot hold out tasks: there are %d, and training needs 2 of them", T);
    int *perm = rm_malloc((size_t)T * sizeof *perm);
    if (!perm) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < T; i++) perm[i] = i;
    uint64_t r = seed ^ 0x7a5c0ffee1234567ull;
    shuffle(perm, T, &r);
    for (int i = 0; i < k; i++) held[perm[i]] = true;
    rm_free(perm);
    return RAMOLE_OK;
}

static void shuffle(int *a, int n, uint64_t *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rm_rng_next(r) % (uint64_t)(i + 1));
        int x = a[i];
        a[i] = a[j], a[j] = x;
    }
}

/* The rows grouped by task, each group in file order: rows of task t are
 * row[start[t] .. start[t + 1]). Built once per call, so that a query's
 * evidence costs its task's rows, not a scan of every row. */
typedef struct {
    int *row;   /* [n] */
    int *start; /* [n_tasks + 1] */
} task_groups;

static void groups_free(task_groups *g) { rm_free(g->row), rm_free(g->start); }

static rm_status groups_build(const rm_task_data *d, task_groups *g) {
    g->row = rm_malloc((size_t)(d->n ? d->n : 1) * sizeof *g->row);
    g->start = rm_calloc((size_t)d->n_tasks + 1, sizeof *g->start);
    if (!g->row || !g->start) {
        groups_free(g);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < d->n; i++) g->start[d->task[i] + 1]++;
    for (int t = 0; t < d->n_tasks; t++) g->start[t + 1] += g->start[t];
    int *fill = g->start; /* advanced while filling, then shifted back */
    for (int i = 0; i < d->n; i++) g->row[fill[d->task[i]]++] = i;
    for (int t = d->n_tasks; t > 0; t--) g->start[t] = g->start[t - 1];
    g->start[0] = 0;
    return RAMOLE_OK;
}

rm_status rm_task_split_inputs(const rm_task_data *d, double frac, uint64_t seed, const bool *train_task, bool *held) {
    memset(held, 0, (size_t)d->n * sizeof *held);
    if (!(frac >= 0 && frac < 1)) return rm_err(RAMOLE_ERR_RANGE, "held-out fraction %g (0 to below 1)", frac);
    if (frac == 0) return RAMOLE_OK;
    task_groups g = {0};
    RM_TRY(groups_build(d, &g));
    uint64_t r = seed ^ 0x1b873593c2b2ae35ull;
    for (int t = 0; t < d->n_tasks; t++) {
        if (train_task && !train_task[t]) continue;
        int *rows = g.row + g.start[t], c = g.start[t + 1] - g.start[t]; /* file order, shuffled in place */
        int k = (int)lround(frac * c);
        if (k > c - 2) k = c - 2;
        shuffle(rows, c, &r);
        for (int i = 0; i < k; i++) held[rows[i]] = true;
    }
    groups_free(&g);
    return RAMOLE_OK;
}

typedef struct {
    const rm_task_data *d;
    bool *held;
} held_parse;

static rm_status held_line(const char *s, size_t n, int line, void *arg) {
    held_parse *c = arg;
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    char *name = rm_malloc(n + 1);
    if (!name) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    memcpy(name, s, n);
    name[n] = 0;
    int t = rm_task_data_find(c->d, name);
    rm_status st = t < 0 ? rm_err(RAMOLE_ERR_NOT_FOUND, "task '%.80s' is not in the data", name) : RAMOLE_OK;
    if (t >= 0) c->held[t] = true;
    rm_free(name);
    return st;
}

rm_status rm_task_split_file(const rm_task_data *d, const char *path, bool *held) {
    memset(held, 0, (size_t)d->n_tasks * sizeof *held);
    char *text = NULL;
    size_t len = 0;
    RM_TRY(rm_file_read(path, &text, &len));
    held_parse c = {d, held};
    rm_status st = rm_lines_each(text, len, path, held_line, &c);
    rm_free(text);
    return st;
}

/* ---- representations and accuracy -------------------------------------------------- */

/* Rows of task t in file order, at most max, skipping row `skip`; returns the count. */
static int task_rows(const task_groups *g, int t, int skip, int max, int *rows) {
    int c = 0;
    for (int i = g->start[t]; i < g->start[t + 1] && c < max; i++)
        if (g->row[i] != skip) rows[c++] = g->row[i];
    return c;
}

static void task_vectors(const rm_task_data *d, const task_groups *g, const float *E, int dim, int m, int *rows,
                         double *acc, float *out) {
    for (int t = 0; t < d->n_tasks; t++)
        rm_embed_mean(E, dim, rows, task_rows(g, t, -1, m, rows), acc, out + (size_t)t * dim);
}

rm_status rm_task_samples(const rm_task_data *d, int m, int *off, int *rows) {
    if (m < 1) return rm_err(RAMOLE_ERR_RANGE, "samples per task %d", m);
    task_groups g = {0};
    RM_TRY(groups_build(d, &g));
    off[0] = 0;
    for (int t = 0; t < d->n_tasks; t++) off[t + 1] = off[t] + task_rows(&g, t, -1, m, rows + off[t]);
    groups_free(&g);
    return RAMOLE_OK;
}

rm_status rm_task_vectors(const rm_task_data *d, const float *E, int dim, int m, float *out) {
    if (m < 1) return rm_err(RAMOLE_ERR_RANGE, "samples per task %d", m);
    task_groups g = {0};
    RM_TRY(groups_build(d, &g));
    int *rows = rm_malloc((size_t)m * sizeof *rows);
    double *acc = rm_malloc((size_t)dim * sizeof *acc);
    rm_status st = RAMOLE_OK;
    if (rows && acc) task_vectors(d, &g, E, dim, m, rows, acc, out);
    else st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_free(rows), rm_free(acc);
    groups_free(&g);
    return st;
}

static double dot(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

rm_status rm_task_top1(const rm_task_data *d, const float *E, int dim, int m, const bool *query,
                       rm_retrieval_score *out) {
    out->queries = out->correct = 0;
    if (m < 1) return rm_err(RAMOLE_ERR_RANGE, "samples per task %d", m);
    task_groups g = {0};
    RM_TRY(groups_build(d, &g));
    float *reps = rm_malloc((size_t)d->n_tasks * (size_t)dim * sizeof *reps);
    float *own = rm_malloc((size_t)dim * sizeof *own);
    int *rows = rm_malloc((size_t)m * sizeof *rows);
    double *acc = rm_malloc((size_t)dim * sizeof *acc);
    if (!reps || !own || !rows || !acc) {
        rm_free(reps), rm_free(own), rm_free(rows), rm_free(acc);
        groups_free(&g);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    task_vectors(d, &g, E, dim, m, rows, acc, reps);
    for (int q = 0; q < d->n; q++) {
        int t = d->task[q];
        if (query && !query[q]) continue;
        int c = task_rows(&g, t, q, m, rows);
        if (c == 0) continue; /* a task of one input has no other evidence */
        rm_embed_mean(E, dim, rows, c, acc, own);
        const float *e = E + (size_t)q * dim;
        int best = -1;
        double bs = 0;
        for (int k = 0; k < d->n_tasks; k++) {
            double s = dot(e, k == t ? own : reps + (size_t)k * dim, dim);
            if (best < 0 || s > bs) best = k, bs = s;
        }
        out->queries++;
        out->correct += best == t;
    }
    rm_free(reps), rm_free(own), rm_free(rows), rm_free(acc);
    groups_free(&g);
    return RAMOLE_OK;
}
