//! Stage guards as stored, their evaluation, and the evaluator's pass.
//!
//! A pass takes due guards one at a time (`for update skip locked`: replicas share the work,
//! none judges a guard another holds), each in its own transaction: read what the stage
//! holds, summarise each condition's window from the points (packed blocks overlapping the
//! window, decoded, and the rows of open tails; never the whole series), let
//! `domain::guard` judge, and on a trip record `stage.guard_tripped` and roll the stage back
//! exactly as `POST …/rollback` does, with `expected_version` the version judged: a promote
//! that got in first makes the rollback a conflict, and the whole pass over that guard is
//! undone (judged again at once, on what is live now).

use super::sql::{Conn, Stmt};
use super::stage_change;
use super::{Actor, Backend, NewEvent, SqlStore, StageOp, StageRequest, events, models};
use crate::domain::guard::{self, Action, Condition, Guard, State, Verdict, Window};
use crate::domain::policy::format_duration;
use crate::domain::time::{self, Timestamp};
use crate::domain::{ModelName, Reason, StageName};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

/// A stage's guard as the API shows it: its settings, and how it judges the live version
/// now.
#[derive(Debug, Clone, Serialize)]
pub struct StageGuard {
    pub model: String,
    pub stage: String,
    pub conditions: Vec<Condition>,
    pub min_points: i64,
    pub grace: String,
    pub period: String,
    pub action: Action,
    /// `ok`, `tripped`, `holding` or `insufficient_data`.
    pub state: State,
    /// The version judged (the one live on the stage), if any.
    pub version: Option<i64>,
    /// Until when a newly promoted version is not judged.
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub grace_until: Option<Timestamp>,
    /// Each condition's verdict on the live version now.
    pub evaluation: Vec<Verdict>,
    /// The last trip, while the guard holds because of it.
    pub trip: Option<Trip>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trip {
    pub version: Option<i64>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub at: Timestamp,
    pub reason: Option<String>,
    /// The rollback it made (`null` for `notify`, or when nothing could be rolled back).
    pub rollback_event_id: Option<i64>,
}

/// What one evaluation of a due guard did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPass {
    pub model: String,
    pub stage: String,
    pub state: State,
    /// The rollback made, when the guard tripped with `rollback`.
    pub rollback_event_id: Option<i64>,
}

#[async_trait]
pub trait GuardStore {
    async fn put_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        guard: &Guard,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<StageGuard>;
    /// The guard with its evaluation at `now`.
    async fn get_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        now: Timestamp,
    ) -> Result<StageGuard>;
    /// Every guard of a model, by stage name, each with its evaluation at `now`.
    async fn list_guards(&self, model: &ModelName, now: Timestamp) -> Result<Vec<StageGuard>>;
    async fn delete_guard(&self, model: &ModelName, stage: &StageName, actor: &Actor)
    -> Result<()>;
    /// Ends `holding`: the guard judges the live version again from its next period.
    async fn rearm_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<StageGuard>;
    /// Judges up to `limit` guards due at `now`, each in its own transaction.
    async fn evaluate_guards(&self, now: Timestamp, limit: u32) -> Result<Vec<GuardPass>>;
}

#[derive(sqlx::FromRow)]
struct GuardRow {
    model_id: Uuid,
    model: String,
    stage: String,
    conditions: Json<Vec<Condition>>,
    min_points: i64,
    grace: i64,
    period: i64,
    action: String,
    judged_event_id: Option<i64>,
    rollback_event_id: Option<i64>,
    tripped_version: Option<i64>,
    tripped_at: Option<i64>,
    trip_reason: Option<String>,
    updated_at: Timestamp,
    updated_by: String,
}

const COLUMNS: &str = "g.model_id, m.name as model, g.stage, g.conditions, g.min_points, \
    g.grace, g.period, g.action, g.judged_event_id, g.rollback_event_id, g.tripped_version, \
    g.tripped_at, g.trip_reason, g.updated_at, g.updated_by";

impl GuardRow {
    fn action(&self) -> Action {
        if self.action == "notify" {
            Action::Notify
        } else {
            Action::Rollback
        }
    }

