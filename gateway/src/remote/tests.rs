//! The remote clients against real Flight servers on 127.0.0.1: each test node runs in its
//! own Tokio runtime, so "killing" it (shutting the runtime down) closes its listener and
//! every connection, as a crashed process would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::GetTablesBuilder;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetTables, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, IpcMessage, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use strata_common::HashRing;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use super::*;
use crate::backend::{
    BackendError, Caller, Durability, ErrorKind, IngestBackend, LogRequest, QueryBackend,
    QueryRequest, WriteRequest,
};

// ---------------------------------------------------------------------------------------------
// A test node: a minimal Flight service that can be told to fail, hang or die.

#[derive(Debug, Clone)]
struct Put {
    producer: Option<String>,
    sequence: Option<u64>,
    rows: usize,
    hosts: Vec<String>,
    shard_hint: Option<u32>,
}

#[derive(Debug, Default)]
struct Ctl {
    name: String,
    /// Statements (GetFlightInfo, or DoGet of a statement ticket) fail with UNAVAILABLE.
    fail_queries: AtomicBool,
    /// Statements never answer.
    hang_queries: AtomicBool,
    /// `strata.health` fails.
    fail_health: AtomicBool,
    /// The next N DoPuts fail with UNAVAILABLE.
    fail_puts: AtomicU32,
    /// Statements that reached the node.
    infos: AtomicUsize,
    /// GetFlightInfo calls for statements.
    statement_infos: AtomicUsize,
    queries: AtomicUsize,
    health_checks: AtomicUsize,
    put_attempts: AtomicUsize,
    puts: Mutex<Vec<Put>>,
    seen_sequences: Mutex<Vec<(String, u64)>>,
    log_tickets: Mutex<Vec<serde_json::Value>>,
    last_headers: Mutex<HashMap<String, String>>,
}

#[derive(Clone)]
struct TestService {
    ctl: Arc<Ctl>,
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("node", DataType::Utf8, false),
        Field::new("sql", DataType::Utf8, false),
    ]))
}

fn ipc_schema(schema: &Schema) -> bytes::Bytes {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .expect("schema encodes");
    bytes
}

fn flight_stream(batches: Vec<RecordBatch>) -> Stream<FlightData> {
    FlightDataEncoderBuilder::new()
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(|e| Status::internal(e.to_string()))
        .boxed()
}

impl TestService {
    fn batch(&self, sql: &str) -> RecordBatch {
        RecordBatch::try_new(
            result_schema(),
            vec![
                Arc::new(StringArray::from(vec![self.ctl.name.clone()])),
                Arc::new(StringArray::from(vec![sql.to_string()])),
            ],
        )
        .expect("batch")
    }

    fn remember_headers<T>(&self, req: &Request<T>) {
        let mut h = self.ctl.last_headers.lock();
        for key in [TENANT_HEADER, REQUEST_ID_HEADER, "grpc-timeout"] {
            if let Some(v) = req.metadata().get(key).and_then(|v| v.to_str().ok()) {
                h.insert(key.to_string(), v.to_string());
            }
        }
    }

    /// A statement reaches the node (by GetFlightInfo, or a DoGet of a statement ticket):
    /// counted in `infos`, then held, failed or refused as the controls say.
    async fn statement_attempt(&self, sql: &str) -> Result<(), Status> {
        self.ctl.infos.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        if sql.contains("syntax error") {
            return Err(Status::invalid_argument("bad SQL"));
        }
        Ok(())
    }

    async fn gate(&self) -> Result<(), Status> {
        if self.ctl.hang_queries.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        if self.ctl.fail_queries.load(Ordering::SeqCst) {
            return Err(Status::unavailable(format!(
                "node {} is failing",
                self.ctl.name
            )));
        }
        Ok(())
    }
}

fn header(md: &tonic::metadata::MetadataMap, key: &str) -> Option<String> {
    md.get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tonic::async_trait]
