/*
 * test_fuzz.c — every crash the libFuzzer harnesses (fuzz/) found, fed
 * again as the exact bytes the fuzzer saved, through the calls its harness
 * makes. Most of these fail loudly only under sanitizers (`make asan`);
 * each test also checks the contract the fix restores where it can be seen
 * without them. docs/RELIABILITY.md lists the findings.
 */
#include "test.h"
#include "../fuzz/fuzz_http.h"
#include "../fuzz/fuzz_util.h"
#include "engine/gbnf.h"
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

/* HTTP bodies of about 1 KiB that claim huge sizes — token budgets, top-k,
 * sampling limits, a multipart part's length, a GGUF upload's counts — go
 * through the server's own body code (fuzz_http.h) without any block over
 * 1 MiB; those the server refuses get a 400 that names the field. */
TEST(fuzz_http_huge_claims_small) {
    fuzz_http *h = fuzz_http_get();
    static const char *json[] = {
        "/v1/completions\n{\"prompt\": [1, 2, 3], \"max_tokens\": 9223372036854775807, \"top_k\": 2147483647}",
        "/v1/completions\n{\"prompt\": \"x\", \"max_tokens\": 1099511627776, \"stop\": [\"a\", \"b\"], "
        "\"seed\": 18446744073709551615}",
        "/v1/chat/completions\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 4294967296, "
        "\"lora\": {\"top_k\": 1099511627776}}",
        "/v1/completions\n{\"prompt\": \"x\", \"lora\": {\"adapters\": [{\"name\": \"a1\", \"weight\": 1e308}]}}",
        "/v1/retrieve\n{\"text\": \"x\", \"top_k\": 1099511627776}",
        "/v1/feedback\n{\"id\": \"cmpl-fuzz\", \"rating\": 4294967297}",
    };
    for (size_t i = 0; i < sizeof json / sizeof *json; i++) {
        mark();
        fuzz_http_json_one((const uint8_t *)json[i], strlen(json[i]));
        check_small(json[i]);
    }
    srv_reply rep;
    srv_gen g;
    static const char topk[] = "{\"prompt\": \"x\", \"lora\": {\"top_k\": 1099511627776}}";
    CHECK(!srv_generate_read(h->srv, fuzz_http_caller(), false, topk, sizeof topk - 1, &g, &rep));
    char *dumped = json_dumps(rep.json, 0);
    CHECK_MSG(rep.status == 400 && dumped && strstr(dumped, "lora.top_k"), "%d", rep.status);
    free(dumped);
    srv_reply_clear(&rep);
    static const char rk[] = "{\"text\": \"x\", \"top_k\": 1099511627776}";
    CHECK(srv_json_route(h->srv, fuzz_http_caller(), "/v1/retrieve", rk, sizeof rk - 1, &rep));
    CHECK(rep.status == 400);
    srv_reply_clear(&rep);

    /* an upload whose file part declares 2^40 bytes and holds a GGUF header claiming 2^64 - 1 tensors */
    bytes o;
    gguf_head(&o, ~0ull, 1);
    char body[2048];
    int k = snprintf(body, sizeof body,
                     "multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name=name\r\n\r\nhuge\r\n"
                     "--b\r\nContent-Disposition: form-data; name=samples; filename=s.jsonl\r\n\r\n{\"input\": \"x\"}\r\n"
                     "--b\r\nContent-Disposition: form-data; name=file; filename=a.gguf\r\n"
                     "Content-Length: 1099511627776\r\n\r\n");
    memcpy(body + k, o.b, o.n);
    k += (int)o.n + snprintf(body + k + o.n, sizeof body - (size_t)k - o.n, "\r\n--b--\r\n");
    CHECK(k < 1024);
    mark();
    fuzz_http_upload_one((const uint8_t *)body, (size_t)k);
    check_small("upload claims");
    const char *ct = "multipart/form-data; boundary=b";
    srv_upload *u = srv_upload_new(ct);
    CHECK(u != NULL);
    if (!u) return;
    srv_upload_feed(u, strchr(body, '\n') + 1, (size_t)k - (size_t)(strchr(body, '\n') + 1 - body));
    srv_upload_reply(h->srv, u, fuzz_http_caller(), &rep, NULL);
    CHECK_MSG(rep.status == 422, "%d", rep.status);
    srv_reply_clear(&rep);
    srv_upload_free(u);
}

