/*
 * ramole/run.h — one prompt through the model outside the engine: its
 * logits (for checking against other implementations) and a throughput
 * measurement. Generation goes through the engine (ramole.h). Included by
 * ramole.h.
 */
#ifndef RAMOLE_RUN_H
#define RAMOLE_RUN_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The adapters one run composes, named by path. */
typedef struct {
    ramole_compose_mode mode;           /* RAMOLE_COMPOSE_NONE: the base alone */
    int n_adapters;
    const char *adapters[RAMOLE_MAX_ADAPTERS];
    float weights[RAMOLE_MAX_ADAPTERS]; /* RAMOLE_COMPOSE_EXPLICIT */
    const char *router;                 /* RAMOLE_COMPOSE_ROUTER */
    ramole_adapter_type adapter_type;   /* how they are stored in memory */
} ramole_lora_set;

typedef struct {
    int n_threads;                      /* 0: every core */
    ramole_kv_type kv_type;
    int kv_block;                       /* positions per KV block (0: 16) */
} ramole_run_params;

/*
 * Run tokens[0..n) as one batch from position 0 with the adapters of lora
 * (NULL: none) and return the logits of the last position, or of every
 * position when all: *logits is rows x vocab floats (ramole_free), *n_rows
 * 1 or n. Adapter errors name the file. A router that pools its gates
 * over the prompt takes tokens[0..n) as the prompt.
 */
ramole_status ramole_model_logits(const ramole_model *m, const ramole_run_params *p, const ramole_lora_set *lora,
                                  const int32_t *tokens, int n, int all, float **logits, int *n_rows);

typedef struct {
    double prefill_tps;                 /* prompt tokens per second, one batch */
    double decode_tps;                  /* generated tokens per second, one at a time, greedy */
    double decode_cpu_util;             /* CPU time / (wall x threads) while decoding: well below 1,
                                         * other processes took the CPU */
    double decode_best_tps;             /* the fastest decode step, the one least disturbed */
    double decode_median_tps;           /* the median decode step (0 without decode) */
    double prefill_cpu_util;            /* CPU time / (wall x threads) during the prefill */
} ramole_bench_result;

/* Throughput of the base alone: a fixed pseudo-random prompt of n_prompt
 * tokens, then n_decode greedy steps. */
ramole_status ramole_model_bench(const ramole_model *m, const ramole_run_params *p, int n_prompt, int n_decode,
                                 ramole_bench_result *out);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_RUN_H */
