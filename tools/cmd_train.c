/*
 * cmd_train.c — `ramole train lora|base|router` (and `train router-eval`).
 *
 * Design: the three trainers share one loop (train_run) over a training
 * model (src/train/train.h) and datasets (src/train/data.h); they differ
 * only in how the model is built, how a batch's router experts are drawn,
 * and what is exported at the end:
 *   lora    base frozen, a fresh PEFT-initialised adapter (A random, B = 0)
 *           trains; written as a PEFT folder for `generate --lora DIR`.
 *   base    a model of a preset shape with random weights trains entirely;
 *           written as a Hugging Face folder with the tokenizer copied.
 *   router  base and a pool of adapters frozen, a RouterLoRA router trains;
 *           per sequence the experts are the example's "adapters" (or the
 *           whole pool) with random LoRA dropout: each listed expert is
 *           dropped and each other expert added with probability P, at
 *           most --top-k kept. Written as a PEFT folder for
 *           `generate --mode router --router DIR --lora ...`. --gate-loss W
 *           adds W x the cross-entropy between the gates and each
 *           sequence's best expert (lowest loss alone; train.h), logged as
 *           gate_ce; held-out losses stay the language-model loss.
 * Data order: the examples of epoch e are visited in rm_data_order(seed, e);
 * the trainer's data_pos counts examples consumed, and router dropout draws
 * from the trainer's rng, so a checkpoint resumes the exact same run.
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
#include "train/train.h"

#define MAX_FILES 256
#define MAX_POOL RM_TRAIN_MAX_K

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
            "           [--preset tiny|small] [--hidden N --layers N --heads N --kv-heads N --ffn N --max-pos N] [COMMON]\n"
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

/* ---- the shared training loop ------------------------------------------------ */

typedef struct {
    const train_opts *o;
    const char *cmd;
    rm_tm_f32 *tm;
    rm_dataset *train, *val;
    int T;                     /* batch width (max_seq) */
    int32_t pad;
    /* router */
    int n_pool;
    rm_adapter *const *pool;
    int32_t *ex_experts;       /* [n_train][MAX_K] pool indices from "adapters" (or -1 lists) */
    int32_t *ex_n;             /* [n_train]; 0: the whole pool */
    int max_k;
} train_job;

/* Per-example expert lists from the "adapters" names (router). */
static rm_status map_adapters(train_job *j, const rm_dataset *d, int32_t **experts, int32_t **n) {
    *experts = rm_malloc((size_t)(d->n ? d->n : 1) * RM_TRAIN_MAX_K * sizeof **experts);
    *n = rm_calloc((size_t)(d->n ? d->n : 1), sizeof **n);
    if (!*experts || !*n) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < d->n; i++) {
        const rm_example *e = &d->ex[i];
        for (int a = 0; a < e->n_adapters; a++) {
            int found = -1;
            for (int p = 0; p < j->n_pool && found < 0; p++)
                if (!strcmp(j->pool[p]->name, e->adapters[a])) found = p;
            if (found < 0)
                return rm_err(RAMOLE_ERR_NOT_FOUND, "line %d: adapter '%s' is not in the --pool (names are the "
                              "folder or file names)", e->line, e->adapters[a]);
            if (a >= RM_TRAIN_MAX_K) return rm_err(RAMOLE_ERR_RANGE, "line %d: more than %d adapters", e->line, RM_TRAIN_MAX_K);
            (*experts)[(size_t)i * RM_TRAIN_MAX_K + a] = found;
            (*n)[i] = a + 1;
        }
    }
    return RAMOLE_OK;
}

/* Router experts of one sequence: the example's list (or the pool), with
 * random LoRA dropout, at most max_k, never empty. */
