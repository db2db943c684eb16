//! Log reads over plain Flight `DoGet`, and the `strata.health` action.
//!
//! A log ticket is JSON:
//! `{"log": {"table": "logs", "shard": 0, "from_offset": 0, "max_rows": 1000, "follow": false}}`
//! (`shard`, `from_offset` default to 0, `max_rows` to the configured default, `follow` to
//! false). Records stream with a leading `_offset` column; with `follow` the stream stays
//! open and delivers new records as they are acknowledged, until the client cancels.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::{Action, ActionType};
use futures::StreamExt;
use serde::Deserialize;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::encode::{DataStream, encode_stream};
use super::{DoActionStream, StrataFlightService};
use crate::auth::Scope;
use crate::backend::{Caller, LogRequest};
use crate::status::{invalid_argument, to_status};

/// The action a load balancer or operator calls to check the gateway is serving.
pub const HEALTH_ACTION: &str = "strata.health";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogTicket {
    log: LogSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSpec {
    table: String,
    #[serde(default)]
    shard: u32,
    #[serde(default)]
    from_offset: u64,
    #[serde(default)]
    max_rows: Option<usize>,
    #[serde(default)]
    follow: bool,
}

/// True when `bytes` look like a JSON object (Strata's own tickets and descriptors); a
/// protobuf `Any` never starts with `{`.
pub(crate) fn is_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

pub(super) fn health_action_type() -> ActionType {
    ActionType {
        r#type: HEALTH_ACTION.to_string(),
        description: "Checks that the gateway is serving. Response: {\"status\":\"ok\"}".into(),
    }
}

/// A JSON log ticket (untrusted bytes from a client).
pub(crate) fn parse_log_ticket(ticket: &[u8]) -> Result<LogSpec, Status> {
    serde_json::from_slice::<LogTicket>(ticket)
        .map(|t| t.log)
        .map_err(|e| {
            invalid_argument(format!(
                "invalid log ticket: {e}; expected {{\"log\": {{\"table\": …, \"shard\": …, \
                 \"from_offset\": …, \"max_rows\": …, \"follow\": false}}}}"
            ))
        })
}

impl StrataFlightService {
    /// Streams a log read described by a JSON ticket.
    pub(crate) async fn log_stream(
        &self,
        ticket: &[u8],
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        let spec = parse_log_ticket(ticket)?;
        let ctx = self.admit(metadata, Scope::Read, "reading a log")?;
        let table = spec.table.clone();
        let request = LogRequest {
            caller: ctx.caller.clone(),
            table: spec.table,
            shard: spec.shard,
            from_offset: spec.from_offset,
            max_rows: spec.max_rows.unwrap_or(self.config.log_default_max_rows),
            follow: spec.follow,
        };
        if spec.follow {
            let permit = self.tail_permit(ctx.caller.tenant.as_ref())?;
            let stream = self.ingest.read_log(request).await.map_err(to_status)?;
            // The tail holds its slot until the client goes away.
            let stream = stream
                .map(move |item| {
                    let _slot = &permit;
                    item
                })
                .boxed();
            // A tail may wait long for its first record: answer now, schema with it.
            return Ok(encode_stream(None, stream));
        }
        let stream = self.ingest.read_log(request).await.map_err(to_status)?;
        // A bounded read: wait for the first batch so an empty read still has a schema.
        let mut stream = stream.peekable();
        let schema = match Pin::new(&mut stream).peek().await {
            Some(Ok(batch)) => Some(batch.schema()),
            Some(Err(_)) => None,
            None => self.log_schema(&ctx.caller, &table).await,
        };
        Ok(encode_stream(schema, stream.boxed()))
    }

    /// A slot for one more open log tail of `tenant`, or RESOURCE_EXHAUSTED.
    pub(crate) fn tail_permit(
        &self,
        tenant: Option<&String>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        let max = self.config.max_log_tails_per_tenant.max(1);
        let sem = {
            let mut tails = self.tails.lock();
            if tails.len() > 10_000 {
                tails.retain(|_, s| s.available_permits() < max);
            }
            Arc::clone(
                tails
                    .entry(tenant.cloned())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(max))),
            )
        };
        sem.try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this tenant already has {max} log tails open \
                 (gateway.flight.max_log_tails_per_tenant); close one first"
            ))
        })
    }

    /// `_offset` followed by the table's columns, when the table is known.
    async fn log_schema(&self, caller: &Caller, table: &str) -> Option<SchemaRef> {
        let tables = self.query.list_tables(caller).await.ok()?;
        let (_, schema) = tables.into_iter().find(|(name, _)| name == table)?;
        let mut fields = vec![Arc::new(Field::new("_offset", DataType::UInt64, false))];
        fields.extend(schema.fields().iter().cloned());
        Some(Arc::new(Schema::new(fields)))
    }

    /// Actions that are not Flight SQL's.
    pub(super) fn custom_action(&self, request: Request<Action>) -> Result<DoActionStream, Status> {
        match request.get_ref().r#type.as_str() {
            HEALTH_ACTION => {
                let body = arrow_flight::Result::new(&b"{\"status\":\"ok\"}"[..]);
                Ok(Box::pin(futures::stream::iter([Ok(body)])))
            }
            other => Err(invalid_argument(format!(
                "unknown action `{other}`: ListActions shows the supported ones"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_detection() {
        assert!(is_json(b"  {\"log\":{}}"));
        assert!(!is_json(b"\x0a\x2etype.googleapis.com"));
        assert!(!is_json(b""));
    }

    #[test]
    fn log_tickets_parse_with_defaults() {
        let t: LogTicket =
            serde_json::from_slice(br#"{"log":{"table":"logs","shard":2}}"#).expect("parses");
        assert_eq!(t.log.table, "logs");
        assert_eq!(t.log.shard, 2);
        assert_eq!(t.log.from_offset, 0);
        assert!(!t.log.follow);
        assert!(serde_json::from_slice::<LogTicket>(br#"{"log":{"shard":2}}"#).is_err());
    }
}
