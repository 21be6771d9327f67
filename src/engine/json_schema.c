/*
 * json_schema.c — a JSON Schema compiled to a grammar over bytes
 * (json_schema.h says which subset, and why the rest is refused).
 *
 * Every compile function returns a rule id, or -1 with the error set. A
 * rule's body is written only after the rules it refers to are complete,
 * since the grammar builds one body at a time; a rule that must be
 * referred to before it is complete ($ref's recursion, the any-value
 * rule) is reserved first and given its body last.
 */
#include "engine/json_schema.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_NESTING 64   /* schema objects within one another */
#define MAX_REPEAT RM_GRAMMAR_MAX_REPEAT /* largest minItems, maxItems, minLength, maxLength */
#define MAX_INDENT 20    /* spaces after a newline in whitespace */
#define MAX_DIGITS 16
#define MAX_PROPERTIES 256 /* declared in one object (OpenAI allows 100 in all) */

typedef struct {
    char *ref;
    int rule;
} ref_entry;

typedef struct {
    rm_grammar *g;
    json_t *doc;
    char path[512]; /* where the compiler stands, a JSON pointer into the schema */
    int nesting;
    ref_entry *refs;
    int n_refs;
    /* shared rules, made when first needed (-1 before) */
    int ws, chr, string, number, integer, any;
    rm_status st; /* the first failure's */
} cc;

static int fail(cc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(cc *c, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    c->st = rm_err(RAMOLE_ERR_INVALID, "json schema at \"%s\": %s", *c->path ? c->path : "/", what);
    return -1;
}

static int oom(cc *c) {
    c->st = rm_err(RAMOLE_ERR_NOMEM, "json schema: out of memory");
    return -1;
}

/* ---- shared rules ---- */

/* "" | " " | "\n" followed by up to MAX_INDENT spaces */
static int ws_rule(cc *c) {
    if (c->ws >= 0) return c->ws;
    rm_grammar *g = c->g;
    int ind = rm_grammar_rule(g);
    rm_grammar_begin(g, ind);
    rm_grammar_end(g);
    for (int k = 1; k <= MAX_INDENT; k++) {
        int r = rm_grammar_rule(g);
        rm_grammar_begin(g, r);
        rm_grammar_or(g);
        rm_grammar_lit(g, " ", 1);
        rm_grammar_ref(g, ind);
        rm_grammar_end(g);
        ind = r;
    }
    c->ws = rm_grammar_rule(g);
    rm_grammar_begin(g, c->ws);
    rm_grammar_or(g);
    rm_grammar_lit(g, " ", 1);
    rm_grammar_or(g);
    rm_grammar_lit(g, "\n", 1);
    rm_grammar_ref(g, ind);
    rm_grammar_end(g);
    return c->ws;
}

static int range_rule(cc *c, uint8_t lo, uint8_t hi) {
    int r = rm_grammar_rule(c->g);
    rm_grammar_begin(c->g, r);
    rm_grammar_range(c->g, lo, hi);
    rm_grammar_end(c->g);
    return r;
}

/* One character of a JSON string: an unescaped byte, a well-formed UTF-8
 * sequence (RFC 3629's table), or an escape. */
static int char_rule(cc *c) {
    if (c->chr >= 0) return c->chr;
    rm_grammar *g = c->g;
    int hex = rm_grammar_rule(g);
    rm_grammar_begin(g, hex);
    rm_grammar_range(g, '0', '9');
    rm_grammar_or(g);
    rm_grammar_range(g, 'a', 'f');
    rm_grammar_or(g);
    rm_grammar_range(g, 'A', 'F');
    rm_grammar_end(g);
    uint64_t plain[4] = {0}, esc[4] = {0};
    for (int b = 0x20; b < 0x80; b++)
        if (b != '"' && b != '\\') plain[b >> 6] |= 1ull << (b & 63);
    for (const char *e = "\"\\/bfnrt"; *e; e++) esc[(uint8_t)*e >> 6] |= 1ull << (*e & 63);
    c->chr = rm_grammar_rule(g);
    rm_grammar_begin(g, c->chr);
    rm_grammar_bytes(g, plain);
    rm_grammar_or(g);
    rm_grammar_lit(g, "\\", 1);
    rm_grammar_bytes(g, esc);
    rm_grammar_or(g);
    rm_grammar_lit(g, "\\u", 2);
    for (int k = 0; k < 4; k++) rm_grammar_ref(g, hex);
    static const uint8_t utf8[][4][2] = { /* each sequence's byte ranges, RFC 3629 */
        {{0xC2, 0xDF}, {0x80, 0xBF}},
        {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}},
        {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}},
        {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}},
    };
    for (size_t s = 0; s < sizeof utf8 / sizeof *utf8; s++) {
        rm_grammar_or(g);
        for (int k = 0; k < 4 && utf8[s][k][0]; k++) rm_grammar_range(g, utf8[s][k][0], utf8[s][k][1]);
    }
    rm_grammar_end(g);
    return c->chr;
}

