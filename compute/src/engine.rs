//! [`QueryEngine`]: the public entry point of a query node.
//!
//! Per query: admission (a semaphore; over the cap wait [`QueryConfig::admission_wait`],
//! then `ResourceExhausted`), parse + confinement, a fresh `SessionState` whose `strata`
//! catalog resolves tables lazily, planning (re-planned, up to 5 times, if the manifest turned out
//! stale), and execution with a per-query memory pool under a deadline. Planning and
//! execution run on the node's [`QueryRuntime`], never on the caller's runtime; the result
//! crosses back through a bounded channel (see [`crate::stream`]).
//!
//! Shared by all engines of a node ([`NodeResources`], whatever the number of tenants): the
//! query runtime, the admission cap, the node's query memory, the decoded-WAL cache,
//! DataFusion's Parquet metadata cache and the spill manager. Per engine: its catalog and
//! object store.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{MemoryPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig};
use datafusion::sql::parser::Statement as DFStatement;
use futures::TryStreamExt;
use object_store::ObjectStore;
use prometheus::Registry;
use strata_storage::Catalog;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::cache::{CacheOptions, CachedStore};
use crate::config::QueryConfig;
use crate::confine;
use crate::cost::{QueryCost, QueryLog, QueryRecord, QueryStatus, ScanStore};
use crate::error::{Error, Result, is_stale_manifest};
use crate::manifests::ManifestCache;
use crate::memory::QueryMemoryPool;
use crate::paths::PathCounts;
use crate::runtime::QueryRuntime;
use crate::schema_provider::{CATALOG_NAME, SCHEMA_NAME, StrataSchema};
use crate::store_registry::SingleStoreRegistry;
use crate::stream::{GuardedStream, ResultLimits};
use crate::table::ScanEnv;
use crate::wal_source::{WalCache, WalListings};
use datafusion::physical_plan::ExecutionPlan;

/// URL under which the cached bucket is registered in DataFusion.
pub const STORE_URL: &str = "strata://data/";

/// Per-query inputs besides the SQL text.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    /// The caller's tenant, for logs (scoping comes later).
    pub tenant: Option<String>,
    /// Deadline of this query; capped by [`QueryConfig::query_timeout`].
    pub timeout: Option<Duration>,
    /// Values of `$1`, `$2`, ... placeholders.
    pub params: Option<Vec<ScalarValue>>,
}

/// A running query: its output schema and a stream of batches. Dropping the stream
/// cancels the query. Errors in the stream convert to [`Error`] with `Error::from`.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// What the query cost; final once `stream` has ended.
    pub cost: Arc<QueryCost>,
}

impl std::fmt::Debug for QueryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryResult")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl QueryResult {
    /// Drain the stream into memory (tests, small results).
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        self.stream.try_collect().await.map_err(Error::from)
    }
}

/// Runs SQL over Strata tables. Cheap to clone; share one per node.
#[derive(Clone)]
pub struct QueryEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Finished queries kept per engine (per tenant) for `system.queries`.
const QUERY_LOG_ENTRIES: usize = 1000;

/// Builds the object store one query reads segments through, counting into its cost
/// (e.g. a [`CachedStore::for_query`] handle, under the tenant's prefix).
pub type StoreForQuery = Arc<dyn Fn(Arc<QueryCost>) -> Arc<dyn ObjectStore> + Send + Sync>;

struct Inner {
    config: QueryConfig,
    manifests: Arc<ManifestCache>,
    cache: Option<CachedStore>,
    /// Per-query stores that count cache hits and bucket requests; `None`: queries read
    /// `store` and report no cache or bucket figures.
    query_store: Option<StoreForQuery>,
    /// This engine's (one tenant's) recent queries: `system.queries`.
    queries: Arc<QueryLog>,
    /// Where segments and WAL entries are read (the cache, or the caller's store).
    store: Arc<dyn ObjectStore>,
    store_url: ObjectStoreUrl,
    runtime: Arc<RuntimeEnv>,
    template: SessionState,
    /// This engine's view of the node's decoded-WAL cache.
    wal_cache: WalCache,
    wal_listings: Arc<WalListings>,
    /// How often this engine's queries took each planning and pruning path.
    paths: Arc<PathCounts>,
    node: NodeResources,
}

