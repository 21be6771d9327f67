/*
 * model.c — opening a model, family defaults, configuration checks and the
 * binding of weights by name shared by the HF and GGUF loaders.
 */
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "tokenizer/tokenizer.h"

static const char *const arch_names[RM_ARCH_COUNT] = {"llama", "mistral", "qwen2"};

const char *rm_arch_name(rm_arch a) { return (unsigned)a < RM_ARCH_COUNT ? arch_names[a] : "?"; }

bool rm_arch_from_name(const char *s, rm_arch *out) {
    for (int i = 0; i < RM_ARCH_COUNT; i++)
        if (!strcmp(s, arch_names[i])) {
            *out = (rm_arch)i;
            return true;
        }
    return false;
}

void rm_model_config_defaults(rm_model_config *c, rm_arch arch) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    c->rms_eps = arch == RM_ARCH_QWEN2 ? 1e-6f : 1e-5f;
    c->rope.style = RM_ROPE_NEOX;
    c->rope.theta = arch == RM_ARCH_LLAMA ? 10000.0f : 1000000.0f;
    c->rope.scaling = RM_ROPE_SCALING_NONE;
    c->rope.factor = 1.0f;
    c->qkv_bias = arch == RM_ARCH_QWEN2;
    c->max_pos = 2048;
    c->bos_id = -1;
    c->eos_id = -1;
}

rm_status rm_model_config_check(const rm_model_config *c, const char *origin) {
#define NEED_POS(field)                                                                         \
    if (c->field <= 0)                                                                          \
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %s must be positive (got %d)", origin, #field,     \
                      (int)c->field);
    NEED_POS(vocab_size);
    NEED_POS(hidden);
    NEED_POS(ffn);
    NEED_POS(n_layers);
    NEED_POS(n_heads);
    NEED_POS(n_kv_heads);
    NEED_POS(head_dim);
    NEED_POS(max_pos);
#undef NEED_POS
    if (c->n_heads % c->n_kv_heads)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: %d attention heads are not a multiple of %d kv heads",
                      origin, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", origin,
                      c->head_dim);
    if (c->rope.n_rot <= 0 || c->rope.n_rot > c->head_dim || c->rope.n_rot % 2)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: rotary dimension %d does not fit head_dim %d", origin,
                      c->rope.n_rot, c->head_dim);
    if (!(c->rms_eps > 0))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: rms_norm_eps must be positive", origin);
    if (!(c->rope.theta > 0))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: rope_theta must be positive", origin);
    if (c->rope.scaling != RM_ROPE_SCALING_NONE && !(c->rope.factor > 0))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: rope_scaling factor must be positive", origin);
    if ((int64_t)c->n_layers > 4096 || (int64_t)c->hidden > (1 << 20) ||
        (int64_t)c->vocab_size > (1 << 24) || (int64_t)c->ffn > (1 << 22))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: sizes are implausibly large", origin);
    return RAMOLE_OK;
}

/* ---- binding ---------------------------------------------------------------- */

const rm_tensor_names rm_names_hf = {
    .embd = "model.embed_tokens.weight",
    .out_norm = "model.norm.weight",
    .output = "lm_head.weight",
    .rope_freqs = NULL,
    .attn_norm = "model.layers.%d.input_layernorm.weight",
    .wq = "model.layers.%d.self_attn.q_proj.weight",
    .wk = "model.layers.%d.self_attn.k_proj.weight",
    .wv = "model.layers.%d.self_attn.v_proj.weight",
    .wo = "model.layers.%d.self_attn.o_proj.weight",
    .bq = "model.layers.%d.self_attn.q_proj.bias",
    .bk = "model.layers.%d.self_attn.k_proj.bias",
    .bv = "model.layers.%d.self_attn.v_proj.bias",
    .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
    .gate = "model.layers.%d.mlp.gate_proj.weight",
    .up = "model.layers.%d.mlp.up_proj.weight",
    .down = "model.layers.%d.mlp.down_proj.weight",
};

