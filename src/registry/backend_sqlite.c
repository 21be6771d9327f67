/*
 * backend_sqlite.c — the SQLite backend of the registry (backend.h).
 *
 * One database file in WAL mode (readers never block the writer) with
 * synchronous=FULL, so a commit that returned survives a crash of the
 * process or the machine; blobs in the folder PATH.blobs beside it. Several
 * processes may share the file: writers take the lock at BEGIN IMMEDIATE
 * and wait for each other up to the busy timeout.
 *
 * Schema versions live in PRAGMA user_version; `migrations` lists the SQL
 * that brings version v-1 to v, applied in one transaction at open. A
 * database from a newer ramole (user_version above RM_REG_SCHEMA_VERSION)
 * is refused before anything is written.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/backend.h"

typedef struct {
    rm_reg_backend base;
    sqlite3 *db;
    char *path, *blobs, *scratch;
} sq_backend;

static const char *const migrations[RM_REG_SCHEMA_VERSION] = {
    /* 1: the first schema */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE tenants(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);"
    "CREATE TABLE adapters(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id), description TEXT NOT NULL, public INTEGER NOT NULL,"
    " status INTEGER NOT NULL, rank INTEGER NOT NULL, alpha REAL NOT NULL, targets INTEGER NOT NULL,"
    " size INTEGER NOT NULL, hash TEXT NOT NULL, created REAL NOT NULL, creator TEXT NOT NULL,"
    " samples TEXT NOT NULL, embedding BLOB, dim INTEGER NOT NULL, emb_fingerprint TEXT NOT NULL,"
    " emb_layer INTEGER NOT NULL, emb_projection TEXT NOT NULL, screening TEXT NOT NULL,"
    " UNIQUE(tenant_id, name));"
    "CREATE TABLE keys(id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE,"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id), role INTEGER NOT NULL, created REAL NOT NULL, revoked REAL);"
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,"
    " target TEXT NOT NULL, hash TEXT NOT NULL, detail TEXT NOT NULL);",
    /* 2: indexes for audit --since and the hash lookups of check */
    "CREATE INDEX audit_time ON audit(time);"
    "CREATE INDEX adapters_hash ON adapters(hash);",
    /* 3: ratings of responses, per adapter used */
    "CREATE TABLE feedback(id INTEGER PRIMARY KEY, time REAL NOT NULL, response_id TEXT NOT NULL,"
    " tenant TEXT NOT NULL, adapter TEXT NOT NULL, hash TEXT NOT NULL, rating INTEGER NOT NULL,"
    " comment TEXT NOT NULL);"
    "CREATE INDEX feedback_hash ON feedback(hash);",
    /* 4: what each response used, so that any server on the registry takes its rating */
    "CREATE TABLE responses(id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, tenant TEXT NOT NULL,"
    " adapter TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY(id, seq));"
    "CREATE INDEX responses_time ON responses(time);",
};

static rm_status sq_fail(sq_backend *s, const char *what) {
    int code = sqlite3_extended_errcode(s->db);
    rm_status st = RAMOLE_ERR_IO;
    if ((code & 0xff) == SQLITE_CONSTRAINT) st = RAMOLE_ERR_INVALID;
    else if ((code & 0xff) == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT) st = RAMOLE_ERR_FORMAT;
    return rm_err(st, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static rm_status exec(sq_backend *s, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return RAMOLE_OK;
    rm_status st = sq_fail(s, "sql");
    sqlite3_free(msg);
    return st;
}

static rm_status prep(sq_backend *s, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) == SQLITE_OK) return RAMOLE_OK;
    return sq_fail(s, "prepare");
}

static char *col_str(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return rm_strdup(t ? (const char *)t : "");
}

/* ---- transactions, meta ---------------------------------------------------------- */

