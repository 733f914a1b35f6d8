#!/usr/bin/env bash
# The hot paths of two builds, side by side in one run: the working tree and a base revision
# (default: the parent commit). Both release binaries run the same load generator against a
# fresh Postgres database each, alternating base/new/new/base across rounds so that a drift in
# the machine's speed hits both alike. Prints the median of each scenario per build.
#
#   bash bench/sidebyside.sh [BASE_REV]      # BENCH_ROUNDS=4 BENCH_SECONDS=5 BENCH_CLIENTS=8
#   BENCH_SCENARIOS="register ingest" BENCH_REUSE=1 bash bench/sidebyside.sh   # again, same binaries
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:-HEAD~1}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
ROUNDS=${BENCH_ROUNDS:-4}
SECS=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-8}
SCENARIOS=${BENCH_SCENARIOS:-register promote10 get_version buckets ingest}
OUT=target/bench/sidebyside
ADDR=127.0.0.1:8182
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; git worktree remove --force "$OUT/base-src" 2>/dev/null || true; }
trap cleanup EXIT

# One codegen unit: how rustc splits a crate into units (and so what it inlines across them)
# shifts when code moves between modules, by a few percent either way; with one unit the two
# builds differ by their code, not by that.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=${BENCH_CODEGEN_UNITS:-1}

if [ -z "${BENCH_REUSE:-}" ]; then
    echo "== build $BASE and the working tree (dependencies shared in target/)" >&2
    git worktree remove --force "$OUT/base-src" 2>/dev/null || true
    git worktree add --detach "$OUT/base-src" "$BASE" >&2
    (cd "$OUT/base-src" && CARGO_TARGET_DIR="$PWD/../../../../target" cargo build --release --locked --bin modelreg --example loadgen >&2)
    cp target/release/modelreg "$OUT/modelreg-base"
    cargo build --release --locked --bin modelreg --example loadgen >&2
    cp target/release/modelreg "$OUT/modelreg-new"
fi
LOADGEN=target/release/examples/loadgen

one() { # build label
    psql "$PG/postgres" -qc "drop database if exists modelreg_side with (force)" -c "create database modelreg_side" >/dev/null
    rm -rf "$OUT/artifacts"
    MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL=$PG/modelreg_side MODELREG_ARTIFACTS_URL=file://$PWD/$OUT/artifacts \
        MODELREG_DB_MAX_CONNECTIONS=16 RUST_LOG=warn "$OUT/modelreg-$1" serve 2> "$OUT/$1.log" &
    pid=$!
    for _ in $(seq 1 300); do curl -sf -o /dev/null "http://$ADDR/readyz" && break; sleep 0.1; done
    $LOADGEN setup --base "http://$ADDR" >&2
    for s in $SCENARIOS; do
        limit=(); [ "$s" = ingest ] && limit=(--max-requests 200)
        $LOADGEN http "$s" --base "http://$ADDR" --server-pid "$pid" --seconds "$SECS" --clients "$CLIENTS" "${limit[@]}" \
            | sed "s/^{/{\"build\":\"$1\",/" >> "$RESULTS"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, Postgres $(psql "$PG/postgres" -Atc 'show server_version')" >&2
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
    for b in $order; do echo "== round $r: $b" >&2; one "$b"; done
done

python3 - "$RESULTS" "$BASE" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"| scenario | {sys.argv[2]} | this tree | server CPU ms/request, {sys.argv[2]} → this tree |")
print("|---|---|---|---|")
for s in dict.fromkeys(r["scenario"] for r in rows):
    def med(build, field):
        v = [r[field] for r in rows if r["build"] == build and r["scenario"] == s and r.get(field) is not None]
        return statistics.median(v) if v else None
    field = "items_per_second" if s == "ingest" else "per_second"
    unit = " points/s" if s == "ingest" else "/s"
    b, n = med("base", field), med("new", field)
    cb, cn = med("base", "server_cpu_ms_per_request"), med("new", "server_cpu_ms_per_request")
    print(f"| {s} | {b:,.0f}{unit}, p50 {med('base', 'p50_ms'):.2f} ms | {n:,.0f}{unit}, p50 {med('new', 'p50_ms'):.2f} ms "
          f"| {cb:.3f} → {cn:.3f} ({(cn / cb - 1) * 100:+.0f}%) |")
EOF
