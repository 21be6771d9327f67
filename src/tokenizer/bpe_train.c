/*
 * bpe_train.c — learn a byte-level BPE and write it as tokenizer.json.
 *
 * 1. Texts are repaired to valid UTF-8 and split with the Llama-3/Qwen2
 *    regex (the same pre-tokenizer the written file declares, so training
 *    and encoding see the same words). Words are counted in a hash table.
 * 2. Each distinct word is a sequence of symbol ids, starting from its
 *    bytes (ids 0..255 are the 256 bytes, so every text stays encodable).
 * 3. Pair counts (weighted by word frequency) live in a hash table; a
 *    max-heap orders them by (count desc, bytes of left, bytes of right
 *    asc), with lazy deletion: a popped entry whose count is stale is
 *    pushed back with its current count. Each pair keeps the list of words
 *    it occurs in (may hold stale entries; words are rescanned).
 * 4. A merge rewrites only the words that contain the pair: their old pairs
 *    are subtracted, the word is rewritten left to right, its new pairs are
 *    added, and pairs containing the new symbol are pushed on the heap (no
 *    other pair can have grown). When the concatenation already is a token
 *    (two merge paths to one string) the existing id is reused, as HF's
 *    trainer does.
 * 5. Stops at vocab_size (counting the special tokens) or when no pair
 *    reaches min_frequency. The output file has no normalizer, the Split +
 *    ByteLevel pre-tokenizer, ByteLevel decoder, merges as [a, b] pairs and
 *    the special tokens as added tokens after the vocabulary.
 */
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SPLIT_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

pcre2_general_context *tok_regex_ctx(void);


/* ---- generic open-addressing helpers --------------------------------------- */

typedef struct {
    uint64_t key;   /* pair key or word hash; 0 = empty */
    uint32_t val;
} slot64;

typedef struct {
    slot64 *s;
    size_t mask, n;
} map64;

static rm_status map64_init(map64 *m, size_t cap) {
    size_t c = 1024;
    while (c < cap * 2) c *= 2;
    m->s = rm_calloc(c, sizeof *m->s);
    if (!m->s) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer train: out of memory");
    m->mask = c - 1;
    m->n = 0;
    return RM_OK;
}

static inline size_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ull;
    k ^= k >> 33;
    return (size_t)k;
}

static rm_status map64_grow(map64 *m) {
    map64 nm;
    RM_TRY(map64_init(&nm, (m->mask + 1)));
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->s[i].key) continue;
        size_t j = mix64(m->s[i].key) & nm.mask;
        while (nm.s[j].key) j = (j + 1) & nm.mask;
        nm.s[j] = m->s[i];
    }
    nm.n = m->n;
    rm_free(m->s);
    *m = nm;
    return RM_OK;
}

/* ---- trainer state ----------------------------------------------------------- */

typedef struct {
    int64_t count;
    int32_t a, b;
    uint32_t *words;
    uint32_t nw, capw;
} pair_t;

typedef struct {
    int64_t count;
    uint32_t pair;
} heap_t;

typedef struct {
    /* symbols */
    tok_buf sb;
    uint32_t *soff, *slen;
    size_t nsym, capsym;
    map64 sym_by_hash;   /* hash(bytes) -> symbol (chained by probing; verify bytes) */
    /* words */
    int32_t *wsym;       /* all word symbol arrays */
    uint32_t *woff, *wlen;
    int64_t *wfreq;
    uint32_t *wstamp;
    size_t nword;
    /* pairs */
    pair_t *pairs;
    size_t npair, cappair;
    map64 pair_idx;
    heap_t *heap;
    size_t nheap, capheap;
    /* merges */
    int32_t (*merges)[2];
    size_t nmerge, capmerge;
} trainer;

#define NOMEM rm_err(RAMOLE_ERR_NOMEM, "tokenizer train: out of memory")

static rm_status grow_arr(void **p, size_t *cap, size_t need, size_t el) {
    if (need <= *cap) return RM_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *np = rm_realloc(*p, c * el);
    if (!np) return NOMEM;
    *p = np;
    *cap = c;
    return RM_OK;
}

static int32_t sym_find(trainer *T, const char *s, size_t n, uint64_t h) {
    size_t i = mix64(h) & T->sym_by_hash.mask;
    for (;;) {
        slot64 *sl = &T->sym_by_hash.s[i];
        if (!sl->key) return -1;
        if (sl->key == h && T->slen[sl->val] == n && !memcmp(T->sb.p + T->soff[sl->val], s, n)) return (int32_t)sl->val;
        i = (i + 1) & T->sym_by_hash.mask;
    }
}

