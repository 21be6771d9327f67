/*
 * test_tokenizer_gguf.c — tokenizers stored in GGUF metadata and loaded back.
 *
 * For each real family (npm cache; SKIP without it): write the tokenizer.*
 * keys to a GGUF file, load it with rm_tok_load(.gguf) and encode the golden
 * corpus with both: ids must be identical line for line, (a) with ramole's
 * pipeline key and (b) without it, i.e. as a file from llama.cpp's converter
 * would be read (family defaults, merges from scores for "llama").
 */
#include "test.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

rm_tok *tokt_family_tok(const char *family);
char *tokt_entry_bytes(json_t *e, size_t *len, bool *is_hex);

static void gguf_roundtrip(const char *family, bool ramole_keys) {
    rm_tok *tok = tokt_family_tok(family);
    if (!tok) return;
    char path[512];
    snprintf(path, sizeof path, "%s/tok_%s_%d.gguf", rm_test_tmp_dir(), family, (int)ramole_keys);
    rm_gguf_writer *w = NULL;
    CHECK_OK(rm_gguf_writer_new(&w));
    if (!w) return;
    CHECK_OK(rm_tok_gguf_write(tok, w, ramole_keys));
    CHECK_OK(rm_gguf_writer_write(w, path));
    rm_gguf_writer_free(w);
    rm_tok *back = NULL;
    CHECK_OK(rm_tok_load(path, &back));
    if (!back) return;
    CHECK(rm_tok_vocab_size(back) == rm_tok_vocab_size(tok));
    CHECK(rm_tok_bos(back) == rm_tok_bos(tok) && rm_tok_eos(back) == rm_tok_eos(tok));
    CHECK(rm_tok_chat_template(back) == rm_tok_chat_template(tok));
    char cpath[1024];
    snprintf(cpath, sizeof cpath, "%s/golden/tokenizer/corpus.jsonl", rm_test_data_dir());
    char *data = NULL;
    size_t len;
    CHECK_OK(rm_file_read(cpath, &data, &len));
    rm_tok_ids a = {0}, b = {0};
    int lines = 0, same = 0;
    for (char *line = data; data && *line;) {
        char *nl = strchr(line, '\n');
        size_t ln = nl ? (size_t)(nl - line) : strlen(line);
        json_error_t e;
        json_t *v = ln ? json_loadb(line, ln, JSON_ALLOW_NUL, &e) : NULL; /* {"text": s} or {"hex": h} */
        line = nl ? nl + 1 : line + ln;
        if (!v) continue;
        size_t tl;
        bool hex;
        char *text = tokt_entry_bytes(v, &tl, &hex);
        json_decref(v);
        for (unsigned flags = 0; flags <= RM_TOK_ADD_SPECIAL; flags += RM_TOK_ADD_SPECIAL) {
            lines++;
            CHECK_OK(rm_tok_encode(tok, text, tl, flags, &a));
            CHECK_OK(rm_tok_encode(back, text, tl, flags, &b));
            if (a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids)) same++;
            else CHECK_MSG(0, "%s (GGUF%s): ids differ for \"%.60s\"", family, ramole_keys ? "" : ", llama.cpp style", text);
        }
        rm_free(text);
    }
    printf("  tokenizer %s via GGUF%s: %d/%d encodings identical\n", family, ramole_keys ? "" : " (llama.cpp keys only)",
           same, lines);
    rm_tok_ids_free(&a);
    rm_tok_ids_free(&b);
    rm_free(data);
    rm_tok_free(back);
    remove(path);
}

TEST(tokenizer_gguf_qwen3) { gguf_roundtrip("qwen3", true); gguf_roundtrip("qwen3", false); }
TEST(tokenizer_gguf_llama3) { gguf_roundtrip("llama3", true); gguf_roundtrip("llama3", false); }
TEST(tokenizer_gguf_gpt2) { gguf_roundtrip("gpt2", true); gguf_roundtrip("gpt2", false); }
TEST(tokenizer_gguf_mistral) { gguf_roundtrip("mistral", true); gguf_roundtrip("mistral", false); }
TEST(tokenizer_gguf_llama2) { gguf_roundtrip("llama2", true); gguf_roundtrip("llama2", false); }

TEST(tokenizer_gguf_bad) {
    /* a GGUF without a tokenizer, and one with an unknown model */
    char path[512];
    snprintf(path, sizeof path, "%s/tok_bad.gguf", rm_test_tmp_dir());
    rm_gguf_writer *w = NULL;
    CHECK_OK(rm_gguf_writer_new(&w));
    if (!w) return;
    CHECK_OK(rm_gguf_set_str(w, "general.architecture", "llama"));
    CHECK_OK(rm_gguf_writer_write(w, path));
    rm_tok *t = NULL;
    CHECK_ERR(rm_tok_load(path, &t), RAMOLE_ERR_NOT_FOUND);
    CHECK(strstr(ramole_last_error(), "tokenizer.ggml.model") != NULL);
    CHECK_OK(rm_gguf_set_str(w, "tokenizer.ggml.model", "t5"));
    CHECK_OK(rm_gguf_writer_write(w, path));
    CHECK_ERR(rm_tok_load(path, &t), RAMOLE_ERR_UNSUPPORTED);
    CHECK(strstr(ramole_last_error(), "unknown tokenizer.ggml.model \"t5\"") != NULL);
    CHECK_OK(rm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    const char *toks[] = {"a", "b"};
    CHECK_OK(rm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 2));
    CHECK_OK(rm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 7));
    const char *mg[] = {"a b"};
    CHECK_OK(rm_gguf_set_arr_str(w, "tokenizer.ggml.merges", mg, 1));
    CHECK_OK(rm_gguf_writer_write(w, path));
    CHECK_ERR(rm_tok_load(path, &t), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "bos_token_id") != NULL);
    rm_gguf_writer_free(w);
    remove(path);
}
TEST(tokenizer_gguf_synth) { gguf_roundtrip("synth-sp", true); gguf_roundtrip("synth-bl", true); }
