//! Result cache: a [`QueryBackend`] decorator that answers repeated queries from memory.
//!
//! Cache-aside in front of any query backend (the local engine or the remote compute
//! clients). An entry is keyed by
//!
//! - the tenant,
//! - the SQL text, normalized ([`normalize_sql`]: comments dropped, whitespace collapsed),
//! - the bound parameters (their Arrow IPC encoding),
//! - the versions of what the statement reads, from a [`VersionSource`].
//!
//! The gateway knows nothing of manifests or WAL files: the [`VersionSource`] (implemented
//! by the engine) says what "version" means. When a commit or an acknowledged write changes
//! a version, the next identical query has a different key and misses; the stale entry is
//! never looked up again and ages out of the LRU. A source answers `None` for statements
//! that must not be cached (anything but a plain query over known tables, or a query that
//! calls `now()`, `random()`, …); those go straight to the inner backend.
//!
//! ```text
//!  execute(req) ─▶ versions(caller, sql) ── None ─────────────────────▶ inner (bypassed)
//!                        │ Some(v)
//!                        ▼
//!       key = (tenant, normalize_sql(sql), params, v)
//!        ├─ stored, fresh  ─▶ batches from memory                        (hit)
//!        ├─ running        ─▶ wait for that run, then its batches        (coalesced)
//!        └─ absent         ─▶ inner, streamed to this caller and captured (miss)
//!                             stored at end of stream if ≤ max_entry_bytes
//! ```
//!
//! - **Single flight**: identical concurrent queries run once; the others wait for the
//!   first run and are answered from its captured batches. If that run fails with an error
//!   about the request itself (bad SQL), the waiters get the same error; if it fails in a
//!   way a retry may fix, is cancelled by its client, or turns out too large to keep, one
//!   waiter runs the query itself (and the rest coalesce on that run).
//! - **Streaming**: the first caller gets batches as the inner backend produces them; they
//!   are captured on the side until the result passes [`ResultCacheConfig::max_entry_bytes`],
//!   then capturing stops (and the key is remembered as too large until the TTL passes, so
//!   later callers do not wait for a run that cannot be shared).
//! - **Bounds**: [`ResultCacheConfig::max_bytes`] over all entries (least recently used
//!   evicted first) and [`ResultCacheConfig::ttl`] per entry — a safety net for what
//!   versions cannot see, such as rows aging past a retention period.
//! - **Metrics**: [`HITS_TOTAL`], [`MISSES_TOTAL`], [`COALESCED_TOTAL`], [`BYPASSED_TOTAL`],
//!   [`BYTES`].
//!
//! Time comes from `tokio::time::Instant`, so tests can pause and advance it.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{
    BackendError, BatchStream, Caller, ErrorKind, PreparedSchemas, QueryBackend, QueryRequest,
};

#[cfg(test)]
mod tests;

/// Queries answered from a stored entry.
pub const HITS_TOTAL: &str = "strata_result_cache_hits_total";
/// Cacheable queries that ran on the inner backend.
pub const MISSES_TOTAL: &str = "strata_result_cache_misses_total";
/// Queries answered from an identical query that was running at the same time.
pub const COALESCED_TOTAL: &str = "strata_result_cache_coalesced_total";
/// Queries the version source declared uncacheable (or could not version).
pub const BYPASSED_TOTAL: &str = "strata_result_cache_bypassed_total";
/// Bytes held by stored entries.
pub const BYTES: &str = "strata_result_cache_bytes";

/// What a statement reads, and at which version.
///
/// Implemented by the engine over its catalog; the gateway treats the pairs as opaque.
#[async_trait::async_trait]
pub trait VersionSource: Send + Sync + 'static {
    /// `(name, version)` pairs that change whenever the result of `sql` for `caller` may
    /// change (e.g. each table's manifest version and newest WAL sequence per shard).
    /// `None`: do not cache — the statement is not a plain `SELECT`, references unknown
    /// tables, calls non-deterministic functions (`now()`, `random()`, `current_*`), or is
    /// DDL/DML. An error also bypasses the cache (the inner backend reports its own).
    async fn versions(
        &self,
        caller: &Caller,
        sql: &str,
    ) -> Result<Option<Vec<(String, u64)>>, BackendError>;
}

