/*
 * test_registry.c — the adapter registry: the pool's top-k against a
 * brute-force reference, concurrent writers and readers, tenant isolation,
 * uploads killed at random moments, schema versions, blobs, screening,
 * governance, and bad input that must change nothing.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include "kernels/kernels.h"
#include "lora/adapter.h"
#include "registry/backend.h"
#include "registry/pool.h"
#include "registry/registry.h"
#include "registry/screen.h"
#include "retrieval/embed.h"
#include "test.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

/* ---- fixtures ------------------------------------------------------------------------ */

/* The byte-level tokenizer.json in dir. */
static void write_byte_tokenizer(const char *dir) {
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *js = rm_test_byte_tokenizer_json();
    CHECK(js && rm_file_write_atomic(path, js, strlen(js)) == RAMOLE_OK);
    free(js);
}

/* A tiny random llama with the byte tokenizer saved as an HF folder under the scratch dir; its path. */
static const char *fixture_model(void) {
    static char path[512];
    if (path[0]) return path;
    char tk[512];
    snprintf(tk, sizeof tk, "%s/reg_tok", rm_test_tmp_dir());
    snprintf(path, sizeof path, "%s/reg_model", rm_test_tmp_dir());
    write_byte_tokenizer(tk);
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = 256, c.hidden = 32, c.ffn = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2;
    c.head_dim = 8, c.rope.n_rot = 8, c.max_pos = 128;
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 7, 0.1f, &m));
    CHECK_OK(rm_model_set_tokenizer(m, tk));
    CHECK_OK(rm_model_save(m, RM_SOURCE_HF, -1, path));
    rm_model_free(m);
    return path;
}

/* Random adapter `seed` saved as a PEFT folder; its path in buf. */
static const char *fixture_adapter(const rm_model *m, int seed, int rank, float std, char *buf, size_t n) {
    snprintf(buf, n, "%s/reg_adapter_%d_%d_%g", rm_test_tmp_dir(), seed, rank, (double)std);
    if (rm_dir_exists(buf)) return buf;
    rm_adapter *a = NULL;
    CHECK_OK(rm_adapter_random(m, rank, (float)rank, (1u << RM_TARGET_COUNT) - 1, (uint64_t)seed, std, &a));
    CHECK_OK(rm_adapter_save_peft(a, m, buf));
    rm_adapter_free(a);
    return buf;
}

static int n_fresh;

/*
 * The backend under test: SQLite files by default; with RAMOLE_TEST_PG set
 * to a PostgreSQL URL (bash scripts/pg.sh start prints one; make test-pg),
 * every fresh registry is a new database on that server, and the same
 * tests run against the PostgreSQL backend. `db` below is the SQLite path
 * or the PostgreSQL URL.
 */
static const char *pg_base(void) {
    const char *u = getenv("RAMOLE_TEST_PG");
    return u && *u ? u : NULL;
}

static void url_of(const char *db, char *url, size_t n) {
    if (pg_base()) snprintf(url, n, "%s", db);
    else snprintf(url, n, "sqlite:%s", db);
}

/* Run SQL on a PostgreSQL URL; the first column of the first row as an int (-1 if none). */
static void quiet_notice(void *arg, const char *msg) { (void)arg, (void)msg; }

