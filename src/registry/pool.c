/*
 * pool.c — copy-on-write snapshots of the retrieval pool (see pool.h).
 *
 * A row (id, tenant, visibility, name, unit vector) is one immutable,
 * reference-counted allocation; a snapshot is an array of entries, a row
 * pointer with a copy of the row's tenant and visibility for the filter.
 * A change copies the entries (O(n), 24 bytes per row, never the
 * vectors) with the change applied, outside the readers' lock; the lock
 * covers only the pointer swap and the readers' reference increment. A row
 * lives while any snapshot holds it, so a search that took a snapshot
 * before a removal still reads valid memory.
 *
 * Scores: the query is normalised once (double norm, float unit vector),
 * rows were normalised the same way when added, and a score is the f32
 * dot product of the two (rm_vec_dot, SIMD), so the scan is bound by
 * memory, not by arithmetic: hence a vector that starts a cache line (a
 * 64-wide row is 4 lines, not 5), the filter on the entries (a hidden
 * row's lines are never read) and the prefetch of rows ahead (the rows
 * are scattered allocations, which the hardware prefetcher cannot guess).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "registry/pool.h"

typedef struct {
    atomic_int refs;
    int64_t id, tenant;
    bool pub;
    const char *name;         /* inside the same allocation, after vec */
    _Alignas(64) float vec[]; /* [dim], unit; on a cache line: 64 wide = 4 lines */
} row;

/* A snapshot's entry: the row and a copy of its filter fields, so that the
 * scan reads the entries in order and only the vectors of visible rows. */
typedef struct {
    row *r;
    int64_t tenant;
    bool pub;
} slot;

typedef struct {
    atomic_int refs;
    int n;
    slot *rows;
} snap;

struct rm_reg_pool {
    int dim;
    pthread_mutex_t swap;   /* held for the pointer read + ref increment, and for the swap */
    pthread_mutex_t writer; /* one writer at a time */
    snap *cur;
};

static void row_release(row *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) rm_free(r);
}

/* 1/|v| in double, or 0 for a zero or non-finite vector. */
static double inv_norm(const float *v, int dim) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)v[i] * v[i];
    return ss > 0 && isfinite(ss) ? 1.0 / sqrt(ss) : 0;
}

void rm_reg_pool_normalise(const float *v, int dim, float *out, bool *ok) {
    double inv = inv_norm(v, dim);
    *ok = inv > 0;
    for (int i = 0; i < dim; i++) out[i] = (float)(v[i] * inv);
}

