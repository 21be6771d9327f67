/*
 * tok_load.c — build an rm_tok from tokenizer.json (+ tokenizer_config.json)
 * or from GPT-2's encoder.json + vocab.bpe.
 *
 * The file is parsed with jansson; every field is type-checked and every
 * failure names the file, the JSON path and the problem ("tokenizer.json:
 * model.merges[12]: expected "a b" or ["a","b"]"). Unknown component types
 * are ERR_UNSUPPORTED with the type named, never ignored, because a silently
 * skipped normalizer gives wrong ids without any sign.
 *
 * Semantics follow Hugging Face's tokenizers (its Rust core, the reference
 * the golden files come from): regex classes as its Oniguruma reads them
 * (see tok_regex.c), Split's five delimiter behaviours, Digits on
 * char::is_numeric, Strip and lstrip/rstrip on Unicode White_Space, the
 * Metaspace decoder dropping every replacement of the first token. Known
 * differences: added tokens are matched whatever their "normalized"/
 * "single_word" flags say (the families' added tokens are not normalized);
 * clean_up_tokenization_spaces defaults to true when tokenizer_config.json
 * does not say (transformers' old default); merges whose parts or result
 * are not in the vocabulary are dropped (they could only yield unknown
 * tokens); decoding an id that is not a token is an error.
 */
#include "tokenizer/tok_internal.h"

#include "formats/gguf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS (1 << 24)

