//! [`CachedStore`]: an [`ObjectStore`] decorator that caches immutable objects in a foyer
//! hybrid cache (memory tier + optional SSD tier).
//!
//! # What is cached, and how it is keyed
//! Only objects that never change once written: Parquet segments (`.parquet`) and WAL
//! entries (`.arrow`). Everything else (manifests, hints, listings) passes straight through.
//!
//! Objects are cached in **aligned blocks** of [`CacheOptions::block_bytes`] (256 KiB by
//! default), keyed `b/<block size>/<block index>/<path>`. Alignment lets readers of nearby
//! ranges (a footer read, then the page index, then column chunks) share entries, and the
//! key names the block size so a node restarted with another size never misreads the SSD
//! tier. A read fetches the blocks no tier holds: adjacent ones together, one ranged GET per
//! run of up to 16 blocks (a column chunk spanning several blocks is one request), a lone one
//! through foyer's `get_or_fetch`, which coalesces concurrent misses of the same block so a
//! stampede costs one GET. Object metadata (size, etag) is
//! kept under `m/<path>`, so `head` and full GETs are served without the bucket too.
//!
//! Parquet footers and page indexes are also cached *decoded*, apart from these bytes, by
//! DataFusion's `FileMetadataCache` (see `QueryConfig::metadata_cache_bytes`).
//!
//! # Tiers
//! Entries enter the memory tier (sized in bytes by a weighter) and move to the SSD tier when
//! evicted or when the cache closes, so a restarted node starts warm (foyer recovers the tier
//! on open). With a memory budget of 0 every entry goes straight to the SSD tier.
//!
//! # Metrics
//! `strata_cache_hits_total{tier="memory"|"disk"}`, `strata_cache_misses_total` (blocks
//! fetched from the bucket) and `strata_cache_bucket_bytes_total` (bytes fetched).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, RecoverMode, Source,
};
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions,
};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::cost::QueryCost;

/// Adjacent missing blocks fetched by one GET at most (4 MiB at the default block size).
const MAX_RUN_BLOCKS: usize = 16;
use crate::error::{Error, Result};

/// Metric: cache hits, labelled by tier.
pub const METRIC_HITS: &str = "strata_cache_hits_total";
/// Metric: blocks fetched from the bucket.
pub const METRIC_MISSES: &str = "strata_cache_misses_total";
/// Metric: bytes fetched from the bucket through the cache.
pub const METRIC_BUCKET_BYTES: &str = "strata_cache_bucket_bytes_total";

const STORE_NAME: &str = "CachedStore";
/// Per-entry bookkeeping counted against the memory budget on top of key and value.
const ENTRY_OVERHEAD: usize = 64;

/// Which tier served a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    Memory,
    Disk,
}

/// Sizing of a [`CachedStore`].
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Memory tier budget in bytes; 0 sends every entry straight to the SSD tier.
    pub memory_bytes: usize,
    /// SSD tier budget in bytes (with `dir` only).
    pub disk_bytes: usize,
    /// SSD tier folder; `None`: memory only.
    pub dir: Option<PathBuf>,
    /// Size of the aligned blocks objects are cached in.
    pub block_bytes: usize,
}

impl CacheOptions {
    /// The cache settings of a query node.
    pub fn from_config(c: &crate::QueryConfig) -> Self {
        Self {
            memory_bytes: c.cache_memory_bytes,
            disk_bytes: c.cache_disk_bytes,
            dir: c.cache_dir.clone(),
            block_bytes: c.cache_block_bytes,
        }
    }
}

#[derive(Debug, Clone)]
struct CacheMetrics {
    hits_memory: IntCounter,
    hits_disk: IntCounter,
    misses: IntCounter,
    bucket_bytes: IntCounter,
}

