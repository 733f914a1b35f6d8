use crate::helpers::TestApp;
use serde_json::{Value, json};

crate::backend_tests!(
    hundred_thousand_points_round_trip,
    duplicates_keep_one_point_with_the_last_value,
    spikes_survive_downsampling,
    invalid_points_write_nothing,
    rollups_agree_with_a_full_scan,
    summaries_overlay_and_version_detail,
    compare_reports_differences,
    last_values_follow_each_batch,
    path_like_metric_keys_are_refused,
);

const BASE: &str = "/api/v1/models/m/versions";

async fn setup(app: &TestApp, versions: usize) {
    app.model("m").await;
    for _ in 0..versions {
        app.version("m", json!({})).await;
    }
}

async fn post_points(app: &TestApp, version: i64, points: Vec<Value>) -> crate::helpers::Resp {
    app.post(
        &format!("{BASE}/{version}/metrics"),
        json!({"points": points}),
    )
    .await
}

async fn raw(app: &TestApp, version: i64, key: &str, query: &str) -> Vec<(i64, f64)> {
    let r = app
        .get(&format!("{BASE}/{version}/metrics/{key}{query}"))
        .await;
    r.ok(200)["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {}", r.body))
        .iter()
        .map(|p| (p["step"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
        .collect()
}

async fn hundred_thousand_points_round_trip(app: &TestApp) {
    setup(app, 1).await;
    let value = |s: i64| ((s as f64) * 0.001).sin() * 1e3 + (s % 13) as f64 / 7.0;
    for batch in 0..10 {
        let points: Vec<Value> = (batch * 10_000..(batch + 1) * 10_000)
            .map(|s| json!({"key": "train/loss", "step": s, "value": value(s)}))
            .collect();
        let r = post_points(app, 1, points).await;
        assert_eq!(r.ok(200)["accepted"], 10_000);
    }
    let r = app.get(&format!("{BASE}/1/metrics/train/loss")).await;
    assert_eq!(r.ok(200)["key"], "train/loss");
    let points = r.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 100_000);
    for (i, p) in points.iter().enumerate() {
        let s = i as i64;
        assert_eq!(p["step"], s);
        assert_eq!(p["value"].as_f64().unwrap(), value(s), "step {s}");
    }
    assert!(points[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    // A range, both ends inclusive.
    let got = raw(app, 1, "train/loss", "?from_step=500&to_step=510").await;
    assert_eq!(
        got.iter().map(|p| p.0).collect::<Vec<_>>(),
        (500..=510).collect::<Vec<_>>()
    );
    let got = raw(app, 1, "train/loss", "?from_step=200000").await;
    assert!(got.is_empty());
}

async fn duplicates_keep_one_point_with_the_last_value(app: &TestApp) {
    setup(app, 1).await;
    let batch = vec![
        json!({"key": "acc", "step": 1, "value": 0.1}),
        json!({"key": "acc", "step": 2, "value": 0.2}),
        json!({"key": "acc", "step": 1, "value": 0.15}),
        json!({"key": "loss", "step": 1, "value": 9.0, "timestamp": "2026-01-02T03:04:05.123456Z"}),
    ];
    post_points(app, 1, batch.clone()).await.ok(200);
    // A retry of the same batch changes nothing.
    post_points(app, 1, batch).await.ok(200);
    assert_eq!(raw(app, 1, "acc", "").await, [(1, 0.15), (2, 0.2)]);
    let r = app.get(&format!("{BASE}/1/metrics/loss")).await;
    assert_eq!(
        r.ok(200)["points"][0]["timestamp"],
        "2026-01-02T03:04:05.123456Z"
    );
    // A later batch overwrites across batches, and out-of-order appends are fine.
    post_points(
        app,
        1,
        vec![
            json!({"key": "acc", "step": 2, "value": 0.25}),
            json!({"key": "acc", "step": 0, "value": 0.05}),
        ],
    )
    .await
    .ok(200);
    assert_eq!(
        raw(app, 1, "acc", "").await,
        [(0, 0.05), (1, 0.15), (2, 0.25)]
    );
    let s = app.get(&format!("{BASE}/1/metrics")).await;
    let acc = &s.ok(200)["items"][0];
    assert_eq!(acc["key"], "acc");
    assert_eq!(
        (
            acc["count"].as_i64(),
            acc["first_step"].as_i64(),
            acc["last_step"].as_i64()
        ),
        (Some(3), Some(0), Some(2))
    );
    assert_eq!(
        (
            acc["min"].as_f64(),
            acc["max"].as_f64(),
            acc["last"].as_f64()
        ),
        (Some(0.05), Some(0.25), Some(0.25))
    );
}

async fn spikes_survive_downsampling(app: &TestApp) {
    setup(app, 1).await;
    let points: Vec<Value> = (0..10_000)
        .map(|s| json!({"key": "grad_norm", "step": s, "value": if s == 4321 { 1000.0 } else { (s % 10) as f64 * 0.01 }}))
        .collect();
    post_points(app, 1, points).await.ok(200);
    let r = app
        .get(&format!("{BASE}/1/metrics/grad_norm?max_points=100"))
        .await;
    let buckets = r.ok(200)["buckets"].as_array().unwrap().clone();
    assert!(
        buckets.len() <= 100 && buckets.len() >= 50,
        "{} buckets",
        buckets.len()
    );
    let total: i64 = buckets.iter().map(|b| b["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 10_000);
    let spike = buckets
        .iter()
        .find(|b| {
            b["step_start"].as_i64().unwrap() <= 4321 && 4321 <= b["step_end"].as_i64().unwrap()
        })
        .unwrap();
    assert_eq!(spike["max"], 1000.0);
    let widths: Vec<i64> = buckets
        .iter()
        .map(|b| b["step_end"].as_i64().unwrap() - b["step_start"].as_i64().unwrap())
        .collect();
    assert!(
        widths[..widths.len() - 1].windows(2).all(|w| w[0] == w[1]),
        "equal widths: {widths:?}"
    );
    // Fewer points than asked for: the points themselves.
    let r = app
        .get(&format!(
            "{BASE}/1/metrics/grad_norm?max_points=100&from_step=4300&to_step=4340"
        ))
        .await;
    assert_eq!(r.ok(200)["points"].as_array().unwrap().len(), 41);
}

async fn invalid_points_write_nothing(app: &TestApp) {
    setup(app, 1).await;
    let good = |s: i64| json!({"key": "acc", "step": s, "value": 1.0});
    let cases = [
        (
            json!({"key": "acc", "step": -1, "value": 1.0}),
            "points[2].step",
        ),
        (
            json!({"key": "bad key", "step": 1, "value": 1.0}),
            "points[2].key",
        ),
        (
            json!({"key": "acc", "step": 1.5, "value": 1.0}),
            "points[2].step",
        ),
        (
            json!({"key": "acc", "step": 1, "value": "high"}),
            "points[2].value",
        ),
        (
            json!({"key": "acc", "step": 1, "value": 1.0, "extra": 1}),
            "points[2].extra",
        ),
        (
            json!({"key": "acc", "step": 1, "value": 1.0, "timestamp": "yesterday"}),
            "points[2].timestamp",
        ),
        (json!({"key": "acc", "step": 1}), "points[2]"),
    ];
    for (bad, field) in cases {
        let r = post_points(app, 1, vec![good(0), good(1), bad.clone()]).await;
        assert_eq!(r.problem(422, "validation_failed")["field"], field, "{bad}");
    }
    let body = r#"{"points": [{"key": "acc", "step": 1, "value": 1.0}, {"key": "acc", "step": 2, "value": NaN}]}"#;
    app.raw(reqwest::Method::POST, &format!("{BASE}/1/metrics"), body)
        .await
        .problem(400, "malformed_json");
    let body = r#"{"points": [{"key": "acc", "step": 1, "value": 1e999}]}"#;
    let r = app
        .raw(reqwest::Method::POST, &format!("{BASE}/1/metrics"), body)
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    let many: Vec<Value> = (0..10_001).map(good).collect();
    let r = post_points(app, 1, many).await;
    assert_eq!(r.problem(413, "too_many_points")["field"], "points");
    post_points(app, 9, vec![good(0)])
        .await
        .problem(404, "version_not_found");
    // Nothing of any refused batch was written.
    let s = app.get(&format!("{BASE}/1/metrics")).await;
    assert!(s.ok(200)["items"].as_array().unwrap().is_empty());
    app.get(&format!("{BASE}/1/metrics/acc"))
        .await
        .problem(404, "metric_not_found");
    app.get(&format!("{BASE}/1/metrics/bad%20key"))
        .await
        .problem(400, "invalid_path_parameter");
    for q in [
        "max_points=0",
        "from_step=-1",
        "from_step=5&to_step=4",
        "max_points=x",
    ] {
        let r = app.get(&format!("{BASE}/1/metrics/acc?{q}")).await;
        r.problem(400, "invalid_query_parameter");
    }
    // An empty batch is accepted and writes nothing.
    assert_eq!(post_points(app, 1, vec![]).await.ok(200)["accepted"], 0);
}

/// A small deterministic generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
    fn value(&mut self) -> f64 {
        (self.next() % 2_000_001) as f64 / 1000.0 - 1000.0 + (self.next() % 1000) as f64 * 1e-7
    }
}

async fn rollups_agree_with_a_full_scan(app: &TestApp) {
    setup(app, 1).await;
    let seed = std::env::var("MODELREG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x2545_F491_4F6C_DD1D);
    let mut rng = Rng(seed);
    // Appends, overwrites of old steps, sparse jumps and in-batch duplicates, over two keys.
    for batch in 0..12 {
        let mut points = vec![];
        for _ in 0..1500 {
            let key = if rng.below(4) == 0 { "b" } else { "a" };
            let step = match rng.below(5) {
                0 => rng.below(400),
                1 => 40_000 + rng.below(70_000),
                _ => batch * 3000 + rng.below(3000),
            };
            points.push(json!({"key": key, "step": step, "value": rng.value()}));
        }
        post_points(app, 1, points).await.ok(200);
    }
    for key in ["a", "b"] {
        let all = raw(app, 1, key, "").await;
        assert!(
            all.windows(2).all(|w| w[0].0 < w[1].0),
            "one point per step, in order"
        );
        for (query, from, to) in [
            ("?max_points=1000", None, None),
            ("?max_points=37", None, None),
            (
                "?max_points=200&from_step=1234&to_step=98765",
                Some(1234),
                Some(98765),
            ),
            ("?max_points=10&from_step=30000", Some(30000), None),
            ("?max_points=3&to_step=700", None, Some(700)),
        ] {
            let r = app.get(&format!("{BASE}/1/metrics/{key}{query}")).await;
            let Some(buckets) = r.ok(200)["buckets"].as_array() else {
                continue;
            };
            let in_range: Vec<&(i64, f64)> = all
                .iter()
                .filter(|p| from.is_none_or(|f| p.0 >= f) && to.is_none_or(|t| p.0 <= t))
                .collect();
            let mut covered = 0;
            for b in buckets {
                let (s0, s1) = (
                    b["step_start"].as_i64().unwrap(),
                    b["step_end"].as_i64().unwrap(),
                );
                let pts: Vec<&&(i64, f64)> =
                    in_range.iter().filter(|p| p.0 >= s0 && p.0 <= s1).collect();
                let ctx = format!("seed {seed} key {key} {query} bucket {s0}..{s1}");
                assert_eq!(b["count"].as_i64().unwrap(), pts.len() as i64, "{ctx}");
                let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                let max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(b["min"].as_f64().unwrap(), min, "{ctx}");
                assert_eq!(b["max"].as_f64().unwrap(), max, "{ctx}");
                assert_eq!(b["last"].as_f64().unwrap(), pts.last().unwrap().1, "{ctx}");
                let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
                let got = b["mean"].as_f64().unwrap();
                assert!(
                    (got - mean).abs() <= 1e-9 * mean.abs().max(1.0),
                    "{ctx}: mean {got} vs {mean}"
                );
                covered += pts.len();
            }
            assert_eq!(
                covered,
                in_range.len(),
                "every point in range is in a bucket ({query})"
            );
        }
    }
}

async fn summaries_overlay_and_version_detail(app: &TestApp) {
    setup(app, 3).await;
    for v in 1..=2 {
        let points: Vec<Value> = (0..3000)
            .map(|s| json!({"key": "val/acc", "step": s, "value": v as f64 + s as f64 / 1e4}))
            .collect();
        post_points(app, v, points).await.ok(200);
    }
    let r = app.get(&format!("{BASE}/1")).await;
    let m = &r.ok(200)["metrics"][0];
    assert_eq!(m["key"], "val/acc");
    assert_eq!(m["count"], 3000);
    assert_eq!(m["last"], 1.2999);

    let r = app
        .get("/api/v1/models/m/metrics/val/acc?versions=1,2,3&max_points=100")
        .await;
    let series = r.ok(200)["series"].as_array().unwrap().clone();
    assert_eq!(r.body["key"], "val/acc");
    assert_eq!(
        series
            .iter()
            .map(|s| s["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(series[0]["buckets"].as_array().unwrap().len() <= 100);
    assert_eq!(series[1]["buckets"][0]["min"], 2.0);
    assert_eq!(series[2]["points"], json!([]));
    let r = app
        .get("/api/v1/models/m/metrics/val/acc?versions=1&max_points=5000")
        .await;
    assert_eq!(
        r.ok(200)["series"][0]["points"].as_array().unwrap().len(),
        3000
    );
    app.get("/api/v1/models/m/metrics/val/acc?versions=1,9")
        .await
        .problem(404, "version_not_found");
    app.get("/api/v1/models/m/metrics/val/acc?versions=x")
        .await
        .problem(400, "invalid_query_parameter");
    app.get("/api/v1/models/m/metrics/val/acc")
        .await
        .problem(400, "invalid_query_parameter");
}

async fn compare_reports_differences(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({"config": {"optimizer": {"name": "adam", "lr": 0.1}, "layers": [64, 32], "seed": 7}, "tags": {"dataset": "v1", "team": "a"}}))
        .await;
    app.version("m", json!({"config": {"optimizer": {"name": "adam", "lr": 0.01}, "layers": [64, 32], "seed": 7, "dropout": 0.2}, "tags": {"dataset": "v2", "team": "a"}}))
        .await;
    post_points(
        app,
        1,
        vec![json!({"key": "acc", "step": 10, "value": 0.91})],
    )
    .await
    .ok(200);
    post_points(
        app,
        2,
        vec![json!({"key": "acc", "step": 10, "value": 0.93})],
    )
    .await
    .ok(200);
    let r = app.get("/api/v1/models/m/compare?versions=1,2").await;
    let c = r.ok(200);
    assert_eq!(c["versions"], json!([1, 2]));
    assert_eq!(
        c["config"],
        json!([
            {"path": "/dropout", "values": {"2": 0.2}},
            {"path": "/optimizer/lr", "values": {"1": 0.1, "2": 0.01}},
        ])
    );
    assert_eq!(
        c["tags"],
        json!([{"key": "dataset", "values": {"1": "v1", "2": "v2"}}])
    );
    assert_eq!(c["metrics"]["acc"]["1"]["last"], 0.91);
    assert_eq!(c["metrics"]["acc"]["2"]["last"], 0.93);
    assert_eq!(c["artifacts"], json!([]));
    app.get("/api/v1/models/m/compare?versions=1")
        .await
        .problem(400, "invalid_query_parameter");
    app.get("/api/v1/models/m/compare?versions=1,3")
        .await
        .problem(404, "version_not_found");
}

/// Each series keeps its last value (what `order_by`, `filter` and `?metrics=` read): a batch
/// of several keys moves those it reaches the end of, and leaves those it writes behind.
async fn last_values_follow_each_batch(app: &TestApp) {
    setup(app, 2).await;
    let p = |key: &str, step: i64, value: f64| json!({"key": key, "step": step, "value": value});
    post_points(app, 1, vec![p("a", 5, 0.5), p("b", 5, 0.5), p("c", 5, 0.5)])
        .await
        .ok(200);
    // a: appended; b: rewritten at its last step; c: rewritten behind it.
    post_points(app, 1, vec![p("a", 9, 0.9), p("b", 5, 0.7), p("c", 1, 0.1)])
        .await
        .ok(200);
    post_points(app, 2, vec![p("a", 1, 0.95)]).await.ok(200);
    let r = app.get(&format!("{BASE}?metrics=a,b,c")).await;
    let lasts: Vec<Value> = r.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["last_metrics"].clone())
        .collect();
    assert_eq!(
        lasts,
        [json!({"a": 0.95}), json!({"a": 0.9, "b": 0.7, "c": 0.5})]
    );
    for (q, want) in [
        ("order_by=metric.a:desc", json!([2, 1])),
        ("order_by=metric.b:asc", json!([1, 2])),
        ("filter=metric.c%20%3E%200.4", json!([1])),
    ] {
        let r = app.get(&format!("{BASE}?{q}")).await;
        let versions: Vec<Value> = r.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].clone())
            .collect();
        assert_eq!(json!(versions), want, "{q}");
    }
}

const WIDE: crate::helpers::Setup = crate::helpers::Setup {
    adjust: wide_batches,
    ..crate::helpers::Setup::PLAIN
};

fn wide_batches(c: &mut modelreg::config::Config) {
    c.max_metric_points = 30_000;
    c.body_limit = 64 << 20;
}

crate::backend_tests!(with super::WIDE; a_batch_of_25_000_keys);

/// A batch with more distinct keys than one statement can bind for their last values (three
/// parameters a key: 75,000 > Postgres's 65,535) is written whole.
async fn a_batch_of_25_000_keys(app: &TestApp) {
    setup(app, 1).await;
    let points: Vec<Value> = (0..25_000)
        .map(|i| json!({"key": format!("k{i}"), "step": 3, "value": f64::from(i)}))
        .collect();
    let r = post_points(app, 1, points).await;
    assert_eq!(r.ok(200)["accepted"], 25_000);
    let best = app.get(&format!("{BASE}?metrics=k24999,k0&limit=1")).await;
    let item = best.ok(200)["items"][0].clone();
    assert_eq!(item["last_metrics"]["k24999"], 24_999.0, "{item}");
    assert_eq!(item["last_metrics"]["k0"], 0.0, "{item}");
}

/// Keys with empty, `.` or `..` segments are refused for new points (the web pages put keys
/// in URL paths); `val/loss`-style keys are fine.
async fn path_like_metric_keys_are_refused(app: &TestApp) {
    setup(app, 1).await;
    for bad in ["..", "a/../b", "a//b", "/a", "a/", "."] {
        let r = post_points(
            app,
            1,
            vec![
                json!({"key": "ok", "step": 0, "value": 1.0}),
                json!({"key": bad, "step": 0, "value": 1.0}),
            ],
        )
        .await;
        let p = r.problem(422, "validation_failed");
        assert!(p["detail"].as_str().unwrap().contains("segments"), "{p}");
    }
    let r = post_points(
        app,
        1,
        vec![json!({"key": "val/loss", "step": 0, "value": 1.0})],
    )
    .await;
    r.ok(200);
    let summaries = app.get(&format!("{BASE}/1/metrics")).await;
    let keys: Vec<&str> = summaries.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["val/loss"], "nothing of a refused batch was written");
}
