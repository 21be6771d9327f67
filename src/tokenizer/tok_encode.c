/*
 * tok_encode.c — text -> ids: the pipeline of a Hugging Face tokenizer.
 *
 *   1. invalid UTF-8 -> U+FFFD (tok_utf8_repair; valid input is not copied)
 *   2. split on added tokens: at each byte the longest added token wins
 *      (a byte trie); lstrip/rstrip trim the neighbouring text
 *   3. per text section: normalizers (NFC..., Prepend, Replace, ...)
 *   4. pre-tokenizers turn the section into pieces (regex splits, ByteLevel,
 *      Metaspace), as (offset, length) pairs into one arena buffer
 *   5. the BPE model turns each piece into ids (tok_bpe.c); fuse_unk joins
 *      runs of unk
 *   6. the post-processor template adds BOS/EOS when asked
 * Regex iteration, as the reference's: after an empty match the search
 * resumes one code point later; a Split sorts matches and the gaps between
 * them into pieces by its delimiter behaviour. All buffers belong to the caller's
 * rm_tok_ids scratch and are reused between calls.
 */
#include "tokenizer/tok_internal.h"

#include <string.h>
#include <utf8proc.h>

pcre2_general_context *tok_regex_ctx(void);

/* ---- added-token trie ---------------------------------------------------- */

void tok_build_trie_free(rm_tok *t) {
    rm_free(t->trie);
    rm_free(t->edges);
    t->trie = NULL;
    t->edges = NULL;
    t->n_trie = t->n_edges = 0;
}

/* Build a byte trie: a temporary child-list form, then flattened so that each
 * node's children are contiguous and sorted by byte. */
rm_status tok_build_trie(rm_tok *t) {
    size_t total = 1;
    for (size_t i = 0; i < t->n_added; i++) total += t->added[i].len;
    /* temporary: first_child/next_sibling lists */
    typedef struct { int32_t child, sib, added; uint8_t b; } tnode;
    tnode *tn = rm_malloc(total * sizeof *tn);
    if (!tn) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name);
    size_t nn = 1;
    tn[0] = (tnode){-1, -1, -1, 0};
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t cur = 0;
        for (size_t k = 0; k < t->added[i].len; k++) {
            uint8_t b = (uint8_t)t->added[i].content[k];
            int32_t c = tn[cur].child, prev = -1;
            while (c >= 0 && tn[c].b < b) { prev = c; c = tn[c].sib; }
            if (c < 0 || tn[c].b != b) {
                int32_t nw = (int32_t)nn++;
                tn[nw] = (tnode){-1, c, -1, b};
                if (prev < 0) tn[cur].child = nw;
                else tn[prev].sib = nw;
                c = nw;
            }
            cur = c;
        }
        if (tn[cur].added < 0) tn[cur].added = (int32_t)i;
        t->added_first[(uint8_t)t->added[i].content[0]] = 1;
    }
    t->trie = rm_malloc(nn * sizeof *t->trie);
    t->edges = rm_malloc(nn * sizeof *t->edges);
    if (!t->trie || !t->edges) { rm_free(tn); return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name); }
    /* breadth-first renumbering is not needed: keep indexes, lay out edges */
    size_t ne = 0;
    for (size_t i = 0; i < nn; i++) {
        t->trie[i].added = tn[i].added;
        t->trie[i].first_child = (uint32_t)ne;
        uint32_t cnt = 0;
        for (int32_t c = tn[i].child; c >= 0; c = tn[c].sib) {
            t->edges[ne++] = (tok_trie_edge){tn[c].b, (uint32_t)c};
            cnt++;
        }
        t->trie[i].n_child = cnt;
    }
    t->n_trie = nn;
    t->n_edges = ne;
    rm_free(tn);
    return RM_OK;
}

