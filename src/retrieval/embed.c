/*
 * embed.c — the embedder: texts -> instruction-prefixed token sequences ->
 * one decode of many sequences with the chosen layer's hidden states kept
 * (or the runner's forward) -> pooled rows -> projection and normalisation
 * (see embed.h).
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "retrieval/embed.h"
#include "tokenizer/tokenizer.h"

static const char *const pooling_names[RM_POOL_COUNT] = {"mean", "mean_all", "last"};

const char *rm_pooling_name(rm_pooling p) {
    return (unsigned)p < RM_POOL_COUNT ? pooling_names[p] : "?";
}

bool rm_pooling_from_name(const char *s, rm_pooling *out) {
    for (int i = 0; i < RM_POOL_COUNT; i++)
        if (s && !strcmp(s, pooling_names[i])) {
            *out = (rm_pooling)i;
            return true;
        }
    return false;
}

void rm_embed_opts_default(rm_embed_opts *o) {
    memset(o, 0, sizeof *o);
    o->prefix = RM_EMBED_PREFIX;
    o->layer = RM_HIDDEN_FINAL;
    o->pooling = RM_POOL_MEAN;
}

/* ---- vectors ------------------------------------------------------------------ */

static void normalise_d(const double *z, int n, float *out) {
    double s = 0;
    for (int i = 0; i < n; i++) s += z[i] * z[i];
    double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
    for (int i = 0; i < n; i++) out[i] = (float)(z[i] * inv);
}

void rm_projection_apply(const rm_projection *p, int hidden, const float *h, float *out) {
    if (!p) {
        double s = 0;
        for (int i = 0; i < hidden; i++) s += (double)h[i] * h[i];
        double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (int i = 0; i < hidden; i++) out[i] = (float)(h[i] * inv);
        return;
    }
    double s = 0;
    for (int r = 0; r < p->dim; r++) {
        const float *w = p->w + (size_t)r * (size_t)hidden;
        double z = 0;
        for (int i = 0; i < hidden; i++) z += (double)w[i] * h[i];
        out[r] = (float)z;
        s += z * z;
    }
    double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
    for (int r = 0; r < p->dim; r++) out[r] = (float)(out[r] * inv);
}

void rm_embed_mean(const float *vecs, int dim, const int *rows, int n, double *acc, float *out) {
    memset(acc, 0, (size_t)dim * sizeof *acc);
    for (int j = 0; j < n; j++) {
        const float *v = vecs + (size_t)(rows ? rows[j] : j) * (size_t)dim;
        for (int i = 0; i < dim; i++) acc[i] += v[i];
    }
    normalise_d(acc, dim, out);
}

/* ---- the embedder ---------------------------------------------------------------- */

struct rm_embedder {
    const rm_model *m;
    const rm_tok *tok;
    const rm_projection *proj;
    rm_ctx *ctx;              /* NULL with a runner */
    rm_embed_run_fn run;
    void *run_user;
    char *prefix;
    size_t prefix_len;
    int layer;
    rm_pooling pooling;
    int max_tokens, n_seq, n_batch, hidden;
    int32_t *prefix_ids;      /* encode(prefix) with specials */
    int n_prefix;
    rm_tok_ids ids;           /* encode scratch */
    /* the batch being gathered */
    int32_t *tokens, *pos, *seq;
    uint8_t *want;            /* all 0: no logits */
    int n_tok, n_text;
    int *text_off, *text_len, *text_start, *text_index; /* [n_seq] */
    double *acc;              /* [hidden] */
    atomic_int n_cut;
};

void rm_embedder_free(rm_embedder *e) {
    if (!e) return;
    rm_ctx_free(e->ctx);
    rm_free(e->prefix);
    rm_free(e->prefix_ids);
    rm_tok_ids_free(&e->ids);
    rm_free(e->tokens);
    rm_free(e->pos);
    rm_free(e->seq);
    rm_free(e->want);
    rm_free(e->text_off);
    rm_free(e->text_len);
    rm_free(e->text_start);
    rm_free(e->text_index);
    rm_free(e->acc);
    rm_free(e);
}

int rm_embedder_dim(const rm_embedder *e) { return e->proj ? e->proj->dim : e->hidden; }
int rm_embedder_hidden(const rm_embedder *e) { return e->hidden; }
int rm_embedder_n_cut(const rm_embedder *e) { return atomic_load(&((rm_embedder *)e)->n_cut); }

