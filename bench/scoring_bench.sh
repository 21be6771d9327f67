#!/usr/bin/env bash
# bench/scoring_bench.sh — what evaluation harnesses ask of `ramole serve`,
# on the world's base without a registry: scoring as lm-evaluation-harness
# does it (bench/scoring_load.mjs: N = SCORING_BENCH_N, 64, concurrent
# requests with echo and logprobs against the same without,
# SCORING_BENCH_RUNS (3) runs), then n samples of one prompt against as
# many separate prompts (bench/samples_load.mjs). One JSON line per run.
# SCORING_BENCH_SERVE_ARGS: more options for `ramole serve`. The prefix
# cache is off: the plain pass would otherwise start after the scored
# pass's rows, and the ratio would not compare prefill with prefill.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
R=${BUILD:-build}/ramole
OUT=$(mktemp "${TMPDIR:-/tmp}/ramole-scoring.XXXXXX")
trap 'serve_stop; rm -f "$OUT"' EXIT
# shellcheck disable=SC2086 # the extra options are words
serve_start "$OUT" -m world/base --no-registry -t "${SCORING_BENCH_THREADS:-2}" --prefix-cache 0 \
  ${SCORING_BENCH_SERVE_ARGS:-} || exit 1
for _ in $(seq 1 "${SCORING_BENCH_RUNS:-3}"); do
  node bench/scoring_load.mjs "http://127.0.0.1:$PORT" "${SCORING_BENCH_N:-64}" || exit 1
done
node bench/samples_load.mjs "http://127.0.0.1:$PORT" || exit 1
