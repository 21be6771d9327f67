/*
 * train_impl.h — the training model's forward and backward, written once
 * over a scalar type. Included by train_f32.c and train_f64.c, which define:
 *   REAL      float or double
 *   TM_TYPE   rm_tm_f32 / rm_tm_f64 (the struct's name)
 *   TM_(x)    rm_tm_f32_##x / rm_tm_f64_##x (public function names)
 *   GEMM      cblas_sgemm / cblas_dgemm
 *   REXP      expf / exp
 * Everything else here is static, so the two copies do not collide.
 *
 * Layout: rows are positions, row i = b*T + t of the batch (N = B*T rows).
 * Linear modules follow HF: W [dout][din], Y [N][dout] = X [N][din] W^T.
 * Backward of one module: dW += dY^T X (FULL only: frozen weights get no
 * product), dX = dY W; LoRA: U = X A^T (kept from the forward, one gemm per
 * group of modules that share X: q,k,v / o / gate,up / down),
 * dB += s dY^T U, dU = s dY B, dA += dU^T X, dX += dU_group A_group (one
 * gemm per group); with a frozen embedding (LoRA, router) the first
 * layer's q,k,v input gradient is skipped. The router is gemms per (sequence,
 * expert slot) plus a per-token softmax (see the router section).
 * The loss and dlogits come from one softmax pass per row in the backward.
 *
 * Threads: mm() splits a gemm by rows of its output over the pool (by
 * columns when it has under 64 rows and many columns);
 * attention items (sequence, head) run their own small gemms on a worker;
 * OpenBLAS itself is single-threaded (openblas_set_num_threads(1), as in
 * the kernels module), so nothing is oversubscribed.
 *
 * Numbers follow the inference forward (src/model/forward.c): RoPE angles
 * are (float)pos * inv_freq[i] in float with cos/sin in double (as
 * rm_rope), attention scale 1/sqrt(head_dim), bias before RoPE.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/train.h"

void openblas_set_num_threads(int num_threads);

/* A LoRA module (trainable adapter, frozen expert or router). */
typedef struct {
    int rank;     /* 0: absent */
    REAL scale;
    REAL *A, *B;  /* [rank][din], [dout][rank] */
    REAL *gA, *gB; /* gradients (trainable modules only), same shapes */
} tm_mod;

typedef struct {
    REAL *attn_norm;              /* [d] */
    REAL *w[RM_TARGET_COUNT];     /* q [qd][d], k,v [kvd][d], o [d][qd], gate,up [f][d], down [d][f] */
    REAL *bq, *bk, *bv;           /* [qd], [kvd], [kvd] (qkv_bias) */
    REAL *ffn_norm;               /* [d] */
} tm_layer;

typedef struct {
    REAL *embd;      /* [V][d] */
    REAL *out_norm;  /* [d] */
    REAL *out;       /* [V][d]; = embd when tied */
    tm_layer *L;     /* [n_layers] */
} tm_views;

struct TM_TYPE {
    rm_model_config cfg;
    rm_train_kind kind;
    int max_b, max_t, nth;
    int64_t d, qd, kvd, f, V;
    int L_;                   /* layers */
    rm_pool *pool;
    /* base weights (all kinds) and their gradients (FULL) */
    size_t n_base;
    REAL *w, *gw;             /* [n_base] */
    tm_views W, G;            /* views into w and gw (G all NULL unless FULL) */
    /* adapters */
    size_t n_ad;              /* trainable adapter parameters (LORA / ROUTER) */
    REAL *aw, *gaw;           /* [n_ad] */
    tm_mod *ad;               /* [L*COUNT] the trainable adapter or the router */
    int n_pool;
    REAL *ew;                 /* frozen experts' parameters */
    tm_mod *ex;               /* [n_pool][L*COUNT] */
    int max_rank;             /* largest rank of any adapter module */
    /* trainable table */
    rm_train_tensor *tens;
    int n_tens;
    REAL *params, *grads;     /* = w/gw (FULL) or aw/gaw */
    size_t n_params;
    /* RoPE */
    REAL *rcos, *rsin;        /* [max_t][half] */
    int half;
    /* activations, N = max_b*max_t rows */
    REAL *x;                  /* [L+1][N][d] residual stream: input of layer l, x[L] final */
    REAL *xn1, *xn2;          /* [L][N][d] normed inputs of attention / MLP */
    REAL *rs1, *rs2;          /* [L][N] 1/rms */
    REAL *q;                  /* [L][N][qd] after bias + RoPE */
    REAL *k, *v;              /* [L][N][kvd] after bias (+ RoPE for k) */
    REAL *P;                  /* [L][B][H][T][T] attention probabilities */
    REAL *ao;                 /* [L][N][qd] attention output */
    REAL *xm;                 /* [L][N][d] after the attention residual */
    REAL *g, *u, *h;          /* [L][N][f] gate, up pre-activations, SwiGLU output */
    REAL *sg;                 /* [L][N][f] sigmoid(gate), kept for the SwiGLU backward */
    REAL *xf;                 /* [N][d] final normed */
    REAL *rsf;                /* [N] */
    REAL *xg;                 /* [N][d] gathered masked-in rows of xf */
    REAL *logits;             /* [N][V] of masked-in rows (dlogits in place) */
    int32_t *rows;            /* [N] masked-in row indices */
    double *row_loss;         /* [N] */
    int n_rows;
    /* backward scratch */
    REAL *dx, *dxn;           /* [N][d] */
    REAL *dq, *dk, *dv, *dao; /* [N][qd], [N][kvd] x2, [N][qd] */
    REAL *dg, *du, *dh;       /* [N][f] */
    REAL *tmp;                /* [N][max(d,qd,f)] projection outputs */
    REAL *lu, *ldu;           /* ROUTER: [N][max_rank] one sequence's U, dU */
    /* LORA: the U = X A^T of every module, kept from the forward. A layer's
     * modules sit side by side in a row of lw columns (q k v o gate up down,
     * rank columns each), so that the modules that read the same input
     * (q,k,v; gate,up) form one contiguous block computed by one gemm against
     * their A's stacked in lag. */
    int lw;                   /* LORA: widest layer (sum of its ranks) */
    int *loff;                /* LORA: [L*COUNT] column of a module in its layer's row */
    int64_t *laoff;           /* LORA: [L*COUNT] offset of a module's A in lag */
    REAL *lus;                /* LORA: [L][N][lw] U */
    REAL *ldus;               /* LORA: [N][lw] dU of the layer being differentiated */
    REAL *lag;                /* LORA: stacked A's, per layer in module order (copied each forward) */
    int ks;                   /* ROUTER: expert slots per token (max experts per sequence) */
    REAL gscale;              /* ROUTER: scores are gscale <q, key> / sqrt(rr) (rm_train_params.gate_scale) */
    REAL *rv, *rdv;           /* ROUTER: [N][ks][dmax] expert outputs v and their gradients */
    REAL *rk, *rdk;           /* ROUTER: [N][ks][max_rank] keys B_r^T v and their gradients */
    REAL *rq, *rdq;           /* ROUTER: [N][max_rank] queries A_r x and their gradients */
    REAL *rg;                 /* ROUTER: [N][ks] gates (the forward's first pass: raw scores) */
    REAL *rds;                /* ROUTER: [N][ks] the scores' gradients */
    bool gpool;               /* ROUTER: scores pooled over the prompt (RM_GATE_POOL_PROMPT) */
    REAL rprior;              /* ROUTER: lambda of the retrieval prior (rm_train_params.retrieval_prior) */
    REAL *exb;                /* ROUTER: [max_b][RM_TRAIN_MAX_K] lambda r_e, added to expert e's scores */
    int32_t *plen;            /* ROUTER: [max_b] each sequence's prompt length, for gpool */
    /* ROUTER gate loss (rm_train_batch.gate_loss) */
    int n_rmod;               /* ROUTER: modules the router adapts */
    int32_t *gbest;           /* ROUTER: [max_b] the slot of each sequence's best expert (the gates' target) */
    double *gce;              /* ROUTER: [N] gate cross-entropy per row, summed over modules */
    int32_t *gend;            /* ROUTER: [max_b] rows t < gend[s] of sequence s are in the gate loss */
    double *gsl;              /* ROUTER: [max_b][RM_TRAIN_MAX_K] single-expert losses (expert_losses) */
    int32_t *sxl, *sxn;       /* ROUTER: the batch's expert lists (copy), and all-ones counts, for those passes */
    bool gate_on;             /* this forward adds the gate term */
    int g_rows;               /* rows in the gate loss */
    REAL gcoef;               /* backward: grad_scale * gate_loss / (g_rows * n_rmod); 0: none */
    double gate_ce;           /* the last forward's G */
    REAL *ascr;               /* per thread: [nth][max_t][max_t] attention dS */
    int64_t dmax;
    /* per forward */
    const rm_train_batch *b;
    int B, T;
    int32_t *exl;             /* [max_b][RM_TRAIN_MAX_K] effective expert lists */
    int32_t *exn;             /* [max_b] */
    rm_train_profile prof;    /* time counters (TM_(profile)) */
};

/* ---- small helpers ------------------------------------------------------------ */

static void tm_target_dims(const TM_TYPE *tm, int t, int64_t *din, int64_t *dout) {
    rm_target_dims(&tm->cfg, (rm_target)t, din, dout);
}

typedef void (*pfor_fn)(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith);
typedef struct {
    TM_TYPE *tm;
    pfor_fn fn;
    void *arg;
    int64_t n;
} pfor_job;

static void pfor_run(void *a, int ith, int nth) {
    pfor_job *j = a;
    int64_t lo, hi;
    rm_split(j->n, ith, nth, &lo, &hi);
    if (lo < hi) j->fn(j->tm, j->arg, lo, hi, ith);
}

/* Run fn over [0, n) split in contiguous chunks over the pool. */
static void pfor(TM_TYPE *tm, int64_t n, pfor_fn fn, void *arg) {
    pfor_job j = {tm, fn, arg, n};
    rm_pool_run(n > 1 ? tm->pool : NULL, pfor_run, &j);
}

/* C [M][N] = alpha op(A) op(B) + beta C, row-major, split by rows of C. */
typedef struct {
    bool ta, tb;
    int M, N, K;
    REAL alpha, beta;
    const REAL *A, *B;
    REAL *C;
    int lda, ldb, ldc;
} mm_job;

static void mm_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    mm_job *j = arg;
    const REAL *A = j->ta ? j->A + lo : j->A + lo * j->lda;
    GEMM(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, (int)(hi - lo), j->N,
         j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + lo * j->ldc, j->ldc);
}

/* The same split by columns of C (for products with few rows and many
 * columns, such as LoRA's dA = dU^T X: r rows). */
static void mm_cols(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    mm_job *j = arg;
    const REAL *B = j->tb ? j->B + lo * j->ldb : j->B + lo;
    GEMM(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, j->M, (int)(hi - lo),
         j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + lo, j->ldc);
}

static void mm(TM_TYPE *tm, bool ta, bool tb, int M, int N, int K, REAL alpha, const REAL *A, int lda,
               const REAL *B, int ldb, REAL beta, REAL *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty product: C = beta C */
        for (int i = 0; i < M; i++)
            for (int c = 0; c < N; c++) C[(size_t)i * ldc + c] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + c];
        return;
    }
    mm_job j = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc};
    double work = (double)M * N * K, t0 = rm_time_now();
    if (work < 32768.0 || tm->nth == 1) mm_rows(tm, &j, 0, M, 0);
    else if (M < 64 && N >= 64 * tm->nth) pfor(tm, N, mm_cols, &j);
    else if (M < 2 * tm->nth) mm_rows(tm, &j, 0, M, 0);
    else pfor(tm, M, mm_rows, &j);
    tm->prof.gemm_s += rm_time_now() - t0;
    tm->prof.gemm_flop += 2 * work;
    tm->prof.n_gemm++;
}

