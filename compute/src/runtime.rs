//! The CPU pool queries run on, apart from the runtime that serves gRPC, HTTP and ingest
//! acknowledgements.
//!
//! DataFusion runs a plan as tokio tasks on whatever runtime polls it. Were that the
//! process's main runtime, a CPU-bound query (a cross join, a huge sort) would occupy the
//! worker threads that answer health checks and acknowledge writes. Every query therefore
//! plans and executes on a [`QueryRuntime`] of its own threads; its batches cross to the
//! caller's runtime through a bounded channel. Dropping the caller's stream aborts the
//! query's task, and DataFusion's tasks with it (see `crate::stream`).

use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};

/// A multi-threaded tokio runtime for query execution. Cheap to clone; the threads stop
/// when the last clone is dropped (without waiting for queries still running).
#[derive(Clone)]
pub struct QueryRuntime {
    inner: Arc<Owned>,
}

struct Owned {
    runtime: Option<Runtime>,
    threads: usize,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which is not allowed inside
        // another runtime; queries still running are abandoned instead.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRuntime")
            .field("threads", &self.inner.threads)
            .finish()
    }
}

impl QueryRuntime {
    /// A pool of `threads` worker threads (0: one per CPU core) named `strata-query`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("strata-query")
            .enable_all()
            .build()?;
        Ok(Self {
            inner: Arc::new(Owned {
                runtime: Some(runtime),
                threads,
            }),
        })
    }

    /// Where to spawn query tasks.
    pub fn handle(&self) -> &Handle {
        match &self.inner.runtime {
            Some(rt) => rt.handle(),
            // `runtime` is only taken in `Drop`.
            None => unreachable!("the query runtime is present until dropped"),
        }
    }

    /// Worker threads of the pool.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }
}
