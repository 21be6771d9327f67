/*
 * test_golden.c — ramole's logits against the outside reference: golden
 * logits written by tests/reference/make_golden.py (a float64 PyTorch
 * forward that follows Hugging Face's modeling code) for tiny random models
 * of each family. Checked on the HF folder as written by the reference, on
 * the same model converted to GGUF, and on weights rounded to f16, bf16 and
 * q8_0 (the reference rounds the same weights the same way).
 *
 * Error measure: max |ramole - golden| over a sequence, divided by the
 * sequence's max |golden logit|.
 */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static const char *fixtures[] = {"llama_tiny", "llama3_tiny", "llama_linear_tiny",
                                 "mistral_tiny", "qwen2_tiny", "llama_sharded_tiny"};

/* Worst normalised error of every sequence of golden[key] for model m. */
static double golden_error(const rm_model *m, json_t *golden, const char *key) {
    json_t *tokens = json_object_get(golden, "tokens"), *logits = json_object_get(golden, key);
    if (!json_is_array(tokens) || !json_is_array(logits)) return INFINITY;
    int V = m->cfg.vocab_size;
    double worst = 0;
    for (size_t s = 0; s < json_array_size(tokens); s++) {
        json_t *ts = json_array_get(tokens, s), *ls = json_array_get(logits, s);
        int n = (int)json_array_size(ts);
        int32_t *tok = calloc((size_t)n, sizeof *tok), *pos = calloc((size_t)n, sizeof *pos),
                *seq = calloc((size_t)n, sizeof *seq);
        uint8_t *want = calloc((size_t)n, 1);
        for (int i = 0; i < n; i++) {
            tok[i] = (int32_t)json_integer_value(json_array_get(ts, (size_t)i));
            pos[i] = i;
            want[i] = 1;
        }
        rm_ctx *ctx = NULL;
        rm_ctx_params p = {.n_ctx = n, .n_seq = 1, .n_batch = n, .n_threads = 2};
        rm_batch b = {n, tok, pos, seq, want};
        if (rm_ctx_new(m, &p, &ctx) != RAMOLE_OK || rm_ctx_decode(ctx, &b) != RAMOLE_OK) {
            worst = INFINITY;
        } else {
            double md = 0, mx = 0;
            for (int i = 0; i < n; i++) {
                json_t *row = json_array_get(ls, (size_t)i);
                const float *got = rm_ctx_logits(ctx, i);
                if ((int)json_array_size(row) != V) md = INFINITY;
                for (int v = 0; v < V && md < INFINITY; v++) {
                    double g = json_number_value(json_array_get(row, (size_t)v));
                    md = fmax(md, fabs(got[v] - g));
                    mx = fmax(mx, fabs(g));
                }
            }
            worst = fmax(worst, md / mx);
        }
        rm_ctx_free(ctx);
        free(tok), free(pos), free(seq), free(want);
    }
    return worst;
}

static json_t *load_golden(const char *name, char **dir) {
    *dir = rm_asprintf("%s/golden/models/%s", rm_test_data_dir(), name);
    char *path = rm_path_join(*dir, "golden.json");
    json_error_t e;
    json_t *g = json_load_file(path, 0, &e);
    CHECK_MSG(g != NULL, "%s: %s", path, e.text);
    rm_free(path);
    return g;
}

/* Open `src`, save it as `format`/`type` into tmp, open that. */
static rm_model *converted(const char *src, rm_source_kind format, int type, const char *tag) {
    rm_model *m = NULL, *out = NULL;
    char *name = rm_asprintf("golden_%s%s", tag, format == RM_SOURCE_GGUF ? ".gguf" : "");
    char *path = rm_path_join(rm_test_tmp_dir(), name);
    CHECK_OK(rm_model_open(src, &m));
    if (m) CHECK_OK(rm_model_save(m, format, type, path));
    if (m) CHECK_OK(rm_model_open(path, &out));
    rm_model_free(m);
    rm_free(name), rm_free(path);
    return out;
}

TEST(golden_f32_hf_and_gguf_match_the_pytorch_reference) {
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char *dir;
        json_t *g = load_golden(fixtures[f], &dir);
        rm_model *hf = NULL;
        CHECK_OK(rm_model_open(dir, &hf));
        if (g && hf) {
            double e = golden_error(hf, g, "logits");
            if (getenv("RAMOLE_TEST_VERBOSE")) printf("  %s HF f32: %.3g\n", fixtures[f], e);
            CHECK_MSG(e < 1e-4, "%s (HF folder): normalised error %g", fixtures[f], e);
            rm_model *gg = converted(dir, RM_SOURCE_GGUF, RM_TYPE_F32, fixtures[f]);
            if (gg) {
                e = golden_error(gg, g, "logits");
                if (getenv("RAMOLE_TEST_VERBOSE")) printf("  %s GGUF f32: %.3g\n", fixtures[f], e);
                CHECK_MSG(e < 1e-4, "%s (GGUF f32): normalised error %g", fixtures[f], e);
            }
            rm_model_free(gg);
        }
        rm_model_free(hf);
        json_decref(g);
        rm_free(dir);
    }
}

TEST(golden_f16_bf16_q8_0_match_the_reference_on_rounded_weights) {
    const char *names[] = {"llama_tiny", "qwen2_tiny"};
    struct {
        rm_type type;
        const char *key;
        rm_source_kind fmt;
        double tol; /* q8_0 also quantises activations, as llama.cpp does */
    } cases[] = {
        {RM_TYPE_F16, "logits_f16", RM_SOURCE_GGUF, 1e-4},
        {RM_TYPE_BF16, "logits_bf16", RM_SOURCE_GGUF, 1e-4},
        {RM_TYPE_F16, "logits_f16", RM_SOURCE_HF, 1e-4},
        {RM_TYPE_BF16, "logits_bf16", RM_SOURCE_HF, 1e-4},
        {RM_TYPE_Q8_0, "logits_q8_0", RM_SOURCE_GGUF, 3e-2},
    };
    for (int f = 0; f < 2; f++) {
        char *dir;
        json_t *g = load_golden(names[f], &dir);
        for (size_t c = 0; g && c < sizeof cases / sizeof cases[0]; c++) {
            char tag[64];
            snprintf(tag, sizeof tag, "%s_%s_%d", names[f], rm_type_name(cases[c].type), (int)cases[c].fmt);
            rm_model *m = converted(dir, cases[c].fmt, cases[c].type, tag);
            if (!m) continue;
            double e = golden_error(m, g, cases[c].key);
            if (getenv("RAMOLE_TEST_VERBOSE"))
                printf("  %s %s %s: %.3g\n", names[f], cases[c].fmt == RM_SOURCE_GGUF ? "GGUF" : "HF",
                       rm_type_name(cases[c].type), e);
            CHECK_MSG(e < cases[c].tol, "%s %s %s: normalised error %g (tolerance %g)", names[f],
                      cases[c].fmt == RM_SOURCE_GGUF ? "GGUF" : "HF", rm_type_name(cases[c].type), e, cases[c].tol);
            /* and the rounding is really there: the f32 golden is further away */
            double e32 = golden_error(m, g, "logits");
            CHECK_MSG(e32 > e, "%s %s: f32 golden (%g) closer than the rounded one (%g)", names[f],
                      rm_type_name(cases[c].type), e32, e);
            rm_model_free(m);
        }
        json_decref(g);
        rm_free(dir);
    }
}
