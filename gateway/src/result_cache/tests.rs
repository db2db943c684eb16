use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;

use super::*;

/// A query backend that counts executions and answers `rows` rows per batch, `batches`
/// batches, after `delay`; the first executions fail with the errors queued in `fail`.
struct Fake {
    executions: AtomicUsize,
    rows: usize,
    batches: usize,
    delay: Duration,
    fail: Mutex<Vec<BackendError>>,
}

impl Fake {
    fn new() -> Arc<Self> {
        Self::with(4, 1, Duration::ZERO)
    }

    fn with(rows: usize, batches: usize, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            executions: AtomicUsize::new(0),
            rows,
            batches,
            delay,
            fail: Mutex::new(Vec::new()),
        })
    }

    fn executions(&self) -> usize {
        self.executions.load(Ordering::SeqCst)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("tenant", DataType::Utf8, true),
        ]))
    }
}

#[async_trait::async_trait]
impl QueryBackend for Fake {
    async fn execute(&self, req: QueryRequest) -> Result<(SchemaRef, BatchStream), BackendError> {
        let run = self.executions.fetch_add(1, Ordering::SeqCst) as i64;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(e) = self.fail.lock().pop() {
            return Err(e);
        }
        let schema = Self::schema();
        let tenant = req.caller.tenant.clone();
        let batches: Vec<Result<RecordBatch, BackendError>> = (0..self.batches)
            .map(|_| {
                Ok(RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from(vec![run; self.rows])),
                        Arc::new(StringArray::from(vec![tenant.clone(); self.rows])),
                    ],
                )
                .expect("batch"))
            })
            .collect();
        Ok((schema, futures::stream::iter(batches).boxed()))
    }

    async fn schema(&self, _req: QueryRequest) -> Result<SchemaRef, BackendError> {
        Ok(Self::schema())
    }

    async fn list_tables(
        &self,
        _caller: &Caller,
    ) -> Result<Vec<(String, SchemaRef)>, BackendError> {
        Ok(vec![])
    }
}

/// Versions set by the test; `None` = not cacheable.
struct Versions(Mutex<Option<Vec<(String, u64)>>>);

impl Versions {
    fn at(v: u64) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Some(vec![("logs".into(), v)]))))
    }

    fn set(&self, v: Option<u64>) {
        *self.0.lock() = v.map(|v| vec![("logs".into(), v)]);
    }
}

#[async_trait::async_trait]
impl VersionSource for Versions {
    async fn versions(
        &self,
        _caller: &Caller,
        _sql: &str,
    ) -> Result<Option<Vec<(String, u64)>>, BackendError> {
        Ok(self.0.lock().clone())
    }
}

fn cache(
    fake: &Arc<Fake>,
    versions: &Arc<Versions>,
    config: ResultCacheConfig,
) -> Arc<CachingQueryBackend> {
    Arc::new(CachingQueryBackend::new(
        Arc::clone(fake) as _,
        Arc::clone(versions) as _,
        config,
        ResultCacheMetrics::unregistered().expect("metrics"),
    ))
}

fn req(tenant: Option<&str>, sql: &str) -> QueryRequest {
    QueryRequest {
        caller: Caller {
            tenant: tenant.map(str::to_string),
            request_id: "r".into(),
        },
        sql: sql.into(),
        params: None,
        timeout: None,
        cost: None,
    }
}

/// Run a query and collect its rows' `n` column (which run of the fake produced them).
async fn run(c: &CachingQueryBackend, r: QueryRequest) -> Result<Vec<i64>, BackendError> {
    let (_, stream) = c.execute(r).await?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    Ok(batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("n")
                .values()
                .to_vec()
        })
        .collect())
}

#[tokio::test]
async fn repeated_query_runs_once() {
    let fake = Fake::new();
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let first = run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("first");
    // Reformatted text (whitespace, comments) is the same query.
    let second = run(&c, req(None, "SELECT *\n  FROM logs -- again\n;"))
        .await
        .expect("second");
    let third = run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("third");
    assert_eq!(fake.executions(), 1);
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(c.metrics().misses(), 1);
    assert_eq!(c.metrics().hits(), 2);
    assert!(c.metrics().bytes() > 0);
}

#[tokio::test]
async fn version_change_reruns() {
    let fake = Fake::new();
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let a = run(&c, req(None, "SELECT * FROM logs")).await.expect("v1");
    versions.set(Some(2));
    let b = run(&c, req(None, "SELECT * FROM logs")).await.expect("v2");
    let b2 = run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("v2 again");
    assert_eq!(fake.executions(), 2);
    assert_ne!(
        a, b,
        "the new version was computed, not served from v1's entry"
    );
    assert_eq!(b, b2);
    assert_eq!(c.metrics().hits(), 1);
}

