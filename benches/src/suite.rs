//! The end-to-end suite behind `strata-bench`: generate the workload, measure the baselines
//! and the in-process engines on the Parquet files, start `strata serve`, measure ingest,
//! then each query cold (fresh server, empty cache) and warm, and optionally the same at a
//! second size. Every phase that fails leaves a note and `n/a` cells; the run goes on.
//!
//! Order matters on a 2-core machine: nothing else runs while something is measured (the
//! in-process engines run before the server starts; the server is stopped between phases).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use clap::Parser;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use serde::Serialize;

use crate::Result;
use crate::encode::{EncodeRate, segment_encode_rate, wal_encode_rate, with_offsets};
use crate::flight::{FlightClient, row_count};
use crate::ingest::{
    IngestResult, IngestSpec, create_table, create_table_sql, first_line, logs_table_options,
    prepare, wait_visible,
};
use crate::local::{EngineTiming, PyEngine, datafusion_suite, python_module_version, python_suite};
use crate::queries::{Query, QueryParams, queries};
use crate::report::print_report;
use crate::server::{Server, ServerOptions, metric_sum};
use crate::stats::{Samples, ms};
use crate::workload::{
    LogsGenerator, ParquetDataset, logs_schema, services_batch, services_schema, write_parquet,
};

/// Command-line options of `strata-bench`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "strata-bench",
    about = "Strata's end-to-end benchmark: ingest, the twelve query kinds cold and warm, \
             next to DataFusion, DuckDB and Polars on the same Parquet files, and the baselines."
)]
pub struct Args {
    /// Rows of the `logs` table [default: 10000000; 100000 with --quick]
    #[arg(long)]
    pub rows: Option<u64>,
    /// A second size, for how cost grows with the data (the query suite again; ratio per
    /// query); 0 turns it off [default: --rows / 10; off with --quick]
    #[arg(long)]
    pub rows2: Option<u64>,
    /// Only write the workload (`--rows` rows, `--files` Parquet files, `services.parquet`)
    /// into this folder and exit
    #[arg(long, value_name = "DIR")]
    pub generate: Option<PathBuf>,
    /// Seed of the workload generator
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Parquet files of the local copy of the data
    #[arg(long, default_value_t = 8)]
    pub files: usize,
    /// Warm runs per query, the median is reported [default: 5; 1 with --quick]
    #[arg(long)]
    pub warm: Option<usize>,
    /// Threads of the in-process engines (DataFusion partitions, DuckDB, Polars)
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Concurrent ingest writers
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Rows per run of the ingest matrix (1k/64k batches, 1/2 shards) [default: min(rows, 200000); 50000 with --quick]
    #[arg(long)]
    pub matrix_rows: Option<u64>,
    /// Smoke run (about a minute): 100k rows, 1 warm run, a small ingest matrix
    #[arg(long)]
    pub quick: bool,
    /// The `strata` binary [default: target/release/strata, else the one beside strata-bench, else target/debug/strata]
    #[arg(long, env = "STRATA_BIN")]
    pub strata_bin: Option<PathBuf>,
    /// Use this running gateway instead of starting `strata serve` (no cold numbers)
    #[arg(long)]
    pub gateway: Option<String>,
    /// Bearer token for --gateway
    #[arg(long, env = "STRATA_TOKEN")]
    pub token: Option<String>,
    /// Object store of the started server [default: $STRATA_TEST_S3_URL/bench-<run> when set, else a local folder]
    #[arg(long)]
    pub object_store: Option<String>,
    /// Use a local folder even when STRATA_TEST_S3_URL is set
    #[arg(long)]
    pub local: bool,
    /// A compute node to send the same small queries to directly, for the gateway overhead
    /// [default: the suite starts `strata compute`, `ingest` and `gateway` over the same store]
    #[arg(long)]
    pub compute_direct: Option<String>,
    /// Run `strata compact --once` on the store before the query runs
    #[arg(long)]
    pub compact: bool,
    /// Skip DuckDB and Polars
    #[arg(long)]
    pub no_python: bool,
    /// Also write the results as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Working folder for Parquet files and server data [default: a temporary folder]
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the working folder (server logs, data) after the run
    #[arg(long)]
    pub keep: bool,
    /// Keep the gateway's result cache on while measuring warm runs (then repeated queries are
    /// answered from it); by default it is off for those and measured apart (`result cache hit`)
    #[arg(long)]
    pub result_cache: bool,
    /// Load `logs` into a table made by its first write (no CREATE TABLE: no shard key, no
    /// bloom columns declared), as a new user loading files would; compare with a run without
    /// it (the tuned table)
    #[arg(long)]
    pub newcomer: bool,
    /// Run TPC-H at this scale factor instead of the logs suite: the 22 queries through Flight
    /// SQL on tables loaded with DoPut (nothing declared), next to DataFusion and DuckDB on
    /// the same Parquet files, every answer checked against DataFusion's
    #[arg(long, value_name = "SF")]
    pub tpch: Option<f64>,
    /// Measure OpenTelemetry logs ingest instead of the logs suite: this many records as
    /// OTLP/gRPC, OTLP/HTTP and (the baseline) Flight DoPut of the same rows as Arrow
    #[arg(long, value_name = "ROWS")]
    pub otlp: Option<usize>,
    /// Extra argument for `strata serve` (repeatable), e.g. --serve-arg=--query-memory-limit=1073741824
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
}

/// Settings after defaults.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub rows: u64,
    pub rows2: Option<u64>,
    pub seed: u64,
    pub files: usize,
    pub parquet_bytes: u64,
    pub threads: usize,
    pub warm_runs: usize,
    pub writers: usize,
    pub quick: bool,
    pub strata: String,
    pub strata_build: String,
    pub bench_build: String,
    pub store: String,
    pub engines: BTreeMap<String, String>,
    pub generate_secs: f64,
    pub duration_secs: f64,
}

/// Bytes read and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub bytes: u64,
    pub ms: f64,
    pub bytes_per_s: f64,
}

/// Round-trip latency.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub what: String,
    pub n: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Gateway overhead: the same query through the gateway and to a compute node directly.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub gateway: Latency,
    pub direct: Latency,
    pub p50_delta_ms: Option<f64>,
    pub p99_delta_ms: Option<f64>,
}

/// The baselines.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Baselines {
    pub raw_read_disk: Option<Throughput>,
    pub raw_read_s3: Option<Throughput>,
    pub encode_segment: Option<EncodeRate>,
    pub encode_wal: Option<EncodeRate>,
    pub flight_health: Option<Latency>,
    pub select_one: Option<Latency>,
    pub gateway_overhead: Vec<Overhead>,
}

