//! Data lifecycle: retention, compaction, delete application and garbage collection.
//!
//! A *pass* visits every table of every tenant and, per table:
//!
//! 1. **Retention.** With `retention_secs` set, segments whose newest row is older than
//!    `now - retention` leave the manifest in one commit, without being read. Partially
//!    expired segments are hidden row by row at query time and lose their old rows when
//!    compaction rewrites them (a lone one is rewritten once half its time span expired).
//! 2. **Compaction.** Per shard, segments under half of `target_bytes` are grouped by the
//!    UTC day of their first row (a day keeps time pruning sharp while still merging a day of
//!    10-second flushes into a few files), sorted by time and packed into runs of up to
//!    `target_bytes` (and `max_inputs`, `merge_memory_bytes`); a run is merged when it has
//!    `min_segments` inputs or one of them needs a rewrite (deletes, retention). In a hot
//!    window (today, or ended < 1 h ago) the largest input sits out while it outweighs all
//!    the others together, so a growing segment is rewritten only when the small ones beside
//!    it have caught up: each byte is rewritten O(log(target / flush size)) times instead of
//!    once per pass; cold windows merge fully. (Details and tests: `lifecycle/plan.rs`.)
//!    Each run is merged by streaming its inputs with the async Parquet reader, upgrading
//!    them to the current schema (new columns become nulls), dropping rows hidden by delete
//!    rules or retention, and k-way merging by (time, `_offset`) with DataFusion's streaming
//!    merge. Outputs (zstd 3, split once they reach `target_bytes`, at 8,192-row batch
//!    boundaries) go to fresh paths and are committed with one manifest commit that first
//!    checks every input is still live: if a concurrent compactor or retention pass got there
//!    first, the run is abandoned and its outputs become orphans for GC. A concurrent flush
//!    only adds segments, which the commit keeps. A crash after the upload and before the
//!    commit leaves the old segments live and the outputs orphaned.
//! 3. **Deletes.** A [`DeleteRule`](strata_storage::DeleteRule) still pending for a segment
//!    (its rows may sit below the rule's offset bound and `deletes_applied` is older) makes
//!    that segment need a rewrite whatever its size. Once every shard has flushed past the
//!    rule's bound and no segment needs it, the rule leaves the manifest.
//! 4. **GC** of objects no retained manifest version references
//!    ([`strata_storage::gc::collect_table`]), older than `gc.min_age`.
//!
//! # Memory
//! A merge holds at once, per open input, the Parquet reader's state: its current row group
//! (compressed), one decompressed page per column (up to ~1 MiB each) and ~110-200 KiB per
//! column of decoder state. Runs are cut so that this estimate
//! (`plan::input_memory`) stays under `merge_memory_bytes`; a lone oversized segment is read
//! one row group at a time. On top: one decoded batch per input, `merge_rows_budget` rows in
//! all; the output's row group in progress (`row_group_rows`); at most three upload parts of
//! `part_bytes`. Runs execute one at a time.
//!
//! # Trade-offs
//! - A delete rule rewrites every segment below its bound that it may touch, even when no
//!   row matches: row-level deletes become physical within a pass or two, at the price of
//!   rewriting the table once per batch of rules (all pending rules are applied together).
//! - Merging and encoding run on the async runtime, yielding between batches, rather than on
//!   a dedicated thread pool: simpler, and a pass is one task at a time.
//! - Outputs under `part_bytes` are single create-only PUTs; bigger ones are multipart
//!   uploads, which object_store cannot make conditional (the path is a fresh UUIDv7).
//! - A run whose upload took longer than half of `gc.min_age` is abandoned rather than
//!   committed, since another process's GC may already have taken its outputs for orphans.

mod merge;
mod metrics;
mod plan;
mod read;
mod upload;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use futures::FutureExt;
use strata_storage::gc::{self, GcOptions};
use strata_storage::{Catalog, TableManifest};
use tokio::task::JoinHandle;

pub use metrics::{
    COMPACTION_BACKLOG, COMPACTION_BYTES_WRITTEN, COMPACTION_DURATION, COMPACTION_RUNS,
    GC_BYTES_RECLAIMED, GC_OBJECTS_DELETED, LifecycleMetrics, RETENTION_SEGMENTS_DROPPED,
    TABLE_BYTES, TABLE_SEGMENTS,
};

