/*
 * tok_chat.c — chat templates of the common families, in C.
 *
 * tokenizer_config.json carries a Jinja template; ramole does not run Jinja.
 * It recognises which family's template it is by the control tokens it
 * spells ("<|im_start|>" ChatML, "<|start_header_id|>" Llama-3, "[INST]"
 * with "<<SYS>>" Llama-2, "[INST]" alone Mistral) and renders that family's
 * layout here. The renderings are checked against the reference (the JS
 * port of transformers' apply_chat_template running the real Jinja text) in
 * tests/golden/tokenizer/chat.jsonl. A template that matches none of these
 * is refused with ERR_UNSUPPORTED unless the caller names one.
 *
 *   ChatML  <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
 *           Qwen3's variant (it mentions reasoning_content) renders a final
 *           assistant turn after the last user turn with an empty
 *           <think>\n\n</think>\n\n block, as its template does.
 *   Llama-3 {bos}<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>...
 *   Llama-2 {bos}[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user|trim} [/INST] {assistant|trim} {eos}...
 *   Mistral {bos}[INST] {user} [/INST]{assistant}{eos}...  (system folded into the first user turn)
 * Llama-2 and Mistral require user/assistant alternation (as their
 * templates' raise_exception does).
 */
#include "tokenizer/tok_internal.h"

#include <string.h>

rm_chat_template tok_chat_detect(const char *s) {
    if (!s) return RM_CHAT_NONE;
    if (strstr(s, "<|im_start|>")) return RM_CHAT_CHATML;
    if (strstr(s, "<|start_header_id|>")) return RM_CHAT_LLAMA3;
    if (strstr(s, "[INST]")) return strstr(s, "<<SYS>>") ? RM_CHAT_LLAMA2 : RM_CHAT_MISTRAL;
    return RM_CHAT_NONE;
}

rm_chat_template rm_tok_chat_template(const rm_tok *t) { return t->chat; }
const char *rm_tok_chat_template_text(const rm_tok *t) { return t->chat_template; }

static const char *const names[] = {"none", "chatml", "llama2", "llama3", "mistral"};

rm_chat_template rm_chat_template_from_name(const char *name) {
    for (int i = 1; i < 5; i++)
        if (name && !strcmp(name, names[i])) return (rm_chat_template)i;
    return RM_CHAT_NONE;
}

const char *rm_chat_template_name(rm_chat_template t) {
    return (int)t >= 0 && (int)t < 5 ? names[t] : "none";
}

static rm_status put(tok_buf *b, const char *s) { return tok_buf_put(b, s, s ? strlen(s) : 0); }

