/*
 * test_tokenizer.c — tokenizer unit tests that need no npm cache: small
 * hand-made tokenizers (byte-level and SentencePiece-style), bad input
 * (malformed, truncated, unknown types, ids out of range), allocation
 * failure at every point, the encode buffer contract, training, and the
 * chat templates against the reference renderings (those use the cache
 * for the vocabularies' BOS/EOS and skip without it).
 */
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

rm_tok *tokt_family_tok(const char *family);

/* A SentencePiece-style tokenizer: Prepend/Replace, byte fallback, unk. */
static const char *SP_JSON =
    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    "                   {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
    "                   {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
    "                {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "                {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"},"
    "              {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, \"fuse_unk\": true,"
    "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0xC3>\": 3, \"<0xA9>\": 4, \"\\u2581\": 5, \"h\": 6, \"i\": 7,"
    "              \"\\u2581h\": 8, \"\\u2581hi\": 9, \"x\": 10},"
    "   \"merges\": [\"\\u2581 h\", \"\\u2581h i\"]}}";

/* A byte-level tokenizer: GPT-2 ByteLevel pre-tokenizer, ids 0..255 bytes. */
static char *make_bytelevel_json(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174))) k++;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)k;
        char s[4];
        int n = cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F)), 2);
        json_t *key = json_stringn(s, (size_t)n);
        json_object_set_new(vocab, json_string_value(key), json_integer(b));
        json_decref(key);
    }
    json_object_set_new(vocab, "\xc4\xa0t", json_integer(256));     /* "Ġt" */
    json_object_set_new(vocab, "\xc4\xa0th", json_integer(257));    /* "Ġth" */
    json_object_set_new(vocab, "\xc4\xa0the", json_integer(258));   /* "Ġthe" */
    json_object_set_new(vocab, "<|end|>", json_integer(259));
    json_t *root = json_pack("{s:[{s:i, s:s, s:b}], s:{s:s, s:b}, s:{s:s}, s:{s:s, s:o, s:[sss]}}",
                             "added_tokens", "id", 259, "content", "<|end|>", "special", 1,
                             "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0,
                             "decoder", "type", "ByteLevel",
                             "model", "type", "BPE", "vocab", vocab, "merges", "\xc4\xa0 t", "\xc4\xa0t h", "\xc4\xa0th e");
    char *s = json_dumps(root, 0);
    json_decref(root);
    return s;
}

static void check_ids(const rm_tok_ids *got, const int32_t *want, size_t n, const char *what) {
    bool same = got->n == n;
    for (size_t i = 0; same && i < n; i++) same = got->ids[i] == want[i];
    CHECK_MSG(same, "%s: got %zu ids (first %d), want %zu", what, got->n, got->n ? got->ids[0] : -1, n);
}

