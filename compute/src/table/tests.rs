use std::collections::BTreeMap;

use strata_storage::SegmentMeta;

use super::group_segments;

fn seg(name: &str, min: i64, max: i64, bytes: u64) -> SegmentMeta {
    SegmentMeta {
        path: name.into(),
        shard: 0,
        rows: 1,
        bytes,
        min_ts: Some(min),
        max_ts: Some(max),
        min_offset: 0,
        max_offset: 0,
        columns: BTreeMap::new(),
        level: 0,
        deletes_applied: 0,
        created_at_ms: 0,
    }
}

fn names(groups: &[Vec<&SegmentMeta>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(|s| s.path.clone()).collect())
        .collect()
}

#[test]
fn groups_stay_sorted_when_they_can() {
    let s = [
        seg("c", 20, 29, 1),
        seg("a", 0, 9, 1),
        seg("b", 10, 19, 1),
        seg("d", 30, 39, 1),
    ];
    let (g, ordered) = group_segments(s.iter().collect(), 2, true);
    assert_eq!(names(&g), [vec!["a", "c"], vec!["b", "d"]]);
    assert!(ordered);
    // Two overlapping series fit in two sorted groups.
    let s = [
        seg("a", 0, 10, 1),
        seg("b", 0, 10, 1),
        seg("c", 11, 20, 1),
        seg("d", 11, 20, 1),
    ];
    let (g, ordered) = group_segments(s.iter().collect(), 2, true);
    assert_eq!(names(&g), [vec!["a", "c"], vec!["b", "d"]]);
    assert!(ordered);
    assert_eq!(group_segments(s.iter().collect(), 8, true).0.len(), 4);
    // Three overlapping series in two groups: no order to declare, newest first instead.
    let s = [
        seg("a", 0, 10, 1),
        seg("b", 0, 10, 1),
        seg("c", 0, 10, 1),
        seg("d", 11, 20, 1),
        seg("e", 11, 20, 1),
        seg("f", 11, 20, 1),
    ];
    let (g, ordered) = group_segments(s.iter().collect(), 2, true);
    assert!(!ordered);
    assert_eq!(g.iter().map(Vec::len).sum::<usize>(), 6);
    for group in &g {
        assert!(
            group.windows(2).all(|w| w[0].max_ts >= w[1].max_ts),
            "{:?}",
            names(&g)
        );
    }
    // Not wanted (WAL rows in the scan): newest first even when sortable.
    let s = [seg("a", 0, 9, 1), seg("b", 10, 19, 1), seg("c", 20, 29, 1)];
    let (g, ordered) = group_segments(s.iter().collect(), 1, false);
    assert!(!ordered);
    assert_eq!(names(&g), [vec!["c", "b", "a"]]);
}
