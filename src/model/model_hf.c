/*
 * model_hf.c — Hugging Face model folders: config.json (parsed by
 * formats/hf_config) and the weights of model.safetensors or of the shards
 * model.safetensors.index.json lists (formats/st_index).
 */
#include <string.h>

#include "formats/hf_config.h"
#include "formats/st_index.h"
#include "model/model_internal.h"

/* The family's configuration from a parsed config.json. */
static rm_status config_from_hf(const rm_hf_config *h, const char *path, rm_model_config *c) {
    rm_arch arch;
    if (!rm_arch_from_name(h->arch, &arch))
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unknown architecture \"%s\" (supported: llama, mistral, qwen2)",
                      path, h->arch);
    if (h->attention_bias && arch != RM_ARCH_QWEN2)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: attention_bias is not supported for %s", path, h->arch);
    rm_model_config_defaults(c, arch);
    c->vocab_size = h->vocab_size;
    c->hidden = h->hidden_size;
    c->ffn = h->intermediate_size;
    c->n_layers = h->num_hidden_layers;
    c->n_heads = h->num_attention_heads;
    c->n_kv_heads = h->num_key_value_heads;
    c->head_dim = h->head_dim;
    c->max_pos = h->max_position_embeddings;
    c->rms_eps = h->rms_norm_eps;
    c->rope.theta = h->rope_theta;
    c->rope.n_rot = h->head_dim;
    c->rope.scaling = h->rope_scaling.type;
    c->rope.factor = h->rope_scaling.type == RM_ROPE_SCALING_NONE ? 1.0f : h->rope_scaling.factor;
    c->rope.low_freq_factor = h->rope_scaling.low_freq_factor;
    c->rope.high_freq_factor = h->rope_scaling.high_freq_factor;
    c->rope.original_max_pos = h->rope_scaling.original_max_position_embeddings;
    c->tied_embeddings = h->tie_word_embeddings;
    c->qkv_bias = arch == RM_ARCH_QWEN2;
    c->bos_id = h->bos_token_id;
    c->eos_id = h->eos_token_id;
    return rm_model_config_check(c, path);
}

rm_status rm_model_config_from_json(const char *path, rm_model_config *c) {
    rm_hf_config h;
    RM_TRY(rm_hf_config_load(path, &h));
    return config_from_hf(&h, path, c);
}

static rm_status hf_find(void *p, const char *name, rm_src_tensor *out) {
    const rm_st_set *set = p;
    const rm_st_tensor *t = rm_st_set_find(set, name);
    if (!t) return RAMOLE_ERR_NOT_FOUND;
    out->name = t->name;
    out->file = rm_st_path(rm_st_set_shard_of(set, t));
    out->data = t->data;
    out->type = t->type;
    out->type_name = t->dtype;
    out->n_dims = t->n_dims;
    for (int i = 0; i < t->n_dims && i < 4; i++) out->shape[i] = t->shape[i];
    return RAMOLE_OK;
}

rm_status rm_model_load_hf(const char *dir, rm_model *m) {
    char *cfg_path = rm_path_join(dir, "config.json");
    if (!cfg_path) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st;
    if (!rm_file_exists(cfg_path))
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no config.json in this folder (not a Hugging Face model folder)", dir);
    else if ((st = rm_model_config_from_json(cfg_path, &m->cfg)) == RAMOLE_OK &&
             (m->files = rm_calloc(1, sizeof *m->files)) == NULL)
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) st = rm_st_set_open(dir, &m->files->st);
    if (st == RAMOLE_OK) st = rm_model_bind(m, &rm_names_hf, hf_find, m->files->st, dir);
    rm_free(cfg_path);
    return st;
}
