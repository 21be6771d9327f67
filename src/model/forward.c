/*
 * forward.c — the batched transformer step with a KV cache.
 *
 * One rm_ctx_decode runs n tokens (of one or many sequences) through the
 * model: every weight matrix is applied once to all n rows (one GEMM per
 * projection), attention reads each token's own sequence from the cache.
 * All buffers are sized for n_batch tokens at rm_ctx_new; the step itself
 * never allocates.
 *
 * Cache: paged (model/kv_cache.h). A batch first gets the blocks its
 * sequences grow into (all or nothing, in check_batch); attention then walks
 * each sequence's block table a block at a time, so within a block it
 * streams contiguous rows as a contiguous cache would.
 *
 * Adapters reach the forward only through the delta hook (rm_delta_ops):
 * after each projection it adds whatever the attached state computes, so
 * this file knows nothing of LoRA.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model/kv_cache.h"
#include "model/model.h"

struct rm_ctx {
    const rm_model *m;
    rm_ctx_params p;
    rm_pool *pool;
    bool own_pool;
    rm_compute comp;
    int kv_dim, q_dim;
    rm_kv_cache *kv;
    int32_t *seq_len;           /* [n_seq] filled positions */
    int32_t *seq_len_next;      /* [n_seq] scratch: seq_len after a valid batch */
    float *x, *xn;              /* [n_batch][hidden] */
    float *q, *att;             /* [n_batch][q_dim] */
    float *k, *v;               /* [n_batch][kv_dim] */
    float *gate, *up;           /* [n_batch][ffn] */
    float *scores;              /* [n_threads][n_ctx] */
    float *kvrow;               /* [n_threads][head_dim]: an f16 cache row widened */
    float *inv_freq;            /* [n_rot/2] */
    float *xo;                  /* [n_logits][hidden] */
    float *logits;              /* [n_logits][vocab] */
    int32_t *out_rows;          /* [n_logits] */
    float *hid;                 /* [n_batch][hidden] kept hidden states, or NULL */
    int hid_layer;              /* RM_HIDDEN_OFF, RM_HIDDEN_FINAL or 0..n_layers */
    int hid_n;                  /* rows of hid filled by the last decode */
    const rm_delta_ops *delta;  /* the attached delta hook, or NULL */
    void *delta_state;          /* borrowed */
    bool delta_on;              /* this step has tokens that need the delta */
    int n_out;
    size_t bytes;
    /* the batch being run, for the pool jobs */
    const rm_batch *batch;
    int layer;
    int n_run;                  /* rows the current layer runs: the batch, or all but its n_stop */
};

/* ---- creation ----------------------------------------------------------- */

static size_t max_work(const rm_model *m, int n_batch, int n_logits, int nt, int max_rank) {
    const rm_model_config *cfg = &m->cfg;
    size_t w = rm_matmul_work_size(m->output.type, n_logits, cfg->vocab_size, cfg->hidden, nt);
    if (max_rank > 0) { /* a delta's shrink and expand GEMMs (LoRA), f32 */
        int64_t dmax = rm_target_max_dim(cfg);
        size_t a = rm_matmul_work_size(RM_TYPE_F32, n_batch, max_rank, dmax, nt);
        size_t b = rm_matmul_work_size(RM_TYPE_F32, n_batch, dmax, max_rank, nt);
        if (a > w) w = a;
        if (b > w) w = b;
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            const rm_weight *lw = rm_layer_weight(&m->layers[l], (rm_target)t);
            size_t s = rm_matmul_work_size(lw->type, n_batch, lw->rows, lw->cols, nt);
            if (s > w) w = s;
        }
    }
    return w;
}

static void *ctx_alloc(rm_ctx *c, size_t n_floats, bool *ok) {
    size_t bytes;
    if (!rm_mul_ok(n_floats, sizeof(float), &bytes)) {
        *ok = false;
        return NULL;
    }
    void *p = rm_calloc(1, bytes ? bytes : 1);
    if (!p) *ok = false;
    c->bytes += bytes;
    return p;
}

