// faiss_shim.cpp — FAISS IndexFlatIP behind the C calls of faiss_shim.h.
#include "faiss_shim.h"

#include <faiss/IndexFlat.h>
#include <omp.h>

#include <new>

struct rm_bench_flat {
    faiss::IndexFlatIP index;
    explicit rm_bench_flat(int dim) : index(dim) {}
};

extern "C" rm_bench_flat *rm_bench_flat_new(int dim) {
    try {
        omp_set_num_threads(1);
        return new rm_bench_flat(dim);
    } catch (...) {
        return nullptr;
    }
}

extern "C" void rm_bench_flat_free(rm_bench_flat *f) { delete f; }

extern "C" int rm_bench_flat_add(rm_bench_flat *f, int64_t n, const float *x) {
    try {
        f->index.add((faiss::Index::idx_t)n, x);
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" int rm_bench_flat_search(rm_bench_flat *f, const float *q, int k, float *scores, int64_t *ids) {
    try {
        static_assert(sizeof(faiss::Index::idx_t) == sizeof(int64_t), "FAISS ids are 64-bit");
        f->index.search(1, q, k, scores, reinterpret_cast<faiss::Index::idx_t *>(ids));
        return 0;
    } catch (...) {
        return -1;
    }
}

#define RM_STR2(x) #x
#define RM_STR(x) RM_STR2(x)
extern "C" const char *rm_bench_flat_version(void) {
    return RM_STR(FAISS_VERSION_MAJOR) "." RM_STR(FAISS_VERSION_MINOR) "." RM_STR(FAISS_VERSION_PATCH);
}
