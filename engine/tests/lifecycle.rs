//! Data lifecycle: compaction, crash safety, retention, deletes and GC, through the
//! `strata` library. Compaction and crash tests use an in-memory store; retention and delete
//! tests run against the real S3 server:
//!
//! ```sh
//! ./minio/with-s3.sh cargo test -p strata --test lifecycle
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType, UInt64Type};
use futures::future::join_all;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata::lifecycle::{LifecycleMetrics, LifecycleOptions, run_pass};
use strata::tenants::Tenants;
use strata_ingest::log::read_log;
use strata_ingest::{CreateOptions, IngestConfig, IngestNode, Write};
use strata_storage::decorators::{self, FaultConfig, FaultStore, LayerOptions};
use strata_storage::gc::GcOptions;
use strata_storage::segment::decode_segment;
use strata_storage::{Catalog, DeleteRule, OFFSET_COLUMN, S3Options, StoreUrl, open_store, paths};

const TABLE: &str = "logs";
/// 2024-01-01T00:00:00Z: a day long past, so its compaction window is cold.
const DAY: i64 = 1_704_067_200_000_000;
const HOUR: i64 = 3_600_000_000;

/// One stored row: (shard, offset, ts, host, v).
type Row = (u32, u64, i64, String, i64);

/// `n` rows with values `start..start + n`; `ts(v)` gives each row's time.
fn batch(start: i64, n: i64, ts: impl Fn(i64) -> i64) -> RecordBatch {
    let vals: Vec<i64> = (start..start + n).collect();
    RecordBatch::try_from_iter(vec![
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(
                vals.iter().map(|v| ts(*v)).collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "host",
            Arc::new(StringArray::from(
                vals.iter()
                    .map(|v| format!("h{}", v % 7))
                    .collect::<Vec<_>>(),
            )) as _,
        ),
        ("v", Arc::new(Int64Array::from(vals)) as _),
    ])
    .expect("a valid batch")
}

