/*
 * fuzz_format.c — a response format, as a request body carries it
 * (untrusted): a JSON Schema or a GBNF grammar, then a text. Input: the
 * format's bytes, a NUL, the text's bytes. The format is compiled both as
 * a schema and as GBNF (rm_json_schema_grammar, rm_gbnf_grammar: any
 * failure must be a clean error), and each grammar that compiled reads the
 * text byte by byte through a token filter over the harnesses' small
 * byte-level vocabulary (bytes, merges of them, special tokens);
 * at every position the filter's mask must agree with the grammar: a
 * token of one byte is allowed exactly when the grammar takes its byte
 * (otherwise abort). The text's bytes the grammar refuses are skipped.
 */
#include <string.h>

#include "engine/gbnf.h"
#include "engine/json_schema.h"
#include "engine/token_filter.h"
#include "fuzz_util.h"

static rm_tok *tok;
static rm_vocab_trie *trie;
static int32_t byte_tok[256]; /* the single-byte token of each byte, or -1 */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) {
        static const char *seeds[] = {
            "{\"type\": \"object\"}\0{\"a\": [1, 2.5e-3, \"x\\u00e9\", true, null]}",
            "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 4}, \"age\": "
            "{\"type\": \"integer\"}}, \"required\": [\"age\"]}\0{\"name\": \"abc\", \"age\": -12}",
            "{\"$defs\": {\"N\": {\"type\": \"object\", \"properties\": {\"k\": {\"type\": \"array\", \"items\": "
            "{\"$ref\": \"#/$defs/N\"}}}}}, \"$ref\": \"#/$defs/N\"}\0{\"k\": [{\"k\": []}]}",
            "{\"anyOf\": [{\"enum\": [\"a\", 1, null]}, {\"type\": \"array\", \"minItems\": 1, \"maxItems\": 2}]}\0[{}]",
            "{\"type\": [\"number\", \"boolean\"]}\0-0.5E+12",
            "{\"type\": \"object\", \"additionalProperties\": {\"const\": \"\xc3\xa9\"}}\0{\"x\":\"\xc3\xa9\"}",
            "root ::= name \" \" (\"is\" | \"was\") \" \" [1-9] [0-9]{0,2} \".\"\nname ::= [A-Z] [a-z]{1,6}\0Ann is 12.",
            "# comment\nroot ::= (\"(\" root \")\")* [^a-z\\n]? .\n\0(())\xce\xbb",
            "root ::= [\\x7e-\\U00010001]+ \"\\u00e9\"\0~\xf0\x90\x80\x80\xc3\xa9",
        };
        for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
            char name[32];
            snprintf(name, sizeof name, "schema%02zu", i);
            size_t a = strlen(seeds[i]), b = strlen(seeds[i] + a + 1);
            fuzz_seed(name, seeds[i], a + 1 + b);
        }
        exit(0);
    }
    if (rm_tok_load(fuzz_small_tokenizer_dir(), &tok) != RAMOLE_OK) abort();
    if (rm_vocab_trie_new(tok, rm_tok_vocab_size(tok), &trie) != RAMOLE_OK) abort();
    for (int b = 0; b < 256; b++) byte_tok[b] = -1;
    for (int32_t id = 0; id < rm_tok_vocab_size(tok); id++) {
        const char *s;
        size_t n;
        if (!rm_tok_is_special(tok, id) && !rm_tok_is_eog(tok, id) && rm_tok_piece(tok, id, &s, &n) == RAMOLE_OK &&
            n == 1 && byte_tok[(uint8_t)s[0]] < 0)
            byte_tok[(uint8_t)s[0]] = id;
    }
    return 0;
}

/* Read the text through a filter of grammar g (owned) and check every mask
 * against ref, a second compile of the same format. */
static void run(rm_grammar *g, rm_grammar *ref, const uint8_t *text, size_t n) {
    rm_token_filter *f;
    if (rm_token_filter_new(trie, g, true, &f) != RAMOLE_OK) {
        rm_grammar_free(ref);
        return;
    }
    rm_grammar_pos p = {0}, next = {0};
    if (rm_grammar_start(ref, &p) != RAMOLE_OK) abort();
    for (size_t i = 0; i < n && !rm_token_filter_done(f); i++) {
        const uint64_t *mask;
        int n_allowed;
        if (rm_token_filter_allowed(f, &mask, &n_allowed) != RAMOLE_OK) break; /* a limit, reported */
        for (int b = 0; b < 256; b++) {
            if (byte_tok[b] < 0) continue;
            if (rm_grammar_accept(ref, &p, (uint8_t)b, &next) != RAMOLE_OK) abort();
            bool allowed = mask[byte_tok[b] / 64] >> (byte_tok[b] % 64) & 1;
            if (allowed != !rm_grammar_dead(&next)) abort();
        }
        uint8_t b = text[i];
        if (byte_tok[b] < 0) continue;
        if (rm_grammar_accept(ref, &p, b, &next) != RAMOLE_OK) abort();
        if (rm_grammar_dead(&next)) continue;
        if (rm_token_filter_take(f, byte_tok[b]) != RAMOLE_OK) abort();
        rm_grammar_pos t = p;
        p = next;
        next = t;
    }
    rm_grammar_pos_free(&p);
    rm_grammar_pos_free(&next);
    rm_grammar_free(ref);
    rm_token_filter_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_format = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t n_text = (size_t)(data + size - text);
    rm_grammar *g, *ref;
    if (rm_json_schema_grammar((const char *)data, n_format, &g) == RAMOLE_OK) {
        if (rm_json_schema_grammar((const char *)data, n_format, &ref) != RAMOLE_OK) abort(); /* deterministic */
        run(g, ref, text, n_text);
    }
    if (rm_gbnf_grammar((const char *)data, n_format, &g) == RAMOLE_OK) {
        if (rm_gbnf_grammar((const char *)data, n_format, &ref) != RAMOLE_OK) abort();
        run(g, ref, text, n_text);
    }
    return 0;
}
