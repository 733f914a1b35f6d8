#!/usr/bin/env bash
# A soak: modelreg on Postgres under a mixed load (registers, promotes, reads, metric batches,
# bucketed reads, in turn, a few clients each) for SOAK_SECONDS, sampling the server's resident
# memory, open file descriptors and database connections every 10 s. Fails when they grow after
# the first minute of warm-up: RSS by more than 25% + 16 MiB, descriptors by more than 16,
# connections beyond the pool.
#
#   bash bench/soak.sh                         # 20 minutes, release build
#   SOAK_SECONDS=120 SOAK_PROFILE=debug bash bench/soak.sh     # what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SOAK_SECONDS:-1200}
PROFILE=${SOAK_PROFILE:-release}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
ADDR=127.0.0.1:8184
OUT=target/soak
mkdir -p "$OUT"
SAMPLES="$OUT/samples.csv"

if [ "$PROFILE" = release ]; then
    cargo build --release --locked --bin modelreg --example loadgen >&2
else
    cargo build --locked --bin modelreg --example loadgen >&2
fi
BIN=target/$PROFILE/modelreg
LOADGEN=target/$PROFILE/examples/loadgen

psql "$PG/postgres" -qc "drop database if exists modelreg_soak with (force)" -c "create database modelreg_soak" >/dev/null
rm -rf "$OUT/artifacts"
MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL=$PG/modelreg_soak MODELREG_ARTIFACTS_URL=file://$PWD/$OUT/artifacts \
    MODELREG_DB_MAX_CONNECTIONS=16 RUST_LOG=warn "$BIN" serve 2> "$OUT/server.log" &
PID=$!
sampler=""
cleanup() {
    if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; fi
    kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://$ADDR/readyz" && break; sleep 0.1; done
"$LOADGEN" setup --base "http://$ADDR" --series-points 200000 >&2

sample() {
    local t0=$SECONDS
    echo "seconds,rss_kib,fds,db_in_use,db_idle" > "$SAMPLES"
    while kill -0 "$PID" 2>/dev/null; do
        local rss fds metrics used idle
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
        fds=$(ls "/proc/$PID/fd" | wc -l)
        metrics=$(curl -sf "http://$ADDR/metrics" || true)
        used=$(echo "$metrics" | awk '/^modelreg_db_connections\{state="in_use"\}/ {print $2}')
        idle=$(echo "$metrics" | awk '/^modelreg_db_connections\{state="idle"\}/ {print $2}')
        echo "$((SECONDS - t0)),$rss,$fds,${used:-0},${idle:-0}" >> "$SAMPLES"
        sleep 10
    done
}
sample &
sampler=$!

end=$((SECONDS + SECS))
errors=0
round=0
while [ $SECONDS -lt $end ]; do
    round=$((round + 1))
    for run in "register --clients 2" "promote10 --clients 2" "get_version --clients 4" \
               "ingest --clients 1 --max-requests 10" "buckets --clients 2" "overlay --clients 1"; do
        [ $SECONDS -ge $end ] && break
        # shellcheck disable=SC2086
        line=$("$LOADGEN" http $run --base "http://$ADDR" --seconds 3)
        e=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["errors"])')
        errors=$((errors + e))
    done
done
sleep 11
kill "$sampler" 2>/dev/null || true

status=0
python3 - "$SAMPLES" "$errors" "$round" <<'EOF' || status=$?
import csv, sys
rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
errors, rounds = int(sys.argv[2]), int(sys.argv[3])
warm = [r for r in rows if r["seconds"] >= 60] or rows
first, last = warm[0], rows[-1]
peak_rss = max(r["rss_kib"] for r in warm)
peak_db = max(r["db_in_use"] + r["db_idle"] for r in rows)
print(f"| | after warm-up ({first['seconds']:.0f} s) | end ({last['seconds']:.0f} s) | peak |")
print("|---|---|---|---|")
print(f"| RSS | {first['rss_kib'] / 1024:.1f} MiB | {last['rss_kib'] / 1024:.1f} MiB | {peak_rss / 1024:.1f} MiB |")
print(f"| open file descriptors | {first['fds']:.0f} | {last['fds']:.0f} | {max(r['fds'] for r in rows):.0f} |")
print(f"| database connections | {first['db_in_use'] + first['db_idle']:.0f} | {last['db_in_use'] + last['db_idle']:.0f} | {peak_db:.0f} |")
print(f"\n{rounds} rounds of the mixed load, {errors} failed requests")
bad = []
if last["rss_kib"] > first["rss_kib"] * 1.25 + 16 * 1024:
    bad.append("resident memory grew")
if last["fds"] > first["fds"] + 16:
    bad.append("file descriptors grew")
if peak_db > 16:
    bad.append("more database connections than the pool allows")
if errors:
    bad.append(f"{errors} requests failed")
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
print("flat: no growth after warm-up")
EOF
cleanup
trap - EXIT
exit "$status"
