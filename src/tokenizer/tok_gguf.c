/*
 * tok_gguf.c — tokenizers in GGUF metadata, as llama.cpp writes and reads them.
 *
 * Keys written (llama.cpp's names):
 *   tokenizer.ggml.model        "gpt2" (byte-level BPE) | "llama" (SentencePiece-style)
 *   tokenizer.ggml.pre          gpt2 only: "llama-bpe" | "qwen2" | "gpt-2" | "default",
 *                               recognised from the Split regex
 *   tokenizer.ggml.tokens       string[n]: the tokens as tokenizer.json spells them
 *                               (byte-mapped for gpt2, "▁" for llama)
 *   tokenizer.ggml.token_type   i32[n]: 1 normal, 2 unknown, 3 control (special
 *                               added), 4 user-defined (other added), 5 unused, 6 byte
 *   tokenizer.ggml.merges       gpt2: string[] "a b" in rank order
 *   tokenizer.ggml.scores       llama: f32[n]; a token made by merge r scores -r
 *                               (llama.cpp merges the adjacent pair whose
 *                               concatenation has the highest score, which with
 *                               these scores is the BPE order), others 0
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id  u32, when known
 *   tokenizer.ggml.add_bos_token / add_eos_token       bool, from the template
 *   tokenizer.ggml.add_space_prefix                    llama: bool
 *   tokenizer.chat_template     the Jinja text, when the config had one
 *   tokenizer.ramole.pipeline   ramole's own: the normalizer/pre-tokenizer/
 *                               post-processor/decoder JSON, so that ramole
 *                               reloads its own files exactly
 *
 * Loading rebuilds a tokenizer.json object and goes through the same builder
 * as tokenizer.json. Without tokenizer.ramole.pipeline (files from
 * llama.cpp's converter) the pipeline is the family's default: gpt2 with the
 * split regex named by tokenizer.ggml.pre (NFC for qwen2, ignore_merges for
 * llama-bpe, as the HF files of those families have), llama with the
 * Prepend/Replace normalizer, byte fallback and its decoder. For "llama"
 * files the merges are derived from the scores: every split of a token into
 * two tokens is a merge, ranked by the token's score.
 */
#include "tokenizer/tok_internal.h"

#include "formats/gguf.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA3_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define NOMEM rm_err(RAMOLE_ERR_NOMEM, "tokenizer GGUF: out of memory")

/* Which llama.cpp pre-tokenizer name fits the pipeline's split regex. */
static const char *pre_name(const rm_tok *t) {
    const char *p = t->pipeline_json ? t->pipeline_json : "";
    if (strstr(p, "\\\\p{N}{1,3}")) return "llama-bpe";
    if (strstr(p, "[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}|")) return "qwen2";
    if (strstr(p, "\"ByteLevel\"") && !strstr(p, "\"Split\"")) return "gpt-2";
    return "default";
}

