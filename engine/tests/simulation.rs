//! Deterministic simulation of the write path: no acknowledged write lost or duplicated.
//!
//! One seed drives everything: an in-memory bucket behind the production retry layer and a
//! [`FaultStore`] (errors before a request reaches the bucket, lost responses after a put
//! was applied, puts that fail at once and land later, latency, whole outages), two ingest
//! nodes sharing the bucket, producers with and without producer ids (those with one retry
//! until acknowledged, as a real client does), crashes of ingest nodes at any point of a
//! round of writes (their shard tasks are dropped wherever they are), flushes, compaction,
//! retention, deletes and GC, and readers that read every segment of a retained manifest.
//! Time is tokio's paused clock on one thread, so a seed replays exactly.
//!
//! Invariants, checked after every round and at the end (faults off, every node recovered
//! and flushed):
//! - every acknowledged row is stored exactly once, read both by offset (the log) and by
//!   SQL; a row whose write was refused never appears; a row whose outcome was unknown
//!   appears at most once;
//! - a row acknowledged before a committed `DELETE` that matches it, or past its table's
//!   retention, is never returned by SQL (the log may show it until compaction makes the
//!   delete physical); rows written after the delete are not affected; SQL returns no row
//!   the log does not hold;
//! - offsets per shard are unique and increasing;
//! - a reader never meets a missing segment of a retained manifest version;
//! - ingest budgets return to zero when idle.
//!
//! `STRATA_SIM_SEEDS=N` runs N seeds (default 200 in CI); `STRATA_SIM_SEED=S` replays one.
//! A failing seed prints the command that replays it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, UInt64Type};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_ingest::{Durability, IngestConfig, IngestNode, Write};
use strata_storage::decorators::{FaultConfig, FaultStore, RetryPolicy, RetryStore};
use strata_storage::{Catalog, Clock, TableDef};

const TABLES: [&str; 2] = ["keyless", "keyed"];
/// GC keeps unreferenced segments this long (simulated time)...
const GC_MIN_AGE: Duration = Duration::from_secs(2);
/// ... and readers hold a manifest at most this long before reading its segments.
const READER_HOLD_MAX_MS: u64 = 1_900;
const SHARDS: u32 = 4;
const NODES: u32 = 2;

/// What the client was told about a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Acknowledged: must be stored exactly once.
    Acked,
    /// Refused with an error that says nothing was stored: must not appear.
    Refused,
    /// The outcome was unknown: at most once.
    Unknown,
    /// Acknowledged, then matched by a committed delete rule: never by SQL, at most once in
    /// the log (which shows rows until compaction makes the delete physical).
    Deleted,
    /// Matched by a delete rule whose own outcome was unknown, or unknown when a delete rule
    /// was committed (its retry may be the deleted original or a new row): at most once.
    Doubtful,
}

impl Fate {
    /// How many times a row may be stored: (least, most). `expired` rows are past the
    /// table's retention: never by SQL, at most once in the log until compaction drops them.
    fn bounds(self, sql: bool, expired: bool) -> (usize, usize) {
        match self {
            Fate::Refused => (0, 0),
            Fate::Acked if !expired => (1, 1),
            Fate::Acked | Fate::Deleted if !sql => (0, 1),
            Fate::Acked | Fate::Deleted => (0, 0),
            Fate::Unknown | Fate::Doubtful if sql && expired => (0, 0),
            Fate::Unknown | Fate::Doubtful => (0, 1),
        }
    }
}

/// The table with retention keeps 50 years: rows stamped in 1971 are expired at once.
const RETENTION_SECS: u64 = 50 * 365 * 86_400;
const OLD_MICROS: i64 = 31_536_000_000_000; // 1971-01-01
const NOW_MICROS: i64 = 1_764_000_000_000_000;

/// Every fifth block of 64 ids is written with 1971 timestamps.
fn is_old(id: i64) -> bool {
    (id / 64) % 5 == 0
}

struct Producer {
    id: Option<String>,
    table: &'static str,
    next_seq: u64,
    /// A write not acknowledged yet, retried with the same sequence and rows.
    pending: Option<(u64, Vec<i64>)>,
}

