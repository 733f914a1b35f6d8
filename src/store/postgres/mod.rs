//! The Postgres backend: the production database. Its pool and transactions, and the fast
//! paths that save round trips on the hottest writes and reads.

mod conn;
mod metrics;
mod replicas;

pub use replicas::ReplicaStatus;
use replicas::Replicas;

use super::ReplicaReport;
use super::commits::{Commits, Local};
use super::rows::VersionRow;
use super::{
    Actor, Artifact, Backend, MetricSummary, NewVersion, OutboxSignal, PoolStats, Registered,
    SqlStore, VersionDetail, versions,
};
use crate::domain::{Description, ModelName, VersionStatus, time};
use crate::error::{Error, Result};
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction, query, query_as};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The Postgres database behind a [`PgStore`].
#[derive(Clone)]
pub struct Pg {
    pool: PgPool,
    /// One connection of its own for readiness checks, so that a busy pool (a load spike, a
    /// burst of slow requests) never makes a healthy server look down to its orchestrator.
    health: PgPool,
    /// Told of every commit (see [`announce`] and [`Listener`]).
    commits: Arc<Commits>,
    /// Read replicas (none unless configured).
    replicas: Arc<Replicas>,
}

/// The channel on which processes tell each other's webhook dispatchers that they committed.
pub(crate) const WEBHOOK_CHANNEL: &str = "modelreg_webhooks";

/// At most one notice per this interval: a burst of commits costs one `NOTIFY`.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);

/// Wakes on this process's commits, and on other processes' notices on [`WEBHOOK_CHANNEL`]
/// (listened to on a connection of its own).
struct Listener {
    remote: sqlx::postgres::PgListener,
    local: Local,
}

