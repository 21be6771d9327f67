/*
 * test_engine.c — the engine against itself run one request at a time:
 * many requests with mixed modes and adapter sets batched together give
 * the tokens each gives alone, also when requests arrive mid-stream and
 * when a small KV pool forces preemption; the bookkeeping survives random
 * submit/cancel; an adapter dropped while in use finishes its requests and
 * is freed after; bad requests fail alone. Also the paged cache itself, the
 * adapter cache and the streaming text with stop strings.
 */
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/detok.h"
#include "engine/engine.h"
#include "model/kv_cache.h"
#include "retrieval/embed.h"
#include "test_util.h"

char *tokt_family_path(const char *family); /* test_tokenizer_golden.c */

static const unsigned ALL = (1u << RM_TARGET_COUNT) - 1;

static rm_model *engine_model_vocab(int vocab) {
    rm_model *m = rm_test_small_llama(vocab, 256);
    CHECK(m != NULL);
    return m;
}

static rm_model *engine_model(void) { return engine_model_vocab(96); }

/* Adapters made on demand by name: "eN" an expert of rank 4 + N % 3 * 4
 * with seed N, "router" a router of rank 8, "prouter" the same router
 * pooling its gates over the prompt; counts the loads. */
typedef struct {
    atomic_int loads;
    pthread_t driver;       /* with `watch`: loads on this thread are counted apart */
    bool watch;
    atomic_int driver_loads;
    int delay_us;           /* a slow disk */
} test_source;

static rm_status source_load(void *user, const rm_model *base, const char *name, rm_adapter **out) {
    test_source *ts = user;
    ts->loads++;
    if (ts->delay_us) usleep((useconds_t)ts->delay_us);
    if (ts->watch && pthread_equal(pthread_self(), ts->driver)) ts->driver_loads++;
    if (!strcmp(name, "router")) return rm_adapter_random(base, 8, 8.0f, ALL, 999, 0.3f, out);
    if (!strcmp(name, "prouter")) {
        RM_TRY(rm_adapter_random(base, 8, 8.0f, ALL, 999, 0.3f, out));
        (*out)->gate_pool = RM_GATE_POOL_PROMPT;
        return RAMOLE_OK;
    }
    if (!strcmp(name, "rrouter")) {
        RM_TRY(rm_adapter_random(base, 8, 8.0f, ALL, 999, 0.3f, out));
        (*out)->retrieval_prior = 6.0f;
        return RAMOLE_OK;
    }
    if (!strcmp(name, "big")) return rm_adapter_random(base, 48, 48.0f, ALL, 777, 0.1f, out);
    if (name[0] != 'e') return rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter called %s", name);
    int n = atoi(name + 1), rank = 4 + n % 3 * 4;
    return rm_adapter_random(base, rank, 2.0f * rank, ALL, 100 + (uint64_t)n, 0.25f, out);
}

typedef struct {
    int32_t toks[64];
    int n;
    rm_finish_reason fin;
    int events;
    float gates[RM_LORA_MAX_K]; /* a router request's mean gates, from its finish event */
    int n_gates, n_generated;
    int n_prompt_cached;        /* from its last event */
} collected;

static void collect(const rm_engine_event *ev, void *user) {
    collected *c = user;
    c->events++;
    c->n_prompt_cached = ev->n_prompt_cached;
    if (ev->token >= 0 && c->n < 64) c->toks[c->n++] = ev->token;
    if (ev->finish != RM_FINISH_NONE) {
        c->fin = ev->finish;
        c->n_gates = ev->n_gates;
        c->n_generated = ev->n_generated;
        for (int j = 0; j < ev->n_gates; j++) c->gates[j] = ev->gates[j];
    }
}

/* Request i of the mixed set: prompt, length and composition vary. */
static void mixed_request(int i, int32_t *prompt, rm_engine_request *q, char names[][8], collected *out) {
    static const rm_compose_mode modes[] = {RM_COMPOSE_NONE, RM_COMPOSE_EXPLICIT, RM_COMPOSE_SELECTION,
                                            RM_COMPOSE_MIXTURE, RM_COMPOSE_FUSION, RM_COMPOSE_ROUTER};
    rm_engine_request_init(q);
    int np = 2 + (i * 7) % 23;
    for (int t = 0; t < np; t++) prompt[t] = (int32_t)(1 + (i * 31 + t * 17) % 95);
    q->tokens = prompt;
    q->n_tokens = np;
    q->max_tokens = 4 + i % 9;
    q->ignore_eos = true;
    q->mode = modes[i % 6];
    if (q->mode != RM_COMPOSE_NONE) {
        q->n_adapters = 1 + i % 3;
        for (int j = 0; j < q->n_adapters; j++) {
            snprintf(names[j], 8, "e%d", (i + j * 3) % 8);
            q->adapters[j] = names[j];
            q->weights[j] = 0.5f + 0.25f * (float)j;
        }
    }
    if (q->mode == RM_COMPOSE_ROUTER) q->router = i % 12 == 11 ? "prouter" : "router";
    q->on_event = collect;
    q->user = out;
}

/* Submit mixed requests lo..hi-1 (prompt and names kept in the arrays). */
static void submit_mixed(rm_engine *e, int lo, int hi, int32_t prompts[][32], char names[][3][8], collected *out) {
    for (int i = lo; e && i < hi; i++) {
        rm_engine_request q;
        mixed_request(i, prompts[i], &q, names[i], &out[i]);
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
    }
}

/* prefix_cache_mib as rm_engine_params (0: the default; < 0: none) */
static rm_engine *new_engine_cache(const rm_model *m, test_source *ts, int max_seqs, int step, int kv_blocks,
                                   int prefix_cache_mib) {
    rm_engine_params p = {.n_threads = 2, .max_seqs = max_seqs, .n_ctx = 64, .step_tokens = step,
                          .kv_blocks = kv_blocks, .kv_block = 4, .max_adapters = 3, .max_rank = 12,
                          .prefix_cache_mib = prefix_cache_mib, .source = {source_load, ts}};
    rm_engine *e = NULL;
    CHECK_OK(rm_engine_new(m, &p, &e));
    return e;
}

static rm_engine *new_engine(const rm_model *m, test_source *ts, int max_seqs, int step, int kv_blocks) {
    return new_engine_cache(m, ts, max_seqs, step, kv_blocks, 0);
}

/* Step until idle, checking the bookkeeping after every step. */
static int drain(rm_engine *e) {
    int steps = 0, n;
    while (rm_engine_pending(e) && steps < 100000) {
        CHECK_OK(rm_engine_step(e, &n));
        CHECK_OK(rm_engine_check(e));
        steps++;
    }
    return steps;
}

#define N_MIXED 64

/* Each mixed request alone (one at a time through one engine). */
static void run_alone(const rm_model *m, collected *alone) {
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 1, 32, 0);
    if (!e) return;
    for (int i = 0; i < N_MIXED; i++) {
        int32_t prompt[32];
        char names[3][8];
        rm_engine_request q;
        mixed_request(i, prompt, &q, names, &alone[i]);
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
        drain(e);
    }
    rm_engine_free(e);
}

/* Tokens must match exactly; mean router gates to GATE_TOL. The LoRA
 * products are row-invariant, but the base's GEMM tiles depend on the
 * batch, so hidden states differ in their last bits between a batch and a
 * run alone, and the router's softmax amplifies that: request 5 of this
 * set moves by up to 3.3e-4 (a wrong row or gate moves by tenths). */
#define GATE_TOL 1e-3f

static void check_same(const collected *got, const collected *want, const char *what) {
    int bad = 0;
    for (int i = 0; i < N_MIXED; i++) {
        bool same = got[i].n == want[i].n && got[i].fin == want[i].fin &&
                    !memcmp(got[i].toks, want[i].toks, (size_t)want[i].n * sizeof(int32_t)) &&
                    got[i].n_gates == want[i].n_gates;
        for (int j = 0; same && j < want[i].n_gates; j++) same = fabsf(got[i].gates[j] - want[i].gates[j]) < GATE_TOL;
        if (!same && bad++ < 3)
            CHECK_MSG(0, "%s: request %d gave %d tokens (finish %s), alone %d (finish %s)", what, i, got[i].n,
                      rm_finish_reason_name(got[i].fin), want[i].n, rm_finish_reason_name(want[i].fin));
    }
    CHECK_MSG(!bad, "%s: %d of %d requests differ from their runs alone", what, bad, N_MIXED);
}

/* The router's mean gates reach the finish event of router requests only:
 * k weights, each in [0, 1], summing to 1; two copies of one expert get
 * half each (the router cannot tell them apart). */
TEST(engine_router_gates_in_finish_event) {
    rm_model *m = engine_model();
    test_source ts = {0};
    rm_engine *e = m ? new_engine(m, &ts, 4, 32, 0) : NULL;
    if (!e) {
        rm_model_free(m);
        return;
    }
    collected c[N_MIXED];
    memset(c, 0, sizeof c);
    int32_t prompts[N_MIXED][32];
    char names[N_MIXED][3][8];
    for (int i = 0; i < 12; i++) {
        rm_engine_request q;
        mixed_request(i, prompts[i], &q, names[i], &c[i]);
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
    }
    int32_t twin_prompt[] = {5, 9, 13, 2};
    collected twin = {0};
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.tokens = twin_prompt;
    q.n_tokens = 4;
    q.max_tokens = 6;
    q.ignore_eos = true;
    q.mode = RM_COMPOSE_ROUTER;
    q.router = "router";
    q.n_adapters = 2;
    q.adapters[0] = q.adapters[1] = "e1";
    q.on_event = collect;
    q.user = &twin;
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    drain(e);
    for (int i = 0; i < 12; i++) {
        bool router = i % 6 == 5;
        int k = 1 + i % 3;
        CHECK_MSG(c[i].n_gates == (router ? k : 0), "request %d: %d gates", i, c[i].n_gates);
        double sum = 0;
        for (int j = 0; j < c[i].n_gates; j++) {
            CHECK(c[i].gates[j] >= 0 && c[i].gates[j] <= 1);
            sum += c[i].gates[j];
        }
        if (router) CHECK_MSG(fabs(sum - 1) < 1e-4, "request %d: gates sum to %g", i, sum);
    }
    CHECK_MSG(twin.n_gates == 2 && fabsf(twin.gates[0] - 0.5f) < 1e-5f && fabsf(twin.gates[1] - 0.5f) < 1e-5f,
              "twin experts: %d gates %g %g", twin.n_gates, twin.gates[0], twin.gates[1]);
    rm_engine_free(e);
    rm_model_free(m);
}

TEST(engine_mixed_batch_equals_alone) {
    rm_model *m = engine_model();
    if (!m) return;
    static collected alone[N_MIXED], together[N_MIXED], arriving[N_MIXED];
    memset(alone, 0, sizeof alone);
    memset(together, 0, sizeof together);
    memset(arriving, 0, sizeof arriving);
    run_alone(m, alone);
    for (int i = 0; i < N_MIXED; i++) CHECK(alone[i].n == 4 + i % 9 && alone[i].fin == RM_FINISH_LENGTH);

    /* all 64 submitted at once: 16 run together, the rest wait for slots */
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 16, 48, 0);
    int32_t prompts[N_MIXED][32];
    char names[N_MIXED][3][8];
    submit_mixed(e, 0, N_MIXED, prompts, names, together);
    if (e) drain(e);
    check_same(together, alone, "submitted together");
    CHECK_MSG(ts.loads == 10, "10 distinct adapters loaded %d times", ts.loads);
    rm_engine_free(e);

    /* arriving while others decode: a few new requests every step */
    ts.loads = 0;
    e = new_engine(m, &ts, 16, 48, 0);
    int next = 0, n;
    rm_engine_stats st;
    int max_running = 0;
    while (e && (next < N_MIXED || rm_engine_pending(e))) {
        for (int k = 0; k < 3 && next < N_MIXED; k++, next++) {
            rm_engine_request q;
            mixed_request(next, prompts[next], &q, names[next], &arriving[next]);
            int64_t id;
            CHECK_OK(rm_engine_submit(e, &q, &id));
        }
        CHECK_OK(rm_engine_step(e, &n));
        CHECK_OK(rm_engine_check(e));
        rm_engine_stats_get(e, &st);
        if (st.running > max_running) max_running = st.running;
    }
    check_same(arriving, alone, "arriving mid-stream");
    CHECK_MSG(max_running >= 8, "at most %d requests ran at once", max_running);
    rm_engine_free(e);
    rm_model_free(m);
}

