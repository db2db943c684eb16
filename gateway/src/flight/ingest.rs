//! Ingest over `DoPut`, and the dispatch of every `DoPut` by its descriptor.
//!
//! A client appends rows to a table with a plain Flight `DoPut` whose descriptor is
//! * PATH `[table]` (`pyarrow.flight.FlightDescriptor.for_path("logs")`), or
//! * CMD holding JSON `{"table": …, "producer_id": …, "sequence": …, "durability": …}`,
//!
//! or with Flight SQL's `CommandStatementIngest` (ADBC `adbc_ingest`, append only). The
//! idempotent producer (id + sequence) and the durability may also come as the headers
//! `x-strata-producer-id`, `x-strata-sequence` and `x-strata-durability`.
//!
//! The whole request is read (at most `max_ingest_bytes`, else INVALID_ARGUMENT and nothing
//! stored), then written with one [`IngestBackend::write`](crate::backend::IngestBackend::write)
//! call, so it is applied all or nothing. The answer is one `PutResult` whose
//! `app_metadata` is JSON `{"rows": …, "shards": [{"shard", "first_offset", "last_offset"}],
//! "duplicate": …}`.

use std::collections::HashMap;
use std::time::Instant;

use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::sql::{Any, Command, CommandStatementIngest, DoPutUpdateResult};
use arrow_flight::{FlightDescriptor, PutResult};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Response, Status};

use super::limits::{FlightDataStream, read_upload};
use super::{DoPutStream, StrataFlightService};
use crate::auth::Scope;
use crate::backend::{Durability, WriteAck, WriteRequest};
use crate::status::{internal, invalid_argument, to_status};

/// Header naming an idempotent producer (with [`SEQUENCE_HEADER`]).
pub const PRODUCER_ID_HEADER: &str = "x-strata-producer-id";
/// Header with the producer's sequence number for this request.
pub const SEQUENCE_HEADER: &str = "x-strata-sequence";
/// Header choosing `durable` (default) or `buffered` acknowledgement.
pub const DURABILITY_HEADER: &str = "x-strata-durability";

/// The JSON form of an ingest descriptor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IngestCommand {
    table: String,
    #[serde(default)]
    producer_id: Option<String>,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default)]
    durability: Option<String>,
}

/// The JSON form of a [`WriteAck`].
#[derive(Debug, Serialize)]
struct AckJson {
    rows: u64,
    shards: Vec<ShardJson>,
    duplicate: bool,
}

#[derive(Debug, Serialize)]
struct ShardJson {
    shard: u32,
    first_offset: u64,
    last_offset: u64,
}

impl From<&WriteAck> for AckJson {
    fn from(ack: &WriteAck) -> Self {
        Self {
            rows: ack.rows,
            shards: ack
                .shards
                .iter()
                .map(|s| ShardJson {
                    shard: s.shard,
                    first_offset: s.first_offset,
                    last_offset: s.last_offset,
                })
                .collect(),
            duplicate: ack.duplicate,
        }
    }
}

/// What a `DoPut` descriptor asks for.
pub(super) enum PutTarget {
    Ingest(IngestCommand),
    Sql(Command),
}

pub(super) fn missing_descriptor() -> Status {
    invalid_argument(
        "DoPut needs a flight descriptor on its first message: PATH [table] to ingest, or a \
         Flight SQL command",
    )
}