TEST(tokenizer_sentencepiece_small) {
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(SP_JSON, strlen(SP_JSON), NULL, 0, "sp.json", &t));
    if (!t) return;
    rm_tok_ids ids = {0};
    CHECK_OK(rm_tok_encode(t, "hi", 2, 0, &ids));
    check_ids(&ids, (int32_t[]){9}, 1, "hi");
    CHECK_OK(rm_tok_encode(t, "hi", 2, RM_TOK_ADD_SPECIAL, &ids));
    check_ids(&ids, (int32_t[]){1, 9}, 2, "<s> hi");
    /* é -> byte fallback <0xC3><0xA9>; "q" has no byte token -> unk; two unks fuse */
    CHECK_OK(rm_tok_encode(t, "hi \xc3\xa9qq", 7, 0, &ids));
    check_ids(&ids, (int32_t[]){9, 5, 3, 4, 0}, 5, "fallback and fused unk");
    CHECK_OK(rm_tok_encode(t, "hi</s>hi", 8, 0, &ids));
    check_ids(&ids, (int32_t[]){9, 2, 9}, 3, "special in text");
    CHECK_OK(rm_tok_encode(t, "hi</s>", 6, RM_TOK_NO_PARSE_SPECIAL, &ids));
    check_ids(&ids, (int32_t[]){9, 0}, 2, "special as text: one fused unk");
    char *s = NULL;
    size_t n;
    CHECK_OK(rm_tok_decode(t, (int32_t[]){9, 5, 3, 4, 2}, 5, 0, &s, &n));
    CHECK_MSG(s && !strcmp(s, "hi \xc3\xa9</s>"), "decode: \"%s\"", s ? s : "");
    rm_free(s);
    CHECK_OK(rm_tok_decode(t, (int32_t[]){1, 9, 2}, 3, RM_TOK_SKIP_SPECIAL, &s, &n));
    CHECK_MSG(s && !strcmp(s, "hi"), "skip special: \"%s\"", s ? s : "");
    rm_free(s);
    const char *p;
    CHECK_OK(rm_tok_piece(t, 9, &p, &n));
    CHECK(n == 3 && !memcmp(p, " hi", 3));
    CHECK_OK(rm_tok_piece(t, 3, &p, &n));
    CHECK(n == 1 && (uint8_t)p[0] == 0xC3);
    CHECK_ERR(rm_tok_piece(t, 11, &p, &n), RAMOLE_ERR_RANGE);
    CHECK(rm_tok_token_id(t, "\xe2\x96\x81hi", 5) == 9);
    CHECK(rm_tok_is_special(t, 1) && !rm_tok_is_special(t, 9));
    CHECK(!rm_tok_is_byte_level(t) && rm_tok_vocab_size(t) == 11 && rm_tok_merge_count(t) == 2);
    rm_tok_ids_free(&ids);
    rm_tok_free(t);
}

/* RM_TOK_CONTINUATION: no prefix space at the text's start (Prepend,
 * ByteLevel's add_prefix_space), but after an added token as usual; a
 * prompt's ids followed by a continuation's decode to the two texts. */
TEST(tokenizer_continuation) {
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(SP_JSON, strlen(SP_JSON), NULL, 0, "sp.json", &t));
    if (!t) return;
    rm_tok_ids ids = {0};
    CHECK_OK(rm_tok_encode(t, "hi", 2, RM_TOK_CONTINUATION, &ids));
    check_ids(&ids, (int32_t[]){6, 7}, 2, "continuation without the dummy prefix");
    CHECK_OK(rm_tok_encode(t, "hi</s>hi", 8, RM_TOK_CONTINUATION, &ids));
    check_ids(&ids, (int32_t[]){6, 7, 2, 9}, 4, "the prefix after an added token stays");
    char *s = NULL;
    CHECK_OK(rm_tok_decode(t, (int32_t[]){1, 9, 6, 7}, 4, RM_TOK_SKIP_SPECIAL, &s, NULL));
    CHECK_MSG(s && !strcmp(s, "hihi"), "prompt + continuation decode to \"%s\"", s ? s : "");
    rm_free(s);
    rm_tok_free(t);
    char *js = make_bytelevel_json();
    char *f = js ? strstr(js, "\"add_prefix_space\": false") : NULL;
    CHECK(f != NULL);
    if (f) memcpy(f + strlen("\"add_prefix_space\": "), "true ", 5); /* same length, JSON stays valid */
    t = NULL;
    if (f) CHECK_OK(rm_tok_load_json(js, strlen(js), NULL, 0, "bl.json", &t));
    free(js);
    if (t) {
        CHECK_OK(rm_tok_encode(t, "the", 3, 0, &ids));
        check_ids(&ids, (int32_t[]){258}, 1, "add_prefix_space: \" the\"");
        CHECK_OK(rm_tok_encode(t, "the", 3, RM_TOK_CONTINUATION, &ids));
        check_ids(&ids, (int32_t[]){'t', 'h', 'e'}, 3, "continuation: no prefix space");
    }
    rm_tok_ids_free(&ids);
    rm_tok_free(t);
}

