//! Test fixtures: a deterministic `logs` table (segments + WAL) and a `services` dimension
//! table, written through strata-storage exactly as ingest would, plus result helpers and a
//! random SQL generator ([`sqlfuzz`]). Built for this crate's tests and, with the `testing`
//! feature, for other crates' tests (the engine's differential fuzzer runs compaction too).

pub mod sqlfuzz;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::Registry;
use strata_common::{HashRing, hash_key_column};
use strata_storage::segment::{SegmentOptions, encode_segment};
use strata_storage::wal::{self, WalHeader};
use strata_storage::{Catalog, OFFSET_COLUMN, SegmentMeta, TableDef, paths};

use crate::{QueryConfig, QueryContext, QueryEngine};

/// 2024-01-01T00:00:00Z in microseconds.
pub const T0: i64 = 1_704_067_200_000_000;
/// Row spacing: 20,000 rows cover one day.
pub const STEP: i64 = 4_320_000;
pub const ROWS: usize = 20_000;
/// The last rows are only in the WAL.
pub const WAL_ROWS: usize = 500;
pub const SHARDS: u32 = 4;
/// Segments per shard, each covering a quarter of the (segment) time span.
pub const PERIODS: usize = 4;
/// First WAL sequence number still in the WAL, per shard.
pub const WAL_FLOOR: u64 = 3;
pub const RARE_TOKEN: &str = "zebra42";

/// SplitMix64: small, seeded, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Skewed towards small values (a cheap zipf stand-in).
    pub fn skewed(&mut self, n: u64) -> u64 {
        ((self.unit().powi(3)) * n as f64) as u64
    }
}

/// One generated `logs` row, with where it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub ts: i64,
    pub tenant: String,
    pub service: String,
    pub host: String,
    pub level: String,
    pub request_id: u64,
    pub trace_id: String,
    pub user_id: u64,
    pub path: String,
    pub status: i32,
    pub latency_ms: f64,
    pub bytes: i64,
    pub message: String,
    pub shard: u32,
    pub offset: u64,
}

pub fn logs_schema() -> Schema {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        s("tenant"),
        s("service"),
        s("host"),
        s("level"),
        Field::new("request_id", DataType::UInt64, false),
        s("trace_id"),
        Field::new("user_id", DataType::UInt64, true),
        s("path"),
        Field::new("status", DataType::Int32, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
        s("message"),
    ])
}

pub fn logs_def() -> TableDef {
    TableDef {
        name: "logs".into(),
        schema: logs_schema(),
        time_column: Some("ts".into()),
        shard_key: Some("host".into()),
        num_shards: SHARDS,
        retention_secs: None,
        bloom_columns: vec!["request_id".into(), "trace_id".into()],
        created_at_ms: 1,
    }
}

/// The shard ingest would route `host` to.
pub fn shard_of_host(host: &str, ring: &HashRing) -> u32 {
    let arr: ArrayRef = Arc::new(StringArray::from(vec![host]));
    let h = hash_key_column(&arr).expect("hash")[0];
    ring.lookup(h).expect("ring")
}

/// `n` time-ordered rows; offsets are assigned per shard in order.
pub fn generate(n: usize, seed: u64) -> Vec<LogRow> {
    let mut rng = Rng::new(seed);
    let ring = HashRing::for_shards(SHARDS);
    let mut next_offset: BTreeMap<u32, u64> = BTreeMap::new();
    let mut trace = String::new();
    (0..n)
        .map(|i| {
            let host = format!("h{:03}", rng.below(200));
            let shard = shard_of_host(&host, &ring);
            let offset = next_offset.entry(shard).or_insert(0);
            let level = match rng.below(1000) {
                0 => "FATAL",
                1..=49 => "ERROR",
                50..=99 => "DEBUG",
                100..=199 => "WARN",
                _ => "INFO",
            };
            if i % 5 == 0 {
                trace = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            }
            let status = match rng.below(100) {
                0..=3 => 500,
                4..=9 => 404,
                _ => 200,
            };
            // Roughly log-normal: exp of a sum of uniforms.
            let z: f64 = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
            let latency_ms = (3.0 + 1.2 * z).exp();
            let r = rng.below(10_000);
            let message = if r < 5 {
                format!("rare event {RARE_TOKEN} observed on request {i}")
            } else if r < 105 {
                format!(
                    "upstream timeout after {} ms calling {}",
                    (latency_ms as u64) + 1,
                    rng.below(50)
                )
            } else {
                format!(
                    "handled request {i} for user {} in {:.1} ms",
                    rng.below(1000),
                    latency_ms
                )
            };
            let row = LogRow {
                ts: T0 + i as i64 * STEP + rng.below(1_000_000) as i64,
                tenant: format!("t{}", rng.skewed(10)),
                service: format!("svc{:02}", rng.below(20)),
                host,
                level: level.to_string(),
                request_id: 1_000_000 + i as u64 * 7_919,
                trace_id: trace.clone(),
                user_id: rng.skewed(1000),
                path: format!("/api/v1/r{}", rng.below(50)),
                status,
                latency_ms,
                bytes: 100 + rng.below(10_000) as i64,
                message,
                shard,
                offset: *offset,
            };
            *offset += 1;
            row
        })
        .collect()
}

