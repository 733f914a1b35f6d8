//! Streaming uploads: hashed on the way, sized, checked against the client's checksum, and
//! aborted on any failure, including the request being dropped midway.
//!
//! Folder and memory stores take parts through object_store's `WriteMultipart`. S3 uploads
//! drive the multipart API directly so that the upload's id is known: while one is in
//! progress, a small marker object under `<prefix>/.uploads/` names it, deleted once the
//! upload is completed or aborted. A process killed mid-upload leaves its marker, and
//! `modelreg gc` aborts the upload it names (incomplete multipart uploads are invisible to
//! object listings and are billed until aborted).

use super::{BlobStore, Written, store_error};
use crate::error::{Error, Kind};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once: with the part being filled, memory stays under ~3 parts.
const PARTS_IN_FLIGHT: usize = 2;
/// The folder, under the store's prefix, of the markers of S3 uploads in progress.
pub(super) const MARKERS: &str = ".uploads";

/// What a marker says: which multipart upload of which key is in progress.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Marker {
    pub key: String,
    pub upload_id: String,
}

impl BlobStore {
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
        let mut sink = match &self.signer {
            Some(s3) => {
                Sink::S3(S3Upload::start(s3.clone(), key.clone(), self.marker_key()).await?)
            }
            None => Sink::Parts(Some(WriteMultipart::new_with_chunk_size(
                self.store.put_multipart(key).await.map_err(store_error)?,
                PART_SIZE,
            ))),
        };
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    sink.abort().await;
                    return Err(e);
                }
            };
            size += chunk.len() as u64;
            if max_size.is_some_and(|m| size > m) {
                sink.abort().await;
                return Err(Error::new(
                    Kind::PayloadTooLarge,
                    "payload_too_large",
                    "artifact is larger than the configured limit",
                ));
            }
            hasher.update(&chunk);
            if let Err(e) = sink.put(chunk).await {
                sink.abort().await;
                return Err(e);
            }
        }
        let sha256 = hex::encode(hasher.finalize());
        if let Some(expected) = expected_sha256
            && expected != sha256
        {
            sink.abort().await;
            return Err(Error::new(
                Kind::Unprocessable,
                "checksum_mismatch",
                format!("x-content-sha256 is {expected} but the body hashes to {sha256}; nothing was stored"),
            )
            .with_field("x-content-sha256"));
        }
        sink.finish().await?;
        Ok(Written {
            key: key.to_string(),
            size: size as i64,
            sha256,
        })
    }

    /// A fresh marker key for one S3 upload.
    fn marker_key(&self) -> Path {
        (*self.prefix)
            .clone()
            .join(MARKERS)
            .join(uuid::Uuid::now_v7().simple().to_string())
    }
}

/// Where an upload's bytes go.
enum Sink {
    /// Folder and memory stores. `None` once finished or aborted.
    Parts(Option<WriteMultipart>),
    S3(S3Upload),
}

impl Sink {
    async fn put(&mut self, chunk: Bytes) -> Result<(), Error> {
        match self {
            Sink::Parts(Some(w)) => {
                w.wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(store_error)?;
                w.put(chunk);
                Ok(())
            }
            Sink::Parts(None) => Err(Error::internal("upload already ended")),
            Sink::S3(u) => u.put(chunk).await,
        }
    }

    async fn finish(&mut self) -> Result<(), Error> {
        match self {
            Sink::Parts(w) => match w.take() {
                Some(w) => w.finish().await.map(|_| ()).map_err(store_error),
                None => Err(Error::internal("upload already ended")),
            },
            Sink::S3(u) => u.finish().await,
        }
    }

    async fn abort(&mut self) {
        match self {
            Sink::Parts(w) => {
                if let Some(w) = w.take()
                    && let Err(e) = w.abort().await
                {
                    tracing::warn!(error = %e, "could not abort an upload; `modelreg gc` will remove what is left");
                }
            }
            Sink::S3(u) => u.abort().await,
        }
    }
}