TEST(tokenizer_bytelevel_small) {
    char *js = make_bytelevel_json();
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(js, strlen(js), NULL, 0, "bl.json", &t));
    free(js);
    if (!t) return;
    rm_tok_ids ids = {0};
    CHECK_OK(rm_tok_encode(t, "a the<|end|>\xff", 13, 0, &ids));
    /* "a", " the", <|end|>, U+FFFD (EF BF BD) */
    check_ids(&ids, (int32_t[]){'a', 258, 259, 0xEF, 0xBF, 0xBD}, 6, "byte-level");
    char *s = NULL;
    CHECK_OK(rm_tok_decode(t, ids.ids, ids.n, 0, &s, NULL));
    CHECK_MSG(s && !strcmp(s, "a the<|end|>\xef\xbf\xbd"), "decode \"%s\"", s ? s : "");
    rm_free(s);
    /* a lone byte decodes to U+FFFD, as TextDecoder does */
    CHECK_OK(rm_tok_decode(t, (int32_t[]){0xE4, 'x'}, 2, 0, &s, NULL));
    CHECK_MSG(s && !strcmp(s, "\xef\xbf\xbdx"), "decode partial \"%s\"", s ? s : "");
    rm_free(s);
    CHECK(rm_tok_is_byte_level(t) && rm_tok_token_id(t, "\xc4\xa0the", 5) == 258);
    /* a word longer than the cache limit goes through the merge loop */
    char big[2000];
    for (int i = 0; i < 2000; i += 4) memcpy(big + i, " the", 4);
    CHECK_OK(rm_tok_encode(t, big, sizeof big, 0, &ids));
    CHECK(ids.n == 500 && ids.ids[0] == 258 && ids.ids[499] == 258);
    rm_tok_ids_free(&ids);
    rm_tok_free(t);
}

TEST(tokenizer_encode_buf_too_small) {
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(SP_JSON, strlen(SP_JSON), NULL, 0, "sp.json", &t));
    if (!t) return;
    int32_t buf[2];
    size_t n = 0;
    CHECK_ERR(rm_tok_encode_buf(t, "hi hi hi", 8, 0, buf, 2, &n), RAMOLE_ERR_TOO_SMALL);
    CHECK(n == 3);
    CHECK_OK(rm_tok_encode_buf(t, "hi", 2, 0, buf, 2, &n));
    CHECK(n == 1 && buf[0] == 9);
    rm_tok_free(t);
}

static void expect_load_error(const char *json, ramole_status st, const char *needle) {
    rm_tok *t = NULL;
    CHECK_ERR(rm_tok_load_json(json, strlen(json), NULL, 0, "bad.json", &t), st);
    CHECK(t == NULL);
    CHECK_MSG(strstr(ramole_last_error(), needle) != NULL, "message \"%s\" lacks \"%s\"", ramole_last_error(), needle);
}

TEST(tokenizer_bad_input) {
    expect_load_error("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {\"a\": 0,}}}", RAMOLE_ERR_FORMAT, "malformed JSON at line 2");
    expect_load_error("[1, 2]", RAMOLE_ERR_FORMAT, "expected a JSON object");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", RAMOLE_ERR_UNSUPPORTED, "unknown model type \"Unigram\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Foo\"}}",
                      RAMOLE_ERR_UNSUPPORTED, "unknown pre-tokenizer type \"Foo\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Bar\"}}",
                      RAMOLE_ERR_UNSUPPORTED, "unknown normalizer type \"Bar\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"Baz\"}}",
                      RAMOLE_ERR_UNSUPPORTED, "unknown decoder type \"Baz\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": {\"type\": \"Qux\"}}",
                      RAMOLE_ERR_UNSUPPORTED, "unknown post-processor type \"Qux\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", RAMOLE_ERR_RANGE, "model.vocab[\"a\"]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", RAMOLE_ERR_FORMAT, "given to two tokens");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}", RAMOLE_ERR_FORMAT, "model.merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                      "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}",
                      RAMOLE_ERR_FORMAT, "bad regex");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}}",
                      RAMOLE_ERR_FORMAT, "unk_token \"<unk>\" is not in the vocabulary");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 99999999999, \"content\": \"x\"}]}",
                      RAMOLE_ERR_RANGE, "added_tokens[0]");
    /* every truncation of a valid file fails cleanly */
    size_t n = strlen(SP_JSON);
    int failed = 0;
    for (size_t k = 0; k < n; k++) {
        rm_tok *t = NULL;
        if (rm_tok_load_json(SP_JSON, k, NULL, 0, "trunc.json", &t) == RAMOLE_OK) { rm_tok_free(t); continue; }
        failed++;
    }
    CHECK(failed == (int)n);
    /* decoding bad ids */
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(SP_JSON, n, NULL, 0, "sp.json", &t));
    if (!t) return;
    char *s = NULL;
    CHECK_ERR(rm_tok_decode(t, (int32_t[]){5, 11}, 2, 0, &s, NULL), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "token id 11") != NULL);
    CHECK_ERR(rm_tok_decode(t, (int32_t[]){-1}, 1, 0, &s, NULL), RAMOLE_ERR_RANGE);
    CHECK(s == NULL);
    rm_tok_free(t);
    CHECK_ERR(rm_tok_load("/nonexistent/tokenizer.json", &t), RAMOLE_ERR_IO);
    CHECK(t == NULL);
}

