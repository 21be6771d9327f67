/*
 * cmd_train.c — `ramole train lora|base|router` (and `train router-eval`).
 *
 * Design: the three trainers share one loop (rm_train_run,
 * src/train/loop.h) over a training model (src/train/train.h) and
 * datasets (src/train/data.h); they differ only in how the model is
 * built, whether a batch's router experts are drawn, and what is exported
 * at the end:
 *   lora    base frozen, a fresh PEFT-initialised adapter (A random, B = 0)
 *           trains; written as a PEFT folder for `generate --lora DIR`.
 *   base    a model of a preset shape with random weights trains entirely;
 *           written as a Hugging Face folder with the tokenizer copied.
 *   router  base and a pool of adapters frozen, a RouterLoRA router trains;
 *           per sequence the experts are the example's "adapters" (or the
 *           whole pool) with random LoRA dropout (rm_expert_draw_one: each
 *           listed expert is dropped and each other expert added with
 *           probability P, at most --top-k kept). Written as a PEFT folder
 *           for `generate --mode router --router DIR --lora ...`.
 *           --gate-loss W adds W x the cross-entropy between the gates and
 *           each sequence's best expert (lowest loss alone; train.h),
 *           logged as gate_ce; held-out losses stay the language-model loss.
 * This file parses options, builds the model and data, and prints what
 * the loop reports (on_progress); the loop itself resumes bit-exactly
 * from its checkpoints (loop.h).
 * Output: progress on stderr (a `\r` line on a terminal, plain lines
 * otherwise), metrics as JSONL (--log), checkpoints (--checkpoint, atomic),
 * the result written atomically file by file only after training succeeded.
 * A NaN/infinite loss stops with exit status 1, the last checkpoint kept.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lora/compose.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/loop.h"
#include "train/router_eval.h"
#include "train/train.h"

#define MAX_FILES 256
#define MAX_POOL RM_TRAIN_MAX_POOL

typedef struct {
    const char *kind;                /* "lora", "base", "router" */
    const char *model, *out, *log, *ckpt, *tokenizer, *arch, *preset, *router_path;
    const char *adapt_layers;        /* --adapt-layers (lora, router): NULL for every layer */
    const char *data[MAX_FILES];
    int n_data;
    const char *pool[MAX_POOL];
    int n_pool;
    long stop_at, rank, epochs, steps, batch, ctx, threads, accum, warmup, save_every, eval_every, log_every, top_k;
    long hidden, layers, heads, kv_heads, ffn, max_pos;
    double alpha, lr, val, wd, clip, dropout, min_lr, init_std, gate_loss;
    uint64_t seed;
    unsigned targets;
    bool resume, truncate, quiet;
} train_opts;

static int usage(void) {
    fprintf(stderr,
            "usage: ramole train lora -m MODEL --data train.jsonl -o ADAPTER_DIR [--rank R] [--alpha A]\n"
            "           [--targets q,k,v,o,gate,up,down] [--adapt-layers 1-3] [COMMON]\n"
            "       ramole train base --tokenizer TOKENIZER --data FILE... -o MODEL_DIR [--arch llama|mistral|qwen2]\n"
            "           [--preset tiny|small] [--hidden N --layers N --heads N --kv-heads N --ffn N --max-pos N]\n"
            "           [-m MODEL: continue training MODEL (its shape) instead of random weights] [COMMON]\n"
            "       ramole train router -m MODEL --pool ADAPTER... --data mixed.jsonl -o ROUTER_DIR [--top-k K]\n"
            "           [--lora-dropout P] [--gate-loss W] [--rank R] [--adapt-layers L] [COMMON]\n"
            "       ramole train router-eval -m MODEL --pool ADAPTER... --router DIR --data held.jsonl\n"
            "       ramole train retriever -m MODEL --data tasks.jsonl -o PROJECTION.safetensors ...\n"
            "           (ramole train retriever --help)\n"
            "COMMON: [--epochs N | --steps N] [--lr LR] [--batch B] [--ctx T] [--accum N] [--warmup N]\n"
            "        [--weight-decay W] [--clip C] [--min-lr-ratio R] [--seed S] [--val F] [--truncate]\n"
            "        [--log LOG.jsonl] [--checkpoint CKPT [--resume] [--save-every N]] [--eval-every N]\n"
            "        [--log-every N] [--stop-at N] [-t THREADS] [--quiet]\n"
            "        --stop-at N ends this run after step N of the schedule (checkpoint and output as of N;\n"
            "        continue later with the same options and --resume)\n"
            "defaults: 1 epoch, --batch 8, --lr 1e-3 (lora) 2e-3 (router) 3e-3 (base), --rank 8 (lora) 4 (router),\n"
            "        --alpha 2*rank, --weight-decay 0 (lora) 0.01, --clip 1, --warmup 5%% of the steps (<= 100),\n"
            "        --min-lr-ratio 0.1, --ctx: the longest example (lora, router) or 128 (base), --val 0, --seed 1,\n"
            "        --top-k: the pool size, --lora-dropout 0, --gate-loss 0, -t: all CPUs\n"
            "        --gate-loss W adds W x the cross-entropy between the router's gates and each example's best\n"
            "        expert (the one whose own loss on it is lowest; one extra forward per expert)\n"
            "data: JSONL lines {\"input\": ..., \"output\": ...[, \"adapters\": [names]]} (lora, router);\n"
            "      plain text files (base). The input is fed as `ramole generate -p INPUT` feeds it.\n");
    return 2;
}