/* ---- creation ------------------------------------------------------------------ */

static bool add_tensor(TM_TYPE *tm, const char *name, int64_t rows, int64_t cols, size_t off, bool decay) {
    rm_train_tensor *t = &tm->tens[tm->n_tens++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows, t->cols = cols, t->offset = off, t->decay = decay;
    return true;
}

static const char *const tm_hf_module[RM_TARGET_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* Lay out the base views over `base` (NULL: count only); returns the size. */
static size_t base_layout(TM_TYPE *tm, REAL *base, tm_views *vw, bool table) {
    size_t off = 0;
    char nm[96];
    int64_t d = tm->d, V = tm->V;
#define TAKE(ptr, rows, cols, name, decay)                                    \
    do {                                                                      \
        if (base) (ptr) = base + off;                                         \
        if (table) add_tensor(tm, name, rows, cols, off, decay);              \
        off += (size_t)(rows) * (size_t)(cols);                               \
    } while (0)
    TAKE(vw->embd, V, d, "model.embed_tokens.weight", true);
    for (int l = 0; l < tm->L_; l++) {
        tm_layer *L = &vw->L[l];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        TAKE(L->attn_norm, 1, d, nm, false);
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            int64_t din, dout;
            tm_target_dims(tm, t, &din, &dout);
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, tm_hf_module[t]);
            TAKE(L->w[t], dout, din, nm, true);
        }
        if (tm->cfg.qkv_bias) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.bias", l);
            TAKE(L->bq, 1, tm->qd, nm, false);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.bias", l);
            TAKE(L->bk, 1, tm->kvd, nm, false);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.v_proj.bias", l);
            TAKE(L->bv, 1, tm->kvd, nm, false);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        TAKE(L->ffn_norm, 1, d, nm, false);
    }
    TAKE(vw->out_norm, 1, d, "model.norm.weight", false);
    if (tm->cfg.tied_embeddings) {
        if (base) vw->out = vw->embd;
    } else {
        TAKE(vw->out, V, d, "lm_head.weight", true);
    }
#undef TAKE
    return off;
}

static void cvt_to_real(REAL *dst, const void *src, rm_type type, int64_t n, float *tmp) {
    rm_convert(RM_TYPE_F32, tmp, type, src, n);
    for (int64_t i = 0; i < n; i++) dst[i] = (REAL)tmp[i];
}

static size_t mods_size(const TM_TYPE *tm, const rm_adapter *a) {
    size_t n = 0;
    for (int l = 0; l < tm->L_; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *md = rm_adapter_mod(a, l, (rm_target)t);
            int64_t din, dout;
            tm_target_dims(tm, t, &din, &dout);
            n += (size_t)md->rank * (size_t)(din + dout);
        }
    return n;
}

/* Copy adapter a into modules mods over storage w (grads over g if not NULL);
 * names go to the table when table is set. */
static void mods_copy(TM_TYPE *tm, const rm_adapter *a, tm_mod *mods, REAL *w, REAL *g, bool table) {
    size_t off = 0;
    char nm[96];
    for (int l = 0; l < tm->L_; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_lora_module *md = rm_adapter_mod(a, l, (rm_target)t);
            tm_mod *m = &mods[l * RM_TARGET_COUNT + t];
            int64_t din, dout;
            tm_target_dims(tm, t, &din, &dout);
            memset(m, 0, sizeof *m);
            if (!md->rank) continue;
            m->rank = md->rank;
            m->scale = (REAL)md->scale;
            if (md->rank > tm->max_rank) tm->max_rank = md->rank;
            size_t na = (size_t)md->rank * (size_t)din, nb = (size_t)dout * (size_t)md->rank;
            m->A = w + off, m->B = w + off + na;
            if (g) m->gA = g + off, m->gB = g + off + na;
            for (size_t i = 0; i < na; i++) m->A[i] = (REAL)rm_lora_elem(md, md->A, i);
            for (size_t i = 0; i < nb; i++) m->B[i] = (REAL)rm_lora_elem(md, md->B, i);
            if (table) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s.lora_A.weight", l, tm_hf_module[t]);
                add_tensor(tm, nm, md->rank, din, off, true);
                snprintf(nm, sizeof nm, "model.layers.%d.%s.lora_B.weight", l, tm_hf_module[t]);
                add_tensor(tm, nm, dout, md->rank, off + na, true);
            }
            off += na + nb;
        }
}

static void *tm_alloc(size_t n_elems, size_t elem, bool *ok) {
    size_t bytes;
    if (!rm_mul_ok(n_elems ? n_elems : 1, elem, &bytes)) {
        *ok = false;
        return NULL;
    }
    void *p = rm_calloc(1, bytes);
    if (!p) *ok = false;
    return p;
}

void TM_(free)(TM_TYPE *tm) {
    if (!tm) return;
    rm_pool_free(tm->pool);
    void *bufs[] = {tm->w,   tm->gw,  tm->aw,  tm->gaw, tm->ad,   tm->ew,  tm->ex,       tm->tens,
                    tm->rcos, tm->rsin, tm->x, tm->xn1, tm->xn2, tm->rs1, tm->rs2, tm->q,
                    tm->k,   tm->v,   tm->P,   tm->ao,  tm->xm,   tm->g,   tm->u,        tm->h,
                    tm->xf,  tm->rsf, tm->xg,  tm->logits, tm->rows, tm->row_loss, tm->dx, tm->dxn,
                    tm->dq,  tm->dk,  tm->dv,  tm->dao, tm->dg,   tm->du,  tm->dh,       tm->tmp,
                    tm->lu,  tm->ldu, tm->rv,  tm->rdv, tm->rk, tm->rdk, tm->rq, tm->rdq, tm->rg, tm->rds, tm->plen, tm->exb, tm->ascr, tm->exl, tm->exn,      tm->W.L,
                    tm->gbest, tm->gce, tm->gend, tm->gsl, tm->sxl, tm->sxn,
                    tm->sg,  tm->loff, tm->laoff, tm->lus, tm->ldus, tm->lag,
                    tm->G.L};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rm_free(bufs[i]);
    rm_free(tm);
}

static rm_status check_params(const rm_model_config *c, const rm_train_params *p) {
    if ((int)p->kind < 0 || p->kind >= RM_TRAIN_KIND_COUNT)
        return rm_err(RAMOLE_ERR_INVALID, "training: unknown kind %d", (int)p->kind);
    if (p->max_batch <= 0 || p->max_seq <= 0)
        return rm_err(RAMOLE_ERR_INVALID, "training: max_batch and max_seq must be positive (got %d, %d)",
                      p->max_batch, p->max_seq);
    if (c->rope.n_rot % 2 || c->rope.n_rot > c->head_dim || c->rope.n_rot <= 0)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "training: rotary dims %d with head_dim %d", c->rope.n_rot,
                      c->head_dim);
    uint64_t fp = rm_model_config_fingerprint(c);
    if (p->kind == RM_TRAIN_LORA) {
        if (!p->lora) return rm_err(RAMOLE_ERR_INVALID, "LoRA training: no adapter given");
        if (p->lora->n_layers != c->n_layers || p->lora->base_fingerprint != fp)
            return rm_err(RAMOLE_ERR_MISMATCH, "LoRA training: adapter %s was made for another base model",
                          p->lora->name ? p->lora->name : "?");
    }
    if (p->kind == RM_TRAIN_ROUTER) {
        if (!p->router || !p->experts || p->n_experts <= 0)
            return rm_err(RAMOLE_ERR_INVALID, "router training: router and at least one expert are required");
        if (!(p->gate_scale >= 0 && p->gate_scale <= 1e6))
            return rm_err(RAMOLE_ERR_INVALID, "router training: gate scale %g (must be 0 to 1e6; 0: 1)", p->gate_scale);
        if (p->gate_pool != RM_GATE_POOL_TOKEN && p->gate_pool != RM_GATE_POOL_PROMPT)
            return rm_err(RAMOLE_ERR_INVALID, "router training: unknown gate pooling %d", (int)p->gate_pool);
        if (!rm_retrieval_prior_ok(p->retrieval_prior))
            return rm_err(RAMOLE_ERR_INVALID, "router training: retrieval prior %g (must be 0 to %g)",
                          p->retrieval_prior, RM_RETRIEVAL_PRIOR_MAX);
        const rm_adapter *all[RM_TRAIN_MAX_POOL + 1];
        if (p->n_experts > RM_TRAIN_MAX_POOL)
            return rm_err(RAMOLE_ERR_INVALID, "router training: %d experts in the pool (at most %d)", p->n_experts,
                          RM_TRAIN_MAX_POOL);
        for (int j = 0; j < p->n_experts; j++) all[j] = p->experts[j];
        all[p->n_experts] = p->router;
        for (int j = 0; j <= p->n_experts; j++) {
            if (!all[j]) return rm_err(RAMOLE_ERR_INVALID, "router training: expert %d is NULL", j);
            if (all[j]->n_layers != c->n_layers || all[j]->base_fingerprint != fp)
                return rm_err(RAMOLE_ERR_MISMATCH, "router training: adapter %s was made for another base model",
                              all[j]->name ? all[j]->name : "?");
        }
        for (int l = 0; l < c->n_layers; l++)
            for (int t = 0; t < RM_TARGET_COUNT; t++) {
                if (rm_adapter_mod(p->router, l, (rm_target)t)->rank) continue;
                for (int j = 0; j < p->n_experts; j++)
                    if (rm_adapter_mod(p->experts[j], l, (rm_target)t)->rank)
                        return rm_err(RAMOLE_ERR_INVALID,
                                      "router training: the router does not adapt layer %d %s, which expert %s adapts",
                                      l, rm_target_hf_name((rm_target)t),
                                      p->experts[j]->name ? p->experts[j]->name : "?");
            }
    }
    return RAMOLE_OK;
}

/*
 * A training model of configuration c for p (checked), every buffer
 * reserved and the base parameters zero: TM_(new) converts a model's
 * weights into them, TM_(new_random) draws them. rope_freq_factors: the
 * base's per-pair RoPE divisors, or NULL.
 */
