/*
 * cmd_batch.c — `ramole batch`: offline inference over a JSONL file of
 * requests, every request through the engine's continuous batching.
 *
 * Each input line is one request (ramole_request_parse) with an optional
 * "id"; each output line, in input order, is {"id", "text", "tokens",
 * "finish_reason", "usage"} (and "logprobs": {"token_logprobs",
 * "top_logprobs": [[{"id", "logprob"}]]} when asked for, a list per
 * token as "tokens"), or {"id", "error": {"message", "line"}} for a
 * line that could not run. The other lines still run; the exit status is 1
 * when any failed.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>

#include "cli.h"

typedef struct {
    int line;            /* 1-based line number in the input */
    json_t *id;          /* the line's "id", or NULL */
    ramole_parsed_request *req;
    char *error;         /* a line that did not parse */
} batch_line;

typedef struct {
    batch_line *v;
    int n, cap;
} batch_lines;

static ramole_status read_line(const char *s, size_t n, int line, void *ctx) {
    batch_lines *L = ctx;
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        batch_line *v = realloc(L->v, (size_t)cap * sizeof *v);
        if (!v) return ramole_error_set(RAMOLE_ERR_NOMEM, "out of memory");
        L->v = v;
        L->cap = cap;
    }
    batch_line *b = &L->v[L->n++];
    memset(b, 0, sizeof *b);
    b->line = line;
    if (ramole_request_parse(s, n, &b->req) != RAMOLE_OK) b->error = strdup(ramole_last_error());
    json_t *o = json_loadb(s, n, 0, NULL);
    json_t *id = json_object_get(o, "id");
    if (id) b->id = json_incref(id);
    json_decref(o);
    return RAMOLE_OK;
}

static void lines_free(batch_lines *L) {
    for (int i = 0; i < L->n; i++) {
        json_decref(L->v[i].id);
        ramole_parsed_request_free(L->v[i].req);
        free(L->v[i].error);
    }
    free(L->v);
}

typedef struct {
    bool tty;
    double last;
} progress_state;

static void progress(int done, int total, int64_t tokens, double secs, void *user) {
    progress_state *p = user;
    double now = ramole_time_now();
    bool end = done == total;
    if (!end && now - p->last < (p->tty ? 0.2 : 5.0)) return;
    p->last = now;
    double rate = secs > 0 ? (double)tokens / secs : 0;
    char eta[32];
    cli_fmt_time(done ? secs * (total - done) / done : -1, eta, sizeof eta);
    int width = 30, fill = total ? (int)((int64_t)width * done / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%s[%s] %d/%d requests, %.1f tokens/s, ETA %s%s", p->tty ? "\r" : "", bar, done, total, rate,
            eta, p->tty && !end ? "" : "\n");
    fflush(stderr);
}

static const char *finish_name(ramole_finish f) {
    return f == RAMOLE_FINISH_EOS || f == RAMOLE_FINISH_STOP ? "stop" : ramole_finish_name(f);
}

/* Each token's log-probability and alternatives, in the order of "tokens". */
static json_t *logprobs_json(const ramole_result *r) {
    json_t *lps = json_array(), *tops = json_array();
    for (int i = 0; i < r->logprobs.n; i++) {
        json_array_append_new(lps, json_real(r->logprobs.lp[i]));
        json_t *alts = json_array();
        for (int k = 0; k < r->logprobs.n_top; k++) {
            const ramole_token_logprob *t = &r->logprobs.top[(size_t)i * (size_t)r->logprobs.n_top + (size_t)k];
            json_array_append_new(alts, json_pack("{s:i, s:f}", "id", t->id, "logprob", (double)t->logprob));
        }
        json_array_append_new(tops, alts);
    }
    return json_pack("{s:o, s:o}", "token_logprobs", lps, "top_logprobs", tops);
}

