//! The deterministic `logs` workload of the brief, and its `services` dimension table.
//!
//! [`LogsGenerator`] yields Arrow record batches of at most `batch_rows` rows, so memory stays
//! bounded whatever the total. The same `(seed, total_rows)` always yields the same rows, in
//! the same batches for the same `batch_rows` (randomness comes from one seeded `StdRng`).
//!
//! # The `logs` table
//! | column | type | values |
//! |---|---|---|
//! | `ts` | Timestamp(µs), no time zone | strictly increasing over one day, 2025-01-01 UTC ([`DAY_START_US`]) |
//! | `tenant` | Utf8 | `tenant-000` … `tenant-099`, Zipf (s = 1): `tenant-000` ≈ 19 % of rows |
//! | `service` | Utf8 | `svc-000` … `svc-199`; a host always runs the same service (`host % 200`) |
//! | `host` | Utf8 | `host-00000` … `host-09999`, uniform |
//! | `level` | Utf8 | INFO 80 %, WARN 10 %, DEBUG 5 %, ERROR 4.9 %, FATAL 0.1 % |
//! | `request_id` | UInt64 | unique: a bijective mix of the row number and the seed ([`request_id_of`]) |
//! | `trace_id` | Utf8, 32 lower-case hex digits | 16 random bytes per trace, about 5 rows per trace |
//! | `user_id` | UInt64 | 1 … 1,000,000, Zipf (s = 1) |
//! | `path` | Utf8 | 1,000 values such as `/api/orders/042`, uniform |
//! | `status` | Int32 | 200 (≈ 91 %), 404, 201, 500 (every ERROR/FATAL is 500 or 503) |
//! | `latency_ms` | Float64 | log-normal, median 25 ms, σ = 0.9 (timeouts: 30 s and more) |
//! | `bytes` | Int64 | log-normal, median 2,000 |
//! | `message` | Utf8 | ≈ 120 bytes from templates; `timeout` in 1 % of rows, [`RARE_TOKEN`] in 0.01 % |
//!
//! `trace_id` is hex text rather than `FixedSizeBinary(16)`: every engine compared (DataFusion,
//! DuckDB, Polars, and Strata's SQL) can then filter it with the same plain string literal.
//!
//! Traces are interleaved: a pool of [`OPEN_TRACES`] traces is open at any time; each row joins
//! one of them at random, and a trace closes after a uniform 1..=9 rows (mean 5), so the rows of
//! one trace lie within a few dozen rows (milliseconds) of each other.
//!
//! # The `services` table
//! `service` (Utf8), `team` (Utf8, `team-00` … `team-19`), `tier` (Utf8, `gold`/`silver`/`bronze`),
//! one row per service.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dist::{LogNormal, Zipf};

/// 2025-01-01T00:00:00Z in microseconds: the first instant of the generated day.
pub const DAY_START_US: i64 = 1_735_689_600_000_000;
/// One day in microseconds.
pub const DAY_US: i64 = 86_400_000_000;
/// Distinct tenants.
pub const TENANTS: usize = 100;
/// Distinct services.
pub const SERVICES: usize = 200;
/// Distinct hosts.
pub const HOSTS: usize = 10_000;
/// Distinct users.
pub const USERS: usize = 1_000_000;
/// Distinct request paths.
pub const PATHS: usize = 1_000;
/// Distinct teams owning services.
pub const TEAMS: usize = 20;
/// Traces open at once (see the module docs).
pub const OPEN_TRACES: usize = 8;
/// The token found in 0.01 % of messages (and nowhere else).
pub const RARE_TOKEN: &str = "xyzzy";
/// The word found in 1 % of messages (and nowhere else).
pub const TIMEOUT_TOKEN: &str = "timeout";
/// Probability of a `timeout` message.
pub const TIMEOUT_P: f64 = 0.01;
/// Probability of a message carrying [`RARE_TOKEN`].
pub const RARE_P: f64 = 0.0001;
/// Log levels and their probabilities.
pub const LEVELS: [(&str, f64); 5] = [
    ("INFO", 0.80),
    ("WARN", 0.10),
    ("DEBUG", 0.05),
    ("ERROR", 0.049),
    ("FATAL", 0.001),
];
/// Service tiers, by `service % 3`.
pub const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

