/*
 * test_formats.c — safetensors and GGUF: round trips through the writers,
 * and one bad-input case per validation rule of the readers.
 *
 * Truncation is tested twice: through files (every cut point of a small
 * valid file) and through rm_*_open_mem with the bytes placed right before
 * a PROT_NONE page, so any read past the end crashes the suite instead of
 * passing silently (picohttpparser's trick). Allocation failure is walked
 * at every point with rm_alloc_fail_after; nothing may leak.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "formats/st_index.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", rm_test_tmp_dir(), name);
    return buf[k];
}

static bool write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static bool msg_has(const char *s) { return strstr(ramole_last_error(), s) != NULL; }

#define CHECK_MSG_HAS(s) CHECK_MSG(msg_has(s), "message '%s' lacks '%s'", ramole_last_error(), (s))

/* Bytes followed by an unreadable page. */
typedef struct {
    uint8_t *base;
    size_t len;
    long page;
} guarded;

static bool guarded_new(guarded *g, size_t cap) {
    g->page = sysconf(_SC_PAGESIZE);
    size_t pages = (cap + (size_t)g->page - 1) / (size_t)g->page;
    g->len = (pages + 1) * (size_t)g->page;
    g->base = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED) return false;
    return mprotect(g->base + pages * (size_t)g->page, (size_t)g->page, PROT_NONE) == 0;
}

/* Copy n bytes so that they end exactly at the guard page. */
static const uint8_t *guarded_put(guarded *g, const void *data, size_t n) {
    uint8_t *end = g->base + g->len - (size_t)g->page;
    memcpy(end - n, data, n);
    return end - n;
}

static void guarded_free(guarded *g) { munmap(g->base, g->len); }

/* A little-endian byte builder for hand-made files. */
typedef struct {
    uint8_t b[8192];
    size_t n;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->n + n <= sizeof b->b) memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void putstr(bytes *b, const char *s) {
    put64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(bytes *b, size_t a) {
    while (b->n % a) put(b, "", 1);
}

/* ---- safetensors ------------------------------------------------------------ */

static float f32_data[6] = {1, -2, 3.5f, 4, 5, 6};
static uint16_t f16_data[4] = {0x3c00, 0x4000, 0xbc00, 0x0000};
static uint16_t bf16_data[8] = {0x3f80, 0x4000, 0x4040, 0x4080, 0xbf80, 1, 2, 3};
static float scalar_data = 42.0f;

static void st_write_sample(const char *path) {
    rm_st_writer *w;
    CHECK_OK(rm_st_writer_new(&w));
    CHECK_OK(rm_st_writer_meta(w, "format", "ptt"));
    CHECK_OK(rm_st_writer_meta(w, "note", "first"));
    CHECK_OK(rm_st_writer_meta(w, "note", "replaced \"quoted\" \xc3\xa9"));
    /* added out of name order on purpose */
    CHECK_OK(rm_st_writer_add(w, "model.z.weight", RM_TYPE_BF16, 3, (int64_t[]){2, 2, 2}, bf16_data));
    CHECK_OK(rm_st_writer_add(w, "model.a.weight", RM_TYPE_F32, 2, (int64_t[]){2, 3}, f32_data));
    CHECK_OK(rm_st_writer_add(w, "model.m.bias", RM_TYPE_F16, 1, (int64_t[]){4}, f16_data));
    CHECK_OK(rm_st_writer_add(w, "scalar", RM_TYPE_F32, 0, NULL, &scalar_data));
    CHECK_OK(rm_st_writer_add(w, "empty", RM_TYPE_F16, 2, (int64_t[]){0, 5}, NULL));
    CHECK_OK(rm_st_writer_write(w, path));
    rm_st_writer_free(w);
}

TEST(formats_st_roundtrip) {
    const char *path = tmp_path("rt.safetensors");
    size_t live = rm_alloc_live_bytes();
    st_write_sample(path);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    CHECK(!rm_file_exists(tmp));

    rm_safetensors *st;
    CHECK_OK(rm_st_open(path, &st));
    if (!st) return;
    CHECK(strcmp(rm_st_path(st), path) == 0);
    CHECK(rm_st_count(st) == 5);
    const char *want[] = {"empty", "model.a.weight", "model.m.bias", "model.z.weight", "scalar"};
    for (int i = 0; i < 5 && i < rm_st_count(st); i++)
        CHECK(strcmp(rm_st_get(st, i)->name, want[i]) == 0);
    CHECK(rm_st_get(st, 5) == NULL && rm_st_get(st, -1) == NULL);

    const rm_st_tensor *a = rm_st_find(st, "model.a.weight");
    CHECK(a && strcmp(a->dtype, "F32") == 0 && a->type == RM_TYPE_F32 && a->n_dims == 2);
    CHECK(a && a->shape[0] == 2 && a->shape[1] == 3 && a->n_elems == 6 && a->nbytes == 24);
    CHECK(a && memcmp(a->data, f32_data, 24) == 0);
    const rm_st_tensor *m = rm_st_find(st, "model.m.bias");
    CHECK(m && m->type == RM_TYPE_F16 && m->nbytes == 8 && memcmp(m->data, f16_data, 8) == 0);
    const rm_st_tensor *z = rm_st_find(st, "model.z.weight");
    CHECK(z && z->type == RM_TYPE_BF16 && z->n_dims == 3 && z->shape[2] == 2 && z->n_elems == 8);
    CHECK(z && memcmp(z->data, bf16_data, 16) == 0);
    const rm_st_tensor *s = rm_st_find(st, "scalar");
    CHECK(s && s->n_dims == 0 && s->n_elems == 1 && *(const float *)s->data == 42.0f);
    const rm_st_tensor *e = rm_st_find(st, "empty");
    CHECK(e && e->n_elems == 0 && e->nbytes == 0 && e->shape[1] == 5);
    CHECK(rm_st_find(st, "missing") == NULL);
    CHECK(rm_st_meta(st, "format") && strcmp(rm_st_meta(st, "format"), "ptt") == 0);
    CHECK(rm_st_meta(st, "note") && strcmp(rm_st_meta(st, "note"), "replaced \"quoted\" \xc3\xa9") == 0);
    CHECK(rm_st_meta(st, "nope") == NULL);
    rm_st_free(st);

    /* Layout: header length padded to 8, data packed right after it. */
    char *raw;
    size_t size;
    CHECK_OK(rm_file_read(path, &raw, &size));
    uint64_t hlen;
    memcpy(&hlen, raw, 8);
    CHECK(hlen % 8 == 0);
    CHECK(size == 8 + hlen + 24 + 8 + 16 + 4);
    CHECK(raw[8] == '{' && raw[8 + hlen - 1] != 0);
    rm_free(raw);
    CHECK(rm_alloc_live_bytes() == live);
}

TEST(formats_st_writer_rejects_bad_tensors) {
    rm_st_writer *w;
    CHECK_OK(rm_st_writer_new(&w));
    float x[2] = {0};
    CHECK_ERR(rm_st_writer_add(w, "q", RM_TYPE_Q8_0, 1, (int64_t[]){32}, x), RAMOLE_ERR_UNSUPPORTED);
    CHECK_MSG_HAS("'q'");
    CHECK_OK(rm_st_writer_add(w, "x", RM_TYPE_F32, 1, (int64_t[]){2}, x));
    CHECK_ERR(rm_st_writer_add(w, "x", RM_TYPE_F32, 1, (int64_t[]){2}, x), RAMOLE_ERR_INVALID);
    CHECK_MSG_HAS("duplicate");
    CHECK_ERR(rm_st_writer_add(w, "y", RM_TYPE_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x),
              RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_st_writer_add(w, "y", RM_TYPE_F32, 1, (int64_t[]){-1}, x), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_st_writer_add(w, "__metadata__", RM_TYPE_F32, 1, (int64_t[]){2}, x),
              RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_st_writer_add(w, "bad\xff", RM_TYPE_F32, 1, (int64_t[]){2}, x), RAMOLE_OK);
    /* invalid UTF-8 in a name is caught when the header is encoded */
    CHECK_ERR(rm_st_writer_write(w, tmp_path("badname.safetensors")), RAMOLE_ERR_INVALID);
    CHECK(!rm_file_exists(tmp_path("badname.safetensors")));
    rm_st_writer_free(w);

    CHECK_OK(rm_st_writer_new(&w));
    CHECK_ERR(rm_st_writer_write(w, "/nonexistent-dir/x.safetensors"), RAMOLE_ERR_IO);
    CHECK_MSG_HAS("/nonexistent-dir/x.safetensors");
    rm_st_writer_free(w);
}

/* A safetensors file from a header string and data_len bytes of data. */
static void make_st(const char *path, const char *json, size_t data_len) {
    size_t h = strlen(json), n = 8 + h + data_len;
    uint8_t *buf = calloc(1, n);
    uint64_t hl = h;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, json, h);
    CHECK(write_bytes(path, buf, n));
    free(buf);
}

