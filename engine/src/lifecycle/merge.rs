//! Executing one compaction run: stream the input segments, bring them to the current
//! schema, drop deleted and expired rows, k-way merge them by (time, offset), and write
//! outputs of about the target size, computing their manifest statistics on the way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array, UInt64Array,
};
use arrow::compute::SortOptions;
use arrow::compute::kernels::boolean::{and, and_not, not, or};
use arrow::compute::kernels::cmp::lt;
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::DFSchema;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, UnboundedMemoryPool};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet};
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt, future, stream};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use strata_ingest::schema::{upgrade_stored, with_offset_column};
use strata_storage::segment::{SegmentOptions, min_max_json, to_micros, writer_properties};
use strata_storage::{ColumnStats, OFFSET_COLUMN, SegmentMeta, TableManifest, paths};

use super::plan::{Run, rule_pending, to_unit};
use super::read::SegmentReader;
use super::upload::Upload;
use super::{Error, LifecycleOptions, Result};

/// Name of the per-row shard column delete predicates may use (as on the query path).
const SHARD_COLUMN: &str = "_shard";
/// Rows per merged batch handed to the writer.
const OUTPUT_BATCH_ROWS: usize = 8192;
/// Bounds on the rows decoded per input batch (the budget is split between inputs).
const MIN_INPUT_BATCH_ROWS: usize = 64;
const MAX_INPUT_BATCH_ROWS: usize = 8192;
/// Input footers fetched concurrently.
const OPEN_CONCURRENCY: usize = 8;

/// What a run read, dropped and wrote. Outputs are uploaded but not committed.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub(crate) outputs: Vec<SegmentMeta>,
    pub(crate) rows_in: u64,
    pub(crate) rows_deleted: u64,
    pub(crate) rows_expired: u64,
    pub(crate) bytes_written: u64,
}

/// What a run needs besides its inputs.
pub(crate) struct MergeEnv<'a> {
    pub(crate) store: &'a Arc<dyn ObjectStore>,
    /// The manifest the run was planned on: table definition and delete rules.
    pub(crate) manifest: &'a TableManifest,
    pub(crate) opts: &'a LifecycleOptions,
    /// Retention cutoff in microseconds (see [`super::plan::retention_cutoff`]).
    pub(crate) cutoff: Option<i64>,
    pub(crate) sql: &'a SessionContext,
    pub(crate) now_ms: i64,
}

#[derive(Debug, Default)]
struct Counts {
    rows_in: AtomicU64,
    deleted: AtomicU64,
    expired: AtomicU64,
}