rm_status rm_ctx_new(const rm_model *m, const rm_ctx_params *pp, rm_ctx **out) {
    *out = NULL;
    rm_ctx_params p = *pp;
    if (p.n_logits <= 0 || p.n_logits > p.n_batch) p.n_logits = p.n_batch;
    if (p.pool) p.n_threads = rm_pool_size(p.pool);
    if (p.n_threads <= 0) p.n_threads = rm_cpu_count();
    if (p.n_ctx <= 0 || p.n_seq <= 0 || p.n_batch <= 0)
        return rm_err(RAMOLE_ERR_INVALID, "context: n_ctx, n_seq and n_batch must be positive (got %d, %d, %d)",
                      p.n_ctx, p.n_seq, p.n_batch);
    if (p.kv_block <= 0) p.kv_block = RM_KV_BLOCK_DEFAULT;
    if (p.kv_blocks <= 0) { /* every sequence can reach n_ctx at once */
        int64_t per = ((int64_t)p.n_ctx + p.kv_block - 1) / p.kv_block;
        if (per * p.n_seq > INT32_MAX)
            return rm_err(RAMOLE_ERR_RANGE, "context: %d sequences of %d positions need too many KV blocks",
                          p.n_seq, p.n_ctx);
        p.kv_blocks = (int)(per * p.n_seq);
    }
    const rm_model_config *cfg = &m->cfg;
    rm_ctx *c = rm_calloc(1, sizeof *c);
    if (!c) return rm_err(RAMOLE_ERR_NOMEM, "context: out of memory");
    c->m = m;
    c->p = p;
    c->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    c->q_dim = cfg->n_heads * cfg->head_dim;
    rm_status st = RAMOLE_OK;
    c->pool = p.pool;
    c->own_pool = !p.pool;
    if (c->own_pool && (st = rm_pool_new(p.n_threads, &c->pool)) != RAMOLE_OK) {
        rm_free(c);
        return st;
    }
    bool ok = true;
    size_t nb = (size_t)p.n_batch;
    rm_kv_params kp = {.n_layers = cfg->n_layers, .kv_dim = c->kv_dim, .n_seq = p.n_seq, .n_ctx = p.n_ctx,
                       .block = p.kv_block, .n_blocks = p.kv_blocks, .type = p.kv_type};
    if ((st = rm_kv_new(&kp, &c->kv)) != RAMOLE_OK) {
        rm_ctx_free(c);
        return st;
    }
    c->bytes += rm_kv_bytes(c->kv);
    c->seq_len = rm_calloc((size_t)p.n_seq, sizeof *c->seq_len);
    c->seq_len_next = rm_calloc((size_t)p.n_seq, sizeof *c->seq_len_next);
    if (!c->seq_len || !c->seq_len_next) ok = false;
    c->x = ctx_alloc(c, nb * (size_t)cfg->hidden, &ok);
    c->xn = ctx_alloc(c, nb * (size_t)cfg->hidden, &ok);
    c->q = ctx_alloc(c, nb * (size_t)c->q_dim, &ok);
    c->att = ctx_alloc(c, nb * (size_t)c->q_dim, &ok);
    c->k = ctx_alloc(c, nb * (size_t)c->kv_dim, &ok);
    c->v = ctx_alloc(c, nb * (size_t)c->kv_dim, &ok);
    c->gate = ctx_alloc(c, nb * (size_t)cfg->ffn, &ok);
    c->up = ctx_alloc(c, nb * (size_t)cfg->ffn, &ok);
    c->scores = ctx_alloc(c, (size_t)p.n_threads * (size_t)p.n_ctx, &ok);
    c->kvrow = ctx_alloc(c, (size_t)p.n_threads * (size_t)cfg->head_dim, &ok);
    c->inv_freq = ctx_alloc(c, (size_t)cfg->rope.n_rot / 2, &ok);
    c->xo = ctx_alloc(c, (size_t)p.n_logits * (size_t)cfg->hidden, &ok);
    c->logits = ctx_alloc(c, (size_t)p.n_logits * (size_t)cfg->vocab_size, &ok);
    c->out_rows = rm_calloc((size_t)p.n_logits, sizeof *c->out_rows);
    if (!c->out_rows) ok = false;
    c->comp.pool = c->pool;
    c->hid_layer = RM_HIDDEN_OFF;
    c->comp.work_size = max_work(m, p.n_batch, p.n_logits, p.n_threads, p.scratch_rank);
    c->comp.work = rm_malloc(c->comp.work_size ? c->comp.work_size : 1);
    c->bytes += c->comp.work_size;
    if (!c->comp.work || !ok) {
        double mib = (double)c->bytes / (1 << 20);
        rm_ctx_free(c);
        return rm_err(RAMOLE_ERR_NOMEM, "context: out of memory (%.1f MiB requested; lower n_ctx or n_batch)", mib);
    }
    rm_rope_inv_freq(&cfg->rope, c->inv_freq);
    if (m->rope_freq_factors)
        for (int i = 0; i < cfg->rope.n_rot / 2; i++) c->inv_freq[i] /= m->rope_freq_factors[i];
    *out = c;
    return RAMOLE_OK;
}

