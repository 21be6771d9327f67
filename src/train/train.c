/*
 * train.c — the optimiser side of training: AdamW with decoupled weight
 * decay and bias correction, linear warm-up then cosine decay, global-norm
 * clipping, gradient accumulation over micro-batches, and checkpoints.
 *
 * Exact resume: a step depends only on (parameters, m, v, step, the
 * micro-batches). The checkpoint stores the first four bit for bit, plus the
 * caller's RNG state and data position from which it rebuilds the same
 * micro-batches; so N steps in one run and N/2 + save + load + N/2 give
 * identical parameters (tested).
 *
 * The update runs over the parameter vector split by rows over the tm's
 * pool; every element's arithmetic is independent of the split, and the
 * gradient norm is summed in a fixed order (per-chunk partial sums over a
 * fixed chunking, then in order), so results do not depend on timing.
 */
#include <math.h>
#include <string.h>

#include "train/train.h"

const char *rm_train_kind_name(rm_train_kind k) {
    static const char *const names[] = {"full", "lora", "router"};
    return (int)k >= 0 && k < RM_TRAIN_KIND_COUNT ? names[k] : "?";
}

void rm_adamw_params_default(rm_adamw_params *p) {
    memset(p, 0, sizeof *p);
    p->lr = 1e-3f;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->weight_decay = 0.0f;
    p->warmup_steps = 0;
    p->total_steps = 0;
    p->min_lr_ratio = 0.1f;
    p->clip_norm = 1.0f;
    p->accum = 1;
}

float rm_lr_at(const rm_adamw_params *p, int64_t step) {
    if (step < 1) step = 1;
    if (p->warmup_steps > 0 && step <= p->warmup_steps) return p->lr * (float)step / (float)p->warmup_steps;
    if (p->total_steps <= 0 || p->total_steps <= p->warmup_steps) return p->lr;
    double prog = (double)(step - p->warmup_steps) / (double)(p->total_steps - p->warmup_steps);
    if (prog > 1) prog = 1;
    double lo = (double)p->lr * p->min_lr_ratio;
    return (float)(lo + 0.5 * ((double)p->lr - lo) * (1.0 + cos(M_PI * prog)));
}

/* ---- trainer ---------------------------------------------------------------- */

rm_status rm_trainer_new(rm_tm_f32 *tm, const rm_adamw_params *opt, uint64_t seed, rm_trainer **out) {
    *out = NULL;
    if (opt->lr < 0 || opt->beta1 < 0 || opt->beta1 >= 1 || opt->beta2 < 0 || opt->beta2 >= 1 || opt->eps <= 0 ||
        opt->accum < 1)
        return rm_err(RAMOLE_ERR_INVALID, "AdamW: lr >= 0, betas in [0, 1), eps > 0, accum >= 1 required");
    rm_trainer *t = rm_calloc(1, sizeof *t);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "trainer: out of memory");
    t->tm = tm;
    t->opt = *opt;
    rm_tm_f32_params(tm, &t->n);
    t->m = rm_calloc(t->n ? t->n : 1, sizeof(float));
    t->v = rm_calloc(t->n ? t->n : 1, sizeof(float));
    if (!t->m || !t->v) {
        size_t n = t->n;
        rm_trainer_free(t);
        return rm_err(RAMOLE_ERR_NOMEM, "trainer: out of memory (%zu parameters)", n);
    }
    t->rng = seed;
    *out = t;
    return RAMOLE_OK;
}

void rm_trainer_free(rm_trainer *t) {
    if (!t) return;
    rm_free(t->m);
    rm_free(t->v);
    rm_free(t);
}

#define NORM_CHUNKS 64 /* fixed chunking of the norm sum: independent of threads */

typedef struct {
    rm_trainer *t;
    float *p, *g;
    double part[NORM_CHUNKS];
    float gscale, lr, bc1, bc2;
    int phase; /* 0: norm partials, 1: update */
} step_job;

/*
 * AdamW on n elements: m, v moments with bias corrections 1/ib1, 1/ib2,
 * decoupled decay wd, gradients scaled by gs (clipping). no-math-errno
 * lets the compiler vectorise sqrtf (its argument is >= 0).
 */
__attribute__((optimize("no-math-errno"))) static void adamw_update(float *restrict p, const float *restrict g,
                                                                   float *restrict m, float *restrict v, int64_t n,
                                                                   float b1, float b2, float eps, float gs, float lr,
                                                                   float ib1, float ib2, float wd) {
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gs;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= lr * ((m[i] * ib1) / (sqrtf(v[i] * ib2) + eps) + wd * p[i]);
    }
}

