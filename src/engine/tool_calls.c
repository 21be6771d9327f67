/*
 * tool_calls.c — a request's tools, the grammar of calls to them, and the
 * calls read back out of an answer (tool_calls.h).
 */
#include "engine/tool_calls.h"

#include <jansson.h>
#include <string.h>

#include "engine/json_schema.h"
#include "tokenizer/tokenizer.h"

#define OPEN "<tool_call>"
#define CLOSE "</tool_call>"

static rm_status bad(const char *field, const char *what) {
    return rm_err(RAMOLE_ERR_INVALID, "field \"%s\" must be %s", field, what);
}

static rm_status oom(void) { return rm_err(RAMOLE_ERR_NOMEM, "out of memory"); }

static rm_status parse_tool(const json_t *tool, size_t i, rm_tools *t) {
    const json_t *type = json_object_get(tool, "type"), *fn = json_object_get(tool, "function");
    const json_t *name = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
    if (!json_is_object(tool) || !json_is_string(type) || strcmp(json_string_value(type), "function") ||
        !json_is_object(fn))
        return rm_err(RAMOLE_ERR_INVALID, "field \"tools\": tool %zu must be {\"type\": \"function\", "
                      "\"function\": {\"name\", \"description\", \"parameters\"}}", i);
    if (!json_is_string(name) || !json_string_length(name) || strlen(json_string_value(name)) != json_string_length(name))
        return rm_err(RAMOLE_ERR_INVALID, "field \"tools\": tool %zu needs a non-empty string \"function.name\"", i);
    const char *nm = json_string_value(name);
    for (const char *p = nm; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return rm_err(RAMOLE_ERR_INVALID, "field \"tools\": tool %zu's name \"%s\" holds a quote, backslash or "
                          "control character", i, nm);
    for (int j = 0; j < t->n; j++)
        if (!strcmp(t->names[j], nm))
            return rm_err(RAMOLE_ERR_INVALID, "field \"tools\": tools %d and %zu are both named \"%s\"", j, i, nm);
    if (params && !json_is_null(params) && !json_is_object(params))
        return rm_err(RAMOLE_ERR_INVALID, "field \"tools\": tool %zu's \"function.parameters\" must be a JSON "
                      "Schema object", i);
    int k = t->n;
    if (!(t->names[k] = rm_strdup(nm))) return oom();
    t->n++; /* owned from here: freed with the rest */
    t->params[k] = params && !json_is_null(params) ? json_deep_copy(params) : json_pack("{s:s}", "type", "object");
    if (!t->params[k]) return oom();
    return rm_chat_tojson(tool, &t->texts[k]);
}

/* "tool_choice": "none" | "auto" | "required" | {"type": "function", "function": {"name"}} */
static rm_status parse_choice(const json_t *c, rm_tools *t) {
    const char *what = "\"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}";
    if (!c || json_is_null(c)) return RAMOLE_OK;
    if (json_is_string(c)) {
        const char *s = json_string_value(c);
        if (!strcmp(s, "auto")) t->choice = RM_TOOL_CHOICE_AUTO;
        else if (!strcmp(s, "none")) t->choice = RM_TOOL_CHOICE_NONE;
        else if (!strcmp(s, "required")) t->choice = RM_TOOL_CHOICE_REQUIRED;
        else return bad("tool_choice", what);
        if (t->choice != RM_TOOL_CHOICE_NONE && !t->n)
            return rm_err(RAMOLE_ERR_INVALID, "field \"tool_choice\" is \"%s\" but \"tools\" offers none", s);
        return RAMOLE_OK;
    }
    const json_t *type = json_object_get(c, "type"), *name = json_object_get(json_object_get(c, "function"), "name");
    if (!json_is_object(c) || !json_is_string(type) || strcmp(json_string_value(type), "function") ||
        !json_is_string(name))
        return bad("tool_choice", what);
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->names[i], json_string_value(name))) {
            t->choice = RM_TOOL_CHOICE_NAMED;
            t->named = i;
            return RAMOLE_OK;
        }
    return rm_err(RAMOLE_ERR_INVALID, "field \"tool_choice\" names \"%s\", which \"tools\" does not offer",
                  json_string_value(name));
}

