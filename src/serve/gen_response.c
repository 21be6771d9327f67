/*
 * gen_response.c — the HTTP response of a generation: a callback response
 * whose reader waits for what the scheduler produced for each choice and
 * writes it as SSE chunks, or as one JSON object once every choice is done.
 *
 * While it waits it writes a keep-alive (an SSE comment, or a space before
 * the JSON, which JSON allows) every second, so a client that went away is
 * noticed within a second: its response is then freed, and its requests
 * are cancelled, their slots and KV blocks freed at once.
 *
 * Choices are OpenAI's (srv_gen): each runs as its own engine request, so
 * the samples of one prompt and the prompts of one body batch together
 * with everyone else's. A stream sends each choice's chunks as they come,
 * with its index; a choice's last chunk carries its "lora" object, and the
 * last of all the usage summed over the choices (prompt tokens once per
 * prompt).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "serve/serve_internal.h"

typedef struct {
    srv_req *r;
    json_t *lora;        /* this choice's "lora" object */
    size_t text_sent;
    int lp_sent;         /* tokens whose log-probabilities went out */
    long lp_offset;      /* completions' text_offset of the next one */
    bool sent_role;      /* chat: the first delta names the role */
    bool echoed;         /* "echo": its prompt went out */
    bool finished;       /* its finish chunk went out */
    char *prompt;        /* "echo": the prompt's text (rm_malloc'd) */
} gen_choice;

typedef struct {
    rm_server *s;
    bool stream, chat;
    bool usage_chunk;    /* the stream ends with a chunk of usage alone */
    char id[RM_REG_RESPONSE_ID_MAX + 1];
    long created;
    char *wire;          /* bytes ready to send */
    size_t wire_len, wire_off;
    bool sent_final;
    bool late;           /* cancelled at its deadline */
    uint64_t record;     /* its ticket in the record of responses (record.c) */
    int n_choices, n;    /* choices; samples per prompt */
    gen_choice ch[SRV_MAX_CHOICES];
} gen_resp;

static const char *finish_name(rm_finish_reason f) {
    switch (f) {
    case RM_FINISH_LENGTH: return "length";
    case RM_FINISH_ERROR: return "error";
    default: return "stop";
    }
}

/* The usage over every choice: a prompt's tokens once, however many samples
 * it has (as OpenAI counts them), with the first sample's count of them
 * that came from the prefix cache (OpenAI's prompt_tokens_details). Each
 * choice's mu is taken in turn. */
static json_t *usage_obj(gen_resp *g) {
    long prompt = 0, cached = 0, completion = 0;
    for (int c = 0; c < g->n_choices; c++) {
        srv_req *r = g->ch[c].r;
        pthread_mutex_lock(&r->mu);
        if (c % g->n == 0) prompt += r->n_prompt, cached += r->n_prompt_cached;
        completion += r->n_generated;
        pthread_mutex_unlock(&r->mu);
    }
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)prompt, "completion_tokens",
                     (json_int_t)completion, "total_tokens", (json_int_t)(prompt + completion),
                     "prompt_tokens_details", "cached_tokens", (json_int_t)cached);
}

static void wire_set(gen_resp *g, char *s) {
    rm_free(g->wire);
    g->wire = s;
    g->wire_len = s ? strlen(s) : 0;
    g->wire_off = 0;
}

/* "data: JSON\n\n" of obj (freed). */
static char *sse(json_t *obj) {
    char *t = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    char *out = t ? rm_asprintf("data: %s\n\n", t) : NULL;
    free(t);
    return out;
}

/* a + b, both freed; NULL when either is (out of memory). */
static char *join(char *a, char *b) {
    char *out = a && b ? rm_asprintf("%s%s", a, b) : NULL;
    rm_free(a);
    rm_free(b);
    return out;
}

