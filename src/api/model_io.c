/*
 * model_io.c — include/ramole/model_io.h and include/ramole/adapter.h over
 * src/model and src/lora: models and adapters as files. The presets of
 * `ramole random-model` live here, so that every program makes the same
 * shapes from the same names.
 */
#include <string.h>

#include "lora/adapter.h"
#include "model/public.h"
#include "tokenizer/tokenizer.h"

struct ramole_adapter {
    rm_adapter *a;
    const rm_model *base; /* borrowed: the adapter lives while its model does */
};

/* ---- models ------------------------------------------------------------------ */

int ramole_arch_known(const char *s) {
    rm_arch a;
    return rm_arch_from_name(s, &a);
}

static const struct {
    const char *name;
    ramole_model_shape s; /* arch filled by the caller's */
} presets[] = {
    {"tiny", {NULL, 64, 160, 2, 4, 2, 256, 512, 0, 10000.0f, 1e-5f}},
    {"small", {NULL, 256, 704, 4, 8, 4, 1024, 1024, 0, 10000.0f, 1e-5f}},
    {"tinyllama-1.1b", {NULL, 2048, 5632, 22, 32, 4, 32000, 2048, 0, 10000.0f, 1e-5f}},
    {"qwen2.5-0.5b", {NULL, 896, 4864, 24, 14, 2, 151936, 32768, 1, 1000000.0f, 1e-6f}},
};

int ramole_model_preset(const char *arch, const char *name, ramole_model_shape *out) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) {
            *out = presets[i].s;
            out->arch = arch;
            return 1;
        }
    return 0;
}

/* The configuration of shape s; BOS 1 and EOS 2 unless a tokenizer says. */
static rm_status shape_config(const ramole_model_shape *s, rm_model_config *c) {
    rm_arch arch;
    if (!s->arch || !rm_arch_from_name(s->arch, &arch))
        return rm_err(RAMOLE_ERR_INVALID, "unknown architecture '%s' (llama, mistral, qwen2)", s->arch ? s->arch : "");
    if (s->n_heads <= 0) return rm_err(RAMOLE_ERR_INVALID, "model shape: %d heads", s->n_heads);
    rm_model_config_defaults(c, arch);
    c->hidden = s->hidden;
    c->ffn = s->ffn;
    c->n_layers = s->n_layers;
    c->n_heads = s->n_heads;
    c->n_kv_heads = s->n_kv_heads;
    c->head_dim = s->hidden / s->n_heads;
    c->vocab_size = s->vocab_size;
    c->max_pos = s->max_pos;
    c->tied_embeddings = s->tied_embeddings != 0;
    c->rope.theta = s->rope_theta;
    c->rope.n_rot = c->head_dim;
    c->rms_eps = s->rms_eps;
    c->bos_id = 1;
    c->eos_id = 2;
    return RAMOLE_OK;
}

ramole_status ramole_model_random(const ramole_model_shape *s, uint64_t seed, float std, const char *tokenizer,
                                  ramole_model **out) {
    *out = NULL;
    rm_model_config c;
    RM_TRY(shape_config(s, &c));
    if (tokenizer) { /* the vocabulary grows to hold the tokenizer's tokens */
        rm_tok *t = NULL;
        RM_TRY(rm_tok_load(tokenizer, &t));
        if (rm_tok_vocab_size(t) > c.vocab_size) c.vocab_size = rm_tok_vocab_size(t);
        int32_t bos = rm_tok_bos(t), eos = rm_tok_eos(t);
        c.bos_id = bos >= 0 ? bos : -1;
        c.eos_id = eos >= 0 ? eos : -1;
        rm_tok_free(t);
    }
    ramole_model *pm = rm_calloc(1, sizeof *pm);
    if (!pm) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_model_random(&c, seed, std, &pm->m);
    if (st == RAMOLE_OK && tokenizer) st = rm_model_set_tokenizer(pm->m, tokenizer);
    if (st != RAMOLE_OK) {
        ramole_model_free(pm);
        return st;
    }
    *out = pm;
    return RAMOLE_OK;
}

