/*
 * test_adapter.c — LoRA adapter files and merging: PEFT and GGUF round
 * trips (bit-exact), HF vs GGUF bases (Q/K row order), PEFT's config rules
 * (rank_pattern, alpha_pattern, target_modules regex, layers_to_transform,
 * fan_in_fan_out), merge, and one bad input per failure, each of which must
 * name the adapter, the tensor or key and the reason and leave nothing
 * allocated.
 *
 * PEFT fixtures are written at test time into rm_test_tmp_dir() with
 * rm_st_writer and a JSON string.
 */
#include "test.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "lora/adapter.h"
#include "model/model.h"

/* ---- helpers ---------------------------------------------------------------------- */

static rm_model_config tiny_config(rm_arch arch) {
    rm_model_config c;
    rm_model_config_defaults(&c, arch);
    c.vocab_size = 96;
    c.hidden = 64;
    c.ffn = 96;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = arch == RM_ARCH_MISTRAL ? 1 : 2;
    c.head_dim = 16;
    c.rope.n_rot = 16;
    c.max_pos = 128;
    c.tied_embeddings = arch == RM_ARCH_QWEN2;
    return c;
}

static char *tmp_path(const char *name) { return rm_path_join(rm_test_tmp_dir(), name); }

/* A random base in memory (HF order) and, when wanted, the same model
 * opened from a GGUF file (llama/mistral: permuted Q/K rows). */
typedef struct {
    rm_model *hf, *gg;
} bases;

static bases make_bases(rm_arch arch, uint64_t seed, bool want_gguf) {
    bases b = {0};
    rm_model_config c = tiny_config(arch);
    CHECK_OK(rm_model_random(&c, seed, 0.1f, &b.hf));
    if (want_gguf && b.hf) {
        char name[64];
        snprintf(name, sizeof name, "adapter_base_%s.gguf", rm_arch_name(arch));
        char *p = tmp_path(name);
        CHECK_OK(rm_model_save(b.hf, RM_SOURCE_GGUF, -1, p));
        CHECK_OK(rm_model_open(p, &b.gg));
        rm_free(p);
    }
    return b;
}

static void free_bases(bases *b) {
    rm_model_free(b->hf);
    rm_model_free(b->gg);
}

static const int32_t prompt[10] = {1, 17, 5, 90, 33, 2, 64, 7, 81, 40};

/* Logits of every position of the first n prompt tokens, one thread. */
static float *logits_all(const rm_model *m, int n) { return rm_test_logits_all(m, prompt, n, 1); }
/* Logits of base merged with adapter a (weight w); NULL on failure. */
static float *merged_logits(const rm_model *base, rm_adapter *a, float w) {
    rm_model *m = NULL;
    float *out = NULL;
    if (rm_model_merge(base, &a, &w, 1, &m) == RAMOLE_OK) out = logits_all(m, 10);
    rm_model_free(m);
    return out;
}

/* Every module equal bit for bit; reports the first difference. */
static bool adapters_equal(const rm_adapter *x, const rm_adapter *y, const rm_model *base) {
    if (!x || !y || x->n_layers != y->n_layers) return false;
    for (int l = 0; l < x->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *a = rm_adapter_mod(x, l, (rm_target)t), *b = rm_adapter_mod(y, l, (rm_target)t);
            if (a->rank != b->rank || memcmp(&a->scale, &b->scale, sizeof a->scale)) {
                printf("  layer %d %s: rank %d/%d scale %g/%g\n", l, rm_target_hf_name((rm_target)t), a->rank,
                       b->rank, (double)a->scale, (double)b->scale);
                return false;
            }
            if (!a->rank) continue;
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)t, &din, &dout);
            if (memcmp(a->A, b->A, (size_t)(a->rank * din) * sizeof(float)) ||
                memcmp(a->B, b->B, (size_t)(a->rank * dout) * sizeof(float))) {
                printf("  layer %d %s: values differ\n", l, rm_target_hf_name((rm_target)t));
                return false;
            }
        }
    return true;
}

static bool msg_has(const char *s) {
    bool ok = strstr(ramole_last_error(), s) != NULL;
    if (!ok) printf("  message \"%s\" lacks \"%s\"\n", ramole_last_error(), s);
    return ok;
}

/* ---- PEFT fixtures ----------------------------------------------------------------- */

#define FX_MAX 64
typedef struct {
    char name[FX_MAX][160];
    rm_type type[FX_MAX];
    int64_t shape[FX_MAX][2];
    void *data[FX_MAX];
    int n;
    uint64_t rng;
} fixture;

static float fx_rand(fixture *f) {
    f->rng = f->rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((float)(f->rng >> 40) / 16777216.0f - 0.5f) * 0.2f;
}

/* Add a tensor of rows x cols random values (in the given type). */
static int fx_add(fixture *f, const char *name, rm_type type, int64_t rows, int64_t cols) {
    int i = f->n++;
    snprintf(f->name[i], sizeof f->name[i], "%s", name);
    f->type[i] = type;
    f->shape[i][0] = rows;
    f->shape[i][1] = cols;
    size_t n = (size_t)(rows * cols);
    float *v = malloc(n * sizeof *v + 4);
    for (size_t k = 0; k < n; k++) v[k] = fx_rand(f);
    if (type == RM_TYPE_F32) {
        f->data[i] = v;
    } else {
        f->data[i] = malloc(n * 2 + 4);
        rm_convert(type, f->data[i], RM_TYPE_F32, v, (int64_t)n);
        free(v);
    }
    return i;
}

static void peft_name(char *buf, size_t n, int layer, rm_target t, char ab) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             t <= RM_TARGET_O ? "self_attn" : "mlp", rm_target_hf_name(t), ab);
}

/* lora_A and lora_B of one module (transposed: fan_in_fan_out layout). */
static void fx_module(fixture *f, const rm_model_config *c, int layer, rm_target t, int rank, rm_type type,
                      bool transposed) {
    int64_t din, dout;
    rm_target_dims(c, t, &din, &dout);
    char name[160];
    peft_name(name, sizeof name, layer, t, 'A');
    if (transposed) fx_add(f, name, type, din, rank);
    else fx_add(f, name, type, rank, din);
    peft_name(name, sizeof name, layer, t, 'B');
    if (transposed) fx_add(f, name, type, rank, dout);
    else fx_add(f, name, type, dout, rank);
}

static void fx_free(fixture *f) {
    for (int i = 0; i < f->n; i++) free(f->data[i]);
    f->n = 0;
}

/* Write dir/adapter_config.json (json) and dir/adapter_model.safetensors. */
static void fx_write(const char *dir, const char *json, const fixture *f) {
    mkdir(dir, 0755);
    char *cp = rm_path_join(dir, "adapter_config.json"), *sp = rm_path_join(dir, "adapter_model.safetensors");
    CHECK_OK(rm_file_write_atomic(cp, json, strlen(json)));
    rm_st_writer *w = NULL;
    CHECK_OK(rm_st_writer_new(&w));
    for (int i = 0; i < f->n; i++) CHECK_OK(rm_st_writer_add(w, f->name[i], f->type[i], 2, f->shape[i], f->data[i]));
    CHECK_OK(rm_st_writer_write(w, sp));
    rm_st_writer_free(w);
    rm_free(cp);
    rm_free(sp);
}

#define CFG(extra)                                                                                       \
    "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"bias\": \"none\", \"use_rslora\": false, " \
    "\"modules_to_save\": null, \"use_dora\": false, \"fan_in_fan_out\": false" extra "}"

/* A plain fixture: q,k,v,o,gate,up,down of every layer, rank 4. */
static void fx_all(fixture *f, const rm_model_config *c, rm_type type) {
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) fx_module(f, c, l, (rm_target)t, 4, type, false);
}
#define ALL_TARGETS \
    ", \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]"

/* Load dir against base expecting status st and a message holding `want`;
 * nothing may stay allocated. */
static void expect_fail(const rm_model *base, const char *path, rm_status st, const char *want1, const char *want2,
                        int line) {
    size_t live = rm_alloc_live_bytes();
    rm_adapter *a = (rm_adapter *)1;
    rm_status got = rm_adapter_load(base, path, &a);
    if (got != st)
        rm_test_fail(__FILE__, line, "load %s -> %s (want %s): %s", path, ramole_status_str(got),
                     ramole_status_str(st), ramole_last_error());
    if (a) rm_test_fail(__FILE__, line, "failed load left *out non-NULL");
    if (got != RAMOLE_OK) {
        if (want1 && !msg_has(want1)) rm_test_fail(__FILE__, line, "message lacks \"%s\"", want1);
        if (want2 && !msg_has(want2)) rm_test_fail(__FILE__, line, "message lacks \"%s\"", want2);
        if (!msg_has(path)) rm_test_fail(__FILE__, line, "message does not name the adapter");
    } else {
        rm_adapter_free(a);
    }
    if (rm_alloc_live_bytes() != live)
        rm_test_fail(__FILE__, line, "failed load leaked %zd bytes", (ssize_t)(rm_alloc_live_bytes() - live));
}
#define EXPECT_FAIL(base, path, st, w1, w2) expect_fail(base, path, st, w1, w2, __LINE__)

/* ---- tests --------------------------------------------------------------------------- */

