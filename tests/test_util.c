/* test_util.c — see test_util.h. */
#include "test_util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rm_model *rm_test_small_llama(int vocab, int max_pos) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = vocab;
    c.hidden = 64;
    c.ffn = 96;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.rope.n_rot = 16;
    c.max_pos = max_pos;
    rm_model *m = NULL;
    if (rm_model_random(&c, 11, 0.12f, &m) != RAMOLE_OK) fprintf(stderr, "rm_test_small_llama: %s\n", ramole_last_error());
    return m;
}

float *rm_test_logits_all(const rm_model *m, const int32_t *toks, int n, int threads) {
    if (n < 1 || n > 64) return NULL;
    rm_ctx *ctx = NULL;
    rm_ctx_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = n, .n_logits = n, .n_threads = threads};
    if (rm_ctx_new(m, &p, &ctx) != RAMOLE_OK) return NULL;
    int32_t pos[64], seq[64] = {0};
    uint8_t want[64];
    for (int i = 0; i < n; i++) pos[i] = i, want[i] = 1;
    rm_batch b = {n, toks, pos, seq, want};
    float *out = NULL;
    if (rm_ctx_decode(ctx, &b) == RAMOLE_OK) {
        int V = m->cfg.vocab_size;
        out = malloc((size_t)n * V * sizeof *out);
        for (int i = 0; out && i < n; i++) memcpy(out + (size_t)i * V, rm_ctx_logits(ctx, i), (size_t)V * sizeof *out);
    }
    rm_ctx_free(ctx);
    return out;
}

double rm_test_max_rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, ma = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(a[i]) > ma) ma = fabs(a[i]);
    }
    return md / (ma > 0 ? ma : 1);
}

/* GPT-2's byte-to-character map, as UTF-8 into s (1 or 2 bytes). */
static int byte_char(int b, char *s) {
    int k = 0;
    for (int c = 0; c < b; c++) k += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174);
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    unsigned cp = printable ? (unsigned)b : 256u + (unsigned)k;
    return cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F)), 2);
}

char *rm_test_byte_tokenizer_json(void) { return rm_test_byte_level_tokenizer_json(NULL, -1); }

char *rm_test_byte_level_tokenizer_json(const char *const *words, int n_words) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        json_t *key = json_stringn(s, (size_t)byte_char(b, s));
        json_object_set_new(vocab, json_string_value(key), json_integer(b));
        json_decref(key);
    }
    for (int w = 0; w < n_words; w++) {
        char s[256];
        int n = 0;
        for (const char *c = words[w]; *c && n < 250; c++) n += byte_char((uint8_t)*c, s + n);
        json_t *key = json_stringn(s, (size_t)n);
        json_object_set_new(vocab, json_string_value(key), json_integer(256 + w));
        json_decref(key);
    }
    json_t *added = json_array();
    if (n_words >= 0)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b}", "id", 256 + n_words, "content", "<|endoftext|>",
                                               "special", 1));
    json_t *root = json_pack("{s:{s:s, s:b}, s:{s:s}, s:{s:s, s:o, s:[]}, s:o}", "pre_tokenizer", "type", "ByteLevel",
                             "add_prefix_space", 0, "decoder", "type", "ByteLevel", "model", "type", "BPE", "vocab",
                             vocab, "merges", "added_tokens", added);
    char *js = root ? json_dumps(root, 0) : NULL;
    json_decref(root);
    return js;
}

uint32_t rm_test_rng_u32(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (uint32_t)(x >> 16);
}

float rm_test_rng_unif(uint64_t *state) {
    return (float)(rm_test_rng_u32(state) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}
