/*
 * model.h — the Llama-family transformer: configuration, weights, batched
 * forward with a KV cache, and the sampler.
 *
 * A model is read-only once loaded: weights are views into mmap'd files
 * (safetensors or GGUF) except small vectors (norms, biases) kept as f32
 * copies. All per-request state lives in an rm_ctx, which reserves every
 * buffer it will need at creation so that rm_ctx_decode never allocates.
 *
 * Families: llama, mistral (llama with its own defaults) and qwen2 (q/k/v
 * bias). GQA, RoPE normal/neox with linear and llama3 scaling, tied
 * embeddings.
 */
#ifndef RM_MODEL_H
#define RM_MODEL_H

#include "kernels/kernels.h"
#include "model/targets.h"

typedef enum { RM_ARCH_LLAMA = 0, RM_ARCH_MISTRAL, RM_ARCH_QWEN2, RM_ARCH_COUNT } rm_arch;
const char *rm_arch_name(rm_arch a);                 /* "llama", "mistral", "qwen2" */
bool        rm_arch_from_name(const char *s, rm_arch *out);

struct rm_model_config { /* typedef in targets.h */
    rm_arch arch;
    int vocab_size;
    int hidden;        /* d_model */
    int ffn;           /* intermediate size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int max_pos;       /* max_position_embeddings / context_length */
    float rms_eps;
    rm_rope_params rope;
    bool tied_embeddings;
    bool qkv_bias;
    int bos_id, eos_id; /* -1 when unknown */
};

/* Fill the family defaults of `arch` (tiny sizes zero: callers set them). */
void rm_model_config_defaults(rm_model_config *c, rm_arch arch);
/* Sizes positive, heads dividing hidden, kv heads dividing heads, ... */
rm_status rm_model_config_check(const rm_model_config *c, const char *origin);

/* A 2-D weight [rows][cols] (rows = outputs n, cols = inputs k). data is
 * always the file's layout (merging, converting and writing read it);
 * packed, when set, is the same matrix in the run-time form the int8
 * kernels read (rm_matmul_pack), owned by the model, and inference uses it. */
typedef struct {
    const void *data;
    rm_type type;
    int64_t rows, cols;
    const void *packed;
} rm_weight;

typedef struct {
    const float *attn_norm;          /* [hidden] */
    rm_weight wq, wk, wv, wo;        /* [H*hd][hidden], [KV*hd][hidden] x2, [hidden][H*hd] */
    const float *bq, *bk, *bv;       /* qwen2 only: [H*hd], [KV*hd], [KV*hd] */
    const float *ffn_norm;           /* [hidden] */
    rm_weight w_gate, w_up, w_down;  /* [ffn][hidden] x2, [hidden][ffn] */
} rm_layer;

/* The weight of target t in layer L (wq for RM_TARGET_Q, ... w_down); its
 * rows and cols are rm_target_dims' dout and din. NULL for t out of range. */
const rm_weight *rm_layer_weight(const rm_layer *L, rm_target t);

typedef enum { RM_SOURCE_HF = 0, RM_SOURCE_GGUF } rm_source_kind;

/* Writable views of an in-memory model's f32 parameters (rm_model_new_f32),
 * for the code that fills them. Shapes as in rm_layer. */
typedef struct {
    float *w[RM_TARGET_COUNT];    /* the data of rm_layer_weight(L, t): [dout][din] */
    float *attn_norm, *ffn_norm;  /* [hidden] */
    float *bq, *bk, *bv;          /* qkv_bias only, else NULL */
} rm_layer_f32;

typedef struct {
    float *weights;               /* every 2-D weight, one block of n_weights floats in this order: */
    size_t n_weights;
    float *tok_embd;              /*   [vocab][hidden] */
    float *output;                /*   [vocab][hidden] (untied); = tok_embd when tied */
    rm_layer_f32 *layers;         /*   [n_layers], each layer's w[] in target order */
    float *out_norm;              /* [hidden] */
    float *rope_freq_factors;     /* [n_rot/2] when asked for, else NULL */
} rm_model_f32;

