//! Seeded random SQL over the `logs` fixture and the `services` table (filters on every
//! column type, time windows, aggregates with and without GROUP BY, joins, window functions,
//! ORDER BY/LIMIT, DISTINCT, subqueries), and DataFusion in-process over the same rows as the
//! reference: the parts of the differential fuzzer that every phase shares.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::{
    Cell, Fixture, LogRow, RARE_TOKEN, Rng, STEP, T0, cells, logs_batch, services_def, ts_lit,
};

/// Rows this fuzzer's delete rule hides.
pub const DELETED: &str = "status = 404 AND level = 'INFO'";

pub fn deleted(r: &LogRow) -> bool {
    r.status == 404 && r.level == "INFO"
}

/// A random predicate over `logs` columns (prefixed with `p`).
pub fn predicate(rng: &mut Rng, rows: &[LogRow], p: &str, depth: u32) -> String {
    let pick = |rng: &mut Rng| &rows[rng.below(rows.len() as u64) as usize];
    let span = rows.len() as i64 * STEP;
    match rng.below(if depth > 1 { 17 } else { 20 }) {
        0 | 1 => {
            let a = T0 + rng.below(span as u64) as i64;
            let b = a + rng.below((span / 3) as u64) as i64;
            format!("{p}ts >= {} AND {p}ts < {}", ts_lit(a), ts_lit(b))
        }
        2 => format!("{p}host = '{}'", pick(rng).host),
        3 => format!("{p}host = 'h999'"),
        4 => {
            let hosts: Vec<String> = (0..1 + rng.below(4))
                .map(|_| format!("'{}'", pick(rng).host))
                .collect();
            format!("{p}host IN ({})", hosts.join(", "))
        }
        5 => {
            let level = ["ERROR", "WARN", "DEBUG", "INFO", "FATAL"][rng.below(5) as usize];
            if rng.below(2) == 0 {
                format!("{p}level = '{level}'")
            } else {
                format!("{p}level <> '{level}'")
            }
        }
        6 => format!(
            "{p}status >= {}",
            [200, 400, 404, 500][rng.below(4) as usize]
        ),
        7 => format!("{p}latency_ms > {:.3}", rng.unit() * 60.0),
        8 => {
            let a = 100 + rng.below(10_000);
            format!("{p}bytes BETWEEN {a} AND {}", a + rng.below(3_000))
        }
        9 => {
            if rng.below(3) == 0 {
                format!("{p}request_id = 17") // no such id
            } else {
                format!("{p}request_id = {}", pick(rng).request_id)
            }
        }
        10 => format!("{p}trace_id = '{}'", pick(rng).trace_id),
        11 => format!("{p}message LIKE '%{RARE_TOKEN}%'"),
        12 => format!("{p}path LIKE '/api/v1/r{}%'", rng.below(10)),
        13 => format!("{p}user_id IS NOT NULL AND {p}user_id < {}", rng.below(50)),
        14 => format!("{p}tenant = 't{}'", rng.below(10)),
        15 => format!("{p}request_id > {}", pick(rng).request_id),
        16 => format!("{p}ts > {}", ts_lit(pick(rng).ts)),
        17 => format!("NOT ({})", predicate(rng, rows, p, depth + 1)),
        18 => format!(
            "({} OR {})",
            predicate(rng, rows, p, depth + 1),
            predicate(rng, rows, p, depth + 1)
        ),
        _ => format!(
            "{} AND {}",
            predicate(rng, rows, p, depth + 1),
            predicate(rng, rows, p, depth + 1)
        ),
    }
}

