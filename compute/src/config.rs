//! Query-node settings: plain values with documented defaults.

use std::path::PathBuf;
use std::time::Duration;

/// How a query node runs queries and sizes its cache.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory one query may hold (hash tables, sort buffers, ...). A query that needs more
    /// spills (if [`Self::spill_dir`] is set) or fails with `ResourceExhausted`.
    /// Default: 1 GiB, half of [`Self::node_memory_bytes`].
    pub memory_limit_bytes: usize,
    /// Wall-clock limit of a query, planning and streaming included; a query's own
    /// timeout may only shorten it. Default: 60 s.
    pub query_timeout: Duration,
    /// Queries running at once on this node; more wait up to [`Self::admission_wait`],
    /// then fail with `ResourceExhausted`. Default: 16.
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot when [`Self::max_concurrent_queries`] are running.
    /// Default: 1 s.
    pub admission_wait: Duration,
    /// Parallelism of one query (DataFusion `target_partitions`). Default: 2.
    pub target_partitions: usize,
    /// Rows per record batch. Default: 8192.
    pub batch_size: usize,
    /// Memory tier of the data cache, in bytes; 0 keeps nothing in memory (every entry goes
    /// straight to the SSD tier, if there is one). Default: 256 MiB.
    pub cache_memory_bytes: usize,
    /// SSD tier of the data cache, in bytes (used only with [`Self::cache_dir`]).
    /// Default: 4 GiB.
    pub cache_disk_bytes: usize,
    /// Folder of the SSD tier; `None` keeps the cache in memory only. The tier is recovered
    /// when the node restarts. Default: `None`.
    pub cache_dir: Option<PathBuf>,
    /// Objects are cached in aligned blocks of this size, so readers of nearby ranges share
    /// entries. Default: 256 KiB: small enough that a read of one column chunk or of a
    /// footer does not pull in much of its neighbours (at 1 MiB the blocks of a scan over
    /// two columns were 2-3x the bytes it needed and overflowed the memory tier), large
    /// enough that a chunk is a few requests.
    pub cache_block_bytes: usize,
    /// Budget of DataFusion's Parquet metadata cache (footers and page indexes), separate
    /// from the data cache. Default: 64 MiB.
    pub metadata_cache_bytes: usize,
    /// Decoded unflushed WAL entries kept in memory, so repeated queries over the same
    /// tail skip the GET and decode. Size it for the unflushed tail of the busy tables (up to
    /// the memtable size per shard): an LRU smaller than a tail that every query scans
    /// whole never hits. Default: 256 MiB.
    pub wal_cache_bytes: usize,
    /// How long a table manifest read from the bucket is reused; bounds how stale a query's
    /// view may be (plus the WAL batch interval). Default: 100 ms.
    pub manifest_ttl: Duration,
    /// Folder for spill files of large sorts and aggregations; `None` disables spilling, so
    /// such queries fail at [`Self::memory_limit_bytes`]. Default: `None`.
    pub spill_dir: Option<PathBuf>,
    /// Bound on spill files per node. Default: 16 GiB.
    pub max_spill_bytes: u64,
    /// Memory all queries of the node may hold together, whatever their tenants; each
    /// query also stays within [`Self::memory_limit_bytes`]. Default: 2 GiB.
    pub node_memory_bytes: usize,
    /// Worker threads of the pool queries run on, apart from the threads serving gRPC,
    /// HTTP and ingest; 0 means one per CPU core. Default: 0.
    pub threads: usize,
    /// A join with no join condition whose inputs' row estimates multiply past this is
    /// refused at planning (`ResourceExhausted`); 0 turns the check off.
    /// Default: 1,000,000,000.
    pub max_cross_join_rows: u64,
    /// Rows a query may return; past it the result fails with `ResourceExhausted` (add a
    /// `LIMIT`). 0: no limit. Default: 10,000,000.
    pub max_result_rows: u64,
    /// Bytes (Arrow, in memory) a query may return; past it the result fails with
    /// `ResourceExhausted`. 0: no limit. Default: 2 GiB.
    pub max_result_bytes: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 1 << 30,
            query_timeout: Duration::from_secs(60),
            max_concurrent_queries: 16,
            admission_wait: Duration::from_secs(1),
            target_partitions: 2,
            batch_size: 8192,
            cache_memory_bytes: 256 << 20,
            cache_disk_bytes: 4 << 30,
            cache_dir: None,
            cache_block_bytes: 256 << 10,
            metadata_cache_bytes: 64 << 20,
            wal_cache_bytes: 256 << 20,
            manifest_ttl: Duration::from_millis(100),
            spill_dir: None,
            max_spill_bytes: 16 << 30,
            node_memory_bytes: 2 << 30,
            threads: 0,
            max_cross_join_rows: 1_000_000_000,
            max_result_rows: 10_000_000,
            max_result_bytes: 2 << 30,
        }
    }
}
