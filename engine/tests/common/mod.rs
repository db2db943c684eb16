//! Shared helpers of the end-to-end tests: real `strata` processes on 127.0.0.1 ports, the
//! real S3 server from `./minio/with-s3.sh`, and Flight clients.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::FlightClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

/// The S3 URL for this test (a unique prefix), failing loudly without the S3 server.
pub fn s3_url(test: &str) -> String {
    let base = std::env::var("STRATA_TEST_S3_URL").unwrap_or_else(|_| {
        panic!(
            "STRATA_TEST_S3_URL is not set: this test needs the local S3 server. \
             Run the tests with ./minio/with-s3.sh cargo test --workspace"
        )
    });
    format!(
        "{}/{test}-{}",
        base.trim_end_matches('/'),
        uuid::Uuid::new_v4().simple()
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `strata` process; killed on drop.
pub struct Proc {
    pub child: Child,
    pub grpc: String,
    pub http: String,
    pub grpc_port: u16,
    pub http_port: u16,
}

impl Proc {
    /// Start `strata <args...> --grpc-addr .. --http-addr ..` on free ports and wait until it
    /// is ready. A free port can be taken by a concurrent test between picking it and the
    /// bind: a process that exits before it is ready is started again on other ports.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        for _ in 0..3 {
            if let Some(p) = Self::try_start_on(args, env, free_port(), free_port()) {
                return p;
            }
        }
        panic!("strata {args:?} exited before it was ready, three times (see its stderr)");
    }

    pub fn start_on(args: &[&str], env: &[(&str, &str)], grpc_port: u16, http_port: u16) -> Proc {
        Self::try_start_on(args, env, grpc_port, http_port)
            .unwrap_or_else(|| panic!("strata {args:?} exited before it was ready"))
    }

    /// `None` when the process exits before it is ready.
    fn try_start_on(
        args: &[&str],
        env: &[(&str, &str)],
        grpc_port: u16,
        http_port: u16,
    ) -> Option<Proc> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(args)
            .arg("--grpc-addr")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http_port}"))
            .env("STRATA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start strata");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("strata ready") {
                    let _ = tx.send(());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(()) => {}
            // Its stdout closed: it exited (e.g. a port taken meanwhile).
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("strata {args:?} did not become ready within 120 s");
            }
        }
        Some(Proc {
            child,
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            http: format!("http://127.0.0.1:{http_port}"),
            grpc_port,
            http_port,
        })
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("strata did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .expect("url")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("connect")
}

pub async fn sql_client(url: &str) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(channel(url).await)
}

/// Run a query and collect its batches.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(to_status)?;
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep
            .ticket
            .ok_or_else(|| tonic::Status::internal("no ticket"))?;
        let stream = client.do_get(ticket).await.map_err(to_status)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(to_status)?;
        out.extend(batches);
    }
    Ok(out)
}

pub fn to_status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// One i64/u64 value from the first column of the first row.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).expect("cast");
    arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&c).value(0)
}

/// DoPut `batch` into `table` with optional idempotent producer headers.
pub async fn put(
    url: &str,
    table: &str,
    batch: RecordBatch,
    producer: Option<(&str, u64)>,
) -> Result<serde_json::Value, tonic::Status> {
    let mut client = FlightClient::new(channel(url).await);
    if let Some((p, seq)) = producer {
        client
            .add_header("x-strata-producer-id", p)
            .map_err(to_status)?;
        client
            .add_header("x-strata-sequence", &seq.to_string())
            .map_err(to_status)?;
    }
    let descriptor = arrow_flight::FlightDescriptor::new_path(vec![table.to_string()]);
    let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(vec![Ok(batch)]));
    let results: Vec<arrow_flight::PutResult> = client
        .do_put(stream)
        .await
        .map_err(to_status)?
        .try_collect()
        .await
        .map_err(to_status)?;
    let meta = results
        .first()
        .map(|r| r.app_metadata.clone())
        .unwrap_or_default();
    Ok(serde_json::from_slice(&meta).unwrap_or(serde_json::Value::Null))
}

/// A `logs`-like batch with unique ids `start..start+n`.
pub fn logs_batch(start: i64, n: i64) -> RecordBatch {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let ids: Vec<i64> = (start..start + n).collect();
    RecordBatch::try_from_iter(vec![
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(
                ids.iter().map(|i| now - 1_000_000 + i).collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "host",
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("h{}", i % 17))
                    .collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "level",
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| if i % 10 == 0 { "ERROR" } else { "INFO" })
                    .collect::<Vec<_>>(),
            )) as _,
        ),
        ("id", Arc::new(Int64Array::from(ids)) as _),
    ])
    .expect("batch")
}

/// One plain HTTP/1.1 request (no client library between the test and the server):
/// (status code, body).
pub async fn http(method: &str, url: &str, body: &str, token: Option<&str>) -> (u16, String) {
    http_with(method, url, body, token, "").await
}

/// [`http`] with more header lines (`"Content-Type: application/json\r\n"`).
pub async fn http_with(
    method: &str,
    url: &str,
    body: &str,
    token: Option<&str>,
    headers: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// `strata serve` over the S3 server (a fresh prefix for `test`) with the tokens file
/// `tokens` (TOML `[[tokens]]`), more arguments and environment.
pub fn serve_with_tokens(
    test: &str,
    tokens: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, tokens).unwrap();
    let store = s3_url(test);
    let data = dir.path().join("data");
    let mut args = vec![
        "serve",
        "--object-store",
        &store,
        "--data-dir",
        data.to_str().unwrap(),
        "--auth-tokens-file",
        tokens_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let p = Proc::start(&args, env);
    (p, dir)
}

/// Python (pyarrow only): `statement_cost(client, sql, options)` runs `sql` as a Flight SQL
/// statement (a `CommandStatementQuery` in an `Any`, encoded by hand), reads the result chunk
/// by chunk and returns the `strata_cost` object of the last chunk's app_metadata.
pub const PY_STATEMENT_COST: &str = r#"
import json
import pyarrow.flight as fl

def _field(n, b):
    out, v = bytes([(n << 3) | 2]), len(b)
    while True:
        out += bytes([(v & 0x7f) | (0x80 if v > 0x7f else 0)])
        v >>= 7
        if not v:
            return out + b

def statement_cost(client, sql, options=None):
    cmd = _field(1, sql.encode())
    anyv = _field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + _field(2, cmd)
    options = options or fl.FlightCallOptions()
    info = client.get_flight_info(fl.FlightDescriptor.for_command(anyv), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    last = None
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        if chunk.app_metadata is not None:
            last = chunk.app_metadata
    return json.loads(last.to_pybytes())["strata_cost"]
"#;