static int pg_sql(const char *url, const char *q) {
    PGconn *c = PQconnectdb(url);
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, q);
    ExecStatusType st = PQresultStatus(r);
    CHECK_MSG(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", q, PQerrorMessage(c));
    int v = st == PGRES_TUPLES_OK && PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* A new registry URL (nothing there yet) into url, and its `db`. */
static void fresh_url(char *url, size_t n, char *path, size_t pn) {
    if (pg_base()) {
        char name[64], q[160], cache[600];
        snprintf(name, sizeof name, "reg_%d_%d", (int)getpid(), n_fresh++);
        snprintf(cache, sizeof cache, "%s/reg_pg_cache", rm_test_tmp_dir());
        setenv("RAMOLE_BLOB_CACHE", cache, 1);
        snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s", name);
        pg_sql(pg_base(), q);
        snprintf(q, sizeof q, "CREATE DATABASE %s", name);
        pg_sql(pg_base(), q);
        /* the base URL with its database name replaced */
        const char *b = pg_base(), *db = strchr(strstr(b, "://") + 3, '/'), *end = db ? strchr(db, '?') : NULL;
        snprintf(path, pn, "%.*s/%s%s", (int)(db ? db - b : (long)strlen(b)), b, name, end ? end : "");
        snprintf(url, n, "%s", path);
        return;
    }
    snprintf(path, pn, "%s/reg_%d_%d.db", rm_test_tmp_dir(), (int)getpid(), n_fresh++);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s-wal' '%s-shm' '%s.blobs'", path, path, path, path);
    if (system(cmd) != 0) CHECK(!"rm failed");
    snprintf(url, n, "sqlite:%s", path);
}

/* SQL on the registry's own database (SQLite file or PostgreSQL); first column of the first row, or -1. */
static int sql_int(const char *db, const char *q) {
    if (pg_base()) return pg_sql(db, q);
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int v = -1;
    CHECK(sqlite3_open(db, &h) == SQLITE_OK);
    int rc = sqlite3_prepare_v2(h, q, -1, &st, NULL);
    CHECK_MSG(rc == SQLITE_OK, "%s: %s", q, sqlite3_errmsg(h));
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    CHECK_MSG(rc == SQLITE_DONE || rc == SQLITE_ROW, "%s: %s", q, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void sql_exec(const char *db, const char *q) {
    if (pg_base()) {
        pg_sql(db, q);
        return;
    }
    sqlite3 *h = NULL;
    CHECK(sqlite3_open(db, &h) == SQLITE_OK);
    CHECK_MSG(sqlite3_exec(h, q, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", q, sqlite3_errmsg(h));
    sqlite3_close(h);
}

static int schema_version(const char *db) {
    return sql_int(db, pg_base() ? "SELECT version FROM ramole_schema" : "PRAGMA user_version");
}

static void set_schema_version(const char *db, int v) {
    char q[96];
    snprintf(q, sizeof q, pg_base() ? "UPDATE ramole_schema SET version = %d" : "PRAGMA user_version = %d", v);
    sql_exec(db, q);
}

static rm_registry *fresh_registry(bool approval, double kl, char *path, size_t pn) {
    char url[600];
    fresh_url(url, sizeof url, path, pn);
    rm_registry_init_opts o = {.model = fixture_model(), .layer = RM_HIDDEN_FINAL, .require_approval = approval,
                               .kl_threshold = kl, .actor = "test"};
    rm_registry *r = NULL;
    CHECK_OK(rm_registry_create(url, &o, &r));
    return r;
}

/* A fresh registry, its base in *m, and the adapter of seed 1 (rank 4) saved at p. */
static rm_registry *registry_with_adapter(bool approval, double kl, char *db, size_t dn, rm_model **m, char *p,
                                          size_t pn) {
    rm_registry *r = fresh_registry(approval, kl, db, dn);
    *m = NULL;
    CHECK_OK(rm_registry_base(r, m));
    fixture_adapter(*m, 1, 4, 0.02f, p, pn);
    return r;
}

static const char *const task_samples[4][3] = {
    {"reverse the word apple", "reverse the word stone", "write river backwards"},
    {"add 3 and 4", "what is 12 plus 9", "compute the sum 5 + 6"},
    {"translate to german: the house", "in german, say cloud", "german for my window"},
    {"is this review happy: I loved it", "positive or negative: awful", "rate the feeling: boring"},
};

static rm_status add(rm_registry *r, const char *path, const char *name, const char *tenant, bool priv, int task,
                     int64_t *id) {
    rm_reg_add_opts o = {.path = path, .name = name, .tenant = tenant, .is_private = priv,
                         .samples = task_samples[task % 4], .n_samples = 3, .actor = "test"};
    return rm_registry_adapter_add(r, &o, id);
}

/* ---- the pool against brute force ------------------------------------------------------- */

typedef struct {
    int64_t id, tenant;
    bool pub, live;
    float v[64];
} ref_row;

static int cmp_hit(const void *a, const void *b) {
    const rm_reg_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Reference: every visible row scored by the pool's definition (the f32
 * dot of the normalised query and row), all of them sorted by score then
 * id, the first k. */
static int brute_topk(const ref_row *rows, int n, int dim, const float *q, int64_t tenant, int k, rm_reg_hit *out) {
    float qn[64], un[64];
    bool ok;
    rm_reg_pool_normalise(q, dim, qn, &ok);
    rm_reg_hit *all = malloc(((size_t)n + 1) * sizeof *all);
    int m = 0;
    for (int r = 0; r < n; r++) {
        if (!rows[r].live || !(rows[r].pub || rows[r].tenant == tenant)) continue;
        rm_reg_pool_normalise(rows[r].v, dim, un, &ok);
        all[m].id = rows[r].id;
        all[m].score = rm_vec_dot(qn, un, dim);
        m++;
    }
    qsort(all, (size_t)m, sizeof *all, cmp_hit);
    int c = m < k ? m : k;
    memcpy(out, all, (size_t)c * sizeof *out);
    free(all);
    return c;
}

TEST(registry_pool_topk_matches_brute_force) {
    static const int sizes[] = {0, 1, 2, 3, 7, 31, 100, 513, 2000};
    static const int dims[] = {1, 4, 17, 64};
    uint64_t rng = 42;
    int cases = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            int n = sizes[si], dim = dims[di];
            rm_reg_pool *p = NULL;
            CHECK_OK(rm_reg_pool_new(dim, &p));
            ref_row *rows = calloc((size_t)n + 1, sizeof *rows);
            for (int r = 0; r < n; r++) {
                rows[r].id = (int64_t)(rm_rng_next(&rng) % 100000) * 4096 + r; /* unique, unordered */
                rows[r].tenant = (int64_t)(rm_rng_next(&rng) % 4);
                rows[r].pub = rm_rng_uniform(&rng) < 0.5;
                rows[r].live = true;
                /* few distinct values so that exact ties happen */
                for (int i = 0; i < dim; i++) rows[r].v[i] = (float)((int)(rm_rng_next(&rng) % 5) - 2);
                if (rows[r].v[0] == 0) rows[r].v[0] = 1;
                char name[32];
                snprintf(name, sizeof name, "a%lld", (long long)rows[r].id);
                CHECK_OK(rm_reg_pool_add(p, rows[r].id, rows[r].tenant, rows[r].pub, name, rows[r].v));
            }
            for (int r = 0; r < n; r++) /* remove a third, incrementally */
                if (rm_rng_uniform(&rng) < 0.33) {
                    CHECK(rm_reg_pool_remove(p, rows[r].id));
                    rows[r].live = false;
                }
            for (int qn = 0; qn < 12; qn++) {
                float q[64];
                for (int i = 0; i < dim; i++) q[i] = (float)((int)(rm_rng_next(&rng) % 5) - 2);
                q[0] += 0.5f;
                int64_t tenant = (int64_t)(rm_rng_next(&rng) % 5);
                int k = 1 + (int)(rm_rng_next(&rng) % (size_t)(n + 3));
                rm_reg_hit *got = malloc((size_t)k * sizeof *got), *want = malloc((size_t)k * sizeof *want);
                int ng = rm_reg_pool_search(p, q, tenant, k, got), nw = brute_topk(rows, n, dim, q, tenant, k, want);
                CHECK_MSG(ng == nw, "n %d dim %d k %d: %d hits, reference %d", n, dim, k, ng, nw);
                for (int j = 0; j < ng && j < nw; j++) {
                    CHECK_MSG(got[j].id == want[j].id, "n %d dim %d k %d hit %d: id %lld, reference %lld", n, dim, k,
                              j, (long long)got[j].id, (long long)want[j].id);
                    CHECK_NEAR(got[j].score, want[j].score, 1e-6);
                    char name[32];
                    snprintf(name, sizeof name, "a%lld", (long long)got[j].id);
                    CHECK(!strcmp(got[j].name, name));
                }
                free(got), free(want);
                cases++;
            }
            free(rows);
            rm_reg_pool_free(p);
        }
    CHECK(cases == 9 * 4 * 12);
}

/* ---- concurrent writers and readers ------------------------------------------------------- */

enum { CW_WRITERS = 2, CW_READERS = 2, CW_IDS = 200, CW_DIM = 8 };

typedef struct {
    rm_reg_pool *p;
    int w;
    atomic_int *stop;
    int final[CW_IDS]; /* writer w's ids w*CW_IDS + i: 1 when present at the end */
    int bad;
} cw_arg;

/* The vector of id: its id encoded so a reader can tell a torn row. */
static void cw_vec(int64_t id, float *v) {
    for (int i = 0; i < CW_DIM; i++) v[i] = (float)((id * 31 + i * 7) % 13) + 1.0f;
}

static void *cw_writer(void *arg) {
    cw_arg *a = arg;
    uint64_t rng = 100 + (uint64_t)a->w;
    for (int it = 0; it < 3000; it++) {
        int i = (int)(rm_rng_next(&rng) % CW_IDS);
        int64_t id = (int64_t)a->w * CW_IDS + i;
        if (a->final[i]) {
            rm_reg_pool_remove(a->p, id);
            a->final[i] = 0;
        } else {
            float v[CW_DIM];
            cw_vec(id, v);
            if (rm_reg_pool_add(a->p, id, a->w, true, "x", v) != RAMOLE_OK) a->bad++;
            a->final[i] = 1;
        }
    }
    return NULL;
}

static void *cw_reader(void *arg) {
    cw_arg *a = arg;
    rm_reg_hit hits[16];
    uint64_t rng = 7 + (uint64_t)a->w;
    while (!atomic_load(a->stop)) {
        int64_t probe = (int64_t)(rm_rng_next(&rng) % (CW_WRITERS * CW_IDS));
        float q[CW_DIM];
        cw_vec(probe, q);
        int n = rm_reg_pool_search(a->p, q, 0, 16, hits);
        for (int j = 0; j < n; j++) {
            if (hits[j].id < 0 || hits[j].id >= CW_WRITERS * CW_IDS || strcmp(hits[j].name, "x")) a->bad++;
            if (j && cmp_hit(&hits[j - 1], &hits[j]) > 0) a->bad++;
        }
    }
    return NULL;
}

TEST(registry_pool_concurrent_add_remove_search) {
    rm_reg_pool *p = NULL;
    CHECK_OK(rm_reg_pool_new(CW_DIM, &p));
    atomic_int stop = 0;
    cw_arg w[CW_WRITERS], rd[CW_READERS];
    pthread_t tw[CW_WRITERS], tr[CW_READERS];
    for (int i = 0; i < CW_READERS; i++) {
        rd[i] = (cw_arg){.p = p, .w = i, .stop = &stop};
        pthread_create(&tr[i], NULL, cw_reader, &rd[i]);
    }
    for (int i = 0; i < CW_WRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].p = p, w[i].w = i, w[i].stop = &stop;
        pthread_create(&tw[i], NULL, cw_writer, &w[i]);
    }
    for (int i = 0; i < CW_WRITERS; i++) pthread_join(tw[i], NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < CW_READERS; i++) pthread_join(tr[i], NULL);
    int expect = 0, lost = 0;
    for (int i = 0; i < CW_WRITERS; i++) {
        CHECK(w[i].bad == 0);
        for (int j = 0; j < CW_IDS; j++) {
            expect += w[i].final[j];
            lost += w[i].final[j] != rm_reg_pool_contains(p, (int64_t)i * CW_IDS + j);
        }
    }
    for (int i = 0; i < CW_READERS; i++) CHECK(rd[i].bad == 0);
    CHECK_MSG(lost == 0, "%d ids differ from the writers' final state", lost);
    CHECK(rm_reg_pool_size(p) == expect);
    rm_reg_pool_free(p);
}

/* ---- the registry end to end -------------------------------------------------------------- */

static int count_blobs(const char *db) {
    char url[700];
    url_of(db, url, sizeof url);
    rm_reg_backend *b = NULL;
    bool fresh = false;
    CHECK_OK(rm_reg_backend_open(url, false, &b, &fresh));
    char **h = NULL;
    double *t = NULL;
    int n = 0, blobs = 0;
    if (b) CHECK_OK(b->ops->blob_list(b, &h, &t, &n));
    for (int i = 0; i < n; i++) {
        blobs += strncmp(h[i], "tmp/", 4) != 0;
        rm_free(h[i]);
    }
    rm_free(h), rm_free(t);
    if (b) b->ops->close(b);
    return blobs;
}

/* Make every stored blob an hour old (orphans younger than a minute are never collected). */
static void age_blobs(const char *db) {
    if (pg_base()) {
        sql_exec(db, "UPDATE blob_info SET created = created - 3600");
        return;
    }
    char dir[700];
    snprintf(dir, sizeof dir, "%s.blobs", db);
    char **hs = NULL;
    double *ts = NULL;
    int nh = 0;
    CHECK_OK(rm_blob_dir_list(dir, &hs, &ts, &nh));
    for (int i = 0; i < nh; i++) {
        char *bp = rm_blob_dir_path(dir, hs[i]);
        struct utimbuf old = {.actime = time(NULL) - 3600, .modtime = time(NULL) - 3600};
        utime(bp, &old);
        rm_free(bp), rm_free(hs[i]);
    }
    rm_free(hs), rm_free(ts);
}

static int count_audit(rm_registry *r) {
    rm_reg_audit *a = NULL;
    int n = 0;
    CHECK_OK(rm_registry_audit_list(r, 0, &a, &n));
    rm_reg_audits_free(a, n);
    return n;
}

static int count_adapters(rm_registry *r) {
    rm_reg_adapter *a = NULL;
    int n = 0;
    CHECK_OK(rm_registry_adapter_list(r, NULL, &a, &n));
    rm_reg_adapters_free(a, n);
    return n;
}

TEST(registry_add_retrieve_and_lifecycle) {
    char db[600], p1[600], p2[600];
    rm_model *m = NULL;
    rm_registry *r = registry_with_adapter(false, 0, db, sizeof db, &m, p1, sizeof p1);
    fixture_adapter(m, 2, 8, 0.02f, p2, sizeof p2);
    int64_t id1 = -1, id2 = -1, id3 = -1;
    CHECK_OK(add(r, p1, "rev", NULL, false, 0, &id1));
    CHECK_OK(add(r, p2, "sum", NULL, false, 1, &id2));
    CHECK_OK(add(r, p1, "rev-copy", NULL, false, 2, &id3)); /* same content: one blob */
    CHECK(id1 >= 1 && id2 > id1 && id3 > id2);
    CHECK(count_blobs(db) == 2);
    rm_reg_adapter a;
    CHECK_OK(rm_registry_adapter_get(r, NULL, "rev", &a));
    CHECK(a.status == RM_REG_ACTIVE && a.rank == 4 && a.n_samples == 3 && a.dim == 32);
    CHECK(a.emb_fingerprint == rm_model_fingerprint(m) && a.emb_layer == RM_HIDDEN_FINAL && !a.emb_projection[0]);
    CHECK(strstr(a.screening, "\"kl\":") && strstr(a.screening, "\"finite\":true"));
    char hash1[65];
    snprintf(hash1, sizeof hash1, "%s", a.hash);
    rm_reg_adapter_clear(&a);
    /* the very next retrieval sees it; a reverse-like text finds "rev" first */
    rm_reg_hit hits[8];
    int n = 0;
    CHECK_OK(rm_registry_retrieve(r, "reverse the word cloud", NULL, 3, hits, &n));
    CHECK(n == 3 && !strcmp(hits[0].name, "rev"));
    /* the adapter source: a GGUF file with the content hash */
    char *path = NULL, h[65];
    CHECK_OK(rm_registry_adapter_file(r, "default", "rev", &path, h));
    char got[65];
    CHECK_OK(rm_sha256_file(path, got, NULL));
    CHECK(!strcmp(got, hash1) && !strcmp(h, hash1));
    rm_adapter *back = NULL;
    CHECK_OK(rm_adapter_load(m, path, &back));
    CHECK(back && back->max_rank == 4);
    rm_adapter_free(back);
    rm_free(path);
    /* by id, as a retrieval hit names it; a private adapter of another tenant is not found */
    CHECK_OK(rm_registry_adapter_file_id(r, NULL, id1, &path, h));
    CHECK(path && !strcmp(h, hash1));
    rm_free(path);
    CHECK_ERR(rm_registry_adapter_file_id(r, NULL, 9999, &path, h), RAMOLE_ERR_NOT_FOUND);
    /* disable: leaves retrieval at once; enable brings it back */
    CHECK_OK(rm_registry_adapter_act(r, NULL, "rev", RM_REG_DISABLE, "test"));
    CHECK_OK(rm_registry_retrieve(r, "reverse the word cloud", NULL, 8, hits, &n));
    CHECK(n == 2);
    for (int i = 0; i < n; i++) CHECK(strcmp(hits[i].name, "rev"));
    CHECK_ERR(rm_registry_adapter_file(r, NULL, "rev", &path, NULL), RAMOLE_ERR_NOT_FOUND);
    CHECK_ERR(rm_registry_adapter_act(r, NULL, "rev", RM_REG_APPROVE, "test"), RAMOLE_ERR_INVALID);
    CHECK_OK(rm_registry_adapter_act(r, NULL, "rev", RM_REG_ENABLE, "test"));
    CHECK_OK(rm_registry_retrieve(r, "reverse the word cloud", NULL, 8, hits, &n));
    CHECK(n == 3 && !strcmp(hits[0].name, "rev"));
    /* rm: its blob stays while "rev-copy" shares it */
    CHECK_OK(rm_registry_adapter_remove(r, NULL, "rev", "test"));
    CHECK_OK(rm_registry_retrieve(r, "reverse the word cloud", NULL, 8, hits, &n));
    CHECK(n == 2);
    rm_reg_check_report rep;
    CHECK_OK(rm_registry_check(r, true, &rep));
    CHECK(rep.n_rows == 2 && rep.n_bad == 0 && rep.n_orphans == 0);
    CHECK_OK(rm_registry_adapter_remove(r, NULL, "sum", "test"));
    CHECK_OK(rm_registry_check(r, true, &rep)); /* young orphans are not collected */
    CHECK(rep.n_orphans == 1 && count_blobs(db) == 2);
    /* age the orphan past a minute: now it is collected */
    rm_reg_adapter *rows = NULL;
    int nr = 0;
    CHECK_OK(rm_registry_adapter_list(r, NULL, &rows, &nr));
    CHECK(nr == 1);
    rm_reg_adapters_free(rows, nr);
    age_blobs(db);
    CHECK_OK(rm_registry_check(r, true, &rep));
    CHECK(count_blobs(db) == 1);
    CHECK_OK(rm_registry_check(r, false, &rep));
    CHECK(rep.n_bad == 0 && rep.n_orphans == 0 && rep.n_rows == 1);
    /* audit: init, 3 adds, disable, enable, 2 rm */
    rm_reg_audit *au = NULL;
    int na = 0;
    CHECK_OK(rm_registry_audit_list(r, 0, &au, &na));
    static const char *const want[] = {"init", "add", "add", "add", "disable", "enable", "rm", "rm"};
    CHECK(na == 8);
    for (int i = 0; i < na && i < 8; i++) CHECK_MSG(!strcmp(au[i].action, want[i]), "audit %d: %s", i, au[i].action);
    CHECK(na > 1 && !strcmp(au[1].hash, hash1) && !strcmp(au[1].actor, "test"));
    rm_reg_audits_free(au, na);
    rm_registry_free(r);
}

/* Embedding texts is a first use of the embedder too: a registry just
 * opened (no retrieval yet) embeds them, in one batch, each as alone. */
TEST(registry_embed_on_first_use_and_in_one_batch) {
    char url[600], db[600];
    fresh_url(url, sizeof url, db, sizeof db);
    rm_registry_init_opts o = {.model = fixture_model(), .layer = RM_HIDDEN_FINAL, .actor = "test"};
    rm_registry *r = NULL;
    CHECK_OK(rm_registry_create(url, &o, &r));
    rm_registry_free(r);
    r = NULL;
    CHECK_OK(rm_registry_open(url, &r));
    if (!r) return;
    const char *texts[3] = {"reverse the word apple", "add 3 and 4", "in german, say cloud"};
    float *all = NULL, *one = NULL;
    int dim = 0, d1 = 0;
    CHECK_OK(rm_registry_embed(r, texts, 3, &all, &dim));
    double worst = 0;
    for (int i = 0; all && i < 3; i++) {
        CHECK_OK(rm_registry_embed(r, &texts[i], 1, &one, &d1));
        CHECK(d1 == dim);
        double norm = 0;
        for (int k = 0; one && k < dim; k++) {
            worst = fmax(worst, fabs(all[i * dim + k] - one[k]));
            norm += (double)all[i * dim + k] * all[i * dim + k];
        }
        CHECK_NEAR(norm, 1.0, 1e-4);
        rm_free(one);
        one = NULL;
    }
    CHECK(dim > 0 && worst < 1e-5);
    CHECK_ERR(rm_registry_embed(r, texts, 0, &one, &d1), RAMOLE_ERR_INVALID);
    rm_free(all);
    rm_registry_free(r);
}

TEST(registry_a_corrupted_blob_is_reported_by_check) {
    char db[600], p1[600];
    rm_registry *r = fresh_registry(false, 0, db, sizeof db);
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(r, &m));
    CHECK_OK(add(r, fixture_adapter(m, 1, 4, 0.02f, p1, sizeof p1), "a", NULL, false, 0, NULL));
    char *path = NULL;
    CHECK_OK(rm_registry_adapter_file(r, NULL, "a", &path, NULL));
    if (pg_base()) { /* the database is the store; the local file is only a cache */
        sql_exec(db, "UPDATE blobs SET data = overlay(data placing '\\x5a'::bytea from 101 for 1)");
        remove(path);
    } else {
        FILE *f = fopen(path, "r+b");
        CHECK(f != NULL);
        if (f) {
            fseek(f, 100, SEEK_SET);
            fputc(0x5a, f);
            fclose(f);
        }
    }
    rm_reg_check_report rep;
    CHECK_OK(rm_registry_check(r, false, &rep));
    CHECK_MSG(rep.n_bad == 1 && rep.first_problem && strstr(rep.first_problem, "does not match"), "%s",
              rep.first_problem ? rep.first_problem : "clean");
    rm_free(rep.first_problem);
    if (pg_base()) sql_exec(db, "DELETE FROM blobs; DELETE FROM blob_info");
    remove(path);
    CHECK_OK(rm_registry_check(r, false, &rep));
    CHECK(rep.n_bad == 1 && rep.first_problem && strstr(rep.first_problem, "missing"));
    rm_free(rep.first_problem);
    rm_free(path);
    rm_registry_free(r);
}

TEST(registry_approval_and_governance) {
    char db[600], p1[600];
    rm_model *m = NULL;
    rm_registry *r = registry_with_adapter(true, 0, db, sizeof db, &m, p1, sizeof p1);
    CHECK_OK(rm_registry_tenant_add(r, "acme", "test"));
    CHECK_ERR(rm_registry_tenant_add(r, "acme", "test"), RAMOLE_ERR_INVALID);
    int64_t id = -1;
    CHECK_OK(add(r, p1, "a", "acme", true, 0, &id));
    rm_reg_adapter a;
    CHECK_OK(rm_registry_adapter_get(r, "acme", "a", &a));
    CHECK(a.status == RM_REG_PENDING && !a.is_public && !strcmp(a.tenant, "acme"));
    rm_reg_adapter_clear(&a);
    rm_reg_hit hits[4];
    int n = -1;
    CHECK_OK(rm_registry_retrieve(r, "reverse it", "acme", 4, hits, &n));
    CHECK(n == 0); /* pending: not retrievable */
    CHECK_OK(rm_registry_adapter_act(r, "acme", "a", RM_REG_APPROVE, "admin"));
    CHECK_OK(rm_registry_retrieve(r, "reverse it", "acme", 4, hits, &n));
    CHECK(n == 1 && hits[0].id == id);
    CHECK_OK(rm_registry_retrieve(r, "reverse it", NULL, 4, hits, &n));
    CHECK(n == 0); /* private to acme */
    char *path = NULL;
    CHECK_ERR(rm_registry_adapter_file_id(r, NULL, id, &path, NULL), RAMOLE_ERR_NOT_FOUND);
    CHECK_OK(rm_registry_adapter_file_id(r, "acme", id, &path, NULL));
    rm_free(path);
    CHECK_OK(add(r, p1, "b", "acme", false, 1, NULL));
    CHECK_OK(rm_registry_adapter_act(r, "acme", "b", RM_REG_REJECT, "admin"));
    CHECK_ERR(rm_registry_adapter_act(r, "acme", "b", RM_REG_APPROVE, "admin"), RAMOLE_ERR_INVALID);
    /* keys: 256 random bits shown once, stored as their hash */
    char key[69], key2[69];
    int64_t kid = -1, kid2 = -1, nkeys = -1;
    CHECK_OK(rm_registry_key_count(r, &nkeys));
    CHECK(nkeys == 0);
    CHECK_OK(rm_registry_key_create(r, "acme", RM_REG_ROLE_UPLOAD, "admin", key, &kid));
    CHECK_OK(rm_registry_key_create(r, "acme", RM_REG_ROLE_UPLOAD, "admin", key2, &kid2));
    CHECK(strlen(key) == 68 && !strncmp(key, "rmk_", 4) && strcmp(key, key2));
    CHECK_ERR(rm_registry_key_create(r, "nobody", RM_REG_ROLE_ADMIN, "admin", key2, &kid2), RAMOLE_ERR_NOT_FOUND);
    char *tenant = NULL;
    rm_reg_role role;
    CHECK_OK(rm_registry_key_verify(r, key, &tenant, &role));
    CHECK(tenant && !strcmp(tenant, "acme") && role == RM_REG_ROLE_UPLOAD);
    rm_free(tenant);
    char q[160]; /* the database holds no key in clear */
    snprintf(q, sizeof q, "SELECT count(*) FROM keys WHERE hash LIKE '%%%.32s%%'", key + 4);
    CHECK(sql_int(db, q) == 0);
    CHECK(sql_int(db, "SELECT count(*) FROM keys") == 2);
    CHECK_OK(rm_registry_key_count(r, &nkeys));
    CHECK(nkeys == 2);
    CHECK_OK(rm_registry_key_revoke(r, key, "admin"));
    CHECK_OK(rm_registry_key_count(r, &nkeys));
    CHECK(nkeys == 1);
    CHECK_ERR(rm_registry_key_verify(r, key, &tenant, &role), RAMOLE_ERR_NOT_FOUND);
    CHECK_ERR(rm_registry_key_revoke(r, key, "admin"), RAMOLE_ERR_NOT_FOUND);
    char idstr[32];
    snprintf(idstr, sizeof idstr, "%lld", (long long)kid2);
    CHECK_OK(rm_registry_key_revoke(r, idstr, "admin"));
    rm_reg_audit *au = NULL;
    int na = 0;
    CHECK_OK(rm_registry_audit_list(r, 0, &au, &na));
    int creates = 0, revokes = 0;
    for (int i = 0; i < na; i++) creates += !strcmp(au[i].action, "key create"), revokes += !strcmp(au[i].action, "key revoke");
    CHECK(creates == 2 && revokes == 2);
    rm_reg_audits_free(au, na);
    rm_registry_free(r);
}

/* ---- screening ----------------------------------------------------------------------------- */

TEST(registry_screen_norms_match_the_dense_product) {
    rm_model *m = NULL;
    CHECK_OK(rm_model_open(fixture_model(), &m));
    rm_adapter *a = NULL;
    CHECK_OK(rm_adapter_random(m, 3, 5.0f, (1u << RM_TARGET_Q) | (1u << RM_TARGET_DOWN), 9, 0.3f, &a));
    double *norms = malloc((size_t)a->n_layers * RM_TARGET_COUNT * sizeof *norms);
    CHECK_OK(rm_screen_norms(m, a, norms));
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            rm_lora_module *mod = rm_adapter_mod(a, l, (rm_target)t);
            double got = norms[l * RM_TARGET_COUNT + t];
            if (!mod->rank) { CHECK(got == -1); continue; }
            int64_t din, dout;
            rm_target_dims(&m->cfg, (rm_target)t, &din, &dout);
            float *A = malloc((size_t)(mod->rank * din) * sizeof *A), *B = malloc((size_t)(dout * mod->rank) * sizeof *B);
            rm_lora_module_get(mod, &m->cfg, (rm_target)t, false, A);
            rm_lora_module_get(mod, &m->cfg, (rm_target)t, true, B);
            double f = 0;
            for (int64_t o = 0; o < dout; o++)
                for (int64_t c = 0; c < din; c++) {
                    double s = 0;
                    for (int k = 0; k < mod->rank; k++) s += (double)B[o * mod->rank + k] * A[k * din + c];
                    f += s * s;
                }
            CHECK_NEAR(got, mod->scale * sqrt(f), 1e-6 * (1 + got));
            free(A), free(B);
        }
    free(norms);
    rm_adapter_free(a);
    rm_model_free(m);
}

/* KL of softmax logits by two separate contexts: the reference of the probe. */
TEST(registry_kl_probe_matches_separate_forwards) {
    rm_model *m = NULL;
    CHECK_OK(rm_model_open(fixture_model(), &m));
    rm_adapter *a = NULL;
    CHECK_OK(rm_adapter_random(m, 4, 4.0f, (1u << RM_TARGET_COUNT) - 1, 3, 0.2f, &a));
    const char *probe = "a short probe";
    double kl = -1;
    CHECK_OK(rm_screen_kl(m, a, &probe, 1, &kl));
    /* reference: base alone and merged weights, one sequence each */
    rm_model *merged = NULL;
    CHECK_OK(rm_model_merge(m, &a, NULL, 1, &merged));
    int32_t toks[64];
    rm_tok_ids ids = {0};
    CHECK_OK(rm_tok_encode(m->tokenizer, probe, strlen(probe), RM_TOK_ADD_SPECIAL, &ids));
    int n = (int)ids.n;
    memcpy(toks, ids.ids, (size_t)n * sizeof *toks);
    rm_tok_ids_free(&ids);
    float *lb = rm_test_logits_all(m, toks, n, 1), *la = rm_test_logits_all(merged, toks, n, 1);
    double ref = 0;
    int V = m->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        double mp = -1e30, mq = -1e30, zp = 0, zq = 0, k = 0;
        for (int v = 0; v < V; v++) mp = fmax(mp, la[i * V + v]), mq = fmax(mq, lb[i * V + v]);
        for (int v = 0; v < V; v++) zp += exp(la[i * V + v] - mp), zq += exp(lb[i * V + v] - mq);
        for (int v = 0; v < V; v++) {
            double lp = la[i * V + v] - mp - log(zp), lq = lb[i * V + v] - mq - log(zq);
            k += exp(lp) * (lp - lq);
        }
        ref += k / n;
    }
    CHECK_MSG(kl > 1e-4, "kl %g: the adapter should change the distribution", kl);
    CHECK_NEAR(kl, ref, 1e-3 * ref + 1e-6);
    /* an adapter with B = 0 changes nothing */
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            rm_lora_module *mod = rm_adapter_mod(a, l, (rm_target)t);
            int64_t din, dout;
            rm_target_dims(&m->cfg, (rm_target)t, &din, &dout);
            memset(mod->B, 0, rm_type_row_bytes(mod->type, dout * mod->rank));
        }
    CHECK_OK(rm_screen_kl(m, a, &probe, 1, &kl));
    CHECK(kl < 1e-9);
    free(lb), free(la);
    rm_model_free(merged);
    rm_adapter_free(a);
    rm_model_free(m);
}

