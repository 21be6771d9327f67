/*
 * model_write.c — saving a model (HF folder or GGUF) and building random
 * models.
 *
 * Saving first lists every output tensor with its final name, shape, type
 * and bytes (converted or permuted copies are owned by the list), then
 * hands the list to the format's writer. Q/K layout: a model whose RoPE
 * style is neox holds HF's row order; llama-family GGUF files hold rows
 * permuted so that adjacent pairs rotate (llama.cpp's convert permute()).
 * Converting between the two permutes or un-permutes those rows.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model_internal.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char name[96];
    rm_type type;
    int n_dims;
    int64_t shape[2]; /* outermost first */
    const void *data;
    void *owned;
} out_tensor;

typedef struct {
    out_tensor *t;
    int n, cap;
} out_list;

static void out_list_free(out_list *l) {
    for (int i = 0; i < l->n; i++) rm_free(l->t[i].owned);
    rm_free(l->t);
}

static out_tensor *out_push(out_list *l) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        out_tensor *t = rm_realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        l->t = t;
        l->cap = cap;
    }
    out_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    return t;
}

/* Row order of Q/K: `to_pairs` turns HF order into adjacent pairs. */
static void permute_rows(uint8_t *dst, const uint8_t *src, int64_t rows, size_t row_bytes, int n_head,
                         bool to_pairs) {
    int64_t hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int j = 0; j < 2; j++) {
                int64_t hf = h * hd + j * half + i, pairs = h * hd + 2 * i + j;
                int64_t d = to_pairs ? pairs : hf, s = to_pairs ? hf : pairs;
                memcpy(dst + (size_t)d * row_bytes, src + (size_t)s * row_bytes, row_bytes);
            }
}

/* Convert rows of `cols` elements between types through an f32 row. */
static rm_status convert_rows(void *dst, rm_type dt, const void *src, rm_type st, int64_t rows, int64_t cols) {
    float *row = rm_malloc((size_t)cols * sizeof *row);
    if (!row) return rm_err(RAMOLE_ERR_NOMEM, "out of memory converting a tensor");
    size_t sb = rm_type_row_bytes(st, cols), db = rm_type_row_bytes(dt, cols);
    for (int64_t r = 0; r < rows; r++) {
        rm_convert(RM_TYPE_F32, row, st, (const uint8_t *)src + (size_t)r * sb, cols);
        rm_convert(dt, (uint8_t *)dst + (size_t)r * db, RM_TYPE_F32, row, cols);
    }
    rm_free(row);
    return RAMOLE_OK;
}

/* Add one tensor, converting to `want` and permuting rows when asked. */
static rm_status add_tensor(out_list *l, const char *name, int n_dims, int64_t rows, int64_t cols,
                            const void *data, rm_type have, rm_type want, int permute_heads, bool to_pairs) {
    out_tensor *t = out_push(l);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->type = want;
    if (want == have && !permute_heads) {
        t->data = data;
        return RAMOLE_OK;
    }
    size_t rb = rm_type_row_bytes(want, cols);
    t->owned = rm_malloc(rb * (size_t)rows + 1);
    if (!t->owned) return rm_err(RAMOLE_ERR_NOMEM, "out of memory for tensor %s", name);
    void *conv = t->owned;
    if (want != have) RM_TRY(convert_rows(conv, want, data, have, rows, cols));
    else memcpy(conv, data, rb * (size_t)rows);
    if (permute_heads) {
        void *tmp = rm_malloc(rb * (size_t)rows + 1);
        if (!tmp) return rm_err(RAMOLE_ERR_NOMEM, "out of memory for tensor %s", name);
        permute_rows(tmp, conv, rows, rb, permute_heads, to_pairs);
        rm_free(t->owned);
        t->owned = tmp;
    }
    t->data = t->owned;
    return RAMOLE_OK;
}

/* llama.cpp's rule for the layers that get more bits in the _M mixes. */
static bool use_more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/*
 * A type whose blocks fit rows of `cols`: llama.cpp's fallbacks where it has
 * them in ramole (q6_k -> q8_0), q8_0 for the other k-quants (llama.cpp
 * would take q5_0/q5_1, which ramole does not have), f16 when not even
 * blocks of 32 fit.
 */
