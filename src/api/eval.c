/*
 * eval.c — include/ramole/eval.h over src/eval. The public report is the
 * internal one behind an opaque name; the enums share their values.
 */
#include "eval/eval.h"

_Static_assert((int)RAMOLE_EVAL_MODE_COUNT == (int)RM_EVAL_MODE_COUNT &&
                   (int)RAMOLE_EVAL_ROUTER == (int)RM_EVAL_ROUTER &&
                   (int)RAMOLE_EVAL_SETTING_COUNT == (int)RM_EVAL_SETTING_COUNT,
               "public and internal evaluation enums must agree");
_Static_assert(sizeof(ramole_eval_progress) == sizeof(rm_eval_progress) &&
                   offsetof(ramole_eval_progress, seconds) == offsetof(rm_eval_progress, seconds),
               "ramole_eval_progress and rm_eval_progress must share their layout");

struct ramole_eval_report {
    rm_eval_report *r;
};

const char *ramole_eval_mode_name(ramole_eval_mode m) { return rm_eval_mode_name((rm_eval_mode)m); }
const char *ramole_eval_setting_name(ramole_eval_setting s) { return rm_eval_setting_name((rm_eval_setting)s); }

int ramole_eval_mode_from_name(const char *s, ramole_eval_mode *out) {
    rm_eval_mode m;
    if (!rm_eval_mode_from_name(s, &m)) return 0;
    *out = (ramole_eval_mode)m;
    return 1;
}

int ramole_eval_setting_from_name(const char *s, ramole_eval_setting *out) {
    rm_eval_setting v;
    if (!rm_eval_setting_from_name(s, &v)) return 0;
    *out = (ramole_eval_setting)v;
    return 1;
}

typedef struct {
    ramole_eval_progress_fn fn;
    void *user;
} progress_relay;

static void relay_progress(const rm_eval_progress *p, void *user) {
    const progress_relay *r = user;
    r->fn((const ramole_eval_progress *)p, r->user); /* one layout, checked above */
}

ramole_status ramole_eval_run(const ramole_eval_params *pp, ramole_eval_report **out) {
    *out = NULL;
    ramole_eval_report *pr = rm_calloc(1, sizeof *pr);
    if (!pr) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    progress_relay relay = {pp->progress, pp->user};
    rm_eval_params p = {.world = pp->world, .router = pp->router, .modes = pp->modes, .settings = pp->settings, .tasks = pp->tasks,
                        .n_tasks = pp->n_tasks, .limit = pp->limit, .n_threads = pp->n_threads,
                        .max_seqs = pp->max_seqs, .prefix_cache_mib = pp->prefix_cache_mib, .progress = pp->progress ? relay_progress : NULL,
                        .user = &relay};
    rm_status st = rm_eval_run(&p, &pr->r);
    if (st != RAMOLE_OK) {
        rm_free(pr);
        return st;
    }
    *out = pr;
    return RAMOLE_OK;
}

void ramole_eval_report_free(ramole_eval_report *r) {
    if (!r) return;
    rm_eval_report_free(r->r);
    rm_free(r);
}

unsigned ramole_eval_report_modes(const ramole_eval_report *r) { return r->r->modes; }
unsigned ramole_eval_report_settings(const ramole_eval_report *r) { return r->r->settings; }

double ramole_eval_mean(const ramole_eval_report *r, const char *cluster, ramole_eval_setting s, ramole_eval_mode m) {
    return rm_eval_mean(r->r, cluster, (rm_eval_setting)s, (rm_eval_mode)m);
}

ramole_status ramole_eval_write_markdown(const ramole_eval_report *r, const char *md_path, const char *command) {
    return rm_eval_write_markdown(r->r, md_path, command);
}

ramole_status ramole_eval_write_json(const ramole_eval_report *r, const char *path) {
    return rm_eval_write_json(r->r, path);
}
