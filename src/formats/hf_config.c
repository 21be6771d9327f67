/*
 * hf_config.c — config.json of llama / mistral / qwen2 models.
 *
 * One small getter per JSON kind (positive int, number, bool) that knows
 * the default for an absent or null key and produces the error message
 * naming the file and key; rm_hf_config_parse reads the keys in order and
 * then checks the sizes against each other (see hf_config.h).
 */
#include "formats/hf_config.h"

#include <jansson.h>
#include <limits.h>
#include <string.h>

typedef struct {
    const char *name; /* file, for messages */
    json_t *obj;
} hf_reader;

static bool absent(const json_t *v) { return !v || json_is_null(v); }

/* A positive int; def < 0 means required. */
static rm_status hf_pos_int(const hf_reader *r, const char *key, int def, int *out) {
    json_t *v = json_object_get(r->obj, key);
    if (absent(v)) {
        if (def < 0) return rm_err(RAMOLE_ERR_FORMAT, "%s: missing %s", r->name, key);
        *out = def;
        return RAMOLE_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT_MAX)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s must be a positive integer", r->name, key);
    *out = (int)json_integer_value(v);
    return RAMOLE_OK;
}

/* A positive finite number (int or real); def used when absent. */
static rm_status hf_pos_num(const hf_reader *r, const char *key, float def, float *out) {
    json_t *v = json_object_get(r->obj, key);
    if (absent(v)) {
        if (def < 0) return rm_err(RAMOLE_ERR_FORMAT, "%s: missing %s", r->name, key);
        *out = def;
        return RAMOLE_OK;
    }
    double d = json_is_number(v) ? json_number_value(v) : -1;
    if (!(d > 0 && d < 1e30))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s must be a positive number", r->name, key);
    *out = (float)d;
    return RAMOLE_OK;
}

static rm_status hf_bool(const hf_reader *r, const char *key, bool def, bool *out) {
    json_t *v = json_object_get(r->obj, key);
    if (absent(v)) {
        *out = def;
        return RAMOLE_OK;
    }
    if (!json_is_boolean(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s must be true or false", r->name, key);
    *out = json_is_true(v);
    return RAMOLE_OK;
}

/* A token id: a non-negative int (or the first of a list for eos); -1 if absent. */
static rm_status hf_token_ids(const hf_reader *r, const char *key, int *ids, int max, int *n) {
    json_t *v = json_object_get(r->obj, key);
    *n = 0;
    if (absent(v)) return RAMOLE_OK;
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT_MAX)
            return rm_err(RAMOLE_ERR_FORMAT,
                          "%s: %s must be a non-negative integer or a list of them", r->name, key);
        if (*n < max) ids[(*n)++] = (int)json_integer_value(e);
    }
    return RAMOLE_OK;
}

static rm_status hf_arch(const hf_reader *r, rm_hf_config *c) {
    json_t *v = json_object_get(r->obj, "model_type");
    if (!json_is_string(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: missing or non-string model_type", r->name);
    const char *s = json_string_value(v);
    if (strcmp(s, "llama") != 0 && strcmp(s, "mistral") != 0 && strcmp(s, "qwen2") != 0)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "unknown architecture \"%.64s\" in %s (supported: llama, mistral, qwen2)", s, r->name);
    snprintf(c->arch, sizeof c->arch, "%s", s);
    return RAMOLE_OK;
}

static rm_status hf_rope_scaling(const hf_reader *r, rm_hf_config *c) {
    json_t *rs = json_object_get(r->obj, "rope_scaling");
    c->rope_scaling.type = RM_ROPE_SCALING_NONE;
    if (absent(rs)) return RAMOLE_OK;
    if (!json_is_object(rs))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: rope_scaling must be an object or null", r->name);
    json_t *t = json_object_get(rs, "rope_type");
    if (absent(t)) t = json_object_get(rs, "type");
    if (!json_is_string(t))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: rope_scaling has no rope_type", r->name);
    const char *type = json_string_value(t);
    hf_reader sub = {r->name, rs};
    if (strcmp(type, "default") == 0) return RAMOLE_OK;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling.type = RM_ROPE_SCALING_LINEAR;
        return hf_pos_num(&sub, "factor", -1, &c->rope_scaling.factor);
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_scaling.type = RM_ROPE_SCALING_LLAMA3;
        RM_TRY(hf_pos_num(&sub, "factor", -1, &c->rope_scaling.factor));
        RM_TRY(hf_pos_num(&sub, "low_freq_factor", -1, &c->rope_scaling.low_freq_factor));
        RM_TRY(hf_pos_num(&sub, "high_freq_factor", -1, &c->rope_scaling.high_freq_factor));
        RM_TRY(hf_pos_int(&sub, "original_max_position_embeddings", -1,
                          &c->rope_scaling.original_max_position_embeddings));
        if (c->rope_scaling.high_freq_factor <= c->rope_scaling.low_freq_factor)
            return rm_err(RAMOLE_ERR_FORMAT,
                          "%s: rope_scaling high_freq_factor must exceed low_freq_factor", r->name);
        return RAMOLE_OK;
    }
    return rm_err(RAMOLE_ERR_UNSUPPORTED, "rope_scaling type %.32s in %s is not supported", type,
                  r->name);
}

