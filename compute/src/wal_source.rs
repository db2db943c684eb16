//! Unflushed rows: the WAL entries above a manifest's per-shard flush floor, read through
//! the cache and conformed to the table's current schema.
//!
//! # Consistency
//! The segment set and the WAL floors come from the same manifest, so every acknowledged
//! row is in exactly one of them. A flush that commits a newer manifest then deletes the WAL
//! objects it covered, which a query planned on the older manifest can notice in two ways:
//! a GET of a listed entry returns NotFound, or the listing starts above the floor (the
//! first entries are already gone). Both are reported as [`Error::StaleManifest`] when the
//! table really has a newer manifest, and the engine re-plans on it (up to 5 times).
//!
//! # Cost
//! A listing checked against its manifest is reused for the manifest TTL
//! ([`WalListings`]), keyed by the floor it was listed from: a burst of queries costs one
//! LIST per shard per interval, as the manifest itself costs one poll, and a flush (which
//! moves the floor) is seen as soon as the manifest is.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array, new_null_array};
use arrow::datatypes::SchemaRef;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use strata_storage::{Catalog, SegmentMeta, TableDef, TableManifest, segment, wal};

use crate::error::{Error, Result};
use crate::ttl_map::TtlMap;

/// Concurrent WAL GETs per scan.
const WAL_FETCH_CONCURRENCY: usize = 8;

/// Name of the internal per-row shard column (a constant per segment or WAL entry), named
/// so that no user column can clash with it.
pub(crate) const SHARD_COLUMN: &str = "__strata_shard";

/// WAL entries of one shard at or above a floor, ascending by sequence.
pub(crate) type Listing = Arc<Vec<(u64, ObjectMeta)>>;

/// (table, shard, floor).
type ListingKey = (String, u32, u64);

/// WAL listings by (table, shard, floor), reused for a TTL (the manifest TTL). One per
/// engine: its paths are relative to the engine's store.
#[derive(Debug)]
pub(crate) struct WalListings(TtlMap<ListingKey, Listing>);

impl WalListings {
    /// Listings kept at most.
    const MAX_ENTRIES: usize = 10_000;

    pub(crate) fn new(ttl: Duration) -> Self {
        Self(TtlMap::new(ttl, Self::MAX_ENTRIES))
    }

    /// Forget every listing (after a stale plan).
    pub(crate) fn invalidate_all(&self) {
        self.0.invalidate(|_| true);
    }

    /// Forget the listings of `table` (a write to it was acknowledged in this process).
    pub(crate) fn invalidate_table(&self, table: &str) {
        self.0.invalidate(|(t, _, _)| t.eq_ignore_ascii_case(table));
    }
}

/// One decoded WAL batch and its statistics, in the shape of a segment's manifest entry, so
/// that a scan prunes unflushed rows by shard, time and column statistics exactly as it prunes
/// segments. Computed once when the entry is decoded and cached with it.
#[derive(Debug)]
pub(crate) struct TailBatch {
    pub(crate) batch: RecordBatch,
    pub(crate) stats: SegmentMeta,
}

impl TailBatch {
    fn new(def: &TableDef, location: &str, shard: u32, batch: RecordBatch) -> Result<Self> {
        let bytes = strata_common::batch_bytes(&batch) as u64;
        let stats = segment::batch_stats(def, &batch)
            .map_err(|e| Error::Internal(format!("statistics of WAL entry {location}: {e}")))?
            .into_meta(location.to_string(), shard, bytes, 0);
        Ok(Self { batch, stats })
    }

    /// Cache weight: the data once (see [`WalCache::new`]) and the statistics.
    fn weight(&self) -> usize {
        strata_common::batch_bytes(&self.batch)
            + self
                .stats
                .columns
                .keys()
                .map(|k| k.len() + 64)
                .sum::<usize>()
    }
}

