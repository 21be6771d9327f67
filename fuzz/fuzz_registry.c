/*
 * fuzz_registry.c — the registry's upload path: a samples JSONL file and an
 * adapter file, as `ramole registry add` takes them, into a SQLite registry
 * (in the harness's scratch folder) of a tiny base. The input is the
 * samples text, the line "#ADAPTER", then the adapter bytes (a GGUF LoRA
 * file). rm_reg_samples_load reads the samples; when they load,
 * rm_registry_adapter_add validates the name, samples and file, loads,
 * screens (finite values, norms, the KL probe) and embeds the adapter; an
 * adapter that is added is removed again, so the registry stays small.
 */
#include "fuzz_util.h"
#include "lora/adapter.h"
#include "registry/registry.h"

#define SEP "\n#ADAPTER\n"

static rm_registry *reg;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    rm_model *m = fuzz_tiny_model();
    const char *base_dir = fuzz_path(0, "base");
    if (rm_model_save(m, RM_SOURCE_HF, RM_TYPE_F32, base_dir) != RAMOLE_OK) abort();
    if (fuzz_seed_dir()) { /* samples + a rank-2 q/v adapter of the base */
        rm_adapter *a = NULL;
        if (rm_adapter_random(m, 2, 4.0f, (1u << RM_TARGET_Q) | (1u << RM_TARGET_V), 5, 0.05f, &a) ||
            rm_adapter_save_gguf(a, m, fuzz_path(1, "a.gguf")))
            abort();
        rm_adapter_free(a);
        char *ad = NULL;
        size_t na = 0;
        if (rm_file_read(fuzz_path(1, "a.gguf"), &ad, &na)) abort();
        static const char samples[] = "{\"input\": \"the owl speaks\"}\n{\"input\": \"hoot hoot\", \"output\": \"x\"}";
        size_t ns = sizeof samples - 1, nsep = strlen(SEP);
        char *seed = malloc(ns + nsep + na);
        memcpy(seed, samples, ns), memcpy(seed + ns, SEP, nsep), memcpy(seed + ns + nsep, ad, na);
        fuzz_seed("upload-gguf", seed, ns + nsep + na);
        free(seed), rm_free(ad);
        exit(0);
    }
    rm_model_free(m);
    char url[600];
    snprintf(url, sizeof url, "sqlite:%s", fuzz_path(2, "registry.db"));
    rm_registry_init_opts o = {.model = base_dir, .layer = RM_HIDDEN_FINAL, .actor = "fuzz"};
    if (rm_registry_create(url, &o, &reg) != RAMOLE_OK) {
        fprintf(stderr, "fuzz: registry: %s\n", ramole_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *samples, *adapter;
    size_t ns, na;
    fuzz_split(data, size, SEP, strlen(SEP), &samples, &ns, &adapter, &na);
    const char *spath = fuzz_path(0, "samples.jsonl"), *apath = fuzz_path(1, "adapter.gguf");
    fuzz_write(spath, samples, ns);
    char **s = NULL;
    int n = 0;
    if (rm_reg_samples_load(spath, RM_REG_SAMPLES_MAX, &s, &n) != RAMOLE_OK) return 0;
    fuzz_write(apath, adapter, na);
    rm_reg_add_opts o = {.path = apath, .name = "fuzz", .samples = (const char *const *)s, .n_samples = n,
                         .actor = "fuzz"};
    int64_t id;
    if (rm_registry_adapter_add(reg, &o, &id) == RAMOLE_OK &&
        rm_registry_adapter_remove(reg, NULL, "fuzz", "fuzz") != RAMOLE_OK)
        abort();
    rm_reg_samples_free(s, n);
    return 0;
}
