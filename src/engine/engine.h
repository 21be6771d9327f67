/*
 * engine.h — many concurrent generation requests over one model.
 *
 * The engine is the layer that `ramole generate`, `ramole batch`, the server
 * and the evaluation all drive. It owns one inference context (one thread
 * pool, the paged KV cache), the LoRA state of its sequence slots, and an
 * adapter cache. Callers submit requests and call rm_engine_step until
 * nothing is pending; each step runs one batched forward that mixes the
 * decode tokens of running sequences with chunks of prompts still in
 * prefill (continuous batching with chunked prefill), within a token budget.
 *
 * Requests report through their callback, from inside rm_engine_step (or
 * rm_engine_cancel): one event per generated token with its new text, in
 * whole UTF-8 characters; the last event carries the finish reason (cancel
 * and error finish with an event of their own, without a token). A
 * callback must not call back into the engine (submit, cancel, step): it
 * runs in the middle of a step. A request that fails validation is refused
 * by rm_engine_submit alone; the others go on.
 *
 * Memory: a request that cannot get KV blocks waits; when running
 * sequences need blocks that are not there, the newest one is preempted
 * (its blocks freed) and later recomputed from its prompt and the tokens it
 * had generated, so its output does not change.
 *
 * Prefix cache: a request that leaves its slot (finished, cancelled or
 * preempted) leaves a copy of its KV rows behind, within
 * prefix_cache_mib. A request admitted later under the same composition
 * (as far as its mode reads it: the adapters as loaded, explicit
 * weights, the router, retrieval scores under a prior) starts after the
 * longest run of leading tokens it shares with such a copy, at least
 * RM_ENGINE_PREFIX_MIN tokens: the next turn of a chat, another
 * continuation of one context, a system prompt every request repeats. A
 * request that shares such a run with an older running one instead
 * waits until that one has computed the run and copies it: requests sent
 * together compute their common start once. Twins (the same prompt and
 * composition, the n samples of one prompt) always share so, also
 * without the prefix cache. A request that records its prompt's
 * log-probabilities takes rows only with the log-probabilities recorded
 * beside them (kept, or of a running request that records them too, as
 * many alternatives or more): scoring continuations of one context, as
 * evaluation harnesses do, computes the context once. Not for embeddings
 * (they keep their instruction apart) or routers that pool their gates
 * over the prompt (the slot sums them).
 *
 * Threads: one thread drives an engine (submit, cancel, step, free); the
 * forward itself runs on the engine's pool. rm_engine_preload,
 * rm_engine_hold_free and rm_engine_drop_adapter may be called from any
 * thread, while the driver steps.
 */
#ifndef RM_ENGINE_H
#define RM_ENGINE_H

#include "engine/adapter_cache.h"
#include "engine/grammar.h"
#include "tokenizer/tokenizer.h"

typedef struct rm_engine rm_engine;

/* Prompt tokens a step may add to its decodes whatever their number: up to
 * about this many rows a matrix product still costs what reading the
 * weights costs (the forward switches to GEMM at 32 rows). */
#define RM_ENGINE_PREFILL_MIN 32

/* Leading tokens a request must share with kept rows to start after them:
 * below this, a copy saves too little to be worth a lookup's hit. */
#define RM_ENGINE_PREFIX_MIN 16