/* One output line. */
static json_t *result_json(const batch_line *b, const ramole_result *r) {
    json_t *o = json_object();
    json_object_set(o, "id", b->id ? b->id : json_null());
    const char *err = b->error ? b->error : r->error;
    if (err || r->finish == RAMOLE_FINISH_ERROR || r->finish == RAMOLE_FINISH_NONE) {
        json_t *e = json_object();
        json_object_set_new(e, "message", json_string(err ? err : "the request did not finish"));
        json_object_set_new(e, "line", json_integer(b->line));
        json_object_set_new(o, "error", e);
        return o;
    }
    json_object_set_new(o, "text", json_stringn(r->text ? r->text : "", r->len));
    json_t *toks = json_array();
    for (int i = 0; i < r->n_tokens; i++) json_array_append_new(toks, json_integer(r->tokens[i]));
    json_object_set_new(o, "tokens", toks);
    if (r->logprobs.n) json_object_set_new(o, "logprobs", logprobs_json(r));
    const char *finish = finish_name(r->finish);
    /* a request offering tools: the calls its answer makes, as the server returns them */
    ramole_tool_call *calls = NULL;
    int n_calls = 0;
    size_t content_len = r->len;
    if (b->req && ramole_request_tool_calls(b->req, r->text ? r->text : "", r->len, &calls, &n_calls, &content_len) ==
                      RAMOLE_OK && n_calls) {
        json_t *a = json_array();
        for (int i = 0; i < n_calls; i++)
            json_array_append_new(a, json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name",
                                               calls[i].name, "arguments", calls[i].arguments));
        json_object_set_new(o, "content", content_len ? json_stringn(r->text, content_len) : json_null());
        json_object_set_new(o, "tool_calls", a);
        if (!strcmp(finish, "stop")) finish = "tool_calls";
    }
    ramole_tool_calls_free(calls, n_calls);
    json_object_set_new(o, "finish_reason", json_string(finish));
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(r->n_prompt));
    json_object_set_new(u, "completion_tokens", json_integer(r->n_tokens));
    json_object_set_new(u, "total_tokens", json_integer(r->n_prompt + r->n_tokens));
    json_object_set_new(o, "usage", u);
    return o;
}

static int oom(const char *cmd) {
    fprintf(stderr, "ramole %s: out of memory\n", cmd);
    return 1;
}

static int cant_write(const char *cmd, const char *path) {
    fprintf(stderr, "ramole %s: cannot write %s\n", cmd, path);
    return 1;
}

static void usage_batch(void) {
    fprintf(stderr, "usage: ramole batch -m MODEL --in requests.jsonl --out results.jsonl [-t THREADS] "
                    "[--max-seqs N (256)] [--ctx N] [--step-tokens N] [--prefill-tokens auto|all (default)|N] [--kv-type f16|f32] [--kv-block N] [--kv-blocks N] "
                    "[--max-adapters K] [--adapter-cache MIB] [--prefix-cache MIB (64; 0: off)] "
                    "[--max-rank R] [--lora-type f32|f16|bf16] [--quiet]\n");
}

int cmd_batch(int argc, char **argv) {
    const char *cmd = "batch", *model = NULL, *in = NULL, *outp = NULL;
    long threads = ramole_cpu_count(), max_seqs = 256, n_ctx = 0, step = 512, max_k = 4, max_rank = 0, kv_block = 0,
         kv_blocks = 0, cache_mib = 0, prefix_cache = 64;
    long prefill = -1; /* all: nobody streams, so throughput first */
    ramole_kv_type kv_type = RAMOLE_KV_F32; ramole_adapter_type lora_type = RAMOLE_ADAPTERS_F32;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(cmd, argc, argv, &i))) return 2
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "--in")) { VAL(); in = v; }
        else if (!strcmp(a, "--out")) { VAL(); outp = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!cli_int(cmd, a, v, 1, 256, &threads)) return 2; }
        else if (!strcmp(a, "--max-seqs")) { VAL(); if (!cli_int(cmd, a, v, 1, 4096, &max_seqs)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "--step-tokens")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &step)) return 2; }
        else if (!strcmp(a, "--kv-block")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &kv_block)) return 2; }
        else if (!strcmp(a, "--kv-blocks")) { VAL(); if (!cli_int(cmd, a, v, 1, INT32_MAX, &kv_blocks)) return 2; }
        else if (!strcmp(a, "--adapter-cache")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 24, &cache_mib)) return 2; }
        else if (!strcmp(a, "--prefix-cache")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 20, &prefix_cache)) return 2; }
        else if (!strcmp(a, "--max-adapters")) { VAL(); if (!cli_int(cmd, a, v, 1, RAMOLE_MAX_ADAPTERS, &max_k)) return 2; }
        else if (!strcmp(a, "--max-rank")) { VAL(); if (!cli_int(cmd, a, v, 1, RAMOLE_MAX_RANK, &max_rank)) return 2; }
        else if (!strcmp(a, "--kv-type")) { VAL(); if (!cli_kv_type(cmd, v, &kv_type)) return 2; }
        else if (!strcmp(a, "--prefill-tokens")) { VAL(); if (!cli_prefill_tokens(cmd, v, &prefill)) return 2; }
        else if (!strcmp(a, "--lora-type")) { VAL(); if (!cli_adapter_type(cmd, a, v, &lora_type)) return 2; }
        else if (!strcmp(a, "--quiet")) quiet = true;
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            usage_batch();
            return 2;
        }
