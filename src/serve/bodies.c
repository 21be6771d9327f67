/*
 * bodies.c — the JSON request bodies of the server's POST routes, read and
 * answered apart from any connection.
 *
 * Each function takes the body's bytes and the caller (whose key server.c
 * has already checked) and gives a reply (status and JSON) or, for
 * generation, the request ready for the scheduler. The connection code only
 * collects bytes and sends what these return, so the fuzz harness
 * (fuzz/fuzz_http_json.c) drives exactly what a client's body reaches.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

/* ---- replies --------------------------------------------------------------------------- */

static const char *error_type(int status) {
    switch (status) {
    case 400: case 413: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 408: return "timeout_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return "server_error";
    }
}

/* Bytes of the UTF-8 sequence at p (1..4), or 0 when it is not valid UTF-8
 * as JSON takes it (no overlong forms, surrogates or code points past U+10FFFF). */
static int utf8_len(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    int n = (p[0] >> 5) == 6 ? 2 : (p[0] >> 4) == 14 ? 3 : (p[0] >> 3) == 30 ? 4 : 0;
    uint32_t cp = p[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

bool srv_utf8_valid(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (!n) return false;
        p += n;
    }
    return true;
}

void srv_utf8_scrub(char *s) {
    for (unsigned char *p = (unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (!n) *p = '?', n = 1;
        p += n;
    }
}

json_t *error_obj(int status, const char *msg, const char *param, const char *code) {
    char text[1024];
    snprintf(text, sizeof text, "%s", msg);
    srv_utf8_scrub(text); /* messages quote what clients sent, and may be cut inside a character */
    msg = text;
    return json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", msg, "type", error_type(status), "param",
                     param, "code", code);
}

void srv_reply_json(srv_reply *r, int status, json_t *obj) {
    srv_reply_clear(r);
    r->status = status;
    r->json = obj;
}

void srv_reply_error(srv_reply *r, int status, const char *param, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_reply_json(r, status, error_obj(status, msg, param, code));
}

void srv_reply_clear(srv_reply *r) {
    json_decref(r->json);
    rm_free(r->text);
    memset(r, 0, sizeof *r);
}

/* The body as a JSON object, or NULL with the 400 reply in *err. */
static json_t *body_object(const char *body, size_t len, srv_reply *err) {
    json_error_t jerr;
    json_t *o = json_loadb(body ? body : "", len, 0, &jerr);
    if (o && json_is_object(o)) return o;
    srv_reply_error(err, 400, NULL, "invalid_json", "the body is not a JSON object: %s",
                    o ? "another JSON value" : jerr.text);
    json_decref(o);
    return NULL;
}

/* ---- choosing adapters ---------------------------------------------------------------- */

/* The text retrieval embeds: the prompt, or the last user message. */
static const char *retrieval_text(const rm_request_spec *sp) {
    if (sp->prompt) return sp->prompt;
    for (int i = sp->req.n_messages - 1; i >= 0; i--)
        if (!strcmp(sp->req.messages[i].role, "user")) return sp->req.messages[i].content;
    return NULL;
}

/* One adapter of the request: its file as the engine's name. */
/* score: the adapter's retrieval score, which a router with a retrieval
 * prior weighs in (0: not retrieved). */
static rm_status add_adapter(rm_request_spec *sp, char *path, float weight, float score) {
    int i = sp->req.n_adapters;
    if (i >= RM_LORA_MAX_K) {
        rm_free(path);
        return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": at most %d adapters", RM_LORA_MAX_K);
    }
    sp->adapters[i] = path;
    sp->req.adapters[i] = path;
    sp->req.weights[i] = weight;
    sp->req.retrieval[i] = score;
    sp->req.n_adapters = i + 1;
    return RAMOLE_OK;
}

typedef struct {
    int status;          /* of the failure */
    const char *param;
    const char *code;
} choose_err;

/*
 * Fill sp's composition from "model" and "lora" in body, as `tenant` may
 * see adapters, and build the response's lora object in *info.
 */