impl FlightService for TestService {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoExchangeStream = Stream<FlightData>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        req: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.remember_headers(&req);
        let any = Any::decode(req.get_ref().cmd.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ticket = if let Ok(Some(q)) = any.unpack::<CommandStatementQuery>() {
            self.ctl.statement_infos.fetch_add(1, Ordering::SeqCst);
            self.statement_attempt(&q.query).await?;
            format!("q:{}", q.query)
        } else if let Ok(Some(p)) = any.unpack::<CommandPreparedStatementQuery>() {
            format!(
                "p:{}",
                String::from_utf8_lossy(&p.prepared_statement_handle)
            )
        } else if let Ok(Some(_)) = any.unpack::<CommandGetTables>() {
            "tables".to_string()
        } else {
            return Err(Status::unimplemented("unknown command"));
        };
        let info = FlightInfo::new()
            .try_with_schema(&result_schema())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)));
        Ok(Response::new(info))
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_get(&self, req: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        self.remember_headers(&req);
        // The ticket a Strata node's GetFlightInfo hands out, which the gateway builds itself.
        if let Ok(any) = Any::decode(req.get_ref().ticket.as_ref())
            && let Ok(Some(t)) = any.unpack::<TicketStatementQuery>()
        {
            let handle: serde_json::Value = serde_json::from_slice(&t.statement_handle)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let sql = handle["sql"].as_str().unwrap_or_default().to_string();
            self.statement_attempt(&sql).await?;
            self.ctl.queries.fetch_add(1, Ordering::SeqCst);
            return Ok(Response::new(flight_stream(vec![self.batch(&sql)])));
        }
        let ticket = String::from_utf8_lossy(&req.get_ref().ticket).to_string();
        if let Some(sql) = ticket
            .strip_prefix("q:")
            .or_else(|| ticket.strip_prefix("p:"))
        {
            self.ctl.queries.fetch_add(1, Ordering::SeqCst);
            return Ok(Response::new(flight_stream(vec![self.batch(sql)])));
        }
        if ticket == "tables" {
            let mut b = GetTablesBuilder::new(
                None::<String>,
                None::<String>,
                None::<String>,
                Vec::<String>::new(),
                true,
            );
            b.append("strata", "public", "logs", "TABLE", &result_schema())
                .map_err(|e| Status::internal(e.to_string()))?;
            let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
            return Ok(Response::new(flight_stream(vec![batch])));
        }
        let v: serde_json::Value =
            serde_json::from_str(&ticket).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let from = v["log"]["from_offset"].as_u64().unwrap_or(0);
        self.ctl.log_tickets.lock().push(v);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "_offset",
            DataType::UInt64,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(UInt64Array::from_iter_values(from..from + 3))],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(flight_stream(vec![batch])))
    }

    async fn do_put(
        &self,
        req: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.remember_headers(&req);
        self.ctl.put_attempts.fetch_add(1, Ordering::SeqCst);
        let md = req.metadata().clone();
        let data: Vec<FlightData> = req.into_inner().try_collect().await?;
        let descriptor = data
            .first()
            .and_then(|d| d.flight_descriptor.clone())
            .unwrap_or_default();
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            futures::stream::iter(data.into_iter().map(Ok::<_, FlightError>)),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if descriptor.r#type == DescriptorType::Cmd as i32 {
            // Binding parameters of a prepared statement: fold the value into the handle.
            let any = Any::decode(descriptor.cmd.as_ref())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let cmd = any
                .unpack::<CommandPreparedStatementQuery>()
                .ok()
                .flatten()
                .ok_or_else(|| Status::invalid_argument("not a prepared statement"))?;
            let value = batches
                .first()
                .map(|b| format!("{:?}", b.column(0)))
                .unwrap_or_default();
            let handle = format!(
                "{} -- {}",
                String::from_utf8_lossy(&cmd.prepared_statement_handle),
                value
            );
            let result = DoPutPreparedStatementResult {
                prepared_statement_handle: Some(handle.into()),
            };
            let out = PutResult {
                app_metadata: result.encode_to_vec().into(),
            };
            return Ok(Response::new(futures::stream::iter([Ok(out)]).boxed()));
        }
        if self
            .ctl
            .fail_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Status::unavailable(format!(
                "node {} is failing writes",
                self.ctl.name
            )));
        }
        let producer = header(&md, PRODUCER_ID_HEADER);
        let sequence = header(&md, SEQUENCE_HEADER).and_then(|s| s.parse().ok());
        let shard_hint = header(&md, SHARD_HEADER).and_then(|s| s.parse().ok());
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let hosts = batches
            .iter()
            .filter_map(|b| b.column_by_name("host"))
            .flat_map(|c| {
                c.as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let duplicate = match (&producer, sequence) {
            (Some(p), Some(s)) => {
                let mut seen = self.ctl.seen_sequences.lock();
                let dup = seen.contains(&(p.clone(), s));
                seen.push((p.clone(), s));
                dup
            }
            _ => false,
        };
        self.ctl.puts.lock().push(Put {
            producer,
            sequence,
            rows,
            hosts,
            shard_hint,
        });
        let ack = serde_json::json!({
            "rows": rows,
            "shards": [{"shard": shard_hint.unwrap_or(0), "first_offset": 0, "last_offset": rows.saturating_sub(1)}],
            "duplicate": duplicate,
        });
        let out = PutResult {
            app_metadata: ack.to_string().into(),
        };
        Ok(Response::new(futures::stream::iter([Ok(out)]).boxed()))
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }

    async fn do_action(
        &self,
        req: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = req.into_inner();
        let body: bytes::Bytes = match action.r#type.as_str() {
            HEALTH_ACTION => {
                self.ctl.health_checks.fetch_add(1, Ordering::SeqCst);
                if self.ctl.fail_health.load(Ordering::SeqCst) {
                    return Err(Status::unavailable("not ready"));
                }
                r#"{"status":"ok"}"#.into()
            }
            "CreatePreparedStatement" => {
                let any = Any::decode(action.body.as_ref())
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let req = any
                    .unpack::<ActionCreatePreparedStatementRequest>()
                    .ok()
                    .flatten()
                    .ok_or_else(|| Status::invalid_argument("bad request"))?;
                let param_schema = Schema::new(vec![Field::new("$1", DataType::Utf8, true)]);
                ActionCreatePreparedStatementResult {
                    prepared_statement_handle: req.query.into(),
                    dataset_schema: ipc_schema(&result_schema()),
                    parameter_schema: ipc_schema(&param_schema),
                }
                .as_any()
                .encode_to_vec()
                .into()
            }
            "ClosePreparedStatement" => return Ok(Response::new(futures::stream::empty().boxed())),
            other => return Err(Status::invalid_argument(format!("unknown action {other}"))),
        };
        Ok(Response::new(
            futures::stream::iter([Ok(arrow_flight::Result { body })]).boxed(),
        ))
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }
}

