/*
 * merge.c — baking adapters into a copy of the base:
 * W' = W + sum_i w_i s_i B_i A_i for every adapted module.
 *
 * The merged model is built the way rm_model_random builds one: every 2-D
 * weight converted to f32 in one block (m->owned_weights), norms, biases
 * and RoPE frequency factors copied into a second block (m->owned_f32), so
 * it references neither the base nor its files. It keeps the base's
 * configuration, RoPE style and row order; adapters are already in that
 * order (adapter.h), so B A adds row by row. Tied embeddings stay tied.
 * Products are added with one sgemm per (adapter, module):
 * W += (w s) B A, B [dout][r] and A [r][din] row-major.
 */
#include "lora/adapter_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Convert w into f32 at dst and point *out at it; returns floats used. */
static int64_t take_weight(float *dst, const rm_weight *w, rm_weight *out) {
    int64_t n = w->rows * w->cols;
    rm_convert(RM_TYPE_F32, dst, w->type, w->data, n);
    out->data = dst;
    out->type = RM_TYPE_F32;
    out->rows = w->rows;
    out->cols = w->cols;
    return n;
}

static const float *take_vec(float **v, const float *src, int64_t n) {
    if (!src) return NULL;
    float *d = *v;
    memcpy(d, src, (size_t)n * sizeof *d);
    *v += n;
    return d;
}

static rm_weight *layer_weight(rm_layer *L, rm_target t) {
    switch (t) {
    case RM_TARGET_Q: return &L->wq;
    case RM_TARGET_K: return &L->wk;
    case RM_TARGET_V: return &L->wv;
    case RM_TARGET_O: return &L->wo;
    case RM_TARGET_GATE: return &L->w_gate;
    case RM_TARGET_UP: return &L->w_up;
    default: return &L->w_down;
    }
}

rm_status rm_model_merge(const rm_model *base, rm_adapter *const *adapters, const float *weights, int n,
                         rm_model **out) {
    *out = NULL;
    if (n < 0 || (n > 0 && !adapters)) return rm_err(RAMOLE_ERR_INVALID, "merge: bad adapter list (n = %d)", n);
    for (int i = 0; i < n; i++) {
        if (!adapters[i]) return rm_err(RAMOLE_ERR_INVALID, "merge: adapter %d is NULL", i);
        RM_TRY(rm_adapter_check(adapters[i], base));
        if (weights && !isfinite(weights[i]))
            return rm_err(RAMOLE_ERR_INVALID, "merge: weight %g of adapter %s is not finite", (double)weights[i],
                          adapters[i]->path);
    }
    const rm_model_config *c = &base->cfg;
    rm_model *m = rm_calloc(1, sizeof *m);
    if (!m) return rm_err(RAMOLE_ERR_NOMEM, "merge: out of memory");
    m->cfg = *c;
    m->source = base->source;
    int64_t mats = base->tok_embd.rows * base->tok_embd.cols;
    if (!c->tied_embeddings) mats += base->output.rows * base->output.cols;
    int64_t vecs = c->hidden + (base->rope_freq_factors ? c->rope.n_rot / 2 : 0);
    for (int l = 0; l < c->n_layers; l++) {
        const rm_layer *L = &base->layers[l];
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_weight *w = layer_weight((rm_layer *)L, (rm_target)t);
            mats += w->rows * w->cols;
        }
        vecs += 2 * c->hidden;
        if (L->bq) vecs += L->wq.rows;
        if (L->bk) vecs += L->wk.rows;
        if (L->bv) vecs += L->wv.rows;
    }
    float *w = rm_malloc((size_t)mats * sizeof(float));
    float *v = rm_malloc((size_t)vecs * sizeof(float));
    m->owned_weights = w;
    m->owned_f32 = v;
    m->layers = rm_calloc((size_t)c->n_layers, sizeof *m->layers);
    m->path = rm_asprintf("%s+lora", base->path ? base->path : "model");
    if (!w || !v || !m->layers || !m->path) {
        rm_model_free(m);
        return rm_err(RAMOLE_ERR_NOMEM, "merge: out of memory (%lld weights)", (long long)mats);
    }
    size_t need = 0; /* f32 scratch for one module of an f16/bf16 adapter */
    for (int i = 0; i < n; i++)
        if (adapters[i]->type != RM_TYPE_F32) {
            size_t want = 2 * (size_t)rm_target_max_dim(c) * (size_t)adapters[i]->max_rank;
            if (want > need) need = want;
        }
    float *scratch = need ? rm_malloc(need * sizeof *scratch) : NULL;
    if (need && !scratch) {
        rm_model_free(m);
        return rm_err(RAMOLE_ERR_NOMEM, "merge: out of memory");
    }
    w += take_weight(w, &base->tok_embd, &m->tok_embd);
    if (c->tied_embeddings) m->output = m->tok_embd;
    else w += take_weight(w, &base->output, &m->output);
    for (int l = 0; l < c->n_layers; l++) {
        const rm_layer *B = &base->layers[l];
        rm_layer *L = &m->layers[l];
        for (int t = 0; t < RM_TARGET_COUNT; t++)
            w += take_weight(w, layer_weight((rm_layer *)B, (rm_target)t), layer_weight(L, (rm_target)t));
        L->attn_norm = take_vec(&v, B->attn_norm, c->hidden);
        L->ffn_norm = take_vec(&v, B->ffn_norm, c->hidden);
        L->bq = take_vec(&v, B->bq, B->wq.rows);
        L->bk = take_vec(&v, B->bk, B->wk.rows);
        L->bv = take_vec(&v, B->bv, B->wv.rows);
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            rm_weight *W = layer_weight(L, (rm_target)t);
            for (int i = 0; i < n; i++) {
                const rm_lora_module *mod = rm_adapter_mod(adapters[i], l, (rm_target)t);
                float f = (weights ? weights[i] : 1.0f) * mod->scale;
                if (mod->rank <= 0 || f == 0.0f) continue;
                const float *A = mod->A, *Bm = mod->B;
                if (mod->type != RM_TYPE_F32) { /* f16/bf16 adapters: widen into the scratch */
                    rm_lora_module_get(mod, c, (rm_target)t, false, scratch);
                    rm_lora_module_get(mod, c, (rm_target)t, true, scratch + (size_t)mod->rank * W->cols);
                    A = scratch, Bm = scratch + (size_t)mod->rank * W->cols;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)W->rows, (int)W->cols, mod->rank, f,
                            Bm, mod->rank, A, (int)W->cols, 1.0f, (float *)W->data, (int)W->cols);
            }
        }
    }
    rm_free(scratch);
    m->out_norm = take_vec(&v, base->out_norm, c->hidden);
    m->rope_freq_factors = take_vec(&v, base->rope_freq_factors, c->rope.n_rot / 2);
    *out = m;
    return RAMOLE_OK;
}