TEST(adapter_targets_and_fingerprint) {
    rm_target t;
    CHECK(rm_target_from_name("q", &t) && t == RM_TARGET_Q);
    CHECK(rm_target_from_name("down_proj", &t) && t == RM_TARGET_DOWN);
    CHECK(rm_target_from_name("attn_output", &t) && t == RM_TARGET_O);
    CHECK(!rm_target_from_name("lm_head", &t));
    CHECK(!strcmp(rm_target_gguf_name(RM_TARGET_GATE), "ffn_gate"));
    rm_model_config c = tiny_config(RM_ARCH_MISTRAL);
    int64_t din, dout;
    rm_target_dims(&c, RM_TARGET_K, &din, &dout);
    CHECK(din == 64 && dout == 16);
    rm_target_dims(&c, RM_TARGET_DOWN, &din, &dout);
    CHECK(din == 96 && dout == 64);
    /* the same base as HF and as GGUF: one fingerprint; other shapes or families: another */
    for (int arch = 0; arch < RM_ARCH_COUNT; arch++) {
        bases b = make_bases((rm_arch)arch, 1, true);
        if (b.hf && b.gg) CHECK(rm_model_fingerprint(b.hf) == rm_model_fingerprint(b.gg));
        free_bases(&b);
    }
    rm_model_config c1 = tiny_config(RM_ARCH_LLAMA), c2 = c1, c3 = c1;
    c2.ffn = 128;
    c3.arch = RM_ARCH_QWEN2;
    rm_model *m1 = NULL, *m2 = NULL, *m3 = NULL;
    CHECK_OK(rm_model_random(&c1, 1, 0.1f, &m1));
    CHECK_OK(rm_model_random(&c2, 1, 0.1f, &m2));
    CHECK_OK(rm_model_random(&c3, 1, 0.1f, &m3));
    if (m1 && m2 && m3) {
        CHECK(rm_model_fingerprint(m1) != rm_model_fingerprint(m2));
        CHECK(rm_model_fingerprint(m1) != rm_model_fingerprint(m3));
    }
    rm_model_free(m1), rm_model_free(m2), rm_model_free(m3);
}

TEST(adapter_random_is_deterministic_and_row_ordered) {
    bases b = make_bases(RM_ARCH_LLAMA, 2, true);
    if (!b.hf || !b.gg) goto out;
    rm_adapter *x = NULL, *y = NULL, *z = NULL;
    CHECK_OK(rm_adapter_random(b.hf, 4, 8, 0x7f, 5, 0.05f, &x));
    CHECK_OK(rm_adapter_random(b.hf, 4, 8, 0x7f, 5, 0.05f, &y));
    CHECK_OK(rm_adapter_random(b.gg, 4, 8, 0x7f, 5, 0.05f, &z));
    CHECK(adapters_equal(x, y, b.hf));
    if (x && z) {
        CHECK(x->target_mask == 0x7f && x->max_rank == 4 && x->rank == 4);
        CHECK(rm_adapter_mod(x, 1, RM_TARGET_UP)->scale == 2.0f);
        /* V is never permuted, Q is: row 1 of a GGUF base's head 0 is HF row 8 */
        const rm_lora_module *qx = rm_adapter_mod(x, 0, RM_TARGET_Q), *qz = rm_adapter_mod(z, 0, RM_TARGET_Q);
        CHECK(!memcmp(qx->A, qz->A, 4 * 64 * sizeof(float)));
        CHECK(!memcmp((float *)qz->B + 1 * 4, (float *)qx->B + 8 * 4, 4 * sizeof(float)));
        CHECK(!memcmp((float *)qz->B + 2 * 4, (float *)qx->B + 1 * 4, 4 * sizeof(float)));
        CHECK(!memcmp(rm_adapter_mod(x, 0, RM_TARGET_V)->B, rm_adapter_mod(z, 0, RM_TARGET_V)->B,
                      32 * 4 * sizeof(float)));
    }
    rm_adapter_free(x), rm_adapter_free(y), rm_adapter_free(z);
    CHECK_ERR(rm_adapter_random(b.hf, 0, 8, 1, 1, 0.1f, &x), RAMOLE_ERR_RANGE);
    CHECK_ERR(rm_adapter_random(b.hf, 1025, 8, 1, 1, 0.1f, &x), RAMOLE_ERR_RANGE);
out:
    free_bases(&b);
}

/* Save/load PEFT and GGUF for every family, on an HF base and a GGUF base:
 * PEFT -> GGUF -> PEFT keeps every value, and PEFT and GGUF give the same
 * adapter in memory. */
/* a saved as PEFT folder d1 and loaded (p1), that saved as GGUF file g and
 * loaded (g1), that saved as PEFT folder d2 and loaded (p2). */
static void round_trip(const rm_model *base, const rm_adapter *a, const char *d1, const char *g, const char *d2,
                       rm_adapter **p1, rm_adapter **g1, rm_adapter **p2) {
    CHECK_OK(rm_adapter_save_peft(a, base, d1));
    CHECK_OK(rm_adapter_load(base, d1, p1));
    if (*p1) CHECK_OK(rm_adapter_save_gguf(*p1, base, g));
    CHECK_OK(rm_adapter_load(base, g, g1));
    if (*g1) CHECK_OK(rm_adapter_save_peft(*g1, base, d2));
    CHECK_OK(rm_adapter_load(base, d2, p2));
}

TEST(adapter_peft_gguf_round_trips_are_bit_exact) {
    for (int arch = 0; arch < RM_ARCH_COUNT; arch++) {
        bases b = make_bases((rm_arch)arch, 10 + arch, true);
        if (!b.hf || !b.gg) {
            free_bases(&b);
            continue;
        }
        const rm_model *bs[2] = {b.hf, b.gg};
        for (int k = 0; k < 2; k++) {
            const rm_model *base = bs[k];
            rm_adapter *orig = NULL, *p1 = NULL, *g1 = NULL, *p2 = NULL, *cross = NULL;
            CHECK_OK(rm_adapter_random(base, 3, 6, 0x7f, 100 + arch, 0.05f, &orig));
            char *d1 = tmp_path("adapter_rt_peft1"), *g = tmp_path("adapter_rt.gguf");
            char *d2 = tmp_path("adapter_rt_peft2");
            round_trip(base, orig, d1, g, d2, &p1, &g1, &p2);
            CHECK_MSG(adapters_equal(orig, p1, base), "%s base %d: PEFT round trip", rm_arch_name(arch), k);
            CHECK_MSG(adapters_equal(p1, g1, base), "%s base %d: PEFT vs GGUF", rm_arch_name(arch), k);
            CHECK_MSG(adapters_equal(orig, p2, base), "%s base %d: PEFT->GGUF->PEFT", rm_arch_name(arch), k);
            /* the file of one base loads on the other base in that base's order */
            const rm_model *other = bs[1 - k];
            CHECK_OK(rm_adapter_load(other, g, &cross));
            rm_adapter *ref = NULL;
            CHECK_OK(rm_adapter_random(other, 3, 6, 0x7f, 100 + arch, 0.05f, &ref));
            CHECK_MSG(adapters_equal(ref, cross, other), "%s base %d: GGUF file on the other base", rm_arch_name(arch),
                      k);
            if (g1 && p1) CHECK(!strcmp(g1->name, "adapter_rt.gguf") && !strcmp(p1->name, "adapter_rt_peft1"));
            rm_adapter_free(ref);
            rm_adapter_free(orig), rm_adapter_free(p1), rm_adapter_free(g1), rm_adapter_free(p2);
            rm_adapter_free(cross);
            rm_free(d1), rm_free(g), rm_free(d2);
        }
        free_bases(&b);
    }
}

/* One PEFT file against an HF base and a GGUF base of the same model: the
 * merged models give the same logits (B rows of q/k permuted correctly),
 * and those differ from the base's. Also: merge equals run-time math on
 * one weight, checked element by element. */
TEST(adapter_peft_on_hf_and_gguf_bases_gives_the_same_logits) {
    for (int arch = 0; arch < RM_ARCH_COUNT; arch++) {
        bases b = make_bases((rm_arch)arch, 20 + arch, true);
        if (!b.hf || !b.gg) {
            free_bases(&b);
            continue;
        }
        rm_model_config c = tiny_config((rm_arch)arch);
        fixture f = {.rng = 77 + arch};
        fx_all(&f, &c, RM_TYPE_F32);
        char *dir = tmp_path("adapter_peft_both");
        fx_write(dir, CFG(ALL_TARGETS), &f);
        fx_free(&f);
        rm_adapter *ah = NULL, *ag = NULL;
        CHECK_OK(rm_adapter_load(b.hf, dir, &ah));
        CHECK_OK(rm_adapter_load(b.gg, dir, &ag));
        if (ah && ag) {
            float *base_l = logits_all(b.hf, 10), *lh = merged_logits(b.hf, ah, 1.0f),
                  *lg = merged_logits(b.gg, ag, 1.0f);
            CHECK(base_l && lh && lg);
            if (base_l && lh && lg) {
                double d = rm_test_max_rel_diff(lh, lg, 10 * 96), e = rm_test_max_rel_diff(base_l, lh, 10 * 96);
                CHECK_MSG(d < 2e-5, "%s: HF base vs GGUF base after merge: %g", rm_arch_name(arch), d);
                CHECK_MSG(e > 1e-3, "%s: the adapter changes nothing (%g)", rm_arch_name(arch), e);
            }
            free(base_l), free(lh), free(lg);
            /* one merged weight against the definition */
            rm_model *m = NULL;
            float w = 0.5f;
            CHECK_OK(rm_model_merge(b.hf, &ah, &w, 1, &m));
            if (m) {
                const rm_lora_module *mod = rm_adapter_mod(ah, 1, RM_TARGET_K);
                const float *W0 = b.hf->layers[1].wk.data, *W1 = m->layers[1].wk.data;
                double worst = 0;
                int64_t din, dout;
                rm_target_dims(&c, RM_TARGET_K, &din, &dout);
                CHECK(din == 64);
                for (int i = 0; i < dout; i++)
                    for (int j = 0; j < 64; j++) {
                        double s = 0;
                        for (int r = 0; r < 4; r++) s += (double)rm_lora_elem(mod, mod->B, (size_t)(i * 4 + r)) * rm_lora_elem(mod, mod->A, (size_t)(r * 64 + j));
                        double want = W0[i * 64 + j] + 0.5 * mod->scale * s;
                        if (fabs(want - W1[i * 64 + j]) > worst) worst = fabs(want - W1[i * 64 + j]);
                    }
                CHECK_MSG(worst < 1e-6, "merged weight off by %g", worst);
                CHECK(m->cfg.tied_embeddings == b.hf->cfg.tied_embeddings);
                if (m->cfg.tied_embeddings) CHECK(m->output.data == m->tok_embd.data);
            }
            rm_model_free(m);
        }
        rm_adapter_free(ah), rm_adapter_free(ag);
        rm_free(dir);
        free_bases(&b);
    }
}

