/*
 * adapter.c — LoRA adapters in memory: building / checking / freeing
 * adapters, random adapters, and the format dispatch of rm_adapter_load.
 * (Targets and the base fingerprint belong to the model: model/targets.c.)
 *
 * Memory: an adapter is one struct, one array of n_layers x RM_TARGET_COUNT
 * modules, and two blocks (A, B) per adapted module. Modules are allocated
 * only once their rank is known and are zero-filled; a loader that fails
 * frees the whole adapter with rm_adapter_free, which accepts adapters in
 * any state of construction.
 */
#include "lora/adapter_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"

const char *rm_lora_gguf_arch(const rm_model *base) {
    return base->cfg.arch == RM_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* ---- a router's gate pooling ------------------------------------------------------------ */

static const char *const gate_pool_names[] = {"token", "prompt"};

const char *rm_gate_pool_name(rm_gate_pool p) {
    return (unsigned)p <= RM_GATE_POOL_PROMPT ? gate_pool_names[p] : "?";
}

bool rm_gate_pool_from_name(const char *s, rm_gate_pool *out) {
    for (int p = RM_GATE_POOL_TOKEN; p <= RM_GATE_POOL_PROMPT; p++)
        if (!strcmp(s, gate_pool_names[p])) {
            *out = (rm_gate_pool)p;
            return true;
        }
    return false;
}

rm_status rm_gate_pool_parse(const char *origin, const char *value, rm_gate_pool *out) {
    *out = RM_GATE_POOL_TOKEN;
    if (!value || rm_gate_pool_from_name(value, out)) return RAMOLE_OK; /* absent: the paper's per-token routing */
    return rm_err(RAMOLE_ERR_FORMAT, "adapter %s: %s \"%.40s\" is not a gate pooling (\"token\" or \"prompt\")",
                  origin, RM_GATE_POOL_KEY, value);
}

/* ---- a router's retrieval prior ----------------------------------------------------------- */

rm_status rm_retrieval_prior_parse(const char *origin, const char *value, float *out) {
    *out = 0;
    if (!value) return RAMOLE_OK; /* absent: the paper's router, no prior */
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end || errno || !rm_retrieval_prior_ok(v))
        return rm_err(RAMOLE_ERR_FORMAT, "adapter %s: %s \"%.40s\" is not a retrieval prior (a number from 0 to %g)",
                      origin, RM_RETRIEVAL_PRIOR_KEY, value, RM_RETRIEVAL_PRIOR_MAX);
    *out = (float)v;
    return RAMOLE_OK;
}

void rm_retrieval_prior_format(float lambda, char buf[32]) { snprintf(buf, 32, "%.9g", (double)lambda); }

/* ---- building ------------------------------------------------------------------ */

float rm_lora_scale(double alpha, int rank, bool rslora) {
    if (rank <= 0) return 0.0f;
    return (float)(alpha / (rslora ? sqrt((double)rank) : (double)rank));
}

int rm_lora_perm_heads(const rm_model *base, rm_target t) {
    if (t == RM_TARGET_Q) return base->cfg.n_heads;
    if (t == RM_TARGET_K) return base->cfg.n_kv_heads;
    return 0;
}

void rm_lora_permute_rows(float *B, float *tmp, int64_t dout, int rank, int n_heads, bool to_pairs) {
    int64_t hd = dout / n_heads, half = hd / 2;
    size_t rb = (size_t)rank * sizeof(float);
    for (int h = 0; h < n_heads; h++)
        for (int64_t i = 0; i < half; i++)
            for (int j = 0; j < 2; j++) {
                int64_t hf = h * hd + j * half + i, pairs = h * hd + 2 * i + j;
                int64_t d = to_pairs ? pairs : hf, s = to_pairs ? hf : pairs;
                memcpy(tmp + d * rank, B + s * rank, rb);
            }
    memcpy(B, tmp, (size_t)dout * rb);
}

static char *name_from_path(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    return rm_strndup(path + b, n - b);
}

rm_status rm_adapter_alloc(const rm_model *base, const char *path, rm_adapter **out) {
    *out = NULL;
    rm_adapter *a = rm_calloc(1, sizeof *a);
    if (!a) return rm_err(RAMOLE_ERR_NOMEM, "out of memory for an adapter");
    a->n_layers = base->cfg.n_layers;
    a->mods = rm_calloc((size_t)a->n_layers * RM_TARGET_COUNT, sizeof *a->mods);
    a->path = rm_strdup(path ? path : "adapter");
    a->name = a->path ? name_from_path(a->path) : NULL;
    a->base_fingerprint = rm_model_fingerprint(base);
    if (!a->mods || !a->path || !a->name) {
        rm_adapter_free(a);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory for an adapter");
    }
    *out = a;
    return RAMOLE_OK;
}

