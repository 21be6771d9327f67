/* ramole.c — the command line: one function per verb, in tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"generate", cmd_generate, "generate -m MODEL (-p TEXT | --tokens 1,2,3) [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [-t THREADS] [-c CTX]"},
    {"logits", cmd_logits, "logits -m MODEL --tokens 1,2,3 [--all] [-t THREADS]"},
    {"bench", cmd_bench, "bench -m MODEL [-t THREADS] [--prompt N] [--decode N]   (one JSON line of tokens/s)"},
    {"info", cmd_info, "info MODEL"},
    {"convert", cmd_convert, "convert IN OUT [--type f32|f16|bf16|q8_0]   (HF folder <-> GGUF; OUT ending in .gguf writes GGUF)"},
    {"random-model", cmd_random_model, "random-model --arch llama|mistral|qwen2 --preset tiny|tinyllama-1.1b|qwen2.5-0.5b -o OUT [--format hf|gguf] [--type T] [--seed S]"},
};

static void usage(FILE *f) {
    fprintf(f, "ramole %s — one base model, an open pool of LoRA adapters\n\nusage:\n", RAMOLE_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fprintf(f, "  ramole %s\n", commands[i].help);
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