TEST(registry_kl_probe_holds_an_adapter_for_review_and_recheck) {
    char db[600], weak[600], strong[600];
    rm_registry *r = fresh_registry(false, 0.05, db, sizeof db);
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(r, &m));
    fixture_adapter(m, 1, 4, 0.01f, weak, sizeof weak);
    fixture_adapter(m, 5, 4, 0.5f, strong, sizeof strong);
    CHECK_OK(add(r, weak, "weak", NULL, false, 0, NULL));
    CHECK_OK(add(r, strong, "strong", NULL, false, 1, NULL));
    rm_reg_adapter a;
    CHECK_OK(rm_registry_adapter_get(r, NULL, "weak", &a));
    CHECK(a.status == RM_REG_ACTIVE);
    rm_reg_adapter_clear(&a);
    CHECK_OK(rm_registry_adapter_get(r, NULL, "strong", &a));
    CHECK_MSG(a.status == RM_REG_PENDING && strstr(a.screening, "\"kl_held\":true"), "%s", a.screening);
    rm_reg_adapter_clear(&a);
    /* recheck with a lower threshold holds the weak one too */
    CHECK_OK(rm_registry_set_kl_threshold(r, 1e-9, "admin"));
    int checked = 0, held = 0;
    CHECK_OK(rm_registry_adapter_recheck(r, NULL, NULL, "admin", &checked, &held));
    CHECK(checked == 2 && held == 1);
    CHECK_OK(rm_registry_adapter_get(r, NULL, "weak", &a));
    CHECK(a.status == RM_REG_PENDING);
    rm_reg_adapter_clear(&a);
    rm_reg_hit hits[4];
    int n = -1;
    CHECK_OK(rm_registry_retrieve(r, "reverse", NULL, 4, hits, &n));
    CHECK(n == 0);
    CHECK_ERR(rm_registry_adapter_recheck(r, NULL, "nope", "admin", &checked, &held), RAMOLE_ERR_NOT_FOUND);
    rm_registry_free(r);
}

