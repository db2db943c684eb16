//! What one query cost, counted while it runs: object-store requests and bytes, bytes served
//! by each cache tier, segments and row groups pruned versus read, rows and bytes scanned,
//! and where the time went (waiting for admission, planning, executing).
//!
//! Each query gets one [`QueryCost`]. The engine puts it in the session's config (so table
//! scans count the segments they prune) and gives the query's object store a
//! [`CachedStore`](crate::CachedStore) that reports into it; when the result stream ends,
//! the row-group and scan figures are read from the executed plan's metrics. A
//! [`CostReport`] is the finished, serializable form: the Flight response's final metadata,
//! `system.queries`, and the CLI's `\timing` line show it.

mod metered;

pub use metered::{MeteredStore, metering};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The store one query reads segments and WAL entries through (counting into its
/// [`QueryCost`]); kept in the session's config next to the cost.
#[derive(Debug, Clone)]
pub struct ScanStore(pub Arc<dyn object_store::ObjectStore>);

/// Counters of one query, shared by everything that works for it.
#[derive(Debug, Default)]
pub struct QueryCost {
    get_requests: AtomicU64,
    get_bytes: AtomicU64,
    list_requests: AtomicU64,
    head_requests: AtomicU64,
    memory_hits: AtomicU64,
    memory_bytes: AtomicU64,
    disk_hits: AtomicU64,
    disk_bytes: AtomicU64,
    segments_total: AtomicU64,
    segments_pruned: AtomicU64,
    wal_entries_read: AtomicU64,
    wal_cache_hits: AtomicU64,
    queued_us: AtomicU64,
    planning_us: AtomicU64,
    execution_us: AtomicU64,
    /// Figures read from the executed plan once it finished.
    plan: Mutex<PlanFigures>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PlanFigures {
    row_groups_total: u64,
    row_groups_pruned: u64,
    files_pruned: u64,
    rows_scanned: u64,
    bytes_scanned: u64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl QueryCost {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// One GET that reached the object store, and the bytes it returned.
    pub fn bucket_get(&self, bytes: u64) {
        add(&self.get_requests, 1);
        add(&self.get_bytes, bytes);
    }

    pub fn bucket_list(&self) {
        add(&self.list_requests, 1);
    }

    pub fn bucket_head(&self) {
        add(&self.head_requests, 1);
    }

    /// A cache hit of `bytes` in the memory tier (`disk == false`) or the SSD tier.
    pub fn cache_hit(&self, disk: bool, bytes: u64) {
        if disk {
            add(&self.disk_hits, 1);
            add(&self.disk_bytes, bytes);
        } else {
            add(&self.memory_hits, 1);
            add(&self.memory_bytes, bytes);
        }
    }

    /// A table scan kept `read` of `total` segments after pruning by time, shard and
    /// statistics, and reads `wal_entries` unflushed WAL entries.
    pub(crate) fn scanned(&self, total: usize, read: usize, wal_entries: usize) {
        add(&self.segments_total, total as u64);
        add(&self.segments_pruned, total.saturating_sub(read) as u64);
        add(&self.wal_entries_read, wal_entries as u64);
    }

    /// `n` unflushed WAL entries were decoded from the node's cache (no GET).
    pub(crate) fn wal_cached(&self, n: usize) {
        add(&self.wal_cache_hits, n as u64);
    }

    pub(crate) fn queued(&self, d: Duration) {
        add(&self.queued_us, us(d));
    }

    pub(crate) fn planned(&self, d: Duration) {
        add(&self.planning_us, us(d));
    }

    pub(crate) fn executed(&self, d: Duration) {
        add(&self.execution_us, us(d));
    }

    /// Reads the scan figures of the finished `plan` (row groups, rows, bytes, files pruned
    /// by DataFusion's dynamic filters).
    pub(crate) fn read_plan(&self, plan: &Arc<dyn ExecutionPlan>) {
        let mut f = PlanFigures::default();
        collect(plan, &mut f);
        *self.plan.lock() = f;
    }

    /// The figures so far (final once the result stream has ended).
    pub fn report(&self) -> CostReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ms = |c: &AtomicU64| get(c) as f64 / 1000.0;
        let plan = *self.plan.lock();
        CostReport {
            get_requests: get(&self.get_requests),
            get_bytes: get(&self.get_bytes),
            list_requests: get(&self.list_requests),
            head_requests: get(&self.head_requests),
            memory_hits: get(&self.memory_hits),
            memory_bytes: get(&self.memory_bytes),
            disk_hits: get(&self.disk_hits),
            disk_bytes: get(&self.disk_bytes),
            segments_total: get(&self.segments_total),
            segments_pruned: (get(&self.segments_pruned) + plan.files_pruned)
                .min(get(&self.segments_total)),
            row_groups_total: plan.row_groups_total,
            row_groups_pruned: plan.row_groups_pruned.min(plan.row_groups_total),
            wal_entries_read: get(&self.wal_entries_read),
            wal_cache_hits: get(&self.wal_cache_hits),
            rows_scanned: plan.rows_scanned,
            bytes_scanned: plan.bytes_scanned,
            queued_ms: ms(&self.queued_us),
            planning_ms: ms(&self.planning_us),
            execution_ms: ms(&self.execution_us),
        }
    }
}

/// `EXPLAIN ANALYZE`'s answer with one more row: `Query cost`, the [`CostReport::summary`]
/// of the query as it stands when the analysed plan has run (bucket requests, cache tiers,
/// pruning, rows scanned, time).
pub(crate) fn with_cost_row(
    stream: datafusion::execution::SendableRecordBatchStream,
    cost: Arc<QueryCost>,
    plan: Arc<dyn ExecutionPlan>,
) -> datafusion::execution::SendableRecordBatchStream {
    use futures::StreamExt;
    let schema = stream.schema();
    let started = std::time::Instant::now();
    let rows = stream.map(move |batch| {
        let batch = batch?;
        cost.read_plan(&plan);
        let mut report = cost.report();
        report.execution_ms = started.elapsed().as_secs_f64() * 1e3;
        append_row(&batch, &["Query cost", &report.summary()])
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows))
}

/// `batch` (all string columns) with one more row of `values`.
fn append_row(
    batch: &arrow::array::RecordBatch,
    values: &[&str],
) -> datafusion::error::Result<arrow::array::RecordBatch> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        let extra: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            values.get(i).copied().unwrap_or(""),
        ]));
        let extra = arrow::compute::cast(&extra, field.data_type())?;
        columns.push(arrow::compute::concat(&[
            batch.column(i).as_ref(),
            extra.as_ref(),
        ])?);
    }
    Ok(arrow::array::RecordBatch::try_new(schema, columns)?)
}

