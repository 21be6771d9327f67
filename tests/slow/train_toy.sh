#!/usr/bin/env bash
# tests/slow/train_toy.sh — the toy-task acceptance of `ramole train` (slow:
# about 15 minutes on 2 cores; not part of `make test`; `make slow`).
#
# Run from the repository root:
#     make && bash tests/slow/train_toy.sh            # uses build/ramole
#     RAMOLE_BIN=build-tc/ramole bash tests/slow/train_toy.sh
# Environment: RAMOLE_BIN, TOY_DIR (work folder, kept; default
# build/toy-train), TOY_THREADS (2), TOY_BASE_STEPS, TOY_LORA_STEPS,
# TOY_ROUTER_STEPS to trade time for accuracy, TOY_BASE_SEED (1) to check
# that the outcome does not hang on one base (docs/TRAINING.md has the
# figures of several seeds). Needs python3 (the data generator below and
# the exact-match loops); SKIPs without it.
#
# Steps, all through the command line:
#  1. data: strings of 3-6 letters a-h as "TASK: abcd =>" -> " RESULT";
#     the base's own tasks copy / upper, the adapters' tasks reverse /
#     shift / swap; held-out words never seen in training.
#  2. `ramole tokenizer train` a byte-level BPE (270 ids) on the corpus.
#  3. `ramole train base`: a small llama from scratch on text that is 90%
#     copy and upper and 3.3% each of reverse, shift and swap: the base
#     learns to read a task's name (its states at the last prompt token
#     tell the three adapter tasks apart, docs/TRAINING.md) without
#     mastering those tasks, so each adapter is needed for its own task.
#     lr 1e-3 for 1200 steps (at 3e-3 the loss stalls near 1.30 and the
#     base never learns to read the task name).
#  4. `ramole train lora` on reverse, shift and swap, on layers 1-3: at
#     layer 0 the q, k, v, gate and up projections read one token's
#     embedding and nothing else, so no router can tell the tasks apart
#     there; the adapters lose nothing by it (docs/TRAINING.md). Exact
#     match of `ramole generate -p INPUT --lora DIR --temp 0` of the reverse
#     adapter on 100 held-out inputs. Criterion: >= 95%.
#  5. `ramole train router` over the three on a mixed set (random LoRA
#     dropout, --gate-loss 10: the gates are also taught each example's
#     best expert, found by the experts' own losses, no labels); `ramole
#     train router-eval` on 150 held-out examples: share where the
#     example's own adapter has the highest mean router weight over every
#     module the router adapts, at the answer's positions (teacher-forced).
#     Criterion: >= 90%.
#  6. What the router is for: exact match of `generate --mode router` over
#     the three adapters on the 150 held-out examples, against each example
#     run with its own adapter alone (the best a router can do). Criterion:
#     the router's count >= 90% of that one's.
# Prints PASS/FAIL lines with the measured figures, and a summary line;
# exits 1 when a check fails.
set -u
cd "$(dirname "$0")/../.."
R=${RAMOLE_BIN:-build/ramole}
D=${TOY_DIR:-build/toy-train}
TH=${TOY_THREADS:-2}
BASE_STEPS=${TOY_BASE_STEPS:-1200}
LORA_STEPS=${TOY_LORA_STEPS:-1600}
ROUTER_STEPS=${TOY_ROUTER_STEPS:-1200}
BASE_SEED=${TOY_BASE_SEED:-1}
if ! command -v python3 >/dev/null; then echo "SKIP train_toy: python3 missing"; exit 0; fi
[ -x "$R" ] || { echo "FAIL train_toy: $R not built"; exit 1; }
rm -rf "$D"; mkdir -p "$D/tok"
t_start=$(date +%s)
fails=0
# the data generator:
#
# Strings of 3..6 letters from a-h and tasks written as
# "TASK: abcd =>" -> " RESULT" (input, output as `ramole train` reads them):
#   copy     abcd  -> abcd     (the base's)
#   upper    abcd  -> ABCD     (the base's)
#   reverse  abcd  -> dcba     (the adapters')
#   shift    abcd  -> bcde     (each letter one further, h -> a)
#   swap     abcde -> badce    (neighbours swapped pairwise)
# Files: corpus.txt (base pretraining text: 45% copy, 45% upper, 3.3% each
# of reverse, shift, swap), {reverse,shift,swap}_{train,test}.jsonl (train
# and held-out words disjoint), mixed_train.jsonl / mixed_test.jsonl (the
# three tasks) for the router: the training file carries no "adapters", so
# the router trains over the whole pool (with random LoRA dropout); the
# held-out file names each example's own adapter ("adapters": [task]), which
# `ramole train router-eval` takes as the expected pick.
python3 - "$D" 1 <<'EOF' || { echo "FAIL train_toy: data generator"; exit 1; }
import json, os, random, sys

out, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
r = random.Random(seed)
L = "abcdefgh"
def word(): return "".join(r.choice(L) for _ in range(r.randint(3, 6)))
BASE = {"copy": lambda w: w, "upper": lambda w: w.upper()}
TASKS = {
    "reverse": lambda w: w[::-1],
    "shift": lambda w: "".join(L[(L.index(c) + 1) % len(L)] for c in w),
    "swap": lambda w: "".join(w[i + 1] + w[i] for i in range(0, len(w) - 1, 2)) + (w[-1] if len(w) % 2 else ""),
}
words = set()
while len(words) < 3000: words.add(word())
words = sorted(words); r.shuffle(words)
test_words, train_words = words[:200], words[200:]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "corpus.txt"), "w") as f:
    for _ in range(20000):
        w = r.choice(train_words)
        t = r.choices(list(BASE) + list(TASKS), weights=[45, 45, 10 / 3, 10 / 3, 10 / 3])[0]
        res = BASE[t](w) if t in BASE else TASKS[t](w)
        f.write(f"{t}: {w} => {res}\n")
def ex(t, w): return {"input": f"{t}: {w} =>", "output": " " + TASKS[t](w)}
for t in TASKS:
    with open(os.path.join(out, f"{t}_train.jsonl"), "w") as f:
        for w in train_words[:2000]: f.write(json.dumps(ex(t, w)) + "\n")
    with open(os.path.join(out, f"{t}_test.jsonl"), "w") as f:
        for w in test_words[:100]: f.write(json.dumps(ex(t, w)) + "\n")
with open(os.path.join(out, "mixed_train.jsonl"), "w") as f:
    for i, w in enumerate(train_words[:900]):
        t = list(TASKS)[i % 3]
        f.write(json.dumps(ex(t, w)) + "\n")
with open(os.path.join(out, "mixed_test.jsonl"), "w") as f:
    for i, w in enumerate(test_words[:150]):
        t = list(TASKS)[i % 3]
        f.write(json.dumps(dict(ex(t, w), adapters=[t])) + "\n")
EOF
$R tokenizer train --vocab-size 270 --special "<|endoftext|>" -o "$D/tok/tokenizer.json" "$D/corpus.txt" 2>/dev/null \
  || { echo "FAIL train_toy: tokenizer train"; exit 1; }

echo "== base model ($BASE_STEPS steps)"
$R train base --arch llama --tokenizer "$D/tok/tokenizer.json" --data "$D/corpus.txt" -o "$D/base" \
  --hidden 128 --layers 4 --heads 4 --kv-heads 4 --ffn 384 --max-pos 256 --ctx 64 --batch 16 \
  --steps "$BASE_STEPS" --lr 1e-3 --warmup 30 --val 0.02 --seed "$BASE_SEED" -t "$TH" --log "$D/base.log" --log-every 50 \
  || { echo "FAIL train_toy: train base"; exit 1; }

