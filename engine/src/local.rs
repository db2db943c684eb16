//! The engine's implementations of the gateway's backend traits over the local roles.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_gateway::remote::{ShardResolver, TableLayout};
use strata_gateway::{
    BackendError, BatchStream, Caller, Durability, ErrorKind, IngestBackend, LogRequest, ShardAck,
    WriteAck, WriteRequest,
};
use strata_ingest::Write;

use crate::errors::{from_ingest, from_storage};
use crate::tenants::Tenants;

/// Writes go to this process's shard writers; log reads come from the bucket.
pub struct LocalIngest {
    pub tenants: Arc<Tenants>,
    /// How often a tail polls for new records.
    pub tail_poll: Duration,
}

#[async_trait::async_trait]
impl IngestBackend for LocalIngest {
    async fn write(&self, req: WriteRequest) -> Result<WriteAck, BackendError> {
        let t = self.tenants.get(req.caller.tenant.as_deref()).await?;
        let node = t.ingest.as_ref().ok_or_else(|| {
            BackendError::new(
                ErrorKind::FailedPrecondition,
                "this node runs no shard writers",
            )
        })?;
        let table = req.table.clone();
        let r = node
            .write(Write {
                table: req.table,
                batches: req.batches,
                producer: req.producer,
                durability: match req.durability {
                    Durability::Buffered => strata_ingest::Durability::Buffered,
                    Durability::Durable => strata_ingest::Durability::Durable,
                },
                create: Default::default(),
            })
            .await
            .map_err(from_ingest)?;
        if let Some(q) = &t.query {
            // The ingest side's newest manifest of the table (it commits new columns).
            let version = t
                .catalog
                .cached(&table.to_ascii_lowercase())
                .map(|m| m.version);
            q.note_write(&table, version);
        }
        Ok(WriteAck {
            rows: r.rows,
            shards: r
                .shards
                .into_iter()
                .map(|s| ShardAck {
                    shard: s.shard,
                    first_offset: s.first_offset,
                    last_offset: s.last_offset,
                })
                .collect(),
            duplicate: r.duplicate,
        })
    }

