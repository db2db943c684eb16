//! Table manifests with a short time-to-live, so a burst of queries costs one manifest
//! read per table while results stay fresh within [`QueryConfig::manifest_ttl`].
//!
//! [`QueryConfig::manifest_ttl`]: crate::QueryConfig::manifest_ttl

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_storage::{Catalog, TableManifest};

use crate::error::{Error, Result};
use crate::ttl_map::TtlMap;

/// Newest manifests per table, reused for `ttl`.
#[derive(Debug)]
pub(crate) struct ManifestCache {
    catalog: Catalog,
    ttl: Duration,
    entries: TtlMap<String, Arc<TableManifest>>,
    tables: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

impl ManifestCache {
    /// Tables whose manifests are kept at most.
    const MAX_ENTRIES: usize = 100_000;

    pub(crate) fn new(catalog: Catalog, ttl: Duration) -> Self {
        Self {
            catalog,
            ttl,
            entries: TtlMap::new(ttl, Self::MAX_ENTRIES),
            tables: Mutex::default(),
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
        if let Some(m) = self.entries.get(&name) {
            return Ok(Some(m));
        }
        let ticket = self.entries.ticket();
        match self.catalog.load(&name).await {
            Ok(m) => {
                // Never in place of a newer version another query already cached.
                let version = m.version;
                self.entries.put(name, Arc::clone(&m), ticket, |known| {
                    known.version > version
                });
                Ok(Some(m))
            }
            Err(strata_storage::Error::TableNotFound(_)) => Ok(None),
            Err(e) => Err(Error::Storage(e)),
        }
    }

    /// Forget `table` (its definition or rules changed in this process) and the table list.
    pub(crate) fn invalidate(&self, table: &str) {
        self.entries
            .invalidate(|name| name.eq_ignore_ascii_case(table));
        *self.tables.lock() = None;
    }

    /// Forget `table` if this cache holds a version older than `version` (a commit this
    /// process made or saw, e.g. a write that added a column).
    pub(crate) fn saw_version(&self, table: &str, version: u64) {
        let stale = self
            .entries
            .peek(&table.to_ascii_lowercase())
            .is_some_and(|m| m.version < version);
        if stale {
            self.invalidate(table);
        }
    }

    /// Forget everything (after a stale plan, when the culprit table is unknown).
    pub(crate) fn invalidate_all(&self) {
        self.entries.invalidate(|_| true);
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
