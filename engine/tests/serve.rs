//! `strata serve` end to end: JSON ingest and dead letters, bad input, log reads and tails,
//! auth and tenants, the CLI, graceful shutdown. Real processes, real S3 server.

mod common;

use std::process::Command;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use arrow_flight::{FlightClient, Ticket};
use common::*;
use futures::{StreamExt, TryStreamExt};

fn serve(test: &str, extra: &[&str]) -> (Proc, tempfile::TempDir, String) {
    let url = s3_url(test);
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "serve",
        "--object-store",
        url.as_str(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let p = Proc::start(&args, &[]);
    (p, dir, url)
}

fn strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_ingest_rejects_or_dead_letters_bad_lines() {
    let (p, _d, _) = serve("json", &[]);
    let good = "{\"ts\":\"2026-01-01T00:00:00Z\",\"host\":\"a\",\"n\":1}\n{\"ts\":\"2026-01-01T00:00:01Z\",\"host\":\"b\",\"n\":2}\n";
    let (code, body) = http("POST", &format!("{}/v1/ingest/jl", p.http), good, None).await;
    assert_eq!(code, 200, "{body}");
    let bad = "{\"ts\":\"2026-01-01T00:00:02Z\",\"host\":\"c\",\"n\":3}\n{\"ts\":\"2026-01-01T00:00:03Z\",\"host\":\"d\",\"n\":\"oops\"}\n";
    let (code, body) = http("POST", &format!("{}/v1/ingest/jl", p.http), bad, None).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 2"), "{body}");
    let mut c = sql_client(&p.grpc).await;
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM jl").await.unwrap()),
        2,
        "a rejected request stores nothing"
    );
    let (code, body) = http(
        "POST",
        &format!("{}/v1/ingest/jl?on_error=dead_letter", p.http),
        bad,
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"rejected\":1"), "{body}");
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM jl").await.unwrap()),
        3
    );
    let b = query(&mut c, "SELECT line, error FROM jl__rejected")
        .await
        .unwrap();
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let line = arrow::compute::cast(b[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    assert_eq!(
        line.as_primitive::<arrow::datatypes::Int64Type>().value(0),
        2
    );
    // Malformed JSON.
    let (code, _) = http(
        "POST",
        &format!("{}/v1/ingest/jl", p.http),
        "{not json",
        None,
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_invalid_argument_and_store_nothing() {
    let (p, _d, _) = serve("badput", &["--max-batch-bytes", "200000"]);
    put(&p.grpc, "t", logs_batch(0, 10), None).await.unwrap();
    // Type conflict names the column and both types.
    let wrong = RecordBatch::try_from_iter(vec![
        (
            "ts",
            std::sync::Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![1])) as _,
        ),
        (
            "id",
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["x"])) as _,
        ),
    ])
    .unwrap();
    let e = put(&p.grpc, "t", wrong, None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("`id`") && e.message().contains("Int64"),
        "{}",
        e.message()
    );
    // Missing time column.
    let no_ts = RecordBatch::try_from_iter(vec![(
        "id",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])) as _,
    )])
    .unwrap();
    let e = put(&p.grpc, "t", no_ts, None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("ts"), "{}", e.message());
    // Oversized.
    let e = put(&p.grpc, "t", logs_batch(0, 50_000), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    // Bad SQL: INVALID_ARGUMENT with a position; unknown table; confinement.
    let mut c = sql_client(&p.grpc).await;
    let e = query(&mut c, "SELEC 1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = query(&mut c, "SELECT * FROM nope").await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::InvalidArgument | tonic::Code::NotFound
        ),
        "{e}"
    );
    let e = query(
        &mut c,
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    // The server is up and nothing partial was stored.
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM t").await.unwrap()),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_reads_by_offset_and_tails() {
    let (p, _d, _) = serve("log", &["--default-shards", "1"]);
    put(&p.grpc, "lg", logs_batch(0, 100), None).await.unwrap();
    let mut fc = FlightClient::new(channel(&p.grpc).await);
    let ticket = Ticket::new(r#"{"log":{"table":"lg","shard":0,"from_offset":40,"max_rows":25}}"#);
    let batches: Vec<RecordBatch> = fc
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let offs: Vec<u64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("_offset")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(offs, (40..65).collect::<Vec<u64>>());
    // A tail from the end sees rows acknowledged later.
    let ticket = Ticket::new(r#"{"log":{"table":"lg","shard":0,"from_offset":100,"follow":true}}"#);
    let mut tail = fc.do_get(ticket).await.unwrap();
    put(&p.grpc, "lg", logs_batch(100, 5), None).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tail.next().await {
                Some(Ok(b)) if b.num_rows() > 0 => return b,
                Some(Ok(_)) => continue,
                other => panic!("tail ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the tail delivers new records within 5 s");
    let off = next
        .column_by_name("_offset")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(off.value(0), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scope_calls_and_tenants_see_only_their_tables() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        tokens.path(),
        r#"
[[tokens]]
token = "acme-writer"
tenant = "acme"
scopes = ["read", "write"]
[[tokens]]
token = "acme-reader"
tenant = "acme"
scopes = ["read"]
[[tokens]]
token = "globex-writer"
tenant = "globex"
scopes = ["read", "write"]
"#,
    )
    .unwrap();
    let (p, _d, _) = serve(
        "auth",
        &["--auth-tokens-file", tokens.path().to_str().unwrap()],
    );
    let with = |t: &str| {
        let grpc = p.grpc.clone();
        let t = t.to_string();
        async move {
            let mut c = sql_client(&grpc).await;
            c.set_header("authorization", format!("Bearer {t}"));
            c
        }
    };
    // No token / a wrong token.
    let mut anon = sql_client(&p.grpc).await;
    assert_eq!(
        query(&mut anon, "SELECT 1").await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut wrong = with("nope").await;
    assert_eq!(
        query(&mut wrong, "SELECT 1").await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    // HTTP ingest with a read token: 403; with a writer: 200.
    let row = "{\"ts\":\"2026-01-01T00:00:00Z\",\"v\":1}\n";
    let (code, _) = http(
        "POST",
        &format!("{}/v1/ingest/secret", p.http),
        row,
        Some("acme-reader"),
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = http("POST", &format!("{}/v1/ingest/secret", p.http), row, None).await;
    assert_eq!(code, 401);
    let (code, body) = http(
        "POST",
        &format!("{}/v1/ingest/secret", p.http),
        row,
        Some("acme-writer"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A write over Flight SQL with a read token: PERMISSION_DENIED.
    let mut reader = with("acme-reader").await;
    let e = query(&mut reader, "DELETE FROM secret WHERE v = 1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert_eq!(
        scalar_i64(
            &query(&mut reader, "SELECT count(*) FROM secret")
                .await
                .unwrap()
        ),
        1
    );
    // Another tenant does not see acme's table.
    let mut globex = with("globex-writer").await;
    let e = query(&mut globex, "SELECT count(*) FROM secret")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::InvalidArgument | tonic::Code::NotFound
        ),
        "{e}"
    );
    // Tokens never appear in the error messages.
    assert!(!e.message().contains("globex-writer"));
    // The status page shows a tenant's tables to that tenant only, and none without a token.
    let status = |t: Option<&'static str>| {
        let url = format!("{}/v1/status", p.http);
        async move { http("GET", &url, "", t).await.1 }
    };
    assert!(status(Some("acme-reader")).await.contains("\"secret\""));
    assert!(!status(Some("globex-writer")).await.contains("\"secret\""));
    assert!(!status(None).await.contains("\"secret\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_against_serve_and_sigterm_flushes() {
    let (mut p, _d, url) = serve("cli", &[]);
    let csv = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    let mut text = String::from("ts,host,latency_ms\n");
    for i in 0..500 {
        text.push_str(&format!(
            "2026-01-01T00:00:{:02}Z,h{},{}.5\n",
            i % 60,
            i % 7,
            i
        ));
    }
    std::fs::write(csv.path(), text).unwrap();
    let (ok, out, err) = strata(&[
        "ingest",
        csv.path().to_str().unwrap(),
        "--table",
        "loaded",
        "--gateway",
        &p.grpc,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("loaded 500 rows"), "{out}");
    let (ok, out, err) = strata(&[
        "sql",
        "--gateway",
        &p.grpc,
        "--format",
        "csv",
        "-e",
        "SELECT count(*) AS n FROM loaded",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().nth(1), Some("500"), "{out}");
    let (ok, out, _) = strata(&[
        "sql",
        "--gateway",
        &p.grpc,
        "--format",
        "json",
        "-e",
        "SELECT host, count(*) AS n FROM loaded GROUP BY host ORDER BY host LIMIT 1",
    ]);
    assert!(ok);
    assert!(
        out.contains("\"host\":\"h0\"") && out.contains("\"n\":72"),
        "{out}"
    );
    let (ok, _, err) = strata(&["sql", "--gateway", &p.grpc, "-e", "SELECT nope FROM loaded"]);
    assert!(!ok && err.contains("InvalidArgument"), "{err}");
    let (ok, out, err) = strata(&["status", "--http", &p.http]);
    assert!(ok, "{err}");
    assert!(out.contains("loaded"), "{out}");
    let (ok, out, _) = strata(&["config", "--object-store", "s3://b/p"]);
    assert!(ok && out.contains("s3://b/p"), "{out}");
    // Graceful shutdown: SIGTERM flushes acknowledged rows into segments, then exits 0.
    let status = p.terminate();
    assert!(status.success(), "{status:?}");
    let u = strata_storage::StoreUrl::parse(&url).unwrap();
    let store = strata_storage::open_store(&u, &strata_storage::S3Options::from_env())
        .await
        .unwrap();
    let m = strata_storage::Catalog::new(store)
        .load("loaded")
        .await
        .unwrap();
    assert_eq!(
        m.total_rows(),
        500,
        "every acknowledged row is in a segment after SIGTERM"
    );
}

/// Port 0 picks free ports, and the ready line names the ones actually bound.
#[tokio::test]
async fn the_ready_line_names_the_bound_ports() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("STRATA_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("strata ready"))
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("ready within 60 s")
        .unwrap()
        .expect("a ready line");
    let http_url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .unwrap_or_else(|| panic!("no http= in {line:?}"));
    assert!(!http_url.ends_with(":0"), "{line}");
    assert!(
        line.contains("grpc=grpc://127.0.0.1:") && !line.contains(":0 "),
        "{line}"
    );
    let (code, _) = http("GET", &format!("{http_url}/healthz"), "", None).await;
    assert_eq!(code, 200, "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Slow or idle clients cannot hold the HTTP port: connections that send nothing are closed
/// after the idle timeout, and at most `http_max_connections` are open at once (the next
/// waits for a slot instead of piling up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_are_closed_and_bounded() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(
        &["serve", "--data-dir", dir.path().to_str().unwrap()],
        &[
            ("STRATA__NODE__HTTP_MAX_CONNECTIONS", "4"),
            ("STRATA__NODE__HTTP_IDLE_TIMEOUT_SECS", "1"),
        ],
    );
    let addr = format!("127.0.0.1:{}", p.http_port);
    // A slow client: sends half a request line, then nothing.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /heal")
            .await
            .unwrap();
        idle.push(s);
    }
    let t0 = std::time::Instant::now();
    let (code, _) = http("GET", &format!("{}/healthz", p.http), "", None).await;
    assert_eq!(
        code, 200,
        "a new client is served once the stalled ones are gone"
    );
    let waited = t0.elapsed();
    for mut s in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the server closes a stalled connection")
            .unwrap_or(0);
        let _ = n; // EOF or an error response, then EOF: either way it was closed.
        let rest = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed");
        assert!(matches!(rest, Ok(0) | Err(_)), "the connection is closed");
    }
    eprintln!("a fifth client waited {waited:?} for a slot");
}

/// A tenant's open log tails are bounded; closing one frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_log_tails_are_bounded_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--default-shards",
            "1",
        ],
        &[("STRATA__GATEWAY__FLIGHT__MAX_LOG_TAILS_PER_TENANT", "2")],
    );
    put(&p.grpc, "tl", logs_batch(0, 10), None).await.unwrap();
    let ticket =
        || Ticket::new(r#"{"log":{"table":"tl","shard":0,"from_offset":10,"follow":true}}"#);
    let mut fc = FlightClient::new(channel(&p.grpc).await);
    let a = fc.do_get(ticket()).await.expect("first tail");
    let _b = fc.do_get(ticket()).await.expect("second tail");
    let e = match fc.do_get(ticket()).await {
        Ok(mut s) => s
            .next()
            .await
            .and_then(Result::err)
            .expect("a third tail is refused"),
        Err(e) => e,
    };
    let status = to_status(e);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_log_tails_per_tenant"),
        "{}",
        status.message()
    );
    drop(a);
    // The server notices the closed stream and frees its slot.
    let mut reopened = false;
    for _ in 0..50 {
        if fc.do_get(ticket()).await.is_ok() {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened, "a slot frees up when a tail is closed");
}

/// An HTTP body over the ingest limit is refused (413) and stores nothing; a JSON line nested
/// too deep is refused naming the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_and_json_lines_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--max-batch-bytes",
            "4096",
        ],
        &[],
    );
    let url = format!("{}/v1/ingest/bounded", p.http);
    let line = "{\"ts\":\"2026-01-01T00:00:00Z\",\"host\":\"a\",\"n\":1}\n";
    let (code, body) = http("POST", &url, line, None).await;
    assert_eq!(code, 200, "{body}");
    let big = line.repeat(200); // ~9 KB
    let (code, _) = http("POST", &url, &big, None).await;
    assert_eq!(code, 413, "a body over --max-batch-bytes is refused");
    let deep = format!(
        "{{\"ts\":\"2026-01-01T00:00:01Z\",\"host\":\"b\",\"n\":{}1{}}}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    let (code, body) = http("POST", &url, &deep, None).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("nested deeper"), "{body}");
    let mut c = sql_client(&p.grpc).await;
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM bounded").await.unwrap()),
        1,
        "refused bodies store nothing"
    );
}

/// `strata estimate`: text and JSON from the release's figures, a figures file as the bench
/// writes it, and clear errors for a bad load or bad figures.
#[test]
fn estimate_sizes_a_cluster_from_figures() {
    let (ok, out, err) = strata(&["estimate", "--rows-per-sec", "50000"]);
    assert!(ok, "{err}");
    for part in [
        "ingest",
        "compute",
        "bucket",
        "cost per month",
        "assumptions",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    let (ok, json, err) = strata(&["estimate", "--rows-per-sec", "50000", "--json"]);
    assert!(ok, "{err}");
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    let total = e["total_cost_per_month"].as_f64().unwrap();
    let parts: f64 = ["storage", "put", "get"]
        .iter()
        .map(|k| e[format!("{k}_cost_per_month")].as_f64().unwrap())
        .sum();
    assert!((total - parts).abs() < 1e-6 && total > 0.0, "{json}");

    // Figures twice as fast per ingest core: half the busy ingest cores.
    let dir = tempfile::tempdir().unwrap();
    let mut f = strata::estimate::load_figures(None).unwrap();
    f.ingest_rows_per_core_sec *= 2.0;
    let path = dir.path().join("figures.json");
    std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
    let p = path.to_str().unwrap();
    let (ok, faster, err) = strata(&[
        "estimate",
        "--rows-per-sec",
        "50000",
        "--json",
        "--figures",
        p,
    ]);
    assert!(ok, "{err}");
    let faster: serde_json::Value = serde_json::from_str(&faster).unwrap();
    let busy = |v: &serde_json::Value| v["ingest"]["busy_cores"].as_f64().unwrap();
    assert!((busy(&faster) * 2.0 - busy(&e)).abs() < 1e-9);

    let (ok, _, err) = strata(&["estimate", "--cache-hit-ratio", "2"]);
    assert!(!ok && err.contains("--cache-hit-ratio"), "{err}");
    std::fs::write(&path, "not json").unwrap();
    let (ok, _, err) = strata(&["estimate", "--figures", p]);
    assert!(!ok && err.contains("not bench figures"), "{err}");
}