/* Longest added token starting at s[0..n); index into t->added or -1. */
static int32_t trie_match(const rm_tok *t, const char *s, size_t n, bool skip_special, size_t *mlen) {
    uint32_t node = 0;
    int32_t best = -1;
    for (size_t k = 0; k < n; k++) {
        const tok_trie_node *nd = &t->trie[node];
        uint8_t b = (uint8_t)s[k];
        uint32_t lo = nd->first_child, hi = lo + nd->n_child, next = UINT32_MAX;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (t->edges[mid].byte < b) lo = mid + 1;
            else if (t->edges[mid].byte > b) hi = mid;
            else { next = t->edges[mid].node; break; }
        }
        if (next == UINT32_MAX) break;
        node = next;
        int32_t a = t->trie[node].added;
        if (a >= 0 && !(skip_special && t->added[a].special)) {
            best = a;
            *mlen = k + 1;
        }
    }
    return best;
}

/* ---- scratch helpers ------------------------------------------------------ */

static rm_status grow_sz(size_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return RM_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    size_t *np = rm_realloc(*p, c * sizeof *np);
    if (!np) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
    *p = np;
    *cap = c;
    return RM_OK;
}

static rm_status sect_push(struct rm_tok_scratch *sc, size_t *n, size_t off, size_t len, size_t added) {
    RM_TRY(grow_sz(&sc->sect, &sc->cap_sect, (*n + 1) * 3));
    sc->sect[*n * 3] = off;
    sc->sect[*n * 3 + 1] = len;
    sc->sect[*n * 3 + 2] = added;
    (*n)++;
    return RM_OK;
}

/* ---- normalizers ---------------------------------------------------------- */

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0x80) return false;
    return true;
}

/* Code points whose (canonical or compatibility) decomposition the Rust
 * library's normalization tables lack, as they predate it (Unicode 12.1 and
 * later; found by comparing its NFD/NFKD with newer tables on every code
 * point): its normalizers pass them through unchanged, and so does ramole. */
static const uint32_t norm_frozen[][2] = {
    {0x32FF, 0x32FF}, {0xA7F1, 0xA7F4}, {0xAB69, 0xAB69}, {0x105C9, 0x105C9}, {0x105E4, 0x105E4},
    {0x10781, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x11383, 0x11383}, {0x11385, 0x11385},
    {0x1138E, 0x1138E}, {0x11391, 0x11391}, {0x113C5, 0x113C5}, {0x113C7, 0x113C8}, {0x11938, 0x11938},
    {0x16121, 0x16128}, {0x16D68, 0x16D6A}, {0x1CCD6, 0x1CCF9}, {0x1E030, 0x1E06D}, {0x1F16C, 0x1F16C},
    {0x1FBF0, 0x1FBF9},
};

static bool norm_is_frozen(uint32_t cp) {
    if (cp < 0x32FF) return false;
    for (size_t k = 0; k < sizeof norm_frozen / sizeof norm_frozen[0]; k++)
        if (cp >= norm_frozen[k][0] && cp <= norm_frozen[k][1]) return true;
    return false;
}

/* Offset of the first frozen code point in s[0..n), or n. */
static size_t norm_next_frozen(const char *s, size_t n, size_t *len) {
    for (size_t i = 0; i < n;) {
        if ((uint8_t)s[i] < 0xE3) { i += (uint8_t)s[i] < 0x80 ? 1 : 2; continue; } /* below U+3000 */
        size_t l;
        uint32_t cp = tok_utf8_decode((const uint8_t *)s + i, &l);
        if (norm_is_frozen(cp)) { *len = l; return i; }
        i += l;
    }
    return n;
}

