/*
 * registry.h — the adapter pool: uploads usable by the very next request.
 *
 * A registry belongs to one base model. It holds, behind one backend
 * interface (backend.h; SQLite, or PostgreSQL for several servers):
 *   - meta: the schema version, the base's fingerprint and path, the
 *     embedder's layer, the retriever projection and the router (stored as
 *     content-addressed artifacts, so every server sharing the registry uses
 *     the same ones), the approval rule and the screening threshold;
 *   - tenants, API keys (stored as SHA-256 of the key), the audit log;
 *   - feedback per adapter, and the answered responses it refers to
 *     (which adapters, which tenant), so any server takes a rating;
 *   - adapters: the fields of rm_reg_adapter below, the file itself as a
 *     blob named by the SHA-256 of its bytes (the adapter re-encoded as a
 *     GGUF LoRA file, so PEFT and GGUF uploads of one adapter are stored
 *     once), its sample inputs and its embedding with the embedder's
 *     identity (base fingerprint, layer, projection hash).
 *
 * Uploading (rm_registry_adapter_add): the name, tenant and samples are
 * checked, the adapter is loaded against the base (shapes and targets must
 * fit), screened (finite values, B·A norms against the pool's median, the
 * KL probe: screen.c), embedded (rm_embed_mean of its samples' embeddings),
 * its blob is written atomically (temporary file, fsync, rename, fsync of
 * the folder) and only then is its row committed, with an audit entry, in
 * one transaction. Any failure leaves the registry as it was.
 *
 * Retrieval: an in-memory pool (pool.h) of the active adapters whose
 * embedding matches the current embedder, loaded on first use and changed
 * incrementally by this handle's adds, removals and status changes. A
 * search is exact inner product, filtered inside the search to what the
 * caller's tenant may see (its own adapters and every public one).
 *
 * Threads: one rm_registry may be used by several threads only for
 * rm_registry_search (the pool is lock-free for readers); every other call
 * takes the handle's lock. Several processes may share one SQLite registry.
 */
#ifndef RM_REGISTRY_H
#define RM_REGISTRY_H

#include "core/core.h"
#include "model/model.h"
#include "retrieval/embed.h"

#define RM_REG_SCHEMA_VERSION   4
#define RM_REG_NAME_MAX         128     /* bytes of an adapter, tenant name */
#define RM_REG_SAMPLES_MAX      1000    /* sample inputs of one adapter */
#define RM_REG_SAMPLE_MAX_BYTES 16384   /* one sample input */
#define RM_REG_DEFAULT_TENANT   "default"
#define RM_REG_DEFAULT_KL       1.0     /* KL probe threshold (nats) */
#define RM_REG_NORM_OUTLIER     10.0    /* x the pool's median */
#define RM_REG_KEY_PREFIX       "rmk_"

typedef enum {
    RM_REG_PENDING = 0, RM_REG_ACTIVE, RM_REG_REJECTED, RM_REG_DISABLED, RM_REG_STATUS_COUNT
} rm_reg_status;
const char *rm_reg_status_name(rm_reg_status s); /* "pending", "active", ... */
bool        rm_reg_status_from_name(const char *s, rm_reg_status *out);

typedef enum { RM_REG_ROLE_GENERATE = 0, RM_REG_ROLE_UPLOAD, RM_REG_ROLE_ADMIN, RM_REG_ROLE_COUNT } rm_reg_role;
const char *rm_reg_role_name(rm_reg_role r);
bool        rm_reg_role_from_name(const char *s, rm_reg_role *out);

/* One adapter row. Strings and arrays are rm_malloc'd; rm_reg_adapter_clear frees them. */
typedef struct {
    int64_t id;
    char *name, *description, *tenant, *creator;
    int64_t tenant_id;
    bool is_public;
    rm_reg_status status;
    int rank;
    float alpha;
    unsigned targets;          /* bit mask of rm_target */
    int64_t size;              /* bytes of the blob */
    char hash[65];             /* SHA-256 of the blob, hex */
    double created;            /* unix seconds */
    char **samples;
    int n_samples;
    float *embedding;          /* [dim], unit; NULL when not embedded */
    int dim;
    uint64_t emb_fingerprint;  /* the embedder's identity */
    int emb_layer;
    char emb_projection[65];   /* SHA-256 of the projection blob, "" for none */
    char *screening;           /* JSON object of the screening results */
} rm_reg_adapter;
void rm_reg_adapter_clear(rm_reg_adapter *a);
void rm_reg_adapters_free(rm_reg_adapter *a, int n);

typedef struct {
    int64_t id;
    char *name;
    double created;
} rm_reg_tenant;
void rm_reg_tenants_free(rm_reg_tenant *t, int n);