static bool parse_opts(const char *cmd, int argc, char **argv, train_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = argv[1];
    bool lora = !strcmp(o->kind, "lora");
    o->rank = lora ? 8 : 4;
    o->alpha = -1;
    o->epochs = 0, o->steps = 0;
    o->lr = lora ? 1e-3 : !strcmp(o->kind, "router") ? 2e-3 : 3e-3;
    o->batch = 8, o->threads = rm_cpu_count(), o->accum = 1, o->warmup = -1, o->save_every = 0;
    o->eval_every = 0, o->log_every = 0, o->top_k = 0;
    o->wd = lora ? 0.0 : 0.01, o->clip = 1.0, o->dropout = 0.0, o->min_lr = 0.1, o->init_std = 0.02, o->val = 0;
    o->seed = 1;
    o->targets = (1u << RM_TARGET_COUNT) - 1;
    o->arch = "llama";
    o->preset = "tiny";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        double d;
#define VAL() if (!(v = cli_value(cmd, argc, argv, &i))) return false
#define INT(dst, lo, hi) do { VAL(); if (!cli_int(cmd, a, v, lo, hi, &(dst))) return false; } while (0)
#define FLT(dst, lo, hi) do { VAL(); if (!cli_float(cmd, a, v, lo, hi, &d)) return false; (dst) = d; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); o->model = v; }
        else if (!strcmp(a, "-o")) { VAL(); o->out = v; }
        else if (!strcmp(a, "--data")) {
            VAL();
            o->data[o->n_data++] = v;
            while (i + 1 < argc && argv[i + 1][0] != '-' && o->n_data < MAX_FILES) o->data[o->n_data++] = argv[++i];
        }
        else if (!strcmp(a, "--pool")) {
            VAL();
            o->pool[o->n_pool++] = v;
            while (i + 1 < argc && argv[i + 1][0] != '-') {
                if (o->n_pool == MAX_POOL) {
                    fprintf(stderr, "ramole %s: at most %d --pool adapters\n", cmd, MAX_POOL);
                    return false;
                }
                o->pool[o->n_pool++] = argv[++i];
            }
        }
        else if (!strcmp(a, "--router")) { VAL(); o->router_path = v; }
        else if (!strcmp(a, "--log")) { VAL(); o->log = v; }
        else if (!strcmp(a, "--checkpoint")) { VAL(); o->ckpt = v; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); o->tokenizer = v; }
        else if (!strcmp(a, "--arch")) { VAL(); o->arch = v; }
        else if (!strcmp(a, "--preset")) { VAL(); o->preset = v; }
        else if (!strcmp(a, "--targets")) { VAL(); if (!cli_targets(cmd, v, &o->targets)) return false; }
        else if (!strcmp(a, "--adapt-layers")) { VAL(); o->adapt_layers = v; }
        else if (!strcmp(a, "--rank")) INT(o->rank, 1, RM_LORA_MAX_RANK);
        else if (!strcmp(a, "--alpha")) FLT(o->alpha, 1e-6, 1e6);
        else if (!strcmp(a, "--epochs")) INT(o->epochs, 1, 1000000);
        else if (!strcmp(a, "--steps")) INT(o->steps, 1, 100000000);
        else if (!strcmp(a, "--lr")) FLT(o->lr, 0, 10);
        else if (!strcmp(a, "--batch")) INT(o->batch, 1, 4096);
        else if (!strcmp(a, "--ctx")) INT(o->ctx, 1, 1 << 20);
        else if (!strcmp(a, "--accum")) INT(o->accum, 1, 4096);
        else if (!strcmp(a, "--warmup")) INT(o->warmup, 0, 100000000);
        else if (!strcmp(a, "--weight-decay")) FLT(o->wd, 0, 10);
        else if (!strcmp(a, "--clip")) FLT(o->clip, 0, 1e9);
        else if (!strcmp(a, "--min-lr-ratio")) FLT(o->min_lr, 0, 1);
        else if (!strcmp(a, "--init-std")) FLT(o->init_std, 0, 10);
        else if (!strcmp(a, "--val")) FLT(o->val, 0, 0.9);
        else if (!strcmp(a, "--lora-dropout")) FLT(o->dropout, 0, 1);
        else if (!strcmp(a, "--gate-loss")) FLT(o->gate_loss, 0, 1e6);
        else if (!strcmp(a, "--top-k")) INT(o->top_k, 1, RM_TRAIN_MAX_K);
        else if (!strcmp(a, "--stop-at")) INT(o->stop_at, 1, 100000000);
        else if (!strcmp(a, "--save-every")) INT(o->save_every, 1, 100000000);
        else if (!strcmp(a, "--eval-every")) INT(o->eval_every, 1, 100000000);
        else if (!strcmp(a, "--log-every")) INT(o->log_every, 1, 100000000);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT(o->threads, 1, 256);
        else if (!strcmp(a, "--hidden")) INT(o->hidden, 1, 1 << 16);
        else if (!strcmp(a, "--layers")) INT(o->layers, 1, 1024);
        else if (!strcmp(a, "--heads")) INT(o->heads, 1, 1024);
        else if (!strcmp(a, "--kv-heads")) INT(o->kv_heads, 1, 1024);
        else if (!strcmp(a, "--ffn")) INT(o->ffn, 1, 1 << 20);
        else if (!strcmp(a, "--max-pos")) INT(o->max_pos, 1, 1 << 20);
        else if (!strcmp(a, "--seed")) { VAL(); if (!cli_u64(cmd, a, v, &o->seed)) return false; }
        else if (!strcmp(a, "--resume")) o->resume = true;
        else if (!strcmp(a, "--truncate")) o->truncate = true;
        else if (!strcmp(a, "--quiet")) o->quiet = true;
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return false;
        }