TEST(registry_norm_outlier_is_flagged_against_the_pool_median) {
    char db[600], p[600];
    rm_registry *r = fresh_registry(false, 1e9, db, sizeof db);
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(r, &m));
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        CHECK_OK(add(r, fixture_adapter(m, 20 + i, 4, 0.02f, p, sizeof p), name, NULL, false, i, NULL));
    }
    CHECK_OK(add(r, fixture_adapter(m, 30, 4, 0.02f * 5, p, sizeof p), "x5", NULL, false, 0, NULL));   /* ~25x */
    CHECK_OK(add(r, fixture_adapter(m, 31, 4, 0.02f * 1.2f, p, sizeof p), "x1", NULL, false, 0, NULL)); /* ~1.4x */
    rm_reg_adapter a;
    CHECK_OK(rm_registry_adapter_get(r, NULL, "x5", &a));
    json_t *o = json_loads(a.screening, 0, NULL);
    CHECK(json_integer_value(json_object_get(o, "norm_outliers")) > 0);
    CHECK(json_number_value(json_object_get(o, "norm_worst_ratio")) > 10);
    json_decref(o);
    rm_reg_adapter_clear(&a);
    CHECK_OK(rm_registry_adapter_get(r, NULL, "x1", &a));
    o = json_loads(a.screening, 0, NULL);
    CHECK(json_integer_value(json_object_get(o, "norm_outliers")) == 0);
    CHECK(json_integer_value(json_object_get(o, "norm_pool")) == 4);
    json_decref(o);
    rm_reg_adapter_clear(&a);
    rm_registry_free(r);
}

