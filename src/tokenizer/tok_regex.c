/*
 * tok_regex.c — split regexes on PCRE2, read the way Hugging Face's
 * tokenizers reads them.
 *
 * tokenizer.json patterns run in the Rust library on Oniguruma (its default
 * regex engine on Linux, Unicode 16 tables). PCRE2 with PCRE2_UTF|PCRE2_UCP
 * reads them with its own tables and shorthands, so some are spelled out:
 *   \s  Oniguruma: Unicode White_Space (U+0009-U+000D, U+0020, U+0085,
 *       U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
 *       U+3000); PCRE2 UCP \s also takes U+180E. (JS's \s, which the port
 *       @lenml/tokenizers uses, lacks U+0085 and has U+FEFF.)
 *   \p{L}, \p{N}: PCRE2's, widened with the letters and numbers of
 *       Unicode 15.0-16.0 (LETTER_NEW, NUM_NEW below).
 *   \d  \p{Nd}; \w  letters, marks, numbers, connector punctuation (the
 *       families' patterns use neither).
 *   \uXXXX, \u{X}: escapes, rewritten as \x{...}.
 * The case-insensitive group (?i:'s|'t|...) is spelled out as classes.
 * \s, \p{L} and \p{N} were compared with the Rust library on every code
 * point; tests/cli/tokenizer_hf.sh repeats it on the ranges where they part.
 * Patterns are compiled with JIT where PCRE2 has it; memory comes from
 * rm_malloc through a PCRE2 general context.
 */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The code points Unicode 15.0 to 16.0 made letters (L) and numbers (N):
 * the Rust library's Oniguruma has them, Debian's PCRE2 10.42 (Unicode 14)
 * lacks them. Measured on every code point against the Rust library
 * (tests/cli/tokenizer_hf.sh sweeps their ranges); nothing is the other
 * way round. \p{L} and \p{N} are widened with them. */
#define LETTER_NEW \
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}" \
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}" \
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}" \
    "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}" \
    "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}" \
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}" \
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}" \
    "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define DIGIT_NEW \
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}" \
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"
#define NUM_NEW DIGIT_NEW "\\x{1D2C0}-\\x{1D2D3}" /* + the Kaktovik numerals (No) */
#define MARK_NEW \
    "\\x{897}\\x{CF3}\\x{ECE}\\x{10D69}-\\x{10D6D}\\x{10EFC}-\\x{10EFF}\\x{11241}\\x{113B8}-\\x{113C0}" \
    "\\x{113C2}\\x{113C5}\\x{113C7}-\\x{113CA}\\x{113CC}-\\x{113D0}\\x{113D2}\\x{113E1}-\\x{113E2}" \
    "\\x{11F00}-\\x{11F01}\\x{11F03}\\x{11F34}-\\x{11F3A}\\x{11F3E}-\\x{11F42}\\x{11F5A}\\x{13440}" \
    "\\x{13447}-\\x{13455}\\x{1611E}-\\x{1612F}\\x{1E08F}\\x{1E4EC}-\\x{1E4EF}\\x{1E5EE}-\\x{1E5EF}"
#define LETTER "\\p{L}" LETTER_NEW
#define NUM "\\p{N}" NUM_NEW
/* Oniguruma's \w: letters, marks, decimal and letter numbers, connector
 * punctuation, the Latin-1 superscripts and fractions, and the circled and
 * squared letters (Other_Alphabetic symbols); measured like the rest. */
#define WORD LETTER "\\p{M}" MARK_NEW "\\p{Nd}\\p{Nl}" DIGIT_NEW "\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}" \
    "\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}"
#define WS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

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

/* Rewrite a tokenizer.json pattern for PCRE2 (see the top of the file). */
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
        if ((!strncmp(p + i, "\\p{", 3) || (!in_class && !strncmp(p + i, "\\P{", 3))) &&
            (!strncmp(p + i + 2, "{N}", 3) || !strncmp(p + i + 2, "{L}", 3))) {
            const char *set = p[i + 3] == 'N' ? NUM : LETTER;
            if (!in_class) RM_TRY(tok_buf_put(out, p[i + 1] == 'p' ? "[" : "[^", p[i + 1] == 'p' ? 1 : 2));
            RM_TRY(tok_buf_put(out, set, strlen(set)));
            if (!in_class) RM_TRY(tok_buf_putc(out, ']'));
            i += 5;
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = in_class ? WS : "[" WS "]"; break;
            case 'S': rep = in_class ? NULL : "[^" WS "]"; break;
            case 'd': rep = in_class ? "\\p{Nd}" DIGIT_NEW : "[\\p{Nd}" DIGIT_NEW "]"; break;
            case 'D': rep = in_class ? NULL : "[^\\p{Nd}" DIGIT_NEW "]"; break;
            case 'w': rep = in_class ? WORD : "[" WORD "]"; break;
            case 'W': rep = in_class ? NULL : "[^" WORD "]"; break;
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
