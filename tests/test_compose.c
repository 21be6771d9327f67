/*
 * test_compose.c — LoRA composition against naive references: at the
 * module level (a batch of tokens from sequences in every mode, compared
 * with expert outputs built in full, per token, in double), and at the
 * model level (one adapter = the merged model; mixture = explicit 1/k; a
 * batch of 16 sequences with different adapter sets, ranks and modes = each
 * sequence alone). Routers that pool their gates over the prompt: step by
 * step against a naive reference, the same in chunks and batches, through
 * ramole_model_logits and the router evaluation.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "lora/compose.h"
#include "train/router_eval.h"

static rm_model_config small_config(void) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = 80;
    c.hidden = 48;
    c.ffn = 72;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 12;
    c.rope.n_rot = 12;
    c.max_pos = 64;
    return c;
}

static const unsigned ALL = (1u << RM_TARGET_COUNT) - 1;
#define BIT(t) (1u << (t))

/* v = s B (A x) in double; zero when the module is absent. */
static void expert_out(const rm_lora_module *md, const float *x, int64_t din, int64_t dout, double *v) {
    double u[RM_LORA_MAX_RANK];
    for (int64_t o = 0; o < dout; o++) v[o] = 0;
    if (!md->rank) return;
    for (int k = 0; k < md->rank; k++) {
        u[k] = 0;
        for (int64_t i = 0; i < din; i++) u[k] += (double)rm_lora_elem(md, md->A, (size_t)(k * din + i)) * x[i];
    }
    for (int64_t o = 0; o < dout; o++)
        for (int k = 0; k < md->rank; k++) v[o] += md->scale * (double)rm_lora_elem(md, md->B, (size_t)(o * md->rank + k)) * u[k];
}

/* A router's raw scores for one token, from the experts' outputs v_j built
 * in full: z_j = <A_r x, B_r^T v_j> / sqrt(r_r) (0 where the router does
 * not adapt the module). */
static void naive_scores(const rm_composition *c, int layer, rm_target t, const rm_model_config *cfg, const float *x,
                         double *z) {
    int64_t din, dout;
    rm_target_dims(cfg, t, &din, &dout);
    double *v = malloc((size_t)dout * sizeof *v);
    const rm_lora_module *R = rm_adapter_mod(c->router, layer, t);
    double q[RM_LORA_MAX_RANK];
    for (int a = 0; a < R->rank; a++) {
        q[a] = 0;
        for (int64_t i = 0; i < din; i++) q[a] += (double)rm_lora_elem(R, R->A, (size_t)(a * din + i)) * x[i];
    }
    for (int j = 0; j < c->k; j++) {
        expert_out(rm_adapter_mod(c->experts[j], layer, t), x, din, dout, v);
        z[j] = 0;
        for (int a = 0; a < R->rank; a++) {
            double key = 0;
            for (int64_t o = 0; o < dout; o++) key += (double)rm_lora_elem(R, R->B, (size_t)(o * R->rank + a)) * v[o];
            z[j] += q[a] * key;
        }
        z[j] = R->rank ? z[j] / sqrt((double)R->rank) : 0;
    }
    free(v);
}

/* A router's retrieval prior on expert j: lambda r_j (0 without). */
static double prior_of(const rm_composition *c, int j) {
    return (double)c->router->retrieval_prior * (double)c->retrieval[j];
}

static void softmax_d(double *w, int k) {
    double mx = -1e300, sum = 0;
    for (int j = 0; j < k; j++) mx = fmax(mx, w[j]);
    for (int j = 0; j < k; j++) sum += (w[j] = exp(w[j] - mx));
    for (int j = 0; j < k; j++) w[j] /= sum;
}

/* delta = sum_j w_j v_j over the first k experts. */
static void naive_gated(const rm_composition *c, int k, int layer, rm_target t, const rm_model_config *cfg,
                        const float *x, const double *w, double *delta) {
    int64_t din, dout;
    rm_target_dims(cfg, t, &din, &dout);
    double *v = malloc((size_t)dout * sizeof *v);
    for (int64_t o = 0; o < dout; o++) delta[o] = 0;
    for (int j = 0; j < k; j++) {
        expert_out(rm_adapter_mod(c->experts[j], layer, t), x, din, dout, v);
        for (int64_t o = 0; o < dout; o++) delta[o] += w[j] * v[o];
    }
    free(v);
}

/* The naive composed delta for one token. */
static void naive_delta(const rm_composition *c, int layer, rm_target t, const rm_model_config *cfg,
                        const float *x, double *delta, double *router_w) {
    int64_t din, dout;
    rm_target_dims(cfg, t, &din, &dout);
    for (int64_t o = 0; o < dout; o++) delta[o] = 0;
    if (c->mode == RM_COMPOSE_NONE) return;
    int k = c->mode == RM_COMPOSE_SELECTION ? 1 : c->k;
    if (c->mode == RM_COMPOSE_FUSION) {
        /* build the averaged matrices in full, ranks padded */
        int r = 0;
        for (int j = 0; j < k; j++) {
            int rj = rm_adapter_mod(c->experts[j], layer, t)->rank;
            if (rj > r) r = rj;
        }
        double *Af = calloc((size_t)(r ? r : 1) * din, sizeof *Af), *Bf = calloc((size_t)dout * (r ? r : 1), sizeof *Bf);
        for (int j = 0; j < k; j++) {
            const rm_lora_module *md = rm_adapter_mod(c->experts[j], layer, t);
            for (int kk = 0; kk < md->rank; kk++)
                for (int64_t i = 0; i < din; i++) Af[kk * din + i] += rm_lora_elem(md, md->A, (size_t)(kk * din + i)) / (double)k;
            for (int64_t o = 0; o < dout; o++)
                for (int kk = 0; kk < md->rank; kk++) Bf[o * r + kk] += md->scale * rm_lora_elem(md, md->B, (size_t)(o * md->rank + kk)) / (double)k;
        }
        for (int kk = 0; kk < r; kk++) {
            double u = 0;
            for (int64_t i = 0; i < din; i++) u += Af[kk * din + i] * x[i];
            for (int64_t o = 0; o < dout; o++) delta[o] += Bf[o * r + kk] * u;
        }
        free(Af), free(Bf);
        return;
    }
    double w[RM_LORA_MAX_K];
    if (c->mode == RM_COMPOSE_ROUTER) {
        naive_scores(c, layer, t, cfg, x, w);
        for (int j = 0; j < k; j++) w[j] += prior_of(c, j);
        softmax_d(w, k);
        if (router_w) memcpy(router_w, w, (size_t)k * sizeof *w);
    }
    for (int j = 0; j < k; j++)
        w[j] = c->mode == RM_COMPOSE_EXPLICIT ? c->weights[j]
             : c->mode == RM_COMPOSE_MIXTURE ? 1.0 / k
             : c->mode == RM_COMPOSE_ROUTER ? w[j] : 1.0;
    naive_gated(c, k, layer, t, cfg, x, w, delta);
}

static uint64_t lcg(uint64_t *s) { return *s = *s * 6364136223846793005ull + 1442695040888963407ull; }
static float frand(uint64_t *s) { return (float)((lcg(s) >> 40) / 16777216.0 * 2.0 - 1.0); }

