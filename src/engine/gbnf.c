/*
 * gbnf.c — GBNF text to a grammar over bytes (gbnf.h).
 *
 * A rule's body is parsed into a list of items first (bytes of literals,
 * references), and written only when the whole body is read: groups,
 * classes and repetitions met on the way become rules of their own, and
 * the grammar builds one body at a time.
 */
#include "engine/gbnf.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_REPEAT RM_GRAMMAR_MAX_REPEAT
#define MAX_NESTING 64
#define ALT INT_MIN /* between alternatives in an item list */

typedef struct {
    int *v; /* >= 0: a rule; -1 - b: byte b; ALT */
    int n, cap;
} items;

typedef struct {
    char name[128];
    int rule;
    bool defined;
    int line; /* of its first use, for the message when never defined */
} named;

typedef struct {
    rm_grammar *g;
    const char *src, *p, *end;
    named *names;
    int n_names, cap_names;
    int any; /* the rule for '.', -1 before */
    int nesting;
    rm_status st;
} gp;

static int line_of(const gp *c, const char *at, int *col) {
    int line = 1;
    const char *bol = c->src;
    for (const char *q = c->src; q < at; q++)
        if (*q == '\n') line++, bol = q + 1;
    *col = (int)(at - bol) + 1;
    return line;
}

static int fail(gp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(gp *c, const char *fmt, ...) {
    if (c->st != RAMOLE_OK) return -1; /* the first error stands */
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int col, line = line_of(c, c->p, &col);
    c->st = rm_err(RAMOLE_ERR_INVALID, "grammar at line %d column %d: %s", line, col, what);
    return -1;
}

static int oom(gp *c) {
    if (c->st == RAMOLE_OK) c->st = rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    return -1;
}

static bool push(gp *c, items *it, int v) {
    if (it->n == it->cap) {
        int cap = it->cap ? 2 * it->cap : 32;
        int *w = rm_realloc(it->v, (size_t)cap * sizeof *w);
        if (!w) return oom(c), false;
        it->v = w;
        it->cap = cap;
    }
    it->v[it->n++] = v;
    return true;
}

static bool at_end(const gp *c) { return c->p >= c->end; }

/* Spaces, tabs and comments; newlines too when nl_ok. */
static void space(gp *c, bool nl_ok) {
    while (!at_end(c)) {
        char ch = *c->p;
        if (ch == ' ' || ch == '\t' || (nl_ok && (ch == '\n' || ch == '\r'))) c->p++;
        else if (ch == '#')
            while (!at_end(c) && *c->p != '\n') c->p++;
        else break;
    }
}

static bool word_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
}

/* The rule named s[0, n), reserved when first met. */
static int rule_named(gp *c, const char *s, size_t n) {
    if (n >= sizeof c->names[0].name) return fail(c, "a rule name longer than %zu characters", sizeof c->names[0].name - 1);
    for (int i = 0; i < c->n_names; i++)
        if (strlen(c->names[i].name) == n && !memcmp(c->names[i].name, s, n)) return i;
    if (c->n_names == c->cap_names) {
        int cap = c->cap_names ? 2 * c->cap_names : 32;
        named *w = rm_realloc(c->names, (size_t)cap * sizeof *w);
        if (!w) return oom(c);
        c->names = w;
        c->cap_names = cap;
    }
    named *nm = &c->names[c->n_names];
    memcpy(nm->name, s, n);
    nm->name[n] = 0;
    nm->rule = rm_grammar_rule(c->g);
    nm->defined = false;
    int col;
    nm->line = line_of(c, s, &col);
    return c->n_names++;
}

static int hex_digits(gp *c, int n, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++, c->p++) {
        char ch = at_end(c) ? 0 : *c->p;
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) return fail(c, "an escape needs %d hexadecimal digits", n);
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

/* One character of a literal or class, as its code point: an escape, or
 * a UTF-8 sequence. */