/* Normalize s[0..n) with utf8proc, appending to out. */
static rm_status norm_utf8proc(struct rm_tok_scratch *sc, norm_kind k, const char *s, size_t n, tok_buf *out) {
    utf8proc_option_t opt = UTF8PROC_STABLE | (k == NORM_NFC || k == NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                            (k == NORM_NFKC || k == NORM_NFKD ? UTF8PROC_COMPAT : 0);
    for (;;) {
        utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                                (utf8proc_int32_t *)sc->u32, (utf8proc_ssize_t)sc->cap_u32, opt);
        if (r < 0) return rm_err(RAMOLE_ERR_INTERNAL, "tokenizer: Unicode normalization failed: %s", utf8proc_errmsg(r));
        if ((size_t)r <= sc->cap_u32) {
            r = utf8proc_reencode((utf8proc_int32_t *)sc->u32, r, opt);
            if (r < 0) return rm_err(RAMOLE_ERR_INTERNAL, "tokenizer: Unicode normalization failed: %s", utf8proc_errmsg(r));
            return tok_buf_put(out, sc->u32, (size_t)r);
        }
        size_t c = sc->cap_u32 ? sc->cap_u32 : 256;
        while (c < (size_t)r) c *= 2;
        uint32_t *nu = rm_realloc(sc->u32, c * sizeof *nu);
        if (!nu) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
        sc->u32 = nu;
        sc->cap_u32 = c;
    }
}

/* Normalize s[0..n) into out (replacing it). A frozen code point is a
 * starter with no decomposition for the reference, so normalizing the text
 * between frozen code points apart and copying them gives its result. */
static rm_status norm_unicode(struct rm_tok_scratch *sc, norm_kind k, const char *s, size_t n, tok_buf *out) {
    out->n = 0;
    for (;;) {
        size_t fl = 0, f = norm_next_frozen(s, n, &fl);
        if (f) RM_TRY(norm_utf8proc(sc, k, s, f, out));
        if (f == n) return RM_OK;
        RM_TRY(tok_buf_put(out, s + f, fl));
        s += f + fl;
        n -= f + fl;
    }
}

static rm_status replace_all(const char *s, size_t n, const char *pat, size_t pn, const char *rep, size_t rn,
                             tok_buf *out) {
    out->n = 0;
    RM_TRY(tok_buf_reserve(out, n));
    size_t i = 0;
    while (i < n) {
        const char *f = pn <= n - i ? memmem(s + i, n - i, pat, pn) : NULL;
        if (!f) { RM_TRY(tok_buf_put(out, s + i, n - i)); break; }
        RM_TRY(tok_buf_put(out, s + i, (size_t)(f - (s + i))));
        RM_TRY(tok_buf_put(out, rep, rn));
        i = (size_t)(f - s) + pn;
    }
    return RM_OK;
}

static size_t next_cp_len(const char *s, size_t n, size_t i) {
    size_t l = tok_utf8_valid_len((const uint8_t *)s + i, n - i);
    return l ? l : 1;
}

