/*
 * token_filter.c — a grammar position turned into the tokens that may
 * follow it, by walking the vocabulary's byte trie.
 */
#include "engine/token_filter.h"

#include <string.h>

#define FILTER_CACHE 8 /* masks a filter keeps, by position */

struct rm_vocab_trie {
    const rm_tok *tokenizer;
    int n_vocab, words;   /* words: uint64_t per mask */
    int n_nodes, cap;
    int32_t *first;       /* [n_nodes] first child, -1: none */
    int32_t *next;        /* [n_nodes] next sibling, -1: none */
    int32_t *tok;         /* [n_nodes] first token ending here, -1: none */
    uint8_t *byte;        /* [n_nodes] the byte leading here */
    int32_t *tok_next;    /* [n_vocab] the next token ending at the same node */
    uint64_t *eog;        /* [words] end-of-generation tokens */
    int max_len;          /* longest token, in bytes */
};

static int32_t add_node(rm_vocab_trie *t, uint8_t b) {
    if (t->n_nodes == t->cap) {
        int cap = t->cap ? t->cap * 2 : 1024;
        int32_t *f = rm_realloc(t->first, (size_t)cap * sizeof *f);
        if (f) t->first = f;
        int32_t *n = rm_realloc(t->next, (size_t)cap * sizeof *n);
        if (n) t->next = n;
        int32_t *k = rm_realloc(t->tok, (size_t)cap * sizeof *k);
        if (k) t->tok = k;
        uint8_t *y = rm_realloc(t->byte, (size_t)cap);
        if (y) t->byte = y;
        if (!f || !n || !k || !y) return -1;
        t->cap = cap;
    }
    int32_t i = t->n_nodes++;
    t->first[i] = t->next[i] = t->tok[i] = -1;
    t->byte[i] = b;
    return i;
}

void rm_vocab_trie_free(rm_vocab_trie *t) {
    if (!t) return;
    rm_free(t->first);
    rm_free(t->next);
    rm_free(t->tok);
    rm_free(t->byte);
    rm_free(t->tok_next);
    rm_free(t->eog);
    rm_free(t);
}

rm_status rm_vocab_trie_new(const rm_tok *tok, int n_vocab, rm_vocab_trie **out) {
    *out = NULL;
    rm_vocab_trie *t = rm_calloc(1, sizeof *t);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory");
    t->tokenizer = tok;
    t->n_vocab = n_vocab;
    t->words = (n_vocab + 63) / 64;
    t->tok_next = rm_malloc((size_t)(n_vocab ? n_vocab : 1) * sizeof *t->tok_next);
    t->eog = rm_calloc((size_t)(t->words ? t->words : 1), sizeof *t->eog);
    if (!t->tok_next || !t->eog || add_node(t, 0) < 0) goto oom;
    int32_t n_tok = rm_tok_vocab_size(tok);
    for (int32_t id = 0; id < n_vocab; id++) {
        t->tok_next[id] = -1;
        if (id >= n_tok) continue;
        if (rm_tok_is_eog(tok, id)) {
            t->eog[id / 64] |= 1ull << (id % 64);
            continue;
        }
        const char *s;
        size_t len;
        if (rm_tok_is_special(tok, id) || rm_tok_piece(tok, id, &s, &len) != RAMOLE_OK || !len) continue;
        int32_t node = 0;
        for (size_t i = 0; i < len; i++) {
            int32_t c = t->first[node];
            while (c >= 0 && t->byte[c] != (uint8_t)s[i]) c = t->next[c];
            if (c < 0) {
                if ((c = add_node(t, (uint8_t)s[i])) < 0) goto oom;
                t->next[c] = t->first[node];
                t->first[node] = c;
            }
            node = c;
        }
        t->tok_next[id] = t->tok[node];
        t->tok[node] = id;
        if ((int)len > t->max_len) t->max_len = (int)len;
    }
    *out = t;
    return RAMOLE_OK;
oom:
    rm_vocab_trie_free(t);
    return rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory");
}

typedef struct {
    int *key; /* the position's vector */
    int n, cap;
    uint64_t *mask;
    int n_allowed;
    uint64_t used;
} cached_mask;

struct rm_token_filter {
    const rm_vocab_trie *t;
    rm_grammar *g;
    bool eog_ok, ended;
    rm_grammar_pos pos, tmp;
    rm_grammar_pos *level; /* [max_len + 1] positions along the trie walk */
    cached_mask cache[FILTER_CACHE];
    uint64_t clock;
};

void rm_token_filter_free(rm_token_filter *f) {
    if (!f) return;
    rm_grammar_free(f->g);
    rm_grammar_pos_free(&f->pos);
    rm_grammar_pos_free(&f->tmp);
    if (f->level)
        for (int i = 0; i <= f->t->max_len; i++) rm_grammar_pos_free(&f->level[i]);
    rm_free(f->level);
    for (int i = 0; i < FILTER_CACHE; i++) {
        rm_free(f->cache[i].key);
        rm_free(f->cache[i].mask);
    }
    rm_free(f);
}