TEST(formats_st_reads_foreign_dtypes) {
    const char *path = tmp_path("foreign.safetensors");
    make_st(path,
            "{\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
            "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]},"
            "\"b\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[19,20]},"
            "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[20,24]},"
            "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1],\"data_offsets\":[24,32]},"
            "\"gap\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[36,40]}}   ",
            40);
    rm_safetensors *st;
    CHECK_OK(rm_st_open(path, &st));
    if (!st) return;
    CHECK(rm_st_count(st) == 6);
    const rm_st_tensor *t = rm_st_find(st, "i");
    CHECK(t && t->type == -1 && strcmp(t->dtype, "I64") == 0 && t->nbytes == 16);
    t = rm_st_find(st, "d");
    CHECK(t && t->type == -1 && t->nbytes == 8 && t->n_dims == 2);
    t = rm_st_find(st, "f8");
    CHECK(t && t->nbytes == 4);
    rm_st_free(st);
}

typedef struct {
    const char *json;
    size_t data_len;
    const char *want; /* substring of the message */
} st_case;

TEST(formats_st_rejects_bad_headers) {
    static const st_case cases[] = {
        {"not json at all", 0, "not a JSON object"},
        {"[1,2]", 0, "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "not valid JSON"},
        {"{} trailing", 0, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F7'"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the data section"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "before begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,0]}}", 0, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "9 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}",
         4, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate"},
        {"{\"a\":[1]}", 0, "not an object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "value of 'k' is not a string"},
        {"{\"__metadata__\":[]}", 0, "__metadata__ is not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4,
         "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = tmp_path("bad.safetensors");
        make_st(path, cases[i].json, cases[i].data_len);
        rm_safetensors *st = (rm_safetensors *)1;
        rm_status rc = rm_st_open(path, &st);
        CHECK_MSG(rc == RAMOLE_ERR_FORMAT, "case %zu: status %s", i, ramole_status_str(rc));
        CHECK(st == NULL);
        CHECK_MSG(msg_has(cases[i].want) && msg_has(path), "case %zu: '%s' lacks '%s'", i,
                  ramole_last_error(), cases[i].want);
        if (strstr(cases[i].json, "\"a\":{\"dtype\"") && !strstr(cases[i].want, "JSON"))
            CHECK_MSG(msg_has("'a'") || msg_has("duplicate"), "case %zu: no tensor name in '%s'",
                      i, ramole_last_error());
    }
}

TEST(formats_st_rejects_bad_lengths) {
    const char *path = tmp_path("len.safetensors");
    uint8_t buf[16] = {0};
    uint64_t hl = 1000; /* header longer than the file */
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, "{}      ", 8);
    CHECK(write_bytes(path, buf, 16));
    rm_safetensors *st;
    CHECK_ERR(rm_st_open(path, &st), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("exceeds the file size");
    hl = 200ull * 1000 * 1000; /* over the 100 MB limit */
    memcpy(buf, &hl, 8);
    CHECK(write_bytes(path, buf, 16));
    CHECK_ERR(rm_st_open(path, &st), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("100 MB");
    hl = 0;
    memcpy(buf, &hl, 8);
    CHECK(write_bytes(path, buf, 8));
    CHECK_ERR(rm_st_open(path, &st), RAMOLE_ERR_FORMAT);
    CHECK_ERR(rm_st_open(tmp_path("does-not-exist.safetensors"), &st), RAMOLE_ERR_IO);
    CHECK_MSG_HAS("does-not-exist.safetensors");
    /* an empty header object is a valid, empty file */
    hl = 8;
    memcpy(buf, &hl, 8);
    CHECK(write_bytes(path, buf, 16));
    CHECK_OK(rm_st_open(path, &st));
    CHECK(st && rm_st_count(st) == 0);
    rm_st_free(st);
}

TEST(formats_st_truncated_every_length) {
    const char *path = tmp_path("full.safetensors");
    const char *cut = tmp_path("cut.safetensors");
    st_write_sample(path);
    char *raw;
    size_t size;
    CHECK_OK(rm_file_read(path, &raw, &size));
    guarded g;
    CHECK(guarded_new(&g, size));
    size_t live = rm_alloc_live_bytes();
    for (size_t n = 0; n < size; n++) {
        rm_safetensors *st = NULL;
        /* the data section is checked by extent: any cut inside it fails too */
        CHECK(write_bytes(cut, raw, n));
        rm_status rc = rm_st_open(cut, &st);
        CHECK_MSG(rc == RAMOLE_ERR_FORMAT && msg_has(cut), "cut at %zu: %s: %s", n,
                  ramole_status_str(rc), ramole_last_error());
        rm_st_free(st);
        const uint8_t *p = guarded_put(&g, raw, n);
        rc = rm_st_open_mem(p, n, "mem.safetensors", &st);
        CHECK_MSG(rc == RAMOLE_ERR_FORMAT && msg_has("mem.safetensors"), "mem cut at %zu", n);
        rm_st_free(st);
    }
    rm_safetensors *st = NULL;
    CHECK_OK(rm_st_open_mem(guarded_put(&g, raw, size), size, "mem.safetensors", &st));
    CHECK(st && rm_st_count(st) == 5);
    rm_st_free(st);
    CHECK(rm_alloc_live_bytes() == live);
    guarded_free(&g);
    rm_free(raw);
}

TEST(formats_st_alloc_failure_every_point) {
    const char *path = tmp_path("af.safetensors");
    st_write_sample(path);
    size_t live = rm_alloc_live_bytes();
    bool done = false;
    for (size_t n = 1; n < 100 && !done; n++) {
        rm_safetensors *st = NULL;
        rm_alloc_fail_after(n);
        rm_status rc = rm_st_open(path, &st);
        rm_alloc_fail_after(0);
        CHECK_MSG(rc == RAMOLE_OK || rc == RAMOLE_ERR_NOMEM, "fail at %zu: %s", n,
                  ramole_last_error());
        done = rc == RAMOLE_OK;
        rm_st_free(st);
        CHECK_MSG(rm_alloc_live_bytes() == live, "leak after failure at %zu", n);
    }
    CHECK(done);
    done = false;
    for (size_t n = 1; n < 100 && !done; n++) {
        rm_alloc_fail_after(n);
        rm_st_writer *w = NULL;
        rm_status rc = rm_st_writer_new(&w);
        if (rc == RAMOLE_OK) rc = rm_st_writer_meta(w, "k", "v");
        if (rc == RAMOLE_OK)
            rc = rm_st_writer_add(w, "t", RM_TYPE_F32, 1, (int64_t[]){6}, f32_data);
        if (rc == RAMOLE_OK) rc = rm_st_writer_write(w, tmp_path("afw.safetensors"));
        rm_alloc_fail_after(0);
        CHECK(rc == RAMOLE_OK || rc == RAMOLE_ERR_NOMEM || rc == RAMOLE_ERR_INVALID);
        done = rc == RAMOLE_OK;
        rm_st_writer_free(w);
        CHECK_MSG(rm_alloc_live_bytes() == live, "writer leak after failure at %zu", n);
    }
    CHECK(done);
}

/* ---- GGUF ------------------------------------------------------------------- */

static uint8_t q8_data[2 * 2 * 34];
static uint8_t q4k_data[2 * 144];
static float f32_4d[6] = {1, 2, 3, 4, 5, 6};

/* A file with every scalar type, arrays, strings and tensors of f32, f16,
 * bf16, q8_0 and q4_K. */
static void gguf_fill_sample(void) {
    for (size_t i = 0; i < sizeof q8_data; i++) q8_data[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof q4k_data; i++) q4k_data[i] = (uint8_t)(i * 3);
}

static void gguf_write_sample(const char *path, uint32_t alignment) {
    gguf_fill_sample();
    rm_gguf_writer *w;
    CHECK_OK(rm_gguf_writer_new(&w));
    CHECK_OK(rm_gguf_set_str(w, "general.architecture", "llama"));
    if (alignment) CHECK_OK(rm_gguf_set_u32(w, "general.alignment", alignment));
    CHECK_OK(rm_gguf_set_u32(w, "llama.block_count", 7));
    CHECK_OK(rm_gguf_set_i32(w, "test.i32", -5));
    CHECK_OK(rm_gguf_set_u64(w, "test.u64", 0xFFFFFFFFFFFFFFFFull));
    CHECK_OK(rm_gguf_set_f32(w, "test.f32", 0.25f));
    CHECK_OK(rm_gguf_set_bool(w, "test.bool", true));
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -(1ll << 40);
    double f64 = 1.5;
    CHECK_OK(rm_gguf_set_val(w, "test.u8", RM_GGUF_UINT8, &u8));
    CHECK_OK(rm_gguf_set_val(w, "test.i8", RM_GGUF_INT8, &i8));
    CHECK_OK(rm_gguf_set_val(w, "test.u16", RM_GGUF_UINT16, &u16));
    CHECK_OK(rm_gguf_set_val(w, "test.i16", RM_GGUF_INT16, &i16));
    CHECK_OK(rm_gguf_set_val(w, "test.i64", RM_GGUF_INT64, &i64));
    CHECK_OK(rm_gguf_set_val(w, "test.f64", RM_GGUF_FLOAT64, &f64));
    CHECK_OK(rm_gguf_set_u32(w, "llama.block_count", 8)); /* replaced in place */
    float scores[3] = {0.5f, -1, 2};
    CHECK_OK(rm_gguf_set_arr(w, "tokenizer.ggml.scores", RM_GGUF_FLOAT32, scores, 3));
    int32_t types[4] = {1, 2, 3, -4};
    CHECK_OK(rm_gguf_set_arr(w, "tokenizer.ggml.token_type", RM_GGUF_INT32, types, 4));
    const char *toks[4] = {"<s>", "", "h\xc3\xa9llo", "\xe2\x96\x81the"};
    CHECK_OK(rm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4));
    CHECK_OK(rm_gguf_set_arr(w, "test.empty", RM_GGUF_UINT8, NULL, 0));

    CHECK_OK(rm_gguf_writer_add(w, "a.f32", RM_TYPE_F32, 2, (int64_t[]){3, 2}, f32_data));
    CHECK_OK(rm_gguf_writer_add(w, "b.f16", RM_TYPE_F16, 1, (int64_t[]){4}, f16_data));
    CHECK_OK(rm_gguf_writer_add(w, "c.bf16", RM_TYPE_BF16, 3, (int64_t[]){2, 2, 2}, bf16_data));
    CHECK_OK(rm_gguf_writer_add(w, "d.q8_0", RM_TYPE_Q8_0, 2, (int64_t[]){64, 2}, q8_data));
    CHECK_OK(rm_gguf_writer_add(w, "e.4d", RM_TYPE_F32, 4, (int64_t[]){1, 2, 1, 3}, f32_4d));
    CHECK_OK(rm_gguf_writer_add_raw(w, "f.q4k", 12, 2, (int64_t[]){256, 2}, q4k_data));
    CHECK_OK(rm_gguf_writer_write(w, path));
    rm_gguf_writer_free(w);
}

static void check_sample_kvs(const rm_gguf *g) {
    bool has_align = rm_gguf_kv_find(g, "general.alignment") >= 0;
    const char *with[] = {"general.architecture", "general.alignment", "llama.block_count"};
    const char *without[] = {"general.architecture", "llama.block_count"};
    const char **order = has_align ? with : without;
    for (int i = 0; i < (has_align ? 3 : 2); i++) {
        const char *k = rm_gguf_kv_key(g, i);
        CHECK_MSG(k && strcmp(k, order[i]) == 0, "kv %d is %s", i, k ? k : "-");
    }
    uint32_t u;
    int64_t i;
    float f;
    bool b;
    CHECK_OK(rm_gguf_get_u32(g, "llama.block_count", &u));
    CHECK(u == 8);
    CHECK_OK(rm_gguf_get_i64(g, "test.i32", &i));
    CHECK(i == -5);
    CHECK_ERR(rm_gguf_get_u32(g, "test.i32", &u), RAMOLE_ERR_RANGE);
    CHECK_MSG_HAS("test.i32");
    CHECK_OK(rm_gguf_get_u32(g, "test.u8", &u));
    CHECK(u == 200);
    CHECK_OK(rm_gguf_get_i64(g, "test.i8", &i));
    CHECK(i == -100);
    CHECK_OK(rm_gguf_get_u32(g, "test.u16", &u));
    CHECK(u == 60000);
    CHECK_OK(rm_gguf_get_i64(g, "test.i16", &i));
    CHECK(i == -30000);
    CHECK_OK(rm_gguf_get_i64(g, "test.i64", &i));
    CHECK(i == -(1ll << 40));
    CHECK_ERR(rm_gguf_get_i64(g, "test.u64", &i), RAMOLE_ERR_RANGE);
    CHECK_ERR(rm_gguf_get_u32(g, "test.u64", &u), RAMOLE_ERR_RANGE);
    CHECK_OK(rm_gguf_get_f32(g, "test.f32", &f));
    CHECK(f == 0.25f);
    CHECK_OK(rm_gguf_get_f32(g, "test.f64", &f));
    CHECK(f == 1.5f);
    CHECK_OK(rm_gguf_get_bool(g, "test.bool", &b));
    CHECK(b);
    CHECK_ERR(rm_gguf_get_bool(g, "test.u8", &b), RAMOLE_ERR_FORMAT);
    CHECK_ERR(rm_gguf_get_u32(g, "general.architecture", &u), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("general.architecture");
    CHECK_MSG_HAS("string");
    CHECK_ERR(rm_gguf_get_u32(g, "no.such.key", &u), RAMOLE_ERR_NOT_FOUND);
    CHECK_MSG_HAS("no.such.key");
    CHECK(rm_gguf_kv_type(g, rm_gguf_kv_find(g, "test.u16")) == RM_GGUF_UINT16);
    CHECK(rm_gguf_kv_type(g, rm_gguf_kv_find(g, "test.i64")) == RM_GGUF_INT64);

    const char *s;
    size_t n;
    CHECK_OK(rm_gguf_get_str(g, "general.architecture", &s, &n));
    CHECK(n == 5 && memcmp(s, "llama", 5) == 0);
    rm_gguf_vtype et;
    uint64_t count;
    const void *data;
    CHECK_OK(rm_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &count, &data));
    float sc[3];
    CHECK(et == RM_GGUF_FLOAT32 && count == 3 && data);
    if (data) memcpy(sc, data, sizeof sc);
    CHECK(sc[0] == 0.5f && sc[1] == -1 && sc[2] == 2);
    CHECK_OK(rm_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &count, &data));
    int32_t ty[4];
    if (data) memcpy(ty, data, sizeof ty);
    CHECK(et == RM_GGUF_INT32 && count == 4 && ty[3] == -4);
    CHECK_OK(rm_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &count, &data));
    CHECK(et == RM_GGUF_STRING && count == 4 && data == NULL);
    CHECK_OK(rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 2, &s, &n));
    CHECK(n == 6 && memcmp(s, "h\xc3\xa9llo", 6) == 0);
    CHECK_OK(rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1, &s, &n));
    CHECK(n == 0);
    CHECK_OK(rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &n));
    CHECK(n == 6 && memcmp(s, "\xe2\x96\x81the", 6) == 0);
    CHECK_ERR(rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 4, &s, &n), RAMOLE_ERR_RANGE);
    CHECK_ERR(rm_gguf_get_arr_str(g, "tokenizer.ggml.scores", 0, &s, &n), RAMOLE_ERR_FORMAT);
    CHECK_OK(rm_gguf_get_arr(g, "test.empty", &et, &count, &data));
    CHECK(et == RM_GGUF_UINT8 && count == 0);
}

