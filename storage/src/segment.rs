//! Parquet segments: sorted by time, zstd, page-level statistics (column and offset index),
//! bloom filters on configured columns and on high-cardinality columns measured in the data
//! ([`measured_bloom_columns`]: a table made by its first write gets them without being told),
//! and statistics for the manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::manifest::{ColumnStats, OFFSET_COLUMN, SegmentMeta, TableDef};

/// Most rows in one data page (the page index then prunes at this granularity).
pub const PAGE_ROWS: usize = 8192;

/// How segments are encoded.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Rows per row group. Smaller groups prune better for lookups. Default: 65,536.
    pub row_group_rows: usize,
    /// zstd level. Default: 1 (flush), compaction may use more.
    pub zstd_level: i32,
    /// Bloom filters beyond the table's `bloom_columns` (see [`measured_bloom_columns`]).
    pub extra_bloom_columns: Vec<String>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            row_group_rows: 65_536,
            zstd_level: 1,
            extra_bloom_columns: Vec::new(),
        }
    }
}

/// An encoded segment and its statistics.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub bytes: Bytes,
    pub rows: u64,
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
    pub min_offset: u64,
    pub max_offset: u64,
    pub columns: BTreeMap<String, ColumnStats>,
}

/// Convert a timestamp value in `unit` to microseconds.
pub fn to_micros(v: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

/// Writer properties for a table's segments.
pub fn writer_properties(
    def: &TableDef,
    opts: &SegmentOptions,
    rows_hint: usize,
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(opts.zstd_level)?;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        // Small pages: a point lookup that the bloom filter narrows to one row group then
        // decodes one page of each column (≤ 8k rows) instead of ~1 MiB pages.
        .set_data_page_row_count_limit(PAGE_ROWS)
        // Every bloom filter next to the footer and page index, not after its row group: a
        // cold lookup then finds all of a segment's filters in the cache blocks it reads for
        // the footer, instead of one more block per row group.
        .set_bloom_filter_position(BloomFilterPosition::End)
        .set_statistics_truncate_length(Some(64));
    if let Some(tc) = &def.time_column
        && let Some(idx) = def.schema.index_of(tc).ok()
    {
        b = b.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: idx as i32,
            descending: false,
            nulls_first: false,
        }]));
    }
    let ndv = rows_hint.clamp(1024, opts.row_group_rows.max(1024)) as u64;
    let mut blooms: Vec<&String> = def
        .bloom_columns
        .iter()
        .chain(&opts.extra_bloom_columns)
        .collect();
    blooms.sort();
    blooms.dedup();
    for c in blooms {
        let path = ColumnPath::from(c.as_str());
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, ndv);
    }
    Ok(b.build())
}

/// Rows sampled to measure a column's cardinality.
const BLOOM_SAMPLE_ROWS: usize = 8192;
/// Fewer rows than this: no measured bloom filters (small segments are cheap to scan).
const BLOOM_MIN_ROWS: usize = 1024;

/// Columns of `batch` that deserve a bloom filter though the table does not declare one:
/// strings, binary and integers whose distinct values keep growing with the rows, the kind
/// point lookups filter by (ids, trace ids, keys): in the sample (the first 8,192 rows) at
/// least one value in 16 is distinct and the whole sample has at least 1.6 times the
/// distinct values of its first half. A column with a bounded set of values (hosts, users,
/// levels: every row group holds all of them, so a filter prunes nothing) stops growing and
/// gets none, nor do the time column and offsets (min/max statistics and the page index
/// prune those).
pub fn measured_bloom_columns(def: &TableDef, batch: &RecordBatch) -> Vec<String> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    use std::collections::HashSet;
    if batch.num_rows() < BLOOM_MIN_ROWS {
        return Vec::new();
    }
    let n = batch.num_rows().min(BLOOM_SAMPLE_ROWS);
    // (distinct values in the sample's first half, in the whole sample), in one pass.
    fn counts<T: std::hash::Hash + Eq>(
        values: impl Iterator<Item = T>,
        half: usize,
    ) -> (usize, usize) {
        let mut seen = HashSet::new();
        let mut at_half = 0;
        for (i, v) in values.enumerate() {
            if i == half {
                at_half = seen.len();
            }
            seen.insert(v);
        }
        (at_half, seen.len())
    }
    let distinct = |c: &ArrayRef| -> Option<(usize, usize)> {
        let c = c.slice(0, n);
        let h = n / 2;
        Some(match c.data_type() {
            DataType::Utf8 => counts(c.as_string::<i32>().iter(), h),
            DataType::LargeUtf8 => counts(c.as_string::<i64>().iter(), h),
            DataType::Utf8View => counts(c.as_string_view().iter(), h),
            DataType::Binary => counts(c.as_binary::<i32>().iter(), h),
            DataType::FixedSizeBinary(_) => counts(c.as_fixed_size_binary().iter(), h),
            DataType::Int64 => counts(c.as_primitive::<Int64Type>().iter(), h),
            DataType::UInt64 => counts(c.as_primitive::<UInt64Type>().iter(), h),
            DataType::Int32 => counts(c.as_primitive::<Int32Type>().iter(), h),
            DataType::UInt32 => counts(c.as_primitive::<UInt32Type>().iter(), h),
            _ => return None,
        })
    };
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| {
            f.name() != OFFSET_COLUMN
                && def.time_column.as_deref() != Some(f.name().as_str())
                && !def.bloom_columns.contains(f.name())
        })
        .filter(|(_, c)| {
            distinct(c).is_some_and(|(half, all)| all * 16 >= n && all * 10 >= half * 16)
        })
        .map(|(f, _)| f.name().clone())
        .collect()
}