/// One query's row of the table.
#[derive(Debug, Clone, Serialize, Default)]
pub struct QueryRow {
    pub name: String,
    pub title: String,
    pub rows: Option<u64>,
    pub strata_cold_ms: Option<f64>,
    /// Bytes read from the object store by the cold run.
    pub strata_cold_bytes: Option<f64>,
    /// Bytes the data cache fetched from the bucket in the cold run.
    pub strata_cold_cache_fetch_bytes: Option<f64>,
    pub strata_warm_ms: Option<f64>,
    /// Median of repeated runs answered by the gateway's result cache.
    pub strata_result_cache_ms: Option<f64>,
    /// What the cold run and the last warm run cost, as the server reported it
    /// (`strata_cost`: requests, bytes per cache tier, pruning, rows scanned).
    pub strata_cold_cost: Option<serde_json::Value>,
    pub strata_warm_cost: Option<serde_json::Value>,
    pub strata_error: Option<String>,
    pub datafusion: EngineTiming,
    pub duckdb: EngineTiming,
    pub polars: EngineTiming,
    pub best_baseline: Option<String>,
    pub best_baseline_ms: Option<f64>,
    /// Strata warm / best baseline warm (below 1: Strata is faster).
    pub ratio_vs_best: Option<f64>,
    /// Strata warm / DataFusion warm.
    pub ratio_vs_datafusion: Option<f64>,
    /// Answer check against DataFusion: `ok`, `ok (rows)`, `DIFFERS`, `MISMATCH`, `n/a`.
    pub check: String,
}

/// Geometric means of the warm (and cold) columns over the queries every engine answered.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Geomeans {
    pub queries: usize,
    pub strata_cold_ms: Option<f64>,
    pub strata_warm_ms: Option<f64>,
    pub strata_result_cache_ms: Option<f64>,
    pub datafusion_warm_ms: Option<f64>,
    pub duckdb_warm_ms: Option<f64>,
    pub polars_warm_ms: Option<f64>,
    pub best_baseline_warm_ms: Option<f64>,
}

/// Time of one query at both sizes.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ScalingRow {
    pub name: String,
    /// Warm ms at `--rows` (`strata_ms`) and at `--rows2` (`strata_ms2`); the ratios are
    /// always the larger size's time over the smaller size's.
    pub strata_ms: Option<f64>,
    pub strata_ms2: Option<f64>,
    pub strata_ratio: Option<f64>,
    pub datafusion_ms: Option<f64>,
    pub datafusion_ms2: Option<f64>,
    pub datafusion_ratio: Option<f64>,
}

/// Everything the run measured; printed as the table and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub baselines: Baselines,
    pub ingest: Vec<IngestResult>,
    /// From the last acknowledgement of the `logs` load until `count(*)` saw every row.
    pub visible_ms: Option<f64>,
    pub queries: Vec<QueryRow>,
    pub geomean: Geomeans,
    /// Warm point lookups through the gateway.
    pub point_lookup: Option<Latency>,
    pub scaling: Vec<ScalingRow>,
    pub notes: Vec<String>,
    /// Wrong answers and Strata errors; the exit status is non-zero when there are any.
    pub failures: Vec<String>,
    /// Per-core figures for `strata estimate` (also written to `figures.json` in the work
    /// folder); `None` when the run lacks a part they need.
    pub figures: Option<strata_common::sizing::Figures>,
    /// What the figures need beyond the tables above.
    #[serde(skip)]
    pub measured: crate::sizing::Measured,
}

