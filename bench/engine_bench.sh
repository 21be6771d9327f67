#!/usr/bin/env bash
# bench/engine_bench.sh — the engine's targets, all in one run (docs/BENCH.md):
#
#  1. `ramole batch`: N requests (16-token prompts, 64 tokens out), each with
#     its own 3 of a pool of 64 rank-16 adapters in router mode, against the
#     same requests with no adapters (target >= 0.85x);
#  2. the same mixed workload through llama.cpp as its users run it, one
#     adapter set after another (bench/llamacpp/mixed_lora.mjs, a mixture:
#     llama.cpp has no router), on a subset of PEER_SEQS sequences, as a
#     ratio of overall tokens/s (target >= 4x);
#  3. peak RSS of the paged KV cache against the contiguous layout (one block
#     of n_ctx positions per sequence) for a mix of short and long requests;
#  4. attention through the block table against the contiguous layout on a
#     long prompt (`ramole bench --kv-block`), target within 5%.
#
# Environment: BUILD (build), ENGINE_BENCH_REQUESTS (256), ENGINE_BENCH_PEER_SEQS
#   (16; 0 skips llama.cpp), ENGINE_BENCH_THREADS (2), BENCH_MODELS_DIR (.cache/bench),
#   ENGINE_BENCH_MODEL (a GGUF base instead of the TinyLlama-shaped f16 one: a quick
#   check of the script on a small model), ENGINE_BENCH_LONG (900: the long prompts of 3.),
#   ENGINE_BENCH_TOKENS (64: tokens out per request in 1. and 2.), ENGINE_BENCH_MIX (64:
#   requests in 3.). The script is read as it runs: copy it before editing it mid-run.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
BUILD=${BUILD:-build}
R=$BUILD/ramole
N=${ENGINE_BENCH_REQUESTS:-256}
PEER=${ENGINE_BENCH_PEER_SEQS:-16}
T=${ENGINE_BENCH_THREADS:-2}
DIR=${BENCH_MODELS_DIR:-.cache/bench}
M=${ENGINE_BENCH_MODEL:-$DIR/tinyllama-1.1b-f16.gguf}
W=$DIR/engine-$(basename "$M" .gguf)
mkdir -p "$W/loras"
LONG=${ENGINE_BENCH_LONG:-900}
OUT=${ENGINE_BENCH_TOKENS:-64}
MIX=${ENGINE_BENCH_MIX:-64}

say "# engine bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
if [ ! -f "$M" ] && [ -z "${ENGINE_BENCH_MODEL:-}" ]; then
  say "making $M"
  "$R" random-model --arch llama --preset tinyllama-1.1b -o "$M.tmp" --format gguf --type f16 >/dev/null && mv "$M.tmp" "$M" || { fail "random-model"; exit 1; }
fi
for i in $(seq 0 63); do
  f=$W/loras/a$i.gguf
  [ -f "$f" ] || "$R" random-adapter -m "$M" --rank 16 --std 0.01 --seed $((i + 1)) -o "$f" --format gguf >/dev/null 2>&1 || { fail "random-adapter $i"; exit 1; }
done
[ -f "$W/router.gguf" ] || "$R" random-adapter -m "$M" --rank 16 --std 0.01 --seed 999 -o "$W/router.gguf" --format gguf >/dev/null 2>&1

# the requests: prompt ids drawn once, each request its own 3 distinct adapters
node -e '
  const [n, dir, out] = [Number(process.argv[1]), process.argv[2], Number(process.argv[3])];
  let x = 7; const rnd = k => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return (x >>> 8) % k; };
  const fs = require("fs"); let plain = "", lora = "";
  for (let i = 0; i < n; i++) {
    const prompt = [1]; while (prompt.length < 16) prompt.push(3 + rnd(250));
    const pick = []; while (pick.length < 3) { const a = rnd(64); if (!pick.includes(a)) pick.push(a); }
    const base = {id: i, prompt, max_tokens: out, temperature: 0, ignore_eos: true};
    plain += JSON.stringify(base) + "\n";
    lora += JSON.stringify({...base, lora: {mode: "router", adapters: pick.map(a => ({path: `${dir}/loras/a${a}.gguf`})),
                                            router: `${dir}/router.gguf`}}) + "\n";
  }
  fs.writeFileSync(`${dir}/plain.jsonl`, plain); fs.writeFileSync(`${dir}/router.jsonl`, lora);' "$N" "$W" "$OUT"

