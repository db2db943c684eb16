//! The ingest crate's error type.

/// Result alias for ingest operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a write or read failed. Each variant maps to one gRPC status in the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: schema mismatch, missing time column, nulls in it, oversized batch, bad JSON.
    #[error("{0}")]
    InvalidInput(String),
    #[error("table `{0}` does not exist (auto-create is disabled; create it with CREATE TABLE)")]
    TableNotFound(String),
    /// Memory limits reached; the client should retry later.
    #[error("{0}")]
    Backpressure(String),
    /// This node does not own the shard (routing is stale) or lost it to a newer writer.
    #[error("{0}")]
    NotOwner(String),
    /// The object store failed; nothing was acknowledged.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("the ingest node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Storage(#[from] strata_storage::Error),
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::Unavailable(e.to_string())
    }
}