typedef struct {
    int64_t id;
    double time;
    char *actor, *action, *target, *hash, *detail;
} rm_reg_audit;
void rm_reg_audits_free(rm_reg_audit *a, int n);

typedef struct {
    int64_t id;
    float score;                      /* inner product of unit vectors */
    char name[RM_REG_NAME_MAX + 1];
} rm_reg_hit;

typedef struct rm_registry rm_registry;

/* ---- opening ---------------------------------------------------------------- */

/* The URL to use when none is given: $RAMOLE_REGISTRY, else
 * sqlite:$XDG_DATA_HOME/ramole/registry.db (~/.local/share/ramole/...). */
rm_status rm_registry_default_url(char **out);

typedef struct {
    const char *model;          /* the base (path recorded; required) */
    const char *projection;     /* retriever projection file, or NULL */
    const char *router;         /* router adapter (PEFT/GGUF), or NULL */
    int layer;                  /* embedder layer without a projection (RM_HIDDEN_FINAL) */
    bool require_approval;
    const char *probes;         /* JSONL with "input" per line, or NULL: the built-in set */
    double kl_threshold;        /* <= 0: RM_REG_DEFAULT_KL */
    const char *actor;          /* who, for the audit log */
} rm_registry_init_opts;

/*
 * Create a registry at `url` (sqlite:PATH) for the base o->model, with the
 * default tenant. Refuses a URL that already holds a registry. The base is
 * opened to record its fingerprint; `base` may be given (borrowed) instead.
 */
rm_status rm_registry_create(const char *url, const rm_registry_init_opts *o, rm_registry **out);
/*
 * Open an existing registry; migrates an older schema forward, refuses a
 * newer one (ERR_UNSUPPORTED) and a URL without a registry (ERR_NOT_FOUND).
 * postgresql://... (a libpq URI) opens the PostgreSQL backend.
 */
rm_status rm_registry_open(const char *url, rm_registry **out);
void      rm_registry_free(rm_registry *r); /* NULL is a no-op; frees an owned base */

/*
 * Use `base` (borrowed; alive while the registry is) instead of opening the
 * recorded path. ERR_MISMATCH when its fingerprint is not the registry's.
 * Without it the registry opens the recorded base when first needed.
 */
rm_status rm_registry_set_base(rm_registry *r, rm_model *base);
/* Run the embedder on `pool` (borrowed; alive while the registry is), e.g.
 * an engine's (rm_engine_pool), so one process has one pool. Before the
 * first embedding only (ERR_INVALID after). */
rm_status rm_registry_set_pool(rm_registry *r, rm_pool *pool);
/* Run the embedder's forwards through `fn` (rm_embed_opts.run; user
 * borrowed, alive while the registry is): a server's engine, which mixes
 * them into its steps. Retrievals and uploads then embed at once, several
 * threads together. max_tokens: the longest token list the runner takes
 * (an engine's context); texts are cut to it when it is below the
 * embedder's own limit. Before the first embedding only (ERR_INVALID
 * after). */
rm_status rm_registry_set_runner(rm_registry *r, rm_embed_run_fn fn, void *user, int max_tokens);
/* The base (opening it if needed); ERR_MISMATCH when the file at the
 * recorded path is now another base. */
rm_status rm_registry_base(rm_registry *r, rm_model **out);
/* The embedder's dimension (opens the base and projection). */
rm_status rm_registry_embed_dim(rm_registry *r, int *dim);
const char *rm_registry_url(const rm_registry *r);

/* Progress of long operations: "re-embedding 3/10 ..." */
typedef void (*rm_reg_progress_fn)(const char *msg, void *user);

/* Replace the projection (NULL: none) and re-embed every adapter, in one
 * transaction; the pool is rebuilt on its next use. No search may run on
 * this handle meanwhile (the pool's width may change); other processes
 * see the new embeddings when they reopen or refresh. */
rm_status rm_registry_set_projection(rm_registry *r, const char *path, const char *actor, rm_reg_progress_fn fn,
                                     void *user);
rm_status rm_registry_set_router(rm_registry *r, const char *path, const char *actor);
rm_status rm_registry_set_kl_threshold(rm_registry *r, double t, const char *actor);
rm_status rm_registry_set_require_approval(rm_registry *r, bool on, const char *actor);
/* A meta value ("base_path", "base_fingerprint", "kl_threshold", ...) into *out (rm_malloc'd). */
rm_status rm_registry_meta(rm_registry *r, const char *key, char **out);
/* File of the router artifact (NULL in *path when none). */
rm_status rm_registry_router_file(rm_registry *r, char **path);

/* ---- adapters ------------------------------------------------------------------- */

