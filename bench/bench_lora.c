/*
 * bench_lora.c — heterogeneous LoRA batches: tokens/s of a batch where
 * every sequence has its own top-k set from a pool of adapters, in mixture
 * and router mode, next to the same batch with no adapters, in one run.
 *
 *   build/bench/bench_lora MODEL [--pool 256] [--rank 16] [--batch 16,64]
 *                          [--prompt 16] [--decode 8] [-t 2] [--lora-type f32,f16]
 *
 * Adapters are random (rank R on q,k,v,o,gate,up,down), stored in each
 * type of --lora-type in turn; each sequence draws k = 3 distinct adapters.
 * Prefill runs the prompts of all sequences as one batch; decode runs one
 * token per sequence per step. A warm-up pass without adapters runs first
 * for each batch size, so that page faults of the mapped weights do not
 * count against the base; the no-adapter batch runs again after the
 * adapter runs and the ratios are against the mean of its two runs, so
 * that a drift of the machine's speed over the run does not bias them.
 * Prints one JSON line per (batch, type, mode).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora/compose.h"

static uint64_t rng(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

typedef struct {
    double prefill_tps, decode_tps;
    int distinct;
} result;

static int run(const rm_model *m, rm_adapter **pool, int n_pool, rm_adapter *router, int B, int L, int D,
               int threads, rm_compose_mode mode, int max_rank, result *res) {
    rm_ctx_params p = {.n_ctx = L + D + 1, .n_seq = B, .n_batch = B * L, .n_logits = B, .n_threads = threads};
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    if (rm_lora_ctx_new(m, &p, 3, max_rank, &ctx, &ls) != RAMOLE_OK) return 1;
    uint64_t s = 42;
    bool *used = calloc((size_t)n_pool, 1);
    res->distinct = 0;
    for (int q = 0; q < B; q++) {
        rm_composition c = {.mode = mode, .k = 3, .router = router};
        for (int j = 0; j < 3; j++) {
            int a;
            bool dup;
            do { /* distinct within the sequence */
                a = (int)(rng(&s) % (uint64_t)n_pool);
                dup = false;
                for (int i = 0; i < j; i++) dup |= c.experts[i] == pool[a];
            } while (dup);
            c.experts[j] = pool[a];
            if (!used[a]) used[a] = true, res->distinct++;
        }
        if (rm_lora_set(ls, q, &c) != RAMOLE_OK) return 1;
    }
    free(used);
    int n = B * L;
    int32_t *tok = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4), *seq = malloc((size_t)n * 4);
    uint8_t *want = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        seq[i] = i / L;
        pos[i] = i % L;
        tok[i] = (int32_t)(3 + rng(&s) % (uint64_t)(m->cfg.vocab_size - 3));
        want[i] = pos[i] == L - 1;
    }
    rm_batch b = {n, tok, pos, seq, want};
    double t0 = rm_time_now();
    if (rm_ctx_decode(ctx, &b) != RAMOLE_OK) return 1;
    double t1 = rm_time_now();
    for (int d = 0; d < D; d++) {
        for (int q = 0; q < B; q++) {
            seq[q] = q;
            pos[q] = L + d;
            tok[q] = (int32_t)(3 + rng(&s) % (uint64_t)(m->cfg.vocab_size - 3));
            want[q] = 1;
        }
        rm_batch bd = {B, tok, pos, seq, want};
        if (rm_ctx_decode(ctx, &bd) != RAMOLE_OK) return 1;
    }
    double t2 = rm_time_now();
    res->prefill_tps = n / (t1 - t0);
    res->decode_tps = D ? (double)B * D / (t2 - t1) : 0;
    free(tok), free(pos), free(seq), free(want);
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_lora MODEL [--pool N] [--rank R] [--batch 16,64] [--prompt L] [--decode D] [-t T] "
                        "[--lora-type f32,f16]\n");
        return 2;
    }
    const char *model = argv[1], *batches = "16,64", *types_arg = "f32,f16";
    int n_pool = 256, rank = 16, L = 16, D = 8, threads = 2;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--pool")) n_pool = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rank")) rank = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batches = argv[i + 1];
        else if (!strcmp(argv[i], "--prompt")) L = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode")) D = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lora-type")) types_arg = argv[i + 1];
        else {
            fprintf(stderr, "bench_lora: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    rm_type types[4];
    int n_types = 0;
    char tbuf[64];
    snprintf(tbuf, sizeof tbuf, "%s", types_arg);
    for (char *save = NULL, *tk = strtok_r(tbuf, ",", &save); tk; tk = strtok_r(NULL, ",", &save))
        if (n_types == 4 || !rm_type_from_name(tk, &types[n_types++]) || types[n_types - 1] == RM_TYPE_Q8_0) {
            fprintf(stderr, "bench_lora: --lora-type takes up to 4 of f32, f16, bf16 (got %s)\n", types_arg);
            return 2;
        }
    if (n_pool < 3 || rank < 1 || L < 1 || D < 0 || threads < 1 || !n_types) {
        fprintf(stderr, "bench_lora: need --pool >= 3, --rank >= 1, --prompt >= 1, -t >= 1\n");
        return 2;
    }
    rm_model *m = NULL;
    if (rm_model_open(model, &m) != RAMOLE_OK) {
        fprintf(stderr, "bench_lora: %s\n", ramole_last_error());
        return 1;
    }
    rm_adapter **pool = calloc((size_t)n_pool, sizeof *pool), *router = NULL;
    unsigned all = (1u << RM_TARGET_COUNT) - 1;
    double t0 = rm_time_now();
    for (int i = 0; i < n_pool; i++)
        if (rm_adapter_random(m, rank, 2.0f * rank, all, 1000 + i, 0.02f, &pool[i]) != RAMOLE_OK) {
            fprintf(stderr, "bench_lora: %s\n", ramole_last_error());
            return 1;
        }
    if (rm_adapter_random(m, 4, 4, all, 7, 0.02f, &router) != RAMOLE_OK) return 1;
    fprintf(stderr, "bench_lora: %d adapters of rank %d made in %.1f s\n", n_pool, rank, rm_time_now() - t0);
    char buf[64];
    snprintf(buf, sizeof buf, "%s", batches);
    for (char *save = NULL, *tk = strtok_r(buf, ",", &save); tk; tk = strtok_r(NULL, ",", &save)) {
        int B = atoi(tk);
        result base[2], warm;
        /* warm-up: the first pass pays the page faults of the mapped weights */
        if (run(m, pool, n_pool, router, B, L, 1, threads, RM_COMPOSE_NONE, rank, &warm)) return 1;
        if (run(m, pool, n_pool, router, B, L, D, threads, RM_COMPOSE_NONE, rank, &base[0])) return 1;
        result res[4][2];
        for (int ti = 0; ti < n_types; ti++) {
            for (int i = 0; i < n_pool; i++)
                if (rm_adapter_convert(pool[i], m, types[ti]) != RAMOLE_OK) {
                    fprintf(stderr, "bench_lora: %s\n", ramole_last_error());
                    return 1;
                }
            if (rm_adapter_convert(router, m, types[ti]) != RAMOLE_OK) return 1;
            for (int k = 0; k < 2; k++)
                if (run(m, pool, n_pool, router, B, L, D, threads, k ? RM_COMPOSE_ROUTER : RM_COMPOSE_MIXTURE, rank,
                        &res[ti][k])) {
                    fprintf(stderr, "bench_lora: %s\n", ramole_last_error());
                    return 1;
                }
        }
        if (run(m, pool, n_pool, router, B, L, D, threads, RM_COMPOSE_NONE, rank, &base[1])) return 1;
        double bp = (base[0].prefill_tps + base[1].prefill_tps) / 2, bd = (base[0].decode_tps + base[1].decode_tps) / 2;
        for (int ti = -1; ti < n_types; ti++)
            for (int k = 0; k < (ti < 0 ? 1 : 2); k++) {
                result r = ti < 0 ? (result){bp, bd, 0} : res[ti][k];
                const char *mode = ti < 0 ? "none" : k ? "router" : "mixture";
                printf("{\"bench\":\"lora\",\"batch\":%d,\"mode\":\"%s\",\"lora_type\":\"%s\",\"pool\":%d,"
                       "\"rank\":%d,\"distinct\":%d,\"threads\":%d,\"prompt\":%d,\"decode\":%d,"
                       "\"prefill_tps\":%.2f,\"decode_tps\":%.2f,\"prefill_ratio\":%.3f,\"decode_ratio\":%.3f}\n",
                       B, mode, ti < 0 ? "-" : rm_type_name(types[ti]), n_pool, rank, r.distinct, threads, L, D,
                       r.prefill_tps, r.decode_tps, r.prefill_tps / bp, r.decode_tps / bd);
            }
        fprintf(stderr, "bench_lora: batch %d, no adapters: prefill %.1f / %.1f tok/s, decode %.1f / %.1f tok/s "
                        "(before / after the adapter runs)\n",
                B, base[0].prefill_tps, base[1].prefill_tps, base[0].decode_tps, base[1].decode_tps);
        fflush(stdout);
    }
    for (int i = 0; i < n_pool; i++) rm_adapter_free(pool[i]);
    free(pool);
    rm_adapter_free(router);
    rm_model_free(m);
    return 0;
}