/// Decoded WAL entries by object path. WAL objects never change, so repeated queries over
/// the same unflushed tail skip the Arrow IPC decode; entries age out (LRU by bytes) once
/// a flush deletes their objects and nobody asks for them.
///
/// One cache serves every engine of a node; each engine sees it through its own namespace
/// ([`Self::scoped`]), because tenants' object paths are relative to their prefix and the
/// same path names different objects for two tenants.
#[derive(Clone)]
pub(crate) struct WalCache {
    cache: foyer::Cache<String, Arc<Vec<TailBatch>>>,
    namespace: u64,
}

impl WalCache {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        Self {
            cache: foyer::CacheBuilder::new(capacity_bytes.max(1))
                // Weighed by their data: the IPC reader decodes each message body into one
                // allocation that all columns slice, which `get_array_memory_size` would
                // count once per column, making the cache evict what it could hold.
                .with_weighter(|k: &String, v: &Arc<Vec<TailBatch>>| {
                    k.len() + v.iter().map(TailBatch::weight).sum::<usize>()
                })
                .build(),
            namespace: 0,
        }
    }

    /// The same cache, under a namespace no other call of `scoped` returns.
    pub(crate) fn scoped(&self) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            cache: self.cache.clone(),
            namespace: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn key(&self, location: &object_store::path::Path) -> String {
        format!("{}/{location}", self.namespace)
    }
}

impl std::fmt::Debug for WalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalCache")
    }
}

/// The unflushed rows a scan reads.
#[derive(Debug, Default)]
pub(crate) struct Unflushed {
    /// Batches conformed to the scan's target schema, each with its shard.
    pub(crate) batches: Vec<(u32, RecordBatch)>,
    /// Batches skipped because their statistics rule out every row.
    pub(crate) pruned: usize,
    /// WAL entries decoded from the node's cache rather than fetched.
    pub(crate) cached: usize,
}

/// Read the unflushed rows of `shards` whose batch statistics `keep` accepts, conformed to
/// `target` (the table schema, then `_offset`, then [`SHARD_COLUMN`]), each batch with its
/// shard.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_unflushed(
    store: &Arc<dyn ObjectStore>,
    decoded: &WalCache,
    listings: &WalListings,
    catalog: &Catalog,
    manifest: &TableManifest,
    shards: &[u32],
    target: &SchemaRef,
    keep: impl Fn(&SegmentMeta) -> bool,
) -> Result<Unflushed> {
    let def = &manifest.table;
    let table = manifest.table.name.as_str();
    let listed = checked_listings(store, listings, catalog, manifest, shards).await?;
    let entries: Vec<(u32, ObjectMeta)> = listed
        .iter()
        .flat_map(|(shard, l)| l.iter().map(move |(_, meta)| (*shard, meta.clone())))
        .collect();
    let fetched: Vec<(u32, Arc<Vec<TailBatch>>, bool)> = futures::stream::iter(entries)
        .map(|(shard, meta)| async move {
            let key = decoded.key(&meta.location);
            if let Some(hit) = decoded.cache.get(&key) {
                return Ok((shard, Arc::clone(hit.value()), true));
            }
            let get = store.get(&meta.location).await;
            let bytes = match get {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match bytes {
                Ok(b) => b,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::StaleManifest(table.to_string()));
                }
                Err(e) => return Err(Error::ObjectStore(e)),
            };
            let location = meta.location.to_string();
            let batches = Arc::new(
                wal::decode(&bytes)?
                    .batches
                    .into_iter()
                    .filter(|b| b.num_rows() > 0)
                    .map(|b| TailBatch::new(def, &location, shard, b))
                    .collect::<Result<Vec<_>>>()?,
            );
            decoded.cache.insert(key, Arc::clone(&batches));
            Ok((shard, batches, false))
        })
        .buffered(WAL_FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    let mut out = Unflushed::default();
    for (shard, batches, cached) in fetched {
        out.cached += usize::from(cached);
        for b in batches.iter() {
            if keep(&b.stats) {
                out.batches.push((shard, conform(&b.batch, target, shard)?));
            } else {
                out.pruned += 1;
            }
        }
    }
    Ok(out)
}

