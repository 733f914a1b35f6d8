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

/// Appends `2026-01-02T03:04:05.123456Z` for microseconds since the epoch, without going
/// through a formatter: series reads write a timestamp per point.
pub fn write_rfc3339_micros(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    digits(out, year, 4);
    out.push('-');
    digits(out, month, 2);
    out.push('-');
    digits(out, day, 2);
    out.push('T');
    digits(out, sod / 3600, 2);
    out.push(':');
    digits(out, sod / 60 % 60, 2);
    out.push(':');
    digits(out, sod % 60, 2);
    out.push('.');
    digits(out, frac, 6);
    out.push('Z');
}

/// Appends `n` zero-padded to `width` (≤ 6) digits.
fn digits(out: &mut String, n: i64, width: usize) {
    let mut v = n;
    let mut buf = [b'0'; 6];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for b in &buf[..width] {
        out.push(char::from(*b));
    }
}

/// Serde helpers rendering `2026-01-02T03:04:05.123456Z`.
pub mod rfc3339 {
    use super::Timestamp;
    use chrono::SecondsFormat;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    /// `2026-01-02T03:04:05.123456Z`, as every timestamp of the API is written.
    pub fn format(t: &Timestamp) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
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
    fn fast_format_matches_chrono() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 1970 to ~2255, microseconds.
            let micros = (x % 9_000_000_000_000_000) as i64;
            let mut fast = String::new();
            write_rfc3339_micros(&mut fast, micros);
            let slow = from_micros(micros)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(fast, slow, "{micros}");
        }
        let mut s = String::new();
        write_rfc3339_micros(&mut s, 0);
        assert_eq!(s, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn micros_round_trip() {
        let t = now();
        assert_eq!(from_micros(to_micros(t)), t);
    }
}
