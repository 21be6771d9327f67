/* log.c — leveled logging through one replaceable callback. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_level = -1; /* -1: read RAMOLE_LOG on first use */
static ramole_log_fn log_fn;
static void *log_user;

static int level_from_env(void) {
    const char *e = getenv("RAMOLE_LOG");
    if (!e) return RAMOLE_LOG_WARN;
    if (!strcmp(e, "error")) return RAMOLE_LOG_ERROR;
    if (!strcmp(e, "warn")) return RAMOLE_LOG_WARN;
    if (!strcmp(e, "info")) return RAMOLE_LOG_INFO;
    if (!strcmp(e, "debug")) return RAMOLE_LOG_DEBUG;
    return RAMOLE_LOG_WARN;
}

void ramole_log_set(ramole_log_level level, ramole_log_fn fn, void *user) {
    log_level = level;
    log_fn = fn;
    log_user = user;
}

bool rm_log_enabled(ramole_log_level level) {
    if (log_level < 0) log_level = level_from_env();
    return (int)level <= log_level;
}

void rm_log(ramole_log_level level, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!rm_log_enabled(level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn)
        log_fn(level, msg, log_user);
    else
        fprintf(stderr, "ramole %s: %s\n", names[level], msg);
}
