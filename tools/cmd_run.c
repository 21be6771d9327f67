/*
 * cmd_run.c — the commands that run the model: generate, logits, bench.
 * Results go to standard output; timings and logs to standard error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/engine.h"
#include "registry/registry.h"
#include "lora/compose.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model;
    const char *prompt;
    int32_t *tokens;
    int n_tokens;
    long n_predict, threads, n_ctx, bench_prompt, bench_decode, kv_block;
    ramole_kv_type kv_type;
    bool all, ignore_eos;
    rm_sampler_params sp;
    /* LoRA */
    const char *lora_paths[RM_LORA_MAX_K];
    float lora_weights[RM_LORA_MAX_K];
    int n_lora;
    const char *router_path;
    const char *mode;
    /* retrieval from a registry (generate --registry) */
    const char *registry, *tenant;
    long top_k;
    ramole_adapter_type lora_type; /* element type adapters are stored in */
} run_opts;

static bool parse_lora(const char *cmd, char *arg, run_opts *o) {
    if (o->n_lora == RM_LORA_MAX_K) {
        fprintf(stderr, "ramole %s: at most %d --lora adapters\n", cmd, RM_LORA_MAX_K);
        return false;
    }
    if (!cli_lora_spec(cmd, arg, &o->lora_weights[o->n_lora])) return false;
    o->lora_paths[o->n_lora++] = arg;
    return true;
}

/* Parse the options every run command shares; false on a bad option. */
static bool parse_run(const char *cmd, int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 32;
    o->threads = rm_cpu_count();
    o->bench_prompt = 512;
    o->bench_decode = 64;
    o->top_k = 3;
    rm_sampler_params_default(&o->sp);
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
        else if (!strcmp(a, "--temp")) { VAL(); if (!cli_float(cmd, a, v, 0, 100, &d)) return false; o->sp.temperature = (float)d; }
        else if (!strcmp(a, "--top-k")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 24, &l)) return false; o->sp.top_k = (int)l; }
        else if (!strcmp(a, "--top-p")) { VAL(); if (!cli_float(cmd, a, v, 1e-6, 1, &d)) return false; o->sp.top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { VAL(); if (!cli_float(cmd, a, v, 0, 1, &d)) return false; o->sp.min_p = (float)d; }
        else if (!strcmp(a, "--repeat-penalty")) { VAL(); if (!cli_float(cmd, a, v, 1e-3, 100, &d)) return false; o->sp.repeat_penalty = (float)d; }
        else if (!strcmp(a, "--repeat-last-n")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 20, &l)) return false; o->sp.repeat_last_n = (int)l; }
        else if (!strcmp(a, "--seed")) { VAL(); if (!cli_u64(cmd, a, v, &o->sp.seed)) return false; }
        else if (!strcmp(a, "--lora")) { VAL(); if (!parse_lora(cmd, (char *)v, o)) return false; }
        else if (!strcmp(a, "--router")) { VAL(); o->router_path = v; }
        else if (!strcmp(a, "--registry")) { VAL(); o->registry = v; }
        else if (!strcmp(a, "--tenant")) { VAL(); o->tenant = v; }
        else if (!strcmp(a, "-k")) { VAL(); if (!cli_int(cmd, a, v, 1, RM_LORA_MAX_K, &o->top_k)) return false; }
        else if (!strcmp(a, "--mode")) { VAL(); o->mode = v; }
        else if (!strcmp(a, "--lora-type")) { VAL(); if (!cli_adapter_type(cmd, a, v, &o->lora_type)) return false; }
        else if (!strcmp(a, "--all")) o->all = true;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = true;
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

/* Adapters named on the command line, loaded against the model. */
typedef struct {
    rm_adapter *experts[RM_LORA_MAX_K];
    rm_adapter *router;
    rm_composition comp;
    rm_lora_state *state; /* attached to the run's context (free the context first) */
} run_lora;

