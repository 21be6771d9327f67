/*
 * tool_calls.h — the tools a chat request offers (OpenAI's "tools",
 * "tool_choice", "parallel_tool_calls") and the calls a model's answer
 * makes, in the format of the chat templates that render tools (Qwen3's,
 * tokenizer.h rm_chat_render): each call a block
 *
 *   <tool_call>\n{"name": NAME, "arguments": {...}}\n</tool_call>
 *
 * with any text before the first block the answer's content.
 *
 * tool_choice:
 *   "auto" (the default with tools): the model chooses; from a
 *     "<tool_call>" it writes on, its answer follows the grammar of calls
 *     (below), and it is read for calls afterwards.
 *   "none": the tools are still shown to the model (as vLLM does), and the
 *     answer is text.
 *   "required", or {"type": "function", "function": {"name": NAME}}: the
 *     answer is constrained (a grammar, as response formats are) to calls of
 *     the tools (of NAME only), their arguments following each tool's
 *     "parameters" schema in json_schema.h's subset; one call, or several
 *     on their own lines when parallel_tool_calls is true (the default).
 */
#ifndef RM_ENGINE_TOOL_CALLS_H
#define RM_ENGINE_TOOL_CALLS_H

#include "engine/grammar.h"

typedef enum { RM_TOOL_CHOICE_AUTO, RM_TOOL_CHOICE_NONE, RM_TOOL_CHOICE_REQUIRED, RM_TOOL_CHOICE_NAMED } rm_tool_choice;

#define RM_TOOLS_MAX 128      /* tools a request may offer */
#define RM_TOOL_CALLS_MAX 16  /* calls one constrained answer may make */

typedef struct {
    int n;
    char **texts;          /* each tool object as the template's tojson writes it */
    char **names;          /* its function's name */
    struct json_t **params; /* its "parameters" schema, owned ({"type": "object"} when absent) */
    rm_tool_choice choice;
    int named;             /* RM_TOOL_CHOICE_NAMED: the index of the tool */
    bool parallel;
} rm_tools;

/* Request object `obj` (a json_t *)'s tool fields into t (zeroed first; n 0
 * when it offers none). ERR_INVALID names the field and what it must be. */
rm_status rm_tools_from_json(const void *obj, rm_tools *t);
void      rm_tools_free(rm_tools *t);
/* Whether answers to this request are read for calls. */
static inline bool rm_tools_active(const rm_tools *t) { return t->n > 0 && t->choice != RM_TOOL_CHOICE_NONE; }
/* The grammar of the calls allowed. "required" or a named tool: the
 * answer's, *trigger NULL; errors name the tool whose parameters cannot be
 * compiled. "auto": the calls', to apply from *trigger ("<tool_call>") on,
 * so that a call the model begins is whole and follows its tool's
 * parameters (as llama.cpp's lazy grammars); NULL when some tool's
 * parameters cannot be compiled (the calls are then read as written).
 * "none" or no tools: NULL. */
rm_status rm_tools_grammar(const rm_tools *t, rm_grammar **out, const char **trigger);

typedef struct {
    char *name;
    char *arguments;       /* JSON text as Python's json.dumps writes it, as vLLM returns it */
} rm_tool_call;

/*
 * The calls in answer text[0..len): *calls (n of them, rm_malloc'd, free
 * with rm_tool_calls_free) and *content_len, the length of the text before
 * the first <tool_call>. No blocks, or any block that is not a JSON object
 * with a string "name": *n 0 and the whole text is content (vLLM's Hermes
 * reader does the same, and like it ends a block at the first
 * </tool_call>). A last block without its </tool_call> (the answer cut by
 * max_tokens) is read if its JSON is whole and only the start of its
 * </tool_call> follows.
 */
rm_status rm_tool_calls_parse(const char *text, size_t len, rm_tool_call **calls, int *n, size_t *content_len);
void      rm_tool_calls_free(rm_tool_call *calls, int n);
/* How many leading bytes of a growing answer are content for sure: up to
 * the first "<tool_call>", and short of a tail that may begin one. */
size_t    rm_tool_calls_content_prefix(const char *text, size_t len);

#endif