/* ---- tenant isolation -------------------------------------------------------------------- */

TEST(registry_tenant_isolation_randomised) {
    char db[600], p[600];
    rm_registry *r = fresh_registry(false, 0, db, sizeof db);
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(r, &m));
    static const char *const tenants[] = {"default", "t1", "t2", "t3"};
    for (int t = 1; t < 4; t++) CHECK_OK(rm_registry_tenant_add(r, tenants[t], "test"));
    uint64_t rng = 11;
    enum { N = 24 };
    int64_t ids[N];
    int owner[N];
    bool pub[N];
    fixture_adapter(m, 1, 2, 0.02f, p, sizeof p);
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        owner[i] = (int)(rm_rng_next(&rng) % 4);
        pub[i] = rm_rng_uniform(&rng) < 0.3;
        CHECK_OK(add(r, p, name, tenants[owner[i]], !pub[i], i, &ids[i]));
    }
    int dim = 0;
    CHECK_OK(rm_registry_embed_dim(r, &dim));
    float *q = malloc((size_t)dim * sizeof *q);
    int leaks = 0, short_results = 0;
    for (int it = 0; it < 10000; it++) {
        int t = (int)(rm_rng_next(&rng) % 4), k = 1 + (int)(rm_rng_next(&rng) % 8);
        for (int i = 0; i < dim; i++) q[i] = (float)(2 * rm_rng_uniform(&rng) - 1);
        rm_reg_hit hits[8];
        int n = 0;
        CHECK_OK(rm_registry_search(r, q, tenants[t], k, hits, &n));
        int visible = 0;
        for (int i = 0; i < N; i++) visible += pub[i] || owner[i] == t;
        short_results += n != (visible < k ? visible : k);
        for (int h = 0; h < n; h++)
            for (int i = 0; i < N; i++)
                if (hits[h].id == ids[i] && !pub[i] && owner[i] != t) leaks++;
    }
    CHECK_MSG(leaks == 0, "%d private adapters leaked to another tenant", leaks);
    CHECK_MSG(short_results == 0, "%d searches returned fewer than min(k, visible)", short_results);
    free(q);
    rm_registry_free(r);
}

/* ---- bad input ------------------------------------------------------------------------------ */

TEST(registry_bad_input_is_refused_and_changes_nothing) {
    char db[600], good[600], other_model[600], foreign[600], samples[600], fake[600];
    rm_model *m = NULL;
    rm_registry *r = registry_with_adapter(false, 0, db, sizeof db, &m, good, sizeof good);
    CHECK_OK(add(r, good, "taken", NULL, false, 0, NULL));
    /* an adapter for another base */
    rm_model_config c = m->cfg;
    c.hidden = 48, c.ffn = 96, c.head_dim = 12, c.rope.n_rot = 12;
    rm_model *m2 = NULL;
    CHECK_OK(rm_model_random(&c, 3, 0.1f, &m2));
    rm_adapter *fa = NULL;
    CHECK_OK(rm_adapter_random(m2, 2, 2, 1u, 1, 0.02f, &fa));
    snprintf(foreign, sizeof foreign, "%s/reg_foreign_adapter", rm_test_tmp_dir());
    CHECK_OK(rm_adapter_save_peft(fa, m2, foreign));
    rm_adapter_free(fa);
    snprintf(fake, sizeof fake, "%s/reg_fake.gguf", rm_test_tmp_dir());
    FILE *f = fopen(fake, "w");
    fputs("this is not a GGUF file at all", f);
    fclose(f);
    int n0 = count_adapters(r), a0 = count_audit(r), b0 = count_blobs(db);
    struct {
        const char *path, *name, *tenant, *needle;
        int n_samples;
        rm_status st;
    } cases[] = {
        {foreign, "x", NULL, "", 3, RAMOLE_ERR_MISMATCH},
        {fake, "x", NULL, "reg_fake.gguf", 3, RAMOLE_ERR_FORMAT},
        {good, "x", NULL, "sample list is empty", 0, RAMOLE_ERR_INVALID},
        {good, "x", NULL, "at most", RM_REG_SAMPLES_MAX + 1, RAMOLE_ERR_INVALID},
        {good, "a/b", NULL, "path separator", 3, RAMOLE_ERR_INVALID},
        {good, "a\\b", NULL, "path separator", 3, RAMOLE_ERR_INVALID},
        {good, "a\nb", NULL, "control character", 3, RAMOLE_ERR_INVALID},
        {good, "", NULL, "empty", 3, RAMOLE_ERR_INVALID},
        {good, "x", "nobody", "unknown tenant 'nobody'", 3, RAMOLE_ERR_NOT_FOUND},
        {good, "taken", NULL, "already exists", 3, RAMOLE_ERR_INVALID},
        {"/nonexistent/adapter", "x", NULL, "/nonexistent/adapter", 3, RAMOLE_ERR_NOT_FOUND},
    };
    const char **many = calloc(RM_REG_SAMPLES_MAX + 1, sizeof *many);
    for (int i = 0; i <= RM_REG_SAMPLES_MAX; i++) many[i] = "text";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rm_reg_add_opts o = {.path = cases[i].path, .name = cases[i].name, .tenant = cases[i].tenant,
                             .samples = cases[i].n_samples > 3 ? many : task_samples[0],
                             .n_samples = cases[i].n_samples, .actor = "test"};
        int64_t id = 5;
        rm_status st = rm_registry_adapter_add(r, &o, &id);
        CHECK_MSG(st != RAMOLE_OK && id == -1, "case %zu accepted", i);
        if (i == 10) CHECK(st == RAMOLE_ERR_NOT_FOUND || st == RAMOLE_ERR_IO);
        else
            CHECK_MSG(st == cases[i].st, "case %zu: %s (%s)", i, ramole_status_str(st), ramole_last_error());
        CHECK_MSG(strstr(ramole_last_error(), cases[i].needle), "case %zu: '%s' lacks '%s'", i, ramole_last_error(),
                  cases[i].needle);
    }
    /* an oversized or empty sample */
    char *big = malloc(RM_REG_SAMPLE_MAX_BYTES + 2);
    memset(big, 'a', RM_REG_SAMPLE_MAX_BYTES + 1);
    big[RM_REG_SAMPLE_MAX_BYTES + 1] = 0;
    const char *bad_samples[2][1] = {{big}, {""}};
    for (int i = 0; i < 2; i++) {
        rm_reg_add_opts o = {.path = good, .name = "x", .samples = bad_samples[i], .n_samples = 1};
        CHECK_ERR(rm_registry_adapter_add(r, &o, NULL), RAMOLE_ERR_INVALID);
    }
    free(big);
    free(many);
    /* a samples file: empty, and a line without "input" */
    snprintf(samples, sizeof samples, "%s/reg_samples.jsonl", rm_test_tmp_dir());
    f = fopen(samples, "w");
    fclose(f);
    char **s = NULL;
    int ns = 0;
    CHECK_ERR(rm_reg_samples_load(samples, 20, &s, &ns), RAMOLE_ERR_INVALID);
    f = fopen(samples, "w");
    fputs("{\"input\": \"ok\"}\n{\"output\": \"no input\"}\n", f);
    fclose(f);
    CHECK_ERR(rm_reg_samples_load(samples, 20, &s, &ns), RAMOLE_ERR_FORMAT);
    CHECK(strstr(ramole_last_error(), "reg_samples.jsonl:2"));
    CHECK_OK(rm_reg_samples_load(samples, 1, &s, &ns)); /* only the first m are read */
    CHECK(ns == 1 && !strcmp(s[0], "ok"));
    rm_reg_samples_free(s, ns);
    CHECK(count_adapters(r) == n0 && count_audit(r) == a0 && count_blobs(db) == b0);
    rm_reg_check_report rep;
    CHECK_OK(rm_registry_check(r, false, &rep));
    CHECK(rep.n_bad == 0 && rep.n_orphans == 0);
    rm_registry_free(r);
    /* a registry made for another base */
    snprintf(other_model, sizeof other_model, "%s/reg_other_model", rm_test_tmp_dir());
    CHECK_OK(rm_model_set_tokenizer(m2, fixture_model()));
    CHECK_OK(rm_model_save(m2, RM_SOURCE_HF, -1, other_model));
    char url[700];
    url_of(db, url, sizeof url);
    CHECK_OK(rm_registry_open(url, &r));
    CHECK_ERR(rm_registry_set_base(r, m2), RAMOLE_ERR_MISMATCH);
    CHECK(strstr(ramole_last_error(), "another base"));
    rm_registry_free(r);
    rm_model_free(m2);
    /* init over an existing registry, unknown URLs, postgres not built */
    rm_registry_init_opts io = {.model = fixture_model(), .layer = RM_HIDDEN_FINAL};
    CHECK_ERR(rm_registry_create(url, &io, &r), RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "already holds a registry"));
    CHECK_ERR(rm_registry_open("mysql://x", &r), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_registry_open("postgresql:///nosuchdb?host=/nonexistent", &r), RAMOLE_ERR_IO);
    CHECK(strstr(ramole_last_error(), "cannot connect"));
    snprintf(url, sizeof url, "sqlite:%s/reg_none.db", rm_test_tmp_dir());
    CHECK_ERR(rm_registry_open(url, &r), RAMOLE_ERR_NOT_FOUND);
    snprintf(url, sizeof url, "%s/reg_not_a_db.db", rm_test_tmp_dir());
    FILE *g = fopen(url, "w");
    if (g) {
        fputs("this text file is not an SQLite database, though its name ends in .db\n", g);
        fclose(g);
    }
    char notdb[760];
    snprintf(notdb, sizeof notdb, "sqlite:%s", url);
    CHECK_ERR(rm_registry_open(notdb, &r), RAMOLE_ERR_FORMAT);
    CHECK(strstr(ramole_last_error(), "not a registry"));
}

