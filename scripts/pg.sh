#!/usr/bin/env bash
# scripts/pg.sh — a throw-away PostgreSQL 15 server for the registry's tests.
#   bash scripts/pg.sh start   initdb (first time) into $RAMOLE_PG_DIR, start it on a
#                              Unix socket only, create database "ramole";
#                              prints the URL to use as RAMOLE_TEST_PG
#   bash scripts/pg.sh url     prints that URL
#   bash scripts/pg.sh stop    stops the server (the data folder stays)
#   bash scripts/pg.sh clean   stops it and removes its folder
# The folder (RAMOLE_PG_DIR) defaults to /tmp/ramole-pg-HASH, one per checkout:
# the postgres user must reach it, and a checkout under /root it cannot.
# PostgreSQL refuses to run as root, so under root the server runs as
# Debian's `postgres` user. Authentication is trust, on the socket only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DIR=${RAMOLE_PG_DIR:-/tmp/ramole-pg-$(printf '%s' "$PWD" | md5sum | cut -c1-10)}
DATA=$DIR/data
SOCK=$DIR/sock
URL="postgresql:///ramole?host=$SOCK&user=postgres"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    [ -x "$BIN/initdb" ] || { echo "pg.sh: $BIN/initdb not found (bash scripts/deps.sh installs postgresql-15)" >&2; exit 1; }
    mkdir -p "$DIR" "$SOCK"
    [ "$(id -u)" -eq 0 ] && chown postgres "$DIR" "$SOCK"
    if [ ! -f "$DATA/PG_VERSION" ]; then
      as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync -E UTF8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 30 \
        -o "-c listen_addresses='' -c unix_socket_directories='$SOCK' -c fsync=on -c max_connections=200" start >/dev/null \
        || { tail -20 "$DIR/server.log" >&2; exit 1; }
    fi
    as_pg "$BIN/psql" -h "$SOCK" -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname = 'ramole'" | grep -q 1 \
      || as_pg "$BIN/createdb" -h "$SOCK" -U postgres ramole
    echo "$URL"
    ;;
  url) echo "$URL" ;;
  stop)
    if [ -f "$DATA/PG_VERSION" ]; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true; fi
    ;;
  clean)
    bash "$0" stop
    rm -rf "$DIR"
    ;;
  *) echo "usage: bash scripts/pg.sh start|url|stop|clean" >&2; exit 2 ;;
esac
