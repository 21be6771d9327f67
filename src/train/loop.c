/*
 * loop.c — the shared training loop (loop.h): expert lists and draws, the
 * held-out loss, and rm_train_run.
 *
 * Everything that changes a run's numbers happens here in a fixed order
 * (per micro-batch: the next `batch` positions of the epoch order, then
 * one draw per sequence from the trainer's rng), so the checkpoint's step,
 * rng and data_pos are all a resumed run needs. Time is only measured,
 * never used.
 */
#include "train/loop.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- experts ------------------------------------------------------------------------ */

rm_status rm_expert_lists_map(const rm_dataset *d, rm_adapter *const *pool, int n_pool, rm_expert_lists *out) {
    memset(out, 0, sizeof *out);
    size_t n = (size_t)(d->n ? d->n : 1);
    out->idx = rm_malloc(n * RM_TRAIN_MAX_K * sizeof *out->idx);
    out->n = rm_calloc(n, sizeof *out->n);
    out->score = rm_calloc(n * RM_TRAIN_MAX_K, sizeof *out->score);
    out->n_examples = d->n;
    if (!out->idx || !out->n || !out->score) {
        rm_expert_lists_free(out);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < d->n; i++) {
        const rm_example *e = &d->ex[i];
        for (int a = 0; a < e->n_adapters; a++) {
            int found = -1;
            for (int p = 0; p < n_pool && found < 0; p++)
                if (!strcmp(pool[p]->name, e->adapters[a])) found = p;
            rm_status st = RAMOLE_OK;
            if (found < 0)
                st = rm_err(RAMOLE_ERR_NOT_FOUND, "line %d: adapter '%s' is not in the --pool (names are the folder "
                            "or file names)", e->line, e->adapters[a]);
            else if (a >= RM_TRAIN_MAX_K)
                st = rm_err(RAMOLE_ERR_RANGE, "line %d: more than %d adapters", e->line, RM_TRAIN_MAX_K);
            if (st != RAMOLE_OK) {
                rm_expert_lists_free(out);
                return st;
            }
            out->idx[(size_t)i * RM_TRAIN_MAX_K + a] = found;
            out->score[(size_t)i * RM_TRAIN_MAX_K + a] = e->scores ? e->scores[a] : 0;
            out->n[i] = a + 1;
        }
    }
    return RAMOLE_OK;
}

void rm_expert_lists_free(rm_expert_lists *l) {
    rm_free(l->idx);
    rm_free(l->n);
    rm_free(l->score);
    memset(l, 0, sizeof *l);
}

static int listed(const rm_expert_draw *p, int ex, const int32_t **idx) {
    if (!p->lists) return 0;
    *idx = p->lists->idx + (size_t)ex * RM_TRAIN_MAX_K;
    return p->lists->n[ex];
}

void rm_expert_draw_one(const rm_expert_draw *p, int ex, uint64_t *rng, int32_t *out, int32_t *n_out) {
    bool in[RM_TRAIN_MAX_POOL] = {0}; /* by pool index; the pool may exceed a sequence's slots */
    const int32_t *idx = NULL;
    int n0 = listed(p, ex, &idx);
    if (n0 == 0) for (int q = 0; q < p->n_pool; q++) in[q] = true;
    else for (int a = 0; a < n0; a++) in[idx[a]] = true;
    int list[RM_TRAIN_MAX_POOL], k = 0, first_in = -1;
    double drop = p->dropout;
    for (int q = 0; q < p->n_pool; q++) {
        if (in[q] && first_in < 0) first_in = q;
        bool keep = in[q] ? !(drop > 0 && rm_rng_uniform(rng) < drop) : (drop > 0 && rm_rng_uniform(rng) < drop);
        if (keep) list[k++] = q;
    }
    if (k == 0) list[k++] = first_in >= 0 ? first_in : 0;
    while (k > p->max_k) { /* drop random ones down to max_k */
        int r = (int)(rm_rng_next(rng) % (uint64_t)k);
        list[r] = list[--k];
    }
    for (int a = 0; a < k; a++) out[a] = list[a];
    *n_out = k;
}

void rm_expert_held_out(const rm_expert_draw *p, int ex, int32_t *out, int32_t *n_out) {
    const int32_t *idx = NULL;
    int n0 = listed(p, ex, &idx);
    for (int a = 0; a < n0; a++) out[a] = idx[a];
    if (n0 == 0) for (int q = 0; q < p->n_pool && q < p->max_k; q++) out[n0++] = q;
    *n_out = n0;
}

void rm_expert_scores(const rm_expert_draw *p, int ex, const int32_t *experts, int n, float *out) {
    const int32_t *idx = NULL;
    int n0 = listed(p, ex, &idx);
    const float *sc = n0 && p->lists->score ? p->lists->score + (size_t)ex * RM_TRAIN_MAX_K : NULL;
    for (int e = 0; e < n; e++) {
        out[e] = 0;
        for (int a = 0; sc && a < n0; a++)
            if (idx[a] == experts[e]) out[e] = sc[a];
    }
}