static rm_type fit_type(rm_type want, int64_t cols) {
    if (cols % rm_type_block_elems(want) == 0) return want;
    if (rm_type_block_elems(want) > RM_Q8_0_BLOCK && cols % RM_Q8_0_BLOCK == 0) return RM_TYPE_Q8_0;
    return RM_TYPE_F16;
}

rm_type rm_model_plan_type(const rm_model_config *c, int plan, rm_weight_role role, int layer, int64_t cols, rm_type have) {
    rm_type want = plan < 0 && plan != RM_MODEL_PLAN_Q4_K_M ? have : (rm_type)plan;
    if (plan == RM_MODEL_PLAN_Q4_K_M) {
        /* llama.cpp's Q4_K_M (llama_tensor_get_type, dense models): q6_k for the
         * output (the embeddings when tied) and for attn_v and ffn_down of the
         * use_more_bits layers; q4_k for every other weight */
        bool output = role == RM_WEIGHT_OUTPUT || (role == RM_WEIGHT_EMBD && c->tied_embeddings);
        bool more = (role == RM_WEIGHT_ATTN_V || role == RM_WEIGHT_FFN_DOWN) && use_more_bits(layer, c->n_layers);
        want = output || more ? RM_TYPE_Q6_K : RM_TYPE_Q4_K;
        if (output && cols % RM_QK_K) want = RM_TYPE_Q8_0; /* llama.cpp's rule for the output */
    }
    return fit_type(want, cols);
}

static rm_status add_weight(out_list *l, const rm_model_config *c, const char *name, const rm_weight *w, int plan,
                            rm_weight_role role, int layer, int permute_heads, bool to_pairs) {
    rm_type want = rm_model_plan_type(c, plan, role, layer, w->cols, w->type);
    return add_tensor(l, name, 2, w->rows, w->cols, w->data, w->type, want, permute_heads, to_pairs);
}

static rm_status add_vector(out_list *l, const char *name, const float *v, int64_t n, int permute_heads,
                            bool to_pairs) {
    /* a bias permutes like rows of one element */
    return add_tensor(l, name, 1, n, 1, v, RM_TYPE_F32, RM_TYPE_F32, permute_heads, to_pairs);
}

/* llama.cpp's rope_freqs for llama3 scaling: divisors of each inv_freq. */
static void llama3_freq_factors(const rm_rope_params *r, float *ff) {
    rm_rope_params plain = *r;
    plain.scaling = RM_ROPE_SCALING_NONE;
    float base[512], scaled[512];
    rm_rope_inv_freq(&plain, base);
    rm_rope_inv_freq(r, scaled);
    for (int i = 0; i < r->n_rot / 2; i++) ff[i] = base[i] / scaled[i];
}

