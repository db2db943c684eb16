//! [`MetricsStore`] and [`StoreMetrics`]: Prometheus metrics of object-store requests.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tokio::time::Instant;

use super::StoreOp;

/// Requests sent to the object store, labelled `op`. One per physical attempt.
pub const REQUESTS_TOTAL: &str = "strata_object_store_requests_total";
/// Failed requests, labelled `op` and `kind` (`not_found`, `precondition`, `timeout`, …).
pub const ERRORS_TOTAL: &str = "strata_object_store_errors_total";
/// Payload bytes, labelled `op` and `direction` (`read` or `written`).
pub const BYTES_TOTAL: &str = "strata_object_store_bytes_total";
/// Request latency in seconds, labelled `op`. For reads, the time to the response headers.
pub const REQUEST_DURATION_SECONDS: &str = "strata_object_store_request_duration_seconds";
/// Retries made by [`RetryStore`](super::RetryStore), labelled `op`.
pub const RETRIES_TOTAL: &str = "strata_object_store_retries_total";

const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const READ: &str = "read";
const WRITTEN: &str = "written";
const READ_OPS: [StoreOp; 2] = [StoreOp::Get, StoreOp::GetRange];
const WRITE_OPS: [StoreOp; 2] = [StoreOp::Put, StoreOp::PutMultipart];

/// The object-store metrics, registered in one Prometheus registry.
///
/// Shared (`Arc`) between the [`MetricsStore`] that records requests and the
/// [`RetryStore`](super::RetryStore) that records retries; the accessors read the same
/// counters that Prometheus exports.
pub struct StoreMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    bytes: IntCounterVec,
    duration: HistogramVec,
    retries: IntCounterVec,
    /// Errors per op over all kinds, indexed by [`StoreOp::index`].
    error_totals: [AtomicU64; StoreOp::ALL.len()],
}

