#!/usr/bin/env bash
# fuzz/run.sh — run each libFuzzer harness of build-fuzz/fuzz/ in turn (one
# process, nice 10: the machine is shared) for FUZZ_SECONDS seconds.
#   bash fuzz/run.sh [NAME...]     default: every harness
# Corpora grow across runs in build-fuzz/corpus/NAME; seeds are the files
# the harness's initializer writes (RAMOLE_FUZZ_SEEDS) plus test files
# (below). Crashes go to build-fuzz/crashes/; each run appends one line
# "DATE NAME SECONDS EXECS EXEC/S CORPUS RESULT" to build-fuzz/fuzz-log.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-fuzz
SECS=${FUZZ_SECONDS:-60}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in "$B"/fuzz/fuzz_*; do names+=("$(basename "$f")"); done
fi

# test files that seed each harness (beside the generated seeds)
seed_files() {
  case "$1" in
    fuzz_safetensors) find tests/golden/lora -name '*.safetensors' -size -20k ;;
    fuzz_gguf) echo tests/data/formats/hf_gguf_js.gguf ;;
    fuzz_peft) find tests/golden/lora -name adapter_config.json ;;
    fuzz_tokenizer) ls tests/golden/tokenizer/*.json 2>/dev/null ;;
    fuzz_request) ;;
  esac
}

mkdir -p "$B/crashes" "$B/stats"
fail=0
for n in "${names[@]}"; do
  bin="$B/fuzz/$n"
  [ -x "$bin" ] || { echo "fuzz: no harness $bin (make fuzz-build)" >&2; exit 2; }
  corpus="$B/corpus/$n" seeds="$B/seeds/$n"
  mkdir -p "$corpus" "$seeds"
  RAMOLE_FUZZ_SEEDS="$seeds" "$bin" >/dev/null 2>&1 || { echo "fuzz: $n could not write its seeds" >&2; exit 2; }
  for f in $(seed_files "$n"); do cp "$f" "$seeds/$(echo "$f" | tr / _)"; done
  dict=(); [ -f "fuzz/dict/${n#fuzz_}.dict" ] && dict=(-dict="fuzz/dict/${n#fuzz_}.dict")
  log="$B/stats/$n.log"
  # -rss_limit_mb / -malloc_limit_mb: a small input must never drive a big
  # allocation; -timeout: nor a long loop.
  nice -n 10 "$bin" "$corpus" "$seeds" "${dict[@]}" -max_total_time="$SECS" -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -timeout=10 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$B/crashes/$n-" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(ls "$corpus" | wc -l)
  result=ok; [ $rc -ne 0 ] && result="CRASH (see $log)" && fail=1
  line="$(date -u +%FT%TZ) $n ${SECS}s ${execs:-0} ${rate:-0}/s corpus=$units $result"
  echo "$line" | tee -a "$B/fuzz-log.txt"
done
exit $fail