impl CacheMetrics {
    fn register(registry: &Registry) -> Result<Self> {
        let metric_err =
            |e: prometheus::Error| Error::Internal(format!("registering cache metrics: {e}"));
        let hits = IntCounterVec::new(
            Opts::new(METRIC_HITS, "Data cache hits, by tier (memory or disk)."),
            &["tier"],
        )
        .map_err(metric_err)?;
        let misses = IntCounter::new(
            METRIC_MISSES,
            "Data cache misses (blocks fetched from the bucket).",
        )
        .map_err(metric_err)?;
        let bucket_bytes = IntCounter::new(
            METRIC_BUCKET_BYTES,
            "Bytes fetched from the bucket by the data cache.",
        )
        .map_err(metric_err)?;
        registry
            .register(Box::new(hits.clone()))
            .map_err(metric_err)?;
        registry
            .register(Box::new(misses.clone()))
            .map_err(metric_err)?;
        registry
            .register(Box::new(bucket_bytes.clone()))
            .map_err(metric_err)?;
        Ok(Self {
            hits_memory: hits.with_label_values(&["memory"]),
            hits_disk: hits.with_label_values(&["disk"]),
            misses,
            bucket_bytes,
        })
    }
}

/// An [`ObjectStore`] that serves immutable objects from a foyer hybrid cache.
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: HybridCache<String, Bytes>,
    block: u64,
    metrics: CacheMetrics,
    /// The query this handle reads for ([`CachedStore::for_query`]), which is told of every
    /// hit and every request that reaches the bucket.
    sink: Option<Arc<QueryCost>>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("block", &self.block)
            .field("hybrid", &self.cache.is_hybrid())
            .finish()
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.inner)
    }
}

