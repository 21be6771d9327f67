/*
 * api.c — the public contract of include/ramole.h for models, tokenizers
 * and the engine, over the internal modules.
 *
 * The public types are the library's promise to outside programs; the
 * internal ones may change. This file is the only place that converts
 * between them, so it is the one to update when either side moves.
 */
#include <jansson.h>
#include <stddef.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/gbnf.h"
#include "engine/json_schema.h"
#include "engine/request_json.h"
#include "model/public.h"

struct ramole_engine {
    rm_engine *e;
    ramole_adapter_resolve_fn resolve;
    void *resolve_user;
};

/* A request's public callback, reached from the engine's internal one. */
typedef struct {
    ramole_event_fn fn;
    void *user;
    rm_request_spec *spec; /* JSON requests: the parsed storage, freed with the trampoline */
} trampoline;

/* ---- models ------------------------------------------------------------------ */

ramole_status ramole_model_open(const char *path, ramole_model **out) {
    *out = NULL;
    ramole_model *pm = rm_calloc(1, sizeof *pm);
    if (!pm) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = rm_model_open(path, &pm->m);
    if (st != RAMOLE_OK) {
        rm_free(pm);
        return st;
    }
    *out = pm;
    return RAMOLE_OK;
}

void ramole_model_free(ramole_model *pm) {
    if (!pm) return;
    rm_model_free(pm->m);
    rm_free(pm);
}

void ramole_model_get_info(const ramole_model *pm, ramole_model_info *out) {
    const rm_model_config *c = &pm->m->cfg;
    int64_t bytes;
    memset(out, 0, sizeof *out);
    out->arch = rm_arch_name(c->arch);
    out->vocab_size = c->vocab_size;
    out->hidden = c->hidden;
    out->ffn = c->ffn;
    out->n_layers = c->n_layers;
    out->n_heads = c->n_heads;
    out->n_kv_heads = c->n_kv_heads;
    out->max_pos = c->max_pos;
    rm_model_size(pm->m, &out->n_params, &bytes);
    out->has_tokenizer = pm->m->tokenizer != NULL;
    static const char *scaling[] = {"none", "linear", "llama3"};
    out->format = pm->m->source == RM_SOURCE_GGUF ? RAMOLE_FORMAT_GGUF : RAMOLE_FORMAT_HF;
    out->head_dim = c->head_dim;
    out->rope_neox = c->rope.style == RM_ROPE_NEOX;
    out->rope_theta = c->rope.theta;
    out->rope_scaling = scaling[c->rope.scaling];
    out->rope_factor = c->rope.factor;
    out->rope_freq_factors = pm->m->rope_freq_factors != NULL;
    out->rms_eps = c->rms_eps;
    out->qkv_bias = c->qkv_bias;
    out->tied_embeddings = c->tied_embeddings;
    out->bos_id = c->bos_id;
    out->eos_id = c->eos_id;
    out->embd_type = (ramole_type)pm->m->tok_embd.type;
    out->output_type = (ramole_type)pm->m->output.type;
    out->main_type = (ramole_type)rm_model_main_type(pm->m);
    out->n_bytes = bytes;
    out->packed_bytes = (int64_t)pm->m->packed_bytes;
}

static rm_status need_tokenizer(const ramole_model *pm) {
    if (!pm->m->tokenizer) return rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer", pm->m->path);
    return RAMOLE_OK;
}

ramole_status ramole_tokenize(const ramole_model *pm, const char *text, size_t len, int add_special, int32_t *ids,
                              size_t cap, size_t *n_out) {
    *n_out = 0;
    RM_TRY(need_tokenizer(pm));
    return rm_tok_encode_buf(pm->m->tokenizer, text, len, add_special ? RM_TOK_ADD_SPECIAL : 0, ids, cap, n_out);
}