/* Fail the k-th allocation for every k: errors only, no crash, no leak. */
TEST(tokenizer_alloc_failures) {
    size_t n = strlen(SP_JSON), base = rm_alloc_live_bytes();
    int ok = 0, nomem = 0;
    for (size_t k = 1; k < 400; k++) {
        rm_alloc_fail_after(k);
        rm_tok *t = NULL;
        rm_tok_ids ids = {0};
        char *s = NULL;
        rm_status st = rm_tok_load_json(SP_JSON, n, NULL, 0, "sp.json", &t);
        if (!st) st = rm_tok_encode(t, "hi \xc3\xa9 hi\xff", 9, RM_TOK_ADD_SPECIAL, &ids);
        if (!st) st = rm_tok_decode(t, ids.ids, ids.n, 0, &s, NULL);
        rm_alloc_fail_after(0);
        if (st == RAMOLE_OK) ok++;
        else if (st == RAMOLE_ERR_NOMEM) nomem++;
        else CHECK_MSG(0, "fail_after %zu: %s: %s", k, ramole_status_str(st), ramole_last_error());
        rm_free(s);
        rm_tok_ids_free(&ids);
        rm_tok_free(t);
        size_t live = rm_alloc_live_bytes();
        /* the PCRE2 memory context is made once per process and kept */
        CHECK_MSG(live <= base + 64, "fail_after %zu: %zu bytes leaked", k, live - base);
        if (st == RAMOLE_OK && k > 50) break;
    }
    CHECK(nomem > 10 && ok > 0);
}

TEST(tokenizer_train_small) {
    const char *texts[] = {"the cat sat on the mat. the cat ate the rat. ", "the the the then there their, 123 4567 "};
    size_t lens[] = {strlen(texts[0]), strlen(texts[1])};
    const char *sp[] = {"<|endoftext|>"};
    rm_tok_train_opts o = {.vocab_size = 280, .special_tokens = sp, .n_special = 1, .min_frequency = 2};
    char *json = NULL;
    CHECK_OK(rm_tok_train_bpe(texts, lens, 2, &o, &json));
    if (!json) return;
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(json, strlen(json), NULL, 0, "trained.json", &t));
    rm_free(json);
    if (!t) return;
    CHECK(rm_tok_vocab_size(t) <= 280 && rm_tok_merge_count(t) > 5);
    rm_tok_ids ids = {0};
    CHECK_OK(rm_tok_encode(t, "the cat<|endoftext|>", 20, 0, &ids));
    CHECK(ids.n >= 2 && ids.n <= 4);
    CHECK(ids.n && ids.ids[ids.n - 1] == rm_tok_token_id(t, "<|endoftext|>", 13));
    const char *text = "the cat sat on the mat, 你好 \xf0\x9f\x98\x80";
    CHECK_OK(rm_tok_encode(t, text, strlen(text), 0, &ids));
    char *back = NULL;
    CHECK_OK(rm_tok_decode(t, ids.ids, ids.n, 0, &back, NULL));
    CHECK(back && !strcmp(back, text));
    rm_free(back);
    rm_tok_ids_free(&ids);
    rm_tok_free(t);
    o.vocab_size = 100;
    CHECK_ERR(rm_tok_train_bpe(texts, lens, 2, &o, &json), RAMOLE_ERR_INVALID);
}

/* ---- chat templates against the reference renderings ---------------------- */

