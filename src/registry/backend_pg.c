/*
 * backend_pg.c — the PostgreSQL backend of the registry (backend.h), for
 * several servers sharing one pool.
 *
 * Rows live in the same tables as in SQLite (types adapted). Blobs live in
 * the database too, so servers need no shared disk: table `blobs` holds
 * them in chunks of RM_PG_CHUNK bytes, `blob_info` their size, and a blob's
 * info row commits after its chunks, in one transaction, before any
 * adapter row names it. Each process caches blobs on local disk by hash
 * (rm_blob_dir_*, under $RAMOLE_BLOB_CACHE, else
 * $XDG_CACHE_HOME/ramole/blobs or ~/.cache/ramole/blobs); a cached file
 * is checked against its hash when fetched.
 *
 * Two connections: `db` for rows and transactions (the registry calls it
 * under its lock) and `bc` for blobs (uploads write blobs outside that
 * lock), each with its own mutex, so a blob is never written inside
 * another thread's open transaction.
 *
 * Change notification: every write transaction ends with
 * NOTIFY ramole_registry; `db` LISTENs, and data_version counts the
 * notifications of other sessions, so rm_registry_refresh in one server
 * sees an add, rm, disable or approve made through another.
 *
 * The schema version is the row of table ramole_schema; migrations run
 * under a transaction-scoped advisory lock, and a newer version is refused
 * before anything is written.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "registry/backend.h"

#define RM_PG_CHUNK (1 << 20)

typedef struct {
    rm_reg_backend base;
    PGconn *db, *bc;
    pthread_mutex_t bc_lock;
    char *url, *cache, *scratch;
    uint64_t notes;
    int pid;
} pg_backend;

static const char *const pg_migrations[RM_REG_SCHEMA_VERSION] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE tenants(id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL);"
    "CREATE TABLE adapters(id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,"
    " tenant_id BIGINT NOT NULL REFERENCES tenants(id), description TEXT NOT NULL, public INTEGER NOT NULL,"
    " status INTEGER NOT NULL, rank INTEGER NOT NULL, alpha DOUBLE PRECISION NOT NULL, targets INTEGER NOT NULL,"
    " size BIGINT NOT NULL, hash TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, creator TEXT NOT NULL,"
    " samples TEXT NOT NULL, embedding BYTEA, dim INTEGER NOT NULL, emb_fingerprint TEXT NOT NULL,"
    " emb_layer INTEGER NOT NULL, emb_projection TEXT NOT NULL, screening TEXT NOT NULL, UNIQUE(tenant_id, name));"
    "CREATE TABLE keys(id BIGSERIAL PRIMARY KEY, hash TEXT NOT NULL UNIQUE,"
    " tenant_id BIGINT NOT NULL REFERENCES tenants(id), role INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL,"
    " revoked DOUBLE PRECISION);"
    "CREATE TABLE audit(id BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL,"
    " action TEXT NOT NULL, target TEXT NOT NULL, hash TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE TABLE blobs(hash TEXT NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY(hash, seq));"
    "CREATE TABLE blob_info(hash TEXT PRIMARY KEY, size BIGINT NOT NULL, n_chunks INTEGER NOT NULL,"
    " created DOUBLE PRECISION NOT NULL);",
    "CREATE INDEX audit_time ON audit(time);"
    "CREATE INDEX adapters_hash ON adapters(hash);",
    "CREATE TABLE feedback(id BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL, response_id TEXT NOT NULL,"
    " tenant TEXT NOT NULL, adapter TEXT NOT NULL, hash TEXT NOT NULL, rating INTEGER NOT NULL,"
    " comment TEXT NOT NULL);"
    "CREATE INDEX feedback_hash ON feedback(hash);",
    "CREATE TABLE responses(id TEXT NOT NULL, seq INTEGER NOT NULL, time DOUBLE PRECISION NOT NULL,"
    " tenant TEXT NOT NULL, adapter TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY(id, seq));"
    "CREATE INDEX responses_time ON responses(time);",
};

/* ---- statements ------------------------------------------------------------------------ */

/* The error of a failed result: ERR_INVALID for a uniqueness violation. */
static rm_status pg_fail(pg_backend *p, PGconn *c, PGresult *r, const char *what) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    rm_status st = state && !strcmp(state, "23505") ? RAMOLE_ERR_INVALID : RAMOLE_ERR_IO;
    const char *msg = r && PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r) : PQerrorMessage(c);
    char clean[512];
    snprintf(clean, sizeof clean, "%s", msg);
    size_t n = strlen(clean);
    while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' ')) clean[--n] = 0;
    return rm_err(st, "postgresql registry: %s: %s", what, clean);
}

/*
 * Run sql with n text parameters (NULL: SQL NULL) on connection c; binary
 * parameters where lens[i] > 0 (bytea). *out gets the result when rows are
 * expected (caller PQclear's it).
 */
static rm_status run(pg_backend *p, PGconn *c, const char *sql, int n, const char *const *vals, const int *lens,
                     const char *what, PGresult **out) {
    int fmts[24] = {0};
    for (int i = 0; lens && i < n; i++) fmts[i] = lens[i] > 0;
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, lens, lens ? fmts : NULL, 0);
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        rm_status st = pg_fail(p, c, r, what);
        PQclear(r);
        return st;
    }
    if (out) *out = r;
    else PQclear(r);
    return RAMOLE_OK;
}

