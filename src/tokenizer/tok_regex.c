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
 *   \p{L}, \p{N}, \d (\p{Nd}), \w (Oniguruma's word class): PCRE2's
 *       tables, widened with what Unicode 15.0-16.0 added (see below).
 *   \uXXXX, \u{X}: escapes, rewritten as \x{...}.
 * The case-insensitive group (?i:'s|'t|...) is spelled out as classes.
 * Every class was compared with the Rust library on every code point;
 * tests/cli/tokenizer_hf.sh repeats it on planes 0-3 in make test.
 * Patterns are compiled with JIT where PCRE2 has it; memory comes from
 * rm_malloc through a PCRE2 general context.
 */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The code points Unicode 15.0 to 16.0 made letters (L), decimal digits
 * (Nd), other numbers (the Kaktovik numerals) and marks (M): the Rust
 * library's Oniguruma has them, Debian's PCRE2 10.42 (Unicode 14) lacks
 * them. Measured on every code point against the Rust library
 * (tests/cli/tokenizer_hf.sh repeats it on planes 0-3); nothing is the other
 * way round. A pattern that uses \p{L}, \p{N}, \d or \w is compiled twice:
 * as written (fast) and widened with these ranges, which only texts holding
 * one of them need (tok_regex_code). */
static const uint32_t new_letters[][2] = {
    {0x1C89, 0x1C8A}, {0xA7CB, 0xA7CD}, {0xA7DA, 0xA7DC}, {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
    {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x1123F, 0x11240}, {0x11380, 0x11389}, {0x1138B, 0x1138B},
    {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3},
    {0x11BC0, 0x11BE0}, {0x11F02, 0x11F02}, {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x1342F, 0x1342F},
    {0x13441, 0x13446}, {0x13460, 0x143FA}, {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E4D0, 0x1E4EB},
    {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x2B739, 0x2B739}, {0x2EBF0, 0x2EE5D}, {0x31350, 0x323AF}
};
static const uint32_t new_digits[][2] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x11F50, 0x11F59}, {0x16130, 0x16139},
    {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA}
};
static const uint32_t new_numbers[][2] = {{0x1D2C0, 0x1D2D3}}; /* Kaktovik (No) */
static const uint32_t new_marks[][2] = {
    {0x897, 0x897}, {0xCF3, 0xCF3}, {0xECE, 0xECE}, {0x10D69, 0x10D6D}, {0x10EFC, 0x10EFF},
    {0x11241, 0x11241}, {0x113B8, 0x113C0}, {0x113C2, 0x113C2}, {0x113C5, 0x113C5}, {0x113C7, 0x113CA},
    {0x113CC, 0x113D0}, {0x113D2, 0x113D2}, {0x113E1, 0x113E2}, {0x11F00, 0x11F01}, {0x11F03, 0x11F03},
    {0x11F34, 0x11F3A}, {0x11F3E, 0x11F42}, {0x11F5A, 0x11F5A}, {0x13440, 0x13440}, {0x13447, 0x13455},
    {0x1611E, 0x1612F}, {0x1E08F, 0x1E08F}, {0x1E4EC, 0x1E4EF}, {0x1E5EE, 0x1E5EF}
};

#define N_RANGES(t) (sizeof t / sizeof t[0])

/* Oniguruma's \w beyond letters, marks, decimal and letter numbers and
 * connector punctuation: the Latin-1 superscripts and fractions, and the
 * circled and squared letters (Other_Alphabetic symbols). */
#define WORD_EXTRA "\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}"
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

/* All the new ranges, sorted and merged, for tok_regex_code's scan. */
static uint32_t all_new[128][2];
static size_t n_all_new;
static pthread_once_t all_new_once = PTHREAD_ONCE_INIT;

static void all_new_add(const uint32_t (*t)[2], size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t k = n_all_new++;
        while (k > 0 && all_new[k - 1][0] > t[i][0]) { all_new[k][0] = all_new[k - 1][0]; all_new[k][1] = all_new[k - 1][1]; k--; }
        all_new[k][0] = t[i][0];
        all_new[k][1] = t[i][1];
    }
}

static void all_new_init(void) {
    all_new_add(new_letters, N_RANGES(new_letters));
    all_new_add(new_digits, N_RANGES(new_digits));
    all_new_add(new_numbers, N_RANGES(new_numbers));
    all_new_add(new_marks, N_RANGES(new_marks));
}

static bool is_new_cp(uint32_t cp) {
    size_t lo = 0, hi = n_all_new;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < all_new[mid][0]) hi = mid;
        else if (cp > all_new[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

const pcre2_code *tok_regex_code(const tok_regex *re, const char *s, size_t n) {
    if (!re->wide) return re->code;
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0xE0) { i += u[i] < 0x80 ? 1 : 2; continue; } /* below U+0800: none is new */
        size_t l;
        uint32_t cp = tok_utf8_decode(u + i, &l);
        if (cp >= 0x897 && is_new_cp(cp)) return re->wide;
        i += l;
    }
    return re->code;
}

