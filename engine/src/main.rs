//! `strata`: one binary for every role and the command-line client.
//!
//! ```text
//! strata serve      every role in one process (embedded default: ./data)
//! strata gateway    Flight SQL front door → compute and ingest nodes
//! strata compute    query node
//! strata ingest     shard writers (or: strata ingest FILE... loads files)
//! strata compact    compaction, retention, GC
//! strata sql        SQL shell / -e
//! strata status     the cluster as the gateway sees it
//! strata config     effective configuration
//! ```

use clap::Parser;
use strata::cli::{self, Cli, Command, LogFormat};
use strata::{client, roles};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,datafusion=warn,foyer=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(
        &cli.command,
        Command::Serve(_) | Command::Gateway(_) | Command::Compute(_) | Command::Compact(_)
    ) || matches!(&cli.command, Command::Ingest(a) if a.files.is_empty());
    if is_server {
        init_logging(cli.log_format);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve(a) => {
            let mut s = cli::load_settings(config, &a.node)?;
            a.tls.apply(&mut s);
            if let Some(v) = a.compaction_interval_secs {
                s.compaction.interval_secs = Some(v);
            }
            roles::serve(s).await
        }
        Command::Gateway(a) => {
            let mut s = cli::load_settings(config, &a.node)?;
            a.tls.apply(&mut s);
            if let Some(p) = a.remote_tls_ca {
                s.remote.tls_ca = Some(p);
            }
            if !a.compute_nodes.is_empty() {
                s.cluster.compute_nodes = a.compute_nodes;
            }
            if !a.ingest_nodes.is_empty() {
                s.cluster.ingest_nodes = a.ingest_nodes;
            }
            if let Some(p) = a.policy {
                s.remote.policy = p
                    .parse()
                    .map_err(|e: strata_gateway::BackendError| e.message)?;
            }
            roles::gateway(s).await
        }
        Command::Compute(a) => {
            let mut s = cli::load_settings(config, &a.node)?;
            a.tls.apply(&mut s);
            roles::compute(s).await
        }
        Command::Ingest(a) if !a.files.is_empty() => client::load_files(&a).await,
        Command::Ingest(a) => {
            let mut s = cli::load_settings(config, &a.node)?;
            a.tls.apply(&mut s);
            if let Some(i) = a.node_index {
                s.cluster.node_index = i;
            }
            if let Some(n) = a.node_count {
                s.cluster.node_count = n;
            }
            if s.cluster.node_index >= s.cluster.node_count.max(1) {
                return Err(format!(
                    "--node-index {} must be below --node-count {}",
                    s.cluster.node_index, s.cluster.node_count
                ));
            }
            roles::ingest(s).await
        }
        Command::Compact(a) => roles::compact(cli::load_settings(config, &a.node)?, a.once).await,
        Command::Sql(a) => client::sql(&a).await,
        Command::Status(a) => client::status(&a).await,
        Command::Config(a) => {
            let mut s = cli::load_settings(config, &a.node)?;
            a.tls.apply(&mut s);
            print!("{}", s.masked_toml());
            Ok(())
        }
        Command::Estimate(a) => strata::estimate::run(&a),
    }
}