TASKS=(reverse shift swap)
# exact match of greedy generate over a JSONL test file: prints "right total".
# HOW: "-" (the base alone), an adapter name, "own" (each example's
# "adapters"[0] alone) or "router" (--mode router over the three, $D/router)
exact() { # HOW FILE
  python3 - "$R" "$D" "$1" "$2" "${TASKS[@]}" <<'EOF'
import json, subprocess, sys
R, D, how, path = sys.argv[1:5]
tasks = sys.argv[5:]
right = total = 0
for line in open(path):
    e = json.loads(line)
    cmd = [R, "generate", "-m", D + "/base", "-p", e["input"], "--temp", "0", "-n", "16", "-t", "1"]
    if how == "own": cmd += ["--lora", D + "/" + e["adapters"][0]]
    elif how == "router":
        cmd += ["--mode", "router", "--router", D + "/router"] + sum([["--lora", D + "/" + t] for t in tasks], [])
    elif how != "-": cmd += ["--lora", D + "/" + how]
    got = subprocess.run(cmd, capture_output=True, text=True).stdout
    got = got[:-1] if got.endswith("\n") else got
    total += 1
    right += got == e["output"]
print(right, total)
EOF
}
verdict() { # NAME OK(1/0) DETAIL
  if [ "$2" = 1 ]; then echo "PASS $1: $3"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi
}

read -r b_right b_total < <(exact - "$D/reverse_test.jsonl")
echo "base alone on reverse: $b_right/$b_total exact"

for task in "${TASKS[@]}"; do
  echo "== LoRA $task ($LORA_STEPS steps, layers 1-3)"
  $R train lora -m "$D/base" --data "$D/${task}_train.jsonl" -o "$D/$task" --rank 16 --alpha 32 --adapt-layers 1-3 \
    --steps "$LORA_STEPS" --batch 16 --lr 1e-3 --warmup 30 --val 0.05 --seed 2 -t "$TH" --log "$D/lora_$task.log" \
    --log-every 100 || { echo "FAIL train_toy: train lora $task"; exit 1; }
  [ "$task" = reverse ] || continue
  read -r right total < <(exact reverse "$D/reverse_test.jsonl")
  pct=$(awk -v a="$right" -v b="$total" 'BEGIN {printf "%.1f", 100 * a / b}')
  ok=$(awk -v a="$right" -v b="$total" 'BEGIN {print (b > 0 && a >= 0.95 * b) ? 1 : 0}')
  verdict train_toy_lora_reverse_exact_match "$ok" "$right/$total = $pct% (>= 95%; base alone $b_right/$b_total)"
done

echo "== router over ${TASKS[*]} ($ROUTER_STEPS steps)"
$R train router -m "$D/base" --pool "$D/reverse" "$D/shift" "$D/swap" --data "$D/mixed_train.jsonl" -o "$D/router" \
  --rank 16 --top-k 3 --lora-dropout 0.1 --gate-loss 10 --steps "$ROUTER_STEPS" --batch 16 --lr 3e-3 --warmup 20 \
  --val 0.05 --seed 3 -t "$TH" --log "$D/router.log" --log-every 100 || { echo "FAIL train_toy: train router"; exit 1; }
$R train router-eval -m "$D/base" --pool "$D/reverse" "$D/shift" "$D/swap" --router "$D/router" \
  --data "$D/mixed_test.jsonl" -t "$TH" >"$D/router_eval.jsonl" || { echo "FAIL train_toy: router-eval"; exit 1; }
acc=$(tail -1 "$D/router_eval.jsonl" | sed 's/.*"accuracy_answer":\([0-9.]*\).*/\1/')
ok=$(awk -v a="$acc" 'BEGIN {print (a >= 0.9) ? 1 : 0}')
verdict train_toy_router_picks_right_adapter "$ok" "accuracy_answer $acc (>= 0.90); $(tail -1 "$D/router_eval.jsonl")"

read -r m_right m_total < <(exact router "$D/mixed_test.jsonl")
read -r o_right o_total < <(exact own "$D/mixed_test.jsonl")
ok=$(awk -v a="$m_right" -v b="$o_right" 'BEGIN {print (b > 0 && a >= 0.9 * b) ? 1 : 0}')
verdict train_toy_router_generates "$ok" "generate --mode router: $m_right/$m_total exact; each example's own adapter \
alone: $o_right/$o_total (>= 90% of it)"
echo "train_toy: $fails failed, done in $(( $(date +%s) - t_start )) s (work folder $D)"
[ "$fails" = 0 ]