/* The router's mean weights over the answer into choice c's lora object (its mu held). */
static void set_router_weights(gen_choice *c) {
    json_t *list = json_object_get(c->lora, "adapters");
    for (int j = 0; j < c->r->n_gates && j < (int)json_array_size(list); j++)
        json_object_set_new(json_array_get(list, (size_t)j), "weight", json_real(c->r->gates[j]));
}

/* "echo": choice c's prompt as text, decoded when it came as token ids. */
static char *prompt_text(const rm_tok *tok, const srv_req *r) {
    if (r->spec.prompt) return rm_strdup(r->spec.prompt);
    char *t = NULL;
    if (tok && rm_tok_decode(tok, r->spec.tokens, (size_t)r->spec.req.n_tokens, 0, &t, NULL) == RAMOLE_OK) return t;
    return rm_strdup("");
}

/* "echo": the prompt, then text[0..len), NUL bytes of the answer kept
 * (*out_len bytes, rm_malloc'd); NULL when out of memory. */
static char *echo_join(const char *prompt, const char *text, size_t len, size_t *out_len) {
    size_t n = strlen(prompt);
    char *s = rm_malloc(n + len + 1);
    if (!s) return NULL;
    memcpy(s, prompt, n);
    if (len) memcpy(s + n, text, len);
    s[n + len] = 0;
    *out_len = n + len;
    return s;
}

/* Append each array of `more` to the same key's array of `into` (both
 * completions' logprobs objects); more is freed. */
static void extend(json_t *into, json_t *more) {
    const char *key;
    json_t *v;
    json_object_foreach(more, key, v) json_array_extend(json_object_get(into, key), v);
    json_decref(more);
}

/* The logprobs of choice c's tokens [from, to), after its prompt's when it
 * echoes and the prompt has not gone out yet (its mu held). */
static json_t *choice_logprobs(gen_resp *g, gen_choice *c, int from, int to) {
    const rm_tok *tok = g->s->model->tokenizer;
    const srv_req *r = c->r;
    if (!r->spec.echo || c->echoed || !r->plps.n)
        return srv_logprobs_json(tok, &r->lps, from, to, g->chat, &c->lp_offset);
    json_t *lp = srv_logprobs_json(tok, &r->plps, 0, r->plps.n, g->chat, &c->lp_offset);
    extend(lp, srv_logprobs_json(tok, &r->lps, from, to, g->chat, &c->lp_offset));
    return lp;
}

/* Whether choice c's answer is read for tool calls (a chat request that
 * offers tools, tool_choice not "none"). */
static bool tooled(const gen_resp *g, const srv_req *r) { return g->chat && rm_tools_active(&r->spec.tools); }

/* How much of choice c's answer may go out now (its mu held): all of it,
 * or for an answer read for tool calls, up to where a call may begin.
 * What went out holds no call's beginning, so the search starts there:
 * each poll reads the new bytes, not the whole answer again. */
static size_t sendable(const gen_resp *g, const gen_choice *c) {
    const srv_req *r = c->r;
    if (!tooled(g, r) || !r->text || r->len <= c->text_sent) return r->len;
    return c->text_sent + rm_tool_calls_content_prefix(r->text + c->text_sent, r->len - c->text_sent);
}

/* The calls in an answer text[0, *len) read for them (else none): *len
 * becomes the content's length before them, and a finish "stop" (an end
 * token, a stop string, or the calls complete) becomes "tool_calls". */
static int read_calls(const gen_resp *g, const srv_req *r, const char *text, size_t *len, rm_tool_call **calls,
                      const char **fin) {
    int n = 0;
    *calls = NULL;
    if (!tooled(g, r) || rm_tool_calls_parse(text, *len, calls, &n, len) != RAMOLE_OK || !n) return 0;
    if (!strcmp(*fin, "stop")) *fin = "tool_calls";
    return n;
}

/* OpenAI's "tool_calls" of choice i: calls[0..n) with ids unique in the
 * response; a stream's deltas also number them ("index"), a message does not. */
