/*
 * request_json.h — one generation request from JSON, as `ramole batch`
 * lines and the server's request bodies carry it.
 *
 * Fields (all optional but the prompt), with OpenAI's meanings and
 * defaults where OpenAI has them:
 *   "prompt"       string, or an array of token ids
 *   "messages"     [{"role", "content"}] through the model's chat template;
 *                  roles system, developer (as system), user, assistant;
 *                  content a string or an array of {"type": "text", "text"}
 *                  parts (joined with newlines, as vLLM joins them)
 *   "max_tokens"   integer >= 0, or "max_completion_tokens" (OpenAI's newer
 *                  name); default 16 for a prompt, as OpenAI's completions,
 *                  and for messages until the answer ends or the context is
 *                  full, as OpenAI's chat; 0: until the context is full
 *   "temperature"  number in [0, 2] (default 1; 0 is greedy)
 *   "top_p"        number in (0, 1] (default 1)
 *   "frequency_penalty", "presence_penalty"   numbers in [-2, 2] (default 0),
 *                  over the output so far, as OpenAI and vLLM
 *   "logit_bias"   {"token id": bias in [-100, 100]}, added to those logits
 *                  (at most 1024 tokens)
 *   "top_k", "min_p", "repeat_penalty"   llama.cpp's samplers (default off)
 *   "seed"         integer >= 0 (default a fixed seed: batches are repeatable)
 *   "stop"         string or array of up to 16 strings
 *   "ignore_eos"   boolean
 *   "logprobs"     true (chat; with "top_logprobs" 0..20 alternatives) or an
 *                  integer 0..20 (completions: that many alternatives):
 *                  each token's log-probability under the model's raw
 *                  distribution, as vLLM reports by default
 *   "echo"         boolean, with a prompt (not messages): the answer begins
 *                  with the prompt, and with "logprobs" the prompt's tokens
 *                  carry theirs too (the first null), as OpenAI's
 *                  completions and lm-evaluation-harness's scoring use it;
 *                  with "max_tokens": 0, as OpenAI's, the prompt alone
 *                  (nothing is generated)
 *   "cache_salt"   non-empty string, vLLM's: requests share KV rows only with
 *                  requests of the same salt (and the server's tenant)
 *   "response_format"  OpenAI's: {"type": "text"} (the default),
 *                  {"type": "json_object"} (any JSON object), or {"type":
 *                  "json_schema", "json_schema": {"name", "schema",
 *                  "strict"}}: the answer is a JSON text that satisfies
 *                  the schema (json_schema.h's subset; others are refused
 *                  naming the keyword), ending as soon as it is complete
 *   "grammar"      llama.cpp's: a grammar in GBNF (gbnf.h) that the answer
 *                  follows from its rule root
 *   "guided_json", "guided_choice" (an array of strings: the answer is one
 *                  of them), "guided_grammar", "structured_outputs" ({"json"
 *                  | "choice" | "grammar" | "json_object": true})   vLLM's
 *                  names for the same; at most one field constrains a
 *                  request
 *   "lora"         {"mode": "none"|"explicit"|"selection"|"mixture"|"fusion"|
 *                   "router", "adapters": [{"name" or "path", "weight", "score"}],
 *                   "router": name or path}; mode defaults to explicit when
 *                   adapters are given, weights to 1
 * Other fields are ignored, as OpenAI clients send more than ramole uses,
 * except those that ask for what ramole does not do: "n" and "best_of"
 * other than 1, "suffix", "tools" and
 * "functions" are refused by name unless they hold their "off" value (null, false, 0, "",
 * [] or {}), which clients send by default.
 * Errors (ERR_INVALID) name the field and what it must be.
 */
#ifndef RM_REQUEST_JSON_H
#define RM_REQUEST_JSON_H

#include "engine/engine.h"
#include "engine/tool_calls.h"

#define RM_REQUEST_MAX_STOP 16

/* A request and the storage its pointers refer to. */
typedef struct {
    rm_engine_request req;
    int32_t *tokens;
    char *prompt;
    rm_chat_msg *messages;   /* role/content strings and tool calls owned */
    rm_tools tools;          /* "tools", "tool_choice", "parallel_tool_calls" (req.tools) */
    char *stop[RM_REQUEST_MAX_STOP];
    char *adapters[RM_LORA_MAX_K];
    char *router;
    bool echo;               /* completions' "echo": the answer begins with the prompt */
    rm_logit_bias *bias;     /* "logit_bias" */
    char *cache_salt;        /* "cache_salt" (req.cache_salt holds its 64-bit hash) */
    char *json_schema;       /* "response_format"'s schema, compact JSON (req.json_schema) */
    char *grammar;           /* "grammar", GBNF (req.grammar) */
    rm_grammar *format;      /* either one compiled (req.format), one reference */
} rm_request_spec;

/* Adapter object `adapter` (a json_t *, entry i of "lora.adapters")'s
 * optional "score", its retrieval cosine (which a router with a retrieval
 * prior weighs in): absent or null, *given false and *out 0; a number in
 * [-1, 1], *given true; anything else ERR_INVALID naming entry i. The
 * server's bodies read it here too. */
rm_status rm_request_adapter_score(const void *adapter, size_t i, float *out, bool *given);

/* Parse object `obj` (a json_t *) into spec; on failure spec holds nothing. */
rm_status rm_request_spec_from_json(const void *obj, rm_request_spec *spec);
void      rm_request_spec_free(rm_request_spec *spec);

#endif
