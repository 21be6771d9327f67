/*
 * test_train.c — the training foundation: gradients of every kind (full,
 * LoRA, router) against central finite differences in double on tiny
 * models (GQA llama with normal RoPE + linear scaling; qwen2 with q/k/v
 * bias, tied embeddings, neox RoPE + llama3 scaling); the float build
 * against the double build; the training loss against -log softmax of the
 * inference forward's logits (rm_ctx_decode, with the same adapters
 * composed); AdamW driving a memorisation loss down; bit-exact resume from
 * a checkpoint; and bad input.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "lora/compose.h"
#include "train/train.h"

#define BIT(t) (1u << (t))
static const unsigned ALL = (1u << RM_TARGET_COUNT) - 1;

static rm_model_config tiny_config(rm_arch arch) {
    rm_model_config c;
    rm_model_config_defaults(&c, arch);
    c.vocab_size = 32;
    c.hidden = 24;
    c.ffn = 40;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 6;
    c.rope.n_rot = 6;
    c.max_pos = 64;
    c.rms_eps = 1e-5f;
    if (arch == RM_ARCH_QWEN2) {
        c.qkv_bias = true;
        c.tied_embeddings = true;
    }
    return c;
}

/* A random tiny model; llama: normal RoPE with linear scaling; qwen2: neox
 * with llama3 scaling (a short original context, so that all three bands
 * of the llama3 rule are used). */
static rm_model *tiny_model(rm_arch arch, uint64_t seed) {
    rm_model_config c = tiny_config(arch);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, seed, 0.3f, &m));
    if (!m) return NULL;
    if (arch == RM_ARCH_QWEN2) {
        m->cfg.rope.style = RM_ROPE_NEOX;
        m->cfg.rope.scaling = RM_ROPE_SCALING_LLAMA3;
        m->cfg.rope.factor = 4;
        m->cfg.rope.low_freq_factor = 1;
        m->cfg.rope.high_freq_factor = 4;
        m->cfg.rope.original_max_pos = 16;
        m->cfg.rope.theta = 100.0f;
    } else {
        m->cfg.rope.style = RM_ROPE_NORMAL;
        m->cfg.rope.scaling = RM_ROPE_SCALING_LINEAR;
        m->cfg.rope.factor = 2;
    }
    /* non-trivial norm weights, through the random model's writable views */
    uint64_t s = seed * 31 + 7;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        float *a = m->owned_views->layers[l].attn_norm, *f = m->owned_views->layers[l].ffn_norm;
        for (int i = 0; i < m->cfg.hidden; i++) {
            a[i] = 1.0f + 0.3f * (float)(rm_rng_uniform(&s) - 0.5);
            f[i] = 1.0f + 0.3f * (float)(rm_rng_uniform(&s) - 0.5);
        }
    }
    return m;
}

/* A batch of B sequences x T positions with random tokens and targets;
 * sequence b is masked in from position b % 2 up to T - b (padding after). */
typedef struct {
    int B, T;
    int32_t tokens[8 * 16], targets[8 * 16];
    uint8_t mask[8 * 16];
    int32_t experts[8 * RM_TRAIN_MAX_K], n_experts[8];
    rm_train_batch b;
} test_batch;

static void make_batch(test_batch *tb, int B, int T, int vocab, uint64_t seed) {
    memset(tb, 0, sizeof *tb);
    tb->B = B, tb->T = T;
    uint64_t s = seed;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            tb->tokens[i] = (int32_t)(rm_rng_next(&s) % (uint64_t)vocab);
            tb->targets[i] = (int32_t)(rm_rng_next(&s) % (uint64_t)vocab);
            tb->mask[i] = t >= b % 2 && t < T - b;
        }
    tb->b = (rm_train_batch){.B = B, .T = T, .tokens = tb->tokens, .targets = tb->targets, .mask = tb->mask};
}

/*
 * Check the gradient of the double model against finite differences on
 * the first 2 and `per_tensor` random coordinates of every trainable
 * tensor. Returns the largest error |a - n| / max(|a|, |n|, floor).
 */
static double fd_check(rm_tm_f64 *tm, const rm_train_batch *b, int per_tensor, uint64_t seed, int *n_checked,
                       char *worst, size_t worst_n) {
    double loss = 0, worst_err = 0;
    rm_tm_f64_zero_grad(tm);
    CHECK_OK(rm_tm_f64_backward(tm, b, 1.0, &loss));
    double *p = rm_tm_f64_params(tm, NULL), *g = rm_tm_f64_grads(tm, NULL);
    uint64_t s = seed;
    /* floor: the loss's rounding, over 12h, leaves the stencil about 1e-11
     * of noise, so a gradient below 1e-5 is compared to within 1e-11 */
    const double h = 3e-4, floor_ = 1e-5;
    for (int ti = 0; ti < rm_tm_f64_n_tensors(tm); ti++) {
        const rm_train_tensor *T = rm_tm_f64_tensor(tm, ti);
        int64_t n = T->rows * T->cols;
        for (int c = 0; c < 2 + per_tensor; c++) {
            int64_t i = c < 2 ? c % n : (int64_t)(rm_rng_next(&s) % (uint64_t)n);
            double *x = &p[T->offset + i], x0 = *x, f[4] = {0, 0, 0, 0};
            const double steps[4] = {2, 1, -1, -2};
            for (int k = 0; k < 4; k++) {
                *x = x0 + steps[k] * h;
                CHECK_OK(rm_tm_f64_loss(tm, b, &f[k]));
            }
            *x = x0;
            /* five-point stencil: truncation O(h^4), so h can be large
             * enough that rounding of the loss stays near 1e-12 */
            double num = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h), an = g[T->offset + i];
            double den = fmax(fmax(fabs(num), fabs(an)), floor_);
            double err = fabs(num - an) / den;
            if (err > worst_err) {
                worst_err = err;
                snprintf(worst, worst_n, "%s[%lld]: analytic %.10g, numeric %.10g", T->name, (long long)i, an, num);
            }
            (*n_checked)++;
        }
    }
    return worst_err;
}

static void report_fd(const char *what, double err, int n, const char *worst) {
    printf("  %s: %d coordinates, worst relative error %.2e (%s)\n", what, n, err, worst);
    CHECK_MSG(err < 1e-6, "%s: gradient check failed: %s (rel %.3g)", what, worst, err);
}

TEST(train_grad_full_fd) {
    rm_arch archs[2] = {RM_ARCH_LLAMA, RM_ARCH_QWEN2};
    for (int a = 0; a < 2; a++) {
        rm_model *m = tiny_model(archs[a], 11 + a);
        if (!m) return;
        rm_train_params p = {.kind = RM_TRAIN_FULL, .max_batch = 3, .max_seq = 7, .n_threads = 2};
        rm_tm_f64 *tm = NULL;
        CHECK_OK(rm_tm_f64_new(m, &p, &tm));
        if (tm) {
            test_batch tb;
            make_batch(&tb, 3, 7, m->cfg.vocab_size, 5 + a);
            int n = 0;
            char worst[256] = "";
            double err = fd_check(tm, &tb.b, 5, 99, &n, worst, sizeof worst);
            report_fd(archs[a] == RM_ARCH_QWEN2 ? "full qwen2 (bias, tied, neox, llama3)" : "full llama (GQA, normal, linear)",
                      err, n, worst);
        }
        rm_tm_f64_free(tm);
        rm_model_free(m);
    }
}