static rm_status regex_replace_all(struct rm_tok_scratch *sc, const tok_regex *re, const char *s, size_t n,
                                   const char *rep, size_t rn, tok_buf *out) {
    out->n = 0;
    RM_TRY(tok_buf_reserve(out, n));
    size_t pos = 0, last = 0;
    const pcre2_code *code = tok_regex_code(re, s, n);
    while (pos <= n) {
        int rc = pcre2_match(code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, sc->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0 && rc != 0) return rm_err(RAMOLE_ERR_INTERNAL, "tokenizer: regex match failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
        RM_TRY(tok_buf_put(out, s + last, ov[0] - last));
        RM_TRY(tok_buf_put(out, rep, rn));
        last = ov[1];
        if (ov[1] == ov[0]) {
            if (ov[1] >= n) break;
            size_t l = next_cp_len(s, n, ov[1]);
            RM_TRY(tok_buf_put(out, s + ov[1], l));
            last = ov[1] + l;
            pos = last;
        } else {
            pos = ov[1];
        }
    }
    if (last < n) RM_TRY(tok_buf_put(out, s + last, n - last));
    return RM_OK;
}

/* Lower case of one code point as the Rust library's char::to_lowercase
 * (Unicode 17) gives it, for the code points whose mapping is one code
 * point: utf8proc's simple mapping (Unicode 15) plus the capitals Unicode
 * 16 and 17 added (found on every code point, tests/cli/tokenizer_hf.sh). */
static uint32_t lower_cp(uint32_t cp) {
    switch (cp) {
    case 0x1C89: return 0x1C8A;
    case 0xA7CB: return 0x0264;
    case 0xA7CC: return 0xA7CD;
    case 0xA7DA: return 0xA7DB;
    case 0xA7DC: return 0x019B;
    case 0xA7CE: case 0xA7D2: case 0xA7D4: return cp + 1;
    default: break;
    }
    if (cp >= 0x10D50 && cp <= 0x10D65) return cp + 0x20; /* Garay */
    if (cp >= 0x16EA0 && cp <= 0x16EB8) return cp + 0x1B; /* Beria Erfe */
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}

/* The Rust library's Lowercase: each code point on its own (no final-sigma
 * rule), U+0130 -> "i\u0307", the rest through lower_cp. */
static rm_status norm_lower(const char *s, size_t n, tok_buf *out) {
    out->n = 0;
    RM_TRY(tok_buf_reserve(out, n));
    size_t i = 0;
    while (i < n) {
        size_t l;
        uint32_t cp = tok_utf8_decode((const uint8_t *)s + i, &l);
        if (cp == 0x130) {
            RM_TRY(tok_buf_put(out, "i\xcc\x87", 3));
        } else {
            char e[4];
            RM_TRY(tok_buf_put(out, e, tok_utf8_encode(lower_cp(cp), e)));
        }
        i += l;
    }
    return RM_OK;
}

/* Bounds of s[0..n) trimmed of Unicode White_Space at the start and/or end. */
static void ws_trim(const char *s, size_t n, bool left, bool right, size_t *a, size_t *b) {
    size_t i = 0, j = n;
    if (left) {
        while (i < n) {
            size_t l;
            uint32_t cp = tok_utf8_decode((const uint8_t *)s + i, &l);
            if (!tok_unicode_space(cp)) break;
            i += l;
        }
    }
    if (right) {
        while (j > i) {
            size_t k = j - 1;
            while (k > i && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
            size_t l;
            uint32_t cp = tok_utf8_decode((const uint8_t *)s + k, &l);
            if (!tok_unicode_space(cp)) break;
            j = k;
        }
    }
    *a = i;
    *b = j;
}

/* Normalize s[0..n); *res points at the result (s itself when nothing ran).
 * no_prefix skips Prepend (the text continues an earlier one). */
static rm_status normalize(const rm_tok *t, struct rm_tok_scratch *sc, const char *s, size_t n, bool no_prefix,
                           const char **res, size_t *rn) {
    const char *cur = s;
    size_t cn = n;
    tok_buf *bufs[2] = {&sc->norm, &sc->norm2};
    int w = 0;
    for (size_t k = 0; k < t->n_norm; k++) {
        const tok_norm *nm = &t->norm[k];
        tok_buf *out = bufs[w];
        switch (nm->kind) {
        case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD:
            if (all_ascii(cur, cn)) continue;
            RM_TRY(norm_unicode(sc, nm->kind, cur, cn, out));
            break;
        case NORM_PREPEND:
            if (no_prefix) continue;
            out->n = 0;
            RM_TRY(tok_buf_put(out, nm->a, nm->alen));
            RM_TRY(tok_buf_put(out, cur, cn));
            break;
        case NORM_REPLACE:
            if (nm->re.code) RM_TRY(regex_replace_all(sc, &nm->re, cur, cn, nm->b, nm->blen, out));
            else if (nm->alen == 0) continue;
            else RM_TRY(replace_all(cur, cn, nm->a, nm->alen, nm->b, nm->blen, out));
            break;
        case NORM_LOWERCASE:
            RM_TRY(norm_lower(cur, cn, out));
            break;
        case NORM_STRIP: {
            size_t a, b;
            ws_trim(cur, cn, nm->left, nm->right, &a, &b);
            out->n = 0;
            RM_TRY(tok_buf_put(out, cur + a, b - a));
            break;
        }
        }
        cur = out->p;
        cn = out->n;
        w ^= 1;
    }
    *res = cur;
    *rn = cn;
    return RM_OK;
}

/* ---- pre-tokenizers -------------------------------------------------------- */

typedef struct {
    size_t *p; /* (off, len) pairs into sc->pieces_buf */
    size_t n;
} piece_list;

static rm_status piece_add(struct rm_tok_scratch *sc, size_t **arr, size_t *cap, size_t *n, size_t off, size_t len) {
    if (len == 0) return RM_OK;
    RM_TRY(grow_sz(arr, cap, (*n + 1) * 2));
    (*arr)[*n * 2] = off;
    (*arr)[*n * 2 + 1] = len;
    (*n)++;
    (void)sc;
    return RM_OK;
}

/* The pieces of a split being built: a segment (a match or a gap between
 * matches) waits in `pend` until the next one shows whether they join. */
typedef struct {
    split_behavior how;
    bool invert;           /* the gaps are the delimiters */
    size_t ps, pe;         /* pending piece [ps, pe) of the arena */
    bool has_pend, pend_delim, prev_delim;
} split_state;

static rm_status split_emit(struct rm_tok_scratch *sc, split_state *st, size_t *n2) {
    if (st->has_pend) RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, n2, st->ps, st->pe - st->ps));
    st->has_pend = false;
    return RM_OK;
}

