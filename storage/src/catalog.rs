//! The catalog: tables and their manifests, committed with create-only PUTs.
//!
//! # Commit protocol
//! 1. Read the latest version `N` (a LIST after the cached or hinted version, then one GET).
//! 2. Apply the change to a copy; this is where epochs are checked, so a fenced writer
//!    fails here, on fresh state.
//! 3. PUT version `N+1` with If-None-Match. If another committer won, go to 1 (with jittered
//!    backoff); the change is re-applied to the winner's state, so no commit is lost.
//! 4. If the PUT's outcome is unknown (an error after the upload), read `N+1` back: if its
//!    `commit_id` is ours, the commit happened.
//!
//! A best-effort `_latest` hint is overwritten after each commit so cold readers skip the
//! history; correctness never depends on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand::Rng;

use crate::error::{Error, Result};
use crate::manifest::{TableDef, TableManifest, Unreferenced, validate_table_name};
use crate::paths;

/// How hard a committer tries before reporting contention.
#[derive(Debug, Clone)]
pub struct CommitPolicy {
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 200,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
        }
    }
}

/// Tables and manifests over one object store. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    policy: CommitPolicy,
    latest: Arc<Mutex<HashMap<String, Arc<TableManifest>>>>,
    /// When each table's newest version was last confirmed against the store.
    checked: Arc<Mutex<HashMap<String, Instant>>>,
    clock: Arc<dyn Clock>,
}

/// Where commit times and GC ages come from: the wall clock, or a simulation's clock.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

impl Catalog {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            policy: CommitPolicy::default(),
            latest: Arc::default(),
            checked: Arc::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Take commit times (and GC's idea of now) from `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Milliseconds since the epoch, by this catalog's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn with_policy(mut self, policy: CommitPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Names of all tables, sorted.
    pub async fn list_tables(&self) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&paths::tables_root()))
            .await?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The newest manifest of `table`, read from the store (one LIST + at most one GET);
    /// `TableNotFound` if the table does not exist or was dropped.
    pub async fn load(&self, table: &str) -> Result<Arc<TableManifest>> {
        let m = self.load_any(table).await?;
        if m.dropped {
            return Err(Error::TableNotFound(m.table.name.clone()));
        }
        Ok(m)
    }

    /// [`Self::load`], including a dropped table's last manifest.
    pub async fn load_any(&self, table: &str) -> Result<Arc<TableManifest>> {
        let table = validate_table_name(table)?;
        let cached = self.cached(&table);
        let from = match &cached {
            Some(m) => Some(m.version),
            None => self.read_hint(&table).await,
        };
        let newest = self.newest_version_after(&table, from).await?;
        let version = match (newest, from) {
            (Some(v), _) => v,
            (None, Some(v)) => v,
            (None, None) => return Err(Error::TableNotFound(table)),
        };
        if let Some(m) = cached.filter(|m| m.version == version) {
            self.mark_checked(&table);
            return Ok(m);
        }
        let m = match self.load_version(&table, version).await {
            Ok(m) => m,
            // The hint pointed at a version GC removed: fall back to a full listing.
            Err(Error::ObjectStore(object_store::Error::NotFound { .. })) if newest.is_none() => {
                let v = self
                    .newest_version_after(&table, None)
                    .await?
                    .ok_or_else(|| Error::TableNotFound(table.clone()))?;
                self.load_version(&table, v).await?
            }
            Err(e) => return Err(e),
        };
        self.mark_checked(&table);
        Ok(self.remember(m))
    }

    /// The newest manifest as of at most `max_age` ago: the cached one when this process
    /// confirmed (or committed) it within `max_age`, else [`Self::load`]. For hot paths that
    /// need the table's definition, not its latest segments (the ingest write path), so a
    /// busy table costs one LIST per `max_age`, not one per request.
    pub async fn load_within(&self, table: &str, max_age: Duration) -> Result<Arc<TableManifest>> {
        let fresh = self
            .checked
            .lock()
            .ok()
            .and_then(|c| c.get(table).copied())
            .is_some_and(|t| t.elapsed() < max_age);
        if fresh && let Some(m) = self.cached(table) {
            if m.dropped {
                return Err(Error::TableNotFound(m.table.name.clone()));
            }
            return Ok(m);
        }
        self.load(table).await
    }

