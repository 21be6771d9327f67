#!/usr/bin/env bash
# scripts/peers.sh — install, idempotently, the benchmark peer: llama.cpp as shipped
# prebuilt by the npm package node-llama-cpp (CPU binaries for linux-x64, one shared
# library per x86 level: sse42, sandybridge, ivybridge, haswell (AVX2+FMA+F16C), skylakex,
# cannonlake, cascadelake, cooperlake, icelake, alderlake, sapphirerapids, zen4, piledriver,
# x64; ggml's backend loader picks the best one the CPU supports at run time).
#
# Only the npm registry is used: node-llama-cpp's postinstall (which may download or
# build llama.cpp from source) is NOT run (--ignore-scripts), the CUDA/Vulkan optional
# packages are not installed (--omit=optional; the CPU package is named explicitly),
# and bench/llamacpp/bench.mjs loads it with gpu:false, build:"never", skipDownload:true.
#
# It goes into its own ignored npm prefix (.cache/npm-llamacpp, override with
# RAMOLE_PEER_NPM_DIR) so that `npm install` runs on .cache/npm (scripts/deps.sh) never
# reify node-llama-cpp's ~14 optional GPU packages and this one never prunes theirs.
#
#   bash scripts/peers.sh           install if missing, check it loads, print where it is
#   bash scripts/peers.sh --check   only check (exit 1 if missing or not loadable)
set -euo pipefail
cd "$(dirname "$0")/.."

NLC_VERSION=3.22.1          # llama.cpp tag v0.5.0 (ggml-org/llama.cpp), see llama/llama.cpp.info.json
DIR=${RAMOLE_PEER_NPM_DIR:-.cache/npm-llamacpp}
CHECK_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK_ONLY=1 ;;
    *) echo "peers.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
export NODE_LLAMA_CPP_GPU=false

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "peers.sh: skipped: the llama.cpp peer is set up for linux x86_64 only (this is $(uname -s)-$(uname -m))"
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "peers.sh: skipped: node/npm not found (scripts/deps.sh installs them)"
  exit 0
fi

installed_version() {
  node -e 'try{console.log(require(process.argv[1]).version)}catch{console.log("")}' \
    "$PWD/$DIR/node_modules/$1/package.json"
}

if [ "$(installed_version node-llama-cpp)" != "$NLC_VERSION" ] ||
   [ "$(installed_version @node-llama-cpp/linux-x64)" != "$NLC_VERSION" ]; then
  if [ "$CHECK_ONLY" = 1 ]; then
    echo "peers.sh: node-llama-cpp@$NLC_VERSION is not installed in $DIR" >&2
    exit 1
  fi
  echo "peers.sh: npm install node-llama-cpp@$NLC_VERSION @node-llama-cpp/linux-x64@$NLC_VERSION into $DIR"
  mkdir -p "$DIR"
  npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error --ignore-scripts --omit=optional \
    "node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/linux-x64@$NLC_VERSION" >/dev/null
fi

BINS="$DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
[ -f "$BINS/llama-addon.node" ] || { echo "peers.sh: $BINS/llama-addon.node missing" >&2; exit 1; }

# Load it the way the bench does (CPU only, never build, never download) and report which
# CPU variant ggml picked.
# (a file, not `node -e`: node-llama-cpp forks a test process that inherits execArgv)
info=$(RAMOLE_PEER_NPM_DIR="$DIR" node bench/llamacpp/bench.mjs --info) || {
  echo "peers.sh: node-llama-cpp is installed in $DIR but its prebuilt CPU binary does not load" >&2; exit 1; }
echo "peers.sh: llama.cpp peer ok: $info"
echo "peers.sh: binaries in $BINS"
echo "peers.sh: CPU variants shipped: $(ls "$BINS" | sed -n 's/^libggml-cpu-\(.*\)\.so$/\1/p' | tr '\n' ' ')"
