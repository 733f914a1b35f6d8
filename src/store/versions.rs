//! Versions: gapless numbering with idempotent registration, reads, patches and status
//! transitions.

use super::register;
use super::rows::{ListedVersionRow, VersionRow};
use super::sql::{Arg, Conn, Stmt};
use super::{
    Actor, Artifact, Backend, Idempotency, NewEvent, NewVersion, Page, Patch, Registered, SqlStore,
    Version, VersionDetail, VersionQuery, events, metrics, models, stages, version_list,
};
use crate::domain::time::{self};
use crate::domain::version::Outcome;
use crate::domain::{ModelName, Reason, Transition, VersionStatus, change};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use tracing::instrument;
use uuid::Uuid;

#[async_trait]
pub trait VersionStore {
    async fn register_version(
        &self,
        model: &ModelName,
        new: NewVersion,
        idempotency: Option<Idempotency>,
        actor: &Actor,
    ) -> Result<Registered>;
    async fn get_version(&self, model: &ModelName, version: i64) -> Result<Version>;
    /// A version with its artifacts and metric summaries, read together.
    async fn version_detail(&self, model: &ModelName, version: i64) -> Result<VersionDetail>;
    async fn list_versions(&self, model: &ModelName, query: &VersionQuery)
    -> Result<Page<Version>>;
    async fn update_version(
        &self,
        model: &ModelName,
        version: i64,
        patch: Patch,
        actor: &Actor,
    ) -> Result<Version>;
    async fn transition_version(
        &self,
        model: &ModelName,
        version: i64,
        transition: Transition,
        reason: Option<Reason>,
        actor: &Actor,
    ) -> Result<Version>;
    /// The status of a version, to refuse an upload before reading its body.
    async fn version_status(&self, model: &ModelName, version: i64) -> Result<VersionStatus>;
    /// A version by its id (MLflow names runs by id); 404 `version_not_found`.
    async fn version_by_id(&self, id: Uuid) -> Result<Version>;
    /// MLflow's `log-batch` on a run: params added to the config, tags patched, metric points
    /// written and points logged against logged models, in one transaction with one
    /// `version.updated` event (when the config or tags changed). Params and tags need the
    /// version pending; points do not.
    async fn log_batch(
        &self,
        model: &ModelName,
        version: i64,
        batch: super::RunBatch,
        actor: &Actor,
    ) -> Result<()>;
    /// A version's lineage, `depth` levels up (its inputs) or down (its dependants).
    async fn lineage(
        &self,
        model: &ModelName,
        version: i64,
        up: bool,
        depth: u32,
    ) -> Result<super::Lineage>;
    /// The versions that used a dataset (by digest or name), a page at a time.
    async fn dataset_users(&self, q: &super::DatasetQuery) -> Result<Page<super::DatasetUse>>;
    /// The versions named by (model, number) pairs that exist, in one statement (MLflow's
    /// registered-model search shows each model's latest version).
    async fn versions_named(&self, wanted: &[(String, i64)]) -> Result<Vec<Version>>;
    /// The details of a page of versions of `model` (from `list_versions`), in three
    /// statements whatever its size.
    async fn version_details(
        &self,
        model: &ModelName,
        versions: Vec<Version>,
    ) -> Result<Vec<VersionDetail>>;
    /// Adds inputs to a pending version (those it holds already are left out; 409
    /// `version_immutable` once it is not pending); answers every input it holds.
    async fn add_inputs(
        &self,
        model: &ModelName,
        version: i64,
        inputs: Vec<crate::domain::inputs::Input>,
        actor: &Actor,
    ) -> Result<Vec<crate::domain::inputs::Input>>;
    /// Sets a pending version's interface schema (409 `version_immutable` once it is not
    /// pending); with `keep`, one it holds already stays. Answers the schema it holds.
    async fn set_schema(
        &self,
        model: &ModelName,
        version: i64,
        schema: crate::domain::schema::Schema,
        keep: bool,
        actor: &Actor,
    ) -> Result<crate::domain::schema::Schema>;
    /// Adds top-level entries to a pending version's config (MLflow's params, logged while a
    /// run goes). An entry already there with the same value changes nothing; with another
    /// value it is refused (a config, once given, does not change).
    async fn add_config(
        &self,
        model: &ModelName,
        version: i64,
        entries: Map<String, Value>,
        actor: &Actor,
    ) -> Result<Version>;
}

