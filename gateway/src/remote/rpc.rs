//! Pieces shared by the query and ingest clients: request metadata, deadlines, attempt
//! bookkeeping, Flight decoding and the stream wrapper that holds a node's in-flight slot.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor, Ticket};
use futures::{StreamExt, TryStreamExt};
use tokio::time::Instant;
use tonic::metadata::AsciiMetadataValue;

use super::error::{
    REQUEST_ID_HEADER, TENANT_HEADER, flight_error_to_backend_error, status_to_backend_error,
    with_node_context,
};
use super::pool::{InFlight, Node, NodeClient, NodeLease, NodePool, Outcome};
use super::retry::AttemptError;
use crate::backend::{BackendError, BatchStream, Caller, CostSink, ErrorKind};

/// The deadline of a request that allows `timeout`.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// Time left before `deadline`, or DEADLINE_EXCEEDED when none is.
pub(crate) fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, BackendError> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(BackendError::new(
                    ErrorKind::DeadlineExceeded,
                    "the request's deadline passed before a node could answer; allow more time",
                ))
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// Insert an ASCII header; values a client can influence are checked, never unwrapped.
pub(crate) fn insert_header<T>(
    req: &mut tonic::Request<T>,
    name: &'static str,
    value: &str,
) -> Result<(), BackendError> {
    let v = AsciiMetadataValue::try_from(value).map_err(|_| {
        BackendError::new(
            ErrorKind::InvalidArgument,
            format!("`{value}` cannot be sent as {name}: use printable ASCII characters only"),
        )
    })?;
    req.metadata_mut().insert(name, v);
    Ok(())
}

/// A request to a node carrying the caller's tenant and request id, with `grpc-timeout` set
/// to the time left before the deadline.
pub(crate) fn request<T>(
    msg: T,
    caller: &Caller,
    deadline: Option<Instant>,
) -> Result<tonic::Request<T>, BackendError> {
    let mut req = tonic::Request::new(msg);
    if let Some(tenant) = &caller.tenant {
        insert_header(&mut req, TENANT_HEADER, tenant)?;
    }
    if !caller.request_id.is_empty() {
        insert_header(&mut req, REQUEST_ID_HEADER, &caller.request_id)?;
        // The name the Flight front end reads from clients, so node logs carry the same id.
        insert_header(&mut req, "x-request-id", &caller.request_id)?;
    }
    if let Some(left) = remaining(deadline)? {
        req.set_timeout(left);
    }
    Ok(req)
}

/// Wait for `fut`, but not past `deadline` nor longer than `cap`.
pub(crate) async fn bounded<T>(
    deadline: Option<Instant>,
    cap: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let caller_left = remaining(deadline)?;
    let limit = caller_left.map_or(cap, |left| left.min(cap));
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) if caller_left.is_some_and(|left| left <= cap) => Err(BackendError::new(
            ErrorKind::DeadlineExceeded,
            format!("the request's deadline passed while waiting for {what}"),
        )),
        Err(_) => Err(BackendError::new(
            ErrorKind::DeadlineExceeded,
            format!("no {what} within {} ms (request_timeout)", cap.as_millis()),
        )),
    }
}

/// Whose fault a failed attempt was.
pub(crate) fn classify(err: &BackendError, caller_out_of_time: bool) -> Outcome {
    match err.kind {
        ErrorKind::DeadlineExceeded if caller_out_of_time => Outcome::Abandoned,
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => Outcome::NodeFault,
        _ => Outcome::Answered,
    }
}

/// Record an attempt's outcome on its node (breaker, health, metrics) and decide whether a
/// retry may help. On success the node's in-flight slot is handed back to the caller.
pub(crate) fn settle<T>(
    pool: &NodePool,
    op: &'static str,
    lease: NodeLease,
    result: Result<T, BackendError>,
    deadline: Option<Instant>,
) -> Result<(T, InFlight), AttemptError> {
    pool.metrics()
        .observe_attempt(pool.role(), op, lease.elapsed().as_secs_f64());
    match result {
        Ok(v) => Ok((v, lease.answered())),
        Err(e) => {
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            let outcome = classify(&e, out_of_time);
            let e = with_node_context(e, pool.role().as_str(), &lease.node().addr);
            lease.failed(&e, outcome);
            let retry = e.is_retryable() && !out_of_time;
            let mut e = e;
            if e.is_retryable() && out_of_time {
                // Retryable, but the deadline passed while it ran: say why it was not.
                e.message.push_str(
                    " (the request's deadline passed during this attempt: no time to retry)",
                );
            }
            Err(AttemptError { error: e, retry })
        }
    }
}

