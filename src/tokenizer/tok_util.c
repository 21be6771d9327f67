/*
 * tok_util.c — small pieces the tokenizer stands on.
 *
 * UTF-8: input text may be any bytes. Invalid sequences are replaced the way
 * the WHATWG Encoding Standard's decoder does (one U+FFFD per "maximal
 * subpart"), which is what a JS TextDecoder or Rust's from_utf8_lossy, and
 * so the reference tokenizer when given those bytes, sees. Valid input is never copied.
 *
 * The GPT-2 byte alphabet maps each byte to a printable code point
 * (bytes_to_unicode in OpenAI's encoder.py): printable Latin-1 bytes map to
 * themselves, the other 68 to U+0100.. in byte order.
 *
 * tok_strmap is an open-addressing table of token ids keyed by the token's
 * bytes (tok->bytes[id]); it stores only ids, so it costs 4 bytes a slot.
 */
#include "tokenizer/tok_internal.h"

#include <string.h>

/* ---- buffers ------------------------------------------------------------ */

rm_status tok_buf_reserve(tok_buf *b, size_t extra) {
    size_t need;
    if (!rm_add_ok(b->n, extra, &need) || !rm_add_ok(need, 1, &need))
        return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: buffer size overflow");
    if (need <= b->cap) return RM_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = rm_realloc(b->p, cap);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return RM_OK;
}

rm_status tok_buf_put(tok_buf *b, const void *s, size_t n) {
    if (n > b->cap - b->n || b->cap - b->n - n < 1) RM_TRY(tok_buf_reserve(b, n));
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return RM_OK;
}

void tok_buf_free(tok_buf *b) {
    rm_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- string arena ------------------------------------------------------- */

char *tok_arena_dup(tok_arena *a, const char *s, size_t n) {
    if (n + 1 > a->cap - a->used || !a->n_chunks) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        char **nc = rm_realloc(a->chunks, (a->n_chunks + 1) * sizeof *nc);
        if (!nc) return NULL;
        a->chunks = nc;
        char *c = rm_malloc(cap);
        if (!c) return NULL;
        a->chunks[a->n_chunks++] = c;
        a->used = 0;
        a->cap = cap;
    }
    char *r = a->chunks[a->n_chunks - 1] + a->used;
    if (n) memcpy(r, s, n);
    r[n] = 0;
    a->used += n + 1;
    return r;
}

void tok_arena_free(tok_arena *a) {
    for (size_t i = 0; i < a->n_chunks; i++) rm_free(a->chunks[i]);
    rm_free(a->chunks);
    a->chunks = NULL;
    a->n_chunks = a->used = a->cap = 0;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* WHATWG bounds of the first continuation byte for lead byte b; need = 0
 * means b cannot start a sequence. */
static inline int utf8_lead(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) return 1;
    if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 2;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 3;
    }
    return 0;
}

size_t tok_utf8_valid_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] < 0x80) return 1;
    uint8_t lo, hi;
    int need = utf8_lead(s[0], &lo, &hi);
    if (!need || (size_t)need + 1 > n) return 0;
    for (int k = 1; k <= need; k++) {
        if (s[k] < lo || s[k] > hi) return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return (size_t)need + 1;
}

uint32_t tok_utf8_decode(const uint8_t *s, size_t *len) {
    uint8_t b = s[0];
    if (b < 0x80) { *len = 1; return b; }
    if (b < 0xE0) { *len = 2; return ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F); }
    if (b < 0xF0) {
        *len = 3;
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
           (s[3] & 0x3F);
}

size_t tok_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool tok_utf8_is_valid(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (u[i] < 0x80) { i++; continue; }
        size_t l = tok_utf8_valid_len(u + i, n - i);
        if (!l) return false;
        i += l;
    }
    return true;
}

