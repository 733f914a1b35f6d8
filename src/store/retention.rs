//! Retention policies, stored one per model, and the job that applies them.
//!
//! A run takes one due policy (`for update skip locked`: replicas share the policies, one
//! model at a time each), locks the model's stage rows as a promote does (so what is live
//! cannot change under the decision), reads the [`Facts`], plans, and applies the plan in
//! the same transaction for at most [`RUN_BUDGET`] (a bounded part of a large plan). A run
//! that leaves work makes the policy due again at once; one that finishes makes it due
//! after the interval. The preview reads the same facts and plans the same way, without the
//! locks.

use super::sql::{Conn, Stmt};
use super::{Actor, Backend, NewEvent, SqlStore, erase, events, models, versions};
use crate::domain::retention::{Action, Candidate, Facts, Plan, Planned, Retention, RetentionBody};
use crate::domain::time::{self, Timestamp};
use crate::domain::{ModelName, Reason, Transition, VersionStatus};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::types::Json;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// How long a run goes on acting (its first action always happens): the model's stage rows
/// are held meanwhile, so a promote of the model waits at most about this long.
const RUN_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);
/// Actions per run at most, however fast they go.
const ACTIONS_PER_RUN: usize = 5_000;

/// A model's policy as shown.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionView {
    pub model: String,
    #[serde(flatten)]
    pub policy: RetentionBody,
    /// When the job next applies it.
    #[serde(with = "time::rfc3339")]
    pub next_run_at: Timestamp,
    #[serde(with = "time::rfc3339::option")]
    pub last_run_at: Option<Timestamp>,
    /// Why the last run failed, when it did (it is retried after the interval).
    pub last_error: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// What the policy would do now.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub model: String,
    #[serde(with = "time::rfc3339")]
    pub evaluated_at: Timestamp,
    #[serde(flatten)]
    pub plan: Plan,
}

/// What one run of the job did on one model.
#[derive(Debug, Clone)]
pub struct RetentionRun {
    pub model: String,
    pub done: Vec<Planned>,
    /// Objects of erased artifacts, to delete from the store after the commit.
    pub objects: Vec<String>,
    /// Actions of the plan left for the next run.
    pub left: usize,
}