static json_t *tool_calls_json(const gen_resp *g, int i, const rm_tool_call *calls, int n, bool delta) {
    json_t *a = json_array();
    const char *tail = strchr(g->id, '-');
    for (int k = 0; k < n && a; k++) {
        char id[RM_REG_RESPONSE_ID_MAX + 32];
        snprintf(id, sizeof id, "call_%s_%d_%d", tail ? tail + 1 : g->id, i, k);
        json_t *c = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name",
                              calls[k].name, "arguments", calls[k].arguments);
        if (c && delta) json_object_set_new(c, "index", json_integer(k));
        json_array_append_new(a, c);
    }
    return a;
}

/* One chunk of choice i: text, log-probabilities since its last chunk, and
 * on its last chunk the finish reason and "lora" (its mu held). */
static json_t *chunk(gen_resp *g, int i, const char *text, size_t len, const char *finish) {
    gen_choice *c = &g->ch[i];
    const srv_req *r = c->r;
    char *joined = NULL;
    if (r->spec.echo && !c->echoed && c->prompt && (joined = echo_join(c->prompt, text, len, &len)))
        text = joined; /* the prompt opens the choice's first chunk */
    json_t *choice;
    if (g->chat) {
        json_t *delta = json_object();
        if (!c->sent_role) json_object_set_new(delta, "role", json_string("assistant")), c->sent_role = true;
        if (len || !finish) json_object_set_new(delta, "content", json_stringn(text, len));
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", i, "delta", delta, "logprobs", "finish_reason", finish);
    } else
        choice = json_pack("{s:i, s:s%, s:n, s:s?}", "index", i, "text", text, len, "logprobs", "finish_reason",
                           finish);
    if (!finish) json_object_set_new(choice, "finish_reason", json_null());
    if (r->spec.req.logprobs) {
        json_object_set_new(choice, "logprobs", choice_logprobs(g, c, c->lp_sent, r->lps.n));
        c->lp_sent = r->lps.n;
    }
    if (joined || !r->spec.echo) c->echoed = true;
    rm_free(joined);
    json_t *out = json_pack("{s:s, s:s, s:i, s:s, s:[o]}", "id", g->id, "object",
                            g->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)g->created,
                            "model", g->s->model_name, "choices", choice);
    if (finish) {
        set_router_weights(c);
        json_object_set(g->n_choices > 1 ? choice : out, "lora", c->lora);
    }
    return out;
}

/* OpenAI's last chunk under "include_usage": no choices, the usage. */
static json_t *usage_chunk(gen_resp *g) {
    return json_pack("{s:s, s:s, s:i, s:s, s:[], s:o}", "id", g->id, "object",
                     g->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)g->created,
                     "model", g->s->model_name, "choices", "usage", usage_obj(g));
}

/* The whole answer, every choice done. Choice 0's "lora" stands at the top
 * (as with one choice); with several, each choice carries its own. */
static json_t *whole(gen_resp *g) {
    json_t *choices = json_array();
    for (int i = 0; i < g->n_choices; i++) {
        gen_choice *c = &g->ch[i];
        srv_req *r = c->r;
        pthread_mutex_lock(&r->mu);
        set_router_weights(c);
        const char *fin = finish_name(r->finish);
        size_t len = r->len;
        char *echoed = r->spec.echo && c->prompt ? echo_join(c->prompt, r->text ? r->text : "", r->len, &len) : NULL;
        const char *text = echoed ? echoed : r->text ? r->text : "";
        rm_tool_call *calls;
        int n_calls = read_calls(g, r, text, &len, &calls, &fin);
        json_t *choice = g->chat ? json_pack("{s:i, s:{s:s, s:s%}, s:n, s:s}", "index", i, "message", "role",
                                             "assistant", "content", text, len, "logprobs", "finish_reason", fin)
                                 : json_pack("{s:i, s:s%, s:n, s:s}", "index", i, "text", text, len, "logprobs",
                                             "finish_reason", fin);
        if (choice && n_calls) { /* OpenAI's message of calls: content null unless text came before them */
            json_t *msg = json_object_get(choice, "message");
            if (!len) json_object_set_new(msg, "content", json_null());
            json_object_set_new(msg, "tool_calls", tool_calls_json(g, i, calls, n_calls, false));
        }
        rm_tool_calls_free(calls, n_calls);
        rm_free(echoed);
        if (choice && r->spec.req.logprobs) json_object_set_new(choice, "logprobs", choice_logprobs(g, c, 0, r->lps.n));
        if (choice && g->n_choices > 1) json_object_set(choice, "lora", c->lora);
        pthread_mutex_unlock(&r->mu);
        json_array_append_new(choices, choice);
    }
    return json_pack("{s:s, s:s, s:i, s:s, s:o, s:o, s:O}", "id", g->id, "object",
                     g->chat ? "chat.completion" : "text_completion", "created", (json_int_t)g->created, "model",
                     g->s->model_name, "choices", choices, "usage", usage_obj(g), "lora", g->ch[0].lora);
}

