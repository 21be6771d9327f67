/*
 * test_multipart.c — the multipart/form-data reader of uploads
 * (src/serve/multipart.c): the same parts whatever pieces the body arrives
 * in, each malformed body refused by name, and no memory that grows with
 * the body or with the sizes its parts declare.
 */
#include "test.h"
#include "serve/multipart.h"

#include <string.h>

/* What the sink saw: "[name|filename]" at each part, then its bytes. */
typedef struct {
    char log[4096];
    size_t n;
    size_t bytes;       /* data bytes, when not logged */
    bool quiet;
} mp_log;

static void log_add(mp_log *l, const char *s, size_t n) {
    if (l->n + n < sizeof l->log) memcpy(l->log + l->n, s, n), l->n += n, l->log[l->n] = 0;
}
static void on_part(void *user, const char *name, const char *filename) {
    mp_log *l = user;
    char t[600];
    int k = snprintf(t, sizeof t, "[%s|%s]", name, filename ? filename : "-");
    log_add(l, t, (size_t)k);
}
static void on_data(void *user, const char *bytes, size_t n) {
    mp_log *l = user;
    l->bytes += n;
    if (!l->quiet) log_add(l, bytes, n);
}

/* Read body in pieces of `piece` bytes (0: one piece); the status of feed, then finish. */
static rm_status read_body(const char *ct, const char *body, size_t n, size_t piece, mp_log *l) {
    memset(l, 0, sizeof *l);
    srv_mp_sink sink = {.part = on_part, .data = on_data, .user = l};
    srv_mp *p = NULL;
    rm_status st = srv_mp_new(ct, &sink, &p);
    if (st != RAMOLE_OK) return st;
    for (size_t off = 0; off < n && st == RAMOLE_OK; off += piece ? piece : n)
        st = srv_mp_feed(p, body + off, piece && piece < n - off ? piece : n - off);
    if (st == RAMOLE_OK) st = srv_mp_finish(p);
    srv_mp_free(p);
    return st;
}

static const char CT[] = "multipart/form-data; boundary=XyZ";
static const char BODY[] =
    "ignored preamble\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"name\"\r\n\r\n"
    "up1\r\n"
    "--XyZ\r\n"
    "content-disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".gguf\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Length: 18446744073709551615\r\n\r\n"
    "GGUF\r\n--XyY\r\n-- not a boundary \r\n--Xy\r\n\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=empty\r\n\r\n"
    "\r\n"
    "--XyZ--\r\n"
    "epilogue --XyZ\r\n";
static const char WANT[] = "[name|-]up1[file|a \"b\".gguf]GGUF\r\n--XyY\r\n-- not a boundary \r\n--Xy\r\n[empty|-]";

TEST(multipart_same_parts_in_any_pieces) {
    mp_log l;
    size_t n = sizeof BODY - 1;
    for (size_t piece = 0; piece <= 9; piece++) {
        CHECK_OK(read_body(CT, BODY, n, piece, &l));
        CHECK_MSG(!strcmp(l.log, WANT), "pieces of %zu: %s", piece, l.log);
    }
    /* every split into two pieces */
    for (size_t cut = 1; cut < n; cut++) {
        memset(&l, 0, sizeof l);
        srv_mp_sink sink = {.part = on_part, .data = on_data, .user = &l};
        srv_mp *p = NULL;
        CHECK_OK(srv_mp_new(CT, &sink, &p));
        CHECK_OK(srv_mp_feed(p, BODY, cut));
        CHECK_OK(srv_mp_feed(p, BODY + cut, n - cut));
        CHECK_OK(srv_mp_finish(p));
        srv_mp_free(p);
        CHECK_MSG(!strcmp(l.log, WANT), "cut at %zu: %s", cut, l.log);
    }
}

