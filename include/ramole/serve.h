/*
 * ramole/serve.h — the OpenAI-compatible HTTP server (`ramole serve`) as
 * one call: open a server over a model and an adapter registry, ask where
 * it listens, stop it gracefully. Included by ramole.h.
 */
#ifndef RAMOLE_SERVE_H
#define RAMOLE_SERVE_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds a response can be rated through /v1/feedback, by default. */
#define RAMOLE_FEEDBACK_TTL (7 * 86400)

typedef struct {
    const char *model;        /* the base: HF folder or GGUF file (required) */
    const char *registry;     /* registry URL; NULL: $RAMOLE_REGISTRY, else the user's data folder */
    int no_registry;          /* serve the base alone, with no registry */
    const char *host;         /* address to bind (NULL: 127.0.0.1) */
    int port;                 /* 0: any free port (ramole_server_port tells which) */
    const char *model_name;   /* the base's id in "model" and /v1/models (NULL: the folder's name) */
    int n_threads;            /* 0: every core */
    int max_seqs;             /* requests running at once (0: 16) */
    int n_ctx;                /* positions one request may reach (0: the model's) */
    ramole_kv_type kv_type;
    int prefill_tokens;       /* as ramole_engine_params.prefill_tokens (0: as many as it decodes) */
    int prefix_cache_mib;     /* as ramole_engine_params.prefix_cache_mib (0: 64 MiB; < 0: none) */
    int queue;                /* requests waiting beyond the running ones before 429 (0: 64) */
    size_t max_body;          /* bytes of a JSON body (0: 1 MiB) */
    int timeout_s;            /* idle connection timeout (0: 30 s) */
    int default_top_k;        /* adapters retrieved when a request says nothing (0: 3) */
    double deadline_s;        /* a generation's time from admission to its end (0: 600 s) */
    double feedback_ttl_s;    /* how long a response can be rated (0: RAMOLE_FEEDBACK_TTL) */
} ramole_serve_options;

/*
 * A running server: it owns its model, registry and engine. Valid until
 * ramole_server_free. Signals are the caller's business: block SIGTERM and
 * SIGINT before ramole_server_open if another thread should wait for them
 * (the server's threads inherit the mask).
 */
typedef struct ramole_server ramole_server;

/*
 * Open the model and registry of o and start serving (bound, threads
 * running). Keys: when the registry holds a live key every route but
 * /health needs one; otherwise the server runs open and refuses an address
 * other than loopback (RAMOLE_ERR_INVALID). RAMOLE_ERR_IO names the address
 * it cannot bind; model and registry errors name their file.
 */
ramole_status ramole_server_open(const ramole_serve_options *o, ramole_server **out);
/* The bound port. */
int ramole_server_port(const ramole_server *s);
/* The registry's URL, or NULL when serving without one. */
const char *ramole_server_registry_url(const ramole_server *s);
/* Active adapters in the registry when the server started (0 without one). */
int ramole_server_active_adapters(const ramole_server *s);
/* Whether requests need an API key. */
int ramole_server_keys_required(const ramole_server *s);
/* Graceful stop: refuse new generation (503), wait up to grace_s seconds
 * for requests in flight, cancel what remains, stop every thread. Call
 * once, from the thread that opened the server. */
void ramole_server_shutdown(ramole_server *s, double grace_s);
/* Shut down first if needed; NULL is a no-op. */
void ramole_server_free(ramole_server *s);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_SERVE_H */
