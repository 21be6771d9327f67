/*
 * request_json.c — a generation request from JSON (see request_json.h).
 */
#include "engine/request_json.h"

#include "engine/gbnf.h"
#include "engine/json_schema.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static rm_status bad(const char *field, const char *what) {
    return rm_err(RAMOLE_ERR_INVALID, "field \"%s\" must be %s", field, what);
}

/* A number field in [lo, hi] into *out; absent leaves *out. */
static rm_status get_number(const json_t *o, const char *field, double lo, double hi, const char *what, double *out) {
    const json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v)) return RAMOLE_OK;
    if (!json_is_number(v)) return bad(field, what);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return bad(field, what);
    *out = d;
    return RAMOLE_OK;
}

static rm_status get_int(const json_t *o, const char *field, json_int_t lo, json_int_t hi, const char *what,
                         json_int_t *out) {
    const json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v)) return RAMOLE_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return bad(field, what);
    *out = json_integer_value(v);
    return RAMOLE_OK;
}

static rm_status dup(const char *s, char **out) {
    if (!(*out = rm_strdup(s))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    return RAMOLE_OK;
}

/* A message's content: a string, or OpenAI's array of content parts, whose
 * text parts are joined with newlines as vLLM joins them; a model without
 * eyes or ears refuses the other kinds by name. */
static rm_status message_content(const json_t *c, size_t i, char **out) {
    if (json_is_string(c)) return dup(json_string_value(c), out);
    const char *what = "field \"messages\": message %zu needs \"content\": a string or an array of "
                       "{\"type\": \"text\", \"text\"} parts";
    if (!json_is_array(c)) return rm_err(RAMOLE_ERR_INVALID, what, i);
    size_t len = 0;
    for (size_t j = 0; j < json_array_size(c); j++) {
        const json_t *part = json_array_get(c, j), *type = json_object_get(part, "type"),
                     *text = json_object_get(part, "text");
        if (!json_is_string(type)) return rm_err(RAMOLE_ERR_INVALID, what, i);
        if (strcmp(json_string_value(type), "text"))
            return rm_err(RAMOLE_ERR_INVALID, "field \"messages\": message %zu, part %zu is of type \"%s\"; "
                          "ramole's models read text parts only", i, j, json_string_value(type));
        if (!json_is_string(text))
            return rm_err(RAMOLE_ERR_INVALID, "field \"messages\": message %zu, part %zu needs a string \"text\"",
                          i, j);
        len += json_string_length(text) + 1;
    }
    char *s = rm_malloc(len + 1), *p = s;
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < json_array_size(c); j++) {
        const json_t *text = json_object_get(json_array_get(c, j), "text");
        if (j) *p++ = '\n';
        memcpy(p, json_string_value(text), json_string_length(text));
        p += json_string_length(text);
    }
    *p = 0;
    *out = s;
    return RAMOLE_OK;
}

/* An assistant message's "tool_calls" (OpenAI's [{"id", "type": "function",
 * "function": {"name", "arguments"}}]; arguments a JSON string, or an
 * object written as tojson writes it) into m's calls. */
static rm_status message_calls(const json_t *tc, size_t i, rm_chat_msg *m) {
    if (!tc || json_is_null(tc)) return RAMOLE_OK;
    const char *what = "field \"messages\": message %zu's \"tool_calls\" must be an array of {\"type\": \"function\", "
                       "\"function\": {\"name\": string, \"arguments\": string}}";
    size_t n = json_is_array(tc) ? json_array_size(tc) : 0;
    if (!json_is_array(tc) || n > 1024) return rm_err(RAMOLE_ERR_INVALID, what, i);
    if (!n) return RAMOLE_OK;
    rm_chat_call *calls = rm_calloc(n, sizeof *calls);
    if (!calls) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    m->calls = calls;
    for (size_t k = 0; k < n; k++) {
        const json_t *fn = json_object_get(json_array_get(tc, k), "function");
        const json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_string(name) || (args && !json_is_string(args) && !json_is_object(args)))
            return rm_err(RAMOLE_ERR_INVALID, what, i);
        RM_TRY(dup(json_string_value(name), (char **)&calls[k].name));
        m->n_calls = (int)k + 1;
        if (!args) RM_TRY(dup("{}", (char **)&calls[k].arguments));
        else if (json_is_string(args)) RM_TRY(dup(json_string_value(args), (char **)&calls[k].arguments));
        else RM_TRY(rm_chat_tojson(args, (char **)&calls[k].arguments));
    }
    return RAMOLE_OK;
}

