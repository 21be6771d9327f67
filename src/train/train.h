/*
 * train.h — training foundation: a differentiable copy of a Llama-family
 * model (forward that keeps what the backward needs, and the backward),
 * AdamW with warm-up + cosine schedule, gradient clipping and accumulation,
 * and checkpoints that resume bit-exactly.
 *
 * Training model ("tm"). A tm owns its parameters as plain arrays of one
 * scalar type. The same source (train_impl.h) is compiled twice: rm_tm_f32
 * (float, for training) and rm_tm_f64 (double, for finite-difference
 * gradient checks); the two APIs are identical except for the scalar type.
 * A tm is built from an rm_model (weights converted, whatever their type)
 * and does not reference it afterwards.
 *
 * Gradient kinds (rm_train_kind):
 *   FULL    every base parameter trains (embedding, norms, q/k/v/o (+ qwen2
 *           q/k/v bias), gate/up/down, final norm, untied head).
 *   LORA    one adapter trains, base frozen: y = W0 x + s B A x on the
 *           adapter's modules (A [r][din], B [dout][r], s fixed).
 *   ROUTER  a RouterLoRA router (A_r [r_r][din], B_r [dout][r_r]) trains;
 *           base and a pool of expert adapters frozen. Per module and token:
 *           u_j = A_j x, v_j = s_j B_j u_j (0 where expert j lacks the module,
 *           but it still takes part in the softmax with score 0),
 *           q = A_r x, score_j = <q, B_r^T v_j> / sqrt(r_r), w = softmax,
 *           y = W0 x + sum_j w_j v_j. The experts of a token are those of its
 *           sequence (rm_train_batch.experts, indices into the pool), so k
 *           may differ per sequence.
 *
 * Batch and loss: B sequences of T positions each (positions 0..T-1, causal
 * attention inside a sequence). Each position has an input token, a target
 * id and a mask byte; the loss is the mean over masked-in positions of
 * -log softmax(logits)[target]. Padding goes at the end of a sequence with
 * mask 0 (any valid token id): thanks to the causal mask it changes nothing.
 *
 * Trainable parameters of every kind are one contiguous array
 * (rm_tm_*_params) with a matching gradient array (rm_tm_*_grads) and a
 * table of named tensors, so that optimisers and checkpoints see one vector.
 *
 * Threads and determinism: matrix products are OpenBLAS gemm calls split by
 * output rows (or columns, for products with few rows) over the tm's
 * rm_pool, OpenBLAS itself single-threaded (measured faster here than
 * OpenBLAS's own threads: bench/bench_train's sgemm peak line); row work (norms, RoPE, attention per
 * (sequence, head)) is split by rows; every reduction over rows (norm and
 * bias gradients, embedding scatter, loss sum) runs in a fixed order. For a
 * given thread count results are bit-identical from run to run.
 *
 * Memory: every activation and scratch buffer is reserved at creation for
 * max_batch x max_seq positions; forward/backward never allocate.
 * Activations kept: per layer the residual input, both normed inputs and
 * their 1/rms, q/k/v after RoPE, attention probabilities [B][H][T][T],
 * attention output, gate/up pre-activations, sigmoid of the gate and SwiGLU
 * output; LORA: U = X A^T of every adapted module.
 *
 * Lifetimes: a tm owns everything it uses (copies of the base and of the
 * adapters). A trainer borrows its tm: free the trainer first.
 */
#ifndef RM_TRAIN_H
#define RM_TRAIN_H

#include "core/core.h"
#include "lora/adapter.h"

typedef enum { RM_TRAIN_FULL = 0, RM_TRAIN_LORA, RM_TRAIN_ROUTER, RM_TRAIN_KIND_COUNT } rm_train_kind;
const char *rm_train_kind_name(rm_train_kind k); /* "full", "lora", "router" */

#define RM_TRAIN_MAX_K 16     /* experts per sequence in ROUTER training */
#define RM_TRAIN_MAX_POOL 256 /* adapters in a ROUTER training pool; each sequence uses at most RM_TRAIN_MAX_K */

