//! In-process encode baselines for the ingest figures: how fast this machine turns the very
//! batches sent to Strata into a Parquet segment (Strata's own `encode_segment`: sort by
//! time, zstd, page statistics, bloom filters on `request_id` and `trace_id`) and into a WAL
//! entry (Arrow IPC + LZ4). Single-threaded, as one shard writer's flush is.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;
use strata_storage::segment::{SegmentOptions, encode_segment};
use strata_storage::wal::{WalHeader, encode as wal_encode};
use strata_storage::{OFFSET_COLUMN, TableDef};

use crate::Result;
use crate::workload::logs_schema;

/// Rows per encoded segment: about what a shard writer flushes (its 64 MiB memtable).
pub const SEGMENT_ROWS: usize = 262_144;

/// The `logs` table definition the benchmark creates in Strata.
pub fn logs_table_def(num_shards: u32) -> TableDef {
    TableDef {
        name: "logs".to_string(),
        schema: logs_schema().as_ref().clone(),
        time_column: Some("ts".to_string()),
        shard_key: Some("host".to_string()),
        num_shards,
        retention_secs: None,
        bloom_columns: vec!["request_id".to_string(), "trace_id".to_string()],
        created_at_ms: 0,
    }
}

/// The schema of `batch` plus the offset column shard writers add.
fn with_offset_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OFFSET_COLUMN, DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

/// `batches` with consecutive offsets appended, as a shard writer holds them.
pub fn with_offsets(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = with_offset_schema(first.schema().as_ref());
    let mut next = 0u64;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let n = b.num_rows() as u64;
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols.push(Arc::new(UInt64Array::from_iter_values(next..next + n)));
        next += n;
        out.push(RecordBatch::try_new(Arc::clone(&schema), cols)?);
    }
    Ok(out)
}

/// An encode rate.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeRate {
    /// What was encoded.
    pub what: String,
    pub rows: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub secs: f64,
    pub rows_per_s: f64,
}

/// Encode `batches` (with offsets, see [`with_offsets`]) as Parquet segments of about
/// [`SEGMENT_ROWS`] rows each.
pub fn segment_encode_rate(batches: &[RecordBatch]) -> Result<EncodeRate> {
    let def = logs_table_def(1);
    let opts = SegmentOptions::default();
    let per_segment = (SEGMENT_ROWS / batches.first().map_or(1, |b| b.num_rows().max(1))).max(1);
    let (mut rows, mut input, mut output) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    for group in batches.chunks(per_segment) {
        let seg = encode_segment(&def, group, &opts)?;
        rows += seg.rows;
        output += seg.bytes.len() as u64;
        input += group
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum::<u64>();
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(EncodeRate {
        what: format!(
            "encode_segment, {} rows per segment",
            per_segment * batches.first().map_or(0, RecordBatch::num_rows)
        ),
        rows,
        input_bytes: input,
        output_bytes: output,
        secs,
        rows_per_s: rows as f64 / secs.max(1e-9),
    })
}

/// Encode each of `batches` (with offsets) as one WAL entry.
pub fn wal_encode_rate(batches: &[RecordBatch]) -> Result<EncodeRate> {
    let Some(first) = batches.first() else {
        return Err("no batches to encode".into());
    };
    let schema = first.schema();
    let (mut rows, mut input, mut output) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        let header = WalHeader {
            attempt: 0,
            epoch: 1,
            writer: "bench".to_string(),
            seq: i as u64,
            first_offset: rows,
            rows: b.num_rows() as u64,
            producers: Default::default(),
        };
        let bytes = wal_encode(&header, &schema, std::slice::from_ref(b))?;
        rows += b.num_rows() as u64;
        input += b.get_array_memory_size() as u64;
        output += bytes.len() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(EncodeRate {
        what: "WAL entry (IPC + LZ4), one per batch".to_string(),
        rows,
        input_bytes: input,
        output_bytes: output,
        secs,
        rows_per_s: rows as f64 / secs.max(1e-9),
    })
}
