//! Points packed into compressed blocks read back exactly as written: random batches (appends
//! across block boundaries, overwrites into packed blocks and into open tails, sparse jumps,
//! in-batch duplicates) against a plain in-memory reference, raw and bucketed; f64 edge
//! values bit for bit; tails packed once their version is finished.

use crate::helpers::{Rng, TestApp};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::BTreeMap;

crate::backend_tests!(
    packed_reads_match_a_plain_reference,
    edge_values_round_trip_through_packed_blocks,
    finished_versions_have_their_tails_packed,
);

const QUIET: crate::helpers::Setup = crate::helpers::Setup {
    adjust: no_compactor,
    ..crate::helpers::Setup::PLAIN
};

/// The server's own compactor is off: the case drives it.
fn no_compactor(c: &mut modelreg::config::Config) {
    c.compactor = false;
}

crate::backend_tests!(with super::QUIET;
    a_series_that_cannot_be_packed_is_set_aside,
    a_long_legacy_series_packs_in_bounded_steps,
);

const BASE: &str = "/api/v1/models/m/versions/1/metrics";

/// A point value: sometimes an integer, mostly a decimal with a small fraction.
fn value(rng: &mut Rng) -> f64 {
    match rng.below_i64(8) {
        0 => (rng.below_i64(1000) - 500) as f64,
        _ => {
            (rng.below_i64(2_000_001)) as f64 / 1000.0 - 1000.0 + rng.below_i64(1000) as f64 * 1e-7
        }
    }
}

/// One scalar of a bigint count, on the case's database.
async fn count(app: &TestApp, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if app.db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }
}

async fn raw(app: &TestApp, key: &str, query: &str) -> Vec<(i64, u64)> {
    let r = app.get(&format!("{BASE}/{key}{query}")).await;
    r.ok(200)["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {}", r.body))
        .iter()
        .map(|p| {
            (
                p["step"].as_i64().unwrap(),
                p["value"].as_f64().unwrap().to_bits(),
            )
        })
        .collect()
}

fn bits(points: &BTreeMap<i64, f64>) -> Vec<(i64, u64)> {
    points.iter().map(|(s, v)| (*s, v.to_bits())).collect()
}

/// Asserts two reads are the same, naming the first point where they differ.
#[track_caller]
fn same(got: &[(i64, u64)], want: &[(i64, u64)], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|i| got.get(*i) != want.get(*i)) {
        let show = |p: Option<&(i64, u64)>| p.map(|(s, b)| (*s, f64::from_bits(*b)));
        panic!(
            "{what}: {} points, {} wanted; first difference at {i}: {:?}, wanted {:?}",
            got.len(),
            want.len(),
            show(got.get(i)),
            show(want.get(i))
        );
    }
}

/// Every raw and bucketed read of `key` against the reference.
async fn compare(app: &TestApp, key: &str, reference: &BTreeMap<i64, f64>, rng: &mut Rng) {
    same(
        &raw(app, key, "").await,
        &bits(reference),
        &format!("key {key}: every point"),
    );
    let last = *reference.keys().next_back().unwrap();
    for _ in 0..3 {
        let from = rng.below_i64(last + 1);
        let to = from + rng.below_i64(last - from + 1);
        let want: BTreeMap<i64, f64> = reference.range(from..=to).map(|(s, v)| (*s, *v)).collect();
        let got = raw(app, key, &format!("?from_step={from}&to_step={to}")).await;
        same(
            &got,
            &bits(&want),
            &format!("key {key}: points of {from}..={to}"),
        );
        for max_points in [1, 7, 100, 1000] {
            let query = format!("?from_step={from}&to_step={to}&max_points={max_points}");
            buckets(app, key, &query, &want).await;
        }
    }
    for max_points in [3, 500] {
        buckets(app, key, &format!("?max_points={max_points}"), reference).await;
    }
}

async fn buckets(app: &TestApp, key: &str, query: &str, want: &BTreeMap<i64, f64>) {
    let r = app.get(&format!("{BASE}/{key}{query}")).await;
    let body = r.ok(200);
    let Some(buckets) = body["buckets"].as_array() else {
        // A range this short is answered raw.
        let got: Vec<(i64, u64)> = body["points"]
            .as_array()
            .unwrap_or_else(|| panic!("neither buckets nor points: {body}"))
            .iter()
            .map(|p| {
                (
                    p["step"].as_i64().unwrap(),
                    p["value"].as_f64().unwrap().to_bits(),
                )
            })
            .collect();
        same(&got, &bits(want), &format!("{key}{query}"));
        return;
    };
    check_buckets(buckets, want, &format!("{key}{query}"));
}

