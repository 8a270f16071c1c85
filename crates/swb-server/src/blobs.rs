//! Blob bytes in an object store (a local directory under the data dir by default),
//! addressed by digest. Uploads stream through a bounded buffer while being hashed,
//! so no blob is ever held whole in memory.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use swb_api::{ApiError, Digest, ErrorCode};

/// Most bytes buffered by an upload before it waits for the store.
const BUFFER: usize = 8 << 20;

pub struct Blobs {
    store: LocalFileSystem,
    max_bytes: u64,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "blob store failure");
    ApiError::new(ErrorCode::Internal, "blob store failure")
}

fn key(digest: &Digest) -> StorePath {
    StorePath::from(format!("sha256/{}", digest.hex()))
}

impl Blobs {
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            store: LocalFileSystem::new_with_prefix(dir)?,
            max_bytes,
        })
    }

    /// Streams an upload into the store; returns its digest and size.
    pub async fn put_stream<E: std::error::Error + 'static>(
        &self,
        mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(Digest, u64), ApiError> {
        let tmp = StorePath::from(format!("tmp/{}", uuid::Uuid::now_v7()));
        let upload = self.store.put_multipart(&tmp).await.map_err(internal)?;
        let mut writer = WriteMultipart::new(upload);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(crate::extract::body_error(&e));
                }
            };
            size += chunk.len() as u64;
            if size > self.max_bytes {
                let _ = writer.abort().await;
                return Err(crate::extract::too_large(self.max_bytes, "--max-blob-mb"));
            }
            hasher.update(&chunk);
            writer.wait_for_capacity(BUFFER).await.map_err(internal)?;
            writer.write(&chunk);
        }
        if size == 0 {
            let _ = writer.abort().await;
            return Err(ApiError::invalid_input(
                "a blob needs a body: the upload was empty",
            ));
        }
        writer.finish().await.map_err(internal)?;
        let digest = Digest::from_sha256(hasher.finalize().into());
        self.store
            .rename(&tmp, &key(&digest))
            .await
            .map_err(internal)?;
        Ok((digest, size))
    }

    pub async fn put_bytes(&self, bytes: Bytes) -> Result<Digest, ApiError> {
        let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        self.put_stream(chunks).await.map(|(d, _)| d)
    }

    /// The blob's bytes as a stream.
    pub async fn get_stream(
        &self,
        digest: &Digest,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + use<>, ApiError> {
        let got = self.store.get(&key(digest)).await.map_err(internal)?;
        Ok(got.into_stream().map_err(std::io::Error::other))
    }

    /// The whole blob, refused when larger than `max` (a call's input is bounded).
    pub async fn get_bytes(&self, digest: &Digest, max: u64) -> Result<Bytes, ApiError> {
        let got = self.store.get(&key(digest)).await.map_err(internal)?;
        if got.meta.size > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("blob {digest} is larger than a call's input may be ({max} bytes)"),
            ));
        }
        got.bytes().await.map_err(internal)
    }

    pub async fn delete(&self, digest: &Digest) -> Result<(), ApiError> {
        self.store.delete(&key(digest)).await.map_err(internal)
    }
}