static rm_status parse_prompt(const json_t *o, rm_request_spec *sp) {
    const json_t *p = json_object_get(o, "prompt"), *m = json_object_get(o, "messages");
    if (p && json_is_null(p)) p = NULL;
    if (m && json_is_null(m)) m = NULL;
    if (!p == !m) return rm_err(RAMOLE_ERR_INVALID, "give exactly one of \"prompt\" and \"messages\"");
    rm_engine_request *q = &sp->req;
    if (p && json_is_string(p)) {
        RM_TRY(dup(json_string_value(p), &sp->prompt));
        q->prompt = sp->prompt;
        return RAMOLE_OK;
    }
    if (p) {
        size_t n = json_is_array(p) ? json_array_size(p) : 0;
        if (!n) return bad("prompt", "a string or a non-empty array of token ids");
        if (n > (1u << 24)) return bad("prompt", "at most 16777216 token ids");
        if (!(sp->tokens = rm_malloc(n * sizeof *sp->tokens))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const json_t *t = json_array_get(p, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
                return bad("prompt", "a string or an array of token ids (integers >= 0)");
            sp->tokens[i] = (int32_t)json_integer_value(t);
        }
        q->tokens = sp->tokens;
        q->n_tokens = (int)n;
        return RAMOLE_OK;
    }
    size_t n = json_is_array(m) ? json_array_size(m) : 0;
    if (!n) return bad("messages", "a non-empty array of {\"role\", \"content\"}");
    if (n > 65536) return bad("messages", "at most 65536 messages");
    if (!(sp->messages = rm_calloc(n, sizeof *sp->messages))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    q->messages = sp->messages;
    q->n_messages = (int)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *msg = json_array_get(m, i);
        const json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role))
            return rm_err(RAMOLE_ERR_INVALID, "field \"messages\": message %zu needs a string \"role\"", i);
        const char *r = json_string_value(role);
        if (!strcmp(r, "developer")) r = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool"))
            return rm_err(RAMOLE_ERR_INVALID, "field \"messages\": message %zu has role \"%s\" (system, developer, "
                          "user, assistant or tool)", i, r);
        char *role_s = NULL, *content_s = NULL;
        rm_status st = dup(r, &role_s);
        sp->messages[i].role = role_s;
        if (st == RAMOLE_OK && !strcmp(r, "assistant")) st = message_calls(json_object_get(msg, "tool_calls"), i, &sp->messages[i]);
        const json_t *content = json_object_get(msg, "content");
        bool calls_alone = (!content || json_is_null(content)) && sp->messages[i].n_calls; /* content may be null beside calls */
        if (st == RAMOLE_OK && !calls_alone) st = message_content(content, i, &content_s);
        sp->messages[i].content = content_s;
        RM_TRY(st);
    }
    return RAMOLE_OK;
}

static rm_status parse_stop(const json_t *o, rm_request_spec *sp) {
    const json_t *s = json_object_get(o, "stop");
    if (!s || json_is_null(s)) return RAMOLE_OK;
    const char *what = "a string or an array of up to 16 strings";
    if (json_is_string(s)) {
        RM_TRY(dup(json_string_value(s), &sp->stop[0]));
        sp->req.n_stop = 1;
    } else {
        if (!json_is_array(s) || json_array_size(s) > RM_REQUEST_MAX_STOP) return bad("stop", what);
        for (size_t i = 0; i < json_array_size(s); i++) {
            const json_t *v = json_array_get(s, i);
            if (!json_is_string(v)) return bad("stop", what);
            RM_TRY(dup(json_string_value(v), &sp->stop[i]));
            sp->req.n_stop = (int)i + 1;
        }
    }
    sp->req.stop = (const char *const *)sp->stop;
    return RAMOLE_OK;
}

/* An adapter reference: "name" or "path" (the same thing to the engine's source). */
static rm_status adapter_name(const json_t *a, size_t i, char **out) {
    const json_t *n = json_object_get(a, "name");
    if (!n) n = json_object_get(a, "path");
    if (!json_is_string(n) || !*json_string_value(n))
        return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": adapter %zu needs a \"name\" or \"path\" string", i);
    return dup(json_string_value(n), out);
}

