/*
 * sched.c — the scheduler thread: the only thread that touches the engine.
 *
 * Connection threads push requests onto a queue and cancellations onto a
 * list, both under the scheduler's lock. Between steps the scheduler takes
 * both, submits and cancels, runs one step, and goes back; with nothing
 * pending it sleeps on its condition variable. Events land in the
 * request's own buffer under the request's lock, and wake the connection
 * thread that waits on it.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include "serve/serve_internal.h"

srv_req *srv_req_new(void) {
    srv_req *r = rm_calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    rm_engine_request_init(&r->spec.req);
    return r;
}

void srv_req_release(srv_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    rm_request_spec_free(&r->spec);
    rm_free(r->error);
    rm_free(r->text);
    rm_logprob_list_free(&r->lps);
    rm_logprob_list_free(&r->plps);
    rm_free(r->hidden);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    rm_free(r);
}

static bool append(srv_req *r, const char *s, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1) cap *= 2;
        char *t = rm_realloc(r->text, cap);
        if (!t) return false;
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
    return true;
}

bool srv_req_keep(srv_req *r, const rm_engine_event *ev) {
    bool was_lost = r->lost;
    if (!r->lost) { /* once lost, nothing more is worth keeping */
        bool ok = !ev->len || append(r, ev->text, ev->len);
        ok = ok && rm_logprob_list_push(&r->lps, ev) == RAMOLE_OK;
        ok = ok && (!ev->prompt_logprobs || r->plps.n || rm_logprob_list_copy(&r->plps, ev->prompt_logprobs) == RAMOLE_OK);
        r->lost = !ok;
    }
    r->n_prompt = ev->n_prompt;
    r->n_prompt_cached = ev->n_prompt_cached;
    r->n_generated = ev->n_generated;
    if (ev->finish == RM_FINISH_NONE) return r->lost && !was_lost;
    if (ev->hidden && !r->lost) {
        if ((r->hidden = rm_malloc((size_t)ev->n_hidden * sizeof *r->hidden))) {
            memcpy(r->hidden, ev->hidden, (size_t)ev->n_hidden * sizeof *r->hidden);
            r->n_hidden = ev->n_hidden;
        } else
            r->lost = true;
    }
    r->finish = ev->finish;
    r->n_gates = ev->n_gates;
    for (int j = 0; j < ev->n_gates && j < RM_LORA_MAX_K; j++) r->gates[j] = ev->gates[j];
    if (r->lost) r->finish = RM_FINISH_ERROR; /* srv_req_error says why, without memory */
    else if (ev->error) r->error = rm_strdup(ev->error);
    r->state = SRV_DONE;
    return false; /* finished: nothing to cancel */
}

const char *srv_req_error(const srv_req *r) { return r->lost ? SRV_LOST_MESSAGE : r->error; }

/* Ask the scheduler to cancel engine request id between steps; with no
 * room for it in the list, the request runs to its end. */
