/*
 * tok_bpe.c — the BPE model: apply merges to one pre-token.
 *
 * Merges live in an open-addressing table keyed by the pair of token ids
 * ((uint64)left << 32 | right) -> (rank, result id); a later duplicate of a
 * pair overrides an earlier one, as in the reference (a JS Map built in
 * order).
 *
 * One word is a doubly linked list of symbols in a flat array (no allocation
 * once the caller's scratch has grown). Every adjacent pair that has a merge
 * goes into a binary min-heap ordered by (rank, position of the left
 * symbol); popping the best pair merges it in place (the left symbol absorbs
 * the right one) and pushes the two new neighbour pairs. Stale heap entries
 * are recognised by checking that both symbols still exist, are still
 * neighbours and still carry the ids the entry was made with. This is the
 * order HF tokenizers and the JS reference use (lowest rank first, leftmost
 * first among equals), in O(n log n) per word instead of rescanning.
 *
 * Symbols start as bytes (byte-level vocab, stored as raw bytes) or as UTF-8
 * code points (SentencePiece-style). A symbol whose string is not in the
 * vocabulary gets id -1; at the end it becomes its <0xXX> byte tokens
 * (byte_fallback) or unk.
 *
 * Each caller's scratch keeps a cache of recent words (pre-tokens up to 256
 * bytes) -> ids, cleared when it fills; natural text repeats words so most
 * pre-tokens skip the merge loop entirely.
 */
#include "tokenizer/tok_internal.h"

#include <string.h>

struct tok_sym {
    int32_t id;
    uint32_t start, len; /* bytes of the word; len 0 = merged away */
    int32_t prev, next;
};

struct tok_heap_item {
    int32_t rank;
    int32_t left, right;   /* symbol indexes */
    int32_t lid, rid;      /* their ids when pushed */
};

struct tok_cache_slot {
    uint64_t hash;         /* 0 = empty */
    uint32_t key_off, key_len;
    uint32_t ids_off, ids_n;
};

#define CACHE_SLOTS (1u << 15)
#define CACHE_MAX_WORD 256

/* ---- merge table --------------------------------------------------------- */

static inline size_t merge_slot(uint64_t key, size_t mask) {
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

rm_status tok_bpe_build_merges(rm_tok *t) {
    size_t cap = 16;
    while (cap < t->n_merges * 2 + 16) cap *= 2;
    t->merges = rm_malloc(cap * sizeof *t->merges);
    if (!t->merges) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory for %zu merges", t->name, t->n_merges);
    for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;
    tok_buf tmp = {0};
    size_t dropped = 0;
    for (size_t r = 0; r < t->n_merges; r++) {
        int32_t l = t->merge_list[r][0], rr = t->merge_list[r][1];
        tmp.n = 0;
        if (tok_buf_put(&tmp, t->bytes[l], t->bytes_len[l]) || tok_buf_put(&tmp, t->bytes[rr], t->bytes_len[rr])) {
            tok_buf_free(&tmp);
            return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name);
        }
        int32_t res = tok_strmap_get(t, tmp.p, tmp.n);
        if (res < 0) { dropped++; continue; }
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)rr;
        size_t i = merge_slot(key, t->merge_mask);
        while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        t->merges[i].key = key;
        t->merges[i].rank = (int32_t)r;
        t->merges[i].result = res;
    }
    tok_buf_free(&tmp);
    if (dropped) rm_log_debug("%s: %zu merges make a token outside the vocabulary; ignored", t->name, dropped);
    return RM_OK;
}

int32_t tok_merge_lookup(const rm_tok *t, int32_t l, int32_t r, int32_t *result) {
    if (l < 0 || r < 0) return -1;
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t i = merge_slot(key, t->merge_mask);
    for (;;) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->key == key) { *result = s->result; return s->rank; }
        if (s->key == UINT64_MAX) return -1;
        i = (i + 1) & t->merge_mask;
    }
}

/* ---- heap ---------------------------------------------------------------- */

