/*
 * server.c — HTTP: routes, keys, bodies, adapter choice, responses.
 *
 * libmicrohttpd calls handle() several times per request: once with the
 * headers (the body's declared size is checked there, so an oversized body
 * gets 413 before it is read), once per piece of body, and once at its end,
 * when the route runs. Generation submits one engine request per choice
 * and answers with a callback response (gen_response.c) that writes what
 * the scheduler produced.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_internal.h"


/* ---- the adapter source: registry files are GGUF LoRA files, loaded by path ---- */

static rm_status load_file(void *user, const rm_model *base, const char *path, rm_adapter **out) {
    (void)user;
    return rm_adapter_load(base, path, out);
}

/* ---- per-connection state ---------------------------------------------------------- */



/* ---- responses ------------------------------------------------------------------------ */

enum MHD_Result send_text(rm_server *s, struct MHD_Connection *c, const char *route, int status,
                                 const char *type, const char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (status == 429) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    srv_metrics_request(&s->metrics, route, status);
    return ok;
}

/* Send obj (a new reference, freed here). */
enum MHD_Result send_json(rm_server *s, struct MHD_Connection *c, const char *route, int status, json_t *obj) {
    char *txt = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!txt) return send_text(s, c, route, 500, "text/plain", "out of memory\n", 14);
    enum MHD_Result ok = send_text(s, c, route, status, "application/json", txt, strlen(txt));
    free(txt);
    return ok;
}

enum MHD_Result send_reply(rm_server *s, struct MHD_Connection *c, const char *route, srv_reply *r) {
    enum MHD_Result ok = r->json ? send_json(s, c, route, r->status, r->json)
                                 : send_text(s, c, route, r->status, "text/plain", r->text ? r->text : "",
                                             r->text ? strlen(r->text) : 0);
    r->json = NULL; /* send_json took it */
    srv_reply_clear(r);
    return ok;
}

enum MHD_Result send_error(rm_server *s, struct MHD_Connection *c, const char *route, int status,
                                  const char *param, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(s, c, route, status, error_obj(status, msg, param, code));
}

/* The HTTP status of a library error. */
int status_of(rm_status st) {
    switch (st) {
    case RAMOLE_ERR_NOT_FOUND: return 404;
    case RAMOLE_ERR_INVALID: case RAMOLE_ERR_RANGE: case RAMOLE_ERR_FORMAT: case RAMOLE_ERR_MISMATCH:
    case RAMOLE_ERR_UNSUPPORTED: return 400;
    default: return 500;
    }
}

/* ---- keys ------------------------------------------------------------------------------ */


/* Check the Authorization header; on failure the error is sent and false returned. */
bool authorize(rm_server *s, struct MHD_Connection *c, const char *route, rm_reg_role need, caller *who,
                      enum MHD_Result *ret) {
    who->tenant = NULL;
    who->role = RM_REG_ROLE_ADMIN;
    if (!s->keys_required) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) || !h[7]) {
        *ret = send_error(s, c, route, 401, NULL, "missing_api_key",
                          "this server needs an API key: send Authorization: Bearer KEY");
        return false;
    }
    if (rm_registry_key_verify(s->reg, h + 7, &who->tenant, &who->role) != RAMOLE_OK) {
        *ret = send_error(s, c, route, 401, NULL, "invalid_api_key", "the API key is unknown or revoked");
        return false;
    }
    if (who->role < need) {
        *ret = send_error(s, c, route, 403, NULL, "insufficient_role", "this key's role is %s; %s needs %s",
                          rm_reg_role_name(who->role), route, rm_reg_role_name(need));
        rm_free(who->tenant);
        who->tenant = NULL;
        return false;
    }
    return true;
}

const char *tenant_of(const caller *who) { return who->tenant ? who->tenant : RM_REG_DEFAULT_TENANT; }

/* ---- generation ------------------------------------------------------------------------- */

