/*
 * projection.c — the embedder's projection file: one safetensors tensor
 * "projection.weight" [dim][hidden] and metadata that pin it to a base and
 * to the layer, prefix and pooling it was trained with (see embed.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "retrieval/embed.h"

#define TENSOR "projection.weight"

rm_status rm_projection_new(const rm_model *base, int dim, int layer, const char *prefix, rm_pooling pooling,
                            float temperature, rm_projection **out) {
    *out = NULL;
    if (dim < 1 || dim > RM_EMBED_MAX_DIM)
        return rm_err(RAMOLE_ERR_RANGE, "projection: dimension %d (1 to %d)", dim, RM_EMBED_MAX_DIM);
    if (layer != RM_HIDDEN_FINAL && (layer < 0 || layer > base->cfg.n_layers))
        return rm_err(RAMOLE_ERR_RANGE, "projection: layer %d (the model has layers 0..%d, or the final norm)", layer,
                      base->cfg.n_layers);
    if ((unsigned)pooling >= RM_POOL_COUNT) return rm_err(RAMOLE_ERR_INVALID, "projection: unknown pooling %d", pooling);
    rm_projection *p = rm_calloc(1, sizeof *p);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "projection: out of memory");
    p->dim = dim, p->hidden = base->cfg.hidden;
    p->base_fingerprint = rm_model_fingerprint(base);
    p->layer = layer, p->pooling = pooling, p->temperature = temperature;
    p->prefix = rm_strdup(prefix ? prefix : RM_EMBED_PREFIX);
    p->w = rm_calloc((size_t)dim * (size_t)p->hidden, sizeof *p->w);
    if (!p->prefix || !p->w) {
        rm_projection_free(p);
        return rm_err(RAMOLE_ERR_NOMEM, "projection: out of memory (%d x %d)", dim, base->cfg.hidden);
    }
    *out = p;
    return RAMOLE_OK;
}

void rm_projection_free(rm_projection *p) {
    if (!p) return;
    rm_free(p->w);
    rm_free(p->prefix);
    rm_free(p);
}

rm_status rm_projection_save(const rm_projection *p, const char *path) {
    rm_st_writer *w = NULL;
    RM_TRY(rm_st_writer_new(&w));
    char fp[24], layer[16], temp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)p->base_fingerprint);
    if (p->layer == RM_HIDDEN_FINAL) snprintf(layer, sizeof layer, "final");
    else snprintf(layer, sizeof layer, "%d", p->layer);
    snprintf(temp, sizeof temp, "%.9g", (double)p->temperature);
    int64_t shape[2] = {p->dim, p->hidden};
    rm_status st;
    if ((st = rm_st_writer_meta(w, "format", RM_PROJECTION_FORMAT)) == RAMOLE_OK &&
        (st = rm_st_writer_meta(w, "ramole.base_fingerprint", fp)) == RAMOLE_OK &&
        (st = rm_st_writer_meta(w, "layer", layer)) == RAMOLE_OK &&
        (st = rm_st_writer_meta(w, "prefix", p->prefix)) == RAMOLE_OK &&
        (st = rm_st_writer_meta(w, "pooling", rm_pooling_name(p->pooling))) == RAMOLE_OK &&
        (st = rm_st_writer_meta(w, "temperature", temp)) == RAMOLE_OK &&
        (st = rm_st_writer_add(w, TENSOR, RM_TYPE_F32, 2, shape, p->w)) == RAMOLE_OK)
        st = rm_st_writer_write(w, path);
    rm_st_writer_free(w);
    if (st != RAMOLE_OK) rm_err_prefix(st, "projection %s", path);
    return st;
}

/* A required metadata value, or an error naming the key. */
static rm_status need_meta(const rm_safetensors *sf, const char *path, const char *key, const char **out) {
    *out = rm_st_meta(sf, key);
    if (!*out)
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: __metadata__ lacks \"%s\"", path, key);
    return RAMOLE_OK;
}

