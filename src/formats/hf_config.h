/*
 * hf_config.h — a Hugging Face config.json of the Llama family (llama,
 * mistral, qwen2) parsed and validated into a flat struct.
 *
 * Defaults follow transformers' config classes where a key may be absent
 * or null: num_key_value_heads = num_attention_heads, head_dim =
 * hidden_size / num_attention_heads, max_position_embeddings 2048,
 * rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false,
 * attention_bias false (qwen2: true, its q/k/v projections always have a
 * bias). The five core sizes (vocab_size, hidden_size, intermediate_size,
 * num_hidden_layers, num_attention_heads) are required.
 */
#ifndef RM_HF_CONFIG_H
#define RM_HF_CONFIG_H

#include "kernels/kernels.h"

#define RM_HF_MAX_EOS 8

typedef struct {
    char arch[32];                /* "llama", "mistral", "qwen2" (from model_type) */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;      /* divides num_attention_heads */
    int head_dim;                 /* even */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    struct {
        rm_rope_scaling type;     /* NONE (also for "default"), LINEAR, LLAMA3 */
        float factor;             /* LINEAR, LLAMA3 */
        float low_freq_factor, high_freq_factor;   /* LLAMA3 */
        int original_max_position_embeddings;      /* LLAMA3 */
    } rope_scaling;
    bool tie_word_embeddings;
    bool attention_bias;          /* bias on q, k, v */
    int bos_token_id;             /* -1 if absent */
    int eos_token_id;             /* the first of eos_token_ids, -1 if absent */
    int eos_token_ids[RM_HF_MAX_EOS];
    int n_eos_token_ids;          /* the first RM_HF_MAX_EOS of a list are kept */
    char torch_dtype[16];         /* "bfloat16", ...; "" if absent */
    int sliding_window;           /* recorded only; 0 if absent, null or disabled */
} rm_hf_config;

/*
 * Parse path: a config.json file, or a folder holding one. Errors name the
 * file and the key: ERR_IO (unreadable), ERR_FORMAT (not JSON, wrong type,
 * missing or inconsistent size), ERR_UNSUPPORTED ("unknown architecture X
 * in FILE", a rope_scaling type other than default/linear/llama3).
 */
rm_status rm_hf_config_load(const char *path, rm_hf_config *out);
/* The same from a JSON text of len bytes; name is used in messages. */
rm_status rm_hf_config_parse(const char *json, size_t len, const char *name, rm_hf_config *out);

#endif
