/*
 * model_hf.c — Hugging Face model folders: config.json and the weights in
 * model.safetensors or shards listed by model.safetensors.index.json.
 *
 * Tensor lookup goes through the index's weight_map when there is one (so a
 * tensor listed in the wrong shard is an error naming both), else through
 * every open safetensors file.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "model/model_internal.h"

/* ---- config.json ------------------------------------------------------- */

typedef struct {
    json_t *root;
    const char *path;
} cfg_reader;

static rm_status cfg_int(cfg_reader *r, const char *key, bool required, int def, int *out) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        if (required) return rm_err(RAMOLE_ERR_FORMAT, "%s: key \"%s\" is missing", r->path, key);
        *out = def;
        return RAMOLE_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > INT32_MAX)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer", r->path, key);
    *out = (int)json_integer_value(v);
    return RAMOLE_OK;
}

static rm_status cfg_float(cfg_reader *r, json_t *obj, const char *key, float def, float *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return RAMOLE_OK;
    }
    if (!json_is_number(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: \"%s\" must be a number", r->path, key);
    *out = (float)json_number_value(v);
    return RAMOLE_OK;
}

static rm_status cfg_bool(cfg_reader *r, const char *key, bool def, bool *out) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return RAMOLE_OK;
    }
    if (!json_is_boolean(v)) return rm_err(RAMOLE_ERR_FORMAT, "%s: \"%s\" must be true or false", r->path, key);
    *out = json_is_true(v);
    return RAMOLE_OK;
}

/* bos/eos may be an integer or a list (take the first). */
static int cfg_token_id(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v) && json_array_size(v) > 0) v = json_array_get(v, 0);
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

static rm_status cfg_rope_scaling(cfg_reader *r, rm_model_config *c) {
    json_t *rs = json_object_get(r->root, "rope_scaling");
    if (!rs || json_is_null(rs)) return RAMOLE_OK;
    if (!json_is_object(rs)) return rm_err(RAMOLE_ERR_FORMAT, "%s: \"rope_scaling\" must be an object", r->path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : NULL;
    if (!type) return rm_err(RAMOLE_ERR_FORMAT, "%s: rope_scaling has no \"rope_type\"", r->path);
    RM_TRY(cfg_float(r, rs, "factor", 1.0f, &c->rope.factor));
    if (!strcmp(type, "default")) {
        c->rope.scaling = RM_ROPE_SCALING_NONE;
    } else if (!strcmp(type, "linear")) {
        c->rope.scaling = RM_ROPE_SCALING_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        c->rope.scaling = RM_ROPE_SCALING_LLAMA3;
        RM_TRY(cfg_float(r, rs, "low_freq_factor", 1.0f, &c->rope.low_freq_factor));
        RM_TRY(cfg_float(r, rs, "high_freq_factor", 4.0f, &c->rope.high_freq_factor));
        json_t *om = json_object_get(rs, "original_max_position_embeddings");
        if (!json_is_integer(om))
            return rm_err(RAMOLE_ERR_FORMAT, "%s: llama3 rope_scaling needs original_max_position_embeddings", r->path);
        c->rope.original_max_pos = (int)json_integer_value(om);
        if (!(c->rope.high_freq_factor > c->rope.low_freq_factor))
            return rm_err(RAMOLE_ERR_FORMAT, "%s: llama3 rope_scaling needs high_freq_factor > low_freq_factor", r->path);
    } else {
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unsupported rope_scaling type \"%s\" (supported: linear, llama3)",
                      r->path, type);
    }
    return RAMOLE_OK;
}