typedef struct {
    int n_threads;        /* 0: every core */
    int max_seqs;         /* sequences running at once (0: 16) */
    int n_ctx;            /* positions one sequence may reach (0: the model's, at most 4096) */
    int step_tokens;      /* token budget of one step (0: 512) */
    int prefill_tokens;   /* prompt tokens a step may carry while sequences decode: 0 (default)
                           * as many as it decodes, at least RM_ENGINE_PREFILL_MIN, so that a
                           * step costs each stream at most about two decode steps; < 0 no
                           * limit beyond step_tokens (throughput first: offline batches) */
    int prompt_rows;      /* prompt rows whose log-probabilities one step computes (0: as
                           * RM_ENGINE_PROMPT_LOGITS_BYTES of logits hold, at least
                           * RM_ENGINE_PROMPT_ROWS_MIN, at most step_tokens) */
    int kv_blocks;        /* KV pool (0: enough for max_seqs sequences of n_ctx, at most half
                           * the machine's memory) */
    int kv_block;         /* positions per block (0: RM_KV_BLOCK_DEFAULT) */
    rm_type kv_type;      /* RM_TYPE_F32 (default) or RM_TYPE_F16 */
    int max_adapters;     /* adapters one request may compose (0: 4) */
    int max_rank;         /* largest adapter rank accepted (0: RM_LORA_MAX_RANK); buffers follow
                           * the largest rank met so far, not this limit */
    size_t adapter_cache_bytes; /* adapters kept beyond those in use (0: a quarter of the
                                 * machine's memory, at most 8 GiB): a pool that does not
                                 * fit reloads adapters from disk between requests */
    rm_type adapter_type; /* adapters stored as f32 (default), f16 or bf16 */
    int prefix_cache_mib; /* KV rows of finished generations kept for later requests that begin
                           * with the same tokens under the same composition (0: 64 MiB; < 0:
                           * none; rm_engine_stats.prefix_cache_*) */
    rm_adapter_source source;   /* load NULL: adapter names are paths */
} rm_engine_params;

typedef enum {
    RM_FINISH_NONE = 0,   /* still running (a text event) */
    RM_FINISH_STOP,       /* a stop string */
    RM_FINISH_EOS,        /* an end-of-generation token */
    RM_FINISH_LENGTH,     /* max_tokens, or the context is full */
    RM_FINISH_CANCELLED,
    RM_FINISH_ERROR,
    RM_FINISH_COUNT
} rm_finish_reason;

const char *rm_finish_reason_name(rm_finish_reason r); /* "stop", "eos", "length", ... */

/* The most alternatives a token's log-probabilities list (vLLM's and
 * OpenAI's chat limit). */
#define RM_MAX_TOP_LOGPROBS 20
/* Rows of prompt log-probabilities a step may compute beyond one per
 * sequence (rm_engine_params.prompt_rows): by default as many as 32 MiB of
 * logits hold, at least 64 and at most a step's tokens. A longer prompt
 * takes several steps. */
#define RM_ENGINE_PROMPT_ROWS_MIN 64
#define RM_ENGINE_PROMPT_LOGITS_BYTES ((size_t)32 << 20)

/* A generation's log-probabilities, collected from its events for a reply
 * (the server's responses, `ramole batch`'s results; logprob_list.c), or a
 * prompt's (rm_engine_event.prompt_logprobs). */
typedef struct {
    int n, cap;
    int n_top;               /* alternatives per token, the same for all */
    int32_t *ids;            /* [n] the tokens */
    float *lp;               /* [n] their log-probabilities */
    rm_token_logprob *top;   /* [n * n_top] each token's alternatives, most likely first */
} rm_logprob_list;

typedef struct {
    int64_t id;
    rm_finish_reason finish;  /* NONE for a text event */
    int32_t token;            /* the token just generated; -1 when finished by cancel or error */
    const char *text;         /* new text (may be empty); valid during the callback */
    size_t len;
    const char *error;        /* finish ERROR: the message */
    int n_prompt;             /* prompt tokens */
    int n_prompt_cached;      /* of them, those it did not compute: rows copied from a kept
                               * prefix, a running request or a twin when it was first admitted */
    int n_generated;          /* tokens generated so far */
    /* the finish event of a router-mode request: the router's weight of each
     * expert (in the request's order), the mean over the modules and the
     * answer's positions; NULL otherwise */
    const float *gates;
    int n_gates;
    /* the finish event of an embedding request: the pooled hidden state
     * [n_hidden] (the model's hidden size); NULL otherwise */
    const float *hidden;
    int n_hidden;
    /* a request that asked for log-probabilities, with a token: the
     * token's log-probability under the model's raw distribution (its
     * logits' log-softmax, before penalties and temperature, as vLLM
     * reports by default) and the n_top most likely tokens, most likely
     * first (ties: lower id first); top NULL otherwise */
    float logprob;
    const rm_token_logprob *top;
    int n_top;
    /* the first token's event of a request with prompt_logprobs (its
     * finish event when prompt_only): each prompt token's log-probability
     * given those before it (the first's is NaN: nothing comes before it;
     * its alternatives are zero) */
    const rm_logprob_list *prompt_logprobs;
} rm_engine_event;

