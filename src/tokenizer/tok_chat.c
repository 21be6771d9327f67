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
 *           <think>\n\n</think>\n\n block, as its template does, and tools:
 *           their signatures in the system turn, an assistant's calls as
 *           <tool_call> blocks, tool results as <tool_response> blocks of a
 *           user turn (render_qwen3; checked against Python's jinja2 running
 *           the real template, tests/golden/tokenizer/chat_tools.jsonl).
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

/* Qwen3's template: ChatML that renders reasoning and tools. */
static bool qwen3_template(const rm_tok *t) {
    return t && t->chat_template && strstr(t->chat_template, "reasoning_content") &&
           strstr(t->chat_template, "<|im_start|>");
}

bool rm_chat_tools_supported(const rm_tok *t, rm_chat_template tmpl) {
    if (tmpl == RM_CHAT_NONE) tmpl = t ? t->chat : RM_CHAT_NONE;
    return tmpl == RM_CHAT_CHATML && qwen3_template(t) && strstr(t->chat_template, "<tool_call>");
}

static bool starts_ends(const char *s, const char *pre, const char *suf) {
    size_t n = strlen(s), a = strlen(pre), z = strlen(suf);
    return n >= a && n >= z && !memcmp(s, pre, a) && !memcmp(s + n - z, suf, z);
}

/* s without the characters c at its start (l) and end (r): [*a, *z) */
static void strip_nl(const char *s, const char *e, bool l, bool r, const char **a, const char **z) {
    while (l && s < e && *s == '\n') s++;
    while (r && e > s && e[-1] == '\n') e--;
    *a = s, *z = e;
}

/*
 * Qwen3's template, step by step as its Jinja text goes:
 *  1. with tools, a system turn holding the first system message (if any)
 *     and the tools, one tojson line each, in <tools></tools>; without, the
 *     first system message as its own turn;
 *  2. the last "query": the last user message that is not a tool's result
 *     wrapped in <tool_response></tool_response> (else the last message);
 *  3. each message: user and later system ones as turns; an assistant's
 *     reasoning (before </think>) kept only after the last query, in a
 *     <think> block, then its content and its calls as <tool_call> blocks;
 *     consecutive tool results as <tool_response> blocks of one user turn;
 *  4. the assistant header, and an empty think block when thinking is off.
 */
