/*
 * core.h — what every module of ramole stands on: errors with context,
 * logging, accounted allocation, the thread pool, read-only file maps.
 *
 * Errors: a failing function calls rm_err(status, fmt, ...) once, at the
 * place that knows the file/tensor/offset, and returns its result; callers
 * pass the status up unchanged (or add context with rm_err_prefix).
 */
#ifndef RM_CORE_H
#define RM_CORE_H

#include "ramole.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef ramole_status rm_status;

#define RM_OK RAMOLE_OK

/* ---- errors ------------------------------------------------------------ */

/* Record a formatted message for this thread and return `st`. */
rm_status rm_err(rm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend "prefix: " to the current message; returns `st`. */
rm_status rm_err_prefix(rm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rm_err_clear(void);

/* Evaluate `expr`; on failure return its status from the current function. */
#define RM_TRY(expr)                           \
    do {                                       \
        rm_status rm_try_st_ = (expr);         \
        if (rm_try_st_ != RAMOLE_OK) return rm_try_st_; \
    } while (0)

/* ---- logging ----------------------------------------------------------- */

void rm_log(ramole_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool rm_log_enabled(ramole_log_level level);
#define rm_log_error(...) rm_log(RAMOLE_LOG_ERROR, __VA_ARGS__)
#define rm_log_warn(...)  rm_log(RAMOLE_LOG_WARN, __VA_ARGS__)
#define rm_log_info(...)  rm_log(RAMOLE_LOG_INFO, __VA_ARGS__)
#define rm_log_debug(...) rm_log(RAMOLE_LOG_DEBUG, __VA_ARGS__)

/* ---- allocation -------------------------------------------------------- */

/*
 * Every heap allocation of the library goes through these. Blocks are
 * 64-byte aligned (SIMD-friendly); rm_free(NULL) is a no-op. Accounting
 * counts live bytes and the peak. rm_alloc_fail_after(n) makes the n-th
 * allocation from now (1-based) and all later ones fail, for tests that walk
 * every failure point; n = 0 turns injection off.
 */
void *rm_malloc(size_t size);
void *rm_calloc(size_t n, size_t size);
void *rm_realloc(void *p, size_t size);
void  rm_free(void *p);
char *rm_strdup(const char *s);
char *rm_strndup(const char *s, size_t n);
/* printf into a fresh rm_malloc'd string (NULL on failure). */
char *rm_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A growing text: rm_text_printf appends printf output. After an allocation
 * fails it appends nothing more and `failed` stays set. s is NUL-terminated
 * once anything was appended (NULL before); the caller rm_frees it. */
typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} rm_text;
void rm_text_printf(rm_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

size_t rm_alloc_live_bytes(void);
size_t rm_alloc_peak_bytes(void);
size_t rm_alloc_count(void);
void   rm_alloc_fail_after(size_t n);
/* Start a measurement: the peak becomes the live bytes now and the largest
 * request is forgotten. rm_alloc_largest is the largest single size asked
 * for since (granted or not): tests use both to show that a small file
 * claiming huge sizes never drives a big allocation. */
void   rm_alloc_mark(void);
size_t rm_alloc_largest(void);

/* Overflow-checked size arithmetic: false on overflow. */
static inline bool rm_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool rm_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- thread pool ------------------------------------------------------- */

/*
 * A persistent pool of nthreads workers (the calling thread is worker 0).
 * rm_pool_run calls fn(ctx, ith, nth) once for every ith in [0, nth) and
 * returns when all are done. Ops split their rows by (ith, nth) themselves.
 * Workers spin briefly between jobs (decode issues many small jobs), then
 * sleep. Several owners may share one pool (an engine's forward and its
 * embedder): rm_pool_run runs one job at a time and makes other submitters
 * wait; a job must not submit to its own pool.
 */
typedef struct rm_pool rm_pool;
typedef void (*rm_pool_fn)(void *ctx, int ith, int nth);

rm_status rm_pool_new(int nthreads, rm_pool **out);
void      rm_pool_free(rm_pool *pool);
int       rm_pool_size(const rm_pool *pool);
/* pool may be NULL: fn(ctx, 0, 1) runs on the caller. */
void      rm_pool_run(rm_pool *pool, rm_pool_fn fn, void *ctx);

/* Split [0, n) into nth near-equal chunks; chunk ith is [*lo, *hi). */
static inline void rm_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

/* Number of online CPUs (at least 1). */
int rm_cpu_count(void);

/* ---- files ------------------------------------------------------------- */

/* A read-only memory map of a whole file. Valid until rm_file_unmap. */
typedef struct {
    const uint8_t *data;
    size_t size;
    char *path; /* rm_malloc'd copy, for error messages */
} rm_mapped;

rm_status rm_file_map(const char *path, rm_mapped *out);
void      rm_file_unmap(rm_mapped *m);
/* Drop the resident pages lying wholly inside [p, p + n) of a read-only map
 * (rm_file_map): the bytes stay readable and are read from the file again
 * when touched. For a caller that keeps the data in another form. */
void      rm_file_map_release(const void *p, size_t n);
/* Read a whole file into a NUL-terminated rm_malloc'd buffer. */
rm_status rm_file_read(const char *path, char **out, size_t *size);
bool      rm_file_exists(const char *path);
bool      rm_dir_exists(const char *path);
/* Join a directory and a file name into a fresh string. */
char     *rm_path_join(const char *dir, const char *name);
/*
 * Write a file atomically: data goes to "path.tmp.PID", is fsync'd, then
 * renamed over path, so an existing file is never left half-written.
 */
rm_status rm_file_write_atomic(const char *path, const void *data, size_t size);

/* Monotonic time in seconds. */
double rm_time_now(void);
/* CPU seconds this process has used, all its threads (benchmarks: a figure
 * well below wall x threads means other processes held the CPU). */
double rm_cpu_time_now(void);


/* ---- random numbers ------------------------------------------------------ */

/* splitmix64: small, well mixed, reproducible for a seed. */
static inline uint64_t rm_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) with 53 bits. */
static inline double rm_rng_uniform(uint64_t *state) {
    return (double)(rm_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}
/* n values uniform in [-a, a) with a = std*sqrt(3), i.e. standard deviation std. */
void rm_rng_fill_uniform(float *x, size_t n, float std, uint64_t *state);

/* ---- JSON ------------------------------------------------------------------ */

/* Write a jansson value (json_t *) as text with a final newline, atomically;
 * `flags` are json_dumps flags. */
rm_status rm_json_write_atomic(const char *path, const void *json, size_t flags);

/*
 * Lines of a text (JSONL), blank ones (spaces, tabs, CR only) skipped: fn
 * gets each other line (not NUL-terminated, without its newline) and its
 * 1-based number. The first failure stops the walk; its message gets
 * "name:line: " in front.
 */
typedef rm_status (*rm_line_fn)(const char *s, size_t n, int line, void *ctx);
rm_status rm_lines_each(const char *text, size_t len, const char *name, rm_line_fn fn, void *ctx);

#endif /* RM_CORE_H */