static rm_status sq_begin(rm_reg_backend *b) { return exec((sq_backend *)b, "BEGIN IMMEDIATE"); }
static rm_status sq_commit(rm_reg_backend *b) { return exec((sq_backend *)b, "COMMIT"); }
static void sq_rollback(rm_reg_backend *b) {
    sq_backend *s = (sq_backend *)b;
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static rm_status sq_meta_get(rm_reg_backend *b, const char *key, char **val) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    *val = NULL;
    RM_TRY(prep(s, "SELECT value FROM meta WHERE key = ?", &st));
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    rm_status r = RAMOLE_OK;
    if (rc == SQLITE_ROW) r = (*val = col_str(st, 0)) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    else if (rc == SQLITE_DONE) r = rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no meta value '%s'", s->path, key);
    else r = sq_fail(s, "meta");
    sqlite3_finalize(st);
    return r;
}

/* Run a statement with no result rows; SQLITE_DONE is success. */
static rm_status step_done(sq_backend *s, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    rm_status r = rc == SQLITE_DONE ? RAMOLE_OK : sq_fail(s, what);
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_meta_set(rm_reg_backend *b, const char *key, const char *val) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                &st));
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, val, -1, SQLITE_STATIC);
    return step_done(s, st, "meta");
}

/* ---- tenants --------------------------------------------------------------------- */

static rm_status sq_tenant_add(rm_reg_backend *b, const char *name, double time, int64_t *id) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "INSERT INTO tenants(name, created) VALUES(?, ?)", &st));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, time);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return rm_err(RAMOLE_ERR_INVALID, "tenant '%s' already exists", name);
    if (rc != SQLITE_DONE) return sq_fail(s, "tenant add");
    if (id) *id = sqlite3_last_insert_rowid(s->db);
    return RAMOLE_OK;
}

static rm_status sq_tenant_find(rm_reg_backend *b, const char *name, int64_t *id) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "SELECT id FROM tenants WHERE name = ?", &st));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return RAMOLE_OK;
    if (rc == SQLITE_DONE) return rm_err(RAMOLE_ERR_NOT_FOUND, "unknown tenant '%s' (ramole tenant add %s)", name, name);
    return sq_fail(s, "tenant");
}

static rm_status sq_tenant_list(rm_reg_backend *b, rm_reg_tenant **out, int *n) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    *out = NULL, *n = 0;
    RM_TRY(prep(s, "SELECT id, name, created FROM tenants ORDER BY id", &st));
    int cap = 0, rc;
    rm_status r = RAMOLE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            rm_reg_tenant *t = rm_realloc(*out, (size_t)cap * sizeof *t);
            if (!t) { r = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); break; }
            *out = t;
        }
        rm_reg_tenant *t = &(*out)[(*n)++];
        t->id = sqlite3_column_int64(st, 0);
        t->name = col_str(st, 1);
        t->created = sqlite3_column_double(st, 2);
    }
    if (r == RAMOLE_OK && rc != SQLITE_DONE) r = sq_fail(s, "tenant list");
    sqlite3_finalize(st);
    if (r != RAMOLE_OK) rm_reg_tenants_free(*out, *n), *out = NULL, *n = 0;
    return r;
}

/* ---- adapters -------------------------------------------------------------------- */

#define ADAPTER_COLS                                                                                            \
    "a.id, a.name, a.tenant_id, t.name, a.description, a.public, a.status, a.rank, a.alpha, a.targets, a.size, " \
    "a.hash, a.created, a.creator, a.samples, a.embedding, a.dim, a.emb_fingerprint, a.emb_layer, "            \
    "a.emb_projection, a.screening FROM adapters a JOIN tenants t ON t.id = a.tenant_id"