const RESOURCES: [&str; 10] = [
    "users",
    "orders",
    "items",
    "carts",
    "payments",
    "search",
    "auth",
    "inventory",
    "reviews",
    "shipping",
];

/// Names of tenants, services, hosts and paths, built once per process.
struct Names {
    tenants: Vec<String>,
    services: Vec<String>,
    hosts: Vec<String>,
    paths: Vec<String>,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| Names {
        tenants: (0..TENANTS).map(tenant_name).collect(),
        services: (0..SERVICES).map(service_name).collect(),
        hosts: (0..HOSTS).map(host_name).collect(),
        paths: (0..PATHS).map(path_name).collect(),
    })
}

/// Name of tenant rank `i` (`tenant-000` is the most frequent).
pub fn tenant_name(i: usize) -> String {
    format!("tenant-{i:03}")
}

/// Name of service `i`.
pub fn service_name(i: usize) -> String {
    format!("svc-{i:03}")
}

/// Name of host `i`.
pub fn host_name(i: usize) -> String {
    format!("host-{i:05}")
}

/// Path `i`.
pub fn path_name(i: usize) -> String {
    format!(
        "/api/{}/{:03}",
        RESOURCES[i % RESOURCES.len()],
        i / RESOURCES.len()
    )
}

/// The splitmix64 finaliser: a bijection on `u64` that scatters nearby inputs.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `request_id` of row `row` (0-based) of the workload with `seed`. Unique per row:
/// xor with a constant and [`mix64`] are both bijections.
pub fn request_id_of(seed: u64, row: u64) -> u64 {
    mix64(row ^ mix64(seed ^ 0x5151_5151))
}

/// The `trace_id` (32 hex digits) of the `n`-th trace (0-based) started by the workload.
pub fn trace_id_of(seed: u64, n: u64) -> String {
    let mut out = String::with_capacity(32);
    push_trace_hex(&mut out, seed, n);
    out
}

fn push_trace_hex(out: &mut String, seed: u64, n: u64) {
    let hi = mix64(n ^ mix64(seed ^ 0x7472_6163_6531));
    let lo = mix64(n.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix64(seed ^ 0x7472_6163_6532));
    let _ = write!(out, "{hi:016x}{lo:016x}");
}

/// The `ts` of row `row` out of `total` rows (without its jitter): rows spread evenly over the
/// day, so the jittered value of row `row` lies in `[slot_start(row), slot_start(row + 1))`.
pub fn slot_start(row: u64, total: u64) -> i64 {
    DAY_START_US + (i128::from(row) * i128::from(DAY_US) / i128::from(total.max(1))) as i64
}

/// Schema of the `logs` table. Every column is non-nullable.
pub fn logs_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("tenant", DataType::Utf8, false),
            Field::new("service", DataType::Utf8, false),
            Field::new("host", DataType::Utf8, false),
            Field::new("level", DataType::Utf8, false),
            Field::new("request_id", DataType::UInt64, false),
            Field::new("trace_id", DataType::Utf8, false),
            Field::new("user_id", DataType::UInt64, false),
            Field::new("path", DataType::Utf8, false),
            Field::new("status", DataType::Int32, false),
            Field::new("latency_ms", DataType::Float64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("message", DataType::Utf8, false),
        ]))
    }))
}

/// Schema of the `services` table.
pub fn services_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("team", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
    ]))
}

/// The whole `services` table: service `i` belongs to `team-{i % 20}` and tier `TIERS[i % 3]`.
pub fn services_batch() -> RecordBatch {
    let mut service = StringBuilder::new();
    let mut team = StringBuilder::new();
    let mut tier = StringBuilder::new();
    for i in 0..SERVICES {
        service.append_value(service_name(i));
        team.append_value(format!("team-{:02}", i % TEAMS));
        tier.append_value(TIERS[i % TIERS.len()]);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(service.finish()),
        Arc::new(team.finish()),
        Arc::new(tier.finish()),
    ];
    RecordBatch::try_new(services_schema(), cols).expect("services columns match their schema")
}

/// Deterministic generator of the `logs` table, as an iterator of record batches.
#[derive(Debug)]
pub struct LogsGenerator {
    seed: u64,
    total_rows: u64,
    batch_rows: usize,
    next_row: u64,
    rng: StdRng,
    tenants: Arc<Zipf>,
    users: Arc<Zipf>,
    latency: LogNormal,
    bytes: LogNormal,
    /// Open traces: (trace number, rows still to come).
    open: Vec<(u64, u32)>,
    traces_started: u64,
    msg: String,
}

