/*
 * alloc.c — the one allocation wrapper. Each block carries a 64-byte header
 * holding its size, so accounting needs no table and the payload stays
 * 64-byte aligned.
 */
#include "core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RM_ALIGN 64

static atomic_size_t live_bytes, peak_bytes, alloc_count, largest_ask;
static atomic_size_t fail_countdown; /* 0: off; k: the k-th next alloc fails */
static atomic_bool fail_armed;

size_t rm_alloc_live_bytes(void) { return atomic_load(&live_bytes); }
size_t rm_alloc_peak_bytes(void) { return atomic_load(&peak_bytes); }
size_t rm_alloc_count(void) { return atomic_load(&alloc_count); }
size_t rm_alloc_largest(void) { return atomic_load(&largest_ask); }

void rm_alloc_mark(void) {
    atomic_store(&peak_bytes, atomic_load(&live_bytes));
    atomic_store(&largest_ask, 0);
}

void rm_alloc_fail_after(size_t n) {
    atomic_store(&fail_countdown, n);
    atomic_store(&fail_armed, n != 0);
}

static bool should_fail(void) {
    if (!atomic_load(&fail_armed)) return false;
    size_t c = atomic_load(&fail_countdown);
    if (c <= 1) {
        atomic_store(&fail_countdown, 0);
        return true; /* stays armed: every later allocation fails too */
    }
    atomic_fetch_sub(&fail_countdown, 1);
    return false;
}

static void account(ptrdiff_t delta) {
    size_t now = atomic_fetch_add(&live_bytes, (size_t)delta) + (size_t)delta;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {
    }
}

void *rm_malloc(size_t size) {
    size_t largest = atomic_load(&largest_ask);
    while (size > largest && !atomic_compare_exchange_weak(&largest_ask, &largest, size)) {
    }
    if (should_fail()) return NULL;
    void *base;
    if (size > SIZE_MAX - RM_ALIGN) return NULL;
    if (posix_memalign(&base, RM_ALIGN, size + RM_ALIGN) != 0) return NULL;
    *(size_t *)base = size;
    atomic_fetch_add(&alloc_count, 1);
    account((ptrdiff_t)size);
    return (uint8_t *)base + RM_ALIGN;
}

void *rm_calloc(size_t n, size_t size) {
    size_t total;
    if (!rm_mul_ok(n, size, &total)) return NULL;
    void *p = rm_malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

static size_t block_size(const void *p) { return *(const size_t *)((const uint8_t *)p - RM_ALIGN); }

void rm_free(void *p) {
    if (!p) return;
    account(-(ptrdiff_t)block_size(p));
    free((uint8_t *)p - RM_ALIGN);
}

void *rm_realloc(void *p, size_t size) {
    if (!p) return rm_malloc(size);
    size_t old = block_size(p);
    void *q = rm_malloc(size);
    if (!q) return NULL;
    memcpy(q, p, old < size ? old : size);
    rm_free(p);
    return q;
}

char *rm_strndup(const char *s, size_t n) {
    char *d = rm_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *rm_strdup(const char *s) { return rm_strndup(s, strlen(s)); }

void rm_text_printf(rm_text *t, const char *fmt, ...) {
    if (t->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *s = rm_realloc(t->s, cap);
        if (!s) {
            t->failed = true;
            return;
        }
        t->s = s, t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

char *rm_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = rm_malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
