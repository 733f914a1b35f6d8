//! Artifact bytes in object storage, through `object_store`: a local folder (`file://`),
//! any S3-compatible store (`s3://bucket/prefix`, configured by the standard `AWS_*`
//! variables) or memory (`memory://`, for tests).
//!
//! Uploads stream (see `upload`): each chunk is hashed and handed to a multipart upload with
//! bounded concurrency, so memory stays flat whatever the size. An upload that fails,
//! mismatches its checksum or is abandoned is aborted, leaving no object behind; what a
//! killed process leaves is found by `gc` (see `leftovers`). The folder store syncs each
//! object to disk before it is recorded.

mod leftovers;
mod range;
mod upload;

pub use leftovers::Leftover;
pub use range::{ByteRange, Unsatisfiable, parse_range};

use crate::error::Error;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::{Path, PathPart};
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest object key S3 accepts.
const MAX_KEY_BYTES: usize = 1024;

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The S3 client again, for presigned URLs; `None` where the store cannot sign.
    signer: Option<Arc<AmazonS3>>,
    /// Shared, like everything here: the app state (and so this) is cloned per request.
    prefix: Arc<Path>,
    kind: &'static str,
    /// The folder of a `file://` store.
    root: Option<Arc<PathBuf>>,
}

/// What a finished upload wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub key: String,
    pub size: i64,
    pub sha256: String,
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
            // fsync: an artifact row is written only once its bytes are on disk.
            let fs = LocalFileSystem::new_with_prefix(dir)?
                .with_automatic_cleanup(true)
                .with_fsync(true);
            Ok(Self {
                store: Arc::new(fs),
                signer: None,
                prefix: Arc::default(),
                kind: "file",
                root: Some(Arc::new(std::fs::canonicalize(dir)?)),
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
                prefix: Arc::new(Path::from(prefix)),
                kind: "s3",
                root: None,
            })
        } else if url == "memory://" || url.starts_with("memory:") {
            Ok(Self {
                store: Arc::new(InMemory::new()),
                signer: None,
                prefix: Arc::default(),
                kind: "memory",
                root: None,
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
        self.new_key_in(model, &version.to_string(), path)
    }

    /// A fresh object key for one upload of a file held by `holder` (a version number, or a
    /// logged model's id) of `model`: `<prefix>/<model>/<holder>/<upload id>/<path>`.
    pub fn new_key_in(&self, model: &str, holder: &str, path: &str) -> Path {
        let mut parts: Vec<PathPart<'_>> = self.prefix.parts().collect();
        parts.push(PathPart::from(model.to_owned()));
        parts.push(PathPart::from(holder.to_owned()));
        parts.push(PathPart::from(uuid::Uuid::now_v7().simple().to_string()));
        let base = Path::from_iter(parts.clone());
        if base.as_ref().len() + 1 + path.len() > MAX_KEY_BYTES {
            return base;
        }
        parts.extend(path.split('/').map(|s| PathPart::from(s.to_owned())));
        Path::from_iter(parts)
    }

    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self.store.delete(&stored(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Copies a stored object to a fresh key (a server-side copy on S3).
    pub async fn copy(&self, from: &str, to: &Path) -> Result<(), Error> {
        self.store
            .copy(&stored(from)?, to)
            .await
            .map_err(store_error)
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

    /// Every object under the prefix (the markers of uploads in progress aside).
    pub fn list(&self) -> impl Stream<Item = Result<ObjectMeta, Error>> + '_ {
        let prefix = (!AsRef::<str>::as_ref(&*self.prefix).is_empty()).then_some(&*self.prefix);
        let markers = (*self.prefix).clone().join(upload::MARKERS);
        self.store
            .list(prefix)
            .try_filter(move |m| std::future::ready(!m.location.prefix_matches(&markers)))
            .map_err(store_error)
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), Error> {
        let prefix = (!AsRef::<str>::as_ref(&*self.prefix).is_empty()).then_some(&*self.prefix);
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