#define P(...) ((const char *const[]){__VA_ARGS__})

static char *get_str(PGresult *r, int row, int col) { return rm_strdup(PQgetvalue(r, row, col)); }
static int64_t get_i64(PGresult *r, int row, int col) { return strtoll(PQgetvalue(r, row, col), NULL, 10); }
static double get_f(PGresult *r, int row, int col) { return strtod(PQgetvalue(r, row, col), NULL); }

static rm_status pg_begin(rm_reg_backend *b) {
    pg_backend *p = (pg_backend *)b;
    return run(p, p->db, "BEGIN", 0, NULL, NULL, "begin", NULL);
}
static rm_status pg_commit(rm_reg_backend *b) {
    pg_backend *p = (pg_backend *)b;
    RM_TRY(run(p, p->db, "NOTIFY ramole_registry", 0, NULL, NULL, "notify", NULL));
    return run(p, p->db, "COMMIT", 0, NULL, NULL, "commit", NULL);
}
static void pg_rollback(rm_reg_backend *b) {
    pg_backend *p = (pg_backend *)b;
    if (PQtransactionStatus(p->db) != PQTRANS_IDLE) PQclear(PQexec(p->db, "ROLLBACK"));
}

static rm_status pg_meta_get(rm_reg_backend *b, const char *key, char **val) {
    pg_backend *p = (pg_backend *)b;
    PGresult *r = NULL;
    *val = NULL;
    RM_TRY(run(p, p->db, "SELECT value FROM meta WHERE key = $1", 1, P(key), NULL, "meta", &r));
    rm_status st = PQntuples(r) ? ((*val = get_str(r, 0, 0)) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory"))
                                : rm_err(RAMOLE_ERR_NOT_FOUND, "no meta value '%s'", key);
    PQclear(r);
    return st;
}

static rm_status pg_meta_set(rm_reg_backend *b, const char *key, const char *val) {
    pg_backend *p = (pg_backend *)b;
    return run(p, p->db,
               "INSERT INTO meta(key, value) VALUES($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", 2,
               P(key, val), NULL, "meta", NULL);
}

static rm_status pg_tenant_add(rm_reg_backend *b, const char *name, double time, int64_t *id) {
    pg_backend *p = (pg_backend *)b;
    char t[32];
    snprintf(t, sizeof t, "%.6f", time);
    PGresult *r = NULL;
    rm_status st = run(p, p->db, "INSERT INTO tenants(name, created) VALUES($1, $2) RETURNING id", 2, P(name, t), NULL,
                       "tenant add", &r);
    if (st == RAMOLE_ERR_INVALID) return rm_err(st, "tenant '%s' already exists", name);
    RM_TRY(st);
    if (id) *id = get_i64(r, 0, 0);
    PQclear(r);
    return RAMOLE_OK;
}

static rm_status pg_tenant_find(rm_reg_backend *b, const char *name, int64_t *id) {
    pg_backend *p = (pg_backend *)b;
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "SELECT id FROM tenants WHERE name = $1", 1, P(name), NULL, "tenant", &r));
    rm_status st = PQntuples(r) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "unknown tenant '%s' (ramole tenant add %s)", name, name);
    if (st == RAMOLE_OK) *id = get_i64(r, 0, 0);
    PQclear(r);
    return st;
}

static rm_status pg_tenant_list(rm_reg_backend *b, rm_reg_tenant **out, int *n) {
    pg_backend *p = (pg_backend *)b;
    PGresult *r = NULL;
    *out = NULL, *n = 0;
    RM_TRY(run(p, p->db, "SELECT id, name, created FROM tenants ORDER BY id", 0, NULL, NULL, "tenant list", &r));
    int m = PQntuples(r);
    *out = rm_calloc((size_t)(m ? m : 1), sizeof **out);
    if (!*out) { PQclear(r); return rm_err(RAMOLE_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < m; i++) {
        (*out)[i].id = get_i64(r, i, 0);
        (*out)[i].name = get_str(r, i, 1);
        (*out)[i].created = get_f(r, i, 2);
    }
    *n = m;
    PQclear(r);
    return RAMOLE_OK;
}

/* ---- adapters ----------------------------------------------------------------------------- */

#define PG_ADAPTER_COLS                                                                                         \
    "a.id, a.name, a.tenant_id, t.name, a.description, a.public, a.status, a.rank, a.alpha, a.targets, a.size, " \
    "a.hash, a.created, a.creator, a.samples, a.embedding, a.dim, a.emb_fingerprint, a.emb_layer, "            \
    "a.emb_projection, a.screening FROM adapters a JOIN tenants t ON t.id = a.tenant_id"

static rm_status read_row(PGresult *r, int i, rm_reg_adapter *a) {
    memset(a, 0, sizeof *a);
    a->id = get_i64(r, i, 0);
    a->name = get_str(r, i, 1);
    a->tenant_id = get_i64(r, i, 2);
    a->tenant = get_str(r, i, 3);
    a->description = get_str(r, i, 4);
    a->is_public = get_i64(r, i, 5) != 0;
    a->status = (rm_reg_status)get_i64(r, i, 6);
    a->rank = (int)get_i64(r, i, 7);
    a->alpha = (float)get_f(r, i, 8);
    a->targets = (unsigned)get_i64(r, i, 9);
    a->size = get_i64(r, i, 10);
    snprintf(a->hash, sizeof a->hash, "%s", PQgetvalue(r, i, 11));
    a->created = get_f(r, i, 12);
    a->creator = get_str(r, i, 13);
    a->screening = get_str(r, i, 20);
    if (!a->name || !a->tenant || !a->description || !a->creator || !a->screening) goto nomem;
    if (rm_reg_samples_from_json(PQgetvalue(r, i, 14), &a->samples, &a->n_samples) != RAMOLE_OK) goto nomem;
    a->dim = (int)get_i64(r, i, 16);
    if (!PQgetisnull(r, i, 15) && a->dim > 0) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 15), &len);
        if (raw && len == (size_t)a->dim * sizeof(float) && (a->embedding = rm_malloc(len))) memcpy(a->embedding, raw, len);
        else a->dim = 0;
        PQfreemem(raw);
    } else
        a->dim = 0;
    a->emb_fingerprint = strtoull(PQgetvalue(r, i, 17), NULL, 16);
    a->emb_layer = (int)get_i64(r, i, 18);
    snprintf(a->emb_projection, sizeof a->emb_projection, "%s", PQgetvalue(r, i, 19));
    return RAMOLE_OK;
