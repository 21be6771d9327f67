/*
 * test_train_loop.c — the shared training loop (src/train/loop.h): the
 * router's random LoRA dropout against its contract and its rates, the
 * held-out experts, and rm_train_run's events, held-out loss and a run
 * stopped and resumed from its checkpoint that ends bit-identical to one
 * run straight through (base and router training); router-eval's means
 * against uniform gates and experts of known output ratio.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "lora/compose.h"
#include "train/loop.h"
#include "train/router_eval.h"

/* ---- random LoRA dropout ------------------------------------------------------ */

static rm_expert_lists lists_of(int n, const int32_t (*names)[RM_TRAIN_MAX_K], const int32_t *counts) {
    rm_expert_lists l = {.n_examples = n};
    l.idx = rm_calloc((size_t)n * RM_TRAIN_MAX_K, sizeof *l.idx);
    l.n = rm_calloc((size_t)n, sizeof *l.n);
    for (int i = 0; l.idx && l.n && i < n; i++) {
        l.n[i] = counts[i];
        memcpy(l.idx + (size_t)i * RM_TRAIN_MAX_K, names[i], RM_TRAIN_MAX_K * sizeof(int32_t));
    }
    return l;
}

/* |observed - expected| within 5 standard deviations of a binomial rate. */
static void check_rate(const char *what, long hits, long n, double p) {
    double got = (double)hits / (double)n, sd = sqrt(p * (1 - p) / (double)n);
    CHECK_MSG(fabs(got - p) <= 5 * sd + 1e-12, "%s: rate %.4f, expected %.4f (sd %.4f)", what, got, p, sd);
}

TEST(train_expert_draw_contract_and_rates) {
    enum { POOL = 5, N = 40000 };
    static const int32_t names[3][RM_TRAIN_MAX_K] = {{1, 3}, {0}, {0}};
    static const int32_t counts[3] = {2, 0, 1}; /* {1, 3}; the whole pool; {0} */
    rm_expert_lists l = lists_of(3, names, counts);
    if (!l.idx || !l.n) goto out;
    const double P = 0.3;
    rm_expert_draw d = {.n_pool = POOL, .max_k = POOL, .dropout = P, .lists = &l};
    long has[3][POOL] = {{0}}, empty = 0, bad = 0;
    uint64_t rng = 42;
    for (long it = 0; it < N; it++)
        for (int ex = 0; ex < 3; ex++) {
            int32_t out[RM_TRAIN_MAX_K], n = -1;
            rm_expert_draw_one(&d, ex, &rng, out, &n);
            bool seen[POOL] = {0};
            if (n < 1) empty++;
            for (int a = 0; a < n; a++) {
                if (out[a] < 0 || out[a] >= POOL || seen[out[a]]) bad++;
                else seen[out[a]] = true, has[ex][out[a]]++;
            }
        }
    CHECK_MSG(empty == 0 && bad == 0, "%ld empty draws, %ld out-of-pool or repeated experts", empty, bad);
    /* example {1, 3}: 3 stays with 1 - P; 1 too, or as the fallback when
     * both listed are dropped and no other is added; the others come in with P */
    double q = 1 - P, none = P * P * q * q * q;
    check_rate("listed expert 3", has[0][3], N, q);
    check_rate("listed expert 1 (first, the fallback)", has[0][1], N, q + none);
    for (int e = 0; e < POOL; e++)
        if (e != 1 && e != 3) check_rate("unlisted expert added", has[0][e], N, P);
    /* the whole pool: every member kept with 1 - P, the first also as the fallback */
    check_rate("pool member 0 (fallback)", has[1][0], N, q + pow(P, POOL));
    for (int e = 1; e < POOL; e++) check_rate("pool member kept", has[1][e], N, q);

    /* P = 0: exactly the list, in pool order, and the rng untouched */
    d.dropout = 0;
    uint64_t before = rng;
    int32_t out[RM_TRAIN_MAX_K], n = 0;
    rm_expert_draw_one(&d, 0, &rng, out, &n);
    CHECK(n == 2 && out[0] == 1 && out[1] == 3 && rng == before);
    rm_expert_draw_one(&d, 1, &rng, out, &n);
    CHECK(n == POOL && rng == before);
    for (int a = 0; a < n; a++) CHECK(out[a] == a);

    /* max_k: the whole pool cut to 2 by uniform removals: each member in 2/5 of the draws */
    d.max_k = 2;
    long cnt[POOL] = {0};
    for (long it = 0; it < N; it++) {
        rm_expert_draw_one(&d, 1, &rng, out, &n);
        CHECK(n == 2);
        for (int a = 0; a < n && a < 2; a++) cnt[out[a]]++;
    }
    for (int e = 0; e < POOL; e++) check_rate("member kept by the cut to max_k", cnt[e], N, 2.0 / POOL);

    /* deterministic for a seed; another seed draws otherwise */
    d.dropout = P, d.max_k = 3;
    uint64_t r1 = 7, r2 = 7, r3 = 8;
    bool same = true, differs = false;
    for (int it = 0; it < 200; it++) {
        int32_t a[RM_TRAIN_MAX_K], b[RM_TRAIN_MAX_K], c[RM_TRAIN_MAX_K], na, nb, nc;
        rm_expert_draw_one(&d, it % 3, &r1, a, &na);
        rm_expert_draw_one(&d, it % 3, &r2, b, &nb);
        rm_expert_draw_one(&d, it % 3, &r3, c, &nc);
        same = same && na == nb && !memcmp(a, b, (size_t)na * sizeof *a) && na <= 3;
        differs = differs || na != nc || memcmp(a, c, (size_t)na * sizeof *a);
    }
    CHECK(same && r1 == r2);
    CHECK(differs);

    /* held-out: the list as given, else the first max_k of the pool */
    rm_expert_held_out(&d, 0, out, &n);
    CHECK(n == 2 && out[0] == 1 && out[1] == 3);
    rm_expert_held_out(&d, 1, out, &n);
    CHECK(n == 3 && out[0] == 0 && out[1] == 1 && out[2] == 2);
    d.lists = NULL;
    rm_expert_held_out(&d, 0, out, &n);
    CHECK(n == 3 && out[2] == 2);
out:
    rm_expert_lists_free(&l);
}

