/*
 * tok_decode.c — ids -> text: the decoder chain of tokenizer.json.
 *
 * Decoders work on a list of strings (one per token at the start) as the
 * reference does: ByteLevel turns runs of byte-mapped tokens back into
 * bytes and then into text (invalid UTF-8 -> U+FFFD per maximal subpart),
 * added tokens stay as written; Replace, ByteFallback (<0xXX> runs -> bytes
 * -> text, a run that is not valid UTF-8 -> one U+FFFD per byte), Fuse, Strip, Metaspace and BPEDecoder follow. A list is an arena
 * buffer plus (offset, length) pairs; each step writes a new list.
 * After the chain: end_of_word_suffix -> space, then the optional
 * clean_up_tokenization_spaces rewrite (" ." -> ".", " n't" -> "n't", ...),
 * on by default as in transformers, off in tokenizer_config.json for most
 * modern models.
 *
 * rm_tok_piece gives the raw bytes of a single token for streaming; its table
 * is built once at load (tok_build_pieces).
 */
#include "tokenizer/tok_internal.h"

#include <string.h>

typedef struct {
    tok_buf buf;
    size_t *p; /* (off, len) */
    size_t n, cap;
} strlist;

static void sl_free(strlist *l) {
    tok_buf_free(&l->buf);
    rm_free(l->p);
}

static rm_status sl_add(strlist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        size_t *np = rm_realloc(l->p, c * 2 * sizeof *np);
        if (!np) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
        l->p = np;
        l->cap = c;
    }
    size_t off = l->buf.n;
    RM_TRY(tok_buf_put(&l->buf, s, n));
    RM_TRY(tok_buf_reserve(&l->buf, 0));
    l->p[2 * l->n] = off;
    l->p[2 * l->n + 1] = n;
    l->n++;
    return RM_OK;
}

/* Start a new item built piecewise with sl_app; sl_add(l, "", 0) then append. */
static rm_status sl_app(strlist *l, const char *s, size_t n) {
    RM_TRY(tok_buf_put(&l->buf, s, n));
    l->p[2 * (l->n - 1) + 1] += n;
    return RM_OK;
}

#define ITEM(l, i) ((l)->buf.p + (l)->p[2 * (i)])
#define ILEN(l, i) ((l)->p[2 * (i) + 1])

static bool is_added_str(const rm_tok *t, const char *s, size_t n) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, s, n) == 0) return true;
    return false;
}

/* Byte-mapped chars -> bytes; chars outside the alphabet keep their UTF-8. */
static rm_status unmap_bytes(const char *s, size_t n, tok_buf *out) {
    size_t i = 0;
    while (i < n) {
        size_t l = tok_utf8_valid_len((const uint8_t *)s + i, n - i);
        if (!l) { RM_TRY(tok_buf_putc(out, s[i])); i++; continue; }
        size_t dl;
        int b = tok_cp_to_byte(tok_utf8_decode((const uint8_t *)s + i, &dl));
        if (b >= 0) RM_TRY(tok_buf_putc(out, (char)b));
        else RM_TRY(tok_buf_put(out, s + i, l));
        i += l;
    }
    return RM_OK;
}

/* A run of bytes as text: invalid UTF-8 becomes U+FFFD per maximal subpart
 * (ByteLevel: Rust's from_utf8_lossy), or with per_byte one U+FFFD for
 * every byte of a run that is not valid UTF-8 as a whole (ByteFallback). */
static rm_status flush_bytes(strlist *out, tok_buf *bytes, bool per_byte) {
    if (!bytes->n) return RM_OK;
    tok_buf fixed = {0};
    rm_status st = RM_OK;
    if (per_byte && !tok_utf8_is_valid(bytes->p, bytes->n)) {
        for (size_t i = 0; i < bytes->n && !st; i++) st = tok_buf_put(&fixed, "\xEF\xBF\xBD", 3);
    } else {
        st = tok_utf8_repair(bytes->p, bytes->n, &fixed);
    }
    if (!st) st = sl_add(out, fixed.p, fixed.n);
    tok_buf_free(&fixed);
    bytes->n = 0;
    return st;
}

