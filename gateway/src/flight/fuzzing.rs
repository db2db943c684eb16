//! Entry points for the fuzz targets (`fuzz/`): each feeds untrusted bytes to the same code
//! a client's request reaches, and must return (an error is fine) without panicking or
//! allocating without bound. Not part of the API.

use arrow_flight::sql::{Any, Command};
use arrow_flight::{FlightData, FlightDescriptor};
use bytes::Bytes;
use prost::Message;

/// A `DoPut` descriptor: a PATH, a JSON ingest command or a Flight SQL command.
pub fn put_descriptor(data: &[u8]) -> bool {
    match FlightDescriptor::decode(data) {
        Ok(d) => super::ingest::classify(&d).is_ok(),
        Err(_) => false,
    }
}

/// A `DoGet` ticket: a Flight SQL `Any` (statement tickets carry a JSON handle) or a JSON
/// log ticket, decoded as the server does.
pub fn ticket(data: &[u8]) -> bool {
    if super::log::is_json(data) {
        return super::log::parse_log_ticket(data).is_ok();
    }
    let Ok(any) = Any::decode(data) else {
        return false;
    };
    match Command::try_from(any) {
        Ok(Command::TicketStatementQuery(t)) => {
            super::sql::parse_statement_handle(&t.statement_handle).is_ok()
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// An Arrow IPC upload as `DoPut` reads it, under a 1 MiB limit. `data` is split into
/// `FlightData` messages: each is `[u16 header length][header][u16 body length][body]`,
/// little-endian. Returns the rows read.
pub fn upload(data: &[u8]) -> usize {
    let mut messages = Vec::new();
    let mut rest = data;
    let take = |rest: &mut &[u8]| -> Option<Bytes> {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let n = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (part, tail) = tail.split_at(n);
        *rest = tail;
        Some(Bytes::copy_from_slice(part))
    };
    while let (Some(header), Some(body)) = (take(&mut rest), take(&mut rest)) {
        messages.push(Ok(FlightData {
            flight_descriptor: None,
            data_header: header,
            app_metadata: Bytes::new(),
            data_body: body,
        }));
    }
    let stream = Box::pin(futures::stream::iter(messages));
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return 0;
    };
    rt.block_on(super::limits::read_upload(
        stream,
        1 << 20,
        "the fuzz input",
    ))
    .map_or(0, |u| u.rows)
}

/// Builds an [`upload`] input from real `FlightData` messages (for seed corpora).
pub fn frame_upload(messages: &[FlightData]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        for part in [&m.data_header, &m.data_body] {
            let n = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&part[..usize::from(n)]);
        }
    }
    out
}