/* ---- rm_train_run --------------------------------------------------------------- */

static rm_model *loop_model(uint64_t seed) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = 40, c.hidden = 16, c.ffn = 32, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1;
    c.head_dim = 8, c.rope.n_rot = 8, c.max_pos = 32;
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, seed, 0.3f, &m));
    return m;
}

typedef struct {
    int n_start, n_step, n_eval, n_done, last_step;
    double loss[64], val[64], done_val;
    int fail_at;  /* STEP event that returns an error (0: none) */
    bool order_ok;
} events;

static rm_status record(const rm_train_progress *p, void *user) {
    events *e = user;
    switch (p->event) {
    case RM_TRAIN_EVENT_START: e->n_start++; e->last_step = (int)p->first_step; break;
    case RM_TRAIN_EVENT_EVAL: e->n_eval++; if (p->step < 64) e->val[p->step] = p->val_loss; break;
    case RM_TRAIN_EVENT_STEP:
        e->n_step++;
        e->order_ok = e->order_ok && p->step == e->last_step + 1;
        e->last_step = (int)p->step;
        if (p->step < 64) e->loss[p->step] = p->loss;
        if (p->step == e->fail_at) return rm_err(RAMOLE_ERR_IO, "the caller stops here");
        break;
    case RM_TRAIN_EVENT_NAN: break;
    case RM_TRAIN_EVENT_DONE: e->n_done++; e->done_val = p->val_loss; break;
    }
    return RAMOLE_OK;
}

/* Three runs of 12 steps per kind: straight through; stopped at 5 with a
 * checkpoint; resumed from it on a fresh tm. */
