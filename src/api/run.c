/*
 * run.c — include/ramole/run.h over src/model and src/lora: a context of
 * one sequence, the prompt as one batch, the logits or the timing.
 */
#include <stdlib.h>
#include <string.h>

#include "lora/compose.h"
#include "model/public.h"

/* Adapters of a run, loaded against the model. */
typedef struct {
    rm_adapter *experts[RM_LORA_MAX_K];
    rm_adapter *router;
    rm_composition comp;
    rm_lora_state *state; /* attached to the run's context (free the context first) */
    int max_rank;
} run_lora;

static void run_lora_free(run_lora *l) {
    rm_lora_state_free(l->state);
    for (int i = 0; i < RM_LORA_MAX_K; i++) rm_adapter_free(l->experts[i]);
    rm_adapter_free(l->router);
}

static rm_status load_one(const rm_model *m, const char *path, rm_type t, rm_adapter **out, int *max_rank) {
    RM_TRY(rm_adapter_load(m, path, out));
    RM_TRY(rm_adapter_convert(*out, m, t));
    if ((*out)->max_rank > *max_rank) *max_rank = (*out)->max_rank;
    return RAMOLE_OK;
}

static rm_status load_lora(const rm_model *m, const ramole_lora_set *s, run_lora *l) {
    memset(l, 0, sizeof *l);
    if (!s || s->mode == RAMOLE_COMPOSE_NONE) return RAMOLE_OK;
    if (s->n_adapters < 1 || s->n_adapters > RM_LORA_MAX_K || (unsigned)s->mode >= RM_COMPOSE_COUNT)
        return rm_err(RAMOLE_ERR_INVALID, "lora: %d adapters (1..%d), mode %d", s->n_adapters, RM_LORA_MAX_K,
                      (int)s->mode);
    if ((unsigned)s->adapter_type > RAMOLE_ADAPTERS_BF16) return rm_err(RAMOLE_ERR_INVALID, "lora: unknown adapter type");
    static const rm_type types[] = {RM_TYPE_F32, RM_TYPE_F16, RM_TYPE_BF16};
    rm_type t = types[s->adapter_type];
    for (int i = 0; i < s->n_adapters; i++) RM_TRY(load_one(m, s->adapters[i], t, &l->experts[i], &l->max_rank));
    if (s->router) RM_TRY(load_one(m, s->router, t, &l->router, &l->max_rank));
    l->comp.mode = (rm_compose_mode)s->mode;
    l->comp.k = s->n_adapters;
    for (int i = 0; i < s->n_adapters; i++) {
        l->comp.experts[i] = l->experts[i];
        l->comp.weights[i] = s->weights[i];
    }
    l->comp.router = l->router;
    return RAMOLE_OK;
}

/* The run's context; with adapters, their state attached and kept in l. */
static rm_status open_ctx(const rm_model *m, const ramole_run_params *p, int n_batch, int n_logits, int n_ctx,
                          run_lora *l, rm_ctx **ctx) {
    rm_ctx_params cp = {.n_ctx = n_ctx, .n_seq = 1, .n_batch = n_batch, .n_logits = n_logits,
                        .n_threads = p->n_threads > 0 ? p->n_threads : rm_cpu_count(), .kv_block = p->kv_block,
                        .kv_type = p->kv_type == RAMOLE_KV_F16 ? RM_TYPE_F16 : RM_TYPE_F32};
    if (!l || l->comp.mode == RM_COMPOSE_NONE) return rm_ctx_new(m, &cp, ctx);
    RM_TRY(rm_lora_ctx_new(m, &cp, l->comp.k, l->max_rank, ctx, &l->state));
    return rm_lora_set(l->state, 0, &l->comp);
}

/* Run the prompt as one batch of position 0.. (logits for every token if all). */
static rm_status run_prompt(rm_ctx *ctx, const int32_t *tokens, int n, bool all) {
    int32_t *pos = rm_malloc((size_t)n * sizeof *pos), *seq = rm_calloc((size_t)n, sizeof *seq);
    uint8_t *want = rm_malloc((size_t)n);
    rm_status st;
    if (!pos || !seq || !want) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        want[i] = all || i == n - 1;
    }
    rm_batch b = {n, tokens, pos, seq, want};
    st = rm_ctx_decode(ctx, &b);