#undef VAL
#undef INT
#undef FLT
    }
    if (o->epochs && o->steps) {
        fprintf(stderr, "ramole %s: give --epochs or --steps, not both\n", cmd);
        return false;
    }
    if (o->resume && !o->ckpt) {
        fprintf(stderr, "ramole %s: --resume needs --checkpoint CKPT\n", cmd);
        return false;
    }
    if (!o->n_data) {
        fprintf(stderr, "ramole %s: --data is required\n", cmd);
        return false;
    }
    if (!o->out && strcmp(o->kind, "router-eval")) {
        fprintf(stderr, "ramole %s: -o OUTPUT is required\n", cmd);
        return false;
    }
    if (o->adapt_layers && strcmp(o->kind, "lora") && strcmp(o->kind, "router")) {
        fprintf(stderr, "ramole %s: --adapt-layers is for train lora and train router\n", cmd);
        return false;
    }
    if (o->gate_loss > 0 && strcmp(o->kind, "router")) {
        fprintf(stderr, "ramole %s: --gate-loss is for train router\n", cmd);
        return false;
    }
    if (o->alpha < 0) o->alpha = 2.0 * (double)o->rank;
    return true;
}

/* ---- the shared training loop (src/train/loop.h): progress on stderr, metrics as JSONL ---- */

typedef struct {
    const train_opts *o;
    const char *cmd;
    rm_tm_f32 *tm;
    rm_dataset *train, *val;
    int T;                     /* batch width (max_seq) */
    int32_t pad;
    /* router */
    rm_expert_lists lists, val_lists;
    rm_expert_draw draw;
    /* progress */
    FILE *logf;
    bool tty, nan;
    long log_every;
} train_job;

static void log_line(train_job *j, json_t *obj) {
    if (!j->logf) {
        json_decref(obj);
        return;
    }
    cli_json_line(j->logf, obj); /* a failed write shows at fclose */
    fflush(j->logf);
}

static rm_status on_start(train_job *j, const rm_train_progress *p) {
    const train_opts *o = j->o;
    long per_step = o->batch * o->accum;
    if (p->resumed) fprintf(stderr, "resumed from %s at step %lld\n", o->ckpt, (long long)p->first_step);
    if (o->log && !(j->logf = fopen(o->log, o->resume ? "a" : "w")))
        return rm_err(RAMOLE_ERR_IO, "cannot open the log %s", o->log);
    j->tty = isatty(2) && !o->quiet;
    j->log_every = o->log_every ? o->log_every : (p->total / 20 > 0 ? p->total / 20 : 1);
    if (!o->quiet)
        fprintf(stderr, "train %s: %d examples (%d held out), %zu trainable parameters, %lld steps of %ld x %d "
                        "tokens, lr %g\n", o->kind, j->train->n, j->val ? j->val->n : 0, p->n_params,
                (long long)p->total, per_step, j->T, o->lr);
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("start"));
    json_object_set_new(l, "kind", json_string(o->kind));
    json_object_set_new(l, "examples", json_integer(j->train->n));
    json_object_set_new(l, "val_examples", json_integer(j->val ? j->val->n : 0));
    json_object_set_new(l, "params", json_integer((json_int_t)p->n_params));
    json_object_set_new(l, "steps", json_integer(p->total));
    json_object_set_new(l, "batch", json_integer(o->batch));
    json_object_set_new(l, "accum", json_integer(o->accum));
    json_object_set_new(l, "ctx", json_integer(j->T));
    json_object_set_new(l, "lr", cli_json_num("%g", o->lr));
    json_object_set_new(l, "seed", cli_json_u64(o->seed));
    json_object_set_new(l, "resume_step", json_integer(p->first_step));
    log_line(j, l);
    return RAMOLE_OK;
}

