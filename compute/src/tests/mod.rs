//! Query-path tests against `InMemory` stores and temporary folders.

mod cache;
mod confinement;
mod freshness;
mod lifecycle;
mod pruning;
mod sql_suite;
