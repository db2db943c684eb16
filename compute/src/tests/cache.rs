//! The data cache under real queries: warm runs read nothing from the bucket, the SSD tier
//! serves when memory is off, and survives a restart.

use prometheus::Registry;

use crate::testing::{Fixture, query, test_config};
use crate::{CacheTier, QueryConfig, QueryEngine};

const SQL: &str = "SELECT level, count(*), max(latency_ms) FROM logs WHERE status = 500 GROUP BY level ORDER BY level";

#[tokio::test]
async fn a_second_run_reads_nothing_from_the_bucket() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let first = query(&engine, SQL).await;
    let cold = engine.cache().expect("cache").bucket_bytes();
    assert!(cold > 0);
    let second = query(&engine, SQL).await;
    assert_eq!(first, second);
    assert_eq!(
        engine.cache().expect("cache").bucket_bytes(),
        cold,
        "warm run served from cache"
    );
    assert!(engine.cache().expect("cache").hits(CacheTier::Memory) > 0);
}

#[tokio::test]
async fn without_memory_the_ssd_tier_serves() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = QueryConfig {
        cache_memory_bytes: 0,
        cache_dir: Some(dir.path().to_path_buf()),
        ..test_config()
    };
    let engine = f.engine(config).await;
    let first = query(&engine, SQL).await;
    engine.cache().expect("cache").flush().await;
    let cold = engine.cache().expect("cache").bucket_bytes();
    let (memory, disk) = (
        engine.cache().expect("cache").hits(CacheTier::Memory),
        engine.cache().expect("cache").hits(CacheTier::Disk),
    );
    // Same engine: DataFusion's metadata cache is warm, every data block comes from disk.
    let second = query(&engine, SQL).await;
    assert_eq!(first, second);
    assert_eq!(engine.cache().expect("cache").bucket_bytes(), cold);
    let (memory, disk) = (
        engine.cache().expect("cache").hits(CacheTier::Memory) - memory,
        engine.cache().expect("cache").hits(CacheTier::Disk) - disk,
    );
    eprintln!("second run: {memory} memory hits, {disk} disk hits");
    assert!(disk > 0);
    assert_eq!(memory, 0);
    engine.close().await.expect("close");
}

#[tokio::test]
async fn the_ssd_tier_is_warm_after_a_restart() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = QueryConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..test_config()
    };
    let first = {
        let engine = f.engine(config.clone()).await;
        let rows = query(&engine, SQL).await;
        assert!(engine.cache().expect("cache").bucket_bytes() > 0);
        engine.close().await.expect("close");
        rows
    };
    let engine = QueryEngine::new(f.catalog.clone(), config, &Registry::new())
        .await
        .expect("reopen");
    let second = query(&engine, SQL).await;
    assert_eq!(first, second);
    assert_eq!(
        engine.cache().expect("cache").bucket_bytes(),
        0,
        "everything from the recovered SSD tier"
    );
    assert!(engine.cache().expect("cache").hits(CacheTier::Disk) > 0);
    engine.close().await.expect("close");
}

#[tokio::test]
async fn metrics_are_registered() {
    let f = Fixture::new().await;
    let registry = Registry::new();
    let engine = QueryEngine::new(f.catalog.clone(), test_config(), &registry)
        .await
        .expect("engine");
    query(&engine, SQL).await;
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    for n in [
        crate::cache::METRIC_HITS,
        crate::cache::METRIC_MISSES,
        crate::cache::METRIC_BUCKET_BYTES,
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
}

#[tokio::test]
async fn engines_share_one_cache_through_prefixed_catalogs() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::prefix::PrefixStore;
    use strata_storage::{Catalog, TableDef};

    use crate::cache::{CacheOptions, CachedStore};
    use crate::testing::{Cell, with_offsets, write_segment, write_wal};

    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let def = TableDef {
        name: "t".into(),
        schema: Schema::new(vec![Field::new("v", DataType::Int64, false)]),
        time_column: None,
        shard_key: None,
        num_shards: 1,
        retention_secs: None,
        bloom_columns: vec![],
        created_at_ms: 1,
    };
    let batch = |v: i64| {
        RecordBatch::try_new(def.schema_ref(), vec![Arc::new(Int64Array::from(vec![v]))])
            .expect("batch")
    };
    // Two tenants write the same relative paths (same WAL sequence numbers).
    for (tenant, v) in [("a", 1i64), ("b", 2)] {
        let scoped: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(
            Arc::clone(&bucket),
            Path::from(format!("tenants/{tenant}")),
        ));
        let catalog = Catalog::new(Arc::clone(&scoped));
        catalog.create_table(def.clone()).await.expect("create");
        write_segment(&catalog, &def, 0, &with_offsets(&batch(v * 10), 0)).await;
        write_wal(&scoped, "t", 0, 0, &[with_offsets(&batch(v), 1)]).await;
    }
    let cache = Arc::new(
        CachedStore::open(
            Arc::clone(&bucket),
            &CacheOptions::from_config(&test_config()),
            &Registry::new(),
        )
        .await
        .expect("cache"),
    );
    let mut cold = 0;
    for round in 0..2 {
        for (tenant, v) in [("a", 1i64), ("b", 2)] {
            let cached: Arc<dyn ObjectStore> = Arc::clone(&cache) as _;
            let scoped: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(
                cached,
                Path::from(format!("tenants/{tenant}")),
            ));
            let engine =
                QueryEngine::with_store(Catalog::new(scoped), test_config()).expect("engine");
            assert!(engine.cache().is_none());
            let got = query(&engine, "SELECT v FROM t ORDER BY v").await;
            assert_eq!(
                got,
                vec![vec![Cell::from(v)], vec![Cell::from(v * 10)]],
                "tenant {tenant}, round {round}"
            );
        }
        if round == 0 {
            cold = cache.bucket_bytes();
            assert!(cold > 0);
        }
    }
    assert_eq!(
        cache.bucket_bytes(),
        cold,
        "the second round of engines read only the shared cache"
    );
    assert!(cache.hits(CacheTier::Memory) > 0);
}

#[tokio::test]
async fn an_ssd_folder_that_cannot_be_created_is_an_error_naming_it() {
    let f = Fixture::new().await;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    // A folder below a regular file cannot exist.
    let dir = file.path().join("cache");
    let config = QueryConfig {
        cache_dir: Some(dir.clone()),
        ..test_config()
    };
    let err = QueryEngine::new(f.catalog.clone(), config, &Registry::new())
        .await
        .expect_err("no cache folder");
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
}