#undef VAL
    }
    if (!model || !in || !outp) {
        fprintf(stderr, "ramole %s: -m MODEL, --in FILE and --out FILE are required\n", cmd);
        usage_batch();
        return 2;
    }
    ramole_model *m = NULL;
    ramole_engine *e = NULL;
    batch_lines L = {0};
    char *text = NULL, *tmp = NULL;
    size_t size;
    ramole_parsed_request **reqs = NULL;
    ramole_result *res = NULL;
    FILE *f = NULL;
    int rc = 1, failed = 0;
    ramole_status st;
    if ((st = ramole_file_read(in, &text, &size)) != RAMOLE_OK ||
        (st = ramole_lines_each(text, size, in, read_line, &L)) != RAMOLE_OK ||
        (st = ramole_model_open(model, &m)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    ramole_engine_params ep = {.n_threads = (int)threads, .max_seqs = (int)max_seqs, .n_ctx = (int)n_ctx,
                               .step_tokens = (int)step, .prefill_tokens = (int)prefill, .kv_type = kv_type, .kv_block = (int)kv_block,
                               .kv_blocks = (int)kv_blocks, .max_adapters = (int)max_k, .max_rank = (int)max_rank,
                               .adapter_type = lora_type, .adapter_cache_bytes = (size_t)cache_mib << 20,
                               .prefix_cache_mib = prefix_cache ? (int)prefix_cache : -1};
    reqs = calloc(L.n ? (size_t)L.n : 1, sizeof *reqs);
    res = calloc(L.n ? (size_t)L.n : 1, sizeof *res);
    if (!reqs || !res) {
        rc = oom(cmd);
        goto out;
    }
    for (int i = 0; i < L.n; i++) reqs[i] = L.v[i].error ? NULL : L.v[i].req;
    if ((st = ramole_engine_new(m, &ep, &e)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    progress_state ps = {.tty = isatty(2) != 0};
    double t0 = ramole_time_now();
    st = ramole_engine_run_all(e, reqs, L.n, res, quiet ? NULL : progress, &ps);
    if (st != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    double secs = ramole_time_now() - t0;
    /* results in input order, written whole or not at all */
    size_t tn = strlen(outp) + 32;
    tmp = malloc(tn);
    if (tmp) snprintf(tmp, tn, "%s.tmp.%d", outp, (int)getpid());
    if (!tmp || !(f = fopen(tmp, "w"))) {
        rc = cant_write(cmd, outp);
        goto out;
    }
    int64_t toks = 0, prompt_toks = 0;
    for (int i = 0; i < L.n; i++) {
        prompt_toks += res[i].n_prompt;
        json_t *o = result_json(&L.v[i], &res[i]);
        if (json_object_get(o, "error")) failed++;
        toks += res[i].n_tokens;
        json_dumpf(o, f, JSON_COMPACT | JSON_ENSURE_ASCII);
        fputc('\n', f);
        json_decref(o);
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    f = NULL;
    if (!ok || rename(tmp, outp) != 0) {
        unlink(tmp);
        rc = cant_write(cmd, outp);
        goto out;
    }
    ramole_engine_stats es;
    ramole_engine_get_stats(e, &es);
    fprintf(stderr, "batch: adapters loaded %llu times, found cached %llu times; %d preemptions\n",
            (unsigned long long)es.adapter_misses, (unsigned long long)es.adapter_hits, es.preemptions);
    fprintf(stderr, "batch: %d requests (%d failed), %lld prompt + %lld generated tokens in %.2f s (%.2f generated "
            "tokens/s, %.2f overall)\n", L.n, failed, (long long)prompt_toks, (long long)toks, secs,
            secs > 0 ? (double)toks / secs : 0.0, secs > 0 ? (double)(toks + prompt_toks) / secs : 0.0);
    rc = failed ? 1 : 0;
out:
    if (f) fclose(f);
    free(tmp);
    for (int i = 0; res && i < L.n; i++) ramole_result_clear(&res[i]);
    free(res);
    free(reqs);
    ramole_engine_free(e);
    ramole_model_free(m);
    lines_free(&L);
    ramole_free(text);
    return rc;
}
