/*
 * tokenizer.h — text <-> token ids, as Hugging Face `tokenizers` does it.
 *
 * A tokenizer is loaded from a Hugging Face tokenizer.json (plus the optional
 * tokenizer_config.json beside it), from OpenAI's GPT-2 pair encoder.json +
 * vocab.bpe, or trained by rm_tok_train. It supports the BPE model in its two
 * common forms:
 *   byte-level   (GPT-2, Llama-3, Qwen2/3): Split regex + ByteLevel, vocab of
 *                byte-mapped strings, ByteLevel decoder;
 *   SentencePiece-style (Llama-2, Mistral): Prepend/Replace or Metaspace
 *                with "▁", byte_fallback <0xXX> tokens, unk, fuse_unk.
 * plus the added tokens (matched before anything else), the normalizers,
 * pre-tokenizers, post-processors and decoders those families use. The exact
 * reference is Hugging Face's own tokenizers library (its Rust core, from
 * the npm package `tokenizers`), where users' ids come from;
 * tests/golden/tokenizer holds its output for five families and three
 * synthetic pipelines, and tests/cli/tokenizer_hf.sh compares with it live.
 * Chat templates follow the JS port @lenml/tokenizers, the only reference
 * that renders them.
 *
 * Lifetime and threads: an rm_tok is immutable after loading and may be used
 * by any number of threads at once. Each thread passes its own rm_tok_ids,
 * which also holds that caller's scratch memory and word cache, so a caller
 * that reuses one rm_tok_ids encodes without allocating.
 *
 * Text in: any bytes. Invalid UTF-8 is replaced by U+FFFD per maximal
 * subpart (the WHATWG decoder, as Rust's from_utf8_lossy does) before
 * encoding.
 */
#ifndef RM_TOKENIZER_H
#define RM_TOKENIZER_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rm_tok rm_tok;

/* Growable id list + the caller's private encode workspace. Zero-initialise
 * (rm_tok_ids x = {0};), pass to rm_tok_encode any number of times, then
 * rm_tok_ids_free. ids[0..n) are the result of the last call. */
typedef struct rm_tok_ids {
    int32_t *ids;
    size_t n, cap;
    struct rm_tok_scratch *scratch; /* private */
} rm_tok_ids;
void rm_tok_ids_free(rm_tok_ids *ids);

/* ---- loading ------------------------------------------------------------ */

/*
 * Load from `path`: a directory holding tokenizer.json (and optionally
 * tokenizer_config.json) or encoder.json + vocab.bpe (GPT-2), or a path to a
 * tokenizer.json file (tokenizer_config.json is then looked for beside it).
 * Errors: ERR_IO (missing file), ERR_FORMAT (malformed JSON, with line and
 * column; missing or mistyped fields), ERR_UNSUPPORTED (unknown model,
 * normalizer, pre-tokenizer, post-processor or decoder type, named).
 */
rm_status rm_tok_load(const char *path, rm_tok **out);
/* Same from memory. config_json may be NULL. `name` is used in messages. */
rm_status rm_tok_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                           const char *name, rm_tok **out);
/* OpenAI GPT-2 files: encoder.json (token -> id) and vocab.bpe (merges). */
rm_status rm_tok_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path, rm_tok **out);
void rm_tok_free(rm_tok *tok);

/* ---- encoding ----------------------------------------------------------- */

enum {
    /* Apply the post-processor's template (BOS/EOS as tokenizer.json says). */
    RM_TOK_ADD_SPECIAL = 1u << 0,
    /* Treat added/special token text in the input as plain text (user
     * content that must not inject control tokens). Default: matched. */
    RM_TOK_NO_PARSE_SPECIAL = 1u << 1,
    /* The text continues one encoded before it: no prefix space is added at
     * its start (a SentencePiece dummy prefix from Prepend or Metaspace,
     * ByteLevel's add_prefix_space). encode(a, ADD_SPECIAL) followed by
     * encode(b, CONTINUATION) decodes to a + b, as prompt-completion
     * training wants; sections after an added token keep their prefix. */
    RM_TOK_CONTINUATION = 1u << 2,
};

/* Encode text[0..len) into out (replacing its contents). */
rm_status rm_tok_encode(const rm_tok *tok, const char *text, size_t len, unsigned flags, rm_tok_ids *out);

/* llama.cpp-style variant: writes at most cap ids into buf; *n_out is set to
 * the number of ids (also when it returns ERR_TOO_SMALL, so the caller can
 * retry with a buffer of that size). */
rm_status rm_tok_encode_buf(const rm_tok *tok, const char *text, size_t len, unsigned flags, int32_t *buf,
                            size_t cap, size_t *n_out);

/* ---- decoding ----------------------------------------------------------- */

