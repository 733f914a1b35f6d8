#!/usr/bin/env bash
# Stage guards on a release build (Postgres):
#  1. one evaluation pass over 1,000 guards, each over a 10-minute window of a 1,000,000-point
#     series (10 versions' series, 100 guards on each), timed by examples/guard_pass.rs
#     directly on the store: wall time, the evaluator's CPU and Postgres's CPU per guard;
#  2. the time from a breaching batch's commit to the guard's rollback, period 5 s (the
#     server's own evaluator, 1,000 other guards removed first).
#
#   bash bench/guards.sh        # BENCH_GUARDS, BENCH_POINTS, BENCH_VERSIONS to change the sizes
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=modelreg_guards_bench
ADDR=127.0.0.1:18097
BASE=http://$ADDR
cargo build --release --locked --bin modelreg --example guard_pass >&2
bin=$PWD/target/release/modelreg
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
dir=$(mktemp -d)
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; pid=; }
trap 'stop; rm -rf "$dir"' EXIT
serve() { # guards on or off
    env RUST_LOG=warn MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL="$PG/$DB" MODELREG_GUARDS="$1" \
        MODELREG_ARTIFACTS_URL="file://$dir/artifacts" "$bin" serve >> "$dir/server.log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "$BASE/readyz"; do sleep 0.05; done
}
serve false
python3 bench/guards.py setup --base "$BASE" --versions "${BENCH_VERSIONS:-10}" \
    --points "${BENCH_POINTS:-1000000}" --guards "${BENCH_GUARDS:-1000}"
stop
sleep 1
psql "$PG/$DB" -qc "vacuum analyze" >/dev/null
echo "## one pass over every guard (3 rounds)"
target/release/examples/guard_pass "$PG/$DB" "${BENCH_GUARDS:-1000}" 3
echo "## breach to rollback"
psql "$PG/$DB" -qc "delete from stage_guards" >/dev/null
serve true
python3 bench/guards.py latency --base "$BASE" --period 5 --trials 20