/* Free one module array: those inside the arena go with it. */
static void array_free(const rm_adapter *a, void *p) {
    const char *c = p, *lo = a->arena;
    if (lo && c >= lo && c < lo + a->arena_bytes) return;
    rm_free(p);
}

#define ARENA_ALIGN 64 /* each array starts on a cache line */

/* Bytes n elements of `type` take in a block, up to the next array. */
static size_t span(rm_type type, int64_t n) {
    return (rm_type_row_bytes(type, n) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

/* Bytes of module (t, rank)'s A and B as `type` in a block. */
static size_t module_span(const rm_model *base, rm_target t, int rank, rm_type type) {
    int64_t din, dout;
    rm_target_dims(&base->cfg, t, &din, &dout);
    return span(type, din * rank) + span(type, dout * rank);
}

size_t rm_adapter_module_bytes(const rm_model *base, rm_target t, int rank) {
    return module_span(base, t, rank, RM_TYPE_F32);
}

rm_status rm_adapter_reserve(rm_adapter *a, size_t bytes) {
    if (a->arena) return RAMOLE_OK; /* once, before any module */
    if (!bytes) return RAMOLE_OK;
    if (!(a->arena = rm_calloc(1, bytes)))
        return rm_err(RAMOLE_ERR_NOMEM, "adapter %s: out of memory for %zu bytes of modules", a->path, bytes);
    a->arena_bytes = bytes;
    a->arena_used = 0;
    return RAMOLE_OK;
}

/* n zeroed floats: from the reserved block while it lasts, else their own. */
static float *module_array(rm_adapter *a, size_t n) {
    size_t need = span(RM_TYPE_F32, (int64_t)n);
    if (a->arena && a->arena_used + need <= a->arena_bytes) {
        float *p = (float *)((char *)a->arena + a->arena_used);
        a->arena_used += need;
        return p;
    }
    return rm_calloc(n, sizeof(float));
}

rm_status rm_adapter_module_alloc(rm_adapter *a, const rm_model *base, int layer, rm_target t, int rank,
                                  float scale) {
    int64_t din, dout;
    rm_target_dims(&base->cfg, t, &din, &dout);
    rm_lora_module *m = rm_adapter_mod(a, layer, t);
    array_free(a, m->A);
    array_free(a, m->B);
    m->A = module_array(a, (size_t)rank * (size_t)din);
    m->B = module_array(a, (size_t)dout * (size_t)rank);
    if (!m->A || !m->B) {
        array_free(a, m->A);
        array_free(a, m->B);
        memset(m, 0, sizeof *m);
        return rm_err(RAMOLE_ERR_NOMEM, "adapter %s: out of memory for layer %d %s (rank %d)", a->path, layer,
                      rm_target_hf_name(t), rank);
    }
    m->rank = rank;
    m->scale = scale;
    m->type = RM_TYPE_F32;
    return RAMOLE_OK;
}

void rm_lora_module_get(const rm_lora_module *m, const rm_model_config *c, rm_target t, bool b, float *dst) {
    int64_t din, dout;
    rm_target_dims(c, t, &din, &dout);
    rm_convert(RM_TYPE_F32, dst, m->type, b ? m->B : m->A, (b ? dout : din) * m->rank);
}

/* dst = n f32 values as `type`; fails if a value does not fit the type. */
static rm_status convert_values(const rm_adapter *a, int layer, rm_target t, const float *src, size_t n,
                                rm_type type, void *dst) {
    rm_convert(type, dst, RM_TYPE_F32, src, (int64_t)n);
    if (type == RM_TYPE_F16) {
        /* an f16 with every exponent bit set is inf or NaN: a value too large
         * (the bits tested rather than widened: this runs on every load) */
        const uint16_t *h = dst;
        unsigned bad = 0;
        for (size_t i = 0; i < n; i++) bad |= (h[i] & 0x7c00u) == 0x7c00u;
        for (size_t i = 0; bad && i < n; i++)
            if ((h[i] & 0x7c00u) == 0x7c00u)
                return rm_err(RAMOLE_ERR_RANGE, "adapter %s: layer %d %s: value %g at index %zu does not fit in f16",
                              a->path, layer, rm_target_hf_name(t), (double)src[i], i);
    }
    return RAMOLE_OK;
}

/*
 * The converted arrays go into one block: an adapter the engine loads is
 * 300-odd arrays, and one large block is mapped in huge pages (rm_malloc)
 * where separate ones would fault in a 4 KB page at a time.
 */
rm_status rm_adapter_convert(rm_adapter *a, const rm_model *base, rm_type type) {
    if (type != RM_TYPE_F32 && type != RM_TYPE_F16 && type != RM_TYPE_BF16)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "adapter %s: cannot store adapters as %s (f32, f16 or bf16)", a->path,
                      (unsigned)type < RM_TYPE_COUNT ? rm_type_name(type) : "?");
    RM_TRY(rm_adapter_check(a, base));
    size_t nm = (size_t)a->n_layers * RM_TARGET_COUNT, total = 0, big = 0;
    bool any = false;
    for (size_t i = 0; i < nm; i++) {
        const rm_lora_module *m = &a->mods[i];
        if (m->rank <= 0) continue;
        int64_t din, dout;
        rm_target_dims(&base->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
        total += module_span(base, (rm_target)(i % RM_TARGET_COUNT), m->rank, type);
        size_t most = (size_t)(din > dout ? din : dout) * (size_t)m->rank;
        if (m->type != RM_TYPE_F32 && most > big) big = most;
        any |= m->type != type;
    }
    if (!any) return RAMOLE_OK;
    /* every array is written before any is replaced: failure leaves a as it was */
    uint8_t *arena = rm_malloc(total);
    float *tmp = big ? rm_malloc(big * sizeof *tmp) : NULL;
    if (!arena || (big && !tmp)) {
        rm_free(arena), rm_free(tmp);
        return rm_err(RAMOLE_ERR_NOMEM, "adapter %s: out of memory converting to %s", a->path, rm_type_name(type));
    }
    rm_status st = RAMOLE_OK;
    size_t off = 0;
    for (size_t i = 0; i < nm && st == RAMOLE_OK; i++) {
        const rm_lora_module *m = &a->mods[i];
        if (m->rank <= 0) continue;
        rm_target t = (rm_target)(i % RM_TARGET_COUNT);
        int64_t din, dout;
        rm_target_dims(&base->cfg, t, &din, &dout);
        for (int b = 0; b < 2 && st == RAMOLE_OK; b++) {
            size_t n = (size_t)(b ? dout : din) * (size_t)m->rank;
            const void *from = b ? m->B : m->A;
            void *dst = arena + off;
            off += span(type, (int64_t)n);
            if (m->type == type) {
                memcpy(dst, from, rm_type_row_bytes(type, (int64_t)n));
                continue;
            }
            const float *src = m->type == RM_TYPE_F32 ? from : tmp; /* f32 read in place */
            if (src == tmp) rm_lora_module_get(m, &base->cfg, t, b, tmp);
            st = convert_values(a, (int)(i / RM_TARGET_COUNT), t, src, n, type, dst);
        }
    }
    rm_free(tmp);
    if (st != RAMOLE_OK) {
        rm_free(arena);
        return st;
    }
    off = 0;
    for (size_t i = 0; i < nm; i++) {
        rm_lora_module *m = &a->mods[i];
        if (m->rank <= 0) continue;
        int64_t din, dout;
        rm_target_dims(&base->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
        array_free(a, m->A);
        array_free(a, m->B);
        m->A = arena + off; /* the layout the conversion wrote */
        m->B = arena + off + span(type, din * m->rank);
        off += module_span(base, (rm_target)(i % RM_TARGET_COUNT), m->rank, type);
        m->type = type;
    }
    rm_free(a->arena);
    a->arena = arena;
    a->arena_bytes = a->arena_used = total;
    a->type = type;
    return RAMOLE_OK;
}

size_t rm_adapter_bytes(const rm_adapter *a, const rm_model *base) {
    size_t total = 0;
    for (size_t i = 0; i < (size_t)a->n_layers * RM_TARGET_COUNT; i++) {
        const rm_lora_module *m = &a->mods[i];
        if (m->rank <= 0) continue;
        int64_t din, dout;
        rm_target_dims(&base->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
        total += rm_type_row_bytes(m->type, (din + dout) * m->rank);
    }
    return total;
}

void rm_adapter_update_summary(rm_adapter *a) {
    a->target_mask = 0;
    a->max_rank = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            if (m->rank <= 0) continue;
            a->target_mask |= 1u << t;
            if (m->rank > a->max_rank) a->max_rank = m->rank;
        }
}

void rm_adapter_free(rm_adapter *a) {
    if (!a) return;
    if (a->mods)
        for (size_t i = 0; i < (size_t)a->n_layers * RM_TARGET_COUNT; i++) {
            array_free(a, a->mods[i].A);
            array_free(a, a->mods[i].B);
        }
    rm_free(a->arena);
    rm_free(a->mods);
    rm_free(a->name);
    rm_free(a->path);
    rm_free(a);
}

rm_status rm_adapter_check(const rm_adapter *a, const rm_model *base) {
    const char *p = a->path ? a->path : "(unnamed)";
    if (a->base_fingerprint != rm_model_fingerprint(base))
        return rm_err(RAMOLE_ERR_MISMATCH,
                      "adapter %s was made for another base model (fingerprint %016llx, base %s has %016llx)", p,
                      (unsigned long long)a->base_fingerprint, base->path ? base->path : "?",
                      (unsigned long long)rm_model_fingerprint(base));
    if (a->n_layers != base->cfg.n_layers || !a->mods)
        return rm_err(RAMOLE_ERR_MISMATCH, "adapter %s has %d layers, the base has %d", p, a->n_layers,
                      base->cfg.n_layers);
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            if (m->rank == 0) continue;
            if (m->rank < 0 || m->rank > RM_LORA_MAX_RANK)
                return rm_err(RAMOLE_ERR_RANGE, "adapter %s: layer %d %s has rank %d (allowed 1..%d)", p, l,
                              rm_target_hf_name((rm_target)t), m->rank, RM_LORA_MAX_RANK);
            if (!m->A || !m->B)
                return rm_err(RAMOLE_ERR_INVALID, "adapter %s: layer %d %s has no %s matrix", p, l,
                              rm_target_hf_name((rm_target)t), m->A ? "B" : "A");
            if (!isfinite(m->scale))
                return rm_err(RAMOLE_ERR_RANGE, "adapter %s: layer %d %s has scale %g", p, l,
                              rm_target_hf_name((rm_target)t), (double)m->scale);
        }
    return RAMOLE_OK;
}

/* ---- reading tensors --------------------------------------------------------------- */

static float elem_f32(const void *src, rm_type type, size_t i) {
    const uint8_t *p = src;
    switch (type) {
    case RM_TYPE_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case RM_TYPE_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return rm_f16_to_f32(h);
    }
    case RM_TYPE_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return rm_bf16_to_f32(h);
    }
    default: return NAN;
    }
}

