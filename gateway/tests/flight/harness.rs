//! Starts a gateway over the fakes on 127.0.0.1:0 and connects clients to it.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use prometheus::Registry;
use strata_gateway::{AuthConfig, GatewayConfig, GatewayError, GatewayServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::fakes::{FakeIngest, FakeQuery};

pub(crate) const READER: &str = "reader-secret";
pub(crate) const WRITER: &str = "writer-secret";

/// `acme` may read; `globex` may read and write.
pub(crate) fn auth_config() -> AuthConfig {
    AuthConfig::from_toml_str(&format!(
        r#"
        [[tokens]]
        token = "{READER}"
        tenant = "acme"
        scopes = ["read"]

        [[tokens]]
        token = "{WRITER}"
        tenant = "globex"
        scopes = ["read", "write"]
        "#
    ))
    .expect("auth config")
}

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) query: Arc<FakeQuery>,
    pub(crate) ingest: Arc<FakeIngest>,
    pub(crate) registry: Registry,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), GatewayError>>,
}

impl TestServer {
    pub(crate) async fn start(config: GatewayConfig) -> Self {
        let query = Arc::new(FakeQuery::new());
        let ingest = Arc::new(FakeIngest::default());
        let registry = Registry::new();
        let server = GatewayServer::builder(
            Arc::clone(&query) as Arc<dyn strata_gateway::QueryBackend>,
            Arc::clone(&ingest) as Arc<dyn strata_gateway::IngestBackend>,
        )
        .with_config(config)
        .with_registry(&registry)
        .build()
        .expect("server builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_listener(listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            query,
            ingest,
            registry,
            shutdown: Some(tx),
            task,
        }
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub(crate) async fn sql_client(&self, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
        let mut client = FlightSqlServiceClient::new(self.channel().await);
        if let Some(token) = token {
            client.set_token(token.to_string());
        }
        client
    }

    /// Counter value of `strata_grpc_requests_total{method, code}`.
    pub(crate) fn requests(&self, method: &str, code: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == strata_gateway::flight::GRPC_REQUESTS_TOTAL)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                labels.contains(&("method", method)) && labels.contains(&("code", code))
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .expect("server task")
            .expect("server ran without error");
    }
}

/// Fetches every batch of every endpoint of `info`.
pub(crate) async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("endpoint has a ticket");
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("stream");
        out.extend(batches);
    }
    out
}

pub(crate) fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// The gRPC code inside a client error.
pub(crate) fn code_of(err: &arrow_flight::error::FlightError) -> tonic::Code {
    match err {
        arrow_flight::error::FlightError::Tonic(status) => status.code(),
        other => panic!("expected a gRPC status, got {other}"),
    }
}
