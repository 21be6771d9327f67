/*
 * pool.c — copy-on-write snapshots of the retrieval pool (see pool.h).
 *
 * A snapshot is one allocation of parallel arrays: ids, tenants, public
 * flags, names (pointers to reference-counted strings, so a copy shares
 * them) and the embeddings as one [n][dim] block that the search streams
 * through. A change builds the next snapshot in O(n dim) copying, outside
 * the readers' lock; the lock covers only the pointer swap and the readers'
 * reference increment.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "registry/pool.h"

typedef struct {
    atomic_int refs;
    char s[];
} name_ref;

typedef struct {
    atomic_int refs;
    int n, dim;
    int64_t *ids, *tenants;
    uint8_t *pub;
    name_ref **names;
    float *vecs; /* [n][dim] */
} snap;

struct rm_reg_pool {
    int dim;
    pthread_mutex_t swap;   /* held for the pointer read + ref increment, and for the swap */
    pthread_mutex_t writer; /* one writer at a time */
    snap *cur;
};

static void name_release(name_ref *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) rm_free(r);
}

static snap *snap_alloc(int n, int dim) {
    size_t nn = (size_t)(n ? n : 1);
    snap *s = rm_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ids = rm_malloc(nn * sizeof *s->ids);
    s->tenants = rm_malloc(nn * sizeof *s->tenants);
    s->pub = rm_malloc(nn);
    s->names = rm_malloc(nn * sizeof *s->names);
    s->vecs = rm_malloc(nn * (size_t)dim * sizeof *s->vecs);
    if (!s->ids || !s->tenants || !s->pub || !s->names || !s->vecs) {
        rm_free(s->ids), rm_free(s->tenants), rm_free(s->pub), rm_free(s->names), rm_free(s->vecs), rm_free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->n = n, s->dim = dim;
    return s;
}

static void snap_release(snap *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (int i = 0; i < s->n; i++) name_release(s->names[i]);
    rm_free(s->ids), rm_free(s->tenants), rm_free(s->pub), rm_free(s->names), rm_free(s->vecs);
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

/* Copy rows of s except row `skip` (-1: none) into t starting at row 0; names shared. */
static void snap_copy_rows(const snap *s, int skip, snap *t) {
    int j = 0;
    for (int i = 0; i < s->n; i++) {
        if (i == skip) continue;
        t->ids[j] = s->ids[i], t->tenants[j] = s->tenants[i], t->pub[j] = s->pub[i];
        t->names[j] = s->names[i];
        atomic_fetch_add(&t->names[j]->refs, 1);
        memcpy(t->vecs + (size_t)j * s->dim, s->vecs + (size_t)i * s->dim, (size_t)s->dim * sizeof(float));
        j++;
    }
}

static int snap_find(const snap *s, int64_t id) {
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == id) return i;
    return -1;
}

rm_status rm_reg_pool_new(int dim, rm_reg_pool **out) {
    *out = NULL;
    if (dim < 1) return rm_err(RAMOLE_ERR_INVALID, "pool: dimension %d", dim);
    rm_reg_pool *p = rm_calloc(1, sizeof *p);
    snap *s = p ? snap_alloc(0, dim) : NULL;
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

/* A fresh name_ref of s, or NULL. */
static name_ref *name_new(const char *s) {
    size_t len = strlen(s);
    name_ref *nr = len <= RM_REG_NAME_MAX ? rm_malloc(sizeof *nr + len + 1) : NULL;
    if (!nr) return NULL;
    atomic_init(&nr->refs, 1);
    memcpy(nr->s, s, len + 1);
    return nr;
}

/* Row j of t from vec[dim] normalised; false for a zero or non-finite vector. */
static bool put_vec(snap *t, int j, const float *vec) {
    double ss = 0;
    for (int i = 0; i < t->dim; i++) ss += (double)vec[i] * vec[i];
    if (!(ss > 0) || !isfinite(ss)) return false;
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < t->dim; i++) t->vecs[(size_t)j * t->dim + i] = (float)(vec[i] * inv);
    return true;
}

rm_status rm_reg_pool_add(rm_reg_pool *p, int64_t id, int64_t tenant, bool is_public, const char *name,
                          const float *vec) {
    name_ref *nr = name_new(name);
    if (!nr) return rm_err(RAMOLE_ERR_INVALID, "pool: name of adapter %lld too long or out of memory", (long long)id);
    pthread_mutex_lock(&p->writer);
    snap *s = p->cur; /* stable: only writers change it, and we hold the writer lock */
    int old = snap_find(s, id);
    snap *t = snap_alloc(s->n - (old >= 0) + 1, p->dim);
    rm_status st = RAMOLE_OK;
    if (!t) st = rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
    else {
        t->n--; /* rows copied so far: the copy, then the new row */
        snap_copy_rows(s, old, t);
        int j = t->n;
        if (!put_vec(t, j, vec)) {
            st = rm_err(RAMOLE_ERR_INVALID, "pool: embedding of adapter %lld is zero or not finite", (long long)id);
            snap_release(t);
        } else {
            t->ids[j] = id, t->tenants[j] = tenant, t->pub[j] = is_public, t->names[j] = nr;
            t->n++;
            nr = NULL;
            snap_publish(p, t);
        }
    }
    pthread_mutex_unlock(&p->writer);
    rm_free(nr);
    return st;
}

rm_status rm_reg_pool_replace(rm_reg_pool *p, const rm_reg_adapter *rows, const bool *keep, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) m += keep[i];
    snap *t = snap_alloc(m, p->dim);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
    t->n = 0;
    rm_status st = RAMOLE_OK;
    for (int i = 0; i < n && st == RAMOLE_OK; i++) {
        if (!keep[i]) continue;
        const rm_reg_adapter *a = &rows[i];
        int j = t->n;
        if (a->dim != p->dim || !a->embedding || !put_vec(t, j, a->embedding))
            st = rm_err(RAMOLE_ERR_INVALID, "pool: adapter %lld has no usable embedding", (long long)a->id);
        else if (!(t->names[j] = name_new(a->name)))
            st = rm_err(RAMOLE_ERR_NOMEM, "pool: out of memory");
        else {
            t->ids[j] = a->id, t->tenants[j] = a->tenant_id, t->pub[j] = a->is_public;
            t->n++;
        }
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
    snap *t = old >= 0 ? snap_alloc(s->n - 1, p->dim) : NULL;
    if (t) {
        snap_copy_rows(s, old, t);
        snap_publish(p, t);
    }
    pthread_mutex_unlock(&p->writer);
    /* out of memory while removing: the row stays, reported as not removed */
    return t != NULL;
}

/* a before b in the result order */
static bool better(float sa, int64_t ia, float sb, int64_t ib) { return sa > sb || (sa == sb && ia < ib); }

int rm_reg_pool_search(rm_reg_pool *p, const float *q, int64_t tenant, int k, rm_reg_hit *hits) {
    if (k < 1) return 0;
    double qq = 0;
    for (int i = 0; i < p->dim; i++) qq += (double)q[i] * q[i];
    if (!(qq > 0) || !isfinite(qq)) return 0;
    double inv = 1.0 / sqrt(qq);
    snap *s = snap_acquire(p);
    int n = 0, dim = s->dim;
    for (int r = 0; r < s->n; r++) {
        if (!s->pub[r] && s->tenants[r] != tenant) continue;
        const float *v = s->vecs + (size_t)r * dim;
        double d = 0;
        for (int i = 0; i < dim; i++) d += (double)q[i] * v[i];
        float score = (float)(d * inv);
        int64_t id = s->ids[r];
        if (n == k && !better(score, id, hits[k - 1].score, hits[k - 1].id)) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && better(score, id, hits[j - 1].score, hits[j - 1].id)) {
            hits[j] = hits[j - 1];
            j--;
        }
        hits[j].id = id;
        hits[j].score = score;
        /* the name is copied at the end, once per hit */
        memcpy(hits[j].name, &r, sizeof r);
    }
    for (int j = 0; j < n; j++) {
        int r;
        memcpy(&r, hits[j].name, sizeof r);
        snprintf(hits[j].name, sizeof hits[j].name, "%s", s->names[r]->s);
    }
    snap_release(s);
    return n;
}
