#!/usr/bin/env bash
# bench/registry_upload.sh — upload-to-retrievable latency of the registry:
# the wall time of one `ramole adapter add` process (open the registry and
# the base, load and screen the adapter with the KL probe, embed its samples,
# store the blob, commit) for a rank-16 adapter with 20 samples, on each
# backend (SQLite; PostgreSQL from scripts/pg.sh in a folder of its own,
# removed at the end), then a check that the next `ramole retrieve` lists it.
#
#   bash bench/registry_upload.sh [UPLOADS]     (default 3 per backend)
#   BENCH_BASE=model.gguf  the base (default .cache/bench/tinyllama-1.1b-f16-llama2tok.gguf:
#                          TinyLlama-shaped, random f16 weights, with the Llama-2
#                          tokenizer that scripts/deps.sh exports (32000 tokens, as
#                          TinyLlama's); made with `ramole random-model` when missing.
#                          The registry's embedder reads text, so the base needs one.)
#
# One JSON line per upload; "skipped:" for a backend that cannot run; exit 1
# when an upload fails or an uploaded adapter is not retrievable.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
BUILD=${BUILD:-build}
R=$BUILD/ramole
UPLOADS=${1:-3}
BASE=${BENCH_BASE:-.cache/bench/tinyllama-1.1b-f16-llama2tok.gguf}
TOKENIZER=.cache/npm/ramole-tokenizers/llama2
FAILED=0
[ -x "$R" ] || { skip "registry upload bench: $R not built"; exit 0; }
if [ ! -f "$BASE" ]; then
  mkdir -p "$(dirname "$BASE")"
  say "making $BASE"
  [ -f "$TOKENIZER/tokenizer.json" ] || { skip "registry upload bench: $TOKENIZER missing (bash scripts/deps.sh)"; exit 0; }
  $R random-model --arch llama --preset tinyllama-1.1b --format gguf --type f16 --tokenizer "$TOKENIZER" \
    -o "$BASE.tmp" >/dev/null && mv "$BASE.tmp" "$BASE" || { fail "random-model $BASE"; exit 1; }
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ramole-upload-bench.XXXXXX") && chmod 755 "$DIR" # the postgres user enters it
export RAMOLE_PG_DIR=$DIR/pg
cleanup() { [ -d "$DIR/pg" ] && bash scripts/pg.sh clean >/dev/null 2>&1; rm -rf "$DIR"; }
trap cleanup EXIT

# one adapter per upload (distinct content: the store keeps identical bytes once)
# and 20 samples each, distinct per upload too
for i in $(seq 1 "$UPLOADS"); do
  $R random-adapter -m "$BASE" --rank 16 --seed "$i" --format gguf -o "$DIR/a$i.gguf" >/dev/null 2>&1 \
    || { fail "random-adapter rank 16 for $BASE"; exit 1; }
  for j in $(seq 1 20); do printf '{"input": "task %d sample %d: summarise the report on topic %d"}\n' "$i" "$j" "$((i * 7 + j))"; done \
    >"$DIR/s$i.jsonl"
done

run_backend() { # run_backend NAME URL
  local name=$1 url=$2
  $R registry init --registry "$url" -m "$BASE" >"$DIR/init.out" 2>&1 || { fail "$name: registry init: $(tail -2 "$DIR/init.out")"; return; }
  for i in $(seq 1 "$UPLOADS"); do
    local t0 t1 t2
    t0=$(date +%s.%N)
    $R adapter add --registry "$url" "$DIR/a$i.gguf" --name "up$i" --samples "$DIR/s$i.jsonl" >"$DIR/add.out" 2>&1 \
      || { fail "$name: adapter add: $(tail -2 "$DIR/add.out")"; return; }
    t1=$(date +%s.%N)
    $R retrieve --registry "$url" -p "task $i sample 1: summarise the report" -k 100 >"$DIR/ret.out" 2>&1 \
      || { fail "$name: retrieve: $(tail -2 "$DIR/ret.out")"; return; }
    t2=$(date +%s.%N)
    grep -qP "^up$i\t" "$DIR/ret.out" || { fail "$name: up$i not retrieved: $(head -3 "$DIR/ret.out")"; return; }
    printf '{"bench":"registry_upload","backend":"%s","upload":%d,"rank":16,"samples":20,"add_s":%.2f,"retrieve_s":%.2f}\n' \
      "$name" "$i" "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $t2 - $t1}")"
  done
}

say "## Registry upload to retrievable: rank 16, 20 samples, base $BASE"
run_backend sqlite "sqlite:$DIR/reg.db"
if url=$(bash scripts/pg.sh start 2>"$DIR/pg.err"); then
  run_backend postgresql "$url"
else
  skip "PostgreSQL backend: scripts/pg.sh start failed: $(tail -1 "$DIR/pg.err")"
fi
exit $FAILED