/*
 * Two router requests over `experts` (three, from the test source) through
 * one engine of 4 slots and steps of 4 tokens: the first, under routers[0]
 * with the retrieval scores (NULL: 0), beside six mixed requests (others);
 * then the second alone, under routers[1] and no scores.
 */
static void run_router_pair(rm_model *m, test_source *ts, const int32_t *prompt, int np, int n_new,
                            const char *const *experts, const char *const *routers, const float *scores,
                            collected got[2], collected others[6]) {
    memset(got, 0, 2 * sizeof *got);
    memset(others, 0, 6 * sizeof *others);
    rm_engine *e = new_engine(m, ts, 4, 4, 0);
    int32_t prompts[6][32];
    char names[6][3][8];
    for (int pass = 0; pass < 2 && e; pass++) {
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.tokens = prompt, q.n_tokens = np, q.max_tokens = n_new, q.ignore_eos = true;
        q.mode = RM_COMPOSE_ROUTER, q.n_adapters = 3, q.router = routers[pass];
        for (int j = 0; j < 3; j++) q.adapters[j] = experts[j], q.retrieval[j] = !pass && scores ? scores[j] : 0;
        q.on_event = collect, q.user = &got[pass];
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
        if (!pass) submit_mixed(e, 0, 6, prompts, names, others);
        drain(e);
    }
    rm_engine_free(e);
}

/*
 * The tokens of a direct decode under a router over `experts` (three,
 * from the test source): the prompt as one batch, its length the
 * composition's prompt length, with the experts' retrieval scores (NULL:
 * 0), then greedy tokens one at a time. Returns how many it made.
 */
static int direct_decode(const rm_model *m, test_source *ts, const char *const *experts, const char *router_name,
                         const float *retrieval, const int32_t *prompt, int np, int32_t *want, int n_new) {
    rm_adapter *ad[3] = {0}, *router = NULL;
    for (int j = 0; j < 3; j++) CHECK_OK(source_load(ts, m, experts[j], &ad[j]));
    CHECK_OK(source_load(ts, m, router_name, &router));
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    rm_ctx_params cp = {.n_ctx = 64, .n_seq = 1, .n_batch = np, .n_threads = 2};
    CHECK_OK(rm_lora_ctx_new(m, &cp, 3, 12, &ctx, &ls));
    rm_composition c = {.mode = RM_COMPOSE_ROUTER, .k = 3, .experts = {ad[0], ad[1], ad[2]}, .router = router,
                        .n_prompt = np};
    for (int j = 0; retrieval && j < 3; j++) c.retrieval[j] = retrieval[j];
    int32_t pos[64], seq[64] = {0};
    uint8_t wl[64] = {0};
    int n_want = 0;
    if (ctx && router && ad[2] && np <= 64 && rm_lora_set(ls, 0, &c) == RAMOLE_OK) {
        for (int t = 0; t < np; t++) pos[t] = t;
        wl[np - 1] = 1;
        rm_batch b = {np, prompt, pos, seq, wl};
        rm_status st = rm_ctx_decode(ctx, &b);
        for (; st == RAMOLE_OK && n_want < n_new; n_want++) {
            const float *l = rm_ctx_logits(ctx, 0);
            int32_t best = 0;
            for (int v = 1; v < m->cfg.vocab_size; v++) best = l[v] > l[best] ? v : best;
            want[n_want] = best;
            int32_t p1 = np + n_want;
            uint8_t w1 = 1;
            rm_batch one = {1, &want[n_want], &p1, seq, &w1};
            if (n_want + 1 < n_new) st = rm_ctx_decode(ctx, &one);
        }
        CHECK_OK(st);
    }
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    for (int j = 0; j < 3; j++) rm_adapter_free(ad[j]);
    rm_adapter_free(router);
    return n_want;
}

/*
 * A router that pools its gates over the prompt, through the engine (its
 * prompt cut in chunks of at most 4 tokens, beside other requests), gives
 * the tokens of a direct decode: the prompt as one batch with the
 * composition's prompt length set, then greedy tokens one at a time.
 */
TEST(engine_prompt_pooled_router_matches_a_direct_decode) {
    rm_model *m = engine_model();
    if (!m) return;
    enum { NP = 11, NEW = 8 };
    int32_t prompt[NP];
    for (int t = 0; t < NP; t++) prompt[t] = (int32_t)(3 + (t * 29) % 90);
    static const char *const experts[3] = {"e1", "e2", "e4"};
    static const char *const routers[2] = {"prouter", "router"};
    test_source ts = {0};
    collected runs[2];
    static collected others[6];
    run_router_pair(m, &ts, prompt, NP, NEW, experts, routers, NULL, runs, others);
    const collected got = runs[0], per_token = runs[1];
    int32_t want[NEW];
    int n_want = direct_decode(m, &ts, experts, "prouter", NULL, prompt, NP, want, NEW);
    CHECK_MSG(n_want == NEW && got.n == NEW && !memcmp(got.toks, want, sizeof want),
              "the engine's %d tokens differ from the direct decode's %d", got.n, n_want);
    CHECK(got.fin == RM_FINISH_LENGTH && got.n_gates == 3);
    CHECK_MSG(per_token.n == NEW && memcmp(per_token.toks, want, sizeof want),
              "the per-token router gives the pooled router's tokens: the test cannot tell them apart");
    for (int i = 0; i < 6; i++) CHECK(others[i].fin == RM_FINISH_LENGTH);
    rm_model_free(m);
}

/*
 * A router with a retrieval prior, through the engine beside other
 * requests: the request's retrieval scores reach the composition (the
 * tokens of a direct decode with those scores), and a request without
 * scores gets no prior (those of a direct decode with scores 0, which
 * differ).
 */
TEST(engine_retrieval_prior_router_matches_a_direct_decode) {
    rm_model *m = engine_model();
    if (!m) return;
    enum { NP = 9, NEW = 8 };
    int32_t prompt[NP];
    for (int t = 0; t < NP; t++) prompt[t] = (int32_t)(5 + (t * 31) % 80);
    static const char *const experts[3] = {"e1", "e2", "e4"};
    static const char *const routers[2] = {"rrouter", "rrouter"};
    static const float scores[3] = {-0.6f, 0.1f, 0.9f};
    test_source ts = {0};
    collected got[2];
    static collected others[6];
    run_router_pair(m, &ts, prompt, NP, NEW, experts, routers, scores, got, others);
    int32_t want[NEW], want0[NEW];
    int n_want = direct_decode(m, &ts, experts, "rrouter", scores, prompt, NP, want, NEW);
    int n_want0 = direct_decode(m, &ts, experts, "rrouter", NULL, prompt, NP, want0, NEW);
    CHECK_MSG(n_want == NEW && got[0].n == NEW && !memcmp(got[0].toks, want, sizeof want),
              "with scores: the engine's %d tokens differ from the direct decode's %d", got[0].n, n_want);
    CHECK_MSG(n_want0 == NEW && got[1].n == NEW && !memcmp(got[1].toks, want0, sizeof want0),
              "without scores: the engine's %d tokens differ from the direct decode's %d", got[1].n, n_want0);
    CHECK_MSG(memcmp(want, want0, sizeof want), "the retrieval prior changes no token: the test cannot tell");
    CHECK(got[0].n_gates == 3);
    for (int i = 0; i < 6; i++) CHECK(others[i].fin == RM_FINISH_LENGTH);
    rm_model_free(m);
}

/* A request's events with their log-probabilities. */
typedef struct {
    collected c;
    float lp[16];
    rm_token_logprob top[16][5];
    int n_top[16];
    rm_logprob_list list; /* the same, through the list a reply collects */
} collected_lp;

static void collect_lp(const rm_engine_event *ev, void *user) {
    collected_lp *c = user;
    int i = c->c.n;
    collect(ev, &c->c);
    if (ev->token < 0 || i >= 16) return;
    CHECK(ev->top != NULL);
    c->lp[i] = ev->logprob;
    c->n_top[i] = ev->n_top;
    for (int k = 0; ev->top && k < ev->n_top && k < 5; k++) c->top[i][k] = ev->top[k];
    CHECK_OK(rm_logprob_list_push(&c->list, ev));
}

/*
 * Log-probabilities through the engine, sampled at temperature 0.9 with
 * a mixture of two adapters beside six other requests, against a
 * teacher-forced direct decode of the same tokens under the same
 * composition: each token's log-softmax (in double) and the 5 most
 * likely tokens, raw (before temperature), in order.
 */
TEST(engine_logprobs_match_a_direct_decode) {
    rm_model *m = engine_model();
    if (!m) return;
    enum { NP = 7, NEW = 12, TOP = 5 };
    const int V = m->cfg.vocab_size;
    int32_t prompt[NP];
    for (int t = 0; t < NP; t++) prompt[t] = (int32_t)(3 + (t * 29) % 90);
    test_source ts = {0};
    static collected_lp got;
    static collected others[6];
    memset(&got, 0, sizeof got);
    rm_engine *e = new_engine(m, &ts, 4, 4, 0);
    int32_t prompts[6][32];
    char names[6][3][8];
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.tokens = prompt, q.n_tokens = NP, q.max_tokens = NEW, q.ignore_eos = true;
    q.sampling.temperature = 0.9f, q.sampling.top_k = 0, q.sampling.top_p = 1, q.sampling.min_p = 0, q.sampling.seed = 5;
    q.mode = RM_COMPOSE_MIXTURE, q.n_adapters = 2, q.adapters[0] = "e1", q.adapters[1] = "e5";
    q.logprobs = true, q.top_logprobs = TOP;
    q.on_event = collect_lp, q.user = &got;
    int64_t id;
    if (e) {
        CHECK_OK(rm_engine_submit(e, &q, &id));
        submit_mixed(e, 0, 6, prompts, names, others);
        drain(e);
        /* alternatives beyond the limit, or without logprobs, are refused */
        q.top_logprobs = RM_MAX_TOP_LOGPROBS + 1;
        CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_INVALID);
        q.logprobs = false, q.top_logprobs = 2;
        CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_INVALID);
    }
    rm_engine_free(e);
    CHECK(got.c.n == NEW && got.list.n == NEW && got.list.n_top == TOP);

    /* the reference: the prompt, then the engine's tokens one at a time */
    rm_adapter *a0 = NULL, *a1 = NULL;
    CHECK_OK(source_load(&ts, m, "e1", &a0));
    CHECK_OK(source_load(&ts, m, "e5", &a1));
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    rm_ctx_params cp = {.n_ctx = 64, .n_seq = 1, .n_batch = NP, .n_threads = 2};
    CHECK_OK(rm_lora_ctx_new(m, &cp, 3, 12, &ctx, &ls));
    rm_composition c = {.mode = RM_COMPOSE_MIXTURE, .k = 2, .experts = {a0, a1}, .n_prompt = NP};
    int32_t pos[NP], seq[NP] = {0};
    uint8_t wl[NP] = {0};
    int checked = 0, not_best = 0;
    double worst = 0;
    if (ctx && a0 && a1 && got.c.n == NEW && rm_lora_set(ls, 0, &c) == RAMOLE_OK) {
        for (int t = 0; t < NP; t++) pos[t] = t;
        wl[NP - 1] = 1;
        rm_batch b = {NP, prompt, pos, seq, wl};
        rm_status st = rm_ctx_decode(ctx, &b);
        for (int i = 0; st == RAMOLE_OK && i < NEW; i++) {
            const float *l = rm_ctx_logits(ctx, 0);
            double mx = l[0], sum = 0;
            for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
            double lse = mx + log(sum);
            int32_t tok = got.c.toks[i];
            worst = fmax(worst, fabs(got.lp[i] - (l[tok] - lse)));
            CHECK(got.list.ids[i] == tok && got.list.lp[i] == got.lp[i]);
            /* the top 5 by rank: nothing outside them is more likely, and they are in order */
            CHECK(got.n_top[i] == TOP);
            for (int k = 0; k < TOP; k++) {
                int32_t id_k = got.top[i][k].id;
                CHECK(got.list.top[i * TOP + k].id == id_k);
                worst = fmax(worst, fabs(got.top[i][k].logprob - (l[id_k] - lse)));
                if (k) CHECK(got.top[i][k].logprob <= got.top[i][k - 1].logprob);
            }
            int more = 0;
            for (int v = 0; v < V; v++) more += l[v] - lse > got.top[i][TOP - 1].logprob + 1e-4;
            CHECK_MSG(more <= TOP - 1, "token %d: %d tokens are more likely than the 5th listed", i, more);
            not_best += tok != got.top[i][0].id;
            checked++;
            int32_t p1 = NP + i;
            uint8_t w1 = 1;
            rm_batch one = {1, &got.c.toks[i], &p1, seq, &w1};
            if (i + 1 < NEW) st = rm_ctx_decode(ctx, &one);
        }
        CHECK_OK(st);
    }
    printf("  logprobs of %d tokens (%d sampled below the top): max |engine - reference| %.2e\n", checked, not_best,
           worst);
    CHECK(checked == NEW);
    CHECK(worst < 1e-3);
    CHECK_MSG(not_best > 0, "every sampled token was the most likely: the raw distribution is not told apart");
    for (int i = 0; i < 6; i++) CHECK(others[i].fin == RM_FINISH_LENGTH);
    rm_logprob_list_free(&got.list);
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    rm_adapter_free(a0);
    rm_adapter_free(a1);
    rm_model_free(m);
}