static rm_status read_adapter(sqlite3_stmt *st, rm_reg_adapter *a) {
    memset(a, 0, sizeof *a);
    a->id = sqlite3_column_int64(st, 0);
    a->name = col_str(st, 1);
    a->tenant_id = sqlite3_column_int64(st, 2);
    a->tenant = col_str(st, 3);
    a->description = col_str(st, 4);
    a->is_public = sqlite3_column_int(st, 5) != 0;
    a->status = (rm_reg_status)sqlite3_column_int(st, 6);
    a->rank = sqlite3_column_int(st, 7);
    a->alpha = (float)sqlite3_column_double(st, 8);
    a->targets = (unsigned)sqlite3_column_int(st, 9);
    a->size = sqlite3_column_int64(st, 10);
    const unsigned char *h = sqlite3_column_text(st, 11);
    snprintf(a->hash, sizeof a->hash, "%s", h ? (const char *)h : "");
    a->created = sqlite3_column_double(st, 12);
    a->creator = col_str(st, 13);
    a->screening = col_str(st, 20);
    if (!a->name || !a->tenant || !a->description || !a->creator || !a->screening) goto nomem;
    if (rm_reg_samples_from_json((const char *)sqlite3_column_text(st, 14), &a->samples, &a->n_samples) != RAMOLE_OK)
        goto nomem;
    a->dim = sqlite3_column_int(st, 16);
    int bytes = sqlite3_column_bytes(st, 15);
    if (a->dim > 0 && bytes == a->dim * (int)sizeof(float)) {
        if (!(a->embedding = rm_malloc((size_t)bytes))) goto nomem;
        memcpy(a->embedding, sqlite3_column_blob(st, 15), (size_t)bytes);
    } else
        a->dim = 0;
    const unsigned char *fp = sqlite3_column_text(st, 17);
    a->emb_fingerprint = fp ? strtoull((const char *)fp, NULL, 16) : 0;
    a->emb_layer = sqlite3_column_int(st, 18);
    const unsigned char *ph = sqlite3_column_text(st, 19);
    snprintf(a->emb_projection, sizeof a->emb_projection, "%s", ph ? (const char *)ph : "");
    return RAMOLE_OK;
nomem:
    rm_reg_adapter_clear(a);
    return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
}

static void bind_embedding(sqlite3_stmt *st, const rm_reg_adapter *a, int col) {
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)a->emb_fingerprint);
    if (a->embedding && a->dim > 0) sqlite3_bind_blob(st, col, a->embedding, a->dim * (int)sizeof(float), SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, col);
    sqlite3_bind_int(st, col + 1, a->embedding ? a->dim : 0);
    sqlite3_bind_text(st, col + 2, fp, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, col + 3, a->emb_layer);
    sqlite3_bind_text(st, col + 4, a->emb_projection, -1, SQLITE_STATIC);
}

static rm_status sq_adapter_insert(rm_reg_backend *b, rm_reg_adapter *a) {
    sq_backend *s = (sq_backend *)b;
    char *js = rm_reg_samples_to_json(a->samples, a->n_samples);
    if (!js) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    sqlite3_stmt *st;
    rm_status r = prep(s,
                       "INSERT INTO adapters(name, tenant_id, description, public, status, rank, alpha, targets, size,"
                       " hash, created, creator, samples, screening, embedding, dim, emb_fingerprint, emb_layer,"
                       " emb_projection) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       &st);
    if (r != RAMOLE_OK) { rm_free(js); return r; }
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->tenant_id);
    sqlite3_bind_text(st, 3, a->description ? a->description : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, a->is_public);
    sqlite3_bind_int(st, 5, (int)a->status);
    sqlite3_bind_int(st, 6, a->rank);
    sqlite3_bind_double(st, 7, a->alpha);
    sqlite3_bind_int(st, 8, (int)a->targets);
    sqlite3_bind_int64(st, 9, a->size);
    sqlite3_bind_text(st, 10, a->hash, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 11, a->created);
    sqlite3_bind_text(st, 12, a->creator ? a->creator : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, js, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 14, a->screening ? a->screening : "{}", -1, SQLITE_STATIC);
    bind_embedding(st, a, 15);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    rm_free(js);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return rm_err(RAMOLE_ERR_INVALID, "adapter '%s' already exists in tenant '%s'", a->name,
                      a->tenant ? a->tenant : "?");
    if (rc != SQLITE_DONE) return sq_fail(s, "adapter insert");
    a->id = sqlite3_last_insert_rowid(s->db);
    return RAMOLE_OK;
}

