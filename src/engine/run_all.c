/*
 * run_all.c — a list of requests through the engine to the end, results
 * collected per request (see rm_engine_run_all in engine.h).
 */
#include "engine/engine.h"

#include <string.h>

typedef struct {
    rm_engine_result *res;
    size_t cap_text;
    int cap_tokens;
    bool failed;      /* out of memory while collecting */
    int *done;
} collector;

static void grow_append(collector *c, const rm_engine_event *ev) {
    rm_engine_result *r = c->res;
    if (r->len + ev->len + 1 > c->cap_text) {
        size_t cap = c->cap_text ? c->cap_text : 64;
        while (cap < r->len + ev->len + 1) cap *= 2;
        char *t = rm_realloc(r->text, cap);
        if (!t) {
            c->failed = true;
            return;
        }
        r->text = t;
        c->cap_text = cap;
    }
    memcpy(r->text + r->len, ev->text, ev->len);
    r->len += ev->len;
    r->text[r->len] = 0;
    if (ev->token < 0) return;
    if (r->n_tokens == c->cap_tokens) {
        int cap = c->cap_tokens ? 2 * c->cap_tokens : 16;
        int32_t *t = rm_realloc(r->tokens, (size_t)cap * sizeof *t);
        if (!t) {
            c->failed = true;
            return;
        }
        r->tokens = t;
        c->cap_tokens = cap;
    }
    r->tokens[r->n_tokens++] = ev->token;
}

static void on_event(const rm_engine_event *ev, void *user) {
    collector *c = user;
    grow_append(c, ev);
    c->res->n_prompt = ev->n_prompt;
    if (ev->finish == RM_FINISH_NONE) return;
    c->res->finish = c->failed ? RM_FINISH_ERROR : ev->finish;
    const char *err = c->failed ? "out of memory collecting the result" : ev->error;
    if (err) c->res->error = rm_strdup(err);
    (*c->done)++;
}

void rm_engine_result_free(rm_engine_result *r) {
    if (!r) return;
    rm_free(r->text);
    rm_free(r->tokens);
    rm_free(r->error);
    memset(r, 0, sizeof *r);
}

rm_status rm_engine_run_all(rm_engine *e, const rm_engine_request *const *reqs, int n, int ahead,
                            rm_engine_result *results, rm_engine_progress_fn progress, void *user) {
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    collector *cols = rm_calloc(n > 0 ? (size_t)n : 1, sizeof *cols);
    if (!cols) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    memset(results, 0, (size_t)n * sizeof *results);
    int done = 0, next = 0, n_run;
    int64_t tokens0 = st.tokens_generated;
    double t0 = rm_time_now();
    rm_status status = RAMOLE_OK;
    if (ahead <= 0) ahead = 2 * rm_engine_max_seqs(e);
    while (done < n) {
        /* 1. Keep the queue topped up: enough waiting requests to fill
         *    every slot that frees this step, not the whole list. */
        rm_engine_stats_get(e, &st);
        while (next < n && st.waiting < ahead) {
            int i = next++;
            if (!reqs[i]) {
                done++;
                continue;
            }
            rm_engine_request q = *reqs[i];
            cols[i].res = &results[i];
            cols[i].done = &done;
            q.on_event = on_event;
            q.user = &cols[i];
            int64_t id;
            if (rm_engine_submit(e, &q, &id) != RAMOLE_OK) {
                results[i].finish = RM_FINISH_NONE;
                results[i].error = rm_strdup(ramole_last_error());
                done++;
                continue;
            }
            st.waiting++;
        }
        if (!rm_engine_pending(e)) {
            if (next < n) continue;
            status = rm_err(RAMOLE_ERR_INTERNAL, "engine: %d requests never reported a finish", n - done);
            break;
        }
        /* 2. One step of everything in flight. */
        if ((status = rm_engine_step(e, &n_run)) != RAMOLE_OK) break;
        if (progress) {
            rm_engine_stats_get(e, &st);
            progress(done, n, st.tokens_generated - tokens0, rm_time_now() - t0, user);
        }
    }
    rm_free(cols);
    return status;
}
