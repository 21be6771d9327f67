/*
 * cmd_run.c — the commands that run the model: generate (through the
 * engine), logits and bench (include/ramole/run.h). Results go to standard
 * output; timings and logs to standard error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *model;
    const char *prompt;
    int32_t *tokens;
    int n_tokens;
    long n_predict, threads, n_ctx, bench_prompt, bench_decode, bench_warmup, kv_block;
    ramole_kv_type kv_type;
    bool all, ignore_eos;
    ramole_request sp; /* its sampling fields */
    /* LoRA */
    const char *lora_paths[RAMOLE_MAX_ADAPTERS];
    float lora_weights[RAMOLE_MAX_ADAPTERS];
    float lora_scores[RAMOLE_MAX_ADAPTERS];  /* retrieval scores (generate --registry), for a router's prior */
    int n_lora;
    const char *router_path;
    const char *mode;
    /* retrieval from a registry (generate --registry) */
    const char *registry, *tenant;
    char *json_schema;             /* --json, --json-schema TEXT or --json-schema-file FILE */
    char *grammar;                 /* --grammar TEXT or --grammar-file FILE (GBNF) */
    long top_k;
    ramole_adapter_type lora_type; /* element type adapters are stored in */
} run_opts;

static bool parse_lora(const char *cmd, char *arg, run_opts *o) {
    if (o->n_lora == RAMOLE_MAX_ADAPTERS) {
        fprintf(stderr, "ramole %s: at most %d --lora adapters\n", cmd, RAMOLE_MAX_ADAPTERS);
        return false;
    }
    if (!cli_lora_spec(cmd, arg, &o->lora_weights[o->n_lora])) return false;
    o->lora_paths[o->n_lora++] = arg;
    return true;
}

/* Keep text (NULL: it could not be had, said already) as the response
 * format; false when one was given before. */
static bool set_format(const char *cmd, run_opts *o, char **slot, char *text) {
    if (!text) return false;
    if (o->json_schema || o->grammar) {
        fprintf(stderr, "ramole %s: give one of --json, --json-schema[-file] and --grammar[-file], once\n", cmd);
        free(text);
        return false;
    }
    *slot = text;
    return true;
}