static rm_status tm_create(const rm_model_config *c, const float *rope_freq_factors, const rm_train_params *p,
                           TM_TYPE **out) {
    *out = NULL;
    TM_TYPE *tm = rm_calloc(1, sizeof *tm);
    if (!tm) return rm_err(RAMOLE_ERR_NOMEM, "training model: out of memory");
    tm->cfg = *c;
    tm->kind = p->kind;
    tm->max_b = p->max_batch, tm->max_t = p->max_seq;
    tm->nth = p->n_threads > 0 ? p->n_threads : rm_cpu_count();
    tm->d = c->hidden, tm->qd = (int64_t)c->n_heads * c->head_dim, tm->kvd = (int64_t)c->n_kv_heads * c->head_dim;
    tm->f = c->ffn, tm->V = c->vocab_size, tm->L_ = c->n_layers;
    tm->half = c->rope.n_rot / 2;
    tm->dmax = tm->d > tm->f ? tm->d : tm->f;
    if (tm->qd > tm->dmax) tm->dmax = tm->qd;
    openblas_set_num_threads(1); /* our pool splits the gemms */
    rm_status st = rm_pool_new(tm->nth, &tm->pool);
    if (st != RAMOLE_OK) {
        rm_free(tm);
        return st;
    }
    bool ok = true;
    tm->W.L = tm_alloc((size_t)tm->L_, sizeof(tm_layer), &ok);
    tm->G.L = tm_alloc((size_t)tm->L_, sizeof(tm_layer), &ok);
    int n_mods = tm->L_ * RM_TARGET_COUNT;
    size_t max_tens = (size_t)tm->L_ * 16 + 8;
    if (p->kind != RM_TRAIN_FULL) max_tens = (size_t)n_mods * 2 + 1;
    tm->tens = tm_alloc(max_tens, sizeof(rm_train_tensor), &ok);
    if (!ok) goto nomem;
    tm->n_base = base_layout(tm, NULL, &tm->W, false);
    tm->w = tm_alloc(tm->n_base, sizeof(REAL), &ok);
    if (p->kind == RM_TRAIN_FULL) tm->gw = tm_alloc(tm->n_base, sizeof(REAL), &ok);
    if (!ok) goto nomem;
    base_layout(tm, tm->w, &tm->W, p->kind == RM_TRAIN_FULL);
    if (tm->gw) {
        tm_views gv = {0};
        gv.L = tm->G.L;
        base_layout(tm, tm->gw, &gv, false);
        tm->G = gv;
    }
    /* adapters */
    if (p->kind == RM_TRAIN_LORA || p->kind == RM_TRAIN_ROUTER) {
        const rm_adapter *a = p->kind == RM_TRAIN_LORA ? p->lora : p->router;
        tm->n_ad = mods_size(tm, a);
        tm->aw = tm_alloc(tm->n_ad, sizeof(REAL), &ok);
        tm->gaw = tm_alloc(tm->n_ad, sizeof(REAL), &ok);
        tm->ad = tm_alloc((size_t)n_mods, sizeof(tm_mod), &ok);
        if (!ok) goto nomem;
        mods_copy(tm, a, tm->ad, tm->aw, tm->gaw, true);
        tm->params = tm->aw, tm->grads = tm->gaw, tm->n_params = tm->n_ad;
    } else {
        tm->params = tm->w, tm->grads = tm->gw, tm->n_params = tm->n_base;
    }
    if (p->kind == RM_TRAIN_ROUTER) {
        size_t tot = 0;
        tm->n_pool = p->n_experts;
        tm->gscale = p->gate_scale > 0 ? (REAL)p->gate_scale : 1;
        tm->gpool = p->gate_pool == RM_GATE_POOL_PROMPT;
        tm->rprior = (REAL)(float)p->retrieval_prior; /* the float the router is saved with */
        tm->ks = p->max_k > 0 ? p->max_k : p->n_experts;
        if (tm->ks > RM_TRAIN_MAX_K) tm->ks = RM_TRAIN_MAX_K;
        for (int j = 0; j < p->n_experts; j++) tot += mods_size(tm, p->experts[j]);
        tm->ew = tm_alloc(tot, sizeof(REAL), &ok);
        tm->ex = tm_alloc((size_t)n_mods * (size_t)p->n_experts, sizeof(tm_mod), &ok);
        if (!ok) goto nomem;
        size_t off = 0;
        for (int j = 0; j < p->n_experts; j++) {
            mods_copy(tm, p->experts[j], tm->ex + (size_t)j * n_mods, tm->ew + off, NULL, false);
            off += mods_size(tm, p->experts[j]);
        }
    }
    /* RoPE tables as rm_rope computes them */
    {
        float invf[512];
        if (tm->half > 512) {
            TM_(free)(tm);
            return rm_err(RAMOLE_ERR_UNSUPPORTED, "training: rotary dimension too large");
        }
        rm_rope_inv_freq(&c->rope, invf);
        if (rope_freq_factors)
            for (int i = 0; i < tm->half; i++) invf[i] /= rope_freq_factors[i];
        tm->rcos = tm_alloc((size_t)tm->max_t * tm->half, sizeof(REAL), &ok);
        tm->rsin = tm_alloc((size_t)tm->max_t * tm->half, sizeof(REAL), &ok);
        if (!ok) goto nomem;
        for (int t = 0; t < tm->max_t; t++)
            for (int i = 0; i < tm->half; i++) {
                float angle = (float)t * invf[i];
                tm->rcos[(size_t)t * tm->half + i] = (REAL)cos((double)angle);
                tm->rsin[(size_t)t * tm->half + i] = (REAL)sin((double)angle);
            }
    }
    /* activations */
    {
        size_t N = (size_t)tm->max_b * (size_t)tm->max_t, L = (size_t)tm->L_;
        size_t d = (size_t)tm->d, qd = (size_t)tm->qd, kvd = (size_t)tm->kvd, f = (size_t)tm->f;
        size_t H = (size_t)c->n_heads, T = (size_t)tm->max_t, R = (size_t)(tm->max_rank ? tm->max_rank : 1);
        tm->x = tm_alloc((L + 1) * N * d, sizeof(REAL), &ok);
        tm->xn1 = tm_alloc(L * N * d, sizeof(REAL), &ok);
        tm->xn2 = tm_alloc(L * N * d, sizeof(REAL), &ok);
        tm->rs1 = tm_alloc(L * N, sizeof(REAL), &ok);
        tm->rs2 = tm_alloc(L * N, sizeof(REAL), &ok);
        tm->q = tm_alloc(L * N * qd, sizeof(REAL), &ok);
        tm->k = tm_alloc(L * N * kvd, sizeof(REAL), &ok);
        tm->v = tm_alloc(L * N * kvd, sizeof(REAL), &ok);
        tm->P = tm_alloc(L * (size_t)tm->max_b * H * T * T, sizeof(REAL), &ok);
        tm->ao = tm_alloc(L * N * qd, sizeof(REAL), &ok);
        tm->xm = tm_alloc(L * N * d, sizeof(REAL), &ok);
        tm->g = tm_alloc(L * N * f, sizeof(REAL), &ok);
        tm->u = tm_alloc(L * N * f, sizeof(REAL), &ok);
        tm->h = tm_alloc(L * N * f, sizeof(REAL), &ok);
        tm->sg = tm_alloc(L * N * f, sizeof(REAL), &ok);
        tm->xf = tm_alloc(N * d, sizeof(REAL), &ok);
        tm->rsf = tm_alloc(N, sizeof(REAL), &ok);
        tm->xg = tm_alloc(N * d, sizeof(REAL), &ok);
        tm->logits = tm_alloc(N * (size_t)tm->V, sizeof(REAL), &ok);
        tm->rows = tm_alloc(N, sizeof(int32_t), &ok);
        tm->row_loss = tm_alloc(N, sizeof(double), &ok);
        tm->dx = tm_alloc(N * d, sizeof(REAL), &ok);
        tm->dxn = tm_alloc(N * d, sizeof(REAL), &ok);
        tm->dq = tm_alloc(N * qd, sizeof(REAL), &ok);
        tm->dao = tm_alloc(N * qd, sizeof(REAL), &ok);
        tm->dk = tm_alloc(N * kvd, sizeof(REAL), &ok);
        tm->dv = tm_alloc(N * kvd, sizeof(REAL), &ok);
        tm->dg = tm_alloc(N * f, sizeof(REAL), &ok);
        tm->du = tm_alloc(N * f, sizeof(REAL), &ok);
        tm->dh = tm_alloc(N * f, sizeof(REAL), &ok);
        tm->tmp = tm_alloc(N * (size_t)tm->dmax, sizeof(REAL), &ok);
        tm->exl = tm_alloc((size_t)tm->max_b * RM_TRAIN_MAX_K, sizeof(int32_t), &ok);
        tm->exn = tm_alloc((size_t)tm->max_b, sizeof(int32_t), &ok);
        tm->ascr = tm_alloc((size_t)tm->nth * T * T, sizeof(REAL), &ok);
        if (p->kind == RM_TRAIN_LORA) {
            int nm = tm->L_ * RM_TARGET_COUNT;
            tm->loff = tm_alloc((size_t)nm, sizeof(int), &ok);
            tm->laoff = tm_alloc((size_t)nm, sizeof(int64_t), &ok);
            if (!ok) goto nomem;
            int64_t ao = 0;
            for (int l = 0; l < tm->L_; l++) {
                int w = 0;
                for (int t = 0; t < RM_TARGET_COUNT; t++) {
                    int64_t din, dout;
                    tm_target_dims(tm, t, &din, &dout);
                    tm->loff[l * RM_TARGET_COUNT + t] = w;
                    tm->laoff[l * RM_TARGET_COUNT + t] = ao;
                    w += tm->ad[l * RM_TARGET_COUNT + t].rank;
                    ao += (int64_t)tm->ad[l * RM_TARGET_COUNT + t].rank * din;
                }
                if (w > tm->lw) tm->lw = w;
            }
            size_t lw = (size_t)(tm->lw ? tm->lw : 1);
            tm->lus = tm_alloc(L * N * lw, sizeof(REAL), &ok);
            tm->ldus = tm_alloc(N * lw, sizeof(REAL), &ok);
            tm->lag = tm_alloc((size_t)ao, sizeof(REAL), &ok);
        }
        if (p->kind == RM_TRAIN_ROUTER) {
            size_t KS = (size_t)tm->ks;
            tm->lu = tm_alloc(N * R, sizeof(REAL), &ok);
            tm->ldu = tm_alloc(N * R, sizeof(REAL), &ok);
            tm->rv = tm_alloc(N * KS * (size_t)tm->dmax, sizeof(REAL), &ok);
            tm->rdv = tm_alloc(N * KS * (size_t)tm->dmax, sizeof(REAL), &ok);
            tm->rk = tm_alloc(N * KS * R, sizeof(REAL), &ok);
            tm->rdk = tm_alloc(N * KS * R, sizeof(REAL), &ok);
            tm->rq = tm_alloc(N * R, sizeof(REAL), &ok);
            tm->rdq = tm_alloc(N * R, sizeof(REAL), &ok);
            tm->rg = tm_alloc(N * KS, sizeof(REAL), &ok);
            tm->rds = tm_alloc(N * KS, sizeof(REAL), &ok);
            tm->plen = tm_alloc((size_t)tm->max_b, sizeof(int32_t), &ok);
            tm->exb = tm_alloc((size_t)tm->max_b * RM_TRAIN_MAX_K, sizeof(REAL), &ok);
            tm->gbest = tm_alloc((size_t)tm->max_b, sizeof(int32_t), &ok);
            tm->gce = tm_alloc(N, sizeof(double), &ok);
            tm->gend = tm_alloc((size_t)tm->max_b, sizeof(int32_t), &ok);
            tm->gsl = tm_alloc((size_t)tm->max_b * RM_TRAIN_MAX_K, sizeof(double), &ok);
            tm->sxl = tm_alloc((size_t)tm->max_b * RM_TRAIN_MAX_K, sizeof(int32_t), &ok);
            tm->sxn = tm_alloc((size_t)tm->max_b, sizeof(int32_t), &ok);
            for (int m = 0; m < tm->L_ * RM_TARGET_COUNT; m++) tm->n_rmod += tm->ad[m].rank > 0;
        }
        if (!ok) goto nomem;
    }
    *out = tm;
    return RAMOLE_OK;
nomem:
    TM_(free)(tm);
    return rm_err(RAMOLE_ERR_NOMEM, "training model: out of memory");
}

/* The largest 2-D base parameter (embedding or a target), in elements. */
static int64_t tm_max_matrix(const TM_TYPE *tm) {
    int64_t big = tm->V * tm->d;
    for (int t = 0; t < RM_TARGET_COUNT; t++) {
        int64_t din, dout;
        tm_target_dims(tm, t, &din, &dout);
        if (din * dout > big) big = din * dout;
    }
    return big;
}

