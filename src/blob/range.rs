//! `Range: bytes=…` for downloads: one range, resolved against the object's size.

/// A byte range of a download, resolved against the object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
}

/// A `Range` header that cannot be served (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A byte position: digits only; one beyond what 64 bits hold means "as far as it goes".
fn position(digits: &str) -> Result<u64, Unsatisfiable> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Unsatisfiable);
    }
    Ok(digits.parse().unwrap_or(u64::MAX))
}

/// Parses a single `Range: bytes=…` against the object size. `Ok(None)`: serve it whole
/// (no header, or several ranges); `Err`: not satisfiable (416).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n = position(n)?;
            if n == 0 {
                return Err(Unsatisfiable);
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size,
            }
        }
        (s, "") => ByteRange {
            start: position(s)?,
            end: size,
        },
        (s, e) => {
            let (s, e) = (position(s)?, position(e)?);
            if e < s {
                return Err(Unsatisfiable);
            }
            ByteRange {
                start: s,
                end: e.saturating_add(1).min(size),
            }
        }
    };
    if range.start >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            Ok(Some(ByteRange { start: 0, end: 5 }))
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            Ok(Some(ByteRange { start: 5, end: 10 }))
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Ok(Some(ByteRange { start: 7, end: 10 }))
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            Ok(Some(ByteRange { start: 8, end: 10 }))
        );
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        // A last position at or past the end of 64 bits is the end of the object.
        for huge in ["18446744073709551615", "99999999999999999999999"] {
            assert_eq!(
                parse_range(Some(&format!("bytes=5-{huge}")), 10),
                Ok(Some(ByteRange { start: 5, end: 10 }))
            );
            assert!(parse_range(Some(&format!("bytes={huge}-")), 10).is_err());
            assert_eq!(
                parse_range(Some(&format!("bytes=-{huge}")), 10),
                Ok(Some(ByteRange { start: 0, end: 10 }))
            );
        }
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=x-1",
            "bytes=-0",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1-+2",
        ] {
            assert!(parse_range(Some(bad), 10).is_err(), "{bad}");
        }
    }
}
