/*
 * faiss_shim.h — the registry benchmark's peer, FAISS IndexFlatIP (exact
 * inner-product search over contiguous f32 rows), as a few C calls.
 *
 * Used ONLY by bench/bench_registry.c; built by the Makefile when Debian's
 * libfaiss-dev and a C++ compiler are present (`bash scripts/deps.sh
 * --bench`) and never linked into libramole or ramole. C++ exceptions stop
 * here: every call reports failure by its return value.
 */
#ifndef RM_BENCH_FAISS_SHIM_H
#define RM_BENCH_FAISS_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rm_bench_flat rm_bench_flat;

/* An empty IndexFlatIP of width dim, or NULL. FAISS's OpenMP threads are
 * set to 1: ramole's pool search runs on one thread too. */
rm_bench_flat *rm_bench_flat_new(int dim);
void           rm_bench_flat_free(rm_bench_flat *f); /* NULL is a no-op */
/* Append n rows x[n][dim] (ids continue from the current count); 0 or -1. */
int            rm_bench_flat_add(rm_bench_flat *f, int64_t n, const float *x);
/* The k best rows for one query q[dim], best first: scores[k], ids[k]
 * (row numbers from 0; -1 past the end). 0 or -1. */
int            rm_bench_flat_search(rm_bench_flat *f, const float *q, int k, float *scores, int64_t *ids);
/* "1.7.3": the FAISS version the shim was compiled against. */
const char    *rm_bench_flat_version(void);

#ifdef __cplusplus
}
#endif

#endif
