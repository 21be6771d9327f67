/*
 * sampler.c — choosing the next token: the repetition penalty, then OpenAI's
 * frequency and presence penalties and logit biases, then greedy or top-k, top-p, min-p,
 * temperature and a seeded draw, in llama.cpp's order.
 * Scratch for the candidates is reserved at creation (no allocation per
 * token).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

struct rm_sampler {
    rm_sampler_params p;
    int vocab;
    uint64_t rng;
    float *logit;   /* [vocab] working copy */
    int32_t *idx;   /* [vocab] candidate ids */
    float *prob;    /* [vocab] */
    int32_t *count; /* [vocab] zero between calls: the output's token counts (only with penalties) */
    rm_logit_bias *bias; /* [p.n_logit_bias], the sampler's copy */
};

void rm_sampler_params_default(rm_sampler_params *p) {
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->frequency_penalty = p->presence_penalty = 0;
    p->logit_bias = NULL;
    p->n_logit_bias = 0;
    p->seed = 0x5eed;
}

rm_status rm_sampler_new(const rm_sampler_params *p, int vocab, rm_sampler **out) {
    *out = NULL;
    if (vocab <= 0) return rm_err(RAMOLE_ERR_INVALID, "sampler: vocabulary size %d", vocab);
    if (p->top_p <= 0 || p->min_p < 0 || p->min_p > 1 || p->repeat_penalty <= 0 || p->repeat_last_n < 0)
        return rm_err(RAMOLE_ERR_INVALID,
                      "sampler: need top_p in (0,1], min_p in [0,1], repeat_penalty > 0, repeat_last_n >= 0");
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return rm_err(RAMOLE_ERR_INVALID, "sampler: frequency and presence penalties must be finite");
    if (p->n_logit_bias < 0 || p->n_logit_bias > RM_MAX_LOGIT_BIAS || (p->n_logit_bias && !p->logit_bias))
        return rm_err(RAMOLE_ERR_INVALID, "sampler: %d logit biases (at most %d)", p->n_logit_bias, RM_MAX_LOGIT_BIAS);
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].id < 0 || p->logit_bias[i].id >= vocab || !isfinite(p->logit_bias[i].bias))
            return rm_err(RAMOLE_ERR_RANGE, "logit_bias: token %d is outside the vocabulary of %d, or its bias is "
                          "not finite", (int)p->logit_bias[i].id, vocab);
    rm_sampler *s = rm_calloc(1, sizeof *s);
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->vocab = vocab;
    s->rng = p->seed ? p->seed : 0x9e3779b97f4a7c15ull;
    s->logit = rm_malloc((size_t)vocab * sizeof *s->logit);
    s->idx = rm_malloc((size_t)vocab * sizeof *s->idx);
    s->prob = rm_malloc((size_t)vocab * sizeof *s->prob);
    bool penalised = p->frequency_penalty != 0 || p->presence_penalty != 0;
    s->count = penalised ? rm_calloc((size_t)vocab, sizeof *s->count) : NULL;
    s->bias = p->n_logit_bias ? rm_malloc((size_t)p->n_logit_bias * sizeof *s->bias) : NULL;
    if (s->bias) memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->bias);
    s->p.logit_bias = s->bias;
    if (!s->logit || !s->idx || !s->prob || (penalised && !s->count) || (p->n_logit_bias && !s->bias)) {
        rm_sampler_free(s);
        return rm_err(RAMOLE_ERR_NOMEM, "sampler: out of memory");
    }
    *out = s;
    return RAMOLE_OK;
}

void rm_sampler_free(rm_sampler *s) {
    if (!s) return;
    rm_free(s->logit);
    rm_free(s->idx);
    rm_free(s->prob);
    rm_free(s->count);
    rm_free(s->bias);
    rm_free(s);
}