use crate::settings::Settings;
use crate::tenants::Tenants;
use merge::{MergeEnv, merge_run};
use plan::{Run, applied_rules, plan_runs, retention_cutoff, wholly_expired};

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] strata_storage::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A delete rule's predicate does not plan against the table (the query path fails too).
    #[error("delete rule {id} (`{predicate}`) cannot be evaluated: {detail}")]
    DeleteRule {
        id: u64,
        predicate: String,
        detail: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Hook called between a run's upload and its commit (fault-injection tests).
pub type CommitHook = Arc<dyn Fn() + Send + Sync>;

/// What a pass does and how hard it works.
#[derive(Clone)]
pub struct LifecycleOptions {
    /// Time between background passes. Zero disables the background task. Default: 60 s.
    pub interval: Duration,
    /// Size compacted segments aim for; segments under half of it are "small". Default: 128 MiB.
    pub target_bytes: u64,
    /// Small segments of one shard and day needed before they are merged (at least 2).
    /// Default: 2.
    pub min_segments: usize,
    /// Most segments merged by one run. Default: 200.
    pub max_inputs: usize,
    /// Most runs per table per pass (the rest waits for the next pass). Default: 32.
    pub max_runs_per_table: usize,
    /// Estimated reader memory of one run's open inputs (see the module docs); runs are cut
    /// to fit. Default: 256 MiB.
    pub merge_memory_bytes: u64,
    /// Rows decoded at once across a run's inputs, split evenly. Default: 131,072.
    pub merge_rows_budget: usize,
    /// zstd level of compacted segments. Default: 3.
    pub zstd_level: i32,
    /// Rows per row group of compacted segments. Default: 65,536.
    pub row_group_rows: usize,
    /// Outputs above this are uploaded in parts of this size. Default: 8 MiB.
    pub part_bytes: usize,
    /// A segment is rewritten for retention alone once this fraction of its time span has
    /// expired. Default: 0.5.
    pub retention_rewrite_fraction: f64,
    /// Garbage collection after compaction.
    pub gc: GcOptions,
    /// Called after a run's outputs are uploaded, before its commit. Default: none.
    pub before_commit: Option<CommitHook>,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            target_bytes: 128 << 20,
            min_segments: 2,
            max_inputs: 200,
            max_runs_per_table: 32,
            merge_memory_bytes: 256 << 20,
            merge_rows_budget: 128 << 10,
            zstd_level: 3,
            row_group_rows: 65_536,
            part_bytes: 8 << 20,
            retention_rewrite_fraction: 0.5,
            gc: GcOptions::default(),
            before_commit: None,
        }
    }
}

impl fmt::Debug for LifecycleOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleOptions")
            .field("interval", &self.interval)
            .field("target_bytes", &self.target_bytes)
            .field("min_segments", &self.min_segments)
            .field("max_inputs", &self.max_inputs)
            .field("max_runs_per_table", &self.max_runs_per_table)
            .field("merge_memory_bytes", &self.merge_memory_bytes)
            .field("merge_rows_budget", &self.merge_rows_budget)
            .field("zstd_level", &self.zstd_level)
            .field("row_group_rows", &self.row_group_rows)
            .field("part_bytes", &self.part_bytes)
            .field(
                "retention_rewrite_fraction",
                &self.retention_rewrite_fraction,
            )
            .field("gc", &self.gc)
            .field(
                "before_commit",
                &self.before_commit.as_ref().map(|_| "<hook>"),
            )
            .finish()
    }
}

impl LifecycleOptions {
    /// Options from `[compaction]` settings; everything else at its default.
    pub fn from_settings(s: &Settings) -> Self {
        let c = &s.compaction;
        let d = Self::default();
        Self {
            interval: c.interval_secs.map_or(d.interval, Duration::from_secs),
            target_bytes: c.target_bytes.unwrap_or(d.target_bytes).max(1),
            gc: GcOptions {
                min_age: c.gc_min_age_secs.map_or(d.gc.min_age, Duration::from_secs),
                keep_versions: c.keep_versions.unwrap_or(d.gc.keep_versions),
                dry_run: false,
            },
            ..d
        }
    }
}

