//! What queries cost a node: object-store requests per query, and one set of limits (slots,
//! memory) for all the tenants' engines of a node.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use prometheus::Registry;
use strata_storage::decorators::{MetricsStore, StoreMetrics, StoreOp};

use crate::testing::{Fixture, SHARDS, query, test_config};
use crate::{ErrorKind, NodeResources, QueryConfig, QueryContext, QueryEngine};

/// A query that reads segments and the WAL tail of every shard.
const COUNT: &str = "SELECT count(*), max(request_id) FROM logs";
/// A query that runs until its result is dropped (4 * 10^8 rows, produced as read).
const ENDLESS: &str = "SELECT a.request_id FROM logs a, logs b";

/// Wait (up to 10 s) for `done`: a dropped result is torn down on the query runtime.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Metered {
    fixture: Fixture,
    metrics: Arc<StoreMetrics>,
}

impl Metered {
    async fn new() -> Self {
        let metrics = Arc::new(StoreMetrics::new(&Registry::new()).expect("metrics"));
        let store: Arc<dyn ObjectStore> = Arc::new(MetricsStore::new(
            Arc::new(InMemory::new()),
            Arc::clone(&metrics),
        ));
        Self {
            fixture: Fixture::with_store(store).await,
            metrics,
        }
    }

    fn requests(&self) -> u64 {
        [
            StoreOp::List,
            StoreOp::Get,
            StoreOp::GetRange,
            StoreOp::Head,
        ]
        .iter()
        .map(|op| self.metrics.requests(*op))
        .sum()
    }

    fn lists(&self) -> u64 {
        self.metrics.requests(StoreOp::List)
    }

    /// An engine reading straight from the metered store (no data cache).
    fn engine(&self, manifest_ttl: Duration) -> QueryEngine {
        QueryEngine::with_store(
            self.fixture.catalog.clone(),
            QueryConfig {
                manifest_ttl,
                ..test_config()
            },
        )
        .expect("engine")
    }
}

/// A burst of queries costs one manifest poll and one WAL listing per shard per interval,
/// not per query; a write acknowledged in the process makes the next query list again.
#[tokio::test]
async fn a_burst_of_queries_polls_the_bucket_once_per_interval() {
    const BURST: u64 = 20;
    let m = Metered::new().await;
    let mut per_query = Vec::new();
    for ttl in [Duration::ZERO, Duration::from_secs(60)] {
        let engine = m.engine(ttl);
        let expected = query(&engine, COUNT).await; // warm the Parquet metadata cache
        let (requests, lists) = (m.requests(), m.lists());
        for _ in 0..BURST {
            assert_eq!(query(&engine, COUNT).await, expected);
        }
        let lists = m.lists() - lists;
        per_query.push((
            (m.requests() - requests) as f64 / BURST as f64,
            lists as f64 / BURST as f64,
        ));
        if ttl.is_zero() {
            // Without reuse: every query lists the manifests and each shard's WAL.
            assert!(
                lists >= BURST * (1 + u64::from(SHARDS)),
                "{lists} LISTs for {BURST} queries without reuse"
            );
        } else {
            assert_eq!(lists, 0, "LISTs within one interval");
            engine.note_write("logs", None);
            let before = m.lists();
            assert_eq!(query(&engine, COUNT).await, expected);
            assert_eq!(
                m.lists() - before,
                u64::from(SHARDS),
                "after a local write, one WAL listing per shard"
            );
        }
    }
    eprintln!(
        "requests (LISTs) per query, no data cache: {:.1} ({:.1}) without reuse, \
         {:.1} ({:.1}) within an interval",
        per_query[0].0, per_query[0].1, per_query[1].0, per_query[1].1
    );
    assert!(per_query[1].0 < per_query[0].0);
}

