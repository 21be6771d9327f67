# bench/lib.bash — helpers shared by the bench scripts (sourced, not run).
# Output lines: say (plain), skip ("skipped: ..."), fail ("FAILED: ...", sets FAILED=1);
# JSON and number formatting for the markdown tables.
FAILED=0
say()  { printf '%s\n' "$*"; }
skip() { printf 'skipped: %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*"; FAILED=1; }
json_num() { # json_num KEY <<< '{"KEY":1.5,...}'
  sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([-0-9.eE+]*\).*/\1/p" | head -1
}
json_str() { # json_str TEXT -> "TEXT" as a JSON string (backslashes, quotes and tabs escaped)
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}
ratio() { # ratio A B -> A/B with 2 decimals, or — when either is missing
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "—"; else printf "%.2f\n", a / b }'
}
fmt() { # fmt X [DECIMALS (2)] -> X rounded, or — when missing
  [ -n "$1" ] && awk -v x="$1" -v d="${2:-2}" 'BEGIN { printf "%.*f\n", d, x }' || echo "—"
}
pct() { [ -n "$1" ] && awk -v x="$1" 'BEGIN { printf "%.0f%%\n", 100 * x }' || echo "—"; }
maxf() { # maxf A B -> the larger (an empty A loses)
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "") print b; else if (b == "" || a + 0 >= b + 0) print a; else print b }'
}

# serve_port OUT PID: wait for `ramole serve` (pid PID, its stdout in OUT) to
# print its address; prints the port, or fails when it stops or never does.
serve_port() {
  local out=$1 pid=$2 port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$out")
    [ -n "$port" ] && { echo "$port"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# serve_start OUT ARGS...: `$R serve --port 0 ARGS` in the background, its
# stdout in OUT; sets SPID, and PORT once it listens (fails, naming the
# script, when it never does). serve_stop stops it; both suit a trap.
serve_start() {
  local out=$1
  shift
  $R serve --port 0 "$@" >"$out" 2>/dev/null &
  SPID=$!
  PORT=$(serve_port "$out" "$SPID") || { echo "$(basename "$0"): the server did not start" >&2; return 1; }
}
serve_stop() {
  [ -n "${SPID:-}" ] || return 0
  kill -TERM "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
