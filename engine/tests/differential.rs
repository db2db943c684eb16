//! The differential SQL fuzzer: seeded random queries (`strata_compute::testing::sqlfuzz`)
//! answered by Strata and by DataFusion in-process over the same live rows as plain in-memory
//! tables; answers must be equal (order-insensitive unless fully ordered, floats with
//! tolerance). The `logs` fixture has segments and an unflushed WAL tail; the phases then add
//! a delete rule, a retention period, and a real compaction pass (which applies both while
//! merging, and measures bloom filters), so every rewrite and pruning path is checked on the
//! data as ingest writes it and as compaction rewrites it.
//!
//! `STRATA_SQL_FUZZ_QUERIES=N` (default 400, split over the phases) and
//! `STRATA_SQL_FUZZ_SEED=S` (default 1); a mismatch prints the query and how to replay it:
//!
//! ```sh
//! STRATA_SQL_FUZZ_QUERIES=100000 cargo test --release --workspace --test differential -- --nocapture
//! ```

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use strata::lifecycle::{LifecycleOptions, run_pass};
use strata::tenants::Tenants;
use strata_compute::QueryEngine;
use strata_compute::testing::sqlfuzz::{
    DELETED, deleted, random_query, reference, reference_answer, sorted,
};
use strata_compute::testing::{Cell, Fixture, LogRow, Rng, T0, cells, query, test_config};

const HOUR: i64 = 3_600_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What the fuzzer has checked so far.
#[derive(Debug, Default)]
struct Tally {
    checked: u64,
    empty: u64,
    both_failed: u64,
    /// Queries during which the retention cutoff passed a row: not comparable.
    boundary: u64,
}

/// The rows a query should see: not deleted (once the rule exists), not older than the
/// retention cutoff at `now` (once retention is set).
struct Live<'a> {
    rows: &'a [LogRow],
    deletes: bool,
    retention_secs: Option<i64>,
}

