//! The gateway's result cache against a real `strata serve` and the real S3 server: a
//! repeated query is answered from the cache, and a new write invalidates it.

mod common;

use std::time::Duration;

use common::*;

async fn http_get(url: &str) -> String {
    let url = url.trim_start_matches("http://");
    let (host, path) = url.split_once('/').unwrap_or((url, ""));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    out
}

/// The value of an unlabelled metric in the process's `/metrics`.
async fn metric(p: &Proc, name: &str) -> u64 {
    let text = http_get(&format!("{}/metrics", p.http)).await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no metric {name} in /metrics:\n{text}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_query_is_cached_until_a_write() {
    let url = s3_url("rc");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    // No flush during the test: new rows stay in the WAL, the case a manifest version
    // alone would miss.
    let p = Proc::start(
        &[
            "serve",
            "--object-store",
            &url,
            "--data-dir",
            &data,
            "--flush-age-secs",
            "3600",
        ],
        &[],
    );
    let mut client = sql_client(&p.grpc).await;
    // One shard, so only the first write claims a shard writer (a manifest commit); later
    // writes only add WAL entries.
    query(
        &mut client,
        "CREATE TABLE rc (ts TIMESTAMP(6) NOT NULL, host VARCHAR, level VARCHAR, id BIGINT) \
         WITH (time_column = 'ts', num_shards = 1)",
    )
    .await
    .expect("create table");
    put(&p.grpc, "rc", logs_batch(0, 100), None)
        .await
        .expect("write 100");
    let sql = "SELECT count(*) FROM rc";

    // The table's manifest is new to the cache: the first query runs uncached; once the
    // version has settled, one query fills the cache and the next is a hit.
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q1")), 100);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let misses = metric(&p, "strata_result_cache_misses_total").await;
    let hits = metric(&p, "strata_result_cache_hits_total").await;
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q2")), 100);
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT  count(*)\nFROM rc")
                .await
                .expect("q3")
        ),
        100
    );
    assert_eq!(
        metric(&p, "strata_result_cache_misses_total").await,
        misses + 1,
        "the second query ran"
    );
    assert_eq!(
        metric(&p, "strata_result_cache_hits_total").await,
        hits + 1,
        "the third query (same SQL, reformatted) came from the cache"
    );

    // A write lands in the WAL (no new manifest): the cached count must not hide it. Until
    // the table's new state has settled (compute nodes may still answer from a WAL listing
    // up to manifest_ttl old), queries run uncached.
    put(&p.grpc, "rc", logs_batch(100, 50), None)
        .await
        .expect("write 50");
    let bypassed = metric(&p, "strata_result_cache_bypassed_total").await;
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q4")), 150);
    assert_eq!(
        metric(&p, "strata_result_cache_bypassed_total").await,
        bypassed + 1,
        "the write made the table's state new: not cached yet"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let misses = metric(&p, "strata_result_cache_misses_total").await;
    assert_eq!(
        scalar_i64(&query(&mut client, sql).await.expect("q4b")),
        150
    );
    assert_eq!(
        metric(&p, "strata_result_cache_misses_total").await,
        misses + 1,
        "the write invalidated the entry"
    );
    let hits = metric(&p, "strata_result_cache_hits_total").await;
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q5")), 150);
    assert_eq!(metric(&p, "strata_result_cache_hits_total").await, hits + 1);

    // A DELETE commits a new manifest version: not cached, and it invalidates too.
    let deleted = query(&mut client, "DELETE FROM rc WHERE id < 10")
        .await
        .expect("delete");
    assert_eq!(scalar_i64(&deleted), 10);
    let bypassed = metric(&p, "strata_result_cache_bypassed_total").await;
    assert!(bypassed >= 2, "the DELETE and the unsettled query bypassed");
    // (Compute reuses a manifest for 100 ms: wait that out, as any reader must.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q6")), 140);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q7")), 140);
    let hits = metric(&p, "strata_result_cache_hits_total").await;
    assert_eq!(scalar_i64(&query(&mut client, sql).await.expect("q8")), 140);
    assert_eq!(metric(&p, "strata_result_cache_hits_total").await, hits + 1);

    // Non-deterministic queries are never cached.
    let bypassed = metric(&p, "strata_result_cache_bypassed_total").await;
    query(&mut client, "SELECT count(*) FROM rc WHERE ts < now()")
        .await
        .expect("now 1");
    query(&mut client, "SELECT count(*) FROM rc WHERE ts < now()")
        .await
        .expect("now 2");
    assert_eq!(
        metric(&p, "strata_result_cache_bypassed_total").await,
        bypassed + 2
    );
}
