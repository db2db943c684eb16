//! [`RemoteIngestBackend`]: writes split by shard and sent to the ingest node owning each
//! shard; log reads sent to the shard's owner.
//!
//! Shard `s` of every table is owned by node `s % nodes.len()`. A write is split with the
//! table's shard key on `HashRing::for_shards(num_shards)` (the ring the shard writers use),
//! and each owner receives its rows in one `DoPut`, all with the request's producer id and
//! sequence (shard writers deduplicate per shard). A shard has exactly one owner, so a write
//! is never redirected: if the owner is down the write fails with UNAVAILABLE and a retry
//! hint. Only writes with an idempotent producer are retried.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow_flight::{FlightDescriptor, Ticket};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use strata_common::{HashRing, partition_by_shard};
use tokio::time::Instant;

use super::cluster::NodeStatus;
use super::config::{NodeSpec, RemoteConfig};
use super::error::{DURABILITY_HEADER, PRODUCER_ID_HEADER, SEQUENCE_HEADER, SHARD_HEADER};
use super::metrics::{RemoteMetrics, Role};
use super::pool::{Node, NodeLease, NodePool};
use super::retry::{AttemptError, Retrier};
use super::rpc::{
    bounded, deadline_after, do_get, encode, guarded, insert_header, peek_first, request, settle,
    status_err,
};
use crate::backend::{
    BackendError, BatchStream, Caller, Durability, ErrorKind, IngestBackend, LogRequest, ShardAck,
    WriteAck, WriteRequest,
};

/// How a table is sharded, as the manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLayout {
    /// Shards of the table (at least 1).
    pub num_shards: u32,
    /// Column whose value picks a row's shard; `None` spreads whole writes over shards.
    pub shard_key: Option<String>,
}

/// Tells the gateway how a table is sharded. The engine implements it over the manifest /
/// catalog; it is called on every write, so it should answer from a cache.
#[async_trait::async_trait]
pub trait ShardResolver: Send + Sync + 'static {
    /// `None` when the table does not exist yet: the whole write then goes to the owner of
    /// shard 0, which creates the table.
    async fn layout(
        &self,
        caller: &Caller,
        table: &str,
    ) -> Result<Option<TableLayout>, BackendError>;
}

/// Writes to and log reads from ingest nodes. Create inside a Tokio runtime; dropping it
/// stops the health checker.
pub struct RemoteIngestBackend {
    pool: NodePool,
    resolver: Arc<dyn ShardResolver>,
    retrier: Retrier,
    /// Next shard for tables without a shard key.
    rotation: AtomicU64,
    rings: Mutex<HashMap<u32, Arc<HashRing>>>,
}

impl std::fmt::Debug for RemoteIngestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIngestBackend")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// The rows one node receives for one write.
#[derive(Debug, Default)]
struct NodeWrite {
    batches: Vec<RecordBatch>,
    shards: Vec<u32>,
    /// For tables without a shard key: the shard chosen for the rows.
    shard_hint: Option<u32>,
}

/// The JSON in a write's `PutResult.app_metadata`.
#[derive(Debug, Deserialize)]
struct AckJson {
    rows: u64,
    #[serde(default)]
    shards: Vec<ShardAckJson>,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Debug, Deserialize)]
struct ShardAckJson {
    shard: u32,
    first_offset: u64,
    last_offset: u64,
}