/* Parse the options every run command shares; false on a bad option. */
static bool parse_run(const char *cmd, int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 32;
    o->threads = ramole_cpu_count();
    o->bench_prompt = 512;
    o->bench_decode = 64;
    o->bench_warmup = 1;
    o->top_k = 3;
    ramole_request_init(&o->sp);
    ramole_request_sampling_default(&o->sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long l;
        double d;
#define VAL() if (!(v = cli_value(cmd, argc, argv, &i))) return false
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); o->model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt-text")) { VAL(); o->prompt = v; }
        else if (!strcmp(a, "--tokens")) { VAL(); if (!cli_tokens(cmd, v, &o->tokens, &o->n_tokens)) return false; }
        else if (!strcmp(a, "-n")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 20, &o->n_predict)) return false; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!cli_int(cmd, a, v, 1, 256, &o->threads)) return false; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &o->n_ctx)) return false; }
        else if (!strcmp(a, "--prompt")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 16, &o->bench_prompt)) return false; }
        else if (!strcmp(a, "--kv-type")) { VAL(); if (!cli_kv_type(cmd, v, &o->kv_type)) return false; }
        else if (!strcmp(a, "--kv-block")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &o->kv_block)) return false; }
        else if (!strcmp(a, "--decode")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 16, &o->bench_decode)) return false; }
        else if (!strcmp(a, "--warmup")) { VAL(); if (!cli_int(cmd, a, v, 0, 1, &o->bench_warmup)) return false; }
        else if (!strcmp(a, "--temp")) { VAL(); if (!cli_float(cmd, a, v, 0, 100, &d)) return false; o->sp.temperature = (float)d; }
        else if (!strcmp(a, "--top-k")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 24, &l)) return false; o->sp.top_k = (int)l; }
        else if (!strcmp(a, "--top-p")) { VAL(); if (!cli_float(cmd, a, v, 1e-6, 1, &d)) return false; o->sp.top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { VAL(); if (!cli_float(cmd, a, v, 0, 1, &d)) return false; o->sp.min_p = (float)d; }
        else if (!strcmp(a, "--repeat-penalty")) { VAL(); if (!cli_float(cmd, a, v, 1e-3, 100, &d)) return false; o->sp.repeat_penalty = (float)d; }
        else if (!strcmp(a, "--frequency-penalty")) { VAL(); if (!cli_float(cmd, a, v, -2, 2, &d)) return false; o->sp.frequency_penalty = (float)d; }
        else if (!strcmp(a, "--presence-penalty")) { VAL(); if (!cli_float(cmd, a, v, -2, 2, &d)) return false; o->sp.presence_penalty = (float)d; }
        else if (!strcmp(a, "--repeat-last-n")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 20, &l)) return false; o->sp.repeat_last_n = (int)l; }
        else if (!strcmp(a, "--seed")) { VAL(); if (!cli_u64(cmd, a, v, &o->sp.seed)) return false; }
        else if (!strcmp(a, "--lora")) { VAL(); if (!parse_lora(cmd, (char *)v, o)) return false; }
        else if (!strcmp(a, "--router")) { VAL(); o->router_path = v; }
        else if (!strcmp(a, "--registry")) { VAL(); o->registry = v; }
        else if (!strcmp(a, "--tenant")) { VAL(); o->tenant = v; }
        else if (!strcmp(a, "-k")) { VAL(); if (!cli_int(cmd, a, v, 1, RAMOLE_MAX_ADAPTERS, &o->top_k)) return false; }
        else if (!strcmp(a, "--mode")) { VAL(); o->mode = v; }
        else if (!strcmp(a, "--lora-type")) { VAL(); if (!cli_adapter_type(cmd, a, v, &o->lora_type)) return false; }
        else if (!strcmp(a, "--all")) o->all = true;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = true;
        /* response formats, by llama.cpp's names (TEXT, or -file FILE) */
        else if (!strcmp(a, "--json")) { if (!set_format(cmd, o, &o->json_schema, strdup("{\"type\": \"object\"}"))) return false; }
        else if (!strcmp(a, "--json-schema")) { VAL(); if (!set_format(cmd, o, &o->json_schema, strdup(v))) return false; }
        else if (!strcmp(a, "--json-schema-file")) { VAL(); if (!set_format(cmd, o, &o->json_schema, cli_read_text(cmd, v, NULL))) return false; }
        else if (!strcmp(a, "--grammar")) { VAL(); if (!set_format(cmd, o, &o->grammar, strdup(v))) return false; }
        else if (!strcmp(a, "--grammar-file")) { VAL(); if (!set_format(cmd, o, &o->grammar, cli_read_text(cmd, v, NULL))) return false; }
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return false;
        }
#undef VAL
    }
    if (!o->model && !o->registry) {
        fprintf(stderr, "ramole %s: -m MODEL is required\n", cmd);
        return false;
    }
    return true;
}

/* The composition mode the options ask for (explicit when --lora is given);
 * false after printing why it cannot be. */
static bool lora_mode(const char *cmd, const run_opts *o, ramole_compose_mode *out) {
    ramole_compose_mode mode = o->n_lora ? RAMOLE_COMPOSE_EXPLICIT : RAMOLE_COMPOSE_NONE;
    const char *why = NULL;
    if (o->mode && !ramole_compose_mode_from_name(o->mode, &mode)) {
        fprintf(stderr, "ramole %s: --mode must be none, explicit, selection, mixture, fusion or router, got '%s'\n",
                cmd, o->mode);
        return false;
    }
    if (mode != RAMOLE_COMPOSE_NONE && !o->n_lora) {
        fprintf(stderr, "ramole %s: --mode %s needs at least one --lora adapter\n", cmd, o->mode);
        return false;
    }
    if (mode == RAMOLE_COMPOSE_ROUTER && !o->router_path) why = "--mode router needs --router PATH";
    if (o->router_path && mode != RAMOLE_COMPOSE_ROUTER) why = "--router is used only with --mode router";
    if (why) {
        fprintf(stderr, "ramole %s: %s\n", cmd, why);
        return false;
    }
    *out = mode;
    return true;
}

static int need_prompt(const char *cmd, const run_opts *o) {
    if (!o->tokens && !o->prompt) {
        fprintf(stderr, "ramole %s: give a prompt with -p TEXT or --tokens 1,2,3\n", cmd);
        return 1;
    }
    if (o->tokens && o->prompt) {
        fprintf(stderr, "ramole %s: give -p TEXT or --tokens, not both\n", cmd);
        return 1;
    }
    return 0;
}