static int parse_char(gp *c, uint32_t *cp) {
    if (at_end(c)) return fail(c, "the text ends inside a literal or class");
    uint8_t b = (uint8_t)*c->p;
    if (b == '\\') {
        c->p++;
        char e = at_end(c) ? 0 : *c->p++;
        switch (e) {
        case 'n': *cp = '\n'; return 0;
        case 'r': *cp = '\r'; return 0;
        case 't': *cp = '\t'; return 0;
        case '\\': case '"': case '[': case ']': case '-': case '/': *cp = (uint8_t)e; return 0;
        case 'x': return hex_digits(c, 2, cp);
        case 'u': return hex_digits(c, 4, cp);
        case 'U': return hex_digits(c, 8, cp);
        default: c->p--; return fail(c, "unknown escape \\%c", e ? e : ' ');
        }
    }
    int n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || c->p + n > c->end) return fail(c, "invalid UTF-8");
    uint32_t v = n == 1 ? b : n == 2 ? b & 0x1Fu : n == 3 ? b & 0x0Fu : b & 0x07u;
    for (int i = 1; i < n; i++) {
        uint8_t x = (uint8_t)c->p[i];
        if ((x & 0xC0) != 0x80) return fail(c, "invalid UTF-8");
        v = v << 6 | (x & 0x3Fu);
    }
    c->p += n;
    *cp = v;
    return 0;
}

static int put_code_point(gp *c, items *it, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return fail(c, "U+%04X is not a character", (unsigned)cp);
    uint8_t b[4];
    int n = rm_grammar_utf8(cp, b);
    for (int i = 0; i < n; i++)
        if (!push(c, it, -1 - b[i])) return -1;
    return 0;
}

/* [...] after its '[': a rule of one character of the class. */
static int parse_class(gp *c) {
    bool negated = !at_end(c) && *c->p == '^';
    if (negated) c->p++;
    uint32_t (*r)[2] = NULL;
    int n = 0, cap = 0;
    while (!at_end(c) && *c->p != ']') {
        uint32_t lo, hi;
        if (parse_char(c, &lo) < 0) goto bad;
        hi = lo;
        if (c->end - c->p >= 2 && c->p[0] == '-' && c->p[1] != ']') {
            c->p++;
            if (parse_char(c, &hi) < 0) goto bad;
            if (hi < lo) {
                fail(c, "a class range runs backwards");
                goto bad;
            }
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            uint32_t(*w)[2] = rm_realloc(r, (size_t)cap * sizeof *w);
            if (!w) {
                oom(c);
                goto bad;
            }
            r = w;
        }
        r[n][0] = lo, r[n][1] = hi;
        n++;
    }
    if (at_end(c)) {
        fail(c, "a class is not closed with ']'");
        goto bad;
    }
    c->p++;
    if (negated) { /* the complement within [0, 0x10FFFF] */
        for (int i = 1; i < n; i++) /* sort by start: classes are short */
            for (int j = i; j > 0 && r[j][0] < r[j - 1][0]; j--) {
                uint32_t t0 = r[j][0], t1 = r[j][1];
                r[j][0] = r[j - 1][0], r[j][1] = r[j - 1][1];
                r[j - 1][0] = t0, r[j - 1][1] = t1;
            }
        uint32_t(*w)[2] = rm_malloc((size_t)(n + 1) * sizeof *w);
        if (!w) {
            oom(c);
            goto bad;
        }
        int k = 0;
        uint32_t from = 0;
        for (int i = 0; i < n; i++) {
            if (r[i][0] > from) w[k][0] = from, w[k][1] = r[i][0] - 1, k++;
            if (r[i][1] + 1 > from) from = r[i][1] + 1;
        }
        if (from <= 0x10FFFF) w[k][0] = from, w[k][1] = 0x10FFFF, k++;
        rm_free(r);
        r = w;
        n = k;
    }
    int id = rm_grammar_chars(c->g, (const uint32_t(*)[2])r, n);
    rm_free(r);
    return id;
bad:
    rm_free(r);
    return -1;
}

