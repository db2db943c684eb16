//! Consistent hashing with virtual nodes.
//!
//! Each member (a shard, or a node) is placed on a 64-bit ring at `vnodes` pseudo-random
//! points; a key belongs to the first point at or after its hash. Adding or removing one of
//! N members moves about 1/N of the keys, which `tests::adding_a_member_moves_about_one_nth`
//! checks. Hashes are xxh3 (stable across processes and versions of Strata).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow::error::ArrowError;
use xxhash_rust::xxh3::xxh3_64;

/// Default virtual nodes per member.
pub const DEFAULT_VNODES: u32 = 128;

/// A consistent-hash ring over members identified by `u32`.
#[derive(Debug, Clone)]
pub struct HashRing {
    vnodes: u32,
    points: Vec<(u64, u32)>,
}

impl HashRing {
    pub fn new(members: impl IntoIterator<Item = u32>, vnodes: u32) -> Self {
        let mut ring = Self {
            vnodes: vnodes.max(1),
            points: Vec::new(),
        };
        for m in members {
            ring.insert_points(m);
        }
        ring.points.sort_unstable();
        ring
    }

    /// A ring over shards `0..n`.
    pub fn for_shards(n: u32) -> Self {
        Self::new(0..n, DEFAULT_VNODES)
    }

    fn insert_points(&mut self, member: u32) {
        for v in 0..self.vnodes {
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&member.to_le_bytes());
            buf[4..].copy_from_slice(&v.to_le_bytes());
            self.points.push((xxh3_64(&buf), member));
        }
    }

    pub fn add(&mut self, member: u32) {
        if !self.members().contains(&member) {
            self.insert_points(member);
            self.points.sort_unstable();
        }
    }

    pub fn remove(&mut self, member: u32) {
        self.points.retain(|(_, m)| *m != member);
    }

    pub fn members(&self) -> Vec<u32> {
        let mut m: Vec<u32> = self.points.iter().map(|(_, m)| *m).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// The member owning `hash`; `None` for an empty ring.
    pub fn lookup(&self, hash: u64) -> Option<u32> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|(h, _)| *h < hash);
        Some(self.points[i % self.points.len()].1)
    }

    pub fn lookup_key(&self, key: &[u8]) -> Option<u32> {
        self.lookup(xxh3_64(key))
    }
}

/// The shard of a table without a shard key that an idempotent producer's writes go to:
/// always the same one for the same producer and shard count, whichever gateway or node
/// computes it, so a retry meets the sequence number it must be checked against.
pub fn producer_shard(producer: &str, num_shards: u32) -> u32 {
    (xxh3_64(producer.as_bytes()) % u64::from(num_shards.max(1))) as u32
}

/// Hash every row's key value. Nulls hash like an empty key. Integers hash their
/// little-endian bytes, strings their UTF-8 bytes, so a key hashes the same whatever
/// integer width or string layout a client sent.
pub fn hash_key_column(a: &ArrayRef) -> Result<Vec<u64>, ArrowError> {
    let n = a.len();
    let mut out = Vec::with_capacity(n);
    macro_rules! ints {
        ($t:ty) => {{
            let p = a.as_primitive::<$t>();
            for i in 0..n {
                out.push(if p.is_null(i) {
                    xxh3_64(&[])
                } else {
                    xxh3_64(&(p.value(i) as i64).to_le_bytes())
                });
            }
        }};
    }
    match a.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            for i in 0..n {
                out.push(xxh3_64(if s.is_null(i) {
                    b""
                } else {
                    s.value(i).as_bytes()
                }));
            }
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            for i in 0..n {
                out.push(xxh3_64(if s.is_null(i) {
                    b""
                } else {
                    s.value(i).as_bytes()
                }));
            }
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            for i in 0..n {
                out.push(xxh3_64(if s.is_null(i) {
                    b""
                } else {
                    s.value(i).as_bytes()
                }));
            }
        }
        DataType::Binary => {
            let s = a.as_binary::<i32>();
            for i in 0..n {
                out.push(xxh3_64(if s.is_null(i) { b"" } else { s.value(i) }));
            }
        }
        DataType::FixedSizeBinary(_) => {
            let s = a.as_fixed_size_binary();
            for i in 0..n {
                out.push(xxh3_64(if s.is_null(i) { b"" } else { s.value(i) }));
            }
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a shard key must be an integer, string or binary column, not {other}"
            )));
        }
    }
    Ok(out)
}

