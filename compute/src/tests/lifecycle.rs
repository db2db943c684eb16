//! Schema evolution, delete rules and retention.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use strata_storage::{Catalog, DeleteRule, TableDef};

use crate::QueryEngine;
use crate::testing::{
    Cell, Fixture, SHARDS, WAL_FLOOR, query, set_wal_floor, test_config, with_offsets,
    write_segment, write_wal,
};

fn evo_def(with_b: bool) -> TableDef {
    let mut fields = vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("a", DataType::Int64, false),
    ];
    if with_b {
        fields.push(Field::new("b", DataType::Utf8, true));
    }
    TableDef {
        name: "evo".into(),
        schema: Schema::new(fields),
        time_column: Some("ts".into()),
        shard_key: None,
        num_shards: 1,
        retention_secs: None,
        bloom_columns: vec![],
        created_at_ms: 1,
    }
}

fn evo_batch(def: &TableDef, ts: &[i64], b: Option<&[&str]>) -> RecordBatch {
    let mut cols: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(ts.to_vec())),
        Arc::new(Int64Array::from_iter_values(ts.iter().map(|t| t * 10))),
    ];
    if let Some(b) = b {
        cols.push(Arc::new(StringArray::from(b.to_vec())));
    }
    RecordBatch::try_new(def.schema_ref(), cols).expect("batch")
}

#[tokio::test]
async fn older_segments_and_wal_entries_read_new_columns_as_null() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog = Catalog::new(Arc::clone(&store));
    let v1 = evo_def(false);
    catalog.create_table(v1.clone()).await.expect("create");
    write_segment(
        &catalog,
        &v1,
        0,
        &with_offsets(&evo_batch(&v1, &[1, 2], None), 0),
    )
    .await;
    // A WAL entry written before the column was added.
    write_wal(
        &store,
        "evo",
        0,
        0,
        &[with_offsets(&evo_batch(&v1, &[5], None), 4)],
    )
    .await;
    // The column `b` is added (nullable), and a newer segment has it.
    let v2 = evo_def(true);
    let schema = v2.schema.clone();
    catalog
        .commit("evo", move |m| {
            m.table.schema = schema.clone();
            Ok(())
        })
        .await
        .expect("evolve");
    write_segment(
        &catalog,
        &v2,
        0,
        &with_offsets(&evo_batch(&v2, &[3, 4], Some(&["x", "y"])), 2),
    )
    .await;

    let engine = QueryEngine::new(catalog, test_config(), &prometheus::Registry::new())
        .await
        .expect("engine");
    let got = query(&engine, "SELECT a, b FROM evo ORDER BY ts").await;
    assert_eq!(
        got,
        vec![
            vec![Cell::from(10i64), Cell::Null],
            vec![Cell::from(20i64), Cell::Null],
            vec![Cell::from(30i64), Cell::from("x")],
            vec![Cell::from(40i64), Cell::from("y")],
            vec![Cell::from(50i64), Cell::Null],
        ]
    );
    let got = query(&engine, "SELECT count(*) FROM evo WHERE b IS NULL").await;
    assert_eq!(got, vec![vec![Cell::from(3usize)]]);
}

#[tokio::test]
async fn delete_rules_hide_rows_below_their_offsets() {
    let f = Fixture::new().await;
    // Rule: ERROR rows are deleted in shards 0 and 2, up to the middle of each shard's log;
    // shards 1 and 3 are not covered (rows there survive).
    let mut below = BTreeMap::new();
    for shard in [0u32, 2] {
        let n = f.rows.iter().filter(|r| r.shard == shard).count() as u64;
        below.insert(shard, n - 100); // reaches into the WAL tail
    }
    let b = below.clone();
    f.catalog
        .commit("logs", move |m| {
            m.deletes.push(DeleteRule {
                id: 1,
                predicate: "level = 'ERROR'".into(),
                below_offsets: b.clone(),
                created_at_ms: 1,
            });
            Ok(())
        })
        .await
        .expect("commit rule");
    let hidden = |r: &crate::testing::LogRow| {
        r.level == "ERROR" && below.get(&r.shard).is_some_and(|b| r.offset < *b)
    };
    assert!(
        f.rows
            .iter()
            .any(|r| hidden(r) && r.offset >= (f.rows.len() as u64 / SHARDS as u64))
    );
    let engine = f.engine(test_config()).await;

    let errors = f
        .rows
        .iter()
        .filter(|r| r.level == "ERROR" && !hidden(r))
        .count();
    let got = query(&engine, "SELECT count(*) FROM logs WHERE level = 'ERROR'").await;
    assert_eq!(got, vec![vec![Cell::from(errors)]]);
    let total = f.rows.iter().filter(|r| !hidden(r)).count();
    let got = query(&engine, "SELECT count(*) FROM logs").await;
    assert_eq!(got, vec![vec![Cell::from(total)]]);
    // Columns the rule needs but the query does not select.
    let visible: usize = f
        .rows
        .iter()
        .filter(|r| !hidden(r) && r.status == 500)
        .count();
    let got = query(
        &engine,
        "SELECT count(request_id) FROM logs WHERE status = 500",
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(visible)]]);
    // A rule whose predicate is NULL for a row keeps the row (IS NOT TRUE semantics).
    let got = query(&engine, "SELECT count(*) FROM logs WHERE level IS NULL").await;
    assert_eq!(got, vec![vec![Cell::from(0usize)]]);
}

#[tokio::test]
async fn retention_hides_old_rows_and_skips_old_segments() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog = Catalog::new(Arc::clone(&store));
    let mut def = evo_def(false);
    def.name = "recent".into();
    def.retention_secs = Some(3600);
    catalog.create_table(def.clone()).await.expect("create");
    let now = chrono::Utc::now().timestamp_micros();
    let hour = 3_600_000_000;
    let old = write_segment(
        &catalog,
        &def,
        0,
        &with_offsets(&evo_batch(&def, &[now - 3 * hour, now - 2 * hour], None), 0),
    )
    .await;
    write_segment(
        &catalog,
        &def,
        0,
        &with_offsets(
            &evo_batch(
                &def,
                &[now - 2 * hour, now - hour / 2, now - hour / 4],
                None,
            ),
            2,
        ),
    )
    .await;
    let floors: BTreeMap<u32, u64> = [(0, WAL_FLOOR)].into();
    set_wal_floor(&catalog, "recent", &floors).await;
    write_wal(
        &store,
        "recent",
        0,
        WAL_FLOOR,
        &[with_offsets(
            &evo_batch(&def, &[now - 5 * hour, now - 60_000_000], None),
            5,
        )],
    )
    .await;

    let engine = QueryEngine::new(catalog.clone(), test_config(), &prometheus::Registry::new())
        .await
        .expect("engine");
    let got = query(
        &engine,
        "SELECT count(*), min(ts) >= now() - INTERVAL '1 hour' FROM recent",
    )
    .await;
    assert_eq!(got, vec![vec![Cell::from(3usize), Cell::I(1)]]);
    // The expired segment was never opened: the bucket served every other segment and the WAL.
    let segments = catalog.load("recent").await.expect("load").segments.clone();
    let wal = crate::testing::object_size(
        &store,
        strata_storage::paths::wal_entry("recent", 0, WAL_FLOOR).as_ref(),
    )
    .await;
    let expected: u64 = segments
        .iter()
        .filter(|s| s.path != old.path)
        .map(|s| s.bytes)
        .sum::<u64>()
        + wal;
    assert_eq!(engine.cache().expect("cache").bucket_bytes(), expected);
}
