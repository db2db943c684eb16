//! The runtime's object-store registry: exactly one store, the cached Strata bucket.
//! DataFusion's default registry also serves `file://`; this one serves nothing else, so no
//! plan can read the node's local files.

use std::sync::Arc;

use datafusion::common::exec_err;
use datafusion::error::Result as DFResult;
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use url::Url;

#[derive(Debug)]
pub(crate) struct SingleStoreRegistry {
    key: String,
    store: Arc<dyn ObjectStore>,
}

impl SingleStoreRegistry {
    pub(crate) fn new(url: &Url, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            key: key(url),
            store,
        }
    }
}

fn key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for SingleStoreRegistry {
    fn register_store(
        &self,
        _url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        // Fixed at construction; nothing else may be added.
        None
    }

    fn get_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        if key(url) == self.key {
            Ok(Arc::clone(&self.store))
        } else {
            exec_err!("object store {url} is not available to queries")
        }
    }
}
