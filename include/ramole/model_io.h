/*
 * ramole/model_io.h — models as files: write one in another format or
 * type, make one of a known shape with random weights, merge adapters into
 * a copy. Included by ramole.h.
 */
#ifndef RAMOLE_MODEL_IO_H
#define RAMOLE_MODEL_IO_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when s names an architecture ("llama", "mistral", "qwen2"). */
int ramole_arch_known(const char *s);

/* The shape of a new model. */
typedef struct {
    const char *arch;       /* "llama", "mistral", "qwen2" */
    int hidden, ffn, n_layers, n_heads, n_kv_heads, vocab_size, max_pos;
    int tied_embeddings;
    float rope_theta, rms_eps;
} ramole_model_shape;

/* The shape of a named preset of arch: "tiny", "small", "tinyllama-1.1b",
 * "qwen2.5-0.5b"; 0 when name is none of them. */
int ramole_model_preset(const char *arch, const char *name, ramole_model_shape *out);

/*
 * A model of shape s with random weights (normal, standard deviation std,
 * from seed). With a tokenizer (a tokenizer.json or a model carrying one)
 * the vocabulary grows to hold its tokens, BOS and EOS are its own, and
 * the model carries it; else BOS 1 and EOS 2. Errors name the bad shape
 * or the tokenizer file.
 */
ramole_status ramole_model_random(const ramole_model_shape *s, uint64_t seed, float std, const char *tokenizer,
                                  ramole_model **out);

/*
 * Write m as a Hugging Face folder or a GGUF file as llama.cpp writes it.
 * plan: a ramole_type for every 2-D weight, RAMOLE_PLAN_Q4_K_M, or -1 to
 * keep each tensor's type; HF folders take f32, f16 and bf16 only. The
 * output is replaced whole or not at all.
 */
ramole_status ramole_model_save(const ramole_model *m, ramole_model_format format, int plan, const char *path);
/* The plan that reproduces m's weight types (a ramole_type, or
 * RAMOLE_PLAN_Q4_K_M when every 2-D weight follows that mix, else the type
 * most 2-D weights have). */
int ramole_model_plan_of(const ramole_model *m);

/*
 * A new in-memory copy of m with the n adapters merged in:
 * W' = W + sum_i weights_i s_i B_i A_i (weights NULL: all 1). The copy has
 * f32 weights, owns all its memory and does not reference m.
 */
ramole_status ramole_model_merge(const ramole_model *m, ramole_adapter *const *adapters, const float *weights, int n,
                                 ramole_model **out);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_MODEL_IO_H */
