/*
 * ramole/tokenizer.h — a tokenizer on its own, without a model: open one
 * (a model folder, a tokenizer.json, GPT-2's encoder.json + vocab.bpe, or a
 * GGUF carrying one), encode and decode, write a vocabulary-only GGUF as
 * llama.cpp's ggml-vocab files are, and learn a byte-level BPE from text.
 * Included by ramole.h.
 */
#ifndef RAMOLE_TOKENIZER_H
#define RAMOLE_TOKENIZER_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Read-only once open; any number of threads may encode and decode at
 * once. Valid until ramole_tokenizer_free. */
typedef struct ramole_tokenizer ramole_tokenizer;

/* Errors: RAMOLE_ERR_IO (a missing file), RAMOLE_ERR_FORMAT (malformed
 * JSON with line and column), RAMOLE_ERR_UNSUPPORTED (a pipeline piece
 * ramole does not know, named). */
ramole_status ramole_tokenizer_open(const char *path, ramole_tokenizer **out);
void ramole_tokenizer_free(ramole_tokenizer *t);

/* Encoding flags. */
enum {
    RAMOLE_TOKENIZE_ADD_SPECIAL = 1u << 0,      /* BOS/EOS as the tokenizer's template says */
    RAMOLE_TOKENIZE_NO_PARSE_SPECIAL = 1u << 1, /* special-token text in the input stays text */
};
/* Decoding flags. */
enum {
    RAMOLE_DETOKENIZE_SKIP_SPECIAL = 1u << 0,   /* drop special tokens */
    RAMOLE_DETOKENIZE_NO_CLEANUP = 1u << 1,     /* no clean_up_tokenization_spaces even if the config asks */
};

/* text[0..len) (any bytes) to ids: *ids is a fresh array (ramole_free). */
ramole_status ramole_tokenizer_encode(const ramole_tokenizer *t, const char *text, size_t len, unsigned flags,
                                      int32_t **ids, size_t *n);
/* ids to a fresh NUL-terminated string (ramole_free) of *len bytes;
 * RAMOLE_ERR_RANGE names the first id outside the vocabulary. */
ramole_status ramole_tokenizer_decode(const ramole_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                                      char **text, size_t *len);

/* A GGUF at path holding only the tokenizer (and the few llama
 * hyper-parameters llama.cpp reads before the vocabulary); ramole_keys
 * adds the keys that let ramole reload the exact pipeline. */
ramole_status ramole_tokenizer_export_gguf(const ramole_tokenizer *t, const char *path, int ramole_keys);

typedef struct {
    int vocab_size;                     /* total, with the 256 byte tokens and the specials */
    const char *const *special_tokens;  /* added after the merges; may be NULL */
    size_t n_special;
    int min_frequency;                  /* pairs seen fewer times are never merged (>= 1) */
} ramole_tokenizer_train_params;

/*
 * Learn a byte-level BPE (Llama-3/Qwen split regex) from the text files
 * and write it as tokenizer.json at out (replaced whole or not at all).
 * Deterministic. Errors name the file that cannot be read or written.
 */
ramole_status ramole_tokenizer_train(const char *const *files, size_t n_files, const ramole_tokenizer_train_params *p,
                                     const char *out);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_TOKENIZER_H */
