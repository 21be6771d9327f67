/*
 * infonce.c — InfoNCE loss and gradient of the projection, and its AdamW
 * trainer (see infonce.h).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "retrieval/infonce.h"

#include "train/train.h"

/* ---- loss and gradient --------------------------------------------------------- */

/* Rows of Z[B][dim] -> E = Z/|Z|, norms in nrm. */
static void normalise_rows(const double *Z, int B, int dim, double *E, double *nrm) {
    for (int i = 0; i < B; i++) {
        const double *z = Z + (size_t)i * dim;
        double s = 0;
        for (int k = 0; k < dim; k++) s += z[k] * z[k];
        nrm[i] = sqrt(s);
        double inv = nrm[i] > 0 ? 1.0 / nrm[i] : 0.0;
        for (int k = 0; k < dim; k++) E[(size_t)i * dim + k] = z[k] * inv;
    }
}

/* dZ = (dE - E <E, dE>) / |Z|, in place over dE. */
static void normalise_back(double *dE, const double *E, const double *nrm, int B, int dim) {
    for (int i = 0; i < B; i++) {
        double *g = dE + (size_t)i * dim;
        const double *e = E + (size_t)i * dim;
        double dot = 0;
        for (int k = 0; k < dim; k++) dot += g[k] * e[k];
        double inv = nrm[i] > 0 ? 1.0 / nrm[i] : 0.0;
        for (int k = 0; k < dim; k++) g[k] = (g[k] - e[k] * dot) * inv;
    }
}

rm_status rm_infonce_loss(const double *P, int dim, int hidden, const double *A, const double *Pos,
                          const int32_t *label, int B, double tau, bool symmetric, double *loss, double *dP) {
    if (dim < 1 || hidden < 1 || B < 1)
        return rm_err(RAMOLE_ERR_INVALID, "InfoNCE: sizes dim %d, hidden %d, batch %d", dim, hidden, B);
    if (!(tau > 0) || !isfinite(tau)) return rm_err(RAMOLE_ERR_INVALID, "InfoNCE: temperature %g", tau);
    size_t bd = (size_t)B * (size_t)dim, bb = (size_t)B * (size_t)B;
    double *buf = rm_malloc((4 * bd + 2 * bb + 2 * (size_t)B) * sizeof *buf);
    if (!buf) return rm_err(RAMOLE_ERR_NOMEM, "InfoNCE: out of memory (batch %d, dim %d)", B, dim);
    double *Za = buf, *Zp = Za + bd, *Ea = Zp + bd, *Ep = Ea + bd, *S = Ep + bd, *G = S + bb;
    double *na = G + bb, *np = na + B;
    /* Z = X P^T */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, dim, hidden, 1.0, A, hidden, P, hidden, 0.0, Za, dim);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, dim, hidden, 1.0, Pos, hidden, P, hidden, 0.0, Zp, dim);
    normalise_rows(Za, B, dim, Ea, na);
    normalise_rows(Zp, B, dim, Ep, np);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, B, dim, 1.0 / tau, Ea, dim, Ep, dim, 0.0, S, B);
    double w_row = symmetric ? 0.5 : 1.0, w_col = symmetric ? 0.5 : 0.0;
    memset(G, 0, bb * sizeof *G);
    double total = 0;
    /* rows: softmax over j in V_i */
    for (int i = 0; i < B; i++) {
        double mx = -INFINITY;
        for (int j = 0; j < B; j++)
            if (j == i || label[j] != label[i]) mx = fmax(mx, S[(size_t)i * B + j]);
        double z = 0;
        for (int j = 0; j < B; j++)
            if (j == i || label[j] != label[i]) z += exp(S[(size_t)i * B + j] - mx);
        double lse = mx + log(z);
        total += w_row * (lse - S[(size_t)i * B + i]);
        for (int j = 0; j < B; j++)
            if (j == i || label[j] != label[i]) G[(size_t)i * B + j] += w_row * exp(S[(size_t)i * B + j] - lse) / B;
        G[(size_t)i * B + i] -= w_row / B;
    }
    /* columns: softmax over i in V_j */
    for (int j = 0; w_col > 0 && j < B; j++) {
        double mx = -INFINITY;
        for (int i = 0; i < B; i++)
            if (i == j || label[i] != label[j]) mx = fmax(mx, S[(size_t)i * B + j]);
        double z = 0;
        for (int i = 0; i < B; i++)
            if (i == j || label[i] != label[j]) z += exp(S[(size_t)i * B + j] - mx);
        double lse = mx + log(z);
        total += w_col * (lse - S[(size_t)j * B + j]);
        for (int i = 0; i < B; i++)
            if (i == j || label[i] != label[j]) G[(size_t)i * B + j] += w_col * exp(S[(size_t)i * B + j] - lse) / B;
        G[(size_t)j * B + j] -= w_col / B;
    }
    *loss = total / B;
    if (dP) {
        /* dEa = G Ep / tau, dEp = G^T Ea / tau (into Za, Zp: no longer needed) */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, dim, B, 1.0 / tau, G, B, Ep, dim, 0.0, Za, dim);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, B, dim, B, 1.0 / tau, G, B, Ea, dim, 0.0, Zp, dim);
        normalise_back(Za, Ea, na, B, dim);
        normalise_back(Zp, Ep, np, B, dim);
        /* dP = dZa^T A + dZp^T Pos */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dim, hidden, B, 1.0, Za, dim, A, hidden, 0.0, dP, hidden);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dim, hidden, B, 1.0, Zp, dim, Pos, hidden, 1.0, dP, hidden);
    }
    rm_free(buf);
    return RAMOLE_OK;
}