/// What every query engine of a node shares, so that a node's threads, memory and caches
/// stay within its configuration whatever the number of tenants. Cheap to clone.
#[derive(Clone)]
pub struct NodeResources {
    runtime: QueryRuntime,
    admission: Arc<Semaphore>,
    max_concurrent: usize,
    memory: Arc<dyn MemoryPool>,
    wal_cache: WalCache,
    /// Disk manager (spill) and cache manager (Parquet metadata) of every engine.
    env: Arc<RuntimeEnv>,
}

impl std::fmt::Debug for NodeResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeResources")
            .field("runtime", &self.runtime)
            .field("max_concurrent", &self.max_concurrent)
            .field("memory_reserved", &self.memory.reserved())
            .finish_non_exhaustive()
    }
}

impl NodeResources {
    /// Start the query runtime and size the node-wide pools from `config`.
    pub fn new(config: &QueryConfig) -> Result<Self> {
        let runtime = QueryRuntime::new(config.threads)
            .map_err(|e| Error::Internal(format!("cannot start the query runtime: {e}")))?;
        let disk = match &config.spill_dir {
            Some(dir) => {
                // DataFusion does not create the folder; a node whose data folder is new
                // (a fresh container with only --cache-dir given) must still start.
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Internal(format!(
                        "cannot create the spill folder {}: {e}",
                        dir.display()
                    ))
                })?;
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![dir.clone()]))
                    .with_max_temp_directory_size(config.max_spill_bytes)
            }
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        };
        let env = RuntimeEnvBuilder::new()
            .with_disk_manager_builder(disk)
            .with_metadata_cache_limit(config.metadata_cache_bytes)
            .build_arc()?;
        let max_concurrent = config.max_concurrent_queries.max(1);
        Ok(Self {
            runtime,
            admission: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            memory: crate::memory::node_pool(config.node_memory_bytes),
            wal_cache: WalCache::new(config.wal_cache_bytes),
            env,
        })
    }

    /// The pool queries run on.
    pub fn runtime(&self) -> &QueryRuntime {
        &self.runtime
    }

    /// Bytes all running queries of the node hold.
    pub fn memory_reserved(&self) -> usize {
        self.memory.reserved()
    }

    /// Queries running (or planning) now.
    pub fn running_queries(&self) -> usize {
        self.max_concurrent - self.admission.available_permits()
    }

    /// Export the node's query memory and running queries as gauges
    /// (`strata_query_memory_reserved_bytes`, `strata_queries_running`), read at scrape time.
    pub fn register_metrics(&self, registry: &Registry) -> Result<()> {
        let collector = ResourceGauges::new(self.clone())
            .map_err(|e| Error::Internal(format!("query metrics: {e}")))?;
        registry
            .register(Box::new(collector))
            .map_err(|e| Error::Internal(format!("query metrics: {e}")))
    }
}

/// Gauges of [`NodeResources`], set from the live values whenever they are collected.
struct ResourceGauges {
    node: NodeResources,
    memory: prometheus::IntGauge,
    running: prometheus::IntGauge,
}

impl ResourceGauges {
    fn new(node: NodeResources) -> prometheus::Result<Self> {
        Ok(Self {
            node,
            memory: prometheus::IntGauge::new(
                "strata_query_memory_reserved_bytes",
                "Bytes held by running queries (all tenants) of this node",
            )?,
            running: prometheus::IntGauge::new(
                "strata_queries_running",
                "Queries admitted and not yet finished on this node",
            )?,
        })
    }
}