fn shared_zipfs() -> (Arc<Zipf>, Arc<Zipf>) {
    static Z: OnceLock<(Arc<Zipf>, Arc<Zipf>)> = OnceLock::new();
    let (t, u) = Z.get_or_init(|| {
        (
            Arc::new(Zipf::new(TENANTS, 1.0)),
            Arc::new(Zipf::new(USERS, 1.0)),
        )
    });
    (Arc::clone(t), Arc::clone(u))
}

impl LogsGenerator {
    /// A generator of `total_rows` rows in batches of `batch_rows` (at least 1).
    pub fn new(seed: u64, total_rows: u64, batch_rows: usize) -> Self {
        let (tenants, users) = shared_zipfs();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut traces_started = 0;
        let mut open = Vec::with_capacity(OPEN_TRACES);
        for _ in 0..OPEN_TRACES {
            open.push((traces_started, rng.random_range(1..=9u32)));
            traces_started += 1;
        }
        Self {
            seed,
            total_rows,
            batch_rows: batch_rows.max(1),
            next_row: 0,
            rng,
            tenants,
            users,
            latency: LogNormal::with_median(25.0, 0.9),
            bytes: LogNormal::with_median(2_000.0, 1.2),
            open,
            traces_started,
            msg: String::with_capacity(256),
        }
    }

    /// Total rows this generator yields.
    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    /// Rows not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.total_rows - self.next_row
    }

    /// Schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        logs_schema()
    }

    fn generate(&mut self, n: usize) -> RecordBatch {
        let names = names();
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
        let mut tenant = StringBuilder::with_capacity(n, n * 10);
        let mut service = StringBuilder::with_capacity(n, n * 7);
        let mut host = StringBuilder::with_capacity(n, n * 10);
        let mut level = StringBuilder::with_capacity(n, n * 4);
        let mut request_id = UInt64Builder::with_capacity(n);
        let mut trace_id = StringBuilder::with_capacity(n, n * 32);
        let mut user_id = UInt64Builder::with_capacity(n);
        let mut path = StringBuilder::with_capacity(n, n * 16);
        let mut status = Int32Builder::with_capacity(n);
        let mut latency_ms = Float64Builder::with_capacity(n);
        let mut bytes = Int64Builder::with_capacity(n);
        let mut message = StringBuilder::with_capacity(n, n * 128);
        let mut hex = String::with_capacity(32);

        for _ in 0..n {
            let row = self.next_row;
            self.next_row += 1;
            let rng = &mut self.rng;

            // Time: a strictly increasing value inside this row's slot of the day.
            let lo = slot_start(row, self.total_rows);
            let hi = slot_start(row + 1, self.total_rows);
            let t = if hi - lo > 1 {
                lo + rng.random_range(0..hi - lo)
            } else {
                lo
            };
            ts.append_value(t);

            let tenant_i = self.tenants.sample(rng);
            let host_i = rng.random_range(0..HOSTS);
            let service_i = host_i % SERVICES;
            let path_i = rng.random_range(0..PATHS);
            let user = self.users.sample(rng) as u64 + 1;
            let u_level: f64 = rng.random();
            let level_i = level_index(u_level);
            let u_status: f64 = rng.random();
            let code = match level_i {
                3 | 4 => {
                    if u_status < 0.9 {
                        500
                    } else {
                        503
                    }
                }
                _ if u_status < 0.95 => 200,
                _ if u_status < 0.98 => 404,
                _ if u_status < 0.995 => 201,
                _ => 500,
            };
            let is_timeout = rng.random::<f64>() < TIMEOUT_P;
            let is_rare = rng.random::<f64>() < RARE_P;
            let mut lat = self.latency.sample(rng);
            if is_timeout {
                lat += 30_000.0;
            }
            let lat = (lat * 1000.0).round() / 1000.0;
            let size = self.bytes.sample(rng) as i64;
            let n_small = rng.random_range(1..=64u32);

            // Trace: join an open trace; replace it when it has all its rows.
            let slot = rng.random_range(0..OPEN_TRACES);
            let (trace_no, left) = self.open[slot];
            if left <= 1 {
                self.open[slot] = (self.traces_started, rng.random_range(1..=9u32));
                self.traces_started += 1;
            } else {
                self.open[slot].1 = left - 1;
            }
            hex.clear();
            push_trace_hex(&mut hex, self.seed, trace_no);

            let rid = request_id_of(self.seed, row);
            let names_tenant = &names.tenants[tenant_i];
            let names_host = &names.hosts[host_i];
            let names_service = &names.services[service_i];
            let names_path = &names.paths[path_i];

            self.msg.clear();
            write_message(
                &mut self.msg,
                &MessageFields {
                    level: level_i,
                    timeout: is_timeout,
                    tenant: names_tenant,
                    host: names_host,
                    service: names_service,
                    path: names_path,
                    user,
                    status: code,
                    latency: lat,
                    bytes: size,
                    small: n_small,
                    request_id: rid,
                },
            );
            if is_rare {
                self.msg.push_str(" marker=");
                self.msg.push_str(RARE_TOKEN);
            }

            tenant.append_value(names_tenant);
            service.append_value(names_service);
            host.append_value(names_host);
            level.append_value(LEVELS[level_i].0);
            request_id.append_value(rid);
            trace_id.append_value(&hex);
            user_id.append_value(user);
            path.append_value(names_path);
            status.append_value(code);
            latency_ms.append_value(lat);
            bytes.append_value(size);
            message.append_value(&self.msg);
        }

        let cols: Vec<ArrayRef> = vec![
            Arc::new(ts.finish()),
            Arc::new(tenant.finish()),
            Arc::new(service.finish()),
            Arc::new(host.finish()),
            Arc::new(level.finish()),
            Arc::new(request_id.finish()),
            Arc::new(trace_id.finish()),
            Arc::new(user_id.finish()),
            Arc::new(path.finish()),
            Arc::new(status.finish()),
            Arc::new(latency_ms.finish()),
            Arc::new(bytes.finish()),
            Arc::new(message.finish()),
        ];
        RecordBatch::try_new(logs_schema(), cols).expect("generated columns match the logs schema")
    }
}