/* ---- trainer -------------------------------------------------------------------- */

void rm_infonce_params_default(rm_infonce_params *p) {
    memset(p, 0, sizeof *p);
    p->steps = 300;
    p->batch = 32;
    p->lr = 2e-3;
    p->weight_decay = 10;
    p->beta1 = 0.9, p->beta2 = 0.999, p->eps = 1e-8;
    p->warmup = -1;
    p->min_lr_ratio = 0.1;
    p->tau = 0.05;
    p->symmetric = true;
    p->seed = 1;
}

struct rm_infonce_trainer {
    rm_infonce_params p;
    int n, hidden, dim, n_tasks;
    double *H;            /* [n][hidden] unit rows */
    int32_t *task;        /* [n] */
    int *rows, *first;    /* examples grouped by task: rows[first[t]..first[t+1]) */
    double *P, *P0, *dP, *m, *v;      /* P0: the initial P, where weight decay pulls */
    double *A, *Pos;      /* [batch][hidden] */
    int32_t *label;       /* [batch] */
    int step;
    uint64_t rng;
};

void rm_infonce_trainer_free(rm_infonce_trainer *t) {
    if (!t) return;
    rm_free(t->H);
    rm_free(t->task);
    rm_free(t->rows);
    rm_free(t->first);
    rm_free(t->P);
    rm_free(t->P0);
    rm_free(t->dP);
    rm_free(t->m);
    rm_free(t->v);
    rm_free(t->A);
    rm_free(t->Pos);
    rm_free(t->label);
    rm_free(t);
}

int rm_infonce_trainer_dim(const rm_infonce_trainer *t) { return t->dim; }

void rm_infonce_trainer_weights(const rm_infonce_trainer *t, float *w) {
    size_t n = (size_t)t->dim * (size_t)t->hidden;
    for (size_t i = 0; i < n; i++) w[i] = (float)t->P[i];
}