nomem:
    rm_reg_adapter_clear(a);
    return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
}

static rm_status read_rows(PGresult *r, rm_reg_adapter **out, int *n) {
    int m = PQntuples(r);
    *out = rm_calloc((size_t)(m ? m : 1), sizeof **out), *n = 0;
    if (!*out) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m; i++) {
        rm_status st = read_row(r, i, &(*out)[i]);
        if (st != RAMOLE_OK) {
            rm_reg_adapters_free(*out, *n);
            *out = NULL, *n = 0;
            return st;
        }
        (*n)++;
    }
    return RAMOLE_OK;
}

/* The five embedding parameters of a row as text/binary values. */
typedef struct {
    char dim[16], fp[17], layer[16];
} emb_text;

static void emb_params(const rm_reg_adapter *a, emb_text *t, const char **vals, int *lens) {
    snprintf(t->dim, sizeof t->dim, "%d", a->embedding ? a->dim : 0);
    snprintf(t->fp, sizeof t->fp, "%016llx", (unsigned long long)a->emb_fingerprint);
    snprintf(t->layer, sizeof t->layer, "%d", a->emb_layer);
    vals[0] = a->embedding && a->dim > 0 ? (const char *)a->embedding : NULL;
    lens[0] = a->embedding && a->dim > 0 ? a->dim * (int)sizeof(float) : 0;
    vals[1] = t->dim, vals[2] = t->fp, vals[3] = t->layer, vals[4] = a->emb_projection;
}

static rm_status pg_adapter_insert(rm_reg_backend *b, rm_reg_adapter *a) {
    pg_backend *p = (pg_backend *)b;
    char *js = rm_reg_samples_to_json(a->samples, a->n_samples);
    if (!js) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    char tid[24], pub[4], status[8], rank[16], alpha[32], targets[16], size[24], created[32];
    snprintf(tid, sizeof tid, "%lld", (long long)a->tenant_id);
    snprintf(pub, sizeof pub, "%d", a->is_public);
    snprintf(status, sizeof status, "%d", (int)a->status);
    snprintf(rank, sizeof rank, "%d", a->rank);
    snprintf(alpha, sizeof alpha, "%.9g", (double)a->alpha);
    snprintf(targets, sizeof targets, "%u", a->targets);
    snprintf(size, sizeof size, "%lld", (long long)a->size);
    snprintf(created, sizeof created, "%.6f", a->created);
    const char *vals[19] = {a->name, tid, a->description ? a->description : "", pub, status, rank, alpha, targets,
                            size, a->hash, created, a->creator ? a->creator : "", js,
                            a->screening ? a->screening : "{}"};
    int lens[19] = {0};
    emb_text et;
    emb_params(a, &et, vals + 14, lens + 14);
    PGresult *r = NULL;
    rm_status st = run(p, p->db,
                       "INSERT INTO adapters(name, tenant_id, description, public, status, rank, alpha, targets, size,"
                       " hash, created, creator, samples, screening, embedding, dim, emb_fingerprint, emb_layer,"
                       " emb_projection) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)"
                       " RETURNING id",
                       19, vals, lens, "adapter insert", &r);
    rm_free(js);
    if (st == RAMOLE_ERR_INVALID)
        return rm_err(st, "adapter '%s' already exists in tenant '%s'", a->name, a->tenant ? a->tenant : "?");
    RM_TRY(st);
    a->id = get_i64(r, 0, 0);
    PQclear(r);
    return RAMOLE_OK;
}

static rm_status changed_one(pg_backend *p, PGresult *r, const char *what, int64_t id) {
    bool one = !strcmp(PQcmdTuples(r), "1");
    PQclear(r);
    (void)p, (void)what;
    return one ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %lld is gone", (long long)id);
}

