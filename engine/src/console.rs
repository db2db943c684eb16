//! The web console and the JSON API it runs on, on the HTTP port of the roles that answer
//! queries (`serve`, `gateway`):
//!
//! - `GET /` and `/console/{app.js,app.css}`: the console (static files embedded in the
//!   binary; `node.console = false` / `--no-console` turns them off, the API stays).
//! - `POST /v1/sql`: a statement (JSON `{"sql": …, "max_rows": …}`, or the SQL text as the
//!   body), answered as `{"columns", "rows", "row_count", "truncated", "elapsed_ms", "cost"}`.
//! - `GET /v1/tables`: the caller's tables with columns, time column, shard key and size.
//! - `GET /v1/tail/{table}?shard=S&from_offset=N|end`: one shard's records as they are
//!   acknowledged, as newline-delimited JSON, until the client goes away; without `shard`,
//!   every shard's in one stream (`offsets=0:12,1:40` sets where each starts).
//!
//! Every call goes through the Flight service's [`WebApi`]: the same bearer tokens
//! (`Authorization: Bearer …`), scopes, per-tenant request quotas, query deadlines, result
//! cache and log-tail limit as the gRPC port. Errors are `{"error": …, "code": …}` with
//! the HTTP status of the gRPC code (400, 401, 403, 404, 429 with `Retry-After`, 500, 503,
//! 504). A statement that runs past [`SQL_WAIT`] is answered `200` at once and its body
//! kept alive with spaces (as an idle tail is with `{"heartbeat":true}` lines) (JSON allows leading whitespace) until the answer — or an
//! `{"error": …}` object — follows, so no proxy or idle timeout cuts a long query.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use strata_gateway::{Scope, WebApi};
use tonic::metadata::MetadataMap;

use crate::http::HttpState;

/// How long `POST /v1/sql` waits for an answer before committing to `200` and keeping the
/// connection alive with whitespace.
pub const SQL_WAIT: Duration = Duration::from_secs(5);
/// Between keep-alive bytes of a long statement or an idle tail: 10 s, or a third of the
/// port's idle timeout when that is shorter.
fn heartbeat(s: &HttpState) -> Duration {
    (s.connections.idle_timeout / 3).clamp(Duration::from_millis(100), Duration::from_secs(10))
}
/// Rows a statement answers by default, and at most.
const DEFAULT_MAX_ROWS: usize = 10_000;
const MAX_ROWS: usize = 100_000;
/// Arrow memory collected for one answer, and JSON written for it, before it is cut.
const MAX_ANSWER_BYTES: usize = 32 << 20;
const MAX_JSON_BYTES: usize = 32 << 20;
/// Answers being collected at once on this process (each holds up to the two bounds above);
/// more wait.
const CONCURRENT_ANSWERS: usize = 8;
/// Rows per read of a web tail (a line each; a tail from an old offset catches up in steps).
const TAIL_BATCH_ROWS: usize = 1_000;

static ANSWERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_ANSWERS);

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// The console's routes; the API answers 404 on roles that serve no queries.
pub fn routes(console: bool) -> Router<HttpState> {
    let api = Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/tables", get(tables))
        .route("/v1/tail/{table}", get(tail));
    if !console {
        return api;
    }
    api.route(
        "/",
        get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
    )
    .route(
        "/console/app.js",
        get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
    )
    .route(
        "/console/app.css",
        get(|| async { page("text/css; charset=utf-8", APP_CSS) }),
    )
}

/// Refuses what a browser sends on behalf of another site: cross-site requests
/// (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not this host), and, when auth is
/// off, requests for a host name that is not a loopback one (a DNS-rebinding page reaching a
/// local server under its own name). Clients other than browsers send neither header.
pub(crate) async fn browser_guard(
    State(s): State<HttpState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST);
    let refuse = |why: String| status_response(&tonic::Status::permission_denied(why));
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return refuse("cross-site requests from a browser are refused".into());
    }
    if let (Some(origin), Some(host)) = (text(header::ORIGIN), host) {
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        if !authority.eq_ignore_ascii_case(host) {
            return refuse(format!("a request from the page at {origin} is refused"));
        }
    }
    if !s.auth.is_enabled()
        && !s.allow_public_hosts
        && let Some(host) = host
        && !is_loopback_host(host)
    {
        return refuse(format!(
            "host `{host}`: without auth this server answers loopback names only \
             (localhost, 127.0.0.1, [::1])"
        ));
    }
    next.run(request).await
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                 frame-ancestors 'none'",
            ),
            // No other site may frame the console (clickjacking).
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