rm_status rm_lora_read_f32(float *dst, const void *src, rm_type type, int64_t rows, int64_t cols,
                           bool transpose, const char *origin, const char *name) {
    if (type != RM_TYPE_F32 && type != RM_TYPE_F16 && type != RM_TYPE_BF16)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "adapter %s: tensor %s has type %s (supported: f32, f16, bf16)",
                      origin, name, (unsigned)type < RM_TYPE_COUNT ? rm_type_name(type) : "unknown");
    /* file layout: [rows][cols], or [cols][rows] when transposed */
    int64_t frows = transpose ? cols : rows, fcols = transpose ? rows : cols;
    size_t n = (size_t)rows * (size_t)cols;
    if (!transpose) { /* the common case, vectorised: convert, then test the exponent bits */
        rm_convert(RM_TYPE_F32, dst, type, src, (int64_t)n);
        const uint32_t *u = (const uint32_t *)dst;
        unsigned bad = 0;
        for (size_t i = 0; i < n; i++) bad |= (u[i] & 0x7f800000u) == 0x7f800000u;
        if (!bad) return RAMOLE_OK;
    }
    for (size_t i = 0; i < n; i++) {
        float v = transpose ? elem_f32(src, type, i) : dst[i];
        if (!isfinite(v))
            return rm_err(RAMOLE_ERR_FORMAT,
                          "adapter %s: tensor %s: value %g at index %zu (row %lld, column %lld) is not finite", origin,
                          name, (double)v, i, (long long)(i / (size_t)fcols), (long long)(i % (size_t)fcols));
        if (transpose) dst[(i % (size_t)fcols) * (size_t)frows + i / (size_t)fcols] = v; /* dst[c][r] */
    }
    return RAMOLE_OK;
}

