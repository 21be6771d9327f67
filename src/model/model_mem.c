/*
 * model_mem.c — models built in memory: every weight f32 and owned by the
 * model (rm_model_new_f32), and random models on top of it.
 *
 * Memory (STYLE habit 4): sizes come first from the configuration, then
 * one block holds every 2-D weight (embedding, untied head, then each
 * layer's targets in target order), a second block the vectors (per layer
 * attn_norm, ffn_norm, q/k/v biases; then the final norm and the RoPE
 * factors), and a third the writable views with their per-layer array.
 * The model's rm_weight and const float * fields are views into the same
 * blocks, so a builder writes through the views and readers see a
 * read-only model, with no cast between the two.
 */
#include <string.h>

#include "model/model_internal.h"

/* Point wt at the next rows x cols floats of the block at *w; returns them. */
static float *take_matrix(float **w, rm_weight *wt, int64_t rows, int64_t cols) {
    float *p = *w;
    wt->data = p;
    wt->type = RM_TYPE_F32;
    wt->rows = rows;
    wt->cols = cols;
    *w += rows * cols;
    return p;
}

rm_status rm_model_new_f32(const rm_model_config *cfg, const char *path, bool rope_freq_factors, rm_model **out,
                           rm_model_f32 **views) {
    *out = NULL;
    *views = NULL;
    RM_TRY(rm_model_config_check(cfg, path ? path : "in-memory model"));
    int64_t d = cfg->hidden, V = cfg->vocab_size, qd = (int64_t)cfg->n_heads * cfg->head_dim,
            kd = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    int64_t per_layer = 0;
    for (int t = 0; t < RM_TARGET_COUNT; t++) {
        int64_t din, dout;
        rm_target_dims(cfg, (rm_target)t, &din, &dout);
        per_layer += din * dout;
    }
    int64_t mats = V * d * (cfg->tied_embeddings ? 1 : 2) + per_layer * cfg->n_layers;
    int64_t vecs = (2 * d + (cfg->qkv_bias ? qd + 2 * kd : 0)) * cfg->n_layers + d +
                   (rope_freq_factors ? cfg->rope.n_rot / 2 : 0);
    rm_model *m = rm_calloc(1, sizeof *m);
    if (!m) return rm_err(RAMOLE_ERR_NOMEM, "in-memory model: out of memory");
    m->cfg = *cfg;
    m->source = RM_SOURCE_HF;
    float *w = rm_calloc((size_t)mats, sizeof(float)), *v = rm_calloc((size_t)vecs, sizeof(float));
    rm_model_f32 *vw = rm_calloc(1, sizeof *vw + (size_t)cfg->n_layers * sizeof(rm_layer_f32));
    m->owned_weights = w;
    m->owned_f32 = v;
    m->owned_views = vw;
    m->layers = rm_calloc((size_t)cfg->n_layers, sizeof *m->layers);
    m->path = rm_strdup(path ? path : "memory");
    if (!w || !v || !vw || !m->layers || !m->path) {
        rm_model_free(m);
        return rm_err(RAMOLE_ERR_NOMEM, "in-memory model: out of memory (%lld weights)", (long long)mats);
    }
    vw->layers = (rm_layer_f32 *)(vw + 1);
    vw->weights = w;
    vw->n_weights = (size_t)mats;
#define VEC(view, field, n) (view) = v, (field) = v, v += (n)
    vw->tok_embd = take_matrix(&w, &m->tok_embd, V, d);
    if (cfg->tied_embeddings) vw->output = vw->tok_embd, m->output = m->tok_embd;
    else vw->output = take_matrix(&w, &m->output, V, d);
    for (int l = 0; l < cfg->n_layers; l++) {
        rm_layer *L = &m->layers[l];
        rm_layer_f32 *LV = &vw->layers[l];
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            int64_t din, dout;
            rm_target_dims(cfg, (rm_target)t, &din, &dout);
            LV->w[t] = take_matrix(&w, rm_layer_weight_mut(L, (rm_target)t), dout, din);
        }
        VEC(LV->attn_norm, L->attn_norm, d);
        VEC(LV->ffn_norm, L->ffn_norm, d);
        if (cfg->qkv_bias) {
            VEC(LV->bq, L->bq, qd);
            VEC(LV->bk, L->bk, kd);
            VEC(LV->bv, L->bv, kd);
        }
    }
    VEC(vw->out_norm, m->out_norm, d);
    if (rope_freq_factors) VEC(vw->rope_freq_factors, m->rope_freq_factors, cfg->rope.n_rot / 2);
#undef VEC
    *out = m;
    *views = vw;
    return RAMOLE_OK;
}

rm_status rm_model_random(const rm_model_config *cfg, uint64_t seed, float std, rm_model **out) {
    RM_TRY(rm_model_config_check(cfg, "random model"));
    rm_model_config c = *cfg;
    c.rope.style = RM_ROPE_NEOX;
    rm_model_f32 *vw = NULL;
    RM_TRY(rm_model_new_f32(&c, "random", false, out, &vw));
    uint64_t s = seed;
    rm_rng_fill_uniform(vw->weights, vw->n_weights, std, &s);
    int64_t d = c.hidden, qd = (int64_t)c.n_heads * c.head_dim, kd = (int64_t)c.n_kv_heads * c.head_dim;
    for (int l = 0; l < c.n_layers; l++) {
        rm_layer_f32 *L = &vw->layers[l];
        for (int64_t i = 0; i < d; i++) L->attn_norm[i] = 1.0f, L->ffn_norm[i] = 1.0f;
        if (c.qkv_bias) { /* one stream: q, k, v after the layer before's */
            rm_rng_fill_uniform(L->bq, (size_t)qd, std, &s);
            rm_rng_fill_uniform(L->bk, (size_t)kd, std, &s);
            rm_rng_fill_uniform(L->bv, (size_t)kd, std, &s);
        }
    }
    for (int64_t i = 0; i < d; i++) vw->out_norm[i] = 1.0f;
    return RAMOLE_OK;
}
