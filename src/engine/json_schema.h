/*
 * json_schema.h — the grammar of the JSON texts a JSON Schema accepts, for
 * responses constrained to a format (OpenAI's response_format).
 *
 * The grammar accepts a subset of the documents that validate against the
 * schema, so that every complete response validates:
 *   - objects list their declared "properties" in the schema's order, each
 *     optional one (not in "required") present or not; other properties
 *     only where "additionalProperties" is true or a schema, after the
 *     declared ones (absent, it is taken as false, as xgrammar and OpenAI's
 *     strict mode do). An object schema without "properties" takes any
 *     properties.
 *   - strings are JSON strings of valid UTF-8 ("minLength" and "maxLength"
 *     count characters, an escape one character); numbers have at most 16
 *     digits before the point, 16 after it and 3 in the exponent; arrays
 *     may be bounded by "minItems" and "maxItems".
 *   - "enum" and "const" values appear as compact JSON (jansson's), strings
 *     with only the escapes JSON requires.
 *   - "anyOf" and "oneOf" are alternatives (oneOf as anyOf, as xgrammar
 *     takes it); "allOf" only of one schema; "$ref" to "#", "#/$defs/..."
 *     or "#/definitions/..." (recursive schemas work).
 *   - whitespace: none, one space, or a newline and up to 20 spaces,
 *     between tokens and before the value; nothing after it, so a
 *     response ends as soon as its value is complete.
 * Annotations ("title", "description", "default", "examples", "format",
 * "$schema", "$id", "$comment", "strict") are ignored. Every other keyword
 * ("pattern", "minimum", "prefixItems", ...) is refused by name rather than
 * ignored, since a response that silently breaks the schema is worse
 * than an error.
 */
#ifndef RM_ENGINE_JSON_SCHEMA_H
#define RM_ENGINE_JSON_SCHEMA_H

#include "engine/grammar.h"

/* The schema as JSON text (len bytes). Errors are ERR_INVALID, naming the
 * place in the schema (a JSON pointer) and the problem. */
rm_status rm_json_schema_grammar(const char *schema, size_t len, rm_grammar **out);

/* The same value framed: open V close, then up to max_items - 1 more each
 * after sep, V with no whitespace before it (tool calls, tool_calls.h). */
rm_status rm_json_schema_grammar_framed(const char *schema, size_t len, const char *open, const char *close,
                                        const char *sep, int max_items, rm_grammar **out);

#endif
