#!/usr/bin/env bash
# 1,000 idle event streams on a release build (Postgres): the server's resident memory before
# and with them open, and the time from a model's creation to its event on the first, the
# median and the last stream (bench/streams.py). BENCH_STREAMS sets the count.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=modelreg_streams_bench
ADDR=127.0.0.1:18099
N=${BENCH_STREAMS:-1000}
cargo build --release --locked --bin modelreg >&2
ulimit -n 8192 2>/dev/null || true
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
dir=$(mktemp -d)
bin=$PWD/target/release/modelreg
(cd "$dir" && exec env RUST_LOG=warn MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL="$PG/$DB" \
    MODELREG_EVENT_STREAMS_PER_TOKEN=$((N + 10)) MODELREG_MAX_CONNECTIONS=$((N + 100)) \
    "$bin" serve) > "$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
until curl -sf -o /dev/null "http://$ADDR/readyz"; do sleep 0.05; done
for round in 1 2 3; do
    printf 'round-%s ' "$round"
    python3 bench/streams.py --base "http://$ADDR" --pid "$pid" --streams "$N"
    sleep 2
done