/* The next JSON line of a golden file from *line on (NULL at its end),
 * blank and unreadable lines skipped. */
static json_t *next_golden_line(char **line) {
    while (**line) {
        char *nl = strchr(*line, '\n');
        size_t ln = nl ? (size_t)(nl - *line) : strlen(*line);
        json_t *v = ln ? json_loadb(*line, ln, 0, NULL) : NULL;
        *line = nl ? nl + 1 : *line + ln;
        if (v) return v;
    }
    return NULL;
}

TEST(tokenizer_chat_golden) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/tokenizer/chat.jsonl", rm_test_data_dir());
    char *data = NULL;
    size_t len;
    CHECK_OK(rm_file_read(path, &data, &len));
    if (!data) return;
    const char *fams[] = {"chatml", "llama3", "llama2", "mistral"};
    const char *dirs[] = {"qwen3", "llama3", "llama2", "mistral"};
    rm_tok *toks[4] = {0};
    bool have[4] = {0};
    for (int f = 0; f < 4; f++) have[f] = (toks[f] = tokt_family_tok(dirs[f])) != NULL;
    if (have[1]) CHECK(rm_tok_chat_template(toks[1]) == RM_CHAT_LLAMA3);
    if (have[2]) CHECK(rm_tok_chat_template(toks[2]) == RM_CHAT_LLAMA2);
    if (have[3]) CHECK(rm_tok_chat_template(toks[3]) == RM_CHAT_MISTRAL);
    if (have[0]) CHECK(rm_tok_chat_template(toks[0]) == RM_CHAT_CHATML);
    /* end-of-generation tokens */
    if (have[0]) CHECK(rm_tok_is_eog(toks[0], 151645) && rm_tok_is_eog(toks[0], 151643) && !rm_tok_is_eog(toks[0], 9707));
    if (have[1]) CHECK(rm_tok_is_eog(toks[1], 128009) && rm_tok_is_eog(toks[1], 128001) && !rm_tok_is_eog(toks[1], 128000));
    if (have[3]) CHECK(rm_tok_is_eog(toks[3], 2) && !rm_tok_is_eog(toks[3], 1));
    int checked = 0, matched = 0;
    json_t *v;
    for (char *line = data; (v = next_golden_line(&line));) {
        const char *fam = json_string_value(json_object_get(v, "family"));
        int f = 0;
        while (f < 4 && strcmp(fams[f], fam)) f++;
        if (f == 4 || !have[f]) { json_decref(v); continue; }
        json_t *msgs = json_object_get(v, "messages");
        size_t nm = json_array_size(msgs);
        rm_chat_msg m[8] = {{0}};
        for (size_t i = 0; i < nm && i < 8; i++) {
            m[i].role = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
            m[i].content = json_string_value(json_object_get(json_array_get(msgs, i), "content"));
        }
        char *out = NULL;
        /* "chatml" is the plain ChatML template (not Qwen3's own): no tokenizer */
        CHECK_OK(rm_chat_apply(f == 0 ? NULL : toks[f], f == 0 ? RM_CHAT_CHATML : RM_CHAT_NONE, m, nm,
                               json_is_true(json_object_get(v, "gen")), &out));
        const char *want = json_string_value(json_object_get(v, "text"));
        checked++;
        if (out && !strcmp(out, want)) matched++;
        else CHECK_MSG(0, "chat %s: got \"%s\" want \"%s\"", fam, out ? out : "", want);
        rm_free(out);
        json_decref(v);
    }
    if (checked) printf("  tokenizer chat templates: %d/%d renderings exact\n", matched, checked);
    /* Qwen3's own template (derived by hand from its Jinja text) */
    if (have[0]) {
        rm_chat_msg m[] = {{"system", "S"}, {"user", "Q1"}, {"assistant", "<think>\nr1\n</think>\n\nA1"}, {"user", "Q2"},
                           {"assistant", "A2"}};
        char *out = NULL;
        CHECK_OK(rm_chat_apply(toks[0], RM_CHAT_NONE, m, 5, false, &out));
        const char *want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                           "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n";
        CHECK_MSG(out && !strcmp(out, want), "qwen3 chat: \"%s\"", out ? out : "");
        rm_free(out);
    }
    /* unknown template: a clear error unless one is named */
    rm_tok *sp = NULL;
    CHECK_OK(rm_tok_load_json(SP_JSON, strlen(SP_JSON), NULL, 0, "sp.json", &sp));
    char *out = NULL;
    rm_chat_msg u = {"user", "hi"};
    CHECK_ERR(rm_chat_apply(sp, RM_CHAT_NONE, &u, 1, true, &out), RAMOLE_ERR_UNSUPPORTED);
    CHECK(strstr(ramole_last_error(), "name one explicitly") != NULL);
    CHECK_OK(rm_chat_apply(sp, rm_chat_template_from_name("llama2"), &u, 1, true, &out));
    CHECK_MSG(out && !strcmp(out, "[INST] hi [/INST]"), "named llama2: \"%s\"", out ? out : ""); /* no BOS in this config */
    rm_free(out);
    rm_chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    CHECK_ERR(rm_chat_apply(sp, RM_CHAT_MISTRAL, bad, 2, true, &out), RAMOLE_ERR_INVALID);
    rm_tok_free(sp);
    rm_free(data);
}