/// Split `batch` by the shard each row's key maps to on `ring`. Without a key column the
/// whole batch goes to `fallback_shard`. Rows keep their relative order within a shard.
pub fn partition_by_shard(
    batch: &RecordBatch,
    key_column: Option<&str>,
    ring: &HashRing,
    fallback_shard: u32,
) -> Result<Vec<(u32, RecordBatch)>, ArrowError> {
    let Some(key) = key_column else {
        return Ok(vec![(fallback_shard, batch.clone())]);
    };
    let col = batch.column_by_name(key).ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("the batch lacks the shard key column `{key}`"))
    })?;
    let hashes = hash_key_column(col)?;
    let mut by_shard: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for (row, h) in hashes.iter().enumerate() {
        let shard = ring.lookup(*h).unwrap_or(fallback_shard);
        by_shard.entry(shard).or_default().push(row as u32);
    }
    if by_shard.len() == 1
        && let Some((shard, _)) = by_shard.first_key_value()
    {
        return Ok(vec![(*shard, batch.clone())]);
    }
    by_shard
        .into_iter()
        .map(|(shard, rows)| {
            let idx = UInt32Array::from(rows);
            Ok((shard, take_record_batch(batch, &idx)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn adding_a_member_moves_about_one_nth() {
        for n in [4u32, 8, 16] {
            let before = HashRing::new(0..n, DEFAULT_VNODES);
            let mut after = before.clone();
            after.add(n);
            let keys = 100_000u64;
            let moved = (0..keys)
                .filter(|k| {
                    before.lookup_key(&k.to_le_bytes()) != after.lookup_key(&k.to_le_bytes())
                })
                .count() as f64;
            let expected = keys as f64 / f64::from(n + 1);
            assert!(
                (moved - expected).abs() < expected * 0.25,
                "n={n}: moved {moved} keys, expected about {expected}"
            );
            // Every moved key moved to the new member, never between old ones.
            for k in 0..10_000u64 {
                let (b, a) = (
                    before.lookup_key(&k.to_le_bytes()),
                    after.lookup_key(&k.to_le_bytes()),
                );
                assert!(a == b || a == Some(n));
            }
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let before = HashRing::new(0..8, DEFAULT_VNODES);
        let mut after = before.clone();
        after.remove(3);
        for k in 0..10_000u64 {
            let (b, a) = (
                before.lookup_key(&k.to_le_bytes()),
                after.lookup_key(&k.to_le_bytes()),
            );
            if b != Some(3) {
                assert_eq!(a, b);
            } else {
                assert_ne!(a, Some(3));
            }
        }
        assert_eq!(after.members(), vec![0, 1, 2, 4, 5, 6, 7]);
    }

    #[test]
    fn balance_is_reasonable() {
        let ring = HashRing::for_shards(8);
        let mut counts = [0u32; 8];
        for k in 0..80_000u64 {
            counts[ring.lookup_key(&k.to_le_bytes()).unwrap() as usize] += 1;
        }
        for c in counts {
            assert!((7_000..13_000).contains(&c), "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn partitions_keep_rows_and_route_equal_keys_together() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", arrow::datatypes::DataType::Utf8, true),
            Field::new("v", arrow::datatypes::DataType::Int64, false),
        ]));
        let hosts: Vec<Option<String>> = (0..1000).map(|i| Some(format!("h{}", i % 37))).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(hosts)),
                Arc::new(Int64Array::from_iter_values(0..1000)),
            ],
        )
        .unwrap();
        let ring = HashRing::for_shards(4);
        let parts = partition_by_shard(&batch, Some("host"), &ring, 0).unwrap();
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 1000);
        assert!(parts.len() > 1);
        let mut seen = std::collections::HashMap::new();
        for (shard, b) in &parts {
            let h = b.column(0).as_string::<i32>();
            for i in 0..b.num_rows() {
                assert_eq!(
                    *seen.entry(h.value(i).to_string()).or_insert(*shard),
                    *shard
                );
            }
        }
        let err = partition_by_shard(&batch, Some("nope"), &ring, 0).unwrap_err();
        assert!(err.to_string().contains("shard key column `nope`"));
    }
}
