/*
 * adapter_gguf.c — GGUF LoRA files as llama.cpp's convert_lora_to_gguf.py
 * writes them and src/llama-adapter.cpp reads them.
 *
 * Layout: general.architecture is the base's GGUF architecture ("llama"
 * for llama and mistral, "qwen2"), general.type = "adapter", adapter.type
 * = "lora", adapter.lora.alpha (f32, one per file). Tensors per adapted
 * module: blk.N.attn_q.weight.lora_a with ne = {din, r} (row-major
 * [r][din], PEFT's lora_A) and blk.N.attn_q.weight.lora_b with ne = {r,
 * dout} ([dout][r]). The rank of each module is implied by its shapes;
 * llama.cpp scales a module by alpha / r, or by 1 when alpha is 0. The
 * convert script permutes the rows of lora_b for q and k of llama-family
 * models exactly as it permutes the base's q/k weights (adjacent RoPE
 * pairs) and leaves lora_a alone; qwen2 is not permuted.
 *
 * ramole adds its keys, "ramole.base_fingerprint" (u64, rm_model_fingerprint
 * of the base) and, for a router, "ramole.gate_pool" (string "prompt" when
 * it pools its gates over the prompt; absent: token) and
 * "ramole.retrieval_prior" (a decimal string; absent: 0); llama.cpp ignores
 * keys it does not know.
 *
 * One alpha per file and no rsLoRA: when writing, alpha_file is the
 * adapter's lora_alpha (for rsLoRA adapters: the alpha that gives the most
 * common rank its scale under alpha / r). A module whose scale s differs
 * from alpha_file / r (alpha_pattern, rank_pattern under rsLoRA) is written
 * with B' = B * s / (alpha_file / r), so that alpha_file / r * B' A = s B A:
 * llama.cpp computes what PEFT computes, and reading the file back gives the
 * same products (B' is not bit-identical to B then; every other value is).
 */
#include "lora/adapter_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/gguf.h"

#define T_COUNT RM_TARGET_COUNT

/* Parse "blk.N.<gguf target>.weight.lora_a|lora_b". */
static bool parse_name(const char *name, int *layer, rm_target *t, bool *is_b) {
    if (strncmp(name, "blk.", 4)) return false;
    const char *p = name + 4;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return false;
    long n = 0;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (*p++ - '0');
        if (n > 1000000) return false;
    }
    if (*p++ != '.') return false;
    *layer = (int)n;
    for (int k = 0; k < T_COUNT; k++) {
        const char *g = rm_target_gguf_name((rm_target)k);
        size_t gn = strlen(g);
        if (strncmp(p, g, gn)) continue;
        const char *q = p + gn;
        if (!strcmp(q, ".weight.lora_a")) *is_b = false;
        else if (!strcmp(q, ".weight.lora_b")) *is_b = true;
        else continue;
        *t = (rm_target)k;
        return true;
    }
    return false;
}

static rm_status get_string(const rm_gguf *g, const char *path, const char *key, char *buf, size_t n, bool *found) {
    const char *s;
    size_t len;
    rm_status st = rm_gguf_get_str(g, key, &s, &len);
    *found = st == RAMOLE_OK;
    buf[0] = 0;
    if (st == RAMOLE_ERR_NOT_FOUND) return RAMOLE_OK;
    if (st != RAMOLE_OK) return rm_err(RAMOLE_ERR_FORMAT, "adapter %s: %s must be a string", path, key);
    if (len >= n) len = n - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return RAMOLE_OK;
}

/* The most common rank among adapted modules (ties: the larger). */
static int mode_rank(const int *rank, size_t n) {
    int best = 0, best_n = 0;
    for (size_t i = 0; i < n; i++) {
        if (rank[i] <= 0) continue;
        int c = 0;
        for (size_t j = 0; j < n; j++) c += rank[j] == rank[i];
        if (c > best_n || (c == best_n && rank[i] > best)) best = rank[i], best_n = c;
    }
    return best;
}

