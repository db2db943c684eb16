//! `strata-bench`: the whole benchmark suite in one command (see `benches/README.md`).
//!
//! Exit status: 0 when the suite ran and every answer matched, 1 when it could not run,
//! 2 when Strata failed a query or an answer differed from DataFusion's.

use clap::Parser;
use strata_benches::suite::{Args, run};
use strata_benches::workload::write_parquet;

/// Writes `report` as JSON to `path` (`--json`), if given; exit status 1 when it cannot.
fn write_json(
    path: Option<&std::path::Path>,
    report: &impl serde::Serialize,
) -> Result<(), std::process::ExitCode> {
    let Some(p) = path else { return Ok(()) };
    serde_json::to_vec_pretty(report)
        .map_err(|e| e.to_string())
        .and_then(|j| std::fs::write(p, j).map_err(|e| e.to_string()))
        .map_err(|e| {
            eprintln!("strata-bench: cannot write {}: {e}", p.display());
            std::process::ExitCode::from(1)
        })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if let Some(dir) = &args.generate {
        let rows = args
            .rows
            .unwrap_or(if args.quick { 100_000 } else { 10_000_000 });
        let t = std::time::Instant::now();
        return match write_parquet(dir, args.seed, rows, args.files) {
            Ok(ds) => {
                println!(
                    "wrote {} rows of `logs` ({} files, {} bytes) and `services` into {} in {:.1} s",
                    ds.rows,
                    ds.logs_files.len(),
                    ds.logs_bytes,
                    ds.dir.display(),
                    t.elapsed().as_secs_f64()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("strata-bench: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    if let Some(rows) = args.otlp {
        return match rt.block_on(strata_benches::otlp::run(&args, rows)) {
            Ok(report) => {
                println!("{}", report.render());
                if let Err(code) = write_json(args.json.as_deref(), &report) {
                    return code;
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("strata-bench: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    if let Some(sf) = args.tpch {
        return match rt.block_on(strata_benches::tpch::run(&args, sf)) {
            Ok(report) => {
                println!("{}", report.render());
                if let Err(code) = write_json(args.json.as_deref(), &report) {
                    return code;
                }
                let failures = report.failures();
                if failures.is_empty() {
                    std::process::ExitCode::SUCCESS
                } else {
                    eprintln!("strata-bench: FAILURES\n{}", failures.join("\n"));
                    std::process::ExitCode::from(2)
                }
            }
            Err(e) => {
                eprintln!("strata-bench: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    match rt.block_on(run(args)) {
        Ok(report) if report.failures.is_empty() => std::process::ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!(
                "strata-bench: {} failure(s), see FAILURES above",
                report.failures.len()
            );
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("strata-bench: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