run_batch() { # name in.jsonl extra-args...: sets GEN and ALL (generated and overall tokens/s)
  local name=$1 in=$2; shift 2
  # the batch's own defaults (256 sequences at once, steps of 512 tokens)
  "$R" batch -m "$M" --in "$in" --out "$W/$name.out.jsonl" -t "$T" --quiet "$@" 2>"$W/$name.err"
  local line; line=$(grep '^batch: .* requests' "$W/$name.err")
  say "ramole batch $name: ${line#batch: }"
  read -r GEN ALL < <(sed -E 's/.*\(([0-9.]+) generated tokens\/s, ([0-9.]+) overall\).*/\1 \2/' <<<"$line")
}
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "## 1. $N requests ($OUT tokens out), router over 3 of 64 rank-16 adapters (f16 in memory), against no adapters"
# plain, router, router, plain: a machine whose load drifts during the run
# weighs on both sides alike; the figures are the means of the two runs
run_batch plain "$W/plain.jsonl"; gp1=$GEN; ap1=$ALL
run_batch router "$W/router.jsonl" --lora-type f16 --max-adapters 3; gr1=$GEN; ar1=$ALL
run_batch router "$W/router.jsonl" --lora-type f16 --max-adapters 3; gr2=$GEN; ar2=$ALL
run_batch plain "$W/plain.jsonl"; gp2=$GEN; ap2=$ALL
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (a + b) / 2 }'; }
gen_plain=$(mean "$gp1" "$gp2"); all_plain=$(mean "$ap1" "$ap2")
gen_lora=$(mean "$gr1" "$gr2"); all_lora=$(mean "$ar1" "$ar2")
say "| run | generated tok/s | overall tok/s |"
say "|---|---|---|"
say "| no adapters | $gen_plain | $all_plain |"
say "| router, 3 of 64 adapters | $gen_lora | $all_lora |"
say "| ratio | $(ratio "$gen_lora" "$gen_plain") | $(ratio "$all_lora" "$all_plain") |"

if [ "$PEER" -gt 0 ]; then
  say "## 2. llama.cpp, one adapter set after another ($PEER sequences, mixture of 3 of 64)"
  peer=$(node bench/llamacpp/mixed_lora.mjs -m "$M" --adapters "$(ls "$W"/loras/a*.gguf | paste -sd,)" --seqs "$PEER" --k 3 \
         --prompt 16 --decode "$OUT" -t "$T" 2>"$W/peer.err")
  if [ -n "$peer" ]; then
    say "llama.cpp: $peer"
    peer_all=$(node -e 'console.log(JSON.parse(process.argv[1]).overall_tps)' "$peer")
    say "ramole router overall $all_lora tok/s / llama.cpp overall $peer_all tok/s = $(ratio "$all_lora" "$peer_all")x"
  else
    skip "llama.cpp peer: $(head -c 200 "$W/peer.err")"
  fi
fi

say "## 3. peak RSS, paged against contiguous KV ($MIX requests, every 8th with a $LONG-token prompt, 8 at once)"
LONG=$LONG MIX=$MIX node -e '
  const fs = require("fs"); let s = "";
  for (let i = 0; i < Number(process.env.MIX); i++) {
    const n = i % 8 === 0 ? Number(process.env.LONG) : 16; const prompt = [1]; while (prompt.length < n) prompt.push(3 + (i * 7 + prompt.length * 13) % 250);
    s += JSON.stringify({id: i, prompt, max_tokens: 16, temperature: 0, ignore_eos: true}) + "\n";
  }
  fs.writeFileSync(process.argv[1], s);' "$W/mix.jsonl"
CTX=$((LONG + 32))
rss() { /usr/bin/time -f %M "$R" batch -m "$M" --in "$W/mix.jsonl" --out "$W/mix.out" -t "$T" --max-seqs 8 --ctx $CTX --quiet "$@" 2>&1 >/dev/null | tail -1; }
rss_paged=$(rss --kv-block 16)
rss_contig=$(rss --kv-block $CTX)
say "| KV layout | peak RSS (MiB) |"
say "|---|---|"
say "| paged, blocks of 16 | $((rss_paged / 1024)) |"
say "| contiguous (one block of $CTX per sequence) | $((rss_contig / 1024)) |"
say "difference: $(((rss_contig - rss_paged) / 1024)) MiB"

say "## 4. attention through the block table, $LONG-token prompt"
b16=$("$R" bench -m "$M" -t "$T" --prompt "$LONG" --decode 32 --kv-block 16 2>/dev/null)
bct=$("$R" bench -m "$M" -t "$T" --prompt "$LONG" --decode 32 --kv-block $((LONG + 33)) 2>/dev/null)
say "paged: $b16"
say "contiguous: $bct"
p16=$(node -e 'const a=JSON.parse(process.argv[1]);console.log(a.prefill_tps, a.decode_tps)' "$b16")
pct=$(node -e 'const a=JSON.parse(process.argv[1]);console.log(a.prefill_tps, a.decode_tps)' "$bct")
read -r pf16 dc16 <<<"$p16"; read -r pfct dcct <<<"$pct"
say "paged / contiguous: prefill $(ratio "$pf16" "$pfct"), decode $(ratio "$dc16" "$dcct")"