static void check_sample_tensors(const rm_gguf *g, size_t align) {
    CHECK(rm_gguf_alignment(g) == align);
    CHECK(rm_gguf_tensor_count(g) == 6);
    const char *names[] = {"a.f32", "b.f16", "c.bf16", "d.q8_0", "e.4d", "f.q4k"};
    for (int i = 0; i < 6 && i < rm_gguf_tensor_count(g); i++) {
        const rm_gguf_tensor *t = rm_gguf_tensor_get(g, i);
        CHECK(strcmp(t->name, names[i]) == 0); /* file order */
        CHECK(rm_gguf_tensor_find(g, names[i]) == t);
        CHECK_MSG(t->offset % align == 0, "%s offset %llu", t->name, (unsigned long long)t->offset);
        CHECK(((const uint8_t *)t->data - (const uint8_t *)rm_gguf_tensor_get(g, 0)->data) ==
              (ptrdiff_t)t->offset);
    }
    CHECK(rm_gguf_tensor_find(g, "zzz") == NULL);
    const rm_gguf_tensor *t = rm_gguf_tensor_find(g, "a.f32");
    CHECK(t && t->type == RM_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 2);
    CHECK(t && t->ne[2] == 1 && t->ne[3] == 1 && t->nbytes == 24 && memcmp(t->data, f32_data, 24) == 0);
    CHECK(t && rm_gguf_tensor_check(g, t) == RAMOLE_OK);
    t = rm_gguf_tensor_find(g, "b.f16");
    CHECK(t && t->type == RM_TYPE_F16 && t->ggml_type == RM_GGML_F16 && memcmp(t->data, f16_data, 8) == 0);
    t = rm_gguf_tensor_find(g, "c.bf16");
    CHECK(t && t->type == RM_TYPE_BF16 && t->ggml_type == RM_GGML_BF16 && t->n_dims == 3);
    CHECK(t && memcmp(t->data, bf16_data, 16) == 0);
    t = rm_gguf_tensor_find(g, "d.q8_0");
    CHECK(t && t->type == RM_TYPE_Q8_0 && t->nbytes == sizeof q8_data);
    CHECK(t && memcmp(t->data, q8_data, sizeof q8_data) == 0);
    t = rm_gguf_tensor_find(g, "e.4d");
    CHECK(t && t->n_dims == 4 && t->ne[3] == 3 && memcmp(t->data, f32_4d, 24) == 0);
    t = rm_gguf_tensor_find(g, "f.q4k");
    CHECK(t && t->type == RM_TYPE_Q4_K && t->ggml_type == 12 && t->nbytes == sizeof q4k_data);
    CHECK(t && memcmp(t->data, q4k_data, sizeof q4k_data) == 0);
    CHECK(t && rm_gguf_tensor_check(g, t) == RAMOLE_OK); /* types ramole lacks: test_quant.c */
}

