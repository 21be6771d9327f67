/*
 * bench_train.c — training tokens/s of ramole's trainer on small random
 * Llama-family models, full and LoRA, with where the time goes (matrix
 * products, attention) next to OpenBLAS sgemm's peak measured in the same
 * process. The PyTorch peer is bench/train_torch.py (same shapes, same
 * optimiser); bench/train_bench.sh runs both and prints the ratios.
 *
 *   build/bench/bench_train [--size 5m,12m] [--mode full,lora] [-t 2] [--batch 8] [--seq 128]
 *                           [--warmup 2] [--steps 5] [--rank 16] [--no-peak]
 *   (--size none: only the sgemm peak line)
 *
 * Models (SIZES, kept equal to train_torch.py): llama, RMSNorm eps 1e-5,
 * RoPE neox (rotate-half) theta 10000 on all 64 dims of a head, GQA, no
 * bias, untied head; random weights (std 0.02).
 *   5m:  vocab 4096, hidden 256, ffn 688,  4 layers, 4 heads / 2 kv heads  (5.00M params)
 *   12m: vocab 4096, hidden 384, ffn 1024, 6 layers, 6 heads / 2 kv heads (12.59M params)
 * A step: B sequences of T random tokens, loss on every position, forward +
 * backward + global-norm clipping (1.0) + AdamW (lr 1e-3, betas 0.9/0.999,
 * eps 1e-8, weight decay 0.01 on matrices) — rm_trainer_step. LoRA: rank r
 * (alpha 2r) on q, k, v, o, gate, up, down of every layer, base frozen.
 * tokens/s = B*T*steps / wall time of the timed steps (after the warm-up).
 *
 * Output: one JSON line per (size, mode) and one for the sgemm peak, then
 * a table. gemm = every matrix product of the projections, head and LoRA
 * (rm_train_profile: wall time on the submitting thread); attention = the
 * per-head passes with their small gemms and softmax.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/train.h"

void openblas_set_num_threads(int num_threads);

typedef struct {
    const char *name;
    int vocab, hidden, ffn, layers, heads, kv;
} bench_size;

static const bench_size SIZES[] = {
    {"5m", 4096, 256, 688, 4, 4, 2},
    {"12m", 4096, 384, 1024, 6, 6, 2},
};

typedef struct {
    const char *size, *mode;
    size_t params, trainable;
    double tps, best_tps, step_s, loss, cpu_util;
    rm_train_profile prof;
} bench_result;

static int run_one(const bench_size *z, bool lora, int threads, int B, int T, int warmup, int steps, int rank,
                   bench_result *res) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = z->vocab, c.hidden = z->hidden, c.ffn = z->ffn, c.n_layers = z->layers;
    c.n_heads = z->heads, c.n_kv_heads = z->kv, c.head_dim = z->hidden / z->heads;
    c.rope.n_rot = c.head_dim, c.max_pos = T, c.rms_eps = 1e-5f;
    rm_model *m = NULL;
    rm_adapter *ad = NULL;
    rm_tm_f32 *tm = NULL;
    rm_trainer *tr = NULL;
    int rc = 1;
    int32_t *tok = malloc((size_t)B * T * sizeof(int32_t)), *tgt = malloc((size_t)B * T * sizeof(int32_t));
    uint8_t *mask = malloc((size_t)B * T);
    if (!tok || !tgt || !mask) goto done;
    if (rm_model_random(&c, 1, 0.02f, &m) != RAMOLE_OK) goto fail;
    rm_train_params p = {.kind = lora ? RM_TRAIN_LORA : RM_TRAIN_FULL, .max_batch = B, .max_seq = T,
                         .n_threads = threads};
    if (lora) {
        if (rm_adapter_random(m, rank, 2.0f * rank, (1u << RM_TARGET_COUNT) - 1, 2, 0.02f, &ad) != RAMOLE_OK)
            goto fail;
        p.lora = ad;
    }
    if (rm_tm_f32_new(m, &p, &tm) != RAMOLE_OK) goto fail;
    rm_adamw_params o;
    rm_adamw_params_default(&o);
    o.lr = 1e-3f, o.weight_decay = 0.01f, o.clip_norm = 1.0f;
    if (rm_trainer_new(tm, &o, 1, &tr) != RAMOLE_OK) goto fail;
    uint64_t s = 7;
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rm_rng_next(&s) % (uint64_t)c.vocab_size);
        tgt[i] = (int32_t)(rm_rng_next(&s) % (uint64_t)c.vocab_size);
        mask[i] = 1;
    }
    rm_train_batch b = {.B = B, .T = T, .tokens = tok, .targets = tgt, .mask = mask};
    rm_train_stats st;
    for (int i = 0; i < warmup; i++)
        if (rm_trainer_step(tr, &b, 1, &st) != RAMOLE_OK) goto fail;
    rm_tm_f32_profile(tm, NULL, true);
    double best = 1e30, t_all = rm_time_now(), c_all = rm_cpu_time_now();
    for (int i = 0; i < steps; i++) {
        double t0 = rm_time_now();
        if (rm_trainer_step(tr, &b, 1, &st) != RAMOLE_OK) goto fail;
        double dt = rm_time_now() - t0;
        if (dt < best) best = dt;
    }
    t_all = rm_time_now() - t_all;
    res->cpu_util = (rm_cpu_time_now() - c_all) / (t_all * threads);
    rm_tm_f32_profile(tm, &res->prof, false);
    res->size = z->name, res->mode = lora ? "lora" : "full";
    int64_t n_params, n_bytes;
    rm_model_size(m, &n_params, &n_bytes);
    res->params = (size_t)n_params;
    rm_tm_f32_params(tm, &res->trainable);
    res->step_s = t_all / steps;
    res->tps = (double)B * T * steps / t_all;
    res->best_tps = (double)B * T / best;
    res->loss = st.loss;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_train: %s %s: %s\n", z->name, lora ? "lora" : "full", ramole_last_error());
done:
    rm_trainer_free(tr);
    rm_tm_f32_free(tm);
    rm_adapter_free(ad);
    rm_model_free(m);
    free(tok);
    free(tgt);
    free(mask);
    return rc;
}

typedef struct {
    int M, N, K;
    const float *A, *B;
    float *C;
} split_job;

/* The trainer's way: rows of C split over a pool, OpenBLAS single-threaded. */
static void split_run(void *arg, int ith, int nth) {
    split_job *j = arg;
    int64_t lo, hi;
    rm_split(j->M, ith, nth, &lo, &hi);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(hi - lo), j->N, j->K, 1, j->A + lo * j->K, j->K, j->B,
                j->K, 0, j->C + lo * j->N, j->N);
}

