//! # strata-fuzz
//!
//! One entry point per decoder that untrusted bytes reach, shared by the libFuzzer targets
//! (`fuzz/libfuzzer`, run with cargo-fuzz) and by the smoke test that `cargo test` runs on
//! every change (`tests/smoke.rs`: the seed corpus in `fuzz/corpus/<target>/` and a fixed
//! number of seeded mutations of it). Each entry must return, whatever the bytes: an error
//! is fine, a panic, a hang or an unbounded allocation is a bug.
//!
//! | target | what it feeds | from |
//! |---|---|---|
//! | `ipc_upload` | Arrow IPC `FlightData` messages through the `DoPut` reader (byte limit) | clients |
//! | `json_lines` | a JSON lines body through schema inference and decoding | clients (HTTP) |
//! | `put_descriptor` | a `DoPut` flight descriptor (PATH, JSON command, Flight SQL command) | clients |
//! | `ticket` | a `DoGet` ticket (Flight SQL `Any`, statement handle, JSON log ticket) | clients |
//! | `wal_entry` | a WAL object (magic, LZ4, Arrow IPC, JSON header) | the bucket |
//! | `manifest` | a manifest version (JSON) | the bucket |

/// A fuzz target: bytes in, nothing out (it must simply return).
pub type Target = fn(&[u8]);

/// The targets, by name (the corpus folder and the libFuzzer binary are named the same).
pub const TARGETS: &[(&str, Target)] = &[
    ("ipc_upload", ipc_upload),
    ("json_lines", json_lines),
    ("put_descriptor", put_descriptor),
    ("ticket", ticket),
    ("wal_entry", wal_entry),
    ("manifest", manifest),
];

pub fn ipc_upload(data: &[u8]) {
    let _ = strata_gateway::flight::fuzzing::upload(data);
}

pub fn json_lines(data: &[u8]) {
    if let Ok(schema) = strata_ingest::json::infer_schema(data, None) {
        let _ = strata_ingest::json::decode(data, &schema, true);
    }
}

pub fn put_descriptor(data: &[u8]) {
    let _ = strata_gateway::flight::fuzzing::put_descriptor(data);
}

pub fn ticket(data: &[u8]) {
    let _ = strata_gateway::flight::fuzzing::ticket(data);
}

pub fn wal_entry(data: &[u8]) {
    let _ = strata_storage::wal::decode(&bytes::Bytes::copy_from_slice(data));
}

pub fn manifest(data: &[u8]) {
    let _ = strata_storage::TableManifest::decode(data, "fuzz input");
}
