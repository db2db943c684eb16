//! [`RetryStore`]: retries transient failures with capped exponential backoff and full jitter.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{StoreMetrics, StoreOp, lock};

/// Locations sent to the inner `delete_stream` at once (S3's `DeleteObjects` limit).
const DELETE_CHUNK: usize = 1000;

/// How [`RetryStore`] retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 0 is treated as 1 (no retries). Default: 5.
    pub max_attempts: u32,
    /// Backoff cap before the first retry; it doubles for each further retry. Default: 20ms.
    pub base: Duration,
    /// Largest backoff. Default: 2s.
    pub max_backoff: Duration,
    /// Seed of the jitter RNG, for reproducible runs; `None` seeds from the OS. Default: None.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            seed: None,
        }
    }
}

/// The sleep before retry number `attempt` (0 for the first retry): "full jitter", uniform
/// in `[0, min(max_backoff, base * 2^attempt))`; zero when that bound is zero.
pub fn backoff<R: Rng>(attempt: u32, policy: &RetryPolicy, rng: &mut R) -> Duration {
    let cap = 2u32
        .checked_pow(attempt)
        .and_then(|factor| policy.base.checked_mul(factor))
        .map_or(policy.max_backoff, |d| d.min(policy.max_backoff));
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..nanos))
}

/// Whether `err` may go away on retry.
///
/// Definite answers (`NotFound`, `Precondition`, `AlreadyExists`, `NotModified`) and errors
/// of configuration, permission or input are not; `Generic` (network, 5xx, timeouts) and
/// anything else are.
pub fn is_retryable(err: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        err,
        E::Precondition { .. }
            | E::AlreadyExists { .. }
            | E::NotFound { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

/// Retries requests to the inner store that fail with a transient error
/// ([`is_retryable`]), sleeping [`backoff`] between attempts, up to
/// [`RetryPolicy::max_attempts`] attempts.
///
/// - When the attempts run out the last error is returned inside
///   `Error::Generic { store: "retry", .. }`, whose message names the attempts.
/// - A put, copy or rename whose retry answers `AlreadyExists`, `Precondition` or
///   `NotFound` returns that error, with the same variant, and a note that an earlier
///   attempt may have been applied: a conditional write retried after a lost response can
///   meet its own first write, and only the caller (re-reading) can tell.
/// - `get_opts` retries the request, not a payload stream that fails midway.
/// - `list` retries only until the first item arrives: a listing that fails later is
///   returned failed, as resuming it could skip or repeat entries on unsorted stores.
/// - `delete_stream` sends locations in chunks and retries the locations of a chunk not
///   yet confirmed deleted (deletes are idempotent).
/// - `put_multipart_opts` retries creating the upload; parts are not retried here.
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    retrier: Retrier,
}

impl RetryStore {
    /// Wraps `inner`, retrying as `policy` says.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        let rng = match policy.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            inner,
            retrier: Retrier {
                policy,
                rng: Arc::new(Mutex::new(rng)),
                retries: Arc::new(AtomicU64::new(0)),
                metrics: None,
            },
        }
    }

    /// Also counts retries in `metrics` (`strata_object_store_retries_total{op}`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<StoreMetrics>) -> Self {
        self.retrier.metrics = Some(metrics);
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.retrier.policy
    }

    /// Retries made so far (attempts beyond the first of each request).
    pub fn retries(&self) -> u64 {
        self.retrier.retries.load(Ordering::Relaxed)
    }

    /// A stream whose creation is retried until it yields its first item.
    fn retry_stream<T: Send + 'static>(
        &self,
        op: StoreOp,
        path: String,
        make: impl Fn() -> BoxStream<'static, object_store::Result<T>> + Send + 'static,
    ) -> BoxStream<'static, object_store::Result<T>> {
        let retrier = self.retrier.clone();
        let started = async move {
            let max = retrier.max_attempts();
            let mut attempt = 1;
            loop {
                let mut attempt_stream = make();
                match attempt_stream.next().await {
                    Some(Err(e)) if is_retryable(&e) && attempt < max => {
                        retrier.pause(op, attempt, &e).await;
                        attempt += 1;
                    }
                    Some(Err(e)) if is_retryable(&e) && attempt > 1 => {
                        return stream::iter([Err(gave_up(op, &path, attempt, e))]).boxed();
                    }
                    Some(first) => return stream::iter([first]).chain(attempt_stream).boxed(),
                    None => return stream::empty().boxed(),
                }
            }
        };
        stream::once(started).flatten().boxed()
    }
}

impl fmt::Debug for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStore")
            .field("inner", &self.inner)
            .field("policy", &self.retrier.policy)
            .field("retries", &self.retries())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RetryStore(max_attempts={}, {})",
            self.retrier.policy.max_attempts, self.inner
        )
    }
}

/// The retry loop and its shared state; cloned into streams.
#[derive(Clone)]
struct Retrier {
    policy: RetryPolicy,
    rng: Arc<Mutex<StdRng>>,
    retries: Arc<AtomicU64>,
    metrics: Option<Arc<StoreMetrics>>,
}

impl Retrier {
    fn max_attempts(&self) -> u32 {
        self.policy.max_attempts.max(1)
    }

