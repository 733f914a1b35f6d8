//! Read replicas: Postgres streaming standbys that serve the reads a request may take from
//! them (see `store::reads`).
//!
//! A background check samples the primary's WAL position and each replica's replay position
//! every [`CHECK_EVERY`]; a replica's lag is how long ago the primary was where the replica
//! is now (zero when it has replayed everything the primary had at the last sample). A read
//! goes to a replica that is up, still in recovery and within the allowed lag; one that must
//! see a position waits a little for it ([`CATCH_UP_WAIT`]) and otherwise goes to the
//! primary. Nothing here fails a request: a replica that cannot be used is skipped.

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, query_as};
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often positions are sampled.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a read that must see a position waits for a replica to replay it.
pub const CATCH_UP_WAIT: Duration = Duration::from_millis(50);
/// The longest a check of one replica may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Primary samples kept: lag is known up to this many checks back (beyond: "too far").
const SAMPLES: usize = 300;

/// SQL for a position as a number of bytes.
const PRIMARY_POSITION: &str = "select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
const REPLAY_POSITION: &str = "select pg_is_in_recovery(), \
     (coalesce(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) - '0/0'::pg_lsn)::bigint";

/// What is known of one replica.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// `host:port/database` of its URL (no credentials).
    pub name: String,
    /// `ok`, `lagging`, `down` (unreachable or failing) or `promoted` (no longer a standby).
    pub state: &'static str,
    /// Seconds behind the primary, when known.
    pub lag_seconds: Option<f64>,
    /// Reads it served since the server started.
    pub reads: u64,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Replay position at the last check (`None`: never reached).
    replay: Option<u64>,
    in_recovery: bool,
    lag: Option<Duration>,
    error: Option<String>,
}

struct Replica {
    name: String,
    pool: PgPool,
    seen: Mutex<Seen>,
    reads: AtomicU64,
}

/// The replicas of a primary, and the primary's recent positions.
pub struct Replicas {
    replicas: Vec<Replica>,
    max_lag: Duration,
    /// `(when, primary position)`, oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    next: AtomicUsize,
    /// Reads that could have gone to a replica and went to the primary.
    pub(crate) primary_reads: AtomicU64,
}

