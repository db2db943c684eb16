//! Criterion micro-benchmarks of Strata's hot paths:
//! * `ring_lookup`: a key's shard on the consistent-hash ring (16 members × 128 vnodes);
//! * `wal_encode`: one 8,192-row `logs` batch as a WAL entry (Arrow IPC + LZ4);
//! * `segment_encode`: 65,536 rows as a Parquet segment (sort, zstd, statistics, blooms);
//! * `cache_hit`: a 64 KiB `get_range` served by the memory tier of the data cache.
//!
//! Run with `cargo bench -p strata-benches --bench micro`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_benches::encode::{logs_table_def, with_offsets};
use strata_benches::workload::{LogsGenerator, host_name};
use strata_common::HashRing;
use strata_compute::{CacheOptions, CachedStore};
use strata_storage::segment::{SegmentOptions, encode_segment};
use strata_storage::wal::{WalHeader, encode as wal_encode};

fn ring_lookup(c: &mut Criterion) {
    let ring = HashRing::for_shards(16);
    let keys: Vec<String> = (0..1024).map(host_name).collect();
    let mut g = c.benchmark_group("ring_lookup");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("1024_keys_16_shards", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in &keys {
                acc = acc.wrapping_add(ring.lookup_key(black_box(k.as_bytes())).unwrap_or(0));
            }
            acc
        })
    });
    g.finish();
}

fn wal_and_segment_encode(c: &mut Criterion) {
    let batches: Vec<_> = LogsGenerator::new(42, 65_536, 8192).collect();
    let batches = with_offsets(&batches).expect("offsets");
    let one = &batches[..1];
    let schema = one[0].schema();
    let header = WalHeader {
        attempt: 0,
        epoch: 1,
        writer: "bench".to_string(),
        seq: 0,
        first_offset: 0,
        rows: 8192,
        producers: Default::default(),
    };
    let mut g = c.benchmark_group("wal_encode");
    g.throughput(Throughput::Elements(8192));
    g.bench_function("8192_rows", |b| {
        b.iter(|| wal_encode(&header, &schema, black_box(one)).expect("encode"))
    });
    g.finish();

    let def = logs_table_def(4);
    let opts = SegmentOptions::default();
    let mut g = c.benchmark_group("segment_encode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(65_536));
    g.bench_function("65536_rows", |b| {
        b.iter(|| encode_segment(&def, black_box(&batches), &opts).expect("encode"))
    });
    g.finish();
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("t/logs/seg/0001.parquet");
    let object = Bytes::from(vec![7u8; 4 << 20]);
    let opts = CacheOptions {
        memory_bytes: 64 << 20,
        disk_bytes: 0,
        dir: None,
        block_bytes: 1 << 20,
    };
    let store = rt.block_on(async {
        inner.put(&path, object.into()).await.expect("put");
        let store = CachedStore::open(Arc::clone(&inner), &opts, &prometheus::Registry::new())
            .await
            .expect("cache");
        // Warm the key.
        store
            .get_range(&path, 100_000..165_536)
            .await
            .expect("warm");
        store
    });
    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Bytes(65_536));
    g.bench_function("get_range_64k_memory_tier", |b| {
        b.to_async(&rt).iter_batched(
            || path.clone(),
            |p| {
                let s = store.clone();
                async move { s.get_range(&p, 100_000..165_536).await.expect("hit") }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, ring_lookup, wal_and_segment_encode, cache_hit);
criterion_main!(benches);