impl prometheus::core::Collector for ResourceGauges {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut d = self.memory.desc();
        d.extend(self.running.desc());
        d
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.memory
            .set(i64::try_from(self.node.memory_reserved()).unwrap_or(i64::MAX));
        self.running
            .set(i64::try_from(self.node.running_queries()).unwrap_or(i64::MAX));
        let mut m = self.memory.collect();
        m.extend(self.running.collect());
        m
    }
}

impl QueryEngine {
    /// Open a data cache over the catalog's store (recovering its SSD tier), register its
    /// metrics in `registry`, and read segments and WAL entries through it (manifests are
    /// read from the catalog's store directly). Fails if `registry` already holds the cache
    /// metrics: to share one cache between engines use [`Self::with_store`].
    pub async fn new(catalog: Catalog, config: QueryConfig, registry: &Registry) -> Result<Self> {
        let cache = CachedStore::open(
            Arc::clone(catalog.store()),
            &CacheOptions::from_config(&config),
            registry,
        )
        .await?;
        let data: Arc<dyn ObjectStore> = Arc::new(cache.clone());
        let node = NodeResources::new(&config)?;
        let counted = cache.clone();
        Ok(
            Self::build(catalog, config, data, Some(cache), node)?.with_query_store(Arc::new(
                move |cost| Arc::new(counted.for_query(cost)) as Arc<dyn ObjectStore>,
            )),
        )
    }

    /// An engine that reads everything through `catalog.store()` as it is, with no cache of
    /// its own. Use it to share one [`CachedStore`] between engines (e.g. one per tenant):
    /// build each catalog over the cached store, or over a `PrefixStore` of it, so cache
    /// keys are full bucket paths.
    pub fn with_store(catalog: Catalog, config: QueryConfig) -> Result<Self> {
        let node = NodeResources::new(&config)?;
        Self::with_resources(catalog, config, node)
    }

    /// Like [`Self::with_store`], sharing `node`'s runtime, limits and caches with the other
    /// engines built over it (one per tenant on a node).
    pub fn with_resources(
        catalog: Catalog,
        config: QueryConfig,
        node: NodeResources,
    ) -> Result<Self> {
        let data = Arc::clone(catalog.store());
        Self::build(catalog, config, data, None, node)
    }

    fn build(
        catalog: Catalog,
        config: QueryConfig,
        data: Arc<dyn ObjectStore>,
        cache: Option<CachedStore>,
        node: NodeResources,
    ) -> Result<Self> {
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let runtime = Arc::new(RuntimeEnv {
            object_store_registry: Arc::new(SingleStoreRegistry::new(
                store_url.as_ref(),
                Arc::clone(&data),
            )),
            ..node.env.as_ref().clone()
        });
        let paths = Arc::new(PathCounts::default());
        let template = session_template(&config, Arc::clone(&runtime), &paths);
        Ok(Self {
            inner: Arc::new(Inner {
                manifests: Arc::new(ManifestCache::new(catalog, config.manifest_ttl)),
                wal_cache: node.wal_cache.scoped(),
                wal_listings: Arc::new(WalListings::new(config.manifest_ttl)),
                paths,
                config,
                cache,
                query_store: None,
                queries: Arc::new(QueryLog::new(QUERY_LOG_ENTRIES)),
                store: data,
                store_url,
                runtime,
                template,
                node,
            }),
        })
    }