fn write(b: RecordBatch, shards: u32, retention_secs: Option<u64>) -> Write {
    Write {
        table: TABLE.into(),
        batches: vec![b],
        create: CreateOptions {
            shard_key: Some("host".into()),
            num_shards: Some(shards),
            retention_secs,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn node(store: &Arc<dyn ObjectStore>) -> IngestNode {
    let cfg = IngestConfig {
        group_commit_interval: Duration::from_millis(2),
        flush_age: Duration::from_secs(3600),
        ..IngestConfig::default()
    };
    IngestNode::new(
        Catalog::new(Arc::clone(store)),
        cfg,
        &prometheus::Registry::new(),
    )
    .expect("an ingest node")
}

/// Every row of every shard as the log reader sees it (segments, then WAL), sorted.
async fn log_rows(catalog: &Catalog) -> Vec<Row> {
    let m = catalog.load(TABLE).await.expect("the table");
    let mut rows = Vec::new();
    for shard in 0..m.table.num_shards {
        let b = read_log(catalog, TABLE, shard, 0, usize::MAX >> 1)
            .await
            .expect("the log");
        rows.extend(rows_of(shard, &b));
    }
    rows.sort();
    rows
}

fn rows_of(shard: u32, b: &RecordBatch) -> Vec<Row> {
    let col = |name: &str| {
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    let off = col(OFFSET_COLUMN).as_primitive::<UInt64Type>();
    let ts = col("ts").as_primitive::<TimestampMicrosecondType>();
    let host = col("host").as_string::<i32>();
    let v = col("v").as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| {
            (
                shard,
                off.value(i),
                ts.value(i),
                host.value(i).to_string(),
                v.value(i),
            )
        })
        .collect()
}

/// The rows physically in the manifest's segments, checking each segment is sorted by
/// (ts, offset) and matches its manifest statistics.
async fn segment_rows(catalog: &Catalog) -> Vec<Row> {
    let m = catalog.load(TABLE).await.expect("the table");
    let mut all = Vec::new();
    for seg in &m.segments {
        let bytes = catalog
            .store()
            .get(&seg.path.as_str().into())
            .await
            .expect("segment")
            .bytes()
            .await
            .expect("body");
        assert_eq!(bytes.len() as u64, seg.bytes, "{}: size", seg.path);
        let (_, batches) = decode_segment(bytes).expect("a valid segment");
        let rows: Vec<Row> = batches.iter().flat_map(|b| rows_of(seg.shard, b)).collect();
        assert_eq!(rows.len() as u64, seg.rows, "{}: rows", seg.path);
        assert!(
            rows.windows(2).all(|w| (w[0].2, w[0].1) < (w[1].2, w[1].1)),
            "{}: sorted by (ts, offset)",
            seg.path
        );
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            assert_eq!(
                (seg.min_ts, seg.max_ts),
                (Some(first.2), Some(last.2)),
                "{}: time range",
                seg.path
            );
            let offs = rows.iter().map(|r| r.1);
            assert_eq!(
                (seg.min_offset, seg.max_offset),
                (offs.clone().min().unwrap_or(0), offs.max().unwrap_or(0)),
                "{}: offsets",
                seg.path
            );
        }
        all.extend(rows);
    }
    all.sort();
    all
}

async fn segment_objects(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut v: Vec<String> = store
        .list(Some(&paths::segment_dir(TABLE)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("a listing");
    v.sort();
    v
}

/// The value of the first gauge or counter called `name`.
fn metric(registry: &prometheus::Registry, name: &str, counter: bool) -> Option<f64> {
    let fam = registry.gather().into_iter().find(|f| f.name() == name)?;
    let m = fam.get_metric().first()?;
    Some(if counter {
        m.get_counter().get_value()
    } else {
        m.get_gauge().get_value()
    })
}

/// A fresh prefix on the real S3 server, behind the production decorators.
async fn s3_store(test: &str) -> Arc<dyn ObjectStore> {
    let base = std::env::var("STRATA_TEST_S3_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| {
        panic!(
            "STRATA_TEST_S3_URL is not set: the retention and delete tests run against the real S3 server. \
             Run them with `./minio/with-s3.sh cargo test -p strata --test lifecycle`"
        )
    });
    let url = format!(
        "{}/lifecycle-{test}-{}",
        base.trim().trim_end_matches('/'),
        uuid::Uuid::new_v4().simple()
    );
    let parsed = StoreUrl::parse(&url).unwrap_or_else(|e| panic!("cannot parse {url}: {e}"));
    let raw = open_store(&parsed, &S3Options::from_env())
        .await
        .unwrap_or_else(|e| {
            panic!("cannot open {url}: {e}; is the S3 server up (./minio/with-s3.sh)?")
        });
    let opts = LayerOptions {
        timeout: Duration::from_secs(10),
        ..LayerOptions::default()
    };
    decorators::layered(raw, &opts, &prometheus::Registry::new())
        .expect("fresh metrics")
        .0
}

async fn remove_all(store: &Arc<dyn ObjectStore>) {
    let all = store.list(None).map_ok(|m| m.location).boxed();
    let _: Vec<_> = store
        .delete_stream(all)
        .try_collect()
        .await
        .unwrap_or_default();
}

fn young_gc() -> GcOptions {
    GcOptions {
        min_age: Duration::from_secs(3600),
        ..GcOptions::default()
    }
}

/// 1,000 writes of 20 rows, flushed every 10 writes, make ~200 small segments over two
/// shards; one pass merges them into one segment per shard with every row, offset and time
/// intact, sorted, with correct statistics.
#[tokio::test]
async fn compaction_merges_many_small_segments_keeping_every_row_once() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(&store);
    const ROWS: i64 = 20_000;
    // A permutation of times, so the segments overlap in time and the merge interleaves them.
    let ts = |v: i64| DAY + (v * 7_919) % ROWS * 1_000;
    for round in 0..100 {
        let writes = (0..10).map(|w| n.write(write(batch((round * 10 + w) * 20, 20, ts), 2, None)));
        for r in join_all(writes).await {
            assert_eq!(r.expect("write").rows, 20);
        }
        n.flush_all().await.expect("flush");
    }
    let catalog = Catalog::new(Arc::clone(&store));
    let before = catalog.load(TABLE).await.expect("table");
    let (segs_before, bytes_before) = (before.segments.len(), before.total_bytes());
    assert!(segs_before >= 150, "{segs_before} segments");
    let rows_before = log_rows(&catalog).await;
    assert_eq!(rows_before.len(), ROWS as usize);
    assert_eq!(segment_rows(&catalog).await, rows_before);

    let registry = prometheus::Registry::new();
    let metrics = LifecycleMetrics::new(&registry).expect("metrics");
    let tenants = Tenants::new(Arc::clone(&store));
    let opts = LifecycleOptions {
        gc: young_gc(),
        ..LifecycleOptions::default()
    };
    let started = Instant::now();
    let report = run_pass(&tenants, &opts, Some(&metrics))
        .await
        .expect("a clean pass");
    let took = started.elapsed();

    let after = catalog.load(TABLE).await.expect("table");
    eprintln!(
        "compacted {segs_before} segments ({ROWS} rows, {bytes_before} B) into {} ({} B) in {took:?}\n{report}",
        after.segments.len(),
        after.total_bytes()
    );
    assert_eq!(after.segments.len(), 2, "one segment per shard: {report}");
    assert!(after.segments.iter().all(|s| s.level == 1));
    assert_eq!(after.total_rows(), ROWS as u64);
    assert_eq!(
        log_rows(&catalog).await,
        rows_before,
        "same rows, offsets and times"
    );
    assert_eq!(segment_rows(&catalog).await, rows_before);
    let t = &report.tables[0];
    assert_eq!(
        (t.runs, t.inputs_compacted, t.rows_rewritten),
        (2, segs_before, ROWS as u64)
    );
    assert_eq!(metric(&registry, "strata_table_segments", false), Some(2.0));
    assert_eq!(
        metric(&registry, "strata_compaction_runs_total", true),
        Some(2.0)
    );
    assert_eq!(
        metric(&registry, "strata_compaction_backlog_segments", false),
        Some(0.0)
    );

    // Nothing left to do: a second pass commits nothing.
    let version = after.version;
    let again = run_pass(&tenants, &opts, Some(&metrics))
        .await
        .expect("a clean pass");
    assert_eq!(again.tables[0].runs, 0);
    assert_eq!(catalog.load(TABLE).await.expect("table").version, version);
}

/// The store goes down right after a run uploaded its output: the pass fails, the old
/// segments stay live with identical contents, and the output is an orphan that GC removes.
#[tokio::test]
async fn a_crash_between_upload_and_commit_loses_nothing_and_leaves_an_orphan_for_gc() {
    let fault = Arc::new(FaultStore::new(
        Arc::new(InMemory::new()),
        FaultConfig::default(),
    ));
    let store: Arc<dyn ObjectStore> = Arc::clone(&fault) as _;
    let n = node(&store);
    for round in 0..10 {
        n.write(write(batch(round * 50, 50, |v| DAY + v * 1_000), 1, None))
            .await
            .expect("write");
        n.flush_all().await.expect("flush");
    }
    let catalog = Catalog::new(Arc::clone(&store));
    let before = catalog.load(TABLE).await.expect("table");
    assert_eq!(before.segments.len(), 10);
    let rows_before = log_rows(&catalog).await;
    let objects_before = segment_objects(&store).await;

    let tenants = Tenants::new(Arc::clone(&store));
    let crash = Arc::clone(&fault);
    let opts = LifecycleOptions {
        gc: young_gc(),
        before_commit: Some(Arc::new(move || crash.set_down(true))),
        ..LifecycleOptions::default()
    };
    let err = run_pass(&tenants, &opts, None)
        .await
        .expect_err("the commit must fail");
    assert!(err.contains("injected outage"), "{err}");
    fault.set_down(false);

    let m = catalog.load(TABLE).await.expect("table");
    assert_eq!(m.version, before.version, "nothing committed");
    assert_eq!(
        m.segments, before.segments,
        "the old segments are still live"
    );
    assert_eq!(log_rows(&catalog).await, rows_before);
    let objects = segment_objects(&store).await;
    let orphans: Vec<_> = objects
        .iter()
        .filter(|o| !objects_before.contains(o))
        .collect();
    assert_eq!(orphans.len(), 1, "the uploaded output: {objects:?}");
    let orphan = object_store::path::Path::from(orphans[0].as_str());

    // The next pass compacts for real and GC (no minimum age) removes the orphan, while the
    // replaced inputs stay: the retained manifest versions still reference them.
    let opts = LifecycleOptions {
        gc: GcOptions {
            min_age: Duration::ZERO,
            ..GcOptions::default()
        },
        ..LifecycleOptions::default()
    };
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    assert!(
        matches!(
            store.head(&orphan).await,
            Err(object_store::Error::NotFound { .. })
        ),
        "{report}"
    );
    assert!(report.tables[0].gc_deleted >= 1, "{report}");
    assert_eq!(catalog.load(TABLE).await.expect("table").segments.len(), 1);
    assert_eq!(log_rows(&catalog).await, rows_before);
    for seg in &before.segments {
        store
            .head(&seg.path.as_str().into())
            .await
            .expect("inputs kept for older versions");
    }
}

/// A big segment a delete rule applies to is rewritten even though it is alone, split into
/// outputs of about the target size, each sorted with exact statistics, reading its input
/// in small batches.
#[tokio::test]
async fn a_pending_delete_rewrites_a_lone_big_segment_into_target_sized_outputs() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(&store);
    let r = n
        .write(write(
            batch(0, 20_000, |v| DAY + (v * 7_919) % 20_000),
            1,
            None,
        ))
        .await
        .expect("write");
    n.flush_all().await.expect("flush");
    let catalog = Catalog::new(Arc::clone(&store));
    let rows_before = log_rows(&catalog).await;
    let below = BTreeMap::from([(0u32, r.shards[0].last_offset + 1)]);
    catalog
        .commit(TABLE, |m| {
            m.deletes.push(DeleteRule {
                id: m.next_delete_id,
                predicate: "host = 'h3' OR v < 10".into(),
                below_offsets: below.clone(),
                created_at_ms: 0,
            });
            m.next_delete_id += 1;
            Ok(())
        })
        .await
        .expect("the rule");
    let tenants = Tenants::new(Arc::clone(&store));
    let opts = LifecycleOptions {
        target_bytes: 32 << 10,
        row_group_rows: 1_000,
        merge_rows_budget: 500,
        gc: young_gc(),
        ..LifecycleOptions::default()
    };
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    let m = catalog.load(TABLE).await.expect("table");
    eprintln!(
        "{report}\noutput sizes: {:?}",
        m.segments.iter().map(|s| s.bytes).collect::<Vec<_>>()
    );
    assert!(m.segments.len() >= 3, "split at the target: {report}");
    assert!(m.deletes.is_empty(), "rule applied and dropped: {report}");
    let expected: Vec<Row> = rows_before
        .into_iter()
        .filter(|r| r.3 != "h3" && r.4 >= 10)
        .collect();
    assert_eq!(
        report.tables[0].rows_deleted,
        20_000 - expected.len() as u64
    );
    assert_eq!(segment_rows(&catalog).await, expected);
    // Consecutive outputs cover consecutive time ranges.
    let mut ranges: Vec<(i64, i64)> = m
        .segments
        .iter()
        .filter_map(|s| s.min_ts.zip(s.max_ts))
        .collect();
    ranges.sort_unstable();
    assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:?}");
}