static int quoted(cc *c, int chars) {
    int r = rm_grammar_rule(c->g);
    rm_grammar_begin(c->g, r);
    rm_grammar_lit(c->g, "\"", 1);
    rm_grammar_ref(c->g, chars);
    rm_grammar_lit(c->g, "\"", 1);
    rm_grammar_end(c->g);
    return r;
}

static int string_rule(cc *c) {
    if (c->string < 0) c->string = quoted(c, rm_grammar_repeat(c->g, char_rule(c), 0, -1));
    return c->string;
}

/* "-"? ("0" | [1-9] [0-9]{0,15}), then for numbers ("." [0-9]{1,16})? ([eE] [+-]? [0-9]{1,3})? */
static int numeric_rule(cc *c, bool real) {
    int *memo = real ? &c->number : &c->integer;
    if (*memo >= 0) return *memo;
    rm_grammar *g = c->g;
    int digit = range_rule(c, '0', '9');
    int more = rm_grammar_repeat(c->g, digit, 0, MAX_DIGITS - 1);
    int frac = -1, exp = -1;
    if (real) {
        int fd = rm_grammar_repeat(c->g, digit, 1, MAX_DIGITS);
        frac = rm_grammar_rule(g);
        rm_grammar_begin(g, frac);
        rm_grammar_or(g);
        rm_grammar_lit(g, ".", 1);
        rm_grammar_ref(g, fd);
        rm_grammar_end(g);
        int ed = rm_grammar_repeat(c->g, digit, 1, 3);
        exp = rm_grammar_rule(g);
        rm_grammar_begin(g, exp);
        rm_grammar_or(g);
        rm_grammar_range(g, 'E', 'E');
        rm_grammar_ref(g, ed);
        rm_grammar_or(g);
        rm_grammar_range(g, 'e', 'e');
        rm_grammar_ref(g, ed);
        for (const char *s = "Ee"; *s; s++)
            for (const char *sign = "+-"; *sign; sign++) {
                rm_grammar_or(g);
                rm_grammar_lit(g, s, 1);
                rm_grammar_lit(g, sign, 1);
                rm_grammar_ref(g, ed);
            }
        rm_grammar_end(g);
    }
    int mag = rm_grammar_rule(g);
    rm_grammar_begin(g, mag);
    rm_grammar_lit(g, "0", 1);
    rm_grammar_or(g);
    rm_grammar_range(g, '1', '9');
    rm_grammar_ref(g, more);
    rm_grammar_end(g);
    *memo = rm_grammar_rule(g);
    rm_grammar_begin(g, *memo);
    for (int neg = 0; neg < 2; neg++) {
        if (neg) {
            rm_grammar_or(g);
            rm_grammar_lit(g, "-", 1);
        }
        rm_grammar_ref(g, mag);
        if (real) {
            rm_grammar_ref(g, frac);
            rm_grammar_ref(g, exp);
        }
    }
    rm_grammar_end(g);
    return *memo;
}

