use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::Registry;

use super::{CacheOptions, CacheTier, CachedStore};

fn data(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>())
}

async fn store_with(path: &Path, bytes: &Bytes) -> Arc<dyn ObjectStore> {
    let s = InMemory::new();
    s.put(path, PutPayload::from(bytes.clone())).await.unwrap();
    Arc::new(s)
}

fn opts(memory: usize, dir: Option<&std::path::Path>) -> CacheOptions {
    CacheOptions {
        memory_bytes: memory,
        disk_bytes: 16 << 20,
        dir: dir.map(|d| d.to_path_buf()),
        block_bytes: 4096,
    }
}

#[tokio::test]
async fn ranges_match_the_object_and_repeat_reads_stay_local() {
    let path = Path::from("tables/t/seg/0000/a.parquet");
    let bytes = data(10_000);
    let cache = CachedStore::open(
        store_with(&path, &bytes).await,
        &opts(1 << 20, None),
        &Registry::new(),
    )
    .await
    .unwrap();
    let ranges = [0..10u64, 4000..4200, 4096..8192, 100..9_999, 9_000..10_000];
    for round in 0..2 {
        for r in &ranges {
            let got = cache.get_range(&path, r.clone()).await.unwrap();
            assert_eq!(got, bytes.slice(r.start as usize..r.end as usize), "{r:?}");
        }
        let many = cache.get_ranges(&path, &ranges).await.unwrap();
        for (r, got) in ranges.iter().zip(many) {
            assert_eq!(got, bytes.slice(r.start as usize..r.end as usize));
        }
        assert_eq!(
            cache.get(&path).await.unwrap().bytes().await.unwrap(),
            bytes
        );
        let suffix = GetOptions {
            range: Some(GetRange::Suffix(100)),
            ..GetOptions::default()
        };
        let r = cache.get_opts(&path, suffix).await.unwrap();
        assert_eq!(r.range, 9_900..10_000);
        assert_eq!(r.bytes().await.unwrap(), bytes.slice(9_900..));
        assert_eq!(cache.head(&path).await.unwrap().size, 10_000);
        // Past the end: clamped, as object_store does.
        assert_eq!(
            cache.get_range(&path, 9_990..20_000).await.unwrap(),
            bytes.slice(9_990..)
        );
        if round == 0 {
            assert_eq!(
                cache.bucket_bytes(),
                10_000,
                "every block fetched exactly once"
            );
        }
    }
    assert_eq!(
        cache.bucket_bytes(),
        10_000,
        "second round served from memory"
    );
    assert!(cache.hits(CacheTier::Memory) > 0);
}

#[tokio::test]
async fn concurrent_misses_fetch_once() {
    let path = Path::from("tables/t/seg/0000/b.parquet");
    let bytes = data(4096);
    let slow = ThrottledStore::new(
        InMemory::new(),
        ThrottleConfig {
            wait_get_per_call: Duration::from_millis(50),
            ..ThrottleConfig::default()
        },
    );
    slow.put(&path, PutPayload::from(bytes.clone()))
        .await
        .unwrap();
    let cache = CachedStore::open(Arc::new(slow), &opts(1 << 20, None), &Registry::new())
        .await
        .unwrap();
    let reads = (0..16).map(|i| cache.get_range(&path, i * 10..i * 10 + 100));
    let got = futures::future::try_join_all(reads).await.unwrap();
    assert!(got.iter().all(|b| b.len() == 100));
    assert_eq!(cache.misses(), 1);
    assert_eq!(cache.bucket_bytes(), 4096);
}

