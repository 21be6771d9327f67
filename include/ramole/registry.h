/*
 * ramole/registry.h — the adapter pool of one base model: adapters with
 * their samples and embeddings, tenants, API keys, approval, screening and
 * the audit log, in a SQLite file or a PostgreSQL database that several
 * servers share. An upload is usable by the very next request. Included by
 * ramole.h.
 *
 * URLs: sqlite:PATH or postgresql://... (a libpq URI). Every call that
 * changes something takes an `actor`, the name the audit log records.
 * Strings and arrays a call hands out are the caller's: free them with the
 * matching _free / _clear call, or ramole_free for a plain string.
 */
#ifndef RAMOLE_REGISTRY_H
#define RAMOLE_REGISTRY_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RAMOLE_REGISTRY_NAME_MAX    128   /* bytes of an adapter or tenant name */
#define RAMOLE_REGISTRY_SAMPLES_MAX 1000  /* sample inputs of one adapter */
#define RAMOLE_LAYER_FINAL (-1)           /* the embedder's layer: the last block, after the final norm */

/* One registry. One thread at a time except for retrieval, which any
 * number may run at once. Valid until ramole_registry_free. */
typedef struct ramole_registry ramole_registry;

/* The URL to use when none is given: $RAMOLE_REGISTRY, else
 * sqlite:$XDG_DATA_HOME/ramole/registry.db. *out: ramole_free. */
ramole_status ramole_registry_default_url(char **out);

typedef struct {
    const char *model;        /* the base (its path is recorded; required) */
    const char *projection;   /* the retriever's projection file, or NULL */
    const char *router;       /* a router adapter (PEFT/GGUF), or NULL */
    int layer;                /* embedder layer without a projection (RAMOLE_LAYER_FINAL) */
    int require_approval;     /* new uploads wait as pending for an admin */
    const char *probes;       /* JSONL of the KL probe's inputs, or NULL: the built-in set */
    double kl_threshold;      /* <= 0: the default (1 nat) */
    const char *actor;
} ramole_registry_init_params;

/* Create a registry at url for the base p->model, with the default
 * tenant. Refuses a URL that already holds a registry. */
ramole_status ramole_registry_create(const char *url, const ramole_registry_init_params *p, ramole_registry **out);
/* Open an existing registry (url NULL: ramole_registry_default_url); an
 * older schema migrates forward, a newer one is RAMOLE_ERR_UNSUPPORTED, a
 * URL without a registry RAMOLE_ERR_NOT_FOUND. */
ramole_status ramole_registry_open(const char *url, ramole_registry **out);
void ramole_registry_free(ramole_registry *r);
const char *ramole_registry_url(const ramole_registry *r);

/* Use m (borrowed: it must outlive the registry) as the base instead of
 * opening the recorded path; RAMOLE_ERR_MISMATCH when it is another base. */
ramole_status ramole_registry_set_base(ramole_registry *r, const ramole_model *m);
/* The base (opened on first use; owned by the registry). */
ramole_status ramole_registry_base(ramole_registry *r, const ramole_model **out);

/* ---- settings ---------------------------------------------------------------- */

typedef void (*ramole_message_fn)(const char *msg, void *user);

/* Replace the projection (NULL: none) and re-embed every adapter in one
 * transaction; fn hears the progress ("re-embedding 3/10 ..."). */
ramole_status ramole_registry_set_projection(ramole_registry *r, const char *path, const char *actor,
                                             ramole_message_fn fn, void *user);
ramole_status ramole_registry_set_router(ramole_registry *r, const char *path, const char *actor);
ramole_status ramole_registry_set_kl_threshold(ramole_registry *r, double t, const char *actor);
ramole_status ramole_registry_set_require_approval(ramole_registry *r, int on, const char *actor);
/* A setting ("base_path", "base_fingerprint", "layer", "projection",
 * "router", "require_approval", "kl_threshold") as text; *out: ramole_free. */
ramole_status ramole_registry_meta(ramole_registry *r, const char *key, char **out);
/* The router's file; NULL in *path when the registry has none. */
ramole_status ramole_registry_router_file(ramole_registry *r, char **path);

typedef struct {
    int n_rows, n_bad;        /* adapters checked, rows whose blob is missing or differs */
    int n_orphans;            /* blobs no row names */
    char *first_problem;      /* NULL when clean; ramole_free */
} ramole_registry_check_report;
/* Verify every row against its blob; remove orphan blobs older than a
 * minute when collect. RAMOLE_OK even when problems are found. */
ramole_status ramole_registry_check(ramole_registry *r, int collect, ramole_registry_check_report *out);

/* ---- adapters ---------------------------------------------------------------- */

typedef enum {
    RAMOLE_ADAPTER_PENDING = 0, RAMOLE_ADAPTER_ACTIVE, RAMOLE_ADAPTER_REJECTED, RAMOLE_ADAPTER_DISABLED
} ramole_adapter_status;
/* "pending", "active", "rejected", "disabled" */
const char *ramole_adapter_status_name(ramole_adapter_status s);

/* One adapter as the registry holds it. */
typedef struct {
    int64_t id;
    char *name, *description, *tenant, *creator;
    int is_public;
    ramole_adapter_status status;
    int rank;
    float alpha;
    unsigned targets;         /* bits (1u << ramole_target) */
    int64_t size;             /* bytes of its file */
    char hash[65];            /* SHA-256 of its file, hex */
    double created;           /* unix seconds */
    char **samples;
    int n_samples;
    float *embedding;         /* [dim], unit; NULL when not embedded */
    int dim;
    uint64_t emb_fingerprint; /* the embedder's identity: base fingerprint, */
    int emb_layer;            /* layer, */
    char emb_projection[65];  /* projection hash ("" for none) */
    char *screening;          /* the screening results, a JSON object */
} ramole_registry_adapter;
void ramole_registry_adapter_clear(ramole_registry_adapter *a);
void ramole_registry_adapters_free(ramole_registry_adapter *a, int n);

