/* ramole.c — the command line: one function per verb, in tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_tokenize.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"generate", cmd_generate, "generate -m MODEL (-p TEXT | --tokens 1,2,3) [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--frequency-penalty F] [--presence-penalty P] [--seed S] [--json | --json-schema TEXT | --json-schema-file FILE | --grammar TEXT | --grammar-file FILE] [-t THREADS] [-c CTX] [--kv-type f32|f16] [LORA]"},
    {"batch", cmd_batch, "batch -m MODEL --in requests.jsonl --out results.jsonl [-t THREADS] [--max-seqs N] [--kv-type f16|f32]   (offline, continuous batching)"},
    {"serve", cmd_serve, "serve -m MODEL [--registry URL] [--host 127.0.0.1] [--port 8080] [-t THREADS] [--max-seqs N] [--ctx N] [--kv-type f16|f32] [--queue N]   (OpenAI-compatible HTTP)"},
    {"logits", cmd_logits, "logits -m MODEL --tokens 1,2,3 [--all] [-t THREADS] [--kv-type f32|f16] [LORA]"},
    {"bench", cmd_bench, "bench -m MODEL [-t THREADS] [--prompt N] [--decode N] [--warmup 0|1] [--kv-block N]   (one JSON line of tokens/s)"},
    {"info", cmd_info, "info MODEL"},
    {"tokenize", cmd_tokenize, "tokenize -m MODEL_OR_TOKENIZER [--special] [--no-parse-special] (TEXT | - | --jsonl)"},
    {"detokenize", cmd_detokenize, "detokenize -m MODEL_OR_TOKENIZER [--skip-special] [--cleanup] [-n] (IDS | - | --jsonl)"},
    {"tokenizer", cmd_tokenizer, "tokenizer train --vocab-size N -o tokenizer.json [--special TOK]... FILES... | tokenizer export-gguf -m M -o OUT.gguf [--llamacpp-only]"},
    {"convert", cmd_convert, "convert IN OUT [--type f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|q5_k|q6_k|q4_k_m] [--base MODEL]   (HF folder <-> GGUF, PEFT <-> GGUF LoRA; OUT ending in .gguf writes GGUF)"},
    {"merge", cmd_merge, "merge -m MODEL --lora PATH[:W] [--lora ...] -o OUT [--type T]"},
    {"random-adapter", cmd_random_adapter, "random-adapter -m MODEL --rank R [--alpha A] [--targets q,k,v,o,gate,up,down] [--seed S] -o OUT [--format peft|gguf]"},
    {"train", cmd_train, "train lora|base|router|router-eval|retriever ...   (ramole train --help)"},
    {"embed", cmd_embed, "embed -m MODEL [--projection P] [--layer L|final] [--pooling mean|mean_all|last] (-p TEXT... | --file FILE | --jsonl FILE)   (JSON lines)"},
    {"retrieve", cmd_retrieve, "retrieve -m MODEL [--projection P] --pool tasks.jsonl (-p TEXT... | --file FILE | --jsonl FILE) [-k K] [--samples M]\n"
                               "         ramole retrieve -p TEXT [-k K] [--tenant T] [--registry URL]   (NAME<TAB>SCORE over the registry)"},
    {"registry", cmd_registry, "registry init -m MODEL [--projection P] [--router R] [--require-approval] | set | check | info   [--registry URL]"},
    {"adapter", cmd_adapter, "adapter add PATH --name NAME --samples FILE | list [--json] | show|rm|disable|enable|approve|reject NAME | recheck NAME|--all"},
    {"tenant", cmd_tenant, "tenant add NAME | tenant list"},
    {"check-format", cmd_check_format, "check-format (--json-schema TEXT | --json-schema-file F | --grammar GBNF | --grammar-file F) FILE...  # valid, incomplete or invalid at byte N"},
    {"key", cmd_key, "key create --tenant T --role generate|upload|admin | key revoke KEY|ID"},
    {"audit", cmd_audit, "audit [--since T]"},
    {"eval", cmd_eval, "eval --world DIR [--modes base,perfect,selection,mixture,fusion,router] [--settings id,ood] [--tasks a,b] [--limit N] [-t THREADS] [--out docs/EVAL.md] [--json FILE]"},
    {"random-model", cmd_random_model, "random-model --arch llama|mistral|qwen2 --preset tiny|tinyllama-1.1b|qwen2.5-0.5b -o OUT [--format hf|gguf] [--type T] [--seed S] [--tokenizer PATH]"},
};

static void usage(FILE *f) {
    fprintf(f, "ramole %s — one base model, an open pool of LoRA adapters\n\nusage:\n", RAMOLE_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fprintf(f, "  ramole %s\n", commands[i].help);
    fprintf(f, "\nLORA: --lora PATH[:WEIGHT] (repeatable; PEFT folder or GGUF LoRA) "
               "--mode none|explicit|selection|mixture|fusion|router --router PATH\n"
               "      --lora-type f32|f16|bf16 (how adapters are stored in memory; f16 halves their bytes)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("ramole %s\n", RAMOLE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ramole: unknown command '%s' (see ramole --help)\n", argv[1]);
    return 2;
}