static rm_status pg_adapter_update(rm_reg_backend *b, const rm_reg_adapter *a) {
    pg_backend *p = (pg_backend *)b;
    char status[8], id[24];
    snprintf(status, sizeof status, "%d", (int)a->status);
    snprintf(id, sizeof id, "%lld", (long long)a->id);
    const char *vals[8] = {status, a->screening ? a->screening : "{}"};
    int lens[8] = {0};
    emb_text et;
    emb_params(a, &et, vals + 2, lens + 2);
    vals[7] = id;
    PGresult *r = NULL;
    RM_TRY(run(p, p->db,
               "UPDATE adapters SET status = $1, screening = $2, embedding = $3, dim = $4, emb_fingerprint = $5,"
               " emb_layer = $6, emb_projection = $7 WHERE id = $8",
               8, vals, lens, "adapter update", &r));
    return changed_one(p, r, "update", a->id);
}

static rm_status pg_adapter_delete(rm_reg_backend *b, int64_t id) {
    pg_backend *p = (pg_backend *)b;
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)id);
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "DELETE FROM adapters WHERE id = $1", 1, P(s), NULL, "adapter delete", &r));
    return changed_one(p, r, "delete", id);
}

static rm_status pg_adapter_find(rm_reg_backend *b, int64_t tenant_id, const char *name, rm_reg_adapter *out) {
    pg_backend *p = (pg_backend *)b;
    memset(out, 0, sizeof *out);
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "SELECT " PG_ADAPTER_COLS " WHERE a.tenant_id = $1 AND a.name = $2", 2, P(tid, name), NULL,
               "adapter", &r));
    rm_status st = PQntuples(r) ? read_row(r, 0, out) : rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter named '%s'", name);
    PQclear(r);
    return st;
}

static rm_status pg_adapter_get(rm_reg_backend *b, int64_t id, rm_reg_adapter *out) {
    pg_backend *p = (pg_backend *)b;
    memset(out, 0, sizeof *out);
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)id);
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "SELECT " PG_ADAPTER_COLS " WHERE a.id = $1", 1, P(s), NULL, "adapter", &r));
    rm_status st = PQntuples(r) ? read_row(r, 0, out) : rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter with id %lld", (long long)id);
    PQclear(r);
    return st;
}

static rm_status pg_adapter_list(rm_reg_backend *b, int64_t tenant_id, rm_reg_adapter **out, int *n) {
    pg_backend *p = (pg_backend *)b;
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "SELECT " PG_ADAPTER_COLS " WHERE $1::bigint < 0 OR a.tenant_id = $1::bigint ORDER BY a.id", 1,
               P(tid), NULL, "adapter list", &r));
    rm_status st = read_rows(r, out, n);
    PQclear(r);
    return st;
}

/* ---- keys, audit ----------------------------------------------------------------------------- */

static rm_status pg_key_insert(rm_reg_backend *b, const char *hash, int64_t tenant_id, rm_reg_role role, double time,
                               int64_t *id) {
    pg_backend *p = (pg_backend *)b;
    char tid[24], ro[8], t[32];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    snprintf(ro, sizeof ro, "%d", (int)role);
    snprintf(t, sizeof t, "%.6f", time);
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "INSERT INTO keys(hash, tenant_id, role, created) VALUES($1, $2, $3, $4) RETURNING id", 4,
               P(hash, tid, ro, t), NULL, "key insert", &r));
    *id = get_i64(r, 0, 0);
    PQclear(r);
    return RAMOLE_OK;
}

static rm_status pg_key_revoke(rm_reg_backend *b, int64_t id, const char *hash, double time, int64_t *revoked) {
    pg_backend *p = (pg_backend *)b;
    char s[24], t[32];
    snprintf(s, sizeof s, "%lld", (long long)id);
    snprintf(t, sizeof t, "%.6f", time);
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "UPDATE keys SET revoked = $1 WHERE revoked IS NULL AND (id = $2 OR hash = $3) RETURNING id", 3,
               P(t, s, hash ? hash : ""), NULL, "key revoke", &r));
    rm_status st = PQntuples(r) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "no live key matches");
    if (st == RAMOLE_OK) *revoked = get_i64(r, 0, 0);
    PQclear(r);
    return st;
}

static rm_status pg_key_find(rm_reg_backend *b, const char *hash, char **tenant, rm_reg_role *role) {
    pg_backend *p = (pg_backend *)b;
    PGresult *r = NULL;
    RM_TRY(run(p, p->db,
               "SELECT t.name, k.role FROM keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = $1 AND k.revoked IS NULL",
               1, P(hash), NULL, "key", &r));
    rm_status st = PQntuples(r) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOT_FOUND, "unknown or revoked key");
    if (st == RAMOLE_OK) {
        *tenant = get_str(r, 0, 0);
        *role = (rm_reg_role)get_i64(r, 0, 1);
    }
    PQclear(r);
    return st;
}

static rm_status pg_key_count(rm_reg_backend *b, int64_t *n) {
    pg_backend *p = (pg_backend *)b;
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "SELECT count(*) FROM keys WHERE revoked IS NULL", 0, NULL, NULL, "key count", &r));
    *n = get_i64(r, 0, 0);
    PQclear(r);
    return RAMOLE_OK;
}

