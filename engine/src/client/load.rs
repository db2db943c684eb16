//! `strata ingest FILE...`: load CSV (`.csv`, `.tsv`), JSON lines (`.json`, `.jsonl`,
//! `.ndjson`) or Parquet (`.parquet`) into a table through the gateway.
//!
//! * Each file is read on a blocking thread, `--batch-rows` rows at a time, two batches
//!   ahead of the network, so reading and sending overlap and memory stays bounded.
//! * CSV and JSON column types are inferred from the first `--infer-rows` rows. A column
//!   named `ts`, `time` or `timestamp` whose values are date-times (ISO 8601 / RFC 3339, as
//!   arrow parses them) is read as `Timestamp(Microsecond)`, so it becomes the table's time
//!   column. Parquet keeps its own schema.
//! * Every batch is its own Flight `DoPut` (descriptor PATH `[table]`), acknowledged before
//!   the next is sent, so an error names exactly what was and was not stored. The run is an
//!   idempotent producer: a random `x-strata-producer-id` and an `x-strata-sequence` that
//!   grows by one per `DoPut`; a retried `DoPut` (UNAVAILABLE, RESOURCE_EXHAUSTED: up to
//!   [`MAX_RETRIES`] times, waiting `retry-after-ms` when the gateway says so, else
//!   exponential backoff with jitter) is therefore applied once. Puts are strictly
//!   sequential: shard writers drop any sequence at or below the last one applied, so
//!   reordering in-flight puts could lose data.
//! * A progress bar (bytes read, rows, rows/s) is drawn on stderr when it is a terminal;
//!   the summary line goes to stdout.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::StreamExt;
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;
use tonic::{Code, Status};

use super::{MAX_MESSAGE_BYTES, bearer, connect, describe_flight_error, describe_status};
use crate::cli::IngestArgs;

/// Header naming the idempotent producer (one random id per run).
const PRODUCER_ID_HEADER: &str = "x-strata-producer-id";
/// Header with the producer's sequence number, one more for each `DoPut`.
const SEQUENCE_HEADER: &str = "x-strata-sequence";
/// Metadata the gateway sets on retryable errors.
const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Retries of one `DoPut` that failed with UNAVAILABLE or RESOURCE_EXHAUSTED.
const MAX_RETRIES: u32 = 5;
/// First backoff; doubled per retry, with jitter, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest `retry-after-ms` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Largest in-memory Arrow size of one `DoPut`; bigger batches are split. The gateway
/// refuses requests over its `max_ingest_bytes` (64 MiB by default).
const MAX_PUT_BYTES: usize = 16 * 1024 * 1024;

/// Columns that become the table's time column when they hold date-times.
const TIME_COLUMNS: [&str; 3] = ["ts", "time", "timestamp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Csv { delimiter: u8 },
    Json,
    Parquet,
}

impl FileKind {
    fn of(path: &Path) -> Result<Self, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(Self::Csv { delimiter: b',' }),
            "tsv" => Ok(Self::Csv { delimiter: b'\t' }),
            "json" | "jsonl" | "ndjson" => Ok(Self::Json),
            "parquet" | "pq" => Ok(Self::Parquet),
            _ => Err(format!(
                "{}: unknown file type; use .csv, .tsv, .json, .jsonl, .ndjson or .parquet",
                path.display()
            )),
        }
    }
}

/// The default table for a file: its name without the extension, lower-cased, with every
/// character other than a-z and 0-9 replaced by `_` (and `t_` in front of a leading digit).
fn table_name_for(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "t_");
    }
    name
}

/// One file to load.
#[derive(Debug)]
struct Job {
    path: PathBuf,
    kind: FileKind,
    table: String,
    size: u64,
}

