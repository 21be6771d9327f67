/*
 * logprobs_json.c — a choice's "logprobs" as OpenAI's two routes shape
 * them, from the log-probabilities the engine reported per token.
 *
 * A token is named by its piece (rm_tok_piece): its own bytes, not the
 * text around it. A piece that is not whole UTF-8 (part of a character)
 * is named "bytes:\xNN..." as OpenAI names such tokens; "bytes" always
 * holds the piece's byte values. Without a tokenizer a token is
 * "token_id:N", as vLLM names it. A log-probability that is NaN (a
 * prompt's first token, with "echo") is null, as are its alternatives.
 */
#include "serve/serve_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The token's name into buf (NUL-terminated); its bytes in *bytes and *n. */
static const char *token_name(const rm_tok *tok, int32_t id, char *buf, size_t cap, const char **bytes, size_t *n) {
    *bytes = NULL, *n = 0;
    if (!tok || rm_tok_piece(tok, id, bytes, n) != RAMOLE_OK) {
        *bytes = NULL, *n = 0;
        snprintf(buf, cap, "token_id:%d", (int)id);
        return buf;
    }
    if (*n < cap && !memchr(*bytes, 0, *n)) {
        memcpy(buf, *bytes, *n);
        buf[*n] = 0;
        if (srv_utf8_valid(buf)) return buf;
    }
    size_t o = (size_t)snprintf(buf, cap, "bytes:");
    for (size_t i = 0; i < *n && o + 5 <= cap; i++) o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", (uint8_t)(*bytes)[i]);
    return buf;
}

static json_t *byte_list(const char *bytes, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((uint8_t)bytes[i]));
    return a;
}

/* Characters in s[0..n) (UTF-8 lead bytes). */
static long chars(const char *s, size_t n) {
    long c = 0;
    for (size_t i = 0; i < n; i++) c += ((uint8_t)s[i] & 0xC0) != 0x80;
    return c;
}

/* {"token", "logprob", "bytes"} of one token. */
static json_t *chat_token(const rm_tok *tok, int32_t id, float lp) {
    char buf[256];
    const char *b;
    size_t n;
    const char *name = token_name(tok, id, buf, sizeof buf, &b, &n);
    return json_pack("{s:s, s:f, s:o}", "token", name, "logprob", (double)lp, "bytes", byte_list(b, n));
}

json_t *srv_logprobs_json(const rm_tok *tok, const rm_logprob_list *l, int from, int to, bool chat, long *offset) {
    if (to > l->n) to = l->n;
    if (chat) {
        json_t *content = json_array();
        for (int i = from; i < to; i++) {
            json_t *e = chat_token(tok, l->ids[i], l->lp[i]), *alts = json_array();
            for (int k = 0; k < l->n_top; k++) {
                const rm_token_logprob *t = &l->top[(size_t)i * (size_t)l->n_top + (size_t)k];
                json_array_append_new(alts, chat_token(tok, t->id, t->logprob));
            }
            json_object_set_new(e, "top_logprobs", alts);
            json_array_append_new(content, e);
        }
        return json_pack("{s:o, s:n}", "content", content, "refusal");
    }
    /* completions: the chosen token joins its alternatives ("up to logprobs + 1") */
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = from; i < to; i++) {
        char buf[256];
        const char *b;
        size_t n;
        const char *name = token_name(tok, l->ids[i], buf, sizeof buf, &b, &n);
        json_array_append_new(tokens, json_string(name));
        json_array_append_new(offs, json_integer(*offset));
        *offset += b ? chars(b, n) : 0;
        if (isnan(l->lp[i])) { /* a prompt's first token: nothing comes before it */
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
            continue;
        }
        json_array_append_new(lps, json_real(l->lp[i]));
        json_t *alts = json_object();
        for (int k = 0; k < l->n_top; k++) {
            const rm_token_logprob *t = &l->top[(size_t)i * (size_t)l->n_top + (size_t)k];
            char ab[256];
            const char *abytes;
            size_t an;
            json_object_set_new(alts, token_name(tok, t->id, ab, sizeof ab, &abytes, &an), json_real(t->logprob));
        }
        json_object_set_new(alts, name, json_real(l->lp[i]));
        json_array_append_new(tops, alts);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}