static int parse_alternatives(gp *c, items *out, bool nested);

/* Write rule id's body from its items. */
static void emit(gp *c, int id, const items *it) {
    rm_grammar_begin(c->g, id);
    for (int i = 0; i < it->n; i++) {
        int v = it->v[i];
        if (v == ALT) rm_grammar_or(c->g);
        else if (v >= 0) rm_grammar_ref(c->g, v);
        else {
            uint8_t b = (uint8_t)(-1 - v);
            rm_grammar_range(c->g, b, b);
        }
    }
    rm_grammar_end(c->g);
}

/* A new rule of items it[from, n) (none: the empty text). */
static int rule_of(gp *c, const items *it, int from) {
    items part = {it->n > from ? it->v + from : NULL, it->n - from, 0};
    int id = rm_grammar_rule(c->g);
    emit(c, id, &part);
    return id;
}

/* {m}, {m,}, {m,n} after its '{'. */
static int parse_braces(gp *c, int *min, int *max) {
    long v[2] = {-1, -1};
    bool comma = false;
    for (int k = 0; k < 2; k++) {
        space(c, true);
        if (!at_end(c) && *c->p >= '0' && *c->p <= '9') {
            long x = 0;
            while (!at_end(c) && *c->p >= '0' && *c->p <= '9' && x <= MAX_REPEAT) x = x * 10 + (*c->p++ - '0');
            if (x > MAX_REPEAT) return fail(c, "a repetition count above %d", MAX_REPEAT);
            v[k] = x;
        } else if (k == 0) {
            return fail(c, "a repetition needs a count: {m}, {m,} or {m,n}");
        }
        space(c, true);
        if (k == 0 && !at_end(c) && *c->p == ',') {
            comma = true;
            c->p++;
            continue;
        }
        break;
    }
    if (at_end(c) || *c->p != '}') return fail(c, "a repetition is not closed with '}'");
    c->p++;
    *min = (int)v[0];
    *max = !comma ? (int)v[0] : (int)v[1];
    if (*max >= 0 && *max < *min) return fail(c, "a repetition's maximum is below its minimum");
    return 0;
}

/* Elements up to a '|', ')', a newline outside parentheses, or the end. */
static int parse_sequence(gp *c, items *out, bool nested) {
    int last = -1; /* where the last element's items begin */
    for (;;) {
        if (at_end(c)) return 0;
        char ch = *c->p;
        int start = out->n;
        if (ch == '"') {
            c->p++;
            while (!at_end(c) && *c->p != '"') {
                uint32_t cp;
                if (parse_char(c, &cp) < 0 || put_code_point(c, out, cp) < 0) return -1;
            }
            if (at_end(c)) return fail(c, "a literal is not closed with '\"'");
            c->p++;
            last = start;
        } else if (ch == '[') {
            c->p++;
            int r = parse_class(c);
            if (r < 0 || !push(c, out, r)) return -1;
            last = start;
        } else if (ch == '.') {
            c->p++;
            if (c->any < 0) c->any = rm_grammar_chars(c->g, (const uint32_t[][2]){{0, 0x10FFFF}}, 1);
            if (!push(c, out, c->any)) return -1;
            last = start;
        } else if (ch == '(') {
            c->p++;
            if (++c->nesting > MAX_NESTING) return fail(c, "parentheses nest deeper than %d", MAX_NESTING);
            space(c, true);
            items inner = {0};
            int st = parse_alternatives(c, &inner, true);
            if (st == 0 && (at_end(c) || *c->p != ')')) st = fail(c, "a group is not closed with ')'");
            int r = -1;
            if (st == 0) {
                c->p++;
                r = rm_grammar_rule(c->g);
                emit(c, r, &inner);
            }
            rm_free(inner.v);
            c->nesting--;
            if (st < 0 || !push(c, out, r)) return -1;
            last = start;
        } else if (word_char(ch)) {
            const char *s = c->p;
            while (!at_end(c) && word_char(*c->p)) c->p++;
            int k = rule_named(c, s, (size_t)(c->p - s));
            if (k < 0 || !push(c, out, c->names[k].rule)) return -1;
            last = start;
        } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
            if (last < 0) return fail(c, "'%c' repeats nothing", ch);
            c->p++;
            int min = ch == '+' ? 1 : 0, max = ch == '?' ? 1 : -1;
            if (ch == '{' && parse_braces(c, &min, &max) < 0) return -1;
            int item = out->n - last == 1 && out->v[last] >= 0 ? out->v[last] : rule_of(c, out, last);
            out->n = last;
            if (!push(c, out, rm_grammar_repeat(c->g, item, min, max))) return -1;
            last = -1; /* a repetition is not repeated again (llama.cpp refuses "a**" too) */
        } else if (ch == '<') {
            return fail(c, "token references (<...>) are not supported");
        } else {
            return 0;
        }
        space(c, nested);
    }
}