/// The engines of a node (one per tenant) share one admission cap: with 2 slots, a third
/// tenant's query waits, then fails with RESOURCE_EXHAUSTED, whatever the tenant count.
#[tokio::test]
async fn tenants_share_one_admission_cap() {
    let f = Fixture::new().await;
    let config = QueryConfig {
        max_concurrent_queries: 2,
        admission_wait: Duration::from_millis(200),
        ..test_config()
    };
    let node = NodeResources::new(&config).expect("node");
    let engines: Vec<QueryEngine> = (0..6)
        .map(|_| QueryEngine::with_resources(f.catalog.clone(), config.clone(), node.clone()))
        .collect::<crate::Result<_>>()
        .expect("engines");
    let ctx = QueryContext::default();
    // Two tenants' queries hold both slots while their results are open.
    let held = [
        engines[0].execute(ENDLESS, &ctx).await.expect("first"),
        engines[1].execute(ENDLESS, &ctx).await.expect("second"),
    ];
    assert_eq!(node.running_queries(), 2);
    for e in &engines[2..] {
        let Err(err) = e.execute(COUNT, &ctx).await else {
            panic!("a third query on a full node must wait, then fail");
        };
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");
    }
    drop(held);
    eventually("dropped results free their slots", || {
        node.running_queries() == 0
    })
    .await;
    for e in &engines {
        e.execute(COUNT, &ctx)
            .await
            .expect("slots free again")
            .collect()
            .await
            .expect("result");
    }
    eventually("finished queries free their slots", || {
        node.running_queries() == 0
    })
    .await;
}

/// The engines of a node share one memory budget: what one tenant's query holds counts
/// against every tenant's queries; the budget returns to zero when they finish.
#[tokio::test]
async fn tenants_share_one_memory_budget() {
    // Holds its join's build side while its (large) result is not read.
    const HOLD: &str = "SELECT a.request_id, b.status FROM logs a JOIN logs b ON a.host = b.host";
    const SORT: &str = "SELECT * FROM logs ORDER BY message, request_id";
    // (Each query's and the node's limits are enforced by one pool per node: see
    // `memory::tests`; here, that every tenant's engine draws from that one pool.)
    let f = Fixture::new().await;
    let ctx = QueryContext::default();
    // What the join holds once it has produced its first batch.
    let alone = QueryEngine::with_store(f.catalog.clone(), test_config()).expect("engine");
    let mut r = alone.execute(HOLD, &ctx).await.expect("join");
    r.stream.next().await.expect("a batch").expect("joined");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let one = alone.resources().memory_reserved();
    assert!(one > 0, "a running join holds memory");

    drop(r);
    eventually("a dropped join frees its memory", || {
        alone.resources().memory_reserved() == 0
    })
    .await;

    let config = test_config();
    let node = NodeResources::new(&config).expect("node");
    let tenant = |_| QueryEngine::with_resources(f.catalog.clone(), config.clone(), node.clone());
    let (a, b) = (tenant(0).expect("a"), tenant(1).expect("b"));
    let mut held = a.execute(HOLD, &ctx).await.expect("join of tenant a");
    held.stream.next().await.expect("a batch").expect("joined");
    assert!(
        node.memory_reserved() >= one / 2,
        "tenant a's join is running"
    );
    assert_eq!(b.resources().memory_reserved(), node.memory_reserved());
    // Tenant b's query draws from the same budget: a sort on top of the join.
    let mut sort = b.execute(SORT, &ctx).await.expect("sort of tenant b");
    sort.stream.next().await.expect("a batch").expect("sorted");
    assert!(node.memory_reserved() <= config.node_memory_bytes);
    drop(sort);
    drop(held);
    eventually("an idle node holds no query memory", || {
        node.memory_reserved() == 0
    })
    .await;
    // Alone, tenant b's sort fits the node.
    b.execute(SORT, &ctx)
        .await
        .expect("fits alone")
        .collect()
        .await
        .expect("sorted");
    eventually("an idle node holds no query memory", || {
        node.memory_reserved() == 0
    })
    .await;
}