static void run_and_resume(bool router) {
    rm_model *m = loop_model(router ? 5 : 4);
    rm_adapter *ex[3] = {0}, *ra = NULL;
    rm_dataset *train = NULL, *val = NULL;
    rm_tm_f32 *tm[3] = {0};
    rm_expert_lists l = {0};
    if (!m) return;
    int32_t stream[400];
    uint64_t s = 99;
    for (int i = 0; i < 400; i++) stream[i] = (int32_t)(rm_rng_next(&s) % 40);
    CHECK_OK(rm_data_pack(stream, 400, 8, &train));
    if (train) CHECK_OK(rm_data_split(train, 0.2, 3, &val));
    if (!train || !val) goto out;
    CHECK(train->n <= 64);
    if (train->n > 64) goto out;
    rm_train_params tp = {.kind = RM_TRAIN_FULL, .max_batch = 4, .max_seq = 8, .n_threads = 2};
    rm_expert_draw draw = {0};
    if (router) {
        for (int j = 0; j < 3; j++) CHECK_OK(rm_adapter_random(m, 2, 4.0f, 0x7f, 10 + j, 0.3f, &ex[j]));
        CHECK_OK(rm_adapter_random(m, 2, 2.0f, 0x7f, 20, 0.3f, &ra));
        if (!ex[0] || !ex[1] || !ex[2] || !ra) goto out;
        static const int32_t names[2][RM_TRAIN_MAX_K] = {{2, 0}, {1}};
        int32_t counts[64], idx[64][RM_TRAIN_MAX_K];
        for (int i = 0; i < train->n && i < 64; i++) {
            counts[i] = i % 3 == 2 ? 0 : i % 3 + 1;
            memcpy(idx[i], names[i % 2], sizeof idx[i]);
        }
        l = lists_of(train->n < 64 ? train->n : 64, (const int32_t (*)[RM_TRAIN_MAX_K])idx, counts);
        draw = (rm_expert_draw){.n_pool = 3, .max_k = 2, .dropout = 0.4, .lists = &l};
        tp = (rm_train_params){.kind = RM_TRAIN_ROUTER, .max_batch = 4, .max_seq = 8, .n_threads = 2,
                               .experts = (const rm_adapter *const *)ex, .n_experts = 3, .router = ra, .max_k = 2};
    }
    for (int k = 0; k < 3; k++) CHECK_OK(rm_tm_f32_new(m, &tp, &tm[k]));
    if (!tm[0] || !tm[1] || !tm[2]) goto out;
    char *ck = rm_path_join(rm_test_tmp_dir(), router ? "loop_router.ckpt" : "loop_full.ckpt");
    events e[3];
    memset(e, 0, sizeof e);
    rm_train_run_params p = {.train = train, .val = val, .seq = 8, .pad = 0, .steps = 12, .batch = 4, .accum = 2,
                             .lr = 3e-3, .weight_decay = 0.01, .min_lr_ratio = 0.1, .clip = 1, .warmup = 2, .seed = 9,
                             .eval_every = 4, .experts = router ? &draw : NULL, .progress = record};
    for (int k = 0; k < 3; k++) e[k].order_ok = true;
    p.user = &e[0];
    CHECK_OK(rm_train_run(tm[0], &p));
    p.user = &e[1], p.checkpoint = ck, p.stop_at = 5;
    CHECK_OK(rm_train_run(tm[1], &p));
    p.user = &e[2], p.stop_at = 0, p.resume = true;
    CHECK_OK(rm_train_run(tm[2], &p));
    size_t n;
    float *a = rm_tm_f32_params(tm[0], &n), *b = rm_tm_f32_params(tm[1], NULL), *c = rm_tm_f32_params(tm[2], NULL);
    CHECK_MSG(memcmp(a, c, n * sizeof *a) == 0, "%s: the resumed run ends elsewhere than the straight one",
              router ? "router" : "full");
    CHECK_MSG(memcmp(a, b, n * sizeof *a) != 0, "the run stopped at 5 equals the whole run");
    /* events: one start, steps 1..12 in order (6..12 after the resume), held-out losses at 4, 8 and 12 */
    CHECK(e[0].n_start == 1 && e[0].n_step == 12 && e[0].n_eval == 3 && e[0].n_done == 1 && e[0].order_ok);
    CHECK(e[1].n_step == 5 && e[1].n_eval == 2 && e[1].n_done == 1 && e[1].order_ok); /* 4 and the last, 5 */
    CHECK(e[2].n_step == 7 && e[2].n_eval == 2 && e[2].order_ok && e[2].last_step == 12);
    for (int st = 6; st <= 12; st++) CHECK_MSG(e[2].loss[st] == e[0].loss[st], "step %d: loss differs", st);
    CHECK(e[2].val[8] == e[0].val[8] && e[2].val[12] == e[0].val[12]);
    /* the held-out loss is rm_train_eval_loss of the final parameters */
    rm_batchbuf bb = {0};
    CHECK_OK(rm_batchbuf_init(&bb, 4, 8));
    rm_expert_draw vd = draw;
    vd.lists = NULL;
    double v = NAN;
    CHECK_OK(rm_train_eval_loss(tm[0], val, &bb, 0, router ? &vd : NULL, &v));
    CHECK(v == e[0].done_val && v == e[0].val[12] && isfinite(v));
    rm_batchbuf_free(&bb);
    /* the callback stops the run with its status; resuming needs a checkpoint file */
    events stop = {.fail_at = 3, .order_ok = true};
    p.user = &stop, p.resume = false, p.checkpoint = NULL;
    CHECK_ERR(rm_train_run(tm[1], &p), RAMOLE_ERR_IO);
    CHECK(stop.n_step == 3 && stop.n_done == 0);
    char *none = rm_path_join(rm_test_tmp_dir(), "loop_none.ckpt");
    p.checkpoint = none, p.resume = true;
    CHECK_ERR(rm_train_run(tm[1], &p), RAMOLE_ERR_NOT_FOUND);
    rm_free(none);
    rm_free(ck);
out:
    for (int k = 0; k < 3; k++) rm_tm_f32_free(tm[k]);
    for (int j = 0; j < 3; j++) rm_adapter_free(ex[j]);
    rm_adapter_free(ra);
    rm_expert_lists_free(&l);
    rm_dataset_free(train);
    rm_dataset_free(val);
    rm_model_free(m);
}