fn web(s: &HttpState) -> Result<&WebApi, tonic::Status> {
    s.web.as_ref().ok_or_else(|| {
        tonic::Status::not_found(format!(
            "the {} role answers no queries; use the HTTP port of `strata serve` or a gateway",
            s.role
        ))
    })
}

// --- POST /v1/sql ---

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
    #[serde(default)]
    max_rows: Option<usize>,
}

async fn sql(State(s): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let parsed = if is_json {
        serde_json::from_slice::<SqlBody>(&body).map_err(|e| {
            tonic::Status::invalid_argument(format!(
                "the body is not {{\"sql\": \"…\", \"max_rows\": N}}: {e}"
            ))
        })
    } else {
        String::from_utf8(body.to_vec())
            .map(|sql| SqlBody {
                sql,
                max_rows: None,
            })
            .map_err(|_| tonic::Status::invalid_argument("the SQL text is not UTF-8"))
    };
    let request = match parsed {
        Ok(r) if r.sql.trim().is_empty() => {
            return status_response(&tonic::Status::invalid_argument("no SQL statement given"));
        }
        Ok(r) => r,
        Err(e) => return status_response(&e),
    };
    let web = match web(&s) {
        Ok(w) => w.clone(),
        Err(e) => return status_response(&e),
    };
    let max_rows = request
        .max_rows
        .unwrap_or(DEFAULT_MAX_ROWS)
        .clamp(1, MAX_ROWS);
    let metadata = MetadataMap::from_headers(headers);
    let started = Instant::now();
    let mut answer = Box::pin(async move {
        let _slot = ANSWERS
            .acquire()
            .await
            .map_err(|_| tonic::Status::unavailable("the server is shutting down"))?;
        let r = web
            .sql(&metadata, &request.sql, max_rows, MAX_ANSWER_BYTES)
            .await;
        r.and_then(|a| {
            answer_json(&a, started.elapsed(), MAX_JSON_BYTES)
                .map_err(|e| tonic::Status::internal(e.to_string()))
        })
    });
    // Past the wait (shorter when the port's idle timeout is short), answer 200 and keep
    // the connection busy until the result comes.
    let wait = SQL_WAIT.min(heartbeat(&s));
    match tokio::time::timeout(wait, &mut answer).await {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok(Err(e)) => status_response(&e),
        // A long statement: answer 200 now and send the result (or the error) when it comes;
        // the spaces keep the connection busy. Dropping the body cancels the query.
        Err(_) => {
            let every = heartbeat(&s);
            let body = futures::stream::unfold(Some(answer), move |state| async move {
                let mut answer = state?;
                tokio::select! {
                    r = &mut answer => {
                        let body = r.unwrap_or_else(|e| Bytes::from(error_json(&e).to_string()));
                        Some((Ok::<_, Infallible>(body), None))
                    }
                    _ = tokio::time::sleep(every) => {
                        Some((Ok(Bytes::from_static(b" ")), Some(answer)))
                    }
                }
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(body),
            )
                .into_response()
        }
    }
}

/// The answer as JSON bytes, rows written one by one and cut (`"truncated": true`) once
/// they pass `max_bytes`.
fn answer_json(
    a: &strata_gateway::SqlAnswer,
    elapsed: Duration,
    max_bytes: usize,
) -> Result<Bytes, arrow::error::ArrowError> {
    let columns: Vec<Value> = a
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"columns\":");
    out.extend_from_slice(Value::Array(columns).to_string().as_bytes());
    out.extend_from_slice(b",\"rows\":[");
    let (mut rows, mut truncated) = (0usize, a.truncated);
    'batches: for batch in &a.batches {
        let cells = Cells::new(batch)?;
        for r in 0..batch.num_rows() {
            if out.len() >= max_bytes {
                truncated = true;
                break 'batches;
            }
            if rows > 0 {
                out.push(b',');
            }
            let row = Value::Array(
                (0..batch.num_columns())
                    .map(|c| cells.value(c, r))
                    .collect(),
            );
            out.extend_from_slice(row.to_string().as_bytes());
            rows += 1;
        }
    }
    let tail = json!({
        "row_count": rows,
        "truncated": truncated,
        "elapsed_ms": (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "cost": a.cost,
    });
    // `],` then the tail object's fields without its opening brace.
    out.extend_from_slice(b"],");
    out.extend_from_slice(&tail.to_string().as_bytes()[1..]);
    Ok(Bytes::from(out))
}

