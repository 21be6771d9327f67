/*
 * serve_internal.h — the pieces of the server shared by its files:
 * the request object passed between connection and scheduler threads,
 * the scheduler (sched.c) and the metrics (metrics.c).
 */
#ifndef RM_SERVE_INTERNAL_H
#define RM_SERVE_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>

#include "engine/request_json.h"
#include "serve/serve.h"

/* ---- metrics ---------------------------------------------------------------------- */

#define SRV_HIST_BUCKETS 14
typedef struct {
    uint64_t count[SRV_HIST_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t n;
} srv_hist;

typedef enum { SRV_H_TTFT = 0, SRV_H_ITL, SRV_H_REQUEST, SRV_H_RETRIEVAL, SRV_H_COUNT } srv_hist_id;

#define SRV_ROUTES_MAX 64
typedef struct {
    pthread_mutex_t mu;
    struct { char route[48]; int status; uint64_t n; } req[SRV_ROUTES_MAX];
    int n_req;
    uint64_t tokens_in, tokens_out;
    srv_hist h[SRV_H_COUNT];
    int step_sequences_max;     /* the most sequences one engine step gave a token to */
    int step_adapters_max;      /* the most distinct adapters (experts, routers) in one step */
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_destroy(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, const char *route, int status);
void srv_metrics_observe(srv_metrics *m, srv_hist_id h, double seconds);
void srv_metrics_tokens(srv_metrics *m, int in, int out);
/* One engine step ran: it gave a token to `sequences` sequences and used
 * `adapters` distinct adapters; keeps the maxima since the start. */
void srv_metrics_step(srv_metrics *m, int sequences, int adapters);
/* The Prometheus text of m and the engine's snapshot (rm_malloc'd). */
char *srv_metrics_text(srv_metrics *m, const rm_engine_stats *es, int queued, const rm_reg_rating *ratings,
                       int n_ratings);

/* ---- a generation request between threads --------------------------------------- */

typedef enum { SRV_QUEUED = 0, SRV_RUNNING, SRV_REFUSED, SRV_DONE } srv_req_state;

typedef struct srv_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                   /* the connection's and the scheduler's */
    rm_request_spec spec;       /* what the engine runs */
    /* written by the scheduler under mu */
    srv_req_state state;
    int64_t id;                 /* engine id once running */
    rm_status refused;          /* submit's status when REFUSED */
    char *error;                /* refusal or ERROR finish message */
    char *text;                 /* generated text so far */
    size_t len, cap;
    rm_finish_reason finish;
    int n_prompt, n_generated;
    int n_prompt_cached;
    bool lost;                  /* part of the answer could not be kept (out of memory) */
    float gates[RM_LORA_MAX_K];   /* router mode: the mean weights over the answer */
    int n_gates;
    rm_logprob_list lps;        /* each token's log-probabilities, when asked for */
    rm_logprob_list plps;       /* the prompt's, with "echo" (from the first token's event) */
    float *hidden;              /* an embedding request's vector [n_hidden], once DONE */
    int n_hidden;
    double t_submit, t_first, t_last;
    bool cancel;                /* the client went away (set by the connection) */
    struct srv_req *next;       /* the scheduler's queue */
    void *sched;                /* the srv_sched running it (for on_event) */
} srv_req;

srv_req *srv_req_new(void);
void     srv_req_release(srv_req *r);
/* Keep an engine event in r (whose mu the caller holds): its text, its
 * log-probabilities, the counts, and at the finish the reason, the gates,
 * the error and an embedding's vector. When memory fails, the answer is
 * lost rather than cut short: r->lost is set (the return is true the
 * first time, so that the caller cancels the request), and its finish
 * becomes ERROR, whatever the engine reported. */
bool     srv_req_keep(srv_req *r, const rm_engine_event *ev);
/* Why r failed (under its mu): SRV_LOST_MESSAGE, which needs no memory,
 * when its answer was lost, else its refusal or ERROR message (NULL:
 * none). */
#define SRV_LOST_MESSAGE "serve: out of memory keeping the answer; it is not sent cut short"
const char *srv_req_error(const srv_req *r);

/* ---- scheduler ------------------------------------------------------------------ */

typedef struct {
    rm_engine *engine;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_req *head, *tail;       /* waiting for submit */
    int64_t *cancels;           /* engine ids to cancel */
    int n_cancels, cap_cancels;
    int in_flight;              /* queued + running, for admission */
    int n_queued;               /* pushed and not yet taken by the scheduler (under mu) */
    bool quit, cancel_all;
    rm_engine_stats stats;      /* snapshot after each step */
    srv_metrics *metrics;
    int step_sampled;           /* tokens the running step gave out (scheduler thread only) */
    int step_embedded;          /* embeddings the running step finished (scheduler thread only) */
    int64_t n_pushed;           /* requests pushed since the start (under mu) */
} srv_sched;

rm_status srv_sched_start(srv_sched *s, rm_engine *e, srv_metrics *m);
/* Queue r (one reference taken) unless in_flight >= limit: false then. */
bool      srv_sched_push(srv_sched *s, srv_req *r, int limit);
/* The connection is gone: cancel r if it still runs. */
void      srv_sched_cancel(srv_sched *s, srv_req *r);
void      srv_sched_cancel_all(srv_sched *s);
int       srv_sched_in_flight(srv_sched *s);
/* Requests waiting: pushed and not yet submitted, and those the engine
 * holds in its queue (as of the last step). */
int       srv_sched_queued(srv_sched *s);
void      srv_sched_stats(srv_sched *s, rm_engine_stats *out);
void      srv_sched_stop(srv_sched *s);
/*
 * The registry's embedder runner (rm_embed_run_fn, user: the srv_sched):
 * each token list becomes an embedding request of the engine, queued like
 * a generation but outside the admission limit (it serves a request
 * already admitted, or an upload), and the calling thread waits for all of
 * them. The engine runs them as prompt work of its steps, each after the
 * instruction prefix's KV rows once they are kept (embed_shared).
 */
rm_status srv_sched_embed(void *user, int n, const int32_t *const *tokens, const int *n_tokens, const int *from,
                          const int *shared, int layer, float *out);

/* ---- the server ------------------------------------------------------------------ */

/* A response's adapters go to the registry (rm_reg_response), so any server takes its rating. */
_Static_assert(RM_LORA_MAX_K <= RM_REG_RESPONSE_ADAPTERS, "a response's adapters must fit the registry's record");
#define SRV_EXPIRE_PERIOD_S 60.0 /* how often the refresh thread forgets responses past the TTL */

/* ---- the record of responses (record.c) ------------------------------------------------ */

#define SRV_RECORD_WAIT_S 5.0    /* the longest a finished answer waits for its record */
#define SRV_RECORD_QUEUE 512      /* responses queued for the writer; a full queue makes admission wait */
typedef struct {
    rm_registry *reg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rm_reg_response *queue;       /* [SRV_RECORD_QUEUE] */
    int n;
    uint64_t pushed;              /* responses queued so far: the last one's ticket */
    uint64_t written;             /* of those, written (or failed), in queue order */
    bool quit, running;
    pthread_t thread;
} srv_record;

/* Start the writer thread (none when reg is NULL: pushes are then no-ops). */
rm_status srv_record_start(srv_record *w, rm_registry *reg);
/* Queue resp (copied); its ticket for srv_record_wait, 0 when nothing will be written. */
uint64_t  srv_record_push(srv_record *w, const rm_reg_response *resp);
/* Wait until the response of `ticket` is written (or failed), at most max_s seconds. */
void      srv_record_wait(srv_record *w, uint64_t ticket, double max_s);
/* Write what is queued, stop the thread, free the queue. */
void      srv_record_stop(srv_record *w);

typedef struct srv_upload srv_upload;

struct rm_server {
    rm_model *model;
    rm_registry *reg;
    rm_engine *engine;
    rm_server_opts o;
    char *model_name;
    char *host;
    bool keys_required;
    struct MHD_Daemon *http;
    int port;
    srv_sched sched;
    srv_metrics metrics;
    int limit;                  /* in-flight requests admitted */
    volatile bool draining;
    pthread_t refresher;
    bool refreshing;
    pthread_mutex_t quit_mu;
    pthread_cond_t quit_cv;
    bool quit;
    bool started;
    uint64_t next_id;           /* under quit_mu */
    char id_tag[17];            /* random hex: response ids are unique across servers */
    double expired_at;          /* when the refresh thread last expired old responses */
    srv_record record;          /* answered responses on their way to the registry */
};

/* One connection's request: its JSON body, or the upload in progress. */
typedef struct {
    char *body;
    size_t len, cap;
    size_t limit;        /* bytes this route accepts */
    bool too_big;
    bool started;
    srv_upload *upload;
} conn_ctx;

/* Who calls: a key's tenant and role (an open server: the default tenant, admin). */
typedef struct {
    char *tenant;          /* NULL: the default tenant (open server) */
    rm_reg_role role;
} caller;

/* ---- replies: what a route answers, apart from the connection (bodies.c) ----------- */

/* A status and its body: a JSON object, or text/plain. The functions that
 * answer a route (srv_generate_read, srv_json_route, srv_upload_reply,
 * srv_vllm_reply) clear their out reply first, so a caller's may start
 * uninitialised; srv_reply_json and srv_reply_error replace what an
 * initialised reply holds. */
typedef struct {
    int status;
    json_t *json;   /* owned; NULL when text is the body */
    char *text;     /* rm_malloc'd text/plain body, or NULL */
} srv_reply;

/*
 * A choice's OpenAI "logprobs" for tokens [from, to) of l (logprobs_json.c):
 * chat's {"content": [{"token", "logprob", "bytes", "top_logprobs"}],
 * "refusal": null}, or completions' {"tokens", "token_logprobs",
 * "top_logprobs": [{token: logprob}], "text_offset"}, where *offset is the
 * characters before token `from` and is moved past `to`. tok may be NULL.
 */
json_t *srv_logprobs_json(const rm_tok *tok, const rm_logprob_list *l, int from, int to, bool chat, long *offset);

/* Whether s is UTF-8 as JSON strings must be (no overlong forms or surrogates). */
bool srv_utf8_valid(const char *s);
/* Replace each byte of s that is not part of valid UTF-8 by '?'. */
void srv_utf8_scrub(char *s);
/* An OpenAI-style error object {"error": {"message", "type", "param", "code"}};
 * msg is cut at 1023 bytes and made valid UTF-8. */
json_t *error_obj(int status, const char *msg, const char *param, const char *code);
/* Set r to status with error_obj's body (param and code may be NULL). */
void srv_reply_error(srv_reply *r, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Set r to status with obj (a new reference, owned by r from here). */
void srv_reply_json(srv_reply *r, int status, json_t *obj);
void srv_reply_clear(srv_reply *r);

/*
 * A generation request read from its body, before the scheduler runs it:
 * one engine request per choice, each with its spec (one reference) and
 * its response's "lora" object (the adapters chosen by "model" and "lora",
 * resolved in the registry as the caller's tenant sees them). Choices are
 * OpenAI's: completions' "prompt" may list prompts, and "n" asks for that
 * many samples of each; prompt p's sample j is choice p * n + j, sampled
 * with seed + j.
 */
#define SRV_MAX_CHOICES 64

typedef struct {
    srv_req *req[SRV_MAX_CHOICES];
    json_t *lora[SRV_MAX_CHOICES];
    int n_choices;
    int n;                  /* samples per prompt */
    rm_reg_response used;   /* every choice's adapters, for the record of responses */
    bool stream, usage_chunk; /* and whether the stream ends with OpenAI's usage chunk */
} srv_gen;

/* vLLM's tokenizer routes (tokenize_api.c): POST /tokenize and /detokenize
 * bodies into replies, and GET /tokenizer_info's object (NULL without a
 * tokenizer). */
void    srv_tokenize_reply(rm_server *s, const json_t *body, srv_reply *out);
void    srv_detokenize_reply(rm_server *s, const json_t *body, srv_reply *out);
json_t *srv_tokenizer_info(rm_server *s);

/* OpenAI's POST /v1/embeddings with the registry's embedder (embeddings_api.c). */
void srv_embeddings_reply(rm_server *s, const json_t *body, srv_reply *out);

/*
 * The 200 response of a generation whose choices the scheduler runs
 * (gen_response.c): SSE chunks or one JSON object. It takes gen's requests
 * and lora objects, and records the response; NULL when out of memory
 * (the requests are then released).
 */
struct MHD_Response *srv_gen_response(rm_server *s, srv_gen *gen, bool chat);

/*
 * Read the body of /v1/completions (chat false) or /v1/chat/completions as
 * `who` sends it: true with *out ready to submit, or false with the error
 * reply in *err (400 for a bad field, 404 for an unknown model or adapter,
 * 503 while draining). The body is len bytes, not NUL-terminated.
 */
bool srv_generate_read(rm_server *s, const caller *who, bool chat, const char *body, size_t len, srv_gen *out,
                       srv_reply *err);
void srv_gen_clear(srv_gen *g);
/*
 * The reply of a JSON route other than generation — /v1/retrieve,
 * /v1/feedback, /v1/load_lora_adapter, /v1/unload_lora_adapter — to the
 * body (len bytes) that `who` sends; false for another route.
 */
bool srv_json_route(rm_server *s, const caller *who, const char *route, const char *body, size_t len,
                    srv_reply *out);

/* Send r (cleared here); counted in the metrics under route. */
enum MHD_Result send_reply(rm_server *s, struct MHD_Connection *c, const char *route, srv_reply *r);
enum MHD_Result send_text(rm_server *s, struct MHD_Connection *c, const char *route, int status, const char *type,
                          const char *text, size_t len);
/* Send obj (a new reference, freed here). */
enum MHD_Result send_json(rm_server *s, struct MHD_Connection *c, const char *route, int status, json_t *obj);
enum MHD_Result send_error(rm_server *s, struct MHD_Connection *c, const char *route, int status, const char *param,
                           const char *code, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* The HTTP status of a library error. */
int status_of(rm_status st);
/* Check the key for role `need`; false after sending 401 or 403. who->tenant is rm_malloc'd. */
bool authorize(rm_server *s, struct MHD_Connection *c, const char *route, rm_reg_role need, caller *who,
               enum MHD_Result *ret);
const char *tenant_of(const caller *who);
json_t *adapter_json(const rm_reg_adapter *a);

/* ---- the adapter API (adapters_api.c) --------------------------------------------- */

/*
 * An upload in progress: the multipart body (multipart.h) is written, part
 * by part, into a private temporary folder under $TMPDIR, removed by
 * srv_upload_free. content_type is the request's header (may be NULL).
 * NULL when the folder cannot be made.
 */
srv_upload *srv_upload_new(const char *content_type);
/* Feed one piece of the body; a malformed body is answered at the end. */
void srv_upload_feed(srv_upload *u, const char *data, size_t n);
/*
 * The reply to the whole upload as `who` sends it: 201 with the new row,
 * 400 for a malformed body or a missing or bad field, 422 when the files
 * are not an adapter of this base (rm_registry_adapter_add). *name (may be
 * NULL) points at the adapter's name field, valid while u lives.
 */
void srv_upload_reply(rm_server *s, srv_upload *u, const caller *who, srv_reply *out, const char **name);
void srv_upload_free(srv_upload *u);
enum MHD_Result route_upload(rm_server *s, struct MHD_Connection *c, conn_ctx *cx);
/* /v1/adapters/{id}[/approve] with GET, DELETE, POST; NULL route: not ours. */
enum MHD_Result route_adapter_id(rm_server *s, struct MHD_Connection *c, const char *url, const char *method,
                                 bool *handled);
/* vLLM's POST /v1/load_lora_adapter (load) and /v1/unload_lora_adapter. */
void srv_vllm_reply(rm_server *s, const caller *who, bool load, const json_t *body, srv_reply *out);

#endif
