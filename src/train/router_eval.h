/*
 * router_eval.h — how a trained RouterLoRA router weighs its experts on
 * held-out examples (`ramole train router-eval`).
 *
 * Each example runs teacher-forced (prompt + answer) through the inference
 * forward with the router composed over the whole pool. Its positions that
 * predict a next token fall into spans: PROMPT (the next token is still
 * the prompt's), ANSWER (the next token is in the loss: the positions that
 * generate) and ALL. Per span, each expert's weight is averaged three ways
 * over depth:
 *   EVERY  the router's gate, averaged over every module it adapts
 *          (rm_lora_trace_gates);
 *   SHARE  the expert's share of what the experts add there
 *          (w_j |v_j| / sum_l w_l |v_l|), averaged likewise;
 *   LAST   the gate of the last module the forward applies (layer L-1's
 *          last adapted target) alone.
 * The pick is the expert with the highest mean (the first of ties),
 * compared with the example's first "adapters" name. The last module's
 * gates at prompt positions receive no gradient in training (nothing after
 * that module reads them).
 */
#ifndef RM_TRAIN_ROUTER_EVAL_H
#define RM_TRAIN_ROUTER_EVAL_H

#include "lora/compose.h"
#include "train/data.h"
#include "train/train.h"

typedef enum { RM_EVAL_SPAN_PROMPT, RM_EVAL_SPAN_ANSWER, RM_EVAL_SPAN_ALL, RM_EVAL_SPAN_COUNT } rm_eval_span;
typedef enum { RM_EVAL_DEPTH_EVERY, RM_EVAL_DEPTH_SHARE, RM_EVAL_DEPTH_LAST, RM_EVAL_DEPTH_COUNT } rm_eval_depth;
const char *rm_eval_span_name(rm_eval_span s);     /* "prompt", "answer", "all" */
const char *rm_eval_depth_suffix(rm_eval_depth d); /* "", "_share", "_last" */

/* One example's result. */
typedef struct {
    int line;               /* the example's line in its file */
    const char *expected;   /* its first "adapters" name (borrowed from the dataset), NULL if none */
    double weights[RM_EVAL_DEPTH_COUNT][RM_EVAL_SPAN_COUNT][RM_TRAIN_MAX_K]; /* mean per pool expert */
    int picked[RM_EVAL_DEPTH_COUNT][RM_EVAL_SPAN_COUNT];                   /* pool index */
} rm_router_eval_example;

typedef struct {
    int examples;           /* examples with an expected name */
    int right[RM_EVAL_DEPTH_COUNT][RM_EVAL_SPAN_COUNT];
} rm_router_eval_summary;

/* right / examples (0 when no example names its adapter). */
double rm_router_eval_accuracy(const rm_router_eval_summary *s, rm_eval_depth d, rm_eval_span sp);

/* Called per example, in dataset order; a status other than RAMOLE_OK stops
 * the evaluation and is returned. */
typedef rm_status (*rm_router_eval_fn)(const rm_router_eval_example *e, void *user);

/*
 * Evaluate the router composed on sequence slot 0 of `ctx` (its LoRA state
 * `ls`, attached to ctx) over every example of d (each of at least 2
 * tokens). The caller makes ls with max_k = n_pool (the trace's stride), n_ctx and n_batch of at least
 * the longest example's tokens - 1, and composes slot 0 as
 * RM_COMPOSE_ROUTER over pool[0..n_pool) in this order; the slot's cache
 * is cleared before each example, and its router restarted with the
 * example's prompt length (rm_lora_restart: a router that pools its gates
 * over the prompt pools over the example's input). Names compare by pool[j]->name.
 * Errors: ERR_INVALID (n_pool outside 1..RM_TRAIN_MAX_K, a too short
 * example), the decode's, the callback's, ERR_NOMEM.
 */
rm_status rm_router_eval(rm_ctx *ctx, rm_lora_state *ls, rm_adapter *const *pool, int n_pool, const rm_dataset *d,
                         rm_router_eval_fn each, void *user, rm_router_eval_summary *out);

#endif /* RM_TRAIN_ROUTER_EVAL_H */
