//! Who may do what: scopes, model-name globs, the caller ([`Principal`]) and the actor that
//! the audit log records.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a caller must be allowed to do to call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Health and readiness: open to everyone.
    Public,
    /// Any valid token, whatever its scopes (who am I).
    Authenticated,
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

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Authenticated => "authenticated",
            Self::Read => "read",
            Self::Write => "write",
            Self::Promote => "promote",
            Self::Admin => "admin",
        }
    }
}

/// A model-name glob: the model alphabet plus `*` (any run) and `?` (any one character).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Glob(String);

/// The longest glob: as long as the longest model name.
const MAX_GLOB_LEN: usize = 128;

impl Glob {
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= MAX_GLOB_LEN
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

    /// Whether `name` matches. Greedy with one backtrack point (the last `*`): at most
    /// pattern × name steps, never exponential, whatever the pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.match_steps(name).0
    }

    /// The answer and the number of steps it took (bounded by pattern × name lengths).
    fn match_steps(&self, name: &str) -> (bool, usize) {
        let (p, n) = (self.0.as_bytes(), name.as_bytes());
        let (mut pi, mut ni, mut steps) = (0, 0, 0);
        // Where the last `*` was, and the name position it currently stands for.
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            steps += 1;
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some(&c) if c == b'?' || c == n[ni] => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    // Let the last `*` swallow one more character and retry from there.
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return (false, steps),
                },
            }
        }
        (p[pi..].iter().all(|&c| c == b'*'), steps)
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

/// Who did it, as recorded in events and `created_by`: the token's name, its id (names are
/// not unique), and its subject: the person or system holding it (several tokens may share
/// one; the two-person rule counts subjects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub token_id: Option<Uuid>,
    pub subject: String,
}

impl Actor {
    /// The caller while authentication is off.
    pub fn anonymous() -> Self {
        Self::named("anonymous")
    }

    /// An actor that is not a token: the command line, the bootstrap.
    pub fn named(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            subject: name.clone(),
            name,
            token_id: None,
        }
    }

    /// A token's actor, held by `subject`.
    pub fn token(name: impl Into<String>, id: Uuid, subject: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            token_id: Some(id),
            subject: subject.into(),
        }
    }

    /// Whether `self` and `other` are the same person: the same subject.
    pub fn same_subject(&self, other: &str) -> bool {
        self.subject == other
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
        matches!(scope, Scope::Public | Scope::Authenticated)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> Glob {
        Glob::parse("models", s).unwrap()
    }

    #[test]
    fn globs() {
        let g = glob("fraud-*");
        assert!(
            g.matches("fraud-a")
                && g.matches("fraud-")
                && !g.matches("fraud")
                && !g.matches("xfraud-a")
        );
        let g = glob("m?_x*");
        assert!(g.matches("m1_x") && g.matches("ma_xyz") && !g.matches("m_x"));
        assert_eq!(g.to_like(), "m_\\_x%");
        assert!(glob("*").matches("") && glob("*").matches("anything"));
        assert!(glob("a*b*c").matches("abc") && glob("a*b*c").matches("axxbyyc"));
        assert!(!glob("a*b*c").matches("axxbyy") && !glob("a*b").matches("ab-"));
        assert!(glob("**a**").matches("xay") && !glob("?").matches(""));
        assert!(Glob::parse("models", "Fraud").is_err());
        assert!(Glob::parse("models", "").is_err());
        assert!(Glob::parse("models", "a%").is_err());
    }

    /// The same answers as the obvious recursive matcher, on every short pattern and name
    /// over a small alphabet.
    #[test]
    fn globs_agree_with_the_recursive_definition() {
        fn reference(p: &[u8], n: &[u8]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some(b'*'), _) => {
                    reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..]))
                }
                (Some(b'?'), Some(_)) => reference(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
                _ => false,
            }
        }
        fn all(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
            let mut out = vec![vec![]];
            let mut last = vec![vec![]];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| {
                        alphabet.iter().map(move |c| {
                            let mut s = s.clone();
                            s.push(*c);
                            s
                        })
                    })
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let patterns = all(b"ab*?", 4);
        let names = all(b"ab", 5);
        for p in &patterns {
            let g = Glob(String::from_utf8(p.clone()).unwrap());
            for n in &names {
                let name = std::str::from_utf8(n).unwrap();
                assert_eq!(g.matches(name), reference(p, n), "{:?} {name:?}", g.0);
            }
        }
    }

    /// The pattern that made a backtracking matcher take seconds: its steps are bounded by
    /// the product of the lengths (a recursive matcher takes billions here).
    #[test]
    fn adversarial_globs_take_bounded_steps() {
        let g = glob("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b");
        let name = "a".repeat(400);
        let (matched, steps) = g.match_steps(&name);
        assert!(!matched);
        assert!(steps <= (g.0.len() + 1) * (name.len() + 1), "{steps} steps");
    }

    #[test]
    fn scopes() {
        let p = Principal {
            actor: Actor::named("ci"),
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
            actor: Actor::named("root"),
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
