/*
 * run_all.c — a list of requests through the engine to the end, results
 * collected per request (see rm_engine_run_all in engine.h).
 *
 * Loader threads, one per thread of the engine's pool, walk the list
 * ahead of submission and preload each request's adapters
 * (rm_engine_preload), so that reading and converting adapter files
 * overlaps the steps instead of stalling them; at a cold start the steps
 * wait for them, so they use every core. They stay at most `ahead`
 * requests in front of the runner, which bounds the adapters they pin.
 * The runner submits in order and only what is loaded. While the next
 * request is still loading, it steps what runs only if that fills every
 * slot; otherwise it waits for the loaders. Stepping a part-empty
 * batch would read every weight for a few tokens, and requests trickling
 * in as their adapters load would run in small batches to the end: on a
 * cold start of 64 adapters that halved the throughput of the batch.
 */
#include "engine/engine.h"

#include <pthread.h>
#include <string.h>

typedef struct {
    rm_engine *e;
    const rm_engine_request *const *reqs;
    int n, ahead;
    rm_engine_hold **holds;   /* [n] */
    bool *done;               /* [n] request i is preloaded (or failed: submit reports it) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int taken;                /* reqs[0..taken) were taken by a loader thread */
    int loaded;               /* reqs[0..loaded) are preloaded */
    int submitted;            /* reqs[0..submitted) were handed to submit */
    bool stop;
} loader;

/* Each thread takes the next request in order; requests finish loading
 * out of order, and `loaded` is the prefix that is all done. */
static void *loader_main(void *arg) {
    loader *L = arg;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (!L->stop && L->taken < L->n && L->taken >= L->submitted + L->ahead) pthread_cond_wait(&L->cv, &L->mu);
        if (L->stop || L->taken >= L->n) break;
        int i = L->taken++;
        pthread_mutex_unlock(&L->mu);
        rm_engine_hold *h = NULL;
        if (L->reqs[i] && rm_engine_preload(L->e, L->reqs[i], &h) != RAMOLE_OK) h = NULL;
        pthread_mutex_lock(&L->mu);
        L->holds[i] = h;
        L->done[i] = true;
        while (L->loaded < L->n && L->done[L->loaded]) L->loaded++;
        pthread_cond_broadcast(&L->cv);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* Is request i loaded? With `wait`, block until it is. */
static bool loader_ready(loader *L, int i, bool wait) {
    pthread_mutex_lock(&L->mu);
    while (wait && L->loaded <= i) pthread_cond_wait(&L->cv, &L->mu);
    bool ready = L->loaded > i;
    pthread_mutex_unlock(&L->mu);
    return ready;
}

/* Request i went to submit: its hold can go (the request holds its own). */
static void loader_submitted(loader *L, int i) {
    pthread_mutex_lock(&L->mu);
    rm_engine_hold *h = L->holds[i];
    L->holds[i] = NULL;
    L->submitted = i + 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    rm_engine_hold_free(L->e, h);
}

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
    if (rm_logprob_list_push(&r->logprobs, ev) != RAMOLE_OK) c->failed = true;
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
    rm_logprob_list_free(&r->logprobs);
    rm_free(r->error);
    memset(r, 0, sizeof *r);
}

rm_status rm_engine_run_all(rm_engine *e, const rm_engine_request *const *reqs, int n, int ahead,
                            rm_engine_result *results, rm_engine_progress_fn progress, void *user) {
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    if (ahead <= 0) ahead = 2 * rm_engine_max_seqs(e);
    collector *cols = rm_calloc(n > 0 ? (size_t)n : 1, sizeof *cols);
    loader L = {.e = e, .reqs = reqs, .n = n, .ahead = ahead};
    L.holds = rm_calloc(n > 0 ? (size_t)n : 1, sizeof *L.holds);
    L.done = rm_calloc(n > 0 ? (size_t)n : 1, sizeof *L.done);
    if (!cols || !L.holds || !L.done) {
        rm_free(cols);
        rm_free(L.holds);
        rm_free(L.done);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&L.mu, NULL);
    pthread_cond_init(&L.cv, NULL);
    enum { MAX_LOADERS = 16 };
    pthread_t loaders[MAX_LOADERS];
    int n_loaders = 0, want = rm_pool_size(rm_engine_pool(e));
    if (want > MAX_LOADERS) want = MAX_LOADERS;
    while (n_loaders < (want > 0 ? want : 1) && pthread_create(&loaders[n_loaders], NULL, loader_main, &L) == 0)
        n_loaders++;
    bool threaded = n_loaders > 0;
    memset(results, 0, (size_t)n * sizeof *results);
    int done = 0, next = 0, n_run;
    int64_t tokens0 = st.tokens_generated;
    double t0 = rm_time_now();
    rm_status status = RAMOLE_OK;
    while (done < n) {
        /* 1. Keep the queue topped up: enough waiting requests to fill
         *    every slot that frees this step, not the whole list. Only
         *    loaded requests go in, in order; while the batch has free
         *    slots, wait for the loader rather than step a part-empty batch. */
        rm_engine_stats_get(e, &st);
        while (next < n && st.waiting < ahead) {
            int i = next;
            bool full = st.running + st.waiting >= rm_engine_max_seqs(e);
            if (threaded && !loader_ready(&L, i, !full)) break;
            next++;
            if (!reqs[i]) {
                if (threaded) loader_submitted(&L, i);
                done++;
                continue;
            }
            rm_engine_request q = *reqs[i];
            cols[i].res = &results[i];
            cols[i].done = &done;
            q.on_event = on_event;
            q.user = &cols[i];
            int64_t id;
            rm_status sst = rm_engine_submit(e, &q, &id);
            if (threaded) loader_submitted(&L, i);
            if (sst != RAMOLE_OK) {
                results[i].finish = RM_FINISH_NONE;
                results[i].error = rm_strdup(ramole_last_error());
                done++;
                continue;
            }
            st.waiting++;
        }
        if (done >= n) break; /* the last ones were refused at submit */
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
    if (threaded) {
        pthread_mutex_lock(&L.mu);
        L.stop = true;
        pthread_cond_broadcast(&L.cv);
        pthread_mutex_unlock(&L.mu);
        for (int t = 0; t < n_loaders; t++) pthread_join(loaders[t], NULL);
    }
    for (int i = 0; i < n; i++) rm_engine_hold_free(e, L.holds[i]);
    pthread_mutex_destroy(&L.mu);
    pthread_cond_destroy(&L.cv);
    rm_free(L.holds);
    rm_free(L.done);
    rm_free(cols);
    return status;
}