rm_status rm_model_config_from_json(const char *path, rm_model_config *c) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (!rm_file_exists(path)) return rm_err(RAMOLE_ERR_NOT_FOUND, "%s: file not found", path);
        return rm_err(RAMOLE_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, jerr.line,
                      jerr.column, jerr.text);
    }
    cfg_reader r = {root, path};
    rm_status st = RAMOLE_OK;
    if (!json_is_object(root)) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: \"model_type\" is missing", path);
        goto done;
    }
    rm_arch arch;
    if (!rm_arch_from_name(json_string_value(mt), &arch)) {
        st = rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unknown architecture \"%s\" (supported: llama, mistral, qwen2)",
                    path, json_string_value(mt));
        goto done;
    }
    rm_model_config_defaults(c, arch);
    json_t *act = json_object_get(root, "hidden_act");
    if (json_is_string(act) && strcmp(json_string_value(act), "silu")) {
        st = rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (only silu)", path,
                    json_string_value(act));
        goto done;
    }
#define T(expr) if ((st = (expr)) != RAMOLE_OK) goto done
    T(cfg_int(&r, "vocab_size", true, 0, &c->vocab_size));
    T(cfg_int(&r, "hidden_size", true, 0, &c->hidden));
    T(cfg_int(&r, "intermediate_size", true, 0, &c->ffn));
    T(cfg_int(&r, "num_hidden_layers", true, 0, &c->n_layers));
    T(cfg_int(&r, "num_attention_heads", true, 0, &c->n_heads));
    T(cfg_int(&r, "num_key_value_heads", false, c->n_heads, &c->n_kv_heads));
    if (c->n_heads <= 0) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
        goto done;
    }
    T(cfg_int(&r, "head_dim", false, c->hidden / c->n_heads, &c->head_dim));
    T(cfg_int(&r, "max_position_embeddings", false, c->max_pos, &c->max_pos));
    T(cfg_float(&r, root, "rms_norm_eps", c->rms_eps, &c->rms_eps));
    T(cfg_float(&r, root, "rope_theta", c->rope.theta, &c->rope.theta));
    T(cfg_rope_scaling(&r, c));
    T(cfg_bool(&r, "tie_word_embeddings", false, &c->tied_embeddings));
    bool attn_bias = false;
    T(cfg_bool(&r, "attention_bias", false, &attn_bias));
    if (attn_bias && arch != RM_ARCH_QWEN2) {
        st = rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: attention_bias is not supported for %s", path, rm_arch_name(arch));
        goto done;
    }
#undef T
    c->rope.n_rot = c->head_dim;
    if (c->hidden % c->n_heads && !json_object_get(root, "head_dim")) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: hidden_size %d is not a multiple of %d heads", path, c->hidden, c->n_heads);
        goto done;
    }
    c->bos_id = cfg_token_id(root, "bos_token_id");
    c->eos_id = cfg_token_id(root, "eos_token_id");
    st = rm_model_config_check(c, path);
done:
    json_decref(root);
    return st;
}

/* ---- weights --------------------------------------------------------------- */

typedef struct {
    rm_model_files *files;
    json_t *weight_map; /* from the index, or NULL */
    char **shard_names; /* parallel to files->st when indexed */
    const char *dir;
} hf_source;

static void fill_src(rm_src_tensor *out, const rm_st_tensor *t, const char *file) {
    out->name = t->name;
    out->file = file;
    out->data = t->data;
    out->type = t->type;
    out->type_name = t->dtype;
    out->n_dims = t->n_dims > 4 ? 4 : t->n_dims;
    for (int i = 0; i < out->n_dims; i++) out->shape[i] = t->shape[i];
    if (t->n_dims > 4) out->n_dims = t->n_dims; /* shape check will fail on dims */
}

static rm_status hf_find(void *p, const char *name, rm_src_tensor *out) {
    hf_source *s = p;
    if (s->weight_map) {
        json_t *f = json_object_get(s->weight_map, name);
        if (!f) return RAMOLE_ERR_NOT_FOUND;
        for (int i = 0; i < s->files->n_st; i++) {
            if (strcmp(s->shard_names[i], json_string_value(f))) continue;
            const rm_st_tensor *t = rm_st_find(s->files->st[i], name);
            if (!t)
                return rm_err(RAMOLE_ERR_FORMAT, "%s: model.safetensors.index.json places tensor %s in %s, which does not hold it",
                              s->dir, name, s->shard_names[i]);
            fill_src(out, t, rm_st_path(s->files->st[i]));
            return RAMOLE_OK;
        }
        return rm_err(RAMOLE_ERR_INTERNAL, "%s: shard %s not open", s->dir, json_string_value(f));
    }
    for (int i = 0; i < s->files->n_st; i++) {
        const rm_st_tensor *t = rm_st_find(s->files->st[i], name);
        if (t) {
            fill_src(out, t, rm_st_path(s->files->st[i]));
            return RAMOLE_OK;
        }
    }
    return RAMOLE_ERR_NOT_FOUND;
}

