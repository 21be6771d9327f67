/*
 * fuzz_gguf_lora.c — GGUF LoRA files (llama.cpp's adapter format) loaded
 * against a tiny base: general.type, the adapter.lora.* keys, tensor names,
 * ranks and shapes against the base's modules.
 */
#include "fuzz_util.h"
#include "lora/adapter.h"

static rm_model *base;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    base = fuzz_tiny_model();
    if (fuzz_seed_dir()) { /* adapters of the writer: rank 2 on q and v, rank 4 everywhere, f16 */
        static const struct { int rank; unsigned mask; int type; const char *name; } kinds[] = {
            {2, (1u << RM_TARGET_Q) | (1u << RM_TARGET_V), RM_TYPE_F32, "lora-qv-r2.gguf"},
            {4, (1u << RM_TARGET_COUNT) - 1, RM_TYPE_F32, "lora-all-r4.gguf"},
            {2, 1u << RM_TARGET_DOWN, RM_TYPE_F16, "lora-down-f16.gguf"}};
        for (int i = 0; i < 3; i++) {
            rm_adapter *a = NULL;
            if (rm_adapter_random(base, kinds[i].rank, 2.0f * kinds[i].rank, kinds[i].mask, 5 + (uint64_t)i, 0.2f,
                                  &a) != RAMOLE_OK ||
                rm_adapter_convert(a, base, kinds[i].type) != RAMOLE_OK ||
                rm_adapter_save_gguf(a, base, fuzz_path(0, "a.gguf")) != RAMOLE_OK)
                abort();
            fuzz_seed_file(kinds[i].name, fuzz_path(0, "a.gguf"));
            rm_adapter_free(a);
        }
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(0, "adapter.gguf");
    fuzz_write(path, data, size);
    rm_adapter *a = NULL;
    if (rm_adapter_load_gguf(base, path, &a) == RAMOLE_OK) {
        if (rm_adapter_check(a, base) != RAMOLE_OK) abort(); /* a loaded adapter fits its base */
        rm_adapter_free(a);
    }
    return 0;
}
