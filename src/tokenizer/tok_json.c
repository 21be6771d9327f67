/*
 * tok_json.c — fast path for the two big members of tokenizer.json.
 *
 * A Qwen3 tokenizer.json is 11 MB, almost all of it model.vocab (151k
 * "token": id pairs) and model.merges (151k pairs). Building a jansson tree
 * for them costs more than everything else the loader does. This scanner
 * walks the document once with a small validating JSON lexer, reads those
 * two values straight into flat arrays (strings point into the text unless
 * they had escapes), and hands back a copy of the document where the two
 * values are replaced by {} and [] (padded with the newlines they spanned, so
 * line numbers in later error messages stay right). The small rest is then
 * parsed by jansson as before.
 *
 * Anything unusual (a syntax error, invalid UTF-8, a lone surrogate, an id
 * that is not a plain integer, a repeated key, nesting deeper than 512)
 * makes the scan return false and the caller parses the whole file with
 * jansson, which reports the problem with its line and column. So the fast
 * path never changes what is accepted or what an error says.
 */
#include "tokenizer/tok_internal.h"

#include <string.h>

typedef struct {
    const char *p, *end;
    tok_arena *strs;
    tok_buf tmp;
} lexer;

static inline void ws(lexer *L) {
    while (L->p < L->end && (*L->p == ' ' || *L->p == '\n' || *L->p == '\r' || *L->p == '\t')) L->p++;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A string at L->p (which is the opening quote): s, n get its decoded bytes. */
static bool lex_str(lexer *L, const char **s, uint32_t *n) {
    if (L->p >= L->end || *L->p != '"') return false;
    const char *start = ++L->p;
    bool esc = false;
    while (L->p < L->end) {
        uint8_t c = (uint8_t)*L->p;
        if (c == '"') break;
        if (c == '\\') {
            esc = true;
            L->p += 2;
            continue;
        }
        if (c < 0x20) return false;
        if (c >= 0x80) {
            size_t l = tok_utf8_valid_len((const uint8_t *)L->p, (size_t)(L->end - L->p));
            if (!l) return false;
            L->p += l;
            continue;
        }
        L->p++;
    }
    if (L->p >= L->end) return false;
    const char *stop = L->p++;
    if (!esc) {
        *s = start;
        *n = (uint32_t)(stop - start);
        return true;
    }
    L->tmp.n = 0;
    for (const char *q = start; q < stop;) {
        if (*q != '\\') {
            const char *r = q;
            while (r < stop && *r != '\\') r++;
            if (tok_buf_put(&L->tmp, q, (size_t)(r - q))) return false;
            q = r;
            continue;
        }
        if (q + 1 >= stop) return false;
        char e = q[1], o;
        q += 2;
        switch (e) {
        case '"': o = '"'; break;
        case '\\': o = '\\'; break;
        case '/': o = '/'; break;
        case 'b': o = '\b'; break;
        case 'f': o = '\f'; break;
        case 'n': o = '\n'; break;
        case 'r': o = '\r'; break;
        case 't': o = '\t'; break;
        case 'u': {
            if (stop - q < 4) return false;
            int cp = hex4(q);
            q += 4;
            if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (stop - q < 6 || q[0] != '\\' || q[1] != 'u') return false;
                int lo = hex4(q + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                q += 6;
            }
            char u[4];
            if (tok_buf_put(&L->tmp, u, tok_utf8_encode((uint32_t)cp, u))) return false;
            continue;
        }
        default: return false;
        }
        if (tok_buf_putc(&L->tmp, o)) return false;
    }
    *s = tok_arena_dup(L->strs, L->tmp.p ? L->tmp.p : "", L->tmp.n);
    *n = (uint32_t)L->tmp.n;
    return *s != NULL;
}

static bool lex_int(lexer *L, int64_t *v) {
    const char *p = L->p;
    bool neg = false;
    if (p < L->end && *p == '-') { neg = true; p++; }
    if (p >= L->end || *p < '0' || *p > '9') return false;
    if (*p == '0' && p + 1 < L->end && p[1] >= '0' && p[1] <= '9') return false;
    int64_t x = 0;
    int digits = 0;
    while (p < L->end && *p >= '0' && *p <= '9') {
        if (++digits > 15) return false;
        x = x * 10 + (*p++ - '0');
    }
    if (p < L->end && (*p == '.' || *p == 'e' || *p == 'E')) return false;
    *v = neg ? -x : x;
    L->p = p;
    return true;
}

static bool skip_value(lexer *L, int depth) {
    if (depth > 512) return false;
    ws(L);
    if (L->p >= L->end) return false;
    char c = *L->p;
    if (c == '"') {
        const char *s;
        uint32_t n;
        return lex_str(L, &s, &n);
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        L->p++;
        ws(L);
        if (L->p < L->end && *L->p == close) { L->p++; return true; }
        for (;;) {
            if (c == '{') {
                const char *s;
                uint32_t n;
                ws(L);
                if (!lex_str(L, &s, &n)) return false;
                ws(L);
                if (L->p >= L->end || *L->p != ':') return false;
                L->p++;
            }
            if (!skip_value(L, depth + 1)) return false;
            ws(L);
            if (L->p >= L->end) return false;
            if (*L->p == ',') { L->p++; continue; }
            if (*L->p == close) { L->p++; return true; }
            return false;
        }
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(words[i]);
        if ((size_t)(L->end - L->p) >= l && !memcmp(L->p, words[i], l)) { L->p += l; return true; }
    }
    /* a number: the JSON grammar */
    const char *p = L->p;
    if (p < L->end && *p == '-') p++;
    if (p >= L->end || *p < '0' || *p > '9') return false;
    if (*p == '0') p++;
    else while (p < L->end && *p >= '0' && *p <= '9') p++;
    if (p < L->end && *p == '.') {
        p++;
        if (p >= L->end || *p < '0' || *p > '9') return false;
        while (p < L->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < L->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < L->end && (*p == '+' || *p == '-')) p++;
        if (p >= L->end || *p < '0' || *p > '9') return false;
        while (p < L->end && *p >= '0' && *p <= '9') p++;
    }
    L->p = p;
    return true;
}

static bool key_is(const char *s, uint32_t n, const char *k) { return n == strlen(k) && !memcmp(s, k, n); }

static bool scan_vocab(lexer *L, tok_fast_model *fm) {
    L->p++; /* '{' */
    ws(L);
    if (L->p < L->end && *L->p == '}') { L->p++; return true; }
    for (;;) {
        tok_vocab_ent e;
        ws(L);
        if (!lex_str(L, &e.s, &e.n)) return false;
        ws(L);
        if (L->p >= L->end || *L->p != ':') return false;
        L->p++;
        ws(L);
        if (!lex_int(L, &e.id)) return false;
        if (fm->n_vocab == fm->cap_vocab) {
            size_t c = fm->cap_vocab ? fm->cap_vocab * 2 : 4096;
            tok_vocab_ent *nv = rm_realloc(fm->vocab, c * sizeof *nv);
            if (!nv) return false;
            fm->vocab = nv;
            fm->cap_vocab = c;
        }
        fm->vocab[fm->n_vocab++] = e;
        ws(L);
        if (L->p >= L->end) return false;
        if (*L->p == ',') { L->p++; continue; }
        if (*L->p == '}') { L->p++; return true; }
        return false;
    }
}

static bool scan_merges(lexer *L, tok_fast_model *fm) {
    L->p++; /* '[' */
    ws(L);
    if (L->p < L->end && *L->p == ']') { L->p++; return true; }
    for (;;) {
        tok_merge_ent m;
        ws(L);
        if (L->p >= L->end) return false;
        if (*L->p == '"') {
            const char *s;
            uint32_t n;
            if (!lex_str(L, &s, &n)) return false;
            const char *sp = memchr(s, ' ', n);
            if (!sp) return false; /* jansson path names the bad entry */
            m.a = s;
            m.an = (uint32_t)(sp - s);
            m.b = sp + 1;
            const char *sp2 = memchr(sp + 1, ' ', n - m.an - 1);
            m.bn = sp2 ? (uint32_t)(sp2 - (sp + 1)) : n - m.an - 1;
        } else if (*L->p == '[') {
            L->p++;
            ws(L);
            if (!lex_str(L, &m.a, &m.an)) return false;
            ws(L);
            if (L->p >= L->end || *L->p != ',') return false;
            L->p++;
            ws(L);
            if (!lex_str(L, &m.b, &m.bn)) return false;
            ws(L);
            if (L->p >= L->end || *L->p != ']') return false;
            L->p++;
        } else {
            return false;
        }
        if (fm->n_merges == fm->cap_merges) {
            size_t c = fm->cap_merges ? fm->cap_merges * 2 : 4096;
            tok_merge_ent *nm = rm_realloc(fm->merges, c * sizeof *nm);
            if (!nm) return false;
            fm->merges = nm;
            fm->cap_merges = c;
        }
        fm->merges[fm->n_merges++] = m;
        ws(L);
        if (L->p >= L->end) return false;
        if (*L->p == ',') { L->p++; continue; }
        if (*L->p == ']') { L->p++; return true; }
        return false;
    }
}

/* Walk an object; call scan_model on the "model" member, skip the rest. */
static bool scan_object(lexer *L, tok_fast_model *fm, int level, const char **spans) {
    L->p++; /* '{' */
    bool seen_model = false, seen_vocab = false, seen_merges = false;
    ws(L);
    if (L->p < L->end && *L->p == '}') { L->p++; return true; }
    for (;;) {
        const char *k;
        uint32_t kn;
        ws(L);
        if (!lex_str(L, &k, &kn)) return false;
        ws(L);
        if (L->p >= L->end || *L->p != ':') return false;
        L->p++;
        ws(L);
        if (L->p >= L->end) return false;
        if (level == 0 && key_is(k, kn, "model")) {
            if (seen_model || *L->p != '{') return false;
            seen_model = true;
            if (!scan_object(L, fm, 1, spans)) return false;
        } else if (level == 1 && key_is(k, kn, "vocab") && *L->p == '{') {
            if (seen_vocab) return false;
            seen_vocab = true;
            spans[0] = L->p;
            if (!scan_vocab(L, fm)) return false;
            spans[1] = L->p;
        } else if (level == 1 && key_is(k, kn, "merges") && *L->p == '[') {
            if (seen_merges) return false;
            seen_merges = true;
            spans[2] = L->p;
            if (!scan_merges(L, fm)) return false;
            spans[3] = L->p;
        } else if (level == 1 && (key_is(k, kn, "vocab") || key_is(k, kn, "merges"))) {
            return false;
        } else if (!skip_value(L, level + 1)) {
            return false;
        }
        ws(L);
        if (L->p >= L->end) return false;
        if (*L->p == ',') { L->p++; continue; }
        if (*L->p == '}') { L->p++; return level != 1 || (seen_vocab && seen_merges); }
        return false;
    }
}

static size_t count_nl(const char *a, const char *b) {
    size_t n = 0;
    for (; a < b; a++) n += *a == '\n';
    return n;
}

bool tok_fast_scan(const char *json, size_t len, tok_fast_model *fm) {
    memset(fm, 0, sizeof *fm);
    lexer L = {json, json + len, &fm->strs, {0}};
    const char *spans[4] = {0};
    ws(&L);
    bool ok = L.p < L.end && *L.p == '{' && scan_object(&L, fm, 0, spans);
    if (ok) {
        ws(&L);
        ok = L.p == L.end && spans[0] && spans[2];
    }
    tok_buf_free(&L.tmp);
    if (!ok) { tok_fast_free(fm); return false; }
    /* the document with the two values replaced */
    int first = spans[0] < spans[2] ? 0 : 2, second = 2 - first;
    const char *cut[2][2] = {{spans[first], spans[first + 1]}, {spans[second], spans[second + 1]}};
    const char *repl[2] = {first == 0 ? "{}" : "[]", first == 0 ? "[]" : "{}"};
    tok_buf out = {0};
    const char *at = json;
    for (int i = 0; i < 2 && ok; i++) {
        ok = !tok_buf_put(&out, at, (size_t)(cut[i][0] - at)) && !tok_buf_put(&out, repl[i], 2);
        for (size_t k = count_nl(cut[i][0], cut[i][1]); k > 0 && ok; k--) ok = !tok_buf_putc(&out, '\n');
        at = cut[i][1];
    }
    if (ok) ok = !tok_buf_put(&out, at, (size_t)(json + len - at));
    if (!ok) { tok_buf_free(&out); tok_fast_free(fm); return false; }
    fm->reduced = out.p;
    fm->reduced_len = out.n;
    return true;
}

void tok_fast_free(tok_fast_model *fm) {
    rm_free(fm->vocab);
    rm_free(fm->merges);
    rm_free(fm->reduced);
    tok_arena_free(&fm->strs);
    memset(fm, 0, sizeof *fm);
}