/* A request's prompt log-probabilities, copied from its first token's event. */
typedef struct {
    collected c;
    rm_logprob_list prompt;
    int events_with_prompt;
} collected_plp;

static void collect_plp(const rm_engine_event *ev, void *user) {
    collected_plp *c = user;
    collect(ev, &c->c);
    if (!ev->prompt_logprobs) return;
    c->events_with_prompt++;
    CHECK(ev->n_generated == 1);
    if (!c->prompt.n) CHECK_OK(rm_logprob_list_copy(&c->prompt, ev->prompt_logprobs));
}

/*
 * Prompt log-probabilities through the engine: a prompt of 150 tokens
 * (more than the 64 prompt rows a step computes here, so it takes several steps) under a
 * mixture beside other requests, twice: once alone, once with a pool so
 * small that it is preempted and recomputed. Each prompt token's against a
 * direct decode that keeps every row's logits: within 1e-3, the top 3 in
 * order, the first token's NaN.
 */
TEST(engine_prompt_logprobs_match_a_direct_decode) {
    rm_model *m = engine_model();
    if (!m) return;
    enum { NP = 150, NEW = 4, TOP = 3 };
    const int V = m->cfg.vocab_size;
    static int32_t prompt[NP];
    for (int t = 0; t < NP; t++) prompt[t] = (int32_t)(1 + (t * 37 + t / 7) % 95);
    test_source ts = {0};
    static collected_plp got[2];
    memset(got, 0, sizeof got);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 1: 12 blocks of 16 hold the long request alone, not it and the others */
        rm_engine_params p = {.n_threads = 2, .max_seqs = 4, .n_ctx = 192, .step_tokens = 128, .prompt_rows = 64,
                              .kv_blocks = pass ? 12 : 0, .kv_block = 16, .max_adapters = 3, .max_rank = 12,
                              .source = {source_load, &ts}};
        rm_engine *e = NULL;
        CHECK_OK(rm_engine_new(m, &p, &e));
        if (!e) break;
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.tokens = prompt, q.n_tokens = NP, q.max_tokens = NEW, q.ignore_eos = true;
        q.mode = RM_COMPOSE_MIXTURE, q.n_adapters = 2, q.adapters[0] = "e2", q.adapters[1] = "e3";
        q.logprobs = true, q.top_logprobs = TOP, q.prompt_logprobs = true;
        q.on_event = collect_plp, q.user = &got[pass];
        int64_t id;
        static int32_t others_prompt[3][40];
        static collected others[3];
        memset(others, 0, sizeof others);
        for (int k = 0; k < 3; k++) { /* they grow while the long one waits for blocks */
            rm_engine_request o;
            rm_engine_request_init(&o);
            for (int t = 0; t < 40; t++) others_prompt[k][t] = (int32_t)(2 + (k * 13 + t * 5) % 90);
            o.tokens = others_prompt[k], o.n_tokens = 40, o.max_tokens = 24, o.ignore_eos = true;
            o.on_event = collect, o.user = &others[k];
            CHECK_OK(rm_engine_submit(e, &o, &id));
        }
        CHECK_OK(rm_engine_submit(e, &q, &id));
        drain(e);
        rm_engine_stats st;
        rm_engine_stats_get(e, &st);
        if (pass) CHECK_MSG(st.preemptions > 0, "the small pool preempted nothing: the recomputation is not tested");
        for (int k = 0; k < 3; k++) CHECK(others[k].fin == RM_FINISH_LENGTH);
        /* prompt log-probabilities need logprobs */
        q.logprobs = false, q.top_logprobs = 0;
        CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_INVALID);
        rm_engine_free(e);
        CHECK(got[pass].events_with_prompt == 1 && got[pass].c.n == NEW);
        CHECK(got[pass].prompt.n == NP && got[pass].prompt.n_top == TOP);
    }

    /* the reference: the whole prompt in one decode, every row's logits kept */
    rm_adapter *a0 = NULL, *a1 = NULL;
    CHECK_OK(source_load(&ts, m, "e2", &a0));
    CHECK_OK(source_load(&ts, m, "e3", &a1));
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    rm_ctx_params cp = {.n_ctx = 192, .n_seq = 1, .n_batch = NP, .n_logits = NP, .n_threads = 2};
    CHECK_OK(rm_lora_ctx_new(m, &cp, 3, 12, &ctx, &ls));
    rm_composition c = {.mode = RM_COMPOSE_MIXTURE, .k = 2, .experts = {a0, a1}, .n_prompt = NP};
    static int32_t pos[NP], seq[NP];
    static uint8_t wl[NP];
    double worst = 0;
    int checked = 0;
    if (ctx && a0 && a1 && rm_lora_set(ls, 0, &c) == RAMOLE_OK) {
        for (int t = 0; t < NP; t++) pos[t] = t, seq[t] = 0, wl[t] = 1;
        rm_batch b = {NP, prompt, pos, seq, wl};
        CHECK_OK(rm_ctx_decode(ctx, &b));
        for (int pass = 0; pass < 2; pass++) {
            const rm_logprob_list *l = &got[pass].prompt;
            if (l->n != NP) continue;
            CHECK(isnan(l->lp[0]) && l->ids[0] == prompt[0]);
            for (int t = 1; t < NP; t++) {
                const float *row = rm_ctx_logits(ctx, t - 1);
                double mx = row[0], sum = 0;
                for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
                double lse = mx + log(sum);
                CHECK(l->ids[t] == prompt[t]);
                worst = fmax(worst, fabs(l->lp[t] - (row[prompt[t]] - lse)));
                const rm_token_logprob *top = l->top + (size_t)t * TOP;
                for (int k = 0; k < TOP; k++) {
                    worst = fmax(worst, fabs(top[k].logprob - (row[top[k].id] - lse)));
                    if (k) CHECK(top[k].logprob <= top[k - 1].logprob);
                }
                int more = 0;
                for (int v = 0; v < V; v++) more += row[v] - lse > top[TOP - 1].logprob + 1e-4;
                CHECK(more <= TOP - 1);
                checked++;
            }
        }
    }
    printf("  prompt logprobs of %d tokens (alone, and preempted): max |engine - reference| %.2e\n", checked, worst);
    CHECK(checked == 2 * (NP - 1));
    CHECK(worst < 1e-3);
    for (int pass = 0; pass < 2; pass++) rm_logprob_list_free(&got[pass].prompt);
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    rm_adapter_free(a0);
    rm_adapter_free(a1);
    rm_model_free(m);
}

/* A prompt whose log-probabilities cannot all be kept (the list's memory
 * fails while its rows run) finishes with an error naming it, rather than
 * reporting a list cut short as whole; the engine goes on. */
typedef struct {
    collected c;
    char error[128];
} collected_err;

static void collect_err(const rm_engine_event *ev, void *user) {
    collected_err *c = user;
    collect(ev, &c->c);
    if (ev->error) snprintf(c->error, sizeof c->error, "%s", ev->error);
}

TEST(engine_prompt_logprobs_out_of_memory_fails_the_request) {
    rm_model *m = engine_model();
    if (!m) return;
    enum { NP = 40 };
    int32_t prompt[NP];
    for (int t = 0; t < NP; t++) prompt[t] = (int32_t)(2 + (t * 17) % 90);
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 4, 64, 0);
    if (!e) {
        rm_model_free(m);
        return;
    }
    collected_err got = {0};
    collected after = {0};
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.tokens = prompt, q.n_tokens = NP, q.max_tokens = 2, q.ignore_eos = true;
    q.logprobs = true, q.prompt_logprobs = true;
    q.on_event = collect_err, q.user = &got;
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    int n;
    rm_alloc_fail_after(1); /* the list's first growth, past 16 entries, is the step's first allocation */
    rm_status st = rm_engine_step(e, &n);
    rm_alloc_fail_after(0);
    CHECK_OK(st);
    CHECK_OK(rm_engine_check(e));
    CHECK_MSG(got.c.fin == RM_FINISH_ERROR && strstr(got.error, "logprobs: out of memory"),
              "finish %d, error \"%s\"", (int)got.c.fin, got.error);
    q.prompt_logprobs = false, q.on_event = collect, q.user = &after;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    drain(e);
    CHECK(after.fin == RM_FINISH_LENGTH && after.n == 2);
    rm_engine_free(e);
    rm_model_free(m);
}

/*
 * Twins: four samples of one prompt under one composition, submitted
 * together beside two other requests. One computes the prompt; the other
 * three copy its rows and feed only its last token. Each sample's tokens
 * must equal the same request run alone. A router pooling over the prompt
 * is never shared (its slot sums the prompt), yet runs the same.
 */
