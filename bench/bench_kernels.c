/*
 * bench_kernels.c — kernel microbenchmarks against the memory roofline.
 *
 *   build/bench/bench_kernels [--quick] [--crossover] [--no-gemm] [--k-sweep] [--no-pack] [--cpu-time]
 *                             [--no-hgemm] [--type f16|q8_0|q4_k|...]...
 *
 * 1. Read bandwidth: sum of a 512 MiB f32 buffer (AVX2 when available),
 *    1 and 2 threads, best of 8 — the roofline for decode.
 * 2. Matvec (m = 1) GB/s of weight bytes for f16, q8_0 and q4_k (and bf16,
 *    f32, q4_0, q4_1, q5_k, q6_k)
 *    on TinyLlama shapes, 1 and 2 threads. Each timed call touches a fresh
 *    copy of the matrix (copies cycle through >= 256 MiB) so the weights come
 *    from DRAM as they do in a real decode, not from the last-level cache.
 *    The last shape is a rank-16 LoRA B matrix (the expand of decode), run
 *    by the short-row kernel.
 * 3. GEMM GFLOP/s at m = 512 (prefill) on the same shapes.
 * Types a model packs at load on this CPU (q4_k, q6_k with AVX-512 VNNI:
 * rm_matmul_pack_wanted) are timed in that packed form, as models run them;
 * their GB/s count the packed bytes; --no-pack times the file layout.
 * --cpu-time times matmuls by the process's CPU time instead of the wall
 * clock: on a machine shared with other work the figures then stay those of
 * the cores' own work (the 2-thread ones count both threads' time, so they
 * read as per-core throughput).
 * --no-hgemm times f16 and bf16 GEMMs on the older path (W widened to f32
 * panels for sgemm) instead of the one that widens W in registers (hgemm.c).
 * --crossover also times m = 1..32 to place the dot/GEMM switch.
 * --k-sweep times f16 and bf16 matrix-vector products of about 22 MiB with
 * rows of 1024..8192 elements, X in f32 and (past RM_KERN_HALF_X_MIN_K)
 * rounded to f16, to show where f32 X and one W row stop sharing L1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kern_internal.h" /* rm_kern_matmul_set_gemm_min_m */

