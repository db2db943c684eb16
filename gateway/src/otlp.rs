//! OpenTelemetry logs ingest (OTLP): the `LogsService/Export` gRPC service, and the handler
//! the HTTP port's `POST /v1/logs` calls with a decoded request.
//!
//! A request is authenticated like every write (scope `write`), counted against the
//! tenant's request and ingest-byte quotas, converted to one Arrow batch
//! ([`convert`]) and written with one [`IngestBackend::write`] call, with the durability of
//! the `x-strata-durability` header (default: acknowledged once in the WAL). Records go to
//! the table named by the `x-strata-table` header, else [`OtlpConfig::default_table`]
//! (`otel_logs`); the first write creates it with the columns in [`convert::LOG_COLUMNS`],
//! `timestamp` being the time column.
//!
//! Records that cannot be stored are left out and reported in the response's
//! `partial_success` (`rejected_log_records` and the first reason); the others are stored.
//! A request that fails as a whole (auth, quota, an unavailable store) is refused with the
//! gRPC status of any other write, and nothing of it is stored.

pub mod convert;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Scope};
use crate::backend::{Caller, Durability, IngestBackend, QueryBackend, WriteRequest};
use crate::flight::{DURABILITY_HEADER, grpc_timeout};
use crate::quota::Quotas;
use crate::status::{internal, invalid_argument, to_status};
use convert::{Promoted, PromotedKind};

/// Header naming the table an OTLP request writes to.
pub const TABLE_HEADER: &str = "x-strata-table";

/// How long a table's promoted columns are reused before its schema is read again.
const SCHEMA_TTL: Duration = Duration::from_secs(5);

/// `[otlp]` settings. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Serve OTLP logs (gRPC `LogsService/Export` on the gRPC port, `POST /v1/logs` on the
    /// HTTP port). Default: true.
    pub enabled: bool,
    /// The table records go to when a request has no `x-strata-table` header.
    /// Default: `otel_logs`.
    pub default_table: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_table: "otel_logs".to_string(),
        }
    }
}

/// (tenant, table).
type TableKey = (Option<String>, String);
/// A table's promoted columns and when they were read.
type ReadColumns = (Instant, Arc<Vec<Promoted>>);

/// Accepts OTLP log exports; shared by the gRPC service and the HTTP handler.
pub struct OtlpLogs {
    ingest: Arc<dyn IngestBackend>,
    query: Arc<dyn QueryBackend>,
    auth: Arc<Authenticator>,
    quotas: Arc<Quotas>,
    config: OtlpConfig,
    max_request_bytes: usize,
    /// Promoted columns per (tenant, table), read at most every [`SCHEMA_TTL`].
    promoted: Mutex<HashMap<TableKey, ReadColumns>>,
}

impl std::fmt::Debug for OtlpLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLogs")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OtlpLogs {
    pub fn new(
        ingest: Arc<dyn IngestBackend>,
        query: Arc<dyn QueryBackend>,
        auth: Arc<Authenticator>,
        quotas: Arc<Quotas>,
        config: OtlpConfig,
        max_request_bytes: usize,
    ) -> Self {
        Self {
            ingest,
            query,
            auth,
            quotas,
            config,
            max_request_bytes,
            promoted: Mutex::new(HashMap::new()),
        }
    }

    /// Largest request accepted, encoded (and, over HTTP, decompressed).
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// The gRPC service over this handler, accepting gzip (as OTLP exporters send it).
    pub fn grpc_service(self: &Arc<Self>) -> LogsServiceServer<OtlpGrpc> {
        LogsServiceServer::new(OtlpGrpc(Arc::clone(self)))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_request_bytes)
    }

    /// Stores the records of `request` for the caller that `metadata` authenticates.
    pub async fn export(
        &self,
        metadata: &MetadataMap,
        request: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, Status> {
        let principal = self
            .auth
            .authorize(metadata, Scope::Write, "OTLP logs export")?;
        let tenant = principal.tenant.as_deref();
        let now = Instant::now();
        self.quotas.check_request(tenant, now).map_err(to_status)?;
        let bytes = request.encoded_len();
        if bytes > self.max_request_bytes {
            return Err(invalid_argument(format!(
                "the OTLP request is {bytes} bytes, over the {} byte limit \
                 (flight.max_ingest_bytes); send smaller batches",
                self.max_request_bytes
            )));
        }
        self.quotas
            .check_ingest_bytes(tenant, bytes as u64, now)
            .map_err(to_status)?;
        let table = header(metadata, TABLE_HEADER)
            .unwrap_or(&self.config.default_table)
            .to_string();
        let durability = header(metadata, DURABILITY_HEADER)
            .map(str::parse::<Durability>)
            .transpose()
            .map_err(to_status)?
            .unwrap_or_default();
        let caller = principal.caller(uuid::Uuid::new_v4().to_string());
        let promoted = self.promoted_columns(&caller, &table).await;
        let converted = convert::convert(&request, &promoted, now_nanos())
            .map_err(|e| internal(format!("cannot build the batch of log records: {e}")))?;
        if let Some(batch) = converted.batch {
            self.ingest
                .write(WriteRequest {
                    caller,
                    table,
                    batches: vec![batch],
                    producer: None,
                    durability,
                    timeout: grpc_timeout(metadata),
                })
                .await
                .map_err(to_status)?;
        }
        Ok(ExportLogsServiceResponse {
            partial_success: (converted.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(converted.rejected).unwrap_or(i64::MAX),
                error_message: converted.first_error.unwrap_or_default(),
            }),
        })
    }

    /// Columns of `table` beyond the fixed ones that attributes can fill; none when the
    /// table does not exist yet or its schema cannot be read.
    async fn promoted_columns(&self, caller: &Caller, table: &str) -> Arc<Vec<Promoted>> {
        let key = (caller.tenant.clone(), table.to_ascii_lowercase());
        if let Some((at, cols)) = self.promoted.lock().get(&key)
            && at.elapsed() < SCHEMA_TTL
        {
            return Arc::clone(cols);
        }
        let cols: Vec<Promoted> = match self.query.list_tables(caller).await {
            Ok(tables) => tables
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(table))
                .map(|(_, schema)| {
                    schema
                        .fields()
                        .iter()
                        .filter(|f| !convert::is_log_column(f.name()))
                        .filter_map(|f| {
                            Some(Promoted {
                                name: f.name().clone(),
                                kind: PromotedKind::of(f.data_type())?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(table, error = %e.message, "no promoted OTLP columns");
                Vec::new()
            }
        };
        let cols = Arc::new(cols);
        let mut cache = self.promoted.lock();
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), Arc::clone(&cols)));
        cols
    }
}

fn header<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The gRPC `opentelemetry.proto.collector.logs.v1.LogsService`.
#[derive(Debug, Clone)]
pub struct OtlpGrpc(Arc<OtlpLogs>);

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.0.export(&metadata, request).await.map(Response::new)
    }
}
