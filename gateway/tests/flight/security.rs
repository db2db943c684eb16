//! Auth, scopes, tenants, quotas and metrics as clients see them.

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandGetTables, CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo, PutResult};
use futures::TryStreamExt;
use prost::Message;
use strata_gateway::{GatewayConfig, QuotaConfig, RateLimit};
use tonic::{Code, Request, Status};

use crate::fakes::logs_batch;
use crate::harness::{READER, TestServer, WRITER, auth_config, code_of, fetch};

fn with_auth() -> GatewayConfig {
    GatewayConfig {
        auth: auth_config(),
        ..GatewayConfig::default()
    }
}

async fn query(server: &TestServer, token: Option<&str>, sql: &str) -> Result<FlightInfo, Status> {
    let mut client = FlightServiceClient::new(server.channel().await);
    let cmd = CommandStatementQuery {
        query: sql.to_string(),
        transaction_id: None,
    };
    let mut request = Request::new(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()));
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    client
        .get_flight_info(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn ingest(server: &TestServer, token: &str) -> Result<Vec<PutResult>, Status> {
    let mut client = FlightClient::new(server.channel().await);
    client
        .add_header("authorization", &format!("Bearer {token}"))
        .expect("header");
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["logs".into()])))
        .build(futures::stream::iter([Ok(logs_batch(
            &[1, 2],
            &["INFO", "WARN"],
        ))]));
    let result = match client.do_put(data).await {
        Ok(stream) => stream.try_collect().await,
        Err(e) => Err(e),
    };
    result.map_err(|e| match e {
        FlightError::Tonic(status) => *status,
        other => Status::unknown(other.to_string()),
    })
}

#[tokio::test]
async fn missing_and_wrong_tokens_are_unauthenticated() {
    let server = TestServer::start(with_auth()).await;
    let err = query(&server, None, "SELECT * FROM logs")
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("missing bearer token"),
        "{}",
        err.message()
    );

    let err = query(&server, Some("not-a-token"), "SELECT * FROM logs")
        .await
        .expect_err("wrong token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "invalid token");

    let err = ingest(&server, "not-a-token")
        .await
        .expect_err("wrong token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(server.ingest.writes.lock().is_empty());
    assert!(
        server.query.seen.lock().is_empty(),
        "nothing reached the backend"
    );
    assert_eq!(server.requests("GetFlightInfo", "UNAUTHENTICATED"), 2.0);
    server.stop().await;
}

#[tokio::test]
async fn read_tokens_cannot_write() {
    let server = TestServer::start(with_auth()).await;
    let err = ingest(&server, READER).await.expect_err("reader ingest");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("`write`"), "{}", err.message());
    assert!(!err.message().contains(READER), "never echo tokens");
    assert!(server.ingest.writes.lock().is_empty());

    let mut client = server.sql_client(Some(READER)).await;
    let err = client
        .execute_update("DELETE FROM logs".to_string(), None)
        .await
        .expect_err("reader update");
    assert_eq!(code_of(&err), Code::PermissionDenied, "{err}");

    // A write statement sent down the query path is caught too.
    let err = query(&server, Some(READER), "DELETE FROM logs WHERE id = 1")
        .await
        .expect_err("reader delete via query");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        server.query.seen.lock().is_empty(),
        "nothing reached the backend"
    );
    server.stop().await;
}

#[tokio::test]
async fn good_tokens_work_and_carry_their_tenant() {
    let server = TestServer::start(with_auth()).await;
    let info = query(&server, Some(READER), "SELECT * FROM logs")
        .await
        .expect("reader query");
    assert_eq!(info.endpoint.len(), 1);
    assert_eq!(
        server.query.seen.lock()[0].caller.tenant.as_deref(),
        Some("acme")
    );

    let results = ingest(&server, WRITER).await.expect("writer ingest");
    assert_eq!(results.len(), 1);
    assert_eq!(
        server.ingest.writes.lock()[0].caller.tenant.as_deref(),
        Some("globex")
    );

    // Tenants see their own tables.
    let tables = |token: &'static str| {
        let server = &server;
        async move {
            let mut client = server.sql_client(Some(token)).await;
            let info = client
                .get_tables(CommandGetTables {
                    catalog: None,
                    db_schema_filter_pattern: None,
                    table_name_filter_pattern: None,
                    table_types: vec![],
                    include_schema: false,
                })
                .await
                .expect("tables");
            let batches = fetch(&mut client, info).await;
            let names = batches[0].column_by_name("table_name").expect("col");
            arrow::array::AsArray::as_string::<i32>(names)
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(tables(READER).await, ["acme_only", "logs", "services"]);
    assert_eq!(tables(WRITER).await, ["logs", "services"]);
    server.stop().await;
}

#[tokio::test]
async fn handshake_trades_basic_credentials_for_a_bearer_token() {
    let server = TestServer::start(with_auth()).await;
    let mut client = server.sql_client(None).await;
    client.handshake("acme", READER).await.expect("handshake");
    assert_eq!(client.token().map(String::as_str), Some(READER));
    let info = client
        .execute("SELECT * FROM logs".to_string(), None)
        .await
        .expect("query with the handshake token");
    assert_eq!(fetch(&mut client, info).await.len(), 2);

    let mut other = server.sql_client(None).await;
    // The client folds the status into a string.
    let unauthenticated = "does not have valid authentication credentials";
    let err = other
        .handshake("acme", "wrong")
        .await
        .expect_err("bad password");
    assert!(err.to_string().contains(unauthenticated), "{err}");
    let err = other
        .handshake("globex", READER)
        .await
        .expect_err("wrong tenant");
    assert!(err.to_string().contains(unauthenticated), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn request_quota_is_resource_exhausted_with_retry_after() {
    let config = GatewayConfig {
        auth: auth_config(),
        quota: QuotaConfig {
            requests: Some(RateLimit {
                per_second: 0.01,
                burst: 2.0,
            }),
            ..QuotaConfig::default()
        },
        ..GatewayConfig::default()
    };
    let server = TestServer::start(config).await;
    for _ in 0..2 {
        query(&server, Some(READER), "SELECT * FROM logs")
            .await
            .expect("within burst");
    }
    let err = query(&server, Some(READER), "SELECT * FROM logs")
        .await
        .expect_err("over quota");
    assert_eq!(err.code(), Code::ResourceExhausted);
    let retry_ms: u64 = err
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms metadata");
    // One request every 100 s: about 100 s to wait.
    assert!((90_000..=100_000).contains(&retry_ms), "{retry_ms}");
    assert!(err.message().contains("retry after"), "{}", err.message());
    assert!(err.message().contains("`acme`"), "{}", err.message());
    // Another tenant has its own bucket.
    query(&server, Some(WRITER), "SELECT * FROM logs")
        .await
        .expect("other tenant");
    assert_eq!(server.requests("GetFlightInfo", "RESOURCE_EXHAUSTED"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn ingest_byte_quota_is_resource_exhausted() {
    let config = GatewayConfig {
        quota: QuotaConfig {
            ingest_bytes: Some(RateLimit {
                per_second: 1.0,
                burst: 100.0,
            }),
            ..QuotaConfig::default()
        },
        ..GatewayConfig::default()
    };
    let server = TestServer::start(config).await;
    ingest(&server, "ignored")
        .await
        .expect("a full bucket admits one large write");
    let err = ingest(&server, "ignored").await.expect_err("in debt");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.metadata().get("retry-after-ms").is_some());
    assert_eq!(server.ingest.writes.lock().len(), 1);
    server.stop().await;
}