static rm_status sq_adapter_update(rm_reg_backend *b, const rm_reg_adapter *a) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s,
                "UPDATE adapters SET status = ?, screening = ?, embedding = ?, dim = ?, emb_fingerprint = ?,"
                " emb_layer = ?, emb_projection = ? WHERE id = ?",
                &st));
    sqlite3_bind_int(st, 1, (int)a->status);
    sqlite3_bind_text(st, 2, a->screening ? a->screening : "{}", -1, SQLITE_STATIC);
    bind_embedding(st, a, 3);
    sqlite3_bind_int64(st, 8, a->id);
    RM_TRY(step_done(s, st, "adapter update"));
    return sqlite3_changes(s->db) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %lld is gone", (long long)a->id);
}

static rm_status sq_adapter_delete(rm_reg_backend *b, int64_t id) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "DELETE FROM adapters WHERE id = ?", &st));
    sqlite3_bind_int64(st, 1, id);
    RM_TRY(step_done(s, st, "adapter delete"));
    return sqlite3_changes(s->db) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %lld is gone", (long long)id);
}

static rm_status sq_adapter_find(rm_reg_backend *b, int64_t tenant_id, const char *name, rm_reg_adapter *out) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    memset(out, 0, sizeof *out);
    RM_TRY(prep(s, "SELECT " ADAPTER_COLS " WHERE a.tenant_id = ? AND a.name = ?", &st));
    sqlite3_bind_int64(st, 1, tenant_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    rm_status r;
    if (rc == SQLITE_ROW) r = read_adapter(st, out);
    else if (rc == SQLITE_DONE) r = rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter named '%s'", name);
    else r = sq_fail(s, "adapter");
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_adapter_get(rm_reg_backend *b, int64_t id, rm_reg_adapter *out) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    memset(out, 0, sizeof *out);
    RM_TRY(prep(s, "SELECT " ADAPTER_COLS " WHERE a.id = ?", &st));
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    rm_status r;
    if (rc == SQLITE_ROW) r = read_adapter(st, out);
    else if (rc == SQLITE_DONE) r = rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter with id %lld", (long long)id);
    else r = sq_fail(s, "adapter");
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_adapter_list(rm_reg_backend *b, int64_t tenant_id, rm_reg_adapter **out, int *n) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    *out = NULL, *n = 0;
    RM_TRY(prep(s, "SELECT " ADAPTER_COLS " WHERE ? < 0 OR a.tenant_id = ? ORDER BY a.id", &st));
    sqlite3_bind_int64(st, 1, tenant_id);
    sqlite3_bind_int64(st, 2, tenant_id);
    int cap = 0, rc;
    rm_status r = RAMOLE_OK;
    while (r == RAMOLE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            rm_reg_adapter *a = rm_realloc(*out, (size_t)cap * sizeof *a);
            if (!a) { r = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); break; }
            *out = a;
        }
        if ((r = read_adapter(st, &(*out)[*n])) == RAMOLE_OK) (*n)++;
    }
    if (r == RAMOLE_OK && rc != SQLITE_DONE) r = sq_fail(s, "adapter list");
    sqlite3_finalize(st);
    if (r != RAMOLE_OK) rm_reg_adapters_free(*out, *n), *out = NULL, *n = 0;
    return r;
}

/* ---- keys, audit ------------------------------------------------------------------ */

static rm_status sq_key_insert(rm_reg_backend *b, const char *hash, int64_t tenant_id, rm_reg_role role, double time,
                               int64_t *id) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "INSERT INTO keys(hash, tenant_id, role, created) VALUES(?, ?, ?, ?)", &st));
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant_id);
    sqlite3_bind_int(st, 3, (int)role);
    sqlite3_bind_double(st, 4, time);
    RM_TRY(step_done(s, st, "key insert"));
    *id = sqlite3_last_insert_rowid(s->db);
    return RAMOLE_OK;
}

