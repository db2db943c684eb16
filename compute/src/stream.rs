//! The result stream handed to callers: DataFusion's stream plus the query's admission
//! slot and deadline. Dropping it cancels the query (DataFusion aborts its tasks) and
//! frees the slot.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DFResult;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{Future, Stream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::error::Error;

pub(crate) struct GuardedStream {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl GuardedStream {
    pub(crate) fn new(
        inner: SendableRecordBatchStream,
        deadline: Instant,
        timeout: Duration,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            done: false,
            _permit: permit,
        }
    }
}

impl Stream for GuardedStream {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(
                Error::DeadlineExceeded(self.timeout).into_datafusion()
            )));
        }
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.done = true;
        }
        next
    }
}

impl RecordBatchStream for GuardedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