rm_status rm_request_adapter_score(const void *adapter, size_t i, float *out, bool *given) {
    const json_t *v = json_object_get(adapter, "score");
    *out = 0, *given = false;
    if (!v || json_is_null(v)) return RAMOLE_OK;
    if (!json_is_number(v) || !rm_retrieval_score_ok(json_number_value(v)))
        return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": adapter %zu's \"score\" must be a retrieval "
                      "score (a number from -1 to 1)", i);
    *out = (float)json_number_value(v), *given = true;
    return RAMOLE_OK;
}

static rm_status parse_lora(const json_t *o, rm_request_spec *sp) {
    const json_t *l = json_object_get(o, "lora");
    if (!l || json_is_null(l)) return RAMOLE_OK;
    if (!json_is_object(l)) return bad("lora", "an object");
    rm_engine_request *q = &sp->req;
    const json_t *ads = json_object_get(l, "adapters"), *mode = json_object_get(l, "mode"),
                 *router = json_object_get(l, "router");
    if (ads && !json_is_null(ads)) {
        if (!json_is_array(ads) || json_array_size(ads) > RM_LORA_MAX_K)
            return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\" must be an array of at most %d adapters",
                          RM_LORA_MAX_K);
        for (size_t i = 0; i < json_array_size(ads); i++) {
            const json_t *a = json_array_get(ads, i);
            if (!json_is_object(a))
                return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": adapter %zu must be an object", i);
            RM_TRY(adapter_name(a, i, &sp->adapters[i]));
            q->adapters[i] = sp->adapters[i];
            q->n_adapters = (int)i + 1;
            double w = 1;
            const json_t *wv = json_object_get(a, "weight");
            if (wv && !json_is_null(wv)) {
                if (!json_is_number(wv) || !isfinite(json_number_value(wv)))
                    return rm_err(RAMOLE_ERR_INVALID, "field \"lora.adapters\": adapter %zu's \"weight\" must be a "
                                  "finite number", i);
                w = json_number_value(wv);
            }
            q->weights[i] = (float)w;
            bool scored;
            RM_TRY(rm_request_adapter_score(a, i, &q->retrieval[i], &scored));
        }
    }
    q->mode = q->n_adapters ? RM_COMPOSE_EXPLICIT : RM_COMPOSE_NONE;
    if (mode && !json_is_null(mode)) {
        if (!json_is_string(mode) || !rm_compose_mode_from_name(json_string_value(mode), &q->mode))
            return bad("lora.mode", "one of none, explicit, selection, mixture, fusion, router");
    }
    if (router && !json_is_null(router)) {
        if (!json_is_string(router) || !*json_string_value(router)) return bad("lora.router", "a name or path");
        RM_TRY(dup(json_string_value(router), &sp->router));
        q->router = sp->router;
    }
    return RAMOLE_OK;
}

/* Fields of OpenAI's bodies that ramole does not do, each with its "off"
 * value: off, it is accepted; on, refused by name, since an answer that
 * silently lacks what was asked for is worse than an error. */
typedef enum { OFF_EMPTY, OFF_ONE } off_kind;

static bool is_off(const json_t *v, off_kind k) {
    if (!v || json_is_null(v)) return true;
    switch (k) {
    case OFF_ONE: return json_is_integer(v) && json_integer_value(v) == 1;
    default:
        return json_is_false(v) || (json_is_string(v) && !json_string_length(v)) ||
               (json_is_array(v) && !json_array_size(v)) || (json_is_object(v) && !json_object_size(v));
    }
}

static rm_status refuse_unsupported(const json_t *o) {
    static const struct {
        const char *field;
        off_kind off;
        const char *give; /* what to give instead */
    } fields[] = {
        {"n", OFF_ONE, "1"}, {"best_of", OFF_ONE, "1"},
        {"suffix", OFF_EMPTY, "null"},
        {"functions", OFF_EMPTY, "null or []: ramole takes \"tools\" instead"},
        {"function_call", OFF_EMPTY, "null: ramole takes \"tool_choice\" instead"},
    };
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
        if (!is_off(json_object_get(o, fields[f].field), fields[f].off))
            return rm_err(RAMOLE_ERR_INVALID, "field \"%s\" must be %s", fields[f].field, fields[f].give);
    return RAMOLE_OK;
}