static rm_status replace_into(strlist *out, const char *s, size_t n, const char *a, size_t an, const char *b, size_t bn) {
    RM_TRY(sl_add(out, "", 0));
    size_t i = 0;
    while (i < n) {
        const char *f = an <= n - i ? memmem(s + i, n - i, a, an) : NULL;
        if (!f) return sl_app(out, s + i, n - i);
        RM_TRY(sl_app(out, s + i, (size_t)(f - (s + i))));
        RM_TRY(sl_app(out, b, bn));
        i = (size_t)(f - s) + an;
    }
    return RM_OK;
}

static rm_status run_decoder(const rm_tok *t, const tok_dec *d, const strlist *in, strlist *out) {
    tok_buf bytes = {0};
    rm_status st = RM_OK;
    switch (d->kind) {
    case DEC_BYTELEVEL:
        for (size_t i = 0; i < in->n && !st; i++) {
            if (is_added_str(t, ITEM(in, i), ILEN(in, i))) {
                st = flush_bytes(out, &bytes, false);
                if (!st) st = sl_add(out, ITEM(in, i), ILEN(in, i));
            } else {
                st = unmap_bytes(ITEM(in, i), ILEN(in, i), &bytes);
            }
        }
        if (!st) st = flush_bytes(out, &bytes, false);
        break;
    case DEC_BYTEFALLBACK:
        for (size_t i = 0; i < in->n && !st; i++) {
            uint8_t b;
            if (tok_byte_token(ITEM(in, i), ILEN(in, i), &b)) {
                st = tok_buf_putc(&bytes, (char)b);
            } else {
                st = flush_bytes(out, &bytes, true);
                if (!st) st = sl_add(out, ITEM(in, i), ILEN(in, i));
            }
        }
        if (!st) st = flush_bytes(out, &bytes, true);
        break;
    case DEC_FUSE:
        st = sl_add(out, "", 0);
        for (size_t i = 0; i < in->n && !st; i++) st = sl_app(out, ITEM(in, i), ILEN(in, i));
        break;
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n && !st; i++) st = replace_into(out, ITEM(in, i), ILEN(in, i), d->a, d->alen, d->b, d->blen);
        break;
    case DEC_STRIP:
        for (size_t i = 0; i < in->n && !st; i++) {
            const char *s = ITEM(in, i);
            size_t n = ILEN(in, i), a = 0, b = n;
            for (int k = 0; k < d->start && a + d->alen <= b && memcmp(s + a, d->a, d->alen) == 0; k++) a += d->alen;
            for (int k = 0; k < d->stop && b >= a + d->alen && memcmp(s + b - d->alen, d->a, d->alen) == 0; k++) b -= d->alen;
            st = sl_add(out, s + a, b - a);
        }
        break;
    case DEC_METASPACE:
        /* as the Rust library: with a prefix, the first token loses every
         * replacement character, not only its first */
        for (size_t i = 0; i < in->n && !st; i++) {
            bool drop = d->add_prefix_space && i == 0;
            st = replace_into(out, ITEM(in, i), ILEN(in, i), d->a, d->alen, " ", drop ? 0 : 1);
        }
        break;
    case DEC_BPE:
        for (size_t i = 0; i < in->n && !st; i++)
            st = replace_into(out, ITEM(in, i), ILEN(in, i), d->a, d->alen, i + 1 == in->n ? "" : " ", i + 1 == in->n ? 0 : 1);
        break;
    }
    tok_buf_free(&bytes);
    return st;
}

static rm_status replace_buf(tok_buf *b, const char *pat, const char *rep) {
    size_t pn = strlen(pat), rn = strlen(rep);
    if (!b->n || !memmem(b->p, b->n, pat, pn)) return RM_OK;
    tok_buf o = {0};
    size_t i = 0;
    rm_status st = RM_OK;
    while (i < b->n && !st) {
        const char *f = pn <= b->n - i ? memmem(b->p + i, b->n - i, pat, pn) : NULL;
        if (!f) { st = tok_buf_put(&o, b->p + i, b->n - i); break; }
        st = tok_buf_put(&o, b->p + i, (size_t)(f - (b->p + i)));
        if (!st) st = tok_buf_put(&o, rep, rn);
        i = (size_t)(f - b->p) + pn;
    }
    if (st) { tok_buf_free(&o); return st; }
    tok_buf_free(b);
    *b = o;
    return RM_OK;
}