static rm_status sq_key_revoke(rm_reg_backend *b, int64_t id, const char *hash, double time, int64_t *revoked) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "UPDATE keys SET revoked = ? WHERE revoked IS NULL AND (id = ? OR hash = ?) RETURNING id", &st));
    sqlite3_bind_double(st, 1, time);
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_text(st, 3, hash ? hash : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *revoked = sqlite3_column_int64(st, 0);
    rm_status r = rc == SQLITE_ROW ? RAMOLE_OK
                  : rc == SQLITE_DONE ? rm_err(RAMOLE_ERR_NOT_FOUND, "no live key matches")
                                      : sq_fail(s, "key revoke");
    if (rc == SQLITE_ROW) sqlite3_step(st);
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_key_find(rm_reg_backend *b, const char *hash, char **tenant, rm_reg_role *role) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "SELECT t.name, k.role FROM keys k JOIN tenants t ON t.id = k.tenant_id"
                   " WHERE k.hash = ? AND k.revoked IS NULL", &st));
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    rm_status r = RAMOLE_OK;
    if (rc == SQLITE_ROW) {
        *tenant = col_str(st, 0);
        *role = (rm_reg_role)sqlite3_column_int(st, 1);
        if (!*tenant) r = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    } else
        r = rc == SQLITE_DONE ? rm_err(RAMOLE_ERR_NOT_FOUND, "unknown or revoked key") : sq_fail(s, "key");
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_key_count(rm_reg_backend *b, int64_t *n) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "SELECT count(*) FROM keys WHERE revoked IS NULL", &st));
    rm_status r = sqlite3_step(st) == SQLITE_ROW ? RAMOLE_OK : sq_fail(s, "key count");
    if (r == RAMOLE_OK) *n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_feedback_add(rm_reg_backend *b, const rm_reg_feedback *f, double time) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "INSERT INTO feedback(time, response_id, tenant, adapter, hash, rating, comment)"
                   " VALUES(?,?,?,?,?,?,?)", &st));
    sqlite3_bind_double(st, 1, time);
    sqlite3_bind_text(st, 2, f->response_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, f->tenant ? f->tenant : RM_REG_DEFAULT_TENANT, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, f->adapter ? f->adapter : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, f->hash ? f->hash : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, f->rating);
    sqlite3_bind_text(st, 7, f->comment ? f->comment : "", -1, SQLITE_STATIC);
    rm_status r = sqlite3_step(st) == SQLITE_DONE ? RAMOLE_OK : sq_fail(s, "feedback");
    sqlite3_finalize(st);
    return r;
}