TEST(formats_gguf_roundtrip) {
    size_t live = rm_alloc_live_bytes();
    const uint32_t aligns[] = {0, 64, 1};
    for (int k = 0; k < 3; k++) {
        const char *path = tmp_path("rt.gguf");
        gguf_write_sample(path, aligns[k]);
        rm_gguf *g;
        CHECK_OK(rm_gguf_open(path, &g));
        if (!g) continue;
        CHECK(rm_gguf_version(g) == 3);
        CHECK(strcmp(rm_gguf_path(g), path) == 0);
        CHECK(rm_gguf_kv_count(g) == 16 + (aligns[k] ? 1 : 0));
        check_sample_kvs(g);
        check_sample_tensors(g, aligns[k] ? aligns[k] : 32);
        /* copy every key to a new file through set_from: values survive */
        rm_gguf_writer *w;
        CHECK_OK(rm_gguf_writer_new(&w));
        for (int64_t i = 0; i < rm_gguf_kv_count(g); i++) CHECK_OK(rm_gguf_set_from(w, g, i));
        CHECK_ERR(rm_gguf_set_from(w, g, rm_gguf_kv_count(g)), RAMOLE_ERR_INVALID);
        for (int64_t i = 0; i < rm_gguf_tensor_count(g); i++) {
            const rm_gguf_tensor *t = rm_gguf_tensor_get(g, i);
            CHECK_OK(rm_gguf_writer_add_raw(w, t->name, t->ggml_type, t->n_dims, t->ne, t->data));
        }
        const char *copy = tmp_path("copy.gguf");
        CHECK_OK(rm_gguf_writer_write(w, copy));
        rm_gguf_writer_free(w);
        rm_gguf *c;
        CHECK_OK(rm_gguf_open(copy, &c));
        if (c) {
            CHECK(rm_gguf_kv_count(c) == rm_gguf_kv_count(g));
            check_sample_kvs(c);
            check_sample_tensors(c, aligns[k] ? aligns[k] : 32);
        }
        rm_gguf_free(c);
        rm_gguf_free(g);
    }
    CHECK(rm_alloc_live_bytes() == live);
}

/* A file whose header @huggingface/gguf wrote (tests/data/formats/README.md). */
TEST(formats_gguf_reads_foreign_file) {
    char path[512];
    snprintf(path, sizeof path, "%s/data/formats/hf_gguf_js.gguf", rm_test_data_dir());
    gguf_fill_sample();
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open(path, &g));
    if (!g) return;
    CHECK(rm_gguf_kv_count(g) == 21);
    uint32_t u;
    int64_t i;
    float f;
    const char *s;
    size_t n;
    CHECK_OK(rm_gguf_get_u32(g, "llama.block_count", &u));
    CHECK(u == 8);
    CHECK_OK(rm_gguf_get_i64(g, "test.i64", &i));
    CHECK(i == -(1ll << 40));
    CHECK_OK(rm_gguf_get_u32(g, "js.u8", &u));
    CHECK(u == 7);
    CHECK_OK(rm_gguf_get_i64(g, "js.i16", &i));
    CHECK(i == -1234);
    CHECK_OK(rm_gguf_get_f32(g, "js.f64", &f));
    CHECK(f == 0.125f);
    CHECK_OK(rm_gguf_get_str(g, "js.str", &s, &n));
    CHECK(n == 28 && memcmp(s, "written by @huggingface/gguf", 28) == 0);
    CHECK_OK(rm_gguf_get_arr_str(g, "js.strs", 1, &s, &n));
    CHECK(n == 2 && memcmp(s, "yy", 2) == 0);
    CHECK_OK(rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &n));
    CHECK(n == 6 && memcmp(s, "\xe2\x96\x81the", 6) == 0);
    rm_gguf_vtype et;
    uint64_t count;
    const void *data;
    CHECK_OK(rm_gguf_get_arr(g, "js.u16s", &et, &count, &data));
    uint16_t v[3] = {0};
    if (data && count == 3) memcpy(v, data, sizeof v);
    CHECK(et == RM_GGUF_UINT16 && v[0] == 1 && v[2] == 65535);
    check_sample_tensors(g, 32);
    rm_gguf_free(g);
}