TEST(compose_module_matches_naive_for_every_mode_in_one_batch) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 1, 0.1f, &m));
    if (!m) return;
    /* experts of different ranks and targets; a router on every target */
    rm_adapter *e[5] = {0}, *router = NULL;
    int ranks[5] = {4, 8, 2, 16, 5};
    unsigned masks[5] = {BIT(RM_TARGET_Q) | BIT(RM_TARGET_V), ALL, ALL & ~BIT(RM_TARGET_O), ALL,
                         BIT(RM_TARGET_DOWN) | BIT(RM_TARGET_UP)};
    for (int i = 0; i < 5; i++) CHECK_OK(rm_adapter_random(m, ranks[i], 2.0f * ranks[i], masks[i], 100 + i, 0.2f, &e[i]));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 99, 0.3f, &router));
    if (!router || !e[4]) return;
    enum { NSEQ = 7 };
    rm_composition comps[NSEQ];
    memset(comps, 0, sizeof comps);
    comps[0] = (rm_composition){.mode = RM_COMPOSE_EXPLICIT, .k = 2, .experts = {e[0], e[1]}, .weights = {0.7f, -0.4f}};
    comps[1] = (rm_composition){.mode = RM_COMPOSE_MIXTURE, .k = 3, .experts = {e[1], e[2], e[3]}};
    comps[2] = (rm_composition){.mode = RM_COMPOSE_SELECTION, .k = 3, .experts = {e[2], e[0], e[1]}};
    comps[3] = (rm_composition){.mode = RM_COMPOSE_FUSION, .k = 3, .experts = {e[0], e[3], e[4]}};
    comps[4] = (rm_composition){.mode = RM_COMPOSE_ROUTER, .k = 3, .experts = {e[0], e[1], e[2]}, .router = router};
    comps[5] = (rm_composition){.mode = RM_COMPOSE_NONE};
    comps[6] = (rm_composition){.mode = RM_COMPOSE_ROUTER, .k = 4, .experts = {e[3], e[4], e[1], e[3]}, .router = router};
    rm_lora_state *st = NULL;
    int n = 40; /* groups of 1 to 20+ rows: blocks of 8, 4 and 1 rows; groups cut between threads */
    CHECK_OK(rm_lora_state_new(m, NSEQ, n, 4, 16, 2, &st));
    if (!st) return;
    for (int s = 0; s < NSEQ; s++) CHECK_OK(rm_lora_set(st, s, &comps[s]));
    int32_t seq[40];
    uint64_t rs = 7;
    for (int i = 0; i < n; i++) seq[i] = i < 20 ? (int32_t)(lcg(&rs) >> 33) % NSEQ : 4; /* 20 tokens of slot 4 */
    CHECK(rm_lora_plan(st, n, seq));
    rm_pool *pool = NULL;
    CHECK_OK(rm_pool_new(2, &pool));
    size_t work = rm_matmul_work_size(RM_TYPE_F32, n, 72, 72, 2) + rm_matmul_work_size(RM_TYPE_F32, n, 16, 72, 2);
    rm_compute comp = {pool, malloc(work + 64), work};
    double worst = 0, worst_w = 0;
    /* gate tracing over every module, against the naive weights summed here */
    double *tsum = calloc((size_t)n * 4, sizeof *tsum), *want = calloc((size_t)n * 4, sizeof *want);
    double *tshare = calloc((size_t)n * 4, sizeof *tshare), *want_share = calloc((size_t)n * 4, sizeof *want_share);
    int tn[40] = {0}, want_n[40] = {0};
    rm_lora_trace_gates(st, &(rm_gate_trace){.gates = tsum, .shares = tshare, .n = tn});
    for (int layer = 0; layer < 2; layer++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            int64_t din, dout;
            rm_target_dims(&cfg, (rm_target)t, &din, &dout);
            float *x = malloc((size_t)n * din * sizeof *x), *y = malloc((size_t)n * dout * sizeof *y);
            double *d = malloc((size_t)dout * sizeof *d);
            for (int64_t i = 0; i < n * din; i++) x[i] = frand(&rs);
            for (int64_t i = 0; i < n * dout; i++) y[i] = frand(&rs);
            float *y0 = malloc((size_t)n * dout * sizeof *y0);
            memcpy(y0, y, (size_t)n * dout * sizeof *y);
            rm_lora_apply(st, &comp, layer, (rm_target)t, x, y);
            for (int i = 0; i < n; i++) {
                double rw[RM_LORA_MAX_K];
                naive_delta(&comps[seq[i]], layer, (rm_target)t, &cfg, x + i * din, d, rw);
                double scale = 1e-3;
                for (int64_t o = 0; o < dout; o++) scale = fmax(scale, fabs(d[o]));
                for (int64_t o = 0; o < dout; o++)
                    worst = fmax(worst, fabs((y[i * dout + o] - y0[i * dout + o]) - d[o]) / scale);
                if (comps[seq[i]].mode == RM_COMPOSE_ROUTER) {
                    const float *g = rm_lora_last_gates(st, i);
                    for (int j = 0; j < comps[seq[i]].k; j++) worst_w = fmax(worst_w, fabs(g[j] - rw[j]));
                    double c[RM_LORA_MAX_K], total = 0;
                    for (int j = 0; j < comps[seq[i]].k; j++) {
                        want[i * 4 + j] += rw[j];
                        expert_out(rm_adapter_mod(comps[seq[i]].experts[j], layer, (rm_target)t), x + i * din, din,
                                   dout, d);
                        double sq = 0;
                        for (int64_t o = 0; o < dout; o++) sq += d[o] * d[o];
                        total += c[j] = rw[j] * sqrt(sq);
                    }
                    for (int j = 0; j < comps[seq[i]].k; j++) want_share[i * 4 + j] += c[j] / total;
                    want_n[i]++;
                }
            }
            free(x), free(y), free(y0), free(d);
        }
    CHECK_MSG(worst < 1e-5, "composed delta vs naive: relative error %g", worst);
    CHECK_MSG(worst_w < 1e-5, "router weights vs naive: %g", worst_w);
    double worst_t = 0;
    int bad_n = 0, routed = 0;
    for (int i = 0; i < n; i++) {
        bad_n += tn[i] != want_n[i];
        routed += want_n[i] == 2 * RM_TARGET_COUNT; /* the router adapts every module */
        for (int j = 0; j < 4; j++) worst_t = fmax(worst_t, fabs(tsum[i * 4 + j] - want[i * 4 + j]));
        for (int j = 0; j < 4; j++) worst_t = fmax(worst_t, fabs(tshare[i * 4 + j] - want_share[i * 4 + j]));
    }
    CHECK_MSG(bad_n == 0, "traced module counts differ for %d tokens", bad_n);
    CHECK_MSG(routed >= 20, "only %d router tokens traced over every module", routed);
    CHECK_MSG(worst_t < 1e-4, "traced gate and share sums vs naive: %g", worst_t);
    /* a stopped trace is left alone */
    rm_lora_trace_gates(st, NULL);
    memcpy(want, tsum, (size_t)n * 4 * sizeof *want);
    {
        float *x = calloc((size_t)n * 72, sizeof *x), *y = calloc((size_t)n * 72, sizeof *y);
        rm_lora_apply(st, &comp, 0, RM_TARGET_Q, x, y);
        free(x), free(y);
    }
    CHECK(memcmp(want, tsum, (size_t)n * 4 * sizeof *want) == 0);
    free(tsum), free(want), free(tshare), free(want_share);
    /* bad compositions are refused and the slot keeps what it had */
    rm_composition bad = {.mode = RM_COMPOSE_ROUTER, .k = 2, .experts = {e[1], e[2]}, .router = e[0]};
    CHECK_ERR(rm_lora_set(st, 4, &bad), RAMOLE_ERR_MISMATCH);
    CHECK(strstr(ramole_last_error(), "must cover") != NULL);
    bad = (rm_composition){.mode = RM_COMPOSE_MIXTURE, .k = 5, .experts = {e[0], e[1], e[2], e[3], e[4]}};
    CHECK_ERR(rm_lora_set(st, 0, &bad), RAMOLE_ERR_RANGE);
    rm_adapter *big = NULL;
    CHECK_OK(rm_adapter_random(m, 32, 32, ALL, 5, 0.1f, &big));
    bad = (rm_composition){.mode = RM_COMPOSE_MIXTURE, .k = 1, .experts = {big}};
    CHECK_ERR(rm_lora_set(st, 0, &bad), RAMOLE_ERR_RANGE);
    rm_adapter_free(big);
    free(comp.work);
    rm_pool_free(pool);
    rm_lora_state_free(st);
    for (int i = 0; i < 5; i++) rm_adapter_free(e[i]);
    rm_adapter_free(router);
    rm_model_free(m);
}

