//! WAL entries: one create-only object per group commit of one shard.
//!
//! An entry is an Arrow IPC stream, LZ4-compressed as a whole (4-byte magic `SWL1`, then an
//! `lz4_flex` size-prepended block). Its schema is the table schema plus [`OFFSET_COLUMN`];
//! the schema metadata key `strata.wal` holds a JSON [`WalHeader`]: the writer's epoch and
//! id, the sequence number, the first offset, and the producer sequence numbers it applied.
//! Because entries are created with If-None-Match at consecutive sequence numbers, two
//! writers of one shard cannot both write entry `n`: the loser reads the winner's header
//! and either adopts the entry (older epoch: a zombie's last acknowledged write) or stops
//! (newer epoch: it has been fenced).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paths;

const HEADER_KEY: &str = "strata.wal";
const MAGIC: &[u8] = b"SWL1";
/// Largest decoded WAL entry accepted (entries hold one group commit, at most a few times
/// `ingest.max_batch_bytes`).
pub const MAX_DECODED_BYTES: usize = 1 << 30;

/// What a WAL entry says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalHeader {
    pub epoch: u64,
    /// Random id of the writer process instance (tells "my own lost response" from others).
    pub writer: String,
    pub seq: u64,
    pub first_offset: u64,
    pub rows: u64,
    /// Idempotent producers applied by this entry: id → highest sequence number.
    pub producers: BTreeMap<String, u64>,
    /// Which PUT of `writer` made this entry (unique per writer): tells this attempt's
    /// entry from one that an earlier attempt at the same sequence left behind, whose PUT
    /// failed or timed out and landed late. 0 in entries written before it existed.
    #[serde(default)]
    pub attempt: u64,
}

/// A decoded entry.
#[derive(Debug, Clone)]
pub struct WalEntry {
    pub header: WalHeader,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Encode an entry. All batches must share `schema` (table schema + offset column).
pub fn encode(header: &WalHeader, schema: &Schema, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut meta: HashMap<String, String> = schema.metadata().clone();
    let json = serde_json::to_string(header).map_err(|e| Error::InvalidInput(e.to_string()))?;
    meta.insert(HEADER_KEY.to_string(), json);
    let schema = Arc::new(schema.clone().with_metadata(meta));
    let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let mut buf = Vec::with_capacity(size + 1024);
    {
        let mut w =
            StreamWriter::try_new_with_options(&mut buf, &schema, IpcWriteOptions::default())?;
        for b in batches {
            w.write(&RecordBatch::try_new(
                Arc::clone(&schema),
                b.columns().to_vec(),
            )?)?;
        }
        w.finish()?;
    }
    let mut out = Vec::with_capacity(buf.len() / 3 + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&buf));
    Ok(Bytes::from(out))
}

/// Decode an entry; the returned schema has the header removed from its metadata.
pub fn decode(bytes: &Bytes) -> Result<WalEntry> {
    // The Arrow IPC reader panics on some malformed messages: a corrupt object is an error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_unchecked(bytes)))
        .unwrap_or_else(|_| {
            Err(Error::Corrupt {
                what: "WAL entry".into(),
                detail: "the Arrow IPC decoder refused a message".into(),
            })
        })
}

