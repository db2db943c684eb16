//! `strata-bench`: the whole benchmark suite in one command (see `benches/README.md`).
//!
//! Exit status: 0 when the suite ran and every answer matched, 1 when it could not run,
//! 2 when Strata failed a query or an answer differed from DataFusion's.

use clap::Parser;
use strata_benches::suite::{Args, run};

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
