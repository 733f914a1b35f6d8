#!/usr/bin/env bash
# Artifact throughput: a 1 GiB upload and download through modelreg, to the local folder and
# to an in-process-style S3 server (s3s-fs), each beside the store's own write rate measured in
# the same run, and modelreg's peak RSS above idle. 127.0.0.1 only.
#
#   bash bench/artifacts.sh          # SIZE_MIB=1024 by default
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
OUT=target/bench-artifacts
rm -rf "$OUT"; mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_http() { for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "FATAL: $1" >&2; return 1; }
rss_kib() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }
mbps() { python3 -c "print(f'{$SIZE_MIB * 1.048576 / $1:.0f}')"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

cargo build --release --locked --bin modelreg --example s3_server >&2
SRC=$OUT/source.bin
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$SRC"
SHA=$(sha256sum "$SRC" | cut -d' ' -f1)
echo "| store | store's own write | upload via modelreg | download via modelreg | peak RSS above idle |"
echo "|---|---|---|---|---|"

measure() { # label, artifacts url, own-write seconds, extra env...
    local label=$1 url=$2 own=$3; shift 3
    local dir=$OUT/$label
    mkdir -p "$dir"
    env "$@" MODELREG_LISTEN=127.0.0.1:8282 MODELREG_DATABASE_URL="sqlite://$dir/db.sqlite" \
        MODELREG_ARTIFACTS_URL="$url" RUST_LOG=warn target/release/modelreg serve 2> "$dir/server.log" &
    local pid=$!; pids+=("$pid")
    wait_http http://127.0.0.1:8282/readyz
    curl -sf -X PUT localhost:8282/api/v1/models/big -H 'content-type: application/json' -d '{}' > /dev/null
    curl -sf -X POST localhost:8282/api/v1/models/big/versions -H 'content-type: application/json' -d '{}' > /dev/null
    local idle; idle=$(rss_kib "$pid" VmRSS)
    local t0; t0=$(now)
    curl -sf -T "$SRC" -H "x-content-sha256: $SHA" \
        localhost:8282/api/v1/models/big/versions/1/artifacts/weights.bin > "$dir/upload.json"
    local t1; t1=$(now)
    curl -sf -o "$dir/download.bin" localhost:8282/api/v1/models/big/versions/1/artifacts/weights.bin
    local t2; t2=$(now)
    local peak; peak=$(rss_kib "$pid" VmHWM)
    [ "$(sha256sum "$dir/download.bin" | cut -d' ' -f1)" = "$SHA" ] || { echo "FATAL: download differs" >&2; exit 1; }
    rm -f "$dir/download.bin"
    local up; up=$(secs "$t0" "$t1"); local down; down=$(secs "$t1" "$t2")
    echo "| $label | $(mbps "$own") MB/s | $(mbps "$up") MB/s (${up} s) | $(mbps "$down") MB/s (${down} s) | $(( (peak - idle) / 1024 )) MiB (idle $(( idle / 1024 )) MiB) |"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# The folder: the disk's own rate for the same bytes (written and flushed).
t0=$(now); dd if="$SRC" of="$OUT/dd.bin" bs=8M conv=fsync status=none; t1=$(now); rm -f "$OUT/dd.bin"
measure folder "file://$PWD/$OUT/folder/artifacts" "$(secs "$t0" "$t1")"

# S3: s3s-fs on loopback; its own rate is a direct signed PUT of the same bytes.
mkdir -p "$OUT/s3/bench"
target/release/examples/s3_server "$OUT/s3" 127.0.0.1:9393 bench-key bench-secret 2> "$OUT/s3.log" &
pids+=("$!")
sleep 0.5
t0=$(now)
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user bench-key:bench-secret \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$SRC" http://127.0.0.1:9393/bench/direct.bin > /dev/null
t1=$(now)
measure s3 "s3://bench/modelreg" "$(secs "$t0" "$t1")" AWS_ENDPOINT_URL=http://127.0.0.1:9393 \
    AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