/*
 * A router that pools its gates over the prompt, step by step against a
 * naive reference: the reference keeps, per sequence and module, the sum of
 * the raw scores (built from full expert outputs, in double) of the prompt
 * tokens seen so far, and gates token n of a prompt of P tokens by
 * softmax(sum / min(n + 1, P)). Steps feed chunks that cross the prompt's
 * end, beside a per-token router on the same weights, a mixture, and a
 * second pooled router of another prompt length that does not adapt o_proj
 * (its gates there are 0). The per-token router and the second pooled one
 * have retrieval priors: lambda r_j joins each score (after the pooling).
 * Between steps, a composition whose retrieval score is not a cosine is
 * refused, a refused composition (no prompt
 * length) and a refused restart leave the slots running as they were; a
 * restart starts a sequence over.
 */
TEST(compose_prompt_pooled_router_matches_naive_step_by_step) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 3, 0.1f, &m));
    if (!m) return;
    rm_adapter *e[3] = {0}, *pooled = NULL, *per_token = NULL, *pooled2 = NULL;
    unsigned no_o = ALL & ~BIT(RM_TARGET_O);
    CHECK_OK(rm_adapter_random(m, 4, 8.0f, ALL, 200, 0.2f, &e[0]));
    CHECK_OK(rm_adapter_random(m, 8, 8.0f, no_o, 201, 0.2f, &e[1]));
    CHECK_OK(rm_adapter_random(m, 2, 4.0f, BIT(RM_TARGET_Q) | BIT(RM_TARGET_V) | BIT(RM_TARGET_DOWN), 202, 0.2f, &e[2]));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 203, 0.3f, &pooled));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 203, 0.3f, &per_token)); /* the same router, per token */
    CHECK_OK(rm_adapter_random(m, 3, 3.0f, no_o, 204, 0.3f, &pooled2));
    if (!e[0] || !e[1] || !e[2] || !pooled || !per_token || !pooled2) return;
    pooled->gate_pool = pooled2->gate_pool = RM_GATE_POOL_PROMPT;
    per_token->retrieval_prior = 2.0f, pooled2->retrieval_prior = 5.0f;
    enum { NSEQ = 4, K = 3, NB = 12 };
    rm_composition comps[NSEQ] = {
        {.mode = RM_COMPOSE_ROUTER, .k = 3, .experts = {e[0], e[1], e[2]}, .router = pooled, .n_prompt = 5,
         .retrieval = {0.9f, 0.1f, -0.5f}}, /* a router without a prior ignores them */
        {.mode = RM_COMPOSE_ROUTER, .k = 3, .experts = {e[0], e[1], e[2]}, .router = per_token,
         .retrieval = {0.8f, -0.3f, 0.1f}},
        {.mode = RM_COMPOSE_ROUTER, .k = 2, .experts = {e[2], e[1]}, .router = pooled2, .n_prompt = 2,
         .retrieval = {0.2f, 0.6f}},
        {.mode = RM_COMPOSE_MIXTURE, .k = 2, .experts = {e[0], e[2]}},
    };
    rm_lora_state *st = NULL;
    CHECK_OK(rm_lora_state_new(m, NSEQ, NB, K, 8, 2, &st));
    if (!st) return;
    for (int s = 0; s < NSEQ; s++) CHECK_OK(rm_lora_set(st, s, &comps[s]));
    rm_pool *pool = NULL;
    CHECK_OK(rm_pool_new(2, &pool));
    size_t work = rm_matmul_work_size(RM_TYPE_F32, NB, 72, 72, 2) + rm_matmul_work_size(RM_TYPE_F32, NB, 16, 72, 2);
    rm_compute comp = {pool, malloc(work + 64), work};
    /* the steps' tokens, by slot, in batch order; -1 ends a step */
    static const int8_t steps[][NB + 1] = {
        {0, 1, 0, 2, 3, 0, 1, -1},             /* slot 0: tokens 0-2; slot 2: token 0 */
        {2, 0, 0, 1, 2, 0, 3, 2, 0, 3, -1},    /* slot 0: 3-6 (its prompt ends at 5); slot 2: 1-3 */
        {1, 0, 2, -1},                         /* restarted before this step: slot 2 from 0 */
        {0, 3, 2, 2, 2, -1},
    };
    int nm = 2 * RM_TARGET_COUNT, fed[NSEQ] = {0};
    double *ref_sum = calloc((size_t)NSEQ * nm * K, sizeof *ref_sum); /* the reference's running sums */
    double worst = 0, worst_w = 0, worst_t = 0, pooling_moves = 0;
    int checked_pooled = 0, zero_modules = 0;
    uint64_t rs = 11;
    for (size_t step = 0; step < sizeof steps / sizeof steps[0]; step++) {
        if (step == 2) {
            /* refused: no prompt length; the slots keep running as they were */
            rm_composition none = comps[0];
            none.n_prompt = 0;
            CHECK_ERR(rm_lora_set(st, 3, &none), RAMOLE_ERR_INVALID);
            CHECK_MSG(strstr(ramole_last_error(), pooled->name) && strstr(ramole_last_error(), "prompt's length"),
                      "%s", ramole_last_error());
            CHECK_ERR(rm_lora_restart(st, 0, 0), RAMOLE_ERR_INVALID);
            rm_composition far = comps[1];
            far.retrieval[2] = 1.5f;
            CHECK_ERR(rm_lora_set(st, 3, &far), RAMOLE_ERR_INVALID);
            CHECK_MSG(strstr(ramole_last_error(), per_token->name) && strstr(ramole_last_error(), "1.5"), "%s",
                      ramole_last_error());
            per_token->retrieval_prior = -2.0f; /* set by hand, not loaded: refused all the same */
            CHECK_ERR(rm_lora_set(st, 3, &comps[1]), RAMOLE_ERR_INVALID);
            CHECK_MSG(strstr(ramole_last_error(), "retrieval prior of -2"), "%s", ramole_last_error());
            per_token->retrieval_prior = 2.0f;
            CHECK_OK(rm_lora_restart(st, 3, 0)); /* a mixture has no prompt to pool */
            /* slot 2 starts a new sequence of prompt length 3 */
            CHECK_OK(rm_lora_restart(st, 2, 3));
            comps[2].n_prompt = 3;
            fed[2] = 0;
            memset(ref_sum + (size_t)2 * nm * K, 0, (size_t)nm * K * sizeof *ref_sum);
        }
        int32_t seq[NB];
        int idx[NB], n = 0;
        for (; steps[step][n] >= 0; n++) seq[n] = steps[step][n], idx[n] = fed[seq[n]]++;
        CHECK(rm_lora_plan(st, n, seq));
        double tsum[NB * K] = {0}, want_t[NB * K] = {0};
        int tn[NB] = {0}, want_n[NB] = {0};
        rm_lora_trace_gates(st, &(rm_gate_trace){.gates = tsum, .n = tn});
        for (int layer = 0; layer < 2; layer++)
            for (int t = 0; t < RM_TARGET_COUNT; t++) {
                int64_t din, dout;
                rm_target_dims(&cfg, (rm_target)t, &din, &dout);
                int mi = layer * RM_TARGET_COUNT + t;
                float *x = malloc((size_t)n * din * sizeof *x), *y = malloc((size_t)n * dout * sizeof *y);
                float *y0 = malloc((size_t)n * dout * sizeof *y0);
                double *d = malloc((size_t)dout * sizeof *d);
                for (int64_t i = 0; i < n * din; i++) x[i] = frand(&rs);
                for (int64_t i = 0; i < n * dout; i++) y0[i] = y[i] = frand(&rs);
                rm_lora_apply(st, &comp, layer, (rm_target)t, x, y);
                for (int i = 0; i < n; i++) {
                    const rm_composition *c = &comps[seq[i]];
                    double w[K] = {0};
                    bool router = c->mode == RM_COMPOSE_ROUTER, adapts = router && rm_adapter_mod(c->router, layer, (rm_target)t)->rank;
                    if (adapts) {
                        double z[K];
                        naive_scores(c, layer, (rm_target)t, &cfg, x + i * din, z);
                        if (c->router->gate_pool == RM_GATE_POOL_PROMPT) {
                            double *sum = ref_sum + ((size_t)seq[i] * nm + mi) * K;
                            int P = c->n_prompt;
                            if (idx[i] < P)
                                for (int j = 0; j < c->k; j++) sum[j] += z[j];
                            double own[K];
                            memcpy(own, z, sizeof own);
                            softmax_d(own, c->k);
                            for (int j = 0; j < c->k; j++) w[j] = sum[j] / (idx[i] < P ? idx[i] + 1 : P) + prior_of(c, j);
                            softmax_d(w, c->k);
                            for (int j = 0; j < c->k; j++) pooling_moves = fmax(pooling_moves, fabs(w[j] - own[j]));
                            checked_pooled++;
                        } else {
                            for (int j = 0; j < c->k; j++) w[j] = z[j] + prior_of(c, j);
                            softmax_d(w, c->k);
                        }
                        for (int j = 0; j < c->k; j++) want_t[i * K + j] += w[j];
                        want_n[i]++;
                    }
                    if (router) {
                        naive_gated(c, c->k, layer, (rm_target)t, &cfg, x + i * din, w, d);
                        const float *g = rm_lora_last_gates(st, i);
                        for (int j = 0; j < c->k; j++) worst_w = fmax(worst_w, fabs(g[j] - w[j]));
                        zero_modules += !adapts && g[0] == 0 && g[1] == 0;
                    } else {
                        naive_delta(c, layer, (rm_target)t, &cfg, x + i * din, d, NULL);
                    }
                    double scale = 1e-3;
                    for (int64_t o = 0; o < dout; o++) scale = fmax(scale, fabs(d[o]));
                    for (int64_t o = 0; o < dout; o++)
                        worst = fmax(worst, fabs((y[i * dout + o] - y0[i * dout + o]) - d[o]) / scale);
                }
                free(x), free(y), free(y0), free(d);
            }
        rm_lora_trace_gates(st, NULL);
        for (int i = 0; i < n; i++) {
            CHECK_MSG(tn[i] == want_n[i], "step %zu token %d: %d modules traced, want %d", step, i, tn[i], want_n[i]);
            for (int j = 0; j < K; j++) worst_t = fmax(worst_t, fabs(tsum[i * K + j] - want_t[i * K + j]));
        }
    }
    if (getenv("RAMOLE_TEST_VERBOSE"))
        printf("  pooled router: delta %g, gates %g, trace %g; pooling moves gates by up to %g\n", worst, worst_w,
               worst_t, pooling_moves);
    CHECK_MSG(worst < 1e-5, "composed delta vs naive: relative error %g", worst);
    CHECK_MSG(worst_w < 1e-5, "router gates vs naive: %g", worst_w);
    CHECK_MSG(worst_t < 1e-4, "traced gates vs naive: %g", worst_t);
    /* 9 tokens of slot 0 over every module, 8 of slot 2 over all but o_proj */
    CHECK_MSG(checked_pooled == 9 * nm + 8 * (nm - 2), "%d pooled (token, module) pairs checked", checked_pooled);
    CHECK_MSG(zero_modules == 2 * 8, "%d modules of pooled2 without o_proj had gates 0", zero_modules);
    CHECK_MSG(pooling_moves > 1e-2, "pooling over the prompt changes the gates by only %g", pooling_moves);
    free(ref_sum);
    free(comp.work);
    rm_pool_free(pool);
    rm_lora_state_free(st);
    for (int i = 0; i < 3; i++) rm_adapter_free(e[i]);
    rm_adapter_free(pooled), rm_adapter_free(per_token), rm_adapter_free(pooled2);
    rm_model_free(m);
}

