/*
 * fuzz_jsonl.c — the JSONL readers of training and retrieval data over the
 * same bytes: rm_data_parse_jsonl ({"input", "output", "adapters"} lines,
 * tokenized with a real tokenizer into a small context, with and without
 * truncation) and rm_task_data_parse ({"task", "input"} lines).
 */
#include "fuzz_util.h"
#include "retrieval/tasks.h"
#include "train/data.h"

static rm_tok *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    tok = fuzz_real_tokenizer();
    if (fuzz_seed_dir()) {
        static const char train[] =
            "{\"input\": \"Translate to French: good morning\\n\", \"output\": \"bonjour\"}\n"
            "\n"
            "{\"input\": \"the owl speaks\", \"output\": \"hoot\", \"adapters\": [\"owl\", \"bird\"]}\n"
            "{\"input\": \"\", \"output\": \"<|im_end|> caf\\u00e9 \\ud83e\\udd89\"}\n";
        static const char tasks[] =
            "{\"task\": \"sentiment\", \"input\": \"I loved it\", \"output\": \"positive\"}\n"
            "{\"task\": \"sentiment\", \"input\": \"awful\"}\n"
            "{\"task\": \"translate\", \"input\": \"good morning\"}\r\n"
            "{\"task\": \"translate\", \"input\": \"good night\"}";
        fuzz_seed("train.jsonl", train, sizeof train - 1);
        fuzz_seed("tasks.jsonl", tasks, sizeof tasks - 1);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    for (int truncate = 0; truncate < 2; truncate++) {
        rm_data_opts o = {.ctx = 32, .truncate = truncate, .eos = -1};
        rm_dataset *d = NULL;
        if (rm_data_parse_jsonl(tok, text, size, "fuzz.jsonl", &o, &d) == RAMOLE_OK) {
            for (int i = 0; i < d->n; i++)
                if (d->ex[i].n < 2 || d->ex[i].n - 1 > o.ctx) abort(); /* every example fits the context */
            rm_dataset_free(d);
        }
    }
    for (int min = 1; min <= 2; min++) {
        rm_task_data *t = NULL;
        if (rm_task_data_parse(text, size, "fuzz.jsonl", min, &t) == RAMOLE_OK) rm_task_data_free(t);
    }
    return 0;
}
