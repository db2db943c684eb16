//! The twelve benchmark queries of the brief, as SQL text over the tables `logs` and
//! `services`, with parameters taken deterministically from the generated data
//! ([`QueryParams::for_workload`]): the probes exist in the data without scanning it.
//!
//! The same text runs on Strata and in-process DataFusion (Strata embeds DataFusion 55).
//! DuckDB and Polars get the same text except where their dialect differs (the percentile
//! function); those variants are in [`Query::duckdb`] and [`Query::polars`].

use crate::workload::{
    DAY_START_US, DAY_US, RARE_TOKEN, TIMEOUT_TOKEN, request_id_of, tenant_name, trace_id_of,
};

/// Values the queries look up, all present in the workload they were derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParams {
    /// A `request_id` of a row in the middle of the day.
    pub request_id: u64,
    /// A `trace_id` started about a fifth of the way into the day.
    pub trace_id: String,
    /// The tenant of the per-minute histogram (the fourth most frequent).
    pub tenant: String,
    /// Start of the last hour of data, as `YYYY-MM-DD HH:MM:SS` (UTC, no zone).
    pub last_hour_start: String,
    /// The rare token.
    pub rare_token: String,
    /// The word of the newest-first search.
    pub search_word: String,
}

impl QueryParams {
    /// Parameters for the workload generated from `seed` with `rows` rows.
    pub fn for_workload(seed: u64, rows: u64) -> Self {
        let row = if rows == 0 {
            0
        } else {
            (rows / 2 + 7).min(rows - 1)
        };
        let last_hour_us = DAY_START_US + DAY_US - 3_600_000_000;
        Self {
            request_id: request_id_of(seed, row),
            trace_id: trace_id_of(seed, rows / 10),
            tenant: tenant_name(3),
            last_hour_start: format_ts(last_hour_us),
            rare_token: RARE_TOKEN.to_string(),
            search_word: TIMEOUT_TOKEN.to_string(),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a UTC timestamp in microseconds (whole seconds).
pub fn format_ts(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One benchmark query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Short identifier, used in the table and the JSON (`point_lookup`, …).
    pub name: &'static str,
    /// The query kind as the brief names it.
    pub title: &'static str,
    /// SQL for Strata and DataFusion.
    pub sql: String,
    /// SQL for DuckDB.
    pub duckdb: String,
    /// SQL for Polars' SQL context.
    pub polars: String,
    /// Whether the answer is exact, so two engines must return the same values (not only
    /// the same number of rows). False for approximate percentiles.
    pub exact: bool,
}

impl Query {
    fn same(name: &'static str, title: &'static str, sql: String) -> Self {
        Self {
            name,
            title,
            duckdb: sql.clone(),
            polars: sql.clone(),
            sql,
            exact: true,
        }
    }
}

/// The twelve queries over the tables `logs` and `services`.
pub fn queries(p: &QueryParams) -> Vec<Query> {
    let p99 = |f: &str| format!("SELECT path, {f} AS p99 FROM logs GROUP BY path ORDER BY path");
    vec![
        Query::same(
            "point_lookup",
            "point lookup by id",
            format!("SELECT * FROM logs WHERE request_id = {}", p.request_id),
        ),
        Query::same(
            "trace_lookup",
            "trace lookup ordered by time",
            format!(
                "SELECT ts, service, host, level, latency_ms, message FROM logs WHERE trace_id = '{}' ORDER BY ts",
                p.trace_id
            ),
        ),
        Query::same(
            "last_hour_by_level",
            "last-hour aggregate by level",
            format!(
                "SELECT level, count(*) AS n, max(latency_ms) AS max_latency_ms FROM logs \
                 WHERE ts >= TIMESTAMP '{}' GROUP BY level ORDER BY level",
                p.last_hour_start
            ),
        ),
        Query::same(
            "tenant_minutes",
            "per-minute histogram for one tenant",
            format!(
                "SELECT date_trunc('minute', ts) AS minute, count(*) AS n FROM logs \
                 WHERE tenant = '{}' GROUP BY 1 ORDER BY 1",
                p.tenant
            ),
        ),
        Query::same(
            "top_hosts",
            "top-k hosts",
            "SELECT host, count(*) AS n FROM logs GROUP BY host ORDER BY n DESC, host LIMIT 10".to_string(),
        ),
        Query {
            name: "p99_per_path",
            title: "p99 latency per path",
            sql: p99("approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)"),
            duckdb: p99("approx_quantile(latency_ms, 0.99)"),
            polars: p99("quantile_cont(latency_ms, 0.99)"),
            exact: false,
        },
        Query::same(
            "errors_per_service",
            "errors per service",
            "SELECT service, count(*) AS errors FROM logs WHERE level IN ('ERROR', 'FATAL') \
             GROUP BY service ORDER BY errors DESC, service"
                .to_string(),
        ),
        Query::same(
            "rare_token",
            "rare-token LIKE count",
            format!("SELECT count(*) AS n FROM logs WHERE message LIKE '%{}%'", p.rare_token),
        ),
        Query::same(
            "timeout_newest",
            "`timeout` search newest-first LIMIT 100",
            format!(
                "SELECT ts, host, service, message FROM logs WHERE message LIKE '%{}%' ORDER BY ts DESC LIMIT 100",
                p.search_word
            ),
        ),
        Query::same(
            "distinct_users",
            "count distinct users",
            "SELECT count(DISTINCT user_id) AS users FROM logs".to_string(),
        ),
        Query::same(
            "join_services",
            "join with the dimension table",
            "SELECT s.team, s.tier, count(*) AS n, sum(l.bytes) AS bytes FROM logs l \
             JOIN services s ON l.service = s.service GROUP BY s.team, s.tier ORDER BY n DESC, s.team, s.tier"
                .to_string(),
        ),
        Query::same(
            "last_row_per_host",
            "last row per host",
            "SELECT host, ts, level, latency_ms FROM (SELECT host, ts, level, latency_ms, \
             row_number() OVER (PARTITION BY host ORDER BY ts DESC) AS rn FROM logs) t \
             WHERE rn = 1 ORDER BY host"
                .to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(format_ts(DAY_START_US), "2025-01-01 00:00:00");
        assert_eq!(
            format_ts(DAY_START_US + DAY_US - 3_600_000_000),
            "2025-01-01 23:00:00"
        );
        assert_eq!(format_ts(0), "1970-01-01 00:00:00");
        assert_eq!(format_ts(951_782_400_000_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn twelve_distinct_queries() {
        let q = queries(&QueryParams::for_workload(42, 1_000_000));
        assert_eq!(q.len(), 12);
        let mut names: Vec<_> = q.iter().map(|q| q.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 12);
        assert!(q[0].sql.contains(&request_id_of(42, 500_007).to_string()));
    }
}
