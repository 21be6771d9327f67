/*
 * loop.h — the training loop every trainer shares (base, LoRA, router):
 * batches in a seeded order per epoch, the router's experts per sequence
 * with random LoRA dropout, AdamW steps, held-out loss, checkpoints that
 * resume the very same run, and progress reported to a callback (the
 * caller prints and logs; the loop writes nothing but checkpoints).
 *
 * Data order: the examples of epoch e are visited in rm_data_order(seed,
 * e); the trainer's data_pos counts the examples consumed and the router's
 * draws come from the trainer's rng, both saved in checkpoints, so a run
 * stopped at step N (stop_at) and resumed from its checkpoint takes the
 * same steps, bit for bit, as one run straight through.
 *
 * Random LoRA dropout (RAMoLE's "random LoRA dropout"): a router learns to
 * weigh whatever set of experts retrieval hands it, so during training the
 * set of each sequence is perturbed: each expert of the example's list is
 * dropped, and each other expert of the pool added, with probability P.
 */
#ifndef RM_TRAIN_LOOP_H
#define RM_TRAIN_LOOP_H

#include "core/core.h"
#include "train/data.h"
#include "train/train.h"

/* ---- the router's experts per example ------------------------------------- */

/* Pool indices of every example's "adapters" names. */
typedef struct {
    int n_examples;
    int32_t *idx;   /* [n_examples][RM_TRAIN_MAX_K]: example i's experts are idx[i*MAX_K + a], a < n[i] */
    int32_t *n;     /* [n_examples]; 0: the example names none (it uses the whole pool) */
    float *score;   /* [n_examples][RM_TRAIN_MAX_K]: the retrieval score of idx[i*MAX_K + a] ("scores"; 0
                     * without), or NULL: all 0 */
} rm_expert_lists;

/*
 * Map each example's "adapters" names to pool indices (the first pool
 * adapter of that name; names are the folder or file names). Errors:
 * ERR_NOT_FOUND (a name not in the pool), ERR_RANGE (more than
 * RM_TRAIN_MAX_K names), each naming the example's line; ERR_NOMEM. On
 * failure *out is empty. Free with rm_expert_lists_free.
 */
rm_status rm_expert_lists_map(const rm_dataset *d, rm_adapter *const *pool, int n_pool, rm_expert_lists *out);
void      rm_expert_lists_free(rm_expert_lists *l); /* empties it; an empty one is a no-op */

/* How one sequence's experts are drawn. */
typedef struct {
    int n_pool;                   /* 1..RM_TRAIN_MAX_K */
    int max_k;                    /* at most this many experts per sequence, 1..n_pool */
    double dropout;               /* P in [0, 1] */
    const rm_expert_lists *lists; /* NULL: every example uses the whole pool */
} rm_expert_draw;

/*
 * The experts of example `ex` for one training sequence (random LoRA
 * dropout). S = the example's list (the whole pool when it names none).
 * Going through the pool in order, a member of S is kept with probability
 * 1 - P and any other member is added with probability P (one
 * rm_rng_uniform per pool member when P > 0; none when P = 0, so S is
 * kept whole). If nothing is kept, S's first member in pool order is.
 * While more than max_k remain, a uniformly chosen one is removed (one
 * rm_rng_next each; the last takes its place). out[0..*n_out) are distinct
 * pool indices, never empty, at most max_k; deterministic for a state of
 * *rng, which advances.
 */
void rm_expert_draw_one(const rm_expert_draw *p, int ex, uint64_t *rng, int32_t *out, int32_t *n_out);

/*
 * The experts a held-out sequence is measured with: the example's list as
 * given (no dropout), else the first max_k of the pool. Same outputs as
 * above.
 */
void rm_expert_held_out(const rm_expert_draw *p, int ex, int32_t *out, int32_t *n_out);

/*
 * The retrieval scores of a sequence's experts (pool indices experts[0..n),
 * as drawn for example ex): each one's score in the example's list, 0 for
 * one the list does not hold (added by dropout, or the whole pool: not
 * retrieved). Fills b->retrieval's row for a router with a retrieval prior.
 */
void rm_expert_scores(const rm_expert_draw *p, int ex, const int32_t *experts, int n, float *out);

/* ---- the loop ----------------------------------------------------------------------- */

