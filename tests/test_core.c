/* test_core.c — errors, allocation accounting, thread pool, atomic files. */
#include "test.h"

#include <stdatomic.h>
#include <string.h>

#include "core/core.h"

TEST(core_status_strings) {
    CHECK(strcmp(ramole_status_str(RAMOLE_OK), "ok") == 0);
    CHECK(strcmp(ramole_status_str(RAMOLE_ERR_FORMAT), "malformed input") == 0);
    CHECK(strcmp(ramole_status_str((ramole_status)999), "unknown status") == 0);
    rm_status st = rm_err(RAMOLE_ERR_IO, "file %s", "x.bin");
    CHECK(st == RAMOLE_ERR_IO);
    CHECK(strcmp(ramole_last_error(), "file x.bin") == 0);
    rm_err_prefix(st, "loading %d", 3);
    CHECK(strcmp(ramole_last_error(), "loading 3: file x.bin") == 0);
}

TEST(core_alloc_accounting_and_failure_injection) {
    size_t live = rm_alloc_live_bytes();
    char *p = rm_malloc(1000);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & 63) == 0);
    CHECK(rm_alloc_live_bytes() == live + 1000);
    p = rm_realloc(p, 5000);
    CHECK(rm_alloc_live_bytes() == live + 5000);
    rm_free(p);
    CHECK(rm_alloc_live_bytes() == live);
    rm_alloc_fail_after(2);
    void *a = rm_malloc(8), *b = rm_malloc(8), *c = rm_malloc(8);
    rm_alloc_fail_after(0);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c == NULL);
    rm_free(a);
    CHECK(rm_calloc(SIZE_MAX / 2, 4) == NULL);
}

/* Large blocks take the mapped path: zero from rm_calloc, aligned, and
 * their contents survive rm_realloc across the small/large boundary. */
TEST(core_alloc_large_blocks_zeroed_and_reallocated) {
    size_t live = rm_alloc_live_bytes();
    const size_t big = (size_t)9 << 20;
    for (int round = 0; round < 3; round++) { /* freed mappings are reused by the next round */
        unsigned char *z = rm_calloc(big, 1);
        CHECK(z != NULL);
        CHECK(((uintptr_t)z & 63) == 0);
        size_t nonzero = 0;
        for (size_t i = 0; i < big; i += 4093) nonzero += z[i] != 0;
        nonzero += z[big - 1] != 0;
        CHECK(nonzero == 0);
        memset(z, 0xab, big); /* dirty it: a later round must still see zeros */
        rm_free(z);
    }
    unsigned char *p = rm_malloc(100);
    for (int i = 0; i < 100; i++) p[i] = (unsigned char)i;
    p = rm_realloc(p, big);
    CHECK(p != NULL);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= p[i] == (unsigned char)i;
    p[big - 1] = 7;
    p = rm_realloc(p, 50);
    for (int i = 0; i < 50; i++) same &= p[i] == (unsigned char)i;
    CHECK(same);
    CHECK(rm_alloc_live_bytes() == live + 50);
    rm_free(p);
    CHECK(rm_alloc_live_bytes() == live);
}

typedef struct {
    atomic_long sum;
    int64_t n;
} sum_ctx;

static void sum_job(void *ctx, int ith, int nth) {
    sum_ctx *s = ctx;
    int64_t lo, hi;
    rm_split(s->n, ith, nth, &lo, &hi);
    long acc = 0;
    for (int64_t i = lo; i < hi; i++) acc += i;
    atomic_fetch_add(&s->sum, acc);
}

TEST(core_pool_splits_every_row_once) {
    for (int nt = 1; nt <= 4; nt++) {
        rm_pool *pool;
        CHECK_OK(rm_pool_new(nt, &pool));
        for (int rep = 0; rep < 200; rep++) {
            sum_ctx s = {.n = 1 + rep * 37};
            rm_pool_run(pool, sum_job, &s);
            CHECK(atomic_load(&s.sum) == (long)(s.n * (s.n - 1) / 2));
        }
        rm_pool_free(pool);
    }
    rm_pool *bad;
    CHECK_ERR(rm_pool_new(0, &bad), RAMOLE_ERR_INVALID);
}

TEST(core_file_atomic_write_and_map) {
    char *path = rm_path_join(rm_test_tmp_dir(), "core_atomic.bin");
    CHECK_OK(rm_file_write_atomic(path, "hello", 5));
    rm_mapped m;
    CHECK_OK(rm_file_map(path, &m));
    CHECK(m.size == 5 && memcmp(m.data, "hello", 5) == 0);
    rm_file_unmap(&m);
    CHECK_ERR(rm_file_map("/nonexistent/x.bin", &m), RAMOLE_ERR_IO);
    CHECK(strstr(ramole_last_error(), "/nonexistent/x.bin") != NULL);
    rm_free(path);
}

TEST(core_text_printf_grows_and_fails_cleanly) {
    rm_text t = {0};
    for (int i = 0; i < 2000; i++) rm_text_printf(&t, "%d,", i); /* past the first 4096 bytes */
    CHECK(!t.failed && t.s && t.len == strlen(t.s));
    CHECK(!strncmp(t.s, "0,1,2,", 6) && strstr(t.s, ",1999,") && t.s[t.len - 1] == ',');
    rm_free(t.s);
    rm_text u = {0};
    rm_alloc_fail_after(1);
    rm_text_printf(&u, "x%s", "y");
    rm_alloc_fail_after(0);
    rm_text_printf(&u, "z"); /* nothing more after a failure */
    CHECK(u.failed && !u.s && u.len == 0);
}
