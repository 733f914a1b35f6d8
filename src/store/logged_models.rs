//! MLflow 3's logged models as stored: a row each (in the model its experiment stands for),
//! tags, params and every metric point as rows, write-once files while pending, and the runs
//! that produced or used them. Changes are events of that model (`logged_model.*`). A search
//! filters and orders in SQL and reads a page's tags, params and metrics in three more
//! statements, whatever the page's size.

use super::sql::{Conn, Stmt};
use super::{Actor, Artifact, Backend, SqlStore};
use crate::domain::logged_model::{self, Condition, LoggedStatus, Ordering};
use crate::domain::time::{self, Timestamp};
use crate::domain::{ModelName, artifact::artifact_exists, artifact::artifact_not_found};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use tracing::instrument;
use uuid::Uuid;

/// A logged model with its tags, params and metrics.
#[derive(Debug, Clone)]
pub struct LoggedModel {
    pub id: Uuid,
    /// The model its experiment stands for: its id and name.
    pub model_id: Uuid,
    pub model: String,
    pub name: String,
    /// The run (version) that produced it.
    pub source_version: Option<Uuid>,
    pub status: LoggedStatus,
    pub status_message: Option<String>,
    pub model_type: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
    pub deleted: bool,
    pub tags: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub metrics: Vec<LoggedMetric>,
}

/// One metric point logged against a logged model.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LoggedMetric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
    pub run_id: Option<Uuid>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

pub struct NewLoggedModel {
    pub model: ModelName,
    pub name: String,
    pub source_version: Option<Uuid>,
    pub model_type: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
}

/// A search: the models (experiments) searched, conditions (all must hold), the datasets a
/// metric condition counts (none: any), an order (newest first when empty), and a page.
#[derive(Debug, Clone, Default)]
pub struct LoggedSearch {
    pub model_ids: Vec<Uuid>,
    pub conditions: Vec<Condition>,
    pub datasets: Vec<(String, Option<String>)>,
    pub order: Vec<Ordering>,
    pub offset: i64,
    pub limit: i64,
}

/// How a run relates to a logged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunModel {
    /// The run produced it (at a step).
    Output,
    /// The run used it (evaluated it, for example).
    Input,
}

impl RunModel {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RunModel::Output => "output",
            RunModel::Input => "input",
        }
    }
}

/// A run's logged model: which, how, at which step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunModelLink {
    pub version_id: Uuid,
    pub logged_model_id: Uuid,
    pub output: bool,
    pub step: i64,
}

#[async_trait]
pub trait LoggedModelStore {
    async fn create_logged_model(&self, new: NewLoggedModel, actor: &Actor) -> Result<LoggedModel>;
    /// 404 `logged_model_not_found` when missing (or deleted, unless `deleted` is asked).
    async fn get_logged_model(&self, id: Uuid, deleted: bool) -> Result<LoggedModel>;
    async fn finalize_logged_model(
        &self,
        id: Uuid,
        status: LoggedStatus,
        message: Option<String>,
        actor: &Actor,
    ) -> Result<LoggedModel>;
    async fn delete_logged_model(&self, id: Uuid, actor: &Actor) -> Result<()>;
    /// Sets tags (`Some`) and removes them (`None`).
    async fn tag_logged_model(
        &self,
        id: Uuid,
        tags: BTreeMap<String, Option<String>>,
        actor: &Actor,
    ) -> Result<()>;
    async fn log_logged_model_params(
        &self,
        id: Uuid,
        params: BTreeMap<String, String>,
        actor: &Actor,
    ) -> Result<()>;
    async fn log_logged_model_metrics(&self, metrics: Vec<(Uuid, LoggedMetric)>) -> Result<()>;
    /// A page of a search and whether more follow.
    async fn search_logged_models(&self, search: &LoggedSearch)
    -> Result<(Vec<LoggedModel>, bool)>;
    /// Links runs to logged models (an existing link keeps its step).
    async fn link_run_models(
        &self,
        version_id: Uuid,
        links: Vec<(Uuid, RunModel, i64)>,
    ) -> Result<()>;
    /// The logged models of these runs.
    async fn run_models(&self, version_ids: &[Uuid]) -> Result<Vec<RunModelLink>>;
    /// Refuses an upload before its body is read when it could not be recorded.
    async fn check_logged_upload(&self, id: Uuid, path: &str) -> Result<()>;
    async fn add_logged_file(&self, id: Uuid, file: Artifact, actor: &Actor) -> Result<Artifact>;
    async fn logged_files(&self, id: Uuid) -> Result<Vec<Artifact>>;
    async fn logged_file(&self, id: Uuid, path: &str) -> Result<Artifact>;
    /// Every object key a logged model's file refers to (for `gc` and backups).
    async fn logged_file_keys(&self) -> Result<Vec<String>>;
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub(super) id: Uuid,
    pub(super) model_id: Uuid,
    pub(super) model: String,
    pub(super) name: String,
    pub(super) source_version: Option<Uuid>,
    pub(super) status: String,
    pub(super) status_message: Option<String>,
    pub(super) model_type: Option<String>,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Timestamp,
    pub(super) created_by: String,
    pub(super) deleted_at: Option<Timestamp>,
}