static void step_run(void *arg, int ith, int nth) {
    step_job *j = arg;
    rm_trainer *t = j->t;
    if (j->phase == 0) {
        int64_t lo, hi;
        rm_split(NORM_CHUNKS, ith, nth, &lo, &hi);
        for (int64_t c = lo; c < hi; c++) {
            int64_t a, b;
            rm_split((int64_t)t->n, (int)c, NORM_CHUNKS, &a, &b);
            double s = 0;
            for (int64_t i = a; i < b; i++) s += (double)j->g[i] * j->g[i];
            j->part[c] = s;
        }
        return;
    }
    /* update, tensor by tensor, each tensor's elements split by thread */
    const rm_adamw_params *o = &t->opt;
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps, gs = j->gscale, lr = j->lr;
    const float ib1 = 1.0f / j->bc1, ib2 = 1.0f / j->bc2;
    int nt = rm_tm_f32_n_tensors(t->tm);
    for (int ti = 0; ti < nt; ti++) {
        const rm_train_tensor *T = rm_tm_f32_tensor(t->tm, ti);
        int64_t n = T->rows * T->cols, lo, hi;
        rm_split(n, ith, nth, &lo, &hi);
        const float wd = T->decay ? o->weight_decay : 0.0f;
        adamw_update(j->p + T->offset + lo, j->g + T->offset + lo, t->m + T->offset + lo, t->v + T->offset + lo,
                     hi - lo, b1, b2, eps, gs, lr, ib1, ib2, wd);
    }
}

rm_status rm_trainer_step(rm_trainer *t, const rm_train_batch *micro, int n_micro, rm_train_stats *st) {
    if (n_micro < 1) return rm_err(RAMOLE_ERR_INVALID, "trainer: no micro-batch");
    rm_tm_f32 *tm = t->tm;
    rm_tm_f32_zero_grad(tm);
    double loss_sum = 0, gate_sum = 0;
    for (int i = 0; i < n_micro; i++) {
        double loss = 0;
        rm_status s = rm_tm_f32_backward(tm, &micro[i], 1.0 / n_micro, &loss);
        if (s != RAMOLE_OK) return rm_err_prefix(s, "step %lld, micro-batch %d", (long long)t->step + 1, i);
        loss_sum += loss;
        gate_sum += rm_tm_f32_gate_ce(tm);
    }
    step_job j;
    memset(&j, 0, sizeof j);
    j.t = t;
    j.p = rm_tm_f32_params(tm, NULL);
    j.g = rm_tm_f32_grads(tm, NULL);
    j.phase = 0;
    rm_pool_run(rm_tm_f32_pool(tm), step_run, &j);
    double nrm2 = 0;
    for (int c = 0; c < NORM_CHUNKS; c++) nrm2 += j.part[c];
    double norm = sqrt(nrm2);
    if (!isfinite(norm))
        return rm_err(RAMOLE_ERR_RANGE, "step %lld: the gradient norm is not finite (loss %g); parameters unchanged",
                      (long long)t->step + 1, loss_sum / n_micro);
    int64_t step = t->step + 1;
    j.gscale = t->opt.clip_norm > 0 && norm > t->opt.clip_norm ? (float)(t->opt.clip_norm / norm) : 1.0f;
    j.lr = rm_lr_at(&t->opt, step);
    j.bc1 = 1.0f - powf(t->opt.beta1, (float)step);
    j.bc2 = 1.0f - powf(t->opt.beta2, (float)step);
    j.phase = 1;
    rm_pool_run(rm_tm_f32_pool(tm), step_run, &j);
    t->step = step;
    if (st) {
        st->loss = loss_sum / n_micro;
        st->gate_ce = gate_sum / n_micro;
        st->grad_norm = norm;
        st->lr = j.lr;
        st->step = step;
    }
    return RAMOLE_OK;
}