/* Log-probabilities as both of OpenAI's routes ask for them: chat's
 * "logprobs": true with "top_logprobs": N alternatives, or completions'
 * "logprobs": N (the chosen token and N alternatives). */
static rm_status parse_logprobs(const json_t *o, rm_engine_request *q) {
    const json_t *lp = json_object_get(o, "logprobs"), *top = json_object_get(o, "top_logprobs");
    char what[64];
    snprintf(what, sizeof what, "true, false or an integer from 0 to %d", RM_MAX_TOP_LOGPROBS);
    if (lp && !json_is_null(lp)) {
        if (json_is_boolean(lp)) q->logprobs = json_is_true(lp);
        else if (json_is_integer(lp) && json_integer_value(lp) >= 0 && json_integer_value(lp) <= RM_MAX_TOP_LOGPROBS)
            q->logprobs = true, q->top_logprobs = (int)json_integer_value(lp);
        else return bad("logprobs", what);
    }
    if (!top || json_is_null(top)) return RAMOLE_OK;
    snprintf(what, sizeof what, "an integer from 0 to %d", RM_MAX_TOP_LOGPROBS);
    if (!json_is_integer(top) || json_integer_value(top) < 0 || json_integer_value(top) > RM_MAX_TOP_LOGPROBS)
        return bad("top_logprobs", what);
    if (json_integer_value(top) && !json_is_true(lp))
        return rm_err(RAMOLE_ERR_INVALID, "field \"top_logprobs\" needs \"logprobs\": true");
    q->top_logprobs = (int)json_integer_value(top);
    return RAMOLE_OK;
}

/* OpenAI's "logit_bias": {"token id": bias}, ids as decimal strings. */
static rm_status parse_logit_bias(const json_t *o, rm_request_spec *sp) {
    const json_t *b = json_object_get(o, "logit_bias");
    if (!b || json_is_null(b)) return RAMOLE_OK;
    if (!json_is_object(b) || json_object_size(b) > RM_MAX_LOGIT_BIAS)
        return rm_err(RAMOLE_ERR_INVALID, "field \"logit_bias\" must be an object of at most %d {\"token id\": bias}",
                      RM_MAX_LOGIT_BIAS);
    size_t n = json_object_size(b);
    if (!n) return RAMOLE_OK;
    if (!(sp->bias = rm_malloc(n * sizeof *sp->bias))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    const char *key;
    const json_t *v;
    int i = 0;
    json_object_foreach((json_t *)b, key, v) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id > INT32_MAX)
            return rm_err(RAMOLE_ERR_INVALID, "field \"logit_bias\": key \"%s\" is not a token id", key);
        if (!json_is_number(v) || !(json_number_value(v) >= -100 && json_number_value(v) <= 100))
            return rm_err(RAMOLE_ERR_INVALID, "field \"logit_bias\": the bias of token %ld must be a number in "
                          "[-100, 100]", id);
        sp->bias[i++] = (rm_logit_bias){(int32_t)id, (float)json_number_value(v)};
    }
    sp->req.sampling.logit_bias = sp->bias;
    sp->req.sampling.n_logit_bias = i;
    return RAMOLE_OK;
}

/* OpenAI's limits on the answer: "max_tokens", or its newer name for chat,
 * "max_completion_tokens" (vLLM takes either). Without them a completion
 * stops at 16 tokens, as OpenAI's legacy completions do, and a chat answer
 * runs until it ends or the context is full, as OpenAI's chat does. A
 * given 0 is ramole's "until the context is full", but with "echo" it is
 * OpenAI's: the prompt alone (scored when logprobs are asked for). */
static rm_status parse_max_tokens(const json_t *o, rm_request_spec *sp) {
    rm_engine_request *q = &sp->req;
    json_int_t a = -1, b = -1;
    RM_TRY(get_int(o, "max_tokens", 0, 1 << 24, "an integer >= 0", &a));
    RM_TRY(get_int(o, "max_completion_tokens", 0, 1 << 24, "an integer >= 0", &b));
    if (a >= 0 && b >= 0 && a != b)
        return rm_err(RAMOLE_ERR_INVALID, "fields \"max_tokens\" (%lld) and \"max_completion_tokens\" (%lld) "
                      "disagree; give one", (long long)a, (long long)b);
    json_int_t given = a >= 0 ? a : b;
    q->max_tokens = given >= 0 ? (int)given : q->n_messages ? 0 : 16;
    q->prompt_only = sp->echo && given == 0;
    return RAMOLE_OK;
}

