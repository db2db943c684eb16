//! The web console and its JSON API on the HTTP port of `strata serve` over the S3 server:
//! SQL with the Flight port's auth and scopes, table listings, log tails over HTTP, and the
//! console itself driven in a real headless Chromium by Selenium
//! (`engine/tests/console/console_test.py`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, http, http_with, serve_with_tokens};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TOKENS: &str = r#"
[[tokens]]
token = "writer"
tenant = "acme"
scopes = ["read", "write"]
[[tokens]]
token = "reader"
tenant = "acme"
scopes = ["read"]
[[tokens]]
token = "other"
tenant = "globex"
scopes = ["read", "write"]
"#;

const JSON: &str = "Content-Type: application/json\r\n";

/// `n` JSON lines of `logs` rows starting at `start`, one minute apart.
fn log_lines(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| {
            format!(
                "{{\"ts\":\"2025-01-01T{:02}:{:02}:00Z\",\"host\":\"h{}\",\"latency_ms\":{},\"message\":\"m{i}\"}}\n",
                (i / 60) % 24,
                i % 60,
                i % 7,
                i * 3
            )
        })
        .collect()
}

async fn ingest(p: &Proc, table: &str, lines: &str, token: &str) {
    let (code, body) = http(
        "POST",
        &format!("{}/v1/ingest/{table}", p.http),
        lines,
        Some(token),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

async fn sql(p: &Proc, statement: &str, token: Option<&str>) -> (u16, Value) {
    let body = serde_json::json!({ "sql": statement }).to_string();
    let (code, text) = http_with("POST", &format!("{}/v1/sql", p.http), &body, token, JSON).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, v)
}

#[tokio::test]
async fn sql_over_http_has_the_flight_ports_auth_scopes_and_errors() {
    let (p, _dir) = serve_with_tokens("console-sql", TOKENS, &[], &[]);
    ingest(&p, "logs", &log_lines(0, 300), "writer").await;

    let (code, v) = sql(
        &p,
        "SELECT host, count(*) AS n, max(latency_ms) AS worst FROM logs GROUP BY host ORDER BY host",
        Some("reader"),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["columns"][0]["name"], "host");
    assert_eq!(v["columns"][1]["type"], "Int64");
    assert_eq!(v["row_count"], 7);
    assert_eq!(v["rows"][0], serde_json::json!(["h0", 43, 882]));
    assert_eq!(v["truncated"], false);
    assert!(v["elapsed_ms"].as_f64().is_some(), "{v}");
    assert!(
        v["cost"]["rows_scanned"].as_u64().is_some(),
        "the answer carries the query's cost: {v}"
    );

    // The SQL text as the body, and a row bound.
    let (code, text) = http_with(
        "POST",
        &format!("{}/v1/sql", p.http),
        "SELECT ts, message FROM logs ORDER BY ts",
        Some("reader"),
        "Content-Type: text/plain\r\n",
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["row_count"], 300);
    assert_eq!(v["rows"][0][0], "2025-01-01T00:00:00");
    let body = serde_json::json!({"sql": "SELECT * FROM logs", "max_rows": 10}).to_string();
    let (_, text) = http_with(
        "POST",
        &format!("{}/v1/sql", p.http),
        &body,
        Some("reader"),
        JSON,
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["row_count"].as_u64(), v["truncated"].as_bool()),
        (Some(10), Some(true))
    );

    // Errors: precise codes, and nothing stored changes.
    let (code, v) = sql(&p, "SELECT 1", None).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{v}"
    );
    let (code, v) = sql(&p, "SELECT 1", Some("nobody")).await;
    assert_eq!(code, 401, "{v}");
    let (code, v) = sql(&p, "DROP TABLE logs", Some("reader")).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{v}"
    );
    // (A statement the scope check cannot read needs the write scope, so a typo is
    // reported to a writer as what it is.)
    let (code, v) = sql(&p, "SELEC host FROM logs", Some("writer")).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("SELEC"), "{v}");
    let (code, v) = sql(&p, "SELECT * FROM missing", Some("reader")).await;
    assert!(code == 400 || code == 404, "{code} {v}");
    let (code, text) = http_with(
        "POST",
        &format!("{}/v1/sql", p.http),
        "{\"query\": 1}",
        Some("reader"),
        JSON,
    )
    .await;
    assert_eq!(code, 400, "{text}");
    let (code, v) = sql(&p, "   ", Some("reader")).await;
    assert_eq!(code, 400, "{v}");
    // Another tenant sees none of acme's tables.
    let (code, v) = sql(&p, "SELECT count(*) FROM logs", Some("other")).await;
    assert_ne!(code, 200, "{v}");
    let (code, v) = sql(&p, "SELECT count(*) AS n FROM logs", Some("reader")).await;
    assert_eq!((code, &v["rows"][0][0]), (200, &serde_json::json!(300)));

    // Tables with their columns and time column, per tenant.
    let (code, text) = http("GET", &format!("{}/v1/tables", p.http), "", Some("reader")).await;
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let t = &v["tables"][0];
    assert_eq!(
        (t["name"].as_str(), t["time_column"].as_str()),
        (Some("logs"), Some("ts"))
    );
    assert_eq!(t["shards"], 4);
    let mut cols: Vec<&str> = t["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    cols.sort_unstable();
    assert_eq!(cols, ["host", "latency_ms", "message", "ts"]);
    let (_, text) = http("GET", &format!("{}/v1/tables", p.http), "", Some("other")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["tables"],
        serde_json::json!([])
    );
    let (code, _) = http("GET", &format!("{}/v1/tables", p.http), "", None).await;
    assert_eq!(code, 401);
}

