//! Unit tests of the lifecycle policy (pure functions over manifests).

use std::collections::{BTreeMap, HashSet};

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use strata_storage::{DeleteRule, SegmentMeta, TableDef, TableManifest};

use super::plan::{WINDOW_MICROS, applied_rules, plan_runs, retention_cutoff};
use super::{LifecycleOptions, replace_segments};

const MIB: u64 = 1 << 20;
/// Noon of a day long past (cold), and "now" for the tests.
const DAY0: i64 = 19_000 * WINDOW_MICROS;
const NOW: i64 = 19_500 * WINDOW_MICROS + WINDOW_MICROS / 2;

fn def(unit: TimeUnit, retention_secs: Option<u64>) -> TableDef {
    TableDef {
        name: "t".into(),
        schema: Schema::new(vec![
            Field::new("ts", DataType::Timestamp(unit, None), false),
            Field::new("v", DataType::Int64, true),
        ]),
        time_column: Some("ts".into()),
        shard_key: None,
        num_shards: 2,
        retention_secs,
        bloom_columns: vec![],
        created_at_ms: 0,
    }
}

fn seg(name: &str, shard: u32, bytes: u64, ts: (i64, i64), off: (u64, u64)) -> SegmentMeta {
    SegmentMeta {
        path: format!("tables/t/seg/{shard:04}/{name}.parquet"),
        shard,
        rows: off.1 - off.0 + 1,
        bytes,
        min_ts: Some(ts.0),
        max_ts: Some(ts.1),
        min_offset: off.0,
        max_offset: off.1,
        columns: BTreeMap::new(),
        level: 0,
        deletes_applied: 0,
        created_at_ms: 0,
    }
}

fn manifest(segments: Vec<SegmentMeta>) -> TableManifest {
    let mut m = TableManifest::new(def(TimeUnit::Microsecond, None));
    m.segments = segments;
    m
}

fn opts() -> LifecycleOptions {
    LifecycleOptions {
        target_bytes: 100 * MIB,
        ..LifecycleOptions::default()
    }
}

fn names(runs: &[super::plan::Run]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            r.inputs
                .iter()
                .map(|s| {
                    s.path
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches(".parquet")
                        .to_string()
                })
                .collect()
        })
        .collect()
}

#[test]
fn small_segments_merge_per_shard_and_day() {
    let m = manifest(vec![
        seg("a", 0, MIB, (DAY0 + 20, DAY0 + 30), (10, 19)),
        seg("b", 0, MIB, (DAY0 + 10, DAY0 + 15), (0, 9)),
        seg("c", 1, MIB, (DAY0, DAY0 + 5), (0, 9)),
        seg("d", 1, MIB, (DAY0 + 1, DAY0 + 6), (10, 19)),
        // Next day on shard 0: another window.
        seg(
            "e",
            0,
            MIB,
            (DAY0 + WINDOW_MICROS, DAY0 + WINDOW_MICROS + 1),
            (20, 29),
        ),
        // Big: not a candidate.
        seg("big", 0, 60 * MIB, (DAY0, DAY0 + 100), (30, 39)),
    ]);
    let runs = plan_runs(&m, &opts(), None, NOW);
    assert_eq!(
        names(&runs),
        vec![vec!["b", "a"], vec!["c", "d"]],
        "sorted by time, lone `e` waits"
    );
}