/* The base parameters from `base`'s weights, whatever their type. */
static rm_status tm_load_base(TM_TYPE *tm, const rm_model *base) {
    float *tmpf = rm_malloc((size_t)tm_max_matrix(tm) * sizeof(float));
    if (!tmpf) return rm_err(RAMOLE_ERR_NOMEM, "training model: out of memory");
    cvt_to_real(tm->W.embd, base->tok_embd.data, base->tok_embd.type, tm->V * tm->d, tmpf);
    if (!tm->cfg.tied_embeddings) cvt_to_real(tm->W.out, base->output.data, base->output.type, tm->V * tm->d, tmpf);
    cvt_to_real(tm->W.out_norm, base->out_norm, RM_TYPE_F32, tm->d, tmpf);
    for (int l = 0; l < tm->L_; l++) {
        const rm_layer *bl = &base->layers[l];
        tm_layer *L = &tm->W.L[l];
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_weight *bw = rm_layer_weight(bl, (rm_target)t);
            cvt_to_real(L->w[t], bw->data, bw->type, bw->rows * bw->cols, tmpf);
        }
        cvt_to_real(L->attn_norm, bl->attn_norm, RM_TYPE_F32, tm->d, tmpf);
        cvt_to_real(L->ffn_norm, bl->ffn_norm, RM_TYPE_F32, tm->d, tmpf);
        if (tm->cfg.qkv_bias) {
            cvt_to_real(L->bq, bl->bq, RM_TYPE_F32, tm->qd, tmpf);
            cvt_to_real(L->bk, bl->bk, RM_TYPE_F32, tm->kvd, tmpf);
            cvt_to_real(L->bv, bl->bv, RM_TYPE_F32, tm->kvd, tmpf);
        }
    }
    rm_free(tmpf);
    return RAMOLE_OK;
}

rm_status TM_(new)(const rm_model *base, const rm_train_params *p, TM_TYPE **out) {
    *out = NULL;
    RM_TRY(check_params(&base->cfg, p));
    TM_TYPE *tm = NULL;
    RM_TRY(tm_create(&base->cfg, base->rope_freq_factors, p, &tm));
    rm_status st = tm_load_base(tm, base);
    if (st != RAMOLE_OK) {
        TM_(free)(tm);
        return st;
    }
    *out = tm;
    return RAMOLE_OK;
}

/* n values of the random stream s (rm_rng_fill_uniform's, in float) into dst. */
static void draw_real(REAL *dst, int64_t n, float std, uint64_t *s, float *tmpf) {
    rm_rng_fill_uniform(tmpf, (size_t)n, std, s);
    for (int64_t i = 0; i < n; i++) dst[i] = (REAL)tmpf[i];
}

/* The values rm_model_random(cfg, seed, std) gives, drawn in its order
 * (model.h): the 2-D weights (embedding, untied head, each layer's targets
 * in order), then each layer's q, k, v biases; norms 1. */
static rm_status tm_random_base(TM_TYPE *tm, uint64_t seed, float std) {
    float *tmpf = rm_malloc((size_t)tm_max_matrix(tm) * sizeof(float));
    if (!tmpf) return rm_err(RAMOLE_ERR_NOMEM, "training model: out of memory");
    uint64_t s = seed;
    draw_real(tm->W.embd, tm->V * tm->d, std, &s, tmpf);
    if (!tm->cfg.tied_embeddings) draw_real(tm->W.out, tm->V * tm->d, std, &s, tmpf);
    for (int l = 0; l < tm->L_; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            int64_t din, dout;
            tm_target_dims(tm, t, &din, &dout);
            draw_real(tm->W.L[l].w[t], din * dout, std, &s, tmpf);
        }
    for (int l = 0; l < tm->L_; l++) {
        tm_layer *L = &tm->W.L[l];
        for (int64_t i = 0; i < tm->d; i++) L->attn_norm[i] = 1, L->ffn_norm[i] = 1;
        if (tm->cfg.qkv_bias) {
            draw_real(L->bq, tm->qd, std, &s, tmpf);
            draw_real(L->bk, tm->kvd, std, &s, tmpf);
            draw_real(L->bv, tm->kvd, std, &s, tmpf);
        }
    }
    for (int64_t i = 0; i < tm->d; i++) tm->W.out_norm[i] = 1;
    rm_free(tmpf);
    return RAMOLE_OK;
}

rm_status TM_(new_random)(const rm_model_config *cfg, uint64_t seed, float std, const rm_train_params *p,
                          TM_TYPE **out) {
    *out = NULL;
    RM_TRY(rm_model_config_check(cfg, "random model"));
    rm_model_config c = *cfg;
    c.rope.style = RM_ROPE_NEOX; /* as rm_model_random */
    RM_TRY(check_params(&c, p));
    TM_TYPE *tm = NULL;
    RM_TRY(tm_create(&c, NULL, p, &tm));
    rm_status st = tm_random_base(tm, seed, std);
    if (st != RAMOLE_OK) {
        TM_(free)(tm);
        return st;
    }
    *out = tm;
    return RAMOLE_OK;
}

const rm_model_config *TM_(config)(const TM_TYPE *tm) { return &tm->cfg; }
rm_train_kind TM_(kind)(const TM_TYPE *tm) { return tm->kind; }
REAL *TM_(params)(TM_TYPE *tm, size_t *n) {
    if (n) *n = tm->n_params;
    return tm->params;
}
REAL *TM_(grads)(TM_TYPE *tm, size_t *n) {
    if (n) *n = tm->n_params;
    return tm->grads;
}
int TM_(n_tensors)(const TM_TYPE *tm) { return tm->n_tens; }
const rm_train_tensor *TM_(tensor)(const TM_TYPE *tm, int i) {
    return i >= 0 && i < tm->n_tens ? &tm->tens[i] : NULL;
}
rm_pool *TM_(pool)(TM_TYPE *tm) { return tm->pool; }
void TM_(profile)(TM_TYPE *tm, rm_train_profile *out, bool reset) {
    if (out) *out = tm->prof;
    if (reset) memset(&tm->prof, 0, sizeof tm->prof);
}
void TM_(zero_grad)(TM_TYPE *tm) { memset(tm->grads, 0, tm->n_params * sizeof(REAL)); }

rm_status TM_(export_adapter)(const TM_TYPE *tm, rm_adapter *dst) {
    if (tm->kind == RM_TRAIN_FULL) return rm_err(RAMOLE_ERR_INVALID, "export: a FULL training model has no adapter");
    if (dst->n_layers != tm->L_) return rm_err(RAMOLE_ERR_MISMATCH, "export: adapter has another layer count");
    for (int i = 0; i < tm->L_ * RM_TARGET_COUNT; i++)
        if (dst->mods[i].rank != tm->ad[i].rank)
            return rm_err(RAMOLE_ERR_MISMATCH, "export: adapter module %d has rank %d (training has %d)", i,
                          dst->mods[i].rank, tm->ad[i].rank);
    if (tm->kind == RM_TRAIN_ROUTER) {
        dst->gate_pool = tm->gpool ? RM_GATE_POOL_PROMPT : RM_GATE_POOL_TOKEN;
        dst->retrieval_prior = (float)tm->rprior;
    }
    for (int i = 0; i < tm->L_ * RM_TARGET_COUNT; i++) {
        const tm_mod *m = &tm->ad[i];
        if (!m->rank) continue;
        int64_t din, dout;
        tm_target_dims(tm, i % RM_TARGET_COUNT, &din, &dout);
        rm_lora_module *dm = &dst->mods[i];
        size_t es = rm_type_block_bytes(dm->type); /* dst may store f16/bf16: convert value by value */
        /* a router's gate scale is folded into A_r: <g A_r x, key> = g <A_r x, key> */
        REAL ascale = tm->kind == RM_TRAIN_ROUTER ? tm->gscale : 1;
        for (int64_t j = 0; j < m->rank * din; j++) {
            float v = (float)(ascale * m->A[j]);
            rm_convert(dm->type, (char *)dm->A + (size_t)j * es, RM_TYPE_F32, &v, 1);
        }
        for (int64_t j = 0; j < m->rank * dout; j++) {
            float v = (float)m->B[j];
            rm_convert(dm->type, (char *)dm->B + (size_t)j * es, RM_TYPE_F32, &v, 1);
        }
    }
    return RAMOLE_OK;
}

/* dst[i] = (float)src[i], i < n. */
static void put_f32(float *dst, const REAL *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

rm_status TM_(export_model)(const TM_TYPE *tm, rm_model **out) {
    *out = NULL;
    rm_model *m = NULL;
    rm_model_f32 *v = NULL;
    RM_TRY(rm_model_new_f32(&tm->cfg, "trained", false, &m, &v)); /* the tm's config: its RoPE style, row order */
    int64_t d = tm->d;
    put_f32(v->tok_embd, tm->W.embd, tm->V * d);
    if (!tm->cfg.tied_embeddings) put_f32(v->output, tm->W.out, tm->V * d);
    put_f32(v->out_norm, tm->W.out_norm, d);
    for (int l = 0; l < tm->L_; l++) {
        rm_layer_f32 *ml = &v->layers[l];
        const tm_layer *L = &tm->W.L[l];
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            int64_t din, dout;
            tm_target_dims(tm, t, &din, &dout);
            put_f32(ml->w[t], L->w[t], din * dout);
        }
        put_f32(ml->attn_norm, L->attn_norm, d);
        put_f32(ml->ffn_norm, L->ffn_norm, d);
        if (tm->cfg.qkv_bias) {
            put_f32(ml->bq, L->bq, tm->qd);
            put_f32(ml->bk, L->bk, tm->kvd);
            put_f32(ml->bv, L->bv, tm->kvd);
        }
    }
    *out = m;
    return RAMOLE_OK;
}

/* ---- row ops -------------------------------------------------------------------- */

typedef struct {
    REAL *y, *rs;
    const REAL *x, *w;
    int64_t n;
    REAL eps;
} norm_job;

static void norm_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    norm_job *j = arg;
    for (int64_t i = lo; i < hi; i++) {
        const REAL *x = j->x + i * j->n;
        REAL *y = j->y + i * j->n, ss = 0;
        for (int64_t c = 0; c < j->n; c++) ss += x[c] * x[c];
        REAL r = (REAL)1 / (REAL)sqrt((double)(ss / (REAL)j->n + j->eps));
        j->rs[i] = r;
        for (int64_t c = 0; c < j->n; c++) y[c] = (x[c] * r) * j->w[c];
    }
}

static void rmsnorm_fwd(TM_TYPE *tm, REAL *y, REAL *rs, const REAL *x, const REAL *w, int n_rows) {
    norm_job j = {y, rs, x, w, tm->d, (REAL)tm->cfg.rms_eps};
    pfor(tm, n_rows, norm_rows, &j);
}

typedef struct {
    REAL *dx; /* += */
    const REAL *dy, *x, *rs, *w;
    int64_t n;
    int n_rows;
} norm_bwd_job;

static void norm_bwd_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    norm_bwd_job *j = arg;
    for (int64_t i = lo; i < hi; i++) {
        const REAL *dy = j->dy + i * j->n, *x = j->x + i * j->n;
        REAL *dx = j->dx + i * j->n, r = j->rs[i], s = 0;
        for (int64_t c = 0; c < j->n; c++) s += dy[c] * j->w[c] * x[c];
        REAL k = r * r * r * s / (REAL)j->n;
        for (int64_t c = 0; c < j->n; c++) dx[c] += r * j->w[c] * dy[c] - x[c] * k;
    }
}

/* Column sums g[c] += sum_i d[i][c] (bias gradients), or, with x and rs,
 * sum_i d[i][c] x[i][c] rs[i] (the RMSNorm weight gradient). Columns are
 * split over threads; each column's sum runs over i = 0, 1, ... whatever
 * the split, accumulated for 256 columns at a time in a stack array while
 * the rows are walked in memory order. */
typedef struct {
    REAL *g;
    const REAL *d, *x, *rs;
    int64_t n;
    int n_rows;
} colsum_job;

static void colsum_cols(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    colsum_job *j = arg;
    REAL acc[256];
    for (int64_t c0 = lo; c0 < hi; c0 += 256) {
        int64_t w = hi - c0 < 256 ? hi - c0 : 256;
        for (int64_t c = 0; c < w; c++) acc[c] = 0;
        for (int i = 0; i < j->n_rows; i++) {
            const REAL *dm = j->d + i * j->n + c0;
            if (j->x) {
                const REAL *x = j->x + i * j->n + c0;
                REAL r = j->rs[i];
                for (int64_t c = 0; c < w; c++) acc[c] += dm[c] * x[c] * r;
            } else {
                for (int64_t c = 0; c < w; c++) acc[c] += dm[c];
            }
        }
        for (int64_t c = 0; c < w; c++) j->g[c0 + c] += acc[c];
    }
}

