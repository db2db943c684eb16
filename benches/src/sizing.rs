//! The per-core figures `strata estimate` sizes clusters from, derived from a bench run and
//! written to `figures.json` in the work folder (and into the JSON report).

use strata_common::sizing::{Figures, QueryFigure};

use crate::suite::Report;

/// Bench queries that find rows by an id.
const LOOKUPS: &[&str] = &["point_lookup", "trace_lookup"];
/// Bench queries that aggregate or scan the whole table.
const SCANS: &[&str] = &[
    "top_hosts",
    "p99_per_path",
    "errors_per_service",
    "distinct_users",
    "join_services",
    "last_row_per_host",
];

/// What the run measured outside the report's tables.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// PUT requests the server made while the `logs` table loaded (WAL entries, plus any
    /// segments flushed meanwhile), from its `/metrics`.
    pub ingest_puts: Option<f64>,
    /// `logs` as its manifest had it at query time: rows, bytes, segments.
    pub stored: Option<(u64, u64, u64)>,
}

fn geomean(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    Some((v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

/// The figures of `names`' warm time and cold bytes, per million rows of a `rows` table run
/// on `cores` cores.
fn query_figure(report: &Report, names: &[&str], rows: f64, cores: f64) -> Option<QueryFigure> {
    let picked: Vec<_> = report
        .queries
        .iter()
        .filter(|q| names.contains(&q.name.as_str()) && q.strata_error.is_none())
        .collect();
    let millions = rows / 1e6;
    let warm: Vec<f64> = picked
        .iter()
        .filter_map(|q| q.strata_warm_ms)
        .map(|ms| ms * cores / millions)
        .collect();
    let cold: Vec<f64> = picked
        .iter()
        .filter_map(|q| q.strata_cold_cache_fetch_bytes.or(q.strata_cold_bytes))
        .map(|b| b / millions)
        .collect();
    Some(QueryFigure {
        core_ms_per_million_rows: geomean(&warm)?,
        cold_bytes_per_million_rows: geomean(&cold).unwrap_or(0.0),
        from: picked.iter().map(|q| q.name.clone()).collect(),
    })
}

/// The figures of a run, or `None` when it lacks a part (no `logs` load, a failed query
/// kind, no manifest reading).
pub fn figures(report: &Report, measured: &Measured) -> Option<Figures> {
    let ingest = report
        .ingest
        .iter()
        .find(|i| i.table == "logs" && i.error.is_none())?;
    let cores = report.meta.threads.max(1) as f64;
    let (rows, bytes, segments) = measured.stored?;
    if rows == 0 || segments == 0 {
        return None;
    }
    let rows_f = rows as f64;
    let (gets, get_bytes) = report
        .queries
        .iter()
        .filter_map(|q| q.strata_cold_cost.as_ref())
        .fold((0.0, 0.0), |(n, b), c| {
            (
                n + c["get_requests"].as_f64().unwrap_or(0.0),
                b + c["get_bytes"].as_f64().unwrap_or(0.0),
            )
        });
    let encode = report.baselines.encode_segment.as_ref()?;
    Some(Figures {
        measured_on: format!(
            "strata-bench, {} build, {}, {} rows, table made by {}",
            report.meta.strata_build, report.meta.store, report.meta.rows, ingest.created_by
        ),
        cores: cores as u32,
        rows,
        ingest_rows_per_core_sec: ingest.rows_per_s / cores,
        ingest_bytes_per_row: ingest.bytes as f64 / ingest.rows.max(1) as f64,
        stored_bytes_per_row: bytes as f64 / rows_f,
        wal_puts_per_million_rows: measured.ingest_puts? / (ingest.rows.max(1) as f64 / 1e6),
        rows_per_segment: rows_f / segments as f64,
        compact_rows_per_core_sec: encode.rows_per_s,
        lookup: query_figure(report, LOOKUPS, rows_f, cores)?,
        scan: query_figure(report, SCANS, rows_f, cores)?,
        bytes_per_get: if gets > 0.0 {
            get_bytes / gets
        } else {
            f64::from(256u32 << 10)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geomean_skips_what_is_not_a_time() {
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[0.0, f64::NAN]), None);
        let g = geomean(&[2.0, 8.0]).expect("two values");
        assert!((g - 4.0).abs() < 1e-12);
    }
}