rm_status rm_adapter_load_gguf(const rm_model *base, const char *path, rm_adapter **out) {
    *out = NULL;
    rm_gguf *g = NULL;
    rm_adapter *a = NULL;
    int L = base->cfg.n_layers;
    size_t nmod = (size_t)L * T_COUNT;
    int *ia = rm_malloc(nmod * sizeof *ia), *ib = rm_malloc(nmod * sizeof *ib), *rank = rm_calloc(nmod, sizeof *rank);
    float *tmp = NULL;
    rm_status st = RAMOLE_OK;
    if (!ia || !ib || !rank) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = rm_gguf_open(path, &g)) != RAMOLE_OK) {
        rm_err_prefix(st, "adapter %s", path);
        goto done;
    }
    char buf[64];
    bool found;
    if ((st = get_string(g, path, "general.type", buf, sizeof buf, &found)) != RAMOLE_OK) goto done;
    if (!found || strcmp(buf, "adapter")) {
        st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s is not a LoRA adapter (general.type is %s%s%s, want \"adapter\")",
                    path, found ? "\"" : "", found ? buf : "missing", found ? "\"" : "");
        goto done;
    }
    if ((st = get_string(g, path, "adapter.type", buf, sizeof buf, &found)) != RAMOLE_OK) goto done;
    if (!found || strcmp(buf, "lora")) {
        st = rm_err(RAMOLE_ERR_UNSUPPORTED, "adapter %s: adapter.type is %s%s%s (only \"lora\" is supported)", path,
                    found ? "\"" : "", found ? buf : "missing", found ? "\"" : "");
        goto done;
    }
    if ((st = get_string(g, path, "general.architecture", buf, sizeof buf, &found)) != RAMOLE_OK) goto done;
    const char *want_arch = rm_lora_gguf_arch(base);
    /* "mistral" is what a few converters write for a llama-family model */
    bool arch_ok = found && (!strcmp(buf, want_arch) || (!strcmp(want_arch, "llama") && !strcmp(buf, "mistral")));
    if (!arch_ok) {
        st = rm_err(RAMOLE_ERR_MISMATCH, "adapter %s was made for another base model (architecture %s, the base is %s)",
                    path, found ? buf : "missing", want_arch);
        goto done;
    }
    uint64_t want_fp = rm_model_fingerprint(base);
    int64_t fp;
    st = rm_gguf_get_i64(g, "ramole.base_fingerprint", &fp);
    if (st == RAMOLE_OK && (uint64_t)fp != want_fp) {
        st = rm_err(RAMOLE_ERR_MISMATCH,
                    "adapter %s was made for another base model (fingerprint %016llx, base %s has %016llx)", path,
                    (unsigned long long)fp, base->path ? base->path : "?", (unsigned long long)want_fp);
        goto done;
    }
    if (st != RAMOLE_OK && st != RAMOLE_ERR_NOT_FOUND) {
        st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: ramole.base_fingerprint must be an unsigned 64-bit integer", path);
        goto done;
    }
    rm_gate_pool pool;
    if ((st = get_string(g, path, RM_GATE_POOL_KEY, buf, sizeof buf, &found)) != RAMOLE_OK) goto done;
    if ((st = rm_gate_pool_parse(path, found ? buf : NULL, &pool)) != RAMOLE_OK) goto done;
    float prior;
    if ((st = get_string(g, path, RM_RETRIEVAL_PRIOR_KEY, buf, sizeof buf, &found)) != RAMOLE_OK) goto done;
    if ((st = rm_retrieval_prior_parse(path, found ? buf : NULL, &prior)) != RAMOLE_OK) goto done;
    float alpha = 0;
    st = rm_gguf_get_f32(g, "adapter.lora.alpha", &alpha);
    if (st == RAMOLE_ERR_NOT_FOUND) alpha = 0; /* llama.cpp: scale 1 */
    else if (st != RAMOLE_OK || !isfinite(alpha)) {
        st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: adapter.lora.alpha must be a finite f32", path);
        goto done;
    }
    st = RAMOLE_OK;

    /* names and shapes */
    for (size_t i = 0; i < nmod; i++) ia[i] = ib[i] = -1;
    int64_t nt = rm_gguf_tensor_count(g);
    for (int64_t i = 0; i < nt; i++) {
        const rm_gguf_tensor *t = rm_gguf_tensor_get(g, i);
        int layer;
        rm_target tg;
        bool is_b;
        if (!parse_name(t->name, &layer, &tg, &is_b)) {
            st = rm_err(RAMOLE_ERR_FORMAT,
                        "adapter %s: unexpected tensor %s (ramole reads only blk.N.{attn_q,attn_k,attn_v,attn_output,"
                        "ffn_gate,ffn_up,ffn_down}.weight.lora_a/lora_b)",
                        path, t->name);
            goto done;
        }
        if (layer >= L) {
            st = rm_err(RAMOLE_ERR_MISMATCH, "adapter %s: tensor %s: layer %d does not exist (the base has %d layers)",
                        path, t->name, layer, L);
            goto done;
        }
        size_t mi = (size_t)layer * T_COUNT + (size_t)tg;
        int *slot = is_b ? &ib[mi] : &ia[mi];
        if (*slot >= 0) {
            st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: tensor %s appears twice", path, t->name);
            goto done;
        }
        if ((st = rm_gguf_tensor_check(g, t)) != RAMOLE_OK) {
            rm_err_prefix(st, "adapter %s", path);
            goto done;
        }
        if (t->type != RM_TYPE_F32 && t->type != RM_TYPE_F16 && t->type != RM_TYPE_BF16) {
            st = rm_err(RAMOLE_ERR_UNSUPPORTED, "adapter %s: tensor %s has type %s (supported: f32, f16, bf16)", path,
                        t->name, rm_ggml_type_name(t->ggml_type));
            goto done;
        }
        *slot = (int)i;
    }
    for (int l = 0; l < L; l++)
        for (int k = 0; k < T_COUNT; k++) {
            size_t mi = (size_t)l * T_COUNT + (size_t)k;
            if (ia[mi] < 0 && ib[mi] < 0) continue;
            if (ia[mi] < 0 || ib[mi] < 0) {
                st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: tensor blk.%d.%s.weight.lora_%s is missing (its partner "
                                               "lora_%s is present)",
                            path, l, rm_target_gguf_name((rm_target)k), ia[mi] < 0 ? "a" : "b", ia[mi] < 0 ? "b" : "a");
                goto done;
            }
            const rm_gguf_tensor *ta = rm_gguf_tensor_get(g, ia[mi]), *tb = rm_gguf_tensor_get(g, ib[mi]);
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)k, &din, &dout);
            if (ta->n_dims != 2 || ta->ne[0] != din) {
                st = rm_err(RAMOLE_ERR_MISMATCH,
                            "adapter %s: tensor %s has ne = {%lld, %lld}, the base needs {%lld, rank} (%d dims)", path,
                            ta->name, (long long)ta->ne[0], (long long)ta->ne[1], (long long)din, ta->n_dims);
                goto done;
            }
            int64_t r = ta->ne[1];
            if (r < 1 || r > RM_LORA_MAX_RANK) {
                st = rm_err(RAMOLE_ERR_RANGE, "adapter %s: tensor %s has rank %lld (allowed 1..%d)", path, ta->name,
                            (long long)r, RM_LORA_MAX_RANK);
                goto done;
            }
            if (tb->n_dims != 2 || tb->ne[0] != r || tb->ne[1] != dout) {
                st = rm_err(RAMOLE_ERR_MISMATCH,
                            "adapter %s: tensor %s has ne = {%lld, %lld}, the base and %s need {%lld, %lld}", path,
                            tb->name, (long long)tb->ne[0], (long long)tb->ne[1], ta->name, (long long)r,
                            (long long)dout);
                goto done;
            }
            rank[mi] = (int)r;
        }
    int common = mode_rank(rank, nmod);
    if (common == 0) {
        st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s holds no LoRA tensors", path);
        goto done;
    }

    /* values */
    if ((st = rm_adapter_alloc(base, path, &a)) != RAMOLE_OK) goto done;
    size_t bytes = 0;
    for (size_t mi = 0; mi < nmod; mi++)
        if (rank[mi]) bytes += rm_adapter_module_bytes(base, (rm_target)(mi % T_COUNT), rank[mi]);
    if ((st = rm_adapter_reserve(a, bytes)) != RAMOLE_OK) goto done;
    a->alpha = alpha != 0 ? alpha : (float)common; /* alpha 0: llama.cpp uses scale 1 */
    a->rank = common;
    a->rslora = false;
    a->gate_pool = pool;
    a->retrieval_prior = prior;
    bool flip = rm_lora_base_pairs(base) != (base->cfg.arch != RM_ARCH_QWEN2);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < T_COUNT; k++) {
            size_t mi = (size_t)l * T_COUNT + (size_t)k;
            if (!rank[mi]) continue;
            int r = rank[mi];
            float s = alpha != 0 ? rm_lora_scale(alpha, r, false) : 1.0f;
            if ((st = rm_adapter_module_alloc(a, base, l, (rm_target)k, r, s)) != RAMOLE_OK) goto done;
            rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)k);
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)k, &din, &dout);
            const rm_gguf_tensor *ta = rm_gguf_tensor_get(g, ia[mi]), *tb = rm_gguf_tensor_get(g, ib[mi]);
            if ((st = rm_lora_read_f32(m->A, ta->data, (rm_type)ta->type, r, din, false, path, ta->name)) != RAMOLE_OK)
                goto done;
            if ((st = rm_lora_read_f32(m->B, tb->data, (rm_type)tb->type, dout, r, false, path, tb->name)) != RAMOLE_OK)
                goto done;
            int heads = rm_lora_perm_heads(base, (rm_target)k);
            if (flip && heads) {
                rm_free(tmp);
                if (!(tmp = rm_malloc((size_t)dout * (size_t)r * sizeof *tmp))) {
                    st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                    goto done;
                }
                /* file order -> base order */
                rm_lora_permute_rows(m->B, tmp, dout, r, heads, rm_lora_base_pairs(base));
            }
        }
    rm_adapter_update_summary(a);
    *out = a;
    a = NULL;
