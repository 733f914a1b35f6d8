//! Times the stage guards' evaluation pass on a registry's database: every guard made due,
//! then `evaluate_guards` over all of them, `ROUNDS` times; prints one JSON line per round
//! with the wall time, this process's CPU and the database server's CPU (all `postgres`
//! processes, from /proc), per pass and per guard. Used by `bench/guards.sh`.
//!
//!     cargo run --release --example guard_pass -- postgres://…/db 1000 3

use std::time::Instant;

/// CPU seconds (user + system) of the processes whose `comm` is `name` (or this process).
fn cpu_of(name: Option<&str>) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let read = |path: &std::path::Path| -> Option<f64> {
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let close = stat.rfind(')')?;
        let comm = &stat[stat.find('(')? + 1..close];
        if let Some(n) = name
            && comm != n
        {
            return None;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / tick)
    };
    match name {
        None => read(std::path::Path::new("/proc/self")).unwrap_or(0.0),
        Some(_) => std::fs::read_dir("/proc")
            .map(|d| d.flatten().filter_map(|e| read(&e.path())).sum())
            .unwrap_or(0.0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_default();
    let limit: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let store = modelreg::store::connect(&url, 4).await?;
    let admin = sqlx::PgPool::connect(&url).await?;
    for round in 1..=rounds {
        sqlx::query("update stage_guards set next_check_at = 0")
            .execute(&admin)
            .await?;
        let (cpu0, db0) = (cpu_of(None), cpu_of(Some("postgres")));
        let start = Instant::now();
        let done = store
            .evaluate_guards(modelreg::domain::time::now(), limit)
            .await?;
        let wall = start.elapsed().as_secs_f64();
        let (cpu, db) = (cpu_of(None) - cpu0, cpu_of(Some("postgres")) - db0);
        let n = done.len().max(1) as f64;
        let states: std::collections::BTreeMap<String, usize> =
            done.iter().fold(Default::default(), |mut m, p| {
                *m.entry(format!("{:?}", p.state)).or_default() += 1;
                m
            });
        println!(
            "{}",
            serde_json::json!({"round": round, "guards": done.len(), "states": states,
                "wall_ms": wall * 1e3, "evaluator_cpu_ms": cpu * 1e3, "postgres_cpu_ms": db * 1e3,
                "per_guard_us": {"wall": wall * 1e6 / n, "evaluator_cpu": cpu * 1e6 / n,
                                 "postgres_cpu": db * 1e6 / n}})
        );
    }
    Ok(())
}