TEST(multipart_boundary_from_content_type) {
    char b[SRV_MP_BOUNDARY_MAX + 1];
    CHECK_OK(srv_mp_boundary("Multipart/Form-Data ; charset=utf-8; boundary=\"a b;c\"", b));
    CHECK(!strcmp(b, "a b;c"));
    CHECK_OK(srv_mp_boundary("multipart/form-data; boundary=----formdata-undici-0123", b));
    CHECK(!strcmp(b, "----formdata-undici-0123"));
    struct { const char *ct, *needle; } bad[] = {
        {NULL, "no Content-Type"},
        {"application/x-www-form-urlencoded", "must be multipart/form-data"},
        {"multipart/form-dataX; boundary=a", "must be multipart/form-data"},
        {"multipart/form-data", "no boundary"},
        {"multipart/form-data; boundary=", "1 to 70 bytes"},
        {"multipart/form-data; boundary=\"abc", "no closing quote"},
        {"multipart/form-data; boundary=a\x01", "control byte"},
        {"multipart/form-data; boundary=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "not 71"},
        {"multipart/form-data, boundary=a", "must be multipart/form-data"},
        {"multipart/form-data; charset=utf-8 boundary=a", "separated by ';'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_ERR(srv_mp_boundary(bad[i].ct, b), RAMOLE_ERR_INVALID);
        CHECK_MSG(strstr(ramole_last_error(), bad[i].needle), "%s: %s", bad[i].ct ? bad[i].ct : "NULL",
                  ramole_last_error());
    }
}

TEST(multipart_malformed_bodies_refused_by_name) {
    char big[SRV_MP_HEADERS_MAX + 200];
    int k = snprintf(big, sizeof big, "--XyZ\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
    memset(big + k, 'p', sizeof big - (size_t)k - 1), big[sizeof big - 1] = 0;
    struct { const char *body, *needle; } bad[] = {
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nhalf", "closing boundary (--XyZ--)"},
        {"", "closing boundary"},
        {"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", "has no name"},
        {"--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--XyZ--", "has no name"},
        {"--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--", "must be form-data"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--XyZ--", "gives name twice"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a; filename=x; filename=y\r\n\r\n--XyZ--", "filename twice"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n\r\n--XyZ--",
         "two Content-Disposition"},
        {"--XyZ\r\nno colon here\r\n\r\n--XyZ--", "no ':'"},
        {"--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\n--XyZ--", "no closing quote"},
        {"--XyZ\r\nContent-Disposition: form-data; name=\"a\x01\"\r\n\r\n--XyZ--", "control byte"},
        {"--XyZ\r\nContent-Disposition: form-data name=a\r\n\r\n--XyZ--", "separated by ';'"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZtrailing\r\n", "neither a line end"},
        {"--XyZ \r\nContent-Disposition: form-data; name=a\r\n\r\n--XyZ--", "neither a line end"},
        {big, "headers are over 8192 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        for (size_t piece = 0; piece <= 3; piece += 3) {
            mp_log l;
            rm_status st = read_body(CT, bad[i].body, strlen(bad[i].body), piece, &l);
            CHECK_MSG(st == RAMOLE_ERR_FORMAT && strstr(ramole_last_error(), bad[i].needle), "case %zu (%zu): %s: %s",
                      i, piece, ramole_status_str(st), ramole_last_error());
        }
}

/* A part that declares 2^64 - 1 bytes and then streams 64 MiB: the reader
 * allocates its window once, whatever comes. */
TEST(multipart_memory_does_not_grow) {
    mp_log l = {.quiet = true};
    srv_mp_sink sink = {.part = on_part, .data = on_data, .user = &l};
    srv_mp *p = NULL;
    rm_alloc_mark();
    size_t live = rm_alloc_live_bytes();
    CHECK_OK(srv_mp_new(CT, &sink, &p));
    static const char head[] = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n"
                               "Content-Length: 18446744073709551615\r\n\r\n";
    CHECK_OK(srv_mp_feed(p, head, sizeof head - 1));
    static char chunk[65536];
    memset(chunk, '\r', sizeof chunk); /* every byte could start a delimiter */
    for (int i = 0; i < 1024; i++) CHECK_OK(srv_mp_feed(p, chunk, sizeof chunk));
    CHECK_OK(srv_mp_feed(p, "\r\n--XyZ--", 9));
    CHECK_OK(srv_mp_finish(p));
    CHECK(l.bytes == 1024u * sizeof chunk);
    CHECK_MSG(rm_alloc_peak_bytes() - live < 64 * 1024, "peak %zu bytes", rm_alloc_peak_bytes() - live);
    srv_mp_free(p);
}
