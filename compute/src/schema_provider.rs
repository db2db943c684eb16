//! The `strata.public` schema: Strata tables, resolved lazily from the catalog.
//!
//! One provider is built per query. `table()` reads the table's manifest (through the
//! short-lived [`ManifestCache`]) and pins that version for the whole query. Table names
//! are listed only when the query needs them (`SHOW TABLES`, `information_schema`), since
//! DataFusion asks for them synchronously.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result as DFResult;

use crate::manifests::ManifestCache;
use crate::table::{ScanEnv, StrataTable};

/// Name of the one catalog.
pub const CATALOG_NAME: &str = "strata";
/// Name of the one schema holding Strata tables.
pub const SCHEMA_NAME: &str = "public";

#[derive(Debug)]
pub(crate) struct StrataSchema {
    manifests: Arc<ManifestCache>,
    env: ScanEnv,
    names: Arc<Vec<String>>,
}

impl StrataSchema {
    /// `names`: the table names to report, if the query lists tables (else empty).
    pub(crate) fn new(
        manifests: Arc<ManifestCache>,
        env: ScanEnv,
        names: Arc<Vec<String>>,
    ) -> Self {
        Self {
            manifests,
            env,
            names,
        }
    }
}

#[async_trait]
impl SchemaProvider for StrataSchema {
    fn table_names(&self) -> Vec<String> {
        self.names.as_ref().clone()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let manifest = self
            .manifests
            .get(name)
            .await
            .map_err(crate::Error::into_datafusion)?;
        Ok(manifest
            .map(|m| Arc::new(StrataTable::new(m, self.env.clone())) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}