impl Drop for Sink {
    /// An upload dropped midway (the client went away, the server is shutting down) is
    /// aborted in the background.
    fn drop(&mut self) {
        if let Sink::Parts(w) = self
            && let Some(w) = w.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = w.abort().await;
            });
        }
    }
}

/// One S3 multipart upload, driven part by part.
struct S3Upload {
    s3: Arc<AmazonS3>,
    key: Path,
    id: String,
    marker: Path,
    buf: BytesMut,
    next: usize,
    in_flight: JoinSet<Result<(usize, PartId), Error>>,
    parts: Vec<Option<PartId>>,
    ended: bool,
}

impl S3Upload {
    async fn start(s3: Arc<AmazonS3>, key: Path, marker: Path) -> Result<Self, Error> {
        let id = s3.create_multipart(&key).await.map_err(store_error)?;
        let note = serde_json::to_vec(&Marker {
            key: key.to_string(),
            upload_id: id.clone(),
        })
        .map_err(Error::internal)?;
        if let Err(e) = s3.put(&marker, PutPayload::from(note)).await {
            let _ = s3.abort_multipart(&key, &id).await;
            return Err(store_error(e));
        }
        Ok(Self {
            s3,
            key,
            id,
            marker,
            buf: BytesMut::new(),
            next: 0,
            in_flight: JoinSet::new(),
            parts: Vec::new(),
            ended: false,
        })
    }

    async fn put(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.buf.extend_from_slice(&chunk);
        while self.buf.len() >= PART_SIZE {
            let part = self.buf.split_to(PART_SIZE).freeze();
            self.send(part).await?;
        }
        Ok(())
    }

    /// Uploads a part in the background, once fewer than [`PARTS_IN_FLIGHT`] are.
    async fn send(&mut self, part: Bytes) -> Result<(), Error> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        let (s3, key, id, idx) = (
            self.s3.clone(),
            self.key.clone(),
            self.id.clone(),
            self.next,
        );
        self.next += 1;
        self.in_flight.spawn(async move {
            let part = s3
                .put_part(&key, &id, idx, PutPayload::from(part))
                .await
                .map_err(store_error)?;
            Ok((idx, part))
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), Error> {
        if let Some(done) = self.in_flight.join_next().await {
            let (idx, part) = done.map_err(Error::internal)??;
            if self.parts.len() <= idx {
                self.parts.resize(idx + 1, None);
            }
            self.parts[idx] = Some(part);
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), Error> {
        // S3 needs at least one part; the last may be short, even empty.
        if !self.buf.is_empty() || self.next == 0 {
            let rest = std::mem::take(&mut self.buf).freeze();
            self.send(rest).await?;
        }
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        let parts = std::mem::take(&mut self.parts)
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::internal("a part of the upload is missing"))?;
        self.s3
            .complete_multipart(&self.key, &self.id, parts)
            .await
            .map_err(store_error)?;
        self.ended = true;
        if let Err(e) = self.s3.delete(&self.marker).await {
            tracing::warn!(error = %e, "could not delete an upload marker; `modelreg gc` will");
        }
        Ok(())
    }

    async fn abort(&mut self) {
        self.ended = true;
        self.in_flight.abort_all();
        abort_s3(&self.s3, &self.key, &self.id, &self.marker).await;
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.in_flight.abort_all();
        let (s3, key, id, marker) = (
            self.s3.clone(),
            self.key.clone(),
            self.id.clone(),
            self.marker.clone(),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { abort_s3(&s3, &key, &id, &marker).await });
        }
    }
}

/// Aborts a multipart upload and removes its marker; what fails is left for `gc`.
pub(super) async fn abort_s3(s3: &AmazonS3, key: &Path, id: &str, marker: &Path) {
    match s3.abort_multipart(key, &id.to_owned()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            if let Err(e) = s3.delete(marker).await {
                tracing::warn!(error = %e, "could not delete an upload marker; `modelreg gc` will");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not abort an upload; `modelreg gc` will");
        }
    }
}
