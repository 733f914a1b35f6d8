//! Bearer tokens and the guard every route carries.
//!
//! A token reads `mrt_<id>_<secret>`: the id finds the row, the 256-bit secret is checked
//! against its stored sha256 in constant time. Nothing is cached, so a revocation holds at
//! once on every server process.
//!
//! Authorization travels with the route: [`crate::api::router`] wraps each endpoint's handler
//! in a [`Guard`] holding that endpoint's scope, so a method the router answers (HEAD by way
//! of GET included) passes the same check as the method it stands for. Handlers read the
//! caller through the [`Principal`] and [`Actor`] extractors, which fail with 401 when no
//! guard let the request through: nothing falls back to an anonymous admin.

use crate::AppState;
use crate::config::AuthMode;
use crate::domain::ModelName;
use crate::domain::access::{Actor, Principal, Scope};
use crate::domain::token::{parse_token, secret_matches};
use crate::error::{Error, Kind};
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

fn unauthorized(detail: &str) -> Error {
    Error::new(Kind::Unauthorized, "unauthorized", detail)
}

/// Who the caller is: anonymous with every right while authentication is off, otherwise the
/// owner of a valid bearer token (401 without one).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, Error> {
    if state.config.auth == AuthMode::Disabled {
        return Ok(Principal::anonymous());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized("this endpoint needs Authorization: Bearer <token>"))?;
    let (id, secret) = parse_token(presented)
        .ok_or_else(|| unauthorized("the bearer token is not a modelreg token"))?;
    let record = state.store.find_token(id).await?;
    let t = match record {
        Some(t) if secret_matches(secret, &t.secret_hash) => t,
        _ => return Err(unauthorized("the token is not valid")),
    };
    if t.revoked_at.is_some() {
        return Err(unauthorized("the token has been revoked"));
    }
    if t.expires_at
        .is_some_and(|e| e <= crate::domain::time::now())
    {
        return Err(unauthorized("the token has expired"));
    }
    Ok(Principal {
        actor: Actor::token(t.name, t.id, t.subject),
        scopes: t.scopes,
        models: t.models,
    })
}

/// Whether `principal` may call an endpoint needing `scope` about `model` (the route's
/// `{model}`, if it has one).
pub fn authorize(principal: &Principal, scope: Scope, model: Option<&str>) -> Result<(), Error> {
    if !principal.allows(scope) {
        return Err(Error::new(
            Kind::Forbidden,
            "insufficient_scope",
            format!("this endpoint needs the {} scope", scope.as_str()),
        ));
    }
    if principal.models.is_none() {
        return Ok(());
    }
    match model {
        Some(raw) => {
            // A valid name first: globs only ever run on bounded, plain input.
            let name = ModelName::parse("model", raw).map_err(|e| {
                Error::bad_request("invalid_path_parameter", e.detail).with_field("model")
            })?;
            if principal.sees_model(name.as_str()) {
                Ok(())
            } else {
                Err(Error::model_not_found(name.as_str()))
            }
        }
        // Admin routes about no model (tokens) would let a limited token widen itself.
        None if scope == Scope::Admin => Err(Error::new(
            Kind::Forbidden,
            "insufficient_scope",
            "this endpoint needs an admin token not limited to models",
        )),
        None => Ok(()),
    }
}

/// The access check of one route: the state to look tokens up in, and the route's scope.
#[derive(Clone)]
pub struct Guard {
    pub state: AppState,
    pub scope: Scope,
    /// The handler itself keeps a glob-limited caller within its globs (webhooks: a limited
    /// admin sees only the webhooks it made, and their deliveries only its models), so such
    /// a caller may use this admin route about no model.
    pub confined: bool,
}

/// Authenticates and authorizes a request for the route the guard belongs to, and leaves the
/// [`Principal`] in the request for the handler.
pub async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let principal = match authenticate(&guard.state, &parts.headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // The model matters only to a token limited to some.
    let model = match &principal.models {
        None => None,
        Some(_) => RawPathParams::from_request_parts(&mut parts, &())
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(k, _)| *k == "model")
                    .map(|(_, v)| v.to_owned())
            }),
    };
    let allowed = if guard.confined && model.is_none() && principal.allows(guard.scope) {
        Ok(())
    } else {
        authorize(&principal, guard.scope, model.as_deref())
    };
    if let Err(e) = allowed {
        return e.into_response();
    }
    parts.extensions.insert(Arc::new(principal));
    next.run(Request::from_parts(parts, body)).await
}

/// The caller, as the route's guard authenticated it. Fails closed: a handler reached without
/// a guard gets 401, never an anonymous admin.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .map(|p| (**p).clone())
            .ok_or_else(|| unauthorized("this endpoint needs Authorization: Bearer <token>"))
    }
}

/// The caller's actor (for `created_by`, events and history).
impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Principal::from_request_parts(parts, state)
            .await
            .map(|p| p.actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Glob;

    #[tokio::test]
    async fn extractors_fail_closed_without_a_guard() {
        let (mut parts, _) = axum::http::Request::new(()).into_parts();
        let e = Principal::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Unauthorized);
        let e = Actor::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Unauthorized);
        parts.extensions.insert(Arc::new(Principal::anonymous()));
        let a = Actor::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(a, Actor::anonymous());
    }

    #[test]
    fn authorization() {
        let limited = Principal {
            actor: Actor::named("ci"),
            scopes: vec![Scope::Read],
            models: Some(vec![Glob::parse("models", "fraud-*").unwrap()]),
        };
        assert!(authorize(&limited, Scope::Read, Some("fraud-a")).is_ok());
        assert!(authorize(&limited, Scope::Read, None).is_ok());
        let e = authorize(&limited, Scope::Write, Some("fraud-a")).unwrap_err();
        assert_eq!((e.kind, e.code), (Kind::Forbidden, "insufficient_scope"));
        let e = authorize(&limited, Scope::Read, Some("other")).unwrap_err();
        assert_eq!(e.code, "model_not_found");
        // An invalid name is refused before any glob runs on it.
        let long = format!("fraud-{}", "a*".repeat(300));
        let e = authorize(&limited, Scope::Read, Some(&long)).unwrap_err();
        assert_eq!(e.code, "invalid_path_parameter");
        let admin = Principal {
            scopes: vec![Scope::Admin],
            ..limited
        };
        let e = authorize(&admin, Scope::Admin, None).unwrap_err();
        assert_eq!(e.code, "insufficient_scope");
        assert!(authorize(&Principal::anonymous(), Scope::Admin, None).is_ok());
    }
}
