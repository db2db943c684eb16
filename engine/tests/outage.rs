//! An object-store outage under load, against a real `strata serve` process and the real S3
//! server: for 30 s (`STRATA_OUTAGE_SECS`) every connection to the bucket is refused or cut
//! (a loopback proxy between Strata and the S3 server stops forwarding), while producers write
//! and readers query.
//!
//! - While it is down, writes fail with `UNAVAILABLE` within seconds; none hangs.
//! - The buffered bytes of the ingest node stay within `ingest.max_node_bytes`.
//! - After it returns, writes and queries succeed again within 5 s.
//! - In the end every acknowledged row is stored exactly once (producers retry with their
//!   producer id and sequence until acknowledged).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const BATCH: i64 = 200;

/// A TCP proxy to `upstream` that can refuse and cut every connection.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (d, c) = (Arc::clone(&down), Arc::clone(&cut));
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        if d.load(Ordering::SeqCst) {
                            drop(client); // refused: closed at once
                            continue;
                        }
                        let up = upstream.clone();
                        conns.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(&up).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                    () = c.notified() => conns.abort_all(),
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self { port, down, cut }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.notify_one();
        }
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_store_outage_loses_nothing_and_service_returns() {
    let outage = Duration::from_secs(
        std::env::var("STRATA_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    );
    let url = s3_url("outage");
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL from with-s3.sh");
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = Proxy::start(upstream).await;
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let max_node_bytes: u64 = 256 << 20;
    let max_node = max_node_bytes.to_string();
    let p = Proc::start(
        &[
            "serve",
            "--object-store",
            &url,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--group-commit-ms",
            "10",
            "--flush-age-secs",
            "1",
        ],
        &[
            ("AWS_ENDPOINT_URL", via_proxy.as_str()),
            ("STRATA__STORAGE__REQUEST_TIMEOUT_SECS", "5"),
            ("STRATA__STORAGE__RETRY_ATTEMPTS", "3"),
            ("STRATA__INGEST__MAX_NODE_BYTES", max_node.as_str()),
            // Every query must reach the engine, not the result cache.
            ("STRATA__GATEWAY_CACHE__ENABLED", "false"),
        ],
    );
    let pid = p.child.id();

    let stop = Arc::new(AtomicBool::new(false));
    let outage_on = Arc::new(AtomicBool::new(false));
    let longest_failure_ms = Arc::new(AtomicU64::new(0));
    let failed_writes = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for k in 0..2u64 {
        let (grpc, stop) = (p.grpc.clone(), Arc::clone(&stop));
        let (outage_on, longest, failed) = (
            Arc::clone(&outage_on),
            Arc::clone(&longest_failure_ms),
            Arc::clone(&failed_writes),
        );
        producers.push(tokio::spawn(async move {
            let producer = format!("outage-{k}");
            let mut seq = 0u64;
            let mut codes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let first = (k as i64 * 1_000_000) + seq as i64 * BATCH;
                let t0 = Instant::now();
                match put(
                    &grpc,
                    "events",
                    logs_batch(first, BATCH),
                    Some((&producer, seq)),
                )
                .await
                {
                    Ok(_) => seq += 1,
                    Err(status) => {
                        if outage_on.load(Ordering::SeqCst) {
                            let ms = t0.elapsed().as_millis() as u64;
                            longest.fetch_max(ms, Ordering::SeqCst);
                            failed.fetch_add(1, Ordering::SeqCst);
                            codes.push(status.code());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (producer, seq, codes)
        }));
    }
    let reader = {
        let (grpc, stop) = (p.grpc.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut c = sql_client(&grpc).await;
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                match query(&mut c, "SELECT count(*) FROM events").await {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failed)
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_down(true);
    outage_on.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    let (mut max_buffered, mut max_rss) = (0f64, 0u64);
    while down_at.elapsed() < outage {
        let (_, m) = http("GET", &format!("{}/metrics", p.http), "", None).await;
        max_buffered = max_buffered.max(metric(&m, "strata_ingest_buffered_bytes"));
        max_rss = max_rss.max(vm_rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.set_down(false);
    outage_on.store(false, Ordering::SeqCst);
    let back = Instant::now();

    // Full service: a new write and a query both succeed.
    let mut c = sql_client(&p.grpc).await;
    let recovered = loop {
        let w = put(&p.grpc, "probe", logs_batch(0, 1), Some(("probe", 0))).await;
        let q = query(&mut c, "SELECT count(*) FROM events").await;
        if w.is_ok() && q.is_ok() {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no service 30 s after the store returned: write {w:?}, query {q:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);

    let mut acked_rows = 0i64;
    for t in producers {
        let (producer, seq, codes) = t.await.unwrap();
        // The write in flight when the producer stopped may have landed: send it again with
        // its sequence, which must not store it twice.
        let k: i64 = producer.trim_start_matches("outage-").parse().unwrap();
        let first = k * 1_000_000 + seq as i64 * BATCH;
        put(
            &p.grpc,
            "events",
            logs_batch(first, BATCH),
            Some((&producer, seq)),
        )
        .await
        .expect("the last write after the outage");
        acked_rows += (seq as i64 + 1) * BATCH;
        for code in &codes {
            assert!(
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                ),
                "a write during the outage failed with {code:?}, not UNAVAILABLE"
            );
        }
    }
    let (reads_ok, reads_failed) = reader.await.unwrap();

    let n = scalar_i64(&query(&mut c, "SELECT count(*) FROM events").await.unwrap());
    let distinct = scalar_i64(
        &query(&mut c, "SELECT count(DISTINCT id) FROM events")
            .await
            .unwrap(),
    );
    eprintln!(
        "outage of {outage:?}: {acked_rows} rows acknowledged, {n} stored ({distinct} distinct); \
         {} writes failed during the outage, the slowest after {} ms; service back after \
         {recovered:?}; buffered at most {max_buffered} bytes (limit {max_node_bytes}), RSS at \
         most {} MiB; queries {reads_ok} ok / {reads_failed} failed",
        failed_writes.load(Ordering::SeqCst),
        longest_failure_ms.load(Ordering::SeqCst),
        max_rss / 1024
    );
    assert_eq!(n, acked_rows, "every acknowledged row, and nothing else");
    assert_eq!(distinct, acked_rows, "no row twice");
    assert!(
        failed_writes.load(Ordering::SeqCst) > 0,
        "writes must fail while the store is down"
    );
    assert!(
        longest_failure_ms.load(Ordering::SeqCst) < 20_000,
        "a write hung during the outage"
    );
    assert!(
        max_buffered <= max_node_bytes as f64,
        "buffered bytes passed ingest.max_node_bytes"
    );
    assert!(
        recovered <= Duration::from_secs(5),
        "full service took {recovered:?} after the store returned (want ≤ 5 s)"
    );
}
