/*
 * cmd_model.c — commands about model files: info, convert, random-model.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "lora/adapter.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

int cmd_info(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: ramole info MODEL\n");
        return 2;
    }
    rm_model *m;
    rm_status st = rm_model_open(argv[1], &m);
    if (st != RAMOLE_OK) return cli_fail("info", st);
    const rm_model_config *c = &m->cfg;
    int64_t params, bytes;
    rm_model_size(m, &params, &bytes);
    static const char *scaling[] = {"none", "linear", "llama3"};
    printf("model:        %s (%s)\n", argv[1], m->source == RM_SOURCE_HF ? "Hugging Face folder" : "GGUF");
    printf("architecture: %s\n", rm_arch_name(c->arch));
    printf("vocab:        %d\n", c->vocab_size);
    printf("hidden:       %d\n", c->hidden);
    printf("ffn:          %d\n", c->ffn);
    printf("layers:       %d\n", c->n_layers);
    printf("heads:        %d (kv %d, head_dim %d)\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("context:      %d\n", c->max_pos);
    printf("rope:         %s, theta %g, scaling %s", c->rope.style == RM_ROPE_NEOX ? "neox" : "normal",
           (double)c->rope.theta, scaling[c->rope.scaling]);
    if (c->rope.scaling != RM_ROPE_SCALING_NONE) printf(" x%g", (double)c->rope.factor);
    printf("%s\n", m->rope_freq_factors ? " (rope_freqs)" : "");
    printf("rms_norm_eps: %g\n", (double)c->rms_eps);
    printf("qkv bias:     %s\n", c->qkv_bias ? "yes" : "no");
    printf("tied:         %s\n", c->tied_embeddings ? "yes" : "no");
    printf("bos/eos:      %d / %d\n", c->bos_id, c->eos_id);
    printf("weights:      embd %s, output %s, layers %s\n", rm_type_name(m->tok_embd.type),
           rm_type_name(m->output.type), rm_type_name(rm_model_main_type(m)));
    printf("parameters:   %lld (%.3f B)\n", (long long)params, params / 1e9);
    printf("bytes:        %lld (%.1f MiB)\n", (long long)bytes, bytes / 1048576.0);
    if (m->packed_bytes) /* q4_k/q6_k repacked at load: held instead of those matrices' file pages */
        printf("packed:       %zu (%.1f MiB) in memory for the int8 kernels, in place of their file blocks\n",
               m->packed_bytes, m->packed_bytes / 1048576.0);
    rm_model_free(m);
    return 0;
}

static bool parse_type(const char *cmd, const char *v, int *type) { return cli_plan(cmd, "--type", v, type); }

int cmd_convert(int argc, char **argv) {
    const char *cmd = "convert", *in = NULL, *out = NULL, *base = NULL, *v;
    int type = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--base")) {
            if (!(base = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--type")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !parse_type(cmd, v, &type)) return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, argv[i]);
            return 2;
        } else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else {
            fprintf(stderr, "ramole %s: too many arguments\n", cmd);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "usage: ramole convert IN OUT [--type f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|q5_k|q6_k|q4_k_m] [--base MODEL]\n");
        return 2;
    }
    rm_adapter_format af; /* a path that is no adapter (or nothing) is opened as a model below */
    if (rm_adapter_format_of(in, &af) == RAMOLE_OK && af != RM_ADAPTER_FORMAT_NONE)
        return cli_convert_adapter(in, out, base, type);
    rm_model *m;
    rm_status st = rm_model_open(in, &m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    rm_source_kind fmt = cli_ends_with(out, ".gguf") ? RM_SOURCE_GGUF : RM_SOURCE_HF;
    st = rm_model_save(m, fmt, type, out);
    rm_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s (%s)\n", out, fmt == RM_SOURCE_GGUF ? "GGUF" : "Hugging Face folder");
    return 0;
}

typedef struct {
    const char *name;
    int hidden, ffn, layers, heads, kv_heads, vocab, max_pos;
    bool tied;
    float theta, eps;
} preset;

static const preset presets[] = {
    {"tiny", 64, 160, 2, 4, 2, 256, 512, false, 10000.0f, 1e-5f},
    {"small", 256, 704, 4, 8, 4, 1024, 1024, false, 10000.0f, 1e-5f},
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, false, 10000.0f, 1e-5f},
    {"qwen2.5-0.5b", 896, 4864, 24, 14, 2, 151936, 32768, true, 1000000.0f, 1e-6f},
};