static void run_lora_free(run_lora *l) {
    rm_lora_state_free(l->state);
    for (int i = 0; i < RM_LORA_MAX_K; i++) rm_adapter_free(l->experts[i]);
    rm_adapter_free(l->router);
}

/* The composition mode the options ask for (explicit when --lora is given). */
static rm_status lora_mode(const run_opts *o, rm_compose_mode *out) {
    rm_compose_mode mode = o->n_lora ? RM_COMPOSE_EXPLICIT : RM_COMPOSE_NONE;
    if (o->mode && !rm_compose_mode_from_name(o->mode, &mode))
        return rm_err(RAMOLE_ERR_INVALID, "--mode must be none, explicit, selection, mixture, fusion or router, got '%s'", o->mode);
    if (mode != RM_COMPOSE_NONE && !o->n_lora)
        return rm_err(RAMOLE_ERR_INVALID, "--mode %s needs at least one --lora adapter", o->mode);
    if (mode == RM_COMPOSE_ROUTER && !o->router_path)
        return rm_err(RAMOLE_ERR_INVALID, "--mode router needs --router PATH");
    if (o->router_path && mode != RM_COMPOSE_ROUTER)
        return rm_err(RAMOLE_ERR_INVALID, "--router is used only with --mode router");
    *out = mode;
    return RAMOLE_OK;
}

static rm_status load_lora(const run_opts *o, const rm_model *m, run_lora *l) {
    memset(l, 0, sizeof *l);
    rm_compose_mode mode;
    RM_TRY(lora_mode(o, &mode));
    for (int i = 0; i < o->n_lora; i++) {
        RM_TRY(rm_adapter_load(m, o->lora_paths[i], &l->experts[i]));
        RM_TRY(rm_adapter_convert(l->experts[i], m, (rm_type)o->lora_type));
    }
    if (o->router_path) {
        RM_TRY(rm_adapter_load(m, o->router_path, &l->router));
        RM_TRY(rm_adapter_convert(l->router, m, (rm_type)o->lora_type));
    }
    l->comp.mode = mode;
    l->comp.k = o->n_lora;
    for (int i = 0; i < o->n_lora; i++) {
        l->comp.experts[i] = l->experts[i];
        l->comp.weights[i] = o->lora_weights[i];
    }
    l->comp.router = l->router;
    return RAMOLE_OK;
}

static int max_rank(const run_lora *l, int n) {
    int r = l->router ? l->router->max_rank : 0;
    for (int i = 0; i < n; i++) r = l->experts[i]->max_rank > r ? l->experts[i]->max_rank : r;
    return r;
}

/* The run's context; with adapters, their state attached and kept in l. */
static rm_status open_ctx(const run_opts *o, rm_model *m, int n_batch, int n_logits, int n_ctx, run_lora *l,
                          rm_ctx **ctx) {
    rm_ctx_params p = {.n_ctx = n_ctx, .n_seq = 1, .n_batch = n_batch, .n_logits = n_logits,
                       .n_threads = (int)o->threads, .kv_block = (int)o->kv_block,
                       .kv_type = o->kv_type == RAMOLE_KV_F16 ? RM_TYPE_F16 : RM_TYPE_F32};
    if (!l || l->comp.mode == RM_COMPOSE_NONE) return rm_ctx_new(m, &p, ctx);
    RM_TRY(rm_lora_ctx_new(m, &p, o->n_lora, max_rank(l, o->n_lora), ctx, &l->state));
    return rm_lora_set(l->state, 0, &l->comp);
}

/* Run the prompt as one batch of position 0.. (logits for every token if all). */
static rm_status run_prompt(rm_ctx *ctx, const int32_t *tokens, int n, bool all) {
    int32_t *pos = rm_malloc((size_t)n * sizeof *pos), *seq = rm_calloc((size_t)n, sizeof *seq);
    uint8_t *want = rm_malloc((size_t)n);
    rm_status st;
    if (!pos || !seq || !want) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        want[i] = all || i == n - 1;
    }
    rm_batch b = {n, tokens, pos, seq, want};
    st = rm_ctx_decode(ctx, &b);
