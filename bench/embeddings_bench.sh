#!/usr/bin/env bash
# bench/embeddings_bench.sh — POST /v1/embeddings of 64 inputs in one request
# (bench/embeddings_load.mjs) against `ramole serve` on the world's base with
# a fresh SQLite registry whose embedder has the world's projection.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.bash
R=${BUILD:-build}/ramole
T=$(mktemp -d "${TMPDIR:-/tmp}/ramole-embed-bench.XXXXXX")
trap 'serve_stop; rm -rf "$T"' EXIT
$R registry init -m world/base --projection world/projection.safetensors --registry "sqlite:$T/reg.db" >/dev/null 2>&1 || exit 1
serve_start "$T/out" -m world/base --registry "sqlite:$T/reg.db" -t "${EMBED_BENCH_THREADS:-2}" || exit 1
node bench/embeddings_load.mjs "http://127.0.0.1:$PORT"