/// The simulation's clock: commit times and GC ages follow tokio's paused clock.
#[derive(Debug)]
struct SimClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl SimClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base_ms: 1_764_000_000_000,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + self.start.elapsed().as_millis() as i64
    }
}

/// The bucket's own idea of when objects were written, on the simulation's clock (the
/// in-memory store stamps them with the wall clock, which does not move with the paused one).
#[derive(Debug)]
struct TimedStore {
    inner: Arc<InMemory>,
    clock: Arc<SimClock>,
    written: Arc<std::sync::Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Display for TimedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimedStore({})", self.inner)
    }
}

type Written = Arc<std::sync::Mutex<HashMap<String, i64>>>;

fn stamp(written: &Written, mut meta: ObjectMeta) -> ObjectMeta {
    if let Some(ms) = written.lock().unwrap().get(meta.location.as_ref()) {
        meta.last_modified = chrono::DateTime::from_timestamp_millis(*ms).unwrap_or_default();
    }
    meta
}

impl TimedStore {
    fn stamp(&self, meta: ObjectMeta) -> ObjectMeta {
        stamp(&self.written, meta)
    }

    fn stamped(
        &self,
        inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let written = Arc::clone(&self.written);
        inner.map(move |m| m.map(|m| stamp(&written, m))).boxed()
    }
}

#[async_trait::async_trait]
impl ObjectStore for TimedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await?;
        self.written
            .lock()
            .unwrap()
            .insert(location.to_string(), self.clock.now_ms());
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.written
            .lock()
            .unwrap()
            .insert(location.to_string(), self.clock.now_ms());
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut r = self.inner.get_opts(location, options).await?;
        r.meta = self.stamp(r.meta);
        Ok(r)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.stamped(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.stamped(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects = r.objects.into_iter().map(|m| self.stamp(m)).collect();
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

struct World {
    seed: u64,
    rng: StdRng,
    raw: Arc<InMemory>,
    clock: Arc<SimClock>,
    /// Readers that found a segment of the manifest they planned on missing.
    reader_failures: Arc<std::sync::Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    fault: Arc<FaultStore>,
    /// The bucket as the nodes see it: retries over faults over memory.
    store: Arc<dyn ObjectStore>,
    nodes: Vec<Arc<IngestNode>>,
    producers: Vec<Producer>,
    fates: HashMap<i64, Fate>,
    /// The table each row was written to.
    tables: HashMap<i64, &'static str>,
    next_id: i64,
    log: Vec<String>,
    crashes: u32,
    gc_deleted: usize,
    reads: usize,
    deletes: usize,
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("host", DataType::Utf8, true),
        Field::new("id", DataType::Int64, true),
    ])
}

fn batch(ids: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(TimestampMicrosecondArray::from(
                ids.iter()
                    .map(|&i| {
                        if is_old(i) {
                            OLD_MICROS + i
                        } else {
                            NOW_MICROS + i
                        }
                    })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("h{}", i % 7))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(ids.to_vec())),
        ],
    )
    .expect("batch")
}

fn ingest_config(index: u32) -> IngestConfig {
    IngestConfig {
        group_commit_interval: Duration::from_millis(5),
        flush_bytes: 16 << 10,
        flush_age: Duration::from_millis(200),
        node_index: index,
        node_count: NODES,
        default_shards: SHARDS,
        ..IngestConfig::default()
    }
}

fn node(store: &Arc<dyn ObjectStore>, clock: &Arc<SimClock>, index: u32) -> Arc<IngestNode> {
    Arc::new(
        IngestNode::new(
            Catalog::new(Arc::clone(store)).with_clock(Arc::clone(clock) as _),
            ingest_config(index),
            &prometheus::Registry::new(),
        )
        .expect("ingest node"),
    )
}