#[tokio::test]
async fn concurrent_identical_queries_run_once() {
    let fake = Fake::with(100, 3, Duration::from_millis(50));
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let results = futures::future::join_all(
        (0..8).map(|_| run(&c, req(Some("acme"), "SELECT count(*) FROM logs"))),
    )
    .await;
    assert_eq!(fake.executions(), 1);
    for r in &results {
        assert_eq!(r.as_ref().expect("result").len(), 300);
    }
    assert_eq!(c.metrics().misses(), 1);
    assert_eq!(c.metrics().coalesced(), 7);
    // And the result stays for later callers.
    run(&c, req(Some("acme"), "SELECT count(*) FROM logs"))
        .await
        .expect("later");
    assert_eq!(fake.executions(), 1);
    assert_eq!(c.metrics().hits(), 1);
}

#[tokio::test]
async fn concurrent_queries_on_spawned_tasks_run_once() {
    let fake = Fake::with(10, 1, Duration::from_millis(50));
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { run(&c, req(None, "SELECT 1 FROM logs")).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("query").len(), 10);
    }
    assert_eq!(fake.executions(), 1);
}

#[tokio::test]
async fn tenants_have_separate_entries() {
    let fake = Fake::new();
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let sql = "SELECT * FROM logs";
    let a = run(&c, req(Some("a"), sql)).await.expect("a");
    let b = run(&c, req(Some("b"), sql)).await.expect("b");
    let d = run(&c, req(None, sql)).await.expect("default");
    assert_eq!(fake.executions(), 3);
    assert_ne!(a, b);
    assert_eq!(run(&c, req(Some("a"), sql)).await.expect("a again"), a);
    assert_eq!(run(&c, req(Some("b"), sql)).await.expect("b again"), b);
    assert_eq!(run(&c, req(None, sql)).await.expect("default again"), d);
    assert_eq!(fake.executions(), 3);
}

#[tokio::test]
async fn parameters_are_part_of_the_key() {
    let fake = Fake::new();
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let with = |v: i64| {
        let mut r = req(None, "SELECT * FROM logs WHERE id = $1");
        r.params = Some(
            RecordBatch::try_from_iter(vec![("$1", Arc::new(Int64Array::from(vec![v])) as _)])
                .expect("params"),
        );
        r
    };
    run(&c, with(1)).await.expect("1");
    run(&c, with(2)).await.expect("2");
    run(&c, with(1)).await.expect("1 again");
    assert_eq!(fake.executions(), 2);
}

#[tokio::test]
async fn oversized_result_streams_but_is_not_cached() {
    let fake = Fake::with(1000, 4, Duration::ZERO);
    let versions = Versions::at(1);
    let c = cache(
        &fake,
        &versions,
        ResultCacheConfig {
            max_entry_bytes: 4096,
            ..ResultCacheConfig::default()
        },
    );
    let first = run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("first");
    assert_eq!(first.len(), 4000, "the first caller gets every row");
    let second = run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("second");
    assert_eq!(second.len(), 4000);
    assert_eq!(fake.executions(), 2);
    assert_eq!(c.metrics().hits(), 0);
    assert_eq!(c.metrics().misses(), 2);
    assert!(c.metrics().bytes() < 4096, "only a small marker is kept");
}

#[tokio::test]
async fn concurrent_oversized_queries_each_run() {
    let fake = Fake::with(1000, 4, Duration::from_millis(20));
    let versions = Versions::at(1);
    let c = cache(
        &fake,
        &versions,
        ResultCacheConfig {
            max_entry_bytes: 4096,
            ..ResultCacheConfig::default()
        },
    );
    let results =
        futures::future::join_all((0..4).map(|_| run(&c, req(None, "SELECT * FROM logs")))).await;
    for r in results {
        assert_eq!(r.expect("query").len(), 4000);
    }
    assert_eq!(fake.executions(), 4);
}

#[tokio::test]
async fn uncacheable_statements_bypass() {
    let fake = Fake::new();
    let versions = Versions::at(1);
    versions.set(None);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    run(&c, req(None, "SELECT now()")).await.expect("1");
    run(&c, req(None, "SELECT now()")).await.expect("2");
    assert_eq!(fake.executions(), 2);
    assert_eq!(c.metrics().bypassed(), 2);
    assert_eq!(c.metrics().misses() + c.metrics().hits(), 0);
}

#[tokio::test]
async fn errors_are_not_cached_and_are_shared_with_waiters() {
    let fake = Fake::with(1, 1, Duration::from_millis(30));
    fake.fail
        .lock()
        .push(BackendError::new(ErrorKind::InvalidArgument, "bad column"));
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let results =
        futures::future::join_all((0..3).map(|_| run(&c, req(None, "SELECT x FROM logs")))).await;
    for r in results {
        assert_eq!(r.expect_err("fails").kind, ErrorKind::InvalidArgument);
    }
    assert_eq!(fake.executions(), 1);
    run(&c, req(None, "SELECT x FROM logs"))
        .await
        .expect("ok now");
    assert_eq!(fake.executions(), 2);
}

