//! # strata-ingest
//!
//! The write path. An [`IngestNode`] validates writes against the table schema (creating
//! and evolving tables), routes rows by their shard key on a consistent-hash ring to the
//! shard writers it owns, and bounds buffered memory. Each shard writer
//! ([`shard`]) group-commits appends into create-only WAL objects in the bucket,
//! acknowledges them once durable, keeps them in a memtable, and flushes Parquet segments
//! committed to the manifest, truncating the WAL only after the commit. Every record gets a
//! gapless per-shard offset; [`log::read_log`] reads records back by offset from the bucket.
//!
//! Knows the storage layer; knows nothing of SQL or gRPC.

pub mod config;
pub mod error;
pub mod json;
pub mod log;
pub mod metrics;
pub mod node;
pub mod schema;
pub mod shard;

pub use config::IngestConfig;
pub use error::{Error, Result};
pub use metrics::IngestMetrics;
pub use node::{Durability, IngestNode, ShardOffsets, Write, WriteResult};
pub use schema::CreateOptions;
pub use shard::Budget;