/// Result cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCacheConfig {
    /// Bytes of all stored results together (Arrow memory size). Default: 64 MiB.
    pub max_bytes: usize,
    /// Largest result stored; a larger one is streamed without being kept. Default: 4 MiB.
    pub max_entry_bytes: usize,
    /// How long an entry may be served after it was stored, whatever the versions say.
    /// Default: 60 s.
    pub ttl: Duration,
}

impl Default for ResultCacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_entry_bytes: 4 << 20,
            ttl: Duration::from_secs(60),
        }
    }
}

/// Counters of the result cache, recorded in a registry the caller owns.
#[derive(Clone)]
pub struct ResultCacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    coalesced: IntCounter,
    bypassed: IntCounter,
    bytes: IntGauge,
}

impl std::fmt::Debug for ResultCacheMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCacheMetrics")
            .field("hits", &self.hits.get())
            .field("misses", &self.misses.get())
            .field("coalesced", &self.coalesced.get())
            .field("bypassed", &self.bypassed.get())
            .field("bytes", &self.bytes.get())
            .finish()
    }
}

impl ResultCacheMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, BackendError> {
        let m = Self::unregistered()?;
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(m.hits.clone()),
            Box::new(m.misses.clone()),
            Box::new(m.coalesced.clone()),
            Box::new(m.bypassed.clone()),
            Box::new(m.bytes.clone()),
        ];
        for c in collectors {
            registry.register(c).map_err(|e| {
                BackendError::new(
                    ErrorKind::Internal,
                    format!("cannot register result-cache metrics: {e}"),
                )
            })?;
        }
        Ok(m)
    }

    /// Metrics recorded nowhere (tests, tools).
    pub fn unregistered() -> Result<Self, BackendError> {
        let internal = |e: prometheus::Error| {
            BackendError::new(ErrorKind::Internal, format!("bad metric definition: {e}"))
        };
        let counter = |name: &str, help: &str| IntCounter::new(name, help).map_err(internal);
        Ok(Self {
            hits: counter(HITS_TOTAL, "Queries answered from the result cache.")?,
            misses: counter(
                MISSES_TOTAL,
                "Cacheable queries that ran on the query backend.",
            )?,
            coalesced: counter(
                COALESCED_TOTAL,
                "Queries answered by an identical query running at the same time.",
            )?,
            bypassed: counter(
                BYPASSED_TOTAL,
                "Queries not eligible for the result cache (DDL/DML, now(), unknown tables).",
            )?,
            bytes: IntGauge::new(BYTES, "Bytes of results held by the result cache.")
                .map_err(internal)?,
        })
    }

    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    pub fn coalesced(&self) -> u64 {
        self.coalesced.get()
    }

    pub fn bypassed(&self) -> u64 {
        self.bypassed.get()
    }

    pub fn bytes(&self) -> i64 {
        self.bytes.get()
    }
}

/// A [`QueryBackend`] that answers repeated queries from memory; see the module docs.
pub struct CachingQueryBackend {
    inner: Arc<dyn QueryBackend>,
    versions: Arc<dyn VersionSource>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CachingQueryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = self.shared.store.lock();
        f.debug_struct("CachingQueryBackend")
            .field("config", &self.shared.config)
            .field("slots", &store.slots.len())
            .field("bytes", &store.bytes)
            .finish_non_exhaustive()
    }
}

impl CachingQueryBackend {
    pub fn new(
        inner: Arc<dyn QueryBackend>,
        versions: Arc<dyn VersionSource>,
        config: ResultCacheConfig,
        metrics: ResultCacheMetrics,
    ) -> Self {
        Self {
            inner,
            versions,
            shared: Arc::new(Shared {
                config,
                metrics,
                store: Mutex::new(Store::default()),
            }),
        }
    }

    pub fn metrics(&self) -> &ResultCacheMetrics {
        &self.shared.metrics
    }

    async fn bypass(&self, req: QueryRequest) -> Result<(SchemaRef, BatchStream), BackendError> {
        self.shared.metrics.bypassed.inc();
        self.inner.execute(req).await
    }
}