rm_status rm_token_filter_new(const rm_vocab_trie *t, rm_grammar *g, bool eog_ok, rm_token_filter **out) {
    *out = NULL;
    rm_token_filter *f = rm_calloc(1, sizeof *f);
    if (!f) {
        rm_grammar_free(g);
        return rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory");
    }
    f->t = t;
    f->g = g;
    f->eog_ok = eog_ok;
    f->level = rm_calloc((size_t)t->max_len + 1, sizeof *f->level);
    rm_status st = f->level ? rm_grammar_start(g, &f->pos) : rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory");
    if (st != RAMOLE_OK) {
        rm_token_filter_free(f);
        return st;
    }
    *out = f;
    return RAMOLE_OK;
}

/* Allow every token that the trie below `node` holds and the grammar takes
 * from level[depth] on. */
static rm_status walk(rm_token_filter *f, int32_t node, int depth, uint64_t *mask, int *n) {
    const rm_vocab_trie *t = f->t;
    for (int32_t c = t->first[node]; c >= 0; c = t->next[c]) {
        if (!rm_grammar_may_take(f->g, &f->level[depth], t->byte[c])) continue;
        RM_TRY(rm_grammar_accept(f->g, &f->level[depth], t->byte[c], &f->level[depth + 1]));
        if (rm_grammar_dead(&f->level[depth + 1])) continue;
        for (int32_t id = t->tok[c]; id >= 0; id = t->tok_next[id]) {
            mask[id / 64] |= 1ull << (id % 64);
            (*n)++;
        }
        RM_TRY(walk(f, c, depth + 1, mask, n));
    }
    return RAMOLE_OK;
}

rm_status rm_token_filter_allowed(rm_token_filter *f, const uint64_t **mask, int *n_allowed) {
    const rm_vocab_trie *t = f->t;
    size_t bytes = (size_t)t->words * sizeof(uint64_t);
    f->clock++;
    cached_mask *slot = &f->cache[0];
    for (int i = 0; i < FILTER_CACHE; i++) {
        cached_mask *c = &f->cache[i];
        if (c->mask && c->n == f->pos.n && !memcmp(c->key, f->pos.v, (size_t)c->n * sizeof *c->key)) {
            c->used = f->clock;
            *mask = c->mask;
            *n_allowed = c->n_allowed;
            return RAMOLE_OK;
        }
        if (c->used < slot->used) slot = c;
    }
    if (!slot->mask && !(slot->mask = rm_malloc(bytes ? bytes : 8)))
        return rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory");
    if (slot->cap < f->pos.n) {
        int *k = rm_realloc(slot->key, (size_t)f->pos.n * sizeof *k);
        if (!k) return rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory");
        slot->key = k;
        slot->cap = f->pos.n;
    }
    slot->n = 0; /* invalid until filled */
    memset(slot->mask, 0, bytes);
    int n = 0;
    /* level[0] is the position itself (copied: the walk reuses the levels) */
    RM_TRY(rm_grammar_pos_copy(&f->level[0], &f->pos));
    if (t->max_len) RM_TRY(walk(f, 0, 0, slot->mask, &n));
    /* an end where the answer is complete; also without eog_ok when
     * nothing else may follow (the caller then ends there too) */
    if (rm_grammar_can_end(&f->pos) && (f->eog_ok || !n))
        for (int w = 0; w < t->words; w++) {
            slot->mask[w] |= t->eog[w];
            n += __builtin_popcountll(t->eog[w]);
        }
    memcpy(slot->key, f->pos.v, (size_t)f->pos.n * sizeof *slot->key);
    slot->n = f->pos.n;
    slot->n_allowed = n;
    slot->used = f->clock;
    *mask = slot->mask;
    *n_allowed = n;
    return RAMOLE_OK;
}

rm_status rm_token_filter_take(rm_token_filter *f, int32_t id) {
    const rm_vocab_trie *t = f->t;
    if (id < 0 || id >= t->n_vocab) return rm_err(RAMOLE_ERR_INTERNAL, "token filter: token %d is not allowed", (int)id);
    if (t->eog[id / 64] >> (id % 64) & 1) {
        if (!rm_grammar_can_end(&f->pos))
            return rm_err(RAMOLE_ERR_INTERNAL, "token filter: the response may not end here");
        f->ended = true;
        return RAMOLE_OK;
    }
    const char *s;
    size_t len;
    bool ok = false;
    if (rm_tok_piece(t->tokenizer, id, &s, &len) == RAMOLE_OK && len && !rm_tok_is_special(t->tokenizer, id))
        RM_TRY(rm_grammar_accept_all(f->g, &f->pos, &f->tmp, s, len, &ok));
    if (!ok) return rm_err(RAMOLE_ERR_INTERNAL, "token filter: token %d is not allowed here", (int)id);
    return RAMOLE_OK;
}

bool rm_token_filter_done(const rm_token_filter *f) { return f->ended || rm_grammar_must_end(&f->pos); }
