//! The ingest benchmark: `writers` concurrent clients send pre-encoded Arrow batches to a
//! table with Flight `DoPut` (one batch per request, acknowledged durable by default); the
//! rate is rows over wall time, the ack latency is each request's round trip.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow_flight::FlightData;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::Result;
use crate::flight::{FlightClient, encode_put};
use crate::stats::{Samples, ms};
use crate::workload::LogsGenerator;

/// One ingest run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSpec {
    pub table: String,
    pub batch_rows: usize,
    pub shards: u32,
    pub writers: usize,
    pub rows: u64,
    pub seed: u64,
}

/// What one ingest run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestResult {
    pub table: String,
    pub batch_rows: usize,
    pub shards: u32,
    pub writers: usize,
    pub rows: u64,
    pub requests: usize,
    /// Arrow IPC bytes sent.
    pub bytes: u64,
    pub secs: f64,
    pub rows_per_s: f64,
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    pub ack_max_ms: Option<f64>,
    /// How the table was made: `CREATE TABLE` (with shards) or auto-created on first write.
    pub created_by: String,
    pub error: Option<String>,
    /// Every request's ack latency.
    #[serde(skip)]
    pub acks: Samples,
}

/// Requests ready to send: each the `DoPut` messages of one batch.
#[derive(Debug)]
pub struct Prepared {
    pub requests: Vec<Vec<FlightData>>,
    pub rows: u64,
    pub bytes: u64,
}

/// Generate `rows` rows starting the workload with `seed` in batches of `batch_rows` and
/// encode each batch as a `DoPut` to `table`. Also returns the batches when `keep`.
pub async fn prepare(
    table: &str,
    seed: u64,
    rows: u64,
    batch_rows: usize,
    keep: bool,
) -> Result<(Prepared, Vec<RecordBatch>)> {
    let mut requests = Vec::new();
    let mut kept = Vec::new();
    let mut bytes = 0u64;
    for batch in LogsGenerator::new(seed, rows, batch_rows) {
        if keep {
            kept.push(batch.clone());
        }
        let data = encode_put(table, batch).await?;
        bytes += data
            .iter()
            .map(|d| (d.data_body.len() + d.data_header.len()) as u64)
            .sum::<u64>();
        requests.push(data);
    }
    Ok((
        Prepared {
            requests,
            rows,
            bytes,
        },
        kept,
    ))
}

/// SQL type of an Arrow type, for `CREATE TABLE`.
fn sql_type(t: &DataType) -> Result<&'static str> {
    Ok(match t {
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP(6)",
        DataType::Utf8 => "VARCHAR",
        DataType::UInt64 => "BIGINT UNSIGNED",
        DataType::Int64 => "BIGINT",
        DataType::Int32 => "INT",
        DataType::Float64 => "DOUBLE",
        other => return Err(format!("no SQL type for {other}").into()),
    })
}

/// `CREATE TABLE IF NOT EXISTS` for `schema`, with the `WITH (...)` options given.
pub fn create_table_sql(table: &str, schema: &Schema, options: &str) -> Result<String> {
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let null = if f.is_nullable() { "" } else { " NOT NULL" };
        cols.push(format!("{} {}{null}", f.name(), sql_type(f.data_type())?));
    }
    let with = if options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({options})")
    };
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}){with}",
        cols.join(", ")
    ))
}

/// The `WITH` options of a `logs`-shaped table with `shards` shards.
pub fn logs_table_options(shards: u32) -> String {
    format!(
        "time_column = 'ts', shard_key = 'host', num_shards = {shards}, bloom_columns = 'request_id,trace_id'"
    )
}

/// Create `table` with `sql`; if the server refuses, say so and let the first write
/// auto-create it. Returns how the table will be made.
pub async fn create_table(client: &mut FlightClient, sql: &str) -> String {
    match client.update(sql).await {
        Ok(_) => "CREATE TABLE".to_string(),
        Err(e) => match client.query(sql).await {
            Ok(_) => "CREATE TABLE".to_string(),
            Err(_) => format!(
                "auto-create (CREATE TABLE refused: {})",
                first_line(&e.to_string())
            ),
        },
    }
}

