use std::collections::BTreeMap;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit};
use strata_common::HashRing;
use strata_storage::{ColumnStats, SegmentMeta};

use super::ScanPruning;
use crate::testing::{SHARDS, logs_def, shard_of_host};

fn seg(shard: u32, min_ts: i64, max_ts: i64, status: (i64, i64)) -> SegmentMeta {
    let mut columns = BTreeMap::new();
    columns.insert(
        "status".to_string(),
        ColumnStats {
            min: Some(status.0.into()),
            max: Some(status.1.into()),
            nulls: 0,
        },
    );
    SegmentMeta {
        path: format!("s{shard}-{min_ts}"),
        shard,
        rows: 1,
        bytes: 1,
        min_ts: Some(min_ts),
        max_ts: Some(max_ts),
        min_offset: 0,
        max_offset: 0,
        columns,
        level: 0,
        deletes_applied: 0,
        created_at_ms: 0,
    }
}

fn ts(v: i64) -> datafusion::logical_expr::Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(v), None))
}

#[test]
fn time_bounds() {
    let def = logs_def();
    let schema = def.schema.clone();
    let p = ScanPruning::analyze(&def, &[col("ts").gt_eq(ts(100)), col("ts").lt(ts(200))]);
    assert!(p.keep_segment(&seg(0, 150, 160, (0, 0)), &schema));
    assert!(p.keep_segment(&seg(0, 50, 100, (0, 0)), &schema));
    assert!(!p.keep_segment(&seg(0, 50, 99, (0, 0)), &schema));
    assert!(!p.keep_segment(&seg(0, 200, 300, (0, 0)), &schema));
    let p = ScanPruning::analyze(&def, &[ts(150).lt(col("ts"))]);
    assert!(!p.keep_segment(&seg(0, 0, 150, (0, 0)), &schema));
    assert!(p.keep_segment(&seg(0, 0, 151, (0, 0)), &schema));
    let p = ScanPruning::analyze(&def, &[col("ts").between(ts(10), ts(20))]);
    assert!(!p.keep_segment(&seg(0, 21, 30, (0, 0)), &schema));
    assert!(p.keep_segment(&seg(0, 20, 30, (0, 0)), &schema));
    // Nanosecond literals are floored to microseconds, conservatively.
    let ns = lit(ScalarValue::TimestampNanosecond(Some(100_500), None));
    let p = ScanPruning::analyze(&def, &[col("ts").gt(ns)]);
    assert!(p.keep_segment(&seg(0, 0, 100, (0, 0)), &schema));
    assert!(!p.keep_segment(&seg(0, 0, 99, (0, 0)), &schema));
    let mut p = ScanPruning::analyze(&def, &[]);
    p.require_time_at_least(1_000);
    assert!(!p.keep_segment(&seg(0, 0, 999, (0, 0)), &schema));
}

#[test]
fn shard_key_equality_and_in_lists() {
    let def = logs_def();
    let ring = HashRing::for_shards(SHARDS);
    let s = shard_of_host("h007", &ring);
    let p = ScanPruning::analyze(&def, &[col("host").eq(lit("h007"))]);
    assert!((0..SHARDS).all(|x| p.keep_shard(x) == (x == s)));
    let hosts = ["h001", "h002", "h003"];
    let want: Vec<u32> = hosts.iter().map(|h| shard_of_host(h, &ring)).collect();
    let p = ScanPruning::analyze(
        &def,
        &[col("host").in_list(hosts.iter().map(|h| lit(*h)).collect(), false)],
    );
    assert!((0..SHARDS).all(|x| p.keep_shard(x) == want.contains(&x)));
    let p = ScanPruning::analyze(
        &def,
        &[col("host").eq(lit("h001")).or(col("host").eq(lit("h002")))],
    );
    assert!((0..SHARDS).all(|x| p.keep_shard(x) == want[..2].contains(&x)));
    // Not an equality on the key: every shard.
    let p = ScanPruning::analyze(&def, &[col("host").not_eq(lit("h001"))]);
    assert!((0..SHARDS).all(|x| p.keep_shard(x)));
    // AND of two keys in different shards: nothing can match.
    if let Some(other) = (0..200)
        .map(|i| format!("h{i:03}"))
        .find(|h| shard_of_host(h, &ring) != s)
    {
        let p = ScanPruning::analyze(
            &def,
            &[col("host").eq(lit("h007")), col("host").eq(lit(other))],
        );
        assert!((0..SHARDS).all(|x| !p.keep_shard(x)));
    }
}

#[test]
fn column_statistics() {
    let def = logs_def();
    let schema = def.schema.clone();
    let s = seg(0, 0, 10, (200, 404));
    let keep = |e| ScanPruning::analyze(&def, &[e]).keep_segment(&s, &schema);
    assert!(keep(col("status").eq(lit(300i32))));
    assert!(!keep(col("status").eq(lit(500i32))));
    assert!(!keep(col("status").lt(lit(200i32))));
    assert!(keep(col("status").lt_eq(lit(200i32))));
    assert!(!keep(col("status").gt(lit(404i32))));
    assert!(keep(lit(404i32).lt_eq(col("status"))));
    // Unknown columns and types never prune.
    assert!(keep(col("bytes").eq(lit(1i64))));
    assert!(keep(col("status").eq(lit("x"))));
}
