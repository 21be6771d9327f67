/*
 * embeddings_api.c — OpenAI's POST /v1/embeddings with the registry's
 * embedder: the vectors retrieval compares with the adapters' (the base's
 * hidden states at the embedder's layer, pooled, through the retriever
 * projection, unit length), so a platform can index or inspect texts in
 * the space its adapters are found in.
 *
 *   {"input": text or [texts], "model", "encoding_format": "float" | "base64",
 *    "dimensions"} -> {"object": "list", "data": [{"object": "embedding",
 *    "index", "embedding"}], "model", "usage"}
 *
 * base64 is the float32 little-endian bytes, as OpenAI sends them (and as
 * OpenAI's clients ask by default). Token-id inputs are refused: the
 * embedder reads text.
 */
#include <string.h>

#include "serve/serve_internal.h"

#define SRV_MAX_EMBED_INPUTS 256

static char *base64(const float *v, int n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4;
    uint8_t *b = rm_malloc(len ? len : 1);
    char *out = rm_malloc((len + 2) / 3 * 4 + 1);
    if (!b || !out) {
        rm_free(b);
        rm_free(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) { /* little-endian, whatever the host */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[(size_t)i * 4 + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    char *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16 | (i + 1 < len ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < len ? b[i + 2] : 0);
        *o++ = tab[x >> 18 & 63];
        *o++ = tab[x >> 12 & 63];
        *o++ = i + 1 < len ? tab[x >> 6 & 63] : '=';
        *o++ = i + 2 < len ? tab[x & 63] : '=';
    }
    *o = 0;
    rm_free(b);
    return out;
}

void srv_embeddings_reply(rm_server *s, const json_t *body, srv_reply *out) {
    const json_t *input = json_object_get(body, "input"), *fmt = json_object_get(body, "encoding_format"),
                 *dims = json_object_get(body, "dimensions"), *model = json_object_get(body, "model");
    if (!s->reg) {
        srv_reply_error(out, 404, NULL, "no_registry", "this server has no adapter registry, whose embedder this is");
        return;
    }
    if (model && !json_is_null(model) && (!json_is_string(model) || strcmp(json_string_value(model), s->model_name))) {
        srv_reply_error(out, 404, "model", "model_not_found", "embeddings come from the base '%s' only", s->model_name);
        return;
    }
    bool b64 = false;
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_string_value(fmt);
        if (!f || (strcmp(f, "float") && strcmp(f, "base64"))) {
            srv_reply_error(out, 400, "encoding_format", "invalid_value",
                            "field \"encoding_format\" must be \"float\" or \"base64\"");
            return;
        }
        b64 = !strcmp(f, "base64");
    }
    size_t n = json_is_array(input) ? json_array_size(input) : json_is_string(input) ? 1 : 0;
    bool all_text = n > 0 && n <= SRV_MAX_EMBED_INPUTS;
    for (size_t i = 0; all_text && json_is_array(input) && i < n; i++) all_text = json_is_string(json_array_get(input, i));
    if (!all_text) {
        srv_reply_error(out, 400, "input", "invalid_value",
                        "field \"input\" must be a text or an array of 1 to %d texts (the embedder reads text, "
                        "not token ids)", SRV_MAX_EMBED_INPUTS);
        return;
    }
    const char *texts[SRV_MAX_EMBED_INPUTS];
    for (size_t i = 0; i < n; i++) texts[i] = json_string_value(json_is_array(input) ? json_array_get(input, i) : input);
    /* all inputs in one batch: the engine runs them in the same steps */
    float *V = NULL;
    int dim = 0;
    rm_status st = rm_registry_embed(s->reg, texts, (int)n, &V, &dim);
    if (st != RAMOLE_OK) {
        size_t bad = 0; /* name the input that fails alone, if one does */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ramole_last_error());
        for (size_t i = 0; i < n && n > 1; i++) {
            float *v = NULL;
            int d;
            rm_status one = rm_registry_embed(s->reg, &texts[i], 1, &v, &d);
            rm_free(v);
            if (one != RAMOLE_OK) {
                bad = i, st = one;
                snprintf(msg, sizeof msg, "%s", ramole_last_error());
                break;
            }
        }
        srv_reply_error(out, status_of(st), "input", NULL, "input %zu: %s", bad, msg);
        return;
    }
    if (dims && !json_is_null(dims) && (!json_is_integer(dims) || json_integer_value(dims) != dim)) {
        rm_free(V);
        srv_reply_error(out, 400, "dimensions", "invalid_value",
                        "field \"dimensions\" must be %d, the embedder's width, or absent", dim);
        return;
    }
    json_t *data = json_array();
    long tokens = 0;
    for (size_t i = 0; i < n; i++) {
        const float *v = V + i * (size_t)dim;
        json_t *vec;
        if (b64) {
            char *t = base64(v, dim);
            vec = t ? json_string(t) : NULL;
            rm_free(t);
        } else {
            vec = json_array();
            for (int k = 0; k < dim; k++) json_array_append_new(vec, json_real(v[k]));
        }
        json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index", (json_int_t)i,
                                              "embedding", vec));
        rm_tok_ids ids = {0};
        if (s->model->tokenizer &&
            rm_tok_encode(s->model->tokenizer, texts[i], strlen(texts[i]), RM_TOK_ADD_SPECIAL, &ids) == RAMOLE_OK)
            tokens += (long)ids.n;
        rm_tok_ids_free(&ids);
    }
    rm_free(V);
    srv_reply_json(out, 200, json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model",
                                       s->model_name, "usage", "prompt_tokens", (json_int_t)tokens, "total_tokens",
                                       (json_int_t)tokens));
}