/// Run the suite; returns the report (already printed, and written when `--json`).
pub async fn run(args: Args) -> Result<Report> {
    let started = Instant::now();
    let rows = args
        .rows
        .unwrap_or(if args.quick { 100_000 } else { 10_000_000 });
    let rows2 = match args.rows2 {
        Some(0) => None,
        Some(n) => Some(n),
        None if args.quick || rows < 100_000 => None,
        None => Some(rows / 10),
    };
    let warm = args.warm.unwrap_or(if args.quick { 1 } else { 5 }).max(1);
    let matrix_rows = args
        .matrix_rows
        .unwrap_or(if args.quick {
            50_000
        } else {
            rows.min(200_000)
        })
        .min(rows);
    let run_id = run_id();

    let (work, tmp) = work_folder(args.work_dir.as_deref(), "strata-bench-")?;

    let mut notes = Vec::new();
    let strata_bin = if args.gateway.is_some() {
        None
    } else {
        find_strata(args.strata_bin.as_deref())
    };
    let store = if args.gateway.is_some() {
        None
    } else if let Some(s) = &args.object_store {
        Some(s.clone())
    } else if !args.local
        && let Ok(url) = std::env::var("STRATA_TEST_S3_URL")
    {
        Some(format!("{}/bench-{run_id}", url.trim_end_matches('/')))
    } else {
        None
    };
    let store_label = match (&args.gateway, &store) {
        (Some(g), _) => format!("whatever the gateway at {g} uses"),
        (None, Some(s)) => s.clone(),
        (None, None) => "local folder (<data-dir>/store)".to_string(),
    };

    eprintln!("strata-bench: {rows} rows, work folder {}", work.display());
    let mut engines = BTreeMap::new();
    engines.insert("datafusion".to_string(), "55 (in-process)".to_string());

    // 1. The data as Parquet files.
    let t = Instant::now();
    let ds = write_parquet(&work.join("parquet"), args.seed, rows, args.files)?;
    let generate_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "  generated {} Parquet files ({} bytes) in {generate_secs:.1}s",
        ds.logs_files.len(),
        ds.logs_bytes
    );

    let mut report = Report {
        meta: Meta {
            rows,
            rows2,
            seed: args.seed,
            files: ds.logs_files.len(),
            parquet_bytes: ds.logs_bytes,
            threads: args.threads,
            warm_runs: warm,
            writers: args.writers,
            quick: args.quick,
            strata: match (&args.gateway, &strata_bin) {
                (Some(g), _) => format!("gateway {g}"),
                (None, Some(b)) => b.display().to_string(),
                (None, None) => "not found".to_string(),
            },
            strata_build: strata_bin
                .as_deref()
                .map_or("unknown".to_string(), build_kind),
            bench_build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            store: store_label,
            engines,
            generate_secs,
            duration_secs: 0.0,
        },
        baselines: Baselines::default(),
        ingest: Vec::new(),
        visible_ms: None,
        queries: Vec::new(),
        geomean: Geomeans::default(),
        point_lookup: None,
        scaling: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
        figures: None,
        measured: Default::default(),
    };

    // 2. Baselines that need no server.
    report.baselines.raw_read_disk = note(&mut notes, "raw read from disk", raw_read_disk(&ds));
    let sample_rows = rows.min(524_288);
    let batches: Vec<RecordBatch> = LogsGenerator::new(args.seed, sample_rows, 8192).collect();
    match with_offsets(&batches) {
        Ok(with_off) => {
            report.baselines.encode_segment =
                note(&mut notes, "segment encode", segment_encode_rate(&with_off));
            report.baselines.encode_wal =
                note(&mut notes, "WAL encode", wal_encode_rate(&with_off));
        }
        Err(e) => notes.push(format!("encode baselines: {e}")),
    }
    drop(batches);

    // 3. In-process engines on the same files.
    let params = QueryParams::for_workload(args.seed, rows);
    let qs = queries(&params);
    eprintln!("  DataFusion in-process ...");
    let (df_timings, df_results) = match datafusion_suite(&ds, &qs, args.threads, warm).await {
        Ok(r) => r,
        Err(e) => {
            notes.push(format!("DataFusion baseline failed: {e}"));
            (
                vec![EngineTiming::default(); qs.len()],
                vec![None; qs.len()],
            )
        }
    };
    let mut py: BTreeMap<&str, Vec<EngineTiming>> = BTreeMap::new();
    for engine in [PyEngine::DuckDb, PyEngine::Polars] {
        let name = engine.module();
        if args.no_python {
            continue;
        }
        let Some(version) = python_module_version(name).await else {
            notes.push(format!(
                "{name}: python3 module not importable (pip install {name}); column n/a"
            ));
            continue;
        };
        report.meta.engines.insert(name.to_string(), version);
        eprintln!("  {name} ...");
        match python_suite(
            engine,
            &ds,
            &qs,
            args.threads,
            warm,
            &work,
            Duration::from_secs(900),
        )
        .await
        {
            Ok(t) => {
                py.insert(name, t);
            }
            Err(e) => notes.push(format!("{name} baseline failed: {e}")),
        }
    }

    let mut rows_out: Vec<QueryRow> = qs
        .iter()
        .enumerate()
        .map(|(i, q)| QueryRow {
            name: q.name.to_string(),
            title: q.title.to_string(),
            datafusion: df_timings.get(i).cloned().unwrap_or_default(),
            duckdb: py
                .get("duckdb")
                .and_then(|v| v.get(i).cloned())
                .unwrap_or_default(),
            polars: py
                .get("polars")
                .and_then(|v| v.get(i).cloned())
                .unwrap_or_default(),
            check: "n/a".to_string(),
            ..QueryRow::default()
        })
        .collect();

    // 4. Strata.
    let ctx = StrataCtx {
        args: &args,
        work: &work,
        bin: strata_bin.clone(),
        store: store.clone(),
        warm,
        run_id: run_id.clone(),
        seq: std::cell::Cell::new(0),
        result_cache_unknown: std::cell::Cell::new(false),
    };
    if args.gateway.is_none() && strata_bin.is_none() {
        report.failures.push(
            "no strata binary: build it (cargo build --release -p strata) or pass --strata-bin / --gateway".to_string(),
        );
    } else if let Err(e) = strata_phase(
        &ctx,
        &mut report,
        &mut notes,
        &ds,
        &qs,
        &df_results,
        &mut rows_out,
        matrix_rows,
    )
    .await
    {
        report.failures.push(format!("Strata phase stopped: {e}"));
    }
    for (r, q) in rows_out.iter().zip(&qs) {
        for (engine, t) in [("duckdb", &r.duckdb), ("polars", &r.polars)] {
            if let (Some(a), Some(b)) = (t.rows, r.datafusion.rows)
                && a != b
            {
                notes.push(format!(
                    "{}: {engine} returned {a} rows, DataFusion {b}",
                    q.name
                ));
            }
            if let Some(e) = &t.error {
                notes.push(format!("{}: {engine} failed: {e}", q.name));
            }
        }
        if let Some(e) = &r.datafusion.error {
            notes.push(format!("{}: DataFusion failed: {}", q.name, first_line(e)));
        }
    }
    finish_rows(&mut rows_out);
    report.geomean = geomeans(&rows_out);
    report.queries = rows_out;

    // 5. Scaling.
    if let Some(rows2) = rows2 {
        if args.gateway.is_some() {
            notes.push(
                "--rows2 needs a server the bench starts; skipped with --gateway".to_string(),
            );
        } else if strata_bin.is_some()
            && let Err(e) = scaling_phase(&ctx, &mut report, rows2).await
        {
            notes.push(format!("scaling run failed: {e}"));
        }
    }

    report.figures = crate::sizing::figures(&report, &report.measured);
    match &report.figures {
        Some(f) => {
            let path = work.join("figures.json");
            std::fs::write(&path, serde_json::to_vec_pretty(f)?)?;
            eprintln!("wrote {} (for strata estimate --figures)", path.display());
        }
        None => notes.push(
            "no sizing figures: the run lacks the logs load, a query kind or the table's size"
                .to_string(),
        ),
    }
    report.notes.extend(notes);
    report.meta.duration_secs = started.elapsed().as_secs_f64();
    print_report(&report);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("wrote {}", p.display());
    }
    if args.keep {
        eprintln!("kept the work folder {}", work.display());
        if let Some(t) = tmp {
            let _ = t.keep();
        }
    }
    Ok(report)
}

fn note<T>(notes: &mut Vec<String>, what: &str, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            notes.push(format!("{what}: {e}"));
            None
        }
    }
}

fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}", t.as_millis() & 0xff_ffff_ffff)
}

/// `release` / `debug` from the binary's path.
fn build_kind(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains("/release/") {
        "release".to_string()
    } else if s.contains("/debug/") {
        "debug".to_string()
    } else {
        "unknown".to_string()
    }
}