static int by_logit_desc(const void *a, const void *b, void *keys) {
    const float *k = keys;
    float x = k[*(const int32_t *)a], y = k[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b; /* ties: lower id first */
}

/* Keep the k largest candidates, sorted descending (partial selection first). */
static int keep_top(rm_sampler *s, int n, int k) {
    if (k <= 0 || k > n) k = n;
    if (k < n) {
        /* Quickselect-style partition by threshold: find the k-th largest. */
        int lo = 0, hi = n - 1;
        while (lo < hi) {
            float pivot = s->logit[s->idx[(lo + hi) / 2]];
            int i = lo, j = hi;
            while (i <= j) {
                while (s->logit[s->idx[i]] > pivot) i++;
                while (s->logit[s->idx[j]] < pivot) j--;
                if (i <= j) {
                    int32_t t = s->idx[i];
                    s->idx[i] = s->idx[j];
                    s->idx[j] = t;
                    i++;
                    j--;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }
    qsort_r(s->idx, (size_t)k, sizeof *s->idx, by_logit_desc, s->logit);
    return k;
}

/* A draw from the softmax of the whole vocabulary at the temperature, in
 * id order: with no top-k, top-p or min-p nothing needs sorting. */
static int32_t draw_all(rm_sampler *s, int V, float mx) {
    double sum = 0;
    float inv_t = 1.0f / s->p.temperature;
    for (int i = 0; i < V; i++) sum += s->prob[i] = expf((s->logit[i] - mx) * inv_t);
    double r = rm_rng_uniform(&s->rng) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += s->prob[i];
        if (r < acc) return i;
    }
    for (int i = V - 1; i > 0; i--) /* rounding: the last token of nonzero mass */
        if (s->prob[i] > 0) return i;
    return 0;
}

/* How many of the n sorted survivors (prob[i] = exp(logit - max)) top-p
 * and min-p keep, each filter off when its parameter says so. *inside:
 * whether a filter's cut fell before n, so that a longer prefix could not
 * move it. */
static int filter_cut(const rm_sampler *s, int n, double sum, bool *inside) {
    const rm_sampler_params *p = &s->p;
    int keep = n;
    *inside = false;
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < n && !*inside; i++)
            if ((cum += s->prob[i] / sum) >= p->top_p) keep = i + 1, *inside = true;
    }
    if (p->min_p > 0) {
        float floor_p = p->min_p * s->prob[0]; /* prob[0] is the max (= 1 before normalising) */
        int k = 1;
        while (k < keep && s->prob[k] >= floor_p) k++;
        if (k < n) *inside = true;
        keep = k;
    }
    return keep;
}

/* OpenAI's penalties over the output: counted, applied once per distinct
 * token and the counts zeroed again, O(n_output) per call. */
static void penalise_output(rm_sampler *s, const int32_t *out, int n_output) {
    const rm_sampler_params *p = &s->p;
    for (int i = 0; i < n_output; i++)
        if (out[i] >= 0 && out[i] < s->vocab) s->count[out[i]]++;
    for (int i = 0; i < n_output; i++) {
        int32_t t = out[i];
        if (t < 0 || t >= s->vocab || !s->count[t]) continue;
        s->logit[t] -= (float)s->count[t] * p->frequency_penalty + p->presence_penalty;
        s->count[t] = 0;
    }
}

int32_t rm_sampler_sample(rm_sampler *s, const float *logits, const int32_t *history, int n_history,
                          int n_output) {
    return rm_sampler_sample_allowed(s, logits, NULL, history, n_history, n_output);
}

int32_t rm_sampler_sample_allowed(rm_sampler *s, const float *logits, const uint64_t *allow,
                                  const int32_t *history, int n_history, int n_output) {
    const rm_sampler_params *p = &s->p;
    memcpy(s->logit, logits, (size_t)s->vocab * sizeof *s->logit);
    if (allow)
        for (int i = 0; i < s->vocab; i++)
            if (!(allow[i / 64] >> (i % 64) & 1)) s->logit[i] = -INFINITY;
    if (p->repeat_penalty != 1.0f && history) {
        int from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (int i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= s->vocab) continue;
            bool seen = false; /* penalise each token once */
            for (int j = from; j < i && !seen; j++) seen = history[j] == t;
            if (seen) continue;
            float *l = &s->logit[t];
            *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        }
    }
    int n_out = n_output < n_history ? n_output : n_history;
    if (s->count && history && n_out > 0)
        penalise_output(s, history + n_history - n_out, n_out);
    for (int i = 0; i < p->n_logit_bias; i++) s->logit[p->logit_bias[i].id] += p->logit_bias[i].bias;
    if (p->temperature <= 0) {
        int32_t best = 0;
        for (int i = 1; i < s->vocab; i++)
            if (s->logit[i] > s->logit[best]) best = i; /* disallowed tokens are -inf */
        return best;
    }
    int V = s->vocab;
    float mx = s->logit[0];
    for (int i = 1; i < V; i++) mx = s->logit[i] > mx ? s->logit[i] : mx;
    bool whole = p->top_k <= 0 || p->top_k >= V;
    if (whole && p->top_p >= 1.0f && p->min_p <= 0) return draw_all(s, V, mx);
    /* softmax over the survivors, sorted so that idx[0] holds the max. With
     * no top-k, only as long a sorted prefix as top-p and min-p can reach
     * is made: the prefix grows until a cut falls inside it, and the
     * probabilities are those of the whole vocabulary (its sum taken once).
     * Sorting all of a 32k-150k vocabulary per token cost more than a small
     * model's forward. */
    double sum = 0;
    if (whole)
        for (int i = 0; i < V; i++) sum += expf(s->logit[i] - mx);
    int n = 0, want = whole ? 64 : p->top_k;
    bool inside;
    for (;;) {
        for (int i = 0; i < V; i++) s->idx[i] = i;
        n = keep_top(s, V, want);
        if (!whole) {
            sum = 0;
            for (int i = 0; i < n; i++) sum += expf(s->logit[s->idx[i]] - mx);
        }
        for (int i = 0; i < n; i++) s->prob[i] = expf(s->logit[s->idx[i]] - mx);
        int cut = filter_cut(s, n, sum, &inside);
        if (inside || n == V || !whole) {
            n = cut;
            break;
        }
        want = want * 8 < V ? want * 8 : V;
    }
    /* temperature on the survivors, then draw */
    sum = 0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = expf((s->logit[s->idx[i]] - mx) / p->temperature);
        sum += s->prob[i];
    }
    double r = rm_rng_uniform(&s->rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (r < acc) return s->idx[i];
    }
    for (int i = n - 1; i > 0; i--) /* rounding: the last survivor of nonzero mass */
        if (s->prob[i] > 0) return s->idx[i];
    return s->idx[0];
}

/* Is (x, i) more likely than (y, j): higher logit, then lower id. */
static bool above(float x, int32_t i, float y, int32_t j) { return x > y || (x == y && i < j); }

float rm_logprobs(const float *logits, int V, int32_t chosen, int n_top, rm_token_logprob *top) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    if (n_top > V) n_top = V;
    /* the best n_top so far, kept sorted by insertion: n_top is small */
    int n = 0;
    for (int32_t i = 0; i < V; i++) {
        if (n == n_top && (!n || !above(logits[i], i, logits[top[n - 1].id], top[n - 1].id))) continue;
        int k = n < n_top ? n++ : n - 1;
        while (k > 0 && above(logits[i], i, logits[top[k - 1].id], top[k - 1].id)) {
            top[k].id = top[k - 1].id;
            k--;
        }
        top[k].id = i;
    }
    for (int k = 0; k < n; k++) top[k].logprob = logits[top[k].id] - lse;
    return logits[chosen] - lse;
}