ramole_status ramole_detokenize(const ramole_model *pm, const int32_t *ids, size_t n, int skip_special, char *text,
                                size_t cap, size_t *n_out) {
    *n_out = 0;
    RM_TRY(need_tokenizer(pm));
    char *s = NULL;
    size_t len = 0;
    RM_TRY(rm_tok_decode(pm->m->tokenizer, ids, n, skip_special ? RM_TOK_SKIP_SPECIAL : 0, &s, &len));
    *n_out = len;
    rm_status st = RAMOLE_OK;
    if (len + 1 > cap) st = rm_err(RAMOLE_ERR_TOO_SMALL, "detokenize: %zu bytes do not fit in %zu", len + 1, cap);
    else memcpy(text, s, len + 1);
    rm_free(s);
    return st;
}

/* ---- the engine ------------------------------------------------------------------ */

static rm_status resolve_load(void *user, const rm_model *base, const char *name, rm_adapter **out) {
    ramole_engine *pe = user;
    char path[4096];
    if (pe->resolve(pe->resolve_user, name, path, sizeof path) != 0)
        return rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %s: the resolver knows no such adapter", name);
    path[sizeof path - 1] = 0;
    return rm_adapter_load(base, path, out);
}

ramole_status ramole_engine_new(const ramole_model *pm, const ramole_engine_params *pp, ramole_engine **out) {
    *out = NULL;
    ramole_engine_params p = pp ? *pp : (ramole_engine_params){0};
    static const rm_type adapter_types[] = {RM_TYPE_F32, RM_TYPE_F16, RM_TYPE_BF16};
    if ((unsigned)p.kv_type > RAMOLE_KV_F16 || (unsigned)p.adapter_type > RAMOLE_ADAPTERS_BF16)
        return rm_err(RAMOLE_ERR_INVALID, "engine: unknown KV or adapter type");
    ramole_engine *pe = rm_calloc(1, sizeof *pe);
    if (!pe) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    pe->resolve = p.resolve;
    pe->resolve_user = p.resolve_user;
    rm_engine_params ep = {.n_threads = p.n_threads, .max_seqs = p.max_seqs, .n_ctx = p.n_ctx,
                           .step_tokens = p.step_tokens, .prefill_tokens = p.prefill_tokens, .kv_blocks = p.kv_blocks, .kv_block = p.kv_block,
                           .kv_type = p.kv_type == RAMOLE_KV_F16 ? RM_TYPE_F16 : RM_TYPE_F32,
                           .max_adapters = p.max_adapters, .max_rank = p.max_rank,
                           .adapter_cache_bytes = p.adapter_cache_bytes,
                           .prefix_cache_mib = p.prefix_cache_mib,
                           .adapter_type = adapter_types[p.adapter_type],
                           .source = {p.resolve ? resolve_load : NULL, pe}};
    rm_status st = rm_engine_new(pm->m, &ep, &pe->e);
    if (st != RAMOLE_OK) {
        rm_free(pe);
        return st;
    }
    *out = pe;
    return RAMOLE_OK;
}

void ramole_engine_free(ramole_engine *pe) {
    if (!pe) return;
    rm_engine_cancel_all(pe->e); /* each trampoline goes with its request's last event */
    rm_engine_free(pe->e);
    rm_free(pe);
}

void ramole_request_init(ramole_request *r) {
    rm_engine_request q;
    rm_engine_request_init(&q);
    memset(r, 0, sizeof *r);
    r->temperature = q.sampling.temperature;
    r->top_p = 1.0f;
    r->repeat_penalty = 1.0f;
    r->repeat_last_n = q.sampling.repeat_last_n;
    r->seed = q.sampling.seed;
    for (int j = 0; j < 16; j++) r->weights[j] = 1.0f;
}

void ramole_request_sampling_default(ramole_request *r) {
    rm_sampler_params sp;
    rm_sampler_params_default(&sp);
    r->temperature = sp.temperature;
    r->top_k = sp.top_k;
    r->top_p = sp.top_p;
    r->min_p = sp.min_p;
    r->repeat_penalty = sp.repeat_penalty;
    r->repeat_last_n = sp.repeat_last_n;
    r->frequency_penalty = sp.frequency_penalty;
    r->presence_penalty = sp.presence_penalty;
    r->seed = sp.seed;
}

