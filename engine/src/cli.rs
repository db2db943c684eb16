//! The `strata` command line. Every flag also reads `STRATA_<NAME>` from the environment
//! and overrides the same key of the `--config` TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a log and SQL database on object storage",
    long_about = "Strata stores tables and logs as Parquet in an S3-compatible bucket (or a local \
folder) and answers SQL over Arrow Flight SQL.\n\n`strata serve` runs every role in one process on \
./data. `strata gateway|compute|ingest|compact` run one role each, for a cluster."
)]
pub struct Cli {
    /// TOML configuration file; flags and STRATA_* variables override its keys.
    #[arg(long, global = true, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format.
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role (gateway, ingest, compute, compaction) in one process.
    Serve(ServeArgs),
    /// Run the gateway: Flight SQL front door routing to compute and ingest nodes.
    Gateway(GatewayArgs),
    /// Run a query node serving Flight SQL to gateways.
    Compute(ComputeArgs),
    /// Run an ingest node (shard writers); with FILE arguments, load files through a gateway.
    Ingest(IngestArgs),
    /// Run compaction, retention and garbage collection.
    Compact(CompactArgs),
    /// SQL shell against a gateway, or run statements with -e.
    Sql(SqlArgs),
    /// Show the cluster as the gateway sees it: nodes, health, breakers, tables.
    Status(ClientArgs),
    /// Print the effective configuration (secrets masked).
    Config(ServeArgs),
    /// Size a cluster for an expected load: nodes per role, caches, bucket, requests and cost.
    Estimate(crate::estimate::EstimateArgs),
}

/// Flags shared by every server role.
#[derive(Debug, Clone, Args, Default)]
pub struct NodeArgs {
    /// Local folder for the embedded store and the cache [default: ./data]
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Object store URL: file:///path, s3://bucket/prefix, memory:// [default: <data-dir>/store]
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// gRPC address (Flight SQL and ingest) [default: 127.0.0.1:50051]
    #[arg(long, env = "STRATA_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP address (health, metrics, JSON and OTLP/HTTP ingest) [default: 127.0.0.1:8080]
    #[arg(long, env = "STRATA_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Extra gRPC address serving only OTLP logs export, e.g. 127.0.0.1:4317 [default: none]
    #[arg(long, env = "STRATA_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Do not serve the web console at / on the HTTP port (the /v1 JSON API stays)
    #[arg(long, env = "STRATA_NO_CONSOLE")]
    pub no_console: bool,
    /// TOML file with bearer tokens ([[tokens]] token, tenant, scopes); enables auth
    #[arg(long, env = "STRATA_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// SSD cache folder [default: <data-dir>/cache]
    #[arg(long, env = "STRATA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Memory cache tier in bytes [default: 268435456]
    #[arg(long, env = "STRATA_CACHE_MEMORY_BYTES")]
    pub cache_memory_bytes: Option<usize>,
    /// SSD cache tier in bytes [default: 4294967296]
    #[arg(long, env = "STRATA_CACHE_DISK_BYTES")]
    pub cache_disk_bytes: Option<usize>,
    /// Group commit window of shard writers in milliseconds [default: 25]
    #[arg(long, env = "STRATA_GROUP_COMMIT_MS")]
    pub group_commit_ms: Option<u64>,
    /// Flush memtables older than this many seconds [default: 10]
    #[arg(long, env = "STRATA_FLUSH_AGE_SECS")]
    pub flush_age_secs: Option<u64>,
    /// Shards of tables created on first write [default: 4]
    #[arg(long, env = "STRATA_DEFAULT_SHARDS")]
    pub default_shards: Option<u32>,
    /// Largest write request in bytes [default: 67108864]
    #[arg(long, env = "STRATA_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<usize>,
    /// Memory limit per query in bytes [default: half of query.node_memory_bytes, 1073741824]
    #[arg(long, env = "STRATA_QUERY_MEMORY_LIMIT")]
    pub query_memory_limit: Option<usize>,
    /// Query timeout in seconds [default: 60]
    #[arg(long, env = "STRATA_QUERY_TIMEOUT_SECS")]
    pub query_timeout_secs: Option<u64>,
    /// Listen on non-loopback addresses even without auth
    #[arg(long, env = "STRATA_ALLOW_INSECURE_PUBLIC")]
    pub allow_insecure_public: bool,
    /// Secret shared by the gateways and nodes of a cluster: gateways send it to nodes, and nodes believe the tenant a gateway names only from callers holding it [default: none]
    #[arg(long, env = "STRATA_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Threads queries run on, apart from those serving gRPC and HTTP; 0 = one per core [default: 0]
    #[arg(long, env = "STRATA_QUERY_THREADS")]
    pub query_threads: Option<usize>,
    /// Refuse joins without a join condition estimated past this many rows; 0 = no check [default: 1000000000]
    #[arg(long, env = "STRATA_MAX_CROSS_JOIN_ROWS")]
    pub max_cross_join_rows: Option<u64>,
}

