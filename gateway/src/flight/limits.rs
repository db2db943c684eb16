//! Reading a client's Arrow stream without holding more than a byte limit.
//!
//! Bytes are counted twice: on the wire (IPC header + body of each `FlightData`, before
//! decoding, so an oversized upload is refused before it is decoded) and after decoding
//! (buffer lengths, which catches IPC-compressed bodies that inflate). Whichever passes the
//! limit first stops the read with INVALID_ARGUMENT; nothing read so far is kept.

use arrow::array::{ArrayData, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use tonic::Status;

use crate::status::invalid_argument;

/// A client's `DoPut` stream (first message included).
pub(crate) type FlightDataStream = BoxStream<'static, Result<FlightData, Status>>;

/// Record batches read from a client.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    pub(crate) schema: Option<SchemaRef>,
    /// Non-empty batches only.
    pub(crate) batches: Vec<RecordBatch>,
    /// Decoded size of `batches`.
    pub(crate) bytes: usize,
    pub(crate) rows: usize,
}

/// Reads every record batch of `stream`, refusing as soon as more than `limit` bytes
/// arrive. `what` names the upload in the error ("ingest request", "parameters").
pub(crate) async fn read_upload(
    stream: FlightDataStream,
    limit: usize,
    what: &'static str,
) -> Result<Upload, Status> {
    let mut wire = 0usize;
    let limited = stream
        // Descriptor-only messages (Flight SQL clients send one) carry no IPC message.
        .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
        .map(move |item| {
            let data = item?;
            wire = wire
                .saturating_add(data.data_header.len())
                .saturating_add(data.data_body.len());
            if wire > limit {
                return Err(too_large(what, limit));
            }
            Ok(data)
        })
        .map_err(FlightError::from);
    let decode = async move {
        let mut decoder = FlightRecordBatchStream::new_from_flight_data(limited);
        let mut upload = Upload::default();
        while let Some(batch) = decoder.try_next().await.map_err(decode_error)? {
            upload.bytes = upload.bytes.saturating_add(batch_bytes(&batch));
            if upload.bytes > limit {
                return Err(too_large(what, limit));
            }
            if batch.num_rows() > 0 {
                upload.rows += batch.num_rows();
                upload.batches.push(batch);
            }
        }
        upload.schema = decoder.schema().cloned();
        Ok(upload)
    };
    // The Arrow IPC decoder panics on some malformed messages (types it does not know):
    // that is bad input, not a reason to lose the connection.
    match std::panic::AssertUnwindSafe(decode).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err(invalid_argument(format!(
            "{what} is not a valid Arrow IPC stream (the decoder refused a message); nothing \
             was stored"
        ))),
    }
}

fn too_large(what: &str, limit: usize) -> Status {
    invalid_argument(format!(
        "{what} is larger than the {limit}-byte limit; nothing was stored: split it into \
         smaller requests"
    ))
}

fn decode_error(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => invalid_argument(format!("cannot decode the Arrow IPC stream: {other}")),
    }
}

/// Bytes held by a batch's buffers (sliced arrays count their whole buffers).
pub(crate) fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| data_bytes(&c.to_data()))
        .sum()
}

fn data_bytes(data: &ArrayData) -> usize {
    let own: usize = data.buffers().iter().map(|b| b.len()).sum();
    let nulls = data.nulls().map_or(0, |n| n.buffer().len());
    let children: usize = data.child_data().iter().map(data_bytes).sum();
    own + nulls + children
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow_flight::encode::FlightDataEncoderBuilder;

    use super::*;

    fn batch(rows: usize) -> RecordBatch {
        let ids = Int64Array::from_iter_values(0..rows as i64);
        let msgs = StringArray::from_iter_values((0..rows).map(|i| format!("message {i}")));
        RecordBatch::try_from_iter([("id", Arc::new(ids) as _), ("msg", Arc::new(msgs) as _)])
            .expect("batch")
    }

    async fn encoded(batches: Vec<RecordBatch>) -> FlightDataStream {
        let data: Vec<FlightData> = FlightDataEncoderBuilder::new()
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .try_collect()
            .await
            .expect("encode");
        futures::stream::iter(data.into_iter().map(Ok)).boxed()
    }

    #[tokio::test]
    async fn reads_batches_under_the_limit() {
        let upload = read_upload(encoded(vec![batch(10), batch(5)]).await, 1 << 20, "x")
            .await
            .expect("fits");
        assert_eq!(upload.rows, 15);
        assert_eq!(upload.batches.len(), 2);
        assert!(upload.bytes >= 15 * 8);
        assert_eq!(upload.schema.map(|s| s.fields().len()), Some(2));
    }

    #[tokio::test]
    async fn refuses_over_the_limit() {
        let err = read_upload(encoded(vec![batch(1000)]).await, 1000, "ingest request")
            .await
            .expect_err("too big");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("1000-byte limit"),
            "{}",
            err.message()
        );
    }

    #[tokio::test]
    async fn descriptor_only_messages_are_skipped() {
        let descriptor = FlightData::new()
            .with_descriptor(arrow_flight::FlightDescriptor::new_path(vec!["t".into()]));
        let mut data: Vec<Result<FlightData, Status>> = vec![Ok(descriptor)];
        data.extend(encoded(vec![batch(3)]).await.collect::<Vec<_>>().await);
        let upload = read_upload(futures::stream::iter(data).boxed(), 1 << 20, "x")
            .await
            .expect("reads");
        assert_eq!(upload.rows, 3);
    }

    #[tokio::test]
    async fn garbage_is_invalid_argument() {
        let junk = FlightData::new().with_data_header(vec![1u8, 2, 3]);
        let err = read_upload(futures::stream::iter([Ok(junk)]).boxed(), 1 << 20, "x")
            .await
            .expect_err("not IPC");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