/* Feed the next segment [a, b) of the arena; is_match before inversion.
 * Follows the Rust library's SplitDelimiterBehavior fold. */
static rm_status split_segment(struct rm_tok_scratch *sc, split_state *st, size_t a, size_t b, bool is_match,
                               size_t *n2) {
    bool delim = is_match != st->invert;
    bool join = false;
    switch (st->how) {
    case SPLIT_ISOLATED: break;
    case SPLIT_REMOVED:
        if (delim) { st->prev_delim = true; return RM_OK; }
        break;
    case SPLIT_CONTIGUOUS: join = st->has_pend && delim == st->prev_delim; break;
    case SPLIT_MERGED_WITH_PREVIOUS: join = st->has_pend && delim && !st->prev_delim; break;
    case SPLIT_MERGED_WITH_NEXT: join = st->has_pend && st->pend_delim && !delim; break;
    }
    st->prev_delim = delim;
    if (join) {
        st->pe = b;
        st->pend_delim = false; /* a merged piece joins nothing after it */
        return RM_OK;
    }
    RM_TRY(split_emit(sc, st, n2));
    st->ps = a, st->pe = b, st->has_pend = true, st->pend_delim = delim;
    return RM_OK;
}

/* Run one regex over the piece at buf[off..off+len) and add the resulting
 * pieces as `how` and `invert` say (Removed + invert: the matches only). */
static rm_status regex_pieces(struct rm_tok_scratch *sc, const tok_regex *re, size_t off, size_t len,
                              split_behavior how, bool invert, size_t *n2) {
    const char *s = sc->pieces_buf.p + off;
    size_t pos = 0, prev = 0;
    split_state st = {.how = how, .invert = invert};
    const pcre2_code *code = tok_regex_code(re, s, len);
    while (pos <= len) {
        int rc = pcre2_match(code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, sc->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return rm_err(RAMOLE_ERR_INTERNAL, "tokenizer: regex match failed (error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
        size_t ms = ov[0], me = ov[1];
        if (how == SPLIT_ISOLATED) { /* the common cases, without the fold */
            if (ms > prev) RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, n2, off + prev, ms - prev));
            RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, n2, off + ms, me - ms));
        } else if (how == SPLIT_REMOVED && invert) {
            RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, n2, off + ms, me - ms));
        } else {
            if (ms > prev) RM_TRY(split_segment(sc, &st, off + prev, off + ms, false, n2));
            RM_TRY(split_segment(sc, &st, off + ms, off + me, true, n2));
        }
        prev = me;
        if (me == ms) {
            if (me >= len) break;
            pos = me + next_cp_len(s, len, me);
        } else {
            pos = me;
        }
    }
    if (how == SPLIT_ISOLATED) return prev < len ? piece_add(sc, &sc->pieces2, &sc->cap_pieces2, n2, off + prev, len - prev) : RM_OK;
    if (how == SPLIT_REMOVED && invert) return RM_OK;
    if (prev < len) RM_TRY(split_segment(sc, &st, off + prev, off + len, false, n2));
    return split_emit(sc, &st, n2);
}