static rm_status hf_sizes(const hf_reader *r, rm_hf_config *c) {
    RM_TRY(hf_pos_int(r, "vocab_size", -1, &c->vocab_size));
    RM_TRY(hf_pos_int(r, "hidden_size", -1, &c->hidden_size));
    RM_TRY(hf_pos_int(r, "intermediate_size", -1, &c->intermediate_size));
    RM_TRY(hf_pos_int(r, "num_hidden_layers", -1, &c->num_hidden_layers));
    RM_TRY(hf_pos_int(r, "num_attention_heads", -1, &c->num_attention_heads));
    RM_TRY(hf_pos_int(r, "num_key_value_heads", c->num_attention_heads, &c->num_key_value_heads));
    RM_TRY(hf_pos_int(r, "max_position_embeddings", 2048, &c->max_position_embeddings));
    bool explicit_head_dim = !absent(json_object_get(r->obj, "head_dim"));
    if (!explicit_head_dim && c->hidden_size % c->num_attention_heads != 0)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: num_attention_heads %d does not divide hidden_size %d",
                      r->name, c->num_attention_heads, c->hidden_size);
    RM_TRY(hf_pos_int(r, "head_dim", c->hidden_size / c->num_attention_heads, &c->head_dim));
    if (c->head_dim % 2 != 0)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: head_dim %d must be even for RoPE", r->name,
                      c->head_dim);
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: num_key_value_heads %d does not divide num_attention_heads %d", r->name,
                      c->num_key_value_heads, c->num_attention_heads);
    return RAMOLE_OK;
}

static rm_status hf_misc(const hf_reader *r, rm_hf_config *c) {
    RM_TRY(hf_pos_num(r, "rms_norm_eps", 1e-6f, &c->rms_norm_eps));
    RM_TRY(hf_pos_num(r, "rope_theta", 10000.0f, &c->rope_theta));
    RM_TRY(hf_bool(r, "tie_word_embeddings", false, &c->tie_word_embeddings));
    bool qwen2 = strcmp(c->arch, "qwen2") == 0;
    RM_TRY(hf_bool(r, "attention_bias", qwen2, &c->attention_bias));
    int bos[1], nb;
    RM_TRY(hf_token_ids(r, "bos_token_id", bos, 1, &nb));
    c->bos_token_id = nb ? bos[0] : -1;
    RM_TRY(hf_token_ids(r, "eos_token_id", c->eos_token_ids, RM_HF_MAX_EOS, &c->n_eos_token_ids));
    c->eos_token_id = c->n_eos_token_ids ? c->eos_token_ids[0] : -1;
    json_t *dt = json_object_get(r->obj, "torch_dtype");
    if (absent(dt)) dt = json_object_get(r->obj, "dtype"); /* newer transformers */
    if (!absent(dt)) {
        if (!json_is_string(dt) || strlen(json_string_value(dt)) >= sizeof c->torch_dtype)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: torch_dtype must be a short string", r->name);
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", json_string_value(dt));
    }
    bool use_sw = true;
    RM_TRY(hf_bool(r, "use_sliding_window", true, &use_sw));
    json_t *sw = json_object_get(r->obj, "sliding_window");
    if (!absent(sw) && use_sw) RM_TRY(hf_pos_int(r, "sliding_window", 0, &c->sliding_window));
    return RAMOLE_OK;
}

rm_status rm_hf_config_parse(const char *json, size_t len, const char *name, rm_hf_config *out) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", name,
                      jerr.text, jerr.line, jerr.column);
    hf_reader r = {name, root};
    rm_status rc;
    if (!json_is_object(root))
        rc = rm_err(RAMOLE_ERR_FORMAT, "%s: not a JSON object", name);
    else if ((rc = hf_arch(&r, out)) == RAMOLE_OK && (rc = hf_sizes(&r, out)) == RAMOLE_OK &&
             (rc = hf_rope_scaling(&r, out)) == RAMOLE_OK)
        rc = hf_misc(&r, out);
    json_decref(root);
    return rc;
}

rm_status rm_hf_config_load(const char *path, rm_hf_config *out) {
    char *file = rm_dir_exists(path) ? rm_path_join(path, "config.json") : rm_strdup(path);
    if (!file) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    char *text = NULL;
    size_t len = 0;
    rm_status rc = rm_file_read(file, &text, &len);
    if (rc == RAMOLE_OK) rc = rm_hf_config_parse(text, len, file, out);
    rm_free(text);
    rm_free(file);
    return rc;
}