void rm_ctx_free(rm_ctx *c) {
    if (!c) return;
    if (c->own_pool) rm_pool_free(c->pool);
    rm_kv_free(c->kv);
    float *bufs[] = {c->kvrow, c->x, c->xn, c->q, c->att, c->k, c->v, c->gate,
                     c->up, c->scores, c->inv_freq, c->xo, c->logits, c->hid};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rm_free(bufs[i]);
    rm_free(c->seq_len);
    rm_free(c->seq_len_next);
    rm_free(c->out_rows);
    rm_free(c->comp.work);
    rm_free(c);
}

const float *rm_ctx_logits(const rm_ctx *c, int i) {
    if (i < 0 || i >= c->n_out) return NULL;
    return c->logits + (size_t)i * (size_t)c->m->cfg.vocab_size;
}
int rm_ctx_n_logits(const rm_ctx *c) { return c->n_out; }
void rm_ctx_seq_clear(rm_ctx *c, int seq) {
    if (seq < 0 || seq >= c->p.n_seq) return;
    c->seq_len[seq] = 0;
    rm_kv_release(c->kv, seq);
}
int rm_ctx_seq_len(const rm_ctx *c, int seq) { return seq >= 0 && seq < c->p.n_seq ? c->seq_len[seq] : 0; }

rm_status rm_ctx_seq_put(rm_ctx *c, int seq, int n_pos, int n_layers, const rm_kv_rows *rows) {
    if (seq < 0 || seq >= c->p.n_seq || c->seq_len[seq] || n_pos <= 0 || n_pos > c->p.n_ctx || n_layers < 0 ||
        n_layers > c->m->cfg.n_layers || n_pos > rows->n_pos || n_layers > rows->n_layers)
        return rm_err(RAMOLE_ERR_RANGE, "KV put: sequence %d (holding %d positions), %d positions of %d layers",
                      seq, seq >= 0 && seq < c->p.n_seq ? c->seq_len[seq] : 0, n_pos, n_layers);
    RM_TRY(rm_kv_grow(c->kv, seq, n_pos));
    rm_kv_put_rows(c->kv, seq, n_pos, n_layers, rows);
    c->seq_len[seq] = n_pos;
    return RAMOLE_OK;
}
rm_status rm_ctx_seq_copy(rm_ctx *c, int src, int dst, int n_pos) {
    if (src < 0 || src >= c->p.n_seq || dst < 0 || dst >= c->p.n_seq || src == dst || c->seq_len[dst] || n_pos <= 0 ||
        n_pos > c->seq_len[src])
        return rm_err(RAMOLE_ERR_RANGE, "KV copy: %d positions of sequence %d (holding %d) into %d", n_pos, src,
                      src >= 0 && src < c->p.n_seq ? c->seq_len[src] : 0, dst);
    RM_TRY(rm_kv_grow(c->kv, dst, n_pos));
    rm_kv_copy_rows(c->kv, src, dst, n_pos);
    c->seq_len[dst] = n_pos;
    return RAMOLE_OK;
}
const rm_kv_cache *rm_ctx_kv(const rm_ctx *c) { return c->kv; }
size_t rm_ctx_bytes(const rm_ctx *c) { return c->bytes; }
rm_pool *rm_ctx_pool(rm_ctx *c) { return c->pool; }
const rm_model *rm_ctx_model(const rm_ctx *c) { return c->m; }
const rm_ctx_params *rm_ctx_get_params(const rm_ctx *c) { return &c->p; }