static rm_status choose_adapters(rm_server *s, const json_t *body, const char *tenant, rm_request_spec *sp,
                                 json_t **info, choose_err *ce, rm_reg_response *used) {
    memset(used, 0, sizeof *used);
    snprintf(used->tenant, sizeof used->tenant, "%s", tenant);
    const json_t *model = json_object_get(body, "model"), *lora = json_object_get(body, "lora");
    json_t *list = json_array();
    *info = json_pack("{s:s, s:o}", "mode", "none", "adapters", list);
    ce->status = 400;
    ce->param = "lora";
    ce->code = NULL;
    if (lora && !json_is_null(lora) && !json_is_object(lora))
        return rm_err(RAMOLE_ERR_INVALID, "field \"lora\" must be an object");
    const json_t *jmode = lora ? json_object_get(lora, "mode") : NULL, *jk = lora ? json_object_get(lora, "top_k") : NULL,
                 *jads = lora ? json_object_get(lora, "adapters") : NULL;
    rm_compose_mode mode = RM_COMPOSE_NONE;
    bool mode_given = jmode && !json_is_null(jmode);
    if (mode_given && (!json_is_string(jmode) || !rm_compose_mode_from_name(json_string_value(jmode), &mode)))
        return rm_err(RAMOLE_ERR_INVALID, "field \"lora.mode\" must be one of none, explicit, selection, mixture, "
                                          "fusion, router");
    long top_k = s->o.default_top_k;
    if (jk && !json_is_null(jk)) {
        if (!json_is_integer(jk) || json_integer_value(jk) < 1 || json_integer_value(jk) > RM_LORA_MAX_K)
            return rm_err(RAMOLE_ERR_INVALID, "field \"lora.top_k\" must be an integer in [1, %d]", RM_LORA_MAX_K);
        top_k = (long)json_integer_value(jk);
    }
    if (jads && !json_is_null(jads) && !json_is_array(jads))
        return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\" must be an array");

    /* "model" naming an adapter: that adapter alone, weight 1 */
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            ce->param = "model";
            return rm_err(RAMOLE_ERR_INVALID, "field \"model\" must be a string");
        }
        const char *name = json_string_value(model);
        if (strcmp(name, s->model_name) != 0) {
            char *path = NULL;
            if (!s->reg || rm_registry_adapter_file(s->reg, tenant, name, &path, used->hashes[0]) != RAMOLE_OK) {
                ce->status = 404;
                ce->param = "model";
                ce->code = "model_not_found";
                return rm_err(RAMOLE_ERR_NOT_FOUND, "the model '%s' does not exist (the base is '%s')", name,
                              s->model_name);
            }
            RM_TRY(add_adapter(sp, path, 1, 0));
            snprintf(used->names[0], sizeof used->names[0], "%s", name);
            used->n = 1;
            sp->req.mode = RM_COMPOSE_EXPLICIT;
            json_object_set_new(*info, "mode", json_string("explicit"));
            json_array_append_new(list, json_pack("{s:s, s:n, s:f}", "name", name, "score", "weight", 1.0));
            return RAMOLE_OK;
        }
    }
    if (mode_given && mode == RM_COMPOSE_NONE) return RAMOLE_OK;

    /* named adapters */
    size_t n_named = jads && json_is_array(jads) ? json_array_size(jads) : 0;
    if (n_named) {
        if (n_named > RM_LORA_MAX_K)
            return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\" holds at most %d adapters", RM_LORA_MAX_K);
        for (size_t i = 0; i < n_named; i++) {
            const json_t *a = json_array_get(jads, i), *jn = json_object_get(a, "name"),
                         *jw = json_object_get(a, "weight");
            if (!json_is_string(jn))
                return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": adapter %zu needs a \"name\" string", i);
            if (jw && !json_is_null(jw) && !json_is_number(jw))
                return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": adapter %zu's \"weight\" must be a number",
                              i);
            float sc;
            bool scored;
            RM_TRY(rm_request_adapter_score(a, i, &sc, &scored));
            double w = jw && json_is_number(jw) ? json_number_value(jw) : 1.0;
            char *path = NULL;
            if (!s->reg ||
                rm_registry_adapter_file(s->reg, tenant, json_string_value(jn), &path, used->hashes[used->n]) != RAMOLE_OK) {
                ce->status = 404;
                ce->code = "adapter_not_found";
                return rm_err(RAMOLE_ERR_NOT_FOUND, "the adapter '%s' does not exist", json_string_value(jn));
            }
            RM_TRY(add_adapter(sp, path, (float)w, sc));
            snprintf(used->names[used->n], sizeof used->names[0], "%s", json_string_value(jn));
            used->n++;
            json_array_append_new(list, json_pack("{s:s, s:o, s:f}", "name", json_string_value(jn), "score",
                                                  scored ? json_real(sc) : json_null(), "weight",
                                                  mode_given && mode != RM_COMPOSE_EXPLICIT ? 0.0 : w));
        }
        if (!mode_given) mode = RM_COMPOSE_EXPLICIT;
    } else {
        /* retrieval over the registry */
        if (!s->reg) return RAMOLE_OK;
        const char *text = retrieval_text(sp);
        if (!text) return RAMOLE_OK;
        rm_reg_hit hits[RM_LORA_MAX_K];
        int n = 0;
        double t0 = rm_time_now();
        rm_status st = rm_registry_retrieve(s->reg, text, tenant, (int)top_k, hits, &n);
        srv_metrics_observe(&s->metrics, SRV_H_RETRIEVAL, rm_time_now() - t0);
        if (st != RAMOLE_OK) {
            ce->status = 500;
            return st;
        }
        for (int i = 0; i < n; i++) {
            char *path = NULL;
            if (rm_registry_adapter_file_id(s->reg, tenant, hits[i].id, &path, used->hashes[used->n]) != RAMOLE_OK)
                continue;
            RM_TRY(add_adapter(sp, path, 1, hits[i].score));
            snprintf(used->names[used->n], sizeof used->names[0], "%s", hits[i].name);
            used->n++;
            json_array_append_new(list, json_pack("{s:s, s:f, s:n}", "name", hits[i].name, "score",
                                                  (double)hits[i].score, "weight"));
        }
        if (!sp->req.n_adapters) return RAMOLE_OK;
        if (!mode_given) mode = RM_COMPOSE_ROUTER;
    }
    if (mode == RM_COMPOSE_ROUTER) {
        char *router = NULL;
        if (s->reg && rm_registry_router_file(s->reg, &router) == RAMOLE_OK && router) {
            sp->router = router;
            sp->req.router = router;
        } else {
            mode = RM_COMPOSE_MIXTURE;
            json_object_set_new(*info, "note", json_string("the registry has no router: mixture instead"));
        }
    }
    sp->req.mode = mode;
    json_object_set_new(*info, "mode", json_string(rm_compose_mode_name(mode)));
    /* weights the composition gives: mixture 1/k, selection the first; the router's are not traced */
    size_t k = json_array_size(list);
    for (size_t i = 0; i < k; i++) {
        json_t *a = json_array_get(list, i);
        if (mode == RM_COMPOSE_MIXTURE || mode == RM_COMPOSE_FUSION)
            json_object_set_new(a, "weight", json_real(1.0 / (double)k));
        else if (mode == RM_COMPOSE_SELECTION)
            json_object_set_new(a, "weight", json_real(i == 0 ? 1.0 : 0.0));
        else if (mode == RM_COMPOSE_ROUTER) /* filled in from the finish event */
            json_object_set_new(a, "weight", json_null());
    }
    return RAMOLE_OK;
}

