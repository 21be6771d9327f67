/*
 * detok.c — streaming text with stop strings (see detok.h).
 */
#include "engine/detok.h"

#include <string.h>

rm_status rm_detok_init(rm_detok *d, const char *const *stop, int n_stop) {
    memset(d, 0, sizeof *d);
    if (n_stop <= 0) return RAMOLE_OK;
    d->stop = rm_calloc((size_t)n_stop, sizeof *d->stop);
    if (!d->stop) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_stop; i++) {
        if (!stop[i] || !*stop[i]) continue;
        if (!(d->stop[d->n_stop] = rm_strdup(stop[i]))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        d->n_stop++;
    }
    return RAMOLE_OK;
}

void rm_detok_free(rm_detok *d) {
    for (int i = 0; i < d->n_stop; i++) rm_free(d->stop[i]);
    rm_free(d->stop);
    rm_free(d->pend);
    rm_tok_stream_free(&d->stream);
    memset(d, 0, sizeof *d);
}

/* Drop the bytes released by the previous call from the front of pend. */
static void consume(rm_detok *d) {
    if (!d->n_out) return; /* also: pend may still be NULL, which memmove must not get */
    memmove(d->pend, d->pend + d->n_out, d->n_pend - d->n_out);
    d->n_pend -= d->n_out;
    d->n_out = 0;
}

static rm_status append(rm_detok *d, const char *s, size_t n) {
    if (d->n_pend + n + 1 > d->cap_pend) {
        size_t cap = d->cap_pend ? d->cap_pend : 64;
        while (cap < d->n_pend + n + 1) cap *= 2;
        char *p = rm_realloc(d->pend, cap);
        if (!p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        d->pend = p;
        d->cap_pend = cap;
    }
    memcpy(d->pend + d->n_pend, s, n);
    d->n_pend += n;
    return RAMOLE_OK;
}

/* Bytes of pend that may be released; sets stopped on a complete stop string. */
static size_t releasable(rm_detok *d, bool at_end) {
    size_t cut = d->n_pend;
    for (int i = 0; i < d->n_stop; i++) {
        const char *hit = memmem(d->pend, d->n_pend, d->stop[i], strlen(d->stop[i]));
        if (hit && (size_t)(hit - d->pend) <= cut) {
            cut = (size_t)(hit - d->pend);
            d->stopped = true;
        }
    }
    if (d->stopped || at_end) return cut;
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t hold = 0;
    for (int i = 0; i < d->n_stop; i++) {
        size_t ls = strlen(d->stop[i]);
        for (size_t L = ls - 1 < d->n_pend ? ls - 1 : d->n_pend; L > hold; L--)
            if (!memcmp(d->pend + d->n_pend - L, d->stop[i], L)) {
                hold = L;
                break;
            }
    }
    return d->n_pend - hold;
}

/* Append new text and release what may go; at_end: the stream's held bytes too. */
static rm_status release(rm_detok *d, const rm_tok *tok, const char *piece, size_t n, bool at_end,
                         const char **text, size_t *len) {
    RM_TRY(append(d, piece, n));
    if (at_end) {
        RM_TRY(rm_tok_stream_flush(tok, &d->stream, &piece, &n));
        RM_TRY(append(d, piece, n));
    }
    d->n_out = releasable(d, at_end);
    *text = d->pend;
    *len = d->n_out;
    return RAMOLE_OK;
}

rm_status rm_detok_push(rm_detok *d, const rm_tok *tok, int32_t id, bool last, const char **text, size_t *len) {
    consume(d);
    *text = d->pend;
    *len = 0;
    if (d->stopped) return RAMOLE_OK;
    const char *piece;
    size_t n;
    RM_TRY(rm_tok_stream_next(tok, &d->stream, id, RM_TOK_SKIP_SPECIAL, &piece, &n));
    return release(d, tok, piece, n, last, text, len);
}

rm_status rm_detok_finish(rm_detok *d, const rm_tok *tok, const char **text, size_t *len) {
    consume(d);
    *text = d->pend;
    *len = 0;
    if (d->stopped) return RAMOLE_OK;
    return release(d, tok, "", 0, true, text, len);
}
