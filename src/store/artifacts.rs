//! Artifact rows: write-once per path, only while the version is pending. The bytes live in
//! the object store; a row is written after its upload completes and removed before its
//! object is deleted, so a row never points at nothing.

use super::sql::{Conn, Stmt};
use super::{Actor, Artifact, Backend, NewEvent, SqlStore, events, versions};
use crate::domain::artifact::{artifact_exists, artifact_not_found, check_mutable};
use crate::domain::{ModelName, VersionStatus, time};
use crate::error::Result;
use async_trait::async_trait;
use tracing::instrument;
use uuid::Uuid;

#[async_trait]
pub trait ArtifactStore {
    /// Refuses an upload before its body is read when it could not be recorded anyway (the
    /// version is not pending, or the path is taken).
    async fn check_upload(&self, model: &ModelName, version: i64, path: &str) -> Result<()>;
    /// Records an uploaded artifact: only while the version is pending, once per path.
    async fn add_artifact(
        &self,
        model: &ModelName,
        version: i64,
        artifact: Artifact,
        actor: &Actor,
    ) -> Result<Artifact>;
    async fn list_artifacts(&self, model: &ModelName, version: i64) -> Result<Vec<Artifact>>;
    async fn get_artifact(&self, model: &ModelName, version: i64, path: &str) -> Result<Artifact>;
    /// Removes an artifact's row (only while pending); the caller deletes the object after.
    async fn delete_artifact(
        &self,
        model: &ModelName,
        version: i64,
        path: &str,
        actor: &Actor,
    ) -> Result<Artifact>;
    /// Every object key an artifact row refers to (for `gc`).
    async fn artifact_keys(&self) -> Result<Vec<String>>;
}

const ONE: &str = "select path, size, sha256, content_type, created_at, object_key \
    from artifacts where version_id = $1 and path = $2";

/// The version row locked (against a concurrent finalize) where the dialect has row locks,
/// and checked to be pending: its id and its model's id.
async fn pending<C: Conn>(conn: &mut C, model: &ModelName, version: i64) -> Result<(Uuid, Uuid)> {
    let row = versions::row(conn, model, version, true).await?;
    check_mutable(version, VersionStatus::from_stored(&row.status)?)?;
    let (model_id,): (Uuid,) = conn
        .fetch_one(Stmt::new("select model_id from versions where id = $1").bind(row.id))
        .await?;
    Ok((row.id, model_id))
}

async fn find<C: Conn>(conn: &mut C, version_id: Uuid, path: &str) -> Result<Option<Artifact>> {
    conn.fetch_optional(Stmt::new(ONE).bind(version_id).bind(path))
        .await
}

async fn check<C: Conn>(conn: &mut C, model: &ModelName, version: i64, path: &str) -> Result<()> {
    let row = versions::row(conn, model, version, false).await?;
    check_mutable(version, VersionStatus::from_stored(&row.status)?)?;
    match find(conn, row.id, path).await? {
        Some(_) => Err(artifact_exists(path)),
        None => Ok(()),
    }
}

async fn add<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    a: &Artifact,
    actor: &Actor,
) -> Result<()> {
    let (version_id, model_id) = pending(conn, model, version).await?;
    insert(conn, (version_id, model_id), model, version, a, actor).await
}

/// Records an artifact of a version (`ids`: the version's and its model's) whose object is
/// stored, with its event; a path taken is `artifact_exists`.
pub(crate) async fn insert<C: Conn>(
    conn: &mut C,
    (version_id, model_id): (Uuid, Uuid),
    model: &ModelName,
    version: i64,
    a: &Artifact,
    actor: &Actor,
) -> Result<()> {
    let insert = Stmt::new(
        "insert into artifacts (id, version_id, path, object_key, size, sha256, content_type, \
         created_at, created_by) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         on conflict (version_id, path) do nothing",
    )
    .bind(Uuid::now_v7())
    .bind(version_id)
    .bind(&a.path)
    .bind(&a.object_key)
    .bind(a.size)
    .bind(&a.sha256)
    .bind(&a.content_type)
    .bind(a.created_at)
    .bind(&actor.name);
    if conn.execute(insert).await? != 1 {
        return Err(artifact_exists(&a.path));
    }
    let details = serde_json::json!({"path": a.path, "size": a.size, "sha256": a.sha256});
    let event = NewEvent::model("artifact.uploaded", model_id, model.as_str(), a.created_at)
        .version(version)
        .details(details);
    events::record(conn, event, actor).await?;
    Ok(())
}

async fn remove<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    path: &str,
    actor: &Actor,
) -> Result<Artifact> {
    let (version_id, model_id) = pending(conn, model, version).await?;
    let delete = Stmt::new(
        "delete from artifacts where version_id = $1 and path = $2 \
         returning path, size, sha256, content_type, created_at, object_key",
    )
    .bind(version_id)
    .bind(path);
    let removed: Artifact = conn
        .fetch_optional(delete)
        .await?
        .ok_or_else(|| artifact_not_found(path))?;
    let details = serde_json::json!({"path": removed.path, "sha256": removed.sha256});
    let event = NewEvent::model("artifact.deleted", model_id, model.as_str(), time::now())
        .version(version)
        .details(details);
    events::record(conn, event, actor).await?;
    Ok(removed)
}

#[async_trait]
impl<B: Backend> ArtifactStore for SqlStore<B> {
    async fn check_upload(&self, model: &ModelName, version: i64, path: &str) -> Result<()> {
        let mut conn = self.db.read().await?;
        check(&mut *conn, model, version, path).await
    }

    #[instrument(skip_all, fields(model = %model, version, path = %artifact.path))]
    async fn add_artifact(
        &self,
        model: &ModelName,
        version: i64,
        artifact: Artifact,
        actor: &Actor,
    ) -> Result<Artifact> {
        transaction!(self.db, |c| add(c, model, version, &artifact, actor))?;
        Ok(artifact)
    }

    async fn list_artifacts(&self, model: &ModelName, version: i64) -> Result<Vec<Artifact>> {
        let mut conn = self.db.read().await?;
        let version_id = versions::id(&mut *conn, model, version).await?;
        conn.fetch_all(Stmt::new(versions::ARTIFACTS_OF).bind(version_id))
            .await
    }

    async fn get_artifact(&self, model: &ModelName, version: i64, path: &str) -> Result<Artifact> {
        let mut conn = self.db.read().await?;
        let version_id = versions::id(&mut *conn, model, version).await?;
        find(&mut *conn, version_id, path)
            .await?
            .ok_or_else(|| artifact_not_found(path))
    }

    #[instrument(skip_all, fields(model = %model, version, path))]
    async fn delete_artifact(
        &self,
        model: &ModelName,
        version: i64,
        path: &str,
        actor: &Actor,
    ) -> Result<Artifact> {
        transaction!(self.db, |c| remove(c, model, version, path, actor))
    }

    async fn artifact_keys(&self) -> Result<Vec<String>> {
        let mut conn = self.db.read().await?;
        let rows: Vec<(String,)> = conn
            .fetch_all(Stmt::new("select object_key from artifacts"))
            .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }
}
