//! Reading a table as a log: one shard's records from an offset, from the bucket alone
//! (segments, then WAL entries not yet flushed), so any node can serve it.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch};
use arrow::datatypes::{SchemaRef, UInt64Type};
use object_store::ObjectStoreExt;
use strata_storage::segment::decode_segment;
use strata_storage::{Catalog, OFFSET_COLUMN, TableManifest, wal};

use crate::error::{Error, Result};
use crate::schema::{upgrade_stored, with_offset_column};

/// Records of `shard` with offsets in `[from, from + max_rows)`, ordered by offset, as one
/// batch with the table schema plus a trailing `_offset` column. Empty when caught up.
pub async fn read_log(
    catalog: &Catalog,
    table: &str,
    shard: u32,
    from: u64,
    max_rows: usize,
) -> Result<RecordBatch> {
    // A flush may delete WAL entries between our manifest read and our GETs: retry once.
    match read_once(catalog, table, shard, from, max_rows).await {
        Err(Error::Unavailable(_))
        | Err(Error::Storage(strata_storage::Error::ObjectStore(
            object_store::Error::NotFound { .. },
        ))) => read_once(catalog, table, shard, from, max_rows).await,
        r => r,
    }
}

/// The offset the next record of `shard` will get: past the newest durably acknowledged
/// record, flushed or still in the WAL (a tail that starts here sees only new records).
pub async fn end_offset(catalog: &Catalog, table: &str, shard: u32) -> Result<u64> {
    let m = catalog.load(table).await?;
    end_offset_in(catalog, m, shard).await
}

/// [`end_offset`] starting from a manifest the caller already read (one read for the
/// shards of a table, not one per shard).
pub async fn end_offset_in(
    catalog: &Catalog,
    manifest: Arc<TableManifest>,
    shard: u32,
) -> Result<u64> {
    // A flush may delete the WAL entry we read between the LIST and the GET: retry once,
    // on the manifest as it is then.
    match end_offset_once(catalog, Arc::clone(&manifest), shard).await {
        Err(Error::Storage(strata_storage::Error::ObjectStore(
            object_store::Error::NotFound { .. },
        ))) => {
            let newest = catalog.load(&manifest.table.name).await?;
            end_offset_once(catalog, newest, shard).await
        }
        r => r,
    }
}

async fn end_offset_once(catalog: &Catalog, mut m: Arc<TableManifest>, shard: u32) -> Result<u64> {
    let store = Arc::clone(catalog.store());
    for _ in 0..3 {
        let st = m.shard(shard)?.clone();
        let name = m.table.name.as_str();
        let entries = wal::list(store.as_ref(), name, shard, st.flushed_wal_seq).await?;
        // The newest entry holding rows ends the log; older ones end before it.
        for (_, meta) in entries.iter().rev() {
            let bytes = store.get(&meta.location).await?.bytes().await?;
            let h = wal::decode(&bytes)?.header;
            if h.rows > 0 {
                return Ok(st.flushed_offset.max(h.first_offset + h.rows));
            }
        }
        // Nothing listed: either nothing since the flush, or a flush that committed after
        // our manifest read removed the entries; a newer manifest tells.
        let newest = catalog.load(name).await?;
        if newest.version == m.version {
            return Ok(st.flushed_offset);
        }
        m = newest;
    }
    Ok(m.shard(shard)?.flushed_offset)
}

async fn read_once(
    catalog: &Catalog,
    table: &str,
    shard: u32,
    from: u64,
    max_rows: usize,
) -> Result<RecordBatch> {
    let m = catalog.load(table).await?;
    let st = m.shard(shard)?.clone();
    let schema: SchemaRef = with_offset_column(&m.table.schema);
    let end = from.saturating_add(max_rows.max(1) as u64);
    let store = Arc::clone(catalog.store());
    let mut parts = Vec::new();
    let mut segs: Vec<_> = m
        .segments
        .iter()
        .filter(|s| s.shard == shard && s.max_offset >= from && s.min_offset < end)
        .collect();
    segs.sort_by_key(|s| s.min_offset);
    for seg in segs {
        let bytes = store.get(&seg.path.as_str().into()).await?.bytes().await?;
        let (_, batches) = decode_segment(bytes)?;
        for b in batches {
            parts.push(keep_range(&upgrade_stored(&b, &schema)?, from, end)?);
        }
    }
    if end > st.flushed_offset {
        for (_, meta) in wal::list(store.as_ref(), table, shard, st.flushed_wal_seq).await? {
            let bytes = store.get(&meta.location).await?.bytes().await?;
            let entry = wal::decode(&bytes)?;
            let h = &entry.header;
            if h.rows == 0 || h.first_offset + h.rows <= from {
                continue;
            }
            if h.first_offset >= end {
                break;
            }
            for b in entry.batches {
                parts.push(keep_range(&upgrade_stored(&b, &schema)?, from, end)?);
            }
        }
    }
    let all = concat_batches(&schema, &parts)?;
    let offsets = all
        .column_by_name(OFFSET_COLUMN)
        .ok_or_else(|| Error::InvalidInput("missing offset column".into()))?;
    let idx = sort_to_indices(offsets, None, None)?;
    Ok(take_record_batch(&all, &idx)?)
}

fn keep_range(b: &RecordBatch, from: u64, end: u64) -> Result<RecordBatch> {
    let off = b
        .column_by_name(OFFSET_COLUMN)
        .ok_or_else(|| Error::InvalidInput("missing offset column".into()))?
        .as_primitive::<UInt64Type>();
    let mask: BooleanArray = off
        .iter()
        .map(|o| o.map(|o| o >= from && o < end))
        .collect();
    Ok(filter_record_batch(b, &mask)?)
}
