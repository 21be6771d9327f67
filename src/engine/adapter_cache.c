/*
 * adapter_cache.c — refcounted adapter handles with an LRU bounded in
 * bytes (see adapter_cache.h).
 *
 * Entries live in a chained hash table by name (listed ones) and in one
 * recency list (listed ones, most recent first). A dropped entry leaves
 * both at once and is freed by its last release. Router matrices hang off
 * the expert's entry, keyed by the router entry's serial number, which is
 * never reused, so a freed router can never be mistaken for a new one.
 */
#include "engine/adapter_cache.h"

#include <pthread.h>
#include <string.h>

/* A name whose file is being read: other callers wait for it rather
 * than read the same file at the same time (loads run outside the lock). */
typedef struct loading_name {
    const char *name;             /* the loading caller's own string */
    struct loading_name *next;
} loading_name;

typedef struct router_c_link {
    uint64_t router_serial;
    rm_router_c *rc;
    struct router_c_link *next;
} router_c_link;

struct rm_adapter_handle {
    char *name;
    rm_adapter *a;
    uint64_t serial;
    int refs;
    bool listed;
    size_t bytes;                 /* the adapter alone */
    router_c_link *rcs;
    rm_adapter_handle *hnext;     /* hash chain */
    rm_adapter_handle *prev, *next; /* recency list */
};

struct rm_adapter_cache {
    const rm_model *base;
    rm_adapter_source src;
    size_t max_bytes;
    rm_type type;
    pthread_mutex_t mu;
    pthread_cond_t loaded;        /* a load finished (or failed) */
    loading_name *loading;
    rm_adapter_handle **buckets;
    size_t n_buckets;
    rm_adapter_handle *mru, *lru;
    rm_adapter_handle *dropped;   /* unlisted but held, chained through hnext */
    uint64_t next_serial;
    rm_adapter_cache_stats st;
};

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static rm_status load_path(void *user, const rm_model *base, const char *name, rm_adapter **out) {
    (void)user;
    return rm_adapter_load(base, name, out);
}

