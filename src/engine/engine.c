/*
 * engine.c — continuous batching of many requests over one context (see
 * engine.h for the contract).
 *
 * A request is a token list (prompt, then what it generated) and a count
 * of how many of those tokens the KV cache holds. Each step feeds every
 * running sequence some of its uncached tokens: one for a sequence that is
 * decoding, a chunk for one still in prefill. When a sequence's fed tokens
 * reach the end of its list, the last one wants logits and a new token is
 * sampled. Preemption therefore needs no special case: it forgets the
 * cached count, and the sequence prefills its whole list again.
 *
 * An embedding request is the same token list with nothing to generate:
 * its chunks want no logits, the step keeps the hidden states of its
 * layer, and the rows from embed_from on are summed as they pass; when
 * the cache holds its whole list it finishes with their mean.
 *
 * An embedding that begins with a shared instruction (embed_shared) puts
 * the instruction's KV rows, kept by an earlier one (prefix_store.h), into
 * its sequence when it is admitted, and feeds only the rest.
 *
 * Sequence slots: the context has max_seqs slots for running requests
 * plus one more that only rm_engine_submit uses, to validate a
 * composition with the very code that will run it (rm_lora_set).
 */
#include "engine/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/detok.h"
#include "engine/gbnf.h"
#include "engine/json_schema.h"
#include "engine/prefix_store.h"
#include "engine/token_filter.h"
#include "model/kv_cache.h"

/* Finished requests' rows kept at most: a line of them is searched per
 * admitted request. */
#define PREFIX_CACHE_ENTRIES 256

/* What a generation's rows depend on besides its tokens: its composition,
 * the adapters named by their load's serial (a reload is another one);
 * and who may share them, the request's salt. Zeroed before it is filled,
 * so that it compares as bytes. */
typedef struct {
    int32_t mode, k;
    uint64_t serial[RM_LORA_MAX_K + 1]; /* the experts, then the router (0: none) */
    float weights[RM_LORA_MAX_K], retrieval[RM_LORA_MAX_K];
    uint64_t salt;                      /* the request's cache_salt */
} comp_key;

typedef struct req {
    int64_t id;
    int slot;                   /* -1 while waiting */
    int32_t *toks;              /* prompt then generated, [cap] */
    int n_toks, cap, n_prompt;
    int n_cached;               /* tokens the KV cache holds */
    int max_new;                /* tokens it may generate */
    bool prompt_only;           /* 0 of them: it ends when its prompt has run */
    bool ignore_eos;
    bool logprobs;              /* its token events carry log-probabilities: */
    int n_top;
    float lp;                   /* the last token's, set by advance for emit */
    rm_token_logprob top[RM_MAX_TOP_LOGPROBS];
    bool prompt_lps;            /* and the prompt's, recorded as its rows run: */
    rm_logprob_list plist;      /* prompt tokens 0..plist.n-1 (0's NaN) */
    bool cacheable;             /* its rows may be kept and shared (the prefix cache) under: */
    comp_key key;
    bool fed;                   /* a chunk of it has run */
    bool ran;                   /* since its admission */
    int prompt_cached;          /* prompt tokens copied before any ran (the event's n_prompt_cached) */
    rm_sampler *smp;
    rm_token_filter *format;    /* the response format's grammar and position, or NULL: free text */
    rm_token_filter *waiting;   /* a format waiting for its trigger in the answer (then format) */
    char *trigger;              /* that trigger, n_trigger bytes */
    char *tail;                 /* the answer's last bytes, fewer than the trigger's */
    size_t n_trigger, n_tail;
    rm_detok detok;
    rm_composition comp;        /* pointers into the handles below */
    rm_adapter_handle *h[RM_LORA_MAX_K], *hr;
    rm_engine_event_fn fn;
    void *user;
    struct req *next;           /* waiting queue */
    /* router mode: gates summed over the answer's positions (each counted once, also across recomputation) */
    double gate_sum[RM_LORA_MAX_K];
    int gate_n, gate_next;      /* positions counted; the next position to count */
    /* an embedding request: its layer, first pooled token, and the rows summed so far */
    bool embed;
    int embed_layer, embed_from;
    int embed_shared;           /* leading tokens shared with other embeddings (prefix_store.h) */
    double *acc;                /* [hidden] */
} req;

struct rm_engine {
    const rm_model *m;
    const rm_tok *tok;
    rm_engine_params p;
    rm_ctx *ctx;
    rm_lora_state *lora;
    const rm_kv_cache *kv;
    rm_adapter_cache *adapters;
    rm_prefix_store *prefixes;   /* embeddings' shared instructions */
    rm_prefix_store *prompts;    /* finished generations' rows (the prefix cache), or NULL */
    rm_vocab_trie *vocab;        /* the tokens' bytes as a trie, made for the first response format */
    int64_t next_id;
    req *wait_head, *wait_tail;  /* FIFO; preempted requests go back to the front */
    req **slots;                 /* [max_seqs] running request of each slot, or NULL */
    int n_running;
    /* step scratch, sized once */
    req **order;                 /* [max_seqs] running requests, oldest first */
    int *chunk;                  /* [max_seqs] tokens fed this step, by position in order */
    int *row0;                   /* [max_seqs] the batch row of each chunk's first token */
    int32_t *b_tok, *b_pos, *b_seq; /* [step_tokens] */
    uint8_t *b_want;
    const rm_adapter **seen;     /* [max_seqs * (max_adapters + 1)] distinct adapters of a step */
    double *t_gates;             /* [step_tokens * max_adapters] the step's gate trace */
    int *t_n;                    /* [step_tokens] */
    int step_layer;              /* the hidden layer this step keeps for embeddings, or RM_HIDDEN_OFF */
    int kept_layer;              /* what the context keeps now */
    float *pooled;               /* [hidden] an embedding's mean, for its event */
    rm_engine_stats st;
};

static const char *const finish_names[RM_FINISH_COUNT] = {"none", "stop", "eos", "length", "cancelled", "error"};

const char *rm_finish_reason_name(rm_finish_reason r) {
    return (unsigned)r < RM_FINISH_COUNT ? finish_names[r] : "?";
}

void rm_engine_request_init(rm_engine_request *r) {
    memset(r, 0, sizeof *r);
    rm_sampler_params_default(&r->sampling);
    r->sampling.temperature = 0; /* greedy unless asked */
    r->mode = RM_COMPOSE_NONE;
    for (int j = 0; j < RM_LORA_MAX_K; j++) r->weights[j] = 1.0f;
}

const rm_model *rm_engine_model(const rm_engine *e) { return e->m; }
int rm_engine_n_ctx(const rm_engine *e) { return e->p.n_ctx; }

int rm_engine_max_seqs(const rm_engine *e) { return e->p.max_seqs; }
rm_pool *rm_engine_pool(rm_engine *e) { return rm_ctx_pool(e->ctx); }

/* ---- creation ------------------------------------------------------------ */

/* The machine's memory in bytes, 0 when it cannot be read. */
static size_t phys_mem_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

