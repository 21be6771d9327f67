#!/usr/bin/env bash
# Command-line tests of the engine commands: random-model, convert, info,
# generate, logits, and their errors on bad input.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

expect_ok cli_random_model_hf $R random-model --arch llama --preset tiny -o "$TMP/tiny" --seed 3
expect_ok cli_random_model_gguf $R random-model --arch llama --preset tiny -o "$TMP/tiny.gguf" --seed 3
expect_ok cli_random_model_qwen2_q8 $R random-model --arch qwen2 --preset tiny -o "$TMP/q.gguf" --type q8_0

$R generate -m "$TMP/tiny" --tokens 1,2,3 -n 12 --temp 0 --ignore-eos >"$TMP/g1" 2>/dev/null
$R generate -m "$TMP/tiny.gguf" --tokens 1,2,3 -n 12 --temp 0 --ignore-eos >"$TMP/g2" 2>/dev/null
if [ -s "$TMP/g1" ] && cmp -s "$TMP/g1" "$TMP/g2" && [ "$(tr ',' '\n' <"$TMP/g1" | wc -l)" -eq 12 ]; then
  pass cli_generate_same_tokens_hf_and_gguf
else fail cli_generate_same_tokens_hf_and_gguf "$(cat "$TMP/g1") vs $(cat "$TMP/g2")"; fi

$R generate -m "$TMP/tiny" --tokens 1,2,3 -n 10 --temp 0.9 --top-k 20 --top-p 0.9 --seed 7 --ignore-eos >"$TMP/s1" 2>/dev/null
$R generate -m "$TMP/tiny" --tokens 1,2,3 -n 10 --temp 0.9 --top-k 20 --top-p 0.9 --seed 7 --ignore-eos -t 1 >"$TMP/s2" 2>/dev/null
if [ -s "$TMP/s1" ] && cmp -s "$TMP/s1" "$TMP/s2"; then pass cli_generate_seeded_is_reproducible
else fail cli_generate_seeded_is_reproducible "$(cat "$TMP/s1") vs $(cat "$TMP/s2")"; fi

# --all prints every position; its last 256 lines are the last position's
# logits (the same up to float rounding: other batch shapes may sum in
# another order)
$R logits -m "$TMP/tiny" --tokens 1,2,3,4 --all >"$TMP/all" 2>/dev/null
$R logits -m "$TMP/tiny" --tokens 1,2,3,4 >"$TMP/last" 2>/dev/null
n=$(wc -l <"$TMP/all")
d=$(tail -n 256 "$TMP/all" | paste - "$TMP/last" | awk '{d=$1-$2; if (d<0) d=-d; if (d>m) m=d} END {print (NR==256 && m<1e-5) ? "ok" : m}')
if [ "$n" -eq 1024 ] && [ "$d" = ok ]; then pass cli_logits_all_and_last
else fail cli_logits_all_and_last "lines $n, max difference $d"; fi

expect_ok cli_convert_gguf_to_hf $R convert "$TMP/tiny.gguf" "$TMP/back"
$R logits -m "$TMP/back" --tokens 5,6,7 >"$TMP/l1" 2>/dev/null
$R logits -m "$TMP/tiny" --tokens 5,6,7 >"$TMP/l2" 2>/dev/null
if [ -s "$TMP/l1" ] && cmp -s "$TMP/l1" "$TMP/l2"; then pass cli_convert_round_trip_keeps_logits
else fail cli_convert_round_trip_keeps_logits "logits differ"; fi
expect_ok cli_info $R info "$TMP/q.gguf"
grep -q "qkv bias:     yes" "$TMP/out" && grep -q "q8_0" "$TMP/out" && pass cli_info_reports_family || fail cli_info_reports_family "$(cat "$TMP/out")"

# bad input: clear message, non-zero exit, no crash
expect_error cli_token_out_of_range "token id 256" $R generate -m "$TMP/tiny" --tokens 1,256
expect_error cli_missing_model "no such model" $R logits -m "$TMP/none" --tokens 1
head -c 200 "$TMP/tiny.gguf" >"$TMP/cut.gguf"
expect_error cli_truncated_gguf "cut.gguf" $R info "$TMP/cut.gguf"
printf 'GGUF\x09\x00\x00\x00' >"$TMP/v9.gguf"
expect_error cli_bad_gguf_version "v9.gguf" $R info "$TMP/v9.gguf"
head -c 1000 "$TMP/tiny/model.safetensors" >"$TMP/cut.st"
mkdir -p "$TMP/cutdir" && cp "$TMP/tiny/config.json" "$TMP/cutdir/" && mv "$TMP/cut.st" "$TMP/cutdir/model.safetensors"
expect_error cli_truncated_safetensors "model.safetensors" $R info "$TMP/cutdir"
sed 's/"hidden_size": 64/"hidden_size": 32/' "$TMP/tiny/config.json" >"$TMP/cutdir/config.json"
cp "$TMP/tiny/model.safetensors" "$TMP/cutdir/"
expect_error cli_shape_disagrees_with_config "has shape" $R info "$TMP/cutdir"
sed 's/"model_type": "llama"/"model_type": "falcon"/' "$TMP/tiny/config.json" >"$TMP/cutdir/config.json"
expect_error cli_unknown_architecture "unknown architecture \"falcon\"" $R info "$TMP/cutdir"
expect_error cli_bad_tokens_option "--tokens expects" $R logits -m "$TMP/tiny" --tokens 1,x
expect_error cli_unknown_preset "unknown preset" $R random-model --arch llama --preset huge -o "$TMP/h"
expect_error cli_hf_refuses_q8_0 "not q8_0" $R convert "$TMP/tiny" "$TMP/tq" --type q8_0
expect_error cli_unknown_command "unknown command" $R frobnicate