    fn shown(self, eval: Evaluation) -> StageGuard {
        let action = self.action();
        let trip = match (eval.holding, self.tripped_at) {
            (true, Some(at)) => Some(Trip {
                version: self.tripped_version,
                at: time::from_micros(at),
                reason: self.trip_reason,
                rollback_event_id: self.rollback_event_id,
            }),
            _ => None,
        };
        StageGuard {
            model: self.model,
            stage: self.stage,
            conditions: self.conditions.0,
            min_points: self.min_points,
            grace: format_duration(self.grace),
            period: format_duration(self.period),
            action,
            state: eval.state,
            version: eval.version,
            grace_until: eval.grace_until,
            evaluation: eval.verdicts,
            trip,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

fn not_found(model: &ModelName, stage: &StageName) -> Error {
    Error::not_found(
        "guard_not_found",
        format!("stage {stage} of model '{model}' has no guard"),
    )
}

async fn find<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
) -> Result<Option<GuardRow>> {
    let sql = format!(
        "select {COLUMNS} from stage_guards g join models m on m.id = g.model_id \
         where m.name = $1 and g.stage = $2"
    );
    conn.fetch_optional(Stmt::new(sql).bind(model).bind(stage))
        .await
}

/// The trip a stage's guard holds on while the stage is at assignment `event_id` (read under
/// the stage's lock by a promote, which ends the hold).
pub(crate) async fn held_by_trip<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    stage: &StageName,
    event_id: Option<i64>,
) -> Result<Option<Trip>> {
    let Some(event_id) = event_id else {
        return Ok(None);
    };
    let stmt = Stmt::new(
        "select tripped_version, tripped_at, trip_reason, rollback_event_id from stage_guards \
         where model_id = $1 and stage = $2 \
           and (judged_event_id = $3 or rollback_event_id = $3)",
    )
    .bind(model_id)
    .bind(stage)
    .bind(event_id);
    type Row = (Option<i64>, Option<i64>, Option<String>, Option<i64>);
    let row: Option<Row> = conn.fetch_optional(stmt).await?;
    Ok(row.and_then(|(version, at, reason, rollback_event_id)| {
        Some(Trip {
            version,
            at: time::from_micros(at?),
            reason,
            rollback_event_id,
        })
    }))
}

/// What the stage holds, as a guard reads it.
#[derive(sqlx::FromRow)]
struct Held {
    version: Option<i64>,
    version_id: Option<Uuid>,
    event_id: Option<i64>,
    since: Option<Timestamp>,
    beneath_id: Option<Uuid>,
}

async fn held<C: Conn>(conn: &mut C, model_id: Uuid, stage: &str) -> Result<Option<Held>> {
    let stmt = Stmt::new(
        "select s.version, v.id as version_id, s.event_id, s.since, \
                (select b.id from stage_stack st join versions b \
                   on b.model_id = st.model_id and b.version = st.version \
                  where st.model_id = s.model_id and st.stage = s.name \
                    and st.position = s.depth - 1) as beneath_id \
           from stages s left join versions v on v.model_id = s.model_id and v.version = s.version \
          where s.model_id = $1 and s.name = $2",
    )
    .bind(model_id)
    .bind(stage);
    conn.fetch_optional(stmt).await
}

/// The points of a version's metric with times in `from..=to` (microseconds), summarised:
/// the packed blocks whose span overlaps the window (and those packed before blocks had
/// spans), decoded, and the rows of the open tail, in one statement (one snapshot).
async fn window<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    metric: &str,
    from: i64,
    to: i64,
) -> Result<Window> {
    let stmt = Stmt::new(
        "select b.series_id, b.block, b.data, cast(null as double precision) as value, \
                cast(null as bigint) as at, cast(null as bigint) as step \
           from metric_series s join metric_blocks b on b.series_id = s.id \
          where s.version_id = $1 and s.key = $2 \
            and ((b.last_at >= $3 and b.first_at <= $4) or b.last_at is null) \
         union all \
         select p.series_id, cast(null as bigint), cast(null as bytea), p.value, p.at, p.step \
           from metric_series s join metric_points p on p.series_id = s.id \
          where s.version_id = $1 and s.key = $2 and p.at >= $3 and p.at <= $4",
    )
    .bind(version_id)
    .bind(metric)
    .bind(from)
    .bind(to);
    type Row = (
        i64,
        Option<i64>,
        Option<Vec<u8>>,
        Option<f64>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = conn.fetch_all(stmt).await?;
    let mut w = Window::default();
    for (series_id, block, data, value, at, step) in rows {
        match (data, value, at, step) {
            (Some(data), _, _, _) => {
                let points = super::point_blocks::decode(series_id, block.unwrap_or(0), &data)?;
                for p in points.iter().filter(|p| p.at >= from && p.at <= to) {
                    w.add(p.at, p.step, p.value);
                }
            }
            (None, Some(value), Some(at), Some(step)) => w.add(at, step, value),
            _ => {}
        }
    }
    Ok(w)
}

/// A guard's view of the stage at `now`.
struct Evaluation {
    state: State,
    version: Option<i64>,
    /// The stage assignment judged.
    event_id: Option<i64>,
    grace_until: Option<Timestamp>,
    verdicts: Vec<Verdict>,
    /// Held by an earlier trip (the stage has not changed since).
    holding: bool,
    /// An earlier trip that no longer holds (the stage changed): to be forgotten.
    stale_trip: bool,
}

async fn evaluate<C: Conn>(conn: &mut C, g: &GuardRow, now: Timestamp) -> Result<Evaluation> {
    let held = held(conn, g.model_id, &g.stage).await?;
    let (version, version_id, event_id, since, beneath_id) = match held {
        Some(h) => (h.version, h.version_id, h.event_id, h.since, h.beneath_id),
        None => (None, None, None, None, None),
    };
    let tripped = g.judged_event_id.is_some() || g.rollback_event_id.is_some();
    let holding = tripped
        && event_id.is_some()
        && (event_id == g.judged_event_id || event_id == g.rollback_event_id);
    let mut eval = Evaluation {
        state: State::InsufficientData,
        version,
        event_id,
        grace_until: None,
        verdicts: Vec::new(),
        holding,
        stale_trip: tripped && !holding,
    };
    if holding {
        eval.state = State::Holding;
        return Ok(eval);
    }
    let (Some(version_id), Some(since)) = (version_id, since) else {
        // Nothing live: nothing to judge.
        return Ok(eval);
    };
    let grace_until = since + chrono::Duration::seconds(g.grace);
    if g.grace > 0 && now < grace_until {
        eval.grace_until = Some(grace_until);
        eval.state = State::Ok;
        return Ok(eval);
    }
    let now_us = time::to_micros(now);
    let since_us = time::to_micros(since);
    for c in &g.conditions.0 {
        let span = c.window.saturating_mul(1_000_000);
        let live = window(conn, version_id, &c.metric, now_us - span, now_us).await?;
        let previous = match (&c.test, beneath_id) {
            (guard::Test::Relative { .. }, Some(prev)) => {
                Some(window(conn, prev, &c.metric, since_us - span, since_us).await?)
            }
            _ => None,
        };
        eval.verdicts
            .push(guard::judge(c, g.min_points, &live, previous.as_ref()));
    }
    eval.state = guard::overall(&eval.verdicts);
    Ok(eval)
}

async fn put<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    g: &Guard,
    actor: &Actor,
    now: Timestamp,
) -> Result<StageGuard> {
    let m = models::row(conn, model, false).await?;
    let at = time::now();
    let action = match g.action {
        Action::Rollback => "rollback",
        Action::Notify => "notify",
    };
    // A changed guard starts afresh: judged at once, no trip remembered.
    let stmt = Stmt::new(
        "insert into stage_guards (model_id, stage, conditions, min_points, grace, period, \
             action, next_check_at, updated_at, updated_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         on conflict (model_id, stage) do update set conditions = excluded.conditions, \
             min_points = excluded.min_points, grace = excluded.grace, period = excluded.period, \
             action = excluded.action, next_check_at = excluded.next_check_at, \
             judged_event_id = null, rollback_event_id = null, tripped_version = null, \
             tripped_at = null, trip_reason = null, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(m.id)
    .bind(stage)
    .json(&g.conditions)
    .bind(g.min_points)
    .bind(g.grace)
    .bind(g.period)
    .bind(action)
    .bind(time::to_micros(now))
    .bind(at)
    .bind(&actor.name);
    conn.execute(stmt).await?;
    let row = find(conn, model, stage)
        .await?
        .ok_or_else(|| not_found(model, stage))?;
    let eval = evaluate(conn, &row, now).await?;
    let shown = row.shown(eval);
    let mut event = NewEvent::model("guard.changed", m.id, model.as_str(), at);
    event.details = serde_json::json!({"model": model.as_str(), "stage": stage.as_str(),
        "guard": {"conditions": shown.conditions, "min_points": shown.min_points,
                  "grace": shown.grace, "period": shown.period, "action": shown.action}});
    events::record(conn, event, actor).await?;
    Ok(shown)
}

async fn delete<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    actor: &Actor,
) -> Result<()> {
    let m = models::row(conn, model, false).await?;
    let stmt = Stmt::new("delete from stage_guards where model_id = $1 and stage = $2")
        .bind(m.id)
        .bind(stage);
    if conn.execute(stmt).await? == 0 {
        return Err(not_found(model, stage));
    }
    let mut event = NewEvent::model("guard.changed", m.id, model.as_str(), time::now());
    event.details =
        serde_json::json!({"model": model.as_str(), "stage": stage.as_str(), "guard": null});
    events::record(conn, event, actor).await?;
    Ok(())
}

