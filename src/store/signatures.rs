//! Signatures over a version's files, as posted: checked against the trusted keys and the
//! version's artifact rows in the transaction that records them (no artifact byte is read).

use super::sql::{Conn, Stmt};
use super::trust::TrustedKey;
use super::{Actor, Backend, NewEvent, SqlStore, events, versions};
use crate::domain::signature::{Envelope, Statement, hint_names};
use crate::domain::time::{self, Timestamp};
use crate::domain::{ModelName, VersionStatus};
use crate::error::{Error, Kind, Result};
use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A signature as shown: the bundle as posted, and what the registry made of it.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureView {
    pub id: Uuid,
    pub model: String,
    pub version: i64,
    /// The trusted key that verified it; `null` for a keyless bundle (kept, not verified).
    pub key: Option<String>,
    pub key_fingerprint: Option<String>,
    pub verified: bool,
    /// The artifact path prefix the signed directory is (`""`: every artifact).
    pub path: String,
    /// Files the signature covers.
    pub files: i64,
    pub bundle: serde_json::Value,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    pub created_by: String,
}

#[async_trait]
pub trait SignatureStore {
    /// Checks and records a signature; `false` when the same bundle was recorded for the
    /// same path already (the stored one is returned).
    async fn add_signature(
        &self,
        model: &ModelName,
        version: i64,
        bundle: &serde_json::Value,
        path: &str,
        actor: &Actor,
    ) -> Result<(SignatureView, bool)>;
    async fn list_signatures(&self, model: &ModelName, version: i64) -> Result<Vec<SignatureView>>;
}

#[derive(sqlx::FromRow)]
struct SignatureRow {
    id: Uuid,
    model: String,
    version: i64,
    key_name: Option<String>,
    key_fingerprint: Option<String>,
    verified: bool,
    path: String,
    files: i64,
    bundle: Json<serde_json::Value>,
    created_at: Timestamp,
    created_by: String,
}