    /// Make the next [`Self::load_within`] of `table` read the bucket (after a change this
    /// process learnt of another way, e.g. `DROP TABLE`).
    pub fn forget(&self, table: &str) {
        if let Ok(mut c) = self.checked.lock() {
            c.remove(&table.to_ascii_lowercase());
        }
    }

    fn mark_checked(&self, table: &str) {
        if let Ok(mut c) = self.checked.lock() {
            c.insert(table.to_string(), Instant::now());
        }
    }

    /// The cached manifest without I/O, if this process has seen the table.
    pub fn cached(&self, table: &str) -> Option<Arc<TableManifest>> {
        self.latest.lock().ok()?.get(table).cloned()
    }

    /// One specific version.
    pub async fn load_version(&self, table: &str, version: u64) -> Result<TableManifest> {
        let path = paths::manifest_version(table, version);
        let bytes = self.store.get(&path).await?.bytes().await?;
        TableManifest::decode(&bytes, &format!("manifest {path}"))
    }

    /// All versions present in the store, ascending (a full LIST; for GC and tools).
    pub async fn list_versions(&self, table: &str) -> Result<Vec<u64>> {
        let mut versions: Vec<u64> = self
            .store
            .list(Some(&paths::manifest_dir(table)))
            .try_filter_map(|m| async move { Ok(paths::parse_manifest_version(&m.location)) })
            .try_collect()
            .await?;
        versions.sort_unstable();
        Ok(versions)
    }

    /// Create a table (version 1). Returns the manifest and whether this call created it;
    /// if the table exists the existing manifest is returned with `false`.
    pub async fn create_table(&self, def: TableDef) -> Result<(Arc<TableManifest>, bool)> {
        let mut def = def.validated()?;
        if def.created_at_ms == 0 {
            def.created_at_ms = self.now_ms();
        }
        let name = def.name.clone();
        let mut m = TableManifest::new(def.clone());
        m.version = 1;
        m.commit_id = uuid::Uuid::new_v4().to_string();
        m.committed_at_ms = self.now_ms();
        match self.put_version(&m).await? {
            PutOutcome::Won => {
                self.write_hint(&name, 1).await;
                Ok((self.remember(m), true))
            }
            PutOutcome::Lost => {
                let existing = self.load_any(&name).await?;
                if !existing.dropped {
                    return Ok((existing, false));
                }
                // The name belonged to a dropped table: a new definition on top of its last
                // version. Epochs go on (old writers stay fenced), WAL floors stay past the
                // drop's fences (old WAL entries are never read), everything else starts anew.
                let mut recreated = false;
                let m = self
                    .commit_inner(&name, true, |m| {
                        if !m.dropped {
                            recreated = false;
                            return Ok(()); // someone else recreated it first
                        }
                        recreated = true;
                        let mut fresh = TableManifest::new(def.clone());
                        for (shard, st) in fresh.shards.iter_mut() {
                            if let Some(old) = m.shards.get(shard) {
                                st.epoch = old.epoch + 1;
                                st.flushed_wal_seq = old.flushed_wal_seq;
                            }
                        }
                        fresh.unreferenced = std::mem::take(&mut m.unreferenced);
                        fresh.next_delete_id = m.next_delete_id;
                        *m = TableManifest {
                            version: m.version,
                            commit_id: std::mem::take(&mut m.commit_id),
                            ..fresh
                        };
                        Ok(())
                    })
                    .await?;
                Ok((m, recreated))
            }
        }
    }