TEST(train_grad_lora_fd) {
    rm_arch archs[2] = {RM_ARCH_LLAMA, RM_ARCH_QWEN2};
    for (int a = 0; a < 2; a++) {
        rm_model *m = tiny_model(archs[a], 21 + a);
        rm_adapter *ad = NULL;
        if (!m) return;
        CHECK_OK(rm_adapter_random(m, 3, 6.0f, a ? ALL : BIT(RM_TARGET_Q) | BIT(RM_TARGET_V) | BIT(RM_TARGET_DOWN),
                                   77 + a, 0.2f, &ad));
        rm_train_params p = {.kind = RM_TRAIN_LORA, .max_batch = 3, .max_seq = 7, .n_threads = 2, .lora = ad};
        rm_tm_f64 *tm = NULL;
        CHECK_OK(rm_tm_f64_new(m, &p, &tm));
        if (tm) {
            test_batch tb;
            make_batch(&tb, 3, 7, m->cfg.vocab_size, 15 + a);
            int n = 0;
            char worst[256] = "";
            double err = fd_check(tm, &tb.b, 6, 98, &n, worst, sizeof worst);
            report_fd(a ? "lora qwen2 (all targets)" : "lora llama (q, v, down)", err, n, worst);
        }
        rm_tm_f64_free(tm);
        rm_adapter_free(ad);
        rm_model_free(m);
    }
}

/* Three experts of different ranks and targets, and a router over all. */
typedef struct {
    rm_model *m;
    rm_adapter *ex[3], *router;
} router_world;

static bool router_world_new(router_world *w, rm_arch arch, uint64_t seed) {
    memset(w, 0, sizeof *w);
    w->m = tiny_model(arch, seed);
    if (!w->m) return false;
    CHECK_OK(rm_adapter_random(w->m, 2, 4.0f, ALL, seed + 1, 0.3f, &w->ex[0]));
    CHECK_OK(rm_adapter_random(w->m, 3, 3.0f, BIT(RM_TARGET_Q) | BIT(RM_TARGET_V) | BIT(RM_TARGET_UP), seed + 2, 0.3f,
                               &w->ex[1]));
    CHECK_OK(rm_adapter_random(w->m, 1, 2.0f, BIT(RM_TARGET_O) | BIT(RM_TARGET_DOWN) | BIT(RM_TARGET_V), seed + 3,
                               0.3f, &w->ex[2]));
    CHECK_OK(rm_adapter_random(w->m, 2, 2.0f, ALL, seed + 4, 0.5f, &w->router));
    return w->ex[0] && w->ex[1] && w->ex[2] && w->router;
}

static void router_world_free(router_world *w) {
    for (int j = 0; j < 3; j++) rm_adapter_free(w->ex[j]);
    rm_adapter_free(w->router);
    rm_model_free(w->m);
}

/* Sequence experts: {0,1,2}, {2,0}, {1}. */
static void router_batch(test_batch *tb) {
    static const int lists[3][3] = {{0, 1, 2}, {2, 0, -1}, {1, -1, -1}};
    static const int ns[3] = {3, 2, 1};
    for (int b = 0; b < tb->B; b++) {
        tb->n_experts[b] = ns[b % 3];
        for (int e = 0; e < ns[b % 3]; e++) tb->experts[b * RM_TRAIN_MAX_K + e] = lists[b % 3][e];
    }
    tb->b.experts = tb->experts;
    tb->b.n_experts = tb->n_experts;
}

TEST(train_grad_router_fd) {
    router_world w;
    if (!router_world_new(&w, RM_ARCH_LLAMA, 31)) {
        router_world_free(&w);
        return;
    }
    const rm_adapter *ex[3] = {w.ex[0], w.ex[1], w.ex[2]};
    rm_train_params p = {.kind = RM_TRAIN_ROUTER, .max_batch = 3, .max_seq = 7, .n_threads = 2,
                         .experts = ex, .n_experts = 3, .router = w.router};
    rm_tm_f64 *tm = NULL;
    CHECK_OK(rm_tm_f64_new(w.m, &p, &tm));
    if (tm) {
        test_batch tb;
        make_batch(&tb, 3, 7, w.m->cfg.vocab_size, 25);
        router_batch(&tb);
        int n = 0;
        char worst[256] = "";
        double err = fd_check(tm, &tb.b, 6, 97, &n, worst, sizeof worst);
        report_fd("router (3 experts, k = 3/2/1 per sequence)", err, n, worst);
        tb.b.gate_loss = 0.7; /* + 0.7 G: the gate term's gradient too */
        n = 0;
        err = fd_check(tm, &tb.b, 6, 98, &n, worst, sizeof worst);
        report_fd("router with gate loss 0.7", err, n, worst);
    }
    rm_tm_f64_free(tm);
    /* pooled over the prompt: prompts of 4, 1 and 3 positions (the mask
     * starts at the prompt's last one), so that the pooling's sums run
     * over several rows and past the prompt */
    tm = NULL;
    p.gate_pool = RM_GATE_POOL_PROMPT;
    CHECK_OK(rm_tm_f64_new(w.m, &p, &tm));
    if (tm) {
        test_batch tb;
        make_batch(&tb, 3, 7, w.m->cfg.vocab_size, 26);
        router_batch(&tb);
        const int first[3] = {3, 0, 2};
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < 7; t++) tb.mask[b * 7 + t] = t >= first[b] && t < 7 - b;
        int n = 0;
        char worst[256] = "";
        double err = fd_check(tm, &tb.b, 6, 99, &n, worst, sizeof worst);
        report_fd("router pooled over the prompt", err, n, worst);
        tb.b.gate_loss = 0.7;
        n = 0;
        err = fd_check(tm, &tb.b, 6, 100, &n, worst, sizeof worst);
        report_fd("router pooled over the prompt, gate loss 0.7", err, n, worst);
    }
    rm_tm_f64_free(tm);
    router_world_free(&w);
}

/* ---- float vs double ------------------------------------------------------------- */

static double grad_diff(rm_tm_f32 *a, rm_tm_f64 *b, const rm_train_batch *batch, double *la, double *lb) {
    rm_tm_f32_zero_grad(a);
    rm_tm_f64_zero_grad(b);
    CHECK_OK(rm_tm_f32_backward(a, batch, 1.0, la));
    CHECK_OK(rm_tm_f64_backward(b, batch, 1.0, lb));
    double l32; /* the forward alone reports the backward's loss, bit for bit */
    CHECK_OK(rm_tm_f32_loss(a, batch, &l32));
    CHECK_MSG(l32 == *la, "loss %.17g, backward's loss %.17g", l32, *la);
    size_t n32, n64;
    float *g = rm_tm_f32_grads(a, &n32);
    double *G = rm_tm_f64_grads(b, &n64), mx = 0, dmax = 0;
    CHECK(n32 == n64);
    for (size_t i = 0; i < n32 && i < n64; i++) {
        if (fabs(G[i]) > mx) mx = fabs(G[i]);
        if (fabs(G[i] - g[i]) > dmax) dmax = fabs(G[i] - g[i]);
    }
    return dmax / (mx > 0 ? mx : 1);
}