/// `host:port/database` of a URL, for logs and status.
fn display_name(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replicas {
    /// Pools for the replica URLs (connected lazily: a replica down at start is skipped, not
    /// fatal), each with up to `max_connections`.
    pub fn new(
        urls: &[String],
        max_connections: u32,
        max_lag: Duration,
    ) -> Result<Self, sqlx::Error> {
        let mut replicas = Vec::with_capacity(urls.len());
        for url in urls {
            let options = PgConnectOptions::from_str(url)?.application_name("modelreg-replica");
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .min_connections(0)
                .acquire_timeout(Duration::from_millis(500))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::Executor::execute(conn, "set jit = off").await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options.clone());
            replicas.push(Replica {
                name: display_name(&options),
                pool,
                seen: Mutex::new(Seen::default()),
                reads: AtomicU64::new(0),
            });
        }
        Ok(Self {
            replicas,
            max_lag,
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Samples the primary's position and every replica's, forever.
    pub async fn watch(self: Arc<Self>, primary: PgPool) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if primary.is_closed() {
                return;
            }
            self.check(&primary).await;
        }
    }

    /// One round of checks.
    pub async fn check(&self, primary: &PgPool) {
        let at = Instant::now();
        let sampled = tokio::time::timeout(
            CHECK_TIMEOUT,
            query_as::<_, (i64,)>(PRIMARY_POSITION).fetch_one(primary),
        )
        .await;
        if let Ok(Ok((p,))) = sampled {
            let mut samples = lock(&self.samples);
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back((at, u64::try_from(p).unwrap_or(0)));
        }
        let checks = self.replicas.iter().map(|r| async move {
            let got = tokio::time::timeout(
                CHECK_TIMEOUT,
                query_as::<_, (bool, i64)>(REPLAY_POSITION).fetch_one(&r.pool),
            )
            .await;
            let mut seen = Seen::default();
            match got {
                Ok(Ok((in_recovery, replay))) => {
                    seen.in_recovery = in_recovery;
                    seen.replay = Some(u64::try_from(replay).unwrap_or(0));
                }
                Ok(Err(e)) => seen.error = Some(crate::config::scrub(&e.to_string(), "")),
                Err(_) => seen.error = Some("no answer within 1 s".to_owned()),
            }
            seen.lag = seen.replay.and_then(|p| self.lag_at(p));
            let was_usable = self.usable(&lock(&r.seen));
            let now_usable = self.usable(&seen);
            if was_usable != now_usable {
                if now_usable {
                    tracing::info!(replica = %r.name, "replica in use");
                } else {
                    tracing::warn!(replica = %r.name, error = seen.error.as_deref(),
                        lag_ms = seen.lag.map(|l| l.as_millis() as u64),
                        in_recovery = seen.in_recovery, "replica not used");
                }
            }
            *lock(&r.seen) = seen;
        });
        futures::future::join_all(checks).await;
    }

    /// How long ago the primary was at `position` or before; zero when the position is at
    /// least the newest sample's; `None` when it is older than every sample.
    fn lag_at(&self, position: u64) -> Option<Duration> {
        let samples = lock(&self.samples);
        let (_, newest) = *samples.back()?;
        if position >= newest {
            return Some(Duration::ZERO);
        }
        // The replica lacks what the primary had when the first sample past its position
        // was taken: it is at least that far behind. Older than every sample: too far.
        if samples.front().is_some_and(|(_, p)| *p > position) {
            return None;
        }
        let lacking = samples.iter().find(|(_, p)| *p > position)?;
        Some(lacking.0.elapsed())
    }

    fn usable(&self, seen: &Seen) -> bool {
        seen.error.is_none()
            && seen.in_recovery
            && seen.replay.is_some()
            && seen.lag.is_some_and(|l| l <= self.max_lag)
    }

    /// A connection to a replica that may serve a read needing `at_least`: one within the
    /// allowed lag, which (for a position) has replayed it or does within [`CATCH_UP_WAIT`].
    /// `None`: read from the primary.
    pub async fn pick(&self, at_least: Option<u64>) -> Option<PoolConnection<Postgres>> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let r = &self.replicas[(start + i) % n];
            let replay = {
                let seen = lock(&r.seen);
                if !self.usable(&seen) {
                    continue;
                }
                seen.replay.unwrap_or(0)
            };
            let Ok(mut conn) = r.pool.acquire().await else {
                continue;
            };
            if let Some(needed) = at_least
                && replay < needed
                && !caught_up(&mut conn, needed).await
            {
                continue;
            }
            r.reads.fetch_add(1, Ordering::Relaxed);
            return Some(conn);
        }
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Every replica as last seen.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|r| {
                let seen = lock(&r.seen);
                let state = if seen.error.is_some() || seen.replay.is_none() {
                    "down"
                } else if !seen.in_recovery {
                    "promoted"
                } else if self.usable(&seen) {
                    "ok"
                } else {
                    "lagging"
                };
                ReplicaStatus {
                    name: r.name.clone(),
                    state,
                    lag_seconds: seen.lag.map(|l| l.as_secs_f64()),
                    reads: r.reads.load(Ordering::Relaxed),
                    error: seen.error.clone(),
                }
            })
            .collect()
    }
}

/// Whether the replica behind `conn` replays `needed` within [`CATCH_UP_WAIT`].
async fn caught_up(conn: &mut PoolConnection<Postgres>, needed: u64) -> bool {
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let got: Result<(bool, i64), _> = query_as(REPLAY_POSITION).fetch_one(&mut **conn).await;
        match got {
            Ok((true, p)) if u64::try_from(p).unwrap_or(0) >= needed => return true,
            Ok((true, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => return false,
        }
    }
}
