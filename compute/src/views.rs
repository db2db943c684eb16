//! String and binary columns are scanned as Arrow's *view* types (`Utf8View`, `BinaryView`)
//! and answered as the plain ones.
//!
//! A view array keeps each value's length and first bytes inline (16 bytes a value; values of
//! up to 12 bytes entirely), so the Parquet reader turns a dictionary page into views over the
//! dictionary without copying every value into an offsets buffer, and grouping, hashing and
//! comparing short strings (hosts, services, levels) touch no out-of-line memory. On the
//! bench's string group-bys this is 35-40% less time than `Utf8` (see ARCHITECTURE.md).
//!
//! Clients still get `Utf8` / `Binary`: [`plain_output`] casts a query's view-typed output
//! columns back once, at the top of the physical plan, so result schemas do not depend on how the
//! engine scanned, and Flight SQL clients that predate view types keep working.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, GenericByteViewArray, RecordBatch};
use arrow::datatypes::ByteViewType;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::Statistics;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::expressions::{CastExpr, Column as PhysicalColumn};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// `schema` with string and binary columns as their view types: how tables are scanned.
pub(crate) fn view_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
            }
            DataType::Binary | DataType::LargeBinary => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::BinaryView))
            }
            _ => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `t` with every view type in it (nested ones too) replaced by its plain type; `None` if
/// it has none.
pub(crate) fn plain_type(t: &DataType) -> Option<DataType> {
    let field = |f: &FieldRef| -> Option<FieldRef> {
        plain_type(f.data_type()).map(|t| Arc::new(f.as_ref().clone().with_data_type(t)))
    };
    match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        DataType::List(f) => field(f).map(DataType::List),
        DataType::LargeList(f) => field(f).map(DataType::LargeList),
        DataType::FixedSizeList(f, n) => field(f).map(|f| DataType::FixedSizeList(f, *n)),
        DataType::Map(f, sorted) => field(f).map(|f| DataType::Map(f, *sorted)),
        DataType::Struct(fields) => {
            let changed: Vec<Option<FieldRef>> = fields.iter().map(field).collect();
            if changed.iter().all(Option::is_none) {
                return None;
            }
            let fields: Fields = fields
                .iter()
                .zip(changed)
                .map(|(f, c)| c.unwrap_or_else(|| Arc::clone(f)))
                .collect::<Vec<FieldRef>>()
                .into();
            Some(DataType::Struct(fields))
        }
        _ => None,
    }
}

/// `schema` as clients get it: view types replaced by plain ones.
pub(crate) fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema.fields().iter().map(|f| plain_field(f)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `plan` with a projection on top that casts its view-typed output columns to plain types;
/// `plan` itself when it outputs none.
///
/// Applied to the *physical* plan, after DataFusion's optimizers: a logical projection above
/// an `ORDER BY` would let the physical optimizer split the sorted stream into partitions to
/// run the casts in parallel, which loses the order.
pub(crate) fn plain_output(plan: Arc<dyn ExecutionPlan>) -> DFResult<Arc<dyn ExecutionPlan>> {
    let schema = plan.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| plain_type(f.data_type()).is_some())
    {
        return Ok(plan);
    }
    let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let col: Arc<dyn PhysicalExpr> = Arc::new(PhysicalColumn::new(f.name(), i));
            let expr = match plain_type(f.data_type()) {
                Some(t) => Arc::new(CastExpr::new(col, t, None)),
                None => col,
            };
            (expr, f.name().clone())
        })
        .collect();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// A parameter value bound to a placeholder of type `t`: a plain string or binary value
/// becomes the view value the plan was typed with.
pub(crate) fn param_for(value: ScalarValue, t: Option<&DataType>) -> ScalarValue {
    match (value, t) {
        (ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v), Some(DataType::Utf8View)) => {
            ScalarValue::Utf8View(v)
        }
        (ScalarValue::Binary(v) | ScalarValue::LargeBinary(v), Some(DataType::BinaryView)) => {
            ScalarValue::BinaryView(v)
        }
        (v, _) => v,
    }
}

/// Compacts view arrays whose data buffers hold mostly bytes the batch does not reference,
/// in front of operators that keep the batches they read (a full sort, a hash join's build
/// side).
///
/// A view array read from Parquet points into the decoded page (or dictionary) buffers, which
/// every batch of that page shares. DataFusion charges a kept batch for all the buffers it
/// references, so a sort holding a few hundred filtered rows per page would be charged for the
/// pages, once per batch, and fail a memory budget its rows fit in. Copying the referenced
/// values into one compact buffer (only values longer than 12 bytes live out of line) makes
/// the charge match the rows.
#[derive(Debug, Clone)]
pub(crate) struct CompactViewsExec {
    input: Arc<dyn ExecutionPlan>,
}