#[async_trait::async_trait]
impl QueryBackend for CachingQueryBackend {
    async fn execute(
        &self,
        mut req: QueryRequest,
    ) -> Result<(SchemaRef, BatchStream), BackendError> {
        let versions = match self.versions.versions(&req.caller, &req.sql).await {
            Ok(Some(v)) => v,
            Ok(None) => return self.bypass(req).await,
            Err(e) => {
                tracing::debug!(error = %e, "result cache: no versions; running uncached");
                return self.bypass(req).await;
            }
        };
        let Some(key) = Key::new(&req, versions) else {
            return self.bypass(req).await;
        };
        let key = Arc::new(key);
        let deadline = req.timeout.map(|t| Instant::now() + t);
        loop {
            let lookup = self.shared.lookup(&key, Instant::now());
            let mut rx = match lookup {
                Lookup::Hit(entry) => {
                    self.shared.metrics.hits.inc();
                    if let Some(cost) = &req.cost {
                        // Served from the gateway's memory: nothing read, nothing run.
                        cost.set(serde_json::json!({ "result_cache": "hit" }));
                    }
                    return Ok(entry.stream());
                }
                Lookup::Uncacheable => {
                    self.shared.metrics.misses.inc();
                    return self.inner.execute(req).await;
                }
                Lookup::Lead(leader) => {
                    self.shared.metrics.misses.inc();
                    return match self.inner.execute(req).await {
                        Ok((schema, stream)) => {
                            let capture = Capture {
                                inner: stream,
                                schema: Arc::clone(&schema),
                                run: Some(Run {
                                    leader,
                                    batches: Vec::new(),
                                    bytes: 0,
                                }),
                            };
                            Ok((schema, capture.boxed()))
                        }
                        Err(e) => {
                            leader.finish(Outcome::Failed(e.clone()), None);
                            Err(e)
                        }
                    };
                }
                Lookup::Wait(rx) => rx,
            };
            let done = rx.wait_for(|o| !matches!(o, Outcome::Running));
            let outcome = match deadline {
                None => done.await.map(|o| o.clone()),
                Some(d) => match tokio::time::timeout_at(d, done).await {
                    Ok(r) => r.map(|o| o.clone()),
                    Err(_) => {
                        return Err(BackendError::new(
                            ErrorKind::DeadlineExceeded,
                            format!(
                                "the query did not finish within {:?} (it waited for an \
                                 identical query running at the same time); raise the timeout \
                                 or retry",
                                req.timeout.unwrap_or_default()
                            ),
                        ));
                    }
                },
            };
            match outcome {
                Ok(Outcome::Ready(entry)) => {
                    self.shared.metrics.coalesced.inc();
                    if let Some(cost) = &req.cost {
                        cost.set(serde_json::json!({ "result_cache": "shared" }));
                    }
                    return Ok(entry.stream());
                }
                Ok(Outcome::Failed(e)) if !e.is_retryable() => {
                    self.shared.metrics.coalesced.inc();
                    return Err(e);
                }
                // The run failed in a way a retry may fix, was cancelled, or was too large:
                // look again (this caller may now lead, or find the key marked too large).
                _ => {
                    if let Some(d) = deadline {
                        req.timeout = Some(d.saturating_duration_since(Instant::now()));
                    }
                }
            }
        }
    }

    async fn schema(&self, req: QueryRequest) -> Result<SchemaRef, BackendError> {
        self.inner.schema(req).await
    }

    async fn prepare(&self, req: QueryRequest) -> Result<PreparedSchemas, BackendError> {
        self.inner.prepare(req).await
    }

    async fn list_tables(&self, caller: &Caller) -> Result<Vec<(String, SchemaRef)>, BackendError> {
        self.inner.list_tables(caller).await
    }
}

/// Everything that makes two results the same.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    tenant: Option<String>,
    sql: String,
    /// Arrow IPC stream of the bound parameters; empty without parameters.
    params: Vec<u8>,
    versions: Vec<(String, u64)>,
}

impl Key {
    /// `None` if the parameters cannot be encoded (the query then runs uncached).
    fn new(req: &QueryRequest, mut versions: Vec<(String, u64)>) -> Option<Self> {
        versions.sort();
        let params = match &req.params {
            Some(p) if p.num_rows() > 0 || p.num_columns() > 0 => encode_params(p)?,
            _ => Vec::new(),
        };
        Some(Self {
            tenant: req.caller.tenant.clone(),
            sql: normalize_sql(&req.sql),
            params,
            versions,
        })
    }

    fn weight(&self) -> usize {
        let tenant = self.tenant.as_ref().map_or(0, String::len);
        let versions: usize = self.versions.iter().map(|(n, _)| n.len() + 8).sum();
        64 + tenant + self.sql.len() + self.params.len() + versions
    }
}

