/*
 * test.h — the tiny test framework of ramole's C suite.
 *
 *   TEST(kernels_matmul_f16) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-5); }
 *
 * Tests register themselves; build/ramole_tests [FILTER...] runs those whose
 * name contains any FILTER and prints "PASS name" or "FAIL name" per test.
 * A failed CHECK records file:line and the test goes on, so one run shows
 * every broken check. tests/run.sh counts the lines across all suites.
 */
#ifndef RM_TEST_H
#define RM_TEST_H

#include <math.h>
#include <stdio.h>

#include "ramole.h"

typedef void (*rm_test_fn)(void);
void rm_test_register(const char *name, rm_test_fn fn);
void rm_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Directory holding committed test data (tests/), and a scratch directory. */
const char *rm_test_data_dir(void);
const char *rm_test_tmp_dir(void);

#define TEST(name)                                                              \
    static void name(void);                                                     \
    __attribute__((constructor)) static void rm_test_reg_##name(void) {         \
        rm_test_register(#name, name);                                          \
    }                                                                           \
    static void name(void)

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) rm_test_fail(__FILE__, __LINE__, "%s", #cond);             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond)) rm_test_fail(__FILE__, __LINE__, __VA_ARGS__);             \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                   \
    do {                                                                        \
        double rm_a_ = (double)(a), rm_b_ = (double)(b);                        \
        if (!(fabs(rm_a_ - rm_b_) <= (tol)))                                    \
            rm_test_fail(__FILE__, __LINE__, "%s = %g, %s = %g, tol %g", #a,    \
                         rm_a_, #b, rm_b_, (double)(tol));                      \
    } while (0)

/* expr must return RAMOLE_OK; otherwise report the library's message. */
#define CHECK_OK(expr)                                                          \
    do {                                                                        \
        ramole_status rm_st_ = (expr);                                          \
        if (rm_st_ != RAMOLE_OK)                                                \
            rm_test_fail(__FILE__, __LINE__, "%s -> %s: %s", #expr,             \
                         ramole_status_str(rm_st_), ramole_last_error());       \
    } while (0)

/* expr must fail with status st. */
#define CHECK_ERR(expr, st)                                                     \
    do {                                                                        \
        ramole_status rm_st_ = (expr);                                          \
        if (rm_st_ != (st))                                                     \
            rm_test_fail(__FILE__, __LINE__, "%s -> %s (want %s): %s", #expr,   \
                         ramole_status_str(rm_st_), ramole_status_str(st),      \
                         ramole_last_error());                                  \
    } while (0)

#endif
