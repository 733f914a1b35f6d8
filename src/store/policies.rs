//! Stage policies as stored, and their evaluation inside a promote's transaction: every value a
//! check reads is read under the stage's lock, with the metric series it compares share-locked
//! (Postgres) so that no batch logged meanwhile can change them before the promote commits.

use super::schemas;
use super::sql::{Arg, Conn, Stmt};
use super::{Actor, Backend, NewEvent, SqlStore, events, models, trust, version_list};
use crate::domain::policy::{
    self, Check, KeyNow, NoRegression, Policy, SchemaCompatible, Signature, SignedBy,
};
use crate::domain::time::{self, Timestamp};
use crate::domain::{ModelName, StageName};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A stage's policy as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StagePolicy {
    pub model: String,
    pub stage: String,
    pub require: Option<String>,
    pub no_regression: Vec<NoRegression>,
    pub after_stage: Option<String>,
    /// An ISO 8601 duration.
    pub min_soak: Option<String>,
    pub approvals: i64,
    /// `true`, `{"with_stage": "…"}`, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_compatible: Option<serde_json::Value>,
    /// `["key", …]`, `{"keys": […], "path": "model/"}`, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<serde_json::Value>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
}

#[async_trait]
pub trait PolicyStore {
    /// Sets (creates or replaces) the policy of a stage.
    async fn put_policy(
        &self,
        model: &ModelName,
        stage: &StageName,
        policy: &Policy,
        actor: &Actor,
    ) -> Result<StagePolicy>;
    async fn get_policy(&self, model: &ModelName, stage: &StageName) -> Result<StagePolicy>;
    /// Every stage policy of a model, by stage name.
    async fn list_policies(&self, model: &ModelName) -> Result<Vec<StagePolicy>>;
    async fn delete_policy(
        &self,
        model: &ModelName,
        stage: &StageName,
        actor: &Actor,
    ) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    require: Option<String>,
    no_regression: Json<Vec<NoRegression>>,
    after_stage: Option<String>,
    min_soak: Option<i64>,
    approvals: i64,
    schema_compatible: Option<Json<serde_json::Value>>,
    signed_by: Option<Json<serde_json::Value>>,
    updated_at: Timestamp,
    updated_by: String,
}

#[derive(sqlx::FromRow)]
struct NamedPolicyRow {
    stage: String,
    #[sqlx(flatten)]
    policy: PolicyRow,
}

impl PolicyRow {
    fn shown(self, model: &str, stage: &str) -> StagePolicy {
        StagePolicy {
            model: model.to_owned(),
            stage: stage.to_owned(),
            require: self.require,
            no_regression: self.no_regression.0,
            after_stage: self.after_stage,
            min_soak: self.min_soak.map(policy::format_duration),
            approvals: self.approvals,
            schema_compatible: self.schema_compatible.map(|j| j.0),
            signed_by: self.signed_by.map(|j| j.0),
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

fn not_found(model: &ModelName, stage: &StageName) -> Error {
    Error::not_found(
        "policy_not_found",
        format!("stage {stage} of model '{model}' has no policy"),
    )
}

/// The policy of a stage, if it has one.
async fn find<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    stage: &StageName,
) -> Result<Option<PolicyRow>> {
    let stmt = Stmt::new(
        "select require, no_regression, after_stage, min_soak, approvals, schema_compatible, \
                signed_by, updated_at, updated_by \
           from stage_policies where model_id = $1 and stage = $2",
    )
    .bind(model_id)
    .bind(stage);
    conn.fetch_optional(stmt).await
}

/// The stage is named here, not in the event's `stage` column, which is for stage changes.
fn event_details(model: &str, stage: &str, p: Option<&StagePolicy>) -> serde_json::Value {
    serde_json::json!({"model": model, "stage": stage, "policy": p})
}

async fn put<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    p: &Policy,
    actor: &Actor,
) -> Result<StagePolicy> {
    let m = models::row(conn, model, false).await?;
    let now = time::now();
    let stmt = Stmt::new(
        "insert into stage_policies (model_id, stage, require, no_regression, after_stage, \
             min_soak, approvals, updated_at, updated_by, schema_compatible, signed_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         on conflict (model_id, stage) do update set require = excluded.require, \
             no_regression = excluded.no_regression, after_stage = excluded.after_stage, \
             min_soak = excluded.min_soak, approvals = excluded.approvals, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by, \
             schema_compatible = excluded.schema_compatible, signed_by = excluded.signed_by",
    )
    .bind(m.id)
    .bind(stage)
    .bind(p.require.clone())
    .json(&p.no_regression)
    .bind(p.after_stage.as_ref().map(|s| s.as_str().to_owned()))
    .bind(p.min_soak)
    .bind(p.approvals)
    .bind(now)
    .bind(&actor.name);
    let stmt = match &p.schema_compatible {
        Some(check) => stmt.json(&check.to_json()),
        None => stmt.bind(Arg::Json(None)),
    };
    let stmt = match &p.signed_by {
        Some(check) => stmt.json(&check.to_json()),
        None => stmt.bind(Arg::Json(None)),
    };
    conn.execute(stmt).await?;
    let shown = find(conn, m.id, stage)
        .await?
        .ok_or_else(|| not_found(model, stage))?
        .shown(model.as_str(), stage.as_str());
    let mut event = NewEvent::model("policy.changed", m.id, model.as_str(), now);
    event.details = event_details(model.as_str(), stage.as_str(), Some(&shown));
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
    let stmt = Stmt::new("delete from stage_policies where model_id = $1 and stage = $2")
        .bind(m.id)
        .bind(stage);
    if conn.execute(stmt).await? == 0 {
        return Err(not_found(model, stage));
    }
    let mut event = NewEvent::model("policy.changed", m.id, model.as_str(), time::now());
    event.details = event_details(model.as_str(), stage.as_str(), None);
    events::record(conn, event, actor).await?;
    Ok(())
}

#[async_trait]
impl<B: Backend> PolicyStore for SqlStore<B> {
    async fn put_policy(
        &self,
        model: &ModelName,
        stage: &StageName,
        policy: &Policy,
        actor: &Actor,
    ) -> Result<StagePolicy> {
        transaction!(self.db, |c| put(c, model, stage, policy, actor))
    }

