/*
 * cmd_train.c — `ramole train lora|base|router` (and `train router-eval`).
 *
 * The trainers are the library's (include/ramole/train.h): one spec and
 * one run call each, sharing one loop; they differ only in how the model
 * is built, whether a batch's router experts are drawn, and what is
 * exported at the end:
 *   lora    base frozen, a fresh PEFT-initialised adapter (A random, B = 0)
 *           trains; written as a PEFT folder for `generate --lora DIR`.
 *   base    a model of a preset shape with random weights trains entirely;
 *           written as a Hugging Face folder with the tokenizer copied.
 *   router  base and a pool of adapters frozen, a RouterLoRA router trains;
 *           per sequence the experts are the example's "adapters" (or the
 *           whole pool) with random LoRA dropout (each
 *           listed expert is dropped and each other expert added with
 *           probability P, at most --top-k kept). Written as a PEFT folder
 *           for `generate --mode router --router DIR --lora ...`.
 *           --gate-loss W adds W x the cross-entropy between the gates and
 *           each sequence's best expert (lowest loss alone; train.h),
 *           logged as gate_ce; held-out losses stay the language-model loss.
 * This file parses options and prints what the run reports (on_progress);
 * the loop itself resumes bit-exactly from its checkpoints.
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

#define MAX_FILES 256
#define MAX_POOL RAMOLE_TRAIN_MAX_POOL

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
    double alpha, lr, val, wd, clip, dropout, min_lr, init_std, gate_loss, gate_scale, retrieval_prior;
    uint64_t seed;
    unsigned targets;
    const char *gate_pool;
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
            "           [--lora-dropout P] [--gate-loss W] [--gate-scale G] [--gate-pool token|prompt]\n"
            "           [--retrieval-prior LAMBDA]\n"
            "           [--rank R] [--adapt-layers L] [COMMON]\n"
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
            "        --gate-scale G multiplies the router's scores by G while training (default 1, the paper's);\n"
            "        the saved router has G folded into its A, so it serves as any router\n"
            "        --gate-pool prompt scores each token by the mean of the prompt's scores so far (default\n"
            "        token: each its own, the paper's); saved with the router, which serves so\n"
            "        --retrieval-prior LAMBDA adds LAMBDA x each expert's retrieval score to its router scores\n"
            "        (default 0, the paper's); the data's lines carry \"scores\": [one per adapter]\n"
            "data: JSONL lines {\"input\": ..., \"output\": ...[, \"adapters\": [names][, \"scores\": [cosines]]]}\n"
            "      (lora, router);\n"
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
    o->batch = 8, o->threads = ramole_cpu_count(), o->accum = 1, o->warmup = -1, o->save_every = 0;
    o->eval_every = 0, o->log_every = 0, o->top_k = 0;
    o->wd = lora ? 0.0 : 0.01, o->clip = 1.0, o->dropout = 0.0, o->min_lr = 0.1, o->init_std = 0.02, o->val = 0;
    o->seed = 1;
    o->targets = (1u << RAMOLE_TARGET_COUNT) - 1;
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
        else if (!strcmp(a, "--rank")) INT(o->rank, 1, RAMOLE_MAX_RANK);
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
        else if (!strcmp(a, "--gate-scale")) FLT(o->gate_scale, 1e-6, 1e6);
        else if (!strcmp(a, "--gate-pool")) { VAL(); o->gate_pool = v; }
        else if (!strcmp(a, "--retrieval-prior")) FLT(o->retrieval_prior, 0, 1e300);
        else if (!strcmp(a, "--top-k")) INT(o->top_k, 1, RAMOLE_TRAIN_MAX_K);
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
    if (o->gate_scale > 0 && strcmp(o->kind, "router")) {
        fprintf(stderr, "ramole %s: --gate-scale is for train router\n", cmd);
        return false;
    }
    if (o->alpha < 0) o->alpha = 2.0 * (double)o->rank;
    return true;
}

/* ---- the shared training loop: progress on stderr, metrics as JSONL ---- */

