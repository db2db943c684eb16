//! A snapshot of the gateway's view of the cluster, for `strata status` and metrics pages.

use serde::Serialize;

use super::breaker::BreakerState;
use super::ingest::RemoteIngestBackend;
use super::metrics::Role;
use super::query::RemoteQueryBackend;

/// One node as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub role: Role,
    /// The configured address.
    pub node: String,
    /// In rotation (health checks pass, no recent UNAVAILABLE).
    pub healthy: bool,
    pub breaker: BreakerState,
    /// Requests and open result streams.
    pub in_flight: usize,
    /// Consecutive failures: failed requests counted by the breaker, or failed health checks,
    /// whichever is larger.
    pub consecutive_failures: u32,
    /// Consecutive successful health checks (a node that was down returns at `rise`).
    pub consecutive_successful_checks: u32,
    /// Why the node last failed, until it is healthy again.
    pub last_error: Option<String>,
}

/// Every node of every role the gateway talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub compute: Vec<NodeStatus>,
    pub ingest: Vec<NodeStatus>,
}

impl ClusterStatus {
    pub fn collect(
        query: Option<&RemoteQueryBackend>,
        ingest: Option<&RemoteIngestBackend>,
    ) -> Self {
        Self {
            compute: query.map(|q| q.status()).unwrap_or_default(),
            ingest: ingest.map(|i| i.status()).unwrap_or_default(),
        }
    }

    /// Every node healthy with a closed breaker.
    pub fn all_up(&self) -> bool {
        self.compute
            .iter()
            .chain(&self.ingest)
            .all(|n| n.healthy && n.breaker == BreakerState::Closed)
    }

    /// A short text table, one node per line.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "ROLE     NODE                      HEALTHY  BREAKER    IN-FLIGHT  FAILURES  LAST ERROR\n",
        );
        for n in self.compute.iter().chain(&self.ingest) {
            out.push_str(&format!(
                "{:<8} {:<25} {:<8} {:<10} {:<10} {:<9} {}\n",
                n.role.as_str(),
                n.node,
                if n.healthy { "yes" } else { "no" },
                n.breaker.as_str(),
                n.in_flight,
                n.consecutive_failures,
                n.last_error.as_deref().unwrap_or("-"),
            ));
        }
        out
    }
}