/* open ws close (when it may be empty) | open ws body ws close (body >= 0) */
static int bracketed(cc *c, char open, char close, bool may_be_empty, int body) {
    rm_grammar *g = c->g;
    int ws = ws_rule(c), r = rm_grammar_rule(g);
    rm_grammar_begin(g, r);
    if (may_be_empty) {
        rm_grammar_lit(g, &open, 1);
        rm_grammar_ref(g, ws);
        rm_grammar_lit(g, &close, 1);
    }
    if (body >= 0) {
        if (may_be_empty) rm_grammar_or(g);
        rm_grammar_lit(g, &open, 1);
        rm_grammar_ref(g, ws);
        rm_grammar_ref(g, body);
        rm_grammar_ref(g, ws);
        rm_grammar_lit(g, &close, 1);
    }
    rm_grammar_end(g);
    return r;
}

/* "[" ws "]" (when min is 0) | "[" ws item (ws "," ws item){min-1,max-1} ws "]" */
static int list_rule(cc *c, int item, int min, int max) {
    rm_grammar *g = c->g;
    int ws = ws_rule(c), items = -1;
    if (max != 0) {
        int sep = rm_grammar_rule(g);
        rm_grammar_begin(g, sep);
        rm_grammar_ref(g, ws);
        rm_grammar_lit(g, ",", 1);
        rm_grammar_ref(g, ws);
        rm_grammar_ref(g, item);
        rm_grammar_end(g);
        int rest = rm_grammar_repeat(c->g, sep, min > 1 ? min - 1 : 0, max < 0 ? -1 : max - 1);
        items = rm_grammar_rule(g);
        rm_grammar_begin(g, items);
        rm_grammar_ref(g, item);
        rm_grammar_ref(g, rest);
        rm_grammar_end(g);
    }
    return bracketed(c, '[', ']', min == 0, items);
}

/* key ws ":" ws value, the key a rule (any string) or a literal (len >= 0) */
static int member_rule(cc *c, int key_rule, const char *key, int key_len, int value) {
    rm_grammar *g = c->g;
    int ws = ws_rule(c), r = rm_grammar_rule(g);
    rm_grammar_begin(g, r);
    if (key_len >= 0) rm_grammar_lit(g, key, (size_t)key_len);
    else rm_grammar_ref(g, key_rule);
    rm_grammar_ref(g, ws);
    rm_grammar_lit(g, ":", 1);
    rm_grammar_ref(g, ws);
    rm_grammar_ref(g, value);
    rm_grammar_end(g);
    return r;
}

/* The members' tail once one was written: R ::= "" | ws "," ws member R */
static int more_members(cc *c, int member) {
    rm_grammar *g = c->g;
    int ws = ws_rule(c), r = rm_grammar_rule(g);
    rm_grammar_begin(g, r);
    if (member >= 0) {
        rm_grammar_or(g);
        rm_grammar_ref(g, ws);
        rm_grammar_lit(g, ",", 1);
        rm_grammar_ref(g, ws);
        rm_grammar_ref(g, member);
        rm_grammar_ref(g, r);
    }
    rm_grammar_end(g);
    return r;
}

/* Any JSON value. */
static int any_rule(cc *c) {
    if (c->any >= 0) return c->any;
    rm_grammar *g = c->g;
    int any = c->any = rm_grammar_rule(g);
    int str = string_rule(c), num = numeric_rule(c, true);
    int member = member_rule(c, str, NULL, -1, any);
    int members = rm_grammar_rule(g);
    int more = more_members(c, member);
    rm_grammar_begin(g, members);
    rm_grammar_ref(g, member);
    rm_grammar_ref(g, more);
    rm_grammar_end(g);
    int obj = bracketed(c, '{', '}', true, members);
    int arr = list_rule(c, any, 0, -1);
    rm_grammar_begin(g, any);
    rm_grammar_ref(g, obj);
    rm_grammar_or(g);
    rm_grammar_ref(g, arr);
    rm_grammar_or(g);
    rm_grammar_ref(g, str);
    rm_grammar_or(g);
    rm_grammar_ref(g, num);
    for (const char *const *w = (const char *const[]){"true", "false", "null", NULL}; *w; w++) {
        rm_grammar_or(g);
        rm_grammar_lit(g, *w, strlen(*w));
    }
    rm_grammar_end(g);
    return any;
}