/* A new row, or NULL (out of memory, name too long, zero or non-finite vector: *why says which). */
static row *row_new(int dim, int64_t id, int64_t tenant, bool pub, const char *name, const float *vec, rm_status *why) {
    size_t len = strlen(name);
    if (len > RM_REG_NAME_MAX) {
        *why = rm_err(RAMOLE_ERR_INVALID, "pool: name of adapter %lld is too long", (long long)id);
        return NULL;
    }
    row *r = rm_malloc(sizeof *r + (size_t)dim * sizeof(float) + len + 1);
    if (!r) {
        *why = rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
        return NULL;
    }
    bool ok;
    rm_reg_pool_normalise(vec, dim, r->vec, &ok);
    if (!ok) {
        rm_free(r);
        *why = rm_err(RAMOLE_ERR_INVALID, "pool: embedding of adapter %lld is zero or not finite", (long long)id);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    r->id = id, r->tenant = tenant, r->pub = pub;
    char *nm = (char *)(r->vec + dim);
    memcpy(nm, name, len + 1);
    r->name = nm;
    return r;
}

static snap *snap_alloc(int cap) {
    snap *s = rm_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->rows = rm_malloc((size_t)(cap > 0 ? cap : 1) * sizeof *s->rows);
    if (!s->rows) {
        rm_free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    return s;
}

static void snap_release(snap *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (int i = 0; i < s->n; i++) row_release(s->rows[i].r);
    rm_free(s->rows);
    rm_free(s);
}

static snap *snap_acquire(rm_reg_pool *p) {
    pthread_mutex_lock(&p->swap);
    snap *s = p->cur;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&p->swap);
    return s;
}

/* Publish `next` (the caller holds the writer lock) and drop the old snapshot. */
static void snap_publish(rm_reg_pool *p, snap *next) {
    pthread_mutex_lock(&p->swap);
    snap *old = p->cur;
    p->cur = next;
    pthread_mutex_unlock(&p->swap);
    snap_release(old);
}

/* Share the rows of s except row `skip` (-1: none) into t after its t->n rows. */
static void snap_share_rows(const snap *s, int skip, snap *t) {
    for (int i = 0; i < s->n; i++) {
        if (i == skip) continue;
        atomic_fetch_add(&s->rows[i].r->refs, 1);
        t->rows[t->n++] = s->rows[i];
    }
}

static int snap_find(const snap *s, int64_t id) {
    for (int i = 0; i < s->n; i++)
        if (s->rows[i].r->id == id) return i;
    return -1;
}

rm_status rm_reg_pool_new(int dim, rm_reg_pool **out) {
    *out = NULL;
    if (dim < 1) return rm_err(RAMOLE_ERR_INVALID, "pool: dimension %d", dim);
    rm_reg_pool *p = rm_calloc(1, sizeof *p);
    snap *s = p ? snap_alloc(0) : NULL;
    if (!s) {
        rm_free(p);
        return rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
    }
    p->dim = dim;
    p->cur = s;
    pthread_mutex_init(&p->swap, NULL);
    pthread_mutex_init(&p->writer, NULL);
    *out = p;
    return RAMOLE_OK;
}

void rm_reg_pool_free(rm_reg_pool *p) {
    if (!p) return;
    snap_release(p->cur);
    pthread_mutex_destroy(&p->swap);
    pthread_mutex_destroy(&p->writer);
    rm_free(p);
}

int rm_reg_pool_dim(const rm_reg_pool *p) { return p->dim; }

int rm_reg_pool_size(rm_reg_pool *p) {
    snap *s = snap_acquire(p);
    int n = s->n;
    snap_release(s);
    return n;
}

bool rm_reg_pool_contains(rm_reg_pool *p, int64_t id) {
    snap *s = snap_acquire(p);
    bool in = snap_find(s, id) >= 0;
    snap_release(s);
    return in;
}

rm_status rm_reg_pool_add(rm_reg_pool *p, int64_t id, int64_t tenant, bool is_public, const char *name,
                          const float *vec) {
    rm_status st = RAMOLE_OK;
    row *r = row_new(p->dim, id, tenant, is_public, name, vec, &st);
    if (!r) return st;
    pthread_mutex_lock(&p->writer);
    snap *s = p->cur; /* stable: only writers change it, and we hold the writer lock */
    int old = snap_find(s, id);
    snap *t = snap_alloc(s->n - (old >= 0) + 1);
    if (t) {
        snap_share_rows(s, old, t);
        t->rows[t->n++] = (slot){r, r->tenant, r->pub};
        snap_publish(p, t);
    }
    pthread_mutex_unlock(&p->writer);
    if (t) return RAMOLE_OK;
    row_release(r);
    return rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
}

rm_status rm_reg_pool_replace(rm_reg_pool *p, const rm_reg_adapter *rows, const bool *keep, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) m += keep[i];
    snap *t = snap_alloc(m);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
    rm_status st = RAMOLE_OK;
    for (int i = 0; i < n && st == RAMOLE_OK; i++) {
        if (!keep[i]) continue;
        const rm_reg_adapter *a = &rows[i];
        row *r = NULL;
        if (a->dim != p->dim || !a->embedding)
            st = rm_err(RAMOLE_ERR_INVALID, "pool: adapter %lld has no embedding of width %d", (long long)a->id, p->dim);
        else if ((r = row_new(p->dim, a->id, a->tenant_id, a->is_public, a->name, a->embedding, &st)))
            t->rows[t->n++] = (slot){r, r->tenant, r->pub};
    }
    if (st != RAMOLE_OK) {
        snap_release(t);
        return st;
    }
    pthread_mutex_lock(&p->writer);
    snap_publish(p, t);
    pthread_mutex_unlock(&p->writer);
    return RAMOLE_OK;
}