done:
    rm_free(pos);
    rm_free(seq);
    rm_free(want);
    return st;
}

static rm_status decode_one(rm_ctx *ctx, int32_t token, int32_t pos) {
    int32_t seq = 0;
    uint8_t want = 1;
    rm_batch b = {1, &token, &pos, &seq, &want};
    return rm_ctx_decode(ctx, &b);
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
static rm_status encode_prompt(run_opts *o, const rm_model *m) {
    if (o->tokens) return RAMOLE_OK;
    if (!m->tokenizer)
        return rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer; give the prompt as --tokens 1,2,3", o->model);
    rm_tok_ids ids = {0};
    rm_status st = rm_tok_encode(m->tokenizer, o->prompt, strlen(o->prompt), RM_TOK_ADD_SPECIAL, &ids);
    if (st == RAMOLE_OK && ids.n == 0) st = rm_err(RAMOLE_ERR_INVALID, "the prompt encodes to no tokens");
    if (st == RAMOLE_OK && !(o->tokens = malloc(ids.n * sizeof *o->tokens)))
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) {
        memcpy(o->tokens, ids.ids, ids.n * sizeof *o->tokens);
        o->n_tokens = (int)ids.n;
    }
    rm_tok_ids_free(&ids);
    return st;
}

typedef struct {
    bool text;          /* the model has a tokenizer: print text, else ids */
    int generated;
    double t_first;     /* when the first token arrived (the prompt is done) */
    rm_finish_reason fin;
    char err[512];
} gen_out;

static void gen_event(const rm_engine_event *ev, void *user) {
    gen_out *g = user;
    if (ev->token >= 0) {
        if (!g->generated) g->t_first = rm_time_now();
        if (!g->text) printf("%s%d", g->generated ? "," : "", ev->token);
        g->generated++;
    }
    if (g->text) fwrite(ev->text, 1, ev->len, stdout);
    fflush(stdout);
    if (ev->finish != RM_FINISH_NONE) g->fin = ev->finish;
    if (ev->error) snprintf(g->err, sizeof g->err, "%s", ev->error);
}

/*
 * generate --registry: the registry's base (or -m, which must be it), the
 * top-k adapters retrieved for the prompt text, their files as the
 * adapters to compose, and in router mode (the default when the registry
 * has a router; mixture otherwise) the registry's router. stderr names what
 * was retrieved, with scores.
 */
typedef struct {
    rm_registry *r;
    char *paths[RM_LORA_MAX_K + 1];
} reg_run;

static void reg_run_free(reg_run *rr) {
    for (int i = 0; i <= RM_LORA_MAX_K; i++) rm_free(rr->paths[i]);
    rm_registry_free(rr->r);
}