/* One response's rows in one multi-row statement. */
static rm_status sq_response_insert(sq_backend *s, const rm_reg_response *resp, double time) {
    char sql[128 + RM_REG_RESPONSE_ADAPTERS * 16] = "INSERT INTO responses(id, seq, time, tenant, adapter, hash) VALUES";
    int rows = resp->n ? resp->n : 1;
    for (int i = 0; i < rows; i++) strcat(sql, i ? ",(?,?,?,?,?,?)" : "(?,?,?,?,?,?)");
    sqlite3_stmt *st;
    RM_TRY(prep(s, sql, &st));
    for (int i = 0; i < rows; i++) {
        sqlite3_bind_text(st, 6 * i + 1, resp->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6 * i + 2, i);
        sqlite3_bind_double(st, 6 * i + 3, time);
        sqlite3_bind_text(st, 6 * i + 4, resp->tenant[0] ? resp->tenant : RM_REG_DEFAULT_TENANT, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6 * i + 5, resp->n ? resp->names[i] : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6 * i + 6, resp->n ? resp->hashes[i] : "", -1, SQLITE_STATIC);
    }
    rm_status r = sqlite3_step(st) == SQLITE_DONE ? RAMOLE_OK : sq_fail(s, "response");
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_response_add(rm_reg_backend *b, const rm_reg_response *v, int n, double time) {
    sq_backend *s = (sq_backend *)b;
    RM_TRY(exec(s, "BEGIN IMMEDIATE"));
    rm_status st = RAMOLE_OK;
    for (int k = 0; k < n && st == RAMOLE_OK; k++) st = sq_response_insert(s, &v[k], time);
    if (st == RAMOLE_OK) st = exec(s, "COMMIT");
    if (st != RAMOLE_OK) sq_rollback(b);
    return st;
}

static rm_status sq_response_rate(rm_reg_backend *b, const char *id, const char *tenant, int rating,
                                  const char *comment, double since, double time, int *n, int *n_named) {
    sq_backend *s = (sq_backend *)b;
    *n = *n_named = 0;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "INSERT INTO feedback(time, response_id, tenant, adapter, hash, rating, comment)"
                   " SELECT ?1, id, tenant, adapter, hash, ?2, ?3 FROM responses"
                   " WHERE id = ?4 AND tenant = ?5 AND time >= ?6 ORDER BY seq RETURNING adapter", &st));
    sqlite3_bind_double(st, 1, time);
    sqlite3_bind_int(st, 2, rating);
    sqlite3_bind_text(st, 3, comment, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 6, since);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*n)++;
        if (sqlite3_column_bytes(st, 0) > 0) (*n_named)++;
    }
    rm_status r = rc == SQLITE_DONE ? RAMOLE_OK : sq_fail(s, "rating");
    sqlite3_finalize(st);
    if (r != RAMOLE_OK) *n = *n_named = 0;
    return r;
}

static rm_status sq_response_expire(rm_reg_backend *b, double before, int64_t *n) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "DELETE FROM responses WHERE time < ?", &st));
    sqlite3_bind_double(st, 1, before);
    rm_status r = sqlite3_step(st) == SQLITE_DONE ? RAMOLE_OK : sq_fail(s, "expiring responses");
    *n = r == RAMOLE_OK ? sqlite3_changes64(s->db) : 0;
    sqlite3_finalize(st);
    return r;
}

static rm_status sq_ratings(rm_reg_backend *b, const char *hash, rm_reg_rating **out, int *n) {
    sq_backend *s = (sq_backend *)b;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "SELECT adapter, hash, sum(rating > 0), sum(rating < 0) FROM feedback"
                   " WHERE ?1 IS NULL OR hash = ?1 GROUP BY adapter, hash ORDER BY adapter, hash", &st));
    if (hash) sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    rm_status r = RAMOLE_OK;
    int rc, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            rm_reg_rating *v = rm_realloc(*out, (size_t)cap * sizeof *v);
            if (!v) {
                r = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                break;
            }
            *out = v;
        }
        rm_reg_rating *x = &(*out)[(*n)++];
        memset(x, 0, sizeof *x);
        x->adapter = col_str(st, 0);
        snprintf(x->hash, sizeof x->hash, "%s", (const char *)sqlite3_column_text(st, 1));
        x->up = sqlite3_column_int64(st, 2);
        x->down = sqlite3_column_int64(st, 3);
    }
    if (r == RAMOLE_OK && rc != SQLITE_DONE) r = sq_fail(s, "ratings");
    sqlite3_finalize(st);
    if (r != RAMOLE_OK) rm_reg_ratings_free(*out, *n), *out = NULL, *n = 0;
    return r;
}

static rm_status sq_audit_append(rm_reg_backend *b, const rm_reg_audit *a) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "INSERT INTO audit(time, actor, action, target, hash, detail) VALUES(?,?,?,?,?,?)", &st));
    sqlite3_bind_double(st, 1, a->time);
    sqlite3_bind_text(st, 2, a->actor ? a->actor : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->target ? a->target : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, a->hash ? a->hash : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, a->detail ? a->detail : "", -1, SQLITE_STATIC);
    return step_done(s, st, "audit");
}