TEST(train_run_resumes_bit_exactly_full) { run_and_resume(false); }
TEST(train_run_resumes_bit_exactly_router) { run_and_resume(true); }

/* ---- router-eval ------------------------------------------------------------------ */

static rm_status keep_second_example(const rm_router_eval_example *e, void *user) {
    rm_router_eval_example *keep = user;
    if (e->line == 2) *keep = *e;
    return RAMOLE_OK;
}

/*
 * A router with B_r = 0 scores every expert 0: the gates are uniform, 1/K
 * at every module and position. Expert 1 is expert 0 with B times 3, so
 * its output is 3x expert 0's everywhere and its share of the experts'
 * output is 3/4. The picks follow: ties go to expert 0, the share to 1.
 */
TEST(train_router_eval_uniform_gates_and_shares) {
    rm_model *m = loop_model(6);
    rm_adapter *pool[2] = {0}, *router = NULL;
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    rm_dataset d = {0};
    if (!m) return;
    CHECK_OK(rm_adapter_random(m, 2, 4.0f, 0x7f, 31, 0.3f, &pool[0]));
    CHECK_OK(rm_adapter_random(m, 2, 4.0f, 0x7f, 31, 0.3f, &pool[1]));
    CHECK_OK(rm_adapter_random(m, 2, 2.0f, 0x7f, 32, 0.3f, &router));
    if (!pool[0] || !pool[1] || !router) goto out;
    rm_free(pool[0]->name), rm_free(pool[1]->name);
    pool[0]->name = rm_strdup("zero"), pool[1]->name = rm_strdup("three");
    for (int i = 0; i < m->cfg.n_layers * RM_TARGET_COUNT; i++) {
        int64_t din, dout;
        rm_target_dims(&m->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
        size_t nb = (size_t)dout * (size_t)router->mods[i].rank;
        memset(router->mods[i].B, 0, nb * sizeof(float));
        for (size_t k = 0; k < nb; k++) ((float *)pool[1]->mods[i].B)[k] *= 3.0f;
    }
    /* two examples of 7 tokens, prompts of 3 and 5; the first names "zero", the second nothing */
    d.n = d.cap = 2;
    d.ex = rm_calloc(2, sizeof *d.ex);
    if (!d.ex) goto out;
    for (int i = 0; i < 2; i++) {
        rm_example *e = &d.ex[i];
        e->n = 7, e->n_prompt = 3 + 2 * i, e->line = i + 1;
        e->tokens = rm_malloc(7 * sizeof *e->tokens);
        for (int t = 0; e->tokens && t < 7; t++) e->tokens[t] = (int32_t)((t * 7 + i * 3 + 1) % 40);
    }
    d.ex[0].n_adapters = 1;
    d.ex[0].adapters = rm_malloc(sizeof(char *));
    if (d.ex[0].adapters) d.ex[0].adapters[0] = rm_strdup("zero");
    rm_ctx_params cp = {.n_ctx = 8, .n_seq = 1, .n_batch = 8, .n_logits = 1, .n_threads = 2};
    CHECK_OK(rm_lora_ctx_new(m, &cp, 2, 2, &ctx, &ls));
    if (!ctx) goto out;
    rm_composition comp = {.mode = RM_COMPOSE_ROUTER, .k = 2, .router = router, .experts = {pool[0], pool[1]}};
    CHECK_OK(rm_lora_set(ls, 0, &comp));
    rm_router_eval_summary sum;
    rm_router_eval_example second = {0};
    CHECK_OK(rm_router_eval(ctx, ls, pool, 2, &d, keep_second_example, &second, &sum));
    CHECK(second.line == 2 && second.expected == NULL);
    for (int s = 0; s < RM_EVAL_SPAN_COUNT; s++) {
        for (int p = 0; p < 2; p++) {
            CHECK_NEAR(second.weights[RM_EVAL_DEPTH_EVERY][s][p], 0.5, 1e-6);
            CHECK_NEAR(second.weights[RM_EVAL_DEPTH_LAST][s][p], 0.5, 1e-6);
        }
        CHECK_NEAR(second.weights[RM_EVAL_DEPTH_SHARE][s][0], 0.25, 1e-4);
        CHECK_NEAR(second.weights[RM_EVAL_DEPTH_SHARE][s][1], 0.75, 1e-4);
        CHECK(second.picked[RM_EVAL_DEPTH_SHARE][s] == 1 && second.picked[RM_EVAL_DEPTH_EVERY][s] == 0);
    }
    /* only the first example names its adapter: right where the pick is expert 0 */
    CHECK(sum.examples == 1);
    for (int s = 0; s < RM_EVAL_SPAN_COUNT; s++) {
        CHECK(sum.right[RM_EVAL_DEPTH_EVERY][s] == 1 && sum.right[RM_EVAL_DEPTH_LAST][s] == 1);
        CHECK(sum.right[RM_EVAL_DEPTH_SHARE][s] == 0);
        CHECK(rm_router_eval_accuracy(&sum, RM_EVAL_DEPTH_LAST, s) == 1.0);
    }
    CHECK(!strcmp(rm_eval_span_name(RM_EVAL_SPAN_ANSWER), "answer") && !strcmp(rm_eval_depth_suffix(RM_EVAL_DEPTH_SHARE), "_share"));
out:
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    for (int i = 0; i < d.n && d.ex; i++) {
        rm_free(d.ex[i].tokens);
        for (int a = 0; a < d.ex[i].n_adapters && d.ex[i].adapters; a++) rm_free(d.ex[i].adapters[a]);
        rm_free(d.ex[i].adapters);
    }
    rm_free(d.ex);
    rm_adapter_free(router);
    rm_adapter_free(pool[0]);
    rm_adapter_free(pool[1]);
    rm_model_free(m);
}
