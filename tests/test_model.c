/*
 * test_model.c — the transformer against itself across formats, batch
 * shapes and cache use; the sampler; bad model files. (Parity against the
 * outside PyTorch reference is in test_golden.c.)
 */
#include "test.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "model/model.h"

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

static const int32_t prompt[12] = {1, 17, 5, 90, 33, 2, 64, 64, 7, 81, 3, 40};

TEST(model_hf_and_gguf_give_the_same_logits) {
    for (int a = 0; a < RM_ARCH_COUNT; a++) {
        rm_model_config c = tiny_config((rm_arch)a);
        if (a == RM_ARCH_LLAMA) { /* llama3 scaling travels as rope_freqs in GGUF */
            c.rope.scaling = RM_ROPE_SCALING_LLAMA3;
            c.rope.factor = 8;
            c.rope.low_freq_factor = 1;
            c.rope.high_freq_factor = 4;
            c.rope.original_max_pos = 8;
        }
        rm_model *r = NULL, *hf = NULL, *gg = NULL;
        CHECK_OK(rm_model_random(&c, 7 + a, 0.1f, &r));
        char *dir = tmp_path("model_eq_hf"), *gguf = tmp_path("model_eq.gguf");
        CHECK_OK(rm_model_save(r, RM_SOURCE_HF, -1, dir));
        CHECK_OK(rm_model_save(r, RM_SOURCE_GGUF, -1, gguf));
        CHECK_OK(rm_model_open(dir, &hf));
        CHECK_OK(rm_model_open(gguf, &gg));
        if (hf && gg) {
            CHECK(gg->cfg.rope.style == (a == RM_ARCH_QWEN2 ? RM_ROPE_NEOX : RM_ROPE_NORMAL));
            float *x = rm_test_logits_all(r, prompt, 12, 1), *y = rm_test_logits_all(hf, prompt, 12, 2), *z = rm_test_logits_all(gg, prompt, 12, 2);
            CHECK(x && y && z);
            if (x && y && z) {
                CHECK_MSG(rm_test_max_rel_diff(x, y, 12 * 96) == 0, "arch %s: HF differs from memory", rm_arch_name(a));
                CHECK_MSG(rm_test_max_rel_diff(x, z, 12 * 96) < 2e-6, "arch %s: GGUF differs: %g", rm_arch_name(a),
                          rm_test_max_rel_diff(x, z, 12 * 96));
            }
            free(x), free(y), free(z);
        }
        rm_model_free(r), rm_model_free(hf), rm_model_free(gg);
        rm_free(dir), rm_free(gguf);
    }
}

TEST(model_incremental_decode_matches_one_batch) {
    rm_model_config c = tiny_config(RM_ARCH_QWEN2);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 3, 0.1f, &m));
    if (!m) return;
    float *full = rm_test_logits_all(m, prompt, 12, 2);
    rm_ctx *ctx = NULL;
    rm_ctx_params p = {.n_ctx = 32, .n_seq = 1, .n_batch = 4, .n_threads = 2};
    CHECK_OK(rm_ctx_new(m, &p, &ctx));
    /* chunks of 4, 1, 3, 4 tokens */
    int cuts[] = {0, 4, 5, 8, 12};
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        int n = cuts[k + 1] - cuts[k];
        int32_t pos[4], seq[4] = {0};
        uint8_t want[4];
        for (int i = 0; i < n; i++) pos[i] = cuts[k] + i, want[i] = 1;
        rm_batch b = {n, prompt + cuts[k], pos, seq, want};
        CHECK_OK(rm_ctx_decode(ctx, &b));
        for (int i = 0; i < n; i++) {
            double d = rm_test_max_rel_diff(full + (size_t)(cuts[k] + i) * 96, rm_ctx_logits(ctx, i), 96);
            if (d > worst) worst = d;
        }
    }
    CHECK_MSG(worst < 1e-5, "incremental vs full: %g", worst);
    free(full);
    rm_ctx_free(ctx);
    rm_model_free(m);
}