/// JSON values of a batch's cells: numbers and booleans as themselves (64-bit integers past
/// 2^53 as strings, so JavaScript loses no digit), NULL as null, the rest (times as
/// RFC 3339, binary as hex, nested values) as display strings.
struct Cells<'a> {
    columns: &'a [ArrayRef],
    text: Vec<ArrayFormatter<'a>>,
}

const OPTIONS: FormatOptions<'static> = FormatOptions::new().with_display_error(true);

impl<'a> Cells<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self, arrow::error::ArrowError> {
        let text = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &OPTIONS))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            columns: batch.columns(),
            text,
        })
    }

    fn value(&self, col: usize, row: usize) -> Value {
        const SAFE: u64 = 1 << 53;
        let a = &self.columns[col];
        if a.is_null(row) {
            return Value::Null;
        }
        let number = |f: f64| {
            serde_json::Number::from_f64(f)
                .map_or_else(|| Value::String(f.to_string()), Value::Number)
        };
        match a.data_type() {
            DataType::Boolean => Value::Bool(a.as_boolean().value(row)),
            DataType::Int8 => Value::from(a.as_primitive::<Int8Type>().value(row)),
            DataType::Int16 => Value::from(a.as_primitive::<Int16Type>().value(row)),
            DataType::Int32 => Value::from(a.as_primitive::<Int32Type>().value(row)),
            DataType::UInt8 => Value::from(a.as_primitive::<UInt8Type>().value(row)),
            DataType::UInt16 => Value::from(a.as_primitive::<UInt16Type>().value(row)),
            DataType::UInt32 => Value::from(a.as_primitive::<UInt32Type>().value(row)),
            DataType::Int64 => {
                let v = a.as_primitive::<Int64Type>().value(row);
                if v.unsigned_abs() <= SAFE {
                    Value::from(v)
                } else {
                    Value::String(v.to_string())
                }
            }
            DataType::UInt64 => {
                let v = a.as_primitive::<UInt64Type>().value(row);
                if v <= SAFE {
                    Value::from(v)
                } else {
                    Value::String(v.to_string())
                }
            }
            DataType::Float64 => number(a.as_primitive::<Float64Type>().value(row)),
            // As displayed (shortest digits of the narrower type), not widened to f64 digits.
            DataType::Float16 | DataType::Float32 => {
                match self.text[col].value(row).to_string().parse::<f64>() {
                    Ok(f) => number(f),
                    Err(_) => Value::String(self.text[col].value(row).to_string()),
                }
            }
            _ => Value::String(self.text[col].value(row).to_string()),
        }
    }

    /// Row `row` as an object by column name, leaving out `skip`.
    fn object(&self, batch: &RecordBatch, row: usize, skip: Option<usize>) -> Value {
        let mut m = Map::new();
        for (c, f) in batch.schema().fields().iter().enumerate() {
            if Some(c) != skip {
                m.insert(f.name().clone(), self.value(c, row));
            }
        }
        Value::Object(m)
    }
}

// --- GET /v1/tables ---

async fn tables(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    match tables_inner(&s, headers).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => status_response(&e),
    }
}