/* Completions' "echo": the answer begins with the prompt, whose tokens carry
 * their log-probabilities when logprobs are asked for (call after those). */
static rm_status parse_echo(const json_t *o, rm_request_spec *sp) {
    const json_t *echo = json_object_get(o, "echo");
    if (echo && !json_is_null(echo)) {
        if (!json_is_boolean(echo)) return bad("echo", "true or false");
        if (json_is_true(echo) && sp->req.n_messages) return bad("echo", "false with \"messages\" (it echoes a prompt)");
        sp->echo = json_is_true(echo);
    }
    sp->req.prompt_logprobs = sp->echo && sp->req.logprobs;
    return RAMOLE_OK;
}

/* vLLM's "cache_salt": kept as given (a server mixes in its tenant), and
 * as FNV-1a for callers that submit the request as it is. */
static rm_status parse_cache_salt(const json_t *o, rm_request_spec *sp) {
    const json_t *v = json_object_get(o, "cache_salt");
    if (!v || json_is_null(v)) return RAMOLE_OK;
    if (!json_is_string(v) || !json_string_length(v)) return bad("cache_salt", "a non-empty string");
    if (!(sp->cache_salt = rm_strndup(json_string_value(v), json_string_length(v))))
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < json_string_length(v); i++) h = (h ^ (uint8_t)sp->cache_salt[i]) * 0x100000001b3ull;
    sp->req.cache_salt = h;
    return RAMOLE_OK;
}

/* ---- response formats: OpenAI's, llama.cpp's and vLLM's fields, one per request ---- */

/* A schema given as JSON (object or boolean) or as its text, into compact
 * JSON text (malloc'd, as jansson's). */
static rm_status schema_text(const json_t *v, const char *field, char **out) {
    json_t *doc = NULL;
    if (json_is_string(v)) {
        json_error_t je;
        if (!(doc = json_loadb(json_string_value(v), json_string_length(v), JSON_DECODE_ANY, &je)))
            return rm_err(RAMOLE_ERR_INVALID, "field \"%s\": not valid JSON: %s (column %d)", field, je.text, je.column);
    } else if (json_is_object(v) || json_is_boolean(v)) {
        doc = json_incref((json_t *)v);
    } else {
        return bad(field, "a JSON Schema (an object, or its text)");
    }
    *out = json_dumps(doc, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(doc);
    return *out ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
}

/* The schema of any object, malloc'd as jansson's texts are. */
static rm_status any_object(char **out) {
    static const char any[] = "{\"type\":\"object\"}";
    if (!(*out = malloc(sizeof any))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    memcpy(*out, any, sizeof any);
    return RAMOLE_OK;
}

/* vLLM's guided choice: one of the strings exactly, as a GBNF grammar of
 * literal alternatives (rm_malloc'd). */
static rm_status choice_gbnf(const json_t *v, const char *field, char **out) {
    size_t n = json_array_size(v), cap = 16, len = 0;
    if (!json_is_array(v) || !n) return bad(field, "a non-empty array of strings");
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(json_array_get(v, i))) return bad(field, "a non-empty array of strings");
        cap += 8 + 4 * json_string_length(json_array_get(v, i));
    }
    char *g = rm_malloc(cap);
    if (!g) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    len += (size_t)snprintf(g, cap, "root ::=");
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(v, i);
        len += (size_t)snprintf(g + len, cap - len, "%s \"", i ? " |" : "");
        for (size_t k = 0; k < json_string_length(c); k++) {
            unsigned char b = (unsigned char)json_string_value(c)[k];
            if (b == '"' || b == '\\') g[len++] = '\\', g[len++] = (char)b;
            else if (b < 0x20) len += (size_t)snprintf(g + len, cap - len, "\\x%02X", b);
            else g[len++] = (char)b;
        }
        g[len++] = '"';
    }
    g[len] = 0;
    *out = g;
    return RAMOLE_OK;
}

/* Keep one format, found under `field`, and its grammar, compiled here
 * (a request that cannot run says so when it is read, and the engine's
 * driving thread is spared the compile); no other field may give one.
 * Takes schema (jansson's) or gbnf (rm_malloc'd). */
