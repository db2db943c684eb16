//! Turning results into Flight responses: streamed `FlightData`, `FlightInfo`s, IPC schemas.

use std::pin::Pin;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use crate::backend::{BatchStream, CostSink};
use crate::status::{internal, to_status};

/// The response stream of `DoGet`.
pub(crate) type DataStream =
    Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Streams `batches` as Flight data, batch by batch (nothing is buffered beyond the encoder's
/// current message). The schema goes first, so an empty result still carries it.
pub(crate) fn encode_stream(schema: Option<SchemaRef>, batches: BatchStream) -> DataStream {
    let input = batches.map_err(|e| FlightError::from(to_status(e)));
    let mut builder = FlightDataEncoderBuilder::new();
    if let Some(schema) = schema {
        builder = builder.with_schema(schema);
    }
    Box::pin(builder.build(input).map_err(encode_error))
}

/// Key in the `app_metadata` of the last message of a query's `DoGet`: JSON
/// `{"strata_cost": {...}}`, what the query cost ([`CostSink`]).
pub const COST_METADATA_KEY: &str = "strata_cost";

/// `data` with what the query cost, when the backend reported it, as the `app_metadata` of
/// its last message (the last batch, or the schema of an empty result). The stream holds
/// one message back to know which is last. Clients that read only batches ignore it;
/// pyarrow's `read_chunk()` and arrow-rs's `FlightDataDecoder` show it.
pub(crate) fn with_final_cost(data: DataStream, cost: CostSink) -> DataStream {
    struct State {
        data: DataStream,
        held: Option<FlightData>,
        queue: std::collections::VecDeque<Result<FlightData, Status>>,
        ended: bool,
        cost: CostSink,
    }
    let state = State {
        data,
        held: None,
        queue: std::collections::VecDeque::new(),
        ended: false,
        cost,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match st.data.next().await {
                Some(Ok(m)) => {
                    if let Some(prev) = st.held.replace(m) {
                        st.queue.push_back(Ok(prev));
                    }
                }
                Some(Err(e)) => {
                    st.queue.extend(st.held.take().map(Ok));
                    st.queue.push_back(Err(e));
                    st.ended = true;
                }
                None => {
                    if let Some(mut last) = st.held.take() {
                        if let Some(c) = st.cost.get() {
                            let body = serde_json::json!({ COST_METADATA_KEY: c });
                            last.app_metadata = Bytes::from(body.to_string());
                        }
                        st.queue.push_back(Ok(last));
                    }
                    st.ended = true;
                }
            }
        }
    }))
}

/// Streams one in-memory batch (metadata answers).
pub(crate) fn encode_batch(batch: RecordBatch) -> DataStream {
    let schema = batch.schema();
    encode_stream(Some(schema), futures::stream::iter([Ok(batch)]).boxed())
}

fn encode_error(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => internal(format!("cannot encode the result as Arrow IPC: {other}")),
    }
}

/// A `FlightInfo` with one endpoint on this server (empty location: "the same server").
pub(crate) fn flight_info(
    schema: &Schema,
    ticket: impl Into<Bytes>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| internal(format!("cannot encode the result schema: {e}")))
        .map(|info| {
            info.with_endpoint(endpoint)
                .with_descriptor(descriptor)
                .with_total_records(-1)
                .with_total_bytes(-1)
        })
}

/// A schema as an IPC message (prepared statement results).
pub(crate) fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let options = IpcWriteOptions::default();
    IpcMessage::try_from(SchemaAsIpc::new(schema, &options))
        .map(|IpcMessage(bytes)| bytes)
        .map_err(|e| internal(format!("cannot encode a schema: {e}")))
}