rm_status rm_engine_new(const rm_model *m, const rm_engine_params *pp, rm_engine **out) {
    *out = NULL;
    rm_engine_params p = pp ? *pp : (rm_engine_params){0};
    if (p.max_seqs <= 0) p.max_seqs = 16;
    if (p.n_ctx <= 0) p.n_ctx = m->cfg.max_pos < 4096 ? m->cfg.max_pos : 4096;
    if (p.step_tokens <= 0) p.step_tokens = 512;
    if (p.prompt_rows <= 0) {
        size_t fit = RM_ENGINE_PROMPT_LOGITS_BYTES / ((size_t)m->cfg.vocab_size * sizeof(float));
        p.prompt_rows = fit < RM_ENGINE_PROMPT_ROWS_MIN ? RM_ENGINE_PROMPT_ROWS_MIN : fit > (size_t)p.step_tokens
                                                                                    ? p.step_tokens : (int)fit;
    }
    if (p.prefill_tokens < 0) p.prefill_tokens = -1;
    if (p.kv_block <= 0) p.kv_block = RM_KV_BLOCK_DEFAULT;
    if (p.max_adapters <= 0) p.max_adapters = 4;
    if (p.max_rank <= 0) p.max_rank = RM_LORA_MAX_RANK;
    size_t mem = phys_mem_bytes();
    if (!p.adapter_cache_bytes) { /* a quarter of the machine's memory, at most 8 GiB */
        size_t quarter = mem ? mem / 4 : (size_t)1 << 30;
        p.adapter_cache_bytes = quarter < ((size_t)8 << 30) ? quarter : ((size_t)8 << 30);
    }
    if (p.max_seqs > 4096 || p.step_tokens > (1 << 20) || p.max_adapters > RM_LORA_MAX_K ||
        p.max_rank > RM_LORA_MAX_RANK)
        return rm_err(RAMOLE_ERR_RANGE, "engine: max_seqs %d (at most 4096), step_tokens %d, max_adapters %d (at "
                      "most %d) or max_rank %d (at most %d) out of range", p.max_seqs, p.step_tokens,
                      p.max_adapters, RM_LORA_MAX_K, p.max_rank, RM_LORA_MAX_RANK);
    if (p.n_ctx > m->cfg.max_pos)
        rm_log_warn("engine: context of %d positions is beyond the model's %d", p.n_ctx, m->cfg.max_pos);
    if (p.kv_blocks <= 0) {
        /* every sequence at the full context, but at most half the
         * machine's memory: past that, preemption (as vLLM sizes its pool
         * by a share of memory rather than by the worst case) */
        int64_t one = (p.n_ctx + p.kv_block - 1) / p.kv_block, n = (int64_t)p.max_seqs * one;
        rm_kv_params kp = {.n_layers = m->cfg.n_layers, .kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim,
                           .block = p.kv_block, .type = p.kv_type};
        int64_t cap = mem ? (int64_t)(mem / 2 / rm_kv_block_bytes(&kp)) : n;
        if (n > cap) n = cap > one ? cap : one; /* one sequence at the full context, always */
        if (n > INT32_MAX) return rm_err(RAMOLE_ERR_RANGE, "engine: the KV pool would need %lld blocks", (long long)n);
        p.kv_blocks = (int)n;
    }
    rm_engine *e = rm_calloc(1, sizeof *e);
    if (!e) return rm_err(RAMOLE_ERR_NOMEM, "engine: out of memory");
    e->m = m;
    e->tok = m->tokenizer;
    e->p = p;
    e->next_id = 1;
    e->step_layer = e->kept_layer = RM_HIDDEN_OFF;
    rm_ctx_params cp = {.n_ctx = p.n_ctx, .n_seq = p.max_seqs + 1, .n_batch = p.step_tokens,
                        .n_logits = p.max_seqs + p.prompt_rows < p.step_tokens ? p.max_seqs + p.prompt_rows : p.step_tokens,
                        .n_threads = p.n_threads, .kv_block = p.kv_block, .kv_blocks = p.kv_blocks,
                        .kv_type = p.kv_type};
    /* scratch for rank 16 at first; rm_lora_state_grow_rank follows the adapters */
    int rank0 = p.max_rank < 16 ? p.max_rank : 16;
    rm_status st = rm_lora_ctx_new(m, &cp, p.max_adapters, rank0, &e->ctx, &e->lora);
    if (st == RAMOLE_OK) {
        e->kv = rm_ctx_kv(e->ctx);
        st = rm_adapter_cache_new(m, &p.source, p.adapter_cache_bytes, p.adapter_type, &e->adapters);
    }
    /* a few instructions' rows: one per embedder and layer in practice */
    if (st == RAMOLE_OK) st = rm_prefix_store_new(8, (size_t)64 << 20, &e->prefixes);
    if (st == RAMOLE_OK && p.prefix_cache_mib >= 0)
        st = rm_prefix_store_new(PREFIX_CACHE_ENTRIES, (size_t)(p.prefix_cache_mib ? p.prefix_cache_mib : 64) << 20,
                                 &e->prompts);
    if (st != RAMOLE_OK) {
        rm_engine_free(e);
        return st;
    }
    size_t ns = (size_t)p.max_seqs, nb = (size_t)p.step_tokens;
    e->slots = rm_calloc(ns, sizeof *e->slots);
    e->order = rm_calloc(ns, sizeof *e->order);
    e->chunk = rm_calloc(ns, sizeof *e->chunk);
    e->row0 = rm_calloc(ns, sizeof *e->row0);
    e->b_tok = rm_calloc(nb, sizeof *e->b_tok);
    e->b_pos = rm_calloc(nb, sizeof *e->b_pos);
    e->b_seq = rm_calloc(nb, sizeof *e->b_seq);
    e->b_want = rm_calloc(nb, 1);
    e->seen = rm_calloc(ns * (size_t)(p.max_adapters + 1), sizeof *e->seen);
    e->t_gates = rm_calloc(nb * (size_t)p.max_adapters, sizeof *e->t_gates);
    e->t_n = rm_calloc(nb, sizeof *e->t_n);
    e->pooled = rm_calloc((size_t)m->cfg.hidden, sizeof *e->pooled);
    if (!e->pooled || !e->row0 || !e->slots || !e->order || !e->chunk || !e->b_tok || !e->b_pos || !e->b_seq || !e->b_want || !e->seen ||
        !e->t_gates || !e->t_n) {
        rm_engine_free(e);
        return rm_err(RAMOLE_ERR_NOMEM, "engine: out of memory");
    }
    e->st.kv_blocks_total = p.kv_blocks;
    *out = e;
    return RAMOLE_OK;
}

/* ---- requests ------------------------------------------------------------- */

static void req_free(rm_engine *e, req *r) {
    if (!r) return;
    for (int j = 0; j < RM_LORA_MAX_K; j++) rm_adapter_cache_release(e->adapters, r->h[j]);
    rm_adapter_cache_release(e->adapters, r->hr);
    rm_sampler_free(r->smp);
    rm_token_filter_free(r->format);
    rm_token_filter_free(r->waiting);
    rm_free(r->trigger);
    rm_free(r->tail);
    rm_detok_free(&r->detok);
    rm_free(r->toks);
    rm_free(r->acc);
    rm_logprob_list_free(&r->plist);
    rm_free(r);
}

/* Keep r's rows for later requests that begin the same way. A failure
 * to keep them costs only speed. */
static void prefix_cache_keep(rm_engine *e, const req *r) {
    if (!e->prompts || !r->cacheable || r->n_cached < RM_ENGINE_PREFIX_MIN) return;
    if (rm_prefix_store_add(e->prompts, &r->key, sizeof r->key, e->kv, r->slot, r->toks, r->n_cached,
                            e->m->cfg.n_layers, r->prompt_lps ? &r->plist : NULL) != RAMOLE_OK)
        rm_log_warn("engine: %s", ramole_last_error());
}

/* Leave the slot: rows kept (the rows of [0, n_cached) are whole, also
 * when a step failed), KV blocks back to the pool, composition cleared. */
static void slot_leave(rm_engine *e, req *r) {
    if (r->slot < 0) return;
    prefix_cache_keep(e, r);
    rm_ctx_seq_clear(e->ctx, r->slot);
    rm_lora_set(e->lora, r->slot, NULL);
    e->slots[r->slot] = NULL;
    e->n_running--;
    r->slot = -1;
    r->n_cached = 0;
}

/* Report to r's callback; an embedding's LENGTH finish carries its mean
 * (e->pooled, written by embed_advance). */
static void emit(const rm_engine *e, const req *r, rm_finish_reason fin, int32_t token, const char *text, size_t len,
                 const char *err) {
    if (!r->fn) return;
    rm_engine_event ev = {.id = r->id, .finish = fin, .token = token, .text = text ? text : "", .len = len,
                          .error = err, .n_prompt = r->n_prompt, .n_generated = r->n_toks - r->n_prompt,
                          .n_prompt_cached = r->prompt_cached};
    if (r->embed && fin == RM_FINISH_LENGTH) {
        ev.hidden = e->pooled;
        ev.n_hidden = e->m->cfg.hidden;
    }
    float gates[RM_LORA_MAX_K];
    if (fin != RM_FINISH_NONE && r->gate_n) {
        for (int j = 0; j < r->comp.k; j++) gates[j] = (float)(r->gate_sum[j] / r->gate_n);
        ev.gates = gates;
        ev.n_gates = r->comp.k;
    }
    if (r->logprobs && token >= 0) {
        ev.logprob = r->lp;
        ev.top = r->top;
        ev.n_top = r->n_top;
        if (r->prompt_lps && ev.n_generated == 1) ev.prompt_logprobs = &r->plist;
    }
    if (r->prompt_only && r->prompt_lps && fin != RM_FINISH_NONE) ev.prompt_logprobs = &r->plist;
    r->fn(&ev, r->user);
}

static void wait_push_back(rm_engine *e, req *r) {
    r->next = NULL;
    if (e->wait_tail) e->wait_tail->next = r; else e->wait_head = r;
    e->wait_tail = r;
    e->st.waiting++;
}

