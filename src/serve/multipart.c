/*
 * multipart.c — multipart/form-data, read as it streams in.
 *
 * The reader looks for the delimiter "\r\n--BOUNDARY" in a fixed window of
 * SRV_MP_WINDOW bytes. The body's first boundary has no line end before
 * it, so the window starts with a CRLF that the body never sent. Between
 * delimiters a part's bytes go to the sink as soon as they cannot be the
 * start of a delimiter (all but the window's last delimiter-length - 1
 * bytes); header lines wait in the window until their CRLF, and a part
 * whose headers outgrow SRV_MP_HEADERS_MAX is refused, so the window never
 * fills. The states follow the body's grammar:
 *
 *   PREAMBLE  delimiter  DELIM_END ("\r\n": HEADERS, "--": DONE)
 *   HEADERS   lines up to an empty one, then BODY
 *   BODY      bytes up to the next delimiter, then DELIM_END
 *   DONE      the epilogue, ignored
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "serve/multipart.h"

#define SRV_MP_WINDOW 16384
_Static_assert(SRV_MP_HEADERS_MAX + 2 < SRV_MP_WINDOW, "a part's header lines must fit the window");

typedef enum { MP_PREAMBLE = 0, MP_DELIM_END, MP_HEADERS, MP_BODY, MP_DONE, MP_FAILED } mp_state;

struct srv_mp {
    srv_mp_sink sink;
    char delim[4 + SRV_MP_BOUNDARY_MAX + 1]; /* "\r\n--" BOUNDARY */
    size_t dlen;
    mp_state state;
    char error[200];                         /* why it failed, repeated by later calls */
    size_t header_bytes;                     /* of the current part's headers */
    bool has_disposition;
    char name[SRV_MP_NAME_MAX + 1], filename[SRV_MP_NAME_MAX + 1];
    bool has_filename;
    char win[SRV_MP_WINDOW];
    size_t len;                              /* bytes in win */
};

