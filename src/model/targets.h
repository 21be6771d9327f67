/*
 * targets.h — the adaptable linear modules of a Llama-family layer (the
 * "targets" an adapter may adapt), their names in the two file families,
 * and their sizes in a model configuration.
 *
 * Both the model (whose forward runs them) and lora (whose adapters are
 * indexed by them) use targets, so they live here, below lora. A layer's
 * weight for a target is rm_layer_weight (model.h); code that walks a
 * layer's seven projections loops over targets instead of listing fields.
 * Included by model.h, which defines the structs named here.
 */
#ifndef RM_TARGETS_H
#define RM_TARGETS_H

#include "kernels/kernels.h"

typedef struct rm_model_config rm_model_config;

/* The adaptable linear modules of a layer, in the order of the forward. */
typedef enum {
    RM_TARGET_Q = 0, RM_TARGET_K, RM_TARGET_V, RM_TARGET_O,
    RM_TARGET_GATE, RM_TARGET_UP, RM_TARGET_DOWN,
    RM_TARGET_COUNT
} rm_target;

/* "q_proj", "k_proj", ... (PEFT / HF module names); "?" out of range. */
const char *rm_target_hf_name(rm_target t);
/* "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" (GGUF). */
const char *rm_target_gguf_name(rm_target t);
/* Parse "q", "q_proj", "k", ... "down_proj" (and the GGUF names); false if unknown. */
bool rm_target_from_name(const char *s, rm_target *out);
/* Input and output sizes of target t in model config c (0 for t out of range). */
void rm_target_dims(const rm_model_config *c, rm_target t, int64_t *din, int64_t *dout);
/* The largest din or dout over all targets (scratch sizes). */
int64_t rm_target_max_dim(const rm_model_config *c);

#endif
