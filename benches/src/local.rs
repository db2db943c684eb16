//! In-process baselines on the same Parquet files on local disk: DataFusion (linked in), and
//! DuckDB / Polars through a `python3` subprocess when those modules import.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::queries::Query;
use crate::stats::Samples;
use crate::workload::{ParquetDataset, logs_schema, services_schema};

/// One query's timings on one engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineTiming {
    /// First run in a new session, ms.
    pub cold_ms: Option<f64>,
    /// Median of the warm runs, ms.
    pub warm_ms: Option<f64>,
    /// Rows returned.
    pub rows: Option<u64>,
    /// Why there are no numbers.
    pub error: Option<String>,
}

/// A DataFusion session over the dataset with `threads` target partitions and default
/// settings otherwise, the tables registered as `logs` and `services`.
pub async fn datafusion_context(ds: &ParquetDataset, threads: usize) -> Result<SessionContext> {
    let config = SessionConfig::new().with_target_partitions(threads.max(1));
    let ctx = SessionContext::new_with_config(config);
    let opts =
        || ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let url = |p: &Path| format!("{}/", p.display());
    ctx.register_listing_table(
        "logs",
        url(&ds.logs_dir()),
        opts(),
        Some(logs_schema()),
        None,
    )
    .await?;
    ctx.register_listing_table(
        "services",
        url(&ds.services_dir()),
        opts(),
        Some(services_schema()),
        None,
    )
    .await?;
    Ok(ctx)
}

/// Run `sql` and materialise the result.
pub async fn datafusion_run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Run every query on DataFusion: once cold (in a new session), then `warm` times.
/// Returns the timings and each query's result (of the cold run).
pub async fn datafusion_suite(
    ds: &ParquetDataset,
    queries: &[Query],
    threads: usize,
    warm: usize,
) -> Result<(Vec<EngineTiming>, Vec<Option<Vec<RecordBatch>>>)> {
    let mut timings = Vec::with_capacity(queries.len());
    let mut results = Vec::with_capacity(queries.len());
    for q in queries {
        let ctx = datafusion_context(ds, threads).await?;
        let t0 = Instant::now();
        match datafusion_run(&ctx, &q.sql).await {
            Ok(batches) => {
                let cold = t0.elapsed();
                let mut s = Samples::new();
                for _ in 0..warm {
                    let t = Instant::now();
                    datafusion_run(&ctx, &q.sql).await?;
                    s.push(t.elapsed());
                }
                timings.push(EngineTiming {
                    cold_ms: Some(crate::stats::ms(cold)),
                    warm_ms: s.median().map(crate::stats::ms),
                    rows: Some(batches.iter().map(|b| b.num_rows() as u64).sum()),
                    error: None,
                });
                results.push(Some(batches));
            }
            Err(e) => {
                timings.push(EngineTiming {
                    error: Some(e.to_string()),
                    ..EngineTiming::default()
                });
                results.push(None);
            }
        }
    }
    Ok((timings, results))
}

/// Engines reachable through Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyEngine {
    DuckDb,
    Polars,
}

impl PyEngine {
    /// Module name, also the engine's name in the report.
    pub fn module(self) -> &'static str {
        match self {
            PyEngine::DuckDb => "duckdb",
            PyEngine::Polars => "polars",
        }
    }

    fn sql(self, q: &Query) -> &str {
        match self {
            PyEngine::DuckDb => &q.duckdb,
            PyEngine::Polars => &q.polars,
        }
    }
}

/// The module's version if `python3 -c "import <module>"` works.
pub async fn python_module_version(module: &str) -> Option<String> {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}; print({module}.__version__)"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

const PY_RUNNER: &str = r#"
import json, os, sys, time
engine, spec_path = sys.argv[1], sys.argv[2]
spec = json.load(open(spec_path))
threads = str(spec["threads"])
os.environ["POLARS_MAX_THREADS"] = threads
tables = {name: os.path.join(d, "*.parquet") for name, d in spec["tables"].items()}
if engine == "duckdb":
    import duckdb
    def session():
        con = duckdb.connect()
        con.execute(f"SET threads = {threads}")
        for name, glob in tables.items():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}')")
        return con
    def run(con, sql):
        r = con.execute(sql)
        t = r.to_arrow_table() if hasattr(r, "to_arrow_table") else r.fetch_arrow_table()
        return t.num_rows
else:
    import polars as pl
    def session():
        return pl.SQLContext(**{name: pl.scan_parquet(glob) for name, glob in tables.items()})
    def run(ctx, sql):
        return ctx.execute(sql).collect().height