/* ---- schemas ---- */

static int compile(cc *c, const json_t *s);

/* Compile s at path + "/" + seg (seg2, when not NULL, appended too). */
static int compile_at(cc *c, const json_t *s, const char *seg, const char *seg2) {
    size_t n = strlen(c->path);
    snprintf(c->path + n, sizeof c->path - n, "/%s%s%s", seg, seg2 ? "/" : "", seg2 ? seg2 : "");
    int r = compile(c, s);
    c->path[n] = 0;
    return r;
}

/* Exactly the compact JSON of v. */
static int literal_rule(cc *c, const json_t *v) {
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) return oom(c);
    int r = rm_grammar_rule(c->g);
    rm_grammar_begin(c->g, r);
    rm_grammar_lit(c->g, text, strlen(text));
    rm_grammar_end(c->g);
    free(text);
    return r;
}

static bool annotation(const char *k) {
    static const char *const names[] = {"title", "description", "default", "examples", "format", "$schema",
                                        "$id", "$comment", "strict", "$defs", "definitions", "deprecated",
                                        "readOnly", "writeOnly", NULL};
    for (const char *const *n = names; *n; n++)
        if (!strcmp(k, *n)) return true;
    return false;
}

/* A JSON type's name as "type" names it, of v. */
static bool of_type(const json_t *v, const char *type) {
    if (!strcmp(type, "integer")) return json_is_integer(v);
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    if (!strcmp(type, "null")) return json_is_null(v);
    if (!strcmp(type, "object")) return json_is_object(v);
    if (!strcmp(type, "array")) return json_is_array(v);
    return false;
}

static bool known_type(const char *t) {
    static const char *const names[] = {"object", "array", "string", "number", "integer", "boolean", "null", NULL};
    for (const char *const *n = names; *n; n++)
        if (!strcmp(t, *n)) return true;
    return false;
}

/* Does v satisfy s's "type" (absent: any)? */
static bool type_allows(const json_t *s, const json_t *v) {
    const json_t *t = json_object_get(s, "type");
    if (!t) return true;
    if (json_is_string(t)) return of_type(v, json_string_value(t));
    size_t i;
    const json_t *x;
    json_array_foreach(t, i, x) if (json_is_string(x) && of_type(v, json_string_value(x))) return true;
    return false;
}

/* A rule whose alternatives are the rules alts[0, n), which it frees. */
static int one_of(cc *c, int *alts, size_t n) {
    int r = rm_grammar_rule(c->g);
    rm_grammar_begin(c->g, r);
    for (size_t i = 0; i < n; i++) {
        if (i) rm_grammar_or(c->g);
        rm_grammar_ref(c->g, alts[i]);
    }
    rm_grammar_end(c->g);
    rm_free(alts);
    return r;
}

/* "enum" or "const": alternatives of the values that s's "type" allows. */
static int values_rule(cc *c, const json_t *s, const json_t *vals, bool is_const) {
    size_t n = is_const ? 1 : json_array_size(vals);
    if (!is_const && !json_is_array(vals)) return fail(c, "\"enum\" must be an array");
    int *alts = rm_malloc((n ? n : 1) * sizeof *alts);
    if (!alts) return oom(c);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = is_const ? vals : json_array_get(vals, i);
        if (!type_allows(s, v)) continue;
        if ((alts[k] = literal_rule(c, v)) < 0) {
            rm_free(alts);
            return -1;
        }
        k++;
    }
    if (!k) {
        rm_free(alts);
        return fail(c, "%s no value of its \"type\": no value satisfies it", is_const ? "\"const\" is" : "\"enum\" has");
    }
    return one_of(c, alts, (size_t)k);
}

