/*
 * merge.c — baking adapters into a copy of the base:
 * W' = W + sum_i w_i s_i B_i A_i for every adapted module.
 *
 * The merged model is an rm_model_new_f32 model: every 2-D weight
 * converted to f32 in one block, norms, biases and RoPE frequency factors
 * copied into a second, written through its writable views, so it
 * references neither the base nor its files. It keeps the base's
 * configuration, RoPE style and row order; adapters are already in that
 * order (adapter.h), so B A adds row by row. Tied embeddings stay tied.
 * Products are added with one sgemm per (adapter, module):
 * W += (w s) B A, B [dout][r] and A [r][din] row-major.
 */
#include "lora/adapter_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* dst = w converted to f32. */
static void take(float *dst, const rm_weight *w) { rm_convert(RM_TYPE_F32, dst, w->type, w->data, w->rows * w->cols); }

/* dst = src (n floats); nothing when the base lacks the vector. */
static void take_vec(float *dst, const float *src, int64_t n) {
    if (src && dst) memcpy(dst, src, (size_t)n * sizeof *dst);
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
    size_t need = 0; /* f32 scratch for one module of an f16/bf16 adapter */
    for (int i = 0; i < n; i++)
        if (adapters[i]->type != RM_TYPE_F32) {
            size_t want = 2 * (size_t)rm_target_max_dim(c) * (size_t)adapters[i]->max_rank;
            if (want > need) need = want;
        }
    float *scratch = need ? rm_malloc(need * sizeof *scratch) : NULL;
    if (need && !scratch) return rm_err(RAMOLE_ERR_NOMEM, "merge: out of memory");
    char *path = rm_asprintf("%s+lora", base->path ? base->path : "model");
    rm_model *m = NULL;
    rm_model_f32 *v = NULL;
    rm_status st = path ? rm_model_new_f32(c, path, base->rope_freq_factors != NULL, &m, &v)
                        : rm_err(RAMOLE_ERR_NOMEM, "merge: out of memory");
    rm_free(path);
    if (st != RAMOLE_OK) {
        rm_free(scratch);
        return st;
    }
    m->source = base->source;
    take(v->tok_embd, &base->tok_embd);
    if (!c->tied_embeddings) take(v->output, &base->output);
    for (int l = 0; l < c->n_layers; l++) {
        const rm_layer *B = &base->layers[l];
        rm_layer_f32 *L = &v->layers[l];
        take_vec(L->attn_norm, B->attn_norm, c->hidden);
        take_vec(L->ffn_norm, B->ffn_norm, c->hidden);
        take_vec(L->bq, B->bq, B->wq.rows);
        take_vec(L->bk, B->bk, B->wk.rows);
        take_vec(L->bv, B->bv, B->wv.rows);
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_weight *W = rm_layer_weight(B, (rm_target)t);
            take(L->w[t], W);
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
                            Bm, mod->rank, A, (int)W->cols, 1.0f, L->w[t], (int)W->cols);
            }
        }
    }
    rm_free(scratch);
    take_vec(v->out_norm, base->out_norm, c->hidden);
    take_vec(v->rope_freq_factors, base->rope_freq_factors, c->rope.n_rot / 2);
    *out = m;
    return RAMOLE_OK;
}