/* An upload the fuzzer saved (tests/data/fuzz/NAME: Content-Type, a line
 * end, the body), fed whole to the server's upload; its reply in *rep. */
static void upload_replay(const char *name, srv_reply *rep) {
    fuzz_http *h = fuzz_http_get();
    char path[256], *in = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "tests/data/fuzz/%s", name);
    memset(rep, 0, sizeof *rep);
    CHECK_OK(rm_file_read(path, &in, &n));
    char *nl = in ? memchr(in, '\n', n) : NULL;
    CHECK(nl != NULL);
    if (!nl) {
        rm_free(in);
        return;
    }
    *nl = 0;
    srv_upload *u = srv_upload_new(in);
    CHECK(u != NULL);
    if (u) {
        srv_upload_feed(u, nl + 1, n - (size_t)(nl + 1 - in));
        srv_upload_reply(h->srv, u, fuzz_http_caller(), rep, NULL);
    }
    srv_upload_free(u);
    rm_free(in);
}

static const char *reply_message(const srv_reply *rep) {
    const char *m = json_string_value(json_object_get(json_object_get(rep->json, "error"), "message"));
    return m ? m : "(no message)";
}

/* fuzz_http_upload: a GGUF upload whose tensor data was mutated; the
 * registry's refusal quotes bytes of the file that are not UTF-8, so the
 * 422's JSON could not be made and the server answered 500 "out of
 * memory". Error messages are now made valid UTF-8 ('?' for bad bytes). */
TEST(fuzz_http_upload_non_utf8_error) {
    srv_reply rep;
    upload_replay("http_upload_non_utf8_error", &rep);
    CHECK_MSG(rep.status == 422 && strstr(reply_message(&rep), "unexpected tensor blk.0.attn_q.weight.??ra_b"),
              "%d %s", rep.status, reply_message(&rep));
    srv_reply_clear(&rep);
    char bad[] = "name \xff\xfe, cut \xe2\x82", good[] = "caf\xc3\xa9 \xf0\x9f\xa6\x89";
    CHECK(!srv_utf8_valid(bad) && srv_utf8_valid(good));
    CHECK(!srv_utf8_valid("\xc0\xaf") && !srv_utf8_valid("\xed\xa0\x80") && !srv_utf8_valid("\xf4\x90\x80\x80"));
    srv_utf8_scrub(bad);
    CHECK(!strcmp(bad, "name ??, cut ??"));
    json_t *e = error_obj(400, "\xff" "x", NULL, NULL);
    CHECK(e != NULL);
    json_decref(e);
}

/* fuzz_http_upload: a GGUF upload of an unsupported version was answered
 * 500, as if the server had failed; it is the client's file: 422. */
TEST(fuzz_http_upload_gguf_version) {
    srv_reply rep;
    upload_replay("http_upload_gguf_version", &rep);
    CHECK_MSG(rep.status == 422 && strstr(reply_message(&rep), "GGUF version 1635000835 is not supported"), "%d %s",
              rep.status, reply_message(&rep));
    /* the file is named as the client named it, not by the server's temporary path */
    CHECK_MSG(!strncmp(reply_message(&rep), "adapter a1.gguf: a1.gguf: ", 26), "%s", reply_message(&rep));
    srv_reply_clear(&rep);
}

/* fuzz_format: an empty literal repeated ('""?') as the first element of
 * a sequence made its rule from no items at a null item list (undefined
 * pointer arithmetic, seen by UBSan). The empty text repeated is fine
 * once ('?'); repeated without bound it is left recursion, refused. */
TEST(fuzz_format_empty_literal_repeated) {
    static const char crash[] = "oot ::= name \" \" (\"\"?\0\0\0 \"was\") \" \" [2-9] '[0-9]{0,2} \".\"\nname ::= [A-Z]n is 12.";
    rm_grammar *g = NULL;
    CHECK(rm_gbnf_grammar(crash, sizeof crash - 1, &g) == RAMOLE_ERR_INVALID); /* no rule root, among others */
    rm_grammar_free(g);
    CHECK_OK(rm_gbnf_grammar("root ::= (\"\"? \"a\")", 18, &g));
    rm_grammar_free(g);
    CHECK(rm_gbnf_grammar("root ::= \"\"? \"a\"", 16, &g) == RAMOLE_OK);
    rm_grammar_free(g);
    CHECK(rm_gbnf_grammar("root ::= \"\"* \"a\"", 16, &g) == RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "left-recursive") != NULL);
}