done:
    rm_free(pos);
    rm_free(seq);
    rm_free(want);
    return st;
}

static rm_status decode_one(rm_ctx *ctx, int32_t token, int32_t pos) {
    int32_t seq = 0;
    uint8_t want = 1;
    rm_batch b = {1, &token, &pos, &seq, &want};
    return rm_ctx_decode(ctx, &b);
}

ramole_status ramole_model_logits(const ramole_model *pm, const ramole_run_params *p, const ramole_lora_set *lora,
                                  const int32_t *tokens, int n, int all, float **logits, int *n_rows) {
    *logits = NULL;
    *n_rows = 0;
    if (n < 1) return rm_err(RAMOLE_ERR_INVALID, "logits: no tokens");
    const rm_model *m = pm->m;
    rm_ctx *ctx = NULL;
    run_lora l;
    rm_status st = load_lora(m, lora, &l);
    l.comp.n_prompt = n; /* the tokens given are the prompt (a prompt-pooled router's) */
    if (st == RAMOLE_OK) st = open_ctx(m, p, n, all ? n : 1, n, &l, &ctx);
    if (st == RAMOLE_OK) st = run_prompt(ctx, tokens, n, all);
    if (st == RAMOLE_OK) {
        int rows = rm_ctx_n_logits(ctx), vocab = m->cfg.vocab_size;
        float *out = rm_malloc((size_t)rows * (size_t)vocab * sizeof *out);
        if (!out) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        for (int r = 0; out && r < rows; r++) memcpy(out + (size_t)r * vocab, rm_ctx_logits(ctx, r), vocab * sizeof *out);
        *logits = out;
        *n_rows = out ? rows : 0;
    }
    rm_ctx_free(ctx);
    run_lora_free(&l);
    return st;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

ramole_status ramole_model_bench(const ramole_model *pm, const ramole_run_params *p, int np, int nd,
                                 ramole_bench_result *out) {
    memset(out, 0, sizeof *out);
    const rm_model *m = pm->m;
    if (np < 1 || nd < 0) return rm_err(RAMOLE_ERR_INVALID, "bench: %d prompt and %d decode tokens", np, nd);
    rm_ctx *ctx = NULL;
    RM_TRY(open_ctx(m, p, np, 1, np + nd + 1, NULL, &ctx));
    int32_t *prompt = rm_malloc((size_t)np * sizeof *prompt);
    rm_status st = prompt ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    uint64_t s = 12345;
    for (int i = 0; prompt && i < np; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        prompt[i] = (int32_t)(3 + (s >> 33) % (uint64_t)(m->cfg.vocab_size - 3));
    }
    double *steps = nd > 0 ? rm_malloc((size_t)nd * sizeof *steps) : NULL; /* seconds per decoded token */
    if (nd > 0 && !steps) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    double t0 = rm_time_now(), c0 = rm_cpu_time_now();
    if (st == RAMOLE_OK) st = run_prompt(ctx, prompt, np, false);
    double t1 = rm_time_now(), c1 = rm_cpu_time_now();
    for (int i = 0; st == RAMOLE_OK && i < nd; i++) {
        double ts = rm_time_now();
        const float *l = rm_ctx_logits(ctx, 0);
        int32_t best = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++)
            if (l[v] > l[best]) best = v;
        st = decode_one(ctx, best, np + i);
        steps[i] = rm_time_now() - ts;
    }
    double t2 = rm_time_now(), c2 = rm_cpu_time_now();
    if (st == RAMOLE_OK) {
        out->prefill_tps = np / (t1 - t0);
        int nthp = rm_pool_size(rm_ctx_pool(ctx));
        out->prefill_cpu_util = (c1 - c0) / ((t1 - t0) * (nthp > 0 ? nthp : 1));
        out->decode_tps = nd > 0 ? nd / (t2 - t1) : 0.0;
        if (nd > 0) {
            int nth = rm_pool_size(rm_ctx_pool(ctx));
            out->decode_cpu_util = (c2 - c1) / ((t2 - t1) * (nth > 0 ? nth : 1));
            qsort(steps, (size_t)nd, sizeof *steps, cmp_double);
            out->decode_best_tps = 1.0 / steps[0];
            out->decode_median_tps = 1.0 / steps[nd / 2];
        }
    }
    rm_free(steps);
    rm_free(prompt);
    rm_ctx_free(ctx);
    return st;
}