impl StoreMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// Fails if metrics of the same names are already registered there; nothing stays
    /// registered on failure.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS_TOTAL, "Object store requests, one per attempt."),
            &["op"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(ERRORS_TOTAL, "Failed object store requests by error kind."),
            &["op", "kind"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(BYTES_TOTAL, "Object store payload bytes read or written."),
            &["op", "direction"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION_SECONDS, "Object store request latency.")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["op"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                RETRIES_TOTAL,
                "Object store requests retried after a transient error.",
            ),
            &["op"],
        )?;

        // Export every series from the start, so rates are defined before the first request.
        for op in StoreOp::ALL {
            requests.with_label_values(&[op.as_str()]);
            retries.with_label_values(&[op.as_str()]);
            duration.with_label_values(&[op.as_str()]);
        }
        for op in READ_OPS {
            bytes.with_label_values(&[op.as_str(), READ]);
        }
        for op in WRITE_OPS {
            bytes.with_label_values(&[op.as_str(), WRITTEN]);
        }

        register_all(
            registry,
            &[
                &|| Box::new(requests.clone()),
                &|| Box::new(errors.clone()),
                &|| Box::new(bytes.clone()),
                &|| Box::new(duration.clone()),
                &|| Box::new(retries.clone()),
            ],
        )?;

        Ok(Self {
            requests,
            errors,
            bytes,
            duration,
            retries,
            error_totals: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// Requests of `op` sent so far (every attempt counts).
    pub fn requests(&self, op: StoreOp) -> u64 {
        self.requests.with_label_values(&[op.as_str()]).get()
    }

    /// Failed requests of `op` so far, over all error kinds.
    pub fn errors(&self, op: StoreOp) -> u64 {
        self.error_totals[op.index()].load(Ordering::Relaxed)
    }

    /// Retries of `op` made so far by a [`RetryStore`](super::RetryStore) reporting here.
    pub fn retries(&self, op: StoreOp) -> u64 {
        self.retries.with_label_values(&[op.as_str()]).get()
    }

    /// Payload bytes read so far (`get`, `get_range`).
    pub fn bytes_read(&self) -> u64 {
        READ_OPS
            .iter()
            .map(|op| self.bytes.with_label_values(&[op.as_str(), READ]).get())
            .sum()
    }

    /// Payload bytes written so far (`put`, `put_multipart`), counted when acknowledged.
    pub fn bytes_written(&self) -> u64 {
        WRITE_OPS
            .iter()
            .map(|op| self.bytes.with_label_values(&[op.as_str(), WRITTEN]).get())
            .sum()
    }

    /// Starts timing one request of `op` and counts it.
    pub(crate) fn begin(self: &Arc<Self>, op: StoreOp) -> InFlight {
        self.requests.with_label_values(&[op.as_str()]).inc();
        InFlight {
            metrics: Arc::clone(self),
            op,
            start: Instant::now(),
            finished: false,
        }
    }

    pub(crate) fn record_retry(&self, op: StoreOp) {
        self.retries.with_label_values(&[op.as_str()]).inc();
    }

    fn record_error(&self, op: StoreOp, err: &object_store::Error) {
        self.record_error_kind(op, error_kind(err));
    }

    fn record_error_kind(&self, op: StoreOp, kind: &str) {
        self.errors.with_label_values(&[op.as_str(), kind]).inc();
        self.error_totals[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, op: StoreOp, start: Instant) {
        self.duration
            .with_label_values(&[op.as_str()])
            .observe(start.elapsed().as_secs_f64());
    }

    fn add_read(&self, op: StoreOp, n: u64) {
        self.bytes.with_label_values(&[op.as_str(), READ]).inc_by(n);
    }

    fn add_written(&self, op: StoreOp, n: u64) {
        self.bytes
            .with_label_values(&[op.as_str(), WRITTEN])
            .inc_by(n);
    }
}

type MakeCollector<'a> = &'a dyn Fn() -> Box<dyn Collector>;

/// Registers every collector, or none: on failure the ones already registered are removed
/// again (collectors are matched by their descriptors, so a fresh handle unregisters).
fn register_all(registry: &Registry, collectors: &[MakeCollector<'_>]) -> prometheus::Result<()> {
    for (i, make) in collectors.iter().enumerate() {
        if let Err(e) = registry.register(make()) {
            for undo in &collectors[..i] {
                // Best effort: each of these was registered a moment ago.
                let _ = registry.unregister(undo());
            }
            return Err(e);
        }
    }
    Ok(())
}

impl fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreMetrics")
            .field("bytes_read", &self.bytes_read())
            .field("bytes_written", &self.bytes_written())
            .finish_non_exhaustive()
    }
}

/// The `kind` label of an error.
fn error_kind(err: &object_store::Error) -> &'static str {
    use object_store::Error as E;
    match err {
        E::Generic {
            store: "timeout", ..
        } => "timeout",
        E::Generic { .. } => "generic",
        E::NotFound { .. } => "not_found",
        E::InvalidPath { .. } => "invalid_path",
        E::NotSupported { .. } => "not_supported",
        E::AlreadyExists { .. } => "already_exists",
        E::Precondition { .. } => "precondition",
        E::NotModified { .. } => "not_modified",
        E::NotImplemented { .. } => "not_implemented",
        E::PermissionDenied { .. } => "permission_denied",
        E::Unauthenticated { .. } => "unauthenticated",
        E::UnknownConfigurationKey { .. } => "unknown_configuration_key",
        _ => "other",
    }
}

/// One request being timed. Finishing it records the outcome; dropping it unfinished (the
/// caller abandoned the request) records an error of kind `cancelled`.
pub(crate) struct InFlight {
    metrics: Arc<StoreMetrics>,
    op: StoreOp,
    start: Instant,
    finished: bool,
}

impl InFlight {
    fn finish<T>(mut self, result: &object_store::Result<T>) {
        self.finished = true;
        self.metrics.observe(self.op, self.start);
        if let Err(e) = result {
            self.metrics.record_error(self.op, e);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.observe(self.op, self.start);
            self.metrics.record_error_kind(self.op, "cancelled");
        }
    }
}

/// Records request metrics for every call to the inner store.
///
/// Each call is one request of its [`StoreOp`]; `get_opts` is classified as `get`,
/// `get_range` or `head` by its options. Bytes read are counted as the payload stream flows
/// (a local file payload is counted whole when returned); bytes written when a put or a part
/// is acknowledged. A listing is one request timed until its stream ends; a `delete_stream`
/// is one request per location.
#[derive(Debug)]
pub struct MetricsStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<StoreMetrics>,
}

impl MetricsStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<StoreMetrics>) -> Self {
        Self { inner, metrics }
    }

    /// The metrics this store records into.
    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    fn metered_stream<T: Send + 'static>(
        &self,
        op: StoreOp,
        per_item: bool,
        inner: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        if !per_item {
            self.metrics
                .requests
                .with_label_values(&[op.as_str()])
                .inc();
        }
        MeteredStream {
            inner,
            metrics: Arc::clone(&self.metrics),
            op,
            per_item,
            started: None,
            done: false,
        }
        .boxed()
    }
}

