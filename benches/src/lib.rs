//! Strata's benchmark crate: the deterministic `logs` workload of the brief
//! ([`workload`]), the twelve benchmark queries ([`queries`]), and the pieces of the
//! `strata-bench` binary that runs them end to end against a Strata server next to
//! in-process DataFusion, DuckDB and Polars on the same Parquet files.
//!
//! `strata-bench --tpch SF` runs TPC-H the same way ([`tpch`]); `strata-bench --otlp ROWS`
//! measures OpenTelemetry logs ingest against Flight `DoPut` ([`otlp`]).
//!
//! Criterion micro-benchmarks of the hot paths live in `benches/micro.rs`.

pub mod dist;
pub mod encode;
pub mod flight;
pub mod ingest;
pub mod local;
pub mod otlp;
pub mod queries;
pub mod report;
pub mod server;
pub mod sizing;
pub mod stats;
pub mod suite;
pub mod tpch;
pub mod workload;

/// Errors of the benchmark tools: anything, with its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
