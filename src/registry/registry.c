/*
 * registry.c — the registry over a backend (see registry.h).
 *
 * Locks: `lock` guards the backend's transactions and the lazily made
 * base, embedder and pool; it is never held while an adapter is loaded,
 * screened or embedded, so a slow upload blocks other writers only for its
 * final transaction. `embed_lock` serialises the embedder (one inference
 * context). Searches take neither: the pool is lock-free for readers.
 *
 * Upload order (crash safety): blob (atomic, durable) -> row + audit entry
 * in one transaction -> pool. A crash before the commit leaves at most an
 * orphan blob or temporary file, which `check` reports and collects; a
 * committed row always names a complete blob.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lora/adapter.h"
#include "registry/backend.h"
#include "registry/pool.h"
#include "registry/registry.h"
#include "registry/screen.h"
#include "retrieval/embed.h"

struct rm_registry {
    char *url;
    rm_reg_backend *b;
    pthread_mutex_t lock, embed_lock;
    /* retrievals waiting to be embedded together (batch_mu; see rm_registry_retrieve) */
    pthread_mutex_t batch_mu;
    pthread_cond_t batch_cv;
    struct embed_wait *batch;
    bool batch_leader;
    rm_model *base;
    bool own_base;
    rm_projection *proj;
    rm_embedder *emb;
    rm_pool *threads;        /* the embedder's pool (borrowed), or NULL: its own */
    rm_embed_run_fn run;     /* the embedder's runner (rm_registry_set_runner), or NULL */
    void *run_user;
    int run_max_tokens;
    char proj_hash[65];
    int layer;
    uint64_t fingerprint;
    _Atomic(rm_reg_pool *) pool;
    int n_stale;
    uint64_t seen_version; /* the backend's data version the pool reflects */
    struct retired *retired; /* replaced pools and embedders, freed with the registry */
};

/* A pool or embedder replaced while other threads may still hold it: a
 * search or an upload in flight keeps using the old one, so it is freed
 * only with the registry (replacements are rare: a new projection). */
typedef struct retired {
    struct retired *next;
    rm_reg_pool *pool;
    rm_embedder *emb;
    rm_projection *proj;
} retired;

#define B(r) ((r)->b->ops)

/* ---- names and small helpers --------------------------------------------------- */

static const char *const status_names[RM_REG_STATUS_COUNT] = {"pending", "active", "rejected", "disabled"};
static const char *const role_names[RM_REG_ROLE_COUNT] = {"generate", "upload", "admin"};

const char *rm_reg_status_name(rm_reg_status s) { return s >= 0 && s < RM_REG_STATUS_COUNT ? status_names[s] : "?"; }
bool rm_reg_status_from_name(const char *s, rm_reg_status *out) {
    for (int i = 0; i < RM_REG_STATUS_COUNT; i++)
        if (!strcmp(s, status_names[i])) return *out = (rm_reg_status)i, true;
    return false;
}
const char *rm_reg_role_name(rm_reg_role r) { return r >= 0 && r < RM_REG_ROLE_COUNT ? role_names[r] : "?"; }
bool rm_reg_role_from_name(const char *s, rm_reg_role *out) {
    for (int i = 0; i < RM_REG_ROLE_COUNT; i++)
        if (!strcmp(s, role_names[i])) return *out = (rm_reg_role)i, true;
    return false;
}

void rm_reg_adapter_clear(rm_reg_adapter *a) {
    if (!a) return;
    rm_free(a->name), rm_free(a->description), rm_free(a->tenant), rm_free(a->creator), rm_free(a->screening);
    rm_reg_samples_free(a->samples, a->n_samples);
    rm_free(a->embedding);
    memset(a, 0, sizeof *a);
}
void rm_reg_adapters_free(rm_reg_adapter *a, int n) {
    for (int i = 0; a && i < n; i++) rm_reg_adapter_clear(&a[i]);
    rm_free(a);
}
void rm_reg_tenants_free(rm_reg_tenant *t, int n) {
    for (int i = 0; t && i < n; i++) rm_free(t[i].name);
    rm_free(t);
}
void rm_reg_audits_free(rm_reg_audit *a, int n) {
    for (int i = 0; a && i < n; i++)
        rm_free(a[i].actor), rm_free(a[i].action), rm_free(a[i].target), rm_free(a[i].hash), rm_free(a[i].detail);
    rm_free(a);
}
void rm_reg_samples_free(char **s, int n) {
    for (int i = 0; s && i < n; i++) rm_free(s[i]);
    rm_free(s);
}

static double now_unix(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A name of an adapter or tenant: 1..RM_REG_NAME_MAX bytes, no path separator or control character. */
static rm_status check_name(const char *what, const char *s) {
    if (!s || !*s) return rm_err(RAMOLE_ERR_INVALID, "%s name is empty", what);
    size_t n = strlen(s);
    if (n > RM_REG_NAME_MAX) return rm_err(RAMOLE_ERR_INVALID, "%s name is %zu bytes long (at most %d)", what, n, RM_REG_NAME_MAX);
    if (!strcmp(s, ".") || !strcmp(s, "..")) return rm_err(RAMOLE_ERR_INVALID, "%s name '%s' is not allowed", what, s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/' || c == '\\') return rm_err(RAMOLE_ERR_INVALID, "%s name '%s' holds a path separator", what, s);
        if (c < 0x20 || c == 0x7f)
            return rm_err(RAMOLE_ERR_INVALID, "%s name holds a control character (byte 0x%02x at %zu)", what, c, i);
    }
    return RAMOLE_OK;
}

static rm_status audit(rm_registry *r, const char *actor, const char *action, const char *target, const char *hash,
                       const char *detail) {
    rm_reg_audit a = {.time = now_unix(), .actor = (char *)(actor ? actor : "library"), .action = (char *)action,
                      .target = (char *)target, .hash = (char *)hash, .detail = (char *)detail};
    return B(r)->audit_append(r->b, &a);
}

/* Run body (statements on the backend) in one transaction under r->lock. */
#define TXN(r, st, ...)                                    \
    do {                                                   \
        if ((st = B(r)->begin((r)->b)) == RAMOLE_OK) {     \
            __VA_ARGS__;                                   \
            if (st == RAMOLE_OK) st = B(r)->commit((r)->b); \
            if (st != RAMOLE_OK) B(r)->rollback((r)->b);   \
        }                                                  \
    } while (0)

/* ---- samples file ------------------------------------------------------------------ */

typedef struct {
    char **s;
    int n, max;
} samples_ctx;

static rm_status sample_line(const char *s, size_t n, int line, void *ctx) {
    samples_ctx *c = ctx;
    if (c->n == c->max) return RAMOLE_OK;
    json_error_t je;
    json_t *o = json_loadb(s, n, 0, &je);
    if (!o) return rm_err(RAMOLE_ERR_FORMAT, "not JSON: %s", je.text);
    json_t *in = json_object_get(o, "input");
    rm_status st = RAMOLE_OK;
    if (!json_is_object(o) || !json_is_string(in)) st = rm_err(RAMOLE_ERR_FORMAT, "no \"input\" string");
    else if (json_string_length(in) == 0) st = rm_err(RAMOLE_ERR_INVALID, "the input is empty");
    else if (json_string_length(in) > RM_REG_SAMPLE_MAX_BYTES)
        st = rm_err(RAMOLE_ERR_INVALID, "the input is %zu bytes (at most %d)", json_string_length(in),
                    RM_REG_SAMPLE_MAX_BYTES);
    else if (!(c->s[c->n++] = rm_strdup(json_string_value(in)))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    json_decref(o);
    return st;
}

rm_status rm_reg_samples_load(const char *path, int max, char ***out, int *n) {
    *out = NULL, *n = 0;
    if (max < 1 || max > RM_REG_SAMPLES_MAX)
        return rm_err(RAMOLE_ERR_INVALID, "%s: %d samples asked; from 1 to %d", path, max, RM_REG_SAMPLES_MAX);
    char *text = NULL;
    size_t len = 0;
    RM_TRY(rm_file_read(path, &text, &len));
    samples_ctx c = {.s = rm_calloc((size_t)max, sizeof(char *)), .max = max};
    rm_status st = c.s ? rm_lines_each(text, len, path, sample_line, &c) : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_free(text);
    if (st == RAMOLE_OK && c.n == 0) st = rm_err(RAMOLE_ERR_INVALID, "%s: no sample inputs", path);
    if (st != RAMOLE_OK) {
        rm_reg_samples_free(c.s, c.n);
        return st;
    }
    *out = c.s, *n = c.n;
    return RAMOLE_OK;
}

char *rm_reg_samples_to_json(char *const *s, int n) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, json_string_nocheck(s[i]));
    char *t = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    char *out = t ? rm_strdup(t) : NULL;
    free(t);
    return out;
}

