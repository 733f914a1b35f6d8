//! Load generator behind BENCHMARKS.md.
//!
//! `loadgen http`   drives a running server with N closed-loop clients for a bounded time
//!                  and request count, and prints one JSON line: throughput, p50/p99 latency,
//!                  and the server's CPU time per request (from /proc, with --server-pid).
//! `loadgen setup`  loads the fixtures the HTTP scenarios read (models, versions, series).
//! `loadgen bare`   measures the database alone with the same table shapes: COPY, unnest
//!                  inserts, single-row transactions, primary-key selects, full-scan bucketing.
//!
//! Every loop is bounded in requests and seconds, and only talks to the addresses given
//! (127.0.0.1 in bench/compare.sh).

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Http(HttpArgs),
    Setup(SetupArgs),
    Bare(BareArgs),
    Webhooks(WebhookArgs),
}

/// `loadgen webhooks`: register and promote rates with no webhook and with 10 subscribed, how
/// fast the backlog then drains to a local receiver (deliveries/s), and the latency from a
/// promote to its deliveries' arrival. The receiver runs in this process; the server must
/// allow private addresses (MODELREG_WEBHOOK_ALLOW_PRIVATE=true).
#[derive(clap::Args)]
struct WebhookArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Rounds per side of the alternating rate measurement.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Promotes of the latency phase, one at a time.
    #[arg(long, default_value_t = 200)]
    latency_promotes: u64,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Only the register and promote rates (for a server whose dispatcher is off: the cost
    /// of the outbox alone on the write path).
    #[arg(long)]
    rates_only: bool,
}

#[derive(clap::Args, Clone)]
struct HttpArgs {
    /// register | register-inputs | promote10 | promote10k | ingest | get_version | buckets |
    /// raw100k | overlay | get (--path) | noop
    scenario: String,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// Server process to charge CPU time to.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Points per request of `ingest`.
    #[arg(long, default_value_t = 10_000)]
    batch: i64,
    /// The path (and query) `get` reads.
    #[arg(long)]
    path: Option<String>,
}

#[derive(clap::Args)]
struct SetupArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Points of the long series read as buckets.
    #[arg(long, default_value_t = 1_000_000)]
    series_points: i64,
}

#[derive(clap::Args)]
struct BareArgs {
    /// copy | unnest | tx | select | bucket
    scenario: String,
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
}

/// One measured run.
struct Run {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
    items_per_request: f64,
    cpu_seconds: Option<f64>,
}

impl Run {
    /// The runs as one: their requests, errors, time and server CPU added up.
    fn merge(runs: Vec<Run>) -> Run {
        let mut all = Run {
            latencies: Vec::new(),
            errors: 0,
            elapsed: Duration::ZERO,
            items_per_request: 1.0,
            cpu_seconds: Some(0.0),
        };
        for r in runs {
            all.latencies.extend(r.latencies);
            all.errors += r.errors;
            all.elapsed += r.elapsed;
            all.items_per_request = r.items_per_request;
            all.cpu_seconds = all.cpu_seconds.zip(r.cpu_seconds).map(|(a, b)| a + b);
        }
        all
    }