static void on_step(train_job *j, const rm_train_progress *p) {
    const train_opts *o = j->o;
    json_t *l = json_object();
    json_object_set_new(l, "step", json_integer(p->step));
    json_object_set_new(l, "loss", cli_json_num("%.6f", p->loss));
    if (o->gate_loss > 0) json_object_set_new(l, "gate_ce", cli_json_num("%.6f", p->gate_ce));
    json_object_set_new(l, "lr", cli_json_num("%.6g", p->lr));
    json_object_set_new(l, "grad_norm", cli_json_num("%.6g", p->grad_norm));
    json_object_set_new(l, "tokens", json_integer((json_int_t)p->tokens));
    json_object_set_new(l, "tokens_per_s", cli_json_num("%.1f", p->tokens_per_s));
    json_object_set_new(l, "elapsed_s", cli_json_num("%.3f", p->elapsed_s));
    log_line(j, l);
    if (!o->quiet && (j->tty || p->step % j->log_every == 0 || p->step == p->stop || p->step == p->first_step + 1)) {
        char etab[32], vb[96] = "";
        cli_fmt_time(p->eta_s, etab, sizeof etab);
        int nv = o->gate_loss > 0 ? snprintf(vb, sizeof vb, "  gate %.4f", p->gate_ce) : 0;
        if (!isnan(p->val_loss)) snprintf(vb + nv, sizeof vb - (size_t)nv, "  val %.4f", p->val_loss);
        fprintf(stderr, "%sstep %lld/%lld  loss %.4f%s  lr %.2e  %.0f tok/s  ETA %s%s", j->tty ? "\r" : "",
                (long long)p->step, (long long)p->total, p->loss, vb, p->lr, p->tokens_per_s, etab,
                j->tty ? "   " : "\n");
    }
}

static void on_done(train_job *j, const rm_train_progress *p) {
    const train_opts *o = j->o;
    if (j->tty) fprintf(stderr, "\n");
    if (!o->quiet) {
        fprintf(stderr, "train %s: done, %lld steps, last loss %.4f", o->kind, (long long)p->step, p->loss);
        if (j->val) fprintf(stderr, ", held-out loss %.4f on %d examples", p->val_loss, j->val->n);
        fprintf(stderr, ", %.1f s\n", p->elapsed_s);
    }
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("done"));
    json_object_set_new(l, "step", json_integer(p->step));
    json_object_set_new(l, "loss", cli_json_num("%.6f", p->loss));
    if (j->val) json_object_set_new(l, "val_loss", cli_json_num("%.6f", p->val_loss));
    log_line(j, l);
}

static rm_status on_progress(const rm_train_progress *p, void *user) {
    train_job *j = user;
    json_t *l;
    switch (p->event) {
    case RM_TRAIN_EVENT_START: return on_start(j, p);
    case RM_TRAIN_EVENT_EVAL:
        l = json_object();
        json_object_set_new(l, "step", json_integer(p->step));
        json_object_set_new(l, "val_loss", cli_json_num("%.6f", p->val_loss));
        log_line(j, l);
        break;
    case RM_TRAIN_EVENT_STEP: on_step(j, p); break;
    case RM_TRAIN_EVENT_NAN:
        j->nan = true;
        if (j->tty) fprintf(stderr, "\n");
        l = json_object();
        json_object_set_new(l, "event", json_string("nan"));
        json_object_set_new(l, "step", json_integer(p->step));
        log_line(j, l);
        break;
    case RM_TRAIN_EVENT_DONE: on_done(j, p); break;
    }
    return RAMOLE_OK;
}