impl Row {
    fn into_model(self) -> Result<LoggedModel> {
        Ok(LoggedModel {
            id: self.id,
            model_id: self.model_id,
            model: self.model,
            name: self.name,
            source_version: self.source_version,
            status: LoggedStatus::from_stored(&self.status)?,
            status_message: self.status_message,
            model_type: self.model_type,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
            deleted: self.deleted_at.is_some(),
            tags: BTreeMap::new(),
            params: BTreeMap::new(),
            metrics: Vec::new(),
        })
    }
}

pub(super) const SELECT: &str = "select lm.id, lm.model_id, m.name as model, lm.name, lm.source_version, \
    lm.status, lm.status_message, lm.model_type, lm.created_at, lm.updated_at, lm.created_by, \
    lm.deleted_at from logged_models lm join models m on m.id = lm.model_id ";

const FILE: &str = "select path, size, sha256, content_type, created_at, object_key \
    from logged_model_files where logged_model_id = $1";

pub fn logged_model_not_found(id: Uuid) -> Error {
    Error::not_found(
        "logged_model_not_found",
        format!("Logged model with ID 'm-{}' not found", id.simple()),
    )
}

/// The row of a logged model, locked until commit where the dialect has row locks.
pub(super) async fn row<C: Conn>(conn: &mut C, id: Uuid, lock: bool, deleted: bool) -> Result<Row> {
    let lock = if lock && C::ROW_LOCKS {
        " for update of lm"
    } else {
        ""
    };
    let row: Row = conn
        .fetch_optional(Stmt::new(format!("{SELECT}where lm.id = $1{lock}")).bind(id))
        .await?
        .ok_or_else(|| logged_model_not_found(id))?;
    if row.deleted_at.is_some() && !deleted {
        return Err(logged_model_not_found(id));
    }
    Ok(row)
}

/// `($n, $n+1, …)` for `count` ids bound from `first`.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

pub(super) fn bind_ids(mut stmt: Stmt, ids: &[Uuid]) -> Stmt {
    for id in ids {
        stmt = stmt.bind(*id);
    }
    stmt
}

/// Fills in the tags, params and metrics of `models` in three statements.
/// The `(model, key, value)` rows of a key/value table (tags or params) of these models.
async fn key_values<C: Conn>(
    conn: &mut C,
    table: &'static str,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String, String)>> {
    let sql = format!(
        "select logged_model_id, key, value from {table} where logged_model_id in {}",
        placeholders(1, ids.len())
    );
    conn.fetch_all(bind_ids(Stmt::new(sql), ids)).await
}

