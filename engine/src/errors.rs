//! Mapping engine-side errors to the gateway's [`BackendError`] (which maps to gRPC status
//! in exactly one place, the gateway's `status` module).

use strata_gateway::{BackendError, ErrorKind};

pub fn from_ingest(e: strata_ingest::Error) -> BackendError {
    use strata_ingest::Error as E;
    let kind = match &e {
        E::InvalidInput(_) => ErrorKind::InvalidArgument,
        E::TableNotFound(_) => ErrorKind::NotFound,
        E::Backpressure(_) => ErrorKind::ResourceExhausted,
        E::NotOwner(_) => ErrorKind::Unavailable,
        E::WrongNode(_) => ErrorKind::FailedPrecondition,
        E::Unavailable(_) | E::OutcomeUnknown(_) | E::ShuttingDown => ErrorKind::Unavailable,
        E::Storage(s) => return from_storage(s),
        _ => ErrorKind::Internal,
    };
    let err = BackendError::new(kind, e.to_string());
    if kind == ErrorKind::ResourceExhausted {
        err.with_retry_after(std::time::Duration::from_millis(500))
    } else {
        err
    }
}

pub fn from_storage(e: &strata_storage::Error) -> BackendError {
    use strata_storage::Error as E;
    let kind = match e {
        E::InvalidInput(_) | E::Config(_) => ErrorKind::InvalidArgument,
        E::TableNotFound(_) => ErrorKind::NotFound,
        E::TableExists(_) => ErrorKind::AlreadyExists,
        E::Fenced { .. } => ErrorKind::Unavailable,
        E::CommitConflict { .. } => ErrorKind::Aborted,
        E::ObjectStore(_) | E::Unavailable(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    BackendError::new(kind, e.to_string())
}

pub fn from_compute(e: strata_compute::Error) -> BackendError {
    use strata_compute::ErrorKind as K;
    let kind = match e.kind() {
        K::InvalidArgument => ErrorKind::InvalidArgument,
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::ResourceExhausted => ErrorKind::ResourceExhausted,
        K::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        K::Unavailable => ErrorKind::Unavailable,
        K::Internal => ErrorKind::Internal,
    };
    BackendError::new(kind, e.to_string())
}
