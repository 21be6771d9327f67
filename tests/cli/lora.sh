#!/usr/bin/env bash
# Command-line tests of the LoRA commands: random-adapter, --lora/--mode/
# --router on logits and generate, merge, adapter convert, and bad input.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

# max |a - b| over two files of one number per line, "ok" when below tol
close() { paste "$1" "$2" | awk -v tol="$3" '{d=$1-$2; if (d<0) d=-d; if (d>m) m=d} END {print (NR>0 && m<tol) ? "ok" : "max difference " m}'; }

$R random-model --arch llama --preset tiny -o "$TMP/base" --seed 5 2>/dev/null
$R random-model --arch qwen2 --preset tiny -o "$TMP/other" --seed 5 2>/dev/null
expect_ok cli_random_adapter_peft $R random-adapter -m "$TMP/base" --rank 8 --std 0.05 -o "$TMP/a1" --seed 1
expect_ok cli_random_adapter_gguf $R random-adapter -m "$TMP/base" --rank 4 --std 0.05 --targets q,v,down -o "$TMP/a2.gguf" --seed 2
expect_ok cli_random_router $R random-adapter -m "$TMP/base" --rank 4 --std 0.05 -o "$TMP/router" --seed 3

T=1,7,30,99,4,2
$R logits -m "$TMP/base" --tokens $T >"$TMP/l_base" 2>/dev/null
$R logits -m "$TMP/base" --tokens $T --lora "$TMP/a1:0.7" >"$TMP/l_a1" 2>"$TMP/err"
expect_ok cli_merge $R merge -m "$TMP/base" --lora "$TMP/a1:0.7" -o "$TMP/merged"
$R logits -m "$TMP/merged" --tokens $T >"$TMP/l_merged" 2>/dev/null
r=$(close "$TMP/l_a1" "$TMP/l_merged" 1e-4)
[ "$r" = ok ] && pass cli_runtime_adapter_equals_merged || fail cli_runtime_adapter_equals_merged "$r"
r=$(close "$TMP/l_a1" "$TMP/l_base" 1e-3)
[ "$r" != ok ] && pass cli_adapter_changes_the_output || fail cli_adapter_changes_the_output "same as base"

expect_ok cli_convert_peft_to_gguf $R convert "$TMP/a1" "$TMP/a1.gguf" --base "$TMP/base"
expect_ok cli_convert_gguf_to_peft $R convert "$TMP/a1.gguf" "$TMP/a1_back" --base "$TMP/base"
$R logits -m "$TMP/base" --tokens $T --lora "$TMP/a1_back:0.7" >"$TMP/l_back" 2>/dev/null
cmp -s "$TMP/l_back" "$TMP/l_a1" && pass cli_adapter_round_trip_keeps_logits || fail cli_adapter_round_trip_keeps_logits "differ"

# adapters stored in f16: an f16 file, and --lora-type f16 on an f32 file, give the same logits
expect_ok cli_convert_adapter_to_f16 $R convert "$TMP/a1" "$TMP/a1_f16" --base "$TMP/base" --type f16
sz32=$(stat -c %s "$TMP/a1/adapter_model.safetensors"); sz16=$(stat -c %s "$TMP/a1_f16/adapter_model.safetensors")
[ $((sz16 * 2)) -lt $((sz32 + 8192)) ] && pass cli_f16_adapter_file_is_half || fail cli_f16_adapter_file_is_half "$sz16 vs $sz32 bytes"
$R logits -m "$TMP/base" --tokens $T --lora "$TMP/a1_f16:0.7" >"$TMP/l_f16file" 2>/dev/null
$R logits -m "$TMP/base" --tokens $T --lora "$TMP/a1:0.7" --lora-type f16 >"$TMP/l_f16mem" 2>/dev/null
r=$(close "$TMP/l_f16file" "$TMP/l_f16mem" 1e-5)
[ "$r" = ok ] && pass cli_lora_type_f16_equals_f16_file || fail cli_lora_type_f16_equals_f16_file "$r"
r=$(close "$TMP/l_f16mem" "$TMP/l_a1" 1e-3)
[ "$r" = ok ] && pass cli_lora_type_f16_close_to_f32 || fail cli_lora_type_f16_close_to_f32 "$r"
expect_error cli_lora_type_bad "--lora-type must be" $R logits -m "$TMP/base" --tokens 1,2 --lora "$TMP/a1" --lora-type q8_0
expect_error cli_convert_adapter_q8_0 "not q8_0" $R convert "$TMP/a1" "$TMP/x8" --base "$TMP/base" --type q8_0

# mixture of k equals explicit 1/k; every mode runs
$R logits -m "$TMP/base" --tokens $T --lora "$TMP/a1" --lora "$TMP/a2.gguf" --mode mixture >"$TMP/l_mix" 2>/dev/null
$R logits -m "$TMP/base" --tokens $T --lora "$TMP/a1:0.5" --lora "$TMP/a2.gguf:0.5" >"$TMP/l_ex" 2>/dev/null
r=$(close "$TMP/l_mix" "$TMP/l_ex" 1e-5)
[ "$r" = ok ] && pass cli_mixture_equals_explicit_half || fail cli_mixture_equals_explicit_half "$r"
for mode in selection fusion; do
  expect_ok cli_mode_$mode $R generate -m "$TMP/base" --tokens $T -n 4 --lora "$TMP/a1" --lora "$TMP/a2.gguf" --mode $mode
done
expect_ok cli_mode_router $R generate -m "$TMP/base" --tokens $T -n 4 --lora "$TMP/a1" --lora "$TMP/a2.gguf" --mode router --router "$TMP/router"

# bad input
expect_error cli_adapter_for_another_base "another base" $R logits -m "$TMP/other" --tokens 1,2 --lora "$TMP/a1"
expect_error cli_router_needs_router "--router" $R logits -m "$TMP/base" --tokens 1,2 --lora "$TMP/a1" --mode router
expect_error cli_unknown_mode "--mode must be" $R logits -m "$TMP/base" --tokens 1,2 --lora "$TMP/a1" --mode blend
expect_error cli_missing_adapter "nope" $R logits -m "$TMP/base" --tokens 1,2 --lora "$TMP/nope"
expect_error cli_router_must_cover "must cover" $R logits -m "$TMP/base" --tokens 1,2 --lora "$TMP/a1" --mode router --router "$TMP/a2.gguf"
expect_error cli_convert_adapter_needs_base "--base" $R convert "$TMP/a1" "$TMP/x.gguf"
expect_error cli_unknown_target "unknown target module" $R random-adapter -m "$TMP/base" --rank 2 --targets q,lm_head -o "$TMP/bad"
sed -i 's/"r": 8/"r": 0/' "$TMP/a1/adapter_config.json"
expect_error cli_rank_zero "a1" $R logits -m "$TMP/base" --tokens 1,2 --lora "$TMP/a1"
