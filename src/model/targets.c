/*
 * targets.c — the adaptable modules of a layer (names, sizes, the layer's
 * weight for each) and the base fingerprint.
 *
 * The fingerprint hashes (FNV-1a, 64 bits) what an adapter depends on: the
 * family as GGUF names it ("llama" for llama and mistral, because
 * llama.cpp writes a Mistral model as general.architecture "llama", so a
 * Mistral base opened from GGUF cannot be told from a Llama one and must
 * keep the fingerprint it had as an HF folder; "qwen2"), vocabulary size,
 * hidden, ffn, layers, heads, kv heads and head dim. It leaves out the row
 * order and everything about RoPE, so one base as HF folder and as GGUF
 * file has one fingerprint. The top bit is cleared (63 bits are plenty, and
 * a GGUF u64 key then fits the GGUF reader's int64 getter).
 */
#include <stddef.h>
#include <string.h>

#include "model/model_internal.h"

static const char *const hf_names[RM_TARGET_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};
static const char *const gguf_names[RM_TARGET_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                        "ffn_gate", "ffn_up", "ffn_down"};
static const char *const short_names[RM_TARGET_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *rm_target_hf_name(rm_target t) { return (unsigned)t < RM_TARGET_COUNT ? hf_names[t] : "?"; }

const char *rm_target_gguf_name(rm_target t) { return (unsigned)t < RM_TARGET_COUNT ? gguf_names[t] : "?"; }

bool rm_target_from_name(const char *s, rm_target *out) {
    if (!s) return false;
    for (int t = 0; t < RM_TARGET_COUNT; t++)
        if (!strcmp(s, short_names[t]) || !strcmp(s, hf_names[t]) || !strcmp(s, gguf_names[t])) {
            *out = (rm_target)t;
            return true;
        }
    return false;
}

void rm_target_dims(const rm_model_config *c, rm_target t, int64_t *din, int64_t *dout) {
    int64_t d = c->hidden, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t i = 0, o = 0;
    switch (t) {
    case RM_TARGET_Q: i = d, o = q; break;
    case RM_TARGET_K:
    case RM_TARGET_V: i = d, o = kv; break;
    case RM_TARGET_O: i = q, o = d; break;
    case RM_TARGET_GATE:
    case RM_TARGET_UP: i = d, o = c->ffn; break;
    case RM_TARGET_DOWN: i = c->ffn, o = d; break;
    default: break;
    }
    *din = i;
    *dout = o;
}

int64_t rm_target_max_dim(const rm_model_config *c) {
    int64_t best = 0;
    for (int t = 0; t < RM_TARGET_COUNT; t++) {
        int64_t din, dout;
        rm_target_dims(c, (rm_target)t, &din, &dout);
        if (din > best) best = din;
        if (dout > best) best = dout;
    }
    return best;
}

/* Where each target's weight sits in rm_layer: the one list of a layer's
 * seven projections. */
static const size_t weight_offset[RM_TARGET_COUNT] = {
    offsetof(rm_layer, wq), offsetof(rm_layer, wk), offsetof(rm_layer, wv), offsetof(rm_layer, wo),
    offsetof(rm_layer, w_gate), offsetof(rm_layer, w_up), offsetof(rm_layer, w_down)};

const rm_weight *rm_layer_weight(const rm_layer *L, rm_target t) {
    return (unsigned)t < RM_TARGET_COUNT ? (const rm_weight *)((const char *)L + weight_offset[t]) : NULL;
}

rm_weight *rm_layer_weight_mut(rm_layer *L, rm_target t) {
    return (unsigned)t < RM_TARGET_COUNT ? (rm_weight *)((char *)L + weight_offset[t]) : NULL;
}

/* ---- fingerprint ------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t fnv1a_u32(uint64_t h, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return fnv1a(h, b, 4);
}

uint64_t rm_model_config_fingerprint(const rm_model_config *c) {
    uint64_t h = 0xcbf29ce484222325ull;
    const char *tag = "ramole.fingerprint.v1";
    const char *fam = c->arch == RM_ARCH_QWEN2 ? "qwen2" : "llama"; /* the GGUF family */
    h = fnv1a(h, tag, strlen(tag) + 1);
    h = fnv1a(h, fam, strlen(fam) + 1);
    const int v[7] = {c->vocab_size, c->hidden, c->ffn, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim};
    for (int i = 0; i < 7; i++) h = fnv1a_u32(h, (uint32_t)v[i]);
    /* 63 bits, so that the GGUF key (a u64) also reads back through the
     * reader's int64 getter */
    return h & 0x7fffffffffffffffull;
}

uint64_t rm_model_fingerprint(const rm_model *m) { return rm_model_config_fingerprint(&m->cfg); }