/// The working folder: `dir` (created if missing), else a new temporary folder named
/// `prefix…`, returned with its guard (dropping it deletes the folder).
pub fn work_folder(
    dir: Option<&Path>,
    prefix: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let t = tempfile::Builder::new().prefix(prefix).tempdir()?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// The `strata` binary: the flag, else `target/release/strata`, else `strata` next to this
/// executable, else `target/debug/strata` (`target/` of the current folder, then of the
/// workspace this crate was built in).
pub fn find_strata(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let roots = [
        PathBuf::from("."),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    ];
    let in_target = |kind: &str| {
        roots
            .iter()
            .map(|root| root.join("target").join(kind).join("strata"))
            .find(|p| p.is_file())
            .map(|p| std::path::absolute(&p).unwrap_or(p))
    };
    // Next to this executable: `cargo build` puts both in one folder, whatever the target dir.
    let beside = || {
        let p = std::env::current_exe().ok()?.parent()?.join("strata");
        p.is_file().then_some(p)
    };
    in_target("release")
        .or_else(beside)
        .or_else(|| in_target("debug"))
}

fn raw_read_disk(ds: &ParquetDataset) -> Result<Throughput> {
    // Once to warm the page cache (the files were just written), then timed.
    let mut bytes = 0u64;
    for p in &ds.logs_files {
        bytes += std::fs::read(p)?.len() as u64;
    }
    let t = Instant::now();
    let mut again = 0u64;
    for p in &ds.logs_files {
        again += std::fs::read(p)?.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    debug_assert_eq!(bytes, again);
    Ok(Throughput {
        bytes: again,
        ms: secs * 1000.0,
        bytes_per_s: again as f64 / secs.max(1e-9),
    })
}

async fn raw_read_s3(url: &str, ds: &ParquetDataset) -> Result<Throughput> {
    let store_url = strata_storage::StoreUrl::parse(url)?;
    let store =
        strata_storage::open_store(&store_url, &strata_storage::S3Options::from_env()).await?;
    let mut paths = Vec::new();
    for (i, f) in ds.logs_files.iter().enumerate() {
        let p = StorePath::from(format!("raw-read/part-{i:04}.parquet"));
        store.put(&p, std::fs::read(f)?.into()).await?;
        paths.push(p);
    }
    let t = Instant::now();
    let mut bytes = 0u64;
    for p in &paths {
        bytes += store.get(p).await?.bytes().await?.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    for p in &paths {
        store.delete(p).await?;
    }
    Ok(Throughput {
        bytes,
        ms: secs * 1000.0,
        bytes_per_s: bytes as f64 / secs.max(1e-9),
    })
}

struct StrataCtx<'a> {
    args: &'a Args,
    work: &'a Path,
    bin: Option<PathBuf>,
    store: Option<String>,
    warm: usize,
    run_id: String,
    seq: std::cell::Cell<usize>,
    /// The server refused [`RESULT_CACHE_ENV`]: it has no result cache to turn off.
    result_cache_unknown: std::cell::Cell<bool>,
}

/// Turns the gateway's result cache off (`[gateway_cache] enabled = false`).
const RESULT_CACHE_ENV: &str = "STRATA__GATEWAY_CACHE__ENABLED";

impl StrataCtx<'_> {
    fn options(&self, data: &str) -> ServerOptions {
        let mut extra = vec![
            "--compaction-interval-secs".to_string(),
            "86400".to_string(),
        ];
        extra.extend(self.args.serve_args.iter().cloned());
        ServerOptions {
            bin: self.bin.clone().unwrap_or_else(|| PathBuf::from("strata")),
            role: "serve",
            data_dir: self.work.join(data),
            object_store: self.store.as_ref().map(|s| {
                if data == "data" {
                    s.clone()
                } else {
                    format!("{s}-{data}")
                }
            }),
            default_shards: 4,
            flush_age_secs: None,
            log_dir: self.work.join("logs"),
            extra_args: extra,
            env: Vec::new(),
        }
    }

    /// Start a server over `data` with a new, empty cache folder (and the gateway's result
    /// cache on or off).
    async fn start_with(&self, data: &str, result_cache: bool) -> Result<Server> {
        let (n, cache) = self.next_cache();
        let mut opts = self.options(data);
        if !result_cache && !self.result_cache_unknown.get() {
            opts.env
                .push((RESULT_CACHE_ENV.to_string(), "false".to_string()));
            match Server::start(&opts, &cache, n).await {
                Ok(s) => return Ok(s),
                Err(e) if e.to_string().contains("gateway_cache") => {
                    // An engine without a result cache refuses the unknown key.
                    self.result_cache_unknown.set(true);
                    opts.env.clear();
                }
                Err(e) => return Err(e),
            }
        }
        Server::start(&opts, &cache, n).await
    }

    /// Start another role (`compute`, `gateway`) over `data`, with a new cache folder, the
    /// gateway's result cache off, and `extra` arguments.
    async fn start_role(
        &self,
        data: &str,
        role: &'static str,
        extra: Vec<String>,
    ) -> Result<Server> {
        let (n, cache) = self.next_cache();
        let mut opts = self.options(data);
        opts.role = role;
        opts.extra_args = extra;
        if !self.result_cache_unknown.get() {
            opts.env
                .push((RESULT_CACHE_ENV.to_string(), "false".to_string()));
        }
        Server::start(&opts, &cache, n).await
    }

    /// The next process's sequence number and its new, empty cache folder.
    fn next_cache(&self) -> (usize, PathBuf) {
        let n = self.seq.get();
        self.seq.set(n + 1);
        (n, self.work.join(format!("cache-{n}")))
    }

    /// Start a server for measuring: the result cache as `--result-cache` says.
    async fn start(&self, data: &str) -> Result<Server> {
        self.start_with(data, self.args.result_cache).await
    }

    async fn client(&self, url: &str) -> Result<FlightClient> {
        let mut c = FlightClient::connect(url).await?;
        if let Some(t) = &self.args.token {
            c.set_token(t);
        }
        Ok(c)
    }
}

async fn stop(server: Server, notes: &mut Vec<String>) {
    let log = server.log.clone();
    if let Err(e) = server.stop(Duration::from_secs(120)).await {
        notes.push(format!("{e} (log {})", log.display()));
    }
    // The cache folder of a stopped server is never reused.
}

#[expect(
    clippy::too_many_arguments,
    reason = "one phase of a linear script, called once"
)]
async fn strata_phase(
    ctx: &StrataCtx<'_>,
    report: &mut Report,
    notes: &mut Vec<String>,
    ds: &ParquetDataset,
    qs: &[Query],
    df_results: &[Option<Vec<RecordBatch>>],
    out: &mut [QueryRow],
    matrix_rows: u64,
) -> Result<()> {
    let args = ctx.args;
    let quick = args.quick;
    // Ingest (and the round-trip baselines) on one server.
    let mut server = None;
    let url = match &args.gateway {
        Some(g) => g.clone(),
        None => {
            eprintln!("  starting strata serve ...");
            let s = ctx.start("data").await?;
            let u = s.url.clone();
            server = Some(s);
            u
        }
    };
    let mut client = ctx.client(&url).await?;
    if args.gateway.is_some() {
        notes.push(
            "--gateway: `strata cold` is the first run; the bench cannot restart that server or empty its cache, \
             and rows it just loaded may not be flushed yet"
                .to_string(),
        );
    }

    let n_rt = if quick { 50 } else { 200 };
    report.baselines.flight_health = note(
        notes,
        "health round trip",
        round_trips(&mut client, None, n_rt).await,
    );
    report.baselines.select_one = note(
        notes,
        "SELECT 1 round trip",
        round_trips(&mut client, Some("SELECT 1"), n_rt / 4).await,
    );

    // The `logs` table: 8k-row batches, 4 shards, `writers` writers: the headline ingest figure.
    let existing = client
        .query("SELECT count(*) FROM logs")
        .await
        .ok()
        .and_then(|b| crate::ingest::first_count(&b));
    match existing {
        Some(n) if n == ds.rows => notes.push(format!(
            "logs already holds {n} rows at {url}; not loaded again"
        )),
        Some(n) => {
            return Err(format!(
                "table logs at {url} holds {n} rows, not the {} this run generates; use a fresh server",
                ds.rows
            )
            .into());
        }
        None => {
            eprintln!("  ingest logs ...");
            let spec = IngestSpec {
                table: "logs".to_string(),
                batch_rows: 8192,
                shards: 4,
                writers: args.writers,
                rows: ds.rows,
                seed: args.seed,
            };
            let created = if args.newcomer {
                "first write (--newcomer: nothing declared)".to_string()
            } else {
                create_table(
                    &mut client,
                    &create_table_sql("logs", &logs_schema(), &logs_table_options(4))?,
                )
                .await
            };
            let (prepared, _) =
                prepare(&spec.table, spec.seed, spec.rows, spec.batch_rows, false).await?;
            let puts_before = match &server {
                Some(s) => s.metrics().await.ok().map(|m| store_puts(&m)),
                None => None,
            };
            let mut r = crate::ingest::run(&url, &spec, prepared).await?;
            if let (Some(s), Some(before)) = (&server, puts_before)
                && let Ok(after) = s.metrics().await
            {
                report.measured.ingest_puts = Some(store_puts(&after) - before);
            }
            r.created_by = created;
            let failed = r.error.clone();
            report.ingest.push(r);
            if let Some(e) = failed {
                return Err(format!("loading logs failed: {e}").into());
            }
            match wait_visible(&mut client, "logs", ds.rows, Duration::from_secs(60)).await {
                Ok((d, err)) => {
                    report.visible_ms = Some(ms(d));
                    if let Some(e) = err {
                        notes.push(format!(
                            "a count(*) poll after the load failed and was retried: {e}"
                        ));
                    }
                }
                Err(e) => notes.push(format!("visibility: {e}")),
            }
            let created = create_table(
                &mut client,
                &create_table_sql("services", &services_schema(), "")?,
            )
            .await;
            if created != "CREATE TABLE" {
                notes.push(format!("services: {created}"));
            }
            let put = crate::flight::encode_put("services", services_batch()).await?;
            client
                .put(put)
                .await
                .map_err(|e| format!("loading services failed: {e}"))?;
        }
    }

    // The ingest matrix: batch size at 4 shards, shard count at 8k rows.
    // Last: 4x the writers, to show whether the rate is bound by ack latency.
    let w = args.writers.max(1);
    let matrix: &[(usize, u32, usize)] = &[
        (1024, 4, w),
        (65_536, 4, w),
        (8192, 1, w),
        (8192, 2, w),
        (8192, 4, 4 * w),
    ];
    for &(batch_rows, shards, writers) in matrix {
        let table = format!("ingest_b{batch_rows}_s{shards}_w{writers}_{}", ctx.run_id);
        eprintln!("  ingest {table} ...");
        let spec = IngestSpec {
            table: table.clone(),
            batch_rows,
            shards,
            writers,
            rows: matrix_rows,
            seed: args.seed + 1,
        };
        let created = create_table(
            &mut client,
            &create_table_sql(&table, &logs_schema(), &logs_table_options(shards))?,
        )
        .await;
        let (prepared, _) = prepare(&table, spec.seed, spec.rows, batch_rows, false).await?;
        match crate::ingest::run(&url, &spec, prepared).await {
            Ok(mut r) => {
                r.created_by = created;
                report.ingest.push(r);
            }
            Err(e) => notes.push(format!("ingest {table}: {e}")),
        }
    }

    // Queries.
    if let Some(s) = server.take() {
        stop(s, notes).await;
        if args.compact {
            compact_once(ctx, notes).await;
        }
    }
    let mut point = Samples::new();
    for (i, q) in qs.iter().enumerate() {
        eprintln!("  query {} ...", q.name);
        let row = &mut out[i];
        let (url, server) = match &args.gateway {
            Some(g) => (g.clone(), None),
            None => match ctx.start("data").await {
                Ok(s) => (s.url.clone(), Some(s)),
                Err(e) => {
                    row.strata_error = Some(first_line(&e.to_string()));
                    report
                        .failures
                        .push(format!("{}: server did not start: {e}", q.name));
                    continue;
                }
            },
        };
        let r = strata_query(
            ctx,
            &url,
            server.as_ref(),
            q,
            row,
            if q.name == "point_lookup" {
                Some(&mut point)
            } else {
                None
            },
        )
        .await;
        match r {
            Ok(batches) => {
                row.rows = Some(row_count(&batches) as u64);
                row.check = check(q, &batches, df_results.get(i).and_then(Option::as_deref));
                if row.check.starts_with("MISMATCH") || row.check.starts_with("DIFFERS") {
                    report.failures.push(format!("{}: {}", q.name, row.check));
                }
            }
            Err(e) => {
                row.strata_error = Some(first_line(&e.to_string()));
                report
                    .failures
                    .push(format!("{}: {}", q.name, first_line(&e.to_string())));
            }
        }
        if let Some(s) = server {
            stop(s, notes).await;
        }
    }
    // The same queries answered by the gateway's result cache (identical query, nothing
    // changed): one more server with the cache on, each query once, then timed.
    if args.gateway.is_none() && !args.result_cache {
        match ctx.start_with("data", true).await {
            Ok(server) => {
                report.measured.stored = stored_table(&server, "logs").await;
                let r = async {
                    let mut c = ctx.client(&server.url).await?;
                    for (i, q) in qs.iter().enumerate() {
                        if c.query(&q.sql).await.is_err() {
                            continue;
                        }
                        let mut s = Samples::new();
                        for _ in 0..ctx.warm {
                            let t = Instant::now();
                            c.query(&q.sql).await?;
                            s.push(t.elapsed());
                        }
                        out[i].strata_result_cache_ms = s.median().map(ms);
                    }
                    Ok::<_, crate::Error>(())
                }
                .await;
                if let Err(e) = r {
                    notes.push(format!("result cache pass: {e}"));
                }
                stop(server, notes).await;
            }
            Err(e) => notes.push(format!("result cache pass: {e}")),
        }
        if ctx.result_cache_unknown.get() {
            notes.push(format!(
                "this strata refused {RESULT_CACHE_ENV}: it has no result cache to switch off, so \
                 `result cache` repeats the warm runs"
            ));
        } else {
            notes.push(format!(
                "warm runs had the gateway's result cache off ({RESULT_CACHE_ENV}=false); \
                 `result cache` = the same query repeated with it on"
            ));
        }
    } else if args.result_cache {
        notes.push("--result-cache: warm runs of a repeated query may be answered by the gateway's result cache".to_string());
    }

    if !point.is_empty() {
        report.point_lookup = Some(Latency {
            what: "point lookup by request_id, warm, through the gateway".to_string(),
            n: point.len(),
            p50_ms: point.quantile(0.5).map(ms),
            p99_ms: point.quantile(0.99).map(ms),
        });
    }

    // Raw read from the S3 server.
    if let Some(s) = &ctx.store
        && s.starts_with("s3://")
    {
        report.baselines.raw_read_s3 = note(
            notes,
            "raw read from S3",
            raw_read_s3(&format!("{s}-raw"), ds).await,
        );
    }

    // Gateway overhead: the same small queries through a gateway and straight to the compute
    // node behind it. Without --compute-direct the suite starts that topology itself: one
    // `strata compute`, one `strata ingest` and one `strata gateway` process routing to them,
    // over the same store (so both answer from the same data).
    if args.gateway.is_none() || args.compute_direct.is_some() {
        let mut procs = Vec::new();
        let urls = async {
            match &args.compute_direct {
                Some(direct) => {
                    let gw = match &args.gateway {
                        Some(g) => g.clone(),
                        None => {
                            let s = ctx.start("data").await?;
                            let url = s.url.clone();
                            procs.push(s);
                            url
                        }
                    };
                    Ok::<_, crate::Error>((gw, direct.clone()))
                }
                None => {
                    let compute = ctx.start_role("data", "compute", Vec::new()).await?;
                    let ingest = ctx.start_role("data", "ingest", Vec::new()).await?;
                    let nodes = vec![
                        "--compute-nodes".to_string(),
                        compute.grpc.to_string(),
                        "--ingest-nodes".to_string(),
                        ingest.grpc.to_string(),
                    ];
                    let direct = compute.url.clone();
                    procs.push(compute);
                    procs.push(ingest);
                    let gateway = ctx.start_role("data", "gateway", nodes).await?;
                    let gw = gateway.url.clone();
                    procs.push(gateway);
                    Ok((gw, direct))
                }
            }
        }
        .await;
        if let Some((gw, direct)) = note(notes, "gateway overhead", urls) {
            let n = if quick { 20 } else { 300 };
            for sql in ["SELECT 1".to_string(), qs[0].sql.clone()] {
                let r = async {
                    let mut g = ctx.client(&gw).await?;
                    let mut d = ctx.client(&direct).await?;
                    // Interleaved rounds, so drift (cache, CPU frequency) hits both alike.
                    let (mut a, mut b) = (Samples::new(), Samples::new());
                    drop(g.query(&sql).await?);
                    drop(d.query(&sql).await?);
                    for _ in 0..n {
                        let t = Instant::now();
                        drop(g.query(&sql).await?);
                        a.push(t.elapsed());
                        let t = Instant::now();
                        drop(d.query(&sql).await?);
                        b.push(t.elapsed());
                    }
                    let latency = |s: &mut Samples| Latency {
                        what: sql.clone(),
                        n,
                        p50_ms: s.quantile(0.5).map(ms),
                        p99_ms: s.quantile(0.99).map(ms),
                    };
                    let (a, b) = (latency(&mut a), latency(&mut b));
                    Ok::<_, crate::Error>(Overhead {
                        p50_delta_ms: a.p50_ms.zip(b.p50_ms).map(|(x, y)| x - y),
                        p99_delta_ms: a.p99_ms.zip(b.p99_ms).map(|(x, y)| x - y),
                        gateway: a,
                        direct: b,
                    })
                }
                .await;
                if let Some(o) = note(notes, "gateway overhead", r) {
                    report.baselines.gateway_overhead.push(o);
                }
            }
        }
        for p in procs.into_iter().rev() {
            stop(p, notes).await;
        }
    }
    Ok(())
}