void rm_ctx_set_delta(rm_ctx *c, const rm_delta_ops *ops, void *state) {
    c->delta = ops;
    c->delta_state = ops ? state : NULL;
    c->delta_on = false;
}

rm_status rm_ctx_keep_hidden(rm_ctx *c, int layer) {
    if (layer == RM_HIDDEN_OFF) {
        c->hid_layer = RM_HIDDEN_OFF;
        c->hid_n = 0;
        return RAMOLE_OK;
    }
    if (layer != RM_HIDDEN_FINAL && (layer < 0 || layer > c->m->cfg.n_layers))
        return rm_err(RAMOLE_ERR_RANGE, "hidden states of layer %d: the model has layers 0..%d (or the final norm)",
                      layer, c->m->cfg.n_layers);
    if (!c->hid) {
        size_t n = (size_t)c->p.n_batch * (size_t)c->m->cfg.hidden;
        c->hid = rm_malloc(n * sizeof(float));
        if (!c->hid) return rm_err(RAMOLE_ERR_NOMEM, "context: out of memory for hidden states");
        c->bytes += n * sizeof(float);
    }
    c->hid_layer = layer;
    c->hid_n = 0;
    return RAMOLE_OK;
}

const float *rm_ctx_hidden(const rm_ctx *c, int i) {
    if (c->hid_layer == RM_HIDDEN_OFF || i < 0 || i >= c->hid_n) return NULL;
    return c->hid + (size_t)i * (size_t)c->m->cfg.hidden;
}

/* ---- row-parallel element-wise work ---------------------------------------- */

typedef enum { ROWS_RMSNORM, ROWS_SWIGLU, ROWS_ROPE_BIAS } rows_kind;

typedef struct {
    rm_ctx *c;
    rows_kind kind;
    int n;
    float *dst;
    const float *src, *w;
    int64_t width;
} rows_job;

static void rope_bias_row(rm_ctx *c, int i) {
    const rm_model_config *cfg = &c->m->cfg;
    const rm_layer *L = &c->m->layers[c->layer];
    float *q = c->q + (size_t)i * (size_t)c->q_dim;
    float *k = c->k + (size_t)i * (size_t)c->kv_dim;
    if (L->bq) {
        rm_vec_add(q, L->bq, c->q_dim);
        rm_vec_add(k, L->bk, c->kv_dim);
        rm_vec_add(c->v + (size_t)i * (size_t)c->kv_dim, L->bv, c->kv_dim);
    }
    int64_t pos = c->batch->pos[i];
    rm_rope(q, cfg->n_heads, cfg->head_dim, pos, &cfg->rope, c->inv_freq);
    rm_rope(k, cfg->n_kv_heads, cfg->head_dim, pos, &cfg->rope, c->inv_freq);
}

static void rows_run(void *arg, int ith, int nth) {
    rows_job *j = arg;
    int64_t lo, hi;
    rm_split(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        size_t off = (size_t)i * (size_t)j->width;
        switch (j->kind) {
        case ROWS_RMSNORM:
            rm_rmsnorm(j->dst + off, j->src + off, j->w, j->width, j->c->m->cfg.rms_eps);
            break;
        case ROWS_SWIGLU:
            rm_swiglu(j->dst + off, j->dst + off, j->src + off, j->width);
            break;
        case ROWS_ROPE_BIAS:
            rope_bias_row(j->c, (int)i);
            break;
        }
    }
}

static void rows(rm_ctx *c, rows_kind kind, int n, float *dst, const float *src, const float *w,
                 int64_t width) {
    rows_job j = {c, kind, n, dst, src, w, width};
    rm_pool_run(n > 1 ? c->pool : NULL, rows_run, &j);
}