static void wait_push_front(rm_engine *e, req *r) {
    r->next = e->wait_head;
    e->wait_head = r;
    if (!e->wait_tail) e->wait_tail = r;
    e->st.waiting++;
}

static req *wait_pop(rm_engine *e) {
    req *r = e->wait_head;
    if (!r) return NULL;
    e->wait_head = r->next;
    if (!e->wait_head) e->wait_tail = NULL;
    r->next = NULL;
    e->st.waiting--;
    return r;
}

static bool wait_remove(rm_engine *e, req *r) {
    req *prev = NULL;
    for (req *q = e->wait_head; q; prev = q, q = q->next) {
        if (q != r) continue;
        if (prev) prev->next = q->next; else e->wait_head = q->next;
        if (e->wait_tail == q) e->wait_tail = prev;
        e->st.waiting--;
        return true;
    }
    return false;
}

/* Finish r with `fin`: leave its slot, report, free it. */
static void finish(rm_engine *e, req *r, rm_finish_reason fin, const char *err) {
    if (r->slot >= 0) slot_leave(e, r);
    else wait_remove(e, r);
    emit(e, r, fin, -1, NULL, 0, err);
    req_free(e, r);
}

void rm_engine_free(rm_engine *e) {
    if (!e) return;
    for (int s = 0; e->slots && s < e->p.max_seqs; s++) req_free(e, e->slots[s]);
    for (req *r = e->wait_head, *n; r; r = n) {
        n = r->next;
        req_free(e, r);
    }
    rm_adapter_cache_free(e->adapters);
    rm_prefix_store_free(e->prefixes);
    rm_prefix_store_free(e->prompts);
    rm_vocab_trie_free(e->vocab);
    rm_ctx_free(e->ctx);
    rm_lora_state_free(e->lora);
    rm_free(e->slots);
    rm_free(e->order);
    rm_free(e->chunk);
    rm_free(e->row0);
    rm_free(e->b_tok);
    rm_free(e->b_pos);
    rm_free(e->b_seq);
    rm_free(e->b_want);
    rm_free(e->seen);
    rm_free(e->t_gates);
    rm_free(e->t_n);
    rm_free(e->pooled);
    rm_free(e);
}

/* The prompt as token ids into r->toks. */
rm_status rm_engine_encode(const rm_engine *e, const rm_engine_request *q, bool add_special, rm_tok_ids *out) {
    memset(out, 0, sizeof *out);
    if (!q->prompt && !q->messages)
        return rm_err(RAMOLE_ERR_INVALID, "request: give prompt text or chat messages to encode");
    if (!e->tok) return rm_err(RAMOLE_ERR_INVALID, "request: the model has no tokenizer; give the prompt as token ids");
    if (q->prompt)
        return rm_tok_encode(e->tok, q->prompt, strlen(q->prompt), add_special ? RM_TOK_ADD_SPECIAL : 0, out);
    if (q->n_messages <= 0) return rm_err(RAMOLE_ERR_INVALID, "request: chat messages are empty");
    for (int i = 0; i < q->n_messages; i++)
        if (!q->messages[i].role || (!q->messages[i].content && !q->messages[i].n_calls))
            return rm_err(RAMOLE_ERR_INVALID, "request: message %d has no role or no content", i);
    char *text = NULL;
    rm_chat_opts o = {.tools = q->tools, .n_tools = (size_t)q->n_tools, .add_generation_prompt = true,
                      .no_thinking = q->no_thinking};
    rm_status st = rm_chat_render(e->tok, RM_CHAT_NONE, q->messages, (size_t)q->n_messages, &o, &text);
    /* the template writes the special tokens itself */
    if (st == RAMOLE_OK) st = rm_tok_encode(e->tok, text, strlen(text), 0, out);
    rm_free(text);
    return st;
}

static rm_status encode_prompt(rm_engine *e, const rm_engine_request *q, req *r) {
    int forms = (q->tokens != NULL) + (q->prompt != NULL) + (q->messages != NULL);
    if (forms != 1)
        return rm_err(RAMOLE_ERR_INVALID, "request: give exactly one of token ids, prompt text or chat messages "
                      "(got %d)", forms);
    rm_tok_ids ids = {0};
    const int32_t *src = q->tokens;
    size_t n = q->tokens ? (size_t)(q->n_tokens > 0 ? q->n_tokens : 0) : 0;
    rm_status st = RAMOLE_OK;
    if (!q->tokens) {
        st = rm_engine_encode(e, q, true, &ids);
        if (st != RAMOLE_OK) return st;
        src = ids.ids;
        n = ids.n;
    }
    if (st == RAMOLE_OK && n == 0) st = rm_err(RAMOLE_ERR_INVALID, "request: the prompt is empty");
    int vocab = e->m->cfg.vocab_size;
    for (size_t i = 0; st == RAMOLE_OK && i < n; i++)
        if (src[i] < 0 || src[i] >= vocab)
            st = rm_err(RAMOLE_ERR_RANGE, "request: prompt token id %d at index %zu is outside the vocabulary of %d",
                        src[i], i, vocab);
    if (st == RAMOLE_OK && q->embed && n > (size_t)e->p.n_ctx)
        st = rm_err(RAMOLE_ERR_RANGE, "request: an embedding of %zu tokens exceeds the context of %d", n, e->p.n_ctx);
    else if (st == RAMOLE_OK && !q->embed && n >= (size_t)e->p.n_ctx)
        st = rm_err(RAMOLE_ERR_RANGE, "request: a prompt of %zu tokens leaves no room in a context of %d", n,
                    e->p.n_ctx);
    if (st == RAMOLE_OK) {
        r->n_prompt = r->n_toks = (int)n;
        r->gate_next = r->n_prompt - 1;
        r->cap = (int)n + 1;
        if (!(r->toks = rm_malloc((size_t)r->cap * sizeof *r->toks)))
            st = rm_err(RAMOLE_ERR_NOMEM, "request: out of memory");
        else
            memcpy(r->toks, src, n * sizeof *src);
    }
    rm_tok_ids_free(&ids);
    return st;
}

static rm_status check_sampling(const rm_sampler_params *s) {
    if (!isfinite(s->temperature) || s->temperature < 0)
        return rm_err(RAMOLE_ERR_INVALID, "request: temperature must be a finite number >= 0");
    if (!(s->top_p > 0 && s->top_p <= 1) && !(s->top_p > 1 && isfinite(s->top_p)))
        return rm_err(RAMOLE_ERR_INVALID, "request: top_p must be in (0, 1]");
    if (!(s->min_p >= 0 && s->min_p <= 1)) return rm_err(RAMOLE_ERR_INVALID, "request: min_p must be in [0, 1]");
    if (!(s->repeat_penalty > 0) || !isfinite(s->repeat_penalty))
        return rm_err(RAMOLE_ERR_INVALID, "request: repeat_penalty must be positive");
    if (s->repeat_last_n < 0) return rm_err(RAMOLE_ERR_INVALID, "request: repeat_last_n must be >= 0");
    return RAMOLE_OK;
}

/* The composition's shape, before any adapter is read: mode, count, router. */
static rm_status check_shape(const rm_engine *e, const rm_engine_request *q) {
    if ((unsigned)q->mode >= RM_COMPOSE_COUNT) return rm_err(RAMOLE_ERR_INVALID, "request: unknown mode %d", q->mode);
    if (q->mode == RM_COMPOSE_NONE)
        return q->n_adapters || q->router ? rm_err(RAMOLE_ERR_INVALID, "request: mode none takes no adapters")
                                          : RAMOLE_OK;
    if (q->n_adapters < 1 || q->n_adapters > e->p.max_adapters)
        return rm_err(RAMOLE_ERR_RANGE, "request: mode %s needs 1 to %d adapters (got %d)",
                      rm_compose_mode_name(q->mode), e->p.max_adapters, q->n_adapters);
    if (q->mode == RM_COMPOSE_ROUTER && !q->router)
        return rm_err(RAMOLE_ERR_INVALID, "request: mode router needs a router");
    if (q->mode != RM_COMPOSE_ROUTER && q->router)
        return rm_err(RAMOLE_ERR_INVALID, "request: a router is used only in mode router");
    return RAMOLE_OK;
}

/* Handles of a well-shaped request's adapters, its router and the
 * router's C with each expert, through the cache. On failure the caller
 * releases what was taken (the entries that are not NULL). */