impl fmt::Display for MetricsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetricsStore({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for MetricsStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let len = payload.content_length() as u64;
        let request = self.metrics.begin(StoreOp::Put);
        let result = self.inner.put_opts(location, payload, opts).await;
        request.finish(&result);
        if result.is_ok() {
            self.metrics.add_written(StoreOp::Put, len);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let request = self.metrics.begin(StoreOp::PutMultipart);
        let result = self.inner.put_multipart_opts(location, opts).await;
        request.finish(&result);
        Ok(Box::new(MeteredUpload {
            inner: result?,
            metrics: Arc::clone(&self.metrics),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = StoreOp::of_get(&options);
        let request = self.metrics.begin(op);
        let result = self.inner.get_opts(location, options).await;
        request.finish(&result);
        let result = result?;
        let payload = match result.payload {
            GetResultPayload::Stream(inner) => GetResultPayload::Stream(
                CountedBody {
                    inner,
                    metrics: Arc::clone(&self.metrics),
                    op,
                }
                .boxed(),
            ),
            other => {
                self.metrics
                    .add_read(op, result.range.end.saturating_sub(result.range.start));
                other
            }
        };
        Ok(GetResult { payload, ..result })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let request = self.metrics.begin(StoreOp::GetRange);
        let result = self.inner.get_ranges(location, ranges).await;
        request.finish(&result);
        let parts = result?;
        let len: usize = parts.iter().map(Bytes::len).sum();
        self.metrics.add_read(StoreOp::GetRange, len as u64);
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stream = self.inner.delete_stream(locations);
        self.metered_stream(StoreOp::Delete, true, stream)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stream = self.inner.list(prefix);
        self.metered_stream(StoreOp::List, false, stream)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stream = self.inner.list_with_offset(prefix, offset);
        self.metered_stream(StoreOp::List, false, stream)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let request = self.metrics.begin(StoreOp::List);
        let result = self.inner.list_with_delimiter(prefix).await;
        request.finish(&result);
        result
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let request = self.metrics.begin(StoreOp::Copy);
        let result = self.inner.copy_opts(from, to, options).await;
        request.finish(&result);
        result
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let request = self.metrics.begin(StoreOp::Rename);
        let result = self.inner.rename_opts(from, to, options).await;
        request.finish(&result);
        result
    }
}

/// A multipart upload whose parts, completion and abort are each one `put_multipart` request.
#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: Arc<StoreMetrics>,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let part = self.inner.put_part(data);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let request = metrics.begin(StoreOp::PutMultipart);
            let result = part.await;
            request.finish(&result);
            if result.is_ok() {
                metrics.add_written(StoreOp::PutMultipart, len);
            }
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let request = self.metrics.begin(StoreOp::PutMultipart);
        let result = self.inner.complete().await;
        request.finish(&result);
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let request = self.metrics.begin(StoreOp::PutMultipart);
        let result = self.inner.abort().await;
        request.finish(&result);
        result
    }
}

/// A `get` payload that counts bytes as they flow to the caller.
struct CountedBody {
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    metrics: Arc<StoreMetrics>,
    op: StoreOp,
}

impl Stream for CountedBody {
    type Item = object_store::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        match &item {
            Poll::Ready(Some(Ok(chunk))) => self.metrics.add_read(self.op, chunk.len() as u64),
            Poll::Ready(Some(Err(e))) => self.metrics.record_error(self.op, e),
            Poll::Ready(None) | Poll::Pending => {}
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A metered listing (`per_item == false`: one request, timed from the first poll to the
/// end of the stream or its drop) or delete stream (`per_item == true`: one request per
/// item, each timed from when the caller started waiting for it).
struct MeteredStream<T> {
    inner: BoxStream<'static, object_store::Result<T>>,
    metrics: Arc<StoreMetrics>,
    op: StoreOp,
    per_item: bool,
    started: Option<Instant>,
    done: bool,
}

impl<T> Stream for MeteredStream<T> {
    type Item = object_store::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        let item = this.inner.poll_next_unpin(cx);
        match &item {
            Poll::Pending => {}
            Poll::Ready(Some(result)) => {
                if let Err(e) = result {
                    this.metrics.record_error(this.op, e);
                }
                if this.per_item {
                    this.metrics
                        .requests
                        .with_label_values(&[this.op.as_str()])
                        .inc();
                    this.metrics.observe(this.op, started);
                    this.started = None;
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                if !this.per_item {
                    this.metrics.observe(this.op, started);
                }
            }
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            self.inner.size_hint()
        }
    }
}

impl<T> Drop for MeteredStream<T> {
    fn drop(&mut self) {
        // A listing the caller stops early still took this long.
        if !self.per_item
            && !self.done
            && let Some(started) = self.started
        {
            self.metrics.observe(self.op, started);
        }
    }
}
