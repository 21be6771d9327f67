/*
 * api_client.c — an outside program: it sees include/ramole.h and nothing
 * else of ramole (built with -Iinclude only), and drives the engine the way
 * a user's program would.
 *
 *   api_client MODEL ADAPTER TOKENS...
 * runs, all at once: the prompt TOKENS (comma-separated ids, one request per
 * argument) greedily for 6 tokens, each once without adapters and once with
 * ADAPTER (resolved by name "a" through a resolver); one more as a JSON
 * request; one request cancelled after its first step; a response format
 * on a model without a tokenizer, refused. Prints one line per
 * request, in submission order: its finish reason and tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramole.h"

typedef struct {
    int32_t toks[64];
    int n;
    int cached;             /* prompt tokens it did not compute */
    ramole_finish finish;
    int lp_seen, lp_ok;     /* tokens with log-probabilities; those a greedy pick agrees with */
} result;

static void on_event(const ramole_event *ev, void *user) {
    result *r = user;
    if (ev->top) {
        r->lp_seen++;
        r->lp_ok += ev->n_top == 2 && ev->top[0].id == ev->token && ev->top[0].logprob == ev->logprob &&
                    ev->top[1].logprob <= ev->logprob && ev->logprob <= 0;
    }
    if (ev->token >= 0 && r->n < 64) r->toks[r->n++] = ev->token;
    r->cached = ev->n_prompt_cached;
    if (ev->finish != RAMOLE_FINISH_NONE) r->finish = ev->finish;
}

static const char *adapter_path;

static int resolve(void *user, const char *name, char *path, size_t cap) {
    (void)user;
    if (strcmp(name, "a")) return 1;
    snprintf(path, cap, "%s", adapter_path);
    return 0;
}