/* ---- model level ------------------------------------------------------------- */

static float *run_seqs(const rm_model *m, int n_seq, const rm_composition *comps, const int32_t *const *toks,
                       const int *lens, int max_k, int max_rank) {
    int n = 0;
    for (int s = 0; s < n_seq; s++) n += lens[s];
    rm_ctx_params p = {.n_ctx = 32, .n_seq = n_seq, .n_batch = n, .n_threads = 2};
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    if ((max_k ? rm_lora_ctx_new(m, &p, max_k, max_rank, &ctx, &ls) : rm_ctx_new(m, &p, &ctx)) != RAMOLE_OK)
        return NULL;
    for (int s = 0; s < n_seq; s++)
        if (rm_lora_set(ls, s, &comps[s]) != RAMOLE_OK) {
            rm_ctx_free(ctx);
            rm_lora_state_free(ls);
            return NULL;
        }
    int32_t *tk = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4), *sq = malloc((size_t)n * 4);
    uint8_t *want = malloc((size_t)n);
    int i = 0, done[64] = {0};
    while (i < n) /* interleave the sequences */
        for (int s = 0; s < n_seq; s++)
            if (done[s] < lens[s]) tk[i] = toks[s][done[s]], pos[i] = done[s]++, sq[i] = s, want[i++] = 1;
    rm_batch b = {n, tk, pos, sq, want};
    float *out = NULL;
    if (rm_ctx_decode(ctx, &b) == RAMOLE_OK) {
        /* logits back in per-sequence order */
        int V = m->cfg.vocab_size, o = 0;
        out = malloc((size_t)n * V * sizeof *out);
        for (int s = 0; s < n_seq; s++)
            for (int k = 0; k < n; k++)
                if (sq[k] == s) memcpy(out + (size_t)o++ * V, rm_ctx_logits(ctx, k), (size_t)V * sizeof *out);
    }
    free(tk), free(pos), free(sq), free(want);
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    return out;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs(b[i]));
    }
    return md / (mx > 0 ? mx : 1);
}

static const int32_t toks[10] = {1, 9, 44, 3, 17, 70, 2, 5, 63, 30};

