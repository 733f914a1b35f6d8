//! Versions: gapless numbering with idempotent registration, reads, patches and status
//! transitions.

use super::rows::{IdempotencyRow, ListedVersionRow, VersionRow};
use super::sql::{Conn, Stmt};
use super::{
    Actor, Artifact, Backend, Idempotency, NewEvent, NewVersion, Page, Patch, Registered, SqlStore,
    Version, VersionDetail, VersionQuery, events, metrics, models, stages, version_list,
};
use crate::domain::time::{self, Timestamp};
use crate::domain::version::Outcome;
use crate::domain::{ModelName, Reason, Transition, VersionStatus, change};
use crate::error::{Error, Kind, Result};
use async_trait::async_trait;
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
}

/// How long idempotency keys are honoured, at least.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

const BY_NUMBER: &str = concat!(version_select!(), "where m.name = $1 and v.version = $2");
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

/// What a registration inside a transaction came to.
enum Registration {
    Created(Box<Registered>),
    /// The idempotency key was seen with this body: the version it registered.
    Replay(i64),
}

/// The answer to a request whose `Idempotency-Key` was seen before.
fn replay(model: &ModelName, seen: IdempotencyRow, idem: &Idempotency) -> Result<Registration> {
    if seen.request_hash == idem.request_hash {
        return Ok(Registration::Replay(seen.version));
    }
    Err(Error::new(
        Kind::Unprocessable,
        "idempotency_key_reused",
        format!(
            "Idempotency-Key {:?} was used for another request body on model '{model}' (version {})",
            idem.key, seen.version
        ),
    )
    .with_field("Idempotency-Key"))
}

async fn register<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    new: NewVersion,
    idempotency: Option<&Idempotency>,
    actor: &Actor,
) -> Result<Registration> {
    let now = time::now();
    // Taking the next number locks the model row (on SQLite, the database) until the
    // transaction ends: registrations of one model are serialized across every server
    // process, a key looked up after it cannot race with another registration, and a
    // rollback returns the number.
    let (model_id, number): (Uuid, i64) = conn
        .fetch_optional(
            Stmt::new(
                "update models set last_version = last_version + 1 where name = $1 \
                 returning id, last_version",
            )
            .bind(model),
        )
        .await?
        .ok_or_else(|| Error::model_not_found(model.as_str()))?;
    if let Some(idem) = idempotency {
        let cutoff: Timestamp = now - chrono::Duration::hours(IDEMPOTENCY_TTL_HOURS);
        let seen = conn
            .fetch_optional::<IdempotencyRow>(
                Stmt::new(
                    "select k.request_hash, v.version from idempotency_keys k \
                     join versions v on v.id = k.version_id \
                     where k.model_id = $1 and k.key = $2 and k.created_at > $3",
                )
                .bind(model_id)
                .bind(&idem.key)
                .bind(cutoff),
            )
            .await?;
        if let Some(seen) = seen {
            return replay(model, seen, idem);
        }
    }
    let id = Uuid::now_v7();
    let status = if new.finalize {
        VersionStatus::Ready
    } else {
        VersionStatus::Pending
    };
    let insert = Stmt::new(
        "insert into versions (id, model_id, version, status, description, config, source, tags, \
         created_at, updated_at, created_by) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
    )
    .bind(id)
    .bind(model_id)
    .bind(number)
    .bind(status.as_str())
    .bind(&new.description)
    .json(&new.config)
    .json(&new.source)
    .json(&new.tags)
    .bind(now)
    .bind(&actor.name);
    conn.execute(insert).await?;
    if let Some(idem) = idempotency {
        let remember = Stmt::new(
            "insert into idempotency_keys (model_id, key, request_hash, version_id, created_at) \
             values ($1, $2, $3, $4, $5) on conflict (model_id, key) do update \
             set request_hash = excluded.request_hash, version_id = excluded.version_id, \
             created_at = excluded.created_at",
        )
        .bind(model_id)
        .bind(&idem.key)
        .bind(&idem.request_hash)
        .bind(id)
        .bind(now);
        conn.execute(remember).await?;
    }
    let created = NewEvent::model("version.created", model_id, model.as_str(), now)
        .version(number)
        .details(serde_json::json!({"status": status.as_str()}));
    events::record(conn, created, actor).await?;
    if new.finalize {
        let finalized =
            NewEvent::model("version.finalized", model_id, model.as_str(), now).version(number);
        events::record(conn, finalized, actor).await?;
    }
    Registered::new(id, model, number, status, new, now, actor)
        .map(|r| Registration::Created(Box::new(r)))
}

/// Registers in one write transaction; an idempotent replay rolls back (returning the number
/// it took) and answers with the version the key registered.
pub(crate) async fn register_in_transaction<B: Backend>(
    db: &B,
    model: &ModelName,
    new: NewVersion,
    idempotency: Option<Idempotency>,
    actor: &Actor,
) -> Result<Registered> {
    let mut tx = db.begin().await?;
    let outcome = register(&mut *tx, model, new, idempotency.as_ref(), actor).await;
    match outcome {
        Ok(Registration::Created(registered)) => {
            db.commit(tx).await?;
            Ok(*registered)
        }
        Ok(Registration::Replay(version)) => {
            db.rollback(tx, None).await;
            let mut conn = db.read().await?;
            Ok(Registered {
                version: row(&mut *conn, model, version, false)
                    .await?
                    .into_version()?,
                created: false,
            })
        }
        Err(e) => {
            db.rollback(tx, Some(&e)).await;
            Err(e)
        }
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
    Ok(VersionDetail {
        version: row.into_version()?,
        artifacts,
        metrics,
    })
}

async fn list<C: Conn>(conn: &mut C, model: &ModelName, q: &VersionQuery) -> Result<Page<Version>> {
    let m = models::row(conn, model, false).await?;
    let stmt = version_list::build(C::DIALECT, m.id, q);
    let rows = conn.fetch::<ListedVersionRow>(stmt);
    version_list::collect_page(rows, q).await
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

async fn transition<C: Conn>(
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
        let details =
            serde_json::json!({"from": status.as_str(), "to": target.as_str(), "reason": reason});
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
        match idempotency {
            None => self.db.register_plain(model, new, actor).await,
            Some(_) => register_in_transaction(&self.db, model, new, idempotency, actor).await,
        }
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

    async fn version_status(&self, model: &ModelName, version: i64) -> Result<VersionStatus> {
        let mut conn = self.db.read().await?;
        let row = row(&mut *conn, model, version, false).await?;
        VersionStatus::from_stored(&row.status)
    }
}