pub(crate) fn status_err(s: tonic::Status) -> BackendError {
    status_to_backend_error(&s)
}

/// Decode a schema in Flight's IPC form; `None` when the node sent none.
pub(crate) fn decode_schema(bytes: &[u8]) -> Result<Option<SchemaRef>, BackendError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    arrow::ipc::convert::try_schema_from_ipc_buffer(bytes)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| {
            BackendError::new(
                ErrorKind::Internal,
                format!("the node sent a schema that does not decode: {e}"),
            )
        })
}

/// Encode batches as Flight data, the descriptor on the first message.
pub(crate) async fn encode(
    descriptor: FlightDescriptor,
    batches: Vec<RecordBatch>,
) -> Result<Vec<FlightData>, BackendError> {
    FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .try_collect()
        .await
        .map_err(|e| {
            BackendError::new(
                ErrorKind::InvalidArgument,
                format!("cannot encode the batches for a node: {e}"),
            )
        })
}

/// Open a `DoGet` stream of record batches.
pub(crate) async fn do_get(
    client: &mut NodeClient,
    ticket: Ticket,
    caller: &Caller,
    deadline: Option<Instant>,
) -> Result<FlightRecordBatchStream, BackendError> {
    do_get_with_cost(client, ticket, caller, deadline, None).await
}

/// [`do_get`], passing the node's final cost metadata (`{"strata_cost": …}`) to `cost`.
pub(crate) async fn do_get_with_cost(
    client: &mut NodeClient,
    ticket: Ticket,
    caller: &Caller,
    deadline: Option<Instant>,
    cost: Option<CostSink>,
) -> Result<FlightRecordBatchStream, BackendError> {
    let req = request(ticket, caller, deadline)?;
    let stream = client.do_get(req).await.map_err(status_err)?.into_inner();
    let stream = stream.inspect_ok(move |d| {
        if let Some(sink) = &cost
            && !d.app_metadata.is_empty()
            && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&d.app_metadata)
            && let Some(c) = v.get_mut(crate::flight::COST_METADATA_KEY)
        {
            sink.set(c.take());
        }
    });
    Ok(FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(|s| FlightError::Tonic(Box::new(s))),
    ))
}

/// Wait for the first batch of a result (bounded), so a failure before any data reaches the
/// caller can still be retried on another node. Returns the schema the stream announced and
/// the whole stream, the peeked batch first.
pub(crate) async fn peek_first(
    mut stream: FlightRecordBatchStream,
    deadline: Option<Instant>,
    cap: Duration,
) -> Result<(Option<SchemaRef>, BatchStream), BackendError> {
    let first = bounded(deadline, cap, "the first batch", async {
        stream
            .next()
            .await
            .transpose()
            .map_err(flight_error_to_backend_error)
    })
    .await?;
    let schema = stream
        .schema()
        .cloned()
        .or_else(|| first.as_ref().map(|b| b.schema()));
    let rest = stream.map_err(flight_error_to_backend_error);
    let out: BatchStream = match first {
        Some(b) => Box::pin(futures::stream::once(async move { Ok(b) }).chain(rest)),
        None => Box::pin(futures::stream::empty()),
    };
    Ok((schema, out))
}

/// The stream handed to the caller: holds the node's in-flight slot until dropped, enforces
/// the deadline between batches, names the node in errors and takes a node that fails
/// mid-stream with UNAVAILABLE out of rotation. Errors after data was delivered end the
/// stream (no retry: the caller has seen part of the result).
pub(crate) fn guarded(
    inner: BatchStream,
    guard: InFlight,
    deadline: Option<Instant>,
) -> BatchStream {
    struct State {
        inner: BatchStream,
        guard: InFlight,
        deadline: Option<Instant>,
    }
    let state = State {
        inner,
        guard,
        deadline,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        let next = match st.deadline {
            Some(d) => match tokio::time::timeout_at(d, st.inner.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let e = BackendError::new(
                        ErrorKind::DeadlineExceeded,
                        "the request's deadline passed while its result was streaming",
                    );
                    return Some((Err(e), None));
                }
            },
            None => st.inner.next().await,
        };
        match next {
            None => None,
            Some(Ok(batch)) => Some((Ok(batch), Some(st))),
            Some(Err(e)) => {
                let node: &Node = st.guard.node();
                let e = with_node_context(e, node.role.as_str(), &node.addr);
                if e.kind == ErrorKind::Unavailable {
                    node.mark_down(&e.message);
                }
                Some((Err(e), None))
            }
        }
    }))
}

/// An empty schema, for results a node described without one.
pub(crate) fn empty_schema() -> SchemaRef {
    Arc::new(Schema::empty())
}