async fn rearm<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    actor: &Actor,
    now: Timestamp,
) -> Result<StageGuard> {
    let m = models::row(conn, model, false).await?;
    let row = find(conn, model, stage)
        .await?
        .ok_or_else(|| not_found(model, stage))?;
    let stmt = Stmt::new(
        "update stage_guards set judged_event_id = null, rollback_event_id = null, \
             tripped_version = null, tripped_at = null, trip_reason = null, next_check_at = $3 \
         where model_id = $1 and stage = $2",
    )
    .bind(m.id)
    .bind(stage)
    .bind(time::to_micros(now) + row.period.saturating_mul(1_000_000));
    conn.execute(stmt).await?;
    let mut event = NewEvent::model("guard.rearmed", m.id, model.as_str(), time::now());
    event.details = serde_json::json!({"stage": stage.as_str(),
        "tripped_version": row.tripped_version});
    events::record(conn, event, actor).await?;
    let row = find(conn, model, stage)
        .await?
        .ok_or_else(|| not_found(model, stage))?;
    let eval = evaluate(conn, &row, now).await?;
    Ok(row.shown(eval))
}

/// Guards one batch transaction judges at most: one commit for many guards that do not
/// trip (a trip is judged again, and acted on, in a transaction of its own).
const BATCH: i64 = 64;

