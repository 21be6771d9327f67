/*
 * adapter.h — LoRA adapters in memory, and their files.
 *
 * An adapter holds, for some (layer, target module) pairs of a base model,
 * A (r x din) and B (dout x r) and a scale s = alpha / r (alpha / sqrt(r)
 * for rsLoRA): the module computes y = W0 x + s B A x. Ranks may differ
 * per module (PEFT rank_pattern / alpha_pattern).
 *
 * Element type: adapters are loaded, made and trained in f32. A server can
 * store them in f16 or bf16 (rm_adapter_convert): half the memory, and half
 * the bytes a decode step reads per adapter, which is what bounds a batch
 * that touches many adapters. Every function here accepts any of the three;
 * code that needs the values as f32 reads them with rm_lora_module_get.
 *
 * Files: PEFT folders (adapter_config.json + adapter_model.safetensors,
 * tensors base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...)
 * and GGUF LoRA files as llama.cpp writes them (general.type = "adapter",
 * adapter.type = "lora", adapter.lora.alpha, blk.N.attn_q.weight.lora_a /
 * .lora_b). Loading validates everything against the base model before the
 * adapter is returned: a failed load leaves nothing behind.
 *
 * Row order: an adapter in memory is tied to the row order of the base it
 * was loaded against. When base->cfg.rope.style is RM_ROPE_NORMAL (a GGUF
 * llama/mistral base, whose Q/K rows llama.cpp permutes into adjacent
 * pairs), the rows of B for Q and K are in that permuted order too, so that
 * B A adds to the base weight row by row; otherwise they are in HF order.
 * Loading and saving convert between a file's order and the base's (PEFT
 * files: HF order; GGUF LoRA files: pairs for llama/mistral, HF for qwen2).
 * Use an adapter only with bases of the same fingerprint and row order.
 *
 * Lifetime: an adapter owns its memory and does not reference the base or
 * the file it came from; free it with rm_adapter_free.
 */
#ifndef RM_ADAPTER_H
#define RM_ADAPTER_H

#include "model/model.h"

#define RM_LORA_MAX_RANK 1024

typedef struct {
    int rank;     /* 0: this module is not adapted */
    float scale;  /* alpha / rank (or alpha / sqrt(rank)) */
    rm_type type; /* of A and B: RM_TYPE_F32, RM_TYPE_F16 or RM_TYPE_BF16 */
    void *A;      /* [rank][din] */
    void *B;      /* [dout][rank] */
} rm_lora_module;