/// A Flight server in its own runtime.
struct TestNode {
    addr: SocketAddr,
    ctl: Arc<Ctl>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TestNode {
    fn start(name: &str) -> Self {
        let ctl = Arc::new(Ctl {
            name: name.to_string(),
            ..Ctl::default()
        });
        Self::start_at("127.0.0.1:0".parse().expect("addr"), ctl)
    }

    fn start_at(addr: SocketAddr, ctl: Arc<Ctl>) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let svc = TestService {
            ctl: Arc::clone(&ctl),
        };
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = Server::builder()
                .add_service(FlightServiceServer::new(svc))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
        });
        Self {
            addr,
            ctl,
            rt: Some(rt),
        }
    }

    /// Die: the listener and every open connection close at once.
    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    fn spec(&self) -> NodeSpec {
        NodeSpec::new(self.addr.to_string())
    }

    fn name(&self) -> &str {
        &self.ctl.name
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn config(policy: Policy) -> RemoteConfig {
    RemoteConfig {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(2),
        health_interval: Duration::from_millis(50),
        health_timeout: Duration::from_millis(200),
        rise: 2,
        fall: 1,
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(300),
            jitter: 0.0,
            half_open_max: 1,
        },
        retry: RetryConfig {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            seed: Some(7),
        },
        policy,
        ..RemoteConfig::default()
    }
}

fn caller() -> Caller {
    Caller {
        tenant: Some("acme".into()),
        request_id: "req-1".into(),
    }
}

fn query(sql: &str) -> QueryRequest {
    QueryRequest {
        caller: caller(),
        sql: sql.to_string(),
        params: None,
        timeout: Some(Duration::from_secs(5)),
        cost: None,
    }
}

fn query_backend(
    nodes: &[&TestNode],
    config: &RemoteConfig,
) -> (RemoteQueryBackend, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let metrics = RemoteMetrics::new(&registry).expect("metrics");
    let specs: Vec<NodeSpec> = nodes.iter().map(|n| n.spec()).collect();
    (
        RemoteQueryBackend::new(&specs, config, &metrics).expect("backend"),
        registry,
    )
}

