/*
 * fuzz_http.h — what the HTTP body harnesses (fuzz_http_json.c,
 * fuzz_http_upload.c) and their regression tests share: a server that is
 * made but never started, over the tiny model and a SQLite registry, and
 * the one-input functions that feed it as a connection would.
 *
 * The registry holds, from tenant "owner", the public adapters a1, a2, a3
 * (GGUF, rank 2..4, with samples of distinct topics) and the private p1;
 * from tenant "fuzz" (every request's caller, an admin) the adapter mine;
 * a router; and a response "cmpl-fuzz" of tenant fuzz that used a1, for
 * /v1/feedback. The adapter files live in a fixed folder,
 * FUZZ_HTTP_FIXTURES (written atomically, the same bytes in every run), so
 * seeds that name them by path (vLLM's lora_path) reproduce. What an input
 * adds is removed again and what it removes is put back, so every input
 * sees the same registry.
 */
#ifndef RM_FUZZ_HTTP_H
#define RM_FUZZ_HTTP_H

#include <errno.h>
#include <jansson.h>

#include "fuzz_util.h"
#include "lora/adapter.h"
#include "serve/multipart.h"
#include "serve/serve_internal.h"

#define FUZZ_HTTP_FIXTURES "/tmp/ramole-fuzz-http"
#define FUZZ_HTTP_TENANT "fuzz"

typedef struct {
    rm_model *model;
    rm_registry *reg;   /* the server's: it embeds through the server's scheduler, which never runs here */
    rm_registry *setup; /* the same registry with the base set: adds adapters, embedding them itself */
    rm_server *srv;
} fuzz_http;

/* FUZZ_HTTP_FIXTURES/name. */
static inline const char *fuzz_http_fixture(const char *name) {
    static char buf[4][512];
    static int slot;
    slot = (slot + 1) & 3;
    snprintf(buf[slot], sizeof buf[0], "%s/%s", FUZZ_HTTP_FIXTURES, name);
    return buf[slot];
}

/* A random GGUF adapter of m at FUZZ_HTTP_FIXTURES/name, or a PEFT folder
 * when peft; written beside it and renamed, so a reader never sees half. */
static inline void fuzz_http_adapter_file(rm_model *m, const char *name, int rank, uint64_t seed, bool peft) {
    const unsigned qv = (1u << RM_TARGET_Q) | (1u << RM_TARGET_V);
    rm_adapter *a = NULL;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", fuzz_http_fixture(name), (int)getpid());
    if (rm_adapter_random(m, rank, 2.0f * rank, qv, seed, 0.05f, &a) != RAMOLE_OK ||
        (peft ? rm_adapter_save_peft(a, m, tmp) : rm_adapter_save_gguf(a, m, tmp)) != RAMOLE_OK)
        abort();
    rm_adapter_free(a);
    if (rename(tmp, fuzz_http_fixture(name)) != 0) { /* a folder already there: the same files */
        if (!peft) abort();
        char p[700];
        snprintf(p, sizeof p, "%s/adapter_config.json", tmp), remove(p);
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", tmp), remove(p);
        rmdir(tmp);
    }
}

static inline void fuzz_http_add(rm_registry *reg, const char *tenant, const char *name, bool is_private,
                                 const char *sample) {
    char file[160];
    snprintf(file, sizeof file, "%s.gguf", name);
    const char *samples[2] = {sample, "a short question"};
    rm_reg_add_opts o = {.path = fuzz_http_fixture(file), .name = name, .tenant = tenant, .is_private = is_private,
                         .samples = samples, .n_samples = 2, .actor = "fuzz"};
    int64_t id;
    if (rm_registry_adapter_add(reg, &o, &id) != RAMOLE_OK) {
        fprintf(stderr, "fuzz: adding %s: %s\n", name, ramole_last_error());
        abort();
    }
}