TEST(model_mixed_batch_matches_each_sequence_alone) {
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 11, 0.1f, &m));
    if (!m) return;
    /* three sequences of lengths 5, 12, 1 interleaved in one batch */
    const int32_t *seqs[3] = {prompt + 3, prompt, prompt + 9};
    int lens[3] = {5, 12, 1};
    rm_ctx *ctx = NULL;
    rm_ctx_params p = {.n_ctx = 16, .n_seq = 3, .n_batch = 18, .n_threads = 2};
    CHECK_OK(rm_ctx_new(m, &p, &ctx));
    int32_t toks[18], pos[18], seq[18];
    uint8_t want[18];
    int n = 0, done[3] = {0};
    while (n < 18)
        for (int s = 0; s < 3; s++)
            if (done[s] < lens[s]) {
                toks[n] = seqs[s][done[s]], pos[n] = done[s], seq[n] = s, want[n] = 1;
                done[s]++, n++;
            }
    rm_batch b = {n, toks, pos, seq, want};
    CHECK_OK(rm_ctx_decode(ctx, &b));
    double worst = 0;
    for (int s = 0; s < 3; s++) {
        float *alone = rm_test_logits_all(m, seqs[s], lens[s], 1);
        for (int i = 0, k = 0; i < n; i++)
            if (seq[i] == s) {
                double d = rm_test_max_rel_diff(alone + (size_t)k * 96, rm_ctx_logits(ctx, i), 96);
                if (d > worst) worst = d;
                k++;
            }
        free(alone);
    }
    CHECK_MSG(worst < 1e-5, "mixed batch vs alone: %g", worst);
    /* bad batches are refused and leave the cache as it was */
    int32_t bad_tok = 96, p0 = 0, s0 = 0, gap = 9, s2 = 2;
    rm_batch bt = {1, &bad_tok, &p0, &s0, NULL};
    CHECK_ERR(rm_ctx_decode(ctx, &bt), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "token id 96") != NULL);
    rm_batch bg = {1, prompt, &gap, &s2, NULL};
    CHECK_ERR(rm_ctx_decode(ctx, &bg), RAMOLE_ERR_INVALID);
    int32_t next = 1;
    rm_batch ok = {1, prompt, &next, &s2, NULL}; /* sequence 2 holds 1 position */
    CHECK_OK(rm_ctx_decode(ctx, &ok));
    rm_ctx_free(ctx);
    rm_model_free(m);
}

TEST(model_sampler_greedy_topk_and_seed) {
    float logits[8] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f, 0.5f, -3.0f, 1.0f};
    rm_sampler_params p;
    rm_sampler_params_default(&p);
    rm_sampler *s = NULL;
    p.temperature = 0;
    CHECK_OK(rm_sampler_new(&p, 8, &s));
    CHECK(rm_sampler_sample(s, logits, NULL, 0, 0) == 1);
    rm_sampler_free(s);
    /* repetition penalty pushes token 1 below token 3 */
    p.repeat_penalty = 1.5f;
    CHECK_OK(rm_sampler_new(&p, 8, &s));
    int32_t hist[1] = {1};
    CHECK(rm_sampler_sample(s, logits, hist, 1, 0) == 3);
    rm_sampler_free(s);
    /* top-k 2 only ever gives the two best; frequencies follow softmax */
    rm_sampler_params_default(&p);
    p.temperature = 1.0f, p.top_k = 2, p.top_p = 1.0f, p.min_p = 0, p.seed = 42;
    CHECK_OK(rm_sampler_new(&p, 8, &s));
    int counts[8] = {0};
    for (int i = 0; i < 20000; i++) counts[rm_sampler_sample(s, logits, NULL, 0, 0)]++;
    rm_sampler_free(s);
    CHECK(counts[1] + counts[3] == 20000);
    double want1 = 1.0 / (1.0 + exp(1.9 - 2.0));
    CHECK_NEAR(counts[1] / 20000.0, want1, 0.015);
    /* same seed, same draws; min-p cuts the tail */
    rm_sampler *a = NULL, *b = NULL;
    p.top_k = 0, p.min_p = 0.3f;
    CHECK_OK(rm_sampler_new(&p, 8, &a));
    CHECK_OK(rm_sampler_new(&p, 8, &b));
    for (int i = 0; i < 200; i++) {
        int32_t x = rm_sampler_sample(a, logits, NULL, 0, 0), y = rm_sampler_sample(b, logits, NULL, 0, 0);
        CHECK(x == y);
        CHECK(expf(logits[x] - 2.0f) >= 0.3f - 1e-6f);
    }
    rm_sampler_free(a), rm_sampler_free(b);
    p.top_p = 0;
    CHECK_ERR(rm_sampler_new(&p, 8, &a), RAMOLE_ERR_INVALID);
}

/* The sampler as first written: sort the whole vocabulary, then top-k,
 * top-p, min-p, temperature, and draw in sorted order. The fast paths must
 * draw the same tokens (when a filter is on) and the same distribution. */