/* Whether choice c has something to send (its mu held). */
static bool has_news(const gen_resp *g, const gen_choice *c) {
    const srv_req *r = c->r;
    if (r->state == SRV_REFUSED || (r->state == SRV_DONE && r->finish == RM_FINISH_ERROR)) return true;
    if (!g->stream) return false; /* the whole answer waits for every choice */
    if (r->state == SRV_DONE && !c->finished) return true;
    return sendable(g, c) > c->text_sent; /* text held back as a possible call is no news */
}

static bool over(const srv_req *r) { return r->state == SRV_DONE || r->state == SRV_REFUSED; }

/* Wait up to a second for news: a stream's new text, a failure, or (for a
 * whole answer) every choice done. One choice is waited on at a time, the
 * first still running; with several, in short waits, so that news of
 * another is seen soon. */
static void wait_news(gen_resp *g) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    for (;;) {
        int running = -1;
        for (int i = 0; i < g->n_choices; i++) {
            srv_req *r = g->ch[i].r;
            pthread_mutex_lock(&r->mu);
            bool news = has_news(g, &g->ch[i]), done = over(r);
            pthread_mutex_unlock(&r->mu);
            if (news) return;
            if (!done && running < 0) running = i;
        }
        if (running < 0) return; /* all done */
        struct timespec now, step;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec)) return;
        step = until;
        if (g->n_choices > 1) { /* 20 ms, or what is left of the second */
            long ns = now.tv_nsec + 20000000L;
            struct timespec soon = {now.tv_sec + ns / 1000000000L, ns % 1000000000L};
            if (soon.tv_sec < step.tv_sec || (soon.tv_sec == step.tv_sec && soon.tv_nsec < step.tv_nsec)) step = soon;
        }
        srv_req *r = g->ch[running].r;
        pthread_mutex_lock(&r->mu);
        if (!has_news(g, &g->ch[running]) && !over(r)) pthread_cond_timedwait(&r->cv, &r->mu, &step);
        pthread_mutex_unlock(&r->mu);
    }
}

/* The error that ends the response, or NULL: a refused or failed choice, or
 * the deadline once every choice is done (rm_malloc'd SSE or JSON text). */