/* The server over the tiny model and its registry, made once per process. */
static inline fuzz_http *fuzz_http_get(void) {
    static fuzz_http h;
    if (h.srv) return &h;
    fuzz_init_once();
    h.model = fuzz_tiny_model();
    if (mkdir(FUZZ_HTTP_FIXTURES, 0700) != 0 && errno != EEXIST) abort();
    static const char *names[] = {"a1", "a2", "a3", "p1", "mine", "router"};
    for (int i = 0; i < 6; i++) {
        char file[64];
        snprintf(file, sizeof file, "%s.gguf", names[i]);
        fuzz_http_adapter_file(h.model, file, 2 + i % 3, 40 + (uint64_t)i, false);
    }
    fuzz_http_adapter_file(h.model, "peft", 2, 50, true);
    const char *base_dir = fuzz_path(0, "http-base");
    if (rm_model_save(h.model, RM_SOURCE_HF, RM_TYPE_F32, base_dir) != RAMOLE_OK) abort();
    char url[1600];
    snprintf(url, sizeof url, "sqlite:%s", fuzz_path(1, "http-registry.db"));
    rm_registry_init_opts ro = {.model = base_dir, .layer = RM_HIDDEN_FINAL, .actor = "fuzz"};
    if (rm_registry_create(url, &ro, &h.reg) != RAMOLE_OK ||
        rm_registry_tenant_add(h.reg, "owner", "fuzz") != RAMOLE_OK ||
        rm_registry_tenant_add(h.reg, FUZZ_HTTP_TENANT, "fuzz") != RAMOLE_OK ||
        rm_registry_set_router(h.reg, fuzz_http_fixture("router.gguf"), "fuzz") != RAMOLE_OK) {
        fprintf(stderr, "fuzz: registry: %s\n", ramole_last_error());
        abort();
    }
    fuzz_http_add(h.reg, "owner", "a1", false, "Translate to French: good morning");
    fuzz_http_add(h.reg, "owner", "a2", false, "the cat sat on the mat");
    fuzz_http_add(h.reg, "owner", "a3", false, "hello world, the owl speaks: hoot! 123");
    fuzz_http_add(h.reg, "owner", "p1", true, "the secret recipe");
    fuzz_http_add(h.reg, FUZZ_HTTP_TENANT, "mine", false, "my own task");
    rm_reg_response resp = {.id = "cmpl-fuzz", .tenant = FUZZ_HTTP_TENANT, .n = 1, .names = {"a1"}};
    char *path = NULL;
    if (rm_registry_adapter_file(h.reg, FUZZ_HTTP_TENANT, "a1", &path, resp.hashes[0]) != RAMOLE_OK ||
        rm_registry_response_add(h.reg, &resp, 1) != RAMOLE_OK)
        abort();
    rm_free(path);
    /* a server sets the registry's base itself: open it again without one
     * (the first handle stays, to put back what a request removed) */
    h.setup = h.reg;
    if (rm_registry_open(url, &h.reg) != RAMOLE_OK) abort();
    rm_engine_params ep = {.n_threads = 1, .max_seqs = 4, .n_ctx = 64, .kv_blocks = 16,
                           .adapter_cache_bytes = 1 << 20};
    rm_server_opts so = {.model_name = "tiny"};
    if (rm_server_new(h.model, h.reg, &ep, &so, &h.srv) != RAMOLE_OK) {
        fprintf(stderr, "fuzz: server: %s\n", ramole_last_error());
        abort();
    }
    /* the scheduler alone, as rm_server_start runs it (no HTTP): retrievals
     * and uploads embed through it, and generations run on it */
    if (srv_sched_start(&h.srv->sched, h.srv->engine, &h.srv->metrics) != RAMOLE_OK) abort();
    return &h;
}

/* Every request's caller: tenant fuzz, admin (keys are checked before a body is read). */
static inline const caller *fuzz_http_caller(void) {
    static const caller who = {.tenant = (char *)FUZZ_HTTP_TENANT, .role = RM_REG_ROLE_ADMIN};
    return &who;
}

/* A reply as the server sends it: a status of a client or server error
 * with an {"error": ...} object, or a success with a body. */
static inline void fuzz_http_check_reply(const srv_reply *r) {
    char *t = r->json ? json_dumps(r->json, JSON_COMPACT) : NULL;
    bool error_obj_ok = r->status < 400 || json_is_object(json_object_get(r->json, "error"));
    /* a client's body must never be the server's fault (503: draining, which never happens here) */
    if (r->status < 200 || (r->status >= 500 && r->status != 503) || r->status > 599 || (!t && !r->text) ||
        !error_obj_ok) {
        fprintf(stderr, "fuzz: the reply %d %s is not one a client may get\n", r->status, t ? t : r->text);
        abort();
    }
    fuzz_sink += t ? strlen(t) : strlen(r->text);
    free(t);
}

