//! Memory of queries: one budget per node, and a share of it per query.
//!
//! Every query gets a [`QueryMemoryPool`]: it refuses to grow past the per-query limit
//! (`query.memory_limit_bytes`) and takes every byte from the node's pool
//! (`query.node_memory_bytes`), shared by all queries of all tenants on the node. Whatever
//! the number of tenants or queries, what queries hold stays within the node's budget.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::resources_datafusion_err;
use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The memory every query on a node draws from.
pub(crate) fn node_pool(bytes: usize) -> Arc<dyn MemoryPool> {
    Arc::new(GreedyMemoryPool::new(bytes))
}

/// One query's memory: at most `limit` bytes, each taken from the node's pool.
pub(crate) struct QueryMemoryPool {
    node: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl QueryMemoryPool {
    pub(crate) fn new(node: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            node,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl fmt::Debug for QueryMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryMemoryPool")
            .field("limit", &self.limit)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "QueryMemoryPool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.node.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.node.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.node.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.node.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let new = used.checked_add(additional)?;
                (new <= self.limit).then_some(new)
            })
            .map_err(|used| {
                resources_datafusion_err!(
                    "{} needs {} more bytes but the query already holds {used} of its {} \
                     (query.memory_limit_bytes); raise the setting or narrow the query",
                    reservation.consumer().name(),
                    additional,
                    self.limit
                )
            })?;
        if let Err(e) = self.node.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(resources_datafusion_err!(
                "{} needs {additional} more bytes but the node's queries hold all of \
                 query.node_memory_bytes ({}); retry when fewer queries run, or raise it",
                reservation.consumer().name(),
                e.strip_backtrace()
            ));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_bounded_by_its_limit_and_by_the_node() {
        let node = node_pool(100);
        let a: Arc<dyn MemoryPool> = Arc::new(QueryMemoryPool::new(Arc::clone(&node), 60));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryMemoryPool::new(Arc::clone(&node), 60));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(50).expect("within both limits");
        let e = ra.try_grow(20).expect_err("over the query's limit");
        assert!(e.to_string().contains("query.memory_limit_bytes"), "{e}");
        rb.try_grow(40).expect("the node still has 50");
        let e = rb.try_grow(20).expect_err("over the node's budget");
        assert!(e.to_string().contains("query.node_memory_bytes"), "{e}");
        assert_eq!(b.reserved(), 40, "a refused grow takes nothing");
        assert_eq!(node.reserved(), 90);
        drop(ra);
        assert_eq!(
            node.reserved(),
            40,
            "a finished query gives its memory back"
        );
        rb.try_grow(20).expect("room again");
    }
}