/// PUT requests (single and multipart) in a server's `/metrics` text.
fn store_puts(metrics: &str) -> f64 {
    ["put", "put_multipart"]
        .iter()
        .map(|op| metric_sum(metrics, "strata_object_store_requests_total", &[("op", op)]))
        .sum()
}

/// Rows, bytes and segments of `table` in its manifest, from the server's `/v1/tables`.
async fn stored_table(server: &Server, table: &str) -> Option<(u64, u64, u64)> {
    let (code, body) = crate::server::http_get(server.http, "/v1/tables")
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let t = v["tables"]
        .as_array()?
        .iter()
        .find(|t| t["name"].as_str() == Some(table))?;
    Some((
        t["rows"].as_u64()?,
        t["bytes"].as_u64()?,
        t["segments"].as_u64()?,
    ))
}

/// Run one query cold (right after the server started) and warm; fills the Strata columns
/// of `row` and returns the cold run's result.
async fn strata_query(
    ctx: &StrataCtx<'_>,
    url: &str,
    server: Option<&Server>,
    q: &Query,
    row: &mut QueryRow,
    point: Option<&mut Samples>,
) -> Result<Vec<RecordBatch>> {
    let mut client = ctx.client(url).await?;
    let before = match server {
        Some(s) => s.metrics().await.ok(),
        None => None,
    };
    let t = Instant::now();
    let (batches, cold_cost) = client.query_with_cost(&q.sql).await?;
    row.strata_cold_ms = Some(ms(t.elapsed()));
    row.strata_cold_cost = cold_cost;
    if let (Some(s), Some(before)) = (server, before)
        && let Ok(after) = s.metrics().await
    {
        let read = |m: &str| {
            metric_sum(
                m,
                "strata_object_store_bytes_total",
                &[("direction", "read")],
            )
        };
        let fetched = |m: &str| metric_sum(m, "strata_cache_bucket_bytes_total", &[]);
        row.strata_cold_bytes = Some(read(&after) - read(&before));
        row.strata_cold_cache_fetch_bytes = Some(fetched(&after) - fetched(&before));
    }
    let mut warm = Samples::new();
    for _ in 0..ctx.warm {
        let t = Instant::now();
        let (_, cost) = client.query_with_cost(&q.sql).await?;
        warm.push(t.elapsed());
        row.strata_warm_cost = cost;
    }
    row.strata_warm_ms = warm.median().map(ms);
    if let Some(p) = point {
        let n = if ctx.args.quick { 20 } else { 100 };
        for _ in 0..n {
            let t = Instant::now();
            client.query(&q.sql).await?;
            p.push(t.elapsed());
        }
    }
    Ok(batches)
}

