#!/usr/bin/env bash
# MLflow 3 training code (bench/mlflow3_client.py: the sklearn quickstart with log_model,
# registration and loading; autolog of a fit; search_logged_models) against modelreg (release
# build) and `mlflow server` 3.17, each on its own fresh database of the same Postgres, in one
# run; then the ratios. MLflow's server proxies artifacts (--artifacts-destination), as
# modelreg does.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
OUT=target/bench
MODELREG_ADDR=127.0.0.1:18097
MLFLOW_PORT=18098
ARGS=${BENCH_ARGS:-}
mkdir -p "$OUT"
cargo build --release --locked --bin modelreg >&2
BIN=$PWD/target/release/modelreg
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
fresh_db() { psql "$PG/postgres" -qc "drop database if exists $1 with (force)" -c "create database $1" >/dev/null; }
wait_http() { for _ in $(seq 1 "$2"); do curl -sf -o /dev/null "$1" && return 0; sleep 1; done; echo "$1 did not answer" >&2; exit 1; }

VENV=$OUT/mlflow-venv
if ! "$VENV/bin/python" -c 'import mlflow, sklearn, pandas, psycopg2' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'mlflow>=3.17,<3.18' psycopg2-binary aiohttp scikit-learn pandas >&2
fi
RESULTS=$OUT/mlflow3-client.jsonl
: > "$RESULTS"

fresh_db modelreg_mlflow3_bench
dir=$(mktemp -d)
(cd "$dir" && exec env RUST_LOG=warn MODELREG_LISTEN=$MODELREG_ADDR \
    MODELREG_DATABASE_URL="$PG/modelreg_mlflow3_bench" "$BIN" serve) > "$OUT/modelreg-mlflow3.log" 2>&1 &
pids+=("$!")
wait_http "http://$MODELREG_ADDR/readyz" 30
# shellcheck disable=SC2086
"$VENV/bin/python" bench/mlflow3_client.py --base "http://$MODELREG_ADDR" --label modelreg $ARGS | tee -a "$RESULTS"

fresh_db mlflow3_client_bench
rm -rf "$OUT/mlflow3-artifacts"
"$VENV/bin/mlflow" server --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow3_client_bench" \
    --artifacts-destination "$OUT/mlflow3-artifacts" --host 127.0.0.1 --port $MLFLOW_PORT > "$OUT/mlflow3-server.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 120
# shellcheck disable=SC2086
"$VENV/bin/python" bench/mlflow3_client.py --base "http://127.0.0.1:$MLFLOW_PORT" --label mlflow $ARGS | tee -a "$RESULTS"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["server"], r["measure"]): r for r in rows}
for measure, unit in [("quickstart", "s"), ("autolog_fit", "s"), ("search_logged_models", "ms")]:
    m, f = by[("modelreg", measure)], by[("mlflow", measure)]
    print(f"{measure}: modelreg {m['median_' + unit]} {unit}, MLflow {f['median_' + unit]} {unit} "
          f"(median; MLflow time / modelreg time {f['median_' + unit] / m['median_' + unit]:.2f}x)")
PY
rm -rf "$dir"
for d in modelreg_mlflow3_bench mlflow3_client_bench; do
    psql "$PG/postgres" -qc "drop database if exists $d with (force)" >/dev/null
done
