//! [`RemoteQueryBackend`]: SQL forwarded to compute nodes over Flight SQL.
//!
//! A statement goes to a node chosen by the [`Policy`](super::Policy) among healthy nodes
//! with a closed or half-open breaker: `GetFlightInfo(CommandStatementQuery)` then `DoGet` on
//! the endpoints' tickets (statements with parameters use the prepared-statement calls). A
//! failure before the first batch arrives is retried on a node not tried yet; once batches
//! reached the caller, an error ends the stream.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor, FlightInfo, Ticket};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use tokio::time::Instant;

use super::balancer::{Balancer, affinity_key};
use super::cluster::NodeStatus;
use super::config::{NodeSpec, RemoteConfig};
use super::metrics::{RemoteMetrics, Role};
use super::pool::{InFlight, Node, NodeClient, NodeLease, NodePool};
use super::retry::{AttemptError, Retrier};
use super::rpc::{
    bounded, deadline_after, decode_schema, do_get, do_get_with_cost, empty_schema, encode,
    guarded, peek_first, request, settle, status_err,
};
use crate::backend::{
    BackendError, BatchStream, Caller, ErrorKind, PreparedSchemas, QueryBackend, QueryRequest,
};

/// Runs SQL on a set of compute nodes. Create inside a Tokio runtime; dropping it stops the
/// health checker.
#[derive(Debug)]
pub struct RemoteQueryBackend {
    pool: NodePool,
    balancer: Balancer,
    retrier: Retrier,
}

impl RemoteQueryBackend {
    pub fn new(
        nodes: &[NodeSpec],
        config: &RemoteConfig,
        metrics: &RemoteMetrics,
    ) -> Result<Self, BackendError> {
        let pool = NodePool::new(Role::Compute, nodes, config, metrics)?;
        let balancer = Balancer::new(config.policy, &pool.addrs());
        Ok(Self {
            pool,
            balancer,
            retrier: Retrier::new(config.retry.clone()),
        })
    }

    pub fn pool(&self) -> &NodePool {
        &self.pool
    }

    /// Health, breaker and load of every compute node.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.pool.status()
    }

    /// Pick a node for an attempt: not yet tried if possible, breaker permit taken.
    fn lease(&self, key: u64, tried: &[usize]) -> Result<NodeLease, AttemptError> {
        let now = std::time::Instant::now();
        let nodes = self.pool.nodes();
        let mut candidates = self.pool.candidates(now, tried);
        loop {
            let Some(i) = self.balancer.pick(nodes, &candidates, key) else {
                return Err(AttemptError::fatal(self.pool.none_available(now)));
            };
            match nodes.get(i).map(|n| n.acquire(now)) {
                Some(Ok(lease)) => return Ok(lease),
                // Another request took the last half-open trial slot meanwhile.
                _ => candidates.retain(|&c| c != i),
            }
        }
    }

    /// Run `f` on a node, retrying retryable failures on other nodes within the deadline.
    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        key: u64,
        deadline: Option<Instant>,
        mut f: F,
    ) -> Result<(T, InFlight), BackendError>
    where
        F: FnMut(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let tried = Mutex::new(Vec::new());
        let metrics = self.pool.metrics();
        self.retrier
            .run(
                true,
                deadline,
                || metrics.retried(Role::Compute, op),
                |_attempt| {
                    let tried_so_far = tried.lock().clone();
                    let work = self.lease(key, &tried_so_far).map(|lease| {
                        tried.lock().push(lease.node().index);
                        let fut = f(Arc::clone(lease.node()));
                        (lease, fut)
                    });
                    async move {
                        let (lease, fut) = work?;
                        let result = fut.await;
                        settle(&self.pool, op, lease, result, deadline)
                    }
                },
            )
            .await
    }

    fn cap(&self) -> std::time::Duration {
        self.pool.config().request_timeout
    }
}

