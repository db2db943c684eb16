//! Write-path behaviour on an in-memory store (the S3 runs are in the engine's tests).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Int64Type, UInt64Type};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use strata_ingest::log::{end_offset, read_log};
use strata_ingest::{CreateOptions, Durability, Error, IngestConfig, IngestNode, Write};
use strata_storage::{Catalog, OFFSET_COLUMN};

fn batch(start: i64, n: i64) -> RecordBatch {
    let ts: Vec<i64> = (start..start + n)
        .map(|i| 1_700_000_000_000_000 + i * 1000)
        .collect();
    let host: Vec<String> = (start..start + n).map(|i| format!("h{}", i % 13)).collect();
    RecordBatch::try_from_iter(vec![
        ("ts", Arc::new(TimestampMicrosecondArray::from(ts)) as _),
        ("host", Arc::new(StringArray::from(host)) as _),
        (
            "v",
            Arc::new(Int64Array::from_iter_values(start..start + n)) as _,
        ),
    ])
    .unwrap()
}

fn node(store: Arc<dyn ObjectStore>, cfg: IngestConfig) -> IngestNode {
    IngestNode::new(Catalog::new(store), cfg, &prometheus::Registry::new()).unwrap()
}

fn fast() -> IngestConfig {
    IngestConfig {
        group_commit_interval: Duration::from_millis(5),
        flush_age: Duration::from_secs(3600),
        ..IngestConfig::default()
    }
}

fn write(table: &str, b: RecordBatch) -> Write {
    Write {
        table: table.into(),
        batches: vec![b],
        create: CreateOptions {
            shard_key: Some("host".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// All values of `v` across every shard's log, and checks offsets are gapless from 0.
async fn all_values(catalog: &Catalog, table: &str) -> Vec<i64> {
    let m = catalog.load(table).await.unwrap();
    let mut vals = Vec::new();
    for s in 0..m.table.num_shards {
        let b = read_log(catalog, table, s, 0, 1_000_000).await.unwrap();
        let off = b
            .column_by_name(OFFSET_COLUMN)
            .unwrap()
            .as_primitive::<UInt64Type>();
        for (i, o) in off.iter().enumerate() {
            assert_eq!(
                o,
                Some(i as u64),
                "shard {s}: offsets must be gapless from 0"
            );
        }
        vals.extend(
            b.column_by_name("v")
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .flatten(),
        );
    }
    vals.sort_unstable();
    vals
}

#[tokio::test]
async fn acked_rows_are_readable_by_offset_before_and_after_flush() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(Arc::clone(&store), fast());
    let mut acked = 0;
    for i in 0..10 {
        let r = n.write(write("logs", batch(i * 100, 100))).await.unwrap();
        assert_eq!(r.rows, 100);
        assert!(!r.shards.is_empty());
        acked += r.rows;
    }
    let c = Catalog::new(Arc::clone(&store));
    assert_eq!(all_values(&c, "logs").await, (0..1000).collect::<Vec<_>>());
    n.flush_all().await.unwrap();
    let m = c.load("logs").await.unwrap();
    assert_eq!(
        m.total_rows(),
        acked,
        "every acked row is in a segment after flush"
    );
    assert_eq!(
        all_values(&c, "logs").await,
        (0..1000).collect::<Vec<_>>(),
        "no duplicates after flush"
    );
    // The WAL was truncated after the commit.
    for s in 0..m.table.num_shards {
        let wal = strata_storage::wal::list(store.as_ref(), "logs", s, 0)
            .await
            .unwrap();
        assert!(
            wal.iter()
                .all(|(seq, _)| *seq >= m.shards[&s].flushed_wal_seq),
            "shard {s}: {wal:?}"
        );
    }
}

/// Rows per shard as the log has them (what a tail from the end must skip).
async fn rows_per_shard(catalog: &Catalog, table: &str) -> Vec<u64> {
    let m = catalog.load(table).await.unwrap();
    let mut out = Vec::new();
    for s in 0..m.table.num_shards {
        out.push(
            read_log(catalog, table, s, 0, 1_000_000)
                .await
                .unwrap()
                .num_rows() as u64,
        );
    }
    out
}

#[tokio::test]
async fn the_end_offset_follows_the_wal_and_the_flushes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(Arc::clone(&store), fast());
    let c = Catalog::new(Arc::clone(&store));
    n.write(write("logs", batch(0, 100))).await.unwrap();
    let ends = |c: Catalog| async move {
        let shards = c.load("logs").await.unwrap().table.num_shards;
        let mut out = Vec::new();
        for s in 0..shards {
            out.push(end_offset(&c, "logs", s).await.unwrap());
        }
        out
    };
    // Only in the WAL: the end is past the newest acknowledged record.
    let in_wal = ends(c.clone()).await;
    assert_eq!(in_wal, rows_per_shard(&c, "logs").await);
    assert!(in_wal.iter().sum::<u64>() == 100, "{in_wal:?}");
    n.flush_all().await.unwrap();
    assert_eq!(ends(c.clone()).await, in_wal, "a flush moves no offset");
    n.write(write("logs", batch(100, 50))).await.unwrap();
    let after = ends(c.clone()).await;
    assert_eq!(after, rows_per_shard(&c, "logs").await);
    assert_eq!(after.iter().sum::<u64>(), 150);
    // A read from the end sees nothing until the next write.
    for (s, end) in after.iter().enumerate() {
        let b = read_log(&c, "logs", s as u32, *end, 1000).await.unwrap();
        assert_eq!(b.num_rows(), 0);
    }
}

#[tokio::test]
async fn a_restarted_writer_replays_the_wal_and_continues_offsets() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    {
        let n = node(Arc::clone(&store), fast());
        n.write(write("logs", batch(0, 500))).await.unwrap();
        // Dropped without flushing: a crash.
    }
    let n2 = node(Arc::clone(&store), fast());
    n2.recover().await.unwrap();
    n2.write(write("logs", batch(500, 500))).await.unwrap();
    n2.flush_all().await.unwrap();
    let c = Catalog::new(Arc::clone(&store));
    assert_eq!(all_values(&c, "logs").await, (0..1000).collect::<Vec<_>>());
    assert_eq!(c.load("logs").await.unwrap().total_rows(), 1000);
}

#[tokio::test]
async fn a_zombie_writer_is_fenced() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cfg = IngestConfig {
        default_shards: 1,
        ..fast()
    };
    let old = node(Arc::clone(&store), cfg.clone());
    old.write(write("logs", batch(0, 10))).await.unwrap();
    let new = node(Arc::clone(&store), cfg);
    new.recover().await.unwrap(); // claims the shard: epoch bumps, fence entry written
    let e = old.write(write("logs", batch(10, 10))).await.unwrap_err();
    assert!(matches!(e, Error::NotOwner(_)), "{e}");
    assert!(e.to_string().contains("newer writer"), "{e}");
    new.write(write("logs", batch(10, 10))).await.unwrap();
    new.flush_all().await.unwrap();
    let c = Catalog::new(Arc::clone(&store));
    assert_eq!(all_values(&c, "logs").await, (0..20).collect::<Vec<_>>());
}