TEST(train_f32_matches_f64) {
    router_world w;
    if (!router_world_new(&w, RM_ARCH_QWEN2, 41)) {
        router_world_free(&w);
        return;
    }
    const rm_adapter *ex[3] = {w.ex[0], w.ex[1], w.ex[2]};
    rm_train_params ps[3] = {
        {.kind = RM_TRAIN_FULL, .max_batch = 3, .max_seq = 9, .n_threads = 2},
        {.kind = RM_TRAIN_LORA, .max_batch = 3, .max_seq = 9, .n_threads = 2, .lora = w.ex[0]},
        {.kind = RM_TRAIN_ROUTER, .max_batch = 3, .max_seq = 9, .n_threads = 2, .experts = ex, .n_experts = 3,
         .router = w.router}};
    for (int k = 0; k < 3; k++) {
        rm_tm_f32 *a = NULL;
        rm_tm_f64 *b = NULL;
        CHECK_OK(rm_tm_f32_new(w.m, &ps[k], &a));
        CHECK_OK(rm_tm_f64_new(w.m, &ps[k], &b));
        if (a && b) {
            test_batch tb;
            make_batch(&tb, 3, 9, w.m->cfg.vocab_size, 35 + k);
            router_batch(&tb);
            double la, lb, rel = grad_diff(a, b, &tb.b, &la, &lb);
            printf("  %s: loss f32 %.9f f64 %.9f, max grad diff / max |grad| = %.2e\n", rm_train_kind_name(ps[k].kind),
                   la, lb, rel);
            CHECK_MSG(rel < 1e-4, "%s: float and double gradients differ by %g", rm_train_kind_name(ps[k].kind), rel);
            CHECK_NEAR(la, lb, 1e-5 * fabs(lb));
        }
        rm_tm_f32_free(a);
        rm_tm_f64_free(b);
    }
    router_world_free(&w);
}

/* Products with few rows and many columns (LoRA's dA: r rows, din columns)
 * are split by columns over the threads: on a model wide enough to take
 * that path (din 128, 64 positions), 2-thread float gradients match
 * 1-thread double ones. */
TEST(train_lora_wide_products_split_by_columns) {
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    c.hidden = 128, c.ffn = 192, c.n_layers = 1, c.head_dim = 32, c.rope.n_rot = 32;
    rm_model *m = NULL;
    rm_adapter *ad = NULL;
    CHECK_OK(rm_model_random(&c, 12, 0.05f, &m));
    if (m) CHECK_OK(rm_adapter_random(m, 4, 8, ALL, 13, 0.05f, &ad));
    if (!ad) {
        rm_model_free(m);
        return;
    }
    rm_train_params p2 = {.kind = RM_TRAIN_LORA, .max_batch = 4, .max_seq = 16, .n_threads = 2, .lora = ad};
    rm_train_params p1 = p2;
    p1.n_threads = 1;
    rm_tm_f32 *a = NULL;
    rm_tm_f64 *b = NULL;
    CHECK_OK(rm_tm_f32_new(m, &p2, &a));
    CHECK_OK(rm_tm_f64_new(m, &p1, &b));
    if (a && b) {
        test_batch tb;
        make_batch(&tb, 4, 16, c.vocab_size, 77);
        double la, lb, rel = grad_diff(a, b, &tb.b, &la, &lb);
        CHECK_MSG(rel < 1e-4, "column-split float vs double gradients differ by %g", rel);
        CHECK_NEAR(la, lb, 1e-5 * fabs(lb));
    }
    rm_tm_f32_free(a);
    rm_tm_f64_free(b);
    rm_adapter_free(ad);
    rm_model_free(m);
}

/* ---- training loss == inference forward's cross-entropy ------------------------------- */

#define INF_MAX_K 4 /* the engine's expert slots in these tests */

/* Mean -log softmax(logits)[target] over the batch's mask, from rm_ctx_decode,
 * each sequence b in slot b with composition comps[b] (NULL: none).
 * per_seq (or NULL): each sequence's own mean. gates (or NULL): the router
 * gates summed over modules, [b][t][INF_MAX_K] (rm_lora_trace_gates). */
static double inference_loss_ex(const rm_model *m, const test_batch *tb, const rm_composition *comps, double *per_seq,
                                double *gates) {
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    rm_ctx_params cp = {.n_ctx = tb->T, .n_seq = tb->B, .n_batch = tb->T, .n_threads = 2};
    if (comps) CHECK_OK(rm_lora_ctx_new(m, &cp, INF_MAX_K, 8, &ctx, &ls));
    else CHECK_OK(rm_ctx_new(m, &cp, &ctx));
    if (!ctx) return NAN;
    double sum = 0;
    int cnt = 0;
    int32_t pos[16], seq[16];
    uint8_t want[16];
    int tn[16];
    for (int b = 0; b < tb->B; b++) {
        if (comps) CHECK_OK(rm_lora_set(ls, b, &comps[b]));
        for (int t = 0; t < tb->T; t++) pos[t] = t, seq[t] = b, want[t] = 1;
        rm_batch bb = {tb->T, tb->tokens + b * tb->T, pos, seq, want};
        if (gates) {
            memset(gates + (size_t)b * tb->T * INF_MAX_K, 0, (size_t)tb->T * INF_MAX_K * sizeof *gates);
            rm_lora_trace_gates(ls,
                                &(rm_gate_trace){.gates = gates + (size_t)b * tb->T * INF_MAX_K, .n = tn});
        }
        CHECK_OK(rm_ctx_decode(ctx, &bb));
        if (gates) rm_lora_trace_gates(ls, NULL);
        double ss = 0;
        int sc = 0;
        for (int t = 0; t < tb->T; t++) {
            if (!tb->mask[b * tb->T + t]) continue;
            const float *z = rm_ctx_logits(ctx, t);
            double mx = -INFINITY, s = 0;
            for (int c = 0; c < m->cfg.vocab_size; c++) mx = fmax(mx, z[c]);
            for (int c = 0; c < m->cfg.vocab_size; c++) s += exp(z[c] - mx);
            double l = mx + log(s) - z[tb->targets[b * tb->T + t]];
            sum += l, ss += l;
            cnt++, sc++;
        }
        if (per_seq) per_seq[b] = sc ? ss / sc : NAN;
    }
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    return sum / cnt;
}

static double inference_loss(const rm_model *m, const test_batch *tb, const rm_composition *comps) {
    return inference_loss_ex(m, tb, comps, NULL, NULL);
}

TEST(train_loss_matches_inference) {
    for (int a = 0; a < 2; a++) {
        router_world w;
        if (!router_world_new(&w, a ? RM_ARCH_QWEN2 : RM_ARCH_LLAMA, 51 + a)) {
            router_world_free(&w);
            return;
        }
        const rm_adapter *ex[3] = {w.ex[0], w.ex[1], w.ex[2]};
        test_batch tb;
        make_batch(&tb, 3, 8, w.m->cfg.vocab_size, 45 + a);
        router_batch(&tb);
        rm_composition lora_c[3], router_c[3];
        for (int b = 0; b < 3; b++) {
            lora_c[b] = (rm_composition){.mode = RM_COMPOSE_EXPLICIT, .k = 1, .experts = {w.ex[0]}, .weights = {1.0f}};
            router_c[b] = (rm_composition){.mode = RM_COMPOSE_ROUTER, .k = tb.n_experts[b], .router = w.router};
            for (int e = 0; e < tb.n_experts[b]; e++) router_c[b].experts[e] = ex[tb.experts[b * RM_TRAIN_MAX_K + e]];
        }
        rm_train_params ps[3] = {
            {.kind = RM_TRAIN_FULL, .max_batch = 3, .max_seq = 8, .n_threads = 2},
            {.kind = RM_TRAIN_LORA, .max_batch = 3, .max_seq = 8, .n_threads = 2, .lora = w.ex[0]},
            {.kind = RM_TRAIN_ROUTER, .max_batch = 3, .max_seq = 8, .n_threads = 2, .experts = ex, .n_experts = 3,
             .router = w.router}};
        const rm_composition *comps[3] = {NULL, lora_c, router_c};
        for (int k = 0; k < 3; k++) {
            rm_tm_f32 *tm = NULL;
            CHECK_OK(rm_tm_f32_new(w.m, &ps[k], &tm));
            if (!tm) continue;
            double lt = 0, li = inference_loss(w.m, &tb, comps[k]);
            CHECK_OK(rm_tm_f32_loss(tm, &tb.b, &lt));
            printf("  %s %s: training loss %.7f, inference %.7f\n", rm_arch_name(w.m->cfg.arch),
                   rm_train_kind_name(ps[k].kind), lt, li);
            CHECK_MSG(fabs(lt - li) < 2e-5 * fabs(li), "%s %s: training loss %.8f, inference %.8f",
                      rm_arch_name(w.m->cfg.arch), rm_train_kind_name(ps[k].kind), lt, li);
            rm_tm_f32_free(tm);
        }
        router_world_free(&w);
    }
}

