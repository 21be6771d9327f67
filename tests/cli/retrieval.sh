#!/usr/bin/env bash
# Command-line tests of retrieval: `train retriever` on twelve toy tasks
# (templates buried in shared filler words) over a tiny random model with a
# BPE tokenizer trained on the same text; top-1 accuracy of held-out inputs
# rises above the plain embedder's and far above chance; the JSONL log and
# the progress lines; the same seed gives the same file; `embed` prints unit
# vectors (of the projection's size with --projection); `retrieve` finds a
# new input's task; bad input (line numbers, a task of one input, a
# projection of another base, truncated or NaN projections, unknown
# held-out task names, no tokenizer) gives clear errors and writes nothing.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

# toy tasks: each input is a task template (3 wordings, random slots) with
# shared filler words before and after it
gen_tasks() { # SEED PER NOISE
  awk -v seed="$1" -v per="$2" -v noise="$3" '
  function pick(a, n) { return a[1 + int(rand() * n)] }
  function filler(k,   s, i) { s = ""; for (i = 0; i < k; i++) s = s " " pick(F, nf); return s }
  BEGIN {
    srand(seed)
    nf = split("today please quickly also maybe really just now then here there some many very kindly simply again", F, " ")
    nw = split("apple river stone cloud garden window music paper silver forest bridge candle", W, " ")
    nc = split("France Spain Japan Brazil Egypt Canada Kenya Norway", C, " ")
    nd = split("Monday Tuesday Wednesday Thursday Friday Saturday", D, " ")
    nk = split("red blue green yellow white black", K, " ")
    na = split("big fast happy old", A, " ")
    nt = split("arith reverse translate sentiment capital sort upper count weekday color antonym rhyme", T, " ")
    for (t = 1; t <= nt; t++) for (e = 0; e < per; e++) {
      f1 = filler(int(rand() * noise)); f2 = filler(int(rand() * noise))
      v = int(rand() * 3); w = pick(W, nw); x = int(rand() * 90); y = int(rand() * 90)
      if (T[t] == "arith") s = v == 0 ? "What is " x " plus " y "?" : v == 1 ? "Add " x " and " y "." : "Compute the sum " x " + " y
      if (T[t] == "reverse") s = v == 0 ? "Reverse the letters of " w "." : v == 1 ? "Write " w " backwards." : "Give " w " reversed"
      if (T[t] == "translate") s = v == 0 ? "Translate to German: the " w " is old." : v == 1 ? "In German, how do you say " w "?" : "German translation of my " w
      if (T[t] == "sentiment") s = v == 0 ? "Review: the " w " was awful. Positive or negative?" : v == 1 ? "Is this review happy or sad: I loved the " w "." : "Rate the feeling of: what a boring " w
      if (T[t] == "capital") s = v == 0 ? "What is the capital of " pick(C, nc) "?" : v == 1 ? "Name the capital city of " pick(C, nc) "." : "Capital of " pick(C, nc) ":"
      if (T[t] == "sort") s = v == 0 ? "Sort ascending: " x % 9 " " y % 9 " " (x + y) % 9 : v == 1 ? "Order these numbers: " x % 9 ", " y % 9 ", " (x + y) % 9 : "Arrange from small to large " x % 9 " " y % 9
      if (T[t] == "upper") s = v == 0 ? "Uppercase this: " w : v == 1 ? "Write " w " in capital letters." : "Convert to upper case: my " w
      if (T[t] == "count") s = v == 0 ? "How many letters are in " w "?" : v == 1 ? "Count the characters of " w "." : "Length of the word " w
      if (T[t] == "weekday") s = v == 0 ? "Which day comes after " pick(D, nd) "?" : v == 1 ? "What is the day before " pick(D, nd) "?" : "Next weekday after " pick(D, nd)
      if (T[t] == "color") s = v == 0 ? "Mix " pick(K, nk) " and " pick(K, nk) ": what colour?" : v == 1 ? "What do you get from " pick(K, nk) " paint with " pick(K, nk) "?" : "Blend " pick(K, nk) " with " pick(K, nk)
      if (T[t] == "antonym") s = v == 0 ? "Give the opposite of " pick(A, na) "." : v == 1 ? "What is the antonym of " pick(A, na) "?" : "Opposite word for " pick(A, na)
      if (T[t] == "rhyme") s = v == 0 ? "Find a word that rhymes with " w "." : v == 1 ? "What rhymes with " w "?" : "Rhyme for " w
      printf "{\"task\": \"%s\", \"input\": \"%s%s%s\", \"output\": \"-\"}\n", T[t], substr(f1, 2), (f1 == "" ? "" : " "), s f2
    }
  }'
}
gen_tasks 1 20 16 >"$TMP/tasks.jsonl"
sed 's/.*"input": "\([^"]*\)".*/\1/' "$TMP/tasks.jsonl" >"$TMP/corpus.txt"
mkdir -p "$TMP/tk"
$R tokenizer train --vocab-size 400 -o "$TMP/tk/tokenizer.json" "$TMP/corpus.txt" >/dev/null 2>&1
$R random-model --arch llama --preset tiny --tokenizer "$TMP/tk" -o "$TMP/m" --seed 3 >/dev/null 2>&1
[ -f "$TMP/m/tokenizer.json" ] && pass retrieval_model_with_trained_tokenizer || fail retrieval_model_with_trained_tokenizer "$(ls "$TMP/m" 2>&1)"

