#!/usr/bin/env bash
# tests/run.sh — the default suite: the C unit tests, then the command-line
# tests in tests/cli/*.sh. Each prints PASS/FAIL lines; the last line of
# this script is "N passed, N failed" over all of them.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export RAMOLE_BIN="$PWD/$BUILD/ramole"
export RAMOLE_TEST_TMP="$PWD/$BUILD/test-tmp"
rm -rf "$RAMOLE_TEST_TMP"; mkdir -p "$RAMOLE_TEST_TMP"
log="$RAMOLE_TEST_TMP/run.log"
: > "$log"

"$BUILD/ramole_tests" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
# a crash ends the suite without a FAIL line: count it as one
if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$log"; then
  echo "FAIL c suite: build/ramole_tests exited with status $rc" | tee -a "$log"
fi
for t in tests/cli/*.sh; do
  [ -e "$t" ] || continue
  bash "$t" 2>&1 | tee -a "$log"
done

passed=$(grep -c '^PASS ' "$log")
failed=$(grep -c '^FAIL ' "$log")
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
