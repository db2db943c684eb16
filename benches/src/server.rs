//! Starting and stopping `strata` processes for the benchmark (`serve`, or the `compute` and
//! `gateway` roles of a cluster), and reading their Prometheus `/metrics`.
//!
//! The server listens on free 127.0.0.1 ports; its output goes to `<log_dir>/serve-N.log`.
//! [`Server::stop`] sends SIGTERM (Strata drains and flushes acknowledged writes) and waits;
//! a server still running when its handle drops is killed.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::Result;
use crate::flight::FlightClient;

/// How to run a `strata` process.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The `strata` binary.
    pub bin: PathBuf,
    /// The subcommand: `serve` (all in one), `compute` or `gateway`.
    pub role: &'static str,
    /// `--data-dir` (the embedded store lives in `<data_dir>/store` unless `object_store`).
    pub data_dir: PathBuf,
    /// `--object-store`, e.g. `s3://bucket/prefix`.
    pub object_store: Option<String>,
    /// `--default-shards` for tables created on first write (`serve`).
    pub default_shards: u32,
    /// `--flush-age-secs`.
    pub flush_age_secs: Option<u64>,
    /// Folder for server logs.
    pub log_dir: PathBuf,
    /// More arguments passed to `strata serve` as they are.
    pub extra_args: Vec<String>,
    /// Environment variables for the server (e.g. `STRATA__GATEWAY_CACHE__ENABLED=false`).
    pub env: Vec<(String, String)>,
}

/// A running `strata serve`.
#[derive(Debug)]
pub struct Server {
    child: Child,
    role: &'static str,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// `http://127.0.0.1:<grpc port>`.
    pub url: String,
    /// The HTTP address (health, metrics).
    pub http: SocketAddr,
    /// The server's log file.
    pub log: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Server {
    /// Start `strata serve` with an SSD cache in `cache_dir` (use a new, empty folder for a
    /// cold start) and wait until it answers `/readyz` and a Flight health action.
    pub async fn start(opts: &ServerOptions, cache_dir: &Path, seq: usize) -> Result<Self> {
        std::fs::create_dir_all(&opts.log_dir)?;
        std::fs::create_dir_all(cache_dir)?;
        std::fs::create_dir_all(&opts.data_dir)?;
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = opts.log_dir.join(format!("{}-{seq}.log", opts.role));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&opts.bin);
        cmd.arg(opts.role)
            .arg("--data-dir")
            .arg(&opts.data_dir)
            .arg("--cache-dir")
            .arg(cache_dir)
            .arg("--grpc-addr")
            .arg(grpc.to_string())
            .arg("--http-addr")
            .arg(http.to_string());
        if opts.role == "serve" {
            cmd.arg("--default-shards")
                .arg(opts.default_shards.to_string());
        }
        if let Some(s) = &opts.object_store {
            cmd.arg("--object-store").arg(s);
        }
        if let Some(a) = opts.flush_age_secs {
            cmd.arg("--flush-age-secs").arg(a.to_string());
        }
        cmd.args(&opts.extra_args)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.bin.display()))?;
        let role = opts.role;
        let mut server = Self {
            child,
            role,
            grpc,
            url: format!("http://{grpc}"),
            http,
            log,
        };
        server.wait_ready(Duration::from_secs(120)).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "strata {} exited during startup ({status}); last lines of {}:\n{}",
                    self.role,
                    self.log.display(),
                    tail(&self.log, 30)
                )
                .into());
            }
            let ready = matches!(http_get(self.http, "/readyz").await, Ok((200, _)));
            if ready
                && let Ok(mut c) = FlightClient::connect(&self.url).await
                && c.health().await.is_ok()
            {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "strata {} not ready after {limit:?}; last lines of {}:\n{}",
                    self.role,
                    self.log.display(),
                    tail(&self.log, 30)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        match http_get(self.http, "/metrics").await? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("/metrics answered {code}: {body}").into()),
        }
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (Strata flushes acknowledged rows),
    /// then kill. Returns how long the shutdown took.
    pub async fn stop(mut self, grace: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
                status?;
                return Ok(t0.elapsed());
            }
        }
        self.child.kill().await?;
        Err(format!(
            "strata {} did not stop within {grace:?} after SIGTERM; killed it",
            self.role
        )
        .into())
    }
}

/// `GET path` over HTTP/1.0 (so the body is neither chunked nor kept alive).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP answer from {addr}{path}"))?;
    Ok((code, body.to_string()))
}

/// Sum of the samples of metric `name` whose labels include every `(key, value)` of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with `name`
        };
        if !labels
            .iter()
            .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples() {
        let text = "# HELP x\n\
                    strata_object_store_bytes_total{op=\"get\",direction=\"read\"} 100\n\
                    strata_object_store_bytes_total{op=\"put\",direction=\"written\"} 7\n\
                    strata_object_store_bytes_total{op=\"get_range\",direction=\"read\"} 5\n\
                    strata_object_store_bytes_total_other 9\n\
                    strata_cache_bucket_bytes_total 42\n";
        assert_eq!(
            metric_sum(
                text,
                "strata_object_store_bytes_total",
                &[("direction", "read")]
            ),
            105.0
        );
        assert_eq!(
            metric_sum(text, "strata_cache_bucket_bytes_total", &[]),
            42.0
        );
        assert_eq!(metric_sum(text, "missing", &[]), 0.0);
    }
}