fn encode_params(p: &RecordBatch) -> Option<Vec<u8>> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), p.schema_ref()).ok()?;
    w.write(p).ok()?;
    w.into_inner().ok()
}

/// A stored result.
struct Entry {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Entry {
    fn stream(&self) -> (SchemaRef, BatchStream) {
        let batches: Vec<Result<RecordBatch, BackendError>> =
            self.batches.iter().cloned().map(Ok).collect();
        (
            Arc::clone(&self.schema),
            futures::stream::iter(batches).boxed(),
        )
    }
}

/// How a run ended, as its waiters see it.
#[derive(Clone)]
enum Outcome {
    Running,
    Ready(Arc<Entry>),
    Failed(BackendError),
    /// Cancelled, or too large to share.
    Gone,
}

enum Slot {
    /// A run is in progress; `id` tells it apart from a later run of the same key.
    Running {
        id: u64,
        done: watch::Receiver<Outcome>,
    },
    Stored(Stored),
}

struct Stored {
    /// `None`: the result was too large to keep.
    entry: Option<Arc<Entry>>,
    expires: Instant,
    /// Position in the LRU order.
    tick: u64,
    /// Bytes accounted for this slot (entry + key).
    weight: usize,
}

#[derive(Default)]
struct Store {
    slots: HashMap<Arc<Key>, Slot>,
    /// Stored slots by last use, oldest first.
    lru: BTreeMap<u64, Arc<Key>>,
    tick: u64,
    bytes: usize,
    next_run: u64,
}

impl Store {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove_stored(&mut self, key: &Key) {
        if let Some(Slot::Stored(s)) = self.slots.get(key) {
            let (tick, weight) = (s.tick, s.weight);
            self.slots.remove(key);
            self.lru.remove(&tick);
            self.bytes -= weight;
        }
    }
}

struct Shared {
    config: ResultCacheConfig,
    metrics: ResultCacheMetrics,
    store: Mutex<Store>,
}

enum Lookup {
    Hit(Arc<Entry>),
    /// Known to be too large: run without capturing.
    Uncacheable,
    Lead(Leader),
    Wait(watch::Receiver<Outcome>),
}

impl Shared {
    fn lookup(self: &Arc<Self>, key: &Arc<Key>, now: Instant) -> Lookup {
        let mut store = self.store.lock();
        match store.slots.get(key.as_ref()) {
            Some(Slot::Running { done, .. }) => return Lookup::Wait(done.clone()),
            Some(Slot::Stored(s)) if s.expires > now => {
                let old = s.tick;
                let entry = s.entry.clone();
                let tick = store.next_tick();
                if let Some(Slot::Stored(s)) = store.slots.get_mut(key.as_ref()) {
                    s.tick = tick;
                }
                store.lru.remove(&old);
                store.lru.insert(tick, Arc::clone(key));
                return entry.map_or(Lookup::Uncacheable, Lookup::Hit);
            }
            Some(Slot::Stored(_)) => {
                store.remove_stored(key);
                self.metrics.bytes.set(store.bytes as i64);
            }
            None => {}
        }
        store.next_run += 1;
        let id = store.next_run;
        let (tx, rx) = watch::channel(Outcome::Running);
        store
            .slots
            .insert(Arc::clone(key), Slot::Running { id, done: rx });
        Lookup::Lead(Leader {
            shared: Arc::clone(self),
            key: Arc::clone(key),
            id,
            tx,
            finished: false,
        })
    }

