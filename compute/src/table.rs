//! [`StrataTable`]: the DataFusion [`TableProvider`] of one table at one manifest version.
//!
//! A scan is the union of
//! - the **segments** that survive [pruning](crate::pruning) (time range, shard key, column
//!   statistics), read by DataFusion's Parquet source with filter pushdown, page index and
//!   bloom filters, per-file statistics from the manifest and a declared time ordering;
//! - the **unflushed WAL rows** of the surviving shards, as an in-memory source.
//!
//! Delete rules and retention are applied inside the scan as one filter over the internal
//! columns `_offset` and `__strata_shard`, which are then projected away: a rule hides rows that
//! match its predicate and have an offset below its per-shard bound.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, case, lit};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use object_store::ObjectStore;
use strata_storage::{Catalog, DeleteRule, OFFSET_COLUMN, SegmentMeta, TableManifest};

use crate::error::Error;
use crate::pruning::ScanPruning;
use crate::wal_source::{self, SHARD_COLUMN, WalCache, WalListings};

/// Bytes read from the end of a segment in the first request (footer + page index).
const METADATA_SIZE_HINT: usize = 64 << 10;

/// What every table of one query shares.
#[derive(Debug, Clone)]
pub(crate) struct ScanEnv {
    /// The cached store (also registered in the runtime under `store_url`).
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) store_url: ObjectStoreUrl,
    pub(crate) catalog: Catalog,
    /// Decoded WAL entries, shared by all queries.
    pub(crate) wal_cache: WalCache,
    /// WAL listings reused for the manifest TTL, shared by all queries of the engine.
    pub(crate) wal_listings: Arc<WalListings>,
    /// The engine's path counters.
    pub(crate) paths: Arc<crate::paths::PathCounts>,
    /// "Now" for retention, fixed when the query started.
    pub(crate) now_micros: i64,
}

/// One table at one manifest version.
#[derive(Debug)]
pub(crate) struct StrataTable {
    manifest: Arc<TableManifest>,
    /// What SQL sees: the table's columns, strings as views ([`crate::views`]).
    schema: SchemaRef,
    /// Columns stored in segments: the table schema, then `_offset`.
    file_schema: SchemaRef,
    /// `file_schema`, then [`SHARD_COLUMN`] (a partition value per segment).
    internal: SchemaRef,
    env: ScanEnv,
}