static rm_status put_ranges(tok_buf *out, const uint32_t (*t)[2], size_t n) {
    for (size_t i = 0; i < n; i++) {
        char tmp[40];
        int m = t[i][0] == t[i][1] ? snprintf(tmp, sizeof tmp, "\\x{%X}", t[i][0])
                                   : snprintf(tmp, sizeof tmp, "\\x{%X}-\\x{%X}", t[i][0], t[i][1]);
        RM_TRY(tok_buf_put(out, tmp, (size_t)m));
    }
    return RM_OK;
}

/* The members of class 'L', 'N', 'd' or 'w' (inside brackets), widened with
 * the new ranges when wide; *uses_new notes that widening matters. */
static rm_status put_class(tok_buf *out, char kind, bool wide, bool *uses_new) {
    static const char *base[] = {"\\p{L}", "\\p{N}", "\\p{Nd}", "\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}" WORD_EXTRA};
    int k = kind == 'L' ? 0 : kind == 'N' ? 1 : kind == 'd' ? 2 : 3;
    *uses_new = true;
    RM_TRY(tok_buf_put(out, base[k], strlen(base[k])));
    if (!wide) return RM_OK;
    if (k == 0 || k == 3) RM_TRY(put_ranges(out, new_letters, N_RANGES(new_letters)));
    if (k != 0) RM_TRY(put_ranges(out, new_digits, N_RANGES(new_digits)));
    if (k == 1) RM_TRY(put_ranges(out, new_numbers, N_RANGES(new_numbers)));
    if (k == 3) RM_TRY(put_ranges(out, new_marks, N_RANGES(new_marks)));
    return RM_OK;
}

/* Rewrite a tokenizer.json pattern for PCRE2 (see the top of the file). */
static rm_status translate(const char *p, bool wide, tok_buf *out, bool *uses_new) {
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
        bool prop = !strncmp(p + i, "\\p{", 3) || !strncmp(p + i, "\\P{", 3);
        bool dw = c == '\\' && i + 1 < n && strchr("dDwW", p[i + 1]);
        if ((prop && (!strncmp(p + i + 2, "{N}", 3) || !strncmp(p + i + 2, "{L}", 3))) || dw) {
            bool neg = p[i + 1] == 'P' || p[i + 1] == 'D' || p[i + 1] == 'W';
            char kind = prop ? p[i + 3] : (char)(p[i + 1] | 0x20);
            if (in_class && neg) { /* a negated class inside a class: PCRE2's own */
                RM_TRY(tok_buf_put(out, p + i, prop ? 5 : 2));
            } else {
                if (!in_class) RM_TRY(tok_buf_put(out, neg ? "[^" : "[", neg ? 2 : 1));
                RM_TRY(put_class(out, kind, wide, uses_new));
                if (!in_class) RM_TRY(tok_buf_putc(out, ']'));
            }
            i += prop ? 5 : 2;
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = in_class ? WS : "[" WS "]"; break;
            case 'S': rep = in_class ? NULL : "[^" WS "]"; break;
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

/* Compile pattern, translated plainly or widened, into *code. */
static rm_status compile_one(const char *pattern, bool wide, pcre2_code **code, bool *uses_new, const char *what) {
    *code = NULL;
    tok_buf t = {0};
    rm_status st = translate(pattern, wide, &t, uses_new);
    if (st != RM_OK) { tok_buf_free(&t); return st; }
    pcre2_compile_context *cc = pcre2_compile_context_create(tok_regex_ctx());
    if (!cc) { tok_buf_free(&t); return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory for PCRE2"); }
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    *code = pcre2_compile((PCRE2_SPTR)t.p, t.n, PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, cc);
    pcre2_compile_context_free(cc);
    tok_buf_free(&t);
    if (!*code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return rm_err(RAMOLE_ERR_FORMAT, "%s: bad regex \"%.200s\": %s (near offset %zu)", what, pattern,
                      (const char *)msg, (size_t)erroff);
    }
    pcre2_jit_compile(*code, PCRE2_JIT_COMPLETE); /* without JIT PCRE2 interprets */
    return RM_OK;
}

rm_status tok_regex_compile(const char *pattern, tok_regex *re, const char *what) {
    memset(re, 0, sizeof *re);
    if (!tok_regex_ctx()) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory for PCRE2");
    pthread_once(&all_new_once, all_new_init);
    bool uses_new = false;
    RM_TRY(compile_one(pattern, false, &re->code, &uses_new, what));
    if (!uses_new) return RM_OK;
    rm_status st = compile_one(pattern, true, &re->wide, &uses_new, what);
    if (st) tok_regex_free(re);
    return st;
}

void tok_regex_free(tok_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    if (re->wide) pcre2_code_free(re->wide);
    re->code = re->wide = NULL;
}