impl Live<'_> {
    fn is_live(&self, r: &LogRow, cutoff: i64) -> bool {
        !(self.deletes && deleted(r)) && r.ts >= cutoff
    }

    fn cutoff(&self, now: i64) -> i64 {
        self.retention_secs
            .map_or(i64::MIN, |s| now - s * 1_000_000)
    }

    fn at(&self, now: i64) -> Vec<LogRow> {
        let cutoff = self.cutoff(now);
        self.rows
            .iter()
            .filter(|r| self.is_live(r, cutoff))
            .cloned()
            .collect()
    }

    /// How many rows are live at `now` (without copying them: checked around every query).
    fn count_at(&self, now: i64) -> usize {
        let cutoff = self.cutoff(now);
        self.rows.iter().filter(|r| self.is_live(r, cutoff)).count()
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    phase: &str,
    n: u64,
    seed: u64,
    rng: &mut Rng,
    f: &Fixture,
    engine: &QueryEngine,
    live: &Live<'_>,
    tally: &mut Tally,
) {
    let mut rows = live.at(now_micros());
    let mut ctx: SessionContext = reference(f, &rows).await;
    let started = std::time::Instant::now();
    for i in 0..n {
        if i > 0 && i % PROGRESS_EVERY == 0 {
            progress(phase, i, n, started, tally);
        }
        let (sql, ordered) = random_query(rng, &f.rows);
        if live.count_at(now_micros()) != rows.len() {
            rows = live.at(now_micros());
            ctx = reference(f, &rows).await;
        }
        let expected = reference_answer(&ctx, &sql).await;
        let got = match engine.execute(&sql, &Default::default()).await {
            Ok(r) => r
                .collect()
                .await
                .map(|b| cells(&b))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if live.count_at(now_micros()) != rows.len() {
            tally.boundary += 1;
            continue;
        }
        let (expected, got) = match (expected, got) {
            (Ok(e), Ok(g)) => (e, g),
            (Err(_), Err(_)) => {
                tally.both_failed += 1;
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
                 replay: STRATA_SQL_FUZZ_SEED={seed} STRATA_SQL_FUZZ_QUERIES={} \
                 cargo test --workspace --test differential",
                expected.len(),
                &expected[..expected.len().min(5)],
                got.len(),
                &got[..got.len().min(5)],
                n * 4,
            );
        }
        tally.checked += 1;
        tally.empty += u64::from(expected.is_empty());
    }
    progress(phase, n, n, started, tally);
}

/// Queries between progress lines of a long run.
const PROGRESS_EVERY: u64 = 1_000;

/// One line on stderr: where the run is, how fast it goes, what it has checked so far
/// (a long run that hits a time limit still says how far it got).
fn progress(phase: &str, done: u64, of: u64, started: std::time::Instant, tally: &Tally) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "differential: {phase}: {done}/{of} queries in {secs:.0} s ({:.1}/s); {tally:?}",
        done as f64 / secs.max(1e-9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_answers_like_datafusion_on_random_queries() {
    let n = env_u64("STRATA_SQL_FUZZ_QUERIES", 400);
    let seed = env_u64("STRATA_SQL_FUZZ_SEED", 1);
    let per_phase = n.div_ceil(4);
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut live = Live {
        rows: &f.rows,
        deletes: false,
        retention_secs: None,
    };

    // 1. Segments and the unflushed WAL tail, as ingest left them.
    let phase = "segments + WAL";
    run_phase(
        phase, per_phase, seed, &mut rng, &f, &engine, &live, &mut tally,
    )
    .await;

    // 2. A delete rule, applied at read time.
    f.catalog
        .add_delete_rule("logs", DELETED)
        .await
        .expect("delete rule");
    engine.note_change("logs");
    live.deletes = true;
    let phase = "after a delete";
    run_phase(
        phase, per_phase, seed, &mut rng, &f, &engine, &live, &mut tally,
    )
    .await;

    // 3. Retention: everything older than the first 8 hours of the day's data expires (the
    //    first quarter of each shard's segments wholly, the second partly).
    let secs = (now_micros() - (T0 + 8 * HOUR)) / 1_000_000;
    f.catalog
        .commit("logs", |m| {
            m.table.retention_secs = Some(secs as u64);
            Ok(())
        })
        .await
        .expect("set retention");
    engine.note_change("logs");
    live.retention_secs = Some(secs);
    let phase = "with retention";
    run_phase(
        phase, per_phase, seed, &mut rng, &f, &engine, &live, &mut tally,
    )
    .await;

    // 4. A real compaction pass: drops expired segments, rewrites the rest applying the
    //    delete rule and retention, sorts by time and measures bloom filters.
    let catalog_before = f.catalog.load("logs").await.expect("logs");
    let report = run_pass(
        &Tenants::new(Arc::clone(&f.store)),
        &LifecycleOptions::default(),
        None,
    )
    .await
    .expect("a compaction pass");
    let t = report
        .tables
        .iter()
        .find(|t| t.table == "logs")
        .expect("logs was maintained");
    assert!(t.errors.is_empty(), "{report}");
    assert!(
        t.runs > 0 && t.expired_segments > 0 && t.rows_deleted > 0 && t.rows_expired > 0,
        "compaction merged, expired and deleted: {report}"
    );
    let after = f.catalog.load("logs").await.expect("logs");
    assert!(after.segments.len() < catalog_before.segments.len());
    engine.note_change("logs");
    let phase = "after compaction";
    run_phase(
        phase, per_phase, seed, &mut rng, &f, &engine, &live, &mut tally,
    )
    .await;

    // The delete rule and retention really hide rows from Strata.
    let hidden = query(
        &engine,
        &format!("SELECT count(*) FROM logs WHERE {DELETED}"),
    )
    .await;
    assert_eq!(hidden, vec![vec![Cell::I(0)]]);
    let paths = engine.paths();
    eprintln!(
        "differential: {tally:?} of {} queries, seed {seed}; compaction: {report}\npaths taken: {paths:?}",
        per_phase * 4
    );
    // Every rewrite and pruning path was exercised (a path no query reaches checks nothing).
    for (path, n) in &paths {
        assert!(*n > 0, "no generated query took the path `{path}`");
    }
    assert!(
        tally.checked >= per_phase * 4 * 9 / 10,
        "most queries must run: {tally:?}"
    );
}
