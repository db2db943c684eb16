//! One lazily connected, shared HTTP/2 channel per node, with the node's health, breaker and
//! in-flight count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::breaker::{BreakerState, CircuitBreaker, Permit};
use super::cluster::NodeStatus;
use super::config::{NodeSpec, RemoteConfig};
use super::error::CLUSTER_TOKEN_HEADER;
use super::health::HealthTask;
use super::metrics::{NodeMetrics, RemoteMetrics, Role};
use crate::backend::{BackendError, ErrorKind};
use crate::tls;

/// The nodes of one role (compute or ingest) and the background health checker that watches
/// them. Dropping the pool stops the checker; channels close when the last request using
/// them ends.
#[derive(Debug)]
pub struct NodePool {
    role: Role,
    nodes: Vec<Arc<Node>>,
    config: RemoteConfig,
    metrics: RemoteMetrics,
    _health: HealthTask,
}

impl NodePool {
    /// Channels connect on first use; nothing is dialled here. Must be called inside a Tokio
    /// runtime (the health checker and the channels' workers run on it).
    pub fn new(
        role: Role,
        nodes: &[NodeSpec],
        config: &RemoteConfig,
        metrics: &RemoteMetrics,
    ) -> Result<Self, BackendError> {
        if nodes.is_empty() {
            return Err(BackendError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "no {} nodes configured: give at least one host:port",
                    role.as_str()
                ),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackendError::new(
                ErrorKind::Internal,
                "the remote node pool must be created inside a Tokio runtime",
            ));
        }
        let tls = if nodes
            .iter()
            .any(|n| tls::is_tls_url(&tls::grpc_url(&n.addr, false)))
        {
            Some(client_tls(config)?)
        } else {
            None
        };
        let mut seeds = match config.retry.seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            None => StdRng::from_os_rng(),
        };
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                Node::new(
                    role,
                    index,
                    spec,
                    config,
                    tls.as_ref(),
                    metrics,
                    seeds.random(),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let health = HealthTask::spawn(
            nodes.iter().map(Arc::clone).collect(),
            config.health_interval,
            config.health_timeout,
        );
        Ok(Self {
            role,
            nodes,
            config: config.clone(),
            metrics: metrics.clone(),
            _health: health,
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Addresses in configuration order (index `i` is node `i`).
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Health, breaker and load of every node.
    pub fn status(&self) -> Vec<NodeStatus> {
        let now = Instant::now();
        self.nodes.iter().map(|n| n.status(now)).collect()
    }

    pub(crate) fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    pub(crate) fn config(&self) -> &RemoteConfig {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &RemoteMetrics {
        &self.metrics
    }

    /// Nodes a request may go to: healthy ones whose breaker lets it through, preferring
    /// those not in `tried`. When no node is healthy, every node whose breaker allows it
    /// (health checks can be wrong, e.g. all timing out under load; refusing everything
    /// would be worse).
    pub(crate) fn candidates(&self, now: Instant, tried: &[usize]) -> Vec<usize> {
        let mut healthy = Vec::with_capacity(self.nodes.len());
        let mut allowed = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let (is_healthy, allows) = n.eligibility(now);
            if allows {
                allowed.push(n.index);
                if is_healthy {
                    healthy.push(n.index);
                }
            }
        }
        let pool = if healthy.is_empty() { allowed } else { healthy };
        let untried: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|i| !tried.contains(i))
            .collect();
        if untried.is_empty() { pool } else { untried }
    }

    /// Why no node can take a request now, and when to try again.
    pub(crate) fn none_available(&self, now: Instant) -> BackendError {
        let wait = self
            .nodes
            .iter()
            .map(|n| n.retry_after(now, &self.config))
            .min()
            .unwrap_or(self.config.health_interval);
        let reasons: Vec<String> = self.nodes.iter().map(|n| n.describe(now)).collect();
        BackendError::new(
            ErrorKind::Unavailable,
            format!(
                "no {} node can take the request now ({}); retry after {} ms",
                self.role.as_str(),
                reasons.join("; "),
                wait.as_millis()
            ),
        )
        .with_retry_after(wait)
    }
}

/// TLS towards `https://` nodes from `remote.tls_ca`, `tls_cert` and `tls_key`.
fn client_tls(config: &RemoteConfig) -> Result<ClientTlsConfig, BackendError> {
    let invalid = |e: tls::TlsError| BackendError::new(ErrorKind::InvalidArgument, e.0);
    let identity = tls::pair(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        ("remote.tls_cert", "remote.tls_key"),
    )
    .map_err(invalid)?;
    tls::client_tls(config.tls_ca.as_deref(), identity).map_err(invalid)
}

/// A Flight client of a node.
pub(crate) type NodeClient = FlightServiceClient<InterceptedService<Channel, ClusterToken>>;

/// Puts the cluster secret on every call to a node (`x-strata-cluster-token`).
#[derive(Clone)]
pub(crate) struct ClusterToken(Option<AsciiMetadataValue>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ClusterToken(<redacted>)"
        } else {
            "ClusterToken(none)"
        })
    }
}

