//! `strata-bench --otlp ROWS`: OpenTelemetry logs ingest throughput, acknowledged durable,
//! through a `strata serve` on the local folder store: the same `ROWS` log records sent as
//! OTLP/gRPC requests, as OTLP/HTTP protobuf requests, and — the baseline, side by side in
//! the same run — as the Arrow batches Strata makes of them, over Flight `DoPut`. Requests
//! are encoded before the clock starts; `--writers` clients send at once. Each table's row
//! count is checked afterwards.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::Result;
use crate::flight::{FlightClient, encode_put};
use crate::ingest::first_count;
use crate::server::{Server, ServerOptions};
use crate::suite::{Args, find_strata, work_folder};

/// Records per request (an OpenTelemetry Collector's batch processor sends 8192).
const RECORDS_PER_REQUEST: usize = 8192;

/// One way of sending the records.
#[derive(Debug, Clone, Serialize)]
pub struct OtlpRow {
    pub path: &'static str,
    pub rows: usize,
    pub requests: usize,
    pub request_bytes: usize,
    pub seconds: f64,
    pub rows_per_sec: f64,
    /// Rows/s relative to Flight `DoPut` of the same rows as Arrow.
    pub vs_doput: f64,
}

/// What `--otlp` measured.
#[derive(Debug, Clone, Serialize)]
pub struct OtlpReport {
    pub rows: usize,
    pub writers: usize,
    pub results: Vec<OtlpRow>,
}

impl OtlpReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "OTLP logs ingest: {} records, {} per request, {} writers, acknowledged durable\n\
             | path | requests | MB sent | s | rows/s | vs DoPut |\n|---|---:|---:|---:|---:|---:|\n",
            self.rows, RECORDS_PER_REQUEST, self.writers
        );
        for r in &self.results {
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.2} | {:.0} | {:.2}x |\n",
                r.path,
                r.requests,
                r.request_bytes as f64 / 1e6,
                r.seconds,
                r.rows_per_sec,
                r.vs_doput
            ));
        }
        out
    }
}

/// Deterministic requests of [`RECORDS_PER_REQUEST`] records from 20 services.
fn requests(rows: usize, seed: u64) -> Vec<ExportLogsServiceRequest> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t0: u64 = 1_767_225_600_000_000_000;
    let text = |s: String| {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        })
    };
    let kv = |k: &str, v: Option<AnyValue>| KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < rows {
        let n = RECORDS_PER_REQUEST.min(rows - i);
        let service = format!("svc-{:02}", out.len() % 20);
        let records = (0..n)
            .map(|j| {
                let k = i + j;
                let status = [200, 200, 200, 404, 500][rng.random_range(0..5)];
                LogRecord {
                    time_unix_nano: t0 + k as u64 * 1_000_000,
                    observed_time_unix_nano: t0 + k as u64 * 1_000_000 + 500,
                    severity_number: if status == 500 { 17 } else { 9 },
                    severity_text: if status == 500 { "ERROR" } else { "INFO" }.into(),
                    body: text(format!(
                        "GET /api/v1/items/{} {status} in {} ms",
                        rng.random_range(0..100_000),
                        rng.random_range(1..500)
                    )),
                    trace_id: rng.random::<[u8; 16]>().to_vec(),
                    span_id: rng.random::<[u8; 8]>().to_vec(),
                    flags: 1,
                    attributes: vec![
                        kv("http.method", text("GET".into())),
                        kv(
                            "http.status_code",
                            Some(AnyValue {
                                value: Some(Value::IntValue(status)),
                            }),
                        ),
                        kv("user.id", text(format!("u{}", rng.random_range(0..50_000)))),
                    ],
                    ..Default::default()
                }
            })
            .collect();
        out.push(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", text(service)),
                        kv("host.name", text(format!("host-{}", out.len() % 7))),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "bench".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        i += n;
    }
    out
}

/// Runs `jobs` on `writers` tasks at once; the wall time of all of them.
async fn timed<T, F, Fut>(jobs: Vec<T>, writers: usize, f: F) -> Result<f64>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let t = Instant::now();
    let f = Arc::new(f);
    let results: Vec<Result<()>> = futures::stream::iter(jobs)
        .map(|j| {
            let f = Arc::clone(&f);
            async move { f(j).await }
        })
        .buffer_unordered(writers.max(1))
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(t.elapsed().as_secs_f64())
}