done:
    rm_adapter_free(a);
    rm_gguf_free(g);
    rm_free(tmp);
    rm_free(ia);
    rm_free(ib);
    rm_free(rank);
    return st;
}

/* ---- writing ------------------------------------------------------------------------ */

/* llama.cpp's scale of a rank-r module in a file with alpha_file. */
static float file_scale(float alpha_file, int r) {
    return alpha_file != 0 ? rm_lora_scale(alpha_file, r, false) : 1.0f;
}

rm_status rm_adapter_save_gguf(const rm_adapter *a, const rm_model *base, const char *path) {
    RM_TRY(rm_adapter_check(a, base));
    size_t nmod = (size_t)a->n_layers * T_COUNT;
    int *ranks = rm_malloc(nmod * sizeof *ranks);
    if (!ranks) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nmod; i++) ranks[i] = a->mods[i].rank;
    int common = mode_rank(ranks, nmod);
    rm_free(ranks);
    if (common == 0) return rm_err(RAMOLE_ERR_INVALID, "adapter %s adapts no module: nothing to save", a->path);
    /* alpha_file: PEFT's lora_alpha, or for rsLoRA the alpha that makes
     * alpha / r the scale of the most common rank */
    float alpha_file = a->alpha;
    if (a->rslora) alpha_file = (float)((double)rm_lora_scale(a->alpha, common, true) * common);

    rm_status st = RAMOLE_OK;
    rm_gguf_writer *w = NULL;
    void **owned = rm_calloc(nmod, sizeof *owned);
    float *tmp = NULL;
    if (!owned) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if ((st = rm_gguf_writer_new(&w)) != RAMOLE_OK) goto done;
