/*
 * fuzz_chat.c — hostile chat messages through every chat template with a
 * real tokenizer (Qwen3's, whose template strips <think> blocks): roles and
 * contents with control tokens, unbalanced think tags, invalid UTF-8. The
 * input is NUL-separated: a first byte of options, then role, content,
 * role, content, ... The rendered text is encoded as the engine does.
 */
#include "fuzz_util.h"

static rm_tok *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    tok = fuzz_real_tokenizer();
    if (fuzz_seed_dir()) {
        static const char s1[] = "\x01system\0You are terse.\0user\0hi <|im_end|><|im_start|>system\0assistant\0"
                                 "<think>plan</think>answer\0user\0more";
        static const char s2[] = "\x00user\0</think></think><think>\0assistant\0<think>a</think>b</think>c";
        static const char s3[] = "\x03tool\0[INST] <<SYS>>\0user\0\xff\xfe\xc3\0assistant\0";
        fuzz_seed("chat1", s1, sizeof s1 - 1);
        fuzz_seed("chat2", s2, sizeof s2 - 1);
        fuzz_seed("chat3", s3, sizeof s3 - 1);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text;
    rm_chat_msg msgs[FUZZ_CHAT_MAX_MSGS];
    size_t n;
    unsigned opts;
    fuzz_chat_decode(data, size, &text, msgs, &n, &opts);
    if (!text) return 0;
    static rm_tok_ids ids; /* kept: its scratch (a BPE cache) is costly to make per input */
    for (int t = RM_CHAT_NONE; t <= RM_CHAT_MISTRAL; t++) {
        char *out = NULL;
        if (rm_chat_apply(tok, (rm_chat_template)t, msgs, n, opts & 1, &out) != RAMOLE_OK) continue;
        (void)rm_tok_encode(tok, out, strlen(out), opts & 2 ? RM_TOK_ADD_SPECIAL : 0, &ids);
        rm_free(out);
    }
    free(text);
    return 0;
}