pub async fn run(args: &Args, rows: usize) -> Result<OtlpReport> {
    let bin = find_strata(args.strata_bin.as_deref()).ok_or(
        "no strata binary: build it (cargo build --release -p strata) or pass --strata-bin",
    )?;
    let (dir, _tmp) = work_folder(args.work_dir.as_deref(), "strata-otlp-")?;
    let opts = ServerOptions {
        bin,
        role: "serve",
        data_dir: dir.join("data"),
        object_store: None,
        default_shards: 4,
        flush_age_secs: None,
        log_dir: dir.join("logs"),
        extra_args: args.serve_args.clone(),
        env: vec![],
    };
    let server = Server::start(&opts, &dir.join("cache"), 0).await?;
    let writers = args.writers.max(1);
    eprintln!("  encoding {rows} OTLP records ...");
    let reqs = requests(rows, args.seed);
    let encoded: Vec<Vec<u8>> = reqs.iter().map(Message::encode_to_vec).collect();
    let request_bytes: usize = encoded.iter().map(Vec::len).sum();
    // The baseline: the Arrow batches the server makes of the same records.
    let mut puts = Vec::new();
    for r in &reqs {
        let converted = strata_gateway::otlp::convert::convert(r, &[], 0)?;
        if let Some(b) = converted.batch {
            puts.push(encode_put("otlp_doput", b).await?);
        }
    }
    let put_bytes: usize = puts
        .iter()
        .flatten()
        .map(|d| d.data_body.len() + d.data_header.len())
        .sum();

    eprintln!("  OTLP/gRPC ...");
    let url = server.url.clone();
    let grpc_s = timed(reqs.clone(), writers, move |r| {
        let url = url.clone();
        async move {
            let mut c = LogsServiceClient::connect(url).await?;
            let mut req = tonic::Request::new(r);
            req.metadata_mut()
                .insert("x-strata-table", "otlp_grpc".parse()?);
            let answer = c.export(req).await?.into_inner();
            if let Some(p) = answer
                .partial_success
                .filter(|p| p.rejected_log_records > 0)
            {
                return Err(format!("records rejected: {}", p.error_message).into());
            }
            Ok(())
        }
    })
    .await?;

    eprintln!("  OTLP/HTTP ...");
    let http_url = format!("http://{}/v1/logs", server.http);
    let client = reqwest::Client::new();
    let http_s = timed(encoded, writers, move |body| {
        let (client, url) = (client.clone(), http_url.clone());
        async move {
            let resp = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .header("x-strata-table", "otlp_http")
                .body(body)
                .send()
                .await?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()).into());
            }
            Ok(())
        }
    })
    .await?;

    eprintln!("  Flight DoPut of the same rows as Arrow ...");
    let url = server.url.clone();
    let put_s = timed(puts, writers, move |data| {
        let url = url.clone();
        async move {
            let mut c = FlightClient::connect(&url).await?;
            c.put(data).await
        }
    })
    .await?;

    let mut client = FlightClient::connect(&server.url).await?;
    for table in ["otlp_grpc", "otlp_http", "otlp_doput"] {
        let n = first_count(
            &client
                .query(&format!("SELECT count(*) FROM {table}"))
                .await?,
        );
        if n != Some(rows as u64) {
            return Err(format!("{table} holds {n:?} rows, not {rows}").into());
        }
    }
    let row = |path, seconds: f64, bytes| OtlpRow {
        path,
        rows,
        requests: reqs.len(),
        request_bytes: bytes,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        vs_doput: put_s / seconds,
    };
    Ok(OtlpReport {
        rows,
        writers,
        results: vec![
            row("OTLP/gRPC (protobuf)", grpc_s, request_bytes),
            row("OTLP/HTTP (protobuf)", http_s, request_bytes),
            row("Flight DoPut (Arrow IPC, baseline)", put_s, put_bytes),
        ],
    })
}