rm_status rm_tools_from_json(const void *obj, rm_tools *t) {
    memset(t, 0, sizeof *t);
    t->parallel = true;
    const json_t *o = obj, *tools = json_object_get(o, "tools"), *par = json_object_get(o, "parallel_tool_calls");
    rm_status st = RAMOLE_OK;
    if (tools && !json_is_null(tools)) {
        size_t n = json_is_array(tools) ? json_array_size(tools) : 0;
        if (!json_is_array(tools)) return bad("tools", "an array of {\"type\": \"function\", \"function\": {...}}");
        if (n > RM_TOOLS_MAX) return rm_err(RAMOLE_ERR_INVALID, "field \"tools\" offers %zu tools; at most %d", n,
                                            RM_TOOLS_MAX);
        if (n && (!(t->texts = rm_calloc(n, sizeof *t->texts)) || !(t->names = rm_calloc(n, sizeof *t->names)) ||
                  !(t->params = rm_calloc(n, sizeof *t->params))))
            st = oom();
        for (size_t i = 0; i < n && st == RAMOLE_OK; i++) st = parse_tool(json_array_get(tools, i), i, t);
    }
    if (st == RAMOLE_OK && par && !json_is_null(par)) {
        if (!json_is_boolean(par)) st = bad("parallel_tool_calls", "true or false");
        else t->parallel = json_is_true(par);
    }
    if (st == RAMOLE_OK) st = parse_choice(json_object_get(o, "tool_choice"), t);
    if (st != RAMOLE_OK) rm_tools_free(t);
    return st;
}

void rm_tools_free(rm_tools *t) {
    for (int i = 0; i < t->n; i++) {
        rm_free(t->texts[i]);
        rm_free(t->names[i]);
        json_decref(t->params[i]);
    }
    rm_free(t->texts);
    rm_free(t->names);
    rm_free(t->params);
    memset(t, 0, sizeof *t);
}

/* The call object of tool i as a schema: its name as a constant, its arguments its parameters. */
static json_t *call_schema(const rm_tools *t, int i) {
    return json_pack("{s:s, s:{s:{s:s}, s:O}, s:[s, s], s:b}", "type", "object", "properties", "name", "const",
                     t->names[i], "arguments", t->params[i], "required", "name", "arguments", "additionalProperties", 0);
}

/* The grammar of calls to the tools `only` (-1: all of them; else one), or to one of them alone. */
static rm_status calls_grammar(const rm_tools *t, int only, int max_calls, rm_grammar **out) {
    *out = NULL;
    json_t *any = json_array();
    for (int i = 0; i < t->n && any; i++)
        if (only < 0 || i == only) json_array_append_new(any, call_schema(t, i));
    json_t *schema = json_pack("{s:o}", "anyOf", any);
    char *text = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(schema);
    if (!text) return oom();
    rm_status st = rm_json_schema_grammar_framed(text, strlen(text), OPEN "\n", "\n" CLOSE, "\n", max_calls, out);
    free(text); /* jansson's */
    return st;
}

rm_status rm_tools_grammar(const rm_tools *t, rm_grammar **out, const char **trigger) {
    *out = NULL, *trigger = NULL;
    if (!rm_tools_active(t)) return RAMOLE_OK;
    int only = t->choice == RM_TOOL_CHOICE_NAMED ? t->named : -1;
    rm_status st = calls_grammar(t, only, t->parallel ? RM_TOOL_CALLS_MAX : 1, out);
    if (st != RAMOLE_ERR_INVALID) { /* out of memory stays an error under "auto" too */
        if (st == RAMOLE_OK && t->choice == RM_TOOL_CHOICE_AUTO) *trigger = OPEN;
        return st;
    }
    if (t->choice == RM_TOOL_CHOICE_AUTO) return RAMOLE_OK; /* a tool the compiler refuses: calls read as written */
    /* name the tool whose parameters fail: compiled alone, on this path only */
    for (int i = 0; i < t->n; i++) {
        rm_grammar *g = NULL;
        if ((only < 0 || i == only) && (st = calls_grammar(t, i, 1, &g)) != RAMOLE_OK)
            return rm_err_prefix(st, "field \"tool_choice\" needs tool \"%s\"'s parameters as a grammar", t->names[i]);
        rm_grammar_free(g);
    }
    return rm_err(RAMOLE_ERR_INVALID, "field \"tool_choice\": the tools' calls make no grammar");
}

