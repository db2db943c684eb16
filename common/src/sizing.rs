//! The per-node figures `strata estimate` sizes a cluster from.
//!
//! `strata-bench` measures them on the machine it runs on and writes them as JSON
//! (`figures.json` in its work folder); `strata estimate --figures FILE` reads them, and
//! without the flag uses the figures measured for the release (see `docs/sizing.md`).

use serde::{Deserialize, Serialize};

/// What one core does, measured by the bench on one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Where and how the figures were measured (machine, build, data), free text.
    pub measured_on: String,
    /// Cores of that machine; the bench's client shared them with the server, so the
    /// per-core figures are conservative.
    pub cores: u32,
    /// Rows of the bench's table in the measurement.
    pub rows: u64,
    /// Acknowledged-durable ingest rows per second per core (8k-row Arrow batches, 4 shards).
    pub ingest_rows_per_core_sec: f64,
    /// Arrow IPC bytes per ingested row (the bench's log rows).
    pub ingest_bytes_per_row: f64,
    /// Bytes in the bucket per row once flushed to Parquet segments.
    pub stored_bytes_per_row: f64,
    /// WAL PUTs per million ingested rows (group commit batches many writes into one PUT).
    pub wal_puts_per_million_rows: f64,
    /// Rows per segment written by flush and compaction (one PUT and one manifest commit each).
    pub rows_per_segment: f64,
    /// Rows per second per core that compaction rewrites (decode + sort + encode a segment).
    pub compact_rows_per_core_sec: f64,
    /// Point lookups by an id (bloom filters, statistics).
    pub lookup: QueryFigure,
    /// Aggregates and scans (group by, distinct, joins, last row per key).
    pub scan: QueryFigure,
    /// Bytes a cold ranged GET fetched on average (coalesced cache blocks).
    pub bytes_per_get: f64,
}

/// The cost of one kind of query, per million rows of the table (lookups) or per million rows
/// in the query's time range (scans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryFigure {
    /// Core-milliseconds of a warm run (cache holding the data).
    pub core_ms_per_million_rows: f64,
    /// Bytes read from the bucket by a cold run (empty cache).
    pub cold_bytes_per_million_rows: f64,
    /// The bench queries the figure is the geometric mean of.
    pub from: Vec<String>,
}