impl CompactViewsExec {
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

impl DisplayAs for CompactViewsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompactViewsExec")
    }
}

impl ExecutionPlan for CompactViewsExec {
    fn name(&self) -> &str {
        "CompactViewsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "CompactViewsExec takes one input, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(Self::new(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let out = input.map(|b| b.and_then(|b| compact_views(&b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, out)))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DFResult<Arc<Statistics>> {
        input_stats.first().cloned().ok_or_else(|| {
            DataFusionError::Internal("CompactViewsExec without input statistics".into())
        })
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }
}

/// `batch` with each top-level view column whose out-of-line buffers exceed twice the bytes
/// its values use (and 32 KiB) copied into compact buffers.
pub(crate) fn compact_views(batch: &RecordBatch) -> DFResult<RecordBatch> {
    fn wasteful<T: ByteViewType + ?Sized>(a: &GenericByteViewArray<T>) -> bool {
        let held: usize = a.data_buffers().iter().map(|b| b.capacity()).sum();
        if held < 32 << 10 {
            return false;
        }
        let used: usize = a
            .views()
            .iter()
            .map(|v| *v as u32 as usize)
            .filter(|len| *len > 12)
            .sum();
        held > 2 * used
    }
    let mut changed = false;
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| {
            if let Some(a) = c.as_string_view_opt()
                && wasteful(a)
            {
                changed = true;
                return Arc::new(a.gc()) as ArrayRef;
            }
            if let Some(a) = c.as_binary_view_opt()
                && wasteful(a)
            {
                changed = true;
                return Arc::new(a.gc()) as ArrayRef;
            }
            Arc::clone(c)
        })
        .collect();
    if !changed {
        return Ok(batch.clone());
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Puts a [`CompactViewsExec`] in front of every full sort and every hash join's build side
/// that reads view columns. Runs last, after DataFusion's rules have placed filters.
#[derive(Debug)]
pub(crate) struct CompactViews;

impl PhysicalOptimizerRule for CompactViews {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let has_views = |p: &Arc<dyn ExecutionPlan>| {
            p.schema()
                .fields()
                .iter()
                .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView))
        };
        let compact = |p: &Arc<dyn ExecutionPlan>| -> Arc<dyn ExecutionPlan> {
            if has_views(p) && p.downcast_ref::<CompactViewsExec>().is_none() {
                Arc::new(CompactViewsExec::new(Arc::clone(p)))
            } else {
                Arc::clone(p)
            }
        };
        plan.transform_up(|p| {
            let children: Vec<Arc<dyn ExecutionPlan>> =
                if let Some(sort) = p.downcast_ref::<SortExec>() {
                    if sort.fetch().is_some() {
                        return Ok(Transformed::no(p));
                    }
                    vec![compact(sort.input())]
                } else if let Some(join) = p.downcast_ref::<HashJoinExec>() {
                    vec![compact(join.left()), Arc::clone(join.right())]
                } else {
                    return Ok(Transformed::no(p));
                };
            let plan = replace_children_if_necessary(Arc::clone(&p), children)?;
            let changed = !Arc::ptr_eq(&plan, &p);
            Ok(Transformed::new_transformed(plan, changed))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_compact_views"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A field as [`plain_type`] would answer it.
fn plain_field(f: &Field) -> Field {
    plain_type(f.data_type()).map_or_else(|| f.clone(), |t| f.clone().with_data_type(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_views_become_plain() {
        let item = Arc::new(Field::new("item", DataType::Utf8View, true));
        let t = DataType::Struct(
            vec![
                Field::new("a", DataType::List(item), true),
                Field::new("b", DataType::Int64, false),
            ]
            .into(),
        );
        let plain = plain_field(&Field::new("s", t, true));
        let DataType::Struct(fields) = plain.data_type() else {
            panic!("{plain:?}")
        };
        assert_eq!(
            fields[0].data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert_eq!(fields[1].data_type(), &DataType::Int64);
        assert_eq!(plain_type(&DataType::Int64), None);
        assert_eq!(plain_type(&DataType::BinaryView), Some(DataType::Binary));
    }
}
