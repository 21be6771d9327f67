/*
 * test_lora_golden.c — LoRA composition against the outside reference:
 * tests/reference/make_lora_golden.py wrote three PEFT experts and a router
 * for llama_tiny and qwen2_tiny, and the logits of every composition mode
 * computed in float64 by PyTorch. ramole loads the same PEFT folders (and
 * the same adapters converted to GGUF LoRA, on the base converted to GGUF)
 * and must reproduce every mode.
 */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lora/compose.h"

static double compare_logits(const rm_model *m, json_t *g, const char *comp_name, rm_adapter **experts,
                             rm_adapter *router) {
    json_t *comp = json_object_get(json_object_get(g, "compositions"), comp_name);
    json_t *want = json_object_get(json_object_get(g, "logits"), comp_name);
    json_t *tokens = json_object_get(g, "tokens");
    if (!comp || !want || !tokens) return INFINITY;
    rm_composition c = {0};
    if (!rm_compose_mode_from_name(json_string_value(json_object_get(comp, "mode")), &c.mode)) return INFINITY;
    json_t *names = json_object_get(comp, "adapters"), *weights = json_object_get(comp, "weights");
    c.k = (int)json_array_size(names);
    for (int j = 0; j < c.k; j++) {
        const char *nm = json_string_value(json_array_get(names, (size_t)j));
        int idx = nm[1] - '1'; /* "a1".."a3" */
        c.experts[j] = experts[idx];
        c.weights[j] = weights ? (float)json_number_value(json_array_get(weights, (size_t)j)) : 1.0f;
    }
    c.router = router;
    double worst = 0;
    for (size_t s = 0; s < json_array_size(tokens); s++) {
        json_t *ts = json_array_get(tokens, s);
        int n = (int)json_array_size(ts);
        int32_t tok[64], pos[64], seq[64] = {0};
        uint8_t wl[64];
        for (int i = 0; i < n; i++) tok[i] = (int32_t)json_integer_value(json_array_get(ts, (size_t)i)), pos[i] = i, wl[i] = 1;
        rm_ctx_params p = {.n_ctx = n, .n_seq = 1, .n_batch = n, .n_threads = 2};
        rm_ctx *ctx = NULL;
        rm_lora_state *ls = NULL;
        rm_batch b = {n, tok, pos, seq, wl};
        if (rm_lora_ctx_new(m, &p, 3, 8, &ctx, &ls) != RAMOLE_OK || rm_lora_set(ls, 0, &c) != RAMOLE_OK ||
            rm_ctx_decode(ctx, &b) != RAMOLE_OK) {
            printf("  %s: %s\n", comp_name, ramole_last_error());
            rm_ctx_free(ctx);
            rm_lora_state_free(ls);
            return INFINITY;
        }
        double md = 0, mx = 0;
        for (int i = 0; i < n; i++) {
            json_t *row = json_array_get(json_array_get(want, s), (size_t)i);
            const float *got = rm_ctx_logits(ctx, i);
            for (int v = 0; v < m->cfg.vocab_size; v++) {
                double w = json_number_value(json_array_get(row, (size_t)v));
                md = fmax(md, fabs(got[v] - w));
                mx = fmax(mx, fabs(w));
            }
        }
        worst = fmax(worst, md / mx);
        rm_ctx_free(ctx);
        rm_lora_state_free(ls);
    }
    return worst;
}

static const char *modes[] = {"none", "single_a2", "explicit", "mixture", "selection", "fusion", "router"};

