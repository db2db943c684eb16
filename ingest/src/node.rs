//! An ingest node: validates writes, creates and evolves tables, routes rows to the shard
//! writers it owns, and enforces memory limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use futures::future::join_all;
use strata_common::{HashRing, partition_by_shard};
use strata_storage::{Catalog, TableDef, TableManifest};
use tokio::sync::{Mutex, OnceCell, oneshot};

use crate::config::IngestConfig;
use crate::error::{Error, Result};
use crate::metrics::IngestMetrics;
use crate::schema::{CreateOptions, conform, infer_table_def, new_columns};
use crate::shard::{self, AppendAck, Budget, Command, ShardEnv, ShardHandle};

/// How durable a write must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged once accepted by the shard writer (in memory): a crash may lose it.
    Buffered,
    /// Acknowledged once its WAL entry is in the object store. The default.
    #[default]
    Durable,
}

/// A write request.
#[derive(Debug, Clone, Default)]
pub struct Write {
    pub table: String,
    pub batches: Vec<RecordBatch>,
    /// Idempotent producer id and sequence number.
    pub producer: Option<(String, u64)>,
    pub durability: Durability,
    /// Used if the table is created by this write.
    pub create: CreateOptions,
}

/// Offsets of one shard's part of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOffsets {
    pub shard: u32,
    pub first_offset: u64,
    pub last_offset: u64,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteResult {
    pub rows: u64,
    pub shards: Vec<ShardOffsets>,
    pub duplicate: bool,
}

/// Keep the error that describes a multi-shard write as a whole: one shard whose outcome
/// is unknown makes the write's outcome unknown, whatever the other shards said.
fn note_error(first: &mut Option<Error>, e: Error) {
    let unknown = |e: &Error| matches!(e, Error::OutcomeUnknown(_));
    if first.as_ref().is_none_or(|f| !unknown(f) && unknown(&e)) {
        *first = Some(e);
    }
}

/// A shard writer, opened once by whoever asks first.
type ShardCell = Arc<OnceCell<Arc<ShardHandle>>>;

/// The ingest role of one process.
pub struct IngestNode {
    catalog: Catalog,
    cfg: Arc<IngestConfig>,
    budget: Arc<Budget>,
    metrics: IngestMetrics,
    writer_id: String,
    /// Shard writers by (table, shard). Each is opened (WAL replay) in its own cell, so
    /// opening one shard never holds up writes to the others.
    shards: Mutex<HashMap<(String, u32), ShardCell>>,
    rotate: AtomicU32,
    /// Set by [`Self::kill`]: the node behaves as a dead process from then on.
    killed: std::sync::atomic::AtomicBool,
}