    fn report(&self, scenario: &str, clients: usize) -> Value {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let n = l.len() as f64;
        let secs = self.elapsed.as_secs_f64();
        json!({
            "scenario": scenario,
            "clients": clients,
            "requests": l.len(),
            "errors": self.errors,
            "seconds": (secs * 100.0).round() / 100.0,
            "per_second": (n / secs * 10.0).round() / 10.0,
            "items_per_second": (n * self.items_per_request / secs).round(),
            "p50_ms": (pct(0.50) * 1000.0).round() / 1000.0,
            "p99_ms": (pct(0.99) * 1000.0).round() / 1000.0,
            "server_cpu_ms_per_request": self.cpu_seconds.map(|c| (c * 1e3 / n.max(1.0) * 1000.0).round() / 1000.0),
        })
    }
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs `clients` closed loops of `op(client, i)` until the time or request budget is spent.
async fn closed_loop<F, Fut>(
    clients: usize,
    seconds: f64,
    max_requests: u64,
    pid: Option<u32>,
    op: F,
) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu0 = pid.and_then(cpu_seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (op, issued, errors) = (op.clone(), issued.clone(), errors.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = issued.fetch_add(1, Ordering::Relaxed);
                    if i >= max_requests || Instant::now() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    if op(c, i).await {
                        lat.push(t.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    let cpu_seconds = match (cpu0, pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Run {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        items_per_request: 1.0,
        cpu_seconds,
    }
}

/// A metrics batch body, formatted directly (building a JSON tree per point would cost the
/// client more than the server spends on it).
fn points(key: &str, from: i64, n: i64) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(n as usize * 60 + 16);
    out.push_str("{\"points\":[");
    for s in from..from + n {
        if s > from {
            out.push(',');
        }
        let v = ((s as f64) * 0.001).sin() + (s % 97) as f64 * 1e-3;
        let _ = write!(out, "{{\"key\":\"{key}\",\"step\":{s},\"value\":{v}}}");
    }
    out.push_str("]}");
    out
}

async fn ok(r: reqwest::Result<reqwest::Response>) -> bool {
    match r {
        Ok(r) => {
            let good = r.status().is_success();
            let _ = r.bytes().await;
            good
        }
        Err(_) => false,
    }
}

async fn http(a: HttpArgs) -> Value {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let base = a.base.clone();
    let (c, b) = (client.clone(), base.clone());
    let mut items = 1.0;
    let run = match a.scenario.as_str() {
        "register" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, i| {
                let req = c.post(format!("{b}/api/v1/models/bench-register/versions"))
                    .json(&json!({"config": {"lr": 0.01, "layers": [64, 32]}, "tags": {"run": i.to_string()}}));
                async move { ok(req.send().await).await }
            })
            .await
        }
        // The same body with three inputs (bench/lineage.sh): two datasets and the version it
        // was fine-tuned from, each checked and written with the registration.
        "register-inputs" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, i| {
                let req = c.post(format!("{b}/api/v1/models/bench-register/versions"))
                    .json(&json!({"config": {"lr": 0.01, "layers": [64, 32]}, "tags": {"run": i.to_string()},
                        "inputs": [
                            {"kind": "dataset", "name": "transactions", "digest": format!("sha256:{:064x}", i % 1000), "context": "training"},
                            {"kind": "dataset", "name": "holdout", "digest": "sha256:7e57", "context": "evaluation"},
                            {"kind": "version", "model": "bench-base", "version": 1, "relation": "fine_tuned_from"}]}));
                async move { ok(req.send().await).await }
            })
            .await
        }
        // Any read, as given by --path (bench/lineage.sh's dataset and lineage queries).
        "get" => {
            let path = a.path.clone().expect("get needs --path");
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}{path}"));
                async move { ok(req.send().await).await }
            })
            .await
        }
        // The same with each client on its own model: registrations of different models do
        // not wait on each other.
        "register_8models" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |client, i| {
                let req = c
                    .post(format!("{b}/api/v1/models/bench-register-{}/versions", client % 8))
                    .json(&json!({"config": {"lr": 0.01, "layers": [64, 32]}, "tags": {"run": i.to_string()}}));
                async move { ok(req.send().await).await }
            })
            .await
        }
        s @ ("promote10" | "promote10k") => {
            let model = if s == "promote10" { "bench-p10" } else { "bench-p10k" };
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, i| {
                let req = c.post(format!("{b}/api/v1/models/{model}/stages/production/promote"))
                    .json(&json!({"version": i % 2 + 1}));
                async move { ok(req.send().await).await }
            })
            .await
        }
        "ingest" => {
            let batch = a.batch.max(1);
            items = batch as f64;
            let steps: Arc<Vec<AtomicU64>> = Arc::new((0..a.clients).map(|_| AtomicU64::new(0)).collect());
            let run_id = std::process::id();
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |client, _| {
                let from = steps[client].fetch_add(batch as u64, Ordering::Relaxed) as i64;
                let body = points(&format!("run{run_id}/client{client}/loss"), from, batch);
                let req = c
                    .post(format!("{b}/api/v1/models/bench-metrics/versions/1/metrics"))
                    .header("content-type", "application/json")
                    .body(body);
                async move { ok(req.send().await).await }
            })
            .await
        }
        "get_version" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}/api/v1/models/bench-p10/versions/1"));
                async move { ok(req.send().await).await }
            })
            .await
        }
        "buckets" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}/api/v1/models/bench-series/versions/1/metrics/long?max_points=1000"));
                async move { ok(req.send().await).await }
            })
            .await
        }
        "raw100k" => {
            items = 100_000.0;
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}/api/v1/models/bench-series/versions/1/metrics/short"));
                async move { ok(req.send().await).await }
            })
            .await
        }
        "overlay" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}/api/v1/models/bench-series/metrics/long?versions=1,2,3,4,5&max_points=1000"));
                async move { ok(req.send().await).await }
            })
            .await
        }
        // A dashboard's "best versions" query: filter and order by a metric's last value.
        "best" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}/api/v1/models/bench-best/versions")).query(&[
                    ("filter", "metric.val/acc > 0.5 and status = ready"),
                    ("order_by", "metric.val/acc:desc"),
                    ("limit", "10"),
                ]);
                async move { ok(req.send().await).await }
            })
            .await
        }
        // A sweep's top ten (bench/last_values.sh): by a metric's last value among 100,000
        // versions, and the same with a range filter on it.
        "top" | "top-filter" => {
            let filter = a.scenario == "top-filter";
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let mut q = vec![("order_by", "metric.val/acc:desc"), ("limit", "10")];
                if filter {
                    q.push(("filter", "metric.val/acc > 0.9"));
                }
                let req = c.get(format!("{b}/api/v1/models/bench-sweep/versions")).query(&q);
                async move { ok(req.send().await).await }
            })
            .await
        }
        "noop" => {
            closed_loop(a.clients, a.seconds, a.max_requests, a.server_pid, move |_, _| {
                let req = c.get(format!("{b}/"));
                async move { ok(req.send().await).await }
            })
            .await
        }
        other => panic!("unknown scenario {other}"),
    };
    let mut run = run;
    run.items_per_request = items;
    run.report(&a.scenario, a.clients)
}

