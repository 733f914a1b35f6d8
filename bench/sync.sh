#!/usr/bin/env bash
# The deployment agent on a release build (Postgres, artifacts in a folder):
#  1. promote-to-switched latency of `modelreg sync` over 50 promotes of new versions (each a
#     1 MiB artifact to download) and 50 promotes of versions already on disk (bench/sync.py);
#  2. `modelreg download` of a SIZE_MIB artifact (sha256 checked, fsync'd) beside the store's
#     own rate for the same bytes in the same run: a copy of the stored object with
#     `dd … conv=fsync`, and a plain `curl` of the same URL (no checksum) to a file.
#
#   bash bench/sync.sh            # SIZE_MIB=1024 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=modelreg_sync_bench
ADDR=127.0.0.1:18098
BASE=http://$ADDR
SIZE_MIB=${SIZE_MIB:-1024}
cargo build --release --locked --bin modelreg >&2
bin=$PWD/target/release/modelreg
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
env RUST_LOG=warn MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL="$PG/$DB" \
    MODELREG_ARTIFACTS_URL="file://$dir/artifacts" "$bin" serve > "$dir/server.log" 2>&1 &
pids+=("$!")
until curl -sf -o /dev/null "$BASE/readyz"; do sleep 0.05; done
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }
mbps() { python3 -c "print(f'{$SIZE_MIB * 1.048576 / $1:.0f}')"; }

version() { # model, file → a ready version with that file as its artifact
    local v
    v=$(curl -sf -X POST "$BASE/api/v1/models/$1/versions" -H 'content-type: application/json' -d '{}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
    curl -sf -T "$2" "$BASE/api/v1/models/$1/versions/$v/artifacts/model.bin" > /dev/null
    curl -sf -X POST "$BASE/api/v1/models/$1/versions/$v/finalize" > /dev/null
    echo "$v"
}

echo "## promote to switched (50 each)"
curl -sf -X PUT "$BASE/api/v1/models/m" -H 'content-type: application/json' -d '{}' > /dev/null
for i in $(seq 1 51); do
    head -c 1048576 /dev/urandom > "$dir/one.bin"
    version m "$dir/one.bin" > /dev/null
done
curl -sf -X POST "$BASE/api/v1/models/m/stages/production/promote" -H 'content-type: application/json' \
    -d '{"version": 1}' > /dev/null
MODELREG_URL=$BASE "$bin" sync m@production "$dir/serve" --keep 3 2> "$dir/sync.log" &
pids+=("$!")
until [ "$(readlink "$dir/serve/current" 2>/dev/null)" = versions/1 ]; do sleep 0.05; done
sleep 0.5
echo "| promote of | n | p50 | p99 | max |"
echo "|---|---|---|---|---|"
python3 bench/sync.py --base "$BASE" --model m --dest "$dir/serve" --new 2-51 --kept 50

echo
echo "## download of ${SIZE_MIB} MiB"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$dir/big.bin"
curl -sf -X PUT "$BASE/api/v1/models/big" -H 'content-type: application/json' -d '{}' > /dev/null
v=$(version big "$dir/big.bin")
object=$(find "$dir/artifacts" -type f -size "+$((SIZE_MIB - 1))M" | head -1)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now); dd if="$object" of="$dir/copy.bin" bs=8M conv=fsync status=none; t1=$(now)
own=$(secs "$t0" "$t1"); rm -f "$dir/copy.bin"
t0=$(now); curl -sf -o "$dir/curl.bin" "$BASE/api/v1/models/big/versions/$v/artifacts/model.bin"; sync "$dir/curl.bin"; t1=$(now)
plain=$(secs "$t0" "$t1"); rm -f "$dir/curl.bin"
t0=$(now); MODELREG_URL=$BASE "$bin" download "big/$v" "$dir/down" > /dev/null; t1=$(now)
ours=$(secs "$t0" "$t1")
[ "$(sha256sum "$dir/down/model.bin" | cut -d' ' -f1)" = "$(sha256sum "$dir/big.bin" | cut -d' ' -f1)" ] || { echo "FATAL: download differs" >&2; exit 1; }
echo "| copy | seconds | MB/s | ratio to the store's own copy |"
echo "|---|---|---|---|"
echo "| the store's own (dd of the object, fsync) | $own | $(mbps "$own") | 1.00 |"
echo "| curl of the artifact URL to a file (no checksum) | $plain | $(mbps "$plain") | $(python3 -c "print(f'{$own / $plain:.2f}')") |"
echo "| modelreg download (sha256 checked, fsync) | $ours | $(mbps "$ours") | $(python3 -c "print(f'{$own / $ours:.2f}')") |"