static rm_status collect(const rm_model *m, rm_source_kind format, int type, out_list *l, float *ff) {
    const rm_model_config *c = &m->cfg;
    const rm_tensor_names *nm = format == RM_SOURCE_HF ? &rm_names_hf : &rm_names_gguf;
    /* Does the target hold Q/K in adjacent-pair order? */
    bool target_pairs = format == RM_SOURCE_GGUF && c->arch != RM_ARCH_QWEN2;
    bool source_pairs = c->rope.style == RM_ROPE_NORMAL;
    bool perm = target_pairs != source_pairs;
    char name[128];
    RM_TRY(add_weight(l, c, nm->embd, &m->tok_embd, type, RM_WEIGHT_EMBD, 0, 0, false));
    for (int i = 0; i < c->n_layers; i++) {
        const rm_layer *L = &m->layers[i];
#define NAME(p) (snprintf(name, sizeof name, p, i), name)
        RM_TRY(add_vector(l, NAME(nm->attn_norm), L->attn_norm, c->hidden, 0, false));
        RM_TRY(add_weight(l, c, NAME(nm->wq), &L->wq, type, RM_WEIGHT_OTHER, i, perm ? c->n_heads : 0, target_pairs));
        RM_TRY(add_weight(l, c, NAME(nm->wk), &L->wk, type, RM_WEIGHT_OTHER, i, perm ? c->n_kv_heads : 0, target_pairs));
        RM_TRY(add_weight(l, c, NAME(nm->wv), &L->wv, type, RM_WEIGHT_ATTN_V, i, 0, false));
        RM_TRY(add_weight(l, c, NAME(nm->wo), &L->wo, type, RM_WEIGHT_OTHER, i, 0, false));
        if (c->qkv_bias) {
            RM_TRY(add_vector(l, NAME(nm->bq), L->bq, L->wq.rows, perm ? c->n_heads : 0, target_pairs));
            RM_TRY(add_vector(l, NAME(nm->bk), L->bk, L->wk.rows, perm ? c->n_kv_heads : 0, target_pairs));
            RM_TRY(add_vector(l, NAME(nm->bv), L->bv, L->wv.rows, 0, false));
        }
        RM_TRY(add_vector(l, NAME(nm->ffn_norm), L->ffn_norm, c->hidden, 0, false));
        RM_TRY(add_weight(l, c, NAME(nm->gate), &L->w_gate, type, RM_WEIGHT_OTHER, i, 0, false));
        RM_TRY(add_weight(l, c, NAME(nm->up), &L->w_up, type, RM_WEIGHT_OTHER, i, 0, false));
        RM_TRY(add_weight(l, c, NAME(nm->down), &L->w_down, type, RM_WEIGHT_FFN_DOWN, i, 0, false));
#undef NAME
    }
    RM_TRY(add_vector(l, nm->out_norm, m->out_norm, c->hidden, 0, false));
    if (!c->tied_embeddings) RM_TRY(add_weight(l, c, nm->output, &m->output, type, RM_WEIGHT_OUTPUT, 0, 0, false));
    if (format == RM_SOURCE_GGUF && c->rope.scaling == RM_ROPE_SCALING_LLAMA3) {
        llama3_freq_factors(&c->rope, ff);
        RM_TRY(add_vector(l, "rope_freqs.weight", ff, c->rope.n_rot / 2, 0, false));
    }
    if (format == RM_SOURCE_GGUF && m->rope_freq_factors)
        RM_TRY(add_vector(l, "rope_freqs.weight", m->rope_freq_factors, c->rope.n_rot / 2, 0, false));
    return RAMOLE_OK;
}

/* ---- HF folder ---------------------------------------------------------------- */

static const char *hf_arch_class(rm_arch a) {
    switch (a) {
    case RM_ARCH_MISTRAL: return "MistralForCausalLM";
    case RM_ARCH_QWEN2: return "Qwen2ForCausalLM";
    default: return "LlamaForCausalLM";
    }
}

static json_t *hf_config_json(const rm_model *m, rm_type main_type) {
    const rm_model_config *c = &m->cfg;
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", hf_arch_class(c->arch)));
    json_object_set_new(j, "model_type", json_string(rm_arch_name(c->arch)));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(j, "hidden_size", json_integer(c->hidden));
    json_object_set_new(j, "intermediate_size", json_integer(c->ffn));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(j, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->n_kv_heads));
    if (c->head_dim * c->n_heads != c->hidden) json_object_set_new(j, "head_dim", json_integer(c->head_dim));
    json_object_set_new(j, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(j, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(j, "rope_theta", json_real(c->rope.theta));
    json_t *rs = json_null();
    if (c->rope.scaling == RM_ROPE_SCALING_LINEAR) {
        rs = json_pack("{s:s, s:f}", "rope_type", "linear", "factor", (double)c->rope.factor);
    } else if (c->rope.scaling == RM_ROPE_SCALING_LLAMA3) {
        rs = json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", (double)c->rope.factor,
                       "low_freq_factor", (double)c->rope.low_freq_factor, "high_freq_factor",
                       (double)c->rope.high_freq_factor, "original_max_position_embeddings",
                       c->rope.original_max_pos);
    }
    json_object_set_new(j, "rope_scaling", rs);
    json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tied_embeddings));
    if (c->arch != RM_ARCH_QWEN2) json_object_set_new(j, "attention_bias", json_false());
    if (c->bos_id >= 0) json_object_set_new(j, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0) json_object_set_new(j, "eos_token_id", json_integer(c->eos_id));
    const char *dt = main_type == RM_TYPE_BF16 ? "bfloat16" : main_type == RM_TYPE_F16 ? "float16" : "float32";
    json_object_set_new(j, "torch_dtype", json_string(dt));
    return j;
}