#[tokio::test]
async fn mutable_and_missing_objects_pass_through() {
    let path = Path::from("tables/t/manifest/_latest");
    let store = store_with(&path, &Bytes::from_static(b"1")).await;
    let cache = CachedStore::open(Arc::clone(&store), &opts(1 << 20, None), &Registry::new())
        .await
        .unwrap();
    assert_eq!(cache.get(&path).await.unwrap().bytes().await.unwrap(), "1");
    store.put(&path, PutPayload::from("2")).await.unwrap();
    assert_eq!(
        cache.get(&path).await.unwrap().bytes().await.unwrap(),
        "2",
        "never cached"
    );
    let missing = Path::from("tables/t/wal/0000/00000000000000000001.arrow");
    let err = cache.get_range(&missing, 0..10).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    let err = cache.get(&missing).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn write_through_makes_first_reads_local() {
    let path = Path::from("tables/t/seg/0000/c.parquet");
    let bytes = data(9_000);
    let cache = CachedStore::open(
        store_with(&path, &bytes).await,
        &opts(1 << 20, None),
        &Registry::new(),
    )
    .await
    .unwrap();
    cache.write_through(&path, bytes.clone());
    assert_eq!(
        cache.get(&path).await.unwrap().bytes().await.unwrap(),
        bytes
    );
    assert_eq!(
        cache.get_range(&path, 5..8_000).await.unwrap(),
        bytes.slice(5..8_000)
    );
    assert_eq!(cache.bucket_bytes(), 0);
}

#[tokio::test]
async fn without_a_memory_tier_the_disk_tier_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::from("tables/t/seg/0000/d.parquet");
    let bytes = data(20_000);
    let cache = CachedStore::open(
        store_with(&path, &bytes).await,
        &opts(0, Some(dir.path())),
        &Registry::new(),
    )
    .await
    .unwrap();
    assert_eq!(cache.get_range(&path, 0..20_000).await.unwrap(), bytes);
    cache.flush().await;
    let fetched = cache.bucket_bytes();
    assert_eq!(cache.get_range(&path, 0..20_000).await.unwrap(), bytes);
    assert_eq!(cache.bucket_bytes(), fetched, "second read from disk");
    assert!(
        cache.hits(CacheTier::Disk) >= 5,
        "{}",
        cache.hits(CacheTier::Disk)
    );
    assert_eq!(cache.hits(CacheTier::Memory), 0);
    cache.close().await.unwrap();
}

#[tokio::test]
async fn the_disk_tier_is_warm_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::from("tables/t/seg/0000/e.parquet");
    let bytes = data(12_345);
    let store = store_with(&path, &bytes).await;
    {
        let cache = CachedStore::open(
            Arc::clone(&store),
            &opts(1 << 20, Some(dir.path())),
            &Registry::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            cache.get(&path).await.unwrap().bytes().await.unwrap(),
            bytes
        );
        assert_eq!(cache.bucket_bytes(), 12_345);
        cache.close().await.unwrap();
    }
    let cache = CachedStore::open(store, &opts(1 << 20, Some(dir.path())), &Registry::new())
        .await
        .unwrap();
    assert_eq!(
        cache.get(&path).await.unwrap().bytes().await.unwrap(),
        bytes
    );
    assert_eq!(
        cache.get_range(&path, 100..9_000).await.unwrap(),
        bytes.slice(100..9_000)
    );
    assert_eq!(
        cache.bucket_bytes(),
        0,
        "served from the recovered SSD tier"
    );
    assert!(cache.hits(CacheTier::Disk) > 0);
    cache.close().await.unwrap();
}

/// GETs that reach `inner` while `f` runs.
async fn gets_during<F: std::future::Future>(f: F) -> (F::Output, u64) {
    let cost = crate::cost::QueryCost::new();
    let out = crate::cost::metering(Arc::clone(&cost), f).await;
    (out, cost.report().get_requests)
}

#[tokio::test]
async fn adjacent_missing_blocks_are_fetched_with_one_get() {
    let path = Path::from("tables/t/seg/0000/b.parquet");
    let bytes = data(10 * 4096 + 100);
    let counted: Arc<dyn ObjectStore> = Arc::new(crate::cost::MeteredStore::new(
        store_with(&path, &bytes).await,
    ));
    let cache = CachedStore::open(counted, &opts(1 << 20, None), &Registry::new())
        .await
        .unwrap();
    // Blocks 3 and 4 first, one GET for the two.
    let (got, gets) = gets_during(cache.get_range(&path, 3 * 4096..5 * 4096)).await;
    assert_eq!(got.unwrap(), bytes.slice(3 * 4096..5 * 4096));
    assert_eq!(gets, 1, "a run of two blocks is one request");
    // The whole object: blocks 0-2 are one run, 3-4 come from memory, 5-10 another run
    // (block 10 ends the object).
    let (got, gets) = gets_during(cache.get_range(&path, 0..bytes.len() as u64)).await;
    assert_eq!(got.unwrap(), bytes);
    assert_eq!(gets, 2, "two runs around the cached blocks");
    assert_eq!(
        cache.bucket_bytes(),
        bytes.len() as u64,
        "each byte fetched once"
    );
    assert_eq!(cache.misses(), 11, "every block counted as fetched once");
    // Everything is cached now.
    let (got, gets) = gets_during(cache.get_ranges(&path, &[0..10, 40_000..41_000])).await;
    assert_eq!(got.unwrap()[1], bytes.slice(40_000..41_000));
    assert_eq!(gets, 0);
}