/// A caller with the read scope (counted against its quota), and its tenant's catalog.
async fn admit_reader(
    s: &HttpState,
    headers: HeaderMap,
    what: &str,
) -> Result<(strata_gateway::Caller, strata_storage::Catalog), tonic::Status> {
    let caller = web(s)?.admit(&MetadataMap::from_headers(headers), Scope::Read, what)?;
    let tenants = s
        .tenants
        .as_ref()
        .ok_or_else(|| tonic::Status::failed_precondition("this node has no catalog"))?;
    let catalog = tenants
        .catalog(caller.tenant.as_deref())
        .await
        .map_err(strata_gateway::to_status)?;
    Ok((caller, catalog))
}

async fn tables_inner(s: &HttpState, headers: HeaderMap) -> Result<Value, tonic::Status> {
    let (_, catalog) = admit_reader(s, headers, "listing tables").await?;
    let names = catalog
        .list_tables()
        .await
        .map_err(|e| strata_gateway::to_status(crate::errors::from_storage(&e)))?;
    let mut out = Vec::new();
    for name in names {
        let Ok(m) = catalog.load(&name).await else {
            continue; // dropped between the listing and the load
        };
        let columns: Vec<Value> = m
            .table
            .schema
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
            .collect();
        out.push(json!({
            "name": name,
            "time_column": m.table.time_column,
            "shard_key": m.table.shard_key,
            "shards": m.table.num_shards,
            "rows": m.total_rows(),
            "segments": m.segments.len(),
            "bytes": m.total_bytes(),
            "columns": columns,
        }));
    }
    Ok(json!({ "tables": out }))
}

// --- GET /v1/tail/{table} ---

async fn tail(
    State(s): State<HttpState>,
    Path(table): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match tail_inner(&s, &table, &q, headers).await {
        Ok(r) => r,
        Err(e) => status_response(&e),
    }
}

async fn tail_inner(
    s: &HttpState,
    table: &str,
    q: &HashMap<String, String>,
    headers: HeaderMap,
) -> Result<Response, tonic::Status> {
    let invalid = tonic::Status::invalid_argument;
    let one: Option<u32> = match q.get("shard") {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| invalid(format!("shard `{v}` is not a shard number")))?,
        ),
    };
    // `offsets=0:12,1:40`: where each shard starts (the others: `from_offset`).
    let mut starts: HashMap<u32, u64> = HashMap::new();
    for part in q
        .get("offsets")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
    {
        if part.is_empty() {
            continue;
        }
        let parsed = part
            .split_once(':')
            .and_then(|(sh, off)| Some((sh.parse().ok()?, off.parse().ok()?)));
        let (shard, offset) = parsed.ok_or_else(|| {
            invalid(format!(
                "offsets: `{part}` is not shard:offset (e.g. offsets=0:12,1:40)"
            ))
        })?;
        starts.insert(shard, offset);
    }
    let from = match q.get("from_offset").map(String::as_str) {
        None | Some("end") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| invalid(format!("from_offset `{v}` is not an offset or `end`")))?,
        ),
    };
    let web = web(s)?;
    let (caller, catalog) = admit_reader(s, headers, "tailing a log").await?;
    let storage_err =
        |e: strata_storage::Error| strata_gateway::to_status(crate::errors::from_storage(&e));
    // Fail fast on an unknown table or shard.
    let manifest = catalog.load(table).await.map_err(storage_err)?;
    let shards: Vec<u32> = match one {
        Some(shard) => {
            manifest.shard(shard).map_err(storage_err)?;
            vec![shard]
        }
        None => (0..manifest.table.num_shards).collect(),
    };
    let mut streams = Vec::with_capacity(shards.len());
    let mut resolved = Map::new();
    for &shard in &shards {
        let start = match (starts.get(&shard), from) {
            (Some(o), _) => *o,
            (None, Some(o)) => o,
            (None, None) => {
                strata_ingest::log::end_offset_in(&catalog, Arc::clone(&manifest), shard)
                    .await
                    .map_err(|e| strata_gateway::to_status(crate::errors::from_ingest(e)))?
            }
        };
        resolved.insert(shard.to_string(), json!(start));
        let stream = web
            .tail(&caller, table, shard, start, TAIL_BATCH_ROWS)
            .await?;
        streams.push(stream.map(move |item| (shard, item)).boxed());
    }
    let first = match one {
        Some(shard) => json!({"shard": shard, "from_offset": resolved[&shard.to_string()]}),
        None => json!({ "from_offsets": resolved }),
    }
    .to_string()
        + "\n";
    let every = heartbeat(s);
    let merged = futures::stream::select_all(streams);
    let lines = futures::stream::unfold(merged, move |mut merged| async move {
        tokio::select! {
            item = merged.next() => match item {
                Some((shard, Ok(batch))) => {
                    let text = tail_lines(shard, &batch).unwrap_or_else(|e| {
                        error_json(&tonic::Status::internal(e.to_string())).to_string() + "\n"
                    });
                    Some((Ok::<_, Infallible>(Bytes::from(text)), merged))
                }
                // That shard's tail ends; the others go on.
                Some((shard, Err(e))) => {
                    let mut v = error_json(&strata_gateway::to_status(e));
                    v["shard"] = json!(shard);
                    Some((Ok(Bytes::from(v.to_string() + "\n")), merged))
                }
                None => None,
            },
            _ = tokio::time::sleep(every) => {
                Some((Ok(Bytes::from_static(b"{\"heartbeat\":true}\n")), merged))
            }
        }
    });
    let body =
        futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(first)) }).chain(lines);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One line per record: `{"shard", "offset", "row": {…}}`.