    /// Queries read segments through `f(cost)`, a store that counts into the query's cost.
    /// Call it on a new engine (before it is cloned); a shared engine is left as it is.
    pub fn with_query_store(mut self, f: StoreForQuery) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.query_store = Some(f),
            None => tracing::warn!("with_query_store on a shared engine is ignored"),
        }
        self
    }

    /// A write to `table` was acknowledged in this process: the next query lists its WAL
    /// again instead of reusing a listing (read-your-writes in one process; across
    /// processes, writes are seen within [`QueryConfig::manifest_ttl`]).
    pub fn note_write(&self, table: &str, manifest_version: Option<u64>) {
        self.inner.wal_listings.invalidate_table(table);
        // A write that created the table or added columns committed a newer manifest.
        if let Some(v) = manifest_version {
            self.inner.manifests.saw_version(table, v);
        }
    }

    /// `table` was created, altered or given a delete rule in this process: the next query
    /// reads its manifest again.
    pub fn note_change(&self, table: &str) {
        self.inner.manifests.invalidate(table);
        self.inner.wal_listings.invalidate_table(table);
    }

    /// The state of `table` queries see now: its name, manifest version and, per shard,
    /// the sequence after its newest WAL entry (its floor if none), from the same manifest
    /// and listings the next query uses (so keying results on it costs no extra requests).
    /// `None` if there is no such table, or a flush is moving it (do not cache then).
    pub async fn table_state(&self, table: &str) -> Result<Option<(String, u64, Vec<(u32, u64)>)>> {
        let Some(m) = self.inner.manifests.get(table).await? else {
            return Ok(None);
        };
        let shards: Vec<u32> = (0..m.table.num_shards).collect();
        let listed = match crate::wal_source::checked_listings(
            &self.inner.store,
            &self.inner.wal_listings,
            self.inner.manifests.catalog(),
            &m,
            &shards,
        )
        .await
        {
            Ok(l) => l,
            Err(Error::StaleManifest(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let wal = listed
            .iter()
            .map(|(shard, l)| {
                let floor = m.shards.get(shard).map_or(0, |s| s.flushed_wal_seq);
                (*shard, l.last().map_or(floor, |(seq, _)| seq + 1))
            })
            .collect();
        Ok(Some((m.table.name.clone(), m.version, wal)))
    }

    /// How often this engine's queries took each planning and pruning path.
    pub fn paths(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.inner.paths.snapshot()
    }

    /// What this engine shares with the other engines of its node.
    pub fn resources(&self) -> &NodeResources {
        &self.inner.node
    }

    /// The data cache this engine opened ([`Self::new`]); `None` for [`Self::with_store`].
    pub fn cache(&self) -> Option<&CachedStore> {
        self.inner.cache.as_ref()
    }

    pub fn config(&self) -> &QueryConfig {
        &self.inner.config
    }

    /// Close the data cache this engine opened, if any (its memory tier is written to the
    /// SSD tier first).
    pub async fn close(&self) -> Result<()> {
        match &self.inner.cache {
            Some(c) => c.close().await,
            None => Ok(()),
        }
    }

    /// Plan and start `sql` on the node's query runtime. Batches stream as they are
    /// produced; the query holds its admission slot and memory until the stream ends or is
    /// dropped. At the deadline the running plan is dropped (every operator stops and frees
    /// its memory) and the stream ends with [`Error::DeadlineExceeded`].
    pub async fn execute(&self, sql: &str, ctx: &QueryContext) -> Result<QueryResult> {
        let config = &self.inner.config;
        let timeout = ctx
            .timeout
            .map_or(config.query_timeout, |t| t.min(config.query_timeout));
        let deadline = Instant::now() + timeout;
        let cost = QueryCost::new();
        let queued = Instant::now();
        let permit = self.admit().await?;
        cost.queued(queued.elapsed());
        tracing::debug!(tenant = ctx.tenant.as_deref().unwrap_or("-"), sql, "query");
        let limits = ResultLimits {
            rows: config.max_result_rows,
            bytes: config.max_result_bytes,
        };
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let this = self.clone();
        let sql = sql.to_string();
        let params = ctx.params.clone();
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let query_cost = Arc::clone(&cost);
        let log = Arc::clone(&self.inner.queries);
        let query_id = log.next_id();
        let tenant = ctx.tenant.clone();
        let started_at_us = chrono::Utc::now().timestamp_micros();
        let task = self.inner.node.runtime.handle().spawn(async move {
            let _permit = permit;
            let cost = query_cost;
            let record = |status, error: Option<String>, result_rows, sql: String| QueryRecord {
                query_id,
                tenant,
                sql,
                started_at_us,
                status,
                error,
                result_rows,
                cost: cost.report(),
            };
            // Manifest and listing requests of the planning count into this query.
            let started = tokio::time::timeout_at(
                deadline,
                crate::cost::metering(
                    Arc::clone(&cost),
                    this.start(&sql, params.as_deref(), Arc::clone(&cost)),
                ),
            )
            .await;
            let (stream, physical) = match started {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    log.record(record(QueryStatus::Error, Some(e.to_string()), 0, sql));
                    let _ = started_tx.send(Err(e));
                    return;
                }
                Err(_) => {
                    let e = Error::DeadlineExceeded(timeout);
                    log.record(record(QueryStatus::Timeout, Some(e.to_string()), 0, sql));
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            if started_tx.send(Ok(stream.schema())).is_err() {
                return;
            }
            let executing = Instant::now();
            let driven = crate::stream::drive(stream, &tx, deadline, timeout, limits, &done).await;
            // The figures are final before the caller sees the end of the stream.
            cost.executed(executing.elapsed());
            cost.read_plan(&physical);
            log.record(record(driven.status, driven.error, driven.rows, sql));
            drop(tx);
        });
        let abort = crate::stream::AbortOnDrop(task.abort_handle());
        let schema = match tokio::time::timeout_at(deadline, started_rx).await {
            Ok(Ok(started)) => started?,
            Ok(Err(_)) => {
                return Err(Error::Internal(
                    "the query stopped while planning (see the node's log)".into(),
                ));
            }
            Err(_) => return Err(Error::DeadlineExceeded(timeout)),
        };
        Ok(QueryResult {
            schema: Arc::clone(&schema),
            stream: Box::pin(GuardedStream::new(
                schema, rx, finished, abort, deadline, timeout,
            )),
            cost,
        })
    }

    /// The schema `sql` would produce, without running it (Flight SQL `GetFlightInfo`,
    /// prepared statements). Placeholders may stay unbound.
    /// A statement that fails here (bad SQL, an unknown column) is listed in
    /// `system.queries` as failed, as the client never gets to run it.
    pub async fn plan_schema(&self, sql: &str, tenant: Option<&str>) -> Result<SchemaRef> {
        match self.plan(sql, None, None).await {
            Ok((_, plan)) => Ok(crate::views::plain_schema(plan.schema().as_arrow())),
            Err(e) => {
                let log = &self.inner.queries;
                log.record(QueryRecord {
                    query_id: log.next_id(),
                    tenant: tenant.map(str::to_string),
                    sql: sql.to_string(),
                    started_at_us: chrono::Utc::now().timestamp_micros(),
                    status: QueryStatus::Error,
                    error: Some(e.to_string()),
                    result_rows: 0,
                    cost: Default::default(),
                });
                Err(e)
            }
        }
    }

    /// Types of the `$1`, `$2`, ... placeholders of `sql`, in order (`None`: not inferable).
    pub async fn parameter_types(&self, sql: &str) -> Result<Vec<Option<DataType>>> {
        let (_, plan) = self.plan(sql, None, None).await?;
        let mut params: Vec<(usize, Option<DataType>)> = plan
            .get_parameter_types()?
            .into_iter()
            .filter_map(|(name, t)| Some((name.strip_prefix('$')?.parse().ok()?, t)))
            .collect();
        params.sort_by_key(|(i, _)| *i);
        Ok(params
            .into_iter()
            .map(|(_, t)| t.map(|t| crate::views::plain_type(&t).unwrap_or(t)))
            .collect())
    }

    /// All tables with their schemas.
    pub async fn list_tables(&self) -> Result<Vec<(String, SchemaRef)>> {
        let names = self.inner.manifests.table_names().await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names.iter() {
            if let Some(m) = self.inner.manifests.get(name).await? {
                out.push((name.clone(), m.table.schema_ref()));
            }
        }
        Ok(out)
    }

    async fn admit(&self) -> Result<OwnedSemaphorePermit> {
        let sem = Arc::clone(&self.inner.node.admission);
        if let Ok(p) = Arc::clone(&sem).try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout(self.inner.config.admission_wait, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Error::Internal("the admission semaphore was closed".into())),
            Err(_) => Err(Error::ResourceExhausted(format!(
                "{} queries are already running on this node (query.max_concurrent); retry \
                 shortly",
                self.inner.node.max_concurrent
            ))),
        }
    }

    /// Plans `sql` and starts it; the stream and the plan it runs (for its metrics).
    async fn start(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
        cost: Arc<QueryCost>,
    ) -> Result<(SendableRecordBatchStream, Arc<dyn ExecutionPlan>)> {
        // A flush can commit (and delete the WAL objects a plan named) while a query plans;
        // under a steady load that can happen more than once in a row.
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            let planning = Instant::now();
            let (state, plan) = self.plan(sql, params, Some(&cost)).await?;
            let physical = state
                .create_physical_plan(&plan)
                .await
                .and_then(crate::views::plain_output);
            cost.planned(planning.elapsed());
            match physical {
                Ok(physical) => {
                    let task = self.task_context(&state);
                    let mut stream =
                        datafusion::physical_plan::execute_stream(Arc::clone(&physical), task)?;
                    if matches!(plan, LogicalPlan::Analyze(_)) {
                        stream = crate::cost::with_cost_row(
                            stream,
                            Arc::clone(&cost),
                            Arc::clone(&physical),
                        );
                    }
                    return Ok((stream, physical));
                }
                Err(e) => {
                    let e = Error::from(e);
                    if attempt >= ATTEMPTS || !is_stale_manifest(&e) {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt, "re-planning on a fresh manifest");
                    self.inner.manifests.invalidate_all();
                    self.inner.wal_listings.invalidate_all();
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Parse, confine and plan `sql` on a fresh session.
    async fn plan(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
        cost: Option<&Arc<QueryCost>>,
    ) -> Result<(SessionState, LogicalPlan)> {
        let template = &self.inner.template;
        let dialect = template.config().options().sql_parser.dialect;
        // JDBC/ODBC-style `?` placeholders (ADBC sends them) become `$1`, `$2`, ...
        let sql = crate::statement::number_placeholders(sql);
        let statement: DFStatement = template.sql_to_statement(&sql, &dialect)?;
        confine::check_statement(&statement)?;
        let refs = template.resolve_table_references(&statement)?;
        let refs = confine::check_references(&refs)?;
        let mut state = self.session(refs).await?;
        if let Some(cost) = cost {
            // Table scans count the segments they prune into it, and read through a store
            // that counts cache hits and bucket requests into it.
            state.config_mut().set_extension(Arc::clone(cost));
            if let Some(store_for) = &self.inner.query_store {
                let store = ScanStore(store_for(Arc::clone(cost)));
                state.config_mut().set_extension(Arc::new(store));
            }
        }
        let plan = state.statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Error::PermissionDenied(e.strip_backtrace()))?;
        let plan = match params {
            Some(p) => {
                let types = plan.get_parameter_types()?;
                let values = p
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let t = types.get(&format!("${}", i + 1)).and_then(Option::as_ref);
                        crate::views::param_for(v.clone(), t)
                    })
                    .collect::<Vec<_>>();
                plan.with_param_values(values)?
            }
            None => plan,
        };
        Ok((state, plan))
    }

    async fn session(&self, refs: confine::References) -> Result<SessionState> {
        let inner = &self.inner;
        let mut state = inner.template.clone();
        state.mark_start_execution();
        let now_micros = state
            .execution_props()
            .query_execution_start_time
            .map_or_else(
                || chrono::Utc::now().timestamp_micros(),
                |t| t.timestamp_micros(),
            );
        let names = if refs.info_schema {
            inner.manifests.table_names().await?
        } else {
            Arc::default()
        };
        let env = ScanEnv {
            store: Arc::clone(&inner.store),
            store_url: inner.store_url.clone(),
            catalog: inner.manifests.catalog().clone(),
            wal_cache: inner.wal_cache.clone(),
            wal_listings: Arc::clone(&inner.wal_listings),
            paths: Arc::clone(&inner.paths),
            now_micros,
        };
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(
            SCHEMA_NAME,
            Arc::new(StrataSchema::new(Arc::clone(&inner.manifests), env, names)),
        )?;
        if refs.system_queries {
            // The engine's finished queries as they are now; this one is not among them.
            let batch = crate::cost::queries_batch(&inner.queries.snapshot())?;
            let system = MemorySchemaProvider::new();
            system.register_table(
                confine::QUERIES_TABLE.to_string(),
                Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
            )?;
            catalog.register_schema(confine::SYSTEM_SCHEMA, Arc::new(system))?;
        }
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG_NAME.to_string(), Arc::new(catalog));
        state.register_catalog_list(Arc::new(catalogs));
        Ok(state)
    }

    /// The task context of one query: shared runtime, own memory pool.
    fn task_context(&self, state: &SessionState) -> Arc<TaskContext> {
        let top_consumers = NonZeroUsize::MIN.saturating_add(2);
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            QueryMemoryPool::new(
                Arc::clone(&self.inner.node.memory),
                self.inner.config.memory_limit_bytes,
            ),
            top_consumers,
        ));
        let mut runtime = RuntimeEnv {
            memory_pool: pool,
            ..self.inner.runtime.as_ref().clone()
        };
        if let Some(store) = state.config().get_extension::<ScanStore>() {
            runtime.object_store_registry = Arc::new(SingleStoreRegistry::new(
                self.inner.store_url.as_ref(),
                Arc::clone(&store.0),
            ));
        }
        Arc::new(TaskContext::from(state).with_runtime(Arc::new(runtime)))
    }
}

