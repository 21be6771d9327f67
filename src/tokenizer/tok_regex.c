/*
 * tok_regex.c — split regexes on PCRE2, read the way JavaScript reads them.
 *
 * tokenizer.json patterns are written for Rust's regex crate; the reference
 * (@lenml/tokenizers) runs them as JS RegExp(pattern, "gu") after replacing
 * the one construct JS lacks, the case-insensitive group (?i:'s|'t|...).
 * PCRE2 with PCRE2_UTF|PCRE2_UCP gives the Unicode properties (\p{L},
 * \p{N}, ...) from its own tables, but its shorthand classes differ from
 * JS's, so they are spelled out:
 *   \s  JS: WhiteSpace+LineTerminator (has U+FEFF, lacks U+0085, U+180E);
 *       PCRE2 UCP \s has U+0085 and U+180E and lacks U+FEFF.
 *   \d  JS (even with u): [0-9]; PCRE2 UCP: \p{Nd}.
 *   \w  JS: [A-Za-z0-9_]; PCRE2 UCP: Unicode letters and digits.
 *   \uXXXX, \u{X}: JS escapes, rewritten as \x{...}.
 * Patterns are compiled with JIT where PCRE2 has it; memory comes from
 * rm_malloc through a PCRE2 general context.
 */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define JS_WS "\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

static void *re_malloc(size_t n, void *u) { (void)u; return rm_malloc(n); }
static void re_free(void *p, void *u) { (void)u; rm_free(p); }

/* One PCRE2 memory context per process, made on first use (and retried if
 * that allocation failed); it is never freed. */
static pcre2_general_context *g_ctx;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

pcre2_general_context *tok_regex_ctx(void);
pcre2_general_context *tok_regex_ctx(void) {
    pcre2_general_context *c = __atomic_load_n(&g_ctx, __ATOMIC_ACQUIRE);
    if (c) return c;
    pthread_mutex_lock(&g_lock);
    if (!g_ctx) __atomic_store_n(&g_ctx, pcre2_general_context_create(re_malloc, re_free, NULL), __ATOMIC_RELEASE);
    c = g_ctx;
    pthread_mutex_unlock(&g_lock);
    return c;
}

/* Rewrite a JS-flavoured pattern for PCRE2 (see the top of the file). */
static rm_status translate(const char *p, tok_buf *out) {
    static const char *ci_from = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    static const char *ci_to = "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";
    size_t n = strlen(p);
    bool in_class = false;
    size_t i = 0;
    while (i < n) {
        if (!in_class && strncmp(p + i, ci_from, strlen(ci_from)) == 0) {
            RM_TRY(tok_buf_put(out, ci_to, strlen(ci_to)));
            i += strlen(ci_from);
            continue;
        }
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = in_class ? JS_WS : "[" JS_WS "]"; break;
            case 'S': rep = in_class ? NULL : "[^" JS_WS "]"; break;
            case 'd': rep = in_class ? "0-9" : "[0-9]"; break;
            case 'D': rep = in_class ? NULL : "[^0-9]"; break;
            case 'w': rep = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; break;
            case 'W': rep = in_class ? NULL : "[^A-Za-z0-9_]"; break;
            case '#': case '&': case '~': rep = e == '#' ? "\\#" : e == '&' ? "&" : "~"; break;
            default: break;
            }
            if (rep) {
                RM_TRY(tok_buf_put(out, rep, strlen(rep)));
                i += 2;
                continue;
            }
            if (e == 'u') { /* \uXXXX or \u{X...} */
                size_t j = i + 2, k = 0;
                char hex[8];
                if (j < n && p[j] == '{') {
                    j++;
                    while (j < n && p[j] != '}' && k < 7) hex[k++] = p[j++];
                    if (j < n && p[j] == '}') j++;
                } else {
                    while (j < n && k < 4 && strchr("0123456789abcdefABCDEF", p[j]) && p[j]) hex[k++] = p[j++];
                }
                hex[k] = 0;
                char tmp[24];
                int m = snprintf(tmp, sizeof tmp, "\\x{%s}", hex);
                RM_TRY(tok_buf_put(out, tmp, (size_t)m));
                i = j;
                continue;
            }
            RM_TRY(tok_buf_put(out, p + i, 2));
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            RM_TRY(tok_buf_putc(out, c));
            i++;
            if (i < n && p[i] == '^') { RM_TRY(tok_buf_putc(out, '^')); i++; }
            continue;
        }
        if (in_class && c == ']') in_class = false;
        RM_TRY(tok_buf_putc(out, c));
        i++;
    }
    return RM_OK;
}

rm_status tok_regex_compile(const char *pattern, tok_regex *re, const char *what) {
    memset(re, 0, sizeof *re);
    pcre2_general_context *gc = tok_regex_ctx();
    if (!gc) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory for PCRE2");
    tok_buf t = {0};
    rm_status st = translate(pattern, &t);
    if (st != RM_OK) { tok_buf_free(&t); return st; }
    pcre2_compile_context *cc = pcre2_compile_context_create(gc);
    if (!cc) { tok_buf_free(&t); return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory for PCRE2"); }
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    re->code = pcre2_compile((PCRE2_SPTR)t.p, t.n, PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, cc);
    pcre2_compile_context_free(cc);
    tok_buf_free(&t);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return rm_err(RAMOLE_ERR_FORMAT, "%s: bad regex \"%.200s\": %s (near offset %zu)", what, pattern,
                      (const char *)msg, (size_t)erroff);
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return RM_OK;
}

void tok_regex_free(tok_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}
