/*
 * model_pack.c — a model's matrices in the run-time form of the GEMM
 * kernels (kernels.h rm_matmul_pack), made once at load.
 *
 * Why: the q4_k, q6_k and q8_0 GEMM kernels read 32 rows at a time with
 * their level words interleaved, the f16/bf16 one 32 rows transposed to
 * [k][32]; repacking on every forward (as ramole did) is work repeated per
 * call that llama.cpp does once, and at a few rows it was most of a step.
 * The packed form keeps the levels as packed as the file (q4_k 148 bytes
 * per 256 weights against 144, q6_k 210 as the file, q8_0 40 per 32
 * against 34, f16 and bf16 2 bytes a weight as the file), so it replaces
 * the file's pages rather than adding to them: those are released once
 * copied (they stay mapped and are read back from the file if merging,
 * converting or writing touches them).
 * Memory: one block for every packed matrix, sizes computed first.
 */
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* Every matrix inference multiplies by, once each: the output head and each
 * layer's targets. At most 1 + 7 n_layers; returns the count. */
static int model_matrices(rm_model *m, rm_weight **out) {
    int n = 0;
    out[n++] = &m->output;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) out[n++] = rm_layer_weight_mut(&m->layers[l], (rm_target)t);
    return n;
}

static size_t packed_size(const rm_weight *w) {
    if (!w->data || !rm_matmul_pack_wanted(w->type)) return 0;
    return (rm_matmul_pack_bytes(w->type, w->rows, w->cols) + 63) & ~(size_t)63;
}

static bool repack_enabled(void) {
    const char *e = getenv("RAMOLE_REPACK");
    return !(e && !strcmp(e, "0"));
}

rm_status rm_model_pack(rm_model *m) {
    if (m->owned_packed || !m->layers) return RAMOLE_OK;
    int cap = 1 + RM_TARGET_COUNT * m->cfg.n_layers;
    rm_weight **ws = rm_malloc((size_t)cap * sizeof *ws);
    if (!ws) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", m->path);
    int n = model_matrices(m, ws);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += packed_size(ws[i]);
    if (total == 0) {
        rm_free(ws);
        return RAMOLE_OK;
    }
    uint8_t *block = rm_malloc(total);
    if (!block) {
        rm_free(ws);
        return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory packing %zu bytes of weights", m->path, total);
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        rm_weight *w = ws[i];
        size_t sz = packed_size(w);
        if (!sz) continue;
        rm_matmul_pack(block + at, w->data, w->type, w->rows, w->cols);
        w->packed = block + at;
        at += sz;
        if (m->files) rm_file_map_release(w->data, rm_type_row_bytes(w->type, w->cols) * (size_t)w->rows);
    }
    m->owned_packed = block;
    m->packed_bytes = total;
    rm_free(ws);
    return RAMOLE_OK;
}

void rm_model_unpack(rm_model *m) {
    if (!m || !m->owned_packed) return;
    m->output.packed = NULL;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) rm_layer_weight_mut(&m->layers[l], (rm_target)t)->packed = NULL;
    rm_free(m->owned_packed);
    m->owned_packed = NULL;
    m->packed_bytes = 0;
}

/* rm_model_open's step: pack unless RAMOLE_REPACK=0. */
rm_status rm_model_pack_default(rm_model *m) { return repack_enabled() ? rm_model_pack(m) : RAMOLE_OK; }
