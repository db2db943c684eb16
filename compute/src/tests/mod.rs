//! Query-path tests against `InMemory` stores and temporary folders.

mod budget;
mod cache;
mod confinement;
mod freshness;
mod joins;
mod lifecycle;
mod pruning;
mod rules_review;
mod sql_suite;