static rm_status acquire(rm_engine *e, const rm_engine_request *q, rm_adapter_handle **h, rm_adapter_handle **hr,
                         const rm_router_c **rc) {
    for (int j = 0; j < q->n_adapters; j++) {
        if (!q->adapters[j]) return rm_err(RAMOLE_ERR_INVALID, "request: adapter %d has no name", j);
        RM_TRY(rm_adapter_cache_get(e->adapters, q->adapters[j], &h[j]));
    }
    if (!q->router) return RAMOLE_OK;
    RM_TRY(rm_adapter_cache_get(e->adapters, q->router, hr));
    for (int j = 0; j < q->n_adapters; j++) RM_TRY(rm_adapter_cache_router_c(e->adapters, *hr, h[j], &rc[j]));
    return RAMOLE_OK;
}

/* Resolve the adapters through the cache and validate the composition in
 * the spare slot, with the code that will run it. */
static rm_status bind_adapters(rm_engine *e, const rm_engine_request *q, req *r) {
    rm_composition *c = &r->comp;
    memset(c, 0, sizeof *c);
    c->mode = q->mode;
    RM_TRY(check_shape(e, q));
    if (q->mode == RM_COMPOSE_NONE) return RAMOLE_OK;
    c->k = q->n_adapters;
    c->n_prompt = r->n_prompt; /* a prompt-pooled router's; admit sets the same after a preemption */
    RM_TRY(acquire(e, q, r->h, &r->hr, c->router_c));
    for (int j = 0; j < c->k; j++) {
        c->experts[j] = rm_adapter_handle_adapter(r->h[j]);
        c->weights[j] = q->weights[j];
        c->retrieval[j] = q->retrieval[j];
    }
    if (r->hr) c->router = rm_adapter_handle_adapter(r->hr);
    /* the step's scratch grows to the largest rank met so far */
    int rank = c->router ? c->router->max_rank : 0;
    for (int j = 0; j < c->k; j++) rank = c->experts[j]->max_rank > rank ? c->experts[j]->max_rank : rank;
    if (rank > e->p.max_rank)
        return rm_err(RAMOLE_ERR_RANGE, "request: an adapter of rank %d is above this engine's limit of %d", rank,
                      e->p.max_rank);
    RM_TRY(rm_lora_state_grow_rank(e->lora, rank));
    int spare = e->p.max_seqs;
    rm_status st = rm_lora_set(e->lora, spare, c);
    rm_lora_set(e->lora, spare, NULL);
    return st;
}

/* What a preload took: the handles a request would take (acquire). */
struct rm_engine_hold {
    rm_adapter_handle *h[RM_LORA_MAX_K], *hr;
    const rm_router_c *rc[RM_LORA_MAX_K];
};

void rm_engine_hold_free(rm_engine *e, rm_engine_hold *h) {
    if (!h) return;
    for (int j = 0; j < RM_LORA_MAX_K; j++) rm_adapter_cache_release(e->adapters, h->h[j]);
    rm_adapter_cache_release(e->adapters, h->hr);
    rm_free(h);
}

rm_status rm_engine_preload(rm_engine *e, const rm_engine_request *q, rm_engine_hold **out) {
    *out = NULL;
    /* a misshapen request loads nothing: its submit names the fault */
    if (q->mode == RM_COMPOSE_NONE || check_shape(e, q) != RAMOLE_OK) return RAMOLE_OK;
    rm_engine_hold *h = rm_calloc(1, sizeof *h);
    if (!h) return rm_err(RAMOLE_ERR_NOMEM, "engine: out of memory");
    rm_status st = acquire(e, q, h->h, &h->hr, h->rc);
    if (st != RAMOLE_OK) {
        rm_engine_hold_free(e, h);
        return st;
    }
    *out = h;
    return RAMOLE_OK;
}

/* The pool holds the request alone at its longest: prompt + max_new. */
static rm_status check_kv(const rm_engine *e, const req *r) {
    int n = r->n_prompt + r->max_new, need = rm_kv_blocks_for(e->kv, n);
    return need > e->p.kv_blocks ? rm_err(RAMOLE_ERR_RANGE, "request: %d tokens need %d KV blocks; the pool has %d", n,
                                          need, e->p.kv_blocks)
                                 : RAMOLE_OK;
}

/* An embedding request's own checks, and its sum; the context's buffer
 * of hidden rows is made here, once, so that a step never allocates. */
static rm_status bind_embed(rm_engine *e, const rm_engine_request *q, req *r) {
    if (q->mode != RM_COMPOSE_NONE || q->n_adapters || q->router)
        return rm_err(RAMOLE_ERR_INVALID, "request: an embedding runs the base alone (mode none, no adapters)");
    int nl = e->m->cfg.n_layers;
    if (q->embed_layer != RM_HIDDEN_FINAL && (q->embed_layer < 0 || q->embed_layer > nl))
        return rm_err(RAMOLE_ERR_RANGE, "request: embedding layer %d (the model has layers 0..%d, or the final norm)",
                      q->embed_layer, nl);
    if (q->embed_from < 0 || q->embed_from >= r->n_prompt)
        return rm_err(RAMOLE_ERR_RANGE, "request: embedding from token %d of a prompt of %d tokens", q->embed_from,
                      r->n_prompt);
    if (q->embed_shared < 0 || q->embed_shared > q->embed_from)
        return rm_err(RAMOLE_ERR_RANGE, "request: a shared prefix of %d tokens (0 up to embed_from, %d)",
                      q->embed_shared, q->embed_from);
    RM_TRY(check_kv(e, r)); /* max_new 0: an embedding generates nothing */
    /* allocates the rows once; the steps switch layers without failing */
    RM_TRY(rm_ctx_keep_hidden(e->ctx, q->embed_layer));
    RM_TRY(rm_ctx_keep_hidden(e->ctx, e->kept_layer));
    if (!(r->acc = rm_calloc((size_t)e->m->cfg.hidden, sizeof *r->acc)))
        return rm_err(RAMOLE_ERR_NOMEM, "request: out of memory");
    r->embed = true;
    r->embed_layer = q->embed_layer;
    r->embed_from = q->embed_from;
    r->embed_shared = q->embed_shared;
    return RAMOLE_OK;
}

/* Whether r's rows may be kept and reused, and the key they go under:
 * what its mode reads (compose.c), no more, so that requests whose rows
 * agree share them. Selection reads its first adapter alone; weights count
 * in explicit mode only; retrieval scores only under a router with a
 * prior. A router that pools its gates over the prompt is left out: its
 * slot sums the prompt's scores as they run. */
static void bind_cache_key(req *r, uint64_t salt) {
    const rm_composition *c = &r->comp;
    bool router = c->mode == RM_COMPOSE_ROUTER;
    r->cacheable = !(router && c->router->gate_pool == RM_GATE_POOL_PROMPT);
    memset(&r->key, 0, sizeof r->key);
    r->key.mode = (int32_t)c->mode;
    r->key.k = c->mode == RM_COMPOSE_SELECTION ? 1 : c->k;
    for (int j = 0; j < r->key.k; j++) {
        r->key.serial[j] = rm_adapter_handle_serial(r->h[j]);
        if (c->mode == RM_COMPOSE_EXPLICIT) r->key.weights[j] = c->weights[j];
        if (router && c->router->retrieval_prior != 0) r->key.retrieval[j] = c->retrieval[j];
    }
    if (router) r->key.serial[RM_LORA_MAX_K] = rm_adapter_handle_serial(r->hr);
    r->key.salt = salt;
}

/* A response format: the schema's or the GBNF's grammar, and the
 * vocabulary's trie the first time one is asked for. */
static rm_status bind_format(rm_engine *e, const rm_engine_request *q, req *r) {
    if (!q->format && q->json_schema && q->grammar)
        return rm_err(RAMOLE_ERR_INVALID, "request: give a JSON schema or a grammar, not both");
    if ((!q->format && !q->json_schema && !q->grammar) || q->prompt_only) return RAMOLE_OK;
    if (!e->tok) return rm_err(RAMOLE_ERR_INVALID, "request: a response format needs a model with a tokenizer");
    rm_grammar *g;
    if (q->format) g = rm_grammar_retain(q->format);
    else if (q->json_schema) RM_TRY(rm_json_schema_grammar(q->json_schema, strlen(q->json_schema), &g));
    else RM_TRY(rm_gbnf_grammar(q->grammar, strlen(q->grammar), &g));
    if (!e->vocab) {
        rm_status st = rm_vocab_trie_new(e->tok, e->m->cfg.vocab_size, &e->vocab);
        if (st != RAMOLE_OK) {
            rm_grammar_free(g);
            return st;
        }
    }
    if (!q->format_trigger || !*q->format_trigger) return rm_token_filter_new(e->vocab, g, !q->ignore_eos, &r->format);
    r->n_trigger = strlen(q->format_trigger);
    if (!(r->trigger = rm_strdup(q->format_trigger)) || !(r->tail = rm_malloc(r->n_trigger))) {
        rm_grammar_free(g);
        return rm_err(RAMOLE_ERR_NOMEM, "request: out of memory");
    }
    return rm_token_filter_new(e->vocab, g, !q->ignore_eos, &r->waiting);
}