static int ref_cmp_desc(const void *a, const void *b, void *keys) {
    const float *k = keys;
    float x = k[*(const int32_t *)a], y = k[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

static int32_t ref_sample(const rm_sampler_params *p, const float *logit, int V, uint64_t *rng) {
    int32_t *idx = rm_malloc((size_t)V * sizeof *idx);
    double *prob = rm_malloc((size_t)V * sizeof *prob);
    for (int i = 0; i < V; i++) idx[i] = i;
    qsort_r(idx, (size_t)V, sizeof *idx, ref_cmp_desc, (void *)logit);
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    float mx = logit[idx[0]];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += prob[i] = expf(logit[idx[i]] - mx);
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < n; i++)
            if ((cum += prob[i] / sum) >= p->top_p) {
                n = i + 1;
                break;
            }
    }
    if (p->min_p > 0) {
        int keep = 1;
        while (keep < n && prob[keep] >= p->min_p * prob[0]) keep++;
        n = keep;
    }
    sum = 0;
    for (int i = 0; i < n; i++) sum += prob[i] = expf((logit[idx[i]] - mx) / p->temperature);
    double r = rm_rng_uniform(rng) * sum, acc = 0;
    int32_t got = idx[n - 1];
    for (int i = 0; i < n; i++)
        if (r < (acc += prob[i])) {
            got = idx[i];
            break;
        }
    rm_free(idx), rm_free(prob);
    return got;
}

TEST(model_sampler_partial_sort_matches_full_sort) {
    enum { V = 5000 };
    float *logit = rm_malloc(V * sizeof *logit);
    uint64_t g = 7;
    const struct { float temp, top_p, min_p; int top_k; } cases[] = {
        {1.0f, 0.9f, 0, 0}, {0.7f, 0.5f, 0, 0}, {1.3f, 0.999f, 0, 0}, {1.0f, 1.0f, 0.05f, 0},
        {1.0f, 0.95f, 0.05f, 0}, {0.8f, 0.95f, 0.001f, 0}, {1.0f, 0.9f, 0, 40}, {1.0f, 1.0f, 0, 4999}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        rm_sampler_params p;
        rm_sampler_params_default(&p);
        p.temperature = cases[c].temp, p.top_p = cases[c].top_p, p.min_p = cases[c].min_p, p.top_k = cases[c].top_k;
        p.seed = 100 + c;
        rm_sampler *s = NULL;
        CHECK_OK(rm_sampler_new(&p, V, &s));
        uint64_t rng = p.seed;
        int same = 0;
        for (int draw = 0; draw < 200; draw++) {
            /* flat logits (a long top-p tail), broad, and peaked (a cut inside the first prefix) */
            float scale = draw % 3 == 0 ? 0.5f : draw % 3 == 1 ? 4.0f : 40.0f;
            for (int i = 0; i < V; i++) logit[i] = scale * (float)(rm_rng_uniform(&g) * 2 - 1);
            same += rm_sampler_sample(s, logit, NULL, 0, 0) == ref_sample(&p, logit, V, &rng);
        }
        if (same != 200) fprintf(stderr, "case %zu: %d of 200 draws equal the full sort's\n", c, same);
        CHECK(same == 200);
        rm_sampler_free(s);
    }
    /* no filter at all: drawn in id order, so only the distribution can match */
    float small[6] = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.5f};
    rm_sampler_params p;
    rm_sampler_params_default(&p);
    p.temperature = 0.9f, p.top_k = 0, p.top_p = 1.0f, p.min_p = 0;
    rm_sampler *s = NULL;
    CHECK_OK(rm_sampler_new(&p, 6, &s));
    int counts[6] = {0};
    for (int i = 0; i < 60000; i++) counts[rm_sampler_sample(s, small, NULL, 0, 0)]++;
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp(small[i] / 0.9);
    for (int i = 0; i < 6; i++) CHECK_NEAR(counts[i] / 60000.0, exp(small[i] / 0.9) / z, 0.01);
    rm_sampler_free(s);
    rm_free(logit);
}

/* OpenAI's frequency and presence penalties and logit biases against the
 * formula applied naively (each output token counted by a scan), then the full-sort
 * sampler: the same draws, greedy and filtered. The prompt's tokens are
 * not penalised. */