/* The tokenizer files of the folder the model's tokenizer came from. */
static rm_status copy_tokenizer_files(const rm_model *m, const char *dir) {
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json"};
    if (!m->tokenizer) return RAMOLE_OK;
    if (!m->tokenizer_dir) {
        rm_log_warn("%s: the tokenizer came from GGUF metadata; no tokenizer.json is written", dir);
        return RAMOLE_OK;
    }
    rm_status st = RAMOLE_OK;
    for (size_t i = 0; st == RAMOLE_OK && i < sizeof names / sizeof names[0]; i++) {
        char *src = rm_path_join(m->tokenizer_dir, names[i]), *dst = rm_path_join(dir, names[i]);
        char *data = NULL;
        size_t n = 0;
        if (!src || !dst) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else if (rm_file_exists(src) && strcmp(src, dst) && (st = rm_file_read(src, &data, &n)) == RAMOLE_OK)
            st = rm_file_write_atomic(dst, data, n);
        rm_free(data);
        rm_free(src);
        rm_free(dst);
    }
    return st;
}

static rm_status save_hf(const rm_model *m, const out_list *l, rm_type main_type, const char *dir) {
    if (mkdir(dir, 0755) != 0 && !rm_dir_exists(dir))
        return rm_err(RAMOLE_ERR_IO, "%s: cannot create the output folder", dir);
    rm_status st = RAMOLE_OK;
    char *cfg_path = rm_path_join(dir, "config.json"), *st_path = rm_path_join(dir, "model.safetensors");
    rm_st_writer *w = NULL;
    json_t *cfg = hf_config_json(m, main_type);
    if (!cfg_path || !st_path || !cfg) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = rm_st_writer_new(&w)) != RAMOLE_OK) goto done;
    if ((st = rm_st_writer_meta(w, "format", "pt")) != RAMOLE_OK) goto done;
    for (int i = 0; i < l->n; i++) {
        const out_tensor *t = &l->t[i];
        if ((st = rm_st_writer_add(w, t->name, t->type, t->n_dims, t->shape, t->data)) != RAMOLE_OK) goto done;
    }
    if ((st = rm_st_writer_write(w, st_path)) != RAMOLE_OK) goto done;
    if ((st = rm_json_write_atomic(cfg_path, cfg, JSON_INDENT(2) | JSON_REAL_PRECISION(9))) != RAMOLE_OK) goto done;
    st = copy_tokenizer_files(m, dir);
done:
    json_decref(cfg);
    rm_st_writer_free(w);
    rm_free(cfg_path);
    rm_free(st_path);
    return st;
}

/* ---- GGUF --------------------------------------------------------------------- */

/* A vocabulary llama.cpp accepts when the model has no tokenizer of its own:
 * SentencePiece-style, <unk> <s> </s>, the 256 byte tokens, the word-start
 * piece, then unique fillers (a duplicate token aborts llama.cpp). */