    async fn read_log(&self, req: LogRequest) -> Result<BatchStream, BackendError> {
        let catalog = self.tenants.catalog(req.caller.tenant.as_deref()).await?;
        let max_rows = req.max_rows.clamp(1, 1_000_000);
        // Fail fast on a bad table or shard before starting the stream.
        let m = catalog
            .load(&req.table)
            .await
            .map_err(|e| from_storage(&e))?;
        m.shard(req.shard).map_err(|e| from_storage(&e))?;
        let table = req.table.clone();
        let shard = req.shard;
        let poll = self.tail_poll;
        let follow = req.follow;
        // State: (next offset, done). The stream is owned by the caller; dropping it stops the tail.
        let stream = futures::stream::unfold((req.from_offset, false), move |(from, done)| {
            let catalog = catalog.clone();
            let table = table.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match strata_ingest::log::read_log(&catalog, &table, shard, from, max_rows)
                        .await
                    {
                        Ok(b) if b.num_rows() > 0 => {
                            let next = from + b.num_rows() as u64;
                            return Some((Ok(b), (next, !follow)));
                        }
                        Ok(b) => {
                            if !follow {
                                return Some((Ok(b), (from, true)));
                            }
                            tokio::time::sleep(poll).await;
                        }
                        Err(e) => return Some((Err(from_ingest(e)), (from, true))),
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

/// Tells a gateway how tables are sharded, from the manifest (cached by the catalog).
pub struct CatalogResolver {
    pub tenants: Arc<Tenants>,
}

#[async_trait::async_trait]
impl ShardResolver for CatalogResolver {
    async fn layout(
        &self,
        caller: &Caller,
        table: &str,
    ) -> Result<Option<TableLayout>, BackendError> {
        let catalog = self.tenants.catalog(caller.tenant.as_deref()).await?;
        let m = match catalog.cached(table) {
            Some(m) => m,
            None => match catalog.load(table).await {
                Ok(m) => m,
                Err(strata_storage::Error::TableNotFound(_)) => return Ok(None),
                Err(e) => return Err(from_storage(&e)),
            },
        };
        Ok(Some(TableLayout {
            num_shards: m.table.num_shards,
            shard_key: m.table.shard_key.clone(),
        }))
    }
}

/// What every tenant's query engine shares in a process: the cache and the settings.
#[derive(Clone)]
pub struct QueryShared {
    cache: Arc<strata_compute::cache::CachedStore>,
    config: strata_compute::QueryConfig,
    /// Query threads, admission, memory and caches of the node, shared by every tenant.
    resources: strata_compute::NodeResources,
}

impl QueryShared {
    /// Open the tiered cache over `store`.
    pub async fn open(
        s: &crate::settings::Settings,
        store: Arc<dyn object_store::ObjectStore>,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        let config = s.query_config();
        let cache = strata_compute::cache::CachedStore::open(
            store,
            &strata_compute::cache::CacheOptions::from_config(&config),
            registry,
        )
        .await
        .map_err(|e| format!("cannot open the cache: {e}"))?;
        let resources = strata_compute::NodeResources::new(&config)
            .map_err(|e| format!("cannot start the query engine: {e}"))?;
        resources
            .register_metrics(registry)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            cache: Arc::new(cache),
            config,
            resources,
        })
    }

    /// The bucket as queries see it: through the cache.
    pub fn cached_store(&self) -> Arc<dyn object_store::ObjectStore> {
        Arc::clone(&self.cache) as _
    }

    /// A query engine over one tenant's catalog; each query reads through a handle on the
    /// shared cache that counts what it served and fetched for that query.
    pub fn engine(
        &self,
        catalog: strata_storage::Catalog,
        tenant: Option<&str>,
    ) -> Result<strata_compute::QueryEngine, strata_compute::Error> {
        let cache = Arc::clone(&self.cache);
        let tenant = tenant.map(str::to_string);
        let engine = strata_compute::QueryEngine::with_resources(
            catalog,
            self.config.clone(),
            self.resources.clone(),
        )?;
        Ok(engine.with_query_store(Arc::new(move |cost| {
            let counted: Arc<dyn object_store::ObjectStore> = Arc::new(cache.for_query(cost));
            crate::tenants::Tenants::scoped(&counted, tenant.as_deref())
        })))
    }

    /// Flush the SSD tier so the cache is warm after a restart.
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "cache close failed");
        }
    }
}

/// SQL over this process's query engines; `CREATE TABLE` and `DELETE` go to the catalog.
pub struct LocalQuery {
    pub tenants: Arc<Tenants>,
}

fn count_batch(
    n: u64,
) -> Result<(arrow::datatypes::SchemaRef, arrow::array::RecordBatch), BackendError> {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("count", arrow::datatypes::DataType::UInt64, false),
    ]));
    let b = arrow::array::RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(arrow::array::UInt64Array::from(vec![n]))],
    )
    .map_err(|e| BackendError::new(ErrorKind::Internal, e.to_string()))?;
    Ok((schema, b))
}

