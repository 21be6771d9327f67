/*
 * embed.h — the embedder of input-aware adapter retrieval: a text becomes a
 * unit vector, so that inputs of one task lie close together.
 *
 * The embedder is the base model itself, no adapters applied:
 *   tokens = encode(PREFIX + TEXT, with the tokenizer's specials (BOS))
 *   h      = pooling of the hidden states of `layer` over the text's tokens
 *   e      = P h / |P h|          (a trained projection file), or
 *   e      = h / |h|              (no projection: dim = hidden)
 * PREFIX is a fixed instruction, RM_EMBED_PREFIX by default. "The text's
 * tokens" are those of the joint encoding from the first one that differs
 * from encode(PREFIX) alone: where the prefix's last token merges with the
 * text's first bytes, the merged token counts as the text's. A text whose
 * tokens would exceed max_tokens is cut (its first tokens are kept).
 *
 * Pooling: MEAN over the text's tokens (the default), MEAN_ALL over every
 * token (BOS and instruction included), LAST the last token's state (it
 * sees the whole input through causal attention).
 * Layer: RM_HIDDEN_FINAL (default; the last block's output after the final
 * norm) or 0..n_layers, as rm_ctx_keep_hidden.
 *
 * Batching: texts run as separate sequences of one decode (as many as fit
 * n_seq and n_batch tokens), so one text gives the same vector alone or
 * among others (to float rounding of the batched matrix products).
 *
 * Projection file (safetensors, written atomically):
 *   "projection.weight"  F32 [dim][hidden]   (F16/BF16 are read too)
 *   __metadata__: "format": "ramole.retriever_projection",
 *                 "ramole.base_fingerprint": 16 hex digits (rm_model_fingerprint),
 *                 "layer": "final" or a number, "prefix": the instruction,
 *                 "pooling": "mean" | "mean_all" | "last",
 *                 "temperature": the InfoNCE temperature it was trained with
 * Loading checks the format tag, the fingerprint against the base, the
 * shape (hidden of the base, 1 <= dim <= RM_EMBED_MAX_DIM), every value
 * finite and not all zero, the layer inside the base, the pooling and the
 * temperature; errors name the file and the problem. A projection carries
 * its layer, prefix and pooling: an embedder given one uses those.
 * The fingerprint covers the base's architecture and shapes, not its
 * weights: a projection trained on one checkpoint loads on a sibling of
 * the same shape, where it is not meaningful.
 *
 * Where the forwards run: by default in the embedder's own inference
 * context. A runner (rm_embed_opts.run) takes them instead: a server hands
 * them to its engine, which runs them as prompt work of its generation
 * steps, so that a retrieval's forward neither stalls the streams nor
 * reads the weights a second time. Tokenising, cutting and pooling stay
 * here, so both give the same vector (to float rounding of batched
 * products).
 *
 * Threads: an embedder with its own context is used from one thread at a
 * time; one with a runner from any number at once (the runner must be
 * thread-safe). Projections are immutable once made.
 */
#ifndef RM_RETRIEVAL_EMBED_H
#define RM_RETRIEVAL_EMBED_H

#include "core/core.h"
#include "model/model.h"

struct rm_tok;

#define RM_EMBED_PREFIX "Represent the sentence for similar task retrieval: "
#define RM_EMBED_MAX_DIM 65536
#define RM_PROJECTION_FORMAT "ramole.retriever_projection"

typedef enum { RM_POOL_MEAN = 0, RM_POOL_MEAN_ALL, RM_POOL_LAST, RM_POOL_COUNT } rm_pooling;
const char *rm_pooling_name(rm_pooling p);               /* "mean", "mean_all", "last" */
bool        rm_pooling_from_name(const char *s, rm_pooling *out);

/* ---- projection ------------------------------------------------------------ */

typedef struct {
    int dim, hidden;
    float *w;                  /* [dim][hidden] */
    uint64_t base_fingerprint;
    int layer;                 /* RM_HIDDEN_FINAL or 0..n_layers */
    char *prefix;
    rm_pooling pooling;
    float temperature;
} rm_projection;

/* A projection for `base` with w = 0 (the caller fills it); prefix NULL:
 * RM_EMBED_PREFIX. */