/* ---- held-out loss ------------------------------------------------------------------- */

rm_status rm_train_eval_loss(rm_tm_f32 *tm, const rm_dataset *d, rm_batchbuf *bb, int32_t pad,
                             const rm_expert_draw *experts, double *out) {
    double sum = 0;
    long cnt = 0;
    int idx[4096];
    if (bb->B > 4096) return rm_err(RAMOLE_ERR_RANGE, "held-out batches hold at most 4096 sequences");
    for (int s = 0; s < d->n; s += bb->B) {
        int nb = d->n - s < bb->B ? d->n - s : bb->B;
        for (int r = 0; r < nb; r++) idx[r] = s + r;
        rm_train_batch b;
        int c = rm_data_fill(bb, d, idx, nb, pad, &b);
        if (experts) {
            for (int r = 0; r < nb; r++) {
                int32_t *ex = bb->experts + r * RM_TRAIN_MAX_K;
                rm_expert_held_out(experts, idx[r], ex, &bb->n_experts[r]);
                rm_expert_scores(experts, idx[r], ex, bb->n_experts[r], bb->retrieval + r * RM_TRAIN_MAX_K);
            }
            b.experts = bb->experts, b.n_experts = bb->n_experts, b.retrieval = bb->retrieval;
        }
        if (c == 0) continue;
        double l;
        RM_TRY(rm_tm_f32_loss(tm, &b, &l));
        sum += l * c, cnt += c;
    }
    *out = cnt ? sum / (double)cnt : NAN;
    return RAMOLE_OK;
}

/* ---- the loop --------------------------------------------------------------------------- */

static rm_status report(const rm_train_run_params *p, rm_train_progress *ev, rm_train_event what) {
    ev->event = what;
    return p->progress ? p->progress(ev, p->user) : RAMOLE_OK;
}

