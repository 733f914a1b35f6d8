//! Bearer tokens: scopes, model-name globs, the secret format, and the middleware that
//! authenticates every request against the endpoint table.
//!
//! A token reads `mrt_<id>_<secret>`: the id finds the row, the 256-bit secret is checked
//! against its stored sha256 in constant time. Nothing is cached, so a revocation holds at
//! once on every server process.

use crate::AppState;
use crate::config::AuthMode;
use crate::error::{Error, Kind};
use crate::store::Actor;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// What a caller must be allowed to do to call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Health and readiness: open to everyone.
    Public,
    Read,
    /// Register, patch, upload, log metrics, finalize, fail.
    Write,
    /// Stage changes.
    Promote,
    /// Tokens and deletes; implies every other scope.
    Admin,
}

impl Scope {
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "promote" => Ok(Self::Promote),
            "admin" => Ok(Self::Admin),
            _ => Err(Error::validation(
                field,
                format!("unknown scope {s:?}: one of read, write, promote, admin"),
            )),
        }
    }
}

/// A model-name glob: the model alphabet plus `*` (any run) and `?` (any one character).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Glob(String);

impl Glob {
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'*' | b'?')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::validation(
                field,
                format!("invalid model glob {s:?}: model-name characters, * and ?"),
            ))
        }
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        fn go(p: &[u8], n: &[u8]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
                (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
                _ => false,
            }
        }
        go(self.0.as_bytes(), name.as_bytes())
    }

    /// The same pattern for SQL `LIKE … ESCAPE '\'`.
    pub fn to_like(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 4);
        for c in self.0.chars() {
            match c {
                '*' => out.push('%'),
                '?' => out.push('_'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }
}

/// Who is calling and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    pub scopes: Vec<Scope>,
    /// Model-name globs the caller is limited to; `None`: every model.
    pub models: Option<Vec<Glob>>,
}

impl Principal {
    /// Everything allowed: authentication is off.
    pub fn anonymous() -> Self {
        Self {
            actor: Actor::anonymous(),
            scopes: vec![Scope::Admin],
            models: None,
        }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        scope == Scope::Public
            || self
                .scopes
                .iter()
                .any(|s| *s == scope || *s == Scope::Admin)
    }

    pub fn sees_model(&self, name: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| g.matches(name)))
    }

    /// The globs as SQL LIKE patterns, for filtering lists in the database.
    pub fn like_patterns(&self) -> Option<Vec<String>> {
        self.models
            .as_ref()
            .map(|g| g.iter().map(Glob::to_like).collect())
    }
}

/// A freshly made token: the secret to show once, and the hash to store.
pub struct NewSecret {
    pub id: Uuid,
    pub token: String,
    pub hash: String,
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes a token with 256 bits from the operating system's random source.
pub fn new_secret() -> Result<NewSecret, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    let id = Uuid::now_v7();
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    Ok(NewSecret {
        id,
        token: format!("mrt_{}_{secret}", id.simple()),
        hash: hash_secret(&secret),
    })
}