impl From<SignatureRow> for SignatureView {
    fn from(r: SignatureRow) -> Self {
        Self {
            id: r.id,
            model: r.model,
            version: r.version,
            key: r.key_name,
            key_fingerprint: r.key_fingerprint,
            verified: r.verified,
            path: r.path,
            files: r.files,
            bundle: r.bundle.0,
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

const SELECT: &str = "select s.id, m.name as model, v.version, s.key_name, s.key_fingerprint, \
     s.verified, s.path, s.files, s.bundle, s.created_at, s.created_by \
     from version_signatures s join versions v on v.id = s.version_id \
     join models m on m.id = v.model_id ";

/// The trusted key (of those that may sign `model`) whose signature the envelope carries:
/// the one its hint names first. 422 `untrusted_key` when none verifies it, or
/// `signature_invalid` when the key the hint names does not.
fn signer<'k>(envelope: &Envelope, keys: &'k [TrustedKey], model: &str) -> Result<&'k TrustedKey> {
    let usable: Vec<&TrustedKey> = keys.iter().filter(|k| k.covers(model)).collect();
    let named = envelope
        .hint
        .as_deref()
        .and_then(|h| usable.iter().find(|k| hint_names(h, &k.key)).copied());
    if let Some(k) = named {
        return if envelope.signed_by(&k.key) {
            Ok(k)
        } else {
            Err(Error::new(
                Kind::Unprocessable,
                "signature_invalid",
                format!(
                    "the bundle names trusted key {:?}, and its signature does not verify with it: the payload or the signature was changed",
                    k.name
                ),
            )
            .with_field("bundle"))
        };
    }
    usable
        .into_iter()
        .find(|k| envelope.signed_by(&k.key))
        .ok_or_else(|| {
            Error::new(
                Kind::Unprocessable,
                "untrusted_key",
                format!(
                    "no trusted key for model '{model}' verifies this signature: add the signer's public key with PUT /api/v1/trust/keys/{{name}}"
                ),
            )
            .with_field("bundle")
        })
}

async fn add<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    bundle: &serde_json::Value,
    path: &str,
    actor: &Actor,
) -> Result<(SignatureView, bool)> {
    let row = versions::row(conn, model, version, true).await?;
    match VersionStatus::from_stored(&row.status)? {
        VersionStatus::Ready | VersionStatus::Archived => {}
        VersionStatus::Erased => {
            return Err(Error::conflict(
                "version_erased",
                format!("version {version} is erased: there are no files to sign"),
            ));
        }
        other => {
            return Err(Error::conflict(
                "version_not_ready",
                format!(
                    "version {version} is {}: only a ready version's files are fixed, so only they can be signed",
                    other.as_str()
                ),
            ));
        }
    }
    let bundle_sha256 = hex::encode(Sha256::digest(
        crate::domain::digest::canonical(bundle).as_bytes(),
    ));
    let seen: Option<SignatureRow> = conn
        .fetch_optional(
            Stmt::new(format!(
                "{SELECT}where s.version_id = $1 and s.bundle_sha256 = $2 and s.path = $3"
            ))
            .bind(row.id)
            .bind(bundle_sha256.as_str())
            .bind(path),
        )
        .await?;
    if let Some(seen) = seen {
        return Ok((seen.into(), false));
    }
    let envelope = Envelope::parse(bundle)?;
    let statement = Statement::parse(&envelope)?;
    let key = if envelope.keyless {
        None
    } else {
        let keys = super::trust::all(conn).await?;
        Some(signer(&envelope, &keys, model.as_str())?.clone())
    };
    let artifacts: Vec<(String, String)> = conn
        .fetch_all(
            Stmt::new("select path, sha256 from artifacts where version_id = $1").bind(row.id),
        )
        .await?;
    let artifacts: BTreeMap<String, String> = artifacts.into_iter().collect();
    let files = statement.matches(path, &artifacts)?;
    let id = Uuid::now_v7();
    let now = time::now();
    let stmt = Stmt::new(
        "insert into version_signatures (id, version_id, bundle_sha256, bundle, path, files, \
             verified, key_name, key_fingerprint, created_at, created_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(row.id)
    .bind(bundle_sha256.as_str())
    .json(bundle)
    .bind(path)
    .bind(i64::try_from(files).map_err(Error::internal)?)
    .bind(key.is_some())
    .bind(key.as_ref().map(|k| k.name.clone()))
    .bind(key.as_ref().map(|k| k.fingerprint.clone()))
    .bind(now)
    .bind(&actor.name);
    conn.execute(stmt).await?;
    if let Some(k) = &key {
        conn.execute(
            Stmt::new("update versions set signed_by = $1 where id = $2 and signed_by is null")
                .bind(k.name.as_str())
                .bind(row.id),
        )
        .await?;
    }
    let model_id: (Uuid,) = conn
        .fetch_one(Stmt::new("select model_id from versions where id = $1").bind(row.id))
        .await?;
    let event = NewEvent::model("version.signed", model_id.0, model.as_str(), now)
        .version(version)
        .details(
            serde_json::json!({"signature_id": id, "key": key.as_ref().map(|k| &k.name),
            "key_fingerprint": key.as_ref().map(|k| &k.fingerprint), "verified": key.is_some(),
            "path": path, "files": files}),
        );
    events::record(conn, event, actor).await?;
    let stored: SignatureRow = conn
        .fetch_one(Stmt::new(format!("{SELECT}where s.id = $1")).bind(id))
        .await?;
    Ok((stored.into(), true))
}

#[async_trait]
impl<B: Backend> SignatureStore for SqlStore<B> {
    async fn add_signature(
        &self,
        model: &ModelName,
        version: i64,
        bundle: &serde_json::Value,
        path: &str,
        actor: &Actor,
    ) -> Result<(SignatureView, bool)> {
        transaction!(self.db, |c| add(c, model, version, bundle, path, actor))
    }

    async fn list_signatures(&self, model: &ModelName, version: i64) -> Result<Vec<SignatureView>> {
        let mut conn = self.db.read().await?;
        let v = versions::row(&mut *conn, model, version, false).await?;
        let rows: Vec<SignatureRow> = conn
            .fetch_all(
                Stmt::new(format!(
                    "{SELECT}where s.version_id = $1 order by s.created_at, s.id"
                ))
                .bind(v.id),
            )
            .await?;
        Ok(rows.into_iter().map(SignatureView::from).collect())
    }
}