/* "anyOf" / "oneOf": alternatives. */
static int alternatives_rule(cc *c, const json_t *list, const char *kw) {
    size_t n = json_array_size(list);
    if (!json_is_array(list) || !n) return fail(c, "\"%s\" must be a non-empty array of schemas", kw);
    int *alts = rm_malloc(n * sizeof *alts);
    if (!alts) return oom(c);
    for (size_t i = 0; i < n; i++) {
        char idx[24];
        snprintf(idx, sizeof idx, "%zu", i);
        if ((alts[i] = compile_at(c, json_array_get(list, i), kw, idx)) < 0) {
            rm_free(alts);
            return -1;
        }
    }
    return one_of(c, alts, n);
}

/* A local "$ref": "#" or a JSON pointer after it ("#/$defs/Name"), the
 * target compiled once (recursion refers to the reserved rule). */
static int ref_rule(cc *c, const char *ref) {
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, ref)) return c->refs[i].rule;
    if (ref[0] != '#' || (ref[1] && ref[1] != '/'))
        return fail(c, "\"$ref\": \"%s\" is not in this schema (only \"#\" and \"#/...\" are followed)", ref);
    const json_t *t = c->doc;
    for (const char *p = ref + 1; *p && t;) {
        p++; /* the '/' */
        char seg[256];
        size_t n = 0;
        for (; *p && *p != '/' && n + 1 < sizeof seg; p++) {
            if (*p == '~' && (p[1] == '0' || p[1] == '1')) seg[n++] = p[1] == '0' ? '~' : '/', p++;
            else seg[n++] = *p;
        }
        seg[n] = 0;
        if (json_is_array(t)) {
            char *end;
            long i = strtol(seg, &end, 10);
            t = *seg && !*end && i >= 0 ? json_array_get(t, (size_t)i) : NULL;
        } else {
            t = json_object_get(t, seg);
        }
    }
    if (!t) return fail(c, "\"$ref\": \"%s\" names nothing in this schema", ref);
    ref_entry *grown = rm_realloc(c->refs, (size_t)(c->n_refs + 1) * sizeof *grown);
    char *copy = rm_strndup(ref, strlen(ref));
    if (!grown || !copy) {
        if (grown) c->refs = grown;
        rm_free(copy);
        return oom(c);
    }
    c->refs = grown;
    int r = rm_grammar_rule(c->g);
    c->refs[c->n_refs++] = (ref_entry){copy, r};
    char saved[sizeof c->path];
    memcpy(saved, c->path, sizeof saved);
    snprintf(c->path, sizeof c->path, "%s", ref + 1);
    int body = compile(c, t);
    memcpy(c->path, saved, sizeof saved);
    if (body < 0) return -1;
    rm_grammar_begin(c->g, r);
    rm_grammar_ref(c->g, body);
    rm_grammar_end(c->g);
    return r;
}

/* A count keyword: absent, *out stays as it was. */
static bool get_count(cc *c, const json_t *s, const char *kw, int *out) {
    const json_t *v = json_object_get(s, kw);
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_REPEAT) {
        fail(c, "\"%s\" must be an integer from 0 to %d", kw, MAX_REPEAT);
        return false;
    }
    *out = (int)json_integer_value(v);
    return true;
}

static int bounds(cc *c, const json_t *s, const char *min_kw, const char *max_kw, int *min, int *max) {
    *min = 0;
    *max = -1;
    if (!get_count(c, s, min_kw, min) || !get_count(c, s, max_kw, max)) return -1;
    if (*max >= 0 && *min > *max) return fail(c, "\"%s\" is above its maximum: no value satisfies it", min_kw);
    return 0;
}