TEST(engine_twins_copy_their_prompt) {
    rm_model *m = engine_model();
    if (!m) return;
    enum { NP = 30, NEW = 8, TW = 4 };
    int32_t prompt[NP];
    for (int t = 0; t < NP; t++) prompt[t] = (int32_t)(4 + (t * 23) % 88);
    test_source ts = {0};
    for (int pooled = 0; pooled < 2; pooled++) {
        static collected_lp together[TW], alone[TW];
        collected others[2];
        memset(together, 0, sizeof together), memset(alone, 0, sizeof alone), memset(others, 0, sizeof others);
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.tokens = prompt, q.n_tokens = NP, q.max_tokens = NEW, q.ignore_eos = true;
        q.sampling.temperature = 0.9f, q.sampling.top_k = 0, q.sampling.top_p = 1, q.sampling.min_p = 0;
        static const char *const experts[3] = {"e1", "e2", "e4"};
        q.mode = pooled ? RM_COMPOSE_ROUTER : RM_COMPOSE_MIXTURE, q.n_adapters = pooled ? 3 : 2;
        for (int j = 0; j < q.n_adapters; j++) q.adapters[j] = experts[j];
        q.router = pooled ? "prouter" : NULL;
        q.logprobs = true, q.top_logprobs = 5; /* a sample's log-probabilities tell any difference in its rows */
        q.on_event = collect_lp;
        int64_t id;
        rm_engine *e = new_engine(m, &ts, 6, 16, 0);
        if (!e) break;
        for (int k = 0; k < TW; k++) {
            q.sampling.seed = 11 + (uint64_t)k, q.user = &together[k];
            CHECK_OK(rm_engine_submit(e, &q, &id));
        }
        int32_t other_prompt[2][12];
        for (int k = 0; k < 2; k++) {
            rm_engine_request o;
            rm_engine_request_init(&o);
            for (int t = 0; t < 12; t++) other_prompt[k][t] = (int32_t)(7 + k + t * 3);
            o.tokens = other_prompt[k], o.n_tokens = 12, o.max_tokens = 10, o.ignore_eos = true;
            o.on_event = collect, o.user = &others[k];
            CHECK_OK(rm_engine_submit(e, &o, &id));
        }
        drain(e);
        rm_engine_stats st;
        rm_engine_stats_get(e, &st);
        rm_engine_free(e);
        printf("  %s: %lld twins copied %lld prompt tokens\n", pooled ? "pooled router" : "mixture",
               (long long)st.twin_hits, (long long)st.twin_tokens);
        CHECK(st.twin_hits == (pooled ? 0 : TW - 1));
        CHECK(st.twin_tokens == (pooled ? 0 : (TW - 1) * (NP - 1)));
        for (int k = 0; k < TW; k++) {
            rm_engine *a = new_engine(m, &ts, 6, 16, 0);
            if (!a) break;
            q.sampling.seed = 11 + (uint64_t)k, q.user = &alone[k];
            CHECK_OK(rm_engine_submit(a, &q, &id));
            drain(a);
            rm_engine_free(a);
            double worst = 0;
            for (int i = 0; i < NEW && i < together[k].c.n && i < alone[k].c.n; i++)
                worst = fmax(worst, fabs(together[k].lp[i] - alone[k].lp[i]));
            CHECK_MSG(together[k].c.n == NEW && alone[k].c.n == NEW &&
                          !memcmp(together[k].c.toks, alone[k].c.toks, sizeof(int32_t) * NEW) && worst < 1e-5,
                      "%s sample %d: beside its twins its tokens or log-probabilities (by %.2e) differ from alone",
                      pooled ? "pooled" : "mixture", k, worst);
            rm_logprob_list_free(&together[k].list);
            rm_logprob_list_free(&alone[k].list);
        }
        CHECK_MSG(memcmp(together[0].c.toks, together[1].c.toks, sizeof(int32_t) * NEW),
                  "two samples with different seeds drew the same tokens: the test cannot tell them apart");
        for (int k = 0; k < 2; k++) CHECK(others[k].fin == RM_FINISH_LENGTH);
    }
    rm_model_free(m);
}

/*
 * The prefix cache. A request that begins as an earlier one did, under
 * the same composition, starts after the rows that one left behind
 * (finished) or holds (running), and answers as it does alone on an
 * engine without the cache: the same tokens, log-probabilities within
 * 1e-5. Another composition (a retrieval score, a mode), an adapter
 * loaded again, or a request whose prompt log-probabilities must run
 * computes its own rows.
 */
enum { PC_NEW = 6 };

/* variant 0: a router with a retrieval prior over e1, e2 with retrieval
 * scores; 1: one score differs; 2: a mixture of the same experts; 3: the
 * base alone; 4, 5: selection of e1, with e2 or e4 second (unread); 6, 7:
 * explicit weights of e1 0.5 or 0.7; 8, 9: a router without a prior, one
 * score differing (unread) */
static void prefix_request(rm_engine_request *q, const int32_t *toks, int n, int variant, collected_lp *out) {
    static const rm_compose_mode modes[10] = {RM_COMPOSE_ROUTER, RM_COMPOSE_ROUTER, RM_COMPOSE_MIXTURE,
                                              RM_COMPOSE_NONE, RM_COMPOSE_SELECTION, RM_COMPOSE_SELECTION,
                                              RM_COMPOSE_EXPLICIT, RM_COMPOSE_EXPLICIT, RM_COMPOSE_ROUTER,
                                              RM_COMPOSE_ROUTER};
    rm_engine_request_init(q);
    q->tokens = toks, q->n_tokens = n, q->max_tokens = PC_NEW, q->ignore_eos = true;
    q->logprobs = true, q->top_logprobs = 5;
    q->mode = modes[variant];
    if (q->mode != RM_COMPOSE_NONE) {
        q->n_adapters = 2, q->adapters[0] = "e1", q->adapters[1] = variant == 5 ? "e4" : "e2";
        q->weights[0] = variant == 7 ? 0.7f : 0.5f;
    }
    if (q->mode == RM_COMPOSE_ROUTER) {
        q->router = variant < 8 ? "rrouter" : "router";
        q->retrieval[0] = variant == 1 || variant == 9 ? 0.5f : 0.3f, q->retrieval[1] = 0.1f;
    }
    q->on_event = collect_lp, q->user = out;
}

/* Run one request on e to the end; its prompt tokens it did not compute. */
static int prefix_run(rm_engine *e, const int32_t *toks, int n, int variant, collected_lp *out) {
    rm_engine_request q;
    prefix_request(&q, toks, n, variant, out);
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    drain(e);
    return out->c.n_prompt_cached;
}

/* `got` against the same request alone on an engine without the cache. */
static void prefix_check(const rm_model *m, test_source *ts, const int32_t *toks, int n, int variant,
                         collected_lp *got, const char *what) {
    static collected_lp alone;
    memset(&alone, 0, sizeof alone);
    rm_engine *a = new_engine_cache(m, ts, 2, 16, 0, -1);
    if (!a) return;
    CHECK(prefix_run(a, toks, n, variant, &alone) == 0);
    rm_engine_free(a);
    double worst = 0;
    for (int i = 0; i < PC_NEW && i < got->c.n && i < alone.c.n; i++)
        worst = fmax(worst, fabs(got->lp[i] - alone.lp[i]));
    /* 5e-5: rows computed in batches of other shapes than alone round
     * differently (1.6e-5 seen); a wrong row moves them by 3e-4 and more */
    CHECK_MSG(got->c.n == PC_NEW && alone.c.n == PC_NEW &&
                  !memcmp(got->c.toks, alone.c.toks, sizeof(int32_t) * PC_NEW) && worst < 5e-5,
              "%s: its tokens or log-probabilities (by %.2e) differ from alone", what, worst);
    rm_logprob_list_free(&alone.list);
    rm_logprob_list_free(&got->list);
}

TEST(engine_prefix_cache_reuses_rows_of_the_same_composition) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 4, 16, 0);
    if (!e) {
        rm_model_free(m);
        return;
    }
    static collected_lp got[22];
    memset(got, 0, sizeof got);
    int32_t pa[30], pb[32], pc[40], pl[30], pm[26], pg[25], pw[40], pw2[36], px[20], px2[30];
    for (int t = 0; t < 30; t++) pa[t] = (int32_t)(3 + (t * 13) % 91), pl[t] = (int32_t)(5 + (t * 19) % 87);
    memcpy(pb, pa, 24 * sizeof *pa);
    for (int t = 24; t < 32; t++) pb[t] = (int32_t)(40 + t);
    memcpy(pg, pa, 20 * sizeof *pa);
    for (int t = 20; t < 25; t++) pg[t] = (int32_t)(9 + t);

    /* A computes everything; B shares its first 24 tokens */
    CHECK(prefix_run(e, pa, 30, 0, &got[0]) == 0);
    int b = prefix_run(e, pb, 32, 0, &got[1]);
    CHECK_MSG(b == 24, "B started after %d tokens (want 24)", b);
    /* the next turn: A's prompt, its answer, more. A left 35 rows (its last token never ran) */
    memcpy(pc, pa, 30 * sizeof *pa);
    memcpy(pc + 30, got[0].c.toks, PC_NEW * sizeof *pc);
    for (int t = 36; t < 40; t++) pc[t] = (int32_t)(60 + t % 7);
    int c = prefix_run(e, pc, 40, 0, &got[2]);
    CHECK_MSG(c == 35, "the next turn started after %d tokens (want 35)", c);
    /* A again: all but its last token, which must run for its logits */
    int again = prefix_run(e, pa, 30, 0, &got[3]);
    CHECK_MSG(again == 29, "A again started after %d tokens (want 29)", again);
    /* another retrieval score, another mode: their own rows */
    CHECK(prefix_run(e, pb, 32, 1, &got[4]) == 0);
    CHECK(prefix_run(e, pb, 32, 2, &got[5]) == 0);
    /* the base alone: after a base request, not after the router's */
    CHECK(prefix_run(e, pa, 30, 3, &got[6]) == 0);
    CHECK(prefix_run(e, pg, 25, 3, &got[7]) == 20);
    /* an adapter loaded again may be another adapter under the name */
    CHECK(rm_engine_drop_adapter(e, "e1"));
    CHECK(prefix_run(e, pb, 32, 0, &got[8]) == 0);
    /* a request scoring its prompt takes rows only with their
     * log-probabilities, which no kept entry holds yet: it runs them all */
    {
        rm_engine_request q;
        prefix_request(&q, pb, 32, 0, &got[9]);
        q.prompt_logprobs = true;
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
        drain(e);
        CHECK(got[9].c.n_prompt_cached == 0 && got[9].c.n == PC_NEW);
        rm_logprob_list_free(&got[9].list);
    }
    /* a running request's rows: M is admitted while L decodes */
    {
        rm_engine_request q;
        prefix_request(&q, pl, 30, 0, &got[10]);
        q.max_tokens = 12;
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
        int n, steps = 0;
        while (got[10].c.n < 2 && steps++ < 100) CHECK_OK(rm_engine_step(e, &n));
        memcpy(pm, pl, 20 * sizeof *pl);
        for (int t = 20; t < 26; t++) pm[t] = (int32_t)(70 + t % 5);
        prefix_request(&q, pm, 26, 0, &got[11]);
        CHECK_OK(rm_engine_submit(e, &q, &id));
        drain(e);
        CHECK_MSG(got[11].c.n_prompt_cached == 20 && got[10].c.n == 12,
                  "beside a running request sharing 20 tokens it started after %d", got[11].c.n_prompt_cached);
        rm_logprob_list_free(&got[10].list);
    }
    /* submitted together, with room in the step for both prompts: W2 waits
     * while W computes the 30 tokens they share, then copies them; X2 waits
     * for X, which finishes in the step that computes their 20
     * (max_tokens 1), so X2 takes them from the rows X left */
    for (int t = 0; t < 40; t++) pw[t] = (int32_t)(2 + (t * 7) % 89);
    memcpy(pw2, pw, 30 * sizeof *pw);
    for (int t = 30; t < 36; t++) pw2[t] = (int32_t)(80 + t % 9);
    for (int t = 0; t < 20; t++) px[t] = (int32_t)(6 + (t * 11) % 83);
    memcpy(px2, px, 20 * sizeof *px);
    for (int t = 20; t < 30; t++) px2[t] = (int32_t)(30 + t);
    rm_engine *w = new_engine(m, &ts, 4, 64, 0);
    if (w) {
        rm_engine_request q;
        int64_t id;
        const int32_t *tw[4] = {pw, pw2, px, px2};
        const int nw[4] = {40, 36, 20, 30};
        for (int k = 0; k < 4; k++) {
            prefix_request(&q, tw[k], nw[k], 0, &got[18 + k]);
            if (k == 2) q.max_tokens = 1;
            CHECK_OK(rm_engine_submit(w, &q, &id));
        }
        drain(w);
        CHECK_MSG(got[18].c.n_prompt_cached == 0 && got[19].c.n_prompt_cached == 30,
                  "W and W2 submitted together: %d and %d cached (want 0 and 30)", got[18].c.n_prompt_cached,
                  got[19].c.n_prompt_cached);
        CHECK_MSG(got[20].c.n == 1 && got[21].c.n_prompt_cached == 20,
                  "X2 after X finished: %d cached (want 20)", got[21].c.n_prompt_cached);
        rm_logprob_list_free(&got[18].list), rm_logprob_list_free(&got[20].list);
        /* another salt (another tenant) shares nothing, kept or running;
         * the same salt again does */
        static collected_lp salted[4];
        memset(salted, 0, sizeof salted);
        for (int k = 0; k < 4; k++) {
            prefix_request(&q, k < 2 ? pw : pw2, k < 2 ? 40 : 36, 0, &salted[k]);
            q.cache_salt = k == 3 ? 7 : 99;
            CHECK_OK(rm_engine_submit(w, &q, &id));
            if (k != 2) drain(w);
        }
        CHECK_MSG(salted[0].c.n_prompt_cached == 0 && salted[1].c.n_prompt_cached == 39 &&
                      salted[2].c.n_prompt_cached == 30 && salted[3].c.n_prompt_cached == 0,
                  "salts: %d %d %d %d cached (want 0 39 30 0)", salted[0].c.n_prompt_cached,
                  salted[1].c.n_prompt_cached, salted[2].c.n_prompt_cached, salted[3].c.n_prompt_cached);
        for (int k = 0; k < 4; k++) rm_logprob_list_free(&salted[k].list);
        rm_engine_stats sw;
        rm_engine_stats_get(w, &sw);
        CHECK(sw.prefix_cache_hits == 4 && sw.prefix_cache_tokens == 30 + 20 + 39 + 30);
        rm_engine_free(w);
    }
    /* what a mode does not read does not part requests: selection's
     * second adapter, a router's scores without a prior; weights do */
    CHECK(prefix_run(e, pa, 30, 4, &got[12]) == 0);
    CHECK(prefix_run(e, pg, 25, 5, &got[13]) == 20);
    CHECK(prefix_run(e, pa, 30, 6, &got[14]) == 0);
    CHECK(prefix_run(e, pg, 25, 7, &got[15]) == 0);
    CHECK(prefix_run(e, pa, 30, 8, &got[16]) == 0);
    CHECK(prefix_run(e, pg, 25, 9, &got[17]) == 20);
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    printf("  %lld requests started after kept rows, %lld tokens not fed; %d entries of %zu bytes\n",
           (long long)st.prefix_cache_hits, (long long)st.prefix_cache_tokens, st.prefix_cache_entries,
           st.prefix_cache_bytes);
    CHECK(st.prefix_cache_hits == 7 && st.prefix_cache_tokens == 24 + 35 + 29 + 20 + 20 + 20 + 20);
    CHECK(st.prefix_cache_entries > 0 && st.prefix_cache_bytes > 0);
    rm_engine_free(e);

    static const struct { int g, n, variant; const char *what; } cases[] = {
        {0, 30, 0, "A"}, {1, 32, 0, "B after A's rows"}, {2, 40, 0, "the next turn"}, {3, 30, 0, "A again"},
        {4, 32, 1, "B with another score"}, {5, 32, 2, "B as a mixture"}, {6, 30, 3, "A on the base"},
        {7, 25, 3, "the base after the base's rows"}, {8, 32, 0, "B after a reload"},
        {11, 26, 0, "M beside a running request"}, {12, 30, 4, "selection"},
        {13, 25, 5, "selection after one with another second adapter"}, {14, 30, 6, "explicit"},
        {15, 25, 7, "explicit with another weight"}, {16, 30, 8, "a router without a prior"},
        {17, 25, 9, "the router after other scores"}, {19, 36, 0, "W2 after waiting for W"},
        {21, 30, 0, "X2 after X left"}};
    const int32_t *toks[22] = {pa, pb, pc, pa, pb, pb, pa, pg, pb, pb, pl, pm, pa, pg, pa, pg, pa, pg, pw, pw2, px, px2};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        prefix_check(m, &ts, toks[cases[i].g], cases[i].n, cases[i].variant, &got[cases[i].g], cases[i].what);

    /* without the cache nothing is kept */
    rm_engine *off = new_engine_cache(m, &ts, 2, 16, 0, -1);
    if (off) {
        static collected_lp x, y;
        memset(&x, 0, sizeof x), memset(&y, 0, sizeof y);
        CHECK(prefix_run(off, pa, 30, 0, &x) == 0 && prefix_run(off, pa, 30, 0, &y) == 0);
        rm_logprob_list_free(&x.list), rm_logprob_list_free(&y.list);
        /* nor shared between requests running together */
        memset(&x, 0, sizeof x), memset(&y, 0, sizeof y);
        rm_engine_request q;
        int64_t id;
        prefix_request(&q, pw, 40, 0, &x);
        CHECK_OK(rm_engine_submit(off, &q, &id));
        prefix_request(&q, pw2, 36, 0, &y);
        CHECK_OK(rm_engine_submit(off, &q, &id));
        drain(off);
        CHECK(x.c.n == PC_NEW && y.c.n == PC_NEW && y.c.n_prompt_cached == 0);
        rm_engine_stats_get(off, &st);
        CHECK(st.prefix_cache_hits == 0 && st.prefix_cache_entries == 0);
        rm_logprob_list_free(&x.list), rm_logprob_list_free(&y.list);
        rm_engine_free(off);
    }
    rm_model_free(m);
}

