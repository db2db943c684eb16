//! SQL statements and prepared statements.
//!
//! A statement ticket carries the SQL (JSON `{"sql": …}`), never the tenant: who runs it is
//! decided by the credentials on the `DoGet` call. Results are streamed batch by batch.
//! Statements with several bound parameter rows run once per row, one after the other;
//! query results are concatenated and update counts summed.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow_flight::FlightDescriptor;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{FlightInfo, Ticket};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::context::CallContext;
use super::encode::{DataStream, encode_stream, flight_info, schema_bytes, with_final_cost};
use super::limits::{FlightDataStream, read_upload};
use super::prepared::Handle;
use super::{StrataFlightService, statement_scope};
use crate::auth::Scope;
use crate::backend::{BatchStream, CostSink, QueryRequest};
use crate::status::{internal, invalid_argument, to_status};

/// What a statement ticket holds.
#[derive(Debug, Serialize, Deserialize)]
struct StatementTicket {
    sql: String,
}

/// The `DoGet` ticket of a one-shot statement, as `GetFlightInfo` hands it out. The remote
/// backend builds it itself to run a query on a compute node (which serves this same Flight
/// code) in one `DoGet`, without a `GetFlightInfo` round trip that would plan it twice.
pub(crate) fn statement_ticket(sql: &str) -> Result<Ticket, Status> {
    let handle = serde_json::to_vec(&StatementTicket {
        sql: sql.to_string(),
    })
    .map_err(|e| internal(format!("cannot encode a ticket: {e}")))?;
    let ticket = TicketStatementQuery {
        statement_handle: handle.into(),
    };
    Ok(Ticket::new(ticket.as_any().encode_to_vec()))
}

/// The SQL of a statement ticket's handle (untrusted bytes from a client).
pub(crate) fn parse_statement_handle(handle: &[u8]) -> Result<String, Status> {
    serde_json::from_slice::<StatementTicket>(handle)
        .map(|t| t.sql)
        .map_err(|_| invalid_argument("not a Strata statement ticket: call GetFlightInfo first"))
}

impl StrataFlightService {
    fn query_request(
        &self,
        ctx: &CallContext,
        sql: String,
        params: Option<RecordBatch>,
    ) -> QueryRequest {
        QueryRequest {
            caller: ctx.caller.clone(),
            sql,
            params,
            timeout: ctx.timeout,
            cost: None,
        }
    }

    /// Admits a call that will run `sql` with the scope it needs.
    fn admit_sql(&self, metadata: &MetadataMap, sql: &str) -> Result<CallContext, Status> {
        let (scope, what) = statement_scope(sql);
        self.admit(metadata, scope, what)
    }

    // --- one-shot statements ---

    pub(super) async fn statement_info(
        &self,
        cmd: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        no_transactions(cmd.transaction_id.as_ref())?;
        let ctx = self.admit_sql(request.metadata(), &cmd.query)?;
        let schema = self
            .query
            .schema(self.query_request(&ctx, cmd.query.clone(), None))
            .await
            .map_err(to_status)?;
        let ticket = statement_ticket(&cmd.query)?;
        flight_info(&schema, ticket.ticket.to_vec(), request.into_inner())
    }

    pub(super) async fn statement_stream(
        &self,
        ticket: TicketStatementQuery,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        let sql = parse_statement_handle(&ticket.statement_handle)?;
        let ctx = self.admit_sql(metadata, &sql)?;
        let cost = CostSink::default();
        let mut request = self.query_request(&ctx, sql, None);
        request.cost = Some(cost.clone());
        let (schema, stream) = self.query.execute(request).await.map_err(to_status)?;
        Ok(with_final_cost(encode_stream(Some(schema), stream), cost))
    }

    pub(super) async fn statement_update(
        &self,
        cmd: CommandStatementUpdate,
        metadata: &MetadataMap,
    ) -> Result<i64, Status> {
        no_transactions(cmd.transaction_id.as_ref())?;
        let ctx = self.admit(metadata, Scope::Write, "a statement update")?;
        let (_, stream) = self
            .query
            .execute(self.query_request(&ctx, cmd.query, None))
            .await
            .map_err(to_status)?;
        affected_rows(stream).await
    }

    // --- prepared statements ---

