//! Memory accounting of Arrow batches.

use arrow::array::{Array, RecordBatch};

/// Bytes of data a batch's rows occupy, counting only the part of each buffer its columns
/// cover. `get_array_memory_size` counts every column's buffers whole, which over-counts
/// slices of a bigger batch and batches decoded from Arrow IPC (whose columns all slice one
/// message body) once per column.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}