static rm_status gguf_placeholder_vocab(rm_gguf_writer *w, int vocab) {
    rm_status st = RAMOLE_OK;
    char **tok = rm_calloc((size_t)vocab, sizeof *tok);
    float *score = rm_calloc((size_t)vocab, sizeof *score);
    int32_t *type = rm_calloc((size_t)vocab, sizeof *type);
    if (!tok || !score || !type) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < vocab; i++) {
        if (i == 0) tok[i] = rm_strdup("<unk>"), type[i] = 2;
        else if (i == 1) tok[i] = rm_strdup("<s>"), type[i] = 3;
        else if (i == 2) tok[i] = rm_strdup("</s>"), type[i] = 3;
        else if (i < 3 + 256) tok[i] = rm_asprintf("<0x%02X>", i - 3), type[i] = 6;
        else if (i == 259) tok[i] = rm_strdup("\xe2\x96\x81"), type[i] = 1; /* U+2581: llama.cpp checks it */
        else tok[i] = rm_asprintf("[tok%d]", i), type[i] = 1;
        score[i] = i < 3 + 256 ? 0.0f : -(float)i;
        if (!tok[i]) {
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    if ((st = rm_gguf_set_str(w, "tokenizer.ggml.model", "llama")) != RAMOLE_OK) goto done;
    /* tells ramole's loader that this vocabulary is no tokenizer */
    if ((st = rm_gguf_set_bool(w, "ramole.placeholder_vocab", true)) != RAMOLE_OK) goto done;
    if ((st = rm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)vocab)) != RAMOLE_OK) goto done;
    if ((st = rm_gguf_set_arr(w, "tokenizer.ggml.scores", RM_GGUF_FLOAT32, score, (uint64_t)vocab)) != RAMOLE_OK) goto done;
    if ((st = rm_gguf_set_arr(w, "tokenizer.ggml.token_type", RM_GGUF_INT32, type, (uint64_t)vocab)) != RAMOLE_OK) goto done;
    if ((st = rm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) != RAMOLE_OK) goto done;
    if ((st = rm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) != RAMOLE_OK) goto done;
    st = rm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
done:
    if (tok)
        for (int i = 0; i < vocab; i++) rm_free(tok[i]);
    rm_free(tok);
    rm_free(score);
    rm_free(type);
    return st;
}

/* llama.cpp's llama_ftype of a plan (the pure k-quants as its _S mixes). */
static uint32_t gguf_file_type(int plan) {
    switch (plan) {
    case RM_TYPE_F16: return 1;
    case RM_TYPE_Q4_0: return 2;
    case RM_TYPE_Q4_1: return 3;
    case RM_TYPE_Q8_0: return 7;
    case RM_TYPE_Q4_K: return 14;
    case RM_MODEL_PLAN_Q4_K_M: return 15;
    case RM_TYPE_Q5_K: return 16;
    case RM_TYPE_Q6_K: return 18;
    case RM_TYPE_BF16: return 32;
    default: return 0;
    }
}

static rm_status save_gguf(const rm_model *m, const out_list *l, int plan, const char *path) {
    const rm_model_config *c = &m->cfg;
    const char *arch = c->arch == RM_ARCH_QWEN2 ? "qwen2" : "llama";
    rm_gguf_writer *w = NULL;
    RM_TRY(rm_gguf_writer_new(&w));
    rm_status st = RAMOLE_OK;
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
#define T(expr) if ((st = (expr)) != RAMOLE_OK) goto done
    T(rm_gguf_set_str(w, "general.architecture", arch));
    T(rm_gguf_set_str(w, "general.name", "ramole"));
    T(rm_gguf_set_u32(w, "general.file_type", gguf_file_type(plan)));
    T(rm_gguf_set_u32(w, "general.quantization_version", 2));
    T(rm_gguf_set_u32(w, K("vocab_size"), (uint32_t)c->vocab_size));
    T(rm_gguf_set_u32(w, K("context_length"), (uint32_t)c->max_pos));
    T(rm_gguf_set_u32(w, K("embedding_length"), (uint32_t)c->hidden));
    T(rm_gguf_set_u32(w, K("block_count"), (uint32_t)c->n_layers));
    T(rm_gguf_set_u32(w, K("feed_forward_length"), (uint32_t)c->ffn));
    T(rm_gguf_set_u32(w, K("attention.head_count"), (uint32_t)c->n_heads));
    T(rm_gguf_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_kv_heads));
    if (c->head_dim * c->n_heads != c->hidden) {
        T(rm_gguf_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim));
        T(rm_gguf_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim));
    }
    T(rm_gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)c->rope.n_rot));
    T(rm_gguf_set_f32(w, K("rope.freq_base"), c->rope.theta));
    T(rm_gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"), c->rms_eps));
    if (c->rope.scaling == RM_ROPE_SCALING_LINEAR) {
        T(rm_gguf_set_str(w, K("rope.scaling.type"), "linear"));
        T(rm_gguf_set_f32(w, K("rope.scaling.factor"), c->rope.factor));
    } else if (c->rope.scaling == RM_ROPE_SCALING_LLAMA3) {
        /* llama.cpp reads rope_freqs.weight; these keys let ramole write the
         * HF config back (llama.cpp ignores keys it does not know). */
        T(rm_gguf_set_str(w, "ramole.rope_scaling.type", "llama3"));
        T(rm_gguf_set_f32(w, "ramole.rope_scaling.factor", c->rope.factor));
        T(rm_gguf_set_f32(w, "ramole.rope_scaling.low_freq_factor", c->rope.low_freq_factor));
        T(rm_gguf_set_f32(w, "ramole.rope_scaling.high_freq_factor", c->rope.high_freq_factor));
        T(rm_gguf_set_u32(w, "ramole.rope_scaling.original_max_position_embeddings",
                          (uint32_t)c->rope.original_max_pos));
    }
    if (m->tokenizer) {
        T(rm_tok_gguf_write(m->tokenizer, w, true));
    } else {
        T(gguf_placeholder_vocab(w, c->vocab_size));
    }
    for (int i = 0; i < l->n; i++) {
        const out_tensor *t = &l->t[i];
        int64_t ne[2] = {t->n_dims == 2 ? t->shape[1] : t->shape[0], t->shape[0]};
        T(rm_gguf_writer_add(w, t->name, t->type, t->n_dims, ne, t->data));
    }
    st = rm_gguf_writer_write(w, path);
#undef K
#undef T
done:
    rm_gguf_writer_free(w);
    return st;
}