static int object_rule(cc *c, const json_t *s) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
                 *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return fail(c, "\"properties\" must be an object");
    if (req && !json_is_array(req)) return fail(c, "\"required\" must be an array of names");
    size_t i;
    const json_t *x;
    json_array_foreach(req, i, x) {
        if (!json_is_string(x)) return fail(c, "\"required\" must be an array of names");
        if (!json_object_get(props, json_string_value(x)))
            return fail(c, "required property \"%s\" is not among \"properties\"", json_string_value(x));
    }
    /* other members: any without "properties", else only as "additionalProperties" says */
    int extra = -1;
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return fail(c, "\"additionalProperties\" must be a boolean or a schema");
    if (addl ? !json_is_false(addl) : !props) {
        int v = addl && json_is_object(addl) ? compile_at(c, addl, "additionalProperties", NULL) : any_rule(c);
        if (v < 0) return -1;
        extra = member_rule(c, string_rule(c), NULL, -1, v);
    }
    size_t n = props ? json_object_size(props) : 0;
    if (n > MAX_PROPERTIES) return fail(c, "more than %d \"properties\" in one object", MAX_PROPERTIES);
    int *kv = rm_malloc((n ? n : 1) * sizeof *kv);
    bool *opt = rm_malloc((n ? n : 1) * sizeof *opt);
    if (!kv || !opt) {
        rm_free(kv);
        rm_free(opt);
        return oom(c);
    }
    const char *name;
    size_t k = 0;
    int result = -1;
    bool any_required = false;
    json_object_foreach((json_t *)props, name, x) {
        int v = compile_at(c, x, "properties", name);
        if (v < 0) goto out;
        json_t *key = json_string(name);
        char *lit = key ? json_dumps(key, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(key);
        if (!lit) {
            oom(c);
            goto out;
        }
        kv[k] = member_rule(c, -1, lit, (int)strlen(lit), v);
        free(lit);
        opt[k] = true;
        json_array_foreach(req, i, x) if (!strcmp(json_string_value(x), name)) opt[k] = false;
        any_required |= !opt[k];
        k++;
    }
    /* rest[i]: members i.. after one was written (each with its comma);
     * first[i]: members i.., at least one, none written yet */
    rm_grammar *g = c->g;
    int ws = ws_rule(c);
    int rest = more_members(c, extra);
    int first = -1;
    if (extra >= 0) {
        first = rm_grammar_rule(g);
        rm_grammar_begin(g, first);
        rm_grammar_ref(g, extra);
        rm_grammar_ref(g, rest);
        rm_grammar_end(g);
    }
    for (size_t j = n; j-- > 0;) {
        int f = rm_grammar_rule(g);
        rm_grammar_begin(g, f);
        rm_grammar_ref(g, kv[j]);
        rm_grammar_ref(g, rest);
        if (opt[j] && first >= 0) {
            rm_grammar_or(g);
            rm_grammar_ref(g, first);
        }
        rm_grammar_end(g);
        first = f;
        int r = rm_grammar_rule(g);
        rm_grammar_begin(g, r);
        rm_grammar_ref(g, ws);
        rm_grammar_lit(g, ",", 1);
        rm_grammar_ref(g, ws);
        rm_grammar_ref(g, kv[j]);
        rm_grammar_ref(g, rest);
        if (opt[j]) {
            rm_grammar_or(g);
            rm_grammar_ref(g, rest);
        }
        rm_grammar_end(g);
        rest = r;
    }
    result = bracketed(c, '{', '}', !any_required, first);
out:
    rm_free(kv);
    rm_free(opt);
    return result;
}

static int type_rule(cc *c, const json_t *s, const char *type) {
    int min, max;
    if (!strcmp(type, "object")) return object_rule(c, s);
    if (!strcmp(type, "array")) {
        const json_t *items = json_object_get(s, "items");
        if (items && json_is_array(items))
            return fail(c, "\"items\" as an array (a tuple) is not supported");
        if (bounds(c, s, "minItems", "maxItems", &min, &max) < 0) return -1;
        int it = items ? compile_at(c, items, "items", NULL) : any_rule(c);
        return it < 0 ? -1 : list_rule(c, it, min, max);
    }
    if (!strcmp(type, "string")) {
        if (bounds(c, s, "minLength", "maxLength", &min, &max) < 0) return -1;
        if (!min && max < 0) return string_rule(c);
        return quoted(c, rm_grammar_repeat(c->g, char_rule(c), min, max));
    }
    if (!strcmp(type, "number")) return numeric_rule(c, true);
    if (!strcmp(type, "integer")) return numeric_rule(c, false);
    int r = rm_grammar_rule(c->g);
    rm_grammar_begin(c->g, r);
    if (!strcmp(type, "boolean")) {
        rm_grammar_lit(c->g, "true", 4);
        rm_grammar_or(c->g);
        rm_grammar_lit(c->g, "false", 5);
    } else {
        rm_grammar_lit(c->g, "null", 4);
    }
    rm_grammar_end(c->g);
    return r;
}