static void colsum(TM_TYPE *tm, REAL *g, const REAL *dm, int64_t n, int n_rows) {
    colsum_job j = {g, dm, NULL, NULL, n, n_rows};
    pfor(tm, n, colsum_cols, &j);
}

static void rmsnorm_bwd(TM_TYPE *tm, REAL *dx, REAL *gw, const REAL *dy, const REAL *x, const REAL *rs,
                        const REAL *w, int n_rows) {
    norm_bwd_job j = {dx, dy, x, rs, w, tm->d, n_rows};
    pfor(tm, n_rows, norm_bwd_rows, &j);
    if (!gw) return;
    colsum_job c = {gw, dy, x, rs, tm->d, n_rows};
    pfor(tm, tm->d, colsum_cols, &c);
}

/* Rotate (or un-rotate: sign -1) the heads of one row at position pos. */
static void rope_row(const TM_TYPE *tm, REAL *x, int n_heads, int pos, REAL sign) {
    int hd = tm->cfg.head_dim, half = tm->half;
    bool neox = tm->cfg.rope.style == RM_ROPE_NEOX;
    const REAL *c = tm->rcos + (size_t)pos * half, *s = tm->rsin + (size_t)pos * half;
    for (int h = 0; h < n_heads; h++) {
        REAL *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            REAL x0 = v[a], x1 = v[b], sn = sign * s[i];
            v[a] = x0 * c[i] - x1 * sn;
            v[b] = x0 * sn + x1 * c[i];
        }
    }
}

typedef struct {
    REAL *q, *k, *v;
    const tm_layer *L;
    REAL sign;
} rope_job;

static void rope_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    rope_job *j = arg;
    for (int64_t i = lo; i < hi; i++) {
        REAL *q = j->q + i * tm->qd, *k = j->k + i * tm->kvd;
        int pos = (int)(i % tm->T);
        if (j->sign > 0 && j->L && j->L->bq) {
            REAL *v = j->v + i * tm->kvd;
            for (int64_t c = 0; c < tm->qd; c++) q[c] += j->L->bq[c];
            for (int64_t c = 0; c < tm->kvd; c++) k[c] += j->L->bk[c], v[c] += j->L->bv[c];
        }
        rope_row(tm, q, tm->cfg.n_heads, pos, j->sign);
        rope_row(tm, k, tm->cfg.n_kv_heads, pos, j->sign);
    }
}

/* ---- attention --------------------------------------------------------------------- */

typedef struct {
    int l;
} att_job;

/*
 * Forward of one (sequence b, head h): S = scale Q K^T (a gemm over the full
 * T x T square; the masked half is overwritten), causal softmax per row
 * into P, O = P V. Q, K, V, O are strided views of the [N][qd] / [N][kvd]
 * buffers (leading dimension qd or kvd).
 */
static void att_fwd_items(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    att_job *j = arg;
    int H = tm->cfg.n_heads, hd = tm->cfg.head_dim, T = tm->T, grp = tm->cfg.n_heads / tm->cfg.n_kv_heads;
    int qd = (int)tm->qd, kvd = (int)tm->kvd;
    REAL scale = (REAL)1 / (REAL)sqrt((double)hd);
    size_t NM = (size_t)tm->max_b * tm->max_t;
    const REAL *Q = tm->q + j->l * NM * tm->qd, *K = tm->k + j->l * NM * tm->kvd, *Vv = tm->v + j->l * NM * tm->kvd;
    REAL *O = tm->ao + j->l * NM * tm->qd;
    REAL *Pl = tm->P + (size_t)j->l * tm->max_b * H * tm->max_t * tm->max_t;
    for (int64_t it = lo; it < hi; it++) {
        int b = (int)(it / H), h = (int)(it % H), kh = h / grp;
        REAL *P = Pl + ((size_t)b * H + h) * T * T;
        const REAL *q = Q + (size_t)b * T * qd + (size_t)h * hd, *k = K + (size_t)b * T * kvd + (size_t)kh * hd;
        const REAL *v = Vv + (size_t)b * T * kvd + (size_t)kh * hd;
        GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, qd, k, kvd, 0, P, T);
        for (int t = 0; t < T; t++) {
            REAL *p = P + (size_t)t * T, mx = -INFINITY;
            for (int s = 0; s <= t; s++)
                if (p[s] > mx) mx = p[s];
            REAL sum = 0;
            for (int s = 0; s <= t; s++) sum += (p[s] = REXP(p[s] - mx));
            REAL inv = (REAL)1 / sum;
            for (int s = 0; s <= t; s++) p[s] *= inv;
            for (int s = t + 1; s < T; s++) p[s] = 0;
        }
        GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1, P, T, v, kvd, 0,
             O + (size_t)b * T * qd + (size_t)h * hd, qd);
    }
}

/*
 * Backward of one (sequence b, kv head kh) and the query heads it serves
 * (so the dK, dV rows of an item are its own): per head
 * dP = dO V^T, dS = P * (dP - rowsum(P * dP)) * scale, dQ = dS K,
 * dK += dS^T Q, dV += P^T dO. dS lives in the thread's [T][T] scratch.
 */
static void att_bwd_items(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    att_job *j = arg;
    int H = tm->cfg.n_heads, KV = tm->cfg.n_kv_heads, hd = tm->cfg.head_dim, T = tm->T, grp = H / KV;
    int qd = (int)tm->qd, kvd = (int)tm->kvd;
    REAL scale = (REAL)1 / (REAL)sqrt((double)hd);
    size_t NM = (size_t)tm->max_b * tm->max_t;
    const REAL *Q = tm->q + j->l * NM * tm->qd, *K = tm->k + j->l * NM * tm->kvd, *Vv = tm->v + j->l * NM * tm->kvd;
    const REAL *Pl = tm->P + (size_t)j->l * tm->max_b * H * tm->max_t * tm->max_t;
    REAL *dS = tm->ascr + (size_t)ith * tm->max_t * tm->max_t;
    for (int64_t it = lo; it < hi; it++) {
        int b = (int)(it / KV), kh = (int)(it % KV);
        const REAL *k = K + (size_t)b * T * kvd + (size_t)kh * hd, *v = Vv + (size_t)b * T * kvd + (size_t)kh * hd;
        REAL *dk = tm->dk + (size_t)b * T * kvd + (size_t)kh * hd, *dv = tm->dv + (size_t)b * T * kvd + (size_t)kh * hd;
        for (int h = kh * grp; h < (kh + 1) * grp; h++) {
            const REAL *P = Pl + ((size_t)b * H + h) * T * T;
            const REAL *q = Q + (size_t)b * T * qd + (size_t)h * hd, *dO = tm->dao + (size_t)b * T * qd + (size_t)h * hd;
            REAL *dq = tm->dq + (size_t)b * T * qd + (size_t)h * hd;
            REAL beta = h == kh * grp ? 0 : 1;
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1, dO, qd, v, kvd, 0, dS, T);
            for (int t = 0; t < T; t++) {
                const REAL *p = P + (size_t)t * T;
                REAL *ds = dS + (size_t)t * T, acc = 0;
                for (int s = 0; s <= t; s++) acc += p[s] * ds[s];
                for (int s = 0; s <= t; s++) ds[s] = p[s] * (ds[s] - acc) * scale;
                for (int s = t + 1; s < T; s++) ds[s] = 0;
            }
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1, dS, T, k, kvd, 0, dq, qd);
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1, dS, T, q, qd, beta, dk, kvd);
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1, P, T, dO, qd, beta, dv, kvd);
        }
    }
}

/* ---- SwiGLU ------------------------------------------------------------------------- */

typedef struct {
    const REAL *g, *u;
    REAL *h;
    REAL *sg; /* sigmoid(g): written by the forward, read by the backward */
} swiglu_job;

static void swiglu_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    swiglu_job *j = arg;
    for (int64_t i = lo * tm->f; i < hi * tm->f; i++) {
        REAL g = j->g[i], sg = (REAL)1 / ((REAL)1 + REXP(-g));
        j->sg[i] = sg;
        j->h[i] = g * sg * j->u[i];
    }
}

static void swiglu_bwd_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    swiglu_job *j = arg;
    for (int64_t i = lo * tm->f; i < hi * tm->f; i++) {
        REAL g = j->g[i], sg = j->sg[i];
        REAL dh = tm->dh[i];
        tm->du[i] = dh * g * sg;
        tm->dg[i] = dh * j->u[i] * sg * ((REAL)1 + g * ((REAL)1 - sg));
    }
}

/* ---- router --------------------------------------------------------------------------- */

/*
 * RouterLoRA for one module, batched. Expert slot e of sequence b holds
 * expert exl[b][e]; per-token rows are laid out [N][KS] (KS = tm->ks slots)
 * so that slot e of sequence b is a strided [T] block (leading dimension
 * KS*dout or KS*rr) that gemms read and write in place:
 *   U = X_b A_e^T,  V_be = s_e U B_e^T,  Key_be = V_be B_r   (per (b, e))
 *   Q = X A_r^T                                               (whole batch)
 *   score, softmax, y += sum_e w_e v_e                        (per token)
 * Backward (after router_prep has rebuilt V, Key, Q and the gates):
 *   per token: dw_e = <dy, v_e>, ds_e = w_e (dw_e - sum_f w_f dw_f) / sqrt(rr),
 *              dQ = sum_e ds_e key_e, dKey_e = ds_e q, dV_e = w_e dy
 *   per (b, e): dV_be += dKey_be B_r^T, dB_r += V_be^T dKey_be,
 *              dU = s_e dV_be B_e, dX_b += dU A_e
 *   batch:     dA_r += dQ^T X, dX += dQ A_r
 * Slots beyond a sequence's k are never touched; an expert lacking the
 * module has V = Key = 0 (score 0, still in the softmax).
 * Gate loss: the forward adds -log w_best at the gate rows to gce (best:
 * the sequence's target slot gbest); the backward adds gcoef (w_e - [e ==
 * best]) to ds_e before the 1/sqrt(rr).
 */
typedef struct {
    int l, t, mi;
    int64_t din, dout;
    const REAL *X;  /* [N][din] */
    REAL *Y;        /* forward: [N][dout] += */
    const REAL *dY; /* backward: [N][dout] */
    REAL *dX;       /* backward: [N][din] += */
} router_job;

static const tm_mod *router_expert(const TM_TYPE *tm, int b, int e, int mi) {
    return &tm->ex[(size_t)tm->exl[b * RM_TRAIN_MAX_K + e] * (size_t)(tm->L_ * RM_TARGET_COUNT) + (size_t)mi];
}

/* Pass 1, per row: the raw scores z_e = gscale <q, key_e> / sqrt(rr) into rg. */
static void router_score_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    router_job *j = arg;
    int rr = tm->ad[j->mi].rank, KS = tm->ks;
    REAL inv = tm->gscale / (REAL)sqrt((double)rr);
    for (int64_t i = lo; i < hi; i++) {
        int k = tm->exn[i / tm->T];
        const REAL *q = tm->rq + (size_t)i * rr;
        REAL *z = tm->rg + (size_t)i * KS;
        for (int e = 0; e < k; e++) {
            const REAL *key = tm->rk + ((size_t)i * KS + e) * rr;
            REAL sc = 0;
            for (int a = 0; a < rr; a++) sc += q[a] * key[a];
            z[e] = sc * inv;
        }
    }
}