/* A standard normal draw (Box-Muller on splitmix64). */
static double gauss(uint64_t *rng) {
    double u1 = rm_rng_uniform(rng), u2 = rm_rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

rm_status rm_infonce_trainer_new(const float *H, const int32_t *task, const int *rows, int n, int hidden, int n_tasks,
                                 const rm_infonce_params *pp, rm_infonce_trainer **out) {
    *out = NULL;
    rm_infonce_params p = *pp;
    if (p.dim <= 0) p.dim = hidden;
    if (n < 1 || hidden < 1 || n_tasks < 1 || p.batch < 1 || p.steps < 1 || p.dim > 65536)
        return rm_err(RAMOLE_ERR_RANGE, "InfoNCE trainer: %d examples, hidden %d, %d tasks, batch %d, %d steps, dim %d",
                      n, hidden, n_tasks, p.batch, p.steps, p.dim);
    if (!(p.tau > 0) || !(p.lr >= 0)) return rm_err(RAMOLE_ERR_INVALID, "InfoNCE trainer: temperature %g, lr %g", p.tau, p.lr);
    if (p.warmup < 0) p.warmup = p.steps / 20;
    rm_infonce_trainer *t = rm_calloc(1, sizeof *t);
    if (!t) return rm_err(RAMOLE_ERR_NOMEM, "InfoNCE trainer: out of memory");
    t->p = p, t->n = n, t->hidden = hidden, t->dim = p.dim, t->n_tasks = n_tasks;
    t->rng = p.seed ^ 0x5eed1e55c0ffee00ull;
    size_t nh = (size_t)n * (size_t)hidden, ph = (size_t)p.dim * (size_t)hidden, bh = (size_t)p.batch * (size_t)hidden;
    t->H = rm_malloc(nh * sizeof *t->H);
    t->task = rm_malloc((size_t)n * sizeof *t->task);
    t->rows = rm_malloc((size_t)n * sizeof *t->rows);
    t->first = rm_calloc((size_t)n_tasks + 1, sizeof *t->first);
    t->P = rm_calloc(ph, sizeof *t->P);
    t->P0 = rm_malloc(ph * sizeof *t->P0);
    t->dP = rm_malloc(ph * sizeof *t->dP);
    t->m = rm_calloc(ph, sizeof *t->m);
    t->v = rm_calloc(ph, sizeof *t->v);
    t->A = rm_malloc(bh * sizeof *t->A);
    t->Pos = rm_malloc(bh * sizeof *t->Pos);
    t->label = rm_malloc((size_t)p.batch * sizeof *t->label);
    if (!t->H || !t->task || !t->rows || !t->first || !t->P || !t->P0 || !t->dP || !t->m || !t->v || !t->A ||
        !t->Pos || !t->label) {
        rm_infonce_trainer_free(t);
        return rm_err(RAMOLE_ERR_NOMEM, "InfoNCE trainer: out of memory (%d x %d projection)", p.dim, hidden);
    }
    rm_status st = RAMOLE_OK;
    for (int i = 0; i < n; i++) {
        int src = rows ? rows[i] : i;
        if (task[src] < 0 || task[src] >= n_tasks) {
            st = rm_err(RAMOLE_ERR_RANGE, "InfoNCE trainer: example %d has task id %d (0..%d)", src, task[src],
                        n_tasks - 1);
            goto fail;
        }
        t->task[i] = task[src];
        t->first[task[src] + 1]++;
        const float *h = H + (size_t)src * hidden;
        double s = 0;
        for (int k = 0; k < hidden; k++) s += (double)h[k] * h[k];
        if (!(s > 0) || !isfinite(s)) {
            st = rm_err(RAMOLE_ERR_INVALID, "InfoNCE trainer: example %d has a zero or non-finite pooled state", i);
            goto fail;
        }
        double inv = 1.0 / sqrt(s);
        for (int k = 0; k < hidden; k++) t->H[(size_t)i * hidden + k] = h[k] * inv;
    }
    int with = 0;
    for (int k = 0; k < n_tasks; k++) {
        int c = t->first[k + 1];
        if (c == 1) {
            st = rm_err(RAMOLE_ERR_INVALID, "InfoNCE trainer: task %d has one example (a positive needs two)", k);
            goto fail;
        }
        with += c > 0;
        t->first[k + 1] += t->first[k];
    }
    if (with < 2) {
        st = rm_err(RAMOLE_ERR_INVALID, "InfoNCE trainer: %d task(s) with examples; negatives need at least 2", with);
        goto fail;
    }
    {
        int *fill = rm_malloc((size_t)n_tasks * sizeof *fill);
        if (!fill) {
            st = rm_err(RAMOLE_ERR_NOMEM, "InfoNCE trainer: out of memory");
            goto fail;
        }
        memcpy(fill, t->first, (size_t)n_tasks * sizeof *fill);
        for (int i = 0; i < n; i++) t->rows[fill[t->task[i]]++] = i;
        rm_free(fill);
    }
    if (p.dim == hidden)
        for (int k = 0; k < hidden; k++) t->P[(size_t)k * hidden + k] = 1.0;
    else {
        uint64_t r = p.seed ^ 0x9a0f1e5d3c7b2a14ull;
        double sd = 1.0 / sqrt((double)hidden);
        for (size_t i = 0; i < ph; i++) t->P[i] = sd * gauss(&r);
    }
    memcpy(t->P0, t->P, ph * sizeof *t->P0);
    *out = t;
    return RAMOLE_OK;
fail:
    rm_infonce_trainer_free(t);
    return st;
}

/* The trainers' schedule (warm-up, then cosine to lr * min_lr_ratio); step 1-based. */
static double lr_at(const rm_infonce_params *p, int step) {
    rm_adamw_params s = {.lr = (float)p->lr, .warmup_steps = p->warmup, .total_steps = p->steps,
                         .min_lr_ratio = (float)p->min_lr_ratio};
    return rm_lr_at(&s, step);
}

rm_status rm_infonce_trainer_step(rm_infonce_trainer *t, rm_infonce_stats *st) {
    int B = t->p.batch, hd = t->hidden;
    uint64_t rng = t->rng;
    for (int b = 0; b < B; b++) {
        int a = (int)(rm_rng_next(&rng) % (uint64_t)t->n), k = t->task[a];
        int lo = t->first[k], cnt = t->first[k + 1] - lo;
        int pick = (int)(rm_rng_next(&rng) % (uint64_t)(cnt - 1)); /* among the others */
        int pos = t->rows[lo + pick];
        if (pos == a) pos = t->rows[lo + cnt - 1];
        memcpy(t->A + (size_t)b * hd, t->H + (size_t)a * hd, (size_t)hd * sizeof(double));
        memcpy(t->Pos + (size_t)b * hd, t->H + (size_t)pos * hd, (size_t)hd * sizeof(double));
        t->label[b] = k;
    }
    double loss;
    RM_TRY(rm_infonce_loss(t->P, t->dim, hd, t->A, t->Pos, t->label, B, t->p.tau, t->p.symmetric, &loss, t->dP));
    size_t np = (size_t)t->dim * (size_t)hd;
    double gn = 0;
    for (size_t i = 0; i < np; i++) gn += t->dP[i] * t->dP[i];
    if (!isfinite(loss) || !isfinite(gn))
        return rm_err(RAMOLE_ERR_RANGE, "InfoNCE trainer: the loss or gradient is not finite at step %d", t->step + 1);
    int step = t->step + 1;
    double lr = lr_at(&t->p, step), b1 = t->p.beta1, b2 = t->p.beta2;
    double c1 = 1.0 - pow(b1, step), c2 = 1.0 - pow(b2, step);
    for (size_t i = 0; i < np; i++) {
        double g = t->dP[i];
        t->m[i] = b1 * t->m[i] + (1 - b1) * g;
        t->v[i] = b2 * t->v[i] + (1 - b2) * g * g;
        double upd = (t->m[i] / c1) / (sqrt(t->v[i] / c2) + t->p.eps);
        t->P[i] -= lr * (upd + t->p.weight_decay * (t->P[i] - t->P0[i]));
    }
    t->step = step;
    t->rng = rng;
    if (st) {
        st->loss = loss;
        st->grad_norm = sqrt(gn);
        st->lr = lr;
        st->step = step;
    }
    return RAMOLE_OK;
}