impl RemoteIngestBackend {
    /// `nodes[i]` is ingest node `i`; it owns shards `s` with `s % nodes.len() == i`.
    pub fn new(
        nodes: &[NodeSpec],
        config: &RemoteConfig,
        resolver: Arc<dyn ShardResolver>,
        metrics: &RemoteMetrics,
    ) -> Result<Self, BackendError> {
        Ok(Self {
            pool: NodePool::new(Role::Ingest, nodes, config, metrics)?,
            resolver,
            retrier: Retrier::new(config.retry.clone()),
            rotation: AtomicU64::new(0),
            rings: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> &NodePool {
        &self.pool
    }

    /// Health, breaker and load of every ingest node.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.pool.status()
    }

    /// The node index owning `shard`.
    pub fn owner_of(&self, shard: u32) -> usize {
        shard as usize % self.pool.len().max(1)
    }

    fn ring(&self, num_shards: u32) -> Arc<HashRing> {
        let mut rings = self.rings.lock();
        Arc::clone(
            rings
                .entry(num_shards)
                .or_insert_with(|| Arc::new(HashRing::for_shards(num_shards))),
        )
    }

    /// Split a write's batches by owner node, given the table's layout (`None`: a new table).
    fn plan(
        &self,
        req: &WriteRequest,
        layout: Option<&TableLayout>,
    ) -> Result<BTreeMap<usize, NodeWrite>, BackendError> {
        let mut plan: BTreeMap<usize, NodeWrite> = BTreeMap::new();
        let (num_shards, key) = match layout {
            Some(l) if l.num_shards == 0 => {
                return Err(BackendError::new(
                    ErrorKind::Internal,
                    format!("table `{}` has no shards in its manifest", req.table),
                ));
            }
            Some(l) => (l.num_shards, l.shard_key.as_deref()),
            None => (1, None),
        };
        let Some(key) = key else {
            // No shard key (or a new table): the whole write goes to one shard. An idempotent
            // producer's writes always go to the same shard (the node computes the same one),
            // so a retry reaches the node that saw its sequence; others rotate. A new table
            // goes to node 0, which creates it (and refuses a producer's write that belongs
            // elsewhere, which `write` then routes again).
            let shard = match (layout, &req.producer) {
                (None, _) => 0,
                (Some(_), Some((id, _))) => strata_common::producer_shard(id, num_shards),
                (Some(_), None) => {
                    (self.rotation.fetch_add(1, Ordering::Relaxed) % u64::from(num_shards)) as u32
                }
            };
            let w = plan.entry(self.owner_of(shard)).or_default();
            w.batches.extend(req.batches.iter().cloned());
            w.shards.push(shard);
            w.shard_hint = Some(shard);
            return Ok(plan);
        };
        let ring = self.ring(num_shards);
        for batch in &req.batches {
            let parts = partition_by_shard(batch, Some(key), &ring, 0).map_err(|e| {
                BackendError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "cannot route rows of table `{}` by its shard key `{key}`: {e}",
                        req.table
                    ),
                )
            })?;
            for (shard, part) in parts {
                let w = plan.entry(self.owner_of(shard)).or_default();
                w.batches.push(part);
                if !w.shards.contains(&shard) {
                    w.shards.push(shard);
                }
            }
        }
        Ok(plan)
    }

