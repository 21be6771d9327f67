/*
 * ramole/train.h — the trainers: a LoRA adapter over a frozen base, a small
 * base model from text, and a RouterLoRA router over a frozen base and a
 * pool of adapters; each is a spec struct and one run call that reports
 * progress through a callback. Also the router's evaluation on held-out
 * examples. Included by ramole.h.
 *
 * A run resumes bit-exactly from its checkpoints; the result is written
 * atomically, file by file, only after training succeeded. A NaN or
 * infinite loss stops the run (RAMOLE_TRAIN_EVENT_NAN, then an error),
 * keeping the last good checkpoint.
 */
#ifndef RAMOLE_TRAIN_H
#define RAMOLE_TRAIN_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RAMOLE_TRAIN_MAX_K 16     /* experts one sequence composes in router training */
#define RAMOLE_TRAIN_MAX_POOL 256 /* adapters in a router's training pool */

typedef enum {
    RAMOLE_TRAIN_LORA = 0,  /* base frozen; a fresh PEFT-initialised adapter (B = 0) trains; written as PEFT */
    RAMOLE_TRAIN_BASE,      /* every weight trains; written as a Hugging Face folder with the tokenizer */
    RAMOLE_TRAIN_ROUTER,    /* base and pool frozen; a router trains with random expert dropout; PEFT */
} ramole_train_kind;

/* 1 when name is a shape preset of RAMOLE_TRAIN_BASE ("tiny", "small"). */
int ramole_train_preset_known(const char *name);

typedef struct {
    ramole_train_kind kind;
    /* LORA, ROUTER: the frozen base (with its tokenizer); BASE: the model to
     * continue (its shape and weights), or NULL for random weights */
    const ramole_model *model;
    const char *out;                /* the adapter, router or model to write */
    const char *const *data;        /* LORA, ROUTER: one JSONL file of {"input", "output"[, "adapters"]};
                                     * BASE: text files */
    int n_data;
    /* LORA, ROUTER */
    int rank;
    float alpha;
    unsigned targets;               /* LORA: bits (1u << ramole_target); ROUTER: those of the pool */
    const unsigned char *adapt_layers; /* [n_layers] 1 to adapt; NULL: every layer */
    /* ROUTER */
    const char *const *pool;        /* the experts, PEFT folders or GGUF LoRA files */
    int n_pool;
    int top_k;                      /* experts per sequence (0: the pool, at most RAMOLE_TRAIN_MAX_K) */
    double lora_dropout;            /* each listed expert dropped, each other added, with this probability */
    double gate_loss;               /* weight of the gates' cross-entropy against each sequence's best expert */
    double gate_scale;              /* scores multiplied by this while training (0: 1, the paper's); saved folded
                                       into A_r, so the router serves as any RouterLoRA */
    const char *gate_pool;          /* what the router's scores pool over: "token" (NULL: the paper's, each
                                       token its own) or "prompt" (the mean over the prompt so far; saved
                                       with the router, which serves so) */
    double retrieval_prior;         /* lambda of the router's retrieval prior (0: none, the paper's): gates
                                       softmax(score + lambda x the expert's retrieval score); needs every
                                       example's "scores"; saved with the router, which serves so */
    /* BASE */
    const char *tokenizer;          /* a folder or tokenizer.json (required) */
    const char *arch;               /* "llama", "mistral", "qwen2" */
    const char *preset;             /* "tiny", "small" */
    int hidden, n_layers, n_heads, n_kv_heads, ffn, max_pos; /* over the preset (0: the preset's) */
    double init_std;
    /* the schedule */
    int64_t steps, epochs;          /* steps, or else epochs (0: 1) */
    int64_t stop_at;                /* end this run after this step (0: the end) */
    int batch, accum;               /* sequences per micro-batch, micro-batches per step */
    int ctx;                        /* positions of an example (0: LORA/ROUTER the model's, BASE min(max_pos, 128)) */
    int truncate;                   /* cut longer examples instead of refusing them */
    double lr, weight_decay, min_lr_ratio, clip;
    int64_t warmup;                 /* < 0: 5% of the steps, at most 100 */
    double val;                     /* held-out fraction of the data */
    uint64_t seed;
    int64_t eval_every;             /* held-out loss every N steps (0: at the end only) */
    const char *checkpoint;         /* NULL: none */
    int resume;
    int64_t save_every;
    int n_threads;                  /* 0: every core */
} ramole_train_params;