rm_tok *tok_new(const char *name) {
    rm_tok *t = rm_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->name = rm_strdup(name ? name : "tokenizer.json");
    if (!t->name) { rm_free(t); return NULL; }
    t->unk_id = t->bos_id = t->eos_id = t->pad_id = t->cfg_unk_id = -1;
    t->cleanup_spaces = true;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

static void free_norms(rm_tok *t) {
    for (size_t i = 0; i < t->n_norm; i++) {
        rm_free(t->norm[i].a);
        rm_free(t->norm[i].b);
        tok_regex_free(&t->norm[i].re);
    }
    rm_free(t->norm);
}

void rm_tok_free(rm_tok *t) {
    if (!t) return;
    tok_arena_free(&t->strings);
    rm_free(t->piece);
    rm_free(t->piece_len);
    rm_free(t->str);
    rm_free(t->bytes);
    rm_free(t->bytes_len);
    rm_free(t->flags);
    tok_strmap_free(&t->map);
    rm_free(t->merges);
    rm_free(t->merge_list);
    rm_free(t->end_of_word_suffix);
    free_norms(t);
    for (size_t i = 0; i < t->n_pre; i++) {
        tok_regex_free(&t->pre[i].re);
        rm_free(t->pre[i].rep);
    }
    rm_free(t->pre);
    for (size_t i = 0; i < t->n_dec; i++) {
        rm_free(t->dec[i].a);
        rm_free(t->dec[i].b);
    }
    rm_free(t->dec);
    rm_free(t->tmpl_single);
    for (size_t i = 0; i < t->n_added; i++) rm_free(t->added[i].content);
    rm_free(t->added);
    tok_build_trie_free(t);
    rm_free(t->chat_template);
    rm_free(t->pipeline_json);
    rm_free(t->name);
    rm_free(t);
}

/* ---- small JSON helpers -------------------------------------------------- */

#define NOMEM() rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name)

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Optional boolean field; absent or null gives def. */
static rm_status get_bool(const rm_tok *t, const json_t *o, const char *key, bool def, bool *out, const char *where) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return RM_OK; }
    if (!json_is_boolean(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s.%s: expected a boolean, got %s", t->name, where, key, jtype(v));
    *out = json_is_true(v);
    return RM_OK;
}

/* Optional string field (NULL if absent/null). */
static rm_status get_str(const rm_tok *t, const json_t *o, const char *key, const char **out, size_t *len,
                         const char *where) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || json_is_null(v)) return RM_OK;
    if (!json_is_string(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s.%s: expected a string, got %s", t->name, where, key, jtype(v));
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return RM_OK;
}

static char *dupn(const char *s, size_t n) { return rm_strndup(s, n); }

/* "type" of a component object. */
static rm_status get_type(const rm_tok *t, const json_t *o, const char *where, const char **type) {
    if (!json_is_object(o))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: expected an object, got %s", t->name, where, jtype(o));
    json_t *v = json_object_get(o, "type");
    if (!json_is_string(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: missing \"type\"", t->name, where);
    *type = json_string_value(v);
    return RM_OK;
}

/* A {"String": s} or {"Regex": r} pattern. */
static rm_status get_pattern(const rm_tok *t, const json_t *o, const char *where, const char **s, size_t *len,
                             bool *is_regex) {
    json_t *p = json_object_get(o, "pattern");
    if (!json_is_object(p)) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: missing \"pattern\" object", t->name, where);
    json_t *v;
    if ((v = json_object_get(p, "String")) && json_is_string(v)) *is_regex = false;
    else if ((v = json_object_get(p, "Regex")) && json_is_string(v)) *is_regex = true;
    else return rm_err(RAMOLE_ERR_FORMAT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", t->name, where);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return RM_OK;
}

/* Escape a literal for PCRE2. */
static char *regex_quote(const char *s, size_t n) {
    tok_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\^$.|?*+()[]{}/-", s[i]) && s[i]) { if (tok_buf_putc(&b, '\\')) goto fail; }
        if (tok_buf_putc(&b, s[i])) goto fail;
    }
    if (tok_buf_reserve(&b, 1)) goto fail;
    return b.p;
fail:
    tok_buf_free(&b);
    return NULL;
}

/* ---- vocabulary -------------------------------------------------------- */

/* Convert a byte-level string ("Ġthe") to raw bytes; false if some char is
 * outside the byte alphabet (the token is then kept as its UTF-8). */
static bool bytelevel_to_raw(const char *s, size_t n, char *out, size_t *outn) {
    size_t i = 0, k = 0;
    while (i < n) {
        size_t l = tok_utf8_valid_len((const uint8_t *)s + i, n - i);
        if (!l) return false;
        size_t dl;
        uint32_t cp = tok_utf8_decode((const uint8_t *)s + i, &dl);
        int b = tok_cp_to_byte(cp);
        if (b < 0) return false;
        out[k++] = (char)b;
        i += l;
    }
    *outn = k;
    return true;
}

static rm_status alloc_ids(rm_tok *t, int32_t n) {
    t->n_ids = n;
    t->str = rm_calloc((size_t)n, sizeof *t->str);
    t->bytes = rm_calloc((size_t)n, sizeof *t->bytes);
    t->bytes_len = rm_calloc((size_t)n, sizeof *t->bytes_len);
    t->flags = rm_calloc((size_t)n, 1);
    if (!t->str || !t->bytes || !t->bytes_len || !t->flags) return NOMEM();
    return tok_strmap_init(&t->map, (size_t)n);
}

/* Set id's string (as in the file) and its working bytes. */
rm_status tok_set_token(rm_tok *t, int32_t id, const char *s, size_t n) {
    /* (a re-set token leaves its old strings in the arena: only added
     * tokens that repeat a vocab entry do that) */
    t->str[id] = tok_arena_dup(&t->strings, s, n);
    if (!t->str[id]) return NOMEM();
    t->bytes[id] = t->str[id];
    t->bytes_len[id] = (uint32_t)n;
    if (t->byte_level && !(t->flags[id] & TOKF_ADDED)) {
        char stackbuf[256];
        char *raw = n < sizeof stackbuf ? stackbuf : rm_malloc(n + 1);
        if (!raw) return NOMEM();
        size_t rn;
        if (bytelevel_to_raw(s, n, raw, &rn) && (rn != n || memcmp(raw, s, n))) {
            t->bytes[id] = tok_arena_dup(&t->strings, raw, rn);
            t->bytes_len[id] = (uint32_t)rn;
        }
        if (raw != stackbuf) rm_free(raw);
        if (!t->bytes[id]) return NOMEM();
    }
    t->flags[id] |= TOKF_USED;
    return RM_OK;
}

/* ---- components --------------------------------------------------------- */

static rm_status parse_normalizer(rm_tok *t, const json_t *o, const char *where) {
    if (!o || json_is_null(o)) return RM_OK;
    const char *type;
    RM_TRY(get_type(t, o, where, &type));
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr)) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Sequence without \"normalizers\" array", t->name, where);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            char w[128];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            RM_TRY(parse_normalizer(t, v, w));
        }
        return RM_OK;
    }
    tok_norm nm;
    memset(&nm, 0, sizeof nm);
    if (!strcmp(type, "NFC")) nm.kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) nm.kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) nm.kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nm.kind = NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) nm.kind = NORM_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        nm.kind = NORM_STRIP;
        RM_TRY(get_bool(t, o, "strip_left", false, &nm.left, where));
        RM_TRY(get_bool(t, o, "strip_right", false, &nm.right, where));
    } else if (!strcmp(type, "Prepend")) {
        const char *s;
        size_t n;
        nm.kind = NORM_PREPEND;
        RM_TRY(get_str(t, o, "prepend", &s, &n, where));
        if (!s) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Prepend without \"prepend\"", t->name, where);
        if (!(nm.a = dupn(s, n))) return NOMEM();
        nm.alen = n;
    } else if (!strcmp(type, "Replace")) {
        const char *s, *c;
        size_t n, cn;
        bool is_re;
        nm.kind = NORM_REPLACE;
        RM_TRY(get_pattern(t, o, where, &s, &n, &is_re));
        RM_TRY(get_str(t, o, "content", &c, &cn, where));
        if (!c) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Replace without \"content\"", t->name, where);
        if (!(nm.b = dupn(c, cn))) return NOMEM();
        nm.blen = cn;
        if (is_re) {
            rm_status st = tok_regex_compile(s, &nm.re, where);
            if (st) { rm_free(nm.b); return st; }
        } else {
            if (!(nm.a = dupn(s, n))) { rm_free(nm.b); return NOMEM(); }
            nm.alen = n;
        }
    } else {
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: %s: unknown normalizer type \"%s\"", t->name, where, type);
    }
    tok_norm *nn = rm_realloc(t->norm, (t->n_norm + 1) * sizeof *nn);
    if (!nn) { rm_free(nm.a); rm_free(nm.b); tok_regex_free(&nm.re); return NOMEM(); }
    t->norm = nn;
    t->norm[t->n_norm++] = nm;
    return RM_OK;
}

/* GPT-2's split pattern, which the ByteLevel pre-tokenizer runs. */
static const char *GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static rm_status add_pre(rm_tok *t, tok_pre *p) {
    tok_pre *np = rm_realloc(t->pre, (t->n_pre + 1) * sizeof *np);
    if (!np) { tok_regex_free(&p->re); rm_free(p->rep); return NOMEM(); }
    t->pre = np;
    t->pre[t->n_pre++] = *p;
    return RM_OK;
}