static rm_status sym_add(trainer *T, const char *s, size_t n, int32_t *id) {
    uint64_t h = tok_hash(s, n) | 1;
    int32_t f = sym_find(T, s, n, h);
    if (f >= 0) { *id = f; return RM_OK; }
    if (T->nsym == T->capsym) {
        size_t c1 = T->capsym, c2 = T->capsym;
        RM_TRY(grow_arr((void **)&T->soff, &c1, T->nsym + 1, sizeof *T->soff));
        RM_TRY(grow_arr((void **)&T->slen, &c2, T->nsym + 1, sizeof *T->slen));
        T->capsym = c1 < c2 ? c1 : c2;
    }
    T->soff[T->nsym] = (uint32_t)T->sb.n;
    T->slen[T->nsym] = (uint32_t)n;
    RM_TRY(tok_buf_put(&T->sb, s, n));
    if ((T->sym_by_hash.n + 1) * 2 > T->sym_by_hash.mask) RM_TRY(map64_grow(&T->sym_by_hash));
    size_t i = mix64(h) & T->sym_by_hash.mask;
    while (T->sym_by_hash.s[i].key) i = (i + 1) & T->sym_by_hash.mask;
    T->sym_by_hash.s[i] = (slot64){h, (uint32_t)T->nsym};
    T->sym_by_hash.n++;
    *id = (int32_t)T->nsym++;
    return RM_OK;
}

/* Heap order: count desc, then left bytes, then right bytes ascending. */
static int pair_cmp_bytes(const trainer *T, uint32_t x, uint32_t y) {
    const pair_t *p = &T->pairs[x], *q = &T->pairs[y];
    for (int k = 0; k < 2; k++) {
        int32_t s = k ? p->b : p->a, t = k ? q->b : q->a;
        uint32_t ls = T->slen[s], lt = T->slen[t];
        int c = memcmp(T->sb.p + T->soff[s], T->sb.p + T->soff[t], ls < lt ? ls : lt);
        if (c) return c;
        if (ls != lt) return ls < lt ? -1 : 1;
    }
    return 0;
}

static bool heap_better(const trainer *T, const heap_t *x, const heap_t *y) {
    if (x->count != y->count) return x->count > y->count;
    return pair_cmp_bytes(T, x->pair, y->pair) < 0;
}

static rm_status heap_push(trainer *T, int64_t count, uint32_t pair) {
    RM_TRY(grow_arr((void **)&T->heap, &T->capheap, T->nheap + 1, sizeof *T->heap));
    heap_t it = {count, pair};
    size_t i = T->nheap++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!heap_better(T, &it, &T->heap[p])) break;
        T->heap[i] = T->heap[p];
        i = p;
    }
    T->heap[i] = it;
    return RM_OK;
}

static heap_t heap_pop(trainer *T) {
    heap_t top = T->heap[0], last = T->heap[--T->nheap];
    size_t i = 0, n = T->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_better(T, &T->heap[c + 1], &T->heap[c])) c++;
        if (!heap_better(T, &T->heap[c], &last)) break;
        T->heap[i] = T->heap[c];
        i = c;
    }
    if (n) T->heap[i] = last;
    return top;
}

/* Pair index for (a, b), created when missing. */
static rm_status pair_get(trainer *T, int32_t a, int32_t b, uint32_t *idx) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = mix64(key) & T->pair_idx.mask;
    for (;;) {
        slot64 *s = &T->pair_idx.s[i];
        if (!s->key) break;
        if (s->key == key) { *idx = s->val; return RM_OK; }
        i = (i + 1) & T->pair_idx.mask;
    }
    RM_TRY(grow_arr((void **)&T->pairs, &T->cappair, T->npair + 1, sizeof *T->pairs));
    T->pairs[T->npair] = (pair_t){0, a, b, NULL, 0, 0};
    if ((T->pair_idx.n + 1) * 2 > T->pair_idx.mask) {
        RM_TRY(map64_grow(&T->pair_idx));
        i = mix64(key) & T->pair_idx.mask;
        while (T->pair_idx.s[i].key) i = (i + 1) & T->pair_idx.mask;
    }
    T->pair_idx.s[i] = (slot64){key, (uint32_t)T->npair};
    T->pair_idx.n++;
    *idx = (uint32_t)T->npair++;
    return RM_OK;
}