/// Updates a judged guard's next check (and forgets a trip that no longer holds).
async fn reschedule<C: Conn>(
    conn: &mut C,
    row: &GuardRow,
    eval: &Evaluation,
    next: i64,
) -> Result<()> {
    let forget = if eval.stale_trip {
        ", judged_event_id = null, rollback_event_id = null, tripped_version = null, \
           tripped_at = null, trip_reason = null"
    } else {
        ""
    };
    let sql = format!(
        "update stage_guards set next_check_at = $3{forget} where model_id = $1 and stage = $2"
    );
    conn.execute(
        Stmt::new(sql)
            .bind(row.model_id)
            .bind(row.stage.as_str())
            .bind(next),
    )
    .await?;
    Ok(())
}

/// Judges up to `n` due guards in one transaction. Those that do not trip are rescheduled
/// here; those that do are left due and returned, to be judged again one by one
/// ([`judge_one`]), each with its rollback in its own transaction.
async fn judge_batch<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    n: i64,
) -> Result<(Vec<GuardPass>, Vec<(Uuid, String)>)> {
    let lock = if C::ROW_LOCKS {
        " for update of g skip locked"
    } else {
        ""
    };
    let now_us = time::to_micros(now);
    let sql = format!(
        "select {COLUMNS} from stage_guards g join models m on m.id = g.model_id \
         where g.next_check_at <= $1 order by g.next_check_at, g.model_id, g.stage limit $2{lock}"
    );
    let rows: Vec<GuardRow> = conn.fetch_all(Stmt::new(sql).bind(now_us).bind(n)).await?;
    let (mut done, mut tripped) = (Vec::new(), Vec::new());
    for row in rows {
        let eval = evaluate(conn, &row, now).await?;
        if eval.state == State::Tripped {
            tripped.push((row.model_id, row.stage.clone()));
            continue;
        }
        let next = now_us + row.period.saturating_mul(1_000_000);
        reschedule(conn, &row, &eval, next).await?;
        done.push(GuardPass {
            model: row.model,
            stage: row.stage,
            state: eval.state,
            rollback_event_id: None,
        });
    }
    Ok((done, tripped))
}