/* Append new text to the arena; returns its offset. (The arena may move.) */
static rm_status arena_put(struct rm_tok_scratch *sc, const char *s, size_t n, size_t *off) {
    *off = sc->pieces_buf.n;
    return tok_buf_put(&sc->pieces_buf, s, n);
}

/* no_prefix: the section starts the text and the text continues an earlier
 * one, so its first piece gets no prefix space (ByteLevel, Metaspace). */
static rm_status pretokenize(const rm_tok *t, struct rm_tok_scratch *sc, size_t section_index, bool no_prefix,
                             size_t *np) {
    for (size_t k = 0; k < t->n_pre; k++) {
        const tok_pre *p = &t->pre[k];
        size_t n2 = 0;
        for (size_t i = 0; i < *np; i++) {
            size_t off = sc->pieces[2 * i], len = sc->pieces[2 * i + 1];
            switch (p->kind) {
            case PRE_BYTELEVEL:
                if (p->add_prefix_space && !(no_prefix && i == 0) && sc->pieces_buf.p[off] != ' ') {
                    size_t no;
                    RM_TRY(arena_put(sc, " ", 1, &no));
                    RM_TRY(tok_buf_reserve(&sc->pieces_buf, len));
                    memmove(sc->pieces_buf.p + sc->pieces_buf.n, sc->pieces_buf.p + off, len);
                    sc->pieces_buf.n += len;
                    off = no;
                    len += 1;
                }
                if (p->use_regex) RM_TRY(regex_pieces(sc, &p->re, off, len, SPLIT_ISOLATED, false, &n2));
                else RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, &n2, off, len));
                break;
            case PRE_SPLIT:
                RM_TRY(regex_pieces(sc, &p->re, off, len, p->behavior, p->invert, &n2));
                break;
            case PRE_DIGITS:
            case PRE_WSSPLIT: /* the pattern covers each piece: its matches */
                RM_TRY(regex_pieces(sc, &p->re, off, len, SPLIT_REMOVED, true, &n2));
                break;
            case PRE_METASPACE: {
                /* replace ' ' by the replacement, maybe prepend it, maybe split before each */
                size_t start = sc->pieces_buf.n;
                bool prefix = p->add_prefix_space && !(no_prefix && i == 0) &&
                              (p->prepend == 0 || (p->prepend == 1 && section_index == 0 && i == 0));
                const char *src;
                RM_TRY(tok_buf_reserve(&sc->pieces_buf, len * p->replen + p->replen));
                src = sc->pieces_buf.p + off;
                bool starts = len >= p->replen && memcmp(src, p->rep, p->replen) == 0;
                if (prefix && !starts && !(len && src[0] == ' ')) RM_TRY(tok_buf_put(&sc->pieces_buf, p->rep, p->replen));
                for (size_t j = 0; j < len; j++) {
                    src = sc->pieces_buf.p + off;
                    if (src[j] == ' ') RM_TRY(tok_buf_put(&sc->pieces_buf, p->rep, p->replen));
                    else RM_TRY(tok_buf_putc(&sc->pieces_buf, src[j]));
                }
                size_t end = sc->pieces_buf.n;
                if (!p->invert) { RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, &n2, start, end - start)); break; }
                size_t a = start;
                for (size_t j = start + 1; j + p->replen <= end; j++) {
                    if (memcmp(sc->pieces_buf.p + j, p->rep, p->replen) == 0) {
                        RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, &n2, a, j - a));
                        a = j;
                    }
                }
                RM_TRY(piece_add(sc, &sc->pieces2, &sc->cap_pieces2, &n2, a, end - a));
                break;
            }
            }
        }
        size_t *tp = sc->pieces;
        sc->pieces = sc->pieces2;
        sc->pieces2 = tp;
        size_t tc = sc->cap_pieces;
        sc->cap_pieces = sc->cap_pieces2;
        sc->cap_pieces2 = tc;
        *np = n2;
    }
    return RM_OK;
}