    /// Counts and sleeps before the retry that follows failed attempt number `attempt`.
    async fn pause(&self, op: StoreOp, attempt: u32, err: &object_store::Error) {
        let delay = backoff(attempt - 1, &self.policy, &mut *lock(&self.rng));
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.record_retry(op);
        }
        tracing::debug!(%op, attempt, ?delay, error = %err, "retrying object store request");
        tokio::time::sleep(delay).await;
    }

    /// Runs `call` until it succeeds, fails definitely, or the attempts run out.
    /// `mutating` marks requests that may have been applied despite a transient failure.
    async fn run<T, F, Fut>(
        &self,
        op: StoreOp,
        path: &(dyn fmt::Display + Sync),
        mutating: bool,
        mut call: F,
    ) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let max = self.max_attempts();
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if !is_retryable(&e) => {
                    return Err(if mutating && attempt > 1 {
                        note_ambiguous(e, attempt)
                    } else {
                        e
                    });
                }
                Err(e) if attempt >= max => {
                    return Err(if attempt > 1 {
                        gave_up(op, path, attempt, e)
                    } else {
                        e
                    });
                }
                Err(e) => {
                    self.pause(op, attempt, &e).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Deletes one chunk of locations, retrying those not yet confirmed deleted.
    async fn delete_chunk(
        &self,
        inner: Arc<dyn ObjectStore>,
        chunk: Vec<object_store::Result<Path>>,
    ) -> Vec<object_store::Result<Path>> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut pending = Vec::with_capacity(chunk.len());
        for item in chunk {
            match item {
                Ok(path) => pending.push(path),
                Err(e) => out.push(Err(e)),
            }
        }
        let max = self.max_attempts();
        let mut attempt = 1;
        while !pending.is_empty() {
            let input = stream::iter(pending.clone().into_iter().map(Ok)).boxed();
            let results: Vec<_> = inner.delete_stream(input).collect().await;
            let mut deleted = HashSet::new();
            let mut errors = Vec::new();
            for result in results {
                match result {
                    Ok(path) => {
                        deleted.insert(path.clone());
                        out.push(Ok(path));
                    }
                    Err(e) => errors.push(e),
                }
            }
            pending.retain(|path| !deleted.contains(path));
            let transient = errors.iter().find(|e| is_retryable(e));
            match transient {
                Some(e) if attempt < max && !pending.is_empty() => {
                    // The definite errors of this attempt belong to locations still pending:
                    // the next attempt reports them again.
                    self.pause(StoreOp::Delete, attempt, e).await;
                    attempt += 1;
                }
                _ => {
                    out.extend(errors.into_iter().map(Err));
                    break;
                }
            }
        }
        out
    }
}

/// The message of an error after the attempts ran out.
#[derive(Debug, thiserror::Error)]
#[error("{op} of '{path}' failed after {attempts} attempts: {source}")]
struct GaveUp {
    op: StoreOp,
    path: String,
    attempts: u32,
    source: object_store::Error,
}

fn gave_up(
    op: StoreOp,
    path: &(dyn fmt::Display + Sync),
    attempts: u32,
    last: object_store::Error,
) -> object_store::Error {
    object_store::Error::Generic {
        store: "retry",
        source: Box::new(GaveUp {
            op,
            path: path.to_string(),
            attempts,
            source: last,
        }),
    }
}

/// The note added to a definite answer met by a retried write.
#[derive(Debug, thiserror::Error)]
#[error(
    "{source} (on attempt {attempt}: an earlier attempt failed transiently and may have been \
     applied; re-read to learn the outcome)"
)]
struct Ambiguous {
    attempt: u32,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// Adds the [`Ambiguous`] note to a definite answer, keeping its variant and path.
fn note_ambiguous(err: object_store::Error, attempt: u32) -> object_store::Error {
    use object_store::Error as E;
    let note = |source| Box::new(Ambiguous { attempt, source });
    match err {
        E::AlreadyExists { path, source } => E::AlreadyExists {
            path,
            source: note(source),
        },
        E::Precondition { path, source } => E::Precondition {
            path,
            source: note(source),
        },
        E::NotFound { path, source } => E::NotFound {
            path,
            source: note(source),
        },
        other => other,
    }
}

fn prefix_string(prefix: Option<&Path>) -> String {
    prefix.map(Path::to_string).unwrap_or_default()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let inner = &self.inner;
        self.retrier
            .run(StoreOp::Put, location, true, || {
                inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = &self.inner;
        self.retrier
            .run(StoreOp::PutMultipart, location, false, || {
                inner.put_multipart_opts(location, opts.clone())
            })
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let inner = &self.inner;
        let op = StoreOp::of_get(&options);
        self.retrier
            .run(op, location, false, || {
                inner.get_opts(location, options.clone())
            })
            .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let inner = &self.inner;
        self.retrier
            .run(StoreOp::GetRange, location, false, || {
                inner.get_ranges(location, ranges)
            })
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let retrier = self.retrier.clone();
        locations
            .ready_chunks(DELETE_CHUNK)
            .then(move |chunk| {
                let (inner, retrier) = (Arc::clone(&inner), retrier.clone());
                async move { retrier.delete_chunk(inner, chunk).await }
            })
            .flat_map(stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        self.retry_stream(StoreOp::List, prefix_string(prefix.as_ref()), move || {
            inner.list(prefix.as_ref())
        })
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        self.retry_stream(StoreOp::List, prefix_string(prefix.as_ref()), move || {
            inner.list_with_offset(prefix.as_ref(), &offset)
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let inner = &self.inner;
        let path = prefix_string(prefix);
        self.retrier
            .run(StoreOp::List, &path, false, || {
                inner.list_with_delimiter(prefix)
            })
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let inner = &self.inner;
        let path = format!("{from} -> {to}");
        self.retrier
            .run(StoreOp::Copy, &path, true, || {
                inner.copy_opts(from, to, options.clone())
            })
            .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let inner = &self.inner;
        let path = format!("{from} -> {to}");
        self.retrier
            .run(StoreOp::Rename, &path, true, || {
                inner.rename_opts(from, to, options.clone())
            })
            .await
    }
}