static int parse_alternatives(gp *c, items *out, bool nested) {
    if (parse_sequence(c, out, nested) < 0) return -1;
    while (!at_end(c) && *c->p == '|') {
        c->p++;
        space(c, true);
        if (!push(c, out, ALT) || parse_sequence(c, out, nested) < 0) return -1;
    }
    return 0;
}

static int parse_rule(gp *c) {
    const char *s = c->p;
    while (!at_end(c) && word_char(*c->p)) c->p++;
    if (c->p == s) return fail(c, "a rule must begin with its name");
    int k = rule_named(c, s, (size_t)(c->p - s));
    if (k < 0) return -1;
    if (c->names[k].defined) {
        c->p = s;
        return fail(c, "rule \"%s\" is defined twice", c->names[k].name);
    }
    space(c, false);
    if (c->end - c->p < 3 || memcmp(c->p, "::=", 3)) return fail(c, "expected \"::=\" after rule \"%s\"", c->names[k].name);
    c->p += 3;
    space(c, true);
    items body = {0};
    int st = parse_alternatives(c, &body, false);
    if (st == 0 && !at_end(c) && *c->p != '\n' && *c->p != '\r')
        st = fail(c, "unexpected '%c'", *c->p);
    if (st == 0) {
        c->names[k].defined = true;
        emit(c, c->names[k].rule, &body);
    }
    rm_free(body.v);
    return st;
}

rm_status rm_gbnf_grammar(const char *text, size_t len, rm_grammar **out) {
    *out = NULL;
    gp c = {.src = text, .p = text, .end = text + len, .any = -1};
    if (!(c.g = rm_grammar_new())) return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    space(&c, true);
    while (!at_end(&c) && c.st == RAMOLE_OK) {
        if (parse_rule(&c) < 0) break;
        space(&c, true);
    }
    int root = -1;
    for (int i = 0; c.st == RAMOLE_OK && i < c.n_names; i++) {
        if (!c.names[i].defined)
            c.st = rm_err(RAMOLE_ERR_INVALID, "grammar: rule \"%s\" (line %d) is used but never defined",
                          c.names[i].name, c.names[i].line);
        if (!strcmp(c.names[i].name, "root")) root = c.names[i].rule;
    }
    if (c.st == RAMOLE_OK && root < 0) c.st = rm_err(RAMOLE_ERR_INVALID, "grammar: no rule named \"root\"");
    if (c.st == RAMOLE_OK && (c.st = rm_grammar_finish(c.g, root)) != RAMOLE_OK)
        for (int i = 0; i < c.n_names; i++)
            if (c.names[i].rule == rm_grammar_left_recursive(c.g))
                rm_err(c.st, "grammar: rule \"%s\" is left-recursive: it can reach itself before any character",
                       c.names[i].name);
    rm_free(c.names);
    if (c.st != RAMOLE_OK) {
        rm_grammar_free(c.g);
        return c.st;
    }
    *out = c.g;
    return RAMOLE_OK;
}