/* ---- feedback ---------------------------------------------------------------------------- */

TEST(registry_feedback_ratings_per_adapter) {
    char db[600];
    rm_registry *r = fresh_registry(false, 0, db, sizeof db);
    rm_reg_feedback f = {.response_id = "cmpl-1", .adapter = "rev", .hash = "aa", .rating = 1, .comment = "good"};
    CHECK_OK(rm_registry_feedback_add(r, &f));
    f.response_id = "cmpl-2";
    f.rating = -1;
    CHECK_OK(rm_registry_feedback_add(r, &f));
    CHECK_OK(rm_registry_feedback_add(r, &f));
    rm_reg_feedback g = {.response_id = "cmpl-2", .tenant = "default", .adapter = "add", .hash = "bb", .rating = 1};
    CHECK_OK(rm_registry_feedback_add(r, &g));
    g.rating = 0;
    CHECK_ERR(rm_registry_feedback_add(r, &g), RAMOLE_ERR_INVALID);
    g.rating = 1, g.response_id = "";
    CHECK_ERR(rm_registry_feedback_add(r, &g), RAMOLE_ERR_INVALID);
    rm_reg_rating *v = NULL;
    int n = 0;
    CHECK_OK(rm_registry_ratings(r, NULL, &v, &n));
    CHECK(n == 2 && !strcmp(v[0].adapter, "add") && v[0].up == 1 && v[0].down == 0 && !strcmp(v[1].adapter, "rev") &&
          !strcmp(v[1].hash, "aa") && v[1].up == 1 && v[1].down == 2);
    rm_reg_ratings_free(v, n);
    CHECK_OK(rm_registry_ratings(r, "bb", &v, &n));
    CHECK(n == 1 && v[0].up == 1);
    rm_reg_ratings_free(v, n);
    rm_registry_free(r);
}

/* A response record of n adapters named NAMES[i] with hash HASHES[i]. */
static rm_reg_response response_of(const char *id, const char *tenant, int n, const char *const *names,
                                   const char *const *hashes) {
    rm_reg_response r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.tenant, sizeof r.tenant, "%s", tenant ? tenant : "");
    r.n = n;
    for (int i = 0; i < n; i++) {
        snprintf(r.names[i], sizeof r.names[i], "%s", names[i]);
        snprintf(r.hashes[i], sizeof r.hashes[i], "%s", hashes[i]);
    }
    return r;
}

/* The up and down counts of adapter `name` (0 and 0 when unrated). */
static void rating_of(rm_registry *r, const char *name, int64_t *up, int64_t *down) {
    rm_reg_rating *v = NULL;
    int n = 0;
    *up = *down = 0;
    CHECK_OK(rm_registry_ratings(r, NULL, &v, &n));
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].adapter, name)) *up = v[i].up, *down = v[i].down;
    rm_reg_ratings_free(v, n);
}

TEST(registry_response_rated_through_another_connection) {
    char db[600], url[700];
    rm_registry *a = fresh_registry(false, 0, db, sizeof db), *b = NULL;
    url_of(db, url, sizeof url);
    CHECK_OK(rm_registry_tenant_add(a, "acme", "test"));
    CHECK_OK(rm_registry_open(url, &b)); /* another server on the same registry */
    /* names with quotes, commas and braces survive the backends' quoting */
    const char *names[] = {"rev", "we\"ird,{x}"}, *hashes[] = {"aa", "bb"};
    rm_reg_response two = response_of("cmpl-a1", "acme", 2, names, hashes);
    rm_reg_response base = response_of("cmpl-a2", NULL, 0, NULL, NULL);
    rm_reg_response both[2] = {two, base};
    CHECK_OK(rm_registry_response_add(a, both, 2)); /* one transaction */
    rm_reg_response again[2] = {response_of("cmpl-a3", NULL, 0, NULL, NULL), two};
    CHECK_ERR(rm_registry_response_add(b, again, 2), RAMOLE_ERR_INVALID); /* ids are unique; none is kept */
    CHECK(sql_int(db, "SELECT count(*) FROM responses WHERE id = 'cmpl-a3'") == 0);
    int n = -1;
    /* through b: rated per adapter, as acme only */
    CHECK_ERR(rm_registry_response_rate(b, "cmpl-a1", "default", 1, NULL, 60, &n), RAMOLE_ERR_NOT_FOUND);
    CHECK(n == 0);
    CHECK_ERR(rm_registry_response_rate(b, "cmpl-zz", "acme", 1, NULL, 60, &n), RAMOLE_ERR_NOT_FOUND);
    CHECK_ERR(rm_registry_response_rate(b, "cmpl-a1", "acme", 2, NULL, 60, &n), RAMOLE_ERR_INVALID);
    CHECK_OK(rm_registry_response_rate(b, "cmpl-a1", "acme", 1, "good", 60, &n));
    CHECK(n == 2);
    CHECK_OK(rm_registry_response_rate(b, "cmpl-a1", "acme", -1, NULL, 60, &n));
    CHECK_OK(rm_registry_response_rate(b, "cmpl-a2", NULL, -1, NULL, 60, &n));
    CHECK(n == 0);
    int64_t up, down;
    rating_of(a, "rev", &up, &down);
    CHECK(up == 1 && down == 1);
    rating_of(a, "we\"ird,{x}", &up, &down);
    CHECK(up == 1 && down == 1);
    rating_of(a, "", &up, &down); /* the base alone */
    CHECK(up == 0 && down == 1);
    CHECK(sql_int(db, "SELECT count(*) FROM feedback WHERE response_id = 'cmpl-a1' AND comment = 'good'") == 2);
    /* too old to rate, then expired; the ratings stay */
    sql_exec(db, "UPDATE responses SET time = time - 1000 WHERE id = 'cmpl-a1'");
    CHECK_ERR(rm_registry_response_rate(b, "cmpl-a1", "acme", 1, NULL, 500, &n), RAMOLE_ERR_NOT_FOUND);
    CHECK(strstr(ramole_last_error(), "cmpl-a1"));
    int64_t removed = -1;
    CHECK_OK(rm_registry_response_expire(b, 500, &removed));
    CHECK(removed == 2);
    CHECK(sql_int(db, "SELECT count(*) FROM responses") == 1);
    CHECK_ERR(rm_registry_response_rate(a, "cmpl-a1", "acme", 1, NULL, 1e9, &n), RAMOLE_ERR_NOT_FOUND);
    rating_of(b, "rev", &up, &down);
    CHECK(up == 1 && down == 1);
    /* bad records are refused */
    rm_reg_response bad = response_of("", NULL, 0, NULL, NULL);
    CHECK_ERR(rm_registry_response_add(a, &bad, 1), RAMOLE_ERR_INVALID);
    bad = response_of("cmpl-b", NULL, 0, NULL, NULL);
    bad.n = RM_REG_RESPONSE_ADAPTERS + 1;
    CHECK_ERR(rm_registry_response_add(a, &bad, 1), RAMOLE_ERR_INVALID);
    bad.n = 1; /* an adapter without a name */
    CHECK_ERR(rm_registry_response_add(a, &bad, 1), RAMOLE_ERR_INVALID);
    CHECK(sql_int(db, "SELECT count(*) FROM responses") == 1);
    rm_registry_free(b);
    rm_registry_free(a);
}

/* ---- schema versions ---------------------------------------------------------------------- */