static char *error_text(gen_resp *g, bool all_done) {
    char msg[160];
    const char *why = NULL, *code = NULL;
    int status = 500;
    for (int i = 0; i < g->n_choices && !why; i++) {
        srv_req *r = g->ch[i].r;
        pthread_mutex_lock(&r->mu);
        if (r->state == SRV_REFUSED || (r->state == SRV_DONE && r->finish == RM_FINISH_ERROR)) {
            snprintf(msg, sizeof msg, "%s", srv_req_error(r) ? srv_req_error(r) : "the request failed");
            why = msg;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (!why && g->late && all_done) {
        snprintf(msg, sizeof msg, "the request passed its deadline of %g s and was cancelled", g->s->o.deadline_s);
        why = msg, code = "deadline_exceeded", status = 408;
    }
    if (!why) return NULL;
    json_t *e = error_obj(status, why, NULL, code);
    if (g->stream) return join(sse(e), rm_strdup("data: [DONE]\n\n"));
    char *t = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    char *out = t ? rm_strdup(t) : NULL;
    free(t);
    return out;
}

/* A chunk of choice i whose delta is its tool calls (its mu held). */
static json_t *calls_chunk(gen_resp *g, int i, const rm_tool_call *calls, int n) {
    json_t *ch = chunk(g, i, "", 0, NULL);
    json_t *delta = json_object_get(json_array_get(json_object_get(ch, "choices"), 0), "delta");
    json_object_del(delta, "content");
    json_object_set_new(delta, "tool_calls", tool_calls_json(g, i, calls, n, true));
    return ch;
}

/* The chunks of choice i since the last call: new text (rm_malloc'd SSE,
 * "" when none), and its finish chunk once it is done (*fin, unsent: the
 * last of all gets the usage first). */
static char *stream_choice(gen_resp *g, int i, json_t **fin) {
    gen_choice *c = &g->ch[i];
    srv_req *r = c->r;
    char *out = rm_strdup("");
    *fin = NULL;
    pthread_mutex_lock(&r->mu);
    bool done = r->state == SRV_DONE && !c->finished && !(g->late && r->finish == RM_FINISH_CANCELLED);
    /* an answer read for tool calls holds back what may be a call until it is done */
    size_t upto = done ? r->len : sendable(g, c);
    const char *fin_name = finish_name(r->finish);
    rm_tool_call *calls = NULL;
    size_t content_len = r->len;
    int n_calls = done && r->text ? read_calls(g, r, r->text, &content_len, &calls, &fin_name) : 0;
    if (n_calls) upto = content_len < c->text_sent ? c->text_sent : content_len;
    if (upto > c->text_sent) out = join(out, sse(chunk(g, i, r->text + c->text_sent, upto - c->text_sent, NULL)));
    if (upto > c->text_sent) c->text_sent = upto;
    if (n_calls) { /* the calls in one chunk, then the finish */
        out = join(out, sse(calls_chunk(g, i, calls, n_calls)));
        c->text_sent = r->len;
    }
    rm_tool_calls_free(calls, n_calls);
    /* cancelled at the deadline: no finish of its own, the deadline's error ends the stream */
    if (done) {
        *fin = chunk(g, i, "", 0, fin_name);
        c->finished = true;
    }
    pthread_mutex_unlock(&r->mu);
    return out;
}

/* Produce the next bytes to send into g->wire; false at the end of the
 * response. The steps, each with its reason: */
static bool produce(gen_resp *g) {
    if (g->sent_final) return false;
    /* 1. Wait for news, at most a second: a keep-alive goes out after it,
     *    which is how a client that went away is noticed. */
    wait_news(g);
    bool all_done = true;
    for (int i = 0; i < g->n_choices; i++) {
        pthread_mutex_lock(&g->ch[i].r->mu);
        all_done &= over(g->ch[i].r);
        pthread_mutex_unlock(&g->ch[i].r->mu);
    }
    /* 2. The final bytes go out once the response is rateable through any
     *    server: its record is written. */
    if (all_done && g->record) {
        srv_record_wait(&g->s->record, g->record, SRV_RECORD_WAIT_S);
        g->record = 0;
    }
    /* 3. Past the deadline every choice is cancelled; the scheduler finishes
     *    them with CANCELLED, and the deadline is what we report. */
    if (!all_done && !g->late && rm_time_now() - g->ch[0].r->t_submit > g->s->o.deadline_s) {
        g->late = true;
        for (int i = 0; i < g->n_choices; i++) srv_sched_cancel(&g->s->sched, g->ch[i].r);
    }
    /* 4. A failure ends the response with its error; the other choices are
     *    cancelled when the response is freed. */
    char *out = error_text(g, all_done);
    if (out) {
        g->sent_final = true;
    } else if (g->stream) {
        /* 5. A stream sends each choice's news; after the last finish, the
         *    usage chunk when asked for, and [DONE]. */
        out = rm_strdup("");
        json_t *fin = NULL; /* the latest finish chunk, held back */
        int finished = 0;
        for (int i = 0; i < g->n_choices && out; i++) {
            json_t *f;
            out = join(out, stream_choice(g, i, &f));
            if (f) {
                if (fin && out) out = join(out, sse(fin));
                else json_decref(fin);
                fin = f;
            }
            finished += g->ch[i].finished;
        }
        bool last = finished == g->n_choices;
        if (fin && last) json_object_set_new(fin, "usage", usage_obj(g)); /* ramole's, as llama.cpp's server */
        bool any = fin || (out && *out);
        if (fin && out) out = join(out, sse(fin));
        else json_decref(fin);
        if (out && last) {
            if (g->usage_chunk) out = join(out, sse(usage_chunk(g)));
            out = join(out, rm_strdup("data: [DONE]\n\n"));
            g->sent_final = true;
        } else if (out && !any) {
            rm_free(out);
            out = rm_strdup(": keep-alive\n\n");
        }
    } else if (all_done) {
        /* 6. A whole answer goes out at once, every choice in it. */
        json_t *w = whole(g);
        char *t = w ? json_dumps(w, JSON_COMPACT) : NULL;
        json_decref(w);
        out = t ? rm_asprintf("%s\n", t) : NULL;
        free(t);
        g->sent_final = true;
    } else
        out = rm_strdup(" "); /* notices a client that went away */
    if (!out) g->sent_final = true;
    wire_set(g, out);
    return out != NULL;
}

static ssize_t gen_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    gen_resp *g = cls;
    (void)pos;
    while (g->wire_off >= g->wire_len)
        if (!produce(g)) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = g->wire_len - g->wire_off;
    if (n > max) n = max;
    memcpy(buf, g->wire + g->wire_off, n);
    g->wire_off += n;
    return (ssize_t)n;
}

static void gen_free(void *cls) {
    gen_resp *g = cls;
    for (int i = 0; i < g->n_choices; i++) {
        srv_sched_cancel(&g->s->sched, g->ch[i].r); /* a no-op when it finished */
        srv_req_release(g->ch[i].r);
        json_decref(g->ch[i].lora);
        rm_free(g->ch[i].prompt);
    }
    rm_free(g->wire);
    rm_free(g);
}

struct MHD_Response *srv_gen_response(rm_server *s, srv_gen *gen, bool chat) {
    gen_resp *g = rm_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->s = s;
    g->chat = chat;
    g->stream = gen->stream;
    g->usage_chunk = gen->usage_chunk;
    g->n = gen->n;
    g->n_choices = gen->n_choices;
    for (int i = 0; i < gen->n_choices; i++) { /* the requests and lora objects move here */
        g->ch[i].r = gen->req[i];
        g->ch[i].lora = gen->lora[i];
        if (gen->req[i]->spec.echo) g->ch[i].prompt = prompt_text(s->model->tokenizer, gen->req[i]);
        gen->req[i] = NULL;
        gen->lora[i] = NULL;
    }
    gen->n_choices = 0;
    g->created = (long)time(NULL);
    pthread_mutex_lock(&s->quit_mu);
    uint64_t seq = ++s->next_id;
    pthread_mutex_unlock(&s->quit_mu);
    snprintf(g->id, sizeof g->id, "%s-%s%llx", chat ? "chatcmpl" : "cmpl", s->id_tag, (unsigned long long)seq);
    snprintf(gen->used.id, sizeof gen->used.id, "%s", g->id);
    g->record = srv_record_push(&s->record, &gen->used); /* written by the writer thread, in a batch */
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, gen_reader, g, gen_free);
    if (!resp) {
        gen_free(g);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", g->stream ? "text/event-stream" : "application/json");
    if (g->stream) MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return resp;
}
