//! TLS on the gRPC port, end to end, with real `strata` processes on 127.0.0.1 and a CA and
//! certificates made for each test run (rcgen). Clients: tonic Flight SQL, the `strata` CLI,
//! pyarrow.flight and the ADBC driver. No S3 server is needed: every process uses a local
//! folder as its store.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A CA, a server certificate for `localhost` / `127.0.0.1` and a client certificate it
/// issued, plus a second CA that issued nothing; all as PEM files in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, issuer) = ca("strata test CA");
        let (other_ca_pem, _) = ca("some other CA");
        let (server_cert, server_key) = leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            &["strata-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            ca: write("ca.pem", &ca_pem),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other_ca_pem),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Start `strata <args>` on free ports; returns the process and its "strata ready" line.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args)
        .arg("--grpc-addr")
        .arg(format!("127.0.0.1:{grpc_port}"))
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{http_port}"))
        .env("STRATA_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start strata");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("strata ready") {
                let _ = tx.send(line);
            }
        }
    });
    let Ok(ready) = rx.recv_timeout(Duration::from_secs(120)) else {
        let _ = child.kill();
        panic!("strata {args:?} did not become ready within 120 s");
    };
    let scheme = if ready.contains("grpc=grpc+tls://") {
        "https"
    } else {
        "http"
    };
    let p = Proc {
        child,
        grpc: format!("{scheme}://127.0.0.1:{grpc_port}"),
        http: format!("http://127.0.0.1:{http_port}"),
        grpc_port,
        http_port,
    };
    (p, ready)
}

/// `strata serve` on a local folder with TLS on its gRPC port (plus `extra` flags).
fn serve_tls(pki: &Pki, extra: &[&str]) -> (Proc, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "serve",
        "--data-dir",
        s(dir.path()),
        "--tls-cert",
        s(&pki.server_cert),
        "--tls-key",
        s(&pki.server_key),
    ];
    args.extend_from_slice(extra);
    let (p, ready) = start(&args, &[]);
    (p, ready, dir)
}

/// Runs the `strata` CLI; (success, stdout, stderr).
fn strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_TLS_CA")
        .env_remove("STRATA_GATEWAY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A tonic channel over TLS trusting `ca`, optionally with a client certificate.
async fn tls_channel(
    url: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, String> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// `SELECT 1` over `channel`, failing (not hanging) within 15 s.
async fn select_one(channel: Channel) -> Result<i64, String> {
    let mut client = FlightSqlServiceClient::new(channel);
    match tokio::time::timeout(Duration::from_secs(15), query(&mut client, "SELECT 1")).await {
        Ok(Ok(batches)) => Ok(scalar_i64(&batches)),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => panic!("SELECT 1 neither answered nor failed within 15 s"),
    }
}

/// A connection + `SELECT 1` that must fail (not hang) within 15 s.
async fn must_fail(what: &str, attempt: impl Future<Output = Result<i64, String>>) -> String {
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(Ok(v)) => panic!("{what}: expected an error, got {v}"),
        Ok(Err(e)) => e,
        Err(_) => panic!("{what}: hung instead of failing within 15 s"),
    }
}

const PY: &str = r#"
import sys
import pyarrow as pa, pyarrow.flight as fl
from adbc_driver_flightsql import dbapi, DatabaseOptions
uri, ca_path = sys.argv[1], sys.argv[2]
ca = open(ca_path, "rb").read()
client = fl.FlightClient(uri, tls_root_certs=ca)
batch = pa.record_batch({"ts": pa.array([1_764_410_400_000_000 + i for i in range(10)], pa.timestamp("us")),
                         "host": ["py-%d" % (i % 2) for i in range(10)],
                         "id": pa.array(range(10), pa.int64())})
writer, reader = client.do_put(fl.FlightDescriptor.for_path("pytls"), batch.schema)
writer.write_batch(batch)
writer.done_writing()
reader.read()
writer.close()
print("put ok")
with dbapi.connect(uri, db_kwargs={DatabaseOptions.TLS_ROOT_CERTS.value: ca.decode()}) as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) AS n FROM pytls")
    print("adbc_count", cur.fetchone()[0])
try:
    plain = fl.FlightClient(uri.replace("grpc+tls://", "grpc://"))
    w, r = plain.do_put(fl.FlightDescriptor.for_path("pytls"), batch.schema,
                        options=fl.FlightCallOptions(timeout=10))
    w.write_batch(batch)
    w.done_writing()
    r.read()
    w.close()
    print("plaintext accepted")
