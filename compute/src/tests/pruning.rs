//! Segments are pruned from the manifest before any file is opened: measured as bytes the
//! cache fetched from the bucket (every test segment is smaller than one cache block, so a
//! segment that is opened costs exactly its size).

use std::collections::BTreeSet;

use strata_common::HashRing;

use crate::testing::{Cell, Fixture, SHARDS, query, shard_of_host, test_config, ts_lit};

#[tokio::test]
async fn a_time_range_reads_only_matching_segments() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    // A window inside the second period of segments: one segment per shard overlaps it.
    let mid = &f.segments[SHARDS as usize]; // first segment of period 2
    let (a, b) = (
        mid.min_ts.unwrap_or(0) + 60_000_000,
        mid.min_ts.unwrap_or(0) + 3_600_000_000,
    );
    let touching: Vec<_> = f
        .segments
        .iter()
        .filter(|s| s.max_ts.unwrap_or(i64::MAX) >= a && s.min_ts.unwrap_or(i64::MIN) < b)
        .collect();
    assert!(
        touching.len() < f.segments.len() / 2,
        "the window must exclude most segments"
    );
    let expected = f.rows.iter().filter(|r| r.ts >= a && r.ts < b).count();
    let got = query(
        &engine,
        &format!(
            "SELECT count(*) FROM logs WHERE ts >= {} AND ts < {}",
            ts_lit(a),
            ts_lit(b)
        ),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(expected)]]);
    let segment_bytes: u64 = touching.iter().map(|s| s.bytes).sum();
    let wal_bytes = f.wal_bytes(0..SHARDS).await;
    assert_eq!(
        engine.cache().expect("cache").bucket_bytes(),
        segment_bytes + wal_bytes,
        "only {} of {} segments (plus the WAL tail) read",
        touching.len(),
        f.segments.len()
    );

    // BETWEEN, string literals and `ts + interval` arithmetic prune the same way: a fresh
    // engine reads exactly the same bytes.
    let plain = |micros: i64| ts_lit(micros).replace("TIMESTAMP ", "");
    for sql in [
        format!(
            "SELECT count(*) FROM logs WHERE ts BETWEEN {} AND {}",
            ts_lit(a),
            ts_lit(b - 1)
        ),
        format!(
            "SELECT count(*) FROM logs WHERE ts >= {} AND ts < {}",
            plain(a),
            plain(b)
        ),
        format!(
            "SELECT count(*) FROM logs WHERE ts >= {} AND ts < {} + INTERVAL '1 hour'",
            ts_lit(a),
            ts_lit(b - 3_600_000_000)
        ),
    ] {
        let engine = f.engine(test_config()).await;
        let got = query(&engine, &sql).await;
        assert_eq!(got, vec![vec![Cell::from(expected)]], "{sql}");
        assert_eq!(
            engine.cache().expect("cache").bucket_bytes(),
            segment_bytes + wal_bytes,
            "{sql}"
        );
    }
}

#[tokio::test]
async fn shard_key_equality_reads_one_shard() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let ring = HashRing::for_shards(SHARDS);
    let host = "h042";
    let shard = shard_of_host(host, &ring);
    let expected = f.rows.iter().filter(|r| r.host == host).count();
    assert!(expected > 0);
    let got = query(
        &engine,
        &format!("SELECT count(*) FROM logs WHERE host = '{host}'"),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(expected)]]);
    let segment_bytes: u64 = f
        .segments
        .iter()
        .filter(|s| s.shard == shard)
        .map(|s| s.bytes)
        .sum();
    assert_eq!(
        engine.cache().expect("cache").bucket_bytes(),
        segment_bytes + f.wal_bytes([shard]).await,
        "only shard {shard}'s segments and WAL"
    );

    // IN lists read the union of the shards.
    let hosts = ["h001", "h150", "h042"];
    let shards: BTreeSet<u32> = hosts.iter().map(|h| shard_of_host(h, &ring)).collect();
    let engine = f.engine(test_config()).await;
    let expected = f
        .rows
        .iter()
        .filter(|r| hosts.contains(&r.host.as_str()))
        .count();
    let got = query(
        &engine,
        "SELECT count(*) FROM logs WHERE host IN ('h001', 'h150', 'h042')",
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(expected)]]);
    let segment_bytes: u64 = f
        .segments
        .iter()
        .filter(|s| shards.contains(&s.shard))
        .map(|s| s.bytes)
        .sum();
    assert_eq!(
        engine.cache().expect("cache").bucket_bytes(),
        segment_bytes + f.wal_bytes(shards).await
    );
}

#[tokio::test]
async fn column_statistics_prune_segments() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    // request_id grows with time, so an equality matches one period's segments only.
    let r = &f.rows[100];
    let got = query(
        &engine,
        &format!("SELECT host FROM logs WHERE request_id = {}", r.request_id),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(r.host.as_str())]]);
    let keep: u64 = f
        .segments
        .iter()
        .filter(|s| {
            let c = &s.columns["request_id"];
            c.min
                .as_ref()
                .and_then(|v| v.as_u64())
                .is_some_and(|m| m <= r.request_id)
                && c.max
                    .as_ref()
                    .and_then(|v| v.as_u64())
                    .is_some_and(|m| m >= r.request_id)
        })
        .map(|s| s.bytes)
        .sum();
    assert_eq!(
        engine.cache().expect("cache").bucket_bytes(),
        keep + f.wal_bytes(0..SHARDS).await
    );
}