rm_status rm_reg_samples_from_json(const char *js, char ***out, int *n) {
    *out = NULL, *n = 0;
    json_t *arr = json_loads(js ? js : "", 0, NULL);
    size_t m = json_is_array(arr) ? json_array_size(arr) : 0;
    rm_status st = RAMOLE_OK;
    if (m && !(*out = rm_calloc(m, sizeof **out))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == RAMOLE_OK && i < m; i++) {
        const char *v = json_string_value(json_array_get(arr, i));
        if (!((*out)[*n] = rm_strdup(v ? v : ""))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else (*n)++;
    }
    json_decref(arr);
    if (st != RAMOLE_OK) {
        rm_reg_samples_free(*out, *n);
        *out = NULL, *n = 0;
    }
    return st;
}

/* ---- opening ---------------------------------------------------------------------- */

rm_status rm_registry_default_url(char **out) {
    const char *env = getenv("RAMOLE_REGISTRY");
    if (env && *env) *out = rm_strdup(env);
    else {
        const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        if (xdg && *xdg) *out = rm_asprintf("sqlite:%s/ramole/registry.db", xdg);
        else if (home && *home) *out = rm_asprintf("sqlite:%s/.local/share/ramole/registry.db", home);
        else return rm_err(RAMOLE_ERR_NOT_FOUND, "no registry: give --registry, RAMOLE_REGISTRY or HOME");
    }
    return *out ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
}

rm_status rm_reg_backend_open(const char *url, bool create, rm_reg_backend **b, bool *fresh) {
    if (!strncmp(url, "sqlite:", 7)) {
        const char *path = url + 7;
        if (!*path) return rm_err(RAMOLE_ERR_INVALID, "registry URL '%s' names no file", url);
        if (create) { /* make the folder of the default location */
            char *dir = rm_strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
            for (char *p = dir ? dir + 1 : NULL; slash && p && (p = strchr(p, '/')); p++) {
                *p = 0;
                mkdir(dir, 0755);
                *p = '/';
            }
            rm_free(dir);
        }
        return rm_reg_sqlite_open(path, create, b, fresh);
    }
    if (!strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11))
        return rm_reg_pg_open(url, create, b, fresh);
    return rm_err(RAMOLE_ERR_INVALID, "registry URL '%s': expected sqlite:PATH or postgresql://...", url);
}

static rm_registry *registry_alloc(const char *url, rm_reg_backend *b) {
    rm_registry *r = rm_calloc(1, sizeof *r);
    if (!r || !(r->url = rm_strdup(url))) {
        rm_free(r);
        return NULL;
    }
    r->b = b;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->embed_lock, NULL);
    pthread_mutex_init(&r->batch_mu, NULL);
    pthread_cond_init(&r->batch_cv, NULL);
    return r;
}

static rm_status meta_u64(rm_registry *r, const char *key, uint64_t *v) {
    char *s = NULL;
    RM_TRY(B(r)->meta_get(r->b, key, &s));
    *v = strtoull(s, NULL, 16);
    rm_free(s);
    return RAMOLE_OK;
}

static rm_status meta_double(rm_registry *r, const char *key, double *v) {
    char *s = NULL;
    RM_TRY(B(r)->meta_get(r->b, key, &s));
    *v = strtod(s, NULL);
    rm_free(s);
    return RAMOLE_OK;
}

/* Read what a registry handle caches from meta. */
static rm_status load_meta(rm_registry *r) {
    rm_status st = meta_u64(r, "base_fingerprint", &r->fingerprint);
    if (st == RAMOLE_ERR_NOT_FOUND) return rm_err(st, "%s: the registry records no base (ramole registry init)", r->url);
    RM_TRY(st);
    double layer;
    RM_TRY(meta_double(r, "layer", &layer));
    r->layer = (int)layer;
    char *ph = NULL;
    RM_TRY(B(r)->meta_get(r->b, "projection", &ph));
    snprintf(r->proj_hash, sizeof r->proj_hash, "%s", ph);
    rm_free(ph);
    return RAMOLE_OK;
}

rm_status rm_registry_open(const char *url, rm_registry **out) {
    *out = NULL;
    rm_reg_backend *b = NULL;
    bool fresh = false;
    RM_TRY(rm_reg_backend_open(url, false, &b, &fresh));
    rm_registry *r = registry_alloc(url, b);
    if (!r) {
        b->ops->close(b);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    rm_status st = load_meta(r);
    if (st != RAMOLE_OK) {
        rm_registry_free(r);
        return st;
    }
    *out = r;
    return RAMOLE_OK;
}

void rm_registry_free(rm_registry *r) {
    if (!r) return;
    rm_reg_pool_free(atomic_load(&r->pool));
    for (retired *x = r->retired, *next; x; x = next) {
        next = x->next;
        rm_reg_pool_free(x->pool);
        rm_embedder_free(x->emb);
        rm_projection_free(x->proj);
        rm_free(x);
    }
    rm_embedder_free(r->emb);
    rm_projection_free(r->proj);
    if (r->own_base) rm_model_free(r->base);
    if (r->b) r->b->ops->close(r->b);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->embed_lock);
    pthread_mutex_destroy(&r->batch_mu);
    pthread_cond_destroy(&r->batch_cv);
    rm_free(r->url);
    rm_free(r);
}

const char *rm_registry_url(const rm_registry *r) { return r->url; }

static rm_status check_fingerprint(rm_registry *r, const rm_model *m) {
    uint64_t fp = rm_model_fingerprint(m);
    if (fp != r->fingerprint)
        return rm_err(RAMOLE_ERR_MISMATCH,
                      "registry %s was made for another base (fingerprint %016llx; %s has %016llx)", r->url,
                      (unsigned long long)r->fingerprint, m->path ? m->path : "this model", (unsigned long long)fp);
    if (!m->tokenizer) return rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer; the registry's embedder reads text", m->path);
    return RAMOLE_OK;
}

rm_status rm_registry_set_base(rm_registry *r, rm_model *base) {
    pthread_mutex_lock(&r->lock);
    rm_status st = r->base ? rm_err(RAMOLE_ERR_INVALID, "registry %s: the base is already set", r->url)
                           : check_fingerprint(r, base);
    if (st == RAMOLE_OK) r->base = base, r->own_base = false;
    pthread_mutex_unlock(&r->lock);
    return st;
}

/* The base, opened from the recorded path on first use (r->lock held). */
static rm_status base_locked(rm_registry *r) {
    if (r->base) return RAMOLE_OK;
    char *path = NULL;
    RM_TRY(B(r)->meta_get(r->b, "base_path", &path));
    rm_model *m = NULL;
    rm_status st = rm_model_open(path, &m);
    if (st != RAMOLE_OK) rm_err_prefix(st, "registry %s: its base %s", r->url, path);
    else if ((st = check_fingerprint(r, m)) != RAMOLE_OK) rm_model_free(m);
    else r->base = m, r->own_base = true;
    rm_free(path);
    return st;
}

rm_status rm_registry_base(rm_registry *r, rm_model **out) {
    pthread_mutex_lock(&r->lock);
    rm_status st = base_locked(r);
    *out = r->base;
    pthread_mutex_unlock(&r->lock);
    return st;
}

/* The projection stored under `hash` ("" none), loaded for the base. */
static rm_status projection_from_blob(rm_registry *r, const char *hash, rm_projection **out) {
    *out = NULL;
    if (!*hash) return RAMOLE_OK;
    char *path = NULL;
    RM_TRY(B(r)->blob_file(r->b, hash, &path));
    rm_status st = rm_projection_load(path, r->base, out);
    rm_free(path);
    return st;
}

static rm_status embedder_make(rm_registry *r, const rm_projection *proj, rm_embedder **out) {
    rm_embed_opts eo;
    rm_embed_opts_default(&eo);
    eo.layer = r->layer;
    eo.pool = r->threads;
    eo.run = r->run, eo.run_user = r->run_user, eo.run_max_tokens = r->run_max_tokens;
    return rm_embedder_new(r->base, r->base->tokenizer, &eo, proj, out);
}

rm_status rm_registry_set_pool(rm_registry *r, rm_pool *pool) {
    pthread_mutex_lock(&r->lock);
    bool made = r->emb != NULL;
    if (!made) r->threads = pool;
    pthread_mutex_unlock(&r->lock);
    return made ? rm_err(RAMOLE_ERR_INVALID, "registry: the embedder already runs; set its pool before first use")
                : RAMOLE_OK;
}

rm_status rm_registry_set_runner(rm_registry *r, rm_embed_run_fn fn, void *user, int max_tokens) {
    pthread_mutex_lock(&r->lock);
    bool made = r->emb != NULL;
    if (!made) r->run = fn, r->run_user = user, r->run_max_tokens = max_tokens;
    pthread_mutex_unlock(&r->lock);
    return made ? rm_err(RAMOLE_ERR_INVALID, "registry: the embedder already runs; set its runner before first use")
                : RAMOLE_OK;
}