impl StrataTable {
    pub(crate) fn new(manifest: Arc<TableManifest>, env: ScanEnv) -> Self {
        let schema = crate::views::view_schema(&manifest.table.schema_ref());
        let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(OFFSET_COLUMN, DataType::UInt64, false)));
        let file_schema = Arc::new(Schema::new(fields.clone()));
        fields.push(shard_field());
        let internal = Arc::new(Schema::new(fields));
        Self {
            manifest,
            schema,
            file_schema,
            internal,
            env,
        }
    }

    /// The filter that hides deleted and expired rows, over the internal schema.
    /// `segments`: the segments the scan reads; `wal_shards`: shards with unflushed rows
    /// in the scan. A delete rule is applied only if some of those rows can be below its
    /// bound and it was not already applied physically (by compaction).
    fn keep_filter(
        &self,
        state: &dyn Session,
        segments: &[&SegmentMeta],
        wal_shards: &BTreeSet<u32>,
    ) -> DFResult<Option<Expr>> {
        let def = &self.manifest.table;
        let mut parts = Vec::new();
        if let Some(cutoff) = self.retention_cutoff()
            && let Some(tc) = &def.time_column
            && let Ok(field) = self.schema.field_with_name(tc)
            && let DataType::Timestamp(unit, tz) = field.data_type()
        {
            parts.push(column(tc).gt_eq(lit(timestamp_scalar(cutoff, *unit, tz.clone()))));
        }
        let rules: Vec<_> = self
            .manifest
            .deletes
            .iter()
            .filter(|r| self.rule_applies(r, segments, wal_shards))
            .collect();
        if !rules.is_empty() {
            let state = state
                .as_any()
                .downcast_ref::<SessionState>()
                .ok_or_else(|| DataFusionError::Internal("scan without a SessionState".into()))?;
            let df_schema = DFSchema::try_from(self.internal.as_ref().clone())?;
            for rule in rules {
                let predicate = state
                    .create_logical_expr(&rule.predicate, &df_schema)
                    .map_err(|e| {
                        Error::Internal(format!(
                            "delete rule {} of table `{}` (`{}`) cannot be planned: {e}",
                            rule.id, def.name, rule.predicate
                        ))
                        .into_datafusion()
                    })?;
                let mut bound = case(column(SHARD_COLUMN));
                for (shard, below) in &rule.below_offsets {
                    bound.when(lit(*shard), lit(*below));
                }
                let bound = bound.otherwise(lit(0u64))?;
                parts.push(
                    predicate
                        .is_not_true()
                        .or(column(OFFSET_COLUMN).gt_eq(bound)),
                );
            }
        }
        Ok(conjunction(parts))
    }

    fn rule_applies(
        &self,
        rule: &DeleteRule,
        segments: &[&SegmentMeta],
        wal_shards: &BTreeSet<u32>,
    ) -> bool {
        let below = |shard: u32| rule.below_offsets.get(&shard).copied().unwrap_or(0);
        segments
            .iter()
            .any(|s| s.deletes_applied < rule.id && s.min_offset < below(s.shard))
            || wal_shards.iter().any(|s| {
                // Unflushed rows have offsets at or above the shard's flushed offset.
                let flushed = self
                    .manifest
                    .shards
                    .get(s)
                    .map_or(0, |st| st.flushed_offset);
                below(*s) > flushed
            })
    }

    /// The store this query reads through: its counting store when it has one, else the
    /// engine's.
    fn scan_store(&self, state: &dyn Session) -> Arc<dyn ObjectStore> {
        state
            .config()
            .get_extension::<crate::cost::ScanStore>()
            .map_or_else(|| Arc::clone(&self.env.store), |s| Arc::clone(&s.0))
    }

    fn retention_cutoff(&self) -> Option<i64> {
        let secs = i64::try_from(self.manifest.table.retention_secs?).ok()?;
        Some(
            self.env
                .now_micros
                .saturating_sub(secs.saturating_mul(1_000_000)),
        )
    }

    fn parquet_exec(
        &self,
        state: &dyn Session,
        segments: Vec<&SegmentMeta>,
        projection: &[usize],
        limit: Option<usize>,
        unioned: bool,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let target = state.config().target_partitions().max(1);
        let def = &self.manifest.table;
        let time_idx = def
            .time_column
            .as_ref()
            .and_then(|tc| self.schema.index_of(tc).ok());
        // Declare the time ordering only when no selected segment has null times, so the
        // in-file order (sorted by time) is also "ascending, nulls last".
        let sortable = time_idx.is_some()
            && segments.iter().all(|s| {
                s.min_ts.is_some()
                    && def
                        .time_column
                        .as_ref()
                        .and_then(|tc| s.columns.get(tc))
                        .is_some_and(|c| c.nulls == 0)
            });
        let (groups, declare_order) = group_segments(segments, target, sortable && !unioned);
        let groups: Vec<FileGroup> = groups
            .into_iter()
            .map(|g| {
                FileGroup::new(
                    g.into_iter()
                        .map(|seg| {
                            PartitionedFile::new(seg.path.clone(), seg.bytes)
                                .with_partition_values(vec![ScalarValue::UInt32(Some(seg.shard))])
                                .with_statistics(Arc::new(segment_statistics(
                                    seg,
                                    &self.file_schema,
                                )))
                        })
                        .collect(),
                )
            })
            .collect();
        let stats = Statistics::try_merge_iter(
            groups
                .iter()
                .flat_map(|g| g.iter())
                .filter_map(|f| f.statistics.as_deref()),
            &self.internal,
        )?;

        let mut parquet = TableParquetOptions::default();
        parquet.global = state.config_options().execution.parquet.clone();
        let reader = CachedParquetFileReaderFactory::new(
            self.scan_store(state),
            state.runtime_env().cache_manager.get_file_metadata_cache(),
        );
        let source = ParquetSource::new(
            TableSchema::builder(Arc::clone(&self.file_schema))
                .with_table_partition_cols(vec![shard_field()])
                .build(),
        )
        .with_table_parquet_options(parquet)
        .with_parquet_file_reader_factory(Arc::new(reader))
        .with_metadata_size_hint(METADATA_SIZE_HINT);
        let ordering = match (declare_order, time_idx) {
            (true, Some(idx)) => LexOrdering::new(vec![PhysicalSortExpr::new(
                Arc::new(PhysicalColumn::new(self.internal.field(idx).name(), idx)),
                SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            )])
            .into_iter()
            .collect(),
            _ => vec![],
        };
        let config = FileScanConfigBuilder::new(self.env.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(stats)
            .with_projection_indices(Some(projection.to_vec()))?
            .with_limit(limit)
            .with_output_ordering(ordering)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[async_trait]
impl TableProvider for StrataTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Rows in the manifest's segments (unflushed WAL rows not counted), for optimizer rules
    /// that weigh the sides of a join ([`crate::rules`]).
    fn statistics(&self) -> Option<Statistics> {
        let rows: u64 = self.manifest.segments.iter().map(|s| s.rows).sum();
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Inexact(usize::try_from(rows).unwrap_or(usize::MAX));
        Some(stats)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Used for pruning and pushed into the Parquet reader; DataFusion re-checks them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let def = &self.manifest.table;
        let mut pruning = ScanPruning::analyze(def, filters);
        if let Some(cutoff) = self.retention_cutoff() {
            pruning.require_time_at_least(cutoff);
        }
        let shards: Vec<u32> = self
            .manifest
            .shards
            .keys()
            .copied()
            .filter(|s| pruning.keep_shard(*s))
            .collect();
        let segments: Vec<&SegmentMeta> = self
            .manifest
            .segments
            .iter()
            .filter(|s| pruning.keep_segment(s, &self.schema))
            .collect();
        tracing::debug!(
            table = %def.name,
            segments = segments.len(),
            of = self.manifest.segments.len(),
            shards = shards.len(),
            "pruned scan"
        );
        {
            use crate::paths::Path;
            let paths = &self.env.paths;
            paths.hit(Path::Scan);
            if segments.len() < self.manifest.segments.len() {
                paths.hit(Path::SegmentsPruned);
            }
            if shards.len() < self.manifest.shards.len() {
                paths.hit(Path::ShardsPruned);
            }
        }

        let wal = wal_source::read_unflushed(
            &self.scan_store(state),
            &self.env.wal_cache,
            &self.env.wal_listings,
            &self.env.catalog,
            &self.manifest,
            &shards,
            &self.internal,
            |stats| pruning.keep_segment(stats, &self.schema),
        )
        .await
        .map_err(Error::into_datafusion)?;
        if wal.pruned > 0 {
            self.env.paths.hit(crate::paths::Path::WalPruned);
        }
        if let Some(cost) = state.config().get_extension::<crate::cost::QueryCost>() {
            cost.scanned(
                self.manifest.segments.len(),
                segments.len(),
                wal.batches.len(),
            );
            cost.wal_cached(wal.cached);
        }
        let wal = wal.batches;
        if !wal.is_empty() {
            self.env.paths.hit(crate::paths::Path::WalTail);
        }
        let wal_shards: BTreeSet<u32> = wal.iter().map(|(shard, _)| *shard).collect();
        let keep = self.keep_filter(state, &segments, &wal_shards)?;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut needed: BTreeSet<usize> = wanted.iter().copied().collect();
        if let Some(k) = &keep {
            for c in k.column_refs() {
                needed.insert(self.internal.index_of(&c.name)?);
            }
        }
        let inner: Vec<usize> = needed.into_iter().collect();
        let inner_schema = Arc::new(self.internal.project(&inner)?);
        // A limit may only be pushed below the scan's own filter if there is none.
        let limit = if keep.is_none() { limit } else { None };

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !segments.is_empty() {
            inputs.push(self.parquet_exec(state, segments, &inner, limit, !wal.is_empty())?);
        }
        if !wal.is_empty() {
            let target = state.config().target_partitions().clamp(1, wal.len());
            let mut partitions = vec![Vec::new(); target];
            for (i, (_, b)) in wal.into_iter().enumerate() {
                partitions[i % target].push(b);
            }
            let source = MemorySourceConfig::try_new(
                &partitions,
                Arc::clone(&self.internal),
                Some(inner.clone()),
            )?
            .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(source));
        }
        let mut plan: Arc<dyn ExecutionPlan> = match inputs.len() {
            0 => Arc::new(EmptyExec::new(Arc::clone(&inner_schema))),
            1 => inputs.remove(0),
            _ => UnionExec::try_new(inputs)?,
        };
        if let Some(keep) = keep {
            let df_schema = DFSchema::try_from(inner_schema.as_ref().clone())?;
            let predicate = state.create_physical_expr(keep, &df_schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        if wanted != inner {
            let input_schema = plan.schema();
            let exprs = wanted
                .iter()
                .map(|i| {
                    let name = self.schema.field(*i).name();
                    let idx = input_schema.index_of(name)?;
                    Ok((
                        Arc::new(PhysicalColumn::new(name, idx))
                            as Arc<dyn datafusion::physical_expr::PhysicalExpr>,
                        name.clone(),
                    ))
                })
                .collect::<DFResult<Vec<_>>>()?;
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(plan)
    }
}

fn shard_field() -> FieldRef {
    Arc::new(Field::new(SHARD_COLUMN, DataType::UInt32, false))
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn timestamp_scalar(micros: i64, unit: TimeUnit, tz: Option<Arc<str>>) -> ScalarValue {
    match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(micros.div_euclid(1_000_000)), tz),
        TimeUnit::Millisecond => {
            ScalarValue::TimestampMillisecond(Some(micros.div_euclid(1_000)), tz)
        }
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(micros), tz),
        TimeUnit::Nanosecond => {
            ScalarValue::TimestampNanosecond(Some(micros.saturating_mul(1_000)), tz)
        }
    }
}

/// Spread segments over at most `target` groups (one reader each). Files go, in time
/// order, to a group whose last file ends before they start when there is one, so each
/// group can stay sorted by time and the scan can declare that order (returned `true`).
///
/// When that is impossible (more overlapping segments than groups, e.g. many shards) or
/// not wanted (`time_order == false`: the scan is unioned with WAL rows, which hides any
/// declared order from the sort), each group is ordered newest first instead:
/// `ORDER BY ts DESC LIMIT n`, the common log query, then fills its top-k from the first
/// files, and DataFusion's dynamic top-k filter skips older files on their manifest
/// statistics before opening them.
fn group_segments(
    mut segments: Vec<&SegmentMeta>,
    target: usize,
    time_order: bool,
) -> (Vec<Vec<&SegmentMeta>>, bool) {
    segments.sort_by(|a, b| (a.min_ts, a.max_ts, &a.path).cmp(&(b.min_ts, b.max_ts, &b.path)));
    let mut groups: Vec<(Option<i64>, u64, Vec<&SegmentMeta>)> = Vec::new();
    let mut ordered = time_order;
    for seg in segments {
        let fits = |g: &(Option<i64>, u64, Vec<&SegmentMeta>)| matches!((g.0, seg.min_ts), (Some(end), Some(start)) if end < start);
        let fitting = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| fits(g))
            .min_by_key(|(_, g)| g.1)
            .map(|(i, _)| i);
        let pick = if groups.len() < target {
            None
        } else {
            fitting.or_else(|| {
                ordered = false;
                groups
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, g)| g.1)
                    .map(|(i, _)| i)
            })
        };
        match pick {
            Some(i) => {
                let g = &mut groups[i];
                g.0 = g.0.max(seg.max_ts);
                g.1 += seg.bytes;
                g.2.push(seg);
            }
            None => groups.push((seg.max_ts, seg.bytes, vec![seg])),
        }
    }
    let mut groups: Vec<Vec<&SegmentMeta>> = groups.into_iter().map(|g| g.2).collect();
    if !ordered {
        for g in &mut groups {
            g.sort_by(|a, b| b.max_ts.cmp(&a.max_ts).then_with(|| a.path.cmp(&b.path)));
        }
    }
    (groups, ordered)
}

