/*
 * grammar.c — rules of byte sets and references, and a position in them
 * as a set of stacks (llama.cpp's matcher, over bytes instead of code
 * points: a token may end inside a UTF-8 character).
 */
#include "engine/grammar.h"

#include <stdlib.h>
#include <string.h>

enum { EL_END, EL_ALT, EL_REF, EL_BYTES };

typedef struct {
    int32_t kind;
    int32_t arg; /* EL_REF: the rule; EL_BYTES: the set */
} elem;

struct rm_grammar {
    elem *el;
    int n_el, cap_el;
    int *start; /* [n_rules] each rule's first element, -1 before its body */
    int n_rules, cap_rules;
    uint64_t (*set)[4];
    int n_set, cap_set;
    int building; /* the rule whose body is open, or -1 */
    int start_el; /* an element referring to the root, then END */
    int left_recursive; /* the rule rm_grammar_finish found left-recursive, or -1 */
    int refs;
    bool oom, misuse, full; /* full: RM_GRAMMAR_MAX_RULES reached, nothing more is built */
};

static bool grow(void **p, int *cap, int need, size_t size) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = rm_realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

rm_grammar *rm_grammar_new(void) {
    rm_grammar *g = rm_calloc(1, sizeof *g);
    if (g) g->building = g->start_el = g->left_recursive = -1, g->refs = 1;
    return g;
}

rm_grammar *rm_grammar_retain(rm_grammar *g) {
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    return g;
}

void rm_grammar_free(rm_grammar *g) {
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL)) return;
    rm_free(g->el);
    rm_free(g->start);
    rm_free(g->set);
    rm_free(g);
}

int rm_grammar_left_recursive(const rm_grammar *g) { return g->left_recursive; }

int rm_grammar_rule(rm_grammar *g) {
    if (g->n_rules >= RM_GRAMMAR_MAX_RULES) g->full = true;
    if (g->full) return 0;
    if (!grow((void **)&g->start, &g->cap_rules, g->n_rules + 1, sizeof *g->start)) {
        g->oom = true;
        return 0;
    }
    g->start[g->n_rules] = -1;
    return g->n_rules++;
}

static void put(rm_grammar *g, int kind, int arg) {
    if (g->full) return;
    if (g->building < 0 && kind != EL_END) g->misuse = true;
    if (!grow((void **)&g->el, &g->cap_el, g->n_el + 1, sizeof *g->el)) {
        g->oom = true;
        return;
    }
    g->el[g->n_el++] = (elem){kind, arg};
}

void rm_grammar_begin(rm_grammar *g, int id) {
    if (g->full) return;
    if (g->building >= 0 || id < 0 || id >= g->n_rules || g->start[id] >= 0) {
        g->misuse = true;
        return;
    }
    g->building = id;
    g->start[id] = g->n_el;
}

void rm_grammar_bytes(rm_grammar *g, const uint64_t set[4]) {
    int s = 0;
    while (s < g->n_set && memcmp(g->set[s], set, sizeof g->set[s])) s++;
    if (s == g->n_set) {
        if (!grow((void **)&g->set, &g->cap_set, g->n_set + 1, sizeof *g->set)) {
            g->oom = true;
            return;
        }
        memcpy(g->set[g->n_set++], set, sizeof g->set[0]);
    }
    put(g, EL_BYTES, s);
}

void rm_grammar_range(rm_grammar *g, uint8_t lo, uint8_t hi) {
    uint64_t set[4] = {0};
    for (int b = lo; b <= hi; b++) set[b >> 6] |= 1ull << (b & 63);
    rm_grammar_bytes(g, set);
}

void rm_grammar_lit(rm_grammar *g, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) rm_grammar_range(g, (uint8_t)s[i], (uint8_t)s[i]);
}

void rm_grammar_ref(rm_grammar *g, int rule) {
    if (rule < 0 || rule >= g->n_rules) g->misuse = true;
    put(g, EL_REF, rule);
}

void rm_grammar_or(rm_grammar *g) { put(g, EL_ALT, 0); }

void rm_grammar_end(rm_grammar *g) {
    if (g->full) return;
    if (g->building < 0) g->misuse = true;
    put(g, EL_END, 0);
    g->building = -1;
}

