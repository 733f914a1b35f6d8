#!/usr/bin/env bash
# Metric storage at scale, two layouts side by side in one run: BASE_REV (default a9443b3,
# every point a row) and the working tree (completed blocks packed). For each build, on a
# fresh Postgres database:
#   1. `loadgen setup` (the fixtures: a 1M-point series, four of 200k, one of 100k, ...), then
#      10,000-point batches from 8 clients until the database holds SCALE × 6,000,000 points
#      (the benchmark database's size); the loading rate is the ingestion figure;
#   2. at each scale: bytes per stored point (points table, blocks table and their indexes,
#      over the points the rollups count), the database's size, and one client's p50 of the
#      1M → 1,000 bucket read, the 100k raw read, get version and the best-10 list.
# The working tree goes on to SCALES_NEW (default "1 10 50"), the base to SCALES_BASE ("1 10").
# Also measures bare COPY into metric_points on the base's schema, for the ingestion ratio.
#
#   bash bench/scale.sh [BASE_REV]     # BENCH_SECONDS=5
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:-a9443b3}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
SECS=${BENCH_SECONDS:-5}
SCALES_BASE=${SCALES_BASE:-1 10}
SCALES_NEW=${SCALES_NEW:-1 10 50}
UNIT=6000000
OUT=target/bench/scale
DB=modelreg_scale
ADDR=127.0.0.1:18183
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; git worktree remove --force "$OUT/base-src" 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "${BENCH_REUSE:-}" ]; then
    echo "== build $BASE and the working tree" >&2
    git worktree remove --force "$OUT/base-src" 2>/dev/null || true
    git worktree add --detach "$OUT/base-src" "$BASE" >&2
    (cd "$OUT/base-src" && CARGO_TARGET_DIR="$PWD/../../../../target" cargo build --release --locked --bin modelreg >&2)
    cp target/release/modelreg "$OUT/modelreg-base"
    cargo build --release --locked --bin modelreg --example loadgen >&2
    cp target/release/modelreg "$OUT/modelreg-new"
fi
LOADGEN=target/release/examples/loadgen

sql() { psql "$PG/$DB" -qAtc "$1"; }
emit() { echo "$1" | tee -a "$RESULTS"; }

stored_points() { sql "select coalesce(sum(count), 0) from metric_rollups where level = 3"; }

measure() { # build scale
    local points bytes dbsize
    # Settle: the load leaves autovacuum and checkpoint work that would share the two cores.
    sql "vacuum analyze" >/dev/null
    sql "checkpoint" >/dev/null
    while [ "$(sql "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'")" != 0 ]; do sleep 1; done
    sleep 5
    points=$(stored_points)
    bytes=$(sql "select pg_total_relation_size('metric_points') + coalesce(pg_total_relation_size(to_regclass('metric_blocks')), 0)")
    dbsize=$(sql "select pg_database_size(current_database())")
    emit "{\"build\":\"$1\",\"scale\":$2,\"points\":$points,\"point_bytes\":$bytes,\"bytes_per_point\":$(echo "scale=2; $bytes / $points" | bc),\"database_bytes\":$dbsize}"
    for s in buckets raw100k get_version best; do
        $LOADGEN http "$s" --base "http://$ADDR" --server-pid "$pid" --seconds "$SECS" --clients 1 \
            | sed "s/^{/{\"build\":\"$1\",\"scale\":$2,/" | tee -a "$RESULTS"
    done
}

run() { # build scales...
    local build=$1; shift
    psql "$PG/postgres" -qc "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
    rm -rf "$OUT/artifacts"
    MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL=$PG/$DB MODELREG_ARTIFACTS_URL=file://$PWD/$OUT/artifacts \
        MODELREG_DB_MAX_CONNECTIONS=16 RUST_LOG=warn "$OUT/modelreg-$build" serve 2> "$OUT/$build.log" &
    pid=$!
    for _ in $(seq 1 300); do curl -sf -o /dev/null "http://$ADDR/readyz" && break; sleep 0.1; done
    local start end
    start=$(date +%s.%N)
    $LOADGEN setup --base "http://$ADDR" >&2
    end=$(date +%s.%N)
    emit "{\"build\":\"$build\",\"load\":\"fixtures\",\"seconds\":$(echo "$end - $start" | bc)}"
    for scale in "$@"; do
        local want have requests
        want=$((scale * UNIT))
        have=$(stored_points)
        requests=$(( (want - have + 9999) / 10000 ))
        if [ "$requests" -gt 0 ]; then
            start=$(date +%s.%N)
            $LOADGEN http ingest --base "http://$ADDR" --server-pid "$pid" --clients 8 --seconds 100000 \
                --max-requests "$requests" | sed "s/^{/{\"build\":\"$build\",\"scale\":$scale,\"load\":\"to scale\",/" | tee -a "$RESULTS"
            end=$(date +%s.%N)
            emit "{\"build\":\"$build\",\"scale\":$scale,\"load_seconds\":$(echo "$end - $start" | bc),\"load_points\":$((requests * 10000))}"
        fi
        measure "$build" "$scale"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, Postgres $(psql "$PG/postgres" -Atc 'show server_version')" >&2
# shellcheck disable=SC2086
run base $SCALES_BASE
$LOADGEN bare copy --database-url "$PG/$DB" --clients 1 --seconds "$SECS" | sed 's/^{/{"build":"bare",/' | tee -a "$RESULTS" || true
# shellcheck disable=SC2086
run new $SCALES_NEW
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" >/dev/null

# The table: per build and scale, storage and one client's p50 of each read.
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
size = {(r["build"], r["scale"]): r for r in rows if "bytes_per_point" in r}
load = {(r["build"], r["scale"]): r for r in rows if "load_seconds" in r}
rate = {(r["build"], r["scale"]): r for r in rows if r.get("load") == "to scale"}
p50 = {(r["build"], r["scale"], r["scenario"]): r["p50_ms"] for r in rows if "p50_ms" in r and "load" not in r}
print("| layout | scale | points | bytes/point | database | load (points/s) | 1M→1,000 buckets | raw 100k | get version | best 10 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (b, s), r in sorted(size.items(), key=lambda kv: (kv[0][0] != "base", kv[0][1])):
    l, g = load.get((b, s)), rate.get((b, s))
    loaded = f"{l['load_seconds']:.0f} s ({g['items_per_second']:,.0f})" if l and g else "fixtures only"
    cells = [f"{p50.get((b, s, x), float('nan')):.2f} ms" for x in ("buckets", "raw100k", "get_version", "best")]
    print(f"| {b} | {s}× | {r['points']:,} | {r['bytes_per_point']} | {r['database_bytes'] / 2**30:.2f} GiB | {loaded} | " + " | ".join(cells) + " |")
PY