static rm_status parse_pretok(rm_tok *t, const json_t *o, const char *where) {
    if (!o || json_is_null(o)) return RM_OK;
    const char *type;
    RM_TRY(get_type(t, o, where, &type));
    tok_pre p;
    memset(&p, 0, sizeof p);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr)) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Sequence without \"pretokenizers\" array", t->name, where);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            char w[128];
            snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
            RM_TRY(parse_pretok(t, v, w));
        }
        return RM_OK;
    } else if (!strcmp(type, "ByteLevel")) {
        p.kind = PRE_BYTELEVEL;
        RM_TRY(get_bool(t, o, "add_prefix_space", false, &p.add_prefix_space, where));
        RM_TRY(get_bool(t, o, "use_regex", true, &p.use_regex, where));
        if (p.use_regex) RM_TRY(tok_regex_compile(GPT2_PATTERN, &p.re, where));
        t->byte_level = true;
    } else if (!strcmp(type, "Split")) {
        const char *s, *beh;
        size_t n;
        bool is_re;
        p.kind = PRE_SPLIT;
        RM_TRY(get_pattern(t, o, where, &s, &n, &is_re));
        RM_TRY(get_bool(t, o, "invert", false, &p.invert, where));
        RM_TRY(get_str(t, o, "behavior", &beh, NULL, where));
        static const char *const behaviors[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                                                 "Contiguous"};
        p.behavior = SPLIT_ISOLATED;
        bool known = !beh;
        for (int k = 0; beh && k < 5; k++)
            if (!strcmp(beh, behaviors[k])) p.behavior = (split_behavior)k, known = true;
        if (!known) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: unknown split behavior \"%s\"", t->name, where, beh);
        if (is_re) {
            RM_TRY(tok_regex_compile(s, &p.re, where));
        } else {
            char *q = regex_quote(s, n);
            if (!q) return NOMEM();
            rm_status st = tok_regex_compile(q, &p.re, where);
            rm_free(q);
            RM_TRY(st);
        }
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep, *scheme;
        size_t n;
        bool split;
        p.kind = PRE_METASPACE;
        RM_TRY(get_str(t, o, "replacement", &rep, &n, where));
        if (!rep) { rep = "\xe2\x96\x81"; n = 3; }
        RM_TRY(get_str(t, o, "prepend_scheme", &scheme, NULL, where));
        p.prepend = !scheme || !strcmp(scheme, "always") ? 0 : !strcmp(scheme, "first") ? 1 : 2;
        RM_TRY(get_bool(t, o, "add_prefix_space", p.prepend != 2, &p.add_prefix_space, where));
        RM_TRY(get_bool(t, o, "split", true, &split, where));
        p.invert = split; /* reused: split on the replacement */
        if (!(p.rep = dupn(rep, n))) return NOMEM();
        p.replen = n;
    } else if (!strcmp(type, "Digits")) {
        p.kind = PRE_DIGITS;
        RM_TRY(get_bool(t, o, "individual_digits", false, &p.individual, where));
        /* the Rust library splits on char::is_numeric: general category N */
        RM_TRY(tok_regex_compile(p.individual ? "\\P{N}+|\\p{N}" : "\\P{N}+|\\p{N}+", &p.re, where));
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p.kind = PRE_WSSPLIT;
        RM_TRY(tok_regex_compile("\\S+", &p.re, where));
    } else {
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: %s: unknown pre-tokenizer type \"%s\"", t->name, where, type);
    }
    return add_pre(t, &p);
}

static rm_status add_dec(rm_tok *t, tok_dec *d) {
    tok_dec *nd = rm_realloc(t->dec, (t->n_dec + 1) * sizeof *nd);
    if (!nd) { rm_free(d->a); rm_free(d->b); return NOMEM(); }
    t->dec = nd;
    t->dec[t->n_dec++] = *d;
    return RM_OK;
}

static rm_status parse_decoder(rm_tok *t, const json_t *o, const char *where) {
    if (!o || json_is_null(o)) return RM_OK;
    const char *type;
    RM_TRY(get_type(t, o, where, &type));
    tok_dec d;
    memset(&d, 0, sizeof d);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "decoders");
        if (!json_is_array(arr)) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Sequence without \"decoders\" array", t->name, where);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            char w[128];
            snprintf(w, sizeof w, "%s.decoders[%zu]", where, i);
            RM_TRY(parse_decoder(t, v, w));
        }
        return RM_OK;
    } else if (!strcmp(type, "ByteLevel")) {
        d.kind = DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d.kind = DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        const char *s, *c;
        size_t n, cn;
        bool is_re;
        d.kind = DEC_REPLACE;
        RM_TRY(get_pattern(t, o, where, &s, &n, &is_re));
        if (is_re) return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: %s: Replace decoder with a Regex pattern", t->name, where);
        RM_TRY(get_str(t, o, "content", &c, &cn, where));
        if (!c || n == 0) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Replace needs a non-empty pattern and a content", t->name, where);
        d.a = dupn(s, n);
        d.b = dupn(c, cn);
        d.alen = n;
        d.blen = cn;
        if (!d.a || !d.b) { rm_free(d.a); rm_free(d.b); return NOMEM(); }
    } else if (!strcmp(type, "Strip")) {
        const char *c;
        size_t cn;
        d.kind = DEC_STRIP;
        RM_TRY(get_str(t, o, "content", &c, &cn, where));
        json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        d.start = json_is_integer(a) ? (int)json_integer_value(a) : 0;
        d.stop = json_is_integer(b) ? (int)json_integer_value(b) : 0;
        if (!c) { c = " "; cn = 1; }
        if (!(d.a = dupn(c, cn))) return NOMEM();
        d.alen = cn;
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep, *scheme;
        size_t n;
        d.kind = DEC_METASPACE;
        RM_TRY(get_str(t, o, "replacement", &rep, &n, where));
        if (!rep) { rep = "\xe2\x96\x81"; n = 3; }
        RM_TRY(get_str(t, o, "prepend_scheme", &scheme, NULL, where));
        /* prepend_scheme "never" or the legacy add_prefix_space false turn the prefix off */
        RM_TRY(get_bool(t, o, "add_prefix_space", true, &d.add_prefix_space, where));
        d.add_prefix_space = d.add_prefix_space && (!scheme || strcmp(scheme, "never"));
        if (!(d.a = dupn(rep, n))) return NOMEM();
        d.alen = n;
    } else if (!strcmp(type, "BPEDecoder")) {
        const char *s;
        size_t n;
        d.kind = DEC_BPE;
        RM_TRY(get_str(t, o, "suffix", &s, &n, where));
        if (!s) { s = "</w>"; n = 4; }
        if (!(d.a = dupn(s, n))) return NOMEM();
        d.alen = n;
    } else {
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: %s: unknown decoder type \"%s\"", t->name, where, type);
    }
    return add_dec(t, &d);
}