static void draw_experts(train_job *j, int ex, uint64_t *rng, int32_t *out, int32_t *n_out) {
    bool in[MAX_POOL] = {0};
    int n0 = j->ex_n ? j->ex_n[ex] : 0;
    if (n0 == 0) for (int p = 0; p < j->n_pool; p++) in[p] = true;
    else for (int a = 0; a < n0; a++) in[j->ex_experts[(size_t)ex * RM_TRAIN_MAX_K + a]] = true;
    int list[MAX_POOL], k = 0, first_in = -1;
    double p = j->o->dropout;
    for (int q = 0; q < j->n_pool; q++) {
        if (in[q] && first_in < 0) first_in = q;
        bool keep = in[q] ? !(p > 0 && rm_rng_uniform(rng) < p) : (p > 0 && rm_rng_uniform(rng) < p);
        if (keep) list[k++] = q;
    }
    if (k == 0) list[k++] = first_in >= 0 ? first_in : 0;
    while (k > j->max_k) { /* drop random ones down to max_k */
        int r = (int)(rm_rng_next(rng) % (uint64_t)k);
        list[r] = list[--k];
    }
    for (int a = 0; a < k; a++) out[a] = list[a];
    *n_out = k;
}

/* Mean loss per masked token over a dataset. */
static rm_status eval_loss(train_job *j, const rm_dataset *d, rm_batchbuf *bb, double *out) {
    double sum = 0;
    long cnt = 0;
    int idx[4096];
    for (int s = 0; s < d->n; s += bb->B) {
        int nb = d->n - s < bb->B ? d->n - s : bb->B;
        for (int r = 0; r < nb; r++) idx[r] = s + r;
        rm_train_batch b;
        int c = rm_data_fill(bb, d, idx, nb, j->pad, &b);
        if (j->n_pool) {
            for (int r = 0; r < nb; r++) { /* held-out: the listed experts, no dropout */
                int n0 = 0;
                const rm_example *e = &d->ex[idx[r]];
                for (int a = 0; a < e->n_adapters && a < RM_TRAIN_MAX_K; a++)
                    for (int p = 0; p < j->n_pool; p++)
                        if (!strcmp(j->pool[p]->name, e->adapters[a])) bb->experts[r * RM_TRAIN_MAX_K + n0++] = p;
                if (n0 == 0) for (int p = 0; p < j->n_pool && p < j->max_k; p++) bb->experts[r * RM_TRAIN_MAX_K + n0++] = p;
                bb->n_experts[r] = n0;
            }
            b.experts = bb->experts, b.n_experts = bb->n_experts;
        }
        if (c == 0) continue;
        double l;
        RM_TRY(rm_tm_f32_loss(j->tm, &b, &l));
        sum += l * c, cnt += c;
    }
    *out = cnt ? sum / (double)cnt : NAN;
    return RAMOLE_OK;
}

/* The language-model loss of a step, shown and logged (comparable with the
 * held-out loss): the step minimised it + gate_loss x gate_ce. */
static double lm_loss(const train_opts *o, const rm_train_stats *ss) { return ss->loss - o->gate_loss * ss->gate_ce; }

