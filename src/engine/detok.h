/*
 * detok.h — a request's text as it streams: token ids in, whole UTF-8
 * characters out, cut before the first stop string.
 *
 * Text that could still grow into a stop string is held back (a suffix of
 * what was produced that is a prefix of some stop string), so a client
 * never receives part of a stop string that then completes. When a stop
 * string completes, everything before it is released and nothing after.
 */
#ifndef RM_DETOK_H
#define RM_DETOK_H

#include "tokenizer/tokenizer.h"

typedef struct {
    rm_tok_stream stream;
    char **stop;          /* owned copies */
    int n_stop;
    char *pend;           /* decoded, not yet released */
    size_t n_pend, cap_pend;
    size_t n_out;         /* bytes of pend released by the last call */
    bool stopped;
} rm_detok;

/* Empty stop strings are ignored. On failure d is left freeable. */
rm_status rm_detok_init(rm_detok *d, const char *const *stop, int n_stop);
void      rm_detok_free(rm_detok *d);

/*
 * Feed token `id` (special tokens produce no text). *text, *len: what may
 * be released now, valid until the next call. last: this token ends the
 * generation, so nothing is held back (incomplete UTF-8 becomes U+FFFD).
 * Returns with d->stopped set when a stop string completed; further calls
 * release nothing.
 */
rm_status rm_detok_push(rm_detok *d, const rm_tok *tok, int32_t id, bool last, const char **text, size_t *len);
/* The generation ended without a token to show (EOS): everything still held. */
rm_status rm_detok_finish(rm_detok *d, const rm_tok *tok, const char **text, size_t *len);

#endif