/* -p TEXT through the model's tokenizer (BOS/EOS as the tokenizer's template says). */
static ramole_status encode_prompt(run_opts *o, const ramole_model *m) {
    if (o->tokens) return RAMOLE_OK;
    ramole_model_info info;
    ramole_model_get_info(m, &info);
    if (!info.has_tokenizer)
        return ramole_error_set(RAMOLE_ERR_INVALID, "%s has no tokenizer; give the prompt as --tokens 1,2,3", o->model);
    size_t len = strlen(o->prompt), n = 0;
    ramole_status st = ramole_tokenize(m, o->prompt, len, 1, NULL, 0, &n);
    if (st == RAMOLE_ERR_TOO_SMALL || (st == RAMOLE_OK && n > 0)) {
        if (!(o->tokens = malloc(n * sizeof *o->tokens))) return ramole_error_set(RAMOLE_ERR_NOMEM, "out of memory");
        st = ramole_tokenize(m, o->prompt, len, 1, o->tokens, n, &n);
    }
    if (st == RAMOLE_OK && n == 0) st = ramole_error_set(RAMOLE_ERR_INVALID, "the prompt encodes to no tokens");
    o->n_tokens = (int)n;
    return st;
}

typedef struct {
    bool text;          /* the model has a tokenizer: print text, else ids */
    int generated;
    double t_first;     /* when the first token arrived (the prompt is done) */
    ramole_finish fin;
    char err[512];
} gen_out;

static void gen_event(const ramole_event *ev, void *user) {
    gen_out *g = user;
    if (ev->token >= 0) {
        if (!g->generated) g->t_first = ramole_time_now();
        if (!g->text) printf("%s%d", g->generated ? "," : "", ev->token);
        g->generated++;
    }
    if (g->text) fwrite(ev->text, 1, ev->len, stdout);
    fflush(stdout);
    if (ev->finish != RAMOLE_FINISH_NONE) g->fin = ev->finish;
    if (ev->error) snprintf(g->err, sizeof g->err, "%s", ev->error);
}

/*
 * generate --registry: the registry's base (or -m, which must be it), the
 * top-k adapters retrieved for the prompt text, their files as the
 * adapters to compose, and in router mode (the default when the registry
 * has a router; mixture otherwise) the registry's router, which gets the
 * hits' scores (for its retrieval prior, if it has one). stderr names what
 * was retrieved, with scores.
 */
typedef struct {
    ramole_registry *r;
    char *paths[RAMOLE_MAX_ADAPTERS + 1];
} reg_run;

static void reg_run_free(reg_run *rr) {
    for (int i = 0; i <= RAMOLE_MAX_ADAPTERS; i++) ramole_free(rr->paths[i]);
    ramole_registry_free(rr->r);
}

#define TRY(expr)                                   \
    do {                                            \
        ramole_status try_st_ = (expr);             \
        if (try_st_ != RAMOLE_OK) return try_st_;   \
    } while (0)