/// Judges one guard again (still due, not held by another process) and acts on a trip;
/// `Err` (the transaction undone) when the stage changed between the judgement and the
/// rollback.
async fn judge_one<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    model_id: Uuid,
    stage: &str,
) -> Result<Option<GuardPass>> {
    let lock = if C::ROW_LOCKS {
        " for update of g skip locked"
    } else {
        ""
    };
    let now_us = time::to_micros(now);
    let sql = format!(
        "select {COLUMNS} from stage_guards g join models m on m.id = g.model_id \
         where g.model_id = $1 and g.stage = $2 and g.next_check_at <= $3{lock}"
    );
    let Some(row) = conn
        .fetch_optional::<GuardRow>(Stmt::new(sql).bind(model_id).bind(stage).bind(now_us))
        .await?
    else {
        return Ok(None);
    };
    let eval = evaluate(conn, &row, now).await?;
    let next = now_us + row.period.saturating_mul(1_000_000);
    let mut pass = GuardPass {
        model: row.model.clone(),
        stage: row.stage.clone(),
        state: eval.state,
        rollback_event_id: None,
    };
    if eval.state != State::Tripped {
        reschedule(conn, &row, &eval, next).await?;
        return Ok(Some(pass));
    }
    let mut reason = guard::reason(&eval.verdicts);
    let model = ModelName::parse("model", &row.model)?;
    let stage = StageName::parse("stage", &row.stage)?;
    let actor = Actor::named("guard");
    // The stage is named in the details: the event's `stage` column is for stage changes
    // (a stage's history and what it held when are read from it).
    let mut event = NewEvent::model("stage.guard_tripped", row.model_id, &row.model, time::now());
    event.version = eval.version;
    event.details = serde_json::json!({"stage": row.stage, "reason": reason,
        "action": row.action, "conditions": eval.verdicts});
    events::record(conn, event, &actor).await?;
    let mut rollback_event_id = None;
    if row.action() == Action::Rollback {
        let req = StageRequest {
            op: StageOp::Rollback { to: None },
            reason: Some(Reason::from_stored(short(&reason))),
            expected: Some(eval.version),
            dry_run: false,
            force: false,
            approval: None,
            clock: Default::default(),
        };
        match stage_change::apply(conn, &model, &stage, req, &actor).await {
            Ok(change) => rollback_event_id = change.event_id,
            // Someone changed the stage after it was read: undo, judge again on what is live.
            Err(e) if e.code == "stage_conflict" => return Err(e),
            // Nothing to go back to: the trip is recorded and holds; a person decides.
            Err(e) if matches!(e.code, "nothing_to_roll_back" | "version_not_ready") => {
                reason.push_str(&format!(" (not rolled back: {})", e.detail));
            }
            Err(e) => return Err(e),
        }
    }
    let stmt = Stmt::new(
        "update stage_guards set next_check_at = $3, judged_event_id = $4, \
             rollback_event_id = $5, tripped_version = $6, tripped_at = $7, trip_reason = $8 \
         where model_id = $1 and stage = $2",
    )
    .bind(row.model_id)
    .bind(row.stage.as_str())
    .bind(next)
    .bind(eval.event_id)
    .bind(rollback_event_id)
    .bind(eval.version)
    .bind(now_us)
    .bind(short(&reason));
    conn.execute(stmt).await?;
    pass.rollback_event_id = rollback_event_id;
    Ok(Some(pass))
}

