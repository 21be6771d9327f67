/*
 * metrics.c — the server's counters and latency histograms, and their
 * Prometheus text (GET /metrics). One lock: these are touched a few times
 * per token, far below the cost of a step.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_internal.h"

/* Upper bounds in seconds, shared by every histogram. */
static const double bounds[SRV_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                0.25,  0.5,    1,     2.5,  5,     10,  30};
static const char *hist_name[SRV_H_COUNT] = {"ramole_time_to_first_token_seconds", "ramole_inter_token_latency_seconds",
                                             "ramole_request_latency_seconds", "ramole_retrieval_latency_seconds"};

void srv_metrics_init(srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void srv_metrics_destroy(srv_metrics *m) { pthread_mutex_destroy(&m->mu); }

void srv_metrics_request(srv_metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && (m->req[i].status != status || strcmp(m->req[i].route, route))) i++;
    if (i == m->n_req && i < SRV_ROUTES_MAX) {
        snprintf(m->req[i].route, sizeof m->req[i].route, "%s", route);
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_observe(srv_metrics *m, srv_hist_id id, double s) {
    pthread_mutex_lock(&m->mu);
    srv_hist *h = &m->h[id];
    int b = 0;
    while (b < SRV_HIST_BUCKETS && s > bounds[b]) b++;
    h->count[b]++;
    h->sum += s;
    h->n++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_tokens(srv_metrics *m, int in, int out) {
    pthread_mutex_lock(&m->mu);
    m->tokens_in += (uint64_t)in;
    m->tokens_out += (uint64_t)out;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_step(srv_metrics *m, int sequences, int adapters) {
    pthread_mutex_lock(&m->mu);
    if (sequences > m->step_sequences_max) m->step_sequences_max = sequences;
    if (adapters > m->step_adapters_max) m->step_adapters_max = adapters;
    pthread_mutex_unlock(&m->mu);
}

#define put rm_text_printf

/* A label value with \\ and " escaped, as Prometheus reads them. */
static void put_label(rm_text *b, const char *v) {
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') put(b, "\\%c", *v);
        else if (*v == '\n') put(b, "\\n");
        else put(b, "%c", *v);
    }
}

/* A counter with its help line. */
static void counter(rm_text *b, const char *name, const char *help, int64_t v) {
    put(b, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", name, help, name, name, (long long)v);
}

char *srv_metrics_text(srv_metrics *m, const rm_engine_stats *es, int queued, const rm_reg_rating *ratings,
                       int n_ratings) {
    rm_text b = {0};
    pthread_mutex_lock(&m->mu);
    put(&b, "# HELP ramole_requests_total HTTP requests by route and status.\n# TYPE ramole_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++)
        put(&b, "ramole_requests_total{route=\"%s\",status=\"%d\"} %llu\n", m->req[i].route, m->req[i].status,
            (unsigned long long)m->req[i].n);
    put(&b, "# TYPE ramole_prompt_tokens_total counter\nramole_prompt_tokens_total %llu\n",
        (unsigned long long)m->tokens_in);
    put(&b, "# TYPE ramole_generated_tokens_total counter\nramole_generated_tokens_total %llu\n",
        (unsigned long long)m->tokens_out);
    for (int h = 0; h < SRV_H_COUNT; h++) {
        const srv_hist *x = &m->h[h];
        put(&b, "# TYPE %s histogram\n", hist_name[h]);
        uint64_t cum = 0;
        for (int i = 0; i < SRV_HIST_BUCKETS; i++) {
            cum += x->count[i];
            put(&b, "%s_bucket{le=\"%g\"} %llu\n", hist_name[h], bounds[i], (unsigned long long)cum);
        }
        cum += x->count[SRV_HIST_BUCKETS];
        put(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hist_name[h], (unsigned long long)cum,
            hist_name[h], x->sum, hist_name[h], (unsigned long long)x->n);
    }
    put(&b, "# HELP ramole_step_sequences_max The most sequences one engine step gave a token to.\n"
            "# TYPE ramole_step_sequences_max gauge\nramole_step_sequences_max %d\n", m->step_sequences_max);
    put(&b, "# HELP ramole_step_adapters_max The most distinct adapters (experts and routers) in one engine step.\n"
            "# TYPE ramole_step_adapters_max gauge\nramole_step_adapters_max %d\n", m->step_adapters_max);
    pthread_mutex_unlock(&m->mu);
    put(&b, "# TYPE ramole_queue_length gauge\nramole_queue_length %d\n", queued);
    put(&b, "# TYPE ramole_running_sequences gauge\nramole_running_sequences %d\n", es->running);
    put(&b, "# TYPE ramole_kv_blocks_used gauge\nramole_kv_blocks_used %d\n", es->kv_blocks_used);
    put(&b, "# TYPE ramole_kv_blocks_total gauge\nramole_kv_blocks_total %d\n", es->kv_blocks_total);
    put(&b, "# TYPE ramole_step_adapters gauge\nramole_step_adapters %d\n", es->last_step_adapters);
    put(&b, "# TYPE ramole_adapter_cache_hits_total counter\nramole_adapter_cache_hits_total %llu\n",
        (unsigned long long)es->adapters.hits);
    put(&b, "# TYPE ramole_adapter_cache_misses_total counter\nramole_adapter_cache_misses_total %llu\n",
        (unsigned long long)es->adapters.misses);
    put(&b, "# HELP ramole_feedback_total Ratings of responses by adapter (\"\": the base alone).\n"
            "# TYPE ramole_feedback_total counter\n");
    for (int i = 0; i < n_ratings; i++)
        for (int up = 1; up >= 0; up--) {
            put(&b, "ramole_feedback_total{adapter=\"");
            put_label(&b, ratings[i].adapter);
            put(&b, "\",hash=\"%.12s\",rating=\"%s\"} %lld\n", ratings[i].hash, up ? "up" : "down",
                (long long)(up ? ratings[i].up : ratings[i].down));
        }
    put(&b, "# TYPE ramole_preemptions_total counter\nramole_preemptions_total %d\n", es->preemptions);
    counter(&b, "ramole_embed_prefix_hits_total", "Retrieval embeddings that started after the kept instruction.",
            es->prefix_hits);
    counter(&b, "ramole_embed_prefix_tokens_total", "Instruction tokens those embeddings did not feed.",
            es->prefix_tokens);
    counter(&b, "ramole_twin_prompts_total", "Generations that copied the prompt of a twin (another sample of it).",
            es->twin_hits);
    counter(&b, "ramole_twin_prompt_tokens_total", "Prompt tokens those generations did not feed.", es->twin_tokens);
    counter(&b, "ramole_prefix_cache_hits_total",
            "Generations that started after rows kept of an earlier request that began the same way.",
            es->prefix_cache_hits);
    counter(&b, "ramole_prefix_cache_tokens_total", "Prompt tokens those generations did not feed.",
            es->prefix_cache_tokens);
    put(&b, "# HELP ramole_prefix_cache_bytes Bytes of KV rows the prefix cache keeps.\n"
            "# TYPE ramole_prefix_cache_bytes gauge\nramole_prefix_cache_bytes %zu\n", es->prefix_cache_bytes);
    if (b.failed) {
        rm_free(b.s);
        return NULL;
    }
    return b.s;
}
