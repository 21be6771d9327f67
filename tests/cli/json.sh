#!/usr/bin/env bash
# Command-line tests of JSON output: names that hold a quote and a
# backslash (a model path, adapter folder names, an expected adapter name)
# come out as valid JSON that reads back to the same strings: bench,
# train router-eval (per-example lines and summary), the training log.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

# a JSON reader: python3, else node
if command -v python3 >/dev/null; then
  check_json() { python3 -c 'import json, sys
want = sys.argv[2:]
seen = set()
def walk(v):
    if isinstance(v, dict):
        for x in v.values(): walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
    elif isinstance(v, str): seen.add(v)
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no output"
for l in lines: walk(json.loads(l))
missing = [w for w in want if w not in seen]
assert not missing, "strings not found: %r" % missing' "$@"; }
elif command -v node >/dev/null; then
  check_json() { node -e 'const fs = require("fs"); const [f, ...want] = process.argv.slice(1); const seen = new Set();
const walk = v => { if (Array.isArray(v)) v.forEach(walk); else if (v && typeof v === "object") Object.values(v).forEach(walk); else if (typeof v === "string") seen.add(v); };
const lines = fs.readFileSync(f, "utf8").split("\n").filter(l => l.trim());
if (!lines.length) throw new Error("no output");
lines.forEach(l => walk(JSON.parse(l)));
const missing = want.filter(w => !seen.has(w)); if (missing.length) throw new Error("strings not found: " + missing);' "$@"; }
else
  echo "SKIP json: neither python3 nor node to read JSON"
  exit 0
fi

odd='we"ird\name'   # a quote and a backslash
mkdir -p "$TMP/$odd" "$TMP/tk"
printf 'Reverse: abc => cba\nReverse: hello => olleh\nthe quick brown fox\n%.0s' {1..10} >"$TMP/corpus.txt"
$R tokenizer train --vocab-size 300 --special "<|endoftext|>" -o "$TMP/tk/tokenizer.json" "$TMP/corpus.txt" >/dev/null 2>&1
$R random-model --arch llama --preset tiny --tokenizer "$TMP/tk" -o "$TMP/$odd/m" --seed 5 >/dev/null 2>&1

# bench: the model path
expect_ok json_bench_runs $R bench -m "$TMP/$odd/m" -t 1 --prompt 8 --decode 2
check_json "$TMP/out" "$TMP/$odd/m" 2>"$TMP/why" && pass json_bench_model_path_with_quote \
  || fail json_bench_model_path_with_quote "$(tail -1 "$TMP/why"): $(head -c 300 "$TMP/out")"

# router-eval: pool adapters in folders named with a quote and a backslash, and the expected name
$R random-adapter -m "$TMP/$odd/m" --rank 2 --seed 1 -o "$TMP/$odd/a\"1" 2>/dev/null
$R random-adapter -m "$TMP/$odd/m" --rank 2 --seed 2 -o "$TMP/b\\2" 2>/dev/null
$R random-adapter -m "$TMP/$odd/m" --rank 2 --seed 3 -o "$TMP/router" 2>/dev/null
printf '%s\n' '{"input": "Reverse: abc =>", "output": " cba", "adapters": ["a\"1"]}' \
  '{"input": "Reverse: hello =>", "output": " olleh", "adapters": ["b\\2"]}' >"$TMP/held.jsonl"
expect_ok json_router_eval_runs $R train router-eval -m "$TMP/$odd/m" --pool "$TMP/$odd/a\"1" "$TMP/b\\2" \
  --router "$TMP/router" --data "$TMP/held.jsonl"
check_json "$TMP/out" 'a"1' 'b\2' 2>"$TMP/why" && [ "$(wc -l <"$TMP/out")" = 3 ] \
  && pass json_router_eval_names_with_quote || fail json_router_eval_names_with_quote "$(tail -1 "$TMP/why"): $(head -c 300 "$TMP/out")"

# the training log of a router over them: every line parses
expect_ok json_train_router_log $R train router -m "$TMP/$odd/m" --pool "$TMP/$odd/a\"1" "$TMP/b\\2" \
  --data "$TMP/held.jsonl" -o "$TMP/r" --steps 2 --batch 2 --val 0.5 --log "$TMP/$odd/log.jsonl" --quiet
check_json "$TMP/$odd/log.jsonl" start done 2>"$TMP/why" && pass json_train_log_parses \
  || fail json_train_log_parses "$(tail -1 "$TMP/why")"