TEST(formats_gguf_ggml_type_table) {
    struct {
        uint32_t id;
        const char *name;
        uint32_t blck, bytes;
    } want[] = {{0, "f32", 1, 4},       {1, "f16", 1, 2},         {2, "q4_0", 32, 18},
                {3, "q4_1", 32, 20},    {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},
                {8, "q8_0", 32, 34},    {9, "q8_1", 32, 36},      {10, "q2_K", 256, 84},
                {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
                {14, "q6_K", 256, 210}, {15, "q8_K", 256, 292},   {16, "iq2_xxs", 256, 66},
                {17, "iq2_xs", 256, 74}, {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},
                {20, "iq4_nl", 32, 18}, {21, "iq3_s", 256, 110},  {22, "iq2_s", 256, 82},
                {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},       {25, "i16", 1, 2},
                {26, "i32", 1, 4},      {27, "i64", 1, 8},        {28, "f64", 1, 8},
                {29, "iq1_m", 256, 56}, {30, "bf16", 1, 2},       {34, "tq1_0", 256, 54},
                {35, "tq2_0", 256, 66}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t b = 0, s = 0;
        CHECK_MSG(rm_ggml_type_size(want[i].id, &b, &s) && b == want[i].blck && s == want[i].bytes,
                  "ggml type %u", want[i].id);
        CHECK(strcmp(rm_ggml_type_name(want[i].id), want[i].name) == 0);
    }
    uint32_t b, s;
    CHECK(!rm_ggml_type_size(4, &b, &s) && !rm_ggml_type_size(31, &b, &s));
    CHECK(!rm_ggml_type_size(1000, &b, &s));
    CHECK(strcmp(rm_ggml_type_name(5), "unknown") == 0);
    for (int t = 0; t < RM_TYPE_COUNT; t++)
        CHECK(rm_type_from_ggml((uint32_t)rm_type_to_ggml((rm_type)t)) == t);
    CHECK(rm_type_from_ggml(12) == RM_TYPE_Q4_K && rm_type_from_ggml(RM_GGML_Q5_0) == -1);
}

/* Header of a hand-made GGUF file. */
static void gg_head(bytes *b, uint32_t version, uint64_t n_t, uint64_t n_kv) {
    b->n = 0;
    put(b, "GGUF", 4);
    put32(b, version);
    put64(b, n_t);
    put64(b, n_kv);
}

static void gg_tensor(bytes *b, const char *name, uint32_t nd, const int64_t *ne, uint32_t type,
                      uint64_t off) {
    putstr(b, name);
    put32(b, nd);
    for (uint32_t d = 0; d < nd; d++) put64(b, (uint64_t)ne[d]);
    put32(b, type);
    put64(b, off);
}

static rm_status gg_open(const bytes *b, rm_gguf **g) {
    const char *path = tmp_path("hand.gguf");
    CHECK(b->n <= sizeof b->b);
    CHECK(write_bytes(path, b->b, b->n));
    return rm_gguf_open(path, g);
}

TEST(formats_gguf_nested_arrays_are_skipped) {
    bytes b;
    gg_head(&b, 3, 0, 3);
    putstr(&b, "nested.u32");
    put32(&b, RM_GGUF_ARRAY);
    put32(&b, RM_GGUF_ARRAY);
    put64(&b, 2);
    for (int k = 0; k < 2; k++) {
        put32(&b, RM_GGUF_UINT32);
        put64(&b, 2);
        put32(&b, 1);
        put32(&b, 2);
    }
    putstr(&b, "nested.str");
    put32(&b, RM_GGUF_ARRAY);
    put32(&b, RM_GGUF_ARRAY);
    put64(&b, 1);
    put32(&b, RM_GGUF_STRING);
    put64(&b, 2);
    putstr(&b, "ab");
    putstr(&b, "cde");
    putstr(&b, "after");
    put32(&b, RM_GGUF_UINT32);
    put32(&b, 77);
    rm_gguf *g = NULL;
    CHECK_OK(gg_open(&b, &g));
    if (g) {
        uint32_t u;
        CHECK_OK(rm_gguf_get_u32(g, "after", &u));
        CHECK(u == 77);
        rm_gguf_vtype et;
        uint64_t count;
        const void *data = (void *)1;
        CHECK_OK(rm_gguf_get_arr(g, "nested.u32", &et, &count, &data));
        CHECK(et == RM_GGUF_ARRAY && count == 2 && data == NULL);
        CHECK_OK(rm_gguf_get_arr(g, "nested.str", &et, &count, NULL));
        CHECK(et == RM_GGUF_ARRAY && count == 1);
        rm_gguf_free(g);
    }
    /* nesting deeper than the limit is refused, not recursed into */
    gg_head(&b, 3, 0, 1);
    putstr(&b, "deep");
    put32(&b, RM_GGUF_ARRAY);
    for (int d = 0; d < 20; d++) {
        put32(&b, RM_GGUF_ARRAY);
        put64(&b, 1);
    }
    put32(&b, RM_GGUF_UINT8);
    put64(&b, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("nested");
    CHECK_MSG_HAS("deep");
}

typedef void (*gg_builder)(bytes *b);

/* One tensor of 8 f32 at offset 0 with the data section present. */
static void gg_one_tensor(bytes *b, uint32_t nd, const int64_t *ne, uint32_t type, uint64_t off) {
    gg_head(b, 3, 1, 0);
    gg_tensor(b, "blk.0.w", nd, ne, type, off);
    pad_to(b, 32);
    for (int i = 0; i < 64; i++) put(b, "\x01", 1);
}

TEST(formats_gguf_rejects_bad_headers) {
    bytes b;
    rm_gguf *g = (rm_gguf *)1;
    const char *path = tmp_path("hand.gguf");

    gg_head(&b, 3, 0, 0);
    memcpy(b.b, "GGUX", 4);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK(g == NULL);
    CHECK_MSG_HAS("magic");
    CHECK_MSG_HAS(path);

    gg_head(&b, 1, 0, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_UNSUPPORTED);
    CHECK_MSG_HAS("version 1");
    gg_head(&b, 4, 0, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_UNSUPPORTED);
    gg_head(&b, 2, 0, 0); /* v2 has the same layout */
    CHECK_OK(gg_open(&b, &g));
    rm_gguf_free(g);
    gg_head(&b, 3, 0, 0); /* empty file, no data section */
    CHECK_OK(gg_open(&b, &g));
    CHECK(g && rm_gguf_kv_count(g) == 0 && rm_gguf_tensor_count(g) == 0);
    rm_gguf_free(g);

    gg_head(&b, 3, 1ull << 62, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("tensor count");
    gg_head(&b, 3, 0, 1ull << 62);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("metadata count");
    gg_head(&b, 3, UINT64_MAX, UINT64_MAX);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);

    /* key length past the end */
    gg_head(&b, 3, 0, 1);
    put64(&b, 1ull << 40);
    put(&b, "abcdefghijklmnop", 16);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("past the end");
    /* string value length past the end */
    gg_head(&b, 3, 0, 1);
    putstr(&b, "k.str");
    put32(&b, RM_GGUF_STRING);
    put64(&b, UINT64_MAX);
    put(&b, "xx", 2);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("k.str");
    /* array count past the end (and count * size overflowing) */
    gg_head(&b, 3, 0, 1);
    putstr(&b, "k.arr");
    put32(&b, RM_GGUF_ARRAY);
    put32(&b, RM_GGUF_UINT64);
    put64(&b, 1ull << 61);
    put64(&b, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("k.arr");
    /* string array whose count claims more strings than bytes remain */
    gg_head(&b, 3, 0, 1);
    putstr(&b, "k.sarr");
    put32(&b, RM_GGUF_ARRAY);
    put32(&b, RM_GGUF_STRING);
    put64(&b, 1000);
    putstr(&b, "one");
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    /* invalid value types */
    gg_head(&b, 3, 0, 1);
    putstr(&b, "k.bad");
    put32(&b, 13);
    put64(&b, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("invalid value type 13");
    gg_head(&b, 3, 0, 1);
    putstr(&b, "k.badarr");
    put32(&b, RM_GGUF_ARRAY);
    put32(&b, 99);
    put64(&b, 0);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("k.badarr");
    /* duplicate key */
    gg_head(&b, 3, 0, 2);
    for (int k = 0; k < 2; k++) {
        putstr(&b, "dup.key");
        put32(&b, RM_GGUF_UINT8);
        put(&b, "\x01", 1);
    }
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("duplicate key 'dup.key'");
    /* general.alignment: wrong type, zero, not a power of two */
    const uint32_t bad_align[] = {0, 3, 48};
    for (int k = 0; k < 4; k++) {
        gg_head(&b, 3, 0, 1);
        putstr(&b, "general.alignment");
        if (k == 3) {
            put32(&b, RM_GGUF_UINT64);
            put64(&b, 32);
        } else {
            put32(&b, RM_GGUF_UINT32);
            put32(&b, bad_align[k]);
        }
        CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
        CHECK_MSG_HAS("general.alignment");
    }
}

TEST(formats_gguf_rejects_bad_tensors) {
    bytes b;
    rm_gguf *g = NULL;
    /* a good one first, so the cases below fail for their own reason */
    gg_one_tensor(&b, 1, (int64_t[]){8}, RM_GGML_F32, 0);
    CHECK_OK(gg_open(&b, &g));
    CHECK(g && rm_gguf_tensor_count(g) == 1 && rm_gguf_tensor_get(g, 0)->nbytes == 32);
    rm_gguf_free(g);

    struct {
        uint32_t nd;
        int64_t ne[5];
        uint32_t type;
        uint64_t off;
        const char *want;
    } cases[] = {
        {5, {8, 1, 1, 1, 1}, RM_GGML_F32, 0, "n_dims 5"},
        {1, {-8}, RM_GGML_F32, 0, "negative ne[0]"},
        {1, {8}, 99, 0, "unknown ggml type id 99"},
        {1, {8}, 4, 0, "unknown ggml type id 4"},
        {1, {33}, RM_GGML_Q8_0, 0, "block size 32"},
        {1, {8}, RM_GGML_F32, 8, "alignment 32"},
        {1, {8}, RM_GGML_F32, 64, "past the end"},
        {1, {1024}, RM_GGML_F32, 0, "past the end"},
        {4, {1ll << 32, 1ll << 32, 1ll << 32, 1}, RM_GGML_F32, 0, "overflows"},
        {3, {1ll << 40, 1ll << 10, 2}, RM_GGML_F32, 0, "past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gg_one_tensor(&b, cases[i].nd, cases[i].ne, cases[i].type, cases[i].off);
        rm_status rc = gg_open(&b, &g);
        CHECK_MSG(rc == RAMOLE_ERR_FORMAT && msg_has(cases[i].want) && msg_has("blk.0.w"),
                  "case %zu: %s: %s", i, ramole_status_str(rc), ramole_last_error());
    }

    /* overlapping and duplicate tensors */
    gg_head(&b, 3, 2, 0);
    gg_tensor(&b, "t.a", 1, (int64_t[]){16}, RM_GGML_F32, 0);
    gg_tensor(&b, "t.b", 1, (int64_t[]){16}, RM_GGML_F32, 32);
    pad_to(&b, 32);
    for (int i = 0; i < 128; i++) put(&b, "", 1);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("overlap");
    gg_head(&b, 3, 2, 0);
    gg_tensor(&b, "t.a", 1, (int64_t[]){8}, RM_GGML_F32, 0);
    gg_tensor(&b, "t.a", 1, (int64_t[]){8}, RM_GGML_F32, 32);
    pad_to(&b, 32);
    for (int i = 0; i < 64; i++) put(&b, "", 1);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("duplicate tensor 't.a'");
    /* tensor name length past the end */
    gg_head(&b, 3, 1, 0);
    put64(&b, 1ull << 50);
    for (int i = 0; i < 40; i++) put(&b, "n", 1);
    CHECK_ERR(gg_open(&b, &g), RAMOLE_ERR_FORMAT);
    CHECK_MSG_HAS("past the end");
}

TEST(formats_gguf_writer_rejects_bad_input) {
    rm_gguf_writer *w;
    CHECK_OK(rm_gguf_writer_new(&w));
    float x[64] = {0};
    char long_name[80];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[79] = 0;
    CHECK_ERR(rm_gguf_writer_add(w, long_name, RM_TYPE_F32, 1, (int64_t[]){2}, x), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_gguf_writer_add(w, "q", RM_TYPE_Q8_0, 1, (int64_t[]){33}, x), RAMOLE_ERR_INVALID);
    CHECK_MSG_HAS("block size");
    CHECK_ERR(rm_gguf_writer_add(w, "q", RM_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, x),
              RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_gguf_writer_add(w, "q", (rm_type)77, 1, (int64_t[]){2}, x), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_gguf_writer_add_raw(w, "q", 5, 1, (int64_t[]){32}, x), RAMOLE_ERR_INVALID);
    CHECK_OK(rm_gguf_writer_add(w, "x", RM_TYPE_F32, 1, (int64_t[]){2}, x));
    CHECK_ERR(rm_gguf_writer_add(w, "x", RM_TYPE_F32, 1, (int64_t[]){2}, x), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_gguf_set_arr(w, "a", RM_GGUF_STRING, x, 1), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_gguf_set_val(w, "a", RM_GGUF_ARRAY, x), RAMOLE_ERR_INVALID);
    CHECK_OK(rm_gguf_set_u32(w, "general.alignment", 3));
    CHECK_ERR(rm_gguf_writer_write(w, tmp_path("w.gguf")), RAMOLE_ERR_INVALID);
    CHECK_MSG_HAS("general.alignment");
    CHECK_OK(rm_gguf_set_u32(w, "general.alignment", 16));
    CHECK_ERR(rm_gguf_writer_write(w, "/nonexistent-dir/w.gguf"), RAMOLE_ERR_IO);
    CHECK_MSG_HAS("/nonexistent-dir/w.gguf");
    CHECK_OK(rm_gguf_writer_write(w, tmp_path("w.gguf")));
    rm_gguf_writer_free(w);
    rm_gguf *g;
    CHECK_OK(rm_gguf_open(tmp_path("w.gguf"), &g));
    CHECK(g && rm_gguf_alignment(g) == 16 && rm_gguf_tensor_count(g) == 1);
    rm_gguf_free(g);
}

TEST(formats_gguf_truncated_every_length) {
    const char *path = tmp_path("full.gguf");
    const char *cut = tmp_path("cut.gguf");
    gguf_write_sample(path, 0);
    char *raw;
    size_t size;
    CHECK_OK(rm_file_read(path, &raw, &size));
    guarded gp;
    CHECK(guarded_new(&gp, size));
    size_t live = rm_alloc_live_bytes();
    for (size_t n = 0; n < size; n++) {
        rm_gguf *g = NULL;
        const uint8_t *p = guarded_put(&gp, raw, n);
        rm_status rc = rm_gguf_open_mem(p, n, "mem.gguf", &g);
        CHECK_MSG(rc == RAMOLE_ERR_FORMAT && msg_has("mem.gguf"), "mem cut at %zu: %s", n,
                  ramole_last_error());
        rm_gguf_free(g);
        if (n % 7 == 0 || n < 64) { /* files: a sample of cut points */
            CHECK(write_bytes(cut, raw, n));
            rc = rm_gguf_open(cut, &g);
            CHECK_MSG(rc == RAMOLE_ERR_FORMAT && msg_has(cut), "cut at %zu: %s", n,
                      ramole_last_error());
            rm_gguf_free(g);
        }
    }
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open_mem(guarded_put(&gp, raw, size), size, "mem.gguf", &g));
    if (g) check_sample_tensors(g, 32);
    rm_gguf_free(g);
    CHECK(rm_alloc_live_bytes() == live);
    guarded_free(&gp);
    rm_free(raw);
}

/* Flip every byte of the header to a few values: open must fail or succeed
 * cleanly, never read out of bounds (run under ASan + the guard page). */
TEST(formats_gguf_corrupted_bytes) {
    const char *path = tmp_path("corrupt.gguf");
    gguf_write_sample(path, 0);
    char *raw;
    size_t size;
    CHECK_OK(rm_file_read(path, &raw, &size));
    guarded gp;
    CHECK(guarded_new(&gp, size));
    size_t live = rm_alloc_live_bytes();
    const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x09, 0x41};
    size_t data_off = 0; /* the data section starts with a.f32 */
    for (size_t i = 0; i + 24 <= size && !data_off; i++)
        if (memcmp(raw + i, f32_data, 24) == 0) data_off = i;
    CHECK(data_off > 0);
    uint8_t *p = (uint8_t *)guarded_put(&gp, raw, size);
    int ok = 0, bad = 0;
    for (size_t i = 0; i < data_off; i++) {
        uint8_t orig = p[i];
        for (size_t v = 0; v < sizeof vals; v++) {
            if (vals[v] == orig) continue;
            p[i] = vals[v];
            rm_gguf *g = NULL;
            rm_status rc = rm_gguf_open_mem(p, size, "corrupt.gguf", &g);
            CHECK_MSG(rc == RAMOLE_OK || rc == RAMOLE_ERR_FORMAT || rc == RAMOLE_ERR_UNSUPPORTED,
                      "byte %zu = %u: %s", i, vals[v], ramole_last_error());
            if (rc == RAMOLE_OK) {
                ok++;
                /* exercise the getters on whatever parsed */
                for (int64_t k = 0; k < rm_gguf_kv_count(g); k++) {
                    const char *key = rm_gguf_kv_key(g, k);
                    uint32_t u;
                    const char *s;
                    size_t n;
                    rm_gguf_get_u32(g, key, &u);
                    rm_gguf_get_str(g, key, &s, &n);
                    rm_gguf_get_arr_str(g, key, 0, &s, &n);
                }
            } else {
                bad++;
            }
            rm_gguf_free(g);
        }
        p[i] = orig;
    }
    CHECK(ok > 0 && bad > 0);
    CHECK(rm_alloc_live_bytes() == live);
    guarded_free(&gp);
    rm_free(raw);
}

TEST(formats_gguf_alloc_failure_every_point) {
    const char *path = tmp_path("af.gguf");
    gguf_write_sample(path, 0);
    size_t live = rm_alloc_live_bytes();
    bool done = false;
    for (size_t n = 1; n < 200 && !done; n++) {
        rm_gguf *g = NULL;
        rm_alloc_fail_after(n);
        rm_status rc = rm_gguf_open(path, &g);
        rm_alloc_fail_after(0);
        CHECK_MSG(rc == RAMOLE_OK || rc == RAMOLE_ERR_NOMEM, "fail at %zu: %s", n,
                  ramole_last_error());
        done = rc == RAMOLE_OK;
        rm_gguf_free(g);
        CHECK_MSG(rm_alloc_live_bytes() == live, "leak after failure at %zu", n);
    }
    CHECK(done);
    done = false;
    for (size_t n = 1; n < 200 && !done; n++) {
        rm_alloc_fail_after(n);
        rm_gguf_writer *w = NULL;
        rm_status rc = rm_gguf_writer_new(&w);
        const char *toks[2] = {"a", "b"};
        if (rc == RAMOLE_OK) rc = rm_gguf_set_str(w, "k.s", "v");
        if (rc == RAMOLE_OK) rc = rm_gguf_set_arr_str(w, "k.a", toks, 2);
        if (rc == RAMOLE_OK) rc = rm_gguf_writer_add(w, "t", RM_TYPE_F32, 1, (int64_t[]){6}, f32_data);
        if (rc == RAMOLE_OK) rc = rm_gguf_writer_write(w, tmp_path("afw.gguf"));
        rm_alloc_fail_after(0);
        CHECK_MSG(rc == RAMOLE_OK || rc == RAMOLE_ERR_NOMEM, "writer fail at %zu: %s", n,
                  ramole_last_error());
        done = rc == RAMOLE_OK;
        rm_gguf_writer_free(w);
        CHECK_MSG(rm_alloc_live_bytes() == live, "writer leak after failure at %zu", n);
    }
    CHECK(done);
}

/* Writers stream tensor data: peak heap during a 16 MB write stays small. */
TEST(formats_writers_stream_large_tensors) {
    size_t n = 4u << 20; /* 4M floats = 16 MB */
    float *big = malloc(n * sizeof *big); /* outside the accounting on purpose */
    CHECK(big != NULL);
    if (!big) return;
    for (size_t i = 0; i < n; i++) big[i] = (float)i;
    size_t before = rm_alloc_live_bytes();
    size_t peak0 = rm_alloc_peak_bytes();

    rm_gguf_writer *w;
    CHECK_OK(rm_gguf_writer_new(&w));
    CHECK_OK(rm_gguf_writer_add(w, "big", RM_TYPE_F32, 2, (int64_t[]){1024, (int64_t)n / 1024}, big));
    CHECK_OK(rm_gguf_writer_write(w, tmp_path("big.gguf")));
    rm_gguf_writer_free(w);
    rm_st_writer *sw;
    CHECK_OK(rm_st_writer_new(&sw));
    CHECK_OK(rm_st_writer_add(sw, "big", RM_TYPE_F32, 2, (int64_t[]){(int64_t)n / 1024, 1024}, big));
    CHECK_OK(rm_st_writer_write(sw, tmp_path("big.safetensors")));
    rm_st_writer_free(sw);
    size_t peak = rm_alloc_peak_bytes();
    /* The peak is a global high-water mark: it can only tell when no earlier
     * test went 8 MB above the current live bytes. */
    if (peak0 < before + (8u << 20))
        CHECK_MSG(peak < before + (8u << 20), "heap peak %zu bytes above live during writes",
                  peak - before);

    rm_gguf *g;
    CHECK_OK(rm_gguf_open(tmp_path("big.gguf"), &g));
    const rm_gguf_tensor *t = g ? rm_gguf_tensor_find(g, "big") : NULL;
    CHECK(t && t->nbytes == n * 4 && memcmp(t->data, big, n * 4) == 0);
    CHECK(t && ((uintptr_t)t->data % 32) == 0);
    rm_gguf_free(g);
    rm_safetensors *st;
    CHECK_OK(rm_st_open(tmp_path("big.safetensors"), &st));
    const rm_st_tensor *s = st ? rm_st_find(st, "big") : NULL;
    CHECK(s && s->nbytes == n * 4 && memcmp(s->data, big, n * 4) == 0);
    CHECK(s && ((uintptr_t)s->data % 8) == 0);
    rm_st_free(st);
    remove(tmp_path("big.gguf"));
    remove(tmp_path("big.safetensors"));
    free(big);
}

/* ---- config.json -------------------------------------------------------------- */

static const char *tinyllama_cfg =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"bos_token_id\": 1,"
    " \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"hidden_size\": 2048,"
    " \"initializer_range\": 0.02, \"intermediate_size\": 5632,"
    " \"max_position_embeddings\": 2048, \"model_type\": \"llama\", \"num_attention_heads\": 32,"
    " \"num_hidden_layers\": 22, \"num_key_value_heads\": 4, \"pretraining_tp\": 1,"
    " \"rms_norm_eps\": 1e-05, \"rope_scaling\": null, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.35.0\", \"use_cache\": true, \"vocab_size\": 32000}";

static const char *llama32_cfg =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"bos_token_id\": 128000,"
    " \"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 64, \"hidden_size\": 2048,"
    " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
    " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16,"
    " \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 32.0,"
    " \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
    " \"vocab_size\": 128256}";

static const char *qwen2_cfg =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"bos_token_id\": 151643,"
    " \"eos_token_id\": 151645, \"hidden_size\": 896, \"intermediate_size\": 4864,"
    " \"max_position_embeddings\": 32768, \"max_window_layers\": 21, \"model_type\": \"qwen2\","
    " \"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 32768,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"use_sliding_window\": false,"
    " \"vocab_size\": 151936}";

static const char *mistral_cfg =
    "{\"model_type\": \"mistral\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
    " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
    " \"vocab_size\": 32000, \"sliding_window\": 4096, \"rope_theta\": 10000,"
    " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}, \"bos_token_id\": 1}";

TEST(formats_hf_config_real_configs) {
    rm_hf_config c;
    CHECK_OK(rm_hf_config_parse(tinyllama_cfg, strlen(tinyllama_cfg), "tiny", &c));
    CHECK(strcmp(c.arch, "llama") == 0 && c.vocab_size == 32000 && c.hidden_size == 2048);
    CHECK(c.intermediate_size == 5632 && c.num_hidden_layers == 22 && c.num_attention_heads == 32);
    CHECK(c.num_key_value_heads == 4 && c.head_dim == 64 && c.max_position_embeddings == 2048);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
    CHECK(c.rope_theta == 10000.0f && c.rope_scaling.type == RM_ROPE_SCALING_NONE);
    CHECK(!c.tie_word_embeddings && !c.attention_bias && c.bos_token_id == 1 && c.eos_token_id == 2);
    CHECK(c.n_eos_token_ids == 1 && strcmp(c.torch_dtype, "bfloat16") == 0 && c.sliding_window == 0);

    CHECK_OK(rm_hf_config_parse(llama32_cfg, strlen(llama32_cfg), "l32", &c));
    CHECK(c.rope_scaling.type == RM_ROPE_SCALING_LLAMA3 && c.rope_scaling.factor == 32.0f);
    CHECK(c.rope_scaling.low_freq_factor == 1.0f && c.rope_scaling.high_freq_factor == 4.0f);
    CHECK(c.rope_scaling.original_max_position_embeddings == 8192 && c.rope_theta == 500000.0f);
    CHECK(c.tie_word_embeddings && c.eos_token_id == 128001 && c.n_eos_token_ids == 3);
    CHECK(c.eos_token_ids[2] == 128009 && c.bos_token_id == 128000 && c.head_dim == 64);

    CHECK_OK(rm_hf_config_parse(qwen2_cfg, strlen(qwen2_cfg), "qwen", &c));
    CHECK(strcmp(c.arch, "qwen2") == 0 && c.attention_bias && c.tie_word_embeddings);
    CHECK(c.head_dim == 64 && c.num_key_value_heads == 2 && c.sliding_window == 0);
    CHECK(c.rope_theta == 1000000.0f);

    CHECK_OK(rm_hf_config_parse(mistral_cfg, strlen(mistral_cfg), "mistral", &c));
    CHECK(strcmp(c.arch, "mistral") == 0 && c.sliding_window == 4096 && !c.attention_bias);
    CHECK(c.rope_scaling.type == RM_ROPE_SCALING_LINEAR && c.rope_scaling.factor == 2.0f);
    CHECK(c.eos_token_id == -1 && c.n_eos_token_ids == 0 && c.rms_norm_eps == 1e-6f);
    CHECK(c.max_position_embeddings == 2048 && c.torch_dtype[0] == 0);

    /* from a folder and from a file path */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hfcfg", rm_test_tmp_dir());
    mkdir(dir, 0755);
    char *file = rm_path_join(dir, "config.json");
    CHECK(write_bytes(file, qwen2_cfg, strlen(qwen2_cfg)));
    memset(&c, 0, sizeof c);
    CHECK_OK(rm_hf_config_load(dir, &c));
    CHECK(c.vocab_size == 151936);
    CHECK_OK(rm_hf_config_load(file, &c));
    CHECK_ERR(rm_hf_config_load(tmp_path("no-such-config.json"), &c), RAMOLE_ERR_IO);
    CHECK_MSG_HAS("no-such-config.json");
    rm_free(file);
}

/* Replace the first occurrence of `from` in tinyllama_cfg with `to`. */
static rm_status cfg_variant(const char *from, const char *to, rm_hf_config *c) {
    char buf[2048];
    const char *p = strstr(tinyllama_cfg, from);
    CHECK_MSG(p != NULL, "fixture lacks %s", from);
    if (!p) return RAMOLE_ERR_INTERNAL;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - tinyllama_cfg), tinyllama_cfg, to, p + strlen(from));
    return rm_hf_config_parse(buf, strlen(buf), "cfg.json", c);
}

TEST(formats_hf_config_rejects_bad_configs) {
    struct {
        const char *from, *to;
        rm_status st;
        const char *want;
    } cases[] = {
        {"\"llama\"", "\"gpt2\"", RAMOLE_ERR_UNSUPPORTED, "unknown architecture \"gpt2\" in cfg.json"},
        {"\"model_type\": \"llama\",", "", RAMOLE_ERR_FORMAT, "model_type"},
        {"\"hidden_size\": 2048", "\"hidden_size\": 2000", RAMOLE_ERR_FORMAT, "does not divide hidden_size"},
        {"\"hidden_size\": 2048", "\"hidden_size\": 0", RAMOLE_ERR_FORMAT, "hidden_size"},
        {"\"hidden_size\": 2048", "\"hidden_size\": -5", RAMOLE_ERR_FORMAT, "hidden_size"},
        {"\"hidden_size\": 2048", "\"hidden_size\": \"2048\"", RAMOLE_ERR_FORMAT, "hidden_size"},
        {"\"hidden_size\": 2048,", "", RAMOLE_ERR_FORMAT, "missing hidden_size"},
        {"\"vocab_size\": 32000", "\"vocab_size\": 1e99", RAMOLE_ERR_FORMAT, "vocab_size"},
        {"\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5", RAMOLE_ERR_FORMAT,
         "does not divide num_attention_heads"},
        {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", RAMOLE_ERR_FORMAT, "rms_norm_eps"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}",
         RAMOLE_ERR_UNSUPPORTED, "rope_scaling type yarn"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\"}", RAMOLE_ERR_FORMAT,
         "missing factor"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}",
         RAMOLE_ERR_FORMAT, "low_freq_factor"},
        {"\"rope_scaling\": null", "\"rope_scaling\": 3", RAMOLE_ERR_FORMAT, "rope_scaling"},
        {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 1", RAMOLE_ERR_FORMAT,
         "tie_word_embeddings"},
        {"\"eos_token_id\": 2", "\"eos_token_id\": [2, \"x\"]", RAMOLE_ERR_FORMAT, "eos_token_id"},
        {"\"eos_token_id\": 2", "\"eos_token_id\": -3", RAMOLE_ERR_FORMAT, "eos_token_id"},
        {"\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"a-very-long-dtype-name\"",
         RAMOLE_ERR_FORMAT, "torch_dtype"},
        {"\"vocab_size\": 32000}", "\"vocab_size\": 32000", RAMOLE_ERR_FORMAT, "not valid JSON"},
        {"\"vocab_size\": 32000}", "\"vocab_size\": 32000, \"vocab_size\": 7}", RAMOLE_ERR_FORMAT,
         "duplicate"},
        {"\"num_hidden_layers\": 22", "\"num_hidden_layers\": 22, \"head_dim\": 63",
         RAMOLE_ERR_FORMAT, "even"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rm_hf_config c;
        rm_status rc = cfg_variant(cases[i].from, cases[i].to, &c);
        CHECK_MSG(rc == cases[i].st && msg_has(cases[i].want) && msg_has("cfg.json"),
                  "case %zu: %s: %s", i, ramole_status_str(rc), ramole_last_error());
    }
    rm_hf_config c;
    /* an explicit head_dim need not divide hidden_size (Mistral-Nemo: 5120 / 32 heads of 128) */
    CHECK_OK(cfg_variant("\"hidden_size\": 2048", "\"hidden_size\": 5120, \"head_dim\": 128", &c));
    CHECK(c.head_dim == 128);
    CHECK_ERR(rm_hf_config_parse("[1]", 3, "cfg.json", &c), RAMOLE_ERR_FORMAT);
    /* an eos list longer than RM_HF_MAX_EOS keeps the first ones */
    CHECK_OK(cfg_variant("\"eos_token_id\": 2", "\"eos_token_id\": [9,8,7,6,5,4,3,2,1,0]", &c));
    CHECK(c.n_eos_token_ids == RM_HF_MAX_EOS && c.eos_token_id == 9 && c.eos_token_ids[7] == 2);
}

/* ---- sharded safetensors --------------------------------------------------------- */

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = rm_path_join(dir, name);
    CHECK(p && write_bytes(p, text, strlen(text)));
    rm_free(p);
}

