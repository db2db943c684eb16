//! OTLP log records → one Arrow batch with typed columns.
//!
//! Each record becomes one row of [`LOG_COLUMNS`]. A record that cannot be stored as it is
//! (a trace id that is not 16 bytes, a span id that is not 8, a time past the year 2262,
//! values nested deeper than [`MAX_DEPTH`]) is left out and counted, with the first reason,
//! so the rest of the request is still stored (OTLP partial success).
//!
//! Attributes go to JSON text columns (`resource_attributes`, `scope_attributes`,
//! `attributes`). An attribute is *promoted* to its own column when the table has a column
//! named after it (the key lower-cased, every character other than `a-z`, `0-9` and `_`
//! turned into `_`: `http.method` → `http_method`) of type string, BIGINT, DOUBLE or
//! BOOLEAN and the value fits that type; the record's own attribute wins over the
//! resource's. A promoted attribute is not repeated in the JSON text.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use serde_json::{Map, Value as Json};

/// Deepest nesting of arrays and maps in a body or attribute value.
pub const MAX_DEPTH: usize = 32;

/// The columns every OTLP log table has, in order: (name, type, nullable).
pub const LOG_COLUMNS: [(&str, LogColumn); 14] = [
    ("timestamp", LogColumn::Time),
    ("observed_timestamp", LogColumn::Time),
    ("severity_number", LogColumn::Int32),
    ("severity_text", LogColumn::Text),
    ("body", LogColumn::Text),
    ("trace_id", LogColumn::Text),
    ("span_id", LogColumn::Text),
    ("trace_flags", LogColumn::Int64),
    ("event_name", LogColumn::Text),
    ("service_name", LogColumn::Text),
    ("scope_name", LogColumn::Text),
    ("scope_version", LogColumn::Text),
    ("resource_attributes", LogColumn::Text),
    ("scope_attributes", LogColumn::Text),
];

/// The record attributes' column; last, after [`LOG_COLUMNS`].
pub const ATTRIBUTES_COLUMN: &str = "attributes";

/// The type of a fixed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogColumn {
    Time,
    Int32,
    Int64,
    Text,
}

impl LogColumn {
    fn data_type(self) -> DataType {
        match self {
            LogColumn::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            LogColumn::Int32 => DataType::Int32,
            LogColumn::Int64 => DataType::Int64,
            LogColumn::Text => DataType::Utf8,
        }
    }
}

/// True for the columns this module always fills (they are never promotion targets).
pub fn is_log_column(name: &str) -> bool {
    name == ATTRIBUTES_COLUMN || LOG_COLUMNS.iter().any(|(n, _)| *n == name)
}

/// The column an attribute key is promoted to, when the table has it.
pub fn column_for_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A column of the table that attributes may be promoted to.
#[derive(Debug, Clone, PartialEq)]
pub struct Promoted {
    pub name: String,
    pub kind: PromotedKind,
}

/// The value types a promoted column takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotedKind {
    Text,
    Int64,
    Float64,
    Boolean,
}

impl PromotedKind {
    /// The kind for a table column's type, or `None` when attributes cannot fill it.
    pub fn of(t: &DataType) -> Option<Self> {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Self::Text),
            DataType::Int64 => Some(Self::Int64),
            DataType::Float64 => Some(Self::Float64),
            DataType::Boolean => Some(Self::Boolean),
            _ => None,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Self::Text => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
        }
    }

    /// Whether `v` can be stored in a column of this kind (strings hold anything, as JSON
    /// text when not a string; numbers widen from integers; nothing else converts).
    fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (Self::Text, _)
                | (Self::Int64, Value::IntValue(_))
                | (Self::Float64, Value::IntValue(_) | Value::DoubleValue(_))
                | (Self::Boolean, Value::BoolValue(_))
        )
    }
}

