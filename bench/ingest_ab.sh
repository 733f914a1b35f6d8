#!/usr/bin/env bash
# Metric batches of 1, 100, 1,000 and 10,000 points from 1 and 8 clients, on Postgres and on
# SQLite, for two builds alternated (base, new, new, base per round) so that a drift in the
# machine's speed hits both alike: each run on a fresh database, ROUNDS rounds of SECS seconds.
# Prints one line per configuration: the median points/s and p50 of each build.
#
#   bash bench/ingest_ab.sh BASE_BIN NEW_BIN        # BENCH_ROUNDS=2 BENCH_SECONDS=4
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_BIN=$(realpath "$1")
NEW_BIN=$(realpath "$2")
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
ROUNDS=${BENCH_ROUNDS:-2}
SECS=${BENCH_SECONDS:-4}
ADDR=127.0.0.1:18094
LOADGEN=$PWD/target/release/examples/loadgen
OUT=target/bench/ingest_ab.jsonl
mkdir -p target/bench
: > "$OUT"
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; true' EXIT

one() { # build-label bin backend clients batch
    local dir; dir=$(mktemp -d)
    local url=()
    if [ "$3" = postgres ]; then
        psql "$PG/postgres" -qc "drop database if exists modelreg_ab with (force)" -c "create database modelreg_ab" >/dev/null 2>&1
        url=(MODELREG_DATABASE_URL="$PG/modelreg_ab")
    fi
    (cd "$dir" && exec env "${url[@]}" RUST_LOG=warn MODELREG_LISTEN=$ADDR "$2" serve) > "$dir/log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "http://$ADDR/readyz"; do sleep 0.05; done
    curl -sf -o /dev/null -XPOST "http://$ADDR/api/v1/models" -H 'content-type: application/json' -d '{"name":"bench-metrics"}'
    curl -sf -o /dev/null -XPOST "http://$ADDR/api/v1/models/bench-metrics/versions" -H 'content-type: application/json' -d '{}'
    "$LOADGEN" http ingest --base "http://$ADDR" --clients "$4" --batch "$5" --seconds "$SECS" \
        --max-requests 100000 --server-pid "$pid" \
        | sed "s/^{/{\"build\":\"$1\",\"backend\":\"$3\",\"batch\":$5,/" >> "$OUT"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    rm -rf "$dir"
}

for backend in postgres sqlite; do
    for clients in 1 8; do
        for batch in 1 100 1000 10000; do
            for _ in $(seq 1 "$ROUNDS"); do
                one base "$BASE_BIN" $backend $clients $batch
                one new "$NEW_BIN" $backend $clients $batch
                one new "$NEW_BIN" $backend $clients $batch
                one base "$BASE_BIN" $backend $clients $batch
            done
        done
    done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r["backend"], r["clients"], r["batch"]) for r in runs})
print("| backend | clients | points per batch | base points/s (p50) | new points/s (p50) | new / base |")
print("|---|---|---|---|---|---|")
for k in keys:
    got = {}
    for b in ("base", "new"):
        rs = [r for r in runs if (r["backend"], r["clients"], r["batch"]) == k and r["build"] == b]
        got[b] = (statistics.median(r["items_per_second"] for r in rs), statistics.median(r["p50_ms"] for r in rs))
    (bp, bl), (np_, nl) = got["base"], got["new"]
    print(f"| {k[0]} | {k[1]} | {k[2]:,} | {bp:,.0f} ({bl:.2f} ms) | {np_:,.0f} ({nl:.2f} ms) | {np_ / bp:.2f}× |")
PY
