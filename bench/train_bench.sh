#!/usr/bin/env bash
# bench/train_bench.sh — training tokens/s, ramole ($BUILD/bench/bench_train) against
# PyTorch (bench/train_torch.py under /usr/bin/python3) on the same models (5m, 12m),
# batch shape (8 x 128) and optimiser (AdamW + clipping), full and LoRA (rank 16 on
# q,k,v,o,gate,up,down), 2 threads, in one run.
#
# Each (size, mode) runs REPS times per engine, alternating which engine goes first;
# the best tokens/s of each engine is kept (the machine is shared: a slow run means
# another process took a core, never that the engine got faster). Also prints
# ramole's time share and GFLOP/s of the matrix products and OpenBLAS sgemm's peak
# measured in the same run. Raw JSON lines go to $OUT_JSONL, the table to $OUT_MD.
#
# Environment: BUILD (build), TRAIN_BENCH_REPS (3), TRAIN_BENCH_THREADS (2),
#   TRAIN_BENCH_SIZES ("5m 12m"), TRAIN_BENCH_MODES ("full lora"), TRAIN_BENCH_STEPS (5),
#   TRAIN_BENCH_WARMUP (2), TRAIN_BENCH_PEER (1; 0 skips torch), PYTHON (/usr/bin/python3),
#   BENCH_MODELS_DIR (.cache/bench).
# Exit status: 1 if a piece that exists fails; a missing torch is "skipped", not a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
BIN=$BUILD/bench/bench_train
PY=${PYTHON:-/usr/bin/python3}
REPS=${TRAIN_BENCH_REPS:-3}
TH=${TRAIN_BENCH_THREADS:-2}
SIZES=${TRAIN_BENCH_SIZES:-5m 12m}
MODES=${TRAIN_BENCH_MODES:-full lora}
STEPS=${TRAIN_BENCH_STEPS:-5}
WARM=${TRAIN_BENCH_WARMUP:-2}
DIR=${BENCH_MODELS_DIR:-.cache/bench}
mkdir -p "$DIR"
OUT_JSONL=$DIR/train_last.jsonl
OUT_MD=$DIR/train_last.md
: > "$OUT_JSONL"
. bench/lib.bash

if [ ! -x "$BIN" ]; then
  skip "training bench: $BIN not built (make bench builds bench/*.c)"
  exit 0
fi
have_torch=0
if [ "${TRAIN_BENCH_PEER:-1}" = 0 ]; then
  skip "PyTorch peer (TRAIN_BENCH_PEER=0)"
elif ! command -v "$PY" >/dev/null; then
  skip "PyTorch peer: $PY not found"
elif tv=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
  have_torch=1
  say "PyTorch peer: torch $tv ($PY), BLAS $(readlink -f /lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo '?')"
else
  skip "PyTorch peer: torch is not importable by $PY (Debian: apt-get install python3-torch)"
fi

# one timed run of an engine: its JSON line (the first matching PATTERN) is logged and
# kept in the associative arrays named TPS/LINE under "$s $m" when its tokens/s is the
# best so far. run_one LABEL PATTERN TPS LINE CMD...
run_one() {
  local label=$1 pat=$2 out rc j v k="$s $m"
  local -n tps=$3 line=$4
  shift 4
  out=$("$@" 2>&1); rc=$?
  j=$(grep -m1 "$pat" <<<"$out")
  if [ $rc != 0 ] || [ -z "$j" ]; then fail "$label: $(tail -n 1 <<<"$out")"; return; fi
  say "rep $rep $label: $j"; printf '%s\n' "$j" >> "$OUT_JSONL"
  v=$(json_num tokens_per_s <<<"$j")
  if [ "$(maxf "${tps[$k]:-}" "$v")" = "$v" ]; then tps[$k]=$v; line[$k]=$j; fi
}

say "threads $TH; batch 8 x seq 128; $WARM warm-up + $STEPS timed steps per run; best of $REPS alternating runs"
declare -A R_TPS T_TPS R_LINE T_LINE
peak=""
for rep in $(seq 1 "$REPS"); do
  # sgemm peak once per round, best kept (a busy core halves it)
  p=$("$BIN" -t "$TH" --size none --steps 1 2>&1 | grep -m1 '"sgemm_peak"')
  if [ -n "$p" ]; then
    say "rep $rep $p"; printf '%s\n' "$p" >> "$OUT_JSONL"
    [ "$(maxf "$(json_num gflops <<<"$peak")" "$(json_num gflops <<<"$p")")" = "$(json_num gflops <<<"$p")" ] && peak=$p
  fi
  for s in $SIZES; do
    for m in $MODES; do
      order="ramole torch"; [ $((rep % 2)) = 0 ] && order="torch ramole"
      for e in $order; do
        if [ "$e" = ramole ]; then
          run_one "ramole $s $m" '"engine":"ramole"' R_TPS R_LINE \
            "$BIN" --size "$s" --mode "$m" -t "$TH" --warmup "$WARM" --steps "$STEPS" --no-peak
        elif [ $have_torch = 1 ]; then
          run_one "torch  $s $m" '"peer": "torch"' T_TPS T_LINE \
            env OPENBLAS_NUM_THREADS="$TH" OMP_NUM_THREADS="$TH" MKL_NUM_THREADS="$TH" \
            "$PY" bench/train_torch.py --size "$s" --mode "$m" --threads "$TH" --warmup "$WARM" --steps "$STEPS"
        fi
      done
    done
  done
done

{
  say ""
  say "## Training tokens/s, ramole vs PyTorch (best of $REPS alternating runs, $TH threads)"
  say ""
  say "| model | mode | ramole tok/s | torch tok/s | ratio | cpu use ramole / torch | gemm share | gemm GFLOP/s | attention share |"
  say "|---|---|---|---|---|---|---|---|---|"
  for s in $SIZES; do
    for m in $MODES; do
      k="$s $m"; j=${R_LINE[$k]:-}; tj=${T_LINE[$k]:-}
      cu="$(fmt "$(json_num cpu_util <<<"$j")" 2) / $(fmt "$(json_num cpu_util <<<"$tj")" 2)"
      gs=$(json_num gemm_share <<<"$j"); gf=$(json_num gemm_gflops <<<"$j"); as=$(json_num attn_share <<<"$j")
      say "| $s | $m | $(fmt "${R_TPS[$k]:-}" 1) | $(fmt "${T_TPS[$k]:-}" 1) | $(ratio "${R_TPS[$k]:-}" "${T_TPS[$k]:-}") | $cu | $(pct "$gs") | $(fmt "$gf" 1) | $(pct "$as") |"
    done
  done
  say ""
  if [ -n "$peak" ]; then
    say "OpenBLAS sgemm peak in this run: $(json_num gflops <<<"$peak") GFLOP/s at $TH threads on" \
        "$(sed -n 's/.*"shape":\[\([0-9,]*\)\].*/\1/p' <<<"$peak" | tr , x) (M x N x K)," \
        "$(json_num square_1024_gflops <<<"$peak") on 1024^3; the same shape with its rows split over $TH" \
        "single-threaded sgemm calls (the trainer's way) $(json_num split_gflops <<<"$peak");" \
        "1 thread $(json_num one_thread_gflops <<<"$peak"). (Best of the $REPS rounds.)"
  fi
  say "ratio = ramole / torch (> 1: ramole faster). cpu use = process CPU time / (wall x threads) of the"
  say "best run: well below 1 means another process held a core (torch suffers more from that than ramole)."
  say "gemm = ramole's projection, head and LoRA products (share of the step's wall time, GFLOP/s)."
} | tee "$OUT_MD"
exit $FAILED
