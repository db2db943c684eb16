//! Effective configuration: defaults ← TOML file (`--config`) ← `STRATA_*` env / flags.
//!
//! Every key has a default, so an empty file (or none) is valid. `strata config` prints the
//! effective settings with secrets masked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_gateway::remote::RemoteConfig;
use strata_gateway::server::GatewayConfig;

/// All settings of a Strata process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub node: NodeSettings,
    pub storage: StorageSettings,
    pub ingest: IngestSettings,
    pub query: QuerySettings,
    pub compaction: CompactionSettings,
    pub cluster: ClusterSettings,
    /// Flight SQL front door: server, limits, auth tokens, quotas.
    pub gateway: GatewayConfig,
    /// How a gateway reaches nodes: timeouts, health checks, breakers, retries, policy.
    pub remote: RemoteConfig,
    /// Result cache of the front door (`serve` and `gateway` roles).
    pub gateway_cache: GatewayCacheSettings,
}

/// Addresses and local folders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Root of everything local: the embedded object store, the SSD cache. Default: `./data`.
    pub data_dir: PathBuf,
    /// Flight SQL + ingest (gRPC). Default: `127.0.0.1:50051`.
    pub grpc_addr: SocketAddr,
    /// Health, metrics, JSON and OTLP/HTTP ingest (HTTP). Default: `127.0.0.1:8080`.
    pub http_addr: SocketAddr,
    /// A second gRPC port serving only OTLP logs export, for exporters that dial the
    /// conventional 4317 (the gRPC port serves OTLP too). Default: none.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Allow listening on non-loopback addresses without auth configured. Default: false.
    pub allow_insecure_public: bool,
    /// Connections open at once on the HTTP port; more wait. Default: 1024.
    pub http_max_connections: usize,
    /// Seconds an HTTP connection may stay without sending a byte before it is closed
    /// (slow or idle clients). Default: 30.
    pub http_idle_timeout_secs: u64,
    /// Serve the web console at `/` on the HTTP port of `serve` and `gateway`. Default: true.
    pub console: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            otlp_grpc_addr: None,
            allow_insecure_public: false,
            http_max_connections: 1024,
            http_idle_timeout_secs: 30,
            console: true,
        }
    }
}

/// The object store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `file:///path`, `s3://bucket/prefix` or `memory://`. Default: `<data_dir>/store`.
    pub object_store: Option<String>,
    /// S3 endpoint (MinIO: `http://127.0.0.1:9000`). Default: `AWS_ENDPOINT_URL`.
    pub s3_endpoint: Option<String>,
    /// Default: `AWS_REGION`, else `us-east-1`.
    pub s3_region: Option<String>,
    /// Default: `AWS_ACCESS_KEY_ID`.
    pub s3_access_key_id: Option<String>,
    /// Default: `AWS_SECRET_ACCESS_KEY`. Masked by `strata config`.
    pub s3_secret_access_key: Option<String>,
    /// Allow plain HTTP endpoints. Default: `AWS_ALLOW_HTTP`, or true for `http://` endpoints.
    pub s3_allow_http: Option<bool>,
    /// Per-request timeout in seconds. Default: 30.
    pub request_timeout_secs: Option<u64>,
    /// Attempts per request for transient failures. Default: 5.
    pub retry_attempts: Option<u32>,
}

/// The write path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Group commit window in ms (one WAL PUT per shard per window). Default: 25.
    pub group_commit_ms: Option<u64>,
    /// Flush a shard's memtable to a segment at this size. Default: 64 MiB.
    pub flush_bytes: Option<usize>,
    /// ... or at this age in seconds. Default: 10.
    pub flush_age_secs: Option<u64>,
    /// Largest write request in bytes. Default: 64 MiB.
    pub max_batch_bytes: Option<usize>,
    /// Buffered bytes per shard before RESOURCE_EXHAUSTED. Default: 256 MiB.
    pub max_shard_bytes: Option<usize>,
    /// Buffered bytes per node before RESOURCE_EXHAUSTED. Default: 1 GiB.
    pub max_node_bytes: Option<usize>,
    /// Shards of tables created on first write. Default: 4.
    pub default_shards: Option<u32>,
    /// Create tables on first write. Default: true.
    pub auto_create: Option<bool>,
}