static rm_status pg_feedback_add(rm_reg_backend *b, const rm_reg_feedback *f, double time) {
    pg_backend *p = (pg_backend *)b;
    char t[32], rating[8];
    snprintf(t, sizeof t, "%.6f", time);
    snprintf(rating, sizeof rating, "%d", f->rating);
    return run(p, p->db, "INSERT INTO feedback(time, response_id, tenant, adapter, hash, rating, comment)"
                         " VALUES($1,$2,$3,$4,$5,$6,$7)", 7,
               P(t, f->response_id, f->tenant ? f->tenant : RM_REG_DEFAULT_TENANT, f->adapter ? f->adapter : "",
                 f->hash ? f->hash : "", rating, f->comment ? f->comment : ""),
               NULL, "feedback", NULL);
}

/* A text[] literal of n strings: each quoted, with \\ and \" escaped. rm_malloc'd, NULL when out of memory. */
static char *pg_text_array(const char *const *v, int n) {
    size_t cap = 3;
    for (int i = 0; i < n; i++) cap += 2 * strlen(v[i]) + 3;
    char *out = rm_malloc(cap), *o = out;
    if (!out) return NULL;
    *o++ = '{';
    for (int i = 0; i < n; i++) {
        if (i) *o++ = ',';
        *o++ = '"';
        for (const char *c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\') *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = 0;
    return out;
}

/* One response's rows in one statement, inside the caller's transaction. */
static rm_status pg_response_insert(pg_backend *p, const rm_reg_response *resp, const char *t) {
    const char *names[RM_REG_RESPONSE_ADAPTERS] = {""}, *hashes[RM_REG_RESPONSE_ADAPTERS] = {""};
    for (int i = 0; i < resp->n; i++) names[i] = resp->names[i], hashes[i] = resp->hashes[i];
    int rows = resp->n ? resp->n : 1;
    char *an = pg_text_array(names, rows), *ah = pg_text_array(hashes, rows);
    rm_status st = an && ah ? run(p, p->db, "INSERT INTO responses(id, seq, time, tenant, adapter, hash)"
                                            " SELECT $1, s - 1, $2, $3, a, h FROM unnest($4::text[], $5::text[])"
                                            " WITH ORDINALITY AS t(a, h, s)", 5,
                                  P(resp->id, t, resp->tenant[0] ? resp->tenant : RM_REG_DEFAULT_TENANT, an, ah), NULL,
                                  "response", NULL)
                            : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_free(an), rm_free(ah);
    return st;
}

static rm_status pg_response_add(rm_reg_backend *b, const rm_reg_response *v, int n, double time) {
    pg_backend *p = (pg_backend *)b;
    char t[32];
    snprintf(t, sizeof t, "%.6f", time);
    /* its own transaction, without pg_commit's NOTIFY: answers do not refresh other servers' pools */
    RM_TRY(run(p, p->db, "BEGIN", 0, NULL, NULL, "begin", NULL));
    rm_status st = RAMOLE_OK;
    for (int k = 0; k < n && st == RAMOLE_OK; k++) st = pg_response_insert(p, &v[k], t);
    if (st == RAMOLE_OK) st = run(p, p->db, "COMMIT", 0, NULL, NULL, "commit", NULL);
    if (st != RAMOLE_OK) pg_rollback(b);
    return st;
}

static rm_status pg_response_rate(rm_reg_backend *b, const char *id, const char *tenant, int rating,
                                  const char *comment, double since, double time, int *n, int *n_named) {
    pg_backend *p = (pg_backend *)b;
    char t[32], s0[32], rt[8];
    snprintf(t, sizeof t, "%.6f", time);
    snprintf(s0, sizeof s0, "%.6f", since);
    snprintf(rt, sizeof rt, "%d", rating);
    PGresult *r = NULL;
    *n = *n_named = 0;
    RM_TRY(run(p, p->db, "INSERT INTO feedback(time, response_id, tenant, adapter, hash, rating, comment)"
                         " SELECT $1, id, tenant, adapter, hash, $2, $3 FROM responses"
                         " WHERE id = $4 AND tenant = $5 AND time >= $6 ORDER BY seq RETURNING adapter", 6,
               P(t, rt, comment, id, tenant, s0), NULL, "rating", &r));
    *n = PQntuples(r);
    for (int i = 0; i < *n; i++) *n_named += PQgetlength(r, i, 0) > 0;
    PQclear(r);
    return RAMOLE_OK;
}

static rm_status pg_response_expire(rm_reg_backend *b, double before, int64_t *n) {
    pg_backend *p = (pg_backend *)b;
    char t[32];
    snprintf(t, sizeof t, "%.6f", before);
    PGresult *r = NULL;
    *n = 0;
    RM_TRY(run(p, p->db, "DELETE FROM responses WHERE time < $1 RETURNING 1", 1, P(t), NULL, "expiring responses", &r));
    *n = PQntuples(r);
    PQclear(r);
    return RAMOLE_OK;
}

static rm_status pg_ratings(rm_reg_backend *b, const char *hash, rm_reg_rating **out, int *n) {
    pg_backend *p = (pg_backend *)b;
    *out = NULL;
    *n = 0;
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "SELECT adapter, hash, sum(CASE WHEN rating > 0 THEN 1 ELSE 0 END),"
                         " sum(CASE WHEN rating < 0 THEN 1 ELSE 0 END) FROM feedback"
                         " WHERE $1::text IS NULL OR hash = $1 GROUP BY adapter, hash ORDER BY adapter, hash",
               1, P(hash), NULL, "ratings", &r));
    int rows = PQntuples(r);
    rm_status st = RAMOLE_OK;
    if (rows && !(*out = rm_calloc((size_t)rows, sizeof **out))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; st == RAMOLE_OK && i < rows; i++) {
        rm_reg_rating *x = &(*out)[i];
        x->adapter = get_str(r, i, 0);
        snprintf(x->hash, sizeof x->hash, "%s", PQgetvalue(r, i, 1));
        x->up = get_i64(r, i, 2);
        x->down = get_i64(r, i, 3);
        *n = i + 1;
    }
    PQclear(r);
    return st;
}

