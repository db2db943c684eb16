//! What the gateway serves from: a query backend and an ingest backend.
//!
//! The gateway knows nothing of Parquet or DataFusion. In `strata serve` and on a compute
//! or ingest node, the engine crate implements these traits over the local engine; on the
//! gateway role they are implemented by [`crate::remote`] clients that route to nodes with
//! pooling, load balancing, retries and circuit breakers. The Flight SQL service is the
//! same code in every case.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::Stream;
use parking_lot::Mutex;

/// A stream of record batches (results, log records).
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, BackendError>> + Send>>;

/// Error kinds a backend reports; each maps to one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    DeadlineExceeded,
    FailedPrecondition,
    Aborted,
    Unavailable,
    Internal,
}

/// An error with a user-facing message that says what went wrong and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
    /// Hint for RESOURCE_EXHAUSTED / UNAVAILABLE: when a retry may succeed.
    pub retry_after: Option<Duration>,
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// True when the same request may succeed on another node or later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unavailable | ErrorKind::DeadlineExceeded
        )
    }
}

/// Who is asking. `tenant` scopes every table name; `None` is the default tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Caller {
    pub tenant: Option<String>,
    pub request_id: String,
}

/// A SQL statement to run.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub caller: Caller,
    pub sql: String,
    /// Values for `$1`, `$2`, … placeholders: one row, one column per parameter.
    pub params: Option<RecordBatch>,
    /// Time left for the whole request (deadline propagation).
    pub timeout: Option<Duration>,
    /// Where the backend leaves what the query cost, once its stream has ended; `None`
    /// when the caller does not want it.
    pub cost: Option<CostSink>,
}

/// What a query cost (object-store requests and bytes, cache tiers, pruning, rows, time),
/// as the JSON object the engine reports; a backend sets it when the result stream ends.
/// Cheap to clone; clones share the value.
#[derive(Debug, Clone, Default)]
pub struct CostSink(Arc<Mutex<Option<serde_json::Value>>>);

impl CostSink {
    pub fn set(&self, cost: serde_json::Value) {
        *self.0.lock() = Some(cost);
    }

    pub fn get(&self) -> Option<serde_json::Value> {
        self.0.lock().clone()
    }

    /// The costs of several runs of one statement (a prepared statement executed once per
    /// parameter row) as one: numbers added key by key, other values from the first run
    /// that has them, runs the result cache answered counted in `result_cache_runs`; `None`
    /// when no run reported.
    pub fn sum(sinks: &[CostSink]) -> Option<serde_json::Value> {
        let mut total = serde_json::Map::new();
        let mut any = false;
        let mut cached = 0u64;
        for cost in sinks.iter().filter_map(CostSink::get) {
            let serde_json::Value::Object(fields) = cost else {
                continue;
            };
            any = true;
            // A run the result cache answered read nothing: counted, not merged.
            if fields.contains_key("result_cache") {
                cached += 1;
                continue;
            }
            for (k, v) in fields {
                let merged = match (total.get(&k), &v) {
                    (Some(a), b) if a.is_u64() && b.is_u64() => serde_json::Value::from(
                        a.as_u64()
                            .unwrap_or(0)
                            .saturating_add(b.as_u64().unwrap_or(0)),
                    ),
                    (Some(a), b) if a.is_number() && b.is_number() => serde_json::Value::from(
                        a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0),
                    ),
                    (Some(a), _) => a.clone(),
                    (None, _) => v,
                };
                total.insert(k, merged);
            }
        }
        if cached > 0 {
            total.insert("result_cache_runs".into(), cached.into());
        }
        any.then_some(serde_json::Value::Object(total))
    }
}

/// How durable a write must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged once buffered in the shard writer's memory; a crash may lose it.
    Buffered,
    /// Acknowledged once its WAL entry is in the object store (survives losing the node).
    #[default]
    Durable,
}

impl std::str::FromStr for Durability {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "buffered" => Ok(Durability::Buffered),
            "durable" | "" => Ok(Durability::Durable),
            other => Err(BackendError::new(
                ErrorKind::InvalidArgument,
                format!("unknown durability `{other}`: use `durable` (default) or `buffered`"),
            )),
        }
    }
}

/// Rows to append to a table.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub caller: Caller,
    pub table: String,
    pub batches: Vec<RecordBatch>,
    /// Idempotent producer: (producer id, sequence number). A retried request with the same
    /// pair is applied once.
    pub producer: Option<(String, u64)>,
    pub durability: Durability,
    pub timeout: Option<Duration>,
}

/// Offsets assigned to one shard's part of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardAck {
    pub shard: u32,
    pub first_offset: u64,
    pub last_offset: u64,
}

/// The answer to a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteAck {
    pub rows: u64,
    /// Empty for `Buffered` writes and duplicates.
    pub shards: Vec<ShardAck>,
    /// The producer sequence was already applied; nothing was written again.
    pub duplicate: bool,
}

/// Read a table's records as a log: one shard from an offset.
#[derive(Debug, Clone)]
pub struct LogRequest {
    pub caller: Caller,
    pub table: String,
    pub shard: u32,
    pub from_offset: u64,
    /// At most this many rows (for reads); ignored by tails.
    pub max_rows: usize,
    /// Keep streaming new records as they are acknowledged.
    pub follow: bool,
}

/// What a client learns when it prepares a statement.
#[derive(Debug, Clone)]
pub struct PreparedSchemas {
    /// The result schema.
    pub dataset: SchemaRef,
    /// One field per placeholder (`$1`, `$2`, …, in order), when the backend can infer them.
    pub parameters: Option<SchemaRef>,
}

/// Runs SQL.
#[async_trait::async_trait]
pub trait QueryBackend: Send + Sync + 'static {
    /// Plan and run a statement, streaming its result.
    async fn execute(&self, req: QueryRequest) -> Result<(SchemaRef, BatchStream), BackendError>;
    /// The result schema of a statement without running it.
    async fn schema(&self, req: QueryRequest) -> Result<SchemaRef, BackendError>;
    /// Schemas of a statement being prepared (parameters not yet bound). Default: [`Self::schema`]
    /// and unknown parameter types.
    async fn prepare(&self, req: QueryRequest) -> Result<PreparedSchemas, BackendError> {
        Ok(PreparedSchemas {
            dataset: self.schema(req).await?,
            parameters: None,
        })
    }
    /// Tables visible to the caller with their schemas.
    async fn list_tables(&self, caller: &Caller) -> Result<Vec<(String, SchemaRef)>, BackendError>;
}

/// Accepts writes and serves log reads.
#[async_trait::async_trait]
pub trait IngestBackend: Send + Sync + 'static {
    async fn write(&self, req: WriteRequest) -> Result<WriteAck, BackendError>;
    /// Records of one shard from an offset, each batch with a leading `_offset` column.
    async fn read_log(&self, req: LogRequest) -> Result<BatchStream, BackendError>;
}
