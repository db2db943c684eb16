//! A cluster of real processes on 127.0.0.1 over the real S3 server: 1 gateway, 2 compute and
//! 2 ingest nodes. Clients: Rust Flight / Flight SQL, pyarrow.flight and the ADBC driver.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

struct Cluster {
    gateway: Proc,
    compute: Vec<Proc>,
    ingest: Vec<Proc>,
    url: String,
    _dirs: Vec<tempfile::TempDir>,
    config: tempfile::NamedTempFile,
}

fn gateway_config() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        f.path(),
        r#"
[remote]
health_interval = "100ms"
health_timeout = "300ms"
rise = 2
fall = 1
policy = "round-robin"
[remote.breaker]
failure_threshold = 1
open_for = "300ms"
[remote.retry]
max_attempts = 3
seed = 7
# Every query must reach a compute node: these tests exercise routing and failover.
[gateway_cache]
enabled = false
"#,
    )
    .unwrap();
    f
}

/// Every process of a test cluster shares this secret (as a deployment would).
const CLUSTER_SECRET: &str = "test-cluster-secret";
const CLUSTER_ENV: &[(&str, &str)] = &[("STRATA_CLUSTER_SECRET", CLUSTER_SECRET)];

fn start_cluster(test: &str) -> Cluster {
    start_cluster_with(test, &[])
}

/// A cluster whose gateway also gets `gateway_args`.
fn start_cluster_with(test: &str, gateway_args: &[&str]) -> Cluster {
    let url = s3_url(test);
    let mut dirs = Vec::new();
    let mut ingest = Vec::new();
    for i in 0..2 {
        let d = tempfile::tempdir().unwrap();
        let idx = i.to_string();
        ingest.push(Proc::start(
            &[
                "ingest",
                "--object-store",
                &url,
                "--data-dir",
                d.path().to_str().unwrap(),
                "--node-index",
                &idx,
                "--node-count",
                "2",
                "--group-commit-ms",
                "10",
            ],
            CLUSTER_ENV,
        ));
        dirs.push(d);
    }
    let mut compute = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir().unwrap();
        compute.push(Proc::start(
            &[
                "compute",
                "--object-store",
                &url,
                "--data-dir",
                d.path().to_str().unwrap(),
            ],
            CLUSTER_ENV,
        ));
        dirs.push(d);
    }
    let config = gateway_config();
    let nodes = |ps: &[Proc]| {
        ps.iter()
            .map(|p| format!("127.0.0.1:{}", p.grpc_port))
            .collect::<Vec<_>>()
            .join(",")
    };
    let d = tempfile::tempdir().unwrap();
    let (compute_nodes, ingest_nodes) = (nodes(&compute), nodes(&ingest));
    let mut args = vec![
        "gateway",
        "--config",
        config.path().to_str().unwrap(),
        "--object-store",
        &url,
        "--data-dir",
        d.path().to_str().unwrap(),
        "--compute-nodes",
        &compute_nodes,
        "--ingest-nodes",
        &ingest_nodes,
    ];
    args.extend_from_slice(gateway_args);
    let gateway = Proc::start(&args, CLUSTER_ENV);
    dirs.push(d);
    Cluster {
        gateway,
        compute,
        ingest,
        url,
        _dirs: dirs,
        config,
    }
}