#[tokio::test]
async fn newest_first_top_k_skips_old_segments() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let mut newest: Vec<_> = f
        .rows
        .iter()
        .filter(|r| r.message.contains("timeout"))
        .collect();
    newest.sort_by_key(|r| std::cmp::Reverse(r.ts));
    let got = query(
        &engine,
        "SELECT request_id FROM logs WHERE message LIKE '%timeout%' ORDER BY ts DESC LIMIT 5",
    )
    .await;
    let want: Vec<Vec<Cell>> = newest
        .iter()
        .take(5)
        .map(|r| vec![Cell::from(r.request_id)])
        .collect();
    assert_eq!(got, want);
    let all: u64 = f.segments.iter().map(|s| s.bytes).sum();
    let read = engine.cache().expect("cache").bucket_bytes() - f.wal_bytes(0..SHARDS).await;
    assert!(read * 2 < all, "top-k read {read} of {all} segment bytes");
}

#[tokio::test]
async fn sorted_segments_without_wal_need_no_sort() {
    use crate::testing::{logs_batch, logs_def, write_segment};
    use object_store::memory::InMemory;
    use std::sync::Arc;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let catalog = strata_storage::Catalog::new(store);
    let mut def = logs_def();
    def.num_shards = 1;
    def.shard_key = None;
    catalog.create_table(def.clone()).await.expect("create");
    let mut rows = crate::testing::generate(3_000, 7);
    for r in &mut rows {
        r.shard = 0;
    }
    for chunk in rows.chunks(1_000) {
        write_segment(&catalog, &def, 0, &logs_batch(chunk, true)).await;
    }
    let engine = crate::QueryEngine::new(catalog, test_config(), &prometheus::Registry::new())
        .await
        .expect("engine");
    let plan = query(&engine, "EXPLAIN SELECT ts FROM logs ORDER BY ts LIMIT 5").await;
    let text = format!("{plan:?}");
    assert!(
        text.contains("output_ordering=[ts@0 ASC NULLS LAST]"),
        "{text}"
    );
    let got = query(&engine, "SELECT ts FROM logs ORDER BY ts DESC LIMIT 3").await;
    let mut ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
    ts.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        got,
        ts.iter()
            .take(3)
            .map(|t| vec![Cell::from(*t)])
            .collect::<Vec<_>>()
    );
}

/// Unflushed WAL batches carry segment-shaped statistics (computed once when an entry is
/// decoded), so a scan skips the ones no row of which can match, as it skips segments; the
/// rows it keeps still answer exactly.
#[tokio::test]
async fn unflushed_batches_are_pruned_by_time_and_statistics() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let pruned = |e: &crate::QueryEngine| e.paths()["scans pruning WAL batches"];
    let wal = &f.rows[f.rows.len() - crate::testing::WAL_ROWS..];
    let first_wal_ts = wal.iter().map(|r| r.ts).min().expect("WAL rows");

    // A window that ends before the tail begins: every WAL batch is skipped.
    let before = first_wal_ts - 1_000_000;
    let expected = f.rows.iter().filter(|r| r.ts < before).count();
    let got = query(
        &engine,
        &format!("SELECT count(*) FROM logs WHERE ts < {}", ts_lit(before)),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(expected)]]);
    assert!(pruned(&engine) > 0, "{:?}", engine.paths());

    // A window inside the tail keeps the batches it overlaps and counts exactly.
    let n = pruned(&engine);
    let got = query(
        &engine,
        &format!(
            "SELECT count(*) FROM logs WHERE ts >= {}",
            ts_lit(first_wal_ts)
        ),
    )
    .await;
    let expected = f.rows.iter().filter(|r| r.ts >= first_wal_ts).count();
    assert_eq!(got, vec![vec![Cell::from(expected)]]);
    assert_eq!(pruned(&engine), n, "no batch of the tail can be skipped");

    // Column statistics: an id below every WAL row's skips the tail, one inside finds its row.
    let min_wal_id = wal.iter().map(|r| r.request_id).min().expect("WAL rows");
    let below = f.rows.iter().filter(|r| r.request_id < min_wal_id).count();
    assert!(below > 0, "ids grow with the row number");
    let got = query(
        &engine,
        &format!("SELECT count(*) FROM logs WHERE request_id < {min_wal_id}"),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(below)]]);
    assert!(pruned(&engine) > n, "{:?}", engine.paths());
    let target = &wal[wal.len() / 2];
    let got = query(
        &engine,
        &format!(
            "SELECT host FROM logs WHERE request_id = {}",
            target.request_id
        ),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(target.host.as_str())]]);
}
