//! Newline-delimited JSON → Arrow, with per-line error reporting for dead letters.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::json::ReaderBuilder;
use arrow::json::reader::infer_json_schema_from_seekable;

use crate::error::{Error, Result};

/// Longest JSON line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Deepest nesting of objects and arrays accepted in a JSON line.
pub const MAX_DEPTH: usize = 32;

/// Refuses a body with a line longer than [`MAX_LINE_BYTES`] or nested deeper than
/// [`MAX_DEPTH`], naming the line, before any parser sees it: the parsers' memory and
/// stack stay bounded whatever a client sends.
pub fn check_limits(body: &[u8]) -> Result<()> {
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.len() > MAX_LINE_BYTES {
            return Err(Error::InvalidInput(format!(
                "line {}: {} bytes, over the limit of {MAX_LINE_BYTES} bytes per JSON line; \
                 nothing was stored",
                i + 1,
                line.len()
            )));
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in line {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Error::InvalidInput(format!(
                            "line {}: JSON nested deeper than {MAX_DEPTH} levels; nothing was \
                             stored",
                            i + 1
                        )));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A line that could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the request body.
    pub line: u64,
    pub error: String,
    pub raw: String,
}

/// The converted good lines and the bad ones.
#[derive(Debug)]
pub struct Decoded {
    pub batch: Option<RecordBatch>,
    pub bad: Vec<BadLine>,
}

/// The schema for a table created from JSON: inferred from the body, with a time column
/// (`ts`, `time` or `timestamp`, or `time_column`) read as microsecond timestamps.
pub fn infer_schema(body: &[u8], time_column: Option<&str>) -> Result<SchemaRef> {
    check_limits(body)?;
    let (schema, _) =
        infer_json_schema_from_seekable(Cursor::new(body), Some(1000)).map_err(|e| {
            Error::InvalidInput(format!("cannot infer a schema from the JSON body: {e}"))
        })?;
    let tc = time_column.map(str::to_string).or_else(|| {
        ["ts", "time", "timestamp"]
            .iter()
            .find(|c| schema.field_with_name(c).is_ok())
            .map(|c| c.to_string())
    });
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if Some(f.name()) == tc.as_ref() {
                Field::new(
                    f.name(),
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                )
            } else {
                f.as_ref().clone().with_nullable(true)
            }
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// Decode `body` against `schema`. With `keep_going` false the first bad line fails the
/// whole request (nothing is stored); with `keep_going` true bad lines are returned apart.
pub fn decode(body: &[u8], schema: &SchemaRef, keep_going: bool) -> Result<Decoded> {
    check_limits(body)?;
    // Fast path: the whole body at once.
    if let Ok(batch) = decode_all(body, schema) {
        return Ok(Decoded {
            batch,
            bad: Vec::new(),
        });
    }
    // Slow path: line by line, to name the bad lines.
    let mut good: Vec<RecordBatch> = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        match decode_all(trimmed, schema) {
            Ok(Some(b)) => good.push(b),
            Ok(None) => {}
            Err(e) => {
                let bad_line = BadLine {
                    line: i as u64 + 1,
                    error: e.to_string(),
                    raw: String::from_utf8_lossy(&trimmed[..trimmed.len().min(4096)]).into_owned(),
                };
                if !keep_going {
                    return Err(Error::InvalidInput(format!(
                        "line {}: {}; nothing was stored (use ?on_error=dead_letter to keep good lines)",
                        bad_line.line, bad_line.error
                    )));
                }
                bad.push(bad_line);
            }
        }
    }
    let batch = if good.is_empty() {
        None
    } else {
        Some(arrow::compute::concat_batches(schema, &good)?)
    };
    Ok(Decoded { batch, bad })
}

fn decode_all(body: &[u8], schema: &SchemaRef) -> Result<Option<RecordBatch>> {
    let reader = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(64 * 1024)
        .with_strict_mode(true)
        .build(Cursor::new(body))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| Error::InvalidInput(e.to_string()))?);
    }
    if batches.is_empty() {
        return Ok(None);
    }
    // Required (non-nullable) columns must be present and non-null.
    let b = arrow::compute::concat_batches(schema, &batches)?;
    for (f, c) in schema.fields().iter().zip(b.columns()) {
        if !f.is_nullable() && c.null_count() > 0 {
            return Err(Error::InvalidInput(format!(
                "column `{}` must not be null",
                f.name()
            )));
        }
    }
    Ok(Some(b))
}

/// Schema of a table's dead-letter log (`<table>__rejected`).
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("line", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Bad lines as rows of the dead-letter table.
pub fn dead_letter_batch(bad: &[BadLine]) -> Result<RecordBatch> {
    use arrow::array::{StringArray, TimestampMicrosecondArray, UInt64Array};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Ok(RecordBatch::try_new(
        dead_letter_schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![now; bad.len()])),
            Arc::new(UInt64Array::from_iter_values(bad.iter().map(|b| b.line))),
            Arc::new(StringArray::from_iter_values(
                bad.iter().map(|b| b.error.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                bad.iter().map(|b| b.raw.as_str()),
            )),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_bad_lines_or_rejects() {
        let body = b"{\"ts\":\"2024-01-01T00:00:00Z\",\"n\":1}\n{\"ts\":\"2024-01-01T00:00:01Z\",\"n\":\"x\"}\n{\"ts\":\"2024-01-01T00:00:02Z\",\"n\":3}\n";
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("n", DataType::Int64, true),
        ]));
        let e = decode(body, &schema, false).unwrap_err().to_string();
        assert!(e.starts_with("line 2:"), "{e}");
        let d = decode(body, &schema, true).unwrap();
        assert_eq!(d.batch.unwrap().num_rows(), 2);
        assert_eq!(d.bad.len(), 1);
        assert_eq!(d.bad[0].line, 2);
        let missing = b"{\"n\":1}\n";
        let e = decode(missing, &schema, false).unwrap_err().to_string();
        assert!(e.starts_with("line 1:") && e.contains("ts"), "{e}");
    }

    #[test]
    fn infers_time_column() {
        let s = infer_schema(
            b"{\"ts\":\"2024-01-01T00:00:00Z\",\"host\":\"a\",\"v\":1.5}\n",
            None,
        )
        .unwrap();
        assert_eq!(
            s.field_with_name("ts").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert!(s.field_with_name("host").unwrap().is_nullable());
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn long_lines_and_deep_nesting_are_refused_by_line() {
        let deep = format!("{{\"a\":{}1{}}}\n", "[".repeat(40), "]".repeat(40));
        let body = format!("{{\"ts\":1}}\n{deep}");
        let e = check_limits(body.as_bytes()).expect_err("too deep");
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("nested"),
            "{e}"
        );
        // Brackets inside strings do not count.
        let strings = format!("{{\"s\":\"{}\"}}\n", "[".repeat(100));
        check_limits(strings.as_bytes()).expect("brackets in a string are text");
        let long = format!("{{\"s\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES));
        let e = check_limits(long.as_bytes()).expect_err("too long");
        assert!(e.to_string().contains("line 1"), "{e}");
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        assert!(
            decode(deep.as_bytes(), &schema, true).is_err(),
            "decode checks too"
        );
    }
}