#[async_trait::async_trait]
impl QueryBackend for RemoteQueryBackend {
    async fn execute(&self, req: QueryRequest) -> Result<(SchemaRef, BatchStream), BackendError> {
        let deadline = deadline_after(req.timeout);
        let key = affinity_key(req.caller.tenant.as_deref(), &req.sql);
        let cap = self.cap();
        let req = &req;
        let ((schema, stream), guard) = self
            .run("execute", key, deadline, |node| async move {
                let mut client = node.client();
                if req.params.is_none() {
                    // One DoGet with the ticket the node's GetFlightInfo would hand out;
                    // the schema comes first on the stream.
                    let ticket = crate::flight::statement_ticket(&req.sql)
                        .map_err(|s| super::error::status_to_backend_error(&s))?;
                    let stream = do_get_with_cost(
                        &mut client,
                        ticket,
                        &req.caller,
                        deadline,
                        req.cost.clone(),
                    )
                    .await?;
                    let (announced, head) = peek_first(stream, deadline, cap).await?;
                    return Ok((announced.unwrap_or_else(empty_schema), head));
                }
                let (info, prepared) = flight_info(&mut client, req, deadline).await?;
                let declared = decode_schema(&info.schema)?;
                let mut tickets = info.endpoint.into_iter().filter_map(|e| e.ticket);
                let Some(first) = tickets.next() else {
                    close_prepared(&mut client, prepared, &req.caller).await;
                    let empty: BatchStream = Box::pin(futures::stream::empty());
                    return Ok((declared.unwrap_or_else(empty_schema), empty));
                };
                let opened = do_get(&mut client, first, &req.caller, deadline).await;
                let peeked = match opened {
                    Ok(stream) => peek_first(stream, deadline, cap).await,
                    Err(e) => Err(e),
                };
                close_prepared(&mut client, prepared, &req.caller).await;
                let (announced, head) = peeked?;
                let schema = declared.or(announced).unwrap_or_else(empty_schema);
                let rest: Vec<Ticket> = tickets.collect();
                if rest.is_empty() {
                    return Ok((schema, head));
                }
                // Further endpoints are read in order once the first is exhausted.
                let caller = req.caller.clone();
                let tail = futures::stream::iter(rest)
                    .then(move |ticket| {
                        let mut client = client.clone();
                        let caller = caller.clone();
                        async move { do_get(&mut client, ticket, &caller, deadline).await }
                    })
                    .map_ok(|s| s.map_err(super::error::flight_error_to_backend_error))
                    .try_flatten();
                let all: BatchStream = Box::pin(head.chain(tail));
                Ok((schema, all))
            })
            .await?;
        Ok((schema, guarded(stream, guard, deadline)))
    }

    async fn schema(&self, req: QueryRequest) -> Result<SchemaRef, BackendError> {
        let deadline = deadline_after(req.timeout);
        let key = affinity_key(req.caller.tenant.as_deref(), &req.sql);
        let cap = self.cap();
        let req = &req;
        let (schema, _guard) = self
            .run("schema", key, deadline, |node| async move {
                let mut client = node.client();
                bounded(deadline, cap, "the statement's schema", async {
                    if req.params.is_some() {
                        let prepared = create_prepared(&mut client, req, deadline).await?;
                        let schema = decode_schema(&prepared.dataset_schema);
                        close_prepared(
                            &mut client,
                            Some(prepared.prepared_statement_handle),
                            &req.caller,
                        )
                        .await;
                        return schema?.ok_or_else(no_schema);
                    }
                    let (info, _) = flight_info(&mut client, req, deadline).await?;
                    decode_schema(&info.schema)?.ok_or_else(no_schema)
                })
                .await
            })
            .await?;
        Ok(schema)
    }