const char *ramole_compose_mode_name(ramole_compose_mode m) { return rm_compose_mode_name((rm_compose_mode)m); }

int ramole_compose_mode_from_name(const char *s, ramole_compose_mode *out) {
    rm_compose_mode m;
    if (!rm_compose_mode_from_name(s, &m)) return 0;
    *out = (ramole_compose_mode)m;
    return 1;
}

static void trampoline_free(trampoline *t) {
    if (!t) return;
    if (t->spec) rm_request_spec_free(t->spec);
    rm_free(t->spec);
    rm_free(t);
}

static void on_event(const rm_engine_event *ev, void *user) {
    trampoline *t = user;
    ramole_event pev = {.id = ev->id, .finish = (ramole_finish)ev->finish, .token = ev->token, .text = ev->text,
                        .len = ev->len, .error = ev->error, .n_prompt = ev->n_prompt,
                        .n_generated = ev->n_generated, .logprob = ev->logprob,
                        .top = (const ramole_token_logprob *)ev->top, .n_top = ev->n_top,
                        .n_prompt_cached = ev->n_prompt_cached};
    if (t->fn) t->fn(&pev, t->user);
    if (ev->finish != RM_FINISH_NONE) trampoline_free(t);
}

/* Submit q with a trampoline that owns t (freed on the request's last event,
 * or here when it is refused). */
static ramole_status submit(ramole_engine *pe, rm_engine_request *q, trampoline *t, int64_t *id) {
    q->on_event = on_event;
    q->user = t;
    rm_status st = rm_engine_submit(pe->e, q, id);
    if (st != RAMOLE_OK) trampoline_free(t);
    return st;
}

ramole_status ramole_engine_submit(ramole_engine *pe, const ramole_request *r, int64_t *id) {
    *id = 0;
    if (r->n_adapters < 0 || r->n_adapters > RM_LORA_MAX_K || r->n_messages < 0)
        return rm_err(RAMOLE_ERR_INVALID, "request: %d adapters (0..%d), %d messages", r->n_adapters, RM_LORA_MAX_K,
                      r->n_messages);
    if ((unsigned)r->mode >= RM_COMPOSE_COUNT) return rm_err(RAMOLE_ERR_INVALID, "request: unknown mode %d", r->mode);
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.tokens = r->tokens;
    q.n_tokens = r->n_tokens;
    q.prompt = r->prompt;
    q.messages = (const rm_chat_msg *)r->messages; /* the same two fields; checked below */
    q.n_messages = r->n_messages;
    q.sampling.temperature = r->temperature;
    q.sampling.top_p = r->top_p;
    q.sampling.top_k = r->top_k;
    q.sampling.min_p = r->min_p;
    q.sampling.repeat_penalty = r->repeat_penalty;
    q.sampling.repeat_last_n = r->repeat_last_n;
    q.sampling.frequency_penalty = r->frequency_penalty;
    q.sampling.presence_penalty = r->presence_penalty;
    q.sampling.logit_bias = (const rm_logit_bias *)r->logit_bias;
    q.sampling.n_logit_bias = r->n_logit_bias;
    q.sampling.seed = r->seed;
    q.max_tokens = r->max_tokens;
    q.stop = r->stop;
    q.n_stop = r->n_stop;
    q.ignore_eos = r->ignore_eos != 0;
    q.json_schema = r->json_schema;
    q.grammar = r->grammar;
    q.logprobs = r->logprobs != 0;
    q.top_logprobs = r->top_logprobs;
    q.mode = (rm_compose_mode)r->mode;
    q.n_adapters = r->n_adapters;
    for (int j = 0; j < r->n_adapters; j++)
        q.adapters[j] = r->adapters[j], q.weights[j] = r->weights[j], q.retrieval[j] = r->retrieval[j];
    q.router = r->router;
    q.cache_salt = r->cache_salt;
    trampoline *t = rm_calloc(1, sizeof *t);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    t->fn = r->on_event;
    t->user = r->user;
    return submit(pe, &q, t, id);
}

