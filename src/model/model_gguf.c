/*
 * model_gguf.c — models in GGUF files as llama.cpp writes them.
 *
 * llama.cpp's converter permutes the rows of Q and K of the llama family
 * so that RoPE rotates adjacent pairs (its "normal" RoPE); qwen2 is stored
 * unpermuted and rotates halves ("neox"). We keep the file's layout and pick
 * the matching RoPE style instead of un-permuting, so weights stay mmap'd.
 * Llama-3 rope scaling arrives as a rope_freqs.weight tensor of per-pair
 * divisors rather than as metadata.
 */
#include <stdio.h>
#include <string.h>

#include "model/model_internal.h"

typedef struct {
    const rm_gguf *g;
    char arch[32];
    char key[128];
} gguf_cfg;

static const char *akey(gguf_cfg *k, const char *suffix) {
    snprintf(k->key, sizeof k->key, "%s.%s", k->arch, suffix);
    return k->key;
}

/* Integer metadata: missing -> def (or an error when required). */
static rm_status get_int(gguf_cfg *k, const char *suffix, bool required, int def, int *out) {
    int64_t v;
    const char *key = akey(k, suffix);
    rm_status st = rm_gguf_get_i64(k->g, key, &v);
    if (st == RAMOLE_ERR_NOT_FOUND && !required) {
        *out = def;
        return RAMOLE_OK;
    }
    if (st == RAMOLE_ERR_NOT_FOUND)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: metadata key %s is missing", rm_gguf_path(k->g), key);
    RM_TRY(st);
    if (v < 0 || v > INT32_MAX)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: metadata %s = %lld is out of range", rm_gguf_path(k->g), key, (long long)v);
    *out = (int)v;
    return RAMOLE_OK;
}

static rm_status get_float(gguf_cfg *k, const char *suffix, float def, float *out) {
    rm_status st = rm_gguf_get_f32(k->g, akey(k, suffix), out);
    if (st == RAMOLE_ERR_NOT_FOUND) {
        *out = def;
        return RAMOLE_OK;
    }
    return st;
}

static int get_token_id(const rm_gguf *g, const char *key) {
    uint32_t v;
    return rm_gguf_get_u32(g, key, &v) == RAMOLE_OK && v <= INT32_MAX ? (int)v : -1;
}

static rm_status gguf_config(const rm_gguf *g, rm_model_config *c) {
    const char *path = rm_gguf_path(g);
    gguf_cfg k = {.g = g};
    const char *s;
    size_t n;
    rm_status st = rm_gguf_get_str(g, "general.architecture", &s, &n);
    if (st == RAMOLE_ERR_NOT_FOUND)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: general.architecture is missing", path);
    RM_TRY(st);
    if (n >= sizeof k.arch) n = sizeof k.arch - 1;
    memcpy(k.arch, s, n);
    k.arch[n] = 0;
    const char *type;
    size_t tn;
    if (rm_gguf_get_str(g, "general.type", &type, &tn) == RAMOLE_OK && tn == 7 && !memcmp(type, "adapter", 7))
        return rm_err(RAMOLE_ERR_INVALID, "%s: this GGUF file is a LoRA adapter, not a model", path);
    rm_arch arch;
    if (!rm_arch_from_name(k.arch, &arch))
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unknown architecture \"%s\" (supported: llama, mistral, qwen2)",
                      path, k.arch);
    rm_model_config_defaults(c, arch);
    c->rope.theta = 10000.0f;
    RM_TRY(get_int(&k, "embedding_length", true, 0, &c->hidden));
    RM_TRY(get_int(&k, "block_count", true, 0, &c->n_layers));
    RM_TRY(get_int(&k, "feed_forward_length", true, 0, &c->ffn));
    RM_TRY(get_int(&k, "attention.head_count", true, 0, &c->n_heads));
    RM_TRY(get_int(&k, "attention.head_count_kv", false, c->n_heads, &c->n_kv_heads));
    RM_TRY(get_int(&k, "context_length", false, 2048, &c->max_pos));
    if (c->n_heads <= 0) return rm_err(RAMOLE_ERR_FORMAT, "%s: attention.head_count must be positive", path);
    RM_TRY(get_int(&k, "attention.key_length", false, c->hidden / c->n_heads, &c->head_dim));
    RM_TRY(get_int(&k, "rope.dimension_count", false, c->head_dim, &c->rope.n_rot));
    RM_TRY(get_float(&k, "attention.layer_norm_rms_epsilon", c->rms_eps, &c->rms_eps));
    RM_TRY(get_float(&k, "rope.freq_base", c->rope.theta, &c->rope.theta));
    c->rope.style = arch == RM_ARCH_QWEN2 ? RM_ROPE_NEOX : RM_ROPE_NORMAL;
    if (rm_gguf_get_str(g, akey(&k, "rope.scaling.type"), &s, &n) == RAMOLE_OK) {
        if (n == 6 && !memcmp(s, "linear", 6)) {
            c->rope.scaling = RM_ROPE_SCALING_LINEAR;
            RM_TRY(get_float(&k, "rope.scaling.factor", 1.0f, &c->rope.factor));
        } else if (!(n == 4 && !memcmp(s, "none", 4))) {
            return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: rope scaling type \"%.*s\" is not supported", path, (int)n, s);
        }
    }
    /* Vocabulary size: metadata if present, else the embedding's rows. */
    const rm_gguf_tensor *emb = rm_gguf_tensor_find(g, "token_embd.weight");
    RM_TRY(get_int(&k, "vocab_size", false, emb && emb->n_dims == 2 ? (int)emb->ne[1] : 0, &c->vocab_size));
    c->qkv_bias = rm_gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL;
    c->tied_embeddings = rm_gguf_tensor_find(g, "output.weight") == NULL;
    c->bos_id = get_token_id(g, "tokenizer.ggml.bos_token_id");
    c->eos_id = get_token_id(g, "tokenizer.ggml.eos_token_id");
    return rm_model_config_check(c, path);
}

static rm_status gguf_find(void *p, const char *name, rm_src_tensor *out) {
    const rm_gguf *g = p;
    const rm_gguf_tensor *t = rm_gguf_tensor_find(g, name);
    if (!t) return RAMOLE_ERR_NOT_FOUND;
    out->name = t->name;
    out->file = rm_gguf_path(g);
    out->data = t->data;
    out->type = t->type;
    out->type_name = rm_ggml_type_name(t->ggml_type);
    out->n_dims = t->n_dims;
    for (int i = 0; i < t->n_dims; i++) out->shape[i] = t->ne[t->n_dims - 1 - i];
    return RAMOLE_OK;
}

rm_status rm_model_load_gguf(const char *path, rm_model *m) {
    m->files = rm_calloc(1, sizeof *m->files);
    if (!m->files) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    RM_TRY(rm_gguf_open(path, &m->files->gguf));
    RM_TRY(gguf_config(m->files->gguf, &m->cfg));
    return rm_model_bind(m, &rm_names_gguf, gguf_find, m->files->gguf, path);
}
