# tests/cli/lib.bash — helpers for command-line tests: each check prints
# "PASS name" or "FAIL name: why", as tests/run.sh counts them.
R=${RAMOLE_BIN:-build/ramole}
TMP=${RAMOLE_TEST_TMP:-build/test-tmp}/cli.$$
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

# expect_ok NAME CMD...: the command exits 0.
expect_ok() {
  local name=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$name"; else fail "$name" "exit $?: $(head -c 300 "$TMP/err")"; fi
}

# expect_error NAME NEEDLE CMD...: exits non-zero (not by a signal) and
# stderr contains NEEDLE.
expect_error() {
  local name=$1 needle=$2; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -eq 0 ]; then fail "$name" "exit 0, expected an error"
  elif [ $rc -ge 128 ]; then fail "$name" "crashed with signal $((rc - 128))"
  elif ! grep -qF -- "$needle" "$TMP/err"; then fail "$name" "stderr lacks '$needle': $(head -c 300 "$TMP/err")"
  else pass "$name"; fi
}