    /// End run `id` of `key`: drop its running slot and store `entry` (`Some(None)`: a
    /// too-large marker) in its place.
    fn settle(&self, key: &Arc<Key>, id: u64, entry: Option<Option<Arc<Entry>>>, bytes: usize) {
        let mut store = self.store.lock();
        if matches!(store.slots.get(key.as_ref()), Some(Slot::Running { id: r, .. }) if *r == id) {
            store.slots.remove(key.as_ref());
        } else {
            return; // a newer run owns the key (cleared, or expired and re-run)
        }
        let Some(entry) = entry else { return };
        let weight = key.weight() + bytes;
        if weight > self.config.max_bytes {
            return;
        }
        while store.bytes + weight > self.config.max_bytes {
            let Some((_, oldest)) = store.lru.pop_first() else {
                break;
            };
            if let Some(Slot::Stored(s)) = store.slots.remove(oldest.as_ref()) {
                store.bytes -= s.weight;
            }
        }
        let tick = store.next_tick();
        store.lru.insert(tick, Arc::clone(key));
        store.bytes += weight;
        store.slots.insert(
            Arc::clone(key),
            Slot::Stored(Stored {
                entry,
                expires: Instant::now() + self.config.ttl,
                tick,
                weight,
            }),
        );
        self.metrics.bytes.set(store.bytes as i64);
    }
}

/// The caller that runs a key; dropping it unfinished (client gone) releases the key.
struct Leader {
    shared: Arc<Shared>,
    key: Arc<Key>,
    id: u64,
    tx: watch::Sender<Outcome>,
    finished: bool,
}

impl Leader {
    fn finish(mut self, outcome: Outcome, stored: Option<(Option<Arc<Entry>>, usize)>) {
        self.finished = true;
        match stored {
            Some((entry, bytes)) => self.shared.settle(&self.key, self.id, Some(entry), bytes),
            None => self.shared.settle(&self.key, self.id, None, 0),
        }
        self.tx.send_replace(outcome);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.settle(&self.key, self.id, None, 0);
            self.tx.send_replace(Outcome::Gone);
        }
    }
}

/// The part of a run still being captured.
struct Run {
    leader: Leader,
    batches: Vec<RecordBatch>,
    bytes: usize,
}

/// The leader's result stream: passes batches through and keeps copies until the end.
struct Capture {
    inner: BatchStream,
    schema: SchemaRef,
    /// `None` once capturing ended (stored, too large, failed).
    run: Option<Run>,
}

impl Stream for Capture {
    type Item = Result<RecordBatch, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = match this.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        match &item {
            Some(Ok(batch)) => {
                let max = this
                    .run
                    .as_ref()
                    .map_or(0, |r| r.leader.shared.config.max_entry_bytes);
                if let Some(run) = &mut this.run {
                    run.bytes = run.bytes.saturating_add(batch.get_array_memory_size());
                    run.batches.push(batch.clone());
                }
                if let Some(run) = this.run.take_if(|r| r.bytes > max) {
                    // Too large to keep: stop capturing, and remember so for the TTL.
                    run.leader.finish(Outcome::Gone, Some((None, 0)));
                }
            }
            Some(Err(e)) => {
                if let Some(run) = this.run.take() {
                    run.leader.finish(Outcome::Failed(e.clone()), None);
                }
            }
            None => {
                if let Some(run) = this.run.take() {
                    let entry = Arc::new(Entry {
                        schema: Arc::clone(&this.schema),
                        batches: run.batches,
                    });
                    run.leader.finish(
                        Outcome::Ready(Arc::clone(&entry)),
                        Some((Some(entry), run.bytes)),
                    );
                }
            }
        }
        Poll::Ready(item)
    }
}

/// SQL text with comments removed and each run of whitespace outside quotes turned into
/// one space (trimmed, trailing `;` dropped), so reformatting a query still hits the cache.
///
/// Two texts with the same normal form mean the same thing: quoted strings and identifiers
/// are kept byte for byte. Text the scanner cannot follow safely — backslashes (escape
/// strings), `$` other than `$1`-style placeholders (dollar quoting), optimizer hints
/// (`/*+`, `/*!`) — is only trimmed.
pub fn normalize_sql(sql: &str) -> String {
    let raw = || sql.trim().to_string();
    if sql.contains('\\') || sql.contains("/*+") || sql.contains("/*!") {
        return raw();
    }
    let bytes = sql.as_bytes();
    if bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'$' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
    {
        return raw();
    }
    let mut out = String::with_capacity(sql.len());
    let mut space = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.push(c);
                // A doubled quote inside is an escaped one: it closes and reopens.
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut depth = 1;
                let mut prev = ' ';
                for d in chars.by_ref() {
                    match (prev, d) {
                        ('/', '*') => {
                            depth += 1;
                            prev = ' ';
                            continue;
                        }
                        ('*', '/') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            prev = ' ';
                            continue;
                        }
                        _ => {}
                    }
                    prev = d;
                }
                space = true;
            }
            c if c.is_whitespace() => space = true,
            c => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.push(c);
            }
        }
    }
    while out.ends_with(';') || out.ends_with(' ') {
        out.pop();
    }
    out
}