static rm_status keep_format(rm_request_spec *sp, const char *field, const char **first, char *schema, char *gbnf) {
    if (*first) {
        free(schema);
        rm_free(gbnf);
        return rm_err(RAMOLE_ERR_INVALID, "fields \"%s\" and \"%s\" both constrain the answer; give one", *first, field);
    }
    *first = field;
    sp->json_schema = schema;
    sp->grammar = gbnf;
    rm_status st = schema ? rm_json_schema_grammar(schema, strlen(schema), &sp->format)
                          : rm_gbnf_grammar(gbnf, strlen(gbnf), &sp->format);
    if (st != RAMOLE_OK) return rm_err_prefix(st, "field \"%s\"", field);
    sp->req.json_schema = schema;
    sp->req.grammar = gbnf;
    sp->req.format = sp->format;
    return RAMOLE_OK;
}

static bool given(const json_t *v) { return v && !json_is_null(v); }

/* What a format field holds: a schema (an object or its text), a list of
 * choices, GBNF text, or true for any object. */
typedef enum { AS_SCHEMA, AS_CHOICE, AS_GBNF, AS_OBJECT } format_kind;

/* The format field `field` holds (v, of kind k), kept as keep_format keeps it. */
static rm_status take_format(rm_request_spec *sp, const char **first, const char *field, format_kind k,
                             const json_t *v) {
    char *text = NULL;
    switch (k) {
    case AS_SCHEMA:
        RM_TRY(schema_text(v, field, &text));
        return keep_format(sp, field, first, text, NULL);
    case AS_OBJECT:
        RM_TRY(any_object(&text));
        return keep_format(sp, field, first, text, NULL);
    case AS_CHOICE:
        RM_TRY(choice_gbnf(v, field, &text));
        return keep_format(sp, field, first, NULL, text);
    case AS_GBNF:
        if (!json_is_string(v)) return bad(field, "a string in GBNF");
        if (!(text = rm_strndup(json_string_value(v), json_string_length(v))))
            return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        return keep_format(sp, field, first, NULL, text);
    }
    return RAMOLE_OK;
}

/* OpenAI's "response_format" ({"type": "text" | "json_object" |
 * "json_schema", "json_schema": {"name", "schema", "strict"}}),
 * llama.cpp's "grammar" (GBNF; "" is off), vLLM's "guided_json",
 * "guided_choice", "guided_grammar" and "structured_outputs" ({"json" |
 * "choice" | "grammar" | "json_object": true}): at most one of them. */
