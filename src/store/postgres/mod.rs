//! The Postgres store: the production backend.

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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, query, query_as, query_scalar};
use stages::PgStageTx;
use std::str::FromStr;
use std::time::Duration;
use tracing::instrument;

pub struct PgStore {
    pool: PgPool,
    /// One connection of its own for readiness checks, so that a busy pool (a load spike, a
    /// burst of slow requests) never makes a healthy server look down to its orchestrator.
    health: PgPool,
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    #[sqlx(flatten)]
    version: VersionRow,
    artifacts: sqlx::types::Json<Vec<Artifact>>,
    metrics: sqlx::types::Json<Vec<MetricSummary>>,
}

macro_rules! model_select {
    () => {
        "select id, name, description, tags, last_version, created_at, updated_at, created_by from models "
    };
}

/// How long an event log read waits for the transactions that may still commit events below
/// the log's current end.
const EVENT_WAIT: Duration = Duration::from_secs(2);

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("modelreg");
        let health = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options.clone());
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // JIT compilation pays off for long analytical queries; here it only adds hundreds
            // of milliseconds to the occasional query the planner overestimates (a list ordered
            // by a metric over thousands of versions). A session setting rather than a startup
            // option, which connection poolers such as PgBouncer refuse.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "set jit = off").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, health })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn model_row(conn: &mut PgConnection, name: &ModelName, lock: bool) -> Result<ModelRow> {
        let sql = if lock {
            concat!(model_select!(), "where name = $1 for update")
        } else {
            concat!(model_select!(), "where name = $1")
        };
        query_as::<_, ModelRow>(sql)
            .bind(name.as_str())
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| Error::model_not_found(name.as_str()))
    }

    async fn version_row(
        conn: &mut PgConnection,
        model: &ModelName,
        version: i64,
        lock: bool,
    ) -> Result<VersionRow> {
        let sql = if lock {
            concat!(
                version_select!(),
                "where m.name = $1 and v.version = $2 for update of v"
            )
        } else {
            concat!(version_select!(), "where m.name = $1 and v.version = $2")
        };
        let row = query_as::<_, VersionRow>(sql)
            .bind(model.as_str())
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => Ok(row),
            None => {
                Self::model_row(conn, model, false).await?;
                Err(Error::version_not_found(model.as_str(), version))
            }
        }
    }

    /// Registration without an idempotency key as one statement (its own transaction): the
    /// model row is locked from the number's increment to the commit and no longer, which is
    /// what bounds the registration rate of one model.
    async fn register_one_statement(
        &self,
        model: &ModelName,
        new: NewVersion,
        actor: &Actor,
    ) -> Result<Registered> {
        let now = time::now();
        let id = Uuid::now_v7();
        let status = if new.finalize {
            VersionStatus::Ready
        } else {
            VersionStatus::Pending
        };
        let details = serde_json::json!({"status": status.as_str()});
        let row: Option<(i64,)> = query_as(
            "with m as (update models set last_version = last_version + 1 where name = $1 returning id, last_version), \
             v as (insert into versions (id, model_id, version, status, description, config, source, tags, \
                                         created_at, updated_at, created_by) \
                   select $2, m.id, m.last_version, $3, $4, $5, $6, $7, $8, $8, $9 from m \
                   returning model_id, version), \
             e as (insert into events (at, action, model_id, model, version, actor, actor_token_id, details) \
                   select $8, x.action, v.model_id, $1, v.version, $9, $12, x.details \
                   from v, (values (1, 'version.created', $10::jsonb), (2, 'version.finalized', '{}'::jsonb)) \
                        as x(o, action, details) \
                   where x.o = 1 or $11 order by x.o) \
             select version from v",
        )
        .bind(model.as_str())
        .bind(id)
        .bind(status.as_str())
        .bind(&new.description)
        .bind(sqlx::types::Json(&new.config))
        .bind(sqlx::types::Json(&new.source))
        .bind(sqlx::types::Json(&new.tags))
        .bind(now)
        .bind(&actor.name)
        .bind(sqlx::types::Json(&details))
        .bind(new.finalize)
        .bind(actor.token_id)
        .fetch_optional(&self.pool)
        .await?;
        let (number,) = row.ok_or_else(|| Error::model_not_found(model.as_str()))?;
        Registered::new(id, model, number, status, new, now, actor)
    }

    async fn stages_of(conn: &mut PgConnection, model_id: Uuid) -> Result<BTreeMap<String, i64>> {
        let entries = Self::stage_entries(conn, model_id).await?;
        Ok(entries.into_iter().map(|e| (e.stage, e.version)).collect())
    }

    async fn record(conn: &mut PgConnection, e: NewEvent<'_>, actor: &Actor) -> Result<i64> {
        let id = query_scalar(
            "insert into events (at, action, model_id, model, version, stage, actor, actor_token_id, details) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
        )
        .bind(e.at)
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

    /// The highest event id up to which the log is final: every event with an id up to it has
    /// committed or rolled back, so a reader tailing with `after=` never moves past an event
    /// that commits later. Event ids are drawn only once their transaction has an xid
    /// (migration 0006), so the transactions that may hold ids up to the sequence's value are
    /// among those in progress right after it is read; this waits for them (writes here last
    /// milliseconds) and never delays a writer. `pg_stat_activity` shows every session's xid,
    /// whatever role reads it.
    async fn event_horizon(conn: &mut PgConnection) -> Result<i64> {
        let (last, called): (i64, bool) = query_as("select last_value, is_called from event_ids")
            .fetch_one(&mut *conn)
            .await?;
        let horizon = if called { last } else { last - 1 };
        let mut in_flight: Vec<String> = query_scalar(
            "select coalesce(array_agg(backend_xid::text), '{}') from pg_stat_activity \
             where datname = current_database() and backend_xid is not null \
               and pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await?;
        let deadline = std::time::Instant::now() + EVENT_WAIT;
        while !in_flight.is_empty() {
            if std::time::Instant::now() >= deadline {
                // A transaction open this long is not one of ours; answer rather than hang.
                tracing::warn!(
                    transactions = in_flight.len(),
                    "event log read gave up waiting for transactions in progress"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            in_flight = query_scalar(
                "select coalesce(array_agg(backend_xid::text), '{}') from pg_stat_activity \
                 where datname = current_database() and backend_xid::text = any($1)",
            )
            .bind(&in_flight)
            .fetch_one(&mut *conn)
            .await?;
        }
        Ok(horizon)
    }

    /// Writes a model's new description and tags and records `model.updated`.
    async fn write_model_change(
        conn: &mut PgConnection,
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
            .bind(now)
            .execute(&mut *conn)
            .await?;
        let event = NewEvent::model("model.updated", model_id, name.as_str(), now).details(details);
        Self::record(conn, event, actor).await?;
        Ok(())
    }

    async fn full_model(conn: &mut PgConnection, row: ModelRow) -> Result<Model> {
        let stages = Self::stages_of(conn, row.id).await?;
        Ok(row.into_model(stages))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(Error::internal)
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
        }
    }

    async fn ping(&self) -> Result<()> {
        query("select 1").execute(&self.health).await?;
        Ok(())
    }

    #[instrument(skip_all, fields(model = %new.name))]
    async fn create_model(&self, new: NewModel, actor: &Actor) -> Result<Model> {
        let mut tx = self.pool.begin().await?;
        let now = time::now();
        let id = Uuid::now_v7();
        query(
            "insert into models (id, name, description, tags, created_at, updated_at, created_by) \
             values ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(id)
        .bind(new.name.as_str())
        .bind(&new.description)
        .bind(sqlx::types::Json(&new.tags))
        .bind(now)
        .bind(&actor.name)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            on_unique(e, || {
                Error::conflict(
                    "model_exists",
                    format!("model '{}' already exists", new.name),
                )
            })
        })?;
        let details = serde_json::json!({"description": new.description, "tags": new.tags});
        Self::record(
            &mut tx,
            NewEvent::model("model.created", id, new.name.as_str(), now).details(details),
            actor,
        )
        .await?;
        let row = Self::model_row(&mut tx, &new.name, false).await?;
        tx.commit().await?;
        Ok(row.into_model(BTreeMap::new()))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn put_model(
        &self,
        name: &ModelName,
        put: PutModel,
        actor: &Actor,
    ) -> Result<(Model, bool)> {
        let mut tx = self.pool.begin().await?;
        let now = time::now();
        let id = Uuid::now_v7();
        let tags = put.tags.clone().unwrap_or_default();
        let inserted = query(
            "insert into models (id, name, description, tags, created_at, updated_at, created_by) \
             values ($1, $2, $3, $4, $5, $5, $6) on conflict (name) do nothing",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(&put.description)
        .bind(sqlx::types::Json(&tags))
        .bind(now)
        .bind(&actor.name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            let details = serde_json::json!({"description": put.description, "tags": tags});
            Self::record(
                &mut tx,
                NewEvent::model("model.created", id, name.as_str(), now).details(details),
                actor,
            )
            .await?;
            let row = Self::model_row(&mut tx, name, false).await?;
            tx.commit().await?;
            return Ok((row.into_model(BTreeMap::new()), true));
        }
        let row = Self::model_row(&mut tx, name, true).await?;
        let model_id = row.id;
        let current = Self::full_model(&mut tx, row).await?;
        let Some((description, tags, details)) = put_changes(&current, &put) else {
            tx.commit().await?;
            return Ok((current, false));
        };
        Self::write_model_change(
            &mut tx,
            model_id,
            name,
            (description, tags, details),
            now,
            actor,
        )
        .await?;
        let row = Self::model_row(&mut tx, name, false).await?;
        let model = Self::full_model(&mut tx, row).await?;
        tx.commit().await?;
        Ok((model, false))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn get_model(&self, name: &ModelName) -> Result<Model> {
        let mut conn = self.pool.acquire().await?;
        let row = Self::model_row(&mut conn, name, false).await?;
        Self::full_model(&mut conn, row).await
    }

    #[instrument(skip_all)]
    async fn list_models(&self, q: &ModelQuery) -> Result<Page<Model>> {
        let tags = (!q.tags.is_empty()).then(|| sqlx::types::Json(q.tags.as_map()));
        let rows = query_as::<_, ModelRow>(concat!(
            model_select!(),
            "where ($1::text is null or starts_with(name, $1)) \
               and ($2::jsonb is null or tags @> $2) \
               and ($3::text is null or name > $3) \
               and ($5::text[] is null or name like any($5)) \
             order by name limit $4"
        ))
        .bind(&q.prefix)
        .bind(tags)
        .bind(&q.after)
        .bind(i64::from(q.limit) + 1)
        .bind(&q.visible)
        .fetch_all(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(Self::full_model(&mut conn, row).await?);
        }
        Ok(page(items, q.limit, |m| cursor::encode("m", &m.name)))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn update_model(&self, name: &ModelName, patch: Patch, actor: &Actor) -> Result<Model> {
        let mut tx = self.pool.begin().await?;
        let row = Self::model_row(&mut tx, name, true).await?;
        let model_id = row.id;
        let tags = Tags::from_stored(row.tags.0.clone());
        if let Some((description, tags, details)) = patch_changes(&row.description, &tags, &patch)?
        {
            let change = (description, tags, details);
            Self::write_model_change(&mut tx, model_id, name, change, time::now(), actor).await?;
        }
        let row = Self::model_row(&mut tx, name, false).await?;
        let model = Self::full_model(&mut tx, row).await?;
        tx.commit().await?;
        Ok(model)
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn delete_model(&self, name: &ModelName, actor: &Actor) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let row = Self::model_row(&mut tx, name, true).await?;
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
            &mut tx,
            NewEvent::model("model.deleted", row.id, name.as_str(), time::now()),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn register_version(
        &self,
        model: &ModelName,
        new: NewVersion,
        idempotency: Option<Idempotency>,
        actor: &Actor,
    ) -> Result<Registered> {
        if idempotency.is_none() {
            return self.register_one_statement(model, new, actor).await;
        }
        let mut tx = self.pool.begin().await?;
        let now = time::now();
        // Taking the next number locks the model row until commit: registrations of one model
        // are serialized across every server process, and a rollback returns the number.
        let (model_id, number): (Uuid, i64) = query_as(
            "update models set last_version = last_version + 1 where name = $1 returning id, last_version",
        )
        .bind(model.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::model_not_found(model.as_str()))?;
        if let Some(idem) = &idempotency {
            let seen = query_as::<_, IdempotencyRow>(
                "select k.request_hash, v.version from idempotency_keys k \
                 join versions v on v.id = k.version_id \
                 where k.model_id = $1 and k.key = $2 and k.created_at > $3",
            )
            .bind(model_id)
            .bind(&idem.key)
            .bind(idempotency_cutoff(now))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(seen) = seen {
                tx.rollback().await?;
                let version = idempotent_replay(model, &seen.request_hash, idem, seen.version)?;
                let version = self.get_version(model, version).await?;
                return Ok(Registered {
                    version,
                    created: false,
                });
            }
        }
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
        .bind(now)
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
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let details = serde_json::json!({"status": status.as_str()});
        Self::record(
            &mut tx,
            NewEvent::model("version.created", model_id, model.as_str(), now)
                .version(number)
                .details(details),
            actor,
        )
        .await?;
        if new.finalize {
            Self::record(
                &mut tx,
                NewEvent::model("version.finalized", model_id, model.as_str(), now).version(number),
                actor,
            )
            .await?;
        }
        tx.commit().await?;
        Registered::new(id, model, number, status, new, now, actor)
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn version_detail(&self, model: &ModelName, version: i64) -> Result<VersionDetail> {
        // One round trip: the version row with its artifacts and summaries as JSON.
        let row = query_as::<_, DetailRow>(
            "select v.id, m.name as model, v.version, v.status, v.description, v.config, v.source, \
                    v.tags, v.status_reason, v.created_at, v.updated_at, v.created_by, \
                    (select coalesce(json_agg(json_build_object('path', a.path, 'size', a.size, 'sha256', a.sha256, \
                            'content_type', a.content_type, 'created_at', a.created_at, 'object_key', a.object_key) \
                            order by a.path), '[]') from artifacts a where a.version_id = v.id) as artifacts, \
                    (select coalesce(json_agg(x order by x.key), '[]') from \
                       (select s.key, sum(r.count)::bigint as count, min(r.first_step) as first_step, \
                               max(r.last_step) as last_step, min(r.min) as min, max(r.max) as max, \
                               (array_agg(r.last order by r.last_step desc))[1] as last \
                        from metric_series s join metric_rollups r on r.series_id = s.id and r.level = 3 \
                        where s.version_id = v.id group by s.key) x) as metrics \
             from versions v join models m on m.id = v.model_id where m.name = $1 and v.version = $2",
        )
        .bind(model.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(VersionDetail {
                artifacts: r.artifacts.0,
                metrics: r.metrics.0,
                version: r.version.into_version()?,
            }),
            None => {
                let mut conn = self.pool.acquire().await?;
                Self::model_row(&mut conn, model, false).await?;
                Err(Error::version_not_found(model.as_str(), version))
            }
        }
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn get_version(&self, model: &ModelName, version: i64) -> Result<Version> {
        let mut conn = self.pool.acquire().await?;
        Self::version_row(&mut conn, model, version, false)
            .await?
            .into_version()
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn list_versions(&self, model: &ModelName, q: &VersionQuery) -> Result<Page<Version>> {
        let mut conn = self.pool.acquire().await?;
        let m = Self::model_row(&mut conn, model, false).await?;
        let (sql, args) = version_list::build(Dialect::Postgres, m.id, q);
        let mut query = query_as::<_, ListedVersionRow>(sqlx::AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Uuid(u) => query.bind(u),
                Arg::I64(n) => query.bind(n),
                Arg::F64(n) => query.bind(n),
                Arg::Text(t) => query.bind(t),
                Arg::TextArray(a) => query.bind(a),
                Arg::Time(t) => query.bind(t),
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
        let mut tx = self.pool.begin().await?;
        let row = Self::version_row(&mut tx, model, version, true).await?;
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
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            Self::record(
                &mut tx,
                NewEvent::model("version.updated", model_id, model.as_str(), now)
                    .version(version)
                    .details(details),
                actor,
            )
            .await?;
        }
        let row = Self::version_row(&mut tx, model, version, false).await?;
        tx.commit().await?;
        row.into_version()
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
        let mut tx = self.pool.begin().await?;
        let row = Self::version_row(&mut tx, model, version, true).await?;
        let status = VersionStatus::from_stored(&row.status)?;
        if let Outcome::Move(target) = status.apply(transition)? {
            if transition == Transition::Archive {
                let stages = Self::stages_holding(&mut tx, row.id).await?;
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
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let details = serde_json::json!({"from": status.as_str(), "to": target.as_str(), "reason": reason});
            Self::record(
                &mut tx,
                NewEvent::model(transition.event(), model_id, model.as_str(), now)
                    .version(version)
                    .details(details),
                actor,
            )
            .await?;
        }
        let row = Self::version_row(&mut tx, model, version, false).await?;
        tx.commit().await?;
        row.into_version()
    }

    #[instrument(skip_all)]
    async fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        let mut conn = self.pool.acquire().await?;
        let horizon = Self::event_horizon(&mut conn).await?;
        let rows = query_as::<_, EventRow>(
            "select id, action, model, version, stage, actor, actor_token_id, at, details from events \
             where ($1::bigint is null or id > $1) \
               and ($2::text is null or model = $2) \
               and ($3::text is null or action = $3) \
               and ($5::text[] is null or model like any($5)) \
               and id <= $6 \
             order by id limit $4",
        )
        .bind(q.after)
        .bind(&q.model)
        .bind(&q.action)
        .bind(i64::from(q.limit) + 1)
        .bind(&q.visible)
        .bind(horizon)
        .fetch_all(&mut *conn)
        .await?;
        let items: Vec<Event> = rows.into_iter().map(Event::from).collect();
        Ok(page(items, q.limit, |e| e.event_id.to_string()))
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn list_stages(&self, model: &ModelName) -> Result<Vec<StageEntry>> {
        let mut conn = self.pool.acquire().await?;
        let row = Self::model_row(&mut conn, model, false).await?;
        Self::stage_entries(&mut conn, row.id).await
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage))]
    async fn get_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        at: Option<Timestamp>,
    ) -> Result<StageEntry> {
        let mut conn = self.pool.acquire().await?;
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
        let mut tx = self.pool.begin().await?;
        let change = change_stage(&mut PgStageTx(&mut tx), model, stage, req, actor).await?;
        tx.commit().await?;
        Ok(change)
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage))]
    async fn stage_history(
        &self,
        model: &ModelName,
        stage: &StageName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Page<HistoryEntry>> {
        let mut conn = self.pool.acquire().await?;
        Self::read_history(&mut conn, model, stage, limit, before).await
    }

    #[instrument(skip_all, fields(model = %model, version, series = batches.len()))]
    async fn write_metrics(
        &self,
        model: &ModelName,
        version: i64,
        batches: &[SeriesBatch],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let version_id = Self::version_id(&mut tx, model, version).await?;
        Self::insert_metrics(&mut tx, version_id, batches).await?;
        tx.commit().await?;
        Ok(())
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn metric_summaries(
        &self,
        model: &ModelName,
        version: i64,
    ) -> Result<Vec<MetricSummary>> {
        let mut conn = self.pool.acquire().await?;
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
        let mut conn = self.pool.acquire().await?;
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
        let binds = shared::bucket_binds(series_id, plan);
        let mut q = query_as::<_, BucketRow>(shared::BUCKETS);
        for (i, b) in binds.iter().enumerate() {
            // $2 is the rollup level, a smallint column.
            q = if i == 1 {
                q.bind(*b as i16)
            } else {
                q.bind(*b)
            };
        }
        let q = q
            .bind(crate::domain::metrics::SUM_SCALE)
            .bind(crate::domain::metrics::SUM_FLOOR);
        Ok(q.fetch_all(&self.pool).await?)
    }

    fn stream_points(&self, series_id: i64, from: i64, to: i64) -> PointStream {
        self.point_stream(series_id, from, to)
    }

    async fn version_status(&self, model: &ModelName, version: i64) -> Result<VersionStatus> {
        let mut conn = self.pool.acquire().await?;
        let row = Self::version_row(&mut conn, model, version, false).await?;
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
        let mut tx = self.pool.begin().await?;
        Self::insert_artifact(&mut tx, model, version, &artifact, actor).await?;
        tx.commit().await?;
        Ok(artifact)
    }

    async fn list_artifacts(&self, model: &ModelName, version: i64) -> Result<Vec<Artifact>> {
        let mut conn = self.pool.acquire().await?;
        Self::artifacts_of(&mut conn, model, version).await
    }

    async fn get_artifact(&self, model: &ModelName, version: i64, path: &str) -> Result<Artifact> {
        let mut conn = self.pool.acquire().await?;
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
        let mut tx = self.pool.begin().await?;
        let removed = Self::remove_artifact(&mut tx, model, version, path, actor).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn artifact_keys(&self) -> Result<Vec<String>> {
        Ok(query_scalar("select object_key from artifacts")
            .fetch_all(&self.pool)
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