/// Checks every file before anything is sent.
fn plan(a: &IngestArgs) -> Result<Vec<Job>, String> {
    if a.batch_rows == 0 {
        return Err("--batch-rows must be at least 1".into());
    }
    if let Some(t) = &a.table
        && t.trim().is_empty()
    {
        return Err("--table must not be empty".into());
    }
    a.files
        .iter()
        .map(|path| {
            let kind = FileKind::of(path)?;
            let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !meta.is_file() {
                return Err(format!("{}: not a file", path.display()));
            }
            Ok(Job {
                path: path.clone(),
                kind,
                table: a.table.clone().unwrap_or_else(|| table_name_for(path)),
                size: meta.len(),
            })
        })
        .collect()
}

pub(super) async fn run(a: &IngestArgs) -> Result<(), String> {
    let jobs = plan(a)?;
    let total_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    let mut uploader = Uploader::connect(&a.gateway, &a.client_tls, a.token.as_deref()).await?;
    let progress = Progress::new(total_bytes);
    let mut done = Done::default();
    for job in &jobs {
        let before = done.rows;
        if let Err(e) = load_one(&mut uploader, job, a, &progress, &mut done).await {
            progress.finish();
            let loaded = done.rows - before;
            return Err(format!(
                "{} → {}: {e} ({} of this file stored before the error, each batch is stored whole or not at all)",
                job.path.display(),
                job.table,
                output_rows(loaded),
            ));
        }
        done.bytes += job.size;
    }
    progress.finish();
    let mut tables: Vec<&str> = Vec::new();
    for j in &jobs {
        if !tables.contains(&j.table.as_str()) {
            tables.push(&j.table);
        }
    }
    println!(
        "{}",
        summary(
            done.rows,
            total_bytes,
            &tables,
            jobs.len(),
            progress.start.elapsed()
        )
    );
    Ok(())
}

fn output_rows(n: u64) -> String {
    super::output::plural(n, "row")
}

/// `loaded N rows (X MB) into T from K files in S s (R rows/s)`.
fn summary(rows: u64, bytes: u64, tables: &[&str], files: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
    format!(
        "loaded {} ({:.1} MB) into {} from {} in {secs:.2} s ({rate:.0} rows/s)",
        output_rows(rows),
        bytes as f64 / 1e6,
        tables.join(", "),
        super::output::plural(files as u64, "file"),
    )
}

/// Totals over the files done so far.
#[derive(Debug, Default)]
struct Done {
    rows: u64,
    /// Bytes of the files already loaded completely.
    bytes: u64,
}

/// A batch read from a file, and how far into the file the reader was.
struct Chunk {
    batch: RecordBatch,
    file_pos: u64,
}

async fn load_one(
    uploader: &mut Uploader,
    job: &Job,
    a: &IngestArgs,
    progress: &Progress,
    done: &mut Done,
) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk, String>>(2);
    let (path, kind, batch_rows, infer_rows) =
        (job.path.clone(), job.kind, a.batch_rows, a.infer_rows);
    // Owned below: the channel is dropped before the task is awaited, so it always ends.
    let reader =
        tokio::task::spawn_blocking(move || read_file(&path, kind, batch_rows, infer_rows, &tx));
    let sent = async {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            for piece in pieces(chunk.batch, MAX_PUT_BYTES) {
                let rows = piece.num_rows() as u64;
                uploader.put(&job.table, piece, progress).await?;
                done.rows += rows;
                progress.update(done.bytes + chunk.file_pos, done.rows);
            }
        }
        Ok::<(), String>(())
    }
    .await;
    drop(rx);
    let read = reader
        .await
        .map_err(|e| format!("the file reader failed: {e}"));
    sent.and(read)
}