static rm_status sq_audit_list(rm_reg_backend *b, double since, rm_reg_audit **out, int *n) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    *out = NULL, *n = 0;
    RM_TRY(prep(s, "SELECT id, time, actor, action, target, hash, detail FROM audit WHERE time >= ? ORDER BY id", &st));
    sqlite3_bind_double(st, 1, since);
    int cap = 0, rc;
    rm_status r = RAMOLE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            rm_reg_audit *a = rm_realloc(*out, (size_t)cap * sizeof *a);
            if (!a) { r = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); break; }
            *out = a;
        }
        rm_reg_audit *a = &(*out)[(*n)++];
        a->id = sqlite3_column_int64(st, 0);
        a->time = sqlite3_column_double(st, 1);
        a->actor = col_str(st, 2), a->action = col_str(st, 3), a->target = col_str(st, 4);
        a->hash = col_str(st, 5), a->detail = col_str(st, 6);
    }
    if (r == RAMOLE_OK && rc != SQLITE_DONE) r = sq_fail(s, "audit list");
    sqlite3_finalize(st);
    if (r != RAMOLE_OK) rm_reg_audits_free(*out, *n), *out = NULL, *n = 0;
    return r;
}

/* ---- blobs ------------------------------------------------------------------------ */

static rm_status sq_blob_put(rm_reg_backend *b, const char *hash, const void *data, size_t n) {
    return rm_blob_dir_put(((sq_backend *)b)->blobs, hash, data, n);
}