pub(super) fn classify(descriptor: &FlightDescriptor) -> Result<PutTarget, Status> {
    match DescriptorType::try_from(descriptor.r#type) {
        Ok(DescriptorType::Path) => match descriptor.path.as_slice() {
            [table] if !table.is_empty() => Ok(PutTarget::Ingest(IngestCommand {
                table: table.clone(),
                ..IngestCommand::default()
            })),
            _ => Err(invalid_argument(
                "an ingest PATH descriptor must be exactly [table]",
            )),
        },
        Ok(DescriptorType::Cmd) if super::log::is_json(&descriptor.cmd) => {
            let cmd: IngestCommand = serde_json::from_slice(&descriptor.cmd).map_err(|e| {
                invalid_argument(format!(
                    "invalid ingest command: {e}; expected {{\"table\": …, \"producer_id\": …, \
                     \"sequence\": …, \"durability\": \"durable\"|\"buffered\"}}"
                ))
            })?;
            Ok(PutTarget::Ingest(cmd))
        }
        Ok(DescriptorType::Cmd) => {
            let any = Any::decode(descriptor.cmd.as_ref()).map_err(|_| {
                invalid_argument("the DoPut command is neither JSON nor a Flight SQL command")
            })?;
            let command = Command::try_from(any)
                .map_err(|e| invalid_argument(format!("invalid Flight SQL command: {e}")))?;
            Ok(PutTarget::Sql(command))
        }
        _ => Err(invalid_argument("unknown flight descriptor type")),
    }
}

impl StrataFlightService {
    /// Handles any `DoPut`, given the descriptor of its first message and the whole stream.
    pub(crate) async fn put(
        &self,
        descriptor: FlightDescriptor,
        metadata: &MetadataMap,
        stream: FlightDataStream,
    ) -> Result<Response<DoPutStream>, Status> {
        let reply = match classify(&descriptor)? {
            PutTarget::Ingest(cmd) => {
                let durability = cmd.durability.clone();
                let ack = self
                    .ingest_upload(
                        cmd.table,
                        (cmd.producer_id, cmd.sequence),
                        durability,
                        metadata,
                        stream,
                    )
                    .await?;
                serde_json::to_vec(&AckJson::from(&ack))
                    .map_err(|e| internal(format!("cannot encode the write ack: {e}")))?
            }
            PutTarget::Sql(Command::CommandStatementUpdate(cmd)) => {
                let record_count = self.statement_update(cmd, metadata).await?;
                DoPutUpdateResult { record_count }.encode_to_vec()
            }
            PutTarget::Sql(Command::CommandStatementIngest(cmd)) => {
                let record_count = self.statement_ingest(cmd, metadata, stream).await?;
                DoPutUpdateResult { record_count }.encode_to_vec()
            }
            PutTarget::Sql(Command::CommandPreparedStatementQuery(cmd)) => self
                .bind_parameters(cmd, metadata, stream)
                .await?
                .encode_to_vec(),
            PutTarget::Sql(Command::CommandPreparedStatementUpdate(cmd)) => {
                let record_count = self.prepared_update(cmd, metadata, stream).await?;
                DoPutUpdateResult { record_count }.encode_to_vec()
            }
            PutTarget::Sql(other) => {
                return Err(invalid_argument(format!(
                    "DoPut does not accept `{}`",
                    other.type_url()
                )));
            }
        };
        let result = PutResult {
            app_metadata: reply.into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    /// Flight SQL bulk ingest (append). Returns the number of rows written.
    pub(super) async fn statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        metadata: &MetadataMap,
        stream: FlightDataStream,
    ) -> Result<i64, Status> {
        if cmd.transaction_id.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(invalid_argument("transactions are not supported"));
        }
        if cmd.temporary {
            return Err(invalid_argument("temporary tables are not supported"));
        }
        let durability = option(&cmd.options, "durability");
        let ack = self
            .ingest_upload(cmd.table, (None, None), durability, metadata, stream)
            .await?;
        Ok(i64::try_from(ack.rows).unwrap_or(i64::MAX))
    }

    /// Authenticates, reads the upload under the byte limit, checks the byte quota and
    /// writes everything with one backend call.
    async fn ingest_upload(
        &self,
        table: String,
        producer: (Option<String>, Option<u64>),
        durability: Option<String>,
        metadata: &MetadataMap,
        stream: FlightDataStream,
    ) -> Result<WriteAck, Status> {
        if table.is_empty() {
            return Err(invalid_argument("the ingest target table is empty"));
        }
        let ctx = self.admit(metadata, Scope::Write, "ingest")?;
        let producer = producer_of(producer, metadata)?;
        let durability = durability
            .or_else(|| header(metadata, DURABILITY_HEADER).map(str::to_string))
            .map(|d| d.parse::<Durability>())
            .transpose()
            .map_err(to_status)?
            .unwrap_or_default();
        let upload =
            read_upload(stream, self.config.max_ingest_bytes, "the ingest request").await?;
        if upload.rows == 0 {
            return Ok(WriteAck::default());
        }
        self.quotas
            .check_ingest_bytes(
                ctx.caller.tenant.as_deref(),
                upload.bytes as u64,
                Instant::now(),
            )
            .map_err(to_status)?;
        self.ingest
            .write(WriteRequest {
                caller: ctx.caller,
                table,
                batches: upload.batches,
                producer,
                durability,
                timeout: ctx.timeout,
            })
            .await
            .map_err(to_status)
    }
}

