//! How a query's batches reach the caller.
//!
//! The plan runs as one task on the node's query runtime ([`drive`]), which pulls batches
//! from DataFusion and sends them through a bounded channel; the caller holds a
//! [`GuardedStream`] on its own runtime. Either side stops the query at its deadline: the
//! task drops the plan (DataFusion aborts its own tasks, and every operator frees its
//! memory), and the caller's stream ends with `DeadlineExceeded` even if the query's
//! threads are slow to notice. Dropping the caller's stream aborts the task.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DFResult;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{Future, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use crate::cost::QueryStatus;
use crate::error::Error;

/// Bounds on what one query may return (0: no bound).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultLimits {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

/// Aborts the query's task when the caller's stream is dropped.
pub(crate) struct AbortOnDrop(pub(crate) AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs on the query runtime: pull batches from `stream` and send them to the caller until
/// the stream ends, fails, passes a limit or the deadline, or the caller goes away. Sets
/// `finished` when the caller has been told everything (the end, or the error), so that a
/// task that dies on the way (a panic) is reported as an error, not as a short result.
pub(crate) async fn drive(
    mut stream: SendableRecordBatchStream,
    tx: &mpsc::Sender<DFResult<RecordBatch>>,
    deadline: Instant,
    timeout: Duration,
    limits: ResultLimits,
    finished: &AtomicBool,
) -> Driven {
    let (mut rows, mut bytes) = (0u64, 0u64);
    let ended = |status, error: Option<String>, rows| Driven {
        status,
        error,
        rows,
    };
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return ended(QueryStatus::Cancelled, None, rows),
            () = tokio::time::sleep_until(deadline) => {
                drop(stream);
                finished.store(true, Ordering::Release);
                let e = Error::DeadlineExceeded(timeout);
                let message = e.to_string();
                let _ = tx.try_send(Err(e.into_datafusion()));
                return ended(QueryStatus::Timeout, Some(message), rows);
            }
            next = stream.next() => next,
        };
        let batch = match next {
            None => {
                finished.store(true, Ordering::Release);
                return ended(QueryStatus::Ok, None, rows);
            }
            Some(Err(e)) => {
                drop(stream);
                finished.store(true, Ordering::Release);
                let message = e.to_string();
                let _ = tx.send(Err(e)).await;
                return ended(QueryStatus::Error, Some(message), rows);
            }
            Some(Ok(b)) => b,
        };
        rows += batch.num_rows() as u64;
        bytes += strata_common::batch_bytes(&batch) as u64;
        let over = if limits.rows > 0 && rows > limits.rows {
            Some(format!(
                "the result has more than {} rows (query.max_result_rows); add a LIMIT or \
                 aggregate",
                limits.rows
            ))
        } else if limits.bytes > 0 && bytes > limits.bytes {
            Some(format!(
                "the result is larger than {} bytes (query.max_result_bytes); select fewer \
                 columns, add a LIMIT or aggregate",
                limits.bytes
            ))
        } else {
            None
        };
        if let Some(message) = over {
            drop(stream);
            finished.store(true, Ordering::Release);
            let _ = tx
                .send(Err(
                    Error::ResourceExhausted(message.clone()).into_datafusion()
                ))
                .await;
            return ended(QueryStatus::Error, Some(message), rows);
        }
        if tx.send(Ok(batch)).await.is_err() {
            return ended(QueryStatus::Cancelled, None, rows);
        }
    }
}

/// How [`drive`] ended.
pub(crate) struct Driven {
    pub(crate) status: QueryStatus,
    pub(crate) error: Option<String>,
    /// Result rows sent.
    pub(crate) rows: u64,
}

/// The caller's end of a running query.
pub(crate) struct GuardedStream {
    schema: SchemaRef,
    rx: mpsc::Receiver<DFResult<RecordBatch>>,
    finished: Arc<AtomicBool>,
    _task: AbortOnDrop,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    done: bool,
}

impl GuardedStream {
    pub(crate) fn new(
        schema: SchemaRef,
        rx: mpsc::Receiver<DFResult<RecordBatch>>,
        finished: Arc<AtomicBool>,
        task: AbortOnDrop,
        deadline: Instant,
        timeout: Duration,
    ) -> Self {
        Self {
            schema,
            rx,
            finished,
            _task: task,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            done: false,
        }
    }
}

impl Stream for GuardedStream {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Batches (or the task's own deadline error) already sent are delivered first.
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                if item.is_err() {
                    self.done = true;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.finished.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(Error::Internal(
                    "the query stopped unexpectedly (see the node's log)".into(),
                )
                .into_datafusion())));
            }
            Poll::Pending => {}
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            self._task.0.abort();
            return Poll::Ready(Some(Err(
                Error::DeadlineExceeded(self.timeout).into_datafusion()
            )));
        }
        Poll::Pending
    }
}

impl RecordBatchStream for GuardedStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
