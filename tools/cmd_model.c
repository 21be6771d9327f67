/*
 * cmd_model.c — commands about model files: info, convert, random-model.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_info(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: ramole info MODEL\n");
        return 2;
    }
    ramole_model *m;
    ramole_status st = ramole_model_open(argv[1], &m);
    if (st != RAMOLE_OK) return cli_fail("info", st);
    ramole_model_info c;
    ramole_model_get_info(m, &c);
    printf("model:        %s (%s)\n", argv[1], c.format == RAMOLE_FORMAT_HF ? "Hugging Face folder" : "GGUF");
    printf("architecture: %s\n", c.arch);
    printf("vocab:        %d\n", c.vocab_size);
    printf("hidden:       %d\n", c.hidden);
    printf("ffn:          %d\n", c.ffn);
    printf("layers:       %d\n", c.n_layers);
    printf("heads:        %d (kv %d, head_dim %d)\n", c.n_heads, c.n_kv_heads, c.head_dim);
    printf("context:      %d\n", c.max_pos);
    printf("rope:         %s, theta %g, scaling %s", c.rope_neox ? "neox" : "normal", (double)c.rope_theta,
           c.rope_scaling);
    if (strcmp(c.rope_scaling, "none")) printf(" x%g", (double)c.rope_factor);
    printf("%s\n", c.rope_freq_factors ? " (rope_freqs)" : "");
    printf("rms_norm_eps: %g\n", (double)c.rms_eps);
    printf("qkv bias:     %s\n", c.qkv_bias ? "yes" : "no");
    printf("tied:         %s\n", c.tied_embeddings ? "yes" : "no");
    printf("bos/eos:      %d / %d\n", c.bos_id, c.eos_id);
    printf("weights:      embd %s, output %s, layers %s\n", ramole_type_name(c.embd_type),
           ramole_type_name(c.output_type), ramole_type_name(c.main_type));
    printf("parameters:   %lld (%.3f B)\n", (long long)c.n_params, c.n_params / 1e9);
    printf("bytes:        %lld (%.1f MiB)\n", (long long)c.n_bytes, c.n_bytes / 1048576.0);
    if (c.packed_bytes) /* matrices packed at load (q4_k, q6_k, q8_0, f16, bf16): held in place of their file pages */
        printf("packed:       %lld (%.1f MiB) in memory for the GEMM kernels, in place of their file blocks\n",
               (long long)c.packed_bytes, c.packed_bytes / 1048576.0);
    ramole_model_free(m);
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
    if (ramole_adapter_is_adapter(in)) /* a path that is no adapter (or nothing) is opened as a model below */
        return cli_convert_adapter(in, out, base, type);
    ramole_model *m;
    ramole_status st = ramole_model_open(in, &m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    ramole_model_format fmt = cli_ends_with(out, ".gguf") ? RAMOLE_FORMAT_GGUF : RAMOLE_FORMAT_HF;
    st = ramole_model_save(m, fmt, type, out);
    ramole_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s (%s)\n", out, fmt == RAMOLE_FORMAT_GGUF ? "GGUF" : "Hugging Face folder");
    return 0;
}

int cmd_random_model(int argc, char **argv) {
    const char *cmd = "random-model", *arch_s = NULL, *preset_s = NULL, *out = NULL, *format = NULL, *tok = NULL, *v;
    int type = RAMOLE_TYPE_F32;
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
    if (!ramole_arch_known(arch_s)) {
        fprintf(stderr, "ramole %s: unknown architecture '%s' (llama, mistral, qwen2)\n", cmd, arch_s);
        return 2;
    }
    ramole_model_shape shape;
    if (!ramole_model_preset(arch_s, preset_s, &shape)) {
        fprintf(stderr, "ramole %s: unknown preset '%s' (tiny, small, tinyllama-1.1b, qwen2.5-0.5b)\n", cmd, preset_s);
        return 2;
    }
    ramole_model_format fmt = cli_ends_with(out, ".gguf") ? RAMOLE_FORMAT_GGUF : RAMOLE_FORMAT_HF;
    if (format && !strcmp(format, "gguf")) fmt = RAMOLE_FORMAT_GGUF;
    else if (format && !strcmp(format, "hf")) fmt = RAMOLE_FORMAT_HF;
    else if (format) {
        fprintf(stderr, "ramole %s: --format must be hf or gguf, got '%s'\n", cmd, format);
        return 2;
    }
    ramole_model *m;
    ramole_status st = ramole_model_random(&shape, seed, (float)std, tok, &m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    st = ramole_model_save(m, fmt, type, out);
    ramole_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s: %s %s, %s\n", out, arch_s, preset_s, ramole_type_name(type));
    return 0;
}