typedef struct {
    const char *path;            /* PEFT folder or GGUF LoRA file */
    const char *name;
    const char *description;     /* NULL: "" */
    const char *tenant;          /* NULL: RM_REG_DEFAULT_TENANT */
    bool is_private;
    const char *const *samples;  /* sample inputs */
    int n_samples;
    const char *actor;
} rm_reg_add_opts;

/*
 * Add an adapter (see the top of this file). *id: the new row's id.
 * Errors, each leaving the registry unchanged: ERR_INVALID (name with a path
 * separator or control character, empty or oversized samples), ERR_NOT_FOUND
 * (unknown tenant, missing file), ERR_MISMATCH / ERR_FORMAT (does not fit
 * the base, not an adapter file), ERR_INVALID "already exists" (duplicate
 * name in the tenant).
 */
rm_status rm_registry_adapter_add(rm_registry *r, const rm_reg_add_opts *o, int64_t *id);
/* The adapter NAME of `tenant` (NULL: default tenant); ERR_NOT_FOUND. */
rm_status rm_registry_adapter_get(rm_registry *r, const char *tenant, const char *name, rm_reg_adapter *out);
/* All adapters (tenant NULL) or a tenant's, by id. */
rm_status rm_registry_adapter_list(rm_registry *r, const char *tenant, rm_reg_adapter **out, int *n);
/* Remove the row (its blob becomes an orphan unless shared). */
rm_status rm_registry_adapter_remove(rm_registry *r, const char *tenant, const char *name, const char *actor);
/* Move to `to`: enable (disabled -> active), disable, approve (pending -> active), reject (pending -> rejected). */
typedef enum { RM_REG_ENABLE = 0, RM_REG_DISABLE, RM_REG_APPROVE, RM_REG_REJECT } rm_reg_action;
rm_status rm_registry_adapter_act(rm_registry *r, const char *tenant, const char *name, rm_reg_action act,
                                  const char *actor);
/* Screen again (name NULL: every adapter); an active adapter whose KL probe
 * is now above the threshold goes back to pending. *n_held: how many. */
rm_status rm_registry_adapter_recheck(rm_registry *r, const char *tenant, const char *name, const char *actor,
                                      int *n_checked, int *n_held);
/*
 * The adapter source a server uses: the local file (a GGUF LoRA file) of
 * adapter `name` as `tenant` may use it (its own or public, active). *path
 * is rm_malloc'd; hash (may be NULL) gets the content hash.
 */
rm_status rm_registry_adapter_file(rm_registry *r, const char *tenant, const char *name, char **path,
                                   char hash[65]);
/* The same by id (a retrieval hit's): ERR_NOT_FOUND unless the adapter is
 * active and `tenant` may see it. */
rm_status rm_registry_adapter_file_id(rm_registry *r, const char *tenant, int64_t id, char **path, char hash[65]);

/* ---- retrieval ------------------------------------------------------------------- */

/* Top-k for a query vector q[dim] (unit) as `tenant` (NULL: default); *n hits, best first. */
rm_status rm_registry_search(rm_registry *r, const float *q, const char *tenant, int k, rm_reg_hit *hits, int *n);
/* Embed texts[0..n) with the registry's embedder, as retrieval does, in
 * one batch: *out (rm_malloc'd) holds n unit vectors of *dim floats. */
rm_status rm_registry_embed(rm_registry *r, const char *const *texts, int n, float **out, int *dim);
/* Embed `text` with the registry's embedder, then rm_registry_search. */
rm_status rm_registry_retrieve(rm_registry *r, const char *text, const char *tenant, int k, rm_reg_hit *hits,
                               int *n);
/*
 * Bring the pool up to date with changes other processes committed (adds,
 * removals, status changes), rebuilt in one swap; searches running
 * meanwhile see the old or the new pool. *changed (may be NULL): whether
 * anything changed. A server calls this on a timer (SQLite) or on a
 * notification (PostgreSQL, planned).
 */
rm_status rm_registry_refresh(rm_registry *r, bool *changed);
/* Adapters left out of the pool because their embedding is from another embedder. */
int       rm_registry_n_stale(const rm_registry *r);

/* ---- governance ---------------------------------------------------------------- */

rm_status rm_registry_tenant_add(rm_registry *r, const char *name, const char *actor);
rm_status rm_registry_tenant_list(rm_registry *r, rm_reg_tenant **out, int *n);
/* A new key, RM_REG_KEY_PREFIX + 64 hex digits (256 random bits), into
 * key[69]; only its SHA-256 is stored. *id: the key's id (for revoke). */
rm_status rm_registry_key_create(rm_registry *r, const char *tenant, rm_reg_role role, const char *actor,
                                 char key[69], int64_t *id);