_Static_assert(sizeof(ramole_chat_msg) == sizeof(rm_chat_msg) &&
                   offsetof(ramole_chat_msg, content) == offsetof(rm_chat_msg, content) &&
                   offsetof(ramole_chat_msg, calls) == offsetof(rm_chat_msg, calls) &&
                   offsetof(ramole_chat_msg, n_calls) == offsetof(rm_chat_msg, n_calls) &&
                   sizeof(ramole_chat_call) == sizeof(rm_chat_call) &&
                   offsetof(ramole_chat_call, arguments) == offsetof(rm_chat_call, arguments),
               "ramole_chat_msg and rm_chat_msg must share their layout");
_Static_assert((int)RAMOLE_COMPOSE_ROUTER == (int)RM_COMPOSE_ROUTER && (int)RAMOLE_FINISH_ERROR == (int)RM_FINISH_ERROR,
               "public and internal enums must agree");

/* A request of the public API from JSON: what the server's bodies take,
 * but "echo", which only the server's completions answer (a result's or
 * an event's text is the answer's alone). */
static rm_status public_spec(const json_t *o, rm_request_spec *spec) {
    RM_TRY(rm_request_spec_from_json(o, spec));
    if (!spec->echo) return RAMOLE_OK;
    rm_request_spec_free(spec);
    return rm_err(RAMOLE_ERR_INVALID, "field \"echo\" is answered by the server's completions only; here the "
                  "prompt is yours already");
}

ramole_status ramole_engine_submit_json(ramole_engine *pe, const char *text, size_t len, ramole_event_fn fn,
                                        void *user, int64_t *id) {
    *id = 0;
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (!o) return rm_err(RAMOLE_ERR_FORMAT, "request: not valid JSON: %s (column %d)", jerr.text, jerr.column);
    trampoline *t = rm_calloc(1, sizeof *t);
    rm_request_spec *spec = rm_calloc(1, sizeof *spec);
    rm_status st = t && spec ? public_spec(o, spec) : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    json_decref(o);
    if (st != RAMOLE_OK) {
        rm_free(spec);
        rm_free(t);
        return st;
    }
    t->fn = fn;
    t->user = user;
    t->spec = spec;
    return submit(pe, &spec->req, t, id);
}

ramole_status ramole_engine_cancel(ramole_engine *pe, int64_t id) { return rm_engine_cancel(pe->e, id); }
ramole_status ramole_engine_step(ramole_engine *pe, int *n_run) { return rm_engine_step(pe->e, n_run); }
int ramole_engine_pending(const ramole_engine *pe) { return rm_engine_pending(pe->e); }
int ramole_engine_drop_adapter(ramole_engine *pe, const char *name) { return rm_engine_drop_adapter(pe->e, name); }

void ramole_engine_get_stats(ramole_engine *pe, ramole_engine_stats *out) {
    rm_engine_stats st;
    rm_engine_stats_get(pe->e, &st);
    *out = (ramole_engine_stats){.waiting = st.waiting, .running = st.running, .kv_blocks_used = st.kv_blocks_used,
                                 .kv_blocks_total = st.kv_blocks_total, .preemptions = st.preemptions,
                                 .adapters_cached = st.adapters.entries, .adapters_held = st.adapters.held,
                                 .adapter_hits = st.adapters.hits, .adapter_misses = st.adapters.misses,
                                 .tokens_fed = st.tokens_fed, .tokens_generated = st.tokens_generated};
}

const char *ramole_finish_name(ramole_finish f) { return rm_finish_reason_name((rm_finish_reason)f); }

/* ---- running a list of requests ------------------------------------------------ */

struct ramole_parsed_request {
    rm_request_spec spec;
};