static rm_status pg_audit_append(rm_reg_backend *b, const rm_reg_audit *a) {
    pg_backend *p = (pg_backend *)b;
    char t[32];
    snprintf(t, sizeof t, "%.6f", a->time);
    return run(p, p->db, "INSERT INTO audit(time, actor, action, target, hash, detail) VALUES($1,$2,$3,$4,$5,$6)", 6,
               P(t, a->actor ? a->actor : "", a->action, a->target ? a->target : "", a->hash ? a->hash : "",
                 a->detail ? a->detail : ""),
               NULL, "audit", NULL);
}

static rm_status pg_audit_list(rm_reg_backend *b, double since, rm_reg_audit **out, int *n) {
    pg_backend *p = (pg_backend *)b;
    char t[32];
    snprintf(t, sizeof t, "%.6f", since);
    PGresult *r = NULL;
    *out = NULL, *n = 0;
    RM_TRY(run(p, p->db, "SELECT id, time, actor, action, target, hash, detail FROM audit WHERE time >= $1 ORDER BY id",
               1, P(t), NULL, "audit list", &r));
    int m = PQntuples(r);
    *out = rm_calloc((size_t)(m ? m : 1), sizeof **out);
    if (!*out) { PQclear(r); return rm_err(RAMOLE_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < m; i++) {
        rm_reg_audit *a = &(*out)[i];
        a->id = get_i64(r, i, 0), a->time = get_f(r, i, 1);
        a->actor = get_str(r, i, 2), a->action = get_str(r, i, 3), a->target = get_str(r, i, 4);
        a->hash = get_str(r, i, 5), a->detail = get_str(r, i, 6);
    }
    *n = m;
    PQclear(r);
    return RAMOLE_OK;
}

/* ---- blobs: chunks in the database, a local cache by hash ------------------------------------ */

static rm_status pg_blob_put(rm_reg_backend *b, const char *hash, const void *data, size_t n) {
    pg_backend *p = (pg_backend *)b;
    pthread_mutex_lock(&p->bc_lock);
    PGresult *r = NULL;
    rm_status st = run(p, p->bc, "SELECT 1 FROM blob_info WHERE hash = $1", 1, P(hash), NULL, "blob", &r);
    bool have = st == RAMOLE_OK && PQntuples(r) > 0;
    PQclear(r);
    if (st == RAMOLE_OK && !have) { /* chunks, then the info row, in one transaction */
        int chunks = (int)((n + RM_PG_CHUNK - 1) / RM_PG_CHUNK);
        st = run(p, p->bc, "BEGIN", 0, NULL, NULL, "blob begin", NULL);
        for (int c = 0; st == RAMOLE_OK && c < chunks; c++) {
            char seq[16];
            snprintf(seq, sizeof seq, "%d", c);
            size_t off = (size_t)c * RM_PG_CHUNK, len = n - off < RM_PG_CHUNK ? n - off : RM_PG_CHUNK;
            const char *vals[3] = {hash, seq, (const char *)data + off};
            int lens[3] = {0, 0, (int)len};
            st = run(p, p->bc, "INSERT INTO blobs(hash, seq, data) VALUES($1, $2, $3) ON CONFLICT DO NOTHING", 3, vals,
                     lens, "blob chunk", NULL);
        }
        char sz[24], nc[16];
        snprintf(sz, sizeof sz, "%zu", n);
        snprintf(nc, sizeof nc, "%d", chunks);
        if (st == RAMOLE_OK)
            st = run(p, p->bc,
                     "INSERT INTO blob_info(hash, size, n_chunks, created) VALUES($1, $2, $3,"
                     " extract(epoch from now())) ON CONFLICT DO NOTHING",
                     3, P(hash, sz, nc), NULL, "blob info", NULL);
        if (st == RAMOLE_OK) st = run(p, p->bc, "COMMIT", 0, NULL, NULL, "blob commit", NULL);
        else PQclear(PQexec(p->bc, "ROLLBACK"));
    }
    pthread_mutex_unlock(&p->bc_lock);
    /* the uploader's own cache gets the bytes at once */
    if (st == RAMOLE_OK) rm_blob_dir_put(p->cache, hash, data, n);
    return st;
}

static rm_status pg_blob_file(rm_reg_backend *b, const char *hash, char **path) {
    pg_backend *p = (pg_backend *)b;
    *path = rm_blob_dir_path(p->cache, hash);
    if (!*path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    char got[65];
    if (rm_file_exists(*path) && rm_sha256_file(*path, got, NULL) == RAMOLE_OK && !strcmp(got, hash)) return RAMOLE_OK;
    /* fetch the chunks into the cache */
    pthread_mutex_lock(&p->bc_lock);
    PGresult *r = NULL;
    rm_status st = run(p, p->bc,
                       "SELECT b.data FROM blob_info i JOIN blobs b ON b.hash = i.hash WHERE i.hash = $1 ORDER BY b.seq",
                       1, P(hash), NULL, "blob fetch", &r);
    pthread_mutex_unlock(&p->bc_lock);
    unsigned char *buf = NULL;
    size_t total = 0;
    if (st == RAMOLE_OK && PQntuples(r) == 0) st = rm_err(RAMOLE_ERR_NOT_FOUND, "blob %s is missing from the registry", hash);
    for (int i = 0; st == RAMOLE_OK && i < PQntuples(r); i++) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 0), &len);
        unsigned char *nb = raw ? rm_realloc(buf, total + len + 1) : NULL;
        if (!nb) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else {
            buf = nb;
            memcpy(buf + total, raw, len);
            total += len;
        }
        PQfreemem(raw);
    }
    PQclear(r);
    if (st == RAMOLE_OK) {
        rm_sha256_hex(buf, total, got);
        if (strcmp(got, hash)) st = rm_err(RAMOLE_ERR_FORMAT, "blob %s in the registry does not match its hash", hash);
    }
    if (st == RAMOLE_OK) {
        remove(*path);
        st = rm_blob_dir_put(p->cache, hash, buf, total);
    }
    rm_free(buf);
    if (st != RAMOLE_OK) {
        rm_free(*path);
        *path = NULL;
    }
    return st;
}