int cmd_random_model(int argc, char **argv) {
    const char *cmd = "random-model", *arch_s = NULL, *preset_s = NULL, *out = NULL, *format = NULL, *tok = NULL, *v;
    int type = RM_TYPE_F32;
    uint64_t seed = 1;
    double std = 0.02;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--arch")) { if (!(arch_s = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--preset")) { if (!(preset_s = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--format")) { if (!(format = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--tokenizer")) { if (!(tok = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--type")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !parse_type(cmd, v, &type)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_u64(cmd, a, v, &seed)) return 2; }
        else if (!strcmp(a, "--std")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_float(cmd, a, v, 0, 10, &std)) return 2; }
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return 2;
        }
    }
    if (!arch_s || !preset_s || !out) {
        fprintf(stderr, "usage: ramole random-model --arch llama|mistral|qwen2 --preset NAME -o OUT "
                        "[--format hf|gguf] [--type f32|f16|bf16|q8_0|q4_0|...|q4_k_m] [--seed S]\n");
        return 2;
    }
    rm_arch arch;
    if (!rm_arch_from_name(arch_s, &arch)) {
        fprintf(stderr, "ramole %s: unknown architecture '%s' (llama, mistral, qwen2)\n", cmd, arch_s);
        return 2;
    }
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, preset_s)) p = &presets[i];
    if (!p) {
        fprintf(stderr, "ramole %s: unknown preset '%s' (tiny, small, tinyllama-1.1b, qwen2.5-0.5b)\n", cmd, preset_s);
        return 2;
    }
    rm_source_kind fmt = cli_ends_with(out, ".gguf") ? RM_SOURCE_GGUF : RM_SOURCE_HF;
    if (format && !strcmp(format, "gguf")) fmt = RM_SOURCE_GGUF;
    else if (format && !strcmp(format, "hf")) fmt = RM_SOURCE_HF;
    else if (format) {
        fprintf(stderr, "ramole %s: --format must be hf or gguf, got '%s'\n", cmd, format);
        return 2;
    }
    rm_model_config c;
    rm_model_config_defaults(&c, arch);
    c.hidden = p->hidden;
    c.ffn = p->ffn;
    c.n_layers = p->layers;
    c.n_heads = p->heads;
    c.n_kv_heads = p->kv_heads;
    c.head_dim = p->hidden / p->heads;
    c.vocab_size = p->vocab;
    c.max_pos = p->max_pos;
    c.tied_embeddings = p->tied;
    c.rope.theta = p->theta;
    c.rope.n_rot = c.head_dim;
    c.rms_eps = p->eps;
    c.bos_id = 1;
    c.eos_id = 2;
    if (tok) { /* the vocabulary grows to hold the tokenizer's tokens */
        rm_tok *t = NULL;
        rm_status ts = rm_tok_load(tok, &t);
        if (ts != RAMOLE_OK) return cli_fail(cmd, ts);
        if (rm_tok_vocab_size(t) > c.vocab_size) c.vocab_size = rm_tok_vocab_size(t);
        int32_t bos = rm_tok_bos(t), eos = rm_tok_eos(t);
        c.bos_id = bos >= 0 ? bos : -1;
        c.eos_id = eos >= 0 ? eos : -1;
        rm_tok_free(t);
    }
    rm_model *m;
    rm_status st = rm_model_random(&c, seed, (float)std, &m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    if (tok) st = rm_model_set_tokenizer(m, tok);
    if (st == RAMOLE_OK) st = rm_model_save(m, fmt, type, out);
    rm_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s: %s %s, %s\n", out, arch_s, preset_s, type == RM_MODEL_PLAN_Q4_K_M ? "q4_k_m" : rm_type_name((rm_type)type));
    return 0;
}