TEST(model_sampler_openai_penalties_match_the_formula) {
    enum { V = 300, N_HIST = 120 };
    float logit[V], pen[V];
    int32_t hist[N_HIST];
    uint64_t g = 11;
    const struct { float freq, pres, temp; } cases[] = {
        {0.5f, 0.0f, 0}, {0.0f, 0.8f, 0}, {0.7f, 0.3f, 0}, {-0.6f, 0.4f, 0}, {1.2f, 0.5f, 1.0f}, {0.3f, -0.9f, 0.7f}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        rm_sampler_params p;
        rm_sampler_params_default(&p);
        p.temperature = cases[c].temp, p.top_k = 0, p.top_p = 0.9f, p.min_p = 0, p.seed = 31 + c;
        p.frequency_penalty = cases[c].freq, p.presence_penalty = cases[c].pres;
        /* from the third case on, OpenAI's logit_bias on three tokens as well */
        const rm_logit_bias bias[3] = {{3, 4.0f}, {17, -100.0f}, {250, 1.5f}};
        if (c >= 2) p.logit_bias = bias, p.n_logit_bias = 3;
        rm_sampler *s = NULL;
        CHECK_OK(rm_sampler_new(&p, V, &s));
        uint64_t rng = p.seed;
        int same = 0, moved = 0;
        for (int draw = 0; draw < 100; draw++) {
            for (int i = 0; i < V; i++) logit[i] = 3.0f * (float)(rm_rng_uniform(&g) * 2 - 1);
            /* few distinct ids, so tokens repeat; the last n_out are the output */
            for (int i = 0; i < N_HIST; i++) hist[i] = (int32_t)(rm_rng_uniform(&g) * 40);
            int n_out = draw % 5 == 0 ? 0 : 1 + draw % 90;
            memcpy(pen, logit, sizeof pen);
            for (int t = 0; t < V; t++) {
                int cnt = 0;
                for (int i = N_HIST - n_out; i < N_HIST; i++) cnt += hist[i] == t;
                if (cnt) pen[t] -= (float)cnt * p.frequency_penalty + p.presence_penalty;
            }
            for (int k = 0; k < p.n_logit_bias; k++) pen[p.logit_bias[k].id] += p.logit_bias[k].bias;
            int32_t got = rm_sampler_sample(s, logit, hist, N_HIST, n_out), want;
            if (p.temperature <= 0) {
                want = 0;
                for (int i = 1; i < V; i++)
                    if (pen[i] > pen[want]) want = i;
                int32_t plain = 0;
                for (int i = 1; i < V; i++)
                    if (logit[i] > logit[plain]) plain = i;
                moved += plain != want;
            } else
                want = ref_sample(&p, pen, V, &rng);
            same += got == want;
        }
        if (same != 100) fprintf(stderr, "case %zu: %d of 100 draws as the formula's\n", c, same);
        CHECK(same == 100);
        if (p.temperature <= 0) CHECK(moved > 0); /* the penalties changed some greedy choices */
        rm_sampler_free(s);
    }
    rm_sampler_params p;
    rm_sampler_params_default(&p);
    p.presence_penalty = NAN;
    rm_sampler *s = NULL;
    CHECK_ERR(rm_sampler_new(&p, V, &s), RAMOLE_ERR_INVALID);
    /* a bias of a token outside the vocabulary is refused, naming it */
    rm_sampler_params_default(&p);
    const rm_logit_bias far = {V, 1.0f};
    p.logit_bias = &far, p.n_logit_bias = 1;
    CHECK_ERR(rm_sampler_new(&p, V, &s), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "token 300 is outside the vocabulary of 300") != NULL);
    /* +100 on one token: greedy always takes it; the sampler keeps its own copy */
    rm_logit_bias one = {42, 100.0f};
    rm_sampler_params_default(&p);
    p.temperature = 0, p.logit_bias = &one, p.n_logit_bias = 1;
    CHECK_OK(rm_sampler_new(&p, V, &s));
    one.id = 7;
    float flat[V];
    for (int i = 0; i < V; i++) flat[i] = (float)(i % 13);
    if (s) CHECK(rm_sampler_sample(s, flat, NULL, 0, 0) == 42);
    rm_sampler_free(s);
}

/* ---- bad model files --------------------------------------------------------- */

static char *make_tiny_hf(const char *name) {
    rm_model_config c = tiny_config(RM_ARCH_LLAMA);
    rm_model *m = NULL;
    char *dir = tmp_path(name);
    if (rm_model_random(&c, 1, 0.1f, &m) != RAMOLE_OK || rm_model_save(m, RM_SOURCE_HF, -1, dir) != RAMOLE_OK) {
        rm_free(dir);
        dir = NULL;
    }
    rm_model_free(m);
    return dir;
}

