#!/usr/bin/env bash
# Command-line tests of `ramole eval` on a tiny world made here in seconds:
# six tasks in three clusters (one metric of each kind), a BPE tokenizer, a
# random base, a random adapter per task, a router trained for 3 steps on
# the seen tasks' adapters and a projection trained for 5 steps. Checked:
# the report, charts and JSON are written; `perfect` gives exactly what
# `generate -p INPUT --lora adapters/T --temp 0` gives and `base` what
# generate without adapters gives; out of distribution never uses the
# task's own adapter and in distribution uses the retrieved ones; the
# retrieval accuracy equals a count made with `ramole retrieve`; scores
# equal the metric of the recorded output; the generation count follows
# --modes, --settings and --limit; missing or malformed world pieces give
# errors that name the file.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

W="$TMP/world"
mkdir -p "$W/tasks" "$W/adapters"
# tasks: NAME CLUSTER METRIC SEEN
TASKS="upper:case:em:true title:case:f1:false reverse:order:em:true backwards:order:bleu:false twice:repeat:rougeL:true echo:repeat:f1:false"
awk -v tasks="$TASKS" -v dir="$W/tasks" '
function json(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\n/, "\\n", s); return "\"" s "\"" }
function alpaca(x) { return "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n" x "\n\n### Response:\n" }
function rev(s,   i, o) { o = ""; for (i = length(s); i > 0; i--) o = o substr(s, i, 1); return o }
function pick() { return W[1 + int(rand() * nw)] }
BEGIN {
  srand(7)
  nw = split("apple river stone cloud garden window music paper silver forest bridge candle tiger lemon ocean", W, " ")
  nt = split(tasks, T, " ")
  for (t = 1; t <= nt; t++) {
    split(T[t], f, ":"); name = f[1]
    system("mkdir -p " dir "/" name)
    for (e = 0; e < 16; e++) {
      a = pick(); b = pick(); v = e % 2
      if (name == "upper") { x = v ? "Write the word " a " in capital letters." : "Uppercase: " a; y = toupper(a) }
      if (name == "title") { x = v ? "Capitalise the words " a " " b "." : "Title case: " a " " b; y = toupper(substr(a, 1, 1)) substr(a, 2) " " toupper(substr(b, 1, 1)) substr(b, 2) }
      if (name == "reverse") { x = v ? "Reverse the letters of " a "." : "Spell " a " backwards."; y = rev(a) }
      if (name == "backwards") { x = v ? "Say these words in reverse order: " a " " b " river" : "Reverse the list " a " " b " river"; y = "river " b " " a }
      if (name == "twice") { x = v ? "Repeat twice: " a " " b : "Say " a " " b " two times."; y = a " " b " " a " " b }
      if (name == "echo") { x = v ? "Echo the words " a " " b "." : "Copy this: " a " " b; y = a " " b }
      line = "{\"input\": " json(alpaca(x)) ", \"output\": " json(y) "}"
      print line > (dir "/" name "/" (e < 10 ? "train" : "test") ".jsonl")
    }
  }
}'
{
  printf '{"seed": 7, "retrieval": {"samples": 4, "layer": "final", "pooling": "mean"}, "tasks": ['
  sep=""
  for t in $TASKS; do
    IFS=: read -r name cluster metric seen <<<"$t"
    printf '%s\n {"name": "%s", "cluster": "%s", "metric": "%s", "seen": %s, "max_tokens": 6, "templates": [], "train": 10, "test": 6}' \
      "$sep" "$name" "$cluster" "$metric" "$seen"
    sep=","
  done
  printf '\n]}\n'
} >"$W/tasks.json"
cat "$W"/tasks/*/*.jsonl | sed 's/\\n/ /g; s/"input": "//; s/", "output": "/ /; s/"}$//; s/^{//' >"$TMP/corpus.txt"
mkdir -p "$TMP/tk"
$R tokenizer train --vocab-size 300 --special "<|endoftext|>" -o "$TMP/tk/tokenizer.json" "$TMP/corpus.txt" >/dev/null 2>&1
$R random-model --arch llama --preset tiny --tokenizer "$TMP/tk" -o "$W/base" --seed 5 >/dev/null 2>&1
s=10
for t in $TASKS; do
  name=${t%%:*}
  s=$((s + 1))
  $R random-adapter -m "$W/base" --rank 4 --seed $s -o "$W/adapters/$name" >/dev/null 2>&1
done
# router over the seen tasks' adapters (3 steps), projection from every task's train inputs (5 steps)
cat "$W"/tasks/{upper,reverse,twice}/train.jsonl >"$TMP/mixed.jsonl"
$R train router -m "$W/base" --pool "$W/adapters/upper" "$W/adapters/reverse" "$W/adapters/twice" \
  --data "$TMP/mixed.jsonl" -o "$W/router" --steps 3 --batch 4 --quiet >/dev/null 2>&1
for t in $TASKS; do
  name=${t%%:*}
  sed "s/^{/{\"task\": \"$name\", /" "$W/tasks/$name/train.jsonl"
done >"$TMP/retr.jsonl"
$R train retriever -m "$W/base" --data "$TMP/retr.jsonl" -o "$W/projection.safetensors" --steps 5 --batch 8 \
  --held-out-tasks 0 --quiet >/dev/null 2>&1
if [ -f "$W/router/adapter_config.json" ] && [ -f "$W/projection.safetensors" ] && [ -f "$W/adapters/echo/adapter_config.json" ]; then
  pass eval_tiny_world_built
else
  fail eval_tiny_world_built "$(ls -R "$W" | head -c 400)"
fi

# 1. the whole run: report, charts, JSON
expect_ok eval_runs $R eval --world "$W" -t 2 --out "$TMP/docs/EVAL.md" --json "$TMP/eval.json"
cp "$TMP/err" "$TMP/eval.err"; cp "$TMP/out" "$TMP/eval.out"
md="$TMP/docs/EVAL.md"
if grep -q '^## In distribution' "$md" && grep -q '^## Out of distribution' "$md" && grep -q '^## Retrieval' "$md" &&
   grep -q '^| \*\*average\*\* | 6 |' "$md" && grep -q '^| case | 2 |' "$md" && grep -q '^| unseen | 3 | 18 |' "$md" &&
   grep -q "^- command: \`ramole eval --world $W -t 2 " "$md" && grep -q '^- CPU: .*, 2 threads' "$md" &&
   grep -q 'seed 7' "$md" && grep -q 'examples/s' "$md" &&
   grep -q '^| upper | case | em | yes | 6 | [0-9.]* | [0-9.]* | [0-9.]* | [0-9.]* | [0-9.]* / [0-9.]* |' "$md" &&
   grep -q '^| backwards | order | bleu | no | 6 |' "$md"; then
  pass eval_report_tables
else
  fail eval_report_tables "$(head -c 1500 "$md")"
fi
svg_ok=1
for f in clusters id_vs_ood; do
  node -e '
    const s = require("fs").readFileSync(process.argv[1], "utf8");
    const bars = (s.match(/<rect x=/g) || []).length;
    if (!s.startsWith("<svg") || !s.trimEnd().endsWith("</svg>") || bars < +process.argv[2]) process.exit(1);
  ' "$TMP/docs/eval/$f.svg" "$([ $f = clusters ] && echo 24 || echo 10)" || svg_ok=0
done
[ $svg_ok = 1 ] && pass eval_svg_charts || fail eval_svg_charts "$(ls "$TMP/docs/eval" 2>&1)"
grep -q 'eval: tasks 6/6  generations 360/360  [0-9.]* examples/s  [0-9.]* tokens/s  ETA' "$TMP/eval.err" \
  && pass eval_progress_line || fail eval_progress_line "$(head -c 400 "$TMP/eval.err")"
grep -q '^id: base [0-9.]* perfect [0-9.]* selection [0-9.]* mixture [0-9.]* fusion [0-9.]* router [0-9.]*$' "$TMP/eval.out" &&
  grep -q '^ood: base' "$TMP/eval.out" && pass eval_prints_averages || fail eval_prints_averages "$(cat "$TMP/eval.out")"

# JSON: generations per mode and setting, adapters, scores
js() { node -e "const r = JSON.parse(require('fs').readFileSync('$TMP/eval.json', 'utf8')); $1"; }
out=$(js '
  const g = r.generations, bad = [];
  const count = (m, s) => g.filter(x => x.mode === m && x.setting === s).length;
  for (const m of ["base", "perfect"]) if (count(m, "both") !== 36) bad.push(m + " " + count(m, "both"));
  for (const m of ["selection", "mixture", "fusion", "router"]) for (const s of ["id", "ood"])
    if (count(m, s) !== 36) bad.push(m + "/" + s + " " + count(m, s));
  for (const x of g) {
    const want = x.mode === "base" ? 0 : x.mode === "perfect" || x.mode === "selection" ? 1 : 3;
    if (x.adapters.length !== want) bad.push("adapters " + JSON.stringify(x));
    if (x.mode === "perfect" && x.adapters[0] !== x.task) bad.push("perfect " + JSON.stringify(x));
    if (x.setting === "ood" && x.adapters.includes(x.task)) bad.push("ood uses own " + JSON.stringify(x));
    if (new Set(x.adapters).size !== x.adapters.length) bad.push("repeat " + JSON.stringify(x));
  }
  if (r.tasks.length !== 6 || !r.tasks.every(t => t.examples === 6)) bad.push("tasks");
  console.log(bad.slice(0, 5).join("\n"));')
[ -z "$out" ] && pass eval_json_generations || fail eval_json_generations "$out"
# out of distribution = in distribution with the own adapter struck from the retrieved four
out=$(js '
  const g = r.generations, bad = [];
  const key = x => x.task + "/" + x.example;
  const by = {};
  for (const x of g) (by[key(x)] ??= {})[x.mode + "/" + x.setting] = x.adapters;
  for (const [k, v] of Object.entries(by)) {
    const task = k.split("/")[0], id3 = v["mixture/id"], ood3 = v["mixture/ood"];
    const strip = id3.filter(a => a !== task);
    if (JSON.stringify(ood3.slice(0, strip.length)) !== JSON.stringify(strip)) bad.push(k + " id " + id3 + " ood " + ood3);
    if (v["selection/id"][0] !== id3[0] || v["fusion/id"].join() !== id3.join() || v["router/id"].join() !== id3.join())
      bad.push(k + " modes differ");
    if (v["selection/ood"][0] !== ood3[0]) bad.push(k + " ood selection");
  }
  console.log(bad.slice(0, 5).join("\n"));')
[ -z "$out" ] && pass eval_ood_drops_own_adapter || fail eval_ood_drops_own_adapter "$out"

# 2. perfect and base against generate, on the first two examples of two tasks
ok=1; msg=""
for name in upper backwards; do
  for i in 0 1; do
    input=$(node -e "const l = require('fs').readFileSync('$W/tasks/$name/test.jsonl', 'utf8').split('\n')[$i]; process.stdout.write(JSON.parse(l).input + 'x')")
    input=${input%x} # the prompt ends with a newline, which $(...) would drop
    for mode in perfect base; do
      lora=(); [ $mode = perfect ] && lora=(--lora "$W/adapters/$name")
      want=$($R generate -m "$W/base" -p "$input" "${lora[@]}" --temp 0 -n 6 -t 2 2>/dev/null; echo x)
      want=${want%x}; want=${want%$'\n'} # generate ends its output with a newline
      got=$(js "process.stdout.write(r.generations.find(x => x.task === '$name' && x.example === $i && x.mode === '$mode').output + 'x')")
      got=${got%x}
      if [ "$want" != "$got" ] || [ -z "$want" ]; then ok=0; msg="$msg $name/$i/$mode: generate '$want' eval '$got';"; fi
    done
  done
done
[ $ok = 1 ] && pass eval_perfect_and_base_match_generate || fail eval_perfect_and_base_match_generate "$msg"

# 3. retrieval accuracy against `ramole retrieve` over the same pool (first 4 train inputs per task)
for t in $TASKS; do
  name=${t%%:*}
  head -4 "$W/tasks/$name/train.jsonl" | sed "s/^{/{\"task\": \"$name\", /"
done >"$TMP/pool.jsonl"
ok=1; msg=""
for t in $TASKS; do
  name=${t%%:*}
  args=()
  while IFS= read -r l; do args+=(-p "$l"); done < <(node -e "
    for (const l of require('fs').readFileSync('$W/tasks/$name/test.jsonl', 'utf8').split('\n'))
      if (l) console.log(JSON.stringify(JSON.parse(l).input))")
  # the inputs hold newlines: pass them decoded
  decoded=()
  for ((k = 0; k < ${#args[@]}; k += 2)); do
    text=$(node -e "process.stdout.write(JSON.parse(process.argv[1]) + 'x')" "${args[k + 1]}")
    decoded+=(-p "${text%x}")
  done
  counts=$($R retrieve -m "$W/base" --projection "$W/projection.safetensors" --pool "$TMP/pool.jsonl" --samples 4 -k 3 \
    -t 2 "${decoded[@]}" 2>/dev/null | node -e "
    let t1 = 0, t3 = 0, n = 0;
    for (const l of require('fs').readFileSync(0, 'utf8').split('\n')) {
      if (!l) continue; n++;
      const r = JSON.parse(l).results.map(x => x.task);
      t1 += r[0] === '$name'; t3 += r.includes('$name');
    }
    console.log(n + ' ' + t1 + ' ' + t3)")
  mine=$(js "const t = r.tasks.find(x => x.name === '$name'); console.log(t.examples + ' ' + t.top1 + ' ' + t.top3)")
  [ "$counts" = "$mine" ] || { ok=0; msg="$msg $name: retrieve '$counts' eval '$mine';"; }
done
[ $ok = 1 ] && pass eval_retrieval_matches_retrieve || fail eval_retrieval_matches_retrieve "$msg"

# 4. scores: each generation's score is its task's metric of the output (exact match recomputed
# here), and each task's score is the mean of its examples
out=$(js '
  const bad = [];
  for (const t of r.tasks) {
    for (const [s, modes] of Object.entries(t.scores)) for (const [m, v] of Object.entries(modes)) {
      const xs = r.generations.filter(x => x.task === t.name && x.mode === m && (x.setting === s || x.setting === "both"));
      const mean = xs.reduce((a, x) => a + x.score, 0) / xs.length;
      if (Math.abs(mean - v) > 1e-9) bad.push(t.name + " " + s + " " + m + " " + v + " vs " + mean);
    }
    if (t.metric !== "em") continue;
    const ref = require("fs").readFileSync(r.world + "/tasks/" + t.name + "/test.jsonl", "utf8").split("\n").filter(Boolean).map(l => JSON.parse(l).output);
    for (const x of r.generations.filter(x => x.task === t.name))
      if (x.score !== (x.output.trim() === ref[x.example].trim() ? 1 : 0)) bad.push("em " + JSON.stringify(x));
  }
  console.log(bad.slice(0, 5).join("\n"));')
[ -z "$out" ] && pass eval_scores_are_metric_means || fail eval_scores_are_metric_means "$out"

# a world whose expected answers are the base's own outputs (upper: em, echo: f1) scores the base 100
cp -r "$W" "$TMP/own"
for name in upper echo; do
  node -e "
    const fs = require('fs'), r = JSON.parse(fs.readFileSync('$TMP/eval.json', 'utf8'));
    const f = '$TMP/own/tasks/$name/test.jsonl';
    const lines = fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l, i) => {
      const o = JSON.parse(l);
      o.output = r.generations.find(x => x.task === '$name' && x.example === i && x.mode === 'base').output;
      return JSON.stringify(o);
    });
    fs.writeFileSync(f, lines.join('\n') + '\n');"
done
expect_ok eval_own_outputs_runs $R eval --world "$TMP/own" -t 2 --modes base,perfect --tasks upper,echo \
  --out "$TMP/own.md" --json "$TMP/own.json"
out=$(node -e "const r = JSON.parse(require('fs').readFileSync('$TMP/own.json', 'utf8'));
  console.log(r.tasks.map(t => t.name + ' ' + t.scores.id.base + ' ' + t.scores.ood.base).join(', '))")
[ "$out" = "upper 1 1, echo 1 1" ] && grep -q '^| case | 1 | 100.0 | ' "$TMP/own.md" && grep -q '^| \*\*average\*\* | 2 | 100.0 | ' "$TMP/own.md" \
  && pass eval_scores_base_on_its_own_outputs || fail eval_scores_base_on_its_own_outputs "$out; $(grep '^| ' "$TMP/own.md" | head -4)"

# 5. choosing modes, settings, tasks and a limit
expect_ok eval_subset_runs $R eval --world "$W" -t 2 --modes base,mixture --settings ood --tasks echo,upper --limit 2 \
  --out "$TMP/sub/EVAL.md" --json "$TMP/sub.json"
n=$(node -e "const r = JSON.parse(require('fs').readFileSync('$TMP/sub.json', 'utf8'));
  console.log(r.generations.length, r.tasks.map(t => t.name).join(), r.generations.filter(x => x.setting === 'ood').length)")
[ "$n" = "8 upper,echo 4" ] && ! grep -q '^## In distribution' "$TMP/sub/EVAL.md" && pass eval_subset_counts \
  || fail eval_subset_counts "$n"
# --router: the router mode runs another router on the same world (here one pooled over the prompt),
# and the report and JSON name it
$R train router -m "$W/base" --pool "$W/adapters/upper" "$W/adapters/reverse" "$W/adapters/twice" \
  --data "$TMP/mixed.jsonl" -o "$TMP/rpool" --steps 3 --batch 4 --gate-pool prompt --quiet >/dev/null 2>&1
expect_ok eval_other_router $R eval --world "$W" -t 2 --modes router --settings id --limit 2 --router "$TMP/rpool" \
  --out "$TMP/rp/EVAL.md" --json "$TMP/rp.json"
n=$(node -e "const r = JSON.parse(require('fs').readFileSync('$TMP/rp.json', 'utf8'));
  console.log(r.router, r.generations.length)")
[ "$n" = "$TMP/rpool 12" ] && grep -q "RouterLoRA, \`$TMP/rpool\`; ramole's options: gates pooled over the prompt)" "$TMP/rp/EVAL.md" \
  && grep -q "RouterLoRA, \`$W/router\`) over" "$md" \
  && pass eval_other_router_named || fail eval_other_router_named "$n"
# a router with a retrieval prior gets each retrieved adapter's cosine from the evaluation, which the
# JSON records: each of its answers is `ramole batch`'s for the same adapters with those scores, and
# some differ from batch's without them
for t in upper reverse twice; do
  sed "s/}\$/, \"adapters\": [\"$t\"], \"scores\": [0.9]}/" "$W/tasks/$t/train.jsonl"
done >"$TMP/mixed_scored.jsonl"
$R train router -m "$W/base" --pool "$W/adapters/upper" "$W/adapters/reverse" "$W/adapters/twice" \
  --data "$TMP/mixed_scored.jsonl" -o "$TMP/rprior" --steps 3 --batch 4 --lr 0.05 --retrieval-prior 300 \
  --quiet >/dev/null 2>&1
expect_ok eval_prior_router $R eval --world "$W" -t 2 --modes router --settings id --limit 2 \
  --router "$TMP/rprior" --out "$TMP/rq/EVAL.md" --json "$TMP/rq.json"
for with in 1 0; do
  WITH=$with node -e "const fs = require('fs'), r = JSON.parse(fs.readFileSync('$TMP/rq.json', 'utf8'));
    const tasks = JSON.parse(fs.readFileSync('$W/tasks.json', 'utf8')).tasks;
    for (const g of r.generations) {
      const input = JSON.parse(fs.readFileSync('$W/tasks/' + g.task + '/test.jsonl', 'utf8').split('\n')[g.example]).input;
      const lora = {mode: 'router', router: '$TMP/rprior', adapters: g.adapters.map((a, j) =>
        ({path: '$W/adapters/' + a, score: process.env.WITH === '1' ? g.retrieval[j] : 0}))};
      console.log(JSON.stringify({prompt: input, max_tokens: tasks.find(t => t.name === g.task).max_tokens,
                                  temperature: 0, lora}));
    }" >"$TMP/rq$with.jsonl"
  $R batch -m "$W/base" --in "$TMP/rq$with.jsonl" --out "$TMP/rq$with.out" --quiet 2>/dev/null
done
n=$(node -e "const fs = require('fs'), g = JSON.parse(fs.readFileSync('$TMP/rq.json', 'utf8')).generations;
  const read = (f) => fs.readFileSync(f, 'utf8').trim().split('\n').map(JSON.parse);
  const w = read('$TMP/rq1.out'), wo = read('$TMP/rq0.out');
  console.log(g.length, g.every(x => x.retrieval.length === 3 && x.retrieval[0] >= x.retrieval[2]),
              g.filter((x, i) => w[i].text !== x.output).length, g.some((x, i) => wo[i].text !== x.output))")
[ "$n" = "12 true 0 true" ] && pass eval_prior_router_gets_scores || fail eval_prior_router_gets_scores "$n"
o=$(node -e "console.log(JSON.stringify(JSON.parse(require('fs').readFileSync('$TMP/rq.json', 'utf8')).router_options))")
grep -q "RouterLoRA, \`$TMP/rprior\`; ramole's options: retrieval prior 300)" "$TMP/rq/EVAL.md" \
  && [ "$o" = '{"gate_pool":"token","retrieval_prior":300}' ] && pass eval_report_names_router_options \
  || fail eval_report_names_router_options "$o: $(grep -o 'RouterLoRA[^)]*)' "$TMP/rq/EVAL.md")"
expect_error eval_error_other_router_missing "$TMP/nowhere/adapter_config.json: missing" $R eval --world "$W" \
  --modes router --router "$TMP/nowhere" --out "$TMP/x.md"
# a world without router and projection still runs the modes that need neither
cp -r "$W" "$TMP/bare"; rm -rf "$TMP/bare/router" "$TMP/bare/projection.safetensors"
expect_ok eval_base_perfect_need_no_retrieval $R eval --world "$TMP/bare" -t 2 --modes base,perfect --limit 1 --out "$TMP/bare.md"

# 6. errors name the file and the problem
expect_error eval_error_no_world "tasks.json" $R eval --world "$TMP/nowhere" --out "$TMP/x.md"
expect_error eval_error_no_projection "projection.safetensors: missing" $R eval --world "$TMP/bare" --modes selection --out "$TMP/x.md"
cp "$W/projection.safetensors" "$TMP/bare/"
expect_error eval_error_no_router "router/adapter_config.json: missing" $R eval --world "$TMP/bare" --modes router --out "$TMP/x.md"
expect_error eval_error_unknown_task "task 'nope' is not in" $R eval --world "$W" --tasks upper,nope --out "$TMP/x.md"
expect_error eval_error_unknown_mode "unknown 'best'" $R eval --world "$W" --modes base,best --out "$TMP/x.md"
cp -r "$W" "$TMP/bad"
sed -i 's/"metric": "bleu"/"metric": "bleu4"/' "$TMP/bad/tasks.json"
expect_error eval_error_bad_metric "tasks.json: task backwards: \"metric\" must be" $R eval --world "$TMP/bad" --out "$TMP/x.md"
cp "$W/tasks.json" "$TMP/bad/tasks.json"
rm -rf "$TMP/bad/adapters/title"
expect_error eval_error_missing_adapter "adapters/title/adapter_config.json: missing" $R eval --world "$TMP/bad" --out "$TMP/x.md"
cp -r "$W/adapters/title" "$TMP/bad/adapters/title"
printf '{"input": "x", "output": 3}\n' >>"$TMP/bad/tasks/echo/test.jsonl"
expect_error eval_error_bad_test_line "tasks/echo/test.jsonl:7: needs \"input\" and \"output\"" $R eval --world "$TMP/bad" --out "$TMP/x.md"
cp "$W/tasks/echo/test.jsonl" "$TMP/bad/tasks/echo/test.jsonl"
sed -i 's/"layer": "final"/"layer": 1/' "$TMP/bad/tasks.json"
expect_error eval_error_projection_mismatch "but $TMP/bad/tasks.json's retrieval says layer 1" \
  $R eval --world "$TMP/bad" --modes selection --out "$TMP/x.md"
[ ! -e "$TMP/x.md" ] && pass eval_errors_write_nothing || fail eval_errors_write_nothing "x.md was written"
