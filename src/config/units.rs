//! Durations (`30s`, `5m`, `250ms`) and sizes (`1GiB`, `512MB`) as settings spell them.

use std::time::Duration;

/// Parses `500ms`, `30s`, `2m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s"))?;
    let secs = |k: u64| {
        n.checked_mul(k)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long"))
    };
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => Err(format!(
            "unknown duration unit {other:?}; use ms, s, m, h or d"
        )),
    }
}

/// The same durations as a span of time (what a clock adds: a token's expiry, `gc`'s grace);
/// one beyond what a time can hold is refused.
pub fn parse_span(s: &str) -> Result<chrono::Duration, String> {
    let d = parse_duration(s)?;
    chrono::Duration::from_std(d).map_err(|_| format!("{s:?} is too long"))
}

/// Parses `8388608`, `512KiB`, `8MiB`, `1GiB` (also KB/MB/GB, as binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 8MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub(super) fn parse_size_u64(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_span("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_span("0s").unwrap(), chrono::Duration::zero());
        assert!(
            parse_span("999999999999999d").is_err(),
            "beyond a time, not a panic"
        );
        let mut c = Config::for_database("sqlite://x.db");
        c.idle_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("idle timeout"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2 GiB").unwrap(), 2 << 30);
        assert!(parse_size("8XB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