/* Base, projection and embedder (r->lock held). */
static rm_status embedder_locked(rm_registry *r) {
    if (r->emb) return RAMOLE_OK;
    RM_TRY(base_locked(r));
    if (!r->proj) RM_TRY(projection_from_blob(r, r->proj_hash, &r->proj));
    return embedder_make(r, r->proj, &r->emb);
}

rm_status rm_registry_embed_dim(rm_registry *r, int *dim) {
    pthread_mutex_lock(&r->lock);
    rm_status st = embedder_locked(r);
    *dim = st == RAMOLE_OK ? rm_embedder_dim(r->emb) : 0;
    pthread_mutex_unlock(&r->lock);
    return st;
}

static bool identity_matches(const rm_registry *r, const rm_reg_adapter *a) {
    return a->embedding && a->emb_fingerprint == r->fingerprint && a->emb_layer == r->layer &&
           !strcmp(a->emb_projection, r->proj_hash) && a->dim == rm_embedder_dim(r->emb);
}

/* Fill pool p from the backend's rows: the active adapters with a current embedding (r->lock held). */
static rm_status pool_fill(rm_registry *r, rm_reg_pool *p) {
    rm_reg_adapter *rows = NULL;
    int n = 0, stale = 0;
    RM_TRY(B(r)->adapter_list(r->b, -1, &rows, &n));
    bool *keep = rm_calloc((size_t)(n ? n : 1), sizeof *keep);
    rm_status st = keep ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; keep && i < n; i++) {
        if (rows[i].status != RM_REG_ACTIVE) continue;
        keep[i] = identity_matches(r, &rows[i]);
        stale += !keep[i];
    }
    if (st == RAMOLE_OK) st = rm_reg_pool_replace(p, rows, keep, n);
    if (st == RAMOLE_OK) r->n_stale = stale;
    rm_free(keep);
    rm_reg_adapters_free(rows, n);
    return st;
}

/* The pool, loaded on first use (r->lock held). */
static rm_status pool_locked(rm_registry *r) {
    if (atomic_load(&r->pool)) return RAMOLE_OK;
    RM_TRY(embedder_locked(r));
    RM_TRY(B(r)->data_version(r->b, &r->seen_version)); /* before reading the rows: no change is missed */
    rm_reg_pool *p = NULL;
    RM_TRY(rm_reg_pool_new(rm_embedder_dim(r->emb), &p));
    rm_status st = pool_fill(r, p);
    if (st != RAMOLE_OK) {
        rm_reg_pool_free(p);
        return st;
    }
    atomic_store(&r->pool, p);
    return RAMOLE_OK;
}

/*
 * Use embedder `emb` with projection `proj` (hash, layer) from now on: the
 * old ones are retired, and a loaded pool is replaced by one of the new
 * width filled from the rows (r->lock held; takes embed_lock for the swap).
 */
static rm_status embedder_switch(rm_registry *r, rm_embedder *emb, rm_projection *proj, const char *hash, int layer) {
    rm_reg_pool *np = NULL;
    retired *x = rm_calloc(1, sizeof *x);
    if (!x) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&r->embed_lock);
    x->emb = r->emb, x->proj = r->proj;
    r->emb = emb, r->proj = proj, r->layer = layer;
    snprintf(r->proj_hash, sizeof r->proj_hash, "%s", hash);
    pthread_mutex_unlock(&r->embed_lock);
    rm_status st = RAMOLE_OK;
    if (atomic_load(&r->pool) && (st = rm_reg_pool_new(rm_embedder_dim(emb), &np)) == RAMOLE_OK &&
        (st = pool_fill(r, np)) == RAMOLE_OK)
        x->pool = atomic_exchange(&r->pool, np), np = NULL;
    rm_reg_pool_free(np);
    x->next = r->retired;
    r->retired = x;
    return st;
}

rm_status rm_registry_refresh(rm_registry *r, bool *changed) {
    if (changed) *changed = false;
    pthread_mutex_lock(&r->lock);
    uint64_t v = 0;
    char *ph = NULL;
    double layer = 0;
    rm_status st = atomic_load(&r->pool) ? B(r)->data_version(r->b, &v) : pool_locked(r);
    if (st == RAMOLE_OK && atomic_load(&r->pool) && v != r->seen_version) {
        /* another process committed: a new projection means a new embedder; rows are read again */
        r->seen_version = v;
        if (changed) *changed = true;
        if ((st = B(r)->meta_get(r->b, "projection", &ph)) == RAMOLE_OK && (st = meta_double(r, "layer", &layer)) == RAMOLE_OK &&
            (strcmp(ph, r->proj_hash) || (int)layer != r->layer)) {
            rm_projection *proj = NULL;
            rm_embedder *emb = NULL;
            int old_layer = r->layer;
            r->layer = (int)layer; /* embedder_make reads it */
            st = projection_from_blob(r, ph, &proj);
            if (st == RAMOLE_OK) st = embedder_make(r, proj, &emb);
            r->layer = old_layer;
            if (st == RAMOLE_OK) st = embedder_switch(r, emb, proj, ph, (int)layer);
            else rm_embedder_free(emb), rm_projection_free(proj);
        } else if (st == RAMOLE_OK)
            st = pool_fill(r, atomic_load(&r->pool)); /* swapped in whole */
    }
    pthread_mutex_unlock(&r->lock);
    rm_free(ph);
    return st;
}

int rm_registry_n_stale(const rm_registry *r) { return r->n_stale; }

/* Embed texts and average them into out[dim] (the adapter's vector). */
static rm_status embed_mean(rm_registry *r, rm_embedder *e, char *const *texts, int n, float *out) {
    int dim = rm_embedder_dim(e);
    float *E = rm_malloc((size_t)n * (size_t)dim * sizeof *E);
    double *acc = rm_malloc((size_t)dim * sizeof *acc);
    rm_status st = E && acc ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    bool serial = !r->run; /* a runner's embedder serves many threads at once */
    if (st == RAMOLE_OK) {
        if (serial) pthread_mutex_lock(&r->embed_lock);
        st = rm_embedder_embed(e, (const char *const *)texts, n, E);
        if (serial) pthread_mutex_unlock(&r->embed_lock);
    }
    if (st == RAMOLE_OK) rm_embed_mean(E, dim, NULL, n, acc, out);
    rm_free(E), rm_free(acc);
    return st;
}

/* ---- blobs of files ---------------------------------------------------------------- */

static rm_status put_bytes(rm_registry *r, const void *data, size_t n, char hash[65]) {
    rm_sha256_hex(data, n, hash);
    return B(r)->blob_put(r->b, hash, data, n);
}

static rm_status put_file(rm_registry *r, const char *path, char hash[65], int64_t *size) {
    char *data = NULL;
    size_t n = 0;
    RM_TRY(rm_file_read(path, &data, &n));
    rm_status st = put_bytes(r, data, n, hash);
    rm_free(data);
    if (size) *size = (int64_t)n;
    return st;
}

/* Store an adapter as its canonical GGUF LoRA file. */
static rm_status put_adapter(rm_registry *r, const rm_adapter *a, char hash[65], int64_t *size) {
    static atomic_int counter;
    char *tmp = rm_asprintf("%s/upload.%d.%d.gguf", B(r)->scratch_dir(r->b), (int)getpid(),
                            atomic_fetch_add(&counter, 1));
    if (!tmp) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_adapter_save_gguf(a, r->base, tmp);
    if (st == RAMOLE_OK) st = put_file(r, tmp, hash, size);
    unlink(tmp);
    rm_free(tmp);
    return st;
}

/* ---- create ------------------------------------------------------------------------ */

