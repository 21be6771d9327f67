/*
 * logprob_list.c — a generation's token log-probabilities, collected from
 * its events for a reply (rm_logprob_list in engine.h).
 */
#include "engine/engine.h"

#include <string.h>

rm_status rm_logprob_list_push(rm_logprob_list *l, const rm_engine_event *ev) {
    if (ev->token < 0 || !ev->top) return RAMOLE_OK;
    if (!l->n) l->n_top = ev->n_top;
    if (ev->n_top != l->n_top)
        return rm_err(RAMOLE_ERR_INVALID, "logprobs: %d alternatives after %d", ev->n_top, l->n_top);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        int32_t *ids = rm_realloc(l->ids, (size_t)cap * sizeof *ids);
        if (ids) l->ids = ids;
        float *lp = ids ? rm_realloc(l->lp, (size_t)cap * sizeof *lp) : NULL;
        if (lp) l->lp = lp;
        rm_token_logprob *top = lp && l->n_top ? rm_realloc(l->top, (size_t)cap * (size_t)l->n_top * sizeof *top) : NULL;
        if (top) l->top = top;
        if (!lp || (l->n_top && !top)) return rm_err(RAMOLE_ERR_NOMEM, "logprobs: out of memory");
        l->cap = cap;
    }
    l->ids[l->n] = ev->token;
    l->lp[l->n] = ev->logprob;
    if (l->n_top) memcpy(l->top + (size_t)l->n * (size_t)l->n_top, ev->top, (size_t)l->n_top * sizeof *l->top);
    l->n++;
    return RAMOLE_OK;
}

void rm_logprob_list_free(rm_logprob_list *l) {
    rm_free(l->ids);
    rm_free(l->lp);
    rm_free(l->top);
    memset(l, 0, sizeof *l);
}