/* ---- random adapters ------------------------------------------------------------------ */

rm_status rm_adapter_random(const rm_model *base, int rank, float alpha, unsigned target_mask, uint64_t seed,
                            float std, rm_adapter **out) {
    *out = NULL;
    if (rank < 1 || rank > RM_LORA_MAX_RANK)
        return rm_err(RAMOLE_ERR_RANGE, "random adapter: rank %d out of range 1..%d", rank, RM_LORA_MAX_RANK);
    if (target_mask == 0 || (target_mask >> RM_TARGET_COUNT) != 0)
        return rm_err(RAMOLE_ERR_INVALID, "random adapter: target mask 0x%x names no valid target", target_mask);
    if (!isfinite(alpha) || !isfinite(std))
        return rm_err(RAMOLE_ERR_INVALID, "random adapter: alpha and std must be finite");
    rm_adapter *a = NULL;
    RM_TRY(rm_adapter_alloc(base, "random", &a));
    a->alpha = alpha;
    a->rank = rank;
    a->rslora = false;
    rm_status st = RAMOLE_OK;
    float *tmp = NULL;
    uint64_t s = seed;
    bool pairs = rm_lora_base_pairs(base);
    for (int l = 0; l < a->n_layers && st == RAMOLE_OK; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            if (!(target_mask & (1u << t))) continue;
            if ((st = rm_adapter_module_alloc(a, base, l, (rm_target)t, rank, rm_lora_scale(alpha, rank, false))) !=
                RAMOLE_OK)
                break;
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)t, &din, &dout);
            rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            rm_rng_fill_uniform(m->A, (size_t)rank * (size_t)din, std, &s);
            rm_rng_fill_uniform(m->B, (size_t)dout * (size_t)rank, std, &s);
            int heads = rm_lora_perm_heads(base, (rm_target)t);
            if (pairs && heads) {
                if (!tmp && !(tmp = rm_malloc((size_t)base->cfg.n_heads * base->cfg.head_dim * rank * sizeof *tmp))) {
                    st = rm_err(RAMOLE_ERR_NOMEM, "random adapter: out of memory");
                    break;
                }
                rm_lora_permute_rows(m->B, tmp, dout, rank, heads, true);
            }
        }
    rm_free(tmp);
    if (st != RAMOLE_OK) {
        rm_adapter_free(a);
        return st;
    }
    rm_adapter_update_summary(a);
    *out = a;
    return RAMOLE_OK;
}