const rm_tensor_names rm_names_gguf = {
    .embd = "token_embd.weight",
    .out_norm = "output_norm.weight",
    .output = "output.weight",
    .rope_freqs = "rope_freqs.weight",
    .attn_norm = "blk.%d.attn_norm.weight",
    .wq = "blk.%d.attn_q.weight",
    .wk = "blk.%d.attn_k.weight",
    .wv = "blk.%d.attn_v.weight",
    .wo = "blk.%d.attn_output.weight",
    .bq = "blk.%d.attn_q.bias",
    .bk = "blk.%d.attn_k.bias",
    .bv = "blk.%d.attn_v.bias",
    .ffn_norm = "blk.%d.ffn_norm.weight",
    .gate = "blk.%d.ffn_gate.weight",
    .up = "blk.%d.ffn_up.weight",
    .down = "blk.%d.ffn_down.weight",
};

typedef struct {
    rm_src_find_fn find;
    void *src;
    const char *origin;
    float *owned;   /* next free float of m->owned_f32 */
} binder;

static void fmt_name(char *buf, size_t n, const char *pattern, int layer) {
    snprintf(buf, n, pattern, layer);
}

static void fmt_shape(char *buf, size_t n, const int64_t *shape, int n_dims) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static rm_status find_required(binder *b, const char *name, rm_src_tensor *t) {
    rm_status st = b->find(b->src, name, t);
    if (st == RAMOLE_ERR_NOT_FOUND)
        return rm_err(RAMOLE_ERR_NOT_FOUND, "%s: tensor %s is missing", b->origin, name);
    return st;
}

static rm_status check_shape(const rm_src_tensor *t, int n_dims, const int64_t *want,
                             const char *origin) {
    bool ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == want[i];
    if (ok) return RAMOLE_OK;
    char got_s[96], want_s[96];
    fmt_shape(got_s, sizeof got_s, t->shape, t->n_dims);
    fmt_shape(want_s, sizeof want_s, want, n_dims);
    return rm_err(RAMOLE_ERR_MISMATCH, "%s: tensor %s in %s has shape %s, the configuration needs %s",
                  origin, t->name, t->file, got_s, want_s);
}

static rm_status check_type(const rm_src_tensor *t, const char *origin) {
    if (t->type < 0)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unsupported tensor type %s in %s (tensor %s)",
                      origin, t->type_name, t->file, t->name);
    return RAMOLE_OK;
}

static rm_status bind_matrix(binder *b, const char *name, int64_t rows, int64_t cols, rm_weight *w) {
    rm_src_tensor t;
    RM_TRY(find_required(b, name, &t));
    int64_t want[2] = {rows, cols};
    RM_TRY(check_shape(&t, 2, want, b->origin));
    RM_TRY(check_type(&t, b->origin));
    if (cols % rm_type_block_elems((rm_type)t.type))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor %s: %lld columns are not a multiple of the %s block",
                      b->origin, name, (long long)cols, rm_type_name((rm_type)t.type));
    w->data = t.data;
    w->type = (rm_type)t.type;
    w->rows = rows;
    w->cols = cols;
    return RAMOLE_OK;
}

/* A vector is copied to f32 so the hot loop never converts it. */
static rm_status bind_vector(binder *b, const char *name, int64_t n, bool required, const float **out) {
    rm_src_tensor t;
    rm_status st = b->find(b->src, name, &t);
    if (st == RAMOLE_ERR_NOT_FOUND && !required) {
        *out = NULL;
        return RAMOLE_OK;
    }
    if (st == RAMOLE_ERR_NOT_FOUND) return rm_err(st, "%s: tensor %s is missing", b->origin, name);
    RM_TRY(st);
    RM_TRY(check_shape(&t, 1, &n, b->origin));
    RM_TRY(check_type(&t, b->origin));
    if (rm_type_is_quant((rm_type)t.type))
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: vector tensor %s is %s (expected f32/f16/bf16)",
                      b->origin, name, rm_type_name((rm_type)t.type));
    float *dst = b->owned;
    rm_convert(RM_TYPE_F32, dst, (rm_type)t.type, t.data, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor %s has a non-finite value at index %lld",
                          b->origin, name, (long long)i);
    b->owned += n;
    *out = dst;
    return RAMOLE_OK;
}