static rm_status sq_blob_file(rm_reg_backend *b, const char *hash, char **path) {
    sq_backend *s = (sq_backend *)b;
    *path = rm_blob_dir_path(s->blobs, hash);
    if (!*path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (rm_file_exists(*path)) return RAMOLE_OK;
    rm_status st = rm_err(RAMOLE_ERR_NOT_FOUND, "blob %s is missing from %s", hash, s->blobs);
    rm_free(*path);
    *path = NULL;
    return st;
}

static rm_status sq_blob_list(rm_reg_backend *b, char ***hashes, double **mtimes, int *n) {
    return rm_blob_dir_list(((sq_backend *)b)->blobs, hashes, mtimes, n);
}

static rm_status sq_blob_delete(rm_reg_backend *b, const char *hash) {
    sq_backend *s = (sq_backend *)b;
    char *path = !strncmp(hash, "tmp/", 4) ? rm_path_join(s->blobs, hash) : rm_blob_dir_path(s->blobs, hash);
    if (!path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    int rc = remove(path);
    rm_free(path);
    return rc == 0 ? RAMOLE_OK : rm_err(RAMOLE_ERR_IO, "%s: cannot remove blob %s", s->blobs, hash);
}

static rm_status sq_data_version(rm_reg_backend *b, uint64_t *v) {
    sq_backend *s = (sq_backend *)b;
    sqlite3_stmt *st;
    RM_TRY(prep(s, "PRAGMA data_version", &st));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? RAMOLE_OK : sq_fail(s, "data version");
}

static const char *sq_scratch_dir(rm_reg_backend *b) { return ((sq_backend *)b)->scratch; }

static void sq_close(rm_reg_backend *b) {
    sq_backend *s = (sq_backend *)b;
    if (!s) return;
    if (s->db) sqlite3_close_v2(s->db);
    rm_free(s->path), rm_free(s->blobs), rm_free(s->scratch);
    rm_free(s);
}

static const rm_reg_backend_ops sq_ops = {
    .name = "sqlite", .close = sq_close, .begin = sq_begin, .commit = sq_commit, .rollback = sq_rollback,
    .meta_get = sq_meta_get, .meta_set = sq_meta_set, .tenant_add = sq_tenant_add, .tenant_find = sq_tenant_find,
    .tenant_list = sq_tenant_list, .adapter_insert = sq_adapter_insert, .adapter_update = sq_adapter_update,
    .adapter_delete = sq_adapter_delete, .adapter_find = sq_adapter_find, .adapter_get = sq_adapter_get, .adapter_list = sq_adapter_list,
    .key_insert = sq_key_insert, .key_revoke = sq_key_revoke, .key_find = sq_key_find, .key_count = sq_key_count, .feedback_add = sq_feedback_add, .ratings = sq_ratings,
    .response_add = sq_response_add, .response_rate = sq_response_rate, .response_expire = sq_response_expire,
    .audit_append = sq_audit_append, .audit_list = sq_audit_list, .blob_put = sq_blob_put,
    .blob_file = sq_blob_file, .blob_list = sq_blob_list, .blob_delete = sq_blob_delete,
    .data_version = sq_data_version, .scratch_dir = sq_scratch_dir,
};

/* ---- open and migrate ------------------------------------------------------------- */

static rm_status user_version(sq_backend *s, int *v) {
    sqlite3_stmt *st;
    RM_TRY(prep(s, "PRAGMA user_version", &st));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? RAMOLE_OK : sq_fail(s, "reading the schema version");
}

static rm_status migrate(sq_backend *s, bool create, bool *fresh) {
    int v;
    RM_TRY(user_version(s, &v)); /* refuse a newer schema before writing anything */
    if (v > RM_REG_SCHEMA_VERSION)
        return rm_err(RAMOLE_ERR_UNSUPPORTED,
                      "%s: registry schema version %d is newer than this ramole understands (%d); "
                      "use a newer ramole", s->path, v, RM_REG_SCHEMA_VERSION);
    if (v == 0 && !create) return rm_err(RAMOLE_ERR_NOT_FOUND, "%s holds no registry (ramole registry init)", s->path);
    *fresh = v == 0;
    if (v == RM_REG_SCHEMA_VERSION) return RAMOLE_OK;
    RM_TRY(exec(s, "BEGIN IMMEDIATE"));
    rm_status st = user_version(s, &v); /* another process may have migrated meanwhile */
    for (; st == RAMOLE_OK && v < RM_REG_SCHEMA_VERSION; v++) {
        st = exec(s, migrations[v]);
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (st == RAMOLE_OK) st = exec(s, sql);
    }
    if (st == RAMOLE_OK) st = exec(s, "COMMIT");
    if (st != RAMOLE_OK) sq_rollback(&s->base);
    return st;
}

rm_status rm_reg_sqlite_open(const char *path, bool create, rm_reg_backend **out, bool *fresh) {
    *out = NULL;
    if (!create && !rm_file_exists(path))
        return rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no registry there (ramole registry init)", path);
    sq_backend *s = rm_calloc(1, sizeof *s);
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    s->base.ops = &sq_ops;
    s->path = rm_strdup(path);
    s->blobs = rm_asprintf("%s.blobs", path);
    s->scratch = rm_asprintf("%s.blobs/tmp", path);
    rm_status st = RAMOLE_OK;
    if (!s->path || !s->blobs || !s->scratch) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto fail; }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        st = rm_err(RAMOLE_ERR_IO, "%s: cannot open: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 30000);
    sqlite3_extended_result_codes(s->db, 1);
    if ((st = exec(s, "PRAGMA journal_mode = WAL")) != RAMOLE_OK ||
        (st = exec(s, "PRAGMA synchronous = FULL")) != RAMOLE_OK ||
        (st = exec(s, "PRAGMA foreign_keys = ON")) != RAMOLE_OK) {
        if (st == RAMOLE_ERR_FORMAT) rm_err(st, "%s is not a registry (not an SQLite database)", path);
        goto fail;
    }
    if ((st = migrate(s, create, fresh)) != RAMOLE_OK) goto fail;
    if ((st = rm_blob_dir_init(s->blobs)) != RAMOLE_OK) goto fail;
    *out = &s->base;
    return RAMOLE_OK;
fail:
    sq_close(&s->base);
    return st;
}