impl World {
    async fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let raw = Arc::new(InMemory::new());
        let clock = SimClock::new();
        let timed: Arc<dyn ObjectStore> = Arc::new(TimedStore {
            inner: Arc::clone(&raw),
            clock: Arc::clone(&clock),
            written: Default::default(),
        });
        let fault = Arc::new(FaultStore::new(
            Arc::clone(&timed),
            FaultConfig {
                seed,
                latency: Some((
                    Duration::ZERO,
                    Duration::from_millis(rng.random_range(1..8)),
                )),
                error_rate: if rng.random_bool(0.5) {
                    rng.random_range(0.0..0.08)
                } else {
                    rng.random_range(0.1..0.3)
                },
                fail_after_put_rate: rng.random_range(0.0..0.08),
                delayed_put_rate: rng.random_range(0.0..0.05),
                delayed_put_max: Duration::from_millis(50),
                ..FaultConfig::default()
            },
        ));
        let store: Arc<dyn ObjectStore> = Arc::new(RetryStore::new(
            Arc::clone(&fault) as _,
            RetryPolicy {
                max_attempts: 2,
                base: Duration::from_millis(2),
                max_backoff: Duration::from_millis(20),
                seed: Some(seed),
            },
        ));
        // Tables exist before the run (created on the clean bucket).
        let setup = Catalog::new(Arc::clone(&timed)).with_clock(Arc::clone(&clock) as _);
        for (name, key, retention) in [
            ("keyless", None, None),
            ("keyed", Some("host"), Some(RETENTION_SECS)),
        ] {
            setup
                .create_table(TableDef {
                    name: name.to_string(),
                    schema: schema(),
                    time_column: Some("ts".into()),
                    shard_key: key.map(str::to_string),
                    num_shards: SHARDS,
                    retention_secs: retention,
                    bloom_columns: Vec::new(),
                    created_at_ms: 0,
                })
                .await
                .expect("create table");
        }
        let nodes = (0..NODES).map(|i| node(&store, &clock, i)).collect();
        let producers = (0..6)
            .map(|i| Producer {
                id: (i % 3 != 2).then(|| format!("p{i}")),
                table: TABLES[i % 2],
                next_seq: 1,
                pending: None,
            })
            .collect();
        Self {
            seed,
            rng,
            raw,
            clock,
            reader_failures: Arc::default(),
            readers: Vec::new(),
            fault,
            store,
            nodes,
            producers,
            fates: HashMap::new(),
            tables: HashMap::new(),
            next_id: 0,
            log: Vec::new(),
            crashes: 0,
            gc_deleted: 0,
            reads: 0,
            deletes: 0,
        }
    }

    /// How the gateway splits a write of producer `p`: (node, rows) per owning node.
    /// Keyless tables: one shard (the producer's, or any for producers without an id);
    /// keyed tables: by the shard key on the ring, grouped by the shards' owners.
    fn split(&mut self, p: usize, ids: &[i64]) -> Vec<(usize, Vec<i64>)> {
        let prod = &self.producers[p];
        if prod.table == "keyless" {
            let node = match &prod.id {
                Some(id) => (strata_common::producer_shard(id, SHARDS) % NODES) as usize,
                None => self.rng.random_range(0..NODES as usize),
            };
            return vec![(node, ids.to_vec())];
        }
        let ring = strata_common::HashRing::for_shards(SHARDS);
        let parts = strata_common::partition_by_shard(&batch(ids), Some("host"), &ring, 0)
            .expect("partition");
        let mut by_node: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
        for (shard, part) in parts {
            let col = part.column_by_name("id").expect("id");
            by_node
                .entry((shard % NODES) as usize)
                .or_default()
                .extend(col.as_primitive::<Int64Type>().values().iter().copied());
        }
        by_node.into_iter().collect()
    }

    fn write_of(&self, p: usize, seq: u64, ids: &[i64]) -> Write {
        let prod = &self.producers[p];
        Write {
            table: prod.table.to_string(),
            batches: vec![batch(ids)],
            producer: prod.id.clone().map(|id| (id, seq)),
            durability: Durability::Durable,
            create: Default::default(),
        }
    }

    /// One round: a few writes at once, maybe a crash in the middle of them.
    async fn round(&mut self) {
        let writes = self.rng.random_range(1..6);
        let mut tasks = Vec::new();
        let mut busy = Vec::new();
        for _ in 0..writes {
            let p = self.rng.random_range(0..self.producers.len());
            if busy.contains(&p) {
                continue; // one write in flight per producer
            }
            busy.push(p);
            let (seq, ids) = match self.producers[p].pending.clone() {
                Some(pending) => pending,
                None => {
                    let n = self.rng.random_range(1..30);
                    let ids: Vec<i64> = (self.next_id..self.next_id + n).collect();
                    self.next_id += n;
                    let table = self.producers[p].table;
                    self.tables.extend(ids.iter().map(|&id| (id, table)));
                    let seq = self.producers[p].next_seq;
                    self.producers[p].next_seq += 1;
                    (seq, ids)
                }
            };
            let mut parts = Vec::new();
            for (target, part) in self.split(p, &ids) {
                let w = self.write_of(p, seq, &part);
                let n = Arc::clone(&self.nodes[target]);
                parts.push((part, tokio::spawn(async move { n.write(w).await })));
            }
            tasks.push((p, seq, ids, parts));
        }
        // A crash of one node at a random moment of the round.
        let crash = self.rng.random_bool(0.15).then(|| {
            (
                self.rng.random_range(0..NODES as usize),
                Duration::from_millis(self.rng.random_range(0..40)),
            )
        });
        if let Some((victim, after)) = crash {
            tokio::time::sleep(after).await;
            self.crash(victim).await;
        }
        for (p, seq, ids, parts) in tasks {
            let mut all_acked = true;
            for (part, task) in parts {
                let result = match task.await {
                    Ok(r) => r.map(|_| ()),
                    Err(_) => Err(strata_ingest::Error::OutcomeUnknown("task died".into())),
                };
                let fate = fate_of(&result);
                all_acked &= fate == Fate::Acked;
                self.log.push(format!(
                    "write p{p} seq {seq} ids {:?}: {:?}",
                    (part[0], part[part.len() - 1]),
                    result.as_ref().map_err(|e| e.to_string())
                ));
                self.record(&part, fate);
            }
            let has_id = self.producers[p].id.is_some();
            self.producers[p].pending = (has_id && !all_acked).then_some((seq, ids));
        }
    }

    /// With a producer id, the retries of a write are one write: acked once is acked.
    /// What a delete decided stays.
    fn record(&mut self, ids: &[i64], fate: Fate) {
        for id in ids {
            let merged = match (self.fates.get(id).copied(), fate) {
                (Some(f @ (Fate::Deleted | Fate::Doubtful)), _) => f,
                (Some(Fate::Acked), _) | (_, Fate::Acked) => Fate::Acked,
                (Some(Fate::Unknown), _) | (_, Fate::Unknown) => Fate::Unknown,
                _ => Fate::Refused,
            };
            self.fates.insert(*id, merged);
        }
    }

    /// Drop a node wherever its tasks are, and start a new process in its place.
    async fn crash(&mut self, victim: usize) {
        self.crashes += 1;
        self.log.push(format!("crash node {victim}"));
        self.nodes[victim].kill().await;
        self.nodes[victim] = node(&self.store, &self.clock, victim as u32);
    }

    async fn maintenance(&mut self) {
        let table = TABLES[self.rng.random_range(0..TABLES.len())];
        let catalog =
            Catalog::new(Arc::clone(&self.store)).with_clock(Arc::clone(&self.clock) as _);
        let action = self.rng.random_range(0..5);
        match action {
            0 => {
                let n = self.rng.random_range(0..NODES as usize);
                let r = self.nodes[n].flush_all().await;
                self.log.push(format!(
                    "flush node {n}: {:?}",
                    r.map_err(|e| e.to_string())
                ));
            }
            1 => {
                let opts = strata::lifecycle::LifecycleOptions {
                    min_segments: 2,
                    gc: strata_storage::gc::GcOptions {
                        min_age: GC_MIN_AGE,
                        // Only the newest version is kept: what protects a reader of an
                        // older one is GC's grace alone.
                        keep_versions: 1,
                        dry_run: false,
                    },
                    ..Default::default()
                };
                let r = strata::lifecycle::maintain_table(&catalog, None, table, &opts, None).await;
                self.gc_deleted += r.gc_deleted;
                self.log
                    .push(format!("maintain {table}: errors {:?}", r.errors));
            }
            2 => self.read_retained(table).await,
            3 => self.delete(&catalog, table).await,
            _ => {
                // An outage of the whole store for a while.
                let d = Duration::from_millis(self.rng.random_range(10..200));
                // Either nothing reaches the bucket, or puts do and their answers are lost.
                let blackhole = self.rng.random_bool(0.5);
                self.log
                    .push(format!("outage {d:?} (responses lost: {blackhole})"));
                if blackhole {
                    self.fault.set_blackhole(true);
                } else {
                    self.fault.set_down(true);
                }
                // A round of writes while it is down: they fail (none hangs), and producers
                // with ids retry them after it returns.
                if tokio::time::timeout(Duration::from_secs(30), Box::pin(self.round()))
                    .await
                    .is_err()
                {
                    self.fail("writes hang during an outage");
                }
                tokio::time::sleep(d).await;
                self.fault.set_down(false);
                self.fault.set_blackhole(false);
            }
        }
    }

    /// `DELETE FROM table WHERE id % 10 = k`: hides the rows acknowledged before it, not
    /// those written later.
    async fn delete(&mut self, catalog: &Catalog, table: &'static str) {
        let k = self.rng.random_range(0..10);
        let r = catalog
            .add_delete_rule(table, &format!("id % 10 = {k}"))
            .await;
        self.log.push(format!(
            "delete from {table} where id % 10 = {k}: {:?}",
            r.as_ref().map(|(_, id)| id).map_err(|e| e.to_string())
        ));
        self.deletes += usize::from(r.is_ok());
        let matched: Vec<i64> = self
            .tables
            .iter()
            .filter(|&(&id, &t)| t == table && id % 10 == k)
            .map(|(&id, _)| id)
            .collect();
        for id in matched {
            let Some(fate) = self.fates.get_mut(&id) else {
                continue;
            };
            *fate = match (*fate, r.is_ok()) {
                (Fate::Acked, true) => Fate::Deleted,
                (Fate::Acked | Fate::Unknown, _) => Fate::Doubtful,
                (f, _) => f,
            };
        }
    }

    /// A reader: plans on the newest manifest, works for a while (as a slow query does),
    /// then reads every segment it planned on; none may be missing, whatever compaction and
    /// GC did meanwhile.
    async fn read_retained(&mut self, table: &'static str) {
        let catalog = Catalog::new(Arc::clone(&self.raw) as _);
        let Ok(m) = catalog.load(table).await else {
            return;
        };
        let hold = Duration::from_millis(self.rng.random_range(0..READER_HOLD_MAX_MS));
        let (raw, failures) = (Arc::clone(&self.raw), Arc::clone(&self.reader_failures));
        self.log
            .push(format!("reader on {table} v{} for {hold:?}", m.version));
        self.reads += 1;
        self.readers.push(tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            for s in &m.segments {
                let path = Path::from(s.path.as_str());
                if raw.head(&path).await.is_err() {
                    failures.lock().unwrap().push(format!(
                        "a reader of {table} version {} (held {hold:?}) found segment {} gone",
                        m.version, s.path
                    ));
                }
            }
        }));
    }

    fn fail(&self, what: &str) -> ! {
        let keep = if std::env::var_os("STRATA_SIM_FULL_LOG").is_some() {
            usize::MAX
        } else {
            30
        };
        let tail: Vec<&String> = self.log.iter().rev().take(keep).collect();
        panic!(
            "seed {}: {what}\nlast steps (newest first):\n  {}\nreplay: STRATA_SIM_SEED={} cargo test -p strata --test simulation -- --nocapture",
            self.seed,
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            self.seed
        );
    }

    /// Faults off, wait for delayed puts, recover and flush every node, then check.
    async fn finish(mut self) -> Outcome {
        // Producers with ids finish their pending writes on a healthy store.
        self.fault.set_down(false);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for r in std::mem::take(&mut self.readers) {
            let _ = r.await;
        }
        let failures = self.reader_failures.lock().unwrap().clone();
        if let Some(f) = failures.first() {
            self.fail(f);
        }
        let clean: Arc<dyn ObjectStore> = Arc::clone(&self.raw) as _;
        self.nodes = (0..NODES).map(|i| node(&clean, &self.clock, i)).collect();
        for n in &self.nodes {
            if let Err(e) = n.recover().await {
                self.fail(&format!("recovery on a healthy store failed: {e}"));
            }
        }
        for p in 0..self.producers.len() {
            if let Some((seq, ids)) = self.producers[p].pending.take() {
                for (target, part) in self.split(p, &ids) {
                    let w = self.write_of(p, seq, &part);
                    match self.nodes[target].write(w).await {
                        Ok(_) => self.record(&part, Fate::Acked),
                        Err(e) => self.fail(&format!("a retry on a healthy store failed: {e}")),
                    }
                }
            }
        }
        for n in &self.nodes {
            if let Err(e) = n.flush_all().await {
                self.fail(&format!("flush on a healthy store failed: {e}"));
            }
            let (used, _) = n.buffered();
            if used != 0 {
                self.fail(&format!("{used} bytes still held in an idle node's budget"));
            }
        }
        let in_log = self.check(&clean).await;
        let expected = self
            .fates
            .iter()
            .map(|(&id, fate)| (id, (self.tables[&id], fate.bounds(true, self.expired(id)))))
            .collect();
        let hidden = self
            .fates
            .iter()
            .filter(|&(&id, f)| *f == Fate::Deleted || (*f == Fate::Acked && self.expired(id)))
            .count();
        Outcome {
            deletes: self.deletes,
            hidden,
            rows: self.fates.len(),
            crashes: self.crashes,
            gc_deleted: self.gc_deleted,
            reads: self.reads,
            store: clean,
            in_log,
            expected,
            seed: self.seed,
        }
    }

    /// Every table read by offset (the log), against the fates. Returns how often each row
    /// was read, for the SQL check.
    async fn check(&self, store: &Arc<dyn ObjectStore>) -> HashMap<i64, usize> {
        let catalog = Catalog::new(Arc::clone(store));
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for table in TABLES {
            for shard in 0..SHARDS {
                let mut from = 0u64;
                let mut last: Option<u64> = None;
                loop {
                    let b = strata_ingest::log::read_log(&catalog, table, shard, from, 10_000)
                        .await
                        .unwrap_or_else(|e| self.fail(&format!("log read failed: {e}")));
                    if b.num_rows() == 0 {
                        break;
                    }
                    let offsets = b
                        .column_by_name("_offset")
                        .unwrap_or_else(|| self.fail("no _offset column in the log"))
                        .as_primitive::<UInt64Type>();
                    let ids = b
                        .column_by_name("id")
                        .unwrap_or_else(|| self.fail("no id column"))
                        .as_primitive::<Int64Type>();
                    for i in 0..b.num_rows() {
                        let o = offsets.value(i);
                        if last.is_some_and(|l| o <= l) {
                            self.fail(&format!("{table} shard {shard}: offset {o} after {last:?}"));
                        }
                        last = Some(o);
                        let id = ids.value(i);
                        if self.tables.get(&id).is_some_and(|t| *t != table) {
                            self.fail(&format!("row {id} is in {table}, never written to it"));
                        }
                        *seen.entry(id).or_default() += 1;
                    }
                    from = last.map_or(from, |l| l + 1);
                }
            }
        }
        for (id, fate) in &self.fates {
            let n = seen.get(id).copied().unwrap_or(0);
            let (least, most) = fate.bounds(false, self.expired(*id));
            if !(least..=most).contains(&n) {
                let about: Vec<&String> = self
                    .log
                    .iter()
                    .filter(|l| {
                        let Some(r) = l.split("ids (").nth(1) else {
                            return false;
                        };
                        let mut it = r.split([',', ')']).map(str::trim);
                        let a: i64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
                        let b: i64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
                        a <= *id && *id <= b
                    })
                    .collect();
                self.fail(&format!(
                    "row {id} ({fate:?}) is stored {n} times; its writes: {about:#?}"
                ));
            }
        }
        if let Some(id) = seen.keys().find(|id| !self.fates.contains_key(id)) {
            self.fail(&format!("row {id} was never written but is stored"));
        }
        seen
    }

    /// Past its table's retention.
    fn expired(&self, id: i64) -> bool {
        is_old(id) && self.tables.get(&id) == Some(&"keyed")
    }
}

