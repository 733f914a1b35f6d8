//! Artifact bytes in object storage, through `object_store`: a local folder (`file://`),
//! any S3-compatible store (`s3://bucket/prefix`, configured by the standard `AWS_*`
//! variables) or memory (`memory://`, for tests).
//!
//! Uploads stream: each chunk is hashed and handed to a multipart upload with bounded
//! concurrency, so memory stays flat whatever the size. An upload that fails, mismatches its
//! checksum or is abandoned is aborted, leaving no object behind.

use crate::error::{Error, Kind};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::{Path, PathPart};
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The longest object key S3 accepts.
const MAX_KEY_BYTES: usize = 1024;

/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once: with the part being filled, memory stays under ~3 parts.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The S3 client again, for presigned URLs; `None` where the store cannot sign.
    signer: Option<Arc<AmazonS3>>,
    prefix: Path,
    kind: &'static str,
}

/// What a finished upload wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub key: String,
    pub size: i64,
    pub sha256: String,
}

/// A byte range of a download, resolved against the object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
}

impl BlobStore {
    /// Builds the store named by a URL.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        Self::from_url_with(url, std::iter::empty())
    }

    /// Like [`BlobStore::from_url`], with S3 settings given directly (`aws_endpoint`,
    /// `aws_access_key_id`, …) on top of the environment's.
    pub fn from_url_with(
        url: &str,
        s3_options: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create artifact folder {dir}: {e}"))?;
            let fs = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
            Ok(Self {
                store: Arc::new(fs),
                signer: None,
                prefix: Path::default(),
                kind: "file",
            })
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("artifact URL {url} names no bucket: use s3://bucket/prefix");
            }
            // Fail fast when the store is away (a 503 beats a request hanging for minutes),
            // but never cut a long download short.
            let retry = object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..Default::default()
            };
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_config("connect_timeout".parse()?, "5s")
                .with_config("timeout".parse()?, "24h");
            for (key, value) in s3_options {
                builder = builder.with_config(key.parse()?, value);
            }
            let s3 = Arc::new(builder.build()?);
            Ok(Self {
                store: s3.clone(),
                signer: Some(s3),
                prefix: Path::from(prefix),
                kind: "s3",
            })
        } else if url == "memory://" || url.starts_with("memory:") {
            Ok(Self {
                store: Arc::new(InMemory::new()),
                signer: None,
                prefix: Path::default(),
                kind: "memory",
            })
        } else {
            anyhow::bail!(
                "unsupported artifact URL {url}: use file://DIR, s3://bucket/prefix or memory://"
            )
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// A fresh object key for one upload: `<prefix>/<model>/<version>/<upload id>/<path>`.
    /// Every upload gets its own key, so racing uploads never overwrite each other. The path
    /// is there for people browsing the store; where it would make the key longer than S3
    /// allows (1,024 bytes), it is left out: the artifact row maps paths to keys anyway.
    pub fn new_key(&self, model: &str, version: i64, path: &str) -> Path {
        let mut parts: Vec<PathPart<'_>> = self.prefix.parts().collect();
        parts.push(PathPart::from(model.to_owned()));
        parts.push(PathPart::from(version.to_string()));
        parts.push(PathPart::from(uuid::Uuid::now_v7().simple().to_string()));
        let base = Path::from_iter(parts.clone());
        if base.as_ref().len() + 1 + path.len() > MAX_KEY_BYTES {
            return base;
        }
        parts.extend(path.split('/').map(|s| PathPart::from(s.to_owned())));
        Path::from_iter(parts)
    }

    /// Streams `body` to `key`, hashing on the way. Fails (and leaves nothing) with the
    /// stream's own error when it fails, when the object grows past `max_size`, or when
    /// `expected_sha256` does not match.
    pub async fn upload<S>(
        &self,
        key: &Path,
        body: S,
        expected_sha256: Option<&str>,
        max_size: Option<u64>,
    ) -> Result<Written, Error>
    where
        S: Stream<Item = Result<Bytes, Error>> + Unpin,
    {
        let upload = self.store.put_multipart(key).await.map_err(store_error)?;
        let mut guard = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    guard.abort().await;
                    return Err(e);
                }
            };
            size += chunk.len() as u64;
            if max_size.is_some_and(|m| size > m) {
                guard.abort().await;
                return Err(Error::new(
                    Kind::PayloadTooLarge,
                    "payload_too_large",
                    "artifact is larger than the configured limit",
                ));
            }
            hasher.update(&chunk);
            let Some(w) = guard.0.as_mut() else { break };
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                guard.abort().await;
                return Err(store_error(e));
            }
            w.put(chunk);
        }
        let sha256 = hex::encode(hasher.finalize());
        if let Some(expected) = expected_sha256
            && expected != sha256
        {
            guard.abort().await;
            return Err(Error::new(
                Kind::Unprocessable,
                "checksum_mismatch",
                format!("x-content-sha256 is {expected} but the body hashes to {sha256}; nothing was stored"),
            )
            .with_field("x-content-sha256"));
        }
        let Some(w) = guard.0.take() else {
            return Err(Error::internal("upload finished twice"));
        };
        w.finish().await.map_err(store_error)?;
        Ok(Written {
            key: key.to_string(),
            size: size as i64,
            sha256,
        })
    }

    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self.store.delete(&stored(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, Error> {
        match self.store.head(&stored(key)?).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Streams an object, or a range of it.
    pub async fn get(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<impl Stream<Item = Result<Bytes, object_store::Error>> + Send + 'static, Error>
    {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&stored(key)?, options)
            .await
            .map_err(store_error)?;
        Ok(result.into_stream())
    }

    /// A presigned GET URL, where the store can sign (S3).
    pub async fn presign(&self, key: &str, expires_in: Duration) -> Result<String, Error> {
        let Some(signer) = &self.signer else {
            return Err(Error::bad_request(
                "presign_not_supported",
                format!(
                    "the {} artifact store cannot sign URLs; download through this server instead",
                    self.kind
                ),
            )
            .with_field("presign"));
        };
        let url = signer
            .signed_url(object_store::signer::Method::GET, &stored(key)?, expires_in)
            .await
            .map_err(store_error)?;
        Ok(url.to_string())
    }

    /// Every object under the prefix.
    pub fn list(&self) -> impl Stream<Item = Result<ObjectMeta, Error>> + '_ {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        self.store.list(prefix).map_err(store_error)
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), Error> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        self.store
            .list_with_delimiter(prefix)
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}

/// A key as [`BlobStore::new_key`] made it and an artifact row stores it: already encoded, so
/// parsed, never encoded again (`Path::from` would turn each `%` of it into `%25`).
fn stored(key: &str) -> Result<Path, Error> {
    Path::parse(key).map_err(|e| Error::internal(format!("a stored object key is invalid: {e}")))
}

/// Aborts a multipart upload that was neither finished nor aborted, even when the request
/// future is dropped mid-upload (the client went away, the server is shutting down).
struct AbortOnDrop(Option<WriteMultipart>);

impl AbortOnDrop {
    async fn abort(&mut self) {
        if let Some(w) = self.0.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(error = %e, "could not abort an upload; `modelreg gc` will remove what is left");
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = w.abort().await;
            });
        }
    }
}

/// Object store failures: a missing object is a 404, anything else means the store is not
/// serving us right now (503), with the cause logged.
pub fn store_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found(
            "artifact_not_found",
            "the artifact's object is missing from the store",
        ),
        // Paths are validated before they reach the store; a store that still refuses one is
        // refusing the client's input, not failing.
        object_store::Error::InvalidPath { .. } => Error::bad_request(
            "invalid_artifact_path",
            "the artifact store cannot hold an object at this path",
        )
        .with_field("path"),
        other => {
            Error::unavailable("artifact store", other).with_code("artifact_store_unavailable")
        }
    }
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
