//! The write flows of logged models, each within the caller's transaction: create (with its
//! tags, params and the run that produced it), tags, params (set once), run links, finalize,
//! and metric points; each change an event of the experiment's model.

use super::logged_models::{Row, row};
use super::sql::{Conn, Stmt};
use super::{Actor, LoggedMetric, NewEvent, NewLoggedModel, RunModel, events, models};
use crate::domain::logged_model::{self, LoggedStatus};
use crate::domain::time;
use crate::error::Result;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub(super) async fn event<C: Conn>(
    conn: &mut C,
    r: &Row,
    action: &'static str,
    details: serde_json::Value,
    actor: &Actor,
) -> Result<()> {
    let e = NewEvent::model(action, r.model_id, &r.model, time::now()).details(details);
    events::record(conn, e, actor).await.map(|_| ())
}

pub(super) async fn put_params<C: Conn>(
    conn: &mut C,
    id: Uuid,
    params: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut added = BTreeMap::new();
    for (k, v) in params {
        let held: Option<(String,)> = conn
            .fetch_optional(
                Stmt::new(
                    "select value from logged_model_params where logged_model_id = $1 and key = $2",
                )
                .bind(id)
                .bind(k),
            )
            .await?;
        if logged_model::check_param(k, held.as_ref().map(|(v,)| v.as_str()), v)? {
            conn.execute(
                Stmt::new(
                    "insert into logged_model_params (logged_model_id, key, value) \
                     values ($1, $2, $3)",
                )
                .bind(id)
                .bind(k)
                .bind(v),
            )
            .await?;
            added.insert(k.clone(), v.clone());
        }
    }
    Ok(added)
}

pub(super) async fn put_tag<C: Conn>(
    conn: &mut C,
    id: Uuid,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    conn.execute(
        Stmt::new("delete from logged_model_tags where logged_model_id = $1 and key = $2")
            .bind(id)
            .bind(key),
    )
    .await?;
    if let Some(v) = value {
        conn.execute(
            Stmt::new(
                "insert into logged_model_tags (logged_model_id, key, value) values ($1, $2, $3)",
            )
            .bind(id)
            .bind(key)
            .bind(v),
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn create<C: Conn>(
    conn: &mut C,
    new: &NewLoggedModel,
    actor: &Actor,
) -> Result<Uuid> {
    let model = models::row(conn, &new.model, false).await?;
    let id = Uuid::now_v7();
    let now = time::now();
    conn.execute(
        Stmt::new(
            "insert into logged_models (id, model_id, name, source_version, status, model_type, \
             created_at, updated_at, created_by) values ($1, $2, $3, $4, 'pending', $5, $6, $6, $7)",
        )
        .bind(id)
        .bind(model.id)
        .bind(&new.name)
        .bind(new.source_version)
        .bind(&new.model_type)
        .bind(now)
        .bind(&actor.name),
    )
    .await?;
    for (k, v) in &new.tags {
        put_tag(conn, id, k, Some(v)).await?;
    }
    put_params(conn, id, &new.params).await?;
    if let Some(run) = new.source_version {
        link(conn, run, &[(id, RunModel::Output, 0)]).await?;
    }
    let e =
        NewEvent::model("logged_model.created", model.id, new.model.as_str(), now).details(json!({
            "logged_model_id": format!("m-{}", id.simple()),
            "name": new.name,
            "run_id": new.source_version.map(|v| v.simple().to_string()),
        }));
    events::record(conn, e, actor).await?;
    Ok(id)
}

pub(super) async fn link<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    links: &[(Uuid, RunModel, i64)],
) -> Result<()> {
    for (model, how, step) in links {
        let held: Option<(i64,)> = conn
            .fetch_optional(
                Stmt::new(
                    "select step from run_models where version_id = $1 and direction = $2 \
                     and logged_model_id = $3",
                )
                .bind(version_id)
                .bind(how.as_str())
                .bind(*model),
            )
            .await?;
        if held.is_none() {
            conn.execute(
                Stmt::new(
                    "insert into run_models (version_id, logged_model_id, direction, step) \
                     values ($1, $2, $3, $4)",
                )
                .bind(version_id)
                .bind(*model)
                .bind(how.as_str())
                .bind(*step),
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn finalize<C: Conn>(
    conn: &mut C,
    id: Uuid,
    to: LoggedStatus,
    message: Option<String>,
    actor: &Actor,
) -> Result<()> {
    let r = row(conn, id, true, false).await?;
    let current = LoggedStatus::from_stored(&r.status)?;
    if !logged_model::finalize(&format!("m-{}", id.simple()), current, to)? {
        return Ok(());
    }
    conn.execute(
        Stmt::new(
            "update logged_models set status = $2, status_message = $3, updated_at = $4 \
             where id = $1",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(message)
        .bind(time::now()),
    )
    .await?;
    event(
        conn,
        &r,
        "logged_model.finalized",
        json!({"logged_model_id": format!("m-{}", id.simple()), "status": to.mlflow()}),
        actor,
    )
    .await
}

/// Appends metric points to logged models, within the caller's transaction.
pub(crate) async fn insert_metrics<C: Conn>(
    c: &mut C,
    metrics: &[(Uuid, LoggedMetric)],
) -> Result<()> {
    let mut next: HashMap<Uuid, i64> = HashMap::new();
    for (id, m) in metrics {
        let position = match next.get_mut(id) {
            Some(p) => p,
            None => {
                row(c, *id, true, false).await?;
                let last: Option<i64> = c
                    .scalar(
                        Stmt::new(
                            "select max(position) from logged_model_metrics \
                             where logged_model_id = $1",
                        )
                        .bind(*id),
                    )
                    .await?;
                next.entry(*id).or_insert(last.map_or(0, |p| p + 1))
            }
        };
        c.execute(
            Stmt::new(
                "insert into logged_model_metrics (logged_model_id, position, key, value, \
                 step, timestamp_ms, run_id, dataset_name, dataset_digest) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(*id)
            .bind(*position)
            .bind(&m.key)
            .bind(m.value)
            .bind(m.step)
            .bind(m.timestamp_ms)
            .bind(m.run_id)
            .bind(&m.dataset_name)
            .bind(&m.dataset_digest),
        )
        .await?;
        *position += 1;
    }
    Ok(())
}