/// The WAL entries of `shards` at or above `manifest`'s floors, reused from `listings`
/// when listed within its TTL. Fails with [`Error::StaleManifest`] if a listing shows that a
/// flush moved a floor after `manifest` was read.
pub(crate) async fn checked_listings(
    store: &Arc<dyn ObjectStore>,
    listings: &WalListings,
    catalog: &Catalog,
    manifest: &TableManifest,
    shards: &[u32],
) -> Result<Vec<(u32, Listing)>> {
    let table = manifest.table.name.as_str();
    let floor_of = |shard: u32| manifest.shards.get(&shard).map_or(0, |s| s.flushed_wal_seq);
    let mut listed: Vec<(u32, Listing)> = Vec::with_capacity(shards.len());
    let mut missing = Vec::new();
    for &shard in shards {
        match listings.0.get(&(table.to_string(), shard, floor_of(shard))) {
            Some(l) => listed.push((shard, l)),
            None => missing.push(shard),
        }
    }
    let ticket = listings.0.ticket();
    let fresh: Vec<(u32, Listing)> = futures::stream::iter(missing)
        .map(|shard| async move {
            let l = wal::list(store.as_ref(), table, shard, floor_of(shard)).await?;
            Ok::<_, Error>((shard, Arc::new(l)))
        })
        .buffered(WAL_FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    // Sequence numbers are consecutive from the floor; a listing that is empty or starts
    // higher may mean a flush removed entries after this manifest was read. Only checked
    // listings are kept for reuse.
    let gap = fresh
        .iter()
        .any(|(shard, l)| l.first().is_none_or(|(seq, _)| *seq != floor_of(*shard)));
    if gap && floor_moved(catalog, manifest).await? {
        return Err(Error::StaleManifest(table.to_string()));
    }
    for (shard, l) in &fresh {
        let key = (table.to_string(), *shard, floor_of(*shard));
        listings.0.put(key, Arc::clone(l), ticket, |_| false);
    }
    listed.extend(fresh);
    listed.sort_unstable_by_key(|(shard, _)| *shard);
    Ok(listed)
}

/// True if the table's newest manifest differs from `planned`.
async fn floor_moved(catalog: &Catalog, planned: &TableManifest) -> Result<bool> {
    let newest = catalog.load(&planned.table.name).await?;
    Ok(newest.version != planned.version)
}

/// Reorder, cast and null-fill `batch`'s columns to `target`; columns added to the table
/// after the entry was written become nulls.
pub(crate) fn conform(batch: &RecordBatch, target: &SchemaRef, shard: u32) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            if f.name() == SHARD_COLUMN {
                return Ok(Arc::new(UInt32Array::from_value(shard, n)));
            }
            Ok(match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Arc::clone(c),
                Some(c) => arrow::compute::cast(c, f.data_type()).map_err(|e| {
                    Error::Internal(format!(
                        "WAL column `{}` cannot be read as {}: {e}",
                        f.name(),
                        f.data_type()
                    ))
                })?,
                None => new_null_array(f.data_type(), n),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(target),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
    .map_err(|e| Error::Internal(format!("conforming a WAL batch to the table schema: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    /// A decoded WAL entry weighs about its data, not its data once per column.
    #[test]
    fn decoded_entries_weigh_their_data_once() {
        let n = 8192;
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "b",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "c",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("row {i}")),
                )) as ArrayRef,
            ),
        ])
        .unwrap();
        // Round trip through IPC as the WAL reader does: one body allocation per message.
        let mut buf = Vec::new();
        {
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let decoded = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(buf), None)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let data =
            n as usize * (8 + 8 + 4) + (0..n).map(|i| format!("row {i}").len()).sum::<usize>();
        let weight = strata_common::batch_bytes(&decoded);
        assert!(
            weight >= data && weight < data * 2,
            "weight {weight} for {data} bytes of data"
        );
        assert!(
            decoded.get_array_memory_size() > 2 * weight,
            "the shared body is counted per column by get_array_memory_size"
        );
    }
}
