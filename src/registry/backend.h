/*
 * backend.h — the storage interface of the registry: one vtable that every
 * backend (SQLite, PostgreSQL) implements, so registry.c is
 * written once.
 *
 * Rows are the structs of registry.h. Writes happen between begin and
 * commit (or rollback); a backend makes a transaction all-or-nothing and
 * durable at commit. Blobs are content-addressed by their SHA-256 (hex):
 * blob_put stores bytes atomically and durably before returning (a second
 * put of the same hash stores nothing), so a row that names a blob is
 * committed only after the blob is safe. blob_file gives a local file of
 * the blob (PostgreSQL would cache it on disk by hash).
 *
 * Errors: ERR_NOT_FOUND for a missing row, ERR_INVALID for a uniqueness
 * violation (duplicate name), ERR_IO for the store itself, each with a
 * message naming the store.
 */
#ifndef RM_REGISTRY_BACKEND_H
#define RM_REGISTRY_BACKEND_H

#include "registry/registry.h"

typedef struct rm_reg_backend rm_reg_backend;

typedef struct {
    const char *name; /* "sqlite" */
    void (*close)(rm_reg_backend *b);
    /* write transactions (begin takes the write lock at once) */
    rm_status (*begin)(rm_reg_backend *b);
    rm_status (*commit)(rm_reg_backend *b);
    void (*rollback)(rm_reg_backend *b);
    /* key-value meta; ERR_NOT_FOUND when absent */
    rm_status (*meta_get)(rm_reg_backend *b, const char *key, char **val);
    rm_status (*meta_set)(rm_reg_backend *b, const char *key, const char *val);
    /* tenants */
    rm_status (*tenant_add)(rm_reg_backend *b, const char *name, double time, int64_t *id);
    rm_status (*tenant_find)(rm_reg_backend *b, const char *name, int64_t *id);
    rm_status (*tenant_list)(rm_reg_backend *b, rm_reg_tenant **out, int *n);
    /* adapters: insert sets a->id; update writes status, screening, embedding and identity */
    rm_status (*adapter_insert)(rm_reg_backend *b, rm_reg_adapter *a);
    rm_status (*adapter_update)(rm_reg_backend *b, const rm_reg_adapter *a);
    rm_status (*adapter_delete)(rm_reg_backend *b, int64_t id);
    rm_status (*adapter_find)(rm_reg_backend *b, int64_t tenant_id, const char *name, rm_reg_adapter *out);
    rm_status (*adapter_get)(rm_reg_backend *b, int64_t id, rm_reg_adapter *out);
    /* tenant_id < 0: every tenant */
    rm_status (*adapter_list)(rm_reg_backend *b, int64_t tenant_id, rm_reg_adapter **out, int *n);
    /* keys: hash is the SHA-256 hex of the key */
    rm_status (*key_insert)(rm_reg_backend *b, const char *hash, int64_t tenant_id, rm_reg_role role, double time,
                            int64_t *id);
    /* by id (id >= 0) or hash; ERR_NOT_FOUND when no live key matches */
    rm_status (*key_revoke)(rm_reg_backend *b, int64_t id, const char *hash, double time, int64_t *revoked_id);
    rm_status (*key_find)(rm_reg_backend *b, const char *hash, char **tenant, rm_reg_role *role);
    /* live (not revoked) keys */
    rm_status (*key_count)(rm_reg_backend *b, int64_t *n);
    /* audit */
    rm_status (*audit_append)(rm_reg_backend *b, const rm_reg_audit *a);
    rm_status (*audit_list)(rm_reg_backend *b, double since, rm_reg_audit **out, int *n);
    /* feedback: one row per (response, adapter) */
    rm_status (*feedback_add)(rm_reg_backend *b, const rm_reg_feedback *f, double time);
    rm_status (*ratings)(rm_reg_backend *b, const char *hash, rm_reg_rating **out, int *n);
    /* responses: one row per (response, adapter), or one with "" for the base alone;
     * add is its own transaction of n responses, rate one statement, neither notifies */
    rm_status (*response_add)(rm_reg_backend *b, const rm_reg_response *v, int n, double time);
    /* copy the rows of response id of tenant recorded at or after `since` into feedback:
     * *n rows, *n_named of them with an adapter */
    rm_status (*response_rate)(rm_reg_backend *b, const char *id, const char *tenant, int rating, const char *comment,
                               double since, double time, int *n, int *n_named);
    rm_status (*response_expire)(rm_reg_backend *b, double before, int64_t *n);
    /* blobs */
    rm_status (*blob_put)(rm_reg_backend *b, const char *hash, const void *data, size_t n);
    rm_status (*blob_file)(rm_reg_backend *b, const char *hash, char **path);
    /* every stored hash, for check and collection */
    rm_status (*blob_list)(rm_reg_backend *b, char ***hashes, double **mtimes, int *n);
    rm_status (*blob_delete)(rm_reg_backend *b, const char *hash);
    /* a number that changes when another connection (process) commits */
    rm_status (*data_version)(rm_reg_backend *b, uint64_t *v);
    /* a scratch folder for temporary files of uploads */
    const char *(*scratch_dir)(rm_reg_backend *b);
} rm_reg_backend_ops;

struct rm_reg_backend {
    const rm_reg_backend_ops *ops;
};

/*
 * Open (create when `create`) the SQLite registry at `path`; blobs live in
 * the folder PATH.blobs beside it. Applies pending schema migrations and
 * refuses a newer schema (ERR_UNSUPPORTED). *fresh: the file held no
 * registry before (schema version 0).
 */
rm_status rm_reg_sqlite_open(const char *path, bool create, rm_reg_backend **out, bool *fresh);

/* The backend of a registry URL: sqlite:PATH or postgresql://... (creating
 * SQLite's folder when `create`); ERR_INVALID for another scheme. */
rm_status rm_reg_backend_open(const char *url, bool create, rm_reg_backend **out, bool *fresh);

/*
 * Open the PostgreSQL registry at `url` (a libpq connection URI); blobs in
 * the database in chunks, cached on local disk by hash (backend_pg.c).
 */
rm_status rm_reg_pg_open(const char *url, bool create, rm_reg_backend **out, bool *fresh);

/* Sample lists as the JSON array text that backends store (registry.c). */
char     *rm_reg_samples_to_json(char *const *s, int n); /* rm_malloc'd, NULL when out of memory */
rm_status rm_reg_samples_from_json(const char *js, char ***out, int *n);

/* Blob folders (blob.c), used by file-backed stores. */
rm_status rm_blob_dir_init(const char *dir);
/* Write data as DIR/HA/HASH atomically (tmp, fsync, rename, fsync of the folder). */
rm_status rm_blob_dir_put(const char *dir, const char *hash, const void *data, size_t n);
char     *rm_blob_dir_path(const char *dir, const char *hash);
rm_status rm_blob_dir_list(const char *dir, char ***hashes, double **mtimes, int *n);
/* SHA-256 of a whole file, hex; *size its bytes. */
rm_status rm_sha256_file(const char *path, char out[65], int64_t *size);

#endif
