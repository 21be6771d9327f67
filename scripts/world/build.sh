#!/usr/bin/env bash
# make world: rebuild the reference world from Debian's packages, in
# resumable stages. Each stage writes its outputs and then a stamp holding
# the hash of everything it was made from (its command, its inputs); a stage
# whose stamp matches is skipped, so a rebuild can stop and go on later, and
# changing one stage redoes it and what follows. Every stage is seeded.
#
# Usage: scripts/world/build.sh [STAGE...]   (default: all, in order)
#   stages: data tokenizer base skills copy adapters retriever router
# Env: WORLD (default world), R (default build/ramole), SEED (default 1),
#      THREADS (default: all CPUs), BASE_STEPS, SKILLS_STEPS, COPY_STEPS, ROUTER_STEPS,
#      LORA_STEPS (an adapter's most steps), LORA_EPOCHS
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${WORLD:-world}
R=${R:-build/ramole}
SEED=${SEED:-1}
TH=${THREADS:-$(nproc)}
BASE_STEPS=${BASE_STEPS:-1800}
SKILLS_STEPS=${SKILLS_STEPS:-800}
COPY_STEPS=${COPY_STEPS:-1000}
LORA_STEPS=${LORA_STEPS:-2400}
LORA_MIN_STEPS=150
LORA_EPOCHS=${LORA_EPOCHS:-12}
LORA_BATCH=16
ROUTER_STEPS=${ROUTER_STEPS:-1200}
WORK=$W/.work
mkdir -p "$WORK/stamps"
[ -x "$R" ] || { echo "world: $R is not built (run make first)" >&2; exit 1; }

# hash_of FILE_OR_DIR...: one hash over the contents of the given paths
# (paths enter relative to each argument's folder, so the stamps still
# hold when the world folder is moved or copied)
hash_of() {
  local p
  for p in "$@"; do
    (cd "$(dirname "$p")" 2>/dev/null && find "$(basename "$p")" -type f ! -name '*.log' -print0 2>/dev/null \
      | sort -z | xargs -0 -r sha256sum)
  done | sha256sum | cut -c1-16
}

# put_in_place NEW DST: folder NEW becomes DST only once it is whole, so a
# failed or interrupted stage leaves the world's committed piece as it was
put_in_place() {
  mkdir -p "$(dirname "$2")"
  rm -rf "$2.old"
  [ ! -e "$2" ] || mv "$2" "$2.old"
  mv "$1" "$2"
  rm -rf "$2.old"
}

# task_names all|seen: the tasks of tasks.json, in its order
task_names() {
  python3 -c 'import json, sys
print(" ".join(t["name"] for t in json.load(open(sys.argv[1]))["tasks"] if sys.argv[2] == "all" or t["seen"]))' \
    "$W/tasks.json" "$1"
}

# stage NAME KEY CMD...: run CMD unless NAME's stamp equals KEY; time it.
stage() {
  local name=$1 key=$2
  shift 2
  if [ "$(cat "$WORK/stamps/$name" 2>/dev/null)" = "$key" ]; then
    echo "world: $name is up to date"
    return 0
  fi
  rm -f "$WORK/stamps/$name"
  local t0=$SECONDS
  echo "world: $name ..."
  "$@"
  echo "$key" >"$WORK/stamps/$name"
  echo "world: $name took $((SECONDS - t0)) s"
}

BASE_ARGS=(--arch llama --hidden 256 --layers 6 --heads 4 --kv-heads 2 --ffn 704 --max-pos 512
           --ctx 128 --batch 16 --steps "$BASE_STEPS" --lr 2e-3 --warmup 100 --val 0.005 --seed "$SEED")
SKILLS_ARGS=(--ctx 128 --batch 16 --steps "$SKILLS_STEPS" --lr 1e-3 --warmup 50 --val 0.005 --seed "$SEED")
COPY_ARGS=(--ctx 128 --batch 16 --steps "$COPY_STEPS" --lr 2e-3 --warmup 30 --seed "$SEED")
LORA_ARGS=(--rank 8 --alpha 16 --batch "$LORA_BATCH" --lr 2e-3 --warmup 20 --seed "$SEED")
ROUTER_ARGS=(--rank 4 --top-k 3 --steps "$ROUTER_STEPS" --batch 16 --lr 2e-3 --warmup 30 --seed "$SEED")
RETR_ARGS=(--steps 400 --held-out-tasks 0 --samples 20 --seed "$SEED")

do_data() { python3 scripts/world/data.py --out "$W" --seed "$SEED"; }

do_tokenizer() {
  "$R" tokenizer train --vocab-size 2048 --special "<|endoftext|>" -o "$WORK/tokenizer.json" "$WORK/corpus.txt"
}

do_base() {
  # the checkpoint lets an interrupted base resume where it stopped
  "$R" train base --tokenizer "$WORK/tokenizer.json" --data "$WORK/corpus.txt" -o "$WORK/base-f32" \
    "${BASE_ARGS[@]}" -t "$TH" --log "$WORK/base.log" --log-every 50 --eval-every 500 \
    --checkpoint "$WORK/base.ckpt" --save-every 200 $( [ -e "$WORK/base.ckpt" ] && echo --resume )
}

# the second phase: the same base on half general text, half copying
# prompts (data.py's skills_lines); what it writes is the world's base
do_skills() {
  "$R" train base -m "$WORK/base-f32" --tokenizer "$WORK/tokenizer.json" --data "$WORK/skills.txt" \
    -o "$WORK/base2-f32" "${SKILLS_ARGS[@]}" -t "$TH" --log "$WORK/skills.log" --log-every 50 --eval-every 200 \
    --checkpoint "$WORK/skills.ckpt" --save-every 200 $( [ -e "$WORK/skills.ckpt" ] && echo --resume )
}