/// The schema of a log table: [`LOG_COLUMNS`], `attributes`, then the promoted columns.
pub fn logs_schema(promoted: &[Promoted]) -> SchemaRef {
    let mut fields: Vec<Field> = LOG_COLUMNS
        .iter()
        .map(|(name, t)| Field::new(*name, t.data_type(), *name != "timestamp"))
        .collect();
    fields.push(Field::new(ATTRIBUTES_COLUMN, DataType::Utf8, true));
    fields.extend(
        promoted
            .iter()
            .map(|p| Field::new(&p.name, p.kind.data_type(), true)),
    );
    Arc::new(Schema::new(fields))
}

/// What a request turned into.
#[derive(Debug, Default)]
pub struct Converted {
    /// The stored rows; `None` when no record was accepted.
    pub batch: Option<RecordBatch>,
    /// Records left out.
    pub rejected: u64,
    /// Why the first left-out record was refused (with its position in the request).
    pub first_error: Option<String>,
}

/// Converts every record of `request`. `now_ns` is the time used for a record with neither
/// a time nor an observed time.
pub fn convert(
    request: &ExportLogsServiceRequest,
    promoted: &[Promoted],
    now_ns: i64,
) -> Result<Converted, ArrowError> {
    let records: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let mut b = Builders::new(records, promoted);
    let mut out = Converted::default();
    let mut position = 0usize;
    for resource_logs in &request.resource_logs {
        let resource_attrs: &[KeyValue] = resource_logs
            .resource
            .as_ref()
            .map_or(&[], |r| &r.attributes);
        let service = resource_attrs
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(text_of);
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            let scope_attrs = scope.map_or(&[][..], |s| &s.attributes[..]);
            let scope_json = attributes_json(scope_attrs, &[]);
            for record in &scope_logs.log_records {
                let here = position;
                position += 1;
                let row = match check(record, resource_attrs, scope_attrs) {
                    Ok(row) => row,
                    Err(why) => {
                        out.rejected += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("log record {here}: {why}"));
                        continue;
                    }
                };
                b.time.append_value(match row.time {
                    Some(t) => t,
                    None => row.observed.unwrap_or(now_ns),
                });
                b.observed.append_option(row.observed);
                b.severity_number
                    .append_option((record.severity_number != 0).then_some(record.severity_number));
                b.severity_text
                    .append_option(non_empty(&record.severity_text));
                b.body.append_option(
                    record
                        .body
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map(text_of),
                );
                b.trace_id.append_option(hex_id(&record.trace_id));
                b.span_id.append_option(hex_id(&record.span_id));
                b.trace_flags
                    .append_option((record.flags != 0).then_some(i64::from(record.flags)));
                b.event_name.append_option(non_empty(&record.event_name));
                b.service.append_option(service.as_deref());
                b.scope_name
                    .append_option(scope.and_then(|s| non_empty(&s.name)));
                b.scope_version
                    .append_option(scope.and_then(|s| non_empty(&s.version)));
                // Promoted values, looked up once per record: its own attribute, else the
                // resource's.
                // taken[0]: keys promoted from the record, taken[1]: from the resource.
                let mut taken: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
                for (column, p) in b.promoted.iter_mut().zip(promoted) {
                    let found = [&record.attributes[..], resource_attrs]
                        .into_iter()
                        .enumerate()
                        .find_map(|(from, attrs)| {
                            let kv = attrs
                                .iter()
                                .rev()
                                .find(|kv| column_for_key(&kv.key) == p.name)?;
                            Some((from, kv))
                        })
                        .and_then(|(from, kv)| Some((from, kv, kv.value.as_ref()?.value.as_ref()?)))
                        .filter(|(_, _, v)| p.kind.accepts(v));
                    match found {
                        Some((from, kv, v)) => {
                            column.append(v);
                            taken[from].push(&kv.key);
                        }
                        None => column.append_null(),
                    }
                }
                b.resource_attrs
                    .append_option(attributes_json(resource_attrs, &taken[1]));
                b.scope_attrs.append_option(scope_json.as_deref());
                b.attrs
                    .append_option(attributes_json(&record.attributes, &taken[0]));
            }
        }
    }
    if out.rejected < records as u64 {
        out.batch = Some(b.finish(promoted)?);
    }
    Ok(out)
}

