//! HTTP on every process: `/healthz`, `/readyz`, `/metrics` (Prometheus text), and on roles
//! that accept writes `POST /v1/ingest/{table}` with newline-delimited JSON.
//!
//! JSON ingest query parameters: `on_error=reject|dead_letter` (default reject: the first bad
//! line fails the request and nothing is stored; `dead_letter` stores the good lines and
//! appends each bad one, with its line number and error, to `<table>__rejected`),
//! `durability=durable|buffered`, `producer_id` + `sequence` (idempotent producer),
//! `time_column`, `shard_key`, `shards` (used when the write creates the table).
//! JSON ingest counts against the same per-tenant quotas as the gRPC port.
//!
//! `POST /v1/logs` is OTLP/HTTP logs ingest ([`strata_gateway::otlp`]): a protobuf
//! (`application/x-protobuf`) or OTLP/JSON (`application/json`) `ExportLogsServiceRequest`,
//! optionally gzip-compressed (`Content-Encoding: gzip`); the answer is an
//! `ExportLogsServiceResponse` in the request's content type, or on failure a
//! `google.rpc.Status` with the HTTP code OTLP names (400, 401, 403, 413, 415, 429 and 503
//! with `Retry-After`, 500).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use strata_gateway::auth::{Authenticator, Scope};
use strata_gateway::{
    BackendError, Caller, Durability, ErrorKind, IngestBackend, OtlpLogs, Quotas, WriteRequest,
};
use tonic::metadata::MetadataMap;

use crate::tenants::Tenants;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

/// What the HTTP server needs.
#[derive(Clone)]
pub struct HttpState {
    pub registry: prometheus::Registry,
    pub ready: Arc<AtomicBool>,
    pub auth: Arc<Authenticator>,
    /// Present on roles that accept writes (serve, gateway, ingest).
    pub ingest: Option<Arc<dyn IngestBackend>>,
    /// Catalog access to read a table's schema for JSON decoding.
    pub tenants: Option<Arc<Tenants>>,
    pub max_body_bytes: usize,
    /// The role, for `/v1/status`.
    pub role: &'static str,
    /// Nodes as this process sees them (gateway role), for `/v1/status`.
    pub cluster: Option<ClusterFn>,
    /// Open connections and idle time allowed on the port.
    pub connections: ConnectionLimits,
    /// The gRPC port's per-tenant quotas, shared so HTTP writes count against them too.
    pub quotas: Option<Arc<Quotas>>,
    /// OTLP logs ingest (`POST /v1/logs`), on roles that serve it.
    pub otlp: Option<Arc<OtlpLogs>>,
    /// SQL and log tails for HTTP clients ([`crate::console`]), on roles that answer queries.
    pub web: Option<strata_gateway::WebApi>,
    /// Serve the web console at `/` (`node.console`).
    pub console: bool,
    /// The ingest node that owns a shard (gateway role), for `/v1/status`.
    pub shard_owner: Option<ShardOwnerFn>,
    /// `node.allow_insecure_public`: answer any host name even with auth off.
    pub allow_public_hosts: bool,
}

/// A snapshot of the nodes a gateway talks to.
pub type ClusterFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The address of the ingest node owning a shard number.
pub type ShardOwnerFn = Arc<dyn Fn(u32) -> String + Send + Sync>;