#[test]
fn runs_are_packed_up_to_the_target_max_inputs_and_memory() {
    let segs: Vec<_> = (0..10u64)
        .map(|i| {
            seg(
                &format!("s{i}"),
                0,
                30 * MIB,
                (DAY0 + i as i64, DAY0 + i as i64),
                (i * 10, i * 10 + 9),
            )
        })
        .collect();
    let runs = plan_runs(&manifest(segs.clone()), &opts(), None, NOW);
    assert_eq!(
        runs.iter().map(|r| r.inputs.len()).collect::<Vec<_>>(),
        vec![3, 3, 3],
        "90 MiB each; the 10th waits"
    );
    let o = LifecycleOptions {
        max_inputs: 4,
        target_bytes: 1 << 40,
        ..opts()
    };
    let runs = plan_runs(&manifest(segs.clone()), &o, None, NOW);
    assert_eq!(
        runs.iter().map(|r| r.inputs.len()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    // Reader memory: 30 MiB + 3 MiB of pages + 3 × 192 KiB per input; 70 MiB fit two.
    let o = LifecycleOptions {
        merge_memory_bytes: 70 * MIB,
        target_bytes: 1 << 40,
        ..opts()
    };
    let runs = plan_runs(&manifest(segs), &o, None, NOW);
    assert_eq!(
        runs.iter().map(|r| r.inputs.len()).collect::<Vec<_>>(),
        vec![2, 2, 2, 2, 2]
    );
}

#[test]
fn hot_windows_leave_a_dominant_segment_alone_and_cold_ones_merge_fully() {
    let today = NOW.div_euclid(WINDOW_MICROS) * WINDOW_MICROS;
    let hot = manifest(vec![
        seg("grown", 0, 20 * MIB, (today, today + 10), (0, 99)),
        seg("n1", 0, 2 * MIB, (today + 11, today + 12), (100, 109)),
        seg("n2", 0, 2 * MIB, (today + 13, today + 14), (110, 119)),
    ]);
    assert_eq!(
        names(&plan_runs(&hot, &opts(), None, NOW)),
        vec![vec!["n1", "n2"]]
    );
    // Once the small ones add up to the big one, all merge.
    let mut caught_up = hot.clone();
    caught_up
        .segments
        .push(seg("n3", 0, 16 * MIB, (today + 15, today + 16), (120, 129)));
    assert_eq!(
        names(&plan_runs(&caught_up, &opts(), None, NOW)),
        vec![vec!["grown", "n1", "n2", "n3"]]
    );
    // The same layout two days ago: cold, merged fully.
    let shift = 2 * WINDOW_MICROS;
    let mut cold = hot.clone();
    for s in &mut cold.segments {
        s.min_ts = s.min_ts.map(|t| t - shift);
        s.max_ts = s.max_ts.map(|t| t - shift);
    }
    assert_eq!(
        names(&plan_runs(&cold, &opts(), None, NOW)),
        vec![vec!["grown", "n1", "n2"]]
    );
}

#[test]
fn pending_delete_rules_force_a_rewrite_of_big_lone_segments() {
    let mut m = manifest(vec![
        seg("old", 0, 90 * MIB, (DAY0, DAY0 + 10), (0, 99)),
        seg("new", 0, 90 * MIB, (DAY0 + 11, DAY0 + 20), (100, 199)),
        seg("other", 1, 90 * MIB, (DAY0, DAY0 + 10), (0, 99)),
    ]);
    assert!(plan_runs(&m, &opts(), None, NOW).is_empty());
    m.deletes.push(DeleteRule {
        id: 1,
        predicate: "v = 1".into(),
        below_offsets: BTreeMap::from([(0, 100), (1, 0)]),
        created_at_ms: 0,
    });
    assert_eq!(
        names(&plan_runs(&m, &opts(), None, NOW)),
        vec![vec!["old"]],
        "only rows below the bound"
    );
    m.segments[0].deletes_applied = 1;
    assert!(
        plan_runs(&m, &opts(), None, NOW).is_empty(),
        "already applied"
    );
}

#[test]
fn retention_skips_expired_segments_and_rewrites_mostly_expired_ones() {
    let hour = 3_600_000_000i64;
    let mut m = manifest(vec![
        seg(
            "gone",
            0,
            90 * MIB,
            (NOW - 5 * hour, NOW - 4 * hour),
            (0, 9),
        ),
        // 3 of its 4 hours expired: rewritten; 1 of 4: left for the query path to filter.
        seg(
            "mostly",
            0,
            90 * MIB,
            (NOW - 6 * hour, NOW - 2 * hour),
            (10, 19),
        ),
        seg("barely", 0, 90 * MIB, (NOW - 4 * hour, NOW), (20, 29)),
    ]);
    m.table.retention_secs = Some(3 * 3600);
    let cutoff = retention_cutoff(&m.table, NOW);
    assert_eq!(cutoff, Some(NOW - 3 * hour));
    assert_eq!(
        names(&plan_runs(&m, &opts(), cutoff, NOW)),
        vec![vec!["mostly"]]
    );
}

#[test]
fn retention_cutoff_rounds_like_the_query_path() {
    let d = def(TimeUnit::Second, Some(10));
    // now = 12.5 s → cutoff 2.5 s → the query keeps ts >= 2 s.
    assert_eq!(retention_cutoff(&d, 12_500_000), Some(2_000_000));
    let d = def(TimeUnit::Nanosecond, Some(10));
    assert_eq!(retention_cutoff(&d, 12_500_000), Some(2_500_000));
    assert_eq!(
        retention_cutoff(&def(TimeUnit::Second, None), 12_500_000),
        None
    );
}

#[test]
fn rules_are_done_once_flushed_and_applied_everywhere() {
    let mut m = manifest(vec![
        seg("a", 0, MIB, (DAY0, DAY0), (0, 99)),
        seg("b", 0, MIB, (DAY0, DAY0), (100, 199)),
        seg("c", 1, MIB, (DAY0, DAY0), (0, 49)),
    ]);
    m.deletes.push(DeleteRule {
        id: 3,
        predicate: "v = 1".into(),
        below_offsets: BTreeMap::from([(0, 150), (1, 50)]),
        created_at_ms: 0,
    });
    m.shards.entry(0).or_default().flushed_offset = 200;
    m.shards.entry(1).or_default().flushed_offset = 50;
    assert!(applied_rules(&m).is_empty());
    m.segments[0].deletes_applied = 3;
    m.segments[1].deletes_applied = 5;
    assert!(applied_rules(&m).is_empty(), "shard 1 still has it pending");
    m.segments[2].deletes_applied = 3;
    assert_eq!(applied_rules(&m), vec![3]);
    // Rows below the bound still in the WAL keep the rule.
    m.shards.entry(1).or_default().flushed_offset = 40;
    assert!(applied_rules(&m).is_empty());
}

#[test]
fn outputs_take_the_place_of_the_first_input() {
    let mut m = manifest(vec![
        seg("x", 0, MIB, (DAY0, DAY0), (0, 0)),
        seg("a", 0, MIB, (DAY0, DAY0), (1, 1)),
        seg("y", 0, MIB, (DAY0, DAY0), (2, 2)),
        seg("b", 0, MIB, (DAY0, DAY0), (3, 3)),
    ]);
    let inputs: HashSet<&str> = ["tables/t/seg/0000/a.parquet", "tables/t/seg/0000/b.parquet"]
        .into_iter()
        .collect();
    let out = seg("ab", 0, MIB, (DAY0, DAY0), (1, 3));
    replace_segments(&mut m, &inputs, &[out]);
    let order: Vec<_> = m
        .segments
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(order, vec!["x.parquet", "ab.parquet", "y.parquet"]);
}
