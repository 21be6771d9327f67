/*
 * train.c — include/ramole/train.h over src/train: the three trainers
 * share one loop (rm_train_run) over a training model and datasets and
 * differ only in how the model is built, whether a batch's router experts
 * are drawn, and what is exported at the end; and the router's
 * evaluation.
 */
#include <math.h>
#include <string.h>

#include "lora/compose.h"
#include "model/public.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/loop.h"
#include "train/router_eval.h"
#include "train/train.h"

_Static_assert(RAMOLE_TRAIN_MAX_K == RM_TRAIN_MAX_K && RAMOLE_TRAIN_MAX_POOL == RM_TRAIN_MAX_POOL,
               "public and internal training limits must agree");
_Static_assert((int)RAMOLE_SPAN_COUNT == (int)RM_EVAL_SPAN_COUNT && (int)RAMOLE_DEPTH_COUNT == (int)RM_EVAL_DEPTH_COUNT,
               "public and internal router evaluation enums must agree");
_Static_assert(sizeof(ramole_router_eval_example) == sizeof(rm_router_eval_example) &&
                   offsetof(ramole_router_eval_example, picked) == offsetof(rm_router_eval_example, picked),
               "ramole_router_eval_example and rm_router_eval_example must share their layout");
_Static_assert(sizeof(ramole_router_eval_summary) == sizeof(rm_router_eval_summary),
               "ramole_router_eval_summary and rm_router_eval_summary must share their layout");

/* One run: what the loop reads, and the caller's callback. */
typedef struct {
    const ramole_train_params *p;
    rm_tm_f32 *tm;
    rm_dataset *train, *val;
    int T;                     /* batch width (max_seq) */
    int32_t pad;
    rm_expert_lists lists, val_lists;
    rm_expert_draw draw;
    ramole_train_fn fn;
    void *user;
} train_job;

static void job_free(train_job *j) {
    rm_tm_f32_free(j->tm);
    rm_dataset_free(j->train);
    rm_dataset_free(j->val);
    rm_expert_lists_free(&j->lists);
    rm_expert_lists_free(&j->val_lists);
}

static rm_status relay(const rm_train_progress *in, void *user) {
    train_job *j = user;
    if (!j->fn) return RAMOLE_OK;
    static const ramole_train_event events[] = {
        [RM_TRAIN_EVENT_START] = RAMOLE_TRAIN_EVENT_START, [RM_TRAIN_EVENT_EVAL] = RAMOLE_TRAIN_EVENT_EVAL,
        [RM_TRAIN_EVENT_STEP] = RAMOLE_TRAIN_EVENT_STEP,   [RM_TRAIN_EVENT_NAN] = RAMOLE_TRAIN_EVENT_NAN,
        [RM_TRAIN_EVENT_DONE] = RAMOLE_TRAIN_EVENT_DONE};
    ramole_train_progress p = {.event = events[in->event], .n_examples = j->train->n,
                               .n_val = j->val ? j->val->n : 0, .seq = j->T, .step = in->step, .total = in->total,
                               .stop = in->stop, .first_step = in->first_step, .resumed = in->resumed,
                               .n_params = in->n_params, .loss = in->loss, .gate_ce = in->gate_ce, .lr = in->lr,
                               .grad_norm = in->grad_norm, .val_loss = in->val_loss, .tokens = in->tokens,
                               .elapsed_s = in->elapsed_s, .tokens_per_s = in->tokens_per_s, .eta_s = in->eta_s};
    return j->fn(&p, j->user);
}

static rm_status run_loop(train_job *j) {
    const ramole_train_params *o = j->p;
    rm_train_run_params rp = {
        .train = j->train, .val = j->val, .seq = j->T, .pad = j->pad,
        .steps = o->steps, .epochs = o->epochs, .stop_at = o->stop_at, .batch = o->batch, .accum = o->accum,
        .lr = o->lr, .weight_decay = o->weight_decay, .min_lr_ratio = o->min_lr_ratio, .clip = o->clip,
        .warmup = o->warmup, .seed = o->seed, .eval_every = o->eval_every,
        .experts = j->draw.n_pool ? &j->draw : NULL, .val_experts = j->val_lists.n ? &j->val_lists : NULL,
        .gate_loss = o->gate_loss,
        .checkpoint = o->checkpoint, .resume = o->resume != 0, .save_every = o->save_every,
        .progress = relay, .user = j,
    };
    return rm_train_run(j->tm, &rp);
}

