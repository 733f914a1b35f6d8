//! Registration: the next number of a model, gapless and taken under the model's lock, and
//! idempotency keys, so that a retried registration answers with the version it made.

use super::rows::IdempotencyRow;
use super::sql::{Conn, Stmt};
use super::{
    Actor, Backend, Idempotency, NewEvent, NewVersion, Registered, artifacts, events, inputs,
    versions,
};
use crate::domain::time::{self, Timestamp};
use crate::domain::{ModelName, VersionStatus};
use crate::error::{Error, Kind, Result};
use uuid::Uuid;

/// How long idempotency keys are honoured, at least.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

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
    if let Some(schema) = &new.schema {
        super::schemas::write(conn, id, schema).await?;
    }
    let inputs = inputs::at_registration(
        conn,
        (id, model, number),
        &new.inputs,
        new.copied_from.as_ref(),
        now,
    )
    .await?;
    let mut details = serde_json::json!({"status": status.as_str()});
    if inputs > 0 {
        details["inputs"] = inputs.into();
    }
    let created = NewEvent::model("version.created", model_id, model.as_str(), now)
        .version(number)
        .details(details);
    events::record(conn, created, actor).await?;
    for a in &new.artifacts {
        artifacts::insert(conn, (id, model_id), model, number, a, actor).await?;
    }
    let mut digest = None;
    if new.finalize {
        let d = super::digests::fix(conn, id, model.as_str(), number).await?;
        let finalized = NewEvent::model("version.finalized", model_id, model.as_str(), now)
            .version(number)
            .details(serde_json::json!({"digest": d}));
        events::record(conn, finalized, actor).await?;
        digest = Some(d);
    }
    let mut registered = Registered::new(id, model, number, status, new, now, actor)?;
    registered.version.digest = digest;
    Ok(Registration::Created(Box::new(registered)))
}

/// Registers in one write transaction; an idempotent replay rolls back (returning the number
/// it took) and answers with the version the key registered.
pub(crate) async fn in_transaction<B: Backend>(
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
                version: versions::row(&mut *conn, model, version, false)
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
