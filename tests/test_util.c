/* test_util.c — see test_util.h. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float *rm_test_logits_all(const rm_model *m, const int32_t *toks, int n, int threads) {
    if (n < 1 || n > 64) return NULL;
    rm_ctx *ctx = NULL;
    rm_ctx_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = n, .n_logits = n, .n_threads = threads};
    if (rm_ctx_new(m, &p, &ctx) != RAMOLE_OK) return NULL;
    int32_t pos[64], seq[64] = {0};
    uint8_t want[64];
    for (int i = 0; i < n; i++) pos[i] = i, want[i] = 1;
    rm_batch b = {n, toks, pos, seq, want};
    float *out = NULL;
    if (rm_ctx_decode(ctx, &b) == RAMOLE_OK) {
        int V = m->cfg.vocab_size;
        out = malloc((size_t)n * V * sizeof *out);
        for (int i = 0; out && i < n; i++) memcpy(out + (size_t)i * V, rm_ctx_logits(ctx, i), (size_t)V * sizeof *out);
    }
    rm_ctx_free(ctx);
    return out;
}

double rm_test_max_rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, ma = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(a[i]) > ma) ma = fabs(a[i]);
    }
    return md / (ma > 0 ? ma : 1);
}