/// Sort `batch` by the table's time column (stable: equal times keep offset order).
pub fn sort_by_time(def: &TableDef, batch: &RecordBatch) -> Result<RecordBatch> {
    let Some(tc) = &def.time_column else {
        return Ok(batch.clone());
    };
    let Some(col) = batch.column_by_name(tc) else {
        return Ok(batch.clone());
    };
    let mut keys = vec![SortColumn {
        values: Arc::clone(col),
        options: Some(SortOptions::default()),
    }];
    if let Some(off) = batch.column_by_name(OFFSET_COLUMN) {
        keys.push(SortColumn {
            values: Arc::clone(off),
            options: Some(SortOptions::default()),
        });
    }
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// Encode rows (which must carry [`OFFSET_COLUMN`]) as one Parquet segment.
pub fn encode_segment(
    def: &TableDef,
    batches: &[RecordBatch],
    opts: &SegmentOptions,
) -> Result<EncodedSegment> {
    let Some(first) = batches.first() else {
        return Err(Error::InvalidInput("cannot encode an empty segment".into()));
    };
    let schema = first.schema();
    let batch = concat_batches(&schema, batches)?;
    let batch = sort_by_time(def, &batch)?;
    let mut extra = opts.extra_bloom_columns.clone();
    extra.extend(measured_bloom_columns(def, &batch));
    let opts = SegmentOptions {
        extra_bloom_columns: extra,
        ..opts.clone()
    };
    let props = writer_properties(def, &opts, batch.num_rows())?;
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut w = ArrowWriter::try_new(&mut buf, Arc::clone(&schema), Some(props))?;
    w.write(&batch)?;
    w.close()?;
    let mut stats = compute_stats(def, &batch)?;
    stats.bytes = Bytes::from(buf);
    Ok(stats)
}

impl EncodedSegment {
    /// The manifest entry of this segment once stored at `path` with `bytes` bytes.
    pub fn into_meta(
        self,
        path: String,
        shard: u32,
        bytes: u64,
        created_at_ms: i64,
    ) -> SegmentMeta {
        SegmentMeta {
            path,
            shard,
            rows: self.rows,
            bytes,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            min_offset: self.min_offset,
            max_offset: self.max_offset,
            columns: self.columns,
            level: 0,
            deletes_applied: 0,
            created_at_ms,
        }
    }
}

/// Statistics of `batch` as a segment of it would have them (row count, time range, offsets,
/// per-column min/max/nulls), without encoding it: the query path prunes unflushed WAL
/// batches with them exactly as it prunes segments.
pub fn batch_stats(def: &TableDef, batch: &RecordBatch) -> Result<EncodedSegment> {
    compute_stats(def, batch)
}

fn compute_stats(def: &TableDef, batch: &RecordBatch) -> Result<EncodedSegment> {
    let mut columns = BTreeMap::new();
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.name() == OFFSET_COLUMN {
            continue;
        }
        let (min, max) = min_max_json(a);
        columns.insert(
            f.name().clone(),
            ColumnStats {
                min,
                max,
                nulls: a.null_count() as u64,
            },
        );
    }
    let (min_ts, max_ts) = match (&def.time_column, def.time_unit()) {
        (Some(tc), Some(unit)) => match columns.get(tc) {
            Some(ColumnStats { min, max, .. }) => (
                min.as_ref()
                    .and_then(|v| v.as_i64())
                    .map(|v| to_micros(v, unit)),
                max.as_ref()
                    .and_then(|v| v.as_i64())
                    .map(|v| to_micros(v, unit)),
            ),
            None => (None, None),
        },
        _ => (None, None),
    };
    let (min_offset, max_offset) = match batch.column_by_name(OFFSET_COLUMN) {
        Some(a) => {
            let a = a
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| Error::InvalidInput(format!("{OFFSET_COLUMN} must be UInt64")))?;
            (
                arrow::compute::min(a).unwrap_or(0),
                arrow::compute::max(a).unwrap_or(0),
            )
        }
        None => (0, 0),
    };
    Ok(EncodedSegment {
        bytes: Bytes::new(),
        rows: batch.num_rows() as u64,
        min_ts,
        max_ts,
        min_offset,
        max_offset,
        columns,
    })
}