typedef enum {
    RM_TRAIN_EVENT_START,  /* before the first step (after a resume) */
    RM_TRAIN_EVENT_EVAL,   /* a held-out loss was measured after step `step` */
    RM_TRAIN_EVENT_STEP,   /* a step was taken (after its EVAL, before its checkpoint) */
    RM_TRAIN_EVENT_NAN,    /* step `step` gave a NaN or infinite loss or gradient; the run stops */
    RM_TRAIN_EVENT_DONE,   /* the run ended well (after the last checkpoint) */
} rm_train_event;

typedef struct {
    rm_train_event event;
    int64_t step;          /* steps taken (NAN: the step that failed) */
    int64_t total;         /* steps of the whole schedule */
    int64_t stop;          /* the step this run ends at (stop_at, or total) */
    int64_t first_step;    /* the step this run began at (a resumed checkpoint's) */
    bool resumed;
    size_t n_params;       /* trainable parameters */
    double loss;           /* STEP, DONE: the step's language-model loss (the gate term left out) */
    double gate_ce;        /* STEP: the step's gate cross-entropy (0 without a gate loss) */
    double lr, grad_norm;  /* STEP */
    double val_loss;       /* the latest held-out loss; NAN before the first */
    double tokens;         /* STEP: positions in the loss since this run began (each counts up to its batch width) */
    double elapsed_s, tokens_per_s, eta_s;   /* STEP (elapsed_s also at DONE) */
} rm_train_progress;

/* Called at each event; a status other than RAMOLE_OK stops the run and is
 * returned by rm_train_run (set the message with rm_err). */
typedef rm_status (*rm_train_progress_fn)(const rm_train_progress *p, void *user);

typedef struct {
    /* data: train (non-empty) and an optional held-out set, batches of
     * `seq` positions padded with `pad` */
    const rm_dataset *train, *val;
    int seq;
    int32_t pad;
    /* schedule: steps, or else epochs (0: 1) over the training set */
    int64_t steps;
    int64_t epochs;
    int64_t stop_at;       /* end this run after this step (0: the end); resume later */
    int batch, accum;      /* sequences per micro-batch, micro-batches per step */
    double lr, weight_decay, min_lr_ratio, clip;
    int64_t warmup;        /* < 0: 5% of the steps, at most 100 */
    uint64_t seed;         /* data order and the trainer's rng */
    int64_t eval_every;    /* held-out loss every N steps (0: at the end only) */
    /* router (tm of kind ROUTER): the draws; NULL for base and LoRA */
    const rm_expert_draw *experts;       /* lists: of train's examples */
    const rm_expert_lists *val_experts;  /* of val's examples (NULL: none listed) */
    double gate_loss;
    /* checkpoints */
    const char *checkpoint;  /* NULL: none */
    bool resume;             /* start from the checkpoint (it must exist) */
    int64_t save_every;      /* also every N steps (0: at the end of the run only) */
    rm_train_progress_fn progress;  /* may be NULL */
    void *user;
} rm_train_run_params;

/*
 * Train `tm` (borrowed; its kind fits the parameters) for the schedule of
 * `p`: per step, accum micro-batches of `batch` examples in epoch order;
 * AdamW with linear warm-up and cosine decay to lr * min_lr_ratio, global
 * clip; the held-out loss (the experts of rm_expert_held_out, no gate
 * term) every eval_every steps and at the run's last step; the checkpoint
 * (written atomically) every save_every steps and at the last. Errors:
 * ERR_NOT_FOUND (resume without a checkpoint file), the checkpoint's
 * loading errors, ERR_RANGE (a NaN or infinite loss or gradient, after
 * the NAN event: nothing of that step is kept, the last checkpoint stays
 * as it was), a callback's status, ERR_NOMEM. Parameters stay in tm.
 */
rm_status rm_train_run(rm_tm_f32 *tm, const rm_train_run_params *p);

/* Mean loss per masked-in position over dataset d, in batches of bb->B
 * (experts: rm_expert_held_out of `experts` for a ROUTER tm, else NULL).
 * NAN for a dataset without masked-in positions. */
rm_status rm_train_eval_loss(rm_tm_f32 *tm, const rm_dataset *d, rm_batchbuf *bb, int32_t pad,
                             const rm_expert_draw *experts, double *out);

#endif /* RM_TRAIN_LOOP_H */
