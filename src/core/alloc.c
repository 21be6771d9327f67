/*
 * alloc.c — the one allocation wrapper. Each block carries a 64-byte header
 * holding its size and where it came from, so accounting needs no table and
 * the payload stays 64-byte aligned.
 *
 * Large blocks (weights, the KV cache, adapters) are mapped directly from
 * the kernel: their pages are zero and are only faulted in when first
 * written, so rm_calloc of a KV pool sized for every sequence at full
 * context costs nothing until positions are used (a memset would touch it
 * all: gigabytes, seconds of page faults at start-up). They are also
 * marked for transparent huge pages, which cuts the faults of filling them
 * by 512 where the kernel grants them (THP "madvise" mode, Debian's
 * default). Under AddressSanitizer every block comes from malloc, so the
 * sanitizer's redzones and allocation limits (fuzzing) see them all.
 */
#include "core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define RM_ALIGN 64

#if defined(__SANITIZE_ADDRESS__)
#define RM_ALLOC_MAP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define RM_ALLOC_MAP 0
#endif
#endif
#ifndef RM_ALLOC_MAP
#define RM_ALLOC_MAP 1
#endif
/* blocks from this size up are mapped */
#define RM_MAP_MIN ((size_t)4 << 20)

/* the header, in the RM_ALIGN bytes before the payload */
typedef struct {
    size_t size;
    void *base;      /* what to free: the malloc'd block, or NULL when mapped */
} block_head;
_Static_assert(sizeof(block_head) <= RM_ALIGN, "the block header fits before the payload");

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
    if (size > SIZE_MAX - RM_ALIGN) return NULL;
    void *base = NULL;
    uint8_t *p;
    if (RM_ALLOC_MAP && size >= RM_MAP_MIN) {
        size_t len = size + RM_ALIGN;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(m, len, MADV_HUGEPAGE); /* advice only: refused, the block still works */
#endif
        p = (uint8_t *)m + RM_ALIGN;
    } else {
        if (posix_memalign(&base, RM_ALIGN, size + RM_ALIGN) != 0) return NULL;
        p = (uint8_t *)base + RM_ALIGN;
    }
    block_head *h = (block_head *)(p - RM_ALIGN);
    h->size = size;
    h->base = base;
    atomic_fetch_add(&alloc_count, 1);
    account((ptrdiff_t)size);
    return p;
}

static const block_head *head_of(const void *p) { return (const block_head *)((const uint8_t *)p - RM_ALIGN); }

void *rm_calloc(size_t n, size_t size) {
    size_t total;
    if (!rm_mul_ok(n, size, &total)) return NULL;
    void *p = rm_malloc(total);
    if (p && head_of(p)->base) memset(p, 0, total); /* mapped blocks are zero already */
    return p;
}

static size_t block_size(const void *p) { return head_of(p)->size; }

void rm_free(void *p) {
    if (!p) return;
    const block_head *h = head_of(p);
    size_t size = h->size;
    account(-(ptrdiff_t)size);
    if (h->base) free(h->base);
    else munmap((uint8_t *)p - RM_ALIGN, size + RM_ALIGN);
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
