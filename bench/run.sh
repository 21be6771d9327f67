#!/usr/bin/env bash
# bench/run.sh — `make bench`: ramole against llama.cpp on the same GGUF files.
#
#  1. bench models (random weights, tinyllama-1.1b shape, f16, q8_0 and q4_k_m) in the ignored
#     folder .cache/bench/, made once with `ramole random-model ... --format gguf`;
#  2. the kernel microbench ($BUILD/bench/bench_kernels);
#  3. ramole's own timing: `ramole generate` (timings on stderr, shown as is) and
#     `ramole bench -m M -t T --prompt P --decode D` (one JSON line of tokens/s);
#  4. the llama.cpp peer (bench/llamacpp/bench.mjs, node-llama-cpp's prebuilt CPU build,
#     installed by scripts/peers.sh) on the same files and thread counts;
#  5. a markdown table of tokens/s and ramole/llama.cpp ratios (also saved to
#     .cache/bench/last.md, raw JSON lines to .cache/bench/last.jsonl);
#  6.-8. heterogeneous LoRA batches, tokenizer speed, and training tokens/s against
#     PyTorch (bench/train_bench.sh; skipped where torch is absent).
#
# A piece that is missing prints "skipped: ..." and the rest goes on; the exit status
# is non-zero only when a piece that exists fails.
#
# Environment: BUILD (default build), BENCH_THREADS ("1 2"), BENCH_PROMPT (512),
#   BENCH_DECODE (64), BENCH_TYPES ("f16 q8_0 q4_k_m"), BENCH_REPS (1, llama.cpp peer reps),
#   BENCH_TRAIN (1; 0 skips the training bench, bench/train_bench.sh, which has its own
#   TRAIN_BENCH_* settings),
#   BENCH_PEER (1; 0 skips llama.cpp), BENCH_KERNELS (1; 0 skips the microbench),
#   BENCH_MODELS_DIR (.cache/bench), BENCH_MODELS (space-separated GGUF paths to use
#   instead of the generated ones), BENCH_NICE (e.g. -10: run both engines' timed
#   commands under `nice -n N`, which needs root; helps on a machine shared with other work).
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
RAMOLE=$BUILD/ramole
THREADS=${BENCH_THREADS:-1 2}
PROMPT=${BENCH_PROMPT:-512}
DECODE=${BENCH_DECODE:-64}
TYPES=${BENCH_TYPES:-f16 q8_0 q4_k_m}
REPS=${BENCH_REPS:-1}
MODELS_DIR=${BENCH_MODELS_DIR:-.cache/bench}
NICE=()
[ -n "${BENCH_NICE:-}" ] && NICE=(nice -n "$BENCH_NICE")
PRESET=tinyllama-1.1b
mkdir -p "$MODELS_DIR"
OUT_MD=$MODELS_DIR/last.md
OUT_JSONL=$MODELS_DIR/last.jsonl
: > "$OUT_JSONL"
. bench/lib.bash

have_ramole=0; have_cmd_bench=0; have_cmd_random=0; have_cmd_generate=0
if [ -x "$RAMOLE" ]; then
  have_ramole=1
  help=$("$RAMOLE" --help 2>&1 || true)
  grep -q "ramole bench" <<<"$help" && have_cmd_bench=1
  grep -q "ramole random-model" <<<"$help" && grep -q "gguf" <<<"$help" && have_cmd_random=1
  grep -q "ramole generate" <<<"$help" && have_cmd_generate=1
fi

say "# ramole bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
say "threads: $THREADS; prompt $PROMPT tokens; decode $DECODE tokens"
# ggml and ramole threads spin at barriers: another busy process on this 2-core machine
# wrecks the 2-thread figures (seen: 70x slower decode). Say so in the output.
cpu_busy() { # percentage of CPU time used by anything over the next second
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  awk -v u=$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) )) \
      -v i=$(( (b[4]+b[5]) - (a[4]+a[5]) )) 'BEGIN { printf "%d\n", (u + i) ? 100 * u / (u + i) : 0 }'
}
busy=$(cpu_busy)
if [ "$busy" -gt 10 ]; then
  say "WARNING: the CPU was ${busy}% busy before the bench (other processes); figures will be low and noisy"
fi
say ""

# ---- 1. models -----------------------------------------------------------------------
MODELS=()
if [ -n "${BENCH_MODELS:-}" ]; then
  for m in $BENCH_MODELS; do
    if [ -f "$m" ]; then MODELS+=("$m"); else skip "model $m not found"; fi
  done
else
  for ty in $TYPES; do
    m=$MODELS_DIR/$PRESET-$ty.gguf
    if [ ! -f "$m" ]; then
      if [ "$have_cmd_random" = 1 ]; then
        say "making $m (ramole random-model, $ty)"
        tmp=$MODELS_DIR/.partial-$PRESET-$ty.gguf
        if "$RAMOLE" random-model --arch llama --preset "$PRESET" -o "$tmp" --format gguf --type "$ty" >/dev/null; then
          mv "$tmp" "$m"
        else
          rm -f "$tmp"; fail "ramole random-model --preset $PRESET --format gguf --type $ty"
        fi
      else
        skip "model $m: $RAMOLE with 'random-model --format gguf' not available (build ramole first: make)"
      fi
    fi
    [ -f "$m" ] && MODELS+=("$m")
  done