/* ---- attention ------------------------------------------------------------ */

/* Scores of query q against one block's K rows of head kvh (f32 or f16). */
static void block_scores(const rm_ctx *c, float *scores, const float *q, const void *rows, int n, int kvh,
                         float scale, float *wide) {
    int hd = c->m->cfg.head_dim;
    if (c->p.kv_type == RM_TYPE_F16) {
        const uint16_t *k = (const uint16_t *)rows + (size_t)kvh * hd;
        for (int t = 0; t < n; t++) {
            rm_convert(RM_TYPE_F32, wide, RM_TYPE_F16, k + (size_t)t * c->kv_dim, hd);
            scores[t] = rm_vec_dot(q, wide, hd) * scale;
        }
        return;
    }
    const float *k = (const float *)rows + (size_t)kvh * hd;
    for (int t = 0; t < n; t++) scores[t] = rm_vec_dot(q, k + (size_t)t * c->kv_dim, hd) * scale;
}

/* o += sum_t w[t] V[t] over one block's V rows of head kvh. */
static void block_values(const rm_ctx *c, float *o, const float *w, const void *rows, int n, int kvh, float *wide) {
    int hd = c->m->cfg.head_dim;
    if (c->p.kv_type == RM_TYPE_F16) {
        const uint16_t *v = (const uint16_t *)rows + (size_t)kvh * hd;
        for (int t = 0; t < n; t++) {
            rm_convert(RM_TYPE_F32, wide, RM_TYPE_F16, v + (size_t)t * c->kv_dim, hd);
            rm_vec_axpy(o, w[t], wide, hd);
        }
        return;
    }
    const float *v = (const float *)rows + (size_t)kvh * hd;
    for (int t = 0; t < n; t++) rm_vec_axpy(o, w[t], v + (size_t)t * c->kv_dim, hd);
}

static void attention_run(void *arg, int ith, int nth) {
    rm_ctx *c = arg;
    const rm_model_config *cfg = &c->m->cfg;
    const rm_batch *b = c->batch;
    int H = cfg->n_heads, hd = cfg->head_dim, group = cfg->n_heads / cfg->n_kv_heads, bs = c->p.kv_block;
    float scale = 1.0f / sqrtf((float)hd);
    float *scores = c->scores + (size_t)ith * (size_t)c->p.n_ctx;
    float *wide = c->kvrow + (size_t)ith * (size_t)hd;
    int64_t lo, hi;
    rm_split((int64_t)c->n_run * H, ith, nth, &lo, &hi);
    for (int64_t w = lo; w < hi; w++) {
        int i = (int)(w / H), h = (int)(w % H), kvh = h / group;
        int seq = b->seq[i], n_pos = b->pos[i] + 1;
        const float *q = c->q + (size_t)i * (size_t)c->q_dim + (size_t)h * hd;
        for (int t0 = 0, bi = 0; t0 < n_pos; t0 += bs, bi++) {
            int n = n_pos - t0 < bs ? n_pos - t0 : bs;
            block_scores(c, scores + t0, q, rm_kv_block_rows(c->kv, false, c->layer, seq, bi), n, kvh, scale, wide);
        }
        rm_softmax(scores, n_pos);
        float *o = c->att + (size_t)i * (size_t)c->q_dim + (size_t)h * hd;
        memset(o, 0, (size_t)hd * sizeof *o);
        for (int t0 = 0, bi = 0; t0 < n_pos; t0 += bs, bi++) {
            int n = n_pos - t0 < bs ? n_pos - t0 : bs;
            block_values(c, o, scores + t0, rm_kv_block_rows(c->kv, true, c->layer, seq, bi), n, kvh, wide);
        }
    }
}

/* ---- the step ------------------------------------------------------------------ */