ramole_status ramole_model_save(const ramole_model *pm, ramole_model_format format, int plan, const char *path) {
    return rm_model_save(pm->m, format == RAMOLE_FORMAT_GGUF ? RM_SOURCE_GGUF : RM_SOURCE_HF, plan, path);
}

int ramole_model_plan_of(const ramole_model *pm) { return rm_model_plan_of(pm->m); }

ramole_status ramole_model_merge(const ramole_model *pm, ramole_adapter *const *adapters, const float *weights, int n,
                                 ramole_model **out) {
    *out = NULL;
    if (n < 0 || n > RAMOLE_MAX_ADAPTERS)
        return rm_err(RAMOLE_ERR_INVALID, "merge: %d adapters (0..%d)", n, RAMOLE_MAX_ADAPTERS);
    rm_adapter *ads[RAMOLE_MAX_ADAPTERS];
    for (int i = 0; i < n; i++) ads[i] = adapters[i]->a;
    ramole_model *merged = rm_calloc(1, sizeof *merged);
    if (!merged) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_model_merge(pm->m, ads, weights, n, &merged->m);
    if (st != RAMOLE_OK) {
        rm_free(merged);
        return st;
    }
    *out = merged;
    return RAMOLE_OK;
}

/* ---- adapters ------------------------------------------------------------------ */

int ramole_adapter_is_adapter(const char *path) {
    rm_adapter_format f;
    return rm_adapter_format_of(path, &f) == RAMOLE_OK && f != RM_ADAPTER_FORMAT_NONE;
}

/* Wrap a freshly made internal adapter (freed here on failure). */
static rm_status wrap_adapter(rm_status st, rm_adapter *a, const rm_model *base, ramole_adapter **out) {
    if (st != RAMOLE_OK) return st;
    ramole_adapter *pa = rm_calloc(1, sizeof *pa);
    if (!pa) {
        rm_adapter_free(a);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    pa->a = a;
    pa->base = base;
    *out = pa;
    return RAMOLE_OK;
}

ramole_status ramole_adapter_load(const ramole_model *pm, const char *path, ramole_adapter **out) {
    *out = NULL;
    rm_adapter *a = NULL;
    rm_status st = rm_adapter_load(pm->m, path, &a);
    return wrap_adapter(st, a, pm->m, out);
}

ramole_status ramole_adapter_random(const ramole_model *pm, const ramole_adapter_random_params *p,
                                    ramole_adapter **out) {
    *out = NULL;
    rm_adapter *a = NULL;
    rm_status st = rm_adapter_random(pm->m, p->rank, p->alpha, p->targets, p->seed, p->std, &a);
    return wrap_adapter(st, a, pm->m, out);
}

void ramole_adapter_free(ramole_adapter *pa) {
    if (!pa) return;
    rm_adapter_free(pa->a);
    rm_free(pa);
}

void ramole_adapter_get_info(const ramole_adapter *pa, ramole_adapter_info *out) {
    const rm_adapter *a = pa->a;
    *out = (ramole_adapter_info){.name = a->name, .rank = a->rank, .max_rank = a->max_rank, .alpha = a->alpha,
                                 .rslora = a->rslora, .targets = a->target_mask, .type = (ramole_type)a->type,
                                 .gate_pool_prompt = a->gate_pool == RM_GATE_POOL_PROMPT,
                                 .retrieval_prior = a->retrieval_prior};
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) out->n_modules += rm_adapter_mod(a, l, (rm_target)t)->rank > 0;
}

ramole_status ramole_adapter_convert(ramole_adapter *pa, ramole_type t) {
    return rm_adapter_convert(pa->a, pa->base, (rm_type)t);
}

ramole_status ramole_adapter_save(const ramole_adapter *pa, const char *path, int gguf) {
    return gguf ? rm_adapter_save_gguf(pa->a, pa->base, path) : rm_adapter_save_peft(pa->a, pa->base, path);
}
