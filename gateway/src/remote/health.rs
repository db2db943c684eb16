//! The background health checker: `DoAction("strata.health")` on every node every interval.
//!
//! A node failing `fall` checks in a row (or a request with UNAVAILABLE) leaves the rotation
//! at once; it comes back after `rise` consecutive successful checks. The task belongs to
//! its [`super::NodePool`] and is aborted when the pool is dropped.

use std::sync::Arc;
use std::time::Duration;

use arrow_flight::Action;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::error::{HEALTH_ACTION, status_to_backend_error};
use super::pool::Node;

/// Owns the checker task; dropping it aborts the task.
#[derive(Debug)]
pub(crate) struct HealthTask {
    handle: JoinHandle<()>,
}

impl HealthTask {
    pub(crate) fn spawn(nodes: Vec<Arc<Node>>, interval: Duration, timeout: Duration) -> Self {
        let handle = tokio::spawn(run(nodes, interval.max(Duration::from_millis(1)), timeout));
        Self { handle }
    }
}

impl Drop for HealthTask {
    fn drop(&mut self) {
        if self.handle.is_finished() {
            // The loop never returns: it ended by panicking.
            tracing::error!("the node health checker stopped unexpectedly (panicked)");
        }
        self.handle.abort();
    }
}

async fn run(nodes: Vec<Arc<Node>>, interval: Duration, timeout: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        futures::future::join_all(nodes.iter().map(|node| async move {
            node.record_check(probe(node, timeout).await);
        }))
        .await;
    }
}

/// One health check of one node, bounded by `timeout`.
pub(crate) async fn probe(node: &Node, timeout: Duration) -> Result<(), String> {
    let mut client = node.client();
    let mut request = tonic::Request::new(Action {
        r#type: HEALTH_ACTION.to_string(),
        body: Bytes::new(),
    });
    request.set_timeout(timeout);
    let call = async {
        let mut results = client.do_action(request).await?.into_inner();
        while results.message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(status)) => Err(status_to_backend_error(&status).message),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