static rm_status pair_add(trainer *T, int32_t a, int32_t b, int64_t delta, uint32_t word, bool track) {
    uint32_t k;
    RM_TRY(pair_get(T, a, b, &k));
    pair_t *p = &T->pairs[k];
    p->count += delta;
    if (track) {
        if (p->nw == p->capw) {
            size_t c = p->capw;
            RM_TRY(grow_arr((void **)&p->words, &c, (size_t)p->nw + 1, sizeof *p->words));
            p->capw = (uint32_t)c;
        }
        if (!p->nw || p->words[p->nw - 1] != word) p->words[p->nw++] = word;
    }
    return RM_OK;
}

static void trainer_free(trainer *T) {
    tok_buf_free(&T->sb);
    rm_free(T->soff);
    rm_free(T->slen);
    rm_free(T->sym_by_hash.s);
    rm_free(T->wsym);
    rm_free(T->woff);
    rm_free(T->wlen);
    rm_free(T->wfreq);
    rm_free(T->wstamp);
    for (size_t i = 0; i < T->npair; i++) rm_free(T->pairs[i].words);
    rm_free(T->pairs);
    rm_free(T->pair_idx.s);
    rm_free(T->heap);
    rm_free(T->merges);
}

/* ---- counting words ----------------------------------------------------------- */

typedef struct {
    map64 idx;      /* hash -> word index */
    tok_buf keys;
    uint32_t *koff, *klen;
    int64_t *freq;
    size_t n, cap;
} wordcount;

static rm_status wc_add(wordcount *W, const char *s, size_t n) {
    uint64_t h = tok_hash(s, n) | 1;
    size_t i = mix64(h) & W->idx.mask;
    for (;;) {
        slot64 *sl = &W->idx.s[i];
        if (!sl->key) break;
        if (sl->key == h && W->klen[sl->val] == n && !memcmp(W->keys.p + W->koff[sl->val], s, n)) {
            W->freq[sl->val]++;
            return RM_OK;
        }
        i = (i + 1) & W->idx.mask;
    }
    if (W->n == W->cap) {
        size_t c1 = W->cap, c2 = W->cap, c3 = W->cap;
        RM_TRY(grow_arr((void **)&W->koff, &c1, W->n + 1, sizeof *W->koff));
        RM_TRY(grow_arr((void **)&W->klen, &c2, W->n + 1, sizeof *W->klen));
        RM_TRY(grow_arr((void **)&W->freq, &c3, W->n + 1, sizeof *W->freq));
        W->cap = c1;
    }
    W->koff[W->n] = (uint32_t)W->keys.n;
    W->klen[W->n] = (uint32_t)n;
    W->freq[W->n] = 1;
    RM_TRY(tok_buf_put(&W->keys, s, n));
    if ((W->idx.n + 1) * 2 > W->idx.mask) {
        RM_TRY(map64_grow(&W->idx));
        i = mix64(h) & W->idx.mask;
        while (W->idx.s[i].key) i = (i + 1) & W->idx.mask;
    }
    W->idx.s[i] = (slot64){h, (uint32_t)W->n};
    W->idx.n++;
    W->n++;
    return RM_OK;
}

static rm_status count_words(const char *const *texts, const size_t *lens, size_t n, wordcount *W) {
    tok_regex re = {0};
    tok_buf fixed = {0};
    pcre2_match_data *md = NULL;
    rm_status st = tok_regex_compile(SPLIT_REGEX, &re, "tokenizer train");
    if (!st) st = map64_init(&W->idx, 1 << 16);
    if (!st && !(md = pcre2_match_data_create(8, tok_regex_ctx()))) st = NOMEM;
    for (size_t t = 0; t < n && !st; t++) {
        const char *s = texts[t];
        size_t len = lens[t];
        if (!tok_utf8_is_valid(s, len)) {
            fixed.n = 0;
            if ((st = tok_utf8_repair(s, len, &fixed))) break;
            s = fixed.p;
            len = fixed.n;
        }
        size_t pos = 0, prev = 0;
        const pcre2_code *code = tok_regex_code(&re, s, len);
        while (pos <= len && !st) {
            int rc = pcre2_match(code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) { st = rm_err(RAMOLE_ERR_INTERNAL, "tokenizer train: regex error %d", rc); break; }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[0] > prev) st = wc_add(W, s + prev, ov[0] - prev);
            if (!st && ov[1] > ov[0]) st = wc_add(W, s + ov[0], ov[1] - ov[0]);
            prev = ov[1];
            if (ov[1] == ov[0]) {
                if (ov[1] >= len) break;
                size_t l = tok_utf8_valid_len((const uint8_t *)s + ov[1], len - ov[1]);
                pos = ov[1] + (l ? l : 1);
            } else pos = ov[1];
        }
        if (!st && prev < len) st = wc_add(W, s + prev, len - prev);
    }
    if (md) pcre2_match_data_free(md);
    tok_regex_free(&re);
    tok_buf_free(&fixed);
    return st;
}

