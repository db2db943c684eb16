//! # strata (the engine)
//!
//! Wires the crates into roles. `strata serve` runs all of them in one process:
//!
//! ```text
//!            ┌──────────── gateway (Flight SQL, auth, quotas) ────────────┐
//!  clients ─▶│  QueryBackend                         IngestBackend        │
//!            └──────┬────────────────────────────────────────┬───────────┘
//!     serve/compute │ LocalQuery (DataFusion)        LocalIngest │ serve/ingest
//!           gateway │ RemoteQueryBackend ─▶ compute   RemoteIngestBackend ─▶ ingest nodes
//!                   ▼                                         ▼
//!            tenants: per-tenant catalog (prefix in the bucket), query engine, shard writers
//! ```
//!
//! Modules: [`cli`] and [`settings`] (configuration), [`roles`] (wiring and shutdown),
//! [`local`] (backends over local roles), [`tenants`], [`http`] (health, metrics, JSON
//! ingest), [`console`] (the web console and its SQL/tail JSON API), [`lifecycle`] (compaction, retention, GC), [`client`] (`strata sql`,
//! `strata status`, `strata ingest FILE`), [`estimate`] (`strata estimate`: cluster sizing).

pub mod cli;
pub mod client;
pub mod console;
pub mod errors;
pub mod estimate;
pub mod http;
pub mod lifecycle;
pub mod local;
pub mod roles;
pub mod settings;
pub mod storage;
pub mod tenants;
