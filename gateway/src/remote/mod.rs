//! # Talking to nodes: the gateway's remote backends
//!
//! On the gateway role, [`QueryBackend`](crate::backend::QueryBackend) and
//! [`IngestBackend`](crate::backend::IngestBackend) are implemented by clients of the same
//! Flight / Flight SQL service every node serves:
//!
//! - [`RemoteQueryBackend`] forwards SQL to compute nodes (`GetFlightInfo` +
//!   `DoGet`, `GetTables`), choosing a node by [`Policy`], retrying failures that happen
//!   before the first batch on another node, and propagating the deadline as `grpc-timeout`.
//! - [`RemoteIngestBackend`] splits writes by shard key (the ring of
//!   [`strata_common::partition_by_shard`]) and sends each ingest node the rows of the shards
//!   it owns (`shard % nodes`) in one `DoPut`; log reads go to the shard's owner. It needs a
//!   [`ShardResolver`] from the engine that says how a table is sharded.
//!
//! Underneath, per role:
//!
//! ```text
//!  request ─▶ retry (backoff + full jitter, ≤ attempts, ≤ deadline; idempotent calls only)
//!              └▶ balancer (policy over eligible nodes, untried first)
//!                   └▶ node: breaker permit ─▶ in-flight guard ─▶ shared HTTP/2 channel
//!  health task (owned by the pool) ── strata.health every interval ─▶ node in/out of rotation
//! ```
//!
//! - [`NodePool`]: one lazily connected `tonic` channel per node, reused by all requests
//!   (connect timeout, request timeout, TCP_NODELAY, HTTP/2 keepalive), and a health-check
//!   task aborted when the pool is dropped. A node leaves the rotation after `fall` failed
//!   checks or at once on a request failing with UNAVAILABLE, and returns after `rise`
//!   consecutive good checks. If no node is healthy, queries still try nodes whose breaker
//!   allows it rather than refusing everything.
//! - [`CircuitBreaker`]: per node, opens after `failure_threshold` consecutive node failures
//!   (UNAVAILABLE, node timeouts; not errors about the request itself), half-opens after
//!   `open_for` plus jitter, closes on a successful trial.
//! - Writes are retried only when they carry an idempotent producer (id + sequence): the
//!   shard writers then apply a retried write once. A shard has one owner, so a write whose
//!   owner is down fails fast with UNAVAILABLE and a retry-after hint.
//! - Node errors come back as `tonic::Status` and are mapped by [`status_to_backend_error`],
//!   keeping the `retry-after-ms` hint.
//! - Metrics ([`RemoteMetrics`]) go to a registry the caller owns; [`ClusterStatus`] is a
//!   snapshot for `strata status`.
//!
//! ## Use
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use strata_gateway::remote::*;
//! # async fn f(resolver: Arc<dyn ShardResolver>) -> Result<(), strata_gateway::BackendError> {
//! let registry = prometheus::Registry::new();
//! let metrics = RemoteMetrics::new(&registry)?;
//! let config = RemoteConfig::default();
//! let compute: Vec<NodeSpec> = vec!["10.0.0.1:50051".parse()?, "10.0.0.2:50051*2".parse()?];
//! let query = RemoteQueryBackend::new(&compute, &config, &metrics)?;
//! let ingest = RemoteIngestBackend::new(&["10.0.0.9:50051".into()], &config, resolver, &metrics)?;
//! println!("{}", ClusterStatus::collect(Some(&query), Some(&ingest)).to_text());
//! # Ok(()) }
//! ```

mod balancer;
mod breaker;
mod cluster;
mod config;
mod error;
mod health;
mod ingest;
mod metrics;
mod pool;
mod query;
mod retry;
mod rpc;

#[cfg(test)]
mod tests;

pub use breaker::{BreakerState, CircuitBreaker, Permit};
pub use cluster::{ClusterStatus, NodeStatus};
pub use config::{BreakerConfig, NodeSpec, Policy, RemoteConfig, RetryConfig, parse_duration};
pub use error::{
    DURABILITY_HEADER, HEALTH_ACTION, PRODUCER_ID_HEADER, REQUEST_ID_HEADER, RETRY_AFTER_MS_HEADER,
    SEQUENCE_HEADER, SHARD_HEADER, TENANT_HEADER, status_to_backend_error,
};
pub use ingest::{RemoteIngestBackend, ShardResolver, TableLayout};
pub use metrics::{
    ATTEMPT_SECONDS, BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL, FAILURES_TOTAL, IN_FLIGHT,
    NODE_HEALTHY, REQUESTS_TOTAL, RETRIES_TOTAL, RemoteMetrics, Role,
};
pub use pool::NodePool;
pub use query::RemoteQueryBackend;