    async fn prepare(&self, req: QueryRequest) -> Result<PreparedSchemas, BackendError> {
        let deadline = deadline_after(req.timeout);
        let key = affinity_key(req.caller.tenant.as_deref(), &req.sql);
        let cap = self.cap();
        let req = &req;
        let (schemas, _guard) = self
            .run("prepare", key, deadline, |node| async move {
                let mut client = node.client();
                bounded(deadline, cap, "the prepared statement", async {
                    let prepared = create_prepared(&mut client, req, deadline).await?;
                    let dataset = decode_schema(&prepared.dataset_schema);
                    let parameters = decode_schema(&prepared.parameter_schema);
                    close_prepared(
                        &mut client,
                        Some(prepared.prepared_statement_handle),
                        &req.caller,
                    )
                    .await;
                    Ok(PreparedSchemas {
                        dataset: dataset?.unwrap_or_else(empty_schema),
                        parameters: parameters?,
                    })
                })
                .await
            })
            .await?;
        Ok(schemas)
    }

    async fn list_tables(&self, caller: &Caller) -> Result<Vec<(String, SchemaRef)>, BackendError> {
        let key = affinity_key(caller.tenant.as_deref(), "information_schema.tables");
        let cap = self.cap();
        let (tables, _guard) = self
            .run("list_tables", key, None, |node| async move {
                let mut client = node.client();
                bounded(None, cap, "the table list", async {
                    let cmd = CommandGetTables {
                        catalog: None,
                        db_schema_filter_pattern: None,
                        table_name_filter_pattern: None,
                        table_types: vec![],
                        include_schema: true,
                    };
                    let desc = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
                    let info = client
                        .get_flight_info(request(desc, caller, None)?)
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    let mut tables = Vec::new();
                    for ticket in info.endpoint.into_iter().filter_map(|e| e.ticket) {
                        let batches: Vec<RecordBatch> = do_get(&mut client, ticket, caller, None)
                            .await?
                            .try_collect()
                            .await
                            .map_err(super::error::flight_error_to_backend_error)?;
                        for b in &batches {
                            tables.extend(parse_tables(b)?);
                        }
                    }
                    Ok(tables)
                })
                .await
            })
            .await?;
        Ok(tables)
    }
}

fn no_schema() -> BackendError {
    BackendError::new(
        ErrorKind::Internal,
        "the compute node described the statement without a schema",
    )
}

/// `GetFlightInfo` for a statement; with parameters, through a prepared statement whose
/// handle is returned for closing.
async fn flight_info(
    client: &mut NodeClient,
    req: &QueryRequest,
    deadline: Option<Instant>,
) -> Result<(FlightInfo, Option<Bytes>), BackendError> {
    let Some(params) = &req.params else {
        let cmd = CommandStatementQuery {
            query: req.sql.clone(),
            transaction_id: None,
        };
        let desc = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        let info = client
            .get_flight_info(request(desc, &req.caller, deadline)?)
            .await
            .map_err(status_err)?
            .into_inner();
        return Ok((info, None));
    };
    let prepared = create_prepared(client, req, deadline).await?;
    let mut handle = prepared.prepared_statement_handle;
    let bound = async {
        // Bind the parameters: DoPut(CommandPreparedStatementQuery) with one row.
        let cmd = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.clone(),
        };
        let data = encode(
            FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()),
            vec![params.clone()],
        )
        .await?;
        let mut results = client
            .do_put(request(futures::stream::iter(data), &req.caller, deadline)?)
            .await
            .map_err(status_err)?
            .into_inner();
        while let Some(r) = results.message().await.map_err(status_err)? {
            // Servers may hand back a new handle that carries the bound values.
            if let Ok(DoPutPreparedStatementResult {
                prepared_statement_handle: Some(h),
            }) = DoPutPreparedStatementResult::decode(r.app_metadata.as_ref())
            {
                handle = h;
            }
        }
        let cmd = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.clone(),
        };
        let desc = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        client
            .get_flight_info(request(desc, &req.caller, deadline)?)
            .await
            .map_err(status_err)
            .map(|r| r.into_inner())
    }
    .await;
    match bound {
        Ok(info) => Ok((info, Some(handle))),
        Err(e) => {
            close_prepared(client, Some(handle), &req.caller).await;
            Err(e)
        }
    }
}