rm_status tok_utf8_repair(const char *s, size_t n, tok_buf *out) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const uint8_t *u = (const uint8_t *)s;
    RM_TRY(tok_buf_reserve(out, n + n / 2 + 4));
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { RM_TRY(tok_buf_putc(out, (char)u[i])); i++; continue; }
        uint8_t lo, hi;
        int need = utf8_lead(u[i], &lo, &hi);
        if (!need) { RM_TRY(tok_buf_put(out, fffd, 3)); i++; continue; }
        size_t j = i + 1;
        int k = 0;
        for (; k < need; k++, j++) {
            if (j >= n || u[j] < lo || u[j] > hi) break;
            lo = 0x80;
            hi = 0xBF;
        }
        if (k == need) RM_TRY(tok_buf_put(out, s + i, j - i));
        else RM_TRY(tok_buf_put(out, fffd, 3));
        i = j; /* the offending byte, if any, is read again */
    }
    return RM_OK;
}

bool tok_unicode_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool tok_js_space(uint32_t c) {
    return c == 0x09 || c == 0x0A || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x20 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

/* ---- GPT-2 byte alphabet ------------------------------------------------ */

static inline bool byte_printable(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!byte_printable(x)) k++;
    return 256u + (uint32_t)k;
}

/* The 68 non-printable bytes in order: U+0100 + k stands for high[k]. */
static const uint8_t high[68] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    31, 32, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147,
    148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 173};

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    return high[cp - 256];
}

/* ---- hashing and the string map ----------------------------------------- */

uint64_t tok_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w ^ ((uint64_t)n << 59)) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

rm_status tok_strmap_init(tok_strmap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 16) cap *= 2;
    m->slots = rm_malloc(cap * sizeof *m->slots);
    if (!m->slots) return rm_err(RAMOLE_ERR_NOMEM, "tokenizer: out of memory for the vocabulary map");
    memset(m->slots, 0xFF, cap * sizeof *m->slots);
    m->mask = cap - 1;
    m->count = 0;
    return RM_OK;
}

void tok_strmap_free(tok_strmap *m) {
    rm_free(m->slots);
    m->slots = NULL;
}

int32_t tok_strmap_get(const rm_tok *tok, const char *s, size_t n) {
    const tok_strmap *m = &tok->map;
    if (!m->slots) return -1;
    size_t i = tok_hash(s, n) & m->mask;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (tok->bytes_len[id] == n && memcmp(tok->bytes[id], s, n) == 0) return id;
        i = (i + 1) & m->mask;
    }
}

static rm_status strmap_grow(rm_tok *tok) {
    tok_strmap *m = &tok->map, nm;
    RM_TRY(tok_strmap_init(&nm, (m->mask + 1)));
    for (size_t i = 0; i <= m->mask; i++) {
        int32_t id = m->slots[i];
        if (id < 0) continue;
        size_t j = tok_hash(tok->bytes[id], tok->bytes_len[id]) & nm.mask;
        while (nm.slots[j] >= 0) j = (j + 1) & nm.mask;
        nm.slots[j] = id;
    }
    nm.count = m->count;
    tok_strmap_free(m);
    *m = nm;
    return RM_OK;
}

rm_status tok_strmap_put(rm_tok *tok, int32_t id, bool replace) {
    tok_strmap *m = &tok->map;
    if ((m->count + 1) * 2 > m->mask + 1) RM_TRY(strmap_grow(tok));
    const char *s = tok->bytes[id];
    size_t n = tok->bytes_len[id];
    size_t i = tok_hash(s, n) & m->mask;
    for (;;) {
        int32_t cur = m->slots[i];
        if (cur < 0) break;
        if (tok->bytes_len[cur] == n && memcmp(tok->bytes[cur], s, n) == 0) {
            if (replace) m->slots[i] = id;
            return RM_OK;
        }
        i = (i + 1) & m->mask;
    }
    m->slots[i] = id;
    m->count++;
    return RM_OK;
}

bool tok_byte_token(const char *s, size_t n, uint8_t *b) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + d;
    }
    *b = (uint8_t)v;
    return true;
}