static inline bool heap_less(const struct tok_heap_item *a, const struct tok_heap_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(struct tok_heap_item *h, size_t *n, struct tok_heap_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static struct tok_heap_item heap_pop(struct tok_heap_item *h, size_t *n) {
    struct tok_heap_item top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* ---- scratch -------------------------------------------------------------- */

static rm_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return RM_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *np = rm_realloc(*p, c * elem);
    if (!np) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", c * elem);
    *p = np;
    *cap = c;
    return RM_OK;
}

static void cache_clear(struct rm_tok_scratch *sc) {
    if (sc->cache) memset(sc->cache, 0, (sc->cache_mask + 1) * sizeof *sc->cache);
    sc->cache_count = 0;
    sc->cache_keys.n = 0;
    sc->cache_ids_n = 0;
}

static inline void push_id_unchecked(rm_tok_ids *out, int32_t id) { out->ids[out->n++] = id; }

rm_status tok_ids_push(rm_tok_ids *out, int32_t id) {
    if (out->n == out->cap) {
        void *p = out->ids;
        size_t cap = out->cap;
        RM_TRY(grow(&p, &cap, out->n + 1, sizeof(int32_t)));
        out->ids = p;
        out->cap = cap;
    }
    push_id_unchecked(out, id);
    return RM_OK;
}

/* Append the ids of symbol s (fallback for unknown symbols). */
static rm_status emit_symbol(const rm_tok *t, const char *w, const struct tok_sym *s, rm_tok_ids *out) {
    if (s->id >= 0) return tok_ids_push(out, s->id);
    if (t->byte_fallback) {
        bool all = true;
        for (uint32_t k = 0; k < s->len; k++)
            if (t->byte_id[(uint8_t)w[s->start + k]] < 0) all = false;
        if (all) {
            for (uint32_t k = 0; k < s->len; k++) RM_TRY(tok_ids_push(out, t->byte_id[(uint8_t)w[s->start + k]]));
            return RM_OK;
        }
    }
    if (t->unk_id >= 0) return tok_ids_push(out, t->unk_id);
    return rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no token for \"%.*s\" and the model has no unk_token", t->name,
                  (int)(s->len > 60 ? 60 : s->len), w + s->start);
}

static rm_status bpe_merge(const rm_tok *t, struct rm_tok_scratch *sc, const char *w, size_t n, rm_tok_ids *out) {
    /* symbols */
    RM_TRY(grow((void **)&sc->syms, &sc->cap_syms, n + 1, sizeof *sc->syms));
    struct tok_sym *sy = sc->syms;
    int32_t ns = 0;
    size_t i = 0;
    size_t body = n - t->eow_len; /* the suffix (if any) sticks to the last char */
    while (i < body || (i < n && ns == 0)) {
        size_t l = 1;
        if (!t->byte_level) {
            l = tok_utf8_valid_len((const uint8_t *)w + i, n - i);
            if (!l) l = 1;
        }
        if (i + l >= body) l = n - i; /* last char + suffix */
        sy[ns].start = (uint32_t)i;
        sy[ns].len = (uint32_t)l;
        sy[ns].id = (t->byte_level && l == 1) ? t->byte_id[(uint8_t)w[i]] : tok_strmap_get(t, w + i, l);
        sy[ns].prev = ns - 1;
        sy[ns].next = ns + 1;
        ns++;
        i += l;
    }
    sy[ns - 1].next = -1;

    /* heap of candidate pairs */
    RM_TRY(grow((void **)&sc->heap, &sc->cap_heap, (size_t)ns + 4, sizeof *sc->heap));
    struct tok_heap_item *h = sc->heap;
    size_t hn = 0;
    for (int32_t k = 0; k + 1 < ns; k++) {
        int32_t res, rank = tok_merge_lookup(t, sy[k].id, sy[k + 1].id, &res);
        if (rank >= 0) heap_push(h, &hn, (struct tok_heap_item){rank, k, k + 1, sy[k].id, sy[k + 1].id});
    }
    while (hn) {
        struct tok_heap_item it = heap_pop(h, &hn);
        struct tok_sym *a = &sy[it.left], *b = &sy[it.right];
        if (a->len == 0 || b->len == 0 || a->next != it.right || a->id != it.lid || b->id != it.rid) continue;
        int32_t res;
        tok_merge_lookup(t, a->id, b->id, &res);
        a->id = res;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) sy[b->next].prev = it.left;
        if (hn + 2 > sc->cap_heap) {
            RM_TRY(grow((void **)&sc->heap, &sc->cap_heap, hn + 2, sizeof *sc->heap));
            h = sc->heap;
        }
        if (a->prev >= 0) {
            int32_t p = a->prev, r2, rank = tok_merge_lookup(t, sy[p].id, a->id, &r2);
            if (rank >= 0) heap_push(h, &hn, (struct tok_heap_item){rank, p, it.left, sy[p].id, a->id});
        }
        if (a->next >= 0) {
            int32_t q = a->next, r2, rank = tok_merge_lookup(t, a->id, sy[q].id, &r2);
            if (rank >= 0) heap_push(h, &hn, (struct tok_heap_item){rank, it.left, q, a->id, sy[q].id});
        }
    }
    for (int32_t k = 0; k >= 0; k = sy[k].next) RM_TRY(emit_symbol(t, w, &sy[k], out));
    return RM_OK;
}

