/*
 * index.c — flat exact index (see index.h). Vectors live in one array of
 * rows; a remove moves the last row into the hole, which is why ties are
 * broken by id and never by position.
 */
#include <math.h>
#include <string.h>

#include "retrieval/index.h"

struct rm_index {
    int dim, n, cap;
    float *vecs;   /* [cap][dim], unit rows */
    int64_t *ids;  /* [cap] */
};

rm_status rm_index_new(int dim, rm_index **out) {
    *out = NULL;
    if (dim < 1) return rm_err(RAMOLE_ERR_INVALID, "index: dimension %d", dim);
    rm_index *ix = rm_calloc(1, sizeof *ix);
    if (!ix) return rm_err(RAMOLE_ERR_NOMEM, "index: out of memory");
    ix->dim = dim;
    *out = ix;
    return RAMOLE_OK;
}

void rm_index_free(rm_index *ix) {
    if (!ix) return;
    rm_free(ix->vecs);
    rm_free(ix->ids);
    rm_free(ix);
}

int rm_index_dim(const rm_index *ix) { return ix->dim; }
int rm_index_size(const rm_index *ix) { return ix->n; }

static int find(const rm_index *ix, int64_t id) {
    for (int i = 0; i < ix->n; i++)
        if (ix->ids[i] == id) return i;
    return -1;
}

bool rm_index_contains(const rm_index *ix, int64_t id) { return find(ix, id) >= 0; }

/* 1/|v|, or 0 when v is zero or not finite. */
static double inv_norm(const float *v, int dim) {
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)v[i] * v[i];
    return s > 0 && isfinite(s) ? 1.0 / sqrt(s) : 0.0;
}

rm_status rm_index_add(rm_index *ix, int64_t id, const float *vec) {
    if (find(ix, id) >= 0) return rm_err(RAMOLE_ERR_INVALID, "index: id %lld is already present", (long long)id);
    double inv = inv_norm(vec, ix->dim);
    if (inv == 0) return rm_err(RAMOLE_ERR_INVALID, "index: vector of id %lld is zero or not finite", (long long)id);
    if (ix->n == ix->cap) {
        int cap = ix->cap ? 2 * ix->cap : 16;
        float *v = rm_realloc(ix->vecs, (size_t)cap * (size_t)ix->dim * sizeof *v);
        if (!v) return rm_err(RAMOLE_ERR_NOMEM, "index: out of memory");
        ix->vecs = v;
        int64_t *d = rm_realloc(ix->ids, (size_t)cap * sizeof *d);
        if (!d) return rm_err(RAMOLE_ERR_NOMEM, "index: out of memory");
        ix->ids = d;
        ix->cap = cap;
    }
    float *row = ix->vecs + (size_t)ix->n * (size_t)ix->dim;
    for (int i = 0; i < ix->dim; i++) row[i] = (float)(vec[i] * inv);
    ix->ids[ix->n++] = id;
    return RAMOLE_OK;
}

rm_status rm_index_remove(rm_index *ix, int64_t id) {
    int i = find(ix, id);
    if (i < 0) return rm_err(RAMOLE_ERR_NOT_FOUND, "index: no id %lld", (long long)id);
    int last = --ix->n;
    if (i != last) {
        memcpy(ix->vecs + (size_t)i * (size_t)ix->dim, ix->vecs + (size_t)last * (size_t)ix->dim,
               (size_t)ix->dim * sizeof(float));
        ix->ids[i] = ix->ids[last];
    }
    return RAMOLE_OK;
}

/* a ranks before b */
static bool better(double sa, int64_t ia, double sb, int64_t ib) { return sa > sb || (sa == sb && ia < ib); }

int rm_index_query(const rm_index *ix, const float *q, int k, rm_hit *hits) {
    if (k <= 0 || ix->n == 0) return 0;
    double inv = inv_norm(q, ix->dim);
    if (inv == 0) return 0;
    if (k > ix->n) k = ix->n;
    double best[64], *sc = k <= 64 ? best : rm_malloc((size_t)k * sizeof *sc);
    if (!sc) return 0;
    int have = 0;
    for (int r = 0; r < ix->n; r++) {
        const float *v = ix->vecs + (size_t)r * (size_t)ix->dim;
        double s = 0;
        for (int i = 0; i < ix->dim; i++) s += (double)v[i] * q[i];
        s *= inv;
        int64_t id = ix->ids[r];
        if (have == k && !better(s, id, sc[k - 1], hits[k - 1].id)) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && better(s, id, sc[j - 1], hits[j - 1].id)) {
            sc[j] = sc[j - 1];
            hits[j] = hits[j - 1];
            j--;
        }
        sc[j] = s;
        hits[j].id = id;
        hits[j].score = (float)s;
    }
    if (sc != best) rm_free(sc);
    return have;
}
