//! Persistence: the `Store` the API talks to, one implementation over two databases.
//!
//! Each business flow (register a version, promote, upload an artifact, …) is written once,
//! in the file of its resource (`models.rs`, `versions.rs`, `stages.rs`, `metrics.rs`,
//! `artifacts.rs`, `tokens.rs`, `events.rs`), as a function generic over [`sql::Conn`]: a
//! connection that runs portable statements and provides the few that differ by dialect.
//! [`SqlStore`] runs those flows on a [`Backend`] (`postgres/`, `sqlite/`): its pools, its
//! transactions and the Postgres fast paths that measurably pay (one-statement registration,
//! single-query version detail, COPY ingestion, the one-statement stage change).
//!
//! Every operation is one transaction. Rules that must hold across server replicas (gapless
//! version numbers, idempotency keys, serialized stage changes) are enforced here by the
//! database, never by in-process locks.

/// The columns of [`rows::VersionRow`], from `versions v` joined to `models m`, ready for a
/// `where`. Both dialects read versions the same way.
macro_rules! version_select {
    () => {
        "select v.id, m.name as model, v.version, v.status, v.description, v.config, v.source, \
         v.tags, v.status_reason, v.created_at, v.updated_at, v.created_by, v.erased_at, \
         v.erased_by, v.digest, v.signed_by \
         from versions v join models m on m.id = v.model_id "
    };
}

/// Runs a flow in a write transaction of a backend: committed when it returns `Ok`, rolled
/// back otherwise.
macro_rules! transaction {
    ($db:expr, |$conn:ident| $flow:expr) => {{
        let mut tx = $db.begin().await?;
        let result = {
            let $conn = &mut *tx;
            $flow.await
        };
        $db.end(tx, result).await
    }};
}

mod artifacts;
mod cards;
mod claims;
mod commits;
mod deliveries;
mod details;
mod digests;
mod erase;
mod errors;
mod events;
mod guards;
mod inputs;
mod logged_models;
mod logged_search;
mod logged_writes;
pub(crate) mod metrics;
mod models;
mod outbox;
mod point_blocks;
mod point_reads;
mod policies;
mod postgres;
pub mod reads;
mod register;
mod request_types;
mod requests;
mod retention;
mod rollup_work;
mod rows;
mod schemas;
mod signatures;
pub(crate) mod sql;
mod sqlite;
mod stage_change;
mod stages;
mod tokens;
mod trust;
mod types;
mod usage;
mod verify;
mod verify_points;
mod version_list;
mod version_page;
mod versions;
mod webhook_types;
mod webhooks;

pub use artifacts::ArtifactStore;
pub use cards::{CardChange, CardOf, CardView};
pub use deliveries::{Attempt, ClaimLimits, Claimed, DeliveryStore, OutboxSignal, Outcome};
pub use erase::{EraseStore, Erased};
pub use events::EventStore;
pub use guards::{GuardPass, GuardStore, StageGuard, Trip};
pub use inputs::{DatasetQuery, DatasetUse, Lineage, LineageEdge, LineageNode};
pub use logged_models::{
    LoggedMetric, LoggedModel, LoggedModelStore, LoggedSearch, NewLoggedModel, RunModel,
    RunModelLink, logged_model_not_found,
};
pub use metrics::{BucketRow, MetricStore, MetricSummary, PointStream, STREAM_CHUNK, SeriesInfo};
pub use models::ModelStore;
pub use policies::{PolicyStore, StagePolicy};
pub use postgres::{Pg, PgStore};
pub use request_types::{Approver, Decision, PromotionRequest, PromotionStore};
pub use retention::{Preview, RetentionRun, RetentionStore, RetentionView};
pub use signatures::{SignatureStore, SignatureView};
pub use sqlite::{Lite, SqliteStore};
pub use stages::StageStore;
pub use tokens::TokenStore;
pub use trust::{KeyPut, TrustStore, TrustedKey};
pub use types::*;
pub use usage::{ModelUsage, Usage, UsageReport, UsageStore};
pub use verify::{ArtifactRecord, Finding, VerifyStore};
pub use versions::VersionStore;
pub use webhook_types::{
    Delivery, DeliveryQuery, DeliveryStats, NewWebhook, Webhook, WebhookOwner, WebhookPatch,
};
pub use webhooks::WebhookStore;

pub(crate) use events::NewEvent;

use crate::error::Result;
use async_trait::async_trait;
use std::ops::DerefMut;
use std::sync::Arc;

