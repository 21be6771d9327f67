/*
 * prefix_store.c — shared instruction prefixes' KV rows (see
 * prefix_store.h). A handful of entries searched in a line: the engine
 * asks once per admitted embedding.
 */
#include "engine/prefix_store.h"

#include <string.h>

typedef struct {
    int32_t *toks;
    int n, n_layers;
    void *rows;
    size_t bytes;
    uint64_t used; /* stamp of the last find or add */
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
    rm_free(s->e[i].toks);
    rm_free(s->e[i].rows);
    s->e[i] = s->e[--s->n];
    memset(&s->e[s->n], 0, sizeof s->e[s->n]);
}

void rm_prefix_store_free(rm_prefix_store *s) {
    if (!s) return;
    while (s->n) drop(s, 0);
    rm_free(s->e);
    rm_free(s);
}

static int lookup(const rm_prefix_store *s, const int32_t *toks, int n) {
    for (int i = 0; i < s->n; i++)
        if (s->e[i].n == n && !memcmp(s->e[i].toks, toks, (size_t)n * sizeof *toks)) return i;
    return -1;
}

const void *rm_prefix_store_find(rm_prefix_store *s, const int32_t *toks, int n, int n_layers) {
    int i = lookup(s, toks, n);
    if (i < 0 || s->e[i].n_layers < n_layers) return NULL;
    s->e[i].used = ++s->clock;
    return s->e[i].rows;
}

rm_status rm_prefix_store_add(rm_prefix_store *s, const rm_kv_cache *kv, int seq, const int32_t *toks, int n,
                              int n_layers) {
    size_t bytes = rm_kv_rows_bytes(kv, n, n_layers);
    if (n <= 0 || bytes > s->max_bytes) return RAMOLE_OK;
    int i = lookup(s, toks, n);
    if (i >= 0 && s->e[i].n_layers >= n_layers) return RAMOLE_OK;
    if (i >= 0) drop(s, i);
    /* room: the least recently used go first */
    while (s->n && (s->n == s->max_entries || s->bytes + bytes > s->max_bytes)) {
        int old = 0;
        for (int j = 1; j < s->n; j++)
            if (s->e[j].used < s->e[old].used) old = j;
        drop(s, old);
    }
    entry e = {.n = n, .n_layers = n_layers, .bytes = bytes, .used = ++s->clock};
    e.toks = rm_malloc((size_t)n * sizeof *e.toks);
    e.rows = rm_malloc(bytes ? bytes : 1);
    if (!e.toks || !e.rows) {
        rm_free(e.toks), rm_free(e.rows);
        return rm_err(RAMOLE_ERR_NOMEM, "prefix store: out of memory");
    }
    memcpy(e.toks, toks, (size_t)n * sizeof *toks);
    rm_kv_get_rows(kv, seq, n, n_layers, e.rows);
    s->e[s->n++] = e;
    s->bytes += bytes;
    return RAMOLE_OK;
}