int rm_grammar_repeat(rm_grammar *g, int item, int min, int max) {
    if (min > RM_GRAMMAR_MAX_REPEAT || max > RM_GRAMMAR_MAX_REPEAT) g->misuse = true;
    int tail = rm_grammar_rule(g);
    rm_grammar_begin(g, tail);
    if (max < 0) {
        rm_grammar_or(g);
        rm_grammar_ref(g, item);
        rm_grammar_ref(g, tail);
    }
    rm_grammar_end(g);
    for (int k = min; max >= 0 && k < max && !g->full; k++) {
        int r = rm_grammar_rule(g);
        rm_grammar_begin(g, r);
        rm_grammar_or(g);
        rm_grammar_ref(g, item);
        rm_grammar_ref(g, tail);
        rm_grammar_end(g);
        tail = r;
    }
    int r = rm_grammar_rule(g);
    rm_grammar_begin(g, r);
    for (int k = 0; k < min && !g->full; k++) rm_grammar_ref(g, item);
    rm_grammar_ref(g, tail);
    rm_grammar_end(g);
    return r;
}

int rm_grammar_utf8(uint32_t cp, uint8_t b[4]) {
    if (cp < 0x80) return b[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return b[0] = (uint8_t)(0xC0 | cp >> 6), b[1] = (uint8_t)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return b[0] = (uint8_t)(0xE0 | cp >> 12), b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)),
               b[2] = (uint8_t)(0x80 | (cp & 0x3F)), 3;
    b[0] = (uint8_t)(0xF0 | cp >> 18), b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)), b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Alternatives of byte-range sequences for the code points [lo, hi]:
 * split where the encoding's length changes and where a continuation
 * byte would wrap, until the bytes of lo and of hi bound every byte
 * position apart (the method of Rust's regex-syntax, utf8.rs). */
static void utf8_ranges(rm_grammar *g, uint32_t lo, uint32_t hi, bool *first) {
    if (lo > hi) return;
    if (lo <= 0xDFFF && hi >= 0xD800) { /* surrogates are not characters */
        if (lo < 0xD800) utf8_ranges(g, lo, 0xD7FF, first);
        if (hi > 0xDFFF) utf8_ranges(g, 0xE000, hi, first);
        return;
    }
    static const uint32_t last_of_len[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= last_of_len[i] && hi > last_of_len[i]) {
            utf8_ranges(g, lo, last_of_len[i], first);
            utf8_ranges(g, last_of_len[i] + 1, hi, first);
            return;
        }
    uint8_t a[4], b[4];
    int n = rm_grammar_utf8(lo, a);
    rm_grammar_utf8(hi, b);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m)) continue;
        if (lo & m) {
            utf8_ranges(g, lo, lo | m, first);
            utf8_ranges(g, (lo | m) + 1, hi, first);
            return;
        }
        if ((hi & m) != m) {
            utf8_ranges(g, lo, (hi & ~m) - 1, first);
            utf8_ranges(g, hi & ~m, hi, first);
            return;
        }
    }
    if (!*first) rm_grammar_or(g);
    *first = false;
    for (int k = 0; k < n; k++) rm_grammar_range(g, a[k], b[k]);
}

int rm_grammar_chars(rm_grammar *g, const uint32_t (*r)[2], int n) {
    int id = rm_grammar_rule(g);
    rm_grammar_begin(g, id);
    bool first = true;
    for (int i = 0; i < n; i++) utf8_ranges(g, r[i][0], r[i][1] > 0x10FFFF ? 0x10FFFF : r[i][1], &first);
    if (first) { /* nothing: a byte no text holds */
        uint64_t none[4] = {0};
        rm_grammar_bytes(g, none);
    }
    rm_grammar_end(g);
    return id;
}

static bool is_end(const elem *e) { return e->kind == EL_END || e->kind == EL_ALT; }

/* nullable[r]: rule r can match the empty text (a fixpoint over the rules). */
static void find_nullable(const rm_grammar *g, bool *nullable) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < g->n_rules; r++) {
            if (nullable[r]) continue;
            bool alt_ok = true;
            for (int p = g->start[r];; p++) {
                const elem *e = &g->el[p];
                if (is_end(e)) {
                    if (alt_ok) {
                        nullable[r] = changed = true;
                        break;
                    }
                    if (e->kind == EL_END) break;
                    alt_ok = true;
                } else if (e->kind == EL_BYTES || !nullable[e->arg]) {
                    alt_ok = false;
                }
            }
        }
    }
}