TEST(adapter_merge_zero_weight_is_the_base) {
    bases b = make_bases(RM_ARCH_LLAMA, 30, true);
    if (!b.hf || !b.gg) goto out;
    for (int k = 0; k < 2; k++) {
        const rm_model *base = k ? b.gg : b.hf;
        rm_adapter *a = NULL;
        CHECK_OK(rm_adapter_random(base, 4, 8, 0x7f, 3, 0.1f, &a));
        if (!a) continue;
        float *l0 = logits_all(base, 10), *lz = merged_logits(base, a, 0.0f), *l1 = merged_logits(base, a, 1.0f);
        rm_model *none = NULL;
        CHECK_OK(rm_model_merge(base, NULL, NULL, 0, &none));
        float *ln = none ? logits_all(none, 10) : NULL;
        CHECK(l0 && lz && l1 && ln);
        if (l0 && lz && l1 && ln) {
            CHECK_MSG(rm_test_max_rel_diff(l0, lz, 960) == 0, "weight 0: %g", rm_test_max_rel_diff(l0, lz, 960));
            CHECK(rm_test_max_rel_diff(l0, ln, 960) == 0);
            CHECK(rm_test_max_rel_diff(l0, l1, 960) > 1e-3);
        }
        free(l0), free(lz), free(l1), free(ln);
        rm_model_free(none);
        rm_adapter_free(a);
    }
    /* an adapter of another base is refused */
    rm_model_config c = tiny_config(RM_ARCH_QWEN2);
    rm_model *q = NULL, *m = NULL;
    rm_adapter *a = NULL;
    CHECK_OK(rm_model_random(&c, 1, 0.1f, &q));
    CHECK_OK(rm_adapter_random(q, 2, 2, 1, 1, 0.1f, &a));
    if (a) CHECK_ERR(rm_model_merge(b.hf, &a, NULL, 1, &m), RAMOLE_ERR_MISMATCH);
    CHECK(m == NULL);
    rm_adapter_free(a);
    rm_model_free(q);
out:
    free_bases(&b);
}

/* f16/bf16 tensors, fan_in_fan_out files (standard and transposed layouts)
 * and a path to the config file all load to the same adapter. */
TEST(adapter_peft_dtypes_and_fan_in_fan_out) {
    bases b = make_bases(RM_ARCH_LLAMA, 40, false);
    if (!b.hf) goto out;
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    const char *tm = ", \"target_modules\": [\"q_proj\", \"down_proj\"]";
    char cfg[512], cfg_fifo[512];
    snprintf(cfg, sizeof cfg, CFG("%s"), tm);
    snprintf(cfg_fifo, sizeof cfg_fifo,
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"fan_in_fan_out\": true%s}", tm);
    char *d_norm = tmp_path("adapter_fifo_norm"), *d_std = tmp_path("adapter_fifo_std");
    char *d_tr = tmp_path("adapter_fifo_tr");
    fixture f = {.rng = 5};
    for (int l = 0; l < 2; l++) {
        fx_module(&f, &c, l, RM_TARGET_Q, 4, RM_TYPE_F32, false);
        fx_module(&f, &c, l, RM_TARGET_DOWN, 4, RM_TYPE_F32, false);
    }
    fx_write(d_norm, cfg, &f);
    fx_write(d_std, cfg_fifo, &f);
    /* the same values stored transposed */
    fixture ft = f;
    for (int i = 0; i < f.n; i++) {
        int64_t R = f.shape[i][0], C = f.shape[i][1];
        float *src = f.data[i], *dst = malloc((size_t)(R * C) * sizeof *dst);
        for (int64_t r = 0; r < R; r++)
            for (int64_t k = 0; k < C; k++) dst[k * R + r] = src[r * C + k];
        ft.data[i] = dst;
        ft.shape[i][0] = C;
        ft.shape[i][1] = R;
    }
    fx_write(d_tr, cfg_fifo, &ft);
    fx_free(&ft);
    /* f16 and bf16 copies of the same values */
    char *d_16 = tmp_path("adapter_dtype_f16"), *d_b16 = tmp_path("adapter_dtype_bf16");
    fixture f16 = f, fb16 = f;
    for (int i = 0; i < f.n; i++) {
        size_t n = (size_t)(f.shape[i][0] * f.shape[i][1]);
        f16.type[i] = RM_TYPE_F16, fb16.type[i] = RM_TYPE_BF16;
        f16.data[i] = malloc(n * 2), fb16.data[i] = malloc(n * 2);
        rm_convert(RM_TYPE_F16, f16.data[i], RM_TYPE_F32, f.data[i], (int64_t)n);
        rm_convert(RM_TYPE_BF16, fb16.data[i], RM_TYPE_F32, f.data[i], (int64_t)n);
    }
    fx_write(d_16, cfg, &f16);
    fx_write(d_b16, cfg, &fb16);
    rm_adapter *an = NULL, *as = NULL, *at = NULL, *a16 = NULL, *ab16 = NULL, *acfg = NULL;
    CHECK_OK(rm_adapter_load(b.hf, d_norm, &an));
    CHECK_OK(rm_adapter_load(b.hf, d_std, &as));
    CHECK_OK(rm_adapter_load(b.hf, d_tr, &at));
    CHECK_OK(rm_adapter_load(b.hf, d_16, &a16));
    CHECK_OK(rm_adapter_load(b.hf, d_b16, &ab16));
    char *cfg_file = rm_path_join(d_norm, "adapter_config.json");
    CHECK_OK(rm_adapter_load(b.hf, cfg_file, &acfg));
    CHECK(adapters_equal(an, as, b.hf));
    CHECK(adapters_equal(an, at, b.hf));
    CHECK(adapters_equal(an, acfg, b.hf));
    if (an && a16 && ab16) {
        CHECK(an->target_mask == ((1u << RM_TARGET_Q) | (1u << RM_TARGET_DOWN)));
        /* values are the files' values converted to f32 */
        const rm_lora_module *m = rm_adapter_mod(a16, 1, RM_TARGET_DOWN), *mb = rm_adapter_mod(ab16, 1, RM_TARGET_DOWN);
        const float *ref = rm_adapter_mod(an, 1, RM_TARGET_DOWN)->A;
        bool ok16 = true, okb = true, differs = false;
        for (int i = 0; i < 4 * 96; i++) {
            ok16 &= rm_lora_elem(m, m->A, (size_t)(i)) == rm_f16_to_f32(rm_f32_to_f16(ref[i]));
            okb &= rm_lora_elem(mb, mb->A, (size_t)(i)) == rm_bf16_to_f32(rm_f32_to_bf16(ref[i]));
            differs |= rm_lora_elem(mb, mb->A, (size_t)(i)) != ref[i];
        }
        CHECK(ok16 && okb && differs);
    }
    rm_adapter_free(an), rm_adapter_free(as), rm_adapter_free(at), rm_adapter_free(a16), rm_adapter_free(ab16);
    rm_adapter_free(acfg);
    for (int i = 0; i < f.n; i++) free(f16.data[i]), free(fb16.data[i]);
    fx_free(&f);
    rm_free(d_norm), rm_free(d_std), rm_free(d_tr), rm_free(d_16), rm_free(d_b16), rm_free(cfg_file);
out:
    free_bases(&b);
}

/* rank_pattern / alpha_pattern as PEFT applies them, rsLoRA, and both
 * surviving PEFT and GGUF saves (GGUF folds the scales into B). */