pub fn router(state: HttpState) -> Router {
    let limit = state.max_body_bytes;
    // Data and the console behind the browser guard; health and metrics for any prober.
    // The console where SQL is answered; a node of another role has no page to show.
    let guarded = crate::console::routes(state.console && state.web.is_some())
        .route("/v1/status", get(status))
        .route("/v1/ingest/{table}", post(ingest_json))
        .route("/v1/logs", post(otlp_logs))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::console::browser_guard,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn readyz(State(s): State<HttpState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let families = s.registry.gather();
    let mut out = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn status(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    // With auth on, tables are shown to those who may see them: an admin token sees every
    // tenant's, another token its own tenant's, no token none (nodes and health stay public).
    let visible: Option<Option<Option<String>>> = if !s.auth.is_enabled() {
        None // everything
    } else {
        match s.auth.authenticate(&MetadataMap::from_headers(headers)) {
            Ok(p) if p.has(strata_gateway::Scope::Admin) => None,
            Ok(p) => Some(Some(p.tenant)),
            Err(_) => Some(None),
        }
    };
    let mut tables = Vec::new();
    if let Some(tenants) = &s.tenants
        && !matches!(visible, Some(None))
        && let Ok(known) = tenants.known().await
    {
        for t in known {
            if let Some(Some(only)) = &visible
                && *only != t
            {
                continue;
            }
            let Ok(catalog) = tenants.catalog(t.as_deref()).await else {
                continue;
            };
            for name in catalog.list_tables().await.unwrap_or_default() {
                if let Ok(m) = catalog.load(&name).await {
                    tables.push(json!({
                        "tenant": t.clone().unwrap_or_else(|| "default".into()),
                        "table": name,
                        "shards": m.table.num_shards,
                        "segments": m.segments.len(),
                        "rows": m.total_rows(),
                        "bytes": m.total_bytes(),
                        "version": m.version,
                        "retention_secs": m.table.retention_secs,
                        "delete_rules": m.deletes.len(),
                        "shard_owners": s.shard_owner.as_ref().map(|owner| {
                            (0..m.table.num_shards).map(|shard| owner(shard)).collect::<Vec<_>>()
                        }),
                    }));
                }
            }
        }
    }
    let mut out = json!({ "role": s.role, "tables": tables });
    if let Some(c) = &s.cluster {
        out["nodes"] = c();
    }
    if let Some((used, limit)) = s.tenants.as_ref().and_then(|t| t.ingest_buffered()) {
        out["ingest"] = json!({ "buffered_bytes": used, "limit_bytes": limit });
    }
    axum::Json(out).into_response()
}

fn error_response(e: &BackendError) -> Response {
    let code = match e.kind {
        ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Aborted => StatusCode::CONFLICT,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut resp = (code, axum::Json(json!({ "error": e.message }))).into_response();
    if let Some(after) = e.retry_after {
        insert_retry_after(&mut resp, after);
    }
    resp
}

fn status_error(s: tonic::Status) -> BackendError {
    let kind = match s.code() {
        tonic::Code::Unauthenticated => ErrorKind::Unauthenticated,
        tonic::Code::PermissionDenied => ErrorKind::PermissionDenied,
        tonic::Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        _ => ErrorKind::InvalidArgument,
    };
    BackendError::new(kind, s.message().to_string())
}

async fn ingest_json(
    State(s): State<HttpState>,
    Path(table): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match ingest_json_inner(&s, &table, &q, headers, &body).await {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn ingest_json_inner(
    s: &HttpState,
    table: &str,
    q: &HashMap<String, String>,
    headers: HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, BackendError> {
    let invalid = |m: String| BackendError::new(ErrorKind::InvalidArgument, m);
    let (Some(ingest), Some(tenants)) = (&s.ingest, &s.tenants) else {
        return Err(BackendError::new(
            ErrorKind::FailedPrecondition,
            "this node does not accept writes",
        ));
    };
    let principal = s
        .auth
        .authenticate(&MetadataMap::from_headers(headers))
        .map_err(status_error)?;
    principal
        .require(Scope::Write, "JSON ingest")
        .map_err(status_error)?;
    let caller: Caller = principal.caller(uuid::Uuid::new_v4().to_string());
    if let Some(quotas) = &s.quotas {
        let now = std::time::Instant::now();
        quotas.check_request(caller.tenant.as_deref(), now)?;
        quotas.check_ingest_bytes(caller.tenant.as_deref(), body.len() as u64, now)?;
    }
    let keep_going = match q.get("on_error").map(String::as_str) {
        None | Some("reject") => false,
        Some("dead_letter") => true,
        Some(other) => {
            return Err(invalid(format!(
                "on_error must be `reject` or `dead_letter`, not `{other}`"
            )));
        }
    };
    let durability: Durability = q
        .get("durability")
        .map_or(Ok(Durability::Durable), |d| d.parse())?;
    let producer = match (q.get("producer_id"), q.get("sequence")) {
        (Some(p), Some(seq)) => Some((
            p.clone(),
            seq.parse::<u64>()
                .map_err(|_| invalid(format!("sequence `{seq}` is not a number")))?,
        )),
        (None, None) => None,
        _ => return Err(invalid("producer_id and sequence go together".into())),
    };
    let table =
        strata_storage::manifest::validate_table_name(table).map_err(|e| invalid(e.to_string()))?;
    let catalog = tenants.catalog(caller.tenant.as_deref()).await?;
    // The table's definition, re-read at most once a second (not one LIST per request).
    let schema = match catalog
        .load_within(&table, std::time::Duration::from_secs(1))
        .await
    {
        Ok(m) => m.table.schema_ref(),
        Err(strata_storage::Error::TableNotFound(_)) => {
            strata_ingest::json::infer_schema(body, q.get("time_column").map(String::as_str))
                .map_err(crate::errors::from_ingest)?
        }
        Err(e) => return Err(crate::errors::from_storage(&e)),
    };
    let decoded = strata_ingest::json::decode(body, &schema, keep_going)
        .map_err(crate::errors::from_ingest)?;
    let mut rows = 0;
    let mut shards = Vec::new();
    if let Some(batch) = decoded.batch {
        let ack = ingest
            .write(WriteRequest {
                caller: caller.clone(),
                table: table.clone(),
                batches: vec![batch],
                producer: producer.clone(),
                durability,
                timeout: None,
            })
            .await?;
        rows = ack.rows;
        shards = ack
            .shards
            .iter()
            .map(|a| json!({"shard": a.shard, "first_offset": a.first_offset, "last_offset": a.last_offset}))
            .collect();
    }
    if !decoded.bad.is_empty() {
        let dl = strata_ingest::json::dead_letter_batch(&decoded.bad)
            .map_err(crate::errors::from_ingest)?;
        ingest
            .write(WriteRequest {
                caller,
                table: format!("{table}__rejected"),
                batches: vec![dl],
                producer: None,
                durability: Durability::Durable,
                timeout: None,
            })
            .await?;
    }
    Ok(json!({
        "table": table,
        "rows": rows,
        "rejected": decoded.bad.len(),
        "rejected_lines": decoded.bad.iter().map(|b| json!({"line": b.line, "error": b.error})).collect::<Vec<_>>(),
        "shards": shards,
    }))
}

/// How an OTLP/HTTP request (and so its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtlpEncoding {
    Protobuf,
    Json,
}

impl OtlpEncoding {
    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of a failed OTLP/HTTP request.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn otlp_logs(State(s): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let encoding = match media.as_deref() {
        Some("application/x-protobuf") => OtlpEncoding::Protobuf,
        Some("application/json") => OtlpEncoding::Json,
        other => {
            let status = tonic::Status::invalid_argument(format!(
                "OTLP/HTTP takes application/x-protobuf or application/json, not {}",
                other.unwrap_or("a request without Content-Type")
            ));
            return otlp_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &status,
                OtlpEncoding::Json,
            );
        }
    };
    let Some(otlp) = s.otlp.clone() else {
        let status = tonic::Status::failed_precondition(
            "OTLP logs ingest is off on this process (gateway.otlp.enabled = false), or this \
             role takes no writes",
        );
        return otlp_error(StatusCode::NOT_FOUND, &status, encoding);
    };
    let result = match otlp_decode(&headers, &body, encoding, otlp.max_request_bytes()) {
        Ok(request) => {
            otlp.export(&MetadataMap::from_headers(headers), request)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(answer) => {
            let bytes = match encoding {
                OtlpEncoding::Protobuf => prost::Message::encode_to_vec(&answer),
                OtlpEncoding::Json => serde_json::to_vec(&answer).unwrap_or_default(),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                bytes,
            )
                .into_response()
        }
        Err(status) => otlp_error(http_code(&status), &status, encoding),
    }
}

/// The request, gunzipped when `Content-Encoding: gzip`, decoded from `encoding`.
fn otlp_decode(
    headers: &HeaderMap,
    body: &[u8],
    encoding: OtlpEncoding,
    limit: usize,
) -> Result<ExportLogsServiceRequest, tonic::Status> {
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let unzipped;
    let body = match content_encoding.as_deref() {
        None | Some("identity") | Some("") => body,
        Some("gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    tonic::Status::invalid_argument(format!("the gzip body is corrupt: {e}"))
                })?;
            if out.len() > limit {
                return Err(tonic::Status::invalid_argument(format!(
                    "the gzip body inflates past the {limit} byte limit \
                     (gateway.flight.max_ingest_bytes); send smaller batches"
                )));
            }
            unzipped = out;
            &unzipped[..]
        }
        Some(other) => {
            return Err(tonic::Status::invalid_argument(format!(
                "Content-Encoding `{other}` is not supported; send gzip or no encoding"
            )));
        }
    };
    match encoding {
        OtlpEncoding::Protobuf => <ExportLogsServiceRequest as prost::Message>::decode(body)
            .map_err(|e| {
                tonic::Status::invalid_argument(format!(
                    "the body is not a protobuf ExportLogsServiceRequest: {e}"
                ))
            }),
        OtlpEncoding::Json => serde_json::from_slice(body).map_err(|e| {
            tonic::Status::invalid_argument(format!(
                "the body is not an OTLP/JSON ExportLogsServiceRequest: {e}"
            ))
        }),
    }
}

/// The HTTP code for a failure with gRPC status `s` (the codes OTLP/HTTP names, and 409
/// for a conflict).
pub(crate) fn http_code(s: &tonic::Status) -> StatusCode {
    use tonic::Code;
    match s.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::Aborted => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn otlp_error(code: StatusCode, status: &tonic::Status, encoding: OtlpEncoding) -> Response {
    let body = RpcStatus {
        code: status.code() as i32,
        message: status.message().to_string(),
    };
    let bytes = match encoding {
        OtlpEncoding::Protobuf => prost::Message::encode_to_vec(&body),
        OtlpEncoding::Json => serde_json::to_vec(&body).unwrap_or_default(),
    };
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, encoding.content_type())],
        bytes,
    )
        .into_response();
    set_retry_after(&mut resp, status);
    resp
}

/// Retryable failures say when to come back: `Retry-After` in seconds, rounded up, from
/// the status's `retry-after-ms`.
pub(crate) fn set_retry_after(resp: &mut Response, status: &tonic::Status) {
    let retry_ms = status
        .metadata()
        .get(strata_gateway::RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = retry_ms {
        insert_retry_after(resp, Duration::from_millis(ms));
    }
}

fn insert_retry_after(resp: &mut Response, after: Duration) {
    let secs = after.as_millis().div_ceil(1000).max(1).to_string();
    if let Ok(v) = secs.parse() {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// Serve `router` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.connections;
    axum::serve(LimitedListener::new(listener, limits), router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Bounds on the HTTP port's connections: how many are open at once (more wait in the
/// kernel's backlog), and how long one may stall — no byte received or sent — before it is closed,
/// so slow or idle clients cannot hold the port.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: std::time::Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// A listener that accepts a connection only when fewer than `max_connections` are open.
struct LimitedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    idle_timeout: std::time::Duration,
}

impl LimitedListener {
    fn new(inner: tokio::net::TcpListener, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            idle_timeout: limits.idle_timeout,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = loop {
            if let Ok(p) = Arc::clone(&self.permits).acquire_owned().await {
                break p;
            }
        };
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            LimitedIo {
                io,
                _permit: permit,
                idle_timeout: self.idle_timeout,
                idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot; reads fail with `TimedOut` after `idle_timeout` without a
/// byte received or sent, which makes the server close it.
struct LimitedIo {
    io: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
    idle_timeout: std::time::Duration,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl LimitedIo {
    /// Bytes sent count as activity too: a streamed answer (a log tail, a long statement's
    /// keep-alive) holds its connection while it sends.
    fn wrote(&mut self, r: &std::task::Poll<std::io::Result<usize>>) {
        if let std::task::Poll::Ready(Ok(n)) = r
            && *n > 0
        {
            let next = tokio::time::Instant::now() + self.idle_timeout;
            self.idle.as_mut().reset(next);
        }
    }
}

impl tokio::io::AsyncRead for LimitedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + self.idle_timeout;
                    self.idle.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no data from the client within the idle timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl tokio::io::AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
