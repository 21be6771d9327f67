/*
 * dispatch.c — run-time choice of the kernel variant.
 *
 * cpuid tells what the CPU implements; xgetbv tells whether the OS saves
 * the wide registers (an AVX-capable CPU under an OS that does not enable
 * YMM/ZMM state must not run AVX code). AVX2 here means AVX2 + FMA + F16C;
 * AVX-512 means F + BW + VL + DQ (plus FMA/F16C) with the opmask and ZMM
 * state enabled. The best supported variant is chosen at load time; the
 * environment variable RAMOLE_ISA (scalar|avx2|avx512) can lower it, and
 * rm_isa_set switches it for tests and benchmarks.
 */
#include "kernels/kern_internal.h"

#include <cpuid.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_isa_names[RM_ISA_COUNT] = {"scalar", "avx2", "avx512"};

static const rm_kern_ops *const g_tables[RM_ISA_COUNT] = {
    &rm_kern_ops_scalar, &rm_kern_ops_avx2, &rm_kern_ops_avx512};

static _Atomic(const rm_kern_ops *) g_ops = &rm_kern_ops_scalar;

const char *rm_isa_name(rm_isa isa) {
    return (unsigned)isa < RM_ISA_COUNT ? g_isa_names[isa] : "unknown";
}

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Detected once; cpuid is cheap but there is no reason to repeat it. */
static void isa_detect(bool out[RM_ISA_COUNT]) {
    unsigned a, b, c, d;
    out[RM_ISA_SCALAR] = true;
    out[RM_ISA_AVX2] = out[RM_ISA_AVX512] = false;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave || !avx) return;
    uint64_t xcr0 = xgetbv0();
    bool ymm_os = (xcr0 & 0x6) == 0x6;
    bool zmm_os = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    bool avx2 = b & (1u << 5);
    bool f512 = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    out[RM_ISA_AVX2] = ymm_os && avx2 && fma && f16c;
    out[RM_ISA_AVX512] = out[RM_ISA_AVX2] && zmm_os && f512 && dq && bw && vl;
}

bool rm_isa_supported(rm_isa isa) {
    static bool det[RM_ISA_COUNT];
    static atomic_bool done;
    if ((unsigned)isa >= RM_ISA_COUNT) return false;
    if (!atomic_load_explicit(&done, memory_order_acquire)) {
        isa_detect(det); /* idempotent: racing threads write the same values */
        atomic_store_explicit(&done, true, memory_order_release);
    }
    return det[isa];
}

rm_isa rm_isa_best(void) {
    for (int i = RM_ISA_COUNT - 1; i > 0; i--)
        if (rm_isa_supported((rm_isa)i)) return (rm_isa)i;
    return RM_ISA_SCALAR;
}

rm_isa rm_isa_current(void) { return rm_kern_ops_get()->isa; }

rm_status rm_isa_set(rm_isa isa) {
    if ((unsigned)isa >= RM_ISA_COUNT)
        return rm_err(RAMOLE_ERR_INVALID, "kernels: unknown instruction set %d", (int)isa);
    if (!rm_isa_supported(isa))
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "kernels: this CPU/OS does not support %s", rm_isa_name(isa));
    atomic_store(&g_ops, g_tables[isa]);
    return RAMOLE_OK;
}

const rm_kern_ops *rm_kern_ops_get(void) {
    return atomic_load_explicit(&g_ops, memory_order_relaxed);
}

/* Pick the best variant before main; RAMOLE_ISA may ask for a lower one. */
__attribute__((constructor)) static void isa_init(void) {
    rm_isa isa = rm_isa_best();
    const char *env = getenv("RAMOLE_ISA");
    for (int i = 0; env && i < RM_ISA_COUNT; i++)
        if (strcmp(env, g_isa_names[i]) == 0 && rm_isa_supported((rm_isa)i)) isa = (rm_isa)i;
    atomic_store(&g_ops, g_tables[isa]);
}