TEST(adapter_rank_and_alpha_patterns) {
    bases b = make_bases(RM_ARCH_LLAMA, 50, true);
    if (!b.hf || !b.gg) goto out;
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    for (int rs = 0; rs < 2; rs++) {
        fixture f = {.rng = 9 + rs};
        /* q: 4 (layer 1: 6), v: 2, o: 4 with alpha 3, up: 4; xup_proj-like keys must not leak */
        for (int l = 0; l < 2; l++) {
            fx_module(&f, &c, l, RM_TARGET_Q, l == 1 ? 6 : 4, RM_TYPE_F32, false);
            fx_module(&f, &c, l, RM_TARGET_V, 2, RM_TYPE_F32, false);
            fx_module(&f, &c, l, RM_TARGET_O, 4, RM_TYPE_F32, false);
            fx_module(&f, &c, l, RM_TARGET_UP, 4, RM_TYPE_F32, false);
        }
        char cfg[1024];
        snprintf(cfg, sizeof cfg,
                 "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": %s, "
                 "\"target_modules\": [\"q_proj\", \"v_proj\", \"o_proj\", \"up_proj\"], "
                 "\"rank_pattern\": {\"model.layers.1.self_attn.q_proj\": 6, \"v_proj\": 2}, "
                 "\"alpha_pattern\": {\"o_proj\": 3, \"p_proj\": 100}}",
                 rs ? "true" : "false");
        char *dir = tmp_path("adapter_patterns");
        fx_write(dir, cfg, &f);
        fx_free(&f);
        rm_adapter *a = NULL;
        CHECK_OK(rm_adapter_load(b.hf, dir, &a));
        if (a) {
#define SC(alpha, r) (rs ? (float)((alpha) / sqrt((double)(r))) : (float)((double)(alpha) / (r)))
            CHECK(rm_adapter_mod(a, 0, RM_TARGET_Q)->rank == 4 && rm_adapter_mod(a, 0, RM_TARGET_Q)->scale == SC(8, 4));
            CHECK(rm_adapter_mod(a, 1, RM_TARGET_Q)->rank == 6 && rm_adapter_mod(a, 1, RM_TARGET_Q)->scale == SC(8, 6));
            CHECK(rm_adapter_mod(a, 1, RM_TARGET_V)->rank == 2 && rm_adapter_mod(a, 1, RM_TARGET_V)->scale == SC(8, 2));
            CHECK(rm_adapter_mod(a, 0, RM_TARGET_O)->scale == SC(3, 4));
            CHECK(rm_adapter_mod(a, 0, RM_TARGET_UP)->scale == SC(8, 4));
            CHECK(rm_adapter_mod(a, 0, RM_TARGET_K)->rank == 0);
            CHECK(a->max_rank == 6 && a->rank == 4 && a->rslora == (rs == 1));
#undef SC
            /* PEFT save reproduces every rank and scale exactly */
            char *d2 = tmp_path("adapter_patterns2"), *g = tmp_path("adapter_patterns.gguf");
            rm_adapter *p = NULL, *ga = NULL, *gg = NULL;
            CHECK_OK(rm_adapter_save_peft(a, b.hf, d2));
            CHECK_OK(rm_adapter_load(b.hf, d2, &p));
            CHECK(adapters_equal(a, p, b.hf));
            /* GGUF: one alpha; products equal, logits equal, on both bases */
            CHECK_OK(rm_adapter_save_gguf(a, b.hf, g));
            CHECK_OK(rm_adapter_load(b.hf, g, &ga));
            CHECK_OK(rm_adapter_load(b.gg, g, &gg));
            if (ga && gg) {
                const rm_lora_module *mo = rm_adapter_mod(a, 0, RM_TARGET_O), *go = rm_adapter_mod(ga, 0, RM_TARGET_O);
                CHECK(go->scale == (float)(8.0 / 4) || rs);
                CHECK_NEAR(go->scale * rm_lora_elem(go, go->B, (size_t)(5)), mo->scale * rm_lora_elem(mo, mo->B, (size_t)(5)), 1e-7);
                float *l1 = merged_logits(b.hf, a, 1), *l2 = merged_logits(b.hf, ga, 1);
                float *l3 = merged_logits(b.gg, gg, 1);
                CHECK(l1 && l2 && l3);
                if (l1 && l2 && l3) {
                    CHECK_MSG(rm_test_max_rel_diff(l1, l2, 960) < 1e-5, "GGUF fold: %g", rm_test_max_rel_diff(l1, l2, 960));
                    CHECK_MSG(rm_test_max_rel_diff(l1, l3, 960) < 2e-5, "GGUF on GGUF base: %g", rm_test_max_rel_diff(l1, l3, 960));
                }
                free(l1), free(l2), free(l3);
            }
            rm_adapter_free(p), rm_adapter_free(ga), rm_adapter_free(gg);
            rm_free(d2), rm_free(g);
        }
        rm_adapter_free(a);
        rm_free(dir);
    }
out:
    free_bases(&b);
}

/* target_modules as a regex (re.fullmatch), exclude_modules,
 * layers_to_transform + layers_pattern, default targets. */
TEST(adapter_target_selection_follows_peft) {
    bases b = make_bases(RM_ARCH_QWEN2, 60, false);
    if (!b.hf) goto out;
    rm_model_config c = tiny_config(RM_ARCH_QWEN2);
    char *dir = tmp_path("adapter_select");
    rm_adapter *a = NULL;
    fixture f = {.rng = 1};
    /* regex: q and v of every layer */
    for (int l = 0; l < 2; l++) {
        fx_module(&f, &c, l, RM_TARGET_Q, 4, RM_TYPE_F32, false);
        fx_module(&f, &c, l, RM_TARGET_V, 4, RM_TYPE_F32, false);
    }
    fx_write(dir, CFG(", \"target_modules\": \".*\\\\.(q_proj|v_proj)\""), &f);
    CHECK_OK(rm_adapter_load(b.hf, dir, &a));
    if (a) CHECK(a->target_mask == ((1u << RM_TARGET_Q) | (1u << RM_TARGET_V)));
    rm_adapter_free(a), a = NULL;
    /* null target_modules: PEFT's default for the family, q_proj and v_proj */
    fx_write(dir, CFG(", \"target_modules\": null"), &f);
    CHECK_OK(rm_adapter_load(b.hf, dir, &a));
    rm_adapter_free(a), a = NULL;
    /* fullmatch: "q_proj" alone matches no full module name */
    fx_write(dir, CFG(", \"target_modules\": \"q_proj\""), &f);
    EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "selects no module", NULL);
    /* a regex for layer 1 only: the layer-0 tensors are not targets */
    fx_write(dir, CFG(", \"target_modules\": \"model\\\\.layers\\\\.1\\\\..*\""), &f);
    EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "layers.0.self_attn.q_proj.lora_A.weight", "not a target");
    /* exclude_modules drops v */
    fx_write(dir, CFG(", \"target_modules\": [\"q_proj\", \"v_proj\"], \"exclude_modules\": [\"v_proj\"]"), &f);
    EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "v_proj", "not a target");
    fx_free(&f);
    /* layers_to_transform: layer 1 only, with default and explicit layers_pattern */
    f.rng = 2;
    fx_module(&f, &c, 1, RM_TARGET_Q, 4, RM_TYPE_F32, false);
    fx_module(&f, &c, 1, RM_TARGET_V, 4, RM_TYPE_F32, false);
    fx_write(dir, CFG(", \"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": [1]"), &f);
    CHECK_OK(rm_adapter_load(b.hf, dir, &a));
    if (a) CHECK(rm_adapter_mod(a, 0, RM_TARGET_Q)->rank == 0 && rm_adapter_mod(a, 1, RM_TARGET_Q)->rank == 4);
    rm_adapter_free(a), a = NULL;
    fx_write(dir, CFG(", \"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": 1, "
                      "\"layers_pattern\": \"layers\""), &f);
    CHECK_OK(rm_adapter_load(b.hf, dir, &a));
    rm_adapter_free(a), a = NULL;
    fx_write(dir, CFG(", \"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": [0]"), &f);
    EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "layers.1.self_attn.q_proj", "not a target");
    /* a layers_pattern that names no layer list selects nothing */
    fx_write(dir, CFG(", \"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": [1], "
                      "\"layers_pattern\": \"h\""), &f);
    EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "selects no module", NULL);
    /* a full module name in the list is taken whatever the layers */
    fx_write(dir, CFG(", \"target_modules\": [\"model.layers.1.self_attn.q_proj\", \"v_proj\"], "
                      "\"layers_to_transform\": [1]"), &f);
    CHECK_OK(rm_adapter_load(b.hf, dir, &a));
    rm_adapter_free(a), a = NULL;
    fx_free(&f);
    /* "all-linear": every projection; modules absent from the file (absent in
     * both A and B) are simply not adapted */
    f.rng = 3;
    fx_module(&f, &c, 0, RM_TARGET_DOWN, 4, RM_TYPE_F32, false);
    fx_write(dir, CFG(", \"target_modules\": \"all-linear\""), &f);
    CHECK_OK(rm_adapter_load(b.hf, dir, &a));
    if (a) CHECK(a->target_mask == 1u << RM_TARGET_DOWN && rm_adapter_mod(a, 1, RM_TARGET_DOWN)->rank == 0);
    rm_adapter_free(a), a = NULL;
    fx_free(&f);
    /* an adapter of some layers only saves as layers_to_transform and loads back the same */
    rm_adapter *r = NULL, *back = NULL;
    CHECK_OK(rm_adapter_random(b.hf, 3, 5, 0x7f, 8, 0.1f, &r));
    if (r) {
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            rm_lora_module *m = rm_adapter_mod(r, 0, (rm_target)t);
            rm_free(m->A), rm_free(m->B);
            memset(m, 0, sizeof *m);
        }
        CHECK_OK(rm_adapter_check(r, b.hf));
        CHECK_OK(rm_adapter_save_peft(r, b.hf, dir));
        CHECK_OK(rm_adapter_load(b.hf, dir, &back));
        CHECK(adapters_equal(r, back, b.hf));
        char *cp = rm_path_join(dir, "adapter_config.json"), *text = NULL;
        size_t n;
        CHECK_OK(rm_file_read(cp, &text, &n));
        CHECK(text && strstr(text, "\"layers_to_transform\": [\n    1\n  ]"));
        rm_free(text), rm_free(cp);
        /* rm_adapter_check refuses broken adapters */
        rm_adapter_mod(r, 1, RM_TARGET_V)->rank = RM_LORA_MAX_RANK + 1;
        CHECK_ERR(rm_adapter_check(r, b.hf), RAMOLE_ERR_RANGE);
        rm_adapter_mod(r, 1, RM_TARGET_V)->rank = 3;
        r->base_fingerprint ^= 1;
        CHECK_ERR(rm_adapter_check(r, b.hf), RAMOLE_ERR_MISMATCH);
        CHECK_ERR(rm_adapter_save_gguf(r, b.hf, dir), RAMOLE_ERR_MISMATCH);
    }
    rm_adapter_free(r), rm_adapter_free(back);
    rm_free(dir);
out:
    free_bases(&b);
}