/*
 * Tools, tool calls and tool results through Qwen3's own template, against
 * Python's jinja2 running it as transformers does (chat_tools.jsonl, made by
 * scripts/tokenizer/make_chat_tools_golden.py): the tools as tojson writes
 * them (rm_chat_tojson: separators, escapes, floats as Python's repr), the
 * calls' arguments as the client sent them. Templates that do not render
 * tools refuse them by name.
 */
TEST(tokenizer_chat_tools_golden) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/tokenizer/chat_tools.jsonl", rm_test_data_dir());
    char *data = NULL;
    size_t len;
    CHECK_OK(rm_file_read(path, &data, &len));
    rm_tok *qwen = tokt_family_tok("qwen3"), *llama3 = tokt_family_tok("llama3"); /* cached: not freed */
    CHECK(qwen != NULL);
    if (!data || !qwen) return;
    CHECK(rm_chat_tools_supported(qwen, RM_CHAT_NONE));
    int checked = 0, matched = 0;
    json_t *v;
    for (char *line = data; (v = next_golden_line(&line));) {
        json_t *msgs = json_object_get(v, "messages"), *tools = json_object_get(v, "tools");
        size_t nm = json_array_size(msgs), nt = json_array_size(tools);
        rm_chat_msg m[16] = {0};
        rm_chat_call calls[16][4] = {{{0}}};
        char *tool_text[8] = {0};
        CHECK(nm <= 16 && nt <= 8);
        for (size_t i = 0; i < nt && i < 8; i++) CHECK_OK(rm_chat_tojson(json_array_get(tools, i), &tool_text[i]));
        for (size_t i = 0; i < nm && i < 16; i++) {
            json_t *mi = json_array_get(msgs, i), *tc = json_object_get(mi, "tool_calls");
            m[i].role = json_string_value(json_object_get(mi, "role"));
            m[i].content = json_string_value(json_object_get(mi, "content")); /* NULL for null */
            for (size_t k = 0; k < json_array_size(tc) && k < 4; k++) {
                json_t *fn = json_object_get(json_array_get(tc, k), "function");
                calls[i][k].name = json_string_value(json_object_get(fn, "name"));
                calls[i][k].arguments = json_string_value(json_object_get(fn, "arguments"));
                m[i].n_calls = (int)k + 1;
            }
            m[i].calls = calls[i];
        }
        char *out = NULL;
        rm_chat_opts o = {.tools = (const char *const *)tool_text, .n_tools = nt,
                          .add_generation_prompt = json_is_true(json_object_get(v, "gen")),
                          .no_thinking = json_is_false(json_object_get(v, "enable_thinking"))};
        CHECK_OK(rm_chat_render(qwen, RM_CHAT_NONE, m, nm, &o, &out));
        const char *want = json_string_value(json_object_get(v, "text"));
        checked++;
        if (out && !strcmp(out, want)) matched++;
        else CHECK_MSG(0, "chat with tools, line %d: got \"%s\" want \"%s\"", checked, out ? out : "", want);
        if (llama3 && nt) { /* a template without tools refuses them, naming itself */
            char *o2 = NULL;
            CHECK_ERR(rm_chat_render(llama3, RM_CHAT_NONE, m, nm, &o, &o2), RAMOLE_ERR_UNSUPPORTED);
            CHECK(strstr(ramole_last_error(), "llama3 template does not render tools") != NULL);
            CHECK(o2 == NULL);
        }
        rm_free(out);
        for (size_t i = 0; i < nt && i < 8; i++) rm_free(tool_text[i]);
        json_decref(v);
    }
    CHECK(checked >= 16);
    printf("  tokenizer chat templates with tools: %d/%d renderings exact\n", matched, checked);
    rm_free(data);
}

