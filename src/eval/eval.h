/*
 * eval.h — the paper's comparison on a world: every test example of every
 * task under the base alone, the task's own adapter, and retrieval with
 * selection, mixture, fusion and RouterLoRA, in and out of distribution.
 *
 * A world is a folder (issue #14's layout, read-only here):
 *   base/                     HF model folder with its tokenizer
 *   adapters/TASK/            PEFT adapter of each task
 *   router/                   RouterLoRA router (router mode only)
 *   projection.safetensors    the retriever's projection (retrieval modes)
 *   tasks.json                {"seed", "retrieval": {"samples", "layer", "pooling"},
 *                              "tasks": [{"name", "cluster", "metric", "seen", "max_tokens", ...}]}
 *   tasks/TASK/train.jsonl    {"input", "output"} lines; the first `samples` inputs
 *                             represent the task's adapter in the pool
 *   tasks/TASK/test.jsonl     the examples evaluated
 *
 * Modes: BASE (no adapter), PERFECT (the task's own adapter, selection of
 * it alone), and over the retrieved adapters SELECTION (top-1), MIXTURE,
 * FUSION and ROUTER (top-3; the router of world/router, as `generate
 * --mode router`). Settings: ID (every adapter in the pool) and OOD (the
 * task's own adapter removed: the top k+1 are retrieved and it is dropped,
 * the paper's protocol). BASE and PERFECT do not depend on the pool: they
 * run once and their scores stand in both settings.
 *
 * Retrieval: one index over every task's adapter (the embedder is the base
 * with the projection; samples, layer and pooling from tasks.json, which
 * must agree with the projection file), built once; each test input is
 * embedded once and its top 4 serve both settings. Top-1 and top-3
 * accuracy count whether the task's own adapter is there.
 *
 * Generation: greedy, at most the task's max_tokens, ending at EOS; every
 * generation of the run goes through one engine (rm_engine_run_all), so
 * a batch mixes examples of many adapter sets and modes. The answer is
 * scored with the task's metric (eval/metrics.h) against the expected
 * output, both trimmed.
 *
 * Errors name the file and the problem: a missing or malformed world piece
 * (tasks.json keys, a task without its adapter or data, a JSONL line), an
 * unknown task in params.tasks. A generation the engine refuses fails the
 * run, naming the task, example and mode.
 */
#ifndef RM_EVAL_EVAL_H
#define RM_EVAL_EVAL_H

#include "core/core.h"
#include "eval/metrics.h"
#include "lora/compose.h"

typedef enum {
    RM_EVAL_BASE = 0,
    RM_EVAL_PERFECT,
    RM_EVAL_SELECTION,
    RM_EVAL_MIXTURE,
    RM_EVAL_FUSION,
    RM_EVAL_ROUTER,
    RM_EVAL_MODE_COUNT
} rm_eval_mode;

typedef enum { RM_EVAL_ID = 0, RM_EVAL_OOD, RM_EVAL_SETTING_COUNT } rm_eval_setting;

/* "base", "perfect", "selection", "mixture", "fusion", "router" */
const char *rm_eval_mode_name(rm_eval_mode m);
bool        rm_eval_mode_from_name(const char *s, rm_eval_mode *out);
/* "id", "ood" */
const char *rm_eval_setting_name(rm_eval_setting s);
bool        rm_eval_setting_from_name(const char *s, rm_eval_setting *out);
/* Whether a mode's adapters come from retrieval (and so differ by setting). */
bool        rm_eval_mode_retrieves(rm_eval_mode m);

#define RM_EVAL_TOP_K 3 /* adapters mixture, fusion and the router compose */

typedef struct {
    int tasks_done, n_tasks;      /* tasks all of whose generations finished */
    int done, total;              /* generations */
    int64_t tokens;               /* generated so far */
    double seconds;               /* since the generations started */
} rm_eval_progress;

typedef void (*rm_eval_progress_fn)(const rm_eval_progress *p, void *user);

typedef struct {
    const char *world;            /* the world folder */
    const char *router;           /* the router mode's router folder (NULL: the world's router/) */
    unsigned modes;               /* bit (1u << mode) per mode; 0: all */
    unsigned settings;            /* bit (1u << setting); 0: both */
    const char *const *tasks;     /* task names to evaluate; NULL: all */
    int n_tasks;
    int limit;                    /* test examples per task (the first); 0: all */
    int n_threads;                /* 0: every core */
    int max_seqs;                 /* sequences in flight (0: 32) */
    int prefix_cache_mib;         /* the engine's (0: 64 MiB; < 0: none) */
    rm_eval_progress_fn progress; /* may be NULL; called after every engine step */
    void *user;
} rm_eval_params;