/// Run a statement and return the name of the node that answered.
async fn run(backend: &RemoteQueryBackend, sql: &str) -> Result<String, BackendError> {
    let (_, stream) = backend.execute(query(sql)).await?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    Ok(node_of(&batches))
}

fn node_of(batches: &[RecordBatch]) -> String {
    batches
        .first()
        .and_then(|b| b.column_by_name("node"))
        .map(|c| c.as_string::<i32>().value(0).to_string())
        .unwrap_or_default()
}

fn status_of(status: &[NodeStatus], node: &TestNode) -> NodeStatus {
    status
        .iter()
        .find(|s| s.node == node.addr.to_string())
        .cloned()
        .expect("node in status")
}

/// Poll `cond` every 10 ms for up to `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for family in registry.gather().iter().filter(|f| f.name() == name) {
        let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
        for m in family.get_metric() {
            if labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            }) {
                total += if counter {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                };
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Queries.

#[tokio::test]
async fn round_robin_spreads_queries_evenly() {
    let nodes = [
        TestNode::start("a"),
        TestNode::start("b"),
        TestNode::start("c"),
    ];
    let (backend, registry) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::RoundRobin),
    );
    for i in 0..30 {
        run(&backend, &format!("SELECT {i}")).await.expect("query");
    }
    for n in &nodes {
        assert_eq!(
            n.ctl.queries.load(Ordering::SeqCst),
            10,
            "node {}",
            n.name()
        );
        // A query is one DoGet of a statement ticket, not GetFlightInfo + DoGet.
        assert_eq!(n.ctl.statement_infos.load(Ordering::SeqCst), 0);
        let addr = n.addr.to_string();
        assert_eq!(metric(&registry, REQUESTS_TOTAL, &[("node", &addr)]), 10.0);
    }
    // The headers reach the node: tenant, request id and the remaining deadline.
    let h = nodes[0].ctl.last_headers.lock().clone();
    assert_eq!(h.get(TENANT_HEADER).map(String::as_str), Some("acme"));
    assert_eq!(h.get(REQUEST_ID_HEADER).map(String::as_str), Some("req-1"));
    assert!(h.contains_key("grpc-timeout"), "{h:?}");
}

#[tokio::test]
async fn least_outstanding_prefers_idle_nodes() {
    let nodes = [TestNode::start("a"), TestNode::start("b")];
    let (backend, _r) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::LeastOutstanding),
    );
    // An open result stream keeps its node busy.
    let (_, mut held) = backend.execute(query("SELECT 1")).await.expect("query");
    let first = held.next().await.expect("a batch").expect("ok");
    let busy = node_of(&[first]);
    for i in 0..5 {
        let other = run(&backend, &format!("SELECT {i}")).await.expect("query");
        assert_ne!(other, busy, "query {i} went to the busy node");
    }
    let busy_status = backend
        .status()
        .into_iter()
        .find(|s| s.in_flight == 1)
        .expect("one node has the open stream");
    assert_eq!(busy_status.in_flight, 1);
    drop(held);
    assert!(backend.status().iter().all(|s| s.in_flight == 0));
    // Idle again: ties are spread.
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        seen.insert(run(&backend, &format!("SELECT {i}")).await.expect("query"));
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn cache_affinity_sticks_to_one_node_per_table_set() {
    let mut nodes = [
        TestNode::start("a"),
        TestNode::start("b"),
        TestNode::start("c"),
    ];
    let (backend, _r) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::CacheAffinity),
    );
    let mut logs_nodes = std::collections::HashSet::new();
    for i in 0..10 {
        let sql = format!("SELECT count(*) FROM logs WHERE level = 'L{i}'");
        logs_nodes.insert(run(&backend, &sql).await.expect("query"));
    }
    assert_eq!(logs_nodes.len(), 1, "{logs_nodes:?}");
    let preferred = logs_nodes.into_iter().next().unwrap_or_default();

    // Many table sets spread over the nodes.
    let mut spread = std::collections::HashSet::new();
    for i in 0..60 {
        spread.insert(
            run(&backend, &format!("SELECT * FROM t{i}"))
                .await
                .expect("query"),
        );
    }
    assert_eq!(spread.len(), 3);

    // The preferred node dies: its keys move to one other node, and stay there.
    let idx = nodes
        .iter()
        .position(|n| n.name() == preferred)
        .expect("known node");
    nodes[idx].kill();
    let mut after = std::collections::HashSet::new();
    for i in 0..10 {
        let sql = format!("SELECT * FROM logs WHERE host = 'h{i}'");
        after.insert(
            run(&backend, &sql)
                .await
                .expect("query survives the dead node"),
        );
    }
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!after.contains(&preferred));
}