const BY_NUMBER: &str = concat!(version_select!(), "where m.name = $1 and v.version = $2");
const BY_ID: &str = concat!(version_select!(), "where v.id = $1");
const BY_NUMBER_LOCKED: &str = concat!(
    version_select!(),
    "where m.name = $1 and v.version = $2 for update of v"
);

/// The version's row; `lock` takes its row lock until commit where the dialect has row locks.
/// Not found: 404 `model_not_found` or `version_not_found`, whichever is true.
pub(crate) async fn row<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    lock: bool,
) -> Result<VersionRow> {
    let sql = if lock && C::ROW_LOCKS {
        BY_NUMBER_LOCKED
    } else {
        BY_NUMBER
    };
    match conn
        .fetch_optional(Stmt::new(sql).bind(model).bind(version))
        .await?
    {
        Some(row) => Ok(row),
        None => Err(missing(conn, model, version).await),
    }
}

/// A pending version's row, locked for a change that only a pending version takes; 409
/// `version_immutable` once it is not pending (`what` names what is final: "config is").
pub(crate) async fn pending_row<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    what: &str,
) -> Result<VersionRow> {
    let current = row(conn, model, version, true).await?;
    let status = VersionStatus::from_stored(&current.status)?;
    if status != VersionStatus::Pending {
        return Err(Error::conflict(
            "version_immutable",
            format!(
                "version {version} of '{model}' is {}: its {what} final",
                status.as_str()
            ),
        ));
    }
    Ok(current)
}

/// The error for a version that is not there: its model may not be either.
pub(crate) async fn missing<C: Conn>(conn: &mut C, model: &ModelName, version: i64) -> Error {
    match models::row(conn, model, false).await {
        Ok(_) => Error::version_not_found(model.as_str(), version),
        Err(e) => e,
    }
}

/// The version's id.
pub(crate) async fn id<C: Conn>(conn: &mut C, model: &ModelName, version: i64) -> Result<Uuid> {
    let stmt = Stmt::new(
        "select v.id from versions v join models m on m.id = v.model_id \
         where m.name = $1 and v.version = $2",
    )
    .bind(model)
    .bind(version);
    match conn.fetch_optional::<(Uuid,)>(stmt).await? {
        Some((id,)) => Ok(id),
        None => Err(missing(conn, model, version).await),
    }
}

pub(crate) const ARTIFACTS_OF: &str = "select path, size, sha256, content_type, created_at, \
    object_key from artifacts where version_id = $1 order by path";

/// The version, its artifacts and its metric summaries: three reads.
pub(crate) async fn detail<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
) -> Result<VersionDetail> {
    let row = row(conn, model, version, false).await?;
    let artifacts: Vec<Artifact> = conn.fetch_all(Stmt::new(ARTIFACTS_OF).bind(row.id)).await?;
    let metrics = conn
        .fetch_all(Stmt::new(metrics::SUMMARIES).bind(row.id))
        .await?;
    let inputs = super::inputs::of(conn, row.id).await?;
    let schema = super::schemas::of(conn, row.id).await?;
    Ok(VersionDetail {
        version: row.into_version()?,
        artifacts,
        metrics,
        inputs,
        schema,
    })
}

async fn list<C: Conn>(conn: &mut C, model: &ModelName, q: &VersionQuery) -> Result<Page<Version>> {
    let m = models::row(conn, model, false).await?;
    let stmt = version_list::build::<C>(m.id, q);
    let rows = conn.fetch::<ListedVersionRow>(stmt);
    let mut page = super::version_page::collect_page(rows, q).await?;
    if !q.metrics.is_empty() && !page.items.is_empty() {
        metric_columns(conn, &mut page.items, &q.metrics).await?;
    }
    Ok(page)
}