rm_status rm_tok_decode(const rm_tok *t, const int32_t *ids, size_t n, unsigned flags, char **out, size_t *len_out) {
    *out = NULL;
    if (len_out) *len_out = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !(t->flags[ids[i]] & TOKF_USED))
            return rm_err(RAMOLE_ERR_RANGE, "%s: token id %d (at position %zu) is out of range: the vocabulary has ids 0..%d",
                          t->name, ids[i], i, t->n_ids - 1);
    }
    strlist a = {0}, b = {0};
    rm_status st = RM_OK;
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if ((flags & RM_TOK_SKIP_SPECIAL) && (t->flags[id] & TOKF_SPECIAL)) continue;
        st = sl_add(&a, t->str[id], strlen(t->str[id]));
    }
    tok_buf res = {0};
    if (!st && t->n_dec == 0) { /* no decoder: tokens joined by spaces */
        for (size_t i = 0; i < a.n && !st; i++) {
            if (i) st = tok_buf_putc(&res, ' ');
            if (!st) st = tok_buf_put(&res, ITEM(&a, i), ILEN(&a, i));
        }
    } else {
        for (size_t k = 0; k < t->n_dec && !st; k++) {
            b.n = 0;
            b.buf.n = 0;
            st = run_decoder(t, &t->dec[k], &a, &b);
            strlist tmp = a;
            a = b;
            b = tmp;
        }
        for (size_t i = 0; i < a.n && !st; i++) st = tok_buf_put(&res, ITEM(&a, i), ILEN(&a, i));
    }
    if (!st && t->eow_len) {
        char *suf = rm_strndup(t->end_of_word_suffix, t->eow_len);
        st = suf ? replace_buf(&res, suf, " ") : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        rm_free(suf);
    }
    if (!st && t->cleanup_spaces && !(flags & RM_TOK_NO_CLEANUP)) {
        static const char *const pairs[][2] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                                               {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0] && !st; k++) st = replace_buf(&res, pairs[k][0], pairs[k][1]);
    }
    if (!st) st = tok_buf_reserve(&res, 0);
    sl_free(&a);
    sl_free(&b);
    if (st) { tok_buf_free(&res); return st; }
    if (!res.p) { /* nothing decoded: return "" */
        res.p = rm_malloc(1);
        if (!res.p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    res.p[res.n] = 0;
    *out = res.p;
    if (len_out) *len_out = res.n;
    return RM_OK;
}

/* ---- streaming pieces ------------------------------------------------------ */

rm_status tok_build_pieces(rm_tok *t) {
    t->piece = rm_calloc((size_t)t->n_ids, sizeof *t->piece);
    t->piece_len = rm_calloc((size_t)t->n_ids, sizeof *t->piece_len);
    if (!t->piece || !t->piece_len) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name);
    for (int32_t i = 0; i < t->n_ids; i++) {
        if (!(t->flags[i] & TOKF_USED)) continue;
        uint8_t b;
        if (t->byte_level || (t->flags[i] & TOKF_ADDED)) {
            t->piece[i] = t->bytes[i];
            t->piece_len[i] = t->bytes_len[i];
        } else if (tok_byte_token(t->bytes[i], t->bytes_len[i], &b) && t->byte_fallback) {
            char c = (char)b;
            if (!(t->piece[i] = tok_arena_dup(&t->strings, &c, 1))) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name);
            t->piece_len[i] = 1;
        } else {
            tok_buf o = {0};
            const char *s = t->bytes[i];
            size_t n = t->bytes_len[i];
            rm_status st = tok_buf_reserve(&o, n);
            for (size_t k = 0; k < n && !st;) {
                if (k + 3 <= n && memcmp(s + k, "\xe2\x96\x81", 3) == 0) { st = tok_buf_putc(&o, ' '); k += 3; }
                else { st = tok_buf_putc(&o, s[k]); k++; }
            }
            if (!st && !(t->piece[i] = tok_arena_dup(&t->strings, o.p ? o.p : "", o.n))) st = rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", t->name);
            t->piece_len[i] = (uint32_t)o.n;
            tok_buf_free(&o);
            if (st) return st;
        }
    }
    return RM_OK;
}

rm_status rm_tok_piece(const rm_tok *t, int32_t id, const char **bytes, size_t *len) {
    if (id < 0 || id >= t->n_ids || !t->piece[id])
        return rm_err(RAMOLE_ERR_RANGE, "%s: token id %d is out of range (vocabulary has ids 0..%d)", t->name, id, t->n_ids - 1);
    *bytes = t->piece[id];
    *len = t->piece_len[id];
    return RM_OK;
}

/* ---- streaming ----------------------------------------------------------------- */

