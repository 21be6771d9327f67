/*
 * fuzz_gguf.c — GGUF files as ramole reads them: rm_gguf_open_mem (every
 * length, count, type and offset in the header), then every getter on
 * every key and tensor, then the same bytes as a model file (rm_model_open:
 * the architecture keys, the tensor set, the tokenizer keys).
 */
#include "formats/gguf.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) { /* the tiny model (and its tokenizer keys) as f32, f16 and q8_0 GGUF */
        rm_model *m = fuzz_tiny_model();
        static const struct { int type; const char *name; } kinds[] = {
            {RM_TYPE_F32, "model-f32.gguf"}, {RM_TYPE_F16, "model-f16.gguf"}, {RM_TYPE_Q8_0, "model-q8_0.gguf"}};
        for (int i = 0; i < 3; i++) {
            if (rm_model_save(m, RM_SOURCE_GGUF, kinds[i].type, fuzz_path(0, "m.gguf")) != RAMOLE_OK) abort();
            fuzz_seed_file(kinds[i].name, fuzz_path(0, "m.gguf"));
        }
        rm_model_free(m);
        exit(0);
    }
    return 0;
}

static void walk(const rm_gguf *g) {
    for (int64_t i = 0; i < rm_gguf_kv_count(g); i++) {
        const char *key = rm_gguf_kv_key(g, i);
        if (rm_gguf_kv_find(g, key) < 0) abort();
        uint32_t u;
        int64_t v;
        float f;
        bool b;
        const char *s;
        size_t n;
        if (rm_gguf_get_u32(g, key, &u) == RAMOLE_OK) fuzz_sink += u;
        if (rm_gguf_get_i64(g, key, &v) == RAMOLE_OK) fuzz_sink += (uint64_t)v;
        if (rm_gguf_get_f32(g, key, &f) == RAMOLE_OK) fuzz_sink += f > 0;
        if (rm_gguf_get_bool(g, key, &b) == RAMOLE_OK) fuzz_sink += b;
        if (rm_gguf_get_str(g, key, &s, &n) == RAMOLE_OK) for (size_t j = 0; j < n; j++) fuzz_sink += (uint8_t)s[j];
        rm_gguf_vtype et;
        uint64_t count;
        const void *p;
        if (rm_gguf_get_arr(g, key, &et, &count, &p) == RAMOLE_OK) {
            if (p && count) fuzz_sink += ((const uint8_t *)p)[0];
            for (uint64_t j = 0; et == RM_GGUF_STRING && j < count && j < 4096; j++)
                if (rm_gguf_get_arr_str(g, key, j, &s, &n) == RAMOLE_OK && n) fuzz_sink += (uint8_t)s[n - 1];
        }
    }
    for (int64_t i = 0; i < rm_gguf_tensor_count(g); i++) {
        const rm_gguf_tensor *t = rm_gguf_tensor_get(g, i);
        (void)rm_gguf_tensor_check(g, t);
        if (t->nbytes) fuzz_sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        (void)rm_gguf_tensor_find(g, t->name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rm_gguf *g = NULL;
    if (rm_gguf_open_mem(data, size, "fuzz.gguf", &g) != RAMOLE_OK) return 0;
    walk(g);
    rm_gguf_free(g);
    /* only files the reader accepts can be models: load the same bytes as one */
    const char *path = fuzz_path(0, "model.gguf");
    fuzz_write(path, data, size);
    rm_model *m = NULL;
    if (rm_model_open(path, &m) == RAMOLE_OK) rm_model_free(m);
    return 0;
}
