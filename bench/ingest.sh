#!/usr/bin/env bash
# Metric batches of 1, 100, 1,000 and 10,000 points, from one client (a training loop logging as
# it goes) and from 8, on a fresh Postgres database and on a new SQLite file: one JSON line per
# run from `loadgen http ingest` (throughput in points/s, p50/p99 per request).
#
#   bash bench/ingest.sh                                   # this tree
#   MODELREG_BIN=target/bench/scale/modelreg-base bash bench/ingest.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
ADDR=127.0.0.1:18091
# MODELREG_BIN runs another build (say, an earlier release's) under the same load generator.
if [ -z "${MODELREG_BIN:-}" ]; then
    cargo build --release --locked --bin modelreg --example loadgen >&2
fi
BIN=$(realpath "${MODELREG_BIN:-target/release/modelreg}")
LOADGEN=$PWD/target/release/examples/loadgen

run() { # label, env assignments...
    local label=$1; shift
    local dir; dir=$(mktemp -d)
    (cd "$dir" && exec env "$@" RUST_LOG=warn MODELREG_LISTEN=$ADDR "$BIN" serve) > "$dir/log" 2>&1 &
    local pid=$!
    until curl -sf -o /dev/null "http://$ADDR/readyz"; do sleep 0.05; done
    curl -sf -o /dev/null -XPOST "http://$ADDR/api/v1/models" -H 'content-type: application/json' -d '{"name":"bench-metrics"}'
    curl -sf -o /dev/null -XPOST "http://$ADDR/api/v1/models/bench-metrics/versions" -H 'content-type: application/json' -d '{}'
    for clients in 1 8; do
        for batch in 1 100 1000 10000; do
            printf '%s clients=%s batch=%s ' "$label" "$clients" "$batch"
            "$LOADGEN" http ingest --base "http://$ADDR" --clients "$clients" --batch "$batch" \
                --seconds 5 --max-requests 20000 --server-pid "$pid"
        done
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

psql "$PG/postgres" -qc "drop database if exists modelreg_ingest with (force)" -c "create database modelreg_ingest" >/dev/null
run postgres MODELREG_DATABASE_URL="$PG/modelreg_ingest"
psql "$PG/postgres" -qc "drop database if exists modelreg_ingest with (force)" >/dev/null
run sqlite