fn tail_lines(shard: u32, batch: &RecordBatch) -> Result<String, arrow::error::ArrowError> {
    let offset_col = batch.schema().index_of(strata_storage::OFFSET_COLUMN).ok();
    let cells = Cells::new(batch)?;
    let mut out = String::new();
    for r in 0..batch.num_rows() {
        let offset = offset_col.map_or(Value::Null, |c| cells.value(c, r));
        let line =
            json!({"shard": shard, "offset": offset, "row": cells.object(batch, r, offset_col)});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(out)
}

// --- errors ---

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v)).into_response()
}

/// `{"error": message, "code": "INVALID_ARGUMENT"}`.
fn error_json(e: &tonic::Status) -> Value {
    json!({"error": e.message(), "code": code_name(e.code())})
}

/// A gRPC status as an HTTP answer, with `Retry-After` when a retry may succeed.
pub(crate) fn status_response(e: &tonic::Status) -> Response {
    let mut resp = json_response(crate::http::http_code(e), &error_json(e));
    crate::http::set_retry_after(&mut resp, e);
    resp
}

/// The gRPC code as its canonical name (`INVALID_ARGUMENT`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    #[test]
    fn cells_keep_numbers_and_javascript_safe_integers() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "i",
                std::sync::Arc::new(Int64Array::from(vec![Some(1), Some(i64::MAX), None]))
                    as ArrayRef,
            ),
            (
                "f",
                std::sync::Arc::new(Float64Array::from(vec![1.5, f64::NAN, 0.0])) as ArrayRef,
            ),
            (
                "b",
                std::sync::Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
            ),
            (
                "s",
                std::sync::Arc::new(StringArray::from(vec!["a\"b", "", "c"])) as ArrayRef,
            ),
            (
                "t",
                std::sync::Arc::new(
                    TimestampMicrosecondArray::from(vec![0, 1_500_000, 0]).with_timezone("UTC"),
                ) as ArrayRef,
            ),
        ])
        .expect("batch");
        let cells = Cells::new(&batch).expect("formatters");
        assert_eq!(cells.value(0, 0), json!(1));
        assert_eq!(cells.value(0, 1), json!(i64::MAX.to_string()));
        assert_eq!(cells.value(0, 2), Value::Null);
        assert_eq!(cells.value(1, 0), json!(1.5));
        assert_eq!(cells.value(1, 1), json!("NaN"));
        assert_eq!(cells.value(2, 1), json!(false));
        assert_eq!(cells.value(3, 0), json!("a\"b"));
        assert_eq!(cells.value(4, 1), json!("1970-01-01T00:00:01.500Z"));
        assert_eq!(
            cells.object(&batch, 0, Some(0)),
            json!({"f": 1.5, "b": true, "s": "a\"b", "t": "1970-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.2:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