static rm_status registry_adapters(run_opts *o, reg_run *rr, rm_model **m, rm_compose_mode *mode) {
    if (!o->prompt) return rm_err(RAMOLE_ERR_INVALID, "--registry retrieves for a text: give -p TEXT");
    if (o->n_lora || o->router_path)
        return rm_err(RAMOLE_ERR_INVALID, "--registry chooses the adapters: leave out --lora and --router");
    RM_TRY(rm_registry_open(o->registry, &rr->r));
    if (o->model) {
        RM_TRY(rm_model_open(o->model, m));
        RM_TRY(rm_registry_set_base(rr->r, *m));
    } else {
        RM_TRY(rm_registry_base(rr->r, m)); /* owned by the registry */
    }
    char *router = NULL;
    RM_TRY(rm_registry_router_file(rr->r, &router));
    rr->paths[RM_LORA_MAX_K] = router;
    *mode = router ? RM_COMPOSE_ROUTER : RM_COMPOSE_MIXTURE;
    if (o->mode && (!rm_compose_mode_from_name(o->mode, mode) || *mode == RM_COMPOSE_NONE ||
                    *mode == RM_COMPOSE_EXPLICIT))
        return rm_err(RAMOLE_ERR_INVALID, "--mode with --registry must be router, mixture, fusion or selection, got '%s'",
                      o->mode);
    if (*mode == RM_COMPOSE_ROUTER && !router)
        return rm_err(RAMOLE_ERR_NOT_FOUND, "the registry has no router (ramole registry set --router R), so "
                      "--mode router cannot run; use --mode mixture");
    rm_reg_hit hits[RM_LORA_MAX_K];
    int n = 0;
    RM_TRY(rm_registry_retrieve(rr->r, o->prompt, o->tenant, (int)o->top_k, hits, &n));
    if (!n) return rm_err(RAMOLE_ERR_NOT_FOUND, "the registry has no active adapter to retrieve");
    fprintf(stderr, "retrieved (%s):", rm_compose_mode_name(*mode));
    for (int i = 0; i < n; i++) {
        RM_TRY(rm_registry_adapter_file_id(rr->r, o->tenant, hits[i].id, &rr->paths[i], NULL));
        o->lora_paths[i] = rr->paths[i];
        o->lora_weights[i] = 1.0f;
        fprintf(stderr, " %s %.4f", hits[i].name, (double)hits[i].score);
    }
    fprintf(stderr, "\n");
    o->n_lora = n;
    o->router_path = *mode == RM_COMPOSE_ROUTER ? router : NULL;
    return RAMOLE_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    run_opts o;
    if (!parse_run(cmd, argc, argv, &o)) return 2;
    rm_model *m = NULL;
    rm_engine *eng = NULL;
    rm_compose_mode mode = RM_COMPOSE_NONE;
    reg_run rr = {0};
    int rc = 1;
    rm_status st;
    if (need_prompt(cmd, &o)) goto out;
    if (o.registry) st = registry_adapters(&o, &rr, &m, &mode);
    else if ((st = lora_mode(&o, &mode)) == RAMOLE_OK) st = rm_model_open(o.model, &m);
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
    gen_out g = {.text = m->tokenizer != NULL};
    double t0 = rm_time_now();
    if (o.n_predict > 0) {
        rm_engine_params ep = {.n_threads = (int)o.threads, .max_seqs = 1, .n_ctx = n_ctx,
                               .step_tokens = o.n_tokens, .kv_type = o.kv_type == RAMOLE_KV_F16 ? RM_TYPE_F16 : RM_TYPE_F32, .kv_block = (int)o.kv_block,
                               .max_adapters = o.n_lora ? o.n_lora : 1, .adapter_type = (rm_type)o.lora_type};
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.tokens = o.tokens;
        q.n_tokens = o.n_tokens;
        q.sampling = o.sp;
        q.max_tokens = (int)o.n_predict;
        q.ignore_eos = o.ignore_eos;
        q.mode = mode;
        q.n_adapters = mode == RM_COMPOSE_NONE ? 0 : o.n_lora;
        for (int i = 0; i < q.n_adapters; i++) q.adapters[i] = o.lora_paths[i], q.weights[i] = o.lora_weights[i];
        q.router = o.router_path;
        q.on_event = gen_event;
        q.user = &g;
        int64_t id;
        int n_run;
        if ((st = rm_engine_new(m, &ep, &eng)) != RAMOLE_OK || (st = rm_engine_submit(eng, &q, &id)) != RAMOLE_OK) {
            rc = cli_fail(cmd, st);
            goto out;
        }
        while (rm_engine_pending(eng))
            if ((st = rm_engine_step(eng, &n_run)) != RAMOLE_OK) {
                rc = cli_fail(cmd, st);
                goto out;
            }
        if (g.fin == RM_FINISH_ERROR) {
            fprintf(stderr, "ramole %s: %s\n", cmd, g.err);
            goto out;
        }
    }
    double t2 = rm_time_now(), t1 = g.generated ? g.t_first : t2;
    printf("\n");
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f tok/s); generated: %d tokens in %.3f s (%.2f tok/s)\n",
            o.n_tokens, t1 - t0, o.n_tokens / (t1 - t0), g.generated, t2 - t1,
            g.generated > 1 ? (g.generated - 1) / (t2 - t1) : 0.0);
    rc = 0;