/* The "input" strings of the first max lines of a JSONL file; errors name
 * the line. Free with ramole_registry_samples_free. */
ramole_status ramole_registry_samples_load(const char *path, int max, char ***out, int *n);
void ramole_registry_samples_free(char **samples, int n);

typedef struct {
    const char *path;         /* PEFT folder or GGUF LoRA file */
    const char *name;
    const char *description;  /* NULL: "" */
    const char *tenant;       /* NULL: the default tenant */
    int is_private;
    const char *const *samples;
    int n_samples;
    const char *actor;
} ramole_registry_add_params;

/*
 * Upload: checked (name, tenant, samples), loaded against the base,
 * screened, embedded, stored; *id is the new row's. Any failure leaves the
 * registry as it was: RAMOLE_ERR_INVALID (a bad name or sample, a name
 * that exists), RAMOLE_ERR_NOT_FOUND (tenant, file), RAMOLE_ERR_MISMATCH or
 * RAMOLE_ERR_FORMAT (not an adapter of this base).
 */
ramole_status ramole_registry_adapter_add(ramole_registry *r, const ramole_registry_add_params *p, int64_t *id);
/* Adapter `name` of `tenant` (NULL: the default tenant); RAMOLE_ERR_NOT_FOUND. */
ramole_status ramole_registry_adapter_get(ramole_registry *r, const char *tenant, const char *name,
                                          ramole_registry_adapter *out);
/* Every adapter (tenant NULL) or a tenant's, by id. */
ramole_status ramole_registry_adapter_list(ramole_registry *r, const char *tenant, ramole_registry_adapter **out,
                                           int *n);
ramole_status ramole_registry_adapter_remove(ramole_registry *r, const char *tenant, const char *name,
                                             const char *actor);

typedef enum {
    RAMOLE_ADAPTER_ENABLE = 0, /* disabled -> active */
    RAMOLE_ADAPTER_DISABLE,
    RAMOLE_ADAPTER_APPROVE,    /* pending -> active */
    RAMOLE_ADAPTER_REJECT,     /* pending -> rejected */
} ramole_adapter_action;
ramole_status ramole_registry_adapter_act(ramole_registry *r, const char *tenant, const char *name,
                                          ramole_adapter_action act, const char *actor);
/* Screen again (name NULL: every adapter); an active adapter now above the
 * KL threshold goes back to pending (*n_held counts them). */
ramole_status ramole_registry_adapter_recheck(ramole_registry *r, const char *tenant, const char *name,
                                              const char *actor, int *n_checked, int *n_held);
/* The local file of adapter id (a retrieval hit's) as tenant may use it;
 * *path: ramole_free. RAMOLE_ERR_NOT_FOUND unless active and visible. */
ramole_status ramole_registry_adapter_file(ramole_registry *r, const char *tenant, int64_t id, char **path);
/* Ratings of the adapter file with this hash, under any of its names. */
ramole_status ramole_registry_adapter_ratings(ramole_registry *r, const char *hash, int64_t *up, int64_t *down);

/* ---- retrieval ---------------------------------------------------------------- */

typedef struct {
    int64_t id;
    float score;              /* cosine similarity */
    char name[RAMOLE_REGISTRY_NAME_MAX + 1];
} ramole_registry_hit;

/* The top k adapters for text as tenant may see them (its own and every
 * public one), best first; *n hits. */
ramole_status ramole_registry_retrieve(ramole_registry *r, const char *text, const char *tenant, int k,
                                       ramole_registry_hit *hits, int *n);
/* Adapters left out of retrieval: embedded by another embedder. */
int ramole_registry_n_stale(const ramole_registry *r);

/* ---- tenants, keys, audit ------------------------------------------------------ */

typedef struct {
    int64_t id;
    char *name;
    double created;
} ramole_registry_tenant;
ramole_status ramole_registry_tenant_add(ramole_registry *r, const char *name, const char *actor);
ramole_status ramole_registry_tenant_list(ramole_registry *r, ramole_registry_tenant **out, int *n);
void ramole_registry_tenants_free(ramole_registry_tenant *t, int n);

typedef enum { RAMOLE_ROLE_GENERATE = 0, RAMOLE_ROLE_UPLOAD, RAMOLE_ROLE_ADMIN } ramole_role;
/* "generate", "upload", "admin"; 0 when s names none. */
int ramole_role_from_name(const char *s, ramole_role *out);
/* A new key (shown once; only its SHA-256 is stored) into key[69]; *id
 * names it for revoking. */
ramole_status ramole_registry_key_create(ramole_registry *r, const char *tenant, ramole_role role, const char *actor,
                                         char key[69], int64_t *id);
/* Revoke by id (decimal) or by the key itself. */
ramole_status ramole_registry_key_revoke(ramole_registry *r, const char *key_or_id, const char *actor);

typedef struct {
    int64_t id;
    double time;
    char *actor, *action, *target, *hash, *detail;
} ramole_registry_audit;
/* Audit entries since `since` (unix seconds). */
ramole_status ramole_registry_audit_list(ramole_registry *r, double since, ramole_registry_audit **out, int *n);
void ramole_registry_audits_free(ramole_registry_audit *a, int n);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_REGISTRY_H */