/* Depth-first over "r may begin with rule s" edges; a rule met again on
 * the current path is left recursion. state: 0 new, 1 on the path, 2 done. */
static int left_recursive(const rm_grammar *g, const bool *nullable, char *state, int r) {
    if (state[r] == 1) return r;
    if (state[r] == 2) return -1;
    state[r] = 1;
    bool leading = true; /* every element before this one in the alternative is nullable */
    for (int p = g->start[r];; p++) {
        const elem *e = &g->el[p];
        if (is_end(e)) {
            if (e->kind == EL_END) break;
            leading = true;
            continue;
        }
        if (!leading) continue;
        if (e->kind == EL_BYTES) {
            leading = false;
            continue;
        }
        int bad = left_recursive(g, nullable, state, e->arg);
        if (bad >= 0) return bad;
        leading = nullable[e->arg];
    }
    state[r] = 2;
    return -1;
}

rm_status rm_grammar_finish(rm_grammar *g, int root) {
    if (g->full) return rm_err(RAMOLE_ERR_INVALID, "grammar: more than %d rules", RM_GRAMMAR_MAX_RULES);
    if (g->oom) return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    if (g->misuse || g->building >= 0 || root < 0 || root >= g->n_rules)
        return rm_err(RAMOLE_ERR_INTERNAL, "grammar: built out of order");
    for (int r = 0; r < g->n_rules; r++)
        if (g->start[r] < 0) return rm_err(RAMOLE_ERR_INTERNAL, "grammar: rule %d has no body", r);
    bool *nullable = rm_calloc((size_t)g->n_rules, sizeof *nullable);
    char *state = rm_calloc((size_t)g->n_rules, 1);
    if (!nullable || !state) {
        rm_free(nullable);
        rm_free(state);
        return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    }
    find_nullable(g, nullable);
    int bad = -1;
    for (int r = 0; r < g->n_rules && bad < 0; r++) bad = left_recursive(g, nullable, state, r);
    rm_free(nullable);
    rm_free(state);
    if (bad >= 0) {
        g->left_recursive = bad;
        return rm_err(RAMOLE_ERR_INVALID, "grammar: rule %d is left-recursive", bad);
    }
    g->start_el = g->n_el;
    g->building = 0; /* put() checks that a body is open */
    put(g, EL_REF, root);
    put(g, EL_END, 0);
    g->building = -1;
    if (g->oom) return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    rm_grammar_pos p = {0}; /* the first position expands within the matcher's limits */
    rm_status st = rm_grammar_start(g, &p);
    rm_grammar_pos_free(&p);
    return st;
}

/* ---- positions ---- */

void rm_grammar_pos_free(rm_grammar_pos *p) {
    rm_free(p->v);
    *p = (rm_grammar_pos){0};
}

rm_status rm_grammar_pos_copy(rm_grammar_pos *dst, const rm_grammar_pos *src) {
    if (!grow((void **)&dst->v, &dst->cap, src->n, sizeof *dst->v))
        return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    memcpy(dst->v, src->v, (size_t)src->n * sizeof *dst->v);
    dst->n = src->n;
    return RAMOLE_OK;
}

static rm_status pos_clear(rm_grammar_pos *p) {
    if (!grow((void **)&p->v, &p->cap, 1, sizeof *p->v)) return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    p->v[0] = 0;
    p->n = 1;
    return RAMOLE_OK;
}

/* Add stack st[0, d) unless p holds it already. The stacks of a position
 * mostly share their bottoms and differ at the top, so tops are compared
 * first. */
static rm_status pos_push(rm_grammar_pos *p, const int *st, int d) {
    for (int i = 0, at = 1; i < p->v[0]; i++, at += 1 + p->v[at])
        if (p->v[at] == d && (!d || p->v[at + d] == st[d - 1]) &&
            !memcmp(&p->v[at + 1], st, (size_t)d * sizeof *st))
            return RAMOLE_OK;
    if (!grow((void **)&p->v, &p->cap, p->n + 1 + d, sizeof *p->v))
        return rm_err(RAMOLE_ERR_NOMEM, "grammar: out of memory");
    p->v[p->n] = d;
    memcpy(&p->v[p->n + 1], st, (size_t)d * sizeof *st);
    p->n += 1 + d;
    p->v[0]++;
    return RAMOLE_OK;
}