/* ---- reading calls back ---------------------------------------------------- */

static const char *find(const char *s, const char *end, const char *what) {
    return s < end ? memmem(s, (size_t)(end - s), what, strlen(what)) : NULL;
}

void rm_tool_calls_free(rm_tool_call *calls, int n) {
    for (int i = 0; calls && i < n; i++) {
        rm_free(calls[i].name);
        rm_free(calls[i].arguments);
    }
    rm_free(calls);
}

/* Whether [s, e) is whitespace and then the start of "</tool_call>". */
static bool close_begins(const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++;
    return (size_t)(e - s) <= strlen(CLOSE) && !memcmp(s, CLOSE, (size_t)(e - s));
}

/* One block's body [s, e): {"name": string, "arguments": any} into *c;
 * unclosed (the answer's end), the JSON may be followed by the start of
 * its </tool_call>. false: not a call. */
static bool read_call(const char *s, const char *e, bool unclosed, rm_tool_call *c, rm_status *st) {
    json_error_t je;
    json_t *v = json_loadb(s, (size_t)(e - s), unclosed ? JSON_DISABLE_EOF_CHECK : 0, &je);
    if (v && unclosed && !close_begins(s + je.position, e)) {
        json_decref(v);
        v = NULL;
    }
    const json_t *name = json_object_get(v, "name"), *args = json_object_get(v, "arguments");
    bool ok = json_is_object(v) && json_is_string(name);
    if (ok) {
        json_t *none = args ? NULL : json_object(); /* a call without arguments takes none */
        c->name = rm_strndup(json_string_value(name), json_string_length(name));
        if (c->name) *st = rm_chat_tojson(args ? args : none, &c->arguments);
        else *st = oom();
        json_decref(none);
    }
    json_decref(v);
    return ok;
}

rm_status rm_tool_calls_parse(const char *text, size_t len, rm_tool_call **calls, int *n, size_t *content_len) {
    *calls = NULL, *n = 0, *content_len = len;
    const char *end = text + len, *first = find(text, end, OPEN);
    if (!first) return RAMOLE_OK;
    int cap = 0;
    for (const char *p = first; p; p = find(p + 1, end, OPEN)) cap++;
    rm_tool_call *cs = rm_calloc((size_t)cap, sizeof *cs);
    if (!cs) return oom();
    rm_status st = RAMOLE_OK;
    int got = 0;
    bool all = true;
    /* vLLM's <tool_call>(.*?)</tool_call>|<tool_call>(.*): a block ends at
     * the first </tool_call> after it (a "<tool_call>" inside a string
     * argument is text), the last unclosed one at the end */
    for (const char *p = first; p && all && st == RAMOLE_OK; p = find(p, end, OPEN)) {
        const char *body = p + strlen(OPEN), *close = find(body, end, CLOSE);
        all = read_call(body, close ? close : end, !close, &cs[got], &st);
        if (all) got++;
        p = close ? close + strlen(CLOSE) : end;
    }
    if (st != RAMOLE_OK || !all) {
        rm_tool_calls_free(cs, cap); /* entries past those filled are zero */
        return st; /* not calls after all: the whole text is content */
    }
    *calls = cs, *n = got, *content_len = (size_t)(first - text);
    return RAMOLE_OK;
}

size_t rm_tool_calls_content_prefix(const char *text, size_t len) {
    const char *end = text + len, *first = find(text, end, OPEN);
    if (first) return (size_t)(first - text);
    size_t n = strlen(OPEN);
    for (size_t k = n - 1; k > 0; k--) /* the longest tail that begins "<tool_call>" */
        if (len >= k && !memcmp(end - k, OPEN, k)) return len - k;
    return len;
}
