#!/usr/bin/env bash
# MLflow's own client (the full `mlflow` package, in target/bench/mlflow-venv) driving modelreg
# and `mlflow server` 3.17, each on its own fresh database of the same Postgres, in one run:
# log_batch throughput (1,000 metrics per call, one client), get_metric_history of 100,000
# points, and the registry pairs (create_model_version or register_model, each with an
# alias). MLflow's server proxies artifacts (--artifacts-destination), as modelreg does, so
# both receive the model files over HTTP. One JSON line per measure (bench/mlflow_client.py),
# then the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
OUT=target/bench
SECS=${BENCH_SECONDS:-10}
MODELREG_ADDR=127.0.0.1:18095
MLFLOW_PORT=18096
mkdir -p "$OUT"
cargo build --release --locked --bin modelreg >&2
BIN=$PWD/target/release/modelreg
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
fresh_db() { psql "$PG/postgres" -qc "drop database if exists $1 with (force)" -c "create database $1" >/dev/null; }
wait_http() { for _ in $(seq 1 "$2"); do curl -sf -o /dev/null "$1" && return 0; sleep 1; done; echo "$1 did not answer" >&2; exit 1; }

VENV=$OUT/mlflow-venv
if [ ! -x "$VENV/bin/mlflow" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'mlflow>=3.17,<3.18' psycopg2-binary aiohttp >&2
fi
RESULTS=$OUT/mlflow-client.jsonl
: > "$RESULTS"

fresh_db modelreg_mlflow_bench
dir=$(mktemp -d)
(cd "$dir" && exec env RUST_LOG=warn MODELREG_LISTEN=$MODELREG_ADDR \
    MODELREG_DATABASE_URL="$PG/modelreg_mlflow_bench" "$BIN" serve) > "$OUT/modelreg-mlflow.log" 2>&1 &
pids+=("$!")
wait_http "http://$MODELREG_ADDR/readyz" 30
"$VENV/bin/python" bench/mlflow_client.py --base "http://$MODELREG_ADDR" --label modelreg --seconds "$SECS" | tee -a "$RESULTS"

fresh_db mlflow_client_bench
"$VENV/bin/mlflow" server --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_client_bench" \
    --artifacts-destination "$OUT/mlflow-artifacts" --host 127.0.0.1 --port $MLFLOW_PORT > "$OUT/mlflow-server.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 120
"$VENV/bin/python" bench/mlflow_client.py --base "http://127.0.0.1:$MLFLOW_PORT" --label mlflow --seconds "$SECS" | tee -a "$RESULTS"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["server"], r["measure"]): r for r in rows}
lb = by[("modelreg", "log_batch")]["points_per_second"] / by[("mlflow", "log_batch")]["points_per_second"]
gh = by[("mlflow", "get_metric_history_100k")]["median_ms"] / by[("modelreg", "get_metric_history_100k")]["median_ms"]
print(f"log_batch points/s, modelreg / MLflow: {lb:.2f}x")
print(f"get_metric_history 100k, MLflow time / modelreg time: {gh:.2f}x")
lbh = by[("modelreg", "log_batch_http")]["points_per_second"] / by[("mlflow", "log_batch_http")]["points_per_second"]
ghh = by[("mlflow", "get_metric_history_100k_http")]["median_ms"] / by[("modelreg", "get_metric_history_100k_http")]["median_ms"]
print(f"plain HTTP: log-batch points/s {lbh:.2f}x; get-history 100k {ghh:.2f}x")
reg = by[("modelreg", "create_model_version_and_alias")]["per_second"] / by[("mlflow", "create_model_version_and_alias")]["per_second"]
print(f"create_model_version + set alias per second, modelreg / MLflow: {reg:.2f}x")
rm = by[("modelreg", "register_model_and_alias")]["per_second"] / by[("mlflow", "register_model_and_alias")]["per_second"]
print(f"register_model + set alias per second, modelreg / MLflow: {rm:.2f}x")
PY
# The client's own floor: building one 1,000-metric log_batch body, parsing 100,000 points.
"$VENV/bin/python" - <<'PY'
import json, time
from mlflow.entities import Metric
from mlflow.protos.service_pb2 import GetMetricHistory, LogBatch
from mlflow.utils.proto_json_utils import message_to_json, parse_dict
t = time.perf_counter()
for _ in range(20):
    message_to_json(LogBatch(run_id="x", metrics=[Metric("k", 1.0 / (i + 1), 1, i).to_proto() for i in range(1000)]))
build = (time.perf_counter() - t) / 20 * 1000
page = json.dumps({"metrics": [{"key": "k", "value": s / 1e6, "timestamp": 1, "step": s} for s in range(25_000)]})
t = time.perf_counter()
for _ in range(4):
    r = GetMetricHistory.Response()
    parse_dict(json.loads(page), r)
    [Metric.from_proto(m) for m in r.metrics]
print(f"client floor: {build:.1f} ms to build a 1,000-metric batch, {(time.perf_counter() - t) * 1000:.0f} ms to parse 100,000 points")
PY
rm -rf "$dir"
for d in modelreg_mlflow_bench mlflow_client_bench; do
    psql "$PG/postgres" -qc "drop database if exists $d with (force)" >/dev/null
done