except Exception as e:
    print("plaintext refused:", type(e).__name__)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_speak_tls_to_the_grpc_port_and_plaintext_is_refused() {
    let pki = Pki::new();
    let (p, ready, _dir) = serve_tls(&pki, &[]);
    let grpc_addr = format!("127.0.0.1:{}", p.grpc_port);
    assert!(
        ready.contains(&format!("grpc=grpc+tls://{grpc_addr}")),
        "the ready line shows the TLS scheme: {ready}"
    );

    // (a) A Rust Flight SQL client trusting the CA: a query, a write, and the write read back.
    let channel = tls_channel(&p.grpc, &pki.ca, None).await.unwrap();
    assert_eq!(select_one(channel.clone()).await, Ok(1));
    let mut flight = arrow_flight::FlightClient::new(channel.clone());
    let descriptor = arrow_flight::FlightDescriptor::new_path(vec!["tls_logs".to_string()]);
    let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(vec![Ok(logs_batch(0, 100))]));
    let acks: Vec<_> = futures::TryStreamExt::try_collect(flight.do_put(stream).await.unwrap())
        .await
        .unwrap();
    assert_eq!(acks.len(), 1);
    let mut sql = FlightSqlServiceClient::new(channel);
    let batches = query(&mut sql, "SELECT count(*) FROM tls_logs")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&batches), 100);

    // (b) Plaintext against the TLS port fails, and fails fast.
    let e = must_fail("a plaintext client", async {
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        select_one(channel).await
    })
    .await;
    eprintln!("plaintext client: {e}");
    // A client trusting another CA refuses the server's certificate.
    let e = must_fail("a client trusting another CA", async {
        select_one(tls_channel(&p.grpc, &pki.other_ca, None).await?).await
    })
    .await;
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );

    // (c) The CLI: https:// and grpc+tls:// addresses with --tls-ca; a bare host:port with
    // --tls-ca is dialled with TLS.
    for gateway in [
        p.grpc.clone(),
        format!("grpc+tls://{grpc_addr}"),
        grpc_addr.clone(),
    ] {
        let (ok, out, err) = strata(&[
            "sql",
            "-e",
            "SELECT 1 AS one",
            "--gateway",
            &gateway,
            "--tls-ca",
            s(&pki.ca),
            "--format",
            "csv",
        ]);
        assert!(ok, "strata sql --gateway {gateway}: {err}");
        assert_eq!(out, "one\n1\n", "{gateway}");
    }
    let (ok, out, err) = strata(&[
        "sql",
        "-e",
        "SELECT count(*) AS n FROM tls_logs",
        "--gateway",
        &p.grpc,
        "--tls-ca",
        s(&pki.ca),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| 100 |"), "{out}");
    // Without the CA (the system's roots do not know it) and over plaintext: one-line errors.
    let (ok, _, err) = strata(&["sql", "-e", "SELECT 1", "--gateway", &p.grpc]);
    assert!(!ok, "an unknown CA must be refused");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let (ok, _, err) = strata(&["sql", "-e", "SELECT 1", "--gateway", &grpc_addr]);
    assert!(!ok, "plaintext against the TLS port must fail");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("https://"), "the error hints at TLS: {err}");
    // `strata ingest FILE` over TLS.
    let csv = pki.path("loaded.csv");
    std::fs::write(
        &csv,
        "ts,host,latency_ms\n2026-01-01T00:00:00Z,h1,1.5\n2026-01-01T00:00:01Z,h2,2.5\n",
    )
    .unwrap();
    let (ok, out, err) = strata(&[
        "ingest",
        s(&csv),
        "--table",
        "loaded",
        "--gateway",
        &format!("grpc+tls://{grpc_addr}"),
        "--tls-ca",
        s(&pki.ca),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("loaded 2 rows"), "{out}");

    // (d) pyarrow.flight and ADBC with grpc+tls:// and the CA as root certificate.
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY)
        .arg(format!("grpc+tls://{grpc_addr}"))
        .arg(&pki.ca)
        .output()
        .expect("python3 must be installed with pyarrow and adbc-driver-flightsql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("put ok"), "{stdout}");
    assert!(stdout.contains("adbc_count 10"), "{stdout}");
    assert!(stdout.contains("plaintext refused"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new();
    let (p, _, _dir) = serve_tls(&pki, &["--tls-client-ca", s(&pki.ca)]);
    let e = must_fail("a client without a certificate", async {
        select_one(tls_channel(&p.grpc, &pki.ca, None).await?).await
    })
    .await;
    eprintln!("no client certificate: {e}");
    let channel = tls_channel(&p.grpc, &pki.ca, Some((&pki.client_cert, &pki.client_key)))
        .await
        .unwrap();
    assert_eq!(select_one(channel).await, Ok(1));
    let (ok, out, err) = strata(&[
        "sql",
        "-e",
        "SELECT 1 AS one",
        "--gateway",
        &p.grpc,
        "--tls-ca",
        s(&pki.ca),
        "--tls-client-cert",
        s(&pki.client_cert),
        "--tls-client-key",
        s(&pki.client_key),
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "one\n1\n");
    let (ok, _, err) = strata(&[
        "sql",
        "-e",
        "SELECT 1",
        "--gateway",
        &p.grpc,
        "--tls-ca",
        s(&pki.ca),
    ]);
    assert!(!ok, "the CLI without a client certificate must be refused");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reaches_its_nodes_over_tls() {
    let pki = Pki::new();
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", s(store.path()));
    let tls = [
        "--tls-cert",
        s(&pki.server_cert),
        "--tls-key",
        s(&pki.server_key),
    ];
    let node = |role: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            role,
            "--object-store",
            &store_url,
            "--data-dir",
            s(dir.path()),
        ];
        args.extend_from_slice(&tls);
        let (p, ready) = start(&args, &[]);
        assert!(ready.contains("grpc=grpc+tls://"), "{ready}");
        (p, dir)
    };
    let (ingest, _d1) = node("ingest");
    let (compute, _d2) = node("compute");
    let gateway_dir = tempfile::tempdir().unwrap();
    let compute_nodes = format!("https://127.0.0.1:{}", compute.grpc_port);
    let ingest_nodes = format!("grpc+tls://127.0.0.1:{}", ingest.grpc_port);
    // The CA for the nodes comes from the STRATA__SECTION__KEY override of `remote.tls_ca`.
    let (gateway, _) = start(
        &[
            "gateway",
            "--object-store",
            &store_url,
            "--data-dir",
            s(gateway_dir.path()),
            "--compute-nodes",
            &compute_nodes,
            "--ingest-nodes",
            &ingest_nodes,
        ],
        &[("STRATA__REMOTE__TLS_CA", s(&pki.ca))],
    );
    let plain = gateway.grpc.clone();
    assert!(
        plain.starts_with("http://"),
        "the gateway itself is plaintext"
    );
    put(&plain, "through", logs_batch(0, 42), None)
        .await
        .expect("a write through the gateway reaches the ingest node over TLS");
    let mut client = sql_client(&plain).await;
    let batches = query(&mut client, "SELECT count(*) FROM through")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&batches), 42);
    let status = reqwest_free_status(&gateway.http).await;
    assert!(status.contains("\"healthy\":true"), "{status}");
    assert!(!status.contains("\"healthy\":false"), "{status}");
}

/// `GET /v1/status` of a node, raw.
async fn reqwest_free_status(http: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET /v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn bad_tls_files_stop_startup_with_one_line() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            s(dir.path()).into(),
            "--grpc-addr".into(),
            format!("127.0.0.1:{}", free_port()),
            "--http-addr".into(),
            format!("127.0.0.1:{}", free_port()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&args)
            .envs(env.iter().copied())
            .env("STRATA_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{extra:?} must not start: {stdout}");
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stdout.contains("strata ready"), "{stdout}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line: {stderr}"))
            .to_string()
    };
    // (e) The key file does not exist.
    let missing = pki.path("missing.key");
    let e = run(
        &["--tls-cert", s(&pki.server_cert), "--tls-key", s(&missing)],
        &[],
    );
    assert!(
        e.contains(s(&missing)) && e.contains("TLS private key"),
        "{e}"
    );
    // A certificate without its key, from the flag and from the STRATA__ override.
    let e = run(&["--tls-cert", s(&pki.server_cert)], &[]);
    assert!(e.contains("--tls-key") && e.contains("missing"), "{e}");
    let e = run(
        &[],
        &[("STRATA__GATEWAY__SERVER__TLS_KEY", s(&pki.server_key))],
    );
    assert!(e.contains("--tls-cert") && e.contains("missing"), "{e}");
    // Not PEM, a key that is not a key, and a key that does not match its certificate.
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let e = run(
        &["--tls-cert", s(&garbage), "--tls-key", s(&pki.server_key)],
        &[],
    );
    assert!(
        e.contains("holds no PEM certificate") && e.contains(s(&garbage)),
        "{e}"
    );
    let e = run(
        &[
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_cert),
        ],
        &[],
    );
    assert!(e.contains("holds no PEM private key"), "{e}");
    let e = run(
        &[
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.client_key),
        ],
        &[],
    );
    assert!(e.contains("cannot be used together"), "{e}");
    // A client CA without a server certificate.
    let e = run(&["--tls-client-ca", s(&pki.ca)], &[]);
    assert!(e.contains("--tls-cert"), "{e}");
}