/*
 * The prefix cache for requests that score their prompt (OpenAI's echo
 * with logprobs, as lm-evaluation-harness sends it): they take kept or
 * running rows only with the log-probabilities recorded beside them, as
 * many alternatives or more, and their prompt's list then equals the same
 * request's alone: ids, values within 5e-5, alternatives in order.
 */
static int plp_run(rm_engine *e, const int32_t *toks, int n, int top, bool scored, collected_plp *out, bool drain_now) {
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.tokens = toks, q.n_tokens = n, q.max_tokens = 2, q.ignore_eos = true;
    q.mode = RM_COMPOSE_MIXTURE, q.n_adapters = 2, q.adapters[0] = "e1", q.adapters[1] = "e2";
    q.logprobs = scored, q.top_logprobs = scored ? top : 0, q.prompt_logprobs = scored;
    q.on_event = collect_plp, q.user = out;
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    if (drain_now) drain(e);
    return out->c.n_prompt_cached;
}

static void plp_check(const rm_model *m, test_source *ts, const int32_t *toks, int n, int top, collected_plp *got,
                      const char *what) {
    static collected_plp alone;
    rm_logprob_list_free(&alone.prompt);
    memset(&alone, 0, sizeof alone);
    rm_engine *a = new_engine_cache(m, ts, 2, 16, 0, -1);
    if (!a) return;
    plp_run(a, toks, n, top, true, &alone, true);
    rm_engine_free(a);
    const rm_logprob_list *x = &got->prompt, *y = &alone.prompt;
    bool same = x->n == n && y->n == n && x->n_top == top && y->n_top == top;
    double worst = 0;
    for (int i = 1; same && i < n; i++) {
        same = x->ids[i] == y->ids[i];
        worst = fmax(worst, fabs(x->lp[i] - y->lp[i]));
        for (int k = 0; same && k < top; k++) {
            same = x->top[i * top + k].id == y->top[i * top + k].id;
            worst = fmax(worst, fabs(x->top[i * top + k].logprob - y->top[i * top + k].logprob));
        }
    }
    CHECK_MSG(same && isnan(x->lp[0]) && worst < 5e-5 && got->c.n == 2 && !memcmp(got->c.toks, alone.c.toks, 2 * sizeof(int32_t)),
              "%s: its prompt's log-probabilities (%d of %d alternatives, worst %.2e) or answer differ from alone",
              what, x->n, x->n_top, worst);
    rm_logprob_list_free(&alone.prompt);
    rm_logprob_list_free(&got->prompt);
}

TEST(engine_prefix_cache_carries_prompt_logprobs) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    static collected_plp got[8];
    memset(got, 0, sizeof got);
    int32_t p1[30], p2[30], p3[40], p4[36];
    for (int t = 0; t < 30; t++) p1[t] = (int32_t)(4 + (t * 17) % 85);
    memcpy(p2, p1, 24 * sizeof *p1);
    for (int t = 24; t < 30; t++) p2[t] = (int32_t)(50 + t);
    for (int t = 0; t < 40; t++) p3[t] = (int32_t)(8 + (t * 5) % 81);
    memcpy(p4, p3, 30 * sizeof *p3);
    for (int t = 30; t < 36; t++) p4[t] = (int32_t)(20 + t % 4);
    rm_engine *e = new_engine(m, &ts, 4, 16, 0);
    if (e) {
        CHECK(plp_run(e, p1, 30, 5, true, &got[0], true) == 0);
        /* 24 shared: 23 rows, and the log-probabilities of tokens 0..23 */
        int c = plp_run(e, p2, 30, 3, true, &got[1], true);
        CHECK_MSG(c == 23, "a scored prompt sharing 24 tokens with one kept took %d rows (want 23)", c);
        /* more alternatives than any kept list holds */
        CHECK(plp_run(e, p2, 30, 8, true, &got[2], true) == 0);
        /* a plain request takes the rows alone: all but its last token */
        CHECK(plp_run(e, p1, 30, 0, false, &got[3], true) == 29);
        rm_engine_free(e);
        plp_check(m, &ts, p1, 30, 5, &got[0], "the first");
        plp_check(m, &ts, p2, 30, 3, &got[1], "after kept rows");
        plp_check(m, &ts, p2, 30, 8, &got[2], "with more alternatives");
        rm_logprob_list_free(&got[3].prompt);
    }
    /* submitted together, room in the step for both: the second waits for
     * the first's 30 shared tokens; a plain first gives a scored second
     * nothing */
    e = new_engine(m, &ts, 4, 64, 0);
    if (e) {
        plp_run(e, p3, 40, 5, true, &got[4], false);
        plp_run(e, p4, 36, 5, true, &got[5], true);
        CHECK_MSG(got[4].c.n_prompt_cached == 0 && got[5].c.n_prompt_cached == 29,
                  "running together: %d and %d rows taken (want 0 and 29)", got[4].c.n_prompt_cached,
                  got[5].c.n_prompt_cached);
        int32_t p5[40], p6[36];
        for (int t = 0; t < 40; t++) p5[t] = (int32_t)(3 + (t * 9) % 79);
        memcpy(p6, p5, 30 * sizeof *p5);
        for (int t = 30; t < 36; t++) p6[t] = (int32_t)(60 + t % 3);
        plp_run(e, p5, 40, 0, false, &got[6], false);
        plp_run(e, p6, 36, 5, true, &got[7], true);
        CHECK(got[7].c.n_prompt_cached == 0);
        rm_engine_free(e);
        plp_check(m, &ts, p4, 36, 5, &got[5], "after a running one");
        plp_check(m, &ts, p6, 36, 5, &got[7], "after a plain one");
        rm_logprob_list_free(&got[4].prompt), rm_logprob_list_free(&got[6].prompt);
    }
    rm_model_free(m);
}

TEST(engine_preemption_keeps_outputs) {
    rm_model *m = engine_model();
    if (!m) return;
    static collected alone[N_MIXED], small[N_MIXED];
    memset(alone, 0, sizeof alone);
    memset(small, 0, sizeof small);
    run_alone(m, alone);
    /* 12 blocks of 4 positions for up to 8 sequences of up to 36 tokens */
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 8, 24, 12);
    int32_t prompts[N_MIXED][32];
    char names[N_MIXED][3][8];
    submit_mixed(e, 0, N_MIXED, prompts, names, small);
    if (e) drain(e);
    check_same(small, alone, "small KV pool");
    rm_engine_stats st;
    if (e) {
        rm_engine_stats_get(e, &st);
        CHECK_MSG(st.preemptions > 0, "no preemption happened (the test must force some)");
        CHECK(st.kv_blocks_used == 0 && st.running == 0 && st.waiting == 0);
    }
    rm_engine_free(e);
    rm_model_free(m);
}

