//! A shard writer: WAL (in the object store) → memtable → Parquet segment.
//!
//! One task owns each shard's state and is fed through a bounded channel (the actor
//! pattern): no locks on the hot path, and appends are naturally ordered.
//!
//! # Group commit
//! Appends arriving within `group_commit_interval` of the first one share one WAL entry,
//! a create-only PUT at the next sequence number. Offsets are assigned only when the entry
//! is built, so a failed PUT consumes none and offsets stay gapless. Durable appends are
//! acknowledged after the PUT.
//!
//! # Flush
//! When the memtable reaches `flush_bytes` or `flush_age`, it is frozen and handed to a
//! flush task (one at a time per shard) that encodes a segment, uploads it create-only and
//! commits it to the manifest together with the shard's new `flushed_offset` and
//! `flushed_wal_seq`, checking the writer's epoch. Only after that commit are the WAL
//! entries it covers deleted. A failed flush gives its entries back to the memtable.
//!
//! # Recovery and fencing
//! Opening a shard claims a new epoch in the manifest, replays the WAL after
//! `flushed_wal_seq` (flushing as it goes, so memory stays bounded), then writes an empty
//! *fence* entry. A zombie writer's next WAL PUT collides with an entry of a newer epoch and
//! it stops; its manifest commits are refused by the epoch check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_storage::segment::encode_segment;
use strata_storage::wal::{self, WalHeader};
use strata_storage::{Catalog, paths};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::IngestConfig;
use crate::error::{Error, Result};
use crate::metrics::IngestMetrics;
use crate::schema::{upgrade_stored, with_offset_column};

/// Offsets given to one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub first_offset: u64,
    pub last_offset: u64,
    pub duplicate: bool,
}

