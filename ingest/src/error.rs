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
    /// The write was sent to a node that does not own the shard it must go to; the sender
    /// must route it again (the gateway does, with a fresh table layout).
    #[error("{0}")]
    WrongNode(String),
    /// The object store failed; nothing of the write was stored.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The write may or may not have been stored (the object store did not answer, or the
    /// shard writer stopped before it could say). A retry with the same producer id and
    /// sequence applies it exactly once.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
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