/// Per-file statistics from the manifest, so planning needs no footer reads.
fn segment_statistics(seg: &SegmentMeta, file_schema: &Schema) -> Statistics {
    let rows = usize::try_from(seg.rows).unwrap_or(usize::MAX);
    let columns = file_schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == OFFSET_COLUMN {
                return ColumnStatistics {
                    null_count: Precision::Exact(0),
                    min_value: Precision::Exact(ScalarValue::UInt64(Some(seg.min_offset))),
                    max_value: Precision::Exact(ScalarValue::UInt64(Some(seg.max_offset))),
                    ..ColumnStatistics::new_unknown()
                };
            }
            match seg.columns.get(f.name()) {
                Some(c) => ColumnStatistics {
                    null_count: Precision::Exact(usize::try_from(c.nulls).unwrap_or(usize::MAX)),
                    min_value: json_scalar(c.min.as_ref(), f.data_type())
                        .map_or(Precision::Absent, Precision::Exact),
                    max_value: json_scalar(c.max.as_ref(), f.data_type())
                        .map_or(Precision::Absent, Precision::Exact),
                    ..ColumnStatistics::new_unknown()
                },
                // Written before the column existed: all nulls.
                None if !seg.columns.is_empty() => ColumnStatistics {
                    null_count: Precision::Inexact(rows),
                    ..ColumnStatistics::new_unknown()
                },
                None => ColumnStatistics::new_unknown(),
            }
        })
        .collect();
    Statistics {
        num_rows: Precision::Exact(rows),
        total_byte_size: Precision::Inexact(usize::try_from(seg.bytes).unwrap_or(usize::MAX)),
        column_statistics: columns,
    }
}