/* Train j->tm; 0 on success, else the exit status (messages printed). */
static int train_run(train_job *j) {
    const train_opts *o = j->o;
    const char *cmd = j->cmd;
    int rc = 1;
    rm_trainer *t = NULL;
    rm_batchbuf *bbs = NULL, evb = {0};
    rm_train_batch *mb = NULL;
    int *perm = NULL, *idx = NULL;
    FILE *logf = NULL;
    rm_status st;
    long per_step = o->batch * o->accum;
    long total = o->steps ? o->steps
                          : (o->epochs ? o->epochs : 1) * ((j->train->n + per_step - 1) / per_step);
    rm_adamw_params ap;
    rm_adamw_params_default(&ap);
    ap.lr = (float)o->lr;
    ap.weight_decay = (float)o->wd;
    ap.warmup_steps = o->warmup >= 0 ? (int)o->warmup : (int)(total / 20 < 100 ? total / 20 : 100);
    ap.total_steps = (int)total;
    ap.min_lr_ratio = (float)o->min_lr;
    ap.clip_norm = (float)o->clip;
    ap.accum = (int)o->accum;
    if ((st = rm_trainer_new(j->tm, &ap, o->seed, &t)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (o->resume) {
        if (!rm_file_exists(o->ckpt)) {
            fprintf(stderr, "ramole %s: --resume: no checkpoint at %s\n", cmd, o->ckpt);
            goto out;
        }
        if ((st = rm_trainer_load(t, o->ckpt)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
        fprintf(stderr, "resumed from %s at step %lld\n", o->ckpt, (long long)t->step);
    }
    bbs = rm_calloc((size_t)o->accum, sizeof *bbs);
    mb = rm_calloc((size_t)o->accum, sizeof *mb);
    perm = rm_malloc((size_t)j->train->n * sizeof *perm);
    idx = rm_malloc((size_t)o->batch * sizeof *idx);
    if (!bbs || !mb || !perm || !idx) { rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory")); goto out; }
    for (long a = 0; a < o->accum; a++)
        if ((st = rm_batchbuf_init(&bbs[a], (int)o->batch, j->T)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if ((st = rm_batchbuf_init(&evb, (int)o->batch, j->T)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
    if (o->log && !(logf = fopen(o->log, o->resume ? "a" : "w"))) {
        fprintf(stderr, "ramole %s: cannot open the log %s\n", cmd, o->log);
        goto out;
    }
    bool tty = isatty(2) && !o->quiet;
    long log_every = o->log_every ? o->log_every : (total / 20 > 0 ? total / 20 : 1);
    long eval_every = o->eval_every;
    size_t n_params = 0;
    rm_tm_f32_params(j->tm, &n_params);
    if (!o->quiet)
        fprintf(stderr, "train %s: %d examples (%d held out), %zu trainable parameters, %ld steps of %ld x %d "
                        "tokens, lr %g\n", o->kind, j->train->n, j->val ? j->val->n : 0, n_params, total, per_step,
                j->T, o->lr);
    if (logf) {
        fprintf(logf, "{\"event\":\"start\",\"kind\":\"%s\",\"examples\":%d,\"val_examples\":%d,\"params\":%zu,"
                      "\"steps\":%ld,\"batch\":%ld,\"accum\":%ld,\"ctx\":%d,\"lr\":%g,\"seed\":%llu,\"resume_step\":%lld}\n",
                o->kind, j->train->n, j->val ? j->val->n : 0, n_params, total, o->batch, o->accum, j->T, o->lr,
                (unsigned long long)o->seed, (long long)t->step);
        fflush(logf);
    }
    double t0 = rm_time_now();
    int64_t step0 = t->step, cur_epoch = -1;
    double tokens = 0, last_val = NAN;
    rm_train_stats ss = {0};
    int64_t stop = o->stop_at && o->stop_at < total ? o->stop_at : total;
    while (t->step < stop) {
        double step_tokens = 0;
        for (long a = 0; a < o->accum; a++) {
            for (long r = 0; r < o->batch; r++) {
                uint64_t pos = t->data_pos++;
                int64_t ep = (int64_t)(pos / (uint64_t)j->train->n);
                if (ep != cur_epoch) {
                    rm_data_order(j->train->n, o->seed, ep, perm);
                    cur_epoch = ep;
                }
                idx[r] = perm[pos % (uint64_t)j->train->n];
            }
            rm_data_fill(&bbs[a], j->train, idx, (int)o->batch, j->pad, &mb[a]);
            for (long r = 0; r < o->batch; r++) {
                const rm_example *e = &j->train->ex[idx[r]];
                step_tokens += e->n - 1 < mb[a].T ? e->n - 1 : mb[a].T;
            }
            if (j->n_pool) {
                for (long r = 0; r < o->batch; r++)
                    draw_experts(j, idx[r], &t->rng, bbs[a].experts + r * RM_TRAIN_MAX_K, &bbs[a].n_experts[r]);
                mb[a].experts = bbs[a].experts, mb[a].n_experts = bbs[a].n_experts;
                mb[a].gate_loss = o->gate_loss;
            }
        }
        st = rm_trainer_step(t, mb, (int)o->accum, &ss);
        if (st == RAMOLE_ERR_RANGE) {
            if (tty) fprintf(stderr, "\n");
            fprintf(stderr, "ramole %s: the loss or gradient is NaN or infinite at step %lld (%s); training "
                            "stopped, nothing written%s%s\n", cmd, (long long)t->step + 1, ramole_last_error(),
                    o->ckpt && rm_file_exists(o->ckpt) ? "; the last good checkpoint is kept at " : "",
                    o->ckpt && rm_file_exists(o->ckpt) ? o->ckpt : "");
            if (logf) fprintf(logf, "{\"event\":\"nan\",\"step\":%lld}\n", (long long)t->step + 1);
            goto out;
        }
        if (st != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
        tokens += step_tokens;
        double lm = lm_loss(o, &ss);
        double el = rm_time_now() - t0, tps = tokens / (el > 0 ? el : 1e-9);
        double eta = (double)(stop - t->step) * el / (double)(t->step - step0);
        bool last = t->step == stop;
        if (j->val && ((eval_every && t->step % eval_every == 0) || last)) {
            if ((st = eval_loss(j, j->val, &evb, &last_val)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
            if (logf) fprintf(logf, "{\"step\":%lld,\"val_loss\":%.6f}\n", (long long)t->step, last_val);
        }
        if (logf) {
            char gb[48] = "";
            if (o->gate_loss > 0) snprintf(gb, sizeof gb, ",\"gate_ce\":%.6f", ss.gate_ce);
            fprintf(logf, "{\"step\":%lld,\"loss\":%.6f%s,\"lr\":%.6g,\"grad_norm\":%.6g,\"tokens\":%.0f,"
                          "\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
                    (long long)t->step, lm, gb, ss.lr, ss.grad_norm, tokens, tps, el);
            fflush(logf);
        }
        if (!o->quiet && (tty || t->step % log_every == 0 || last || t->step == step0 + 1)) {
            char etab[32], vb[96] = "";
            cli_fmt_time(eta, etab, sizeof etab);
            int nv = o->gate_loss > 0 ? snprintf(vb, sizeof vb, "  gate %.4f", ss.gate_ce) : 0;
            if (!isnan(last_val)) snprintf(vb + nv, sizeof vb - (size_t)nv, "  val %.4f", last_val);
            fprintf(stderr, "%sstep %lld/%ld  loss %.4f%s  lr %.2e  %.0f tok/s  ETA %s%s", tty ? "\r" : "",
                    (long long)t->step, total, lm, vb, ss.lr, tps, etab, tty ? "   " : "\n");
        }
        if (o->ckpt && ((o->save_every && t->step % o->save_every == 0) || last)) {
            if ((st = rm_trainer_save(t, o->ckpt)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
        }
    }
    if (tty) fprintf(stderr, "\n");
    if (j->val && isnan(last_val) && (st = eval_loss(j, j->val, &evb, &last_val)) != RAMOLE_OK) {
        rc = cli_fail(cmd, st);
        goto out;
    }
    if (!o->quiet) {
        fprintf(stderr, "train %s: done, %lld steps, last loss %.4f", o->kind, (long long)t->step, lm_loss(o, &ss));
        if (j->val) fprintf(stderr, ", held-out loss %.4f on %d examples", last_val, j->val->n);
        fprintf(stderr, ", %.1f s\n", rm_time_now() - t0);
    }
    if (logf) {
        fprintf(logf, "{\"event\":\"done\",\"step\":%lld,\"loss\":%.6f", (long long)t->step, lm_loss(o, &ss));
        if (j->val) fprintf(logf, ",\"val_loss\":%.6f", last_val);
        fprintf(logf, "}\n");
    }
    rc = 0;
out:
    if (logf && fclose(logf) != 0 && rc == 0) {
        fprintf(stderr, "ramole %s: error writing the log %s\n", cmd, o->log);
        rc = 1;
    }
    for (long a = 0; bbs && a < o->accum; a++) rm_batchbuf_free(&bbs[a]);
    rm_batchbuf_free(&evb);
    rm_free(bbs);
    rm_free(mb);
    rm_free(perm);
    rm_free(idx);
    rm_trainer_free(t);
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
        j.n_pool = o->n_pool;
        j.pool = pool;
        j.max_k = o->top_k ? (int)o->top_k : o->n_pool;
        if (j.max_k > o->n_pool) j.max_k = o->n_pool;
        tp.experts = (const rm_adapter *const *)pool;
        tp.n_experts = o->n_pool;
        tp.router = ad;
        tp.max_k = j.max_k;
        if ((st = map_adapters(&j, j.train, &j.ex_experts, &j.ex_n)) != RAMOLE_OK) {
            rc = cli_fail(cmd, rm_err_prefix(st, "%s", o->data[0]));
            goto out;
        }
        if (j.val) { /* names in the held-out part must exist too */
            int32_t *e2 = NULL, *n2 = NULL;
            st = map_adapters(&j, j.val, &e2, &n2);
            rm_free(e2), rm_free(n2);
            if (st) { rc = cli_fail(cmd, rm_err_prefix(st, "%s", o->data[0])); goto out; }
        }
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
    rm_free(j.ex_experts);
    rm_free(j.ex_n);
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

static int train_base(const train_opts *o) {
    const char *cmd = "train base";
    rm_tok *tok = NULL;
    rm_model *em = NULL;
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
    rm_model_config c;
    rm_model_config_defaults(&c, arch);
    c.hidden = o->hidden ? (int)o->hidden : p->hidden;
    c.ffn = o->ffn ? (int)o->ffn : p->ffn;
    c.n_layers = o->layers ? (int)o->layers : p->layers;
    c.n_heads = o->heads ? (int)o->heads : p->heads;
    c.n_kv_heads = o->kv_heads ? (int)o->kv_heads : (o->heads ? c.n_heads : p->kv_heads);
    if (c.n_heads <= 0 || c.hidden % c.n_heads) {
        fprintf(stderr, "ramole %s: --hidden %d is not a multiple of --heads %d\n", cmd, c.hidden, c.n_heads);
        goto out;
    }
    c.head_dim = c.hidden / c.n_heads;
    c.rope.n_rot = c.head_dim;
    c.max_pos = o->max_pos ? (int)o->max_pos : p->max_pos;
    c.vocab_size = rm_tok_vocab_size(tok);
    c.bos_id = rm_tok_bos(tok);
    c.eos_id = rm_data_eos(tok, -1);
    if (arch == RM_ARCH_QWEN2) c.qkv_bias = true;
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
    if ((st = rm_tm_f32_new_random(&c, o->seed, (float)o->init_std, &tp, &j.tm)) != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
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
    rm_tm_f32_free(j.tm);
    rm_dataset_free(j.train);
    rm_dataset_free(j.val);
    rm_tok_free(tok);
    return rc;
}

/*
 * router-eval: for each held-out example, the router's gates over the whole
 * pool (in --pool order) while the example runs teacher-forced (prompt +
 * answer), averaged over three spans of positions: the prompt's, the
 * answer's (those whose next token is in the loss: the positions that
 * generate) and all; and three ways over depth: the mean gate over every
 * module the router adapts (rm_lora_trace_gates), the mean of each
 * expert's share of the experts' output there (weight x output size), and
 * the last module's gate alone (layer L-1's last adapted target). The pick
 * is the adapter with the highest mean, compared with the example's first
 * listed "adapters" name. One JSON line per example ("answer": every
 * module, "answer_share", "answer_last", ...), then a summary line with
 * accuracy_SPAN, accuracy_SPAN_share and accuracy_SPAN_last. The last
 * module's gates at prompt positions receive no gradient in training
 * (nothing after that module reads them).
 */
enum { SPAN_PROMPT, SPAN_ANSWER, SPAN_ALL, N_SPAN };
static const char *const span_name[N_SPAN] = {"prompt", "answer", "all"};
enum { DEPTH_EVERY, DEPTH_SHARE, DEPTH_LAST, N_DEPTH };
static const char *const depth_suffix[N_DEPTH] = {"", "_share", "_last"};

static int argmax_d(const double *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) b = v[i] > v[b] ? i : b;
    return b;
}

static int router_eval(const train_opts *o) {
    const char *cmd = "train router-eval";
    rm_model *m = NULL;
    rm_adapter *pool[MAX_POOL] = {0}, *router = NULL;
    rm_dataset *d = NULL;
    rm_ctx *ctx = NULL;
    rm_lora_state *ls = NULL;
    int32_t *pos = NULL, *seq = NULL;
    double *tsum = NULL, *tshare = NULL;
    int *tn = NULL;
    int rc = 1, counted = 0, right[N_DEPTH][N_SPAN] = {{0}};
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
    pos = rm_malloc((size_t)maxn * sizeof *pos);
    seq = rm_calloc((size_t)maxn, sizeof *seq);
    tsum = rm_malloc((size_t)maxn * K * sizeof *tsum);
    tshare = rm_malloc((size_t)maxn * K * sizeof *tshare);
    tn = rm_malloc((size_t)maxn * sizeof *tn);
    if (!pos || !seq || !tsum || !tshare || !tn) { rc = cli_fail(cmd, rm_err(RAMOLE_ERR_NOMEM, "out of memory")); goto out; }
    for (int i = 0; i < maxn; i++) pos[i] = i;
    for (int i = 0; i < d->n; i++) {
        const rm_example *e = &d->ex[i];
        int n = e->n - 1; /* positions that predict a next token */
        rm_ctx_seq_clear(ctx, 0);
        memset(tsum, 0, (size_t)n * K * sizeof *tsum);
        memset(tshare, 0, (size_t)n * K * sizeof *tshare);
        memset(tn, 0, (size_t)n * sizeof *tn);
        rm_lora_trace_gates(ls, &(rm_gate_trace){.gates = tsum, .shares = tshare, .n = tn});
        rm_batch b = {n, e->tokens, pos, seq, NULL};
        st = rm_ctx_decode(ctx, &b);
        rm_lora_trace_gates(ls, NULL);
        if (st != RAMOLE_OK) { rc = cli_fail(cmd, st); goto out; }
        double mean[N_DEPTH][N_SPAN][MAX_POOL] = {{{0}}};
        int cnt[N_SPAN] = {0}, best[N_DEPTH][N_SPAN];
        for (int t = 0; t < n; t++) {
            const float *g = rm_lora_last_gates(ls, t);
            int sp = t + 1 >= e->n_prompt ? SPAN_ANSWER : SPAN_PROMPT;
            for (int p = 0; p < K; p++) {
                double every = tn[t] ? tsum[(size_t)t * K + p] / tn[t] : 0;
                double share = tn[t] ? tshare[(size_t)t * K + p] / tn[t] : 0;
                mean[DEPTH_EVERY][sp][p] += every, mean[DEPTH_EVERY][SPAN_ALL][p] += every;
                mean[DEPTH_SHARE][sp][p] += share, mean[DEPTH_SHARE][SPAN_ALL][p] += share;
                mean[DEPTH_LAST][sp][p] += g[p], mean[DEPTH_LAST][SPAN_ALL][p] += g[p];
            }
            cnt[sp]++, cnt[SPAN_ALL]++;
        }
        printf("{\"line\":%d,\"expected\":\"%s\"", e->line, e->n_adapters ? e->adapters[0] : "");
        for (int dep = 0; dep < N_DEPTH; dep++)
            for (int s = 0; s < N_SPAN; s++) {
                for (int p = 0; p < K; p++) mean[dep][s][p] /= cnt[s] ? cnt[s] : 1;
                best[dep][s] = argmax_d(mean[dep][s], K);
                printf(",\"%s%s\":{\"picked\":\"%s\",\"weights\":[", span_name[s], depth_suffix[dep],
                       pool[best[dep][s]]->name);
                for (int p = 0; p < K; p++) printf("%s%.4f", p ? "," : "", mean[dep][s][p]);
                printf("]}");
            }
        printf("}\n");
        if (e->n_adapters) {
            counted++;
            for (int dep = 0; dep < N_DEPTH; dep++)
                for (int s = 0; s < N_SPAN; s++) right[dep][s] += !strcmp(e->adapters[0], pool[best[dep][s]]->name);
        }
    }
    printf("{\"examples\":%d", counted);
    for (int dep = 0; dep < N_DEPTH; dep++)
        for (int s = 0; s < N_SPAN; s++)
            printf(",\"right_%s%s\":%d,\"accuracy_%s%s\":%.4f", span_name[s], depth_suffix[dep], right[dep][s],
                   span_name[s], depth_suffix[dep], counted ? (double)right[dep][s] / counted : 0.0);
    printf("}\n");
    rc = 0;
out:
    rm_free(pos);
    rm_free(seq);
    rm_free(tsum);
    rm_free(tshare);
    rm_free(tn);
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