/* Resolve a template's special token (by name) to ids. */
static rm_status tmpl_push(rm_tok *t, const json_t *special_tokens, const char *name, const char *where) {
    json_t *st = special_tokens ? json_object_get(special_tokens, name) : NULL;
    json_t *ids = st ? json_object_get(st, "ids") : NULL;
    int32_t one;
    const int32_t *list = &one;
    size_t n = 1;
    int32_t buf[16];
    if (json_is_array(ids) && json_array_size(ids) > 0 && json_array_size(ids) <= 16) {
        n = json_array_size(ids);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(ids, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= t->n_ids)
                return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: special token \"%s\": id out of range", t->name, where, name);
            buf[i] = (int32_t)json_integer_value(v);
        }
        list = buf;
    } else {
        one = tok_strmap_get(t, name, strlen(name));
        if (one < 0) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: unknown special token \"%s\"", t->name, where, name);
    }
    int32_t *nt = rm_realloc(t->tmpl_single, (t->n_tmpl_single + n) * sizeof *nt);
    if (!nt) return NOMEM();
    t->tmpl_single = nt;
    for (size_t i = 0; i < n; i++) t->tmpl_single[t->n_tmpl_single++] = list[i];
    return RM_OK;
}

static rm_status tmpl_seq(rm_tok *t) {
    int32_t *nt = rm_realloc(t->tmpl_single, (t->n_tmpl_single + 1) * sizeof *nt);
    if (!nt) return NOMEM();
    t->tmpl_single = nt;
    t->tmpl_single[t->n_tmpl_single++] = -1;
    return RM_OK;
}

static rm_status parse_post(rm_tok *t, const json_t *o, const char *where) {
    if (!o || json_is_null(o)) return RM_OK;
    const char *type;
    RM_TRY(get_type(t, o, where, &type));
    if (!strcmp(type, "ByteLevel")) return RM_OK;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr)) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: Sequence without \"processors\" array", t->name, where);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            char w[128];
            snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
            RM_TRY(parse_post(t, v, w));
        }
        return RM_OK;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
        if (!json_is_array(single)) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: TemplateProcessing without \"single\"", t->name, where);
        t->n_tmpl_single = 0;
        t->has_template = true;
        size_t i;
        json_t *v;
        json_array_foreach(single, i, v) {
            json_t *s = json_object_get(v, "SpecialToken"), *q = json_object_get(v, "Sequence");
            if (s && json_is_string(json_object_get(s, "id"))) {
                RM_TRY(tmpl_push(t, sp, json_string_value(json_object_get(s, "id")), where));
            } else if (q) {
                const char *id = json_string_value(json_object_get(q, "id"));
                if (id && !strcmp(id, "A")) RM_TRY(tmpl_seq(t));
            } else {
                return rm_err(RAMOLE_ERR_FORMAT, "%s: %s.single[%zu]: expected SpecialToken or Sequence", t->name, where, i);
            }
        }
        return RM_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
        const char *c = json_string_value(json_array_get(cls, 0)), *s = json_string_value(json_array_get(sep, 0));
        if (!c || !s) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: %s needs cls and sep", t->name, where, type);
        t->n_tmpl_single = 0;
        t->has_template = true;
        RM_TRY(tmpl_push(t, NULL, c, where));
        RM_TRY(tmpl_seq(t));
        RM_TRY(tmpl_push(t, NULL, s, where));
        return RM_OK;
    }
    return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: %s: unknown post-processor type \"%s\"", t->name, where, type);
}

/* ---- model --------------------------------------------------------------- */

static rm_status parse_added(rm_tok *t, const json_t *arr) {
    if (!arr || json_is_null(arr)) return RM_OK;
    if (!json_is_array(arr)) return rm_err(RAMOLE_ERR_FORMAT, "%s: added_tokens: expected an array", t->name);
    size_t n = json_array_size(arr);
    t->added = rm_calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return NOMEM();
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char w[64];
        snprintf(w, sizeof w, "added_tokens[%zu]", i);
        json_t *id = json_object_get(v, "id");
        const char *c;
        size_t cn;
        if (!json_is_object(v) || !json_is_integer(id))
            return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: expected an object with an integer \"id\"", t->name, w);
        RM_TRY(get_str(t, v, "content", &c, &cn, w));
        if (!c || cn == 0) return rm_err(RAMOLE_ERR_FORMAT, "%s: %s: missing or empty \"content\"", t->name, w);
        json_int_t x = json_integer_value(id);
        if (x < 0 || x >= t->n_ids)
            return rm_err(RAMOLE_ERR_RANGE, "%s: %s: id %lld out of range", t->name, w, (long long)x);
        tok_added *a = &t->added[t->n_added];
        a->id = (int32_t)x;
        RM_TRY(get_bool(t, v, "special", false, &a->special, w));
        RM_TRY(get_bool(t, v, "lstrip", false, &a->lstrip, w));
        RM_TRY(get_bool(t, v, "rstrip", false, &a->rstrip, w));
        if (!(a->content = dupn(c, cn))) return NOMEM();
        a->len = cn;
        t->n_added++;
        t->flags[a->id] |= TOKF_ADDED | (a->special ? TOKF_SPECIAL : 0);
        RM_TRY(tok_set_token(t, a->id, c, cn));
        RM_TRY(tok_strmap_put(t, a->id, true));
    }
    return RM_OK;
}