rm_status tok_bpe_word(const rm_tok *t, struct rm_tok_scratch *sc, const char *w, size_t n, rm_tok_ids *out) {
    if (n == 0) return RM_OK;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(t, w, n);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (n + t->eow_len > CACHE_MAX_WORD || n == 1) {
        if (n == 1 && t->eow_len == 0) {
            int32_t id = t->byte_level ? t->byte_id[(uint8_t)w[0]] : tok_strmap_get(t, w, 1);
            if (id >= 0) return tok_ids_push(out, id);
        }
        if (t->eow_len == 0) return bpe_merge(t, sc, w, n, out);
    }
    /* the suffix is appended to the word before merging */
    const char *word = w;
    size_t wn = n;
    if (t->eow_len) {
        sc->tmp.n = 0;
        RM_TRY(tok_buf_put(&sc->tmp, w, n));
        RM_TRY(tok_buf_put(&sc->tmp, t->end_of_word_suffix, t->eow_len));
        word = sc->tmp.p;
        wn = sc->tmp.n;
        if (wn > CACHE_MAX_WORD) return bpe_merge(t, sc, word, wn, out);
    }

    /* cache lookup */
    if (!sc->cache) {
        sc->cache = rm_calloc(CACHE_SLOTS, sizeof *sc->cache);
        if (!sc->cache) return bpe_merge(t, sc, word, wn, out);
        sc->cache_mask = CACHE_SLOTS - 1;
    }
    uint64_t hv = tok_hash(word, wn) | 1;
    size_t i = hv & sc->cache_mask;
    for (;;) {
        struct tok_cache_slot *s = &sc->cache[i];
        if (s->hash == 0) break;
        if (s->hash == hv && s->key_len == wn && memcmp(sc->cache_keys.p + s->key_off, word, wn) == 0) {
            if (out->n + s->ids_n > out->cap) {
                void *p = out->ids;
                size_t cap = out->cap;
                RM_TRY(grow(&p, &cap, out->n + s->ids_n, sizeof(int32_t)));
                out->ids = p;
                out->cap = cap;
            }
            memcpy(out->ids + out->n, sc->cache_ids + s->ids_off, s->ids_n * sizeof(int32_t));
            out->n += s->ids_n;
            return RM_OK;
        }
        i = (i + 1) & sc->cache_mask;
    }
    size_t before = out->n;
    RM_TRY(bpe_merge(t, sc, word, wn, out));
    size_t got = out->n - before;

    /* insert */
    if (sc->cache_count * 2 >= CACHE_SLOTS) {
        cache_clear(sc);
        i = hv & sc->cache_mask;
    }
    if (grow((void **)&sc->cache_ids, &sc->cache_ids_cap, sc->cache_ids_n + got, sizeof(int32_t)) != RM_OK ||
        tok_buf_reserve(&sc->cache_keys, wn) != RM_OK) {
        rm_err_clear();
        return RM_OK; /* a cache that cannot grow is only slower */
    }
    struct tok_cache_slot *s = &sc->cache[i];
    s->hash = hv;
    s->key_off = (uint32_t)sc->cache_keys.n;
    s->key_len = (uint32_t)wn;
    memcpy(sc->cache_keys.p + sc->cache_keys.n, word, wn);
    sc->cache_keys.n += wn;
    s->ids_off = (uint32_t)sc->cache_ids_n;
    s->ids_n = (uint32_t)got;
    memcpy(sc->cache_ids + sc->cache_ids_n, out->ids + before, got * sizeof(int32_t));
    sc->cache_ids_n += got;
    sc->cache_count++;
    return RM_OK;
}

rm_status tok_scratch_get(const rm_tok *t, rm_tok_ids *out, struct rm_tok_scratch **scp) {
    struct rm_tok_scratch *sc = out->scratch;
    if (!sc) {
        sc = rm_calloc(1, sizeof *sc);
        if (!sc) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
        out->scratch = sc;
    }
    if (sc->owner != t) { /* a cache made by another tokenizer is wrong here */
        cache_clear(sc);
        sc->owner = t;
    }
    *scp = sc;
    return RM_OK;
}

void rm_tok_ids_free(rm_tok_ids *x) {
    if (!x) return;
    struct rm_tok_scratch *sc = x->scratch;
    if (sc) {
        tok_buf_free(&sc->text);
        tok_buf_free(&sc->norm);
        tok_buf_free(&sc->norm2);
        rm_free(sc->sect);
        tok_buf_free(&sc->tmp);
        tok_buf_free(&sc->pieces_buf);
        tok_buf_free(&sc->cache_keys);
        rm_free(sc->pieces);
        rm_free(sc->pieces2);
        rm_free(sc->u32);
        if (sc->md) pcre2_match_data_free(sc->md);
        rm_free(sc->syms);
        rm_free(sc->heap);
        rm_free(sc->cache);
        rm_free(sc->cache_ids);
        rm_free(sc);
    }
    rm_free(x->ids);
    x->ids = NULL;
    x->n = x->cap = 0;
    x->scratch = NULL;
}