enum {
    RM_TOK_SKIP_SPECIAL = 1u << 0, /* drop special tokens */
    /* Do not apply clean_up_tokenization_spaces even if the config asks
     * for it (the config's default is followed otherwise, as HF does). */
    RM_TOK_NO_CLEANUP = 1u << 1,
};

/* Decode ids into a fresh NUL-terminated rm_malloc'd string (*len_out may be
 * NULL). ERR_RANGE names the first id outside [0, vocab size). */
rm_status rm_tok_decode(const rm_tok *tok, const int32_t *ids, size_t n, unsigned flags, char **out,
                        size_t *len_out);

/* The raw bytes one token stands for, for streaming output: byte-level
 * tokens give their bytes, "▁" becomes a space, <0xXX> gives byte XX,
 * added tokens give their text. Bytes of a UTF-8 character may be split
 * across tokens; the caller joins them. Returns ERR_RANGE for a bad id. */
rm_status rm_tok_piece(const rm_tok *tok, int32_t id, const char **bytes, size_t *len);

/*
 * Incremental decoding for streaming output. Zero-initialise an
 * rm_tok_stream, call rm_tok_stream_next for each generated id; *text gets
 * the new text that is complete so far (UTF-8 characters split across
 * tokens are held back until complete; bytes that can never complete become
 * U+FFFD), valid until the next call. The leading space a SentencePiece
 * decoder strips (Strip decoder / Metaspace prefix) is dropped from the
 * first piece. Flags: RM_TOK_SKIP_SPECIAL. rm_tok_stream_flush returns what
 * is held back (as U+FFFD) at the end. Concatenating all *text equals
 * rm_tok_decode of all ids for the byte-level and SentencePiece families
 * (without clean_up_tokenization_spaces), except where <0xXX> byte tokens
 * form invalid UTF-8: rm_tok_decode then gives one U+FFFD per byte of the
 * run, as the reference's ByteFallback decoder does. Free with rm_tok_stream_free.
 */
typedef struct rm_tok_stream {
    char *buf;
    size_t n, cap, held;
    bool started;
} rm_tok_stream;
rm_status rm_tok_stream_next(const rm_tok *tok, rm_tok_stream *s, int32_t id, unsigned flags, const char **text,
                             size_t *len);
rm_status rm_tok_stream_flush(const rm_tok *tok, rm_tok_stream *s, const char **text, size_t *len);
void rm_tok_stream_free(rm_tok_stream *s);

/* ---- vocabulary and special tokens -------------------------------------- */

int32_t rm_tok_vocab_size(const rm_tok *tok);       /* max id + 1 */
/* Id of a token string (vocab or added token), or -1. */
int32_t rm_tok_token_id(const rm_tok *tok, const char *s, size_t len);
/* The token's string as stored (byte-level tokens in their byte-mapped
 * form, as tokenizer.json writes them), or NULL for an unused id. */
const char *rm_tok_token_str(const rm_tok *tok, int32_t id);
bool rm_tok_is_special(const rm_tok *tok, int32_t id);
/* End of generation: the EOS id, or a special token that ends a turn in the
 * common families (<|eot_id|>, <|eom_id|>, <|im_end|>, <|endoftext|>,
 * <|end_of_text|>, </s>, <|end|>). */
bool rm_tok_is_eog(const rm_tok *tok, int32_t id);
/* BOS/EOS/UNK/PAD from tokenizer_config.json (or the GGUF keys); -1 if none. */
int32_t rm_tok_bos(const rm_tok *tok);
int32_t rm_tok_eos(const rm_tok *tok);
int32_t rm_tok_unk(const rm_tok *tok);
int32_t rm_tok_pad(const rm_tok *tok);
/* True for byte-level (GPT-2 style) models, false for SentencePiece-style. */
bool rm_tok_is_byte_level(const rm_tok *tok);

/* Model view for exporters (GGUF): the merges in rank order as id pairs. */
size_t rm_tok_merge_count(const rm_tok *tok);
void rm_tok_merge_get(const rm_tok *tok, size_t rank, int32_t *left, int32_t *right);

/* ---- GGUF (tok_gguf.c) ------------------------------------------------- */

typedef struct rm_gguf rm_gguf;               /* formats/gguf.h */
typedef struct rm_gguf_writer rm_gguf_writer;

/* Set the tokenizer.* keys llama.cpp reads (tokenizer.ggml.model, tokens,
 * token_type, merges or scores, special ids, add_bos/eos, chat_template);
 * with ramole_keys also tokenizer.ramole.pipeline, which lets ramole reload
 * the exact normalizer/pre-tokenizer/decoder. */