/* Element i of A or B (one of m's two matrices) as f32. */
static inline float rm_lora_elem(const rm_lora_module *m, const void *p, size_t i) {
    switch (m->type) {
    case RM_TYPE_F16: return rm_f16_to_f32(((const uint16_t *)p)[i]);
    case RM_TYPE_BF16: return rm_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}
/* Copy A (b false, rank x din values) or B (b true, dout x rank) to dst as f32. */
void rm_lora_module_get(const rm_lora_module *m, const rm_model_config *c, rm_target t, bool b, float *dst);

/*
 * What a RouterLoRA router's scores are taken over (RAMoLE routes each
 * token on its own state; pooling over the prompt is ramole's option):
 *   TOKEN   z_t = score of token t, the paper's;
 *   PROMPT  z_t = mean of the scores of prompt tokens 0..min(t, P-1), P the
 *           sequence's prompt length: a prompt token sees the prompt so
 *           far, every later token the whole prompt, so one decision per
 *           sequence and module once the prompt is read (causal, so chunked
 *           prefill and training agree).
 * w_t = softmax(z_t) either way; the experts' outputs stay per token. A
 * router's pooling is part of what it learnt: saved with it as
 * "ramole.gate_pool" ("prompt"; absent: token), and meaningless for other
 * adapters.
 */
typedef enum { RM_GATE_POOL_TOKEN = 0, RM_GATE_POOL_PROMPT } rm_gate_pool;
#define RM_GATE_POOL_KEY "ramole.gate_pool"
/* "token" or "prompt" (what the files hold), and back (false: neither). */
const char *rm_gate_pool_name(rm_gate_pool p);
bool rm_gate_pool_from_name(const char *s, rm_gate_pool *out);

/*
 * A router's retrieval prior lambda >= 0 (ramole's option; 0, the paper's:
 * none). Such a router gates a token by softmax_j(z_j + lambda r_j), where
 * z_j is its score of expert j (pooled or not, above) and r_j the
 * retrieval score of expert j for the request (the cosine that retrieved
 * it; rm_composition.retrieval). The router's scores see only the experts'
 * outputs, which it learns for the adapters it trained over; the retrieval
 * score says how well the prompt fits any adapter, uploaded later too.
 * Saved with the router as "ramole.retrieval_prior" (a decimal string;
 * absent: 0), at most RM_RETRIEVAL_PRIOR_MAX.
 */
#define RM_RETRIEVAL_PRIOR_KEY "ramole.retrieval_prior"
#define RM_RETRIEVAL_PRIOR_MAX 1000.0
/* The one test of each, wherever a value arrives (false for NaN): a prior
 * in [0, RM_RETRIEVAL_PRIOR_MAX], a retrieval score (a cosine) in [-1, 1]. */
static inline bool rm_retrieval_prior_ok(double lambda) { return lambda >= 0 && lambda <= RM_RETRIEVAL_PRIOR_MAX; }
static inline bool rm_retrieval_score_ok(double r) { return r >= -1 && r <= 1; }

typedef struct rm_adapter {
    char *name;               /* file or folder name unless set otherwise */
    char *path;
    int n_layers;
    rm_lora_module *mods;     /* [n_layers * RM_TARGET_COUNT], index layer*COUNT + target */
    uint64_t base_fingerprint;
    int max_rank;
    float alpha;              /* the config's lora_alpha (default for modules) */
    int rank;                 /* the config's r */
    bool rslora;
    unsigned target_mask;     /* bit t set if any layer adapts target t */
    rm_type type;             /* element type of every module's A and B */
    rm_gate_pool gate_pool;   /* as a router: what its scores pool over */
    float retrieval_prior;    /* as a router: lambda of its retrieval prior (0: none) */
    /* one block holding the modules' arrays since rm_adapter_convert (NULL:
     * each array is its own allocation; arrays added later still are) */
    void *arena;
    size_t arena_bytes, arena_used;
} rm_adapter;

static inline rm_lora_module *rm_adapter_mod(const rm_adapter *a, int layer, rm_target t) {
    return &a->mods[(size_t)layer * RM_TARGET_COUNT + (size_t)t];
}

/*
 * Load a PEFT folder or a GGUF LoRA file, validated against `base`. path
 * may also name the folder's adapter_config.json or
 * adapter_model.safetensors. On failure *out is NULL, nothing stays
 * allocated, and the message names the adapter path, the tensor or key and
 * the reason (ERR_FORMAT bad content, ERR_UNSUPPORTED a PEFT feature ramole
 * does not run (DoRA, modules_to_save, bias, ...), ERR_RANGE a rank outside
 * 1..RM_LORA_MAX_RANK, ERR_MISMATCH another base model, ERR_NOT_FOUND /
 * ERR_IO missing or unreadable files).
 */
rm_status rm_adapter_load(const rm_model *base, const char *path, rm_adapter **out);
/*
 * The format rm_adapter_load reads `path` as, decided by content: PEFT for
 * a folder holding adapter_config.json (or an existing path that names a
 * folder's adapter_config.json or adapter_model.safetensors), GGUF for a
 * GGUF file whose general.type is "adapter"; NONE for anything else that
 * exists (a model folder or GGUF model, a folder without
 * adapter_config.json, a file that is not GGUF). Loading a NONE path fails
 * with the message of the loader of its kind (PEFT for a folder, GGUF for a
 * file). Reads at most a GGUF header. Errors: ERR_INVALID (empty path),
 * ERR_NOT_FOUND (nothing at path), ERR_NOMEM.
 */
typedef enum { RM_ADAPTER_FORMAT_NONE = 0, RM_ADAPTER_FORMAT_PEFT, RM_ADAPTER_FORMAT_GGUF } rm_adapter_format;
rm_status rm_adapter_format_of(const char *path, rm_adapter_format *fmt);
/* The same for a known format. */
rm_status rm_adapter_load_peft(const rm_model *base, const char *dir, rm_adapter **out);
rm_status rm_adapter_load_gguf(const rm_model *base, const char *path, rm_adapter **out);
void      rm_adapter_free(rm_adapter *a); /* NULL is a no-op */

/*
 * Store every module's A and B as `type` (f32, f16 or bf16). f16 and bf16
 * round each value to nearest even; a value outside f16's range is an
 * error naming the module (ERR_RANGE). On failure the adapter is
 * unchanged.
 */
rm_status rm_adapter_convert(rm_adapter *a, const rm_model *base, rm_type type);
/* Bytes of A and B over all modules. */
size_t rm_adapter_bytes(const rm_adapter *a, const rm_model *base);

/*
 * Check that an adapter fits `base`: same fingerprint and layer count,
 * every adapted module of rank 1..RM_LORA_MAX_RANK with A and B present.
 * (Values are checked when loading.) Errors name the adapter.
 */
rm_status rm_adapter_check(const rm_adapter *a, const rm_model *base);

/*
 * Write as a PEFT folder (tensors of the adapter's element type, in HF row order, adapter_config.json
 * with r, lora_alpha, use_rslora, target_modules, and rank_pattern /
 * alpha_pattern entries (full module names) for modules whose rank or scale
 * differ from r and lora_alpha). The safetensors __metadata__ records
 * "ramole.base_fingerprint" (16 hex digits) and, for a router of
 * RM_GATE_POOL_PROMPT, "ramole.gate_pool": "prompt" (nothing for token
 * pooling), and for a router with a retrieval prior
 * "ramole.retrieval_prior". `base` is the model the adapter was loaded
 * against (it fixes the row order). The folder is created if needed; each file is written
 * atomically.
 */
rm_status rm_adapter_save_peft(const rm_adapter *a, const rm_model *base, const char *dir);
/*
 * Write as a GGUF LoRA file as llama.cpp's convert_lora_to_gguf.py does
 * (tensors of the adapter's element type, B rows of q/k permuted for llama/mistral). GGUF has one
 * alpha per file and no rsLoRA: llama.cpp scales every module by
 * alpha / rank (rank = lora_b ne[0]). A module whose scale differs from
 * that gets its B multiplied by scale / (alpha / rank), so that the
 * product is the same (B is then not bit-identical to the source).
 * ramole's own keys: "ramole.base_fingerprint" (u64) and, as in PEFT
 * files, the strings "ramole.gate_pool" of a prompt-pooled router and
 * "ramole.retrieval_prior" of a router with a retrieval prior.
 */
rm_status rm_adapter_save_gguf(const rm_adapter *a, const rm_model *base, const char *path);

/*
 * A random adapter for tests: rank r on the targets in target_mask, A and B
 * uniform with standard deviation `std` (B is not zero, unlike a fresh PEFT
 * init, so that the adapter changes the output). Every layer is adapted;
 * scale alpha / rank. Values are drawn in HF row order and then put in
 * the base's order, so the same seed gives the same adapter for an HF base
 * and for a GGUF base of the same model.
 */
rm_status rm_adapter_random(const rm_model *base, int rank, float alpha, unsigned target_mask, uint64_t seed,
                            float std, rm_adapter **out);

/* Remove one module (free its matrices, rank 0: the layer's target is no
 * longer adapted) and refresh the adapter's summary. */
void rm_adapter_drop_module(rm_adapter *a, int layer, rm_target t);

/*
 * Merge: W' = W + sum_i w_i s_i B_i A_i into a new in-memory copy of the
 * base (f32 weights; save it with rm_model_save). weights may be NULL (all
 * 1). Adapters must fit the base (rm_adapter_check). The merged model has
 * the base's configuration and row order, owns all its memory and does not
 * reference the base; free it with rm_model_free.
 */
rm_status rm_model_merge(const rm_model *base, rm_adapter *const *adapters, const float *weights, int n,
                         rm_model **out);

#endif
