//! Schema rules for incoming batches.
//!
//! - A table is created from the first batch: the time column is the one named in the
//!   request, else the first timestamp column called `ts`, `time` or `timestamp`.
//! - Each batch is conformed to the table schema: columns reordered, missing nullable
//!   columns filled with nulls, compatible types cast (integer widening, string layouts,
//!   timestamp units); the time column must be present and free of nulls.
//! - Columns the table lacks are added as nullable (schema evolution); a type conflict is
//!   rejected naming the column and both types.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_storage::{OFFSET_COLUMN, TableDef};

use crate::error::{Error, Result};

/// Options for a table created by its first write.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub time_column: Option<String>,
    pub shard_key: Option<String>,
    pub num_shards: Option<u32>,
    pub retention_secs: Option<u64>,
    pub bloom_columns: Vec<String>,
}

/// Define a new table from the schema of its first batch.
pub fn infer_table_def(
    name: &str,
    schema: &Schema,
    opts: &CreateOptions,
    default_shards: u32,
) -> Result<TableDef> {
    let time_column = match &opts.time_column {
        Some(tc) => Some(tc.clone()),
        None => ["ts", "time", "timestamp"]
            .iter()
            .find(|c| {
                schema
                    .field_with_name(c)
                    .is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
            })
            .map(|c| c.to_string()),
    };
    // Stored columns are nullable except the time column: later batches may omit any column.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let nullable = Some(f.name()) != time_column.as_ref();
            Field::new(f.name(), storage_type(f.data_type()), nullable)
        })
        .collect();
    let def = TableDef {
        name: name.to_string(),
        schema: Schema::new(fields),
        time_column,
        shard_key: opts.shard_key.clone(),
        num_shards: opts.num_shards.unwrap_or(default_shards),
        retention_secs: opts.retention_secs,
        bloom_columns: opts.bloom_columns.clone(),
        created_at_ms: 0,
    };
    def.validated()
        .map_err(|e| Error::InvalidInput(e.to_string()))
}

/// The type a column is stored as: dictionaries and string/binary views become plain.
fn storage_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => storage_type(v),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// Can a batch column of type `from` be stored in a table column of type `to`?
fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    let from = storage_type(from);
    if &from == to {
        return true;
    }
    let int = |t: &DataType| t.is_integer();
    match (&from, to) {
        (a, b) if int(a) && int(b) => true,
        (a, Float64) if int(a) => true,
        (Float32, Float64) => true,
        // Arrow timestamps count from the epoch in UTC whatever their zone, so a zone only
        // changes how values are shown: zoned columns take any zone, and a zone-less value
        // is taken as UTC. Units convert (finer to coarser truncates, as a client would).
        (Timestamp(_, a), Timestamp(_, b)) => match (a, b) {
            (Some(_), Some(_)) => true,
            (None, None) => true,
            (Some(z), None) | (None, Some(z)) => is_utc(z),
        },
        (FixedSizeBinary(_), Binary) => true,
        (Null, _) => true,
        _ => false,
    }
}

/// `UTC` and its spellings.
fn is_utc(zone: &str) -> bool {
    matches!(
        zone.to_ascii_uppercase().as_str(),
        "UTC" | "Z" | "+00:00" | "+0000" | "ETC/UTC" | "GMT" | "ETC/GMT"
    )
}

/// Columns of `batch` the table lacks, as nullable fields (schema evolution), or an error
/// naming the first column whose type conflicts with the table's.
pub fn new_columns(def: &TableDef, batch: &Schema) -> Result<Vec<Field>> {
    let mut added = Vec::new();
    for f in batch.fields() {
        if f.name() == OFFSET_COLUMN {
            return Err(Error::InvalidInput(format!(
                "column name `{OFFSET_COLUMN}` is reserved"
            )));
        }
        match def.schema.field_with_name(f.name()) {
            Ok(t) => {
                if !compatible(f.data_type(), t.data_type()) {
                    return Err(type_conflict(
                        &def.name,
                        f.name(),
                        t.data_type(),
                        f.data_type(),
                    ));
                }
            }
            Err(_) => added.push(Field::new(f.name(), storage_type(f.data_type()), true)),
        }
    }
    Ok(added)
}

pub(crate) fn type_conflict(
    table: &str,
    col: &str,
    table_type: &DataType,
    batch_type: &DataType,
) -> Error {
    Error::InvalidInput(format!(
        "column `{col}` of table `{table}` is {table_type}, but the batch has {batch_type}; \
         write it as {table_type} or use a new column name"
    ))
}