    async fn get_policy(&self, model: &ModelName, stage: &StageName) -> Result<StagePolicy> {
        let mut conn = self.db.read().await?;
        let m = models::row(&mut *conn, model, false).await?;
        find(&mut *conn, m.id, stage)
            .await?
            .map(|r| r.shown(model.as_str(), stage.as_str()))
            .ok_or_else(|| not_found(model, stage))
    }

    async fn list_policies(&self, model: &ModelName) -> Result<Vec<StagePolicy>> {
        let mut conn = self.db.read().await?;
        let m = models::row(&mut *conn, model, false).await?;
        let stmt = Stmt::new(
            "select stage, require, no_regression, after_stage, min_soak, approvals, \
                    schema_compatible, signed_by, updated_at, updated_by \
               from stage_policies where model_id = $1 order by stage",
        )
        .bind(m.id);
        let rows: Vec<NamedPolicyRow> = conn.fetch_all(stmt).await?;
        Ok(rows
            .into_iter()
            .map(|r| r.policy.shown(model.as_str(), &r.stage))
            .collect())
    }

    async fn delete_policy(
        &self,
        model: &ModelName,
        stage: &StageName,
        actor: &Actor,
    ) -> Result<()> {
        transaction!(self.db, |c| delete(c, model, stage, actor))
    }
}

/// What the stage lock saw, for the checks.
pub(crate) struct Candidate<'a> {
    pub model_id: Uuid,
    pub model: &'a ModelName,
    pub stage: &'a StageName,
    pub version: i64,
    /// The version on the stage now.
    pub holder: Option<i64>,
    pub now: Timestamp,
}

/// A policy's verdict on a promote.
pub(crate) struct Evaluation {
    pub checks: Vec<Check>,
    /// Approvals the policy asks for (0: none).
    pub approvals: i64,
}

/// Evaluates the stage's policy for a promote, under the stage lock; `None` when the stage
/// has none. Approvals are not a check here: the caller opens a request or has one granted.
pub(crate) async fn evaluate<C: Conn>(
    conn: &mut C,
    c: &Candidate<'_>,
) -> Result<Option<Evaluation>> {
    let Some(p) = find(conn, c.model_id, c.stage).await? else {
        return Ok(None);
    };
    let mut checks = Vec::new();
    if let Some(expression) = &p.require {
        let failing =
            version_list::failing_clauses::<C>(conn, c.model_id, c.version, expression).await?;
        checks.push(policy::require_check(expression, &failing));
    }
    for rule in &p.no_regression.0 {
        let candidate = last_value(conn, c.model_id, c.version, &rule.metric).await?;
        let holder = match c.holder {
            Some(h) => Some((h, last_value(conn, c.model_id, h, &rule.metric).await?)),
            None => None,
        };
        checks.push(policy::no_regression_check(
            rule,
            c.stage.as_str(),
            candidate,
            holder,
        ));
    }
    if let Some(Json(raw)) = &p.schema_compatible {
        let compared = SchemaCompatible::parse(Some(raw.clone()))?;
        let (stage, holder) = match &compared {
            None => (c.stage.as_str(), None),
            Some(SchemaCompatible::ThisStage) => (c.stage.as_str(), c.holder),
            Some(SchemaCompatible::WithStage(other)) => (
                other.as_str(),
                on_stage(conn, c.model_id, other.as_str()).await?,
            ),
        };
        if compared.is_some() {
            let candidate = schemas::of_number(conn, c.model_id, c.version).await?;
            let held = match holder {
                Some(h) => Some((h, schemas::of_number(conn, c.model_id, h).await?)),
                None => None,
            };
            checks.push(policy::schema_compatible_check(
                stage,
                candidate.as_ref(),
                held.as_ref().map(|(h, s)| (*h, s.as_ref())),
            ));
        }
    }
    if let Some(Json(raw)) = &p.signed_by
        && let Some(rule) = SignedBy::parse(Some(raw.clone()))?
    {
        let (signatures, keys) = signing_facts(conn, c, &rule).await?;
        checks.push(policy::signed_by_check(&rule, &signatures, &keys));
    }
    if let Some(after) = &p.after_stage {
        let since = on_stage_since(conn, c.model_id, after, c.version).await?;
        checks.push(policy::after_stage_check(after, c.version, since));
        if let Some(seconds) = p.min_soak {
            checks.push(policy::min_soak_check(after, seconds, since, c.now));
        }
    }
    Ok(Some(Evaluation {
        checks,
        approvals: p.approvals,
    }))
}