/* Pass 2, per sequence (the pooling runs along it): rg's scores become
 * gates, each row's softmax of its own scores, or with gpool of the mean of
 * the prompt's rows 0..min(t, P-1) (adapter.h, rm_gate_pool), plus the
 * retrieval prior lambda r_e; and the gate loss term of the forward. */
static void router_softmax_seqs(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    router_job *j = arg;
    int KS = tm->ks, T = tm->T;
    bool gate = j->Y && tm->gate_on; /* the forward's pass (the backward's rebuild adds nothing) */
    for (int64_t b = lo; b < hi; b++) {
        int k = tm->exn[b], P = tm->plen[b];
        REAL acc[RM_TRAIN_MAX_K] = {0};
        for (int t = 0; t < T; t++) {
            int64_t i = b * T + t;
            REAL *w = tm->rg + (size_t)i * KS, mx = -INFINITY, z[RM_TRAIN_MAX_K];
            for (int e = 0; e < k; e++) {
                if (tm->gpool) {
                    if (t < P) acc[e] += w[e];
                    z[e] = acc[e] / (REAL)(t < P ? t + 1 : P);
                } else {
                    z[e] = w[e];
                }
                z[e] += tm->exb[b * RM_TRAIN_MAX_K + e];
                if (z[e] > mx) mx = z[e];
            }
            REAL sum = 0;
            for (int e = 0; e < k; e++) sum += (w[e] = REXP(z[e] - mx));
            for (int e = 0; e < k; e++) w[e] /= sum;
            if (gate && t < tm->gend[b]) /* -log w_best = log(sum) + mx - z_best */
                tm->gce[i] += log((double)sum) + (double)mx - (double)z[tm->gbest[b]];
        }
    }
}

/* Pass 3, per row: y += sum_e w_e v_e. */
static void router_out_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    router_job *j = arg;
    int KS = tm->ks;
    for (int64_t i = lo; i < hi; i++) {
        int k = tm->exn[i / tm->T];
        const REAL *w = tm->rg + (size_t)i * KS;
        REAL *y = j->Y + i * j->dout;
        for (int e = 0; e < k; e++) {
            const REAL *v = tm->rv + ((size_t)i * KS + e) * j->dout;
            for (int64_t o = 0; o < j->dout; o++) y[o] += w[e] * v[o];
        }
    }
}

/* V, Key, Q and the gates of the batch (and y += sum w v when j->Y). */
static void router_prep(TM_TYPE *tm, router_job *j) {
    const tm_mod *R = &tm->ad[j->mi];
    int rr = R->rank, KS = tm->ks, T = tm->T, din = (int)j->din, dout = (int)j->dout, n = tm->B * T;
    for (int b = 0; b < tm->B; b++)
        for (int e = 0; e < tm->exn[b]; e++) {
            const tm_mod *E = router_expert(tm, b, e, j->mi);
            REAL *V = tm->rv + ((size_t)b * T * KS + e) * dout, *Kb = tm->rk + ((size_t)b * T * KS + e) * rr;
            if (!E->rank) {
                for (int t = 0; t < T; t++) {
                    memset(V + (size_t)t * KS * dout, 0, (size_t)dout * sizeof(REAL));
                    memset(Kb + (size_t)t * KS * rr, 0, (size_t)rr * sizeof(REAL));
                }
                continue;
            }
            mm(tm, false, true, T, E->rank, din, 1, j->X + (size_t)b * T * din, din, E->A, din, 0, tm->lu, E->rank);
            mm(tm, false, true, T, dout, E->rank, E->scale, tm->lu, E->rank, E->B, E->rank, 0, V, KS * dout);
            mm(tm, false, false, T, rr, dout, 1, V, KS * dout, R->B, rr, 0, Kb, KS * rr);
        }
    mm(tm, false, true, n, rr, din, 1, j->X, din, R->A, din, 0, tm->rq, rr);
    pfor(tm, n, router_score_rows, j);
    pfor(tm, tm->B, router_softmax_seqs, j);
    if (j->Y) pfor(tm, n, router_out_rows, j);
}

/* Backward pass 1, per row: the gradient of each gate's score, ds_e (into rds). */
static void router_dscore_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    router_job *j = arg;
    int rr = tm->ad[j->mi].rank, KS = tm->ks;
    REAL inv = tm->gscale / (REAL)sqrt((double)rr);
    for (int64_t i = lo; i < hi; i++) {
        int k = tm->exn[i / tm->T];
        const REAL *dy = j->dY + i * j->dout, *w = tm->rg + (size_t)i * KS;
        /* gate term: d G / d z_e = w_e - [e == best] */
        REAL gc = tm->gcoef != 0 && i % tm->T < tm->gend[i / tm->T] ? tm->gcoef : 0;
        int best = gc != 0 ? tm->gbest[i / tm->T] : -1;
        REAL dw[RM_TRAIN_MAX_K], sw = 0;
        for (int e = 0; e < k; e++) {
            const REAL *v = tm->rv + ((size_t)i * KS + e) * j->dout;
            REAL s = 0;
            for (int64_t o = 0; o < j->dout; o++) s += dy[o] * v[o];
            dw[e] = s;
            sw += w[e] * s;
        }
        REAL *ds = tm->rds + (size_t)i * KS;
        for (int e = 0; e < k; e++) ds[e] = (w[e] * (dw[e] - sw) + gc * (w[e] - (REAL)(e == best))) * inv;
    }
}

/* Backward pass 2, per sequence, with gpool: the pooled score of row t is
 * the mean of rows 0..c_t - 1, c_t = min(t + 1, P), so the raw score of a
 * prompt row s gets sum over t >= s of ds_t / c_t, and a row past the
 * prompt nothing. */
static void router_dpool_seqs(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    (void)arg;
    int KS = tm->ks, T = tm->T;
    for (int64_t b = lo; b < hi; b++) {
        int k = tm->exn[b], P = tm->plen[b];
        REAL acc[RM_TRAIN_MAX_K] = {0};
        for (int t = T - 1; t >= 0; t--) {
            REAL *ds = tm->rds + (size_t)(b * T + t) * KS, c = (REAL)(t < P ? t + 1 : P);
            for (int e = 0; e < k; e++) {
                acc[e] += ds[e] / c;
                ds[e] = t < P ? acc[e] : 0;
            }
        }
    }
}

/* Backward pass 3, per row: dQ, dKey and dV from the raw scores' gradients. */
static void router_bwd_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    router_job *j = arg;
    int rr = tm->ad[j->mi].rank, KS = tm->ks;
    for (int64_t i = lo; i < hi; i++) {
        int k = tm->exn[i / tm->T];
        const REAL *dy = j->dY + i * j->dout, *w = tm->rg + (size_t)i * KS, *q = tm->rq + (size_t)i * rr;
        const REAL *ds = tm->rds + (size_t)i * KS;
        REAL *dq = tm->rdq + (size_t)i * rr;
        for (int a = 0; a < rr; a++) dq[a] = 0;
        for (int e = 0; e < k; e++) {
            const REAL *key = tm->rk + ((size_t)i * KS + e) * rr;
            REAL *dkey = tm->rdk + ((size_t)i * KS + e) * rr;
            for (int a = 0; a < rr; a++) dq[a] += ds[e] * key[a], dkey[a] = ds[e] * q[a];
            if (!j->dX) continue; /* dV only feeds the experts' input gradient */
            REAL *dv = tm->rdv + ((size_t)i * KS + e) * j->dout;
            for (int64_t o = 0; o < j->dout; o++) dv[o] = w[e] * dy[o];
        }
    }
}

static void router_fwd(TM_TYPE *tm, router_job *j) { router_prep(tm, j); }

static void router_bwd(TM_TYPE *tm, router_job *j) {
    const tm_mod *R = &tm->ad[j->mi];
    int rr = R->rank, KS = tm->ks, T = tm->T, din = (int)j->din, dout = (int)j->dout, n = tm->B * T;
    REAL *Y = j->Y;
    j->Y = NULL;
    router_prep(tm, j);
    j->Y = Y;
    pfor(tm, n, router_dscore_rows, j);
    if (tm->gpool) pfor(tm, tm->B, router_dpool_seqs, j);
    pfor(tm, n, router_bwd_rows, j);
    for (int b = 0; b < tm->B; b++)
        for (int e = 0; e < tm->exn[b]; e++) {
            const tm_mod *E = router_expert(tm, b, e, j->mi);
            size_t so = (size_t)b * T * KS + e;
            REAL *dV = tm->rdv + so * dout, *dK = tm->rdk + so * rr;
            const REAL *V = tm->rv + so * dout;
            mm(tm, true, false, dout, rr, T, 1, V, KS * dout, dK, KS * rr, 1, R->gB, rr);   /* dB_r += V^T dKey */
            if (!E->rank || !j->dX) continue; /* dV would feed nothing */
            mm(tm, false, true, T, dout, rr, 1, dK, KS * rr, R->B, rr, 1, dV, KS * dout); /* dV += dKey B_r^T */
            mm(tm, false, false, T, E->rank, dout, E->scale, dV, KS * dout, E->B, E->rank, 0, tm->ldu, E->rank);
            mm(tm, false, false, T, din, E->rank, 1, tm->ldu, E->rank, E->A, din, 1, j->dX + (size_t)b * T * din, din);
        }
    mm(tm, true, false, rr, din, n, 1, tm->rdq, rr, j->X, din, 1, R->gA, din);  /* dA_r += dQ^T X */
    if (j->dX) mm(tm, false, false, n, din, rr, 1, tm->rdq, rr, R->A, din, 1, j->dX, din); /* dX += dQ A_r */
}

/* ---- projections ------------------------------------------------------------------------ */

/* LORA: the block of nt modules from target t0 that read the same input X
 * (q,k,v; o; gate,up; down). Its width (sum of the ranks) and its columns
 * in the layer's U row. */
static int lora_group_width(const TM_TYPE *tm, int l, int t0, int nt) {
    int w = 0;
    for (int t = t0; t < t0 + nt; t++) w += tm->ad[l * RM_TARGET_COUNT + t].rank;
    return w;
}

/* LORA: module (l, t)'s columns of U in lus (row stride lw). */
static REAL *lora_u(const TM_TYPE *tm, int l, int t) {
    size_t NM = (size_t)tm->max_b * tm->max_t;
    return tm->lus + (size_t)l * NM * tm->lw + tm->loff[l * RM_TARGET_COUNT + t];
}

/* LORA: the group's A's stacked, [A_t0; ...] ([width][din]). A group with
 * one adapted module reads that module's A in place; otherwise the forward
 * (stack true) copies them into lag, where the backward reads them. */
static const REAL *lora_group_a(TM_TYPE *tm, int l, int t0, int nt, int64_t din, bool stack) {
    const tm_mod *only = NULL;
    int present = 0;
    for (int t = t0; t < t0 + nt; t++)
        if (tm->ad[l * RM_TARGET_COUNT + t].rank) only = &tm->ad[l * RM_TARGET_COUNT + t], present++;
    if (present == 1) return only->A;
    for (int t = t0; stack && t < t0 + nt; t++) {
        const tm_mod *m = &tm->ad[l * RM_TARGET_COUNT + t];
        if (m->rank) /* a module the adapter lacks has no A (NULL) */
            memcpy(tm->lag + tm->laoff[l * RM_TARGET_COUNT + t], m->A, (size_t)m->rank * (size_t)din * sizeof(REAL));
    }
    return tm->lag + tm->laoff[l * RM_TARGET_COUNT + t0];
}

/* LORA forward of a group: U = X [A_t0; ...]^T into lus. */
static void lora_group_u(TM_TYPE *tm, int l, int t0, int nt, const REAL *X, int n) {
    if (tm->kind != RM_TRAIN_LORA) return;
    int w = lora_group_width(tm, l, t0, nt);
    if (!w) return;
    int64_t din, dout;
    tm_target_dims(tm, t0, &din, &dout);
    const REAL *Ag = lora_group_a(tm, l, t0, nt, din, true);
    mm(tm, false, true, n, w, (int)din, 1, X, (int)din, Ag, (int)din, 0, lora_u(tm, l, t0), tm->lw);
}