/// Reshape `batch` to the table schema (which must already include any new columns).
/// Fails without side effects on type conflicts, missing required columns or null times.
pub fn conform(def: &TableDef, batch: &RecordBatch) -> Result<RecordBatch> {
    let target = def.schema_ref();
    let n = batch.num_rows();
    let cast_opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) => {
                if !compatible(c.data_type(), f.data_type()) {
                    return Err(type_conflict(
                        &def.name,
                        f.name(),
                        f.data_type(),
                        c.data_type(),
                    ));
                }
                let c = if c.data_type() == f.data_type() {
                    Arc::clone(c)
                } else if let (DataType::Timestamp(_, _), DataType::Timestamp(unit, zone)) =
                    (c.data_type(), f.data_type())
                {
                    rezone(c, *unit, zone.clone(), &cast_opts)?
                } else {
                    arrow::compute::cast_with_options(c, f.data_type(), &cast_opts).map_err(
                        |e| {
                            Error::InvalidInput(format!(
                                "column `{}`: cannot convert {} to {}: {e}",
                                f.name(),
                                c.data_type(),
                                f.data_type()
                            ))
                        },
                    )?
                };
                if !f.is_nullable() && c.null_count() > 0 {
                    return Err(Error::InvalidInput(format!(
                        "column `{}` of table `{}` must not be null, but {} of {n} rows are null",
                        f.name(),
                        def.name,
                        c.null_count()
                    )));
                }
                cols.push(c);
            }
            None if f.is_nullable() => cols.push(new_null_array(f.data_type(), n)),
            None => {
                return Err(Error::InvalidInput(format!(
                    "the batch lacks column `{}`, which table `{}` requires{}",
                    f.name(),
                    def.name,
                    if def.time_column.as_deref() == Some(f.name()) {
                        " (it is the time column)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    for f in batch.schema().fields() {
        if target.field_with_name(f.name()).is_err() {
            return Err(Error::InvalidInput(format!(
                "column `{}` is not in table `{}`",
                f.name(),
                def.name
            )));
        }
    }
    Ok(RecordBatch::try_new_with_options(
        target,
        cols,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// A timestamp column in `unit` and `zone`: the unit is converted, the zone only relabels
/// (Arrow timestamps count from the epoch in UTC whatever their zone).
fn rezone(
    c: &ArrayRef,
    unit: arrow::datatypes::TimeUnit,
    zone: Option<Arc<str>>,
    opts: &CastOptions,
) -> Result<ArrayRef> {
    let DataType::Timestamp(from_unit, from_zone) = c.data_type() else {
        return Ok(Arc::clone(c));
    };
    let c = if *from_unit == unit {
        Arc::clone(c)
    } else {
        let same_zone = DataType::Timestamp(unit, from_zone.clone());
        arrow::compute::cast_with_options(c, &same_zone, opts).map_err(|e| {
            Error::InvalidInput(format!(
                "cannot convert {} to {same_zone}: {e}",
                c.data_type()
            ))
        })?
    };
    let data = c
        .to_data()
        .into_builder()
        .data_type(DataType::Timestamp(unit, zone))
        .build()?;
    Ok(arrow::array::make_array(data))
}

/// The stored schema: the table schema plus the offset column.
pub fn with_offset_column(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(OFFSET_COLUMN, DataType::UInt64, false)));
    Arc::new(Schema::new(fields))
}

/// Bring a stored batch (table schema of its time + offset column) to `target`
/// (current table schema + offset column): new columns become nulls.
pub fn upgrade_stored(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == target.fields() {
        return Ok(batch.clone());
    }
    let n = batch.num_rows();
    let cols = target
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
            Some(c) => Ok(arrow::compute::cast(c, f.data_type())?),
            None => Ok(new_null_array(f.data_type(), n)),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(target),
        cols,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

pub use strata_common::batch_bytes;

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    fn ts(v: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v))
    }

    #[test]
    fn infers_time_column_and_conforms() {
        let b = batch(vec![
            ("ts", ts(vec![Some(1), Some(2)])),
            ("n", Arc::new(Int32Array::from(vec![1, 2]))),
        ]);
        let def = infer_table_def("t", &b.schema(), &CreateOptions::default(), 4).unwrap();
        assert_eq!(def.time_column.as_deref(), Some("ts"));
        assert!(!def.schema.field_with_name("ts").unwrap().is_nullable());
        // A later batch with the columns reversed and an Int64-compatible widening.
        let b2 = batch(vec![
            ("n", Arc::new(Int32Array::from(vec![3]))),
            ("ts", ts(vec![Some(3)])),
        ]);
        let c = conform(&def, &b2).unwrap();
        assert_eq!(c.schema().field(0).name(), "ts");
    }

    /// UTC and zone-less timestamps of the same instant, and fixed-size into variable
    /// binary, are stored without changing a value; other zones into a zone-less column
    /// are refused.
    #[test]
    fn lossless_casts_keep_values() {
        use arrow::array::{Array, AsArray, BinaryArray, FixedSizeBinaryArray};
        use arrow::datatypes::TimestampMicrosecondType;
        let utc = |v: i64, zone: &str| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone(zone))
        };
        let id: ArrayRef =
            Arc::new(FixedSizeBinaryArray::try_from_iter(vec![[7u8; 16]].into_iter()).unwrap());
        // A zone-less table (made by a zone-less first write).
        let def = infer_table_def(
            "t",
            &batch(vec![
                ("ts", ts(vec![Some(1)])),
                ("id", Arc::new(BinaryArray::from(vec![&b"x"[..]]))),
            ])
            .schema(),
            &CreateOptions::default(),
            4,
        )
        .unwrap();
        for zone in ["UTC", "+00:00", "Etc/UTC"] {
            let b = batch(vec![
                ("ts", utc(1_700_000_000_000_000, zone)),
                ("id", Arc::clone(&id)),
            ]);
            assert!(new_columns(&def, &b.schema()).unwrap().is_empty());
            let c = conform(&def, &b).unwrap();
            let v = c
                .column(0)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0);
            assert_eq!(v, 1_700_000_000_000_000, "{zone}");
            assert_eq!(c.column(1).as_binary::<i32>().value(0), &[7u8; 16]);
        }
        let other = batch(vec![("ts", utc(1, "America/New_York"))]);
        let e = new_columns(&def, &other.schema()).unwrap_err().to_string();
        assert!(e.contains("`ts`"), "{e}");
        // A UTC table takes zone-less values as UTC, and other zones as the same instants.
        let zoned = TableDef {
            schema: Schema::new(vec![Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            )]),
            ..def.clone()
        };
        for b in [
            batch(vec![("ts", ts(vec![Some(5)]))]),
            batch(vec![("ts", utc(5, "Asia/Tokyo"))]),
        ] {
            let c = conform(&zoned, &b).unwrap();
            assert_eq!(c.column(0).data_type(), zoned.schema.field(0).data_type());
            assert_eq!(
                c.column(0)
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(0),
                5
            );
            assert_eq!(c.column(0).len(), 1);
        }
    }

    #[test]
    fn rejects_null_times_missing_time_and_type_conflicts() {
        let b = batch(vec![
            ("ts", ts(vec![Some(1)])),
            ("n", Arc::new(Int32Array::from(vec![1]))),
        ]);
        let def = infer_table_def("t", &b.schema(), &CreateOptions::default(), 4).unwrap();
        let e = conform(
            &def,
            &batch(vec![
                ("ts", ts(vec![None])),
                ("n", Arc::new(Int32Array::from(vec![1]))),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`ts`") && e.contains("must not be null"), "{e}");
        let e = conform(
            &def,
            &batch(vec![("n", Arc::new(Int32Array::from(vec![1])))]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("lacks column `ts`") && e.contains("time column"),
            "{e}"
        );
        let bad = batch(vec![
            ("ts", ts(vec![Some(1)])),
            ("n", Arc::new(StringArray::from(vec!["x"]))),
        ]);
        let e = new_columns(&def, &bad.schema()).unwrap_err().to_string();
        assert!(
            e.contains("column `n`") && e.contains("Int32") && e.contains("Utf8"),
            "{e}"
        );
    }

    #[test]
    fn slices_count_only_their_rows() {
        let b = batch(vec![(
            "n",
            Arc::new(Int32Array::from_iter_values(0..100_000)),
        )]);
        let whole = batch_bytes(&b);
        let part = batch_bytes(&b.slice(0, 1000));
        assert!(whole >= 400_000, "{whole}");
        assert!(
            part < whole / 50,
            "a 1% slice counts {part} of {whole} bytes"
        );
    }

    #[test]
    fn new_columns_are_nullable_additions() {
        let b = batch(vec![("ts", ts(vec![Some(1)]))]);
        let def = infer_table_def("t", &b.schema(), &CreateOptions::default(), 1).unwrap();
        let b2 = batch(vec![
            ("ts", ts(vec![Some(2)])),
            ("extra", Arc::new(StringArray::from(vec!["x"]))),
        ]);
        let added = new_columns(&def, &b2.schema()).unwrap();
        assert_eq!(added, vec![Field::new("extra", DataType::Utf8, true)]);
        let t = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(compatible(
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
            &t
        ));
    }
}