static rm_status load_checked(const rm_safetensors *sf, const char *path, const rm_model *base, rm_projection **out) {
    const char *v;
    v = rm_st_meta(sf, "format");
    if (!v || strcmp(v, RM_PROJECTION_FORMAT))
        return rm_err(RAMOLE_ERR_FORMAT,
                      "projection %s: not a ramole retriever projection (__metadata__ \"format\" is %s%s%s, want \"%s\")",
                      path, v ? "\"" : "", v ? v : "missing", v ? "\"" : "", RM_PROJECTION_FORMAT);
    RM_TRY(need_meta(sf, path, "ramole.base_fingerprint", &v));
    char *end = NULL;
    errno = 0;
    unsigned long long fp = strtoull(v, &end, 16);
    if (!*v || *end || errno)
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: ramole.base_fingerprint \"%.40s\" is not a hexadecimal number",
                      path, v);
    uint64_t want = rm_model_fingerprint(base);
    if ((uint64_t)fp != want)
        return rm_err(RAMOLE_ERR_MISMATCH,
                      "projection %s was made for another base model (fingerprint %016llx, base %s has %016llx)", path,
                      fp, base->path ? base->path : "?", (unsigned long long)want);
    int layer;
    RM_TRY(need_meta(sf, path, "layer", &v));
    if (!strcmp(v, "final")) layer = RM_HIDDEN_FINAL;
    else {
        errno = 0;
        long l = strtol(v, &end, 10);
        if (!*v || *end || errno || l < 0 || l > base->cfg.n_layers)
            return rm_err(RAMOLE_ERR_FORMAT, "projection %s: layer \"%.40s\" is not \"final\" or 0..%d (the base's layers)",
                          path, v, base->cfg.n_layers);
        layer = (int)l;
    }
    rm_pooling pooling;
    RM_TRY(need_meta(sf, path, "pooling", &v));
    if (!rm_pooling_from_name(v, &pooling))
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: unknown pooling \"%.40s\" (mean, mean_all, last)", path, v);
    const char *prefix;
    RM_TRY(need_meta(sf, path, "prefix", &prefix));
    float temperature = 0;
    if ((v = rm_st_meta(sf, "temperature"))) {
        errno = 0;
        double t = strtod(v, &end);
        if (!*v || *end || errno || !(t > 0) || !isfinite(t))
            return rm_err(RAMOLE_ERR_FORMAT, "projection %s: temperature \"%.40s\" is not a positive number", path, v);
        temperature = (float)t;
    }
    const rm_st_tensor *t = rm_st_find(sf, TENSOR);
    if (!t) return rm_err(RAMOLE_ERR_FORMAT, "projection %s: tensor %s is missing", path, TENSOR);
    for (int i = 0; i < rm_st_count(sf); i++)
        if (strcmp(rm_st_get(sf, i)->name, TENSOR))
            return rm_err(RAMOLE_ERR_FORMAT, "projection %s: unexpected tensor %s (a projection holds only %s)", path,
                          rm_st_get(sf, i)->name, TENSOR);
    if (t->type < 0)
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: %s has dtype %s (F32, F16 or BF16)", path, TENSOR, t->dtype);
    if (t->n_dims != 2)
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: %s has %d dimensions, want 2 [dim][hidden]", path, TENSOR,
                      t->n_dims);
    if (t->shape[1] != base->cfg.hidden)
        return rm_err(RAMOLE_ERR_MISMATCH, "projection %s: %s is [%lld][%lld]; its %lld columns must equal the base's "
                      "hidden size %d", path, TENSOR, (long long)t->shape[0], (long long)t->shape[1],
                      (long long)t->shape[1], base->cfg.hidden);
    if (t->shape[0] < 1 || t->shape[0] > RM_EMBED_MAX_DIM)
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: %s has %lld rows (1 to %d)", path, TENSOR,
                      (long long)t->shape[0], RM_EMBED_MAX_DIM);
    rm_projection *p = NULL;
    RM_TRY(rm_projection_new(base, (int)t->shape[0], layer, prefix, pooling, temperature, &p));
    size_t n = (size_t)t->n_elems;
    if ((rm_type)t->type == RM_TYPE_F32) memcpy(p->w, t->data, n * sizeof(float));
    else {
        void *tmp = rm_malloc(t->nbytes ? t->nbytes : 1); /* aligned copy: the data may be unaligned */
        if (!tmp) {
            rm_projection_free(p);
            return rm_err(RAMOLE_ERR_NOMEM, "projection %s: out of memory", path);
        }
        memcpy(tmp, t->data, t->nbytes);
        rm_convert(RM_TYPE_F32, p->w, (rm_type)t->type, tmp, (int64_t)n);
        rm_free(tmp);
    }
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(p->w[i])) {
            rm_status st = rm_err(RAMOLE_ERR_FORMAT, "projection %s: %s[%zu][%zu] is %s", path, TENSOR,
                                  i / (size_t)p->hidden, i % (size_t)p->hidden, isnan(p->w[i]) ? "NaN" : "infinite");
            rm_projection_free(p);
            return st;
        }
        nonzero |= p->w[i] != 0;
    }
    if (!nonzero) {
        rm_projection_free(p);
        return rm_err(RAMOLE_ERR_FORMAT, "projection %s: %s is all zeros", path, TENSOR);
    }
    *out = p;
    return RAMOLE_OK;
}

rm_status rm_projection_load(const char *path, const rm_model *base, rm_projection **out) {
    *out = NULL;
    rm_safetensors *sf = NULL;
    rm_status st = rm_st_open(path, &sf);
    if (st != RAMOLE_OK) return rm_err_prefix(st, "projection");
    st = load_checked(sf, path, base, out);
    rm_st_free(sf);
    return st;
}