/// Asserts that buckets summarise exactly the points of `want` in their step ranges, and
/// cover them all.
fn check_buckets(buckets: &[Value], want: &BTreeMap<i64, f64>, what: &str) {
    let mut covered = 0;
    for b in buckets {
        let (s0, s1) = (
            b["step_start"].as_i64().unwrap(),
            b["step_end"].as_i64().unwrap(),
        );
        let pts: Vec<f64> = want.range(s0..=s1).map(|(_, v)| *v).collect();
        let ctx = format!("{what} bucket {s0}..={s1}");
        assert_eq!(b["count"].as_i64().unwrap(), pts.len() as i64, "{ctx}");
        let min = pts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = pts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(b["min"].as_f64().unwrap(), min, "{ctx}");
        assert_eq!(b["max"].as_f64().unwrap(), max, "{ctx}");
        assert_eq!(b["last"].as_f64().unwrap(), *pts.last().unwrap(), "{ctx}");
        let mean = pts.iter().sum::<f64>() / pts.len() as f64;
        let got = b["mean"].as_f64().unwrap();
        assert!(
            (got - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{ctx}: mean {got} vs {mean}"
        );
        covered += pts.len();
    }
    assert_eq!(covered, want.len(), "{what}: every point is in a bucket");
}

async fn packed_reads_match_a_plain_reference(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    let (mut rng, seed) = Rng::from_env();
    let keys = ["a", "b", "c"];
    let mut reference: BTreeMap<&str, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut head = 0;
    for round in 0..16 {
        let n = match rng.below_i64(4) {
            0 => 1,
            1 => 40,
            _ => 1500,
        };
        let mut points: Vec<Value> = Vec::new();
        for _ in 0..n {
            let key = keys[rng.below_i64(3) as usize];
            let step = match rng.below_i64(6) {
                // Anywhere written so far: mostly packed blocks.
                0 => rng.below_i64(head + 1),
                // Near the head: the open tail and the block before it.
                1 => (head - rng.below_i64(1500)).max(0),
                // A sparse jump ahead, leaving empty blocks behind.
                2 => head + 5000 + rng.below_i64(20_000),
                _ => head + rng.below_i64(3000),
            };
            let value = value(&mut rng);
            points.push(json!({"key": key, "step": step, "value": value}));
            reference.entry(key).or_default().insert(step, value);
        }
        app.post(BASE, json!({"points": points})).await.ok(200);
        head = reference
            .values()
            .filter_map(|r| r.keys().next_back())
            .max()
            .map_or(0, |s| s + 1);
        if round % 5 == 4 || round == 15 {
            for (key, want) in &reference {
                compare(app, key, want, &mut rng).await;
            }
        }
    }
    assert!(
        count(app, "select cast(count(*) as bigint) from metric_blocks").await > 10,
        "completed blocks are packed"
    );
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    assert!(report.is_clean(), "seed {seed}: {:#?}", report.findings);
}

async fn edge_values_round_trip_through_packed_blocks(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    let edges = [
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        -f64::from_bits(1),
        f64::from_bits(0x000F_FFFF_FFFF_FFFF),
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1.0 + f64::EPSILON,
        -1e-300,
        123_456_789.123_456_79,
    ];
    let mut reference = BTreeMap::new();
    let mut points = Vec::new();
    for step in 0..3000 {
        let value = edges[step as usize % edges.len()];
        points.push(json!({"key": "e", "step": step, "value": value}));
        reference.insert(step, value);
    }
    app.post(BASE, json!({"points": points})).await.ok(200);
    // Overwrite inside a packed block with other edge values, then read back bit for bit.
    let again: Vec<Value> = (100..140)
        .map(|s| {
            let value = edges[(s as usize + 5) % edges.len()];
            reference.insert(s, value);
            json!({"key": "e", "step": s, "value": value})
        })
        .collect();
    app.post(BASE, json!({"points": again})).await.ok(200);
    // Blocks 0 and 1 are complete, and the batch brought the open tail enough points to pack.
    assert_eq!(
        count(app, "select cast(count(*) as bigint) from metric_blocks").await,
        3
    );
    same(&raw(app, "e", "").await, &bits(&reference), "every point");
    let got = raw(app, "e", "?from_step=1000&to_step=2100").await;
    let want: BTreeMap<i64, f64> = reference
        .range(1000..=2100)
        .map(|(s, v)| (*s, *v))
        .collect();
    same(&got, &bits(&want), "points of 1000..=2100");
    // A small batch into an open tail keeps -0.0 too (SQLite's REAL column would not: such a
    // tail is packed).
    for (step, value) in [(5, -0.0), (6, 0.0), (7, -0.0)] {
        let point = json!({"key": "z", "step": step, "value": value});
        app.post(BASE, json!({"points": [point]})).await.ok(200);
    }
    let want = [(5, (-0.0f64).to_bits()), (6, 0), (7, (-0.0f64).to_bits())];
    same(
        &raw(app, "z", "").await,
        &want,
        "signed zeros in an open tail",
    );
}

async fn finished_versions_have_their_tails_packed(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    let point = |s: i64| json!({"key": "loss", "step": s, "value": 1.0 / (s as f64 + 1.0)});
    let points: Vec<Value> = (0..2048).map(point).collect();
    app.post(BASE, json!({"points": points})).await.ok(200);
    // Small batches add rows to the open tail.
    for from in (2048..3008).step_by(40) {
        let points: Vec<Value> = (from..from + 40).map(point).collect();
        app.post(BASE, json!({"points": points})).await.ok(200);
    }
    let before = raw(app, "loss", "").await;
    assert_eq!(before.len(), 3008);
    let rows = "select cast(count(*) as bigint) from metric_points";
    let tail = 3008 - 2048;
    assert_eq!(count(app, rows).await, tail, "the open tail is rows");
    app.post_empty("/api/v1/models/m/versions/1/finalize")
        .await
        .ok(200);
    // The server's compactor may take it first; either way it ends packed.
    app.state.store.compact_pending(100).await.unwrap();
    assert_eq!(count(app, rows).await, 0, "no rows are left");
    assert_eq!(
        count(app, "select cast(count(*) as bigint) from metric_blocks").await,
        3
    );
    assert_eq!(app.state.store.compact_pending(100).await.unwrap(), 0);
    assert_eq!(raw(app, "loss", "").await, before);
    // A late point lands in the packed tail.
    app.post(
        BASE,
        json!({"points": [{"key": "loss", "step": 2999, "value": 7.0}]}),
    )
    .await
    .ok(200);
    let last = raw(app, "loss", "?from_step=2990&to_step=2999").await;
    assert_eq!(last.last(), Some(&(2999, 7.0f64.to_bits())));
    assert_eq!(count(app, rows).await, 0);
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

/// One series whose stored block does not decode: the compactor packs the others, sets it
/// aside with its error (not taken first again), counts it, and `verify` reports it.
async fn a_series_that_cannot_be_packed_is_set_aside(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    for key in ["bad", "good"] {
        let points: Vec<Value> = (0..40)
            .map(|s| json!({"key": key, "step": s, "value": s as f64}))
            .collect();
        app.post(BASE, json!({"points": points})).await.ok(200);
    }
    app.post_empty("/api/v1/models/m/versions/1/finalize")
        .await
        .ok(200);
    let junk = if app.db_url.starts_with("sqlite:") {
        "x'ffffffff'"
    } else {
        "'\\xffffffff'::bytea"
    };
    app.exec(&format!(
        "insert into metric_blocks (series_id, block, count, data) \
             select id, 0, 1, {junk} from metric_series where key = 'bad'"
    ))
    .await;
    assert_eq!(app.state.store.compact_pending(100).await.unwrap(), 2);
    let rows = |key: &str| {
        format!(
            "select cast(count(*) as bigint) from metric_points p \
             join metric_series s on s.id = p.series_id where s.key = '{key}'"
        )
    };
    assert_eq!(
        count(app, &rows("good")).await,
        0,
        "the good series is packed"
    );
    assert_eq!(
        count(app, &rows("bad")).await,
        40,
        "the bad one is left as it was"
    );
    assert_eq!(app.state.store.compaction_failures().await.unwrap(), 1);
    assert_eq!(
        app.state.store.compact_pending(100).await.unwrap(),
        0,
        "a series set aside is not taken first again"
    );
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    let found: Vec<&str> = report.findings.iter().map(|f| f.check).collect();
    assert!(found.contains(&"compaction"), "{:#?}", report.findings);
}

/// A series stored before blocks existed, spanning more blocks than one transaction packs
/// (1,100 > 1,024), converts completely in bounded steps.
async fn a_long_legacy_series_packs_in_bounded_steps(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    app.post(
        BASE,
        json!({"points": [{"key": "old", "step": 0, "value": 0.5}]}),
    )
    .await
    .ok(200);
    app.post_empty("/api/v1/models/m/versions/1/finalize")
        .await
        .ok(200);
    app.state.store.compact_pending(100).await.unwrap();
    app.exec(
        "with recursive g(n) as (select 1 union all select n + 1 from g where n < 1099) \
         insert into metric_points (series_id, step, value, at) \
         select s.id, g.n * 1024, 1.5, 0 from g, metric_series s where s.key = 'old'",
    )
    .await;
    app.exec("update metric_series set compact_pending = true, last_step = 1099 * 1024 where key = 'old'",
    )
    .await;
    let rows = "select cast(count(*) as bigint) from metric_points";
    assert_eq!(count(app, rows).await, 1099);
    assert_eq!(app.state.store.compact_pending(100).await.unwrap(), 1);
    assert_eq!(count(app, rows).await, 0, "every row is packed");
    let blocks = "select cast(count(*) as bigint) from metric_blocks";
    assert_eq!(count(app, blocks).await, 1100);
    assert_eq!(app.state.store.compact_pending(100).await.unwrap(), 0);
}
