/*
 * fuzz_request.c — one `ramole batch` request line (or server request
 * body): the JSON text is parsed by jansson, read by
 * rm_request_spec_from_json, and a request that parses is validated whole
 * by rm_engine_submit on a tiny random model with a small tokenizer
 * (prompt, token ids, chat messages, sampling, stop strings, composition,
 * context limits). Adapter names resolve through a source that makes
 * random adapters "eN" (rank 2..8) and "router", never touching files.
 * Nothing is generated: what was queued is cancelled.
 */
#include <jansson.h>

#include "engine/engine.h"
#include "engine/request_json.h"
#include "fuzz_util.h"

static rm_model *model;
static rm_engine *engine;

static rm_status source_load(void *user, const rm_model *base, const char *name, rm_adapter **out) {
    (void)user;
    const unsigned all = (1u << RM_TARGET_COUNT) - 1;
    if (!strcmp(name, "router")) return rm_adapter_random(base, 4, 4.0f, all, 999, 0.3f, out);
    char *end;
    long n = name[0] == 'e' && name[1] >= '0' && name[1] <= '9' ? strtol(name + 1, &end, 10) : -1;
    if (n < 0 || n > 64 || *end) return rm_err(RAMOLE_ERR_NOT_FOUND, "no adapter called %s", name);
    int rank = 2 + (int)(n % 4) * 2;
    return rm_adapter_random(base, rank, 2.0f * rank, all, 100 + (uint64_t)n, 0.25f, out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) {
        static const char *lines[] = {
            "{\"id\": \"ok1\", \"prompt\": [1, 2, 3], \"max_tokens\": 2, \"temperature\": 0}",
            "{\"prompt\": \"The capital of France is\", \"max_tokens\": 12, \"temperature\": 0.7, \"top_p\": 0.9, "
            "\"top_k\": 40, \"min_p\": 0.05, \"repeat_penalty\": 1.1, \"seed\": 7, \"ignore_eos\": true, "
            "\"stop\": [\"\\n\", \"<|im_end|>\"]}",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
            "\"Hi <|im_start|>\"}], \"max_tokens\": 4, \"stop\": \"x\"}",
            "{\"prompt\": [5, 6], \"lora\": {\"mode\": \"router\", \"adapters\": [{\"name\": \"e1\"}, {\"name\": "
            "\"e2\"}], \"router\": \"router\"}}",
            "{\"prompt\": \"hi\", \"lora\": {\"adapters\": [{\"name\": \"e3\", \"weight\": 0.5}, {\"path\": \"e4\", "
            "\"weight\": -1}]}}",
            "{\"prompt\": [1], \"lora\": {\"mode\": \"fusion\", \"adapters\": [{\"name\": \"e1\"}, {\"name\": \"e5\"}]}, "
            "\"max_tokens\": 0}",
            "{\"prompt\": [1, 319], \"lora\": {\"mode\": \"selection\", \"adapters\": [{\"name\": \"nope\"}]}}",
            "{\"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"p\", "
            "\"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"enum\": [1, \"b\"]}}, \"required\": [\"a\"]}}}}",
            "{\"prompt\": \"x\", \"grammar\": \"root ::= [a-z]{1,3} (\\\"!\\\" | \\\"?\\\")\"}",
            "{\"prompt\": \"x\", \"guided_choice\": [\"yes\", \"no\"], \"max_tokens\": 2}",
            "{\"prompt\": \"x\", \"structured_outputs\": {\"json\": \"{\\\"type\\\": \\\"integer\\\"}\"}}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"w?\"}, {\"role\": \"assistant\", \"content\": null, "
            "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5e-7}}}]}, "
            "{\"role\": \"tool\", \"content\": \"ok\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
            "\"f\", \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\"}}}}}], "
            "\"tool_choice\": \"required\", \"parallel_tool_calls\": false}",
        };
        fuzz_seed_texts("request", lines, sizeof lines / sizeof *lines);
        exit(0);
    }
    model = fuzz_tiny_model();
    rm_engine_params p = {.n_threads = 1, .max_seqs = 4, .n_ctx = 64, .kv_blocks = 16,
                          .adapter_cache_bytes = 1 << 20, .source = {.load = source_load}};
    if (rm_engine_new(model, &p, &engine) != RAMOLE_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *o = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!o) return 0;
    rm_request_spec spec;
    if (rm_request_spec_from_json(o, &spec) == RAMOLE_OK) {
        int64_t id;
        if (rm_engine_submit(engine, &spec.req, &id) == RAMOLE_OK) rm_engine_cancel_all(engine);
        rm_request_spec_free(&spec);
    }
    json_decref(o);
    return 0;
}