impl CachedStore {
    /// Open the cache (recovering the SSD tier if `opts.dir` holds one) over `inner` and
    /// register its metrics in `registry`. Must run inside a tokio runtime, which the SSD
    /// tier's background writers use.
    pub async fn open(
        inner: Arc<dyn ObjectStore>,
        opts: &CacheOptions,
        registry: &Registry,
    ) -> Result<Self> {
        let block_bytes = opts.block_bytes.max(4096);
        let keep_in_memory = opts.memory_bytes > 0;
        let mut builder = HybridCacheBuilder::new()
            .with_name("strata_data_cache")
            .with_policy(HybridCachePolicy::WriteOnEviction)
            .with_flush_on_close(true)
            .memory(opts.memory_bytes.max(1))
            .with_weighter(|k: &String, v: &Bytes| k.len() + v.len() + ENTRY_OVERHEAD);
        if !keep_in_memory {
            // Entries the filter rejects are "phantoms": handed to the caller, then written to
            // the SSD tier when released, never kept in memory.
            builder = builder.with_filter(|_: &String, _: &Bytes| false);
        }
        let mut builder = builder.storage();
        if let Some(dir) = &opts.dir {
            // foyer panics on a folder it cannot create; say which one instead.
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Cache(format!(
                    "cannot create the SSD cache folder {}: {e}",
                    dir.display()
                ))
            })?;
            let device = FsDeviceBuilder::new(dir)
                .with_capacity(opts.disk_bytes)
                .build()
                .map_err(|e| {
                    Error::Cache(format!("opening the SSD tier in {}: {e}", dir.display()))
                })?;
            // Engine blocks must hold at least one cache block; 16 per device keeps eviction fine-grained.
            let engine_block = (opts.disk_bytes / 16)
                .min(64 << 20)
                .max(2 * block_bytes + (64 << 10));
            let buffer = (16 << 20).max(2 * engine_block);
            builder = builder
                .with_engine_config(
                    BlockEngineConfig::new(device)
                        .with_block_size(engine_block)
                        .with_buffer_pool_size(buffer)
                        .with_submit_queue_size_threshold(2 * buffer),
                )
                .with_recover_mode(RecoverMode::Quiet);
        }
        let cache = builder
            .build()
            .await
            .map_err(|e| Error::Cache(format!("opening the data cache: {e}")))?;
        Ok(Self {
            inner,
            cache,
            block: block_bytes as u64,
            metrics: CacheMetrics::register(registry)?,
            sink: None,
        })
    }

    /// A handle on the same cache that counts what it serves, and what it fetches from the
    /// bucket, into `cost` (one query's figures).
    pub fn for_query(&self, cost: Arc<QueryCost>) -> Self {
        Self {
            sink: Some(cost),
            ..self.clone()
        }
    }

    /// The store beneath the cache.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Bytes fetched from the bucket so far.
    pub fn bucket_bytes(&self) -> u64 {
        self.metrics.bucket_bytes.get()
    }

    /// Hits served by `tier` so far.
    pub fn hits(&self, tier: CacheTier) -> u64 {
        match tier {
            CacheTier::Memory => self.metrics.hits_memory.get(),
            CacheTier::Disk => self.metrics.hits_disk.get(),
        }
    }

    /// Blocks fetched from the bucket so far.
    pub fn misses(&self) -> u64 {
        self.metrics.misses.get()
    }

    /// True if `path` names an immutable object this cache keeps.
    pub fn is_cacheable(path: &Path) -> bool {
        let p = path.as_ref();
        p.ends_with(".parquet") || p.ends_with(".arrow")
    }

    /// Put an object the caller just wrote (e.g. a freshly flushed segment) into the cache,
    /// so its first readers do not go to the bucket. Ignored for mutable paths.
    pub fn write_through(&self, path: &Path, bytes: Bytes) {
        if !Self::is_cacheable(path) {
            return;
        }
        let meta = ObjectMeta {
            location: path.clone(),
            last_modified: chrono::Utc::now(),
            size: bytes.len() as u64,
            e_tag: None,
            version: None,
        };
        self.insert_object(&meta, &bytes);
    }

    /// Move every memory-tier entry to the SSD tier and wait for pending writes (tests,
    /// graceful shutdown). Without an SSD tier this only empties the memory tier.
    pub async fn flush(&self) {
        self.cache.flush_if(|_, _| true).await;
        self.cache.storage().wait().await;
    }

    /// Close the cache: memory-tier entries are written to the SSD tier first.
    pub async fn close(&self) -> Result<()> {
        self.cache
            .close()
            .await
            .map_err(|e| Error::Cache(format!("closing the data cache: {e}")))
    }

    fn block_key(&self, path: &Path, index: u64) -> String {
        format!("b/{}/{index}/{path}", self.block)
    }

    fn insert_object(&self, meta: &ObjectMeta, bytes: &Bytes) {
        let mut start = 0usize;
        let block = self.block as usize;
        while start < bytes.len() {
            let end = (start + block).min(bytes.len());
            self.cache.insert(
                self.block_key(&meta.location, (start / block) as u64),
                bytes.slice(start..end),
            );
            start = end;
        }
        self.cache
            .insert(meta_key(&meta.location), encode_meta(meta));
    }

    /// One aligned block, from the cache or (once, however many callers ask) the bucket.
    async fn block(&self, path: &Path, index: u64) -> object_store::Result<Bytes> {
        let key = self.block_key(path, index);
        let inner = Arc::clone(&self.inner);
        let cache = self.cache.clone();
        let bucket_bytes = self.metrics.bucket_bytes.clone();
        let misses = self.metrics.misses.clone();
        let sink = self.sink.clone();
        let location = path.clone();
        let range = index * self.block..(index + 1) * self.block;
        let entry = self
            .cache
            .get_or_fetch(&key, move || async move {
                misses.inc();
                let fetch = BucketRead {
                    inner: &inner,
                    cache: &cache,
                    bucket_bytes: &bucket_bytes,
                    sink: sink.as_ref(),
                };
                fetch.get(&location, range).await
            })
            .await
            .map_err(|e| foyer_to_store_error(path, e))?;
        let bytes = entry.value().len() as u64;
        match entry.source() {
            Source::Memory => {
                self.metrics.hits_memory.inc();
                if let Some(sink) = &self.sink {
                    sink.cache_hit(false, bytes);
                }
            }
            Source::Disk => {
                self.metrics.hits_disk.inc();
                if let Some(sink) = &self.sink {
                    sink.cache_hit(true, bytes);
                }
            }
            // Counted by the one fetch that ran (a query that waited on another's fetch of
            // the same block counts nothing for it).
            Source::Outer => {}
        }
        Ok(entry.value().clone())
    }

    /// Metadata from the cache, if it is there.
    async fn cached_meta(&self, path: &Path) -> Option<ObjectMeta> {
        let entry = self.cache.get(&meta_key(path)).await.ok()??;
        decode_meta(path, entry.value())
    }

    async fn meta(&self, path: &Path) -> object_store::Result<ObjectMeta> {
        if let Some(m) = self.cached_meta(path).await {
            return Ok(m);
        }
        let m = self.inner.head(path).await?;
        if let Some(sink) = &self.sink {
            sink.bucket_head();
        }
        self.cache.insert(meta_key(path), encode_meta(&m));
        Ok(m)
    }

    /// Bytes `range` of `path` assembled from blocks (clamped at the end of the object).
    async fn read_range(&self, path: &Path, range: Range<u64>) -> object_store::Result<Bytes> {
        let mut out = self.read_ranges(path, std::slice::from_ref(&range)).await?;
        Ok(out.pop().unwrap_or_default())
    }

    async fn read_ranges(
        &self,
        path: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let mut needed = std::collections::BTreeSet::new();
        for r in ranges.iter().filter(|r| r.end > r.start) {
            needed.extend(r.start / self.block..=(r.end - 1) / self.block);
        }
        // Runs of adjacent blocks that no tier holds are fetched with one ranged GET each
        // (a column chunk spanning several blocks costs one request, not one per block);
        // the rest go block by block through the cache. All concurrently. A block past the
        // end of the object fails, which only matters if no earlier block of the range was
        // short (i.e. the range really starts there).
        let (runs, single): (Vec<Vec<u64>>, Vec<u64>) = self.missing_runs(path, &needed);
        let (fetched, runs_fetched) = futures::future::join(
            futures::future::join_all(single.iter().map(|i| self.block(path, *i))),
            futures::future::join_all(runs.iter().map(|run| self.fetch_run(path, run))),
        )
        .await;
        let mut blocks: BTreeMap<u64, object_store::Result<Bytes>> =
            single.into_iter().zip(fetched).collect();
        for got in runs_fetched {
            blocks.extend(got);
        }
        ranges
            .iter()
            .map(|r| self.assemble(path, r, &blocks))
            .collect()
    }

    /// Splits `needed` into runs of at least two adjacent blocks that neither tier holds
    /// (at most [`MAX_RUN_BLOCKS`] each) and the blocks to read one by one.
    fn missing_runs(
        &self,
        path: &Path,
        needed: &std::collections::BTreeSet<u64>,
    ) -> (Vec<Vec<u64>>, Vec<u64>) {
        let mut runs: Vec<Vec<u64>> = Vec::new();
        let mut single = Vec::new();
        let mut current: Vec<u64> = Vec::new();
        let close = |run: &mut Vec<u64>, runs: &mut Vec<Vec<u64>>, single: &mut Vec<u64>| {
            if run.len() >= 2 {
                runs.push(std::mem::take(run));
            } else {
                single.append(run);
            }
        };
        for &i in needed {
            let missing = !self.cache.contains(&self.block_key(path, i));
            let extends =
                current.last().is_some_and(|last| *last + 1 == i) && current.len() < MAX_RUN_BLOCKS;
            if !missing || !extends {
                close(&mut current, &mut runs, &mut single);
            }
            if missing {
                current.push(i);
            } else {
                single.push(i);
            }
        }
        close(&mut current, &mut runs, &mut single);
        (runs, single)
    }

    /// Blocks `run` (adjacent, none cached) with one ranged GET; each is cached. Blocks past
    /// the end of the object fail like a lone block's fetch would.
    async fn fetch_run(&self, path: &Path, run: &[u64]) -> Vec<(u64, object_store::Result<Bytes>)> {
        let (first, last) = (run[0], run[run.len() - 1]);
        let fetch = BucketRead {
            inner: &self.inner,
            cache: &self.cache,
            bucket_bytes: &self.metrics.bucket_bytes,
            sink: self.sink.as_ref(),
        };
        let bytes = match fetch
            .get(path, first * self.block..(last + 1) * self.block)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let msg = e.to_string();
                return run
                    .iter()
                    .map(|i| (*i, Err(generic(format!("block {i} of {path}: {msg}")))))
                    .collect();
            }
        };
        let block = self.block as usize;
        run.iter()
            .enumerate()
            .map(|(n, i)| {
                let start = n * block;
                if start >= bytes.len() {
                    return (
                        *i,
                        Err(generic(format!("block {i} is past the end of {path}"))),
                    );
                }
                self.metrics.misses.inc();
                let piece = bytes.slice(start..(start + block).min(bytes.len()));
                self.cache.insert(self.block_key(path, *i), piece.clone());
                (*i, Ok(piece))
            })
            .collect()
    }

    fn assemble(
        &self,
        path: &Path,
        r: &Range<u64>,
        blocks: &BTreeMap<u64, object_store::Result<Bytes>>,
    ) -> object_store::Result<Bytes> {
        if r.end <= r.start {
            return Ok(Bytes::new());
        }
        let (first, last) = (r.start / self.block, (r.end - 1) / self.block);
        let piece = |i: u64| -> object_store::Result<(Bytes, bool)> {
            let b = match blocks.get(&i) {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(copy_error(path, e)),
                None => return Err(generic(format!("block {i} of {path} missing"))),
            };
            let base = i * self.block;
            let from = r.start.max(base) - base;
            let to = (r.end.min(base + self.block) - base).min(b.len() as u64);
            if from > to {
                return Err(generic(format!(
                    "range {r:?} starts after the end of {path}"
                )));
            }
            let ended = (b.len() as u64) < self.block;
            Ok((b.slice(from as usize..to as usize), ended))
        };
        if first == last {
            return piece(first).map(|(b, _)| b);
        }
        let mut out = BytesMut::with_capacity((r.end - r.start) as usize);
        for i in first..=last {
            let (p, ended) = piece(i)?;
            out.extend_from_slice(&p);
            if ended {
                break; // the object ends inside this block
            }
        }
        Ok(out.freeze())
    }

    async fn cached_get(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            let meta = self.meta(location).await?;
            return Ok(one_chunk(meta, 0..0, Bytes::new()));
        }
        let range = match &options.range {
            Some(GetRange::Bounded(r)) => {
                if r.end <= r.start {
                    return Err(generic(format!("invalid range {r:?} for {location}")));
                }
                r.clone()
            }
            Some(other) => {
                let meta = self.meta(location).await?;
                other
                    .as_range(meta.size)
                    .map_err(|e| generic(format!("range for {location}: {e}")))?
            }
            None => match self.cached_meta(location).await {
                Some(meta) => 0..meta.size,
                None => return self.fetch_whole(location).await,
            },
        };
        let bytes = self.read_range(location, range.clone()).await?;
        let meta = self.meta(location).await?;
        let got = range.start..range.start + bytes.len() as u64;
        Ok(one_chunk(meta, got, bytes))
    }

    /// A full GET of an object not yet seen: one request, then cache all its blocks.
    async fn fetch_whole(&self, location: &Path) -> object_store::Result<GetResult> {
        let r = self.inner.get_opts(location, GetOptions::default()).await?;
        let meta = r.meta.clone();
        let bytes = r.bytes().await?;
        self.metrics.bucket_bytes.inc_by(bytes.len() as u64);
        if let Some(sink) = &self.sink {
            sink.bucket_get(bytes.len() as u64);
        }
        self.metrics
            .misses
            .inc_by(bytes.len().div_ceil(self.block as usize).max(1) as u64);
        self.insert_object(&meta, &bytes);
        let range = 0..bytes.len() as u64;
        Ok(one_chunk(meta, range, bytes))
    }
}