/* Load the JSONL data, split off the held-out part, choose T. */
static rm_status load_examples(train_job *j, const rm_tok *tok, int max_pos) {
    const ramole_train_params *o = j->p;
    if (o->n_data != 1)
        return rm_err(RAMOLE_ERR_INVALID, "--data takes one JSONL file for %s",
                      o->kind == RAMOLE_TRAIN_ROUTER ? "router" : "lora");
    if (o->ctx > max_pos) return rm_err(RAMOLE_ERR_INVALID, "--ctx %d exceeds the model's context of %d", o->ctx, max_pos);
    rm_data_opts dop = {.ctx = o->ctx ? o->ctx : max_pos, .truncate = o->truncate != 0, .eos = -1};
    RM_TRY(rm_data_load_jsonl(tok, o->data[0], &dop, &j->train));
    ramole_train_progress ev = {.event = RAMOLE_TRAIN_EVENT_DATA, .n_examples = j->train->n,
                                .n_truncated = j->train->n_truncated, .ctx = dop.ctx, .val_loss = NAN};
    if (j->fn) RM_TRY(j->fn(&ev, j->user));
    if (o->val > 0) {
        RM_TRY(rm_data_split(j->train, o->val, o->seed, &j->val));
        if (j->val->n == 0) {
            rm_dataset_free(j->val);
            j->val = NULL;
        }
    }
    int T = 1;
    for (int i = 0; i < j->train->n; i++) T = j->train->ex[i].n - 1 > T ? j->train->ex[i].n - 1 : T;
    for (int i = 0; j->val && i < j->val->n; i++) T = j->val->ex[i].n - 1 > T ? j->val->ex[i].n - 1 : T;
    j->T = T;
    j->pad = rm_data_eos(tok, 0);
    return RAMOLE_OK;
}

/* A router with a retrieval prior learns on the scores that retrieved each
 * example's adapters: every example must carry them (the held-out part is
 * a subset of these). */
static rm_status check_scored(const rm_dataset *d, const char *file) {
    for (int i = 0; i < d->n; i++)
        if (!d->ex[i].scores)
            return rm_err(RAMOLE_ERR_INVALID, "%s:%d: --retrieval-prior needs each example's \"adapters\" and their "
                          "retrieval \"scores\"", file, d->ex[i].line);
    return RAMOLE_OK;
}

/* Drop from a fresh adapter (or router) the modules it must not train:
 * layers outside adapt_layers (PEFT's layers_to_transform) and, for a
 * router (pool given), modules no pool expert has (they would only ever
 * see zero keys). */
static rm_status select_modules(const ramole_train_params *o, const rm_model *m, rm_adapter *const *pool,
                                rm_adapter *ad) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            bool used = !o->adapt_layers || o->adapt_layers[l], expert = !pool;
            for (int p = 0; pool && p < o->n_pool && !expert; p++) expert = rm_adapter_mod(pool[p], l, (rm_target)t)->rank > 0;
            used = used && expert;
            if (!used && rm_adapter_mod(ad, l, (rm_target)t)->rank) rm_adapter_drop_module(ad, l, (rm_target)t);
        }
    if (!ad->target_mask)
        return rm_err(RAMOLE_ERR_INVALID, "no module left to train (%s)",
                      pool ? "the pool's experts adapt none of --adapt-layers" : "--adapt-layers");
    return RAMOLE_OK;
}