static enum MHD_Result route_generate(rm_server *s, struct MHD_Connection *c, const char *route, bool chat,
                                      conn_ctx *cx) {
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, RM_REG_ROLE_GENERATE, &who, &ret)) return ret;
    /* a full queue answers before retrieval and preloading spend work on a
     * request it would refuse (the push below checks again, atomically) */
    if (srv_sched_in_flight(&s->sched) >= s->limit) {
        rm_free(who.tenant);
        return send_error(s, c, route, 429, NULL, "queue_full", "the server's queue is full; retry later");
    }
    srv_gen gen;
    srv_reply err;
    if (!srv_generate_read(s, &who, chat, cx->body, cx->len, &gen, &err)) {
        rm_free(who.tenant);
        return send_reply(s, c, route, &err);
    }
    /* adapters are read here, on the connection's thread: a cold load on
     * the scheduler thread would stall every stream for its duration */
    rm_engine_hold *holds[SRV_MAX_CHOICES] = {0};
    int pushed = 0;
    rm_status st = RAMOLE_OK;
    for (int k = 0; k < gen.n_choices && st == RAMOLE_OK; k++)
        st = rm_engine_preload(s->engine, &gen.req[k]->spec.req, &holds[k]);
    if (st != RAMOLE_OK) {
        ret = send_error(s, c, route, status_of(st), NULL, "invalid_value", "%s", ramole_last_error());
        goto release;
    }
    while (pushed < gen.n_choices && srv_sched_push(&s->sched, gen.req[pushed], s->limit)) pushed++;
    if (pushed < gen.n_choices) {
        ret = send_error(s, c, route, 429, NULL, "queue_full", "the server's queue is full; retry later");
        goto release;
    }
    /* wait for the submits' verdicts: a refused request is this client's error */
    srv_req *refused = NULL;
    for (int k = 0; k < gen.n_choices; k++) {
        srv_req *r = gen.req[k];
        pthread_mutex_lock(&r->mu);
        while (r->state == SRV_QUEUED) pthread_cond_wait(&r->cv, &r->mu);
        if (r->state == SRV_REFUSED && !refused) refused = r;
        pthread_mutex_unlock(&r->mu);
    }
    if (refused) {
        ret = send_error(s, c, route, status_of(refused->refused), NULL, "invalid_value", "%s", refused->error);
        goto release;
    }
    struct MHD_Response *resp = srv_gen_response(s, &gen, chat);
    pushed = 0; /* the response owns the requests now */
    if (!resp) {
        ret = MHD_NO;
        goto release;
    }
    ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    srv_metrics_request(&s->metrics, route, 200);
release:
    for (int k = 0; k < pushed; k++) srv_sched_cancel(&s->sched, gen.req[k]); /* a no-op when it finished */
    for (int k = 0; k < SRV_MAX_CHOICES; k++) rm_engine_hold_free(s->engine, holds[k]); /* submitted: each holds its own */
    srv_gen_clear(&gen);
    rm_free(who.tenant);
    return ret;
}

/* ---- other routes ------------------------------------------------------------------------ */

json_t *adapter_json(const rm_reg_adapter *a) {
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:I, s:s}", "id", (json_int_t)a->id, "name", a->name,
                     "description", a->description ? a->description : "", "tenant", a->tenant ? a->tenant : "",
                     "visibility", a->is_public ? "public" : "private", "status", rm_reg_status_name(a->status),
                     "rank", a->rank, "alpha", (double)a->alpha, "size", (json_int_t)a->size, "hash", a->hash);
}

/* The adapters `tenant` may see: its own, and every public active one. */
static rm_status visible_adapters(rm_server *s, const char *tenant, json_t *arr, bool models) {
    if (!s->reg) return RAMOLE_OK;
    rm_reg_adapter *a = NULL;
    int n = 0;
    RM_TRY(rm_registry_adapter_list(s->reg, NULL, &a, &n));
    for (int i = 0; i < n; i++) {
        bool own = a[i].tenant && !strcmp(a[i].tenant, tenant);
        if (!own && !(a[i].is_public && a[i].status == RM_REG_ACTIVE)) continue;
        if (models) {
            if (a[i].status != RM_REG_ACTIVE) continue;
            json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", a[i].name, "object", "model",
                                                 "created", (json_int_t)a[i].created, "owned_by", a[i].tenant,
                                                 "parent", s->model_name));
        } else
            json_array_append_new(arr, adapter_json(&a[i]));
    }
    rm_reg_adapters_free(a, n);
    return RAMOLE_OK;
}