#[async_trait]
pub trait RetentionStore {
    async fn put_retention(
        &self,
        model: &ModelName,
        policy: &Retention,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RetentionView>;
    /// 404 `retention_not_found` when the model has none.
    async fn get_retention(&self, model: &ModelName) -> Result<RetentionView>;
    async fn delete_retention(&self, model: &ModelName, actor: &Actor) -> Result<()>;
    /// What the model's policy (or `proposed`, not saved) would do now.
    async fn preview_retention(
        &self,
        model: &ModelName,
        proposed: Option<&Retention>,
        now: Timestamp,
    ) -> Result<Preview>;
    /// Applies the policies due at `now`, a bounded part of each plan per run, up to
    /// `limit` runs; a finished policy is next due after `interval` seconds.
    async fn apply_retention(
        &self,
        now: Timestamp,
        interval: i64,
        limit: u32,
    ) -> Result<Vec<RetentionRun>>;
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    model: String,
    policy: Json<RetentionBody>,
    next_run_at: i64,
    last_run_at: Option<i64>,
    last_error: Option<String>,
    updated_at: Timestamp,
    updated_by: String,
}

impl PolicyRow {
    fn view(self) -> RetentionView {
        RetentionView {
            model: self.model,
            policy: self.policy.0,
            next_run_at: time::from_micros(self.next_run_at),
            last_run_at: self.last_run_at.map(time::from_micros),
            last_error: self.last_error,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

fn not_found(model: &ModelName) -> Error {
    Error::not_found(
        "retention_not_found",
        format!("model '{model}' has no retention policy"),
    )
}

const SELECT: &str = "select m.name as model, r.policy, r.next_run_at, r.last_run_at, \
     r.last_error, r.updated_at, r.updated_by \
     from retention_policies r join models m on m.id = r.model_id ";

async fn find<C: Conn>(conn: &mut C, model: &ModelName) -> Result<PolicyRow> {
    conn.fetch_optional(Stmt::new(format!("{SELECT}where m.name = $1")).bind(model))
        .await?
        .ok_or_else(|| not_found(model))
}

async fn put<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    policy: &Retention,
    actor: &Actor,
    now: Timestamp,
) -> Result<RetentionView> {
    let m = models::row(conn, model, false).await?;
    let body = policy.to_body();
    let at = time::now();
    // A changed policy is applied at the job's next look.
    let stmt = Stmt::new(
        "insert into retention_policies (model_id, policy, next_run_at, updated_at, updated_by) \
         values ($1, $2, $3, $4, $5) \
         on conflict (model_id) do update set policy = excluded.policy, \
             next_run_at = excluded.next_run_at, last_error = null, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(m.id)
    .json(&body)
    .bind(time::to_micros(now))
    .bind(at)
    .bind(&actor.name);
    conn.execute(stmt).await?;
    let mut event = NewEvent::model("retention.changed", m.id, model.as_str(), at);
    event.details = serde_json::json!({"policy": body});
    events::record(conn, event, actor).await?;
    Ok(find(conn, model).await?.view())
}

async fn delete<C: Conn>(conn: &mut C, model: &ModelName, actor: &Actor) -> Result<()> {
    let m = models::row(conn, model, false).await?;
    let gone = conn
        .execute(Stmt::new("delete from retention_policies where model_id = $1").bind(m.id))
        .await?;
    if gone == 0 {
        return Err(not_found(model));
    }
    let event = NewEvent::model("retention.deleted", m.id, model.as_str(), time::now());
    events::record(conn, event, actor).await?;
    Ok(())
}

/// Reads what a plan is decided from.
async fn facts<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    policy: &Retention,
    now: Timestamp,
) -> Result<Facts> {
    let rows: Vec<(i64, String, Timestamp)> = conn
        .fetch_all(
            Stmt::new(
                "select version, status, created_at from versions \
                 where model_id = $1 and status <> 'erased'",
            )
            .bind(model_id),
        )
        .await?;
    let versions = rows
        .into_iter()
        .map(|(version, status, created_at)| {
            Ok(Candidate {
                version,
                status: VersionStatus::from_stored(&status)?,
                created_at,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut live: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let held: Vec<(String, i64)> = conn
        .fetch_all(
            Stmt::new(
                "select name, version from stages where model_id = $1 and version is not null \
                 order by name",
            )
            .bind(model_id),
        )
        .await?;
    for (stage, v) in held {
        live.entry(v).or_default().push(stage);
    }
    let mut stacked: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let stack: Vec<(String, i64)> = conn
        .fetch_all(
            Stmt::new(
                "select distinct stage, version from stage_stack where model_id = $1 \
                 order by stage",
            )
            .bind(model_id),
        )
        .await?;
    for (stage, v) in stack {
        if !live.get(&v).is_some_and(|s| s.contains(&stage)) {
            stacked.entry(v).or_default().push(stage);
        }
    }
    let mut staged_recently = BTreeSet::new();
    if let Some(within) = policy.keep_staged_within {
        let since = now - chrono::Duration::seconds(within);
        // Every stage change names the version it replaced and the one it put.
        let changes: Vec<(Option<i64>, Json<serde_json::Value>)> = conn
            .fetch_all(
                Stmt::new(
                    "select version, details from events \
                     where model_id = $1 and stage is not null and at >= $2",
                )
                .bind(model_id)
                .bind(since),
            )
            .await?;
        for (v, details) in changes {
            staged_recently.extend(v);
            for key in ["from_version", "to_version"] {
                staged_recently.extend(details.0.get(key).and_then(serde_json::Value::as_i64));
            }
        }
    }
    let mut metrics = BTreeMap::new();
    for key in policy.ranked_metrics() {
        let values: Vec<(i64, Option<f64>)> = conn
            .fetch_all(
                Stmt::new(
                    "select v.version, s.last_value from metric_series s \
                     join versions v on v.id = s.version_id \
                     where v.model_id = $1 and s.key = $2 and v.status in ('ready', 'archived')",
                )
                .bind(model_id)
                .bind(key.as_str()),
            )
            .await?;
        let values: BTreeMap<i64, f64> = values
            .into_iter()
            .filter_map(|(v, x)| Some((v, x?)))
            .collect();
        metrics.insert(key, values);
    }
    Ok(Facts {
        now,
        versions,
        live,
        stacked,
        staged_recently,
        metrics,
    })
}

fn stored_policy(body: &RetentionBody) -> Result<Retention> {
    Retention::from_body(body)
        .map_err(|e| Error::internal(format!("stored retention policy: {}", e.detail)))
}

async fn preview<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    proposed: Option<&Retention>,
    now: Timestamp,
) -> Result<Preview> {
    let m = models::row(conn, model, false).await?;
    let policy = match proposed {
        Some(p) => p.clone(),
        None => stored_policy(&find(conn, model).await?.policy.0)?,
    };
    let facts = facts(conn, m.id, &policy, now).await?;
    Ok(Preview {
        model: model.to_string(),
        evaluated_at: now,
        plan: policy.plan(&facts),
    })
}

#[derive(sqlx::FromRow)]
struct Due {
    model_id: Uuid,
    name: String,
    policy: Json<RetentionBody>,
}

/// One run on the first due policy no other process holds; `None` when there is none.
async fn run_one<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    interval: i64,
) -> Result<Option<RetentionRun>> {
    let lock = if C::ROW_LOCKS {
        " for update of r skip locked"
    } else {
        ""
    };
    let now_us = time::to_micros(now);
    let due: Option<Due> = conn
        .fetch_optional(
            Stmt::new(format!(
                "select r.model_id, m.name, r.policy from retention_policies r \
                 join models m on m.id = r.model_id where r.next_run_at <= $1 \
                 order by r.next_run_at, r.model_id limit 1{lock}"
            ))
            .bind(now_us),
        )
        .await?;
    let Some(due) = due else { return Ok(None) };
    let model = ModelName::parse("model", &due.name)?;
    let policy = stored_policy(&due.policy.0)?;
    // What is live cannot change under the decision: the stage rows are held, as a promote
    // takes them, until the run commits.
    erase::lock_stages(conn, due.model_id).await?;
    let plan = policy.plan(&facts(conn, due.model_id, &policy, now).await?);
    let actor = Actor::named("retention");
    let started = std::time::Instant::now();
    let mut done = Vec::new();
    let mut objects = Vec::new();
    for p in &plan.actions {
        if done.len() >= ACTIONS_PER_RUN || (!done.is_empty() && started.elapsed() > RUN_BUDGET) {
            break;
        }
        let reason = Reason::parse("reason", format!("retention: {}", p.reason))?;
        match p.action {
            Action::Erase => {
                let erased = erase::erase(conn, &model, p.version, Some(reason), &actor).await?;
                objects.extend(erased.objects);
            }
            Action::Archive | Action::Fail => {
                let t = if p.action == Action::Archive {
                    Transition::Archive
                } else {
                    Transition::Fail
                };
                versions::transition(conn, &model, p.version, t, Some(reason), &actor).await?;
            }
        }
        done.push(p.clone());
    }
    let left = plan.actions.len() - done.len();
    let next = if left > 0 {
        now_us
    } else {
        now_us.saturating_add(interval.saturating_mul(1_000_000))
    };
    conn.execute(
        Stmt::new(
            "update retention_policies set next_run_at = $2, last_run_at = $3, last_error = null \
             where model_id = $1",
        )
        .bind(due.model_id)
        .bind(next)
        .bind(now_us),
    )
    .await?;
    Ok(Some(RetentionRun {
        model: due.name,
        done,
        objects,
        left,
    }))
}

/// After a run failed (and was undone): the first due policy is postponed by the interval,
/// with the error, so that one broken model does not stall the others.
async fn postpone<C: Conn>(conn: &mut C, now: Timestamp, interval: i64, error: &str) -> Result<()> {
    let now_us = time::to_micros(now);
    let first: Option<(Uuid,)> = conn
        .fetch_optional(
            Stmt::new(
                "select model_id from retention_policies where next_run_at <= $1 \
                 order by next_run_at, model_id limit 1",
            )
            .bind(now_us),
        )
        .await?;
    if let Some((id,)) = first {
        conn.execute(
            Stmt::new(
                "update retention_policies set next_run_at = $2, last_run_at = $3, \
                 last_error = $4 where model_id = $1",
            )
            .bind(id)
            .bind(now_us.saturating_add(interval.saturating_mul(1_000_000)))
            .bind(now_us)
            .bind(error),
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl<B: Backend> RetentionStore for SqlStore<B> {
    async fn put_retention(
        &self,
        model: &ModelName,
        policy: &Retention,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RetentionView> {
        transaction!(self.db, |c| put(c, model, policy, actor, now))
    }

    async fn get_retention(&self, model: &ModelName) -> Result<RetentionView> {
        let mut conn = self.db.read().await?;
        models::row(&mut *conn, model, false).await?;
        Ok(find(&mut *conn, model).await?.view())
    }

    async fn delete_retention(&self, model: &ModelName, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| delete(c, model, actor))
    }

    async fn preview_retention(
        &self,
        model: &ModelName,
        proposed: Option<&Retention>,
        now: Timestamp,
    ) -> Result<Preview> {
        let mut conn = self.db.read().await?;
        preview(&mut *conn, model, proposed, now).await
    }

    async fn apply_retention(
        &self,
        now: Timestamp,
        interval: i64,
        limit: u32,
    ) -> Result<Vec<RetentionRun>> {
        // A read first: with nothing due (most seconds) no write transaction is begun.
        let due: i64 = {
            let mut conn = self.db.read().await?;
            let stmt = Stmt::new(
                "select count(*) from (select 1 from retention_policies where next_run_at <= $1 limit 1) d",
            )
            .bind(time::to_micros(now));
            conn.scalar(stmt).await?
        };
        let mut runs = Vec::new();
        let mut failures = 0;
        while due > 0 && runs.len() < limit as usize {
            match transaction!(self.db, |c| run_one(c, now, interval)) {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(code = %e.code, error = %e.detail, "a retention run failed; the policy is retried after the interval");
                    let error = format!("{}: {}", e.code, e.detail);
                    transaction!(self.db, |c| postpone(c, now, interval, &error))?;
                    failures += 1;
                    if failures >= 8 {
                        break;
                    }
                }
            }
        }
        Ok(runs)
    }
}