TEST(engine_random_submit_cancel_bookkeeping) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 6, 16, 14);
    if (!e) {
        rm_model_free(m);
        return;
    }
    uint64_t rng = 42;
    int64_t ids[4096];
    int n_ids = 0, n, cancelled = 0, finished = 0;
    static collected sink[4096];
    memset(sink, 0, sizeof sink);
    for (int op = 0; op < 3000; op++) {
        int r = (int)(rm_rng_next(&rng) % 10);
        if (r < 4 && n_ids < 4096) {
            int32_t prompt[32];
            char names[3][8];
            rm_engine_request q;
            mixed_request((int)(rm_rng_next(&rng) % 1000), prompt, &q, names, &sink[n_ids]);
            CHECK_OK(rm_engine_submit(e, &q, &ids[n_ids]));
            n_ids++;
        } else if (r < 6 && n_ids) {
            int64_t id = ids[rm_rng_next(&rng) % (uint64_t)n_ids];
            if (rm_engine_cancel(e, id) == RAMOLE_OK) cancelled++;
        } else {
            CHECK_OK(rm_engine_step(e, &n));
        }
        rm_status st = rm_engine_check(e);
        if (st != RAMOLE_OK) {
            CHECK_MSG(0, "after operation %d: %s", op, ramole_last_error());
            break;
        }
    }
    drain(e);
    for (int i = 0; i < n_ids; i++) finished += sink[i].fin != RM_FINISH_NONE;
    CHECK_MSG(finished == n_ids, "%d of %d requests reported a finish", finished, n_ids);
    CHECK(cancelled > 100);
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    CHECK(st.kv_blocks_used == 0 && st.adapters.held == 0);
    rm_engine_free(e);
    rm_model_free(m);
}

TEST(engine_adapter_dropped_while_in_use) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 4, 32, 0);
    if (!e) {
        rm_model_free(m);
        return;
    }
    int32_t prompt[32];
    char names[3][8];
    collected ref = {0}, got = {0}, again = {0};
    rm_engine_request q;
    mixed_request(1, prompt, &q, names, &ref); /* explicit over e1, e4 */
    q.max_tokens = 12;
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    drain(e);
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    size_t cached = st.adapters.bytes;
    CHECK(cached > 0 && st.adapters.entries == 2 && st.adapters.held == 0);

    q.user = &got;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    int n;
    CHECK_OK(rm_engine_step(e, &n)); /* running, holding both adapters */
    CHECK(rm_engine_drop_adapter(e, "e1") && rm_engine_drop_adapter(e, "e4"));
    CHECK(!rm_engine_drop_adapter(e, "e1"));
    rm_engine_stats_get(e, &st);
    CHECK_MSG(st.adapters.entries == 0 && st.adapters.held == 2 && st.adapters.bytes == cached,
              "dropped while held: entries %d held %d bytes %zu", st.adapters.entries, st.adapters.held,
              st.adapters.bytes);
    drain(e);
    CHECK(got.n == ref.n && !memcmp(got.toks, ref.toks, (size_t)ref.n * sizeof(int32_t)));
    rm_engine_stats_get(e, &st);
    CHECK_MSG(st.adapters.bytes == 0 && st.adapters.held == 0, "after the last user: %zu bytes, %d held",
              st.adapters.bytes, st.adapters.held);
    /* a new request loads them again */
    int loads = ts.loads;
    q.user = &again;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    drain(e);
    CHECK(ts.loads == loads + 2 && again.n == ref.n);
    rm_engine_free(e);
    rm_model_free(m);
}

TEST(engine_bad_requests_fail_alone) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 4, 32, 40);
    if (!e) {
        rm_model_free(m);
        return;
    }
    int32_t prompt[32];
    char names[3][8];
    collected good = {0}, bad = {0};
    rm_engine_request q;
    mixed_request(5, prompt, &q, names, &good); /* router */
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
    int n;
    CHECK_OK(rm_engine_step(e, &n));

    rm_engine_request b;
#define BAD(edit, st, text)                                                                       \
    do {                                                                                          \
        mixed_request(3, prompt, &b, names, &bad);                                                \
        edit;                                                                                     \
        rm_status got_ = rm_engine_submit(e, &b, &id);                                            \
        CHECK_MSG(got_ == (st) && strstr(ramole_last_error(), text), "%s: got %s: %s", text,      \
                  ramole_status_str(got_), ramole_last_error());                                  \
    } while (0)
    int32_t big[2] = {5, 96};
    BAD((b.tokens = big, b.n_tokens = 2), RAMOLE_ERR_RANGE, "token id 96");
    BAD((b.n_tokens = 0), RAMOLE_ERR_INVALID, "prompt is empty");
    BAD((b.prompt = "text"), RAMOLE_ERR_INVALID, "exactly one");
    BAD((b.tokens = NULL, b.prompt = "hi"), RAMOLE_ERR_INVALID, "no tokenizer");
    BAD((b.max_tokens = 60), RAMOLE_ERR_RANGE, "exceed the context");
    BAD((b.max_tokens = -1), RAMOLE_ERR_INVALID, "max_tokens");
    BAD((b.sampling.temperature = NAN), RAMOLE_ERR_INVALID, "temperature");
    BAD((b.sampling.top_p = 0), RAMOLE_ERR_INVALID, "top_p");
    BAD((b.adapters[0] = "nope"), RAMOLE_ERR_NOT_FOUND, "no adapter called nope");
    BAD((b.mode = RM_COMPOSE_ROUTER, b.router = NULL), RAMOLE_ERR_INVALID, "needs a router");
    BAD((b.router = "router"), RAMOLE_ERR_INVALID, "only in mode router");
    BAD((b.mode = RM_COMPOSE_NONE), RAMOLE_ERR_INVALID, "takes no adapters");
    BAD((b.n_adapters = 4), RAMOLE_ERR_RANGE, "1 to 3 adapters");
    BAD((b.mode = RM_COMPOSE_EXPLICIT, b.weights[0] = INFINITY), RAMOLE_ERR_INVALID, "not finite");
    BAD((b.n_stop = 1, b.stop = (const char *const[]){"x"}), RAMOLE_ERR_INVALID, "stop strings need");
#undef BAD
    CHECK(bad.events == 0);
    drain(e);
    CHECK(good.fin == RM_FINISH_LENGTH && good.n == 4 + 5 % 9);
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    CHECK_MSG(st.adapters.held == 0, "refused requests left %d adapters held", st.adapters.held);
    rm_engine_free(e);
    rm_model_free(m);
}

/* The paged cache alone: growth is all or nothing, release returns blocks. */
TEST(engine_kv_cache_blocks) {
    rm_kv_params p = {.n_layers = 2, .kv_dim = 8, .n_seq = 3, .n_ctx = 20, .block = 4, .n_blocks = 6,
                      .type = RM_TYPE_F32};
    rm_kv_cache *kv = NULL;
    CHECK_OK(rm_kv_new(&p, &kv));
    if (!kv) return;
    CHECK_OK(rm_kv_grow(kv, 0, 9)); /* 3 blocks */
    CHECK(rm_kv_seq_blocks(kv, 0) == 3 && rm_kv_free_blocks(kv) == 3);
    CHECK(rm_kv_blocks_short(kv, 1, 16) == 4);
    CHECK_ERR(rm_kv_grow(kv, 1, 16), RAMOLE_ERR_RANGE);
    CHECK(rm_kv_seq_blocks(kv, 1) == 0 && rm_kv_free_blocks(kv) == 3);
    CHECK_ERR(rm_kv_grow(kv, 2, 21), RAMOLE_ERR_RANGE);
    CHECK_OK(rm_kv_grow(kv, 1, 12));
    float k[8], v[8], back[8];
    for (int i = 0; i < 8; i++) k[i] = (float)i, v[i] = (float)-i;
    rm_kv_store(kv, 1, 1, 11, k, v);
    memcpy(back, rm_kv_row(kv, true, 1, 1, 11), sizeof back);
    CHECK(back[3] == -3.0f);
    CHECK_OK(rm_kv_check(kv));
    rm_kv_release(kv, 0);
    CHECK(rm_kv_free_blocks(kv) == 3 && rm_kv_seq_blocks(kv, 0) == 0);
    CHECK_OK(rm_kv_check(kv));
    rm_kv_free(kv);
}

/* f16 K/V against f32: the logits move by the rounding of the cache only. */
TEST(engine_kv_f16_logits_close) {
    rm_model *m = engine_model();
    if (!m) return;
    int32_t toks[40], pos[40], seq[40];
    for (int i = 0; i < 40; i++) toks[i] = (int32_t)(1 + i * 13 % 95), pos[i] = i, seq[i] = 0;
    double worst = 0;
    const float *lg[2] = {0};
    rm_ctx *c[2] = {0};
    for (int f = 0; f < 2; f++) {
        rm_ctx_params p = {.n_ctx = 40, .n_seq = 1, .n_batch = 40, .n_logits = 1, .n_threads = 1,
                           .kv_type = f ? RM_TYPE_F16 : RM_TYPE_F32};
        CHECK_OK(rm_ctx_new(m, &p, &c[f]));
        if (!c[f]) break;
        rm_batch b = {40, toks, pos, seq, NULL};
        CHECK_OK(rm_ctx_decode(c[f], &b));
        lg[f] = rm_ctx_logits(c[f], 0);
    }
    if (lg[0] && lg[1]) {
        double scale = 0;
        for (int i = 0; i < m->cfg.vocab_size; i++) scale = fmax(scale, fabs(lg[0][i]));
        for (int i = 0; i < m->cfg.vocab_size; i++) worst = fmax(worst, fabs(lg[0][i] - lg[1][i]) / scale);
        CHECK_MSG(worst > 0 && worst < 2e-3, "f16 KV: worst logit difference %.3g of the largest logit", worst);
    }
    rm_ctx_free(c[0]);
    rm_ctx_free(c[1]);
    rm_model_free(m);
}

/* Text as it streams: whole characters, stop strings held back and cut. */
TEST(engine_detok_stop_strings) {
    char *path = tokt_family_path("gpt2");
    if (!path) return;
    rm_tok *tok = NULL;
    CHECK_OK(rm_tok_load(path, &tok));
    rm_free(path);
    if (!tok) return;
    struct {
        const char *text;
        const char *stop[2];
        const char *want;
        bool stopped;
    } cases[] = {
        {"Hello world, worms and STOP here", {"STOP", NULL}, "Hello world, worms and ", true},
        {"Hello world, worms", {"worms", "world"}, "Hello ", true},
        {"the worm turns", {"worn", NULL}, "the worm turns", false},
        {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ok", {"\xe6\x9c\xac", NULL}, "caf\xc3\xa9 \xe6\x97\xa5",
         true},
        {"abc", {"bcd", NULL}, "abc", false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rm_tok_ids ids = {0};
        CHECK_OK(rm_tok_encode(tok, cases[c].text, strlen(cases[c].text), 0, &ids));
        rm_detok d;
        int n_stop = cases[c].stop[1] ? 2 : 1;
        CHECK_OK(rm_detok_init(&d, cases[c].stop, n_stop));
        char out[256] = "";
        size_t n_out = 0;
        for (size_t i = 0; i < ids.n; i++) {
            const char *t;
            size_t len;
            CHECK_OK(rm_detok_push(&d, tok, ids.ids[i], i + 1 == ids.n, &t, &len));
            /* each piece is whole UTF-8: it never ends inside a character */
            if (len) {
                unsigned char last = (unsigned char)t[len - 1];
                CHECK_MSG(last < 0x80 || (last & 0xC0) == 0x80, "case %zu: a piece ends with a lead byte", c);
            }
            if (n_out + len < sizeof out) memcpy(out + n_out, t, len), n_out += len;
        }
        out[n_out] = 0;
        CHECK_MSG(!strcmp(out, cases[c].want) && d.stopped == cases[c].stopped, "case %zu: got \"%s\" (stopped %d)",
                  c, out, d.stopped);
        rm_detok_free(&d);
        rm_tok_ids_free(&ids);
    }
    rm_tok_free(tok);
}

/* One pool for the forward and the embedder, used from two threads at
 * once: every embedding and every token equals its run on private pools. */
/* The gpt2 tokenizer and a model of its vocabulary (embedders read text);
 * false (both freed, the failure checked) when either is missing. */
static bool gpt2_model(rm_tok **tok, rm_model **m) {
    *tok = NULL, *m = NULL;
    char *path = tokt_family_path("gpt2");
    CHECK_MSG(path != NULL, "the gpt2 tokenizer of the golden set is missing");
    if (!path) return false;
    CHECK_OK(rm_tok_load(path, tok));
    rm_free(path);
    *m = engine_model_vocab(50257);
    if (*tok && *m) return true;
    rm_tok_free(*tok);
    rm_model_free(*m);
    *tok = NULL, *m = NULL;
    return false;
}

typedef struct {
    rm_embedder *emb;
    float out[4][64];
    rm_status st;
} embed_job;

static void *embed_thread(void *arg) {
    embed_job *j = arg;
    const char *texts[4] = {"the owl speaks", "Reverse: abc =>", "a longer sentence about adapters", "x"};
    for (int rep = 0; rep < 20 && j->st == RAMOLE_OK; rep++) j->st = rm_embedder_embed(j->emb, texts, 4, &j->out[0][0]);
    return NULL;
}

TEST(engine_pool_shared_with_embedder) {
    rm_tok *tok = NULL;
    rm_model *m = NULL;
    if (!gpt2_model(&tok, &m)) return;
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 8, 32, 0);
    rm_embed_opts o;
    rm_embed_opts_default(&o);
    o.max_tokens = 32;
    embed_job own = {0}, shared = {0};
    CHECK_OK(rm_embedder_new(m, tok, &o, NULL, &own.emb));
    o.pool = e ? rm_engine_pool(e) : NULL;
    CHECK_OK(rm_embedder_new(m, tok, &o, NULL, &shared.emb));
    static collected alone[N_MIXED], both[N_MIXED];
    memset(alone, 0, sizeof alone);
    memset(both, 0, sizeof both);
    if (e && own.emb && shared.emb) {
        run_alone(m, alone);
        embed_thread(&own);
        int32_t prompts[N_MIXED][32];
        char names[N_MIXED][3][8];
        submit_mixed(e, 0, N_MIXED, prompts, names, both);
        pthread_t th;
        pthread_create(&th, NULL, embed_thread, &shared);
        drain(e);
        pthread_join(th, NULL);
        CHECK_OK(shared.st);
        CHECK_MSG(!memcmp(own.out, shared.out, sizeof own.out), "embeddings differ on the shared pool");
        check_same(both, alone, "engine beside an embedder");
    }
    rm_embedder_free(own.emb);
    rm_embedder_free(shared.emb);
    rm_engine_free(e);
    rm_model_free(m);
    rm_tok_free(tok);
}