/* Revoke by id (decimal) or by the key itself. */
rm_status rm_registry_key_revoke(rm_registry *r, const char *key_or_id, const char *actor);
/* The tenant and role of a live key; ERR_NOT_FOUND for unknown or revoked keys. */
rm_status rm_registry_key_verify(rm_registry *r, const char *key, char **tenant, rm_reg_role *role);
/* Live (not revoked) keys: a server without any runs open. */
rm_status rm_registry_key_count(rm_registry *r, int64_t *n);
rm_status rm_registry_audit_list(rm_registry *r, double since, rm_reg_audit **out, int *n);

/* ---- feedback -------------------------------------------------------------------- */

/* A rating of one response, for one adapter it used ("" hash and name: the
 * base alone). The server writes one per adapter of the response. */
typedef struct {
    const char *response_id;
    const char *tenant;        /* who rated (NULL: default) */
    const char *adapter;       /* name, "" for none */
    const char *hash;          /* the adapter's content hash, "" for none */
    int rating;                /* 1 or -1 */
    const char *comment;       /* NULL: "" */
} rm_reg_feedback;
rm_status rm_registry_feedback_add(rm_registry *r, const rm_reg_feedback *f);

/* Ratings per adapter (name and hash), in order of name. */
typedef struct {
    char *adapter;
    char hash[65];
    int64_t up, down;
} rm_reg_rating;
void      rm_reg_ratings_free(rm_reg_rating *v, int n);
/* hash NULL: every adapter; else that adapter's only. */
rm_status rm_registry_ratings(rm_registry *r, const char *hash, rm_reg_rating **out, int *n);

/* ---- responses: what each answer used, so that any server takes its rating ---------- */

#define RM_REG_RESPONSE_ID_MAX   63             /* bytes of a response id */
#define RM_REG_RESPONSE_ADAPTERS 16             /* adapters of one response (the engine's RM_LORA_MAX_K) */
#define RM_REG_RESPONSE_TTL      (7 * 86400)  /* seconds a response can be rated, by default */

/* One answered response: its id, the tenant it answered and the adapters it
 * used (n = 0: the base alone). Plain arrays, nothing to free. */
typedef struct {
    char id[RM_REG_RESPONSE_ID_MAX + 1];
    char tenant[RM_REG_NAME_MAX + 1];         /* "": the default tenant */
    int n;
    char names[RM_REG_RESPONSE_ADAPTERS][RM_REG_NAME_MAX + 1];
    char hashes[RM_REG_RESPONSE_ADAPTERS][65];
} rm_reg_response;

/*
 * Record n responses (stamped now) in one transaction, so that a rating of
 * any of them reaches every server on this registry (a server batches its
 * answers: one commit, one fsync, for many). Without a change notification:
 * recording answers never makes other servers refresh their pools.
 * ERR_INVALID, recording none: an empty or oversized id, n outside
 * [0, RM_REG_RESPONSE_ADAPTERS] or an unnamed adapter in a response, an id
 * already recorded.
 */
rm_status rm_registry_response_add(rm_registry *r, const rm_reg_response *v, int n);
/*
 * Rate the response `id` as `tenant` (NULL: default): one feedback row per
 * adapter it used (one with "" name and hash for the base alone), written in
 * one statement. ERR_NOT_FOUND when no response `id` of that tenant was
 * recorded within max_age seconds (another tenant's response is not found
 * either); ERR_INVALID for a rating other than 1 or -1. *n_adapters (may be
 * NULL): the adapters rated, 0 for the base alone.
 */
rm_status rm_registry_response_rate(rm_registry *r, const char *id, const char *tenant, int rating,
                                    const char *comment, double max_age, int *n_adapters);
/* Forget responses recorded more than max_age seconds ago (their ratings
 * stay). *n_removed (may be NULL): rows removed. */
rm_status rm_registry_response_expire(rm_registry *r, double max_age, int64_t *n_removed);

/* ---- maintenance ---------------------------------------------------------------- */

typedef struct {
    int n_rows, n_bad;     /* adapters checked, rows whose blob is missing or differs */
    int n_orphans;         /* blobs no row names (collected when asked) */
    char *first_problem;   /* rm_malloc'd, NULL when clean */
} rm_reg_check_report;
/* Verify every row against its blob; collect orphans (older than a minute)
 * when `collect`. ERR_OK even when problems are found: see the report. */
rm_status rm_registry_check(rm_registry *r, bool collect, rm_reg_check_report *rep);

/* SHA-256 of bytes, as 64 hex digits and a NUL. */
void rm_sha256_hex(const void *data, size_t n, char out[65]);
/* Read the "input" strings of the first max lines of a JSONL file (other
 * fields ignored). Errors name the line. */
rm_status rm_reg_samples_load(const char *path, int max, char ***out, int *n);
void      rm_reg_samples_free(char **s, int n);

#endif /* RM_REGISTRY_H */