rm_status rm_model_bind(rm_model *m, const rm_tensor_names *nm, rm_src_find_fn find, void *src,
                        const char *origin) {
    const rm_model_config *c = &m->cfg;
    int64_t H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, d = c->hidden, f = c->ffn;
    size_t per_layer = (size_t)(2 * d + (c->qkv_bias ? (H + 2 * KV) * hd : 0));
    size_t n_owned = per_layer * (size_t)c->n_layers + (size_t)d + (size_t)hd;
    m->owned_f32 = rm_malloc(n_owned * sizeof(float));
    m->layers = rm_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->owned_f32 || !m->layers) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", origin);
    binder b = {find, src, origin, m->owned_f32};
    char name[160];

    RM_TRY(bind_matrix(&b, nm->embd, c->vocab_size, d, &m->tok_embd));
    RM_TRY(bind_vector(&b, nm->out_norm, d, true, &m->out_norm));
    if (c->tied_embeddings) {
        m->output = m->tok_embd;
    } else {
        rm_src_tensor t;
        rm_status st = find(src, nm->output, &t);
        if (st == RAMOLE_ERR_NOT_FOUND && m->source == RM_SOURCE_GGUF) {
            m->output = m->tok_embd; /* llama.cpp: no output.weight means tied */
            m->cfg.tied_embeddings = true;
        } else {
            RM_TRY(bind_matrix(&b, nm->output, c->vocab_size, d, &m->output));
        }
    }
    m->rope_freq_factors = NULL;
    if (nm->rope_freqs) RM_TRY(bind_vector(&b, nm->rope_freqs, c->rope.n_rot / 2, false, &m->rope_freq_factors));

    for (int l = 0; l < c->n_layers; l++) {
        rm_layer *L = &m->layers[l];
#define MAT(field, pattern, rows, cols)                                   \
    fmt_name(name, sizeof name, pattern, l);                              \
    RM_TRY(bind_matrix(&b, name, rows, cols, &L->field));
#define VEC(field, pattern, n, req)                                       \
    fmt_name(name, sizeof name, pattern, l);                              \
    RM_TRY(bind_vector(&b, name, n, req, &L->field));
        VEC(attn_norm, nm->attn_norm, d, true);
        MAT(wq, nm->wq, H * hd, d);
        MAT(wk, nm->wk, KV * hd, d);
        MAT(wv, nm->wv, KV * hd, d);
        MAT(wo, nm->wo, d, H * hd);
        if (c->qkv_bias) {
            VEC(bq, nm->bq, H * hd, true);
            VEC(bk, nm->bk, KV * hd, true);
            VEC(bv, nm->bv, KV * hd, true);
        }
        VEC(ffn_norm, nm->ffn_norm, d, true);
        MAT(w_gate, nm->gate, f, d);
        MAT(w_up, nm->up, f, d);
        MAT(w_down, nm->down, d, f);
#undef MAT
#undef VEC
    }
    return RAMOLE_OK;
}

/* ---- open / free ---------------------------------------------------------- */

static rm_status load_tokenizer(rm_model *m);

rm_status rm_model_open(const char *path, rm_model **out) {
    *out = NULL;
    rm_model *m = rm_calloc(1, sizeof *m);
    if (!m) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    m->path = rm_strdup(path);
    rm_status st;
    if (!m->path) {
        st = rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    } else if (rm_dir_exists(path)) {
        m->source = RM_SOURCE_HF;
        st = rm_model_load_hf(path, m);
    } else if (rm_file_exists(path)) {
        m->source = RM_SOURCE_GGUF;
        st = rm_model_load_gguf(path, m);
    } else {
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no such model (expected a Hugging Face folder or a GGUF file)", path);
    }
    if (st == RAMOLE_OK) st = load_tokenizer(m);
    if (st == RAMOLE_OK) st = rm_model_pack_default(m);
    if (st != RAMOLE_OK) {
        rm_model_free(m);
        return st;
    }
    *out = m;
    return RAMOLE_OK;
}