#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef struct {
    const float *buf;
    int64_t n;
    double sums[64];
} bw_job;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static double sum_avx2(const float *p, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return (double)t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

static double sum_plain(const float *p, int64_t n) {
    float s[8] = {0};
    for (int64_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += p[i + j];
    return (double)s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static void bw_fn(void *ctx, int ith, int nth) {
    bw_job *j = ctx;
    int64_t lo, hi;
    rm_split(j->n / 64, ith, nth, &lo, &hi); /* 64-float (256 B) aligned chunks */
#if defined(__x86_64__)
    if (rm_isa_supported(RM_ISA_AVX2)) {
        j->sums[ith] = sum_avx2(j->buf + lo * 64, (hi - lo) * 64);
        return;
    }
#endif
    j->sums[ith] = sum_plain(j->buf + lo * 64, (hi - lo) * 64);
}

static double bench_bandwidth(rm_pool *pool, size_t bytes) {
    float *buf = rm_malloc(bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < bytes / 4; i++) buf[i] = (float)(i & 7);
    bw_job j = {.buf = buf, .n = (int64_t)(bytes / 4)};
    double best = 0;
    for (int r = 0; r < 8; r++) {
        double t0 = rm_time_now();
        rm_pool_run(pool, bw_fn, &j);
        double dt = rm_time_now() - t0;
        if (bytes / dt > best) best = bytes / dt;
    }
    rm_free(buf);
    return best / 1e9;
}

typedef struct {
    const char *name;
    int64_t n, k;
} shape;

static const shape g_shapes[] = {
    {"attn 2048x2048", 2048, 2048},
    {"ffn up 5632x2048", 5632, 2048},
    {"ffn down 2048x5632", 2048, 5632},
    {"lm_head 32000x2048", 32000, 2048},
    {"lora B 5632x16", 5632, 16}, /* the LoRA expand: short rows (rank 16) */
};

/* Copies of a random weight matrix of type wt, enough to exceed the caches. */
static uint8_t *make_weights(rm_type wt, int64_t n, int64_t k, size_t *bytes, int *copies, size_t min_total) {
    *bytes = rm_type_row_bytes(wt, k) * (size_t)n;
    *copies = (int)((min_total + *bytes - 1) / *bytes);
    if (*copies < 2) *copies = 2;
    uint8_t *w = rm_malloc(*bytes * (size_t)*copies);
    float *row = rm_malloc((size_t)k * 4);
    if (!w || !row) {
        rm_free(w), rm_free(row);
        return NULL;
    }
    uint32_t s = 12345;
    for (int64_t r = 0; r < n; r++) {
        for (int64_t l = 0; l < k; l++) {
            s = s * 1664525u + 1013904223u;
            row[l] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
        }
        rm_convert(wt, w + (size_t)r * rm_type_row_bytes(wt, k), RM_TYPE_F32, row, k);
    }
    for (int c = 1; c < *copies; c++) memcpy(w + (size_t)c * *bytes, w, *bytes);
    rm_free(row);
    return w;
}

static bool g_no_pack, g_cpu_time;

/* Seconds on the clock the options chose. */
static double clock_now(void) {
    return g_cpu_time ? rm_cpu_time_now() : rm_time_now();
}

/* The copies of w in the form a model keeps them in: packed at load where
 * this CPU wants it (rm_matmul_pack_wanted), else NULL. *pbytes: one copy. */
static uint8_t *make_packed(rm_type wt, const uint8_t *w, size_t bytes, int copies, int64_t n, int64_t k,
                            size_t *pbytes) {
    *pbytes = 0;
    if (g_no_pack || !rm_matmul_pack_wanted(wt)) return NULL;
    *pbytes = (rm_matmul_pack_bytes(wt, n, k) + 63) & ~(size_t)63;
    uint8_t *p = rm_malloc(*pbytes * (size_t)copies);
    for (int c = 0; p && c < copies; c++) rm_matmul_pack(p + (size_t)c * *pbytes, w + (size_t)c * bytes, wt, n, k);
    return p;
}

/* Median-free "best of" timing of reps calls over rotating copies: seconds
 * per call; through the packed copies when given (pbytes each). */
static double time_matmul(rm_pool *pool, rm_type wt, const uint8_t *w, size_t bytes, const uint8_t *packed,
                          size_t pbytes, int copies, float *y, const float *x, int64_t m, int64_t n, int64_t k,
                          void *work, size_t ws, int reps) {
    rm_compute c = {.pool = pool, .work = work, .work_size = ws};
    rm_matmul_packed(&c, y, x, m, w, packed, wt, n, k); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const uint8_t *wc = w + (size_t)(r % copies) * bytes;
        const uint8_t *pc = packed ? packed + (size_t)(r % copies) * pbytes : NULL;
        double t0 = clock_now();
        rm_matmul_packed(&c, y, x, m, wc, pc, wt, n, k);
        double dt = clock_now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

/* Both matmul paths at m = 1..64 (2 threads) to place the switch points. */
static void crossover_table(rm_pool *pool, rm_type wt, const uint8_t *w, size_t bytes, int copies, float *y,
                            const float *x, const shape *s) {
    static const int64_t ms[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64};
    int saved_h = rm_kern_matmul_hgemm_min_m();
    printf("    %s %s, 2 threads: m, dot path GFLOP/s, GEMM path GFLOP/s\n", s->name, rm_type_name(wt));
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        double gf[2];
        for (int path = 0; path < 2; path++) {
            rm_kern_matmul_set_gemm_min_m(path == 0 ? 1 << 30 : 1);
            rm_kern_matmul_set_hgemm_min_m(path == 0 ? 1 << 30 : 1);
            size_t ws = rm_matmul_work_size(wt, ms[i], s->n, s->k, 2);
            void *work = ws ? rm_malloc(ws) : NULL;
            double dt = time_matmul(pool, wt, w, bytes, NULL, 0, copies, y, x, ms[i], s->n, s->k, work, ws, 5);
            gf[path] = 2.0 * ms[i] * s->n * s->k / dt / 1e9;
            rm_free(work);
        }
        printf("      m=%-3lld %7.1f %7.1f\n", (long long)ms[i], gf[0], gf[1]);
    }
    rm_kern_matmul_set_gemm_min_m(0);
    rm_kern_matmul_set_hgemm_min_m(saved_h);
}

/* GB/s of m = 1 products on one thread over row lengths, f32 X against the f16 X of long rows. */
static void k_sweep(rm_pool *pool, float *y, const float *x, int reps) {
    static const int64_t ks[] = {1024, 2048, 3072, 4096, 5120, 5632, 8192};
    static const rm_type types[] = {RM_TYPE_F16, RM_TYPE_BF16};
    bool saved = rm_kern_matmul_half_x();
    printf("\nrow length sweep, m = 1, 1 thread, GB/s (X in f32 / X in f16 where k > %d):\n", RM_KERN_HALF_X_MIN_K);
    for (size_t it = 0; it < sizeof types / sizeof types[0]; it++) {
        for (size_t ik = 0; ik < sizeof ks / sizeof ks[0]; ik++) {
            int64_t k = ks[ik], n = (int64_t)11534336 / k; /* 22 MiB of 2-byte weights */
            size_t bytes;
            int copies;
            uint8_t *w = make_weights(types[it], n, k, &bytes, &copies, (size_t)256 << 20);
            size_t ws = rm_matmul_work_size(types[it], 1, n, k, 1);
            void *work = ws ? rm_malloc(ws) : NULL;
            if (!w || (ws && !work)) {
                fprintf(stderr, "bench_kernels: out of memory\n");
                rm_free(w), rm_free(work);
                break;
            }
            double best[2] = {1e30, 1e30}; /* the two ways alternate, so both see the same machine */
            rm_compute c = {.pool = pool, .work = work, .work_size = ws};
            for (int r = 0; r < 2 * reps; r++) {
                rm_kern_matmul_set_half_x(r % 2 == 1);
                const uint8_t *wc = w + (size_t)(r % copies) * bytes;
                double t0 = rm_time_now();
                rm_matmul(&c, y, x, 1, wc, types[it], n, k);
                double dt = rm_time_now() - t0;
                best[r % 2] = dt < best[r % 2] ? dt : best[r % 2];
            }
            double gbs[2] = {bytes / best[0] / 1e9, bytes / best[1] / 1e9};
            printf("  %-5s %5lld x %-5lld %7.2f %7.2f\n", rm_type_name(types[it]), (long long)n, (long long)k, gbs[0],
                   gbs[1]);
            rm_free(work), rm_free(w);
        }
    }
    rm_kern_matmul_set_half_x(saved);
}

int main(int argc, char **argv) {
    bool quick = false, crossover = false, gemm = true, sweep = false, only[RM_TYPE_COUNT] = {false}, any_only = false;
    for (int i = 1; i < argc; i++) {
        rm_type t;
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--crossover") == 0) crossover = true;
        else if (strcmp(argv[i], "--no-gemm") == 0) gemm = false;
        else if (strcmp(argv[i], "--k-sweep") == 0) sweep = true;
        else if (strcmp(argv[i], "--no-pack") == 0) g_no_pack = true;
        else if (strcmp(argv[i], "--cpu-time") == 0) g_cpu_time = true;
        else if (strcmp(argv[i], "--no-hgemm") == 0) rm_kern_matmul_set_hgemm(false);
        else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc && rm_type_from_name(argv[i + 1], &t)) {
            only[t] = any_only = true;
            i++;
        } else {
            fprintf(stderr, "usage: %s [--quick] [--crossover] [--no-gemm] [--k-sweep] [--no-pack] [--cpu-time] [--no-hgemm] "
                            "[--type f16|q8_0|q4_k|...]...\n", argv[0]);
            return 2;
        }
    }
    rm_pool *pools[2] = {NULL, NULL};
    for (int t = 0; t < 2; t++)
        if (rm_pool_new(t + 1, &pools[t]) != RAMOLE_OK) {
            fprintf(stderr, "bench_kernels: %s\n", ramole_last_error());
            return 1;
        }
    printf("isa: %s\n", rm_isa_name(rm_isa_current()));
    size_t bw_bytes = (quick ? 128u : 512u) << 20;
    double bw[2] = {bench_bandwidth(pools[0], bw_bytes), bench_bandwidth(pools[1], bw_bytes)};
    printf("memory read bandwidth (%zu MiB, best of 8): 1 thread %.2f GB/s, 2 threads %.2f GB/s\n\n", bw_bytes >> 20,
           bw[0], bw[1]);

    static const rm_type types[] = {RM_TYPE_F16, RM_TYPE_Q8_0, RM_TYPE_Q4_K, RM_TYPE_BF16, RM_TYPE_F32,
                                    RM_TYPE_Q4_0, RM_TYPE_Q4_1, RM_TYPE_Q5_K, RM_TYPE_Q6_K};
    int all = (int)(sizeof types / sizeof types[0]), ntypes = quick ? 3 : all, reps = quick ? 10 : 30;
    size_t min_total = (quick ? 64u : 256u) << 20;
    const int64_t gm = 512;
    float *x = rm_malloc((size_t)gm * 5632 * 4), *y = rm_malloc((size_t)gm * 32000 * 4);
    for (int64_t i = 0; i < gm * 5632; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    if (sweep) { /* instead of the table */
        k_sweep(pools[0], y, x, 4 * reps);
        any_only = true, ntypes = all = 0;
    } else {
        printf("%-20s %-5s %9s | %8s %6s | %8s %6s | %9s %9s\n", "matrix", "type", "MiB", "1t GB/s", "%bw", "2t GB/s",
               "%bw", "gemm 1t", "gemm 2t");
        printf("%-20s %-5s %9s | %8s %6s | %8s %6s | %9s %9s\n", "", "", "", "(m=1)", "", "(m=1)", "", "GFLOP/s",
               "GFLOP/s");
    }
    for (int it = 0; it < (any_only ? all : ntypes); it++) {
        rm_type wt = types[it];
        if (any_only && !only[wt]) continue;
        for (size_t is = 0; is < sizeof g_shapes / sizeof g_shapes[0]; is++) {
            const shape *s = &g_shapes[is];
            if (s->k % rm_type_block_elems(wt)) continue; /* the rank-16 shape has no block form */
            size_t bytes;
            int copies;
            uint8_t *w = make_weights(wt, s->n, s->k, &bytes, &copies, min_total);
            size_t pbytes;
            uint8_t *packed = w ? make_packed(wt, w, bytes, copies, s->n, s->k, &pbytes) : NULL;
            size_t ws = rm_matmul_work_size(wt, gm, s->n, s->k, 2);
            void *work = ws ? rm_malloc(ws) : NULL;
            if (!w || (ws && !work)) {
                fprintf(stderr, "bench_kernels: out of memory\n");
                return 1;
            }
            double gbs[2], gfl[2];
            for (int t = 0; t < 2; t++) {
                double dt = time_matmul(pools[t], wt, w, bytes, packed, pbytes, copies, y, x, 1, s->n, s->k, work,
                                        ws, reps);
                gbs[t] = (packed ? pbytes : bytes) / dt / 1e9;
                gfl[t] = 0;
                if (!gemm) continue;
                double dg = time_matmul(pools[t], wt, w, bytes, packed, pbytes, 1, y, x, gm, s->n, s->k, work, ws,
                                        quick ? 1 : 3);
                gfl[t] = 2.0 * gm * s->n * s->k / dg / 1e9;
            }
            printf("%-20s %-5s %9.1f | %8.2f %5.0f%% | %8.2f %5.0f%% | %9.1f %9.1f\n", s->name, rm_type_name(wt),
                   bytes / 1048576.0, gbs[0], 100 * gbs[0] / bw[0], gbs[1], 100 * gbs[1] / bw[1], gfl[0], gfl[1]);
            if (crossover && is == 1) crossover_table(pools[1], wt, w, bytes, copies, y, x, s);
            rm_free(work);
            rm_free(packed);
            rm_free(w);
        }
    }
    rm_free(x), rm_free(y);
    for (int t = 0; t < 2; t++) rm_pool_free(pools[t]);
    return 0;
}