TEST(compose_one_adapter_equals_the_merged_model) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL, *merged = NULL;
    rm_adapter *a = NULL;
    CHECK_OK(rm_model_random(&cfg, 2, 0.1f, &m));
    if (!m) return;
    CHECK_OK(rm_adapter_random(m, 8, 16, ALL, 3, 0.2f, &a));
    float w = 0.8f;
    CHECK_OK(rm_model_merge(m, &a, &w, 1, &merged));
    if (!a || !merged) return;
    const int32_t *t1[1] = {toks};
    int len[1] = {10};
    rm_composition none = {0}, one = {.mode = RM_COMPOSE_EXPLICIT, .k = 1, .experts = {a}, .weights = {w}};
    float *x = run_seqs(m, 1, &one, t1, len, 1, 8), *y = run_seqs(merged, 1, &none, t1, len, 0, 0),
          *z = run_seqs(m, 1, &none, t1, len, 1, 8);
    CHECK(x && y && z);
    if (x && y && z) {
        CHECK_MSG(rel_err(x, y, 10 * 80) < 1e-5, "runtime vs merged: %g", rel_err(x, y, 10 * 80));
        CHECK_MSG(rel_err(z, y, 10 * 80) > 1e-3, "the adapter changes nothing (%g)", rel_err(z, y, 10 * 80));
    }
    free(x), free(y), free(z);
    rm_adapter_free(a);
    rm_model_free(merged);
    rm_model_free(m);
}

/*
 * Decode n_seq sequences step by step: in step i slot s feeds its next
 * chunks[s][i] tokens, the slots' tokens interleaved in the batch. Fills
 * logits[s] ([lens[s]][V]) and gates[s] ([lens[s]][3]: the router's gates
 * traced over the modules, their mean) for every token.
 */
enum { STEPS_MAX = 9 };
static bool run_steps(const rm_model *m, int n_seq, const rm_composition *comps, const int32_t *const *tk,
                      const int *lens, const int (*chunks)[STEPS_MAX], float **logits, double **gates) {
    int total = 0, V = m->cfg.vocab_size;
    for (int s = 0; s < n_seq; s++) total += lens[s];
    rm_ctx_params p = {.n_ctx = 32, .n_seq = n_seq, .n_batch = total, .n_threads = 2};
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    if (rm_lora_ctx_new(m, &p, 3, 8, &ctx, &ls) != RAMOLE_OK) return false;
    bool ok = true;
    for (int s = 0; s < n_seq && ok; s++) ok = rm_lora_set(ls, s, &comps[s]) == RAMOLE_OK;
    int32_t tok[64], pos[64], sq[64];
    uint8_t want[64];
    double tsum[64 * 3];
    int tn[64], done[8] = {0};
    for (int step = 0; step < STEPS_MAX && ok; step++) {
        int n = 0, left[8];
        for (int s = 0; s < n_seq; s++) left[s] = chunks[s][step];
        for (bool more = true; more;) { /* round robin over the slots */
            more = false;
            for (int s = 0; s < n_seq; s++)
                if (left[s]) {
                    tok[n] = tk[s][done[s]], pos[n] = done[s]++, sq[n] = s, want[n++] = 1;
                    more = --left[s] > 0 || more;
                }
        }
        if (!n) continue;
        memset(tsum, 0, sizeof tsum), memset(tn, 0, sizeof tn);
        rm_lora_trace_gates(ls, &(rm_gate_trace){.gates = tsum, .n = tn});
        rm_batch b = {n, tok, pos, sq, want};
        ok = rm_ctx_decode(ctx, &b) == RAMOLE_OK;
        rm_lora_trace_gates(ls, NULL);
        for (int i = 0; i < n && ok; i++) {
            memcpy(logits[sq[i]] + (size_t)pos[i] * V, rm_ctx_logits(ctx, i), (size_t)V * sizeof(float));
            for (int j = 0; j < 3; j++) gates[sq[i]][pos[i] * 3 + j] = tn[i] ? tsum[i * 3 + j] / tn[i] : 0;
        }
    }
    for (int s = 0; s < n_seq; s++) ok = ok && done[s] == lens[s];
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    return ok;
}

static double max_abs_diff(const double *a, const double *b, size_t n) {
    double md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs(a[i] - b[i]));
    return md;
}

/*
 * A prompt-pooled router's sequence decodes the same whether fed whole, a
 * token at a time, in chunks of 3, or in uneven chunks batched beside a
 * per-token router, a mixture and another pooled router of another prompt
 * length (each of which also matches itself alone): the running sums carry
 * across decodes and are kept per slot. And pooling changes the logits.
 */
TEST(compose_prompt_pooled_router_is_the_same_in_chunks_and_batches) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 6, 0.1f, &m));
    if (!m) return;
    rm_adapter *e[3] = {0}, *pooled = NULL, *per_token = NULL, *pooled2 = NULL;
    for (int i = 0; i < 3; i++) CHECK_OK(rm_adapter_random(m, 2 + 3 * i, 8.0f, ALL, 300 + i, 0.3f, &e[i]));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 310, 0.4f, &pooled));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 310, 0.4f, &per_token));
    CHECK_OK(rm_adapter_random(m, 3, 3.0f, ALL, 311, 0.4f, &pooled2));
    if (!e[0] || !e[1] || !e[2] || !pooled || !per_token || !pooled2) return;
    pooled->gate_pool = pooled2->gate_pool = RM_GATE_POOL_PROMPT;
    enum { NS = 4 };
    rm_composition comps[NS] = {
        {.mode = RM_COMPOSE_ROUTER, .k = 3, .experts = {e[0], e[1], e[2]}, .router = pooled, .n_prompt = 5},
        {.mode = RM_COMPOSE_ROUTER, .k = 3, .experts = {e[0], e[1], e[2]}, .router = per_token},
        {.mode = RM_COMPOSE_MIXTURE, .k = 2, .experts = {e[1], e[2]}},
        {.mode = RM_COMPOSE_ROUTER, .k = 2, .experts = {e[2], e[0]}, .router = pooled2, .n_prompt = 2},
    };
    const int32_t *tk[NS] = {toks, toks + 1, toks + 2, toks + 3};
    int lens[NS] = {9, 6, 5, 7}, V = cfg.vocab_size;
    static const int whole[1][STEPS_MAX] = {{9}}, ones[1][STEPS_MAX] = {{1, 1, 1, 1, 1, 1, 1, 1, 1}},
                     threes[1][STEPS_MAX] = {{3, 3, 3}};
    static const int batched[NS][STEPS_MAX] = {{2, 4, 3}, {3, 0, 3}, {1, 2, 2}, {1, 4, 2}};
    float *lg[5][NS];
    double *gt[5][NS];
    for (int r = 0; r < 5; r++)
        for (int s = 0; s < NS; s++) {
            lg[r][s] = calloc((size_t)lens[s] * V, sizeof(float));
            gt[r][s] = calloc((size_t)lens[s] * 3, sizeof(double));
        }
    /* runs: 0 whole, 1 ones, 2 threes, 3 batched; 4: each other slot alone, whole */
    CHECK(run_steps(m, 1, comps, tk, lens, whole, lg[0], gt[0]));
    CHECK(run_steps(m, 1, comps, tk, lens, ones, lg[1], gt[1]));
    CHECK(run_steps(m, 1, comps, tk, lens, threes, lg[2], gt[2]));
    CHECK(run_steps(m, NS, comps, tk, lens, batched, lg[3], gt[3]));
    for (int s = 1; s < NS; s++) {
        int one[1][STEPS_MAX] = {{lens[s]}};
        CHECK(run_steps(m, 1, &comps[s], &tk[s], &lens[s], one, &lg[4][s], &gt[4][s]));
    }
    double worst = 0, worst_g = 0;
    for (int r = 1; r < 4; r++) {
        worst = fmax(worst, rel_err(lg[r][0], lg[0][0], (size_t)lens[0] * V));
        worst_g = fmax(worst_g, max_abs_diff(gt[r][0], gt[0][0], (size_t)lens[0] * 3));
        if (getenv("RAMOLE_TEST_VERBOSE"))
            printf("  layout %d vs whole: logits %g, gates %g\n", r, rel_err(lg[r][0], lg[0][0], (size_t)lens[0] * V),
                   max_abs_diff(gt[r][0], gt[0][0], (size_t)lens[0] * 3));
    }
    for (int s = 1; s < NS; s++) {
        worst = fmax(worst, rel_err(lg[3][s], lg[4][s], (size_t)lens[s] * V));
        worst_g = fmax(worst_g, max_abs_diff(gt[3][s], gt[4][s], (size_t)lens[s] * 3));
    }
    /* the tolerance of the mixed batch test: kernels of other row counts round differently */
    CHECK_MSG(worst < 5e-5, "pooled router in chunks and batches vs whole: logits %g", worst);
    CHECK_MSG(worst_g < 1e-5, "pooled router in chunks and batches vs whole: gates %g", worst_g);
    /* the prompt's last token and every later one share the whole prompt's
     * gates, where a per-token router's move */
    CHECK_MSG(max_abs_diff(gt[0][0] + 4 * 3, gt[0][0] + 8 * 3, 3) < 1e-12 &&
                  max_abs_diff(gt[3][1] + 3 * 3, gt[3][1] + 5 * 3, 3) > 1e-3,
              "traced gates do not look pooled");
    rm_composition tok_router = comps[1];
    float *per = calloc((size_t)lens[0] * V, sizeof(float));
    double *pg = calloc((size_t)lens[0] * 3, sizeof(double));
    CHECK(run_steps(m, 1, &tok_router, tk, lens, whole, &per, &pg));
    CHECK_MSG(rel_err(per, lg[0][0], (size_t)lens[0] * V) > 1e-3, "pooling changes the logits by only %g",
              rel_err(per, lg[0][0], (size_t)lens[0] * V));
    free(per), free(pg);
    for (int r = 0; r < 5; r++)
        for (int s = 0; s < NS; s++) free(lg[r][s]), free(gt[r][s]);
    for (int i = 0; i < 3; i++) rm_adapter_free(e[i]);
    rm_adapter_free(pooled), rm_adapter_free(per_token), rm_adapter_free(pooled2);
    rm_model_free(m);
}