static void mp_fail(srv_mp *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mp_fail(srv_mp *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    p->state = MP_FAILED;
}

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* Whether [s, end) starts with word (case-insensitive) followed by the end, ';' or a space. */
static bool starts_word(const char *s, const char *end, const char *word) {
    size_t n = strlen(word);
    return (size_t)(end - s) >= n && !strncasecmp(s, word, n) && (s + n == end || s[n] == ';' || is_space(s[n]));
}

/*
 * The next parameter "; key=value" of a header value at *s (before end):
 * key (lower-cased; "" when over kcap) and value (a token, or a quoted
 * string unescaped) NUL-terminated. 1: one read; 0: no more; -1: malformed
 * (*why says how).
 */
static int param_next(const char **s, const char *end, char *key, size_t kcap, char *val, size_t vcap,
                      const char **why) {
    const char *p = *s;
    while (p < end && is_space(*p)) p++;
    if (p == end) return 0;
    if (*p != ';') {
        *why = "parameters must be separated by ';'";
        return -1;
    }
    p++;
    while (p < end && is_space(*p)) p++;
    size_t k = 0;
    bool key_fits = true;
    for (; p < end && *p != '=' && *p != ';' && !is_space(*p); p++) {
        if (k + 1 < kcap) key[k++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
        else key_fits = false;
    }
    key[key_fits ? k : 0] = 0;
    while (p < end && is_space(*p)) p++;
    size_t v = 0;
    val[0] = 0;
    if (p < end && *p == '=') {
        p++;
        while (p < end && is_space(*p)) p++;
        bool quoted = p < end && *p == '"';
        if (quoted) p++;
        for (;; p++) {
            if (p == end) {
                if (quoted) {
                    *why = "a quoted value has no closing quote";
                    return -1;
                }
                break;
            }
            if (quoted ? *p == '"' : (*p == ';' || is_space(*p))) break;
            if (quoted && *p == '\\' && p + 1 < end) p++;
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                *why = "a value holds a control byte";
                return -1;
            }
            if (v + 1 >= vcap) {
                *why = "a value is too long";
                return -1;
            }
            val[v++] = *p;
        }
        val[v] = 0;
        if (quoted) p++;
    }
    *s = p;
    return 1;
}

rm_status srv_mp_boundary(const char *content_type, char out[SRV_MP_BOUNDARY_MAX + 1]) {
    out[0] = 0;
    if (!content_type) return rm_err(RAMOLE_ERR_INVALID, "the body must be multipart/form-data (no Content-Type)");
    const char *s = content_type, *end = s + strlen(s);
    while (s < end && is_space(*s)) s++;
    if (!starts_word(s, end, "multipart/form-data"))
        return rm_err(RAMOLE_ERR_INVALID, "the body must be multipart/form-data, not %.64s", content_type);
    s += strlen("multipart/form-data");
    char key[16], val[SRV_MP_NAME_MAX + 1];
    const char *why = NULL;
    int r;
    while ((r = param_next(&s, end, key, sizeof key, val, sizeof val, &why)) == 1) {
        if (strcmp(key, "boundary")) continue;
        size_t n = strlen(val);
        if (n < 1 || n > SRV_MP_BOUNDARY_MAX)
            return rm_err(RAMOLE_ERR_INVALID, "the multipart boundary must be 1 to %d bytes, not %zu",
                          SRV_MP_BOUNDARY_MAX, n);
        memcpy(out, val, n + 1);
        return RAMOLE_OK;
    }
    if (r < 0) return rm_err(RAMOLE_ERR_INVALID, "the multipart Content-Type is malformed: %s", why);
    return rm_err(RAMOLE_ERR_INVALID, "the multipart Content-Type has no boundary");
}

rm_status srv_mp_new(const char *content_type, const srv_mp_sink *sink, srv_mp **out) {
    *out = NULL;
    char b[SRV_MP_BOUNDARY_MAX + 1];
    RM_TRY(srv_mp_boundary(content_type, b));
    srv_mp *p = rm_calloc(1, sizeof *p);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    p->sink = *sink;
    p->dlen = (size_t)snprintf(p->delim, sizeof p->delim, "\r\n--%s", b);
    memcpy(p->win, "\r\n", 2); /* the line end before the first boundary, which the body omits */
    p->len = 2;
    *out = p;
    return RAMOLE_OK;
}

/* One header line of a part (without its CRLF). */
static void header_line(srv_mp *p, const char *line, size_t n) {
    const char *end = line + n, *colon = memchr(line, ':', n);
    if (!colon) {
        mp_fail(p, "a part's header line has no ':'");
        return;
    }
    const char *name_end = colon;
    while (name_end > line && is_space(name_end[-1])) name_end--;
    if ((size_t)(name_end - line) != strlen("content-disposition") ||
        strncasecmp(line, "content-disposition", (size_t)(name_end - line)))
        return; /* Content-Type and the rest are not used */
    if (p->has_disposition) {
        mp_fail(p, "a part has two Content-Disposition headers");
        return;
    }
    p->has_disposition = true;
    const char *s = colon + 1;
    while (s < end && is_space(*s)) s++;
    if (!starts_word(s, end, "form-data")) {
        mp_fail(p, "a part's Content-Disposition must be form-data");
        return;
    }
    s += strlen("form-data");
    char key[16], val[SRV_MP_NAME_MAX + 1];
    const char *why = NULL;
    int r;
    while ((r = param_next(&s, end, key, sizeof key, val, sizeof val, &why)) == 1) {
        bool is_name = !strcmp(key, "name"), is_file = !strcmp(key, "filename");
        if (!is_name && !is_file) continue; /* filename* and others are not used */
        char *dst = is_name ? p->name : p->filename;
        if (dst[0] || (is_file && p->has_filename)) {
            mp_fail(p, "a part's Content-Disposition gives %s twice", key);
            return;
        }
        memcpy(dst, val, strlen(val) + 1);
        if (is_file) p->has_filename = true;
    }
    if (r < 0) mp_fail(p, "a part's Content-Disposition is malformed: %s", why);
}

/* Bytes the current state takes from the front of the window (0: it needs more). */
static size_t mp_step(srv_mp *p) {
    switch (p->state) {
    case MP_PREAMBLE:
    case MP_BODY: {
        const char *hit = memmem(p->win, p->len, p->delim, p->dlen);
        size_t n = hit ? (size_t)(hit - p->win) : p->len >= p->dlen ? p->len - (p->dlen - 1) : 0;
        if (p->state == MP_BODY && n) p->sink.data(p->sink.user, p->win, n);
        if (!hit) return n;
        p->state = MP_DELIM_END;
        return n + p->dlen;
    }
    case MP_DELIM_END:
        if (p->len < 2) return 0;
        if (p->win[0] == '-' && p->win[1] == '-') {
            p->state = MP_DONE;
            return 2;
        }
        if (p->win[0] != '\r' || p->win[1] != '\n') {
            mp_fail(p, "a boundary is followed by neither a line end nor \"--\"");
            return 0;
        }
        p->state = MP_HEADERS;
        p->header_bytes = 0;
        p->has_disposition = p->has_filename = false;
        p->name[0] = p->filename[0] = 0;
        return 2;
    case MP_HEADERS: {
        const char *eol = memmem(p->win, p->len, "\r\n", 2);
        size_t n = eol ? (size_t)(eol - p->win) : p->len;
        if (p->header_bytes + n + 2 > SRV_MP_HEADERS_MAX) {
            mp_fail(p, "a part's headers are over %d bytes", SRV_MP_HEADERS_MAX);
            return 0;
        }
        if (!eol) return 0;
        p->header_bytes += n + 2;
        if (n) {
            header_line(p, p->win, n);
            return n + 2;
        }
        if (!p->name[0]) {
            mp_fail(p, "a part has no name (Content-Disposition: form-data; name=\"...\")");
            return 0;
        }
        p->sink.part(p->sink.user, p->name, p->has_filename ? p->filename : NULL);
        p->state = MP_BODY;
        return 2;
    }
    case MP_DONE: return p->len; /* the epilogue */
    default: return 0;
    }
}

rm_status srv_mp_feed(srv_mp *p, const char *data, size_t n) {
    while (p->state != MP_FAILED && n) {
        size_t k = SRV_MP_WINDOW - p->len; /* never 0: each state drains the window below its size */
        if (k > n) k = n;
        memcpy(p->win + p->len, data, k);
        p->len += k, data += k, n -= k;
        size_t used;
        while (p->len && (used = mp_step(p)) > 0) {
            memmove(p->win, p->win + used, p->len - used);
            p->len -= used;
        }
    }
    if (p->state == MP_FAILED) return rm_err(RAMOLE_ERR_FORMAT, "%s", p->error);
    return RAMOLE_OK;
}

rm_status srv_mp_finish(srv_mp *p) {
    if (p->state != MP_FAILED && p->state != MP_DONE)
        mp_fail(p, "the body ends before its closing boundary (--%.*s--)", (int)(p->dlen - 4), p->delim + 4);
    if (p->state == MP_FAILED) return rm_err(RAMOLE_ERR_FORMAT, "%s", p->error);
    return RAMOLE_OK;
}

void srv_mp_free(srv_mp *p) { rm_free(p); }