/// Rows as a batch of the `logs` schema, plus `_offset` if `with_offset`.
pub fn logs_batch(rows: &[LogRow], with_offset: bool) -> RecordBatch {
    let s = |f: fn(&LogRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let mut fields: Vec<Field> = logs_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| r.ts),
        )),
        s(|r| &r.tenant),
        s(|r| &r.service),
        s(|r| &r.host),
        s(|r| &r.level),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.request_id),
        )),
        s(|r| &r.trace_id),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.user_id),
        )),
        s(|r| &r.path),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.status))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.latency_ms),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.bytes))),
        s(|r| &r.message),
    ];
    if with_offset {
        fields.push(Field::new(OFFSET_COLUMN, DataType::UInt64, false));
        cols.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.offset),
        )));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch")
}

/// Add `_offset` (from `first`) to a batch of a table's schema.
pub fn with_offsets(batch: &RecordBatch, first: u64) -> RecordBatch {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(OFFSET_COLUMN, DataType::UInt64, false));
    let mut cols = batch.columns().to_vec();
    cols.push(Arc::new(UInt64Array::from_iter_values(
        first..first + batch.num_rows() as u64,
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch")
}

/// Encode `batch` (with `_offset`) as a segment of `shard`, upload it, and commit it.
pub async fn write_segment(
    catalog: &Catalog,
    def: &TableDef,
    shard: u32,
    batch: &RecordBatch,
) -> SegmentMeta {
    let opts = SegmentOptions {
        row_group_rows: 1024,
        zstd_level: 1,
        ..SegmentOptions::default()
    };
    let seg = encode_segment(def, std::slice::from_ref(batch), &opts).expect("encode");
    let path = paths::new_segment(&def.name, shard, seg.min_ts);
    catalog
        .store()
        .put(&path, PutPayload::from(seg.bytes.clone()))
        .await
        .expect("put segment");
    let meta = SegmentMeta {
        path: path.to_string(),
        shard,
        rows: seg.rows,
        bytes: seg.bytes.len() as u64,
        min_ts: seg.min_ts,
        max_ts: seg.max_ts,
        min_offset: seg.min_offset,
        max_offset: seg.max_offset,
        columns: seg.columns,
        level: 0,
        deletes_applied: 0,
        created_at_ms: 1,
    };
    let m = meta.clone();
    catalog
        .commit(&def.name, move |man| {
            man.segments.push(m.clone());
            Ok(())
        })
        .await
        .expect("commit segment");
    meta
}

/// Upload a WAL entry of `batches` (with `_offset`) for `shard` at `seq`.
pub async fn write_wal(
    store: &Arc<dyn ObjectStore>,
    table: &str,
    shard: u32,
    seq: u64,
    batches: &[RecordBatch],
) {
    let schema = batches.first().map(|b| b.schema()).expect("a batch");
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let first_offset = batches
        .first()
        .and_then(|b| b.column_by_name(OFFSET_COLUMN))
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().map(|a| a.value(0)))
        .unwrap_or(0);
    let header = WalHeader {
        attempt: 0,
        epoch: 1,
        writer: "test".into(),
        seq,
        first_offset,
        rows: rows as u64,
        producers: BTreeMap::new(),
    };
    let bytes = wal::encode(&header, &schema, batches).expect("encode wal");
    store
        .put(
            &paths::wal_entry(table, shard, seq),
            PutPayload::from(bytes),
        )
        .await
        .expect("put wal");
}

/// Set every listed shard's WAL floor.
pub async fn set_wal_floor(catalog: &Catalog, table: &str, floors: &BTreeMap<u32, u64>) {
    let floors = floors.clone();
    catalog
        .commit(table, move |m| {
            for (s, f) in &floors {
                m.shard_mut(*s)?.flushed_wal_seq = *f;
            }
            Ok(())
        })
        .await
        .expect("commit floors");
}

/// The standard fixture: `logs` (segments + WAL, with a stale WAL entry below the floor)
/// and `services`.
pub struct Fixture {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Catalog,
    pub rows: Vec<LogRow>,
    pub segments: Vec<SegmentMeta>,
    pub services: Vec<(String, String, String)>,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_store(Arc::new(InMemory::new())).await
    }

    pub async fn with_store(store: Arc<dyn ObjectStore>) -> Self {
        let catalog = Catalog::new(Arc::clone(&store));
        let def = logs_def();
        catalog
            .create_table(def.clone())
            .await
            .expect("create logs");
        let rows = generate(ROWS, 42);
        let (in_segments, in_wal) = rows.split_at(ROWS - WAL_ROWS);
        let period = in_segments.len().div_ceil(PERIODS);
        let mut segments = Vec::new();
        for chunk in in_segments.chunks(period) {
            for shard in 0..SHARDS {
                let part: Vec<LogRow> =
                    chunk.iter().filter(|r| r.shard == shard).cloned().collect();
                if !part.is_empty() {
                    segments
                        .push(write_segment(&catalog, &def, shard, &logs_batch(&part, true)).await);
                }
            }
        }
        let floors: BTreeMap<u32, u64> = (0..SHARDS).map(|s| (s, WAL_FLOOR)).collect();
        set_wal_floor(&catalog, "logs", &floors).await;
        for shard in 0..SHARDS {
            let part: Vec<LogRow> = in_wal
                .iter()
                .filter(|r| r.shard == shard)
                .cloned()
                .collect();
            let (a, b) = part.split_at(part.len() / 2);
            write_wal(&store, "logs", shard, WAL_FLOOR, &[logs_batch(a, true)]).await;
            write_wal(&store, "logs", shard, WAL_FLOOR + 1, &[logs_batch(b, true)]).await;
            // Already flushed (below the floor): must never be read again.
            let flushed: Vec<LogRow> = in_segments
                .iter()
                .filter(|r| r.shard == shard)
                .take(3)
                .cloned()
                .collect();
            write_wal(
                &store,
                "logs",
                shard,
                WAL_FLOOR - 1,
                &[logs_batch(&flushed, true)],
            )
            .await;
        }

        let services: Vec<(String, String, String)> = (0..16)
            .map(|i| {
                (
                    format!("svc{i:02}"),
                    format!("team{}", i % 4),
                    if i % 3 == 0 { "gold" } else { "silver" }.to_string(),
                )
            })
            .collect();
        let sdef = services_def();
        catalog
            .create_table(sdef.clone())
            .await
            .expect("create services");
        let batch = RecordBatch::try_new(
            sdef.schema_ref(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    services.iter().map(|s| s.0.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    services.iter().map(|s| s.1.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    services.iter().map(|s| s.2.as_str()),
                )),
            ],
        )
        .expect("services batch");
        write_segment(&catalog, &sdef, 0, &with_offsets(&batch, 0)).await;
        Self {
            store,
            catalog,
            rows,
            segments,
            services,
        }
    }

    /// Bytes of the WAL entries a scan of `shards` reads (those at or above the floor).
    pub async fn wal_bytes(&self, shards: impl IntoIterator<Item = u32>) -> u64 {
        let mut total = 0;
        for s in shards {
            for (_, meta) in wal::list(self.store.as_ref(), "logs", s, WAL_FLOOR)
                .await
                .expect("list")
            {
                total += meta.size;
            }
        }
        total
    }

    pub async fn engine(&self, config: QueryConfig) -> QueryEngine {
        QueryEngine::new(self.catalog.clone(), config, &Registry::new())
            .await
            .expect("engine")
    }
}

