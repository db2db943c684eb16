//! The one place where errors become gRPC statuses.
//!
//! Every failure the gateway reports — from a backend, from auth, from a quota, from a
//! malformed request — is first a [`BackendError`] and then goes through [`to_status`], so
//! the code a client sees for a kind of failure is the same on every call. Messages are
//! meant for users: they say what went wrong and what to do. They never contain tokens.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::backend::{BackendError, ErrorKind};

/// Metadata key (sent as a trailer, or a header in a trailers-only response) that tells a
/// client how many milliseconds to wait before retrying.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Maps a [`BackendError`] to a [`tonic::Status`]: the kind picks the code, the message is
/// kept, and `retry_after` becomes the `retry-after-ms` metadata value.
pub fn to_status(err: BackendError) -> Status {
    let code = match err.kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    };
    let mut status = Status::new(code, err.message);
    if let Some(after) = err.retry_after {
        status
            .metadata_mut()
            .insert(RETRY_AFTER_MS, MetadataValue::from(retry_after_ms(after)));
    }
    status
}

/// Whole milliseconds to wait, rounded up so that a client never retries too early.
pub(crate) fn retry_after_ms(after: Duration) -> u64 {
    let ms = after.as_millis();
    let rounded = if after > Duration::from_millis(ms as u64) {
        ms + 1
    } else {
        ms
    };
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// Shorthand for an INVALID_ARGUMENT status built through [`to_status`].
pub(crate) fn invalid_argument(message: impl Into<String>) -> Status {
    to_status(BackendError::new(ErrorKind::InvalidArgument, message))
}

/// Shorthand for an INTERNAL status built through [`to_status`] (bugs and encoding failures).
pub(crate) fn internal(message: impl Into<String>) -> Status {
    to_status(BackendError::new(ErrorKind::Internal, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code() {
        let cases = [
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::PermissionDenied, Code::PermissionDenied),
            (ErrorKind::Unauthenticated, Code::Unauthenticated),
            (ErrorKind::ResourceExhausted, Code::ResourceExhausted),
            (ErrorKind::DeadlineExceeded, Code::DeadlineExceeded),
            (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
            (ErrorKind::Aborted, Code::Aborted),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in cases {
            let status = to_status(BackendError::new(kind, "boom"));
            assert_eq!(status.code(), code, "{kind:?}");
            assert_eq!(status.message(), "boom");
            assert!(status.metadata().get(RETRY_AFTER_MS).is_none());
        }
    }

    #[test]
    fn retry_after_becomes_metadata_rounded_up() {
        let err = BackendError::new(ErrorKind::ResourceExhausted, "slow down")
            .with_retry_after(Duration::from_micros(1_500));
        let status = to_status(err);
        assert_eq!(status.code(), Code::ResourceExhausted);
        let value = status
            .metadata()
            .get(RETRY_AFTER_MS)
            .map(|v| v.to_str().ok());
        assert_eq!(value, Some(Some("2")));
        assert_eq!(retry_after_ms(Duration::from_millis(7)), 7);
    }
}
