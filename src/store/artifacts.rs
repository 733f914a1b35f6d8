//! Artifact rules shared by both backends.

use crate::domain::VersionStatus;
use crate::error::Error;

pub(crate) fn version_immutable(version: i64, status: VersionStatus) -> Error {
    Error::conflict(
        "version_immutable",
        format!(
            "version {version} is {}; artifacts can only change while a version is pending",
            status.as_str()
        ),
    )
}

pub(crate) fn artifact_exists(path: &str) -> Error {
    Error::conflict(
        "artifact_exists",
        format!("artifact '{path}' is already uploaded; artifacts are write-once (delete it first while pending)"),
    )
    .with_field("path")
}

pub(crate) fn artifact_not_found(path: &str) -> Error {
    Error::not_found(
        "artifact_not_found",
        format!("no artifact '{path}' on this version"),
    )
    .with_field("path")
}

/// Refuses changes once the version has left `pending`.
pub(crate) fn check_mutable(version: i64, status: VersionStatus) -> Result<(), Error> {
    if status.is_mutable() {
        Ok(())
    } else {
        Err(version_immutable(version, status))
    }
}
