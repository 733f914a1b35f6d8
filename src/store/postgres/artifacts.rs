//! Artifact rows on Postgres.

use super::PgStore;
use crate::domain::{ModelName, VersionStatus};
use crate::error::Result;
use crate::store::artifacts::{artifact_exists, artifact_not_found, check_mutable};
use crate::store::{Actor, Artifact, NewEvent, on_unique};
use sqlx::{PgConnection, query, query_as};
use uuid::Uuid;

macro_rules! artifact_select {
    () => {
        "select path, size, sha256, content_type, created_at, object_key from artifacts "
    };
}

impl PgStore {
    /// Locks the version row (against concurrent finalize) and returns its id, model id and status.
    pub(super) async fn lock_version(
        conn: &mut PgConnection,
        model: &ModelName,
        version: i64,
    ) -> Result<(Uuid, Uuid, VersionStatus)> {
        let row = Self::version_row(conn, model, version, true).await?;
        let model_id: Uuid = sqlx::query_scalar("select model_id from versions where id = $1")
            .bind(row.id)
            .fetch_one(&mut *conn)
            .await?;
        Ok((row.id, model_id, VersionStatus::from_stored(&row.status)?))
    }

    pub(super) async fn insert_artifact(
        conn: &mut PgConnection,
        model: &ModelName,
        version: i64,
        a: &Artifact,
        actor: &Actor,
    ) -> Result<()> {
        let (version_id, model_id, status) = Self::lock_version(conn, model, version).await?;
        check_mutable(version, status)?;
        query(
            "insert into artifacts (id, version_id, path, object_key, size, sha256, content_type, created_at, created_by) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7())
        .bind(version_id)
        .bind(&a.path)
        .bind(&a.object_key)
        .bind(a.size)
        .bind(&a.sha256)
        .bind(&a.content_type)
        .bind(a.created_at)
        .bind(&actor.name)
        .execute(&mut *conn)
        .await
        .map_err(|e| on_unique(e, || artifact_exists(&a.path)))?;
        let details = serde_json::json!({"path": a.path, "size": a.size, "sha256": a.sha256});
        let event = NewEvent::model("artifact.uploaded", model_id, model.as_str(), a.created_at)
            .version(version)
            .details(details);
        Self::record(conn, event, actor).await?;
        Ok(())
    }

    pub(super) async fn artifacts_of(
        conn: &mut PgConnection,
        model: &ModelName,
        version: i64,
    ) -> Result<Vec<Artifact>> {
        let version_id = Self::version_id(conn, model, version).await?;
        Ok(query_as(concat!(
            artifact_select!(),
            "where version_id = $1 order by path"
        ))
        .bind(version_id)
        .fetch_all(conn)
        .await?)
    }

    pub(super) async fn artifact(
        conn: &mut PgConnection,
        model: &ModelName,
        version: i64,
        path: &str,
    ) -> Result<Artifact> {
        let version_id = Self::version_id(conn, model, version).await?;
        query_as(concat!(
            artifact_select!(),
            "where version_id = $1 and path = $2"
        ))
        .bind(version_id)
        .bind(path)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| artifact_not_found(path))
    }

    pub(super) async fn remove_artifact(
        conn: &mut PgConnection,
        model: &ModelName,
        version: i64,
        path: &str,
        actor: &Actor,
    ) -> Result<Artifact> {
        let (version_id, model_id, status) = Self::lock_version(conn, model, version).await?;
        check_mutable(version, status)?;
        let removed: Artifact = query_as(
            "delete from artifacts where version_id = $1 and path = $2 \
             returning path, size, sha256, content_type, created_at, object_key",
        )
        .bind(version_id)
        .bind(path)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| artifact_not_found(path))?;
        let details = serde_json::json!({"path": removed.path, "sha256": removed.sha256});
        let event = NewEvent::model(
            "artifact.deleted",
            model_id,
            model.as_str(),
            crate::domain::time::now(),
        )
        .version(version)
        .details(details);
        Self::record(conn, event, actor).await?;
        Ok(removed)
    }
}