/* Append one token: its id, log-probability and n_top alternatives (the
 * list's count once it holds any; top may be NULL for zeros). */
rm_status rm_logprob_list_add(rm_logprob_list *l, int32_t id, float lp, const rm_token_logprob *top, int n_top);
/* Append ev's token when it carries log-probabilities (otherwise nothing). */
rm_status rm_logprob_list_push(rm_logprob_list *l, const rm_engine_event *ev);
/* dst (empty) as a copy of src. */
rm_status rm_logprob_list_copy(rm_logprob_list *dst, const rm_logprob_list *src);
/* dst (empty) as a copy of src's first n tokens (n <= src->n), each with
 * its first n_top alternatives (n_top <= src->n_top): what a request
 * asking for fewer would have recorded, since they are sorted. */
rm_status rm_logprob_list_copy_head(rm_logprob_list *dst, const rm_logprob_list *src, int n, int n_top);
void      rm_logprob_list_free(rm_logprob_list *l);

typedef void (*rm_engine_event_fn)(const rm_engine_event *ev, void *user);

typedef struct {
    /* the prompt: exactly one of token ids, text (encoded with the
     * tokenizer's special tokens, as `generate -p` does), or chat messages
     * (through the model's chat template, with the assistant header) */
    const int32_t *tokens;
    int n_tokens;
    const char *prompt;
    const rm_chat_msg *messages;
    int n_messages;
    const char *const *tools; /* with messages: tools offered, as the chat template's tojson
                               * writes them (tool_calls.h), for templates that render tools */
    int n_tools;
    bool no_thinking;         /* with messages: chat_template_kwargs {"enable_thinking": false} */

    rm_sampler_params sampling;
    int max_tokens;           /* 0: until the context is full */
    const char *const *stop;  /* stop strings (copied) */
    int n_stop;
    bool ignore_eos;
    const char *json_schema;  /* a response format: a JSON Schema (text) the answer must satisfy, in
                               * json_schema.h's subset ("{\"type\": \"object\"}": any object),
                               * checked at submit; tokens it does not allow are never sampled,
                               * and the answer finishes with STOP as soon as its value is
                               * complete (or at an end token where it may end). NULL: free text */
    const char *grammar;      /* or a grammar in llama.cpp's GBNF (gbnf.h) the answer follows from
                               * its rule root, alike; at most one of the two */
    rm_grammar *format;       /* or either one compiled already (the engine keeps a reference);
                               * when given, json_schema and grammar are not read: a request
                               * parsed on another thread (request_json.h) spares the driving
                               * thread the compile, which a large schema makes milliseconds */
    const char *format_trigger; /* with a format: it applies only from where the answer's text first
                               * holds this (its grammar beginning with it); the text before is
                               * free, as llama.cpp's lazy grammars (tool calls under "auto") */
    bool logprobs;            /* each token's event carries its log-probability */
    int top_logprobs;         /* and that many alternatives (0..RM_MAX_TOP_LOGPROBS) */
    bool prompt_logprobs;     /* and the first token's, the prompt's (with logprobs): each prompt
                               * row then wants its logits, at most prompt_rows per step */
    bool prompt_only;         /* run the prompt and generate nothing (max_tokens ignored): it
                               * finishes with LENGTH once the prompt ran, that event carrying
                               * the prompt's log-probabilities when asked for (OpenAI's echo
                               * with max_tokens 0) */

    /* composition: mode and adapter names (resolved through the source) */
    rm_compose_mode mode;
    int n_adapters;
    const char *adapters[RM_LORA_MAX_K];
    float weights[RM_LORA_MAX_K]; /* explicit mode */
    const char *router;           /* router mode */
    float retrieval[RM_LORA_MAX_K]; /* router mode: each adapter's retrieval score (its cosine), which
                                     * a router with a retrieval prior weighs in; 0: not retrieved */
    uint64_t cache_salt;          /* requests share KV rows (the prefix cache, twins) only with
                                   * requests of the same salt (default 0): a server gives each
                                   * tenant its own, so that none learns from another's speed or
                                   * cached_tokens how that one's prompts began */

    /* an embedding instead of a generation: the base's hidden states of
     * layer embed_layer (RM_HIDDEN_FINAL, or 0..n_layers as
     * rm_ctx_keep_hidden) averaged over the prompt's tokens from index
     * embed_from on. It runs as prompt work of the steps, beside the
     * generations and under the same prefill allowance, with no adapters
     * and nothing generated: a retrieval's embedding costs the streams no
     * more than a prompt of its length (an inner layer's, only the
     * layers up to it). It finishes with LENGTH and the
     * vector in the event's `hidden`. Sampling, max_tokens and stop
     * strings are ignored; the mode must be none.
     * embed_shared: the first embed_shared tokens (at most embed_from)
     * are an instruction that many embeddings begin with. The engine
     * keeps their KV rows after one embedding computed them, and later
     * embeddings with the same leading tokens and layer start after
     * them (rm_engine_stats.prefix_hits); 0: none. */
    bool embed;
    int embed_layer;
    int embed_from;
    int embed_shared;

    rm_engine_event_fn on_event;  /* may be NULL */
    void *user;
} rm_engine_request;

