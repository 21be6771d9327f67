/*
 * cli.h — shared pieces of the `ramole` command line: option parsing with
 * messages that name the command and the option, and token lists.
 */
#ifndef RM_CLI_H
#define RM_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ramole.h"

/* Each returns false after printing "ramole CMD: ..." to stderr. */
bool cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
bool cli_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out);
bool cli_u64(const char *cmd, const char *opt, const char *val, uint64_t *out);
/* "1,2,3" -> malloc'd array (the caller frees it). */
bool cli_tokens(const char *cmd, const char *val, int32_t **out, int *n);
/* --kv-type f32|f16 */
bool cli_kv_type(const char *cmd, const char *v, ramole_kv_type *out);
/* --prefill-tokens: "auto" (0: the engine's default), "all" (-1) or a count. */
bool cli_prefill_tokens(const char *cmd, const char *v, long *out);
/* How adapters are stored, for option opt: f32, f16 or bf16. */
bool cli_adapter_type(const char *cmd, const char *opt, const char *v, ramole_adapter_type *out);
/* A weight plan for option opt: an element type name or q4_k_m
 * (RAMOLE_PLAN_Q4_K_M), as ramole_model_save takes it. */
bool cli_plan(const char *cmd, const char *opt, const char *v, int *out);
/* A duration as M:SS or H:MM:SS ("?" when unknown or absurd): the trainers' ETA. */
void cli_fmt_time(double s, char *buf, size_t n);
/* "PATH[:WEIGHT]" in place: the weight is split off (default 1) only when
 * it parses as a number, so paths with colons still work. */
bool cli_lora_spec(const char *cmd, char *arg, float *weight);
/* "q,k,v,o,gate,up,down" (or q_proj, ...) -> bit mask of ramole_target. */
bool cli_targets(const char *cmd, const char *v, unsigned *mask);
/* A layer list such as "1-3" or "0,2,5-7" for a model of n_layers layers:
 * keep[l] set for each listed layer. Errors (printed): a malformed item, a
 * layer outside 0..n_layers-1, a backwards range. */
bool cli_layers(const char *cmd, const char *opt, const char *v, int n_layers, bool *keep);
/* The value after argv[*i] (advances *i), or NULL after printing an error. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
/* Print the library's last error as "ramole CMD: message" and return 1. */
int cli_fail(const char *cmd, ramole_status st);
bool cli_ends_with(const char *s, const char *suffix);
/* The whole of file `path`, NUL-terminated (malloc'd), its length in
 * *len (may be NULL), or NULL after printing "ramole CMD: cannot read PATH". */
char *cli_read_text(const char *cmd, const char *path, size_t *len);

/* JSON output goes through jansson, so that names holding quotes or
 * backslashes stay valid JSON. A number as printf's `fmt` ("%.6f",
 * "%.6g", ...) writes it, as a JSON real (printed without the trailing
 * zeros); null when x is not finite. */
json_t *cli_json_num(const char *fmt, double x);
/* A u64 as a JSON integer; above INT64_MAX (which JSON readers and jansson
 * do not hold exactly) as a string of its digits. */
json_t *cli_json_u64(uint64_t v);
/* Write obj (a new reference, freed here) to f as one compact line, keys
 * in the order they were set; false when it cannot be built or written. */
bool cli_json_line(FILE *f, json_t *obj);

int cmd_generate(int argc, char **argv);
int cmd_check_format(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_random_model(int argc, char **argv);
int cmd_random_adapter(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_train_retriever(int argc, char **argv); /* argv: train retriever ... */
int cmd_embed(int argc, char **argv);
int cmd_retrieve(int argc, char **argv);
int cmd_eval(int argc, char **argv);       /* tools/cmd_eval.c */
/* tools/cmd_registry.c */
int cmd_registry(int argc, char **argv);
int cmd_adapter(int argc, char **argv);
int cmd_tenant(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_audit(int argc, char **argv);
/* retrieve -p TEXT over a registry (no --pool, or --registry given) */
int cmd_registry_retrieve(int argc, char **argv);
int cli_convert_adapter(const char *in, const char *out, const char *base, int type); /* type -1: f32 */

#endif