/// Everything the API needs from persistence, by resource.
#[async_trait]
pub trait Store:
    ModelStore
    + VersionStore
    + StageStore
    + MetricStore
    + ArtifactStore
    + TokenStore
    + EventStore
    + VerifyStore
    + WebhookStore
    + DeliveryStore
    + PolicyStore
    + GuardStore
    + EraseStore
    + RetentionStore
    + UsageStore
    + TrustStore
    + SignatureStore
    + PromotionStore
    + LoggedModelStore
    + Send
    + Sync
    + 'static
{
    /// Runs pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;
    /// Connections open and idle, for `/metrics`.
    fn pool_stats(&self) -> PoolStats;
    /// The primary's commit position now, when read replicas are configured: a read that
    /// must see every write answered so far waits for it (`Modelreg-Consistency`).
    async fn write_position(&self) -> Option<u64>;
    /// The read replicas as last checked (none unless configured).
    fn replicas(&self) -> ReplicaReport;
}

/// Read replicas, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicaReport {
    pub replicas: Vec<postgres::ReplicaStatus>,
    /// Reads a replica could have served that went to the primary (none was usable).
    pub primary_reads: u64,
}

/// A database the store runs on: its connections, its transactions and its fast paths.
/// Cheap to clone (pools are shared handles).
#[async_trait]
pub(crate) trait Backend: Clone + Send + Sync + 'static {
    type Conn: sql::Conn;
    /// A pooled connection for reads (and single-statement writes).
    type Read: DerefMut<Target = Self::Conn> + Send;
    /// A write transaction.
    type Tx: DerefMut<Target = Self::Conn> + Send;

    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    fn pool_stats(&self) -> PoolStats;

    /// A connection for reads: a replica's when the running request may read from one and
    /// one is usable (see [`reads`]), else the primary's.
    async fn read(&self) -> Result<Self::Read>;
    async fn begin(&self) -> Result<Self::Tx>;
    /// See [`Store::write_position`].
    async fn write_position(&self) -> Option<u64> {
        None
    }
    fn replicas(&self) -> ReplicaReport {
        ReplicaReport::default()
    }
    async fn commit(&self, tx: Self::Tx) -> Result<()>;
    /// Wakes this process's webhook dispatcher when deliveries are queued, by any process.
    async fn outbox_signal(&self) -> Result<Box<dyn OutboxSignal>>;
    /// Rolls back after `error` (which the backend may learn from: a full disk).
    async fn rollback(&self, tx: Self::Tx, error: Option<&crate::error::Error>);

    /// Commits when the flow succeeded, rolls back when it failed.
    async fn end<T: Send>(&self, tx: Self::Tx, result: Result<T>) -> Result<T> {
        match result {
            Ok(value) => self.commit(tx).await.map(|()| value),
            Err(e) => {
                self.rollback(tx, Some(&e)).await;
                Err(e)
            }
        }
    }

    /// Registers a version without an idempotency key. Portable: one transaction.
    async fn register_plain(
        &self,
        model: &crate::domain::ModelName,
        new: NewVersion,
        actor: &Actor,
    ) -> Result<Registered> {
        register::in_transaction(self, model, new, None, actor).await
    }

    /// A version with its artifacts and metric summaries. Portable: three reads.
    async fn version_detail(
        &self,
        model: &crate::domain::ModelName,
        version: i64,
    ) -> Result<VersionDetail> {
        let mut conn = self.read().await?;
        versions::detail(&mut *conn, model, version).await
    }
}

/// The store: every flow, on a backend.
#[derive(Clone)]
pub struct SqlStore<B> {
    db: B,
}

impl<B> SqlStore<B> {
    pub fn new(db: B) -> Self {
        Self { db }
    }

    pub fn backend(&self) -> &B {
        &self.db
    }
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn migrate(&self) -> Result<()> {
        self.db.migrate().await?;
        // Versions made ready before digests existed get theirs now, in batches.
        loop {
            let batch = {
                let mut conn = self.db.read().await?;
                digests::missing(&mut *conn, 500).await?
            };
            if batch.is_empty() {
                return Ok(());
            }
            transaction!(self.db, |c| async {
                for (id, model, number) in &batch {
                    digests::fix(&mut *c, *id, model, *number).await?;
                }
                Ok(())
            })?;
        }
    }

    async fn ping(&self) -> Result<()> {
        self.db.ping().await
    }

    fn pool_stats(&self) -> PoolStats {
        self.db.pool_stats()
    }

    async fn write_position(&self) -> Option<u64> {
        self.db.write_position().await
    }

    fn replicas(&self) -> ReplicaReport {
        self.db.replicas()
    }
}

/// Connects to the database named by the URL: `postgres://…` or `sqlite://…`.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, anyhow::Error> {
    connect_with_replicas(url, max_connections, &[], std::time::Duration::from_secs(1)).await
}

/// [`connect`], with Postgres read replicas.
pub async fn connect_with_replicas(
    url: &str,
    max_connections: u32,
    read_urls: &[String],
    max_lag: std::time::Duration,
) -> Result<Arc<dyn Store>, anyhow::Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PgStore::connect_with_replicas(url, max_connections, read_urls, max_lag).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        anyhow::bail!("unsupported database URL scheme; use postgres://… or sqlite://…")
    }
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says that more exist.
pub(crate) fn page<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(cursor) } else { None };
    Page { items, next_cursor }
}