static ramole_status registry_adapters(run_opts *o, reg_run *rr, ramole_model **own, const ramole_model **m,
                                       ramole_compose_mode *mode) {
    if (!o->prompt) return ramole_error_set(RAMOLE_ERR_INVALID, "--registry retrieves for a text: give -p TEXT");
    if (o->n_lora || o->router_path)
        return ramole_error_set(RAMOLE_ERR_INVALID, "--registry chooses the adapters: leave out --lora and --router");
    TRY(ramole_registry_open(o->registry, &rr->r));
    if (o->model) {
        TRY(ramole_model_open(o->model, own));
        *m = *own;
        TRY(ramole_registry_set_base(rr->r, *own));
    } else {
        TRY(ramole_registry_base(rr->r, m)); /* owned by the registry */
    }
    char *router = NULL;
    TRY(ramole_registry_router_file(rr->r, &router));
    rr->paths[RAMOLE_MAX_ADAPTERS] = router;
    *mode = router ? RAMOLE_COMPOSE_ROUTER : RAMOLE_COMPOSE_MIXTURE;
    if (o->mode && (!ramole_compose_mode_from_name(o->mode, mode) || *mode == RAMOLE_COMPOSE_NONE ||
                    *mode == RAMOLE_COMPOSE_EXPLICIT))
        return ramole_error_set(RAMOLE_ERR_INVALID,
                                "--mode with --registry must be router, mixture, fusion or selection, got '%s'", o->mode);
    if (*mode == RAMOLE_COMPOSE_ROUTER && !router)
        return ramole_error_set(RAMOLE_ERR_NOT_FOUND, "the registry has no router (ramole registry set --router R), so "
                                "--mode router cannot run; use --mode mixture");
    ramole_registry_hit hits[RAMOLE_MAX_ADAPTERS];
    int n = 0;
    TRY(ramole_registry_retrieve(rr->r, o->prompt, o->tenant, (int)o->top_k, hits, &n));
    if (!n) return ramole_error_set(RAMOLE_ERR_NOT_FOUND, "the registry has no active adapter to retrieve");
    fprintf(stderr, "retrieved (%s):", ramole_compose_mode_name(*mode));
    for (int i = 0; i < n; i++) {
        TRY(ramole_registry_adapter_file(rr->r, o->tenant, hits[i].id, &rr->paths[i]));
        o->lora_paths[i] = rr->paths[i];
        o->lora_weights[i] = 1.0f;
        o->lora_scores[i] = hits[i].score;
        fprintf(stderr, " %s %.4f", hits[i].name, (double)hits[i].score);
    }
    fprintf(stderr, "\n");
    o->n_lora = n;
    o->router_path = *mode == RAMOLE_COMPOSE_ROUTER ? router : NULL;
    return RAMOLE_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    run_opts o;
    if (!parse_run(cmd, argc, argv, &o)) return 2;
    ramole_model *own = NULL; /* the model, unless the registry opened it */
    const ramole_model *m = NULL;
    ramole_engine *eng = NULL;
    ramole_compose_mode mode = RAMOLE_COMPOSE_NONE;
    reg_run rr = {0};
    int rc = 1;
    ramole_status st;
    if (need_prompt(cmd, &o)) goto out;
    if (o.registry) st = registry_adapters(&o, &rr, &own, &m, &mode);
    else if (!lora_mode(cmd, &o, &mode)) goto out;
    else if ((st = ramole_model_open(o.model, &own)) == RAMOLE_OK) m = own;
    if (st == RAMOLE_OK) st = encode_prompt(&o, m);
    if (st != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    int n_ctx = o.n_ctx ? (int)o.n_ctx : o.n_tokens + (int)o.n_predict;
    if (o.n_tokens + o.n_predict > n_ctx) {
        fprintf(stderr, "ramole %s: prompt (%d) + -n (%ld) exceed the context of %d tokens\n", cmd, o.n_tokens,
                o.n_predict, n_ctx);
        goto out;
    }
    ramole_model_info info;
    ramole_model_get_info(m, &info);
    gen_out g = {.text = info.has_tokenizer != 0};
    double t0 = ramole_time_now();
    if (o.n_predict > 0) {
        ramole_engine_params ep = {.n_threads = (int)o.threads, .max_seqs = 1, .n_ctx = n_ctx,
                                   .step_tokens = o.n_tokens, .kv_type = o.kv_type, .kv_block = (int)o.kv_block,
                                   .max_adapters = o.n_lora ? o.n_lora : 1, .adapter_type = o.lora_type};
        ramole_request q = o.sp;
        q.tokens = o.tokens;
        q.n_tokens = o.n_tokens;
        q.max_tokens = (int)o.n_predict;
        q.ignore_eos = o.ignore_eos;
        q.json_schema = o.json_schema;
        q.grammar = o.grammar;
        q.mode = mode;
        q.n_adapters = mode == RAMOLE_COMPOSE_NONE ? 0 : o.n_lora;
        for (int i = 0; i < q.n_adapters; i++)
            q.adapters[i] = o.lora_paths[i], q.weights[i] = o.lora_weights[i], q.retrieval[i] = o.lora_scores[i];
        q.router = o.router_path;
        q.on_event = gen_event;
        q.user = &g;
        int64_t id;
        int n_run;
        if ((st = ramole_engine_new(m, &ep, &eng)) != RAMOLE_OK ||
            (st = ramole_engine_submit(eng, &q, &id)) != RAMOLE_OK) {
            rc = cli_fail(cmd, st);
            goto out;
        }
        while (ramole_engine_pending(eng))
            if ((st = ramole_engine_step(eng, &n_run)) != RAMOLE_OK) {
                rc = cli_fail(cmd, st);
                goto out;
            }
        if (g.fin == RAMOLE_FINISH_ERROR) {
            fprintf(stderr, "ramole %s: %s\n", cmd, g.err);
            goto out;
        }
    }
    double t2 = ramole_time_now(), t1 = g.generated ? g.t_first : t2;
    printf("\n");
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f tok/s); generated: %d tokens in %.3f s (%.2f tok/s)\n",
            o.n_tokens, t1 - t0, o.n_tokens / (t1 - t0), g.generated, t2 - t1,
            g.generated > 1 ? (g.generated - 1) / (t2 - t1) : 0.0);
    rc = 0;