async fn setup(a: SetupArgs) {
    let c = reqwest::Client::new();
    let b = &a.base;
    let post = |path: String, body: Value| {
        let c = c.clone();
        async move {
            let r = c.post(path).json(&body).send().await.expect("request");
            assert!(
                r.status().is_success(),
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    let post_raw = |path: String, body: String| {
        let c = c.clone();
        async move {
            let r = c
                .post(path)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            assert!(
                r.status().is_success(),
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    for i in 0..8 {
        let r = c
            .put(format!("{b}/api/v1/models/bench-register-{i}"))
            .json(&json!({}))
            .send()
            .await
            .expect("put model");
        assert!(r.status().is_success());
    }
    for m in [
        "bench-register",
        "bench-p10",
        "bench-p10k",
        "bench-metrics",
        "bench-series",
        "bench-best",
    ] {
        let r = c
            .put(format!("{b}/api/v1/models/{m}"))
            .json(&json!({}))
            .send()
            .await
            .expect("put model");
        assert!(r.status().is_success());
    }
    post(
        format!("{b}/api/v1/models/bench-metrics/versions"),
        json!({}),
    )
    .await;
    for _ in 0..10 {
        post(
            format!("{b}/api/v1/models/bench-p10/versions"),
            json!({"finalize": true, "config": {"lr": 0.1}}),
        )
        .await;
    }
    // 10,000 ready versions, registered 8 at a time.
    let (c2, b2) = (c.clone(), b.clone());
    in_parallel(10_000, move |_| {
        let (c, b) = (c2.clone(), b2.clone());
        async move {
            let r = c
                .post(format!("{b}/api/v1/models/bench-p10k/versions"))
                .json(&json!({"finalize": true}))
                .send()
                .await;
            assert!(r.is_ok_and(|r| r.status().is_success()));
        }
    })
    .await;
    // 1,000 ready versions of one model, each with a val/acc metric, for the "best" query.
    let (c2, b2) = (c.clone(), b.clone());
    in_parallel(1_000, move |i| {
        let (c, b) = (c2.clone(), b2.clone());
        async move {
            let r = c
                .post(format!("{b}/api/v1/models/bench-best/versions"))
                .json(&json!({}))
                .send()
                .await
                .expect("register");
            let v: Value = r.json().await.expect("version");
            let v = v["version"].as_i64().expect("version number");
            // A spread of values in [0, 1) with ties.
            let acc = ((i * 7919) % 1000) as f64 / 1000.0;
            let r = c
                .post(format!("{b}/api/v1/models/bench-best/versions/{v}/metrics"))
                .json(&json!({"points": [{"key": "val/acc", "step": 0, "value": acc}]}))
                .send()
                .await;
            assert!(r.is_ok_and(|r| r.status().is_success()));
            let r = c
                .post(format!(
                    "{b}/api/v1/models/bench-best/versions/{v}/finalize"
                ))
                .send()
                .await;
            assert!(r.is_ok_and(|r| r.status().is_success()));
        }
    })
    .await;
    for v in 1..=5 {
        post(
            format!("{b}/api/v1/models/bench-series/versions"),
            json!({}),
        )
        .await;
        let total = if v == 1 {
            a.series_points
        } else {
            a.series_points / 5
        };
        let mut step = 0;
        while step < total {
            let n = 10_000.min(total - step);
            post_raw(
                format!("{b}/api/v1/models/bench-series/versions/{v}/metrics"),
                points("long", step, n),
            )
            .await;
            step += n;
        }
    }
    let mut step = 0;
    while step < 100_000 {
        post_raw(
            format!("{b}/api/v1/models/bench-series/versions/1/metrics"),
            points("short", step, 10_000),
        )
        .await;
        step += 10_000;
    }
    eprintln!("fixtures loaded");
}

/// Runs `job(0..n)` on 8 concurrent tasks: fixtures load in a fraction of the serial time.
async fn in_parallel<F, Fut>(n: u64, job: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (job, next) = (job.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    job(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("fixture task");
    }
}

async fn bare(a: BareArgs) -> Value {
    use sqlx::postgres::PgPoolOptions;
    let pool = PgPoolOptions::new()
        .max_connections(a.clients as u32 + 1)
        .connect(&a.database_url)
        .await
        .expect("connect");
    let store = modelreg::store::PgStore::connect(&a.database_url, 2)
        .await
        .expect("store");
    modelreg::store::Store::migrate(&store)
        .await
        .expect("migrate");
    let model_id = uuid::Uuid::now_v7();
    sqlx::query("insert into models (id, name, created_at, updated_at, created_by) values ($1, $2, now(), now(), 'bench') on conflict do nothing")
        .bind(model_id)
        .bind(format!("bare-{model_id}"))
        .execute(&pool)
        .await
        .expect("model");
    let p = pool.clone();
    let mut items = 1.0;
    let run = match a.scenario.as_str() {
        // One-row transactions: a version row, as registration writes it.
        "tx" => {
            closed_loop(a.clients, a.seconds, a.max_requests, None, move |_, i| {
                let p = p.clone();
                async move {
                    sqlx::query(
                        "insert into versions (id, model_id, version, status, config, source, tags, created_at, updated_at, created_by) \
                         values ($1, $2, $3, 'pending', '{\"lr\": 0.01}', '{}', '{}', now(), now(), 'bench')",
                    )
                    .bind(uuid::Uuid::now_v7())
                    .bind(model_id)
                    .bind(i as i64 + 1)
                    .execute(&p)
                    .await
                    .is_ok()
                }
            })
            .await
        }
        "select" => {
            for v in 1..=10 {
                sqlx::query("insert into versions (id, model_id, version, status, created_at, updated_at, created_by) values ($1, $2, $3, 'ready', now(), now(), 'bench')")
                    .bind(uuid::Uuid::now_v7()).bind(model_id).bind(v as i64).execute(&pool).await.expect("seed");
            }
            closed_loop(a.clients, a.seconds, a.max_requests, None, move |_, i| {
                let p = p.clone();
                async move {
                    sqlx::query("select * from versions where model_id = $1 and version = $2")
                        .bind(model_id)
                        .bind((i % 10) as i64 + 1)
                        .fetch_one(&p)
                        .await
                        .is_ok()
                }
            })
            .await
        }
        // 10k-row `insert … select from unnest` statements, each client its own series.
        "unnest" => {
            items = 10_000.0;
            let steps: Arc<Vec<AtomicU64>> = Arc::new((0..a.clients).map(|_| AtomicU64::new(0)).collect());
            let base = (std::process::id() as i64) << 20;
            closed_loop(a.clients, a.seconds, a.max_requests, None, move |c, _| {
                let p = p.clone();
                let from = steps[c].fetch_add(10_000, Ordering::Relaxed) as i64;
                async move {
                    let step: Vec<i64> = (from..from + 10_000).collect();
                    let sid = vec![base + c as i64; 10_000];
                    let value: Vec<f64> = step.iter().map(|s| *s as f64 * 0.5).collect();
                    let at = vec![0i64; 10_000];
                    sqlx::query(
                        "insert into metric_points (series_id, step, value, at) \
                         select * from unnest($1::bigint[], $2::bigint[], $3::float8[], $4::bigint[]) \
                         on conflict (series_id, step) do update set value = excluded.value, at = excluded.at",
                    )
                    .bind(&sid).bind(&step).bind(&value).bind(&at)
                    .execute(&p)
                    .await
                    .is_ok()
                }
            })
            .await
        }
        // COPY of 1M rows into the points table, one series, primary key in place.
        "copy" => {
            let sid = (std::process::id() as i64) << 21;
            let mut conn = pool.acquire().await.expect("conn");
            let start = Instant::now();
            let mut copy = conn.copy_in_raw("copy metric_points (series_id, step, value, at) from stdin").await.expect("copy");
            let mut buf = String::with_capacity(1 << 22);
            for s in 0..1_000_000i64 {
                use std::fmt::Write;
                let _ = writeln!(buf, "{sid}\t{s}\t{}\t0", s as f64 * 0.5);
                if buf.len() > (1 << 22) - 64 {
                    copy.send(buf.as_bytes()).await.expect("send");
                    buf.clear();
                }
            }
            copy.send(buf.as_bytes()).await.expect("send");
            copy.finish().await.expect("finish");
            let elapsed = start.elapsed();
            return json!({"scenario": "bare_copy", "rows": 1_000_000, "seconds": elapsed.as_secs_f64(),
                          "items_per_second": (1e6 / elapsed.as_secs_f64()).round()});
        }
        // The query a chart would run without rollups: 1M rows into 1,000 buckets.
        "bucket" => {
            let sid: i64 = sqlx::query_scalar("select series_id from metric_points group by series_id having count(*) >= 1000000 limit 1")
                .fetch_optional(&pool)
                .await
                .expect("find series")
                .expect("run `loadgen bare copy` first");
            closed_loop(1, a.seconds, a.max_requests.min(20), None, move |_, _| {
                let p = p.clone();
                async move {
                    sqlx::query(
                        "select step / 1000 as b, min(value), max(value), avg(value), count(*), \
                                (array_agg(value order by step desc))[1] \
                         from metric_points where series_id = $1 group by 1 order by 1",
                    )
                    .bind(sid)
                    .fetch_all(&p)
                    .await
                    .is_ok()
                }
            })
            .await
        }
        other => panic!("unknown bare scenario {other}"),
    };
    let mut run = run;
    run.items_per_request = items;
    let mut v = run.report(&format!("bare_{}", a.scenario), a.clients);
    v["server_cpu_ms_per_request"] = Value::Null;
    v
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let out = match cli.command {
        Cmd::Http(a) => http(a).await,
        Cmd::Setup(a) => {
            setup(a).await;
            return;
        }
        Cmd::Bare(a) => bare(a).await,
        Cmd::Webhooks(a) => {
            for line in webhooks(a).await {
                println!("{line}");
            }
            return;
        }
    };
    println!("{out}");
}

/// What the in-process receiver saw: arrivals per event id, and the count.
#[derive(Default)]
struct Arrivals {
    by_event: std::sync::Mutex<std::collections::HashMap<i64, Vec<Instant>>>,
    count: AtomicU64,
}

async fn receive(
    axum::extract::State(arrivals): axum::extract::State<Arc<Arrivals>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let now = Instant::now();
    let event = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["data"]["event_id"].as_i64());
    if let Some(e) = event {
        arrivals
            .by_event
            .lock()
            .expect("arrivals lock")
            .entry(e)
            .or_default()
            .push(now);
    }
    arrivals.count.fetch_add(1, Ordering::Relaxed);
    axum::http::StatusCode::NO_CONTENT
}

async fn webhooks(a: WebhookArgs) -> Vec<Value> {
    let arrivals = Arc::new(Arrivals::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let b = a.base.clone();
    let send = |method: reqwest::Method, path: String, body: Value| {
        let c = c.clone();
        let url = format!("{b}{path}");
        async move {
            let r = c
                .request(method, url)
                .json(&body)
                .send()
                .await
                .expect("request");
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    let run_id = std::process::id();
    let reg_model = format!("bench-wh-reg-{run_id}");
    let p_model = format!("bench-wh-p-{run_id}");
    for m in [&reg_model, &p_model] {
        send(
            reqwest::Method::POST,
            "/api/v1/models".into(),
            json!({"name": m}),
        )
        .await;
    }
    for _ in 0..2 {
        let path = format!("/api/v1/models/{p_model}/versions");
        send(reqwest::Method::POST, path, json!({"finalize": true})).await;
    }
    let mut hooks = Vec::new();
    for _ in 0..a.subscribers {
        let body = json!({"url": hook_url, "models": ["bench-wh-*"], "enabled": false});
        let w = send(reqwest::Method::POST, "/api/v1/webhooks".into(), body).await;
        hooks.push(w["id"].as_str().expect("webhook id").to_owned());
    }
    let toggle = |enabled: bool| {
        let (hooks, send) = (hooks.clone(), &send);
        async move {
            for h in hooks {
                let path = format!("/api/v1/webhooks/{h}");
                send(reqwest::Method::PATCH, path, json!({"enabled": enabled})).await;
            }
        }
    };
    // Without and with the webhooks subscribed, in alternating rounds (off-on-on-off...), so
    // that drift over the run (the tables growing, the machine's own noise) weighs on both
    // sides alike. Disabled webhooks queue nothing and their deliveries are not claimed.
    let rounds = a.rounds.max(1);
    let phase = a.seconds / rounds as f64;
    let mut out = Vec::new();
    for op in ["register", "promote10"] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for r in 0..rounds * 2 {
            let enabled = matches!(r % 4, 1 | 2);
            toggle(enabled).await;
            let (c, b, pid) = (c.clone(), a.base.clone(), a.server_pid);
            let run = if op == "register" {
                let url = format!("{b}/api/v1/models/{reg_model}/versions");
                closed_loop(a.clients, phase, 200_000, pid, move |_, i| {
                    let req = c
                        .post(url.clone())
                        .json(&json!({"config": {"lr": 0.01}, "tags": {"run": i.to_string()}}));
                    async move { ok(req.send().await).await }
                })
                .await
            } else {
                let url = format!("{b}/api/v1/models/{p_model}/stages/production/promote");
                closed_loop(a.clients, phase, 200_000, pid, move |_, i| {
                    let req = c.post(url.clone()).json(&json!({"version": i % 2 + 1}));
                    async move { ok(req.send().await).await }
                })
                .await
            };
            if enabled { on.push(run) } else { off.push(run) }
        }
        let suffix = if a.rates_only { "_outbox_only" } else { "" };
        out.push(Run::merge(off).report(&format!("{op}_0webhooks{suffix}"), a.clients));
        out.push(Run::merge(on).report(&format!("{op}_10webhooks{suffix}"), a.clients));
    }
    toggle(true).await;
    if a.rates_only {
        for h in hooks {
            let _ = c
                .delete(format!("{}/api/v1/webhooks/{h}", a.base))
                .send()
                .await;
        }
        return out;
    }
    // The backlog the loads left: how fast it drains.
    let pending = |hooks: Vec<String>| {
        let (c, b) = (c.clone(), a.base.clone());
        async move {
            let mut sum = 0;
            for h in hooks {
                let v: Value = c
                    .get(format!("{b}/api/v1/webhooks/{h}"))
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json");
                sum += v["pending"].as_i64().unwrap_or(0);
            }
            sum
        }
    };
    let start_count = arrivals.count.load(Ordering::Relaxed);
    let start = Instant::now();
    let backlog = pending(hooks.clone()).await;
    let deadline = start + Duration::from_secs(600);
    while pending(hooks.clone()).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = arrivals.count.load(Ordering::Relaxed) - start_count;
    let secs = start.elapsed().as_secs_f64();
    out.push(json!({
        "scenario": "webhook_drain",
        "clients": a.subscribers,
        "requests": drained,
        "errors": pending(hooks.clone()).await,
        "seconds": (secs * 100.0).round() / 100.0,
        "per_second": (drained as f64 / secs).round(),
        "items_per_second": (drained as f64 / secs).round(),
        "backlog": backlog,
    }));
    // Commit to arrival, one promote at a time, the queue empty.
    let mut latencies = Vec::new();
    for i in 0..a.latency_promotes {
        let sent = Instant::now();
        let path = format!("/api/v1/models/{p_model}/stages/production/promote");
        let r = send(reqwest::Method::POST, path, json!({"version": i % 2 + 1})).await;
        let event = r["event_id"].as_i64().expect("event id");
        let wait_until = Instant::now() + Duration::from_secs(10);
        loop {
            let got = arrivals
                .by_event
                .lock()
                .expect("arrivals lock")
                .get(&event)
                .cloned()
                .unwrap_or_default();
            if got.len() >= a.subscribers || Instant::now() > wait_until {
                latencies.extend(got.iter().map(|t| t.duration_since(sent)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = Run {
        errors: a.latency_promotes * a.subscribers as u64 - latencies.len() as u64,
        latencies,
        elapsed: Duration::from_secs(1),
        items_per_request: 1.0,
        cpu_seconds: None,
    };
    let mut v = run.report("webhook_latency", 1);
    v["per_second"] = Value::Null;
    v["items_per_second"] = Value::Null;
    out.push(v);
    for h in hooks {
        let _ = c
            .delete(format!("{}/api/v1/webhooks/{h}", a.base))
            .send()
            .await;
    }
    out
}