async fn http_get(url: &str) -> String {
    let url = url.trim_start_matches("http://");
    let (host, path) = url.split_once('/').unwrap_or((url, ""));
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The python clients write through the gateway and read back what Rust wrote.
fn run_python(script: &str, grpc: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{}\n{script}", common::PY_STATEMENT_COST))
        .arg(grpc.replace("http://", "grpc://"))
        .output()
        .expect("python3 must be installed (.ci/run installs it with pyarrow and adbc-driver-flightsql)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python client failed (pip install pyarrow adbc-driver-flightsql adbc-driver-manager):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PY: &str = r#"
import sys
import pyarrow as pa, pyarrow.flight as fl
from adbc_driver_flightsql import dbapi
uri = sys.argv[1]
client = fl.FlightClient(uri)
batch = pa.record_batch({"ts": pa.array([1_764_410_400_000_000 + i for i in range(100)], pa.timestamp("us")),
                         "host": ["py-%d" % (i % 3) for i in range(100)],
                         "level": ["INFO"] * 100,
                         "id": pa.array(range(1_000_000, 1_000_100), pa.int64())})
writer, reader = client.do_put(fl.FlightDescriptor.for_path("events"), batch.schema)
writer.write_batch(batch)
writer.done_writing()
reader.read()
writer.close()
info = client.get_flight_info(fl.FlightDescriptor.for_command(b"SELECT 1"))  if False else None
with dbapi.connect(uri) as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) AS n FROM events")
    print("adbc_count", cur.fetchone()[0])
    cur.execute("SELECT count(*) FROM events WHERE host = ?", parameters=("py-1",))
    print("adbc_param", cur.fetchone()[0])

# What the query cost travels from the compute node through the gateway: the last chunk's
# app_metadata (statement_cost is common::PY_STATEMENT_COST, prepended by run_python).
cost = statement_cost(client, "SELECT count(*) FROM events WHERE level = 'INFO'")
print("cost_rows_scanned", cost.get("rows_scanned"), "wal", cost.get("wal_entries_read"))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_queries_through_the_gateway_with_standard_clients() {
    let c = start_cluster("cluster");
    // Rust writes (keyless table, auto-created on first write) through the gateway.
    for i in 0..8 {
        put(&c.gateway.grpc, "events", logs_batch(i * 100, 100), None)
            .await
            .unwrap();
    }
    // A sharded table created with SQL through the gateway spreads rows over both ingest nodes.
    let mut sql = sql_client(&c.gateway.grpc).await;
    query(
        &mut sql,
        "CREATE TABLE keyed (ts TIMESTAMP(6) NOT NULL, host VARCHAR, level VARCHAR, id BIGINT) WITH (shard_key = 'host', num_shards = 4)",
    )
    .await
    .unwrap();
    let ack = put(&c.gateway.grpc, "keyed", logs_batch(0, 1000), None)
        .await
        .unwrap();
    let shards: Vec<u64> = ack["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(
        shards.len(),
        4,
        "rows of 17 hosts reach all 4 shards: {ack}"
    );
    let b = query(&mut sql, "SELECT count(*) FROM keyed").await.unwrap();
    assert_eq!(scalar_i64(&b), 1000);
    let b = query(&mut sql, "SELECT count(*) FROM events")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&b), 800);

    // pyarrow.flight DoPut + ADBC queries (with a bound parameter) through the gateway.
    let out = run_python(PY, &c.gateway.grpc);
    assert!(out.contains("adbc_count 900"), "{out}");
    assert!(out.contains("adbc_param 33"), "{out}");
    // 900 rows, from segments or the WAL tail: either way the node reported what it read.
    assert!(out.contains("cost_rows_scanned"), "{out}");
    assert!(!out.contains("cost_rows_scanned None"), "{out}");

    // The gateway's status (and so the console's cluster view) names each shard's owner:
    // shard s of a table is written by ingest node s mod 2.
    let status = http_get(&format!("{}/v1/status", c.gateway.http)).await;
    let body = status.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    let keyed = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "keyed")
        .unwrap_or_else(|| panic!("{v}"));
    let owners: Vec<String> = (0..4)
        .map(|s| format!("127.0.0.1:{}", c.ingest[s % 2].grpc_port))
        .collect();
    assert_eq!(keyed["shard_owners"], serde_json::json!(owners), "{v}");
    let _ = (&c.url, &c.config, &c.ingest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compute_node_dies_under_load_and_no_query_fails() {
    let mut c = start_cluster("failover");
    put(&c.gateway.grpc, "events", logs_batch(0, 500), None)
        .await
        .unwrap();
    let grpc = c.gateway.grpc.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        tokio::spawn(async move {
            let mut sql = sql_client(&grpc).await;
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match query(&mut sql, "SELECT count(*) FROM events").await {
                    Ok(b) if scalar_i64(&b) == 500 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("{other:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            errors
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = c.compute[0].grpc_port;
    let http_port = c.compute[0].http_port;
    c.compute[0].kill9();
    // The node is out: its breaker opens and health checks fail.
    let mut saw_open = false;
    for _ in 0..50 {
        let status = http_get(&format!("{}/v1/status", c.gateway.http)).await;
        if status.contains("\"breaker\":\"open\"") || status.contains("\"healthy\":false") {
            saw_open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_open, "the gateway must notice the dead node");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Restart it on the same address; it rejoins after `rise` good checks.
    let d = tempfile::tempdir().unwrap();
    c.compute[0] = Proc::start_on(
        &[
            "compute",
            "--object-store",
            &c.url,
            "--data-dir",
            d.path().to_str().unwrap(),
        ],
        CLUSTER_ENV,
        port,
        http_port,
    );
    let mut rejoined = false;
    for _ in 0..100 {
        let status = http_get(&format!("{}/v1/status", c.gateway.http)).await;
        let body = status.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body.trim()) {
            let all = v["nodes"]["compute"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if all.len() == 2
                && all
                    .iter()
                    .all(|n| n["healthy"] == true && n["breaker"] == "closed")
            {
                rejoined = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rejoined,
        "the restarted node must rejoin with a closed breaker"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let errors = load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "queries failed during the outage: {errors:?}"
    );
    assert!(ok.load(Ordering::SeqCst) > 20, "the load kept running");
    let metrics = http_get(&format!("{}/metrics", c.gateway.http)).await;
    assert!(
        metrics.contains("strata_breaker_transitions_total"),
        "breaker transitions are exported"
    );
}

/// A call straight to a node, with the given extra headers; the gRPC status it ends with.
async fn direct_query(
    node: &str,
    headers: &[(&str, &str)],
    sql: &str,
) -> Result<i64, tonic::Status> {
    let mut client = sql_client(node).await;
    for (k, v) in headers {
        client.set_header(*k, *v);
    }
    query(&mut client, sql).await.map(|b| scalar_i64(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_trust_only_the_cluster() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        tokens.path(),
        "[[tokens]]\ntoken = \"acme-rw\"\ntenant = \"acme\"\nscopes = [\"read\", \"write\"]\n",
    )
    .unwrap();
    let c = start_cluster_with(
        "nodeauth",
        &["--auth-tokens-file", tokens.path().to_str().unwrap()],
    );
    // Through the gateway, with a client token: the tenant's rows go in and come back.
    let mut client = arrow_flight::FlightClient::new(channel(&c.gateway.grpc).await);
    client
        .add_header("authorization", "Bearer acme-rw")
        .unwrap();
    let descriptor = arrow_flight::FlightDescriptor::new_path(vec!["secrets".to_string()]);
    let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(vec![Ok(logs_batch(0, 50))]));
    futures::TryStreamExt::try_collect::<Vec<_>>(client.do_put(stream).await.unwrap())
        .await
        .expect("a write through the gateway");
    let count = "SELECT count(*) FROM secrets";
    let mut sql = sql_client(&c.gateway.grpc).await;
    sql.set_header("authorization", "Bearer acme-rw");
    assert_eq!(scalar_i64(&query(&mut sql, count).await.unwrap()), 50);

    let compute = &c.compute[0].grpc;
    let ingest = &c.ingest[0].grpc;
    // A caller that names a tenant without the cluster secret is refused, on every node.
    for node in [compute, ingest] {
        let e = direct_query(node, &[("x-strata-tenant", "acme")], count)
            .await
            .expect_err("a forged tenant header");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        assert!(e.message().contains("x-strata-tenant"), "{}", e.message());
        let e = direct_query(
            node,
            &[
                ("x-strata-tenant", "acme"),
                ("x-strata-cluster-token", "guess"),
            ],
            count,
        )
        .await
        .expect_err("a wrong cluster token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        // Without any header the node serves nobody outside the cluster either.
        let e = direct_query(node, &[], "SELECT 1")
            .await
            .expect_err("an outsider");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    }
    // A forged write straight to an ingest node stores nothing.
    let mut forged = arrow_flight::FlightClient::new(channel(ingest).await);
    forged.add_header("x-strata-tenant", "acme").unwrap();
    let descriptor = arrow_flight::FlightDescriptor::new_path(vec!["secrets".to_string()]);
    let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(vec![Ok(logs_batch(1000, 50))]));
    let e = match forged.do_put(stream).await {
        Ok(s) => futures::TryStreamExt::try_collect::<Vec<_>>(s)
            .await
            .expect_err("a forged write"),
        Err(e) => e,
    };
    assert_eq!(to_status(e).code(), tonic::Code::Unauthenticated);
    let (code, _) = http(
        "POST",
        &format!("{}/v1/ingest/secrets", c.ingest[0].http),
        "{\"ts\":\"2026-01-01T00:00:00Z\",\"host\":\"x\",\"id\":1}\n",
        None,
    )
    .await;
    assert_eq!(
        code, 401,
        "the node's HTTP ingest is closed to outsiders too"
    );
    // The cluster's own secret is accepted (what the gateway sends).
    let n = direct_query(
        compute,
        &[
            ("x-strata-tenant", "acme"),
            ("x-strata-cluster-token", CLUSTER_SECRET),
        ],
        count,
    )
    .await
    .expect("the cluster secret");
    assert_eq!(n, 50, "nothing forged was stored");
    assert_eq!(scalar_i64(&query(&mut sql, count).await.unwrap()), 50);
}
