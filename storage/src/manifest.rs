//! The table manifest: one JSON document per version holding a table's whole state.
//!
//! Each version is complete (definition, live segments, shard states, delete rules), so a
//! reader needs exactly one GET, whatever the history length: every version is its own
//! checkpoint. The cost is that a commit rewrites the segment list; compaction keeps it short.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Current manifest format; readers refuse newer ones.
pub const MANIFEST_FORMAT: u32 = 1;

/// Hidden column in every segment and WAL entry: the record's per-shard log offset.
pub const OFFSET_COLUMN: &str = "_offset";

/// A table's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    /// The user-visible schema (without [`OFFSET_COLUMN`]).
    pub schema: Schema,
    /// Timestamp column used for pruning, sorting and retention; `None` for dimension tables.
    pub time_column: Option<String>,
    /// Column whose hash picks the shard; `None` spreads rows by their position.
    pub shard_key: Option<String>,
    pub num_shards: u32,
    /// Rows older than this many seconds are dropped. `None`: kept forever.
    pub retention_secs: Option<u64>,
    /// Columns that get Parquet bloom filters (id-like columns for point lookups).
    pub bloom_columns: Vec<String>,
    pub created_at_ms: i64,
}

impl TableDef {
    pub fn schema_ref(&self) -> SchemaRef {
        Arc::new(self.schema.clone())
    }

    /// Validate names and the time column; normalise the table name to lower case.
    pub fn validated(mut self) -> Result<Self> {
        self.name = validate_table_name(&self.name)?;
        if self.num_shards == 0 || self.num_shards > 4096 {
            return Err(Error::InvalidInput(format!(
                "table `{}`: num_shards must be in 1..=4096, got {}",
                self.name, self.num_shards
            )));
        }
        if self.schema.fields().is_empty() {
            return Err(Error::InvalidInput(format!(
                "table `{}` has no columns",
                self.name
            )));
        }
        check_columns(&self.name, &self.schema)?;
        if self.schema.field_with_name(OFFSET_COLUMN).is_ok() {
            return Err(Error::InvalidInput(format!(
                "column name `{OFFSET_COLUMN}` is reserved"
            )));
        }
        if let Some(tc) = &self.time_column {
            let f = self.schema.field_with_name(tc).map_err(|_| {
                Error::InvalidInput(format!(
                    "time column `{tc}` is not a column of table `{}`",
                    self.name
                ))
            })?;
            if !matches!(f.data_type(), DataType::Timestamp(_, _)) {
                return Err(Error::InvalidInput(format!(
                    "time column `{tc}` must be a timestamp, but it is {}",
                    f.data_type()
                )));
            }
        }
        for c in self.shard_key.iter().chain(self.bloom_columns.iter()) {
            if self.schema.field_with_name(c).is_err() {
                return Err(Error::InvalidInput(format!(
                    "column `{c}` is not a column of table `{}`",
                    self.name
                )));
            }
        }
        Ok(self)
    }

    /// Multiplier turning the time column's unit into microseconds (negative = divide).
    pub fn time_unit(&self) -> Option<TimeUnit> {
        let tc = self.time_column.as_ref()?;
        match self.schema.field_with_name(tc).ok()?.data_type() {
            DataType::Timestamp(u, _) => Some(*u),
            _ => None,
        }
    }
}

/// Table names: ASCII letters, digits and `_`, not starting with a digit, ≤ 128 chars.
/// Returned in lower case, the way SQL resolves unquoted identifiers.
/// Most columns a table may have (a bound on manifest size and on per-column work).
pub const MAX_COLUMNS: usize = 1000;
/// Longest column name, in bytes.
pub const MAX_COLUMN_NAME_BYTES: usize = 256;

/// Column count and names within bounds (no empty names, no control characters).
pub fn check_columns(table: &str, schema: &Schema) -> Result<()> {
    if schema.fields().len() > MAX_COLUMNS {
        return Err(Error::InvalidInput(format!(
            "table `{table}` would have {} columns, over the limit of {MAX_COLUMNS}",
            schema.fields().len()
        )));
    }
    for f in schema.fields() {
        let name = f.name();
        if name.is_empty()
            || name.len() > MAX_COLUMN_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            return Err(Error::InvalidInput(format!(
                "table `{table}`: invalid column name {name:?}: use 1-{MAX_COLUMN_NAME_BYTES} \
                 bytes without control characters"
            )));
        }
    }
    Ok(())
}

pub fn validate_table_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        return Err(Error::InvalidInput(format!(
            "invalid table name `{name}`: use 1-128 ASCII letters, digits or `_`, not starting with a digit"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// Min/max/null statistics of one column in one segment. Values are JSON scalars:
/// integers and timestamps as numbers, strings as strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ColumnStats {
    pub min: Option<serde_json::Value>,
    pub max: Option<serde_json::Value>,
    pub nulls: u64,
}

/// One live Parquet segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub path: String,
    pub shard: u32,
    pub rows: u64,
    pub bytes: u64,
    /// Time range of the rows in microseconds since the epoch (inclusive).
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
    /// Log offsets of the rows (inclusive range; compaction may merge ranges).
    pub min_offset: u64,
    pub max_offset: u64,
    pub columns: BTreeMap<String, ColumnStats>,
    /// 0 for flushed segments, +1 per compaction.
    pub level: u32,
    /// Highest [`DeleteRule::id`] already applied physically to this segment's rows
    /// (0: none). Rules with a higher id still filter it at query time.
    #[serde(default)]
    pub deletes_applied: u64,
    pub created_at_ms: i64,
}

/// Per-shard writer state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ShardState {
    /// The current writer's epoch; a writer holding a smaller one is fenced.
    pub epoch: u64,
    /// Every offset below this is in a segment.
    pub flushed_offset: u64,
    /// Every WAL entry with a sequence number below this is in a segment and may be deleted.
    pub flushed_wal_seq: u64,
    /// Idempotent producers: producer id → highest sequence number whose rows are in segments.
    pub producers: BTreeMap<String, u64>,
}