/// Walks the Arrow IPC stream's frames and checks that every message's metadata verifies and
/// its body lies within the buffer, before the reader sees it: the reader allocates a body
/// of the size a message claims, so a corrupt length would otherwise abort the process.
fn check_ipc_frames(ipc: &[u8]) -> std::result::Result<(), String> {
    let word = |at: usize| -> Option<u32> {
        ipc.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut pos = 0usize;
    while pos < ipc.len() {
        let mut len = word(pos).ok_or("truncated frame")?;
        pos += 4;
        if len == 0xFFFF_FFFF {
            len = word(pos).ok_or("truncated frame")?;
            pos += 4;
        }
        if len == 0 {
            return Ok(()); // end of stream
        }
        let meta_end = pos
            .checked_add(len as usize)
            .filter(|e| *e <= ipc.len())
            .ok_or("message metadata past the end")?;
        let message = arrow::ipc::root_as_message(&ipc[pos..meta_end])
            .map_err(|e| format!("invalid message metadata: {e}"))?;
        let body = usize::try_from(message.bodyLength()).map_err(|_| "negative body length")?;
        pos = meta_end
            .checked_add(body)
            .filter(|e| *e <= ipc.len())
            .ok_or("message body past the end")?;
    }
    Ok(())
}

fn decode_unchecked(bytes: &Bytes) -> Result<WalEntry> {
    let corrupt = |detail: String| Error::Corrupt {
        what: "WAL entry".into(),
        detail,
    };
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt("not a Strata WAL entry (bad magic)".into()))?;
    // The decoded size comes first; a corrupt or hostile one must not size an allocation.
    let size = body
        .first_chunk::<4>()
        .map(|b| u32::from_le_bytes(*b) as usize)
        .ok_or_else(|| corrupt("truncated".into()))?;
    if size > MAX_DECODED_BYTES {
        return Err(corrupt(format!(
            "claims {size} decoded bytes, over the limit of {MAX_DECODED_BYTES}"
        )));
    }
    let ipc = lz4_flex::decompress_size_prepended(body).map_err(|e| corrupt(e.to_string()))?;
    check_ipc_frames(&ipc).map_err(corrupt)?;
    let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None)?;
    let schema = reader.schema();
    let json = schema
        .metadata()
        .get(HEADER_KEY)
        .ok_or_else(|| corrupt("no strata.wal header".into()))?;
    let header: WalHeader = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
    let mut meta = schema.metadata().clone();
    meta.remove(HEADER_KEY);
    let clean = Arc::new(schema.as_ref().clone().with_metadata(meta));
    let mut batches = Vec::new();
    for b in reader {
        let b = b?;
        batches.push(RecordBatch::try_new(
            Arc::clone(&clean),
            b.columns().to_vec(),
        )?);
    }
    Ok(WalEntry {
        header,
        schema: clean,
        batches,
    })
}

/// WAL objects of a shard with sequence ≥ `from_seq`, ascending.
pub async fn list(
    store: &dyn ObjectStore,
    table: &str,
    shard: u32,
    from_seq: u64,
) -> Result<Vec<(u64, ObjectMeta)>> {
    let dir = paths::wal_dir(table, shard);
    let stream = if from_seq == 0 {
        store.list(Some(&dir))
    } else {
        store.list_with_offset(Some(&dir), &paths::wal_entry(table, shard, from_seq - 1))
    };
    let mut out: Vec<(u64, ObjectMeta)> = stream
        .try_filter_map(|m| async move {
            Ok(paths::parse_wal_seq(&m.location)
                .filter(|s| *s >= from_seq)
                .map(|s| (s, m)))
        })
        .try_collect()
        .await?;
    out.sort_unstable_by_key(|(s, _)| *s);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, UInt64Array};
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn round_trip_keeps_header_and_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new(crate::OFFSET_COLUMN, DataType::UInt64, false),
        ]));
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(UInt64Array::from(vec![5, 6])),
            ],
        )
        .unwrap();
        let header = WalHeader {
            attempt: 0,
            epoch: 3,
            writer: "w".into(),
            seq: 9,
            first_offset: 5,
            rows: 2,
            producers: [("p".to_string(), 4)].into(),
        };
        let bytes = encode(&header, &schema, std::slice::from_ref(&b)).unwrap();
        let e = decode(&bytes).unwrap();
        assert_eq!(e.header, header);
        assert_eq!(e.batches, vec![b]);
        // A fence entry carries no rows.
        let bytes = encode(&header, &schema, &[]).unwrap();
        assert!(decode(&bytes).unwrap().batches.is_empty());
        assert!(decode(&Bytes::from_static(b"garbage")).is_err());
    }
}
