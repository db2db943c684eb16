//! Settings of the remote clients: timeouts, health checks, breakers, retries, balancing.
//!
//! Every struct deserializes from TOML/JSON with defaults for missing fields; durations are
//! written as `"250ms"`, `"1s"`, `"1.5s"`, `"2m"` or as an integer number of milliseconds.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, ErrorKind};

/// How the gateway reaches compute and ingest nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// Time allowed to open a TCP + HTTP/2 connection to a node. Default: 1 s.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Upper bound for one request to one node (until its response starts); a caller's
    /// shorter deadline wins. Default: 30 s.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// HTTP/2 PING interval on idle and busy connections, to notice dead peers. Default: 10 s.
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// A connection whose PING is not answered within this time is closed. Default: 5 s.
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,
    /// Time between two health checks (`strata.health`) of every node. Default: 1 s.
    #[serde(with = "duration")]
    pub health_interval: Duration,
    /// A health check not answered within this time fails. Default: 500 ms.
    #[serde(with = "duration")]
    pub health_timeout: Duration,
    /// Consecutive successful checks before a node that was down takes traffic again.
    /// Default: 2.
    pub rise: u32,
    /// Consecutive failed checks before a node is taken out of rotation (a request failing
    /// with UNAVAILABLE takes it out at once). Default: 1.
    pub fall: u32,
    /// Per-node circuit breaker. Default: see [`BreakerConfig`].
    pub breaker: BreakerConfig,
    /// Retries of idempotent calls. Default: see [`RetryConfig`].
    pub retry: RetryConfig,
    /// How a query picks its compute node (ingest routing is fixed by shard ownership).
    /// Default: `least-outstanding`.
    pub policy: Policy,
    /// Largest gRPC message accepted from or sent to a node, in bytes. Default: 64 MiB.
    pub max_message_bytes: usize,
    /// PEM CA certificate(s) trusted for nodes given as `https://` or `grpc+tls://` URLs
    /// (bare `host:port` nodes are plaintext). Default: none (the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate presented to nodes that require one (their
    /// `gateway.server.tls_client_ca`); with `tls_key`. Default: none.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default: none.
    pub tls_key: Option<PathBuf>,
    /// The cluster secret sent to nodes in `x-strata-cluster-token`, so they believe the
    /// tenant the gateway names. Set by the binary from `cluster.secret`; not a key of
    /// `[remote]`. Default: none.
    #[serde(skip)]
    pub cluster_secret: Option<crate::auth::Secret>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_millis(500),
            rise: 2,
            fall: 1,
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
            policy: Policy::default(),
            max_message_bytes: 64 << 20,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            cluster_secret: None,
        }
    }
}

/// Per-node circuit breaker: closed → open → half-open → closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed requests (UNAVAILABLE, node timeouts) that open the breaker.
    /// Default: 5.
    pub failure_threshold: u32,
    /// How long an open breaker rejects requests before letting a trial through. Default: 5 s.
    #[serde(with = "duration")]
    pub open_for: Duration,
    /// Random extra open time, as a fraction of `open_for`, so breakers of many gateways do
    /// not probe a recovering node in lockstep. Default: 0.2.
    pub jitter: f64,
    /// Trial requests let through at once while half-open. Default: 1.
    pub half_open_max: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
            jitter: 0.2,
            half_open_max: 1,
        }
    }
}

/// Retries with exponential backoff and full jitter, bounded by attempts and the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first included (1 disables retries). Default: 3.
    pub max_attempts: u32,
    /// Backoff cap before the first retry; it doubles per retry. Default: 25 ms.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    /// Largest backoff cap. Default: 1 s.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Seed of the jitter RNG (and of breaker jitter), for reproducible runs; `None` seeds
    /// from the OS. Default: none.
    pub seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            seed: None,
        }
    }
}

/// Load-balancing policy for queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each query to the next node in turn.
    RoundRobin,
    /// The node with the fewest requests in flight (streams count until dropped); ties go
    /// round robin.
    #[default]
    LeastOutstanding,
    /// Smooth weighted round robin over static node weights ([`NodeSpec::weight`]).
    Weighted,
    /// Rendezvous hash of the tenant and the tables a statement reads, so queries over the same
    /// tables meet warm caches on the same node; a node with much more than its share of
    /// in-flight requests passes the query to the next node in the key's order (bounded load).
    CacheAffinity,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastOutstanding => "least-outstanding",
            Policy::Weighted => "weighted",
            Policy::CacheAffinity => "cache-affinity",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "round-robin" | "rr" => Ok(Policy::RoundRobin),
            "least-outstanding" | "least-requests" => Ok(Policy::LeastOutstanding),
            "weighted" => Ok(Policy::Weighted),
            "cache-affinity" | "affinity" => Ok(Policy::CacheAffinity),
            other => Err(BackendError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "unknown balancing policy `{other}`: use round-robin, least-outstanding (default), \
                     weighted or cache-affinity"
                ),
            )),
        }
    }
}