impl ClusterToken {
    fn new(secret: Option<&crate::auth::Secret>) -> Result<Self, BackendError> {
        secret
            .map(|s| {
                let mut v = AsciiMetadataValue::try_from(s.0.as_str()).map_err(|_| {
                    BackendError::new(
                        ErrorKind::InvalidArgument,
                        "cluster.secret must be printable ASCII",
                    )
                })?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for ClusterToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(CLUSTER_TOKEN_HEADER, v.clone());
        }
        Ok(req)
    }
}

/// One node: address, channel, health, breaker, load.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) index: usize,
    pub(crate) addr: String,
    pub(crate) weight: u32,
    pub(crate) role: Role,
    channel: Channel,
    token: ClusterToken,
    max_message_bytes: usize,
    rise: u32,
    fall: u32,
    state: Mutex<NodeState>,
    in_flight: AtomicUsize,
    pub(crate) metrics: NodeMetrics,
}

#[derive(Debug)]
struct NodeState {
    healthy: bool,
    ok_checks: u32,
    failed_checks: u32,
    breaker: CircuitBreaker,
    last_error: Option<String>,
}

/// How an attempt ended, as far as the node's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The node answered (an error about the request itself counts as an answer).
    Answered,
    /// The node failed: unreachable, overloaded, or too slow for its own timeout.
    NodeFault,
    /// No verdict: the caller's deadline ran out or the request was dropped.
    Abandoned,
}

impl Node {
    fn new(
        role: Role,
        index: usize,
        spec: &NodeSpec,
        config: &RemoteConfig,
        tls: Option<&ClientTlsConfig>,
        metrics: &RemoteMetrics,
        seed: u64,
    ) -> Result<Self, BackendError> {
        let uri = tls::grpc_url(&spec.addr, false);
        let secure = tls::is_tls_url(&uri);
        let mut endpoint = Endpoint::from_shared(uri).map_err(|e| {
            BackendError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "bad {} node address `{}`: {e}; write host:port",
                    role.as_str(),
                    spec.addr
                ),
            )
        })?;
        if let Some(tls) = tls.filter(|_| secure) {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| {
                BackendError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "cannot set up TLS to {} node `{}`: {}",
                        role.as_str(),
                        spec.addr,
                        tls::chain(&e)
                    ),
                )
            })?;
        }
        let channel = endpoint
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_lazy();
        let metrics = metrics.node(role, &spec.addr);
        metrics.healthy.set(1);
        metrics
            .breaker_state
            .set(BreakerState::Closed.gauge_value());
        Ok(Self {
            index,
            addr: spec.addr.clone(),
            weight: spec.weight.max(1),
            role,
            channel,
            token: ClusterToken::new(config.cluster_secret.as_ref())?,
            max_message_bytes: config.max_message_bytes,
            rise: config.rise.max(1),
            fall: config.fall.max(1),
            state: Mutex::new(NodeState {
                // Optimistic until the first check says otherwise, so the first requests after
                // start do not fail.
                healthy: true,
                ok_checks: 0,
                failed_checks: 0,
                breaker: CircuitBreaker::new(config.breaker.clone(), seed),
                last_error: None,
            }),
            in_flight: AtomicUsize::new(0),
            metrics,
        })
    }

    /// A Flight client on the shared channel (cheap: the channel is reference counted),
    /// whose every call carries the cluster token.
    pub(crate) fn client(&self) -> NodeClient {
        FlightServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.state.lock().healthy
    }

    /// (healthy, breaker lets a request through).
    fn eligibility(&self, now: Instant) -> (bool, bool) {
        let s = self.state.lock();
        (s.healthy, s.breaker.would_allow(now))
    }

    /// Take a breaker permit and count the request in flight.
    pub(crate) fn acquire(self: &Arc<Self>, now: Instant) -> Result<NodeLease, Duration> {
        let permit = {
            let mut s = self.state.lock();
            let (permit, changed) = s.breaker.try_acquire(now);
            self.breaker_changed(changed);
            permit?
        };
        self.metrics.requests.inc();
        Ok(NodeLease {
            permit: Some(permit),
            in_flight: Some(InFlight::new(self)),
            node: Arc::clone(self),
            started: Instant::now(),
        })
    }

    /// Take the node out of rotation until `rise` health checks pass.
    pub(crate) fn mark_down(&self, reason: &str) {
        let mut s = self.state.lock();
        s.ok_checks = 0;
        s.last_error = Some(reason.to_string());
        if s.healthy {
            s.healthy = false;
            self.metrics.healthy.set(0);
            tracing::warn!(role = self.role.as_str(), node = %self.addr, reason, "node out of rotation");
        }
    }

    /// Record a health check's result.
    pub(crate) fn record_check(&self, result: Result<(), String>) {
        let mut s = self.state.lock();
        match result {
            Ok(()) => {
                s.ok_checks = s.ok_checks.saturating_add(1);
                s.failed_checks = 0;
                if !s.healthy && s.ok_checks >= self.rise {
                    s.healthy = true;
                    s.last_error = None;
                    self.metrics.healthy.set(1);
                    tracing::info!(role = self.role.as_str(), node = %self.addr, "node back in rotation");
                }
            }
            Err(reason) => {
                s.failed_checks = s.failed_checks.saturating_add(1);
                s.ok_checks = 0;
                if s.healthy && s.failed_checks >= self.fall {
                    s.healthy = false;
                    self.metrics.healthy.set(0);
                    tracing::warn!(role = self.role.as_str(), node = %self.addr, %reason, "node failed its health check");
                }
                s.last_error = Some(format!("health check: {reason}"));
            }
        }
    }

    /// How long until this node may take requests again (zero if it may now).
    pub(crate) fn retry_after(&self, now: Instant, config: &RemoteConfig) -> Duration {
        let s = self.state.lock();
        let breaker = s.breaker.retry_after(now);
        let health = if s.healthy {
            Duration::ZERO
        } else {
            config.health_interval * self.rise.saturating_sub(s.ok_checks).max(1)
        };
        breaker.max(health).max(Duration::from_millis(1))
    }

    /// One line on why the node is not taking requests.
    pub(crate) fn describe(&self, now: Instant) -> String {
        let s = self.state.lock();
        let mut parts = vec![];
        if !s.healthy {
            parts.push("down".to_string());
        }
        let b = s.breaker.state(now);
        if b != BreakerState::Closed {
            parts.push(format!("breaker {}", b.as_str()));
        }
        if let Some(e) = &s.last_error {
            parts.push(format!("last error: {e}"));
        }
        if parts.is_empty() {
            parts.push("up".to_string());
        }
        format!("{} {}", self.addr, parts.join(", "))
    }

    pub(crate) fn status(&self, now: Instant) -> NodeStatus {
        let s = self.state.lock();
        NodeStatus {
            role: self.role,
            node: self.addr.clone(),
            healthy: s.healthy,
            breaker: s.breaker.state(now),
            in_flight: self.in_flight(),
            consecutive_failures: s.breaker.failures().max(s.failed_checks),
            consecutive_successful_checks: s.ok_checks,
            last_error: s.last_error.clone(),
        }
    }

    fn breaker_changed(&self, changed: Option<BreakerState>) {
        if let Some(state) = changed {
            self.metrics.breaker_state.set(state.gauge_value());
            self.metrics.breaker_transition(state.as_str());
            tracing::info!(role = self.role.as_str(), node = %self.addr, state = state.as_str(), "circuit breaker");
        }
    }

    fn finish(&self, permit: Permit, outcome: Outcome, error: Option<&BackendError>) {
        let mut s = self.state.lock();
        let changed = match outcome {
            Outcome::Answered => s.breaker.on_success(permit),
            Outcome::NodeFault => s.breaker.on_failure(permit, Instant::now()),
            Outcome::Abandoned => {
                s.breaker.on_cancel(permit);
                None
            }
        };
        if let Some(e) = error
            && outcome == Outcome::NodeFault
        {
            s.last_error = Some(e.message.clone());
        }
        self.breaker_changed(changed);
    }
}