impl IngestNode {
    /// A node with its own metrics (registered in `registry`) and memory budget.
    pub fn new(
        catalog: Catalog,
        cfg: IngestConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self> {
        let metrics = IngestMetrics::new(registry)
            .map_err(|e| Error::InvalidInput(format!("metrics: {e}")))?;
        let budget = Arc::new(Budget::new(cfg.max_node_bytes));
        Ok(Self::with_shared(catalog, Arc::new(cfg), metrics, budget))
    }

    /// A node sharing metrics and the memory budget with others in the process (one per
    /// tenant: each tenant has its own catalog, the process one memory limit).
    pub fn with_shared(
        catalog: Catalog,
        cfg: Arc<IngestConfig>,
        metrics: IngestMetrics,
        budget: Arc<Budget>,
    ) -> Self {
        Self {
            catalog,
            budget,
            cfg,
            metrics,
            writer_id: uuid_like(),
            shards: Mutex::new(HashMap::new()),
            rotate: AtomicU32::new(0),
            killed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Bytes buffered in memory across shards, and the limit.
    pub fn buffered(&self) -> (usize, usize) {
        (self.budget.used(), self.budget.limit())
    }

    /// Open the writers of every shard this node owns, replaying their WALs, so
    /// acknowledged rows of a crashed predecessor are flushed without waiting for a write.
    pub async fn recover(&self) -> Result<()> {
        for table in self.catalog.list_tables().await? {
            let m = match self.catalog.load(&table).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(table, error = %e, "cannot load table at recovery");
                    continue;
                }
            };
            for s in 0..m.table.num_shards {
                if self.cfg.owns(s) {
                    self.handle(&table, s).await?;
                }
            }
        }
        Ok(())
    }

    /// The table's manifest, creating the table from `batch` when allowed.
    async fn table_for(&self, w: &Write) -> Result<Arc<TableManifest>> {
        // The table's definition, re-read from the bucket at most once a second: schemas only
        // grow, and a column this node has not seen yet is added by a commit (which reads
        // the newest version) anyway.
        match self
            .catalog
            .load_within(&w.table, std::time::Duration::from_secs(1))
            .await
        {
            Ok(m) => Ok(m),
            Err(strata_storage::Error::TableNotFound(_)) => {
                if !self.cfg.auto_create {
                    return Err(Error::TableNotFound(w.table.clone()));
                }
                let first = w.batches.first().ok_or_else(|| {
                    Error::InvalidInput("a write needs at least one batch".into())
                })?;
                let def = infer_table_def(
                    &w.table,
                    &first.schema(),
                    &w.create,
                    self.cfg.default_shards,
                )?;
                let (m, created) = self.catalog.create_table(def).await?;
                if created {
                    tracing::info!(
                        table = m.table.name,
                        shards = m.table.num_shards,
                        "table created on first write"
                    );
                }
                Ok(m)
            }
            Err(strata_storage::Error::InvalidInput(e)) => Err(Error::InvalidInput(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Create a table explicitly. Returns false if it already existed.
    pub async fn create_table(&self, def: TableDef) -> Result<bool> {
        let (_, created) = self.catalog.create_table(def).await.map_err(|e| match e {
            strata_storage::Error::InvalidInput(m) => Error::InvalidInput(m),
            e => e.into(),
        })?;
        Ok(created)
    }

    /// Validate, route and append a write. All batches are checked before anything is
    /// stored, so a bad batch stores nothing.
    pub async fn write(&self, w: Write) -> Result<WriteResult> {
        let started = Instant::now();
        let r = self.write_inner(w).await;
        if let Err(e) = &r {
            let reason = match e {
                Error::Backpressure(_) => "backpressure",
                Error::InvalidInput(_) | Error::TableNotFound(_) => "invalid",
                Error::NotOwner(_) | Error::WrongNode(_) => "not_owner",
                _ => "unavailable",
            };
            self.metrics.rejected.with_label_values(&[reason]).inc();
        }
        tracing::trace!(elapsed = ?started.elapsed(), "write");
        r
    }

    async fn write_inner(&self, mut w: Write) -> Result<WriteResult> {
        w.table = strata_storage::manifest::validate_table_name(&w.table)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        w.batches.retain(|b| b.num_rows() > 0);
        if w.batches.is_empty() {
            return Ok(WriteResult::default());
        }
        let size: usize = w.batches.iter().map(crate::schema::batch_bytes).sum();
        if size > self.cfg.max_batch_bytes {
            return Err(Error::InvalidInput(format!(
                "the write holds {size} bytes, over the limit of {} bytes; split it into smaller batches",
                self.cfg.max_batch_bytes
            )));
        }
        let mut m = self.table_for(&w).await?;
        // Schema evolution: add new nullable columns (conflicts are refused, naming the column).
        let mut added = Vec::new();
        for b in &w.batches {
            for f in new_columns(&m.table, &b.schema())? {
                if !added
                    .iter()
                    .any(|a: &arrow::datatypes::Field| a.name() == f.name())
                {
                    added.push(f);
                }
            }
        }
        if !added.is_empty() {
            let names: Vec<String> = added.iter().map(|f| f.name().clone()).collect();
            m = self
                .catalog
                .commit(&w.table, |m| {
                    let mut fields: Vec<_> = m.table.schema.fields().iter().cloned().collect();
                    for f in &added {
                        match m.table.schema.field_with_name(f.name()) {
                            Ok(existing) if existing.data_type() != f.data_type() => {
                                return Err(strata_storage::Error::InvalidInput(
                                    crate::schema::type_conflict(
                                        &m.table.name,
                                        f.name(),
                                        existing.data_type(),
                                        f.data_type(),
                                    )
                                    .to_string(),
                                ));
                            }
                            Ok(_) => {}
                            Err(_) => fields.push(Arc::new(f.clone())),
                        }
                    }
                    m.table.schema = arrow::datatypes::Schema::new_with_metadata(
                        fields,
                        m.table.schema.metadata().clone(),
                    );
                    Ok(())
                })
                .await
                .map_err(|e| match e {
                    strata_storage::Error::InvalidInput(m) => Error::InvalidInput(m),
                    e => e.into(),
                })?;
            tracing::info!(table = w.table, columns = ?names, "schema evolved");
        }
        let def = &m.table;
        let conformed = w
            .batches
            .iter()
            .map(|b| conform(def, b))
            .collect::<Result<Vec<_>>>()?;

        // Route rows to shards.
        let ring = HashRing::for_shards(def.num_shards);
        // Tables without a shard key spread whole writes over the shards this node owns.
        let owned: Vec<u32> = (0..def.num_shards).filter(|s| self.cfg.owns(*s)).collect();
        // An idempotent producer's writes always land on the same shard of the table (the
        // gateway routes them to its owner), so a retry through any gateway meets the
        // sequence number it must be checked against.
        let fallback = match (&w.producer, owned.len()) {
            (Some((id, _)), _) => strata_common::producer_shard(id, def.num_shards),
            (None, 0) => 0,
            (None, n) => owned[self.rotate.fetch_add(1, Ordering::Relaxed) as usize % n],
        };
        let mut per_shard: std::collections::BTreeMap<u32, Vec<RecordBatch>> = Default::default();
        for b in &conformed {
            for (s, part) in partition_by_shard(b, def.shard_key.as_deref(), &ring, fallback)? {
                per_shard.entry(s).or_default().push(part);
            }
        }
        if let Some(s) = per_shard.keys().find(|s| !self.cfg.owns(**s)) {
            return Err(Error::WrongNode(format!(
                "shard {s} of table `{}` belongs to ingest node {} of {}, not this one ({}); route writes through the gateway",
                def.name,
                s % self.cfg.node_count.max(1),
                self.cfg.node_count,
                self.cfg.node_index
            )));
        }
        let schema = def.schema_ref();
        let mut parts = Vec::with_capacity(per_shard.len());
        for (s, batches) in per_shard {
            let batch = if batches.len() == 1 {
                batches
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&schema)))
            } else {
                concat_batches(&schema, &batches)?
            };
            parts.push((s, batch));
        }
        // Backpressure: reserve memory for all parts or refuse the whole write.
        let need: usize = parts
            .iter()
            .map(|(_, b)| crate::schema::batch_bytes(b))
            .sum();
        let mut handles = Vec::with_capacity(parts.len());
        for (s, _) in &parts {
            handles.push(self.handle(&w.table, *s).await?);
        }
        for ((s, b), h) in parts.iter().zip(&handles) {
            let buffered = h.stats.buffered.load(Ordering::Acquire);
            if buffered + crate::schema::batch_bytes(b) > self.cfg.max_shard_bytes {
                return Err(Error::Backpressure(format!(
                    "shard {s} of table `{}` has {buffered} bytes buffered (limit {}); retry after its flush",
                    w.table, self.cfg.max_shard_bytes
                )));
            }
        }
        if !self.budget.try_acquire(need) {
            return Err(Error::Backpressure(format!(
                "this ingest node has {} of {} bytes buffered; retry shortly",
                self.budget.used(),
                self.budget.limit()
            )));
        }
        let arrived = Instant::now();
        let mut waits = Vec::with_capacity(parts.len());
        let mut unsent = need;
        for ((s, batch), h) in parts.into_iter().zip(&handles) {
            let bytes = crate::schema::batch_bytes(&batch);
            unsent = unsent.saturating_sub(bytes);
            h.stats.buffered.fetch_add(bytes, Ordering::AcqRel);
            self.metrics.buffered_bytes.add(bytes as i64);
            let (tx, rx) = oneshot::channel();
            let reply = (w.durability == Durability::Durable).then_some(tx);
            let cmd = Command::Append {
                batch,
                bytes,
                producer: w.producer.clone(),
                reply,
                arrived,
            };
            if h.tx.send(cmd).await.is_err() {
                // The writer is gone: give back what this part and the unsent ones hold.
                let _ = h
                    .stats
                    .buffered
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                        Some(u.saturating_sub(bytes))
                    });
                self.metrics.buffered_bytes.sub(bytes as i64);
                self.budget.release(bytes + unsent);
                return Err(Error::ShuttingDown);
            }
            waits.push((s, rx));
        }
        let rows: u64 = conformed.iter().map(|b| b.num_rows() as u64).sum();
        if w.durability == Durability::Buffered {
            return Ok(WriteResult {
                rows,
                shards: Vec::new(),
                duplicate: false,
            });
        }
        let results = join_all(
            waits
                .into_iter()
                .map(|(s, rx)| async move { (s, rx.await) }),
        )
        .await;
        let mut out = WriteResult {
            rows,
            shards: Vec::new(),
            duplicate: true,
        };
        let mut first_err = None;
        for (s, r) in results {
            match r {
                Ok(Ok(AppendAck {
                    first_offset,
                    last_offset,
                    duplicate,
                })) => {
                    out.duplicate &= duplicate;
                    if !duplicate {
                        out.shards.push(ShardOffsets {
                            shard: s,
                            first_offset,
                            last_offset,
                        });
                    }
                }
                Ok(Err(e)) => {
                    if matches!(e, Error::NotOwner(_)) {
                        self.shards.lock().await.remove(&(w.table.clone(), s));
                    }
                    note_error(&mut first_err, e);
                }
                Err(_) => {
                    self.shards.lock().await.remove(&(w.table.clone(), s));
                    note_error(
                        &mut first_err,
                        Error::OutcomeUnknown("the shard writer stopped before it answered".into()),
                    );
                }
            }
        }
        if let Some(e) = first_err {
            // Some shards stored their part: the write as a whole is neither done nor
            // undone. Say so, so the client retries it (exactly once with a producer id).
            let stored: Vec<u32> = out.shards.iter().map(|s| s.shard).collect();
            if !stored.is_empty() {
                return Err(Error::OutcomeUnknown(format!(
                    "{e}; the rows for shard(s) {stored:?} were stored: retry with the same \
                     producer id and sequence to complete the write exactly once"
                )));
            }
            return Err(e);
        }
        Ok(out)
    }

