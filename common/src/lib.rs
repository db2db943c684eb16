//! # strata-common
//!
//! Small pieces every role needs and that carry no storage, SQL or gRPC knowledge:
//! the consistent-hash [`ring`] that maps shard keys to shards and shards to nodes, and the
//! memory [`size`] of Arrow batches, and the per-node [`sizing`] figures the bench measures
//! for `strata estimate`.

pub mod ring;
pub mod size;
pub mod sizing;

pub use ring::{HashRing, hash_key_column, partition_by_shard, producer_shard};
pub use size::batch_bytes;