/* A folder with two shards written by rm_st_writer and an index over them. */
static void make_sharded(const char *dir) {
    mkdir(dir, 0755);
    const char *shard_names[2] = {"model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors"};
    for (int k = 0; k < 2; k++) {
        rm_st_writer *w;
        CHECK_OK(rm_st_writer_new(&w));
        char name[64];
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "layers.%d.w", k * 3 + i);
            CHECK_OK(rm_st_writer_add(w, name, RM_TYPE_F32, 1, (int64_t[]){2}, f32_data + 2 * i));
        }
        if (k == 1) /* present in the shard but not in the index: not part of the set */
            CHECK_OK(rm_st_writer_add(w, "unlisted", RM_TYPE_F32, 1, (int64_t[]){1}, f32_data));
        char *p = rm_path_join(dir, shard_names[k]);
        CHECK_OK(rm_st_writer_write(w, p));
        rm_free(p);
        rm_st_writer_free(w);
    }
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {"
               "\"layers.3.w\": \"model-00002-of-00002.safetensors\","
               "\"layers.0.w\": \"model-00001-of-00002.safetensors\","
               "\"layers.1.w\": \"model-00001-of-00002.safetensors\","
               "\"layers.2.w\": \"model-00001-of-00002.safetensors\","
               "\"layers.4.w\": \"model-00002-of-00002.safetensors\","
               "\"layers.5.w\": \"model-00002-of-00002.safetensors\"}}");
}