/* ---- SentencePiece words ------------------------------------------------------
 *
 * A SentencePiece-style model without a pre-tokenizer runs BPE over a whole
 * section. When no vocabulary token has "▁" right after another character
 * than "▁" (true of the Llama-2 and Mistral vocabularies), no merge can join
 * a symbol that ends before such a "▁" with the one that starts at it, so
 * splitting the section there changes no result: BPE inside one piece never
 * depends on another. The pieces are short and repeat, so the word cache
 * applies; the merge loop no longer runs on whole paragraphs.
 */
void tok_sp_split_check(rm_tok *t) {
    t->sp_split = false;
    if (t->byte_level || t->n_pre != 0 || t->eow_len) return;
    for (int32_t i = 0; i < t->n_ids; i++) {
        if (!(t->flags[i] & TOKF_USED) || (t->flags[i] & TOKF_ADDED)) continue;
        const char *s = t->bytes[i];
        uint32_t n = t->bytes_len[i];
        for (uint32_t k = 1; k + 3 <= n; k++)
            if (!memcmp(s + k, "\xe2\x96\x81", 3) && !(k >= 3 && !memcmp(s + k - 3, "\xe2\x96\x81", 3))) return;
    }
    t->sp_split = true;
}

static rm_status sp_split_pieces(struct rm_tok_scratch *sc, size_t len, size_t *np) {
    const char *s = sc->pieces_buf.p;
    size_t a = 0;
    *np = 0;
    for (size_t k = 1; k + 3 <= len; k++) {
        if (s[k] == '\xe2' && !memcmp(s + k, "\xe2\x96\x81", 3) && !(k >= 3 && !memcmp(s + k - 3, "\xe2\x96\x81", 3))) {
            RM_TRY(piece_add(sc, &sc->pieces, &sc->cap_pieces, np, a, k - a));
            a = k;
        }
    }
    return piece_add(sc, &sc->pieces, &sc->cap_pieces, np, a, len - a);
}

/* ---- the whole pipeline ---------------------------------------------------- */

static rm_status encode_text(const rm_tok *t, struct rm_tok_scratch *sc, const char *s, size_t n, size_t section_index,
                             bool no_prefix, rm_tok_ids *out) {
    const char *norm;
    size_t nn;
    RM_TRY(normalize(t, sc, s, n, no_prefix, &norm, &nn));
    if (nn == 0) return RM_OK;
    sc->pieces_buf.n = 0;
    RM_TRY(tok_buf_put(&sc->pieces_buf, norm, nn));
    size_t np = 0;
    if (t->sp_split) {
        RM_TRY(sp_split_pieces(sc, nn, &np));
    } else {
        RM_TRY(piece_add(sc, &sc->pieces, &sc->cap_pieces, &np, 0, nn));
        RM_TRY(pretokenize(t, sc, section_index, no_prefix, &np));
    }
    size_t first = out->n;
    for (size_t i = 0; i < np; i++)
        RM_TRY(tok_bpe_word(t, sc, sc->pieces_buf.p + sc->pieces[2 * i], sc->pieces[2 * i + 1], out));
    if (t->fuse_unk && t->unk_id >= 0) {
        size_t w = first;
        for (size_t r = first; r < out->n; r++) {
            if (out->ids[r] == t->unk_id && w > first && out->ids[w - 1] == t->unk_id) continue;
            out->ids[w++] = out->ids[r];
        }
        out->n = w;
    }
    return RM_OK;
}