# 1. training: held-out inputs of the training tasks are retrieved better than by the plain embedder
expect_ok retrieval_train_runs $R train retriever -m "$TMP/m" --data "$TMP/tasks.jsonl" -o "$TMP/p.safetensors" \
  --log "$TMP/log.jsonl" --seed 1
cp "$TMP/err" "$TMP/train.err"
field() { grep "\"when\":\"$1\"" "$TMP/log.jsonl" | sed "s/.*\"$2\":\([0-9.]*\).*/\1/"; }
b=$(field before held_out_inputs_top1); a=$(field after held_out_inputs_top1)
bu=$(field before held_out_tasks_top1); au=$(field after held_out_tasks_top1)
# measured with seed 1 (12 tasks: chance 0.083): held-out inputs of the 9 training tasks 0.83 -> 0.94,
# the 3 held-out tasks (never trained on) 0.63 -> 0.80
awk -v b="$b" -v a="$a" 'BEGIN {exit !(b != "" && a >= b + 0.05 && a >= 0.85)}' \
  && pass retrieval_train_heldout_accuracy_rises || fail retrieval_train_heldout_accuracy_rises "before '$b' after '$a'"
awk -v b="$bu" -v a="$au" 'BEGIN {exit !(b != "" && a >= b && a >= 0.5)}' \
  && pass retrieval_train_unseen_tasks_not_worse || fail retrieval_train_unseen_tasks_not_worse "before '$bu' after '$au'"
grep -q '^before: top-1 accuracy: held-out inputs of training tasks [0-9.]* ([0-9]*/[0-9]*), held-out tasks' "$TMP/train.err" \
  && grep -q '^after:  top-1 accuracy: ' "$TMP/train.err" && grep -q '^wrote .*p.safetensors (projection 64 x 64)' "$TMP/train.err" \
  && pass retrieval_train_prints_accuracy || fail retrieval_train_prints_accuracy "$(grep -v '^step' "$TMP/train.err" | head -c 400)"
n=$(grep -c '^step [0-9]*/300  loss [0-9.]*  lr [0-9.e+-]*  ETA ' "$TMP/train.err")
! grep -q $'\r' "$TMP/train.err" && [ "$n" -ge 20 ] && pass retrieval_train_progress_lines \
  || fail retrieval_train_progress_lines "$n progress lines"
steps=$(grep -c '"grad_norm"' "$TMP/log.jsonl")
head -1 "$TMP/log.jsonl" | grep -q '"event":"start","kind":"retriever"' && [ "$steps" = 300 ] \
  && tail -1 "$TMP/log.jsonl" | grep -q '"event":"done","step":300' \
  && pass retrieval_train_log || fail retrieval_train_log "$steps step lines; $(head -1 "$TMP/log.jsonl")"
