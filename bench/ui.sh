#!/usr/bin/env bash
# Page timings in headless chromium, from navigation to drawn (the page's `modelreg:ready`
# mark), on the release binary: the model page with 1,000 versions, the version page charting a
# 1,000,000-point series, the compare page overlaying 5 versions of 200,000 points. Each view is
# loaded 5 times; medians and maxima are printed and written to target/ui-timings-*.json. Runs
# on a new SQLite file and on a new Postgres database. The screenshots of the large views go to
# target/ui-screens-bench/ (the README's pictures come from there).
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
VENV=${BENCH_VENV:-target/ci-venv}
cargo build --release --locked --bin modelreg >&2
if ! "$VENV/bin/python" -c 'import selenium' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'selenium>=4.20,<5'
fi
echo "== sqlite"
"$VENV/bin/python" tests/browser/ui_check.py --bin target/release/modelreg \
    --out target/ui-screens-bench --timings target/ui-timings-sqlite.json
echo "== postgres"
psql "$PG/postgres" -qc "drop database if exists modelreg_ui_bench with (force)" -c "create database modelreg_ui_bench" >/dev/null
"$VENV/bin/python" tests/browser/ui_check.py --bin target/release/modelreg --database-url "$PG/modelreg_ui_bench" \
    --out target/ui-screens-bench-pg --timings target/ui-timings-postgres.json
psql "$PG/postgres" -qc "drop database if exists modelreg_ui_bench with (force)" >/dev/null