static rm_status check_tokenizer_fits(const rm_model *m, const rm_tok *t, const char *where) {
    if (rm_tok_vocab_size(t) > m->cfg.vocab_size)
        return rm_err(RAMOLE_ERR_MISMATCH, "%s: the tokenizer has %d tokens, more than the model's vocabulary of %d",
                      where, rm_tok_vocab_size(t), m->cfg.vocab_size);
    return RAMOLE_OK;
}

/* The tokenizer a model carries, if any (see rm_model_open). */
static rm_status load_tokenizer(rm_model *m) {
    if (m->source == RM_SOURCE_GGUF) {
        bool placeholder = false;
        rm_gguf_get_bool(m->files->gguf, "ramole.placeholder_vocab", &placeholder);
        if (rm_gguf_kv_find(m->files->gguf, "tokenizer.ggml.model") < 0 || placeholder) return RAMOLE_OK;
        RM_TRY(rm_tok_gguf_load(m->files->gguf, &m->tokenizer));
        return check_tokenizer_fits(m, m->tokenizer, m->path);
    }
    char *tj = rm_path_join(m->path, "tokenizer.json");
    if (!tj) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    bool has = rm_file_exists(tj);
    rm_free(tj);
    return has ? rm_model_set_tokenizer(m, m->path) : RAMOLE_OK;
}

rm_status rm_model_set_tokenizer(rm_model *m, const char *path) {
    rm_tok *t = NULL;
    rm_status st = rm_tok_load(path, &t);
    if (st != RAMOLE_OK) return rm_err_prefix(st, "tokenizer of %s", m->path);
    if ((st = check_tokenizer_fits(m, t, path)) != RAMOLE_OK) {
        rm_tok_free(t);
        return st;
    }
    const char *slash = strrchr(path, '/'); /* a tokenizer.json: its folder */
    char *dir = rm_dir_exists(path) ? rm_strdup(path)
              : slash               ? rm_strndup(path, (size_t)(slash - path))
                                    : rm_strdup(".");
    if (!dir) {
        rm_tok_free(t);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    rm_tok_free(m->tokenizer);
    rm_free(m->tokenizer_dir);
    m->tokenizer = t;
    m->tokenizer_dir = dir;
    return RAMOLE_OK;
}

void rm_model_files_free(rm_model_files *f) {
    if (!f) return;
    rm_st_set_free(f->st);
    rm_gguf_free(f->gguf);
    rm_free(f);
}

void rm_model_free(rm_model *m) {
    if (!m) return;
    rm_model_files_free(m->files);
    rm_free(m->owned_packed);
    rm_free(m->layers);
    rm_free(m->owned_f32);
    rm_free(m->owned_weights);
    rm_free(m->owned_views);
    rm_tok_free(m->tokenizer);
    rm_free(m->tokenizer_dir);
    rm_free(m->path);
    rm_free(m);
}

static int64_t weight_bytes(const rm_weight *w) {
    return w->data ? (int64_t)rm_type_row_bytes(w->type, w->cols) * w->rows : 0;
}

void rm_model_size(const rm_model *m, int64_t *n_params, int64_t *n_bytes) {
    const rm_model_config *c = &m->cfg;
    int64_t p = 0, b = 0;
    const rm_weight *ws[2] = {&m->tok_embd, c->tied_embeddings ? NULL : &m->output};
    for (int i = 0; i < 2; i++)
        if (ws[i]) {
            p += ws[i]->rows * ws[i]->cols;
            b += weight_bytes(ws[i]);
        }
    p += c->hidden;
    b += c->hidden * 4;
    for (int l = 0; l < c->n_layers; l++) {
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_weight *lw = rm_layer_weight(&m->layers[l], (rm_target)t);
            p += lw->rows * lw->cols;
            b += weight_bytes(lw);
        }
        p += 2 * c->hidden;
        b += 2 * c->hidden * 4;
        if (c->qkv_bias) {
            int64_t nb = (int64_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
            p += nb;
            b += nb * 4;
        }
    }
    *n_params = p;
    *n_bytes = b;
}

rm_type rm_model_main_type(const rm_model *m) {
    return m->cfg.n_layers > 0 ? m->layers[0].w_gate.type : m->tok_embd.type;
}
