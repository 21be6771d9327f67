/*
 * tokenizer_bench.c — encode throughput of ramole's tokenizer.
 *
 *   build/bench/tokenizer_bench TOKENIZER DOCS.jsonl [MIN_SECONDS]
 *
 * DOCS.jsonl holds one JSON string per line (a document). The documents are
 * encoded one by one (no special tokens), with one reused rm_tok_ids, in
 * passes until MIN_SECONDS (default 2) have gone by; the first pass is a
 * warm-up and is not timed. Prints one JSON line:
 *   {"impl":"ramole","docs":N,"bytes":B,"tokens":T,"seconds":S,"mb_per_s":X,"tokens_per_s":Y}
 * bench/tokenizer_bench.mjs prints the same for the reference JS tokenizer.
 */
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER DOCS.jsonl [MIN_SECONDS]\n", argv[0]);
        return 2;
    }
    double min_s = argc > 3 ? atof(argv[3]) : 2.0;
    rm_tok *tok = NULL;
    if (rm_tok_load(argv[1], &tok)) {
        fprintf(stderr, "tokenizer_bench: %s\n", ramole_last_error());
        return 1;
    }
    char *data;
    size_t len;
    if (rm_file_read(argv[2], &data, &len)) {
        fprintf(stderr, "tokenizer_bench: %s\n", ramole_last_error());
        return 1;
    }
    size_t nd = 0, cap = 1024, bytes = 0;
    char **docs = rm_malloc(cap * sizeof *docs);
    size_t *lens = rm_malloc(cap * sizeof *lens);
    for (char *line = data; *line;) {
        char *nl = strchr(line, '\n');
        size_t ln = nl ? (size_t)(nl - line) : strlen(line);
        json_error_t e;
        json_t *v = ln ? json_loadb(line, ln, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e) : NULL;
        if (json_is_string(v)) {
            if (nd == cap) {
                cap *= 2;
                docs = rm_realloc(docs, cap * sizeof *docs);
                lens = rm_realloc(lens, cap * sizeof *lens);
            }
            lens[nd] = json_string_length(v);
            docs[nd] = rm_malloc(lens[nd] + 1);
            memcpy(docs[nd], json_string_value(v), lens[nd] + 1);
            bytes += lens[nd];
            nd++;
        }
        json_decref(v);
        line = nl ? nl + 1 : line + ln;
    }
    rm_tok_ids ids = {0};
    size_t tokens = 0, passes = 0;
    for (size_t i = 0; i < nd; i++) rm_tok_encode(tok, docs[i], lens[i], 0, &ids); /* warm-up */
    double t0 = rm_time_now(), el;
    do {
        for (size_t i = 0; i < nd; i++) {
            if (rm_tok_encode(tok, docs[i], lens[i], 0, &ids)) {
                fprintf(stderr, "tokenizer_bench: %s\n", ramole_last_error());
                return 1;
            }
            tokens += ids.n;
        }
        passes++;
        el = rm_time_now() - t0;
    } while (el < min_s);
    printf("{\"impl\":\"ramole\",\"docs\":%zu,\"bytes\":%zu,\"tokens\":%zu,\"passes\":%zu,\"seconds\":%.3f,"
           "\"mb_per_s\":%.3f,\"tokens_per_s\":%.0f}\n",
           nd, bytes, tokens / passes, passes, el, bytes * (double)passes / el / 1e6, tokens / el);
    rm_tok_ids_free(&ids);
    rm_tok_free(tok);
    for (size_t i = 0; i < nd; i++) rm_free(docs[i]);
    rm_free(docs);
    rm_free(lens);
    rm_free(data);
    return 0;
}
