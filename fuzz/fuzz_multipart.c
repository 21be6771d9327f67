/*
 * fuzz_multipart.c — the multipart/form-data reader alone
 * (src/serve/multipart.c), fast enough for millions of inputs: the input
 * is a Content-Type value, a line end, then the body. The body is read
 * twice, whole and in pieces of 1, 7, 64, 3, 4096, 2 bytes and the rest in
 * turn, and both reads must see the same parts, the same bytes and the
 * same verdict (a split delimiter or header must change nothing); the part
 * bytes can never outnumber the body's.
 */
#include "fuzz_util.h"
#include "serve/multipart.h"

/* What a read saw: a running hash of its events, and counts. */
typedef struct {
    uint64_t hash;
    size_t parts, bytes;
} seen;

static void mix(seen *s, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) s->hash = (s->hash ^ b[i]) * 0x100000001b3ull; /* FNV-1a */
}
static void on_part(void *user, const char *name, const char *filename) {
    seen *s = user;
    size_t nn = strlen(name);
    if (!nn || nn > SRV_MP_NAME_MAX || (filename && strlen(filename) > SRV_MP_NAME_MAX)) abort();
    s->parts++;
    mix(s, "P", 1), mix(s, name, nn + 1);
    if (filename) mix(s, filename, strlen(filename) + 1);
}
static void on_data(void *user, const char *bytes, size_t n) {
    seen *s = user;
    if (!n || !s->parts) abort(); /* bytes only inside a part, never empty pieces */
    s->bytes += n;
    /* pieces may be cut differently: hash bytes alone so both reads agree */
    mix(s, bytes, n);
}

/* One read of the body in pieces (0: whole); its status. */
static rm_status read_body(const char *ct, const uint8_t *body, size_t n, bool pieces, seen *s) {
    static const size_t sizes[] = {1, 7, 64, 3, 4096, 2, 100000};
    memset(s, 0, sizeof *s);
    srv_mp_sink sink = {.part = on_part, .data = on_data, .user = s};
    srv_mp *p = NULL;
    rm_status st = srv_mp_new(ct, &sink, &p);
    if (st != RAMOLE_OK) return st;
    for (size_t off = 0, i = 0; off < n && st == RAMOLE_OK; i++) {
        size_t k = pieces ? sizes[i % (sizeof sizes / sizeof *sizes)] : n;
        if (k > n - off) k = n - off;
        st = srv_mp_feed(p, (const char *)body + off, k);
        off += k;
    }
    if (st == RAMOLE_OK) st = srv_mp_finish(p);
    srv_mp_free(p);
    return st;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    if (fuzz_seed_dir()) {
        static const char *bodies[] = {
            "multipart/form-data; boundary=------------------------d74496d66958873e\n"
            "--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nup1\r\n"
            "--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"samples\"; "
            "filename=\"add.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n{\"input\": \"add 3 and 4\"}\n\r\n"
            "--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"add.gguf\"\r\nContent-Type: application/octet-stream\r\n\r\nGGUF\x03\r\n--\r\n"
            "--------------------------d74496d66958873e--\r\n",
            "multipart/form-data; boundary=----formdata-undici-0123\n------formdata-undici-0123\r\n"
            "Content-Disposition: form-data; name=\"visibility\"\r\n\r\npublic\r\n------formdata-undici-0123--",
            "Multipart/Form-Data; charset=utf-8; boundary=\"a \\\"b\"\npreamble\r\n--a \"b\r\ncontent-disposition: "
            "form-data; name=n; filename=\"x\\\\y\"\r\n\r\n\r\n--a \"b--\r\nepilogue",
        };
        fuzz_seed_texts("multipart", bodies, sizeof bodies / sizeof *bodies);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *ct_b, *body;
    size_t nc, nb;
    fuzz_split(data, size, "\n", 1, &ct_b, &nc, &body, &nb);
    char *ct = fuzz_strndup(ct_b, nc);
    seen whole, split;
    rm_status a = read_body(ct, body, nb, false, &whole), b = read_body(ct, body, nb, true, &split);
    free(ct);
    if (a != b || whole.hash != split.hash || whole.parts != split.parts || whole.bytes != split.bytes) abort();
    if (whole.bytes > nb) abort();
    return 0;
}