/// Sums the Parquet scan metrics of every data source in `plan`.
fn collect(plan: &Arc<dyn ExecutionPlan>, f: &mut PlanFigures) {
    if plan.name() == "DataSourceExec"
        && let Some(metrics) = plan.metrics()
    {
        let mut output_rows = 0u64;
        let mut pushdown_pruned = 0u64;
        for m in metrics.iter() {
            match (m.value().name(), m.value()) {
                (
                    "row_groups_pruned_statistics",
                    MetricValue::PruningMetrics {
                        pruning_metrics, ..
                    },
                ) => {
                    f.row_groups_total +=
                        (pruning_metrics.pruned() + pruning_metrics.matched()) as u64;
                    f.row_groups_pruned += pruning_metrics.pruned() as u64;
                }
                (
                    "row_groups_pruned_bloom_filter" | "limit_pruned_row_groups",
                    MetricValue::PruningMetrics {
                        pruning_metrics, ..
                    },
                ) => f.row_groups_pruned += pruning_metrics.pruned() as u64,
                (
                    "files_ranges_pruned_statistics",
                    MetricValue::PruningMetrics {
                        pruning_metrics, ..
                    },
                ) => f.files_pruned += pruning_metrics.pruned() as u64,
                ("row_groups_pruned_dynamic_filter", v) => {
                    f.row_groups_pruned += v.as_usize() as u64
                }
                ("bytes_scanned", v) => f.bytes_scanned += v.as_usize() as u64,
                ("pushdown_rows_pruned", v) => pushdown_pruned += v.as_usize() as u64,
                ("output_rows", v) => output_rows += v.as_usize() as u64,
                _ => {}
            }
        }
        // Rows decoded: those the scan passed on plus those its pushed-down filter dropped.
        f.rows_scanned += output_rows + pushdown_pruned;
    }
    for child in plan.children() {
        collect(child, f);
    }
}