/// A random query, and whether its order is part of the answer.
pub fn random_query(rng: &mut Rng, rows: &[LogRow]) -> (String, bool) {
    let groups = [
        "host",
        "level",
        "service",
        "status",
        "tenant",
        "date_trunc('hour', ts)",
    ];
    let g = groups[rng.below(groups.len() as u64) as usize];
    let w = predicate(rng, rows, "", 0);
    match rng.below(11) {
        0 => (
            format!(
                "SELECT count(*), count(DISTINCT host), sum(bytes), min(ts), max(latency_ms) \
                 FROM logs WHERE {w}"
            ),
            false,
        ),
        1 => (
            format!(
                "SELECT {g}, count(*), sum(bytes), avg(latency_ms), max(ts) FROM logs \
                 WHERE {w} GROUP BY {g}"
            ),
            false,
        ),
        2 => (
            format!(
                "SELECT request_id, host, ts, status FROM logs WHERE {w} ORDER BY request_id {} \
                 LIMIT {}",
                if rng.below(2) == 0 { "ASC" } else { "DESC" },
                1 + rng.below(50)
            ),
            true,
        ),
        3 => (format!("SELECT DISTINCT {g} FROM logs WHERE {w}"), false),
        4 => {
            let w = predicate(rng, rows, "l.", 0);
            (
                format!(
                    "SELECT s.team, s.tier, count(*), sum(l.bytes) FROM logs l \
                     JOIN services s ON l.service = s.service WHERE {w} GROUP BY s.team, s.tier"
                ),
                false,
            )
        }
        5 => {
            // One ordering column (times are unique per row, so no ties): the join-back form;
            // two: the ordered first_value aggregate.
            let key = ["host", "service", "tenant"][rng.below(3) as usize];
            if rng.below(4) == 0 {
                // The same, written as a join back to an aggregate of the same rows.
                return (
                    format!(
                        "SELECT l.{key}, l.ts, l.request_id, l.status FROM \
                         (SELECT * FROM logs WHERE {w}) l JOIN \
                         (SELECT {key}, max(ts) AS m FROM logs WHERE {w} GROUP BY {key}) a \
                         ON l.{key} = a.{key} AND l.ts = a.m"
                    ),
                    false,
                );
            }
            let order = match rng.below(3) {
                0 => "ts DESC".to_string(),
                1 => "ts ASC".to_string(),
                _ => "ts DESC, request_id DESC".to_string(),
            };
            (
                format!(
                    "SELECT {key}, ts, request_id, status FROM (SELECT {key}, ts, request_id, \
                     status, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS rn \
                     FROM logs WHERE {w}) WHERE rn = 1"
                ),
                false,
            )
        }
        6 => {
            let inner = predicate(rng, rows, "", 0);
            (
                format!(
                    "SELECT count(*) FROM logs WHERE {w} AND host IN \
                     (SELECT host FROM logs WHERE {inner})"
                ),
                false,
            )
        }
        7 => (
            format!(
                "SELECT {g}, count(*) AS c FROM logs WHERE {w} GROUP BY {g} \
                 ORDER BY c DESC, {g} LIMIT 5"
            ),
            true,
        ),
        8 => (
            format!(
                "SELECT host, request_id, sum(bytes) OVER (PARTITION BY host ORDER BY ts, \
                 request_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM logs \
                 WHERE {w}"
            ),
            false,
        ),
        9 => {
            let w = predicate(rng, rows, "l.", 0);
            (
                format!(
                    "SELECT l.host, l.ts, l.request_id FROM logs AS l JOIN \
                     (SELECT host, max(ts) AS max_ts FROM logs GROUP BY host) AS m \
                     ON l.host = m.host AND l.ts = m.max_ts WHERE {w}"
                ),
                false,
            )
        }
        _ => (
            format!(
                "SELECT level, count(*) FILTER (WHERE status >= 500), \
                 approx_distinct(host) >= 0 FROM logs WHERE {w} GROUP BY level"
            ),
            false,
        ),
    }
}

/// Rows sorted by a key that is stable under float noise (for order-insensitive answers).
pub fn sorted(mut rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    let key = |row: &Vec<Cell>| -> String {
        row.iter()
            .map(|c| match c {
                Cell::F(f) | Cell::Approx(f, _) => format!("F{:.6e}", f),
                Cell::I(i) => format!("I{i:040}"),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    rows.sort_by_cached_key(key);
    rows
}

/// DataFusion in-process over the same live rows, as plain in-memory tables.
pub async fn reference(f: &Fixture, live: &[LogRow]) -> SessionContext {
    let ctx = SessionContext::new();
    let logs = logs_batch(live, false);
    ctx.register_table(
        "logs",
        Arc::new(MemTable::try_new(logs.schema(), vec![vec![logs]]).expect("logs table")),
    )
    .expect("register logs");
    let services = services_def();
    let batch = arrow::array::RecordBatch::try_new(
        services.schema_ref(),
        vec![
            Arc::new(arrow::array::StringArray::from_iter_values(
                f.services.iter().map(|s| s.0.as_str()),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                f.services.iter().map(|s| s.1.as_str()),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                f.services.iter().map(|s| s.2.as_str()),
            )),
        ],
    )
    .expect("services batch");
    ctx.register_table(
        "services",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("services")),
    )
    .expect("register services");
    ctx
}

pub async fn reference_answer(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    Ok(cells(&batches))
}