/* Add the stacks st[0, d) stands for once the references on its top are
 * expanded into each alternative of their rules: every stack added has a
 * byte set on top, or is empty. `level` counts the references expanded
 * on the way, each a frame of this recursion. */
static rm_status expand(const rm_grammar *g, const int *st, int d, rm_grammar_pos *out, int level) {
    if (!d || g->el[st[d - 1]].kind == EL_BYTES) return pos_push(out, st, d);
    if (level >= RM_GRAMMAR_MAX_CHAIN)
        return rm_err(RAMOLE_ERR_RANGE, "grammar: more than %d rules begin one after another", RM_GRAMMAR_MAX_CHAIN);
    int top = st[d - 1];
    int buf[RM_GRAMMAR_MAX_DEPTH];
    int nd = d - 1;
    memcpy(buf, st, (size_t)nd * sizeof *buf);
    if (!is_end(&g->el[top + 1])) buf[nd++] = top + 1; /* what follows the reference */
    for (int p = g->start[g->el[top].arg];;) {
        if (is_end(&g->el[p])) { /* an empty alternative */
            RM_TRY(expand(g, buf, nd, out, level + 1));
        } else if (nd < RM_GRAMMAR_MAX_DEPTH) { /* deeper: dropped */
            buf[nd] = p;
            RM_TRY(expand(g, buf, nd + 1, out, level + 1));
        }
        while (!is_end(&g->el[p])) p++;
        if (g->el[p].kind == EL_END) break;
        p++;
    }
    return RAMOLE_OK;
}

rm_status rm_grammar_start(const rm_grammar *g, rm_grammar_pos *out) {
    RM_TRY(pos_clear(out));
    int st = g->start_el;
    return expand(g, &st, 1, out, 0);
}

static bool has(const uint64_t set[4], uint8_t b) { return set[b >> 6] >> (b & 63) & 1; }

rm_status rm_grammar_accept(const rm_grammar *g, const rm_grammar_pos *in, uint8_t b, rm_grammar_pos *out) {
    RM_TRY(pos_clear(out));
    int buf[RM_GRAMMAR_MAX_DEPTH];
    for (int i = 0, at = 1; i < in->v[0]; i++, at += 1 + in->v[at]) {
        int d = in->v[at];
        const int *st = &in->v[at + 1];
        if (!d || !has(g->set[g->el[st[d - 1]].arg], b)) continue;
        int top = st[d - 1], nd = d - 1;
        memcpy(buf, st, (size_t)nd * sizeof *buf);
        if (!is_end(&g->el[top + 1])) buf[nd++] = top + 1;
        RM_TRY(expand(g, buf, nd, out, 0));
    }
    return RAMOLE_OK;
}

rm_status rm_grammar_accept_all(const rm_grammar *g, rm_grammar_pos *p, rm_grammar_pos *tmp, const char *s, size_t n,
                                size_t *taken) {
    for (*taken = 0; *taken < n; ++*taken) {
        RM_TRY(rm_grammar_accept(g, p, (uint8_t)s[*taken], tmp));
        rm_grammar_pos t = *p;
        *p = *tmp;
        *tmp = t;
        if (!p->v[0]) return RAMOLE_OK;
    }
    return RAMOLE_OK;
}

bool rm_grammar_can_end(const rm_grammar_pos *p) {
    for (int i = 0, at = 1; i < p->v[0]; i++, at += 1 + p->v[at])
        if (!p->v[at]) return true;
    return false;
}

bool rm_grammar_must_end(const rm_grammar_pos *p) { return p->v[0] == 1 && p->v[1] == 0; }

bool rm_grammar_dead(const rm_grammar_pos *p) { return !p->v || !p->v[0]; }

uint64_t rm_grammar_takers(const rm_grammar *g, const rm_grammar_pos *p, uint8_t b) {
    uint64_t bits = 0;
    for (int i = 0, at = 1; i < p->v[0]; i++, at += 1 + p->v[at]) {
        int d = p->v[at];
        if (d && has(g->set[g->el[p->v[at + d]].arg], b)) {
            if (i >= 64) return UINT64_MAX;
            bits |= 1ull << i;
        }
    }
    return bits && p->v[0] > 64 ? UINT64_MAX : bits;
}
