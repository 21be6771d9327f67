/* test_main.c — runner of the C suite (see test.h). */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TESTS 2048

static struct {
    const char *name;
    rm_test_fn fn;
} tests[MAX_TESTS];
static int n_tests;
static int cur_failed;
static const char *cur_name;

void rm_test_register(const char *name, rm_test_fn fn) {
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void rm_test_fail(const char *file, int line, const char *fmt, ...) {
    if (cur_failed < 20) {
        fprintf(stdout, "  %s:%d: [%s] ", file, line, cur_name);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
    }
    cur_failed++;
}

const char *rm_test_data_dir(void) {
    const char *d = getenv("RAMOLE_TEST_DATA");
    return d ? d : "tests";
}

const char *rm_test_tmp_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *b = getenv("RAMOLE_TEST_TMP");
        snprintf(dir, sizeof dir, "%s", b ? b : "build/test-tmp");
        mkdir(dir, 0755);
    }
    return dir;
}

static int cmp_tests(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv) {
    qsort(tests, (size_t)n_tests, sizeof tests[0], cmp_tests);
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a])) want = 1;
        if (!want) continue;
        cur_failed = 0;
        cur_name = tests[i].name;
        tests[i].fn();
        if (cur_failed) {
            printf("FAIL %s (%d checks)\n", tests[i].name, cur_failed);
            failed++;
        } else {
            printf("PASS %s\n", tests[i].name);
            passed++;
        }
        fflush(stdout);
    }
    printf("c suite: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