/// Compare Strata's answer with DataFusion's.
pub fn check(q: &Query, strata: &[RecordBatch], datafusion: Option<&[RecordBatch]>) -> String {
    let Some(df) = datafusion else {
        return "n/a".to_string();
    };
    let (a, b) = (row_count(strata), row_count(df));
    if a != b {
        return format!("MISMATCH ({a} rows vs {b})");
    }
    if !q.exact {
        return "ok (rows)".to_string();
    }
    match (canonical(strata), canonical(df)) {
        (Ok(x), Ok(y)) if x == y => "ok".to_string(),
        (Ok(_), Ok(_)) => "DIFFERS (same rows, other values)".to_string(),
        _ => "ok (rows)".to_string(),
    }
}

/// The batches as one pretty-printed table (empty batches left out), for comparing answers.
pub fn canonical(batches: &[RecordBatch]) -> Result<String> {
    let nonempty: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .cloned()
        .collect();
    if nonempty.is_empty() {
        return Ok(String::new());
    }
    Ok(pretty_format_batches(&nonempty)?.to_string())
}

async fn round_trips(client: &mut FlightClient, sql: Option<&str>, n: usize) -> Result<Latency> {
    // One unmeasured call to set up the connection.
    match sql {
        Some(s) => drop(client.query(s).await?),
        None => client.health().await?,
    }
    let mut s = Samples::new();
    for _ in 0..n {
        let t = Instant::now();
        match sql {
            Some(q) => drop(client.query(q).await?),
            None => client.health().await?,
        }
        s.push(t.elapsed());
    }
    Ok(Latency {
        what: sql.map_or("DoAction strata.health".to_string(), |q| q.to_string()),
        n,
        p50_ms: s.quantile(0.5).map(ms),
        p99_ms: s.quantile(0.99).map(ms),
    })
}

