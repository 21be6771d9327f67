/*
 * ramole/eval.h — the paper's comparison on a world folder (`ramole eval`):
 * every test example of every task under the base alone, the task's own
 * adapter, and retrieval with selection, mixture, fusion and RouterLoRA, in
 * distribution and out of it. Included by ramole.h.
 */
#ifndef RAMOLE_EVAL_H
#define RAMOLE_EVAL_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RAMOLE_EVAL_BASE = 0,   /* no adapter */
    RAMOLE_EVAL_PERFECT,    /* the task's own adapter */
    RAMOLE_EVAL_SELECTION,  /* retrieved top-1 */
    RAMOLE_EVAL_MIXTURE,    /* retrieved top-3, their mean */
    RAMOLE_EVAL_FUSION,     /* retrieved top-3, mean parameters */
    RAMOLE_EVAL_ROUTER,     /* retrieved top-3 under the world's router */
    RAMOLE_EVAL_MODE_COUNT
} ramole_eval_mode;

typedef enum {
    RAMOLE_EVAL_ID = 0,     /* every adapter in the pool */
    RAMOLE_EVAL_OOD,        /* the task's own adapter removed */
    RAMOLE_EVAL_SETTING_COUNT
} ramole_eval_setting;

/* "base", "perfect", "selection", "mixture", "fusion", "router" */
const char *ramole_eval_mode_name(ramole_eval_mode m);
/* 0 when s names no mode. */
int ramole_eval_mode_from_name(const char *s, ramole_eval_mode *out);
/* "id", "ood" */
const char *ramole_eval_setting_name(ramole_eval_setting s);
int ramole_eval_setting_from_name(const char *s, ramole_eval_setting *out);

typedef struct {
    int tasks_done, n_tasks;  /* tasks all of whose generations finished */
    int done, total;          /* generations */
    int64_t tokens;           /* generated so far */
    double seconds;           /* since the generations started */
} ramole_eval_progress;

typedef void (*ramole_eval_progress_fn)(const ramole_eval_progress *p, void *user);

typedef struct {
    const char *world;        /* the world folder (base/, adapters/, router/, tasks.json, tasks/) */
    const char *router;       /* the router mode's router folder (NULL: the world's router/), to compare
                                 routers on one world */
    unsigned modes;           /* bit (1u << mode) per mode; 0: all */
    unsigned settings;        /* bit (1u << setting); 0: both */
    const char *const *tasks; /* task names to evaluate; NULL: all */
    int n_tasks;
    int limit;                /* test examples per task (the first); 0: all */
    int n_threads;            /* 0: every core */
    int max_seqs;             /* sequences in flight (0: 32) */
    int prefix_cache_mib;     /* as ramole_engine_params.prefix_cache_mib (0: 64 MiB; < 0: none) */
    ramole_eval_progress_fn progress; /* may be NULL; called after every engine step */
    void *user;
} ramole_eval_params;

/* The scores and generations of one run. Valid until ramole_eval_report_free. */
typedef struct ramole_eval_report ramole_eval_report;

/*
 * Run the evaluation. Errors name the file and the problem: a missing or
 * malformed world piece, an unknown task, a generation the engine refused.
 */
ramole_status ramole_eval_run(const ramole_eval_params *p, ramole_eval_report **out);
void ramole_eval_report_free(ramole_eval_report *r);
/* Bits of the modes and settings that ran (never 0). */
unsigned ramole_eval_report_modes(const ramole_eval_report *r);
unsigned ramole_eval_report_settings(const ramole_eval_report *r);
/* Mean score over the evaluated tasks in `cluster` (NULL: all), as a
 * fraction; NAN when none ran. */
double ramole_eval_mean(const ramole_eval_report *r, const char *cluster, ramole_eval_setting s, ramole_eval_mode m);
/* The docs/EVAL.md-style report at md_path, with SVG charts in its folder's
 * eval/; `command` is printed as the command that made it. Atomic writes;
 * errors name the file. */
ramole_status ramole_eval_write_markdown(const ramole_eval_report *r, const char *md_path, const char *command);
/* Every per-task score and generation as JSON at path. */
ramole_status ramole_eval_write_json(const ramole_eval_report *r, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_EVAL_H */