/// Reads `path` batch by batch into `tx`; stops early when the receiver is gone.
fn read_file(
    path: &Path,
    kind: FileKind,
    batch_rows: usize,
    infer_rows: usize,
    tx: &tokio::sync::mpsc::Sender<Result<Chunk, String>>,
) {
    let mut source = match open(path, kind, batch_rows, infer_rows) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    for next in source.batches.by_ref() {
        let item = match next {
            Ok(batch) => Ok(Chunk {
                file_pos: (source.position)(&batch),
                batch,
            }),
            Err(e) => Err(read_error(&e, kind, infer_rows)),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

fn read_error(e: &ArrowError, kind: FileKind, infer_rows: usize) -> String {
    match (kind, e) {
        (
            FileKind::Csv { .. } | FileKind::Json,
            ArrowError::ParseError(_) | ArrowError::CsvError(_) | ArrowError::JsonError(_),
        ) => {
            format!(
                "{e} (column types were inferred from the first {infer_rows} rows; raise --infer-rows)"
            )
        }
        _ => e.to_string(),
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// A file's batches, and how many bytes of the file are consumed after a batch.
struct Source {
    batches: Batches,
    position: Box<dyn FnMut(&RecordBatch) -> u64 + Send>,
}

fn open(
    path: &Path,
    kind: FileKind,
    batch_rows: usize,
    infer_rows: usize,
) -> Result<Source, String> {
    let infer_rows = infer_rows.max(1);
    match kind {
        FileKind::Csv { delimiter } => {
            let mut file = File::open(path).map_err(|e| e.to_string())?;
            let schema = csv_schema(&mut file, delimiter, infer_rows)?;
            file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            let (reader, read) = Counting::new(file);
            let batches = arrow::csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_delimiter(delimiter)
                .with_batch_size(batch_rows)
                .build(reader)
                .map_err(|e| e.to_string())?;
            Ok(Source {
                batches: Box::new(batches),
                position: Box::new(move |_| read.load(Ordering::Relaxed)),
            })
        }
        FileKind::Json => {
            let mut file = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
            let schema = json_schema(&mut file, infer_rows)?;
            let file = file.into_inner();
            let (reader, read) = Counting::new(file);
            let batches = arrow::json::ReaderBuilder::new(schema)
                .with_batch_size(batch_rows)
                .with_strict_mode(true)
                .build(BufReader::new(reader))
                .map_err(|e| e.to_string())?;
            Ok(Source {
                batches: Box::new(batches),
                position: Box::new(move |_| read.load(Ordering::Relaxed)),
            })
        }
        FileKind::Parquet => {
            let file = File::open(path).map_err(|e| e.to_string())?;
            let size = file.metadata().map_err(|e| e.to_string())?.len();
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| format!("not a Parquet file: {e}"))?;
            let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows())
                .unwrap_or(0)
                .max(1);
            let batches = builder
                .with_batch_size(batch_rows)
                .build()
                .map_err(|e| e.to_string())?;
            let mut seen = 0u64;
            Ok(Source {
                batches: Box::new(batches),
                position: Box::new(move |b| {
                    seen += b.num_rows() as u64;
                    u64::try_from(
                        u128::from(size) * u128::from(seen.min(total_rows))
                            / u128::from(total_rows),
                    )
                    .unwrap_or(size)
                }),
            })
        }
    }
}

/// The schema of a CSV file with a header row, from its first `infer_rows` rows, with the
/// time column rule applied. Leaves `file` anywhere.
fn csv_schema<R: Read + Seek>(
    file: &mut R,
    delimiter: u8,
    infer_rows: usize,
) -> Result<SchemaRef, String> {
    let format = arrow::csv::reader::Format::default()
        .with_header(true)
        .with_delimiter(delimiter);
    let (schema, _) = format
        .infer_schema(&mut *file, Some(infer_rows))
        .map_err(|e| format!("cannot infer the columns: {e}"))?;
    let schema = Arc::new(schema);
    if !has_text_time_column(&schema) {
        return Ok(time_columns(&schema, None));
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let sample = arrow::csv::ReaderBuilder::new(Arc::clone(&schema))
        .with_header(true)
        .with_delimiter(delimiter)
        .with_batch_size(infer_rows)
        .build(&mut *file)
        .map_err(|e| e.to_string())?
        .next()
        .transpose()
        .map_err(|e| format!("cannot read the first rows: {e}"))?;
    Ok(time_columns(&schema, sample.as_ref()))
}

/// The schema of a JSON lines file from its first `infer_rows` lines, with the time column
/// rule applied. Leaves `file` at its start.
fn json_schema<R: std::io::BufRead + Seek>(
    file: &mut R,
    infer_rows: usize,
) -> Result<SchemaRef, String> {
    let (schema, _) =
        arrow::json::reader::infer_json_schema_from_seekable(&mut *file, Some(infer_rows))
            .map_err(|e| format!("cannot infer the columns: {e}"))?;
    let schema = Arc::new(schema);
    if !has_text_time_column(&schema) {
        return Ok(time_columns(&schema, None));
    }
    let sample = arrow::json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(infer_rows)
        .build(&mut *file)
        .map_err(|e| e.to_string())?
        .next()
        .transpose()
        .map_err(|e| format!("cannot read the first rows: {e}"))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    Ok(time_columns(&schema, sample.as_ref()))
}

fn is_time_name(name: &str) -> bool {
    TIME_COLUMNS.contains(&name)
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn has_text_time_column(schema: &Schema) -> bool {
    schema
        .fields()
        .iter()
        .any(|f| is_time_name(f.name()) && is_text(f.data_type()))
}

/// Applies the time column rule: a column named `ts`, `time` or `timestamp` becomes
/// `Timestamp(Microsecond)` when it was inferred as a date or date-time, or when it is text
/// and every value of `sample` parses as a date-time. Other columns are kept.
fn time_columns(schema: &Schema, sample: Option<&RecordBatch>) -> SchemaRef {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let fields: Fields = schema
        .fields()
        .iter()
        .map(|f| -> FieldRef {
            if !is_time_name(f.name()) {
                return Arc::clone(f);
            }
            let convert = match f.data_type() {
                DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64 => true,
                t if is_text(t) => {
                    sample
                        .and_then(|b| b.column_by_name(f.name()))
                        .is_some_and(|col| {
                            col.null_count() < col.len()
                                && arrow::compute::cast_with_options(
                                    col,
                                    &micros,
                                    &CastOptions {
                                        safe: false,
                                        ..Default::default()
                                    },
                                )
                                .is_ok()
                        })
                }
                _ => false,
            };
            if convert {
                Arc::new(Field::new(f.name(), micros.clone(), true))
            } else {
                Arc::clone(f)
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Counting<R> {
    fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                read: Arc::clone(&read),
            },
            read,
        )
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// `batch` cut into slices of at most about `max_bytes` of Arrow memory each.
fn pieces(batch: RecordBatch, max_bytes: usize) -> Vec<RecordBatch> {
    let rows = batch.num_rows();
    let size = batch.get_array_memory_size();
    if rows == 0 {
        return Vec::new();
    }
    if size <= max_bytes || rows == 1 {
        return vec![batch];
    }
    let per = usize::try_from(rows as u128 * max_bytes as u128 / size as u128)
        .unwrap_or(rows)
        .max(1);
    (0..rows)
        .step_by(per)
        .map(|o| batch.slice(o, per.min(rows - o)))
        .collect()
}

/// The JSON in a `PutResult`'s `app_metadata`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
struct Ack {
    #[serde(default)]
    rows: Option<u64>,
    #[serde(default)]
    duplicate: bool,
}

fn parse_ack(metadata: &[u8]) -> Result<Ack, String> {
    if metadata.is_empty() {
        return Ok(Ack::default());
    }
    serde_json::from_slice(metadata).map_err(|e| {
        format!(
            "Internal: cannot read the gateway's acknowledgement {:?}: {e}",
            String::from_utf8_lossy(&metadata[..metadata.len().min(200)])
        )
    })
}

/// Sends batches as one idempotent producer.
struct Uploader {
    client: FlightClient,
    sequence: u64,
}

impl Uploader {
    async fn connect(
        gateway: &str,
        tls: &crate::cli::ClientTlsArgs,
        token: Option<&str>,
    ) -> Result<Self, String> {
        let channel = connect(gateway, tls).await?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut client = FlightClient::new_from_inner(inner);
        let header_error = |e: FlightError| format!("invalid header: {e}");
        if let Some(value) = bearer(token) {
            client
                .add_header("authorization", &value)
                .map_err(header_error)?;
        }
        let producer = uuid::Uuid::new_v4().to_string();
        client
            .add_header(PRODUCER_ID_HEADER, &producer)
            .map_err(header_error)?;
        Ok(Self {
            client,
            sequence: 0,
        })
    }

    /// One acknowledged `DoPut` of `batch`, retried with the same sequence number.
    async fn put(
        &mut self,
        table: &str,
        batch: RecordBatch,
        progress: &Progress,
    ) -> Result<Ack, String> {
        self.sequence += 1;
        self.client
            .add_header(SEQUENCE_HEADER, &self.sequence.to_string())
            .map_err(|e| format!("invalid header: {e}"))?;
        let mut retries = 0;
        loop {
            let err = match self.put_once(table, batch.clone()).await {
                Ok(ack) => return Ok(ack),
                Err(e) => e,
            };
            let status = match &err {
                FlightError::Tonic(s) => Some(s.as_ref()),
                _ => None,
            };
            match status {
                Some(s) if is_retryable(s.code()) && retries < MAX_RETRIES => {
                    let wait = retry_delay(retries, retry_after(s), rand::random::<f64>());
                    retries += 1;
                    progress.note(&format!(
                        "{}; retry {retries} of {MAX_RETRIES} in {} ms",
                        describe_status(s),
                        wait.as_millis()
                    ));
                    tokio::time::sleep(wait).await;
                }
                _ if retries > 0 => {
                    return Err(format!(
                        "{} (after {retries} retries)",
                        describe_flight_error(&err)
                    ));
                }
                _ => return Err(describe_flight_error(&err)),
            }
        }
    }

    async fn put_once(&mut self, table: &str, batch: RecordBatch) -> Result<Ack, FlightError> {
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![table.to_string()])))
            .build(futures::stream::iter([Ok(batch)]));
        let mut results = self.client.do_put(data).await?;
        let mut ack = None;
        while let Some(result) = results.next().await {
            let result = result?;
            if ack.is_none() && !result.app_metadata.is_empty() {
                ack = Some(parse_ack(&result.app_metadata).map_err(FlightError::ProtocolError)?);
            }
        }
        Ok(ack.unwrap_or_default())
    }
}

fn is_retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::ResourceExhausted)
}

/// The gateway's `retry-after-ms` hint.
fn retry_after(s: &Status) -> Option<Duration> {
    let ms = s
        .metadata()
        .get(RETRY_AFTER_MS)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(ms).min(MAX_RETRY_AFTER))
}

/// How long to wait before retry number `retries` (0-based): the server's hint if it gave
/// one, else exponential backoff with "equal jitter" (`jitter` in [0, 1)).
fn retry_delay(retries: u32, hint: Option<Duration>, jitter: f64) -> Duration {
    if let Some(h) = hint {
        return h;
    }
    let full = BASE_BACKOFF
        .saturating_mul(1 << retries.min(16))
        .min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// The progress bar on stderr (only when it is a terminal), and the run's clock.
struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    fn new(total_bytes: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            start: Instant::now(),
        }
    }

    fn update(&self, bytes: u64, rows: u64) {
        if let Some(bar) = &self.bar {
            let secs = self.start.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                (rows as f64 / secs) as u64
            } else {
                0
            };
            bar.set_position(bytes);
            bar.set_message(format!(
                "{} rows, {} rows/s",
                HumanCount(rows),
                HumanCount(rate)
            ));
        }
    }

    /// A line above the bar (or on stderr without one).
    fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