/// The parts of a record that need checking.
struct Checked {
    time: Option<i64>,
    observed: Option<i64>,
}

fn check(
    record: &opentelemetry_proto::tonic::logs::v1::LogRecord,
    resource: &[KeyValue],
    scope: &[KeyValue],
) -> Result<Checked, String> {
    let nanos = |v: u64, what: &str| -> Result<Option<i64>, String> {
        if v == 0 {
            return Ok(None);
        }
        i64::try_from(v)
            .map(Some)
            .map_err(|_| format!("{what} {v} is past the year 2262"))
    };
    if !matches!(record.trace_id.len(), 0 | 16) {
        return Err(format!(
            "trace_id has {} bytes; a trace id has 16",
            record.trace_id.len()
        ));
    }
    if !matches!(record.span_id.len(), 0 | 8) {
        return Err(format!(
            "span_id has {} bytes; a span id has 8",
            record.span_id.len()
        ));
    }
    let too_deep = record
        .body
        .iter()
        .chain(
            [&record.attributes[..], resource, scope]
                .into_iter()
                .flatten()
                .filter_map(|kv| kv.value.as_ref()),
        )
        .any(|v| depth(v) > MAX_DEPTH);
    if too_deep {
        return Err(format!(
            "a value is nested deeper than {MAX_DEPTH} levels of arrays and maps"
        ));
    }
    Ok(Checked {
        time: nanos(record.time_unix_nano, "time_unix_nano")?,
        observed: nanos(record.observed_time_unix_nano, "observed_time_unix_nano")?,
    })
}

/// Levels of arrays and maps in `v` (a scalar is 0), counted without recursion.
fn depth(v: &AnyValue) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        if d > MAX_DEPTH {
            break;
        }
        match &v.value {
            Some(Value::ArrayValue(a)) => stack.extend(a.values.iter().map(|x| (x, d + 1))),
            Some(Value::KvlistValue(m)) => stack.extend(
                m.values
                    .iter()
                    .filter_map(|kv| kv.value.as_ref())
                    .map(|x| (x, d + 1)),
            ),
            _ => {}
        }
    }
    deepest
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Lower-case hex of a trace or span id; `None` when absent or all zero (invalid per spec).
fn hex_id(id: &[u8]) -> Option<String> {
    if id.is_empty() || id.iter().all(|b| *b == 0) {
        return None;
    }
    let mut s = String::with_capacity(id.len() * 2);
    for b in id {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    Some(s)
}

/// A value as text: strings as they are, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        other => json_of(other).to_string(),
    }
}

/// A value as JSON: bytes as base64 (as OTLP/JSON writes them), non-finite doubles as
/// strings (`"NaN"`, `"inf"`), maps as objects (a repeated key keeps its last value).
fn json_of(v: &Value) -> Json {
    match v {
        Value::StringValue(s) => Json::String(s.clone()),
        Value::BoolValue(b) => Json::Bool(*b),
        Value::IntValue(i) => Json::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Json::String(d.to_string()), Json::Number),
        Value::BytesValue(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::ArrayValue(a) => Json::Array(a.values.iter().map(any_json).collect()),
        Value::KvlistValue(m) => Json::Object(kv_map(&m.values, &[])),
        // An index into a profile's string table; log records have none to resolve it in.
        Value::StringValueStrindex(_) => Json::Null,
    }
}

fn any_json(v: &AnyValue) -> Json {
    v.value.as_ref().map_or(Json::Null, json_of)
}

fn kv_map(kvs: &[KeyValue], skip: &[&str]) -> Map<String, Json> {
    kvs.iter()
        .filter(|kv| !skip.contains(&kv.key.as_str()))
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Json::Null, any_json),
            )
        })
        .collect()
}

/// Attributes as a JSON object, without the keys in `skip`; `None` when none are left.
fn attributes_json(kvs: &[KeyValue], skip: &[&str]) -> Option<String> {
    let map = kv_map(kvs, skip);
    (!map.is_empty()).then(|| Json::Object(map).to_string())
}

