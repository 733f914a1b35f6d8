//! Bearer tokens as stored: a hash of the secret, scopes, model globs, expiry, revocation.

use super::rows::TokenRow;
use super::sql::{Conn, Stmt};
use super::{Actor, Backend, NewEvent, SqlStore, TokenRecord, events};
use crate::domain::time;
use crate::error::{Error, Result};
use async_trait::async_trait;
use uuid::Uuid;

#[async_trait]
pub trait TokenStore {
    /// Stores a new token (its hash) and records `token.created`.
    async fn create_token(&self, token: &TokenRecord, actor: &Actor) -> Result<()>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn find_token(&self, id: Uuid) -> Result<Option<TokenRecord>>;
    /// Marks a token revoked (effective at the next request); 404 `token_not_found`.
    async fn revoke_token(&self, id: Uuid, actor: &Actor) -> Result<()>;
}

macro_rules! token_select {
    () => {
        "select id, name, secret_hash, scopes, models, expires_at, revoked_at, created_at, \
         created_by, subject from tokens "
    };
}

async fn insert<C: Conn>(conn: &mut C, t: &TokenRecord, actor: &Actor) -> Result<()> {
    let models: Option<Vec<&str>> = t
        .models
        .as_ref()
        .map(|m| m.iter().map(|g| g.as_str()).collect());
    let mut stmt = Stmt::new(
        "insert into tokens (id, name, secret_hash, scopes, models, expires_at, created_at, created_by, subject) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(t.id)
    .bind(&t.name)
    .bind(&t.secret_hash)
    .json(&t.scopes);
    stmt = match &models {
        Some(m) => stmt.json(m),
        None => stmt.bind(super::sql::Arg::Json(None)),
    };
    let stmt = stmt
        .bind(t.expires_at)
        .bind(t.created_at)
        .bind(&actor.name)
        .bind(&t.subject);
    conn.execute(stmt).await?;
    let details = serde_json::json!({"id": t.id, "name": t.name, "subject": t.subject, "scopes": t.scopes,
                                     "models": models, "expires_at": t.expires_at});
    events::record(
        conn,
        NewEvent::global("token.created", t.created_at, details),
        actor,
    )
    .await?;
    Ok(())
}

async fn revoke<C: Conn>(conn: &mut C, id: Uuid, actor: &Actor) -> Result<()> {
    let now = time::now();
    let stmt = Stmt::new(
        "update tokens set revoked_at = coalesce(revoked_at, $2) where id = $1 \
         returning name, revoked_at = $2",
    )
    .bind(id)
    .bind(now);
    let Some((name, newly)): Option<(String, bool)> = conn.fetch_optional(stmt).await? else {
        return Err(Error::not_found(
            "token_not_found",
            format!("no token {id}"),
        ));
    };
    if newly {
        let details = serde_json::json!({"id": id, "name": name});
        events::record(conn, NewEvent::global("token.revoked", now, details), actor).await?;
    }
    Ok(())
}

#[async_trait]
impl<B: Backend> TokenStore for SqlStore<B> {
    async fn create_token(&self, token: &TokenRecord, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| insert(c, token, actor))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new(concat!(token_select!(), "order by created_at, id"));
        let rows: Vec<TokenRow> = conn.fetch_all(stmt).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn find_token(&self, id: Uuid) -> Result<Option<TokenRecord>> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new(concat!(token_select!(), "where id = $1")).bind(id);
        let row: Option<TokenRow> = conn.fetch_optional(stmt).await?;
        Ok(row.map(Into::into))
    }

    async fn revoke_token(&self, id: Uuid, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| revoke(c, id, actor))
    }
}