pub(super) async fn with_details<C: Conn>(
    conn: &mut C,
    rows: Vec<Row>,
) -> Result<Vec<LoggedModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let list = placeholders(1, ids.len());
    let tags = key_values(conn, "logged_model_tags", &ids).await?;
    let params = key_values(conn, "logged_model_params", &ids).await?;
    #[derive(sqlx::FromRow)]
    struct MetricOf {
        logged_model_id: Uuid,
        #[sqlx(flatten)]
        metric: LoggedMetric,
    }
    let metrics: Vec<MetricOf> = conn
        .fetch_all(bind_ids(
            Stmt::new(format!(
                "select logged_model_id, key, value, step, timestamp_ms, run_id, dataset_name, \
                        dataset_digest from logged_model_metrics \
                 where logged_model_id in {list} order by logged_model_id, position"
            )),
            &ids,
        ))
        .await?;
    let mut out: Vec<LoggedModel> = rows
        .into_iter()
        .map(Row::into_model)
        .collect::<Result<_>>()?;
    let at: HashMap<Uuid, usize> = out.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
    for (id, k, v) in tags {
        if let Some(&i) = at.get(&id) {
            out[i].tags.insert(k, v);
        }
    }
    for (id, k, v) in params {
        if let Some(&i) = at.get(&id) {
            out[i].params.insert(k, v);
        }
    }
    for m in metrics {
        if let Some(&i) = at.get(&m.logged_model_id) {
            out[i].metrics.push(m.metric);
        }
    }
    Ok(out)
}

async fn one<C: Conn>(conn: &mut C, id: Uuid, deleted: bool) -> Result<LoggedModel> {
    let r = row(conn, id, false, deleted).await?;
    with_details(conn, vec![r])
        .await?
        .pop()
        .ok_or_else(|| logged_model_not_found(id))
}

use super::logged_writes::{create, event, finalize, insert_metrics, link, put_params, put_tag};

#[async_trait]
impl<B: Backend> LoggedModelStore for SqlStore<B> {
    #[instrument(skip_all, fields(model = %new.model))]
    async fn create_logged_model(&self, new: NewLoggedModel, actor: &Actor) -> Result<LoggedModel> {
        let id = transaction!(self.db, |c| create(c, &new, actor))?;
        self.get_logged_model(id, false).await
    }

    async fn get_logged_model(&self, id: Uuid, deleted: bool) -> Result<LoggedModel> {
        let mut conn = self.db.read().await?;
        one(&mut *conn, id, deleted).await
    }

    #[instrument(skip_all, fields(logged_model = %id))]
    async fn finalize_logged_model(
        &self,
        id: Uuid,
        status: LoggedStatus,
        message: Option<String>,
        actor: &Actor,
    ) -> Result<LoggedModel> {
        transaction!(self.db, |c| finalize(c, id, status, message.clone(), actor))?;
        self.get_logged_model(id, false).await
    }