fn one_chunk(meta: ObjectMeta, range: Range<u64>, bytes: Bytes) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
        meta,
        range,
        attributes: Attributes::default(),
    }
}

/// One ranged GET that reaches the bucket: its bytes counted (node metrics, the query's
/// cost) and its object's metadata cached, for a lone block and a run of blocks alike.
struct BucketRead<'a> {
    inner: &'a Arc<dyn ObjectStore>,
    cache: &'a HybridCache<String, Bytes>,
    bucket_bytes: &'a IntCounter,
    sink: Option<&'a Arc<QueryCost>>,
}

impl BucketRead<'_> {
    async fn get(&self, location: &Path, range: Range<u64>) -> object_store::Result<Bytes> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let r = self.inner.get_opts(location, opts).await?;
        let meta = r.meta.clone();
        let bytes = r.bytes().await?;
        self.bucket_bytes.inc_by(bytes.len() as u64);
        if let Some(sink) = self.sink {
            sink.bucket_get(bytes.len() as u64);
        }
        let mk = meta_key(location);
        if !self.cache.contains(&mk) {
            self.cache.insert(mk, encode_meta(&meta));
        }
        Ok(bytes)
    }
}

fn generic(msg: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE_NAME,
        source: msg.into(),
    }
}

/// A fresh error saying what `e` says (object_store errors are not `Clone`).
fn copy_error(path: &Path, e: &object_store::Error) -> object_store::Error {
    match e {
        object_store::Error::NotFound { .. } => object_store::Error::NotFound {
            path: path.to_string(),
            source: e.to_string().into(),
        },
        _ => generic(e.to_string()),
    }
}