/*
 * A router trained with p's option (the gate scale, folded into the
 * exported A_r; the pooling over the prompt, carried by the exported
 * router) trains what the engine serves: the exported router composed
 * with each sequence's prompt length (n_prompt[b]) gives the training
 * model's loss, and the unchanged router of the world another one (by at
 * least min_diff: the option does something).
 */
static void check_export_serves_as_trained(const char *what, router_world *w, const rm_train_params *p,
                                           const test_batch *tb, const int *n_prompt, double min_diff) {
    const float *r = tb->b.retrieval; /* the batch's retrieval scores, served as each sequence's */
    rm_tm_f32 *tm = NULL;
    rm_adapter *out = NULL;
    CHECK_OK(rm_tm_f32_new(w->m, p, &tm));
    CHECK_OK(rm_adapter_random(w->m, 2, 2.0f, ALL, 99, 0.5f, &out));
    if (tm && out) {
        double lt = 0;
        CHECK_OK(rm_tm_f32_loss(tm, &tb->b, &lt));
        CHECK_OK(rm_tm_f32_export_adapter(tm, out));
        CHECK(out->gate_pool == p->gate_pool);
        CHECK(out->retrieval_prior == (float)p->retrieval_prior);
        rm_composition trained[3], plain[3];
        for (int b = 0; b < 3; b++) {
            trained[b] = (rm_composition){.mode = RM_COMPOSE_ROUTER, .k = tb->n_experts[b], .router = out,
                                          .n_prompt = n_prompt[b]};
            for (int e = 0; e < tb->n_experts[b]; e++) {
                trained[b].experts[e] = w->ex[tb->experts[b * RM_TRAIN_MAX_K + e]];
                trained[b].retrieval[e] = r ? r[b * RM_TRAIN_MAX_K + e] : 0;
            }
            plain[b] = trained[b], plain[b].router = w->router;
        }
        double li = inference_loss(w->m, tb, trained), l1 = inference_loss(w->m, tb, plain);
        printf("  %s: training loss %.7f, exported router %.7f, the world's router %.7f\n", what, lt, li, l1);
        CHECK_MSG(fabs(lt - li) < 2e-5 * fabs(li), "%s: training loss %.8f, exported router's %.8f", what, lt, li);
        CHECK_MSG(fabs(l1 - li) > min_diff, "%s: the option changed nothing (%.8f, %.8f)", what, l1, li);
    }
    rm_tm_f32_free(tm);
    rm_adapter_free(out);
}

/*
 * What the tests of a router option share: a llama router world, a batch
 * of 3 x 8 over its experts {0,1,2}, {2,0}, {1}, and the router's training
 * parameters over that world, for the test to add its option to. Prompts
 * (export_case_prompts): 5, 1 and 3 positions, the mask starting at each
 * prompt's last one.
 */
typedef struct {
    router_world w;
    const rm_adapter *ex[3];
    test_batch tb;
    rm_train_params p;
} export_case;

static const int export_prompts[3] = {5, 1, 3}, export_no_prompts[3] = {0, 0, 0};

static bool export_case_new(export_case *c, uint64_t world_seed, uint64_t batch_seed) {
    if (!router_world_new(&c->w, RM_ARCH_LLAMA, world_seed)) {
        router_world_free(&c->w);
        return false;
    }
    for (int j = 0; j < 3; j++) c->ex[j] = c->w.ex[j];
    make_batch(&c->tb, 3, 8, c->w.m->cfg.vocab_size, batch_seed);
    router_batch(&c->tb);
    c->p = (rm_train_params){.kind = RM_TRAIN_ROUTER, .max_batch = 3, .max_seq = 8, .n_threads = 2,
                             .experts = c->ex, .n_experts = 3, .router = c->w.router};
    return true;
}

static void export_case_prompts(export_case *c) {
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 8; t++) c->tb.mask[b * 8 + t] = t >= export_prompts[b] - 1;
}

/* The pooling over the prompt: prompts of 5, 1 and 3 positions. */
TEST(train_gate_pool_matches_inference) {
    export_case c;
    if (!export_case_new(&c, 59, 49)) return;
    export_case_prompts(&c);
    c.p.gate_pool = RM_GATE_POOL_PROMPT;
    check_export_serves_as_trained("pooled over the prompt", &c.w, &c.p, &c.tb, export_prompts, 1e-5);
    router_world_free(&c.w);
}

/*
 * The retrieval prior lambda: the gates are softmax(z + lambda r), per token
 * and pooled over the prompt. The exported router carries lambda and, given
 * each sequence's scores, serves the training loss; the gradient matches
 * finite differences; scores that are not cosines are refused.
 */
TEST(train_retrieval_prior_matches_inference) {
    export_case c;
    if (!export_case_new(&c, 61, 53)) return; /* experts {0,1,2}, {2,0}, {1} */
    float r[3 * RM_TRAIN_MAX_K] = {0};
    const float scores[3][3] = {{0.9f, 0.2f, -0.4f}, {0.1f, 0.7f, 0}, {0.5f, 0, 0}};
    for (int b = 0; b < 3; b++)
        for (int e = 0; e < 3; e++) r[b * RM_TRAIN_MAX_K + e] = scores[b][e];
    c.tb.b.retrieval = r;
    export_case_prompts(&c);
    c.p.retrieval_prior = 3.0;
    check_export_serves_as_trained("retrieval prior 3", &c.w, &c.p, &c.tb, export_no_prompts, 1e-4);
    rm_tm_f64 *t64 = NULL;
    CHECK_OK(rm_tm_f64_new(c.w.m, &c.p, &t64));
    if (t64) {
        int n = 0;
        char worst[256] = "";
        double err = fd_check(t64, &c.tb.b, 6, 95, &n, worst, sizeof worst);
        report_fd("router with retrieval prior 3", err, n, worst);
        r[1] = 1.5f; /* not a cosine */
        double l;
        CHECK(rm_tm_f64_loss(t64, &c.tb.b, &l) == RAMOLE_ERR_RANGE);
        CHECK(strstr(ramole_last_error(), "retrieval score 1.5") != NULL);
        r[1] = scores[0][1];
    }
    rm_tm_f64_free(t64);
    c.p.gate_pool = RM_GATE_POOL_PROMPT;
    check_export_serves_as_trained("retrieval prior 3, pooled over the prompt", &c.w, &c.p, &c.tb, export_prompts,
                                   1e-4);
    c.p.retrieval_prior = -1;
    rm_tm_f32 *bad = NULL;
    CHECK(rm_tm_f32_new(c.w.m, &c.p, &bad) == RAMOLE_ERR_INVALID && !bad);
    rm_tm_f32_free(bad);
    router_world_free(&c.w);
}

