//! The documented stacks start and work, as processes on loopback:
//!
//! 1. every Strata service of `docker-compose.yml`, with its command and environment as the
//!    file gives them (read with PyYAML, merge keys resolved as Compose does), service hosts
//!    mapped to 127.0.0.1 ports, the local S3 server standing in for MinIO, the gateway on
//!    the host ports the file publishes (127.0.0.1:50051 and :8080);
//! 2. the README's process-cluster commands, run by bash as written.
//!
//! Through each, the README's quickstart runs as written (`cargo run --release --` being the
//! built `strata`) and its query must show the rows it wrote.
//!
//! Both use the fixed ports the documents use, so they run one after the other in one test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Processes killed when the test ends, however it ends.
#[derive(Default)]
struct Procs {
    children: Vec<(String, Child)>,
    pids: Vec<u32>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in &self.pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn strata() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// `docker-compose.yml` as JSON.
fn compose_file() -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &format!("{REPO}/docker-compose.yml"),
        ])
        .output()
        .expect("python3 with PyYAML (./minio/with-s3.sh installs it)");
    assert!(
        out.status.success(),
        "reading docker-compose.yml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `${NAME:-default}` and `$$` as Compose interpolates them, from `vars` else the default.
fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r.find('}').expect("closing brace");
            let (name, default) = r[..end].split_once(":-").unwrap_or((&r[..end], ""));
            out.push_str(vars.get(name).map_or(default, String::as_str));
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A fenced ```sh block of README.md: the first one after the heading `heading`.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no heading {heading}"))
        .1;
    let block = after.split_once("```sh\n").expect("a sh block").1;
    block.split_once("\n```").expect("closed").0.to_string()
}