/// What one query cost; the JSON form clients see (`strata_cost` in the final Flight
/// metadata of a result) and the columns of `system.queries`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// GET requests that reached the object store, and the bytes they returned.
    pub get_requests: u64,
    pub get_bytes: u64,
    /// LIST and HEAD requests that reached the object store.
    pub list_requests: u64,
    pub head_requests: u64,
    /// Cache blocks served from memory, and their bytes.
    pub memory_hits: u64,
    pub memory_bytes: u64,
    /// Cache blocks served from the SSD tier, and their bytes.
    pub disk_hits: u64,
    pub disk_bytes: u64,
    /// Segments of the scanned tables, and how many were skipped (by time, shard, file
    /// statistics, or a dynamic filter) without being read.
    pub segments_total: u64,
    pub segments_pruned: u64,
    /// Row groups of the segments opened, and how many were skipped (statistics, bloom
    /// filters, dynamic filters, limits).
    pub row_groups_total: u64,
    pub row_groups_pruned: u64,
    /// Unflushed WAL batches read.
    pub wal_entries_read: u64,
    /// WAL entries decoded from the node's WAL cache (no GET).
    #[serde(default)]
    pub wal_cache_hits: u64,
    /// Rows decoded from segments, and the Parquet bytes read for them.
    pub rows_scanned: u64,
    pub bytes_scanned: u64,
    /// Time waiting for a query slot, planning, and executing (to the last row).
    pub queued_ms: f64,
    pub planning_ms: f64,
    pub execution_ms: f64,
}

impl CostReport {
    /// One line for people: `bucket: 3 GET 1.2 MB, 1 LIST, 0 HEAD · cache: … · pruned: … ·
    /// scanned: … · time: …` (the CLI's `\timing` line, `EXPLAIN ANALYZE`'s last row).
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!(
                "bucket: {} GET {}, {} LIST, {} HEAD",
                self.get_requests,
                human_bytes(self.get_bytes),
                self.list_requests,
                self.head_requests
            ),
            format!(
                "cache: memory {} ({} hits), SSD {} ({} hits)",
                human_bytes(self.memory_bytes),
                self.memory_hits,
                human_bytes(self.disk_bytes),
                self.disk_hits
            ),
            format!(
                "pruned: {} of {} segments, {} of {} row groups",
                self.segments_pruned,
                self.segments_total,
                self.row_groups_pruned,
                self.row_groups_total
            ),
            format!(
                "scanned: {} row{} ({})",
                self.rows_scanned,
                if self.rows_scanned == 1 { "" } else { "s" },
                human_bytes(self.bytes_scanned)
            ),
            format!(
                "time: queued {:.1} ms, planning {:.1} ms, executing {:.1} ms",
                self.queued_ms, self.planning_ms, self.execution_ms
            ),
        ];
        if self.wal_entries_read > 0 || self.wal_cache_hits > 0 {
            parts.insert(
                3,
                format!(
                    "WAL entries: {} read ({} decoded from the cache)",
                    self.wal_entries_read, self.wal_cache_hits
                ),
            );
        }
        parts.join(" · ")
    }
}

/// `512 B`, `1.5 KB`, `12.3 MB`, `1.2 GB` (powers of 1000).
pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    if f < 1e3 {
        format!("{n} B")
    } else if f < 1e6 {
        format!("{:.1} KB", f / 1e3)
    } else if f < 1e9 {
        format!("{:.1} MB", f / 1e6)
    } else {
        format!("{:.1} GB", f / 1e9)
    }
}

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryStatus {
    Ok,
    Error,
    Timeout,
    Cancelled,
}