/* The gate scale g, whose gradient also matches finite differences. */
TEST(train_gate_scale_folds_into_export) {
    export_case c;
    if (!export_case_new(&c, 57, 47)) return;
    c.p.gate_scale = 3.0;
    check_export_serves_as_trained("gate scale 3", &c.w, &c.p, &c.tb, export_no_prompts, 1e-4);
    rm_tm_f64 *t64 = NULL;
    CHECK_OK(rm_tm_f64_new(c.w.m, &c.p, &t64));
    if (t64) {
        int n = 0;
        char worst[256] = "";
        double err = fd_check(t64, &c.tb.b, 6, 96, &n, worst, sizeof worst);
        report_fd("router with gate scale 3", err, n, worst);
    }
    rm_tm_f64_free(t64);
    c.p.gate_scale = -1;
    rm_tm_f32 *bad = NULL;
    CHECK(rm_tm_f32_new(c.w.m, &c.p, &bad) == RAMOLE_ERR_INVALID && !bad);
    rm_tm_f32_free(bad);
    router_world_free(&c.w);
}

/*
 * The gate loss against the inference engine. Router and experts adapt one
 * module (layer 1's o), so that the engine's gate trace gives each token's
 * gates there. Reference: each sequence's single-expert losses from the
 * engine (explicit weight 1), its best expert the lowest, and
 * G = mean over positions up to the last masked-in one of -log w_best.
 */
TEST(train_gate_loss_matches_inference) {
    rm_model *m = tiny_model(RM_ARCH_LLAMA, 71);
    rm_adapter *ex[3] = {NULL, NULL, NULL}, *router = NULL;
    const int ranks[3] = {2, 3, 1};
    for (int j = 0; j < 3 && m; j++) {
        CHECK_OK(rm_adapter_random(m, ranks[j], 2.0f * ranks[j], BIT(RM_TARGET_O), 72 + j, 0.5f, &ex[j]));
        if (ex[j]) rm_adapter_drop_module(ex[j], 0, RM_TARGET_O);
    }
    if (m) CHECK_OK(rm_adapter_random(m, 2, 2.0f, BIT(RM_TARGET_O), 75, 0.1f, &router));
    if (router) rm_adapter_drop_module(router, 0, RM_TARGET_O);
    rm_tm_f64 *tm = NULL, *lt = NULL;
    if (m && ex[0] && ex[1] && ex[2] && router) {
        const rm_adapter *exc[3] = {ex[0], ex[1], ex[2]};
        rm_train_params p = {.kind = RM_TRAIN_ROUTER, .max_batch = 3, .max_seq = 8, .n_threads = 2, .experts = exc,
                             .n_experts = 3, .router = router};
        CHECK_OK(rm_tm_f64_new(m, &p, &tm));
        rm_train_params pl = {.kind = RM_TRAIN_LORA, .max_batch = 3, .max_seq = 8, .n_threads = 2, .lora = ex[0]};
        CHECK_OK(rm_tm_f64_new(m, &pl, &lt));
    }
    if (tm && lt) {
        test_batch tb;
        make_batch(&tb, 3, 8, m->cfg.vocab_size, 77);
        router_batch(&tb); /* k = 3, 2, 1 */
        /* single-expert losses */
        double el[3 * RM_TRAIN_MAX_K];
        CHECK_OK(rm_tm_f64_expert_losses(tm, &tb.b, el));
        int best[3] = {0, 0, 0};
        for (int e = 0; e < 3; e++) {
            rm_composition c[3];
            double ref[3];
            for (int b = 0; b < 3; b++) {
                int k = tb.n_experts[b], slot = e < k ? e : 0;
                c[b] = (rm_composition){.mode = RM_COMPOSE_EXPLICIT, .k = 1,
                                        .experts = {ex[tb.experts[b * RM_TRAIN_MAX_K + slot]]}, .weights = {1.0f}};
            }
            inference_loss_ex(m, &tb, c, ref, NULL);
            for (int b = 0; b < 3; b++) {
                double got = el[b * RM_TRAIN_MAX_K + e];
                if (e >= tb.n_experts[b]) {
                    CHECK_MSG(isnan(got), "sequence %d slot %d (beyond its %d experts): %g, not NaN", b, e,
                              tb.n_experts[b], got);
                    continue;
                }
                CHECK_MSG(fabs(got - ref[b]) < 2e-5 * fabs(ref[b]), "sequence %d slot %d: expert loss %.8f, engine %.8f",
                          b, e, got, ref[b]);
                if (got < el[b * RM_TRAIN_MAX_K + best[b]]) best[b] = e;
            }
        }
        /* G from the engine's gates */
        rm_composition rc[3];
        for (int b = 0; b < 3; b++) {
            rc[b] = (rm_composition){.mode = RM_COMPOSE_ROUTER, .k = tb.n_experts[b], .router = router};
            for (int e = 0; e < tb.n_experts[b]; e++) rc[b].experts[e] = ex[tb.experts[b * RM_TRAIN_MAX_K + e]];
        }
        double gates[3 * 8 * INF_MAX_K], gref = 0;
        inference_loss_ex(m, &tb, rc, NULL, gates);
        int rows = 0;
        for (int b = 0; b < 3; b++) {
            int end = 0;
            for (int t = 0; t < 8; t++)
                if (tb.mask[b * 8 + t]) end = t + 1;
            for (int t = 0; t < end; t++, rows++) gref -= log(gates[(b * 8 + t) * INF_MAX_K + best[b]]);
        }
        gref /= rows;
        double l0 = 0, l1 = 0;
        CHECK_OK(rm_tm_f64_loss(tm, &tb.b, &l0));
        CHECK(rm_tm_f64_gate_ce(tm) == 0);
        tb.b.gate_loss = 0.5;
        CHECK_OK(rm_tm_f64_loss(tm, &tb.b, &l1));
        double g = rm_tm_f64_gate_ce(tm);
        printf("  gate cross-entropy %.8f, from the engine's gates %.8f (best experts %d %d %d)\n", g, gref, best[0],
               best[1], best[2]);
        CHECK_MSG(fabs(g - gref) < 1e-5 * fabs(gref), "gate cross-entropy %.8f, engine %.8f", g, gref);
        CHECK_MSG(fabs(l1 - (l0 + 0.5 * g)) < 1e-12, "loss with gate loss %.12f, LM %.12f + 0.5 G %.12f", l1, l0, g);
        /* bad weights and kinds: refused, nothing computed */
        const double bad[3] = {-1.0, NAN, INFINITY};
        for (int i = 0; i < 3; i++) {
            tb.b.gate_loss = bad[i];
            CHECK_ERR(rm_tm_f64_loss(tm, &tb.b, &l1), RAMOLE_ERR_INVALID);
            CHECK(strstr(ramole_last_error(), "gate loss") != NULL);
        }
        tb.b.gate_loss = 0.5;
        tb.b.experts = NULL, tb.b.n_experts = NULL;
        CHECK_ERR(rm_tm_f64_loss(lt, &tb.b, &l1), RAMOLE_ERR_INVALID);
        CHECK(strstr(ramole_last_error(), "router") != NULL);
        CHECK_ERR(rm_tm_f64_expert_losses(lt, &tb.b, el), RAMOLE_ERR_INVALID);
    }
    rm_tm_f64_free(lt);
    rm_tm_f64_free(tm);
    for (int j = 0; j < 3; j++) rm_adapter_free(ex[j]);
    rm_adapter_free(router);
    rm_model_free(m);
}

/* ---- optimiser ------------------------------------------------------------------------ */

TEST(train_lr_schedule) {
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.lr = 1.0f, o.warmup_steps = 10, o.total_steps = 110, o.min_lr_ratio = 0.1f;
    CHECK_NEAR(rm_lr_at(&o, 1), 0.1, 1e-7);
    CHECK_NEAR(rm_lr_at(&o, 10), 1.0, 1e-7);
    CHECK_NEAR(rm_lr_at(&o, 60), 0.55, 1e-6);  /* half way down the cosine */
    CHECK_NEAR(rm_lr_at(&o, 110), 0.1, 1e-6);
    CHECK_NEAR(rm_lr_at(&o, 500), 0.1, 1e-6);
    o.total_steps = 0;
    CHECK_NEAR(rm_lr_at(&o, 500), 1.0, 1e-7);
}