/* LORA backward of a group, after proj_bwd of each of its modules left dU
 * in ldus: dX += dU_group [A_t0; ...]. */
static void lora_group_dx(TM_TYPE *tm, int l, int t0, int nt, REAL *dX, int n) {
    if (tm->kind != RM_TRAIN_LORA || !dX) return;
    int w = lora_group_width(tm, l, t0, nt);
    if (!w) return;
    int64_t din, dout;
    tm_target_dims(tm, t0, &din, &dout);
    mm(tm, false, false, n, (int)din, w, 1, tm->ldus + tm->loff[l * RM_TARGET_COUNT + t0], tm->lw,
       lora_group_a(tm, l, t0, nt, din, false), (int)din, 1, dX, (int)din);
}

/* Y [n][dout] = X [n][din] W^T + adapter terms (no bias). LORA: U of the
 * module's group was computed by lora_group_u. */
static void proj_fwd(TM_TYPE *tm, int l, int t, const REAL *X, REAL *Y, int n) {
    int64_t din, dout;
    tm_target_dims(tm, t, &din, &dout);
    mm(tm, false, true, n, (int)dout, (int)din, 1, X, (int)din, tm->W.L[l].w[t], (int)din, 0, Y, (int)dout);
    if (tm->kind == RM_TRAIN_LORA) {
        const tm_mod *m = &tm->ad[l * RM_TARGET_COUNT + t];
        if (!m->rank) return;
        mm(tm, false, true, n, (int)dout, m->rank, m->scale, lora_u(tm, l, t), tm->lw, m->B, m->rank, 1, Y, (int)dout);
    } else if (tm->kind == RM_TRAIN_ROUTER) {
        if (!tm->ad[l * RM_TARGET_COUNT + t].rank) return;
        router_job j = {l, t, l * RM_TARGET_COUNT + t, din, dout, X, Y, NULL, NULL};
        router_fwd(tm, &j);
    }
}

/* dX [n][din] = beta dX + dY W (+ adapter paths); weight gradients added.
 * dX NULL: the input gradient is not needed (LORA and ROUTER, first layer:
 * the embedding is frozen). LORA: dU goes to ldus; the group's dX term is
 * added by lora_group_dx. */
