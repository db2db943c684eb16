//! Per-query cost: every query's `DoGet` ends with what it cost (`{"strata_cost": …}` in
//! the last message's app_metadata), `system.queries` lists a tenant's recent queries with
//! the same figures, and the CLI's timing line prints them. Real processes, real S3 server,
//! and pyarrow as the client that reads the final metadata.

mod common;

use std::time::Duration;

use arrow::array::AsArray;
use arrow_flight::decode::DecodedPayload;
use common::{Proc, logs_batch, query, sql_client};
use futures::StreamExt;

const TOKENS: &str = r#"
[[tokens]]
token = "acme"
tenant = "acme"
scopes = ["read", "write"]
[[tokens]]
token = "globex"
tenant = "globex"
scopes = ["read", "write"]
"#;

fn serve(test: &str) -> (Proc, tempfile::TempDir) {
    // Segments flush after 1 s; the result cache would answer repeated queries unrun.
    common::serve_with_tokens(
        test,
        TOKENS,
        &["--flush-age-secs", "1"],
        &[("STRATA__GATEWAY_CACHE__ENABLED", "false")],
    )
}

/// Runs `sql` as `token` and returns the rows and the final cost metadata.
async fn run(p: &Proc, token: &str, sql: &str) -> (usize, Option<serde_json::Value>) {
    let mut c = sql_client(&p.grpc).await;
    c.set_header("authorization", format!("Bearer {token}"));
    let info = c.execute(sql.to_string(), None).await.unwrap();
    fetch_with_cost(&mut c, info).await
}

/// The rows of every endpoint of `info`, and the cost in the last message's metadata.
async fn fetch_with_cost(
    c: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    info: arrow_flight::FlightInfo,
) -> (usize, Option<serde_json::Value>) {
    let mut rows = 0;
    let mut cost = None;
    for ep in info.endpoint {
        let mut decoder = c.do_get(ep.ticket.unwrap()).await.unwrap().into_inner();
        while let Some(d) = decoder.next().await {
            let d = d.unwrap();
            if let DecodedPayload::RecordBatch(b) = &d.payload {
                rows += b.num_rows();
            }
            if !d.inner.app_metadata.is_empty() {
                let v: serde_json::Value = serde_json::from_slice(&d.inner.app_metadata).unwrap();
                cost = v.get("strata_cost").cloned();
            }
        }
    }
    (rows, cost)
}

async fn sql_client_for(
    p: &Proc,
    token: &str,
) -> arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel> {
    let mut c = sql_client(&p.grpc).await;
    c.set_header("authorization", format!("Bearer {token}"));
    c
}