    /// A lease on the owner of `shards`: the first attempt needs the node in rotation and its
    /// breaker closed; a retry (only for idempotent writes) needs only the breaker, because
    /// no other node can take the shard and the retry itself is the probe.
    fn lease_owner(
        &self,
        node: usize,
        attempt: u32,
        what: &str,
        idempotent: bool,
    ) -> Result<NodeLease, AttemptError> {
        let now = std::time::Instant::now();
        let Some(n) = self.pool.nodes().get(node) else {
            return Err(AttemptError::fatal(BackendError::new(
                ErrorKind::Internal,
                format!("no ingest node {node}"),
            )));
        };
        let down = |n: &Arc<Node>| {
            let wait = n.retry_after(now, self.pool.config());
            let again = if idempotent {
                " with the same producer id and sequence"
            } else {
                ""
            };
            AttemptError::fatal(
                BackendError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "ingest node {} owns {what} and is unavailable ({}); no other node can take this \
                         shard's writes, so retry after {} ms{again}",
                        n.addr,
                        n.describe(now),
                        wait.as_millis()
                    ),
                )
                .with_retry_after(wait),
            )
        };
        if attempt == 1 && !n.is_healthy() {
            return Err(down(n));
        }
        n.acquire(now).map_err(|_| down(n))
    }

    async fn write_to_node(
        &self,
        node: usize,
        req: &WriteRequest,
        w: NodeWrite,
        deadline: Option<Instant>,
    ) -> Result<WriteAck, BackendError> {
        let shards: Vec<String> = w.shards.iter().map(u32::to_string).collect();
        let what = format!(
            "shard{} {} of table `{}`",
            if shards.len() == 1 { "" } else { "s" },
            shards.join(", "),
            req.table
        );
        let shard_hint = w.shard_hint;
        let data = encode(
            FlightDescriptor::new_path(vec![req.table.clone()]),
            w.batches,
        )
        .await?;
        let idempotent = req.producer.is_some();
        let cap = self.pool.config().request_timeout;
        let metrics = self.pool.metrics();
        let (ack, _guard) = self
            .retrier
            .run(
                idempotent,
                deadline,
                || metrics.retried(Role::Ingest, "write"),
                |attempt| {
                    let lease = self.lease_owner(node, attempt, &what, idempotent);
                    let data = data.clone();
                    async move {
                        let lease = lease?;
                        let mut client = lease.node().client();
                        let result = bounded(deadline, cap, "the write's acknowledgement", async {
                            let mut r =
                                request(futures::stream::iter(data), &req.caller, deadline)?;
                            if let Some((producer, seq)) = &req.producer {
                                insert_header(&mut r, PRODUCER_ID_HEADER, producer)?;
                                insert_header(&mut r, SEQUENCE_HEADER, &seq.to_string())?;
                            }
                            let durability = match req.durability {
                                Durability::Durable => "durable",
                                Durability::Buffered => "buffered",
                            };
                            insert_header(&mut r, DURABILITY_HEADER, durability)?;
                            if let Some(shard) = shard_hint {
                                insert_header(&mut r, SHARD_HEADER, &shard.to_string())?;
                            }
                            let mut results =
                                client.do_put(r).await.map_err(status_err)?.into_inner();
                            let mut ack = None;
                            // Read to the end: an error status may follow the acknowledgement.
                            while let Some(put) = results.message().await.map_err(status_err)? {
                                if ack.is_none() && !put.app_metadata.is_empty() {
                                    ack = Some(parse_ack(&put.app_metadata)?);
                                }
                            }
                            ack.ok_or_else(|| {
                                BackendError::new(
                                    ErrorKind::Internal,
                                    "the ingest node answered the write without an acknowledgement",
                                )
                            })
                        })
                        .await;
                        settle(&self.pool, "write", lease, result, deadline)
                    }
                },
            )
            .await?;
        Ok(ack)
    }
}

fn parse_ack(bytes: &[u8]) -> Result<WriteAck, BackendError> {
    let a: AckJson = serde_json::from_slice(bytes).map_err(|e| {
        BackendError::new(
            ErrorKind::Internal,
            format!("the ingest node's acknowledgement is not valid JSON: {e}"),
        )
    })?;
    Ok(WriteAck {
        rows: a.rows,
        shards: a
            .shards
            .into_iter()
            .map(|s| ShardAck {
                shard: s.shard,
                first_offset: s.first_offset,
                last_offset: s.last_offset,
            })
            .collect(),
        duplicate: a.duplicate,
    })
}

