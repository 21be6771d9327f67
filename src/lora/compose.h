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
 * A router that pools its gates over the prompt (rm_adapter.gate_pool
 * RM_GATE_POOL_PROMPT) gates token t by the softmax of the mean of the raw
 * score vectors of prompt tokens 0..min(t, P-1). The slot keeps, per
 * module, the running sum of its prompt tokens' scores and a count of the
 * tokens fed since rm_lora_set: a sequence's tokens must therefore reach
 * the decodes in position order, each once (chunks in order; to feed a
 * sequence again from its start, set its composition again or call
 * rm_lora_restart). The sums are taken serially in batch order, the rest
 * of the step in parallel as for every other mode.
 *
 * A router with a retrieval prior (rm_adapter.retrieval_prior lambda > 0)
 * adds lambda r_j to every score of expert j before the softmax, r_j the
 * composition's retrieval score of that expert (after the pooling, for a
 * prompt-pooled router).
 *
 * A context and a LoRA state are made separately and joined by one call:
 *   rm_ctx_new(model, &ctx_params, &ctx);          (ctx_params.scratch_rank >= max_rank)
 *   rm_lora_state_new(model, n_seq, n_batch, max_k, max_rank, n_threads, &state);
 *   rm_lora_attach(ctx, state);
 *   rm_lora_set(state, seq, &composition);          (per sequence, any time between decodes)
 *   ... rm_ctx_decode(ctx, &batch) ...
 *   rm_ctx_free(ctx); rm_lora_state_free(state);
 * or rm_lora_ctx_new for the first three lines. The attachment is the
 * model's delta hook (rm_ctx_set_delta in model.h), the only link between a
 * context and its state: the model never includes lora.
 *
 * Lifetimes: adapters are borrowed; they must outlive every context slot
 * that uses them. A state is borrowed by the context it is attached to:
 * free the context (or detach) before the state. Buffers are reserved at
 * rm_lora_state_new for n_batch tokens x max_k experts of rank <= max_rank:
 * a step never allocates.
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
    /* router mode with a router of RM_GATE_POOL_PROMPT: the sequence's
     * prompt length P >= 1, counted from the first token decoded after
     * rm_lora_set (ignored otherwise) */
    int n_prompt;
    /* router mode with a router of retrieval_prior lambda > 0 (adapter.h):
     * r_j, expert j's retrieval score for this sequence (the cosine that
     * retrieved it, in [-1, 1]); the gates become softmax_j(z_j + lambda
     * r_j). All 0 (experts named, not retrieved): no prior. */
    float retrieval[RM_LORA_MAX_K];
} rm_composition;

typedef struct rm_lora_state rm_lora_state;

/* n_threads: the most threads of the pools that will run rm_lora_apply.
 * max_k 1..RM_LORA_MAX_K, max_rank 1..RM_LORA_MAX_RANK. */
rm_status rm_lora_state_new(const rm_model *m, int n_seq, int n_batch, int max_k, int max_rank, int n_threads,
                            rm_lora_state **out);
void      rm_lora_state_free(rm_lora_state *s); /* NULL is a no-op */
/* Take adapters of rank up to `rank` from now on (reallocates the step's
 * scratch; call between decodes). A server need not know every rank it
 * will meet when it starts. ERR_RANGE above RM_LORA_MAX_RANK. */
rm_status rm_lora_state_grow_rank(rm_lora_state *s, int rank);
int       rm_lora_state_max_rank(const rm_lora_state *s);

/*
 * Attach s to context c: every later rm_ctx_decode of c adds the
 * compositions set in s after each base projection. s must fit c: made for
 * c's model (the same rm_model), n_seq and n_batch at least c's, and c's
 * scratch_rank at least s's max_rank (the shrink and expand GEMMs run on
 * c's matmul scratch); otherwise ERR_MISMATCH naming the difference, and c
 * is unchanged. s NULL detaches (the base alone). s stays the caller's;
 * it holds the plan of the step being run, so it serves one context at a
 * time.
 */
rm_status rm_lora_attach(rm_ctx *c, rm_lora_state *s);

/*
 * A context with a LoRA state attached, in one call: rm_ctx_new(m, p) with
 * p->scratch_rank raised to max_rank, a state of p's n_seq and n_batch and
 * the context's thread count, attached. On failure both are NULL. Free
 * both: rm_ctx_free(*ctx), then rm_lora_state_free(*state).
 */
rm_status rm_lora_ctx_new(const rm_model *m, const rm_ctx_params *p, int max_k, int max_rank, rm_ctx **ctx,
                          rm_lora_state **state);

/*
 * Set the composition of sequence slot `seq` (NULL or mode none: the base
 * alone). Validates it (ranks, k, router coverage, adapters fit the base,
 * n_prompt >= 1 for a prompt-pooled router, a retrieval prior in [0,
 * RM_RETRIEVAL_PRIOR_MAX] and with one retrieval scores in [-1, 1], else
 * ERR_INVALID naming the router) and prepares what the mode needs (fused matrices, router C
 * matrices). The slot's next token is the first of its sequence (a
 * pooled router's running state restarts). On failure the slot keeps its
 * previous composition and state. s may be NULL (no LoRA state: the base
 * alone): then only "none" is accepted.
 */
rm_status rm_lora_set(rm_lora_state *s, int seq, const rm_composition *c);

/*
 * A new sequence in slot `seq` under the composition it has, of n_prompt
 * prompt tokens: as rm_lora_set with that composition and n_prompt, without
 * rebuilding anything (for a caller that runs many sequences through one
 * slot, clearing the context's cache of the slot between them). ERR_INVALID
 * for n_prompt < 1 when the slot's router pools over the prompt (the slot is
 * then unchanged); ERR_RANGE for a bad seq. s NULL: nothing to do.
 */
rm_status rm_lora_restart(rm_lora_state *s, int seq, int n_prompt);

/* The two halves of the delta hook (rm_delta_ops), callable directly:
 * group the batch's tokens by adapter; false if no token uses an adapter.
 * Each token of a prompt-pooled slot counts as fed here (the next of its
 * sequence, in batch order): plan once per decode, and apply every module
 * once after it. */
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