/// A row-level delete: rows matching `predicate` (a SQL boolean expression) in segments
/// created before the rule are hidden at query time and dropped by compaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRule {
    pub id: u64,
    pub predicate: String,
    /// The rule applies to rows with offsets below this, per shard (rows written later survive).
    pub below_offsets: BTreeMap<u32, u64>,
    pub created_at_ms: i64,
}

/// A segment a commit took out of the table, and when. GC keeps its object for
/// `min_age` after that moment (not after the object's creation), so a query planned on an
/// older version never meets a missing segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreferenced {
    pub path: String,
    /// Commit time of the first version without the segment.
    pub since_ms: i64,
}

/// A table's complete state at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    pub format: u32,
    pub version: u64,
    /// Unique per commit attempt, so a committer whose response was lost can tell
    /// whether the version that exists is its own.
    pub commit_id: String,
    pub committed_at_ms: i64,
    pub table: TableDef,
    pub segments: Vec<SegmentMeta>,
    pub shards: BTreeMap<u32, ShardState>,
    pub deletes: Vec<DeleteRule>,
    pub next_delete_id: u64,
    /// Segments removed by commits whose objects GC has not deleted yet (maintained by
    /// `Catalog::commit`, pruned by GC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreferenced: Vec<Unreferenced>,
    /// `DROP TABLE`: the table is gone for readers and writers; GC collects its objects. A
    /// later `CREATE TABLE` (or first write) of the same name commits a new definition on top.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

impl TableManifest {
    pub fn new(table: TableDef) -> Self {
        let shards = (0..table.num_shards)
            .map(|s| (s, ShardState::default()))
            .collect();
        Self {
            format: MANIFEST_FORMAT,
            version: 0,
            commit_id: String::new(),
            committed_at_ms: 0,
            table,
            segments: Vec::new(),
            shards,
            deletes: Vec::new(),
            next_delete_id: 1,
            unreferenced: Vec::new(),
            dropped: false,
        }
    }

    pub fn shard(&self, shard: u32) -> Result<&ShardState> {
        self.shards.get(&shard).ok_or_else(|| {
            Error::InvalidInput(format!(
                "table `{}` has no shard {shard} (it has {})",
                self.table.name, self.table.num_shards
            ))
        })
    }

    pub fn shard_mut(&mut self, shard: u32) -> Result<&mut ShardState> {
        let name = self.table.name.clone();
        let n = self.table.num_shards;
        self.shards.get_mut(&shard).ok_or_else(|| {
            Error::InvalidInput(format!("table `{name}` has no shard {shard} (it has {n})"))
        })
    }

    /// Refuse if `epoch` is not the shard's current writer epoch.
    pub fn check_epoch(&self, shard: u32, epoch: u64) -> Result<()> {
        let current = self.shard(shard)?.epoch;
        if current != epoch {
            return Err(Error::Fenced {
                table: self.table.name.clone(),
                shard,
                epoch,
                current,
            });
        }
        Ok(())
    }

    pub fn total_rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub(crate) fn encode(&self) -> Result<bytes::Bytes> {
        serde_json::to_vec(self)
            .map(Into::into)
            .map_err(|e| Error::Corrupt {
                what: "manifest".into(),
                detail: e.to_string(),
            })
    }

    /// Parse a manifest (bytes from the bucket, untrusted); `what` names it in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
        if m.format > MANIFEST_FORMAT {
            return Err(Error::Corrupt {
                what: what.to_string(),
                detail: format!(
                    "manifest format {} is newer than this build understands ({MANIFEST_FORMAT}); upgrade Strata",
                    m.format
                ),
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use arrow::datatypes::Field;

    fn def(fields: Vec<Field>) -> TableDef {
        TableDef {
            name: "t".into(),
            schema: Schema::new(fields),
            time_column: None,
            shard_key: None,
            num_shards: 1,
            retention_secs: None,
            bloom_columns: Vec::new(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn columns_are_bounded_in_number_and_name() {
        let wide: Vec<Field> = (0..=MAX_COLUMNS)
            .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
            .collect();
        let e = def(wide).validated().expect_err("too many columns");
        assert!(e.to_string().contains("over the limit"), "{e}");
        let e = def(vec![Field::new("a\nb", DataType::Int64, true)])
            .validated()
            .expect_err("a control character");
        assert!(e.to_string().contains("invalid column name"), "{e}");
        let long = "x".repeat(MAX_COLUMN_NAME_BYTES + 1);
        assert!(
            def(vec![Field::new(long, DataType::Int64, true)])
                .validated()
                .is_err()
        );
        def(vec![Field::new("ok", DataType::Int64, true)])
            .validated()
            .expect("a plain table");
        for bad in ["", "../x", "a/b", "x".repeat(129).as_str(), "1abc"] {
            assert!(validate_table_name(bad).is_err(), "{bad:?} is refused");
        }
    }
}