TEST(formats_st_set_sharded_and_single) {
    size_t live = rm_alloc_live_bytes();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", rm_test_tmp_dir());
    make_sharded(dir);
    for (int via_file = 0; via_file < 2; via_file++) {
        rm_st_set *s = NULL;
        char *index = rm_path_join(dir, "model.safetensors.index.json");
        CHECK_OK(rm_st_set_open(via_file ? index : dir, &s));
        rm_free(index);
        if (!s) continue;
        CHECK(rm_st_set_shard_count(s) == 2 && rm_st_set_count(s) == 6);
        CHECK(strstr(rm_st_path(rm_st_set_shard(s, 0)), "model-00002-of-00002") != NULL);
        for (int i = 0; i < 6; i++) {
            char name[64];
            snprintf(name, sizeof name, "layers.%d.w", i);
            const rm_st_tensor *t = rm_st_set_find(s, name);
            CHECK_MSG(t && strcmp(rm_st_set_get(s, i)->name, name) == 0, "%s", name);
            CHECK(t && memcmp(t->data, f32_data + 2 * (i % 3), 8) == 0);
            const rm_safetensors *sh = t ? rm_st_set_shard_of(s, t) : NULL;
            CHECK(sh && rm_st_find(sh, name) == t);
        }
        CHECK(rm_st_set_find(s, "unlisted") == NULL && rm_st_set_find(s, "nope") == NULL);
        rm_st_set_free(s);
    }
    /* a folder with one model.safetensors */
    char single[512];
    snprintf(single, sizeof single, "%s/single", rm_test_tmp_dir());
    mkdir(single, 0755);
    char *p = rm_path_join(single, "model.safetensors");
    st_write_sample(p);
    rm_st_set *s = NULL;
    CHECK_OK(rm_st_set_open(single, &s));
    CHECK(s && rm_st_set_count(s) == 5 && rm_st_set_shard_count(s) == 1);
    CHECK(s && rm_st_set_find(s, "model.m.bias") && rm_st_set_find(s, "model.m.bias")->nbytes == 8);
    rm_st_set_free(s);
    CHECK_OK(rm_st_set_open(p, &s)); /* or the file itself */
    CHECK(s && rm_st_set_count(s) == 5);
    rm_st_set_free(s);
    rm_free(p);
    CHECK(rm_alloc_live_bytes() == live);
}

