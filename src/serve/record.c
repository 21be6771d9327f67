/*
 * record.c — the server's record of answered responses in the registry,
 * so that a rating reaches any server (rm_registry_response_add).
 *
 * Connection threads queue a response when it is admitted and go on; one
 * writer thread takes everything queued and writes it in one transaction
 * (a group commit: one fsync for many answers, and the registry's lock
 * held once per batch rather than once per answer). A response's final
 * bytes wait for its batch (srv_record_wait), so a client that has the
 * whole answer can rate it through any server. A failed write is logged
 * and costs only those responses' ratings.
 */
#include <string.h>
#include <time.h>

#include "serve/serve_internal.h"

static void *record_main(void *arg) {
    srv_record *w = arg;
    rm_reg_response *batch = rm_malloc(SRV_RECORD_QUEUE * sizeof *batch);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->n && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->n) break; /* quit with nothing left */
        int n = w->n;
        if (batch) memcpy(batch, w->queue, (size_t)n * sizeof *batch);
        w->n = 0;
        pthread_cond_broadcast(&w->cv); /* room in the queue */
        pthread_mutex_unlock(&w->mu);
        rm_status st = batch ? rm_registry_response_add(w->reg, batch, n) : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        if (st != RAMOLE_OK)
            rm_log_warn("serve: %d responses are not recorded for feedback: %s", n, ramole_last_error());
        pthread_mutex_lock(&w->mu);
        w->written += (uint64_t)n;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    rm_free(batch);
    return NULL;
}

rm_status srv_record_start(srv_record *w, rm_registry *reg) {
    memset(w, 0, sizeof *w);
    w->reg = reg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (!reg) return RAMOLE_OK;
    if (!(w->queue = rm_malloc(SRV_RECORD_QUEUE * sizeof *w->queue))) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (pthread_create(&w->thread, NULL, record_main, w) != 0)
        return rm_err(RAMOLE_ERR_IO, "serve: cannot start the response writer thread");
    w->running = true;
    return RAMOLE_OK;
}

uint64_t srv_record_push(srv_record *w, const rm_reg_response *resp) {
    if (!w->running) return 0;
    pthread_mutex_lock(&w->mu);
    while (w->n == SRV_RECORD_QUEUE && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
    uint64_t ticket = 0;
    if (!w->quit) {
        w->queue[w->n++] = *resp;
        ticket = ++w->pushed; /* the writer takes the queue whole and in order */
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return ticket;
}

void srv_record_wait(srv_record *w, uint64_t ticket, double max_s) {
    if (!ticket) return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)((max_s - (long)max_s) * 1e9);
    until.tv_sec += (time_t)max_s + ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&w->mu);
    while (w->written < ticket)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0) break;
    pthread_mutex_unlock(&w->mu);
}

void srv_record_stop(srv_record *w) {
    if (w->running) {
        pthread_mutex_lock(&w->mu);
        w->quit = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL); /* writes what is queued first */
        w->running = false;
    }
    rm_free(w->queue);
    w->queue = NULL;
}