/// A promoted column being built.
enum PromotedBuilder {
    Text(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
}

impl PromotedBuilder {
    fn new(kind: PromotedKind, rows: usize) -> Self {
        match kind {
            PromotedKind::Text => Self::Text(StringBuilder::with_capacity(rows, rows * 8)),
            PromotedKind::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            PromotedKind::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            PromotedKind::Boolean => Self::Boolean(BooleanBuilder::with_capacity(rows)),
        }
    }

    /// Appends `v`, which the column's kind accepts.
    fn append(&mut self, v: &Value) {
        match (self, v) {
            (Self::Text(b), v) => b.append_value(text_of(v)),
            (Self::Int64(b), Value::IntValue(i)) => b.append_value(*i),
            (Self::Float64(b), Value::DoubleValue(d)) => b.append_value(*d),
            (Self::Float64(b), Value::IntValue(i)) => b.append_value(*i as f64),
            (Self::Boolean(b), Value::BoolValue(x)) => b.append_value(*x),
            (other, _) => other.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Text(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

struct Builders {
    time: TimestampNanosecondBuilder,
    observed: TimestampNanosecondBuilder,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: StringBuilder,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    trace_flags: Int64Builder,
    event_name: StringBuilder,
    service: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    resource_attrs: StringBuilder,
    scope_attrs: StringBuilder,
    attrs: StringBuilder,
    promoted: Vec<PromotedBuilder>,
}

impl Builders {
    fn new(rows: usize, promoted: &[Promoted]) -> Self {
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        Self {
            time: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            observed: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            severity_number: Int32Builder::with_capacity(rows),
            severity_text: text(5),
            body: text(64),
            trace_id: text(32),
            span_id: text(16),
            trace_flags: Int64Builder::with_capacity(rows),
            event_name: text(0),
            service: text(8),
            scope_name: text(8),
            scope_version: text(4),
            resource_attrs: text(64),
            scope_attrs: text(0),
            attrs: text(64),
            promoted: promoted
                .iter()
                .map(|p| PromotedBuilder::new(p.kind, rows))
                .collect(),
        }
    }

    fn finish(mut self, promoted: &[Promoted]) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.observed.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.trace_flags.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.resource_attrs.finish()),
            Arc::new(self.scope_attrs.finish()),
            Arc::new(self.attrs.finish()),
        ];
        columns.extend(self.promoted.iter_mut().map(PromotedBuilder::finish));
        RecordBatch::try_new(logs_schema(promoted), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn string(s: &str) -> Value {
        Value::StringValue(s.into())
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", string("checkout")),
                        kv("host.name", string("h1")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.logger".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn record(t: u64, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: t,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(string(body)),
            }),
            trace_id: (1..=16).collect(),
            span_id: vec![0xab; 8],
            flags: 1,
            attributes: vec![
                kv("http.status_code", Value::IntValue(500)),
                kv("http.method", string("GET")),
            ],
            ..Default::default()
        }
    }

    fn text(b: &RecordBatch, column: &str, row: usize) -> Option<String> {
        let a = b.column_by_name(column).unwrap().as_string::<i32>();
        a.is_valid(row).then(|| a.value(row).to_string())
    }

    #[test]
    fn records_become_typed_rows() {
        let out = convert(&request(vec![record(5, "disk full")]), &[], 99).unwrap();
        assert_eq!(out.rejected, 0);
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 1);
        let ts = b.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(0), 5);
        assert!(b.column(1).is_null(0), "no observed time");
        assert_eq!(b.column(2).as_primitive::<Int32Type>().value(0), 17);
        assert_eq!(text(&b, "body", 0).as_deref(), Some("disk full"));
        assert_eq!(
            text(&b, "trace_id", 0).as_deref(),
            Some("0102030405060708090a0b0c0d0e0f10")
        );
        assert_eq!(text(&b, "span_id", 0).as_deref(), Some("abababababababab"));
        assert_eq!(b.column(7).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(text(&b, "service_name", 0).as_deref(), Some("checkout"));
        assert_eq!(text(&b, "scope_name", 0).as_deref(), Some("app.logger"));
        assert_eq!(text(&b, "scope_version", 0).as_deref(), Some("1.2"));
        assert_eq!(text(&b, "scope_attributes", 0), None);
        assert_eq!(
            text(&b, "attributes", 0).as_deref(),
            Some(r#"{"http.method":"GET","http.status_code":500}"#)
        );
        assert_eq!(
            text(&b, "resource_attributes", 0).as_deref(),
            Some(r#"{"host.name":"h1","service.name":"checkout"}"#)
        );
    }

    #[test]
    fn missing_times_fall_back_to_observed_then_now() {
        let mut observed = record(0, "a");
        observed.observed_time_unix_nano = 7;
        let none = record(0, "b");
        let b = convert(&request(vec![observed, none]), &[], 99)
            .unwrap()
            .batch
            .unwrap();
        let ts = b.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!((ts.value(0), ts.value(1)), (7, 99));
    }

    #[test]
    fn bad_records_are_left_out_with_the_first_reason() {
        let mut short_trace = record(1, "a");
        short_trace.trace_id = vec![1, 2, 3];
        let mut far_future = record(u64::MAX, "b");
        far_future.span_id.clear();
        let mut deep = AnyValue {
            value: Some(string("x")),
        };
        for _ in 0..=MAX_DEPTH {
            deep = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![deep] })),
            };
        }
        let mut nested = record(3, "c");
        nested.body = Some(deep);
        let good = record(4, "d");
        let out = convert(
            &request(vec![short_trace, far_future, nested, good]),
            &[],
            0,
        )
        .unwrap();
        assert_eq!(out.rejected, 3);
        let first = out.first_error.unwrap();
        assert!(
            first.contains("log record 0") && first.contains("16"),
            "{first}"
        );
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(text(&b, "body", 0).as_deref(), Some("d"));
        // Every record bad: nothing to store.
        let mut bad = record(1, "a");
        bad.span_id = vec![1];
        let out = convert(&request(vec![bad]), &[], 0).unwrap();
        assert!(out.batch.is_none() && out.rejected == 1);
        assert!(out.first_error.unwrap().contains("span_id has 1 bytes"));
    }

    #[test]
    fn structured_bodies_and_values_are_json() {
        let mut r = record(1, "");
        r.body = Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("n", Value::IntValue(i64::MAX)),
                    kv("b", Value::BytesValue(vec![0xff, 0])),
                    kv("d", Value::DoubleValue(f64::NAN)),
                ],
            })),
        });
        r.trace_id = vec![0; 16];
        let b = convert(&request(vec![r]), &[], 0).unwrap().batch.unwrap();
        assert_eq!(
            text(&b, "body", 0).as_deref(),
            Some(r#"{"b":"/wA=","d":"NaN","n":9223372036854775807}"#)
        );
        assert_eq!(text(&b, "trace_id", 0), None, "all-zero ids are absent");
    }

    #[test]
    fn attributes_are_promoted_to_matching_columns() {
        let promoted = [
            Promoted {
                name: "http_status_code".into(),
                kind: PromotedKind::Int64,
            },
            Promoted {
                name: "http_method".into(),
                kind: PromotedKind::Boolean, // a string does not fit: stays in the JSON
            },
            Promoted {
                name: "host_name".into(),
                kind: PromotedKind::Text, // from the resource
            },
        ];
        let b = convert(&request(vec![record(1, "x")]), &promoted, 0)
            .unwrap()
            .batch
            .unwrap();
        assert_eq!(
            b.column_by_name("http_status_code")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            500
        );
        assert!(b.column_by_name("http_method").unwrap().is_null(0));
        assert_eq!(text(&b, "host_name", 0).as_deref(), Some("h1"));
        assert_eq!(
            text(&b, "attributes", 0).as_deref(),
            Some(r#"{"http.method":"GET"}"#)
        );
        assert_eq!(
            text(&b, "resource_attributes", 0).as_deref(),
            Some(r#"{"service.name":"checkout"}"#)
        );
        assert_eq!(column_for_key("http.Method-x"), "http_method_x");
    }
}