#[tokio::test]
async fn retryable_failure_lets_a_waiter_run() {
    let fake = Fake::with(1, 1, Duration::from_millis(30));
    fake.fail
        .lock()
        .push(BackendError::new(ErrorKind::Unavailable, "node down"));
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let (l, w) = tokio::join!(
        run(&c, req(None, "SELECT * FROM logs")),
        run(&c, req(None, "SELECT * FROM logs"))
    );
    assert_eq!(l.expect_err("leader fails").kind, ErrorKind::Unavailable);
    assert_eq!(w.expect("waiter runs it again").len(), 1);
    assert_eq!(fake.executions(), 2);
}

#[tokio::test]
async fn cancelled_leader_is_not_cached() {
    let fake = Fake::with(10, 2, Duration::ZERO);
    let versions = Versions::at(1);
    let c = cache(&fake, &versions, ResultCacheConfig::default());
    let (_, mut stream) = c
        .execute(req(None, "SELECT * FROM logs"))
        .await
        .expect("run");
    let _first = stream.try_next().await.expect("batch");
    drop(stream); // the client went away after one batch
    run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("again");
    run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("cached now");
    assert_eq!(fake.executions(), 2);
    assert_eq!(c.metrics().hits(), 1);
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let fake = Fake::new();
    let versions = Versions::at(1);
    let c = cache(
        &fake,
        &versions,
        ResultCacheConfig {
            ttl: Duration::from_millis(50),
            ..ResultCacheConfig::default()
        },
    );
    run(&c, req(None, "SELECT * FROM logs")).await.expect("1");
    run(&c, req(None, "SELECT * FROM logs")).await.expect("hit");
    tokio::time::sleep(Duration::from_millis(80)).await;
    run(&c, req(None, "SELECT * FROM logs"))
        .await
        .expect("expired");
    assert_eq!(fake.executions(), 2);
}

#[tokio::test]
async fn least_recently_used_entries_are_evicted() {
    let fake = Fake::with(100, 1, Duration::ZERO);
    let versions = Versions::at(1);
    // Room for about two results.
    let probe = cache(&fake, &versions, ResultCacheConfig::default());
    run(&probe, req(None, "SELECT 0 FROM logs"))
        .await
        .expect("probe");
    let one = probe.metrics().bytes() as usize;
    let c = cache(
        &fake,
        &versions,
        ResultCacheConfig {
            max_bytes: one * 2 + one / 2,
            ..ResultCacheConfig::default()
        },
    );
    let before = fake.executions();
    run(&c, req(None, "SELECT 1 FROM logs")).await.expect("1");
    run(&c, req(None, "SELECT 2 FROM logs")).await.expect("2");
    run(&c, req(None, "SELECT 1 FROM logs"))
        .await
        .expect("1 hit");
    run(&c, req(None, "SELECT 3 FROM logs"))
        .await
        .expect("3 evicts 2");
    assert_eq!(fake.executions() - before, 3);
    run(&c, req(None, "SELECT 1 FROM logs"))
        .await
        .expect("1 still");
    assert_eq!(fake.executions() - before, 3);
    run(&c, req(None, "SELECT 2 FROM logs"))
        .await
        .expect("2 again");
    assert_eq!(fake.executions() - before, 4);
    assert!(c.metrics().bytes() as usize <= one * 2 + one / 2);
}

#[test]
fn normalization_keeps_meaning() {
    assert_eq!(
        normalize_sql("  SELECT  a,\n\tb FROM t ; "),
        "SELECT a, b FROM t"
    );
    assert_eq!(
        normalize_sql("SELECT a -- note\n, b /* x /* nested */ y */ FROM t"),
        "SELECT a , b FROM t"
    );
    // Whitespace inside literals and quoted identifiers is kept.
    assert_eq!(
        normalize_sql("SELECT 'a  b', \"c  d\" FROM t WHERE s = 'it''s  --'"),
        "SELECT 'a  b', \"c  d\" FROM t WHERE s = 'it''s  --'"
    );
    assert_ne!(
        normalize_sql("SELECT 'a  b'"),
        normalize_sql("SELECT 'a b'")
    );
    // A comment hides what follows it on its line only.
    assert_ne!(
        normalize_sql("SELECT a -- x\n, b FROM t"),
        normalize_sql("SELECT a -- x , b FROM t")
    );
    // Placeholders are fine; other `$`, backslashes and hints are only trimmed.
    assert_eq!(normalize_sql("SELECT  $1"), "SELECT $1");
    assert_eq!(normalize_sql(" SELECT $$a  b$$ "), "SELECT $$a  b$$");
    assert_eq!(normalize_sql("SELECT E'a\\'  b'"), "SELECT E'a\\'  b'");
    assert_eq!(
        normalize_sql("SELECT /*+ hint */  1"),
        "SELECT /*+ hint */  1"
    );
}