/* The step's scratch follows the ranks requests bring: a rank-48 adapter
 * after rank-4..12 ones runs as it does alone; the engine's limit holds. */
TEST(engine_rank_grows) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    collected alone = {0}, after = {0}, small = {0};
    int32_t prompt[32];
    char names[3][8];
    rm_engine_request q;
    int64_t id;
    rm_engine_params p = {.n_threads = 2, .max_seqs = 4, .n_ctx = 64, .step_tokens = 32, .max_adapters = 3,
                          .source = {source_load, &ts}};
    rm_engine *e = NULL;
    CHECK_OK(rm_engine_new(m, &p, &e)); /* first engine: the big adapter alone */
    mixed_request(7, prompt, &q, names, &alone); /* explicit, 2 adapters */
    q.adapters[1] = "big";
    if (e) CHECK_OK(rm_engine_submit(e, &q, &id));
    if (e) drain(e);
    rm_engine_free(e);
    e = NULL;
    CHECK_OK(rm_engine_new(m, &p, &e)); /* second: a small request first, then both at once */
    if (e) {
        rm_engine_request qs;
        mixed_request(1, prompt, &qs, names, &small);
        CHECK_OK(rm_engine_submit(e, &qs, &id));
        CHECK_OK(rm_engine_step(e, &(int){0}));
        mixed_request(7, prompt, &q, names, &after);
        q.adapters[1] = "big";
        CHECK_OK(rm_engine_submit(e, &q, &id));
        drain(e);
    }
    CHECK_MSG(alone.n > 0 && after.n == alone.n && !memcmp(after.toks, alone.toks, (size_t)alone.n * 4),
              "rank 48 after a smaller one: %d tokens against %d alone", after.n, alone.n);
    rm_engine_free(e);
    p.max_rank = 32;
    CHECK_OK(rm_engine_new(m, &p, &e));
    if (e) {
        mixed_request(7, prompt, &q, names, &after);
        q.adapters[1] = "big";
        CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_RANGE);
        CHECK(strstr(ramole_last_error(), "rank 48 is above this engine's limit of 32") != NULL);
    }
    rm_engine_free(e);
    rm_model_free(m);
}

typedef struct {
    rm_adapter_cache *c;
    const char *name;
    rm_status st;
    rm_adapter_handle *h;
} getter;

static void *get_one(void *arg) {
    getter *g = arg;
    g->st = rm_adapter_cache_get(g->c, g->name, &g->h);
    return NULL;
}

/* Callers that miss one name at once read it once and share the entry;
 * when that read fails, each gets the error and none waits forever. */
TEST(engine_adapter_cache_loads_a_name_once) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {.delay_us = 20000};
    rm_adapter_source src = {source_load, &ts};
    rm_adapter_cache *c = NULL;
    CHECK_OK(rm_adapter_cache_new(m, &src, (size_t)1 << 30, RM_TYPE_F32, &c));
    enum { N = 6 };
    for (int round = 0; c && round < 2; round++) {
        getter g[N];
        pthread_t th[N];
        ts.loads = 0;
        for (int i = 0; i < N; i++) {
            g[i] = (getter){c, round ? "nope" : "e5", RAMOLE_OK, NULL};
            pthread_create(&th[i], NULL, get_one, &g[i]);
        }
        for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < N; i++) {
            if (!round) CHECK(g[i].st == RAMOLE_OK && g[i].h == g[0].h);
            else CHECK(g[i].st == RAMOLE_ERR_NOT_FOUND && !g[i].h);
            rm_adapter_cache_release(c, g[i].h);
        }
        if (!round) CHECK_MSG(ts.loads == 1, "%d threads missing one name read it %d times", N, (int)ts.loads);
        else CHECK(ts.loads >= 1 && ts.loads <= N);
    }
    rm_adapter_cache_free(c);
    rm_model_free(m);
}

/* rm_engine_run_all loads adapters on its loader thread, ahead of
 * submission: the driving thread never reads an adapter, and the outputs
 * are those of each request alone. */
TEST(engine_run_all_loads_off_the_driver) {
    rm_model *m = engine_model();
    if (!m) return;
    static collected alone[N_MIXED];
    memset(alone, 0, sizeof alone);
    run_alone(m, alone);
    test_source ts = {.driver = pthread_self(), .watch = true};
    rm_engine *e = new_engine(m, &ts, 16, 48, 0);
    static int32_t prompts[N_MIXED][32];
    static char names[N_MIXED][3][8];
    static collected unused[N_MIXED];
    rm_engine_request qs[N_MIXED];
    const rm_engine_request *ptrs[N_MIXED];
    rm_engine_result res[N_MIXED];
    for (int i = 0; i < N_MIXED; i++) {
        mixed_request(i, prompts[i], &qs[i], names[i], &unused[i]);
        ptrs[i] = &qs[i];
    }
    if (e) {
        CHECK_OK(rm_engine_run_all(e, ptrs, N_MIXED, 8, res, NULL, NULL));
        int bad = 0;
        for (int i = 0; i < N_MIXED; i++) {
            bad += res[i].n_tokens != alone[i].n || res[i].finish != alone[i].fin ||
                   memcmp(res[i].tokens, alone[i].toks, (size_t)alone[i].n * sizeof(int32_t));
            rm_engine_result_free(&res[i]);
        }
        CHECK_MSG(!bad, "run_all: %d of %d requests differ from their runs alone", bad, N_MIXED);
        CHECK_MSG(ts.loads == 10 && ts.driver_loads == 0, "%d loads, %d of them on the driving thread",
                  (int)ts.loads, (int)ts.driver_loads);
        CHECK_OK(rm_engine_check(e));
    }
    rm_engine_free(e);
    rm_model_free(m);
}

typedef struct {
    rm_engine *e;
    const rm_engine_request *q;
    rm_engine_hold *hold;
    rm_status st;
} preload_job;

static void *preload_thread(void *arg) {
    preload_job *j = arg;
    j->st = rm_engine_preload(j->e, j->q, &j->hold);
    return NULL;
}

/* rm_engine_preload from another thread while the driver steps: the hold
 * keeps the adapters cached through evictions (a cache bound of 1 byte
 * evicts everything unheld), the submit then loads nothing, and the tokens
 * are those of the request alone. A name that cannot load fails the
 * preload with the error the submit would give. */
TEST(engine_preload_holds_through_eviction) {
    rm_model *m = engine_model();
    if (!m) return;
    static collected alone[N_MIXED];
    memset(alone, 0, sizeof alone);
    run_alone(m, alone);
    test_source ts = {.driver = pthread_self(), .watch = true};
    rm_engine_params p = {.n_threads = 2, .max_seqs = 4, .n_ctx = 64, .step_tokens = 32, .kv_block = 4,
                          .max_adapters = 3, .max_rank = 12, .adapter_cache_bytes = 1,
                          .source = {source_load, &ts}};
    rm_engine *e = NULL;
    CHECK_OK(rm_engine_new(m, &p, &e));
    if (!e) {
        rm_model_free(m);
        return;
    }
    int32_t prompts[N_MIXED][32];
    char names[N_MIXED][3][8];
    collected got[N_MIXED];
    memset(got, 0, sizeof got);
    rm_engine_request target, other;
    mixed_request(5, prompts[5], &target, names[5], &got[5]); /* router over e5, e0, e3 */
    preload_job j = {.e = e, .q = &target};
    /* others run meanwhile, over other adapters: their loads evict the unheld */
    submit_mixed(e, 1, 5, prompts, names, got);
    pthread_t th;
    pthread_create(&th, NULL, preload_thread, &j);
    drain(e);
    pthread_join(th, NULL);
    CHECK_OK(j.st);
    CHECK(j.hold != NULL);
    for (int i = 7; i <= 10; i++) { /* more churn after the preload */
        mixed_request(i, prompts[i], &other, names[i], &got[i]);
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &other, &id));
        drain(e);
    }
    int driver_before = ts.driver_loads;
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &target, &id));
    CHECK_MSG(ts.driver_loads == driver_before, "the submit after a preload loaded %d adapters",
              ts.driver_loads - driver_before);
    rm_engine_hold_free(e, j.hold);
    drain(e);
    for (int i = 1; i <= 10; i++) {
        if (i == 6) continue;
        CHECK_MSG(got[i].n == alone[i].n && !memcmp(got[i].toks, alone[i].toks, (size_t)alone[i].n * sizeof(int32_t)),
                  "request %d differs from its run alone", i);
    }
    rm_engine_stats st;
    rm_engine_stats_get(e, &st);
    CHECK_MSG(st.adapters.held == 0 && st.adapters.entries == 0, "after the hold: %d held, %d cached",
              st.adapters.held, st.adapters.entries);

    rm_engine_request bad = target;
    bad.adapters[1] = "nope";
    rm_engine_hold *h = NULL;
    CHECK(rm_engine_preload(e, &bad, &h) == RAMOLE_ERR_NOT_FOUND && h == NULL);
    CHECK(strstr(ramole_last_error(), "nope") != NULL);
    CHECK(rm_engine_submit(e, &bad, &id) == RAMOLE_ERR_NOT_FOUND);
    rm_engine_stats_get(e, &st);
    CHECK(st.adapters.held == 0);
    rm_engine_free(e);
    rm_model_free(m);
}

/* While sequences decode, a step carries at most the prefill allowance of
 * prompt tokens: by default as many as it decodes, at least
 * RM_ENGINE_PREFILL_MIN; an explicit count; or (< 0) the whole budget. */