/// Min and max of an array as JSON scalars, for the types pruning can use.
pub fn min_max_json(a: &ArrayRef) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    use arrow::array::*;
    use arrow::compute::{max, max_string, max_string_view, min, min_string, min_string_view};
    use serde_json::Value;
    macro_rules! prim {
        ($t:ty) => {{
            let a = a.as_any().downcast_ref::<$t>();
            match a {
                Some(a) => (
                    min(a).map(|v| Value::from(v)),
                    max(a).map(|v| Value::from(v)),
                ),
                None => (None, None),
            }
        }};
    }
    match a.data_type() {
        DataType::Int8 => prim!(Int8Array),
        DataType::Int16 => prim!(Int16Array),
        DataType::Int32 => prim!(Int32Array),
        DataType::Int64 => prim!(Int64Array),
        DataType::UInt8 => prim!(UInt8Array),
        DataType::UInt16 => prim!(UInt16Array),
        DataType::UInt32 => prim!(UInt32Array),
        DataType::UInt64 => prim!(UInt64Array),
        DataType::Float32 => prim!(Float32Array),
        DataType::Float64 => prim!(Float64Array),
        DataType::Date32 => prim!(Date32Array),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondArray),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondArray),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondArray),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondArray),
        DataType::Utf8 => match a.as_any().downcast_ref::<StringArray>() {
            Some(a) => (
                min_string(a).map(Value::from),
                max_string(a).map(Value::from),
            ),
            None => (None, None),
        },
        DataType::Utf8View => match a.as_any().downcast_ref::<StringViewArray>() {
            Some(a) => (
                min_string_view(a).map(Value::from),
                max_string_view(a).map(Value::from),
            ),
            None => (None, None),
        },
        _ => (None, None),
    }
}

