//! The wire contract between the gateway and its nodes: header names, and the one function
//! that turns a node's `tonic::Status` back into a [`BackendError`].

use std::time::Duration;

use arrow_flight::error::FlightError;
use tonic::Code;

use crate::backend::{BackendError, ErrorKind};

/// Status metadata: milliseconds after which a retry may succeed (RESOURCE_EXHAUSTED,
/// UNAVAILABLE). Nodes set it from [`BackendError::retry_after`]; the gateway keeps it.
pub const RETRY_AFTER_MS_HEADER: &str = "retry-after-ms";
pub(crate) use crate::auth::CLUSTER_TOKEN_HEADER;
/// Request metadata: the tenant the gateway authenticated (node-to-node calls only), and
/// the cluster secret that lets nodes believe it.
pub use crate::auth::TENANT_HEADER;
/// Request metadata: the request id, for logs across gateway and nodes.
pub const REQUEST_ID_HEADER: &str = "x-strata-request-id";
/// Request metadata on writes: the idempotent producer's id.
pub const PRODUCER_ID_HEADER: &str = "x-strata-producer-id";
/// Request metadata on writes: the producer's sequence number.
pub const SEQUENCE_HEADER: &str = "x-strata-sequence";
/// Request metadata on writes: `durable` or `buffered`.
pub const DURABILITY_HEADER: &str = "x-strata-durability";
/// Request metadata on writes to tables without a shard key: the shard the gateway chose for
/// the rows (one the receiving node owns). Nodes may ignore it.
pub const SHARD_HEADER: &str = "x-strata-shard";
/// `DoAction` type of the health check every node answers.
pub const HEALTH_ACTION: &str = "strata.health";

/// Map a node's gRPC status to a [`BackendError`], keeping the message and the
/// `retry-after-ms` hint.
///
/// Transport failures (refused or reset connections, broken HTTP/2 streams) become
/// `Unavailable`, and a client-side timeout (tonic reports it as CANCELLED "Timeout expired")
/// becomes `DeadlineExceeded`, so both are retryable.
pub fn status_to_backend_error(status: &tonic::Status) -> BackendError {
    let message = status.message();
    let kind = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::Aborted => ErrorKind::Aborted,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::Cancelled if message.contains("Timeout expired") => ErrorKind::DeadlineExceeded,
        // A node that drops a stream (shutting down, connection lost) cancels it.
        Code::Cancelled => ErrorKind::Unavailable,
        Code::Unknown if is_transport_message(message) => ErrorKind::Unavailable,
        Code::Internal if is_transport_message(message) => ErrorKind::Unavailable,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented => {
            ErrorKind::Internal
        }
    };
    let message = match status.code() {
        Code::Unimplemented => format!(
            "the node does not implement this call ({message}); are the gateway and the node running the same version of Strata?"
        ),
        _ if message.is_empty() => {
            format!("the node failed with {:?} and no message", status.code())
        }
        _ => message.to_string(),
    };
    let mut err = BackendError::new(kind, message);
    if let Some(ms) = status
        .metadata()
        .get(RETRY_AFTER_MS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        err = err.with_retry_after(Duration::from_millis(ms));
    }
    err
}

fn is_transport_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "transport error",
        "h2 protocol error",
        "connection",
        "broken pipe",
        "tcp connect",
        "error trying to connect",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Map an error from the Flight client helpers (decoding, tonic) to a [`BackendError`].
pub(crate) fn flight_error_to_backend_error(err: FlightError) -> BackendError {
    match err {
        FlightError::Tonic(status) => status_to_backend_error(&status),
        FlightError::Arrow(e) => BackendError::new(
            ErrorKind::Internal,
            format!("bad Arrow data from the node: {e}"),
        ),
        FlightError::NotYetImplemented(m) => BackendError::new(ErrorKind::Internal, m),
        FlightError::ProtocolError(m) | FlightError::DecodeError(m) => BackendError::new(
            ErrorKind::Internal,
            format!("bad Flight message from the node: {m}"),
        ),
        FlightError::ExternalError(e) => BackendError::new(ErrorKind::Internal, e.to_string()),
    }
}

/// Say which node failed, for errors that are the node's fault rather than the request's.
pub(crate) fn with_node_context(mut err: BackendError, role: &str, addr: &str) -> BackendError {
    if matches!(
        err.kind,
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded | ErrorKind::Internal
    ) && !err.message.contains(addr)
    {
        err.message = format!("{role} node {addr}: {}", err.message);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_keep_retry_after() {
        let mut s = tonic::Status::unavailable("shard writer is restarting");
        s.metadata_mut().insert(
            RETRY_AFTER_MS_HEADER,
            tonic::metadata::MetadataValue::from_static("750"),
        );
        let e = status_to_backend_error(&s);
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.retry_after, Some(Duration::from_millis(750)));
        assert_eq!(e.message, "shard writer is restarting");

        let cases = [
            (
                tonic::Status::invalid_argument("bad sql"),
                ErrorKind::InvalidArgument,
            ),
            (tonic::Status::not_found("no table"), ErrorKind::NotFound),
            (
                tonic::Status::resource_exhausted("quota"),
                ErrorKind::ResourceExhausted,
            ),
            (
                tonic::Status::permission_denied("no"),
                ErrorKind::PermissionDenied,
            ),
            (
                tonic::Status::deadline_exceeded("slow"),
                ErrorKind::DeadlineExceeded,
            ),
            (
                tonic::Status::cancelled("Timeout expired"),
                ErrorKind::DeadlineExceeded,
            ),
            (
                tonic::Status::unknown("transport error"),
                ErrorKind::Unavailable,
            ),
            (
                tonic::Status::unknown("h2 protocol error: connection reset"),
                ErrorKind::Unavailable,
            ),
            (
                tonic::Status::unknown("panic in handler"),
                ErrorKind::Internal,
            ),
            (
                tonic::Status::unimplemented("do_exchange"),
                ErrorKind::Internal,
            ),
        ];
        for (status, kind) in cases {
            assert_eq!(status_to_backend_error(&status).kind, kind, "{status:?}");
        }
        assert!(
            status_to_backend_error(&tonic::Status::unimplemented("x"))
                .message
                .contains("same version")
        );
    }
}