static rm_status check_batch(rm_ctx *c, const rm_batch *b) {
    const rm_model_config *cfg = &c->m->cfg;
    if (b->n_tokens <= 0 || b->n_tokens > c->p.n_batch)
        return rm_err(RAMOLE_ERR_INVALID, "batch of %d tokens (this context takes 1 to %d)", b->n_tokens,
                      c->p.n_batch);
    int n_out = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= cfg->vocab_size)
            return rm_err(RAMOLE_ERR_RANGE, "token id %d at batch index %d is out of range (vocabulary of %d)",
                          b->tokens[i], i, cfg->vocab_size);
        if (b->seq[i] < 0 || b->seq[i] >= c->p.n_seq)
            return rm_err(RAMOLE_ERR_RANGE, "sequence %d at batch index %d is out of range (%d sequences)",
                          b->seq[i], i, c->p.n_seq);
        if (b->pos[i] < 0 || b->pos[i] >= c->p.n_ctx)
            return rm_err(RAMOLE_ERR_RANGE, "position %d at batch index %d exceeds the context of %d tokens",
                          b->pos[i], i, c->p.n_ctx);
        if (b->want_logits ? b->want_logits[i] != 0 : i == b->n_tokens - 1) n_out++;
    }
    if (n_out > c->p.n_logits)
        return rm_err(RAMOLE_ERR_INVALID, "%d tokens want logits (this context keeps at most %d)", n_out, c->p.n_logits);
    if (b->n_stop) {
        if (b->n_stop < 0 || b->n_stop > b->n_tokens)
            return rm_err(RAMOLE_ERR_INVALID, "n_stop %d of a batch of %d tokens", b->n_stop, b->n_tokens);
        if (c->hid_layer < 0)
            return rm_err(RAMOLE_ERR_INVALID, "rows of n_stop stop at the kept hidden layer; this context keeps %s",
                          c->hid_layer == RM_HIDDEN_FINAL ? "the final one" : "none");
        for (int i = b->n_tokens - b->n_stop; i < b->n_tokens; i++)
            if (b->want_logits ? b->want_logits[i] != 0 : i == b->n_tokens - 1)
                return rm_err(RAMOLE_ERR_INVALID, "batch index %d wants logits but stops at layer %d (n_stop %d)", i,
                              c->hid_layer, b->n_stop);
    }
    /* Each sequence continues where its cache ends (or rewinds into it);
     * the cache lengths change only once the whole batch is known valid. */
    int32_t *next = c->seq_len_next;
    memcpy(next, c->seq_len, (size_t)c->p.n_seq * sizeof *next);
    for (int i = 0; i < b->n_tokens; i++) {
        int s = b->seq[i];
        if (b->pos[i] > next[s])
            return rm_err(RAMOLE_ERR_INVALID, "position %d of sequence %d leaves a gap (cache holds %d positions)",
                          b->pos[i], s, next[s]);
        next[s] = b->pos[i] + 1;
    }
    /* room in the paged cache for every sequence's new length, all or none */
    int short_total = 0;
    for (int s = 0; s < c->p.n_seq; s++)
        if (next[s] != c->seq_len[s]) short_total += rm_kv_blocks_short(c->kv, s, next[s]);
    if (short_total > rm_kv_free_blocks(c->kv))
        return rm_err(RAMOLE_ERR_RANGE, "the KV cache has %d free blocks; this batch needs %d more",
                      rm_kv_free_blocks(c->kv), short_total);
    for (int s = 0; s < c->p.n_seq; s++)
        if (next[s] != c->seq_len[s]) RM_TRY(rm_kv_grow(c->kv, s, next[s]));
    memcpy(c->seq_len, next, (size_t)c->p.n_seq * sizeof *next);
    return RAMOLE_OK;
}

/* y = x W^T for layer-module (layer, t), plus the attached delta. */
static void project(rm_ctx *c, float *y, const float *x, int n, rm_target t) {
    const rm_weight *w = rm_layer_weight(&c->m->layers[c->layer], t);
    rm_matmul_packed(&c->comp, y, x, n, w->data, w->packed, w->type, w->rows, w->cols);
    if (c->delta_on) c->delta->apply(c->delta_state, &c->comp, c->layer, t, x, y);
}