/* Which keyword family s uses, refusing what is not supported and
 * combinations whose meaning (an intersection) the grammar cannot give. */
static int check_keywords(cc *c, const json_t *s, const char **kind) {
    static const char *const typed[] = {"type", "properties", "required", "additionalProperties", "items",
                                        "minItems", "maxItems", "minLength", "maxLength", NULL};
    static const char *const alone[] = {"$ref", "anyOf", "oneOf", "allOf", NULL};
    const char *key;
    const json_t *v;
    *kind = NULL;
    bool has_typed = false, has_values = false;
    json_object_foreach((json_t *)s, key, v) {
        if (annotation(key)) continue;
        bool known = false;
        for (const char *const *t = typed; *t && !known; t++) known = !strcmp(key, *t);
        if (known) {
            has_typed = true;
            continue;
        }
        if (!strcmp(key, "enum") || !strcmp(key, "const")) {
            if (has_values) return fail(c, "\"enum\" beside \"const\" is not supported");
            has_values = true;
            continue;
        }
        for (const char *const *t = alone; *t && !known; t++) known = !strcmp(key, *t);
        if (!known) return fail(c, "keyword \"%s\" is not supported", key);
        if (*kind) return fail(c, "\"%s\" beside another combining keyword is not supported", key);
        *kind = key;
    }
    if (*kind && (has_typed || has_values))
        return fail(c, "\"%s\" beside other keywords is not supported (put them in its schemas)", *kind);
    if (has_values) {
        const char *key2;
        json_object_foreach((json_t *)s, key2, v) if (strcmp(key2, "type") && !annotation(key2) &&
                                                      strcmp(key2, "enum") && strcmp(key2, "const"))
            return fail(c, "\"%s\" beside \"enum\" or \"const\" is not supported", key2);
        *kind = json_object_get(s, "enum") ? "enum" : "const";
    }
    return 0;
}

static int compile(cc *c, const json_t *s) {
    if (json_is_true(s)) return any_rule(c);
    if (json_is_false(s)) return fail(c, "the schema false: no value satisfies it");
    if (!json_is_object(s)) return fail(c, "a schema must be an object or a boolean");
    if (c->nesting >= MAX_NESTING) return fail(c, "schemas nest deeper than %d", MAX_NESTING);
    c->nesting++;
    const char *kind;
    int r = check_keywords(c, s, &kind);
    if (r < 0) goto out;
    const json_t *t = json_object_get(s, "type");
    if (t && !json_is_string(t) && !json_is_array(t))
        r = fail(c, "\"type\" must be a name or an array of names");
    else if (kind && !strcmp(kind, "$ref"))
        r = json_is_string(json_object_get(s, "$ref")) ? ref_rule(c, json_string_value(json_object_get(s, "$ref")))
                                                        : fail(c, "\"$ref\" must be a string");
    else if (kind && (!strcmp(kind, "anyOf") || !strcmp(kind, "oneOf")))
        r = alternatives_rule(c, json_object_get(s, kind), kind);
    else if (kind && !strcmp(kind, "allOf"))
        r = json_is_array(json_object_get(s, "allOf")) && json_array_size(json_object_get(s, "allOf")) == 1
                ? compile_at(c, json_array_get(json_object_get(s, "allOf"), 0), "allOf", "0")
                : fail(c, "\"allOf\" of more than one schema is not supported");
    else if (kind)
        r = values_rule(c, s, json_object_get(s, kind), !strcmp(kind, "const"));
    else if (!t) {
        /* no type: the one its keywords imply, else any value */
        bool obj = json_object_get(s, "properties") || json_object_get(s, "required") ||
                   json_object_get(s, "additionalProperties");
        bool arr = json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems");
        bool str = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
        if (obj + arr + str > 1) r = fail(c, "keywords of several types without \"type\" are not supported");
        else r = obj ? object_rule(c, s) : arr ? type_rule(c, s, "array") : str ? type_rule(c, s, "string")
                                                                          : any_rule(c);
    } else {
        size_t n = json_is_string(t) ? 1 : json_array_size(t);
        if (!n || n > 7) {
            r = fail(c, "\"type\" must name 1 to 7 types");
            goto out;
        }
        int *alts = rm_malloc(n * sizeof *alts);
        if (!alts) {
            r = oom(c);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *ti = json_is_string(t) ? t : json_array_get(t, i);
            if (!json_is_string(ti) || !known_type(json_string_value(ti)))
                alts[i] = fail(c, "\"type\": \"%s\" is not a JSON Schema type",
                               json_is_string(ti) ? json_string_value(ti) : "(not a string)");
            else alts[i] = type_rule(c, s, json_string_value(ti));
            if (alts[i] < 0) {
                rm_free(alts);
                r = -1;
                goto out;
            }
        }
        r = one_of(c, alts, n);
    }
out:
    c->nesting--;
    return r;
}

