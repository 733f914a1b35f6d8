//! Artifact paths and checksums.

use super::VersionStatus;
use crate::error::Error;

/// The longest artifact path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest segment of a path, in bytes: what every file system takes as a file name.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// A relative, `/`-separated path: no empty, `.` or `..` segments, no leading `/`,
/// at most 1024 bytes and 255 per segment, no control characters, backslashes or `%` (so
/// that nothing decodes into something else later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::bad_request(
                "invalid_artifact_path",
                format!("artifact path {raw:?} {why}"),
            )
            .with_field("path")
        };
        if raw.is_empty() {
            return Err(bad("is empty"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad("is longer than 1024 bytes"));
        }
        if raw.starts_with('/') {
            return Err(bad("must be relative (no leading /)"));
        }
        if raw.chars().any(|c| c.is_control() || c == '\\' || c == '%') {
            return Err(bad("contains a control character, a backslash or %"));
        }
        for segment in raw.split('/') {
            match segment {
                "" => return Err(bad("has an empty segment")),
                "." | ".." => return Err(bad("has a . or .. segment")),
                s if s.len() > MAX_SEGMENT_BYTES => {
                    return Err(bad("has a segment longer than 255 bytes"));
                }
                _ => {}
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// A sha256 digest as 64 lower-case hex digits.
pub fn parse_sha256(raw: &str) -> Result<String, Error> {
    let hex = raw.trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(
            Error::bad_request("invalid_checksum", "x-content-sha256 must be 64 hex digits")
                .with_field("x-content-sha256"),
        )
    }
}

/// Refuses changes to a version's artifacts once it has left `pending`.
pub fn check_mutable(version: i64, status: VersionStatus) -> Result<(), Error> {
    if status.is_mutable() {
        return Ok(());
    }
    Err(Error::conflict(
        "version_immutable",
        format!(
            "version {version} is {}; artifacts can only change while a version is pending",
            status.as_str()
        ),
    ))
}

pub fn artifact_exists(path: &str) -> Error {
    Error::conflict(
        "artifact_exists",
        format!("artifact '{path}' is already uploaded; artifacts are write-once (delete it first while pending)"),
    )
    .with_field("path")
}

pub fn artifact_not_found(path: &str) -> Error {
    Error::not_found(
        "artifact_not_found",
        format!("no artifact '{path}' on this version"),
    )
    .with_field("path")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_paths() {
        for ok in [
            "model.onnx",
            "weights/layer-1.bin",
            "a/b/c/d.txt",
            "ünïcode/ファイル",
            "..a/b..",
            ".hidden",
            &format!("{}/{}", "s".repeat(255), "t".repeat(255)),
        ] {
            assert!(ArtifactPath::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_paths() {
        let long = "a".repeat(1025);
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "../x",
            "a/../../etc/passwd",
            "..",
            "a\\..\\b",
            "a%2e%2e/b",
            "a\u{0}b",
            long.as_str(),
            &format!("dir/{}/x", "s".repeat(256)),
        ] {
            let e = ArtifactPath::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_artifact_path", "{bad:?}");
        }
    }

    #[test]
    fn checksums() {
        let h = "A".repeat(64);
        assert_eq!(parse_sha256(&h).unwrap(), "a".repeat(64));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
    }
}