typedef struct rm_model rm_model;
struct rm_model {
    rm_model_config cfg;
    rm_source_kind source;
    char *path;
    rm_weight tok_embd;              /* [vocab][hidden] */
    const float *out_norm;           /* [hidden] */
    rm_weight output;                /* [vocab][hidden]; = tok_embd when tied */
    const float *rope_freq_factors;  /* GGUF rope_freqs.weight [head_dim/2] or NULL */
    rm_layer *layers;                /* [n_layers] */
    /* ownership */
    struct rm_model_files *files;    /* the mapped files the weights point into */
    float *owned_f32;                /* norms, biases converted to f32 */
    void *owned_weights;             /* weights built in memory (rm_model_new_f32) */
    rm_model_f32 *owned_views;       /* writable views of owned_weights and owned_f32, or NULL */
    void *owned_packed;              /* the packed weights (rm_model_pack), one block, or NULL */
    size_t packed_bytes;             /* its size */
    struct rm_tok *tokenizer;        /* the model's tokenizer, or NULL; owned */
    char *tokenizer_dir;             /* folder whose tokenizer*.json an HF save copies, or NULL */
};

/*
 * Open a model: a Hugging Face folder (config.json + *.safetensors, single
 * or sharded) or a GGUF file. Every tensor's presence, shape and type is
 * checked against the configuration; errors name the file and tensor.
 * The tokenizer comes along when the model carries one (tokenizer.json in
 * the folder, tokenizer.ggml.* keys in GGUF); a tokenizer that is present
 * but broken, or larger than the vocabulary, is an error.
 * The model is valid until rm_model_free.
 */
rm_status rm_model_open(const char *path, rm_model **out);
void      rm_model_free(rm_model *m);
/* Parameter count and bytes of the weights in the file's layout. */
void      rm_model_size(const rm_model *m, int64_t *n_params, int64_t *n_bytes);
/*
 * Repack the matrices that have a run-time form worth keeping on this CPU
 * (rm_matmul_pack_wanted: q4_k, q6_k and q8_0 where AVX-512 VNNI is, f16
 * and bf16 where AVX2 or AVX-512 is) into one block the model owns
 * (m->packed_bytes), once, so that no forward repacks them. A model read
 * from a file then releases the file's resident pages of those matrices
 * (rm_file_map_release): their bytes stay readable, read again from the
 * file when merging or converting touches them, so what the process holds
 * is the packed form instead of the file's blocks.
 * rm_model_open does this unless the environment sets RAMOLE_REPACK=0.
 * A no-op when nothing qualifies or m is packed already. rm_model_unpack
 * frees the packed form: inference reads the file's layout again.
 */
rm_status rm_model_pack(rm_model *m);
void      rm_model_unpack(rm_model *m);
/*
 * A fingerprint of the base model's architecture and shapes (family, sizes,
 * heads, vocab): adapters and other files made for a base record it and
 * refuse another base. The config form is for code that has a
 * configuration but no model; both give the same value.
 */
uint64_t  rm_model_fingerprint(const rm_model *m);
uint64_t  rm_model_config_fingerprint(const rm_model_config *c);
/* The type most 2-D weights have (for `ramole info`). */
rm_type   rm_model_main_type(const rm_model *m);

/* Internal loaders (model_hf.c, model_gguf.c). */
rm_status rm_model_load_hf(const char *dir, rm_model *m);
rm_status rm_model_load_gguf(const char *path, rm_model *m);
/* Parse a Hugging Face config.json. */
rm_status rm_model_config_from_json(const char *path, rm_model_config *c);

/* ---- inference context -------------------------------------------------- */