first=$(grep -m1 '"step":1,' "$TMP/log.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
last=$(grep '"event":"done"' "$TMP/log.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
awk -v f="$first" -v l="$last" 'BEGIN {exit !(f > 0 && l < 0.5 * f)}' && pass retrieval_train_loss_goes_down \
  || fail retrieval_train_loss_goes_down "first '$first' last '$last'"
$R train retriever -m "$TMP/m" --data "$TMP/tasks.jsonl" -o "$TMP/p2.safetensors" --seed 1 --quiet 2>/dev/null
cmp -s "$TMP/p.safetensors" "$TMP/p2.safetensors" && pass retrieval_train_deterministic || fail retrieval_train_deterministic "files differ"

# 2. embed: unit vectors, of the projection's size with --projection
unit() { # every line's embedding has N numbers and norm 1
  awk -v want="$1" '{ s = $0; sub(/.*"embedding":\[/, "", s); sub(/\].*/, "", s); n = split(s, v, ",");
    q = 0; for (i = 1; i <= n; i++) q += v[i] * v[i]; if (n != want || q < 0.9999 || q > 1.0001) bad = 1; lines++ }
    END { exit !(lines == 2 && !bad) }' "$TMP/out"
}
expect_ok retrieval_embed_runs $R embed -m "$TMP/m" -p "What is 3 plus 4?" -p "Rhyme for stone"
unit 64 && grep -q '"text":"Rhyme for stone"' "$TMP/out" && pass retrieval_embed_unit_vectors \
  || fail retrieval_embed_unit_vectors "$(head -c 200 "$TMP/out")"
$R train retriever -m "$TMP/m" --data "$TMP/tasks.jsonl" -o "$TMP/p16.safetensors" --dim 16 --layer 1 --steps 50 --quiet 2>/dev/null
printf 'What is 3 plus 4?\n\nRhyme for stone\n' >"$TMP/texts.txt"
expect_ok retrieval_embed_with_projection $R embed -m "$TMP/m" --projection "$TMP/p16.safetensors" --file "$TMP/texts.txt"
unit 16 && pass retrieval_embed_projection_dim || fail retrieval_embed_projection_dim "$(head -c 200 "$TMP/out")"

# 3. retrieve: new inputs (two other seeds, one per task) find their task among the twelve; a projection
# trained on all tasks (measured: 23/24 right, the plain embedder 21/24)
gen_tasks 77 1 4 >"$TMP/new.jsonl"; gen_tasks 78 1 4 >>"$TMP/new.jsonl"
sed 's/.*"input": "\([^"]*\)".*/\1/' "$TMP/new.jsonl" >"$TMP/new.txt"
sed 's/.*"task": "\([a-z]*\)".*/\1/' "$TMP/new.jsonl" >"$TMP/new.want"
$R train retriever -m "$TMP/m" --data "$TMP/tasks.jsonl" -o "$TMP/pall.safetensors" --held-out-tasks 0 --quiet 2>/dev/null
expect_ok retrieval_retrieve_runs $R retrieve -m "$TMP/m" --projection "$TMP/pall.safetensors" --pool "$TMP/tasks.jsonl" \
  --file "$TMP/new.txt" -k 3
top1() { sed 's/.*"results":\[{"task":"\([a-z]*\)".*/\1/' "$1" | paste -d' ' - "$TMP/new.want" | awk '$1 == $2' | wc -l; }
right=$(top1 "$TMP/out")
k=$(sed -n 1p "$TMP/out" | grep -o '"score"' | wc -l)
sorted=$(awk -F'"score":' '{ for (i = 3; i <= NF; i++) if ($i + 0 > $(i-1) + 0) bad = 1 } END { print !bad }' "$TMP/out")
$R retrieve -m "$TMP/m" --pool "$TMP/tasks.jsonl" --file "$TMP/new.txt" -k 1 >"$TMP/plain" 2>/dev/null
plain=$(top1 "$TMP/plain")
[ "$right" -ge 22 ] && [ "$right" -ge "$plain" ] && [ "$k" = 3 ] && [ "$sorted" = 1 ] && pass retrieval_retrieve_finds_the_task \
  || fail retrieval_retrieve_finds_the_task "$right/24 right (plain embedder $plain), $k results, sorted $sorted: $(head -c 300 "$TMP/out")"

# --jsonl reads each line's "input" (texts with newlines, as prompts have): the same
# results as --file on one-line texts, and a text with a newline is one query
$R retrieve -m "$TMP/m" --projection "$TMP/pall.safetensors" --pool "$TMP/tasks.jsonl" --jsonl "$TMP/new.jsonl" \
  -k 3 >"$TMP/viajsonl" 2>/dev/null
printf '{"input": "two\\nlines"}\n\n' >"$TMP/nl.jsonl"
n_nl=$($R retrieve -m "$TMP/m" --pool "$TMP/tasks.jsonl" --jsonl "$TMP/nl.jsonl" 2>/dev/null | wc -l)
cmp -s "$TMP/out" "$TMP/viajsonl" && [ "$n_nl" = 1 ] && pass retrieval_retrieve_jsonl_queries \
  || fail retrieval_retrieve_jsonl_queries "differs from --file, or $n_nl lines for one text with a newline"
printf '{"input": "ok"}\n{"text": "no input"}\n' >"$TMP/badq.jsonl"
expect_error retrieval_retrieve_jsonl_bad_line 'badq.jsonl:2: expected an object with a string "input"' \
  $R retrieve -m "$TMP/m" --pool "$TMP/tasks.jsonl" --jsonl "$TMP/badq.jsonl"

# 4. bad input
printf '%s\n' '{"task": "a", "input": "x"}' '{"task": "a", "input": "y"' >"$TMP/bad1.jsonl"
expect_error retrieval_malformed_line "bad1.jsonl:2: malformed JSON" $R train retriever -m "$TMP/m" --data "$TMP/bad1.jsonl" -o "$TMP/x.safetensors"
printf '%s\n' '{"task": "a", "input": "x"}' '{"task": "a", "input": "y"}' '{"task": "b", "input": "z"}' '{"task": "lonely", "input": "w"}' '{"task": "b", "input": "v"}' >"$TMP/bad2.jsonl"
expect_error retrieval_task_of_one_input "task 'lonely' has 1 example" $R train retriever -m "$TMP/m" --data "$TMP/bad2.jsonl" -o "$TMP/x.safetensors"
printf '%s\n' '{"task": "a", "input": "x"}' '{"task": "a", "text": "y"}' >"$TMP/bad3.jsonl"
expect_error retrieval_missing_input "bad3.jsonl:2: missing or non-string \"input\"" $R train retriever -m "$TMP/m" --data "$TMP/bad3.jsonl" -o "$TMP/x.safetensors"
printf 'capital\nnosuch\n' >"$TMP/held.txt"
expect_error retrieval_unknown_heldout_task "held.txt:2: task 'nosuch' is not in the data" $R train retriever -m "$TMP/m" \
  --data "$TMP/tasks.jsonl" -o "$TMP/x.safetensors" --held-out-tasks "$TMP/held.txt"
printf '%s\n' '{"task": "a", "input": "x"}' '{"task": "a", "input": "y"}' '{"task": "b", "input": "z"}' '{"task": "b", "input": "v"}' >"$TMP/two.jsonl"
expect_error retrieval_heldout_leaves_too_few "training needs 2" $R train retriever -m "$TMP/m" --data "$TMP/two.jsonl" \
  -o "$TMP/x.safetensors" --held-out-tasks 0.5
$R random-model --arch llama --preset tiny -o "$TMP/notok" 2>/dev/null
expect_error retrieval_needs_tokenizer "has no tokenizer" $R train retriever -m "$TMP/notok" --data "$TMP/tasks.jsonl" -o "$TMP/x.safetensors"
[ ! -e "$TMP/x.safetensors" ] && pass retrieval_errors_write_nothing || fail retrieval_errors_write_nothing "x.safetensors exists"
$R random-model --arch qwen2 --preset tiny --tokenizer "$TMP/tk" -o "$TMP/other" --seed 1 2>/dev/null
expect_error retrieval_projection_of_another_base "was made for another base model" $R embed -m "$TMP/other" \
  --projection "$TMP/p.safetensors" -p "hello"
head -c 300 "$TMP/p.safetensors" >"$TMP/trunc.safetensors"
expect_error retrieval_truncated_projection "trunc.safetensors" $R embed -m "$TMP/m" --projection "$TMP/trunc.safetensors" -p "hello"
cp "$TMP/p.safetensors" "$TMP/nan.safetensors"
hdr=$(od -An -t u8 -N8 "$TMP/nan.safetensors" | tr -d ' ')
printf '\x00\x00\xc0\x7f' | dd of="$TMP/nan.safetensors" bs=1 seek=$(( 8 + hdr + 4 * 70 )) conv=notrunc 2>/dev/null
expect_error retrieval_nan_projection "projection.weight[1][6] is NaN" $R retrieve -m "$TMP/m" --projection "$TMP/nan.safetensors" \
  --pool "$TMP/tasks.jsonl" -p "hello"
# without --pool, retrieve reads the adapter registry (tests/cli/registry.sh); with none there it says both ways
RAMOLE_REGISTRY="sqlite:$TMP/no-registry.db" expect_error retrieval_retrieve_needs_pool_or_registry "no registry there" \
  $R retrieve -m "$TMP/m" -p "hello"
grep -q -- "--pool tasks.jsonl" "$TMP/err" && pass retrieval_retrieve_names_pool || fail retrieval_retrieve_names_pool "$(cat "$TMP/err")"
expect_error retrieval_embed_needs_text "give texts with -p TEXT" $R embed -m "$TMP/m"
expect_error retrieval_unknown_pooling "unknown pooling 'max'" $R embed -m "$TMP/m" --pooling max -p "hello"
$R train --help 2>&1 | grep -q 'train retriever' && pass retrieval_listed_in_train_help || fail retrieval_listed_in_train_help "no retriever"