typedef enum {
    RAMOLE_TRAIN_EVENT_DATA = 0,    /* LORA, ROUTER: the data is read (n_truncated, ctx) */
    RAMOLE_TRAIN_EVENT_START,       /* before the first step (after a resume) */
    RAMOLE_TRAIN_EVENT_EVAL,        /* a held-out loss was measured after `step` */
    RAMOLE_TRAIN_EVENT_STEP,        /* a step was taken */
    RAMOLE_TRAIN_EVENT_NAN,         /* `step` gave a NaN or infinite loss; the run stops */
    RAMOLE_TRAIN_EVENT_DONE,        /* the run ended well (before the result is written) */
} ramole_train_event;

typedef struct {
    ramole_train_event event;
    int n_examples, n_val;          /* training and held-out examples */
    int seq;                        /* positions of a batch row */
    int n_truncated, ctx;           /* DATA: examples cut to ctx tokens */
    int64_t step, total, stop, first_step;
    int resumed;
    size_t n_params;                /* trainable parameters */
    double loss, gate_ce, lr, grad_norm;
    double val_loss;                /* the latest held-out loss; NAN before the first */
    double tokens, elapsed_s, tokens_per_s, eta_s;
} ramole_train_progress;

/* Called at each event; a status other than RAMOLE_OK stops the run and is
 * returned (set its message with ramole_error_set). */
typedef ramole_status (*ramole_train_fn)(const ramole_train_progress *p, void *user);

/* Train as p says. Errors name the option at fault (--pool, --ctx, ...),
 * the data file and line, or the model. */
ramole_status ramole_train(const ramole_train_params *p, ramole_train_fn fn, void *user);

/* ---- the router's evaluation ------------------------------------------------------- */

/* Positions whose next token is the prompt's, the answer's, or any. */
typedef enum { RAMOLE_SPAN_PROMPT = 0, RAMOLE_SPAN_ANSWER, RAMOLE_SPAN_ALL, RAMOLE_SPAN_COUNT } ramole_span;
/* An expert's weight averaged over every module (its gate), as its share of
 * what the experts add, or at the last module alone. */
typedef enum { RAMOLE_DEPTH_EVERY = 0, RAMOLE_DEPTH_SHARE, RAMOLE_DEPTH_LAST, RAMOLE_DEPTH_COUNT } ramole_depth;
const char *ramole_span_name(ramole_span s);      /* "prompt", "answer", "all" */
const char *ramole_depth_suffix(ramole_depth d);  /* "", "_share", "_last" */

typedef struct {
    int line;                       /* the example's line in its file */
    const char *expected;           /* its first "adapters" name, NULL if none */
    double weights[RAMOLE_DEPTH_COUNT][RAMOLE_SPAN_COUNT][RAMOLE_TRAIN_MAX_K]; /* mean per pool expert */
    int picked[RAMOLE_DEPTH_COUNT][RAMOLE_SPAN_COUNT];                       /* pool index */
} ramole_router_eval_example;

typedef struct {
    int examples;                   /* examples with an expected name */
    int right[RAMOLE_DEPTH_COUNT][RAMOLE_SPAN_COUNT];
} ramole_router_eval_summary;

double ramole_router_eval_accuracy(const ramole_router_eval_summary *s, ramole_depth d, ramole_span sp);

/* Per example, in file order, with the pool's adapter names; a status
 * other than RAMOLE_OK stops the evaluation and is returned. */
typedef ramole_status (*ramole_router_eval_fn)(const ramole_router_eval_example *e, const char *const *names,
                                               void *user);

typedef struct {
    const char *model;              /* the base */
    const char *const *pool;        /* the experts, in the order weights are given */
    int n_pool;                     /* 1..RAMOLE_TRAIN_MAX_K */
    const char *router;
    const char *data;               /* JSONL of held-out examples */
    int n_threads;
} ramole_router_eval_params;

/* Run every example teacher-forced with the router over the whole pool. */
ramole_status ramole_router_eval(const ramole_router_eval_params *p, ramole_router_eval_fn fn, void *user,
                                 ramole_router_eval_summary *out);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_TRAIN_H */
