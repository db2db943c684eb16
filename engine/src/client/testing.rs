//! A small in-process Flight SQL server for the client's tests: it answers queries with a
//! fixed batch, updates with a row count, `GetTables` with one table, and plain `DoPut`s as
//! the gateway does (JSON ack, idempotent producer headers), failing chosen sequence
//! numbers once with RESOURCE_EXHAUSTED and a `retry-after-ms` hint.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::GetTablesBuilder;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    Any, CommandGetTables, CommandStatementQuery, CommandStatementUpdate, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, PutResult, Ticket};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

/// One `DoPut` the mock stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Put {
    pub(super) table: Vec<String>,
    pub(super) producer: Option<String>,
    pub(super) sequence: Option<u64>,
    pub(super) rows: usize,
    pub(super) authorization: Option<String>,
}

#[derive(Default, Clone)]
pub(super) struct Mock {
    /// Stored puts, in order.
    pub(super) puts: Arc<Mutex<Vec<Put>>>,
    /// Attempts, including the failed ones.
    pub(super) attempts: Arc<Mutex<usize>>,
    /// Sequence numbers that fail (once) with RESOURCE_EXHAUSTED.
    pub(super) fail_once: Arc<Mutex<HashSet<u64>>>,
}

pub(super) fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("level", DataType::Utf8, true),
        Field::new("n", DataType::Int64, false),
    ]))
}

fn result_batch() -> RecordBatch {
    RecordBatch::try_new(
        result_schema(),
        vec![
            Arc::new(StringArray::from(vec![Some("INFO"), None])),
            Arc::new(Int64Array::from(vec![80, 20])),
        ],
    )
    .expect("valid batch")
}

type DataStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

fn encode(batches: Vec<RecordBatch>, schema: SchemaRef) -> DataStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

fn header(r: &Request<PeekableFlightDataStream>, name: &str) -> Option<String> {
    r.metadata()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tonic::async_trait]
impl FlightSqlService for Mock {
    type FlightService = Self;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if query.query.contains("missing") {
            return Err(Status::invalid_argument("table 'missing' not found"));
        }
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let info = FlightInfo::new()
            .try_with_schema(&result_schema())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_descriptor(request.into_inner())
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            );
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let sql = String::from_utf8_lossy(&ticket.statement_handle).to_string();
        let batches = if sql.contains("where false") {
            Vec::new()
        } else {
            vec![result_batch()]
        };
        Ok(Response::new(encode(batches, result_schema())))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_descriptor(request.into_inner())
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(query.as_any().encode_to_vec())),
            );
        Ok(Response::new(info))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut b: GetTablesBuilder = query.into_builder();
        b.append("strata", "public", "logs", "TABLE", &result_schema())
            .map_err(|e| Status::internal(e.to_string()))?;
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        let schema = batch.schema();
        Ok(Response::new(encode(vec![batch], schema)))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        if cmd.query.contains("missing") {
            return Err(Status::not_found("table 'missing' not found"));
        }
        Ok(3)
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<PutResult, Status>> + Send>>>, Status>
    {
        let producer = header(&request, "x-strata-producer-id");
        let sequence = header(&request, "x-strata-sequence").and_then(|s| s.parse().ok());
        let authorization = header(&request, "authorization");
        let mut stream = request.into_inner();
        let first = stream
            .peek()
            .await
            .cloned()
            .ok_or_else(|| Status::invalid_argument("empty DoPut"))??;
        let table = first.flight_descriptor.map(|d| d.path).unwrap_or_default();
        if table == ["reject"] {
            return Err(Status::invalid_argument(
                "column `n`: expected Int64, found Utf8",
            ));
        }
        let batches: Vec<RecordBatch> =
            FlightRecordBatchStream::new_from_flight_data(stream.map_err(Into::into))
                .try_collect()
                .await
                .map_err(Status::from)?;
        *self.attempts.lock().expect("lock") += 1;
        if let Some(seq) = sequence
            && self.fail_once.lock().expect("lock").remove(&seq)
        {
            let mut s = Status::resource_exhausted("ingest buffer full");
            s.metadata_mut()
                .insert("retry-after-ms", "5".parse().expect("ascii"));
            return Err(s);
        }
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        self.puts.lock().expect("lock").push(Put {
            table,
            producer,
            sequence,
            rows,
            authorization,
        });
        let ack = serde_json::json!({"rows": rows, "shards": [], "duplicate": false});
        let result = PutResult {
            app_metadata: ack.to_string().into_bytes().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves `mock` on a free local port; returns its URL and the server task (abort it).
pub(super) async fn serve(mock: Mock) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    let server = tonic::transport::Server::builder()
        .add_service(FlightServiceServer::new(mock))
        .serve_with_incoming(incoming);
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    (format!("http://{addr}"), task)
}