static rm_status train_lora_or_router(const ramole_train_params *o, train_job *j) {
    bool router = o->kind == RAMOLE_TRAIN_ROUTER;
    if (!o->model) return rm_err(RAMOLE_ERR_INVALID, "-m MODEL is required");
    const rm_model *m = o->model->m;
    if (!m->tokenizer)
        return rm_err(RAMOLE_ERR_INVALID, "%s has no tokenizer (tokenizer.json); training data is text and must be "
                      "encoded as generate -p encodes it", m->path);
    if (o->n_pool < 0 || o->n_pool > RM_TRAIN_MAX_POOL)
        return rm_err(RAMOLE_ERR_INVALID, "at most %d --pool adapters", RM_TRAIN_MAX_POOL);
    rm_gate_pool gate_pool = RM_GATE_POOL_TOKEN;
    if (o->gate_pool && !rm_gate_pool_from_name(o->gate_pool, &gate_pool))
        return rm_err(RAMOLE_ERR_INVALID, "--gate-pool '%s' (token or prompt)", o->gate_pool);
    if (!rm_retrieval_prior_ok(o->retrieval_prior))
        return rm_err(RAMOLE_ERR_INVALID, "--retrieval-prior %g (0 to %g)", o->retrieval_prior,
                      RM_RETRIEVAL_PRIOR_MAX);
    rm_adapter *ad = NULL, *pool[RM_TRAIN_MAX_POOL] = {0};
    rm_status st = RAMOLE_OK;
    unsigned mask = o->targets;
    for (int p = 0; st == RAMOLE_OK && p < o->n_pool; p++) {
        if ((st = rm_adapter_load(m, o->pool[p], &pool[p])) != RAMOLE_OK) {
            rm_err_prefix(st, "--pool");
            break;
        }
        for (int q = 0; q < p; q++)
            if (!strcmp(pool[q]->name, pool[p]->name)) {
                st = rm_err(RAMOLE_ERR_INVALID, "two pool adapters are named '%s'", pool[p]->name);
                break;
            }
    }
    if (st != RAMOLE_OK) goto out;
    if (router) {
        mask = 0;
        for (int p = 0; p < o->n_pool; p++) mask |= pool[p]->target_mask;
    }
    if ((st = load_examples(j, m->tokenizer, m->cfg.max_pos)) != RAMOLE_OK) goto out;
    if (o->retrieval_prior > 0 && (st = check_scored(j->train, o->data[0])) != RAMOLE_OK) goto out;
    /* PEFT init: A uniform (kaiming-like, std 1/sqrt(3 din)), B = 0 */
    float std = 1.0f / sqrtf(3.0f * (float)m->cfg.hidden);
    if ((st = rm_adapter_random(m, o->rank, o->alpha, mask, o->seed, std, &ad)) != RAMOLE_OK) goto out;
    if ((st = select_modules(o, m, router ? pool : NULL, ad)) != RAMOLE_OK) goto out;
    for (int i = 0; i < m->cfg.n_layers * RM_TARGET_COUNT; i++)
        if (ad->mods[i].rank) {
            int64_t din, dout;
            rm_target_dims(&m->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
            memset(ad->mods[i].B, 0, (size_t)(dout * ad->mods[i].rank) * sizeof(float));
        }
    rm_train_params tp = {.kind = router ? RM_TRAIN_ROUTER : RM_TRAIN_LORA, .max_batch = o->batch, .max_seq = j->T,
                          .n_threads = o->n_threads > 0 ? o->n_threads : rm_cpu_count(), .lora = router ? NULL : ad};
    if (router) {
        int max_k = o->top_k && o->top_k < o->n_pool ? o->top_k : o->n_pool;
        if (max_k > RM_TRAIN_MAX_K) max_k = RM_TRAIN_MAX_K; /* a larger pool is drawn from, per sequence */
        tp.experts = (const rm_adapter *const *)pool;
        tp.n_experts = o->n_pool;
        tp.router = ad;
        tp.max_k = max_k;
        tp.gate_scale = o->gate_scale;
        tp.gate_pool = gate_pool;
        tp.retrieval_prior = o->retrieval_prior;
        /* names in the held-out part must exist too */
        if ((st = rm_expert_lists_map(j->train, pool, o->n_pool, &j->lists)) != RAMOLE_OK ||
            (j->val && (st = rm_expert_lists_map(j->val, pool, o->n_pool, &j->val_lists)) != RAMOLE_OK)) {
            rm_err_prefix(st, "%s", o->data[0]);
            goto out;
        }
        j->draw = (rm_expert_draw){.n_pool = o->n_pool, .max_k = max_k, .dropout = o->lora_dropout, .lists = &j->lists};
    }
    if ((st = rm_tm_f32_new(m, &tp, &j->tm)) != RAMOLE_OK) goto out;
    if ((st = run_loop(j)) != RAMOLE_OK) goto out;
    if ((st = rm_tm_f32_export_adapter(j->tm, ad)) != RAMOLE_OK) goto out;
    st = rm_adapter_save_peft(ad, m, o->out);
out:
    rm_adapter_free(ad);
    for (int p = 0; p < RM_TRAIN_MAX_POOL; p++) rm_adapter_free(pool[p]);
    return st;
}

static const struct {
    const char *name;
    int hidden, ffn, layers, heads, kv_heads, max_pos;
} presets[] = {
    {"tiny", 64, 160, 2, 4, 2, 512},
    {"small", 256, 704, 4, 8, 4, 1024},
};

int ramole_train_preset_known(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return 1;
    return 0;
}

/* The shape of a new base: the preset, with each given size over it. */
static rm_status preset_config(const ramole_train_params *o, rm_arch arch, const rm_tok *tok, rm_model_config *c) {
    size_t i = 0;
    while (i < sizeof presets / sizeof presets[0] && strcmp(presets[i].name, o->preset)) i++;
    if (i == sizeof presets / sizeof presets[0])
        return rm_err(RAMOLE_ERR_INVALID, "unknown preset '%s' (tiny, small)", o->preset);
    rm_model_config_defaults(c, arch);
    c->hidden = o->hidden ? o->hidden : presets[i].hidden;
    c->ffn = o->ffn ? o->ffn : presets[i].ffn;
    c->n_layers = o->n_layers ? o->n_layers : presets[i].layers;
    c->n_heads = o->n_heads ? o->n_heads : presets[i].heads;
    c->n_kv_heads = o->n_kv_heads ? o->n_kv_heads : (o->n_heads ? c->n_heads : presets[i].kv_heads);
    if (c->n_heads <= 0 || c->hidden % c->n_heads)
        return rm_err(RAMOLE_ERR_INVALID, "--hidden %d is not a multiple of --heads %d", c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    c->rope.n_rot = c->head_dim;
    c->max_pos = o->max_pos ? o->max_pos : presets[i].max_pos;
    c->vocab_size = rm_tok_vocab_size(tok);
    c->bos_id = rm_tok_bos(tok);
    c->eos_id = rm_data_eos(tok, -1);
    if (arch == RM_ARCH_QWEN2) c->qkv_bias = true;
    return RAMOLE_OK;
}

static rm_status train_base(const ramole_train_params *o, train_job *j) {
    if (!o->tokenizer) return rm_err(RAMOLE_ERR_INVALID, "--tokenizer TOKENIZER is required (a folder or tokenizer.json)");
    rm_arch arch;
    if (!o->arch || !rm_arch_from_name(o->arch, &arch))
        return rm_err(RAMOLE_ERR_INVALID, "unknown architecture '%s' (llama, mistral, qwen2)", o->arch ? o->arch : "");
    rm_tok *tok = NULL;
    rm_model *em = NULL;
    const rm_model *init = o->model ? o->model->m : NULL;
    rm_status st = rm_tok_load(o->tokenizer, &tok);
    if (st != RAMOLE_OK) goto out;
    if (init) { /* continued pretraining: the model's shape and weights */
        if (o->hidden || o->n_layers || o->n_heads || o->n_kv_heads || o->ffn || o->max_pos) {
            st = rm_err(RAMOLE_ERR_INVALID, "-m MODEL continues a model: its shape is given, drop --hidden etc.");
            goto out;
        }
        if (init->cfg.vocab_size != rm_tok_vocab_size(tok)) {
            st = rm_err(RAMOLE_ERR_MISMATCH, "%s has %d ids, the tokenizer %d", init->path, (int)init->cfg.vocab_size,
                        (int)rm_tok_vocab_size(tok));
            goto out;
        }
    }
    rm_model_config c;
    if (init) c = init->cfg;
    else if ((st = preset_config(o, arch, tok, &c)) != RAMOLE_OK) goto out;
    if ((st = rm_model_config_check(&c, "train base")) != RAMOLE_OK) goto out;
    int ctx = o->ctx ? o->ctx : (c.max_pos < 128 ? c.max_pos : 128);
    if (ctx > c.max_pos) {
        st = rm_err(RAMOLE_ERR_INVALID, "--ctx %d exceeds --max-pos %d", ctx, c.max_pos);
        goto out;
    }
    rm_data_opts dop = {.ctx = ctx, .eos = -1};
    if ((st = rm_data_load_text(tok, o->data, o->n_data, &dop, &j->train)) != RAMOLE_OK) goto out;
    if (o->val > 0 && (st = rm_data_split(j->train, o->val, o->seed, &j->val)) != RAMOLE_OK) goto out;
    if (j->val && j->val->n == 0) {
        rm_dataset_free(j->val);
        j->val = NULL;
    }
    j->T = ctx;
    j->pad = c.eos_id >= 0 ? c.eos_id : 0;
    rm_train_params tp = {.kind = RM_TRAIN_FULL, .max_batch = o->batch, .max_seq = ctx,
                          .n_threads = o->n_threads > 0 ? o->n_threads : rm_cpu_count()};
    st = init ? rm_tm_f32_new(init, &tp, &j->tm) : rm_tm_f32_new_random(&c, o->seed, (float)o->init_std, &tp, &j->tm);
    if (st != RAMOLE_OK) goto out;
    if ((st = run_loop(j)) != RAMOLE_OK) goto out;
    if ((st = rm_tm_f32_export_model(j->tm, &em)) != RAMOLE_OK ||
        (st = rm_model_set_tokenizer(em, o->tokenizer)) != RAMOLE_OK)
        goto out;
    st = rm_model_save(em, RM_SOURCE_HF, RM_TYPE_F32, o->out);
out:
    rm_model_free(em);
    rm_tok_free(tok);
    return st;
}

ramole_status ramole_train(const ramole_train_params *p, ramole_train_fn fn, void *user) {
    if (!p->out || p->n_data < 1) return rm_err(RAMOLE_ERR_INVALID, "train: -o OUTPUT and --data are required");
    if (p->gate_pool && p->kind != RAMOLE_TRAIN_ROUTER)
        return rm_err(RAMOLE_ERR_INVALID, "--gate-pool is for train router");
    if (p->retrieval_prior != 0 && p->kind != RAMOLE_TRAIN_ROUTER)
        return rm_err(RAMOLE_ERR_INVALID, "--retrieval-prior is for train router");
    train_job j = {.p = p, .fn = fn, .user = user};
    rm_status st;
    switch (p->kind) {
    case RAMOLE_TRAIN_LORA:
    case RAMOLE_TRAIN_ROUTER: st = train_lora_or_router(p, &j); break;
    case RAMOLE_TRAIN_BASE: st = train_base(p, &j); break;
    default: st = rm_err(RAMOLE_ERR_INVALID, "train: unknown kind %d", (int)p->kind);
    }
    job_free(&j);
    return st;
}

/* ---- the router's evaluation ---------------------------------------------------------- */

const char *ramole_span_name(ramole_span s) { return rm_eval_span_name((rm_eval_span)s); }
const char *ramole_depth_suffix(ramole_depth d) { return rm_eval_depth_suffix((rm_eval_depth)d); }

double ramole_router_eval_accuracy(const ramole_router_eval_summary *s, ramole_depth d, ramole_span sp) {
    return rm_router_eval_accuracy((const rm_router_eval_summary *)s, (rm_eval_depth)d, (rm_eval_span)sp);
}

typedef struct {
    ramole_router_eval_fn fn;
    void *user;
    const char *names[RM_TRAIN_MAX_K];
} eval_relay;

static rm_status relay_example(const rm_router_eval_example *e, void *user) {
    eval_relay *r = user;
    return r->fn ? r->fn((const ramole_router_eval_example *)e, r->names, r->user) : RAMOLE_OK;
}

ramole_status ramole_router_eval(const ramole_router_eval_params *p, ramole_router_eval_fn fn, void *user,
                                 ramole_router_eval_summary *out) {
    memset(out, 0, sizeof *out);
    if (p->n_pool < 1 || p->n_pool > RM_TRAIN_MAX_POOL)
        return rm_err(RAMOLE_ERR_INVALID, "router-eval: %d pool adapters (1..%d)", p->n_pool, RM_TRAIN_MAX_POOL);
    rm_model *m = NULL;
    rm_adapter *pool[RM_TRAIN_MAX_POOL] = {0}, *router = NULL; /* rm_router_eval takes at most RM_TRAIN_MAX_K */
    rm_dataset *d = NULL;
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    eval_relay relay_to = {.fn = fn, .user = user};
    int K = p->n_pool;
    rm_status st = rm_model_open(p->model, &m);
    for (int i = 0; st == RAMOLE_OK && i < K; i++) st = rm_adapter_load(m, p->pool[i], &pool[i]);
    if (st == RAMOLE_OK) st = rm_adapter_load(m, p->router, &router);
    if (st != RAMOLE_OK) goto out;
    if (router->retrieval_prior != 0) { /* its gates would be its scores alone: not what it serves */
        st = rm_err(RAMOLE_ERR_INVALID, "router-eval: %s has a retrieval prior (%g), and router-eval weighs the whole "
                    "pool with no retrieval scores; score it with ramole eval --router", p->router,
                    (double)router->retrieval_prior);
        goto out;
    }
    rm_data_opts dop = {.ctx = m->cfg.max_pos, .truncate = true, .eos = -1};
    if ((st = rm_data_load_jsonl(m->tokenizer, p->data, &dop, &d)) != RAMOLE_OK) goto out;
    int maxn = 1, mr = router->max_rank;
    for (int i = 0; i < d->n; i++) maxn = d->ex[i].n > maxn ? d->ex[i].n : maxn;
    for (int i = 0; i < K; i++) mr = pool[i]->max_rank > mr ? pool[i]->max_rank : mr;
    rm_ctx_params cp = {.n_ctx = maxn, .n_seq = 1, .n_batch = maxn, .n_logits = 1,
                        .n_threads = p->n_threads > 0 ? p->n_threads : rm_cpu_count()};
    if ((st = rm_lora_ctx_new(m, &cp, K, mr, &ctx, &ls)) != RAMOLE_OK) goto out;
    /* a prompt-pooled router's prompt: the first example's input, and
     * rm_router_eval restarts the slot with each example's own */
    rm_composition comp = {.mode = RM_COMPOSE_ROUTER, .k = K, .router = router,
                           .n_prompt = d->n ? d->ex[0].n_prompt : 1};
    for (int i = 0; i < K && i < RM_TRAIN_MAX_K; i++) comp.experts[i] = pool[i], relay_to.names[i] = pool[i]->name;
    if ((st = rm_lora_set(ls, 0, &comp)) != RAMOLE_OK) goto out;
    st = rm_router_eval(ctx, ls, pool, K, d, relay_example, &relay_to, (rm_router_eval_summary *)out);
out:
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    rm_dataset_free(d);
    rm_adapter_free(router);
    for (int i = 0; i < K; i++) rm_adapter_free(pool[i]);
    rm_model_free(m);
    return st;
}