/* One generation: an example under a mode and setting. */
typedef struct {
    int task, example;            /* task number in the report, example of its test.jsonl */
    rm_eval_mode mode;
    rm_eval_setting setting;      /* ID for BASE and PERFECT (they run once) */
    int n_adapters;
    int adapters[RM_EVAL_TOP_K];  /* task numbers of the adapters composed, in order */
    float retrieval[RM_EVAL_TOP_K]; /* modes that retrieve: each adapter's retrieval cosine (what a
                                     * router with a retrieval prior weighs in) */
    char *output;                 /* the generated text */
    int n_tokens;                 /* tokens generated */
    double score;                 /* the task's metric of output against the expected one */
} rm_eval_gen;

typedef struct {
    char *name, *cluster;
    rm_metric metric;
    bool seen;                    /* the retriever and router trained on it */
    int max_tokens;
    bool evaluated;               /* chosen by params.tasks */
    int n_test;                   /* examples evaluated */
    char **inputs, **outputs;     /* [n_test] */
    /* mean score of the examples, per setting and mode; NAN when not run */
    double score[RM_EVAL_SETTING_COUNT][RM_EVAL_MODE_COUNT];
    int top1, top3;               /* examples whose own adapter was retrieved first / in the top 3 */
} rm_eval_task;

typedef struct {
    char *world;
    char *router;                 /* the router mode's router folder */
    /* the router's options beyond the paper, read from its file when the
     * router mode runs (the report names them) */
    bool router_pooled;           /* gates pooled over the prompt (rm_gate_pool PROMPT) */
    float router_prior;           /* its retrieval prior lambda (0: none) */
    uint64_t seed;                /* tasks.json's */
    int samples;                  /* retrieval samples per adapter */
    char *layer, *pooling;        /* as tasks.json gives them */
    unsigned modes, settings;     /* what ran (resolved: never 0) */
    bool retrieval;               /* a retrieval mode ran: top1/top3 are meaningful */
    int limit, n_threads;
    int n_tasks;                  /* every task of the world (the pool) */
    rm_eval_task *tasks;
    int n_gens;
    rm_eval_gen *gens;
    double seconds;               /* the generations, wall clock */
    double retrieval_seconds;     /* building the index and retrieving for every example */
    int64_t tokens_generated, tokens_fed; /* tokens_fed: prompts, decodes and recomputation */
} rm_eval_report;

/* Run the evaluation; *out is the caller's (rm_eval_report_free), NULL on failure. */
rm_status rm_eval_run(const rm_eval_params *p, rm_eval_report **out);
void      rm_eval_report_free(rm_eval_report *r); /* NULL is a no-op */

/* Mean of a score over the evaluated tasks in `cluster` (NULL: all); NAN if none. */
double rm_eval_mean(const rm_eval_report *r, const char *cluster, rm_eval_setting s, rm_eval_mode m);

/*
 * docs/EVAL.md-style report at md_path: setup (world, seed, date, CPU,
 * threads, the command), the tables per cluster and on average for every
 * mode and setting, retrieval accuracy on seen and unseen tasks,
 * throughput; and two SVG charts in DIR/eval/ (DIR: md_path's folder):
 * clusters.svg (per-cluster bars by mode, in distribution) and
 * id_vs_ood.svg (each mode's average in and out of distribution).
 * `command` is printed as the command that made it. Files are written
 * atomically; errors name the file.
 */
rm_status rm_eval_write_markdown(const rm_eval_report *r, const char *md_path, const char *command);

/*
 * Every per-task score and every generation as JSON at path:
 * {"world", "router", "router_options": {"gate_pool", "retrieval_prior"} (when the router mode ran),
 *  "seed", "modes", "settings", "retrieval": {...}, "tasks": [{"name", "cluster", "metric", "seen",
 *  "examples", "top1", "top3", "scores": {"id": {MODE: score}, "ood": {...}}}],
 *  "generations": [{"task", "example", "mode", "setting", "adapters": [names], "output", "tokens", "score"
 *                   [, "retrieval": [cosines]]}],
 *  "throughput": {...}}
 * (BASE and PERFECT generations have "setting": "both"; the modes that
 * retrieve give each adapter's retrieval cosine in "retrieval").
 */
rm_status rm_eval_write_json(const rm_eval_report *r, const char *path);

#endif /* RM_EVAL_EVAL_H */
