//! The SQLite backend: the embedded default, so that the registry runs with nothing installed.
//!
//! Writes go through a one-connection pool and take SQLite's write lock up front
//! (`BEGIN IMMEDIATE`), so writers queue in order instead of failing with SQLITE_BUSY; the
//! busy timeout covers other processes sharing the file. Reads use a separate pool and,
//! thanks to WAL, never wait for writers.

mod conn;
mod metrics;

use super::commits::Commits;
use super::{Backend, OutboxSignal, PoolStats, SqlStore};
use crate::domain::time;
use crate::error::{Error, Kind, Result};
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, Sqlite, SqliteConnection, SqlitePool, query};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The SQLite database behind a [`SqliteStore`].
#[derive(Clone)]
pub struct Lite {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The last write failed because the disk (or the database's page limit) is full.
    storage_full: Arc<AtomicBool>,
    /// Told of every commit: the webhook dispatcher's wake-up (a write may have logged
    /// events to deliver; the dispatcher checks with a read before it claims). The one
    /// process that writes an SQLite database is the one whose dispatcher delivers.
    commits: Arc<Commits>,
}

/// The store on SQLite.
pub type SqliteStore = SqlStore<Lite>;

/// A write transaction on the writer connection: `BEGIN IMMEDIATE` takes SQLite's write lock
/// up front, so writers queue in order instead of failing with SQLITE_BUSY.
///
/// After some errors (a full disk, I/O errors) SQLite rolls a transaction back by itself and
/// the connection's idea of its transaction state can no longer be trusted; such a connection
/// is closed rather than returned to the pool (the next write opens a fresh one). So is one
/// whose transaction was abandoned midway (the request was cancelled): closing it rolls back.
pub(crate) struct WriteTx(Option<PoolConnection<Sqlite>>);

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

/// Fixed-width RFC 3339, so that text comparison is time comparison.
pub(crate) fn ts(t: time::Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl SqlStore<Lite> {
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
        Ok(Self::new(Lite {
            writer,
            reader,
            storage_full: Arc::new(AtomicBool::new(false)),
            commits: Arc::new(Commits::default()),
        }))
    }
}

impl Lite {
    /// Remembers whether the disk is full, from the outcome of a write.
    fn observe(&self, error: Option<&Error>) {
        match error {
            None => self.storage_full.store(false, Ordering::Relaxed),
            Some(e) if e.kind == Kind::StorageFull => {
                self.storage_full.store(true, Ordering::Relaxed)
            }
            Some(_) => {}
        }
    }
}

#[async_trait]
impl Backend for Lite {
    type Conn = SqliteConnection;
    type Read = PoolConnection<Sqlite>;
    type Tx = WriteTx;

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(Error::internal)
    }

    /// Reads answer; and once a write has failed for lack of space, writes must work again
    /// too: a probe that takes new pages and commits them (so that a full disk, where the
    /// commit's log append fails, and a full page limit, where the insert fails, both show).
    /// Without such a failure the writer is not touched, so a busy writer never makes the
    /// server look down.
    async fn ping(&self) -> Result<()> {
        query("select 1").execute(&self.reader).await?;
        if self.storage_full.load(Ordering::Relaxed) {
            let mut tx = self.begin().await?;
            let probe = async {
                query("insert into health_probe (payload) values (randomblob(65536))")
                    .execute(&mut *tx)
                    .await?;
                query("delete from health_probe").execute(&mut *tx).await?;
                Ok(())
            }
            .await;
            self.end(tx, probe).await?;
        }
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.writer.size() + self.reader.size(),
            idle: (self.writer.num_idle() + self.reader.num_idle()) as u32,
        }
    }

    async fn read(&self) -> Result<Self::Read> {
        Ok(self.reader.acquire().await?)
    }

    /// Every write goes through here: see [`WriteTx`] for what happens to a connection whose
    /// transaction broke, and `ping` for how readiness learns that the disk is full.
    async fn begin(&self) -> Result<Self::Tx> {
        WriteTx::begin(&self.writer)
            .await
            .inspect_err(|e| self.observe(Some(e)))
    }

    async fn commit(&self, tx: Self::Tx) -> Result<()> {
        let done = tx.commit().await;
        self.observe(done.as_ref().err());
        if done.is_ok() {
            self.commits.committed();
        }
        done
    }

    async fn outbox_signal(&self) -> Result<Box<dyn OutboxSignal>> {
        Ok(Box::new(self.commits.subscribe()))
    }

    async fn rollback(&self, tx: Self::Tx, error: Option<&Error>) {
        tx.rollback().await;
        if error.is_some() {
            self.observe(error);
        }
    }
}
