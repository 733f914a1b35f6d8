//! Times the retention job on a registry's database, directly on the store (used by
//! `bench/retention.sh`):
//! 1. `ROUNDS` runs that decide over every version of MODEL and find nothing due (a policy
//!    whose every rule is there, ages beyond reach): the steady cost of a run, beside the
//!    bare read of the model's versions through the same driver (the baseline);
//! 2. the drain: the real policy, runs one after the other until the plan is done; each
//!    run's wall time (the stage rows are held that long) and what it did.
//!
//! Prints one JSON line per measurement.
//!
//!     cargo run --release --example retention_pass -- postgres://…/db retention-bench 3

use modelreg::domain::ModelName;
use modelreg::domain::retention::{Action, Retention, RetentionBody};
use modelreg::store::Actor;
use std::time::Instant;

fn policy(json: serde_json::Value) -> anyhow::Result<Retention> {
    let body: RetentionBody = serde_json::from_value(json)?;
    Retention::from_body(&body).map_err(|e| anyhow::anyhow!(e.detail))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_default();
    let model = ModelName::parse("model", args.get(2).map_or("retention-bench", |s| s))
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let rounds: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let store = modelreg::store::connect(&url, 4).await?;
    let admin = sqlx::PgPool::connect(&url).await?;
    let actor = Actor::named("bench");
    let now = modelreg::domain::time::now();
    let keeps = serde_json::json!({"keep_last": 100,
        "keep_best": [{"order_by": "metric.val/auc:desc", "n": 100}], "keep_staged_within": "P30D"});
    let mut idle = keeps.clone();
    idle["archive_after"] = "P36000D".into();
    idle["erase_after"] = "P36000D".into();
    store
        .put_retention(&model, &policy(idle)?, &actor, now)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let model_id: uuid::Uuid = sqlx::query_scalar("select id from models where name = $1")
        .bind(model.as_str())
        .fetch_one(&admin)
        .await?;
    for round in 1..=rounds {
        sqlx::query("update retention_policies set next_run_at = 0")
            .execute(&admin)
            .await?;
        let start = Instant::now();
        let runs = store
            .apply_retention(now, 600, 1)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?;
        let run_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        let rows: Vec<(i64, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "select version, status, created_at from versions where model_id = $1 and status <> 'erased'",
        )
        .bind(model_id)
        .fetch_all(&admin)
        .await?;
        let read_ms = start.elapsed().as_secs_f64() * 1e3;
        println!(
            "{}",
            serde_json::json!({"measure": "decide", "round": round, "versions": rows.len(),
                "actions": runs.iter().map(|r| r.done.len()).sum::<usize>(),
                "run_ms": run_ms, "bare_read_ms": read_ms, "ratio": run_ms / read_ms})
        );
    }
    let mut real = keeps;
    real["archive_after"] = "P30D".into();
    real["erase_after"] = "P90D".into();
    let plan = store
        .preview_retention(&model, Some(&policy(real.clone())?), now)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?
        .plan;
    store
        .put_retention(&model, &policy(real)?, &actor, now)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let start = Instant::now();
    let mut walls = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    loop {
        let t = Instant::now();
        let runs = store
            .apply_retention(now, 600, 1)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?;
        let Some(run) = runs.first() else { break };
        walls.push(t.elapsed().as_secs_f64());
        for d in &run.done {
            let kind = match d.action {
                Action::Fail => "fail",
                Action::Archive => "archive",
                Action::Erase => "erase",
            };
            *counts.entry(kind).or_default() += 1;
        }
        if run.left == 0 {
            break;
        }
    }
    let total = start.elapsed().as_secs_f64();
    let done: usize = counts.values().sum();
    walls.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"measure": "drain", "planned": plan.actions.len(), "kept": plan.kept.len(),
            "done": counts, "runs": walls.len(), "wall_s": total,
            "actions_per_s": done as f64 / total,
            "run_ms": {"p50": walls.get(walls.len() / 2).map(|w| w * 1e3),
                       "max": walls.last().map(|w| w * 1e3)}})
    );
    Ok(())
}
