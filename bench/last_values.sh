#!/usr/bin/env bash
# A hyper-parameter sweep's top ten. First right after loading: 20,000 versions with a
# `val/acc` last value and no table statistics (autovacuum off, no analyze): `fresh-20000 top`
# and `fresh-20000 top-filter` (one client, 10 s, over HTTP). Then 100,000 ready versions of
# one model, each with a `val/acc` series of 10 points (1,000,000 points), analyzed. Prints:
# - `loadgen http top` / `top-filter` (one client, 10 s): the list ordered by the metric's last
#   value with limit 10, and the same with `filter=metric.val/acc > 0.9`: p50/p99 over HTTP;
# - the same list query in SQL, as this version builds it (the index walk over the series'
#   last values) and as the previous layout did (the last value read from each version's
#   coarse rollup): median of 20 runs in psql, in ms.
# The fixture is written in SQL (versions, series, points and rollups as the ingestion flow
# writes them), so loading takes seconds rather than 100,000 API calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=modelreg_last_bench
ADDR=127.0.0.1:18097
cargo build --release --locked --bin modelreg --example loadgen >&2
# BENCH_BIN: another build's server to measure (the previous release, side by side).
BIN=${BENCH_BIN:-$PWD/target/release/modelreg}
LOADGEN=$PWD/target/release/examples/loadgen
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
dir=$(mktemp -d)
(cd "$dir" && exec env RUST_LOG=warn MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL="$PG/$DB" "$BIN" serve) > "$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
until curl -sf -o /dev/null "http://$ADDR/readyz"; do sleep 0.05; done
curl -sf -o /dev/null -XPOST "http://$ADDR/api/v1/models" -H 'content-type: application/json' -d '{"name":"bench-sweep"}'

# Right after a sweep: 20,000 versions just registered, with autovacuum off on every table,
# so the planner has no statistics about them (what a user meets when asking for a sweep's
# winners before autovacuum has run). The goal: p50 <= 10 ms for the filtered top ten.
psql "$PG/$DB" -v ON_ERROR_STOP=1 -q <<'SQL'
do $$ declare t text; begin
  for t in select tablename from pg_tables where schemaname = 'public' loop
    execute format('alter table %I set (autovacuum_enabled = off)', t);
  end loop; end $$;
\set model '(select id from models where name = ''bench-sweep'')'
insert into versions (id, model_id, version, status, config, source, tags, created_at, updated_at, created_by)
select gen_random_uuid(), :model, g, 'ready', jsonb_build_object('lr', g % 100), '{}', '{}', now(), now(), 'bench'
from generate_series(1, 20000) g;
insert into metric_series (version_id, key, created_at, model_id, last_step, last_value)
select v.id, 'val/acc', now(), v.model_id, 9, (hashtext(v.version::text) & 1048575) / 1048576.0
from versions v;
SQL
for scenario in top top-filter; do
    printf 'fresh-20000 %s ' "$scenario"
    "$LOADGEN" http "$scenario" --base "http://$ADDR" --clients 1 --seconds 10 --max-requests 100000 --server-pid "$pid"
done
psql "$PG/$DB" -v ON_ERROR_STOP=1 -q <<'SQL'
delete from metric_series;
delete from versions;
do $$ declare t text; begin
  for t in select tablename from pg_tables where schemaname = 'public' loop
    execute format('alter table %I reset (autovacuum_enabled)', t);
  end loop; end $$;
SQL

start=$(date +%s.%N)
psql "$PG/$DB" -v ON_ERROR_STOP=1 -q <<'SQL'
\set model '(select id from models where name = ''bench-sweep'')'
insert into versions (id, model_id, version, status, config, source, tags, created_at, updated_at, created_by)
select gen_random_uuid(), :model, g, 'ready', jsonb_build_object('lr', g % 100), '{}', '{}', now(), now(), 'bench'
from generate_series(1, 100000) g;
update models set last_version = 100000 where name = 'bench-sweep';
create temp table acc as
select v.id as version_id, v.version, (hashtext(v.version::text) & 1048575) / 1048576.0 as last
from versions v where v.model_id = :model;
insert into metric_series (version_id, key, created_at, model_id, last_step, last_value)
select version_id, 'val/acc', now(), :model, 9, last from acc;
insert into metric_points (series_id, step, value, at)
select s.id, st, s.last_value - (9 - st) * 0.001, 1790000000000000 + st
from metric_series s, generate_series(0, 9) st where s.model_id = :model;
insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, first_step, last_step, last)
select s.id, l, 0, 10, s.last_value - 0.009, s.last_value, (10 * s.last_value - 0.045) * 5.42101086242752217003726400434970855712890625e-20, 0, 9, s.last_value
from metric_series s, generate_series(1, 3) l where s.model_id = :model;
analyze;
SQL
echo "{\"fixture\": \"100000 versions, 1000000 points\", \"load_seconds\": $(echo "$(date +%s.%N) - $start" | bc)}"

for scenario in top top-filter; do
    printf '%s ' "$scenario"
    "$LOADGEN" http "$scenario" --base "http://$ADDR" --clients 1 --seconds 10 --max-requests 100000 --server-pid "$pid"
done

# The two layouts' list query, in SQL (the model's id and the key as literals).
model=$(psql "$PG/$DB" -qAtc "select id from models where name = 'bench-sweep'")
cols="v.id, m.name as model, v.version, v.status, v.description, v.config, v.source, v.tags, v.status_reason, v.created_at, v.updated_at, v.created_by"
new="with a as (select $cols, s.last_value as sort_value from metric_series s join versions v on v.id = s.version_id join models m on m.id = v.model_id where s.model_id = '$model' and s.key = 'val/acc' and s.last_value is not null and v.model_id = '$model' and true order by s.last_value desc fetch first 11 rows with ties), b as (select $cols, cast(null as double precision) as sort_value from versions v join models m on m.id = v.model_id where v.model_id = '$model' and true and (select count(*) from a) < 11 and not exists (select 1 from metric_series s where s.version_id = v.id and s.key = 'val/acc' and s.last_value is not null) order by v.version desc limit 11) select * from (select * from a union all select * from b) y order by (y.sort_value is null), y.sort_value desc, y.version desc limit 11"
old="select * from (select x.*, (select r.last from metric_series s join metric_rollups r on r.series_id = s.id and r.level = 3 where s.version_id = x.id and s.key = 'val/acc' order by r.block desc limit 1) as sort_value from (select $cols from versions v join models m on m.id = v.model_id where v.model_id = '$model') x offset 0) y where true order by (y.sort_value is null), y.sort_value desc, y.version desc limit 11"
sql_median() { # label, query
    local times
    times=$( { echo '\timing on'; for _ in $(seq 1 20); do echo "$2;"; done; } | psql "$PG/$DB" -qAt -o /dev/null 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n)
    echo "{\"sql\": \"$1\", \"median_ms\": $(echo "$times" | sed -n '10p'), \"best_ms\": $(echo "$times" | head -1)}"
}
sql_median "top10, series last values (this layout)" "$new"
sql_median "top10, rollup probe per version (previous layout)" "$old"
psql "$PG/$DB" -qAtc "explain (costs off) $new" | head -12
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" >/dev/null
