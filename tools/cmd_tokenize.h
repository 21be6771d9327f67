/*
 * cmd_tokenize.h — the tokenizer verbs of the `ramole` command line.
 * Each takes argv with argv[0] = the verb's own name and returns the
 * process exit code (0 ok, 1 failure, 2 usage error).
 *
 *   ramole tokenize -m MODEL_OR_TOKENIZER [--special] [--no-parse-special] TEXT|-
 *   ramole tokenize -m ... --jsonl          (stdin: one JSON string a line)
 *   ramole detokenize -m ... [--skip-special] [--cleanup] [-n] IDS|-
 *   ramole detokenize -m ... --jsonl        (stdin: one JSON id array a line)
 *   ramole tokenizer train --vocab-size N -o tokenizer.json [--special TOK]... FILES...
 *   ramole tokenizer export-gguf -m MODEL_OR_TOKENIZER -o OUT.gguf [--llamacpp-only]
 */
#ifndef RM_CMD_TOKENIZE_H
#define RM_CMD_TOKENIZE_H

int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);

#endif
