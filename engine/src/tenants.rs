//! Tenants: each has its own catalog under `tenants/<name>/` in the bucket (the default
//! tenant, used when auth is off, lives at the root). Isolation is by prefix, so one
//! tenant's SQL can never name another's tables. Ingest memory and metrics are shared by the
//! process.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use strata_gateway::{BackendError, ErrorKind};
use strata_ingest::{Budget, IngestConfig, IngestMetrics, IngestNode};
use strata_storage::Catalog;
use tokio::sync::Mutex;

/// What one tenant has in this process.
pub struct Tenant {
    pub name: Option<String>,
    pub catalog: Catalog,
    pub ingest: Option<Arc<IngestNode>>,
    pub query: Option<Arc<strata_compute::QueryEngine>>,
}

struct IngestShared {
    cfg: Arc<IngestConfig>,
    metrics: IngestMetrics,
    budget: Arc<Budget>,
}

/// The roles a process runs, per tenant, created on first use.
pub struct Tenants {
    /// The bucket as the write path sees it (retry/metrics/timeout layers).
    store: Arc<dyn ObjectStore>,
    /// The bucket as the read path sees it (plus the cache layer).
    query_store: Option<Arc<dyn ObjectStore>>,
    query_shared: Option<crate::local::QueryShared>,
    ingest: Option<IngestShared>,
    map: Mutex<HashMap<Option<String>, Arc<Tenant>>>,
}

impl Tenants {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            query_store: None,
            query_shared: None,
            ingest: None,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Run shard writers for tenants in this process.
    pub fn with_ingest(
        mut self,
        cfg: IngestConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        let metrics = IngestMetrics::new(registry).map_err(|e| e.to_string())?;
        self.ingest = Some(IngestShared {
            budget: Arc::new(Budget::new(cfg.max_node_bytes)),
            cfg: Arc::new(cfg),
            metrics,
        });
        Ok(self)
    }

    /// Answer queries in this process, reading through `cached` (the cache decorator).
    pub fn with_query(
        mut self,
        cached: Arc<dyn ObjectStore>,
        shared: crate::local::QueryShared,
    ) -> Self {
        self.query_store = Some(cached);
        self.query_shared = Some(shared);
        self
    }

    /// Bytes buffered by this process's shard writers and the limit, if it runs any.
    pub fn ingest_buffered(&self) -> Option<(usize, usize)> {
        self.ingest
            .as_ref()
            .map(|i| (i.budget.used(), i.budget.limit()))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `store` as tenant `tenant` sees it (its prefix; the default tenant sees the root).
    pub(crate) fn scoped(
        store: &Arc<dyn ObjectStore>,
        tenant: Option<&str>,
    ) -> Arc<dyn ObjectStore> {
        match tenant {
            None => Arc::clone(store),
            Some(t) => Arc::new(PrefixStore::new(
                Arc::clone(store),
                Path::from(format!("tenants/{t}")),
            )),
        }
    }

    /// The tenant's catalog (the write-path view).
    pub async fn catalog(&self, tenant: Option<&str>) -> Result<Catalog, BackendError> {
        Ok(self.get(tenant).await?.catalog.clone())
    }

    /// The tenant, created on first use.
    pub async fn get(&self, tenant: Option<&str>) -> Result<Arc<Tenant>, BackendError> {
        if let Some(t) = tenant {
            validate_tenant(t)?;
        }
        let key = tenant.map(str::to_string);
        let mut map = self.map.lock().await;
        if let Some(t) = map.get(&key) {
            return Ok(Arc::clone(t));
        }
        let catalog = Catalog::new(Self::scoped(&self.store, tenant));
        let ingest = self.ingest.as_ref().map(|i| {
            Arc::new(IngestNode::with_shared(
                catalog.clone(),
                Arc::clone(&i.cfg),
                i.metrics.clone(),
                Arc::clone(&i.budget),
            ))
        });
        let query = match (&self.query_store, &self.query_shared) {
            (Some(qs), Some(shared)) => {
                // Manifest reads made while a query plans count into that query's cost.
                let metered = strata_compute::cost::MeteredStore::new(Self::scoped(qs, tenant));
                let qcat = Catalog::new(Arc::new(metered));
                Some(Arc::new(
                    shared
                        .engine(qcat, tenant)
                        .map_err(crate::errors::from_compute)?,
                ))
            }
            _ => None,
        };
        let t = Arc::new(Tenant {
            name: key.clone(),
            catalog,
            ingest,
            query,
        });
        map.insert(key, Arc::clone(&t));
        Ok(t)
    }

    /// Tenants that have data in the bucket (the default one included).
    pub async fn known(&self) -> Result<Vec<Option<String>>, BackendError> {
        let mut out = vec![None];
        let listing = self
            .store
            .list_with_delimiter(Some(&Path::from("tenants")))
            .await
            .map_err(|e| BackendError::new(ErrorKind::Unavailable, e.to_string()))?;
        for p in listing.common_prefixes {
            if let Some(name) = p.filename() {
                out.push(Some(name.to_string()));
            }
        }
        Ok(out)
    }

    /// Every tenant opened so far.
    pub async fn opened(&self) -> Vec<Arc<Tenant>> {
        self.map.lock().await.values().cloned().collect()
    }
}

fn validate_tenant(t: &str) -> Result<(), BackendError> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BackendError::new(
            ErrorKind::InvalidArgument,
            format!("invalid tenant name `{t}`: use 1-64 ASCII letters, digits, `_` or `-`"),
        ))
    }
}