static rm_status pg_blob_list(rm_reg_backend *b, char ***hashes, double **mtimes, int *n) {
    pg_backend *p = (pg_backend *)b;
    *hashes = NULL, *mtimes = NULL, *n = 0;
    pthread_mutex_lock(&p->bc_lock);
    PGresult *r = NULL;
    rm_status st = run(p, p->bc, "SELECT hash, created FROM blob_info", 0, NULL, NULL, "blob list", &r);
    pthread_mutex_unlock(&p->bc_lock);
    RM_TRY(st);
    int m = PQntuples(r);
    *hashes = rm_calloc((size_t)(m ? m : 1), sizeof **hashes);
    *mtimes = rm_calloc((size_t)(m ? m : 1), sizeof **mtimes);
    if (!*hashes || !*mtimes) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; st == RAMOLE_OK && i < m; i++) {
        (*hashes)[i] = get_str(r, i, 0);
        (*mtimes)[i] = get_f(r, i, 1);
        (*n)++;
    }
    PQclear(r);
    return st;
}

static rm_status pg_blob_delete(rm_reg_backend *b, const char *hash) {
    pg_backend *p = (pg_backend *)b;
    pthread_mutex_lock(&p->bc_lock);
    rm_status st = run(p, p->bc, "BEGIN", 0, NULL, NULL, "blob delete", NULL);
    if (st == RAMOLE_OK) st = run(p, p->bc, "DELETE FROM blob_info WHERE hash = $1", 1, P(hash), NULL, "blob delete", NULL);
    if (st == RAMOLE_OK) st = run(p, p->bc, "DELETE FROM blobs WHERE hash = $1", 1, P(hash), NULL, "blob delete", NULL);
    if (st == RAMOLE_OK) st = run(p, p->bc, "COMMIT", 0, NULL, NULL, "blob delete", NULL);
    else PQclear(PQexec(p->bc, "ROLLBACK"));
    pthread_mutex_unlock(&p->bc_lock);
    char *path = rm_blob_dir_path(p->cache, hash);
    if (path) remove(path);
    rm_free(path);
    return st;
}

static rm_status pg_data_version(rm_reg_backend *b, uint64_t *v) {
    pg_backend *p = (pg_backend *)b;
    if (!PQconsumeInput(p->db)) return pg_fail(p, p->db, NULL, "reading notifications");
    PGnotify *note;
    while ((note = PQnotifies(p->db))) {
        if (note->be_pid != p->pid) p->notes++;
        PQfreemem(note);
    }
    *v = p->notes;
    return RAMOLE_OK;
}

static const char *pg_scratch_dir(rm_reg_backend *b) { return ((pg_backend *)b)->scratch; }

static void pg_close(rm_reg_backend *b) {
    pg_backend *p = (pg_backend *)b;
    if (!p) return;
    if (p->db) PQfinish(p->db);
    if (p->bc) PQfinish(p->bc);
    pthread_mutex_destroy(&p->bc_lock);
    rm_free(p->url), rm_free(p->cache), rm_free(p->scratch);
    rm_free(p);
}

