//! [`Prefixed`]: `object_store`'s [`PrefixStore`], with relative locations from reads too.
//!
//! In object_store 0.13 `PrefixStore::get_opts` returns the inner store's metadata as is, so
//! `head(p).location` and `get(p).meta.location` carry the prefix (`test/x/tables/...` for
//! `tables/...`), unlike the paths of listings and of every other call. A caller that acts on
//! such a location (GC deleting what it just `head`ed, a cache keyed by `meta.location`) then
//! addresses `prefix/prefix/...`, which does not exist. This wrapper strips the prefix there
//! and delegates everything else.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// A [`PrefixStore`] whose `get_opts` metadata is relative to the prefix as well.
#[derive(Debug)]
pub(crate) struct Prefixed<T: ObjectStore> {
    inner: PrefixStore<T>,
    prefix: Path,
}

impl<T: ObjectStore> Prefixed<T> {
    pub(crate) fn new(store: T, prefix: Path) -> Self {
        Self {
            inner: PrefixStore::new(store, prefix.clone()),
            prefix,
        }
    }
}

impl<T: ObjectStore> fmt::Display for Prefixed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: ObjectStore> ObjectStore for Prefixed<T> {
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
        let mut r = self.inner.get_opts(location, options).await?;
        let relative: Option<Path> = r
            .meta
            .location
            .prefix_match(&self.prefix)
            .map(Iterator::collect);
        if let Some(relative) = relative {
            r.meta.location = relative;
        }
        Ok(r)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
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
    use std::sync::Arc;

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn reads_report_locations_relative_to_the_prefix() {
        let inner = Arc::new(InMemory::new());
        let store = Prefixed::new(Arc::clone(&inner), Path::from("root/sub"));
        let p = Path::from("a/b");
        store.put(&p, "x".into()).await.unwrap();
        assert_eq!(store.head(&p).await.unwrap().location, p);
        assert_eq!(store.get(&p).await.unwrap().meta.location, p);
        assert_eq!(
            inner.head(&Path::from("root/sub/a/b")).await.unwrap().size,
            1
        );
        // The upstream store leaks the prefix; if this starts failing, `Prefixed` can go.
        let upstream = PrefixStore::new(inner, Path::from("root/sub"));
        assert_eq!(
            upstream.head(&p).await.unwrap().location,
            Path::from("root/sub/a/b")
        );
    }
}