#define T(expr) if ((st = (expr)) != RAMOLE_OK) goto done
    T(rm_gguf_set_str(w, "general.architecture", rm_lora_gguf_arch(base)));
    T(rm_gguf_set_str(w, "general.type", "adapter"));
    T(rm_gguf_set_str(w, "general.name", a->name ? a->name : "adapter"));
    T(rm_gguf_set_str(w, "adapter.type", "lora"));
    T(rm_gguf_set_f32(w, "adapter.lora.alpha", alpha_file));
    T(rm_gguf_set_u64(w, "ramole.base_fingerprint", rm_model_fingerprint(base)));
    if (a->gate_pool != RM_GATE_POOL_TOKEN) T(rm_gguf_set_str(w, RM_GATE_POOL_KEY, rm_gate_pool_name(a->gate_pool)));
    char prior[32];
    rm_retrieval_prior_format(a->retrieval_prior, prior);
    if (a->retrieval_prior != 0) T(rm_gguf_set_str(w, RM_RETRIEVAL_PRIOR_KEY, prior));
    bool flip = rm_lora_base_pairs(base) != (base->cfg.arch != RM_ARCH_QWEN2);
    for (int l = 0; l < a->n_layers; l++)
        for (int k = 0; k < T_COUNT; k++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)k);
            if (m->rank <= 0) continue;
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)k, &din, &dout);
            size_t n = (size_t)dout * (size_t)m->rank;
            int heads = rm_lora_perm_heads(base, (rm_target)k);
            float fs = file_scale(alpha_file, m->rank);
            bool fold = m->scale != fs, perm = flip && heads;
            const void *B = m->B;
            if (fold && (fs == 0 || !isfinite((double)m->scale / (double)fs))) {
                st = rm_err(RAMOLE_ERR_RANGE, "adapter %s: layer %d %s: scale %g cannot be expressed with GGUF alpha %g",
                            a->path, l, rm_target_hf_name((rm_target)k), (double)m->scale, (double)alpha_file);
                goto done;
            }
            if (fold || perm) {
                float *copy = rm_malloc(n * sizeof *copy);
                void *packed = rm_malloc(n * sizeof(float));
                if (!copy || !packed) {
                    rm_free(copy);
                    rm_free(packed);
                    st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                    goto done;
                }
                owned[(size_t)l * T_COUNT + (size_t)k] = packed;
                rm_lora_module_get(m, &base->cfg, (rm_target)k, true, copy);
                /* fold the module's own scale into B: fs * B' == scale * B */
                double f = fold ? (double)m->scale / (double)fs : 1.0;
                if (fold)
                    for (size_t i = 0; i < n; i++) copy[i] = (float)((double)copy[i] * f);
                if (perm) {
                    rm_free(tmp);
                    if (!(tmp = rm_malloc(n * sizeof *tmp))) {
                        rm_free(copy);
                        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                        goto done;
                    }
                    /* base order -> file order */
                    rm_lora_permute_rows(copy, tmp, dout, m->rank, heads, !rm_lora_base_pairs(base));
                }
                rm_convert(m->type, packed, RM_TYPE_F32, copy, (int64_t)n); /* back to the adapter's type */
                rm_free(copy);
                B = packed;
            }
            char name[96];
            int64_t na[2] = {din, m->rank}, nb[2] = {m->rank, dout};
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, rm_target_gguf_name((rm_target)k));
            T(rm_gguf_writer_add(w, name, m->type, 2, na, m->A));
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, rm_target_gguf_name((rm_target)k));
            T(rm_gguf_writer_add(w, name, m->type, 2, nb, B));
        }
    st = rm_gguf_writer_write(w, path);
#undef T
done:
    rm_gguf_writer_free(w);
    for (size_t i = 0; i < nmod; i++) rm_free(owned[i]);
    rm_free(owned);
    rm_free(tmp);
    return st;
}