/* One bad input per failure: status, a message naming the adapter, the
 * tensor or key and the reason, and nothing left allocated. */
TEST(adapter_bad_peft_inputs) {
    bases b = make_bases(RM_ARCH_LLAMA, 70, false);
    if (!b.hf) goto out;
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    char *dir = tmp_path("adapter_bad_peft");
    fixture f = {.rng = 3};
    fx_all(&f, &c, RM_TYPE_F32);
    /* config problems */
    struct {
        const char *json;
        rm_status st;
        const char *w1, *w2;
    } cfgs[] = {
        {"{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", ", RAMOLE_ERR_FORMAT, "malformed JSON",
         "adapter_config.json"},
        {"[1, 2]", RAMOLE_ERR_FORMAT, "expected a JSON object", NULL},
        {CFG(ALL_TARGETS ", \"use_dora\": true"), RAMOLE_ERR_UNSUPPORTED, "DoRA", NULL},
        {CFG(ALL_TARGETS ", \"modules_to_save\": [\"lm_head\"]"), RAMOLE_ERR_UNSUPPORTED,
         "modules_to_save is not supported", NULL},
        {CFG(ALL_TARGETS ", \"bias\": \"lora_only\""), RAMOLE_ERR_UNSUPPORTED, "bias \"lora_only\"", "not supported"},
        {CFG(ALL_TARGETS ", \"peft_type\": \"IA3\""), RAMOLE_ERR_UNSUPPORTED, "IA3", "not supported"},
        {CFG(ALL_TARGETS ", \"r\": 0"), RAMOLE_ERR_RANGE, "r = 0", "1..1024"},
        {CFG(ALL_TARGETS ", \"r\": 1025"), RAMOLE_ERR_RANGE, "r = 1025", "1..1024"},
        {CFG(ALL_TARGETS ", \"rank_pattern\": {\"q_proj\": 4096}"), RAMOLE_ERR_RANGE, "rank_pattern[\"q_proj\"]",
         "4096"},
        {CFG(", \"target_modules\": [\"q_proj\", \"lm_head\"]"), RAMOLE_ERR_UNSUPPORTED,
         "unknown target module \"lm_head\"", NULL},
        {CFG(", \"target_modules\": \"(q_proj\""), RAMOLE_ERR_FORMAT, "bad regular expression", "target_modules"},
        {CFG(", \"target_modules\": 5"), RAMOLE_ERR_FORMAT, "target_modules", NULL},
        {CFG(ALL_TARGETS ", \"lora_alpha\": \"big\""), RAMOLE_ERR_FORMAT, "lora_alpha", NULL},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        fx_write(dir, cfgs[i].json, &f);
        EXPECT_FAIL(b.hf, dir, cfgs[i].st, cfgs[i].w1, cfgs[i].w2);
    }
    /* tensor problems, each on a copy of the good fixture */
    const char *cfg = CFG(ALL_TARGETS);
    fx_write(dir, cfg, &f);
    rm_adapter *ok = NULL;
    CHECK_OK(rm_adapter_load(b.hf, dir, &ok));
    rm_adapter_free(ok);
    char name[160];
    {   /* missing partner */
        fixture g = f;
        peft_name(name, sizeof name, 1, RM_TARGET_UP, 'B');
        for (int i = 0; i < g.n; i++)
            if (!strcmp(g.name[i], name)) {
                g.name[i][0] = 0;
                memmove(&g.name[i], &g.name[i + 1], (size_t)(g.n - i - 1) * sizeof g.name[0]);
                memmove(&g.type[i], &g.type[i + 1], (size_t)(g.n - i - 1) * sizeof g.type[0]);
                memmove(&g.shape[i], &g.shape[i + 1], (size_t)(g.n - i - 1) * sizeof g.shape[0]);
                memmove(&g.data[i], &g.data[i + 1], (size_t)(g.n - i - 1) * sizeof g.data[0]);
                g.n--;
                break;
            }
        fx_write(dir, cfg, &g);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, name, "is missing");
    }
    {   /* extra tensors */
        const char *extra[] = {"base_model.model.model.embed_tokens.lora_embedding_A",
                               "base_model.model.lm_head.lora_A.weight",
                               "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
                               "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"};
        for (int e = 0; e < 4; e++) {
            fixture g = f;
            int i = fx_add(&g, extra[e], RM_TYPE_F32, 4, 64);
            fx_write(dir, cfg, &g);
            free(g.data[i]);
            EXPECT_FAIL(b.hf, dir, e == 3 ? RAMOLE_ERR_MISMATCH : RAMOLE_ERR_FORMAT, extra[e], NULL);
        }
    }
    {   /* NaN in A, Inf in an f16 B */
        fixture g = f;
        float *orig = g.data[3];
        float *nan_copy = malloc((size_t)(g.shape[3][0] * g.shape[3][1]) * sizeof(float));
        memcpy(nan_copy, orig, (size_t)(g.shape[3][0] * g.shape[3][1]) * sizeof(float));
        nan_copy[70] = NAN;
        g.data[3] = nan_copy;
        fx_write(dir, cfg, &g);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, g.name[3], "index 70");
        free(nan_copy);
        fixture h = {.rng = 3};
        fx_all(&h, &c, RM_TYPE_F16);
        uint16_t *hb = h.data[1];
        hb[5] = 0x7c00; /* +inf */
        fx_write(dir, cfg, &h);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, h.name[1], "not finite");
        fx_free(&h);
    }
    {   /* rank differs from the config, and a shape from another model */
        fixture g = {.rng = 4};
        fx_all(&g, &c, RM_TYPE_F32);
        fx_write(dir, CFG(ALL_TARGETS ", \"rank_pattern\": {\"model.layers.0.mlp.gate_proj\": 2}"), &g);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "layers.0.mlp.gate_proj.lora_A.weight has rank 4", "gives rank 2");
        fx_free(&g);
        rm_model_config wide = c;
        wide.hidden = 96;
        wide.head_dim = 24;
        g.rng = 4;
        fx_module(&g, &wide, 0, RM_TARGET_V, 4, RM_TYPE_F32, false);
        fx_write(dir, CFG(ALL_TARGETS), &g);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_MISMATCH, "v_proj.lora_A.weight has shape [4, 96]", "[4, 64]");
        fx_free(&g);
    }
    {   /* another base: a fingerprint recorded by ramole */
        rm_model_config oc = c;
        oc.ffn = 128;
        rm_model *other = NULL;
        rm_adapter *a = NULL;
        CHECK_OK(rm_model_random(&oc, 1, 0.1f, &other));
        CHECK_OK(rm_adapter_random(other, 2, 4, 0x7f, 1, 0.1f, &a));
        if (a) CHECK_OK(rm_adapter_save_peft(a, other, dir));
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_MISMATCH, "was made for another base model", NULL);
        rm_adapter_free(a);
        rm_model_free(other);
    }
    {   /* truncated safetensors; missing files */
        fx_write(dir, cfg, &f);
        char *sp = rm_path_join(dir, "adapter_model.safetensors");
        CHECK(truncate(sp, 1000) == 0);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_FORMAT, "adapter_model.safetensors", NULL);
        unlink(sp);
        EXPECT_FAIL(b.hf, dir, RAMOLE_ERR_NOT_FOUND, "adapter_model.safetensors is missing", NULL);
        rm_free(sp);
        char *nowhere = tmp_path("adapter_no_such_adapter");
        EXPECT_FAIL(b.hf, nowhere, RAMOLE_ERR_NOT_FOUND, "no such file", NULL);
        rm_free(nowhere);
    }
    fx_free(&f);
    rm_free(dir);
out:
    free_bases(&b);
}

