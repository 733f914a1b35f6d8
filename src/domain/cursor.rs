//! Opaque keyset cursors: the last key of a page, encoded so clients do not depend on it.

use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes a position (a version number, a name, an id) behind a kind prefix, so that a
/// cursor from one list is refused by another.
pub fn encode(kind: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{key}"))
}

pub fn decode(kind: &str, cursor: &str) -> Result<String, Error> {
    let invalid = || {
        Error::bad_request("invalid_cursor", "cursor is not valid for this list")
            .with_field("cursor")
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    match text.split_once(':') {
        Some((k, key)) if k == kind => Ok(key.to_owned()),
        _ => Err(invalid()),
    }
}

pub fn decode_i64(kind: &str, cursor: &str) -> Result<i64, Error> {
    decode(kind, cursor)?.parse().map_err(|_| {
        Error::bad_request("invalid_cursor", "cursor is not valid for this list")
            .with_field("cursor")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_kind_check() {
        let c = encode("v", "42");
        assert_eq!(decode_i64("v", &c).unwrap(), 42);
        assert_eq!(decode("m", &c).unwrap_err().code, "invalid_cursor");
        assert_eq!(decode("v", "!!").unwrap_err().code, "invalid_cursor");
        assert!(decode_i64("v", &encode("v", "x")).is_err());
    }
}