/// `DROP TABLE` by another node: a writer still holding a shard of the dropped table can no
/// longer acknowledge into it (its next WAL PUT meets the drop's fence); once it lets go,
/// writes land in a new table of that name, and nothing of the dropped one comes back.
#[tokio::test]
async fn a_writer_elsewhere_cannot_ack_into_a_dropped_table() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cfg = IngestConfig {
        default_shards: 2,
        ..fast()
    };
    let stale = node(Arc::clone(&store), cfg);
    stale.write(write("logs", batch(0, 30))).await.unwrap();
    let other = Catalog::new(Arc::clone(&store));
    other.drop_table("logs").await.unwrap();
    assert!(matches!(
        other.load("logs").await,
        Err(strata_storage::Error::TableNotFound(_))
    ));
    let e = stale.write(write("logs", batch(30, 30))).await.unwrap_err();
    assert!(matches!(e, Error::NotOwner(_)), "{e}");
    // The node lets go of the table's writers; the next write makes a new table.
    stale.forget_table("logs").await;
    stale.write(write("logs", batch(30, 30))).await.unwrap();
    stale.flush_all().await.unwrap();
    assert_eq!(
        all_values(&other, "logs").await,
        (30..60).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn idempotent_producers_apply_a_retried_write_once() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(Arc::clone(&store), fast());
    let mut w = write("logs", batch(0, 100));
    w.producer = Some(("p1".into(), 1));
    let first = n.write(w.clone()).await.unwrap();
    assert!(!first.duplicate);
    let again = n.write(w.clone()).await.unwrap();
    assert!(again.duplicate, "the retry must be recognised");
    n.flush_all().await.unwrap();
    // Also across a restart: the producer state is in the manifest.
    drop(n);
    let n2 = node(Arc::clone(&store), fast());
    assert!(n2.write(w).await.unwrap().duplicate);
    let c = Catalog::new(Arc::clone(&store));
    assert_eq!(all_values(&c, "logs").await.len(), 100);
}