fn params_to_scalars(
    params: Option<&arrow::array::RecordBatch>,
) -> Result<Option<Vec<datafusion::scalar::ScalarValue>>, BackendError> {
    let Some(p) = params else { return Ok(None) };
    if p.num_rows() == 0 {
        return Ok(None);
    }
    p.columns()
        .iter()
        .map(|c| {
            datafusion::scalar::ScalarValue::try_from_array(c, 0).map_err(|e| {
                BackendError::new(ErrorKind::InvalidArgument, format!("bad parameter: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl LocalQuery {
    async fn ddl(
        &self,
        caller: &Caller,
        kind: strata_compute::StatementKind,
    ) -> Result<Option<arrow::array::RecordBatch>, BackendError> {
        use strata_compute::StatementKind as K;
        let t = self.tenants.get(caller.tenant.as_deref()).await?;
        // TRUNCATE is a delete of every row written before it.
        let kind = match kind {
            K::Truncate { table } => K::Delete {
                table,
                predicate_sql: None,
            },
            other => other,
        };
        match kind {
            K::Query | K::Other | K::Truncate { .. } => Ok(None),
            K::DropTable { table, if_exists } => {
                match t.catalog.drop_table(&table).await {
                    Ok(()) => {}
                    Err(strata_storage::Error::TableNotFound(_)) if if_exists => {}
                    Err(e) => return Err(from_storage(&e)),
                }
                if let Some(node) = &t.ingest {
                    node.forget_table(&table).await;
                }
                Ok(Some(count_batch(0)?.1))
            }
            K::AlterTable {
                table,
                if_exists,
                changes,
            } => {
                let r = t
                    .catalog
                    .commit(&table, |m| {
                        m.table = alter(m.table.clone(), &changes)?;
                        Ok(())
                    })
                    .await;
                match r {
                    Ok(_) => Ok(Some(count_batch(0)?.1)),
                    Err(strata_storage::Error::TableNotFound(_)) if if_exists => {
                        Ok(Some(count_batch(0)?.1))
                    }
                    Err(e) => Err(from_storage(&e)),
                }
            }
            K::CreateTable(spec) => {
                let unknown: Vec<&String> = spec
                    .options
                    .keys()
                    .filter(|k| {
                        ![
                            "time_column",
                            "shard_key",
                            "num_shards",
                            "retention",
                            "bloom_columns",
                        ]
                        .contains(&k.as_str())
                    })
                    .collect();
                if !unknown.is_empty() {
                    return Err(BackendError::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "unknown table options {unknown:?}; known: time_column, shard_key, num_shards, retention, bloom_columns"
                        ),
                    ));
                }
                let fields: Vec<_> = spec.columns.iter().map(|c| c.to_field()).collect();
                let schema = arrow::datatypes::Schema::new(fields);
                let time_column = spec.time_column.clone().or_else(|| {
                    ["ts", "time", "timestamp"]
                        .iter()
                        .find(|c| {
                            schema.field_with_name(c).is_ok_and(|f| {
                                matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(_, _))
                            })
                        })
                        .map(|c| c.to_string())
                });
                let default_shards = t.ingest.as_ref().map_or(4, |n| n.config().default_shards);
                let def = strata_storage::TableDef {
                    name: spec.name.clone(),
                    schema,
                    time_column,
                    shard_key: spec.shard_key.clone(),
                    num_shards: spec.num_shards.unwrap_or(default_shards),
                    retention_secs: spec.retention.map(|d| d.as_secs()),
                    bloom_columns: spec.bloom_columns.clone(),
                    created_at_ms: 0,
                };
                let (_, created) = t
                    .catalog
                    .create_table(def)
                    .await
                    .map_err(|e| from_storage(&e))?;
                if !created && !spec.if_not_exists {
                    return Err(BackendError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "table `{}` already exists (use CREATE TABLE IF NOT EXISTS)",
                            spec.name
                        ),
                    ));
                }
                Ok(Some(count_batch(0)?.1))
            }
            K::Delete {
                table,
                predicate_sql,
            } => {
                let predicate = predicate_sql.unwrap_or_else(|| "true".to_string());
                t.catalog.load(&table).await.map_err(|e| from_storage(&e))?;
                // Count what the rule hides now (also validates the predicate).
                let matched = match &t.query {
                    Some(q) => {
                        let sql = format!("SELECT count(*) FROM {table} WHERE {predicate}");
                        let r = q
                            .execute(&sql, &strata_compute::QueryContext::default())
                            .await
                            .map_err(crate::errors::from_compute)?;
                        let batches: Vec<_> =
                            futures::TryStreamExt::try_collect::<Vec<_>>(r.stream)
                                .await
                                .map_err(|e| {
                                    BackendError::new(ErrorKind::InvalidArgument, e.to_string())
                                })?;
                        batches
                            .first()
                            .and_then(|b| arrow::array::AsArray::as_primitive_opt::<arrow::datatypes::Int64Type>(b.column(0)))
                            .map_or(0, |a| a.value(0) as u64)
                    }
                    None => 0,
                };
                // The rule covers every row acknowledged so far: offsets below each shard's end.
                t.catalog
                    .add_delete_rule(&table, &predicate)
                    .await
                    .map_err(|e| from_storage(&e))?;
                Ok(Some(count_batch(matched)?.1))
            }
        }
    }
}

/// `def` with an `ALTER TABLE`'s changes applied. Only what can change without rewriting
/// stored data may change: new (nullable) columns, bloom columns (new segments and
/// compaction get them) and retention.
fn alter(
    mut def: strata_storage::TableDef,
    changes: &[strata_compute::AlterChange],
) -> strata_storage::Result<strata_storage::TableDef> {
    use strata_compute::AlterChange as C;
    use strata_storage::Error as E;
    for change in changes {
        match change {
            C::AddColumn {
                column,
                if_not_exists,
            } => {
                if def.schema.field_with_name(&column.name).is_ok() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(E::InvalidInput(format!(
                        "table `{}` already has a column `{}`",
                        def.name, column.name
                    )));
                }
                let mut fields: Vec<arrow::datatypes::FieldRef> =
                    def.schema.fields().iter().cloned().collect();
                fields.push(std::sync::Arc::new(column.to_field()));
                def.schema = arrow::datatypes::Schema::new(fields);
            }
            C::SetOption { key, value } => match key.as_str() {
                "bloom_columns" => {
                    def.bloom_columns = value
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                "retention" => {
                    def.retention_secs = match value.trim().to_ascii_lowercase().as_str() {
                        "none" | "off" | "0" => None,
                        v => Some(
                            strata_compute::statement::parse_retention(v)
                                .map_err(|e| E::InvalidInput(e.to_string()))?
                                .as_secs(),
                        ),
                    };
                }
                "time_column" | "shard_key" | "num_shards" => {
                    return Err(E::InvalidInput(format!(
                        "`{key}` of table `{}` cannot change after it is created (stored \
                         segments and WAL entries are laid out by it)",
                        def.name
                    )));
                }
                other => {
                    return Err(E::InvalidInput(format!(
                        "unknown table option `{other}`; ALTER TABLE ... SET takes bloom_columns and retention"
                    )));
                }
            },
        }
    }
    def.validated()
}

#[async_trait::async_trait]
impl strata_gateway::QueryBackend for LocalQuery {
    async fn execute(
        &self,
        req: strata_gateway::QueryRequest,
    ) -> Result<(arrow::datatypes::SchemaRef, BatchStream), BackendError> {
        let kind =
            strata_compute::parse_statement_kind(&req.sql).map_err(crate::errors::from_compute)?;
        let changed = kind.table().map(str::to_string);
        let answer = self.ddl(&req.caller, kind).await;
        // Whatever the DDL did (even on failure: a commit's outcome may be unknown), this
        // process's queries read the table's manifest again.
        if let Some(table) = &changed {
            let t = self.tenants.get(req.caller.tenant.as_deref()).await?;
            if let Some(q) = &t.query {
                q.note_change(table);
            }
        }
        if let Some(b) = answer? {
            let schema = b.schema();
            return Ok((schema, futures::stream::iter(vec![Ok(b)]).boxed()));
        }
        let t = self.tenants.get(req.caller.tenant.as_deref()).await?;
        let q = t.query.as_ref().ok_or_else(|| {
            BackendError::new(
                ErrorKind::FailedPrecondition,
                "this node runs no query engine; send SQL to a gateway or compute node",
            )
        })?;
        let ctx = strata_compute::QueryContext {
            tenant: req.caller.tenant.clone(),
            timeout: req.timeout,
            params: params_to_scalars(req.params.as_ref())?,
        };
        let r = q
            .execute(&req.sql, &ctx)
            .await
            .map_err(crate::errors::from_compute)?;
        let stream = r
            .stream
            .map(|b| b.map_err(|e| crate::errors::from_compute(strata_compute::Error::from(e))));
        // When the stream ends, the caller learns what the query cost (final by then).
        let (sink, cost) = (req.cost.clone(), r.cost);
        let report = futures::stream::once(async move {
            if let Some(sink) = sink
                && let Ok(v) = serde_json::to_value(cost.report())
            {
                sink.set(v);
            }
        })
        .filter_map(|()| async { None });
        Ok((r.schema, stream.chain(report).boxed()))
    }

    async fn schema(
        &self,
        req: strata_gateway::QueryRequest,
    ) -> Result<arrow::datatypes::SchemaRef, BackendError> {
        use strata_compute::StatementKind as K;
        match strata_compute::parse_statement_kind(&req.sql).map_err(crate::errors::from_compute)? {
            K::CreateTable(_)
            | K::Delete { .. }
            | K::Truncate { .. }
            | K::AlterTable { .. }
            | K::DropTable { .. } => Ok(count_batch(0)?.0),
            _ => {
                let t = self.tenants.get(req.caller.tenant.as_deref()).await?;
                let q = t.query.as_ref().ok_or_else(|| {
                    BackendError::new(
                        ErrorKind::FailedPrecondition,
                        "this node runs no query engine",
                    )
                })?;
                q.plan_schema(&req.sql, req.caller.tenant.as_deref())
                    .await
                    .map_err(crate::errors::from_compute)
            }
        }
    }

    async fn list_tables(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(String, arrow::datatypes::SchemaRef)>, BackendError> {
        let t = self.tenants.get(caller.tenant.as_deref()).await?;
        let mut out = Vec::new();
        for name in t
            .catalog
            .list_tables()
            .await
            .map_err(|e| from_storage(&e))?
        {
            if let Ok(m) = t.catalog.load(&name).await {
                out.push((name, m.table.schema_ref()));
            }
        }
        Ok(out)
    }
}

/// What a query reads, for the gateway's result cache
/// ([`strata_gateway::result_cache`]): per table, the manifest version, and per shard the
/// newest WAL sequence — acknowledged rows are visible from the WAL before a flush commits
/// them to the manifest, so a write changes the key as surely as a commit does.
///
/// Cacheable is only a single plain query (`SELECT` / `WITH` / set operations) over
/// existing tables of `strata.public`, calling none of `now()`, `random()`, `uuid()`,
/// `today()`, `current_*`, `localtime*`. Costs one manifest LIST (plus a GET when it
/// changed) and one WAL LIST per shard, for every table the query reads.
///
/// # Freshness
/// Compute engines reuse a manifest for `manifest_ttl` (100 ms by default), so a query
/// started just after a commit may still run on the previous manifest. A result is cached
/// only once the state it reads (manifest versions and WAL sequences) has been known to this
/// source for `settle` (twice the compute nodes' `manifest_ttl`, for which they reuse
/// manifests and WAL listings); before that, queries run uncached. Time-based effects that no
/// version records (rows aging past retention) are bounded by the cache's TTL.
pub struct CatalogVersions {
    tenants: Arc<Tenants>,
    settle: Duration,
    seen: std::sync::Mutex<SeenVersions>,
    /// Table states read from the bucket (on a node without a query engine), reused for
    /// `ttl`: a burst of queries costs one manifest poll and one WAL listing per shard.
    ttl: Duration,
    polled: std::sync::Mutex<PolledStates>,
}

/// A table's name, manifest version and next WAL sequence per shard.
type TableState = (String, u64, Vec<(u32, u64)>);

/// (tenant, table) → when its state was read, and the state (`None`: no such table).
type PolledStates =
    std::collections::HashMap<(Option<String>, String), (tokio::time::Instant, Option<TableState>)>;

/// (tenant, table) → the newest manifest version seen, and when it was first seen.
type SeenVersions =
    std::collections::HashMap<(Option<String>, String), ((u64, u64), tokio::time::Instant)>;

impl CatalogVersions {
    /// At most this many (tenant, table) pairs are tracked; beyond, the memory of when
    /// versions were first seen is reset (results then go uncached for `settle`).
    const MAX_TRACKED: usize = 100_000;

    pub fn new(tenants: Arc<Tenants>, settle: Duration, ttl: Duration) -> Self {
        Self {
            tenants,
            settle,
            seen: std::sync::Mutex::default(),
            ttl,
            polled: std::sync::Mutex::default(),
        }
    }

    /// The table's state as queries see it: from the tenant's query engine when this node
    /// runs one (its manifest and WAL listings are the ones queries use, so this costs
    /// nothing extra), else read from the bucket at most once per `ttl`.
    async fn table_state(
        &self,
        tenant: &crate::tenants::Tenant,
        table: &str,
    ) -> Result<Option<TableState>, BackendError> {
        if let Some(q) = &tenant.query {
            return q
                .table_state(table)
                .await
                .map_err(crate::errors::from_compute);
        }
        let key = (tenant.name.clone(), table.to_ascii_lowercase());
        let now = tokio::time::Instant::now();
        {
            let polled = self
                .polled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, state)) = polled.get(&key)
                && now.saturating_duration_since(*at) < self.ttl
            {
                return Ok(state.clone());
            }
        }
        let state = Self::table_versions(&tenant.catalog, table).await?;
        let mut polled = self
            .polled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if polled.len() >= Self::MAX_TRACKED {
            polled.clear();
        }
        polled.insert(key, (now, state.clone()));
        Ok(state)
    }

    /// The tables a statement reads, if its result may be cached.
    fn cacheable_tables(sql: &str) -> Option<Vec<String>> {
        use datafusion::sql::parser::{DFParser, Statement as DFStatement};
        use datafusion::sql::sqlparser::ast::{Expr, Statement, visit_expressions};
        let sql = strata_compute::statement::number_placeholders(sql);
        let mut statements = DFParser::parse_sql(&sql).ok()?;
        if statements.len() != 1 {
            return None;
        }
        let statement = statements.pop_front()?;
        let DFStatement::Statement(inner) = &statement else {
            return None;
        };
        if !matches!(inner.as_ref(), Statement::Query(_)) {
            return None;
        }
        let volatile = visit_expressions(inner.as_ref(), |e| match e {
            Expr::Function(f) => {
                let name = f
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_ascii_lowercase())
                    .unwrap_or_default();
                let volatile = name.starts_with("current_")
                    || matches!(
                        name.as_str(),
                        "now"
                            | "today"
                            | "random"
                            | "rand"
                            | "uuid"
                            | "gen_random_uuid"
                            | "localtime"
                            | "localtimestamp"
                    );
                if volatile {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            }
            _ => std::ops::ControlFlow::Continue(()),
        });
        if volatile.is_break() {
            return None;
        }
        let (refs, _ctes) =
            datafusion::sql::resolve::resolve_table_references(&statement, true).ok()?;
        let mut tables = refs
            .iter()
            .map(|r| {
                let catalog_ok = r
                    .catalog()
                    .is_none_or(|c| c == strata_compute::CATALOG_NAME);
                let schema_ok = r.schema().is_none_or(|s| s == strata_compute::SCHEMA_NAME);
                (catalog_ok && schema_ok).then(|| r.table().to_ascii_lowercase())
            })
            .collect::<Option<Vec<String>>>()?;
        tables.sort();
        tables.dedup();
        Some(tables)
    }

    /// `(table, manifest version, [(shard, newest WAL sequence + 1, or 0)])`; `None` if
    /// the table does not exist.
    async fn table_versions(
        catalog: &strata_storage::Catalog,
        table: &str,
    ) -> Result<Option<TableState>, BackendError> {
        use futures::TryStreamExt;
        let m = match catalog.load(table).await {
            Ok(m) => m,
            Err(
                strata_storage::Error::TableNotFound(_) | strata_storage::Error::InvalidInput(_),
            ) => {
                return Ok(None);
            }
            Err(e) => return Err(from_storage(&e)),
        };
        let store = catalog.store();
        let m = &m;
        let wal: Vec<(u32, u64)> = futures::stream::iter(0..m.table.num_shards)
            .map(|shard| async move {
                let floor = m.shards.get(&shard).map_or(0, |s| s.flushed_wal_seq);
                let listed = strata_storage::wal::list(store.as_ref(), &m.table.name, shard, floor)
                    .await
                    .map_err(|e| from_storage(&e))?;
                Ok::<_, BackendError>((shard, listed.last().map_or(0, |(seq, _)| seq + 1)))
            })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(Some((m.table.name.clone(), m.version, wal)))
    }

    /// Whether the table's `state` (manifest version, then the sum of its shards' next WAL
    /// sequences: both only grow) has been unchanged for `settle` at `now`. Compute nodes
    /// reuse manifests and WAL listings for up to `manifest_ttl`, so a result is cached only
    /// once every node must be answering from this state, never one that lacks new rows.
    fn settled(
        &self,
        tenant: Option<&String>,
        table: &str,
        version: (u64, u64),
        now: tokio::time::Instant,
    ) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= Self::MAX_TRACKED {
            seen.clear();
        }
        let (known, since) = seen
            .entry((tenant.cloned(), table.to_string()))
            .or_insert((version, now));
        if version > *known {
            (*known, *since) = (version, now);
        }
        // An older version than one seen before: a lagging read; do not cache it.
        version == *known && now.saturating_duration_since(*since) >= self.settle
    }
}