static void cancel_push(srv_sched *s, int64_t id) {
    pthread_mutex_lock(&s->mu);
    if (s->n_cancels == s->cap_cancels) {
        int cap = s->cap_cancels ? 2 * s->cap_cancels : 16;
        int64_t *t = rm_realloc(s->cancels, (size_t)cap * sizeof *t);
        if (t) s->cancels = t, s->cap_cancels = cap;
    }
    if (s->n_cancels < s->cap_cancels) s->cancels[s->n_cancels++] = id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The engine's callback, on the scheduler thread inside step/cancel. */
static void on_event(const rm_engine_event *ev, void *user) {
    srv_req *r = user;
    double now = rm_time_now();
    pthread_mutex_lock(&r->mu);
    srv_sched *s = r->sched;
    bool lost_now = srv_req_keep(r, ev);
    if (ev->token >= 0) {
        s->step_sampled++;
        if (!r->t_first) {
            r->t_first = now;
            srv_metrics_observe(s->metrics, SRV_H_TTFT, now - r->t_submit);
        } else
            srv_metrics_observe(s->metrics, SRV_H_ITL, now - r->t_last);
        r->t_last = now;
    }
    bool done = ev->finish != RM_FINISH_NONE;
    bool embed = r->spec.req.embed;
    int64_t id = r->id;
    if (done) {
        if (embed) s->step_embedded++;
        if (!embed) { /* a generation's figures; its embedding counts under retrieval */
            srv_metrics_tokens(s->metrics, ev->n_prompt, ev->n_generated);
            srv_metrics_observe(s->metrics, SRV_H_REQUEST, now - r->t_submit);
        }
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (lost_now) cancel_push(s, id); /* it would generate what no one can keep */
    if (done) {
        pthread_mutex_lock(&s->mu);
        s->in_flight--;
        pthread_mutex_unlock(&s->mu);
        srv_req_release(r);
    }
}

static void submit_one(srv_sched *s, srv_req *r) {
    pthread_mutex_lock(&r->mu);
    bool gone = r->cancel;
    pthread_mutex_unlock(&r->mu);
    rm_status st = RAMOLE_ERR_INVALID;
    int64_t id = -1;
    if (!gone) {
        r->spec.req.on_event = on_event;
        r->spec.req.user = r;
        r->sched = s;
        st = rm_engine_submit(s->engine, &r->spec.req, &id);
    }
    pthread_mutex_lock(&r->mu);
    if (st == RAMOLE_OK) {
        r->state = SRV_RUNNING;
        r->id = id;
    } else {
        r->state = SRV_REFUSED;
        r->refused = st;
        r->error = rm_strdup(gone ? "the client went away" : ramole_last_error());
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (st != RAMOLE_OK) {
        pthread_mutex_lock(&s->mu);
        s->in_flight--;
        pthread_mutex_unlock(&s->mu);
        srv_req_release(r);
    }
}

/* How long the scheduler waits for the generations that follow the
 * embeddings a step finished: a connection thread ranks the pool and
 * pushes its routed request within a millisecond or two of waking. */
#define FOLLOW_UP_MS 10

/* Wait until `n` requests were pushed after `p0`, at most FOLLOW_UP_MS
 * (an upload's or a /v1/retrieve's embedding has no follow-up). */
static void wait_follow_ups(srv_sched *s, int64_t p0, int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += FOLLOW_UP_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (!s->quit && s->n_pushed - p0 < n)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) break;
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg) {
    srv_sched *s = arg;
    int64_t *cancels = NULL;
    int cap = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->quit && !s->head && !s->n_cancels && !s->cancel_all && !rm_engine_pending(s->engine))
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit && !s->head && !rm_engine_pending(s->engine)) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        srv_req *list = s->head;
        s->head = s->tail = NULL;
        s->n_queued = 0;
        int nc = s->n_cancels;
        if (nc > cap) {
            int64_t *t = rm_realloc(cancels, (size_t)nc * sizeof *t);
            if (t) cancels = t, cap = nc;
            else nc = cap;
        }
        if (nc) memcpy(cancels, s->cancels, (size_t)nc * sizeof *cancels);
        s->n_cancels -= nc;
        if (s->n_cancels) memmove(s->cancels, s->cancels + nc, (size_t)s->n_cancels * sizeof *cancels);
        bool all = s->cancel_all;
        s->cancel_all = false;
        pthread_mutex_unlock(&s->mu);

        while (list) {
            srv_req *next = list->next;
            list->next = NULL;
            submit_one(s, list);
            list = next;
        }
        for (int i = 0; i < nc; i++) rm_engine_cancel(s->engine, cancels[i]);
        if (all) rm_engine_cancel_all(s->engine);
        bool stepped = false;
        s->step_embedded = 0;
        if (rm_engine_pending(s->engine)) {
            int n_run = 0;
            s->step_sampled = 0;
            rm_status st = rm_engine_step(s->engine, &n_run);
            if (st != RAMOLE_OK) rm_log_error("serve: step failed: %s", ramole_last_error());
            stepped = n_run > 0;
        }
        rm_engine_stats es;
        rm_engine_stats_get(s->engine, &es);
        if (stepped) srv_metrics_step(s->metrics, s->step_sampled, es.last_step_adapters);
        pthread_mutex_lock(&s->mu);
        s->stats = es;
        int64_t pushed = s->n_pushed;
        pthread_mutex_unlock(&s->mu);
        /* Retrievals whose embeddings this step finished push their routed
         * generations in a moment: waiting for them lets those join the
         * next step instead of the one after, a whole step later. */
        if (s->step_embedded) wait_follow_ups(s, pushed, s->step_embedded);
    }
    rm_free(cancels);
    return NULL;
}

