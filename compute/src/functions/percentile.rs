//! `approx_percentile_cont` with a [`GroupsAccumulator`].
//!
//! DataFusion's `ApproxPercentileCont` has only a row [`Accumulator`]. Under `GROUP BY` every
//! group then owns a boxed accumulator that is handed its few rows of each batch, and every
//! hand-off re-compresses the group's t-digest (~100 centroids) to add a handful of values.
//!
//! [`ApproxPercentileContGroups`] is DataFusion's function, unchanged for everything the
//! planner sees (name, signature and coercion, `WITHIN GROUP`, literal validation, the
//! optional centroids argument, return type, state fields, the row accumulator used without
//! `GROUP BY` and in windows), plus a groups accumulator:
//!
//! - each group buffers its values as `f64` and folds them into its digest (DataFusion's own
//!   [`ApproxPercentileAccumulator`]) one sorted run at a time, when the buffer is full or
//!   the group is emitted. The buffer bound shrinks as groups multiply
//!   ([`buffer_threshold`]): buffers hold at most 32 MiB up to 64k groups, and 512 B a
//!   group beyond (a third of a full digest). [`GroupsAccumulator::size`] counts every
//!   buffer and digest;
//! - `state` is the built-in accumulator's state, row for row, so either side of a
//!   Partial/Final pair may be the built-in row accumulator;
//! - `merge_batch` takes that state; a digest whose centroids are all single values (as
//!   `convert_to_state` makes, and as small groups have) goes into the buffer as values.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, PrimitiveArray, UInt32Array,
    UInt64Array, new_empty_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::take as take_rows;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, FieldRef, Float16Type, Float32Type, Float64Type, Schema,
};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue, internal_datafusion_err, internal_err};
use datafusion::functions_aggregate::approx_percentile_cont::{
    ApproxPercentileAccumulator, ApproxPercentileCont,
};
use datafusion::logical_expr::expr::{
    AggregateFunction, AggregateFunctionParams, WindowFunctionParams,
};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, Documentation, EmitTo, Expr, GroupsAccumulator,
    Operator, ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};
use datafusion::physical_expr::PhysicalExpr;

/// Values a group buffers at most before they are folded into its digest.
const MAX_BUFFERED: usize = 2048;
/// Values a group may buffer however many groups there are.
const MIN_BUFFERED: usize = 64;
/// Buffered values across all groups (32 MiB of `f64`) that set the per-group bound
/// between the two above.
const BUFFER_BUDGET: usize = 4 << 20;
/// First allocation of a group's buffer, in values.
const FIRST_ALLOCATION: usize = 8;

/// How many values each of `num_groups` groups may buffer.
fn buffer_threshold(num_groups: usize) -> usize {
    (BUFFER_BUDGET / num_groups.max(1)).clamp(MIN_BUFFERED, MAX_BUFFERED)
}

/// DataFusion's `approx_percentile_cont` with a groups accumulator; every other method is
/// DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ApproxPercentileContGroups {
    inner: Arc<ApproxPercentileCont>,
}

impl ApproxPercentileContGroups {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(ApproxPercentileCont::new()),
        }
    }
}

#[warn(clippy::missing_trait_methods)] // it delegates, so it implements every method
impl AggregateUDFImpl for ApproxPercentileContGroups {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.human_display(params)
    }

    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_schema_name(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.display_name(params)
    }

    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_display_name(params)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(acc_args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        // The inputs the built-in accumulator takes (the signature casts integers and
        // decimals to Float64). Anything else keeps the built-in path and its error.
        !args.is_distinct
            && matches!(args.exprs.len(), 2 | 3)
            && matches!(
                args.expr_fields.first().map(|f| f.data_type()),
                Some(DataType::Float16 | DataType::Float32 | DataType::Float64)
            )
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        // The built-in accumulator validates the arguments: same checks, same errors.
        self.inner.accumulator(args.clone())?;
        Ok(Box::new(GroupsDigests::new(DigestParams::from_args(
            &args,
        )?)?))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        // DataFusion's function answers `None` (it is not order-`Beneficial`); should it
        // ever return a variant, that variant is used as is (correct, without this
        // accumulator).
        Arc::clone(&self.inner).with_beneficial_ordering(beneficial_ordering)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        self.inner
            .simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner.reverse_expr()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner.value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }
}