/* GGUF files: bad inputs, and the keys llama.cpp reads. */
TEST(adapter_gguf_layout_and_bad_inputs) {
    bases b = make_bases(RM_ARCH_MISTRAL, 80, true);
    if (!b.hf || !b.gg) goto out;
    char *path = tmp_path("adapter_lay.gguf"), *bad = tmp_path("adapter_bad.gguf");
    rm_adapter *a = NULL;
    CHECK_OK(rm_adapter_random(b.hf, 2, 4, (1u << RM_TARGET_Q) | (1u << RM_TARGET_DOWN), 9, 0.1f, &a));
    if (!a) goto done;
    CHECK_OK(rm_adapter_save_gguf(a, b.hf, path));
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open(path, &g));
    if (g) {
        const char *s;
        size_t n;
        float alpha = 0;
        CHECK(rm_gguf_get_str(g, "general.architecture", &s, &n) == RAMOLE_OK && n == 5 && !memcmp(s, "llama", 5));
        CHECK(rm_gguf_get_str(g, "general.type", &s, &n) == RAMOLE_OK && n == 7 && !memcmp(s, "adapter", 7));
        CHECK(rm_gguf_get_str(g, "adapter.type", &s, &n) == RAMOLE_OK && n == 4 && !memcmp(s, "lora", 4));
        CHECK(rm_gguf_get_f32(g, "adapter.lora.alpha", &alpha) == RAMOLE_OK && alpha == 4.0f);
        CHECK(rm_gguf_kv_type(g, rm_gguf_kv_find(g, "ramole.base_fingerprint")) == RM_GGUF_UINT64);
        const rm_gguf_tensor *ta = rm_gguf_tensor_find(g, "blk.1.attn_q.weight.lora_a"),
                             *tb = rm_gguf_tensor_find(g, "blk.1.attn_q.weight.lora_b"),
                             *td = rm_gguf_tensor_find(g, "blk.0.ffn_down.weight.lora_b");
        CHECK(ta && ta->ne[0] == 64 && ta->ne[1] == 2 && ta->type == RM_TYPE_F32);
        CHECK(tb && tb->ne[0] == 2 && tb->ne[1] == 64);
        CHECK(td && td->ne[0] == 2 && td->ne[1] == 64);
        CHECK(rm_gguf_tensor_count(g) == 8);
        /* lora_b of q is in llama.cpp's pair order: file row 1 = HF row 8 */
        if (tb) {
            const float *fb = tb->data, *hb = rm_adapter_mod(a, 1, RM_TARGET_Q)->B;
            CHECK(!memcmp(fb + 1 * 2, hb + 8 * 2, 2 * sizeof(float)) && !memcmp(fb, hb, 2 * sizeof(float)));
        }
        /* rebuild variants of this file with one thing wrong */
        struct {
            const char *drop, *type_val, *arch_val;
            bool add_nan, add_extra, rank0;
            rm_status st;
            const char *w1, *w2;
        } cases[] = {
            {"blk.0.ffn_down.weight.lora_a", NULL, NULL, false, false, false, RAMOLE_ERR_FORMAT,
             "blk.0.ffn_down.weight.lora_a is missing", NULL},
            {NULL, "model", NULL, false, false, false, RAMOLE_ERR_FORMAT, "not a LoRA adapter", NULL},
            {NULL, NULL, "qwen2", false, false, false, RAMOLE_ERR_MISMATCH, "made for another base model", "qwen2"},
            {NULL, NULL, NULL, true, false, false, RAMOLE_ERR_FORMAT, "blk.1.attn_q.weight.lora_a", "not finite"},
            {NULL, NULL, NULL, false, true, false, RAMOLE_ERR_FORMAT, "output.weight.lora_a", "unexpected tensor"},
            {NULL, NULL, NULL, false, false, true, RAMOLE_ERR_RANGE, "rank 0", NULL},
        };
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
            rm_gguf_writer *w = NULL;
            CHECK_OK(rm_gguf_writer_new(&w));
            if (!w) break;
            for (int64_t i = 0; i < rm_gguf_kv_count(g); i++) {
                const char *key = rm_gguf_kv_key(g, i);
                if (cases[k].type_val && !strcmp(key, "general.type")) rm_gguf_set_str(w, key, cases[k].type_val);
                else if (cases[k].arch_val && !strcmp(key, "general.architecture"))
                    rm_gguf_set_str(w, key, cases[k].arch_val);
                else rm_gguf_set_from(w, g, i);
            }
            float *nan_copy = NULL, zero[1] = {0};
            for (int64_t i = 0; i < rm_gguf_tensor_count(g); i++) {
                const rm_gguf_tensor *t = rm_gguf_tensor_get(g, i);
                if (cases[k].drop && !strcmp(t->name, cases[k].drop)) continue;
                const void *data = t->data;
                int64_t ne[2] = {t->ne[0], t->ne[1]};
                if (cases[k].add_nan && !strcmp(t->name, "blk.1.attn_q.weight.lora_a")) {
                    nan_copy = malloc(t->nbytes);
                    memcpy(nan_copy, t->data, t->nbytes);
                    nan_copy[3] = -INFINITY;
                    data = nan_copy;
                }
                if (cases[k].rank0 && !strcmp(t->name, "blk.0.attn_q.weight.lora_a")) ne[1] = 0, data = zero;
                if (cases[k].rank0 && !strcmp(t->name, "blk.0.attn_q.weight.lora_b")) ne[0] = 0, data = zero;
                rm_gguf_writer_add(w, t->name, (rm_type)t->type, 2, ne, data);
            }
            float extra[64 * 2] = {0};
            if (cases[k].add_extra) {
                int64_t ne[2] = {64, 2};
                rm_gguf_writer_add(w, "output.weight.lora_a", RM_TYPE_F32, 2, ne, extra);
            }
            rm_status wst = rm_gguf_writer_write(w, bad);
            rm_gguf_writer_free(w);
            free(nan_copy);
            if (wst != RAMOLE_OK) {
                /* the writer itself may refuse an empty tensor: then nothing to test */
                CHECK_MSG(cases[k].rank0, "case %zu: writer failed: %s", k, ramole_last_error());
                continue;
            }
            EXPECT_FAIL(b.hf, bad, cases[k].st, cases[k].w1, cases[k].w2);
        }
        rm_gguf_free(g);
    }
    /* a base model file is not an adapter */
    EXPECT_FAIL(b.hf, b.gg->path, RAMOLE_ERR_FORMAT, "not a LoRA adapter", NULL);
    /* another base (other sizes, same family) */
    {
        rm_model_config oc = tiny_config(RM_ARCH_MISTRAL);
        oc.n_layers = 3;
        rm_model *other = NULL;
        rm_adapter *o = NULL;
        CHECK_OK(rm_model_random(&oc, 1, 0.1f, &other));
        CHECK_OK(rm_adapter_random(other, 2, 4, 1, 1, 0.1f, &o));
        if (o) CHECK_OK(rm_adapter_save_gguf(o, other, bad));
        EXPECT_FAIL(b.hf, bad, RAMOLE_ERR_MISMATCH, "was made for another base model", NULL);
        rm_adapter_free(o);
        rm_model_free(other);
    }
done:
    rm_adapter_free(a);
    rm_free(path), rm_free(bad);
out:
    free_bases(&b);
}

/* Every allocation of a load may fail: the load reports it and leaks nothing. */
TEST(adapter_load_survives_every_allocation_failure) {
    bases b = make_bases(RM_ARCH_LLAMA, 90, true);
    if (!b.hf || !b.gg) goto out;
    rm_adapter *a = NULL;
    CHECK_OK(rm_adapter_random(b.gg, 2, 4, 0x7f, 1, 0.1f, &a));
    char *dir = tmp_path("adapter_oom_peft"), *g = tmp_path("adapter_oom.gguf");
    const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                      "\"target_modules\": \"model\\\\.layers\\\\.[01]\\\\.(self_attn|mlp)\\\\..*\", "
                      "\"rank_pattern\": {\"q_proj\": 2}}";
    if (a) {
        CHECK_OK(rm_adapter_save_peft(a, b.gg, dir));
        CHECK_OK(rm_adapter_save_gguf(a, b.gg, g));
        char *cp = rm_path_join(dir, "adapter_config.json");
        CHECK_OK(rm_file_write_atomic(cp, cfg, strlen(cfg)));
        rm_free(cp);
    }
    const char *paths[2] = {dir, g};
    for (int k = 0; k < 2; k++) {
        int n_ok = 0;
        for (size_t n = 1; n < 400; n++) {
            size_t live = rm_alloc_live_bytes();
            rm_adapter *x = NULL;
            rm_alloc_fail_after(n);
            rm_status st = rm_adapter_load(b.gg, paths[k], &x);
            rm_alloc_fail_after(0);
            if (st == RAMOLE_OK) {
                CHECK(adapters_equal(a, x, b.gg));
                rm_adapter_free(x);
                n_ok = 1;
                CHECK(rm_alloc_live_bytes() == live);
                break;
            }
            CHECK_MSG(st == RAMOLE_ERR_NOMEM, "%s, failing allocation %zu: %s", paths[k], n, ramole_last_error());
            CHECK_MSG(x == NULL && rm_alloc_live_bytes() == live, "%s, failing allocation %zu leaked", paths[k], n);
        }
        CHECK(n_ok);
    }
    rm_adapter_free(a);
    rm_free(dir), rm_free(g);
out:
    free_bases(&b);
}

/* Adapters stored as f16 / bf16 (rm_adapter_convert): half the bytes; saved
 * files hold the rounded values exactly (PEFT and GGUF, HF and GGUF bases);
 * merging uses them; a value outside f16's range is refused and leaves the
 * adapter as it was. */