    #[instrument(skip_all, fields(logged_model = %id))]
    async fn delete_logged_model(&self, id: Uuid, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| async move {
            let r = row(c, id, true, false).await?;
            c.execute(
                Stmt::new(
                    "update logged_models set deleted_at = $2, updated_at = $2 where id = $1",
                )
                .bind(id)
                .bind(time::now()),
            )
            .await?;
            event(
                c,
                &r,
                "logged_model.deleted",
                json!({"logged_model_id": format!("m-{}", id.simple())}),
                actor,
            )
            .await
        })
    }

    async fn tag_logged_model(
        &self,
        id: Uuid,
        tags: BTreeMap<String, Option<String>>,
        actor: &Actor,
    ) -> Result<()> {
        transaction!(self.db, |c| async move {
            let r = row(c, id, true, false).await?;
            for (k, v) in &tags {
                put_tag(c, id, k, v.as_deref()).await?;
            }
            c.execute(
                Stmt::new("update logged_models set updated_at = $2 where id = $1")
                    .bind(id)
                    .bind(time::now()),
            )
            .await?;
            event(
                c,
                &r,
                "logged_model.updated",
                json!({"logged_model_id": format!("m-{}", id.simple()), "tags": tags}),
                actor,
            )
            .await
        })
    }

    async fn log_logged_model_params(
        &self,
        id: Uuid,
        params: BTreeMap<String, String>,
        actor: &Actor,
    ) -> Result<()> {
        transaction!(self.db, |c| async move {
            let r = row(c, id, true, false).await?;
            let added = put_params(c, id, &params).await?;
            if added.is_empty() {
                return Ok(());
            }
            event(
                c,
                &r,
                "logged_model.updated",
                json!({"logged_model_id": format!("m-{}", id.simple()), "params": added}),
                actor,
            )
            .await
        })
    }

    async fn log_logged_model_metrics(&self, metrics: Vec<(Uuid, LoggedMetric)>) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        transaction!(self.db, |c| insert_metrics(c, &metrics))
    }

    async fn search_logged_models(&self, s: &LoggedSearch) -> Result<(Vec<LoggedModel>, bool)> {
        let mut conn = self.db.read().await?;
        super::logged_search::search(&mut *conn, s).await
    }

    async fn link_run_models(
        &self,
        version_id: Uuid,
        links: Vec<(Uuid, RunModel, i64)>,
    ) -> Result<()> {
        transaction!(self.db, |c| link(c, version_id, &links))
    }

    async fn run_models(&self, version_ids: &[Uuid]) -> Result<Vec<RunModelLink>> {
        if version_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.read().await?;
        let rows: Vec<(Uuid, Uuid, String, i64)> = conn
            .fetch_all(bind_ids(
                Stmt::new(format!(
                    "select r.version_id, r.logged_model_id, r.direction, r.step from run_models r \
                     join logged_models lm on lm.id = r.logged_model_id \
                     where lm.deleted_at is null and r.version_id in {} \
                     order by r.version_id, r.step, lm.created_at",
                    placeholders(1, version_ids.len())
                )),
                version_ids,
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(version_id, logged_model_id, direction, step)| RunModelLink {
                    version_id,
                    logged_model_id,
                    output: direction == "output",
                    step,
                },
            )
            .collect())
    }

    async fn check_logged_upload(&self, id: Uuid, path: &str) -> Result<()> {
        let mut conn = self.db.read().await?;
        let r = row(&mut *conn, id, false, false).await?;
        logged_model::check_files_open(
            &format!("m-{}", id.simple()),
            LoggedStatus::from_stored(&r.status)?,
        )?;
        let held: Option<Artifact> = conn
            .fetch_optional(
                Stmt::new(format!("{FILE} and path = $2"))
                    .bind(id)
                    .bind(path),
            )
            .await?;
        match held {
            Some(_) => Err(artifact_exists(path)),
            None => Ok(()),
        }
    }

    #[instrument(skip_all, fields(logged_model = %id, path = %file.path))]
    async fn add_logged_file(&self, id: Uuid, file: Artifact, actor: &Actor) -> Result<Artifact> {
        transaction!(self.db, |c| async {
            let r = row(c, id, true, false).await?;
            logged_model::check_files_open(
                &format!("m-{}", id.simple()),
                LoggedStatus::from_stored(&r.status)?,
            )?;
            let held: Option<Artifact> = c
                .fetch_optional(
                    Stmt::new(format!("{FILE} and path = $2"))
                        .bind(id)
                        .bind(&file.path),
                )
                .await?;
            if held.is_some() {
                return Err(artifact_exists(&file.path));
            }
            c.execute(
                Stmt::new(
                    "insert into logged_model_files (logged_model_id, path, object_key, size, \
                     sha256, content_type, created_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(&file.path)
                .bind(&file.object_key)
                .bind(file.size)
                .bind(&file.sha256)
                .bind(&file.content_type)
                .bind(file.created_at)
                .bind(&actor.name),
            )
            .await?;
            event(
                c,
                &r,
                "logged_model.file_uploaded",
                json!({
                    "logged_model_id": format!("m-{}", id.simple()),
                    "path": file.path,
                    "size": file.size,
                    "sha256": file.sha256,
                }),
                actor,
            )
            .await
        })?;
        Ok(file)
    }

    async fn logged_files(&self, id: Uuid) -> Result<Vec<Artifact>> {
        let mut conn = self.db.read().await?;
        row(&mut *conn, id, false, false).await?;
        conn.fetch_all(Stmt::new(format!("{FILE} order by path")).bind(id))
            .await
    }

    async fn logged_file(&self, id: Uuid, path: &str) -> Result<Artifact> {
        let mut conn = self.db.read().await?;
        row(&mut *conn, id, false, false).await?;
        conn.fetch_optional(
            Stmt::new(format!("{FILE} and path = $2"))
                .bind(id)
                .bind(path),
        )
        .await?
        .ok_or_else(|| artifact_not_found(path))
    }

    async fn logged_file_keys(&self) -> Result<Vec<String>> {
        let mut conn = self.db.read().await?;
        let rows: Vec<(String,)> = conn
            .fetch_all(Stmt::new("select object_key from logged_model_files"))
            .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }
}