/// Waits until `url` answers 200; fails at once if `child` exits.
async fn wait_ready(url: &str, what: &str, child: Option<&mut Child>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut child = child;
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("{what} exited ({status}) before it was ready (its stderr is above)");
        }
        assert!(Instant::now() < deadline, "{what} not ready at {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the gateway on 127.0.0.1:8080 sees every node healthy (`/v1/status`), as
/// `strata status` would show before a user writes: a gateway started beside its nodes
/// takes them into rotation after their first health checks pass.
async fn wait_cluster_healthy() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok(r) = reqwest::get("http://127.0.0.1:8080/v1/status").await
            && let Ok(text) = r.text().await
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            let nodes: Vec<&Value> = ["compute", "ingest"]
                .iter()
                .flat_map(|role| v["nodes"][role].as_array().into_iter().flatten())
                .collect();
            if !nodes.is_empty() && nodes.iter().all(|n| n["healthy"] == true) {
                return;
            }
            last = v["nodes"].to_string();
        }
        assert!(Instant::now() < deadline, "nodes never all healthy: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the README quickstart against the gateway on 127.0.0.1:50051 / :8080 and checks its
/// query shows the two rows it wrote (polling: a cluster shows rows within a second).
fn quickstart(work: &Path, env: &[(String, String)]) {
    let block = readme_block("## Quickstart");
    let bin_dir = Path::new(strata()).parent().unwrap().to_path_buf();
    // `cargo run --release --` is the strata binary; the interactive shell (a line with
    // `sql` and no -e) is left out: it waits for a person.
    let script: Vec<String> = block
        .lines()
        .filter(|l| !(l.trim_end().ends_with("-- sql") || l.starts_with('#')))
        .map(|l| l.replace("cargo run --release --", "strata"))
        .collect();
    let script = script.join("\n");
    let (write, query) = script
        .split_once("\nstrata sql")
        .expect("the quickstart writes, then queries with `strata sql`");
    let query = format!("strata sql{query}");
    let run = |s: &str| {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", s])
            .current_dir(work)
            .env("PATH", path_with(&bin_dir))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, out) = run(write);
    assert!(ok, "quickstart write failed:\n{write}\n{out}");
    assert!(out.contains("\"rows\":2"), "quickstart write:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, out) = run(&query);
        let shown = |level: &str| {
            out.lines()
                .any(|l| l.contains(level) && l.split('|').any(|c| c.trim() == "1"))
        };
        if ok && shown("INFO") && shown("ERROR") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "quickstart query never showed the rows:\n{query}\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The environment of the local S3 server (`minio/s3.sh env`).
fn s3_env() -> BTreeMap<String, String> {
    let out = Command::new(format!("{REPO}/minio/s3.sh"))
        .arg("env")
        .output()
        .expect("minio/s3.sh");
    assert!(
        out.status.success(),
        "minio/s3.sh env: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
        .collect()
}

/// Fails unless the fixed ports the documents use are free (a leftover server there would
/// answer for the stack under test).
fn ports_free(ports: &[u16]) {
    for p in ports {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok(),
            "127.0.0.1:{p} is in use; stop what listens there (a leftover strata?)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_and_the_readme_cluster_run_the_quickstart() {
    // Fails loudly without the S3 server.
    let compose_store = common::s3_url("compose");
    let s3 = s3_env();
    let work = tempfile::tempdir().unwrap();
    compose_stack(&compose_store, &s3, work.path()).await;
    readme_cluster(work.path()).await;
}

async fn compose_stack(store: &str, s3: &BTreeMap<String, String>, work: &Path) {
    ports_free(&[50051, 8080]);
    let compose = compose_file();
    let services = compose["services"].as_object().expect("services");
    // Strata services are those built from this repository.
    let strata_services: Vec<&String> = services
        .iter()
        .filter(|(_, s)| s["image"] == "strata:local")
        .map(|(name, _)| name)
        .collect();
    for role in ["gateway", "compute", "ingest", "compact"] {
        assert!(
            strata_services
                .iter()
                .any(|s| s.as_str() == role || s.starts_with(&format!("{role}-"))),
            "docker-compose.yml has no {role} service"
        );
    }
    // Every host a service is reached by, as a loopback port; the gateway keeps the host
    // ports it publishes.
    let mut grpc_port: BTreeMap<&str, u16> = BTreeMap::new();
    for name in &strata_services {
        let published = services[name.as_str()]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .find(|p| p.ends_with(":50051"))
            .and_then(|p| p.split(':').rev().nth(1))
            .and_then(|p| p.parse().ok());
        grpc_port.insert(name, published.unwrap_or_else(common::free_port));
    }
    let vars: BTreeMap<String, String> = BTreeMap::new();
    let mut procs = Procs::default();
    // Nodes before the gateway (its depends_on), compaction last.
    let mut order = strata_services.clone();
    order.sort_by_key(|n| match n.as_str() {
        "gateway" => 1,
        "compact" => 2,
        _ => 0,
    });
    for name in order {
        let service = &services[name.as_str()];
        let published_http = service["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .find(|p| p.ends_with(":8080"))
            .and_then(|p| p.split(':').rev().nth(1))
            .and_then(|p| p.parse::<u16>().ok());
        let http = published_http.unwrap_or_else(common::free_port);
        let command = interpolate(service["command"].as_str().expect("a command"), &vars);
        // Hosts of the compose network → loopback ports; the container's folders → here.
        let mut command = command
            .replace(
                "0.0.0.0:50051",
                &format!("127.0.0.1:{}", grpc_port[name.as_str()]),
            )
            .replace("0.0.0.0:8080", &format!("127.0.0.1:{http}"));
        for (host, port) in &grpc_port {
            command = command.replace(&format!("//{host}:50051"), &format!("//127.0.0.1:{port}"));
        }
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        command = command.replace(" /cache", &format!(" {}", dir.join("cache").display()));
        let args: Vec<&str> = command.split_whitespace().collect();
        let mut cmd = Command::new(strata());
        cmd.args(&args)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in service["environment"].as_object().expect("environment") {
            let v = match v {
                Value::String(s) => interpolate(s, &vars),
                other => other.to_string(),
            };
            let v = match k.as_str() {
                // SeaweedFS stands in for MinIO: its endpoint and keys, a fresh prefix.
                "AWS_ENDPOINT_URL" | "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => {
                    s3.get(k).cloned().unwrap_or(v)
                }
                "STRATA_OBJECT_STORE" => store.to_string(),
                _ => v,
            };
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "warn");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        wait_ready(
            &format!("http://127.0.0.1:{http}/readyz"),
            name,
            Some(&mut child),
        )
        .await;
        procs.children.push((name.clone(), child));
    }
    wait_cluster_healthy().await;
    let env = vec![];
    quickstart(work, &env);
    drop(procs);
    // The fixed ports are free again before the next stack starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn readme_cluster(work: &Path) {
    ports_free(&[50051, 8080, 7001, 7002, 7011, 7012, 7101, 7102, 7111, 7112]);
    let block = readme_block("## The MinIO stack");
    let dir: PathBuf = work.join("readme-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    // A fresh prefix of the bucket the README names, so the first stack's rows are not here.
    let prefix = format!("readme-{}", uuid::Uuid::new_v4().simple());
    let mut script = block
        .replace("s3://strata/data", &format!("s3://strata/{prefix}"))
        .replace("./minio/s3.sh", &format!("{REPO}/minio/s3.sh"));
    assert!(
        script.contains("s3.sh start"),
        "the README starts the S3 server"
    );
    // The last command (the gateway) runs in the foreground in the README; here in the
    // background too, and the script prints every PID for the test to stop.
    script.push_str(" &\necho \"pids $(jobs -p | tr '\\n' ' ')\" > pids.txt\n");
    let bin_dir = Path::new(strata()).parent().unwrap().to_path_buf();
    // The background processes keep whatever the script's output goes to open, so the
    // PIDs go to a file and the output nowhere.
    let status = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("PATH", path_with(&bin_dir))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let stdout = std::fs::read_to_string(dir.join("pids.txt")).unwrap_or_default();
    let mut procs = Procs::default();
    procs.pids = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pids "))
        .flat_map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()))
        .collect();
    assert!(
        status.success(),
        "README cluster commands failed ({status})"
    );
    assert_eq!(procs.pids.len(), 5, "five processes started:\n{stdout}");
    wait_ready("http://127.0.0.1:8080/readyz", "the README gateway", None).await;
    wait_cluster_healthy().await;
    // The shell's exported secret is what nodes and gateway share; the quickstart needs none.
    quickstart(&dir, &[]);
    drop(procs);
}