/* A fixed 24-token sequence to memorise: next-token prediction. */
static void memo_batch(test_batch *tb, int vocab) {
    memset(tb, 0, sizeof *tb);
    tb->B = 2, tb->T = 12;
    uint64_t s = 1234;
    int32_t seq[25];
    for (int i = 0; i < 25; i++) seq[i] = (int32_t)(rm_rng_next(&s) % (uint64_t)vocab);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 12; t++) {
            tb->tokens[b * 12 + t] = seq[b * 12 + t];
            tb->targets[b * 12 + t] = seq[b * 12 + t + 1];
            tb->mask[b * 12 + t] = 1;
        }
    tb->b = (rm_train_batch){.B = 2, .T = 12, .tokens = tb->tokens, .targets = tb->targets, .mask = tb->mask};
}

/* rm_tm_*_new_random draws its own parameters in rm_model_random's order:
 * the same values, bit for bit, as a tm built from rm_model_random's model
 * (tied qwen2 with biases, untied llama; float and double). */
TEST(train_new_random_equals_a_tm_of_the_random_model) {
    rm_arch archs[2] = {RM_ARCH_QWEN2, RM_ARCH_LLAMA};
    for (int a = 0; a < 2; a++) {
        rm_model_config c = tiny_config(archs[a]);
        c.rope.style = RM_ROPE_NORMAL; /* new_random, like rm_model_random, runs neox */
        rm_train_params p = {.kind = RM_TRAIN_FULL, .max_batch = 1, .max_seq = 4, .n_threads = 1};
        rm_model *m = NULL;
        rm_tm_f32 *x32 = NULL, *y32 = NULL;
        rm_tm_f64 *x64 = NULL, *y64 = NULL;
        CHECK_OK(rm_model_random(&c, 11, 0.1f, &m));
        if (!m) return;
        CHECK(m->cfg.tied_embeddings == (archs[a] == RM_ARCH_QWEN2));
        CHECK_OK(rm_tm_f32_new(m, &p, &x32));
        CHECK_OK(rm_tm_f32_new_random(&c, 11, 0.1f, &p, &y32));
        CHECK_OK(rm_tm_f64_new(m, &p, &x64));
        CHECK_OK(rm_tm_f64_new_random(&c, 11, 0.1f, &p, &y64));
        if (x32 && y32 && x64 && y64) {
            size_t n1, n2, n3, n4;
            const float *a32 = rm_tm_f32_params(x32, &n1), *b32 = rm_tm_f32_params(y32, &n2);
            const double *a64 = rm_tm_f64_params(x64, &n3), *b64 = rm_tm_f64_params(y64, &n4);
            CHECK(n1 == n2 && n3 == n4 && n1 == n3);
            CHECK_MSG(n1 == n2 && memcmp(a32, b32, n1 * sizeof *a32) == 0, "%s f32: parameters differ",
                      rm_arch_name(archs[a]));
            CHECK_MSG(n3 == n4 && memcmp(a64, b64, n3 * sizeof *a64) == 0, "%s f64: parameters differ",
                      rm_arch_name(archs[a]));
            CHECK(rm_tm_f32_config(y32)->rope.style == RM_ROPE_NEOX);
        }
        rm_tm_f32_free(x32), rm_tm_f32_free(y32);
        rm_tm_f64_free(x64), rm_tm_f64_free(y64);
        rm_model_free(m);
    }
}

TEST(train_adamw_memorises) {
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    c.hidden = 32, c.n_heads = 4, c.head_dim = 8, c.rope.n_rot = 8, c.ffn = 64;
    rm_train_params p = {.kind = RM_TRAIN_FULL, .max_batch = 2, .max_seq = 12, .n_threads = 2};
    rm_tm_f32 *tm = NULL;
    CHECK_OK(rm_tm_f32_new_random(&c, 3, 0.05f, &p, &tm));
    if (!tm) return;
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.lr = 1e-2f, o.warmup_steps = 20, o.total_steps = 300, o.weight_decay = 0.01f, o.clip_norm = 1.0f;
    rm_trainer *t = NULL;
    CHECK_OK(rm_trainer_new(tm, &o, 1, &t));
    test_batch tb;
    memo_batch(&tb, c.vocab_size);
    rm_train_stats st = {0};
    double first = 0;
    double t0 = rm_time_now();
    for (int i = 0; i < 300 && t; i++) {
        /* two micro-batches of one sequence each: accumulation */
        rm_train_batch mb[2] = {tb.b, tb.b};
        mb[0].B = mb[1].B = 1;
        mb[1].tokens += 12, mb[1].targets += 12, mb[1].mask += 12;
        size_t allocs = rm_alloc_count();
        CHECK_OK(rm_trainer_step(t, mb, 2, &st));
        if (i == 0) first = st.loss;
        CHECK_MSG(rm_alloc_count() == allocs, "a training step allocated");
    }
    double last = 0;
    CHECK_OK(rm_tm_f32_loss(tm, &tb.b, &last));
    /* the exported model gives the same loss through inference */
    rm_model *em = NULL;
    CHECK_OK(rm_tm_f32_export_model(tm, &em));
    if (em) {
        double li = inference_loss(em, &tb, NULL);
        CHECK_MSG(fabs(li - last) < 1e-4 + 1e-3 * last, "exported model: inference loss %g, training %g", li, last);
        rm_model_free(em);
    }
    printf("  memorise 24 tokens: loss %.4f -> %.5f in 300 steps (%.2f s)\n", first, last, rm_time_now() - t0);
    CHECK_MSG(last < 0.05 && first > 2.5, "loss %.4f -> %.4f", first, last);
    rm_trainer_free(t);
    rm_tm_f32_free(tm);
}