/* Defaults: greedy sampling, no stop strings, no adapters, weights 1. */
void rm_engine_request_init(rm_engine_request *r);

/* The engine borrows the model, which must outlive it. */
rm_status rm_engine_new(const rm_model *m, const rm_engine_params *p, rm_engine **out);
void      rm_engine_free(rm_engine *e); /* cancels what is pending, without events */

/*
 * Queue a request. Validates it whole (prompt, sampling, composition, that
 * its adapters load and fit, that prompt + max_tokens fit the context and
 * the KV pool) and on failure returns the error naming the problem, with
 * nothing queued and no event. *id identifies it in events and cancel.
 */
rm_status rm_engine_submit(rm_engine *e, const rm_engine_request *r, int64_t *id);
/*
 * The token ids r's prompt text or chat messages run as (the chat template
 * applied), into out (freed by the caller with rm_tok_ids_free); a text
 * prompt without the tokenizer's special tokens when !add_special. Reads
 * only the tokenizer: any thread may call it.
 */
rm_status rm_engine_encode(const rm_engine *e, const rm_engine_request *r, bool add_special, rm_tok_ids *out);
/* Finish a pending request now (event CANCELLED); its slot and blocks are
 * freed at once. ERR_NOT_FOUND if it is not pending. */
rm_status rm_engine_cancel(rm_engine *e, int64_t id);
/* Cancel every pending request (each gets its CANCELLED event). */
void      rm_engine_cancel_all(rm_engine *e);

/*
 * Run one step: admit waiting requests, build a batch of at most
 * step_tokens tokens, run the forward, sample, and report. Returns the
 * number of tokens it ran in *n_run (0: nothing pending). An error of the
 * forward itself finishes the requests of that batch with ERROR and is
 * returned.
 */
rm_status rm_engine_step(rm_engine *e, int *n_run);
/*
 * Load what request q names (its adapters, its router, and the router's C
 * with each expert) into the adapter cache, so that its submit finds them
 * there instead of reading files on the driving thread, where a cold load
 * stalls every running stream for its duration. Any thread, while the
 * driver steps: a server calls it on the connection's thread, a batch on a
 * loader thread that runs ahead of submission. The hold (NULL when q names
 * no adapter) keeps them cached until rm_engine_hold_free, which comes
 * after the submit (the request then holds its own references). Errors
 * are those submit would give for the same names.
 */
