/*
 * infonce.h — contrastive training of the embedder's projection P (the
 * base model stays frozen), as LoraRetriever / RAMOLE train their
 * retriever: inputs of one task are positives, other tasks negatives.
 *
 * Because the base is frozen, every example's pooled hidden state h is
 * computed once (rm_embedder_pool) and training touches only P:
 *   a_i = n(P h_anchor_i), p_i = n(P h_positive_i)      n(z) = z / |z|
 *   S_ij = <a_i, p_j> / tau
 *   L_row = 1/B sum_i [ logsumexp_{j in V_i} S_ij - S_ii ]
 *   L_col = 1/B sum_j [ logsumexp_{i in V_j} S_ij - S_jj ]
 *   L = (L_row + L_col) / 2  (symmetric)   or   L = L_row  (one-sided)
 * Pair i is (anchor, positive) from one task, two different examples; the
 * other pairs' positives are the in-batch negatives. V_i excludes the
 * entries of another pair of the same task (they are not negatives), so a
 * batch may hold several pairs of one task.
 * All of it is computed in double (dgemm for the two products), which is
 * also what the finite-difference check in the tests runs.
 *
 * Trainer: P starts as the identity when dim = hidden (so step 0 is the
 * plain normalised pooled state) and otherwise as a seeded random
 * Gaussian projection (entries N(0, 1/hidden), which keeps cosines on
 * average). Each step draws B anchors uniformly over the examples and for
 * each a positive uniformly among the other examples of its task (seeded
 * splitmix64), takes the loss and gradient above, and makes an AdamW step
 * (linear warm-up then cosine decay to lr * min_lr_ratio). Weight decay
 * pulls P towards its initial value, not towards zero: n(P h) ignores the
 * scale of P, so decay towards zero would only change the step size, while
 * decay towards the start keeps the projection close to the plain
 * embedder, which is what lets it generalise to tasks it never saw (on the
 * toy tasks of tests/cli/retrieval.sh: held-out tasks' top-1 went from
 * 0.63 to 0.60 without it and to 0.80 with the default 10). The stored h are normalised first (P h is
 * normalised anyway, so this changes nothing but the conditioning).
 * Deterministic for a seed.
 */
#ifndef RM_RETRIEVAL_INFONCE_H
#define RM_RETRIEVAL_INFONCE_H

#include "core/core.h"

/* Loss (and, when dP is not NULL, its gradient with respect to P, written
 * to dP[dim][hidden]) of B pairs: A[B][hidden] anchors, Pos[B][hidden]
 * positives, label[B] their task ids. Errors: ERR_INVALID (sizes, tau),
 * ERR_NOMEM. */
rm_status rm_infonce_loss(const double *P, int dim, int hidden, const double *A, const double *Pos,
                          const int32_t *label, int B, double tau, bool symmetric, double *loss, double *dP);

typedef struct {
    int dim;              /* rows of P; 0: hidden */
    int steps;            /* total steps of the schedule */
    int batch;            /* pairs per step */
    double lr;            /* peak learning rate */
    double weight_decay;  /* decoupled, towards the initial P (see above) */
    double beta1, beta2, eps;
    int warmup;           /* steps of linear warm-up */
    double min_lr_ratio;  /* cosine decay floor */
    double tau;           /* temperature */
    bool symmetric;
    uint64_t seed;
} rm_infonce_params;

/* dim hidden, 300 steps, batch 32, lr 2e-3, weight decay 10, betas 0.9 /
 * 0.999, eps 1e-8, warm-up 5% of the steps, min_lr_ratio 0.1, tau 0.05,
 * symmetric, seed 1. */
void rm_infonce_params_default(rm_infonce_params *p);

typedef struct {
    double loss;
    double grad_norm;
    double lr;
    int step;        /* steps taken, this one included */
} rm_infonce_stats;

typedef struct rm_infonce_trainer rm_infonce_trainer;

/*
 * A trainer over n examples: rows rows[0..n) (NULL: 0..n-1) of H[.][hidden]
 * pooled states (copied, normalised) with their task ids task[.] in
 * [0, n_tasks). Every task that has examples must have at least two, and
 * at least two tasks must have examples. Errors: ERR_INVALID (naming the
 * task id), ERR_RANGE (sizes), ERR_NOMEM.
 */
rm_status rm_infonce_trainer_new(const float *H, const int32_t *task, const int *rows, int n, int hidden, int n_tasks,
                                 const rm_infonce_params *p, rm_infonce_trainer **out);
void      rm_infonce_trainer_free(rm_infonce_trainer *t);
/* One step. A non-finite loss or gradient returns ERR_RANGE and leaves P
 * and the optimiser unchanged. */
rm_status rm_infonce_trainer_step(rm_infonce_trainer *t, rm_infonce_stats *st);
int       rm_infonce_trainer_dim(const rm_infonce_trainer *t);
/* Current P as float: w[dim][hidden]. */
void      rm_infonce_trainer_weights(const rm_infonce_trainer *t, float *w);

#endif /* RM_RETRIEVAL_INFONCE_H */