rm_status rm_embedder_new(const rm_model *base, const rm_tok *tok, const rm_embed_opts *opts,
                          const rm_projection *proj, rm_embedder **out) {
    *out = NULL;
    rm_embed_opts o;
    if (opts) o = *opts;
    else rm_embed_opts_default(&o);
    if (!tok) return rm_err(RAMOLE_ERR_INVALID, "embedder: the model %s has no tokenizer", base->path ? base->path : "");
    const rm_model_config *cfg = &base->cfg;
    if (rm_tok_vocab_size(tok) > cfg->vocab_size)
        return rm_err(RAMOLE_ERR_MISMATCH, "embedder: the tokenizer has %d tokens, the model's vocabulary %d",
                      rm_tok_vocab_size(tok), cfg->vocab_size);
    if (proj) {
        if (proj->hidden != cfg->hidden || proj->base_fingerprint != rm_model_fingerprint(base))
            return rm_err(RAMOLE_ERR_MISMATCH, "embedder: the projection was made for another base model");
        o.prefix = proj->prefix;
        o.layer = proj->layer;
        o.pooling = proj->pooling;
    }
    if (!o.prefix) o.prefix = RM_EMBED_PREFIX;
    if (o.layer != RM_HIDDEN_FINAL && (o.layer < 0 || o.layer > cfg->n_layers))
        return rm_err(RAMOLE_ERR_RANGE, "embedder: layer %d (the model has layers 0..%d, or the final norm)", o.layer,
                      cfg->n_layers);
    if ((unsigned)o.pooling >= RM_POOL_COUNT) return rm_err(RAMOLE_ERR_INVALID, "embedder: unknown pooling %d", o.pooling);
    if (o.max_tokens <= 0) o.max_tokens = cfg->max_pos < 512 ? cfg->max_pos : 512;
    if (o.max_tokens > cfg->max_pos)
        return rm_err(RAMOLE_ERR_RANGE, "embedder: %d tokens per text exceed the model's context of %d", o.max_tokens,
                      cfg->max_pos);
    if (o.run && o.run_max_tokens > 0 && o.run_max_tokens < o.max_tokens) o.max_tokens = o.run_max_tokens;
    if (o.n_seq <= 0) o.n_seq = 16;
    if (o.n_batch <= 0) o.n_batch = o.max_tokens > 1024 ? o.max_tokens : 1024;
    if (o.n_batch < o.max_tokens) o.n_batch = o.max_tokens;

    rm_embedder *e = rm_calloc(1, sizeof *e);
    if (!e) return rm_err(RAMOLE_ERR_NOMEM, "embedder: out of memory");
    e->m = base, e->tok = tok, e->proj = proj;
    e->layer = o.layer, e->pooling = o.pooling;
    e->max_tokens = o.max_tokens, e->n_seq = o.n_seq, e->n_batch = o.n_batch, e->hidden = cfg->hidden;
    e->run = o.run, e->run_user = o.run_user;
    e->prefix = rm_strdup(o.prefix);
    e->prefix_len = strlen(o.prefix);
    size_t nb = (size_t)o.n_batch, ns = (size_t)o.n_seq;
    e->tokens = rm_malloc(nb * sizeof *e->tokens);
    e->pos = rm_malloc(nb * sizeof *e->pos);
    e->seq = rm_malloc(nb * sizeof *e->seq);
    e->want = rm_calloc(nb, 1);
    e->text_off = rm_malloc(ns * sizeof(int));
    e->text_len = rm_malloc(ns * sizeof(int));
    e->text_start = rm_malloc(ns * sizeof(int));
    e->text_index = rm_malloc(ns * sizeof(int));
    e->acc = rm_malloc((size_t)cfg->hidden * sizeof *e->acc);
    rm_status st = RAMOLE_OK;
    if (!e->prefix || !e->tokens || !e->pos || !e->seq || !e->want || !e->text_off || !e->text_len ||
        !e->text_start || !e->text_index || !e->acc) {
        st = rm_err(RAMOLE_ERR_NOMEM, "embedder: out of memory");
        goto fail;
    }
    if ((st = rm_tok_encode(tok, e->prefix, e->prefix_len, RM_TOK_ADD_SPECIAL, &e->ids)) != RAMOLE_OK) goto fail;
    e->n_prefix = (int)e->ids.n;
    if (e->n_prefix >= e->max_tokens) {
        st = rm_err(RAMOLE_ERR_RANGE, "embedder: the instruction prefix takes %d tokens, leaving none of the %d per text",
                    e->n_prefix, e->max_tokens);
        goto fail;
    }
    e->prefix_ids = rm_malloc((size_t)(e->n_prefix ? e->n_prefix : 1) * sizeof *e->prefix_ids);
    if (!e->prefix_ids) {
        st = rm_err(RAMOLE_ERR_NOMEM, "embedder: out of memory");
        goto fail;
    }
    memcpy(e->prefix_ids, e->ids.ids, (size_t)e->n_prefix * sizeof *e->prefix_ids);
    if (e->run) { /* the runner owns the forwards */
        *out = e;
        return RAMOLE_OK;
    }
    rm_ctx_params cp = {.n_ctx = o.max_tokens, .n_seq = o.n_seq, .n_batch = o.n_batch, .n_logits = 1,
                        .n_threads = o.n_threads, .pool = o.pool, .hidden_only = true};
    if ((st = rm_ctx_new(base, &cp, &e->ctx)) != RAMOLE_OK) goto fail;
    if ((st = rm_ctx_keep_hidden(e->ctx, o.layer)) != RAMOLE_OK) goto fail;
    *out = e;
    return RAMOLE_OK;
fail:
    rm_embedder_free(e);
    return st;
}