typedef struct {
    int n_ctx;      /* positions per sequence in the KV cache */
    int n_seq;      /* sequences (KV slots) */
    int n_batch;    /* max tokens in one rm_ctx_decode */
    int n_logits;   /* max tokens per decode that want logits (0: n_batch) */
    int n_threads;     /* 0: every core (ignored when pool is given) */
    rm_pool *pool;     /* borrowed, shared with other owners; NULL: the context makes its own */
    int scratch_rank;  /* the matmul scratch also fits a delta's low-rank products up to this rank
                        * (LoRA's shrink and expand); 0: none. rm_lora_attach refuses a state of
                        * higher rank */
    /* paged KV cache (model/kv_cache.h) */
    int kv_block;      /* positions per block (0: RM_KV_BLOCK_DEFAULT) */
    int kv_blocks;     /* blocks in the pool (0: enough for every sequence to reach n_ctx) */
    rm_type kv_type;   /* RM_TYPE_F32 (default) or RM_TYPE_F16 */
    bool hidden_only;  /* a context that serves embeddings only: a batch that wants no logits
                        * stops after the kept hidden layer (rm_ctx_keep_hidden) */
} rm_ctx_params;

#define RM_KV_BLOCK_DEFAULT 16

typedef struct rm_ctx rm_ctx;

/* One step: n_tokens tokens, each at (seq, pos). Tokens of one sequence in
 * one batch must have increasing positions; the cache must already hold
 * positions 0..pos-1 of that sequence. want_logits NULL: the last token only.
 * The last n_stop rows (0: none) stop after the kept inner hidden layer
 * (rm_ctx_keep_hidden), want no logits and need no delta: embeddings of
 * that layer beside rows that run every layer. Their KV above it stays
 * unwritten, so every later batch of their sequences must stop there too. */
typedef struct {
    int n_tokens;
    const int32_t *tokens;
    const int32_t *pos;
    const int32_t *seq;
    const uint8_t *want_logits;
    int n_stop;
} rm_batch;

rm_status rm_ctx_new(const rm_model *m, const rm_ctx_params *p, rm_ctx **out);
void      rm_ctx_free(rm_ctx *c);
rm_status rm_ctx_decode(rm_ctx *c, const rm_batch *b);
/* Logits of the i-th token that wanted logits in the last decode ([vocab]). */
const float *rm_ctx_logits(const rm_ctx *c, int i);
int       rm_ctx_n_logits(const rm_ctx *c);
/* Forget a sequence's cache (positions start again at 0) and return its
 * KV blocks to the pool. */
void      rm_ctx_seq_clear(rm_ctx *c, int seq);
/* Positions the cache holds for `seq`. */
int       rm_ctx_seq_len(const rm_ctx *c, int seq);
/* Give the empty sequence `seq` positions [0, n_pos) of layers [0,
 * n_layers) from a copy that rm_kv_get_rows took of another sequence
 * whose tokens begin as seq's do (model/kv_cache.h; it may hold more
 * positions and layers); decoding goes on at n_pos. Layers above n_layers
 * stay unwritten: only batches that stop below them may read the
 * sequence. ERR_RANGE (nothing changed) when the pool is short, the
 * sequence is not empty, or the copy holds less. */
struct rm_kv_rows;
rm_status rm_ctx_seq_put(rm_ctx *c, int seq, int n_pos, int n_layers, const struct rm_kv_rows *rows);
/* Give empty sequence dst the first n_pos positions of sequence src (which
 * holds them), every layer: decoding goes on at n_pos as if dst had
 * computed them. ERR_RANGE (nothing changed) when the pool is short. */
rm_status rm_ctx_seq_copy(rm_ctx *c, int src, int dst, int n_pos);
/* The context's paged KV cache, for capacity checks (model/kv_cache.h).
 * A batch is refused (ERR_RANGE, nothing changed) when its sequences need
 * more blocks than are free. */
struct rm_kv_cache;
const struct rm_kv_cache *rm_ctx_kv(const rm_ctx *c);
size_t    rm_ctx_bytes(const rm_ctx *c);
rm_pool  *rm_ctx_pool(rm_ctx *c);
const rm_model *rm_ctx_model(const rm_ctx *c);
/* The parameters the context was made with, defaults filled in (n_logits,
 * n_threads). */
const rm_ctx_params *rm_ctx_get_params(const rm_ctx *c);

