//! Ingest settings.

use std::time::Duration;

use strata_storage::segment::SegmentOptions;

/// How shard writers batch, flush and bound memory.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Group commit window: appends arriving within it share one WAL PUT. Default: 25 ms.
    pub group_commit_interval: Duration,
    /// A group is committed early once it holds this many bytes. Default: 16 MiB.
    pub group_commit_max_bytes: usize,
    /// Flush the memtable to a segment at this many bytes. Default: 64 MiB.
    pub flush_bytes: usize,
    /// ... or when its oldest row is this old. Default: 10 s.
    pub flush_age: Duration,
    /// Maximum buffered bytes (pending + memtable) per shard. Default: 256 MiB.
    pub max_shard_bytes: usize,
    /// Maximum buffered bytes across all shards of the node. Default: 1 GiB.
    pub max_node_bytes: usize,
    /// Largest accepted request, in Arrow memory bytes. Default: 64 MiB.
    pub max_batch_bytes: usize,
    /// Create a table on first write from the batch schema. Default: true.
    pub auto_create: bool,
    /// Shards of an auto-created table. Default: 4.
    pub default_shards: u32,
    /// This node's index among `node_count` ingest nodes; it owns shards `s % node_count == node_index`.
    pub node_index: u32,
    /// Number of ingest nodes. Default: 1.
    pub node_count: u32,
    /// Segment encoding.
    pub segment: SegmentOptions,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group_commit_interval: Duration::from_millis(25),
            group_commit_max_bytes: 16 << 20,
            flush_bytes: 64 << 20,
            flush_age: Duration::from_secs(10),
            max_shard_bytes: 256 << 20,
            max_node_bytes: 1 << 30,
            max_batch_bytes: 64 << 20,
            auto_create: true,
            default_shards: 4,
            node_index: 0,
            node_count: 1,
            segment: SegmentOptions::default(),
        }
    }
}

impl IngestConfig {
    pub fn owns(&self, shard: u32) -> bool {
        self.node_count <= 1 || shard % self.node_count == self.node_index
    }
}
