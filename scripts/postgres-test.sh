#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on loopback for the store and server tests.
#
#   eval "$(bash scripts/postgres-test.sh)"      # exports SLEEPTIME_TEST_POSTGRES_URL
#   bash scripts/postgres-test.sh stop           # stops the cluster it started
#
# Installs PostgreSQL from Debian's packages when it is missing (needs root), creates a
# cluster in a temporary directory owned by the `postgres` user, listens on 127.0.0.1 only
# (no Unix socket outside the cluster directory), and prints the export line on stdout.
# Everything else goes to stderr. Idempotent: a cluster already running from an earlier call
# (recorded in $STATE) is reused.
set -euo pipefail

PORT="${SLEEPTIME_PG_PORT:-55432}"
STATE="${SLEEPTIME_PG_STATE:-/tmp/sleeptime-pg}"
USER_NAME=sleeptime
DB_NAME=sleeptime
PASSWORD=sleeptime

log() { echo "postgres-test: $*" >&2; }

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$dir" ] && echo "$dir"
}

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = stop ]; then
    BIN="$(pg_bin)"
    if [ -n "$BIN" ] && [ -f "$STATE/data/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$STATE/data" -m fast stop >&2 || true
    fi
    exit 0
fi

BIN="$(pg_bin || true)"
if [ -z "$BIN" ]; then
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(pg_bin)"
fi
# The Debian package starts its own cluster on 5432; this script does not need it.

URL="postgres://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DB_NAME"

if [ -f "$STATE/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$STATE/data" status >/dev/null 2>&1; then
    log "reusing the cluster in $STATE/data on port $PORT"
else
    rm -rf "$STATE"
    mkdir -p "$STATE"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$STATE"; fi
    echo "$PASSWORD" >"$STATE/pw"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$STATE/pw"; fi
    as_pg "$BIN/initdb" -D "$STATE/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$STATE/pw" -E UTF8 >/dev/null
    as_pg "$BIN/pg_ctl" -D "$STATE/data" -l "$STATE/log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $STATE -c fsync=off -c max_connections=200" start >&2
    as_pg "$BIN/psql" -h "$STATE" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q >&2 <<SQL
CREATE ROLE $USER_NAME LOGIN PASSWORD '$PASSWORD' CREATEDB;
CREATE DATABASE $DB_NAME OWNER $USER_NAME;
SQL
    log "started a throwaway cluster in $STATE/data on 127.0.0.1:$PORT"
fi

echo "export SLEEPTIME_TEST_POSTGRES_URL='$URL'"