TEST(registry_schema_migrates_forward_and_refuses_newer) {
    char db[600], p[600], url[700];
    rm_registry *r = fresh_registry(false, 0, db, sizeof db);
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(r, &m));
    CHECK_OK(add(r, fixture_adapter(m, 1, 4, 0.02f, p, sizeof p), "kept", NULL, false, 0, NULL));
    rm_registry_free(r);
    CHECK(schema_version(db) == RM_REG_SCHEMA_VERSION);
    if (!pg_base()) { /* SQLite runs in WAL mode */
        sqlite3 *h = NULL;
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_open(db, &h) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW);
        CHECK(!strcmp((const char *)sqlite3_column_text(st, 0), "wal"));
        sqlite3_finalize(st);
        sqlite3_close(h);
    }
    /* back to version 1 (its indexes, the feedback and responses tables gone): opening migrates forward, data kept */
    sql_exec(db, "DROP INDEX audit_time; DROP INDEX adapters_hash; DROP TABLE feedback; DROP TABLE responses;");
    set_schema_version(db, 1);
    url_of(db, url, sizeof url);
    CHECK_OK(rm_registry_open(url, &r));
    CHECK(schema_version(db) == RM_REG_SCHEMA_VERSION);
    CHECK(sql_int(db, pg_base() ? "SELECT count(*) FROM pg_indexes WHERE indexname IN ('audit_time', 'adapters_hash',"
                                  " 'responses_time')"
                                : "SELECT count(*) FROM sqlite_master WHERE name IN ('audit_time', 'adapters_hash',"
                                  " 'responses_time')") == 3);
    CHECK(sql_int(db, "SELECT count(*) FROM responses") == 0);
    rm_reg_adapter a;
    CHECK_OK(rm_registry_adapter_get(r, NULL, "kept", &a));
    rm_reg_adapter_clear(&a);
    rm_registry_free(r);
    /* a newer schema is refused and left as it was */
    set_schema_version(db, 99);
    CHECK_ERR(rm_registry_open(url, &r), RAMOLE_ERR_UNSUPPORTED);
    CHECK(strstr(ramole_last_error(), "schema version 99 is newer"));
    CHECK(schema_version(db) == 99);
    CHECK(sql_int(db, "SELECT count(*) FROM adapters") == 1);
}

/* ---- uploads killed at random moments ------------------------------------------------------------ */

/* A child: uploads adapters c<child>_<i> until killed, writing each acknowledged name to fd. */
static void crash_child(const char *url, int child, int fd, char paths[][600], int n_paths) {
    rm_registry *r = NULL;
    if (rm_registry_open(url, &r) != RAMOLE_OK) _exit(3);
    for (int i = 0;; i++) {
        char name[32], line[40];
        snprintf(name, sizeof name, "c%d_%d", child, i);
        if (add(r, paths[(child + i) % n_paths], name, NULL, false, i, NULL) != RAMOLE_OK) {
            fprintf(stderr, "child %d: %s\n", child, ramole_last_error());
            _exit(4);
        }
        int n = snprintf(line, sizeof line, "%s\n", name);
        if (write(fd, line, (size_t)n) != n) _exit(5);
    }
}

TEST(registry_uploads_survive_sigkill) {
    char db[600], url[700];
    char paths[4][600];
    rm_registry *r = fresh_registry(false, 0, db, sizeof db);
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(r, &m));
    for (int i = 0; i < 4; i++) fixture_adapter(m, 40 + i, 2 + i, 0.02f, paths[i], sizeof paths[i]);
    rm_registry_free(r);
    url_of(db, url, sizeof url);
    uint64_t rng = (uint64_t)time(NULL);
    enum { ROUNDS = 6, CHILDREN = 3 };
    int started = 0, bad_exit = 0;
    static char buf[1 << 16];
    size_t len = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pids[CHILDREN];
        int fds[CHILDREN];
        for (int c = 0; c < CHILDREN; c++) {
            int pipefd[2];
            CHECK(pipe(pipefd) == 0);
            fflush(NULL);
            pids[c] = fork();
            if (pids[c] == 0) {
                close(pipefd[0]);
                crash_child(url, round * CHILDREN + c, pipefd[1], paths, 4);
            }
            close(pipefd[1]);
            fds[c] = pipefd[0];
            started++;
        }
        /* once a child has acknowledged its first upload (so the machine's load does not
         * decide whether anything is tested), kill it at a random moment of a later one */
        for (int c = 0; c < CHILDREN; c++) {
            struct pollfd pf = {.fd = fds[c], .events = POLLIN};
            poll(&pf, 1, 20000);
            usleep((useconds_t)(rm_rng_next(&rng) % 120000));
            kill(pids[c], SIGKILL);
        }
        for (int c = 0; c < CHILDREN; c++) {
            int status = 0;
            waitpid(pids[c], &status, 0);
            if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) bad_exit++;
            ssize_t got;
            while ((got = read(fds[c], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)got;
            close(fds[c]);
        }
    }
    CHECK_MSG(bad_exit == 0, "%d children ended on their own (an upload failed)", bad_exit);
    /* every acknowledged upload is there, active and retrievable */
    buf[len] = 0;
    CHECK_OK(rm_registry_open(url, &r));
    rm_reg_adapter *rows = NULL;
    int n = 0, acked = 0, missing = 0;
    CHECK_OK(rm_registry_adapter_list(r, NULL, &rows, &n));
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        acked++;
        bool found = false;
        for (int i = 0; i < n && !found; i++) found = !strcmp(rows[i].name, line);
        missing += !found;
    }
    CHECK_MSG(missing == 0, "%d of %d acknowledged uploads are missing", missing, acked);
    CHECK_MSG(acked >= started, "only %d uploads were acknowledged in %d children", acked, started);
    /* none half-visible: every row is complete, has its audit entry and is in the pool */
    rm_reg_audit *au = NULL;
    int na = 0;
    CHECK_OK(rm_registry_audit_list(r, 0, &au, &na));
    int incomplete = 0;
    for (int i = 0; i < n; i++) {
        bool audited = false;
        for (int j = 0; j < na && !audited; j++) audited = !strcmp(au[j].action, "add") && !strcmp(au[j].target, rows[i].name);
        incomplete += !audited || rows[i].status != RM_REG_ACTIVE || !rows[i].embedding || rows[i].n_samples != 3;
    }
    CHECK(incomplete == 0);
    rm_reg_audits_free(au, na);
    int dim = 0;
    CHECK_OK(rm_registry_embed_dim(r, &dim));
    rm_reg_hit *hits = malloc(((size_t)n + 1) * sizeof *hits);
    float *q = calloc((size_t)dim, sizeof *q);
    q[0] = 1;
    int nh = 0;
    CHECK_OK(rm_registry_search(r, q, NULL, n + 1, hits, &nh));
    CHECK_MSG(nh == n, "%d of %d rows retrievable", nh, n);
    free(hits), free(q);
    rm_reg_adapters_free(rows, n);
    rm_reg_check_report rep;
    CHECK_OK(rm_registry_check(r, false, &rep));
    CHECK_MSG(rep.n_bad == 0, "registry check: %s", rep.first_problem ? rep.first_problem : "");
    rm_free(rep.first_problem);
    rm_registry_free(r);
}

/* ---- registry-level concurrency ---------------------------------------------------------------- */

typedef struct {
    rm_registry *r;
    const char *path;
    int w, bad;
    atomic_int *stop;
} rc_arg;

static void *rc_writer(void *arg) {
    rc_arg *a = arg;
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "w%d_%d", a->w, i);
        if (add(a->r, a->path, name, NULL, false, i, NULL) != RAMOLE_OK) a->bad++;
        if (i % 2 && rm_registry_adapter_remove(a->r, NULL, name, "t") != RAMOLE_OK) a->bad++;
    }
    return NULL;
}

static void *rc_reader(void *arg) {
    rc_arg *a = arg;
    int dim = 0;
    if (rm_registry_embed_dim(a->r, &dim) != RAMOLE_OK) { a->bad++; return NULL; }
    float *q = calloc((size_t)dim, sizeof *q);
    uint64_t rng = 5;
    while (!atomic_load(a->stop)) {
        for (int i = 0; i < dim; i++) q[i] = (float)rm_rng_uniform(&rng) - 0.5f;
        rm_reg_hit hits[8];
        int n = 0;
        if (rm_registry_search(a->r, q, NULL, 8, hits, &n) != RAMOLE_OK) a->bad++;
        for (int j = 0; j < n; j++) a->bad += hits[j].name[0] != 'w';
    }
    free(q);
    return NULL;
}

