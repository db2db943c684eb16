//! pyarrow.flight and the ADBC Flight SQL driver against a real gateway. Needs python3 with
//! `pyarrow` and `adbc-driver-flightsql` (`.ci/run` installs them); fails loudly without.

use strata_gateway::GatewayConfig;

use crate::harness::{TestServer, WRITER, auth_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients() {
    let config = GatewayConfig {
        auth: auth_config(),
        ..GatewayConfig::default()
    };
    let server = TestServer::start(config).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flight/clients.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(server.addr.to_string())
        .arg("globex")
        .arg(WRITER)
        .output()
        .await
        .expect("python3 runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "python client checks failed");
    let writes = server.ingest.writes.lock().clone();
    assert_eq!(writes.len(), 3, "two Flight DoPuts and one ADBC ingest");
    assert_eq!(writes[0].producer, Some(("py-producer".to_string(), 5)));
    assert!(
        writes
            .iter()
            .all(|w| w.caller.tenant.as_deref() == Some("globex"))
    );
    server.stop().await;
}