/*
 * A per-module delta added after each base projection y = W0 x: the LoRA
 * composition plugs in here (lora/compose.h, rm_lora_attach), so that the
 * model never includes lora. Each decode calls plan once with the batch's
 * sequence ids; when it returns true, every projection of every layer then
 * calls apply with the module's input x [n_tokens][din] and its base output
 * y [n_tokens][dout] (rm_target_dims), to which apply adds the delta; c is
 * the context's compute (its pool and matmul scratch, which scratch_rank
 * sizes). Neither may fail or allocate.
 */
typedef struct {
    bool (*plan)(void *state, int n_tokens, const int32_t *seq); /* false: no token needs a delta this step */
    void (*apply)(void *state, const rm_compute *c, int layer, rm_target t, const float *x, float *y);
} rm_delta_ops;

/* Attach a delta to the context's later decodes (ops NULL: detach; the
 * base alone). ops and state are borrowed: they must outlive the context or
 * be detached first. One delta at a time: a new one replaces the old. */
void rm_ctx_set_delta(rm_ctx *c, const rm_delta_ops *ops, void *state);

/*
 * Hidden states (for embeddings). After rm_ctx_keep_hidden(c, layer) every
 * later decode also keeps, for each token of its batch, the hidden state at
 * `layer`: 0..n_layers is the residual stream after that many blocks (0: the
 * token embeddings), RM_HIDDEN_FINAL the last block's output after the final
 * norm (what the output head reads). RM_HIDDEN_OFF stops keeping them. The
 * row buffer is allocated here, once; decoding still never allocates and
 * computes exactly what it computed before (logits included). In a context
 * made with hidden_only, a batch that wants no logits at all (want_logits
 * all zero) while an inner layer is kept stops after that layer: its
 * positions' KV above that layer stays unwritten, so later batches of those
 * sequences must be of the same kind. Other contexts (an engine's, whose
 * prompt chunks want no logits either) always run every layer.
 * rm_ctx_hidden(c, i) is the [hidden] row of batch token i of the last
 * decode, NULL when nothing is kept or i is out of range.
 */
#define RM_HIDDEN_FINAL (-1)
#define RM_HIDDEN_OFF   (-2)
rm_status    rm_ctx_keep_hidden(rm_ctx *c, int layer);
const float *rm_ctx_hidden(const rm_ctx *c, int i);

/* ---- sampler -------------------------------------------------------------- */

/* OpenAI's logit_bias: a value added to one token's logit before sampling. */
typedef struct {
    int32_t id;
    float bias;
} rm_logit_bias;

#define RM_MAX_LOGIT_BIAS 1024

typedef struct {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off; as llama.cpp: logit > 0 ? /p : *p */
    int repeat_last_n;    /* window of recent tokens the penalty sees */
    /* OpenAI's penalties (0: off), over the output so far, after the
     * repeat penalty as vLLM orders them: a token seen c > 0 times there
     * loses c * frequency_penalty + presence_penalty from its logit */
    float frequency_penalty, presence_penalty;
    /* added to their tokens' logits after the penalties (ids within the
     * vocabulary, biases finite; copied by rm_sampler_new) */
    const rm_logit_bias *logit_bias;
    int n_logit_bias;
    uint64_t seed;
} rm_sampler_params;

void rm_sampler_params_default(rm_sampler_params *p);

typedef struct rm_sampler rm_sampler;
rm_status rm_sampler_new(const rm_sampler_params *p, int vocab, rm_sampler **out);
void      rm_sampler_free(rm_sampler *s);
/* Pick the next token from logits (not modified); history: tokens so far,
 * of which the last n_output are the output (what OpenAI's penalties see). */
int32_t   rm_sampler_sample(rm_sampler *s, const float *logits, const int32_t *history,
                            int n_history, int n_output);
/* The same among the tokens of mask `allow` alone (bit id of allow[id /
 * 64]; at least one set): the others' logits are -inf before anything
 * else, so penalties, filters and the draw see only the allowed ones, as
 * a response format needs. */
int32_t   rm_sampler_sample_allowed(rm_sampler *s, const float *logits, const uint64_t *allow,
                                    const int32_t *history, int n_history, int n_output);

/* A token and its log-probability. */
typedef struct {
    int32_t id;
    float logprob;
} rm_token_logprob;