typedef struct {
    const train_opts *o;
    const char *cmd;
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

static ramole_status on_start(train_job *j, const ramole_train_progress *p) {
    const train_opts *o = j->o;
    long per_step = o->batch * o->accum;
    if (p->resumed) fprintf(stderr, "resumed from %s at step %lld\n", o->ckpt, (long long)p->first_step);
    if (o->log && !(j->logf = fopen(o->log, o->resume ? "a" : "w")))
        return ramole_error_set(RAMOLE_ERR_IO, "cannot open the log %s", o->log);
    j->tty = isatty(2) && !o->quiet;
    j->log_every = o->log_every ? o->log_every : (p->total / 20 > 0 ? p->total / 20 : 1);
    if (!o->quiet)
        fprintf(stderr, "train %s: %d examples (%d held out), %zu trainable parameters, %lld steps of %ld x %d "
                        "tokens, lr %g\n", o->kind, p->n_examples, p->n_val, p->n_params,
                (long long)p->total, per_step, p->seq, o->lr);
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("start"));
    json_object_set_new(l, "kind", json_string(o->kind));
    json_object_set_new(l, "examples", json_integer(p->n_examples));
    json_object_set_new(l, "val_examples", json_integer(p->n_val));
    json_object_set_new(l, "params", json_integer((json_int_t)p->n_params));
    json_object_set_new(l, "steps", json_integer(p->total));
    json_object_set_new(l, "batch", json_integer(o->batch));
    json_object_set_new(l, "accum", json_integer(o->accum));
    json_object_set_new(l, "ctx", json_integer(p->seq));
    json_object_set_new(l, "lr", cli_json_num("%g", o->lr));
    json_object_set_new(l, "seed", cli_json_u64(o->seed));
    json_object_set_new(l, "resume_step", json_integer(p->first_step));
    log_line(j, l);
    return RAMOLE_OK;
}