static int die(const char *what, ramole_status st) {
    fprintf(stderr, "api_client: %s: %s (%s)\n", what, ramole_last_error(), ramole_status_str(st));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: api_client MODEL ADAPTER TOKENS...\n");
        return 2;
    }
    adapter_path = argv[2];
    ramole_model *m = NULL;
    ramole_status st = ramole_model_open(argv[1], &m);
    if (st != RAMOLE_OK) return die("open", st);
    ramole_model_info info;
    ramole_model_get_info(m, &info);
    ramole_engine_params p = {.max_seqs = 4, .step_tokens = 8, .resolve = resolve};
    ramole_engine *e = NULL;
    if ((st = ramole_engine_new(m, &p, &e)) != RAMOLE_OK) return die("engine", st);

    int n_prompts = argc - 3, n = 0;
    result *res = calloc((size_t)(2 * n_prompts + 2), sizeof *res);
    int32_t (*prompts)[32] = calloc((size_t)n_prompts, sizeof *prompts);
    int64_t id;
    for (int i = 0; i < n_prompts; i++) {
        int k = 0;
        for (char *s = argv[3 + i]; *s && k < 32; s = *s ? s + 1 : s) prompts[i][k++] = (int32_t)strtol(s, &s, 10);
        for (int with = 0; with < 2; with++) {
            ramole_request r;
            ramole_request_init(&r);
            r.tokens = prompts[i];
            r.n_tokens = k;
            r.max_tokens = 6;
            r.ignore_eos = 1;
            r.logprobs = i == 0 && !with; /* the first, with 2 alternatives per token */
            r.top_logprobs = r.logprobs ? 2 : 0;
            if (with) {
                r.mode = RAMOLE_COMPOSE_EXPLICIT;
                r.n_adapters = 1;
                r.adapters[0] = "a";
                r.weights[0] = 1.0f;
            }
            r.on_event = on_event;
            r.user = &res[n++];
            if ((st = ramole_engine_submit(e, &r, &id)) != RAMOLE_OK) return die("submit", st);
        }
    }
    char json[256];
    snprintf(json, sizeof json, "{\"prompt\": [%d, %d], \"max_tokens\": 6, \"temperature\": 0, \"ignore_eos\": true, "
             "\"lora\": {\"adapters\": [{\"name\": \"a\"}]}}", prompts[0][0], prompts[0][1]);
    if ((st = ramole_engine_submit_json(e, json, strlen(json), on_event, &res[n++], &id)) != RAMOLE_OK)
        return die("submit json", st);
    ramole_request r;
    ramole_request_init(&r);
    r.tokens = prompts[0];
    r.n_tokens = 1;
    r.max_tokens = 50;
    r.on_event = on_event;
    r.user = &res[n++];
    int64_t doomed;
    if ((st = ramole_engine_submit(e, &r, &doomed)) != RAMOLE_OK) return die("submit", st);
    /* a refused request reports nothing and names its problem */
    r.adapters[0] = "nope";
    r.n_adapters = 1;
    r.mode = RAMOLE_COMPOSE_MIXTURE;
    if (ramole_engine_submit(e, &r, &id) != RAMOLE_ERR_NOT_FOUND || !strstr(ramole_last_error(), "nope"))
        return die("an unknown adapter was not refused", RAMOLE_ERR_INTERNAL);
    int steps = 0, ran;
    while (ramole_engine_pending(e)) {
        if ((st = ramole_engine_step(e, &ran)) != RAMOLE_OK) return die("step", st);
        if (++steps == 1 && (st = ramole_engine_cancel(e, doomed)) != RAMOLE_OK) return die("cancel", st);
    }
    if (res[0].lp_seen != 6 || res[0].lp_ok != 6 || res[1].lp_seen)
        return die("log-probabilities: the events do not carry what was asked for", RAMOLE_ERR_INTERNAL);
    /* the prefix cache: a prompt run again starts after its kept rows (all
     * but its last token), under the same salt only */
    int32_t longp[24];
    for (int t = 0; t < 24; t++) longp[t] = prompts[0][t % 2];
    result again[3] = {{.n = 0}};
    for (int k = 0; k < 3; k++) {
        ramole_request_init(&r);
        r.tokens = longp;
        r.n_tokens = 24;
        r.max_tokens = 2;
        r.cache_salt = k == 2 ? 42 : 0;
        r.on_event = on_event;
        r.user = &again[k];
        if ((st = ramole_engine_submit(e, &r, &id)) != RAMOLE_OK) return die("submit", st);
        while (ramole_engine_pending(e))
            if ((st = ramole_engine_step(e, &ran)) != RAMOLE_OK) return die("step", st);
    }
    if (again[0].cached != 0 || again[1].cached != 23 || again[2].cached != 0) {
        fprintf(stderr, "api_client: cached %d, %d, %d (want 0, 23, 0)\n", again[0].cached, again[1].cached,
                again[2].cached);
        return die("the prefix cache", RAMOLE_ERR_INTERNAL);
    }
    /* a response format reaches the engine: this model has no tokenizer
     * to read its answer's bytes, so it is refused, saying so */
    ramole_request_init(&r);
    r.tokens = longp;
    r.n_tokens = 4;
    r.json_schema = "{\"type\": \"boolean\"}";
    if (ramole_engine_submit(e, &r, &id) != RAMOLE_ERR_INVALID || !strstr(ramole_last_error(), "tokenizer"))
        return die("a response format without a tokenizer was not refused", RAMOLE_ERR_INTERNAL);
    ramole_engine_stats stats;
    ramole_engine_get_stats(e, &stats);
    for (int i = 0; i < n; i++) {
        static const char *names[] = {"none", "stop", "eos", "length", "cancelled", "error"};
        printf("%s", names[res[i].finish]);
        for (int t = 0; t < res[i].n; t++) printf("%c%d", t ? ',' : ' ', res[i].toks[t]);
        printf("\n");
    }
    fprintf(stderr, "api_client: %s, %d layers; %d steps, adapter loads %llu, hits %llu\n", info.arch, info.n_layers,
            steps, (unsigned long long)stats.adapter_misses, (unsigned long long)stats.adapter_hits);
    ramole_engine_free(e);
    ramole_model_free(m);
    free(res);
    free(prompts);
    return 0;
}