/* The frame around the value: texts before and after it, and how many values (framed, sep between) */
typedef struct {
    const char *open, *close, *sep;
    int max_items;
} frame;

static rm_status schema_grammar(const char *schema, size_t len, const frame *f, rm_grammar **out) {
    *out = NULL;
    json_error_t je;
    json_t *doc = json_loadb(schema, len, JSON_DECODE_ANY, &je);
    if (!doc) return rm_err(RAMOLE_ERR_INVALID, "json schema: not valid JSON: %s (column %d)", je.text, je.column);
    cc c = {.doc = doc, .ws = -1, .chr = -1, .string = -1, .number = -1, .integer = -1, .any = -1};
    rm_status st = RAMOLE_OK;
    if (!(c.g = rm_grammar_new())) {
        st = rm_err(RAMOLE_ERR_NOMEM, "json schema: out of memory");
        goto done;
    }
    int value = compile(&c, doc);
    if (value < 0) {
        st = c.st;
        goto done;
    }
    int root = rm_grammar_rule(c.g);
    if (!f) { /* leading whitespace, the value, nothing after it */
        int ws = ws_rule(&c);
        rm_grammar_begin(c.g, root);
        rm_grammar_ref(c.g, ws);
        rm_grammar_ref(c.g, value);
        rm_grammar_end(c.g);
    } else { /* item = open value close; root = item (sep item){0, max - 1} */
        int item = rm_grammar_rule(c.g), more = rm_grammar_rule(c.g);
        rm_grammar_begin(c.g, item);
        rm_grammar_lit(c.g, f->open, strlen(f->open));
        rm_grammar_ref(c.g, value);
        rm_grammar_lit(c.g, f->close, strlen(f->close));
        rm_grammar_end(c.g);
        rm_grammar_begin(c.g, more);
        rm_grammar_lit(c.g, f->sep, strlen(f->sep));
        rm_grammar_ref(c.g, item);
        rm_grammar_end(c.g);
        int rest = f->max_items > 1 ? rm_grammar_repeat(c.g, more, 0, f->max_items - 1) : -1;
        rm_grammar_begin(c.g, root);
        rm_grammar_ref(c.g, item);
        if (rest >= 0) rm_grammar_ref(c.g, rest);
        rm_grammar_end(c.g);
    }
    st = rm_grammar_finish(c.g, root);
done:
    for (int i = 0; i < c.n_refs; i++) rm_free(c.refs[i].ref);
    rm_free(c.refs);
    json_decref(doc);
    if (st != RAMOLE_OK) rm_grammar_free(c.g);
    else *out = c.g;
    return st;
}

rm_status rm_json_schema_grammar(const char *schema, size_t len, rm_grammar **out) {
    return schema_grammar(schema, len, NULL, out);
}

rm_status rm_json_schema_grammar_framed(const char *schema, size_t len, const char *open, const char *close,
                                        const char *sep, int max_items, rm_grammar **out) {
    frame f = {open, close, sep, max_items < 1 ? 1 : max_items};
    return schema_grammar(schema, len, &f, out);
}