rm_status rm_tok_gguf_write(const rm_tok *t, rm_gguf_writer *w, bool ramole_keys) {
    size_t n = (size_t)t->n_ids;
    const char **toks = rm_calloc(n, sizeof *toks);
    char **pads = rm_calloc(n, sizeof *pads);
    int32_t *types = rm_calloc(n, sizeof *types);
    float *scores = t->byte_level ? NULL : rm_calloc(n, sizeof *scores);
    char **merges = t->byte_level ? rm_calloc(t->n_merges ? t->n_merges : 1, sizeof *merges) : NULL;
    rm_status st = RM_OK;
    if (!toks || !pads || !types || (!t->byte_level && !scores) || (t->byte_level && !merges)) { st = NOMEM; goto done; }
    for (size_t i = 0; i < n; i++) {
        uint8_t f = t->flags[i];
        if (!(f & TOKF_USED)) {
            if (!(pads[i] = rm_asprintf("[PAD%zu]", i))) { st = NOMEM; goto done; }
            toks[i] = pads[i];
            types[i] = 5;
            continue;
        }
        toks[i] = t->str[i];
        types[i] = (int32_t)i == rm_tok_unk(t) ? 2 : (f & TOKF_SPECIAL) ? 3 : (f & TOKF_ADDED) ? 4 : (f & TOKF_BYTE) ? 6 : 1;
    }
    st = rm_gguf_set_str(w, "tokenizer.ggml.model", t->byte_level ? "gpt2" : "llama");
    if (!st && t->byte_level) st = rm_gguf_set_str(w, "tokenizer.ggml.pre", pre_name(t));
    if (!st) st = rm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, n);
    if (!st) st = rm_gguf_set_arr(w, "tokenizer.ggml.token_type", RM_GGUF_INT32, types, n);
    if (!st && t->byte_level) {
        for (size_t r = 0; r < t->n_merges && !st; r++) {
            merges[r] = rm_asprintf("%s %s", t->str[t->merge_list[r][0]], t->str[t->merge_list[r][1]]);
            if (!merges[r]) st = NOMEM;
        }
        if (!st) st = rm_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, t->n_merges);
    }
    if (!st && !t->byte_level) {
        for (size_t r = t->n_merges; r-- > 0;) {
            int32_t res;
            if (tok_merge_lookup(t, t->merge_list[r][0], t->merge_list[r][1], &res) >= 0) scores[res] = -(float)r;
        }
        st = rm_gguf_set_arr(w, "tokenizer.ggml.scores", RM_GGUF_FLOAT32, scores, n);
        bool prefix = t->pipeline_json && strstr(t->pipeline_json, "\"Prepend\"");
        if (!st) st = rm_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", prefix);
    }
    struct { const char *key; int32_t id; } ids[] = {{"tokenizer.ggml.bos_token_id", t->bos_id},
        {"tokenizer.ggml.eos_token_id", t->eos_id}, {"tokenizer.ggml.unknown_token_id", rm_tok_unk(t)},
        {"tokenizer.ggml.padding_token_id", t->pad_id}};
    for (int k = 0; k < 4 && !st; k++)
        if (ids[k].id >= 0) st = rm_gguf_set_u32(w, ids[k].key, (uint32_t)ids[k].id);
    bool add_bos = t->has_template && t->n_tmpl_single > 0 && t->tmpl_single[0] >= 0;
    bool add_eos = t->has_template && t->n_tmpl_single > 0 && t->tmpl_single[t->n_tmpl_single - 1] >= 0;
    if (!st) st = rm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (!st) st = rm_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    if (!st && t->chat_template) st = rm_gguf_set_str(w, "tokenizer.chat_template", t->chat_template);
    if (!st && ramole_keys && t->pipeline_json) st = rm_gguf_set_str(w, "tokenizer.ramole.pipeline", t->pipeline_json);
done:
    for (size_t i = 0; pads && i < n; i++) rm_free(pads[i]);
    for (size_t r = 0; merges && r < t->n_merges; r++) rm_free(merges[r]);
    rm_free(pads);
    rm_free(toks);
    rm_free(types);
    rm_free(scores);
    rm_free(merges);
    return st;
}

/* ---- loading ----------------------------------------------------------------- */

static json_t *jstr(const char *s, size_t n) { return json_stringn(s, n); }

static int cmp_score_desc(const void *a, const void *b, void *ctx) {
    const float *sc = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sc[x] != sc[y]) return sc[x] > sc[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* llama files: merges from scores (every two-token split of a token). */
static rm_status merges_from_scores(const rm_gguf *g, uint64_t n, const float *scores, json_t *vocab, json_t *merges) {
    int32_t *order = rm_malloc((n ? n : 1) * sizeof *order);
    if (!order) return NOMEM;
    for (uint64_t i = 0; i < n; i++) order[i] = (int32_t)i;
    qsort_r(order, n, sizeof *order, cmp_score_desc, (void *)scores);
    rm_status st = RM_OK;
    char *buf = NULL;
    size_t cap = 0;
    for (uint64_t k = 0; k < n && !st; k++) {
        const char *s;
        size_t len;
        if ((st = rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)order[k], &s, &len))) break;
        json_t *id = json_object_getn(vocab, s, len);
        if (!id || json_integer_value(id) != order[k] || len < 2) continue;
        if (len + 1 > cap) {
            char *nb = rm_realloc(buf, cap = len * 2 + 16);
            if (!nb) { st = NOMEM; break; }
            buf = nb;
        }
        memcpy(buf, s, len);
        for (size_t cut = 1; cut < len && !st; cut++) {
            if (((uint8_t)s[cut] & 0xC0) == 0x80) continue; /* not at a character boundary */
            if (!json_object_getn(vocab, s, cut) || !json_object_getn(vocab, s + cut, len - cut)) continue;
            json_t *pair = json_pack("[s#s#]", s, (int)cut, s + cut, (int)(len - cut));
            if (!pair || json_array_append_new(merges, pair)) st = NOMEM;
        }
    }
    rm_free(buf);
    rm_free(order);
    return st;
}

static json_t *added(int64_t id, const char *s, size_t n, bool special) {
    return json_pack("{s:I, s:s#, s:b}", "id", (json_int_t)id, "content", s, (int)n, "special", special);
}