static void replace_in_file(const char *path, const char *from, const char *to) {
    char *text = NULL;
    size_t n;
    if (rm_file_read(path, &text, &n) != RAMOLE_OK) return;
    char *at = strstr(text, from);
    if (at) {
        char *out = rm_asprintf("%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
        rm_file_write_atomic(path, out, strlen(out));
        rm_free(out);
    }
    rm_free(text);
}

static void expect_open_error(const char *path, rm_status want, const char *needle) {
    rm_model *m = NULL;
    rm_status st = rm_model_open(path, &m);
    CHECK_MSG(st == want, "open %s: got %s (%s), want %s", path, ramole_status_str(st), ramole_last_error(),
              ramole_status_str(want));
    CHECK_MSG(strstr(ramole_last_error(), needle) != NULL, "message '%s' lacks '%s'", ramole_last_error(), needle);
    CHECK(m == NULL);
}

TEST(model_bad_files_are_refused_with_clear_errors) {
    char *dir = make_tiny_hf("bad_shape");
    CHECK(dir != NULL);
    if (!dir) return;
    char *cfg = rm_path_join(dir, "config.json"), *st = rm_path_join(dir, "model.safetensors");
    replace_in_file(cfg, "\"intermediate_size\": 96", "\"intermediate_size\": 128");
    expect_open_error(dir, RAMOLE_ERR_MISMATCH, "model.layers.0.mlp.gate_proj.weight");
    replace_in_file(cfg, "\"intermediate_size\": 128", "\"intermediate_size\": 96");
    replace_in_file(cfg, "\"model_type\": \"llama\"", "\"model_type\": \"gpt_neox\"");
    expect_open_error(dir, RAMOLE_ERR_UNSUPPORTED, "unknown architecture \"gpt_neox\"");
    replace_in_file(cfg, "\"model_type\": \"gpt_neox\"", "\"model_type\": \"llama\"");
    replace_in_file(cfg, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    expect_open_error(dir, RAMOLE_ERR_NOT_FOUND, "model.layers.2.input_layernorm.weight is missing");
    replace_in_file(cfg, "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 2");
    replace_in_file(cfg, "\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
    expect_open_error(dir, RAMOLE_ERR_FORMAT, "does not divide hidden_size");
    replace_in_file(cfg, "\"num_attention_heads\": 3", "\"num_attention_heads\": 4");
    rm_file_write_atomic(cfg, "{\"model_type\": \"llama\", ", 25);
    expect_open_error(dir, RAMOLE_ERR_FORMAT, "config.json: not valid JSON");
    /* a truncated weights file */
    char *good = make_tiny_hf("bad_trunc");
    char *st2 = rm_path_join(good, "model.safetensors");
    CHECK(truncate(st2, 5000) == 0);
    expect_open_error(good, RAMOLE_ERR_FORMAT, "model.safetensors");
    expect_open_error("/nonexistent/model", RAMOLE_ERR_NOT_FOUND, "/nonexistent/model");
    unlink(st2);
    expect_open_error(good, RAMOLE_ERR_NOT_FOUND, "no model.safetensors");
    rm_free(cfg), rm_free(st), rm_free(st2), rm_free(dir), rm_free(good);
}

TEST(model_gguf_corruption_never_crashes) {
    rm_model_config c = tiny_config(RM_ARCH_QWEN2);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 5, 0.1f, &m));
    char *path = tmp_path("corrupt.gguf"), *cut = tmp_path("corrupt_cut.gguf");
    CHECK_OK(rm_model_save(m, RM_SOURCE_GGUF, RM_TYPE_Q8_0, path));
    rm_model_free(m);
    char *data = NULL;
    size_t n = 0;
    CHECK_OK(rm_file_read(path, &data, &n));
    if (!data) return;
    /* every cut point through the header, then coarser through the data */
    int refused = 0, tried = 0;
    for (size_t len = 0; len < n; len += len < 4096 ? 7 : 4093) {
        rm_file_write_atomic(cut, data, len);
        rm_model *x = NULL;
        rm_status st = rm_model_open(cut, &x);
        tried++;
        if (st != RAMOLE_OK && strstr(ramole_last_error(), "corrupt_cut.gguf")) refused++;
        rm_model_free(x);
    }
    CHECK_MSG(refused == tried, "%d of %d truncated files refused with the file named", refused, tried);
    rm_free(data), rm_free(path), rm_free(cut);
}
