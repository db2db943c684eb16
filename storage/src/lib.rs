//! # strata-storage
//!
//! Everything Strata keeps lives in one object store; this crate is the only one that knows
//! its layout. It provides:
//!
//! - [`store`]: opening a store from a URL (`file://`, `s3://`, `memory://`), creating the
//!   bucket, and the startup probe that refuses stores without conditional writes.
//! - [`decorators`]: timeout, retry (exponential backoff, full jitter), metrics and
//!   fault-injection layers over `Arc<dyn ObjectStore>`.
//! - [`catalog`] and [`manifest`]: tables and their versioned manifests, committed with
//!   create-only PUTs; per-shard writer epochs fence zombies.
//! - [`segment`]: Parquet segment encoding (sorted by time, zstd, page index, bloom filters).
//! - [`gc`]: finding objects no manifest references.
//!
//! It knows nothing of SQL or gRPC.

pub mod catalog;
pub mod decorators;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod paths;
mod prefix;
mod s3;
pub mod segment;
pub mod store;
pub mod wal;

pub use catalog::{Catalog, Clock, CommitPolicy, SystemClock};
pub use error::{Error, Result};
pub use manifest::{
    ColumnStats, DeleteRule, OFFSET_COLUMN, SegmentMeta, ShardState, TableDef, TableManifest,
};
pub use store::{S3Options, StoreKind, StoreUrl, open_store, verify_conditional_writes};