/// First line of an error message, with a gRPC status shown as `code: message`.
pub fn first_line(s: &str) -> String {
    let s = tidy_status(s);
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// `… code: 'X', message: "Y" …` (tonic's `Display` of a status) as `X: Y`.
fn tidy_status(s: &str) -> String {
    let code = s
        .split_once("code: '")
        .and_then(|(_, r)| r.split_once('\''))
        .map(|(c, _)| c);
    let msg = s
        .split_once("message: \"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(m, _)| m);
    match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        _ => s.to_string(),
    }
}

/// Send `prepared` to `url` with `spec.writers` concurrent clients; request `i` goes to
/// writer `i % writers`. Stops at the first error.
pub async fn run(url: &str, spec: &IngestSpec, prepared: Prepared) -> Result<IngestResult> {
    let writers = spec.writers.max(1);
    let requests = prepared.requests.len();
    let mut queues: Vec<Vec<Vec<FlightData>>> = (0..writers).map(|_| Vec::new()).collect();
    for (i, r) in prepared.requests.into_iter().enumerate() {
        queues[i % writers].push(r);
    }
    let mut clients = Vec::with_capacity(writers);
    for _ in 0..writers {
        clients.push(FlightClient::connect(url).await?);
    }
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for (mut client, queue) in clients.into_iter().zip(queues) {
        set.spawn(async move {
            let mut acks = Samples::new();
            for req in queue {
                let t = Instant::now();
                client.put(req).await?;
                acks.push(t.elapsed());
            }
            Ok::<Samples, crate::Error>(acks)
        });
    }
    let mut acks = Samples::new();
    let mut error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(s)) => acks.extend(&s),
            Ok(Err(e)) => {
                error.get_or_insert_with(|| first_line(&e.to_string()));
                set.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                error.get_or_insert_with(|| format!("writer task failed: {e}"));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let rows_acked = if error.is_some() {
        (acks.len() as u64 * spec.batch_rows as u64).min(prepared.rows)
    } else {
        prepared.rows
    };
    Ok(IngestResult {
        table: spec.table.clone(),
        batch_rows: spec.batch_rows,
        shards: spec.shards,
        writers,
        rows: rows_acked,
        requests,
        bytes: prepared.bytes,
        secs,
        rows_per_s: rows_acked as f64 / secs.max(1e-9),
        ack_p50_ms: acks.quantile(0.5).map(ms),
        ack_p99_ms: acks.quantile(0.99).map(ms),
        ack_max_ms: acks.quantile(1.0).map(ms),
        created_by: String::new(),
        error,
        acks,
    })
}

/// Poll `SELECT count(*)` on `table` until it reaches `rows`; how long that took, and the
/// last error of a failed poll (retried), if any.
pub async fn wait_visible(
    client: &mut FlightClient,
    table: &str,
    rows: u64,
    limit: Duration,
) -> Result<(Duration, Option<String>)> {
    let t0 = Instant::now();
    let sql = format!("SELECT count(*) AS n FROM {table}");
    let mut n = 0;
    let mut last_error = None;
    loop {
        // A query may fail while a flush commits (UNAVAILABLE, "retry"): retry as a client would.
        match client.query(&sql).await {
            Ok(batches) => n = first_count(&batches).unwrap_or(0),
            Err(e) => last_error = Some(first_line(&e.to_string())),
        }
        if n >= rows {
            return Ok((t0.elapsed(), last_error));
        }
        if t0.elapsed() > limit {
            let why = last_error.map_or(String::new(), |e| format!("; last error: {e}"));
            return Err(format!("{table}: {n} of {rows} rows visible after {limit:?}{why}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first value of the first column of a one-number answer such as `count(*)`.
pub fn first_count(batches: &[RecordBatch]) -> Option<u64> {
    use arrow::array::{Array, Int64Array, UInt64Array};
    let col = batches.iter().find(|b| b.num_rows() > 0)?.column(0);
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return (!a.is_null(0)).then(|| a.value(0).max(0) as u64);
    }
    let a = col.as_any().downcast_ref::<UInt64Array>()?;
    (!a.is_null(0)).then(|| a.value(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{logs_schema, services_schema};

    #[test]
    fn tidies_grpc_statuses() {
        let e = "Tonic error: code: 'Client specified an invalid argument', message: \"too big\", details: []";
        assert_eq!(
            first_line(e),
            "Client specified an invalid argument: too big"
        );
        assert_eq!(first_line("plain\nsecond"), "plain");
    }

    #[test]
    fn create_table_text() {
        let sql = create_table_sql("logs", &logs_schema(), &logs_table_options(4)).expect("sql");
        assert!(sql.starts_with(
            "CREATE TABLE IF NOT EXISTS logs (ts TIMESTAMP(6) NOT NULL, tenant VARCHAR NOT NULL"
        ));
        assert!(sql.contains("request_id BIGINT UNSIGNED NOT NULL"));
        assert!(sql.ends_with("num_shards = 4, bloom_columns = 'request_id,trace_id')"));
        let parsed = strata_compute::parse_statement_kind(&sql).expect("parses");
        let strata_compute::StatementKind::CreateTable(spec) = parsed else {
            panic!("not a CREATE TABLE: {parsed:?}");
        };
        let fields: Vec<_> = spec.columns.iter().map(|c| c.to_field()).collect();
        assert_eq!(Schema::new(fields), *logs_schema());
        assert_eq!(spec.num_shards, Some(4));
        let s = create_table_sql("services", &services_schema(), "").expect("sql");
        assert!(!s.contains("WITH"));
    }
}
