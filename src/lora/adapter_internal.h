/*
 * adapter_internal.h — what the adapter files (adapter.c, adapter_peft.c,
 * adapter_gguf.c, merge.c) share and the rest of ramole does not need:
 * building an adapter module by module, the scale rule, Q/K row order and
 * reading a file tensor into f32 with a finiteness check.
 *
 * Row order, once: an adapter in memory holds the rows of B for Q and K in
 * the order of the base it was loaded against (adjacent pairs when
 * base->cfg.rope.style is RM_ROPE_NORMAL, HF order otherwise). PEFT files
 * always hold HF order; GGUF LoRA files of the llama family hold pairs,
 * qwen2 GGUF files HF order (llama.cpp's convert_lora_to_gguf.py permutes
 * lora_B of q/k exactly as it permutes the base weights; lora_A is left as
 * it is because the permutation acts on output rows only).
 */
#ifndef RM_ADAPTER_INTERNAL_H
#define RM_ADAPTER_INTERNAL_H

#include "lora/adapter.h"

/* A new adapter for `base` with every module unadapted (rank 0). path may
 * be NULL; name is derived from it (the last path component). */
rm_status rm_adapter_alloc(const rm_model *base, const char *path, rm_adapter **out);

/* Give module (layer, t) rank r and zeroed A [r][din], B [dout][r]
 * (carved from the reserved block while it lasts). */
rm_status rm_adapter_module_alloc(rm_adapter *a, const rm_model *base, int layer, rm_target t, int rank,
                                  float scale);

/* One zeroed block for the f32 modules a loader is about to allocate, of
 * the sum of rm_adapter_module_bytes over them. A loader knows every rank
 * before it reads a value; one large block is mapped in huge pages
 * (rm_malloc) where 300-odd arrays would fault in a 4 KB page at a time. */
size_t rm_adapter_module_bytes(const rm_model *base, rm_target t, int rank);
rm_status rm_adapter_reserve(rm_adapter *a, size_t bytes);

/* The gate pooling that a file's RM_GATE_POOL_KEY value names: "token" or
 * "prompt", NULL (the key is absent) token. Anything else is ERR_FORMAT
 * naming the adapter (origin), the key and the value. */
rm_status rm_gate_pool_parse(const char *origin, const char *value, rm_gate_pool *out);
/* A file's RM_RETRIEVAL_PRIOR_KEY value: a decimal number in [0,
 * RM_RETRIEVAL_PRIOR_MAX], NULL (absent) 0; else ERR_FORMAT naming the
 * adapter, the key and the value. rm_retrieval_prior_format writes it back
 * ("%.9g", which reads back as the same float). */
rm_status rm_retrieval_prior_parse(const char *origin, const char *value, float *out);
void rm_retrieval_prior_format(float lambda, char buf[32]);

/* Recompute target_mask and max_rank from the modules. */
void rm_adapter_update_summary(rm_adapter *a);

/* The scale of a module: alpha / r, or alpha / sqrt(r) for rsLoRA
 * (computed in double, rounded once to float, the same everywhere). */
float rm_lora_scale(double alpha, int rank, bool rslora);

/* "llama" (llama and mistral, as llama.cpp writes them) or "qwen2". */
const char *rm_lora_gguf_arch(const rm_model *base);

/* Does the base hold Q/K rows in adjacent-pair order? */
static inline bool rm_lora_base_pairs(const rm_model *base) {
    return base->cfg.rope.style == RM_ROPE_NORMAL;
}

/* Heads whose rows target t permutes (n_heads for Q, n_kv_heads for K, 0
 * for every other target). */
int rm_lora_perm_heads(const rm_model *base, rm_target t);

/*
 * Reorder the dout rows of B ([dout][rank]) between HF order and pairs
 * order (to_pairs: HF -> pairs). n_heads > 0. tmp holds dout*rank floats.
 */
void rm_lora_permute_rows(float *B, float *tmp, int64_t dout, int rank, int n_heads, bool to_pairs);

/*
 * Convert n elements of `type` (F32/F16/BF16) at src into f32 at dst. If
 * transpose, src is [cols][rows] and dst becomes [rows][cols]. Every value
 * must be finite: otherwise an ERR_FORMAT "adapter ORIGIN: tensor NAME:
 * value V at index I (row R, column C) is not finite" (index into the file's
 * layout).
 */
rm_status rm_lora_read_f32(float *dst, const void *src, rm_type type, int64_t rows, int64_t cols,
                           bool transpose, const char *origin, const char *name);

#endif
