//! # strata-common
//!
//! Small pieces every role needs and that carry no storage, SQL or gRPC knowledge:
//! the consistent-hash [`ring`] that maps shard keys to shards and shards to nodes.

pub mod ring;

pub use ring::{HashRing, hash_key_column, partition_by_shard};
