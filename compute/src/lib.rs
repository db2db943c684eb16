//! # strata-compute
//!
//! The query path of a Strata compute node: SQL over Strata tables with DataFusion, reading
//! Parquet segments and unflushed WAL entries straight from the bucket through a foyer
//! memory + SSD cache. Compute nodes are stateless: any node can answer any query, because
//! the bucket (manifests, segments, WAL) is the only source of truth.
//!
//! ```text
//!  QueryEngine::execute(sql)
//!    ├─ confine            parse; refuse DDL/DML/COPY/paths  (PermissionDenied)
//!    ├─ admission          ≤ max_concurrent_queries         (ResourceExhausted)
//!    ├─ SessionState       catalog `strata`, schema `public`, information_schema
//!    │    └─ StrataTable   one manifest version per table per query (TTL cache, 100 ms)
//!    │         scan = Filter(deletes, retention)
//!    │                  └─ Union( Parquet(pruned segments) , Memory(unflushed WAL rows) )
//!    └─ execution          on the node's query runtime (own threads), per-query memory
//!                          within the node's, deadline, result limits, streaming results
//!                          object store = CachedStore (foyer: memory → SSD → bucket)
//! ```
//!
//! - [`engine`]: [`QueryEngine`], [`QueryContext`], [`QueryResult`], and
//!   [`NodeResources`], what all engines of a node share.
//! - [`runtime`]: [`QueryRuntime`], the threads queries run on.
//! - [`cache`]: [`CachedStore`], the caching `ObjectStore` decorator.
//! - `table`, `pruning`, `wal_source`: how one table is scanned.
//! - `confine` and [`statement`]: what SQL is allowed, and routing of `CREATE TABLE` /
//!   `DELETE FROM` to the engine ([`parse_statement_kind`]).
//! - [`error`]: [`Error`] and its [`ErrorKind`], which the gateway maps to gRPC statuses.
//!
//! It knows nothing of gRPC or of how rows are ingested; it reads what storage committed.

pub mod cache;
pub mod config;
mod confine;
pub mod cost;
pub mod engine;
pub mod error;
mod functions;
mod manifests;
mod memory;
mod paths;
mod pruning;
mod rules;
pub mod runtime;
mod schema_provider;
pub mod statement;
mod store_registry;
mod stream;
mod table;
mod ttl_map;
mod views;
mod wal_source;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use cache::{CacheOptions, CacheTier, CachedStore};
pub use config::QueryConfig;
pub use cost::{CostReport, QueryCost};
pub use engine::{NodeResources, QueryContext, QueryEngine, QueryResult, STORE_URL};
pub use error::{Error, ErrorKind, Result};
pub use paths::PathCounts;
pub use runtime::QueryRuntime;
pub use schema_provider::{CATALOG_NAME, SCHEMA_NAME};
pub use statement::{
    AlterChange, ColumnSpec, CreateTableSpec, StatementKind, parse_statement_kind,
};