/* Encode PREFIX + text into ids (cut to max_tokens); *start is the first
 * token of the text's own (see embed.h). */
static rm_status encode_text(rm_embedder *e, const char *text, int t, char **joint, size_t *cap, rm_tok_ids *ids,
                             int *start) {
    size_t len = strlen(text), need = e->prefix_len + len + 1;
    if (need > *cap) {
        char *p = rm_realloc(*joint, need);
        if (!p) return rm_err(RAMOLE_ERR_NOMEM, "embedder: out of memory");
        *joint = p, *cap = need;
    }
    memcpy(*joint, e->prefix, e->prefix_len);
    memcpy(*joint + e->prefix_len, text, len + 1);
    rm_status st = rm_tok_encode(e->tok, *joint, e->prefix_len + len, RM_TOK_ADD_SPECIAL, ids);
    if (st != RAMOLE_OK) return rm_err_prefix(st, "embedder: text %d", t);
    int nt = (int)ids->n, s = 0;
    while (s < nt && s < e->n_prefix && ids->ids[s] == e->prefix_ids[s]) s++;
    if (nt > e->max_tokens) {
        ids->n = (size_t)e->max_tokens;
        atomic_fetch_add(&e->n_cut, 1);
    }
    if (!ids->n) return rm_err(RAMOLE_ERR_INVALID, "embedder: text %d encodes to no tokens", t);
    *start = s;
    return RAMOLE_OK;
}

/* The first pooled token of a text of nt tokens whose own start at `start`
 * (flush pools the same rows). */
static int pool_from(const rm_embedder *e, int nt, int start) {
    if (e->pooling == RM_POOL_MEAN_ALL) return 0;
    if (e->pooling == RM_POOL_LAST || start >= nt) return nt - 1;
    return start;
}

/* Run the gathered texts and write their pooled rows. */
static rm_status flush(rm_embedder *e, float *out) {
    if (!e->n_text) return RAMOLE_OK;
    for (int s = 0; s < e->n_text; s++) rm_ctx_seq_clear(e->ctx, s);
    rm_batch b = {e->n_tok, e->tokens, e->pos, e->seq, e->want};
    RM_TRY(rm_ctx_decode(e->ctx, &b));
    int d = e->hidden;
    for (int s = 0; s < e->n_text; s++) {
        int lo = e->text_off[s] + pool_from(e, e->text_len[s], e->text_start[s]), hi = e->text_off[s] + e->text_len[s];
        memset(e->acc, 0, (size_t)d * sizeof *e->acc);
        for (int i = lo; i < hi; i++) {
            const float *h = rm_ctx_hidden(e->ctx, i);
            if (!h) return rm_err(RAMOLE_ERR_INTERNAL, "embedder: no hidden state for batch row %d", i);
            for (int k = 0; k < d; k++) e->acc[k] += h[k];
        }
        float *o = out + (size_t)e->text_index[s] * (size_t)d;
        double inv = 1.0 / (double)(hi - lo);
        for (int k = 0; k < d; k++) o[k] = (float)(e->acc[k] * inv);
    }
    e->n_tok = e->n_text = 0;
    return RAMOLE_OK;
}

