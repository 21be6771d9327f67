/*
 * cmd_lora.c — commands about adapters: random-adapter, merge, and the
 * adapter side of convert (PEFT folder <-> GGUF LoRA).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_random_adapter(int argc, char **argv) {
    const char *cmd = "random-adapter", *model = NULL, *out = NULL, *format = NULL, *v;
    long rank = 0;
    double alpha = -1, std = 0.02;
    unsigned mask = (1u << RAMOLE_TARGET_COUNT) - 1;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m")) { if (!(model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--format")) { if (!(format = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--rank")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, RAMOLE_MAX_RANK, &rank)) return 2; }
        else if (!strcmp(a, "--alpha")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_float(cmd, a, v, -1e6, 1e6, &alpha)) return 2; }
        else if (!strcmp(a, "--std")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_float(cmd, a, v, 0, 10, &std)) return 2; }
        else if (!strcmp(a, "--targets")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_targets(cmd, v, &mask)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_u64(cmd, a, v, &seed)) return 2; }
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return 2;
        }
    }
    if (!model || !out || !rank) {
        fprintf(stderr, "usage: ramole random-adapter -m MODEL --rank R [--alpha A] [--targets q,k,v,o,gate,up,down] "
                        "[--seed S] -o OUT [--format peft|gguf]\n");
        return 2;
    }
    bool gguf = format ? !strcmp(format, "gguf") : cli_ends_with(out, ".gguf");
    if (format && !gguf && strcmp(format, "peft")) {
        fprintf(stderr, "ramole %s: --format must be peft or gguf, got '%s'\n", cmd, format);
        return 2;
    }
    ramole_model *m = NULL;
    ramole_adapter *a = NULL;
    ramole_adapter_random_params rp = {.rank = (int)rank, .alpha = alpha < 0 ? 2.0f * rank : (float)alpha,
                                       .targets = mask, .seed = seed, .std = (float)std};
    ramole_status st = ramole_model_open(model, &m);
    if (st == RAMOLE_OK) st = ramole_adapter_random(m, &rp, &a);
    if (st == RAMOLE_OK) st = ramole_adapter_save(a, out, gguf);
    ramole_adapter_free(a);
    ramole_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s (rank %ld, %s)\n", out, rank, gguf ? "GGUF LoRA" : "PEFT folder");
    return 0;
}

int cmd_merge(int argc, char **argv) {
    const char *cmd = "merge", *model = NULL, *out = NULL, *v;
    const char *paths[RAMOLE_MAX_ADAPTERS];
    float weights[RAMOLE_MAX_ADAPTERS];
    int n = 0, type = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m")) { if (!(model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--type")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!cli_plan(cmd, "--type", v, &type)) return 2;
        } else if (!strcmp(a, "--lora")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (n == RAMOLE_MAX_ADAPTERS) {
                fprintf(stderr, "ramole %s: at most %d adapters\n", cmd, RAMOLE_MAX_ADAPTERS);
                return 2;
            }
            if (!cli_lora_spec(cmd, (char *)v, &weights[n])) return 2;
            paths[n++] = v;
        } else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return 2;
        }
    }
    if (!model || !out || !n) {
        fprintf(stderr, "usage: ramole merge -m MODEL --lora PATH[:W] [--lora ...] -o OUT [--type T]\n");
        return 2;
    }
    ramole_model *m = NULL, *merged = NULL;
    ramole_adapter *ad[RAMOLE_MAX_ADAPTERS] = {0};
    ramole_status st = ramole_model_open(model, &m);
    for (int i = 0; st == RAMOLE_OK && i < n; i++) st = ramole_adapter_load(m, paths[i], &ad[i]);
    if (st == RAMOLE_OK) st = ramole_model_merge(m, ad, weights, n, &merged);
    if (st == RAMOLE_OK) {
        /* requantise to the base's types (its mix, as q4_k_m) unless told otherwise */
        int t = type != -1 ? type : ramole_model_plan_of(m);
        ramole_model_format fmt = cli_ends_with(out, ".gguf") ? RAMOLE_FORMAT_GGUF : RAMOLE_FORMAT_HF;
        if (fmt == RAMOLE_FORMAT_HF && type == -1 && (t < 0 || ramole_type_is_quant((ramole_type)t))) t = RAMOLE_TYPE_F32;
        st = ramole_model_save(merged, fmt, t, out);
    }
    for (int i = 0; i < n; i++) ramole_adapter_free(ad[i]);
    ramole_model_free(merged);
    ramole_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s (%d adapter%s merged)\n", out, n, n > 1 ? "s" : "");
    return 0;
}

int cli_convert_adapter(const char *in, const char *out, const char *base, int type) {
    const char *cmd = "convert";
    if (!base) {
        fprintf(stderr, "ramole %s: %s is an adapter; converting it needs --base MODEL\n", cmd, in);
        return 2;
    }
    if (type < -1 || (type >= 0 && ramole_type_is_quant((ramole_type)type))) {
        fprintf(stderr, "ramole %s: adapters are written as f32, f16 or bf16, not %s\n", cmd, ramole_type_name(type));
        return 2;
    }
    ramole_model *m = NULL;
    ramole_adapter *a = NULL;
    ramole_status st = ramole_model_open(base, &m);
    if (st == RAMOLE_OK) st = ramole_adapter_load(m, in, &a);
    if (st == RAMOLE_OK && type >= 0) st = ramole_adapter_convert(a, (ramole_type)type);
    bool gguf = cli_ends_with(out, ".gguf");
    if (st == RAMOLE_OK) st = ramole_adapter_save(a, out, gguf);
    ramole_adapter_free(a);
    ramole_model_free(m);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    fprintf(stderr, "wrote %s (%s)\n", out, gguf ? "GGUF LoRA" : "PEFT folder");
    return 0;
}