/* A format waiting for its trigger, after token id: once the answer's
 * bytes hold the trigger, the format applies from it (the trigger and what
 * followed it in the token go through the grammar). When the grammar
 * refuses those bytes the answer stays free text. Per token, without an
 * allocation: the trigger either begins in the kept tail and ends in the
 * token, or lies in the token. */
static void watch_trigger(rm_engine *e, req *r, int32_t id) {
    const char *s, *t = r->trigger;
    size_t len, nt = r->n_trigger, from_tail = 0;
    if (rm_tok_is_special(e->tok, id) || rm_tok_piece(e->tok, id, &s, &len) != RAMOLE_OK || !len) return;
    for (size_t j = nt - 1; j > 0 && !from_tail; j--) /* the longest part in the tail begins soonest */
        if (j <= r->n_tail && nt - j <= len && !memcmp(r->tail + r->n_tail - j, t, j) && !memcmp(s, t + j, nt - j))
            from_tail = j;
    const char *in = from_tail ? s : memmem(s, len, t, nt);
    if (in) {
        r->format = r->waiting, r->waiting = NULL;
        if (rm_token_filter_take_bytes(r->format, t, from_tail) != RAMOLE_OK ||
            rm_token_filter_take_bytes(r->format, in, (size_t)(s + len - in)) != RAMOLE_OK) {
            rm_token_filter_free(r->format); /* text the grammar cannot follow: the answer stays free */
            r->format = NULL;
        }
        return;
    }
    /* keep the last nt - 1 bytes: a trigger may end in the next token */
    size_t keep = nt - 1;
    if (len >= keep) {
        memcpy(r->tail, s + len - keep, keep);
        r->n_tail = keep;
    } else {
        size_t old = r->n_tail < keep - len ? r->n_tail : keep - len;
        memmove(r->tail, r->tail + r->n_tail - old, old);
        memcpy(r->tail + old, s, len);
        r->n_tail = old + len;
    }
}

/* A generation's own checks: sampling, length, stop strings, response
 * format, adapters; its token list grows to hold what it may generate. */
static rm_status bind_generation(rm_engine *e, const rm_engine_request *q, req *r) {
    RM_TRY(check_sampling(&q->sampling));
    if (q->max_tokens < 0) return rm_err(RAMOLE_ERR_INVALID, "request: max_tokens must be >= 0");
    int room = e->p.n_ctx - r->n_prompt;
    r->prompt_only = q->prompt_only;
    r->max_new = q->prompt_only ? 0 : q->max_tokens ? q->max_tokens : room;
    if (r->max_new > room)
        return rm_err(RAMOLE_ERR_RANGE, "request: %d prompt tokens + max_tokens %d exceed the context of %d",
                      r->n_prompt, q->max_tokens, e->p.n_ctx);
    RM_TRY(check_kv(e, r));
    if (q->n_stop < 0) return rm_err(RAMOLE_ERR_INVALID, "request: n_stop must be >= 0");
    if (q->n_stop > 0 && !e->tok) return rm_err(RAMOLE_ERR_INVALID, "request: stop strings need a model with a tokenizer");
    RM_TRY(rm_detok_init(&r->detok, q->stop, q->n_stop));
    RM_TRY(rm_sampler_new(&q->sampling, e->m->cfg.vocab_size, &r->smp));
    RM_TRY(bind_format(e, q, r));
    RM_TRY(bind_adapters(e, q, r));
    bind_cache_key(r, q->cache_salt);
    if (r->max_new > 0) {
        int32_t *t = rm_realloc(r->toks, (size_t)(r->n_prompt + r->max_new) * sizeof *t);
        if (!t) return rm_err(RAMOLE_ERR_NOMEM, "request: out of memory");
        r->toks = t, r->cap = r->n_prompt + r->max_new;
    }
    return RAMOLE_OK;
}

rm_status rm_engine_submit(rm_engine *e, const rm_engine_request *q, int64_t *id) {
    *id = 0;
    req *r = rm_calloc(1, sizeof *r);
    if (!r) return rm_err(RAMOLE_ERR_NOMEM, "engine: out of memory");
    r->slot = -1;
    r->fn = q->on_event;
    r->user = q->user;
    r->ignore_eos = q->ignore_eos;
    r->logprobs = q->logprobs;
    r->n_top = q->top_logprobs;
    r->prompt_lps = q->prompt_logprobs;
    if (q->top_logprobs < 0 || q->top_logprobs > RM_MAX_TOP_LOGPROBS || (q->top_logprobs && !q->logprobs) ||
        (q->prompt_logprobs && (!q->logprobs || q->embed))) {
        rm_free(r);
        return rm_err(RAMOLE_ERR_INVALID, "request: top_logprobs %d (0..%d) and prompt_logprobs need logprobs, "
                      "and an embedding has none", q->top_logprobs, RM_MAX_TOP_LOGPROBS);
    }
    rm_status st = encode_prompt(e, q, r);
    if (st == RAMOLE_OK && r->prompt_lps) /* the first token: nothing comes before it */
        st = rm_logprob_list_add(&r->plist, r->toks[0], NAN, NULL, r->n_top);
    if (st == RAMOLE_OK) st = q->embed ? bind_embed(e, q, r) : bind_generation(e, q, r);
    if (st != RAMOLE_OK) {
        req_free(e, r);
        return st;
    }
    r->id = e->next_id++;
    *id = r->id;
    wait_push_back(e, r);
    return RAMOLE_OK;
}

static req *find_req(rm_engine *e, int64_t id) {
    for (int s = 0; s < e->p.max_seqs; s++)
        if (e->slots[s] && e->slots[s]->id == id) return e->slots[s];
    for (req *r = e->wait_head; r; r = r->next)
        if (r->id == id) return r;
    return NULL;
}

rm_status rm_engine_cancel(rm_engine *e, int64_t id) {
    req *r = find_req(e, id);
    if (!r) return rm_err(RAMOLE_ERR_NOT_FOUND, "engine: request %lld is not pending", (long long)id);
    finish(e, r, RM_FINISH_CANCELLED, NULL);
    return RAMOLE_OK;
}

void rm_engine_cancel_all(rm_engine *e) {
    for (int s = 0; s < e->p.max_seqs; s++)
        if (e->slots[s]) finish(e, e->slots[s], RM_FINISH_CANCELLED, NULL);
    while (e->wait_head) finish(e, e->wait_head, RM_FINISH_CANCELLED, NULL);
}

int rm_engine_pending(const rm_engine *e) { return e->n_running + e->st.waiting; }

bool rm_engine_drop_adapter(rm_engine *e, const char *name) { return rm_adapter_cache_drop(e->adapters, name); }

/* ---- the step ---------------------------------------------------------------- */

static int free_slot(const rm_engine *e) {
    for (int s = 0; s < e->p.max_seqs; s++)
        if (!e->slots[s]) return s;
    return -1;
}

/* Layers whose KV an embedding of r's layer writes: those below it. */
static int embed_kv_layers(const rm_engine *e, const req *r) {
    return r->embed_layer == RM_HIDDEN_FINAL ? e->m->cfg.n_layers : r->embed_layer;
}

/* An embedding in a fresh slot starts after its shared prefix when the
 * store keeps that prefix's rows (and the pool has the blocks); the rows
 * before embed_from are not summed, so its sum starts empty either way. */
static void prefix_restore(rm_engine *e, req *r) {
    if (!r->embed_shared) return;
    int layers = embed_kv_layers(e, r);
    rm_prefix_hit hit;
    if (rm_prefix_store_match(e->prefixes, NULL, 0, r->toks, r->embed_shared, layers, -1, &hit) < r->embed_shared ||
        rm_ctx_seq_put(e->ctx, r->slot, r->embed_shared, layers, &hit.rows) != RAMOLE_OK)
        return;
    r->n_cached = r->embed_shared;
    e->st.prefix_hits++;
    e->st.prefix_tokens += r->embed_shared;
}

/* Keep r's shared prefix once a chunk of `chunk` tokens completes it. A
 * failure to keep it costs only speed. */