fn foyer_to_store_error(path: &Path, e: foyer::Error) -> object_store::Error {
    match e.downcast_ref::<object_store::Error>() {
        Some(object_store::Error::NotFound { .. }) => object_store::Error::NotFound {
            path: path.to_string(),
            source: Box::new(e),
        },
        _ => object_store::Error::Generic {
            store: STORE_NAME,
            source: Box::new(e),
        },
    }
}

fn meta_key(path: &Path) -> String {
    format!("m/{path}")
}

/// size (u64 LE) | last modified, µs (i64 LE) | etag (UTF-8, rest).
fn encode_meta(m: &ObjectMeta) -> Bytes {
    let mut b = Vec::with_capacity(16 + m.e_tag.as_ref().map_or(0, String::len));
    b.extend_from_slice(&m.size.to_le_bytes());
    b.extend_from_slice(&m.last_modified.timestamp_micros().to_le_bytes());
    if let Some(t) = &m.e_tag {
        b.extend_from_slice(t.as_bytes());
    }
    Bytes::from(b)
}

fn decode_meta(path: &Path, b: &Bytes) -> Option<ObjectMeta> {
    let size = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let micros = i64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
    let tag = b.get(16..).filter(|t| !t.is_empty());
    Some(ObjectMeta {
        location: path.clone(),
        last_modified: chrono::DateTime::from_timestamp_micros(micros)?,
        size,
        e_tag: tag
            .and_then(|t| std::str::from_utf8(t).ok())
            .map(str::to_string),
        version: None,
    })
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let conditional = options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some();
        if conditional || !Self::is_cacheable(location) {
            let head = options.head;
            let r = self.inner.get_opts(location, options).await?;
            if let Some(sink) = &self.sink {
                if head {
                    sink.bucket_head();
                } else {
                    sink.bucket_get(r.range.end - r.range.start);
                }
            }
            return Ok(r);
        }
        self.cached_get(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if !Self::is_cacheable(location) {
            let out = self.inner.get_ranges(location, ranges).await?;
            if let Some(sink) = &self.sink {
                for b in &out {
                    sink.bucket_get(b.len() as u64);
                }
            }
            return Ok(out);
        }
        self.read_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Cached objects are immutable and their paths never reused, so stale entries are
        // harmless; they age out of the cache.
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Some(sink) = &self.sink {
            sink.bucket_list();
        }
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Some(sink) = &self.sink {
            sink.bucket_list();
        }
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        if let Some(sink) = &self.sink {
            sink.bucket_list();
        }
        self.inner.list_with_delimiter(prefix).await
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

#[cfg(test)]
mod tests;