/// Segments written before a column was added are merged with newer ones: the old rows get
/// nulls in the new column.
#[tokio::test]
async fn older_schemas_are_upgraded_with_nulls_when_merged() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(&store);
    n.write(write(batch(0, 10, |v| DAY + v), 1, None))
        .await
        .expect("write");
    n.flush_all().await.expect("flush");
    let narrow = batch(10, 10, |v| DAY + v);
    let extra: Vec<String> = (10..20).map(|v| format!("x{v}")).collect();
    let wide = RecordBatch::try_from_iter(vec![
        ("ts", Arc::clone(narrow.column(0))),
        ("host", Arc::clone(narrow.column(1))),
        ("v", Arc::clone(narrow.column(2))),
        ("extra", Arc::new(StringArray::from(extra)) as _),
    ])
    .expect("batch");
    n.write(write(wide, 1, None)).await.expect("write");
    n.flush_all().await.expect("flush");
    let tenants = Tenants::new(Arc::clone(&store));
    let opts = LifecycleOptions {
        gc: young_gc(),
        ..LifecycleOptions::default()
    };
    run_pass(&tenants, &opts, None).await.expect("a clean pass");
    let catalog = Catalog::new(Arc::clone(&store));
    let m = catalog.load(TABLE).await.expect("table");
    assert_eq!(m.segments.len(), 1);
    assert_eq!(m.segments[0].columns["extra"].nulls, 10);
    let b = read_log(&catalog, TABLE, 0, 0, 100).await.expect("log");
    let extra = b
        .column_by_name("extra")
        .expect("the new column")
        .as_string::<i32>();
    let got: Vec<Option<&str>> = extra.iter().collect();
    assert_eq!(got[..10], [None; 10]);
    assert_eq!(got[10], Some("x10"));
}