/* GET /v1/models (the base first, then the adapters as models) or GET
 * /v1/adapters; with `one`, GET /v1/models/{one}: that model alone, as
 * OpenAI's client retrieves it, or 404. */
static enum MHD_Result route_list(rm_server *s, struct MHD_Connection *c, const char *route, bool models,
                                  const char *one) {
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, RM_REG_ROLE_GENERATE, &who, &ret)) return ret;
    json_t *arr = json_array();
    if (models)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:s}", "id", s->model_name, "object", "model",
                                             "created", 0, "owned_by", "ramole"));
    rm_status st = visible_adapters(s, tenant_of(&who), arr, models);
    rm_free(who.tenant);
    if (st != RAMOLE_OK) {
        json_decref(arr);
        return send_error(s, c, route, 500, NULL, NULL, "%s", ramole_last_error());
    }
    if (one) {
        json_t *found = NULL;
        for (size_t i = 0; i < json_array_size(arr) && !found; i++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(arr, i), "id")), one))
                found = json_incref(json_array_get(arr, i));
        json_decref(arr);
        if (!found) return send_error(s, c, route, 404, "model", "model_not_found", "no model %s", one);
        return send_json(s, c, route, 200, found);
    }
    return send_json(s, c, route, 200, json_pack("{s:s, s:o}", "object", "list", "data", arr));
}

/* The JSON routes that answer at once (bodies.c); vLLM's load and unload need the admin role. */
static enum MHD_Result route_json(rm_server *s, struct MHD_Connection *c, const char *route, rm_reg_role need,
                                  conn_ctx *cx) {
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, need, &who, &ret)) return ret;
    srv_reply rep;
    srv_json_route(s, &who, route, cx->body, cx->len, &rep);
    rm_free(who.tenant);
    return send_reply(s, c, route, &rep);
}

/* GET /tokenizer_info, vLLM's: what a harness needs to tokenize through the server. */
static enum MHD_Result route_tokenizer_info(rm_server *s, struct MHD_Connection *c) {
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, "/tokenizer_info", RM_REG_ROLE_GENERATE, &who, &ret)) return ret;
    rm_free(who.tenant);
    json_t *info = srv_tokenizer_info(s);
    if (!info) return send_error(s, c, "/tokenizer_info", 404, NULL, "no_tokenizer", "the model has no tokenizer");
    return send_json(s, c, "/tokenizer_info", 200, info);
}

/* Admin only when keys are required: the feedback labels name adapters, private ones too. */
static enum MHD_Result route_metrics(rm_server *s, struct MHD_Connection *c, const char *route) {
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, RM_REG_ROLE_ADMIN, &who, &ret)) return ret;
    rm_free(who.tenant);
    rm_engine_stats es;
    srv_sched_stats(&s->sched, &es);
    /* not in_flight - running: a finished request leaves in_flight just
     * after its reply may have gone, and a scrape then saw it queued */
    int queued = srv_sched_queued(&s->sched);
    rm_reg_rating *ratings = NULL;
    int n_ratings = 0;
    if (s->reg && rm_registry_ratings(s->reg, NULL, &ratings, &n_ratings) != RAMOLE_OK) n_ratings = 0;
    char *t = srv_metrics_text(&s->metrics, &es, queued > 0 ? queued : 0, ratings, n_ratings);
    rm_reg_ratings_free(ratings, n_ratings);
    if (!t) return send_error(s, c, route, 500, NULL, NULL, "out of memory");
    ret = send_text(s, c, route, 200, "text/plain; version=0.0.4", t, strlen(t));
    rm_free(t);
    return ret;
}