static const rm_reg_backend_ops pg_ops = {
    .name = "postgresql", .close = pg_close, .begin = pg_begin, .commit = pg_commit, .rollback = pg_rollback,
    .meta_get = pg_meta_get, .meta_set = pg_meta_set, .tenant_add = pg_tenant_add, .tenant_find = pg_tenant_find,
    .tenant_list = pg_tenant_list, .adapter_insert = pg_adapter_insert, .adapter_update = pg_adapter_update,
    .adapter_delete = pg_adapter_delete, .adapter_find = pg_adapter_find, .adapter_get = pg_adapter_get, .adapter_list = pg_adapter_list,
    .key_insert = pg_key_insert, .key_revoke = pg_key_revoke, .key_find = pg_key_find, .key_count = pg_key_count, .feedback_add = pg_feedback_add, .ratings = pg_ratings,
    .response_add = pg_response_add, .response_rate = pg_response_rate, .response_expire = pg_response_expire,
    .audit_append = pg_audit_append, .audit_list = pg_audit_list, .blob_put = pg_blob_put,
    .blob_file = pg_blob_file, .blob_list = pg_blob_list, .blob_delete = pg_blob_delete,
    .data_version = pg_data_version, .scratch_dir = pg_scratch_dir,
};

/* ---- open and migrate ------------------------------------------------------------------------ */

static rm_status pg_migrate(pg_backend *p, bool create, bool *fresh) {
    PGresult *r = NULL;
    RM_TRY(run(p, p->db, "BEGIN", 0, NULL, NULL, "migrate", NULL));
    rm_status st = run(p, p->db, "SELECT pg_advisory_xact_lock(7362616)", 0, NULL, NULL, "migrate", NULL);
    if (st == RAMOLE_OK)
        st = run(p, p->db, "CREATE TABLE IF NOT EXISTS ramole_schema(version INTEGER NOT NULL)", 0, NULL, NULL,
                 "migrate", NULL);
    if (st == RAMOLE_OK) st = run(p, p->db, "SELECT version FROM ramole_schema", 0, NULL, NULL, "migrate", &r);
    int v = st == RAMOLE_OK && PQntuples(r) ? (int)get_i64(r, 0, 0) : 0;
    bool had_row = st == RAMOLE_OK && PQntuples(r) > 0;
    PQclear(r);
    if (st == RAMOLE_OK && v > RM_REG_SCHEMA_VERSION)
        st = rm_err(RAMOLE_ERR_UNSUPPORTED,
                    "%s: registry schema version %d is newer than this ramole understands (%d); use a newer ramole",
                    p->url, v, RM_REG_SCHEMA_VERSION);
    else if (st == RAMOLE_OK && v == 0 && !create)
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "%s holds no registry (ramole registry init)", p->url);
    if (st == RAMOLE_OK) *fresh = v == 0;
    for (; st == RAMOLE_OK && v < RM_REG_SCHEMA_VERSION; v++) {
        PGresult *m = PQexec(p->db, pg_migrations[v]);
        if (PQresultStatus(m) != PGRES_COMMAND_OK) st = pg_fail(p, p->db, m, "migrate");
        PQclear(m);
        char num[16];
        snprintf(num, sizeof num, "%d", v + 1);
        if (st == RAMOLE_OK)
            st = run(p, p->db, had_row ? "UPDATE ramole_schema SET version = $1" : "INSERT INTO ramole_schema VALUES($1)",
                     1, P(num), NULL, "migrate", NULL);
        had_row = true;
    }
    if (st == RAMOLE_OK) st = run(p, p->db, "COMMIT", 0, NULL, NULL, "migrate", NULL);
    else PQclear(PQexec(p->db, "ROLLBACK"));
    return st;
}

static char *cache_dir(void) {
    const char *env = getenv("RAMOLE_BLOB_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) return rm_strdup(env);
    if (xdg && *xdg) return rm_asprintf("%s/ramole/blobs", xdg);
    return rm_asprintf("%s/.cache/ramole/blobs", home && *home ? home : "/tmp");
}

static rm_status pg_connect(pg_backend *p, PGconn **c) {
    *c = PQconnectdb(p->url);
    if (*c && PQstatus(*c) == CONNECTION_OK) {
        PQclear(PQexec(*c, "SET client_min_messages = warning"));
        return RAMOLE_OK;
    }
    return rm_err(RAMOLE_ERR_IO, "registry %s: cannot connect: %s", p->url, *c ? PQerrorMessage(*c) : "out of memory");
}

rm_status rm_reg_pg_open(const char *url, bool create, rm_reg_backend **out, bool *fresh) {
    *out = NULL;
    pg_backend *p = rm_calloc(1, sizeof *p);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    p->base.ops = &pg_ops;
    pthread_mutex_init(&p->bc_lock, NULL);
    p->url = rm_strdup(url);
    p->cache = cache_dir();
    p->scratch = p->cache ? rm_asprintf("%s/tmp", p->cache) : NULL;
    rm_status st = p->url && p->cache && p->scratch ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) { /* the cache's parent folders */
        for (char *s = strchr(p->cache + 1, '/'); s; s = strchr(s + 1, '/')) {
            *s = 0;
            mkdir(p->cache, 0755);
            *s = '/';
        }
        st = rm_blob_dir_init(p->cache);
    }
    if (st == RAMOLE_OK) st = pg_connect(p, &p->db);
    if (st == RAMOLE_OK) st = pg_connect(p, &p->bc);
    if (st == RAMOLE_OK) st = pg_migrate(p, create, fresh);
    if (st == RAMOLE_OK) st = run(p, p->db, "LISTEN ramole_registry", 0, NULL, NULL, "listen", NULL);
    if (st != RAMOLE_OK) {
        pg_close(&p->base);
        return st;
    }
    p->pid = PQbackendPID(p->db);
    *out = &p->base;
    return RAMOLE_OK;
}
