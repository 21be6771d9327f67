/*
 * data.c — JSONL examples and packed text for the trainers (see data.h for
 * the format contract with `ramole generate -p INPUT`).
 *
 * Design: a dataset is a flat array of examples, each owning its token ids;
 * batches are filled from index lists into caller-owned buffers (allocated
 * once by rm_batchbuf_init), so a training loop allocates nothing per step.
 * JSON lines are parsed with jansson one line at a time so that every
 * message carries the 1-based line number.
 */
#include "train/data.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int32_t rm_data_eos(const rm_tok *tok, int32_t fallback) {
    if (!tok) return fallback;
    int32_t e = rm_tok_eos(tok);
    if (e >= 0) return e;
    int32_t V = rm_tok_vocab_size(tok);
    for (int32_t i = 0; i < V; i++)
        if (rm_tok_is_special(tok, i) && rm_tok_is_eog(tok, i)) return i;
    return fallback;
}

static void example_clear(rm_example *e) {
    rm_free(e->tokens);
    for (int i = 0; i < e->n_adapters; i++) rm_free(e->adapters[i]);
    rm_free(e->adapters);
    rm_free(e->scores);
    memset(e, 0, sizeof *e);
}

void rm_dataset_free(rm_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) example_clear(&d->ex[i]);
    rm_free(d->ex);
    rm_free(d);
}

static rm_status ds_push(rm_dataset *d, rm_example *e) {
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 64;
        rm_example *x = rm_realloc(d->ex, (size_t)cap * sizeof *x);
        if (!x) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        d->ex = x, d->cap = cap;
    }
    d->ex[d->n++] = *e;
    memset(e, 0, sizeof *e);
    return RAMOLE_OK;
}

