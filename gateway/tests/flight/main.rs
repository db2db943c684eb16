//! End-to-end tests of the gateway's Flight service over real gRPC on 127.0.0.1, with
//! in-process fake backends (the engine is tested elsewhere).

mod fakes;
mod harness;
mod ingest;
mod interop;
mod security;
mod sql;