/* Does the decoder drop one leading space of the text (SentencePiece)? */
static bool strips_leading_space(const rm_tok *t) {
    for (size_t k = 0; k < t->n_dec; k++) {
        const tok_dec *d = &t->dec[k];
        if (d->kind == DEC_STRIP && d->start > 0 && d->alen == 1 && d->a[0] == ' ') return true;
        if (d->kind == DEC_METASPACE && d->add_prefix_space) return true;
    }
    return false;
}

/* Length of the prefix of s[0..n) that is complete: everything except a
 * trailing incomplete-but-valid-so-far UTF-8 sequence. */
static size_t complete_prefix(const char *s, size_t n) {
    size_t k = n, back = 0;
    while (k > 0 && back < 3 && ((uint8_t)s[k - 1] & 0xC0) == 0x80) { k--; back++; }
    if (k == 0) return n;
    uint8_t b = (uint8_t)s[k - 1];
    size_t need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 1;
    if (need == 1 || (n - (k - 1)) >= need) return n;
    /* a lead byte with fewer continuation bytes than it needs: hold it back
     * unless what is there already cannot become valid */
    size_t have = n - (k - 1);
    uint8_t tmp[4] = {b, 0x80, 0x80, 0x80};
    memcpy(tmp, s + k - 1, have);
    if (b == 0xE0) tmp[1] = have > 1 ? tmp[1] : 0xA0;
    if (b == 0xF0) tmp[1] = have > 1 ? tmp[1] : 0x90;
    if (b == 0xED || b == 0xF4) tmp[1] = have > 1 ? tmp[1] : 0x80;
    return tok_utf8_valid_len(tmp, need) ? k - 1 : n;
}

static rm_status stream_emit(rm_tok_stream *s, size_t upto, const char **text, size_t *len) {
    /* repair s->buf[0..upto) into the area after the held bytes */
    tok_buf out = {0};
    rm_status st = tok_utf8_repair(s->buf, upto, &out);
    if (st) { tok_buf_free(&out); return st; }
    size_t rest = s->n - upto;
    size_t need = out.n + rest + 1;
    if (need > s->cap) {
        char *nb = rm_realloc(s->buf, need * 2);
        if (!nb) { tok_buf_free(&out); return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory"); }
        s->buf = nb;
        s->cap = need * 2;
    }
    /* layout: [held rest][emitted text] so the text stays valid until the next call */
    memmove(s->buf, s->buf + upto, rest);
    if (out.n) memcpy(s->buf + rest, out.p, out.n);
    s->buf[rest + out.n] = 0;
    s->held = rest;
    s->n = rest;
    *text = s->buf + rest;
    *len = out.n;
    tok_buf_free(&out);
    return RM_OK;
}

rm_status rm_tok_stream_next(const rm_tok *t, rm_tok_stream *s, int32_t id, unsigned flags, const char **text,
                             size_t *len) {
    *text = "";
    *len = 0;
    const char *p;
    size_t pn;
    RM_TRY(rm_tok_piece(t, id, &p, &pn));
    if ((flags & RM_TOK_SKIP_SPECIAL) && (t->flags[id] & TOKF_SPECIAL)) return RM_OK;
    if (!s->started && !(t->flags[id] & TOKF_ADDED)) {
        if (strips_leading_space(t) && pn && p[0] == ' ') { p++; pn--; }
    }
    if (pn || !(t->flags[id] & TOKF_ADDED)) s->started = true;
    size_t need = s->n + pn + 1;
    if (need > s->cap) {
        char *nb = rm_realloc(s->buf, need * 2);
        if (!nb) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory");
        s->buf = nb;
        s->cap = need * 2;
    }
    memcpy(s->buf + s->n, p, pn);
    s->n += pn;
    /* an added token's text never merges with pending bytes */
    size_t upto = (t->flags[id] & TOKF_ADDED) ? s->n : complete_prefix(s->buf, s->n);
    return stream_emit(s, upto, text, len);
}

rm_status rm_tok_stream_flush(const rm_tok *t, rm_tok_stream *s, const char **text, size_t *len) {
    (void)t;
    *text = "";
    *len = 0;
    if (!s->n) return RM_OK;
    return stream_emit(s, s->n, text, len);
}

void rm_tok_stream_free(rm_tok_stream *s) {
    if (!s) return;
    rm_free(s->buf);
    memset(s, 0, sizeof *s);
}