    async fn handle(&self, table: &str, shard: u32) -> Result<Arc<ShardHandle>> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let key = (table.to_string(), shard);
        let cell = {
            let mut shards = self.shards.lock().await;
            match shards.get(&key) {
                Some(c)
                    if c.get()
                        .is_none_or(|h| !h.stats.fenced.load(Ordering::Acquire)) =>
                {
                    Arc::clone(c)
                }
                _ => {
                    let c = Arc::new(OnceCell::new());
                    shards.insert(key, Arc::clone(&c));
                    c
                }
            }
        };
        let env = ShardEnv {
            catalog: self.catalog.clone(),
            cfg: Arc::clone(&self.cfg),
            budget: Arc::clone(&self.budget),
            metrics: self.metrics.clone(),
            writer_id: self.writer_id.clone(),
        };
        let h = cell
            .get_or_try_init(|| async { shard::open(env, table, shard).await.map(Arc::new) })
            .await?;
        Ok(Arc::clone(h))
    }

    /// Stop every shard writer wherever it is, without committing or flushing anything:
    /// what a crash of the process does (for simulations and tests). Writes waiting for an
    /// acknowledgement get `OutcomeUnknown`.
    pub async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for cell in self.shards.lock().await.drain().map(|(_, c)| c) {
            if let Some(h) = cell.get() {
                h.abort();
            }
        }
    }

    /// Stop this node's shard writers of `table` without flushing (after `DROP TABLE`:
    /// their rows went with the table); the next write opens new ones.
    pub async fn forget_table(&self, table: &str) {
        self.catalog.forget(table);
        let mut shards = self.shards.lock().await;
        let gone: Vec<(String, u32)> = shards
            .keys()
            .filter(|(t, _)| t.eq_ignore_ascii_case(table))
            .cloned()
            .collect();
        for key in gone {
            if let Some(cell) = shards.remove(&key)
                && let Some(h) = cell.get()
            {
                h.abort();
            }
        }
    }

    /// Commit pending appends and flush every memtable to segments (used by graceful
    /// shutdown and tests).
    pub async fn flush_all(&self) -> Result<()> {
        let handles: Vec<Arc<ShardHandle>> = self
            .shards
            .lock()
            .await
            .values()
            .filter_map(|c| c.get().cloned())
            .collect();
        let results = join_all(handles.iter().map(|h| h.flush())).await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// Flush everything and stop the shard writers.
    pub async fn shutdown(&self) -> Result<()> {
        let r = self.flush_all().await;
        self.shards.lock().await.clear();
        r
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}-{:x}", std::process::id(), nanos, rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
