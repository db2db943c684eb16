//! Object-store decorators: behaviour composed around an `Arc<dyn ObjectStore>`.
//!
//! Every decorator wraps an inner `Arc<dyn ObjectStore>` and itself implements
//! [`ObjectStore`], so they stack like the decorators of `object_store` (`limit.rs`,
//! `throttle.rs`) and SlateDB:
//!
//! - [`RetryStore`]: retries transient failures with capped exponential backoff and full
//!   jitter. Never retries definite answers (`NotFound`, `Precondition`, `AlreadyExists`, …).
//! - [`MetricsStore`]: counts requests, errors and bytes and times each request, into a
//!   Prometheus registry ([`StoreMetrics`]).
//! - [`TimeoutStore`]: bounds each request; for streams it bounds the wait for every item.
//! - [`FaultStore`]: deterministic fault injection (errors, latency, outages, lost responses
//!   after an applied put) for tests; never part of a production stack.
//!
//! # The production stack
//!
//! [`layered`] builds, from the outside in:
//!
//! ```text
//! caller ─▶ RetryStore ─▶ MetricsStore ─▶ TimeoutStore ─▶ backend (S3 / local / memory)
//! ```
//!
//! - Retry is outermost, so every attempt passes through the layers below it: each attempt
//!   gets its own timeout, and each attempt is one request in the metrics.
//! - Metrics sit above the timeout, so a request cut off by the timeout is recorded as an
//!   error of kind `timeout` with its real duration, rather than vanishing. A request the
//!   caller abandons (its future dropped) is recorded with kind `cancelled`.
//! - Retries themselves are counted in `strata_object_store_retries_total`.
//!
//! # Conditional writes
//!
//! A `PutMode::Create` (If-None-Match) or `PutMode::Update` (If-Match) put that fails
//! transiently may still have been applied. When its retry then answers `AlreadyExists` or
//! `Precondition`, that error is returned as is (with a note in its message): the caller, e.g.
//! a manifest commit, must re-read to learn whether its own write won.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use object_store::{GetOptions, ObjectStore};

mod fault;
mod metrics;
mod retry;
mod timeout;

#[cfg(test)]
mod tests;

pub use fault::{FaultConfig, FaultCounts, FaultStore};
pub use metrics::{
    BYTES_TOTAL, ERRORS_TOTAL, MetricsStore, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL,
    RETRIES_TOTAL, StoreMetrics,
};
pub use retry::{RetryPolicy, RetryStore, backoff, is_retryable};
pub use timeout::TimeoutStore;

/// The kinds of object-store request the decorators tell apart (the `op` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// A whole-object read.
    Get,
    /// A ranged read (`get_range`, `get_ranges`, or `get_opts` with a range).
    GetRange,
    /// A metadata-only read.
    Head,
    /// A single-request write.
    Put,
    /// A multipart upload: its creation, each part, and its completion.
    PutMultipart,
    /// A listing (`list`, `list_with_offset`, `list_with_delimiter`).
    List,
    /// A delete (one per location of `delete_stream`).
    Delete,
    /// A server-side copy.
    Copy,
    /// A rename (a copy and a delete on stores without a native rename).
    Rename,
}

impl StoreOp {
    /// Every operation, in label order.
    pub const ALL: [Self; 9] = [
        Self::Get,
        Self::GetRange,
        Self::Head,
        Self::Put,
        Self::PutMultipart,
        Self::List,
        Self::Delete,
        Self::Copy,
        Self::Rename,
    ];

    /// The label value used in metrics and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::GetRange => "get_range",
            Self::Head => "head",
            Self::Put => "put",
            Self::PutMultipart => "put_multipart",
            Self::List => "list",
            Self::Delete => "delete",
            Self::Copy => "copy",
            Self::Rename => "rename",
        }
    }

    /// Which kind of read a `get_opts` call with these options is.
    pub(crate) fn of_get(options: &GetOptions) -> Self {
        if options.head {
            Self::Head
        } else if options.range.is_some() {
            Self::GetRange
        } else {
            Self::Get
        }
    }

    /// Position in [`StoreOp::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the production decorator stack built by [`layered`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerOptions {
    /// Bound on each request attempt (and on the wait for each item of a stream).
    /// Default: 30s.
    pub timeout: Duration,
    /// How transient failures are retried. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// Wraps `inner` in the production stack `RetryStore(MetricsStore(TimeoutStore(inner)))`.
///
/// - The timeout is innermost, so it bounds each attempt rather than the whole retried call.
/// - Metrics sit above the timeout and below retry: every physical attempt is counted once,
///   and a timed-out attempt shows up as an error of kind `timeout`.
/// - Retry is outermost; it also reports its retries to the returned [`StoreMetrics`].
///
/// The metrics are registered in `registry`; this fails if they are already registered there
/// (build one stack per registry, or share the returned `StoreMetrics`).
pub fn layered(
    inner: Arc<dyn ObjectStore>,
    opts: &LayerOptions,
    registry: &prometheus::Registry,
) -> Result<(Arc<dyn ObjectStore>, Arc<StoreMetrics>), prometheus::Error> {
    let metrics = Arc::new(StoreMetrics::new(registry)?);
    let timed: Arc<dyn ObjectStore> = Arc::new(TimeoutStore::new(inner, opts.timeout));
    let metered: Arc<dyn ObjectStore> = Arc::new(MetricsStore::new(timed, Arc::clone(&metrics)));
    let retried = RetryStore::new(metered, opts.retry.clone()).with_metrics(Arc::clone(&metrics));
    Ok((Arc::new(retried), metrics))
}

/// Locks `mutex`, ignoring poisoning: the guarded RNGs stay valid whatever a panicking
/// holder was doing.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