/// Merge `run` into new segments. On error, an output in progress is aborted; outputs
/// already completed stay behind as orphans for GC.
///
/// Cancel safety: dropping the future leaves at most orphans, never a partial commit.
pub(crate) async fn merge_run(env: &MergeEnv<'_>, run: &Run) -> Result<Merged> {
    let def = &env.manifest.table;
    let target = with_offset_column(&def.schema);
    let filter = Arc::new(RowFilter::new(env, run, &target)?);
    let counts = Arc::new(Counts::default());
    let n = run.inputs.len().max(1);
    let batch_rows =
        (env.opts.merge_rows_budget / n).clamp(MIN_INPUT_BATCH_ROWS, MAX_INPUT_BATCH_ROWS);
    let opening: Vec<_> = run
        .inputs
        .iter()
        .map(|seg| {
            open_input(
                Arc::clone(env.store),
                seg.path.clone(),
                seg.bytes,
                batch_rows,
            )
        })
        .collect();
    let readers: Vec<ParquetRecordBatchStream<SegmentReader>> = stream::iter(opening)
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await?;
    let streams: Vec<SendableRecordBatchStream> = readers
        .into_iter()
        .map(|r| {
            prepare(
                r,
                Arc::clone(&target),
                Arc::clone(&filter),
                Arc::clone(&counts),
            )
        })
        .collect();
    let ordering = sort_order(env.manifest, &target)?;
    let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
    let mut merged = StreamingMergeBuilder::new()
        .with_streams(streams)
        .with_schema(Arc::clone(&target))
        .with_expressions(&ordering)
        .with_metrics(BaselineMetrics::new(&ExecutionPlanMetricsSet::new(), 0))
        .with_batch_size(OUTPUT_BATCH_ROWS)
        .with_reservation(MemoryConsumer::new("strata-compaction").register(&pool))
        .with_round_robin_tie_breaker(false)
        .build()?;

    let rows_hint = run.inputs.iter().map(|s| s.rows).sum::<u64>() as usize;
    let mut out = Merged::default();
    let mut current: Option<Output> = None;
    let written = async {
        while let Some(batch) = merged.try_next().await? {
            if batch.num_rows() == 0 {
                continue;
            }
            let o = match current.as_mut() {
                Some(o) => o,
                None => current.insert(Output::start(env, run, &target, &batch, rows_hint)?),
            };
            o.write(&batch).await?;
            if o.size() >= env.opts.target_bytes
                && let Some(o) = current.take()
            {
                let seg = o.finish(env, run).await?;
                out.bytes_written += seg.bytes;
                out.outputs.push(seg);
            }
            // Encoding is CPU work on the runtime: let other tasks in between batches.
            tokio::task::yield_now().await;
        }
        if let Some(o) = current.take() {
            let seg = o.finish(env, run).await?;
            out.bytes_written += seg.bytes;
            out.outputs.push(seg);
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = written {
        if let Some(o) = current.take() {
            o.abort().await;
        }
        return Err(e);
    }
    out.rows_in = counts.rows_in.load(Ordering::Relaxed);
    out.rows_deleted = counts.deleted.load(Ordering::Relaxed);
    out.rows_expired = counts.expired.load(Ordering::Relaxed);
    Ok(out)
}

async fn open_input(
    store: Arc<dyn ObjectStore>,
    path: String,
    size: u64,
    batch_rows: usize,
) -> Result<ParquetRecordBatchStream<SegmentReader>> {
    let reader = SegmentReader::new(store, Path::from(path), size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    Ok(builder.with_batch_size(batch_rows).build()?)
}

fn external<E: std::error::Error + Send + Sync + 'static>(e: E) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One input as a merge stream: upgraded to the current schema, filtered, without empty batches.
fn prepare(
    reader: ParquetRecordBatchStream<SegmentReader>,
    target: SchemaRef,
    filter: Arc<RowFilter>,
    counts: Arc<Counts>,
) -> SendableRecordBatchStream {
    let schema = Arc::clone(&target);
    let s = reader
        .map_err(external)
        .and_then(move |b| {
            let r = upgrade_stored(&b, &target)
                .map_err(external)
                .and_then(|b| filter.apply(b, &counts).map_err(external));
            future::ready(r)
        })
        .try_filter(|b| future::ready(b.num_rows() > 0));
    Box::pin(RecordBatchStreamAdapter::new(schema, s))
}

/// Segments are sorted by time then offset (see `strata_storage::segment::sort_by_time`);
/// tables without a time column by offset.
fn sort_order(m: &TableManifest, schema: &SchemaRef) -> Result<LexOrdering> {
    let mut exprs = Vec::new();
    let mut key = |name: &str| -> Result<()> {
        let idx = schema.index_of(name)?;
        exprs.push(PhysicalSortExpr::new(
            Arc::new(Column::new(name, idx)),
            SortOptions::default(),
        ));
        Ok(())
    };
    if let Some(tc) = &m.table.time_column {
        key(tc)?;
    }
    key(OFFSET_COLUMN)?;
    LexOrdering::new(exprs).ok_or_else(|| Error::Internal("empty merge ordering".into()))
}

/// Drops the rows of a batch that retention or delete rules hide.
struct RowFilter {
    shard: u32,
    /// Predicate over `eval_schema` and the rule's bound on `_offset`.
    rules: Vec<(Arc<dyn PhysicalExpr>, u64)>,
    eval_schema: SchemaRef,
    /// (time column index, cutoff in the column's unit).
    retention: Option<(usize, i64)>,
    offset_idx: usize,
}

impl RowFilter {
    fn new(env: &MergeEnv<'_>, run: &Run, target: &SchemaRef) -> Result<Self> {
        let def = &env.manifest.table;
        let mut fields: Vec<Arc<Field>> = target.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(SHARD_COLUMN, DataType::UInt32, false)));
        let eval_schema = Arc::new(Schema::new(fields));
        let mut rules = Vec::new();
        for rule in &env.manifest.deletes {
            let Some(below) = rule
                .below_offsets
                .get(&run.shard)
                .copied()
                .filter(|b| *b > 0)
            else {
                continue;
            };
            if !run.inputs.iter().any(|s| rule_pending(rule, s)) {
                continue;
            }
            let rule_error = |detail: String| Error::DeleteRule {
                id: rule.id,
                predicate: rule.predicate.clone(),
                detail,
            };
            let df_schema = DFSchema::try_from(eval_schema.as_ref().clone())?;
            let expr = env
                .sql
                .parse_sql_expr(&rule.predicate, &df_schema)
                .map_err(|e| rule_error(e.to_string()))?;
            let phys = env
                .sql
                .create_physical_expr(expr, &df_schema)
                .map_err(|e| rule_error(e.to_string()))?;
            let ty = phys
                .data_type(&eval_schema)
                .map_err(|e| rule_error(e.to_string()))?;
            if ty != DataType::Boolean {
                return Err(rule_error(format!("it is {ty}, not a boolean")));
            }
            rules.push((phys, below));
        }
        let retention = match (env.cutoff, &def.time_column, def.time_unit()) {
            (Some(c), Some(tc), Some(unit)) => Some((target.index_of(tc)?, to_unit(c, unit))),
            _ => None,
        };
        Ok(Self {
            shard: run.shard,
            rules,
            eval_schema,
            retention,
            offset_idx: target.index_of(OFFSET_COLUMN)?,
        })
    }

    fn apply(&self, batch: RecordBatch, counts: &Counts) -> Result<RecordBatch> {
        let n = batch.num_rows();
        counts.rows_in.fetch_add(n as u64, Ordering::Relaxed);
        let mut dropped: Option<BooleanArray> = None;
        if let Some((idx, cutoff)) = self.retention {
            let ts = arrow::compute::cast(batch.column(idx), &DataType::Int64)?;
            let expired = nulls_false(lt(&ts, &Int64Array::new_scalar(cutoff))?);
            counts
                .expired
                .fetch_add(expired.true_count() as u64, Ordering::Relaxed);
            dropped = Some(expired);
        }
        if !self.rules.is_empty() {
            let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
            cols.push(Arc::new(UInt32Array::from_value(self.shard, n)));
            let eval = RecordBatch::try_new(Arc::clone(&self.eval_schema), cols)?;
            let offsets = batch.column(self.offset_idx).as_primitive::<UInt64Type>();
            for (expr, below) in &self.rules {
                let matched = expr.evaluate(&eval)?.into_array(n)?;
                let matched = matched.as_boolean_opt().ok_or_else(|| {
                    Error::Internal("a delete predicate did not give booleans".into())
                })?;
                let deleted = and(
                    &nulls_false(matched.clone()),
                    &lt(offsets, &UInt64Array::new_scalar(*below))?,
                )?;
                let newly = match &dropped {
                    Some(d) => and_not(&deleted, d)?,
                    None => deleted.clone(),
                };
                counts
                    .deleted
                    .fetch_add(newly.true_count() as u64, Ordering::Relaxed);
                dropped = Some(match dropped {
                    Some(d) => or(&d, &deleted)?,
                    None => deleted,
                });
            }
        }
        match dropped {
            Some(d) if d.true_count() > 0 => Ok(filter_record_batch(&batch, &not(&d)?)?),
            _ => Ok(batch),
        }
    }
}

/// `b` with nulls read as false.
fn nulls_false(b: BooleanArray) -> BooleanArray {
    match b.nulls() {
        Some(_) => prep_null_mask_filter(&b),
        None => b,
    }
}

/// One output segment being written.
struct Output {
    path: Path,
    writer: AsyncArrowWriter<Upload>,
    stats: StatsBuilder,
}

impl Output {
    fn start(
        env: &MergeEnv<'_>,
        run: &Run,
        target: &SchemaRef,
        first: &RecordBatch,
        rows_hint: usize,
    ) -> Result<Self> {
        let def = &env.manifest.table;
        let opts = SegmentOptions {
            row_group_rows: env.opts.row_group_rows,
            zstd_level: env.opts.zstd_level,
            // Measured on the first batch of the run's merged output.
            extra_bloom_columns: strata_storage::segment::measured_bloom_columns(def, first),
        };
        let props = writer_properties(def, &opts, rows_hint)?;
        let stats = StatsBuilder::new(env.manifest);
        let first_ts = stats.batch_min_ts(first);
        let path = paths::new_segment(&def.name, run.shard, first_ts);
        let upload = Upload::new(Arc::clone(env.store), path.clone(), env.opts.part_bytes);
        let writer = AsyncArrowWriter::try_new(upload, Arc::clone(target), Some(props))?;
        Ok(Self {
            path,
            writer,
            stats,
        })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.stats.update(batch)?;
        self.writer.write(batch).await?;
        Ok(())
    }

    /// Bytes written plus the estimated size of the row group in progress.
    fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    async fn finish(mut self, env: &MergeEnv<'_>, run: &Run) -> Result<SegmentMeta> {
        self.writer.finish().await?;
        let bytes = self.writer.into_inner().written();
        let s = self.stats;
        let rules_max = env.manifest.deletes.iter().map(|r| r.id).max().unwrap_or(0);
        Ok(SegmentMeta {
            path: self.path.to_string(),
            shard: run.shard,
            rows: s.rows,
            bytes,
            min_ts: s.ts(|c| c.min.as_ref()),
            max_ts: s.ts(|c| c.max.as_ref()),
            min_offset: s.min_offset.unwrap_or(0),
            max_offset: s.max_offset.unwrap_or(0),
            level: run.inputs.iter().map(|i| i.level).max().unwrap_or(0) + 1,
            // Every rule of the planning manifest was applied (or could not match); rules
            // dropped before it were applied to all inputs already.
            deletes_applied: run
                .inputs
                .iter()
                .map(|i| i.deletes_applied)
                .max()
                .unwrap_or(0)
                .max(rules_max),
            created_at_ms: env.now_ms,
            columns: s.columns,
        })
    }

    async fn abort(self) {
        self.writer.into_inner().abort().await;
    }
}

/// Manifest statistics of an output, accumulated batch by batch.
struct StatsBuilder {
    time: Option<(String, arrow::datatypes::TimeUnit)>,
    rows: u64,
    min_offset: Option<u64>,
    max_offset: Option<u64>,
    columns: BTreeMap<String, ColumnStats>,
}

impl StatsBuilder {
    fn new(m: &TableManifest) -> Self {
        Self {
            time: m.table.time_column.clone().zip(m.table.time_unit()),
            rows: 0,
            min_offset: None,
            max_offset: None,
            columns: BTreeMap::new(),
        }
    }

    fn batch_min_ts(&self, batch: &RecordBatch) -> Option<i64> {
        let (tc, unit) = self.time.as_ref()?;
        let (min, _) = min_max_json(batch.column_by_name(tc)?);
        min?.as_i64().map(|v| to_micros(v, *unit))
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
            if f.name() == OFFSET_COLUMN {
                let off = a
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| Error::Internal(format!("{OFFSET_COLUMN} must be UInt64")))?;
                if let Some(v) = arrow::compute::min(off) {
                    self.min_offset = Some(self.min_offset.map_or(v, |m| m.min(v)));
                }
                if let Some(v) = arrow::compute::max(off) {
                    self.max_offset = Some(self.max_offset.map_or(v, |m| m.max(v)));
                }
                continue;
            }
            let (min, max) = min_max_json(a);
            let c = self.columns.entry(f.name().clone()).or_default();
            c.nulls += a.null_count() as u64;
            merge_extreme(&mut c.min, min, std::cmp::Ordering::Less);
            merge_extreme(&mut c.max, max, std::cmp::Ordering::Greater);
        }
        Ok(())
    }

    fn ts(&self, pick: impl Fn(&ColumnStats) -> Option<&serde_json::Value>) -> Option<i64> {
        let (tc, unit) = self.time.as_ref()?;
        let v = pick(self.columns.get(tc)?)?.as_i64()?;
        Some(to_micros(v, *unit))
    }
}

