/*
 * gbnf.h — llama.cpp's grammar format (GBNF) compiled to a grammar over
 * bytes, for responses constrained by a grammar the caller writes (the
 * "grammar" field of llama.cpp's server, `--grammar` of its CLI).
 *
 * What it reads, as llama.cpp's grammar parser does:
 *   - rules `name ::= alternatives`, names of letters, digits and '-'; the
 *     start is the rule `root`; a rule goes on past a newline only after
 *     '|' or inside parentheses;
 *   - literals "..." (escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH),
 *     character classes [a-z0-9_] and [^...] over code points, `.` (any
 *     character), groups ( ... ), alternatives |, repetitions * + ?
 *     {m} {m,} {m,n}, comments from # to the end of the line.
 * Characters are code points matched as their UTF-8 bytes. llama.cpp's
 * token references (<[id]>, <think>) are refused, as is a rule used and
 * not defined, defined twice, or left-recursive; errors name the line and
 * column.
 */
#ifndef RM_ENGINE_GBNF_H
#define RM_ENGINE_GBNF_H

#include "engine/grammar.h"

/* The grammar text (len bytes). Errors are ERR_INVALID. */
rm_status rm_gbnf_grammar(const char *text, size_t len, rm_grammar **out);

#endif