fi

# ---- 2. kernel microbench --------------------------------------------------------------
say ""
say "## kernels"
if [ "${BENCH_KERNELS:-1}" = 0 ]; then
  skip "kernel microbench (BENCH_KERNELS=0)"
elif [ -x "$BUILD/bench/bench_kernels" ]; then
  kout=$("$BUILD/bench/bench_kernels" ${BENCH_KERNELS_ARGS:---quick}) || fail "$BUILD/bench/bench_kernels exited $?"
  say "$kout"
  # the machine's read bandwidth, for the decode roofline below
  BW1=$(sed -n 's/.*bandwidth.* 1 thread \([0-9.]*\) GB\/s.*/\1/p' <<<"$kout" | head -1)
  BW2=$(sed -n 's/.*bandwidth.* 2 threads \([0-9.]*\) GB\/s.*/\1/p' <<<"$kout" | head -1)
else
  skip "kernel microbench: $BUILD/bench/bench_kernels not built (make bench builds bench/*.c)"
fi

# ---- 3. llama.cpp peer availability -------------------------------------------------------
have_peer=0
if [ "${BENCH_PEER:-1}" = 0 ]; then
  skip "llama.cpp peer (BENCH_PEER=0)"
elif ! command -v node >/dev/null; then
  skip "llama.cpp peer: node not found"
elif peer_log=$(bash scripts/peers.sh 2>&1); then
  have_peer=1
  say ""
  grep -m1 'peer ok' <<<"$peer_log" | sed 's/^peers.sh: //'
else
  skip "llama.cpp peer: scripts/peers.sh failed: $(tail -n 1 <<<"$peer_log")"
fi

# ---- 4. runs -------------------------------------------------------------------------------
ROWS=()
for m in "${MODELS[@]+"${MODELS[@]}"}"; do
  name=$(basename "$m" .gguf)
  say ""
  say "## $name ($(du -h "$m" | cut -f1))"
  if [ "$have_cmd_generate" = 1 ]; then
    max_t=$(tr ' ' '\n' <<<"$THREADS" | sort -n | tail -1)
    say "ramole generate -n 16 -t $max_t (stderr timings):"
    gen_err=$("$RAMOLE" generate -m "$m" --tokens 1,450,4996,310,278,3186 -n 16 -t "$max_t" 2>&1 >/dev/null)
    rc=$?
    grep -iE 'tok|ms|/s|time' <<<"$gen_err" | sed 's/^/  /'
    [ $rc = 0 ] || fail "ramole generate on $name exited $rc: $(tail -n 1 <<<"$gen_err")"
  elif [ "$have_ramole" = 1 ]; then
    skip "ramole generate: not in $RAMOLE --help"
  fi
  for t in $THREADS; do
    r_pf=""; r_dc=""; l_pf=""; l_dc=""
    if [ "$have_cmd_bench" = 1 ]; then
      r_out=$("${NICE[@]}" "$RAMOLE" bench -m "$m" -t "$t" --prompt "$PROMPT" --decode "$DECODE" 2>/tmp/ramole-bench.$$.err)
      rc=$?
      r_json=$(grep -m1 '^{' <<<"$r_out")
      if [ $rc = 0 ] && [ -n "$r_json" ]; then
        say "ramole    t=$t: $r_json"
        printf '{"engine":"ramole","model":%s,"threads":%s,"result":%s}\n' "$(json_str "$m")" "$t" "$r_json" >> "$OUT_JSONL"
        r_pf=$(json_num prefill_tps <<<"$r_json"); r_dc=$(json_num decode_tps <<<"$r_json")
      else
        fail "ramole bench -m $m -t $t exited $rc: $(tail -n 1 /tmp/ramole-bench.$$.err)"
      fi
      rm -f /tmp/ramole-bench.$$.err
    else
      skip "ramole bench t=$t: $( [ "$have_ramole" = 1 ] && echo "no 'bench' command in $RAMOLE" || echo "$RAMOLE not built")"
    fi
    if [ "$have_peer" = 1 ]; then
      l_out=$("${NICE[@]}" node bench/llamacpp/bench.mjs -m "$m" -t "$t" --prompt "$PROMPT" --decode "$DECODE" --reps "$REPS" 2>/tmp/llamacpp-bench.$$.err)
      rc=$?
      l_json=$(grep -m1 '^{' <<<"$l_out")
      if [ $rc = 0 ] && [ -n "$l_json" ]; then
        say "llama.cpp t=$t: $l_json"
        printf '{"engine":"llama.cpp","model":%s,"threads":%s,"result":%s}\n' "$(json_str "$m")" "$t" "$l_json" >> "$OUT_JSONL"
        l_pf=$(json_num prefill_tps <<<"$l_json"); l_dc=$(json_num decode_tps <<<"$l_json")
      else
        fail "llama.cpp peer on $m t=$t exited $rc: $(grep -v '^\[' /tmp/llamacpp-bench.$$.err | tail -n 1)"
      fi
      rm -f /tmp/llamacpp-bench.$$.err
    fi
    # decode as a share of the roofline: every weight byte read once per token
    bw=${BW1:-}; [ "$t" -ge 2 ] && bw=${BW2:-}
    roof=$(awk -v d="$r_dc" -v b="$(stat -c %s "$m")" -v bw="$bw" 'BEGIN { if (d == "" || bw == "" || bw + 0 == 0) print "—"; else printf "%.0f%%\n", 100 * d * b / (bw * 1e9) }')
    ROWS+=("| $name | $t | $(fmt "$r_pf") | $(fmt "$l_pf") | $(ratio "$r_pf" "$l_pf") | $(fmt "$r_dc") | $(fmt "$l_dc") | $(ratio "$r_dc" "$l_dc") | $roof |")
  done
