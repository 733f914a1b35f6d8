#!/usr/bin/env bash
# Start-up time (exec to the first 200 from /readyz) and idle RSS of the release binary, on a
# fresh SQLite file and on a fresh Postgres database (first start runs the migrations), then
# again on the same Postgres database (already migrated).
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
ADDR=127.0.0.1:18090
cargo build --release --locked --bin modelreg >&2
BIN=$PWD/target/release/modelreg

measure() { # label, env assignments...
    local label=$1; shift
    local dir; dir=$(mktemp -d)
    local start end pid
    start=$(date +%s%N)
    (cd "$dir" && exec env "$@" RUST_LOG=warn MODELREG_LISTEN=$ADDR "$BIN" serve) > "$dir/log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "http://$ADDR/readyz"; do sleep 0.005; done
    end=$(date +%s%N)
    sleep 1
    echo "$label: ready after $(( (end - start) / 1000000 )) ms, idle RSS $(awk '/VmRSS/ {print $2}' /proc/$pid/status) KiB"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

measure "sqlite, new file"
psql "$PG/postgres" -qc "drop database if exists modelreg_startup with (force)" -c "create database modelreg_startup" >/dev/null
measure "postgres, new database" MODELREG_DATABASE_URL="$PG/modelreg_startup"
measure "postgres, migrated" MODELREG_DATABASE_URL="$PG/modelreg_startup"
psql "$PG/postgres" -qc "drop database modelreg_startup with (force)" >/dev/null