async fn create_prepared(
    client: &mut NodeClient,
    req: &QueryRequest,
    deadline: Option<Instant>,
) -> Result<ActionCreatePreparedStatementResult, BackendError> {
    let body = ActionCreatePreparedStatementRequest {
        query: req.sql.clone(),
        transaction_id: None,
    };
    let action = Action {
        r#type: "CreatePreparedStatement".to_string(),
        body: body.as_any().encode_to_vec().into(),
    };
    let mut results = client
        .do_action(request(action, &req.caller, deadline)?)
        .await
        .map_err(status_err)?
        .into_inner();
    let mut answer = None;
    while let Some(r) = results.message().await.map_err(status_err)? {
        answer.get_or_insert(r);
    }
    let bad = |why: String| {
        BackendError::new(
            ErrorKind::Internal,
            format!("bad CreatePreparedStatement answer: {why}"),
        )
    };
    let answer = answer.ok_or_else(|| bad("no result".into()))?;
    Any::decode(answer.body.as_ref())
        .map_err(|e| bad(e.to_string()))?
        .unpack::<ActionCreatePreparedStatementResult>()
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("not an ActionCreatePreparedStatementResult".into()))
}

/// Best effort: a node that misses the close frees the statement when it expires.
async fn close_prepared(client: &mut NodeClient, handle: Option<Bytes>, caller: &Caller) {
    let Some(handle) = handle else { return };
    let body = ActionClosePreparedStatementRequest {
        prepared_statement_handle: handle,
    };
    let action = Action {
        r#type: "ClosePreparedStatement".to_string(),
        body: body.as_any().encode_to_vec().into(),
    };
    let Ok(mut req) = request(action, caller, None) else {
        return;
    };
    req.set_timeout(std::time::Duration::from_secs(1));
    let close = async {
        let mut results = client.do_action(req).await?.into_inner();
        while results.message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(std::time::Duration::from_secs(1), close).await {
        tracing::debug!(error = %e, "closing a prepared statement failed");
    }
}

/// Rows of a `CommandGetTables` result with `include_schema`: (table_name, table_schema).
fn parse_tables(batch: &RecordBatch) -> Result<Vec<(String, SchemaRef)>, BackendError> {
    let bad = |why: &str| {
        BackendError::new(
            ErrorKind::Internal,
            format!("bad GetTables answer from a compute node: {why}"),
        )
    };
    let names = batch
        .column_by_name("table_name")
        .ok_or_else(|| bad("no table_name column"))?;
    let schemas = batch
        .column_by_name("table_schema")
        .ok_or_else(|| bad("no table_schema column (include_schema ignored)"))?;
    let name_at = |i: usize| -> Option<String> {
        match names.data_type() {
            DataType::Utf8 => Some(names.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Some(names.as_string::<i64>().value(i).to_string()),
            DataType::Utf8View => Some(names.as_string_view().value(i).to_string()),
            _ => None,
        }
    };
    let schema_at = |i: usize| -> Option<&[u8]> {
        match schemas.data_type() {
            DataType::Binary => Some(schemas.as_binary::<i32>().value(i)),
            DataType::LargeBinary => Some(schemas.as_binary::<i64>().value(i)),
            DataType::BinaryView => Some(schemas.as_binary_view().value(i)),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        if names.is_null(i) {
            continue;
        }
        let name = name_at(i).ok_or_else(|| bad("table_name is not a string column"))?;
        let schema = if schemas.is_null(i) {
            empty_schema()
        } else {
            let bytes = schema_at(i).ok_or_else(|| bad("table_schema is not a binary column"))?;
            decode_schema(bytes)?.unwrap_or_else(empty_schema)
        };
        out.push((name, schema));
    }
    Ok(out)
}