rm_status rm_adapter_cache_new(const rm_model *base, const rm_adapter_source *src, size_t max_bytes, rm_type type,
                               rm_adapter_cache **out) {
    *out = NULL;
    if (type != RM_TYPE_F32 && type != RM_TYPE_F16 && type != RM_TYPE_BF16)
        return rm_err(RAMOLE_ERR_INVALID, "adapter cache: adapters are stored as f32, f16 or bf16, not %s",
                      rm_type_name(type));
    rm_adapter_cache *c = rm_calloc(1, sizeof *c);
    if (!c) return rm_err(RAMOLE_ERR_NOMEM, "adapter cache: out of memory");
    c->base = base;
    c->src = src && src->load ? *src : (rm_adapter_source){load_path, NULL};
    c->max_bytes = max_bytes;
    c->type = type;
    c->n_buckets = 64;
    c->buckets = rm_calloc(c->n_buckets, sizeof *c->buckets);
    if (!c->buckets) {
        rm_free(c);
        return rm_err(RAMOLE_ERR_NOMEM, "adapter cache: out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->loaded, NULL);
    *out = c;
    return RAMOLE_OK;
}

static size_t entry_bytes(const rm_adapter_handle *h) {
    size_t b = h->bytes;
    for (const router_c_link *l = h->rcs; l; l = l->next) b += rm_router_c_bytes(l->rc);
    return b;
}

static void entry_free(rm_adapter_handle *h) {
    for (router_c_link *l = h->rcs, *n; l; l = n) {
        n = l->next;
        rm_router_c_free(l->rc);
        rm_free(l);
    }
    rm_adapter_free(h->a);
    rm_free(h->name);
    rm_free(h);
}

static rm_adapter_handle **bucket_of(rm_adapter_cache *c, const char *name) {
    return &c->buckets[hash_name(name) & (c->n_buckets - 1)];
}

static void recency_unlink(rm_adapter_cache *c, rm_adapter_handle *h) {
    if (h->prev) h->prev->next = h->next; else c->mru = h->next;
    if (h->next) h->next->prev = h->prev; else c->lru = h->prev;
    h->prev = h->next = NULL;
}

static void recency_front(rm_adapter_cache *c, rm_adapter_handle *h) {
    h->next = c->mru;
    h->prev = NULL;
    if (c->mru) c->mru->prev = h; else c->lru = h;
    c->mru = h;
}

/* Take h out of the table and the recency list (it stays allocated). */
static void unlist(rm_adapter_cache *c, rm_adapter_handle *h) {
    for (rm_adapter_handle **p = bucket_of(c, h->name); *p; p = &(*p)->hnext)
        if (*p == h) {
            *p = h->hnext;
            break;
        }
    h->hnext = NULL;
    recency_unlink(c, h);
    h->listed = false;
    c->st.entries--;
}

/* Every entry's router matrices made with router `serial` go with it. */
static void forget_router_in(rm_adapter_cache *c, rm_adapter_handle *chain, uint64_t serial) {
    for (rm_adapter_handle *h = chain; h; h = h->hnext)
        for (router_c_link **p = &h->rcs; *p;) {
            if ((*p)->router_serial != serial) {
                p = &(*p)->next;
                continue;
            }
            router_c_link *dead = *p;
            *p = dead->next;
            c->st.bytes -= rm_router_c_bytes(dead->rc);
            rm_router_c_free(dead->rc);
            rm_free(dead);
        }
}

static void forget_router(rm_adapter_cache *c, uint64_t serial) {
    for (size_t b = 0; b < c->n_buckets; b++) forget_router_in(c, c->buckets[b], serial);
    forget_router_in(c, c->dropped, serial);
}

static void destroy(rm_adapter_cache *c, rm_adapter_handle *h) {
    c->st.bytes -= entry_bytes(h);
    forget_router(c, h->serial);
    entry_free(h);
}

/* Evict unheld entries from the cold end while over the bound. */
static void evict(rm_adapter_cache *c) {
    if (!c->max_bytes) return;
    for (rm_adapter_handle *h = c->lru; h && c->st.bytes > c->max_bytes;) {
        rm_adapter_handle *prev = h->prev;
        if (!h->refs) {
            unlist(c, h);
            destroy(c, h);
            c->st.evictions++;
        }
        h = prev;
    }
}

static void grow_table(rm_adapter_cache *c) {
    if ((size_t)c->st.entries < 2 * c->n_buckets) return;
    size_t n = c->n_buckets * 2;
    rm_adapter_handle **nb = rm_calloc(n, sizeof *nb);
    if (!nb) return; /* longer chains, still correct */
    for (size_t b = 0; b < c->n_buckets; b++)
        for (rm_adapter_handle *h = c->buckets[b], *next; h; h = next) {
            next = h->hnext;
            rm_adapter_handle **p = &nb[hash_name(h->name) & (n - 1)];
            h->hnext = *p;
            *p = h;
        }
    rm_free(c->buckets);
    c->buckets = nb;
    c->n_buckets = n;
}

void rm_adapter_cache_free(rm_adapter_cache *c) {
    if (!c) return;
    for (size_t b = 0; b < c->n_buckets; b++)
        for (rm_adapter_handle *h = c->buckets[b], *n; h; h = n) {
            n = h->hnext;
            entry_free(h);
        }
    for (rm_adapter_handle *h = c->dropped, *n; h; h = n) {
        n = h->hnext;
        entry_free(h);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->loaded);
    rm_free(c->buckets);
    rm_free(c);
}

static rm_adapter_handle *find(rm_adapter_cache *c, const char *name) {
    for (rm_adapter_handle *h = *bucket_of(c, name); h; h = h->hnext)
        if (!strcmp(h->name, name)) return h;
    return NULL;
}

static bool is_loading(const rm_adapter_cache *c, const char *name) {
    for (const loading_name *l = c->loading; l; l = l->next)
        if (!strcmp(l->name, name)) return true;
    return false;
}

static void loading_remove(rm_adapter_cache *c, const loading_name *me) {
    for (loading_name **p = &c->loading; *p; p = &(*p)->next)
        if (*p == me) {
            *p = me->next;
            break;
        }
    pthread_cond_broadcast(&c->loaded);
}

rm_status rm_adapter_cache_get(rm_adapter_cache *c, const char *name, rm_adapter_handle **out) {
    *out = NULL;
    if (!name || !*name) return rm_err(RAMOLE_ERR_INVALID, "adapter cache: empty adapter name");
    pthread_mutex_lock(&c->mu);
    rm_adapter_handle *h;
    /* another caller reads this file now: wait for its entry (or, if its
     * load failed, load it here and report our own error) */
    while (!(h = find(c, name)) && is_loading(c, name)) pthread_cond_wait(&c->loaded, &c->mu);
    if (h) {
        h->refs++;
        c->st.hits++;
        if (h->refs == 1) c->st.held++;
        recency_unlink(c, h);
        recency_front(c, h);
        pthread_mutex_unlock(&c->mu);
        *out = h;
        return RAMOLE_OK;
    }
    c->st.misses++;
    loading_name me = {name, c->loading};
    c->loading = &me;
    pthread_mutex_unlock(&c->mu);

    /* load outside the lock: a slow disk must not stall other callers */
    rm_adapter *a = NULL;
    rm_status st = c->src.load(c->src.user, c->base, name, &a);
    if (st == RAMOLE_OK) st = rm_adapter_check(a, c->base);
    if (st == RAMOLE_OK && a->type != c->type) st = rm_adapter_convert(a, c->base, c->type);
    h = st == RAMOLE_OK ? rm_calloc(1, sizeof *h) : NULL;
    if (h && !(h->name = rm_strdup(name))) {
        rm_free(h);
        h = NULL;
    }
    if (h) {
        h->a = a;
        h->bytes = rm_adapter_bytes(a, c->base);
    } else {
        rm_adapter_free(a);
        if (st == RAMOLE_OK) st = rm_err(RAMOLE_ERR_NOMEM, "adapter cache: out of memory");
    }

    pthread_mutex_lock(&c->mu);
    loading_remove(c, &me); /* waiters find the entry, or load it themselves */
    if (!h) {
        pthread_mutex_unlock(&c->mu);
        return st;
    }
    /* nobody else loaded this name meanwhile: they waited on our mark */
    h->serial = ++c->next_serial;
    h->listed = true;
    rm_adapter_handle **b = bucket_of(c, name);
    h->hnext = *b;
    *b = h;
    recency_front(c, h);
    c->st.entries++;
    c->st.bytes += h->bytes;
    grow_table(c);
    if (++h->refs == 1) c->st.held++;
    evict(c);
    pthread_mutex_unlock(&c->mu);
    *out = h;
    return RAMOLE_OK;
}

void rm_adapter_cache_retain(rm_adapter_cache *c, rm_adapter_handle *h) {
    pthread_mutex_lock(&c->mu);
    if (++h->refs == 1) c->st.held++;
    pthread_mutex_unlock(&c->mu);
}

void rm_adapter_cache_release(rm_adapter_cache *c, rm_adapter_handle *h) {
    if (!h) return;
    pthread_mutex_lock(&c->mu);
    if (--h->refs == 0) {
        c->st.held--;
        if (!h->listed) {
            for (rm_adapter_handle **p = &c->dropped; *p; p = &(*p)->hnext)
                if (*p == h) {
                    *p = h->hnext;
                    break;
                }
            destroy(c, h);
        } else {
            evict(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

const rm_adapter *rm_adapter_handle_adapter(const rm_adapter_handle *h) { return h->a; }
const char *rm_adapter_handle_name(const rm_adapter_handle *h) { return h->name; }
uint64_t rm_adapter_handle_serial(const rm_adapter_handle *h) { return h->serial; }

static const rm_router_c *router_c_find(const rm_adapter_handle *router, const rm_adapter_handle *expert) {
    for (const router_c_link *l = expert->rcs; l; l = l->next)
        if (l->router_serial == router->serial) return l->rc;
    return NULL;
}

rm_status rm_adapter_cache_router_c(rm_adapter_cache *c, rm_adapter_handle *router, rm_adapter_handle *expert,
                                    const rm_router_c **out) {
    pthread_mutex_lock(&c->mu);
    *out = router_c_find(router, expert);
    pthread_mutex_unlock(&c->mu);
    if (*out) return RAMOLE_OK;
    /* built outside the lock: the scheduler's gets and releases go on meanwhile */
    router_c_link *l = rm_calloc(1, sizeof *l);
    rm_status st = l ? rm_router_c_new(c->base, router->a, expert->a, &l->rc)
                     : rm_err(RAMOLE_ERR_NOMEM, "adapter cache: out of memory");
    if (st != RAMOLE_OK) {
        rm_free(l);
        return st;
    }
    pthread_mutex_lock(&c->mu);
    const rm_router_c *raced = router_c_find(router, expert); /* another thread built it meanwhile */
    if (raced) {
        *out = raced;
    } else {
        l->router_serial = router->serial;
        l->next = expert->rcs;
        expert->rcs = l;
        c->st.bytes += rm_router_c_bytes(l->rc);
        *out = l->rc;
        l = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (l) {
        rm_router_c_free(l->rc);
        rm_free(l);
    }
    return RAMOLE_OK;
}

bool rm_adapter_cache_drop(rm_adapter_cache *c, const char *name) {
    pthread_mutex_lock(&c->mu);
    rm_adapter_handle *h = find(c, name);
    if (h) {
        unlist(c, h);
        if (h->refs) {
            h->hnext = c->dropped;
            c->dropped = h;
        } else {
            destroy(c, h);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return h != NULL;
}

void rm_adapter_cache_stats_get(rm_adapter_cache *c, rm_adapter_cache_stats *out) {
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
