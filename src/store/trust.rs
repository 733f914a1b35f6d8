//! Trusted public keys as stored: the SubjectPublicKeyInfo DER, its algorithm and
//! fingerprint, and the model globs a key is limited to.

use super::sql::{Arg, Conn, Stmt};
use super::{Actor, Backend, NewEvent, SqlStore, events};
use crate::domain::access::Glob;
use crate::domain::time::{self, Timestamp};
use crate::domain::trust::{Algorithm, PublicKey};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::types::Json;

/// A trusted key as shown.
#[derive(Debug, Clone, Serialize)]
pub struct TrustedKey {
    pub name: String,
    pub algorithm: Algorithm,
    pub bits: u32,
    pub fingerprint: String,
    pub public_key: String,
    /// Model-name globs whose versions it may sign; `null`: every model.
    pub models: Option<Vec<Glob>>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    pub created_by: String,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
    #[serde(skip)]
    pub key: PublicKey,
}

impl TrustedKey {
    /// Whether the key may sign versions of `model`.
    pub fn covers(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| g.matches(model)))
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPut {
    Created,
    Replaced,
    Unchanged,
}

#[async_trait]
pub trait TrustStore {
    async fn put_trusted_key(
        &self,
        name: &str,
        key: &PublicKey,
        models: Option<&[Glob]>,
        actor: &Actor,
    ) -> Result<(TrustedKey, KeyPut)>;
    /// 404 `key_not_found`.
    async fn get_trusted_key(&self, name: &str) -> Result<TrustedKey>;
    async fn list_trusted_keys(&self) -> Result<Vec<TrustedKey>>;
    /// 404 `key_not_found`.
    async fn delete_trusted_key(&self, name: &str, actor: &Actor) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    name: String,
    algorithm: String,
    bits: i64,
    spki: Vec<u8>,
    fingerprint: String,
    models: Option<Json<Vec<String>>>,
    created_at: Timestamp,
    created_by: String,
    updated_at: Timestamp,
    updated_by: String,
}

impl KeyRow {
    fn into_key(self) -> Result<TrustedKey> {
        let key = PublicKey::from_spki(&self.spki)
            .ok_or_else(|| Error::internal(format!("stored key {:?} does not parse", self.name)))?;
        Algorithm::from_stored(&self.algorithm)?;
        Ok(TrustedKey {
            public_key: key.to_pem(),
            algorithm: key.algorithm,
            bits: u32::try_from(self.bits).unwrap_or(key.bits),
            fingerprint: self.fingerprint,
            models: self
                .models
                .map(|m| m.0.into_iter().map(Glob::from_stored).collect()),
            name: self.name,
            created_at: self.created_at,
            created_by: self.created_by,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
            key,
        })
    }
}

const SELECT: &str = "select name, algorithm, bits, spki, fingerprint, models, created_at, \
     created_by, updated_at, updated_by from trusted_keys ";

fn not_found(name: &str) -> Error {
    Error::not_found("key_not_found", format!("no trusted key named {name:?}"))
}

async fn find<C: Conn>(conn: &mut C, name: &str) -> Result<Option<TrustedKey>> {
    let row: Option<KeyRow> = conn
        .fetch_optional(Stmt::new(format!("{SELECT}where name = $1")).bind(name))
        .await?;
    row.map(KeyRow::into_key).transpose()
}