/// The query path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySettings {
    /// Memory per query in bytes. Default: half of `node_memory_bytes` (1 GiB).
    pub memory_limit_bytes: Option<usize>,
    /// Query timeout in seconds. Default: 60.
    pub timeout_secs: Option<u64>,
    /// Concurrent queries per node. Default: 16.
    pub max_concurrent: Option<usize>,
    /// Memory tier of the cache in bytes. Default: 256 MiB.
    pub cache_memory_bytes: Option<usize>,
    /// SSD tier of the cache in bytes. Default: 4 GiB.
    pub cache_disk_bytes: Option<usize>,
    /// SSD tier folder. Default: `<data_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Size of the aligned blocks the cache fetches and keeps, in bytes. Default: 256 KiB.
    pub cache_block_bytes: Option<usize>,
    /// Parallelism per query. Default: 2.
    pub target_partitions: Option<usize>,
    /// Decoded unflushed WAL entries kept in memory for queries, in bytes. Default: 256 MiB.
    pub wal_cache_bytes: Option<usize>,
    /// Memory of all queries on the node together, in bytes. Default: 2 GiB.
    pub node_memory_bytes: Option<usize>,
    /// Threads queries run on (apart from those serving gRPC/HTTP); 0: one per core.
    /// Default: 0.
    pub threads: Option<usize>,
    /// Refuse joins without a join condition estimated past this many rows; 0: no check.
    /// Default: 1000000000.
    pub max_cross_join_rows: Option<u64>,
    /// Rows one query may return; 0: no limit. Default: 10000000.
    pub max_result_rows: Option<u64>,
    /// Bytes one query may return; 0: no limit. Default: 2 GiB.
    pub max_result_bytes: Option<u64>,
}

/// Background compaction, retention and garbage collection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionSettings {
    /// Seconds between compaction passes; 0 turns background compaction off. Default: 60.
    pub interval_secs: Option<u64>,
    /// Target segment size in bytes. Default: 128 MiB.
    pub target_bytes: Option<u64>,
    /// Minimum age in seconds before an unreferenced object is deleted. Default: 3600.
    pub gc_min_age_secs: Option<u64>,
    /// Manifest versions kept. Default: 10.
    pub keep_versions: Option<usize>,
}

/// Cluster topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Compute node addresses the gateway sends queries to (`host:port`, `*weight` optional).
    pub compute_nodes: Vec<String>,
    /// Ingest node addresses; node i owns shards `s % len == i`.
    pub ingest_nodes: Vec<String>,
    /// This ingest node's index. Default: 0.
    pub node_index: u32,
    /// Number of ingest nodes. Default: 1.
    pub node_count: u32,
    /// Secret shared by a cluster's gateways and nodes (`x-strata-cluster-token`): nodes
    /// believe the tenant a gateway names only from callers holding it, and with it set
    /// serve nobody else. Masked by `strata config`. Default: none.
    pub secret: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            compute_nodes: Vec::new(),
            ingest_nodes: Vec::new(),
            node_index: 0,
            node_count: 1,
            secret: None,
        }
    }
}

/// The result cache for repeated queries (`strata_gateway::result_cache`): identical
/// queries of a tenant are answered from memory until a commit or an acknowledged write
/// changes a table they read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayCacheSettings {
    /// Cache results of repeated queries. Default: true.
    pub enabled: bool,
    /// Bytes of all cached results together. Default: 64 MiB.
    pub max_bytes: usize,
    /// Largest result cached; larger ones are streamed without being kept. Default: 4 MiB.
    pub max_entry_bytes: usize,
    /// Longest an entry is served, whatever the table versions say. Default: 60.
    pub ttl_secs: u64,
}

impl Default for GatewayCacheSettings {
    fn default() -> Self {
        let d = strata_gateway::ResultCacheConfig::default();
        Self {
            enabled: true,
            max_bytes: d.max_bytes,
            max_entry_bytes: d.max_entry_bytes,
            ttl_secs: d.ttl.as_secs(),
        }
    }
}

impl GatewayCacheSettings {
    pub fn config(&self) -> strata_gateway::ResultCacheConfig {
        strata_gateway::ResultCacheConfig {
            max_bytes: self.max_bytes,
            max_entry_bytes: self.max_entry_bytes,
            ttl: Duration::from_secs(self.ttl_secs),
        }
    }
}