/// Splits `mrt_<id>_<secret>`.
pub fn parse_token(token: &str) -> Option<(Uuid, &str)> {
    let rest = token.strip_prefix("mrt_")?;
    let (id, secret) = rest.split_once('_')?;
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// Compares a presented secret with a stored hash without leaking where they differ.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

fn unauthorized(detail: &str) -> Response {
    let mut r = Error::new(Kind::Unauthorized, "unauthorized", detail).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Scopes of the endpoints, by (method, route template); built once from the endpoint table.
fn route_scopes() -> &'static HashMap<(Method, &'static str), Scope> {
    static SCOPES: OnceLock<HashMap<(Method, &'static str), Scope>> = OnceLock::new();
    SCOPES.get_or_init(|| {
        crate::api::endpoints()
            .into_iter()
            .map(|e| ((e.method, e.path), e.scope))
            .collect()
    })
}

/// Authenticates the caller, checks the endpoint's scope and the model globs, and leaves the
/// [`Principal`] in the request for handlers (actor, list filters).
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let scope = match &route {
        // Unmatched requests fall through to the 404/405 handlers.
        None => return next.run(req).await,
        Some(r) => match route_scopes().get(&(req.method().clone(), r.as_str())) {
            Some(s) => *s,
            // A HEAD or an unlisted method: let the router answer 405.
            None => return next.run(req).await,
        },
    };
    if scope == Scope::Public {
        return next.run(req).await;
    }
    let principal = if state.config.auth == AuthMode::Disabled {
        Principal::anonymous()
    } else {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return unauthorized("this endpoint needs Authorization: Bearer <token>");
        };
        let Some((id, secret)) = parse_token(presented) else {
            return unauthorized("the bearer token is not a modelreg token");
        };
        let record = match state.store.find_token(id).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let now = crate::domain::time::now();
        match record {
            Some(t) if secret_matches(secret, &t.secret_hash) => {
                if t.revoked_at.is_some() {
                    return unauthorized("the token has been revoked");
                }
                if t.expires_at.is_some_and(|e| e <= now) {
                    return unauthorized("the token has expired");
                }
                Principal {
                    actor: Actor(t.name),
                    scopes: t.scopes,
                    models: t.models,
                }
            }
            _ => return unauthorized("the token is not valid"),
        }
    };
    if !principal.allows(scope) {
        let needed = serde_json::to_value(scope)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Error::new(
            Kind::Forbidden,
            "insufficient_scope",
            format!("this endpoint needs the {needed} scope"),
        )
        .into_response();
    }
    if principal.models.is_some() {
        match model_of(&mut req).await {
            Some(model) if !principal.sees_model(&model) => {
                return Error::model_not_found(&model).into_response();
            }
            Some(_) => {}
            // Admin routes about no model (tokens) would let a limited token widen itself.
            None if scope == Scope::Admin => {
                return Error::new(
                    Kind::Forbidden,
                    "insufficient_scope",
                    "this endpoint needs an admin token not limited to models",
                )
                .into_response();
            }
            None => {}
        }
    }
    req.extensions_mut().insert(principal.actor.clone());
    req.extensions_mut().insert(Arc::new(principal));
    next.run(req).await
}

/// The `{model}` path parameter of a request, if its route has one.
async fn model_of(req: &mut Request) -> Option<String> {
    use axum::extract::FromRequestParts;
    let (mut parts, body) =
        std::mem::replace(req, Request::new(axum::body::Body::empty())).into_parts();
    let params = axum::extract::RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok();
    let model = params.and_then(|p| {
        p.iter()
            .find(|(k, _)| *k == "model")
            .map(|(_, v)| v.to_owned())
    });
    *req = Request::from_parts(parts, body);
    model
}

/// The caller, as handlers see it (anonymous with every right when authentication is off).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        Ok(parts
            .extensions
            .get::<Arc<Principal>>()
            .map(|p| (**p).clone())
            .unwrap_or_else(Principal::anonymous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::parse("models", "fraud-*").unwrap();
        assert!(
            g.matches("fraud-a")
                && g.matches("fraud-")
                && !g.matches("fraud")
                && !g.matches("xfraud-a")
        );
        let g = Glob::parse("models", "m?_x*").unwrap();
        assert!(g.matches("m1_x") && g.matches("ma_xyz") && !g.matches("m_x"));
        assert_eq!(g.to_like(), "m_\\_x%");
        assert!(Glob::parse("models", "Fraud").is_err());
        assert!(Glob::parse("models", "").is_err());
        assert!(Glob::parse("models", "a%").is_err());
    }

    #[test]
    fn secrets() {
        let s = new_secret().unwrap();
        let (id, secret) = parse_token(&s.token).unwrap();
        assert_eq!(id, s.id);
        assert_eq!(secret.len(), 43);
        assert!(secret_matches(secret, &s.hash));
        assert!(!secret_matches("wrong", &s.hash));
        assert!(!s.token.contains(&s.hash));
        assert!(parse_token("mrt_nope_x").is_none());
        assert!(parse_token("Bearer abc").is_none());
    }

    #[test]
    fn scopes() {
        let p = Principal {
            actor: Actor("ci".into()),
            scopes: vec![Scope::Read, Scope::Write],
            models: None,
        };
        assert!(
            p.allows(Scope::Read)
                && p.allows(Scope::Write)
                && !p.allows(Scope::Promote)
                && !p.allows(Scope::Admin)
        );
        assert!(p.allows(Scope::Public));
        let admin = Principal {
            actor: Actor("root".into()),
            scopes: vec![Scope::Admin],
            models: None,
        };
        assert!(
            [Scope::Read, Scope::Write, Scope::Promote, Scope::Admin]
                .iter()
                .all(|s| admin.allows(*s))
        );
    }
}