/// Bytes buffered across a node's shards, with a hard cap.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Reserve `n` bytes unless that would pass the limit.
    pub fn try_acquire(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u.saturating_add(n) <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    fn force_acquire(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    pub fn release(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

pub(crate) enum Command {
    Append {
        batch: RecordBatch,
        bytes: usize,
        producer: Option<(String, u64)>,
        reply: Option<oneshot::Sender<Result<AppendAck>>>,
        arrived: Instant,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Shared, lock-free view of a shard writer for the node.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) buffered: AtomicUsize,
    pub(crate) fenced: AtomicBool,
}

/// The node's handle to a running shard writer. Dropping it stops the writer task.
pub(crate) struct ShardHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) stats: Arc<ShardStats>,
    task: JoinHandle<()>,
}

impl Drop for ShardHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShardHandle {
    /// Stop the writer task at its next await point (a crash, for simulations).
    pub(crate) fn abort(&self) {
        self.task.abort();
    }

    /// Ask the writer to commit pending appends and flush its memtable; waits for the commit.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush { reply: tx })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// Everything a shard writer needs from its node.
#[derive(Clone)]
pub(crate) struct ShardEnv {
    pub(crate) catalog: Catalog,
    pub(crate) cfg: Arc<IngestConfig>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) metrics: IngestMetrics,
    pub(crate) writer_id: String,
}

struct MemEntry {
    seq: u64,
    batches: Vec<RecordBatch>,
    bytes: usize,
    producers: BTreeMap<String, u64>,
}

struct Pending {
    batch: RecordBatch,
    bytes: usize,
    producer: Option<(String, u64)>,
    reply: Option<oneshot::Sender<Result<AppendAck>>>,
    arrived: Instant,
}

struct FlushDone {
    released: usize,
    upto_seq: u64,
}

struct FlushFailed {
    entries: Vec<MemEntry>,
    error: Error,
}

struct Shard {
    env: ShardEnv,
    table: String,
    shard: u32,
    epoch: u64,
    stored_schema: SchemaRef,
    next_offset: u64,
    next_seq: u64,
    flushed_wal_seq: u64,
    producers: BTreeMap<String, u64>,
    memtable: Vec<MemEntry>,
    memtable_bytes: usize,
    oldest: Option<Instant>,
    stats: Arc<ShardStats>,
    fenced: Option<String>,
    flush_retry_at: Option<Instant>,
    /// Attempts of this writer's WAL PUTs so far (see `WalHeader::attempt`).
    attempts: u64,
    /// A sequence whose PUT failed with an unknown outcome and could not be settled yet:
    /// it is never reused; the next write first finds out what it holds.
    unsettled: Option<Unsettled>,
}

/// A WAL slot this writer tried to fill without learning whether it did.
struct Unsettled {
    seq: u64,
    /// Our attempts at that slot (the entry's own, and empty "void" entries).
    attempts: Vec<u64>,
}

/// What a WAL slot holds, once known.
enum Slot {
    /// The entry of one of our attempts in `Unsettled::attempts` (found by its number).
    Ours(u64, wal::WalEntry),
    /// Someone else's entry (an older writer's, or a newer writer's fence).
    Other(wal::WalEntry),
}

/// Open (recover) a shard writer and start its task.
pub(crate) async fn open(env: ShardEnv, table: &str, shard: u32) -> Result<ShardHandle> {
    let (epoch, m) = env.catalog.claim_shard(table, shard).await?;
    let st = m.shard(shard)?.clone();
    let stats = Arc::new(ShardStats::default());
    let mut s = Shard {
        table: table.to_string(),
        shard,
        epoch,
        stored_schema: with_offset_column(&m.table.schema),
        next_offset: st.flushed_offset,
        next_seq: st.flushed_wal_seq,
        flushed_wal_seq: st.flushed_wal_seq,
        producers: st.producers.clone(),
        memtable: Vec::new(),
        memtable_bytes: 0,
        oldest: None,
        stats: Arc::clone(&stats),
        fenced: None,
        flush_retry_at: None,
        attempts: 0,
        unsettled: None,
        env,
    };
    s.replay().await?;
    s.write_fence().await?;
    tracing::info!(
        table,
        shard,
        epoch,
        next_offset = s.next_offset,
        next_seq = s.next_seq,
        "shard writer open"
    );
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(s.run(rx));
    Ok(ShardHandle { tx, stats, task })
}

impl Drop for Shard {
    /// However the writer ends (shutdown, fencing, its handle dropped and its task aborted),
    /// the bytes it still holds go back to the node's budget.
    fn drop(&mut self) {
        let held = self.stats.buffered.swap(0, Ordering::AcqRel);
        if held > 0 {
            self.env.budget.release(held);
            self.env.metrics.buffered_bytes.sub(held as i64);
        }
    }
}

impl Shard {
    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(self.env.catalog.store())
    }

    /// Replay WAL entries after the last flush; flush whenever the memtable fills up.
    async fn replay(&mut self) -> Result<()> {
        let entries = wal::list(
            self.store().as_ref(),
            &self.table,
            self.shard,
            self.next_seq,
        )
        .await?;
        for (seq, meta) in entries {
            let bytes = self.store().get(&meta.location).await?.bytes().await?;
            let entry = wal::decode(&bytes)?;
            if entry.header.epoch > self.epoch {
                return Err(self.fence_error(entry.header.epoch));
            }
            self.adopt(seq, entry)?;
            if self.memtable_bytes >= self.env.cfg.flush_bytes {
                self.flush_inline().await?;
            }
        }
        Ok(())
    }

    /// Take a WAL entry written by another (older) writer or found at replay into the memtable.
    fn adopt(&mut self, seq: u64, entry: wal::WalEntry) -> Result<()> {
        let h = entry.header;
        if entry.schema.fields().len() > self.stored_schema.fields().len() {
            self.stored_schema = Arc::clone(&entry.schema);
        }
        let mut batches = Vec::with_capacity(entry.batches.len());
        let mut bytes = 0;
        for b in entry.batches {
            let b = upgrade_stored(&b, &self.stored_schema)?;
            bytes += crate::schema::batch_bytes(&b);
            batches.push(b);
        }
        if h.first_offset != self.next_offset && h.rows > 0 {
            tracing::warn!(
                table = self.table,
                shard = self.shard,
                seq,
                expected = self.next_offset,
                found = h.first_offset,
                "WAL entry does not continue the offsets"
            );
        }
        self.next_offset = self.next_offset.max(h.first_offset + h.rows);
        self.next_seq = seq + 1;
        for (p, s) in &h.producers {
            let e = self.producers.entry(p.clone()).or_insert(0);
            *e = (*e).max(*s);
        }
        if !batches.is_empty() {
            self.env.budget.force_acquire(bytes);
            self.add_buffered(bytes);
            self.oldest.get_or_insert_with(Instant::now);
        }
        self.memtable_bytes += bytes;
        self.memtable.push(MemEntry {
            seq,
            batches,
            bytes,
            producers: h.producers,
        });
        Ok(())
    }

    fn add_buffered(&self, n: usize) {
        self.stats.buffered.fetch_add(n, Ordering::AcqRel);
        self.env.metrics.buffered_bytes.add(n as i64);
    }

    fn sub_buffered(&self, n: usize) {
        let _ = self
            .stats
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
        self.env.metrics.buffered_bytes.sub(n as i64);
        self.env.budget.release(n);
    }

    fn fence_error(&self, newer: u64) -> Error {
        Error::NotOwner(format!(
            "shard {} of table `{}` was taken over by a newer writer (epoch {newer} > {}); retry to reach the current owner",
            self.shard, self.table, self.epoch
        ))
    }

    /// Write an empty entry at the next sequence so any older writer still running collides.
    async fn write_fence(&mut self) -> Result<()> {
        let mut group = Vec::new();
        self.commit_entry(&mut group).await.map(|_| ())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut flush_task: Option<JoinHandle<std::result::Result<FlushDone, FlushFailed>>> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closed = false;
        while !closed {
            let mut group: Vec<Pending> = Vec::new();
            let mut control: Vec<oneshot::Sender<Result<()>>> = Vec::new();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => closed = true,
                    Some(cmd) => self.take(cmd, &mut group, &mut control),
                },
                done = async { flush_task.as_mut().expect("guarded").await }, if flush_task.is_some() => {
                    flush_task = None;
                    self.flush_finished(done);
                }
                _ = tick.tick() => {}
            }
            // Gather the group until its deadline or size cap.
            if let Some(first) = group.first() {
                let deadline = tokio::time::Instant::from_std(
                    first.arrived + self.env.cfg.group_commit_interval,
                );
                let mut bytes: usize = group.iter().map(|p| p.bytes).sum();
                while bytes < self.env.cfg.group_commit_max_bytes && control.is_empty() {
                    tokio::select! {
                        cmd = rx.recv() => match cmd {
                            None => { closed = true; break; }
                            Some(cmd) => {
                                self.take(cmd, &mut group, &mut control);
                                bytes = group.iter().map(|p| p.bytes).sum();
                            }
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            if !group.is_empty() {
                self.commit_group(group).await;
            }
            let force = !control.is_empty() || closed;
            if force {
                // Wait for a flush in flight, then flush everything synchronously.
                if let Some(t) = flush_task.take() {
                    self.flush_finished(t.await);
                }
                let r = if self.fenced.is_some() {
                    Err(self.not_owner())
                } else {
                    self.flush_inline().await
                };
                for c in control {
                    let _ = c.send(match &r {
                        Ok(()) => Ok(()),
                        Err(e) => Err(Error::Unavailable(e.to_string())),
                    });
                }
            } else if flush_task.is_none() && self.should_flush() {
                flush_task = Some(self.start_flush());
            }
        }
    }

    fn take(
        &mut self,
        cmd: Command,
        group: &mut Vec<Pending>,
        control: &mut Vec<oneshot::Sender<Result<()>>>,
    ) {
        match cmd {
            Command::Append {
                batch,
                bytes,
                producer,
                reply,
                arrived,
            } => group.push(Pending {
                batch,
                bytes,
                producer,
                reply,
                arrived,
            }),
            Command::Flush { reply } => control.push(reply),
        }
    }

    fn not_owner(&self) -> Error {
        Error::NotOwner(self.fenced.clone().unwrap_or_default())
    }

    fn fail(&self, p: Pending, e: Error) {
        self.sub_buffered(p.bytes);
        if let Some(r) = p.reply {
            let _ = r.send(Err(e));
        } else {
            tracing::error!(table = self.table, shard = self.shard, error = %e, "a buffered write was lost");
        }
    }

    async fn commit_group(&mut self, group: Vec<Pending>) {
        if self.fenced.is_some() {
            for p in group {
                let e = self.not_owner();
                self.fail(p, e);
            }
            return;
        }
        let mut live = group;
        self.drop_applied(&mut live);
        if live.is_empty() {
            return;
        }
        match self.commit_entry(&mut live).await {
            Ok(first) => {
                let mut off = first;
                let now = Instant::now();
                for p in live {
                    let n = p.batch.num_rows() as u64;
                    self.env.metrics.rows.inc_by(n);
                    self.env.metrics.bytes.inc_by(p.bytes as u64);
                    self.env
                        .metrics
                        .ack
                        .observe(now.duration_since(p.arrived).as_secs_f64());
                    if let Some(r) = p.reply {
                        let _ = r.send(Ok(AppendAck {
                            first_offset: off,
                            last_offset: off + n.saturating_sub(1),
                            duplicate: false,
                        }));
                    }
                    off += n;
                }
            }
            Err(e) => {
                // The error says whether anything may have been stored (see `commit_entry`).
                for p in live {
                    let e = match &e {
                        Error::NotOwner(m) => Error::NotOwner(m.clone()),
                        Error::Unavailable(m) => Error::Unavailable(m.clone()),
                        Error::OutcomeUnknown(m) => Error::OutcomeUnknown(m.clone()),
                        other => Error::Unavailable(format!(
                            "WAL write failed, nothing was stored: {other}"
                        )),
                    };
                    self.fail(p, e);
                }
            }
        }
    }

    /// Build and PUT the next WAL entry from `group`; returns its first offset. Entries of
    /// older writers found in the way are adopted, then the group is retried after them.
    /// Idempotent producers: answer "duplicate" to the writes whose sequence was already
    /// applied (by this writer, or by an entry it adopted), and keep the rest.
    fn drop_applied(&mut self, group: &mut Vec<Pending>) {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut live = Vec::with_capacity(group.len());
        for p in group.drain(..) {
            if let Some((id, seq)) = &p.producer {
                let applied = self.producers.get(id).copied().max(seen.get(id).copied());
                if applied.is_some_and(|a| *seq <= a) {
                    self.env.metrics.duplicates.inc();
                    self.sub_buffered(p.bytes);
                    if let Some(r) = p.reply {
                        let _ = r.send(Ok(AppendAck {
                            first_offset: 0,
                            last_offset: 0,
                            duplicate: true,
                        }));
                    }
                    continue;
                }
                seen.insert(id.clone(), *seq);
            }
            live.push(p);
        }
        *group = live;
    }

    async fn commit_entry(&mut self, group: &mut Vec<Pending>) -> Result<u64> {
        // Schemas only grow (new nullable columns); store the group at the widest one.
        if let Some(widest) = group
            .iter()
            .map(|p| p.batch.schema())
            .max_by_key(|s| s.fields().len())
            && widest.fields().len() + 1 > self.stored_schema.fields().len()
        {
            self.stored_schema = with_offset_column(&widest);
        }
        // A slot left unsettled by an earlier failure is settled first: its sequence is
        // never reused, and whatever landed there is adopted.
        if let Some(u) = self.unsettled.take() {
            let path = paths::wal_entry(&self.table, self.shard, u.seq);
            let mut attempts = u.attempts;
            match self.settle(&path, u.seq, &mut attempts).await {
                Some(slot) => self.take_slot(u.seq, slot)?,
                None => {
                    self.unsettled = Some(Unsettled {
                        seq: u.seq,
                        attempts,
                    });
                    return Err(Error::Unavailable(
                        "the object store does not answer (an earlier WAL write is still \
                         unsettled); nothing of this write was stored"
                            .into(),
                    ));
                }
            }
        }
        let had_writes = !group.is_empty();
        loop {
            // Entries adopted so far (an unsettled slot, an older writer's entries) may hold
            // some of these writes already: never store a producer's sequence twice.
            self.drop_applied(group);
            if had_writes && group.is_empty() {
                return Ok(self.next_offset);
            }
            let first = self.next_offset;
            let mut batches = Vec::with_capacity(group.len());
            let mut producers = BTreeMap::new();
            let mut off = first;
            for p in group.iter() {
                let n = p.batch.num_rows() as u64;
                let offsets = UInt64Array::from_iter_values(off..off + n);
                let mut cols = p.batch.columns().to_vec();
                cols.push(Arc::new(offsets));
                let b = RecordBatch::try_new(with_offset_column(&p.batch.schema()), cols)?;
                batches.push(upgrade_stored(&b, &self.stored_schema)?);
                if let Some((id, seq)) = &p.producer {
                    producers.insert(id.clone(), *seq);
                }
                off += n;
            }
            let rows = off - first;
            self.attempts += 1;
            let header = WalHeader {
                epoch: self.epoch,
                writer: self.env.writer_id.clone(),
                seq: self.next_seq,
                first_offset: first,
                rows,
                producers: producers.clone(),
                attempt: self.attempts,
            };
            let body = wal::encode(&header, &self.stored_schema, &batches)?;
            let path = paths::wal_entry(&self.table, self.shard, self.next_seq);
            let started = Instant::now();
            let put = self
                .store()
                .put_opts(
                    &path,
                    PutPayload::from(body),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            self.env
                .metrics
                .wal_commit
                .observe(started.elapsed().as_secs_f64());
            if let Err(e) = put {
                // The PUT failed, or its response was lost, or it may still land later.
                // Find out what the slot holds; never write this sequence again blindly.
                let seq = self.next_seq;
                let mut attempts = vec![header.attempt];
                match self.settle(&path, seq, &mut attempts).await {
                    // This attempt's entry: the PUT landed but its response was lost.
                    Some(Slot::Ours(a, _)) if a == header.attempt => {}
                    Some(Slot::Ours(_, void)) => {
                        // Our empty entry took the slot: this write was not stored.
                        self.adopt(seq, void)?;
                        return Err(Error::Unavailable(format!(
                            "WAL write failed, nothing was stored: {e}"
                        )));
                    }
                    Some(Slot::Other(existing)) => {
                        self.take_slot(seq, Slot::Other(existing))?;
                        continue;
                    }
                    None => {
                        self.unsettled = Some(Unsettled { seq, attempts });
                        return Err(Error::OutcomeUnknown(format!(
                            "the WAL write failed and the object store does not answer ({e}); \
                             it may still be stored: retry with the same producer id and \
                             sequence to apply it exactly once"
                        )));
                    }
                }
            }
            let bytes: usize = batches.iter().map(crate::schema::batch_bytes).sum();
            let was = group.iter().map(|p| p.bytes).sum::<usize>();
            // Account the stored (offset-carrying) size instead of the request size.
            if bytes > was {
                self.env.budget.force_acquire(bytes - was);
                self.add_buffered(bytes - was);
            } else if was > bytes {
                self.sub_buffered(was - bytes);
            }
            for (p, s) in &producers {
                self.producers.insert(p.clone(), *s);
            }
            if rows > 0 {
                self.oldest.get_or_insert_with(Instant::now);
            }
            self.memtable_bytes += bytes;
            self.memtable.push(MemEntry {
                seq: self.next_seq,
                batches,
                bytes,
                producers,
            });
            self.next_seq += 1;
            self.next_offset = off;
            return Ok(first);
        }
    }

    /// Learn what the WAL slot `seq` holds after a PUT whose outcome is unknown: read it
    /// back, and if it is empty, fill it with an empty entry of ours (create-only), so that
    /// a PUT still on its way can no longer land. `attempts` are our attempts at the slot
    /// (voids are added). `None` when the store does not answer within a few tries.
    async fn settle(
        &mut self,
        path: &object_store::path::Path,
        seq: u64,
        attempts: &mut Vec<u64>,
    ) -> Option<Slot> {
        const TRIES: u32 = 4;
        for i in 0..TRIES {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(20 << i)).await;
            }
            let read = match self.store().get(path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(bytes) => {
                    let Ok(entry) = wal::decode(&bytes) else {
                        // A torn or foreign object: nothing we can adopt; try again.
                        continue;
                    };
                    let h = &entry.header;
                    if h.writer == self.env.writer_id
                        && h.seq == seq
                        && let Some(&a) = attempts.iter().find(|&&a| a == h.attempt)
                    {
                        return Some(Slot::Ours(a, entry));
                    }
                    return Some(Slot::Other(entry));
                }
                Err(object_store::Error::NotFound { .. }) => {
                    self.attempts += 1;
                    let void = WalHeader {
                        epoch: self.epoch,
                        writer: self.env.writer_id.clone(),
                        seq,
                        first_offset: self.next_offset,
                        rows: 0,
                        producers: BTreeMap::new(),
                        attempt: self.attempts,
                    };
                    attempts.push(void.attempt);
                    let Ok(body) = wal::encode(&void, &self.stored_schema, &[]) else {
                        return None;
                    };
                    // Whatever this returns, the next read tells what the slot holds.
                    let _ = self
                        .store()
                        .put_opts(
                            path,
                            PutPayload::from(body),
                            PutOptions::from(PutMode::Create),
                        )
                        .await;
                }
                Err(_) => {}
            }
        }
        None
    }

    /// Take a settled slot that is not this attempt's entry: adopt an entry of ours or of
    /// an older writer (it may have been acknowledged), stop at a newer writer's.
    fn take_slot(&mut self, seq: u64, slot: Slot) -> Result<()> {
        let entry = match slot {
            Slot::Ours(_, e) | Slot::Other(e) => e,
        };
        if entry.header.epoch > self.epoch {
            let err = self.fence_error(entry.header.epoch);
            self.fenced = Some(err.to_string());
            self.stats.fenced.store(true, Ordering::Release);
            return Err(err);
        }
        self.adopt(seq, entry)
    }

    fn should_flush(&self) -> bool {
        if self.fenced.is_some() || self.memtable.is_empty() {
            return false;
        }
        if self.flush_retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        self.memtable_bytes >= self.env.cfg.flush_bytes
            || self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.env.cfg.flush_age)
    }

    fn freeze(&mut self) -> (Vec<MemEntry>, FlushJob) {
        let entries = std::mem::take(&mut self.memtable);
        self.memtable_bytes = 0;
        self.oldest = None;
        let upto_seq = entries.last().map_or(self.next_seq, |e| e.seq + 1);
        let job = FlushJob {
            catalog: self.env.catalog.clone(),
            cfg: Arc::clone(&self.env.cfg),
            metrics: self.env.metrics.clone(),
            table: self.table.clone(),
            shard: self.shard,
            epoch: self.epoch,
            from_seq: self.flushed_wal_seq,
            upto_seq,
        };
        (entries, job)
    }

    fn start_flush(&mut self) -> JoinHandle<std::result::Result<FlushDone, FlushFailed>> {
        let (entries, job) = self.freeze();
        tokio::spawn(job.run(entries))
    }

    async fn flush_inline(&mut self) -> Result<()> {
        if self.memtable.is_empty() {
            return Ok(());
        }
        let (entries, job) = self.freeze();
        let r = job.run(entries).await;
        let ok = r.is_ok();
        let err = r.as_ref().err().map(|f| f.error.to_string());
        self.flush_finished(Ok(r));
        match err {
            None if ok => Ok(()),
            Some(e) if self.fenced.is_some() => Err(Error::NotOwner(e)),
            Some(e) => Err(Error::Unavailable(format!("flush failed: {e}"))),
            None => Ok(()),
        }
    }

    fn flush_finished(
        &mut self,
        done: std::result::Result<
            std::result::Result<FlushDone, FlushFailed>,
            tokio::task::JoinError,
        >,
    ) {
        match done {
            Ok(Ok(d)) => {
                self.sub_buffered(d.released);
                self.flushed_wal_seq = self.flushed_wal_seq.max(d.upto_seq);
                self.flush_retry_at = None;
            }
            Ok(Err(f)) => {
                if let Error::Storage(strata_storage::Error::AlreadyFlushed {
                    flushed_wal_seq,
                    ..
                }) = &f.error
                {
                    // Entries below the committed floor are in a segment already: drop them
                    // (GC deletes their WAL objects) and flush the rest at once.
                    let floor = *flushed_wal_seq;
                    let (done, rest): (Vec<MemEntry>, Vec<MemEntry>) =
                        f.entries.into_iter().partition(|e| e.seq < floor);
                    let released: usize = done.iter().map(|e| e.bytes).sum();
                    self.sub_buffered(released);
                    self.flushed_wal_seq = self.flushed_wal_seq.max(floor);
                    tracing::info!(
                        table = self.table,
                        shard = self.shard,
                        floor,
                        "an earlier flush commit had landed; not committing its rows again"
                    );
                    let mut entries = rest;
                    let bytes: usize = entries.iter().map(|e| e.bytes).sum();
                    entries.append(&mut self.memtable);
                    self.memtable = entries;
                    self.memtable_bytes += bytes;
                    if !self.memtable.is_empty() {
                        self.oldest.get_or_insert_with(Instant::now);
                    }
                    self.flush_retry_at = None;
                    return;
                }
                if let Error::Storage(strata_storage::Error::Fenced { current, .. }) = &f.error {
                    let e = self.fence_error(*current);
                    self.fenced = Some(e.to_string());
                    self.stats.fenced.store(true, Ordering::Release);
                }
                tracing::warn!(table = self.table, shard = self.shard, error = %f.error, "flush failed; will retry");
                // Put the entries back in front of anything newer.
                let mut entries = f.entries;
                let bytes: usize = entries.iter().map(|e| e.bytes).sum();
                entries.append(&mut self.memtable);
                self.memtable = entries;
                self.memtable_bytes += bytes;
                self.oldest.get_or_insert_with(Instant::now);
                self.flush_retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
            Err(e) => {
                tracing::error!(table = self.table, shard = self.shard, error = %e, "flush task panicked")
            }
        }
    }
}

/// One flush: encode, upload, commit, then truncate the WAL.
struct FlushJob {
    catalog: Catalog,
    cfg: Arc<IngestConfig>,
    metrics: IngestMetrics,
    table: String,
    shard: u32,
    epoch: u64,
    from_seq: u64,
    upto_seq: u64,
}

impl FlushJob {
    async fn run(self, entries: Vec<MemEntry>) -> std::result::Result<FlushDone, FlushFailed> {
        let started = Instant::now();
        match self.flush(&entries).await {
            Ok(released) => {
                self.metrics.flush.observe(started.elapsed().as_secs_f64());
                Ok(FlushDone {
                    released,
                    upto_seq: self.upto_seq,
                })
            }
            Err(error) => Err(FlushFailed { entries, error }),
        }
    }

    async fn flush(&self, entries: &[MemEntry]) -> Result<usize> {
        let store = Arc::clone(self.catalog.store());
        let released: usize = entries.iter().map(|e| e.bytes).sum();
        let mut producers: BTreeMap<String, u64> = BTreeMap::new();
        for e in entries {
            for (p, s) in &e.producers {
                let v = producers.entry(p.clone()).or_insert(0);
                *v = (*v).max(*s);
            }
        }
        // The table may have gained columns since these rows were written.
        let m = self.catalog.load(&self.table).await?;
        let def = m.table.clone();
        let stored = with_offset_column(&def.schema);
        let mut batches = Vec::new();
        for e in entries {
            for b in &e.batches {
                if b.num_rows() > 0 {
                    batches.push(upgrade_stored(b, &stored)?);
                }
            }
        }
        let segment = if batches.is_empty() {
            None
        } else {
            let opts = self.cfg.segment.clone();
            let def2 = def.clone();
            let enc = tokio::task::spawn_blocking(move || encode_segment(&def2, &batches, &opts))
                .await
                .map_err(|e| Error::Unavailable(format!("segment encoder failed: {e}")))??;
            let path = paths::new_segment(&self.table, self.shard, enc.min_ts);
            let size = enc.bytes.len() as u64;
            store
                .put_opts(
                    &path,
                    PutPayload::from(Bytes::clone(&enc.bytes)),
                    PutOptions::from(PutMode::Create),
                )
                .await?;
            Some(enc.into_meta(path.to_string(), self.shard, size, chrono_ms()))
        };
        let (shard, epoch, from, upto) = (self.shard, self.epoch, self.from_seq, self.upto_seq);
        let table = self.table.clone();
        self.catalog
            .commit(&self.table, |m| {
                m.check_epoch(shard, epoch)?;
                let st = m.shard_mut(shard)?;
                // Only this writer moves its shard's floor. Past where this flush started, an
                // earlier commit of ours whose outcome was unknown did land: committing again
                // would store its rows twice.
                if st.flushed_wal_seq > from {
                    return Err(strata_storage::Error::AlreadyFlushed {
                        table: table.clone(),
                        shard,
                        flushed_wal_seq: st.flushed_wal_seq,
                    });
                }
                st.flushed_wal_seq = st.flushed_wal_seq.max(upto);
                if let Some(seg) = &segment {
                    st.flushed_offset = st.flushed_offset.max(seg.max_offset + 1);
                }
                for (p, s) in &producers {
                    let v = st.producers.entry(p.clone()).or_insert(0);
                    *v = (*v).max(*s);
                }
                if let Some(seg) = &segment {
                    m.segments.push(seg.clone());
                }
                Ok(())
            })
            .await?;
        if segment.is_some() {
            self.metrics.flushes.inc();
        }
        // Truncate the WAL only now that the commit holds everything it had.
        for seq in self.from_seq..self.upto_seq {
            match store
                .delete(&paths::wal_entry(&self.table, self.shard, seq))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::debug!(seq, error = %e, "WAL entry not deleted; GC will"),
            }
        }
        Ok(released)
    }
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