fn fate_of(result: &Result<(), strata_ingest::Error>) -> Fate {
    match result {
        Ok(()) => Fate::Acked,
        Err(strata_ingest::Error::OutcomeUnknown(_)) => Fate::Unknown,
        Err(_) => Fate::Refused,
    }
}

/// What a run leaves for the SQL check.
struct Outcome {
    /// Delete rules committed, and acknowledged rows they or retention hide from SQL.
    deletes: usize,
    hidden: usize,
    rows: usize,
    crashes: u32,
    gc_deleted: usize,
    reads: usize,
    store: Arc<dyn ObjectStore>,
    /// How often each row was read by offset.
    in_log: HashMap<i64, usize>,
    /// Each row's table and how often SQL may return it: (least, most).
    expected: HashMap<i64, (&'static str, (usize, usize))>,
    seed: u64,
}

/// The same rows through SQL (segments + WAL tail, the query path), on a runtime with a
/// real clock (the query engine's deadline would fire at once on the paused one).
async fn check_sql(o: &Outcome) {
    let catalog = Catalog::new(Arc::clone(&o.store));
    let engine = strata_compute::QueryEngine::with_store(
        catalog,
        strata_compute::QueryConfig {
            manifest_ttl: Duration::ZERO,
            threads: 1,
            ..Default::default()
        },
    )
    .expect("query engine");
    let fail = |what: String| -> ! {
        panic!(
            "seed {}: {what}; replay: STRATA_SIM_SEED={} cargo test -p strata --test simulation",
            o.seed, o.seed
        )
    };
    for table in TABLES {
        let r = engine
            .execute(&format!("SELECT id FROM {table}"), &Default::default())
            .await
            .unwrap_or_else(|e| fail(format!("SQL failed: {e}")));
        let batches: Vec<RecordBatch> = r
            .stream
            .try_collect()
            .await
            .unwrap_or_else(|e| fail(format!("SQL failed: {e}")));
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for b in &batches {
            for id in b.column(0).as_primitive::<Int64Type>().values() {
                *seen.entry(*id).or_default() += 1;
            }
        }
        for (id, (t, (least, most))) in &o.expected {
            let n = seen.get(id).copied().unwrap_or(0);
            if *t == table && !(*least..=*most).contains(&n) {
                fail(format!(
                    "{table}: SQL returns row {id} {n} times, expected {least}..={most}"
                ));
            }
        }
        for (id, n) in &seen {
            match o.expected.get(id) {
                Some((t, _)) if *t == table => {}
                _ => fail(format!(
                    "{table}: SQL returns row {id}, never written to it"
                )),
            }
            let logged = o.in_log.get(id).copied().unwrap_or(0);
            if *n > logged {
                fail(format!(
                    "{table}: SQL returns row {id} {n} times, the log only {logged}"
                ));
            }
        }
    }
}

async fn run_seed(seed: u64, rounds: u32) -> Outcome {
    let mut w = World::new(seed).await;
    for _ in 0..rounds {
        if w.rng.random_bool(0.3) {
            let table = TABLES[w.rng.random_range(0..TABLES.len())];
            w.read_retained(table).await;
        }
        w.round().await;
        if w.rng.random_bool(0.4) {
            w.maintenance().await;
        }
    }
    w.finish().await
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("STRATA_SIM_SEED") {
        return vec![s.parse().expect("STRATA_SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("STRATA_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("STRATA_SIM_FIRST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    (first..first + n).collect()
}

#[test]
fn no_acknowledged_write_is_lost_or_duplicated() {
    let started = std::time::Instant::now();
    let mut rows = 0;
    let mut crashes = 0;
    let (mut gc_deleted, mut reads) = (0, 0);
    let (mut deletes, mut hidden) = (0, 0);
    let seeds = seeds();
    let checker = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for &seed in &seeds {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let outcome = rt.block_on(run_seed(seed, 40));
        drop(rt);
        checker.block_on(check_sql(&outcome));
        rows += outcome.rows;
        crashes += outcome.crashes;
        gc_deleted += outcome.gc_deleted;
        reads += outcome.reads;
        deletes += outcome.deletes;
        hidden += outcome.hidden;
    }
    eprintln!(
        "simulation: {} seeds, {rows} rows, {crashes} node crashes, {gc_deleted} objects \
         deleted by GC under {reads} readers, {deletes} deletes; {hidden} acknowledged rows \
         deleted or expired, {:?}",
        seeds.len(),
        started.elapsed()
    );
}