/* ---- generation ------------------------------------------------------------------------- */

void srv_gen_clear(srv_gen *g) {
    for (int c = 0; c < g->n_choices; c++) {
        srv_req_release(g->req[c]);
        json_decref(g->lora[c]);
    }
    memset(g, 0, sizeof *g);
}

/* Whose rows a request may share: its tenant's, and of those the requests
 * with the same "cache_salt": the first 8 bytes of SHA-256 over both
 * (hashed apart, so that no tenant can choose a salt that lands on
 * another's). */
static uint64_t cache_salt(const char *tenant, const char *salt) {
    char both[2 * 64 + 1], hex[65];
    rm_sha256_hex(tenant, strlen(tenant), both);
    rm_sha256_hex(salt ? salt : "", salt ? strlen(salt) : 0, both + 64);
    rm_sha256_hex(both, 2 * 64, hex);
    hex[16] = 0;
    return strtoull(hex, NULL, 16);
}

/* dst's composition as src's: the same adapters, weights, scores and router. */
static rm_status copy_composition(rm_request_spec *dst, const rm_request_spec *src) {
    for (int i = 0; i < src->req.n_adapters; i++) {
        char *path = rm_strdup(src->adapters[i]);
        if (!path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        RM_TRY(add_adapter(dst, path, src->req.weights[i], src->req.retrieval[i]));
    }
    if (src->router && !(dst->router = rm_strdup(src->router))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    dst->req.router = dst->router;
    dst->req.mode = src->req.mode;
    return RAMOLE_OK;
}

/* Add the adapters of `more` to `all` that it does not name yet, as far as it holds them. */
static void used_merge(rm_reg_response *all, const rm_reg_response *more) {
    snprintf(all->tenant, sizeof all->tenant, "%s", more->tenant);
    for (int i = 0; i < more->n && all->n < RM_REG_RESPONSE_ADAPTERS; i++) {
        bool known = false;
        for (int j = 0; j < all->n && !known; j++) known = !strcmp(all->names[j], more->names[i]);
        if (known) continue;
        memcpy(all->names[all->n], more->names[i], sizeof all->names[0]);
        memcpy(all->hashes[all->n], more->hashes[i], sizeof all->hashes[0]);
        all->n++;
    }
}

/* Completions' "prompt" as a list of prompts: an array of strings or of
 * token arrays (an array of integers is one prompt of token ids). */
static bool prompt_list(const json_t *prompt) {
    const json_t *first = json_array_get(prompt, 0);
    return json_is_array(prompt) && (json_is_string(first) || json_is_array(first));
}

/* OpenAI's "stream_options": {"include_usage": bool}, only with "stream"
 * (as OpenAI and vLLM refuse it otherwise). */
static bool stream_options(const json_t *body, srv_gen *out, srv_reply *err) {
    const json_t *so = json_object_get(body, "stream_options");
    if (!so || json_is_null(so)) return true;
    const json_t *iu = json_object_get(so, "include_usage");
    if (!json_is_object(so) || (iu && !json_is_null(iu) && !json_is_boolean(iu))) {
        srv_reply_error(err, 400, "stream_options", "invalid_value",
                        "field \"stream_options\" must be an object {\"include_usage\": true or false}");
        return false;
    }
    if (!out->stream) {
        srv_reply_error(err, 400, "stream_options", "invalid_value",
                        "field \"stream_options\" is only allowed when \"stream\" is true");
        return false;
    }
    out->usage_chunk = json_is_true(iu);
    return true;
}

bool srv_generate_read(rm_server *s, const caller *who, bool chat, const char *text, size_t len, srv_gen *out,
                       srv_reply *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    json_t *body = body_object(text, len, err);
    if (!body) return false;
    if (s->draining) {
        srv_reply_error(err, 503, NULL, "shutting_down", "the server is shutting down");
        goto fail;
    }
    const json_t *prompt = json_object_get(body, "prompt"), *msgs = json_object_get(body, "messages"),
                 *stream = json_object_get(body, "stream");
    if (chat ? !json_is_array(msgs) || prompt : !prompt || msgs) {
        srv_reply_error(err, 400, chat ? "messages" : "prompt", "invalid_value",
                        chat ? "field \"messages\" (an array) is required here, and \"prompt\" is not allowed"
                             : "field \"prompt\" is required here, and \"messages\" is not allowed");
        goto fail;
    }
    if (stream && !json_is_null(stream) && !json_is_boolean(stream)) {
        srv_reply_error(err, 400, "stream", "invalid_value", "field \"stream\" must be a boolean");
        goto fail;
    }
    out->stream = stream && json_is_true(stream);
    if (!stream_options(body, out, err)) goto fail;
    const json_t *jn = json_object_get(body, "n");
    out->n = 1;
    if (jn && !json_is_null(jn)) {
        if (!json_is_integer(jn) || json_integer_value(jn) < 1 || json_integer_value(jn) > SRV_MAX_CHOICES) {
            srv_reply_error(err, 400, "n", "invalid_value", "field \"n\" must be an integer from 1 to %d",
                            SRV_MAX_CHOICES);
            goto fail;
        }
        out->n = (int)json_integer_value(jn);
    }
    bool listed = !chat && prompt_list(prompt);
    size_t n_prompts = listed ? json_array_size(prompt) : 1;
    if (n_prompts * (size_t)out->n > SRV_MAX_CHOICES) {
        srv_reply_error(err, 400, listed ? "prompt" : "n", "invalid_value",
                        "%zu prompts with \"n\" %d make %zu choices; at most %d", n_prompts, out->n,
                        n_prompts * (size_t)out->n, SRV_MAX_CHOICES);
        goto fail;
    }
    uint64_t salt = 0; /* the same for every choice: the caller's tenant and the body's "cache_salt" */
    for (size_t p = 0; p < n_prompts; p++) {
        /* the engine's fields of this prompt; "lora" is resolved here, against the registry */
        json_t *one = json_copy(body);
        json_object_del(one, "lora");
        json_object_del(one, "n");
        if (listed) json_object_set(one, "prompt", json_array_get(prompt, p));
        for (int j = 0; j < out->n; j++) {
            int c = (int)p * out->n + j;
            srv_req *r = out->req[c] = srv_req_new();
            out->n_choices = c + 1;
            rm_status st = r ? rm_request_spec_from_json(one, &r->spec) : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            if (st != RAMOLE_OK) {
                json_decref(one);
                if (listed) srv_reply_error(err, 400, "prompt", "invalid_value", "prompt %zu: %s", p, ramole_last_error());
                else srv_reply_error(err, 400, NULL, "invalid_value", "%s", ramole_last_error());
                goto fail;
            }
            r->spec.req.sampling.seed += (uint64_t)j; /* n samples, not n copies */
            if (c == 0) salt = cache_salt(tenant_of(who), r->spec.cache_salt);
            r->spec.req.cache_salt = salt;
            choose_err ce = {500, NULL, NULL};
            rm_reg_response used;
            if (j) {
                st = copy_composition(&r->spec, &out->req[c - j]->spec);
                if (st == RAMOLE_OK && !(out->lora[c] = json_deep_copy(out->lora[c - j])))
                    st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            } else if ((st = choose_adapters(s, body, tenant_of(who), &r->spec, &out->lora[c], &ce, &used)) ==
                       RAMOLE_OK)
                used_merge(&out->used, &used);
            if (st != RAMOLE_OK) {
                json_decref(one);
                srv_reply_error(err, ce.status, ce.param, ce.code, "%s", ramole_last_error());
                goto fail;
            }
        }
        json_decref(one);
    }
    json_decref(body);
    return true;
fail:
    srv_gen_clear(out);
    json_decref(body);
    return false;
}

/* ---- retrieval and feedback ------------------------------------------------------------- */

static void retrieve_reply(rm_server *s, const caller *who, const json_t *body, srv_reply *out) {
    const json_t *text = json_object_get(body, "text"), *k = json_object_get(body, "top_k");
    if (!json_is_string(text)) {
        srv_reply_error(out, 400, "text", "invalid_value", "field \"text\" (a string) is required");
        return;
    }
    if (k && !(json_is_integer(k) && json_integer_value(k) >= 1 && json_integer_value(k) <= 100)) {
        srv_reply_error(out, 400, "top_k", "invalid_value", "field \"top_k\" must be an integer in [1, 100]");
        return;
    }
    if (!s->reg) {
        srv_reply_error(out, 404, NULL, "no_registry", "this server has no adapter registry");
        return;
    }
    long top_k = k ? (long)json_integer_value(k) : s->o.default_top_k;
    rm_reg_hit hits[100];
    int n = 0;
    double t0 = rm_time_now();
    rm_status st = rm_registry_retrieve(s->reg, json_string_value(text), tenant_of(who), (int)top_k, hits, &n);
    srv_metrics_observe(&s->metrics, SRV_H_RETRIEVAL, rm_time_now() - t0);
    if (st != RAMOLE_OK) {
        srv_reply_error(out, status_of(st), NULL, NULL, "%s", ramole_last_error());
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:s, s:f}", "id", (json_int_t)hits[i].id, "name", hits[i].name,
                                             "score", (double)hits[i].score));
    srv_reply_json(out, 200, json_pack("{s:s, s:o}", "object", "list", "data", arr));
}

