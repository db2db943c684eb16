//! Opening the object store a process works on: URL → store → decorators → probe.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use strata_storage::decorators::{LayerOptions, RetryPolicy, StoreMetrics, layered};
use strata_storage::{S3Options, StoreUrl, open_store, verify_conditional_writes};

use crate::settings::Settings;

/// The process's object store, wrapped in retry, metrics and timeout layers.
pub struct OpenedStore {
    pub url: StoreUrl,
    pub store: Arc<dyn ObjectStore>,
    pub metrics: Arc<StoreMetrics>,
}

/// Open and verify the store; errors are one line saying what to fix.
pub async fn open(
    settings: &Settings,
    registry: &prometheus::Registry,
) -> Result<OpenedStore, String> {
    let url = StoreUrl::parse(&settings.object_store_url()).map_err(|e| e.to_string())?;
    let st = &settings.storage;
    let s3 = S3Options {
        endpoint: st.s3_endpoint.clone(),
        region: st.s3_region.clone(),
        access_key_id: st.s3_access_key_id.clone(),
        secret_access_key: st.s3_secret_access_key.clone(),
        allow_http: st.s3_allow_http,
        create_bucket: true,
    };
    let raw = open_store(&url, &s3).await.map_err(|e| e.to_string())?;
    let opts = LayerOptions {
        timeout: Duration::from_secs(st.request_timeout_secs.unwrap_or(30)),
        retry: RetryPolicy {
            max_attempts: st.retry_attempts.unwrap_or(5),
            ..RetryPolicy::default()
        },
    };
    let (store, metrics) = layered(raw, &opts, registry).map_err(|e| format!("metrics: {e}"))?;
    verify_conditional_writes(store.as_ref(), &url)
        .await
        .map_err(|e| e.to_string())?;
    Ok(OpenedStore {
        url,
        store,
        metrics,
    })
}
