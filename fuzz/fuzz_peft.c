/*
 * fuzz_peft.c — PEFT adapter folders against a tiny base: the input is
 * adapter_config.json (r, lora_alpha, target_modules as a list or a regex,
 * rank_pattern, alpha_pattern, layers_to_transform, use_rslora, use_dora,
 * ...), optionally followed by a NUL byte and the bytes of
 * adapter_model.safetensors; without them, the tensors of a rank-4 adapter
 * on every module (written once) are used.
 */
#include "fuzz_util.h"
#include "lora/adapter.h"

static rm_model *base;
static char *fixed_st;
static size_t fixed_st_len;

static const char *save_random(int rank, unsigned mask, uint64_t seed) {
    rm_adapter *a = NULL;
    const char *dir = fuzz_path(1, "gen");
    if (rm_adapter_random(base, rank, 2.0f * rank, mask, seed, 0.2f, &a) != RAMOLE_OK ||
        rm_adapter_save_peft(a, base, dir) != RAMOLE_OK)
        abort();
    rm_adapter_free(a);
    return dir;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    base = fuzz_tiny_model();
    char path[700];
    const unsigned all = (1u << RM_TARGET_COUNT) - 1;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", save_random(4, all, 3));
    if (rm_file_read(path, &fixed_st, &fixed_st_len) != RAMOLE_OK) abort();
    if (mkdir(fuzz_path(0, "peft"), 0700) != 0) abort();
    if (fuzz_seed_dir()) { /* configs of the writer; one whole folder (config + NUL + tensors) */
        snprintf(path, sizeof path, "%s/adapter_config.json", fuzz_path(1, "gen"));
        fuzz_seed_file("config-all-r4.json", path);
        const char *dir = save_random(2, (1u << RM_TARGET_Q) | (1u << RM_TARGET_V), 4);
        char st[700];
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        snprintf(st, sizeof st, "%s/adapter_model.safetensors", dir);
        fuzz_seed_join("folder-qv-r2", path, st);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *config, *tensors;
    size_t nc, nt;
    fuzz_split(data, size, "", 1, &config, &nc, &tensors, &nt);
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", fuzz_path(0, "peft"));
    fuzz_write(path, config, nc);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", fuzz_path(0, "peft"));
    if (nt) fuzz_write(path, tensors, nt);
    else fuzz_write(path, fixed_st, fixed_st_len);
    rm_adapter *a = NULL;
    if (rm_adapter_load_peft(base, fuzz_path(0, "peft"), &a) == RAMOLE_OK) {
        if (rm_adapter_check(a, base) != RAMOLE_OK) abort(); /* a loaded adapter fits its base */
        rm_adapter_free(a);
    }
    return 0;
}
