//! Tests of the decorators, against `InMemory` with `FaultStore` injecting the failures.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use prometheus::Registry;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn memory() -> Arc<InMemory> {
    Arc::new(InMemory::new())
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        seed: Some(1),
    }
}

fn metrics() -> Result<(Registry, Arc<StoreMetrics>), prometheus::Error> {
    let registry = Registry::new();
    let metrics = Arc::new(StoreMetrics::new(&registry)?);
    Ok((registry, metrics))
}

fn exposition(registry: &Registry) -> Result<String, prometheus::Error> {
    prometheus::TextEncoder::new().encode_to_string(&registry.gather())
}

fn create() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

// ---- backoff ----

#[test]
fn backoff_stays_below_the_capped_exponential_bound_and_spans_it() {
    let policy = RetryPolicy {
        base: Duration::from_millis(10),
        max_backoff: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let mut rng = StdRng::seed_from_u64(42);
    for attempt in 0..70u32 {
        let exponential = 10_000_000u128.saturating_mul(1u128 << attempt.min(100));
        let cap = Duration::from_nanos(exponential.min(1_000_000_000) as u64);
        let mut largest = Duration::ZERO;
        for _ in 0..200 {
            let d = backoff(attempt, &policy, &mut rng);
            assert!(d < cap, "attempt {attempt}: {d:?} not below {cap:?}");
            largest = largest.max(d);
        }
        // Full jitter: the samples reach well into the upper half of the range.
        assert!(
            largest >= cap / 2,
            "attempt {attempt}: largest {largest:?} of {cap:?}"
        );
    }
    assert!(backoff(u32::MAX, &policy, &mut rng) < policy.max_backoff);
}

#[test]
fn backoff_is_zero_without_a_base_and_reproducible_with_a_seed() {
    let zero = RetryPolicy {
        base: Duration::ZERO,
        ..RetryPolicy::default()
    };
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(backoff(3, &zero, &mut rng), Duration::ZERO);

    let policy = RetryPolicy::default();
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..8)
            .map(|a| backoff(a, &policy, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
}

#[test]
fn definite_answers_are_not_retryable() {
    let precondition = object_store::Error::Precondition {
        path: "a".into(),
        source: "etag".into(),
    };
    let not_found = object_store::Error::NotFound {
        path: "a".into(),
        source: "gone".into(),
    };
    let generic = object_store::Error::Generic {
        store: "s3",
        source: "503".into(),
    };
    assert!(!is_retryable(&precondition));
    assert!(!is_retryable(&not_found));
    assert!(is_retryable(&generic));
}

// ---- retry ----

#[tokio::test]
async fn retry_succeeds_after_transient_failures() -> TestResult {
    let mem = memory();
    let fault = Arc::new(FaultStore::new(
        Arc::clone(&mem) as _,
        FaultConfig::default(),
    ));
    fault.fail_next_requests(3);
    let store = RetryStore::new(Arc::clone(&fault) as _, fast_policy(5));
    let path = Path::from("wal/00001");

    store.put(&path, PutPayload::from_static(b"hello")).await?;

    assert_eq!(store.retries(), 3);
    assert_eq!(fault.counts().errors, 3);
    assert_eq!(mem.get(&path).await?.bytes().await?.as_ref(), b"hello");
    Ok(())
}

#[tokio::test]
async fn retry_never_retries_a_precondition_or_already_exists() -> TestResult {
    let (_registry, metrics) = metrics()?;
    let metered = Arc::new(MetricsStore::new(memory(), Arc::clone(&metrics)));
    let store = RetryStore::new(metered, fast_policy(5));
    let path = Path::from("manifest/v1");
    store.put(&path, PutPayload::from_static(b"v1")).await?;

    let stale = PutOptions::from(PutMode::Update(UpdateVersion {
        e_tag: Some("not-the-etag".into()),
        version: None,
    }));
    let err = store
        .put_opts(&path, PutPayload::from_static(b"v2"), stale)
        .await
        .expect_err("a stale If-Match must fail");
    assert!(
        matches!(err, object_store::Error::Precondition { .. }),
        "{err}"
    );
    assert_eq!(metrics.requests(StoreOp::Put), 2, "one attempt each");

    let err = store
        .put_opts(&path, PutPayload::from_static(b"v2"), create())
        .await
        .expect_err("If-None-Match on an existing object must fail");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(metrics.requests(StoreOp::Put), 3, "one attempt each");
    assert_eq!(store.retries(), 0);
    Ok(())
}

#[tokio::test]
async fn retry_gives_up_after_max_attempts() -> TestResult {
    let (_registry, metrics) = metrics()?;
    let fault = Arc::new(FaultStore::new(memory(), FaultConfig::default()));
    fault.set_down(true);
    let metered = Arc::new(MetricsStore::new(
        Arc::clone(&fault) as _,
        Arc::clone(&metrics),
    ));
    let store = RetryStore::new(metered, fast_policy(4));
    let path = Path::from("wal/00002");

    let err = store
        .put(&path, PutPayload::from_static(b"x"))
        .await
        .expect_err("the store is down");
    assert!(
        matches!(err, object_store::Error::Generic { store: "retry", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_eq!(metrics.requests(StoreOp::Put), 4);
    assert_eq!(metrics.errors(StoreOp::Put), 4);
    assert_eq!(store.retries(), 3);
    assert_eq!(fault.counts().outages, 4);

    fault.set_down(false);
    store.put(&path, PutPayload::from_static(b"x")).await?;
    assert_eq!(metrics.requests(StoreOp::Put), 5);
    Ok(())
}

#[tokio::test]
async fn retried_create_whose_first_attempt_landed_reports_already_exists() -> TestResult {
    let mem = memory();
    let fault = Arc::new(FaultStore::new(
        Arc::clone(&mem) as _,
        FaultConfig::default(),
    ));
    fault.fail_next_puts_after_upload(1);
    let store = RetryStore::new(Arc::clone(&fault) as _, fast_policy(5));
    let path = Path::from("manifest/v2");

    let err = store
        .put_opts(&path, PutPayload::from_static(b"mine"), create())
        .await
        .expect_err("the retry meets the first attempt's object");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("may have been applied"), "{err}");
    assert_eq!(store.retries(), 1);
    assert_eq!(mem.get(&path).await?.bytes().await?.as_ref(), b"mine");
    Ok(())
}

#[tokio::test]
async fn retry_restarts_a_listing_that_fails_before_its_first_item() -> TestResult {
    let mem = memory();
    for name in ["t/a", "t/b"] {
        mem.put(&Path::from(name), PutPayload::from_static(b"1"))
            .await?;
    }
    let config = FaultConfig {
        ops: vec![StoreOp::List],
        ..FaultConfig::default()
    };
    let fault = Arc::new(FaultStore::new(mem, config));
    fault.fail_next_requests(2);
    let store = RetryStore::new(Arc::clone(&fault) as _, fast_policy(5));

    let listed: Vec<_> = store.list(Some(&Path::from("t"))).try_collect().await?;
    assert_eq!(listed.len(), 2);
    assert_eq!(store.retries(), 2);
    Ok(())
}

#[tokio::test]
async fn retry_redeletes_only_unconfirmed_locations() -> TestResult {
    let mem = memory();
    let paths: Vec<Path> = ["g/1", "g/2", "g/3"].into_iter().map(Path::from).collect();
    for p in &paths {
        mem.put(p, PutPayload::from_static(b"1")).await?;
    }
    let config = FaultConfig {
        ops: vec![StoreOp::Delete],
        ..FaultConfig::default()
    };
    let fault = Arc::new(FaultStore::new(Arc::clone(&mem) as _, config));
    fault.fail_next_requests(1);
    let store = RetryStore::new(Arc::clone(&fault) as _, fast_policy(5));

    let input = stream::iter(paths.clone().into_iter().map(Ok)).boxed();
    let mut deleted: Vec<Path> = store.delete_stream(input).try_collect().await?;
    deleted.sort();
    assert_eq!(deleted, paths, "each location reported once");
    assert_eq!(store.retries(), 1);
    assert_eq!(fault.counts().errors, 1);
    assert_eq!(mem.list(None).count().await, 0);
    Ok(())
}

// ---- timeout ----

#[tokio::test]
async fn timeout_fires_on_latency_longer_than_the_bound() -> TestResult {
    let mem = memory();
    let path = Path::from("seg/slow.parquet");
    mem.put(&path, PutPayload::from_static(b"data")).await?;
    let latency = Duration::from_millis(100);
    let config = FaultConfig {
        latency: Some((latency, latency)),
        ..FaultConfig::default()
    };
    let slow: Arc<dyn ObjectStore> = Arc::new(FaultStore::new(mem, config));

    let timed = TimeoutStore::new(Arc::clone(&slow), Duration::from_millis(10));
    let start = Instant::now();
    let err = timed
        .get(&path)
        .await
        .expect_err("100ms latency, 10ms bound");
    assert!(
        start.elapsed() < latency,
        "fired after {:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            object_store::Error::Generic {
                store: "timeout",
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    for part in ["get", "seg/slow.parquet", "10ms"] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }

    let listed = timed.list(None).next().await;
    assert!(
        matches!(
            listed,
            Some(Err(object_store::Error::Generic {
                store: "timeout",
                ..
            }))
        ),
        "{listed:?}"
    );

    let generous = TimeoutStore::new(slow, Duration::from_secs(5));
    assert_eq!(generous.get(&path).await?.bytes().await?.as_ref(), b"data");
    Ok(())
}

// ---- metrics ----

#[tokio::test]
async fn metrics_count_requests_and_bytes() -> TestResult {
    let (registry, metrics) = metrics()?;
    let store = MetricsStore::new(memory(), Arc::clone(&metrics));
    let path = Path::from("seg/a.parquet");

    store.put(&path, PutPayload::from(vec![7u8; 1000])).await?;
    assert_eq!(metrics.requests(StoreOp::Put), 1);
    assert_eq!(metrics.bytes_written(), 1000);

    let body = store.get(&path).await?.bytes().await?;
    assert_eq!(body.len(), 1000);
    let range = store.get_range(&path, 10..30).await?;
    assert_eq!(range.len(), 20);
    let meta = store.head(&path).await?;
    assert_eq!(meta.size, 1000);
    assert_eq!(metrics.requests(StoreOp::Get), 1);
    assert_eq!(metrics.requests(StoreOp::GetRange), 1);
    assert_eq!(metrics.requests(StoreOp::Head), 1);
    assert_eq!(metrics.bytes_read(), 1020);

    let missing = store.get(&Path::from("seg/none")).await;
    assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
    assert_eq!(metrics.requests(StoreOp::Get), 2);
    assert_eq!(metrics.errors(StoreOp::Get), 1);

    let text = exposition(&registry)?;
    for needle in [
        REQUESTS_TOTAL,
        ERRORS_TOTAL,
        BYTES_TOTAL,
        REQUEST_DURATION_SECONDS,
        "kind=\"not_found\"",
        "direction=\"written\"",
    ] {
        assert!(text.contains(needle), "exposition lacks {needle}");
    }
    Ok(())
}

#[tokio::test]
async fn metrics_count_multipart_parts_and_bytes() -> TestResult {
    let (_registry, metrics) = metrics()?;
    let store = MetricsStore::new(memory(), Arc::clone(&metrics));
    let path = Path::from("seg/big.parquet");

    let mut upload = store.put_multipart(&path).await?;
    upload.put_part(PutPayload::from(vec![1u8; 300])).await?;
    upload.put_part(PutPayload::from(vec![2u8; 200])).await?;
    upload.complete().await?;

    assert_eq!(
        metrics.requests(StoreOp::PutMultipart),
        4,
        "create, 2 parts, complete"
    );
    assert_eq!(metrics.bytes_written(), 500);
    assert_eq!(store.get(&path).await?.bytes().await?.len(), 500);
    Ok(())
}

#[tokio::test]
async fn layered_stack_counts_every_timed_out_attempt() -> TestResult {
    let mem = memory();
    let path = Path::from("seg/b.parquet");
    mem.put(&path, PutPayload::from_static(b"b")).await?;
    let latency = Duration::from_millis(60);
    let config = FaultConfig {
        latency: Some((latency, latency)),
        ..FaultConfig::default()
    };
    let slow = Arc::new(FaultStore::new(mem, config));
    let opts = LayerOptions {
        timeout: Duration::from_millis(5),
        retry: fast_policy(3),
    };
    let registry = Registry::new();
    let (store, metrics) = layered(Arc::clone(&slow) as _, &opts, &registry)?;

    let shown = store.to_string();
    assert!(
        shown.starts_with("RetryStore(max_attempts=3, MetricsStore(TimeoutStore("),
        "{shown}"
    );
    let err = store
        .head(&path)
        .await
        .expect_err("every attempt times out");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert_eq!(metrics.requests(StoreOp::Head), 3);
    assert_eq!(metrics.errors(StoreOp::Head), 3);
    assert_eq!(metrics.retries(StoreOp::Head), 2);
    assert!(exposition(&registry)?.contains("kind=\"timeout\""));
    assert!(
        layered(memory(), &opts, &registry).is_err(),
        "already registered"
    );
    Ok(())
}

// ---- faults ----

async fn fault_pattern(seed: u64) -> Result<(Vec<bool>, FaultCounts), object_store::Error> {
    let mem = memory();
    let path = Path::from("x");
    mem.put(&path, PutPayload::from_static(b"x")).await?;
    let config = FaultConfig {
        seed,
        error_rate: 0.5,
        ..FaultConfig::default()
    };
    let fault = FaultStore::new(mem, config);
    let mut failed = Vec::new();
    for _ in 0..64 {
        failed.push(fault.head(&path).await.is_err());
    }
    Ok((failed, fault.counts()))
}

#[tokio::test]
async fn fault_sequence_is_reproducible_from_the_seed() -> TestResult {
    let (first, counts) = fault_pattern(7).await?;
    let (again, _) = fault_pattern(7).await?;
    let (other, _) = fault_pattern(8).await?;
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    let injected = first.iter().filter(|&&f| f).count() as u64;
    assert_eq!(counts.errors, injected);
    Ok(())
}

#[tokio::test]
async fn fault_ops_filter_limits_random_errors() -> TestResult {
    let mem = memory();
    let path = Path::from("y");
    mem.put(&path, PutPayload::from_static(b"y")).await?;
    let config = FaultConfig {
        error_rate: 1.0,
        ops: vec![StoreOp::Put],
        ..FaultConfig::default()
    };
    let fault = FaultStore::new(mem, config);
    assert!(
        fault
            .put(&path, PutPayload::from_static(b"z"))
            .await
            .is_err()
    );
    assert_eq!(fault.get(&path).await?.bytes().await?.as_ref(), b"y");
    assert_eq!(fault.counts().errors, 1);
    Ok(())
}

#[tokio::test]
async fn fail_next_puts_after_upload_stores_the_object_but_reports_an_error() -> TestResult {
    let mem = memory();
    let fault = FaultStore::new(Arc::clone(&mem) as _, FaultConfig::default());
    fault.fail_next_puts_after_upload(1);
    let path = Path::from("wal/00003");

    let err = fault
        .put(&path, PutPayload::from_static(b"acked?"))
        .await
        .expect_err("the response is lost");
    assert!(
        matches!(err, object_store::Error::Generic { store: "fault", .. }),
        "{err}"
    );
    assert_eq!(mem.get(&path).await?.bytes().await?.as_ref(), b"acked?");
    assert_eq!(fault.counts().failed_after_upload, 1);

    fault.put(&path, PutPayload::from_static(b"next")).await?;
    assert_eq!(fault.counts().failed_after_upload, 1, "only the next put");
    Ok(())
}