/* Undo what a reply changed in the registry: remove tenant fuzz's new
 * adapter `added`, or put back `mine` when it was unloaded. */
static inline void fuzz_http_restore(fuzz_http *h, const char *added, bool mine_gone) {
    if (added && rm_registry_adapter_remove(h->reg, FUZZ_HTTP_TENANT, added, "fuzz") != RAMOLE_OK) abort();
    if (mine_gone) fuzz_http_add(h->setup, FUZZ_HTTP_TENANT, "mine", false, "my own task");
}

/*
 * fuzz_http_json's input: the route's path, a line end, then the body, e.g.
 * "/v1/completions\n{...}". A generation body that reads runs through the
 * server's scheduler, as a connection hands it over, to its end (a tiny
 * model, a context of 64).
 */
static inline void fuzz_http_json_one(const uint8_t *data, size_t size) {
    fuzz_http *h = fuzz_http_get();
    const uint8_t *route_b, *body;
    size_t nr, nb;
    fuzz_split(data, size, "\n", 1, &route_b, &nr, &body, &nb);
    char route[40];
    if (nr >= sizeof route) return;
    memcpy(route, route_b, nr), route[nr] = 0;
    bool comp = !strcmp(route, "/v1/completions"), chat = !strcmp(route, "/v1/chat/completions");
    srv_reply rep;
    if (comp || chat) {
        srv_gen g;
        if (!srv_generate_read(h->srv, fuzz_http_caller(), chat, (const char *)body, nb, &g, &rep)) {
            fuzz_http_check_reply(&rep);
            srv_reply_clear(&rep);
            return;
        }
        if (g.n_choices < 1 || g.n_choices > SRV_MAX_CHOICES) abort();
        for (int c = 0; c < g.n_choices; c++) {
            if (!json_is_object(g.lora[c])) abort();
            if (!srv_sched_push(&h->srv->sched, g.req[c], 1 << 20)) abort();
        }
        while (srv_sched_in_flight(&h->srv->sched)) usleep(50);
        srv_gen_clear(&g);
        return;
    }
    if (!srv_json_route(h->srv, fuzz_http_caller(), route, (const char *)body, nb, &rep)) return;
    fuzz_http_check_reply(&rep);
    bool load = !strcmp(route, "/v1/load_lora_adapter"), unload = !strcmp(route, "/v1/unload_lora_adapter");
    if (rep.status == 200 && (load || unload)) {
        json_t *o = json_loadb((const char *)body, nb, 0, NULL);
        const char *name = json_string_value(json_object_get(o, "lora_name"));
        if (!name) abort();
        fuzz_http_restore(h, load ? name : NULL, unload && !strcmp(name, "mine"));
        json_decref(o);
    }
    srv_reply_clear(&rep);
}

/* Sizes of the pieces a body is fed in, in turn: reads split anywhere. */
static const size_t fuzz_http_pieces[] = {1, 7, 64, 3, 4096, 2, 100000};

/*
 * fuzz_http_upload's input: the Content-Type header's value, a line end,
 * then the body, fed to an upload in pieces of fuzz_http_pieces; then the
 * upload's reply (multipart checks, fields, samples, and
 * rm_registry_adapter_add when the parts make an adapter).
 */
static inline void fuzz_http_upload_one(const uint8_t *data, size_t size) {
    fuzz_http *h = fuzz_http_get();
    const uint8_t *ct_b, *body;
    size_t nc, nb;
    fuzz_split(data, size, "\n", 1, &ct_b, &nc, &body, &nb);
    char *ct = fuzz_strndup(ct_b, nc);
    srv_upload *u = srv_upload_new(nc ? ct : NULL);
    free(ct);
    if (!u) abort(); /* the scratch folder: the harness's fault */
    for (size_t off = 0, i = 0; off < nb; i++) {
        size_t n = fuzz_http_pieces[i % (sizeof fuzz_http_pieces / sizeof *fuzz_http_pieces)];
        if (n > nb - off) n = nb - off;
        srv_upload_feed(u, (const char *)body + off, n);
        off += n;
    }
    srv_reply rep;
    const char *name = NULL;
    srv_upload_reply(h->srv, u, fuzz_http_caller(), &rep, &name);
    fuzz_http_check_reply(&rep);
    if (rep.status == 201) fuzz_http_restore(h, name, false);
    srv_reply_clear(&rep);
    srv_upload_free(u);
}

#endif