/* ---- checkpoints ------------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t layout_hash(const rm_trainer *t) {
    uint32_t kind = (uint32_t)rm_tm_f32_kind(t->tm);
    int nt = rm_tm_f32_n_tensors(t->tm);
    uint64_t h = FNV_INIT;
    h = fnv1a(h, &kind, sizeof kind);
    for (int i = 0; i < nt; i++) {
        const rm_train_tensor *T = rm_tm_f32_tensor(t->tm, i);
        h = fnv1a(h, T->name, strlen(T->name));
        int64_t sh[2] = {T->rows, T->cols};
        h = fnv1a(h, sh, sizeof sh);
    }
    return h;
}

#define CKPT_HEADER 104

rm_status rm_trainer_save(const rm_trainer *tc, const char *path) {
    const rm_trainer *t = tc;
    size_t n = t->n, bytes;
    if (!rm_mul_ok(n, 3 * sizeof(float), &bytes) || !rm_add_ok(bytes, CKPT_HEADER + 8, &bytes))
        return rm_err(RAMOLE_ERR_RANGE, "checkpoint %s: too large", path);
    uint8_t *buf = rm_malloc(bytes);
    if (!buf) return rm_err(RAMOLE_ERR_NOMEM, "checkpoint %s: out of memory (%zu bytes)", path, bytes);
    memset(buf, 0, CKPT_HEADER);
    memcpy(buf, RM_CKPT_MAGIC, 8);
    uint32_t ver = RM_CKPT_VERSION, kind = (uint32_t)rm_tm_f32_kind(t->tm);
    uint64_t n64 = n, lh = layout_hash(t), rng = t->rng, pos = t->data_pos;
    int64_t step = t->step;
    float of[8] = {t->opt.lr, t->opt.beta1, t->opt.beta2, t->opt.eps, t->opt.weight_decay, t->opt.min_lr_ratio,
                   t->opt.clip_norm, 0};
    int32_t oi[4] = {t->opt.warmup_steps, t->opt.total_steps, t->opt.accum, 0};
    memcpy(buf + 8, &ver, 4);
    memcpy(buf + 12, &kind, 4);
    memcpy(buf + 16, &n64, 8);
    memcpy(buf + 24, &lh, 8);
    memcpy(buf + 32, &step, 8);
    memcpy(buf + 40, &rng, 8);
    memcpy(buf + 48, &pos, 8);
    memcpy(buf + 56, of, sizeof of);
    memcpy(buf + 88, oi, sizeof oi);
    uint8_t *p = buf + CKPT_HEADER;
    memcpy(p, rm_tm_f32_params(t->tm, NULL), n * sizeof(float)), p += n * sizeof(float);
    memcpy(p, t->m, n * sizeof(float)), p += n * sizeof(float);
    memcpy(p, t->v, n * sizeof(float)), p += n * sizeof(float);
    uint64_t sum = fnv1a(FNV_INIT, buf, (size_t)(p - buf));
    memcpy(p, &sum, 8);
    rm_status st = rm_file_write_atomic(path, buf, bytes);
    rm_free(buf);
    return st;
}

rm_status rm_trainer_load(rm_trainer *t, const char *path) {
    char *data = NULL;
    size_t size = 0;
    RM_TRY(rm_file_read(path, &data, &size));
    rm_status st = RAMOLE_OK;
    const uint8_t *b = (const uint8_t *)data;
    uint32_t ver;
    uint64_t n64, lh, rng, pos, sum;
    int64_t step;
    size_t need;
    if (size < CKPT_HEADER + 8 || memcmp(b, RM_CKPT_MAGIC, 8) != 0) {
        st = rm_err(RAMOLE_ERR_FORMAT, "checkpoint %s: not a ramole training checkpoint", path);
        goto done;
    }
    memcpy(&ver, b + 8, 4);
    if (ver != RM_CKPT_VERSION) {
        st = rm_err(RAMOLE_ERR_UNSUPPORTED, "checkpoint %s: version %u (this build reads %u)", path, ver,
                    RM_CKPT_VERSION);
        goto done;
    }
    memcpy(&n64, b + 16, 8);
    memcpy(&lh, b + 24, 8);
    if (n64 != t->n || lh != layout_hash(t)) {
        st = rm_err(RAMOLE_ERR_MISMATCH, "checkpoint %s: made for another model or training kind (%llu parameters, "
                    "this one has %zu)", path, (unsigned long long)n64, t->n);
        goto done;
    }
    need = CKPT_HEADER + 3 * t->n * sizeof(float) + 8;
    if (size != need) {
        st = rm_err(RAMOLE_ERR_FORMAT, "checkpoint %s: %zu bytes, expected %zu (truncated?)", path, size, need);
        goto done;
    }
    memcpy(&sum, b + need - 8, 8);
    if (sum != fnv1a(FNV_INIT, b, need - 8)) {
        st = rm_err(RAMOLE_ERR_FORMAT, "checkpoint %s: checksum mismatch (corrupt file)", path);
        goto done;
    }
    memcpy(&step, b + 32, 8);
    memcpy(&rng, b + 40, 8);
    memcpy(&pos, b + 48, 8);
    const uint8_t *p = b + CKPT_HEADER;
    memcpy(rm_tm_f32_params(t->tm, NULL), p, t->n * sizeof(float)), p += t->n * sizeof(float);
    memcpy(t->m, p, t->n * sizeof(float)), p += t->n * sizeof(float);
    memcpy(t->v, p, t->n * sizeof(float));
    t->step = step;
    t->rng = rng;
    t->data_pos = pos;
done:
    rm_free(data);
    return st;
}