#[tokio::test]
async fn bad_batches_store_nothing_and_schema_evolves() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(Arc::clone(&store), fast());
    n.write(write("logs", batch(0, 10))).await.unwrap();
    // Type conflict names the column and both types.
    let bad = RecordBatch::try_from_iter(vec![
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![1])) as _,
        ),
        ("v", Arc::new(StringArray::from(vec!["x"])) as _),
    ])
    .unwrap();
    let e = n.write(write("logs", bad)).await.unwrap_err().to_string();
    assert!(
        e.contains("`v`") && e.contains("Int64") && e.contains("Utf8"),
        "{e}"
    );
    // Null times.
    let nulls = RecordBatch::try_from_iter(vec![(
        "ts",
        Arc::new(TimestampMicrosecondArray::from(vec![None, Some(1)])) as _,
    )])
    .unwrap();
    let e = n.write(write("logs", nulls)).await.unwrap_err().to_string();
    assert!(e.contains("must not be null"), "{e}");
    // Oversized.
    let small = IngestNode::new(
        Catalog::new(Arc::clone(&store)),
        IngestConfig {
            max_batch_bytes: 1000,
            ..fast()
        },
        &prometheus::Registry::new(),
    )
    .unwrap();
    let e = small
        .write(write("logs", batch(0, 1000)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the limit"), "{e}");
    // A new column is added as nullable.
    let wider = RecordBatch::try_from_iter(vec![
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![5])) as _,
        ),
        ("v", Arc::new(Int64Array::from(vec![10])) as _),
        ("extra", Arc::new(StringArray::from(vec!["new"])) as _),
    ])
    .unwrap();
    n.write(write("logs", wider)).await.unwrap();
    let c = Catalog::new(Arc::clone(&store));
    let m = c.load("logs").await.unwrap();
    assert!(
        m.table
            .schema
            .field_with_name("extra")
            .unwrap()
            .is_nullable()
    );
    n.flush_all().await.unwrap();
    assert_eq!(all_values(&c, "logs").await, (0..11).collect::<Vec<_>>());
}

#[tokio::test]
async fn backpressure_refuses_writes_over_the_node_budget() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(
        Arc::clone(&store),
        IngestConfig {
            max_node_bytes: 200_000,
            flush_bytes: usize::MAX,
            ..fast()
        },
    );
    let mut refused = None;
    for i in 0..100 {
        match n.write(write("logs", batch(i * 1000, 1000))).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the budget must run out");
    assert!(matches!(e, Error::Backpressure(_)), "{e}");
    assert!(
        n.metrics()
            .rejected
            .with_label_values(&["backpressure"])
            .get()
            >= 1
    );
    // After a flush the memory is released and writes are accepted again.
    n.flush_all().await.unwrap();
    assert_eq!(n.buffered().0, 0);
    n.write(write("logs", batch(0, 10))).await.unwrap();
    let _ = Durability::Buffered;
}

/// A shard writer that ends without flushing (its handle dropped, its task aborted: what a
/// crash or fencing does) gives its buffered bytes back to the node's budget.
#[tokio::test]
async fn writers_that_stop_release_their_budget() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let n = node(Arc::clone(&store), fast());
    n.write(write("budget", batch(0, 500))).await.unwrap();
    let (held, _) = n.buffered();
    assert!(held > 0, "acknowledged rows sit in memtables until a flush");
    n.kill().await;
    let mut released = false;
    for _ in 0..100 {
        if n.buffered().0 == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        released,
        "{} bytes still held after every writer stopped",
        n.buffered().0
    );
    // The rows were durable: another node replays them.
    let again = node(store, fast());
    again.recover().await.unwrap();
    again.flush_all().await.unwrap();
    assert_eq!(again.buffered().0, 0, "nothing held once flushed");
    assert_eq!(all_values(again.catalog(), "budget").await.len(), 500);
}