/* Python's json.dumps of numbers and strings the golden file may not hold. */
TEST(tokenizer_chat_tojson_python_forms) {
    static const struct { const char *in, *want; } cases[] = {
        {"[1.0, -0.0, 0.1, 1e-4, 1e-5, 123456789012345678, 1e16, 1.5e300, 2.5e-7, 100.0, 1234567890123456.0]",
         "[1.0, -0.0, 0.1, 0.0001, 1e-05, 123456789012345678, 1e+16, 1.5e+300, 2.5e-07, 100.0, 1234567890123456.0]"},
        {"{\"b\": [true, false, null], \"a\": {}, \"c\": []}", "{\"b\": [true, false, null], \"a\": {}, \"c\": []}"},
        {"\"q\\\"\\\\ /\\u0000\\u001f\\u007f\\n\\r\\t\\b\\f \u00e9\u4e2d\\ud83d\\ude00\"",
         "\"q\\\"\\\\ /\\u0000\\u001f\x7f\\n\\r\\t\\b\\f \u00e9\u4e2d\xf0\x9f\x98\x80\""},
        {"0.30000000000000004", "0.30000000000000004"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_error_t e;
        json_t *v = json_loads(cases[i].in, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        CHECK_MSG(v != NULL, "case %zu: %s", i, e.text);
        if (!v) continue;
        char *out = NULL;
        CHECK_OK(rm_chat_tojson(v, &out));
        CHECK_MSG(out && !strcmp(out, cases[i].want), "case %zu: got %s want %s", i, out ? out : "", cases[i].want);
        rm_free(out);
        json_decref(v);
    }
}

/* Random one- and two-byte mutations of a valid file: load either works or
 * fails with a message, and whatever loads encodes and decodes. */
TEST(tokenizer_mutated_json) {
    size_t n = strlen(SP_JSON);
    char *buf = rm_malloc(n + 1);
    uint64_t x = 88172645463325252ull;
    int loaded = 0, refused = 0;
    for (int it = 0; it < 1500 && buf; it++) {
        memcpy(buf, SP_JSON, n + 1);
        for (int k = 0; k < 1 + it % 2; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            buf[x % n] = (char)(" \"{}[]:,0a\\u1-9x"[(x >> 20) % 16]);
        }
        rm_tok *t = NULL;
        if (rm_tok_load_json(buf, n, NULL, 0, "mutated.json", &t) != RAMOLE_OK) {
            refused++;
            CHECK(t == NULL && ramole_last_error()[0]);
            continue;
        }
        loaded++;
        rm_tok_ids ids = {0};
        char *s = NULL;
        if (rm_tok_encode(t, "hi h\xc3\xa9 x</s>", 12, RM_TOK_ADD_SPECIAL, &ids) == RAMOLE_OK)
            if (rm_tok_decode(t, ids.ids, ids.n, 0, &s, NULL) == RAMOLE_OK) rm_free(s);
        rm_tok_ids_free(&ids);
        rm_tok_free(t);
    }
    rm_free(buf);
    CHECK(loaded > 0 && refused > 0);
}

/* One tokenizer, several threads, each with its own rm_tok_ids. */
#include <pthread.h>
typedef struct { const rm_tok *t; int ok; } thr_arg;
static void *thr_encode(void *p) {
    thr_arg *a = p;
    rm_tok_ids ids = {0};
    a->ok = 1;
    for (int r = 0; r < 300; r++) {
        char text[64];
        int len = snprintf(text, sizeof text, "hi hi%d \xc3\xa9 hihi %d", r % 7, r % 3);
        if (rm_tok_encode(a->t, text, (size_t)len, 0, &ids) != RAMOLE_OK) { a->ok = 0; break; }
        char *s = NULL;
        if (rm_tok_decode(a->t, ids.ids, ids.n, 0, &s, NULL) != RAMOLE_OK) { a->ok = 0; break; }
        /* digits are unknown in this vocabulary: compare the rest */
        if (strncmp(s, "hi hi", 5) != 0) a->ok = 0;
        rm_free(s);
    }
    rm_tok_ids_free(&ids);
    return NULL;
}

TEST(tokenizer_threads) {
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(SP_JSON, strlen(SP_JSON), NULL, 0, "sp.json", &t));
    if (!t) return;
    pthread_t th[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i].t = t;
        pthread_create(&th[i], NULL, thr_encode, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].ok);
    }
    rm_tok_free(t);
}