typedef struct rm_engine_hold rm_engine_hold;
rm_status rm_engine_preload(rm_engine *e, const rm_engine_request *q, rm_engine_hold **out);
void      rm_engine_hold_free(rm_engine *e, rm_engine_hold *h); /* NULL is a no-op */

/* Requests submitted and not finished. */
int       rm_engine_pending(const rm_engine *e);

/* Remove an adapter from the cache: new requests load it again; running
 * ones keep theirs until they finish. Any thread. */
bool      rm_engine_drop_adapter(rm_engine *e, const char *name);

typedef struct {
    int waiting, running;
    int kv_blocks_used, kv_blocks_total;
    int preemptions;          /* since creation */
    int last_step_tokens, last_step_adapters; /* distinct adapters of the last batch */
    int64_t tokens_fed;       /* through the forward (prompts, decodes, recomputation) */
    int64_t tokens_generated;
    int64_t prefix_hits;      /* embeddings that started after a kept shared prefix */
    int64_t prefix_tokens;    /* the prefix tokens they did not feed */
    int64_t twin_hits;        /* generations that copied a twin's prompt (the samples of one prompt) */
    int64_t twin_tokens;      /* the prompt tokens they did not feed */
    int64_t prefix_cache_hits;   /* generations admitted with leading rows of a finished or running
                                  * request of the same composition */
    int64_t prefix_cache_tokens; /* the tokens they did not feed */
    int prefix_cache_entries;    /* finished requests' rows kept now, */
    size_t prefix_cache_bytes;   /* in these bytes */
    rm_adapter_cache_stats adapters;
} rm_engine_stats;
void rm_engine_stats_get(rm_engine *e, rm_engine_stats *out);

/* Check the engine's bookkeeping (KV blocks, slots, queues); ERR_INTERNAL
 * naming the first fault. For tests, after every step. */
rm_status rm_engine_check(const rm_engine *e);

const rm_model *rm_engine_model(const rm_engine *e);
/* The engine's thread pool, to share with an embedder (rm_embed_opts.pool):
 * one pool for all the work of a process, jobs run one at a time. */
rm_pool        *rm_engine_pool(rm_engine *e);
int             rm_engine_max_seqs(const rm_engine *e);
int             rm_engine_n_ctx(const rm_engine *e);     /* the context a sequence may fill */


/* ---- running a list of requests to the end (offline batches, evaluation) ---- */

typedef struct {
    rm_finish_reason finish;  /* NONE: never ran (submit refused it: see error) */
    char *text;               /* the generated text, NUL-terminated (empty without a tokenizer) */
    size_t len;
    int32_t *tokens;          /* the generated token ids */
    int n_tokens;
    int n_prompt;
    rm_logprob_list logprobs; /* when the request asked for them */
    char *error;              /* the submit or run error, or NULL */
} rm_engine_result;

void rm_engine_result_free(rm_engine_result *r);

/* Progress: requests done of total, tokens generated, seconds since start. */
typedef void (*rm_engine_progress_fn)(int done, int total, int64_t tokens, double seconds, void *user);

/*
 * Run reqs[0..n) to completion through e (NULL entries are skipped and
 * count as done) with continuous batching, keeping at most `ahead` requests
 * submitted and waiting beyond those running (0: 2 x max_seqs), so that a
 * long list does not sit in the engine's queue at once. results[i] receives
 * request i's outcome, whether it ran or was refused. Each request's own
 * on_event and user are not called (the runner takes them). progress, if
 * given, is called after every step. Returns an error only when the engine
 * itself fails; a refused request is reported in its result.
 */
rm_status rm_engine_run_all(rm_engine *e, const rm_engine_request *const *reqs, int n, int ahead,
                            rm_engine_result *results, rm_engine_progress_fn progress, void *user);

#endif