/* ramole_model_logits (the public one-batch run) takes its tokens as the
 * prompt of a prompt-pooled router: every position's logits equal a
 * decode composed with n_prompt = n, and differ from a per-token router's. */
TEST(compose_model_logits_pool_over_the_tokens_given) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 9, 0.1f, &m));
    if (!m) return;
    rm_adapter *e[2] = {0}, *router = NULL;
    for (int i = 0; i < 2; i++) CHECK_OK(rm_adapter_random(m, 3, 6.0f, ALL, 500 + i, 0.3f, &e[i]));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 510, 0.4f, &router));
    if (!e[0] || !e[1] || !router) return;
    router->gate_pool = RM_GATE_POOL_PROMPT;
    char *mp = rm_path_join(rm_test_tmp_dir(), "pool_logits_model"), *ep[2], *rp;
    ep[0] = rm_path_join(rm_test_tmp_dir(), "pool_logits_e0"), ep[1] = rm_path_join(rm_test_tmp_dir(), "pool_logits_e1");
    rp = rm_path_join(rm_test_tmp_dir(), "pool_logits_router");
    CHECK_OK(rm_model_save(m, RM_SOURCE_HF, -1, mp));
    for (int i = 0; i < 2; i++) CHECK_OK(rm_adapter_save_peft(e[i], m, ep[i]));
    CHECK_OK(rm_adapter_save_peft(router, m, rp));
    ramole_model *pm = NULL;
    CHECK_OK(ramole_model_open(mp, &pm));
    for (int i = 0; i < 2 && pm; i++) { /* what the public API says of each */
        ramole_adapter *pa = NULL;
        ramole_adapter_info info;
        CHECK_OK(ramole_adapter_load(pm, i ? rp : ep[0], &pa));
        if (pa) ramole_adapter_get_info(pa, &info);
        CHECK(pa && info.gate_pool_prompt == i);
        ramole_adapter_free(pa);
    }
    enum { N = 9 };
    int V = cfg.vocab_size;
    ramole_lora_set set = {.mode = RAMOLE_COMPOSE_ROUTER, .n_adapters = 2, .adapters = {ep[0], ep[1]}, .router = rp};
    float *got = NULL;
    int rows = 0;
    if (pm) CHECK_OK(ramole_model_logits(pm, &(ramole_run_params){.n_threads = 2}, &set, toks, N, 1, &got, &rows));
    rm_composition comp = {.mode = RM_COMPOSE_ROUTER, .k = 2, .experts = {e[0], e[1]}, .router = router, .n_prompt = N};
    const int32_t *tk[1] = {toks};
    int lens[1] = {N};
    static const int whole[1][STEPS_MAX] = {{N}};
    float *want = calloc((size_t)N * V, sizeof *want);
    double *gates = calloc((size_t)N * 3, sizeof *gates);
    CHECK(run_steps(m, 1, &comp, tk, lens, whole, &want, &gates));
    CHECK(got && rows == N);
    if (got && rows == N)
        CHECK_MSG(rel_err(got, want, (size_t)N * V) < 1e-5, "ramole_model_logits vs n_prompt = n: %g",
                  rel_err(got, want, (size_t)N * V));
    router->gate_pool = RM_GATE_POOL_TOKEN;
    CHECK(run_steps(m, 1, &comp, tk, lens, whole, &want, &gates));
    if (got && rows == N)
        CHECK_MSG(rel_err(got, want, (size_t)N * V) > 1e-3, "a per-token router gives the same logits (%g)",
                  rel_err(got, want, (size_t)N * V));
    ramole_free(got);
    free(want), free(gates);
    ramole_model_free(pm);
    rm_free(mp), rm_free(ep[0]), rm_free(ep[1]), rm_free(rp);
    for (int i = 0; i < 2; i++) rm_adapter_free(e[i]);
    rm_adapter_free(router);
    rm_model_free(m);
}

static rm_status keep_example(const rm_router_eval_example *e, void *user) {
    rm_router_eval_example *keep = user;
    if (e->line >= 1 && e->line <= 3) keep[e->line - 1] = *e;
    return RAMOLE_OK;
}

/*
 * The router evaluation runs its examples through one slot: a prompt-pooled
 * router restarts at each (rm_lora_restart) and pools over that example's
 * own prompt. Its last module's gates, averaged per span, equal those of a
 * slot set afresh for the example with its prompt length.
 */