/* A tokenizer.json big enough for the fast scanner (tok_json.c): escapes,
 * both merge formats, a repeated key (last wins, as with jansson), and the
 * same file truncated (the full parser's line/column message). */
static char *big_json(bool dup, bool pairs) {
    size_t cap = 1 << 20, n = 0;
    char *b = rm_malloc(cap);
    if (!b) return NULL;
    n += (size_t)snprintf(b + n, cap - n, "{\"version\": \"1.0\",\n \"model\": {\"type\": \"BPE\", \"merges\": [%s],\n \"vocab\": {\n",
                          pairs ? "[\"a\", \"b\"], [\"ab\", \"\\u00e9\"]" : "\"a b\", \"ab \\u00e9\"");
    n += (size_t)snprintf(b + n, cap - n, "  \"a\": 0, \"b\": 1, \"ab\": 2, \"\\u00e9\": 3, \"ab\\u00e9\": 4, \"\\ud83d\\ude00\": 5,"
                          " \"q\\\"\\\\\\n\": 6%s", dup ? ", \"a\": 7" : "");
    for (int i = 8; i < 6000; i++) n += (size_t)snprintf(b + n, cap - n, ",\n  \"tok%d\": %d", i, i);
    n += (size_t)snprintf(b + n, cap - n, "}},\n \"added_tokens\": []}\n");
    return b;
}

TEST(tokenizer_fast_json) {
    for (int variant = 0; variant < 2; variant++) {
        char *js = big_json(false, variant == 1);
        if (!js) return;
        CHECK(strlen(js) > (1u << 16));
        rm_tok *t = NULL;
        CHECK_OK(rm_tok_load_json(js, strlen(js), NULL, 0, "big.json", &t));
        if (t) {
            CHECK(rm_tok_vocab_size(t) == 6000 && rm_tok_merge_count(t) == 2);
            CHECK(rm_tok_token_id(t, "\xc3\xa9", 2) == 3 && rm_tok_token_id(t, "\xf0\x9f\x98\x80", 4) == 5);
            CHECK(rm_tok_token_id(t, "q\"\\\n", 4) == 6 && rm_tok_token_id(t, "tok5999", 7) == 5999);
            rm_tok_ids ids = {0};
            CHECK_OK(rm_tok_encode(t, "ab\xc3\xa9", 4, 0, &ids));
            CHECK(ids.n == 1 && ids.ids[0] == 4);
            rm_tok_ids_free(&ids);
            rm_tok_free(t);
        }
        /* truncated: the message of the full parser */
        CHECK_ERR(rm_tok_load_json(js, strlen(js) - 40, NULL, 0, "big.json", &t), RAMOLE_ERR_FORMAT);
        CHECK(strstr(ramole_last_error(), "malformed JSON at line") != NULL);
        rm_free(js);
    }
    char *js = big_json(true, false);
    rm_tok *t = NULL;
    CHECK_OK(rm_tok_load_json(js, strlen(js), NULL, 0, "dup.json", &t));
    if (t) CHECK(rm_tok_token_id(t, "a", 1) == 7 && rm_tok_token_str(t, 0) == NULL);
    rm_tok_free(t);
    rm_free(js);
}
