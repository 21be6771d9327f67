/*
 * test_util.h — model helpers shared by the C test files.
 */
#ifndef RM_TEST_UTIL_H
#define RM_TEST_UTIL_H

#include "model/model.h"

/* Logits of every position of one sequence of n <= 64 tokens, run as one
 * batch; malloc'd [n][vocab], NULL on failure. */
float *rm_test_logits_all(const rm_model *m, const int32_t *toks, int n, int threads);
/* The engine tests' random Llama: hidden 64, ffn 96, 2 layers of 4 heads
 * (2 KV heads) of 16, seed 11; NULL on failure (reported). */
rm_model *rm_test_small_llama(int vocab, int max_pos);
/* max |a - b| / max |a| (1 when a is all zero). */
double rm_test_max_rel_diff(const float *a, const float *b, size_t n);

/* tokenizer.json text of a byte-level tokenizer (ids 0..255 are the bytes,
 * no merges); malloc'd, NULL on failure. */
char *rm_test_byte_tokenizer_json(void);
/* The same with words[0, n_words) as ids 256.. (no merges: they decode,
 * and encoding never makes them) and <|endoftext|> after them, special
 * (an end of generation); n_words < 0: the bytes alone, as above. */
char *rm_test_byte_level_tokenizer_json(const char *const *words, int n_words);

/* xorshift64 draws for tests, reproducible from the state's seed. */
uint32_t rm_test_rng_u32(uint64_t *state);
float    rm_test_rng_unif(uint64_t *state); /* uniform in [-1, 1) */

#endif