/* Split "a b" (old merges format) or take ["a","b"]. */
static rm_status merge_parts(rm_tok *t, const json_t *v, size_t i, const char **a, size_t *an, const char **b,
                             size_t *bn) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        const char *sp = memchr(s, ' ', n);
        if (!sp) return rm_err(RAMOLE_ERR_FORMAT, "%s: model.merges[%zu]: expected \"a b\", got \"%.60s\"", t->name, i, s);
        *a = s;
        *an = (size_t)(sp - s);
        *b = sp + 1;
        const char *sp2 = memchr(sp + 1, ' ', n - *an - 1);
        *bn = sp2 ? (size_t)(sp2 - (sp + 1)) : n - *an - 1;
        return RM_OK;
    }
    if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
        json_is_string(json_array_get(v, 1))) {
        *a = json_string_value(json_array_get(v, 0));
        *an = json_string_length(json_array_get(v, 0));
        *b = json_string_value(json_array_get(v, 1));
        *bn = json_string_length(json_array_get(v, 1));
        return RM_OK;
    }
    return rm_err(RAMOLE_ERR_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", t->name, i);
}

/* Id of a merge part given in file form. */
static int32_t lookup_file_form(rm_tok *t, const char *s, size_t n, char *tmp) {
    if (t->byte_level) {
        size_t rn;
        if (bytelevel_to_raw(s, n, tmp, &rn)) return tok_strmap_get(t, tmp, rn);
    }
    return tok_strmap_get(t, s, n);
}

