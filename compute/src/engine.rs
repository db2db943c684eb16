//! [`QueryEngine`]: the public entry point of a query node.
//!
//! Per query: admission (a semaphore; over the cap wait [`QueryConfig::admission_wait`],
//! then `ResourceExhausted`), parse + confinement, a fresh `SessionState` whose `strata`
//! catalog resolves tables lazily, planning (re-planned, up to 5 times, if the manifest turned out
//! stale), and execution with a per-query memory pool under a deadline. Shared by all
//! queries: the data cache, DataFusion's Parquet metadata cache, the object-store registry
//! and the spill manager (one `RuntimeEnv`).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
};
use datafusion::common::ScalarValue;
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
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
use crate::error::{Error, Result, is_stale_manifest};
use crate::manifests::ManifestCache;
use crate::schema_provider::{CATALOG_NAME, SCHEMA_NAME, StrataSchema};
use crate::store_registry::SingleStoreRegistry;
use crate::stream::GuardedStream;
use crate::table::ScanEnv;
use crate::wal_source::WalCache;

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

struct Inner {
    config: QueryConfig,
    manifests: Arc<ManifestCache>,
    cache: Option<CachedStore>,
    /// Where segments and WAL entries are read (the cache, or the caller's store).
    store: Arc<dyn ObjectStore>,
    store_url: ObjectStoreUrl,
    runtime: Arc<RuntimeEnv>,
    template: SessionState,
    admission: Arc<Semaphore>,
    wal_cache: WalCache,
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
        Self::build(catalog, config, data, Some(cache))
    }

    /// An engine that reads everything through `catalog.store()` as it is, with no cache of
    /// its own. Use it to share one [`CachedStore`] between engines (e.g. one per tenant):
    /// build each catalog over the cached store, or over a `PrefixStore` of it, so cache
    /// keys are full bucket paths.
    pub fn with_store(catalog: Catalog, config: QueryConfig) -> Result<Self> {
        let data = Arc::clone(catalog.store());
        Self::build(catalog, config, data, None)
    }

    fn build(
        catalog: Catalog,
        config: QueryConfig,
        data: Arc<dyn ObjectStore>,
        cache: Option<CachedStore>,
    ) -> Result<Self> {
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let disk = match &config.spill_dir {
            Some(dir) => DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.clone()]))
                .with_max_temp_directory_size(config.max_spill_bytes),
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(SingleStoreRegistry::new(
                store_url.as_ref(),
                Arc::clone(&data),
            )))
            .with_disk_manager_builder(disk)
            .with_metadata_cache_limit(config.metadata_cache_bytes)
            .build_arc()?;
        let template = session_template(&config, Arc::clone(&runtime));
        Ok(Self {
            inner: Arc::new(Inner {
                manifests: Arc::new(ManifestCache::new(catalog, config.manifest_ttl)),
                admission: Arc::new(Semaphore::new(config.max_concurrent_queries.max(1))),
                wal_cache: WalCache::new(config.wal_cache_bytes),
                config,
                cache,
                store: data,
                store_url,
                runtime,
                template,
            }),
        })
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

    /// Plan and start `sql`. Batches stream as they are produced; the query holds its
    /// admission slot and memory until the stream ends or is dropped.
    pub async fn execute(&self, sql: &str, ctx: &QueryContext) -> Result<QueryResult> {
        let timeout = ctx.timeout.map_or(self.inner.config.query_timeout, |t| {
            t.min(self.inner.config.query_timeout)
        });
        let deadline = Instant::now() + timeout;
        let permit = self.admit().await?;
        tracing::debug!(tenant = ctx.tenant.as_deref().unwrap_or("-"), sql, "query");
        let stream = tokio::time::timeout_at(deadline, self.start(sql, ctx.params.as_deref()))
            .await
            .map_err(|_| Error::DeadlineExceeded(timeout))??;
        let schema = stream.schema();
        Ok(QueryResult {
            schema,
            stream: Box::pin(GuardedStream::new(stream, deadline, timeout, permit)),
        })
    }

    /// The schema `sql` would produce, without running it (Flight SQL `GetFlightInfo`,
    /// prepared statements). Placeholders may stay unbound.
    pub async fn plan_schema(&self, sql: &str) -> Result<SchemaRef> {
        let (_, plan) = self.plan(sql, None).await?;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }

    /// Types of the `$1`, `$2`, ... placeholders of `sql`, in order (`None`: not inferable).
    pub async fn parameter_types(&self, sql: &str) -> Result<Vec<Option<DataType>>> {
        let (_, plan) = self.plan(sql, None).await?;
        let mut params: Vec<(usize, Option<DataType>)> = plan
            .get_parameter_types()?
            .into_iter()
            .filter_map(|(name, t)| Some((name.strip_prefix('$')?.parse().ok()?, t)))
            .collect();
        params.sort_by_key(|(i, _)| *i);
        Ok(params.into_iter().map(|(_, t)| t).collect())
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
        let sem = Arc::clone(&self.inner.admission);
        if let Ok(p) = Arc::clone(&sem).try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout(self.inner.config.admission_wait, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Error::Internal("the admission semaphore was closed".into())),
            Err(_) => Err(Error::ResourceExhausted(format!(
                "{} queries are already running on this node; retry shortly",
                self.inner.config.max_concurrent_queries
            ))),
        }
    }

    async fn start(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
    ) -> Result<SendableRecordBatchStream> {
        // A flush can commit (and delete the WAL objects a plan named) while a query plans;
        // under a steady load that can happen more than once in a row.
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            let (state, plan) = self.plan(sql, params).await?;
            match state.create_physical_plan(&plan).await {
                Ok(physical) => {
                    let task = self.task_context(&state);
                    return datafusion::physical_plan::execute_stream(physical, task)
                        .map_err(Error::from);
                }
                Err(e) => {
                    let e = Error::from(e);
                    if attempt >= ATTEMPTS || !is_stale_manifest(&e) {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt, "re-planning on a fresh manifest");
                    self.inner.manifests.invalidate_all();
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
    ) -> Result<(SessionState, LogicalPlan)> {
        let template = &self.inner.template;
        let dialect = template.config().options().sql_parser.dialect;
        // JDBC/ODBC-style `?` placeholders (ADBC sends them) become `$1`, `$2`, ...
        let sql = crate::statement::number_placeholders(sql);
        let statement: DFStatement = template.sql_to_statement(&sql, &dialect)?;
        confine::check_statement(&statement)?;
        let refs = template.resolve_table_references(&statement)?;
        let lists_tables = confine::check_references(&refs)?;
        let state = self.session(lists_tables).await?;
        let plan = state.statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Error::PermissionDenied(e.strip_backtrace()))?;
        let plan = match params {
            Some(p) => plan.with_param_values(p.to_vec())?,
            None => plan,
        };
        Ok((state, plan))
    }

    async fn session(&self, lists_tables: bool) -> Result<SessionState> {
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
        let names = if lists_tables {
            inner.manifests.table_names().await?
        } else {
            Arc::default()
        };
        let env = ScanEnv {
            store: Arc::clone(&inner.store),
            store_url: inner.store_url.clone(),
            catalog: inner.manifests.catalog().clone(),
            wal_cache: inner.wal_cache.clone(),
            now_micros,
        };
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(
            SCHEMA_NAME,
            Arc::new(StrataSchema::new(Arc::clone(&inner.manifests), env, names)),
        )?;
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG_NAME.to_string(), Arc::new(catalog));
        state.register_catalog_list(Arc::new(catalogs));
        Ok(state)
    }

    /// The task context of one query: shared runtime, own memory pool.
    fn task_context(&self, state: &SessionState) -> Arc<TaskContext> {
        let top_consumers = NonZeroUsize::MIN.saturating_add(2);
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(self.inner.config.memory_limit_bytes),
            top_consumers,
        ));
        let runtime = RuntimeEnv {
            memory_pool: pool,
            ..self.inner.runtime.as_ref().clone()
        };
        Arc::new(TaskContext::from(state).with_runtime(Arc::new(runtime)))
    }
}

fn session_template(config: &QueryConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
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
    for rule in crate::rules::optimizer_rules() {
        builder = builder.with_optimizer_rule(rule);
    }
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