rm_status rm_tok_gguf_load(const rm_gguf *g, rm_tok **out) {
    *out = NULL;
    const char *name = rm_gguf_path(g);
    const char *model;
    size_t mlen;
    rm_status st = rm_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen);
    if (st == RAMOLE_ERR_NOT_FOUND) return rm_err(RAMOLE_ERR_NOT_FOUND, "%s: no tokenizer (tokenizer.ggml.model is absent)", name);
    if (st) return st;
    bool gpt2 = mlen == 4 && !memcmp(model, "gpt2", 4), llama = mlen == 5 && !memcmp(model, "llama", 5);
    if (!gpt2 && !llama)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: unknown tokenizer.ggml.model \"%.*s\" (supported: gpt2, llama)", name, (int)mlen, model);
    rm_gguf_vtype et;
    uint64_t n = 0, nt = 0, ns = 0;
    const void *tdata = NULL, *sdata = NULL;
    if ((st = rm_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, NULL))) return rm_err_prefix(st, "%s: tokenizer.ggml.tokens", name);
    if (et != RM_GGUF_STRING || n == 0 || n > (1u << 24))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tokenizer.ggml.tokens must be a non-empty string array", name);
    if (rm_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &nt, &tdata) == RM_OK && (et != RM_GGUF_INT32 || nt != n))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be i32[%llu]", name, (unsigned long long)n);
    float *scores = NULL;
    if (llama) {
        if (rm_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &ns, &sdata) != RM_OK || et != RM_GGUF_FLOAT32 || ns != n)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: a llama tokenizer needs tokenizer.ggml.scores f32[%llu]", name, (unsigned long long)n);
        if (!(scores = rm_malloc(n * sizeof *scores))) return NOMEM;
        memcpy(scores, sdata, n * sizeof *scores);
    }
    json_t *root = json_object(), *vocab = json_object(), *merges = json_array(), *add = json_array(), *cfg = json_object();
    json_t *pipe = NULL;
    if (!root || !vocab || !merges || !add || !cfg) { st = NOMEM; goto done; }
    for (uint64_t i = 0; i < n && !st; i++) {
        const char *s;
        size_t len;
        if ((st = rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len))) break;
        int32_t type = 1;
        if (tdata) memcpy(&type, (const char *)tdata + 4 * i, 4);
        if (type == 5 || json_object_getn(vocab, s, len)) continue; /* unused or duplicate */
        if (json_object_setn_new(vocab, s, len, json_integer((json_int_t)i))) { st = NOMEM; break; }
        if (type == 2 || type == 3 || type == 4)
            if (json_array_append_new(add, added((int64_t)i, s, len, type != 4))) st = NOMEM;
    }
    if (st) goto done;
    if (gpt2) {
        if (rm_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &ns, NULL) != RM_OK || et != RM_GGUF_STRING) {
            st = rm_err(RAMOLE_ERR_FORMAT, "%s: a gpt2 tokenizer needs tokenizer.ggml.merges (string array)", name);
            goto done;
        }
        for (uint64_t r = 0; r < ns && !st; r++) {
            const char *s;
            size_t len;
            if ((st = rm_gguf_get_arr_str(g, "tokenizer.ggml.merges", r, &s, &len))) break;
            if (json_array_append_new(merges, jstr(s, len))) st = NOMEM;
        }
    } else {
        st = merges_from_scores(g, n, scores, vocab, merges);
    }
    if (st) goto done;

    /* the pipeline: ramole's own key, or the family default */
    const char *ps;
    size_t pl;
    if (rm_gguf_get_str(g, "tokenizer.ramole.pipeline", &ps, &pl) == RM_OK) {
        json_error_t e;
        pipe = json_loadb(ps, pl, 0, &e);
        if (!json_is_object(pipe)) {
            st = rm_err(RAMOLE_ERR_FORMAT, "%s: tokenizer.ramole.pipeline: malformed JSON at column %d: %s", name, e.column, e.text);
            goto done;
        }
    } else if (gpt2) {
        const char *pre = "default";
        size_t prl = 7;
        rm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &prl);
        bool l3 = (prl == 9 && !memcmp(pre, "llama-bpe", 9)) || (prl == 6 && !memcmp(pre, "llama3", 6));
        bool qw = prl == 5 && !memcmp(pre, "qwen2", 5);
        if (l3 || qw)
            pipe = json_pack("{s:o, s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s, s:b, s:b}]}, s:n, s:{s:s}, s:{s:b}}",
                             "normalizer", qw ? json_pack("{s:s}", "type", "NFC") : json_null(),
                             "pre_tokenizer", "type", "Sequence", "pretokenizers",
                             "type", "Split", "pattern", "Regex", l3 ? LLAMA3_RE : QWEN2_RE, "behavior", "Isolated",
                             "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 0,
                             "post_processor", "decoder", "type", "ByteLevel", "model", "ignore_merges", l3);
        else
            pipe = json_pack("{s:n, s:{s:s, s:b, s:b}, s:n, s:{s:s}, s:{}}", "normalizer", "pre_tokenizer", "type",
                             "ByteLevel", "add_prefix_space", 0, "use_regex", 1, "post_processor", "decoder", "type",
                             "ByteLevel", "model");
    } else {
        bool prefix = true;
        rm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix);
        json_t *norm = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers", "type", "Replace",
                                 "pattern", "String", " ", "content", "\xe2\x96\x81");
        if (norm && prefix)
            json_array_insert_new(json_object_get(norm, "normalizers"), 0, json_pack("{s:s, s:s}", "type", "Prepend", "prepend", "\xe2\x96\x81"));
        pipe = json_pack("{s:o, s:n, s:n, s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}, s:{s:b, s:b}}",
                         "normalizer", norm, "pre_tokenizer", "post_processor",
                         "decoder", "type", "Sequence", "decoders", "type", "Replace", "pattern", "String", "\xe2\x96\x81",
                         "content", " ", "type", "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ",
                         "start", prefix ? 1 : 0, "stop", 0, "model", "byte_fallback", 1, "fuse_unk", 1);
    }
    if (!pipe) { st = NOMEM; goto done; }

    /* special token ids and the BOS/EOS template */
    uint32_t id;
    int64_t bos = -1, eos = -1;
    static const char *const idkeys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                         "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    static const char *const cfgkeys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int k = 0; k < 4 && !st; k++) {
        if (rm_gguf_get_u32(g, idkeys[k], &id) != RM_OK) continue;
        if (id >= n) { st = rm_err(RAMOLE_ERR_RANGE, "%s: %s = %u is out of range (%llu tokens)", name, idkeys[k], id, (unsigned long long)n); break; }
        const char *s;
        size_t len;
        if ((st = rm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", id, &s, &len))) break;
        json_object_set_new(cfg, cfgkeys[k], jstr(s, len));
        if (k == 0) bos = id;
        if (k == 1) eos = id;
        if (k == 2 && llama && !json_object_get(json_object_get(pipe, "model"), "unk_token"))
            json_object_set_new(json_object_get(pipe, "model"), "unk_token", jstr(s, len));
    }
    if (st) goto done;
    if (!json_object_get(json_object_get(pipe, "model"), "unk_token") && llama)
        json_object_set_new(json_object_get(pipe, "model"), "unk_token", json_null());
    {
        bool add_bos = llama, add_eos = false;
        rm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
        rm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos);
        if (json_is_null(json_object_get(pipe, "post_processor")) || !json_object_get(pipe, "post_processor") ||
            !strcmp(json_string_value(json_object_get(json_object_get(pipe, "post_processor"), "type")) ?: "", "ByteLevel")) {
            if ((add_bos && bos >= 0) || (add_eos && eos >= 0)) {
                json_t *single = json_array();
                if (add_bos && bos >= 0)
                    json_array_append_new(single, json_pack("{s:{s:o, s:i}}", "SpecialToken", "id", json_deep_copy(json_object_get(cfg, "bos_token")), "type_id", 0));
                json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "Sequence", "id", "A", "type_id", 0));
                if (add_eos && eos >= 0)
                    json_array_append_new(single, json_pack("{s:{s:o, s:i}}", "SpecialToken", "id", json_deep_copy(json_object_get(cfg, "eos_token")), "type_id", 0));
                json_object_set_new(pipe, "post_processor", json_pack("{s:s, s:o}", "type", "TemplateProcessing", "single", single));
            }
        }
    }
    const char *ct;
    size_t cl;
    if (rm_gguf_get_str(g, "tokenizer.chat_template", &ct, &cl) == RM_OK) json_object_set_new(cfg, "chat_template", jstr(ct, cl));

    /* assemble tokenizer.json */
    json_t *m = json_object_get(pipe, "model");
    json_object_set_new(m, "type", json_string("BPE"));
    json_object_set(m, "vocab", vocab);
    json_object_set(m, "merges", merges);
    json_object_set(root, "model", m);
    json_object_set(root, "added_tokens", add);
    static const char *const parts[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder"};
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(pipe, parts[k]);
        json_object_set(root, parts[k], v ? v : json_null());
    }
    rm_tok *t = tok_new(name);
    if (!t) { st = NOMEM; goto done; }
    st = tok_build_json(t, root, cfg);
    if (st) rm_tok_free(t);
    else *out = t;
done:
    rm_free(scores);
    json_decref(root);
    json_decref(vocab);
    json_decref(merges);
    json_decref(add);
    json_decref(cfg);
    json_decref(pipe);
    return st;
}