TEST(train_lora_learns) {
    rm_model *m = tiny_model(RM_ARCH_QWEN2, 61);
    if (!m) return;
    rm_adapter *ad = NULL;
    CHECK_OK(rm_adapter_random(m, 4, 8.0f, ALL, 5, 0.1f, &ad));
    if (!ad) {
        rm_model_free(m);
        return;
    }
    for (int i = 0; i < m->cfg.n_layers * RM_TARGET_COUNT; i++) /* PEFT init: B = 0 */
        if (ad->mods[i].rank) {
            int64_t din, dout;
            rm_target_dims(&m->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
            memset(ad->mods[i].B, 0, (size_t)(dout * ad->mods[i].rank) * sizeof(float));
        }
    rm_train_params p = {.kind = RM_TRAIN_LORA, .max_batch = 2, .max_seq = 12, .n_threads = 2, .lora = ad};
    rm_tm_f32 *tm = NULL;
    CHECK_OK(rm_tm_f32_new(m, &p, &tm));
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.lr = 2e-2f, o.warmup_steps = 10, o.total_steps = 150;
    rm_trainer *t = NULL;
    if (tm) CHECK_OK(rm_trainer_new(tm, &o, 1, &t));
    test_batch tb;
    memo_batch(&tb, m->cfg.vocab_size);
    rm_train_stats st = {0};
    double first = 0, last = 0;
    for (int i = 0; i < 150 && t; i++) {
        CHECK_OK(rm_trainer_step(t, &tb.b, 1, &st));
        if (i == 0) first = st.loss;
    }
    if (tm) CHECK_OK(rm_tm_f32_loss(tm, &tb.b, &last));
    printf("  LoRA r=4 on a frozen random base: loss %.4f -> %.4f in 150 steps\n", first, last);
    CHECK_MSG(last < 0.25 * first, "LoRA loss %.4f -> %.4f", first, last);
    /* the exported adapter gives the same loss through inference */
    if (tm && rm_tm_f32_export_adapter(tm, ad) == RAMOLE_OK) {
        rm_composition c1[2] = {{.mode = RM_COMPOSE_EXPLICIT, .k = 1, .experts = {ad}, .weights = {1.0f}},
                                {.mode = RM_COMPOSE_EXPLICIT, .k = 1, .experts = {ad}, .weights = {1.0f}}};
        double li = inference_loss(m, &tb, c1);
        CHECK_MSG(fabs(li - last) < 1e-4 + 1e-4 * last, "exported adapter: inference loss %g, training %g", li, last);
    }
    rm_trainer_free(t);
    rm_tm_f32_free(tm);
    rm_adapter_free(ad);
    rm_model_free(m);
}

TEST(train_router_learns) {
    router_world w;
    if (!router_world_new(&w, RM_ARCH_LLAMA, 111)) {
        router_world_free(&w);
        return;
    }
    const rm_adapter *ex[3] = {w.ex[0], w.ex[1], w.ex[2]};
    rm_train_params p = {.kind = RM_TRAIN_ROUTER, .max_batch = 2, .max_seq = 12, .n_threads = 2,
                         .experts = ex, .n_experts = 3, .router = w.router};
    rm_tm_f32 *tm = NULL;
    rm_trainer *t = NULL;
    CHECK_OK(rm_tm_f32_new(w.m, &p, &tm));
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.lr = 3e-2f;
    if (tm) CHECK_OK(rm_trainer_new(tm, &o, 1, &t));
    test_batch tb;
    memo_batch(&tb, w.m->cfg.vocab_size);
    router_batch(&tb);
    double first = 0, last = 0;
    rm_train_stats st = {0};
    for (int i = 0; i < 80 && t; i++) {
        CHECK_OK(rm_trainer_step(t, &tb.b, 1, &st));
        if (i == 0) first = st.loss;
    }
    if (tm) CHECK_OK(rm_tm_f32_loss(tm, &tb.b, &last));
    printf("  router only (base and 3 experts frozen): loss %.4f -> %.4f in 80 steps\n", first, last);
    CHECK_MSG(last < first - 0.05, "router loss %.4f -> %.4f", first, last);
    rm_trainer_free(t);
    rm_tm_f32_free(tm);
    router_world_free(&w);
}

/* Random micro-batches drawn from the trainer's RNG and data position. */
static void draw_batch(rm_trainer *t, test_batch *tb, int vocab) {
    make_batch(tb, 2, 8, vocab, rm_rng_next(&t->rng) ^ t->data_pos);
    t->data_pos += 2;
}

static void run_steps(rm_trainer *t, int n, int vocab) {
    for (int i = 0; i < n; i++) {
        test_batch tb[2];
        draw_batch(t, &tb[0], vocab);
        draw_batch(t, &tb[1], vocab);
        rm_train_batch mb[2] = {tb[0].b, tb[1].b};
        CHECK_OK(rm_trainer_step(t, mb, 2, NULL));
    }
}

TEST(train_resume_exact) {
    rm_model *m = tiny_model(RM_ARCH_LLAMA, 71);
    if (!m) return;
    rm_train_params p = {.kind = RM_TRAIN_FULL, .max_batch = 2, .max_seq = 8, .n_threads = 2};
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.lr = 3e-3f, o.warmup_steps = 4, o.total_steps = 20, o.weight_decay = 0.1f, o.clip_norm = 0.5f, o.accum = 2;
    rm_tm_f32 *a = NULL, *b = NULL;
    rm_trainer *ta = NULL, *tb = NULL;
    CHECK_OK(rm_tm_f32_new(m, &p, &a));
    CHECK_OK(rm_tm_f32_new(m, &p, &b));
    if (a && b) {
        CHECK_OK(rm_trainer_new(a, &o, 9, &ta));
        CHECK_OK(rm_trainer_new(b, &o, 9, &tb));
    }
    char *path = rm_path_join(rm_test_tmp_dir(), "train_resume.ckpt");
    if (ta && tb && path) {
        int V = m->cfg.vocab_size;
        run_steps(ta, 16, V);
        run_steps(tb, 8, V);
        CHECK_OK(rm_trainer_save(tb, path));
        rm_trainer_free(tb);
        rm_tm_f32_free(b);
        tb = NULL, b = NULL;
        /* a fresh model and trainer from the original weights */
        CHECK_OK(rm_tm_f32_new(m, &p, &b));
        if (b) CHECK_OK(rm_trainer_new(b, &o, 12345, &tb));
        if (tb) {
            CHECK_OK(rm_trainer_load(tb, path));
            CHECK(tb->step == 8);
            run_steps(tb, 8, V);
            size_t n;
            float *pa = rm_tm_f32_params(a, &n), *pb = rm_tm_f32_params(b, NULL);
            CHECK_MSG(memcmp(pa, pb, n * sizeof(float)) == 0, "resumed parameters differ");
            CHECK(memcmp(ta->m, tb->m, n * sizeof(float)) == 0 && memcmp(ta->v, tb->v, n * sizeof(float)) == 0);
            CHECK(ta->step == tb->step && ta->rng == tb->rng && ta->data_pos == tb->data_pos);
            float *p0 = rm_tm_f32_params(b, NULL);
            (void)p0;
        }
        /* a corrupted or foreign checkpoint is refused, the trainer unchanged */
        char *data = NULL;
        size_t size = 0;
        CHECK_OK(rm_file_read(path, &data, &size));
        if (data && tb) {
            data[200] ^= 1;
            char *bad = rm_path_join(rm_test_tmp_dir(), "train_bad.ckpt");
            CHECK_OK(rm_file_write_atomic(bad, data, size));
            int64_t step = tb->step;
            CHECK_ERR(rm_trainer_load(tb, bad), RAMOLE_ERR_FORMAT);
            CHECK_OK(rm_file_write_atomic(bad, data, size / 2));
            CHECK_ERR(rm_trainer_load(tb, bad), RAMOLE_ERR_FORMAT);
            CHECK(tb->step == step);
            rm_adapter *ad = NULL;
            CHECK_OK(rm_adapter_random(m, 2, 2.0f, ALL, 1, 0.1f, &ad));
            rm_train_params pl = {.kind = RM_TRAIN_LORA, .max_batch = 2, .max_seq = 8, .n_threads = 2, .lora = ad};
            rm_tm_f32 *c = NULL;
            rm_trainer *tc = NULL;
            CHECK_OK(rm_tm_f32_new(m, &pl, &c));
            if (c) CHECK_OK(rm_trainer_new(c, &o, 1, &tc));
            if (tc) CHECK_ERR(rm_trainer_load(tc, path), RAMOLE_ERR_MISMATCH);
            rm_trainer_free(tc);
            rm_tm_f32_free(c);
            rm_adapter_free(ad);
            rm_free(bad);
        }
        rm_free(data);
    }
    rm_free(path);
    rm_trainer_free(ta);
    rm_trainer_free(tb);
    rm_tm_f32_free(a);
    rm_tm_f32_free(b);
    rm_model_free(m);
}

TEST(train_deterministic) {
    /* two runs with the same seed and threads give identical parameters */
    rm_model *m = tiny_model(RM_ARCH_QWEN2, 81);
    if (!m) return;
    rm_train_params p = {.kind = RM_TRAIN_FULL, .max_batch = 2, .max_seq = 8, .n_threads = 2};
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.accum = 2;
    float *first = NULL;
    size_t n = 0;
    for (int run = 0; run < 2; run++) {
        rm_tm_f32 *tm = NULL;
        rm_trainer *t = NULL;
        CHECK_OK(rm_tm_f32_new(m, &p, &tm));
        if (tm) CHECK_OK(rm_trainer_new(tm, &o, 4, &t));
        if (t) {
            run_steps(t, 5, m->cfg.vocab_size);
            float *pp = rm_tm_f32_params(tm, &n);
            if (run == 0) {
                first = malloc(n * sizeof(float));
                if (first) memcpy(first, pp, n * sizeof(float));
            } else if (first) {
                CHECK(memcmp(first, pp, n * sizeof(float)) == 0);
            }
        }
        rm_trainer_free(t);
        rm_tm_f32_free(tm);
    }
    free(first);
    /* 1 and 2 threads: the same gradients (row splits change no sum) */
    rm_tm_f32 *t1 = NULL, *t2 = NULL;
    rm_train_params p1 = p, p2 = p;
    p1.n_threads = 1, p2.n_threads = 2;
    p1.max_batch = p2.max_batch = 8, p1.max_seq = p2.max_seq = 16;
    CHECK_OK(rm_tm_f32_new(m, &p1, &t1));
    CHECK_OK(rm_tm_f32_new(m, &p2, &t2));
    if (t1 && t2) {
        test_batch tb;
        make_batch(&tb, 8, 16, m->cfg.vocab_size, 3);
        double l1, l2;
        rm_tm_f32_zero_grad(t1);
        rm_tm_f32_zero_grad(t2);
        CHECK_OK(rm_tm_f32_backward(t1, &tb.b, 1.0, &l1));
        CHECK_OK(rm_tm_f32_backward(t2, &tb.b, 1.0, &l2));
        float *g1 = rm_tm_f32_grads(t1, &n), *g2 = rm_tm_f32_grads(t2, NULL);
        double mx = 0, dm = 0;
        for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(g1[i])), dm = fmax(dm, fabs(g1[i] - g2[i]));
        printf("  1 vs 2 threads: loss %s, max grad diff %.2e (max |g| %.2e)\n", l1 == l2 ? "identical" : "differs",
               dm, mx);
        CHECK(dm <= 1e-6 * mx);
    }
    rm_tm_f32_free(t1);
    rm_tm_f32_free(t2);
    rm_model_free(m);
}