#[tokio::test]
async fn a_killed_node_leaves_rotation_and_queries_retry_on_another() {
    let mut nodes = [TestNode::start("a"), TestNode::start("b")];
    let (backend, registry) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::RoundRobin),
    );
    for i in 0..4 {
        run(&backend, &format!("SELECT {i}"))
            .await
            .expect("warm up");
    }
    nodes[0].kill();
    for i in 0..10 {
        let node = run(&backend, &format!("SELECT {i}"))
            .await
            .expect("retried on the live node");
        assert_eq!(node, "b");
    }
    let a = status_of(&backend.status(), &nodes[0]);
    assert!(!a.healthy, "{a:?}");
    assert!(a.last_error.is_some());
    assert!(metric(&registry, RETRIES_TOTAL, &[("role", "compute")]) >= 1.0);
    let addr = nodes[0].addr.to_string();
    assert_eq!(metric(&registry, NODE_HEALTHY, &[("node", &addr)]), 0.0);

    // Errors about the request itself are not retried and do not hurt the node.
    let before = nodes[1].ctl.infos.load(Ordering::SeqCst);
    let err = run(&backend, "SELECT syntax error")
        .await
        .expect_err("bad SQL");
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert_eq!(nodes[1].ctl.infos.load(Ordering::SeqCst), before + 1);
    assert_eq!(
        status_of(&backend.status(), &nodes[1]).breaker,
        BreakerState::Closed
    );
}

