/*
 * test_fuzz.c — every crash the libFuzzer harnesses (fuzz/) found, fed
 * again as the exact bytes the fuzzer saved, through the calls its harness
 * makes. Most of these fail loudly only under sanitizers (`make asan`);
 * each test also checks the contract the fix restores where it can be seen
 * without them. docs/RELIABILITY.md lists the findings.
 */
#include "test.h"
#include "../fuzz/fuzz_util.h"
#include "train/data.h"

#include <string.h>

rm_tok *tokt_family_tok(const char *family); /* test_tokenizer_golden.c: cached, SKIP when absent */

/* fuzz_chat: "\x03" "2\x03" is no message, with the generation prompt. The
 * Llama-2 template writes nothing then, and returned a buffer without its
 * NUL (heap overflow in the caller's strlen). */
TEST(fuzz_chat_no_messages) {
    static const uint8_t crash[] = {0x03, 0x32, 0x03};
    rm_tok *tok = tokt_family_tok("qwen3");
    if (!tok) return;
    char *text;
    rm_chat_msg msgs[FUZZ_CHAT_MAX_MSGS];
    size_t n;
    unsigned opts;
    fuzz_chat_decode(crash, sizeof crash, &text, msgs, &n, &opts);
    CHECK(n == 0 && (opts & 1));
    for (int t = RM_CHAT_NONE; t <= RM_CHAT_MISTRAL; t++) {
        char *out = NULL;
        if (rm_chat_apply(tok, (rm_chat_template)t, msgs, n, opts & 1, &out) != RAMOLE_OK) continue;
        if (t == RM_CHAT_LLAMA2) CHECK_MSG(out[0] == 0, "llama2 with no messages gave \"%.16s\"", out);
        CHECK(strlen(out) < 64);
        rm_free(out);
    }
    free(text);
}

/* fuzz_jsonl: its own seed. An example with an empty input on a tokenizer
 * without BOS encodes the prompt to no ids (a NULL array), and the prefix
 * check passed NULL to memcmp (UBSan). The line is refused by name. */
TEST(fuzz_jsonl_empty_input) {
    static const char crash[] =
        "{\"input\": \"Translate to French: good morning\\n\", \"output\": \"bonjour\"}\n\n"
        "{\"input\": \"the owl speaks\", \"output\": \"hoot\", \"adapters\": [\"owl\", \"bird\"]}\n"
        "{\"input\": \"\", \"output\": \"<|im_end|> caf\\u00e9 \\ud83e\\udd89\"}\n";
    rm_tok *tok = tokt_family_tok("qwen3");
    if (!tok) return;
    CHECK(sizeof crash - 1 == 207);
    rm_data_opts o = {.ctx = 32, .truncate = false, .eos = -1};
    rm_dataset *d = NULL;
    CHECK_ERR(rm_data_parse_jsonl(tok, crash, sizeof crash - 1, "crash.jsonl", &o, &d), RAMOLE_ERR_INVALID);
    CHECK_MSG(strstr(ramole_last_error(), "crash.jsonl:4:") != NULL, "%s", ramole_last_error());
    CHECK(d == NULL);
}
