/*
 * fuzz_http_json.c — the JSON bodies of `ramole serve`'s POST routes, read
 * by the same functions the server runs (src/serve/bodies.c): the input is
 * the route's path, a line end, then the body. /v1/completions and
 * /v1/chat/completions go through srv_generate_read (the fields, "stream",
 * "n", "model" naming an adapter, the "lora" object with retrieval, named
 * adapters, modes and the registry's router) and a request that reads is
 * submitted to the server's engine over the tiny model and cancelled;
 * /v1/retrieve, /v1/feedback, /v1/load_lora_adapter,
 * /v1/unload_lora_adapter, /tokenize and /detokenize go through srv_json_route against the registry
 * of fuzz_http.h, which every input leaves as it found it. A reply must be
 * a well-formed error or success, never a 5xx.
 */
#include "fuzz_http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) { /* the bodies tests/cli/serve.sh and tests/serve_client.mjs send, and their kin */
        char peft[700], gguf[700];
        snprintf(peft, sizeof peft,
                 "/v1/load_lora_adapter\n{\"lora_name\": \"vl\", \"lora_path\": \"%s/peft\"}", FUZZ_HTTP_FIXTURES);
        snprintf(gguf, sizeof gguf,
                 "/v1/load_lora_adapter\n{\"lora_name\": \"vg\", \"lora_path\": \"%s/a2.gguf\"}", FUZZ_HTTP_FIXTURES);
        const char *bodies[] = {
            "/v1/completions\n{\"prompt\": \"abc\", \"max_tokens\": 4, \"temperature\": 0, \"stream\": true}",
            "/v1/completions\n{\"prompt\": \"reverse the word cloud\", \"max_tokens\": 8, \"temperature\": 0, "
            "\"ignore_eos\": true, \"lora\": {\"mode\": \"none\"}}",
            "/v1/completions\n{\"prompt\": \"a b c\", \"max_tokens\": 4, \"stop\": [\"\\n\"], \"lora\": {\"top_k\": 3}}",
            "/v1/completions\n{\"prompt\": \"abc\", \"max_tokens\": 2, \"lora\": {\"adapters\": [{\"name\": \"a1\"}, "
            "{\"name\": \"a2\", \"weight\": 0.5}], \"mode\": \"mixture\"}}",
            "/v1/completions\n{\"prompt\": \"x\", \"lora\": {\"mode\": \"router\", \"adapters\": [{\"name\": \"a1\"}, "
            "{\"name\": \"a3\"}, {\"name\": \"mine\"}]}}",
            "/v1/completions\n{\"prompt\": \"hello\", \"lora\": {\"mode\": \"selection\", \"top_k\": 2}}",
            "/v1/completions\n{\"model\": \"a2\", \"prompt\": \"x\", \"max_tokens\": 2}",
            "/v1/completions\n{\"model\": \"tiny\", \"prompt\": [1, 2, 3], \"n\": 1, \"seed\": 7}",
            "/v1/completions\n{\"model\": \"p1\", \"prompt\": \"a\"}",
            "/v1/completions\n{\"prompt\": \"a\", \"temperature\": 7}",
            "/v1/completions\n{\"prompt\": ",
            "/v1/chat/completions\n{\"model\": \"tiny\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
            "{\"role\": \"user\", \"content\": \"the cat sat <|im_start|>\"}], \"max_tokens\": 3, \"stream\": false}",
            "/v1/chat/completions\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": true, "
            "\"lora\": {\"mode\": \"fusion\", \"adapters\": [{\"name\": \"a1\"}, {\"name\": \"a3\"}]}}",
            "/v1/completions\n{\"prompt\": [\"a b\", [1, 2, 3]], \"n\": 2, \"max_tokens\": 3, \"logprobs\": 2, "
            "\"echo\": true, \"logit_bias\": {\"5\": 3.5}, \"frequency_penalty\": 0.5}",
            "/v1/chat/completions\n{\"messages\": [{\"role\": \"developer\", \"content\": [{\"type\": \"text\", "
            "\"text\": \"x\"}]}, {\"role\": \"user\", \"content\": \"y\"}], \"logprobs\": true, \"top_logprobs\": 3, "
            "\"max_completion_tokens\": 3, \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
            "/tokenize\n{\"prompt\": \"the cat sat\", \"add_special_tokens\": false, \"return_token_strs\": true}",
            "/tokenize\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
            "/detokenize\n{\"tokens\": [1, 2, 3]}",
            "/v1/retrieve\n{\"text\": \"the cat sat on the mat\", \"top_k\": 2}",
            "/v1/retrieve\n{\"text\": \"the secret recipe\", \"top_k\": 100}",
            "/v1/feedback\n{\"id\": \"cmpl-fuzz\", \"rating\": 1, \"comment\": \"nice\"}",
            "/v1/feedback\n{\"id\": \"cmpl-nope\", \"rating\": -1}",
            peft,
            gguf,
            "/v1/load_lora_adapter\n{\"lora_name\": \"x\", \"lora_path\": \"/etc\"}",
            "/v1/unload_lora_adapter\n{\"lora_name\": \"mine\"}",
            "/v1/unload_lora_adapter\n{\"lora_name\": \"a1\"}",
        };
        fuzz_seed_texts("body", bodies, sizeof bodies / sizeof *bodies);
        exit(0);
    }
    fuzz_http_get();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_http_json_one(data, size);
    return 0;
}
