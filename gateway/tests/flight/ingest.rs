//! Ingest over plain Flight `DoPut`, log reads over `DoGet`, the health action.

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::UInt64Type;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandStatementIngest;
use arrow_flight::{Action, FlightClient, FlightDescriptor, PutResult, Ticket};
use futures::{StreamExt, TryStreamExt};
use strata_gateway::{Durability, FlightConfig, GatewayConfig};
use tonic::Code;

use crate::fakes::{logs_batch, logs_schema};
use crate::harness::TestServer;

async fn put(
    client: &mut FlightClient,
    descriptor: FlightDescriptor,
    batches: Vec<RecordBatch>,
) -> Result<Vec<PutResult>, FlightError> {
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    client.do_put(data).await?.try_collect().await
}

fn ack(results: &[PutResult]) -> serde_json::Value {
    assert_eq!(results.len(), 1, "one PutResult per request");
    serde_json::from_slice(&results[0].app_metadata).expect("ack is JSON")
}

fn code(err: &FlightError) -> Code {
    match err {
        FlightError::Tonic(status) => status.code(),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test]
async fn do_put_with_a_path_descriptor_reaches_the_backend() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = FlightClient::new(server.channel().await);
    client
        .add_header("x-strata-producer-id", "producer-1")
        .expect("header");
    client.add_header("x-strata-sequence", "7").expect("header");

    let batches = vec![
        logs_batch(&[1, 2], &["INFO", "ERROR"]),
        logs_batch(&[3], &["WARN"]),
    ];
    let results = put(
        &mut client,
        FlightDescriptor::new_path(vec!["logs".into()]),
        batches,
    )
    .await
    .expect("put");
    let ack = ack(&results);
    assert_eq!(ack["rows"], 3);
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["shards"][0]["shard"], 0);
    assert_eq!(ack["shards"][0]["first_offset"], 0);
    assert_eq!(ack["shards"][0]["last_offset"], 2);

    let writes = server.ingest.writes.lock().clone();
    assert_eq!(writes.len(), 1, "one backend write per request");
    let w = &writes[0];
    assert_eq!(w.table, "logs");
    assert_eq!(w.producer, Some(("producer-1".to_string(), 7)));
    assert_eq!(w.durability, Durability::Durable);
    assert_eq!(w.caller.tenant, None);
    assert_eq!(
        w.batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        3
    );
    assert_eq!(w.batches[0].schema(), logs_schema());
    server.stop().await;
}