#[async_trait]
impl OutboxSignal for Listener {
    async fn changed(&mut self) {
        tokio::select! {
            () = self.local.next() => {}
            got = self.remote.recv() => {
                if let Err(e) = got {
                    // The connection is re-opened by the next call; what was missed meanwhile
                    // is found by the caller's claim, so a failure wakes it too.
                    tracing::warn!(error = %e, "webhook listener lost its connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Tells the dispatchers of other processes (a process may serve with its own dispatcher
/// off) that this one committed, after the commit and outside any request: `NOTIFY` inside a
/// transaction would make every commit of it queue on one database-wide lock.
async fn announce(pool: PgPool, mut commits: Local) {
    loop {
        commits.next().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = query("select pg_notify($1, '')")
            .bind(WEBHOOK_CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "cannot notify other webhook dispatchers");
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

/// The store on Postgres.
pub type PgStore = SqlStore<Pg>;

impl SqlStore<Pg> {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        Self::connect_with_replicas(url, max_connections, &[], Duration::from_secs(1)).await
    }

    /// [`connect`](Self::connect), with read replicas (`read_urls`) that serve the reads a
    /// request may take from them while within `max_lag` of the primary.
    pub async fn connect_with_replicas(
        url: &str,
        max_connections: u32,
        read_urls: &[String],
        max_lag: Duration,
    ) -> Result<Self, sqlx::Error> {
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
        let commits = Arc::new(Commits::default());
        tokio::spawn(announce(pool.clone(), commits.subscribe()));
        let replicas = Arc::new(Replicas::new(read_urls, max_connections, max_lag)?);
        if !replicas.is_empty() {
            replicas.check(&pool).await;
            tokio::spawn(replicas.clone().watch(pool.clone()));
        }
        Ok(Self::new(Pg {
            pool,
            health,
            commits,
            replicas,
        }))
    }

    pub fn pool(&self) -> &PgPool {
        &self.backend().pool
    }
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    #[sqlx(flatten)]
    version: VersionRow,
    artifacts: sqlx::types::Json<Vec<Artifact>>,
    metrics: sqlx::types::Json<Vec<MetricSummary>>,
    inputs: sqlx::types::Json<Vec<crate::domain::inputs::Input>>,
    interface_schema: Option<sqlx::types::Json<crate::domain::schema::Schema>>,
}

/// The one-statement registration (see `register_plain`).
const REGISTER: &str = "with c as (select count(*) as n from unnest($19::text[], $20::bigint[]) as w(model, version) \
                        join models cm on cm.name = w.model \
                        join versions cv on cv.model_id = cm.id and cv.version = w.version \
                        where cv.status <> 'pending'), \
             m as (update models set last_version = last_version + 1 \
                   where name = $1 and (select n from c) = $21 returning id, last_version), \
             v as (insert into versions (id, model_id, version, status, description, config, source, tags, \
                                         created_at, updated_at, created_by, interface_schema, digest) \
                   select $2, m.id, m.last_version, $3, $4, $5, $6, $7, $8, $8, $9, $14, \
                          case when $11 then 'sha256:' || encode(sha256(convert_to( \
                              $22 || cast(m.last_version as text) || $23, 'UTF8')), 'hex') end \
                   from m \
                   returning model_id, version, digest), \
             i as (insert into version_inputs (version_id, position, kind, name, digest, body, created_at) \
                   select $2, t.o - 1, t.kind, t.name, t.digest, t.body, $8 \
                   from v, unnest($15::text[], $16::text[], $17::text[], $18::jsonb[]) \
                        with ordinality as t(kind, name, digest, body, o)), \
             e as (insert into events (at, action, model_id, model, version, actor, actor_token_id, details, actor_subject) \
                   select $8, x.action, v.model_id, $1, v.version, $9, $12, \
                          case when x.o = 2 then jsonb_build_object('digest', v.digest) else x.details end, $13 \
                   from v, (values (1, 'version.created', $10::jsonb), (2, 'version.finalized', '{}'::jsonb)) \
                        as x(o, action, details) \
                   where x.o = 1 or $11 order by x.o) \
             select version from v";

#[async_trait]
impl Backend for Pg {
    type Conn = PgConnection;
    type Read = PoolConnection<Postgres>;
    type Tx = Transaction<'static, Postgres>;

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(Error::internal)
    }

    async fn ping(&self) -> Result<()> {
        query("select 1").execute(&self.health).await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
        }
    }

    async fn read(&self) -> Result<Self::Read> {
        if !self.replicas.is_empty()
            && let Some(route) = crate::store::reads::current()
            && let Some(conn) = self.replicas.pick(route.at_least).await
        {
            route.mark_replica();
            return Ok(conn);
        }
        Ok(self.pool.acquire().await?)
    }

    async fn write_position(&self) -> Option<u64> {
        if self.replicas.is_empty() {
            return None;
        }
        let got: std::result::Result<(i64,), _> =
            query_as("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&self.pool)
                .await;
        got.ok().and_then(|(p,)| u64::try_from(p).ok())
    }

    fn replicas(&self) -> ReplicaReport {
        ReplicaReport {
            replicas: self.replicas.status(),
            primary_reads: self
                .replicas
                .primary_reads
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn begin(&self) -> Result<Self::Tx> {
        Ok(self.pool.begin().await?)
    }

    async fn commit(&self, tx: Self::Tx) -> Result<()> {
        tx.commit().await?;
        self.commits.committed();
        Ok(())
    }

    async fn outbox_signal(&self) -> Result<Box<dyn OutboxSignal>> {
        let local = self.commits.subscribe();
        let mut remote = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        remote.listen(WEBHOOK_CHANNEL).await?;
        Ok(Box::new(Listener { remote, local }))
    }

    async fn rollback(&self, tx: Self::Tx, _: Option<&Error>) {
        // A failed rollback leaves the connection broken; the pool discards it.
        let _ = tx.rollback().await;
    }

    /// One statement (its own transaction): the model row is locked from the number's
    /// increment to the commit and no longer, which is what bounds the registration rate of
    /// one model. Its inputs are written by the same statement, which registers nothing
    /// unless every `version` input names a version that is not pending; when it registers
    /// nothing, the portable check says why (or the model is not there).
    async fn register_plain(
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
        let mut details = serde_json::json!({"status": status.as_str()});
        // A version registered ready has no artifacts here: its manifest is known but for
        // its number, which the statement puts between these two parts.
        let (manifest_head, manifest_tail) = crate::domain::digest::manifest_around_number(
            model.as_str(),
            &serde_json::Value::Object(new.config.clone()),
        );
        if !new.inputs.is_empty() {
            details["inputs"] = new.inputs.len().into();
        }
        let (wanted_models, wanted_numbers): (Vec<&str>, Vec<i64>) = new
            .inputs
            .iter()
            .filter_map(|i| match i {
                crate::domain::inputs::Input::Version(v) => Some((v.model.as_str(), v.version)),
                _ => None,
            })
            .unzip();
        let mut kinds = Vec::with_capacity(new.inputs.len());
        let mut names = Vec::with_capacity(new.inputs.len());
        let mut digests = Vec::with_capacity(new.inputs.len());
        let mut bodies = Vec::with_capacity(new.inputs.len());
        for input in &new.inputs {
            let (name, digest) = input.keys();
            kinds.push(input.kind());
            names.push(name);
            digests.push(digest);
            bodies.push(sqlx::types::Json(input));
        }
        // A pending input finalized between the statement and the check: once more.
        for _ in 0..2 {
            let row: Option<(i64,)> = query_as(REGISTER)
                .bind(model.as_str())
                .bind(id)
                .bind(status.as_str())
                .bind(new.description.as_ref().map(Description::as_str))
                .bind(sqlx::types::Json(&new.config))
                .bind(sqlx::types::Json(&new.source))
                .bind(sqlx::types::Json(&new.tags))
                .bind(now)
                .bind(&actor.name)
                .bind(sqlx::types::Json(&details))
                .bind(new.finalize)
                .bind(actor.token_id)
                .bind(&actor.subject)
                .bind(new.schema.as_ref().map(sqlx::types::Json))
                .bind(&kinds)
                .bind(&names)
                .bind(&digests)
                .bind(&bodies)
                .bind(&wanted_models)
                .bind(&wanted_numbers)
                .bind(i64::try_from(wanted_models.len()).map_err(Error::internal)?)
                .bind(&manifest_head)
                .bind(&manifest_tail)
                .fetch_optional(&self.pool)
                .await?;
            if let Some((number,)) = row {
                self.commits.committed();
                let finalize = new.finalize;
                let mut registered = Registered::new(id, model, number, status, new, now, actor)?;
                if finalize {
                    let manifest = format!("{manifest_head}{number}{manifest_tail}");
                    registered.version.digest = Some(format!(
                        "sha256:{}",
                        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest.as_bytes()))
                    ));
                }
                return Ok(registered);
            }
            // Why nothing was registered: a version input missing or pending (the check's
            // error), or no such model.
            let mut conn = self.read().await?;
            super::inputs::check_before_registration(&mut *conn, model, &new.inputs).await?;
            super::models::row(&mut *conn, model, false).await?;
        }
        Err(Error::internal(
            "a registration's version inputs passed their check but not the write",
        ))
    }

    /// One round trip: the version row with its artifacts and summaries as JSON.
    async fn version_detail(&self, model: &ModelName, version: i64) -> Result<VersionDetail> {
        let mut conn = self.read().await?;
        let row = query_as::<_, DetailRow>(
            "select v.id, m.name as model, v.version, v.status, v.description, v.config, v.source, \
                    v.tags, v.status_reason, v.created_at, v.updated_at, v.created_by, \
                    v.erased_at, v.erased_by, v.digest, v.signed_by, \
                    (select coalesce(json_agg(json_build_object('path', a.path, 'size', a.size, 'sha256', a.sha256, \
                            'content_type', a.content_type, 'created_at', a.created_at, 'object_key', a.object_key) \
                            order by a.path), '[]') from artifacts a where a.version_id = v.id) as artifacts, \
                    (select coalesce(json_agg(x order by x.key), '[]') from \
                       (select s.key, sum(r.count)::bigint as count, min(r.first_step) as first_step, \
                               max(r.last_step) as last_step, min(r.min) as min, max(r.max) as max, \
                               (array_agg(r.last order by r.last_step desc))[1] as last \
                        from metric_series s join metric_rollups r on r.series_id = s.id and r.level = 3 \
                        where s.version_id = v.id group by s.key) x) as metrics, \
                    (select coalesce(json_agg(i.body order by i.position), '[]') \
                       from version_inputs i where i.version_id = v.id) as inputs, \
                    v.interface_schema \
             from versions v join models m on m.id = v.model_id where m.name = $1 and v.version = $2",
        )
        .bind(model.as_str())
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(r) => Ok(VersionDetail {
                artifacts: r.artifacts.0,
                metrics: r.metrics.0,
                inputs: r.inputs.0,
                schema: r.interface_schema.map(|s| s.0),
                version: r.version.into_version()?,
            }),
            None => Err(versions::missing(&mut *conn, model, version).await),
        }
    }
}