fn n(c: &serde_json::Value, k: &str) -> u64 {
    c[k].as_u64().unwrap_or_else(|| panic!("{k} in {c}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_reports_what_it_cost_and_system_queries_lists_them() {
    let (p, _d) = serve("cost");
    // Two segments a day apart: a time filter skips one.
    let day = 86_400_000_000i64;
    for (i, start) in [0, day].into_iter().enumerate() {
        let mut b = logs_batch(i as i64 * 1000, 1000);
        // logs_batch's ts starts at a fixed instant; shift the second batch by a day.
        if start > 0 {
            let ts = b
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let shifted: arrow::array::TimestampMicrosecondArray =
                ts.iter().map(|v| v.map(|v| v + start)).collect();
            let mut cols = b.columns().to_vec();
            cols[0] = std::sync::Arc::new(shifted.with_timezone_opt(ts.timezone()));
            b = arrow::array::RecordBatch::try_new(b.schema(), cols).unwrap();
        }
        let mut client = arrow_flight::FlightClient::new(common::channel(&p.grpc).await);
        client.add_header("authorization", "Bearer acme").unwrap();
        let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(arrow_flight::FlightDescriptor::new_path(vec![
                "logs".into(),
            ])))
            .build(futures::stream::iter(vec![Ok(b)]));
        let acks: Vec<_> = client
            .do_put(stream)
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await;
        assert!(acks.iter().all(|a| a.is_ok()));
        // Flushed into its own segment (flush age 1 s).
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }

    // A scan of both segments (a bare count(*) would be answered from their statistics,
    // reading nothing); the figures add up.
    let (rows, cost) = run(
        &p,
        "acme",
        "SELECT count(*) FROM logs WHERE level = 'ERROR'",
    )
    .await;
    assert_eq!(rows, 1);
    let c = cost.expect("the last message carries the cost");
    assert_eq!(n(&c, "segments_total"), 2, "{c}");
    assert_eq!(n(&c, "segments_pruned"), 0, "{c}");
    assert_eq!(n(&c, "rows_scanned"), 2000, "{c}");
    assert!(n(&c, "bytes_scanned") > 0, "{c}");
    let blocks = n(&c, "get_requests") + n(&c, "memory_hits") + n(&c, "disk_hits");
    assert!(
        blocks > 0,
        "segment bytes came from the bucket or the cache: {c}"
    );
    assert!(c["planning_ms"].as_f64().unwrap() > 0.0, "{c}");

    // Once the engine's manifest copy is older than its TTL (100 ms), a query checks the
    // bucket for a newer manifest and lists the WAL again: those requests are this query's
    // too, even with every segment block in the cache.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, cost) = run(
        &p,
        "acme",
        "SELECT count(*) FROM logs WHERE level = 'ERROR'",
    )
    .await;
    let c = cost.unwrap();
    assert!(
        n(&c, "list_requests") >= 5,
        "the WAL listing of each of the 4 shards and the manifest's check for a newer \
         version are counted: {c}"
    );

    // EXPLAIN ANALYZE ends with the same figures.
    let b = query(
        &mut sql_client_for(&p, "acme").await,
        "EXPLAIN ANALYZE SELECT count(*) FROM logs WHERE level = 'ERROR'",
    )
    .await
    .unwrap();
    let b = arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
    let b = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)
        .map(|plan| {
            (
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap(),
                plan,
            )
        })
        .unwrap();
    let (kinds, plans) = (b.0.as_string::<i32>(), b.1.as_string::<i32>());
    let last = arrow::array::Array::len(kinds) - 1;
    assert_eq!(kinds.value(last), "Query cost");
    assert!(
        plans.value(last).contains("pruned: 0 of 2 segments")
            && plans.value(last).contains("scanned: 2000 rows")
            && plans.value(last).contains("bucket: "),
        "{}",
        plans.value(last)
    );

    // A prepared statement run once per parameter row reports the runs' cost together.
    let mut c = sql_client_for(&p, "acme").await;
    let mut stmt = c
        .prepare(
            "SELECT count(*) FROM logs WHERE level = $1".to_string(),
            None,
        )
        .await
        .unwrap();
    let params = arrow::array::RecordBatch::try_from_iter([(
        "$1",
        std::sync::Arc::new(arrow::array::StringArray::from(vec!["ERROR", "INFO"])) as _,
    )])
    .unwrap();
    stmt.set_parameters(params).unwrap();
    let info = stmt.execute().await.unwrap();
    let (rows, cost) = fetch_with_cost(&mut c, info).await;
    assert_eq!(rows, 2, "one answer per parameter row");
    let c = cost.expect("a prepared statement reports its cost");
    assert_eq!(n(&c, "rows_scanned"), 4000, "two runs over 2000 rows: {c}");
    assert_eq!(n(&c, "segments_total"), 4, "{c}");

    // A time filter prunes the other day's segment before it is opened.
    let (_, cost) = run(
        &p,
        "acme",
        "SELECT count(*) FROM logs WHERE ts > now() + INTERVAL '12 hours'",
    )
    .await;
    let c = cost.unwrap();
    assert!(n(&c, "segments_pruned") >= 1, "{c}");

    // A failing query is listed too, with its error.
    let mut acme = sql_client(&p.grpc).await;
    acme.set_header("authorization", "Bearer acme");
    assert!(query(&mut acme, "SELECT nope FROM logs").await.is_err());

    let b = query(
        &mut acme,
        "SELECT status, sql, segments_total, rows_scanned, tenant FROM system.queries \
         ORDER BY query_id",
    )
    .await
    .unwrap();
    let b = arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
    let status = b.column(0).as_string::<i32>();
    let sql = b.column(1).as_string::<i32>();
    assert!(b.num_rows() >= 3, "{b:?}");
    assert_eq!(status.value(0), "ok");
    assert_eq!(
        sql.value(0),
        "SELECT count(*) FROM logs WHERE level = 'ERROR'"
    );
    assert_eq!(
        b.column(3)
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .value(0),
        2000
    );
    let failed = (0..b.num_rows())
        .find(|i| sql.value(*i) == "SELECT nope FROM logs")
        .expect("the failed query is listed");
    assert_eq!(status.value(failed), "error");
    assert_eq!(b.column(4).as_string::<i32>().value(0), "acme");

    // Another tenant sees only its own queries.
    let mut globex = sql_client(&p.grpc).await;
    globex.set_header("authorization", "Bearer globex");
    let b = query(&mut globex, "SELECT count(*) FROM system.queries")
        .await
        .unwrap();
    assert_eq!(common::scalar_i64(&b), 0);
    let e = query(&mut globex, "SELECT * FROM system.nothing")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");

    // The CLI prints the figures under the timing line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "sql",
            "--gateway",
            &p.grpc.replace("http://", ""),
            "--token",
            "acme",
            "-e",
            "SELECT count(*) FROM logs WHERE level = 'ERROR'",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("pruned: 0 of 2 segments") && err.contains("scanned: 2000 rows"),
        "{err}"
    );

    // pyarrow reads the same figures as the last chunk's app_metadata.
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{}\n{PY}", common::PY_STATEMENT_COST))
        .arg(p.grpc.replace("http://", "grpc://"))
        .output()
        .expect("python3 with pyarrow (./minio/with-s3.sh)");
    let stdout = String::from_utf8_lossy(&py.stdout);
    assert!(
        py.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(stdout.contains("segments_total 2"), "{stdout}");

    // /metrics counts requests and ingest bytes per tenant.
    let (code, metrics) = common::http("GET", &format!("{}/metrics", p.http), "", None).await;
    assert_eq!(code, 200);
    let value = |name: &str, tenant: &str| -> f64 {
        let prefix = format!("{name}{{tenant=\"{tenant}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in /metrics:\n{metrics}"))
    };
    assert!(value("strata_tenant_requests_total", "acme") >= 8.0);
    assert!(value("strata_tenant_requests_total", "globex") >= 2.0);
    assert!(value("strata_tenant_ingest_bytes_total", "acme") > 0.0);
}

/// pyarrow reads the cost off the last chunk (`statement_cost`: common::PY_STATEMENT_COST).
const PY: &str = r#"
import sys
client = fl.FlightClient(sys.argv[1])
opts = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer acme")])
cost = statement_cost(client, "SELECT count(*) FROM logs WHERE level = 'ERROR'", opts)
print("segments_total", cost["segments_total"])
"#;