out:
    rm_engine_free(eng);
    rm_model *own = !rr.r || o.model ? m : NULL; /* the registry frees a base it opened */
    reg_run_free(&rr);
    rm_model_free(own);
    free(o.tokens);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits";
    run_opts o;
    if (!parse_run(cmd, argc, argv, &o)) return 2;
    rm_model *m = NULL;
    rm_ctx *ctx = NULL;
    run_lora lora = {0};
    int rc = 1;
    rm_status st;
    if (need_prompt(cmd, &o)) goto out;
    if ((st = rm_model_open(o.model, &m)) != RAMOLE_OK || (st = encode_prompt(&o, m)) != RAMOLE_OK ||
        (st = load_lora(&o, m, &lora)) != RAMOLE_OK ||
        (st = open_ctx(&o, m, o.n_tokens, o.all ? o.n_tokens : 1, o.n_tokens, &lora, &ctx)) != RAMOLE_OK ||
        (st = run_prompt(ctx, o.tokens, o.n_tokens, o.all)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    for (int r = 0; r < rm_ctx_n_logits(ctx); r++) {
        const float *l = rm_ctx_logits(ctx, r);
        for (int i = 0; i < m->cfg.vocab_size; i++) printf("%.9g\n", l[i]);
    }
    rc = 0;
out:
    rm_ctx_free(ctx);
    run_lora_free(&lora);
    rm_model_free(m);
    free(o.tokens);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    run_opts o;
    if (!parse_run(cmd, argc, argv, &o)) return 2;
    rm_model *m = NULL;
    rm_ctx *ctx = NULL;
    int32_t *prompt = NULL;
    int rc = 1;
    rm_status st;
    int np = (int)o.bench_prompt, nd = (int)o.bench_decode;
    if ((st = rm_model_open(o.model, &m)) != RAMOLE_OK ||
        (st = open_ctx(&o, m, np, 1, np + nd + 1, NULL, &ctx)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    prompt = rm_malloc((size_t)np * sizeof *prompt);
    if (!prompt) { rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory")); goto out; }
    uint64_t s = 12345;
    for (int i = 0; i < np; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        prompt[i] = (int32_t)(3 + (s >> 33) % (uint64_t)(m->cfg.vocab_size - 3));
    }
    double t0 = rm_time_now();
    if ((st = run_prompt(ctx, prompt, np, false)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    double t1 = rm_time_now();
    int32_t tok = prompt[np - 1];
    for (int i = 0; i < nd; i++) {
        const float *l = rm_ctx_logits(ctx, 0);
        int32_t best = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++) if (l[v] > l[best]) best = v;
        tok = best;
        if ((st = decode_one(ctx, tok, np + i)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    }
    double t2 = rm_time_now();
    json_t *r = json_object();
    json_object_set_new(r, "engine", json_string("ramole"));
    json_object_set_new(r, "model", json_string_nocheck(o.model)); /* the path as given, even when not UTF-8 */
    json_object_set_new(r, "threads", json_integer(o.threads));
    json_object_set_new(r, "prompt", json_integer(np));
    json_object_set_new(r, "decode", json_integer(nd));
    json_object_set_new(r, "prefill_tps", cli_json_num("%.3f", np / (t1 - t0)));
    json_object_set_new(r, "decode_tps", cli_json_num("%.3f", nd > 0 ? nd / (t2 - t1) : 0.0));
    rc = cli_json_line(stdout, r) ? 0 : cli_fail(cmd, rm_err(RAMOLE_ERR_IO, "cannot write the result"));
out:
    rm_free(prompt);
    rm_ctx_free(ctx);
    rm_model_free(m);
    free(o.tokens);
    return rc;
}
