#!/usr/bin/env bash
# Erasure and retention on a release build (Postgres):
#  1. erase 1,000 versions, each with a 1,000-point series and 3 artifacts of 1 KiB, one
#     DELETE after another over HTTP; beside it, on a copy of the same database, the bare
#     database deleting the same rows (one transaction per version, no objects, no events,
#     no checks); the database's size before, after, after VACUUM and after VACUUM FULL;
#  2. the retention job over one model of 100,000 versions (ages spread over 200 days, a
#     `val/auc` value each, 3 promoted): a run that decides and finds nothing due, beside the
#     bare read of the versions; then the drain of a real policy, run after run.
#
#   bash bench/retention.sh        # BENCH_ERASE, BENCH_BULK to change the sizes
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=modelreg_retention_bench
ADDR=127.0.0.1:18098
BASE=http://$ADDR
N=${BENCH_ERASE:-1000}
BULK=${BENCH_BULK:-100000}
cargo build --release --locked --bin modelreg --example retention_pass >&2
bin=$PWD/target/release/modelreg
dir=$(mktemp -d)
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; pid=; }
trap 'stop; rm -rf "$dir"; psql "$PG/postgres" -qc "drop database if exists ${DB}_bare with (force)" >/dev/null 2>&1 || true' EXIT
fresh() { psql "$PG/postgres" -qc "drop database if exists $1 with (force)" -c "create database $1" >/dev/null; }
serve() {
    env RUST_LOG=warn MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL="$PG/$DB" MODELREG_RETENTION=false \
        MODELREG_ARTIFACTS_URL="file://$dir/artifacts" "$bin" serve >> "$dir/server.log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "$BASE/readyz"; do sleep 0.05; done
}
size() { psql "$PG/$1" -Atc "select pg_database_size(current_database())"; }
mib() { echo "scale=1; $1 / 1048576" | bc; }

echo "## erase $N versions"
fresh $DB
serve
python3 bench/retention.py erase-setup --base "$BASE" --versions "$N" --points 1000 --artifacts 3
stop
psql "$PG/$DB" -qc "vacuum analyze" >/dev/null
psql "$PG/postgres" -qc "drop database if exists ${DB}_bare with (force)" -c "create database ${DB}_bare template $DB" >/dev/null
before=$(size $DB)
objects_before=$(find "$dir/artifacts" -type f | wc -l)
serve
python3 bench/retention.py erase --base "$BASE" --versions "$N"
stop
after=$(size $DB)
objects_after=$(find "$dir/artifacts" -type f | wc -l)
psql "$PG/$DB" -qc "vacuum" >/dev/null
vacuumed=$(size $DB)
psql "$PG/$DB" -qc "vacuum full" >/dev/null
full=$(size $DB)
echo "{\"db_mib\": {\"before\": $(mib $before), \"after_erase\": $(mib $after), \"after_vacuum\": $(mib $vacuumed), \"after_vacuum_full\": $(mib $full)}, \"objects\": {\"before\": $objects_before, \"after\": $objects_after}}"
# The bare database: the same rows deleted by hand, one transaction per version.
{
    echo "\\set ON_ERROR_STOP on"
    for v in $(seq 1 "$N"); do
        id="(select id from versions where version = $v and model_id = (select id from models where name = 'erase-bench'))"
        echo "begin;"
        echo "delete from artifacts where version_id = $id;"
        echo "delete from metric_points where series_id in (select id from metric_series where version_id = $id);"
        echo "delete from metric_rollups where series_id in (select id from metric_series where version_id = $id);"
        echo "delete from metric_blocks where series_id in (select id from metric_series where version_id = $id);"
        echo "delete from metric_series where version_id = $id;"
        echo "delete from version_inputs where version_id = $id;"
        echo "update versions set status = 'erased', config = '{}', source = '{}', tags = '{}' where id = $id;"
        echo "commit;"
    done
} > "$dir/bare.sql"
t0=$(date +%s.%N)
psql -q "$PG/${DB}_bare" -f "$dir/bare.sql" >/dev/null
t1=$(date +%s.%N)
echo "{\"bare_sql_wall_s\": $(echo "$t1 - $t0" | bc)}"

echo "## retention over $BULK versions"
fresh $DB
serve
python3 bench/retention.py bulk-setup --base "$BASE" --versions "$BULK" --clients 4
for v in 1 2 3; do
    psql "$PG/$DB" -qc "update versions set status = 'ready' where version = $v" >/dev/null
    curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
        -d "{\"version\": $v}" "$BASE/api/v1/models/retention-bench/stages/production/promote"
done
stop
psql "$PG/$DB" -q >/dev/null <<'SQL'
update versions set status = 'ready',
    created_at = now() - ((version * 7919) % 200) * interval '1 day'
  where model_id = (select id from models where name = 'retention-bench');
insert into metric_series (version_id, key, created_at, model_id, last_step, last_value)
  select id, 'val/auc', created_at, model_id, 0, ((version * 104729) % 1000) / 1000.0
  from versions where model_id = (select id from models where name = 'retention-bench');
vacuum analyze;
SQL
target/release/examples/retention_pass "$PG/$DB" retention-bench 3