/// Reads NDJSON lines of a streamed answer until `done` says so or `within` passes.
async fn read_lines_until(
    reader: &mut BufReader<tokio::net::TcpStream>,
    within: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read_line(&mut line)).await {
            Err(_) => return seen,
            Ok(Ok(0)) => panic!("the tail ended: {seen:?}"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
        // Chunk-size lines of the chunked encoding are not JSON objects.
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if !v.is_object() {
            continue;
        }
        let stop = done(&v);
        seen.push(v);
        if stop {
            return seen;
        }
    }
}

/// Opens `GET path` and returns the reader after the response head (status asserted 200).
async fn open_stream(p: &Proc, path: &str, token: &str) -> BufReader<tokio::net::TcpStream> {
    let host = p.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    assert!(status.contains(" 200 "), "{status}");
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).await.unwrap();
        if h == "\r\n" {
            return reader;
        }
    }
}

#[tokio::test]
async fn a_tail_over_http_sees_the_rows_written_after_it_started() {
    let (p, _dir) = serve_with_tokens(
        "console-tail",
        TOKENS,
        &[],
        &[("STRATA__GATEWAY__FLIGHT__MAX_LOG_TAILS_PER_TENANT", "4")],
    );
    ingest(&p, "logs", &log_lines(0, 40), "writer").await;
    // Every shard, from its end: only rows written from now on arrive.
    let mut tails = Vec::new();
    for shard in 0..4 {
        let mut r = open_stream(
            &p,
            &format!("/v1/tail/logs?shard={shard}&from_offset=end"),
            "reader",
        )
        .await;
        let first = read_lines_until(&mut r, Duration::from_secs(10), |_| true).await;
        assert_eq!(first[0]["shard"], shard, "{first:?}");
        assert!(first[0]["from_offset"].as_u64().is_some(), "{first:?}");
        tails.push(r);
    }
    // The tenant's tail slots are taken: one more is refused with 429.
    let (code, text) = http(
        "GET",
        &format!("{}/v1/tail/logs?shard=0", p.http),
        "",
        Some("reader"),
    )
    .await;
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("max_log_tails_per_tenant"), "{text}");

    let marker = format!("tail-{}", uuid::Uuid::new_v4().simple());
    let line = format!(
        "{{\"ts\":\"2025-01-02T00:00:00Z\",\"host\":\"h1\",\"latency_ms\":1,\"message\":\"{marker}\"}}\n"
    );
    ingest(&p, "logs", &line, "writer").await;
    let mut found = None;
    for (shard, r) in tails.iter_mut().enumerate() {
        // Rows written before the tail started never show.
        let seen = read_lines_until(r, Duration::from_secs(3), |v| {
            v["row"]["message"] == marker.as_str()
        })
        .await;
        assert!(
            seen.iter()
                .all(|v| v.get("heartbeat").is_some() || v["row"]["message"] == marker.as_str()),
            "shard {shard}: {seen:?}"
        );
        if let Some(v) = seen.iter().find(|v| v["row"]["message"] == marker.as_str()) {
            assert!(v["offset"].as_u64().is_some(), "{v}");
            assert_eq!(v["row"]["host"], "h1");
            found = Some(shard);
        }
    }
    assert!(
        found.is_some(),
        "the row written during the tail reached one shard's tail"
    );
    drop(tails);

    // From an offset: the shard's records from there, in order.
    let mut r = open_stream(&p, "/v1/tail/logs?shard=0&from_offset=0", "reader").await;
    let seen = read_lines_until(&mut r, Duration::from_secs(10), |v| v["offset"] == 2).await;
    let offsets: Vec<u64> = seen.iter().filter_map(|v| v["offset"].as_u64()).collect();
    assert_eq!(offsets, [0, 1, 2]);

    // Bad requests.
    for (path, code) in [
        ("/v1/tail/missing?shard=0", 404),
        ("/v1/tail/logs?shard=99", 400),
        ("/v1/tail/logs?shard=x", 400),
        ("/v1/tail/logs?from_offset=soon", 400),
    ] {
        let (got, text) = http("GET", &format!("{}{path}", p.http), "", Some("reader")).await;
        assert!(
            got == code || (code == 400 && got == 404),
            "{path}: {got} {text}"
        );
    }
    let (code, _) = http("GET", &format!("{}/v1/tail/logs", p.http), "", None).await;
    assert_eq!(code, 401);
}

