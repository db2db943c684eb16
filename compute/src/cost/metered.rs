//! Requests a query makes through shared stores (the catalog's: manifest hints, listings and
//! loads) are counted into the query that made them: a [`MeteredStore`] adds each GET, HEAD
//! and LIST to the [`QueryCost`] of the task it runs in, set by [`metering`]. Outside a
//! metered task (ingest, compaction, the log-read path) nothing is counted.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::QueryCost;

tokio::task_local! {
    static METER: Arc<QueryCost>;
}

/// Runs `fut` with the requests of [`MeteredStore`]s it makes counted into `cost`.
pub async fn metering<F: Future>(cost: Arc<QueryCost>, fut: F) -> F::Output {
    METER.scope(cost, fut).await
}

fn meter(f: impl FnOnce(&QueryCost)) {
    let _ = METER.try_with(|c| f(c));
}

/// A store that counts requests into the current task's query (see [`metering`]).
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
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
        let head = options.head;
        let r = self.inner.get_opts(location, options).await;
        meter(|c| match &r {
            _ if head => c.bucket_head(),
            Ok(r) => c.bucket_get(r.range.end - r.range.start),
            // A request that failed (not found, a precondition) was still made.
            Err(_) => c.bucket_get(0),
        });
        r
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let out = self.inner.get_ranges(location, ranges).await?;
        meter(|c| out.iter().for_each(|b| c.bucket_get(b.len() as u64)));
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        meter(QueryCost::bucket_list);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        meter(QueryCost::bucket_list);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        meter(QueryCost::bucket_list);
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
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn requests_count_only_inside_a_metered_task() {
        let store = MeteredStore::new(Arc::new(InMemory::new()));
        let p = Path::from("a/b");
        store
            .put(&p, PutPayload::from_static(b"hello"))
            .await
            .unwrap();
        let cost = QueryCost::new();
        metering(Arc::clone(&cost), async {
            store.get(&p).await.unwrap().bytes().await.unwrap();
            store.head(&p).await.unwrap();
            let _ = store.list(None);
            let _ = store.get(&Path::from("missing")).await;
        })
        .await;
        // Outside the scope: not counted.
        store.get(&p).await.unwrap();
        let r = cost.report();
        assert_eq!((r.get_requests, r.get_bytes), (2, 5));
        assert_eq!((r.head_requests, r.list_requests), (1, 1));
    }
}