rm_status rm_tok_encode(const rm_tok *t, const char *text, size_t len, unsigned flags, rm_tok_ids *out) {
    struct rm_tok_scratch *sc;
    RM_TRY(tok_scratch_get(t, out, &sc));
    out->n = 0;
    if (!text && len) return rm_err(RAMOLE_ERR_INVALID, "rm_tok_encode: NULL text");
    if (!sc->md) {
        sc->md = pcre2_match_data_create(32, tok_regex_ctx());
        if (!sc->md) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
    }
    const char *s = text ? text : "";
    if (!tok_utf8_is_valid(s, len)) {
        sc->text.n = 0;
        RM_TRY(tok_utf8_repair(s, len, &sc->text));
        s = sc->text.p;
        len = sc->text.n;
    }

    /* sections */
    size_t ns = 0, start = 0;
    bool skip_special = flags & RM_TOK_NO_PARSE_SPECIAL;
    if (t->n_added) {
        for (size_t i = 0; i < len;) {
            size_t ml = 0;
            if (!t->added_first[(uint8_t)s[i]]) { i++; continue; }
            int32_t a = trie_match(t, s + i, len - i, skip_special, &ml);
            if (a < 0) { i++; continue; }
            if (i > start) RM_TRY(sect_push(sc, &ns, start, i - start, SIZE_MAX));
            RM_TRY(sect_push(sc, &ns, i, ml, (size_t)a));
            i += ml;
            start = i;
        }
    }
    if (start < len || ns == 0) RM_TRY(sect_push(sc, &ns, start, len - start, SIZE_MAX));
    for (size_t i = 0; i < ns; i++) { /* lstrip / rstrip of added tokens */
        size_t a = sc->sect[3 * i + 2];
        if (a == SIZE_MAX) continue;
        if (t->added[a].lstrip && i > 0 && sc->sect[3 * (i - 1) + 2] == SIZE_MAX) {
            size_t x, y;
            ws_trim(s + sc->sect[3 * (i - 1)], sc->sect[3 * (i - 1) + 1], false, true, &x, &y);
            sc->sect[3 * (i - 1) + 1] = y;
        }
        if (t->added[a].rstrip && i + 1 < ns && sc->sect[3 * (i + 1) + 2] == SIZE_MAX) {
            size_t x, y;
            ws_trim(s + sc->sect[3 * (i + 1)], sc->sect[3 * (i + 1) + 1], true, false, &x, &y);
            sc->sect[3 * (i + 1)] += x;
            sc->sect[3 * (i + 1) + 1] = y - x;
        }
    }
    for (size_t i = 0; i < ns; i++) {
        size_t off = sc->sect[3 * i], n = sc->sect[3 * i + 1], a = sc->sect[3 * i + 2];
        if (a != SIZE_MAX) RM_TRY(tok_ids_push(out, t->added[a].id));
        else if (n) RM_TRY(encode_text(t, sc, s + off, n, i, (flags & RM_TOK_CONTINUATION) && off == 0, out));
    }

    /* post-processor */
    if ((flags & RM_TOK_ADD_SPECIAL) && t->has_template) {
        size_t before = 0, after = 0;
        bool seen = false;
        for (size_t k = 0; k < t->n_tmpl_single; k++) {
            if (t->tmpl_single[k] < 0) seen = true;
            else if (seen) after++;
            else before++;
        }
        size_t body = out->n;
        if (!seen) body = 0; /* a template without the sequence drops it */
        for (size_t k = 0; k < before + after; k++) RM_TRY(tok_ids_push(out, 0));
        memmove(out->ids + before, out->ids, body * sizeof(int32_t));
        size_t w = 0;
        for (size_t k = 0; k < t->n_tmpl_single; k++) {
            if (t->tmpl_single[k] < 0) w += body;
            else out->ids[w++] = t->tmpl_single[k];
        }
        out->n = w;
    }
    return RM_OK;
}

rm_status rm_tok_encode_buf(const rm_tok *t, const char *text, size_t len, unsigned flags, int32_t *buf, size_t cap,
                            size_t *n_out) {
    rm_tok_ids ids = {0};
    rm_status st = rm_tok_encode(t, text, len, flags, &ids);
    *n_out = st ? 0 : ids.n;
    if (!st) {
        if (ids.n > cap) st = rm_err(RAMOLE_ERR_TOO_SMALL, "rm_tok_encode_buf: %zu ids do not fit in %zu", ids.n, cap);
        else if (ids.n) memcpy(buf, ids.ids, ids.n * sizeof *buf);
    }
    rm_tok_ids_free(&ids);
    return st;
}