/* ---- dispatch --------------------------------------------------------------------------- */

static bool is_json_route(const char *url) {
    return !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/retrieve") ||
           !strcmp(url, "/v1/feedback") || !strcmp(url, "/tokenize") || !strcmp(url, "/detokenize") ||
           !strcmp(url, "/v1/embeddings");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    rm_server *s = cls;
    (void)version;
    conn_ctx *cx = *con_cls;
    if (!cx) {
        if (!(cx = rm_calloc(1, sizeof *cx))) return MHD_NO;
        *con_cls = cx;
        bool is_upload = !strcmp(method, "POST") && !strcmp(url, "/v1/adapters");
        cx->limit = is_upload ? s->o.max_upload : s->o.max_body;
        /* the declared size, before any of the body is read */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > cx->limit) {
            cx->too_big = true;
            return send_error(s, c, url, 413, NULL, "body_too_large", "the body is over %zu bytes", cx->limit);
        }
        if (is_upload &&
            !(cx->upload = srv_upload_new(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"))))
            return send_error(s, c, url, 500, NULL, NULL, "cannot store the upload");
        return MHD_YES;
    }
    if (*upload_size && cx->upload) {
        cx->len += *upload_size;
        if (cx->len > cx->limit) cx->too_big = true;
        else srv_upload_feed(cx->upload, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cx->too_big && cx->len + *upload_size <= cx->limit) {
            if (cx->len + *upload_size + 1 > cx->cap) {
                size_t cap = cx->cap ? cx->cap : 4096;
                while (cap < cx->len + *upload_size + 1) cap *= 2;
                char *t = rm_realloc(cx->body, cap);
                if (!t) return MHD_NO;
                cx->body = t;
                cx->cap = cap;
            }
            memcpy(cx->body + cx->len, upload, *upload_size);
            cx->len += *upload_size;
        } else
            cx->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (cx->too_big) return send_error(s, c, url, 413, NULL, "body_too_large", "the body is over %zu bytes", cx->limit);
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    if (post && !strcmp(url, "/v1/completions")) return route_generate(s, c, "/v1/completions", false, cx);
    if (post && !strcmp(url, "/v1/chat/completions")) return route_generate(s, c, "/v1/chat/completions", true, cx);
    if (post && !strcmp(url, "/v1/retrieve")) return route_json(s, c, "/v1/retrieve", RM_REG_ROLE_GENERATE, cx);
    if (post && !strcmp(url, "/v1/feedback")) return route_json(s, c, "/v1/feedback", RM_REG_ROLE_GENERATE, cx);
    if (post && !strcmp(url, "/v1/embeddings")) return route_json(s, c, "/v1/embeddings", RM_REG_ROLE_GENERATE, cx);
    if (post && !strcmp(url, "/tokenize")) return route_json(s, c, "/tokenize", RM_REG_ROLE_GENERATE, cx);
    if (post && !strcmp(url, "/detokenize")) return route_json(s, c, "/detokenize", RM_REG_ROLE_GENERATE, cx);
    if (get && !strcmp(url, "/tokenizer_info")) return route_tokenizer_info(s, c);
    if (get && !strcmp(url, "/v1/models")) return route_list(s, c, "/v1/models", true, NULL);
    if (get && !strncmp(url, "/v1/models/", 11) && url[11]) return route_list(s, c, "/v1/models/{id}", true, url + 11);
    if (get && !strcmp(url, "/v1/adapters")) return route_list(s, c, "/v1/adapters", false, NULL);
    if (post && !strcmp(url, "/v1/adapters")) return route_upload(s, c, cx);
    if (post && !strcmp(url, "/v1/load_lora_adapter"))
        return route_json(s, c, "/v1/load_lora_adapter", RM_REG_ROLE_ADMIN, cx);
    if (post && !strcmp(url, "/v1/unload_lora_adapter"))
        return route_json(s, c, "/v1/unload_lora_adapter", RM_REG_ROLE_ADMIN, cx);
    if (!strncmp(url, "/v1/adapters/", 13)) {
        bool handled;
        enum MHD_Result r = route_adapter_id(s, c, url, method, &handled);
        if (handled) return r;
    }
    if (get && !strcmp(url, "/health"))
        return send_json(s, c, "/health", s->draining ? 503 : 200,
                         json_pack("{s:s}", "status", s->draining ? "draining" : "ok"));
    if (get && !strcmp(url, "/metrics")) return route_metrics(s, c, "/metrics");
    if (is_json_route(url) || !strcmp(url, "/v1/models"))
        return send_error(s, c, "other", 405, NULL, "method_not_allowed", "%s does not take %s", url, method);
    return send_error(s, c, "other", 404, NULL, "unknown_route", "no route %s %s", method, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_ctx *cx = *con_cls;
    if (!cx) return;
    rm_free(cx->body);
    srv_upload_free(cx->upload);
    rm_free(cx);
    *con_cls = NULL;
}

/* ---- the refresh thread ----------------------------------------------------------------- */

static void *refresh_main(void *arg) {
    rm_server *s = arg;
    pthread_mutex_lock(&s->quit_mu);
    while (!s->quit) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + (long)(s->o.refresh_s * 1e9);
        until.tv_sec += ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&s->quit_cv, &s->quit_mu, &until);
        if (s->quit) break;
        pthread_mutex_unlock(&s->quit_mu);
        if (rm_registry_refresh(s->reg, NULL) != RAMOLE_OK)
            rm_log_warn("serve: registry refresh: %s", ramole_last_error());
        /* responses too old to rate are forgotten: the table stays bounded by the rate times the TTL */
        double now = rm_time_now();
        if (now - s->expired_at >= SRV_EXPIRE_PERIOD_S) {
            s->expired_at = now;
            if (rm_registry_response_expire(s->reg, s->o.feedback_ttl_s, NULL) != RAMOLE_OK)
                rm_log_warn("serve: expiring old responses: %s", ramole_last_error());
        }
        pthread_mutex_lock(&s->quit_mu);
    }
    pthread_mutex_unlock(&s->quit_mu);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static bool loopback(const char *host) { return !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost"); }

rm_status rm_server_new(rm_model *m, rm_registry *reg, const rm_engine_params *ep, const rm_server_opts *o,
                        rm_server **out) {
    *out = NULL;
    if (!m->tokenizer) return rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer; the server reads and writes text", m->path);
    rm_server *s = rm_calloc(1, sizeof *s);
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    s->model = m;
    s->reg = reg;
    s->o = *o;
    if (!s->o.queue) s->o.queue = 64;
    if (!s->o.max_body) s->o.max_body = 1 << 20;
    if (!s->o.max_upload) s->o.max_upload = 256u << 20;
    if (!s->o.timeout_s) s->o.timeout_s = 30;
    if (!s->o.default_top_k) s->o.default_top_k = 3;
    if (s->o.refresh_s <= 0) s->o.refresh_s = 0.5;
    if (s->o.deadline_s <= 0) s->o.deadline_s = 600;
    pthread_mutex_init(&s->quit_mu, NULL);
    pthread_cond_init(&s->quit_cv, NULL);
    srv_metrics_init(&s->metrics);
    if (s->o.feedback_ttl_s <= 0) s->o.feedback_ttl_s = RM_REG_RESPONSE_TTL;
    unsigned char tag[8];
    if (getrandom(tag, sizeof tag, 0) != (ssize_t)sizeof tag) { /* still unique per process and start time */
        uint64_t v = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
        memcpy(tag, &v, sizeof tag);
    }
    for (int i = 0; i < 8; i++) snprintf(s->id_tag + 2 * i, 3, "%02x", tag[i]);
    s->host = rm_strdup(o->host ? o->host : "127.0.0.1");
    const char *base = m->path ? strrchr(m->path, '/') : NULL;
    s->model_name = rm_strdup(o->model_name ? o->model_name : base && base[1] ? base + 1 : m->path ? m->path : "base");
    rm_status st = RAMOLE_OK;
    if (!s->host || !s->model_name) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (reg) {
        int64_t nk = 0;
        if ((st = rm_registry_set_base(reg, m)) != RAMOLE_OK || (st = rm_registry_key_count(reg, &nk)) != RAMOLE_OK)
            goto fail;
        s->keys_required = nk > 0;
    }
    if (!s->keys_required && !loopback(s->host)) {
        st = rm_err(RAMOLE_ERR_INVALID, "the registry holds no API key, so the server runs open and binds loopback "
                                        "only, not %s (create a key: ramole key create)", s->host);
        goto fail;
    }
    rm_engine_params p = *ep;
    p.source.load = load_file;
    p.source.user = s;
    if ((st = rm_engine_new(m, &p, &s->engine)) != RAMOLE_OK) goto fail;
    /* the registry's embeddings run in the engine's steps, beside the
     * streams and under the prefill allowance: a forward of their own
     * would stall every stream for its length and read the weights again */
    if (reg && (st = rm_registry_set_runner(reg, srv_sched_embed, &s->sched, p.n_ctx)) != RAMOLE_OK) goto fail;
    s->limit = rm_engine_max_seqs(s->engine) + s->o.queue;
    *out = s;
    return RAMOLE_OK;
fail:
    rm_server_free(s);
    return st;
}

rm_status rm_server_start(rm_server *s) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->o.port)};
    const char *h = !strcmp(s->host, "localhost") ? "127.0.0.1" : s->host;
    if (inet_pton(AF_INET, h, &addr.sin_addr) != 1)
        return rm_err(RAMOLE_ERR_INVALID, "--host %s is not an IPv4 address", s->host);
    RM_TRY(srv_sched_start(&s->sched, s->engine, &s->metrics));
    s->started = true;
    RM_TRY(srv_record_start(&s->record, s->reg));
    s->http = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL,
                               NULL, handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
                               completed, s, MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_END);
    if (!s->http) return rm_err(RAMOLE_ERR_IO, "cannot listen on %s:%d (in use?)", s->host, s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->http, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    if (s->reg) {
        if (pthread_create(&s->refresher, NULL, refresh_main, s) != 0)
            return rm_err(RAMOLE_ERR_INTERNAL, "cannot start the refresh thread");
        s->refreshing = true;
    }
    return RAMOLE_OK;
}

int  rm_server_port(const rm_server *s) { return s->port; }
bool rm_server_keys_required(const rm_server *s) { return s->keys_required; }

void rm_server_shutdown(rm_server *s, double grace_s) {
    if (!s->started) return;
    s->draining = true;
    double until = rm_time_now() + grace_s;
    while (srv_sched_in_flight(&s->sched) > 0 && rm_time_now() < until) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    srv_sched_cancel_all(&s->sched);
    while (srv_sched_in_flight(&s->sched) > 0) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        srv_sched_cancel_all(&s->sched);
    }
    if (s->http) MHD_stop_daemon(s->http);
    s->http = NULL;
    srv_record_stop(&s->record); /* after the connections: nothing queues any more */
    srv_sched_stop(&s->sched);
    pthread_mutex_lock(&s->quit_mu);
    s->quit = true;
    pthread_cond_broadcast(&s->quit_cv);
    pthread_mutex_unlock(&s->quit_mu);
    if (s->refreshing) pthread_join(s->refresher, NULL);
    s->refreshing = false;
    s->started = false;
}

void rm_server_free(rm_server *s) {
    if (!s) return;
    rm_server_shutdown(s, 0);
    rm_engine_free(s->engine);
    srv_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->quit_mu);
    pthread_cond_destroy(&s->quit_cv);
    rm_free(s->host);
    rm_free(s->model_name);
    rm_free(s);
}
