//! `strata-bench --tpch SF`: TPC-H at scale factor `SF` end to end. The eight tables are
//! generated with `tpchgen-arrow`, written as zstd Parquet files (one folder per table) for the
//! in-process engines, and loaded into a `strata serve` through Flight `DoPut` into tables
//! created by the first write (nothing declared, default settings, result cache off). The
//! server is restarted with an empty cache, then each of the 22 queries runs once cold and
//! `--warm` times through Flight SQL, next to DataFusion in-process on the Parquet files and
//! DuckDB (Python) on the same files. Every Strata answer is compared with DataFusion's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::Result;
use crate::flight::{FlightClient, encode_put, row_count};
use crate::ingest::wait_visible;
use crate::local::{EngineTiming, PyEngine, PyQuery, python_module_version, python_run};
use crate::server::{Server, ServerOptions};
use crate::stats::{Samples, fmt_ms, fmt_ratio, geomean, ms};
use crate::suite::{Args, canonical, find_strata, work_folder};

/// The 22 queries (the SQL in `benches/tpch/`), compiled into the binary.
pub const QUERIES: [&str; 22] = [
    include_str!("../tpch/q01.sql"),
    include_str!("../tpch/q02.sql"),
    include_str!("../tpch/q03.sql"),
    include_str!("../tpch/q04.sql"),
    include_str!("../tpch/q05.sql"),
    include_str!("../tpch/q06.sql"),
    include_str!("../tpch/q07.sql"),
    include_str!("../tpch/q08.sql"),
    include_str!("../tpch/q09.sql"),
    include_str!("../tpch/q10.sql"),
    include_str!("../tpch/q11.sql"),
    include_str!("../tpch/q12.sql"),
    include_str!("../tpch/q13.sql"),
    include_str!("../tpch/q14.sql"),
    include_str!("../tpch/q15.sql"),
    include_str!("../tpch/q16.sql"),
    include_str!("../tpch/q17.sql"),
    include_str!("../tpch/q18.sql"),
    include_str!("../tpch/q19.sql"),
    include_str!("../tpch/q20.sql"),
    include_str!("../tpch/q21.sql"),
    include_str!("../tpch/q22.sql"),
];

/// Query `i` (0-based) without its final `;`.
pub fn sql(i: usize) -> &'static str {
    QUERIES[i].trim().trim_end_matches(';')
}

/// Rows per generated batch and per `DoPut`.
const BATCH_ROWS: usize = 8192;
/// Concurrent `DoPut` streams while loading.
const WRITERS: usize = 4;

type Batches = Vec<RecordBatch>;
/// One engine's warm time of a query.
type WarmOf = fn(&TpchRow) -> Option<f64>;

fn collect(
    it: impl Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>>,
) -> Result<Batches> {
    Ok(it.collect::<std::result::Result<_, _>>()?)
}