static rm_status parse_format(const json_t *o, rm_request_spec *sp) {
    const char *first = NULL;
    const json_t *rf = json_object_get(o, "response_format");
    if (given(rf)) {
        const char *what = "{\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", "
                           "\"json_schema\": {\"name\": ..., \"schema\": {...}}}";
        const json_t *type = json_object_get(rf, "type");
        if (!json_is_object(rf) || !json_is_string(type)) return bad("response_format", what);
        const char *t = json_string_value(type);
        if (!strcmp(t, "json_object")) {
            RM_TRY(take_format(sp, &first, "response_format", AS_OBJECT, NULL));
        } else if (!strcmp(t, "json_schema")) {
            const json_t *js = json_object_get(rf, "json_schema"), *schema, *name, *strict;
            if (!json_is_object(js) || !(schema = json_object_get(js, "schema")) ||
                (!json_is_object(schema) && !json_is_boolean(schema)))
                return bad("response_format.json_schema", "an object with a \"schema\" (a JSON Schema object)");
            if ((name = json_object_get(js, "name")) && !json_is_null(name) && !json_is_string(name))
                return bad("response_format.json_schema.name", "a string");
            if ((strict = json_object_get(js, "strict")) && !json_is_null(strict) && !json_is_boolean(strict))
                return bad("response_format.json_schema.strict", "true, false or null");
            RM_TRY(take_format(sp, &first, "response_format", AS_SCHEMA, schema));
        } else if (strcmp(t, "text")) {
            return bad("response_format", what);
        }
    }
    static const struct {
        const char *key, *field; /* the key, and its name in messages */
        format_kind kind;
    } top[] = {{"grammar", "grammar", AS_GBNF}, {"guided_json", "guided_json", AS_SCHEMA},
               {"guided_choice", "guided_choice", AS_CHOICE}, {"guided_grammar", "guided_grammar", AS_GBNF}},
      nested[] = {{"json", "structured_outputs.json", AS_SCHEMA},
                  {"choice", "structured_outputs.choice", AS_CHOICE},
                  {"grammar", "structured_outputs.grammar", AS_GBNF},
                  {"json_object", "structured_outputs.json_object", AS_OBJECT}};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++) {
        const json_t *v = json_object_get(o, top[i].key);
        if (given(v) && !(top[i].kind == AS_GBNF && json_is_string(v) && !json_string_length(v)))
            RM_TRY(take_format(sp, &first, top[i].field, top[i].kind, v));
    }
    const json_t *so = json_object_get(o, "structured_outputs"), *v;
    if (!given(so)) return RAMOLE_OK;
    if (!json_is_object(so))
        return bad("structured_outputs", "an object of one of \"json\", \"choice\", \"grammar\" or \"json_object\"");
    const char *key;
    json_object_foreach((json_t *)so, key, v) {
        if (!given(v)) continue;
        size_t i = 0;
        while (i < sizeof nested / sizeof *nested && strcmp(key, nested[i].key)) i++;
        if (i == sizeof nested / sizeof *nested) {
            if (strcmp(key, "disable_any_whitespace") && strcmp(key, "disable_fallback") &&
                strcmp(key, "disable_additional_properties") && strcmp(key, "whitespace_pattern"))
                return rm_err(RAMOLE_ERR_INVALID, "field \"structured_outputs.%s\" is not supported; give "
                              "\"json\", \"choice\", \"grammar\" or \"json_object\"", key);
            continue;
        }
        if (nested[i].kind == AS_OBJECT) {
            if (!json_is_boolean(v)) return bad(nested[i].field, "true or false");
            if (json_is_false(v)) continue;
        }
        RM_TRY(take_format(sp, &first, nested[i].field, nested[i].kind, v));
    }
    return RAMOLE_OK;
}

/* vLLM's "chat_template_kwargs": the one ramole's templates take,
 * "enable_thinking" (Qwen3's); other keys are refused by name rather than
 * ignored, since the template would have read them. */
static rm_status parse_template_kwargs(const json_t *o, rm_request_spec *sp) {
    const json_t *kw = json_object_get(o, "chat_template_kwargs"), *v;
    if (!kw || json_is_null(kw)) return RAMOLE_OK;
    if (!json_is_object(kw)) return bad("chat_template_kwargs", "an object, such as {\"enable_thinking\": false}");
    if (json_object_size(kw) && !sp->req.n_messages)
        return rm_err(RAMOLE_ERR_INVALID, "field \"chat_template_kwargs\" needs \"messages\" (a chat request)");
    const char *key;
    json_object_foreach((json_t *)kw, key, v) {
        if (strcmp(key, "enable_thinking"))
            return rm_err(RAMOLE_ERR_INVALID, "field \"chat_template_kwargs.%s\" is not one ramole's chat templates "
                          "take (enable_thinking)", key);
        if (!json_is_boolean(v)) return bad("chat_template_kwargs.enable_thinking", "true or false");
        sp->req.no_thinking = json_is_false(v);
    }
    return RAMOLE_OK;
}

/* The tools a chat request offers, after its format: "required" or a named
 * tool constrains the answer as a format does, so not beside one. */
static rm_status parse_tools(const json_t *o, rm_request_spec *sp) {
    RM_TRY(rm_tools_from_json(o, &sp->tools));
    if (!sp->tools.n) return RAMOLE_OK;
    if (!sp->req.n_messages) return rm_err(RAMOLE_ERR_INVALID, "field \"tools\" needs \"messages\" (a chat request)");
    sp->req.tools = (const char *const *)sp->tools.texts;
    sp->req.n_tools = sp->tools.n;
    if (sp->format) { /* beside a response format, "auto" leaves the answer to it */
        if (sp->tools.choice == RM_TOOL_CHOICE_REQUIRED || sp->tools.choice == RM_TOOL_CHOICE_NAMED)
            return rm_err(RAMOLE_ERR_INVALID, "field \"tool_choice\" (a call required) and a response format both "
                          "constrain the answer; give one");
        return RAMOLE_OK;
    }
    RM_TRY(rm_tools_grammar(&sp->tools, &sp->format, &sp->req.format_trigger));
    sp->req.format = sp->format;
    return RAMOLE_OK;
}

