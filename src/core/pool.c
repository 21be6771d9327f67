/*
 * pool.c — a persistent thread pool for row-split ops.
 *
 * A decode step issues a few hundred small jobs, so waking a worker must be
 * cheap: workers spin on a generation counter for a while after each job
 * and only then sleep on a condition variable. The submitting thread runs
 * share 0 itself and waits for the others on a countdown.
 */
#include "core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define RM_SPIN_ROUNDS 20000

struct rm_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_mutex_t run_mu; /* one job at a time when several owners share the pool */
    pthread_cond_t cv;
    atomic_uint gen;     /* bumped for every job */
    atomic_int pending;  /* workers still running the current job */
    atomic_int sleepers; /* workers waiting on cv */
    atomic_bool stop;
    rm_pool_fn fn;
    void *ctx;
};

typedef struct {
    rm_pool *pool;
    int ith;
} worker_arg;

/* Busy-wait politely: pause at first, then give the core away, so that an
 * oversubscribed machine (more runnable threads than cores) still moves. */
static void relax(int spins) {
    if (spins < 2000) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    rm_free(arg);
    rm_pool *p = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < RM_SPIN_ROUNDS) {
                relax(spins);
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->ctx, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

rm_status rm_pool_new(int nthreads, rm_pool **out) {
    *out = NULL;
    if (nthreads < 1) return rm_err(RAMOLE_ERR_INVALID, "thread pool: %d threads requested (need >= 1)", nthreads);
    rm_pool *p = rm_calloc(1, sizeof *p);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "thread pool: out of memory");
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (nthreads > 1) {
        p->threads = rm_calloc((size_t)nthreads, sizeof *p->threads);
        if (!p->threads) goto nomem;
        for (int i = 1; i < nthreads; i++) {
            worker_arg *wa = rm_malloc(sizeof *wa);
            if (!wa) goto nomem;
            wa->pool = p;
            wa->ith = i;
            if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
                rm_free(wa);
                p->n = i; /* only i-1 workers exist */
                rm_pool_free(p);
                return rm_err(RAMOLE_ERR_INTERNAL, "thread pool: cannot start thread %d", i);
            }
        }
    }
    *out = p;
    return RAMOLE_OK;
nomem:
    rm_pool_free(p);
    return rm_err(RAMOLE_ERR_NOMEM, "thread pool: out of memory");
}

void rm_pool_free(rm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++)
        if (p->threads[i]) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    rm_free(p->threads);
    rm_free(p);
}

int rm_pool_size(const rm_pool *p) { return p ? p->n : 1; }

void rm_pool_run(rm_pool *p, rm_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    for (int spins = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) relax(spins);
    pthread_mutex_unlock(&p->run_mu);
}

int rm_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double rm_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double rm_cpu_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
