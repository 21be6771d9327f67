/*
 * serve.h — `ramole serve`: the OpenAI-compatible HTTP API over one engine
 * and one adapter registry.
 *
 * Threads: libmicrohttpd runs one thread per connection; those threads parse
 * bodies, check keys, resolve and retrieve adapters, and then hand the
 * request to the one scheduler thread, which owns the engine: it submits
 * what the queue holds between steps, runs the steps, and pushes each
 * request's events into that request's own buffer, where the connection
 * thread waits on a condition variable. HTTP threads never run the model's
 * forward for generation. A refresh thread brings the registry's pool up
 * to date on a timer, so other servers' uploads arrive, and a writer
 * thread records answered responses in the registry in batches, so a
 * rating (POST /v1/feedback) reaches any server on the registry.
 *
 * The engine and the registry never include each other: this module wires
 * them. An adapter request resolves a name (or a retrieval hit) through the
 * registry, as the caller's tenant may see it, to the adapter's local file;
 * the engine loads that file through the adapter source below, so one
 * content-addressed file is one cache entry for every tenant using it.
 *
 * Lifetime: rm_server_new borrows the model and the registry, which must
 * outlive the server. rm_server_shutdown stops admitting, lets in-flight
 * requests finish within a bound (then cancels them) and stops every
 * thread; rm_server_free releases the rest.
 */
#ifndef RM_SERVE_H
#define RM_SERVE_H

#include "engine/engine.h"
#include "registry/registry.h"

typedef struct {
    const char *host;        /* address to bind (NULL: 127.0.0.1) */
    int port;                /* 0: any free port (rm_server_port tells which) */
    const char *model_name;  /* the base's id in "model" and /v1/models (NULL: the folder's name) */
    int queue;               /* requests waiting beyond the running ones before 429 (0: 64) */
    size_t max_body;         /* bytes of a JSON body (0: 1 MiB); uploads: max_upload */
    size_t max_upload;       /* bytes of an adapter upload (0: 256 MiB) */
    int timeout_s;           /* idle connection timeout (0: 30 s) */
    int default_top_k;       /* adapters retrieved when a request says nothing (0: 3) */
    double refresh_s;        /* registry refresh period (0: 0.5 s) */
    double deadline_s;       /* a generation's time from admission to its end, else cancelled (0: 600 s) */
    double feedback_ttl_s;   /* how long a response can be rated (0: RM_REG_RESPONSE_TTL, 7 days) */
} rm_server_opts;

typedef struct rm_server rm_server;

/*
 * A server for model m (with a tokenizer) and registry reg (may be NULL:
 * the base alone). The engine is made from ep; its adapter source is set
 * here. Keys: when the registry holds any live key, every route but
 * /health needs one; otherwise the server is open, and refuses to bind an
 * address other than loopback (ERR_INVALID).
 */
rm_status rm_server_new(rm_model *m, rm_registry *reg, const rm_engine_params *ep, const rm_server_opts *o,
                        rm_server **out);
/* Bind and start the threads; ERR_IO naming the address when it cannot bind. */
rm_status rm_server_start(rm_server *s);
/* The bound port (after start). */
int       rm_server_port(const rm_server *s);
/* Whether keys are required (decided at rm_server_new). */
bool      rm_server_keys_required(const rm_server *s);
/*
 * Graceful stop: refuse new generation (503), wait up to grace_s seconds for
 * in-flight requests, cancel what remains, then stop the HTTP and scheduler
 * threads. Call once, from the thread that started the server.
 */
void      rm_server_shutdown(rm_server *s, double grace_s);
void      rm_server_free(rm_server *s); /* shuts down first if needed; NULL is a no-op */

#endif