static rm_status parse(const json_t *o, rm_request_spec *sp) {
    if (!json_is_object(o)) return rm_err(RAMOLE_ERR_INVALID, "a request must be a JSON object");
    rm_engine_request *q = &sp->req;
    rm_engine_request_init(q);
    q->sampling.temperature = 1.0f; /* OpenAI's defaults: plain sampling */
    q->sampling.top_p = 1.0f;
    q->sampling.top_k = 0;
    q->sampling.min_p = 0;
    RM_TRY(refuse_unsupported(o));
    RM_TRY(parse_prompt(o, sp));
    /* the float fields: name, range, what to say when it is out */
    const struct {
        const char *field;
        double lo, hi;
        const char *what;
        float *dst;
    } nums[] = {
        {"temperature", 0, 2, "a number in [0, 2]", &q->sampling.temperature},
        {"top_p", 1e-9, 1, "a number in (0, 1]", &q->sampling.top_p},
        {"min_p", 0, 1, "a number in [0, 1]", &q->sampling.min_p},
        {"repeat_penalty", 1e-3, 100, "a number in [0.001, 100]", &q->sampling.repeat_penalty},
        {"frequency_penalty", -2, 2, "a number in [-2, 2]", &q->sampling.frequency_penalty},
        {"presence_penalty", -2, 2, "a number in [-2, 2]", &q->sampling.presence_penalty},
    };
    for (size_t n = 0; n < sizeof nums / sizeof nums[0]; n++) {
        double d = *nums[n].dst;
        RM_TRY(get_number(o, nums[n].field, nums[n].lo, nums[n].hi, nums[n].what, &d));
        *nums[n].dst = (float)d;
    }
    RM_TRY(parse_logprobs(o, q));
    RM_TRY(parse_echo(o, sp));
    RM_TRY(parse_max_tokens(o, sp));
    json_int_t i = q->sampling.top_k;
    RM_TRY(get_int(o, "top_k", 0, 1 << 24, "an integer >= 0", &i));
    q->sampling.top_k = (int)i;
    i = (json_int_t)q->sampling.seed;
    RM_TRY(get_int(o, "seed", 0, INT64_MAX, "an integer >= 0", &i));
    q->sampling.seed = (uint64_t)i;
    const json_t *ie = json_object_get(o, "ignore_eos");
    if (ie && !json_is_null(ie)) {
        if (!json_is_boolean(ie)) return bad("ignore_eos", "true or false");
        q->ignore_eos = json_is_true(ie);
    }
    RM_TRY(parse_logit_bias(o, sp));
    RM_TRY(parse_stop(o, sp));
    RM_TRY(parse_cache_salt(o, sp));
    RM_TRY(parse_format(o, sp));
    RM_TRY(parse_tools(o, sp));
    RM_TRY(parse_template_kwargs(o, sp));
    return parse_lora(o, sp);
}

rm_status rm_request_spec_from_json(const void *obj, rm_request_spec *spec) {
    memset(spec, 0, sizeof *spec);
    rm_status st = parse(obj, spec);
    if (st != RAMOLE_OK) rm_request_spec_free(spec);
    return st;
}

void rm_request_spec_free(rm_request_spec *sp) {
    rm_free(sp->tokens);
    rm_free(sp->prompt);
    for (int i = 0; sp->messages && i < sp->req.n_messages; i++) {
        rm_free((char *)sp->messages[i].role);
        rm_free((char *)sp->messages[i].content);
        for (int k = 0; k < sp->messages[i].n_calls; k++) {
            rm_free((char *)sp->messages[i].calls[k].name);
            rm_free((char *)sp->messages[i].calls[k].arguments);
        }
        rm_free((rm_chat_call *)sp->messages[i].calls);
    }
    rm_tools_free(&sp->tools);
    rm_free(sp->messages);
    for (int i = 0; i < RM_REQUEST_MAX_STOP; i++) rm_free(sp->stop[i]);
    for (int i = 0; i < RM_LORA_MAX_K; i++) rm_free(sp->adapters[i]);
    rm_free(sp->router);
    rm_free(sp->bias);
    rm_free(sp->cache_salt);
    free(sp->json_schema); /* jansson's */
    rm_free(sp->grammar);
    rm_grammar_free(sp->format);
    memset(sp, 0, sizeof *sp);
}