/* ---- the merge loop -------------------------------------------------------- */

static rm_status word_pairs(trainer *T, uint32_t w, int64_t sign, int32_t only_with) {
    int32_t *s = T->wsym + T->woff[w];
    for (uint32_t i = 0; i + 1 < T->wlen[w]; i++) {
        bool track = sign > 0 && (only_with < 0 || s[i] == only_with || s[i + 1] == only_with);
        RM_TRY(pair_add(T, s[i], s[i + 1], sign * T->wfreq[w], w, track));
    }
    return RM_OK;
}

static rm_status train(trainer *T, const rm_tok_train_opts *o) {
    size_t target = (size_t)o->vocab_size - o->n_special;
    /* initial pairs */
    for (uint32_t w = 0; w < T->nword; w++) RM_TRY(word_pairs(T, w, 1, -1));
    for (uint32_t k = 0; k < T->npair; k++)
        if (T->pairs[k].count > 0) RM_TRY(heap_push(T, T->pairs[k].count, k));
    uint32_t stamp = 0;
    while (T->nsym < target && T->nheap) {
        heap_t top = heap_pop(T);
        pair_t *p = &T->pairs[top.pair];
        if (p->count != top.count) {
            if (p->count > 0) RM_TRY(heap_push(T, p->count, top.pair));
            continue;
        }
        if (p->count < o->min_frequency) break;
        int32_t a = p->a, b = p->b, nw;
        /* the new symbol's bytes */
        tok_buf cat = {0};
        rm_status st = tok_buf_put(&cat, T->sb.p + T->soff[a], T->slen[a]);
        if (!st) st = tok_buf_put(&cat, T->sb.p + T->soff[b], T->slen[b]);
        if (!st) st = sym_add(T, cat.p, cat.n, &nw);
        tok_buf_free(&cat);
        RM_TRY(st);
        RM_TRY(grow_arr((void **)&T->merges, &T->capmerge, T->nmerge + 1, sizeof *T->merges));
        T->merges[T->nmerge][0] = a;
        T->merges[T->nmerge][1] = b;
        T->nmerge++;
        stamp++;
        /* the word list may move while pairs are added: copy it */
        uint32_t nwl = T->pairs[top.pair].nw;
        uint32_t *wl = rm_malloc((nwl ? nwl : 1) * sizeof *wl);
        if (!wl) return NOMEM;
        memcpy(wl, T->pairs[top.pair].words, nwl * sizeof *wl);
        for (uint32_t k = 0; k < nwl; k++) {
            uint32_t w = wl[k];
            if (T->wstamp[w] == stamp) continue;
            T->wstamp[w] = stamp;
            int32_t *s = T->wsym + T->woff[w];
            uint32_t n = T->wlen[w];
            bool has = false;
            for (uint32_t i = 0; i + 1 < n; i++)
                if (s[i] == a && s[i + 1] == b) { has = true; break; }
            if (!has) continue;
            if ((st = word_pairs(T, w, -1, -1))) break;
            uint32_t j = 0;
            for (uint32_t i = 0; i < n;) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) { s[j++] = nw; i += 2; }
                else s[j++] = s[i++];
            }
            T->wlen[w] = j;
            if ((st = word_pairs(T, w, 1, nw))) break;
            for (uint32_t i = 0; i + 1 < j && !st; i++) {
                if (s[i] != nw && s[i + 1] != nw) continue;
                uint32_t pk;
                if ((st = pair_get(T, s[i], s[i + 1], &pk))) break;
                st = heap_push(T, T->pairs[pk].count, pk);
            }
            if (st) break;
        }
        rm_free(wl);
        RM_TRY(st);
    }
    return RM_OK;
}

/* ---- writing tokenizer.json ----------------------------------------------------- */

static json_t *bytelevel_str(const char *s, size_t n) {
    char buf[4 * 256 + 4];
    char *big = n > 256 ? rm_malloc(4 * n + 4) : NULL;
    char *o = big ? big : buf;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += tok_utf8_encode(tok_byte_to_cp((uint8_t)s[i]), o + k);
    json_t *r = json_stringn(o, k);
    rm_free(big);
    return r;
}

