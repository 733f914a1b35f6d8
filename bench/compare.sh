#!/usr/bin/env bash
# One benchmark run on this machine, everything side by side: modelreg on Postgres, the bare
# database with the same table shapes, a do-nothing axum server (the HTTP ceiling), and an
# MLflow server on the same Postgres. Prints one table (bench/report.py) and leaves the raw
# JSON lines in target/bench/results.jsonl. Every load is bounded and targets 127.0.0.1 only.
#
#   bash bench/compare.sh                 # BENCH_SECONDS=10 BENCH_CLIENTS=8 by default
#   BENCH_SKIP_MLFLOW=1 bash bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
SECS=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-8}
OUT=target/bench
MR_ADDR=127.0.0.1:8181
NOOP_ADDR=127.0.0.1:8190
MLFLOW_PORT=5005
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_http() { # url, seconds
    for _ in $(seq 1 "$(( $2 * 10 ))"); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "FATAL: $1 did not come up" >&2; return 1
}
fresh_db() { psql "$PG/postgres" -qc "drop database if exists $1 with (force)" -c "create database $1" >/dev/null; }

echo "== build" >&2
cargo build --release --locked --bin modelreg --example loadgen --example noop_server >&2
LOADGEN=target/release/examples/loadgen

echo "== machine" >&2
{ nproc; free -g | awk '/Mem/ {print $2 " GiB"}'; psql "$PG/postgres" -Atc 'show server_version'; } >&2

echo "== modelreg on Postgres" >&2
fresh_db modelreg_bench
rm -rf "$OUT/artifacts"
MODELREG_LISTEN=$MR_ADDR MODELREG_DATABASE_URL=$PG/modelreg_bench MODELREG_ARTIFACTS_URL=file://$OUT/artifacts \
    MODELREG_DB_MAX_CONNECTIONS=16 MODELREG_WEBHOOK_ALLOW_PRIVATE=true RUST_LOG=warn target/release/modelreg serve 2> "$OUT/modelreg.log" &
MR_PID=$!; pids+=("$MR_PID")
wait_http "http://$MR_ADDR/readyz" 30
$LOADGEN setup --base "http://$MR_ADDR" >&2
run() { $LOADGEN http "$1" --base "http://$MR_ADDR" --server-pid "$MR_PID" --seconds "$SECS" "${@:2}" | tee -a "$RESULTS" >&2; }
run register --clients "$CLIENTS"
run register_8models --clients "$CLIENTS"
run promote10 --clients "$CLIENTS"
run promote10k --clients "$CLIENTS"
run ingest --clients "$CLIENTS" --max-requests 400
run get_version --clients "$CLIENTS"
$LOADGEN http get_version --base "http://$MR_ADDR" --server-pid "$MR_PID" --seconds "$SECS" --clients 1 \
    | sed 's/"get_version"/"get_version_1client"/' | tee -a "$RESULTS" >&2
run buckets --clients "$CLIENTS"
$LOADGEN http buckets --base "http://$MR_ADDR" --server-pid "$MR_PID" --seconds "$SECS" --clients 1 \
    | sed 's/"buckets"/"buckets_1client"/' | tee -a "$RESULTS" >&2
run raw100k --clients 1 --max-requests 50
run overlay --clients "$CLIENTS"
run best --clients "$CLIENTS"
# Last: the webhooks it subscribes (and deletes at the end) would load the runs above with
# deliveries. The "vs bare" column of its rows is the same load run just before, without them.
$LOADGEN webhooks --base "http://$MR_ADDR" --server-pid "$MR_PID" --seconds "$SECS" --clients "$CLIENTS" \
    | tee -a "$RESULTS" >&2
kill "$MR_PID"; wait "$MR_PID" 2>/dev/null || true
# The outbox's cost on the write path alone: the same rates with this process delivering
# nothing (as a replica with MODELREG_WEBHOOK_DISPATCHER=false, another replica delivering).
MODELREG_LISTEN=$MR_ADDR MODELREG_DATABASE_URL=$PG/modelreg_bench MODELREG_ARTIFACTS_URL=file://$OUT/artifacts \
    MODELREG_DB_MAX_CONNECTIONS=16 MODELREG_WEBHOOK_ALLOW_PRIVATE=true MODELREG_WEBHOOK_DISPATCHER=false RUST_LOG=warn target/release/modelreg serve 2>> "$OUT/modelreg.log" &
MR_PID=$!; pids+=("$MR_PID")
wait_http "http://$MR_ADDR/readyz" 30
$LOADGEN webhooks --base "http://$MR_ADDR" --server-pid "$MR_PID" --seconds "$SECS" --clients "$CLIENTS" --rates-only \
    | tee -a "$RESULTS" >&2
kill "$MR_PID"

echo "== bare Postgres, same tables" >&2
fresh_db modelreg_bench_bare
bare() { $LOADGEN bare "$1" --database-url "$PG/modelreg_bench_bare" --seconds "$SECS" "${@:2}" | tee -a "$RESULTS" >&2; }
bare copy
bare unnest --clients "$CLIENTS" --max-requests 400
bare tx --clients "$CLIENTS"
bare select --clients "$CLIENTS"
bare bucket

echo "== do-nothing axum" >&2
target/release/examples/noop_server "$NOOP_ADDR" 2>/dev/null &
NOOP_PID=$!; pids+=("$NOOP_PID")
wait_http "http://$NOOP_ADDR/" 10
$LOADGEN http noop --base "http://$NOOP_ADDR" --server-pid "$NOOP_PID" --seconds "$SECS" --clients "$CLIENTS" | tee -a "$RESULTS" >&2
kill "$NOOP_PID"

if [ -z "${BENCH_SKIP_MLFLOW:-}" ]; then
    echo "== MLflow on the same Postgres" >&2
    VENV=$OUT/mlflow-venv
    if [ ! -x "$VENV/bin/mlflow" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q 'mlflow>=3.17,<3.18' psycopg2-binary aiohttp >&2
    fi
    fresh_db mlflow_bench
    "$VENV/bin/mlflow" server --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_bench" \
        --default-artifact-root "$OUT/mlflow-artifacts" --host 127.0.0.1 --port $MLFLOW_PORT > "$OUT/mlflow.log" 2>&1 &
    pids+=("$!")
    wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 120
    "$VENV/bin/python" bench/mlflow_bench.py --base "http://127.0.0.1:$MLFLOW_PORT" --clients "$CLIENTS" \
        --seconds "$SECS" | tee -a "$RESULTS" >&2
fi

python3 bench/report.py "$RESULTS"