/// Two compactors race on the same table while a writer keeps flushing: every row stays
/// exactly once; the loser abandons its runs without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compactors_and_flushes_never_lose_or_duplicate_rows() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = Arc::new(node(&store));
    for i in 0..40 {
        n.write(write(batch(i * 25, 25, |v| DAY + v), 2, None))
            .await
            .expect("write");
        n.flush_all().await.expect("flush");
    }
    let writer = {
        let n = Arc::clone(&n);
        tokio::spawn(async move {
            for i in 40..80 {
                n.write(write(batch(i * 25, 25, |v| DAY + v), 2, None))
                    .await
                    .expect("write");
                n.flush_all().await.expect("flush");
            }
        })
    };
    let tenants = Arc::new(Tenants::new(Arc::clone(&store)));
    let opts = LifecycleOptions {
        gc: young_gc(),
        ..LifecycleOptions::default()
    };
    let (mut runs, mut abandoned) = (0, 0);
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            run_pass(&tenants, &opts, None),
            run_pass(&tenants, &opts, None)
        );
        for r in [a.expect("a clean pass"), b.expect("a clean pass")] {
            runs += r.tables[0].runs;
            abandoned += r.tables[0].runs_abandoned;
        }
    }
    writer.await.expect("the writer");
    let catalog = Catalog::new(Arc::clone(&store));
    let vals: Vec<i64> = log_rows(&catalog).await.into_iter().map(|r| r.4).collect();
    let mut sorted = vals.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..2_000).collect::<Vec<_>>(),
        "every row exactly once"
    );
    assert_eq!(segment_rows(&catalog).await.len(), 2_000);
    assert!(runs >= 2, "{runs} runs, {abandoned} abandoned");
    eprintln!("{runs} runs committed, {abandoned} abandoned");
}

