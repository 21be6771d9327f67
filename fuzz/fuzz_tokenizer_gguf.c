/*
 * fuzz_tokenizer_gguf.c — the tokenizer.* keys of a GGUF file
 * (tokenizer.ggml.model, tokens, token_type, merges, scores, special ids,
 * chat_template, tokenizer.ramole.pipeline) through rm_tok_gguf_load; a
 * tokenizer that loads encodes and decodes a fixed text.
 */
#include "formats/gguf.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) { /* the small BPE's keys as llama.cpp reads them, with and without ramole's */
        rm_tok *tok = NULL;
        if (rm_tok_load(fuzz_small_tokenizer_dir(), &tok)) abort();
        for (int ramole_keys = 0; ramole_keys < 2; ramole_keys++) {
            rm_gguf_writer *w = NULL;
            if (rm_gguf_writer_new(&w) || rm_tok_gguf_write(tok, w, ramole_keys) ||
                rm_gguf_writer_write(w, fuzz_path(0, "t.gguf")))
                abort();
            rm_gguf_writer_free(w);
            fuzz_seed_file(ramole_keys ? "tok-ramole.gguf" : "tok-llamacpp.gguf", fuzz_path(0, "t.gguf"));
        }
        rm_tok_free(tok);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rm_gguf *g = NULL;
    if (rm_gguf_open_mem(data, size, "fuzz.gguf", &g) != RAMOLE_OK) return 0;
    rm_tok *tok = NULL;
    rm_status st = rm_tok_gguf_load(g, &tok);
    rm_gguf_free(g); /* the tokenizer must not point into the file */
    if (st != RAMOLE_OK) return 0;
    static const char fixed[] = "Hello  world!\n<|im_start|>user caf\xc3\xa9 \xf0\x9f\xa6\x89 \xff";
    rm_tok_ids ids = {0};
    if (rm_tok_encode(tok, fixed, sizeof fixed - 1, RM_TOK_ADD_SPECIAL, &ids) == RAMOLE_OK) {
        char *out = NULL;
        size_t n = 0;
        if (rm_tok_decode(tok, ids.ids, ids.n, 0, &out, &n) == RAMOLE_OK) rm_free(out);
    }
    rm_tok_ids_free(&ids);
    rm_chat_msg msg = {"user", "hi"};
    char *chat = NULL;
    if (rm_chat_apply(tok, RM_CHAT_NONE, &msg, 1, true, &chat) == RAMOLE_OK) rm_free(chat);
    rm_tok_free(tok);
    return 0;
}