static void proj_bwd(TM_TYPE *tm, int l, int t, const REAL *X, const REAL *dY, REAL *dX, REAL beta, int n) {
    int64_t din, dout;
    tm_target_dims(tm, t, &din, &dout);
    const REAL *Wt = tm->W.L[l].w[t];
    if (tm->kind == RM_TRAIN_FULL)
        mm(tm, true, false, (int)dout, (int)din, n, 1, dY, (int)dout, X, (int)din, 1, tm->G.L[l].w[t], (int)din);
    if (dX) mm(tm, false, false, n, (int)din, (int)dout, 1, dY, (int)dout, Wt, (int)din, beta, dX, (int)din);
    if (tm->kind == RM_TRAIN_LORA) {
        const tm_mod *m = &tm->ad[l * RM_TARGET_COUNT + t];
        if (!m->rank) return;
        int r = m->rank, lw = tm->lw;
        const REAL *U = lora_u(tm, l, t);
        REAL *dU = tm->ldus + tm->loff[l * RM_TARGET_COUNT + t];
        mm(tm, true, false, (int)dout, r, n, m->scale, dY, (int)dout, U, lw, 1, m->gB, r);                /* dB */
        mm(tm, false, false, n, r, (int)dout, m->scale, dY, (int)dout, m->B, r, 0, dU, lw);               /* dU */
        mm(tm, true, false, r, (int)din, n, 1, dU, lw, X, (int)din, 1, m->gA, (int)din);                  /* dA */
    } else if (tm->kind == RM_TRAIN_ROUTER) {
        const tm_mod *R = &tm->ad[l * RM_TARGET_COUNT + t];
        if (!R->rank) return;
        router_job j = {l, t, l * RM_TARGET_COUNT + t, din, dout, X, NULL, dY, dX};
        router_bwd(tm, &j);
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

static rm_status check_batch(TM_TYPE *tm, const rm_train_batch *b) {
    if (b->B <= 0 || b->B > tm->max_b || b->T <= 0 || b->T > tm->max_t)
        return rm_err(RAMOLE_ERR_INVALID, "training batch of %d x %d (this model takes up to %d x %d)", b->B, b->T,
                      tm->max_b, tm->max_t);
    if (!b->tokens || !b->targets || !b->mask)
        return rm_err(RAMOLE_ERR_INVALID, "training batch: tokens, targets and mask are required");
    int n = b->B * b->T, n_mask = 0;
    for (int i = 0; i < n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= tm->V)
            return rm_err(RAMOLE_ERR_RANGE, "training batch: token id %d at sequence %d position %d is out of range "
                          "(vocabulary of %lld)", b->tokens[i], i / b->T, i % b->T, (long long)tm->V);
        if (!b->mask[i]) continue;
        n_mask++;
        if (b->targets[i] < 0 || b->targets[i] >= tm->V)
            return rm_err(RAMOLE_ERR_RANGE, "training batch: target id %d at sequence %d position %d is out of range "
                          "(vocabulary of %lld)", b->targets[i], i / b->T, i % b->T, (long long)tm->V);
    }
    if (!n_mask) return rm_err(RAMOLE_ERR_INVALID, "training batch: the mask selects no target position");
    if (tm->kind == RM_TRAIN_ROUTER) {
        for (int s = 0; s < b->B; s++) {
            if (!b->experts) {
                if (tm->n_pool > tm->ks)
                    return rm_err(RAMOLE_ERR_INVALID, "router batch: a pool of %d experts is too large to use whole "
                                  "(%d slots)", tm->n_pool, tm->ks);
                tm->exn[s] = tm->n_pool;
                for (int e = 0; e < tm->n_pool; e++) tm->exl[s * RM_TRAIN_MAX_K + e] = e;
            }
            int k = tm->exn[s];
            if (b->experts) {
                k = b->n_experts ? b->n_experts[s] : 0;
                if (k < 1 || k > tm->ks)
                    return rm_err(RAMOLE_ERR_INVALID, "router batch: sequence %d has %d experts (1 to %d)", s, k,
                                  tm->ks);
                tm->exn[s] = k;
            }
            for (int e = 0; e < k; e++) {
                int32_t id = b->experts ? b->experts[s * RM_TRAIN_MAX_K + e] : e;
                if (id < 0 || id >= tm->n_pool)
                    return rm_err(RAMOLE_ERR_RANGE, "router batch: sequence %d names expert %d (pool of %d)", s, id,
                                  tm->n_pool);
                tm->exl[s * RM_TRAIN_MAX_K + e] = id;
                float r = b->retrieval ? b->retrieval[s * RM_TRAIN_MAX_K + e] : 0;
                if (!rm_retrieval_score_ok(r))
                    return rm_err(RAMOLE_ERR_RANGE, "router batch: sequence %d's retrieval score %g of expert %d is "
                                  "not a cosine in [-1, 1]", s, (double)r, e);
                tm->exb[s * RM_TRAIN_MAX_K + e] = tm->rprior * (REAL)r;
            }
        }
    }
    return RAMOLE_OK;
}

/*
 * The loss rows: the softmax of each row once, giving the row's loss
 * (lse - z_target, the exponentials summed in double) and, when arg points
 * to a scale (backward), dlogits = scale (softmax - onehot(target)) in
 * place of the logits. Forward alone and backward thus report one loss.
 */
static void xent_rows(TM_TYPE *tm, void *arg, int64_t lo, int64_t hi, int ith) {
    const REAL *scale = arg;
    const rm_train_batch *b = tm->b;
    for (int64_t r = lo; r < hi; r++) {
        REAL *z = tm->logits + r * tm->V, mx = -INFINITY;
        int32_t tg = b->targets[tm->rows[r]];
        for (int64_t c = 0; c < tm->V; c++)
            if (z[c] > mx) mx = z[c];
        REAL zt = z[tg];
        double s = 0;
        for (int64_t c = 0; c < tm->V; c++) {
            REAL e = REXP(z[c] - mx);
            s += (double)e;
            if (scale) z[c] = e;
        }
        tm->row_loss[r] = (double)mx + log(s) - (double)zt;
        if (!scale) continue;
        REAL inv = (REAL)(*scale / s);
        for (int64_t c = 0; c < tm->V; c++) z[c] *= inv;
        z[tg] -= *scale;
    }
}

static rm_status forward(TM_TYPE *tm, const rm_train_batch *b, double *loss, const double *grad_scale);

/* out[s][e] = sequence s's mean CE with its slot e alone (b checked, so
 * tm->exl/exn hold its expert lists): one forward per slot, every sequence
 * taking its own slot e, or slot 0 where it has fewer (not reported). The
 * lists are copied to sxl, slots past a sequence's count filled with its
 * slot 0, so that pass e reads them at sxl + e (sequence s's one expert is
 * sxl[s*MAX_K + e]). The batch's lists are restored at the end. */
static rm_status single_expert_losses(TM_TYPE *tm, const rm_train_batch *b, double *out) {
    int kmax = 0;
    for (int s = 0; s < b->B; s++) {
        const int32_t *l = tm->exl + s * RM_TRAIN_MAX_K;
        int k = tm->exn[s];
        if (k > kmax) kmax = k;
        for (int e = 0; e < RM_TRAIN_MAX_K; e++) tm->sxl[s * RM_TRAIN_MAX_K + e] = l[e < k ? e : 0];
        tm->sxn[s] = 1;
    }
    rm_train_batch sb = *b;
    sb.n_experts = tm->sxn, sb.gate_loss = 0, sb.retrieval = NULL; /* one expert: its gate is 1 */
    for (int e = 0; e < kmax; e++) {
        sb.experts = tm->sxl + e;
        double l;
        RM_TRY(forward(tm, &sb, &l, NULL));
        int r = 0; /* rows are the masked-in positions in order */
        for (int s = 0; s < b->B; s++) {
            double acc = 0;
            int c = 0;
            for (int t = 0; t < b->T; t++)
                if (b->mask[s * b->T + t]) acc += tm->row_loss[r++], c++;
            out[s * RM_TRAIN_MAX_K + e] = c ? acc / c : NAN;
        }
    }
    RM_TRY(check_batch(tm, b)); /* the batch's own lists again */
    for (int s = 0; s < b->B; s++)
        for (int e = tm->exn[s]; e < RM_TRAIN_MAX_K; e++) out[s * RM_TRAIN_MAX_K + e] = NAN;
    return RAMOLE_OK;
}

/* The gate targets of batch b (checked): each sequence's best single
 * expert (the first of equals), for every position of the sequence up to
 * its last masked-in one: the prompt's too, whose keys and values the
 * answer reads. */
static rm_status gate_targets(TM_TYPE *tm, const rm_train_batch *b) {
    RM_TRY(single_expert_losses(tm, b, tm->gsl));
    tm->g_rows = 0;
    for (int s = 0; s < b->B; s++) {
        tm->gend[s] = 0;
        for (int t = 0; t < b->T; t++)
            if (b->mask[s * b->T + t]) tm->gend[s] = t + 1;
        tm->g_rows += tm->gend[s];
        const double *sl = tm->gsl + (size_t)s * RM_TRAIN_MAX_K;
        int best = 0;
        for (int e = 1; e < tm->exn[s]; e++)
            if (sl[e] < sl[best]) best = e;
        tm->gbest[s] = best;
    }
    return RAMOLE_OK;
}

/* The forward and *loss; grad_scale not NULL (backward): the logits are
 * replaced by the gradient of grad_scale * loss. */
static rm_status forward(TM_TYPE *tm, const rm_train_batch *b, double *loss, const double *grad_scale) {
    double gl = b->gate_loss;
    if (gl != 0 && !(gl > 0 && isfinite(gl)))
        return rm_err(RAMOLE_ERR_INVALID, "training batch: gate loss weight %g (must be finite and >= 0)", gl);
    if (gl > 0 && tm->kind != RM_TRAIN_ROUTER)
        return rm_err(RAMOLE_ERR_INVALID, "training batch: a gate loss needs a router training model (this one is %s)",
                      rm_train_kind_name(tm->kind));
    RM_TRY(check_batch(tm, b));
    tm->gate_on = false, tm->gcoef = 0, tm->gate_ce = 0;
    if (gl > 0) {
        RM_TRY(gate_targets(tm, b));
        memset(tm->gce, 0, (size_t)b->B * b->T * sizeof *tm->gce);
        tm->gate_on = true;
    }
    tm->b = b, tm->B = b->B, tm->T = b->T;
    if (tm->gpool) /* the prompt: up to the first masked-in position */
        for (int s = 0; s < b->B; s++) {
            int t = 0;
            while (t < b->T && !b->mask[s * b->T + t]) t++;
            tm->plen[s] = t < b->T ? t + 1 : b->T;
        }
    int n = b->B * b->T;
    size_t NM = (size_t)tm->max_b * tm->max_t;
    int64_t d = tm->d;
    for (int i = 0; i < n; i++) memcpy(tm->x + (size_t)i * d, tm->W.embd + (size_t)b->tokens[i] * d, d * sizeof(REAL));
    for (int l = 0; l < tm->L_; l++) {
        tm_layer *L = &tm->W.L[l];
        REAL *x = tm->x + l * NM * d, *xn1 = tm->xn1 + l * NM * d, *xn2 = tm->xn2 + l * NM * d;
        REAL *q = tm->q + l * NM * tm->qd, *k = tm->k + l * NM * tm->kvd, *v = tm->v + l * NM * tm->kvd;
        REAL *ao = tm->ao + l * NM * tm->qd, *xm = tm->xm + l * NM * d, *xo = tm->x + (l + 1) * NM * d;
        REAL *g = tm->g + l * NM * tm->f, *u = tm->u + l * NM * tm->f, *h = tm->h + l * NM * tm->f;
        REAL *sg = tm->sg + l * NM * tm->f;
        rmsnorm_fwd(tm, xn1, tm->rs1 + l * NM, x, L->attn_norm, n);
        lora_group_u(tm, l, RM_TARGET_Q, 3, xn1, n);
        proj_fwd(tm, l, RM_TARGET_Q, xn1, q, n);
        proj_fwd(tm, l, RM_TARGET_K, xn1, k, n);
        proj_fwd(tm, l, RM_TARGET_V, xn1, v, n);
        rope_job rj = {q, k, v, L, 1};
        pfor(tm, n, rope_rows, &rj);
        att_job aj = {l};
        double t0 = rm_time_now();
        pfor(tm, (int64_t)b->B * tm->cfg.n_heads, att_fwd_items, &aj);
        tm->prof.attn_s += rm_time_now() - t0;
        tm->prof.attn_flop += 4.0 * b->B * tm->cfg.n_heads * (double)b->T * b->T * tm->cfg.head_dim;
        lora_group_u(tm, l, RM_TARGET_O, 1, ao, n);
        proj_fwd(tm, l, RM_TARGET_O, ao, tm->tmp, n);
        for (size_t i = 0; i < (size_t)n * d; i++) xm[i] = x[i] + tm->tmp[i];
        rmsnorm_fwd(tm, xn2, tm->rs2 + l * NM, xm, L->ffn_norm, n);
        lora_group_u(tm, l, RM_TARGET_GATE, 2, xn2, n);
        proj_fwd(tm, l, RM_TARGET_GATE, xn2, g, n);
        proj_fwd(tm, l, RM_TARGET_UP, xn2, u, n);
        swiglu_job sj = {g, u, h, sg};
        pfor(tm, n, swiglu_rows, &sj);
        lora_group_u(tm, l, RM_TARGET_DOWN, 1, h, n);
        proj_fwd(tm, l, RM_TARGET_DOWN, h, tm->tmp, n);
        for (size_t i = 0; i < (size_t)n * d; i++) xo[i] = xm[i] + tm->tmp[i];
    }
    const REAL *xl = tm->x + (size_t)tm->L_ * NM * d;
    rmsnorm_fwd(tm, tm->xf, tm->rsf, xl, tm->W.out_norm, n);
    tm->n_rows = 0;
    for (int i = 0; i < n; i++)
        if (b->mask[i]) {
            memcpy(tm->xg + (size_t)tm->n_rows * d, tm->xf + (size_t)i * d, d * sizeof(REAL));
            tm->rows[tm->n_rows++] = i;
        }
    mm(tm, false, true, tm->n_rows, (int)tm->V, (int)d, 1, tm->xg, (int)d, tm->W.out, (int)d, 0, tm->logits, (int)tm->V);
    REAL scale = grad_scale ? (REAL)(*grad_scale / tm->n_rows) : 0;
    pfor(tm, tm->n_rows, xent_rows, grad_scale ? &scale : NULL);
    double s = 0;
    for (int r = 0; r < tm->n_rows; r++) s += tm->row_loss[r];
    *loss = s / tm->n_rows;
    if (tm->gate_on && tm->n_rmod) {
        double g = 0, per = (double)tm->g_rows * tm->n_rmod;
        for (int i = 0; i < n; i++) g += tm->gce[i]; /* 0 outside the gate rows */
        tm->gate_ce = g / per;
        *loss += gl * tm->gate_ce;
        if (grad_scale) tm->gcoef = (REAL)(*grad_scale * gl / per);
    }
    if (!isfinite(*loss)) return rm_err(RAMOLE_ERR_RANGE, "training: the loss is %s", isnan(*loss) ? "NaN" : "infinite");
    return RAMOLE_OK;
}

rm_status TM_(loss)(TM_TYPE *tm, const rm_train_batch *b, double *loss) { return forward(tm, b, loss, NULL); }
double TM_(gate_ce)(const TM_TYPE *tm) { return tm->gate_ce; }

rm_status TM_(expert_losses)(TM_TYPE *tm, const rm_train_batch *b, double *out) {
    if (tm->kind != RM_TRAIN_ROUTER)
        return rm_err(RAMOLE_ERR_INVALID, "expert losses: a %s training model has no experts", rm_train_kind_name(tm->kind));
    rm_train_batch sb = *b;
    sb.gate_loss = 0;
    RM_TRY(check_batch(tm, &sb));
    return single_expert_losses(tm, &sb, out);
}

/* ---- backward ------------------------------------------------------------------------------- */

rm_status TM_(backward)(TM_TYPE *tm, const rm_train_batch *b, double grad_scale, double *loss) {
    RM_TRY(forward(tm, b, loss, &grad_scale));
    int n = b->B * b->T;
    size_t NM = (size_t)tm->max_b * tm->max_t;
    int64_t d = tm->d, f = tm->f;
    bool full = tm->kind == RM_TRAIN_FULL;
    /* head: dxg = dlogits W_out; dW_out += dlogits^T xg */
    mm(tm, false, false, tm->n_rows, (int)d, (int)tm->V, 1, tm->logits, (int)tm->V, tm->W.out, (int)d, 0, tm->dxn,
       (int)d);
    if (full)
        mm(tm, true, false, (int)tm->V, (int)d, tm->n_rows, 1, tm->logits, (int)tm->V, tm->xg, (int)d, 1, tm->G.out,
           (int)d);
    /* scatter into dxf (tm->dao as [N][d] scratch is too small if qd < d: use tmp) */
    REAL *dxf = tm->tmp;
    memset(dxf, 0, (size_t)n * d * sizeof(REAL));
    for (int r = 0; r < tm->n_rows; r++)
        memcpy(dxf + (size_t)tm->rows[r] * d, tm->dxn + (size_t)r * d, d * sizeof(REAL));
    memset(tm->dx, 0, (size_t)n * d * sizeof(REAL));
    rmsnorm_bwd(tm, tm->dx, full ? tm->G.out_norm : NULL, dxf, tm->x + (size_t)tm->L_ * NM * d, tm->rsf,
                tm->W.out_norm, n);
    for (int l = tm->L_ - 1; l >= 0; l--) {
        tm_layer *L = &tm->W.L[l], *GL = full ? &tm->G.L[l] : NULL;
        REAL *x = tm->x + l * NM * d, *xn1 = tm->xn1 + l * NM * d, *xn2 = tm->xn2 + l * NM * d;
        REAL *ao = tm->ao + l * NM * tm->qd, *xm = tm->xm + l * NM * d;
        REAL *g = tm->g + l * NM * f, *u = tm->u + l * NM * f, *h = tm->h + l * NM * f;
        REAL *sg = tm->sg + l * NM * f;
        /* MLP: dx is d(x_out) = d(xm) through the residual */
        proj_bwd(tm, l, RM_TARGET_DOWN, h, tm->dx, tm->dh, 0, n);
        lora_group_dx(tm, l, RM_TARGET_DOWN, 1, tm->dh, n);
        swiglu_job sj = {g, u, h, sg};
        pfor(tm, n, swiglu_bwd_rows, &sj);
        proj_bwd(tm, l, RM_TARGET_GATE, xn2, tm->dg, tm->dxn, 0, n);
        proj_bwd(tm, l, RM_TARGET_UP, xn2, tm->du, tm->dxn, 1, n);
        lora_group_dx(tm, l, RM_TARGET_GATE, 2, tm->dxn, n);
        rmsnorm_bwd(tm, tm->dx, GL ? GL->ffn_norm : NULL, tm->dxn, xm, tm->rs2 + l * NM, L->ffn_norm, n);
        /* attention */
        proj_bwd(tm, l, RM_TARGET_O, ao, tm->dx, tm->dao, 0, n);
        lora_group_dx(tm, l, RM_TARGET_O, 1, tm->dao, n);
        att_job aj = {l};
        double t0 = rm_time_now();
        pfor(tm, (int64_t)b->B * tm->cfg.n_kv_heads, att_bwd_items, &aj);
        tm->prof.attn_s += rm_time_now() - t0;
        tm->prof.attn_flop += 8.0 * b->B * tm->cfg.n_heads * (double)b->T * b->T * tm->cfg.head_dim;
        rope_job rj = {tm->dq, tm->dk, NULL, NULL, -1};
        pfor(tm, n, rope_rows, &rj);
        if (GL && GL->bq) {
            colsum(tm, GL->bq, tm->dq, tm->qd, n);
            colsum(tm, GL->bk, tm->dk, tm->kvd, n);
            colsum(tm, GL->bv, tm->dv, tm->kvd, n);
        }
        /* first layer with a frozen embedding (LORA, ROUTER): nothing below needs d(input) */
        REAL *dxn = l == 0 && !full ? NULL : tm->dxn;
        proj_bwd(tm, l, RM_TARGET_Q, xn1, tm->dq, dxn, 0, n);
        proj_bwd(tm, l, RM_TARGET_K, xn1, tm->dk, dxn, 1, n);
        proj_bwd(tm, l, RM_TARGET_V, xn1, tm->dv, dxn, 1, n);
        lora_group_dx(tm, l, RM_TARGET_Q, 3, dxn, n);
        if (dxn)
            rmsnorm_bwd(tm, tm->dx, GL ? GL->attn_norm : NULL, tm->dxn, x, tm->rs1 + l * NM, L->attn_norm, n);
    }
    if (full)
        for (int i = 0; i < n; i++) {
            REAL *ge = tm->G.embd + (size_t)b->tokens[i] * d;
            const REAL *dx = tm->dx + (size_t)i * d;
            for (int64_t c = 0; c < d; c++) ge[c] += dx[c];
        }
    return RAMOLE_OK;
}