/// Keep in `acc` whichever of `acc` and `v` compares as `want` (Less: min, Greater: max).
fn merge_extreme(
    acc: &mut Option<serde_json::Value>,
    v: Option<serde_json::Value>,
    want: std::cmp::Ordering,
) {
    let Some(v) = v else { return };
    match acc {
        None => *acc = Some(v),
        Some(a) => {
            if compare_json(&v, a) == Some(want) {
                *acc = Some(v);
            }
        }
    }
}

fn compare_json(a: &serde_json::Value, b: &serde_json::Value) -> Option<std::cmp::Ordering> {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_extremes_merge_by_type() {
        let mut min = None;
        for v in [json!(5), json!(-3), json!(7)] {
            merge_extreme(&mut min, Some(v), std::cmp::Ordering::Less);
        }
        assert_eq!(min, Some(json!(-3)));
        let mut max = Some(json!("b"));
        merge_extreme(&mut max, Some(json!("a")), std::cmp::Ordering::Greater);
        merge_extreme(&mut max, Some(json!("c")), std::cmp::Ordering::Greater);
        assert_eq!(max, Some(json!("c")));
        let mut big = Some(json!(u64::MAX));
        merge_extreme(&mut big, Some(json!(1)), std::cmp::Ordering::Greater);
        assert_eq!(big, Some(json!(u64::MAX)));
    }
}