rm_status rm_tok_gguf_write(const rm_tok *tok, rm_gguf_writer *w, bool ramole_keys);
/* Build a tokenizer from an open GGUF file's metadata (the file may be
 * closed afterwards). ERR_NOT_FOUND if it has no tokenizer, ERR_UNSUPPORTED
 * for a tokenizer.ggml.model other than gpt2 and llama. rm_tok_load also
 * accepts a path ending in .gguf. */
rm_status rm_tok_gguf_load(const rm_gguf *g, rm_tok **out);

/* ---- chat templates ----------------------------------------------------- */

typedef enum {
    RM_CHAT_NONE = 0,
    RM_CHAT_CHATML,  /* <|im_start|>role\n...<|im_end|>\n (Qwen) */
    RM_CHAT_LLAMA2,  /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s> */
    RM_CHAT_LLAMA3,  /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    RM_CHAT_MISTRAL, /* <s>[INST] ... [/INST]...</s> */
} rm_chat_template;

/* One tool call an assistant message made (OpenAI's tool_calls[].function). */
typedef struct {
    const char *name;
    const char *arguments; /* JSON text, put in the prompt as it is */
} rm_chat_call;

typedef struct {
    const char *role;    /* "system", "user", "assistant", "tool" (a tool's result) */
    const char *content;
    const rm_chat_call *calls; /* an assistant's tool calls (templates that render tools) */
    int n_calls;
} rm_chat_msg;

/* The template recognised from tokenizer_config.json's chat_template (or the
 * family's files when the config has none); RM_CHAT_NONE if unknown. */
rm_chat_template rm_tok_chat_template(const rm_tok *tok);
/* The tokenizer's own chat template, its Jinja text as the file gives it, or NULL. */
const char *rm_tok_chat_template_text(const rm_tok *tok);
/* "chatml", "llama2", "llama3", "mistral" -> template; RM_CHAT_NONE if not. */
rm_chat_template rm_chat_template_from_name(const char *name);
const char *rm_chat_template_name(rm_chat_template t);

/*
 * Render messages as the template does (text, special tokens spelled out, to
 * be encoded with rm_tok_encode without RM_TOK_ADD_SPECIAL). tmpl
 * RM_CHAT_NONE means "the tokenizer's own"; an unknown one is ERR_UNSUPPORTED
 * with a message saying to pass a template. add_generation_prompt appends
 * the assistant header. Result: fresh rm_malloc'd string.
 */
rm_status rm_chat_apply(const rm_tok *tok, rm_chat_template tmpl, const rm_chat_msg *msgs, size_t n,
                        bool add_generation_prompt, char **out);

/* What a rendering takes beside the messages. */
typedef struct {
    /* tools the model may call: each tool object ({"type": "function",
     * "function": {...}}) already written as the template's tojson writes it
     * (rm_chat_tojson). Only templates that render tools take them, or
     * messages with tool calls or the "tool" role (rm_chat_tools_supported):
     * today the Qwen3 family's ChatML, whose model answers a call as
     * <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>. Any other
     * is ERR_UNSUPPORTED naming the template. */
    const char *const *tools;
    size_t n_tools;
    bool add_generation_prompt; /* the assistant header after the messages */
    bool no_thinking;           /* chat_template_kwargs {"enable_thinking": false}: Qwen3's template
                                 * opens the answer with an empty think block; others ignore it,
                                 * as their Jinja text does */
} rm_chat_opts;

/* rm_chat_apply with everything a template may take. */
rm_status rm_chat_render(const rm_tok *tok, rm_chat_template tmpl, const rm_chat_msg *msgs, size_t n,
                         const rm_chat_opts *opts, char **out);
bool      rm_chat_tools_supported(const rm_tok *tok, rm_chat_template tmpl);

/* JSON value `json` (a json_t *) as Python's json.dumps(ensure_ascii=False)
 * writes it, transformers' tojson filter (tok_pyjson.c). Fresh string. */
rm_status rm_chat_tojson(const void *json, char **out);

/* ---- training ----------------------------------------------------------- */

typedef struct {
    int32_t vocab_size;        /* total, including the 256 byte tokens and specials */
    const char *const *special_tokens; /* added as special tokens after the merges; may be NULL */
    size_t n_special;
    int32_t min_frequency;     /* pairs seen fewer times are never merged (>= 1) */
} rm_tok_train_opts;

/*
 * Learn a byte-level BPE (Llama-3/Qwen split regex, ByteLevel, no
 * normalizer) from texts[0..n) and return it as a tokenizer.json string
 * (fresh rm_malloc'd, NUL-terminated) that rm_tok_load_json and the HF/JS
 * tokenizers load. Deterministic: ties go to the lexicographically smallest
 * pair (by bytes).
 */
rm_status rm_tok_train_bpe(const char *const *texts, const size_t *lens, size_t n,
                           const rm_tok_train_opts *opts, char **json_out);

#endif /* RM_TOKENIZER_H */
