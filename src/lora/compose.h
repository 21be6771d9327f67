/*
 * compose.h — composing LoRA adapters per sequence inside the batched
 * forward.
 *
 * Each sequence slot of an inference context has a composition: a mode and
 * its experts. One forward step groups the (token, adapter) pairs of the
 * whole batch by adapter, and after every base projection y = W0 x of every
 * layer it runs, per adapted module:
 *   shrink   U_a = X_a A_a^T           for each adapter a, over its tokens only
 *   gates    g[token, j] from the mode (router: softmax of <A_r x, s_j C_rj u_j>/sqrt(r_r))
 *   expand   Y_a += diag(g) U_a B_a^T  scattered back to the tokens' rows
 * so the cost grows with the tokens that use an adapter, never with the
 * number of distinct adapters times all tokens. The router never builds the
 * dout-sized expert outputs: C_rj = B_r^T B_j (r_r x r_j) is computed when
 * the composition is set. An expert that does not adapt a module counts as
 * zero matrices there (mixture, fusion and router alike).
 *
 * Lifetimes: adapters are borrowed; they must outlive every context slot
 * that uses them. Buffers are reserved at rm_lora_state_new for n_batch
 * tokens x max_k experts of rank <= max_rank: a step never allocates.
 */
#ifndef RM_COMPOSE_H
#define RM_COMPOSE_H

#include "lora/adapter.h"

typedef enum {
    RM_COMPOSE_NONE = 0,
    RM_COMPOSE_EXPLICIT,   /* y += sum_j w_j s_j B_j A_j x */
    RM_COMPOSE_SELECTION,  /* the first expert only (top-1 of a retrieved list) */
    RM_COMPOSE_MIXTURE,    /* weights 1/k */
    RM_COMPOSE_FUSION,     /* (mean_j s_j B_j)(mean_j A_j) x, ranks zero-padded */
    RM_COMPOSE_ROUTER,     /* RouterLoRA */
    RM_COMPOSE_COUNT
} rm_compose_mode;

const char *rm_compose_mode_name(rm_compose_mode m); /* "none", "explicit", ... */
bool rm_compose_mode_from_name(const char *s, rm_compose_mode *out);

#define RM_LORA_MAX_K 16

/*
 * What the router needs of one expert: C_rj = B_r^T B_j (r_r x r_j) for
 * every module both adapt. It depends only on the (router, expert) pair, so
 * a server computes it once when the pair first meets and keeps it with the
 * adapter handles; rm_lora_set builds the ones it is not given. Valid while
 * both adapters live; refers to them by identity.
 */
typedef struct rm_router_c rm_router_c;
rm_status rm_router_c_new(const rm_model *m, const rm_adapter *router, const rm_adapter *expert,
                          rm_router_c **out);
void      rm_router_c_free(rm_router_c *rc); /* NULL is a no-op */
size_t    rm_router_c_bytes(const rm_router_c *rc);

typedef struct {
    rm_compose_mode mode;
    int k;
    const rm_adapter *experts[RM_LORA_MAX_K];
    float weights[RM_LORA_MAX_K]; /* explicit mode */
    const rm_adapter *router;     /* router mode */
    /* router mode, optional: C of (router, experts[j]) made by
     * rm_router_c_new, borrowed; NULL entries are computed by rm_lora_set */
    const rm_router_c *router_c[RM_LORA_MAX_K];
} rm_composition;

typedef struct rm_lora_state rm_lora_state;

/* n_threads: the most threads of the pools that will run rm_lora_apply. */
rm_status rm_lora_state_new(const rm_model *m, int n_seq, int n_batch, int max_k, int max_rank, int n_threads,
                            rm_lora_state **out);
void      rm_lora_state_free(rm_lora_state *s);

/*
 * Set the composition of sequence slot `seq` (NULL or mode none: the base
 * alone). Validates it (ranks, k, router coverage, adapters fit the base)
 * and prepares what the mode needs (fused matrices, router C matrices).
 * On failure the slot keeps its previous composition. s may be NULL (a
 * context without LoRA): then only "none" is accepted.
 */
rm_status rm_lora_set(rm_lora_state *s, int seq, const rm_composition *c);

/* Group the batch's tokens by adapter; false if no token uses an adapter. */
bool rm_lora_plan(rm_lora_state *s, int n_tokens, const int32_t *seq);

/* Add the composed adapters' outputs of (layer, t) to y (n x dout rows)
 * given the module input x (n x din rows), for the planned batch. */
void rm_lora_apply(rm_lora_state *s, const rm_compute *c, int layer, rm_target t, const float *x, float *y);

/* Router gates of the last rm_lora_apply for batch token i (k values, in
 * the order of the experts; 0 for slots not in router mode). For tests. */
const float *rm_lora_last_gates(const rm_lora_state *s, int i);

/*
 * Gate tracing, for evaluating a router over its whole depth: while a trace
 * is set, every rm_lora_apply adds, for each router-mode batch token i and
 * expert j (in expert order), into the caller's arrays (index i * max_k + j,
 * zeroed by the caller, borrowed until rm_lora_trace_gates(s, NULL)):
 *   gates   w_j, the router's weight;
 *   shares  (optional) w_j |v_j| / sum_l w_l |v_l|, the expert's share of
 *           what the experts add to the module's output (v_j = s_j B_j A_j x);
 *           a weight on an expert whose output is small there counts
 *           little. Costs dout x rank per token and expert: for evaluation.
 * and counts the module in n[i]. Modules the router does not adapt are not
 * counted. Means over the modules: gates[.] / n[i], shares[.] / n[i].
 */
typedef struct {
    double *gates;  /* [n_batch * max_k] */
    double *shares; /* [n_batch * max_k] or NULL */
    int *n;         /* [n_batch] */
} rm_gate_trace;

void rm_lora_trace_gates(rm_lora_state *s, const rm_gate_trace *t);

#endif
