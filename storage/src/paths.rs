//! Where things live in the bucket. One place, so layouts can be read off at a glance:
//!
//! ```text
//! tables/<table>/manifest/<version:020>.json   full table state at that version (create-only)
//! tables/<table>/manifest/_latest              hint: the newest version known (best effort)
//! tables/<table>/wal/<shard:04>/<seq:020>.arrow WAL entries, Arrow IPC (create-only)
//! tables/<table>/seg/<shard:04>/<yyyymmddhh>-<uuid>.parquet  segments
//! _strata/probe/<uuid>                         startup conditional-write probe
//! ```
//!
//! Zero-padded numbers make lexical order equal numeric order, so "everything after
//! version N" is one LIST with a start-after offset.

use object_store::path::Path;

pub fn tables_root() -> Path {
    Path::from("tables")
}

pub fn table_root(table: &str) -> Path {
    Path::from(format!("tables/{table}"))
}

pub fn manifest_dir(table: &str) -> Path {
    Path::from(format!("tables/{table}/manifest"))
}

pub fn manifest_version(table: &str, version: u64) -> Path {
    Path::from(format!("tables/{table}/manifest/{version:020}.json"))
}

pub fn manifest_latest_hint(table: &str) -> Path {
    Path::from(format!("tables/{table}/manifest/_latest"))
}

/// Parse a manifest object name back to its version; `None` for hints and strangers.
pub fn parse_manifest_version(path: &Path) -> Option<u64> {
    let name = path.filename()?;
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

pub fn wal_dir(table: &str, shard: u32) -> Path {
    Path::from(format!("tables/{table}/wal/{shard:04}"))
}

pub fn wal_entry(table: &str, shard: u32, seq: u64) -> Path {
    Path::from(format!("tables/{table}/wal/{shard:04}/{seq:020}.arrow"))
}

pub fn parse_wal_seq(path: &Path) -> Option<u64> {
    let name = path.filename()?;
    let digits = name.strip_suffix(".arrow")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

pub fn segment_dir(table: &str) -> Path {
    Path::from(format!("tables/{table}/seg"))
}

/// A new segment path; the hour of its first row leads the name so listings group by time.
pub fn new_segment(table: &str, shard: u32, min_ts_micros: Option<i64>) -> Path {
    let hour = min_ts_micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|t| t.format("%Y%m%d%H").to_string())
        .unwrap_or_else(|| "notime".to_string());
    Path::from(format!(
        "tables/{table}/seg/{shard:04}/{hour}-{}.parquet",
        uuid::Uuid::now_v7().simple()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(parse_manifest_version(&manifest_version("t", 42)), Some(42));
        assert_eq!(parse_manifest_version(&manifest_latest_hint("t")), None);
        assert_eq!(parse_wal_seq(&wal_entry("t", 3, 7)), Some(7));
        let p = new_segment("t", 1, Some(0));
        assert!(
            p.as_ref().starts_with("tables/t/seg/0001/1970010100-"),
            "{p}"
        );
    }
}
