//! gRPC request metrics: a counter by method and status code and a latency histogram by
//! method. Streaming calls are timed to the end of their response stream; a stream the
//! client drops early counts as CANCELLED.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tonic::{Code, Status};

/// Name of the request counter.
pub const GRPC_REQUESTS_TOTAL: &str = "strata_grpc_requests_total";
/// Name of the latency histogram.
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "strata_grpc_request_duration_seconds";

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The gateway's gRPC metrics, registered in a caller-supplied registry.
#[derive(Clone)]
pub struct GrpcMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl std::fmt::Debug for GrpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcMetrics")
    }
}

impl GrpcMetrics {
    /// Creates and registers `strata_grpc_requests_total{method,code}` and
    /// `strata_grpc_request_duration_seconds{method}`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                GRPC_REQUESTS_TOTAL,
                "gRPC requests by method and status code",
            ),
            &["method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                GRPC_REQUEST_DURATION_SECONDS,
                "gRPC request latency in seconds, to the end of the response stream",
            )
            .buckets(BUCKETS.to_vec()),
            &["method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner { requests, duration }),
        })
    }

    /// Starts timing one call of `method`.
    pub(crate) fn start(&self, method: &'static str) -> Observation {
        Observation {
            metrics: Some(self.clone()),
            method,
            start: Instant::now(),
        }
    }

    fn record(&self, method: &'static str, code: Code, start: Instant) {
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        if code == Code::Ok {
            tracing::debug!(method, code = code_name(code), elapsed_ms, "call finished");
        } else {
            tracing::info!(method, code = code_name(code), elapsed_ms, "call failed");
        }
        self.inner
            .requests
            .with_label_values(&[method, code_name(code)])
            .inc();
        self.inner
            .duration
            .with_label_values(&[method])
            .observe(start.elapsed().as_secs_f64());
    }
}

/// One call being timed; records once, on [`Observation::finish`] or on drop (CANCELLED).
pub(crate) struct Observation {
    metrics: Option<GrpcMetrics>,
    method: &'static str,
    start: Instant,
}

impl Observation {
    /// A no-op observation (metrics disabled).
    pub(crate) fn none() -> Self {
        Self {
            metrics: None,
            method: "",
            start: Instant::now(),
        }
    }

    pub(crate) fn finish(&mut self, code: Code) {
        if let Some(m) = self.metrics.take() {
            m.record(self.method, code, self.start);
        }
    }

    /// Wraps a response stream so the call is recorded when the stream ends.
    pub(crate) fn stream<S, T>(self, inner: S) -> MeteredStream<S>
    where
        S: Stream<Item = Result<T, Status>> + Unpin,
    {
        MeteredStream {
            inner,
            observation: self,
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response stream that records its call's outcome: the first error's code, OK at the end,
/// CANCELLED when dropped before either.
pub(crate) struct MeteredStream<S> {
    inner: S,
    observation: Observation,
}

impl<S, T> Stream for MeteredStream<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = Pin::new(&mut this.inner).poll_next(cx);
        match &item {
            Poll::Ready(Some(Err(status))) => this.observation.finish(status.code()),
            Poll::Ready(None) => this.observation.finish(Code::Ok),
            _ => {}
        }
        item
    }
}

/// Canonical upper-case gRPC code names, as other gRPC metrics use.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn records_unary_and_streaming_outcomes() {
        let registry = Registry::new();
        let m = GrpcMetrics::register(&registry).expect("register");
        m.start("GetFlightInfo").finish(Code::NotFound);
        let ok: Vec<_> = m
            .start("DoGet")
            .stream(futures::stream::iter(vec![Ok::<_, Status>(1), Ok(2)]))
            .collect()
            .await;
        assert_eq!(ok.len(), 2);
        drop(m.start("DoPut"));
        let count =
            |method: &str, code: &str| m.inner.requests.with_label_values(&[method, code]).get();
        assert_eq!(count("GetFlightInfo", "NOT_FOUND"), 1);
        assert_eq!(count("DoGet", "OK"), 1);
        assert_eq!(count("DoPut", "CANCELLED"), 1);
        assert_eq!(count("DoGet", "CANCELLED"), 0, "recorded once");
        let families = registry.gather();
        assert!(
            families
                .iter()
                .any(|f| f.name() == GRPC_REQUEST_DURATION_SECONDS)
        );
    }
}