static rm_status parse_model(rm_tok *t, const json_t *m, const json_t *added, const tok_fast_model *fm, bool *retry) {
    if (!json_is_object(m)) return rm_err(RAMOLE_ERR_FORMAT, "%s: missing \"model\" object", t->name);
    json_t *type = json_object_get(m, "type");
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (type && !json_is_string(type)) return rm_err(RAMOLE_ERR_FORMAT, "%s: model.type: expected a string", t->name);
    const char *ty = type ? json_string_value(type) : (merges ? "BPE" : "?");
    if (strcmp(ty, "BPE") != 0)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unknown model type \"%s\" (supported: BPE)", t->name, ty);
    if (!json_is_object(vocab)) return rm_err(RAMOLE_ERR_FORMAT, "%s: model.vocab: expected an object", t->name);
    if (!json_is_array(merges)) return rm_err(RAMOLE_ERR_FORMAT, "%s: model.merges: expected an array", t->name);

    /* one flat view of the vocabulary and merges, from either parser */
    tok_vocab_ent *ve = NULL;
    tok_merge_ent *me = NULL;
    size_t nv, nm;
    rm_status st = RM_OK;
    if (fm) {
        ve = fm->vocab;
        nv = fm->n_vocab;
        me = fm->merges;
        nm = fm->n_merges;
    } else {
        nv = json_object_size(vocab);
        nm = json_array_size(merges);
        ve = rm_malloc((nv ? nv : 1) * sizeof *ve);
        me = rm_malloc((nm ? nm : 1) * sizeof *me);
        if (!ve || !me) { st = NOMEM(); goto done; }
        const char *key;
        size_t klen, k = 0;
        json_t *v;
        json_object_keylen_foreach((json_t *)vocab, key, klen, v) {
            if (!json_is_integer(v)) {
                st = rm_err(RAMOLE_ERR_RANGE, "%s: model.vocab[\"%.60s\"]: id must be an integer in [0, %d)", t->name, key, MAX_IDS);
                goto done;
            }
            ve[k++] = (tok_vocab_ent){key, (uint32_t)klen, (int64_t)json_integer_value(v)};
        }
        size_t i;
        json_array_foreach((json_t *)merges, i, v) {
            const char *a = NULL, *b = NULL;
            size_t an = 0, bn = 0;
            if ((st = merge_parts(t, v, i, &a, &an, &b, &bn))) goto done;
            me[i] = (tok_merge_ent){a, b, (uint32_t)an, (uint32_t)bn};
        }
    }

    /* id range over vocab and added tokens */
    int64_t maxid = -1;
    for (size_t k = 0; k < nv; k++) {
        if (ve[k].id < 0 || ve[k].id >= MAX_IDS) {
            st = rm_err(RAMOLE_ERR_RANGE, "%s: model.vocab[\"%.*s\"]: id must be an integer in [0, %d)", t->name,
                        (int)(ve[k].n > 60 ? 60 : ve[k].n), ve[k].s, MAX_IDS);
            goto done;
        }
        if (ve[k].id > maxid) maxid = ve[k].id;
    }
    if (json_is_array(added)) {
        size_t i;
        json_t *v;
        json_array_foreach((json_t *)added, i, v) {
            json_t *id = json_object_get(v, "id");
            if (json_is_integer(id) && json_integer_value(id) > maxid && json_integer_value(id) < MAX_IDS)
                maxid = json_integer_value(id);
        }
    }
    if (maxid < 0) { st = rm_err(RAMOLE_ERR_FORMAT, "%s: model.vocab is empty", t->name); goto done; }
    if ((st = alloc_ids(t, (int32_t)maxid + 1))) goto done;

    const char *s;
    size_t n;
    if ((st = get_bool(t, m, "byte_fallback", false, &t->byte_fallback, "model"))) goto done;
    if ((st = get_bool(t, m, "fuse_unk", false, &t->fuse_unk, "model"))) goto done;
    if ((st = get_bool(t, m, "ignore_merges", false, &t->ignore_merges, "model"))) goto done;
    if ((st = get_str(t, m, "continuing_subword_prefix", &s, &n, "model"))) goto done;
    if (s && n) { st = rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: model.continuing_subword_prefix \"%s\" is not supported", t->name, s); goto done; }
    if ((st = get_str(t, m, "end_of_word_suffix", &s, &n, "model"))) goto done;
    if (s && n) {
        if (!(t->end_of_word_suffix = dupn(s, n))) { st = NOMEM(); goto done; }
        t->eow_len = n;
    }

    for (size_t k = 0; k < nv; k++) {
        int32_t id = (int32_t)ve[k].id;
        if (t->flags[id] & TOKF_USED) {
            st = rm_err(RAMOLE_ERR_FORMAT, "%s: model.vocab: id %d is given to two tokens", t->name, id);
            goto done;
        }
        if ((st = tok_set_token(t, id, ve[k].s, ve[k].n))) goto done;
        if (fm && tok_strmap_get(t, t->bytes[id], t->bytes_len[id]) >= 0 &&
            tok_strmap_get(t, t->bytes[id], t->bytes_len[id]) != id) {
            /* maybe a repeated key, which jansson resolves (last wins) */
            if (retry) *retry = true;
            st = rm_err(RAMOLE_ERR_MISMATCH, "%s: model.vocab: repeated token", t->name);
            goto done;
        }
        if ((st = tok_strmap_put(t, id, false))) goto done;
        uint8_t b;
        if (!t->byte_level && tok_byte_token(ve[k].s, ve[k].n, &b)) {
            t->flags[id] |= TOKF_BYTE;
            t->byte_id[b] = id;
        }
    }
    if (t->byte_level) {
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_id[b] = tok_strmap_get(t, &c, 1);
        }
    }
    if ((st = parse_added(t, added))) goto done;

    if ((st = get_str(t, m, "unk_token", &s, &n, "model"))) goto done;
    if (s) {
        t->unk_id = tok_strmap_get(t, s, n);
        if (t->unk_id < 0) { st = rm_err(RAMOLE_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in the vocabulary", t->name, s); goto done; }
    }

    /* merges */
    t->merge_list = rm_malloc((nm ? nm : 1) * sizeof *t->merge_list);
    if (!t->merge_list) { st = NOMEM(); goto done; }
    char *tmp = NULL;
    size_t tmpcap = 0, dropped = 0;
    for (size_t i = 0; i < nm; i++) {
        size_t an = me[i].an, bn = me[i].bn;
        if (an + bn + 1 > tmpcap) {
            tmpcap = (an + bn + 1) * 2;
            char *nt = rm_realloc(tmp, tmpcap);
            if (!nt) { rm_free(tmp); st = NOMEM(); goto done; }
            tmp = nt;
        }
        int32_t l = lookup_file_form(t, me[i].a, an, tmp), r = lookup_file_form(t, me[i].b, bn, tmp);
        if (l < 0 || r < 0) { dropped++; continue; }
        t->merge_list[t->n_merges][0] = l;
        t->merge_list[t->n_merges][1] = r;
        t->n_merges++;
    }
    rm_free(tmp);
    if (dropped) rm_log_debug("%s: %zu merges name tokens outside the vocabulary; dropped", t->name, dropped);
    st = tok_bpe_build_merges(t);
done:
    if (!fm) {
        rm_free(ve);
        rm_free(me);
    }
    return st;
}

/* ---- tokenizer_config.json ---------------------------------------------- */

static int32_t cfg_token(rm_tok *t, const json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return tok_strmap_get(t, json_string_value(v), json_string_length(v));
}

static rm_status parse_config(rm_tok *t, const json_t *cfg) {
    t->bos_id = cfg_token(t, cfg, "bos_token");
    t->eos_id = cfg_token(t, cfg, "eos_token");
    t->pad_id = cfg_token(t, cfg, "pad_token");
    t->cfg_unk_id = cfg_token(t, cfg, "unk_token");
    json_t *c = json_object_get(cfg, "clean_up_tokenization_spaces");
    if (json_is_boolean(c)) t->cleanup_spaces = json_is_true(c);
    json_t *extra = json_object_get(cfg, "additional_special_tokens");
    if (json_is_array(extra)) { /* transformers counts these as special when decoding */
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v) {
            if (json_is_object(v)) v = json_object_get(v, "content");
            if (!json_is_string(v)) continue;
            int32_t id = tok_strmap_get(t, json_string_value(v), json_string_length(v));
            if (id >= 0) t->flags[id] |= TOKF_SPECIAL;
        }
    }
    json_t *tmpl = json_object_get(cfg, "chat_template");
    if (json_is_array(tmpl)) { /* [{name, template}, ...]: take "default" */
        size_t i;
        json_t *v, *pick = NULL;
        json_array_foreach(tmpl, i, v) {
            const char *nm = json_string_value(json_object_get(v, "name"));
            if (nm && !strcmp(nm, "default")) pick = json_object_get(v, "template");
        }
        tmpl = pick;
    }
    if (json_is_string(tmpl)) {
        if (!(t->chat_template = rm_strdup(json_string_value(tmpl)))) return NOMEM();
        t->chat = tok_chat_detect(t->chat_template);
    }
    return RM_OK;
}

/* ---- entry points -------------------------------------------------------- */

static rm_status parse_json(const char *name, const char *json, size_t len, json_t **out, size_t flags) {
    json_error_t e;
    *out = json_loadb(json, len, JSON_ALLOW_NUL | flags, &e);
    if (!*out)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: malformed JSON at line %d, column %d: %s", name, e.line, e.column, e.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return rm_err(RAMOLE_ERR_FORMAT, "%s: expected a JSON object at the top level", name);
    }
    return RM_OK;
}