#[tokio::test]
async fn breaker_opens_after_failures_and_closes_after_recovery_and_rise() {
    let nodes = [TestNode::start("a"), TestNode::start("b")];
    let (backend, registry) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::RoundRobin),
    );
    let a_addr = nodes[0].addr.to_string();
    // Node a passes health checks but fails every query: each failure takes it out of
    // rotation until `rise` checks pass, and counts against its breaker.
    nodes[0].ctl.fail_queries.store(true, Ordering::SeqCst);
    let mut opened = false;
    for i in 0..200 {
        assert_eq!(
            run(&backend, &format!("SELECT {i}"))
                .await
                .expect("served by b"),
            "b"
        );
        if status_of(&backend.status(), &nodes[0]).breaker == BreakerState::Open {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(opened, "the breaker of a never opened");
    assert_eq!(metric(&registry, BREAKER_STATE, &[("node", &a_addr)]), 2.0);
    assert_eq!(
        nodes[0].ctl.infos.load(Ordering::SeqCst),
        3,
        "threshold is 3 failures"
    );

    // Open: a gets nothing, even once its health checks pass again.
    let infos = nodes[0].ctl.infos.load(Ordering::SeqCst);
    for i in 0..5 {
        run(&backend, &format!("SELECT {i}"))
            .await
            .expect("served by b");
    }
    assert_eq!(nodes[0].ctl.infos.load(Ordering::SeqCst), infos);

    // Recovery: after open_for a trial goes through, succeeds and closes the breaker.
    nodes[0].ctl.fail_queries.store(false, Ordering::SeqCst);
    let mut served_by_a = false;
    for i in 0..200 {
        if run(&backend, &format!("SELECT {i}")).await.expect("query") == "a" {
            served_by_a = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(served_by_a, "a never came back");
    let a = status_of(&backend.status(), &nodes[0]);
    assert_eq!(a.breaker, BreakerState::Closed);
    assert!(a.healthy);
    assert_eq!(metric(&registry, BREAKER_STATE, &[("node", &a_addr)]), 0.0);
    for to in ["open", "half-open", "closed"] {
        assert!(
            metric(
                &registry,
                BREAKER_TRANSITIONS_TOTAL,
                &[("node", &a_addr), ("to", to)]
            ) >= 1.0,
            "{to}"
        );
    }
}

#[tokio::test]
async fn health_checks_take_a_node_out_and_back_after_rise() {
    let nodes = [TestNode::start("a"), TestNode::start("b")];
    let (backend, _r) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::RoundRobin),
    );
    nodes[0].ctl.fail_health.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(2), || !status_of(
            &backend.status(),
            &nodes[0]
        )
        .healthy)
        .await
    );
    for i in 0..6 {
        assert_eq!(
            run(&backend, &format!("SELECT {i}")).await.expect("query"),
            "b"
        );
    }
    nodes[0].ctl.fail_health.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(2), || status_of(
            &backend.status(),
            &nodes[0]
        )
        .healthy)
        .await
    );
    assert!(status_of(&backend.status(), &nodes[0]).consecutive_successful_checks >= 2);
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        seen.insert(run(&backend, &format!("SELECT {i}")).await.expect("query"));
    }
    assert_eq!(seen.len(), 2);

    // Dropping the backend stops its health checker.
    drop(backend);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let checks = nodes[1].ctl.health_checks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(nodes[1].ctl.health_checks.load(Ordering::SeqCst), checks);
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    let nodes = [TestNode::start("a"), TestNode::start("b")];
    // Hanging nodes: the first attempt uses the whole deadline, nothing is retried after it.
    for n in &nodes {
        n.ctl.hang_queries.store(true, Ordering::SeqCst);
    }
    let (backend, _r) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::RoundRobin),
    );
    let start = Instant::now();
    let mut req = query("SELECT 1");
    req.timeout = Some(Duration::from_millis(300));
    let err = backend.execute(req).await.err().expect("times out");
    let took = start.elapsed();
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded, "{err}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(600),
        "{took:?}"
    );
    // Running out of the caller's time is not the node's fault.
    assert!(
        backend
            .status()
            .iter()
            .all(|s| s.healthy && s.breaker == BreakerState::Closed)
    );

    // Failing nodes with long backoffs: retries stop before the deadline, not after.
    let mut cfg = config(Policy::RoundRobin);
    cfg.retry = RetryConfig {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(120),
        max_backoff: Duration::from_millis(120),
        seed: Some(1),
    };
    cfg.breaker.failure_threshold = 100;
    for n in &nodes {
        n.ctl.hang_queries.store(false, Ordering::SeqCst);
        n.ctl.fail_queries.store(true, Ordering::SeqCst);
    }
    let (backend, _r) = query_backend(&nodes.iter().collect::<Vec<_>>(), &cfg);
    let start = Instant::now();
    let mut req = query("SELECT 1");
    req.timeout = Some(Duration::from_millis(250));
    let err = backend.execute(req).await.err().expect("fails");
    let took = start.elapsed();
    // Usually the retry loop sees that the next backoff would pass the deadline and stops
    // (UNAVAILABLE); on a loaded machine an attempt itself can run into the deadline
    // (DEADLINE_EXCEEDED). Either way it must not sleep past the deadline.
    match err.kind {
        // (or the deadline passed while the last attempt ran)
        ErrorKind::Unavailable => {
            assert!(
                err.message.contains("deadline leaves no time")
                    || err.message.contains("deadline passed during this attempt"),
                "{err}"
            )
        }
        ErrorKind::DeadlineExceeded => {
            assert!(err.message.contains("deadline passed"), "{err}")
        }
        other => panic!("{other:?}: {err}"),
    }
    // A sleep past the deadline would end at least one backoff (120 ms) after it; 100 ms of
    // slack keeps a loaded 2-core machine from failing the test while still catching that.
    assert!(
        took < Duration::from_millis(250 + 100),
        "slept past the deadline: {took:?}"
    );
    let attempts: usize = nodes
        .iter()
        .map(|n| n.ctl.infos.load(Ordering::SeqCst))
        .sum();
    assert!(attempts >= 2, "{attempts} attempts");
}

#[tokio::test]
async fn schema_tables_parameters_and_prepare_go_through_flight_sql() {
    let nodes = [TestNode::start("a")];
    let (backend, _r) = query_backend(
        &nodes.iter().collect::<Vec<_>>(),
        &config(Policy::RoundRobin),
    );
    let schema = backend
        .schema(query("SELECT * FROM logs"))
        .await
        .expect("schema");
    assert_eq!(schema, result_schema());

    let tables = backend.list_tables(&caller()).await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].0, "logs");
    assert_eq!(tables[0].1, result_schema());

    let param = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["web-7"]))],
    )
    .expect("params");
    let mut req = query("SELECT * FROM logs WHERE host = $1");
    req.params = Some(param);
    let (_, stream) = backend
        .execute(req.clone())
        .await
        .expect("execute with parameters");
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    let sql = batches[0].column(1).as_string::<i32>().value(0).to_string();
    assert!(
        sql.contains("WHERE host = $1") && sql.contains("web-7"),
        "{sql}"
    );

    let prepared = backend.prepare(req).await.expect("prepare");
    assert_eq!(prepared.dataset, result_schema());
    assert_eq!(prepared.parameters.map(|p| p.fields().len()), Some(1));
}