/// Sets each version's last value of every metric in `keys`, read in one statement (the last
/// value kept on each series). A version without points of a key has none.
async fn metric_columns<C: Conn>(
    conn: &mut C,
    items: &mut [Version],
    keys: &[String],
) -> Result<()> {
    let mut sql = String::from(
        "select s.version_id, s.key, s.last_value from metric_series s where s.version_id in (",
    );
    let mut args = Vec::with_capacity(items.len() + keys.len());
    for (i, v) in items.iter().enumerate() {
        sql.push_str(&format!("{}${}", if i == 0 { "" } else { ", " }, i + 1));
        args.push(Arg::Uuid(Some(v.id)));
    }
    sql.push_str(") and s.key in (");
    for (i, k) in keys.iter().enumerate() {
        let n = items.len() + i + 1;
        sql.push_str(&format!("{}${n}", if i == 0 { "" } else { ", " }));
        args.push(Arg::Text(Some(k.clone())));
    }
    sql.push(')');
    let mut stmt = Stmt::new(sql);
    stmt.args = args;
    let rows: Vec<(Uuid, String, Option<f64>)> = conn.fetch_all(stmt).await?;
    let mut lasts: HashMap<Uuid, BTreeMap<String, f64>> = HashMap::new();
    for (id, key, last) in rows {
        if let Some(last) = last {
            lasts.entry(id).or_default().insert(key, last);
        }
    }
    for v in items {
        v.last_metrics = Some(lasts.remove(&v.id).unwrap_or_default());
    }
    Ok(())
}

async fn add_config<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    entries: Map<String, Value>,
    actor: &Actor,
) -> Result<Version> {
    let current = pending_row(conn, model, version, "config is").await?;
    let mut config: Map<String, Value> =
        serde_json::from_str(current.config.0.get()).map_err(Error::internal)?;
    let added = merge_config(&mut config, entries)?;
    if added.is_empty() {
        return current.into_version();
    }
    let now = time::now();
    let stmt = Stmt::new("update versions set config = $2, updated_at = $3 where id = $1")
        .bind(current.id)
        .json(&config)
        .bind(now);
    conn.execute(stmt).await?;
    let model_id: Uuid = conn
        .scalar(Stmt::new("select model_id from versions where id = $1").bind(current.id))
        .await?;
    let event = NewEvent::model("version.updated", model_id, model.as_str(), now)
        .version(version)
        .details(serde_json::json!({ "config_added": added }));
    events::record(conn, event, actor).await?;
    row(conn, model, version, false).await?.into_version()
}

/// Adds entries to a config: the keys added (an entry with the value it has is no change;
/// another value is refused).
fn merge_config(
    config: &mut Map<String, Value>,
    entries: Map<String, Value>,
) -> Result<Vec<String>> {
    let mut added = Vec::new();
    for (key, value) in entries {
        match config.get(&key) {
            Some(old) if *old == value => {}
            Some(old) => {
                return Err(Error::validation(
                    "params",
                    format!(
                        "param {key:?} was already logged with value {old} for this run; \
                         changing it to {value} is not allowed"
                    ),
                ));
            }
            None => {
                config.insert(key.clone(), value);
                added.push(key);
            }
        }
    }
    Ok(added)
}

async fn log_batch<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    batch: &super::RunBatch,
    actor: &Actor,
) -> Result<()> {
    let current = row(conn, model, version, true).await?;
    if !batch.params.is_empty() || !batch.tags.is_empty() {
        let status = VersionStatus::from_stored(&current.status)?;
        if !batch.params.is_empty() && status != VersionStatus::Pending {
            return Err(Error::conflict(
                "version_immutable",
                format!("version {version} of '{model}' is not pending: its config is final"),
            ));
        }
        let mut config: Map<String, Value> =
            serde_json::from_str(current.config.0.get()).map_err(Error::internal)?;
        let added = merge_config(&mut config, batch.params.clone())?;
        let patch = Patch {
            description: None,
            tags: batch.tags.clone(),
        };
        let change = change::patch(&current.described(), &patch)?;
        if !added.is_empty() || change.is_some() {
            let now = time::now();
            let tags = match &change {
                Some(c) => serde_json::to_value(&c.tags).map_err(Error::internal)?,
                None => serde_json::to_value(current.described().tags).map_err(Error::internal)?,
            };
            let stmt = Stmt::new(
                "update versions set config = $2, tags = $3, updated_at = $4 where id = $1 \
                 returning model_id",
            )
            .bind(current.id)
            .json(&config)
            .json(&tags)
            .bind(now);
            let model_id: Uuid = conn.scalar(stmt).await?;
            let mut details = serde_json::json!({});
            if !added.is_empty() {
                details["config_added"] = serde_json::json!(added);
            }
            if let Some(c) = &change {
                details["tags"] = serde_json::json!(c.tags);
            }
            let event = NewEvent::model("version.updated", model_id, model.as_str(), now)
                .version(version)
                .details(details);
            events::record(conn, event, actor).await?;
        }
    }
    if !batch.metrics.is_empty() {
        metrics::write_batches(conn, current.id, &batch.metrics).await?;
    }
    super::logged_writes::insert_metrics(conn, &batch.logged).await
}