#[async_trait::async_trait]
impl strata_gateway::VersionSource for CatalogVersions {
    async fn versions(
        &self,
        caller: &Caller,
        sql: &str,
    ) -> Result<Option<Vec<(String, u64)>>, BackendError> {
        let Some(tables) = Self::cacheable_tables(sql) else {
            return Ok(None);
        };
        let started = tokio::time::Instant::now();
        let tenant = self.tenants.get(caller.tenant.as_deref()).await?;
        let per_table =
            futures::future::try_join_all(tables.iter().map(|t| self.table_state(&tenant, t)))
                .await?;
        let mut out = Vec::new();
        let mut settled = true;
        for t in per_table {
            let Some((name, version, wal)) = t else {
                return Ok(None);
            };
            // Every table is noted, so a join becomes cacheable as soon as all are settled.
            let wal_mark = wal.iter().map(|(_, seq)| *seq).sum::<u64>();
            settled &= self.settled(caller.tenant.as_ref(), &name, (version, wal_mark), started);
            for (shard, seq) in wal {
                out.push((format!("{name}/wal/{shard}"), seq));
            }
            out.push((name, version));
        }
        Ok(settled.then_some(out))
    }
}

#[cfg(test)]
mod catalog_versions_tests {
    use super::CatalogVersions;