static void prefix_keep(rm_engine *e, const req *r, int chunk) {
    if (!r->embed_shared || r->n_cached >= r->embed_shared || r->n_cached + chunk < r->embed_shared) return;
    if (rm_prefix_store_add(e->prefixes, NULL, 0, e->kv, r->slot, r->toks, r->embed_shared, embed_kv_layers(e, r),
                            NULL) != RAMOLE_OK)
        rm_log_warn("engine: %s", ramole_last_error());
}

/*
 * Give r, which has run nothing since its admission, the first n rows of
 * a running request (from) or of kept rows, in place of the fewer it
 * holds: it goes on after them, as if it had computed them. Its last
 * token always runs (n < n_toks): its logits are what it samples from.
 * A request recording its prompt's log-probabilities takes those of
 * tokens [0, n] from lps too (token n's comes from row n - 1, which it
 * does not run), unless it recorded them itself before a preemption.
 * The copy takes from the blocks the step's plan has left (*free_blocks);
 * false when they or memory are short, and r computes its rows itself.
 */
static bool take_rows(rm_engine *e, req *r, int n, const req *from, const rm_kv_rows *rows,
                      const rm_logprob_list *lps, int *free_blocks) {
    int need = rm_kv_blocks_for(e->kv, n) - rm_kv_seq_blocks(e->kv, r->slot);
    if (need > *free_blocks) return false;
    rm_logprob_list head = {0};
    if (r->prompt_lps && r->plist.n < n + 1 && rm_logprob_list_copy_head(&head, lps, n + 1, r->n_top) != RAMOLE_OK)
        return false;
    if (r->n_cached) {
        rm_ctx_seq_clear(e->ctx, r->slot);
        r->n_cached = 0;
    }
    if ((from ? rm_ctx_seq_copy(e->ctx, from->slot, r->slot, n)
              : rm_ctx_seq_put(e->ctx, r->slot, n, e->m->cfg.n_layers, rows)) != RAMOLE_OK) {
        rm_logprob_list_free(&head);
        return false;
    }
    if (head.n) {
        rm_logprob_list_free(&r->plist);
        r->plist = head;
    }
    *free_blocks -= need;
    r->n_cached = n;
    if (!r->fed) r->prompt_cached = n;
    return true;
}

/* Rows r may take from a source sharing `run` leading tokens with it: a
 * request recording its prompt's log-probabilities runs the last shared
 * row itself, whose logits score its first token of its own. */
static int rows_to_take(const req *r, int run) { return r->prompt_lps ? run - 1 : run; }

/* Put the head of the queue into slot s. */
static rm_status admit(rm_engine *e, int s) {
    req *r = wait_pop(e);
    rm_status st = rm_lora_set(e->lora, s, &r->comp);
    if (st != RAMOLE_OK) { /* validated at submit: only memory can fail here */
        emit(e, r, RM_FINISH_ERROR, -1, NULL, 0, ramole_last_error());
        req_free(e, r);
        return st;
    }
    r->slot = s;
    r->n_cached = 0;
    e->slots[s] = r;
    e->n_running++;
    if (r->embed) { /* a fresh sum: after a preemption the list is fed again */
        memset(r->acc, 0, (size_t)e->m->cfg.hidden * sizeof *r->acc);
        prefix_restore(e, r);
    } else {
        r->ran = false; /* the planner gives it what it shares (share_prompt) */
    }
    return RAMOLE_OK;
}

/* Running requests oldest first: lower ids arrived earlier. */
static int by_id(const void *a, const void *b) {
    int64_t x = (*(req *const *)a)->id, y = (*(req *const *)b)->id;
    return (x > y) - (x < y);
}

static int collect_running(rm_engine *e) {
    int n = 0;
    for (int s = 0; s < e->p.max_seqs; s++)
        if (e->slots[s]) e->order[n++] = e->slots[s];
    qsort(e->order, (size_t)n, sizeof *e->order, by_id);
    return n;
}

/* Free the newest running request's blocks; it goes back to the front of
 * the queue and recomputes later. Returns its index in order[]. */
static int preempt_newest(rm_engine *e, int n) {
    int newest = n - 1;
    while (newest >= 0 && !e->order[newest]) newest--;
    req *r = e->order[newest];
    slot_leave(e, r);
    wait_push_front(e, r);
    e->order[newest] = NULL;
    e->st.preemptions++;
    return newest;
}

static int kv_short(const rm_engine *e, const req *r, int chunk) {
    return rm_kv_blocks_short(e->kv, r->slot, r->n_cached + chunk);
}

/* Free blocks once the chunks chosen for order[0..i) have their blocks. */
static int free_after(const rm_engine *e, int i) {
    int f = rm_kv_free_blocks(e->kv);
    for (int j = 0; j < i; j++)
        if (e->order[j] && e->chunk[j]) f -= kv_short(e, e->order[j], e->chunk[j]);
    return f;
}

/*
 * Choose what each running request feeds this step (e->chunk, by position
 * in order[]); returns the token count.
 *  1. Decode tokens first, oldest first: a stream that is generating never
 *     waits behind prompts, so inter-token latency stays flat however many
 *     prompts arrive. A decode that needs a block when none is free
 *     preempts the newest request (perhaps itself), whose blocks it takes.
 *  2. Prompt chunks with what the budget leaves, oldest first: a long
 *     prompt is cut into chunks and never stalls the others. A chunk is
 *     cut to the free blocks; prefill never preempts (it would thrash).
 *     While sequences decode, the prompt tokens are also bounded by the
 *     prefill allowance (prefill_allowance): a step's cost grows with its
 *     tokens once past the memory-bound floor, and every decoding stream
 *     waits for the whole step, so a step carrying a full budget of
 *     prompt would be a latency spike for all of them.
 */
static int prefill_allowance(const rm_engine *e, int decodes) {
    int left = e->p.step_tokens - decodes;
    if (!decodes || e->p.prefill_tokens < 0) return left; /* nobody waits on this step */
    int allow = e->p.prefill_tokens ? e->p.prefill_tokens
                                    : decodes > RM_ENGINE_PREFILL_MIN ? decodes : RM_ENGINE_PREFILL_MIN;
    return allow < left ? allow : left;
}

/* A step keeps the hidden states of one layer: the first embedding it
 * takes sets it, and embeddings of another layer wait a step. */
static bool layer_fits(rm_engine *e, const req *r) {
    if (!r->embed) return true;
    if (e->step_layer == RM_HIDDEN_OFF) e->step_layer = r->embed_layer;
    return e->step_layer == r->embed_layer;
}

/* The positions of r's next `len` rows, from its cache on, whose logits give
 * a prompt token's log-probability: those before the prompt's last token
 * whose next token is not recorded yet (a recomputation after preemption
 * records nothing twice). */
static int prompt_rows(const req *r, int len, int *first) {
    if (first) *first = r->n_cached;
    if (!r->prompt_lps) return 0;
    int lo = r->plist.n - 1 > r->n_cached ? r->plist.n - 1 : r->n_cached;
    int hi = r->n_cached + len < r->n_prompt - 1 ? r->n_cached + len : r->n_prompt - 1;
    if (first) *first = lo;
    return hi > lo ? hi - lo : 0;
}

/* Cut a prompt chunk of `want` tokens so that its prompt rows fit the
 * logits left (*rows_left, then taken); 0 when none fits this step. */
static int prompt_rows_cap(const req *r, int want, int *rows_left) {
    int first, rows = prompt_rows(r, want, &first);
    if (rows > *rows_left) {
        want = first - r->n_cached + *rows_left;
        rows = prompt_rows(r, want, NULL);
    }
    *rows_left -= rows;
    return want;
}

typedef enum { SHARE_NONE, SHARE_WAIT, SHARE_COPIED } share_use;

/*
 * Before r (order i) computes its prompt, it starts after the longest run
 * of leading tokens it shares, at least RM_ENGINE_PREFIX_MIN, with the
 * rows kept under its key or with an older running request of its key.
 * A running request gives its rows once it holds them, and r waits until
 * then; the oldest never waits, so waits end (and if that request leaves
 * first, its rows are among the kept ones). Twins (the same prompt: the
 * n samples of one prompt) share whatever the prompt's length; without
 * the prefix cache (prefix_cache_mib < 0) they alone share. A request
 * recording its prompt's log-probabilities takes them with the rows, so
 * only from rows that carry them (as many alternatives or more), and
 * only within that request's prompt. Not for requests that are not
 * cacheable (embeddings, routers pooled over the prompt) or that ran a
 * chunk since admission.
 */