/// An orphan younger than the minimum age survives a pass; once older, the next pass
/// deletes it. Live segments are never touched.
#[tokio::test]
async fn gc_removes_orphans_only_after_their_minimum_age() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(&store);
    n.write(write(batch(0, 100, |v| DAY + v), 2, None))
        .await
        .expect("write");
    n.flush_all().await.expect("flush");
    let orphan = paths::new_segment(TABLE, 0, Some(DAY));
    store
        .put(&orphan, PutPayload::from_static(b"not referenced"))
        .await
        .expect("put");

    let tenants = Tenants::new(Arc::clone(&store));
    let opts = LifecycleOptions {
        gc: GcOptions {
            min_age: Duration::from_millis(1500),
            ..GcOptions::default()
        },
        ..LifecycleOptions::default()
    };
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    assert_eq!(
        (report.tables[0].gc_deleted, report.tables[0].gc_too_young),
        (0, 1),
        "{report}"
    );
    store.head(&orphan).await.expect("a young orphan survives");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    assert!(report.tables[0].gc_deleted >= 1, "{report}");
    assert!(matches!(
        store.head(&orphan).await,
        Err(object_store::Error::NotFound { .. })
    ));
    let catalog = Catalog::new(Arc::clone(&store));
    for seg in &catalog.load(TABLE).await.expect("table").segments {
        store
            .head(&seg.path.as_str().into())
            .await
            .expect("live segments stay");
    }
    assert_eq!(log_rows(&catalog).await.len(), 100);
}

/// Retention of one hour on the real S3 server: a wholly old segment leaves the manifest
/// unread; a partly old one is rewritten without its old rows.
#[tokio::test]
async fn retention_drops_expired_segments_and_rewrites_partly_expired_ones() {
    let store = s3_store("retention").await;
    let n = node(&store);
    let now = chrono::Utc::now().timestamp_micros();
    let old = |v: i64| now - 3 * HOUR + v;
    let fresh = |v: i64| now - HOUR / 6 + v;
    // A: all old. B: half old, half fresh. C: fresh.
    n.write(write(batch(0, 100, old), 1, Some(3600)))
        .await
        .expect("write");
    n.flush_all().await.expect("flush");
    n.write(write(batch(100, 50, old), 1, Some(3600)))
        .await
        .expect("write");
    n.write(write(batch(150, 50, fresh), 1, Some(3600)))
        .await
        .expect("write");
    n.flush_all().await.expect("flush");
    n.write(write(batch(200, 100, fresh), 1, Some(3600)))
        .await
        .expect("write");
    n.flush_all().await.expect("flush");
    let catalog = Catalog::new(Arc::clone(&store));
    let before = catalog.load(TABLE).await.expect("table");
    assert_eq!(before.segments.len(), 3);
    let rows_before = log_rows(&catalog).await;

    let tenants = Tenants::new(Arc::clone(&store));
    let opts = LifecycleOptions {
        gc: young_gc(),
        ..LifecycleOptions::default()
    };
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    let t = &report.tables[0];
    assert_eq!((t.expired_segments, t.rows_expired), (1, 50), "{report}");
    let m = catalog.load(TABLE).await.expect("table");
    let paths_after: Vec<&str> = m.segments.iter().map(|s| s.path.as_str()).collect();
    assert!(
        !paths_after.contains(&before.segments[0].path.as_str()),
        "A is gone"
    );
    assert!(
        !paths_after.contains(&before.segments[1].path.as_str()),
        "B was rewritten"
    );
    let cutoff = now - HOUR;
    let expected: Vec<Row> = rows_before
        .iter()
        .filter(|r| r.2 >= cutoff)
        .cloned()
        .collect();
    assert_eq!(expected.len(), 150);
    assert_eq!(
        segment_rows(&catalog).await,
        expected,
        "only the fresh rows remain, offsets kept"
    );
    assert!(
        m.segments
            .iter()
            .all(|s| s.min_ts.is_some_and(|t| t >= cutoff))
    );
    remove_all(&store).await;
}