/* Train j->tm; 0 on success, else the exit status (messages printed). */
static int train_run(train_job *j) {
    const train_opts *o = j->o;
    rm_train_run_params p = {
        .train = j->train, .val = j->val, .seq = j->T, .pad = j->pad,
        .steps = o->steps, .epochs = o->epochs, .stop_at = o->stop_at, .batch = (int)o->batch, .accum = (int)o->accum,
        .lr = o->lr, .weight_decay = o->wd, .min_lr_ratio = o->min_lr, .clip = o->clip, .warmup = o->warmup,
        .seed = o->seed, .eval_every = o->eval_every,
        .experts = j->draw.n_pool ? &j->draw : NULL, .val_experts = j->val_lists.n ? &j->val_lists : NULL,
        .gate_loss = o->gate_loss,
        .checkpoint = o->ckpt, .resume = o->resume, .save_every = o->save_every,
        .progress = on_progress, .user = j,
    };
    rm_status st = rm_train_run(j->tm, &p);
    int rc = 0;
    if (st != RAMOLE_OK && j->nan) {
        bool kept = o->ckpt && rm_file_exists(o->ckpt);
        fprintf(stderr, "ramole %s: %s, nothing written%s%s\n", j->cmd, ramole_last_error(),
                kept ? "; the last good checkpoint is kept at " : "", kept ? o->ckpt : "");
        rc = 1;
    } else if (st != RAMOLE_OK)
        rc = cli_fail(j->cmd, st);
    if (j->logf && fclose(j->logf) != 0 && rc == 0) {
        fprintf(stderr, "ramole %s: error writing the log %s\n", j->cmd, o->log);
        rc = 1;
    }
    j->logf = NULL;
    return rc;
}