/* ---- bad input ------------------------------------------------------------------------- */

TEST(train_bad_input) {
    rm_model *m = tiny_model(RM_ARCH_LLAMA, 91);
    if (!m) return;
    rm_train_params p = {.kind = RM_TRAIN_FULL, .max_batch = 2, .max_seq = 6, .n_threads = 2};
    rm_tm_f32 *tm = NULL;
    CHECK_OK(rm_tm_f32_new(m, &p, &tm));
    rm_train_params bad = p;
    rm_tm_f32 *none = NULL;
    bad.max_seq = 0;
    CHECK_ERR(rm_tm_f32_new(m, &bad, &none), RAMOLE_ERR_INVALID);
    bad = p, bad.kind = RM_TRAIN_LORA;
    CHECK_ERR(rm_tm_f32_new(m, &bad, &none), RAMOLE_ERR_INVALID);
    bad = p, bad.kind = RM_TRAIN_ROUTER;
    CHECK_ERR(rm_tm_f32_new(m, &bad, &none), RAMOLE_ERR_INVALID);
    CHECK(none == NULL);
    if (tm) {
        test_batch tb;
        double loss;
        make_batch(&tb, 2, 6, m->cfg.vocab_size, 3);
        tb.targets[3] = m->cfg.vocab_size;
        tb.mask[3] = 1;
        CHECK_ERR(rm_tm_f32_loss(tm, &tb.b, &loss), RAMOLE_ERR_RANGE);
        tb.targets[3] = -1;
        CHECK_ERR(rm_tm_f32_loss(tm, &tb.b, &loss), RAMOLE_ERR_RANGE);
        tb.mask[3] = 0; /* a bad target outside the mask is ignored */
        CHECK_OK(rm_tm_f32_loss(tm, &tb.b, &loss));
        tb.tokens[5] = 1000;
        CHECK_ERR(rm_tm_f32_loss(tm, &tb.b, &loss), RAMOLE_ERR_RANGE);
        tb.tokens[5] = 0;
        memset(tb.mask, 0, sizeof tb.mask);
        CHECK_ERR(rm_tm_f32_loss(tm, &tb.b, &loss), RAMOLE_ERR_INVALID);
        make_batch(&tb, 2, 6, m->cfg.vocab_size, 3);
        tb.b.T = 7;
        CHECK_ERR(rm_tm_f32_loss(tm, &tb.b, &loss), RAMOLE_ERR_INVALID);
        tb.b.T = 6;
        /* NaN: a poisoned weight; the trainer refuses the step and keeps the parameters */
        rm_adamw_params o;
        rm_adamw_params_default(&o);
        rm_trainer *t = NULL;
        CHECK_OK(rm_trainer_new(tm, &o, 1, &t));
        size_t n;
        float *pp = rm_tm_f32_params(tm, &n);
        CHECK_OK(rm_trainer_step(t, &tb.b, 1, NULL));
        float keep = pp[n / 2];
        pp[n / 2] = NAN;
        float *snap = malloc(n * sizeof(float));
        if (snap) memcpy(snap, pp, n * sizeof(float));
        CHECK_ERR(rm_tm_f32_loss(tm, &tb.b, &loss), RAMOLE_ERR_RANGE);
        CHECK_ERR(rm_trainer_step(t, &tb.b, 1, NULL), RAMOLE_ERR_RANGE);
        CHECK(t && t->step == 1);
        if (snap) CHECK(memcmp(snap, pp, n * sizeof(float)) == 0);
        free(snap);
        pp[n / 2] = keep;
        CHECK_OK(rm_trainer_step(t, &tb.b, 1, NULL));
        rm_trainer_free(t);
    }
    rm_tm_f32_free(tm);
    rm_model_free(m);
}

/* Every allocation of rm_tm_*_new and rm_trainer_new failing in turn: a
 * clean ERR_NOMEM, nothing left allocated, then success. */
TEST(train_alloc_failures) {
    router_world w;
    if (!router_world_new(&w, RM_ARCH_QWEN2, 121)) {
        router_world_free(&w);
        return;
    }
    const rm_adapter *ex[3] = {w.ex[0], w.ex[1], w.ex[2]};
    rm_train_params p = {.kind = RM_TRAIN_ROUTER, .max_batch = 2, .max_seq = 6, .n_threads = 2,
                         .experts = ex, .n_experts = 3, .router = w.router};
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    int failures = 0;
    for (size_t n = 1; n < 500; n++) {
        size_t live = rm_alloc_live_bytes();
        rm_tm_f32 *tm = NULL;
        rm_trainer *t = NULL;
        rm_alloc_fail_after(n);
        rm_status st = rm_tm_f32_new(w.m, &p, &tm);
        if (st == RAMOLE_OK) st = rm_trainer_new(tm, &o, 1, &t);
        rm_alloc_fail_after(0);
        bool done = st == RAMOLE_OK;
        if (!done) {
            failures++;
            CHECK_MSG(st == RAMOLE_ERR_NOMEM, "allocation %zu: status %s", n, ramole_status_str(st));
        }
        rm_trainer_free(t);
        rm_tm_f32_free(tm);
        CHECK_MSG(rm_alloc_live_bytes() == live, "allocation %zu failing leaks %zu bytes", n,
                  rm_alloc_live_bytes() - live);
        if (done) break;
    }
    printf("  %d allocation failure points, each clean\n", failures);
    CHECK(failures > 10);
    router_world_free(&w);
}
