//! Bearer tokens: their format (`mrt_<id>_<secret>`, 256 random bits), how a secret is
//! stored (its sha256) and checked (in constant time), and the rules for issuing one.

use super::access::{Actor, Glob, Scope};
use super::time::{self, Timestamp};
use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

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
pub fn new_secret() -> Result<NewSecret> {
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

/// A bearer token as stored (the secret itself never is).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub name: String,
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
    pub models: Option<Vec<Glob>>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: String,
    /// Who holds it: a person or a system. Several tokens may share a subject; approvals are
    /// counted, and self-approval refused, by subject.
    pub subject: String,
}

/// A request for a new token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    /// Who holds it; the name when left out.
    #[serde(default)]
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<Timestamp>,
}

/// Validates a request and makes the token: the record to store and the token to show once
/// (for `POST /api/v1/tokens` and `modelreg token create` alike).
pub fn issue(body: TokenRequest, actor: &Actor) -> Result<(TokenRecord, String)> {
    let name = printable("name", &body.name)?;
    let subject = match &body.subject {
        Some(s) => printable("subject", s)?,
        None => name.clone(),
    };
    if body.scopes.is_empty() {
        return Err(Error::validation(
            "scopes",
            "name at least one scope: read, write, promote, admin",
        ));
    }
    let mut scopes = Vec::new();
    for (i, s) in body.scopes.iter().enumerate() {
        let scope = Scope::parse(&format!("scopes[{i}]"), s)?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let models = match body.models {
        None => None,
        Some(m) if m.is_empty() => {
            return Err(Error::validation(
                "models",
                "leave models out for every model, or name at least one glob",
            ));
        }
        Some(m) => Some(
            m.iter()
                .enumerate()
                .map(|(i, g)| Glob::parse(&format!("models[{i}]"), g))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let now = time::now();
    if body.expires_at.is_some_and(|e| e <= now) {
        return Err(Error::validation("expires_at", "expires_at is in the past"));
    }
    let secret = new_secret()?;
    let record = TokenRecord {
        id: secret.id,
        name,
        secret_hash: secret.hash,
        scopes,
        models,
        expires_at: body.expires_at,
        revoked_at: None,
        created_at: now,
        created_by: actor.name.clone(),
        subject,
    };
    Ok((record, secret.token))
}

/// A name or subject: 1-128 printable characters, trimmed.
fn printable(field: &str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            format!("{field} must be 1-128 printable characters"),
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn request(scopes: &[&str], models: Option<&[&str]>) -> TokenRequest {
        TokenRequest {
            name: " ci ".into(),
            subject: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            models: models.map(|m| m.iter().map(|g| (*g).to_owned()).collect()),
            expires_at: None,
        }
    }

    #[test]
    fn issuing_validates_and_never_stores_the_secret() {
        let actor = Actor::named("cli");
        let (record, token) = issue(request(&["read", "read", "write"], None), &actor).unwrap();
        assert_eq!(record.name, "ci");
        assert_eq!(record.subject, "ci", "the subject defaults to the name");
        let held = TokenRequest {
            subject: Some(" alice ".into()),
            ..request(&["promote"], None)
        };
        assert_eq!(issue(held, &actor).unwrap().0.subject, "alice");
        let unnamed = TokenRequest {
            subject: Some("  ".into()),
            ..request(&["promote"], None)
        };
        assert_eq!(
            issue(unnamed, &actor).unwrap_err().field.as_deref(),
            Some("subject")
        );
        assert_eq!(record.scopes, vec![Scope::Read, Scope::Write]);
        let (id, secret) = parse_token(&token).unwrap();
        assert_eq!(id, record.id);
        assert!(secret_matches(secret, &record.secret_hash));
        assert!(!record.secret_hash.contains(secret));
        let field = |r| issue(r, &actor).unwrap_err().field;
        assert_eq!(field(request(&[], None)).as_deref(), Some("scopes"));
        assert_eq!(
            field(request(&["root"], None)).as_deref(),
            Some("scopes[0]")
        );
        assert_eq!(
            field(request(&["read"], Some(&[]))).as_deref(),
            Some("models")
        );
    }
}