out:
    ramole_engine_free(eng);
    reg_run_free(&rr);
    ramole_model_free(own);
    free(o.tokens);
    free(o.json_schema);
    free(o.grammar);
    return rc;
}

/* The adapters of the options, for ramole_model_logits. */
static void lora_set(const run_opts *o, ramole_compose_mode mode, ramole_lora_set *s) {
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->n_adapters = o->n_lora;
    for (int i = 0; i < o->n_lora; i++) s->adapters[i] = o->lora_paths[i], s->weights[i] = o->lora_weights[i];
    s->router = o->router_path;
    s->adapter_type = o->lora_type;
}

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits";
    run_opts o;
    if (!parse_run(cmd, argc, argv, &o)) return 2;
    ramole_model *m = NULL;
    float *logits = NULL;
    int rows = 0, rc = 1;
    ramole_compose_mode mode;
    ramole_lora_set lora;
    ramole_status st;
    if (need_prompt(cmd, &o)) goto out;
    if ((st = ramole_model_open(o.model, &m)) != RAMOLE_OK || (st = encode_prompt(&o, m)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if (!lora_mode(cmd, &o, &mode)) goto out;
    lora_set(&o, mode, &lora);
    ramole_run_params rp = {.n_threads = (int)o.threads, .kv_type = o.kv_type, .kv_block = (int)o.kv_block};
    if ((st = ramole_model_logits(m, &rp, &lora, o.tokens, o.n_tokens, o.all, &logits, &rows)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    ramole_model_info info;
    ramole_model_get_info(m, &info);
    for (size_t i = 0; i < (size_t)rows * (size_t)info.vocab_size; i++) printf("%.9g\n", logits[i]);
    rc = 0;
out:
    ramole_free(logits);
    ramole_model_free(m);
    free(o.tokens);
    free(o.json_schema);
    free(o.grammar);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    run_opts o;
    if (!parse_run(cmd, argc, argv, &o)) return 2;
    ramole_model *m = NULL;
    ramole_bench_result b;
    int np = (int)o.bench_prompt, nd = (int)o.bench_decode;
    ramole_run_params rp = {.n_threads = (int)o.threads, .kv_type = o.kv_type, .kv_block = (int)o.kv_block};
    ramole_status st = ramole_model_open(o.model, &m);
    /* as the llama.cpp peer does: a short run first, so that the measured one
     * does not pay the first touch of every mapped weight page */
    if (st == RAMOLE_OK && o.bench_warmup) st = ramole_model_bench(m, &rp, np < 32 ? np : 32, nd < 4 ? nd : 4, &b);
    if (st == RAMOLE_OK) st = ramole_model_bench(m, &rp, np, nd, &b);
    ramole_model_free(m);
    free(o.tokens);
    free(o.json_schema);
    free(o.grammar);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    json_t *r = json_object();
    json_object_set_new(r, "engine", json_string("ramole"));
    json_object_set_new(r, "model", json_string_nocheck(o.model)); /* the path as given, even when not UTF-8 */
    json_object_set_new(r, "threads", json_integer(o.threads));
    json_object_set_new(r, "prompt", json_integer(np));
    json_object_set_new(r, "decode", json_integer(nd));
    json_object_set_new(r, "warmup", json_integer(o.bench_warmup));
    json_object_set_new(r, "prefill_tps", cli_json_num("%.3f", b.prefill_tps));
    json_object_set_new(r, "prefill_cpu_util", cli_json_num("%.2f", b.prefill_cpu_util));
    json_object_set_new(r, "decode_tps", cli_json_num("%.3f", b.decode_tps));
    /* as the llama.cpp peer reports it: well below 1, other processes took the CPU */
    json_object_set_new(r, "decode_cpu_util", cli_json_num("%.2f", b.decode_cpu_util));
    if (nd > 0) { /* the fastest step is the one least disturbed by other processes */
        json_object_set_new(r, "decode_best_tps", cli_json_num("%.3f", b.decode_best_tps));
        json_object_set_new(r, "decode_median_tps", cli_json_num("%.3f", b.decode_median_tps));
    }
    if (cli_json_line(stdout, r)) return 0;
    fprintf(stderr, "ramole %s: cannot write the result\n", cmd);
    return 1;
}