impl Iterator for LogsGenerator {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        let left = self.remaining();
        if left == 0 {
            return None;
        }
        let n = (self.batch_rows as u64).min(left) as usize;
        Some(self.generate(n))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let batches = self.remaining().div_ceil(self.batch_rows as u64) as usize;
        (batches, Some(batches))
    }
}

fn level_index(u: f64) -> usize {
    let mut acc = 0.0;
    for (i, (_, p)) in LEVELS.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    LEVELS.len() - 1
}

struct MessageFields<'a> {
    level: usize,
    timeout: bool,
    tenant: &'a str,
    host: &'a str,
    service: &'a str,
    path: &'a str,
    user: u64,
    status: i32,
    latency: f64,
    bytes: i64,
    small: u32,
    request_id: u64,
}

/// Fill `out` with the row's message (≈ 120 bytes). Only the timeout template contains
/// `timeout`; no template contains [`RARE_TOKEN`].
fn write_message(out: &mut String, f: &MessageFields<'_>) {
    let r = if f.timeout {
        write!(
            out,
            "upstream {TIMEOUT_TOKEN} after {:.0}ms calling {} for {}; retry {} of 3 scheduled by client gateway",
            f.latency,
            f.service,
            f.path,
            f.small % 3 + 1
        )
    } else {
        match (f.level, f.small % 5) {
            (1, _) => write!(
                out,
                "slow request: {} took {:.1}ms (threshold 500ms) on {} for {}, queue depth {}",
                f.path, f.latency, f.host, f.tenant, f.small
            ),
            (2, _) => write!(
                out,
                "resolved route {} to handler v{} in {}us; headers=12 cookies=3 body_bytes={} user={}",
                f.path,
                f.small,
                f.bytes % 997,
                f.bytes,
                f.user
            ),
            (3, _) => write!(
                out,
                "request failed: {} status={} error=\"connection reset by peer\" host={} user={} attempt={}",
                f.path, f.status, f.host, f.user, f.small
            ),
            (4, _) => write!(
                out,
                "fatal: worker on {} panicked in {}: index out of bounds; restarting supervisor, state=degraded",
                f.host, f.service
            ),
            (_, 0) => write!(
                out,
                "request served: method=GET path={} status={} latency={:.1}ms user={} bytes={} cache=miss",
                f.path, f.status, f.latency, f.user, f.bytes
            ),
            (_, 1) => write!(
                out,
                "db query completed in {:.1}ms rows={} table=events_{} pool=primary conn={} user={}",
                f.latency,
                f.bytes % 500,
                f.small,
                f.small * 3,
                f.user
            ),
            (_, 2) => write!(
                out,
                "auth token validated for user {} of {} scope=read,write expires_in=3600s via oidc provider",
                f.user, f.tenant
            ),
            (_, 3) => write!(
                out,
                "cache refresh for {}: {} keys loaded, {} evicted, hit ratio 0.{:02} on node {}",
                f.path,
                f.bytes,
                f.small,
                f.bytes % 100,
                f.host
            ),
            _ => write!(
                out,
                "enqueued job {:016x} to queue q-{} priority={} attempts=0 payload={}B region=eu-west-1",
                f.request_id,
                f.small,
                f.small % 4,
                f.bytes
            ),
        }
    };
    let r2 = write!(out, " req={:016x}", f.request_id);
    debug_assert!(r.is_ok() && r2.is_ok(), "writing to a String cannot fail");
}