#[async_trait::async_trait]
impl IngestBackend for RemoteIngestBackend {
    async fn write(&self, req: WriteRequest) -> Result<WriteAck, BackendError> {
        if req.batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(WriteAck::default());
        }
        if let Some(first) = req.batches.first()
            && req
                .batches
                .iter()
                .any(|b| b.schema_ref() != first.schema_ref())
        {
            return Err(BackendError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the batches of one write to `{}` must share one schema; send a write per schema",
                    req.table
                ),
            ));
        }
        let deadline = deadline_after(req.timeout);
        let layout = self.resolver.layout(&req.caller, &req.table).await?;
        let first = self.write_planned(&req, layout.as_ref(), deadline).await;
        match first {
            // Planned before the table existed: the node that created it says the rows
            // belong to another node. Route them again with the table's layout.
            Err(e) if layout.is_none() && e.kind == ErrorKind::FailedPrecondition => {
                tracing::debug!(table = req.table, error = %e.message, "routing a new table's write again");
                let layout = self.resolver.layout(&req.caller, &req.table).await?;
                self.write_planned(&req, layout.as_ref(), deadline).await
            }
            other => other,
        }
    }

    async fn read_log(&self, req: LogRequest) -> Result<BatchStream, BackendError> {
        self.read_log_from_owner(req).await
    }
}

impl RemoteIngestBackend {
    async fn write_planned(
        &self,
        req: &WriteRequest,
        layout: Option<&TableLayout>,
        deadline: Option<Instant>,
    ) -> Result<WriteAck, BackendError> {
        let plan = self.plan(req, layout)?;
        let nodes: Vec<(usize, Vec<u32>)> =
            plan.iter().map(|(n, w)| (*n, w.shards.clone())).collect();
        let results = futures::future::join_all(
            plan.into_iter()
                .map(|(node, w)| async move { self.write_to_node(node, req, w, deadline).await }),
        )
        .await;

        let mut merged = WriteAck {
            duplicate: true,
            ..WriteAck::default()
        };
        let mut done = Vec::new();
        let mut failed = None;
        for ((_, shards), result) in nodes.iter().zip(results) {
            match result {
                Ok(ack) => {
                    merged.rows += ack.rows;
                    merged.shards.extend(ack.shards);
                    merged.duplicate &= ack.duplicate;
                    done.extend(shards.iter().copied());
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(mut e) = failed {
            if !done.is_empty() {
                done.sort_unstable();
                let again = if req.producer.is_some() {
                    "retry with the same producer id and sequence to complete it exactly once"
                } else {
                    "a retry without a producer id may write those rows twice"
                };
                e.message = format!(
                    "{} (the rows for shard(s) {:?} of `{}` were written; {again})",
                    e.message, done, req.table
                );
            }
            return Err(e);
        }
        merged.shards.sort_by_key(|s| s.shard);
        Ok(merged)
    }

    async fn read_log_from_owner(&self, req: LogRequest) -> Result<BatchStream, BackendError> {
        let node = self.owner_of(req.shard);
        let what = format!("shard {} of table `{}`", req.shard, req.table);
        let ticket = serde_json::json!({
            "log": {
                "table": req.table,
                "shard": req.shard,
                "from_offset": req.from_offset,
                "max_rows": req.max_rows,
                "follow": req.follow,
            }
        });
        let ticket = Ticket::new(ticket.to_string());
        let cap = self.pool.config().request_timeout;
        let metrics = self.pool.metrics();
        let req = &req;
        let (stream, guard) = self
            .retrier
            .run(
                true,
                None,
                || metrics.retried(Role::Ingest, "read_log"),
                |attempt| {
                    let lease = self.lease_owner(node, attempt, &what, true);
                    let ticket = ticket.clone();
                    async move {
                        let lease = lease?;
                        let mut client = lease.node().client();
                        let result = async {
                            let stream = bounded(
                                None,
                                cap,
                                "the log stream",
                                do_get(&mut client, ticket, &req.caller, None),
                            )
                            .await?;
                            if req.follow {
                                // A tail may wait long for its first record: hand it over now.
                                let s: BatchStream = Box::pin(stream.map(|r| {
                                    r.map_err(super::error::flight_error_to_backend_error)
                                }));
                                Ok(s)
                            } else {
                                peek_first(stream, None, cap).await.map(|(_, s)| s)
                            }
                        }
                        .await;
                        settle(&self.pool, "read_log", lease, result, None)
                    }
                },
            )
            .await?;
        Ok(guarded(stream, guard, None))
    }
}
