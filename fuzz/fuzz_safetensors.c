/*
 * fuzz_safetensors.c — rm_st_open_mem over arbitrary bytes: the header
 * length, the JSON header, dtypes, shapes, offsets. Every tensor the
 * reader accepts is read end to end (ASan checks it lies inside the input).
 */
#include "formats/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) { /* a small file of the writer, header padded, metadata set */
        rm_st_writer *w = NULL;
        float a[6] = {1, 2, 3, 4, 5, 6};
        uint16_t h[4] = {0x3c00, 0x4000, 0, 0xbc00};
        int64_t sa[2] = {2, 3}, sh[1] = {4};
        if (rm_st_writer_new(&w) || rm_st_writer_meta(w, "format", "pt") ||
            rm_st_writer_add(w, "a.weight", RM_TYPE_F32, 2, sa, a) ||
            rm_st_writer_add(w, "b.bias", RM_TYPE_F16, 1, sh, h) ||
            rm_st_writer_write(w, fuzz_path(0, "w.safetensors")))
            abort();
        rm_st_writer_free(w);
        fuzz_seed_file("writer.safetensors", fuzz_path(0, "w.safetensors"));
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rm_safetensors *st = NULL;
    if (rm_st_open_mem(data, size, "fuzz.safetensors", &st) != RAMOLE_OK) return 0;
    for (int i = 0; i < rm_st_count(st); i++) {
        const rm_st_tensor *t = rm_st_get(st, i);
        const uint8_t *p = t->data;
        for (size_t j = 0; j < t->nbytes; j++) fuzz_sink ^= p[j];
        if (rm_st_find(st, t->name) != t) abort();
    }
    (void)rm_st_meta(st, "format");
    rm_st_free(st);
    return 0;
}