impl QueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One finished query, as `system.queries` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRecord {
    pub query_id: u64,
    pub tenant: Option<String>,
    /// The statement, cut at [`MAX_LOGGED_SQL`] bytes.
    pub sql: String,
    pub started_at_us: i64,
    pub status: QueryStatus,
    pub error: Option<String>,
    pub result_rows: u64,
    pub cost: CostReport,
}

/// Longest statement text kept per query.
pub const MAX_LOGGED_SQL: usize = 4096;

/// The most recent queries of one engine (one tenant), newest last; bounded.
#[derive(Debug)]
pub struct QueryLog {
    entries: Mutex<std::collections::VecDeque<QueryRecord>>,
    capacity: usize,
    next_id: AtomicU64,
}

impl QueryLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(std::collections::VecDeque::new()),
            capacity: capacity.max(1),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn record(&self, mut r: QueryRecord) {
        if r.sql.len() > MAX_LOGGED_SQL {
            let mut cut = MAX_LOGGED_SQL;
            while !r.sql.is_char_boundary(cut) {
                cut -= 1;
            }
            r.sql.truncate(cut);
        }
        let mut e = self.entries.lock();
        while e.len() >= self.capacity {
            e.pop_front();
        }
        e.push_back(r);
    }

    pub fn snapshot(&self) -> Vec<QueryRecord> {
        self.entries.lock().iter().cloned().collect()
    }
}

/// A `system.queries` column of cost figures: its name and how to read it.
type Column<T> = (&'static str, fn(&CostReport) -> T);

/// `system.queries` rows from `records`.
pub(crate) fn queries_batch(
    records: &[QueryRecord],
) -> datafusion::error::Result<arrow::array::RecordBatch> {
    use arrow::array::{
        ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray, UInt64Array,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let u = |f: &dyn Fn(&QueryRecord) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(records.iter().map(f)))
    };
    let ms = |f: &dyn Fn(&QueryRecord) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(records.iter().map(f)))
    };
    let mut fields = vec![
        Field::new("query_id", DataType::UInt64, false),
        Field::new(
            "started_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("sql", DataType::Utf8, false),
        Field::new("result_rows", DataType::UInt64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        u(&|r| r.query_id),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.started_at_us))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter(
            records.iter().map(|r| r.tenant.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.status.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            records.iter().map(|r| r.error.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.sql.as_str()),
        )),
        u(&|r| r.result_rows),
    ];
    let counters: [Column<u64>; 16] = [
        ("get_requests", |c| c.get_requests),
        ("get_bytes", |c| c.get_bytes),
        ("list_requests", |c| c.list_requests),
        ("head_requests", |c| c.head_requests),
        ("memory_hits", |c| c.memory_hits),
        ("memory_bytes", |c| c.memory_bytes),
        ("disk_hits", |c| c.disk_hits),
        ("disk_bytes", |c| c.disk_bytes),
        ("segments_total", |c| c.segments_total),
        ("segments_pruned", |c| c.segments_pruned),
        ("row_groups_total", |c| c.row_groups_total),
        ("row_groups_pruned", |c| c.row_groups_pruned),
        ("wal_entries_read", |c| c.wal_entries_read),
        ("wal_cache_hits", |c| c.wal_cache_hits),
        ("rows_scanned", |c| c.rows_scanned),
        ("bytes_scanned", |c| c.bytes_scanned),
    ];
    for (name, f) in counters {
        fields.push(Field::new(name, DataType::UInt64, false));
        columns.push(u(&|r| f(&r.cost)));
    }
    let times: [Column<f64>; 3] = [
        ("queued_ms", |c| c.queued_ms),
        ("planning_ms", |c| c.planning_ms),
        ("execution_ms", |c| c.execution_ms),
    ];
    for (name, f) in times {
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(ms(&|r| f(&r.cost)));
    }
    Ok(arrow::array::RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