/// What a group's digest is made with: what DataFusion's `create_accumulator` derives from
/// the same arguments (after it has validated them).
#[derive(Debug, Clone)]
struct DigestParams {
    /// Already flipped for `WITHIN GROUP (ORDER BY .. DESC)`.
    percentile: f64,
    /// The centroids argument; `None`: DataFusion's default.
    max_size: Option<usize>,
    /// The input type, which is also the return type.
    data_type: DataType,
}

impl DigestParams {
    fn from_args(args: &AccumulatorArgs) -> Result<Self> {
        let percentile = match literal(&args.exprs[1])? {
            ScalarValue::Float32(Some(p)) => f64::from(p),
            ScalarValue::Float64(Some(p)) => p,
            other => return internal_err!("approx_percentile_cont: percentile {other:?}"),
        };
        let descending = args
            .order_bys
            .first()
            .is_some_and(|sort| sort.options.descending);
        let max_size = match args.exprs.get(2) {
            None => None,
            Some(expr) => Some(match literal(expr)? {
                ScalarValue::UInt8(Some(n)) => usize::from(n),
                ScalarValue::UInt16(Some(n)) => usize::from(n),
                ScalarValue::UInt32(Some(n)) => n as usize,
                ScalarValue::UInt64(Some(n)) => n as usize,
                ScalarValue::Int8(Some(n)) if n > 0 => n as usize,
                ScalarValue::Int16(Some(n)) if n > 0 => n as usize,
                ScalarValue::Int32(Some(n)) if n > 0 => n as usize,
                ScalarValue::Int64(Some(n)) if n > 0 => n as usize,
                other => {
                    return internal_err!("approx_percentile_cont: centroids {other:?}");
                }
            }),
        };
        Ok(Self {
            percentile: if descending {
                1.0 - percentile
            } else {
                percentile
            },
            max_size,
            data_type: args.expr_fields[0].data_type().clone(),
        })
    }

    fn new_digest(&self) -> ApproxPercentileAccumulator {
        match self.max_size {
            Some(max_size) => ApproxPercentileAccumulator::new_with_max_size(
                self.percentile,
                self.data_type.clone(),
                max_size,
            ),
            None => ApproxPercentileAccumulator::new(self.percentile, self.data_type.clone()),
        }
    }
}

/// The value of a constant argument, as DataFusion reads it: evaluated on an empty batch.
fn literal(expr: &Arc<dyn PhysicalExpr>) -> Result<ScalarValue> {
    let batch = RecordBatch::new_empty(Arc::new(Schema::empty()));
    match expr.evaluate(&batch)? {
        ColumnarValue::Scalar(value) => Ok(value),
        ColumnarValue::Array(_) => internal_err!("approx_percentile_cont: argument not constant"),
    }
}

/// The six state columns of the built-in accumulator ([`ApproxPercentileCont`]'s
/// `state_fields`): max_size, sum, count, max, min, centroids (mean, weight, mean, ...).
#[derive(Debug, Default)]
struct StateColumns {
    max_size: Vec<u64>,
    sum: Vec<f64>,
    count: Vec<f64>,
    max: Vec<f64>,
    min: Vec<f64>,
    offsets: Vec<i32>,
    centroids: Vec<f64>,
}