pub fn services_def() -> TableDef {
    TableDef {
        name: "services".into(),
        schema: Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("team", DataType::Utf8, false),
            Field::new("tier", DataType::Utf8, false),
        ]),
        time_column: None,
        shard_key: None,
        num_shards: 1,
        retention_secs: None,
        bloom_columns: vec![],
        created_at_ms: 1,
    }
}

/// Settings for tests: small caches, no manifest reuse (every query sees the newest).
pub fn test_config() -> QueryConfig {
    QueryConfig {
        cache_memory_bytes: 64 << 20,
        cache_disk_bytes: 64 << 20,
        manifest_ttl: Duration::ZERO,
        ..QueryConfig::default()
    }
}

/// A result cell, compared loosely for floats.
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    I(i128),
    F(f64),
    /// A float expected within an absolute tolerance.
    Approx(f64, f64),
    S(String),
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::I(a), Cell::I(b)) => a == b,
            (Cell::S(a), Cell::S(b)) => a == b,
            (Cell::F(a), Cell::F(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (Cell::I(a), Cell::F(b)) | (Cell::F(b), Cell::I(a)) => (*a as f64 - b).abs() < 1e-9,
            (Cell::F(a), Cell::Approx(b, tol)) | (Cell::Approx(b, tol), Cell::F(a)) => {
                (a - b).abs() <= *tol
            }
            _ => false,
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::S(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::S(s)
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::I(v.into())
    }
}
impl From<u64> for Cell {
    fn from(v: u64) -> Self {
        Cell::I(v.into())
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        Cell::I(v as i128)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::F(v)
    }
}

/// Rows of `batches` as cells (timestamps as their raw integer value).
pub fn cells(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    use arrow::array::AsArray;
    use arrow::datatypes::*;
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(row) {
                            return Cell::Null;
                        }
                        match c.data_type() {
                            DataType::Int8 => {
                                Cell::I(c.as_primitive::<Int8Type>().value(row).into())
                            }
                            DataType::Int16 => {
                                Cell::I(c.as_primitive::<Int16Type>().value(row).into())
                            }
                            DataType::Int32 => {
                                Cell::I(c.as_primitive::<Int32Type>().value(row).into())
                            }
                            DataType::Int64 => {
                                Cell::I(c.as_primitive::<Int64Type>().value(row).into())
                            }
                            DataType::UInt32 => {
                                Cell::I(c.as_primitive::<UInt32Type>().value(row).into())
                            }
                            DataType::UInt64 => {
                                Cell::I(c.as_primitive::<UInt64Type>().value(row).into())
                            }
                            DataType::Float64 => {
                                Cell::F(c.as_primitive::<Float64Type>().value(row))
                            }
                            DataType::Timestamp(TimeUnit::Microsecond, _) => Cell::I(
                                c.as_primitive::<TimestampMicrosecondType>()
                                    .value(row)
                                    .into(),
                            ),
                            DataType::Timestamp(TimeUnit::Nanosecond, _) => Cell::I(
                                c.as_primitive::<TimestampNanosecondType>()
                                    .value(row)
                                    .into(),
                            ),
                            DataType::Utf8 => Cell::S(c.as_string::<i32>().value(row).to_string()),
                            DataType::Utf8View => {
                                Cell::S(c.as_string_view().value(row).to_string())
                            }
                            DataType::LargeUtf8 => {
                                Cell::S(c.as_string::<i64>().value(row).to_string())
                            }
                            DataType::Boolean => Cell::I(c.as_boolean().value(row).into()),
                            other => Cell::S(format!("<{other}>")),
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Run `sql` and return its rows as cells.
pub async fn query(engine: &QueryEngine, sql: &str) -> Vec<Vec<Cell>> {
    let r = engine
        .execute(sql, &QueryContext::default())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = r.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&batches)
}

/// The error `sql` fails with (at planning or while streaming).
pub async fn query_err(engine: &QueryEngine, sql: &str) -> crate::Error {
    match engine.execute(sql, &QueryContext::default()).await {
        Err(e) => e,
        Ok(r) => match r.collect().await {
            Err(e) => e,
            Ok(_) => panic!("{sql}: expected an error"),
        },
    }
}

/// SQL timestamp literal for microseconds since the epoch.
pub fn ts_lit(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).expect("valid time");
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// An object path's size in the store.
pub async fn object_size(store: &Arc<dyn ObjectStore>, path: &str) -> u64 {
    store.head(&Path::from(path)).await.expect("head").size
}