fn session_template(
    config: &QueryConfig,
    runtime: Arc<RuntimeEnv>,
    paths: &Arc<PathCounts>,
) -> SessionState {
    let mut session = SessionConfig::new()
        .with_target_partitions(config.target_partitions.max(1))
        .with_batch_size(config.batch_size.max(1))
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
        .with_create_default_catalog_and_schema(false);
    let parquet = &mut session.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.enable_page_index = true;
    parquet.bloom_filter_on_read = true;
    // No table factories and no file formats: nothing can be created from SQL.
    let mut builder = SessionStateBuilder::new();
    for rule in crate::rules::optimizer_rules(paths) {
        builder = builder.with_optimizer_rule(rule);
    }
    // DataFusion's physical rules, with the join-back half of the last-row rewrite right
    // after join selection (before repartitioning and dynamic filters are planned).
    let mut physical = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    let at = physical
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(physical.len(), |i| i + 1);
    physical.insert(
        at,
        Arc::new(crate::rules::LastRowJoinBuild {
            paths: Arc::clone(paths),
        }),
    );
    builder = builder.with_physical_optimizer_rules(physical);
    builder = builder.with_physical_optimizer_rule(Arc::new(crate::rules::GuardJoins {
        max_cross_join_rows: config.max_cross_join_rows,
    }));
    builder = builder.with_physical_optimizer_rule(Arc::new(crate::views::CompactViews));
    builder
        .with_config(session)
        .with_runtime_env(runtime)
        .with_scalar_functions(SessionStateDefaults::default_scalar_functions())
        .with_higher_order_functions(SessionStateDefaults::default_higher_order_functions())
        .with_aggregate_functions(crate::functions::aggregate_functions())
        .with_window_functions(SessionStateDefaults::default_window_functions())
        .with_expr_planners(SessionStateDefaults::default_expr_planners())
        .with_table_function_list(SessionStateDefaults::default_table_functions())
        .build()
}