impl StateColumns {
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            max_size: Vec::with_capacity(rows),
            sum: Vec::with_capacity(rows),
            count: Vec::with_capacity(rows),
            max: Vec::with_capacity(rows),
            min: Vec::with_capacity(rows),
            offsets,
            centroids: Vec::new(),
        }
    }

    /// Appends one row: a state as the built-in accumulator's `state()` returns it.
    fn push_scalars(&mut self, state: &[ScalarValue]) -> Result<()> {
        let [
            ScalarValue::UInt64(Some(max_size)),
            ScalarValue::Float64(Some(sum)),
            ScalarValue::Float64(Some(count)),
            ScalarValue::Float64(Some(max)),
            ScalarValue::Float64(Some(min)),
            ScalarValue::List(centroids),
        ] = state
        else {
            return internal_err!("approx_percentile_cont: unexpected state {state:?}");
        };
        let centroids = centroids.value(0);
        let centroids = centroids
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| internal_datafusion_err!("approx_percentile_cont: centroids type"))?;
        self.centroids.extend_from_slice(centroids.values());
        self.push_row(*max_size, *sum, *count, *max, *min)
    }

    fn push_row(&mut self, max_size: u64, sum: f64, count: f64, max: f64, min: f64) -> Result<()> {
        self.max_size.push(max_size);
        self.sum.push(sum);
        self.count.push(count);
        self.max.push(max);
        self.min.push(min);
        let end = i32::try_from(self.centroids.len())
            .map_err(|_| internal_datafusion_err!("approx_percentile_cont: state too large"))?;
        self.offsets.push(end);
        Ok(())
    }

    fn finish(self) -> Result<Vec<ArrayRef>> {
        let centroids = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            OffsetBuffer::new(self.offsets.into()),
            Arc::new(Float64Array::from(self.centroids)),
            None,
        )?;
        Ok(vec![
            Arc::new(UInt64Array::from(self.max_size)),
            Arc::new(Float64Array::from(self.sum)),
            Arc::new(Float64Array::from(self.count)),
            Arc::new(Float64Array::from(self.max)),
            Arc::new(Float64Array::from(self.min)),
            Arc::new(centroids),
        ])
    }
}

/// The groups accumulator: per group a buffer of values not yet in its digest, and the
/// digest.
#[derive(Debug)]
struct GroupsDigests {
    params: DigestParams,
    buffers: Vec<Vec<f64>>,
    digests: Vec<ApproxPercentileAccumulator>,
    /// Sum of the buffers' capacities, in bytes.
    buffered_bytes: usize,
    /// Sum of what the digests own beyond their inline size, in bytes.
    digest_heap_bytes: usize,
    /// The buffer bound for the current number of groups.
    threshold: usize,
    /// The state of an empty digest (a row with no value in `convert_to_state`).
    empty_state: [f64; 4],
    /// The `max_size` column of this accumulator's state.
    state_max_size: u64,
}

impl GroupsDigests {
    fn new(params: DigestParams) -> Result<Self> {
        let mut empty = StateColumns::with_capacity(1);
        empty.push_scalars(&params.new_digest().state()?)?;
        Ok(Self {
            params,
            buffers: Vec::new(),
            digests: Vec::new(),
            buffered_bytes: 0,
            digest_heap_bytes: 0,
            threshold: MAX_BUFFERED,
            empty_state: [empty.sum[0], empty.count[0], empty.max[0], empty.min[0]],
            state_max_size: empty.max_size[0],
        })
    }

    fn resize(&mut self, total_num_groups: usize) {
        if self.buffers.len() < total_num_groups {
            self.buffers.resize_with(total_num_groups, Vec::new);
            let params = &self.params;
            self.digests
                .resize_with(total_num_groups, || params.new_digest());
        }
        self.threshold = buffer_threshold(total_num_groups);
    }