ramole_status ramole_request_parse(const char *text, size_t len, ramole_parsed_request **out) {
    *out = NULL;
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (!o) return rm_err(RAMOLE_ERR_FORMAT, "not valid JSON: %s (column %d)", jerr.text, jerr.column);
    ramole_parsed_request *r = rm_calloc(1, sizeof *r);
    rm_status st = r ? public_spec(o, &r->spec) : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    json_decref(o);
    if (st != RAMOLE_OK) {
        rm_free(r);
        return st;
    }
    *out = r;
    return RAMOLE_OK;
}

void ramole_parsed_request_free(ramole_parsed_request *r) {
    if (!r) return;
    rm_request_spec_free(&r->spec);
    rm_free(r);
}

ramole_status ramole_request_tool_calls(const ramole_parsed_request *r, const char *text, size_t len,
                                        ramole_tool_call **calls, int *n, size_t *content_len) {
    *calls = NULL, *n = 0, *content_len = len;
    if (!rm_tools_active(&r->spec.tools)) return RAMOLE_OK;
    return rm_tool_calls_parse(text, len, (rm_tool_call **)calls, n, content_len);
}

void ramole_tool_calls_free(ramole_tool_call *calls, int n) { rm_tool_calls_free((rm_tool_call *)calls, n); }

_Static_assert(sizeof(ramole_tool_call) == sizeof(rm_tool_call) &&
                   offsetof(ramole_tool_call, arguments) == offsetof(rm_tool_call, arguments),
               "ramole_tool_call and rm_tool_call must share their layout");
_Static_assert(sizeof(ramole_result) == sizeof(rm_engine_result) &&
                   offsetof(ramole_result, text) == offsetof(rm_engine_result, text) &&
                   offsetof(ramole_result, tokens) == offsetof(rm_engine_result, tokens) &&
                   offsetof(ramole_result, n_prompt) == offsetof(rm_engine_result, n_prompt) &&
                   offsetof(ramole_result, logprobs.top) == offsetof(rm_engine_result, logprobs.top) &&
                   sizeof(ramole_token_logprob) == sizeof(rm_token_logprob) &&
                   sizeof(ramole_logit_bias) == sizeof(rm_logit_bias) &&
                   RAMOLE_MAX_TOP_LOGPROBS == RM_MAX_TOP_LOGPROBS &&
                   offsetof(ramole_result, error) == offsetof(rm_engine_result, error),
               "ramole_result and rm_engine_result must share their layout");

void ramole_result_clear(ramole_result *r) { rm_engine_result_free((rm_engine_result *)r); }

ramole_status ramole_engine_run_all(ramole_engine *pe, ramole_parsed_request *const *reqs, int n,
                                    ramole_result *results, ramole_progress_fn progress, void *user) {
    const rm_engine_request **q = rm_calloc(n > 0 ? (size_t)n : 1, sizeof *q);
    if (!q) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) q[i] = reqs[i] ? &reqs[i]->spec.req : NULL;
    rm_status st = rm_engine_run_all(pe->e, q, n, 0, (rm_engine_result *)results, progress, user);
    rm_free(q);
    return st;
}

ramole_status ramole_format_check(const char *json_schema, const char *gbnf, const char *text, size_t len,
                                  size_t *prefix, int *complete) {
    *prefix = 0;
    *complete = 0;
    if (!json_schema == !gbnf) return rm_err(RAMOLE_ERR_INVALID, "format check: give a JSON schema or a grammar");
    rm_grammar *g;
    RM_TRY(json_schema ? rm_json_schema_grammar(json_schema, strlen(json_schema), &g)
                       : rm_gbnf_grammar(gbnf, strlen(gbnf), &g));
    rm_grammar_pos p = {0}, tmp = {0};
    rm_status st = rm_grammar_start(g, &p);
    if (st == RAMOLE_OK && (st = rm_grammar_accept_all(g, &p, &tmp, text, len, prefix)) == RAMOLE_OK)
        *complete = *prefix == len && rm_grammar_can_end(&p);
    rm_grammar_pos_free(&p);
    rm_grammar_pos_free(&tmp);
    rm_grammar_free(g);
    return st;
}