/* Python str.strip() on the ASCII and Unicode spaces the JS trim knows. */
static rm_status put_trim(tok_buf *b, const char *s) {
    size_t n = strlen(s), i = 0, j = n;
    while (i < n) {
        size_t l = tok_utf8_valid_len((const uint8_t *)s + i, n - i);
        if (!l) break;
        size_t dl;
        if (!tok_js_space(tok_utf8_decode((const uint8_t *)s + i, &dl))) break;
        i += l;
    }
    while (j > i) {
        size_t k = j - 1;
        while (k > i && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
        if (!tok_utf8_valid_len((const uint8_t *)s + k, j - k)) break;
        size_t dl;
        if (!tok_js_space(tok_utf8_decode((const uint8_t *)s + k, &dl))) break;
        j = k;
    }
    return tok_buf_put(b, s + i, j - i);
}

static const char *tokstr(const rm_tok *t, int32_t id, const char *def) {
    return id >= 0 && id < t->n_ids && t->str[id] ? t->str[id] : def;
}

static rm_status alternation(const rm_chat_msg *m, size_t n, size_t first) {
    for (size_t i = first; i < n; i++) {
        bool want_user = ((i - first) % 2) == 0;
        bool is_user = !strcmp(m[i].role, "user");
        if (want_user != is_user || (!is_user && strcmp(m[i].role, "assistant")))
            return rm_err(RAMOLE_ERR_INVALID, "chat: conversation roles must alternate user/assistant/user/... (message %zu is \"%s\")",
                          i, m[i].role);
    }
    return RM_OK;
}

rm_status rm_chat_apply(const rm_tok *t, rm_chat_template tmpl, const rm_chat_msg *m, size_t n, bool gen, char **out) {
    *out = NULL;
    if (tmpl == RM_CHAT_NONE) tmpl = t ? t->chat : RM_CHAT_NONE;
    if (tmpl == RM_CHAT_NONE)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: the chat template is not one ramole knows (chatml, llama2, llama3, mistral); "
                      "name one explicitly", t ? t->name : "tokenizer");
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content) return rm_err(RAMOLE_ERR_INVALID, "chat: message %zu has no role or content", i);
    const char *bos = t ? tokstr(t, t->bos_id, "") : "";
    const char *eos = t ? tokstr(t, t->eos_id, "") : "";
    tok_buf b = {0};
    rm_status st = tok_buf_reserve(&b, 64);
    if (st) return st;
    b.p[0] = 0; /* no messages and no header still give a string: "" */
    switch (tmpl) {
    case RM_CHAT_CHATML: {
        bool qwen3 = t && t->chat_template && strstr(t->chat_template, "reasoning_content");
        size_t last_user = n;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(m[i].role, "user")) last_user = i;
        for (size_t i = 0; i < n && !st; i++) {
            st = put(&b, "<|im_start|>");
            if (!st) st = put(&b, m[i].role);
            if (!st) st = put(&b, "\n");
            if (!st && qwen3 && !strcmp(m[i].role, "assistant")) {
                /* content after the last </think>; reasoning between <think> and it */
                const char *c = m[i].content, *end = strstr(c, "</think>"), *r = "", *re = r;
                if (end) {
                    const char *last = end, *q;
                    while ((q = strstr(last + 8, "</think>"))) last = q;
                    r = c;
                    re = end; /* split('</think>')[0] */
                    for (const char *o = r; (o = strstr(o, "<think>")) && o < re; o += 7) r = o + 7;
                    while (re > r && re[-1] == '\n') re--;
                    while (r < re && *r == '\n') r++;
                    c = last + 8;
                    while (*c == '\n') c++;
                }
                if (last_user < n && i > last_user && (i + 1 == n || re > r)) {
                    st = put(&b, "<think>\n");
                    if (!st) st = tok_buf_put(&b, r, (size_t)(re - r));
                    if (!st) st = put(&b, "\n</think>\n\n");
                    while (*c == '\n') c++;
                }
                if (!st) st = put(&b, c);
            } else if (!st) {
                st = put(&b, m[i].content);
            }
            if (!st) st = put(&b, "<|im_end|>\n");
        }
        if (!st && gen) st = put(&b, "<|im_start|>assistant\n");
        break;
    }
    case RM_CHAT_LLAMA3:
        /* some Llama-3 templates append the header unconditionally */
        if (t && t->chat == RM_CHAT_LLAMA3 && t->chat_template && !strstr(t->chat_template, "add_generation_prompt"))
            gen = true;
        for (size_t i = 0; i < n && !st; i++) {
            if (i == 0) st = put(&b, bos);
            if (!st) st = put(&b, "<|start_header_id|>");
            if (!st) st = put(&b, m[i].role);
            if (!st) st = put(&b, "<|end_header_id|>\n\n");
            if (!st) st = put_trim(&b, m[i].content);
            if (!st) st = put(&b, "<|eot_id|>");
        }
        if (!st && gen) st = put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case RM_CHAT_LLAMA2:
    case RM_CHAT_MISTRAL: {
        size_t first = n && !strcmp(m[0].role, "system") ? 1 : 0;
        const char *sys = first ? m[0].content : NULL;
        st = alternation(m, n, first);
        if (!st && tmpl == RM_CHAT_MISTRAL) st = put(&b, bos);
        for (size_t i = first; i < n && !st; i++) {
            bool user = !strcmp(m[i].role, "user");
            if (tmpl == RM_CHAT_LLAMA2) {
                if (user) {
                    st = put(&b, bos);
                    if (!st) st = put(&b, "[INST] ");
                    if (!st && i == first && sys) {
                        /* the template strips the whole "<<SYS>>...content" */
                        tok_buf c = {0};
                        st = put(&c, "<<SYS>>\n");
                        if (!st) st = put(&c, sys);
                        if (!st) st = put(&c, "\n<</SYS>>\n\n");
                        if (!st) st = put(&c, m[i].content);
                        if (!st) st = put_trim(&b, c.p ? c.p : "");
                        tok_buf_free(&c);
                    } else if (!st) {
                        st = put_trim(&b, m[i].content);
                    }
                    if (!st) st = put(&b, " [/INST]");
                } else {
                    st = put(&b, " ");
                    if (!st) st = put_trim(&b, m[i].content);
                    if (!st) st = put(&b, " ");
                    if (!st) st = put(&b, eos);
                }
            } else {
                if (user) {
                    st = put(&b, "[INST] ");
                    if (!st && i == first && sys) {
                        st = put(&b, sys);
                        if (!st) st = put(&b, "\n\n");
                    }
                    if (!st) st = put(&b, m[i].content);
                    if (!st) st = put(&b, " [/INST]");
                } else {
                    st = put(&b, m[i].content);
                    if (!st) st = put(&b, eos);
                }
            }
        }
        break;
    }
    default:
        st = rm_err(RAMOLE_ERR_UNSUPPORTED, "chat: unknown template %d", (int)tmpl);
    }
    if (st) { tok_buf_free(&b); return st; }
    *out = b.p;
    return RM_OK;
}
