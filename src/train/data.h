/*
 * data.h — training data for the trainers: JSONL {"input", "output"}
 * examples for adapters and the router, plain text for base pretraining,
 * turned into B x T batches of (token, target, mask) as rm_train_batch
 * wants them.
 *
 * Example format (the contract with `ramole generate -p INPUT`):
 *   tokens = encode(INPUT, RM_TOK_ADD_SPECIAL)        -- exactly generate's prompt
 *          + the output's tokens                      -- what generate should emit
 *          + EOS                                       -- where generate stops
 * The input and the output are encoded apart and their ids joined, as
 * prompt-completion training does: the prompt ids are exactly generate's,
 * and the output is encoded with RM_TOK_CONTINUATION (no special tokens, no
 * dummy-prefix space of a SentencePiece-style tokenizer), so the joined ids
 * decode to exactly INPUT + OUTPUT for every tokenizer kind. No pair is
 * refused for its token boundary: where INPUT + OUTPUT encoded whole would
 * merge the last input token with the first output characters, the model
 * learns the split the prompt forces, which is what it sees at generation.
 * Loss: position t predicts tokens[t+1]; the mask is 1 where tokens[t+1]
 * is an output token or the EOS, so only the answer is learnt. An example
 * of L tokens needs L - 1 positions; it fits a context T when L - 1 <= T.
 *
 * Text (base pretraining): each file is encoded with RM_TOK_ADD_SPECIAL
 * and followed by EOS; the files' tokens are concatenated into one stream
 * and cut into windows of T + 1 tokens with stride T (every position in the
 * loss); a last partial window is kept if it has at least 2 tokens.
 *
 * Order and split: rm_data_split moves a deterministic random fraction of
 * examples (seeded) into a held-out set; rm_data_order gives the seeded
 * permutation of an epoch. Everything is deterministic for a seed.
 *
 * Errors name the file and the 1-based line: malformed JSON, a line that is
 * not an object, a missing or non-string or empty "output", a missing or
 * non-string "input", "adapters" not a list of strings, "scores" not a list
 * of numbers in [-1, 1] as long as "adapters" (a router example's
 * retrieval scores, for a router with a retrieval prior), an example longer
 * than the context (unless truncate: then the output is cut to fit, at
 * least one answer token must remain), no tokenizer, no EOS.
 */
#ifndef RM_TRAIN_DATA_H
#define RM_TRAIN_DATA_H

#include "core/core.h"
#include "train/train.h"

struct rm_tok;

/* One example: tokens[0..n); positions t < n-1 predict tokens[t+1];
 * the loss covers targets at index >= n_prompt (n_prompt 0: all). */
typedef struct {
    int32_t *tokens;
    int n;
    int n_prompt;
    int line;          /* 1-based line in its file (0 for text windows) */
    int n_adapters;    /* "adapters": names, or 0 */
    char **adapters;
    float *scores;     /* "scores": each adapter's retrieval score (a cosine), or NULL */
} rm_example;

typedef struct {
    rm_example *ex;
    int n, cap;
    int n_truncated;   /* examples cut to fit the context */
} rm_dataset;

typedef struct {
    int ctx;           /* T: positions per sequence */
    bool truncate;     /* cut too-long examples instead of failing */
    int32_t eos;       /* < 0: rm_data_eos(tok, -1) */
} rm_data_opts;

/* The end-of-sequence id: the tokenizer's EOS, else the first special
 * token rm_tok_is_eog accepts, else fallback (may be -1: none). */
int32_t rm_data_eos(const struct rm_tok *tok, int32_t fallback);

/* Encode one example as described above into ex (tokens rm_malloc'd).
 * Errors: ERR_INVALID (empty output, an input or output that encodes to no
 * tokens, no EOS). */
rm_status rm_data_encode(const struct rm_tok *tok, const char *input, const char *output, int32_t eos,
                         rm_example *ex);

/* Load a JSONL file (blank lines skipped). *out is a new dataset; on error
 * NULL and the message names path:line. */
rm_status rm_data_load_jsonl(const struct rm_tok *tok, const char *path, const rm_data_opts *o, rm_dataset **out);
/* The same from memory (name is used in messages). */
rm_status rm_data_parse_jsonl(const struct rm_tok *tok, const char *text, size_t len, const char *name,
                              const rm_data_opts *o, rm_dataset **out);
/* Pack text files into windows (see above). */
rm_status rm_data_load_text(const struct rm_tok *tok, const char *const *paths, int n_paths, const rm_data_opts *o,
                            rm_dataset **out);
/* Pack an already-encoded token stream into windows of ctx + 1, stride ctx. */
rm_status rm_data_pack(const int32_t *stream, size_t n, int ctx, rm_dataset **out);

void rm_dataset_free(rm_dataset *d);

/* Move round(frac * n) examples, chosen by a seeded shuffle, from *d into
 * a new dataset *val (kept in file order in both). frac in [0, 1); when
 * frac > 0 and d has >= 2 examples, at least one goes to each side. */
rm_status rm_data_split(rm_dataset *d, double frac, uint64_t seed, rm_dataset **val);

/* The permutation of [0, n) used in epoch `epoch` for `seed`. */
void rm_data_order(int n, uint64_t seed, int64_t epoch, int *perm);

/*
 * Batch buffers for B x T. rm_data_fill writes sequences ex[idx[0..nb)]
 * into rows 0..nb-1 of width T' = the longest example's n - 1 (at most T;
 * longer examples are cut), padding with token pad and mask 0, and points
 * b at them (b->B = nb, b->T = T'). Returns the number of masked-in
 * positions.
 */
typedef struct {
    int B, T;
    int32_t *tokens, *targets;
    uint8_t *mask;
    int32_t *experts, *n_experts; /* [B][RM_TRAIN_MAX_K], [B] (router) */
    float *retrieval;             /* [B][RM_TRAIN_MAX_K] the experts' retrieval scores (router) */
} rm_batchbuf;

rm_status rm_batchbuf_init(rm_batchbuf *bb, int B, int T);
void      rm_batchbuf_free(rm_batchbuf *bb);
int       rm_data_fill(rm_batchbuf *bb, const rm_dataset *d, const int *idx, int nb, int32_t pad,
                       rm_train_batch *b);

#endif /* RM_TRAIN_DATA_H */
