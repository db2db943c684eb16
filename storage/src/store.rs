//! Opening an object store from a URL.
//!
//! | URL | store |
//! |---|---|
//! | `file:///abs/path` or a plain path | [`LocalFileSystem`] rooted at the folder (created if missing) |
//! | `s3://bucket/prefix` | [`AmazonS3`](object_store::aws::AmazonS3), configured from [`S3Options`] and `AWS_*` |
//! | `memory://` | [`InMemory`], for unit tests |
//!
//! Every store is rooted at its prefix (for S3 a prefix store that also strips the prefix
//! from the metadata reads return) so the rest of Strata uses paths relative to
//! the root it was given. For S3 the bucket is created if missing (with aws-sdk-s3, which
//! object_store cannot do). [`verify_conditional_writes`] proves at startup that the store
//! honours If-None-Match and If-Match, because commits are only safe if it does.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use url::Url;

use crate::error::{Error, Result};
use crate::prefix::Prefixed;

/// S3 connection settings. Unset fields fall back to the standard `AWS_*` environment
/// variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
    /// Create the bucket if it does not exist. Default: true.
    pub create_bucket: bool,
}

impl S3Options {
    /// Settings taken from the `AWS_*` environment only.
    pub fn from_env() -> Self {
        Self {
            create_bucket: true,
            ..Self::default()
        }
    }

    fn resolved(&self) -> ResolvedS3 {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"));
        let allow_http = self.allow_http.unwrap_or_else(|| {
            env("AWS_ALLOW_HTTP").is_some_and(|v| v == "true" || v == "1")
                || endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"))
        });
        ResolvedS3 {
            endpoint,
            region: self
                .region
                .clone()
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id: self
                .access_key_id
                .clone()
                .or_else(|| env("AWS_ACCESS_KEY_ID")),
            secret_access_key: self
                .secret_access_key
                .clone()
                .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
            session_token: env("AWS_SESSION_TOKEN"),
            allow_http,
        }
    }
}

#[derive(Debug, Clone)]
struct ResolvedS3 {
    endpoint: Option<String>,
    region: String,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    allow_http: bool,
}

/// What kind of backend a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    S3,
    Memory,
}

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local { root: std::path::PathBuf },
    S3 { bucket: String, prefix: String },
    Memory,
}

impl StoreUrl {
    /// Parse `file:///path`, a bare path, `s3://bucket/prefix` or `memory://`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::Config("the object store URL is empty".into()));
        }
        if !s.contains("://") {
            return Ok(StoreUrl::Local {
                root: absolute(std::path::Path::new(s))?,
            });
        }
        let url = Url::parse(s).map_err(|e| {
            Error::Config(format!(
                "invalid object store URL `{s}`: {e}; expected file:///path, s3://bucket/prefix or memory://"
            ))
        })?;
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|()| {
                    Error::Config(format!(
                        "`{s}` is not an absolute file URL; use file:///abs/path"
                    ))
                })?;
                Ok(StoreUrl::Local { root: path })
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() {
                    return Err(Error::Config(format!(
                        "`{s}` names no bucket; use s3://bucket/prefix"
                    )));
                }
                let prefix = url.path().trim_matches('/').to_string();
                Ok(StoreUrl::S3 { bucket, prefix })
            }
            "memory" => Ok(StoreUrl::Memory),
            other => Err(Error::Config(format!(
                "unsupported object store scheme `{other}` in `{s}`; expected file://, s3:// or memory://"
            ))),
        }
    }

    pub fn kind(&self) -> StoreKind {
        match self {
            StoreUrl::Local { .. } => StoreKind::Local,
            StoreUrl::S3 { .. } => StoreKind::S3,
            StoreUrl::Memory => StoreKind::Memory,
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Local { root } => write!(f, "file://{}", root.display()),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::Memory => write!(f, "memory://"),
        }
    }
}

fn absolute(p: &std::path::Path) -> Result<std::path::PathBuf> {
    std::path::absolute(p).map_err(|e| Error::Config(format!("bad path {}: {e}", p.display())))
}

