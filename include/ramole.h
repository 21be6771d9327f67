/*
 * ramole.h — the public contract of libramole.
 *
 * ramole serves one base language model with an open pool of LoRA adapters.
 * This header is what a program linking libramole may rely on; everything in
 * src/ is internal and may change.
 *
 * Conventions
 *  - One prefix: ramole_. Objects are opaque handles made by ramole_X_open /
 *    ramole_X_new and released by ramole_X_free; every _free accepts NULL.
 *  - Functions that can fail return ramole_status. On failure
 *    ramole_last_error() holds a message naming the file, tensor and problem;
 *    it is per thread and valid until the next failing call on that thread.
 *  - The library never exits the process and never prints except through the
 *    log callback (default: standard error, level from RAMOLE_LOG).
 */
#ifndef RAMOLE_H
#define RAMOLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RAMOLE_VERSION "0.1.0"

/* Status codes: one list makes both the enum and its strings. */
#define RAMOLE_STATUS_LIST(X)                                   \
    X(OK,              "ok")                                     \
    X(ERR_NOMEM,       "out of memory")                          \
    X(ERR_IO,          "input/output error")                     \
    X(ERR_FORMAT,      "malformed input")                        \
    X(ERR_UNSUPPORTED, "unsupported")                            \
    X(ERR_INVALID,     "invalid argument")                       \
    X(ERR_RANGE,       "value out of range")                     \
    X(ERR_NOT_FOUND,   "not found")                              \
    X(ERR_MISMATCH,    "mismatch")                               \
    X(ERR_TOO_SMALL,   "buffer too small")                       \
    X(ERR_INTERNAL,    "internal error")

typedef enum {
#define RAMOLE_STATUS_ENUM_(name, str) RAMOLE_##name,
    RAMOLE_STATUS_LIST(RAMOLE_STATUS_ENUM_)
#undef RAMOLE_STATUS_ENUM_
    RAMOLE_STATUS_COUNT_
} ramole_status;

/* Record msg (printf format) as this thread's last error and return st:
 * for a caller's callback that fails inside a library call (a line walk),
 * so that the call reports why. */
