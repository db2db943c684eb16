//! Rendering query results: aligned tables (arrow's pretty printer), CSV with a header, or
//! JSON lines. Batches are written as they arrive; tables are printed in chunks of at most
//! [`TABLE_CHUNK_ROWS`] rows, because aligning columns needs every row of a chunk.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::cli::OutputFormat;

/// Rows buffered before a table is printed.
pub(super) const TABLE_CHUNK_ROWS: usize = 10_000;

enum Sink<W: Write> {
    Table {
        out: W,
        pending: Vec<RecordBatch>,
        pending_rows: usize,
    },
    Csv(Box<arrow::csv::Writer<W>>),
    Json(arrow::json::LineDelimitedWriter<W>),
}

/// Writes the batches of one result in one format.
pub(super) struct Printer<W: Write> {
    sink: Sink<W>,
    rows: usize,
    batches: usize,
    schema: Option<SchemaRef>,
}

impl<W: Write> Printer<W> {
    pub(super) fn new(format: OutputFormat, out: W) -> Self {
        let sink = match format {
            OutputFormat::Table => Sink::Table {
                out,
                pending: Vec::new(),
                pending_rows: 0,
            },
            OutputFormat::Csv => Sink::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            )),
            OutputFormat::Json => Sink::Json(arrow::json::LineDelimitedWriter::new(out)),
        };
        Self {
            sink,
            rows: 0,
            batches: 0,
            schema: None,
        }
    }

    /// The result's schema, so that an empty result still prints its header.
    pub(super) fn set_schema(&mut self, schema: SchemaRef) {
        if self.schema.is_none() {
            self.schema = Some(schema);
        }
    }

    /// Rows written so far.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if self.schema.is_none() {
            self.schema = Some(batch.schema());
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        self.batches += 1;
        match &mut self.sink {
            Sink::Table {
                out,
                pending,
                pending_rows,
            } => {
                pending.push(batch.clone());
                *pending_rows += batch.num_rows();
                if *pending_rows >= TABLE_CHUNK_ROWS {
                    print_table(out, pending)?;
                    *pending_rows = 0;
                }
                Ok(())
            }
            Sink::Csv(w) => {
                w.write(batch)?;
                Ok(())
            }
            Sink::Json(w) => {
                w.write(batch)?;
                Ok(())
            }
        }
    }

    /// Prints what is buffered (or the header of an empty result) and flushes. Returns the
    /// number of rows and the writer.
    pub(super) fn finish(self) -> Result<(usize, W), ArrowError> {
        let empty = match (&self.schema, self.batches) {
            (Some(s), 0) => Some(RecordBatch::new_empty(std::sync::Arc::clone(s))),
            _ => None,
        };
        let mut out = match self.sink {
            Sink::Table {
                mut out,
                mut pending,
                ..
            } => {
                pending.extend(empty);
                print_table(&mut out, &mut pending)?;
                out
            }
            Sink::Csv(mut w) => {
                if let Some(e) = empty {
                    w.write(&e)?;
                }
                w.into_inner()
            }
            Sink::Json(mut w) => {
                w.finish()?;
                w.into_inner()
            }
        };
        out.flush()?;
        Ok((self.rows, out))
    }
}

fn print_table<W: Write>(out: &mut W, pending: &mut Vec<RecordBatch>) -> Result<(), ArrowError> {
    if pending.is_empty() {
        return Ok(());
    }
    let table = arrow::util::pretty::pretty_format_batches(pending)?;
    writeln!(out, "{table}")?;
    out.flush()?;
    pending.clear();
    Ok(())
}

/// True if `e` means stdout was closed (`strata sql -e ... | head`).
pub(super) fn is_broken_pipe(e: &ArrowError) -> bool {
    match e {
        ArrowError::IoError(_, io) => io.kind() == std::io::ErrorKind::BrokenPipe,
        ArrowError::ExternalError(e) => e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe),
        ArrowError::CsvError(m) | ArrowError::JsonError(m) => m.contains("Broken pipe"),
        _ => false,
    }
}

/// `N rows in X ms`.
pub(super) fn timing_line(rows: usize, elapsed: std::time::Duration) -> String {
    format!("{} in {}", plural(rows as u64, "row"), millis(elapsed))
}

/// What a query cost, from the JSON the server sends after the last batch (see
/// `strata_compute::CostReport`), as one line; empty when it says nothing useful.
pub(super) fn cost_line(c: &serde_json::Value) -> String {
    if let Some(how) = c.get("result_cache").and_then(|v| v.as_str()) {
        return format!("result cache: {how} (nothing read)");
    }
    serde_json::from_value::<strata_compute::cost::CostReport>(c.clone())
        .map(|r| r.summary())
        .unwrap_or_default()
}

/// `1 row`, `2 rows`.
pub(super) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Milliseconds with one decimal.
pub(super) fn millis(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(
                    (0..n).map(|i| i * 1_000_000).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    (0..n)
                        .map(|i| (i % 2 == 0).then_some(i))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    (0..n).map(|i| format!("a,{i}")).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn render(format: OutputFormat, batches: &[RecordBatch]) -> String {
        let mut p = Printer::new(format, Vec::new());
        for b in batches {
            p.write(b).unwrap();
        }
        let (_, out) = p.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table() {
        let out = render(OutputFormat::Table, &[batch(2)]);
        let expected = "\
+---------------------+---+-----+
| ts                  | n | s   |
+---------------------+---+-----+
| 1970-01-01T00:00:00 | 0 | a,0 |
| 1970-01-01T00:00:01 |   | a,1 |
+---------------------+---+-----+
";
        assert_eq!(out, expected);
    }

    #[test]
    fn csv_has_one_header_and_quotes() {
        let out = render(OutputFormat::Csv, &[batch(2), batch(1)]);
        let expected = "\
ts,n,s
1970-01-01T00:00:00,0,\"a,0\"
1970-01-01T00:00:01,,\"a,1\"
1970-01-01T00:00:00,0,\"a,0\"
";
        assert_eq!(out, expected);
    }

    #[test]
    fn json_lines() {
        let out = render(OutputFormat::Json, &[batch(2)]);
        let expected = "\
{\"ts\":\"1970-01-01T00:00:00\",\"n\":0,\"s\":\"a,0\"}
{\"ts\":\"1970-01-01T00:00:01\",\"s\":\"a,1\"}
";
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_results_keep_the_header() {
        let schema = batch(0).schema();
        for (format, expected) in [
            (
                OutputFormat::Table,
                "+----+---+---+\n| ts | n | s |\n+----+---+---+\n+----+---+---+\n",
            ),
            (OutputFormat::Csv, "ts,n,s\n"),
            (OutputFormat::Json, ""),
        ] {
            let mut p = Printer::new(format, Vec::new());
            p.set_schema(Arc::clone(&schema));
            let (rows, out) = p.finish().unwrap();
            assert_eq!(rows, 0);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{format:?}");
        }
    }

    #[test]
    fn tables_print_in_chunks() {
        let mut p = Printer::new(OutputFormat::Table, Vec::new());
        p.write(&batch(TABLE_CHUNK_ROWS as i64)).unwrap();
        p.write(&batch(3)).unwrap();
        let (rows, out) = p.finish().unwrap();
        assert_eq!(rows, TABLE_CHUNK_ROWS + 3);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out.matches("| ts ").count(),
            2,
            "two tables, each with a header"
        );
    }

    #[test]
    fn timing() {
        let d = std::time::Duration::from_micros(12_345);
        assert_eq!(timing_line(1, d), "1 row in 12.3 ms");
        assert_eq!(timing_line(0, d), "0 rows in 12.3 ms");
    }
}
