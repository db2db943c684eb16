//! Query-path tests against `InMemory` stores and temporary folders.

mod budget;
mod cache;
mod confinement;
mod freshness;
mod joins;
mod lifecycle;
mod pruning;
mod rules_review;
mod sql_suite;
mod views;

/// `(total, matched)` of the file pruning of the scan that carries a join's dynamic filter, in
/// `EXPLAIN ANALYZE` output (`files_ranges_pruned_statistics=N total → M matched`).
fn dynamic_filter_file_pruning(explain: &str) -> (u64, u64) {
    let probe = explain
        .split("DataSourceExec")
        .find(|s| s.contains("DynamicFilter"))
        .unwrap_or_else(|| panic!("no scan with a dynamic filter: {explain}"));
    let metric = probe
        .split("files_ranges_pruned_statistics=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no file pruning metric: {probe}"));
    let numbers: Vec<u64> = metric
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [total, matched] => (total, matched),
        _ => panic!("unexpected metric {metric:?}"),
    }
}
