/*
 * grammar.h — a context-free grammar over bytes, and where a text stands
 * in it: what constrains a response to a format (json_schema.h compiles
 * JSON Schemas to it; token_filter.h turns a position into the tokens that
 * may come next).
 *
 * A grammar is rules of alternatives, each a sequence of byte sets and
 * references to rules. A position in it is a set of stacks, as llama.cpp's
 * grammar matcher keeps them: each stack is the sequence elements still to
 * match, innermost last, and its top is always a byte set (references are
 * expanded as soon as they surface), or the stack is empty, which means the
 * text may end there. Several stacks stand for the ways the text read so
 * far can be parsed. Rules must not be left-recursive (a rule that can
 * reach itself without reading a byte); the JSON Schema compiler makes none.
 * A repetition is a right-recursive rule (R ::= x R | empty), which keeps
 * a stack's depth as it was.
 *
 * A stack deeper than RM_GRAMMAR_MAX_DEPTH is dropped: text nested deeper
 * than that is not accepted. A chain of more than RM_GRAMMAR_MAX_CHAIN
 * references is an error (ERR_RANGE) of the call that meets it.
 *
 * Lifetime: a grammar is immutable once built and may be read by any
 * number of threads; it is counted (rm_grammar_retain, rm_grammar_free
 * drops one reference), so that a request parsed on one thread hands its
 * compiled grammar to an engine on another. A position belongs to its
 * caller.
 */
#ifndef RM_ENGINE_GRAMMAR_H
#define RM_ENGINE_GRAMMAR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

#define RM_GRAMMAR_MAX_DEPTH 256
/* References expanded one inside another to reach a byte (each a frame of
 * the matcher's recursion): a position that needs more fails with
 * ERR_RANGE rather than exhaust the thread's stack. */
#define RM_GRAMMAR_MAX_CHAIN 512
/* Rules in one grammar (about 10 MB of it): a small text (a request's
 * schema or GBNF) must not build a big grammar; past it rm_grammar_finish
 * fails with ERR_INVALID. And the largest count rm_grammar_repeat takes. */
#define RM_GRAMMAR_MAX_RULES 200000
#define RM_GRAMMAR_MAX_REPEAT 4096

typedef struct rm_grammar rm_grammar;

/* ---- building (one rule body at a time; a failed allocation is reported by
 * rm_grammar_finish) ---- */

rm_grammar *rm_grammar_new(void); /* NULL: out of memory; one reference */
rm_grammar *rm_grammar_retain(rm_grammar *g); /* one more reference (any thread); returns g */
void        rm_grammar_free(rm_grammar *g);   /* drops one; the last frees (NULL is a no-op) */
/* A new rule's id, its body still to come (it may be referred to first). */
int  rm_grammar_rule(rm_grammar *g);
/* Start the body of rule id; then alternatives of items, separated by
 * rm_grammar_or, closed by rm_grammar_end. An empty alternative matches
 * the empty text. */
void rm_grammar_begin(rm_grammar *g, int id);
void rm_grammar_bytes(rm_grammar *g, const uint64_t set[4]); /* one byte of the set */
void rm_grammar_range(rm_grammar *g, uint8_t lo, uint8_t hi); /* one byte in [lo, hi] */
void rm_grammar_lit(rm_grammar *g, const char *s, size_t n);  /* these bytes in order */
void rm_grammar_ref(rm_grammar *g, int rule);
void rm_grammar_or(rm_grammar *g);
void rm_grammar_end(rm_grammar *g);
/* Rules made whole (call with no body open), returning the new rule's id:
 * item repeated min to max times (max < 0: no bound; a bound is a chain of
 * max - min optional rules, a star a right-recursive rule); */
int  rm_grammar_repeat(rm_grammar *g, int item, int min, int max);
/* one character, UTF-8 encoded, whose code point lies in one of the n
 * ranges [r[i][0], r[i][1]] (surrogates never: they are not characters),
 * as alternatives of byte-range sequences (RFC 3629's well-formed forms);
 * no character at all when the ranges hold none. */
int  rm_grammar_chars(rm_grammar *g, const uint32_t (*r)[2], int n);
/* Code point cp (<= 0x10FFFF) as UTF-8 into b: its length. */
int  rm_grammar_utf8(uint32_t cp, uint8_t b[4]);
/* Make rule root the start; checks that every rule has a body, that none
 * is left-recursive, and that the first position expands within the
 * matcher's limits. ERR_NOMEM, ERR_INVALID (too many rules, a rule
 * named left-recursive), or ERR_RANGE (too long a chain). */
rm_status rm_grammar_finish(rm_grammar *g, int root);
/* After rm_grammar_finish refused a left-recursive rule: its id (else -1). */
int rm_grammar_left_recursive(const rm_grammar *g);

/* ---- matching ---- */

/* A position: v[0] stacks, each its depth then its element indices
 * (bottom first). Zero-initialise; free with rm_grammar_pos_free. */
typedef struct {
    int *v;
    int n, cap;
} rm_grammar_pos;

void rm_grammar_pos_free(rm_grammar_pos *p);
rm_status rm_grammar_pos_copy(rm_grammar_pos *dst, const rm_grammar_pos *src);
/* The position before any text. */
rm_status rm_grammar_start(const rm_grammar *g, rm_grammar_pos *out);
/* out (distinct from in) as in after byte b; out->v[0] == 0 when b cannot
 * come next (ERR_NOMEM only when memory runs out). */
rm_status rm_grammar_accept(const rm_grammar *g, const rm_grammar_pos *in, uint8_t b, rm_grammar_pos *out);
/* The same over bytes s[0, n): *taken gets how many leading bytes it
 * took (n: all of them; fewer, and p holds nothing: the next one cannot
 * come). p is replaced by the result; tmp is scratch. */
rm_status rm_grammar_accept_all(const rm_grammar *g, rm_grammar_pos *p, rm_grammar_pos *tmp, const char *s, size_t n,
                                size_t *taken);
bool rm_grammar_can_end(const rm_grammar_pos *p);  /* the text read so far is complete */
bool rm_grammar_must_end(const rm_grammar_pos *p); /* and nothing may follow it */
bool rm_grammar_dead(const rm_grammar_pos *p);     /* nothing accepted the last byte */
/* Which of p's stacks take byte b on their top, as bits (stack i: bit i;
 * cheap: no expansion). rm_grammar_accept's result depends only on these:
 * two bytes with the same takers lead to the same position. A position of
 * more than 64 stacks gives UINT64_MAX for any byte some stack takes, and
 * such results must not be shared. */
uint64_t rm_grammar_takers(const rm_grammar *g, const rm_grammar_pos *p, uint8_t b);

#endif
