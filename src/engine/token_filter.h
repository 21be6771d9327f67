/*
 * token_filter.h — the tokens a response constrained by a grammar may take
 * next, as a mask for the sampler.
 *
 * A token is allowed when the grammar accepts all of its bytes from the
 * response's position (rm_tok_piece: byte-level tokens give their bytes,
 * SentencePiece's "▁" a space, <0xXX> the byte), so a token may end inside
 * a UTF-8 character. End-of-generation tokens are allowed only where the
 * response is complete; other special tokens, and tokens of no bytes, never.
 *
 * The vocabulary is walked as a trie of its tokens' bytes (built once per
 * tokenizer), so a prefix the grammar refuses rules out every token that
 * begins with it at once. A filter files the grammar positions it meets
 * and the moves between them by byte (an automaton built as it is
 * needed, bounded, emptied when full), so that the walks of a response
 * ask the grammar each question once; and it keeps the masks of the last
 * few positions whole (inside an unbounded string every character leaves
 * the position as it was, and those masks come back).
 *
 * Lifetime: a trie is immutable once built (any thread); a filter belongs
 * to one request.
 */
#ifndef RM_ENGINE_TOKEN_FILTER_H
#define RM_ENGINE_TOKEN_FILTER_H

#include "engine/grammar.h"
#include "tokenizer/tokenizer.h"

typedef struct rm_vocab_trie rm_vocab_trie;

/* Over ids [0, n_vocab) (the model's vocabulary; ids the tokenizer lacks
 * are never allowed). The trie borrows tok, which must outlive it. */
rm_status rm_vocab_trie_new(const rm_tok *tok, int n_vocab, rm_vocab_trie **out);
void      rm_vocab_trie_free(rm_vocab_trie *t); /* NULL is a no-op */

typedef struct rm_token_filter rm_token_filter;

/* A filter at the start of grammar g, which it owns from then on (also on
 * failure). eog_ok: end-of-generation tokens may end the response where it
 * is complete; false (the caller ignores them): only where nothing else
 * may follow, and the caller must then end there. */
rm_status rm_token_filter_new(const rm_vocab_trie *t, rm_grammar *g, bool eog_ok, rm_token_filter **out);
void      rm_token_filter_free(rm_token_filter *f); /* NULL is a no-op */

/* The tokens allowed now: bit id of mask[id / 64]; *n_allowed of them.
 * The mask is valid until the next call. */
rm_status rm_token_filter_allowed(rm_token_filter *f, const uint64_t **mask, int *n_allowed);
/* Move past token id, which must be allowed (ERR_INTERNAL otherwise). */
rm_status rm_token_filter_take(rm_token_filter *f, int32_t id);
/* Move past the bytes s[0, n): text the answer already holds when the
 * filter starts late (a trigger and what came after it in its token).
 * ERR_INVALID when the grammar refuses them, naming the byte. */
rm_status rm_token_filter_take_bytes(rm_token_filter *f, const char *s, size_t n);
/* The response is complete and nothing may follow it (or it took an
 * end-of-generation token). */
bool      rm_token_filter_done(const rm_token_filter *f);

#endif