rm_status rm_registry_create(const char *url, const rm_registry_init_opts *o, rm_registry **out) {
    *out = NULL;
    if (!o->model) return rm_err(RAMOLE_ERR_INVALID, "registry init: the base model is required");
    rm_model *m = NULL;
    rm_adapter *router = NULL;
    rm_projection *proj = NULL;
    char **probes = NULL, *pj = NULL, *abs = NULL;
    int n_probes = 0;
    rm_registry *r = NULL;
    rm_reg_backend *b = NULL;
    bool fresh = false;
    rm_status st = rm_model_open(o->model, &m);
    if (st != RAMOLE_OK) goto out;
    if (!m->tokenizer) {
        st = rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer (tokenizer.json); the registry's embedder reads text", o->model);
        goto out;
    }
    if (o->layer != RM_HIDDEN_FINAL && (o->layer < 0 || o->layer > m->cfg.n_layers)) {
        st = rm_err(RAMOLE_ERR_RANGE, "--layer %d outside 0..%d", o->layer, m->cfg.n_layers);
        goto out;
    }
    if (o->projection && (st = rm_projection_load(o->projection, m, &proj)) != RAMOLE_OK) goto out;
    if (o->router && (st = rm_adapter_load(m, o->router, &router)) != RAMOLE_OK) goto out;
    if (o->probes) st = rm_reg_samples_load(o->probes, RM_REG_SAMPLES_MAX, &probes, &n_probes);
    if (st != RAMOLE_OK) goto out;
    if (!(pj = probes ? rm_reg_samples_to_json(probes, n_probes) : rm_strdup("")) || !(abs = realpath(o->model, NULL))) {
        st = rm_err(RAMOLE_ERR_NOMEM, "%s: cannot resolve the path", o->model);
        goto out;
    }
    if ((st = rm_reg_backend_open(url, true, &b, &fresh)) != RAMOLE_OK) goto out;
    if (!(r = registry_alloc(url, b))) {
        b->ops->close(b);
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    char *v = NULL;
    if (B(r)->meta_get(r->b, "base_fingerprint", &v) == RAMOLE_OK) {
        rm_free(v);
        st = rm_err(RAMOLE_ERR_INVALID, "%s already holds a registry (ramole registry set changes one)", url);
        goto out;
    }
    r->base = m, r->own_base = true, m = NULL;
    r->fingerprint = rm_model_fingerprint(r->base);
    r->layer = proj ? proj->layer : o->layer;
    char proj_hash[65] = "", router_hash[65] = "", fp[17], num[32], kl[32];
    if (o->projection && (st = put_file(r, o->projection, proj_hash, NULL)) != RAMOLE_OK) goto out;
    if (router && (st = put_adapter(r, router, router_hash, NULL)) != RAMOLE_OK) goto out;
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)r->fingerprint);
    snprintf(num, sizeof num, "%d", r->layer);
    snprintf(kl, sizeof kl, "%.9g", o->kl_threshold > 0 ? o->kl_threshold : RM_REG_DEFAULT_KL);
    snprintf(r->proj_hash, sizeof r->proj_hash, "%s", proj_hash);
    r->proj = proj, proj = NULL;
    pthread_mutex_lock(&r->lock);
    TXN(r, st, {
        const char *kv[][2] = {{"base_path", abs}, {"layer", num}, {"projection", proj_hash},
                               {"router", router_hash}, {"require_approval", o->require_approval ? "1" : "0"},
                               {"kl_threshold", kl}, {"probes", pj}, {"base_fingerprint", fp}};
        for (size_t i = 0; st == RAMOLE_OK && i < sizeof kv / sizeof kv[0]; i++)
            st = B(r)->meta_set(r->b, kv[i][0], kv[i][1]);
        if (st == RAMOLE_OK) st = B(r)->tenant_add(r->b, RM_REG_DEFAULT_TENANT, now_unix(), NULL);
        if (st == RAMOLE_OK) st = audit(r, o->actor, "init", abs, proj_hash, fp);
    });
    pthread_mutex_unlock(&r->lock);
    if (st == RAMOLE_OK) *out = r, r = NULL;
out:
    rm_registry_free(r);
    rm_model_free(m);
    rm_adapter_free(router);
    rm_projection_free(proj);
    rm_reg_samples_free(probes, n_probes);
    rm_free(pj);
    free(abs);
    return st;
}

/* ---- settings ------------------------------------------------------------------------ */

rm_status rm_registry_meta(rm_registry *r, const char *key, char **out) {
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->meta_get(r->b, key, out);
    pthread_mutex_unlock(&r->lock);
    return st;
}

static rm_status set_meta_audited(rm_registry *r, const char *key, const char *val, const char *actor,
                                  const char *action) {
    rm_status st;
    pthread_mutex_lock(&r->lock);
    TXN(r, st, {
        st = B(r)->meta_set(r->b, key, val);
        if (st == RAMOLE_OK) st = audit(r, actor, action, key, "", val);
    });
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_set_kl_threshold(rm_registry *r, double t, const char *actor) {
    if (!(t > 0) || !isfinite(t)) return rm_err(RAMOLE_ERR_RANGE, "KL threshold %g: must be positive", t);
    char v[32];
    snprintf(v, sizeof v, "%.9g", t);
    return set_meta_audited(r, "kl_threshold", v, actor, "set");
}

rm_status rm_registry_set_require_approval(rm_registry *r, bool on, const char *actor) {
    return set_meta_audited(r, "require_approval", on ? "1" : "0", actor, "set");
}

rm_status rm_registry_set_router(rm_registry *r, const char *path, const char *actor) {
    rm_adapter *router = NULL;
    char hash[65] = "";
    pthread_mutex_lock(&r->lock);
    rm_status st = base_locked(r);
    pthread_mutex_unlock(&r->lock);
    if (st == RAMOLE_OK && path) st = rm_adapter_load(r->base, path, &router);
    if (st == RAMOLE_OK && router) st = put_adapter(r, router, hash, NULL);
    rm_adapter_free(router);
    if (st == RAMOLE_OK) st = set_meta_audited(r, "router", hash, actor, "set router");
    return st;
}

rm_status rm_registry_router_file(rm_registry *r, char **path) {
    *path = NULL;
    char *h = NULL;
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->meta_get(r->b, "router", &h);
    if (st == RAMOLE_OK && *h) st = B(r)->blob_file(r->b, h, path);
    pthread_mutex_unlock(&r->lock);
    rm_free(h);
    return st;
}

rm_status rm_registry_set_projection(rm_registry *r, const char *path, const char *actor, rm_reg_progress_fn fn,
                                     void *user) {
    rm_projection *proj = NULL;
    rm_embedder *emb = NULL;
    rm_reg_adapter *rows = NULL;
    int n = 0;
    char hash[65] = "";
    pthread_mutex_lock(&r->lock);
    rm_status st = base_locked(r);
    if (st == RAMOLE_OK && path && (st = rm_projection_load(path, r->base, &proj)) == RAMOLE_OK)
        st = put_file(r, path, hash, NULL);
    int old_layer = r->layer;
    if (proj) r->layer = proj->layer;
    if (st == RAMOLE_OK) st = embedder_make(r, proj, &emb);
    if (st == RAMOLE_OK) st = B(r)->adapter_list(r->b, -1, &rows, &n);
    /* every adapter's embedding under the new embedder, written in one transaction */
    for (int i = 0; st == RAMOLE_OK && i < n; i++) {
        if (fn) {
            char msg[256];
            snprintf(msg, sizeof msg, "re-embedding adapter %d/%d (%s)", i + 1, n, rows[i].name);
            fn(msg, user);
        }
        int dim = rm_embedder_dim(emb);
        float *v = rm_malloc((size_t)dim * sizeof *v);
        if (!v) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); break; }
        rm_free(rows[i].embedding);
        rows[i].embedding = v, rows[i].dim = dim;
        rows[i].emb_fingerprint = r->fingerprint, rows[i].emb_layer = r->layer;
        snprintf(rows[i].emb_projection, sizeof rows[i].emb_projection, "%s", hash);
        st = embed_mean(r, emb, rows[i].samples, rows[i].n_samples, v);
    }
    if (st == RAMOLE_OK) {
        char num[32];
        snprintf(num, sizeof num, "%d", r->layer);
        TXN(r, st, {
            for (int i = 0; st == RAMOLE_OK && i < n; i++) st = B(r)->adapter_update(r->b, &rows[i]);
            if (st == RAMOLE_OK) st = B(r)->meta_set(r->b, "projection", hash);
            if (st == RAMOLE_OK) st = B(r)->meta_set(r->b, "layer", num);
            if (st == RAMOLE_OK) st = audit(r, actor, "set projection", path ? path : "", hash, "");
        });
    }
    if (st == RAMOLE_OK) { /* the new embedder and a pool of its width replace the old ones */
        int layer = r->layer;
        r->layer = old_layer;
        st = embedder_switch(r, emb, proj, hash, layer);
        emb = NULL, proj = NULL;
        B(r)->data_version(r->b, &r->seen_version);
    } else
        r->layer = old_layer;
    pthread_mutex_unlock(&r->lock);
    rm_embedder_free(emb);
    rm_projection_free(proj);
    rm_reg_adapters_free(rows, n);
    return st;
}

/* ---- screening ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The "norms" array of a screening JSON, into v[n] (false when absent or of another size). */
static bool screening_norms(const char *js, double *v, int n) {
    json_t *o = json_loads(js ? js : "", 0, NULL);
    json_t *arr = json_object_get(o, "norms");
    bool ok = json_is_array(arr) && (int)json_array_size(arr) == n;
    for (int i = 0; ok && i < n; i++) v[i] = json_number_value(json_array_get(arr, i));
    json_decref(o);
    return ok;
}

/*
 * Screen adapter `a` against the pool `rows` (other adapters, skip_id left
 * out): the JSON of the results into *js, *held when the KL probe is above
 * the threshold.
 */