typedef struct {
    rm_train_kind kind;
    int max_batch;   /* B: sequences per forward */
    int max_seq;     /* T: positions per sequence */
    int n_threads;   /* <= 0: all CPUs */
    /* LORA: the adapter to train (structure: ranks, scales, targets; and
     * initial values). Copied. */
    const rm_adapter *lora;
    /* ROUTER: the frozen expert pool and the router to train (its module
     * ranks and initial A_r, B_r; its scale is unused). Copied. Every module
     * some expert adapts must be adapted by the router. */
    const rm_adapter *const *experts;
    int n_experts;
    const rm_adapter *router;
    int max_k;       /* ROUTER: most experts a sequence may use (0: n_experts); <= RM_TRAIN_MAX_K */
    /* ROUTER: every score <A_r x, B_r^T v_j> / sqrt(r_r) is multiplied by
     * gate_scale (0: 1, the paper's). The model trains A_r as given and
     * export writes gate_scale * A_r, the router that scores as trained;
     * under Adam a scale g is the same as starting A_r g times larger and
     * moving it g times faster, so the gates can leave a third each within
     * a run where the experts' outputs (and so the keys) are small. */
    double gate_scale;
    /* ROUTER: what the scores pool over (adapter.h, rm_gate_pool; TOKEN,
     * the paper's, by default). A sequence's prompt is its positions up to
     * the first masked-in one: P = that position + 1 (the whole sequence
     * when none is). The exported router carries it (rm_adapter.gate_pool). */
    rm_gate_pool gate_pool;
    /* ROUTER: lambda of the retrieval prior (adapter.h; 0, the paper's:
     * none; at most RM_RETRIEVAL_PRIOR_MAX). The gates are softmax_e(z_e +
     * lambda r_e), r the batch's retrieval scores, as served. The exported
     * router carries it (rm_adapter.retrieval_prior). */
    double retrieval_prior;
} rm_train_params;

typedef struct {
    int B, T;               /* 1..max_batch, 1..max_seq */
    const int32_t *tokens;  /* [B][T] inputs, all in [0, vocab) */
    const int32_t *targets; /* [B][T] target ids, in [0, vocab) where mask */
    const uint8_t *mask;    /* [B][T] 1: position counts in the loss */
    /* ROUTER only: experts of sequence b are experts[b*RM_TRAIN_MAX_K + j]
     * for j < n_experts[b] (pool indices). NULL: the whole pool for all. */
    const int32_t *experts;   /* [B][RM_TRAIN_MAX_K] */
    const int32_t *n_experts; /* [B], each 1..max_k */
    /* ROUTER only: r_e, the retrieval score of each sequence's expert e
     * (in [-1, 1]), for a router with a retrieval prior; NULL: all 0. */
    const float *retrieval;   /* [B][RM_TRAIN_MAX_K] */
    /* ROUTER only: weight of the gate loss (0: off). The loss becomes
     * LM + gate_loss * G, where G is the cross-entropy between the gates and
     * the sequence's best expert (the one of its experts whose own loss on
     * the sequence, applied alone, is lowest: rm_tm_*_expert_losses) at each
     * position up to the sequence's last masked-in one (the prompt's too:
     * the answer reads its keys and values), averaged over those positions
     * and over the router's modules. It teaches every module to weigh the expert that
     * explains the sequence, with no label: base and experts are frozen, so
     * the targets are constants of the batch. Costs one forward per expert
     * slot before the batch's own. */
    double gate_loss;
} rm_train_batch;

/* One trainable tensor: a [rows][cols] block of the parameter vector. */
typedef struct {
    char name[96];     /* HF-style ("model.layers.0.self_attn.q_proj.weight",
                          "...q_proj.lora_A.weight" for LORA and ROUTER) */
    int64_t rows, cols;
    size_t offset;     /* into the parameter (and gradient) vector */
    bool decay;        /* a matrix (AdamW decays it); false for norms, biases */
} rm_train_tensor;

/* ---- the training model (f32; rm_tm_f64 below is the same in double) ---- */

typedef struct rm_tm_f32 rm_tm_f32;
typedef struct rm_tm_f64 rm_tm_f64;

/*
 * Build a training model from `base` (any weight type, converted) for the
 * gradient kind and sizes of `p`. Errors: ERR_INVALID (sizes, kind without
 * its adapters, router not covering an expert's module), ERR_MISMATCH (an
 * adapter made for another base), ERR_NOMEM.
 */
rm_status rm_tm_f32_new(const rm_model *base, const rm_train_params *p, rm_tm_f32 **out);
/* A FULL-kind helper: random weights (rm_model_random's init: uniform with
 * standard deviation std, norms 1). */
rm_status rm_tm_f32_new_random(const rm_model_config *cfg, uint64_t seed, float std, const rm_train_params *p,
                               rm_tm_f32 **out);
void      rm_tm_f32_free(rm_tm_f32 *tm); /* NULL is a no-op */

