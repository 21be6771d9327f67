/*
 * util.c — the small public helpers of include/ramole.h: threads, buffers,
 * element types and target names.
 *
 * src/api/ is the top layer of the library: it implements the public
 * headers under include/ over every internal module, and nothing inside
 * the library includes it. Each file covers one public header.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/targets.h"

_Static_assert((int)RAMOLE_TYPE_Q6_K == (int)RM_TYPE_Q6_K && RAMOLE_TYPE_Q6_K + 1 == RM_TYPE_COUNT,
               "public and internal element types must agree");
_Static_assert(RAMOLE_PLAN_Q4_K_M == RM_MODEL_PLAN_Q4_K_M, "the Q4_K_M plan has one value");
_Static_assert((int)RAMOLE_TARGET_COUNT == (int)RM_TARGET_COUNT && (int)RAMOLE_TARGET_DOWN == (int)RM_TARGET_DOWN,
               "public and internal targets must agree");

ramole_status ramole_error_set(ramole_status st, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rm_err(st, "%s", msg);
}

int ramole_cpu_count(void) { return rm_cpu_count(); }

double ramole_time_now(void) { return rm_time_now(); }

void ramole_free(void *p) { rm_free(p); }

ramole_status ramole_file_read(const char *path, char **out, size_t *size) { return rm_file_read(path, out, size); }

ramole_status ramole_file_write_atomic(const char *path, const void *data, size_t size) {
    return rm_file_write_atomic(path, data, size);
}

ramole_status ramole_lines_each(const char *text, size_t len, const char *name, ramole_line_fn fn, void *user) {
    return rm_lines_each(text, len, name, fn, user); /* one signature under two names */
}

const char *ramole_type_name(int t) {
    if (t == RAMOLE_PLAN_Q4_K_M) return "q4_k_m";
    return rm_type_name((rm_type)t);
}

int ramole_type_from_name(const char *s, ramole_type *out) {
    rm_type t;
    if (!rm_type_from_name(s, &t)) return 0;
    *out = (ramole_type)t;
    return 1;
}

int ramole_type_is_quant(ramole_type t) { return rm_type_is_quant((rm_type)t); }

int ramole_target_from_name(const char *s, ramole_target *out) {
    rm_target t;
    if (!rm_target_from_name(s, &t)) return 0;
    *out = (ramole_target)t;
    return 1;
}

const char *ramole_target_name(ramole_target t) { return rm_target_hf_name((rm_target)t); }
