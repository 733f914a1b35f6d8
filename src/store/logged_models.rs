//! MLflow 3's logged models as stored: a row each (in the model its experiment stands for),
//! tags, params and every metric point as rows, write-once files while pending, and the runs
//! that produced or used them. Changes are events of that model (`logged_model.*`). A search
//! filters and orders in SQL and reads a page's tags, params and metrics in three more
//! statements, whatever the page's size.

use super::sql::{Arg, Conn, Dialect, Stmt};
use super::{Actor, Artifact, Backend, NewEvent, SqlStore, events, models};
use crate::domain::logged_model::{
    self, Cmp, Condition, LoggedStatus, Operand, Ordering, Subject, like_to_glob,
};
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
    fn as_str(self) -> &'static str {
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
struct Row {
    id: Uuid,
    model_id: Uuid,
    model: String,
    name: String,
    source_version: Option<Uuid>,
    status: String,
    status_message: Option<String>,
    model_type: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    created_by: String,
    deleted_at: Option<Timestamp>,
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

const SELECT: &str = "select lm.id, lm.model_id, m.name as model, lm.name, lm.source_version, \
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
async fn row<C: Conn>(conn: &mut C, id: Uuid, lock: bool, deleted: bool) -> Result<Row> {
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
fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

fn bind_ids(mut stmt: Stmt, ids: &[Uuid]) -> Stmt {
    for id in ids {
        stmt = stmt.bind(*id);
    }
    stmt
}

/// Fills in the tags, params and metrics of `models` in three statements.
async fn with_details<C: Conn>(conn: &mut C, rows: Vec<Row>) -> Result<Vec<LoggedModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let list = placeholders(1, ids.len());
    let tags: Vec<(Uuid, String, String)> = conn
        .fetch_all(bind_ids(
            Stmt::new(format!(
                "select logged_model_id, key, value from logged_model_tags \
                 where logged_model_id in {list}"
            )),
            &ids,
        ))
        .await?;
    let params: Vec<(Uuid, String, String)> = conn
        .fetch_all(bind_ids(
            Stmt::new(format!(
                "select logged_model_id, key, value from logged_model_params \
                 where logged_model_id in {list}"
            )),
            &ids,
        ))
        .await?;
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

async fn event<C: Conn>(
    conn: &mut C,
    r: &Row,
    action: &'static str,
    details: serde_json::Value,
    actor: &Actor,
) -> Result<()> {
    let e = NewEvent::model(action, r.model_id, &r.model, time::now()).details(details);
    events::record(conn, e, actor).await.map(|_| ())
}

async fn put_params<C: Conn>(
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

async fn put_tag<C: Conn>(conn: &mut C, id: Uuid, key: &str, value: Option<&str>) -> Result<()> {
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

async fn create<C: Conn>(conn: &mut C, new: &NewLoggedModel, actor: &Actor) -> Result<Uuid> {
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

async fn link<C: Conn>(
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

async fn finalize<C: Conn>(
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

/// Appends SQL for a search to `sql`, binding into `args`.
struct Search<'a> {
    dialect: Dialect,
    args: Vec<Arg>,
    datasets: &'a [(String, Option<String>)],
}

impl Search<'_> {
    fn bind(&mut self, a: impl Into<Arg>) -> String {
        self.args.push(a.into());
        format!("${}", self.args.len())
    }

    /// `column <cmp> value` for text, LIKE case-sensitive on both dialects.
    fn text(&mut self, column: &str, cmp: Cmp, value: &str) -> String {
        match (cmp, self.dialect) {
            (Cmp::Like, Dialect::Sqlite) => {
                let p = self.bind(like_to_glob(value));
                format!("{column} glob {p}")
            }
            (Cmp::ILike, Dialect::Sqlite) => {
                let p = self.bind(value);
                format!("{column} like {p}")
            }
            (cmp, _) => {
                let p = self.bind(value);
                format!("{column} {} {p}", cmp.as_sql())
            }
        }
    }

    /// The metrics a condition or order on a metric counts: of the key, on the datasets asked.
    fn metric_scope(&mut self, key: &str, dataset: Option<(&str, Option<&str>)>) -> String {
        let k = self.bind(key);
        let mut scope = format!("x.logged_model_id = lm.id and x.key = {k}");
        let datasets: Vec<(String, Option<String>)> = match dataset {
            Some((n, d)) => vec![(n.to_owned(), d.map(str::to_owned))],
            None => self.datasets.to_vec(),
        };
        if !datasets.is_empty() {
            let mut any = Vec::new();
            for (name, digest) in datasets {
                let n = self.bind(name);
                match digest {
                    Some(d) => {
                        let d = self.bind(d);
                        any.push(format!("(x.dataset_name = {n} and x.dataset_digest = {d})"));
                    }
                    None => any.push(format!("x.dataset_name = {n}")),
                }
            }
            scope.push_str(&format!(" and ({})", any.join(" or ")));
        }
        scope
    }

    fn condition(&mut self, c: &Condition) -> String {
        match (&c.subject, &c.operand) {
            (Subject::Metric(key), Operand::Number(n)) => {
                let scope = self.metric_scope(key, None);
                let n = self.bind(*n);
                format!(
                    "exists (select 1 from logged_model_metrics x where {scope} and x.value {} {n})",
                    c.cmp.as_sql()
                )
            }
            (Subject::CreatedAt | Subject::UpdatedAt, Operand::Number(n)) => {
                let column = if c.subject == Subject::CreatedAt {
                    "lm.created_at"
                } else {
                    "lm.updated_at"
                };
                let at = time::from_micros((*n as i64).saturating_mul(1000));
                let p = self.bind(at);
                format!("{column} {} {p}", c.cmp.as_sql())
            }
            (Subject::Tag(key) | Subject::Param(key), Operand::Text(v)) => {
                let table = if matches!(c.subject, Subject::Tag(_)) {
                    "logged_model_tags"
                } else {
                    "logged_model_params"
                };
                let k = self.bind(key.as_str());
                // != holds for a model without the key, as MLflow's server answers.
                let (cmp, negate) = match c.cmp {
                    Cmp::Ne => (Cmp::Eq, true),
                    other => (other, false),
                };
                let test = self.text("x.value", cmp, v);
                format!(
                    "{}exists (select 1 from {table} x where x.logged_model_id = lm.id \
                     and x.key = {k} and {test})",
                    if negate { "not " } else { "" }
                )
            }
            (Subject::SourceRunId, Operand::Text(v)) => {
                let id = Uuid::try_parse(v.trim_start_matches("m-")).ok();
                match (c.cmp, id) {
                    (Cmp::Eq, Some(id)) => format!("lm.source_version = {}", self.bind(id)),
                    (Cmp::Ne, Some(id)) => format!(
                        "(lm.source_version is null or lm.source_version <> {})",
                        self.bind(id)
                    ),
                    (Cmp::Ne, None) => "1 = 1".to_owned(),
                    _ => "1 = 0".to_owned(),
                }
            }
            (subject, Operand::Text(v)) => {
                let column = match subject {
                    Subject::Name => "lm.name",
                    Subject::Status => "lm.status",
                    _ => "lm.model_type",
                };
                self.text(column, c.cmp, v)
            }
            (_, Operand::Number(_)) => "1 = 0".to_owned(),
        }
    }

    /// An order key's SQL: the latest value (by step, then time) of a metric, a param, or a
    /// column.
    fn order_key(&mut self, o: &Ordering) -> String {
        match &o.subject {
            Subject::Metric(key) => {
                let dataset = o
                    .dataset_name
                    .as_deref()
                    .map(|n| (n, o.dataset_digest.as_deref()));
                let scope = self.metric_scope(key, dataset);
                format!(
                    "(select x.value from logged_model_metrics x where {scope} \
                     order by x.step desc, x.timestamp_ms desc, x.position desc limit 1)"
                )
            }
            Subject::Param(key) => {
                let k = self.bind(key.as_str());
                format!(
                    "(select x.value from logged_model_params x where x.logged_model_id = lm.id \
                     and x.key = {k})"
                )
            }
            Subject::Name => "lm.name".to_owned(),
            Subject::Status => "lm.status".to_owned(),
            Subject::ModelType => "lm.model_type".to_owned(),
            Subject::SourceRunId => "lm.source_version".to_owned(),
            Subject::UpdatedAt => "lm.updated_at".to_owned(),
            Subject::CreatedAt | Subject::Tag(_) => "lm.created_at".to_owned(),
        }
    }
}

async fn search<C: Conn>(conn: &mut C, s: &LoggedSearch) -> Result<(Vec<LoggedModel>, bool)> {
    if s.model_ids.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut q = Search {
        dialect: C::DIALECT,
        args: Vec::new(),
        datasets: &s.datasets,
    };
    let scope: Vec<String> = s.model_ids.iter().map(|id| q.bind(*id)).collect();
    let mut wheres = vec![
        format!("lm.model_id in ({})", scope.join(", ")),
        "lm.deleted_at is null".to_owned(),
    ];
    for c in &s.conditions {
        wheres.push(q.condition(c));
    }
    let mut orders = Vec::new();
    for o in &s.order {
        let key = q.order_key(o);
        // Models without the value come last either way, as on MLflow's server.
        orders.push(format!("case when {key} is null then 1 else 0 end"));
        orders.push(format!(
            "{key} {}",
            if o.ascending { "asc" } else { "desc" }
        ));
    }
    orders.push("lm.created_at desc".to_owned());
    orders.push("lm.id desc".to_owned());
    let limit = q.bind(s.limit + 1);
    let offset = q.bind(s.offset);
    let sql = format!(
        "{SELECT}where {} order by {} limit {limit} offset {offset}",
        wheres.join(" and "),
        orders.join(", ")
    );
    let mut stmt = Stmt::new(sql);
    stmt.args = q.args;
    let mut rows: Vec<Row> = conn.fetch_all(stmt).await?;
    let more = rows.len() as i64 > s.limit;
    rows.truncate(usize::try_from(s.limit).unwrap_or(0));
    Ok((with_details(conn, rows).await?, more))
}

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
        search(&mut *conn, s).await
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