# the third phase: mostly copying, at the first phase's rate, until whole
# words come back (after the second, only their first token did)
do_copy() {
  "$R" train base -m "$WORK/base2-f32" --tokenizer "$WORK/tokenizer.json" --data "$WORK/copy.txt" \
    -o "$WORK/base3-f32" "${COPY_ARGS[@]}" -t "$TH" --log "$WORK/copy.log" --log-every 50 \
    --checkpoint "$WORK/copy.ckpt" --save-every 200 $( [ -e "$WORK/copy.ckpt" ] && echo --resume )
  rm -rf "$WORK/base.new"
  "$R" convert "$WORK/base3-f32" "$WORK/base.new" --type f16
  put_in_place "$WORK/base.new" "$W/base"
}

# one adapter per task; each task is its own small stage, so an
# interrupted run keeps the adapters already trained, and its key is the
# task's own command, so a change of LORA_STEPS retrains only the tasks
# whose step count it changes
do_adapters() {
  local t bh n
  bh=$(hash_of "$W/base")
  for t in $(task_names all); do
    n=$(lora_steps "$t")
    stage "adapter-$t" "$(echo "${LORA_ARGS[*]} --steps $n $bh $(hash_of "$W/tasks/$t/train.jsonl")" \
      | sha256sum | cut -c1-16)" train_adapter "$t" "$n"
  done
}
# lora_steps TASK: LORA_EPOCHS passes over the task's training rows, within
# [LORA_MIN_STEPS, LORA_STEPS]: a task of 3000 rows gets 2250 steps, one of
# 300 rows (antonym_adverb) 225; twelve epochs beat six on rules, and on
# words to remember hardly differ (docs/TRAINING.md, "Twelve epochs")
lora_steps() {
  local n s
  n=$(wc -l <"$W/tasks/$1/train.jsonl")
  s=$(( (n * LORA_EPOCHS + LORA_BATCH - 1) / LORA_BATCH ))
  echo $(( s < LORA_MIN_STEPS ? LORA_MIN_STEPS : s > LORA_STEPS ? LORA_STEPS : s ))
}
# train_adapter TASK STEPS
train_adapter() {
  local t=$1 steps=$2
  rm -rf "$WORK/adapters/$t" "$WORK/adapters/$t.new"
  mkdir -p "$WORK/adapters"
  "$R" train lora -m "$W/base" --data "$W/tasks/$t/train.jsonl" -o "$WORK/adapters/$t" "${LORA_ARGS[@]}" \
    --steps "$steps" -t "$TH" --quiet --log "$WORK/adapters/$t.log"
  "$R" convert "$WORK/adapters/$t" "$WORK/adapters/$t.new" --type f16 --base "$W/base"
  put_in_place "$WORK/adapters/$t.new" "$W/adapters/$t"
}

do_retriever() {
  "$R" train retriever -m "$W/base" --data "$WORK/retriever.jsonl" -o "$W/projection.safetensors" \
    "${RETR_ARGS[@]}" -t "$TH" --log "$WORK/retriever.log"
}

do_router() {
  python3 scripts/world/router_data.py --world "$W" --ramole "$R" >"$WORK/router.jsonl"
  rm -rf "$WORK/router.new"
  local t pool=()
  for t in $(task_names seen); do pool+=("$W/adapters/$t"); done
  "$R" train router -m "$W/base" --pool "${pool[@]}" \
    --data "$WORK/router.jsonl" -o "$WORK/router.new" "${ROUTER_ARGS[@]}" -t "$TH" --log "$WORK/router.log" --log-every 50
  put_in_place "$WORK/router.new" "$W/router"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(data tokenizer base skills copy adapters retriever router)
T0=$SECONDS
for s in "${stages[@]}"; do
  case $s in
    data) stage data "$(echo "$SEED $(hash_of scripts/world/data.py)" | sha256sum | cut -c1-16)" do_data ;;
    tokenizer) stage tokenizer "$(hash_of "$WORK/corpus.txt")" do_tokenizer ;;
    base) stage base "$(echo "${BASE_ARGS[*]} $(hash_of "$WORK/corpus.txt" "$WORK/tokenizer.json")" | sha256sum | cut -c1-16)" do_base ;;
    skills) stage skills "$(echo "${SKILLS_ARGS[*]} $(hash_of "$WORK/base-f32" "$WORK/skills.txt")" | sha256sum | cut -c1-16)" do_skills ;;
    copy) stage copy "$(echo "${COPY_ARGS[*]} $(hash_of "$WORK/base2-f32" "$WORK/copy.txt")" | sha256sum | cut -c1-16)" do_copy ;;
    adapters) do_adapters ;;
    retriever) stage retriever "$(echo "${RETR_ARGS[*]} $(hash_of "$W/base" "$WORK/retriever.jsonl")" | sha256sum | cut -c1-16)" do_retriever ;;
    router) stage router "$(echo "${ROUTER_ARGS[*]} $(hash_of "$W/base" "$W/adapters" "$W/projection.safetensors" "$W/tasks")" | sha256sum | cut -c1-16)" do_router ;;
    *) echo "world: unknown stage '$s' (data tokenizer base skills copy adapters retriever router)" >&2; exit 2 ;;
  esac
done
echo "world: done in $((SECONDS - T0)) s"
# what is committed (the base, adapters, router, projection, tasks) must
# stay under 60 MiB, so that a clone stays small
size=$(cd "$W" && du -cb --exclude=.work . | tail -1 | cut -f1)
echo "world: $((size / 1048576)) MiB outside .work (limit 60)"
(( size < 60 * 1048576 )) || { echo "world: $W is over 60 MiB; lower N_TRAIN in scripts/world/data.py" >&2; exit 1; }