rm_status rm_model_save(const rm_model *m, rm_source_kind format, int type, const char *path) {
    if (type >= RM_TYPE_COUNT || (type < 0 && type != -1 && type != RM_MODEL_PLAN_Q4_K_M))
        return rm_err(RAMOLE_ERR_INVALID, "unknown output type %d", type);
    if (format == RM_SOURCE_HF && (type == RM_MODEL_PLAN_Q4_K_M || (type >= 0 && rm_type_is_quant((rm_type)type))))
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: Hugging Face folders hold f32, f16 or bf16 weights, not %s", path,
                      type >= 0 ? rm_type_name((rm_type)type) : "q4_k_m");
    int eff = type;
    if (format == RM_SOURCE_HF && type < 0 && rm_type_is_quant(rm_model_main_type(m))) eff = RM_TYPE_F32;
    int plan = eff == -1 ? (int)rm_model_main_type(m) : eff; /* for general.file_type */
    rm_type main_type = eff < 0 ? rm_model_main_type(m) : (rm_type)eff;
    out_list l = {0};
    float ff[512];
    if (m->cfg.rope.n_rot / 2 > 512) return rm_err(RAMOLE_ERR_UNSUPPORTED, "rotary dimension too large");
    rm_status st = collect(m, format, eff, &l, ff);
    if (st == RAMOLE_OK)
        st = format == RM_SOURCE_HF ? save_hf(m, &l, main_type, path) : save_gguf(m, &l, plan, path);
    out_list_free(&l);
    return st;
}

int rm_model_plan_of(const rm_model *m) {
    const rm_model_config *c = &m->cfg;
    int q = RM_MODEL_PLAN_Q4_K_M;
    bool mix = rm_model_plan_type(c, q, RM_WEIGHT_EMBD, 0, m->tok_embd.cols, m->tok_embd.type) == m->tok_embd.type;
    if (!c->tied_embeddings)
        mix = mix && rm_model_plan_type(c, q, RM_WEIGHT_OUTPUT, 0, m->output.cols, m->output.type) == m->output.type;
    for (int i = 0; mix && i < c->n_layers; i++)
        for (int t = 0; mix && t < RM_TARGET_COUNT; t++) {
            const rm_weight *w = rm_layer_weight(&m->layers[i], (rm_target)t);
            rm_weight_role role = t == RM_TARGET_V ? RM_WEIGHT_ATTN_V : t == RM_TARGET_DOWN ? RM_WEIGHT_FFN_DOWN : RM_WEIGHT_OTHER;
            mix = rm_model_plan_type(c, q, role, i, w->cols, w->type) == w->type;
        }
    return mix ? RM_MODEL_PLAN_Q4_K_M : (int)rm_model_main_type(m);
}