/// Open the store named by `url`. For S3 the bucket is created when missing and
/// `opts.create_bucket` is set. The returned store is rooted at the URL's prefix.
pub async fn open_store(url: &StoreUrl, opts: &S3Options) -> Result<Arc<dyn ObjectStore>> {
    match url {
        StoreUrl::Local { root } => {
            std::fs::create_dir_all(root).map_err(|e| {
                Error::Config(format!("cannot create data folder {}: {e}", root.display()))
            })?;
            let fs = LocalFileSystem::new_with_prefix(root)
                .map_err(|e| Error::Config(format!("cannot open {}: {e}", root.display())))?
                .with_automatic_cleanup(true);
            Ok(Arc::new(fs))
        }
        StoreUrl::Memory => Ok(Arc::new(InMemory::new())),
        StoreUrl::S3 { bucket, prefix } => {
            let r = opts.resolved();
            if r.access_key_id.is_none() || r.secret_access_key.is_none() {
                return Err(Error::Config(format!(
                    "no credentials for s3://{bucket}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (and AWS_ENDPOINT_URL for MinIO; `minio/s3.sh env` prints them for the local stack)"
                )));
            }
            if opts.create_bucket {
                crate::s3::ensure_bucket(
                    bucket,
                    &r.endpoint,
                    &r.region,
                    &r.access_key_id,
                    &r.secret_access_key,
                    &r.session_token,
                )
                .await?;
            }
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&r.region)
                .with_allow_http(r.allow_http)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
            if let Some(e) = &r.endpoint {
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            }
            if let Some(k) = &r.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &r.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            if let Some(t) = &r.session_token {
                b = b.with_token(t);
            }
            // Retries are ours (see `decorators::RetryStore`), so the client's own are off.
            b = b.with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            });
            let s3 = b
                .build()
                .map_err(|e| Error::Config(format!("s3://{bucket}: {e}")))?;
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(Prefixed::new(s3, Path::from(prefix.as_str()))))
            }
        }
    }
}

/// Prove the store honours If-None-Match (create-only put) and, where the backend offers it,
/// If-Match (compare-and-swap put). Writes and removes two small probe objects.
pub async fn verify_conditional_writes(store: &dyn ObjectStore, url: &StoreUrl) -> Result<()> {
    let unsupported = |detail: String| Error::ConditionalWritesUnsupported {
        url: url.to_string(),
        detail,
    };
    let probe = Path::from(format!("_strata/probe/{}", uuid::Uuid::new_v4()));
    let create = PutOptions::from(PutMode::Create);
    let first = store
        .put_opts(
            &probe,
            PutPayload::from(Bytes::from_static(b"1")),
            create.clone(),
        )
        .await
        .map_err(|e| classify_unreachable(e, url))?;
    match store
        .put_opts(&probe, PutPayload::from(Bytes::from_static(b"2")), create)
        .await
    {
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {}
        Ok(_) => {
            let _ = store.delete(&probe).await;
            return Err(unsupported(
                "a second If-None-Match: * PUT of the same key succeeded".into(),
            ));
        }
        Err(e) => return Err(Error::ObjectStore(e)),
    }
    if url.kind() == StoreKind::S3 {
        let stale = UpdateVersion {
            e_tag: Some("\"00000000000000000000000000000000\"".into()),
            version: None,
        };
        let r = store
            .put_opts(
                &probe,
                PutPayload::from(Bytes::from_static(b"3")),
                PutOptions::from(PutMode::Update(stale)),
            )
            .await;
        match r {
            Err(object_store::Error::Precondition { .. }) => {}
            Ok(_) => {
                let _ = store.delete(&probe).await;
                return Err(unsupported(
                    "an If-Match PUT with a stale ETag succeeded".into(),
                ));
            }
            Err(e) => return Err(Error::ObjectStore(e)),
        }
        let current = UpdateVersion::from(first);
        store
            .put_opts(
                &probe,
                PutPayload::from(Bytes::from_static(b"4")),
                PutOptions::from(PutMode::Update(current)),
            )
            .await
            .map_err(|e| {
                unsupported(format!("an If-Match PUT with the current ETag failed: {e}"))
            })?;
    }
    store.delete(&probe).await?;
    Ok(())
}

/// Turn the first error against a store into one line saying what to check.
fn classify_unreachable(e: object_store::Error, url: &StoreUrl) -> Error {
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::Config(format!(
            "access to {url} was refused ({}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
            one_line(&e.to_string())
        )),
        other => Error::Unavailable(format!(
            "cannot write to {url}: {}",
            one_line(&other.to_string())
        )),
    }
}

/// An error text on one line: S3 errors quote the server's XML body, newlines included.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            StoreUrl::parse("s3://b/p/q").unwrap(),
            StoreUrl::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("file:///tmp/x").unwrap(),
            StoreUrl::Local {
                root: "/tmp/x".into()
            }
        );
        assert!(matches!(
            StoreUrl::parse("./data").unwrap(),
            StoreUrl::Local { .. }
        ));
        let e = StoreUrl::parse("gs://b").unwrap_err().to_string();
        assert!(e.contains("unsupported object store scheme `gs`"), "{e}");
        assert!(StoreUrl::parse("s3:///nobucket").is_err());
    }

    #[tokio::test]
    async fn memory_and_local_pass_the_conditional_write_probe() {
        let url = StoreUrl::Memory;
        let store = open_store(&url, &S3Options::default()).await.unwrap();
        verify_conditional_writes(store.as_ref(), &url)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Local {
            root: dir.path().join("bucket"),
        };
        let store = open_store(&url, &S3Options::default()).await.unwrap();
        verify_conditional_writes(store.as_ref(), &url)
            .await
            .unwrap();
    }
}