/// A delete rule on the real S3 server: rows it covers disappear from the segments, rows
/// written after it with the same host survive, and the rule leaves the manifest once every
/// row below its bound is flushed and rewritten.
#[tokio::test]
async fn deletes_become_physical_and_the_rule_is_dropped_once_applied() {
    let store = s3_store("deletes").await;
    let n = node(&store);
    let now = chrono::Utc::now().timestamp_micros();
    let ts = |v: i64| now - HOUR + v;
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut track = |r: strata_ingest::WriteResult| {
        for s in r.shards {
            let e = next.entry(s.shard).or_default();
            *e = (*e).max(s.last_offset + 1);
        }
    };
    for i in 0..4 {
        track(
            n.write(write(batch(i * 70, 70, ts), 2, None))
                .await
                .expect("write"),
        );
        n.flush_all().await.expect("flush");
    }
    // The last rows before the rule stay in the WAL for now.
    track(
        n.write(write(batch(280, 70, ts), 2, None))
            .await
            .expect("write"),
    );
    let below = next.clone();
    let catalog = Catalog::new(Arc::clone(&store));
    let m = catalog
        .commit(TABLE, |m| {
            let id = m.next_delete_id;
            m.next_delete_id += 1;
            m.deletes.push(DeleteRule {
                id,
                predicate: "host = 'h3'".into(),
                below_offsets: below.clone(),
                created_at_ms: 0,
            });
            Ok(())
        })
        .await
        .expect("the rule");
    let rule = m.deletes[0].id;
    // Written after the rule: their h3 rows must survive.
    n.write(write(batch(350, 70, ts), 2, None))
        .await
        .expect("write");

    let tenants = Tenants::new(Arc::clone(&store));
    let opts = LifecycleOptions {
        gc: young_gc(),
        ..LifecycleOptions::default()
    };
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    assert_eq!(report.tables[0].rows_deleted, 40, "{report}");
    assert!(
        report.tables[0].rules_dropped.is_empty(),
        "rows below the bound are still unflushed: {report}"
    );
    assert_eq!(catalog.load(TABLE).await.expect("table").deletes.len(), 1);

    n.flush_all().await.expect("flush");
    let report = run_pass(&tenants, &opts, None).await.expect("a clean pass");
    assert_eq!(report.tables[0].rules_dropped, vec![rule], "{report}");
    assert_eq!(report.tables[0].rows_deleted, 10, "{report}");
    let m = catalog.load(TABLE).await.expect("table");
    assert!(m.deletes.is_empty());
    assert!(m.segments.iter().all(|s| s.deletes_applied >= rule));

    let rows = segment_rows(&catalog).await;
    let deleted = |r: &Row| r.3 == "h3" && r.1 < below[&r.0];
    assert!(
        !rows.iter().any(deleted),
        "covered rows are physically gone"
    );
    let survivors: Vec<i64> = rows.iter().filter(|r| r.3 == "h3").map(|r| r.4).collect();
    assert_eq!(
        survivors.len(),
        10,
        "h3 rows written after the rule: {survivors:?}"
    );
    assert!(survivors.iter().all(|v| *v >= 350));
    let mut vals: Vec<i64> = rows.iter().map(|r| r.4).collect();
    vals.sort_unstable();
    let expected: Vec<i64> = (0..420).filter(|v| v % 7 != 3 || *v >= 350).collect();
    assert_eq!(vals, expected);
    remove_all(&store).await;
}