TEST(compose_router_eval_restarts_a_pooled_router_per_example) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 8, 0.1f, &m));
    if (!m) return;
    rm_adapter *pool[3] = {0}, *router = NULL;
    for (int i = 0; i < 3; i++) CHECK_OK(rm_adapter_random(m, 3, 6.0f, ALL, 400 + i, 0.3f, &pool[i]));
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, ALL, 410, 0.4f, &router));
    if (!pool[0] || !pool[1] || !pool[2] || !router) return;
    router->gate_pool = RM_GATE_POOL_PROMPT;
    rm_example ex[3] = {{.n = 8, .n_prompt = 3, .line = 1}, {.n = 9, .n_prompt = 6, .line = 2},
                        {.n = 7, .n_prompt = 1, .line = 3}};
    for (int i = 0; i < 3; i++) ex[i].tokens = (int32_t *)toks + i;
    rm_dataset d = {.ex = ex, .n = 3, .cap = 3};
    rm_ctx_params cp = {.n_ctx = 16, .n_seq = 1, .n_batch = 16, .n_logits = 1, .n_threads = 2};
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    CHECK_OK(rm_lora_ctx_new(m, &cp, 3, 4, &ctx, &ls));
    if (!ctx) return;
    rm_composition comp = {.mode = RM_COMPOSE_ROUTER, .k = 3, .router = router, .experts = {pool[0], pool[1], pool[2]},
                           .n_prompt = 1};
    CHECK_OK(rm_lora_set(ls, 0, &comp));
    rm_router_eval_example got[3];
    memset(got, 0, sizeof got);
    rm_router_eval_summary sum;
    CHECK_OK(rm_router_eval(ctx, ls, pool, 3, &d, keep_example, got, &sum));
    double worst = 0;
    int32_t pos[16], seq[16] = {0};
    for (int t = 0; t < 16; t++) pos[t] = t;
    for (int i = 0; i < 3; i++) {
        comp.n_prompt = ex[i].n_prompt;
        CHECK_OK(rm_lora_set(ls, 0, &comp));
        rm_ctx_seq_clear(ctx, 0);
        int n = ex[i].n - 1;
        rm_batch b = {n, ex[i].tokens, pos, seq, NULL};
        CHECK_OK(rm_ctx_decode(ctx, &b));
        double want[2][3] = {{0}};
        int cnt[2] = {0};
        for (int t = 0; t < n; t++) {
            int sp = t + 1 >= ex[i].n_prompt ? RM_EVAL_SPAN_ANSWER : RM_EVAL_SPAN_PROMPT;
            for (int j = 0; j < 3; j++) want[sp][j] += rm_lora_last_gates(ls, t)[j];
            cnt[sp]++;
        }
        for (int sp = 0; sp < 2; sp++)
            for (int j = 0; j < 3 && cnt[sp]; j++)
                worst = fmax(worst, fabs(got[i].weights[RM_EVAL_DEPTH_LAST][sp][j] - want[sp][j] / cnt[sp]));
        CHECK(got[i].line == i + 1);
    }
    CHECK_MSG(worst < 1e-6, "router evaluation vs a fresh slot per example: %g", worst);
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    for (int i = 0; i < 3; i++) rm_adapter_free(pool[i]);
    rm_adapter_free(router);
    rm_model_free(m);
}

/* Logits of toks[0..n) decoded from position 0 of sequence 0 (n_logits = n). */
static bool decode_toks(rm_ctx *ctx, int n, float *out, int V) {
    int32_t pos[10], seq[10] = {0};
    uint8_t want[10];
    for (int i = 0; i < n; i++) pos[i] = i, want[i] = 1;
    rm_ctx_seq_clear(ctx, 0);
    rm_batch b = {n, toks, pos, seq, want};
    if (rm_ctx_decode(ctx, &b) != RAMOLE_OK) return false;
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * V, rm_ctx_logits(ctx, i), (size_t)V * sizeof *out);
    return true;
}

TEST(compose_attach_checks_the_state_and_detach_restores_the_base) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL, *other = NULL;
    rm_adapter *a = NULL;
    CHECK_OK(rm_model_random(&cfg, 2, 0.1f, &m));
    CHECK_OK(rm_model_random(&cfg, 2, 0.1f, &other));
    if (!m || !other) return;
    CHECK_OK(rm_adapter_random(m, 8, 16, ALL, 3, 0.2f, &a));
    rm_ctx_params p = {.n_ctx = 16, .n_seq = 2, .n_batch = 10, .n_threads = 2, .scratch_rank = 8};
    rm_ctx *ctx = NULL;
    rm_lora_state *good = NULL, *wrong_model = NULL, *few_seq = NULL, *small_batch = NULL, *big_rank = NULL;
    CHECK_OK(rm_ctx_new(m, &p, &ctx));
    CHECK_OK(rm_lora_state_new(m, 2, 10, 1, 8, 2, &good));
    CHECK_OK(rm_lora_state_new(other, 2, 10, 1, 8, 2, &wrong_model));
    CHECK_OK(rm_lora_state_new(m, 1, 10, 1, 8, 2, &few_seq));
    CHECK_OK(rm_lora_state_new(m, 2, 9, 1, 8, 2, &small_batch));
    CHECK_OK(rm_lora_state_new(m, 2, 10, 1, 16, 2, &big_rank));
    if (!ctx || !a || !good || !wrong_model || !few_seq || !small_batch || !big_rank) goto out;
    CHECK_ERR(rm_lora_attach(ctx, wrong_model), RAMOLE_ERR_MISMATCH);
    CHECK_ERR(rm_lora_attach(ctx, few_seq), RAMOLE_ERR_MISMATCH);
    CHECK_ERR(rm_lora_attach(ctx, small_batch), RAMOLE_ERR_MISMATCH);
    CHECK_ERR(rm_lora_attach(ctx, big_rank), RAMOLE_ERR_MISMATCH);
    CHECK(strstr(ramole_last_error(), "scratch") != NULL);
    int V = cfg.vocab_size;
    float *base = malloc(10 * (size_t)V * sizeof *base), *with = malloc(10 * (size_t)V * sizeof *with),
          *after = malloc(10 * (size_t)V * sizeof *after);
    rm_composition one = {.mode = RM_COMPOSE_EXPLICIT, .k = 1, .experts = {a}, .weights = {1}};
    CHECK(decode_toks(ctx, 10, base, V)); /* refused attachments left the base alone */
    CHECK_OK(rm_lora_set(good, 0, &one));
    CHECK_OK(rm_lora_attach(ctx, good));
    CHECK(decode_toks(ctx, 10, with, V));
    CHECK_MSG(rel_err(with, base, 10 * (size_t)V) > 1e-3, "the attached adapter changes nothing");
    CHECK_OK(rm_lora_attach(ctx, NULL));
    CHECK(decode_toks(ctx, 10, after, V));
    CHECK_MSG(memcmp(after, base, 10 * (size_t)V * sizeof *base) == 0, "detaching does not restore the base");
    free(base), free(with), free(after);
out:
    rm_ctx_free(ctx);
    rm_lora_state_free(good), rm_lora_state_free(wrong_model), rm_lora_state_free(few_seq);
    rm_lora_state_free(small_batch), rm_lora_state_free(big_rank);
    rm_adapter_free(a);
    rm_model_free(other);
    rm_model_free(m);
}

