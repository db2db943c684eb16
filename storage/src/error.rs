//! The storage crate's error type.

use std::time::Duration;

/// Result alias for storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage layer.
///
/// Variants are chosen so the gateway can map each to a precise gRPC status without
/// inspecting messages: `InvalidInput` → INVALID_ARGUMENT, `TableNotFound` → NOT_FOUND,
/// `Fenced`/`CommitConflict` → ABORTED, `ObjectStore`/`Unavailable` → UNAVAILABLE.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is wrong; the message says how to fix it.
    #[error("configuration error: {0}")]
    Config(String),

    /// The object store does not honour conditional writes, so commits would be unsafe.
    #[error(
        "the object store at {url} does not honour conditional writes ({detail}); Strata needs \
         If-None-Match/If-Match support (MinIO, AWS S3, SeaweedFS, a local folder)"
    )]
    ConditionalWritesUnsupported { url: String, detail: String },

    /// A request to the object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    /// The object store could not be reached or set up.
    #[error("object store unavailable: {0}")]
    Unavailable(String),

    #[error("table `{0}` not found")]
    TableNotFound(String),

    #[error("table `{0}` already exists")]
    TableExists(String),

    /// Caller input is invalid (bad schema, bad name, missing time column, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// A writer's epoch was superseded by a newer writer for the same shard.
    #[error(
        "writer for table `{table}` shard {shard} is fenced: its epoch {epoch} was superseded by epoch {current}"
    )]
    Fenced {
        table: String,
        shard: u32,
        epoch: u64,
        current: u64,
    },

    /// A flush found that the manifest already holds some of the WAL entries it was about
    /// to commit (an earlier commit of this writer whose response was lost did land).
    #[error(
        "table `{table}` shard {shard}: WAL entries below {flushed_wal_seq} are already in a \
         committed segment"
    )]
    AlreadyFlushed {
        table: String,
        shard: u32,
        flushed_wal_seq: u64,
    },

    /// A manifest commit kept losing races and gave up.
    #[error(
        "commit to table `{table}` failed after {attempts} attempts over {elapsed:?}: too much contention"
    )]
    CommitConflict {
        table: String,
        attempts: u32,
        elapsed: Duration,
    },

    /// The manifest or a segment could not be decoded: the bucket holds something unexpected.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },

    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// True when retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ObjectStore(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::InvalidPath { .. }
            ),
            Error::Unavailable(_) | Error::CommitConflict { .. } => true,
            _ => false,
        }
    }
}
