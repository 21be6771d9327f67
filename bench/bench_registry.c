/*
 * bench_registry.c — the registry's retrieval pool against FAISS
 * IndexFlatIP: latency of one top-k search (median and p99 over queries)
 * for pools of 10k and 100k adapters at embedding widths 64 (the tiny test
 * bases) and 2048 (TinyLlama's hidden size).
 *
 *   build/bench/bench_registry [QUERIES] [K] [ADAPTERS] [WIDTH]
 *
 * prints one JSON line per case; ADAPTERS and WIDTH (0: all) keep one case.
 *
 * Per case, in one run so that the machine's load hits both alike:
 *   - the same random unit vectors go into the pool and into FAISS, every
 *     row visible (FAISS has no filter), and the same unit queries go to
 *     both, alternating which goes first; the ratio is ramole's median over
 *     FAISS's (and the median of the per-query ratios), and "agree" counts
 *     the queries whose top-k ids are the same in both (or differ only
 *     among scores within 1e-5, where summation order may swap them);
 *   - then the pool is reloaded with four tenants and 30% public rows, and
 *     the search with the tenant filter inside the scan is timed, with one
 *     incremental add and the load.
 * Without FAISS (built without libfaiss-dev: scripts/deps.sh --bench) the
 * comparison prints one "skipped:" line on stderr and ramole runs alone.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "registry/pool.h"
#ifdef RM_BENCH_FAISS
#include "faiss_shim.h"
#endif

#define MAX_K 64

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static double p99_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int)(0.99 * (n - 1))];
}

/* n random rows of width dim, each normalised as the pool normalises it. */
static float *unit_rows(int n, int dim, uint64_t *rng) {
    float *v = malloc((size_t)n * (size_t)dim * sizeof *v);
    if (!v) return NULL;
    rm_rng_fill_uniform(v, (size_t)n * (size_t)dim, 1.0f, rng);
    for (int i = 0; i < n; i++) {
        bool ok;
        rm_reg_pool_normalise(v + (size_t)i * dim, dim, v + (size_t)i * dim, &ok);
    }
    return v;
}

#ifdef RM_BENCH_FAISS
/* ramole's hits (ids from 1) and FAISS's (rows from 0) name the same rows, or differ only among near-ties. */
static bool same_top(const rm_reg_hit *h, const float *fs, const int64_t *fi, int k) {
    for (int j = 0; j < k; j++)
        if (h[j].id != fi[j] + 1 && fabsf(h[j].score - fs[j]) > 1e-5f) return false;
    return true;
}
#endif