    fn tables(sql: &str) -> Option<Vec<String>> {
        CatalogVersions::cacheable_tables(sql)
    }

    #[test]
    fn plain_queries_name_their_tables() {
        assert_eq!(
            tables("SELECT count(*) FROM logs"),
            Some(vec!["logs".into()])
        );
        assert_eq!(
            tables("SELECT * FROM Logs l JOIN strata.public.hosts h ON l.host = h.name"),
            Some(vec!["hosts".into(), "logs".into()])
        );
        assert_eq!(
            tables("WITH recent AS (SELECT * FROM logs WHERE id > ?) SELECT * FROM recent"),
            Some(vec!["logs".into()])
        );
        assert_eq!(tables("SELECT 1"), Some(vec![]));
    }

    #[test]
    fn volatile_or_non_queries_are_not_cacheable() {
        for sql in [
            "SELECT now()",
            "SELECT * FROM logs WHERE ts > now() - interval '1 hour'",
            "SELECT * FROM logs WHERE ts > CURRENT_TIMESTAMP",
            "SELECT current_date",
            "SELECT random() FROM logs",
            "SELECT uuid()",
            "DELETE FROM logs WHERE id = 1",
            "CREATE TABLE t (a INT)",
            "INSERT INTO logs VALUES (1)",
            "EXPLAIN SELECT * FROM logs",
            "SHOW TABLES",
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM other.public.logs",
            "SELECT 1; SELECT 2",
            "SELEC nonsense",
        ] {
            assert_eq!(tables(sql), None, "{sql}");
        }
    }
}
