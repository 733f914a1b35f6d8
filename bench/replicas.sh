#!/usr/bin/env bash
# Read replicas on this machine: a primary and a streaming replica of their own (initdb,
# pg_basebackup -R, ports 5491 and 5492, shared_buffers as the system cluster's), and
# modelreg (release) serving the same reads twice: from the primary alone, then with the
# replica in MODELREG_DATABASE_READ_URLS. For each read (GET version; 1M points → 1,000
# buckets) it prints requests/s, p50, the server's CPU per request, and the CPU each Postgres
# spent per request (/proc: the postmaster, its live children, and the children it reaped),
# one JSON line each, also kept in target/bench/replicas/results.jsonl.
#
#   bash bench/replicas.sh            # BENCH_SECONDS=10 BENCH_CLIENTS=8
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-8}
OUT=target/bench/replicas
ADDR=127.0.0.1:8186
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort | tail -n1)
[ -x "$PGBIN/initdb" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -n1)
work=$(mktemp -d)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$work"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    as_pg "$PGBIN/pg_ctl" -D "$work/replica" -m immediate stop >/dev/null 2>&1 || true
    as_pg "$PGBIN/pg_ctl" -D "$work/primary" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== build" >&2
cargo build --release --locked --bin modelreg --example loadgen >&2
LOADGEN=target/release/examples/loadgen

echo "== a primary and a streaming replica" >&2
as_pg "$PGBIN/initdb" -D "$work/primary" -A trust -U postgres --no-sync >/dev/null
cat >> "$work/primary/postgresql.conf" <<EOF
port = 5491
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
shared_buffers = 128MB
EOF
as_pg "$PGBIN/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p 5491 -U postgres -D "$work/replica" -R -X stream --no-sync
printf "port = 5492\n" >> "$work/replica/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$work/replica" -l "$work/replica.log" -w start >/dev/null
PRIMARY=postgres://postgres@127.0.0.1:5491/postgres
REPLICA=postgres://postgres@127.0.0.1:5492/postgres

# CPU seconds a cluster has spent: its postmaster (with the children it reaped) and its live
# children.
pg_cpu() {
    local pm ticks=0 p f
    pm=$(head -n1 "$work/$1/postmaster.pid")
    for p in "$pm" $(pgrep -P "$pm"); do
        f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # utime stime cutime cstime: fields 14-17 of stat, 12-15 after the command.
        ticks=$(( ticks + $(echo "$f" | awk -v pm="$p" -v root="$pm" '{ t = $12 + $13; if (pm == root) t += $14 + $15; print t }') ))
    done
    echo "$ticks"
}

start() {
    MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL=$PRIMARY MODELREG_ARTIFACTS_URL=memory:// \
        MODELREG_DB_MAX_CONNECTIONS=16 RUST_LOG=warn "$@" target/release/modelreg serve \
        2>> "$OUT/modelreg.log" &
    server=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://$ADDR/readyz" && return 0; sleep 0.1; done
    echo "FATAL: modelreg did not come up" >&2
    exit 1
}

# measure LABEL SCENARIO: one load, with each cluster's CPU per request.
measure() {
    local label=$1 scenario=$2 p0 r0 line p1 r1 n
    p0=$(pg_cpu primary)
    r0=$(pg_cpu replica)
    line=$($LOADGEN http "$scenario" --base "http://$ADDR" --server-pid "$server" --seconds "$SECS" --clients "$CLIENTS")
    p1=$(pg_cpu primary)
    r1=$(pg_cpu replica)
    n=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
    echo "$line" | python3 -c "
import json, sys
r = json.load(sys.stdin)
n = max(r['requests'], 1)
r['scenario'] = '$label/' + r['scenario']
r['primary_cpu_ms_per_request'] = round(($p1 - $p0) * 10 / n, 4)
r['replica_cpu_ms_per_request'] = round(($r1 - $r0) * 10 / n, 4)
print(json.dumps(r))" | tee -a "$RESULTS"
}

echo "== the primary alone" >&2
start
$LOADGEN setup --base "http://$ADDR" >&2
# Setup's writes are this caller's: its reads wait for them no longer than the allowed lag.
sleep 4
measure primary_only get_version
measure primary_only buckets
kill "$server"; wait "$server" 2>/dev/null || true

echo "== with the replica" >&2
start env MODELREG_DATABASE_READ_URLS=$REPLICA MODELREG_REPLICA_MAX_LAG=1s
for _ in $(seq 1 100); do
    curl -s "http://$ADDR/readyz" | grep -q '"state":"ok"' && break
    sleep 0.1
done
curl -s "http://$ADDR/readyz" >&2; echo >&2
measure with_replica get_version
measure with_replica buckets
curl -s "http://$ADDR/readyz" >&2; echo >&2