static rm_status screen(rm_registry *r, const rm_adapter *a, const rm_reg_adapter *rows, int n_rows, int64_t skip_id,
                        char **js, bool *held) {
    *js = NULL, *held = false;
    int nm = a->n_layers * RM_TARGET_COUNT;
    double *norms = rm_malloc((size_t)nm * sizeof *norms), *other = rm_malloc((size_t)nm * sizeof *other);
    double *col = rm_malloc(((size_t)n_rows + 1) * sizeof *col);
    char **probes = NULL, *pjs = NULL;
    int n_probes = 0;
    double kl = 0, threshold = RM_REG_DEFAULT_KL;
    json_t *o = NULL;
    rm_status st = norms && other && col ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) st = rm_screen_finite(r->base, a);
    if (st == RAMOLE_OK) st = rm_screen_norms(r->base, a, norms);
    pthread_mutex_lock(&r->lock);
    if (st == RAMOLE_OK) st = meta_double(r, "kl_threshold", &threshold);
    if (st == RAMOLE_OK) st = B(r)->meta_get(r->b, "probes", &pjs);
    pthread_mutex_unlock(&r->lock);
    if (st == RAMOLE_OK && *pjs) st = rm_reg_samples_from_json(pjs, &probes, &n_probes); /* the registry's own probes */
    if (st == RAMOLE_OK)
        st = probes ? rm_screen_kl(r->base, a, (const char *const *)probes, n_probes, &kl)
                    : rm_screen_kl(r->base, a, rm_screen_default_probes, rm_screen_n_default_probes, &kl);
    if (st != RAMOLE_OK) goto out;
    /* norms against the median of the pool's active adapters, module by module */
    double worst = 0;
    int worst_m = -1, n_outliers = 0, n_pool = 0;
    json_t *jn = json_array();
    for (int m = 0; m < nm; m++) {
        json_array_append_new(jn, json_real(norms[m]));
        if (norms[m] < 0) continue;
        int k = 0;
        for (int i = 0; i < n_rows; i++)
            if (rows[i].id != skip_id && rows[i].status == RM_REG_ACTIVE && screening_norms(rows[i].screening, other, nm) &&
                other[m] >= 0)
                col[k++] = other[m];
        if (k > n_pool) n_pool = k;
        if (k < 3) continue; /* too few to call anything an outlier */
        qsort(col, (size_t)k, sizeof *col, cmp_double);
        double med = k % 2 ? col[k / 2] : 0.5 * (col[k / 2 - 1] + col[k / 2]);
        double ratio = med > 0 ? norms[m] / med : 0;
        if (ratio > RM_REG_NORM_OUTLIER) n_outliers++;
        if (ratio > worst) worst = ratio, worst_m = m;
    }
    *held = kl > threshold;
    char where[64] = "";
    if (worst_m >= 0)
        snprintf(where, sizeof where, "layer %d %s", worst_m / RM_TARGET_COUNT,
                 rm_target_hf_name((rm_target)(worst_m % RM_TARGET_COUNT)));
    o = json_pack("{s:b, s:b, s:f, s:f, s:b, s:i, s:f, s:s, s:i, s:i, s:o, s:I}", "shapes_fit", 1, "finite", 1,
                  "kl", kl, "kl_threshold", threshold, "kl_held", (int)*held, "norm_outliers", n_outliers,
                  "norm_worst_ratio", worst, "norm_worst_module", where, "norm_pool", n_pool, "probes",
                  probes ? n_probes : rm_screen_n_default_probes, "norms", jn, "time", (json_int_t)now_unix());
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (!s || !(*js = rm_strdup(s))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    free(s);
out:
    json_decref(o);
    rm_free(norms), rm_free(other), rm_free(col), rm_free(pjs);
    rm_reg_samples_free(probes, n_probes);
    return st;
}

/* ---- adapters ----------------------------------------------------------------------------- */

/* Tenant id of `name` (NULL: default) (r->lock held). */
static rm_status tenant_id_locked(rm_registry *r, const char *name, int64_t *id) {
    return B(r)->tenant_find(r->b, name ? name : RM_REG_DEFAULT_TENANT, id);
}

/* Bring the pool in line with a row's status (r->lock held). */
static rm_status pool_sync(rm_registry *r, const rm_reg_adapter *a) {
    rm_reg_pool *p = atomic_load(&r->pool);
    if (!p) return RAMOLE_OK;
    if (a->status == RM_REG_ACTIVE && identity_matches(r, a))
        return rm_reg_pool_add(p, a->id, a->tenant_id, a->is_public, a->name, a->embedding);
    rm_reg_pool_remove(p, a->id);
    return RAMOLE_OK;
}

static rm_status check_add_opts(const rm_reg_add_opts *o) {
    RM_TRY(check_name("adapter", o->name));
    if (o->tenant) RM_TRY(check_name("tenant", o->tenant));
    if (!o->path) return rm_err(RAMOLE_ERR_INVALID, "adapter '%s': no file given", o->name);
    if (o->n_samples < 1) return rm_err(RAMOLE_ERR_INVALID, "adapter '%s': the sample list is empty", o->name);
    if (o->n_samples > RM_REG_SAMPLES_MAX)
        return rm_err(RAMOLE_ERR_INVALID, "adapter '%s': %d samples (at most %d)", o->name, o->n_samples,
                      RM_REG_SAMPLES_MAX);
    for (int i = 0; i < o->n_samples; i++) {
        size_t n = o->samples[i] ? strlen(o->samples[i]) : 0;
        if (n == 0) return rm_err(RAMOLE_ERR_INVALID, "adapter '%s': sample %d is empty", o->name, i + 1);
        if (n > RM_REG_SAMPLE_MAX_BYTES)
            return rm_err(RAMOLE_ERR_INVALID, "adapter '%s': sample %d is %zu bytes (at most %d)", o->name, i + 1, n,
                          RM_REG_SAMPLE_MAX_BYTES);
    }
    if (o->description && strlen(o->description) > 65536)
        return rm_err(RAMOLE_ERR_INVALID, "adapter '%s': the description is over 64 KiB", o->name);
    return RAMOLE_OK;
}

rm_status rm_registry_adapter_add(rm_registry *r, const rm_reg_add_opts *o, int64_t *id) {
    if (id) *id = -1;
    RM_TRY(check_add_opts(o));
    rm_reg_adapter row = {0}, *pool_rows = NULL;
    int n_pool = 0;
    rm_adapter *a = NULL;
    bool held = false;
    char *approval = NULL;
    pthread_mutex_lock(&r->lock);
    rm_status st = tenant_id_locked(r, o->tenant, &row.tenant_id);
    if (st == RAMOLE_OK) { /* a duplicate fails early here, and for good at the insert */
        rm_reg_adapter dup;
        rm_status f = B(r)->adapter_find(r->b, row.tenant_id, o->name, &dup);
        rm_reg_adapter_clear(&dup);
        if (f == RAMOLE_OK)
            st = rm_err(RAMOLE_ERR_INVALID, "adapter '%s' already exists in tenant '%s'", o->name,
                        o->tenant ? o->tenant : RM_REG_DEFAULT_TENANT);
        else if (f != RAMOLE_ERR_NOT_FOUND) st = f;
    }
    if (st == RAMOLE_OK) st = pool_locked(r);
    rm_embedder *e = r->emb; /* the embedder and its identity as of now (a replaced one stays valid) */
    row.emb_fingerprint = r->fingerprint, row.emb_layer = r->layer;
    snprintf(row.emb_projection, sizeof row.emb_projection, "%s", r->proj_hash);
    if (st == RAMOLE_OK) st = B(r)->meta_get(r->b, "require_approval", &approval);
    if (st == RAMOLE_OK) st = B(r)->adapter_list(r->b, -1, &pool_rows, &n_pool);
    pthread_mutex_unlock(&r->lock);
    if (st != RAMOLE_OK) goto out;
    /* load (shapes and targets must fit the base), screen, embed: no lock held */
    if ((st = rm_adapter_load(r->base, o->path, &a)) != RAMOLE_OK) goto out;
    if ((st = screen(r, a, pool_rows, n_pool, -1, &row.screening, &held)) != RAMOLE_OK) goto out;
    int dim = rm_embedder_dim(e);
    row.name = rm_strdup(o->name);
    row.description = rm_strdup(o->description ? o->description : "");
    row.tenant = rm_strdup(o->tenant ? o->tenant : RM_REG_DEFAULT_TENANT);
    row.creator = rm_strdup(o->actor ? o->actor : "library");
    row.samples = rm_calloc((size_t)o->n_samples, sizeof *row.samples);
    row.embedding = rm_malloc((size_t)dim * sizeof(float));
    if (!row.name || !row.description || !row.tenant || !row.creator || !row.samples || !row.embedding) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < o->n_samples; i++)
        if (!(row.samples[row.n_samples++] = rm_strdup(o->samples[i]))) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto out; }
    row.dim = dim;
    if ((st = embed_mean(r, e, row.samples, row.n_samples, row.embedding)) != RAMOLE_OK) goto out;
    row.is_public = !o->is_private;
    row.status = held || !strcmp(approval, "1") ? RM_REG_PENDING : RM_REG_ACTIVE;
    row.rank = a->rank, row.alpha = a->alpha, row.targets = a->target_mask;
    row.created = now_unix();
    /* the blob is durable before the row that names it commits */
    if ((st = put_adapter(r, a, row.hash, &row.size)) != RAMOLE_OK) goto out;
    pthread_mutex_lock(&r->lock);
    TXN(r, st, {
        st = B(r)->adapter_insert(r->b, &row);
        char detail[160];
        snprintf(detail, sizeof detail, "tenant=%s status=%s%s", row.tenant, rm_reg_status_name(row.status),
                 held ? " (held by the KL probe)" : "");
        if (st == RAMOLE_OK) st = audit(r, o->actor, "add", row.name, row.hash, detail);
    });
    if (st == RAMOLE_OK && id) *id = row.id;
    /* visible to the very next search through this handle (unless the embedder changed meanwhile) */
    if (st == RAMOLE_OK) st = pool_sync(r, &row);
    pthread_mutex_unlock(&r->lock);