TEST(registry_concurrent_add_remove_retrieve_threads) {
    char db[600], p[600];
    rm_model *m = NULL;
    rm_registry *r = registry_with_adapter(false, 0, db, sizeof db, &m, p, sizeof p);
    atomic_int stop = 0;
    rc_arg w[2], rd[2];
    pthread_t tw[2], tr[2];
    for (int i = 0; i < 2; i++) {
        rd[i] = (rc_arg){.r = r, .path = p, .w = i, .stop = &stop};
        pthread_create(&tr[i], NULL, rc_reader, &rd[i]);
    }
    for (int i = 0; i < 2; i++) {
        w[i] = (rc_arg){.r = r, .path = p, .w = i, .stop = &stop};
        pthread_create(&tw[i], NULL, rc_writer, &w[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(tw[i], NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(tr[i], NULL);
    for (int i = 0; i < 2; i++) CHECK(w[i].bad == 0 && rd[i].bad == 0);
    CHECK(count_adapters(r) == 6);
    int dim = 0;
    CHECK_OK(rm_registry_embed_dim(r, &dim));
    float *q = calloc((size_t)dim, sizeof *q);
    q[0] = 1;
    rm_reg_hit hits[16];
    int n = 0;
    CHECK_OK(rm_registry_search(r, q, NULL, 16, hits, &n));
    CHECK(n == 6);
    for (int j = 0; j < n; j++) { /* the survivors are the even ones */
        int wi = -1, i = -1;
        CHECK(sscanf(hits[j].name, "w%d_%d", &wi, &i) == 2 && i % 2 == 0);
    }
    free(q);
    rm_registry_free(r);
}

/* Refresh until the handle reports a change (a PostgreSQL notification
 * arrives asynchronously), at most two seconds; whether one came. */
static bool refresh_until_changed(rm_registry *r) {
    bool changed = false;
    for (double t0 = rm_time_now(); !changed && rm_time_now() - t0 < 2; usleep(10000))
        CHECK_OK(rm_registry_refresh(r, &changed));
    return changed;
}

/* Another handle (another connection, as another process would be) sees a change after refresh. */
TEST(registry_refresh_sees_other_connections_changes) {
    char db[600], p[600], url[700];
    rm_registry *a = fresh_registry(false, 0, db, sizeof db), *b = NULL;
    rm_model *m = NULL;
    CHECK_OK(rm_registry_base(a, &m));
    fixture_adapter(m, 1, 4, 0.02f, p, sizeof p);
    url_of(db, url, sizeof url);
    CHECK_OK(rm_registry_open(url, &b));
    int dim = 0;
    CHECK_OK(rm_registry_embed_dim(b, &dim));
    float *q = calloc((size_t)dim, sizeof *q);
    q[0] = 1;
    rm_reg_hit hits[4];
    int n = -1;
    bool changed = true;
    CHECK_OK(rm_registry_search(b, q, NULL, 4, hits, &n));
    CHECK(n == 0);
    CHECK_OK(add(a, p, "x", NULL, false, 0, NULL));
    CHECK_OK(add(a, p, "y", NULL, false, 1, NULL));
    CHECK_OK(rm_registry_search(b, q, NULL, 4, hits, &n));
    CHECK(n == 0); /* b's pool is its snapshot until it refreshes */
    CHECK(refresh_until_changed(b));
    CHECK_OK(rm_registry_search(b, q, NULL, 4, hits, &n));
    CHECK(n == 2);
    usleep(200000); /* late notifications of the second add arrive and are taken */
    CHECK_OK(rm_registry_refresh(b, &changed));
    CHECK_OK(rm_registry_refresh(b, &changed));
    CHECK(!changed);
    CHECK_OK(rm_registry_adapter_act(a, NULL, "x", RM_REG_DISABLE, "t"));
    CHECK(refresh_until_changed(b));
    CHECK_OK(rm_registry_search(b, q, NULL, 4, hits, &n));
    CHECK(n == 1 && !strcmp(hits[0].name, "y"));
    free(q);
    rm_registry_free(b);
    rm_registry_free(a);
}

/* Two processes share one registry: an add through one is retrieved by the
 * other, which refreshes every 20 ms, within one second (PostgreSQL:
 * LISTEN/NOTIFY; SQLite: the file's data version). */
TEST(registry_add_reaches_another_process_within_a_second) {
    char db[600], p[600], url[700];
    rm_model *m = NULL;
    rm_registry *r = registry_with_adapter(false, 0, db, sizeof db, &m, p, sizeof p);
    url_of(db, url, sizeof url);
    int ready[2], seen[2];
    CHECK(pipe(ready) == 0 && pipe(seen) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* the other server: waits for "late" to become retrievable */
        rm_registry *o = NULL;
        if (rm_registry_open(url, &o) != RAMOLE_OK || rm_registry_refresh(o, NULL) != RAMOLE_OK) _exit(3);
        int dim = 0;
        rm_registry_embed_dim(o, &dim);
        float *q = calloc((size_t)dim, sizeof *q);
        q[0] = 1;
        if (write(ready[1], "r", 1) != 1) _exit(4);
        double t0 = rm_time_now();
        for (;;) {
            rm_reg_hit hits[2];
            int n = 0;
            if (rm_registry_refresh(o, NULL) != RAMOLE_OK || rm_registry_search(o, q, NULL, 2, hits, &n) != RAMOLE_OK)
                _exit(5);
            if (n == 1 && !strcmp(hits[0].name, "late")) break;
            if (rm_time_now() - t0 > 20) _exit(6);
            usleep(20000);
        }
        double t = rm_time_now();
        if (write(seen[1], &t, sizeof t) != sizeof t) _exit(7);
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    CHECK_OK(add(r, p, "late", NULL, false, 0, NULL));
    double added = rm_time_now(), t_seen = 0;
    CHECK(read(seen[0], &t_seen, sizeof t_seen) == sizeof t_seen);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    CHECK_MSG(t_seen - added < 1.0, "seen after %.3f s", t_seen - added);
    close(ready[0]), close(ready[1]), close(seen[0]), close(seen[1]);
    rm_registry_free(r);
}

/* A new projection set through one handle: the other handle's refresh
 * switches to the new embedder (and pool width), old rows re-embedded. */
TEST(registry_refresh_follows_a_new_projection) {
    char db[600], p[600], url[700], pp[600];
    rm_model *m = NULL;
    rm_registry *a = registry_with_adapter(false, 0, db, sizeof db, &m, p, sizeof p), *b = NULL;
    CHECK_OK(add(a, p, "x", NULL, false, 0, NULL));
    url_of(db, url, sizeof url);
    CHECK_OK(rm_registry_open(url, &b));
    int dim = 0;
    CHECK_OK(rm_registry_embed_dim(b, &dim));
    CHECK(dim == m->cfg.hidden);
    rm_reg_hit hits[2];
    int n = 0;
    CHECK_OK(rm_registry_retrieve(b, "reverse the word tree", NULL, 2, hits, &n));
    CHECK(n == 1);
    rm_projection *proj = NULL;
    CHECK_OK(rm_projection_new(m, 8, RM_HIDDEN_FINAL, NULL, RM_POOL_MEAN, 0.05f, &proj));
    uint64_t rng = 3;
    rm_rng_fill_uniform(proj->w, (size_t)8 * m->cfg.hidden, 0.5f, &rng);
    snprintf(pp, sizeof pp, "%s/reg_proj_%d.safetensors", rm_test_tmp_dir(), (int)getpid());
    CHECK_OK(rm_projection_save(proj, pp));
    rm_projection_free(proj);
    CHECK_OK(rm_registry_set_projection(a, pp, "admin", NULL, NULL));
    CHECK_OK(rm_registry_retrieve(a, "reverse the word tree", NULL, 2, hits, &n));
    CHECK(n == 1 && !strcmp(hits[0].name, "x"));
    CHECK(refresh_until_changed(b));
    CHECK_OK(rm_registry_embed_dim(b, &dim));
    CHECK(dim == 8 && rm_registry_n_stale(b) == 0);
    CHECK_OK(rm_registry_retrieve(b, "reverse the word tree", NULL, 2, hits, &n));
    CHECK(n == 1 && !strcmp(hits[0].name, "x"));
    rm_reg_adapter row;
    CHECK_OK(rm_registry_adapter_get(b, NULL, "x", &row));
    CHECK(row.dim == 8 && strlen(row.emb_projection) == 64);
    rm_reg_adapter_clear(&row);
    rm_registry_free(b);
    rm_registry_free(a);
}

typedef struct {
    rm_registry *r;
    const char *text;
    rm_reg_hit hits[4];
    int n;
    rm_status st;
} retrieve_job;

static void *retrieve_thread(void *arg) {
    retrieve_job *j = arg;
    for (int rep = 0; rep < 5 && j->st == RAMOLE_OK; rep++) j->st = rm_registry_retrieve(j->r, j->text, NULL, 3, j->hits, &j->n);
    return NULL;
}

/* Retrievals from many threads at once are embedded in shared batches:
 * each still gets its own text's hits, the scores of its retrieval alone
 * (to float rounding: a batch may take the GEMM path). */
TEST(registry_concurrent_retrievals_batch_their_embeddings) {
    char db[600], p1[600], p2[600];
    rm_model *m = NULL;
    rm_registry *r = registry_with_adapter(false, 0, db, sizeof db, &m, p1, sizeof p1);
    if (!r) return;
    fixture_adapter(m, 2, 8, 0.02f, p2, sizeof p2);
    int64_t id;
    CHECK_OK(add(r, p1, "rev", NULL, false, 0, &id));
    CHECK_OK(add(r, p2, "sum", NULL, false, 1, &id));
    CHECK_OK(add(r, p1, "third", NULL, false, 2, &id));
    static const char *const texts[8] = {"reverse the word cloud", "add 3 and 4", "what is 12 plus 9", "river backwards",
                                         "sum of two numbers", "reverse stone", "x", "a longer request about words"};
    retrieve_job alone[8], together[8];
    for (int i = 0; i < 8; i++) {
        alone[i] = (retrieve_job){.r = r, .text = texts[i]};
        together[i] = alone[i];
        CHECK_OK(rm_registry_retrieve(r, texts[i], NULL, 3, alone[i].hits, &alone[i].n));
    }
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, retrieve_thread, &together[i]);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        CHECK_OK(together[i].st);
        bool same = together[i].n == alone[i].n;
        for (int h = 0; same && h < alone[i].n; h++)
            same = fabsf(together[i].hits[h].score - alone[i].hits[h].score) < 1e-4f &&
                   (!strcmp(together[i].hits[h].name, alone[i].hits[h].name) ||
                    fabsf(alone[i].hits[h].score - alone[i].hits[h ^ 1].score) < 1e-4f); /* a tie may swap */
        bad += !same;
    }
    CHECK_MSG(!bad, "%d of 8 concurrent retrievals differ from their retrievals alone", bad);
    rm_registry_free(r);
}
