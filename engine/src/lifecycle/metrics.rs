//! Prometheus metrics of the lifecycle passes.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry};

/// Live segments per table.
pub const TABLE_SEGMENTS: &str = "strata_table_segments";
/// Bytes of live segments per table.
pub const TABLE_BYTES: &str = "strata_table_bytes";
/// Segments the planner would compact now, per table (small ones waiting, or needing a rewrite).
pub const COMPACTION_BACKLOG: &str = "strata_compaction_backlog_segments";
/// Compaction runs committed.
pub const COMPACTION_RUNS: &str = "strata_compaction_runs_total";
/// Bytes of compacted segments written (committed or not).
pub const COMPACTION_BYTES_WRITTEN: &str = "strata_compaction_bytes_written_total";
/// Duration of one compaction run, read to commit.
pub const COMPACTION_DURATION: &str = "strata_compaction_duration_seconds";
/// Bytes deleted by GC.
pub const GC_BYTES_RECLAIMED: &str = "strata_gc_bytes_reclaimed_total";
/// Objects deleted by GC.
pub const GC_OBJECTS_DELETED: &str = "strata_gc_objects_deleted_total";
/// Wholly expired segments removed from manifests by retention.
pub const RETENTION_SEGMENTS_DROPPED: &str = "strata_retention_segments_dropped_total";

/// The lifecycle's metrics, registered once per registry.
#[derive(Debug, Clone)]
pub struct LifecycleMetrics {
    pub(crate) segments: IntGaugeVec,
    pub(crate) bytes: IntGaugeVec,
    pub(crate) backlog: IntGaugeVec,
    pub(crate) runs: IntCounter,
    pub(crate) bytes_written: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) gc_bytes: IntCounter,
    pub(crate) gc_objects: IntCounter,
    pub(crate) retention_dropped: IntCounter,
}

impl LifecycleMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["tenant", "table"];
        let segments = IntGaugeVec::new(
            Opts::new(TABLE_SEGMENTS, "Live segments of a table."),
            labels,
        )?;
        let bytes = IntGaugeVec::new(
            Opts::new(TABLE_BYTES, "Bytes of a table's live segments."),
            labels,
        )?;
        let backlog = IntGaugeVec::new(
            Opts::new(
                COMPACTION_BACKLOG,
                "Segments of a table waiting for compaction.",
            ),
            labels,
        )?;
        let runs = IntCounter::new(COMPACTION_RUNS, "Compaction runs committed.")?;
        let bytes_written = IntCounter::new(
            COMPACTION_BYTES_WRITTEN,
            "Bytes of compacted segments written.",
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                COMPACTION_DURATION,
                "Duration of one compaction run, first read to commit.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let gc_bytes = IntCounter::new(
            GC_BYTES_RECLAIMED,
            "Bytes of unreferenced objects deleted by GC.",
        )?;
        let gc_objects =
            IntCounter::new(GC_OBJECTS_DELETED, "Unreferenced objects deleted by GC.")?;
        let retention_dropped = IntCounter::new(
            RETENTION_SEGMENTS_DROPPED,
            "Wholly expired segments removed by retention.",
        )?;
        registry.register(Box::new(segments.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(backlog.clone()))?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(bytes_written.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(gc_bytes.clone()))?;
        registry.register(Box::new(gc_objects.clone()))?;
        registry.register(Box::new(retention_dropped.clone()))?;
        Ok(Self {
            segments,
            bytes,
            backlog,
            runs,
            bytes_written,
            duration,
            gc_bytes,
            gc_objects,
            retention_dropped,
        })
    }
}