    /// Adds `value` to group `group`, folding the group's buffer into its digest when full.
    #[inline]
    fn push(&mut self, group: usize, value: f64) -> Result<()> {
        let buffer = &mut self.buffers[group];
        if buffer.len() == buffer.capacity() {
            let before = buffer.capacity();
            let wanted = (before * 2)
                .clamp(FIRST_ALLOCATION, self.threshold)
                .max(buffer.len() + 1);
            buffer.reserve_exact(wanted - buffer.len());
            self.buffered_bytes += (buffer.capacity() - before) * size_of::<f64>();
        }
        buffer.push(value);
        if buffer.len() >= self.threshold {
            fold(
                buffer,
                &mut self.digests[group],
                &mut self.digest_heap_bytes,
            )?;
        }
        Ok(())
    }

    fn update_values<T: ArrowPrimitiveType>(
        &mut self,
        values: &PrimitiveArray<T>,
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        to_f64: impl Fn(T::Native) -> f64,
    ) -> Result<()> {
        let data = values.values();
        let nulls = values.nulls().filter(|n| n.null_count() > 0);
        if nulls.is_none() && opt_filter.is_none() {
            for (&group, &value) in group_indices.iter().zip(data.iter()) {
                self.push(group, to_f64(value))?;
            }
            return Ok(());
        }
        for (row, (&group, &value)) in group_indices.iter().zip(data.iter()).enumerate() {
            let valid = nulls.is_none_or(|n| n.is_valid(row))
                && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if valid {
                self.push(group, to_f64(value))?;
            }
        }
        Ok(())
    }

    /// Removes the groups `emit_to` names and folds each one's buffer into its digest.
    fn take_groups(&mut self, emit_to: EmitTo) -> Result<Vec<ApproxPercentileAccumulator>> {
        let mut buffers = emit_to.take_needed(&mut self.buffers);
        let mut digests = emit_to.take_needed(&mut self.digests);
        let inline = size_of::<ApproxPercentileAccumulator>();
        self.buffered_bytes -= buffers
            .iter()
            .map(|b| b.capacity() * size_of::<f64>())
            .sum::<usize>();
        self.digest_heap_bytes -= digests.iter().map(|d| d.size() - inline).sum::<usize>();
        let mut scratch = 0;
        for (buffer, digest) in buffers.iter_mut().zip(digests.iter_mut()) {
            fold(buffer, digest, &mut scratch)?;
        }
        if matches!(emit_to, EmitTo::All) {
            self.buffers.shrink_to_fit();
            self.digests.shrink_to_fit();
        }
        Ok(digests)
    }
}

/// Folds `buffer` into `digest` (sorted, as one run) and empties it, keeping its capacity.
fn fold(
    buffer: &mut Vec<f64>,
    digest: &mut ApproxPercentileAccumulator,
    digest_heap_bytes: &mut usize,
) -> Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    let before = digest.size();
    let values: ArrayRef = Arc::new(Float64Array::from_iter_values(buffer.iter().copied()));
    digest.update_batch(&[values])?;
    buffer.clear();
    // Exact while the counter includes this digest; `saturating_sub` for a scratch counter.
    *digest_heap_bytes = (*digest_heap_bytes + digest.size()).saturating_sub(before);
    Ok(())
}