rm_status rm_data_encode(const rm_tok *tok, const char *input, const char *output, int32_t eos, rm_example *ex) {
    memset(ex, 0, sizeof *ex);
    if (!tok) return rm_err(RAMOLE_ERR_INVALID, "no tokenizer: the model must carry one (tokenizer.json)");
    if (eos < 0) return rm_err(RAMOLE_ERR_INVALID, "the tokenizer has no end-of-sequence token");
    if (!output || !*output) return rm_err(RAMOLE_ERR_INVALID, "empty \"output\"");
    rm_tok_ids p = {0}, o = {0};
    rm_status st = rm_tok_encode(tok, input, strlen(input), RM_TOK_ADD_SPECIAL, &p);
    if (!st) st = rm_tok_encode(tok, output, strlen(output), RM_TOK_CONTINUATION, &o);
    if (!st && p.n == 0) st = rm_err(RAMOLE_ERR_INVALID, "the input encodes to no tokens (generate needs a prompt)");
    if (!st && o.n == 0) st = rm_err(RAMOLE_ERR_INVALID, "the output encodes to no tokens");
    if (!st) {
        size_t n = p.n + o.n + 1;
        if (n > (size_t)INT32_MAX / 2) st = rm_err(RAMOLE_ERR_RANGE, "example too long");
        else if (!(ex->tokens = rm_malloc(n * sizeof *ex->tokens))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else {
            memcpy(ex->tokens, p.ids, p.n * sizeof *p.ids);
            memcpy(ex->tokens + p.n, o.ids, o.n * sizeof *o.ids);
            ex->tokens[n - 1] = eos;
            ex->n = (int)n;
            ex->n_prompt = (int)p.n;
        }
    }
    rm_tok_ids_free(&p);
    rm_tok_ids_free(&o);
    return st;
}

/* One JSON line -> example; messages get "name:line: " from the caller. */
static rm_status parse_line(const rm_tok *tok, const char *s, size_t n, int32_t eos, const rm_data_opts *o,
                            rm_example *ex, bool *truncated) {
    memset(ex, 0, sizeof *ex);
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    if (!j) return rm_err(RAMOLE_ERR_FORMAT, "malformed JSON (column %d): %s", je.column, je.text);
    rm_status st = RAMOLE_OK;
    json_t *in = json_object_get(j, "input"), *out = json_object_get(j, "output"), *ad = json_object_get(j, "adapters"),
           *sc = json_object_get(j, "scores");
    if (!json_is_object(j)) st = rm_err(RAMOLE_ERR_FORMAT, "expected a JSON object {\"input\": ..., \"output\": ...}");
    else if (!in || !json_is_string(in)) st = rm_err(RAMOLE_ERR_FORMAT, "missing or non-string \"input\"");
    else if (!out || !json_is_string(out)) st = rm_err(RAMOLE_ERR_FORMAT, "missing or non-string \"output\"");
    else if (json_string_length(out) == 0) st = rm_err(RAMOLE_ERR_INVALID, "empty \"output\"");
    else if (strlen(json_string_value(in)) != json_string_length(in) ||
             strlen(json_string_value(out)) != json_string_length(out))
        st = rm_err(RAMOLE_ERR_FORMAT, "\"input\" or \"output\" contains a NUL character");
    else if (ad && !json_is_array(ad)) st = rm_err(RAMOLE_ERR_FORMAT, "\"adapters\" must be a list of names");
    else if (sc && (!json_is_array(sc) || !ad || json_array_size(sc) != json_array_size(ad)))
        st = rm_err(RAMOLE_ERR_FORMAT, "\"scores\" must be a list of numbers, one per adapter of \"adapters\"");
    if (!st) st = rm_data_encode(tok, json_string_value(in), json_string_value(out), eos, ex);
    if (!st && ad && json_array_size(ad)) {
        size_t na = json_array_size(ad);
        if (!(ex->adapters = rm_calloc(na, sizeof *ex->adapters))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < na; i++) {
            json_t *v = json_array_get(ad, i);
            if (!json_is_string(v) || !json_string_length(v))
                st = rm_err(RAMOLE_ERR_FORMAT, "\"adapters\"[%zu] is not a non-empty string", i);
            else if (!(ex->adapters[i] = rm_strdup(json_string_value(v)))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            else ex->n_adapters = (int)i + 1;
        }
    }
    if (!st && sc && json_array_size(sc)) {
        size_t ns = json_array_size(sc);
        if (!(ex->scores = rm_calloc(ns, sizeof *ex->scores))) st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < ns; i++) {
            json_t *v = json_array_get(sc, i);
            double r = json_is_number(v) ? json_number_value(v) : NAN;
            if (!rm_retrieval_score_ok(r))
                st = rm_err(RAMOLE_ERR_FORMAT, "\"scores\"[%zu] is not a retrieval score (a number from -1 to 1)", i);
            else ex->scores[i] = (float)r;
        }
    }
    if (!st && o->ctx > 0 && ex->n - 1 > o->ctx) {
        if (!o->truncate)
            st = rm_err(RAMOLE_ERR_RANGE, "the example is %d tokens (prompt %d), longer than the context of %d + 1 "
                        "(raise --ctx or pass --truncate)", ex->n, ex->n_prompt, o->ctx);
        else if (ex->n_prompt >= o->ctx + 1)
            st = rm_err(RAMOLE_ERR_RANGE, "the prompt alone is %d tokens, no room for the output in a context of "
                        "%d (raise --ctx)", ex->n_prompt, o->ctx);
        else {
            ex->n = o->ctx + 1;
            *truncated = true;
        }
    }
    json_decref(j);
    if (st) example_clear(ex);
    return st;
}

typedef struct {
    const rm_tok *tok;
    int32_t eos;
    const rm_data_opts *o;
    rm_dataset *d;
} jsonl_ctx;

static rm_status jsonl_line(const char *s, size_t n, int line, void *arg) {
    jsonl_ctx *c = arg;
    rm_example ex;
    bool trunc = false;
    RM_TRY(parse_line(c->tok, s, n, c->eos, c->o, &ex, &trunc));
    ex.line = line;
    c->d->n_truncated += trunc;
    rm_status st = ds_push(c->d, &ex);
    if (st) example_clear(&ex);
    return st;
}

rm_status rm_data_parse_jsonl(const rm_tok *tok, const char *text, size_t len, const char *name,
                              const rm_data_opts *o, rm_dataset **out) {
    *out = NULL;
    if (!tok) return rm_err(RAMOLE_ERR_INVALID, "%s: no tokenizer: the model must carry one (tokenizer.json)", name);
    int32_t eos = o->eos >= 0 ? o->eos : rm_data_eos(tok, -1);
    if (eos < 0) return rm_err(RAMOLE_ERR_INVALID, "%s: the tokenizer has no end-of-sequence token", name);
    rm_dataset *d = rm_calloc(1, sizeof *d);
    if (!d) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    jsonl_ctx c = {tok, eos, o, d};
    rm_status st = rm_lines_each(text, len, name, jsonl_line, &c);
    if (!st && d->n == 0) st = rm_err(RAMOLE_ERR_INVALID, "%s: no examples", name);
    if (st) {
        rm_dataset_free(d);
        return st;
    }
    *out = d;
    return RAMOLE_OK;
}

rm_status rm_data_load_jsonl(const rm_tok *tok, const char *path, const rm_data_opts *o, rm_dataset **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    RM_TRY(rm_file_read(path, &text, &len));
    rm_status st = rm_data_parse_jsonl(tok, text, len, path, o, out);
    rm_free(text);
    return st;
}

rm_status rm_data_pack(const int32_t *stream, size_t n, int ctx, rm_dataset **out) {
    *out = NULL;
    if (ctx < 1) return rm_err(RAMOLE_ERR_INVALID, "context must be >= 1");
    rm_dataset *d = rm_calloc(1, sizeof *d);
    if (!d) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = RAMOLE_OK;
    for (size_t s = 0; s + 1 < n && !st; s += (size_t)ctx) {
        size_t w = n - s < (size_t)ctx + 1 ? n - s : (size_t)ctx + 1;
        rm_example ex = {0};
        if (!(ex.tokens = rm_malloc(w * sizeof *ex.tokens))) {
            st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(ex.tokens, stream + s, w * sizeof *ex.tokens);
        ex.n = (int)w;
        st = ds_push(d, &ex);
        if (st) example_clear(&ex);
    }
    if (!st && d->n == 0) st = rm_err(RAMOLE_ERR_INVALID, "the text holds fewer than 2 tokens");
    if (st) {
        rm_dataset_free(d);
        return st;
    }
    *out = d;
    return RAMOLE_OK;
}

rm_status rm_data_load_text(const rm_tok *tok, const char *const *paths, int n_paths, const rm_data_opts *o,
                            rm_dataset **out) {
    *out = NULL;
    if (!tok) return rm_err(RAMOLE_ERR_INVALID, "no tokenizer (give --tokenizer)");
    int32_t eos = o->eos >= 0 ? o->eos : rm_data_eos(tok, -1);
    if (eos < 0) return rm_err(RAMOLE_ERR_INVALID, "the tokenizer has no end-of-sequence token");
    int32_t *all = NULL;
    size_t n = 0, cap = 0;
    rm_status st = RAMOLE_OK;
    rm_tok_ids ids = {0};
    for (int f = 0; f < n_paths && !st; f++) {
        char *text = NULL;
        size_t len = 0;
        st = rm_file_read(paths[f], &text, &len);
        if (!st) st = rm_tok_encode(tok, text, len, RM_TOK_ADD_SPECIAL, &ids);
        rm_free(text);
        if (st) break;
        size_t need = n + ids.n + 1;
        if (need > cap) {
            size_t c = cap ? cap : 4096;
            while (c < need) c *= 2;
            int32_t *x = rm_realloc(all, c * sizeof *x);
            if (!x) {
                st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                break;
            }
            all = x, cap = c;
        }
        memcpy(all + n, ids.ids, ids.n * sizeof *ids.ids);
        n += ids.n;
        all[n++] = eos;
    }
    rm_tok_ids_free(&ids);
    if (!st) st = rm_data_pack(all, n, o->ctx, out);
    rm_free(all);
    return st;
}

void rm_data_order(int n, uint64_t seed, int64_t epoch, int *perm) {
    uint64_t s = seed ^ (0x5851f42d4c957f2dull * (uint64_t)(epoch + 1));
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(rm_rng_next(&s) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

rm_status rm_data_split(rm_dataset *d, double frac, uint64_t seed, rm_dataset **val) {
    *val = NULL;
    if (!(frac >= 0 && frac < 1)) return rm_err(RAMOLE_ERR_INVALID, "the held-out fraction must be in [0, 1)");
    rm_dataset *v = rm_calloc(1, sizeof *v);
    if (!v) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    int nv = (int)(frac * d->n + 0.5);
    if (frac > 0 && d->n >= 2 && nv == 0) nv = 1;
    if (nv >= d->n && d->n >= 2) nv = d->n - 1;
    int *perm = rm_malloc((size_t)(d->n ? d->n : 1) * sizeof *perm);
    uint8_t *sel = rm_calloc((size_t)(d->n ? d->n : 1), 1);
    rm_example *keep = rm_malloc((size_t)(d->n ? d->n : 1) * sizeof *keep);
    if (nv > 0) v->ex = rm_malloc((size_t)nv * sizeof *v->ex);
    if (!perm || !sel || !keep || (nv > 0 && !v->ex)) {
        rm_free(perm), rm_free(sel), rm_free(keep), rm_free(v->ex), rm_free(v);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    rm_data_order(d->n, seed ^ 0x243f6a8885a308d3ull, -1, perm);
    for (int i = 0; i < nv; i++) sel[perm[i]] = 1;
    int nk = 0;
    for (int i = 0; i < d->n; i++) {
        if (sel[i]) v->ex[v->n++] = d->ex[i];
        else keep[nk++] = d->ex[i];
    }
    v->cap = v->n;
    memcpy(d->ex, keep, (size_t)nk * sizeof *keep);
    d->n = nk;
    rm_free(perm), rm_free(sel), rm_free(keep);
    *val = v;
    return RAMOLE_OK;
}

rm_status rm_batchbuf_init(rm_batchbuf *bb, int B, int T) {
    memset(bb, 0, sizeof *bb);
    if (B < 1 || T < 1) return rm_err(RAMOLE_ERR_INVALID, "batch sizes must be >= 1");
    size_t n = (size_t)B * (size_t)T;
    bb->B = B, bb->T = T;
    bb->tokens = rm_calloc(n, sizeof *bb->tokens);
    bb->targets = rm_calloc(n, sizeof *bb->targets);
    bb->mask = rm_calloc(n, 1);
    bb->experts = rm_calloc((size_t)B * RM_TRAIN_MAX_K, sizeof *bb->experts);
    bb->n_experts = rm_calloc((size_t)B, sizeof *bb->n_experts);
    bb->retrieval = rm_calloc((size_t)B * RM_TRAIN_MAX_K, sizeof *bb->retrieval);
    if (!bb->tokens || !bb->targets || !bb->mask || !bb->experts || !bb->n_experts || !bb->retrieval) {
        rm_batchbuf_free(bb);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    return RAMOLE_OK;
}

void rm_batchbuf_free(rm_batchbuf *bb) {
    rm_free(bb->tokens), rm_free(bb->targets), rm_free(bb->mask), rm_free(bb->experts), rm_free(bb->n_experts);
    rm_free(bb->retrieval);
    memset(bb, 0, sizeof *bb);
}

int rm_data_fill(rm_batchbuf *bb, const rm_dataset *d, const int *idx, int nb, int32_t pad, rm_train_batch *b) {
    int T = 1, cnt = 0;
    if (nb > bb->B) nb = bb->B;
    for (int r = 0; r < nb; r++) { /* the longest sequence of the batch (<= bb->T) sets the width */
        int np = d->ex[idx[r]].n - 1;
        if (np > T) T = np;
    }
    if (T > bb->T) T = bb->T;
    for (int r = 0; r < nb; r++) {
        const rm_example *e = &d->ex[idx[r]];
        int32_t *tk = bb->tokens + (size_t)r * T, *tg = bb->targets + (size_t)r * T;
        uint8_t *mk = bb->mask + (size_t)r * T;
        int np = e->n - 1 < T ? e->n - 1 : T;
        for (int t = 0; t < T; t++) {
            if (t < np) {
                tk[t] = e->tokens[t];
                tg[t] = e->tokens[t + 1];
                mk[t] = t + 1 >= e->n_prompt;
            } else {
                tk[t] = pad, tg[t] = pad, mk[t] = 0;
            }
            cnt += mk[t];
        }
    }
    *b = (rm_train_batch){.B = nb, .T = T, .tokens = bb->tokens, .targets = bb->targets, .mask = bb->mask};
    return cnt;
}
