//! Prometheus metrics of the remote clients, recorded in a registry the caller owns.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use serde::Serialize;

use crate::backend::{BackendError, ErrorKind};

/// Requests sent to a node (attempts, so a retried request counts twice). Labels: role, node.
pub const REQUESTS_TOTAL: &str = "strata_remote_requests_total";
/// Failed attempts. Labels: role, node, kind (the [`ErrorKind`]).
pub const FAILURES_TOTAL: &str = "strata_remote_failures_total";
/// Retries (attempts after the first). Labels: role, op.
pub const RETRIES_TOTAL: &str = "strata_remote_retries_total";
/// Latency of one attempt until its answer starts (first batch, acknowledgement). Labels: role, op.
pub const ATTEMPT_SECONDS: &str = "strata_remote_attempt_seconds";
/// Breaker state per node: 0 closed, 1 half-open, 2 open. Labels: role, node.
pub const BREAKER_STATE: &str = "strata_breaker_state";
/// Breaker transitions. Labels: role, node, to (closed, half-open, open).
pub const BREAKER_TRANSITIONS_TOTAL: &str = "strata_breaker_transitions_total";
/// 1 when the node is in rotation, 0 when health checks or failures took it out. Labels: role, node.
pub const NODE_HEALTHY: &str = "strata_remote_node_healthy";
/// Requests in flight per node (open result streams count). Labels: role, node.
pub const IN_FLIGHT: &str = "strata_remote_in_flight";

/// The kind of node a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Compute,
    Ingest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Compute => "compute",
            Role::Ingest => "ingest",
        }
    }
}

/// Metrics shared by the query and ingest clients. Create it once per registry and pass a
/// reference to both constructors (a registry refuses the same metric names twice).
#[derive(Clone)]
pub struct RemoteMetrics {
    requests: IntCounterVec,
    failures: IntCounterVec,
    retries: IntCounterVec,
    attempt_seconds: HistogramVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    healthy: IntGaugeVec,
    in_flight: IntGaugeVec,
}

impl std::fmt::Debug for RemoteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteMetrics").finish_non_exhaustive()
    }
}

impl RemoteMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, BackendError> {
        let m = Self::unregistered()?;
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).map_err(|e| {
                BackendError::new(
                    ErrorKind::Internal,
                    format!("cannot register remote-client metrics: {e}"),
                )
            })
        };
        reg(Box::new(m.requests.clone()))?;
        reg(Box::new(m.failures.clone()))?;
        reg(Box::new(m.retries.clone()))?;
        reg(Box::new(m.attempt_seconds.clone()))?;
        reg(Box::new(m.breaker_state.clone()))?;
        reg(Box::new(m.breaker_transitions.clone()))?;
        reg(Box::new(m.healthy.clone()))?;
        reg(Box::new(m.in_flight.clone()))?;
        Ok(m)
    }

    /// Metrics recorded nowhere (tests, tools).
    pub fn unregistered() -> Result<Self, BackendError> {
        let internal = |e: prometheus::Error| {
            BackendError::new(ErrorKind::Internal, format!("bad metric definition: {e}"))
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map_err(internal)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).map_err(internal)
        };
        Ok(Self {
            requests: counter(
                REQUESTS_TOTAL,
                "Requests sent to a node (each attempt counts).",
                &["role", "node"],
            )?,
            failures: counter(
                FAILURES_TOTAL,
                "Failed requests to a node, by error kind.",
                &["role", "node", "kind"],
            )?,
            retries: counter(
                RETRIES_TOTAL,
                "Retried requests (attempts after the first).",
                &["role", "op"],
            )?,
            attempt_seconds: HistogramVec::new(
                HistogramOpts::new(
                    ATTEMPT_SECONDS,
                    "Time until a node's answer starts, per attempt.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ]),
                &["role", "op"],
            )
            .map_err(internal)?,
            breaker_state: gauge(
                BREAKER_STATE,
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                &["role", "node"],
            )?,
            breaker_transitions: counter(
                BREAKER_TRANSITIONS_TOTAL,
                "Circuit breaker transitions, by the state entered.",
                &["role", "node", "to"],
            )?,
            healthy: gauge(
                NODE_HEALTHY,
                "1 when the node is in rotation.",
                &["role", "node"],
            )?,
            in_flight: gauge(
                IN_FLIGHT,
                "Requests in flight to the node.",
                &["role", "node"],
            )?,
        })
    }

    pub(crate) fn node(&self, role: Role, node: &str) -> NodeMetrics {
        let labels = [role.as_str(), node];
        NodeMetrics {
            role,
            node: node.to_string(),
            metrics: self.clone(),
            requests: self.requests.with_label_values(&labels),
            breaker_state: self.breaker_state.with_label_values(&labels),
            healthy: self.healthy.with_label_values(&labels),
            in_flight: self.in_flight.with_label_values(&labels),
        }
    }

    pub(crate) fn retried(&self, role: Role, op: &str) {
        self.retries.with_label_values(&[role.as_str(), op]).inc();
    }

    pub(crate) fn observe_attempt(&self, role: Role, op: &str, seconds: f64) {
        self.attempt_seconds
            .with_label_values(&[role.as_str(), op])
            .observe(seconds);
    }
}

/// Per-node handles, resolved once so requests do not hash label values.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    role: Role,
    node: String,
    metrics: RemoteMetrics,
    pub(crate) requests: IntCounter,
    pub(crate) breaker_state: IntGauge,
    pub(crate) healthy: IntGauge,
    pub(crate) in_flight: IntGauge,
}

impl NodeMetrics {
    pub(crate) fn failed(&self, kind: ErrorKind) {
        self.metrics
            .failures
            .with_label_values(&[self.role.as_str(), &self.node, &format!("{kind:?}")])
            .inc();
    }

    pub(crate) fn breaker_transition(&self, to: &str) {
        self.metrics
            .breaker_transitions
            .with_label_values(&[self.role.as_str(), &self.node, to])
            .inc();
    }
}