TEST(formats_st_set_rejects_bad_indexes) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/badidx", rm_test_tmp_dir());
    make_sharded(dir);
    struct {
        const char *json;
        rm_status st;
        const char *want;
    } cases[] = {
        {"{\"weight_map\": {\"layers.0.w\": \"model-00002-of-00002.safetensors\"}}",
         RAMOLE_ERR_FORMAT, "tensor 'layers.0.w' is not in its shard model-00002-of-00002"},
        {"{\"weight_map\": {\"layers.0.w\": \"missing.safetensors\"}}", RAMOLE_ERR_IO,
         "missing.safetensors"},
        {"{\"weight_map\": {\"layers.0.w\": \"../x.safetensors\"}}", RAMOLE_ERR_FORMAT,
         "plain file name"},
        {"{\"weight_map\": {\"layers.0.w\": 3}}", RAMOLE_ERR_FORMAT, "not a file name"},
        {"{\"weight_map\": {}}", RAMOLE_ERR_FORMAT, "weight_map is missing or empty"},
        {"{\"metadata\": {}}", RAMOLE_ERR_FORMAT, "weight_map is missing or empty"},
        {"{\"weight_map\": ", RAMOLE_ERR_FORMAT, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, "model.safetensors.index.json", cases[i].json);
        rm_st_set *s = (rm_st_set *)1;
        rm_status rc = rm_st_set_open(dir, &s);
        CHECK(s == NULL);
        CHECK_MSG(rc == cases[i].st && msg_has(cases[i].want) &&
                      msg_has("model.safetensors.index.json"),
                  "case %zu: %s: %s", i, ramole_status_str(rc), ramole_last_error());
    }
    char empty[512];
    snprintf(empty, sizeof empty, "%s/emptydir", rm_test_tmp_dir());
    mkdir(empty, 0755);
    rm_st_set *s;
    CHECK_ERR(rm_st_set_open(empty, &s), RAMOLE_ERR_NOT_FOUND);
    CHECK_MSG_HAS("emptydir");
}

/* The golden model folders (written by tests/reference/make_golden.py, a
 * Python safetensors writer independent of ours) open as sets, and their
 * config.json agrees with the tensor shapes. */
TEST(formats_reads_golden_model_folders) {
    const char *names[] = {"llama_tiny", "llama3_tiny", "llama_linear_tiny", "llama_sharded_tiny",
                           "mistral_tiny", "qwen2_tiny"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/golden/models/%s", rm_test_data_dir(), names[i]);
        if (!rm_dir_exists(dir)) continue; /* fixtures of the model module */
        rm_st_set *s = NULL;
        rm_hf_config c;
        CHECK_OK(rm_st_set_open(dir, &s));
        CHECK_OK(rm_hf_config_load(dir, &c));
        if (!s) continue;
        const rm_st_tensor *emb = rm_st_set_find(s, "model.embed_tokens.weight");
        CHECK_MSG(emb && emb->n_dims == 2 && emb->shape[0] == c.vocab_size &&
                      emb->shape[1] == c.hidden_size, "%s: embed_tokens", names[i]);
        const rm_st_tensor *k = rm_st_set_find(s, "model.layers.0.self_attn.k_proj.weight");
        CHECK_MSG(k && k->shape[0] == (int64_t)c.num_key_value_heads * c.head_dim, "%s: k_proj",
                  names[i]);
        CHECK_MSG((rm_st_set_find(s, "lm_head.weight") == NULL) == c.tie_word_embeddings,
                  "%s: lm_head vs tie_word_embeddings", names[i]);
        CHECK_MSG((rm_st_set_find(s, "model.layers.0.self_attn.q_proj.bias") != NULL) ==
                      c.attention_bias, "%s: q bias vs attention_bias", names[i]);
        rm_st_set_free(s);
    }
}

/* Overwrite every header byte with a few values: open fails or succeeds
 * cleanly and never reads outside the buffer (guard page, ASan). */
TEST(formats_st_corrupted_bytes) {
    const char *path = tmp_path("corrupt.safetensors");
    st_write_sample(path);
    char *raw;
    size_t size;
    CHECK_OK(rm_file_read(path, &raw, &size));
    guarded gp;
    CHECK(guarded_new(&gp, size));
    uint64_t hlen;
    memcpy(&hlen, raw, 8);
    uint8_t *p = (uint8_t *)guarded_put(&gp, raw, size);
    const uint8_t vals[] = {'0', '9', '"', '{', ']', ',', '-', 0xff, 0x00};
    size_t live = rm_alloc_live_bytes();
    int ok = 0, bad = 0;
    for (size_t i = 0; i < 8 + hlen && i < size; i++) {
        uint8_t orig = p[i];
        for (size_t v = 0; v < sizeof vals; v++) {
            if (vals[v] == orig) continue;
            p[i] = vals[v];
            rm_safetensors *st = NULL;
            rm_status rc = rm_st_open_mem(p, size, "corrupt.safetensors", &st);
            CHECK_MSG(rc == RAMOLE_OK || (rc == RAMOLE_ERR_FORMAT && msg_has("corrupt.safetensors")),
                      "byte %zu = %u: %s", i, vals[v], ramole_last_error());
            if (rc == RAMOLE_OK) {
                ok++;
                uint64_t h2; /* the length field itself may have been changed */
                memcpy(&h2, p, 8);
                for (int k = 0; k < rm_st_count(st); k++) {
                    const rm_st_tensor *t = rm_st_get(st, k);
                    CHECK((const uint8_t *)t->data >= p + 8 + h2 &&
                          (const uint8_t *)t->data + t->nbytes <= p + size);
                }
            } else {
                bad++;
            }
            rm_st_free(st);
        }
        p[i] = orig;
    }
    CHECK(ok > 0 && bad > 0);
    CHECK(rm_alloc_live_bytes() == live);
    guarded_free(&gp);
    rm_free(raw);
}
