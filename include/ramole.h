/*
 * ramole.h — the public contract of libramole.
 *
 * ramole serves one base language model with an open pool of LoRA adapters.
 * This header is what a program linking libramole may rely on; everything in
 * src/ is internal and may change.
 *
 * Conventions
 *  - One prefix: ramole_. Objects are opaque handles made by ramole_X_open /
 *    ramole_X_new and released by ramole_X_free; every _free accepts NULL.
 *  - Functions that can fail return ramole_status. On failure
 *    ramole_last_error() holds a message naming the file, tensor and problem;
 *    it is per thread and valid until the next failing call on that thread.
 *  - The library never exits the process and never prints except through the
 *    log callback (default: standard error, level from RAMOLE_LOG).
 */
#ifndef RAMOLE_H
#define RAMOLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RAMOLE_VERSION "0.1.0"

/* Status codes: one list makes both the enum and its strings. */
#define RAMOLE_STATUS_LIST(X)                                   \
    X(OK,              "ok")                                     \
    X(ERR_NOMEM,       "out of memory")                          \
    X(ERR_IO,          "input/output error")                     \
    X(ERR_FORMAT,      "malformed input")                        \
    X(ERR_UNSUPPORTED, "unsupported")                            \
    X(ERR_INVALID,     "invalid argument")                       \
    X(ERR_RANGE,       "value out of range")                     \
    X(ERR_NOT_FOUND,   "not found")                              \
    X(ERR_MISMATCH,    "mismatch")                               \
    X(ERR_TOO_SMALL,   "buffer too small")                       \
    X(ERR_INTERNAL,    "internal error")

typedef enum {
#define RAMOLE_STATUS_ENUM_(name, str) RAMOLE_##name,
    RAMOLE_STATUS_LIST(RAMOLE_STATUS_ENUM_)
#undef RAMOLE_STATUS_ENUM_
    RAMOLE_STATUS_COUNT_
} ramole_status;

/* Short fixed name of a status ("malformed input"). */
const char *ramole_status_str(ramole_status st);
/* The detailed message of the last failure on this thread ("" if none). */
const char *ramole_last_error(void);

/* Logging. */
typedef enum {
    RAMOLE_LOG_ERROR = 0,
    RAMOLE_LOG_WARN  = 1,
    RAMOLE_LOG_INFO  = 2,
    RAMOLE_LOG_DEBUG = 3,
} ramole_log_level;
typedef void (*ramole_log_fn)(ramole_log_level level, const char *msg, void *user);
/* Messages above `level` are dropped. fn NULL restores the stderr logger. */
void ramole_log_set(ramole_log_level level, ramole_log_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_H */