/// An idle tail outlives the port's idle timeout (heartbeats are sent, and bytes sent count
/// as activity), while a client that sends nothing is still cut off.
#[tokio::test]
async fn an_idle_tail_outlives_the_idle_timeout() {
    let (p, _dir) = serve_with_tokens(
        "console-idle",
        TOKENS,
        &[],
        &[("STRATA__NODE__HTTP_IDLE_TIMEOUT_SECS", "1")],
    );
    ingest(&p, "logs", &log_lines(0, 4), "writer").await;
    let mut tails = Vec::new();
    for shard in 0..4 {
        tails.push(open_stream(&p, &format!("/v1/tail/logs?shard={shard}"), "reader").await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let marker = format!("idle-{}", uuid::Uuid::new_v4().simple());
    let line = format!(
        "{{\"ts\":\"2025-01-02T00:00:00Z\",\"host\":\"h2\",\"latency_ms\":1,\"message\":\"{marker}\"}}\n"
    );
    ingest(&p, "logs", &line, "writer").await;
    let mut found = false;
    for r in &mut tails {
        let seen = read_lines_until(r, Duration::from_secs(2), |v| {
            v["row"]["message"] == marker.as_str()
        })
        .await;
        assert!(
            seen.iter().any(|v| v.get("heartbeat").is_some()),
            "an idle tail sends heartbeats: {seen:?}"
        );
        found |= seen.iter().any(|v| v["row"]["message"] == marker.as_str());
    }
    assert!(
        found,
        "a tail idle for 3 s (idle timeout 1 s) still delivers"
    );

    // Without `shard`: every shard in one stream (what the console opens), from the end, or
    // from given offsets per shard.
    let mut all = open_stream(&p, "/v1/tail/logs", "reader").await;
    let first = read_lines_until(&mut all, Duration::from_secs(10), |_| true).await;
    let starts = first[0]["from_offsets"].as_object().unwrap().clone();
    assert_eq!(starts.len(), 4, "{first:?}");
    let marker2 = format!("all-{}", uuid::Uuid::new_v4().simple());
    let lines: String = (0..8)
        .map(|i| {
            format!(
                "{{\"ts\":\"2025-01-03T00:00:0{i}Z\",\"host\":\"h{i}\",\"latency_ms\":1,\"message\":\"{marker2}\"}}\n"
            )
        })
        .collect();
    ingest(&p, "logs", &lines, "writer").await;
    let seen = read_lines_until(&mut all, Duration::from_secs(10), |v| {
        v["row"]["message"] == marker2.as_str()
    })
    .await;
    let got = seen
        .iter()
        .find(|v| v["row"]["message"] == marker2.as_str())
        .expect("the row written after the tail started arrived");
    let shard = got["shard"].as_u64().unwrap().to_string();
    assert_eq!(
        got["offset"], starts[&shard],
        "the first record after the end: {seen:?}"
    );
    drop(all);
    let mut again = open_stream(
        &p,
        &format!("/v1/tail/logs?offsets={shard}:0&from_offset=end"),
        "reader",
    )
    .await;
    let first = read_lines_until(&mut again, Duration::from_secs(10), |_| true).await;
    assert_eq!(first[0]["from_offsets"][&shard], 0, "{first:?}");
    let seen = read_lines_until(&mut again, Duration::from_secs(10), |v| v["offset"] == 0).await;
    let last = seen.last().unwrap();
    assert_eq!(
        (
            last["offset"].as_u64(),
            last["shard"].as_u64().map(|s| s.to_string())
        ),
        (Some(0), Some(shard))
    );
    for bad in ["/v1/tail/logs?offsets=x", "/v1/tail/logs?offsets=1:y"] {
        let (code, text) = http("GET", &format!("{}{bad}", p.http), "", Some("reader")).await;
        assert_eq!(code, 400, "{bad}: {text}");
    }
    // A silent client is still closed.
    let host = p.http.trim_start_matches("http://");
    let s = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut buf = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut buf))
        .await
        .expect("the server closes a silent connection");
    assert_eq!(n.unwrap_or(0), 0, "{buf}");
}