const rm_model_config *rm_tm_f32_config(const rm_tm_f32 *tm);
rm_train_kind rm_tm_f32_kind(const rm_tm_f32 *tm);
/* The trainable parameters and their gradients ([n] each), and the table. */
float    *rm_tm_f32_params(rm_tm_f32 *tm, size_t *n);
float    *rm_tm_f32_grads(rm_tm_f32 *tm, size_t *n);
int       rm_tm_f32_n_tensors(const rm_tm_f32 *tm);
const rm_train_tensor *rm_tm_f32_tensor(const rm_tm_f32 *tm, int i);
rm_pool  *rm_tm_f32_pool(rm_tm_f32 *tm);
void      rm_tm_f32_zero_grad(rm_tm_f32 *tm);

/*
 * Forward only: *loss = mean CE over masked-in positions (+ the gate term
 * when b->gate_loss > 0). Errors: ERR_INVALID (sizes, empty mask, bad
 * expert lists, a gate loss that is negative, not finite or not for a
 * ROUTER model), ERR_RANGE (a token or target id out of range; a loss that
 * is NaN or infinite).
 */
rm_status rm_tm_f32_loss(rm_tm_f32 *tm, const rm_train_batch *b, double *loss);
/* The gate cross-entropy G of the last forward (0 when its gate loss was 0). */
double    rm_tm_f32_gate_ce(const rm_tm_f32 *tm);
/*
 * ROUTER: out[s*RM_TRAIN_MAX_K + e] = the mean CE over sequence s's
 * masked-in positions with its expert slot e applied alone (gate 1), for
 * e < its expert count; NAN for other slots and for a sequence without
 * masked-in positions. One forward per slot; gradients untouched.
 */
rm_status rm_tm_f32_expert_losses(rm_tm_f32 *tm, const rm_train_batch *b, double *out);
/*
 * Forward and backward: *loss as above; the gradient of grad_scale * loss
 * is ADDED to the gradient vector (zero it first; accumulate micro-batches
 * with grad_scale = 1/n_micro). On error the gradients are unchanged.
 */
rm_status rm_tm_f32_backward(rm_tm_f32 *tm, const rm_train_batch *b, double grad_scale, double *loss);

/* Copy the trained LORA adapter (or ROUTER router) into `dst`, which must
 * have the same module ranks (e.g. the adapter the tm was built from). */
rm_status rm_tm_f32_export_adapter(const rm_tm_f32 *tm, rm_adapter *dst);

/* The base as it is now (after FULL training): a new in-memory model with
 * f32 weights, the tm's configuration and row order; it owns its memory.
 * Save it with rm_model_save, free it with rm_model_free. Note: a GGUF
 * base's rope_freqs factors are not carried over (the config's llama3
 * scaling is). */
rm_status rm_tm_f32_export_model(const rm_tm_f32 *tm, rm_model **out);

/*
 * Where the time of forward/backward goes, counted always (a clock read per
 * matrix product and per attention pass: noise next to the work). gemm: the
 * projections, the head and the LoRA/router products (every mm() call, wall
 * time on the submitting thread, so a product split over the pool counts
 * once); attention: the per-(sequence, head) passes, their small gemms and
 * softmax included. Flops are 2 M N K per product (attention: its gemms
 * over the full T x T square). Summed since creation or the last reset.
 */
typedef struct {
    double gemm_s, gemm_flop;
    double attn_s, attn_flop;
    int64_t n_gemm;
} rm_train_profile;
void rm_tm_f32_profile(rm_tm_f32 *tm, rm_train_profile *out, bool reset);

/* The same in double. */
rm_status rm_tm_f64_new(const rm_model *base, const rm_train_params *p, rm_tm_f64 **out);
rm_status rm_tm_f64_new_random(const rm_model_config *cfg, uint64_t seed, float std, const rm_train_params *p,
                               rm_tm_f64 **out);
void      rm_tm_f64_free(rm_tm_f64 *tm);
const rm_model_config *rm_tm_f64_config(const rm_tm_f64 *tm);
rm_train_kind rm_tm_f64_kind(const rm_tm_f64 *tm);
double   *rm_tm_f64_params(rm_tm_f64 *tm, size_t *n);
double   *rm_tm_f64_grads(rm_tm_f64 *tm, size_t *n);
int       rm_tm_f64_n_tensors(const rm_tm_f64 *tm);
const rm_train_tensor *rm_tm_f64_tensor(const rm_tm_f64 *tm, int i);
rm_pool  *rm_tm_f64_pool(rm_tm_f64 *tm);
void      rm_tm_f64_zero_grad(rm_tm_f64 *tm);
rm_status rm_tm_f64_loss(rm_tm_f64 *tm, const rm_train_batch *b, double *loss);
double    rm_tm_f64_gate_ce(const rm_tm_f64 *tm);
rm_status rm_tm_f64_expert_losses(rm_tm_f64 *tm, const rm_train_batch *b, double *out);
rm_status rm_tm_f64_backward(rm_tm_f64 *tm, const rm_train_batch *b, double grad_scale, double *loss);
rm_status rm_tm_f64_export_adapter(const rm_tm_f64 *tm, rm_adapter *dst);
rm_status rm_tm_f64_export_model(const rm_tm_f64 *tm, rm_model **out);
void      rm_tm_f64_profile(rm_tm_f64 *tm, rm_train_profile *out, bool reset);

