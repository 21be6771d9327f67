/*
 * bench_registry.c — the registry's retrieval pool: latency of one top-k
 * search (median and p99 over queries) and of one incremental add, for
 * pools of 10k and 100k adapters at embedding widths 64 (the tiny test
 * bases) and 2048 (TinyLlama's hidden size), with the tenant filter on.
 *
 *   build/bench/bench_registry [QUERIES]     (one JSON line per case)
 */
#include <stdio.h>
#include <stdlib.h>

#include "registry/pool.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int queries = argc > 1 ? atoi(argv[1]) : 200;
    if (queries < 10) queries = 10;
    static const int sizes[] = {10000, 100000}, dims[] = {64, 2048};
    uint64_t rng = 1;
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < 2; di++) {
            int n = sizes[si], dim = dims[di];
            rm_reg_pool *p = NULL;
            if (rm_reg_pool_new(dim, &p) != RAMOLE_OK) return 1;
            rm_reg_adapter *rows = calloc((size_t)n, sizeof *rows);
            bool *keep = malloc((size_t)n);
            float *vecs = malloc((size_t)n * (size_t)dim * sizeof *vecs);
            if (!rows || !keep || !vecs) return 1;
            rm_rng_fill_uniform(vecs, (size_t)n * (size_t)dim, 1.0f, &rng);
            for (int i = 0; i < n; i++) {
                rows[i] = (rm_reg_adapter){.id = i + 1, .name = "adapter", .tenant_id = i % 4,
                                           .is_public = i % 10 < 3, .embedding = vecs + (size_t)i * dim, .dim = dim};
                keep[i] = true;
            }
            double t0 = rm_time_now();
            if (rm_reg_pool_replace(p, rows, keep, n) != RAMOLE_OK) return 1;
            double load = rm_time_now() - t0;
            float *q = malloc((size_t)dim * sizeof *q);
            double *lat = malloc((size_t)queries * sizeof *lat);
            rm_reg_hit hits[3];
            for (int it = 0; it < queries; it++) {
                rm_rng_fill_uniform(q, (size_t)dim, 1.0f, &rng);
                t0 = rm_time_now();
                int got = rm_reg_pool_search(p, q, it % 4, 3, hits);
                lat[it] = rm_time_now() - t0;
                if (got != 3) return 1;
            }
            qsort(lat, (size_t)queries, sizeof *lat, cmp_double);
            t0 = rm_time_now();
            int adds = 5;
            for (int i = 0; i < adds; i++) rm_reg_pool_add(p, n + 1 + i, 0, true, "new", q);
            double add = (rm_time_now() - t0) / adds;
            printf("{\"bench\":\"registry_pool\",\"adapters\":%d,\"dim\":%d,\"search_median_ms\":%.3f,"
                   "\"search_p99_ms\":%.3f,\"add_ms\":%.3f,\"load_ms\":%.1f}\n",
                   n, dim, 1e3 * lat[queries / 2], 1e3 * lat[(int)(0.99 * (queries - 1))], 1e3 * add, 1e3 * load);
            fflush(stdout);
            free(q), free(lat), free(rows), free(keep), free(vecs);
            rm_reg_pool_free(p);
        }
    return 0;
}