/* Run every mode on base `m` with adapters loaded from `ext` ("" PEFT, ".gguf"). */
static void check_all_modes(const rm_model *m, json_t *g, const char *lora_dir, const char *label, bool gguf) {
    rm_adapter *ex[3] = {0}, *router = NULL;
    const char *names[4] = {"a1", "a2", "a3", "router"};
    for (int i = 0; i < 4; i++) {
        char *src = rm_asprintf("%s/%s", lora_dir, names[i]);
        rm_adapter *a = NULL;
        CHECK_OK(rm_adapter_load(m, src, &a));
        if (a && gguf) { /* through GGUF LoRA and back */
            char *gp = rm_asprintf("%s/lora_%s_%s.gguf", rm_test_tmp_dir(), label, names[i]);
            CHECK_OK(rm_adapter_save_gguf(a, m, gp));
            rm_adapter_free(a);
            a = NULL;
            CHECK_OK(rm_adapter_load(m, gp, &a));
            rm_free(gp);
        }
        if (i < 3) ex[i] = a;
        else router = a;
        rm_free(src);
    }
    if (ex[0] && ex[1] && ex[2] && router) {
        /* the scales PEFT would use (rsLoRA, rank_pattern, alpha_pattern);
         * GGUF keeps one alpha per file and folds the rest into B */
        json_t *sc = json_object_get(json_object_get(g, "scales"), "a3");
        if (!gguf) {
            CHECK_NEAR(rm_adapter_mod(ex[2], 0, RM_TARGET_Q)->scale, json_number_value(json_object_get(sc, "q_proj")), 1e-6);
            CHECK_NEAR(rm_adapter_mod(ex[2], 1, RM_TARGET_DOWN)->scale, json_number_value(json_object_get(sc, "down_proj")), 1e-6);
        }
        CHECK(rm_adapter_mod(ex[2], 1, RM_TARGET_DOWN)->rank == 4);
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
            double e = compare_logits(m, g, modes[i], ex, router);
            if (getenv("RAMOLE_TEST_VERBOSE")) printf("  %s %s: %.3g\n", label, modes[i], e);
            CHECK_MSG(e < 1e-4, "%s %s: normalised error %g", label, modes[i], e);
        }
    }
    for (int i = 0; i < 3; i++) rm_adapter_free(ex[i]);
    rm_adapter_free(router);
}

TEST(lora_golden_every_mode_matches_the_pytorch_reference) {
    const char *bases[] = {"llama_tiny", "qwen2_tiny"};
    for (int b = 0; b < 2; b++) {
        char *gpath = rm_asprintf("%s/golden/lora/%s/golden.json", rm_test_data_dir(), bases[b]);
        char *ldir = rm_asprintf("%s/golden/lora/%s", rm_test_data_dir(), bases[b]);
        char *mdir = rm_asprintf("%s/golden/models/%s", rm_test_data_dir(), bases[b]);
        json_error_t e;
        json_t *g = json_load_file(gpath, 0, &e);
        CHECK_MSG(g != NULL, "%s: %s", gpath, e.text);
        rm_model *hf = NULL, *gg = NULL;
        CHECK_OK(rm_model_open(mdir, &hf));
        if (g && hf) {
            char label[64];
            snprintf(label, sizeof label, "%s HF+PEFT", bases[b]);
            check_all_modes(hf, g, ldir, label, false);
            /* GGUF base (Q/K rows permuted for llama) with GGUF LoRA files */
            char *gpth = rm_asprintf("%s/lora_base_%s.gguf", rm_test_tmp_dir(), bases[b]);
            CHECK_OK(rm_model_save(hf, RM_SOURCE_GGUF, RM_TYPE_F32, gpth));
            CHECK_OK(rm_model_open(gpth, &gg));
            snprintf(label, sizeof label, "%s GGUF+GGUF-LoRA", bases[b]);
            if (gg) check_all_modes(gg, g, ldir, label, true);
            snprintf(label, sizeof label, "%s GGUF+PEFT", bases[b]);
            if (gg) check_all_modes(gg, g, ldir, label, false);
            rm_free(gpth);
        }
        rm_model_free(hf);
        rm_model_free(gg);
        json_decref(g);
        rm_free(gpath), rm_free(ldir), rm_free(mdir);
    }
}