static rm_status write_json(trainer *T, const rm_tok_train_opts *o, char **out) {
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    rm_status st = RM_OK;
    if (!vocab || !merges || !added) st = NOMEM;
    /* vocab keys are the byte-mapped strings */
    for (size_t i = 0; i < T->nsym && !st; i++) {
        json_t *s = bytelevel_str(T->sb.p + T->soff[i], T->slen[i]);
        if (!s || json_object_set_new(vocab, json_string_value(s), json_integer((json_int_t)i))) st = NOMEM;
        json_decref(s);
    }
    for (size_t i = 0; i < T->nmerge && !st; i++) {
        json_t *pa = bytelevel_str(T->sb.p + T->soff[T->merges[i][0]], T->slen[T->merges[i][0]]);
        json_t *pb = bytelevel_str(T->sb.p + T->soff[T->merges[i][1]], T->slen[T->merges[i][1]]);
        json_t *m = (pa && pb) ? json_pack("[oo]", pa, pb) : NULL;
        if (!m || json_array_append_new(merges, m)) st = NOMEM;
    }
    for (size_t i = 0; i < o->n_special && !st; i++) {
        json_t *a = json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)(T->nsym + i), "content",
                              o->special_tokens[i], "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                              "special", 1);
        if (!a || json_array_append_new(added, a)) st = NOMEM;
    }
    json_t *root = NULL;
    if (!st) {
        root = json_pack(
            "{s:s, s:n, s:n, s:o, s:n, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}, s:{s:s, s:b, s:b, s:b},"
            " s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
            "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
            "pre_tokenizer", "type", "Sequence", "pretokenizers",
            "type", "Split", "pattern", "Regex", SPLIT_REGEX, "behavior", "Isolated", "invert", 0,
            "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0,
            "post_processor", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0,
            "decoder", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0,
            "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
            "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
        added = vocab = merges = NULL; /* stolen by "o" (even on failure) */
        if (!root) st = NOMEM;
    }
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    if (st) { json_decref(root); return st; }
    char *s = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(root);
    if (!s) return NOMEM;
    *out = rm_strdup(s);
    free(s); /* jansson's allocation */
    return *out ? RM_OK : NOMEM;
}

rm_status rm_tok_train_bpe(const char *const *texts, const size_t *lens, size_t n, const rm_tok_train_opts *o,
                           char **json_out) {
    *json_out = NULL;
    if (!o || o->vocab_size < 257 + (int32_t)o->n_special)
        return rm_err(RAMOLE_ERR_INVALID, "tokenizer train: vocab_size must be at least 256 bytes + 1 + %zu special tokens",
                      o ? o->n_special : 0);
    for (size_t i = 0; i < o->n_special; i++)
        if (!o->special_tokens[i] || !o->special_tokens[i][0])
            return rm_err(RAMOLE_ERR_INVALID, "tokenizer train: special token %zu is empty", i);
    rm_tok_train_opts opt = *o;
    if (opt.min_frequency < 1) opt.min_frequency = 1;
    trainer T;
    memset(&T, 0, sizeof T);
    wordcount W;
    memset(&W, 0, sizeof W);
    rm_status st = count_words(texts, lens, n, &W);
    if (!st) st = map64_init(&T.sym_by_hash, 4096);
    if (!st) st = map64_init(&T.pair_idx, 1 << 16);
    for (int b = 0; b < 256 && !st; b++) {
        char c = (char)b;
        int32_t id;
        st = sym_add(&T, &c, 1, &id);
    }
    if (!st) {
        size_t total = 0;
        for (size_t w = 0; w < W.n; w++) total += W.klen[w];
        T.nword = W.n;
        T.wsym = rm_malloc((total ? total : 1) * sizeof *T.wsym);
        T.woff = rm_malloc((W.n ? W.n : 1) * sizeof *T.woff);
        T.wlen = rm_malloc((W.n ? W.n : 1) * sizeof *T.wlen);
        T.wfreq = rm_malloc((W.n ? W.n : 1) * sizeof *T.wfreq);
        T.wstamp = rm_calloc(W.n ? W.n : 1, sizeof *T.wstamp);
        if (!T.wsym || !T.woff || !T.wlen || !T.wfreq || !T.wstamp) st = NOMEM;
        size_t off = 0;
        for (size_t w = 0; w < W.n && !st; w++) {
            T.woff[w] = (uint32_t)off;
            T.wlen[w] = W.klen[w];
            T.wfreq[w] = W.freq[w];
            for (uint32_t k = 0; k < W.klen[w]; k++) T.wsym[off + k] = (uint8_t)W.keys.p[W.koff[w] + k];
            off += W.klen[w];
        }
    }
    rm_free(W.idx.s);
    tok_buf_free(&W.keys);
    rm_free(W.koff);
    rm_free(W.klen);
    rm_free(W.freq);
    if (!st) st = train(&T, &opt);
    if (!st) st = write_json(&T, &opt, json_out);
    trainer_free(&T);
    return st;
}
