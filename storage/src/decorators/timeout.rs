//! [`TimeoutStore`]: a per-request time bound.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use tokio::time::{Instant, Sleep};

use super::StoreOp;

/// Bounds every request to the inner store by a fixed duration.
///
/// A request that takes longer fails with `object_store::Error::Generic { store: "timeout", .. }`
/// naming the operation, the path and the duration; its inner future is dropped.
///
/// Streams are bounded per item: `get`'s payload, `list` and `delete_stream` fail the same
/// way when the next item does not arrive within the duration of being asked for (so the
/// initial request is bounded, and a stalled stream is too, but a slow consumer is not
/// penalised). A multipart upload bounds each part, the completion and the abort.
#[derive(Debug)]
pub struct TimeoutStore {
    inner: Arc<dyn ObjectStore>,
    timeout: Duration,
}

impl TimeoutStore {
    /// Wraps `inner`, bounding each request by `timeout`.
    pub fn new(inner: Arc<dyn ObjectStore>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// The bound applied to each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn bounded<T>(
        &self,
        op: StoreOp,
        path: impl fmt::Display,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        bounded(self.timeout, op, path, fut).await
    }

    fn bounded_stream<T: Send + 'static>(
        &self,
        op: StoreOp,
        path: impl fmt::Display,
        stream: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        IdleTimeout::new(stream, self.timeout, op, path.to_string()).boxed()
    }
}

impl fmt::Display for TimeoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeoutStore({:?}, {})", self.timeout, self.inner)
    }
}

/// The error returned when a request exceeds its bound.
pub(crate) fn timeout_error(op: StoreOp, path: &str, timeout: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "timeout",
        source: format!("{op} of '{path}' timed out after {timeout:?}").into(),
    }
}

async fn bounded<T>(
    timeout: Duration,
    op: StoreOp,
    path: impl fmt::Display,
    fut: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_elapsed) => Err(timeout_error(op, &path.to_string(), timeout)),
    }
}

fn prefix_str(prefix: Option<&Path>) -> String {
    prefix.map(Path::to_string).unwrap_or_default()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for TimeoutStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let fut = self.inner.put_opts(location, payload, opts);
        self.bounded(StoreOp::Put, location, fut).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let fut = self.inner.put_multipart_opts(location, opts);
        let upload = self.bounded(StoreOp::PutMultipart, location, fut).await?;
        Ok(Box::new(TimeoutUpload {
            inner: upload,
            timeout: self.timeout,
            path: location.to_string(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = StoreOp::of_get(&options);
        let fut = self.inner.get_opts(location, options);
        let result = self.bounded(op, location, fut).await?;
        let payload = match result.payload {
            GetResultPayload::Stream(stream) => {
                GetResultPayload::Stream(self.bounded_stream(op, location, stream))
            }
            other => other,
        };
        Ok(GetResult { payload, ..result })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let fut = self.inner.get_ranges(location, ranges);
        self.bounded(StoreOp::GetRange, location, fut).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stream = self.inner.delete_stream(locations);
        self.bounded_stream(StoreOp::Delete, "<delete stream>", stream)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stream = self.inner.list(prefix);
        self.bounded_stream(StoreOp::List, prefix_str(prefix), stream)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stream = self.inner.list_with_offset(prefix, offset);
        self.bounded_stream(StoreOp::List, prefix_str(prefix), stream)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let fut = self.inner.list_with_delimiter(prefix);
        self.bounded(StoreOp::List, prefix_str(prefix), fut).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let fut = self.inner.copy_opts(from, to, options);
        self.bounded(StoreOp::Copy, format!("{from} -> {to}"), fut)
            .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let fut = self.inner.rename_opts(from, to, options);
        self.bounded(StoreOp::Rename, format!("{from} -> {to}"), fut)
            .await
    }
}

/// A multipart upload whose part uploads, completion and abort are each bounded.
#[derive(Debug)]
struct TimeoutUpload {
    inner: Box<dyn MultipartUpload>,
    timeout: Duration,
    path: String,
}

#[async_trait]
impl MultipartUpload for TimeoutUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let (timeout, path) = (self.timeout, self.path.clone());
        Box::pin(async move { bounded(timeout, StoreOp::PutMultipart, path, part).await })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (timeout, path) = (self.timeout, self.path.clone());
        bounded(timeout, StoreOp::PutMultipart, path, self.inner.complete()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (timeout, path) = (self.timeout, self.path.clone());
        bounded(timeout, StoreOp::PutMultipart, path, self.inner.abort()).await
    }
}

/// A stream whose every item must arrive within `timeout` of being polled for.
///
/// The clock starts at the first poll that finds no item ready and stops when an item
/// arrives; on expiry the stream yields one timeout error and ends.
struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    op: StoreOp,
    path: String,
    /// Created on first need, inside the runtime (streams may be built outside one).
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    done: bool,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, timeout: Duration, op: StoreOp, path: String) -> Self {
        Self {
            inner,
            timeout,
            op,
            path,
            sleep: None,
            armed: false,
            done: false,
        }
    }
}

impl<S, T> Stream for IdleTimeout<S>
where
    S: Stream<Item = object_store::Result<T>> + Unpin,
{
    type Item = object_store::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.poll_next_unpin(cx) {
            this.armed = false;
            this.done = item.is_none();
            return Poll::Ready(item);
        }
        let deadline = Instant::now() + this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.armed {
            sleep.as_mut().reset(deadline);
            this.armed = true;
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.done = true;
                Poll::Ready(Some(Err(timeout_error(this.op, &this.path, this.timeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // A timeout may add one error item.
            let (_, upper) = self.inner.size_hint();
            (0, upper.and_then(|n| n.checked_add(1)))
        }
    }
}