static void feedback_reply(rm_server *s, const caller *who, const json_t *body, srv_reply *out) {
    const json_t *id = json_object_get(body, "id"), *rating = json_object_get(body, "rating"),
                 *comment = json_object_get(body, "comment");
    if (!json_is_string(id))
        srv_reply_error(out, 400, "id", "invalid_value", "field \"id\" (a response id) is required");
    else if (!json_is_integer(rating) || (json_integer_value(rating) != 1 && json_integer_value(rating) != -1))
        srv_reply_error(out, 400, "rating", "invalid_value", "field \"rating\" must be 1 or -1");
    else if (comment && !json_is_null(comment) && !json_is_string(comment))
        srv_reply_error(out, 400, "comment", "invalid_value", "field \"comment\" must be a string");
    else if (!s->reg)
        srv_reply_error(out, 404, NULL, "no_registry", "this server has no adapter registry");
    else {
        /* the registry holds every server's responses: a rating may reach any of them */
        int n_adapters = 0;
        rm_status st = rm_registry_response_rate(s->reg, json_string_value(id), tenant_of(who),
                                                 (int)json_integer_value(rating),
                                                 json_is_string(comment) ? json_string_value(comment) : "",
                                                 s->o.feedback_ttl_s, &n_adapters);
        if (st == RAMOLE_ERR_NOT_FOUND)
            srv_reply_error(out, 404, "id", "response_not_found", "no recent response %s of this tenant",
                            json_string_value(id));
        else if (st != RAMOLE_OK)
            srv_reply_error(out, status_of(st), NULL, NULL, "%s", ramole_last_error());
        else
            srv_reply_json(out, 200, json_pack("{s:s, s:s, s:i}", "id", json_string_value(id), "object", "feedback",
                                               "adapters", n_adapters));
    }
}

bool srv_json_route(rm_server *s, const caller *who, const char *route, const char *text, size_t len,
                    srv_reply *out) {
    memset(out, 0, sizeof *out);
    bool retrieve = !strcmp(route, "/v1/retrieve"), feedback = !strcmp(route, "/v1/feedback"),
         load = !strcmp(route, "/v1/load_lora_adapter"), unload = !strcmp(route, "/v1/unload_lora_adapter"),
         tokenize = !strcmp(route, "/tokenize"), detokenize = !strcmp(route, "/detokenize"),
         embeddings = !strcmp(route, "/v1/embeddings");
    if (!retrieve && !feedback && !load && !unload && !tokenize && !detokenize && !embeddings) return false;
    json_t *body = body_object(text, len, out);
    if (!body) return true;
    if (embeddings) srv_embeddings_reply(s, body, out);
    else if (tokenize) srv_tokenize_reply(s, body, out);
    else if (detokenize) srv_detokenize_reply(s, body, out);
    else if (retrieve) retrieve_reply(s, who, body, out);
    else if (feedback) feedback_reply(s, who, body, out);
    else srv_vllm_reply(s, who, load, body, out);
    json_decref(body);
    return true;
}