out = {}
for q in spec["queries"]:
    try:
        s = session()
        t = time.perf_counter(); rows = run(s, q["sql"]); cold = (time.perf_counter() - t) * 1000
        warm = []
        for _ in range(spec["warm"]):
            t = time.perf_counter(); run(s, q["sql"]); warm.append((time.perf_counter() - t) * 1000)
        warm.sort()
        out[q["name"]] = {"cold_ms": cold, "warm_ms": warm[(len(warm) - 1) // 2] if warm else None, "rows": rows}
    except Exception as e:
        out[q["name"]] = {"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
print(json.dumps(out))
"#;

#[derive(Serialize)]
struct PySpec<'a> {
    threads: usize,
    warm: usize,
    /// Table name → folder of its Parquet files.
    tables: BTreeMap<String, String>,
    queries: Vec<PyQuery<'a>>,
}

/// One named query for a Python engine.
#[derive(Debug, Serialize)]
pub struct PyQuery<'a> {
    /// The query's name in the report.
    pub name: &'a str,
    /// The SQL in the engine's dialect.
    pub sql: &'a str,
}

/// Run every query on `engine` in a `python3` subprocess (one cold run in a new session,
/// then `warm` runs), with `limit` for the whole suite.
pub async fn python_suite(
    engine: PyEngine,
    ds: &ParquetDataset,
    queries: &[Query],
    threads: usize,
    warm: usize,
    work_dir: &Path,
    limit: Duration,
) -> Result<Vec<EngineTiming>> {
    let tables = [("logs", ds.logs_dir()), ("services", ds.services_dir())]
        .into_iter()
        .map(|(name, dir)| (name.to_string(), dir))
        .collect();
    let named: Vec<PyQuery<'_>> = queries
        .iter()
        .map(|q| PyQuery {
            name: q.name,
            sql: engine.sql(q),
        })
        .collect();
    let mut parsed = python_run(engine, &tables, named, threads, warm, work_dir, limit).await?;
    Ok(queries
        .iter()
        .map(|q| parsed.remove(q.name).unwrap_or_default())
        .collect())
}

/// Run `queries` on `engine` in a `python3` subprocess over `tables` (name → folder of Parquet
/// files, one view each): per query one cold run in a new session, then `warm` runs; `limit`
/// for the whole run. Timings by query name.
pub async fn python_run(
    engine: PyEngine,
    tables: &BTreeMap<String, std::path::PathBuf>,
    queries: Vec<PyQuery<'_>>,
    threads: usize,
    warm: usize,
    work_dir: &Path,
    limit: Duration,
) -> Result<BTreeMap<String, EngineTiming>> {
    let spec = PySpec {
        threads,
        warm,
        tables: tables
            .iter()
            .map(|(name, dir)| (name.clone(), dir.display().to_string()))
            .collect(),
        queries,
    };
    let spec_path = work_dir.join(format!("{}-spec.json", engine.module()));
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    let child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(PY_RUNNER)
        .arg(engine.module())
        .arg(&spec_path)
        .env("POLARS_MAX_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("{} did not finish within {limit:?}", engine.module()))??;
    if !out.status.success() {
        return Err(format!(
            "{} runner failed ({}): {}",
            engine.module(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::first_count;
    use crate::queries::{QueryParams, queries};
    use crate::workload::{HOSTS, SERVICES, write_parquet};

    /// Every query runs on DataFusion over generated files, with answers checked against
    /// what the generator guarantees.
    #[tokio::test]
    async fn every_query_runs_on_datafusion_with_plausible_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = 60_000;
        let ds = write_parquet(dir.path(), 3, rows, 2).expect("write");
        let qs = queries(&QueryParams::for_workload(3, rows));
        let (timings, results) = datafusion_suite(&ds, &qs, 2, 1).await.expect("suite");
        let n = |name: &str| {
            let i = qs
                .iter()
                .position(|q| q.name == name)
                .expect("query exists");
            assert!(timings[i].error.is_none(), "{name}: {:?}", timings[i].error);
            results[i].clone().expect("result")
        };
        assert_eq!(crate::flight::row_count(&n("point_lookup")), 1);
        let trace = crate::flight::row_count(&n("trace_lookup"));
        assert!((1..=9).contains(&trace), "trace rows {trace}");
        assert_eq!(crate::flight::row_count(&n("last_hour_by_level")), 5);
        let minutes = crate::flight::row_count(&n("tenant_minutes"));
        assert!((1000..=1440).contains(&minutes), "minutes {minutes}");
        assert_eq!(crate::flight::row_count(&n("top_hosts")), 10);
        let paths = crate::flight::row_count(&n("p99_per_path"));
        assert!(paths > 990, "paths {paths}");
        let services = crate::flight::row_count(&n("errors_per_service"));
        assert!(
            services > 150 && services <= SERVICES,
            "services {services}"
        );
        let rare = first_count(&n("rare_token")).expect("count");
        assert!(rare <= 30, "rare {rare}");
        assert_eq!(crate::flight::row_count(&n("timeout_newest")), 100);
        let users = first_count(&n("distinct_users")).expect("count");
        assert!(users > 10_000 && users < rows, "users {users}");
        assert_eq!(crate::flight::row_count(&n("join_services")), 60);
        let hosts = crate::flight::row_count(&n("last_row_per_host"));
        assert!(hosts > HOSTS * 9 / 10 && hosts <= HOSTS, "hosts {hosts}");
    }
}