rm_status rm_ctx_decode(rm_ctx *c, const rm_batch *b) {
    const rm_model *m = c->m;
    const rm_model_config *cfg = &m->cfg;
    c->hid_n = 0; /* a refused batch leaves no rows of an earlier one readable */
    RM_TRY(check_batch(c, b));
    int n = b->n_tokens;
    int64_t d = cfg->hidden;
    c->batch = b;
    c->delta_on = c->delta && c->delta->plan(c->delta_state, n, b->seq);

    for (int i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)m->tok_embd.data +
                             (size_t)b->tokens[i] * rm_type_row_bytes(m->tok_embd.type, d);
        rm_convert(RM_TYPE_F32, c->x + (size_t)i * d, m->tok_embd.type, row, d);
    }
    if (c->hid_layer == 0) memcpy(c->hid, c->x, (size_t)n * (size_t)d * sizeof(float));

    /* in an embeddings-only context, a batch that wants no logits, only
     * the hidden state of an inner layer (an embedder reading layer l),
     * stops after that layer: the layers above it would change neither.
     * Their KV stays unwritten, hence the context's own flag. */
    bool any_logits = !b->want_logits || !c->p.hidden_only;
    for (int i = 0; i < n && !any_logits; i++) any_logits = b->want_logits[i] != 0;
    int last = !any_logits && c->hid_layer >= 0 ? c->hid_layer : cfg->n_layers;
    int nr = c->hid_layer == 0 ? n - b->n_stop : n; /* rows that run this layer */
    for (int l = 0; l < last; l++) {
        c->n_run = nr;
        const rm_layer *L = &m->layers[l];
        c->layer = l;
        rows(c, ROWS_RMSNORM, nr, c->xn, c->x, L->attn_norm, d);
        project(c, c->q, c->xn, nr, RM_TARGET_Q);
        project(c, c->k, c->xn, nr, RM_TARGET_K);
        project(c, c->v, c->xn, nr, RM_TARGET_V);
        rows(c, ROWS_ROPE_BIAS, nr, NULL, NULL, NULL, 0);
        for (int i = 0; i < nr; i++)
            rm_kv_store(c->kv, l, b->seq[i], b->pos[i], c->k + (size_t)i * c->kv_dim, c->v + (size_t)i * c->kv_dim);
        rm_pool_run(c->pool, attention_run, c);
        project(c, c->xn, c->att, nr, RM_TARGET_O);
        rm_vec_add(c->x, c->xn, (int64_t)nr * d);
        rows(c, ROWS_RMSNORM, nr, c->xn, c->x, L->ffn_norm, d);
        project(c, c->gate, c->xn, nr, RM_TARGET_GATE);
        project(c, c->up, c->xn, nr, RM_TARGET_UP);
        rows(c, ROWS_SWIGLU, nr, c->gate, c->up, NULL, cfg->ffn);
        project(c, c->xn, c->gate, nr, RM_TARGET_DOWN);
        rm_vec_add(c->x, c->xn, (int64_t)nr * d);
        if (c->hid_layer == l + 1) {
            memcpy(c->hid, c->x, (size_t)nr * (size_t)d * sizeof(float));
            nr = n - b->n_stop; /* the last n_stop rows are done (embeddings of this layer) */
        }
    }
    if (c->hid_layer == RM_HIDDEN_FINAL) rows(c, ROWS_RMSNORM, n, c->hid, c->x, m->out_norm, d);
    if (c->hid_layer != RM_HIDDEN_OFF) c->hid_n = n;

    c->n_out = 0;
    for (int i = 0; i < n; i++) {
        bool want = b->want_logits ? b->want_logits[i] != 0 : i == n - 1;
        if (!want) continue;
        memcpy(c->xo + (size_t)c->n_out * d, c->x + (size_t)i * d, (size_t)d * sizeof(float));
        c->out_rows[c->n_out++] = i;
    }
    rows(c, ROWS_RMSNORM, c->n_out, c->xo, c->xo, m->out_norm, d);
    rm_matmul_packed(&c->comp, c->logits, c->xo, c->n_out, m->output.data, m->output.packed, m->output.type,
                     m->output.rows, m->output.cols);
    c->batch = NULL;
    return RAMOLE_OK;
}
