//! Acknowledged rows are visible from the WAL, and stay visible exactly once when a flush
//! moves them into a segment and deletes the WAL objects.

use std::collections::BTreeMap;
use std::time::Duration;

use object_store::ObjectStoreExt;
use strata_storage::{paths, wal};

use crate::testing::{
    Cell, Fixture, LogRow, SHARDS, WAL_FLOOR, logs_batch, logs_def, query, test_config,
};
use crate::{QueryConfig, QueryEngine};

const ROWS_SQL: &str = "SELECT request_id, host, ts FROM logs ORDER BY request_id";

fn expected(rows: &[LogRow]) -> Vec<Vec<Cell>> {
    let mut r: Vec<&LogRow> = rows.iter().collect();
    r.sort_by_key(|r| r.request_id);
    r.iter()
        .map(|r| vec![r.request_id.into(), r.host.as_str().into(), r.ts.into()])
        .collect()
}

/// "Flush" shard `shard`: its WAL rows become a segment, the floor moves past them, and the
/// WAL objects are deleted (in that order, as ingest does).
async fn flush_shard(f: &Fixture, wal_rows: &[LogRow], shard: u32) {
    let rows: Vec<LogRow> = wal_rows
        .iter()
        .filter(|r| r.shard == shard)
        .cloned()
        .collect();
    let def = logs_def();
    crate::testing::write_segment(&f.catalog, &def, shard, &logs_batch(&rows, true)).await;
    let floors: BTreeMap<u32, u64> = [(shard, WAL_FLOOR + 2)].into();
    crate::testing::set_wal_floor(&f.catalog, "logs", &floors).await;
    for seq in WAL_FLOOR - 1..WAL_FLOOR + 2 {
        f.store
            .delete(&paths::wal_entry("logs", shard, seq))
            .await
            .expect("delete wal");
    }
}

#[tokio::test]
async fn wal_rows_are_visible_and_survive_a_flush_once() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let wal_rows = &f.rows[f.rows.len() - crate::testing::WAL_ROWS..];
    // Rows only in the WAL are returned.
    let r = &wal_rows[10];
    let got = query(
        &engine,
        &format!("SELECT host FROM logs WHERE request_id = {}", r.request_id),
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(r.host.as_str())]]);
    let before = query(&engine, ROWS_SQL).await;
    assert_eq!(before, expected(&f.rows));

    for shard in 0..SHARDS {
        flush_shard(&f, wal_rows, shard).await;
        let after = query(&engine, ROWS_SQL).await;
        assert_eq!(
            after, before,
            "after flushing shard {shard}: same rows, no duplicates"
        );
    }
    for shard in 0..SHARDS {
        assert!(
            wal::list(f.store.as_ref(), "logs", shard, 0)
                .await
                .expect("list")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_stale_manifest_is_replanned() {
    let f = Fixture::new().await;
    // Manifests reused for an hour: after the flush the engine plans with an old one, finds
    // its WAL entries gone, and must re-plan on the new manifest.
    let config = QueryConfig {
        manifest_ttl: Duration::from_secs(3600),
        ..test_config()
    };
    let engine: QueryEngine = f.engine(config).await;
    let before = query(&engine, ROWS_SQL).await;
    let wal_rows = &f.rows[f.rows.len() - crate::testing::WAL_ROWS..];
    flush_shard(&f, wal_rows, 1).await;
    let after = query(&engine, ROWS_SQL).await;
    assert_eq!(after, before);
}