/// Decode a whole segment held in memory (tests, small segments, log reads).
pub fn decode_segment(bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = Arc::clone(builder.schema());
    let reader = builder.with_batch_size(8192).build()?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    fn def() -> TableDef {
        TableDef {
            name: "t".into(),
            schema: Schema::new(vec![
                Field::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                ),
                Field::new("id", DataType::Int64, false),
                Field::new("msg", DataType::Utf8, true),
            ]),
            time_column: Some("ts".into()),
            shard_key: None,
            num_shards: 1,
            retention_secs: None,
            bloom_columns: vec!["id".into()],
            created_at_ms: 0,
        }
    }

    /// `n` rows of `def()`'s columns plus offsets: ids `7i`, three repeating messages.
    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("id", DataType::Int64, false),
            Field::new("msg", DataType::Utf8, true),
            Field::new(OFFSET_COLUMN, DataType::UInt64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(0..n)),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 7))),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["INFO", "WARN", "ERROR"][(i % 3) as usize]),
                )),
                Arc::new(UInt64Array::from_iter_values(0..n as u64)),
            ],
        )
        .unwrap()
    }

    /// A table made by its first write declares no bloom columns: high-cardinality ones get
    /// a filter anyway, low-cardinality ones and the time column do not.
    #[test]
    fn high_cardinality_columns_get_bloom_filters_undeclared() {
        let d = TableDef {
            bloom_columns: vec![],
            ..def()
        };
        let n = 4096i64;
        let batch = rows(n);
        assert_eq!(measured_bloom_columns(&d, &batch), vec!["id".to_string()]);
        // Values repeated 5 times but ever new (trace ids) get one; a bounded set (1,000
        // users, all seen within the sample's first half) does not.
        let traces: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("trace{}", i / 5)),
        ));
        let users: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..n).map(|i| (i * 7919) % 1000),
        ));
        let two = RecordBatch::try_from_iter(vec![("trace", traces), ("user", users)]).unwrap();
        assert_eq!(measured_bloom_columns(&d, &two), vec!["trace".to_string()]);
        let seg = encode_segment(&d, &[batch], &SegmentOptions::default()).unwrap();
        let meta = parquet::file::serialized_reader::SerializedFileReader::new(seg.bytes)
            .map(|r| parquet::file::reader::FileReader::metadata(&r).clone())
            .unwrap();
        let rg = meta.row_group(0);
        let has = |i: usize| rg.column(i).bloom_filter_offset().is_some();
        assert!(has(1), "bloom filter on the unique id");
        assert!(!has(0) && !has(2) && !has(3), "none on ts, msg or offsets");
    }

    /// Bloom filters sit after the last row group's data (beside the footer), so a cold
    /// lookup reads them with the footer instead of one cache block per row group.
    #[test]
    fn bloom_filters_are_written_beside_the_footer() {
        let batch = rows(4096);
        let opts = SegmentOptions {
            row_group_rows: 1024,
            ..SegmentOptions::default()
        };
        let seg = encode_segment(&def(), &[batch], &opts).unwrap();
        let meta = parquet::file::serialized_reader::SerializedFileReader::new(seg.bytes)
            .map(|r| parquet::file::reader::FileReader::metadata(&r).clone())
            .unwrap();
        assert_eq!(meta.num_row_groups(), 4);
        let data_end = meta
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .map(|c| {
                let (start, len) = c.byte_range();
                start + len
            })
            .max()
            .unwrap();
        for rg in meta.row_groups() {
            let offset = rg
                .column(1)
                .bloom_filter_offset()
                .expect("a bloom filter on id");
            assert!(
                offset as u64 >= data_end,
                "bloom filter at {offset}, inside the row groups' data (ending at {data_end})"
            );
        }
    }

    #[test]
    fn encodes_sorted_with_stats_and_page_index() {
        let d = def();
        let mut fields: Vec<_> = d.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            OFFSET_COLUMN,
            DataType::UInt64,
            false,
        )));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![30, 10, 20])),
                Arc::new(Int64Array::from(vec![3, 1, 2])),
                Arc::new(StringArray::from(vec![Some("c"), None, Some("b")])),
                Arc::new(UInt64Array::from(vec![7, 8, 9])),
            ],
        )
        .unwrap();
        let seg = encode_segment(&d, &[batch], &SegmentOptions::default()).unwrap();
        assert_eq!(seg.rows, 3);
        assert_eq!((seg.min_ts, seg.max_ts), (Some(10), Some(30)));
        assert_eq!((seg.min_offset, seg.max_offset), (7, 9));
        assert_eq!(seg.columns["msg"].nulls, 1);
        assert_eq!(seg.columns["msg"].min, Some("b".into()));
        assert_eq!(seg.columns["id"].max, Some(3.into()));

        let meta = parquet::file::serialized_reader::SerializedFileReader::new(seg.bytes.clone())
            .map(|r| parquet::file::reader::FileReader::metadata(&r).clone())
            .unwrap();
        assert!(
            meta.row_group(0).column(1).bloom_filter_offset().is_some(),
            "bloom filter on id"
        );
        assert!(
            meta.row_group(0).column(0).column_index_offset().is_some(),
            "page index present"
        );

        let (_, batches) = decode_segment(seg.bytes).unwrap();
        let ts = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.values().to_vec(), vec![10, 20, 30]);
    }

    #[test]
    fn pages_hold_at_most_page_rows() {
        let d = def();
        let mut fields: Vec<_> = d.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(OFFSET_COLUMN, DataType::UInt64, false)));
        let n = 3 * PAGE_ROWS as i64 + 5;
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(0..n)),
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("m{i}")),
                )),
                Arc::new(UInt64Array::from_iter_values(0..n as u64)),
            ],
        )
        .unwrap();
        let seg = encode_segment(&d, &[batch], &SegmentOptions::default()).unwrap();
        let opts = parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_page_index()
            .build();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new_with_options(
            seg.bytes, opts,
        )
        .unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        let pages = &meta.offset_index().expect("offset index")[0][1].page_locations;
        assert_eq!(pages.len(), 4, "{pages:?}");
        assert!(
            pages
                .windows(2)
                .all(|w| w[1].first_row_index - w[0].first_row_index <= PAGE_ROWS as i64)
        );
    }
}