TEST(compose_mixed_batch_of_16_equals_each_sequence_alone) {
    rm_model_config cfg = small_config();
    cfg.arch = RM_ARCH_QWEN2;
    cfg.qkv_bias = true;
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 4, 0.1f, &m));
    if (!m) return;
    enum { NA = 6 };
    rm_adapter *ad[NA] = {0}, *router = NULL;
    for (int i = 0; i < NA; i++) CHECK_OK(rm_adapter_random(m, 2 + 3 * i, 8, i % 2 ? ALL : ALL & ~BIT(RM_TARGET_K), 20 + i, 0.2f, &ad[i]));
    CHECK_OK(rm_adapter_random(m, 4, 4, ALL, 30, 0.3f, &router));
    if (!router) return;
    rm_composition comps[16];
    const int32_t *tk[16];
    int lens[16];
    for (int s = 0; s < 16; s++) {
        rm_compose_mode mode = (rm_compose_mode)(s % RM_COMPOSE_COUNT);
        comps[s] = (rm_composition){.mode = mode, .k = 3,
                                    .experts = {ad[s % NA], ad[(s + 1) % NA], ad[(s + 3) % NA]},
                                    .weights = {0.5f, -1.0f, 0.25f}, .router = router};
        if (mode == RM_COMPOSE_EXPLICIT) comps[s].k = 1 + s % 3;
        tk[s] = toks + s % 4;
        lens[s] = 1 + (s * 5) % 7;
    }
    float *all = run_seqs(m, 16, comps, tk, lens, 3, 17);
    CHECK(all != NULL);
    double worst = 0;
    int off = 0;
    for (int s = 0; s < 16 && all; s++) {
        float *alone = run_seqs(m, 1, &comps[s], &tk[s], &lens[s], 3, 17);
        CHECK(alone != NULL);
        if (alone) worst = fmax(worst, rel_err(all + (size_t)off * 80, alone, (size_t)lens[s] * 80));
        if (alone && getenv("RAMOLE_TEST_VERBOSE")) printf("  seq %d mode %s: %g\n", s, rm_compose_mode_name(comps[s].mode), rel_err(all + (size_t)off * 80, alone, (size_t)lens[s] * 80));
        off += lens[s];
        free(alone);
    }
    /* A batch runs the base and the big adapter groups as GEMMs, a lone
     * sequence as dot products: the sums round differently (about 5e-7 here),
     * and a router's softmax can amplify that for a sequence with peaked
     * scores (measured up to 1.2e-5). A wrong gate or a row sent to the wrong
     * sequence moves logits by 1e-2 or more. */
    CHECK_MSG(worst < 5e-5, "batch of 16 vs alone: %g", worst);
    /* mixture equals explicit 1/k */
    rm_composition mix = {.mode = RM_COMPOSE_MIXTURE, .k = 3, .experts = {ad[0], ad[1], ad[2]}};
    rm_composition ex = {.mode = RM_COMPOSE_EXPLICIT, .k = 3, .experts = {ad[0], ad[1], ad[2]},
                         .weights = {1.0f / 3, 1.0f / 3, 1.0f / 3}};
    float *a = run_seqs(m, 1, &mix, tk, lens, 3, 17), *b = run_seqs(m, 1, &ex, tk, lens, 3, 17);
    if (a && b) CHECK_MSG(rel_err(a, b, (size_t)lens[0] * 80) < 1e-6, "mixture vs explicit 1/k");
    free(a), free(b), free(all);
    for (int i = 0; i < NA; i++) rm_adapter_free(ad[i]);
    rm_adapter_free(router);
    rm_model_free(m);
}

/* Adapters stored as f16 or bf16 give, in a mixed batch of every mode (big
 * groups on the sgemm path, small ones on the dot path), the logits of the
 * same rounded values held in f32. */
TEST(compose_f16_and_bf16_adapters_match_their_values_in_f32) {
    rm_model_config cfg = small_config();
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&cfg, 5, 0.1f, &m));
    if (!m) return;
    enum { NA = 4 };
    for (int bf = 0; bf < 2; bf++) {
        rm_type type = bf ? RM_TYPE_BF16 : RM_TYPE_F16;
        rm_adapter *h[NA + 1] = {0}, *w[NA + 1] = {0};
        for (int i = 0; i <= NA; i++) {
            CHECK_OK(rm_adapter_random(m, 3 + 2 * i, 8, ALL, 50 + i, 0.2f, &h[i]));
            CHECK_OK(rm_adapter_random(m, 3 + 2 * i, 8, ALL, 50 + i, 0.2f, &w[i]));
            if (!h[i] || !w[i]) return;
            CHECK_OK(rm_adapter_convert(h[i], m, type));
            CHECK_OK(rm_adapter_convert(w[i], m, type));
            CHECK_OK(rm_adapter_convert(w[i], m, RM_TYPE_F32));
        }
        rm_composition ch[12], cw[12];
        const int32_t *tk[12];
        int lens[12];
        for (int s = 0; s < 12; s++) {
            rm_compose_mode mode = (rm_compose_mode)(1 + s % (RM_COMPOSE_COUNT - 1));
            int e[3] = {s % NA, (s + 1) % NA, (s + 2) % NA};
            ch[s] = (rm_composition){.mode = mode, .k = 3, .experts = {h[e[0]], h[e[1]], h[e[2]]},
                                     .weights = {0.5f, -1.0f, 0.25f}, .router = h[NA]};
            cw[s] = (rm_composition){.mode = mode, .k = 3, .experts = {w[e[0]], w[e[1]], w[e[2]]},
                                     .weights = {0.5f, -1.0f, 0.25f}, .router = w[NA]};
            tk[s] = toks + s % 3;
            lens[s] = 4 + s % 4;
        }
        float *a = run_seqs(m, 12, ch, tk, lens, 3, 11), *b = run_seqs(m, 12, cw, tk, lens, 3, 11);
        CHECK(a && b);
        int n = 0;
        for (int s = 0; s < 12; s++) n += lens[s];
        /* Same values, other kernels (f16/bf16 rows widened as they are read;
         * bf16 takes the dot path, f32 the short-row kernel): the sums round
         * differently, measured up to 3e-6. */
        if (a && b) CHECK_MSG(rel_err(a, b, (size_t)n * 80) < 2e-5, "%s adapters vs their f32 values: %g",
                              rm_type_name(type), rel_err(a, b, (size_t)n * 80));
        if (a && b && getenv("RAMOLE_TEST_VERBOSE"))
            printf("  %s adapters vs their values in f32: %g\n", rm_type_name(type), rel_err(a, b, (size_t)n * 80));
        /* and the rounding is visible: the f32 originals give other logits */
        rm_adapter *o[NA + 1] = {0};
        for (int i = 0; i <= NA; i++) CHECK_OK(rm_adapter_random(m, 3 + 2 * i, 8, ALL, 50 + i, 0.2f, &o[i]));
        rm_composition co = cw[0];
        for (int j = 0; j < 3; j++) co.experts[j] = o[j]; /* cw[0] holds w[0], w[1], w[2] */
        float *c = run_seqs(m, 1, &co, tk, lens, 3, 11), *d = run_seqs(m, 1, &ch[0], tk, lens, 3, 11);
        if (c && d) CHECK_MSG(rel_err(c, d, (size_t)lens[0] * 80) > 1e-4, "rounding changed little: %g",
                              rel_err(c, d, (size_t)lens[0] * 80));
        if (c && d && getenv("RAMOLE_TEST_VERBOSE"))
            printf("  %s rounding of the adapters moves logits by %g\n", rm_type_name(type),
                   rel_err(c, d, (size_t)lens[0] * 80));
        free(a), free(b), free(c), free(d);
        for (int i = 0; i <= NA; i++) rm_adapter_free(h[i]), rm_adapter_free(w[i]), rm_adapter_free(o[i]);
    }
    rm_model_free(m);
}