    pub(super) async fn create_prepared(
        &self,
        cmd: ActionCreatePreparedStatementRequest,
        metadata: &MetadataMap,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        no_transactions(cmd.transaction_id.as_ref())?;
        let ctx = self.admit_sql(metadata, &cmd.query)?;
        let schemas = self
            .query
            .prepare(self.query_request(&ctx, cmd.query.clone(), None))
            .await
            .map_err(to_status)?;
        let parameter_schema = match &schemas.parameters {
            Some(p) if !p.fields().is_empty() => schema_bytes(p)?,
            _ => Bytes::new(),
        };
        let handle = self
            .prepared
            .create(ctx.caller.tenant.as_deref(), cmd.query, Instant::now());
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode(),
            dataset_schema: schema_bytes(&schemas.dataset)?,
            parameter_schema,
        })
    }

    pub(super) async fn bind_parameters(
        &self,
        cmd: CommandPreparedStatementQuery,
        metadata: &MetadataMap,
        stream: FlightDataStream,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let ctx = self.admit_sql(metadata, &handle.sql)?;
        let params = self.read_params(stream).await?;
        if let Some(params) = params {
            self.prepared.bind(
                &handle,
                ctx.caller.tenant.as_deref(),
                params,
                Instant::now(),
            )?;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    pub(super) async fn prepared_info(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let ctx = self.admit_sql(request.metadata(), &handle.sql)?;
        let params = self.bound_params(&handle, &ctx);
        let first = param_rows(params).into_iter().next().flatten();
        let schema = self
            .query
            .schema(self.query_request(&ctx, handle.sql, first))
            .await
            .map_err(to_status)?;
        flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    pub(super) async fn prepared_stream(
        &self,
        cmd: CommandPreparedStatementQuery,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let ctx = self.admit_sql(metadata, &handle.sql)?;
        let params = self.bound_params(&handle, &ctx);
        let cost = CostSink::default();
        let (schema, stream) = self
            .execute_rows(&ctx, handle.sql, params, cost.clone())
            .await?;
        Ok(with_final_cost(encode_stream(Some(schema), stream), cost))
    }

    pub(super) async fn prepared_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        metadata: &MetadataMap,
        stream: FlightDataStream,
    ) -> Result<i64, Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let ctx = self.admit(metadata, Scope::Write, "a statement update")?;
        // Parameters sent with the update win over earlier bound ones.
        let params = match self.read_params(stream).await? {
            Some(params) => Some(params),
            None => self.bound_params(&handle, &ctx),
        };
        let mut total = 0i64;
        for row in param_rows(params) {
            let (_, stream) = self
                .query
                .execute(self.query_request(&ctx, handle.sql.clone(), row))
                .await
                .map_err(to_status)?;
            total = total.saturating_add(affected_rows(stream).await?);
        }
        Ok(total)
    }

    pub(super) fn close_prepared(
        &self,
        cmd: ActionClosePreparedStatementRequest,
        metadata: &MetadataMap,
    ) -> Result<(), Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let ctx = self.admit(metadata, Scope::Read, "closing a prepared statement")?;
        self.prepared.close(&handle, ctx.caller.tenant.as_deref());
        Ok(())
    }

    // --- helpers ---

    fn bound_params(&self, handle: &Handle, ctx: &CallContext) -> Option<RecordBatch> {
        self.prepared
            .params(handle, ctx.caller.tenant.as_deref(), Instant::now())
    }

    /// Parameters sent in a `DoPut`, as one batch; `None` when the stream has no rows.
    async fn read_params(&self, stream: FlightDataStream) -> Result<Option<RecordBatch>, Status> {
        let upload = read_upload(stream, self.config.max_param_bytes, "bound parameters").await?;
        match (upload.schema, upload.batches.len()) {
            (_, 0) => Ok(None),
            (_, 1) => Ok(upload.batches.into_iter().next()),
            (Some(schema), _) => arrow::compute::concat_batches(&schema, &upload.batches)
                .map(Some)
                .map_err(|e| invalid_argument(format!("parameter batches do not match: {e}"))),
            (None, _) => Err(invalid_argument("parameters arrived without a schema")),
        }
    }

    /// Runs `sql` once per parameter row, streaming the results one after the other; when
    /// the last run ends, `cost` holds what they cost together.
    async fn execute_rows(
        &self,
        ctx: &CallContext,
        sql: String,
        params: Option<RecordBatch>,
        cost: CostSink,
    ) -> Result<(SchemaRef, BatchStream), Status> {
        let rows = param_rows(params);
        let sinks: Vec<CostSink> = rows.iter().map(|_| CostSink::default()).collect();
        let mut requests = rows.into_iter().zip(&sinks).map(|(p, sink)| {
            let mut req = self.query_request(ctx, sql.clone(), p);
            req.cost = Some(sink.clone());
            req
        });
        let first = requests
            .next()
            .ok_or_else(|| Status::internal("no parameter rows"))?;
        let rest: Vec<QueryRequest> = requests.collect();
        let (schema, head) = self.query.execute(first).await.map_err(to_status)?;
        let query = Arc::clone(&self.query);
        let tail = futures::stream::iter(rest)
            .then(move |req| {
                let query = Arc::clone(&query);
                async move { query.execute(req).await.map(|(_, stream)| stream) }
            })
            .try_flatten();
        // After the last run: the runs' costs added up (nothing is yielded).
        let total = futures::stream::once(async move {
            if let Some(sum) = CostSink::sum(&sinks) {
                cost.set(sum);
            }
        })
        .filter_map(|()| futures::future::ready(None::<Result<RecordBatch, crate::BackendError>>));
        Ok((schema, head.chain(tail).chain(total).boxed()))
    }
}

/// Splits bound parameters into one-row batches (the backend takes one row per run).
fn param_rows(params: Option<RecordBatch>) -> Vec<Option<RecordBatch>> {
    match params {
        Some(p) if p.num_rows() > 1 => (0..p.num_rows()).map(|i| Some(p.slice(i, 1))).collect(),
        Some(p) if p.num_rows() == 1 && p.num_columns() > 0 => vec![Some(p)],
        _ => vec![None],
    }
}

/// Sums the `count` column of a statement's result (DataFusion's DML answer), else 0.
async fn affected_rows(mut stream: BatchStream) -> Result<i64, Status> {
    let mut total = 0i64;
    while let Some(batch) = stream.try_next().await.map_err(to_status)? {
        let Some(column) = batch.column_by_name("count") else {
            continue;
        };
        let column = cast(column, &DataType::Int64)
            .map_err(|e| internal(format!("the `count` column is not a number: {e}")))?;
        let sum = column
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .fold(0i64, i64::saturating_add);
        total = total.saturating_add(sum);
    }
    Ok(total)
}

fn no_transactions(transaction_id: Option<&Bytes>) -> Result<(), Status> {
    match transaction_id {
        Some(id) if !id.is_empty() => Err(invalid_argument(
            "transactions are not supported: run the statement without a transaction id",
        )),
        _ => Ok(()),
    }
}