fn header<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn option(options: &HashMap<String, String>, key: &str) -> Option<String> {
    options.get(key).cloned()
}

/// The idempotent producer from the command, else from headers; both parts or neither.
fn producer_of(
    (id, sequence): (Option<String>, Option<u64>),
    metadata: &MetadataMap,
) -> Result<Option<(String, u64)>, Status> {
    let id = id.or_else(|| header(metadata, PRODUCER_ID_HEADER).map(str::to_string));
    let sequence = match sequence {
        Some(s) => Some(s),
        None => header(metadata, SEQUENCE_HEADER)
            .map(|s| {
                s.parse::<u64>().map_err(|_| {
                    invalid_argument(format!("{SEQUENCE_HEADER} must be an unsigned integer"))
                })
            })
            .transpose()?,
    };
    match (id, sequence) {
        (Some(id), Some(seq)) if !id.is_empty() => Ok(Some((id, seq))),
        (None, None) => Ok(None),
        _ => Err(invalid_argument(format!(
            "an idempotent producer needs both a producer id and a sequence \
             ({PRODUCER_ID_HEADER} and {SEQUENCE_HEADER})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::ProstMessageExt;

    use super::*;

    #[test]
    fn descriptors_are_classified() {
        let path = FlightDescriptor::new_path(vec!["logs".into()]);
        assert!(matches!(classify(&path), Ok(PutTarget::Ingest(c)) if c.table == "logs"));
        let deep = FlightDescriptor::new_path(vec!["a".into(), "b".into()]);
        assert!(classify(&deep).is_err());
        let json = FlightDescriptor::new_cmd(
            br#"{"table":"t","producer_id":"p","sequence":3,"durability":"buffered"}"#.to_vec(),
        );
        match classify(&json) {
            Ok(PutTarget::Ingest(c)) => {
                assert_eq!(c.table, "t");
                assert_eq!(c.producer_id.as_deref(), Some("p"));
                assert_eq!(c.sequence, Some(3));
                assert_eq!(c.durability.as_deref(), Some("buffered"));
            }
            _ => panic!("json ingest command"),
        }
        let typo = FlightDescriptor::new_cmd(br#"{"tabel":"t"}"#.to_vec());
        assert!(classify(&typo).is_err());
        let sql = FlightDescriptor::new_cmd(
            arrow_flight::sql::CommandStatementUpdate {
                query: "DELETE FROM t".into(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec(),
        );
        assert!(matches!(
            classify(&sql),
            Ok(PutTarget::Sql(Command::CommandStatementUpdate(_)))
        ));
    }

    #[test]
    fn producer_needs_both_parts() {
        let mut md = MetadataMap::new();
        assert_eq!(producer_of((None, None), &md).expect("none"), None);
        md.insert(PRODUCER_ID_HEADER, "p1".parse().expect("ascii"));
        assert!(producer_of((None, None), &md).is_err());
        md.insert(SEQUENCE_HEADER, "42".parse().expect("ascii"));
        assert_eq!(
            producer_of((None, None), &md).expect("both"),
            Some(("p1".to_string(), 42))
        );
        // The command wins over headers.
        assert_eq!(
            producer_of((Some("p2".into()), Some(7)), &md).expect("cmd"),
            Some(("p2".to_string(), 7))
        );
        md.insert(SEQUENCE_HEADER, "x".parse().expect("ascii"));
        assert!(producer_of((None, None), &md).is_err());
    }
}