/// A manifest JSON statistic as a scalar of the column's exact type.
fn json_scalar(v: Option<&serde_json::Value>, t: &DataType) -> Option<ScalarValue> {
    let v = v?;
    Some(match t {
        DataType::Int8 => ScalarValue::Int8(Some(i8::try_from(v.as_i64()?).ok()?)),
        DataType::Int16 => ScalarValue::Int16(Some(i16::try_from(v.as_i64()?).ok()?)),
        DataType::Int32 => ScalarValue::Int32(Some(i32::try_from(v.as_i64()?).ok()?)),
        DataType::Int64 => ScalarValue::Int64(Some(v.as_i64()?)),
        DataType::UInt8 => ScalarValue::UInt8(Some(u8::try_from(v.as_u64()?).ok()?)),
        DataType::UInt16 => ScalarValue::UInt16(Some(u16::try_from(v.as_u64()?).ok()?)),
        DataType::UInt32 => ScalarValue::UInt32(Some(u32::try_from(v.as_u64()?).ok()?)),
        DataType::UInt64 => ScalarValue::UInt64(Some(v.as_u64()?)),
        DataType::Float32 => ScalarValue::Float32(Some(v.as_f64()? as f32)),
        DataType::Float64 => ScalarValue::Float64(Some(v.as_f64()?)),
        DataType::Utf8 => ScalarValue::Utf8(Some(v.as_str()?.to_string())),
        DataType::Utf8View => ScalarValue::Utf8View(Some(v.as_str()?.to_string())),
        DataType::Date32 => ScalarValue::Date32(Some(i32::try_from(v.as_i64()?).ok()?)),
        DataType::Timestamp(unit, tz) => {
            let x = v.as_i64()?;
            let tz = tz.clone();
            match unit {
                TimeUnit::Second => ScalarValue::TimestampSecond(Some(x), tz),
                TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(x), tz),
                TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(x), tz),
                TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(x), tz),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
