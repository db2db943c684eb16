//! How often an engine's queries take each planning and pruning path: the rewrites Strata adds
//! and the scans that prune. The differential fuzzer reports them, so a path no generated
//! query reaches is visible (`QueryEngine::paths`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path {
    /// `row_number() ... WHERE rn = 1` became a `first_value` aggregate.
    LastRowRewrite,
    /// ... and took the join-back form (`max(o)` per key joined back to the rows).
    LastRowJoinBack,
    /// A hash join holds its per-key (aggregate) side whole, so its bounds prune the scan.
    JoinHoldsKeySide,
    /// A grouped aggregate was split to run before a join to a small table.
    AggregateBeforeJoin,
    /// A table scan.
    Scan,
    /// A scan that skipped at least one segment (time, statistics, shard).
    SegmentsPruned,
    /// A scan that skipped at least one shard (shard key equality).
    ShardsPruned,
    /// A scan that read unflushed rows from the WAL.
    WalTail,
    /// A scan that skipped at least one unflushed WAL batch (time, statistics).
    WalPruned,
}

const PATHS: [(Path, &str); 9] = [
    (Path::LastRowRewrite, "rewrite: last row per key"),
    (
        Path::LastRowJoinBack,
        "rewrite: last row per key, joined back",
    ),
    (Path::JoinHoldsKeySide, "joins holding the per-key side"),
    (Path::AggregateBeforeJoin, "rewrite: aggregate before join"),
    (Path::Scan, "scans"),
    (Path::SegmentsPruned, "scans pruning segments"),
    (Path::ShardsPruned, "scans pruning shards"),
    (Path::WalTail, "scans reading the WAL tail"),
    (Path::WalPruned, "scans pruning WAL batches"),
];

/// Counters of [`Path`]s, shared by an engine's sessions.
#[derive(Debug, Default)]
pub struct PathCounts {
    counts: [AtomicU64; PATHS.len()],
}

impl PathCounts {
    pub(crate) fn hit(&self, path: Path) {
        self.counts[path as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every path with how often it was taken.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        PATHS
            .iter()
            .map(|(p, name)| (*name, self.counts[*p as usize].load(Ordering::Relaxed)))
            .collect()
    }
}
