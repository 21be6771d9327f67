/*
 * router_eval.c — the router's gates on held-out examples (router_eval.h).
 * Per example: one decode of its tokens with a gate trace set (sums over
 * the modules per position), then means per span; memory for the traces
 * is sized once for the longest example.
 */
#include "train/router_eval.h"

#include <string.h>

#include "lora/compose.h"

static const char *const span_names[RM_EVAL_SPAN_COUNT] = {"prompt", "answer", "all"};
static const char *const depth_suffixes[RM_EVAL_DEPTH_COUNT] = {"", "_share", "_last"};

const char *rm_eval_span_name(rm_eval_span s) { return (unsigned)s < RM_EVAL_SPAN_COUNT ? span_names[s] : "?"; }
const char *rm_eval_depth_suffix(rm_eval_depth d) {
    return (unsigned)d < RM_EVAL_DEPTH_COUNT ? depth_suffixes[d] : "?";
}

double rm_router_eval_accuracy(const rm_router_eval_summary *s, rm_eval_depth d, rm_eval_span sp) {
    return s->examples ? (double)s->right[d][sp] / s->examples : 0.0;
}

static int argmax(const double *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) b = v[i] > v[b] ? i : b;
    return b;
}

rm_status rm_router_eval(rm_ctx *ctx, rm_lora_state *ls, rm_adapter *const *pool, int n_pool, const rm_dataset *d,
                         rm_router_eval_fn each, void *user, rm_router_eval_summary *out) {
    memset(out, 0, sizeof *out);
    const int K = n_pool;
    if (K < 1 || K > RM_TRAIN_MAX_K) return rm_err(RAMOLE_ERR_INVALID, "router-eval: %d experts (1..%d)", K, RM_TRAIN_MAX_K);
    int maxn = 1;
    for (int i = 0; i < d->n; i++) {
        if (d->ex[i].n < 2) return rm_err(RAMOLE_ERR_INVALID, "line %d: an example needs 2 tokens", d->ex[i].line);
        maxn = d->ex[i].n > maxn ? d->ex[i].n : maxn;
    }
    rm_status st = RAMOLE_OK;
    int32_t *pos = rm_malloc((size_t)maxn * sizeof *pos), *seq = rm_calloc((size_t)maxn, sizeof *seq);
    double *tsum = rm_malloc((size_t)maxn * K * sizeof *tsum), *tshare = rm_malloc((size_t)maxn * K * sizeof *tshare);
    int *tn = rm_malloc((size_t)maxn * sizeof *tn);
    rm_router_eval_example *r = rm_malloc(sizeof *r);
    if (!pos || !seq || !tsum || !tshare || !tn || !r) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < maxn; i++) pos[i] = i;
    for (int i = 0; i < d->n; i++) {
        const rm_example *e = &d->ex[i];
        int n = e->n - 1; /* positions that predict a next token */
        rm_ctx_seq_clear(ctx, 0);
        if ((st = rm_lora_restart(ls, 0, e->n_prompt)) != RAMOLE_OK) goto out; /* a prompt-pooled router's state */
        memset(tsum, 0, (size_t)n * K * sizeof *tsum);
        memset(tshare, 0, (size_t)n * K * sizeof *tshare);
        memset(tn, 0, (size_t)n * sizeof *tn);
        rm_lora_trace_gates(ls, &(rm_gate_trace){.gates = tsum, .shares = tshare, .n = tn});
        rm_batch b = {n, e->tokens, pos, seq, NULL};
        st = rm_ctx_decode(ctx, &b);
        rm_lora_trace_gates(ls, NULL);
        if (st != RAMOLE_OK) goto out;
        memset(r, 0, sizeof *r);
        r->line = e->line;
        r->expected = e->n_adapters ? e->adapters[0] : NULL;
        int cnt[RM_EVAL_SPAN_COUNT] = {0};
        for (int t = 0; t < n; t++) {
            const float *g = rm_lora_last_gates(ls, t);
            int sp = t + 1 >= e->n_prompt ? RM_EVAL_SPAN_ANSWER : RM_EVAL_SPAN_PROMPT;
            for (int p = 0; p < K; p++) {
                double every = tn[t] ? tsum[(size_t)t * K + p] / tn[t] : 0;
                double share = tn[t] ? tshare[(size_t)t * K + p] / tn[t] : 0;
                double (*w)[RM_EVAL_SPAN_COUNT][RM_TRAIN_MAX_K] = r->weights;
                w[RM_EVAL_DEPTH_EVERY][sp][p] += every, w[RM_EVAL_DEPTH_EVERY][RM_EVAL_SPAN_ALL][p] += every;
                w[RM_EVAL_DEPTH_SHARE][sp][p] += share, w[RM_EVAL_DEPTH_SHARE][RM_EVAL_SPAN_ALL][p] += share;
                w[RM_EVAL_DEPTH_LAST][sp][p] += g[p], w[RM_EVAL_DEPTH_LAST][RM_EVAL_SPAN_ALL][p] += g[p];
            }
            cnt[sp]++, cnt[RM_EVAL_SPAN_ALL]++;
        }
        for (int dep = 0; dep < RM_EVAL_DEPTH_COUNT; dep++)
            for (int s = 0; s < RM_EVAL_SPAN_COUNT; s++) {
                for (int p = 0; p < K; p++) r->weights[dep][s][p] /= cnt[s] ? cnt[s] : 1;
                r->picked[dep][s] = argmax(r->weights[dep][s], K);
            }
        if (r->expected) {
            out->examples++;
            for (int dep = 0; dep < RM_EVAL_DEPTH_COUNT; dep++)
                for (int s = 0; s < RM_EVAL_SPAN_COUNT; s++)
                    out->right[dep][s] += !strcmp(r->expected, pool[r->picked[dep][s]]->name);
        }
        if (each && (st = each(r, user)) != RAMOLE_OK) goto out;
    }
out:
    rm_free(pos);
    rm_free(seq);
    rm_free(tsum);
    rm_free(tshare);
    rm_free(tn);
    rm_free(r);
    return st;
}