/// Counts a request in flight on a node until dropped (result streams hold it).
#[derive(Debug)]
pub(crate) struct InFlight {
    node: Arc<Node>,
}

impl InFlight {
    fn new(node: &Arc<Node>) -> Self {
        node.in_flight.fetch_add(1, Ordering::Relaxed);
        node.metrics.in_flight.inc();
        Self {
            node: Arc::clone(node),
        }
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.node.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.node.metrics.in_flight.dec();
    }
}

/// One attempt on one node: a breaker permit plus the in-flight count. Report the outcome
/// with [`NodeLease::answered`] or [`NodeLease::failed`]; dropping it unreported frees a
/// half-open trial slot without judging the node.
#[derive(Debug)]
pub(crate) struct NodeLease {
    node: Arc<Node>,
    permit: Option<Permit>,
    in_flight: Option<InFlight>,
    started: Instant,
}

impl NodeLease {
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The node answered; keep the returned guard while its answer streams.
    pub(crate) fn answered(mut self) -> InFlight {
        if let Some(p) = self.permit.take() {
            self.node.finish(p, Outcome::Answered, None);
        }
        match self.in_flight.take() {
            Some(g) => g,
            None => InFlight::new(&self.node),
        }
    }

    /// The attempt failed with `err`; `outcome` says whose fault it was. An UNAVAILABLE node
    /// leaves the rotation at once.
    pub(crate) fn failed(mut self, err: &BackendError, outcome: Outcome) {
        self.node.metrics.failed(err.kind);
        if let Some(p) = self.permit.take() {
            self.node.finish(p, outcome, Some(err));
        }
        if outcome == Outcome::NodeFault && err.kind == ErrorKind::Unavailable {
            self.node.mark_down(&err.message);
        }
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.node.finish(p, Outcome::Abandoned, None);
        }
    }
}
