/* error.c — status strings and the per-thread error message. */
#include "core.h"

#include <stdio.h>
#include <string.h>

/* A message longer than the buffer is cut; that is intended. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static const char *const status_strs[] = {
#define RM_STATUS_STR_(name, str) str,
    RAMOLE_STATUS_LIST(RM_STATUS_STR_)
#undef RM_STATUS_STR_
};

const char *ramole_status_str(ramole_status st) {
    if ((int)st < 0 || st >= RAMOLE_STATUS_COUNT_) return "unknown status";
    return status_strs[st];
}

#define RM_ERR_MAX 1024
static _Thread_local char err_msg[RM_ERR_MAX];

const char *ramole_last_error(void) { return err_msg; }

void rm_err_clear(void) { err_msg[0] = 0; }

rm_status rm_err(rm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return st;
}

rm_status rm_err_prefix(rm_status st, const char *fmt, ...) {
    char prefix[RM_ERR_MAX], old[RM_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    if (old[0])
        snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, old);
    else
        snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, ramole_status_str(st));
    return st;
}