/// One node: its address and, for [`Policy::Weighted`], its weight.
///
/// Parses from `host:port`, `http://host:port` or `host:port*weight` (e.g. `10.0.0.7:50051*3`);
/// `https://host:port` and `grpc+tls://host:port` nodes are dialled with TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// `host:port`, or a URL with `http://`, `https://`, `grpc://` or `grpc+tls://`.
    pub addr: String,
    /// Relative share of queries under [`Policy::Weighted`]; at least 1. Default: 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl NodeSpec {
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            weight: 1,
        }
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }
}

impl FromStr for NodeSpec {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: &str| {
            BackendError::new(
                ErrorKind::InvalidArgument,
                format!("bad node address `{s}`: {why}; write host:port or host:port*weight"),
            )
        };
        let (addr, weight) = match s.rsplit_once('*') {
            Some((addr, w)) => {
                let w: u32 = w
                    .trim()
                    .parse()
                    .map_err(|_| bad("the weight is not a positive integer"))?;
                if w == 0 {
                    return Err(bad("the weight must be at least 1"));
                }
                (addr.trim(), w)
            }
            None => (s, 1),
        };
        if addr.is_empty() {
            return Err(bad("the address is empty"));
        }
        Ok(NodeSpec::new(addr).with_weight(weight))
    }
}

impl From<&str> for NodeSpec {
    /// An address with weight 1 (no parsing of `*weight`).
    fn from(addr: &str) -> Self {
        NodeSpec::new(addr)
    }
}

impl From<String> for NodeSpec {
    fn from(addr: String) -> Self {
        NodeSpec::new(addr)
    }
}

/// Parse `"250ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1h"` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 250ms, 1s or 2m"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}`: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{s}`: {e}"))
}

/// Serde for durations as `"1s"` / `"250ms"` strings or integer milliseconds.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_secs_f64() * 1e3))
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Millis(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Millis(ms) => Ok(Duration::from_millis(ms)),
            Repr::Text(s) => super::parse_duration(&s).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_node_specs_parse() {
        assert_eq!(
            "round-robin".parse::<Policy>().ok(),
            Some(Policy::RoundRobin)
        );
        assert_eq!(
            "Least_Outstanding".parse::<Policy>().ok(),
            Some(Policy::LeastOutstanding)
        );
        assert_eq!("weighted".parse::<Policy>().ok(), Some(Policy::Weighted));
        assert_eq!(
            "cache-affinity".parse::<Policy>().ok(),
            Some(Policy::CacheAffinity)
        );
        let err = "fastest"
            .parse::<Policy>()
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(err.contains("round-robin"), "{err}");

        assert_eq!("a:1".parse::<NodeSpec>().ok(), Some(NodeSpec::new("a:1")));
        assert_eq!(
            "a:1*3".parse::<NodeSpec>().ok(),
            Some(NodeSpec::new("a:1").with_weight(3))
        );
        assert!("a:1*0".parse::<NodeSpec>().is_err());
        assert!("a:1*x".parse::<NodeSpec>().is_err());
        assert!("".parse::<NodeSpec>().is_err());
    }

    #[test]
    fn durations_parse_and_config_round_trips() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_millis(40)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 days").is_err());

        let c: RemoteConfig =
            serde_json::from_str(r#"{"connect_timeout":"200ms","rise":3,"policy":"cache-affinity","breaker":{"open_for":750}}"#)
                .expect("config parses");
        assert_eq!(c.connect_timeout, Duration::from_millis(200));
        assert_eq!(c.rise, 3);
        assert_eq!(c.policy, Policy::CacheAffinity);
        assert_eq!(c.breaker.open_for, Duration::from_millis(750));
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        let text = serde_json::to_string(&c).expect("config serializes");
        let back: RemoteConfig = serde_json::from_str(&text).expect("config parses back");
        assert_eq!(back, c);
    }
}
