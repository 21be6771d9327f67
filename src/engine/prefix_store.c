/*
 * prefix_store.c — kept KV rows of token sequences (see prefix_store.h).
 * Entries are searched in a line: the engine asks once per admitted
 * request, and comparing tokens costs little beside the forward that a
 * match saves.
 */
#include "engine/prefix_store.h"

#include <string.h>

typedef struct {
    void *key;
    size_t key_len;
    int32_t *toks;
    int n, n_layers;
    void *rows;
    rm_logprob_list lps; /* of its first lps.n tokens (0: none) */
    size_t bytes;        /* rows and log-probabilities */
    uint64_t used;       /* stamp of the last match or add */
} entry;

struct rm_prefix_store {
    int max_entries, n;
    size_t max_bytes, bytes;
    uint64_t clock;
    entry *e; /* [max_entries] */
};

rm_status rm_prefix_store_new(int max_entries, size_t max_bytes, rm_prefix_store **out) {
    *out = NULL;
    rm_prefix_store *s = rm_calloc(1, sizeof *s);
    if (!s || !(s->e = rm_calloc((size_t)(max_entries > 0 ? max_entries : 1), sizeof *s->e))) {
        rm_free(s);
        return rm_err(RAMOLE_ERR_NOMEM, "prefix store: out of memory");
    }
    s->max_entries = max_entries > 0 ? max_entries : 1;
    s->max_bytes = max_bytes;
    *out = s;
    return RAMOLE_OK;
}

static void drop(rm_prefix_store *s, int i) {
    s->bytes -= s->e[i].bytes;
    rm_free(s->e[i].key);
    rm_free(s->e[i].toks);
    rm_free(s->e[i].rows);
    rm_logprob_list_free(&s->e[i].lps);
    s->e[i] = s->e[--s->n];
    memset(&s->e[s->n], 0, sizeof s->e[s->n]);
}

void rm_prefix_store_free(rm_prefix_store *s) {
    if (!s) return;
    while (s->n) drop(s, 0);
    rm_free(s->e);
    rm_free(s);
}

int rm_prefix_store_entries(const rm_prefix_store *s) { return s->n; }
size_t rm_prefix_store_bytes(const rm_prefix_store *s) { return s->bytes; }

static bool same_key(const entry *x, const void *key, size_t key_len) {
    return x->key_len == key_len && (!key_len || !memcmp(x->key, key, key_len));
}

int rm_prefix_common(const int32_t *a, const int32_t *b, int n) {
    int i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Whether log-probabilities a hold all of b's (NULL or empty b: none). */
static bool lps_hold(const rm_logprob_list *a, const rm_logprob_list *b) {
    return !b || !b->n || (a->n >= b->n && a->n_top >= b->n_top);
}

int rm_prefix_store_match(rm_prefix_store *s, const void *key, size_t key_len, const int32_t *toks, int n,
                          int n_layers, int lps_top, rm_prefix_hit *hit) {
    int best = -1, best_n = 0;
    for (int i = 0; i < s->n; i++) {
        const entry *x = &s->e[i];
        if (x->n_layers < n_layers || !same_key(x, key, key_len)) continue;
        int reach = x->n;
        if (lps_top >= 0) {
            if (!x->lps.n || x->lps.n_top < lps_top) continue;
            reach = x->lps.n < reach ? x->lps.n : reach;
        }
        int c = rm_prefix_common(x->toks, toks, reach < n ? reach : n);
        if (c > best_n) best = i, best_n = c;
    }
    if (best < 0) return 0;
    entry *x = &s->e[best];
    x->used = ++s->clock;
    hit->rows = (rm_kv_rows){.data = x->rows, .n_pos = x->n, .n_layers = x->n_layers};
    hit->lps = x->lps.n ? &x->lps : NULL;
    return best_n;
}

rm_status rm_prefix_store_add(rm_prefix_store *s, const void *key, size_t key_len, const rm_kv_cache *kv, int seq,
                              const int32_t *toks, int n, int n_layers, const rm_logprob_list *lps) {
    size_t rows_bytes = rm_kv_rows_bytes(kv, n, n_layers);
    size_t bytes = rows_bytes;
    if (lps && lps->n)
        bytes += (size_t)lps->n * (sizeof *lps->ids + sizeof *lps->lp + (size_t)lps->n_top * sizeof *lps->top);
    if (n <= 0 || bytes > s->max_bytes) return RAMOLE_OK;
    for (int i = 0; i < s->n;) {
        entry *x = &s->e[i];
        if (!same_key(x, key, key_len)) {
            i++;
            continue;
        }
        if (x->n >= n && x->n_layers >= n_layers && lps_hold(&x->lps, lps) &&
            rm_prefix_common(x->toks, toks, n) == n) { /* holds all this already */
            x->used = ++s->clock;
            return RAMOLE_OK;
        }
        if (x->n <= n && x->n_layers <= n_layers && (!x->lps.n || (lps && lps_hold(lps, &x->lps))) &&
            rm_prefix_common(x->toks, toks, x->n) == x->n)
            drop(s, i); /* this holds all of it */
        else
            i++;
    }
    /* room: the least recently used go first */
    while (s->n && (s->n == s->max_entries || s->bytes + bytes > s->max_bytes)) {
        int old = 0;
        for (int j = 1; j < s->n; j++)
            if (s->e[j].used < s->e[old].used) old = j;
        drop(s, old);
    }
    entry e = {.key_len = key_len, .n = n, .n_layers = n_layers, .bytes = bytes, .used = ++s->clock};
    e.key = key_len ? rm_malloc(key_len) : NULL;
    e.toks = rm_malloc((size_t)n * sizeof *e.toks);
    e.rows = rm_malloc(rows_bytes ? rows_bytes : 1);
    rm_status st = (key_len && !e.key) || !e.toks || !e.rows ? rm_err(RAMOLE_ERR_NOMEM, "prefix store: out of memory")
                 : lps && lps->n ? rm_logprob_list_copy(&e.lps, lps)
                                 : RAMOLE_OK;
    if (st != RAMOLE_OK) {
        rm_free(e.key), rm_free(e.toks), rm_free(e.rows);
        return st;
    }
    if (key_len) memcpy(e.key, key, key_len);
    memcpy(e.toks, toks, (size_t)n * sizeof *toks);
    rm_kv_get_rows(kv, seq, n, n_layers, e.rows);
    s->e[s->n++] = e;
    s->bytes += bytes;
    return RAMOLE_OK;
}