TEST(engine_prefill_allowance_bounds_mixed_steps) {
    rm_model *m = engine_model();
    if (!m) return;
    static const struct {
        int prefill, want;
    } cases[] = {{0, 3 + RM_ENGINE_PREFILL_MIN}, {5, 3 + 5}, {-1, 3 + 50}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        test_source ts = {0};
        rm_engine_params p = {.n_threads = 2, .max_seqs = 8, .n_ctx = 64, .step_tokens = 64, .kv_block = 4,
                              .prefill_tokens = cases[c].prefill, .source = {source_load, &ts}};
        rm_engine *e = NULL;
        CHECK_OK(rm_engine_new(m, &p, &e));
        if (!e) break;
        int32_t shortp[3][3] = {{5, 6, 7}, {5, 6, 8}, {5, 6, 9}}, longp[50]; /* not twins: each computes its own */
        for (int t = 0; t < 50; t++) longp[t] = 1 + t % 90;
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.ignore_eos = true;
        q.max_tokens = 10;
        q.n_tokens = 3;
        int64_t id;
        for (int i = 0; i < 3; i++) {
            q.tokens = shortp[i];
            CHECK_OK(rm_engine_submit(e, &q, &id));
        }
        int n;
        CHECK_OK(rm_engine_step(e, &n)); /* three prompts; all three now decode */
        q.tokens = longp;
        q.n_tokens = 50;
        CHECK_OK(rm_engine_submit(e, &q, &id));
        CHECK_OK(rm_engine_step(e, &n));
        CHECK_MSG(n == cases[c].want, "prefill_tokens %d: the mixed step ran %d tokens, want %d", cases[c].prefill,
                  n, cases[c].want);
        drain(e);
        rm_engine_free(e);
    }
    rm_model_free(m);
}

/* ---- embeddings as prompt work of the steps ---------------------------------------------- */

typedef struct {
    float *out;          /* [hidden] */
    int d;
    rm_finish_reason fin;
} embed_sink;

static void embed_collect(const rm_engine_event *ev, void *user) {
    embed_sink *k = user;
    if (ev->finish == RM_FINISH_NONE) return;
    k->fin = ev->finish;
    if (ev->hidden && ev->n_hidden == k->d) memcpy(k->out, ev->hidden, (size_t)k->d * sizeof *k->out);
}

/* An embedder runner over an engine driven on the calling thread; on its
 * first call it also submits the mixed generations, so that the
 * embeddings share their steps. */
typedef struct {
    rm_engine *e;
    int d;
    bool with_mixed;
    int32_t (*prompts)[32];
    char (*names)[3][8];
    collected *gen;
} engine_runner;

static rm_status run_in_engine(void *user, int n, const int32_t *const *tokens, const int *n_tokens, const int *from,
                               const int *shared, int layer, float *out) {
    engine_runner *r = user;
    if (r->with_mixed) submit_mixed(r->e, 0, N_MIXED, r->prompts, r->names, r->gen);
    r->with_mixed = false;
    embed_sink sink[16];
    if (n > 16) return rm_err(RAMOLE_ERR_RANGE, "test runner: %d texts", n);
    for (int i = 0; i < n; i++) {
        sink[i] = (embed_sink){.out = out + (size_t)i * (size_t)r->d, .d = r->d};
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.tokens = tokens[i], q.n_tokens = n_tokens[i];
        q.embed = true, q.embed_layer = layer, q.embed_from = from[i], q.embed_shared = shared[i];
        q.on_event = embed_collect, q.user = &sink[i];
        int64_t id;
        RM_TRY(rm_engine_submit(r->e, &q, &id));
    }
    drain(r->e);
    for (int i = 0; i < n; i++)
        if (sink[i].fin != RM_FINISH_LENGTH) return rm_err(RAMOLE_ERR_INTERNAL, "test runner: text %d unfinished", i);
    return RAMOLE_OK;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double w = 0, s = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i])), s = fmax(s, fabs((double)b[i]));
    *scale = s;
    return w;
}

/* An embedding run by the engine, alone, beside 64 mixed generations, or
 * preempted from a small KV pool, pools the same hidden states as the
 * embedder's own context (to float rounding of batched products), for
 * every pooling and for the final and an inner layer; the generations'
 * tokens do not change. */
TEST(engine_embeddings_match_the_embedder) {
    rm_tok *tok = NULL;
    rm_model *m = NULL;
    if (!gpt2_model(&tok, &m)) return;
    static collected alone[N_MIXED], beside[N_MIXED];
    memset(alone, 0, sizeof alone);
    run_alone(m, alone);
    const char *texts[5] = {"the owl speaks", "Reverse: abc =>", "a longer sentence about adapters and retrieval",
                            "x", "Translate to French: the cat sat on the mat, and then it slept"};
    enum { NT = 5, D = 64 };
    static const struct {
        int layer;
        rm_pooling pooling;
        int max_seqs, kv_blocks;
        bool mixed;
    } cases[] = {
        {RM_HIDDEN_FINAL, RM_POOL_MEAN, 16, 0, false}, {RM_HIDDEN_FINAL, RM_POOL_MEAN, 16, 0, true},
        {1, RM_POOL_LAST, 16, 0, true},                {0, RM_POOL_MEAN_ALL, 4, 0, false},
        {RM_HIDDEN_FINAL, RM_POOL_MEAN, 8, 12, true}, /* 12 blocks of 4: preemptions */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        rm_embed_opts o;
        rm_embed_opts_default(&o);
        o.max_tokens = 24;
        o.layer = cases[c].layer;
        o.pooling = cases[c].pooling;
        rm_embedder *own = NULL, *run = NULL;
        CHECK_OK(rm_embedder_new(m, tok, &o, NULL, &own));
        test_source ts = {0};
        rm_engine *e = new_engine(m, &ts, cases[c].max_seqs, 48, cases[c].kv_blocks);
        int32_t prompts[N_MIXED][32];
        char names[N_MIXED][3][8];
        memset(beside, 0, sizeof beside);
        engine_runner er = {e, D, cases[c].mixed, prompts, names, beside};
        o.run = run_in_engine, o.run_user = &er;
        CHECK_OK(rm_embedder_new(m, tok, &o, NULL, &run));
        float want[NT][D], got[NT][D];
        if (own && run && e) {
            CHECK_OK(rm_embedder_pool(own, texts, NT, &want[0][0]));
            CHECK_OK(rm_embedder_pool(run, texts, NT, &got[0][0]));
            double scale, w = max_abs_diff(&got[0][0], &want[0][0], NT * D, &scale);
            CHECK_MSG(scale > 0 && w <= 1e-5 * scale, "case %zu: engine embeddings differ by %g (scale %g)", c, w,
                      scale);
            if (cases[c].mixed) check_same(beside, alone, "generations beside embeddings");
            /* again: the instruction's rows are kept now, and every text
             * but the pooling that reads them starts after them */
            rm_engine_stats st0, st;
            rm_engine_stats_get(e, &st0);
            CHECK_OK(rm_embedder_pool(run, texts, NT, &got[0][0]));
            w = max_abs_diff(&got[0][0], &want[0][0], NT * D, &scale);
            CHECK_MSG(w <= 1e-5 * scale, "case %zu: embeddings after a kept prefix differ by %g (scale %g)", c, w,
                      scale);
            rm_engine_stats_get(e, &st);
            int64_t hits = st.prefix_hits - st0.prefix_hits;
            if (cases[c].pooling == RM_POOL_MEAN_ALL) CHECK_MSG(!st.prefix_hits, "case %zu: mean_all skipped rows", c);
            else CHECK_MSG(hits >= NT, "case %zu: %lld of %d texts started after the kept prefix", c, (long long)hits,
                           NT);
            if (cases[c].kv_blocks) CHECK_MSG(st.preemptions > 0, "case %zu: no preemption happened", c);
            CHECK(st.kv_blocks_used == 0 && st.running == 0 && st.waiting == 0);
        }
        rm_embedder_free(own);
        rm_embedder_free(run);
        rm_engine_free(e);
    }
    rm_model_free(m);
    rm_tok_free(tok);
}

/* Embeddings of two layers in one engine each get their own layer's
 * rows; bad embedding requests fail alone, naming the problem. */
TEST(engine_embedding_layers_and_bad_requests) {
    rm_model *m = engine_model();
    if (!m) return;
    test_source ts = {0};
    rm_engine *e = new_engine(m, &ts, 8, 32, 0);
    if (!e) {
        rm_model_free(m);
        return;
    }
    int32_t prompt[12];
    for (int t = 0; t < 12; t++) prompt[t] = 3 + 7 * t % 90;
    int layers[3] = {RM_HIDDEN_FINAL, 1, RM_HIDDEN_FINAL};
    float together[3][64], apart[3][64];
    for (int pass = 0; pass < 2; pass++) {
        embed_sink sink[3];
        for (int i = 0; i < 3; i++) {
            sink[i] = (embed_sink){.out = pass ? apart[i] : together[i], .d = 64};
            rm_engine_request q;
            rm_engine_request_init(&q);
            q.tokens = prompt, q.n_tokens = 12;
            q.embed = true, q.embed_layer = layers[i], q.embed_from = 2;
            q.on_event = embed_collect, q.user = &sink[i];
            int64_t id;
            CHECK_OK(rm_engine_submit(e, &q, &id));
            if (pass) drain(e); /* one at a time */
        }
        drain(e);
        for (int i = 0; i < 3; i++) CHECK(sink[i].fin == RM_FINISH_LENGTH);
    }
    double scale;
    for (int i = 0; i < 3; i++)
        CHECK_MSG(max_abs_diff(together[i], apart[i], 64, &scale) <= 1e-5 * scale, "embedding %d of layer %d differs "
                  "when run beside another layer's", i, layers[i]);
    CHECK_MSG(max_abs_diff(together[0], together[1], 64, &scale) > 1e-3, "layer 1 gave the final layer's rows");

    /* A shared prefix of 2 tokens, one at a time, layer 1 first: its rows
     * hold one layer, so the final layer's first embedding computes its
     * own (and keeps them), and the second starts after them. Layer 1
     * again then reads the first of every layer's rows, K and V. */
    rm_engine_stats st0, st1;
    rm_engine_stats_get(e, &st0);
    float shared[3][64];
    static const int order[4] = {1, 0, 2, 1};
    for (int o = 0; o < 4; o++) {
        int i = order[o];
        embed_sink sink = {.out = shared[i], .d = 64};
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.tokens = prompt, q.n_tokens = 12;
        q.embed = true, q.embed_layer = layers[i], q.embed_from = 2, q.embed_shared = 2;
        q.on_event = embed_collect, q.user = &sink;
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
        drain(e);
        CHECK(sink.fin == RM_FINISH_LENGTH);
        CHECK_MSG(max_abs_diff(shared[i], apart[i], 64, &scale) <= 1e-5 * scale, "embedding %d of layer %d differs "
                  "after a kept prefix", i, layers[i]);
    }
    rm_engine_stats_get(e, &st1);
    CHECK_MSG(st1.prefix_hits - st0.prefix_hits == 2 && st1.prefix_tokens - st0.prefix_tokens == 4,
              "%lld prefix hits of %lld tokens (want 2 of 4)", (long long)(st1.prefix_hits - st0.prefix_hits),
              (long long)(st1.prefix_tokens - st0.prefix_tokens));

    rm_engine_request q;
    rm_engine_request_init(&q);
    q.tokens = prompt, q.n_tokens = 12;
    q.embed = true;
    int64_t id;
    q.embed_layer = 3;
    CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "embedding layer 3") != NULL);
    q.embed_layer = RM_HIDDEN_FINAL, q.embed_from = 12;
    CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "embedding from token 12") != NULL);
    q.embed_from = 2, q.embed_shared = 3;
    CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "shared prefix of 3 tokens") != NULL);
    q.embed_shared = 0;
    q.embed_from = 0, q.mode = RM_COMPOSE_EXPLICIT, q.n_adapters = 1, q.adapters[0] = "e1";
    CHECK_ERR(rm_engine_submit(e, &q, &id), RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "base alone") != NULL);
    CHECK(rm_engine_pending(e) == 0);
    rm_engine_free(e);
    rm_model_free(m);
}