impl GroupsAccumulator for GroupsDigests {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let values = &values[0];
        match values.data_type() {
            DataType::Float64 => self.update_values(
                values.as_primitive::<Float64Type>(),
                group_indices,
                opt_filter,
                |v| v,
            ),
            DataType::Float32 => self.update_values(
                values.as_primitive::<Float32Type>(),
                group_indices,
                opt_filter,
                f64::from,
            ),
            DataType::Float16 => self.update_values(
                values.as_primitive::<Float16Type>(),
                group_indices,
                opt_filter,
                |v| v.to_f64(),
            ),
            other => internal_err!("approx_percentile_cont: unexpected input type {other}"),
        }
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut digests = self.take_groups(emit_to)?;
        if digests.is_empty() {
            return Ok(new_empty_array(&self.params.data_type));
        }
        let values = digests
            .iter_mut()
            .map(|d| d.evaluate())
            .collect::<Result<Vec<_>>>()?;
        ScalarValue::iter_to_array(values)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let mut digests = self.take_groups(emit_to)?;
        let mut columns = StateColumns::with_capacity(digests.len());
        for digest in &mut digests {
            columns.push_scalars(&digest.state()?)?;
        }
        columns.finish()
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let [_, _, count, _, _, centroids] = values else {
            return internal_err!("approx_percentile_cont: {} state columns", values.len());
        };
        let count = count
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| internal_datafusion_err!("approx_percentile_cont: count type"))?;
        let centroids = centroids
            .as_list_opt::<i32>()
            .ok_or_else(|| internal_datafusion_err!("approx_percentile_cont: centroids type"))?;
        let offsets = centroids.value_offsets();
        let means_weights = centroids
            .values()
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| internal_datafusion_err!("approx_percentile_cont: centroid type"))?
            .values();

        // Digests of single values are values; the others are merged as digests, all of a
        // group's rows at once.
        let mut digest_rows: Vec<(usize, u32)> = Vec::new();
        for (row, &group) in group_indices.iter().enumerate() {
            let n = count.value(row);
            if count.is_null(row) || n == 0.0 {
                continue; // an empty digest adds nothing
            }
            let pairs = &means_weights[offsets[row] as usize..offsets[row + 1] as usize];
            let singles = pairs.len() / 2;
            if singles as f64 == n && pairs.chunks_exact(2).all(|c| c[1] == 1.0) {
                for centroid in pairs.chunks_exact(2) {
                    self.push(group, centroid[0])?;
                }
            } else {
                let row = u32::try_from(row)
                    .map_err(|_| internal_datafusion_err!("approx_percentile_cont: batch size"))?;
                digest_rows.push((group, row));
            }
        }
        digest_rows.sort_by_key(|&(group, _)| group);
        let inline = size_of::<ApproxPercentileAccumulator>();
        for rows in digest_rows.chunk_by(|a, b| a.0 == b.0) {
            let indices = UInt32Array::from_iter_values(rows.iter().map(|&(_, row)| row));
            let states = values
                .iter()
                .map(|column| take_rows(column, &indices, None))
                .collect::<Result<Vec<_>, _>>()?;
            let digest = &mut self.digests[rows[0].0];
            self.digest_heap_bytes -= digest.size() - inline;
            digest.merge_batch(&states)?;
            self.digest_heap_bytes += digest.size() - inline;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = &values[0];
        let as_f64: Vec<f64> = match values.data_type() {
            DataType::Float64 => values.as_primitive::<Float64Type>().values().to_vec(),
            DataType::Float32 => values
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
            DataType::Float16 => values
                .as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|v| v.to_f64())
                .collect(),
            other => return internal_err!("approx_percentile_cont: unexpected input type {other}"),
        };
        let mut columns = StateColumns::with_capacity(as_f64.len());
        columns.centroids.reserve(as_f64.len() * 2);
        let [empty_sum, empty_count, empty_max, empty_min] = self.empty_state;
        for (row, value) in as_f64.into_iter().enumerate() {
            let valid =
                values.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if valid {
                // The digest of one value, computed as the t-digest computes it (so that
                // e.g. -0.0 comes out as it does there).
                let mean_sum = 0.0 + value;
                columns.centroids.extend_from_slice(&[mean_sum / 1.0, 1.0]);
                columns.push_row(self.state_max_size, 0.0 + mean_sum, 1.0, value, value)?;
            } else {
                columns.push_row(
                    self.state_max_size,
                    empty_sum,
                    empty_count,
                    empty_max,
                    empty_min,
                )?;
            }
        }
        columns.finish()
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.buffers.capacity() * size_of::<Vec<f64>>()
            + self.buffered_bytes
            + self.digests.capacity() * size_of::<ApproxPercentileAccumulator>()
            + self.digest_heap_bytes
    }
}

#[cfg(test)]
mod tests;
