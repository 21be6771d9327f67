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
            /* children in byte order: the walk shares work along runs of bytes */
            int32_t c = t->first[node], prev = -1;
            while (c >= 0 && t->byte[c] < (uint8_t)s[i]) prev = c, c = t->next[c];
            if (c < 0 || t->byte[c] != (uint8_t)s[i]) {
                int32_t k = add_node(t, (uint8_t)s[i]);
                if (k < 0) goto oom;
                t->next[k] = c;
                if (prev < 0) t->first[node] = k;
                else t->next[prev] = k;
                c = k;
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

/* The positions a filter has met, each once (its id), and the moves
 * between them: from position `from`, a byte that stacks `takers` take
 * leads to `to` (-1: nowhere). The grammar's language is walked lazily as
 * an automaton: a walk of the trie asks for the same moves over and over
 * (every character of a string, every digit), and so do the walks of
 * later tokens. Bounded; emptied when full. */
typedef struct {
    int32_t from, to;
    uint64_t takers;
} move;

typedef struct {
    int32_t state; /* -1: free */
    uint64_t *mask;
    int n_allowed;
    uint64_t used;
} cached_mask;

#define MAX_STATES (1 << 13) /* each with 1 KiB of moves by byte */
#define UNKNOWN (-2)
#define MAX_STATE_INTS (1 << 22) /* 16 MiB of stacks */

struct rm_token_filter {
    const rm_vocab_trie *t;
    rm_grammar *g;
    bool eog_ok, ended;
    rm_grammar_pos pos, tmp; /* where the answer stands; scratch */
    rm_grammar_pos *state;   /* [n_state] the positions met */
    int32_t (*next)[256];    /* [n_state] where each byte leads from each, UNKNOWN until asked */
    int n_state, cap_state;
    size_t state_ints;
    int32_t *state_slot;     /* [state_cap] open addressing by content, -1: free */
    int state_cap;
    move *moves;             /* [move_cap] open addressing by (from, takers); from -1: free */
    int n_moves, move_cap;
    cached_mask cache[FILTER_CACHE];
    uint64_t clock;
};

static uint64_t hash_ints(const int *v, int n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 0x100000001b3ull;
    return h ^ h >> 29;
}

static uint64_t hash_move(int32_t from, uint64_t takers) {
    uint64_t h = (uint64_t)(uint32_t)from * 0x9e3779b97f4a7c15ull ^ takers * 0xc2b2ae3d27d4eb4full;
    return h ^ h >> 31;
}

/* Forget every position and move (and the masks, filed by position). */
static void dfa_clear(rm_token_filter *f) {
    for (int i = 0; i < f->n_state; i++) rm_grammar_pos_free(&f->state[i]);
    f->n_state = 0;
    f->state_ints = 0;
    for (int i = 0; i < f->state_cap; i++) f->state_slot[i] = -1;
    for (int i = 0; i < f->move_cap; i++) f->moves[i].from = -1;
    f->n_moves = 0;
    for (int i = 0; i < FILTER_CACHE; i++) f->cache[i].state = -1;
}

static rm_status oom(void) { return rm_err(RAMOLE_ERR_NOMEM, "token filter: out of memory"); }

/* Grow the table of positions to cap slots (a power of two), refiling them. */
static rm_status state_table_grow(rm_token_filter *f, int cap) {
    int32_t *slot = rm_malloc((size_t)cap * sizeof *slot);
    if (!slot) return oom();
    for (int i = 0; i < cap; i++) slot[i] = -1;
    for (int id = 0; id < f->n_state; id++) {
        size_t k = hash_ints(f->state[id].v, f->state[id].n) & (size_t)(cap - 1);
        while (slot[k] >= 0) k = (k + 1) & (size_t)(cap - 1);
        slot[k] = id;
    }
    rm_free(f->state_slot);
    f->state_slot = slot;
    f->state_cap = cap;
    return RAMOLE_OK;
}

/* The id of position p, added when new. */
static rm_status intern(rm_token_filter *f, const rm_grammar_pos *p, int32_t *id) {
    if (2 * (f->n_state + 1) > f->state_cap) RM_TRY(state_table_grow(f, f->state_cap ? 2 * f->state_cap : 256));
    size_t k = hash_ints(p->v, p->n) & (size_t)(f->state_cap - 1);
    for (int32_t s; (s = f->state_slot[k]) >= 0; k = (k + 1) & (size_t)(f->state_cap - 1))
        if (f->state[s].n == p->n && !memcmp(f->state[s].v, p->v, (size_t)p->n * sizeof *p->v)) {
            *id = s;
            return RAMOLE_OK;
        }
    if (f->n_state == f->cap_state) {
        int cap = f->cap_state ? 2 * f->cap_state : 64;
        rm_grammar_pos *st = rm_realloc(f->state, (size_t)cap * sizeof *st);
        if (st) f->state = st;
        int32_t(*nx)[256] = rm_realloc(f->next, (size_t)cap * sizeof *nx);
        if (nx) f->next = nx;
        if (!st || !nx) return oom();
        f->cap_state = cap;
    }
    for (int b = 0; b < 256; b++) f->next[f->n_state][b] = UNKNOWN;
    rm_grammar_pos *q = &f->state[f->n_state];
    *q = (rm_grammar_pos){0};
    RM_TRY(rm_grammar_pos_copy(q, p));
    f->state_ints += (size_t)p->n;
    f->state_slot[k] = *id = f->n_state++;
    return RAMOLE_OK;
}

/* Where byte b leads from position `from`: *to, or -1. */
static rm_status step(rm_token_filter *f, int32_t from, uint8_t b, int32_t *to) {
    if ((*to = f->next[from][b]) != UNKNOWN) return RAMOLE_OK;
    uint64_t takers = rm_grammar_takers(f->g, &f->state[from], b);
    *to = -1;
    if (!takers) {
        f->next[from][b] = -1;
        return RAMOLE_OK;
    }
    bool memo = takers != UINT64_MAX; /* more than 64 stacks: not filed */
    size_t k = 0;
    if (memo) {
        if (2 * (f->n_moves + 1) > f->move_cap) { /* grow, refiling */
            int cap = f->move_cap ? 2 * f->move_cap : 1024;
            move *m = rm_malloc((size_t)cap * sizeof *m);
            if (!m) return oom();
            for (int i = 0; i < cap; i++) m[i].from = -1;
            for (int i = 0; i < f->move_cap; i++) {
                if (f->moves[i].from < 0) continue;
                size_t j = hash_move(f->moves[i].from, f->moves[i].takers) & (size_t)(cap - 1);
                while (m[j].from >= 0) j = (j + 1) & (size_t)(cap - 1);
                m[j] = f->moves[i];
            }
            rm_free(f->moves);
            f->moves = m;
            f->move_cap = cap;
        }
        k = hash_move(from, takers) & (size_t)(f->move_cap - 1);
        for (; f->moves[k].from >= 0; k = (k + 1) & (size_t)(f->move_cap - 1))
            if (f->moves[k].from == from && f->moves[k].takers == takers) {
                f->next[from][b] = *to = f->moves[k].to;
                return RAMOLE_OK;
            }
    }
    RM_TRY(rm_grammar_accept(f->g, &f->state[from], b, &f->tmp));
    if (!rm_grammar_dead(&f->tmp)) RM_TRY(intern(f, &f->tmp, to)); /* may move f->next */
    if (memo) {
        f->moves[k] = (move){from, *to, takers};
        f->n_moves++;
    }
    f->next[from][b] = *to;
    return RAMOLE_OK;
}

void rm_token_filter_free(rm_token_filter *f) {
    if (!f) return;
    rm_grammar_free(f->g);
    rm_grammar_pos_free(&f->pos);
    rm_grammar_pos_free(&f->tmp);
    for (int i = 0; i < f->n_state; i++) rm_grammar_pos_free(&f->state[i]);
    rm_free(f->state);
    rm_free(f->next);
    rm_free(f->state_slot);
    rm_free(f->moves);
    for (int i = 0; i < FILTER_CACHE; i++) rm_free(f->cache[i].mask);
    rm_free(f);
}

rm_status rm_token_filter_new(const rm_vocab_trie *t, rm_grammar *g, bool eog_ok, rm_token_filter **out) {
    *out = NULL;
    rm_token_filter *f = rm_calloc(1, sizeof *f);
    if (!f) {
        rm_grammar_free(g);
        return oom();
    }
    f->t = t;
    f->g = g;
    f->eog_ok = eog_ok;
    for (int i = 0; i < FILTER_CACHE; i++) f->cache[i].state = -1;
    rm_status st = rm_grammar_start(g, &f->pos);
    if (st != RAMOLE_OK) {
        rm_token_filter_free(f);
        return st;
    }
    *out = f;
    return RAMOLE_OK;
}

/* Allow every token that the trie below `node` holds and the grammar takes
 * from position `state` on. Children come in byte order, so a run of bytes
 * that the same stacks take (the characters of a string, the digits of a
 * number) finds its move filed after the first. */
static rm_status walk(rm_token_filter *f, int32_t node, int32_t state, uint64_t *mask, int *n) {
    const rm_vocab_trie *t = f->t;
    for (int32_t c = t->first[node]; c >= 0; c = t->next[c]) {
        int32_t to;
        RM_TRY(step(f, state, t->byte[c], &to));
        if (to < 0) continue;
        for (int32_t id = t->tok[c]; id >= 0; id = t->tok_next[id]) {
            mask[id / 64] |= 1ull << (id % 64);
            (*n)++;
        }
        RM_TRY(walk(f, c, to, mask, n));
    }
    return RAMOLE_OK;
}

rm_status rm_token_filter_allowed(rm_token_filter *f, const uint64_t **mask, int *n_allowed) {
    const rm_vocab_trie *t = f->t;
    size_t bytes = (size_t)t->words * sizeof(uint64_t);
    if (f->n_state > MAX_STATES || f->state_ints > MAX_STATE_INTS) dfa_clear(f);
    int32_t here;
    RM_TRY(intern(f, &f->pos, &here));
    f->clock++;
    cached_mask *slot = &f->cache[0];
    for (int i = 0; i < FILTER_CACHE; i++) {
        cached_mask *c = &f->cache[i];
        if (c->state == here) {
            c->used = f->clock;
            *mask = c->mask;
            *n_allowed = c->n_allowed;
            return RAMOLE_OK;
        }
        if (c->used < slot->used) slot = c;
    }
    if (!slot->mask && !(slot->mask = rm_malloc(bytes ? bytes : 8))) return oom();
    slot->state = -1; /* invalid until filled */
    memset(slot->mask, 0, bytes);
    int n = 0;
    if (t->max_len) RM_TRY(walk(f, 0, here, slot->mask, &n));
    /* an end where the answer is complete; also without eog_ok when
     * nothing else may follow (the caller then ends there too) */
    if (rm_grammar_can_end(&f->pos) && (f->eog_ok || !n))
        for (int w = 0; w < t->words; w++) {
            slot->mask[w] |= t->eog[w];
            n += __builtin_popcountll(t->eog[w]);
        }
    slot->state = here;
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
    size_t len, taken = 0;
    if (rm_tok_piece(t->tokenizer, id, &s, &len) == RAMOLE_OK && len && !rm_tok_is_special(t->tokenizer, id))
        RM_TRY(rm_grammar_accept_all(f->g, &f->pos, &f->tmp, s, len, &taken));
    if (!len || taken < len) return rm_err(RAMOLE_ERR_INTERNAL, "token filter: token %d is not allowed here", (int)id);
    return RAMOLE_OK;
}

rm_status rm_token_filter_take_bytes(rm_token_filter *f, const char *s, size_t n) {
    size_t taken = 0;
    RM_TRY(rm_grammar_accept_all(f->g, &f->pos, &f->tmp, s, n, &taken));
    if (taken < n) return rm_err(RAMOLE_ERR_INVALID, "token filter: byte %zu of the text is not allowed", taken);
    return RAMOLE_OK;
}

bool rm_token_filter_done(const rm_token_filter *f) { return f->ended || rm_grammar_must_end(&f->pos); }