done

# ---- 5. table -------------------------------------------------------------------------------
{
  say ""
  say "## ramole vs llama.cpp (tokens/s; prefill = $PROMPT-token prompt in one batch, decode = $DECODE greedy tokens after it)"
  say ""
  say "| model | threads | ramole prefill | llama.cpp prefill | ratio | ramole decode | llama.cpp decode | ratio | ramole decode / roofline |"
  say "|---|---|---|---|---|---|---|---|---|"
  if [ ${#ROWS[@]} = 0 ]; then
    say "| (no model) | | | | | | | | |"
  else
    printf '%s\n' "${ROWS[@]}"
  fi
  say ""
  say "ratio = ramole / llama.cpp (> 1: ramole faster). roofline = decode tokens/s x file bytes /"
  say "measured read bandwidth at that thread count (1 thread ${BW1:-?} GB/s, 2 threads ${BW2:-?} GB/s)."
} | tee "$OUT_MD"

# ---- 6. heterogeneous LoRA batches ------------------------------------------------------------
# Every sequence has its own top-3 from a pool of rank-16 adapters on all seven
# targets; mixture and router, adapters held in f32 then f16, against the same
# batch without adapters.
say ""
say "## LoRA: batches of sequences with different adapter sets"
if [ "${BENCH_LORA:-1}" = 0 ]; then
  skip "LoRA bench (BENCH_LORA=0)"
elif [ -x "$BUILD/bench/bench_lora" ] && [ ${#MODELS[@]} -gt 0 ]; then
  lm=${MODELS[0]}
  "$BUILD/bench/bench_lora" "$lm" --pool "${BENCH_LORA_POOL:-256}" --rank 16 --batch "${BENCH_LORA_BATCH:-16,64}" \
      --prompt "${BENCH_LORA_PROMPT:-16}" --decode "${BENCH_LORA_DECODE:-8}" --lora-type "${BENCH_LORA_TYPE:-f32,f16}" -t "$(tr ' ' '\n' <<<"$THREADS" | sort -n | tail -1)" \
    | tee -a "$OUT_JSONL" || fail "bench_lora exited $?"
else
  skip "LoRA bench: $BUILD/bench/bench_lora not built or no model"
fi

# a section that is its own script: sub_bench SWITCH TITLE WHAT SCRIPT (SWITCH=0 skips it)
sub_bench() {
  say ""
  say "## $2"
  if [ "${!1:-1}" = 0 ]; then skip "$3 ($1=0)"
  else BUILD=$BUILD bash "$4" || fail "$4 exited $?"; fi
}

# ---- 7. tokenizer encode speed -------------------------------------------------------------------
sub_bench BENCH_TOKENIZER "tokenizer encode speed (ramole vs the reference JS tokenizer)" "tokenizer bench" \
  bench/tokenizer_bench.sh

# ---- 9. the registry's retrieval pool ------------------------------------------------------------
say ""
say "## Registry: top-3 search against FAISS IndexFlatIP, and incremental add, over 10k and 100k adapters"
if [ "${BENCH_REGISTRY:-1}" = 0 ]; then
  skip "registry bench (BENCH_REGISTRY=0)"
elif [ -x "$BUILD/bench/bench_registry" ]; then
  "$BUILD/bench/bench_registry" "${BENCH_REGISTRY_QUERIES:-200}" | tee -a "$OUT_JSONL" || fail "bench_registry exited $?"
else
  skip "registry bench: $BUILD/bench/bench_registry not built"
fi

# ---- 8. training against PyTorch -------------------------------------------------------------------
sub_bench BENCH_TRAIN "training tokens/s (ramole vs PyTorch, same model, batch and optimiser)" "training bench" \
  bench/train_bench.sh

exit $FAILED