/// A reason within what a stage change may record.
fn short(reason: &str) -> String {
    if reason.len() <= 2_000 {
        return reason.to_owned();
    }
    let mut end = 2_000;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// Puts off the next due guard by its period: the one a pass could not judge (its error is
/// logged), so that it does not stop the others.
async fn postpone_next<C: Conn>(conn: &mut C, now: Timestamp) -> Result<()> {
    let stmt = Stmt::new(
        "update stage_guards set next_check_at = $1 + period * 1000000 \
         where (model_id, stage) in (select model_id, stage from stage_guards \
                                      where next_check_at <= $1 \
                                      order by next_check_at, model_id, stage limit 1)",
    )
    .bind(time::to_micros(now));
    conn.execute(stmt).await?;
    Ok(())
}

#[async_trait]
impl<B: Backend> GuardStore for SqlStore<B> {
    async fn put_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        guard: &Guard,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<StageGuard> {
        transaction!(self.db, |c| put(c, model, stage, guard, actor, now))
    }

    async fn get_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        now: Timestamp,
    ) -> Result<StageGuard> {
        let mut conn = self.db.read().await?;
        models::row(&mut *conn, model, false).await?;
        let row = find(&mut *conn, model, stage)
            .await?
            .ok_or_else(|| not_found(model, stage))?;
        let eval = evaluate(&mut *conn, &row, now).await?;
        Ok(row.shown(eval))
    }

    async fn list_guards(&self, model: &ModelName, now: Timestamp) -> Result<Vec<StageGuard>> {
        let mut conn = self.db.read().await?;
        let m = models::row(&mut *conn, model, false).await?;
        let sql = format!(
            "select {COLUMNS} from stage_guards g join models m on m.id = g.model_id \
             where g.model_id = $1 order by g.stage"
        );
        let rows: Vec<GuardRow> = conn.fetch_all(Stmt::new(sql).bind(m.id)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let eval = evaluate(&mut *conn, &row, now).await?;
            out.push(row.shown(eval));
        }
        Ok(out)
    }

    async fn delete_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        actor: &Actor,
    ) -> Result<()> {
        transaction!(self.db, |c| delete(c, model, stage, actor))
    }

    async fn rearm_guard(
        &self,
        model: &ModelName,
        stage: &StageName,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<StageGuard> {
        transaction!(self.db, |c| rearm(c, model, stage, actor, now))
    }

    async fn evaluate_guards(&self, now: Timestamp, limit: u32) -> Result<Vec<GuardPass>> {
        // A read first: with nothing due (most seconds) no write transaction is begun, so
        // an idle evaluator never takes SQLite's write lock.
        let due: i64 = {
            let mut conn = self.db.read().await?;
            let stmt = Stmt::new(
                "select count(*) from (select 1 from stage_guards where next_check_at <= $1 limit 1) d",
            )
            .bind(time::to_micros(now));
            conn.scalar(stmt).await?
        };
        if due == 0 {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        let mut failures = 0;
        while done.len() < limit as usize {
            let room = (limit as usize - done.len()).min(BATCH as usize) as i64;
            let (judged, tripped) = match transaction!(self.db, |c| judge_batch(c, now, room)) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(code = %e.code, error = %e.detail, "stage guards could not be judged; the first due one is postponed by its period");
                    transaction!(self.db, |c| postpone_next(c, now))?;
                    failures += 1;
                    if failures >= 8 {
                        break;
                    }
                    continue;
                }
            };
            // No progress (nothing judged, every trip failed to act): the rest waits for the
            // next pass rather than spinning on the same guards.
            let mut progressed = !judged.is_empty();
            done.extend(judged);
            for (model_id, stage) in tripped {
                // The stage may change under the judgement: judged again, on what is live
                // now (a few times at most; the next pass takes it up otherwise).
                for _ in 0..8 {
                    match transaction!(self.db, |c| judge_one(c, now, model_id, &stage)) {
                        Ok(Some(pass)) => {
                            done.push(pass);
                            progressed = true;
                            break;
                        }
                        Ok(None) => break,
                        Err(e) if e.code == "stage_conflict" => continue,
                        Err(e) => {
                            tracing::warn!(code = %e.code, error = %e.detail, model_id = %model_id, stage = %stage, "a tripped stage guard could not act; judged again next pass");
                            break;
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(done)
    }
}