/*
 * The log-softmax of logits[0..V) at token `chosen` (the return value) and
 * at the n_top most likely tokens, most likely first, ties by lower id,
 * into top[0..n_top) (n_top may be 0; at most V). O(V * (1 + n_top)) at
 * worst, about O(V) for logits that are not sorted.
 */
float rm_logprobs(const float *logits, int V, int32_t chosen, int n_top, rm_token_logprob *top);

/* ---- writing ---------------------------------------------------------------- */

/*
 * Save a model as a Hugging Face folder (config.json + model.safetensors)
 * or a GGUF file as llama.cpp writes it (its tensor names and keys, Q/K rows
 * permuted for the llama family, llama3 scaling as rope_freqs.weight).
 * 2-D weights are converted to `type`, a plan: an rm_type, -1 to keep each
 * tensor's type, or RM_MODEL_PLAN_Q4_K_M for llama.cpp's Q4_K_M mix (see
 * rm_model_plan_type). HF folders take f32/f16/bf16 only. A tensor whose
 * rows are not whole blocks of the type falls back: k-quants to q8_0, then
 * to f16. Norms and biases are stored f32.
 * The output is written atomically: an existing file is replaced whole or
 * not at all.
 */
rm_status rm_model_save(const rm_model *m, rm_source_kind format, int type, const char *path);

/* The plan of llama.cpp's Q4_K_M mix (a `type` of rm_model_save). */
#define RM_MODEL_PLAN_Q4_K_M (-2)
/* What a 2-D weight is to llama.cpp's quantisation mixes. */
typedef enum {
    RM_WEIGHT_OTHER = 0, RM_WEIGHT_EMBD, RM_WEIGHT_ATTN_V, RM_WEIGHT_FFN_DOWN, RM_WEIGHT_OUTPUT
} rm_weight_role;
/*
 * The type rm_model_save gives a 2-D weight of `cols` columns that now has
 * type `have`, under plan (as rm_model_save's type); layer: its layer (0
 * for embeddings and output). Q4_K_M: q6_k for the output (the
 * embeddings when tied, q8_0 if rows are not whole 256-blocks) and for
 * attn_v and ffn_down in llama.cpp's use_more_bits layers (the first and
 * last eighth and every third between), q4_k elsewhere.
 */
rm_type rm_model_plan_type(const rm_model_config *c, int plan, rm_weight_role role, int layer, int64_t cols,
                           rm_type have);
/* The plan that reproduces m's weight types: RM_MODEL_PLAN_Q4_K_M when
 * every 2-D weight follows that mix, else rm_model_main_type(m). What a
 * merge requantises to. */
int     rm_model_plan_of(const rm_model *m);

/*
 * An in-memory model of configuration cfg (checked) whose weights are all
 * f32 and its own, for code that builds a model (random models, merges, the
 * trainer's export). Sizes are computed first; the 2-D weights are one
 * block, norms, biases (and rope_freq_factors when asked for) another, and
 * the model's weights are views into them; values start at zero. *views
 * are writable views of the same memory, owned by the model and valid
 * while it lives: fill them, then hand the model on as read-only. The
 * model's source is HF; path is copied (NULL: "memory"). Free with
 * rm_model_free.
 */
rm_status rm_model_new_f32(const rm_model_config *cfg, const char *path, bool rope_freq_factors, rm_model **out,
                           rm_model_f32 **views);

/*
 * Build an in-memory model with random weights of the given shape (HF
 * layout, RoPE style neox). Values are uniform with standard deviation
 * `std`, norms 1. The draw order is part of the contract (the trainer's
 * rm_tm_*_new_random follows it): one stream from `seed`, first the 2-D
 * weights in rm_model_f32.weights order, then each layer's q, k, v biases
 * (qkv_bias). Free with rm_model_free.
 */
rm_status rm_model_random(const rm_model_config *cfg, uint64_t seed, float std, rm_model **out);

/* Give m the tokenizer at `path` (a folder or tokenizer.json); it must fit
 * the vocabulary. An HF save then copies that folder's tokenizer files. */
rm_status rm_model_set_tokenizer(rm_model *m, const char *path);

#endif
