//! Timestamps: stored with microsecond precision, rendered as RFC 3339 UTC.

use chrono::{DateTime, SubsecRound, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to the microsecond precision that both databases keep, so that a value
/// returned from a write equals the one later read back.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

pub fn to_micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> Timestamp {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// Serde helpers rendering `2026-01-02T03:04:05.123456Z`.
pub mod rfc3339 {
    use super::Timestamp;
    use chrono::SecondsFormat;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub mod option {
        use super::Timestamp;
        use serde::Serializer;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let t = now();
        assert_eq!(from_micros(to_micros(t)), t);
    }
}