TEST(adapter_f16_storage_saves_merges_and_refuses_overflow) {
    bases b = make_bases(RM_ARCH_LLAMA, 41, true);
    const rm_model *bs[2] = {b.hf, b.gg};
    for (int k = 0; k < 2 && b.hf && b.gg; k++) {
        const rm_model *base = bs[k];
        for (int bf = 0; bf < 2; bf++) {
            rm_type type = bf ? RM_TYPE_BF16 : RM_TYPE_F16;
            rm_adapter *h = NULL, *w = NULL, *p = NULL, *g = NULL;
            CHECK_OK(rm_adapter_random(base, 3, 6, 0x7f, 77, 0.05f, &h));
            CHECK_OK(rm_adapter_random(base, 3, 6, 0x7f, 77, 0.05f, &w));
            if (!h || !w) break;
            size_t bytes32 = rm_adapter_bytes(h, base);
            CHECK_OK(rm_adapter_convert(h, base, type));
            CHECK(h->type == type && rm_adapter_mod(h, 0, RM_TARGET_Q)->type == type);
            CHECK(rm_adapter_bytes(h, base) * 2 == bytes32);
            /* w: the same values rounded, back in f32 */
            CHECK_OK(rm_adapter_convert(w, base, type));
            CHECK_OK(rm_adapter_convert(w, base, RM_TYPE_F32));
            CHECK(w->type == RM_TYPE_F32);
            const rm_lora_module *mh = rm_adapter_mod(h, 1, RM_TARGET_DOWN), *mw = rm_adapter_mod(w, 1, RM_TARGET_DOWN);
            CHECK(rm_lora_elem(mh, mh->B, 7) == ((float *)mw->B)[7] && rm_lora_elem(mh, mh->A, 5) == ((float *)mw->A)[5]);
            char *dir = tmp_path("adapter_f16_peft"), *gg = tmp_path("adapter_f16.gguf");
            CHECK_OK(rm_adapter_save_peft(h, base, dir));
            CHECK_OK(rm_adapter_save_gguf(h, base, gg));
            CHECK_OK(rm_adapter_load(base, dir, &p));
            CHECK_OK(rm_adapter_load(base, gg, &g));
            CHECK_MSG(adapters_equal(w, p, base), "%s, base %d: PEFT file of the %s adapter", rm_type_name(type), k,
                      rm_type_name(type));
            CHECK_MSG(adapters_equal(w, g, base), "%s, base %d: GGUF file", rm_type_name(type), k);
            /* files hold 2-byte values: the 3 x (64 + 64) ... tensors shrink by half */
            char *st = rm_path_join(dir, "adapter_model.safetensors");
            size_t fsize = 0;
            FILE *f = fopen(st, "rb");
            if (f) fseek(f, 0, SEEK_END), fsize = (size_t)ftell(f), fclose(f);
            CHECK_MSG(fsize > bytes32 / 2 && fsize < bytes32 / 2 + 65536, "safetensors of %zu bytes for %zu bytes of f32",
                      fsize, bytes32);
            float *lh = merged_logits(base, h, 1.0f), *lw = merged_logits(base, w, 1.0f);
            CHECK(lh && lw);
            if (lh && lw) CHECK_MSG(rm_test_max_rel_diff(lh, lw, 10 * 96) < 1e-6, "merge of %s adapter: %g", rm_type_name(type),
                                    rm_test_max_rel_diff(lh, lw, 10 * 96));
            free(lh), free(lw);
            rm_free(st), rm_free(dir), rm_free(gg);
            rm_adapter_free(h), rm_adapter_free(w), rm_adapter_free(p), rm_adapter_free(g);
        }
    }
    if (b.hf) {
        rm_adapter *big = NULL;
        CHECK_OK(rm_adapter_random(b.hf, 2, 2, 0x1, 5, 1e6f, &big));
        if (big) {
            float before = ((float *)rm_adapter_mod(big, 0, RM_TARGET_Q)->A)[3];
            CHECK(rm_adapter_convert(big, b.hf, RM_TYPE_F16) == RAMOLE_ERR_RANGE);
            CHECK(msg_has("does not fit in f16") && msg_has("q_proj"));
            CHECK(big->type == RM_TYPE_F32 && ((float *)rm_adapter_mod(big, 0, RM_TARGET_Q)->A)[3] == before);
            CHECK(rm_adapter_convert(big, b.hf, RM_TYPE_Q8_0) == RAMOLE_ERR_UNSUPPORTED);
            CHECK_OK(rm_adapter_convert(big, b.hf, RM_TYPE_BF16)); /* bf16 has f32's range */
        }
        rm_adapter_free(big);
    }
    free_bases(&b);
}

/* Replace the first `from` in the file at path by `to` (same length):
 * false if the file has no `from`. */
static bool patch_file(const char *path, const char *from, const char *to) {
    char *data = NULL;
    size_t n = 0, k = strlen(from);
    if (rm_file_read(path, &data, &n) != RAMOLE_OK) return false;
    char *at = NULL;
    for (size_t i = 0; i + k <= n && !at; i++)
        if (!memcmp(data + i, from, k)) at = data + i;
    if (at) memcpy(at, to, k);
    bool ok = at && rm_file_write_atomic(path, data, n) == RAMOLE_OK;
    rm_free(data);
    return ok;
}

/* A router's gate pooling travels with it: "ramole.gate_pool" in PEFT
 * metadata and as a GGUF string, only for prompt pooling; conversion to
 * f16 and the round trip PEFT -> GGUF -> PEFT keep it; a value other than
 * "token" or "prompt" is a format error naming the adapter, key and value. */
TEST(adapter_gate_pool_round_trips_and_bad_values) {
    bases b = make_bases(RM_ARCH_LLAMA, 91, true);
    const rm_model *bs[2] = {b.hf, b.gg};
    for (int k = 0; k < 2 && b.hf && b.gg; k++) {
        const rm_model *base = bs[k];
        rm_adapter *tok = NULL, *pr = NULL, *p1 = NULL, *g1 = NULL, *p2 = NULL, *t1 = NULL, *t2 = NULL, *bad = NULL;
        CHECK_OK(rm_adapter_random(base, 3, 6, 0x7f, 61, 0.05f, &tok));
        CHECK_OK(rm_adapter_random(base, 3, 6, 0x7f, 61, 0.05f, &pr));
        if (!tok || !pr) break;
        CHECK(tok->gate_pool == RM_GATE_POOL_TOKEN); /* a fresh adapter routes per token */
        pr->gate_pool = RM_GATE_POOL_PROMPT;
        char *d1 = tmp_path("adapter_pool_peft1"), *g = tmp_path("adapter_pool.gguf"), *d2 = tmp_path("adapter_pool_peft2");
        char *dt = tmp_path("adapter_pool_tok"), *gt = tmp_path("adapter_pool_tok.gguf");
        char *st1 = rm_path_join(d1, "adapter_model.safetensors"), *stt = rm_path_join(dt, "adapter_model.safetensors");
        round_trip(base, pr, d1, g, d2, &p1, &g1, &p2);
        CHECK(p1 && p1->gate_pool == RM_GATE_POOL_PROMPT);
        CHECK(g1 && g1->gate_pool == RM_GATE_POOL_PROMPT);
        CHECK(p2 && p2->gate_pool == RM_GATE_POOL_PROMPT);
        if (p2) CHECK(adapters_equal(pr, p2, base)); /* and the values with it */
        CHECK_OK(rm_adapter_convert(p2, base, RM_TYPE_F16));
        CHECK(p2 && p2->gate_pool == RM_GATE_POOL_PROMPT);
        /* what the files hold */
        rm_safetensors *sf = NULL;
        CHECK_OK(rm_st_open(st1, &sf));
        const char *v = sf ? rm_st_meta(sf, "ramole.gate_pool") : NULL;
        CHECK_MSG(v && !strcmp(v, "prompt"), "PEFT metadata ramole.gate_pool: %s", v ? v : "(absent)");
        rm_st_free(sf);
        rm_gguf *gf = NULL;
        const char *s = NULL;
        size_t n = 0;
        CHECK_OK(rm_gguf_open(g, &gf));
        if (gf) CHECK(rm_gguf_get_str(gf, "ramole.gate_pool", &s, &n) == RAMOLE_OK && n == 6 && !memcmp(s, "prompt", 6));
        rm_gguf_free(gf);
        /* token pooling writes nothing, and files without the key route per token */
        CHECK_OK(rm_adapter_save_peft(tok, base, dt));
        CHECK_OK(rm_adapter_save_gguf(tok, base, gt));
        sf = NULL;
        CHECK_OK(rm_st_open(stt, &sf));
        if (sf) CHECK(rm_st_meta(sf, "ramole.gate_pool") == NULL);
        rm_st_free(sf);
        gf = NULL;
        CHECK_OK(rm_gguf_open(gt, &gf));
        if (gf) CHECK(rm_gguf_get_str(gf, "ramole.gate_pool", &s, &n) == RAMOLE_ERR_NOT_FOUND);
        rm_gguf_free(gf);
        CHECK_OK(rm_adapter_load(base, dt, &t1));
        CHECK_OK(rm_adapter_load(base, gt, &t2));
        CHECK(t1 && t1->gate_pool == RM_GATE_POOL_TOKEN && t2 && t2->gate_pool == RM_GATE_POOL_TOKEN);
        /* "token" said outright (JSON allows the space after it) */
        CHECK(patch_file(st1, "\"prompt\"", "\"token\" "));
        CHECK_OK(rm_adapter_load(base, d1, &bad));
        CHECK(bad && bad->gate_pool == RM_GATE_POOL_TOKEN);
        rm_adapter_free(bad);
        bad = NULL;
        /* a value ramole does not know */
        CHECK(patch_file(st1, "\"token\" ", "\"tokens\""));
        CHECK_ERR(rm_adapter_load(base, d1, &bad), RAMOLE_ERR_FORMAT);
        CHECK_MSG(msg_has("adapter_pool_peft1") && msg_has("ramole.gate_pool") && msg_has("\"tokens\""), "%s",
                  ramole_last_error());
        CHECK(bad == NULL);
        CHECK(patch_file(g, "prompt", "Prompt"));
        CHECK_ERR(rm_adapter_load(base, g, &bad), RAMOLE_ERR_FORMAT);
        CHECK_MSG(msg_has("adapter_pool.gguf") && msg_has("ramole.gate_pool") && msg_has("\"Prompt\""), "%s",
                  ramole_last_error());
        CHECK(bad == NULL);
        rm_free(d1), rm_free(g), rm_free(d2), rm_free(dt), rm_free(gt), rm_free(st1), rm_free(stt);
        rm_adapter_free(tok), rm_adapter_free(pr), rm_adapter_free(p1), rm_adapter_free(g1), rm_adapter_free(p2);
        rm_adapter_free(t1), rm_adapter_free(t2);
    }
    free_bases(&b);
}