static share_use share_prompt(rm_engine *e, int i, int *free_blocks) {
    req *r = e->order[i];
    if (!r->cacheable || r->ran) return SHARE_NONE;
    int limit = r->n_toks - 1, kept = 0, best = 0;
    rm_prefix_hit hit = {0};
    if (e->prompts && limit >= RM_ENGINE_PREFIX_MIN)
        kept = rows_to_take(r, rm_prefix_store_match(e->prompts, &r->key, sizeof r->key, r->toks, limit,
                                                     e->m->cfg.n_layers, r->prompt_lps ? r->n_top : -1, &hit));
    if (kept < RM_ENGINE_PREFIX_MIN) kept = 0;
    const req *from = NULL;
    for (int j = 0; j < i; j++) {
        const req *a = e->order[j];
        if (!a || !a->cacheable || memcmp(&a->key, &r->key, sizeof r->key)) continue;
        if (r->prompt_lps && (!a->prompt_lps || a->n_top < r->n_top)) continue;
        int reach = r->prompt_lps ? a->n_prompt : a->n_toks;
        int c = rows_to_take(r, rm_prefix_common(a->toks, r->toks, reach < limit ? reach : limit));
        if (c > best) best = c, from = a;
    }
    bool twin = from && !r->prompt_lps && best == limit && r->n_toks == r->n_prompt &&
                from->n_prompt == r->n_prompt && from->toks[limit] == r->toks[limit];
    bool running = from && best > kept && (twin || (e->prompts && best >= RM_ENGINE_PREFIX_MIN));
    int n = running ? best : kept;
    if (n <= r->n_cached) return SHARE_NONE;
    if (running && (from->n_cached < n || (r->prompt_lps && from->plist.n < n + 1))) return SHARE_WAIT;
    if (!take_rows(e, r, n, running ? from : NULL, &hit.rows, running ? &from->plist : hit.lps, free_blocks))
        return SHARE_NONE;
    if (twin) e->st.twin_hits++, e->st.twin_tokens += n;
    else e->st.prefix_cache_hits++, e->st.prefix_cache_tokens += n;
    return SHARE_COPIED;
}

static int plan(rm_engine *e, int n) {
    int budget = e->p.step_tokens, used = 0;
    int free_blocks = rm_kv_free_blocks(e->kv);
    for (int i = 0; i < n; i++) e->chunk[i] = 0;
    e->step_layer = RM_HIDDEN_OFF;
    for (int i = 0; i < n && used < budget; i++) {
        req *r = e->order[i];
        if (!r || r->n_toks - r->n_cached != 1 || !layer_fits(e, r)) continue;
        while (e->order[i] && kv_short(e, r, 1) > free_blocks) {
            preempt_newest(e, n);
            free_blocks = free_after(e, i);
        }
        if (!e->order[i]) continue;
        free_blocks -= kv_short(e, r, 1);
        e->chunk[i] = 1;
        used++;
    }
    budget = used + prefill_allowance(e, used);
    int rows_left = e->p.prompt_rows; /* logits kept beyond one per sequence */
    for (int i = 0; i < n && used < budget; i++) {
        req *r = e->order[i];
        if (!r || e->chunk[i]) continue;
        share_use use = share_prompt(e, i, &free_blocks);
        if (use == SHARE_WAIT || (use == SHARE_NONE && r->n_toks - r->n_cached <= 1)) continue;
        if (!layer_fits(e, r)) continue;
        int want = r->n_toks - r->n_cached;
        if (want > budget - used) want = budget - used;
        want = prompt_rows_cap(r, want, &rows_left);
        /* what the free blocks hold: the partly filled last block, then whole ones */
        int room = rm_kv_seq_blocks(e->kv, r->slot) * e->p.kv_block - r->n_cached + free_blocks * e->p.kv_block;
        if (want > room) want = room;
        if (want <= 0) continue;
        free_blocks -= kv_short(e, r, want);
        e->chunk[i] = want;
        used += want;
    }
    return used;
}

/* Lay out the batch: each request's chunk, logits on a generation's chunk
 * that reaches the end of its tokens. Embeddings go last: rows of an inner
 * layer's embeddings stop there, and the forward drops a tail (*n_stop
 * rows), not rows in between. */
static int build_batch(rm_engine *e, int n, int *n_stop) {
    int t = 0, first_embed = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) first_embed = t;
        for (int i = 0; i < n; i++) {
            req *r = e->order[i];
            if (!r || !e->chunk[i] || r->embed != (pass == 1)) continue;
            e->row0[i] = t;
            for (int c = 0; c < e->chunk[i]; c++, t++) {
                e->b_tok[t] = r->toks[r->n_cached + c];
                e->b_pos[t] = r->n_cached + c;
                e->b_seq[t] = r->slot;
                e->b_want[t] = 0;
            }
            e->b_want[t - 1] = !r->embed && r->n_cached + e->chunk[i] == r->n_toks;
            int first, rows = prompt_rows(r, e->chunk[i], &first);
            for (int p = first; p < first + rows; p++) e->b_want[e->row0[i] + p - r->n_cached] = 1;
        }
    }
    *n_stop = e->step_layer >= 0 ? t - first_embed : 0;
    return t;
}

static int count_adapters(rm_engine *e, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        req *r = e->order[i];
        if (!r || !e->chunk[i] || r->comp.mode == RM_COMPOSE_NONE) continue;
        for (int j = 0; j <= r->comp.k; j++) {
            const rm_adapter *a = j < r->comp.k ? r->comp.experts[j] : r->comp.router;
            if (!a) continue;
            int s = 0;
            while (s < k && e->seen[s] != a) s++;
            if (s == k) e->seen[k++] = a;
        }
    }
    return k;
}

/* Add the step's traced gates to the router-mode requests: the mean over
 * modules at each answer position (from the last prompt token on, whose
 * output is the first answer token), each position once. */
static void gates_collect(rm_engine *e, int n) {
    int K = e->p.max_adapters;
    for (int i = 0; i < n; i++) {
        req *r = e->order[i];
        if (!r || !e->chunk[i]) continue;
        for (int c = 0, t = e->row0[i]; c < e->chunk[i]; c++, t++) {
            if (r->comp.mode != RM_COMPOSE_ROUTER || e->b_pos[t] != r->gate_next || !e->t_n[t]) continue;
            for (int j = 0; j < r->comp.k; j++) r->gate_sum[j] += e->t_gates[(size_t)t * K + j] / e->t_n[t];
            r->gate_n++;
            r->gate_next++;
        }
    }
}

/* Add an embedding's rows [t, t + chunk) of the batch to its sum (which
 * admit empties); when the cache holds the whole list, report the mean
 * and finish. */
static void embed_advance(rm_engine *e, req *r, int t, int chunk) {
    int d = e->m->cfg.hidden;
    for (int c = 0; c < chunk; c++) {
        if (r->n_cached + c < r->embed_from) continue;
        const float *h = rm_ctx_hidden(e->ctx, t + c);
        for (int k = 0; k < d; k++) r->acc[k] += h[k];
    }
    r->n_cached += chunk;
    if (r->n_cached < r->n_toks) return;
    double inv = 1.0 / (double)(r->n_toks - r->embed_from);
    for (int k = 0; k < d; k++) e->pooled[k] = (float)(r->acc[k] * inv);
    emit(e, r, RM_FINISH_LENGTH, -1, NULL, 0, NULL);
    slot_leave(e, r);
    req_free(e, r);
}

/* Record prompt token t's log-probability from the logits of the row before it. */
static rm_status prompt_logprob(rm_engine *e, req *r, int t, const float *logits) {
    rm_token_logprob top[RM_MAX_TOP_LOGPROBS];
    float lp = rm_logprobs(logits, e->m->cfg.vocab_size, r->toks[t], r->n_top, top);
    return rm_logprob_list_add(&r->plist, r->toks[t], lp, top, r->n_top);
}

/* Sample r's next token from logits, report it, finish r if it is done.
 * A prompt-only request ends here instead, its prompt having run. */
