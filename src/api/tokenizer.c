/*
 * tokenizer.c — include/ramole/tokenizer.h over src/tokenizer and the GGUF
 * writer of src/formats.
 */
#include <string.h>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

_Static_assert((int)RAMOLE_TOKENIZE_ADD_SPECIAL == (int)RM_TOK_ADD_SPECIAL &&
                   (int)RAMOLE_TOKENIZE_NO_PARSE_SPECIAL == (int)RM_TOK_NO_PARSE_SPECIAL &&
                   (int)RAMOLE_DETOKENIZE_SKIP_SPECIAL == (int)RM_TOK_SKIP_SPECIAL &&
                   (int)RAMOLE_DETOKENIZE_NO_CLEANUP == (int)RM_TOK_NO_CLEANUP,
               "public and internal tokenizer flags must agree");

struct ramole_tokenizer {
    rm_tok *t;
};

ramole_status ramole_tokenizer_open(const char *path, ramole_tokenizer **out) {
    *out = NULL;
    ramole_tokenizer *pt = rm_calloc(1, sizeof *pt);
    if (!pt) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_tok_load(path, &pt->t);
    if (st != RAMOLE_OK) {
        rm_free(pt);
        return st;
    }
    *out = pt;
    return RAMOLE_OK;
}

void ramole_tokenizer_free(ramole_tokenizer *pt) {
    if (!pt) return;
    rm_tok_free(pt->t);
    rm_free(pt);
}

ramole_status ramole_tokenizer_encode(const ramole_tokenizer *pt, const char *text, size_t len, unsigned flags,
                                      int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    rm_tok_ids x = {0};
    rm_status st = rm_tok_encode(pt->t, text, len, flags, &x);
    if (st == RAMOLE_OK && !(*ids = rm_malloc((x.n ? x.n : 1) * sizeof **ids)))
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) {
        if (x.n) memcpy(*ids, x.ids, x.n * sizeof **ids); /* no ids: x.ids may be NULL */
        *n = x.n;
    }
    rm_tok_ids_free(&x);
    return st;
}

ramole_status ramole_tokenizer_decode(const ramole_tokenizer *pt, const int32_t *ids, size_t n, unsigned flags,
                                      char **text, size_t *len) {
    *text = NULL;
    return rm_tok_decode(pt->t, ids, n, flags, text, len);
}

ramole_status ramole_tokenizer_export_gguf(const ramole_tokenizer *pt, const char *path, int ramole_keys) {
    static const struct {
        const char *k;
        uint32_t v;
    } hp[] = {{"llama.context_length", 4096},     {"llama.embedding_length", 64},
              {"llama.block_count", 1},           {"llama.feed_forward_length", 128},
              {"llama.attention.head_count", 4},  {"llama.attention.head_count_kv", 4},
              {"llama.rope.dimension_count", 16}};
    rm_gguf_writer *w = NULL;
    rm_status st = rm_gguf_writer_new(&w);
    if (!st) st = rm_gguf_set_str(w, "general.architecture", "llama");
    if (!st) st = rm_gguf_set_str(w, "general.name", "vocab");
    for (size_t i = 0; i < sizeof hp / sizeof hp[0] && !st; i++) st = rm_gguf_set_u32(w, hp[i].k, hp[i].v);
    if (!st) st = rm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (!st) st = rm_gguf_set_u32(w, "llama.vocab_size", (uint32_t)rm_tok_vocab_size(pt->t));
    if (!st) st = rm_tok_gguf_write(pt->t, w, ramole_keys != 0);
    if (!st) st = rm_gguf_writer_write(w, path);
    rm_gguf_writer_free(w);
    return st;
}

ramole_status ramole_tokenizer_train(const char *const *files, size_t nf, const ramole_tokenizer_train_params *p,
                                     const char *out) {
    char **texts = rm_calloc(nf ? nf : 1, sizeof *texts), *json = NULL;
    size_t *lens = rm_calloc(nf ? nf : 1, sizeof *lens);
    rm_status st = texts && lens ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == RAMOLE_OK && i < nf; i++) st = rm_file_read(files[i], &texts[i], &lens[i]);
    rm_tok_train_opts o = {.vocab_size = p->vocab_size, .special_tokens = p->special_tokens,
                           .n_special = p->n_special, .min_frequency = p->min_frequency};
    if (st == RAMOLE_OK) st = rm_tok_train_bpe((const char *const *)texts, lens, nf, &o, &json);
    if (st == RAMOLE_OK) st = rm_file_write_atomic(out, json, strlen(json));
    for (size_t i = 0; texts && i < nf; i++) rm_free(texts[i]);
    rm_free(texts);
    rm_free(lens);
    rm_free(json);
    return st;
}
