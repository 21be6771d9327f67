/*
 * util.c — the small public helpers of include/ramole.h: threads, buffers,
 * element types and target names.
 *
 * src/api/ is the top layer of the library: it implements the public
 * headers under include/ over every internal module, and nothing inside
 * the library includes it. Each file covers one public header.
 */
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

int ramole_cpu_count(void) { return rm_cpu_count(); }

void ramole_free(void *p) { rm_free(p); }

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
