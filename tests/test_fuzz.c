/*
 * test_fuzz.c — every crash the libFuzzer harnesses (fuzz/) found, fed
 * again as the exact bytes the fuzzer saved, through the calls its harness
 * makes. Most of these fail loudly only under sanitizers (`make asan`);
 * each test also checks the contract the fix restores where it can be seen
 * without them. docs/RELIABILITY.md lists the findings.
 */
#include "test.h"
#include "../fuzz/fuzz_util.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
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

/* ---- huge claims in small files ---------------------------------------------- */

/* A little-endian byte builder for hand-made headers. */
typedef struct {
    uint8_t b[1024];
    size_t n;
} bytes;
static void put_u32(bytes *o, uint32_t v) { for (int i = 0; i < 4; i++) o->b[o->n++] = (uint8_t)(v >> 8 * i); }
static void put_u64(bytes *o, uint64_t v) { for (int i = 0; i < 8; i++) o->b[o->n++] = (uint8_t)(v >> 8 * i); }
static void put_str(bytes *o, const char *s) {
    put_u64(o, strlen(s));
    memcpy(o->b + o->n, s, strlen(s));
    o->n += strlen(s);
}
static void gguf_head(bytes *o, uint64_t n_tensors, uint64_t n_kv) {
    o->n = 0;
    memcpy(o->b, "GGUF", 4), o->n = 4;
    put_u32(o, 3), put_u64(o, n_tensors), put_u64(o, n_kv);
}

/* What one call may allocate for a file of at most 1 KiB. */
#define SMALL_BLOCK (1u << 20)
#define SMALL_PEAK (4u << 20)
static size_t live_at_mark;
static void mark(void) { rm_alloc_mark(), live_at_mark = rm_alloc_live_bytes(); }
static void check_small(const char *what) {
    CHECK_MSG(rm_alloc_largest() < SMALL_BLOCK, "%s: asked for a block of %zu bytes", what, rm_alloc_largest());
    CHECK_MSG(rm_alloc_peak_bytes() - live_at_mark < SMALL_PEAK, "%s: heap peak %zu bytes above the start", what,
              rm_alloc_peak_bytes() - live_at_mark);
}

/* Counts, lengths and dimensions of 2^40 and more in GGUF and safetensors
 * headers are refused (ERR_FORMAT) before they size any allocation. */
TEST(fuzz_huge_claims_refused) {
    bytes o;
    struct { const char *what; int kind; } cases[] = {
        {"2^40 tensors", 0}, {"2^40 keys", 1}, {"a 2^62-byte string", 2}, {"2^40 strings in an array", 3},
        {"2^60 bytes in an array", 4}, {"a 2^80-element tensor", 5}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        switch (cases[c].kind) {
        case 0: gguf_head(&o, 1ull << 40, 0); break;
        case 1: gguf_head(&o, 0, 1ull << 40); break;
        case 2: gguf_head(&o, 0, 1), put_str(&o, "general.name"), put_u32(&o, RM_GGUF_STRING), put_u64(&o, 1ull << 62); break;
        case 3:
            gguf_head(&o, 0, 1), put_str(&o, "tokenizer.ggml.tokens"), put_u32(&o, RM_GGUF_ARRAY);
            put_u32(&o, RM_GGUF_STRING), put_u64(&o, 1ull << 40), put_str(&o, "a");
            break;
        case 4:
            gguf_head(&o, 0, 1), put_str(&o, "x"), put_u32(&o, RM_GGUF_ARRAY), put_u32(&o, RM_GGUF_UINT8);
            put_u64(&o, 1ull << 60);
            break;
        case 5:
            gguf_head(&o, 1, 0), put_str(&o, "w"), put_u32(&o, 4);
            for (int d = 0; d < 4; d++) put_u64(&o, 1ull << 20);
            put_u32(&o, RM_GGML_F32), put_u64(&o, 0);
            while (o.n % 32) o.b[o.n++] = 0;
            put_u64(&o, 0);
            break;
        }
        for (size_t i = o.n; i < o.n + 64 && i < sizeof o.b; i++) o.b[i] = 0x41; /* some trailing bytes */
        o.n += 64;
        mark();
        rm_gguf *g = NULL;
        CHECK_MSG(rm_gguf_open_mem(o.b, o.n, "huge.gguf", &g) == RAMOLE_ERR_FORMAT, "%s accepted", cases[c].what);
        rm_gguf_free(g);
        check_small(cases[c].what);
    }
    static const char *st_headers[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,18446744073709551600]}}",
    };
    for (int h = -1; h < 2; h++) {
        o.n = 0;
        const char *js = h < 0 ? "" : st_headers[h];
        put_u64(&o, h < 0 ? (1ull << 63) - 1 : strlen(js)); /* h -1: a header "longer than the file" */
        memcpy(o.b + o.n, js, strlen(js)), o.n += strlen(js);
        put_u64(&o, 0), put_u64(&o, 0);
        mark();
        rm_safetensors *st = NULL;
        CHECK_MSG(rm_st_open_mem(o.b, o.n, "huge.safetensors", &st) == RAMOLE_ERR_FORMAT, "safetensors %d accepted", h);
        rm_st_free(st);
        check_small("safetensors");
    }
}

/* A GGUF model file of a few hundred bytes whose metadata claims 2^30
 * layers, widths and vocabulary (and no tensors) is refused without
 * sizing anything by those claims; so is a tokenizer whose special ids
 * point far outside its two tokens. */
TEST(fuzz_huge_model_claims_refused) {
    char path[512];
    snprintf(path, sizeof path, "%s/huge_claims.gguf", rm_test_tmp_dir());
    rm_gguf_writer *w = NULL;
    CHECK_OK(rm_gguf_writer_new(&w));
    if (!w) return;
    const char *keys[] = {"llama.block_count", "llama.context_length", "llama.embedding_length",
                          "llama.feed_forward_length", "llama.attention.head_count",
                          "llama.attention.head_count_kv", "llama.vocab_size", "llama.rope.dimension_count"};
    CHECK_OK(rm_gguf_set_str(w, "general.architecture", "llama"));
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) CHECK_OK(rm_gguf_set_u32(w, keys[i], 1u << 30));
    const char *toks[] = {"a", "b"};
    CHECK_OK(rm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    CHECK_OK(rm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 2));
    CHECK_OK(rm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 0x7fffffff));
    CHECK_OK(rm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 1u << 30));
    CHECK_OK(rm_gguf_writer_write(w, path));
    rm_gguf_writer_free(w);
    mark();
    rm_model *m = NULL;
    CHECK(rm_model_open(path, &m) != RAMOLE_OK);
    rm_model_free(m);
    check_small("model claims");
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open(path, &g));
    mark();
    rm_tok *tok = NULL;
    if (g && rm_tok_gguf_load(g, &tok) == RAMOLE_OK) CHECK(rm_tok_vocab_size(tok) <= 2);
    rm_tok_free(tok);
    check_small("tokenizer claims");
    rm_gguf_free(g);
}