rm_status rm_projection_new(const rm_model *base, int dim, int layer, const char *prefix, rm_pooling pooling,
                            float temperature, rm_projection **out);
void      rm_projection_free(rm_projection *p); /* NULL is a no-op */
rm_status rm_projection_save(const rm_projection *p, const char *path);
/* Load and validate against `base` (see above). On failure *out is NULL:
 * ERR_IO (unreadable), ERR_FORMAT (content), ERR_MISMATCH (another base). */
rm_status rm_projection_load(const char *path, const rm_model *base, rm_projection **out);

/* out[dim] = normalise(P h) (P NULL: normalise(h), dim = hidden). A zero
 * vector stays zero. Double accumulation. */
void rm_projection_apply(const rm_projection *p, int hidden, const float *h, float *out);

/* ---- embedder ----------------------------------------------------------------- */

/* The runner's contract: for each of n token lists, the mean of the hidden
 * states of `layer` (as rm_ctx_keep_hidden) over tokens [from[i],
 * n_tokens[i]) of a forward of the base alone, into out[i][hidden].
 * Tokens [0, shared[i]) (shared[i] <= from[i]) are the instruction prefix,
 * the same for every text: a runner may compute their states once
 * (rm_engine_request.embed_shared). */
typedef rm_status (*rm_embed_run_fn)(void *user, int n, const int32_t *const *tokens, const int *n_tokens,
                                     const int *from, const int *shared, int layer, float *out);

typedef struct {
    const char *prefix;   /* NULL: RM_EMBED_PREFIX */
    int layer;            /* RM_HIDDEN_FINAL or 0..n_layers */
    rm_pooling pooling;
    int max_tokens;       /* per text, prefix included; 0: min(max_pos, 512) */
    int n_seq;            /* texts per decode; 0: 16 */
    int n_batch;          /* tokens per decode; 0: max(max_tokens, 1024) */
    int n_threads;        /* 0: all CPUs */
    rm_pool *pool;        /* borrowed (e.g. an engine's: rm_engine_pool); NULL: its own */
    rm_embed_run_fn run;  /* NULL: its own context; else the forwards go to run(run_user, ...)
                           * and no context is made (n_seq, n_batch, n_threads, pool unused) */
    void *run_user;
    int run_max_tokens;   /* the longest token list the runner takes (0: no limit of its own):
                           * texts are cut to it when it is below max_tokens */
} rm_embed_opts;

/* Defaults: RM_EMBED_PREFIX, RM_HIDDEN_FINAL, MEAN, the sizes above. */
void rm_embed_opts_default(rm_embed_opts *o);

typedef struct rm_embedder rm_embedder;

/*
 * An embedder over `base` and its tokenizer `tok` (both borrowed, alive
 * while the embedder is), with the projection `proj` (borrowed, may be
 * NULL). With a projection, its layer, prefix and pooling replace those of
 * `o`; it must have been made for this base (fingerprint and hidden size).
 */
rm_status rm_embedder_new(const rm_model *base, const struct rm_tok *tok, const rm_embed_opts *o,
                          const rm_projection *proj, rm_embedder **out);
void      rm_embedder_free(rm_embedder *e);
int       rm_embedder_dim(const rm_embedder *e);     /* proj->dim, or hidden */
int       rm_embedder_hidden(const rm_embedder *e);
/* Texts cut to max_tokens by the calls so far. */
int       rm_embedder_n_cut(const rm_embedder *e);

/* Pooled hidden states, before projection and normalisation: out[n][hidden]. */
rm_status rm_embedder_pool(rm_embedder *e, const char *const *texts, int n, float *out);
/* Unit embeddings: out[n][dim]. */
rm_status rm_embedder_embed(rm_embedder *e, const char *const *texts, int n, float *out);

/* out[dim] = normalise(mean of rows rows[0..n) of vecs[.][dim]) (rows NULL:
 * rows 0..n-1) — a task's representation from its samples' embeddings.
 * Double accumulation in the given order, in the caller's acc[dim]. */
void rm_embed_mean(const float *vecs, int dim, const int *rows, int n, double *acc, float *out);

#endif /* RM_RETRIEVAL_EMBED_H */