/* Open the shards named by the index (each once, in order of appearance). */
static rm_status open_indexed(hf_source *s, const char *index_path) {
    json_error_t jerr;
    json_t *idx = json_load_file(index_path, 0, &jerr);
    if (!idx)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", index_path, jerr.line,
                      jerr.column, jerr.text);
    rm_status st = RAMOLE_OK;
    json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        st = rm_err(RAMOLE_ERR_FORMAT, "%s: \"weight_map\" is missing or empty", index_path);
        goto done;
    }
    size_t n = json_object_size(wm);
    s->files->st = rm_calloc(n, sizeof *s->files->st);
    s->shard_names = rm_calloc(n, sizeof *s->shard_names);
    if (!s->files->st || !s->shard_names) {
        st = rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            st = rm_err(RAMOLE_ERR_FORMAT, "%s: weight_map entry for %s is not a file name", index_path, key);
            goto done;
        }
        const char *file = json_string_value(val);
        if (strchr(file, '/') || !strcmp(file, "..")) {
            st = rm_err(RAMOLE_ERR_FORMAT, "%s: shard name \"%s\" must be a plain file name", index_path, file);
            goto done;
        }
        bool seen = false;
        for (int i = 0; i < s->files->n_st && !seen; i++) seen = !strcmp(s->shard_names[i], file);
        if (seen) continue;
        char *path = rm_path_join(s->dir, file);
        if (!path) {
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            goto done;
        }
        rm_safetensors *sf = NULL;
        st = rm_st_open(path, &sf);
        rm_free(path);
        if (st != RAMOLE_OK) goto done;
        s->shard_names[s->files->n_st] = rm_strdup(file);
        s->files->st[s->files->n_st++] = sf;
        if (!s->shard_names[s->files->n_st - 1]) {
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    s->weight_map = json_incref(wm);
done:
    json_decref(idx);
    return st;
}

rm_status rm_model_load_hf(const char *dir, rm_model *m) {
    char *cfg_path = rm_path_join(dir, "config.json");
    char *single = rm_path_join(dir, "model.safetensors");
    char *index = rm_path_join(dir, "model.safetensors.index.json");
    hf_source s = {.dir = dir};
    rm_status st = RAMOLE_OK;
    if (!cfg_path || !single || !index) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!rm_file_exists(cfg_path)) {
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no config.json in this folder (not a Hugging Face model folder)", dir);
        goto done;
    }
    if ((st = rm_model_config_from_json(cfg_path, &m->cfg)) != RAMOLE_OK) goto done;
    s.files = rm_calloc(1, sizeof *s.files);
    if (!s.files) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    m->files = s.files;
    if (rm_file_exists(index)) {
        st = open_indexed(&s, index);
    } else if (rm_file_exists(single)) {
        s.files->st = rm_calloc(1, sizeof *s.files->st);
        if (!s.files->st) {
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            goto done;
        }
        st = rm_st_open(single, &s.files->st[0]);
        if (st == RAMOLE_OK) s.files->n_st = 1;
    } else {
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    if (st != RAMOLE_OK) goto done;
    st = rm_model_bind(m, &rm_names_hf, hf_find, &s, dir);
done:
    if (s.shard_names)
        for (int i = 0; i < (s.files ? s.files->n_st : 0); i++) rm_free(s.shard_names[i]);
    rm_free(s.shard_names);
    if (s.weight_map) json_decref(s.weight_map);
    rm_free(cfg_path);
    rm_free(single);
    rm_free(index);
    return st;
}
