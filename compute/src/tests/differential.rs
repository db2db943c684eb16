//! A differential SQL fuzzer: seeded random queries over the `logs` fixture (segments, an
//! unflushed WAL tail, a delete rule) and the `services` table, answered by Strata and by
//! DataFusion in-process over the same live rows as plain in-memory tables; answers must be
//! equal (order-insensitive unless fully ordered, floats with tolerance).
//!
//! Every rewrite Strata adds (last row per key, aggregation before joins, join guards) and
//! every pruning path (time, shard, statistics, bloom filters, the WAL tail) sits between
//! the SQL and the answer, so a wrong prune or rewrite shows up as a mismatch.
//!
//! `STRATA_SQL_FUZZ_QUERIES=N` (default 300) and `STRATA_SQL_FUZZ_SEED=S` (default 1); a
//! mismatch prints the query and the seed that generated it.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::testing::{
    Cell, Fixture, LogRow, RARE_TOKEN, Rng, STEP, T0, cells, logs_batch, query, services_def,
    test_config, ts_lit,
};

/// Rows this fuzzer's delete rule hides.
const DELETED: &str = "status = 404 AND level = 'INFO'";

fn deleted(r: &LogRow) -> bool {
    r.status == 404 && r.level == "INFO"
}

/// A random predicate over `logs` columns (prefixed with `p`).
fn predicate(rng: &mut Rng, rows: &[LogRow], p: &str, depth: u32) -> String {
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
fn random_query(rng: &mut Rng, rows: &[LogRow]) -> (String, bool) {
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
        5 => (
            format!(
                "SELECT host, ts, request_id FROM (SELECT host, ts, request_id, \
                 row_number() OVER (PARTITION BY host ORDER BY ts DESC, request_id DESC) AS rn \
                 FROM logs WHERE {w}) WHERE rn = 1"
            ),
            false,
        ),
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
fn sorted(mut rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
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
async fn reference(f: &Fixture, live: &[LogRow]) -> SessionContext {
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

async fn reference_answer(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    Ok(cells(&batches))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_answers_like_datafusion_on_random_queries() {
    let n = env_u64("STRATA_SQL_FUZZ_QUERIES", 300);
    let seed = env_u64("STRATA_SQL_FUZZ_SEED", 1);
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let mut rng = Rng::new(seed);
    let (mut checked, mut empty, mut both_failed) = (0u64, 0u64, 0u64);
    for phase in ["segments + WAL", "after a delete"] {
        let live: Vec<LogRow> = if phase == "after a delete" {
            f.catalog
                .add_delete_rule("logs", DELETED)
                .await
                .expect("delete rule");
            f.rows.iter().filter(|r| !deleted(r)).cloned().collect()
        } else {
            f.rows.clone()
        };
        let ctx = reference(&f, &live).await;
        for i in 0..n / 2 {
            let (sql, ordered) = random_query(&mut rng, &f.rows);
            let expected = reference_answer(&ctx, &sql).await;
            let got = match engine.execute(&sql, &Default::default()).await {
                Ok(r) => r
                    .collect()
                    .await
                    .map(|b| cells(&b))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let (expected, got) = match (expected, got) {
                (Ok(e), Ok(g)) => (e, g),
                (Err(_), Err(_)) => {
                    both_failed += 1;
                    continue;
                }
                (e, g) => panic!(
                    "seed {seed}, {phase}, query {i}: one engine failed\n{sql}\n\
                     DataFusion: {e:?}\nStrata: {g:?}"
                ),
            };
            let (expected, got) = if ordered {
                (expected, got)
            } else {
                (sorted(expected), sorted(got))
            };
            if expected != got {
                panic!(
                    "seed {seed}, {phase}, query {i}: answers differ\n{sql}\n\
                     DataFusion ({} rows): {:?}\nStrata ({} rows): {:?}\n\
                     replay: STRATA_SQL_FUZZ_SEED={seed} STRATA_SQL_FUZZ_QUERIES={n} \
                     cargo test -p strata-compute --lib differential",
                    expected.len(),
                    &expected[..expected.len().min(5)],
                    got.len(),
                    &got[..got.len().min(5)],
                );
            }
            checked += 1;
            empty += u64::from(expected.is_empty());
        }
    }
    // The delete rule really hides rows from Strata.
    let hidden = query(
        &engine,
        &format!("SELECT count(*) FROM logs WHERE {DELETED}"),
    )
    .await;
    assert_eq!(hidden, vec![vec![Cell::I(0)]]);
    let paths = engine.paths();
    eprintln!(
        "differential: {checked} queries equal ({empty} empty answers), {both_failed} refused \
         by both, seed {seed}; paths taken: {paths:?}"
    );
    // Every rewrite and pruning path was exercised (a path no query reaches checks nothing).
    for (path, n) in &paths {
        assert!(*n > 0, "no generated query took the path `{path}`");
    }
    assert!(
        checked >= n * 9 / 10,
        "most queries must run: {checked} of {n}"
    );
}
