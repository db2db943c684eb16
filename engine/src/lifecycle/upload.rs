//! [`Upload`]: where the Parquet writer of a compaction output sends its bytes.
//!
//! Bytes are buffered up to `part_bytes`. An output that stays below that is stored with one
//! create-only PUT (If-None-Match), like every other object Strata writes. A bigger one
//! switches to a multipart upload with at most [`PARTS_IN_FLIGHT`] parts in flight, so memory
//! stays at about `part_bytes × (PARTS_IN_FLIGHT + 1)` whatever the output size. object_store
//! has no create-only multipart completion; the path is a fresh UUIDv7 written by nobody
//! else, so nothing can be overwritten either way.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::errors::ParquetError;

/// Multipart parts uploaded concurrently.
pub(crate) const PARTS_IN_FLIGHT: usize = 2;

/// A create-only, streaming upload of one object.
pub(crate) struct Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    part_bytes: usize,
    buffered: Vec<Bytes>,
    buffered_len: usize,
    multipart: Option<WriteMultipart>,
    written: u64,
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl Upload {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path, part_bytes: usize) -> Self {
        Self {
            store,
            path,
            // S3 refuses parts under 5 MiB (except the last).
            part_bytes: part_bytes.max(5 << 20),
            buffered: Vec::new(),
            buffered_len: 0,
            multipart: None,
            written: 0,
        }
    }

    /// Bytes handed to the upload so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Give up: abort a multipart upload in progress (a completed object is left for GC).
    pub(crate) async fn abort(mut self) {
        if let Some(mp) = self.multipart.take()
            && let Err(e) = mp.abort().await
        {
            tracing::debug!(path = %self.path, error = %e, "could not abort a multipart upload");
        }
    }
}

impl AsyncFileWriter for Upload {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        async move {
            self.written += bs.len() as u64;
            if let Some(mp) = self.multipart.as_mut() {
                mp.wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(store_error)?;
                mp.put(bs);
                return Ok(());
            }
            self.buffered_len += bs.len();
            self.buffered.push(bs);
            if self.buffered_len >= self.part_bytes {
                let upload = self
                    .store
                    .put_multipart_opts(&self.path, PutMultipartOptions::default())
                    .await
                    .map_err(store_error)?;
                let mut mp = WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
                for b in self.buffered.drain(..) {
                    mp.put(b);
                }
                self.buffered_len = 0;
                self.multipart = Some(mp);
            }
            Ok(())
        }
        .boxed()
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        async move {
            match self.multipart.take() {
                Some(mp) => {
                    mp.finish().await.map_err(store_error)?;
                }
                None => {
                    let payload: PutPayload =
                        std::mem::take(&mut self.buffered).into_iter().collect();
                    self.buffered_len = 0;
                    match self
                        .store
                        .put_opts(&self.path, payload, PutOptions::from(PutMode::Create))
                        .await
                    {
                        Ok(_) => {}
                        // The path is a fresh UUIDv7 of this process: the object that exists is
                        // this very upload, applied by an attempt whose response was lost.
                        Err(
                            object_store::Error::AlreadyExists { .. }
                            | object_store::Error::Precondition { .. },
                        ) => {}
                        Err(e) => return Err(store_error(e)),
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    async fn upload(store: &Arc<dyn ObjectStore>, path: &str, chunks: &[Bytes]) -> Bytes {
        let path = Path::from(path);
        let mut u = Upload::new(Arc::clone(store), path.clone(), 5 << 20);
        for c in chunks {
            u.write(c.clone()).await.expect("write");
        }
        u.complete().await.expect("complete");
        assert_eq!(
            u.written(),
            chunks.iter().map(|c| c.len() as u64).sum::<u64>()
        );
        store
            .get(&path)
            .await
            .expect("stored")
            .bytes()
            .await
            .expect("body")
    }

    #[tokio::test]
    async fn small_outputs_are_one_put_and_big_ones_multipart() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let small = [Bytes::from_static(b"abc"), Bytes::from_static(b"def")];
        assert_eq!(
            upload(&store, "s", &small).await,
            Bytes::from_static(b"abcdef")
        );
        let chunks: Vec<Bytes> = (0..6u8).map(|i| Bytes::from(vec![i; 2 << 20])).collect();
        let body = upload(&store, "big", &chunks).await;
        assert_eq!(body.len(), 12 << 20);
        assert!(
            body.chunks(2 << 20)
                .enumerate()
                .all(|(i, c)| c.iter().all(|b| *b == i as u8))
        );
    }
}
