//! Ingest metrics, registered once per node in the process registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub const ROWS_TOTAL: &str = "strata_ingest_rows_total";
pub const BYTES_TOTAL: &str = "strata_ingest_bytes_total";
pub const REJECTED_TOTAL: &str = "strata_ingest_rejected_total";
pub const BUFFERED_BYTES: &str = "strata_ingest_buffered_bytes";
pub const WAL_COMMIT_SECONDS: &str = "strata_ingest_wal_commit_seconds";
pub const ACK_SECONDS: &str = "strata_ingest_ack_seconds";
pub const FLUSH_SECONDS: &str = "strata_ingest_flush_seconds";
pub const FLUSHES_TOTAL: &str = "strata_ingest_flushes_total";
pub const DUPLICATES_TOTAL: &str = "strata_ingest_duplicates_total";

/// The ingest node's metrics.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    pub rows: IntCounter,
    pub bytes: IntCounter,
    /// Rejected writes by reason: backpressure, invalid, not_owner, unavailable.
    pub rejected: IntCounterVec,
    pub buffered_bytes: IntGauge,
    pub wal_commit: Histogram,
    pub ack: Histogram,
    pub flush: Histogram,
    pub flushes: IntCounter,
    pub duplicates: IntCounter,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let m = Self {
            rows: IntCounter::new(ROWS_TOTAL, "Rows acknowledged")?,
            bytes: IntCounter::new(BYTES_TOTAL, "Arrow bytes acknowledged")?,
            rejected: IntCounterVec::new(
                Opts::new(REJECTED_TOTAL, "Writes rejected, by reason"),
                &["reason"],
            )?,
            buffered_bytes: IntGauge::new(
                BUFFERED_BYTES,
                "Bytes buffered in shard writers (pending + memtable)",
            )?,
            wal_commit: Histogram::with_opts(
                HistogramOpts::new(WAL_COMMIT_SECONDS, "Duration of WAL entry PUTs")
                    .buckets(buckets.clone()),
            )?,
            ack: Histogram::with_opts(
                HistogramOpts::new(
                    ACK_SECONDS,
                    "Time from receiving a write to acknowledging it",
                )
                .buckets(buckets.clone()),
            )?,
            flush: Histogram::with_opts(
                HistogramOpts::new(
                    FLUSH_SECONDS,
                    "Duration of memtable flushes (encode, upload, commit)",
                )
                .buckets(buckets),
            )?,
            flushes: IntCounter::new(FLUSHES_TOTAL, "Segments flushed")?,
            duplicates: IntCounter::new(
                DUPLICATES_TOTAL,
                "Writes skipped as idempotent-producer duplicates",
            )?,
        };
        registry.register(Box::new(m.rows.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.buffered_bytes.clone()))?;
        registry.register(Box::new(m.wal_commit.clone()))?;
        registry.register(Box::new(m.ack.clone()))?;
        registry.register(Box::new(m.flush.clone()))?;
        registry.register(Box::new(m.flushes.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        Ok(m)
    }
}