/// Paths written by [`write_parquet`].
#[derive(Debug, Clone)]
pub struct ParquetDataset {
    /// The root folder given to [`write_parquet`].
    pub dir: PathBuf,
    /// `dir/logs/part-NNNN.parquet`, in time order.
    pub logs_files: Vec<PathBuf>,
    /// `dir/services/services.parquet`.
    pub services_file: PathBuf,
    /// Rows written to `logs`.
    pub rows: u64,
    /// Bytes of the `logs` files.
    pub logs_bytes: u64,
}

impl ParquetDataset {
    /// Folder of the `logs` files.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Folder of the `services` file.
    pub fn services_dir(&self) -> PathBuf {
        self.dir.join("services")
    }
}

/// Parquet writer settings of the generated files: zstd level 1 (as Strata's flushes),
/// page-level statistics, sorted by `ts`.
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
        ))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .build()
}

/// Write the `logs` workload (`rows` rows from `seed`) as `files` zstd Parquet files sorted
/// by `ts` (file `i` holds the `i`-th contiguous slice of the day), and the `services` table.
/// Memory stays bounded: rows are generated and written 8,192 at a time.
pub fn write_parquet(
    dir: &Path,
    seed: u64,
    rows: u64,
    files: usize,
) -> crate::Result<ParquetDataset> {
    let files = files.max(1);
    let logs_dir = dir.join("logs");
    let services_dir = dir.join("services");
    std::fs::create_dir_all(&logs_dir)?;
    std::fs::create_dir_all(&services_dir)?;

    let mut paths = Vec::with_capacity(files);
    let mut generator = LogsGenerator::new(seed, rows, 8192);
    let mut pending: Option<RecordBatch> = None;
    for i in 0..files {
        let target = rows * (i as u64 + 1) / files as u64 - rows * i as u64 / files as u64;
        let path = logs_dir.join(format!("part-{i:04}.parquet"));
        let mut w = ArrowWriter::try_new(
            File::create(&path)?,
            logs_schema(),
            Some(parquet_properties()),
        )?;
        let mut written = 0u64;
        while written < target {
            let batch = match pending.take() {
                Some(b) => b,
                None => match generator.next() {
                    Some(b) => b,
                    None => break,
                },
            };
            let take = (target - written).min(batch.num_rows() as u64) as usize;
            w.write(&batch.slice(0, take))?;
            written += take as u64;
            if take < batch.num_rows() {
                pending = Some(batch.slice(take, batch.num_rows() - take));
            }
        }
        w.close()?;
        paths.push(path);
    }

    let services_file = services_dir.join("services.parquet");
    let mut w = ArrowWriter::try_new(
        File::create(&services_file)?,
        services_schema(),
        Some(parquet_properties_plain()),
    )?;
    w.write(&services_batch())?;
    w.close()?;

    let mut logs_bytes = 0;
    for p in &paths {
        logs_bytes += std::fs::metadata(p)?.len();
    }
    Ok(ParquetDataset {
        dir: dir.to_path_buf(),
        logs_files: paths,
        services_file,
        rows,
        logs_bytes,
    })
}

fn parquet_properties_plain() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
        ))
        .build()
}

#[cfg(test)]
mod tests;