rm_status srv_sched_start(srv_sched *s, rm_engine *e, srv_metrics *m) {
    memset(s, 0, sizeof *s);
    s->engine = e;
    s->metrics = m;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    rm_engine_stats_get(e, &s->stats);
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0)
        return rm_err(RAMOLE_ERR_INTERNAL, "cannot start the scheduler thread");
    s->started = true;
    return RAMOLE_OK;
}

bool srv_sched_push(srv_sched *s, srv_req *r, int limit) {
    pthread_mutex_lock(&s->mu);
    if (s->in_flight >= limit || s->quit) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    s->in_flight++;
    pthread_mutex_lock(&r->mu);
    r->refs++;
    r->t_submit = rm_time_now();
    pthread_mutex_unlock(&r->mu);
    r->next = NULL;
    if (s->tail) s->tail->next = r;
    else s->head = r;
    s->tail = r;
    s->n_pushed++;
    s->n_queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

void srv_sched_cancel(srv_sched *s, srv_req *r) {
    pthread_mutex_lock(&r->mu);
    r->cancel = true;
    bool running = r->state == SRV_RUNNING;
    int64_t id = r->id;
    pthread_mutex_unlock(&r->mu);
    if (!running) return; /* queued: submit_one sees the flag; done: nothing to do */
    cancel_push(s, id);
}

void srv_sched_cancel_all(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->cancel_all = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int srv_sched_in_flight(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->in_flight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int srv_sched_queued(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_queued + s->stats.waiting;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void srv_sched_stats(srv_sched *s, rm_engine_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

void srv_sched_stop(srv_sched *s) {
    if (!s->started) return;
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->started = false;
    rm_free(s->cancels);
    s->cancels = NULL;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

rm_status srv_sched_embed(void *user, int n, const int32_t *const *tokens, const int *n_tokens, const int *from,
                          const int *shared, int layer, float *out) {
    srv_sched *s = user;
    if (n <= 0) return RAMOLE_OK;
    if (!s->started) return rm_err(RAMOLE_ERR_INVALID, "embedding: the server's scheduler is not running");
    srv_req **rs = rm_calloc((size_t)n, sizeof *rs);
    if (!rs) return rm_err(RAMOLE_ERR_NOMEM, "embedding: out of memory");
    rm_status st = RAMOLE_OK;
    int pushed = 0;
    for (int i = 0; i < n && st == RAMOLE_OK; i++) {
        srv_req *r = rs[i] = srv_req_new();
        if (!r) {
            st = rm_err(RAMOLE_ERR_NOMEM, "embedding: out of memory");
            break;
        }
        r->spec.req.tokens = tokens[i]; /* borrowed: the engine copies them at submit, and we wait */
        r->spec.req.n_tokens = n_tokens[i];
        r->spec.req.embed = true;
        r->spec.req.embed_layer = layer;
        r->spec.req.embed_from = from[i];
        r->spec.req.embed_shared = shared[i];
        if (!srv_sched_push(s, r, INT_MAX)) st = rm_err(RAMOLE_ERR_INVALID, "embedding: the server is stopping");
        else pushed++;
    }
    int d = 0;
    for (int i = 0; i < pushed; i++) {
        srv_req *r = rs[i];
        pthread_mutex_lock(&r->mu);
        while (r->state == SRV_QUEUED || r->state == SRV_RUNNING) pthread_cond_wait(&r->cv, &r->mu);
        bool cancelled = r->state == SRV_DONE && r->finish == RM_FINISH_CANCELLED; /* the server is stopping */
        if (st != RAMOLE_OK) {
            /* an earlier text failed: only wait for the rest */
        } else if (r->state == SRV_REFUSED || !r->hidden) {
            st = rm_err(r->state == SRV_REFUSED ? r->refused : cancelled ? RAMOLE_ERR_INVALID : RAMOLE_ERR_INTERNAL,
                        "embedding: %s", srv_req_error(r) ? srv_req_error(r) : rm_finish_reason_name(r->finish));
        } else {
            if (!d) d = r->n_hidden;
            memcpy(out + (size_t)i * (size_t)d, r->hidden, (size_t)d * sizeof *out);
        }
        pthread_mutex_unlock(&r->mu);
    }
    for (int i = 0; i < n; i++) srv_req_release(rs[i]);
    rm_free(rs);
    return st;
}