ramole_status ramole_error_set(ramole_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Short fixed name of a status ("malformed input"). */
const char *ramole_status_str(ramole_status st);
/* The detailed message of the last failure on this thread ("" if none). */
const char *ramole_last_error(void);

/* Logging. */
typedef enum {
    RAMOLE_LOG_ERROR = 0,
    RAMOLE_LOG_WARN  = 1,
    RAMOLE_LOG_INFO  = 2,
    RAMOLE_LOG_DEBUG = 3,
} ramole_log_level;
typedef void (*ramole_log_fn)(ramole_log_level level, const char *msg, void *user);
/* Messages above `level` are dropped. fn NULL restores the stderr logger. */
void ramole_log_set(ramole_log_level level, ramole_log_fn fn, void *user);

/* ---- utilities ------------------------------------------------------------ */

/* Number of online CPUs (at least 1): the default thread count. */
int  ramole_cpu_count(void);
/* Seconds on a monotonic clock, for timing. */
double ramole_time_now(void);
/* Release a buffer or string the library handed out (documented on each
 * call that does); NULL is a no-op. */
void ramole_free(void *p);

/* A whole file into a fresh NUL-terminated buffer (ramole_free) of *size
 * bytes; errors name the file. */
ramole_status ramole_file_read(const char *path, char **out, size_t *size);
/* Write a file atomically (a temporary beside it, fsync'd, renamed over
 * path): an existing file is replaced whole or not at all. */
ramole_status ramole_file_write_atomic(const char *path, const void *data, size_t size);

/*
 * The lines of a text such as a JSONL file, blank ones (spaces, tabs, CR
 * only) skipped: fn gets each other line (not NUL-terminated, without its
 * newline) and its 1-based number. The first failure stops the walk and
 * its message gets "name:line: " in front.
 */
typedef ramole_status (*ramole_line_fn)(const char *s, size_t n, int line, void *user);
ramole_status ramole_lines_each(const char *text, size_t len, const char *name, ramole_line_fn fn, void *user);

/* Element types of weights and adapters. Block types (q8_0 .. q6_k) are
 * ggml's layouts and hold base weights only. */
typedef enum {
    RAMOLE_TYPE_F32 = 0,
    RAMOLE_TYPE_F16,
    RAMOLE_TYPE_BF16,
    RAMOLE_TYPE_Q8_0,
    RAMOLE_TYPE_Q4_0,
    RAMOLE_TYPE_Q4_1,
    RAMOLE_TYPE_Q4_K,
    RAMOLE_TYPE_Q5_K,
    RAMOLE_TYPE_Q6_K,
} ramole_type;
/* A weight plan where a call takes one: a ramole_type for every weight, or
 * llama.cpp's Q4_K_M mix. */
#define RAMOLE_PLAN_Q4_K_M (-2)

/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k";
 * for a plan also "q4_k_m". */
const char *ramole_type_name(int type_or_plan);
/* The type named s; 0 when s names none. */
int ramole_type_from_name(const char *s, ramole_type *out);
/* Whether t is a block (quantised) type. */
int ramole_type_is_quant(ramole_type t);

/* The linear modules of a layer an adapter may target, as bits of a mask
 * (1u << RAMOLE_TARGET_Q, ...). */
typedef enum {
    RAMOLE_TARGET_Q = 0, RAMOLE_TARGET_K, RAMOLE_TARGET_V, RAMOLE_TARGET_O,
    RAMOLE_TARGET_GATE, RAMOLE_TARGET_UP, RAMOLE_TARGET_DOWN,
    RAMOLE_TARGET_COUNT
} ramole_target;
/* "q" or "q_proj" (and so on) to its target; 0 when s names none. */
int ramole_target_from_name(const char *s, ramole_target *out);
/* The Hugging Face module name: "q_proj", ..., "down_proj". */
const char *ramole_target_name(ramole_target t);

/* The most adapters one request composes, and the largest adapter rank. */
#define RAMOLE_MAX_ADAPTERS 16
#define RAMOLE_MAX_RANK 1024

/* ---- models ------------------------------------------------------------------ */

/*
 * A base model: a Hugging Face folder (config.json, *.safetensors,
 * tokenizer.json) or a GGUF file as llama.cpp writes it. Read-only once
 * open (weights are mapped); any number of engines may share it. Valid
 * until ramole_model_free, which must come after every engine over it.
 */
typedef struct ramole_model ramole_model;

ramole_status ramole_model_open(const char *path, ramole_model **out);
void          ramole_model_free(ramole_model *m);

typedef enum { RAMOLE_FORMAT_HF = 0, RAMOLE_FORMAT_GGUF } ramole_model_format;

typedef struct {
    const char *arch;       /* "llama", "mistral", "qwen2" */
    int vocab_size, hidden, ffn, n_layers, n_heads, n_kv_heads, max_pos;
    int64_t n_params;
    int has_tokenizer;      /* 0: prompts must be token ids */
    /* the details `ramole info` shows */
    ramole_model_format format; /* what the model was opened from */
    int head_dim;
    int rope_neox;          /* 0: normal (llama) rotation, 1: neox */
    float rope_theta;
    const char *rope_scaling; /* "none", "linear", "llama3" */
    float rope_factor;      /* the scaling's factor (when not "none") */
    int rope_freq_factors;  /* the file carries rope_freqs */
    float rms_eps;
    int qkv_bias, tied_embeddings;
    int bos_id, eos_id;     /* -1 when unknown */
    ramole_type embd_type, output_type, main_type; /* main: most 2-D weights */
    int64_t n_bytes;        /* bytes of the weights */
    int64_t packed_bytes;   /* q4_k/q6_k matrices repacked at load for the int8 kernels, held in
                             * place of their file pages (0: none) */
} ramole_model_info;

void ramole_model_get_info(const ramole_model *m, ramole_model_info *out);

/*
 * Text to token ids with the model's tokenizer (add_special: BOS/EOS as
 * the tokenizer's template says). Writes at most cap ids; *n_out is the
 * full count, also on RAMOLE_ERR_TOO_SMALL, so a caller can retry with a
 * buffer of that size.
 */
ramole_status ramole_tokenize(const ramole_model *m, const char *text, size_t len, int add_special, int32_t *ids,
                              size_t cap, size_t *n_out);
/* Token ids to text (special tokens skipped when skip_special). Writes at
 * most cap bytes, NUL-terminated when they fit; *n_out is the length
 * without the NUL, also on RAMOLE_ERR_TOO_SMALL. */
ramole_status ramole_detokenize(const ramole_model *m, const int32_t *ids, size_t n, int skip_special, char *text,
                                size_t cap, size_t *n_out);

/* ---- the engine: many requests at once --------------------------------------- */

/*
 * An engine runs many generation requests over one model with continuous
 * batching: each ramole_engine_step runs one batched forward that mixes the
 * next token of every running request with chunks of prompts still being
 * read, each request with its own adapters and composition. Requests report
 * through their callback, from inside ramole_engine_step (or cancel); a
 * callback must not call the engine itself (queue the work instead). One
 * thread drives an engine; ramole_engine_drop_adapter may come from any.
 * Valid until ramole_engine_free; the model must outlive it.
 */
typedef struct ramole_engine ramole_engine;

typedef enum {
    RAMOLE_KV_F32 = 0,
    RAMOLE_KV_F16,         /* half the cache; logits move by ~1e-3 of their scale */
} ramole_kv_type;

typedef enum {
    RAMOLE_ADAPTERS_F32 = 0,
    RAMOLE_ADAPTERS_F16,   /* half the bytes a step reads per adapter */
    RAMOLE_ADAPTERS_BF16,
} ramole_adapter_type;

/* Where a request's adapter names lead: fill path (cap bytes) with the
 * PEFT folder or GGUF LoRA file of `name`; non-zero when there is none.
 * NULL resolver: names are paths. */
typedef int (*ramole_adapter_resolve_fn)(void *user, const char *name, char *path, size_t cap);

typedef struct {
    int n_threads;          /* 0: every core */
    int max_seqs;           /* requests running at once (0: 16) */
    int n_ctx;              /* positions one request may reach (0: the model's, at most 4096) */
    int step_tokens;        /* tokens one step may run (0: 512) */
    int prefill_tokens;     /* prompt tokens a step may add while others decode: 0 as many as
                             * it decodes and at least 32 (a stream waits at most about two
                             * decode steps); < 0 the whole step; n > 0 at most n */
    int kv_blocks;          /* KV pool in blocks (0: max_seqs requests of n_ctx) */
    int kv_block;           /* positions per block (0: 16) */
    ramole_kv_type kv_type;
    int max_adapters;       /* adapters one request may compose (0: 4, at most 16) */
    int max_rank;           /* largest adapter rank accepted (0: 1024) */
    size_t adapter_cache_bytes; /* adapters kept loaded beyond those in use (0: a quarter of
                                 * the machine's memory, at most 8 GiB) */
    ramole_adapter_type adapter_type;
    int prefix_cache_mib;   /* KV rows of finished requests kept for later ones that begin with the
                             * same tokens under the same adapters (0: 64 MiB; < 0: none) */
    ramole_adapter_resolve_fn resolve;
    void *resolve_user;
} ramole_engine_params;

typedef enum {
    RAMOLE_COMPOSE_NONE = 0,   /* the base alone */
    RAMOLE_COMPOSE_EXPLICIT,   /* sum of w_j x adapter j */
    RAMOLE_COMPOSE_SELECTION,  /* the first adapter only */
    RAMOLE_COMPOSE_MIXTURE,    /* the mean of the adapters' outputs */
    RAMOLE_COMPOSE_FUSION,     /* the mean of their parameters */
    RAMOLE_COMPOSE_ROUTER,     /* RouterLoRA: per token weights from a learned router */
} ramole_compose_mode;

typedef enum {
    RAMOLE_FINISH_NONE = 0,    /* still running */
    RAMOLE_FINISH_STOP,        /* a stop string */
    RAMOLE_FINISH_EOS,         /* an end-of-generation token */
    RAMOLE_FINISH_LENGTH,      /* max_tokens, or the context is full */
    RAMOLE_FINISH_CANCELLED,
    RAMOLE_FINISH_ERROR,
} ramole_finish;

/* A token and its log-probability. */
typedef struct {
    int32_t id;
    float logprob;
} ramole_token_logprob;

#define RAMOLE_MAX_TOP_LOGPROBS 20

/* OpenAI's logit_bias: a value added to one token's logit before sampling. */
typedef struct {
    int32_t id;
    float bias;
} ramole_logit_bias;

typedef struct {
    int64_t id;
    ramole_finish finish;   /* NONE while running */
    int32_t token;          /* the token just generated; -1 on cancel or error */
    const char *text;       /* its new text, whole UTF-8 characters; valid during the callback */
    size_t len;
    const char *error;      /* RAMOLE_FINISH_ERROR: why */
    int n_prompt, n_generated;
    /* a request with logprobs set, with a token: its log-probability under
     * the model's raw distribution (before penalties and temperature) and
     * the n_top most likely tokens, most likely first; top NULL otherwise */
    float logprob;
    const ramole_token_logprob *top;
    int n_top;
    int n_prompt_cached;    /* prompt tokens it did not compute: rows kept from an earlier request
                             * that began the same way, or copied from another sample of it */
} ramole_event;

typedef void (*ramole_event_fn)(const ramole_event *ev, void *user);

/* A tool call an assistant message made (OpenAI's tool_calls[].function). */
typedef struct {
    const char *name;
    const char *arguments;  /* JSON text, put in the prompt as it is */
} ramole_chat_call;

typedef struct {
    const char *role;       /* "system", "user", "assistant", "tool" (a tool's result) */
    const char *content;    /* may be NULL in an assistant message with calls */
    const ramole_chat_call *calls; /* an assistant's tool calls: only with a chat template that
                                    * renders tools (Qwen3's), as "tool" messages; tools to offer
                                    * go through ramole_engine_submit_json's "tools" */
    int n_calls;
} ramole_chat_msg;

typedef struct {
    /* the prompt: exactly one of token ids, text, or chat messages */
    const int32_t *tokens;
    int n_tokens;
    const char *prompt;
    const ramole_chat_msg *messages;
    int n_messages;
    /* sampling (ramole_request_init: greedy) */
    float temperature;      /* 0: greedy */
    float top_p;            /* 1: off */
    int top_k;              /* 0: off */
    float min_p;            /* 0: off */
    float repeat_penalty;   /* 1: off */
    int repeat_last_n;
    float frequency_penalty, presence_penalty; /* OpenAI's, over the output (0: off): a token
                                                * seen c > 0 times there loses
                                                * c * frequency + presence from its logit */
    const ramole_logit_bias *logit_bias;        /* added to those tokens' logits (copied at submit) */
    int n_logit_bias;
    uint64_t seed;
    int max_tokens;         /* 0: until the context is full */
    const char *const *stop;
    int n_stop;
    int ignore_eos;
    const char *json_schema; /* a response format: a JSON Schema (text) the answer satisfies, as
                              * OpenAI's response_format json_schema; "{\"type\": \"object\"}"
                              * for any object (json_object); NULL: free text. Checked at submit;
                              * unsupported keywords are refused by name. The answer ends
                              * (RAMOLE_FINISH_STOP) as soon as its value is complete */
    const char *grammar;    /* or a grammar in llama.cpp's GBNF that the answer follows from its rule
                             * root, alike (not both) */
    int logprobs;           /* events carry each token's log-probability */
    int top_logprobs;       /* and that many alternatives (0..RAMOLE_MAX_TOP_LOGPROBS) */
    /* adapters */
    ramole_compose_mode mode;
    int n_adapters;
    const char *adapters[RAMOLE_MAX_ADAPTERS];
    float weights[RAMOLE_MAX_ADAPTERS];      /* RAMOLE_COMPOSE_EXPLICIT */
    const char *router;     /* RAMOLE_COMPOSE_ROUTER */
    float retrieval[RAMOLE_MAX_ADAPTERS];    /* RAMOLE_COMPOSE_ROUTER: each adapter's retrieval score (its
                                              * cosine, in [-1, 1]), weighed in by a router with a
                                              * retrieval prior; 0: not retrieved */
    uint64_t cache_salt;    /* requests share computed KV rows (the prefix cache) only with requests
                             * of the same salt (0 by default): a service gives each tenant or user
                             * its own, so that none learns from another's speed how its prompts
                             * began */
    ramole_event_fn on_event;
    void *user;
} ramole_request;

/* Defaults: greedy, no stop strings, no adapters, adapter weights 1. */
void ramole_request_init(ramole_request *r);

/* Does text[0, len) satisfy a response format, a JSON Schema or a GBNF
 * grammar (exactly one of the two non-NULL), as a constrained answer
 * would: *prefix gets how many leading bytes the format takes (len when
 * it takes them all), *complete whether the whole text is a complete
 * answer. ERR_INVALID when the format itself is wrong (the message names
 * where), as a request carrying it would be refused. llama.cpp's
 * gbnf-validator does this for its grammars. */
ramole_status ramole_format_check(const char *json_schema, const char *gbnf, const char *text, size_t len,
                                  size_t *prefix, int *complete);
/* The sampling `ramole generate` uses unless told otherwise: temperature
 * 0.8, top_k 40, top_p 0.95, min_p 0.05, no repeat penalty (last 64), a
 * fixed seed. Leaves the prompt and adapters of r alone. */
void ramole_request_sampling_default(ramole_request *r);

/* "none", "explicit", "selection", "mixture", "fusion", "router". */
const char *ramole_compose_mode_name(ramole_compose_mode m);
/* 0 when s names no mode. */
int ramole_compose_mode_from_name(const char *s, ramole_compose_mode *out);

ramole_status ramole_engine_new(const ramole_model *m, const ramole_engine_params *p, ramole_engine **out);
void          ramole_engine_free(ramole_engine *e); /* pending requests are cancelled, with their events */

/* Queue a request after checking it whole; a refused one reports nothing. */
ramole_status ramole_engine_submit(ramole_engine *e, const ramole_request *r, int64_t *id);
/* The same from a JSON object as `ramole batch` lines carry ("prompt" or
 * "messages", "max_tokens", "temperature", "top_p", "seed", "stop",
 * "lora": {"mode", "adapters": [{"name", "weight", "score"}], "router"};
 * "score" is the adapter's retrieval score, for a router with a retrieval
 * prior). */
ramole_status ramole_engine_submit_json(ramole_engine *e, const char *json, size_t len, ramole_event_fn on_event,
                                        void *user, int64_t *id);
/* End a pending request now (event CANCELLED); RAMOLE_ERR_NOT_FOUND if none. */
ramole_status ramole_engine_cancel(ramole_engine *e, int64_t id);
/* One step; *n_run tokens went through the forward (0: nothing pending). */
ramole_status ramole_engine_step(ramole_engine *e, int *n_run);
int           ramole_engine_pending(const ramole_engine *e);
/* Forget a cached adapter: new requests load it again, running ones keep theirs. */
int           ramole_engine_drop_adapter(ramole_engine *e, const char *name);

typedef struct {
    int waiting, running;
    int kv_blocks_used, kv_blocks_total;
    int preemptions;
    int adapters_cached, adapters_held;
    uint64_t adapter_hits, adapter_misses;
    int64_t tokens_fed, tokens_generated;
} ramole_engine_stats;

void ramole_engine_get_stats(ramole_engine *e, ramole_engine_stats *out);

/* "none", "stop", "eos", "length", "cancelled", "error". */
const char *ramole_finish_name(ramole_finish f);

/* ---- running a list of requests to the end (offline batches) ------------------ */

/* A request parsed from a JSON object (the form ramole_engine_submit_json
 * takes), kept until ramole_parsed_request_free. */
typedef struct ramole_parsed_request ramole_parsed_request;

/* On failure the message says what is wrong with the line: "not valid
 * JSON: ... (column N)", or the field and the problem. */
ramole_status ramole_request_parse(const char *json, size_t len, ramole_parsed_request **out);
void ramole_parsed_request_free(ramole_parsed_request *r);

/* A tool call read out of an answer: the function's name and its
 * arguments as JSON text (as Python's json.dumps writes them, as vLLM and
 * `ramole serve` return them). */
typedef struct {
    char *name;
    char *arguments;
} ramole_tool_call;

/* The tool calls in r's answer text[0, len), as `ramole serve` reads them:
 * none when r offers no "tools" or its tool_choice is "none"; otherwise the
 * answer's <tool_call> blocks (the format of the templates that render
 * tools, Qwen3's), *content_len the length of the text before the first
 * one. An answer whose blocks are not all calls gives none, and all of it
 * is content. *calls is freed with ramole_tool_calls_free. */
ramole_status ramole_request_tool_calls(const ramole_parsed_request *r, const char *text, size_t len,
                                        ramole_tool_call **calls, int *n, size_t *content_len);
void ramole_tool_calls_free(ramole_tool_call *calls, int n);

/* One request's outcome; its buffers are the result's own
 * (ramole_result_clear). */
typedef struct {
    ramole_finish finish;   /* NONE: never ran (see error) */
    char *text;             /* the generated text, NUL-terminated (empty without a tokenizer) */
    size_t len;
    int32_t *tokens;        /* the generated ids */
    int n_tokens;
    int n_prompt;
    struct {                /* when the request asked for log-probabilities (n > 0) */
        int n, cap, n_top;
        int32_t *ids;       /* [n] the tokens */
        float *lp;          /* [n] their log-probabilities */
        ramole_token_logprob *top; /* [n * n_top] each one's alternatives, most likely first */
    } logprobs;
    char *error;            /* why it was refused or failed, or NULL */
} ramole_result;

void ramole_result_clear(ramole_result *r);

/* Progress: requests done of total, tokens generated, seconds since start. */
typedef void (*ramole_progress_fn)(int done, int total, int64_t tokens, double seconds, void *user);

/*
 * Run reqs[0..n) to completion through e with continuous batching (NULL
 * entries are skipped and count as done), a bounded number waiting beyond
 * those running. results[i] (zeroed by the caller) receives request i's
 * outcome, whether it ran or was refused. progress (may be NULL) is called
 * after every step. Fails only when the engine itself does.
 */
ramole_status ramole_engine_run_all(ramole_engine *e, ramole_parsed_request *const *reqs, int n,
                                    ramole_result *results, ramole_progress_fn progress, void *user);

#ifdef __cplusplus
}
#endif

/* The tools around the engine, one header per concept. */
#include "ramole/adapter.h"
#include "ramole/eval.h"
#include "ramole/model_io.h"
#include "ramole/registry.h"
#include "ramole/retrieval.h"
#include "ramole/run.h"
#include "ramole/serve.h"
#include "ramole/tokenizer.h"
#include "ramole/train.h"

#endif /* RAMOLE_H */