async fn compact_once(ctx: &StrataCtx<'_>, notes: &mut Vec<String>) {
    let opts = ctx.options("data");
    let mut cmd = tokio::process::Command::new(&opts.bin);
    cmd.arg("compact")
        .arg("--once")
        .arg("--data-dir")
        .arg(&opts.data_dir);
    if let Some(s) = &opts.object_store {
        cmd.arg("--object-store").arg(s);
    }
    let t = Instant::now();
    match tokio::time::timeout(Duration::from_secs(600), cmd.kill_on_drop(true).output()).await {
        Ok(Ok(out)) if out.status.success() => notes.push(format!(
            "compacted before the queries in {:.1}s: {}",
            t.elapsed().as_secs_f64(),
            {
                // One line per table; the one that matters is `logs`.
                let text = String::from_utf8_lossy(&out.stdout);
                let logs = text.lines().find(|l| l.contains("/logs:"));
                logs.map_or_else(|| first_line(&text), |l| l.trim().to_string())
            }
        )),
        Ok(Ok(out)) => notes.push(format!(
            "strata compact --once failed: {}",
            first_line(&String::from_utf8_lossy(&out.stderr))
        )),
        Ok(Err(e)) => notes.push(format!("strata compact --once: {e}")),
        Err(_) => notes.push("strata compact --once took over 600 s".to_string()),
    }
}

fn finish_rows(rows: &mut [QueryRow]) {
    for r in rows {
        let mut best: Option<(String, f64)> = None;
        for (name, t) in [
            ("datafusion", &r.datafusion),
            ("duckdb", &r.duckdb),
            ("polars", &r.polars),
        ] {
            if let Some(w) = t.warm_ms
                && t.error.is_none()
                && best.as_ref().is_none_or(|(_, b)| w < *b)
            {
                best = Some((name.to_string(), w));
            }
        }
        if let Some((name, ms)) = best {
            r.best_baseline = Some(name);
            r.best_baseline_ms = Some(ms);
            r.ratio_vs_best = r.strata_warm_ms.map(|s| s / ms);
        }
        r.ratio_vs_datafusion = r
            .strata_warm_ms
            .zip(r.datafusion.warm_ms)
            .map(|(s, d)| s / d);
    }
}

fn geomeans(rows: &[QueryRow]) -> Geomeans {
    use crate::stats::geomean;
    // Only the queries every present column answered, so the means compare like with like.
    type Column = fn(&QueryRow) -> Option<f64>;
    let present = |f: Column| rows.iter().any(|r| f(r).is_some());
    let cols: [Column; 4] = [
        |r| r.strata_warm_ms,
        |r| r.datafusion.warm_ms,
        |r| r.duckdb.warm_ms,
        |r| r.polars.warm_ms,
    ];
    let used: Vec<&QueryRow> = rows
        .iter()
        .filter(|r| cols.iter().all(|c| !present(*c) || c(r).is_some()))
        .collect();
    let g = |f: &dyn Fn(&QueryRow) -> Option<f64>| {
        if used.iter().all(|r| f(r).is_some()) {
            geomean(used.iter().filter_map(|r| f(r)))
        } else {
            None
        }
    };
    Geomeans {
        queries: used.len(),
        strata_cold_ms: g(&|r| r.strata_cold_ms),
        strata_warm_ms: g(&|r| r.strata_warm_ms),
        strata_result_cache_ms: g(&|r| r.strata_result_cache_ms),
        datafusion_warm_ms: g(&|r| r.datafusion.warm_ms),
        duckdb_warm_ms: g(&|r| r.duckdb.warm_ms),
        polars_warm_ms: g(&|r| r.polars.warm_ms),
        best_baseline_warm_ms: g(&|r| r.best_baseline_ms),
    }
}

/// Time at the larger size over time at the smaller size.
fn growth(ms: Option<f64>, ms2: Option<f64>, second_is_larger: bool) -> Option<f64> {
    let (small, large) = if second_is_larger {
        (ms, ms2)
    } else {
        (ms2, ms)
    };
    large.zip(small).map(|(l, s)| l / s)
}