static void on_step(train_job *j, const ramole_train_progress *p) {
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

static void on_done(train_job *j, const ramole_train_progress *p) {
    const train_opts *o = j->o;
    if (j->tty) fprintf(stderr, "\n");
    if (!o->quiet) {
        fprintf(stderr, "train %s: done, %lld steps, last loss %.4f", o->kind, (long long)p->step, p->loss);
        if (p->n_val) fprintf(stderr, ", held-out loss %.4f on %d examples", p->val_loss, p->n_val);
        fprintf(stderr, ", %.1f s\n", p->elapsed_s);
    }
    json_t *l = json_object();
    json_object_set_new(l, "event", json_string("done"));
    json_object_set_new(l, "step", json_integer(p->step));
    json_object_set_new(l, "loss", cli_json_num("%.6f", p->loss));
    if (p->n_val) json_object_set_new(l, "val_loss", cli_json_num("%.6f", p->val_loss));
    log_line(j, l);
}

static ramole_status on_progress(const ramole_train_progress *p, void *user) {
    train_job *j = user;
    json_t *l;
    switch (p->event) {
    case RAMOLE_TRAIN_EVENT_DATA:
        if (p->n_truncated)
            fprintf(stderr, "note: %d examples were cut to the context of %d tokens (--truncate)\n", p->n_truncated,
                    p->ctx);
        break;
    case RAMOLE_TRAIN_EVENT_START: return on_start(j, p);
    case RAMOLE_TRAIN_EVENT_EVAL:
        l = json_object();
        json_object_set_new(l, "step", json_integer(p->step));
        json_object_set_new(l, "val_loss", cli_json_num("%.6f", p->val_loss));
        log_line(j, l);
        break;
    case RAMOLE_TRAIN_EVENT_STEP: on_step(j, p); break;
    case RAMOLE_TRAIN_EVENT_NAN:
        j->nan = true;
        if (j->tty) fprintf(stderr, "\n");
        l = json_object();
        json_object_set_new(l, "event", json_string("nan"));
        json_object_set_new(l, "step", json_integer(p->step));
        log_line(j, l);
        break;
    case RAMOLE_TRAIN_EVENT_DONE: on_done(j, p); break;
    }
    return RAMOLE_OK;
}

/* The options as the library's spec (kind, model and layers filled by the caller). */
static ramole_train_params train_params(const train_opts *o) {
    return (ramole_train_params){
        .out = o->out, .data = o->data, .n_data = o->n_data, .rank = (int)o->rank, .alpha = (float)o->alpha,
        .targets = o->targets, .pool = o->pool, .n_pool = o->n_pool, .top_k = (int)o->top_k,
        .lora_dropout = o->dropout, .gate_loss = o->gate_loss,
        .gate_scale = o->gate_scale, .gate_pool = o->gate_pool, .retrieval_prior = o->retrieval_prior,
        .tokenizer = o->tokenizer, .arch = o->arch,
        .preset = o->preset, .hidden = (int)o->hidden, .n_layers = (int)o->layers, .n_heads = (int)o->heads,
        .n_kv_heads = (int)o->kv_heads, .ffn = (int)o->ffn, .max_pos = (int)o->max_pos, .init_std = o->init_std,
        .steps = o->steps, .epochs = o->epochs, .stop_at = o->stop_at, .batch = (int)o->batch,
        .accum = (int)o->accum, .ctx = (int)o->ctx, .truncate = o->truncate, .lr = o->lr, .weight_decay = o->wd,
        .min_lr_ratio = o->min_lr, .clip = o->clip, .warmup = o->warmup, .val = o->val, .seed = o->seed,
        .eval_every = o->eval_every, .checkpoint = o->ckpt, .resume = o->resume, .save_every = o->save_every,
        .n_threads = (int)o->threads};
}

/* Run the trainer of p; 0 on success, else the exit status (messages printed). */
static int train_run(const char *cmd, const train_opts *o, const ramole_train_params *p) {
    train_job j = {.o = o, .cmd = cmd};
    ramole_status st = ramole_train(p, on_progress, &j);
    int rc = 0;
    if (st != RAMOLE_OK && j.nan) {
        bool kept = o->ckpt && access(o->ckpt, F_OK) == 0;
        fprintf(stderr, "ramole %s: %s, nothing written%s%s\n", cmd, ramole_last_error(),
                kept ? "; the last good checkpoint is kept at " : "", kept ? o->ckpt : "");
        rc = 1;
    } else if (st != RAMOLE_OK)
        rc = cli_fail(cmd, st);
    if (j.logf && fclose(j.logf) != 0 && rc == 0) {
        fprintf(stderr, "ramole %s: error writing the log %s\n", cmd, o->log);
        rc = 1;
    }
    return rc;
}

static int train_lora_or_router(const train_opts *o, bool router) {
    const char *cmd = router ? "train router" : "train lora";
    if (!o->model) { fprintf(stderr, "ramole %s: -m MODEL is required\n", cmd); return 2; }
    if (router && !o->n_pool) { fprintf(stderr, "ramole %s: --pool ADAPTER... is required\n", cmd); return 2; }
    ramole_model *m = NULL;
    unsigned char *layers = NULL;
    int rc = 1;
    ramole_status st = ramole_model_open(o->model, &m);
    if (st != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    ramole_model_info info;
    ramole_model_get_info(m, &info);
    if (!info.has_tokenizer) {
        fprintf(stderr, "ramole %s: %s has no tokenizer (tokenizer.json); training data is text and must be "
                        "encoded as generate -p encodes it\n", cmd, o->model);
        goto out;
    }
    if (o->adapt_layers) {
        bool *keep = malloc((size_t)info.n_layers * sizeof *keep);
        layers = malloc((size_t)info.n_layers);
        if (!keep || !layers) {
            free(keep);
            fprintf(stderr, "ramole %s: out of memory\n", cmd);
            goto out;
        }
        bool ok = cli_layers(cmd, "--adapt-layers", o->adapt_layers, info.n_layers, keep);
        for (int l = 0; ok && l < info.n_layers; l++) layers[l] = keep[l];
        free(keep);
        if (!ok) { rc = 2; goto out; }
    }
    ramole_train_params p = train_params(o);
    p.kind = router ? RAMOLE_TRAIN_ROUTER : RAMOLE_TRAIN_LORA;
    p.model = m;
    p.adapt_layers = layers;
    if ((rc = train_run(cmd, o, &p)) != 0) goto out;
    if (!o->quiet) fprintf(stderr, "wrote %s (PEFT, rank %ld, alpha %g)\n", o->out, o->rank, o->alpha);
out:
    free(layers);
    ramole_model_free(m);
    return rc;
}

static int train_base(const train_opts *o) {
    const char *cmd = "train base";
    if (!o->tokenizer) { fprintf(stderr, "ramole %s: --tokenizer TOKENIZER is required (a folder or tokenizer.json)\n", cmd); return 2; }
    if (!ramole_arch_known(o->arch)) {
        fprintf(stderr, "ramole %s: unknown architecture '%s' (llama, mistral, qwen2)\n", cmd, o->arch);
        return 2;
    }
    if (!ramole_train_preset_known(o->preset)) { fprintf(stderr, "ramole %s: unknown preset '%s' (tiny, small)\n", cmd, o->preset); return 2; }
    ramole_model *init = NULL; /* continued pretraining: the model's shape and weights */
    ramole_status st = o->model ? ramole_model_open(o->model, &init) : RAMOLE_OK;
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    ramole_train_params p = train_params(o);
    p.kind = RAMOLE_TRAIN_BASE;
    p.model = init;
    int rc = train_run(cmd, o, &p);
    ramole_model_free(init);
    if (rc == 0 && !o->quiet) fprintf(stderr, "wrote %s (Hugging Face folder, %s, tokenizer copied)\n", o->out, o->arch);
    return rc;
}

/*
 * router-eval (ramole_router_eval): one JSON line per example ("line",
 * "expected", then per depth and span "prompt": {"picked", "weights"} in
 * --pool order, "answer", "all", "prompt_share", ..., "all_last"), then a
 * summary line with right_SPAN[_DEPTH] and accuracy_SPAN[_DEPTH].
 */
static json_t *router_eval_key_obj(const char *picked, const double *w, int K) {
    json_t *o = json_object(), *a = json_array();
    for (int p = 0; p < K; p++) json_array_append_new(a, cli_json_num("%.4f", w[p]));
    json_object_set_new(o, "picked", json_string_nocheck(picked));
    json_object_set_new(o, "weights", a);
    return o;
}

static ramole_status print_router_eval(const ramole_router_eval_example *e, const char *const *names, void *user) {
    const int *K = user;
    json_t *l = json_object();
    json_object_set_new(l, "line", json_integer(e->line));
    json_object_set_new(l, "expected", json_string_nocheck(e->expected ? e->expected : ""));
    for (int dep = 0; dep < RAMOLE_DEPTH_COUNT; dep++)
        for (int s = 0; s < RAMOLE_SPAN_COUNT; s++) {
            char key[32];
            snprintf(key, sizeof key, "%s%s", ramole_span_name((ramole_span)s), ramole_depth_suffix((ramole_depth)dep));
            json_object_set_new(l, key, router_eval_key_obj(names[e->picked[dep][s]], e->weights[dep][s], *K));
        }
    return cli_json_line(stdout, l) ? RAMOLE_OK : ramole_error_set(RAMOLE_ERR_IO, "cannot write the results");
}

static int router_eval(const train_opts *o) {
    const char *cmd = "train router-eval";
    if (!o->model || !o->n_pool || !o->router_path) {
        fprintf(stderr, "ramole %s: -m MODEL, --pool ADAPTER... and --router DIR are required\n", cmd);
        return 2;
    }
    ramole_router_eval_params p = {.model = o->model, .pool = o->pool, .n_pool = o->n_pool, .router = o->router_path,
                                   .data = o->data[0], .n_threads = (int)o->threads};
    ramole_router_eval_summary sum;
    int K = o->n_pool;
    ramole_status st = ramole_router_eval(&p, print_router_eval, &K, &sum);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    json_t *l = json_object();
    json_object_set_new(l, "examples", json_integer(sum.examples));
    for (int dep = 0; dep < RAMOLE_DEPTH_COUNT; dep++)
        for (int s = 0; s < RAMOLE_SPAN_COUNT; s++) {
            char key[48];
            const char *sn = ramole_span_name((ramole_span)s), *ds = ramole_depth_suffix((ramole_depth)dep);
            snprintf(key, sizeof key, "right_%s%s", sn, ds);
            json_object_set_new(l, key, json_integer(sum.right[dep][s]));
            snprintf(key, sizeof key, "accuracy_%s%s", sn, ds);
            json_object_set_new(l, key, cli_json_num("%.4f", ramole_router_eval_accuracy(&sum, (ramole_depth)dep, (ramole_span)s)));
        }
    if (cli_json_line(stdout, l)) return 0;
    fprintf(stderr, "ramole %s: cannot write the results\n", cmd);
    return 1;
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