async fn put<C: Conn>(
    conn: &mut C,
    name: &str,
    key: &PublicKey,
    models: Option<&[Glob]>,
    actor: &Actor,
) -> Result<(TrustedKey, KeyPut)> {
    let lock = if C::ROW_LOCKS { " for update" } else { "" };
    let before: Option<KeyRow> = conn
        .fetch_optional(Stmt::new(format!("{SELECT}where name = $1{lock}")).bind(name))
        .await?;
    let globs: Option<Vec<&str>> = models.map(|m| m.iter().map(Glob::as_str).collect());
    if let Some(b) = &before {
        let same_models = b
            .models
            .as_ref()
            .map(|m| m.0.iter().map(String::as_str).collect::<Vec<_>>())
            == globs;
        if b.spki == key.spki && same_models {
            let shown = find(conn, name).await?.ok_or_else(|| not_found(name))?;
            return Ok((shown, KeyPut::Unchanged));
        }
    }
    let now = time::now();
    let models_arg = match &globs {
        Some(g) => Arg::Json(serde_json::value::to_raw_value(g).ok()),
        None => Arg::Json(None),
    };
    let stmt = Stmt::new(
        "insert into trusted_keys (name, algorithm, bits, spki, fingerprint, models, created_at, \
             created_by, updated_at, updated_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $7, $8) \
         on conflict (name) do update set algorithm = excluded.algorithm, bits = excluded.bits, \
             spki = excluded.spki, fingerprint = excluded.fingerprint, models = excluded.models, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(name)
    .bind(key.algorithm.as_str())
    .bind(i64::from(key.bits))
    .bind(key.spki.clone())
    .bind(key.fingerprint())
    .bind(models_arg)
    .bind(now)
    .bind(&actor.name);
    conn.execute(stmt).await?;
    let outcome = if before.is_some() {
        KeyPut::Replaced
    } else {
        KeyPut::Created
    };
    let action = match outcome {
        KeyPut::Created => "trust.key_added",
        _ => "trust.key_changed",
    };
    let details = serde_json::json!({"name": name, "algorithm": key.algorithm.as_str(),
        "bits": key.bits, "fingerprint": key.fingerprint(), "models": globs,
        "previous_fingerprint": before.as_ref().map(|b| &b.fingerprint)});
    events::record(conn, NewEvent::global(action, now, details), actor).await?;
    let shown = find(conn, name).await?.ok_or_else(|| not_found(name))?;
    Ok((shown, outcome))
}

async fn delete<C: Conn>(conn: &mut C, name: &str, actor: &Actor) -> Result<()> {
    let gone: Option<(String,)> = conn
        .fetch_optional(
            Stmt::new("delete from trusted_keys where name = $1 returning fingerprint").bind(name),
        )
        .await?;
    let Some((fingerprint,)) = gone else {
        return Err(not_found(name));
    };
    let details = serde_json::json!({"name": name, "fingerprint": fingerprint});
    events::record(
        conn,
        NewEvent::global("trust.key_removed", time::now(), details),
        actor,
    )
    .await?;
    Ok(())
}

/// A trusted key, its row share-locked (Postgres) until the transaction ends: a promote
/// judging a signature by it keeps it from being removed or replaced meanwhile.
pub(super) async fn locked<C: Conn>(conn: &mut C, name: &str) -> Result<Option<TrustedKey>> {
    let lock = if C::ROW_LOCKS { " for share" } else { "" };
    let row: Option<KeyRow> = conn
        .fetch_optional(Stmt::new(format!("{SELECT}where name = $1{lock}")).bind(name))
        .await?;
    row.map(KeyRow::into_key).transpose()
}

/// Every trusted key.
pub(super) async fn all<C: Conn>(conn: &mut C) -> Result<Vec<TrustedKey>> {
    let rows: Vec<KeyRow> = conn
        .fetch_all(Stmt::new(format!("{SELECT}order by name")))
        .await?;
    rows.into_iter().map(KeyRow::into_key).collect()
}

#[async_trait]
impl<B: Backend> TrustStore for SqlStore<B> {
    async fn put_trusted_key(
        &self,
        name: &str,
        key: &PublicKey,
        models: Option<&[Glob]>,
        actor: &Actor,
    ) -> Result<(TrustedKey, KeyPut)> {
        transaction!(self.db, |c| put(c, name, key, models, actor))
    }

    async fn get_trusted_key(&self, name: &str) -> Result<TrustedKey> {
        let mut conn = self.db.read().await?;
        find(&mut *conn, name).await?.ok_or_else(|| not_found(name))
    }

    async fn list_trusted_keys(&self) -> Result<Vec<TrustedKey>> {
        let mut conn = self.db.read().await?;
        all(&mut *conn).await
    }

    async fn delete_trusted_key(&self, name: &str, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| delete(c, name, actor))
    }
}