// ---------------------------------------------------------------------------------------------
// Writes and log reads.

struct Layouts(HashMap<String, TableLayout>);

#[async_trait::async_trait]
impl ShardResolver for Layouts {
    async fn layout(
        &self,
        _caller: &Caller,
        table: &str,
    ) -> Result<Option<TableLayout>, BackendError> {
        Ok(self.0.get(table).cloned())
    }
}

fn layouts() -> Arc<dyn ShardResolver> {
    let mut m = HashMap::new();
    m.insert(
        "logs".to_string(),
        TableLayout {
            num_shards: 4,
            shard_key: Some("host".into()),
        },
    );
    m.insert(
        "events".to_string(),
        TableLayout {
            num_shards: 4,
            shard_key: None,
        },
    );
    Arc::new(Layouts(m))
}

fn ingest_backend(nodes: &[&TestNode]) -> RemoteIngestBackend {
    let metrics = RemoteMetrics::unregistered().expect("metrics");
    let specs: Vec<NodeSpec> = nodes.iter().map(|n| n.spec()).collect();
    RemoteIngestBackend::new(&specs, &config(Policy::RoundRobin), layouts(), &metrics)
        .expect("backend")
}

fn rows(n: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("host", DataType::Utf8, false),
        Field::new("v", DataType::UInt64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("h{}", i % 50)).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from_iter_values(0..n as u64)),
        ],
    )
    .expect("batch")
}

fn write(table: &str, n: usize, producer: Option<(&str, u64)>) -> WriteRequest {
    WriteRequest {
        caller: caller(),
        table: table.to_string(),
        batches: vec![rows(n)],
        producer: producer.map(|(p, s)| (p.to_string(), s)),
        durability: Durability::Durable,
        timeout: Some(Duration::from_secs(5)),
    }
}

#[tokio::test]
async fn writes_are_split_by_shard_owner_and_acks_merged() {
    let nodes = [TestNode::start("i0"), TestNode::start("i1")];
    let backend = ingest_backend(&nodes.iter().collect::<Vec<_>>());
    let ack = backend
        .write(write("logs", 200, Some(("p", 1))))
        .await
        .expect("write");
    assert_eq!(ack.rows, 200);
    assert!(!ack.duplicate);
    let ring = HashRing::for_shards(4);
    let mut total = 0;
    for (i, n) in nodes.iter().enumerate() {
        let puts = n.ctl.puts.lock().clone();
        assert_eq!(puts.len(), 1, "one DoPut per node");
        assert_eq!(puts[0].producer.as_deref(), Some("p"));
        assert_eq!(puts[0].sequence, Some(1));
        for h in &puts[0].hosts {
            let shard = ring.lookup_key(h.as_bytes()).expect("shard");
            assert_eq!(
                shard as usize % 2,
                i,
                "host {h} (shard {shard}) reached node {i}"
            );
        }
        total += puts[0].rows;
    }
    assert_eq!(total, 200);

    // The same producer sequence again: every shard writer reports a duplicate.
    let ack = backend
        .write(write("logs", 200, Some(("p", 1))))
        .await
        .expect("write");
    assert!(ack.duplicate);

    // No shard key: whole writes rotate over shards (and so over nodes), with the shard named.
    for _ in 0..2 {
        backend
            .write(write("events", 10, None))
            .await
            .expect("write");
    }
    let hint = |n: &TestNode| n.ctl.puts.lock().last().and_then(|p| p.shard_hint);
    assert_eq!(hint(&nodes[0]), Some(0));
    assert_eq!(hint(&nodes[1]), Some(1));

    // An idempotent producer's writes to a keyless table always go to its shard's owner,
    // whatever the rotation, so a retry meets the node that saw its sequence.
    for producer in ["alpha", "beta", "gamma", "delta"] {
        let shard = strata_common::producer_shard(producer, 4);
        let owner = &nodes[shard as usize % 2];
        for seq in [1, 1, 2] {
            let before = owner.ctl.puts.lock().len();
            backend
                .write(write("events", 5, Some((producer, seq))))
                .await
                .expect("write");
            let puts = owner.ctl.puts.lock().clone();
            assert_eq!(
                puts.len(),
                before + 1,
                "{producer} #{seq} reached shard {shard}'s owner"
            );
            assert_eq!(puts.last().and_then(|p| p.shard_hint), Some(shard));
        }
    }
    let before: Vec<usize> = nodes.iter().map(|n| n.ctl.puts.lock().len()).collect();

    // A table that does not exist yet: everything to shard 0's owner, which creates it.
    backend
        .write(write("new_table", 10, None))
        .await
        .expect("write");
    assert_eq!(nodes[0].ctl.puts.lock().len(), before[0] + 1);
    assert_eq!(nodes[1].ctl.puts.lock().len(), before[1]);
    assert_eq!(hint(&nodes[0]), Some(0));

    // A batch without the shard key column is refused before anything is sent.
    let mut bad = write("logs", 1, None);
    bad.batches = vec![
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::UInt64, false)])),
            vec![Arc::new(UInt64Array::from(vec![1]))],
        )
        .expect("batch"),
    ];
    let err = backend.write(bad).await.expect_err("no shard key");
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert!(err.message.contains("host"), "{err}");
}