/* With a runner: every text's tokens at once, in local buffers, so that
 * several threads may embed at the same time. */
static rm_status pool_by_runner(rm_embedder *e, const char *const *texts, int n, float *out) {
    if (n <= 0) return RAMOLE_OK;
    rm_tok_ids *ids = rm_calloc((size_t)n, sizeof *ids);
    const int32_t **toks = rm_malloc((size_t)n * sizeof *toks);
    int *nt = rm_malloc((size_t)n * sizeof *nt), *from = rm_malloc((size_t)n * sizeof *from);
    int *shared = rm_malloc((size_t)n * sizeof *shared);
    char *joint = NULL;
    size_t cap = 0;
    rm_status st = ids && toks && nt && from && shared ? RAMOLE_OK
                                                       : rm_err(RAMOLE_ERR_NOMEM, "embedder: out of memory");
    for (int t = 0; st == RAMOLE_OK && t < n; t++) {
        int start = 0;
        st = encode_text(e, texts[t] ? texts[t] : "", t, &joint, &cap, &ids[t], &start);
        if (st != RAMOLE_OK) break;
        toks[t] = ids[t].ids;
        nt[t] = (int)ids[t].n;
        from[t] = pool_from(e, nt[t], start);
        /* the prefix's own tokens, never past the pooled rows or a cut */
        shared[t] = start < from[t] ? start : from[t];
    }
    if (st == RAMOLE_OK) st = e->run(e->run_user, n, toks, nt, from, shared, e->layer, out);
    for (int t = 0; ids && t < n; t++) rm_tok_ids_free(&ids[t]);
    rm_free(ids), rm_free(toks), rm_free(nt), rm_free(from), rm_free(shared), rm_free(joint);
    return st;
}

rm_status rm_embedder_pool(rm_embedder *e, const char *const *texts, int n, float *out) {
    if (e->run) return pool_by_runner(e, texts, n, out);
    e->n_tok = e->n_text = 0;
    char *joint = NULL;
    size_t cap = 0;
    rm_status st = RAMOLE_OK;
    for (int t = 0; t < n; t++) {
        int start = 0;
        if ((st = encode_text(e, texts[t] ? texts[t] : "", t, &joint, &cap, &e->ids, &start)) != RAMOLE_OK) break;
        int nt = (int)e->ids.n;
        if (e->n_text == e->n_seq || e->n_tok + nt > e->n_batch)
            if ((st = flush(e, out)) != RAMOLE_OK) break;
        int s = e->n_text++;
        e->text_off[s] = e->n_tok, e->text_len[s] = nt, e->text_start[s] = start, e->text_index[s] = t;
        for (int i = 0; i < nt; i++) {
            e->tokens[e->n_tok + i] = e->ids.ids[i];
            e->pos[e->n_tok + i] = i;
            e->seq[e->n_tok + i] = s;
        }
        e->n_tok += nt;
    }
    if (st == RAMOLE_OK) st = flush(e, out);
    e->n_tok = e->n_text = 0;
    rm_free(joint);
    return st;
}

rm_status rm_embedder_embed(rm_embedder *e, const char *const *texts, int n, float *out) {
    enum { CHUNK = 64 };
    float *h = rm_malloc((size_t)CHUNK * (size_t)e->hidden * sizeof *h);
    if (!h) return rm_err(RAMOLE_ERR_NOMEM, "embedder: out of memory");
    int dim = rm_embedder_dim(e);
    rm_status st = RAMOLE_OK;
    for (int s = 0; s < n && st == RAMOLE_OK; s += CHUNK) {
        int c = n - s < CHUNK ? n - s : CHUNK;
        if ((st = rm_embedder_pool(e, texts + s, c, h)) != RAMOLE_OK) break;
        for (int i = 0; i < c; i++)
            rm_projection_apply(e->proj, e->hidden, h + (size_t)i * e->hidden, out + (size_t)(s + i) * (size_t)dim);
    }
    rm_free(h);
    return st;
}
