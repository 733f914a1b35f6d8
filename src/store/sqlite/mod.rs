//! The SQLite store: the embedded default, so that the registry runs with nothing installed.
//!
//! Writes go through a one-connection pool and take SQLite's write lock up front
//! (`BEGIN IMMEDIATE`), so writers queue in order instead of failing with SQLITE_BUSY; the
//! busy timeout covers other processes sharing the file. Reads use a separate pool and,
//! thanks to WAL, never wait for writers.

mod artifacts;
mod metrics;
mod stages;
mod tokens;

use super::rows::{EventRow, IdempotencyRow, ListedVersionRow, ModelRow, VersionRow};
use super::stages::{change_stage, in_stage_error};
use super::version_list::{self, Arg, Dialect};
use super::*;
use crate::domain::cursor;
use crate::domain::time;
use crate::domain::version::Outcome;
use crate::store::metrics as shared;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, Sqlite, SqliteConnection, SqlitePool, query, query_as, query_scalar};
use stages::SqliteStageTx;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tracing::instrument;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The last write failed because the disk (or the database's page limit) is full.
    storage_full: AtomicBool,
}

/// A write transaction on the writer connection: `BEGIN IMMEDIATE` takes SQLite's write lock
/// up front, so writers queue in order instead of failing with SQLITE_BUSY.
///
/// After some errors (a full disk, I/O errors) SQLite rolls a transaction back by itself and
/// the connection's idea of its transaction state can no longer be trusted; such a connection
/// is closed rather than returned to the pool (the next write opens a fresh one). So is one
/// whose transaction was abandoned midway (the request was cancelled): closing it rolls back.
struct WriteTx(Option<PoolConnection<Sqlite>>);