/* Load the JSONL data, split off the held-out part, choose T. */
static rm_status load_examples(const train_opts *o, const rm_tok *tok, int max_pos, train_job *j) {
    if (o->n_data != 1) return rm_err(RAMOLE_ERR_INVALID, "--data takes one JSONL file for %s", o->kind);
    if (o->ctx > max_pos) return rm_err(RAMOLE_ERR_INVALID, "--ctx %ld exceeds the model's context of %d", o->ctx, max_pos);
    rm_data_opts dop = {.ctx = o->ctx ? (int)o->ctx : max_pos, .truncate = o->truncate, .eos = -1};
    RM_TRY(rm_data_load_jsonl(tok, o->data[0], &dop, &j->train));
    if (j->train->n_truncated)
        fprintf(stderr, "note: %d examples were cut to the context of %d tokens (--truncate)\n", j->train->n_truncated,
                dop.ctx);
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

/* Drop from a fresh adapter (or router) the modules it must not train:
 * layers outside --adapt-layers (PEFT's layers_to_transform) and, for a
 * router (pool given), modules no pool expert has (they would only ever
 * see zero keys). 0, or the exit status (message printed). */
static int select_modules(const char *cmd, const train_opts *o, const rm_model *m, rm_adapter *const *pool,
                          rm_adapter *ad) {
    bool *keep = NULL;
    if (o->adapt_layers) {
        if (!(keep = rm_malloc((size_t)m->cfg.n_layers * sizeof *keep)))
            return cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory"));
        if (!cli_layers(cmd, "--adapt-layers", o->adapt_layers, m->cfg.n_layers, keep)) {
            rm_free(keep);
            return 2;
        }
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            bool used = !keep || keep[l], expert = !pool;
            for (int p = 0; pool && p < o->n_pool && !expert; p++) expert = rm_adapter_mod(pool[p], l, (rm_target)t)->rank > 0;
            used = used && expert;
            if (!used && rm_adapter_mod(ad, l, (rm_target)t)->rank) rm_adapter_drop_module(ad, l, (rm_target)t);
        }
    rm_free(keep);
    if (!ad->target_mask) {
        fprintf(stderr, "ramole %s: no module left to train (%s)\n", cmd,
                pool ? "the pool's experts adapt none of --adapt-layers" : "--adapt-layers");
        return 2;
    }
    return 0;
}

static int train_lora_or_router(const train_opts *o, bool router) {
    const char *cmd = router ? "train router" : "train lora";
    rm_model *m = NULL;
    rm_adapter *ad = NULL, *pool[MAX_POOL] = {0};
    train_job j = {.o = o, .cmd = cmd};
    int rc = 1;
    rm_status st;
    if (!o->model) { fprintf(stderr, "ramole %s: -m MODEL is required\n", cmd); return 2; }
    if (router && !o->n_pool) { fprintf(stderr, "ramole %s: --pool ADAPTER... is required\n", cmd); return 2; }
    if ((st = rm_model_open(o->model, &m)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (!m->tokenizer) {
        fprintf(stderr, "ramole %s: %s has no tokenizer (tokenizer.json); training data is text and must be "
                        "encoded as generate -p encodes it\n", cmd, o->model);
        goto out;
    }
    unsigned mask = o->targets;
    for (int p = 0; p < o->n_pool; p++) {
        if ((st = rm_adapter_load(m, o->pool[p], &pool[p])) != RAMOLE_OK) {
            rm_err_prefix(st, "--pool");
            rc = cli_fail(cmd, st);
            goto out;
        }
        for (int q = 0; q < p; q++)
            if (!strcmp(pool[q]->name, pool[p]->name)) {
                fprintf(stderr, "ramole %s: two pool adapters are named '%s'\n", cmd, pool[p]->name);
                goto out;
            }
    }
    if (router) {
        mask = 0;
        for (int p = 0; p < o->n_pool; p++) mask |= pool[p]->target_mask;
    }
    if ((st = load_examples(o, m->tokenizer, m->cfg.max_pos, &j)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    /* PEFT init: A uniform (kaiming-like, std 1/sqrt(3 din)), B = 0 */
    float std = 1.0f / sqrtf(3.0f * (float)m->cfg.hidden);
    if ((st = rm_adapter_random(m, (int)o->rank, (float)o->alpha, mask, o->seed, std, &ad)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if ((rc = select_modules(cmd, o, m, router ? pool : NULL, ad)) != 0) goto out;
    rc = 1;
    for (int i = 0; i < m->cfg.n_layers * RM_TARGET_COUNT; i++)
        if (ad->mods[i].rank) {
            int64_t din, dout;
            rm_target_dims(&m->cfg, (rm_target)(i % RM_TARGET_COUNT), &din, &dout);
            memset(ad->mods[i].B, 0, (size_t)(dout * ad->mods[i].rank) * sizeof(float));
        }
    rm_train_params tp = {.kind = router ? RM_TRAIN_ROUTER : RM_TRAIN_LORA, .max_batch = (int)o->batch,
                          .max_seq = j.T, .n_threads = (int)o->threads, .lora = router ? NULL : ad};
    if (router) {
        int max_k = o->top_k && o->top_k < o->n_pool ? (int)o->top_k : o->n_pool;
        if (max_k > RM_TRAIN_MAX_K) max_k = RM_TRAIN_MAX_K; /* a larger pool is drawn from, per sequence */
        tp.experts = (const rm_adapter *const *)pool;
        tp.n_experts = o->n_pool;
        tp.router = ad;
        tp.max_k = max_k;
        /* names in the held-out part must exist too */
        if ((st = rm_expert_lists_map(j.train, pool, o->n_pool, &j.lists)) != RAMOLE_OK ||
            (j.val && (st = rm_expert_lists_map(j.val, pool, o->n_pool, &j.val_lists)) != RAMOLE_OK)) {
            rc = cli_fail(cmd, rm_err_prefix(st, "%s", o->data[0]));
            goto out;
        }
        j.draw = (rm_expert_draw){.n_pool = o->n_pool, .max_k = max_k, .dropout = o->dropout, .lists = &j.lists};
    }
    if ((st = rm_tm_f32_new(m, &tp, &j.tm)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if ((rc = train_run(&j)) != 0) goto out;
    rc = 1;
    if ((st = rm_tm_f32_export_adapter(j.tm, ad)) != RAMOLE_OK ||
        (st = rm_adapter_save_peft(ad, m, o->out)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if (!o->quiet) fprintf(stderr, "wrote %s (PEFT, rank %ld, alpha %g)\n", o->out, o->rank, o->alpha);
    rc = 0;
out:
    rm_tm_f32_free(j.tm);
    rm_dataset_free(j.train);
    rm_dataset_free(j.val);
    rm_expert_lists_free(&j.lists);
    rm_expert_lists_free(&j.val_lists);
    rm_adapter_free(ad);
    for (int p = 0; p < MAX_POOL; p++) rm_adapter_free(pool[p]);
    rm_model_free(m);
    return rc;
}

typedef struct {
    const char *name;
    int hidden, ffn, layers, heads, kv_heads, max_pos;
} base_preset;

static const base_preset presets[] = {
    {"tiny", 64, 160, 2, 4, 2, 512},
    {"small", 256, 704, 4, 8, 4, 1024},
};

/* The shape of a new base: the preset, with each given --hidden etc. over it. */
static bool preset_config(const char *cmd, const train_opts *o, rm_arch arch, const base_preset *p, const rm_tok *tok,
                          rm_model_config *c) {
    rm_model_config_defaults(c, arch);
    c->hidden = o->hidden ? (int)o->hidden : p->hidden;
    c->ffn = o->ffn ? (int)o->ffn : p->ffn;
    c->n_layers = o->layers ? (int)o->layers : p->layers;
    c->n_heads = o->heads ? (int)o->heads : p->heads;
    c->n_kv_heads = o->kv_heads ? (int)o->kv_heads : (o->heads ? c->n_heads : p->kv_heads);
    if (c->n_heads <= 0 || c->hidden % c->n_heads) {
        fprintf(stderr, "ramole %s: --hidden %d is not a multiple of --heads %d\n", cmd, c->hidden, c->n_heads);
        return false;
    }
    c->head_dim = c->hidden / c->n_heads;
    c->rope.n_rot = c->head_dim;
    c->max_pos = o->max_pos ? (int)o->max_pos : p->max_pos;
    c->vocab_size = rm_tok_vocab_size(tok);
    c->bos_id = rm_tok_bos(tok);
    c->eos_id = rm_data_eos(tok, -1);
    if (arch == RM_ARCH_QWEN2) c->qkv_bias = true;
    return true;
}

static int train_base(const train_opts *o) {
    const char *cmd = "train base";
    rm_tok *tok = NULL;
    rm_model *em = NULL, *init = NULL;
    train_job j = {.o = o, .cmd = cmd};
    int rc = 1;
    rm_status st;
    if (!o->tokenizer) { fprintf(stderr, "ramole %s: --tokenizer TOKENIZER is required (a folder or tokenizer.json)\n", cmd); return 2; }
    rm_arch arch;
    if (!rm_arch_from_name(o->arch, &arch)) {
        fprintf(stderr, "ramole %s: unknown architecture '%s' (llama, mistral, qwen2)\n", cmd, o->arch);
        return 2;
    }
    const base_preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, o->preset)) p = &presets[i];
    if (!p) { fprintf(stderr, "ramole %s: unknown preset '%s' (tiny, small)\n", cmd, o->preset); return 2; }
    if ((st = rm_tok_load(o->tokenizer, &tok)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (o->model) { /* continued pretraining: the model's shape and weights */
        if (o->hidden || o->layers || o->heads || o->kv_heads || o->ffn || o->max_pos) {
            fprintf(stderr, "ramole %s: -m MODEL continues a model: its shape is given, drop --hidden etc.\n", cmd);
            goto out;
        }
        if ((st = rm_model_open(o->model, &init)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
        if (init->cfg.vocab_size != rm_tok_vocab_size(tok)) {
            fprintf(stderr, "ramole %s: %s has %d ids, the tokenizer %d\n", cmd, o->model,
                    (int)init->cfg.vocab_size, (int)rm_tok_vocab_size(tok));
            goto out;
        }
    }
    rm_model_config c;
    if (init) c = init->cfg;
    else if (!preset_config(cmd, o, arch, p, tok, &c)) goto out;
    if ((st = rm_model_config_check(&c, cmd)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    int ctx = o->ctx ? (int)o->ctx : (c.max_pos < 128 ? c.max_pos : 128);
    if (ctx > c.max_pos) { fprintf(stderr, "ramole %s: --ctx %d exceeds --max-pos %d\n", cmd, ctx, c.max_pos); goto out; }
    rm_data_opts dop = {.ctx = ctx, .eos = -1};
    if ((st = rm_data_load_text(tok, o->data, o->n_data, &dop, &j.train)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (o->val > 0 && (st = rm_data_split(j.train, o->val, o->seed, &j.val)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (j.val && j.val->n == 0) { rm_dataset_free(j.val); j.val = NULL; }
    j.T = ctx;
    j.pad = c.eos_id >= 0 ? c.eos_id : 0;
    rm_train_params tp = {.kind = RM_TRAIN_FULL, .max_batch = (int)o->batch, .max_seq = ctx, .n_threads = (int)o->threads};
    st = init ? rm_tm_f32_new(init, &tp, &j.tm) : rm_tm_f32_new_random(&c, o->seed, (float)o->init_std, &tp, &j.tm);
    if (st != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if ((rc = train_run(&j)) != 0) goto out;
    rc = 1;
    if ((st = rm_tm_f32_export_model(j.tm, &em)) != RAMOLE_OK || (st = rm_model_set_tokenizer(em, o->tokenizer)) != RAMOLE_OK ||
        (st = rm_model_save(em, RM_SOURCE_HF, RM_TYPE_F32, o->out)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if (!o->quiet) fprintf(stderr, "wrote %s (Hugging Face folder, %s, tokenizer copied)\n", o->out, o->arch);
    rc = 0;
out:
    rm_model_free(em);
    rm_model_free(init);
    rm_tm_f32_free(j.tm);
    rm_dataset_free(j.train);
    rm_dataset_free(j.val);
    rm_tok_free(tok);
    return rc;
}

/*
 * router-eval (src/train/router_eval.h): one JSON line per example
 * ("line", "expected", then per depth and span "prompt": {"picked",
 * "weights"} in --pool order, "answer", "all", "prompt_share", ...,
 * "all_last"), then a summary line with right_SPAN[_DEPTH] and
 * accuracy_SPAN[_DEPTH].
 */
static json_t *router_eval_key_obj(const char *picked, const double *w, int K) {
    json_t *o = json_object(), *a = json_array();
    for (int p = 0; p < K; p++) json_array_append_new(a, cli_json_num("%.4f", w[p]));
    json_object_set_new(o, "picked", json_string_nocheck(picked));
    json_object_set_new(o, "weights", a);
    return o;
}

typedef struct {
    rm_adapter *const *pool;
    int K;
} router_eval_out;

static rm_status print_router_eval(const rm_router_eval_example *e, void *user) {
    const router_eval_out *ro = user;
    json_t *l = json_object();
    json_object_set_new(l, "line", json_integer(e->line));
    json_object_set_new(l, "expected", json_string_nocheck(e->expected ? e->expected : ""));
    for (int dep = 0; dep < RM_EVAL_DEPTH_COUNT; dep++)
        for (int s = 0; s < RM_EVAL_SPAN_COUNT; s++) {
            char key[32];
            snprintf(key, sizeof key, "%s%s", rm_eval_span_name(s), rm_eval_depth_suffix(dep));
            json_object_set_new(l, key, router_eval_key_obj(ro->pool[e->picked[dep][s]]->name, e->weights[dep][s], ro->K));
        }
    return cli_json_line(stdout, l) ? RAMOLE_OK : rm_err(RAMOLE_ERR_IO, "cannot write the results");
}

static int router_eval(const train_opts *o) {
    const char *cmd = "train router-eval";
    rm_model *m = NULL;
    rm_adapter *pool[MAX_POOL] = {0}, *router = NULL;
    rm_dataset *d = NULL;
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    int rc = 1;
    rm_status st;
    if (!o->model || !o->n_pool || !o->router_path) {
        fprintf(stderr, "ramole %s: -m MODEL, --pool ADAPTER... and --router DIR are required\n", cmd);
        return 2;
    }
    if ((st = rm_model_open(o->model, &m)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    for (int p = 0; p < o->n_pool; p++)
        if ((st = rm_adapter_load(m, o->pool[p], &pool[p])) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if ((st = rm_adapter_load(m, o->router_path, &router)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    rm_data_opts dop = {.ctx = m->cfg.max_pos, .truncate = true, .eos = -1};
    if ((st = rm_data_load_jsonl(m->tokenizer, o->data[0], &dop, &d)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    int maxn = 1, mr = router->max_rank, K = o->n_pool;
    for (int i = 0; i < d->n; i++) maxn = d->ex[i].n > maxn ? d->ex[i].n : maxn;
    for (int p = 0; p < K; p++) mr = pool[p]->max_rank > mr ? pool[p]->max_rank : mr;
    rm_ctx_params cp = {.n_ctx = maxn, .n_seq = 1, .n_batch = maxn, .n_logits = 1, .n_threads = (int)o->threads};
    if ((st = rm_lora_ctx_new(m, &cp, K, mr, &ctx, &ls)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    rm_composition comp = {.mode = RM_COMPOSE_ROUTER, .k = K, .router = router};
    for (int p = 0; p < K; p++) comp.experts[p] = pool[p];
    if ((st = rm_lora_set(ls, 0, &comp)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    rm_router_eval_summary sum;
    router_eval_out ro = {pool, K};
    if ((st = rm_router_eval(ctx, ls, pool, K, d, print_router_eval, &ro, &sum)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    json_t *l = json_object();
    json_object_set_new(l, "examples", json_integer(sum.examples));
    for (int dep = 0; dep < RM_EVAL_DEPTH_COUNT; dep++)
        for (int s = 0; s < RM_EVAL_SPAN_COUNT; s++) {
            char key[48];
            const char *sn = rm_eval_span_name(s), *ds = rm_eval_depth_suffix(dep);
            snprintf(key, sizeof key, "right_%s%s", sn, ds);
            json_object_set_new(l, key, json_integer(sum.right[dep][s]));
            snprintf(key, sizeof key, "accuracy_%s%s", sn, ds);
            json_object_set_new(l, key, cli_json_num("%.4f", rm_router_eval_accuracy(&sum, dep, s)));
        }
    rc = cli_json_line(stdout, l) ? 0 : cli_fail(cmd, rm_err(RAMOLE_ERR_IO, "cannot write the results"));
out:
    rm_ctx_free(ctx);
    rm_lora_state_free(ls);
    rm_dataset_free(d);
    rm_adapter_free(router);
    for (int p = 0; p < MAX_POOL; p++) rm_adapter_free(pool[p]);
    rm_model_free(m);
    return rc;
}

int cmd_train(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "train %s", sub);
    if (!strcmp(sub, "retriever")) return cmd_train_retriever(argc, argv); /* tools/cmd_retrieval.c */
    if (strcmp(sub, "lora") && strcmp(sub, "base") && strcmp(sub, "router") && strcmp(sub, "router-eval")) {
        fprintf(stderr, "ramole train: unknown trainer '%s' (lora, base, router, router-eval, retriever)\n", sub);
        return usage();
    }
    train_opts o;
    if (!parse_opts(cmd, argc, argv, &o)) return 2;
    if (!strcmp(sub, "lora")) return train_lora_or_router(&o, false);
    if (!strcmp(sub, "router")) return train_lora_or_router(&o, true);
    if (!strcmp(sub, "router-eval")) return router_eval(&o);
    return train_base(&o);
}