int main(int argc, char **argv) {
    int queries = argc > 1 ? atoi(argv[1]) : 200;
    int k = argc > 2 ? atoi(argv[2]) : 3;
    if (queries < 10) queries = 10;
    if (k < 1 || k > MAX_K) k = 3;
    int only_n = argc > 3 ? atoi(argv[3]) : 0, only_dim = argc > 4 ? atoi(argv[4]) : 0;
#ifndef RM_BENCH_FAISS
    fprintf(stderr, "skipped: FAISS IndexFlatIP comparison (bench_registry built without libfaiss-dev: "
                    "bash scripts/deps.sh --bench, then make)\n");
#endif
    static const int sizes[] = {10000, 100000}, dims[] = {64, 2048};
    uint64_t rng = 1;
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < 2; di++) {
            int n = sizes[si], dim = dims[di];
            if ((only_n && n != only_n) || (only_dim && dim != only_dim)) continue;
            rm_reg_pool *p = NULL;
            if (rm_reg_pool_new(dim, &p) != RAMOLE_OK) return 1;
            rm_reg_adapter *rows = calloc((size_t)n, sizeof *rows);
            bool *keep = malloc((size_t)n);
            float *vecs = unit_rows(n, dim, &rng), *qs = unit_rows(queries, dim, &rng);
            double *lat = malloc((size_t)queries * sizeof *lat), *flat = malloc((size_t)queries * sizeof *flat);
            double *pair = malloc((size_t)queries * sizeof *pair);
            if (!rows || !keep || !vecs || !qs || !lat || !flat || !pair) return 1;
            for (int i = 0; i < n; i++) {
                rows[i] = (rm_reg_adapter){.id = i + 1, .name = "adapter", .tenant_id = i % 4, .is_public = true,
                                           .embedding = vecs + (size_t)i * dim, .dim = dim};
                keep[i] = true;
            }
            if (rm_reg_pool_replace(p, rows, keep, n) != RAMOLE_OK) return 1;
            rm_reg_hit hits[MAX_K];
            printf("{\"bench\":\"registry_pool\",\"adapters\":%d,\"dim\":%d,\"k\":%d,\"queries\":%d", n, dim, k,
                   queries);

            /* ---- every row visible: ramole against FAISS, same vectors and queries */
#ifdef RM_BENCH_FAISS
            rm_bench_flat *f = rm_bench_flat_new(dim);
            if (!f || rm_bench_flat_add(f, n, vecs) != 0) return 1;
            float fs[MAX_K];
            int64_t fi[MAX_K];
            int agree = 0;
            for (int it = -3; it < queries; it++) { /* three warm-up queries */
                const float *q = qs + (size_t)(it < 0 ? 0 : it) * dim;
                double tr = 0, tf = 0, t0;
                for (int side = 0; side < 2; side++) {
                    bool ramole_now = (side == 0) == (it % 2 == 0);
                    t0 = rm_time_now();
                    if (ramole_now) {
                        if (rm_reg_pool_search(p, q, 0, k, hits) != k) return 1;
                        tr = rm_time_now() - t0;
                    } else {
                        if (rm_bench_flat_search(f, q, k, fs, fi) != 0) return 1;
                        tf = rm_time_now() - t0;
                    }
                }
                if (it < 0) continue;
                lat[it] = tr, flat[it] = tf, pair[it] = tr / tf;
                agree += same_top(hits, fs, fi, k);
            }
            rm_bench_flat_free(f);
            double rm_med = median_of(lat, queries), rm_p99 = p99_of(lat, queries);
            double f_med = median_of(flat, queries), f_p99 = p99_of(flat, queries);
            printf(",\"search_median_ms\":%.4f,\"search_p99_ms\":%.4f,\"faiss_median_ms\":%.4f,"
                   "\"faiss_p99_ms\":%.4f,\"ratio_median\":%.3f,\"ratio_paired_median\":%.3f,\"agree\":%d,"
                   "\"faiss\":\"%s\"",
                   1e3 * rm_med, 1e3 * rm_p99, 1e3 * f_med, 1e3 * f_p99, rm_med / f_med, median_of(pair, queries),
                   agree, rm_bench_flat_version());
#else
            for (int it = 0; it < queries; it++) {
                double t0 = rm_time_now();
                if (rm_reg_pool_search(p, qs + (size_t)it * dim, 0, k, hits) != k) return 1;
                lat[it] = rm_time_now() - t0;
            }
            printf(",\"search_median_ms\":%.4f,\"search_p99_ms\":%.4f", 1e3 * median_of(lat, queries),
                   1e3 * p99_of(lat, queries));
#endif

            /* ---- four tenants, 30% public: the filter inside the scan, one add, the load */
            for (int i = 0; i < n; i++) rows[i].is_public = i % 10 < 3;
            double t0 = rm_time_now();
            if (rm_reg_pool_replace(p, rows, keep, n) != RAMOLE_OK) return 1;
            double load = rm_time_now() - t0;
            for (int it = 0; it < queries; it++) {
                t0 = rm_time_now();
                if (rm_reg_pool_search(p, qs + (size_t)it * dim, it % 4, k, hits) != k) return 1;
                lat[it] = rm_time_now() - t0;
            }
            t0 = rm_time_now();
            int adds = 5;
            for (int i = 0; i < adds; i++)
                if (rm_reg_pool_add(p, n + 1 + i, 0, true, "new", qs) != RAMOLE_OK) return 1;
            double add = (rm_time_now() - t0) / adds;
            printf(",\"filtered_median_ms\":%.4f,\"filtered_p99_ms\":%.4f,\"add_ms\":%.3f,\"load_ms\":%.1f}\n",
                   1e3 * median_of(lat, queries), 1e3 * p99_of(lat, queries), 1e3 * add, 1e3 * load);
            fflush(stdout);
            free(qs), free(lat), free(flat), free(pair), free(rows), free(keep), free(vecs);
            rm_reg_pool_free(p);
        }
    return 0;
}
