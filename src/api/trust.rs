//! `/api/v1/trust/keys`: the public keys whose signatures over a version's files the
//! registry accepts (admin). Several may be trusted at once: a key is rotated by adding the
//! new one, then removing the old.

use super::Endpoint;
use super::Items;
use super::extract::Json;
use super::paths::KeyPath;
use crate::AppState;
use crate::domain::access::{Glob, Scope};
use crate::domain::trust::PublicKey;
use crate::error::Result;
use crate::store::{Actor, KeyPut, TrustedKey};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Deserialize;

/// The most model globs a key may be limited to.
const MAX_GLOBS: usize = 64;

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/trust/keys/{name}";
    vec![
        Endpoint::new(Method::PUT, ONE, Scope::Admin, put),
        Endpoint::new(Method::GET, ONE, Scope::Admin, get),
        Endpoint::new(Method::GET, "/api/v1/trust/keys", Scope::Admin, list),
        Endpoint::new(Method::DELETE, ONE, Scope::Admin, delete),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    public_key: String,
    #[serde(default)]
    models: Option<Vec<String>>,
}

/// 201 when the name is new, 200 when it replaces a key (or puts the same one again).
async fn put(
    State(state): State<AppState>,
    KeyPath(name): KeyPath,
    actor: Actor,
    Json(body): Json<KeyBody>,
) -> Result<(StatusCode, axum::Json<TrustedKey>)> {
    let key = PublicKey::from_pem("public_key", &body.public_key)?;
    let models = body
        .models
        .map(|m| {
            if m.is_empty() || m.len() > MAX_GLOBS {
                return Err(crate::error::Error::validation(
                    "models",
                    format!("1 to {MAX_GLOBS} model globs, or no models member for every model"),
                ));
            }
            m.iter()
                .enumerate()
                .map(|(i, g)| Glob::parse(&format!("models[{i}]"), g))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let (shown, outcome) = state
        .store
        .put_trusted_key(&name, &key, models.as_deref(), &actor)
        .await?;
    let status = if outcome == KeyPut::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(shown)))
}

async fn get(
    State(state): State<AppState>,
    KeyPath(name): KeyPath,
) -> Result<axum::Json<TrustedKey>> {
    Ok(axum::Json(state.store.get_trusted_key(&name).await?))
}

async fn list(State(state): State<AppState>) -> Result<axum::Json<Items<TrustedKey>>> {
    Ok(axum::Json(Items {
        items: state.store.list_trusted_keys().await?,
    }))
}

async fn delete(
    State(state): State<AppState>,
    KeyPath(name): KeyPath,
    actor: Actor,
) -> Result<StatusCode> {
    state.store.delete_trusted_key(&name, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