/// What a pass did to one table.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    pub tenant: Option<String>,
    pub table: String,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Wholly expired segments removed by retention.
    pub expired_segments: usize,
    /// Compaction runs committed, and the segments they replaced.
    pub runs: usize,
    pub inputs_compacted: usize,
    /// Runs abandoned because their inputs changed under them (another compactor won).
    pub runs_abandoned: usize,
    pub rows_rewritten: u64,
    pub rows_deleted: u64,
    pub rows_expired: u64,
    pub bytes_written: u64,
    /// Delete rules removed from the manifest, fully applied.
    pub rules_dropped: Vec<u64>,
    /// Segments still waiting for compaction after the pass.
    pub backlog: usize,
    pub gc_deleted: usize,
    pub gc_bytes: u64,
    pub gc_too_young: usize,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl TableReport {
    fn new(tenant: Option<&str>, table: &str) -> Self {
        Self {
            tenant: tenant.map(str::to_string),
            table: table.to_string(),
            ..Self::default()
        }
    }
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: segments {}→{}, bytes {}→{}; {} run(s) merged {} segment(s) ({} rows, {} B written",
            self.tenant.as_deref().unwrap_or("default"),
            self.table,
            self.segments_before,
            self.segments_after,
            self.bytes_before,
            self.bytes_after,
            self.runs,
            self.inputs_compacted,
            self.rows_rewritten,
            self.bytes_written,
        )?;
        if self.runs_abandoned > 0 {
            write!(f, ", {} abandoned", self.runs_abandoned)?;
        }
        write!(
            f,
            "); retention dropped {} segment(s) and {} row(s); deletes dropped {} row(s)",
            self.expired_segments, self.rows_expired, self.rows_deleted
        )?;
        if !self.rules_dropped.is_empty() {
            write!(f, ", rules {:?} done", self.rules_dropped)?;
        }
        write!(
            f,
            "; backlog {}; gc deleted {} object(s), {} B ({} too young); {} ms",
            self.backlog,
            self.gc_deleted,
            self.gc_bytes,
            self.gc_too_young,
            self.elapsed.as_millis()
        )?;
        for e in &self.errors {
            write!(f, "; ERROR: {e}")?;
        }
        Ok(())
    }
}

/// What a pass did, one line per table.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub tables: Vec<TableReport>,
    /// Failures outside any one table (listing tenants or tables).
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl PassReport {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.tables.iter().any(|t| !t.errors.is_empty())
    }
}

impl fmt::Display for PassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tables.is_empty() && self.errors.is_empty() {
            return write!(f, "no tables ({} ms)", self.elapsed.as_millis());
        }
        let mut first = true;
        for t in &self.tables {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{t}")?;
        }
        for e in &self.errors {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "ERROR: {e}")?;
        }
        Ok(())
    }
}

/// One pass over every table of every tenant with data in the bucket. Every table is
/// visited even if another fails; the result is an error (holding the whole report) when any
/// step failed.
pub async fn run_pass(
    tenants: &Tenants,
    opts: &LifecycleOptions,
    metrics: Option<&LifecycleMetrics>,
) -> Result<PassReport, String> {
    let started = Instant::now();
    let mut report = PassReport::default();
    let known = tenants
        .known()
        .await
        .map_err(|e| format!("lifecycle: cannot list tenants: {}", e.message))?;
    for name in known {
        let tenant = match tenants.get(name.as_deref()).await {
            Ok(t) => t,
            Err(e) => {
                report
                    .errors
                    .push(format!("tenant {name:?}: {}", e.message));
                continue;
            }
        };
        let tables = match tenant.catalog.list_tables().await {
            Ok(t) => t,
            Err(e) => {
                report
                    .errors
                    .push(format!("tenant {name:?}: cannot list tables: {e}"));
                continue;
            }
        };
        for table in tables {
            let r = maintain_table(&tenant.catalog, name.as_deref(), &table, opts, metrics).await;
            for e in &r.errors {
                tracing::warn!(tenant = ?name, table, error = %e, "lifecycle step failed");
            }
            report.tables.push(r);
        }
    }
    report.elapsed = started.elapsed();
    if report.has_errors() {
        return Err(report.to_string());
    }
    Ok(report)
}

