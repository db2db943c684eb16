//! OTLP logs ingest end to end, against a real `strata serve` over the real S3 server:
//! the OpenTelemetry Python SDK's own exporters (gRPC and HTTP/protobuf), the
//! specification's example OTLP/JSON payload, protobuf + gzip with partial success, the
//! gRPC service from Rust, bad requests, auth and quotas — each then read back by SQL.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use common::{Proc, free_port, query, sql_client};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

const TOKENS: &str = r#"
[[tokens]]
token = "writer"
tenant = "acme"
scopes = ["read", "write"]
[[tokens]]
token = "reader"
tenant = "acme"
scopes = ["read"]
"#;

/// `strata serve` on S3 with the tokens above; `extra` adds arguments.
fn serve(test: &str, extra: &[&str]) -> (Proc, tempfile::TempDir) {
    common::serve_with_tokens(test, TOKENS, extra, &[])
}

async fn sql(p: &Proc, q: &str) -> Vec<RecordBatch> {
    let mut c = sql_client(&p.grpc).await;
    c.set_header("authorization", "Bearer writer");
    query(&mut c, q)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// Polls `q` (one BIGINT) until it returns `want`; the written rows are visible within a
/// second, so 15 s means they are not coming.
async fn wait_count(p: &Proc, q: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = common::scalar_i64(&sql(p, q).await);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{q}: {got} rows, want {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One row of `q` as strings (NULL as "NULL").
async fn row(p: &Proc, q: &str) -> Vec<String> {
    let batches = sql(p, q).await;
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap_or_else(|| panic!("{q}: no row"));
    b.columns()
        .iter()
        .map(|c| {
            let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
            let s = c.as_string::<i32>();
            if s.is_null(0) {
                "NULL".to_string()
            } else {
                s.value(0).to_string()
            }
        })
        .collect()
}

/// One HTTP request with raw bytes: (status, headers, body).
async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A request from service `service` with records (time in ns, body, trace id bytes).
fn request(service: &str, records: &[(u64, &str, Vec<u8>)]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records
                    .iter()
                    .map(|(t, body, trace)| LogRecord {
                        time_unix_nano: *t,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue {
                            value: Some(Value::StringValue((*body).into())),
                        }),
                        trace_id: trace.clone(),
                        attributes: vec![kv("user.id", Value::IntValue(7))],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_exporters_send_logs_over_grpc_and_http() {
    let otlp_port = free_port();
    let otlp_addr = format!("127.0.0.1:{otlp_port}");
    let (p, _dir) = serve("otlp-sdk", &["--otlp-grpc-addr", &otlp_addr]);
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_SDK)
        .arg(&p.grpc)
        .arg(format!("http://{otlp_addr}"))
        .arg(format!("{}/v1/logs", p.http))
        .output()
        .expect("python3 must be installed with the OpenTelemetry SDK (./minio/with-s3.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python exporters failed:\n{stdout}\n{stderr}"
    );
    let trace_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .unwrap_or_else(|| panic!("no trace id printed:\n{stdout}\n{stderr}"))
        .trim()
        .to_string();
    // 3 records by gRPC on the main port (gzip), 2 on the OTLP port, 2 by HTTP/protobuf;
    // the exporter with a read-only token stored nothing.
    wait_count(&p, "SELECT count(*) FROM otel_logs", 7).await;
    let by_service = sql(
        &p,
        "SELECT service_name, count(*) AS n FROM otel_logs GROUP BY 1 ORDER BY 1",
    )
    .await;
    let pairs: Vec<(String, i64)> = by_service
        .iter()
        .flat_map(|b| {
            let names = b.column(0).as_string::<i32>().clone();
            let n = b
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            (0..b.num_rows()).map(move |i| (names.value(i).to_string(), n.value(i)))
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("py-grpc".to_string(), 3),
            ("py-http".to_string(), 2),
            ("py-otlp-port".to_string(), 2)
        ]
    );
    // The record logged inside a span carries its trace and span ids, as lower-case hex.
    let r = row(
        &p,
        &format!(
            "SELECT body, severity_text, severity_number, length(span_id), scope_name, \
             attributes LIKE '%\"order.id\": 42%' OR attributes LIKE '%\"order.id\":42%' \
             FROM otel_logs WHERE trace_id = '{trace_id}'"
        ),
    )
    .await;
    assert_eq!(r[0], "payment failed");
    assert_eq!(r[1], "ERROR");
    assert_eq!(r[2], "17");
    assert_eq!(r[3], "16");
    assert_eq!(r[4], "checkout.payments");
    assert_eq!(r[5], "true", "order.id in the attributes");
    // Time: the SDK stamps each record; all are within the last minutes.
    let r = row(
        &p,
        "SELECT count(*) FROM otel_logs WHERE timestamp > now() - INTERVAL '10 minutes' \
         AND observed_timestamp IS NOT NULL",
    )
    .await;
    assert_eq!(r[0], "7");
    assert!(stdout.contains("read-only token refused"), "{stdout}");
}

/// The exporters of the OpenTelemetry Python SDK, configured as a user would: argv = gRPC
/// endpoint, OTLP-port endpoint, HTTP endpoint.
const PY_SDK: &str = r#"
import logging, sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

grpc_url, otlp_url, http_url = sys.argv[1:4]
auth = {"authorization": "Bearer writer"}

def pipeline(service, exporter):
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(service)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(LoggingHandler(level=logging.NOTSET, logger_provider=provider))
    return provider, logger

tracer = TracerProvider().get_tracer("test")

provider, log = pipeline("py-grpc", GrpcExporter(endpoint=grpc_url, insecure=True, headers=auth,
                                                 compression=GrpcCompression.Gzip, timeout=10))
scoped = logging.getLogger("checkout.payments")
scoped.propagate = False
scoped.setLevel(logging.DEBUG)
scoped.addHandler(LoggingHandler(level=logging.NOTSET, logger_provider=provider))
log.info("started")
with tracer.start_as_current_span("charge") as span:
    scoped.error("payment failed", extra={"order.id": 42})
    print("trace %032x" % span.get_span_context().trace_id)
log.warning("slow")
provider.shutdown()

provider, log = pipeline("py-otlp-port", GrpcExporter(endpoint=otlp_url, insecure=True,
                                                      headers=auth, timeout=10))
log.info("one")
log.info("two")
provider.shutdown()

provider, log = pipeline("py-http", HttpExporter(endpoint=http_url, headers=auth, timeout=10))
log.info("three")
log.error("four")
provider.shutdown()

# A read-only token: the exporter's export fails (the SDK logs it); nothing is stored.
provider, log = pipeline("py-refused", HttpExporter(
    endpoint=http_url, headers={"authorization": "Bearer reader"}, timeout=10))
log.info("refused")
provider.shutdown()
import requests
r = requests.post(http_url, data=b"", headers={"authorization": "Bearer reader",
                                               "content-type": "application/x-protobuf"})
assert r.status_code == 403, r.status_code
print("read-only token refused")
print("done")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specification_example_and_protobuf_with_partial_success_over_http() {
    let (p, _dir) = serve("otlp-http", &[]);
    let url = format!("{}/v1/logs", p.http);
    let auth = ("authorization", "Bearer writer");

    // The OTLP/JSON example of the specification (opentelemetry-proto/examples/logs.json).
    let example = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/otlp-logs-example.json"
    ))
    .unwrap();
    let (code, headers, body) =
        post(&url, &[auth, ("content-type", "application/json")], example).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        answer.get("partialSuccess").is_none_or(|v| v.is_null()),
        "{answer}"
    );
    wait_count(&p, "SELECT count(*) FROM otel_logs", 1).await;
    let r = row(
        &p,
        "SELECT CAST(timestamp AS VARCHAR), severity_text, body, trace_id, span_id, \
         service_name, scope_name, scope_version, scope_attributes, \
         attributes, resource_attributes FROM otel_logs",
    )
    .await;
    assert_eq!(r[0], "2018-12-13T14:51:00.300Z");
    assert_eq!(r[1], "Information");
    assert_eq!(r[2], "Example log record");
    assert_eq!(r[3], "5b8efff798038103d269b633813fc60c");
    assert_eq!(r[4], "eee19b7ec3c1b174");
    assert_eq!(r[5], "my.service");
    assert_eq!((r[6].as_str(), r[7].as_str()), ("my.library", "1.0.0"));
    assert_eq!(r[8], r#"{"my.scope.attribute":"some scope attribute"}"#);
    let attrs: serde_json::Value = serde_json::from_str(&r[9]).unwrap();
    assert_eq!(
        attrs,
        serde_json::json!({
            "string.attribute": "some string",
            "boolean.attribute": true,
            "int.attribute": 10,
            "double.attribute": 637.704,
            "array.attribute": ["many", "values"],
            "map.attribute": {"some.map.key": "some value"},
        })
    );
    assert_eq!(r[10], r#"{"service.name":"my.service"}"#);

    // Protobuf, gzip, one bad record of three: two stored, one reported.
    let req = request(
        "billing",
        &[
            (T0, "a", (1..=16).collect()),
            (T0 + 1, "b", vec![1, 2, 3]),
            (T0 + 2, "c", Vec::new()),
        ],
    );
    let (code, headers, body) = post(
        &url,
        &[
            auth,
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gzip(&req.encode_to_vec()),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(&body[..]).unwrap();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("log record 1") && partial.error_message.contains("16"),
        "{}",
        partial.error_message
    );
    wait_count(
        &p,
        "SELECT count(*) FROM otel_logs WHERE service_name = 'billing'",
        2,
    )
    .await;
    let r = row(
        &p,
        "SELECT string_agg(body, ',' ORDER BY body), count(trace_id) FROM otel_logs \
         WHERE service_name = 'billing'",
    )
    .await;
    assert_eq!(r, ["a,c", "1"]);

    // The table header picks another table, created by this first write.
    let (code, _, body) = post(
        &url,
        &[
            auth,
            ("content-type", "application/x-protobuf"),
            ("x-strata-table", "audit_logs"),
        ],
        request("audit", &[(T0, "x", Vec::new())]).encode_to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    wait_count(&p, "SELECT count(*) FROM audit_logs", 1).await;

    // An attribute is promoted to a column added to the table.
    sql(&p, "ALTER TABLE otel_logs ADD COLUMN user_id BIGINT").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // The handler reads a table's columns again after at most 5 s.
        let (code, _, _) = post(
            &url,
            &[auth, ("content-type", "application/x-protobuf")],
            request("promoted", &[(T0, "p", Vec::new())]).encode_to_vec(),
        )
        .await;
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let n = common::scalar_i64(
            &sql(
                &p,
                "SELECT count(*) FROM otel_logs WHERE service_name = 'promoted' AND user_id = 7 \
                 AND attributes IS NULL",
            )
            .await,
        );
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "user.id never landed in user_id");
    }
    // Everything stored so far is intact.
    let before = common::scalar_i64(&sql(&p, "SELECT count(*) FROM otel_logs").await);

    // Bad requests: a precise code and a google.rpc.Status body in the request's type;
    // nothing stored.
    // (request headers, body, HTTP code, what the message says)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![auth, ("content-type", "text/plain")],
            b"hi".to_vec(),
            415,
            "application/x-protobuf or application/json",
        ),
        (
            vec![auth, ("content-type", "application/json")],
            b"{\"resourceLogs\": [".to_vec(),
            400,
            "not an OTLP/JSON",
        ),
        (
            vec![auth, ("content-type", "application/x-protobuf")],
            vec![0xff; 7],
            400,
            "not a protobuf",
        ),
        (
            vec![
                auth,
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            b"not gzip".to_vec(),
            400,
            "gzip",
        ),
        (
            vec![
                auth,
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            b"{}".to_vec(),
            400,
            "Content-Encoding",
        ),
        (
            vec![("content-type", "application/json")],
            b"{}".to_vec(),
            401,
            "",
        ),
        (
            vec![
                ("authorization", "Bearer reader"),
                ("content-type", "application/json"),
            ],
            b"{}".to_vec(),
            403,
            "write",
        ),
    ];
    for (headers, body, want, says) in cases {
        let (code, resp_headers, resp) = post(&url, &headers, body).await;
        let text = String::from_utf8_lossy(&resp).to_string();
        assert_eq!(code, want, "{headers:?}: {text}");
        if resp_headers["content-type"] == "application/json" {
            let status: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(status["code"].as_i64().unwrap() > 0, "{text}");
            assert!(
                status["message"].as_str().unwrap().contains(says),
                "{headers:?}: {text}"
            );
        }
    }
    let after = common::scalar_i64(&sql(&p, "SELECT count(*) FROM otel_logs").await);
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_service_reports_partial_success_and_shares_the_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    // 3 kB of ingest burst per tenant, refilled at 1 byte/s.
    std::fs::write(
        &config,
        "[gateway.quota.ingest_bytes]\nper_second = 1.0\nburst = 3000.0\n",
    )
    .unwrap();
    let (p, _d) = serve("otlp-grpc", &["--config", config.to_str().unwrap()]);
    let channel = common::channel(&p.grpc).await;
    let mut client = LogsServiceClient::new(channel);
    let with_token = |req: ExportLogsServiceRequest, token: &str| {
        let mut r = tonic::Request::new(req);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    let ok = client
        .export(with_token(
            request(
                "grpc",
                &[(T0, "kept", Vec::new()), (u64::MAX, "too late", Vec::new())],
            ),
            "writer",
        ))
        .await
        .expect("export")
        .into_inner();
    let partial = ok.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("2262"),
        "{}",
        partial.error_message
    );
    wait_count(&p, "SELECT count(*) FROM otel_logs", 1).await;
    let e = client
        .export(with_token(
            request("grpc", &[(T0, "x", Vec::new())]),
            "reader",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = client
        .export(tonic::Request::new(request(
            "grpc",
            &[(T0, "x", Vec::new())],
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");

    // Past the tenant's ingest byte burst: RESOURCE_EXHAUSTED over gRPC, 429 with
    // Retry-After over HTTP, and nothing more stored.
    let big: Vec<(u64, &str, Vec<u8>)> = (0..100)
        .map(|i| (T0 + i, "0123456789abcdef0123456789", Vec::new()))
        .collect();
    let e = client
        .export(with_token(request("grpc", &big), "writer"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("ingest byte rate"), "{e}");
    let (code, headers, body) = post(
        &format!("{}/v1/logs", p.http),
        &[
            ("authorization", "Bearer writer"),
            ("content-type", "application/x-protobuf"),
        ],
        request("grpc", &big).encode_to_vec(),
    )
    .await;
    assert_eq!(code, 429, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("retry-after"));
    // JSON ingest counts against the same bucket.
    let (code, _) = common::http(
        "POST",
        &format!("{}/v1/ingest/events", p.http),
        &"{\"ts\":\"2026-01-01T00:00:00Z\",\"v\":1}\n".repeat(100),
        Some("writer"),
    )
    .await;
    assert_eq!(code, 429);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        common::scalar_i64(&sql(&p, "SELECT count(*) FROM otel_logs").await),
        1
    );
}
