/*
 * logprob_list.c — a generation's token log-probabilities, collected from
 * its events for a reply (rm_logprob_list in engine.h).
 */
#include "engine/engine.h"

#include <string.h>

rm_status rm_logprob_list_add(rm_logprob_list *l, int32_t id, float lp, const rm_token_logprob *top, int n_top) {
    if (!l->n) l->n_top = n_top;
    if (n_top != l->n_top) return rm_err(RAMOLE_ERR_INVALID, "logprobs: %d alternatives after %d", n_top, l->n_top);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        int32_t *ids = rm_realloc(l->ids, (size_t)cap * sizeof *ids);
        if (ids) l->ids = ids;
        float *lps = ids ? rm_realloc(l->lp, (size_t)cap * sizeof *lps) : NULL;
        if (lps) l->lp = lps;
        rm_token_logprob *t = lps && l->n_top ? rm_realloc(l->top, (size_t)cap * (size_t)l->n_top * sizeof *t) : NULL;
        if (t) l->top = t;
        if (!lps || (l->n_top && !t)) return rm_err(RAMOLE_ERR_NOMEM, "logprobs: out of memory");
        l->cap = cap;
    }
    l->ids[l->n] = id;
    l->lp[l->n] = lp;
    rm_token_logprob *dst = l->top + (size_t)l->n * (size_t)l->n_top;
    if (l->n_top && top) memcpy(dst, top, (size_t)l->n_top * sizeof *dst);
    else if (l->n_top) memset(dst, 0, (size_t)l->n_top * sizeof *dst);
    l->n++;
    return RAMOLE_OK;
}

rm_status rm_logprob_list_push(rm_logprob_list *l, const rm_engine_event *ev) {
    if (ev->token < 0 || !ev->top) return RAMOLE_OK;
    return rm_logprob_list_add(l, ev->token, ev->logprob, ev->top, ev->n_top);
}

rm_status rm_logprob_list_copy(rm_logprob_list *dst, const rm_logprob_list *src) {
    return rm_logprob_list_copy_head(dst, src, src->n, src->n_top);
}

rm_status rm_logprob_list_copy_head(rm_logprob_list *dst, const rm_logprob_list *src, int n, int n_top) {
    memset(dst, 0, sizeof *dst);
    if (n > src->n || n_top > src->n_top)
        return rm_err(RAMOLE_ERR_RANGE, "logprobs: %d tokens of %d alternatives from a list of %d of %d", n, n_top,
                      src->n, src->n_top);
    for (int i = 0; i < n; i++) {
        rm_status st = rm_logprob_list_add(dst, src->ids[i], src->lp[i],
                                           src->top + (size_t)i * (size_t)src->n_top, n_top);
        if (st != RAMOLE_OK) {
            rm_logprob_list_free(dst);
            return st;
        }
    }
    return RAMOLE_OK;
}

void rm_logprob_list_free(rm_logprob_list *l) {
    rm_free(l->ids);
    rm_free(l->lp);
    rm_free(l->top);
    memset(l, 0, sizeof *l);
}