#[tokio::test]
async fn a_write_is_retried_only_with_an_idempotent_producer() {
    let nodes = [TestNode::start("i0")];
    let backend = ingest_backend(&[&nodes[0]]);
    nodes[0].ctl.fail_puts.store(1, Ordering::SeqCst);
    let err = backend
        .write(write("logs", 20, None))
        .await
        .expect_err("not retried");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(nodes[0].ctl.put_attempts.load(Ordering::SeqCst), 1);
    assert!(nodes[0].ctl.puts.lock().is_empty());

    // The failure took the node out of rotation; health checks bring it back.
    assert!(eventually(Duration::from_secs(2), || backend.status()[0].healthy).await);
    nodes[0].ctl.fail_puts.store(1, Ordering::SeqCst);
    let ack = backend
        .write(write("logs", 20, Some(("producer-1", 7))))
        .await
        .expect("retried");
    assert_eq!(ack.rows, 20);
    assert_eq!(nodes[0].ctl.put_attempts.load(Ordering::SeqCst), 3);
    let puts = nodes[0].ctl.puts.lock().clone();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        (puts[0].producer.as_deref(), puts[0].sequence),
        (Some("producer-1"), Some(7))
    );
}

#[tokio::test]
async fn a_write_whose_owner_is_down_fails_fast_with_a_retry_hint() {
    let mut nodes = [TestNode::start("i0"), TestNode::start("i1")];
    let backend = ingest_backend(&nodes.iter().collect::<Vec<_>>());
    nodes[1].kill();
    assert!(eventually(Duration::from_secs(2), || !backend.status()[1].healthy).await);
    let start = Instant::now();
    let err = backend
        .write(write("logs", 200, Some(("p", 9))))
        .await
        .expect_err("owner down");
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.retry_after.is_some());
    assert!(
        err.message
            .contains("no other node can take this shard's writes"),
        "{err}"
    );
    // Node 0 took its shards; the message says so.
    assert_eq!(nodes[0].ctl.puts.lock().len(), 1);
    assert!(
        err.message.contains("were written") && err.message.contains("same producer id"),
        "{err}"
    );
}

#[tokio::test]
async fn log_reads_go_to_the_shard_owner() {
    let nodes = [TestNode::start("i0"), TestNode::start("i1")];
    let backend = ingest_backend(&nodes.iter().collect::<Vec<_>>());
    let stream = backend
        .read_log(LogRequest {
            caller: caller(),
            table: "logs".into(),
            shard: 3,
            from_offset: 40,
            max_rows: 100,
            follow: false,
        })
        .await
        .expect("read");
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    let offsets: Vec<u64> = batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .values()
        .to_vec();
    assert_eq!(offsets, vec![40, 41, 42]);
    assert!(nodes[0].ctl.log_tickets.lock().is_empty());
    let tickets = nodes[1].ctl.log_tickets.lock().clone();
    assert_eq!(tickets[0]["log"]["shard"], 3);
    assert_eq!(tickets[0]["log"]["table"], "logs");
    assert_eq!(tickets[0]["log"]["follow"], false);
}