/* Keep the pipeline (everything but the vocabulary) as JSON, for GGUF export. */
static rm_status keep_pipeline(rm_tok *t, const json_t *root) {
    json_t *m = json_object_get(root, "model"), *p = json_object();
    if (!p) return NOMEM();
    static const char *const keys[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder"};
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(root, keys[i]);
        json_object_set(p, keys[i], v ? v : json_null());
    }
    json_t *mo = json_object();
    static const char *const mkeys[] = {"byte_fallback", "fuse_unk", "ignore_merges", "unk_token", "end_of_word_suffix"};
    for (int i = 0; mo && i < 5; i++) {
        json_t *v = json_object_get(m, mkeys[i]);
        if (v) json_object_set(mo, mkeys[i], v);
    }
    if (mo) json_object_set_new(p, "model", mo);
    char *s = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(p);
    if (!s) return NOMEM();
    t->pipeline_json = rm_strdup(s);
    free(s); /* jansson's allocation */
    return t->pipeline_json ? RM_OK : NOMEM();
}

static rm_status build_any(rm_tok *t, const json_t *root, const json_t *cfg, const tok_fast_model *fm, bool *retry);
static rm_status build(rm_tok *t, const json_t *root, const json_t *cfg) { return build_any(t, root, cfg, NULL, NULL); }

rm_status tok_build_json(rm_tok *t, const struct json_t *root, const struct json_t *cfg) {
    return build_any(t, root, cfg, NULL, NULL);
}

rm_status tok_build_json_fast(rm_tok *t, const struct json_t *root, const struct json_t *cfg, const tok_fast_model *fm,
                              bool *retry) {
    return build_any(t, root, cfg, fm, retry);
}

static rm_status build_any(rm_tok *t, const json_t *root, const json_t *cfg, const tok_fast_model *fm, bool *retry) {
    RM_TRY(keep_pipeline(t, root));
    /* the pre-tokenizer first: it decides whether the vocab is byte-level */
    RM_TRY(parse_pretok(t, json_object_get(root, "pre_tokenizer"), "pre_tokenizer"));
    RM_TRY(parse_normalizer(t, json_object_get(root, "normalizer"), "normalizer"));
    RM_TRY(parse_model(t, json_object_get(root, "model"), json_object_get(root, "added_tokens"), fm, retry));
    RM_TRY(parse_post(t, json_object_get(root, "post_processor"), "post_processor"));
    RM_TRY(parse_decoder(t, json_object_get(root, "decoder"), "decoder"));
    if (cfg) RM_TRY(parse_config(t, cfg));
    if (t->chat == RM_CHAT_NONE && !t->chat_template) {
        /* Mistral's v0.1 files ship without a template; recognise the vocabulary. */
        if (tok_strmap_get(t, "[INST]", 6) >= 0 || (!t->byte_level && t->n_ids == 32000 && t->byte_fallback &&
                                                     tok_strmap_get(t, "\xe2\x96\x81[", 4) >= 0 && t->n_merges < 60000 && t->n_merges > 50000))
            t->chat = RM_CHAT_MISTRAL;
    }
    RM_TRY(tok_build_pieces(t));
    tok_sp_split_check(t);
    return tok_build_trie(t);
}

rm_status rm_tok_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                           const char *name, rm_tok **out) {
    *out = NULL;
    rm_tok *t = tok_new(name);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
    json_t *root = NULL, *cfg = NULL;
    tok_fast_model fm;
    bool fast = len > (1u << 16) && tok_fast_scan(json, len, &fm), retry = false;
    rm_status st = fast ? parse_json(t->name, fm.reduced, fm.reduced_len, &root, 0) : parse_json(t->name, json, len, &root, 0);
    if (!st && config_json) {
        char cname[512];
        snprintf(cname, sizeof cname, "%s (tokenizer_config.json)", t->name);
        st = parse_json(cname, config_json, config_len, &cfg, JSON_DECODE_INT_AS_REAL); /* model_max_length is 1e30 */
    }
    if (!st) st = fast ? build_any(t, root, cfg, &fm, &retry) : build(t, root, cfg);
    json_decref(root);
    json_decref(cfg);
    if (fast) tok_fast_free(&fm);
    if (st && retry) { /* the fast path met something only the full parser resolves */
        rm_tok_free(t);
        rm_err_clear();
        t = tok_new(name);
        if (!t) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
        st = parse_json(t->name, json, len, &root, 0);
        if (!st && config_json) {
            char cname[512];
            snprintf(cname, sizeof cname, "%s (tokenizer_config.json)", t->name);
            st = parse_json(cname, config_json, config_len, &cfg, JSON_DECODE_INT_AS_REAL);
        }
        if (!st) st = build(t, root, cfg);
        json_decref(root);
        json_decref(cfg);
    }
    if (st) { rm_tok_free(t); return st; }
    *out = t;
    return RM_OK;
}

static char *sibling(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    if (!slash) return rm_strdup(name);
    char *dir = rm_strndup(path, (size_t)(slash - path));
    if (!dir) return NULL;
    char *r = rm_path_join(dir, name);
    rm_free(dir);
    return r;
}