/// TLS on the gRPC port of a server role.
#[derive(Debug, Clone, Args, Default)]
pub struct ServerTlsArgs {
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key; clients then dial https:// or grpc+tls://) [default: plaintext]
    #[arg(long, env = "STRATA_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "STRATA_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): require gRPC clients to present a certificate issued by one of them (mutual TLS)
    #[arg(long, env = "STRATA_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// Apply flags over `s` (`[gateway.server]` tls_cert, tls_key, tls_client_ca).
    pub fn apply(&self, s: &mut Settings) {
        let server = &mut s.gateway.server;
        if let Some(v) = &self.tls_cert {
            server.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            server.tls_key = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_ca {
            server.tls_client_ca = Some(v.clone());
        }
    }
}

/// TLS of a client of the gRPC port (`strata sql`, `strata ingest FILE...`, `strata status`).
#[derive(Debug, Clone, Args, Default)]
pub struct ClientTlsArgs {
    /// PEM CA certificate(s) to trust for a TLS gateway instead of the system's roots; a bare host:port gateway is then dialled with TLS
    #[arg(long, env = "STRATA_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for a gateway that requires one (mutual TLS; with --tls-client-key)
    #[arg(long, env = "STRATA_TLS_CLIENT_CERT", value_name = "FILE")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert
    #[arg(long, env = "STRATA_TLS_CLIENT_KEY", value_name = "FILE")]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Whether any TLS file was given (then a bare `host:port` is dialled with TLS).
    pub fn any(&self) -> bool {
        self.tls_ca.is_some() || self.tls_client_cert.is_some() || self.tls_client_key.is_some()
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct ComputeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Seconds between compaction passes [default: 60]
    #[arg(long, env = "STRATA_COMPACTION_INTERVAL_SECS")]
    pub compaction_interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Compute nodes, comma separated host:port[*weight] (https://host:port or grpc+tls://host:port for TLS nodes)
    #[arg(long, env = "STRATA_COMPUTE_NODES", value_delimiter = ',')]
    pub compute_nodes: Vec<String>,
    /// Ingest nodes, comma separated host:port (or https:// / grpc+tls:// for TLS nodes), in node-index order
    #[arg(long, env = "STRATA_INGEST_NODES", value_delimiter = ',')]
    pub ingest_nodes: Vec<String>,
    /// Query routing: round-robin, least-outstanding, weighted, cache-affinity [default: least-outstanding]
    #[arg(long, env = "STRATA_POLICY")]
    pub policy: Option<String>,
    /// PEM CA certificate(s) trusted for https:// or grpc+tls:// nodes (remote.tls_ca) [default: the system's roots]
    #[arg(long, env = "STRATA_REMOTE_TLS_CA", value_name = "FILE")]
    pub remote_tls_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// This node's index among the ingest nodes [default: 0]
    #[arg(long, env = "STRATA_NODE_INDEX")]
    pub node_index: Option<u32>,
    /// Number of ingest nodes [default: 1]
    #[arg(long, env = "STRATA_NODE_COUNT")]
    pub node_count: Option<u32>,
    /// Files to load (CSV, JSON lines, Parquet) through a gateway instead of running the role
    pub files: Vec<PathBuf>,
    /// Table to load FILEs into [default: the file name without extension]
    #[arg(long)]
    pub table: Option<String>,
    /// Gateway to load FILEs through: host:port, http://, https:// or grpc+tls://
    #[arg(long, env = "STRATA_GATEWAY", default_value = "127.0.0.1:50051")]
    pub gateway: String,
    /// Bearer token for the gateway
    #[arg(long, env = "STRATA_TOKEN")]
    pub token: Option<String>,
    #[command(flatten)]
    pub client_tls: ClientTlsArgs,
    /// Rows per batch sent when loading FILEs (one acknowledged DoPut each)
    #[arg(long, default_value_t = 65536)]
    pub batch_rows: usize,
    /// Rows of each CSV or JSON FILE read to infer its column types
    #[arg(long, default_value_t = 1000)]
    pub infer_rows: usize,
}

#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Run one pass and exit
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Gateway gRPC address: host:port, http://, https:// or grpc+tls://
    #[arg(long, env = "STRATA_GATEWAY", default_value = "127.0.0.1:50051")]
    pub gateway: String,
    /// Bearer token
    #[arg(long, env = "STRATA_TOKEN")]
    pub token: Option<String>,
    /// The gateway's HTTP address, for `strata status` (https:// when a proxy terminates TLS in front of it; --tls-ca applies)
    #[arg(long, env = "STRATA_HTTP", default_value = "http://127.0.0.1:8080")]
    pub http: String,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Run these statements and exit (separate several with `;`)
    #[arg(short = 'e', long)]
    pub execute: Option<String>,
    /// Output format
    #[arg(long, default_value = "table")]
    pub format: OutputFormat,
    /// Do not print timing lines ("N rows in X ms"; on stderr with -e)
    #[arg(long)]
    pub no_timing: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl NodeArgs {
    /// Apply flags over `s` (which holds defaults and the file's values).
    pub fn apply(&self, s: &mut Settings) -> Result<(), String> {
        if let Some(v) = &self.data_dir {
            s.node.data_dir = v.clone();
        }
        if let Some(v) = &self.object_store {
            s.storage.object_store = Some(v.clone());
        }
        if let Some(v) = self.grpc_addr {
            s.node.grpc_addr = v;
        }
        if let Some(v) = self.http_addr {
            s.node.http_addr = v;
        }
        if let Some(v) = self.otlp_grpc_addr {
            s.node.otlp_grpc_addr = Some(v);
        }
        if self.no_console {
            s.node.console = false;
        }
        if let Some(p) = &self.auth_tokens_file {
            s.gateway.auth =
                strata_gateway::auth::AuthConfig::from_toml_file(p).map_err(|e| e.to_string())?;
        }
        if let Some(v) = &self.cache_dir {
            s.query.cache_dir = Some(v.clone());
        }
        if let Some(v) = self.cache_memory_bytes {
            s.query.cache_memory_bytes = Some(v);
        }
        if let Some(v) = self.cache_disk_bytes {
            s.query.cache_disk_bytes = Some(v);
        }
        if let Some(v) = self.group_commit_ms {
            s.ingest.group_commit_ms = Some(v);
        }
        if let Some(v) = self.flush_age_secs {
            s.ingest.flush_age_secs = Some(v);
        }
        if let Some(v) = self.default_shards {
            s.ingest.default_shards = Some(v);
        }
        if let Some(v) = self.max_batch_bytes {
            s.ingest.max_batch_bytes = Some(v);
            s.gateway.flight.max_ingest_bytes = v;
        }
        if let Some(v) = self.query_memory_limit {
            s.query.memory_limit_bytes = Some(v);
        }
        if let Some(v) = self.query_timeout_secs {
            s.query.timeout_secs = Some(v);
        }
        if self.allow_insecure_public {
            s.node.allow_insecure_public = true;
        }
        if let Some(v) = &self.cluster_secret {
            s.cluster.secret = Some(v.clone());
        }
        if let Some(v) = self.query_threads {
            s.query.threads = Some(v);
        }
        if let Some(v) = self.max_cross_join_rows {
            s.query.max_cross_join_rows = Some(v);
        }
        Ok(())
    }
}

/// Defaults, then the config file, then `STRATA__SECTION__KEY` variables (any key of the
/// file, e.g. `STRATA__INGEST__FLUSH_BYTES=1000000` or `STRATA__REMOTE__BREAKER__OPEN_FOR=2s`),
/// then flags and their `STRATA_*` variables.
pub fn load_settings(
    config: Option<&std::path::Path>,
    node: &NodeArgs,
) -> Result<Settings, String> {
    let mut doc: toml::Table = match config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read config {}: {e}", p.display()))?;
            text.parse()
                .map_err(|e| format!("invalid config {}: {e}", p.display()))?
        }
        None => toml::Table::new(),
    };
    apply_env_overrides(&mut doc, std::env::vars())?;
    let mut s: Settings = doc
        .try_into()
        .map_err(|e| format!("invalid configuration: {e}"))?;
    node.apply(&mut s)?;
    Ok(s)
}

/// Set `a.b.c` in `doc` for every `STRATA__A__B__C=value`. Values parse as TOML scalars
/// (numbers, booleans) or arrays when they can, else as strings.
pub fn apply_env_overrides(
    doc: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), String> {
    for (k, v) in vars {
        let Some(path) = k.strip_prefix("STRATA__") else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.clone()));
        let mut table = &mut *doc;
        for key in &keys[..keys.len() - 1] {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry
                .as_table_mut()
                .ok_or_else(|| format!("{k}: `{key}` is not a section"))?;
        }
        if let Some(last) = keys.last() {
            table.insert(last.clone(), value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_reach_any_key() {
        let mut doc = toml::Table::new();
        let vars = [
            ("STRATA__INGEST__FLUSH_BYTES", "1000"),
            ("STRATA__REMOTE__BREAKER__OPEN_FOR", "2s"),
            ("STRATA__CLUSTER__COMPUTE_NODES", "[\"a:1\", \"b:2\"]"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env_overrides(&mut doc, vars.into_iter()).unwrap();
        let s: Settings = doc.try_into().unwrap();
        assert_eq!(s.ingest.flush_bytes, Some(1000));
        assert_eq!(s.remote.breaker.open_for, std::time::Duration::from_secs(2));
        assert_eq!(s.cluster.compute_nodes, vec!["a:1", "b:2"]);
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "[node]\ngrpc_addr = \"127.0.0.1:1\"\n[ingest]\nflush_bytes = 5\n",
        )
        .unwrap();
        let args = NodeArgs {
            grpc_addr: Some("127.0.0.1:2".parse().unwrap()),
            ..Default::default()
        };
        let s = load_settings(Some(f.path()), &args).unwrap();
        assert_eq!(s.node.grpc_addr.port(), 2);
        assert_eq!(s.ingest.flush_bytes, Some(5));
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), "[ingest]\nflush_bytez = 5\n").unwrap();
        let e = load_settings(Some(bad.path()), &NodeArgs::default()).unwrap_err();
        assert!(e.contains("flush_bytez"), "{e}");
    }
}