async fn update<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    patch: Patch,
    actor: &Actor,
) -> Result<Version> {
    let current = row(conn, model, version, true).await?;
    if let Some(change) = change::patch(&current.described(), &patch)? {
        let now = time::now();
        let stmt = Stmt::new(
            "update versions set description = $2, tags = $3, updated_at = $4 where id = $1 \
             returning model_id",
        )
        .bind(current.id)
        .bind(&change.description)
        .json(&change.tags)
        .bind(now);
        let model_id: Uuid = conn.scalar(stmt).await?;
        let event = NewEvent::model("version.updated", model_id, model.as_str(), now)
            .version(version)
            .details(change.details());
        events::record(conn, event, actor).await?;
    }
    row(conn, model, version, false).await?.into_version()
}

pub(super) async fn transition<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    transition: Transition,
    reason: Option<Reason>,
    actor: &Actor,
) -> Result<Version> {
    let current = row(conn, model, version, true).await?;
    let status = VersionStatus::from_stored(&current.status)?;
    if let Outcome::Move(target) = status.apply(transition)? {
        if transition == Transition::Archive {
            let holding = stages::holding(conn, current.id).await?;
            if !holding.is_empty() {
                return Err(crate::domain::stage::in_stage(version, &holding));
            }
        }
        let now = time::now();
        let stmt = Stmt::new(
            "update versions set status = $2, status_reason = coalesce($3, status_reason), \
             updated_at = $4 where id = $1 returning model_id",
        )
        .bind(current.id)
        .bind(target.as_str())
        .bind(&reason)
        .bind(now);
        let model_id: Uuid = conn.scalar(stmt).await?;
        if status == VersionStatus::Pending {
            // Its series' open tails are packed too, in the background.
            let mark = Stmt::new(
                "update metric_series set compact_pending = $2 \
                 where version_id = $1 and last_step is not null",
            )
            .bind(current.id)
            .bind(true);
            conn.execute(mark).await?;
        }
        let mut details =
            serde_json::json!({"from": status.as_str(), "to": target.as_str(), "reason": reason});
        if transition == Transition::Finalize {
            let d = super::digests::fix(conn, current.id, model.as_str(), version).await?;
            details["digest"] = d.into();
        }
        let event = NewEvent::model(transition.event(), model_id, model.as_str(), now)
            .version(version)
            .details(details);
        events::record(conn, event, actor).await?;
    }
    row(conn, model, version, false).await?.into_version()
}