static void advance(rm_engine *e, req *r, const float *logits) {
    if (r->prompt_only) {
        emit(e, r, RM_FINISH_LENGTH, -1, NULL, 0, NULL);
        slot_leave(e, r);
        req_free(e, r);
        return;
    }
    /* a response format: only the tokens its grammar takes next */
    const uint64_t *allow = NULL;
    rm_status st = RAMOLE_OK;
    if (r->format) {
        int n_allowed;
        st = rm_token_filter_allowed(r->format, &allow, &n_allowed);
        if (st == RAMOLE_OK && !n_allowed)
            st = rm_err(RAMOLE_ERR_UNSUPPORTED, "response format: no token of the vocabulary continues the answer");
        if (st != RAMOLE_OK) {
            finish(e, r, RM_FINISH_ERROR, ramole_last_error());
            return;
        }
    }
    int32_t next = rm_sampler_sample_allowed(r->smp, logits, allow, r->toks, r->n_toks, r->n_toks - r->n_prompt);
    r->toks[r->n_toks++] = next;
    if (r->logprobs) r->lp = rm_logprobs(logits, e->m->cfg.vocab_size, next, r->n_top, r->top);
    e->st.tokens_generated++;
    if (r->format && (st = rm_token_filter_take(r->format, next)) != RAMOLE_OK) {
        finish(e, r, RM_FINISH_ERROR, ramole_last_error());
        return;
    }
    if (r->waiting) watch_trigger(e, r, next);
    /* an end token under a format was allowed only where the answer is
     * complete (also with ignore_eos, when nothing else could follow) */
    bool eog = (e->tok ? rm_tok_is_eog(e->tok, next) : next == e->m->cfg.eos_id) && (!r->ignore_eos || r->format);
    bool formed = r->format && !eog && rm_token_filter_done(r->format); /* the value is complete */
    bool full = r->n_toks - r->n_prompt >= r->max_new || formed;
    const char *text = NULL;
    size_t len = 0;
    if (e->tok && eog) st = rm_detok_finish(&r->detok, e->tok, &text, &len);
    else if (e->tok) st = rm_detok_push(&r->detok, e->tok, next, full, &text, &len);
    if (st != RAMOLE_OK) {
        finish(e, r, RM_FINISH_ERROR, ramole_last_error());
        return;
    }
    rm_finish_reason fin = eog ? RM_FINISH_EOS
                         : r->detok.stopped || formed ? RM_FINISH_STOP
                         : full ? RM_FINISH_LENGTH
                         : RM_FINISH_NONE;
    emit(e, r, fin, next, text, len, NULL);
    if (fin != RM_FINISH_NONE) {
        slot_leave(e, r);
        req_free(e, r);
    }
}

rm_status rm_engine_step(rm_engine *e, int *n_run) {
    *n_run = 0;
    /* 1. Admit waiting requests while a slot is free and the pool holds
     *    their known tokens: admitting one whose prompt cannot fit would
     *    only preempt the others. With nothing running the head is always
     *    admitted (submit checked that it fits alone). */
    for (int s; e->wait_head && (s = free_slot(e)) >= 0;) {
        int need = rm_kv_blocks_for(e->kv, e->wait_head->n_toks);
        if (e->n_running && need > rm_kv_free_blocks(e->kv)) break;
        admit(e, s);
    }
    int n = collect_running(e);
    if (!n) return RAMOLE_OK;

    /* 2. Choose the tokens (decode first, then prompt chunks). */
    int n_tokens = plan(e, n);
    if (!n_tokens) { /* every sequence waits for blocks: make room for the oldest */
        preempt_newest(e, n);
        return RAMOLE_OK;
    }

    /* 3. One forward over the whole batch, keeping the hidden states of the
     *    embeddings' layer only in steps that carry embeddings (the final
     *    layer's costs a norm of every row). */
    int n_stop;
    int nb = build_batch(e, n, &n_stop);
    if (e->kept_layer != e->step_layer) { /* the buffer exists: bind_embed made it */
        rm_ctx_keep_hidden(e->ctx, e->step_layer);
        e->kept_layer = e->step_layer;
    }
    e->st.last_step_tokens = nb;
    e->st.last_step_adapters = count_adapters(e, n);
    rm_batch b = {nb, e->b_tok, e->b_pos, e->b_seq, e->b_want, n_stop};
    bool trace = false;
    for (int i = 0; i < n && !trace; i++)
        trace = e->order[i] && e->chunk[i] && e->order[i]->comp.mode == RM_COMPOSE_ROUTER;
    if (trace) {
        memset(e->t_gates, 0, (size_t)nb * (size_t)e->p.max_adapters * sizeof *e->t_gates);
        memset(e->t_n, 0, (size_t)nb * sizeof *e->t_n);
        rm_lora_trace_gates(e->lora, &(rm_gate_trace){.gates = e->t_gates, .n = e->t_n});
    }
    rm_status st = rm_ctx_decode(e->ctx, &b);
    if (trace) {
        rm_lora_trace_gates(e->lora, NULL);
        if (st == RAMOLE_OK) gates_collect(e, n);
    }
    if (st != RAMOLE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ramole_last_error());
        for (int i = 0; i < n; i++)
            if (e->order[i] && e->chunk[i]) finish(e, e->order[i], RM_FINISH_ERROR, msg);
        return rm_err(st, "%s", msg);
    }
    *n_run = nb;

    /* 4. Generations in batch order (the order of the logits) sample where
     *    a chunk reached the end of their tokens; embeddings add their
     *    rows. Each reports. */
    int li = 0;
    for (int i = 0; i < n; i++) {
        req *r = e->order[i];
        if (!r || !e->chunk[i]) continue;
        if (r->embed) {
            prefix_keep(e, r, e->chunk[i]);
            embed_advance(e, r, e->row0[i], e->chunk[i]);
            continue;
        }
        bool wants = r->n_cached + e->chunk[i] == r->n_toks;
        int first, rows = prompt_rows(r, e->chunk[i], &first);
        rm_status pst = RAMOLE_OK;
        for (int p = first; p < first + rows && pst == RAMOLE_OK; p++)
            pst = prompt_logprob(e, r, p + 1, rm_ctx_logits(e->ctx, li + p - first));
        li += rows;
        if (pst != RAMOLE_OK) { /* a prompt's log-probabilities cut short would read as whole */
            li += wants;
            finish(e, r, RM_FINISH_ERROR, ramole_last_error());
            continue;
        }
        r->n_cached += e->chunk[i];
        r->fed = r->ran = true;
        if (wants) advance(e, r, rm_ctx_logits(e->ctx, li++));
    }
    e->st.tokens_fed += nb;
    return RAMOLE_OK;
}

/* ---- introspection -------------------------------------------------------------- */

void rm_engine_stats_get(rm_engine *e, rm_engine_stats *out) {
    *out = e->st;
    out->running = e->n_running;
    out->kv_blocks_total = e->p.kv_blocks;
    out->kv_blocks_used = e->p.kv_blocks - rm_kv_free_blocks(e->kv);
    rm_adapter_cache_stats_get(e->adapters, &out->adapters);
    out->prefix_cache_entries = e->prompts ? rm_prefix_store_entries(e->prompts) : 0;
    out->prefix_cache_bytes = e->prompts ? rm_prefix_store_bytes(e->prompts) : 0;
}

rm_status rm_engine_check(const rm_engine *e) {
    RM_TRY(rm_kv_check(e->kv));
    int running = 0;
    for (int s = 0; s <= e->p.max_seqs; s++) {
        const req *r = s < e->p.max_seqs ? e->slots[s] : NULL;
        int len = rm_ctx_seq_len(e->ctx, s), owned = rm_kv_seq_blocks(e->kv, s);
        if (!r) {
            if (len || owned)
                return rm_err(RAMOLE_ERR_INTERNAL, "engine check: free slot %d holds %d positions in %d blocks", s,
                              len, owned);
            continue;
        }
        running++;
        if (r->slot != s) return rm_err(RAMOLE_ERR_INTERNAL, "engine check: slot %d holds a request of slot %d", s, r->slot);
        if (len != r->n_cached || owned != rm_kv_blocks_for(e->kv, r->n_cached))
            return rm_err(RAMOLE_ERR_INTERNAL, "engine check: request %lld caches %d tokens; slot %d holds %d "
                          "positions in %d blocks", (long long)r->id, r->n_cached, s, len, owned);
        if (r->n_cached >= r->n_toks)
            return rm_err(RAMOLE_ERR_INTERNAL, "engine check: request %lld has nothing left to feed",
                          (long long)r->id);
    }
    if (running != e->n_running)
        return rm_err(RAMOLE_ERR_INTERNAL, "engine check: %d running, %d counted", running, e->n_running);
    int waiting = 0;
    for (const req *r = e->wait_head; r; r = r->next) {
        waiting++;
        if (r->slot != -1 || r->n_cached)
            return rm_err(RAMOLE_ERR_INTERNAL, "engine check: waiting request %lld holds a slot or cache",
                          (long long)r->id);
    }
    if (waiting != e->st.waiting)
        return rm_err(RAMOLE_ERR_INTERNAL, "engine check: %d waiting, %d counted", waiting, e->st.waiting);
    return RAMOLE_OK;
}