/// Retention, compaction, delete bookkeeping and GC of one table. Errors are in the report;
/// GC and metrics run even after a failed compaction.
pub async fn maintain_table(
    catalog: &Catalog,
    tenant: Option<&str>,
    table: &str,
    opts: &LifecycleOptions,
    metrics: Option<&LifecycleMetrics>,
) -> TableReport {
    let started = Instant::now();
    let mut r = TableReport::new(tenant, table);
    // A dropped table has nothing to compact; GC still collects its objects.
    let dropped = matches!(catalog.load_any(table).await, Ok(m) if m.dropped);
    if !dropped && let Err(e) = compact_table(catalog, table, opts, metrics, &mut r).await {
        r.errors.push(e.to_string());
    }
    match gc::collect_table(catalog, table, &opts.gc).await {
        Ok(g) => {
            r.gc_deleted = g.deleted;
            r.gc_bytes = g.bytes_reclaimed;
            r.gc_too_young = g.too_young;
            if let Some(m) = metrics {
                m.gc_objects.inc_by(g.deleted as u64);
                m.gc_bytes.inc_by(g.bytes_reclaimed);
            }
        }
        Err(e) => r.errors.push(format!("gc: {e}")),
    }
    match catalog.load(table).await {
        Err(strata_storage::Error::TableNotFound(_)) if dropped => {}
        Ok(m) => {
            let now = now_micros();
            r.segments_after = m.segments.len();
            r.bytes_after = m.total_bytes();
            let cutoff = retention_cutoff(&m.table, now);
            r.backlog = plan_runs(&m, opts, cutoff, now)
                .iter()
                .map(|run| run.inputs.len())
                .sum();
            if let Some(mx) = metrics {
                let labels = [tenant.unwrap_or("default"), table];
                mx.segments
                    .with_label_values(&labels)
                    .set(r.segments_after as i64);
                mx.bytes
                    .with_label_values(&labels)
                    .set(r.bytes_after as i64);
                mx.backlog.with_label_values(&labels).set(r.backlog as i64);
            }
        }
        Err(e) => r.errors.push(e.to_string()),
    }
    r.elapsed = started.elapsed();
    r
}

async fn compact_table(
    catalog: &Catalog,
    table: &str,
    opts: &LifecycleOptions,
    metrics: Option<&LifecycleMetrics>,
    r: &mut TableReport,
) -> Result<()> {
    let now = now_micros();
    let mut m = catalog.load(table).await?;
    r.segments_before = m.segments.len();
    r.bytes_before = m.total_bytes();
    let cutoff = retention_cutoff(&m.table, now);

    // 1. Retention: drop wholly expired segments without reading them.
    if let Some(c) = cutoff
        && m.segments.iter().any(|s| wholly_expired(s, c))
    {
        let mut dropped = 0;
        m = catalog
            .commit(table, |m| {
                let before = m.segments.len();
                m.segments.retain(|s| !wholly_expired(s, c));
                dropped = before - m.segments.len();
                Ok(())
            })
            .await?;
        r.expired_segments = dropped;
        if let Some(mx) = metrics {
            mx.retention_dropped.inc_by(dropped as u64);
        }
    }

    // 2. Compaction, one run at a time.
    let runs = plan_runs(&m, opts, cutoff, now);
    if !runs.is_empty() {
        let sql = SessionContext::new();
        let env = MergeEnv {
            store: catalog.store(),
            manifest: &m,
            opts,
            cutoff,
            sql: &sql,
            now_ms: now / 1000,
        };
        for run in runs.iter().take(opts.max_runs_per_table.max(1)) {
            compact_run(catalog, table, &env, run, metrics, r).await?;
        }
    }

    // 3. Delete rules that no segment needs any more.
    let m = catalog.load(table).await?;
    if !applied_rules(&m).is_empty() {
        let mut dropped = Vec::new();
        catalog
            .commit(table, |m| {
                dropped = applied_rules(m);
                m.deletes.retain(|rule| !dropped.contains(&rule.id));
                Ok(())
            })
            .await?;
        r.rules_dropped = dropped;
    }
    Ok(())
}