out:
    rm_adapter_free(a);
    rm_reg_adapter_clear(&row);
    rm_reg_adapters_free(pool_rows, n_pool);
    rm_free(approval);
    return st;
}

rm_status rm_registry_adapter_get(rm_registry *r, const char *tenant, const char *name, rm_reg_adapter *out) {
    memset(out, 0, sizeof *out);
    int64_t tid;
    pthread_mutex_lock(&r->lock);
    rm_status st = tenant_id_locked(r, tenant, &tid);
    if (st == RAMOLE_OK) st = B(r)->adapter_find(r->b, tid, name, out);
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_adapter_list(rm_registry *r, const char *tenant, rm_reg_adapter **out, int *n) {
    *out = NULL, *n = 0;
    int64_t tid = -1;
    pthread_mutex_lock(&r->lock);
    rm_status st = tenant ? tenant_id_locked(r, tenant, &tid) : RAMOLE_OK;
    if (st == RAMOLE_OK) st = B(r)->adapter_list(r->b, tid, out, n);
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_adapter_remove(rm_registry *r, const char *tenant, const char *name, const char *actor) {
    rm_reg_adapter a = {0};
    int64_t tid;
    rm_status st;
    pthread_mutex_lock(&r->lock);
    if ((st = tenant_id_locked(r, tenant, &tid)) == RAMOLE_OK && (st = B(r)->adapter_find(r->b, tid, name, &a)) == RAMOLE_OK) {
        TXN(r, st, {
            st = B(r)->adapter_delete(r->b, a.id);
            if (st == RAMOLE_OK) st = audit(r, actor, "rm", a.name, a.hash, a.tenant);
        });
        if (st == RAMOLE_OK && atomic_load(&r->pool)) rm_reg_pool_remove(atomic_load(&r->pool), a.id);
    }
    pthread_mutex_unlock(&r->lock);
    rm_reg_adapter_clear(&a);
    return st;
}

rm_status rm_registry_adapter_act(rm_registry *r, const char *tenant, const char *name, rm_reg_action act,
                                  const char *actor) {
    static const char *const verbs[] = {"enable", "disable", "approve", "reject"};
    rm_reg_adapter a = {0};
    int64_t tid;
    rm_status st;
    pthread_mutex_lock(&r->lock);
    if ((st = tenant_id_locked(r, tenant, &tid)) != RAMOLE_OK || (st = B(r)->adapter_find(r->b, tid, name, &a)) != RAMOLE_OK)
        goto out;
    rm_reg_status from = a.status, to = from;
    bool ok = false;
    switch (act) {
    case RM_REG_ENABLE: ok = from == RM_REG_DISABLED, to = RM_REG_ACTIVE; break;
    case RM_REG_DISABLE: ok = from == RM_REG_ACTIVE || from == RM_REG_PENDING, to = RM_REG_DISABLED; break;
    case RM_REG_APPROVE: ok = from == RM_REG_PENDING, to = RM_REG_ACTIVE; break;
    case RM_REG_REJECT: ok = from == RM_REG_PENDING, to = RM_REG_REJECTED; break;
    }
    if (!ok) {
        st = rm_err(RAMOLE_ERR_INVALID, "adapter '%s' is %s: cannot %s it", name, rm_reg_status_name(from), verbs[act]);
        goto out;
    }
    if (to == RM_REG_ACTIVE && (st = pool_locked(r)) != RAMOLE_OK) goto out;
    a.status = to;
    TXN(r, st, {
        st = B(r)->adapter_update(r->b, &a);
        char detail[96];
        snprintf(detail, sizeof detail, "%s -> %s", rm_reg_status_name(from), rm_reg_status_name(to));
        if (st == RAMOLE_OK) st = audit(r, actor, verbs[act], a.name, a.hash, detail);
    });
    if (st == RAMOLE_OK) st = pool_sync(r, &a);
out:
    pthread_mutex_unlock(&r->lock);
    rm_reg_adapter_clear(&a);
    return st;
}

rm_status rm_registry_adapter_recheck(rm_registry *r, const char *tenant, const char *name, const char *actor,
                                      int *n_checked, int *n_held) {
    *n_checked = 0, *n_held = 0;
    rm_reg_adapter *rows = NULL;
    int n = 0;
    int64_t tid = -1;
    pthread_mutex_lock(&r->lock);
    rm_status st = pool_locked(r);
    if (st == RAMOLE_OK && name) st = tenant_id_locked(r, tenant, &tid);
    if (st == RAMOLE_OK) st = B(r)->adapter_list(r->b, -1, &rows, &n);
    pthread_mutex_unlock(&r->lock);
    bool found = false;
    for (int i = 0; st == RAMOLE_OK && i < n; i++) {
        rm_reg_adapter *a = &rows[i];
        if (name && (a->tenant_id != tid || strcmp(a->name, name))) continue;
        found = true;
        char *path = NULL, *js = NULL;
        rm_adapter *ad = NULL;
        bool held = false;
        pthread_mutex_lock(&r->lock);
        st = B(r)->blob_file(r->b, a->hash, &path);
        pthread_mutex_unlock(&r->lock);
        if (st == RAMOLE_OK) st = rm_adapter_load(r->base, path, &ad);
        if (st == RAMOLE_OK) st = screen(r, ad, rows, n, a->id, &js, &held);
        if (st == RAMOLE_OK) {
            rm_free(a->screening);
            a->screening = js;
            rm_reg_status from = a->status;
            if (held && a->status == RM_REG_ACTIVE) a->status = RM_REG_PENDING, (*n_held)++;
            pthread_mutex_lock(&r->lock);
            TXN(r, st, {
                st = B(r)->adapter_update(r->b, a);
                if (st == RAMOLE_OK)
                    st = audit(r, actor, "recheck", a->name, a->hash,
                               from != a->status ? "active -> pending (held by the KL probe)" : "unchanged");
            });
            if (st == RAMOLE_OK) st = pool_sync(r, a);
            pthread_mutex_unlock(&r->lock);
            (*n_checked)++;
        }
        if (st != RAMOLE_OK) rm_err_prefix(st, "recheck of '%s'", a->name);
        rm_adapter_free(ad);
        rm_free(path);
    }
    if (st == RAMOLE_OK && name && !found) st = rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter named '%s'", name);
    rm_reg_adapters_free(rows, n);
    return st;
}

rm_status rm_registry_adapter_file(rm_registry *r, const char *tenant, const char *name, char **path,
                                   char hash[65]) {
    *path = NULL;
    rm_reg_adapter *rows = NULL, *hit = NULL;
    int n = 0, matches = 0;
    int64_t tid;
    pthread_mutex_lock(&r->lock);
    rm_status st = tenant_id_locked(r, tenant, &tid);
    if (st == RAMOLE_OK) st = B(r)->adapter_list(r->b, -1, &rows, &n);
    for (int i = 0; st == RAMOLE_OK && i < n; i++) { /* the tenant's own first, else one public adapter */
        if (strcmp(rows[i].name, name) || rows[i].status != RM_REG_ACTIVE) continue;
        if (rows[i].tenant_id == tid) { hit = &rows[i], matches = 1; break; }
        if (rows[i].is_public) hit = &rows[i], matches++;
    }
    if (st == RAMOLE_OK && !hit) st = rm_err(RAMOLE_ERR_NOT_FOUND, "no active adapter '%s' visible to tenant '%s'", name,
                                             tenant ? tenant : RM_REG_DEFAULT_TENANT);
    else if (st == RAMOLE_OK && matches > 1)
        st = rm_err(RAMOLE_ERR_INVALID, "adapter name '%s' is public in %d tenants: ambiguous", name, matches);
    if (st == RAMOLE_OK) st = B(r)->blob_file(r->b, hit->hash, path);
    if (st == RAMOLE_OK && hash) memcpy(hash, hit->hash, 65);
    pthread_mutex_unlock(&r->lock);
    rm_reg_adapters_free(rows, n);
    return st;
}

rm_status rm_registry_adapter_file_id(rm_registry *r, const char *tenant, int64_t id, char **path, char hash[65]) {
    *path = NULL;
    rm_reg_adapter a;
    int64_t tid;
    pthread_mutex_lock(&r->lock);
    rm_status st = tenant_id_locked(r, tenant, &tid);
    if (st == RAMOLE_OK) st = B(r)->adapter_get(r->b, id, &a);
    if (st == RAMOLE_OK && (a.status != RM_REG_ACTIVE || !(a.is_public || a.tenant_id == tid)))
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "no active adapter %lld visible to tenant '%s'", (long long)id,
                    tenant ? tenant : RM_REG_DEFAULT_TENANT);
    if (st == RAMOLE_OK) st = B(r)->blob_file(r->b, a.hash, path);
    if (st == RAMOLE_OK && hash) memcpy(hash, a.hash, 65);
    pthread_mutex_unlock(&r->lock);
    rm_reg_adapter_clear(&a);
    return st;
}

/* ---- retrieval ------------------------------------------------------------------------------ */

static rm_status tenant_id(rm_registry *r, const char *tenant, int64_t *tid) {
    pthread_mutex_lock(&r->lock);
    rm_status st = tenant_id_locked(r, tenant, tid);
    if (st == RAMOLE_OK) st = pool_locked(r);
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_search(rm_registry *r, const float *q, const char *tenant, int k, rm_reg_hit *hits, int *n) {
    *n = 0;
    int64_t tid;
    RM_TRY(tenant_id(r, tenant, &tid));
    *n = rm_reg_pool_search(atomic_load(&r->pool), q, tid, k, hits); /* q has the width rm_registry_embed_dim gave */
    return RAMOLE_OK;
}

/*
 * Retrievals that arrive together are embedded together. A server's
 * connections retrieve at once when many requests arrive, and one forward
 * of a short prompt reads every weight of the base for a few tokens: one
 * forward of all the waiting prompts reads them once. Each caller queues
 * its text; whoever finds no batch running leads one: it takes the whole
 * queue, embeds it under embed_lock, hands out the rows, and steps down;
 * a caller still waiting then leads the next. A batch that fails is
 * embedded again text by text, so that an error stays with its own text.
 */
typedef struct embed_wait {
    const char *text;
    float *q;                 /* [dim] */
    int dim;
    rm_status st;
    char err[256];
    bool done;
    struct embed_wait *next;
} embed_wait;

static void embed_finish(embed_wait *w, rm_status st) {
    w->st = st;
    if (st != RAMOLE_OK) snprintf(w->err, sizeof w->err, "%s", ramole_last_error());
}

/* texts[0..n) through embedder e into *out ([n][*dim], rm_malloc'd; NULL on failure). */
static rm_status embed_texts(rm_embedder *e, const char *const *texts, int n, float **out, int *dim) {
    *dim = rm_embedder_dim(e);
    if (!(*out = rm_malloc((size_t)n * (size_t)*dim * sizeof **out))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_embedder_embed(e, texts, n, *out);
    if (st != RAMOLE_OK) {
        rm_free(*out);
        *out = NULL;
    }
    return st;
}

/* w's text alone through embedder e. */
static void embed_one(rm_embedder *e, embed_wait *w) { embed_finish(w, embed_texts(e, &w->text, 1, &w->q, &w->dim)); }

/* Embed the batch (under embed_lock). */
static void embed_batch(rm_registry *r, embed_wait *batch) {
    int n = 0;
    for (embed_wait *w = batch; w; w = w->next) n++;
    pthread_mutex_lock(&r->embed_lock);
    int dim = rm_embedder_dim(r->emb);
    const char **texts = rm_malloc((size_t)n * sizeof *texts);
    float *out = rm_malloc((size_t)n * (size_t)dim * sizeof *out);
    rm_status st = texts && out ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    int i = 0;
    for (embed_wait *w = batch; w && texts; w = w->next) texts[i++] = w->text;
    if (st == RAMOLE_OK && n > 1) st = rm_embedder_embed(r->emb, texts, n, out);
    i = 0;
    for (embed_wait *w = batch; w; w = w->next, i++) {
        if (st != RAMOLE_OK || n == 1) { /* alone: one text, or a batch that failed */
            embed_one(r->emb, w);
            continue;
        }
        w->dim = dim;
        if (!(w->q = rm_malloc((size_t)dim * sizeof *w->q))) {
            embed_finish(w, rm_err(RAMOLE_ERR_NOMEM, "out of memory"));
            continue;
        }
        memcpy(w->q, out + (size_t)i * dim, (size_t)dim * sizeof *out);
        embed_finish(w, RAMOLE_OK);
    }
    pthread_mutex_unlock(&r->embed_lock);
    rm_free(texts);
    rm_free(out);
}

/* Queue me, and lead or wait for batches until it is embedded (the
 * comment above embed_wait). */
static void embed_queued(rm_registry *r, embed_wait *me) {
    pthread_mutex_lock(&r->batch_mu);
    me->next = r->batch;
    r->batch = me;
    while (!me->done) {
        if (r->batch_leader) {
            pthread_cond_wait(&r->batch_cv, &r->batch_mu);
            continue;
        }
        r->batch_leader = true;
        embed_wait *batch = r->batch;
        r->batch = NULL;
        pthread_mutex_unlock(&r->batch_mu);
        embed_batch(r, batch);
        pthread_mutex_lock(&r->batch_mu);
        for (embed_wait *w = batch, *next; w; w = next) {
            next = w->next; /* the waiter may leave as soon as done is set */
            w->done = true;
        }
        r->batch_leader = false;
        pthread_cond_broadcast(&r->batch_cv);
    }
    pthread_mutex_unlock(&r->batch_mu);
}

rm_status rm_registry_embed(rm_registry *r, const char *const *texts, int n, float **out, int *dim) {
    *out = NULL, *dim = 0;
    if (n < 1) return rm_err(RAMOLE_ERR_INVALID, "embed: %d texts", n);
    pthread_mutex_lock(&r->lock); /* the embedder, made on first use */
    rm_status made = embedder_locked(r);
    pthread_mutex_unlock(&r->lock);
    RM_TRY(made);
    if (r->run) { /* the runner batches: embed at once, outside the locks */
        pthread_mutex_lock(&r->embed_lock);
        rm_embedder *e = r->emb; /* one replaced meanwhile stays alive, retired */
        pthread_mutex_unlock(&r->embed_lock);
        return embed_texts(e, texts, n, out, dim);
    }
    if (n > 1) { /* already a batch */
        pthread_mutex_lock(&r->embed_lock);
        rm_status st = embed_texts(r->emb, texts, n, out, dim);
        pthread_mutex_unlock(&r->embed_lock);
        return st;
    }
    embed_wait me = {.text = texts[0]}; /* one text: batched with other callers' */
    embed_queued(r, &me);
    if (me.st != RAMOLE_OK) {
        rm_free(me.q);
        return rm_err(me.st, "%s", me.err);
    }
    *out = me.q;
    *dim = me.dim;
    return RAMOLE_OK;
}

rm_status rm_registry_retrieve(rm_registry *r, const char *text, const char *tenant, int k, rm_reg_hit *hits,
                               int *n) {
    *n = 0;
    int64_t tid;
    RM_TRY(tenant_id(r, tenant, &tid));
    float *q;
    int dim;
    RM_TRY(rm_registry_embed(r, &text, 1, &q, &dim));
    rm_status st = RAMOLE_OK;
    rm_reg_pool *p = atomic_load(&r->pool);
    if (rm_reg_pool_dim(p) != dim) /* a new projection arrived meanwhile */
        st = rm_err(RAMOLE_ERR_MISMATCH, "the registry's embedder changed during the request; retry it");
    else
        *n = rm_reg_pool_search(p, q, tid, k, hits);
    rm_free(q);
    return st;
}

/* ---- governance ----------------------------------------------------------------------------- */

rm_status rm_registry_tenant_add(rm_registry *r, const char *name, const char *actor) {
    RM_TRY(check_name("tenant", name));
    rm_status st;
    pthread_mutex_lock(&r->lock);
    TXN(r, st, {
        st = B(r)->tenant_add(r->b, name, now_unix(), NULL);
        if (st == RAMOLE_OK) st = audit(r, actor, "tenant add", name, "", "");
    });
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_tenant_list(rm_registry *r, rm_reg_tenant **out, int *n) {
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->tenant_list(r->b, out, n);
    pthread_mutex_unlock(&r->lock);
    return st;
}

static void hex_bytes(const unsigned char *b, int n, char *out) {
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

rm_status rm_registry_key_create(rm_registry *r, const char *tenant, rm_reg_role role, const char *actor,
                                 char key[69], int64_t *id) {
    unsigned char raw[32];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t g = getrandom(raw + got, sizeof raw - got, 0);
        if (g < 0 && errno == EINTR) continue;
        if (g < 0) return rm_err(RAMOLE_ERR_IO, "key create: getrandom failed: %s", strerror(errno));
        got += (size_t)g;
    }
    memcpy(key, RM_REG_KEY_PREFIX, 4);
    hex_bytes(raw, 32, key + 4);
    char hash[65];
    rm_sha256_hex(key, strlen(key), hash);
    int64_t tid;
    rm_status st;
    pthread_mutex_lock(&r->lock);
    if ((st = tenant_id_locked(r, tenant, &tid)) == RAMOLE_OK) {
        TXN(r, st, {
            st = B(r)->key_insert(r->b, hash, tid, role, now_unix(), id);
            char detail[96];
            snprintf(detail, sizeof detail, "tenant=%s role=%s id=%lld", tenant ? tenant : RM_REG_DEFAULT_TENANT,
                     rm_reg_role_name(role), (long long)*id);
            if (st == RAMOLE_OK) st = audit(r, actor, "key create", tenant ? tenant : RM_REG_DEFAULT_TENANT, hash, detail);
        });
    }
    pthread_mutex_unlock(&r->lock);
    if (st != RAMOLE_OK) memset(key, 0, 69);
    return st;
}

rm_status rm_registry_key_revoke(rm_registry *r, const char *key_or_id, const char *actor) {
    char hash[65] = "";
    int64_t id = -1, revoked = -1;
    char *end = NULL;
    long long v = strtoll(key_or_id, &end, 10);
    if (*key_or_id && !*end && v >= 0) id = v;
    else rm_sha256_hex(key_or_id, strlen(key_or_id), hash);
    rm_status st;
    pthread_mutex_lock(&r->lock);
    TXN(r, st, {
        st = B(r)->key_revoke(r->b, id, hash, now_unix(), &revoked);
        char detail[48];
        snprintf(detail, sizeof detail, "id=%lld", (long long)revoked);
        if (st == RAMOLE_OK) st = audit(r, actor, "key revoke", "", hash, detail);
    });
    pthread_mutex_unlock(&r->lock);
    return st == RAMOLE_OK ? st : rm_err_prefix(st, "key revoke");
}

rm_status rm_registry_key_verify(rm_registry *r, const char *key, char **tenant, rm_reg_role *role) {
    char hash[65];
    rm_sha256_hex(key, strlen(key), hash);
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->key_find(r->b, hash, tenant, role);
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_key_count(rm_registry *r, int64_t *n) {
    *n = 0;
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->key_count(r->b, n);
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_feedback_add(rm_registry *r, const rm_reg_feedback *f) {
    if (f->rating != 1 && f->rating != -1) return rm_err(RAMOLE_ERR_INVALID, "rating %d: must be 1 or -1", f->rating);
    if (!f->response_id || !*f->response_id) return rm_err(RAMOLE_ERR_INVALID, "feedback needs a response id");
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->feedback_add(r->b, f, rm_time_now());
    pthread_mutex_unlock(&r->lock);
    return st;
}

void rm_reg_ratings_free(rm_reg_rating *v, int n) {
    for (int i = 0; v && i < n; i++) rm_free(v[i].adapter);
    rm_free(v);
}

rm_status rm_registry_ratings(rm_registry *r, const char *hash, rm_reg_rating **out, int *n) {
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->ratings(r->b, hash, out, n);
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_audit_list(rm_registry *r, double since, rm_reg_audit **out, int *n) {
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->audit_list(r->b, since, out, n);
    pthread_mutex_unlock(&r->lock);
    return st;
}

/* ---- responses ------------------------------------------------------------------------------ */

rm_status rm_registry_response_add(rm_registry *r, const rm_reg_response *v, int n) {
    for (int k = 0; k < n; k++) {
        const rm_reg_response *resp = &v[k];
        size_t len = strnlen(resp->id, sizeof resp->id);
        if (!len || len == sizeof resp->id)
            return rm_err(RAMOLE_ERR_INVALID, "a response id must have 1 to %d bytes", RM_REG_RESPONSE_ID_MAX);
        if (resp->n < 0 || resp->n > RM_REG_RESPONSE_ADAPTERS)
            return rm_err(RAMOLE_ERR_INVALID, "response %s: %d adapters (at most %d)", resp->id, resp->n,
                          RM_REG_RESPONSE_ADAPTERS);
        for (int i = 0; i < resp->n; i++)
            if (!resp->names[i][0])
                return rm_err(RAMOLE_ERR_INVALID, "response %s: adapter %d has no name", resp->id, i);
    }
    if (n <= 0) return RAMOLE_OK;
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->response_add(r->b, v, n, now_unix());
    pthread_mutex_unlock(&r->lock);
    return st;
}

rm_status rm_registry_response_rate(rm_registry *r, const char *id, const char *tenant, int rating,
                                    const char *comment, double max_age, int *n_adapters) {
    if (n_adapters) *n_adapters = 0;
    if (rating != 1 && rating != -1) return rm_err(RAMOLE_ERR_INVALID, "rating %d: must be 1 or -1", rating);
    if (!id || !*id) return rm_err(RAMOLE_ERR_INVALID, "feedback needs a response id");
    const char *who = tenant ? tenant : RM_REG_DEFAULT_TENANT;
    double now = now_unix();
    int n = 0, n_named = 0;
    pthread_mutex_lock(&r->lock);
    rm_status st =
        B(r)->response_rate(r->b, id, who, rating, comment ? comment : "", now - max_age, now, &n, &n_named);
    pthread_mutex_unlock(&r->lock);
    if (st == RAMOLE_OK && !n)
        return rm_err(RAMOLE_ERR_NOT_FOUND, "no response %s of tenant '%s' in the last %.0f s", id, who, max_age);
    if (st == RAMOLE_OK && n_adapters) *n_adapters = n_named;
    return st;
}

rm_status rm_registry_response_expire(rm_registry *r, double max_age, int64_t *n_removed) {
    int64_t n = 0;
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->response_expire(r->b, now_unix() - max_age, &n);
    pthread_mutex_unlock(&r->lock);
    if (n_removed) *n_removed = n;
    return st;
}

/* ---- check --------------------------------------------------------------------------------- */

static void problem(rm_reg_check_report *rep, const char *fmt, const char *a, const char *b) {
    rep->n_bad++;
    if (!rep->first_problem) rep->first_problem = rm_asprintf(fmt, a, b);
}

rm_status rm_registry_check(rm_registry *r, bool collect, rm_reg_check_report *rep) {
    memset(rep, 0, sizeof *rep);
    rm_reg_adapter *rows = NULL;
    char **hashes = NULL, *meta[2] = {NULL, NULL};
    double *mtimes = NULL;
    int n = 0, nh = 0;
    pthread_mutex_lock(&r->lock);
    rm_status st = B(r)->adapter_list(r->b, -1, &rows, &n);
    if (st == RAMOLE_OK) st = B(r)->meta_get(r->b, "projection", &meta[0]);
    if (st == RAMOLE_OK) st = B(r)->meta_get(r->b, "router", &meta[1]);
    /* list blobs after reading the rows: a blob written meanwhile is young and never collected */
    if (st == RAMOLE_OK) st = B(r)->blob_list(r->b, &hashes, &mtimes, &nh);
    for (int i = 0; st == RAMOLE_OK && i < n; i++) {
        rep->n_rows++;
        char *path = NULL, got[65];
        int64_t size = 0;
        rm_status fs = B(r)->blob_file(r->b, rows[i].hash, &path);
        if (fs == RAMOLE_ERR_FORMAT) /* a store that verifies on fetch */
            problem(rep, "adapter '%s': blob %s does not match its hash", rows[i].name, rows[i].hash);
        else if (fs != RAMOLE_OK)
            problem(rep, "adapter '%s': blob %s is missing", rows[i].name, rows[i].hash);
        else if (rm_sha256_file(path, got, &size) != RAMOLE_OK || strcmp(got, rows[i].hash) || size != rows[i].size)
            problem(rep, "adapter '%s': blob %s does not match its hash or size", rows[i].name, rows[i].hash);
        rm_free(path);
    }
    for (int k = 0; st == RAMOLE_OK && k < 2; k++) {
        if (!*meta[k]) continue;
        char *path = NULL, got[65];
        if (B(r)->blob_file(r->b, meta[k], &path) != RAMOLE_OK || rm_sha256_file(path, got, NULL) != RAMOLE_OK ||
            strcmp(got, meta[k]))
            problem(rep, "the %s artifact %s is missing or damaged", k ? "router" : "projection", meta[k]);
        rm_free(path);
    }
    double t = now_unix();
    for (int j = 0; st == RAMOLE_OK && j < nh; j++) {
        bool live = !strcmp(hashes[j], meta[0]) || !strcmp(hashes[j], meta[1]);
        for (int i = 0; !live && i < n; i++) live = !strcmp(hashes[j], rows[i].hash);
        if (live) continue;
        rep->n_orphans++;
        if (collect && t - mtimes[j] > 60) B(r)->blob_delete(r->b, hashes[j]);
    }
    pthread_mutex_unlock(&r->lock);
    rm_reg_adapters_free(rows, n);
    for (int j = 0; j < nh; j++) rm_free(hashes[j]);
    rm_free(hashes), rm_free(mtimes), rm_free(meta[0]), rm_free(meta[1]);
    return st;
}
