/*
 * screen.c — finite values, B·A norms and the KL probe (see screen.h).
 */
#include <math.h>
#include <string.h>

#include "lora/compose.h"
#include "registry/screen.h"
#include "tokenizer/tokenizer.h"

const char *const rm_screen_default_probes[] = {
    "The weather was mild and the streets were quiet in the early morning.",
    "She opened the book and began to read the first chapter aloud.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The committee will meet again next week to discuss the budget.",
    "A small dog ran across the park chasing a red ball.",
    "Please send me the report before the end of the day.",
    "The history of the city goes back more than a thousand years.",
    "He bought bread, milk and apples at the market on his way home.",
};
const int rm_screen_n_default_probes = (int)(sizeof rm_screen_default_probes / sizeof rm_screen_default_probes[0]);

rm_status rm_screen_finite(const rm_model *base, const rm_adapter *a) {
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            if (!m->rank) continue;
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)t, &din, &dout);
            size_t na = (size_t)m->rank * (size_t)din, nb = (size_t)dout * (size_t)m->rank;
            bool ok = isfinite(m->scale);
            for (size_t i = 0; ok && i < na; i++) ok = isfinite(rm_lora_elem(m, m->A, i));
            for (size_t i = 0; ok && i < nb; i++) ok = isfinite(rm_lora_elem(m, m->B, i));
            if (!ok)
                return rm_err(RAMOLE_ERR_RANGE, "adapter %s: layer %d %s holds a value that is not finite",
                              a->name ? a->name : "?", l, rm_target_hf_name((rm_target)t));
        }
    return RAMOLE_OK;
}

rm_status rm_screen_norms(const rm_model *base, const rm_adapter *a, double *norms) {
    int64_t maxd = rm_target_max_dim(&base->cfg);
    size_t cap = (size_t)a->max_rank * (size_t)maxd;
    float *A = rm_malloc(cap * sizeof *A), *B = rm_malloc(cap * sizeof *B);
    double *G = rm_malloc((size_t)a->max_rank * (size_t)a->max_rank * sizeof *G);
    if (!A || !B || !G) {
        rm_free(A), rm_free(B), rm_free(G);
        return rm_err(RAMOLE_ERR_NOMEM, "screening: out of memory");
    }
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            double *out = &norms[(size_t)l * RM_TARGET_COUNT + (size_t)t];
            if (!m->rank) { *out = -1; continue; }
            int64_t din, dout;
            int r = m->rank;
            rm_target_dims(&base->cfg, (rm_target)t, &din, &dout);
            rm_lora_module_get(m, &base->cfg, (rm_target)t, false, A); /* [r][din] */
            rm_lora_module_get(m, &base->cfg, (rm_target)t, true, B);  /* [dout][r] */
            for (int i = 0; i < r; i++) /* G = B^T B */
                for (int j = 0; j < r; j++) {
                    double s = 0;
                    for (int64_t o = 0; o < dout; o++) s += (double)B[o * r + i] * B[o * r + j];
                    G[i * r + j] = s;
                }
            double f = 0;
            for (int i = 0; i < r; i++) /* sum_ij G_ij (A A^T)_ij */
                for (int j = 0; j < r; j++) {
                    double h = 0;
                    for (int64_t c = 0; c < din; c++) h += (double)A[i * din + c] * A[j * din + c];
                    f += G[i * r + j] * h;
                }
            *out = fabs((double)m->scale) * sqrt(f > 0 ? f : 0);
        }
    rm_free(A), rm_free(B), rm_free(G);
    return RAMOLE_OK;
}

/*
 * A context of two sequences for the probe: slot 0 the base alone, slot 1
 * the base with `a` at weight 1. This is the one place that gives a
 * context its LoRA state, so that how a context gets one can change here
 * alone.
 */
static rm_status probe_ctx_new(const rm_model *base, const rm_adapter *a, int n_tokens, rm_ctx **out,
                               rm_lora_state **state) {
    rm_ctx_params p = {.n_ctx = n_tokens, .n_seq = 2, .n_batch = 2 * n_tokens, .n_logits = 2 * n_tokens,
                       .n_threads = 1};
    RM_TRY(rm_lora_ctx_new(base, &p, 1, a->max_rank, out, state));
    rm_composition c = {.mode = RM_COMPOSE_EXPLICIT, .k = 1, .experts = {a}, .weights = {1.0f}};
    rm_status st = rm_lora_set(*state, 1, &c);
    if (st != RAMOLE_OK) {
        rm_ctx_free(*out);
        rm_lora_state_free(*state);
        *out = NULL;
        *state = NULL;
    }
    return st;
}

/* KL(softmax(lp) || softmax(lq)) over n logits, in double. */
static double kl_logits(const float *lp, const float *lq, int n) {
    double mp = -INFINITY, mq = -INFINITY;
    for (int i = 0; i < n; i++) mp = fmax(mp, lp[i]), mq = fmax(mq, lq[i]);
    double zp = 0, zq = 0;
    for (int i = 0; i < n; i++) zp += exp(lp[i] - mp), zq += exp(lq[i] - mq);
    double lzp = mp + log(zp), lzq = mq + log(zq), kl = 0;
    for (int i = 0; i < n; i++) {
        double logp = lp[i] - lzp, logq = lq[i] - lzq;
        kl += exp(logp) * (logp - logq);
    }
    return kl > 0 ? kl : 0;
}

rm_status rm_screen_kl(const rm_model *base, const rm_adapter *a, const char *const *probes, int n_probes,
                       double *kl) {
    *kl = 0;
    if (!base->tokenizer) return rm_err(RAMOLE_ERR_UNSUPPORTED, "screening: the base has no tokenizer for the KL probe");
    if (n_probes < 1) return RAMOLE_OK;
    enum { T = RM_SCREEN_PROBE_TOKENS };
    int max_tok = base->cfg.max_pos < T ? base->cfg.max_pos : T;
    rm_ctx *ctx = NULL;
    rm_tok_ids ids = {0};
    int32_t tok[2 * T], pos[2 * T], seq[2 * T];
    uint8_t want[2 * T];
    double sum = 0;
    int used = 0;
    rm_lora_state *state = NULL;
    rm_status st = probe_ctx_new(base, a, max_tok, &ctx, &state);
    for (int p = 0; st == RAMOLE_OK && p < n_probes; p++) {
        st = rm_tok_encode(base->tokenizer, probes[p], strlen(probes[p]), RM_TOK_ADD_SPECIAL, &ids);
        if (st != RAMOLE_OK) break;
        int n = ids.n < (size_t)max_tok ? (int)ids.n : max_tok;
        if (n < 1) continue;
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < n; i++) {
                int j = s * n + i;
                tok[j] = ids.ids[i], pos[j] = i, seq[j] = s, want[j] = 1;
            }
        rm_batch b = {.n_tokens = 2 * n, .tokens = tok, .pos = pos, .seq = seq, .want_logits = want};
        rm_ctx_seq_clear(ctx, 0);
        rm_ctx_seq_clear(ctx, 1);
        if ((st = rm_ctx_decode(ctx, &b)) != RAMOLE_OK) break;
        double k = 0;
        for (int i = 0; i < n; i++) k += kl_logits(rm_ctx_logits(ctx, n + i), rm_ctx_logits(ctx, i), base->cfg.vocab_size);
        sum += k / n;
        used++;
    }
    rm_tok_ids_free(&ids);
    rm_ctx_free(ctx);
    rm_lora_state_free(state);
    if (st == RAMOLE_OK) *kl = used ? sum / used : 0;
    return st == RAMOLE_OK ? st : rm_err_prefix(st, "screening (KL probe)");
}