impl Settings {
    /// Read a TOML file; errors name the file and the bad key.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    pub fn object_store_url(&self) -> String {
        self.storage.object_store.clone().unwrap_or_else(|| {
            let p = std::path::absolute(self.node.data_dir.join("store"))
                .unwrap_or_else(|_| self.node.data_dir.join("store"));
            format!("file://{}", p.display())
        })
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.query
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("cache"))
    }

    pub fn ingest_config(&self) -> strata_ingest::IngestConfig {
        let d = strata_ingest::IngestConfig::default();
        let i = &self.ingest;
        strata_ingest::IngestConfig {
            group_commit_interval: i
                .group_commit_ms
                .map_or(d.group_commit_interval, Duration::from_millis),
            flush_bytes: i.flush_bytes.unwrap_or(d.flush_bytes),
            flush_age: i.flush_age_secs.map_or(d.flush_age, Duration::from_secs),
            max_batch_bytes: i.max_batch_bytes.unwrap_or(d.max_batch_bytes),
            max_shard_bytes: i.max_shard_bytes.unwrap_or(d.max_shard_bytes),
            max_node_bytes: i.max_node_bytes.unwrap_or(d.max_node_bytes),
            default_shards: i.default_shards.unwrap_or(d.default_shards),
            auto_create: i.auto_create.unwrap_or(d.auto_create),
            node_index: self.cluster.node_index,
            node_count: self.cluster.node_count.max(1),
            ..d
        }
    }

    pub fn query_config(&self) -> strata_compute::QueryConfig {
        let d = strata_compute::QueryConfig::default();
        let q = &self.query;
        strata_compute::QueryConfig {
            // One query may take half the node's query memory unless told otherwise.
            memory_limit_bytes: q
                .memory_limit_bytes
                .unwrap_or(q.node_memory_bytes.unwrap_or(d.node_memory_bytes) / 2),
            query_timeout: q.timeout_secs.map_or(d.query_timeout, Duration::from_secs),
            max_concurrent_queries: q.max_concurrent.unwrap_or(d.max_concurrent_queries),
            cache_memory_bytes: q.cache_memory_bytes.unwrap_or(d.cache_memory_bytes),
            cache_disk_bytes: q.cache_disk_bytes.unwrap_or(d.cache_disk_bytes),
            cache_dir: Some(self.cache_dir()),
            cache_block_bytes: q.cache_block_bytes.unwrap_or(d.cache_block_bytes),
            target_partitions: q.target_partitions.unwrap_or(d.target_partitions),
            wal_cache_bytes: q.wal_cache_bytes.unwrap_or(d.wal_cache_bytes),
            node_memory_bytes: q.node_memory_bytes.unwrap_or(d.node_memory_bytes),
            threads: q.threads.unwrap_or(d.threads),
            max_cross_join_rows: q.max_cross_join_rows.unwrap_or(d.max_cross_join_rows),
            max_result_rows: q.max_result_rows.unwrap_or(d.max_result_rows),
            max_result_bytes: q.max_result_bytes.unwrap_or(d.max_result_bytes),
            spill_dir: Some(self.node.data_dir.join("spill")),
            ..d
        }
    }

    /// Every optional key filled with the value in effect (defaults included).
    pub fn effective(&self) -> Self {
        let mut s = self.clone();
        s.storage.object_store = Some(self.object_store_url());
        s.storage.request_timeout_secs.get_or_insert(30);
        s.storage.retry_attempts.get_or_insert(5);
        let i = self.ingest_config();
        s.ingest = IngestSettings {
            group_commit_ms: Some(i.group_commit_interval.as_millis() as u64),
            flush_bytes: Some(i.flush_bytes),
            flush_age_secs: Some(i.flush_age.as_secs()),
            max_batch_bytes: Some(i.max_batch_bytes),
            max_shard_bytes: Some(i.max_shard_bytes),
            max_node_bytes: Some(i.max_node_bytes),
            default_shards: Some(i.default_shards),
            auto_create: Some(i.auto_create),
        };
        let q = self.query_config();
        s.query = QuerySettings {
            memory_limit_bytes: Some(q.memory_limit_bytes),
            timeout_secs: Some(q.query_timeout.as_secs()),
            max_concurrent: Some(q.max_concurrent_queries),
            cache_memory_bytes: Some(q.cache_memory_bytes),
            cache_disk_bytes: Some(q.cache_disk_bytes),
            cache_dir: Some(self.cache_dir()),
            cache_block_bytes: Some(q.cache_block_bytes),
            target_partitions: Some(q.target_partitions),
            wal_cache_bytes: Some(q.wal_cache_bytes),
            node_memory_bytes: Some(q.node_memory_bytes),
            threads: Some(q.threads),
            max_cross_join_rows: Some(q.max_cross_join_rows),
            max_result_rows: Some(q.max_result_rows),
            max_result_bytes: Some(q.max_result_bytes),
        };
        let c = &mut s.compaction;
        c.interval_secs.get_or_insert(60);
        c.target_bytes.get_or_insert(128 << 20);
        c.gc_min_age_secs.get_or_insert(3600);
        c.keep_versions.get_or_insert(10);
        s
    }

    /// The effective settings as TOML with secrets replaced by `***`.
    pub fn masked_toml(&self) -> String {
        let mut s = self.effective();
        if s.storage.s3_secret_access_key.is_some() {
            s.storage.s3_secret_access_key = Some("***".into());
        }
        if s.cluster.secret.is_some() {
            s.cluster.secret = Some("***".into());
        }
        for t in &mut s.gateway.auth.tokens {
            if t.token.is_some() {
                t.token = Some("***".into());
            }
        }
        toml::to_string_pretty(&s).unwrap_or_else(|e| format!("# cannot render settings: {e}"))
    }
}