/* ---- optimiser ------------------------------------------------------------ */

typedef struct {
    float lr;            /* peak learning rate */
    float beta1, beta2;  /* 0.9, 0.999 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* decoupled; applied to tensors with decay = true */
    int warmup_steps;    /* linear from lr/warmup to lr over these steps */
    int total_steps;     /* cosine from lr down to lr*min_lr_ratio at total; <= 0: constant */
    float min_lr_ratio;
    float clip_norm;     /* global gradient-norm clip; <= 0: off */
    int accum;           /* micro-batches per step (rm_trainer_step's n_micro must match) */
} rm_adamw_params;

void rm_adamw_params_default(rm_adamw_params *p);
/* Learning rate of step `step` (1-based: the step about to be taken). */
float rm_lr_at(const rm_adamw_params *p, int64_t step);

/* Step statistics. */
typedef struct {
    double loss;       /* mean of the micro-batches' losses */
    double gate_ce;    /* mean of their gate cross-entropies (rm_tm_f32_gate_ce) */
    double grad_norm;  /* global norm before clipping */
    float lr;
    int64_t step;      /* steps taken, this one included */
} rm_train_stats;

/*
 * A trainer: a tm (borrowed, f32) + AdamW moments + step counter + the
 * caller's RNG state and data position, which checkpoints save so that a
 * data loader resumes where it was. Fields rng and data_pos are the
 * caller's to use and update.
 */
typedef struct rm_trainer {
    rm_tm_f32 *tm;
    rm_adamw_params opt;
    size_t n;          /* trainable parameters */
    float *m, *v;      /* [n] Adam moments */
    int64_t step;      /* steps taken */
    uint64_t rng;      /* caller's RNG state (rm_rng_next) */
    uint64_t data_pos; /* caller's position in its data */
} rm_trainer;

rm_status rm_trainer_new(rm_tm_f32 *tm, const rm_adamw_params *opt, uint64_t seed, rm_trainer **out);
void      rm_trainer_free(rm_trainer *t);
/*
 * One optimiser step over n_micro micro-batches: zero the gradients,
 * accumulate each micro-batch's gradient of loss/n_micro, clip the global
 * norm, AdamW update with the scheduled learning rate. A NaN/infinite loss
 * or gradient returns ERR_RANGE and leaves parameters, moments and step
 * unchanged. Allocates nothing.
 */
rm_status rm_trainer_step(rm_trainer *t, const rm_train_batch *micro, int n_micro, rm_train_stats *st);

/*
 * Checkpoint file (little-endian, written atomically):
 *   off  0  char[8]  magic "RMTRAIN\0"
 *        8  u32      version (1)
 *       12  u32      kind (rm_train_kind)
 *       16  u64      n: trainable parameter count
 *       24  u64      layout hash (FNV-1a of kind and the tensor table's
 *                    names and shapes): refuses another model or kind
 *       32  i64      step
 *       40  u64      rng
 *       48  u64      data_pos
 *       56  f32[8]   lr, beta1, beta2, eps, weight_decay, min_lr_ratio,
 *                    clip_norm, 0  (informative; the loader keeps its own)
 *       88  i32[4]   warmup_steps, total_steps, accum, 0
 *      104  f32[n]   parameters
 *           f32[n]   Adam first moments m
 *           f32[n]   Adam second moments v
 *           u64      FNV-1a 64 of every byte before it
 * Frozen weights (the base in LORA/ROUTER training, the experts) are not
 * stored: resume with the same base and adapters.
 */
#define RM_CKPT_MAGIC "RMTRAIN"
#define RM_CKPT_VERSION 1u
rm_status rm_trainer_save(const rm_trainer *t, const char *path);
/* Load into a trainer built on the same model and kind; on failure the
 * trainer is unchanged (ERR_FORMAT, ERR_MISMATCH, ERR_IO, ERR_NOT_FOUND). */
rm_status rm_trainer_load(rm_trainer *t, const char *path);

#endif /* RM_TRAIN_H */
