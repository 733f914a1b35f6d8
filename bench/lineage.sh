#!/usr/bin/env bash
# Lineage at 100,000 versions with 3 inputs each (Postgres). The fixture, written in SQL as
# registration writes it: 100 models (lin-000 … lin-099) of 1,000 ready versions; version k
# (0 … 99,999; model k / 1000, number k % 1000 + 1) used the training dataset
# `train-(k % 997)` and the evaluation dataset `eval-(k / 1000)`, and was fine-tuned from
# version (k - 1) / 5 (a five-way tree: a depth-3 read down from one version reaches
# 1 + 5 + 25 + 125 = 156); version 0 has a code input instead. `production` holds each model's
# version 1000 and `staging` its version 999: 200 live versions. Prints, one client, 10 s
# each, over HTTP (p50/p99 in ms, as loadgen reports them):
# - `live-users`: GET /api/v1/lineage/datasets?digest=…&staged=true, the live versions trained
#   on one dataset (one of them live);
# - `all-users`: the same without staged: the first page of 100 of its ~100 users;
# - `down-3`: GET …/lin-000/versions/2/lineage?direction=down&depth=3 (156 nodes);
# - `up-3`: the same upwards from a leaf (4 nodes);
# then the cost on registration: `register` (config and tags) and `register-inputs` (the
# same with 2 dataset inputs and 1 version input), 1 and 8 clients, alternated 3 times.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=modelreg_lineage_bench
ADDR=127.0.0.1:18098
ROUNDS=${BENCH_ROUNDS:-3}
cargo build --release --locked --bin modelreg --example loadgen >&2
BIN=${BENCH_BIN:-$PWD/target/release/modelreg}
LOADGEN=$PWD/target/release/examples/loadgen
psql "$PG/postgres" -qc "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
dir=$(mktemp -d)
(cd "$dir" && exec env RUST_LOG=warn MODELREG_LISTEN=$ADDR MODELREG_DATABASE_URL="$PG/$DB" "$BIN" serve) > "$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
until curl -sf -o /dev/null "http://$ADDR/readyz"; do sleep 0.05; done

start=$(date +%s.%N)
psql "$PG/$DB" -v ON_ERROR_STOP=1 -q <<'SQL'
insert into models (id, name, last_version, created_at, updated_at, created_by)
select gen_random_uuid(), format('lin-%s', lpad(m::text, 3, '0')), 1000, now(), now(), 'bench'
from generate_series(0, 99) m;
create temp table k as
select g as k, (select id from models where name = format('lin-%s', lpad((g / 1000)::text, 3, '0'))) as model_id,
       g % 1000 + 1 as version, gen_random_uuid() as id
from generate_series(0, 99999) g;
insert into versions (id, model_id, version, status, config, source, tags, created_at, updated_at, created_by)
select id, model_id, version, 'ready', '{"lr": 0.01}', '{}', '{}', now(), now(), 'bench' from k;
insert into version_inputs (version_id, position, kind, name, digest, body, created_at)
select id, 0, 'dataset', format('train-%s', k % 997), format('sha256:train-%s', k % 997),
       jsonb_build_object('kind', 'dataset', 'name', format('train-%s', k % 997),
                          'digest', format('sha256:train-%s', k % 997), 'context', 'training'), now()
from k;
insert into version_inputs (version_id, position, kind, name, digest, body, created_at)
select id, 1, 'dataset', format('eval-%s', k / 1000), format('sha256:eval-%s', k / 1000),
       jsonb_build_object('kind', 'dataset', 'name', format('eval-%s', k / 1000),
                          'digest', format('sha256:eval-%s', k / 1000), 'context', 'evaluation'), now()
from k;
insert into version_inputs (version_id, position, kind, name, digest, body, created_at)
select c.id, 2, 'version', format('lin-%s', lpad((p.k / 1000)::text, 3, '0')), p.version::text,
       jsonb_build_object('kind', 'version', 'model', format('lin-%s', lpad((p.k / 1000)::text, 3, '0')),
                          'version', p.version, 'relation', 'fine_tuned_from'), now()
from k c join k p on p.k = (c.k - 1) / 5 where c.k > 0;
insert into version_inputs (version_id, position, kind, name, digest, body, created_at)
select id, 2, 'code', 'https://git.example/train', 'a1b2c3',
       '{"kind": "code", "uri": "https://git.example/train", "commit": "a1b2c3"}', now()
from k where k = 0;
insert into stages (model_id, name, version, depth, since, updated_at)
select id, s.name, s.version, 1, now(), now() from models, (values ('production', 1000), ('staging', 999)) s(name, version)
where models.name like 'lin-%';
insert into stage_stack (model_id, stage, position, version)
select model_id, name, 1, version from stages;
analyze;
SQL
echo "{\"fixture\": \"100000 versions, 300000 inputs\", \"load_seconds\": $(echo "$(date +%s.%N) - $start" | bc)}"

# The dataset of lin-000's version 1000 (k = 999): train-(999 % 997) = train-2.
get() {
    printf '%s ' "$1"
    "$LOADGEN" http get --path "$2" --base "http://$ADDR" --clients 1 --seconds 10 --server-pid "$pid"
}
get live-users '/api/v1/lineage/datasets?digest=sha256:train-2&staged=true'
get all-users '/api/v1/lineage/datasets?digest=sha256:train-2'
get down-3 '/api/v1/models/lin-000/versions/2/lineage?direction=down&depth=3'
get up-3 '/api/v1/models/lin-099/versions/1000/lineage?direction=up&depth=3'
curl -s "http://$ADDR/api/v1/lineage/datasets?digest=sha256:train-2&staged=true" | head -c 600; echo
curl -s "http://$ADDR/api/v1/models/lin-000/versions/2/lineage?direction=down&depth=3" \
    | python3 -c 'import json,sys; g=json.load(sys.stdin); print({"nodes": len(g["nodes"]), "edges": len(g["edges"])})'

# Registration with and without inputs, alternated.
for m in bench-register bench-base; do
    curl -sf -o /dev/null -XPUT "http://$ADDR/api/v1/models/$m" -H 'content-type: application/json' -d '{}'
done
curl -sf -o /dev/null -XPOST "http://$ADDR/api/v1/models/bench-base/versions" -H 'content-type: application/json' -d '{"finalize": true}'
for round in $(seq 1 "$ROUNDS"); do
    for clients in 1 8; do
        for scenario in register register-inputs; do
            printf 'round-%s %s-%s ' "$round" "$scenario" "$clients"
            "$LOADGEN" http "$scenario" --base "http://$ADDR" --clients "$clients" --seconds 10 --server-pid "$pid"
        done
    done
done
