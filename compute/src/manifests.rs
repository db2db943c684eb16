//! Table manifests with a short time-to-live, so a burst of queries costs one manifest
//! read per table while results stay fresh within [`QueryConfig::manifest_ttl`].
//!
//! [`QueryConfig::manifest_ttl`]: crate::QueryConfig::manifest_ttl

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_storage::{Catalog, TableManifest};

use crate::error::{Error, Result};

/// Newest manifests per table, reused for `ttl`.
#[derive(Debug)]
pub(crate) struct ManifestCache {
    catalog: Catalog,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<TableManifest>)>>,
    tables: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
    /// Bumped by every invalidation: a load started before one is not kept.
    generation: std::sync::atomic::AtomicU64,
}

impl ManifestCache {
    pub(crate) fn new(catalog: Catalog, ttl: Duration) -> Self {
        Self {
            catalog,
            ttl,
            entries: Mutex::default(),
            tables: Mutex::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The manifest of `table`, at most `ttl` old; `None` if the table does not exist.
    pub(crate) async fn get(&self, table: &str) -> Result<Option<Arc<TableManifest>>> {
        let Ok(name) = strata_storage::manifest::validate_table_name(table) else {
            return Ok(None); // not a name any table can have
        };
        if let Some((at, m)) = self.entries.lock().get(&name)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(Arc::clone(m)));
        }
        let (loaded_at, generation) = (Instant::now(), self.generation());
        match self.catalog.load(&name).await {
            Ok(m) => {
                let mut entries = self.entries.lock();
                let newer_known = entries
                    .get(&name)
                    .is_some_and(|(_, known)| known.version > m.version);
                // Kept only if no invalidation happened meanwhile and it is not older than
                // what another query already cached; aged from before the read.
                if self.generation() == generation && !newer_known {
                    entries.insert(name, (loaded_at, Arc::clone(&m)));
                }
                Ok(Some(m))
            }
            Err(strata_storage::Error::TableNotFound(_)) => Ok(None),
            Err(e) => Err(Error::Storage(e)),
        }
    }

    /// Forget `table` (its definition or rules changed in this process) and the table list.
    pub(crate) fn invalidate(&self, table: &str) {
        let mut entries = self.entries.lock();
        self.bump();
        entries.retain(|name, _| !name.eq_ignore_ascii_case(table));
        *self.tables.lock() = None;
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forget `table` if this cache holds a version older than `version` (a commit this
    /// process made or saw, e.g. a write that added a column).
    pub(crate) fn saw_version(&self, table: &str, version: u64) {
        let stale = self
            .entries
            .lock()
            .get(&table.to_ascii_lowercase())
            .is_some_and(|(_, m)| m.version < version);
        if stale {
            self.invalidate(table);
        }
    }

    /// Forget everything (after a stale plan, when the culprit table is unknown).
    pub(crate) fn invalidate_all(&self) {
        let mut entries = self.entries.lock();
        self.bump();
        entries.clear();
        *self.tables.lock() = None;
    }

    /// Names of all tables, at most `ttl` old.
    pub(crate) async fn table_names(&self) -> Result<Arc<Vec<String>>> {
        if let Some((at, names)) = self.tables.lock().as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(names));
        }
        let names = Arc::new(self.catalog.list_tables().await?);
        *self.tables.lock() = Some((Instant::now(), Arc::clone(&names)));
        Ok(names)
    }
}