#[tokio::test]
async fn the_console_is_served_unless_turned_off() {
    let (p, _dir) = serve_with_tokens("console-page", TOKENS, &[], &[]);
    let (code, page) = http("GET", &format!("{}/", p.http), "", None).await;
    assert_eq!(code, 200);
    assert!(page.contains("/console/app.js"), "{page}");
    // No other site may frame it or run scripts in it.
    let r = reqwest::get(format!("{}/", p.http)).await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let (code, js) = http("GET", &format!("{}/console/app.js", p.http), "", None).await;
    assert_eq!(code, 200);
    assert!(js.contains("/v1/sql"), "the script calls the SQL API");
    let (p2, _dir2) = serve_with_tokens("console-off", TOKENS, &["--no-console"], &[]);
    let (code, _) = http("GET", &format!("{}/", p2.http), "", None).await;
    assert_eq!(code, 404, "--no-console turns the page off");
    let (code, v) = sql(&p2, "SELECT 1 AS one", Some("reader")).await;
    assert_eq!(
        (code, &v["rows"][0][0]),
        (200, &serde_json::json!(1)),
        "the API stays"
    );
    drop(p);
}

/// One raw request with the given header lines; the status code.
async fn raw_status(p: &Proc, request_head: &str) -> u16 {
    use tokio::io::AsyncReadExt;
    let host = p.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(request_head.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A browser cannot be made to run statements for another site: cross-site requests are
/// refused, and without auth a name other than a loopback one (DNS rebinding) too.
#[tokio::test]
async fn requests_a_browser_sends_for_another_site_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::s3_url("console-guard");
    let p = Proc::start(
        &[
            "serve",
            "--object-store",
            &store,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    let body = "SELECT 1";
    let post = |extra: &str, host: &str| {
        format!(
            "POST /v1/sql HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let here = p.http.trim_start_matches("http://").to_string();
    assert_eq!(
        raw_status(&p, &post("", &here)).await,
        200,
        "a plain client"
    );
    let localhost = here.replace("127.0.0.1", "localhost");
    assert_eq!(raw_status(&p, &post("", &localhost)).await, 200);
    assert_eq!(
        raw_status(
            &p,
            &post(
                &format!("Origin: http://{here}\r\nSec-Fetch-Site: same-origin\r\n"),
                &here
            )
        )
        .await,
        200,
        "the console's own page"
    );
    assert_eq!(
        raw_status(&p, &post("Sec-Fetch-Site: cross-site\r\n", &here)).await,
        403
    );
    assert_eq!(
        raw_status(&p, &post("Origin: http://evil.example\r\n", &here)).await,
        403
    );
    assert_eq!(
        raw_status(&p, &post("", "evil.example:8080")).await,
        403,
        "DNS rebinding: a foreign name for a server without auth"
    );
    let ingest = format!(
        "POST /v1/ingest/t HTTP/1.1\r\nHost: {here}\r\nSec-Fetch-Site: cross-site\r\n\
         Content-Length: 8\r\nConnection: close\r\n\r\n{{\"a\":1}}\n"
    );
    assert_eq!(raw_status(&p, &ingest).await, 403, "writes too");
    // Health and metrics answer any prober (a kubelet sends the pod's address as Host).
    for path in ["/healthz", "/readyz", "/metrics"] {
        let get =
            format!("GET {path} HTTP/1.1\r\nHost: 10.1.2.3:8080\r\nConnection: close\r\n\r\n");
        assert_eq!(raw_status(&p, &get).await, 200, "{path}");
    }
}

/// The console in Debian's headless Chromium, driven by Selenium: sign in, run a query and
/// page through it, the histogram and its zoom, a tail that receives a row written during
/// the test, the cluster view. Screenshots land in `target/console-screenshots/`.
#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let (p, _dir) = serve_with_tokens("console-browser", TOKENS, &[], &[]);
    ingest(&p, "logs", &log_lines(0, 600), "writer").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/console_test.py");
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::task::spawn_blocking({
        let base = p.http.clone();
        let shots = shots.clone();
        move || {
            Command::new("python3")
                .args([
                    script,
                    "--base-url",
                    &base,
                    "--token",
                    "writer",
                    "--table",
                    "logs",
                ])
                .arg("--screenshots")
                .arg(&shots)
                .output()
                .expect("python3 must be installed with selenium (./minio/with-s3.sh installs it)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    for shot in ["sql.png", "histogram.png", "tail.png", "cluster.png"] {
        assert!(shots.join(shot).exists(), "{shot} was saved");
    }
}