/* A router's retrieval prior travels with it as "ramole.retrieval_prior",
 * a decimal string in PEFT metadata and GGUF alike, only when it has one;
 * PEFT -> GGUF -> PEFT and conversion keep the very float; a value that is
 * not a number from 0 to RM_RETRIEVAL_PRIOR_MAX is a format error naming
 * the adapter, key and value. */
TEST(adapter_retrieval_prior_round_trips_and_bad_values) {
    bases b = make_bases(RM_ARCH_LLAMA, 93, true);
    const rm_model *bs[2] = {b.hf, b.gg};
    for (int k = 0; k < 2 && b.hf && b.gg; k++) {
        const rm_model *base = bs[k];
        rm_adapter *pr = NULL, *p1 = NULL, *g1 = NULL, *p2 = NULL, *t1 = NULL, *bad = NULL;
        CHECK_OK(rm_adapter_random(base, 3, 6, 0x7f, 63, 0.05f, &pr));
        if (!pr) break;
        CHECK(pr->retrieval_prior == 0); /* a fresh adapter has none */
        char *dt = tmp_path("adapter_prior_none"), *stt = rm_path_join(dt, "adapter_model.safetensors");
        CHECK_OK(rm_adapter_save_peft(pr, base, dt));
        rm_safetensors *sf = NULL;
        CHECK_OK(rm_st_open(stt, &sf));
        if (sf) CHECK(rm_st_meta(sf, "ramole.retrieval_prior") == NULL);
        rm_st_free(sf);
        pr->retrieval_prior = 12.3f; /* not a short decimal: the file must keep the float */
        char *d1 = tmp_path("adapter_prior_peft1"), *g = tmp_path("adapter_prior.gguf"), *d2 = tmp_path("adapter_prior_peft2");
        char *st1 = rm_path_join(d1, "adapter_model.safetensors");
        round_trip(base, pr, d1, g, d2, &p1, &g1, &p2);
        CHECK(p1 && p1->retrieval_prior == 12.3f);
        CHECK(g1 && g1->retrieval_prior == 12.3f);
        CHECK(p2 && p2->retrieval_prior == 12.3f);
        if (p2) CHECK_OK(rm_adapter_convert(p2, base, RM_TYPE_F16));
        CHECK(p2 && p2->retrieval_prior == 12.3f);
        sf = NULL;
        CHECK_OK(rm_st_open(st1, &sf));
        const char *v = sf ? rm_st_meta(sf, "ramole.retrieval_prior") : NULL;
        CHECK_MSG(v && !strcmp(v, "12.3000002"), "PEFT metadata ramole.retrieval_prior: %s", v ? v : "(absent)");
        rm_st_free(sf);
        CHECK_OK(rm_adapter_load(base, dt, &t1));
        CHECK(t1 && t1->retrieval_prior == 0);
        /* values ramole does not take, each the same length as "12.3000002" */
        const char *bads[] = {"-1.0000000", "12.3abcdef", "1000.00001", "       nan"};
        const char *was = "12.3000002";
        for (int i = 0; i < 4; i++) {
            CHECK(patch_file(st1, was, bads[i]));
            was = bads[i];
            CHECK_ERR(rm_adapter_load(base, d1, &bad), RAMOLE_ERR_FORMAT);
            CHECK_MSG(msg_has("adapter_prior_peft1") && msg_has("ramole.retrieval_prior") && msg_has(bads[i]), "%s",
                      ramole_last_error());
            CHECK(bad == NULL);
        }
        CHECK(patch_file(g, "12.3000002", "twelve.300"));
        CHECK_ERR(rm_adapter_load(base, g, &bad), RAMOLE_ERR_FORMAT);
        CHECK_MSG(msg_has("adapter_prior.gguf") && msg_has("twelve.300"), "%s", ramole_last_error());
        rm_free(d1), rm_free(g), rm_free(d2), rm_free(dt), rm_free(st1), rm_free(stt);
        rm_adapter_free(pr), rm_adapter_free(p1), rm_adapter_free(g1), rm_adapter_free(p2), rm_adapter_free(t1);
    }
    free_bases(&b);
}

/* rm_adapter_format_of tells adapters from models and other files by
 * content, the way rm_adapter_load chooses its loader. */
TEST(adapter_format_of_tells_adapters_from_models) {
    bases b = make_bases(RM_ARCH_LLAMA, 81, true);
    if (!b.hf || !b.gg) goto out;
    char *peft = tmp_path("adapter_fmt_peft"), *gguf = tmp_path("adapter_fmt.gguf");
    char *cfg = rm_path_join(peft, "adapter_config.json"), *st = rm_path_join(peft, "adapter_model.safetensors");
    char *empty = tmp_path("adapter_fmt_empty"), *text = tmp_path("adapter_fmt.txt");
    char *nowhere = tmp_path("adapter_fmt_nowhere"), *hf = tmp_path("adapter_fmt_model");
    char *gg = tmp_path("adapter_base_llama.gguf"); /* make_bases wrote it */
    rm_adapter *a = NULL, *back = NULL;
    CHECK_OK(rm_adapter_random(b.hf, 2, 4, (1u << RM_TARGET_COUNT) - 1, 3, 0.1f, &a));
    if (!a) goto done;
    CHECK_OK(rm_adapter_save_peft(a, b.hf, peft));
    CHECK_OK(rm_adapter_save_gguf(a, b.hf, gguf));
    CHECK_OK(rm_model_save(b.hf, RM_SOURCE_HF, -1, hf));
    mkdir(empty, 0755);
    FILE *f = fopen(text, "w");
    if (f) fputs("not an adapter\n", f), fclose(f);
    struct { const char *path; rm_adapter_format want; } cases[] = {
        {peft, RM_ADAPTER_FORMAT_PEFT}, {cfg, RM_ADAPTER_FORMAT_PEFT}, {st, RM_ADAPTER_FORMAT_PEFT},
        {gguf, RM_ADAPTER_FORMAT_GGUF}, {hf, RM_ADAPTER_FORMAT_NONE}, {gg, RM_ADAPTER_FORMAT_NONE},
        {empty, RM_ADAPTER_FORMAT_NONE}, {text, RM_ADAPTER_FORMAT_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rm_adapter_format fmt = (rm_adapter_format)-1;
        CHECK_OK(rm_adapter_format_of(cases[i].path, &fmt));
        CHECK_MSG(fmt == cases[i].want, "%s: format %d, want %d", cases[i].path, (int)fmt, (int)cases[i].want);
        /* what format_of calls an adapter, rm_adapter_load loads */
        if (cases[i].want != RM_ADAPTER_FORMAT_NONE) {
            CHECK_OK(rm_adapter_load(b.hf, cases[i].path, &back));
            CHECK(back && adapters_equal(a, back, b.hf));
            rm_adapter_free(back);
            back = NULL;
        }
    }
    rm_adapter_format fmt;
    CHECK(rm_adapter_format_of(nowhere, &fmt) == RAMOLE_ERR_NOT_FOUND && fmt == RM_ADAPTER_FORMAT_NONE);
    CHECK(rm_adapter_format_of("", &fmt) == RAMOLE_ERR_INVALID);
    /* NONE paths fail to load with the message of their layout's loader */
    EXPECT_FAIL(b.hf, empty, RAMOLE_ERR_NOT_FOUND, "adapter_config.json is missing", NULL);
    EXPECT_FAIL(b.hf, gg, RAMOLE_ERR_FORMAT, "not a LoRA adapter", NULL);
done:
    rm_adapter_free(a);
    rm_free(peft), rm_free(gguf), rm_free(cfg), rm_free(st), rm_free(empty), rm_free(text), rm_free(nowhere);
    rm_free(hf), rm_free(gg);
out:
    free_bases(&b);
}