rm_status rm_train_run(rm_tm_f32 *tm, const rm_train_run_params *p) {
    rm_status st = RAMOLE_OK;
    rm_trainer *t = NULL;
    rm_batchbuf *bbs = NULL, evb = {0};
    rm_train_batch *mb = NULL;
    int *perm = NULL, *idx = NULL;
    const rm_dataset *train = p->train;
    if (!train || train->n < 1 || p->batch < 1 || p->accum < 1 || p->seq < 1)
        return rm_err(RAMOLE_ERR_INVALID, "training needs examples, a batch, micro-batches and a sequence width");
    long per_step = (long)p->batch * p->accum;
    int64_t total = p->steps ? p->steps : (p->epochs ? p->epochs : 1) * ((train->n + per_step - 1) / per_step);
    rm_expert_draw val_draw = {0};
    if (p->experts) {
        val_draw = *p->experts;
        val_draw.lists = p->val_experts;
    }
    rm_adamw_params ap;
    rm_adamw_params_default(&ap);
    ap.lr = (float)p->lr;
    ap.weight_decay = (float)p->weight_decay;
    ap.warmup_steps = p->warmup >= 0 ? (int)p->warmup : (int)(total / 20 < 100 ? total / 20 : 100);
    ap.total_steps = (int)total;
    ap.min_lr_ratio = (float)p->min_lr_ratio;
    ap.clip_norm = (float)p->clip;
    ap.accum = p->accum;
    if ((st = rm_trainer_new(tm, &ap, p->seed, &t)) != RAMOLE_OK) goto out;
    bool resumed = false;
    if (p->resume) {
        if (!p->checkpoint || !rm_file_exists(p->checkpoint)) {
            st = rm_err(RAMOLE_ERR_NOT_FOUND, "--resume: no checkpoint at %s", p->checkpoint ? p->checkpoint : "(none)");
            goto out;
        }
        if ((st = rm_trainer_load(t, p->checkpoint)) != RAMOLE_OK) goto out;
        resumed = true;
    }
    bbs = rm_calloc((size_t)p->accum, sizeof *bbs);
    mb = rm_calloc((size_t)p->accum, sizeof *mb);
    perm = rm_malloc((size_t)train->n * sizeof *perm);
    idx = rm_malloc((size_t)p->batch * sizeof *idx);
    if (!bbs || !mb || !perm || !idx) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto out; }
    for (int a = 0; a < p->accum; a++)
        if ((st = rm_batchbuf_init(&bbs[a], p->batch, p->seq)) != RAMOLE_OK) goto out;
    if ((st = rm_batchbuf_init(&evb, p->batch, p->seq)) != RAMOLE_OK) goto out;
    int64_t stop = p->stop_at && p->stop_at < total ? p->stop_at : total;
    rm_train_progress ev = {.total = total, .stop = stop, .first_step = t->step, .step = t->step, .resumed = resumed,
                            .val_loss = NAN};
    rm_tm_f32_params(tm, &ev.n_params);
    if ((st = report(p, &ev, RM_TRAIN_EVENT_START)) != RAMOLE_OK) goto out;
    double t0 = rm_time_now();
    int64_t cur_epoch = -1;
    rm_train_stats ss = {0};
    while (t->step < stop) {
        double step_tokens = 0;
        for (int a = 0; a < p->accum; a++) {
            for (int r = 0; r < p->batch; r++) {
                uint64_t pos = t->data_pos++;
                int64_t epoch = (int64_t)(pos / (uint64_t)train->n);
                if (epoch != cur_epoch) {
                    rm_data_order(train->n, p->seed, epoch, perm);
                    cur_epoch = epoch;
                }
                idx[r] = perm[pos % (uint64_t)train->n];
            }
            rm_data_fill(&bbs[a], train, idx, p->batch, p->pad, &mb[a]);
            for (int r = 0; r < p->batch; r++) {
                const rm_example *e = &train->ex[idx[r]];
                step_tokens += e->n - 1 < mb[a].T ? e->n - 1 : mb[a].T;
            }
            if (p->experts) {
                for (int r = 0; r < p->batch; r++) {
                    int32_t *ex = bbs[a].experts + r * RM_TRAIN_MAX_K;
                    rm_expert_draw_one(p->experts, idx[r], &t->rng, ex, &bbs[a].n_experts[r]);
                    rm_expert_scores(p->experts, idx[r], ex, bbs[a].n_experts[r],
                                     bbs[a].retrieval + r * RM_TRAIN_MAX_K);
                }
                mb[a].experts = bbs[a].experts, mb[a].n_experts = bbs[a].n_experts;
                mb[a].retrieval = bbs[a].retrieval;
                mb[a].gate_loss = p->gate_loss;
            }
        }
        st = rm_trainer_step(t, mb, p->accum, &ss);
        if (st == RAMOLE_ERR_RANGE) {
            char why[512];
            snprintf(why, sizeof why, "%s", ramole_last_error());
            ev.step = t->step + 1;
            report(p, &ev, RM_TRAIN_EVENT_NAN);
            st = rm_err(RAMOLE_ERR_RANGE, "the loss or gradient is NaN or infinite at step %lld (%s); training stopped",
                        (long long)t->step + 1, why);
            goto out;
        }
        if (st != RAMOLE_OK) goto out;
        ev.tokens += step_tokens;
        ev.step = t->step;
        ev.loss = ss.loss - p->gate_loss * ss.gate_ce; /* what the step minimised, less the gate term */
        ev.gate_ce = ss.gate_ce;
        ev.lr = ss.lr;
        ev.grad_norm = ss.grad_norm;
        ev.elapsed_s = rm_time_now() - t0;
        ev.tokens_per_s = ev.tokens / (ev.elapsed_s > 0 ? ev.elapsed_s : 1e-9);
        ev.eta_s = (double)(stop - t->step) * ev.elapsed_s / (double)(t->step - ev.first_step);
        bool last = t->step == stop;
        if (p->val && ((p->eval_every && t->step % p->eval_every == 0) || last)) {
            if ((st = rm_train_eval_loss(tm, p->val, &evb, p->pad, p->experts ? &val_draw : NULL, &ev.val_loss)) !=
                RAMOLE_OK)
                goto out;
            if ((st = report(p, &ev, RM_TRAIN_EVENT_EVAL)) != RAMOLE_OK) goto out;
        }
        if ((st = report(p, &ev, RM_TRAIN_EVENT_STEP)) != RAMOLE_OK) goto out;
        if (p->checkpoint && ((p->save_every && t->step % p->save_every == 0) || last))
            if ((st = rm_trainer_save(t, p->checkpoint)) != RAMOLE_OK) goto out;
    }
    if (p->val && isnan(ev.val_loss) &&
        (st = rm_train_eval_loss(tm, p->val, &evb, p->pad, p->experts ? &val_draw : NULL, &ev.val_loss)) != RAMOLE_OK)
        goto out;
    ev.step = t->step;
    ev.loss = ss.loss - p->gate_loss * ss.gate_ce;
    ev.elapsed_s = rm_time_now() - t0;
    st = report(p, &ev, RM_TRAIN_EVENT_DONE);
out:
    for (int a = 0; bbs && a < p->accum; a++) rm_batchbuf_free(&bbs[a]);
    rm_batchbuf_free(&evb);
    rm_free(bbs);
    rm_free(mb);
    rm_free(perm);
    rm_free(idx);
    rm_trainer_free(t);
    return st;
}
