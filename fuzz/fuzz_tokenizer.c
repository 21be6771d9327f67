/*
 * fuzz_tokenizer.c — tokenizer.json (and tokenizer_config.json after a NUL
 * byte) through rm_tok_load_json: the model (BPE, vocab, merges), added
 * tokens, normalizer, pre-tokenizer regexes, post-processor, decoder. A
 * tokenizer that loads then encodes a fixed text and the input itself,
 * decodes the ids back (whole and streamed) and renders a chat.
 */
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) { /* the trained small BPE with its ChatML config */
        char path[600];
        snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_small_tokenizer_dir());
        fuzz_seed_file("trained-bpe.json", path);
        char cfg[600];
        snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", fuzz_small_tokenizer_dir());
        fuzz_seed_join("trained-bpe-with-config", path, cfg);
        exit(0);
    }
    return 0;
}

static void exercise(const rm_tok *tok, const char *text, size_t len) {
    rm_tok_ids ids = {0};
    for (unsigned flags = 0; flags < 4; flags++) {
        if (rm_tok_encode(tok, text, len, flags, &ids) != RAMOLE_OK) continue;
        char *out = NULL;
        size_t n = 0;
        if (rm_tok_decode(tok, ids.ids, ids.n, flags & 1 ? RM_TOK_SKIP_SPECIAL : 0, &out, &n) == RAMOLE_OK) rm_free(out);
        rm_tok_stream s = {0};
        const char *t;
        size_t tl;
        for (size_t i = 0; i < ids.n; i++) (void)rm_tok_stream_next(tok, &s, ids.ids[i], 0, &t, &tl);
        (void)rm_tok_stream_flush(tok, &s, &t, &tl);
        rm_tok_stream_free(&s);
    }
    rm_tok_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *json, *config;
    size_t nj, nc;
    fuzz_split(data, size, "", 1, &json, &nj, &config, &nc);
    rm_tok *tok = NULL;
    if (rm_tok_load_json((const char *)json, nj, nc ? (const char *)config : NULL, nc, "fuzz.json", &tok) != RAMOLE_OK)
        return 0;
    static const char fixed[] = "Hello  world!\n\t<|im_start|>user 123 caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\xa6\x89 \xff end";
    exercise(tok, fixed, sizeof fixed - 1);
    exercise(tok, (const char *)json, nj < 512 ? nj : 512);
    for (int32_t id = -1; id <= rm_tok_vocab_size(tok) && id < 1024; id++) {
        const char *p;
        size_t n;
        (void)rm_tok_piece(tok, id, &p, &n);
        (void)rm_tok_token_str(tok, id);
    }
    rm_chat_msg msgs[2] = {{"system", "be brief"}, {"user", "hi <|im_end|>"}};
    char *chat = NULL;
    if (rm_chat_apply(tok, RM_CHAT_NONE, msgs, 2, true, &chat) == RAMOLE_OK) rm_free(chat);
    rm_tok_free(tok);
    return 0;
}
