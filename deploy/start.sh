#!/usr/bin/env bash
# deploy/start.sh — two `ramole serve` processes on one registry (PostgreSQL,
# so that an upload through either reaches both) behind HAProxy on loopback.
#   deploy/start.sh start RUN_DIR --registry URL -m MODEL [--port 8080] [SERVE OPTIONS...]
#       starts server a on PORT+1, server b on PORT+2 and HAProxy on PORT;
#       pids and logs go to RUN_DIR; returns once the service answers /health
#   deploy/start.sh stop RUN_DIR
#       SIGTERM to each (the servers finish their in-flight requests)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RAMOLE=${RAMOLE_BIN:-$here/../build/ramole}
cmd=${1:-}; run=${2:-}
[ -n "$cmd" ] && [ -n "$run" ] || { sed -n 2,8p "$0" >&2; exit 2; }
shift 2

case "$cmd" in
  start)
    port=8080; args=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --port) port=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
      esac
    done
    mkdir -p "$run"
    for s in a b; do
      p=$((port + $([ $s = a ] && echo 1 || echo 2)))
      "$RAMOLE" serve "${args[@]}" --port "$p" >"$run/$s.log" 2>&1 &
      echo $! >"$run/$s.pid"
    done
    RAMOLE_LB_PORT=$port RAMOLE_A_PORT=$((port + 1)) RAMOLE_B_PORT=$((port + 2)) \
      haproxy -f "$here/haproxy.cfg" -db >"$run/haproxy.log" 2>&1 &
    echo $! >"$run/haproxy.pid"
    for _ in $(seq 1 100); do
      a=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + 1))/health" || true)
      b=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + 2))/health" || true)
      l=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
      if [ "$a$b$l" = 200200200 ]; then echo "serving on http://127.0.0.1:$port (a :$((port + 1)), b :$((port + 2)))"; exit 0; fi
      sleep 0.1
    done
    echo "start.sh: the service did not come up; see $run/*.log" >&2
    "$0" stop "$run"
    exit 1
    ;;
  stop)
    for s in haproxy a b; do
      [ -f "$run/$s.pid" ] && kill -TERM "$(cat "$run/$s.pid")" 2>/dev/null || true
    done
    for s in a b haproxy; do
      if [ -f "$run/$s.pid" ]; then
        pid=$(cat "$run/$s.pid")
        # gone, or a zombie nobody reaps (its parent, this script's first run, has exited)
        for _ in $(seq 1 100); do
          st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
          [ -z "$st" ] || [ "${st#Z}" != "$st" ] && break
          sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$run/$s.pid"
      fi
    done
    ;;
  *) sed -n 2,8p "$0" >&2; exit 2 ;;
esac
