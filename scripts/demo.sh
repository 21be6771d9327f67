#!/usr/bin/env bash
# scripts/demo.sh — ramole's main job (`make demo`): serve a world's base
# with a fresh adapter registry, upload every task adapter over HTTP, send a
# dozen tasks' requests at once with the official `openai` client and show
# what each retrieved, how the router weighed it, and the answer against the
# expected one (scripts/demo.mjs does the talking).
#
#   bash scripts/demo.sh [WORLD] [--require-approval] [--json OUT] [--requests N] [-t THREADS]
#
# WORLD (default world/) is laid out as docs/ARCHITECTURE.md "The demo"
# says: base/, adapters/TASK/, router/, projection.safetensors, tasks.json,
# tasks/TASK/{train,test}.jsonl. The registry, its blobs and the server's
# log live in a temporary folder; the server listens on a free loopback
# port. Whatever happens (an error, Ctrl-C, SIGTERM), the trap stops the
# server and removes the folder. Exit status: 0 when every request was
# answered (right or wrong), 1 otherwise, 2 for bad arguments or a world
# that lacks a file.
set -uo pipefail
cd "$(dirname "$0")/.."

R=${RAMOLE_BIN:-build/ramole}
WORLD=world
APPROVAL=()
CLIENT_ARGS=()
THREADS=()
die() { echo "demo: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --require-approval) APPROVAL=(--require-approval) ;;
    --json|--requests) [ $# -ge 2 ] || die "$1 needs a value"; CLIENT_ARGS+=("$1" "$2"); shift ;;
    -t) [ $# -ge 2 ] || die "-t needs a value"; THREADS=(-t "$2"); shift ;;
    -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) WORLD=${1%/} ;;
  esac
  shift
done

[ -x "$R" ] || die "$R is missing: build it first (make -j2)"
command -v node >/dev/null || die "node is missing (bash scripts/deps.sh)"
[ -d .cache/npm/node_modules/openai ] || die "the openai npm package is missing (bash scripts/deps.sh)"
[ -d "$WORLD" ] || die "$WORLD: no such world folder (make world builds it; or give the folder: make demo WORLD=DIR)"
for f in base/config.json tasks.json projection.safetensors router/adapter_config.json; do
  [ -f "$WORLD/$f" ] || die "$WORLD/$f: missing (the world is not complete)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ramole-demo.XXXXXX") || die "cannot make a temporary folder"
SPID="" CPID=""
# Everything is stopped and removed before anything is printed: a reader
# that went away (`make demo | head`) must not cut the cleanup short.
cleanup() {
  local stopped=""
  [ -n "$CPID" ] && kill -TERM "$CPID" 2>/dev/null
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    stopped=1
  fi
  rm -rf "$TMP"
  [ -n "$stopped" ] && echo "server stopped" >&2
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

REG="sqlite:$TMP/registry.db"
if ! "$R" registry init --registry "$REG" -m "$WORLD/base" --projection "$WORLD/projection.safetensors" \
     --router "$WORLD/router" "${APPROVAL[@]}" >"$TMP/init.log" 2>&1; then
  echo "demo: ramole registry init failed:" >&2; cat "$TMP/init.log" >&2; exit 1
fi

# --port 0: the kernel picks a free port, which the server prints
: >"$TMP/serve.out"
"$R" serve -m "$WORLD/base" --registry "$REG" --port 0 --name "$(basename "$WORLD")" --max-seqs 16 --grace 2 \
  "${THREADS[@]}" >"$TMP/serve.out" 2>"$TMP/serve.log" &
SPID=$!
URL=""
for _ in $(seq 1 600); do
  URL=$(sed -n 's|^listening on \(http://127.0.0.1:[0-9]*\)$|\1|p' "$TMP/serve.out")
  [ -n "$URL" ] && curl -sf "$URL/health" >/dev/null 2>&1 && break
  kill -0 "$SPID" 2>/dev/null || break
  URL=""
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "demo: ramole serve did not come up:" >&2; tail -n 20 "$TMP/serve.out" "$TMP/serve.log" >&2; exit 1
fi
echo "ramole serve (pid $SPID) on $URL: base $WORLD/base, registry $REG"

# in the background, so that a signal reaches the trap at once
node scripts/demo.mjs "$URL" "$WORLD" "${CLIENT_ARGS[@]}" &
CPID=$!
wait "$CPID"
rc=$?
CPID=""
if [ $rc -ne 0 ] && ! kill -0 "$SPID" 2>/dev/null; then
  echo "demo: the server died; its log:" >&2; tail -n 20 "$TMP/serve.log" >&2
fi
exit $rc