/// Merge one run, upload its outputs and commit them in place of its inputs.
async fn compact_run(
    catalog: &Catalog,
    table: &str,
    env: &MergeEnv<'_>,
    run: &Run,
    metrics: Option<&LifecycleMetrics>,
    r: &mut TableReport,
) -> Result<()> {
    let started = Instant::now();
    let merged = merge_run(env, run).await?;
    if let Some(mx) = metrics {
        mx.bytes_written.inc_by(merged.bytes_written);
    }
    if let Some(hook) = &env.opts.before_commit {
        hook();
    }
    let min_age = env.opts.gc.min_age;
    if !min_age.is_zero() && started.elapsed() > min_age / 2 {
        tracing::warn!(table, elapsed = ?started.elapsed(), "compaction run too slow to commit safely; abandoned");
        r.runs_abandoned += 1;
        return Ok(());
    }
    let inputs: HashSet<&str> = run.inputs.iter().map(|s| s.path.as_str()).collect();
    let mut lost = false;
    let committed = catalog
        .commit(table, |m| {
            let live = m
                .segments
                .iter()
                .filter(|s| inputs.contains(s.path.as_str()))
                .count();
            lost = live != inputs.len();
            if lost {
                return Err(strata_storage::Error::InvalidInput(format!(
                    "{} of the {} input segments left the manifest meanwhile",
                    inputs.len() - live,
                    inputs.len()
                )));
            }
            replace_segments(m, &inputs, &merged.outputs);
            Ok(())
        })
        .await;
    match committed {
        Ok(_) => {}
        Err(e) if lost => {
            tracing::info!(table, reason = %e, "compaction run abandoned: a concurrent change won");
            r.runs_abandoned += 1;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    r.runs += 1;
    r.inputs_compacted += run.inputs.len();
    r.rows_rewritten += merged.rows_in;
    r.rows_deleted += merged.rows_deleted;
    r.rows_expired += merged.rows_expired;
    r.bytes_written += merged.bytes_written;
    if let Some(mx) = metrics {
        mx.runs.inc();
        mx.duration.observe(started.elapsed().as_secs_f64());
    }
    tracing::debug!(
        table,
        shard = run.shard,
        inputs = run.inputs.len(),
        bytes_in = run.bytes(),
        bytes_out = merged.bytes_written,
        outputs = merged.outputs.len(),
        elapsed = ?started.elapsed(),
        "compaction run committed"
    );
    Ok(())
}

/// Remove `inputs` from the segment list and put `outputs` where the first input was.
fn replace_segments(
    m: &mut TableManifest,
    inputs: &HashSet<&str>,
    outputs: &[strata_storage::SegmentMeta],
) {
    let at = m
        .segments
        .iter()
        .position(|s| inputs.contains(s.path.as_str()))
        .unwrap_or(m.segments.len());
    // Everything before the first input stays, so `at` is still the insertion point.
    m.segments.retain(|s| !inputs.contains(s.path.as_str()));
    let at = at.min(m.segments.len());
    m.segments.splice(at..at, outputs.iter().cloned());
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The background lifecycle loop; dropping it aborts the task (a run in flight leaves at
/// most orphans, which a later GC removes).
pub struct BackgroundTask {
    handle: JoinHandle<()>,
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl BackgroundTask {
    /// Run a pass every `opts.interval` (the first one interval after start) over all tenants.
    /// Errors are logged, panics caught and logged; the loop never stops by itself.
    pub fn start(tenants: Arc<Tenants>, opts: LifecycleOptions, metrics: LifecycleMetrics) -> Self {
        let handle = tokio::spawn(async move {
            if opts.interval.is_zero() {
                tracing::info!("background compaction disabled (interval 0)");
                return;
            }
            let start = tokio::time::Instant::now() + opts.interval;
            let mut tick = tokio::time::interval_at(start, opts.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let pass = AssertUnwindSafe(run_pass(&tenants, &opts, Some(&metrics)))
                    .catch_unwind()
                    .await;
                match pass {
                    Ok(Ok(report)) => tracing::debug!(%report, "lifecycle pass done"),
                    Ok(Err(report)) => tracing::warn!(%report, "lifecycle pass had errors"),
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(
                            panic = msg,
                            "lifecycle pass panicked; continuing with the next one"
                        );
                    }
                }
            }
        });
        Self { handle }
    }
}

/// Start the background lifecycle loop of a process with `s.compaction` settings, its
/// metrics registered in `registry`.
pub fn spawn_background(
    tenants: Arc<Tenants>,
    s: &Settings,
    registry: &prometheus::Registry,
) -> Result<BackgroundTask, String> {
    let metrics = LifecycleMetrics::new(registry).map_err(|e| format!("lifecycle metrics: {e}"))?;
    Ok(BackgroundTask::start(
        tenants,
        LifecycleOptions::from_settings(s),
        metrics,
    ))
}