#[tokio::test]
async fn do_put_with_a_json_command() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = FlightClient::new(server.channel().await);
    let cmd = br#"{"table":"events","producer_id":"p9","sequence":42,"durability":"buffered"}"#;
    let results = put(
        &mut client,
        FlightDescriptor::new_cmd(cmd.to_vec()),
        vec![logs_batch(&[1], &["INFO"])],
    )
    .await
    .expect("put");
    assert_eq!(ack(&results)["rows"], 1);
    let write = server.ingest.writes.lock()[0].clone();
    assert_eq!(write.table, "events");
    assert_eq!(write.producer, Some(("p9".to_string(), 42)));
    assert_eq!(write.durability, Durability::Buffered);

    let bad = br#"{"table":"events","durability":"maybe"}"#;
    let err = put(
        &mut client,
        FlightDescriptor::new_cmd(bad.to_vec()),
        vec![logs_batch(&[1], &["INFO"])],
    )
    .await
    .expect_err("bad durability");
    assert_eq!(code(&err), Code::InvalidArgument);
    assert_eq!(server.ingest.writes.lock().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn oversized_do_put_is_rejected_and_nothing_is_stored() {
    let config = GatewayConfig {
        flight: FlightConfig {
            max_ingest_bytes: 16 * 1024,
            ..FlightConfig::default()
        },
        ..GatewayConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut client = FlightClient::new(server.channel().await);

    let small = logs_batch(&[1, 2], &["INFO", "INFO"]);
    put(
        &mut client,
        FlightDescriptor::new_path(vec!["logs".into()]),
        vec![small],
    )
    .await
    .expect("a small request fits");
    assert_eq!(server.ingest.writes.lock().len(), 1);

    // ~40 KiB in 4 batches: the limit is crossed part-way through the stream.
    let batches: Vec<RecordBatch> = (0..4)
        .map(|b| {
            let ids: Vec<i64> = (0..400).map(|i| b * 400 + i).collect();
            let levels = vec!["INFO"; 400];
            logs_batch(&ids, &levels)
        })
        .collect();
    let err = put(
        &mut client,
        FlightDescriptor::new_path(vec!["logs".into()]),
        batches,
    )
    .await
    .expect_err("too large");
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("16384-byte limit"), "{err}");
    assert_eq!(
        server.ingest.writes.lock().len(),
        1,
        "the backend saw nothing more"
    );
    server.stop().await;
}

#[tokio::test]
async fn flight_sql_bulk_ingest_appends() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;
    let cmd = CommandStatementIngest {
        table_definition_options: None,
        table: "logs".to_string(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    };
    let batches = vec![Ok(logs_batch(&[1, 2, 3], &["INFO", "INFO", "WARN"]))];
    let count = client
        .execute_ingest(cmd, futures::stream::iter(batches))
        .await
        .expect("ingest");
    assert_eq!(count, 3);
    assert_eq!(server.ingest.writes.lock()[0].table, "logs");
    server.stop().await;
}

#[tokio::test]
async fn log_reads_stream_records_with_offsets() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = FlightClient::new(server.channel().await);
    put(
        &mut client,
        FlightDescriptor::new_path(vec!["logs".into()]),
        vec![logs_batch(&[10, 11, 12, 13], &["INFO"; 4])],
    )
    .await
    .expect("put");

    let ticket =
        br#"{"log":{"table":"logs","shard":0,"from_offset":1,"max_rows":2,"follow":false}}"#;
    let batches: Vec<RecordBatch> = client
        .do_get(Ticket::new(ticket.to_vec()))
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("read");
    let offsets: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
        .collect();
    assert_eq!(offsets, [1, 2]);
    let ids = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("ids");
    assert_eq!(ids.values().to_vec(), [11, 12]);

    // An empty read still carries a schema: `_offset` and the table's columns.
    let ticket = br#"{"log":{"table":"services"}}"#;
    let mut stream = client
        .do_get(Ticket::new(ticket.to_vec()))
        .await
        .expect("do_get");
    while let Some(batch) = stream.next().await {
        batch.expect("no error");
    }
    let schema = stream.schema().cloned().expect("schema sent");
    assert_eq!(schema.field(0).name(), "_offset");
    assert_eq!(schema.field(1).name(), "service");

    let err = client
        .do_get(Ticket::new(br#"{"log":{"shard":1}}"#.to_vec()))
        .await
        .expect_err("table missing");
    assert_eq!(code(&err), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn health_action_answers_ok() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = FlightClient::new(server.channel().await);
    let bodies: Vec<_> = client
        .do_action(Action::new("strata.health", ""))
        .await
        .expect("action")
        .try_collect()
        .await
        .expect("results");
    assert_eq!(bodies.len(), 1);
    assert_eq!(&bodies[0][..], br#"{"status":"ok"}"#);
    let actions: Vec<_> = client
        .list_actions()
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("actions");
    assert!(actions.iter().any(|a| a.r#type == "strata.health"));
    assert!(
        actions
            .iter()
            .any(|a| a.r#type == "CreatePreparedStatement")
    );
    let err = match client.do_action(Action::new("strata.nope", "")).await {
        Ok(stream) => stream
            .try_collect::<Vec<_>>()
            .await
            .expect_err("unknown action"),
        Err(e) => e,
    };
    assert_eq!(code(&err), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_bare_flight_sql_service_ingests_through_do_put_fallback() {
    use std::sync::Arc;

    use arrow_flight::flight_service_server::FlightServiceServer;
    use strata_gateway::{IngestBackend, QueryBackend, StrataFlightService};

    use crate::fakes::{FakeIngest, FakeQuery};

    // Served without FlightFront, arrow-flight's dispatcher routes PATH descriptors to
    // `do_put_fallback`.
    let ingest = Arc::new(FakeIngest::default());
    let service = StrataFlightService::new(
        Arc::new(FakeQuery::new()) as Arc<dyn QueryBackend>,
        Arc::clone(&ingest) as Arc<dyn IngestBackend>,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = rx.await;
                },
            ),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = FlightClient::new(channel);
    let results = put(
        &mut client,
        FlightDescriptor::new_path(vec!["logs".into()]),
        vec![logs_batch(&[1, 2], &["INFO", "INFO"])],
    )
    .await
    .expect("put");
    assert_eq!(ack(&results)["rows"], 2);
    assert_eq!(ingest.writes.lock().len(), 1);
    let _ = tx.send(());
    task.await.expect("join").expect("serve");
}