bool rm_reg_pool_remove(rm_reg_pool *p, int64_t id) {
    pthread_mutex_lock(&p->writer);
    snap *s = p->cur;
    int old = snap_find(s, id);
    snap *t = old >= 0 ? snap_alloc(s->n - 1) : NULL;
    if (t) {
        snap_share_rows(s, old, t);
        snap_publish(p, t);
    }
    pthread_mutex_unlock(&p->writer);
    /* out of memory while removing: the row stays, reported as not removed */
    return t != NULL;
}

/* Rows are separate allocations, so the scan is a pointer chase that the
 * hardware prefetcher does not follow: ask for the vector of the row this
 * many ahead, its first PREFETCH_BYTES (a 64-wide row whole; a wide row's
 * later lines are a stream the prefetcher sees). */
enum { PREFETCH_AHEAD = 16, PREFETCH_BYTES = 512 };

static void row_prefetch(const row *r, int dim) {
    const char *a = (const char *)r->vec, *end = (const char *)r->vec + (size_t)dim * sizeof(float);
    if (end > (const char *)r->vec + PREFETCH_BYTES) end = (const char *)r->vec + PREFETCH_BYTES;
    for (; a < end; a += 64) __builtin_prefetch(a);
}

/* a before b in the result order */
static bool better(float sa, int64_t ia, float sb, int64_t ib) { return sa > sb || (sa == sb && ia < ib); }

int rm_reg_pool_search(rm_reg_pool *p, const float *q, int64_t tenant, int k, rm_reg_hit *hits) {
    if (k < 1) return 0;
    int dim = p->dim;
    float qs[256], *qn = dim <= 256 ? qs : rm_malloc((size_t)dim * sizeof *qn);
    if (!qn) return 0;
    bool ok;
    rm_reg_pool_normalise(q, dim, qn, &ok);
    if (!ok) {
        if (qn != qs) rm_free(qn);
        return 0;
    }
    snap *s = snap_acquire(p);
    const row *best[1024], **top = k <= 1024 ? best : rm_malloc((size_t)k * sizeof *top);
    int n = 0;
    for (int i = 0; top && i < s->n; i++) {
        if (i + PREFETCH_AHEAD < s->n) {
            const slot *ahead = &s->rows[i + PREFETCH_AHEAD];
            if (ahead->pub || ahead->tenant == tenant) row_prefetch(ahead->r, dim);
        }
        const slot *e = &s->rows[i];
        if (!e->pub && e->tenant != tenant) continue; /* the filter is inside the scan */
        const row *r = e->r;
        float score = rm_vec_dot(qn, r->vec, dim);
        /* the score first: a row's id (another cache line) is read only when it may enter */
        if (n == k && (score < hits[k - 1].score || !better(score, r->id, hits[k - 1].score, hits[k - 1].id)))
            continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && better(score, r->id, hits[j - 1].score, hits[j - 1].id)) {
            hits[j] = hits[j - 1];
            top[j] = top[j - 1];
            j--;
        }
        hits[j].id = r->id;
        hits[j].score = score;
        top[j] = r;
    }
    for (int j = 0; j < n; j++) snprintf(hits[j].name, sizeof hits[j].name, "%s", top[j]->name);
    if (top != best) rm_free(top);
    if (qn != qs) rm_free(qn);
    snap_release(s);
    return top ? n : 0;
}
