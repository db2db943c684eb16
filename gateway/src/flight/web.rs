//! The same service for HTTP clients (the web console, `curl`): SQL answered as one collected
//! result, and log tails, with the Flight port's auth, scopes, request quotas, deadlines,
//! result cache and per-tenant tail limit. The engine's HTTP port turns these into JSON.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::{StrataFlightService, statement_scope};
use crate::auth::Scope;
use crate::backend::{BatchStream, Caller, CostSink, LogRequest, QueryRequest};
use crate::status::to_status;

/// A statement's answer, cut at a row or byte bound.
#[derive(Debug)]
pub struct SqlAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The result had more rows (or bytes) than asked for; the query was stopped there.
    pub truncated: bool,
    /// What the query cost (`None` when it was stopped early or the backend had no figures).
    pub cost: Option<serde_json::Value>,
}

impl SqlAnswer {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// HTTP's way into a [`StrataFlightService`] (see [`crate::GatewayServer::web`]).
#[derive(Debug, Clone)]
pub struct WebApi {
    service: Arc<StrataFlightService>,
}

impl WebApi {
    pub(crate) fn new(service: Arc<StrataFlightService>) -> Self {
        Self { service }
    }

    /// Authenticates a call (the `authorization` header), checks `scope` and counts it
    /// against the tenant's request quota, as every Flight call is.
    pub fn admit(
        &self,
        metadata: &MetadataMap,
        scope: Scope,
        what: &str,
    ) -> Result<Caller, Status> {
        Ok(self.service.admit(metadata, scope, what)?.caller)
    }

    /// Runs `sql` with the scope it needs (reads for queries, writes for statements that
    /// change data or schema) and collects its result up to `max_rows` rows and about
    /// `max_bytes` bytes of Arrow memory; past either the query is stopped and the answer
    /// says `truncated`.
    pub async fn sql(
        &self,
        metadata: &MetadataMap,
        sql: &str,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<SqlAnswer, Status> {
        let (scope, what) = statement_scope(sql);
        let ctx = self.service.admit(metadata, scope, what)?;
        let cost = CostSink::default();
        let request = QueryRequest {
            caller: ctx.caller,
            sql: sql.to_string(),
            params: None,
            timeout: ctx.timeout,
            cost: Some(cost.clone()),
        };
        let (schema, mut stream) = self
            .service
            .query
            .execute(request)
            .await
            .map_err(to_status)?;
        let mut batches = Vec::new();
        let (mut rows, mut bytes) = (0usize, 0usize);
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(to_status)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let room = max_rows.saturating_sub(rows);
            if room == 0 || bytes >= max_bytes {
                truncated = true;
                break;
            }
            let batch = if batch.num_rows() > room {
                truncated = true;
                batch.slice(0, room)
            } else {
                batch
            };
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
            batches.push(batch);
            if truncated {
                break;
            }
        }
        // Dropping the stream cancels what is left of the query.
        drop(stream);
        Ok(SqlAnswer {
            schema,
            batches,
            truncated,
            cost: if truncated { None } else { cost.get() },
        })
    }

    /// Follows `shard` of `table` from `from_offset` for a caller [`Self::admit`] let in
    /// with the read scope, at most `batch_rows` records per batch; the stream holds one of
    /// the tenant's log-tail slots (`gateway.flight.max_log_tails_per_tenant`) until it is
    /// dropped. Each batch has a leading `_offset` column.
    pub async fn tail(
        &self,
        caller: &Caller,
        table: &str,
        shard: u32,
        from_offset: u64,
        batch_rows: usize,
    ) -> Result<BatchStream, Status> {
        let permit = self.service.tail_permit(caller.tenant.as_ref())?;
        let stream = self
            .service
            .ingest
            .read_log(LogRequest {
                caller: caller.clone(),
                table: table.to_string(),
                shard,
                from_offset,
                max_rows: batch_rows.clamp(1, self.service.config.log_default_max_rows),
                follow: true,
            })
            .await
            .map_err(to_status)?;
        Ok(stream
            .map(move |item| {
                let _slot = &permit;
                item
            })
            .boxed())
    }
}

impl StrataFlightService {
    /// This service for HTTP clients.
    pub fn web(self: &Arc<Self>) -> WebApi {
        WebApi::new(Arc::clone(self))
    }
}
