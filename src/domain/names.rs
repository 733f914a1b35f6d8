//! Validated names: models, stages, tag keys.

use crate::error::Error;
use serde::Serialize;
use std::fmt;

/// `^[a-z0-9][a-z0-9._-]{0,127}$`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ModelName(String);

/// `^[a-z][a-z0-9_-]{0,62}$`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct StageName(String);

impl ModelName {
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::validation(
                field,
                format!(
                    "invalid model name {s:?}: use 1-128 of a-z 0-9 . _ -, starting with a letter or digit"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl StageName {
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || (i > 0 && (b.is_ascii_digit() || b == b'_' || b == b'-'))
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::validation(
                field,
                format!(
                    "invalid stage name {s:?}: use 1-63 of a-z 0-9 _ -, starting with a letter"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tag keys and metric keys share one alphabet: `[A-Za-z0-9_.:/-]`.
pub(crate) fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

/// A description: free text, bounded so that rows stay small.
/// Free text a request may attach, bounded so that no client can store an unbounded blob:
/// a model's or version's description, the reason given for a transition or stage change.
macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Most bytes it may hold.
            pub const MAX_BYTES: usize = 10_000;

            pub fn parse(field: &str, text: String) -> Result<Self, Error> {
                if text.len() > Self::MAX_BYTES {
                    return Err(Error::validation(
                        field,
                        format!("{} is longer than {} bytes", $what, Self::MAX_BYTES),
                    ));
                }
                Ok(Self(text))
            }

            /// An optional field of a request.
            pub fn parse_opt(field: &str, text: Option<String>) -> Result<Option<Self>, Error> {
                text.map(|t| Self::parse(field, t)).transpose()
            }

            /// Text read back from the database, which only ever stored parsed values.
            pub fn from_stored(text: String) -> Self {
                Self(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text!(
    /// The description of a model or a version.
    Description,
    "description"
);
bounded_text!(
    /// Why a version was transitioned or a stage changed, as the operator wrote it.
    Reason,
    "reason"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_texts() {
        assert!(Description::parse("description", "x".repeat(10_000)).is_ok());
        let e = Description::parse("description", "x".repeat(10_001)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("description"));
        let e = Reason::parse_opt("reason", Some("y".repeat(10_001))).unwrap_err();
        assert_eq!(e.detail, "reason is longer than 10000 bytes");
        assert_eq!(Reason::parse_opt("reason", None).unwrap(), None);
    }

    #[test]
    fn model_names() {
        for ok in ["a", "0", "fraud-detector", "bert.base_v2", &"a".repeat(128)] {
            assert!(ModelName::parse("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "A",
            "a b",
            "a/b",
            "é",
            &"a".repeat(129),
        ] {
            let e = ModelName::parse("name", bad).unwrap_err();
            assert_eq!(e.code, "validation_failed");
            assert_eq!(e.field.as_deref(), Some("name"));
        }
    }

    #[test]
    fn stage_names() {
        for ok in ["production", "staging", "canary-2", "a_b", &"s".repeat(63)] {
            assert!(StageName::parse("stage", ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "-a", "Prod", "a.b", "a b", &"s".repeat(64)] {
            assert!(StageName::parse("stage", bad).is_err(), "{bad}");
        }
    }
}