/* Best GFLOP/s of C = A B^T (row-major, the trainer's forward layout) with
 * OpenBLAS at `threads` threads, or (pool not NULL) with the rows split over
 * the pool and OpenBLAS single-threaded, as the trainer runs its products. */
static double sgemm_gflops(int threads, rm_pool *pool, int M, int N, int K, int reps) {
    float *A = malloc((size_t)M * K * sizeof(float)), *Bm = malloc((size_t)N * K * sizeof(float));
    float *C = malloc((size_t)M * N * sizeof(float));
    if (!A || !Bm || !C) {
        free(A), free(Bm), free(C);
        return 0;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) Bm[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    openblas_set_num_threads(pool ? 1 : threads);
    split_job sj = {M, N, K, A, Bm, C};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* r = 0: warm-up */
        double t0 = rm_time_now();
        if (pool) rm_pool_run(pool, split_run, &sj);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, Bm, K, 0, C, N);
        double dt = rm_time_now() - t0;
        if (r == 0) continue;
        if (dt < best) best = dt;
    }
    openblas_set_num_threads(1);
    free(A), free(Bm), free(C);
    return 2.0 * M * N * K / best * 1e-9;
}

static bool in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
    return false;
}

int main(int argc, char **argv) {
    const char *sizes = "5m,12m", *modes = "full,lora";
    int threads = 2, B = 8, T = 128, warmup = 2, steps = 5, rank = 16;
    bool peak = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-peak")) peak = false;
        else if (v && !strcmp(a, "--size")) sizes = v, i++;
        else if (v && !strcmp(a, "--mode")) modes = v, i++;
        else if (v && !strcmp(a, "-t")) threads = atoi(v), i++;
        else if (v && !strcmp(a, "--batch")) B = atoi(v), i++;
        else if (v && !strcmp(a, "--seq")) T = atoi(v), i++;
        else if (v && !strcmp(a, "--warmup")) warmup = atoi(v), i++;
        else if (v && !strcmp(a, "--steps")) steps = atoi(v), i++;
        else if (v && !strcmp(a, "--rank")) rank = atoi(v), i++;
        else {
            fprintf(stderr, "usage: %s [--size 5m,12m] [--mode full,lora] [-t 2] [--batch 8] [--seq 128] "
                            "[--warmup 2] [--steps 5] [--rank 16] [--no-peak]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || B < 1 || T < 1 || steps < 1 || warmup < 0 || rank < 1) {
        fprintf(stderr, "bench_train: bad arguments\n");
        return 2;
    }
    double pk_rep = 0, pk_sq = 0, pk_1 = 0, pk_split = 0;
    int rep_n = 0, rep_k = 0;
    if (peak) {
        /* the shape of the biggest forward product of the 12m model (gate/up) and a square one */
        rep_n = 1024, rep_k = 384;
        rm_pool *pool = NULL;
        if (rm_pool_new(threads, &pool) != RAMOLE_OK) return 1;
        pk_rep = sgemm_gflops(threads, NULL, B * T, rep_n, rep_k, 20);
        pk_split = sgemm_gflops(threads, pool, B * T, rep_n, rep_k, 20);
        pk_sq = sgemm_gflops(threads, NULL, 1024, 1024, 1024, 10);
        pk_1 = sgemm_gflops(1, NULL, B * T, rep_n, rep_k, 10);
        rm_pool_free(pool);
        printf("{\"bench\":\"sgemm_peak\",\"threads\":%d,\"shape\":[%d,%d,%d],\"gflops\":%.2f,"
               "\"split_gflops\":%.2f,\"square_1024_gflops\":%.2f,\"one_thread_gflops\":%.2f}\n", threads, B * T,
               rep_n, rep_k, pk_rep, pk_split, pk_sq, pk_1);
        fflush(stdout);
    }
    bench_result res[8];
    int nres = 0, failed = 0;
    for (size_t zi = 0; zi < sizeof SIZES / sizeof SIZES[0]; zi++) {
        if (!in_list(sizes, SIZES[zi].name)) continue;
        for (int lo = 0; lo < 2; lo++) {
            if (!in_list(modes, lo ? "lora" : "full")) continue;
            bench_result *r = &res[nres];
            memset(r, 0, sizeof *r);
            if (run_one(&SIZES[zi], lo, threads, B, T, warmup, steps, rank, r)) {
                failed = 1;
                continue;
            }
            nres++;
            double tot = r->step_s * steps;
            printf("{\"engine\":\"ramole\",\"size\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"batch\":%d,\"seq\":%d,"
                   "\"params\":%zu,\"trainable\":%zu,\"steps\":%d,\"tokens_per_s\":%.1f,\"best_step_tokens_per_s\":%.1f,"
                   "\"step_s\":%.5f,\"gemm_share\":%.3f,\"gemm_gflops\":%.2f,\"attn_share\":%.3f,"
                   "\"attn_gflops\":%.2f,\"n_gemm_per_step\":%.0f,\"cpu_util\":%.2f,\"loss\":%.4f}\n",
                   r->size, r->mode, threads, B, T, r->params, r->trainable, steps, r->tps, r->best_tps, r->step_s,
                   r->prof.gemm_s / tot, r->prof.gemm_s > 0 ? r->prof.gemm_flop / r->prof.gemm_s * 1e-9 : 0,
                   r->prof.attn_s / tot, r->prof.attn_s > 0 ? r->prof.attn_flop / r->prof.attn_s * 1e-9 : 0,
                   (double)r->prof.n_gemm / steps, r->cpu_util, r->loss);
            fflush(stdout);
        }
    }
    printf("\n| size | mode | params | trainable | tokens/s | step s | gemm share | gemm GFLOP/s | attention share | "
           "attention GFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nres; i++) {
        bench_result *r = &res[i];
        double tot = r->step_s * steps;
        printf("| %s | %s | %.2fM | %.3fM | %.1f | %.3f | %.0f%% | %.1f | %.0f%% | %.1f |\n", r->size, r->mode,
               r->params * 1e-6, r->trainable * 1e-6, r->tps, r->step_s, 100 * r->prof.gemm_s / tot,
               r->prof.gemm_flop / r->prof.gemm_s * 1e-9, 100 * r->prof.attn_s / tot,
               r->prof.attn_s > 0 ? r->prof.attn_flop / r->prof.attn_s * 1e-9 : 0);
    }
    if (peak)
        printf("\nOpenBLAS sgemm peak at %d threads: %.1f GFLOP/s on %dx%dx%d (M N K), %.1f on 1024^3; "
               "rows split over %d threads (the trainer's way) %.1f; 1 thread %.1f\n", threads, pk_rep, B * T, rep_n,
               rep_k, pk_sq, threads, pk_split, pk_1);
    return failed;
}