    /// `DROP TABLE`: fence every shard's WAL (an empty entry of a newer epoch at its next
    /// sequence, so a writer still holding the shard can no longer append and acknowledge),
    /// then commit a last version that is `dropped`, references no segment and has its WAL
    /// floors past the fences. Readers and writers see `TableNotFound` from then on; GC
    /// collects the segments (after its grace), WAL entries and old versions.
    pub async fn drop_table(&self, table: &str) -> Result<()> {
        let m = self.load(table).await?;
        let mut floors = BTreeMap::new();
        for shard in 0..m.table.num_shards {
            let st = m.shard(shard)?;
            let listed = crate::wal::list(
                self.store.as_ref(),
                &m.table.name,
                shard,
                st.flushed_wal_seq,
            )
            .await?;
            let mut seq = listed.last().map_or(st.flushed_wal_seq, |(s, _)| s + 1);
            let header = crate::wal::WalHeader {
                epoch: st.epoch + 1,
                writer: format!("drop-{}", uuid::Uuid::new_v4()),
                seq,
                first_offset: 0,
                rows: 0,
                producers: BTreeMap::new(),
                attempt: 0,
            };
            let schema = arrow::datatypes::Schema::empty();
            loop {
                let body = crate::wal::encode(
                    &crate::wal::WalHeader {
                        seq,
                        ..header.clone()
                    },
                    &schema,
                    &[],
                )?;
                let path = paths::wal_entry(&m.table.name, shard, seq);
                match self
                    .store
                    .put_opts(
                        &path,
                        PutPayload::from(body),
                        PutOptions::from(PutMode::Create),
                    )
                    .await
                {
                    Ok(_) => break,
                    // A writer got there first (or our own earlier attempt): fence the next.
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => seq += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            floors.insert(shard, seq + 1);
        }
        self.commit(table, |m| {
            m.dropped = true;
            m.segments.clear();
            m.deletes.clear();
            for (shard, st) in m.shards.iter_mut() {
                st.epoch += 1;
                st.flushed_wal_seq = st
                    .flushed_wal_seq
                    .max(floors.get(shard).copied().unwrap_or(0));
                st.producers.clear();
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Commit a change to `table`. `change` is applied to a copy of the newest state and may
    /// be called several times (once per lost race); it must be deterministic given its input
    /// and may refuse by returning an error (e.g. [`TableManifest::check_epoch`]).
    pub async fn commit<F>(&self, table: &str, change: F) -> Result<Arc<TableManifest>>
    where
        F: FnMut(&mut TableManifest) -> Result<()>,
    {
        self.commit_inner(table, false, change).await
    }

    /// [`Self::commit`]; with `dropped_too`, also on top of a dropped table's last version.
    async fn commit_inner<F>(
        &self,
        table: &str,
        dropped_too: bool,
        mut change: F,
    ) -> Result<Arc<TableManifest>>
    where
        F: FnMut(&mut TableManifest) -> Result<()>,
    {
        let table = validate_table_name(table)?;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let current = if dropped_too {
                self.load_any(&table).await?
            } else {
                self.load(&table).await?
            };
            let mut next = (*current).clone();
            change(&mut next)?;
            crate::manifest::check_columns(&next.table.name, &next.table.schema)?;
            next.version = current.version + 1;
            next.commit_id = uuid::Uuid::new_v4().to_string();
            next.committed_at_ms = self.now_ms();
            // Whatever took segments out (compaction, retention), GC's grace for them starts
            // now, when the table stops referencing them.
            let kept: std::collections::HashSet<&str> =
                next.segments.iter().map(|s| s.path.as_str()).collect();
            let removed: Vec<Unreferenced> = current
                .segments
                .iter()
                .filter(|s| !kept.contains(s.path.as_str()))
                .map(|s| Unreferenced {
                    path: s.path.clone(),
                    since_ms: next.committed_at_ms,
                })
                .collect();
            next.unreferenced.extend(removed);
            match self.put_version(&next).await? {
                PutOutcome::Won => {
                    self.write_hint(&table, next.version).await;
                    self.mark_checked(&table);
                    return Ok(self.remember(next));
                }
                PutOutcome::Lost => {
                    if attempt >= self.policy.max_attempts {
                        return Err(Error::CommitConflict {
                            table,
                            attempts: attempt,
                            elapsed: started.elapsed(),
                        });
                    }
                    let cap = self
                        .policy
                        .base_backoff
                        .saturating_mul(1 << attempt.min(16))
                        .min(self.policy.max_backoff);
                    let sleep = rand::rng().random_range(Duration::ZERO..=cap);
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }

    /// Per shard, the offset after the last acknowledged record (the WAL tail included):
    /// a record acknowledged before this call has a smaller offset.
    ///
    /// A flush may commit and delete WAL entries between reading the manifest and listing
    /// the WAL; the flush commits before it deletes, so the manifest read after the listing
    /// holds the offsets of whatever the listing missed.
    pub async fn shard_end_offsets(&self, table: &str) -> Result<BTreeMap<u32, u64>> {
        let before = self.load(table).await?;
        let mut ends = BTreeMap::new();
        for shard in 0..before.table.num_shards {
            let from = before.shard(shard)?.flushed_wal_seq;
            let entries = crate::wal::list(self.store.as_ref(), table, shard, from).await?;
            let mut end = 0;
            for (_, meta) in entries.iter().rev() {
                let bytes = match self.store.get(&meta.location).await {
                    Ok(r) => r.bytes().await?,
                    // Flushed and deleted since the listing: the second load covers it.
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                let e = crate::wal::decode(&bytes)?;
                end = e.header.first_offset + e.header.rows;
                break;
            }
            ends.insert(shard, end);
        }
        let after = self.load(table).await?;
        for (shard, end) in ends.iter_mut() {
            *end = (*end).max(after.shard(*shard)?.flushed_offset);
        }
        Ok(ends)
    }

    /// Hide the rows of `table` matching `predicate` (SQL over the table's columns) that were
    /// acknowledged before this call; rows written later are not affected. Queries apply
    /// the rule at once, compaction makes it physical. Returns the committed manifest and the
    /// rule's id. The predicate is not checked here (the query path does that).
    pub async fn add_delete_rule(
        &self,
        table: &str,
        predicate: &str,
    ) -> Result<(Arc<TableManifest>, u64)> {
        let below = self.shard_end_offsets(table).await?;
        let created_at_ms = self.now_ms();
        let mut id = 0;
        let m = self
            .commit(table, |m| {
                id = m.next_delete_id;
                m.next_delete_id += 1;
                m.deletes.push(crate::manifest::DeleteRule {
                    id,
                    predicate: predicate.to_string(),
                    below_offsets: below.clone(),
                    created_at_ms,
                });
                Ok(())
            })
            .await?;
        Ok((m, id))
    }

    /// Become the writer of `table`/`shard`: bump its epoch. Any older writer is fenced from
    /// then on. Returns the new epoch and the manifest that holds it.
    pub async fn claim_shard(&self, table: &str, shard: u32) -> Result<(u64, Arc<TableManifest>)> {
        let m = self
            .commit(table, |m| {
                let s = m.shard_mut(shard)?;
                s.epoch += 1;
                Ok(())
            })
            .await?;
        Ok((m.shard(shard)?.epoch, m))
    }

    async fn put_version(&self, m: &TableManifest) -> Result<PutOutcome> {
        let path = paths::manifest_version(&m.table.name, m.version);
        let body = m.encode()?;
        let opts = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(PutOutcome::Won),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                // Either another committer won, or our own earlier attempt landed but its
                // response was lost and a retry layer tried again: read it back to know.
                match self.load_version(&m.table.name, m.version).await {
                    Ok(existing) if existing.commit_id == m.commit_id => Ok(PutOutcome::Won),
                    Ok(_) => Ok(PutOutcome::Lost),
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                // Unknown outcome: the object may exist. Check before reporting failure.
                match self.load_version(&m.table.name, m.version).await {
                    Ok(existing) if existing.commit_id == m.commit_id => Ok(PutOutcome::Won),
                    Ok(_) => Ok(PutOutcome::Lost),
                    Err(_) => Err(Error::ObjectStore(e)),
                }
            }
        }
    }

    async fn newest_version_after(&self, table: &str, after: Option<u64>) -> Result<Option<u64>> {
        let dir = paths::manifest_dir(table);
        let stream = match after {
            Some(v) => self
                .store
                .list_with_offset(Some(&dir), &paths::manifest_version(table, v)),
            None => self.store.list(Some(&dir)),
        };
        let newest = stream
            .try_fold(None::<u64>, |acc, meta| async move {
                Ok(match paths::parse_manifest_version(&meta.location) {
                    Some(v) if after.is_none_or(|a| v > a) => Some(acc.map_or(v, |a| a.max(v))),
                    _ => acc,
                })
            })
            .await?;
        Ok(newest)
    }

    async fn read_hint(&self, table: &str) -> Option<u64> {
        let r = self
            .store
            .get(&paths::manifest_latest_hint(table))
            .await
            .ok()?;
        let bytes = r.bytes().await.ok()?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    async fn write_hint(&self, table: &str, version: u64) {
        let path: Path = paths::manifest_latest_hint(table);
        if let Err(e) = self
            .store
            .put(&path, PutPayload::from(version.to_string()))
            .await
        {
            tracing::debug!(table, version, error = %e, "could not update the manifest hint");
        }
    }

    fn remember(&self, m: TableManifest) -> Arc<TableManifest> {
        let m = Arc::new(m);
        if let Ok(mut latest) = self.latest.lock() {
            let entry = latest
                .entry(m.table.name.clone())
                .or_insert_with(|| Arc::clone(&m));
            if entry.version < m.version {
                *entry = Arc::clone(&m);
            }
        }
        m
    }
}

enum PutOutcome {
    Won,
    Lost,
}
