//! # strata-gateway
//!
//! The gRPC front door. It serves Arrow Flight SQL (queries, prepared statements, metadata)
//! and the ingest API (Flight `DoPut`, log reads by offset) over two traits,
//! [`backend::QueryBackend`] and [`backend::IngestBackend`]. It knows nothing of Parquet.
//!
//! ## How it fits
//!
//! ```text
//!  Flight SQL / pyarrow.flight / ADBC
//!        │
//!  server::GatewayServer   tonic: compression, timeouts, keepalive, graceful shutdown
//!        │
//!  flight::FlightFront     metrics per call, JSON tickets/descriptors routing
//!        │
//!  flight::StrataFlightService   Flight SQL + ingest + log reads   (otlp::OtlpLogs: OTLP logs export)
//!        │   auth::Authenticator (bearer tokens, scopes) · quota::Quotas (token buckets)
//!        ▼
//!  result_cache::CachingQueryBackend   repeated queries from memory (optional decorator)
//!        ▼
//!  dyn QueryBackend / dyn IngestBackend   (the engine in-process, or remote clients)
//! ```
//!
//! The engine builds a [`GatewayServer`] from its backends and a [`GatewayConfig`]
//! (`[server]`, `[flight]`, `[auth]`, `[quota]` sections), passes a Prometheus registry, and
//! calls [`GatewayServer::serve`] (or [`GatewayServer::serve_with_listener`]) with a
//! shutdown future:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn run(
//! #     query: Arc<dyn strata_gateway::QueryBackend>,
//! #     ingest: Arc<dyn strata_gateway::IngestBackend>,
//! # ) -> Result<(), strata_gateway::GatewayError> {
//! let registry = prometheus::Registry::new();
//! let server = strata_gateway::GatewayServer::builder(query, ingest)
//!     .with_config(strata_gateway::GatewayConfig::default())
//!     .with_registry(&registry)
//!     .build()?;
//! server
//!     .serve("0.0.0.0:50051".parse().expect("address"), async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await
//! # }
//! ```
//!
//! TLS on the port (and for the remote clients) is in [`tls`]: rustls over *ring*, set with
//! `[server] tls_cert`, `tls_key` and optionally `tls_client_ca` (mutual TLS).
//!
//! Every error a client sees goes through [`status::to_status`], one mapping from
//! [`ErrorKind`] to gRPC code (with `retry-after-ms` metadata when a retry may succeed).

pub mod auth;
pub mod backend;
pub mod flight;
pub mod otlp;
pub mod quota;
pub mod remote;
pub mod result_cache;
pub mod server;
pub mod status;
pub mod tls;

pub use auth::{AuthConfig, Authenticator, Principal, Scope, TokenEntry};
pub use backend::{
    BackendError, BatchStream, Caller, CostSink, Durability, ErrorKind, IngestBackend, LogRequest,
    PreparedSchemas, QueryBackend, QueryRequest, ShardAck, WriteAck, WriteRequest,
};
pub use flight::{FlightConfig, FlightFront, GrpcMetrics, SqlAnswer, StrataFlightService, WebApi};
pub use otlp::{OtlpConfig, OtlpLogs};
pub use quota::{QuotaConfig, Quotas, RateLimit};
pub use remote::{
    ClusterStatus, RemoteConfig, RemoteIngestBackend, RemoteMetrics, RemoteQueryBackend,
    ShardResolver, TableLayout,
};
pub use result_cache::{CachingQueryBackend, ResultCacheConfig, ResultCacheMetrics, VersionSource};
pub use server::{GatewayConfig, GatewayError, GatewayServer, GatewayServerBuilder, ServerConfig};
pub use status::{RETRY_AFTER_MS, to_status};