/// What `signed_by` judges: the candidate's verified signatures by the named keys, and those
/// keys as trusted now (their rows share-locked on Postgres, so that a key removed or
/// replaced meanwhile waits for the promote to commit).
async fn signing_facts<C: Conn>(
    conn: &mut C,
    c: &Candidate<'_>,
    rule: &SignedBy,
) -> Result<(Vec<Signature>, BTreeMap<String, KeyNow>)> {
    let rows: Vec<(String, String, String)> = conn
        .fetch_all(
            Stmt::new(
                "select s.key_name, s.key_fingerprint, s.path \
                   from version_signatures s join versions v on v.id = s.version_id \
                  where v.model_id = $1 and v.version = $2 and s.verified \
                    and s.key_name is not null and s.key_fingerprint is not null \
                  order by s.created_at, s.id",
            )
            .bind(c.model_id)
            .bind(c.version),
        )
        .await?;
    let signatures = rows
        .into_iter()
        .filter(|(key, _, _)| rule.keys.contains(key))
        .map(|(key, fingerprint, path)| Signature {
            key,
            fingerprint,
            path,
        })
        .collect();
    let mut keys = BTreeMap::new();
    for name in &rule.keys {
        if let Some(k) = trust::locked(conn, name).await? {
            keys.insert(
                name.clone(),
                KeyNow {
                    covers_model: k.covers(c.model.as_str()),
                    fingerprint: k.fingerprint,
                },
            );
        }
    }
    Ok((signatures, keys))
}

/// The last value of a version's metric, its series share-locked (Postgres) against batches
/// logged until the promote commits.
async fn last_value<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    version: i64,
    key: &str,
) -> Result<Option<f64>> {
    if C::ROW_LOCKS {
        let lock = Stmt::new(
            "select s.id from metric_series s join versions v on v.id = s.version_id \
              where v.model_id = $1 and v.version = $2 and s.key = $3 for share of s",
        )
        .bind(model_id)
        .bind(version)
        .bind(key);
        conn.fetch_optional::<(i64,)>(lock).await?;
    }
    let stmt = Stmt::new(format!(
        "select {} from versions v where v.model_id = $1 and v.version = $2",
        version_list::metric_last("v.id", "$3")
    ))
    .bind(model_id)
    .bind(version)
    .bind(key);
    Ok(conn
        .fetch_optional::<(Option<f64>,)>(stmt)
        .await?
        .and_then(|(v,)| v))
}

/// The version on a stage now, if any (the stage row share-locked).
async fn on_stage<C: Conn>(conn: &mut C, model_id: Uuid, stage: &str) -> Result<Option<i64>> {
    let lock = if C::ROW_LOCKS { " for share" } else { "" };
    let stmt = Stmt::new(format!(
        "select version from stages where model_id = $1 and name = $2{lock}"
    ))
    .bind(model_id)
    .bind(stage);
    let row: Option<(Option<i64>,)> = conn.fetch_optional(stmt).await?;
    Ok(row.and_then(|(v,)| v))
}

/// When `version` reached `stage`, if it is there now (the stage row share-locked).
async fn on_stage_since<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    stage: &str,
    version: i64,
) -> Result<Option<Timestamp>> {
    let lock = if C::ROW_LOCKS { " for share" } else { "" };
    let stmt = Stmt::new(format!(
        "select version, since from stages where model_id = $1 and name = $2{lock}"
    ))
    .bind(model_id)
    .bind(stage);
    let row: Option<(Option<i64>, Option<Timestamp>)> = conn.fetch_optional(stmt).await?;
    Ok(row.and_then(|(v, since)| if v == Some(version) { since } else { None }))
}
