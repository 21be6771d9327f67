/*
 * tokenize_api.c — vLLM's tokenizer routes, which evaluation harnesses use
 * to tokenize through the server instead of a copy of the tokenizer:
 *
 *   POST /tokenize    {"prompt", "add_special_tokens" (true)} or {"messages"}
 *                     -> {"count", "max_model_len", "tokens", "token_strs"}
 *   POST /detokenize  {"tokens"} -> {"prompt"}
 *   GET  /tokenizer_info -> the special tokens, the chat template, the context
 *
 * The ids are those a generation with the same prompt runs
 * (rm_engine_encode); the messages through the model's chat template.
 */
#include <string.h>

#include "serve/serve_internal.h"

void srv_tokenize_reply(rm_server *s, const json_t *body, srv_reply *out) {
    const rm_tok *tok = s->model->tokenizer;
    if (!tok) {
        srv_reply_error(out, 400, NULL, "no_tokenizer", "the model has no tokenizer");
        return;
    }
    const json_t *add = json_object_get(body, "add_special_tokens"), *strs = json_object_get(body, "return_token_strs");
    const char *flags[2] = {"add_special_tokens", "return_token_strs"};
    const json_t *vals[2] = {add, strs};
    for (int f = 0; f < 2; f++)
        if (vals[f] && !json_is_null(vals[f]) && !json_is_boolean(vals[f])) {
            srv_reply_error(out, 400, flags[f], "invalid_value", "field \"%s\" must be true or false", flags[f]);
            return;
        }
    /* only the prompt matters here: read it as a generation would */
    json_t *only = json_object();
    json_object_set(only, "prompt", json_object_get(body, "prompt"));
    json_object_set(only, "messages", json_object_get(body, "messages"));
    rm_request_spec sp;
    if (rm_request_spec_from_json(only, &sp) != RAMOLE_OK) {
        json_decref(only);
        srv_reply_error(out, 400, NULL, "invalid_value", "%s", ramole_last_error());
        return;
    }
    json_decref(only);
    /* token ids as given are what runs; text and messages are encoded as a generation's */
    rm_tok_ids enc = {0};
    const int32_t *ids = sp.req.tokens;
    size_t n = (size_t)sp.req.n_tokens;
    rm_status st = ids ? RAMOLE_OK : rm_engine_encode(s->engine, &sp.req, !json_is_false(add), &enc);
    if (!ids) ids = enc.ids, n = enc.n;
    if (st != RAMOLE_OK) {
        rm_request_spec_free(&sp);
        srv_reply_error(out, status_of(st), NULL, "invalid_value", "%s", ramole_last_error());
        return;
    }
    json_t *tokens = json_array(), *names = json_is_true(strs) ? json_array() : json_null();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(tokens, json_integer(ids[i]));
        if (json_is_array(names)) {
            const char *t = rm_tok_token_str(tok, ids[i]);
            json_array_append_new(names, t ? json_string(t) : json_null());
        }
    }
    srv_reply_json(out, 200, json_pack("{s:I, s:i, s:o, s:o}", "count", (json_int_t)n, "max_model_len",
                                       rm_engine_n_ctx(s->engine), "tokens", tokens, "token_strs", names));
    rm_tok_ids_free(&enc);
    rm_request_spec_free(&sp);
}

void srv_detokenize_reply(rm_server *s, const json_t *body, srv_reply *out) {
    const rm_tok *tok = s->model->tokenizer;
    const json_t *t = json_object_get(body, "tokens");
    if (!tok) {
        srv_reply_error(out, 400, NULL, "no_tokenizer", "the model has no tokenizer");
        return;
    }
    if (!json_is_array(t)) {
        srv_reply_error(out, 400, "tokens", "invalid_value", "field \"tokens\" (an array of token ids) is required");
        return;
    }
    size_t n = json_array_size(t);
    int32_t *ids = rm_malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        srv_reply_error(out, 500, NULL, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(t, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= rm_tok_vocab_size(tok)) {
            rm_free(ids);
            srv_reply_error(out, 400, "tokens", "invalid_value", "token %zu is not an id of the vocabulary (0..%d)", i,
                            rm_tok_vocab_size(tok) - 1);
            return;
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    char *text = NULL;
    size_t len = 0;
    rm_status st = rm_tok_decode(tok, ids, n, 0, &text, &len);
    rm_free(ids);
    if (st != RAMOLE_OK) {
        srv_reply_error(out, status_of(st), "tokens", "invalid_value", "%s", ramole_last_error());
        return;
    }
    srv_reply_json(out, 200, json_pack("{s:s%}", "prompt", text, len));
    rm_free(text);
}

/* A special token's text, or null. */
static json_t *special(const rm_tok *tok, int32_t id) {
    const char *t = id >= 0 ? rm_tok_token_str(tok, id) : NULL;
    return t ? json_string(t) : json_null();
}

json_t *srv_tokenizer_info(rm_server *s) {
    const rm_tok *tok = s->model->tokenizer;
    if (!tok) return NULL;
    const char *tmpl = rm_tok_chat_template_text(tok);
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:i, s:I}", "tokenizer_class", "ramole", "eos_token",
                     special(tok, rm_tok_eos(tok)), "bos_token", special(tok, rm_tok_bos(tok)), "pad_token",
                     special(tok, rm_tok_pad(tok)), "unk_token", special(tok, rm_tok_unk(tok)), "chat_template",
                     tmpl ? json_string(tmpl) : json_null(), "model_max_length", rm_engine_n_ctx(s->engine),
                     "vocab_size", (json_int_t)rm_tok_vocab_size(tok));
}
