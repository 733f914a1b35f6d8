//! Tokens on SQLite.

use super::{SqliteStore, ts};
use crate::error::{Error, Result};
use crate::store::rows::TokenRow;
use crate::store::{Actor, NewEvent, TokenRecord};
use sqlx::{query, query_as};
use uuid::Uuid;

const TOKEN_SELECT: &str = "select id, name, secret_hash, scopes, models, expires_at, revoked_at, created_at, created_by from tokens ";

impl SqliteStore {
    pub(super) async fn insert_token(&self, t: &TokenRecord, actor: &Actor) -> Result<()> {
        self.write(async |tx| {
            let models: Option<Vec<&str>> = t
                .models
                .as_ref()
                .map(|m| m.iter().map(|g| g.as_str()).collect());
            query(
                "insert into tokens (id, name, secret_hash, scopes, models, expires_at, created_at, created_by) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(t.id)
            .bind(&t.name)
            .bind(&t.secret_hash)
            .bind(sqlx::types::Json(&t.scopes))
            .bind(models.as_ref().map(sqlx::types::Json))
            .bind(t.expires_at.map(ts))
            .bind(ts(t.created_at))
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?;
            let details = serde_json::json!({"id": t.id, "name": t.name, "scopes": t.scopes, "models": models, "expires_at": t.expires_at});
            Self::record(
                &mut *tx,
                NewEvent::global("token.created", t.created_at, details),
                actor,
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn all_tokens(&self) -> Result<Vec<TokenRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} order by created_at, id"));
        let rows: Vec<TokenRow> = query_as(sql).fetch_all(&self.reader).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(super) async fn token(&self, id: Uuid) -> Result<Option<TokenRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} where id = $1"));
        let row: Option<TokenRow> = query_as(sql).bind(id).fetch_optional(&self.reader).await?;
        Ok(row.map(Into::into))
    }

    pub(super) async fn revoke(&self, id: Uuid, actor: &Actor) -> Result<()> {
        self.write(async |tx| {
            let now = crate::domain::time::now();
            let found: Option<(String, bool)> = query_as(
                "update tokens set revoked_at = coalesce(revoked_at, $2) where id = $1 \
                 returning name, revoked_at = $2",
            )
            .bind(id)
            .bind(ts(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some((name, newly)) = found else {
                return Err(Error::not_found(
                    "token_not_found",
                    format!("no token {id}"),
                ));
            };
            if newly {
                let details = serde_json::json!({"id": id, "name": name});
                Self::record(
                    &mut *tx,
                    NewEvent::global("token.revoked", now, details),
                    actor,
                )
                .await?;
            }
            Ok(())
        })
        .await
    }
}