rm_status rm_tok_load(const char *path, rm_tok **out) {
    *out = NULL;
    size_t pl = strlen(path);
    if (pl > 5 && !strcmp(path + pl - 5, ".gguf") && !rm_dir_exists(path)) {
        rm_gguf *g = NULL;
        rm_status st = rm_gguf_open(path, &g);
        if (!st) st = rm_tok_gguf_load(g, out);
        rm_gguf_free(g);
        return st;
    }
    char *tj = NULL, *cj = NULL, *json = NULL, *cfg = NULL;
    size_t jn = 0, cn = 0;
    rm_status st = RM_OK;
    if (rm_dir_exists(path)) {
        tj = rm_path_join(path, "tokenizer.json");
        cj = rm_path_join(path, "tokenizer_config.json");
        if (!tj || !cj) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto done; }
        if (!rm_file_exists(tj)) {
            char *e = rm_path_join(path, "encoder.json"), *b = rm_path_join(path, "vocab.bpe");
            if (e && b && rm_file_exists(e) && rm_file_exists(b)) st = rm_tok_load_gpt2(e, b, out);
            else st = rm_err(RAMOLE_ERR_IO, "%s: no tokenizer.json (nor encoder.json + vocab.bpe) in this directory", path);
            rm_free(e);
            rm_free(b);
            goto done;
        }
    } else {
        tj = rm_strdup(path);
        cj = sibling(path, "tokenizer_config.json");
        if (!tj || !cj) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto done; }
    }
    if ((st = rm_file_read(tj, &json, &jn))) goto done;
    if (rm_file_exists(cj) && (st = rm_file_read(cj, &cfg, &cn))) goto done;
    st = rm_tok_load_json(json, jn, cfg, cn, tj, out);
done:
    rm_free(tj);
    rm_free(cj);
    rm_free(json);
    rm_free(cfg);
    return st;
}

rm_status rm_tok_load_gpt2(const char *encoder_path, const char *bpe_path, rm_tok **out) {
    *out = NULL;
    char *enc = NULL, *bpe = NULL;
    size_t en, bn;
    json_t *root = NULL, *encj = NULL;
    rm_tok *t = NULL;
    rm_status st = rm_file_read(encoder_path, &enc, &en);
    if (!st) st = rm_file_read(bpe_path, &bpe, &bn);
    if (!st) st = parse_json(encoder_path, enc, en, &encj, 0);
    if (st) goto done;
    t = tok_new(encoder_path);
    if (!t) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto done; }
    /* Build the tokenizer.json that describes GPT-2 and load it. */
    root = json_pack("{s:{s:s, s:b, s:b}, s:{s:s}, s:{s:s, s:O, s:[]}, s:[{s:i, s:s, s:b}]}",
                     "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1,
                     "decoder", "type", "ByteLevel",
                     "model", "type", "BPE", "vocab", encj, "merges",
                     "added_tokens", "id", 50256, "content", "<|endoftext|>", "special", 1);
    if (!root) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto done; }
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    char *line = bpe, *end = bpe + bn;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t ln = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (ln && line[ln - 1] == '\r') ln--;
        if (ln && !(line == bpe && ln >= 8 && !memcmp(line, "#version", 8))) {
            if (!memchr(line, ' ', ln)) {
                st = rm_err(RAMOLE_ERR_FORMAT, "%s: line without a space: \"%.60s\"", bpe_path, line);
                goto done;
            }
            if (json_array_append_new(merges, json_stringn(line, ln))) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto done; }
        }
        line = nl ? nl + 1 : end;
    }
    if (json_object_get(encj, "<|endoftext|>") == NULL) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: no <|endoftext|> token: not GPT-2's encoder.json", encoder_path);
        goto done;
    }
    st = build(t, root, NULL);
    if (!st) t->bos_id = t->eos_id = t->cfg_unk_id = tok_strmap_get(t, "<|endoftext|>", 13);
    t->cleanup_spaces = false;
done:
    json_decref(root);
    json_decref(encj);
    rm_free(enc);
    rm_free(bpe);
    if (st) rm_tok_free(t);
    else *out = t;
    return st;
}

/* ---- accessors ----------------------------------------------------------- */

int32_t rm_tok_vocab_size(const rm_tok *t) { return t->n_ids; }
int32_t rm_tok_token_id(const rm_tok *t, const char *s, size_t n) {
    if (t->byte_level) {
        int32_t id = tok_strmap_get(t, s, n);
        if (id >= 0 && (t->flags[id] & TOKF_ADDED)) return id;
        char *tmp = rm_malloc(n + 1);
        if (!tmp) return -1;
        size_t rn;
        int32_t r = bytelevel_to_raw(s, n, tmp, &rn) ? tok_strmap_get(t, tmp, rn) : id;
        rm_free(tmp);
        return r;
    }
    return tok_strmap_get(t, s, n);
}
const char *rm_tok_token_str(const rm_tok *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->str[id] : NULL;
}
bool rm_tok_is_special(const rm_tok *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOKF_SPECIAL);
}
bool rm_tok_is_eog(const rm_tok *t, int32_t id) {
    if (id < 0 || id >= t->n_ids) return false;
    if (id == t->eos_id) return true;
    if (!(t->flags[id] & TOKF_SPECIAL)) return false;
    static const char *const eog[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>", "<|end_of_text|>",
                                      "</s>", "<|end|>"};
    for (size_t k = 0; k < sizeof eog / sizeof eog[0]; k++)
        if (!strcmp(t->str[id], eog[k])) return true;
    return false;
}

int32_t rm_tok_bos(const rm_tok *t) { return t->bos_id; }
int32_t rm_tok_eos(const rm_tok *t) { return t->eos_id; }
int32_t rm_tok_unk(const rm_tok *t) { return t->unk_id >= 0 ? t->unk_id : t->cfg_unk_id; }
int32_t rm_tok_pad(const rm_tok *t) { return t->pad_id; }
bool rm_tok_is_byte_level(const rm_tok *t) { return t->byte_level; }
size_t rm_tok_merge_count(const rm_tok *t) { return t->n_merges; }
void rm_tok_merge_get(const rm_tok *t, size_t rank, int32_t *l, int32_t *r) {
    *l = rank < t->n_merges ? t->merge_list[rank][0] : -1;
    *r = rank < t->n_merges ? t->merge_list[rank][1] : -1;
}