async fn scaling_phase(ctx: &StrataCtx<'_>, report: &mut Report, rows2: u64) -> Result<()> {
    let args = ctx.args;
    let args_rows = report.meta.rows;
    eprintln!("scaling: {rows2} rows ...");
    let params = QueryParams::for_workload(args.seed, rows2);
    let qs = queries(&params);

    // DataFusion at the second size, on its own Parquet files.
    let dir2 = ctx.work.join("parquet2");
    let ds2 = write_parquet(&dir2, args.seed, rows2, args.files)?;
    let df2 = datafusion_suite(&ds2, &qs, args.threads, ctx.warm).await;
    let _ = std::fs::remove_dir_all(&dir2);
    let (df2, _) = df2?;

    let server = ctx.start("data2").await?;
    let mut notes = Vec::new();
    let loaded = async {
        let mut client = ctx.client(&server.url).await?;
        create_table(
            &mut client,
            &create_table_sql("logs", &logs_schema(), &logs_table_options(4))?,
        )
        .await;
        create_table(
            &mut client,
            &create_table_sql("services", &services_schema(), "")?,
        )
        .await;
        client
            .put(crate::flight::encode_put("services", services_batch()).await?)
            .await?;
        // Load in chunks of 1M rows so memory stays bounded; the chunks continue one workload.
        let mut total = IngestResult {
            table: "logs (second size)".to_string(),
            batch_rows: 8192,
            shards: 4,
            writers: args.writers,
            created_by: "CREATE TABLE".to_string(),
            ..IngestResult::default()
        };
        let mut generator = LogsGenerator::new(args.seed, rows2, 8192);
        loop {
            let mut requests = Vec::new();
            let mut rows = 0u64;
            let mut bytes = 0u64;
            for b in generator.by_ref().take(128) {
                rows += b.num_rows() as u64;
                let data = crate::flight::encode_put("logs", b).await?;
                bytes += data
                    .iter()
                    .map(|d| (d.data_body.len() + d.data_header.len()) as u64)
                    .sum::<u64>();
                requests.push(data);
            }
            if requests.is_empty() {
                break;
            }
            let spec = IngestSpec {
                table: "logs".to_string(),
                batch_rows: 8192,
                shards: 4,
                writers: args.writers,
                rows,
                seed: args.seed,
            };
            let r = crate::ingest::run(
                &server.url,
                &spec,
                crate::ingest::Prepared {
                    requests,
                    rows,
                    bytes,
                },
            )
            .await?;
            if let Some(e) = r.error {
                return Err(format!("loading the second size failed: {e}").into());
            }
            total.rows += r.rows;
            total.requests += r.requests;
            total.bytes += r.bytes;
            total.secs += r.secs;
            total.acks.extend(&r.acks);
        }
        total.rows_per_s = total.rows as f64 / total.secs.max(1e-9);
        total.ack_p50_ms = total.acks.quantile(0.5).map(ms);
        total.ack_p99_ms = total.acks.quantile(0.99).map(ms);
        total.ack_max_ms = total.acks.quantile(1.0).map(ms);
        report.ingest.push(total);
        wait_visible(&mut client, "logs", rows2, Duration::from_secs(120)).await?;
        Ok::<_, crate::Error>(())
    }
    .await;
    stop(server, &mut notes).await;
    report.notes.extend(notes);
    loaded?;

    // Queries on a restarted server (everything flushed, as in the first size), warmed once.
    let server = ctx.start("data2").await?;
    let mut notes = Vec::new();
    let r = async {
        let mut client = ctx.client(&server.url).await?;
        let mut out = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            let timed = async {
                client.query(&q.sql).await?;
                let mut s = Samples::new();
                for _ in 0..ctx.warm {
                    let t = Instant::now();
                    client.query(&q.sql).await?;
                    s.push(t.elapsed());
                }
                Ok::<_, crate::Error>(s.median().map(ms))
            }
            .await;
            let strata_ms2 = match timed {
                Ok(v) => v,
                Err(e) => {
                    let e = first_line(&e.to_string());
                    notes.push(format!("{} at {rows2} rows failed on Strata: {e}", q.name));
                    report
                        .failures
                        .push(format!("{} at {rows2} rows: {e}", q.name));
                    None
                }
            };
            let base = report.queries.get(i);
            let strata_ms = base.and_then(|r| r.strata_warm_ms);
            let datafusion_ms = base.and_then(|r| r.datafusion.warm_ms);
            let datafusion_ms2 = df2.get(i).and_then(|t| t.warm_ms);
            out.push(ScalingRow {
                name: q.name.to_string(),
                strata_ms,
                strata_ms2,
                strata_ratio: growth(strata_ms, strata_ms2, rows2 > args_rows),
                datafusion_ms,
                datafusion_ms2,
                datafusion_ratio: growth(datafusion_ms, datafusion_ms2, rows2 > args_rows),
            });
        }
        Ok::<_, crate::Error>(out)
    }
    .await;
    stop(server, &mut notes).await;
    report.notes.extend(notes);
    report.scaling = r?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(names: &[&str], counts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn checks_answers_against_datafusion() {
        let qs = queries(&QueryParams::for_workload(1, 1000));
        let exact = &qs[4];
        let approx = qs.iter().find(|q| !q.exact).expect("an approximate query");
        let a = batch(&["a", "b"], &[2, 1]);
        let split = [batch(&["a"], &[2]), batch(&["b"], &[1])];
        assert_eq!(check(exact, &split, Some(std::slice::from_ref(&a))), "ok");
        assert!(
            check(
                exact,
                &[batch(&["a", "b"], &[2, 9])],
                Some(std::slice::from_ref(&a))
            )
            .starts_with("DIFFERS")
        );
        assert!(
            check(
                exact,
                &[batch(&["a"], &[2])],
                Some(std::slice::from_ref(&a))
            )
            .starts_with("MISMATCH")
        );
        assert_eq!(
            check(
                approx,
                &[batch(&["a", "b"], &[5, 5])],
                Some(std::slice::from_ref(&a))
            ),
            "ok (rows)"
        );
        assert_eq!(check(exact, &split, None), "n/a");
    }

    #[test]
    fn ratios_and_geomeans_use_the_best_baseline() {
        let mut rows = vec![
            QueryRow {
                strata_warm_ms: Some(10.0),
                datafusion: EngineTiming {
                    warm_ms: Some(20.0),
                    ..EngineTiming::default()
                },
                polars: EngineTiming {
                    warm_ms: Some(5.0),
                    ..EngineTiming::default()
                },
                ..QueryRow::default()
            },
            QueryRow {
                strata_warm_ms: Some(40.0),
                datafusion: EngineTiming {
                    warm_ms: Some(20.0),
                    ..EngineTiming::default()
                },
                polars: EngineTiming {
                    warm_ms: Some(80.0),
                    ..EngineTiming::default()
                },
                ..QueryRow::default()
            },
        ];
        finish_rows(&mut rows);
        assert_eq!(rows[0].best_baseline.as_deref(), Some("polars"));
        assert_eq!(rows[0].ratio_vs_best, Some(2.0));
        assert_eq!(rows[1].best_baseline.as_deref(), Some("datafusion"));
        assert_eq!(rows[1].ratio_vs_datafusion, Some(2.0));
        let g = geomeans(&rows);
        assert_eq!(g.queries, 2);
        assert!((g.strata_warm_ms.expect("strata") - 20.0).abs() < 1e-9);
        assert!((g.best_baseline_warm_ms.expect("best") - 10.0).abs() < 1e-9);
        assert_eq!(g.duckdb_warm_ms, None);
    }
}