impl WriteTx {
    async fn begin(pool: &SqlitePool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        if let Err(e) = conn.execute("begin immediate").await {
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(Self(Some(conn)))
    }

    async fn commit(mut self) -> Result<()> {
        let Some(mut conn) = self.0.take() else {
            return Ok(());
        };
        conn.execute("commit").await.map(|_| ()).map_err(|e| {
            conn.close_on_drop();
            e.into()
        })
    }

    async fn rollback(mut self) {
        if let Some(mut conn) = self.0.take()
            && conn.execute("rollback").await.is_err()
        {
            conn.close_on_drop();
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        // Invariant: the connection is only taken by commit/rollback, which consume the value.
        self.0.as_deref().expect("write transaction is open")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.0.as_deref_mut().expect("write transaction is open")
    }
}

macro_rules! model_select {
    () => {
        "select id, name, description, tags, last_version, created_at, updated_at, created_by from models "
    };
}

/// Fixed-width RFC 3339, so that text comparison is time comparison.
pub(crate) fn ts(t: time::Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::open(url, None).await
    }

    /// Like [`SqliteStore::connect`], on a simulated disk that holds at most `pages` database
    /// pages (0: no limit), read whenever the writer is used: for fault tests, which fill the
    /// "disk" and free it again while the server runs.
    #[doc(hidden)]
    pub async fn connect_with_page_limit(
        url: &str,
        pages: Arc<AtomicU64>,
    ) -> Result<Self, sqlx::Error> {
        Self::open(url, Some(pages)).await
    }

    async fn open(url: &str, page_limit: Option<Arc<AtomicU64>>) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30));
        if let Some(pages) = page_limit {
            writer = writer.before_acquire(move |conn, _| {
                let limit = match pages.load(Ordering::Relaxed) {
                    0 => u64::from(u32::MAX - 1),
                    n => n,
                };
                Box::pin(async move {
                    let pragma = format!("pragma max_page_count = {limit}");
                    conn.execute(sqlx::AssertSqlSafe(pragma)).await?;
                    Ok(true)
                })
            });
        }
        let writer = writer.connect_with(options.clone()).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            storage_full: AtomicBool::new(false),
        })
    }

    /// Runs `op` in a write transaction, committed when `op` succeeds and rolled back
    /// otherwise. Every write goes through here: see [`WriteTx`] for what happens to a
    /// connection whose transaction broke, and [`SqliteStore::ping`] for how readiness learns
    /// that the disk is full.
    pub(crate) async fn write<T>(
        &self,
        op: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let result = match WriteTx::begin(&self.writer).await {
            Ok(mut tx) => match op(&mut *tx).await {
                Ok(value) => tx.commit().await.map(|()| value),
                Err(e) => {
                    tx.rollback().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.storage_full.store(false, Ordering::Relaxed),
            Err(e) if e.code == "storage_full" => self.storage_full.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
        result
    }

    async fn model_row(conn: &mut SqliteConnection, name: &ModelName) -> Result<ModelRow> {
        query_as::<_, ModelRow>(concat!(model_select!(), "where name = $1"))
            .bind(name.as_str())
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| Error::model_not_found(name.as_str()))
    }

    async fn version_row(
        conn: &mut SqliteConnection,
        model: &ModelName,
        version: i64,
    ) -> Result<VersionRow> {
        let row = query_as::<_, VersionRow>(concat!(
            version_select!(),
            "where m.name = $1 and v.version = $2"
        ))
        .bind(model.as_str())
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => Ok(row),
            None => {
                Self::model_row(conn, model).await?;
                Err(Error::version_not_found(model.as_str(), version))
            }
        }
    }

    async fn stages_of(
        conn: &mut SqliteConnection,
        model_id: Uuid,
    ) -> Result<BTreeMap<String, i64>> {
        let entries = Self::stage_entries(conn, model_id).await?;
        Ok(entries.into_iter().map(|e| (e.stage, e.version)).collect())
    }

    async fn record(conn: &mut SqliteConnection, e: NewEvent<'_>, actor: &Actor) -> Result<i64> {
        let id = query_scalar(
            "insert into events (at, action, model_id, model, version, stage, actor, actor_token_id, details) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
        )
        .bind(ts(e.at))
        .bind(e.action)
        .bind(e.model_id)
        .bind(e.model)
        .bind(e.version)
        .bind(e.stage)
        .bind(&actor.name)
        .bind(actor.token_id)
        .bind(sqlx::types::Json(&e.details))
        .fetch_one(conn)
        .await?;
        Ok(id)
    }

    async fn full_model(conn: &mut SqliteConnection, row: ModelRow) -> Result<Model> {
        let stages = Self::stages_of(conn, row.id).await?;
        Ok(row.into_model(stages))
    }

    async fn insert_model(
        conn: &mut SqliteConnection,
        id: Uuid,
        name: &ModelName,
        description: &Option<String>,
        tags: &Tags,
        now: time::Timestamp,
        actor: &Actor,
    ) -> Result<bool, sqlx::Error> {
        let done = query(
            "insert into models (id, name, description, tags, created_at, updated_at, created_by) \
             values ($1, $2, $3, $4, $5, $5, $6) on conflict (name) do nothing",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(description)
        .bind(sqlx::types::Json(tags))
        .bind(ts(now))
        .bind(&actor.name)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes a model's new description and tags and records `model.updated`.
    async fn write_model_change(
        conn: &mut SqliteConnection,
        model_id: Uuid,
        name: &ModelName,
        (description, tags, details): (Option<String>, Tags, Value),
        now: time::Timestamp,
        actor: &Actor,
    ) -> Result<()> {
        query("update models set description = $2, tags = $3, updated_at = $4 where id = $1")
            .bind(model_id)
            .bind(&description)
            .bind(sqlx::types::Json(&tags))
            .bind(ts(now))
            .execute(&mut *conn)
            .await?;
        let event = NewEvent::model("model.updated", model_id, name.as_str(), now).details(details);
        Self::record(conn, event, actor).await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(Error::internal)
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.writer.size() + self.reader.size(),
            idle: (self.writer.num_idle() + self.reader.num_idle()) as u32,
        }
    }

    /// Reads answer; and once a write has failed for lack of space, writes must work again
    /// too: a probe that takes new pages and commits them (so that a full disk, where the
    /// commit's log append fails, and a full page limit, where the insert fails, both show).
    /// Without such a failure the writer is not touched, so a busy writer never makes the
    /// server look down.
    async fn ping(&self) -> Result<()> {
        query("select 1").execute(&self.reader).await?;
        if self.storage_full.load(Ordering::Relaxed) {
            self.write(async |tx| {
                query("insert into health_probe (payload) values (randomblob(65536))")
                    .execute(&mut *tx)
                    .await?;
                query("delete from health_probe").execute(&mut *tx).await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    #[instrument(skip_all, fields(model = %new.name))]
    async fn create_model(&self, new: NewModel, actor: &Actor) -> Result<Model> {
        self.write(async |tx| {
            let now = time::now();
            let id = Uuid::now_v7();
            if !Self::insert_model(
                &mut *tx,
                id,
                &new.name,
                &new.description,
                &new.tags,
                now,
                actor,
            )
            .await?
            {
                return Err(Error::conflict(
                    "model_exists",
                    format!("model '{}' already exists", new.name),
                ));
            }
            let details = serde_json::json!({"description": new.description, "tags": new.tags});
            Self::record(
                &mut *tx,
                NewEvent::model("model.created", id, new.name.as_str(), now).details(details),
                actor,
            )
            .await?;
            let row = Self::model_row(&mut *tx, &new.name).await?;
            Ok(row.into_model(BTreeMap::new()))
        })
        .await
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn put_model(
        &self,
        name: &ModelName,
        put: PutModel,
        actor: &Actor,
    ) -> Result<(Model, bool)> {
        self.write(async |tx| {
            let now = time::now();
            let id = Uuid::now_v7();
            let tags = put.tags.clone().unwrap_or_default();
            if Self::insert_model(&mut *tx, id, name, &put.description, &tags, now, actor).await? {
                let details = serde_json::json!({"description": put.description, "tags": tags});
                Self::record(
                    &mut *tx,
                    NewEvent::model("model.created", id, name.as_str(), now).details(details),
                    actor,
                )
                .await?;
                let row = Self::model_row(&mut *tx, name).await?;
                return Ok((row.into_model(BTreeMap::new()), true));
            }
            let row = Self::model_row(&mut *tx, name).await?;
            let model_id = row.id;
            let current = Self::full_model(&mut *tx, row).await?;
            let Some((description, tags, details)) = put_changes(&current, &put) else {
                return Ok((current, false));
            };
            Self::write_model_change(
                &mut *tx,
                model_id,
                name,
                (description, tags, details),
                now,
                actor,
            )
            .await?;
            let row = Self::model_row(&mut *tx, name).await?;
            let model = Self::full_model(&mut *tx, row).await?;
            Ok((model, false))
        })
        .await
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn get_model(&self, name: &ModelName) -> Result<Model> {
        let mut conn = self.reader.acquire().await?;
        let row = Self::model_row(&mut conn, name).await?;
        Self::full_model(&mut conn, row).await
    }

    #[instrument(skip_all)]
    async fn list_models(&self, q: &ModelQuery) -> Result<Page<Model>> {
        let tags = (!q.tags.is_empty()).then(|| sqlx::types::Json(q.tags.as_map()));
        let mut conn = self.reader.acquire().await?;
        let rows = query_as::<_, ModelRow>(concat!(
            model_select!(),
            "where ($1 is null or substr(name, 1, length($1)) = $1) \
               and ($2 is null or not exists (select 1 from json_each($2) f \
                    where json_extract(models.tags, '$.\"' || f.key || '\"') is not f.value)) \
               and ($3 is null or name > $3) \
               and ($5 is null or exists (select 1 from json_each($5) g where name like g.value escape '\\')) \
             order by name limit $4"
        ))
        .bind(&q.prefix)
        .bind(tags)
        .bind(&q.after)
        .bind(i64::from(q.limit) + 1)
        .bind(q.visible.as_ref().map(sqlx::types::Json))
        .fetch_all(&mut *conn)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(Self::full_model(&mut conn, row).await?);
        }
        Ok(page(items, q.limit, |m| cursor::encode("m", &m.name)))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn update_model(&self, name: &ModelName, patch: Patch, actor: &Actor) -> Result<Model> {
        self.write(async |tx| {
            let row = Self::model_row(&mut *tx, name).await?;
            let model_id = row.id;
            let tags = Tags::from_stored(row.tags.0.clone());
            if let Some((description, tags, details)) =
                patch_changes(&row.description, &tags, &patch)?
            {
                let change = (description, tags, details);
                Self::write_model_change(&mut *tx, model_id, name, change, time::now(), actor)
                    .await?;
            }
            let row = Self::model_row(&mut *tx, name).await?;
            let model = Self::full_model(&mut *tx, row).await?;
            Ok(model)
        })
        .await
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn delete_model(&self, name: &ModelName, actor: &Actor) -> Result<()> {
        self.write(async |tx| {
            let row = Self::model_row(&mut *tx, name).await?;
            if row.last_version > 0 {
                return Err(Error::conflict(
                    "model_not_empty",
                    format!(
                        "model '{name}' has {} versions; only a model without versions can be deleted",
                        row.last_version
                    ),
                ));
            }
            // Stage rows can only be empty here (a stage needs a version); they go with the model.
            query("delete from stages where model_id = $1")
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
            query("delete from models where id = $1")
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
            Self::record(
                &mut *tx,
                NewEvent::model("model.deleted", row.id, name.as_str(), time::now()),
                actor,
            )
            .await?;
            Ok(())
        })
        .await
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn register_version(
        &self,
        model: &ModelName,
        new: NewVersion,
        idempotency: Option<Idempotency>,
        actor: &Actor,
    ) -> Result<Registered> {
        // The write lock is held from the transaction's start, so looking the key up before
        // taking a number cannot race with another registration.
        let outcome = self.write(async |tx| {
            let now = time::now();
            if let Some(idem) = &idempotency {
                let seen = query_as::<_, IdempotencyRow>(
                    "select k.request_hash, v.version from idempotency_keys k \
                     join versions v on v.id = k.version_id join models m on m.id = k.model_id \
                     where m.name = $1 and k.key = $2 and k.created_at > $3",
                )
                .bind(model.as_str())
                .bind(&idem.key)
                .bind(ts(idempotency_cutoff(now)))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(seen) = seen {
                    let version = idempotent_replay(model, &seen.request_hash, idem, seen.version)?;
                    return Ok(Err(version));
                }
            }
            let (model_id, number): (Uuid, i64) = query_as(
                "update models set last_version = last_version + 1 where name = $1 returning id, last_version",
            )
            .bind(model.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::model_not_found(model.as_str()))?;
            let id = Uuid::now_v7();
            let status = if new.finalize {
                VersionStatus::Ready
            } else {
                VersionStatus::Pending
            };
            query(
                "insert into versions (id, model_id, version, status, description, config, source, tags, \
                 created_at, updated_at, created_by) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
            )
            .bind(id)
            .bind(model_id)
            .bind(number)
            .bind(status.as_str())
            .bind(&new.description)
            .bind(sqlx::types::Json(&new.config))
            .bind(sqlx::types::Json(&new.source))
            .bind(sqlx::types::Json(&new.tags))
            .bind(ts(now))
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?;
            if let Some(idem) = &idempotency {
                query(
                    "insert into idempotency_keys (model_id, key, request_hash, version_id, created_at) \
                     values ($1, $2, $3, $4, $5) on conflict (model_id, key) do update \
                     set request_hash = excluded.request_hash, version_id = excluded.version_id, \
                     created_at = excluded.created_at",
                )
                .bind(model_id)
                .bind(&idem.key)
                .bind(&idem.request_hash)
                .bind(id)
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
            }
            let details = serde_json::json!({"status": status.as_str()});
            Self::record(
                &mut *tx,
                NewEvent::model("version.created", model_id, model.as_str(), now)
                    .version(number)
                    .details(details),
                actor,
            )
            .await?;
            if new.finalize {
                Self::record(
                    &mut *tx,
                    NewEvent::model("version.finalized", model_id, model.as_str(), now).version(number),
                    actor,
                )
                .await?;
            }
            Registered::new(id, model, number, status, new, now, actor).map(Ok)
        })
        .await?;
        match outcome {
            Ok(registered) => Ok(registered),
            Err(replayed) => Ok(Registered {
                version: self.get_version(model, replayed).await?,
                created: false,
            }),
        }
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn version_detail(&self, model: &ModelName, version: i64) -> Result<VersionDetail> {
        let mut conn = self.reader.acquire().await?;
        let row = Self::version_row(&mut conn, model, version).await?;
        let artifacts = query_as("select path, size, sha256, content_type, created_at, object_key from artifacts where version_id = $1 order by path")
            .bind(row.id)
            .fetch_all(&mut *conn)
            .await?;
        let metrics = query_as(shared::SUMMARIES)
            .bind(row.id)
            .fetch_all(&mut *conn)
            .await?;
        Ok(VersionDetail {
            version: row.into_version()?,
            artifacts,
            metrics,
        })
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn get_version(&self, model: &ModelName, version: i64) -> Result<Version> {
        let mut conn = self.reader.acquire().await?;
        Self::version_row(&mut conn, model, version)
            .await?
            .into_version()
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn list_versions(&self, model: &ModelName, q: &VersionQuery) -> Result<Page<Version>> {
        let mut conn = self.reader.acquire().await?;
        let m = Self::model_row(&mut conn, model).await?;
        let (sql, args) = version_list::build(Dialect::Sqlite, m.id, q);
        let mut query = query_as::<_, ListedVersionRow>(sqlx::AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Uuid(u) => query.bind(u),
                Arg::I64(n) => query.bind(n),
                Arg::F64(n) => query.bind(n),
                Arg::Text(t) => query.bind(t),
                // The SQLite dialect builds JSON paths as text; an array binds as JSON.
                Arg::TextArray(a) => query.bind(sqlx::types::Json(a)),
                Arg::Time(t) => query.bind(ts(t)),
                Arg::Json(j) => query.bind(sqlx::types::Json(j)),
            };
        }
        version_list::collect_page(query.fetch(&mut *conn), q).await
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn update_version(
        &self,
        model: &ModelName,
        version: i64,
        patch: Patch,
        actor: &Actor,
    ) -> Result<Version> {
        self.write(async |tx| {
            let row = Self::version_row(&mut *tx, model, version).await?;
            let tags = Tags::from_stored(row.tags.0.clone());
            if let Some((description, tags, details)) = patch_changes(&row.description, &tags, &patch)?
            {
                let now = time::now();
                let model_id: Uuid = query_scalar(
                    "update versions set description = $2, tags = $3, updated_at = $4 where id = $1 returning model_id",
                )
                .bind(row.id)
                .bind(&description)
                .bind(sqlx::types::Json(&tags))
                .bind(ts(now))
                .fetch_one(&mut *tx)
                .await?;
                Self::record(
                    &mut *tx,
                    NewEvent::model("version.updated", model_id, model.as_str(), now)
                        .version(version)
                        .details(details),
                    actor,
                )
                .await?;
            }
            let row = Self::version_row(&mut *tx, model, version).await?;
            row.into_version()
        })
        .await
    }

    #[instrument(skip_all, fields(model = %model, version, transition = ?transition))]
    async fn transition_version(
        &self,
        model: &ModelName,
        version: i64,
        transition: Transition,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<Version> {
        self.write(async |tx| {
            let row = Self::version_row(&mut *tx, model, version).await?;
            let status = VersionStatus::from_stored(&row.status)?;
            if let Outcome::Move(target) = status.apply(transition)? {
                if transition == Transition::Archive {
                    let stages = Self::stages_holding(&mut *tx, row.id).await?;
                    if !stages.is_empty() {
                        return Err(in_stage_error(version, &stages));
                    }
                }
                let now = time::now();
                let model_id: Uuid = query_scalar(
                    "update versions set status = $2, status_reason = coalesce($3, status_reason), updated_at = $4 \
                     where id = $1 returning model_id",
                )
                .bind(row.id)
                .bind(target.as_str())
                .bind(&reason)
                .bind(ts(now))
                .fetch_one(&mut *tx)
                .await?;
                let details = serde_json::json!({"from": status.as_str(), "to": target.as_str(), "reason": reason});
                Self::record(
                    &mut *tx,
                    NewEvent::model(transition.event(), model_id, model.as_str(), now)
                        .version(version)
                        .details(details),
                    actor,
                )
                .await?;
            }
            let row = Self::version_row(&mut *tx, model, version).await?;
            row.into_version()
        })
        .await
    }

    #[instrument(skip_all)]
    async fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        let rows = query_as::<_, EventRow>(
            "select id, action, model, version, stage, actor, actor_token_id, at, details from events \
             where ($1 is null or id > $1) \
               and ($2 is null or model = $2) \
               and ($3 is null or action = $3) \
               and ($5 is null or exists (select 1 from json_each($5) g where model like g.value escape '\\')) \
             order by id limit $4",
        )
        .bind(q.after)
        .bind(&q.model)
        .bind(&q.action)
        .bind(i64::from(q.limit) + 1)
        .bind(q.visible.as_ref().map(sqlx::types::Json))
        .fetch_all(&self.reader)
        .await?;
        let items: Vec<Event> = rows.into_iter().map(Event::from).collect();
        Ok(page(items, q.limit, |e| e.event_id.to_string()))
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn list_stages(&self, model: &ModelName) -> Result<Vec<StageEntry>> {
        let mut conn = self.reader.acquire().await?;
        let row = Self::model_row(&mut conn, model).await?;
        Self::stage_entries(&mut conn, row.id).await
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage))]
    async fn get_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        at: Option<Timestamp>,
    ) -> Result<StageEntry> {
        let mut conn = self.reader.acquire().await?;
        Self::read_stage(&mut conn, model, stage, at).await
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage, op = ?req.op))]
    async fn change_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        req: StageRequest,
        actor: &Actor,
    ) -> Result<StageChange> {
        self.write(async |tx| {
            let change =
                change_stage(&mut SqliteStageTx(&mut *tx), model, stage, req, actor).await?;
            Ok(change)
        })
        .await
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage))]
    async fn stage_history(
        &self,
        model: &ModelName,
        stage: &StageName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Page<HistoryEntry>> {
        let mut conn = self.reader.acquire().await?;
        Self::read_history(&mut conn, model, stage, limit, before).await
    }

    #[instrument(skip_all, fields(model = %model, version, series = batches.len()))]
    async fn write_metrics(
        &self,
        model: &ModelName,
        version: i64,
        batches: &[SeriesBatch],
    ) -> Result<()> {
        self.write(async |tx| {
            let version_id = Self::version_id(&mut *tx, model, version).await?;
            Self::insert_metrics(&mut *tx, version_id, batches).await?;
            Ok(())
        })
        .await
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn metric_summaries(
        &self,
        model: &ModelName,
        version: i64,
    ) -> Result<Vec<MetricSummary>> {
        let mut conn = self.reader.acquire().await?;
        let version_id = Self::version_id(&mut conn, model, version).await?;
        Ok(query_as(shared::SUMMARIES)
            .bind(version_id)
            .fetch_all(&mut *conn)
            .await?)
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn find_series(
        &self,
        model: &ModelName,
        version: i64,
        key: &str,
    ) -> Result<Option<SeriesInfo>> {
        let mut conn = self.reader.acquire().await?;
        let version_id = Self::version_id(&mut conn, model, version).await?;
        let series: Option<SeriesInfo> = query_as(shared::SERIES)
            .bind(version_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(series.filter(|s| s.count > 0))
    }

    #[instrument(skip_all, fields(series_id, level = plan.level))]
    async fn read_buckets(&self, series_id: i64, plan: &BucketPlan) -> Result<Vec<BucketRow>> {
        let mut q = query_as::<_, BucketRow>(shared::BUCKETS);
        for b in shared::bucket_binds(series_id, plan) {
            q = q.bind(b);
        }
        let q = q
            .bind(crate::domain::metrics::SUM_SCALE)
            .bind(crate::domain::metrics::SUM_FLOOR);
        Ok(q.fetch_all(&self.reader).await?)
    }

    fn stream_points(&self, series_id: i64, from: i64, to: i64) -> PointStream {
        self.point_stream(series_id, from, to)
    }

    async fn version_status(&self, model: &ModelName, version: i64) -> Result<VersionStatus> {
        let mut conn = self.reader.acquire().await?;
        let row = Self::version_row(&mut conn, model, version).await?;
        VersionStatus::from_stored(&row.status)
    }

    #[instrument(skip_all, fields(model = %model, version, path = %artifact.path))]
    async fn add_artifact(
        &self,
        model: &ModelName,
        version: i64,
        artifact: Artifact,
        actor: &Actor,
    ) -> Result<Artifact> {
        self.write(async |tx| {
            Self::insert_artifact(&mut *tx, model, version, &artifact, actor).await?;
            Ok(artifact)
        })
        .await
    }

    async fn list_artifacts(&self, model: &ModelName, version: i64) -> Result<Vec<Artifact>> {
        let mut conn = self.reader.acquire().await?;
        Self::artifacts_of(&mut conn, model, version).await
    }

    async fn get_artifact(&self, model: &ModelName, version: i64, path: &str) -> Result<Artifact> {
        let mut conn = self.reader.acquire().await?;
        Self::artifact(&mut conn, model, version, path).await
    }

    #[instrument(skip_all, fields(model = %model, version, path))]
    async fn delete_artifact(
        &self,
        model: &ModelName,
        version: i64,
        path: &str,
        actor: &Actor,
    ) -> Result<Artifact> {
        self.write(async |tx| {
            let removed = Self::remove_artifact(&mut *tx, model, version, path, actor).await?;
            Ok(removed)
        })
        .await
    }

    async fn artifact_keys(&self) -> Result<Vec<String>> {
        Ok(query_scalar("select object_key from artifacts")
            .fetch_all(&self.reader)
            .await?)
    }

    async fn create_token(&self, token: &TokenRecord, actor: &Actor) -> Result<()> {
        self.insert_token(token, actor).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.all_tokens().await
    }

    async fn find_token(&self, id: Uuid) -> Result<Option<TokenRecord>> {
        self.token(id).await
    }

    async fn revoke_token(&self, id: Uuid, actor: &Actor) -> Result<()> {
        self.revoke(id, actor).await
    }
}