/// The eight tables at scale factor `sf`, smallest first.
pub fn generate(sf: f64) -> Result<Vec<(&'static str, Batches)>> {
    Ok(vec![
        (
            "region",
            collect(RegionArrow::new(RegionGenerator::new(sf, 1, 1)))?,
        ),
        (
            "nation",
            collect(NationArrow::new(NationGenerator::new(sf, 1, 1)))?,
        ),
        (
            "supplier",
            collect(
                SupplierArrow::new(SupplierGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
            )?,
        ),
        (
            "customer",
            collect(
                CustomerArrow::new(CustomerGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
            )?,
        ),
        (
            "part",
            collect(PartArrow::new(PartGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS))?,
        ),
        (
            "partsupp",
            collect(
                PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
            )?,
        ),
        (
            "orders",
            collect(OrderArrow::new(OrderGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS))?,
        ),
        (
            "lineitem",
            collect(
                LineItemArrow::new(LineItemGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
            )?,
        ),
    ])
}

/// Write each table as one zstd Parquet file in `<dir>/<table>/`; the folders by name.
fn write_parquet(
    dir: &Path,
    tables: &[(&'static str, Batches)],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for (name, batches) in tables {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder)?;
        let file = std::fs::File::create(folder.join(format!("{name}.parquet")))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .build();
        let mut w = ArrowWriter::try_new(file, batches[0].schema(), Some(props))?;
        for b in batches {
            w.write(b)?;
        }
        w.close()?;
        out.insert(name.to_string(), folder);
    }
    Ok(out)
}

/// DataFusion with default settings and `threads` partitions over the Parquet folders.
async fn datafusion_context(
    folders: &BTreeMap<String, PathBuf>,
    threads: usize,
) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config(
        SessionConfig::new().with_target_partitions(threads.max(1)),
    );
    for (name, dir) in folders {
        let opts =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        ctx.register_listing_table(name, format!("{}/", dir.display()), opts, None, None)
            .await?;
    }
    Ok(ctx)
}

/// One query's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TpchRow {
    /// `Q01` … `Q22`.
    pub name: String,
    /// Rows of Strata's answer.
    pub rows: Option<u64>,
    /// Strata through Flight SQL: cold (first run after a restart with an empty cache) and warm.
    pub strata: EngineTiming,
    /// DataFusion in-process on the Parquet files.
    pub datafusion: EngineTiming,
    /// DuckDB on the same files.
    pub duckdb: EngineTiming,
    /// Strata's answer against DataFusion's.
    pub check: String,
}

/// The whole TPC-H run.
#[derive(Debug, Clone, Serialize)]
pub struct TpchReport {
    /// Scale factor.
    pub sf: f64,
    /// Rows loaded through `DoPut`, and how long loading took (until all were acknowledged).
    pub rows_loaded: u64,
    /// Seconds to load every table.
    pub load_secs: f64,
    /// The queries.
    pub queries: Vec<TpchRow>,
    /// Geometric means of the warm times over the queries every engine answered.
    pub geomean_ms: BTreeMap<String, f64>,
    /// What did not run, and why.
    pub notes: Vec<String>,
}

impl TpchReport {
    /// Queries whose answer differed from DataFusion's or failed in Strata.
    pub fn failures(&self) -> Vec<String> {
        self.queries
            .iter()
            .filter(|q| q.check != "ok")
            .map(|q| format!("{}: {}", q.name, q.check))
            .collect()
    }

    /// The report as a table.
    pub fn render(&self) -> String {
        let mut s = format!(
            "TPC-H SF {} — {} rows loaded through DoPut in {:.1} s ({:.0} rows/s), tables \
             created by the first write, default settings, result cache off\n\n",
            self.sf,
            self.rows_loaded,
            self.load_secs,
            self.rows_loaded as f64 / self.load_secs.max(1e-9)
        );
        s.push_str(&format!(
            "{:<5} {:>8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}  {}\n",
            "query",
            "rows",
            "strata cold",
            "strata warm",
            "datafusion",
            "duckdb",
            "vs DF",
            "vs duck",
            "answer"
        ));
        for q in &self.queries {
            let ratio = |b: &EngineTiming| match (q.strata.warm_ms, b.warm_ms) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            s.push_str(&format!(
                "{:<5} {:>8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}  {}\n",
                q.name,
                q.rows.map_or("-".to_string(), |r| r.to_string()),
                fmt_ms(q.strata.cold_ms),
                fmt_ms(q.strata.warm_ms),
                fmt_ms(q.datafusion.warm_ms),
                fmt_ms(q.duckdb.warm_ms),
                fmt_ratio(ratio(&q.datafusion)),
                fmt_ratio(ratio(&q.duckdb)),
                q.check
            ));
        }
        let g = |k: &str| self.geomean_ms.get(k).copied();
        s.push_str(&format!(
            "{:<5} {:>8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}\n",
            "geo",
            "",
            "",
            fmt_ms(g("strata")),
            fmt_ms(g("datafusion")),
            fmt_ms(g("duckdb")),
            fmt_ratio(g("strata").zip(g("datafusion")).map(|(a, b)| a / b)),
            fmt_ratio(g("strata").zip(g("duckdb")).map(|(a, b)| a / b)),
        ));
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

/// Load every table through `DoPut`, `WRITERS` streams at a time; rows loaded.
async fn load(client: &FlightClient, tables: &[(&'static str, Batches)]) -> Result<u64> {
    let mut rows = 0;
    for (name, batches) in tables {
        let results: Vec<Result<usize>> = futures::stream::iter(batches.iter().cloned())
            .map(|b| {
                let mut c = client.clone();
                async move {
                    let n = b.num_rows();
                    c.put(encode_put(name, b).await?).await?;
                    Ok(n)
                }
            })
            .buffer_unordered(WRITERS)
            .collect()
            .await;
        for r in results {
            rows += r.map_err(|e| format!("loading {name}: {e}"))? as u64;
        }
    }
    Ok(rows)
}

/// Once cold, then `warm` times; the cold run's answer.
async fn time_strata(
    client: &mut FlightClient,
    sql: &str,
    warm: usize,
) -> (EngineTiming, Option<Batches>) {
    let t = Instant::now();
    let first = match client.query(sql).await {
        Ok(b) => b,
        Err(e) => {
            return (
                EngineTiming {
                    error: Some(e.to_string()),
                    ..EngineTiming::default()
                },
                None,
            );
        }
    };
    let cold = t.elapsed();
    let mut s = Samples::new();
    for _ in 0..warm {
        let t = Instant::now();
        if let Err(e) = client.query(sql).await {
            return (
                EngineTiming {
                    error: Some(e.to_string()),
                    ..EngineTiming::default()
                },
                None,
            );
        }
        s.push(t.elapsed());
    }
    let timing = EngineTiming {
        cold_ms: Some(ms(cold)),
        warm_ms: s.median().map(ms),
        rows: Some(row_count(&first) as u64),
        error: None,
    };
    (timing, Some(first))
}

async fn time_datafusion(
    folders: &BTreeMap<String, PathBuf>,
    threads: usize,
    sql: &str,
    warm: usize,
) -> (EngineTiming, Option<Batches>) {
    let run = async {
        let ctx = datafusion_context(folders, threads).await?;
        let t = Instant::now();
        let first = ctx.sql(sql).await?.collect().await?;
        let cold = t.elapsed();
        let mut s = Samples::new();
        for _ in 0..warm {
            let t = Instant::now();
            ctx.sql(sql).await?.collect().await?;
            s.push(t.elapsed());
        }
        Ok::<_, crate::Error>((
            EngineTiming {
                cold_ms: Some(ms(cold)),
                warm_ms: s.median().map(ms),
                rows: Some(row_count(&first) as u64),
                error: None,
            },
            first,
        ))
    };
    match run.await {
        Ok((t, b)) => (t, Some(b)),
        Err(e) => (
            EngineTiming {
                error: Some(e.to_string()),
                ..EngineTiming::default()
            },
            None,
        ),
    }
}

fn compare(strata: Option<&Batches>, strata_t: &EngineTiming, df: Option<&Batches>) -> String {
    match (strata, df) {
        (None, _) => format!(
            "FAILED: {}",
            strata_t.error.as_deref().unwrap_or("no answer")
        ),
        (Some(_), None) => "n/a (DataFusion failed)".to_string(),
        (Some(a), Some(b)) => match (canonical(a), canonical(b)) {
            (Ok(x), Ok(y)) if x == y => "ok".to_string(),
            (Ok(_), Ok(_)) => format!(
                "DIFFERS ({} rows vs DataFusion's {})",
                row_count(a),
                row_count(b)
            ),
            (Err(e), _) | (_, Err(e)) => format!("cannot compare: {e}"),
        },
    }
}

/// Run TPC-H at `sf` (see the module docs).
pub async fn run(args: &Args, sf: f64) -> Result<TpchReport> {
    let warm = args.warm.unwrap_or(3).max(1);
    let (work, tmp) = work_folder(args.work_dir.as_deref(), "strata-tpch-")?;
    let mut notes = Vec::new();
    let t = Instant::now();
    let tables = generate(sf)?;
    let folders = write_parquet(&work.join("parquet"), &tables)?;
    eprintln!(
        "tpch: generated SF {sf} ({} rows) in {:.1} s",
        tables
            .iter()
            .flat_map(|(_, b)| b.iter())
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        t.elapsed().as_secs_f64()
    );

    let bin = find_strata(args.strata_bin.as_deref()).ok_or(
        "no strata binary: build it (cargo build --release -p strata) or pass --strata-bin",
    )?;
    let opts = ServerOptions {
        bin,
        role: "serve",
        data_dir: work.join("data"),
        object_store: args.object_store.clone(),
        default_shards: 4,
        flush_age_secs: None,
        log_dir: work.join("logs"),
        extra_args: args.serve_args.clone(),
        env: vec![(
            "STRATA__GATEWAY_CACHE__ENABLED".to_string(),
            "false".to_string(),
        )],
    };
    let server = Server::start(&opts, &work.join("cache-0"), 0).await?;
    let mut client = FlightClient::connect(&server.url).await?;
    let t = Instant::now();
    let rows_loaded = load(&client, &tables).await?;
    let load_secs = t.elapsed().as_secs_f64();
    for (name, batches) in &tables {
        let n = batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
        wait_visible(&mut client, name, n, Duration::from_secs(120)).await?;
    }
    eprintln!("tpch: loaded {rows_loaded} rows in {load_secs:.1} s");
    // Restart (SIGTERM flushes) with an empty cache: the first run of each query is cold.
    server.stop(Duration::from_secs(300)).await?;
    let server = Server::start(&opts, &work.join("cache-1"), 1).await?;
    let mut client = FlightClient::connect(&server.url).await?;

    let mut rows = Vec::new();
    for i in 0..QUERIES.len() {
        let q = sql(i);
        let (strata, got) = time_strata(&mut client, q, warm).await;
        let (datafusion, expected) = time_datafusion(&folders, args.threads, q, warm).await;
        let check = compare(got.as_ref(), &strata, expected.as_ref());
        eprintln!(
            "tpch: Q{:02} strata {} / datafusion {} ms: {check}",
            i + 1,
            fmt_ms(strata.warm_ms),
            fmt_ms(datafusion.warm_ms)
        );
        rows.push(TpchRow {
            name: format!("Q{:02}", i + 1),
            rows: strata.rows,
            strata,
            datafusion,
            duckdb: EngineTiming::default(),
            check,
        });
    }
    server.stop(Duration::from_secs(120)).await?;

    if args.no_python {
        notes.push("duckdb: skipped (--no-python)".to_string());
    } else if let Some(version) = python_module_version("duckdb").await {
        let named = (0..QUERIES.len())
            .map(|i| PyQuery {
                name: rows[i].name.as_str(),
                sql: sql(i),
            })
            .collect();
        match python_run(
            PyEngine::DuckDb,
            &folders,
            named,
            args.threads,
            warm,
            &work,
            Duration::from_secs(3600),
        )
        .await
        {
            Ok(mut by_name) => {
                for r in &mut rows {
                    r.duckdb = by_name.remove(&r.name).unwrap_or_default();
                    if let Some(e) = &r.duckdb.error {
                        notes.push(format!("duckdb {}: {e}", r.name));
                    }
                }
                notes.push(format!("duckdb {version}, {} threads", args.threads));
            }
            Err(e) => notes.push(format!("duckdb: {e}")),
        }
    } else {
        notes.push("duckdb: python3 module not importable (pip install duckdb)".to_string());
    }

    // Geomeans over the queries every measured engine answered.
    let engines: [(&str, WarmOf); 3] = [
        ("strata", |r| r.strata.warm_ms),
        ("datafusion", |r| r.datafusion.warm_ms),
        ("duckdb", |r| r.duckdb.warm_ms),
    ];
    let measured: Vec<_> = engines
        .iter()
        .filter(|(_, f)| rows.iter().any(|r| f(r).is_some()))
        .collect();
    let common: Vec<&TpchRow> = rows
        .iter()
        .filter(|r| measured.iter().all(|(_, f)| f(r).is_some()))
        .collect();
    let geomean_ms = measured
        .iter()
        .filter_map(|(name, f)| {
            geomean(common.iter().filter_map(|r| f(r))).map(|g| (name.to_string(), g))
        })
        .collect();
    if common.len() < rows.len() {
        notes.push(format!(
            "geomeans over the {} queries every engine answered",
            common.len()
        ));
    }
    if args.keep {
        notes.push(format!("work folder kept: {}", work.display()));
        if let Some(t) = tmp {
            let _ = t.keep();
        }
    }
    Ok(TpchReport {
        sf,
        rows_loaded,
        load_secs,
        queries: rows,
        geomean_ms,
        notes,
    })
}