static rm_status render_qwen3(tok_buf *b, const rm_chat_msg *m, size_t n, const char *const *tools, size_t n_tools,
                              bool gen, bool no_thinking) {
    rm_status st = RM_OK;
    bool sys0 = n && !strcmp(m[0].role, "system");
    if (n_tools) {
        st = put(b, "<|im_start|>system\n");
        if (!st && sys0) st = put(b, m[0].content);
        if (!st && sys0) st = put(b, "\n\n");
        if (!st) st = put(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                             "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
        for (size_t i = 0; i < n_tools && !st; i++) {
            st = put(b, "\n");
            if (!st) st = put(b, tools[i]);
        }
        if (!st) st = put(b, "\n</tools>\n\nFor each function call, return a json object with function name and "
                             "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                             "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
    } else if (sys0) {
        st = put(b, "<|im_start|>system\n");
        if (!st) st = put(b, m[0].content);
        if (!st) st = put(b, "<|im_end|>\n");
    }
    size_t last_query = n ? n - 1 : 0;
    for (size_t i = n; i-- > 0;)
        if (!strcmp(m[i].role, "user") && !starts_ends(m[i].content ? m[i].content : "", "<tool_response>",
                                                        "</tool_response>")) {
            last_query = i;
            break;
        }
    for (size_t i = 0; i < n && !st; i++) {
        const char *role = m[i].role, *c = m[i].content ? m[i].content : ""; /* a call's message may have none */
        if (!strcmp(role, "user") || (!strcmp(role, "system") && i > 0)) {
            st = put(b, "<|im_start|>");
            if (!st) st = put(b, role);
            if (!st) st = put(b, "\n");
            if (!st) st = put(b, c);
            if (!st) st = put(b, "<|im_end|>\n");
        } else if (!strcmp(role, "assistant")) {
            /* content: after the last </think>, its leading newlines gone;
             * reasoning: before the first </think>, after the last <think> there */
            const char *ce = c + strlen(c), *r = "", *re = r, *end = strstr(c, "</think>");
            if (end) {
                const char *last = end, *q;
                while ((q = strstr(last + 8, "</think>"))) last = q;
                const char *rs = c;
                for (const char *o = c; (o = strstr(o, "<think>")) && o < end; o += 7) rs = o + 7;
                strip_nl(rs, end, true, true, &r, &re);
                strip_nl(last + 8, ce, true, false, &c, &ce);
            }
            st = put(b, "<|im_start|>assistant\n");
            if (!st && i > last_query && (i + 1 == n || re > r)) {
                const char *a, *z;
                st = put(b, "<think>\n");
                if (!st) st = tok_buf_put(b, r, (size_t)(re - r));
                if (!st) st = put(b, "\n</think>\n\n");
                strip_nl(c, ce, true, false, &a, &z);
                if (!st) st = tok_buf_put(b, a, (size_t)(z - a));
            } else if (!st) {
                st = tok_buf_put(b, c, (size_t)(ce - c));
            }
            for (int k = 0; k < m[i].n_calls && !st; k++) {
                if (k > 0 || ce > c) st = put(b, "\n");
                if (!st) st = put(b, "<tool_call>\n{\"name\": \"");
                if (!st) st = put(b, m[i].calls[k].name);
                if (!st) st = put(b, "\", \"arguments\": ");
                if (!st) st = put(b, m[i].calls[k].arguments);
                if (!st) st = put(b, "}\n</tool_call>");
            }
            if (!st) st = put(b, "<|im_end|>\n");
        } else if (!strcmp(role, "tool")) {
            if (i == 0 || strcmp(m[i - 1].role, "tool")) st = put(b, "<|im_start|>user");
            if (!st) st = put(b, "\n<tool_response>\n");
            if (!st) st = put(b, c);
            if (!st) st = put(b, "\n</tool_response>");
            if (!st && (i + 1 == n || strcmp(m[i + 1].role, "tool"))) st = put(b, "<|im_end|>\n");
        }
    }
    if (!st && gen) st = put(b, "<|im_start|>assistant\n");
    if (!st && gen && no_thinking) st = put(b, "<think>\n\n</think>\n\n");
    return st;
}

rm_status rm_chat_apply(const rm_tok *t, rm_chat_template tmpl, const rm_chat_msg *m, size_t n, bool gen, char **out) {
    rm_chat_opts o = {.add_generation_prompt = gen};
    return rm_chat_render(t, tmpl, m, n, &o, out);
}

rm_status rm_chat_render(const rm_tok *t, rm_chat_template tmpl, const rm_chat_msg *m, size_t n,
                         const rm_chat_opts *opts, char **out) {
    *out = NULL;
    const char *const *tools = opts->tools;
    size_t n_tools = opts->n_tools;
    bool gen = opts->add_generation_prompt;
    if (tmpl == RM_CHAT_NONE) tmpl = t ? t->chat : RM_CHAT_NONE;
    if (tmpl == RM_CHAT_NONE)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: the chat template is not one ramole knows (chatml, llama2, llama3, mistral); "
                      "name one explicitly", t ? t->name : "tokenizer");
    bool tooling = n_tools > 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || (!m[i].content && !m[i].n_calls))
            return rm_err(RAMOLE_ERR_INVALID, "chat: message %zu has no role or content", i);
        tooling |= m[i].n_calls > 0 || !strcmp(m[i].role, "tool");
    }
    if (tooling && !rm_chat_tools_supported(t, tmpl))
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "chat: this model's %s template does not render tools, tool calls or "
                      "tool results (ramole renders them with Qwen3's template)", rm_chat_template_name(tmpl));
    const char *bos = t ? tokstr(t, t->bos_id, "") : "";
    const char *eos = t ? tokstr(t, t->eos_id, "") : "";
    tok_buf b = {0};
    rm_status st = tok_buf_reserve(&b, 64);
    if (st) return st;
    b.p[0] = 0; /* no messages and no header still give a string: "" */
    switch (tmpl) {
    case RM_CHAT_CHATML:
        if (qwen3_template(t)) {
            st = render_qwen3(&b, m, n, tools, n_tools, gen, opts->no_thinking);
            break;
        }
        for (size_t i = 0; i < n && !st; i++) {
            st = put(&b, "<|im_start|>");
            if (!st) st = put(&b, m[i].role);
            if (!st) st = put(&b, "\n");
            if (!st) st = put(&b, m[i].content);
            if (!st) st = put(&b, "<|im_end|>\n");
        }
        if (!st && gen) st = put(&b, "<|im_start|>assistant\n");
        break;
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
