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
# The registry's suite again on a real PostgreSQL server, started here and
# stopped after (scripts/deps.sh installs postgresql-15).
if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
  if url=$(bash scripts/pg.sh start 2>"$RAMOLE_TEST_TMP/pg.err"); then
    RAMOLE_TEST_PG="$url" RAMOLE_TEST_TMP="$RAMOLE_TEST_TMP/pg" "$BUILD/ramole_tests" registry 2>&1 |
      sed -e 's/^PASS /PASS pg:/' -e 's/^FAIL /FAIL pg:/' | tee -a "$log"
    bash scripts/pg.sh stop
  else
    echo "FAIL pg: scripts/pg.sh start: $(tail -c 300 "$RAMOLE_TEST_TMP/pg.err")" | tee -a "$log"
  fi
else
  echo "SKIP pg: PostgreSQL 15 is not installed (bash scripts/deps.sh)"
fi
for t in tests/cli/*.sh; do
  [ -e "$t" ] || continue
  bash "$t" 2>&1 | tee -a "$log"
done

passed=$(grep -c '^PASS ' "$log")
failed=$(grep -c '^FAIL ' "$log")
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
