//! The compute crate's error type and its classification into a small [`ErrorKind`].
//!
//! DataFusion reports user mistakes (syntax, unknown columns, type errors), exhausted
//! memory and storage failures through one error type; [`Error::kind`] sorts them so the
//! gateway can map each to a gRPC status without knowing DataFusion.

use std::time::Duration;

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Result alias for the compute crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is; one gRPC status per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The query is wrong: syntax, unknown table or column, type mismatch, bad parameter.
    InvalidArgument,
    /// Something the query names does not exist (outside SQL planning).
    NotFound,
    /// The statement or table reference is not allowed on this endpoint.
    PermissionDenied,
    /// A memory limit or the concurrency cap was hit; retry later or with a smaller query.
    ResourceExhausted,
    /// The query ran longer than its deadline.
    DeadlineExceeded,
    /// The object store failed or could not be reached; retrying may help.
    Unavailable,
    /// A bug or corrupt data.
    Internal,
}

/// Everything that can go wrong while planning or running a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input is wrong; the message says what and where.
    #[error("{0}")]
    InvalidArgument(String),

    /// Refused by SQL confinement (DDL, DML, file paths, ...).
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// A resource limit was hit.
    #[error("resources exhausted: {0}")]
    ResourceExhausted(String),

    /// The query did not finish within its deadline.
    #[error("query exceeded its deadline of {0:?}; narrow the time range or raise the timeout")]
    DeadlineExceeded(Duration),

    /// The table does not exist.
    #[error("table `{0}` not found")]
    TableNotFound(String),

    /// A DataFusion error, classified once when it was converted.
    #[error("{message}")]
    Query {
        kind: ErrorKind,
        message: String,
        #[source]
        source: DataFusionError,
    },

    /// A storage-layer failure (manifest, WAL, object store).
    #[error("storage: {0}")]
    Storage(#[from] strata_storage::Error),

    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    /// The cache could not be opened or failed.
    #[error("cache: {0}")]
    Cache(String),

    /// The manifest a plan was built from is outdated (a WAL object it names is gone).
    /// The engine re-plans on a fresh manifest (up to 5 times) when it sees this.
    #[error("the manifest of table `{0}` changed while the query was planned; retry")]
    StaleManifest(String),

    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The kind of failure, for mapping to a wire status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::ResourceExhausted(_) => ErrorKind::ResourceExhausted,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::TableNotFound(_) => ErrorKind::NotFound,
            Error::Query { kind, .. } => *kind,
            Error::Storage(e) => storage_kind(e),
            Error::ObjectStore(_) | Error::StaleManifest(_) => ErrorKind::Unavailable,
            Error::Cache(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Wrap into a [`DataFusionError`] (for returning from DataFusion traits) such that
    /// converting back with `From` restores the same kind.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

fn storage_kind(e: &strata_storage::Error) -> ErrorKind {
    use strata_storage::Error as S;
    match e {
        S::TableNotFound(_) => ErrorKind::NotFound,
        S::InvalidInput(_) | S::Config(_) => ErrorKind::InvalidArgument,
        S::ObjectStore(_) | S::Unavailable(_) | S::CommitConflict { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // Our own errors travel through DataFusion as `External`: unwrap them unchanged.
        let e = match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(mine) => return *mine,
                Err(other) => DataFusionError::External(other),
            },
            other => other,
        };
        let kind = classify(&e);
        let mut message = e.strip_backtrace();
        // DataFusion's own memory errors name its settings, not ours.
        if kind == ErrorKind::ResourceExhausted && !message.contains("query.") {
            message.push_str(
                "; the query needs more memory than it may hold: raise \
                 query.memory_limit_bytes (per query) or query.node_memory_bytes (all queries \
                 of a node), or narrow the query",
            );
        }
        Error::Query {
            kind,
            message,
            source: e,
        }
    }
}

/// Sort a DataFusion error into a kind, looking through wrappers.
pub(crate) fn classify(e: &DataFusionError) -> ErrorKind {
    match e {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => ErrorKind::InvalidArgument,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourceExhausted,
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => ErrorKind::Unavailable,
        DataFusionError::ArrowError(a, _) => classify_arrow(a),
        DataFusionError::ParquetError(p) => match p.as_ref() {
            parquet::errors::ParquetError::External(inner) => classify_dyn(inner.as_ref()),
            _ => ErrorKind::Internal,
        },
        DataFusionError::External(inner) => classify_dyn(inner.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify(inner)
        }
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::Collection(all) => all.first().map_or(ErrorKind::Internal, classify),
        _ => ErrorKind::Internal,
    }
}

fn classify_arrow(a: &ArrowError) -> ErrorKind {
    match a {
        ArrowError::ExternalError(inner) => classify_dyn(inner.as_ref()),
        ArrowError::MemoryError(_) => ErrorKind::ResourceExhausted,
        ArrowError::IoError(..) => ErrorKind::Unavailable,
        ArrowError::DivideByZero
        | ArrowError::CastError(_)
        | ArrowError::ParseError(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::ComputeError(_)
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::SchemaError(_) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

fn classify_dyn(e: &(dyn std::error::Error + Send + Sync + 'static)) -> ErrorKind {
    if let Some(mine) = e.downcast_ref::<Error>() {
        mine.kind()
    } else if let Some(df) = e.downcast_ref::<DataFusionError>() {
        classify(df)
    } else if let Some(a) = e.downcast_ref::<ArrowError>() {
        classify_arrow(a)
    } else if e.downcast_ref::<object_store::Error>().is_some()
        || e.downcast_ref::<std::io::Error>().is_some()
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    }
}

/// True if `e` (or an error it wraps) says a plan's manifest was stale.
pub(crate) fn is_stale_manifest(e: &Error) -> bool {
    match e {
        Error::StaleManifest(_) => true,
        Error::Query { source, .. } => find_stale(source),
        _ => false,
    }
}

fn find_stale(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::External(inner) => {
            inner.downcast_ref::<Error>().is_some_and(is_stale_manifest)
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            find_stale(inner)
        }
        DataFusionError::Shared(inner) => find_stale(inner),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::ExternalError(inner) => {
                inner
                    .downcast_ref::<DataFusionError>()
                    .is_some_and(find_stale)
                    || inner.downcast_ref::<Error>().is_some_and(is_stale_manifest)
            }
            _ => false,
        },
        _ => false,
    }
}