void rm_adapter_drop_module(rm_adapter *a, int layer, rm_target t) {
    rm_lora_module *m = rm_adapter_mod(a, layer, t);
    array_free(a, m->A);
    array_free(a, m->B);
    memset(m, 0, sizeof *m);
    rm_adapter_update_summary(a);
}

/* ---- loading: format dispatch -------------------------------------------------------------- */

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* A path that names a PEFT folder's own files stands for the folder. */
static bool names_peft_file(const char *path) {
    return has_suffix(path, "/adapter_config.json") || has_suffix(path, "/adapter_model.safetensors") ||
           !strcmp(path, "adapter_config.json") || !strcmp(path, "adapter_model.safetensors");
}

static bool is_gguf_adapter(const char *path) {
    rm_gguf *g = NULL;
    if (rm_gguf_open(path, &g) != RAMOLE_OK) return false;
    const char *s;
    size_t n;
    bool yes = rm_gguf_get_str(g, "general.type", &s, &n) == RAMOLE_OK && n == 7 && !memcmp(s, "adapter", 7);
    rm_gguf_free(g);
    return yes;
}

rm_status rm_adapter_format_of(const char *path, rm_adapter_format *fmt) {
    *fmt = RM_ADAPTER_FORMAT_NONE;
    if (!path || !*path) return rm_err(RAMOLE_ERR_INVALID, "adapter path is empty");
    if (rm_dir_exists(path)) {
        char *cfg = rm_path_join(path, "adapter_config.json");
        if (!cfg) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        if (rm_file_exists(cfg)) *fmt = RM_ADAPTER_FORMAT_PEFT;
        rm_free(cfg);
        return RAMOLE_OK;
    }
    if (!rm_file_exists(path)) return rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %s: no such file or folder", path);
    if (names_peft_file(path)) *fmt = RM_ADAPTER_FORMAT_PEFT;
    else if (is_gguf_adapter(path)) *fmt = RM_ADAPTER_FORMAT_GGUF;
    return RAMOLE_OK;
}

rm_status rm_adapter_load(const rm_model *base, const char *path, rm_adapter **out) {
    *out = NULL;
    rm_adapter_format fmt;
    RM_TRY(rm_adapter_format_of(path, &fmt));
    bool dir = rm_dir_exists(path);
    /* NONE: the loader of the layout's kind names what is wrong */
    if (fmt == RM_ADAPTER_FORMAT_GGUF || (fmt == RM_ADAPTER_FORMAT_NONE && !dir)) return rm_adapter_load_gguf(base, path, out);
    if (dir) return rm_adapter_load_peft(base, path, out);
    const char *slash = strrchr(path, '/');
    char *folder = slash ? rm_strndup(path, (size_t)(slash - path)) : rm_strdup(".");
    if (!folder) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_adapter_load_peft(base, folder, out);
    rm_free(folder);
    return st;
}