#[async_trait]
impl<B: Backend> VersionStore for SqlStore<B> {
    #[instrument(skip_all, fields(model = %model))]
    async fn register_version(
        &self,
        model: &ModelName,
        new: NewVersion,
        idempotency: Option<Idempotency>,
        actor: &Actor,
    ) -> Result<Registered> {
        // The dialect's fast path covers the common registration: no idempotency key to
        // remember, no artifacts to record and no version to copy.
        if idempotency.is_none() && new.artifacts.is_empty() && new.copied_from.is_none() {
            return self.db.register_plain(model, new, actor).await;
        }
        register::in_transaction(&self.db, model, new, idempotency, actor).await
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn get_version(&self, model: &ModelName, version: i64) -> Result<Version> {
        let mut conn = self.db.read().await?;
        row(&mut *conn, model, version, false).await?.into_version()
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn version_detail(&self, model: &ModelName, version: i64) -> Result<VersionDetail> {
        self.db.version_detail(model, version).await
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn list_versions(&self, model: &ModelName, q: &VersionQuery) -> Result<Page<Version>> {
        let mut conn = self.db.read().await?;
        list(&mut *conn, model, q).await
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn update_version(
        &self,
        model: &ModelName,
        version: i64,
        patch: Patch,
        actor: &Actor,
    ) -> Result<Version> {
        transaction!(self.db, |c| update(c, model, version, patch, actor))
    }

    #[instrument(skip_all, fields(model = %model, version, transition = ?t))]
    async fn transition_version(
        &self,
        model: &ModelName,
        version: i64,
        t: Transition,
        reason: Option<Reason>,
        actor: &Actor,
    ) -> Result<Version> {
        transaction!(self.db, |c| transition(c, model, version, t, reason, actor))
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn log_batch(
        &self,
        model: &ModelName,
        version: i64,
        batch: super::RunBatch,
        actor: &Actor,
    ) -> Result<()> {
        transaction!(self.db, |c| log_batch(c, model, version, &batch, actor))
    }

    async fn lineage(
        &self,
        model: &ModelName,
        version: i64,
        up: bool,
        depth: u32,
    ) -> Result<super::Lineage> {
        let mut conn = self.db.read().await?;
        super::inputs::lineage(&mut *conn, model, version, up, depth).await
    }

    async fn dataset_users(&self, q: &super::DatasetQuery) -> Result<Page<super::DatasetUse>> {
        let mut conn = self.db.read().await?;
        super::inputs::users(&mut *conn, q).await
    }

    async fn versions_named(&self, wanted: &[(String, i64)]) -> Result<Vec<Version>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<String> = (0..wanted.len())
            .map(|i| format!("(m.name = ${} and v.version = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let mut stmt = Stmt::new(format!("{}where {}", version_select!(), pairs.join(" or ")));
        for (model, number) in wanted {
            stmt = stmt.bind(model.as_str()).bind(*number);
        }
        let mut conn = self.db.read().await?;
        let rows: Vec<VersionRow> = conn.fetch_all(stmt).await?;
        rows.into_iter().map(VersionRow::into_version).collect()
    }

    #[instrument(skip_all, fields(version_id = %id))]
    async fn version_by_id(&self, id: Uuid) -> Result<Version> {
        let mut conn = self.db.read().await?;
        let r: VersionRow = conn
            .fetch_optional(Stmt::new(BY_ID).bind(id))
            .await?
            .ok_or_else(|| Error::not_found("version_not_found", format!("no version {id}")))?;
        r.into_version()
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn add_config(
        &self,
        model: &ModelName,
        version: i64,
        entries: Map<String, Value>,
        actor: &Actor,
    ) -> Result<Version> {
        transaction!(self.db, |c| add_config(c, model, version, entries, actor))
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn version_details(
        &self,
        model: &ModelName,
        versions: Vec<Version>,
    ) -> Result<Vec<VersionDetail>> {
        let mut conn = self.db.read().await?;
        super::details::of_page(&mut *conn, model, versions).await
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn set_schema(
        &self,
        model: &ModelName,
        version: i64,
        schema: crate::domain::schema::Schema,
        keep: bool,
        actor: &Actor,
    ) -> Result<crate::domain::schema::Schema> {
        transaction!(self.db, |c| super::schemas::set(
            c, model, version, schema, keep, actor
        ))
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn add_inputs(
        &self,
        model: &ModelName,
        version: i64,
        inputs: Vec<crate::domain::inputs::Input>,
        actor: &Actor,
    ) -> Result<Vec<crate::domain::inputs::Input>> {
        transaction!(self.db, |c| super::inputs::add(
            c,
            model,
            version,
            inputs.clone(),
            actor
        ))
    }

    async fn version_status(&self, model: &ModelName, version: i64) -> Result<VersionStatus> {
        let mut conn = self.db.read().await?;
        let row = row(&mut *conn, model, version, false).await?;
        VersionStatus::from_stored(&row.status)
    }
}
