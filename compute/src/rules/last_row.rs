//! "Latest row per key" as an aggregate instead of a sort.
//!
//! The usual SQL for "the last row per host"
//!
//! ```sql
//! SELECT * FROM (
//!   SELECT *, row_number() OVER (PARTITION BY host ORDER BY ts DESC) AS rn FROM logs
//! ) WHERE rn = 1
//! ```
//!
//! makes DataFusion sort every row by (host, ts) and number them, which costs a full sort
//! and memory proportional to the table (at 10M rows it exceeds a 512 MiB query budget).
//! Only one row per partition survives the filter, so the window is replaced by a grouped
//! aggregate that keeps, per partition, the first row in the window's order:
//!
//! ```text
//! Filter: rn = 1                     Projection: host, first_value(ts ORDER BY ts DESC) AS ts,
//!   Projection: ..., rn        ==>               ..., 1 AS rn
//!     Window: row_number()             Aggregate: group by host, first_value(c ORDER BY ts DESC)
//!       input                            input
//! ```
//!
//! (the projections and subquery aliases between the filter and the window are kept). Memory
//! is then proportional to the number of partitions. Ties in the order are broken
//! arbitrarily by both forms. Other conjuncts of the filter stay in a filter above.
//!
//! **Join-back form.** When the window orders by one non-null, non-float column `o` and its
//! input is a plain scan (scans, filters, projections and aliases, nothing volatile), the
//! aggregate keeps only `max(o)` (or `min`) per key, which vectorizes, and the rows are found
//! by joining back to the input:
//!
//! ```text
//! Projection: k, max(o) AS o, first_value(c) AS c, ..., 1 AS rn
//!   Aggregate: group by l.k; max(l.o), first_value(l.c), ...      (one row per key on ties)
//!     Join: m.k = l.k AND m.__strata_last_key_max = l.o           (NULL keys match NULL keys)
//!       m: Aggregate: group by k; max(o) AS __strata_last_key_max
//!            input
//!       l: input
//! ```
//!
//! Per-row work is then a vectorized max over two columns instead of an ordered
//! `first_value` state update per column, and the second scan of the input reads little:
//! [`LastRowJoinBuild`] makes the join hold the per-key side in one hash table, whose
//! bounds (the oldest of the newest rows per key) DataFusion pushes into the scan as a
//! dynamic filter that skips whole segments and row groups by their time statistics. On a
//! day of logs with 10k hosts the second scan reads the last hour's segments.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, NullEquality, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::functions_aggregate::first_last::first_value;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
    WindowFunctionDefinition, col, lit, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;

use super::unalias;

/// Rewrites `row_number() OVER (PARTITION BY k ORDER BY o) ... WHERE rn = 1` into a
/// `first_value(... ORDER BY o)` aggregate grouped by `k`. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct LastRowPerKey {
    pub(crate) paths: Arc<crate::paths::PathCounts>,
}

/// How many plan nodes may sit between the filter and the window.
const MAX_DEPTH: usize = 4;

impl OptimizerRule for LastRowPerKey {
    fn name(&self) -> &str {
        "strata_last_row_per_key"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match rewrite_filter(filter)? {
            Some((new, form)) => {
                self.paths.hit(crate::paths::Path::LastRowRewrite);
                if form == Form::JoinBack {
                    self.paths.hit(crate::paths::Path::LastRowJoinBack);
                }
                Ok(Transformed::yes(new))
            }
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// Which plan replaced the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `first_value(c ORDER BY o)` per column, grouped by the keys.
    Aggregate,
    /// `max(o)` per key joined back to the input (see the module docs).
    JoinBack,
}

fn rewrite_filter(filter: &Filter) -> Result<Option<(LogicalPlan, Form)>> {
    let conjuncts = split_conjunction(&filter.predicate);
    for (i, conjunct) in conjuncts.iter().enumerate() {
        let Some(column) = equals_one(conjunct) else {
            continue;
        };
        let Some((input, form)) = rewrite_below(&filter.input, column, MAX_DEPTH)? else {
            continue;
        };
        let rest: Vec<Expr> = conjuncts
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| (*e).clone())
            .collect();
        let input = Arc::new(input);
        let plan = match conjunction(rest) {
            Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, input)?),
            None => Arc::unwrap_or_clone(input),
        };
        return Ok(Some((plan, form)));
    }
    Ok(None)
}

/// The column of `rn = 1` (or `1 = rn`, `rn <= 1`, `rn < 2`), looking through numeric casts.
///
/// Only casts to numeric types are looked through (a cast to a string or boolean compares
/// differently: `CAST(rn AS VARCHAR) < '2'` holds for rn = 10, `CAST(rn AS VARCHAR) = '01'`
/// for no rn, `CAST(rn AS BOOLEAN) <= true` for every rn), and the literal must be numeric
/// and an exact integer (`rn = 1.5` holds for no rn, `rn < 2.5` also for rn = 2).
fn equals_one(expr: &Expr) -> Option<&Column> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let (col, op, value) = match (strip_casts(left)?, strip_casts(right)?) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, op.swap()?, v),
        _ => return None,
    };
    if !value.data_type().is_numeric() {
        return None;
    }
    let integer = value.cast_to(&DataType::Int64).ok()?;
    // Exactly an integer: converting back gives the literal again.
    if integer.cast_to(&value.data_type()).ok()? != *value {
        return None;
    }
    let ScalarValue::Int64(Some(value)) = integer else {
        return None;
    };
    match (op, value) {
        (Operator::Eq | Operator::LtEq, 1) | (Operator::Lt, 2) => Some(col),
        _ => None,
    }
}

/// `e` without its casts, if they all cast to numeric types (`None` otherwise).
fn strip_casts(mut e: &Expr) -> Option<&Expr> {
    loop {
        match e {
            Expr::Cast(c) if c.field.data_type().is_numeric() => e = &c.expr,
            Expr::TryCast(c) if c.field.data_type().is_numeric() => e = &c.expr,
            Expr::Cast(_) | Expr::TryCast(_) => return None,
            _ => return Some(e),
        }
    }
}

/// Follow `column` down through projections and aliases to a window node computing it as
/// `row_number()`, and return `plan` with that window replaced by the aggregate.
fn rewrite_below(
    plan: &LogicalPlan,
    column: &Column,
    depth: usize,
) -> Result<Option<(LogicalPlan, Form)>> {
    if depth == 0 {
        return Ok(None);
    }
    let Ok(index) = plan.schema().index_of_column(column) else {
        return Ok(None);
    };
    let new_input = match plan {
        LogicalPlan::Window(window) => return rewrite_window(window, index),
        LogicalPlan::SubqueryAlias(alias) => {
            let inner = Column::from(alias.input.schema().qualified_field(index));
            rewrite_below(&alias.input, &inner, depth - 1)?
        }
        LogicalPlan::Projection(p) => {
            if p.expr.iter().any(Expr::is_volatile) {
                return Ok(None);
            }
            match unalias(&p.expr[index]) {
                Expr::Column(inner) => rewrite_below(&p.input, inner, depth - 1)?,
                _ => None,
            }
        }
        _ => None,
    };
    let Some((new_input, form)) = new_input else {
        return Ok(None);
    };
    // Rebuild this node over the new input, recomputing its schema.
    Ok(Some((
        plan.with_new_exprs(plan.expressions(), vec![new_input])?,
        form,
    )))
}

/// The aggregate equivalent of `window` filtered to row 1, if output `index` of the window is
/// a plain `row_number()` over plain partition columns with an ordering.
fn rewrite_window(
    window: &datafusion::logical_expr::Window,
    index: usize,
) -> Result<Option<(LogicalPlan, Form)>> {
    let input_schema = window.input.schema();
    let n_input = input_schema.fields().len();
    if window.window_expr.len() != 1 || index != n_input {
        return Ok(None);
    }
    let Expr::WindowFunction(wf) = unalias(&window.window_expr[0]) else {
        return Ok(None);
    };
    let WindowFunction { fun, params } = wf.as_ref();
    let is_row_number =
        matches!(fun, WindowFunctionDefinition::WindowUDF(udf) if udf.name() == "row_number");
    if !is_row_number
        || !params.args.is_empty()
        || params.partition_by.is_empty()
        || params.order_by.is_empty()
        || params.filter.is_some()
        || params.distinct
        || params.order_by.iter().any(|s| s.expr.is_volatile())
    {
        return Ok(None);
    }
    let mut keys = Vec::with_capacity(params.partition_by.len());
    for e in &params.partition_by {
        match e {
            Expr::Column(c) => keys.push(c.clone()),
            _ => return Ok(None),
        }
    }
    if let Some(plan) = join_back(window, index, &keys, &params.order_by)? {
        return Ok(Some((plan, Form::JoinBack)));
    }

    // Group by the keys; every other input column becomes first_value(c ORDER BY o).
    let mut aggregates = Vec::new();
    let mut outputs = Vec::with_capacity(n_input + 1);
    for (qualifier, field) in input_schema.iter() {
        let column = Column::new(qualifier.cloned(), field.name());
        if keys.contains(&column) {
            outputs.push(Expr::Column(column));
            continue;
        }
        // The ordering column itself (non-null, sole sort key): its first value is its max
        // (DESC) or min (ASC), which vectorizes; first_value keeps a row-wise ordering state.
        let sole_key = match params.order_by.as_slice() {
            [s] if s.expr == Expr::Column(column.clone()) && !field.is_nullable() => Some(s.asc),
            _ => None,
        };
        let aggregate = match sole_key {
            Some(true) => min(Expr::Column(column)),
            Some(false) => max(Expr::Column(column)),
            None => first_value(Expr::Column(column), params.order_by.clone()),
        };
        let Some(output) = add_first(&mut aggregates, aggregate, qualifier, field)? else {
            return Ok(None);
        };
        outputs.push(output);
    }
    outputs.push(row_number_one(window, index)?);
    let group_by = keys.into_iter().map(Expr::Column).collect();
    let aggregate = Aggregate::try_new(Arc::clone(&window.input), group_by, aggregates)?;
    let projection = Projection::try_new(outputs, Arc::new(LogicalPlan::Aggregate(aggregate)))?;
    Ok(Some((LogicalPlan::Projection(projection), Form::Aggregate)))
}

/// The window's `rn` output as the constant 1, under the window's name and type.
fn row_number_one(window: &datafusion::logical_expr::Window, index: usize) -> Result<Expr> {
    let (rn_qualifier, rn_field) = window.schema.qualified_field(index);
    let one = ScalarValue::UInt64(Some(1)).cast_to(rn_field.data_type())?;
    Ok(Expr::Literal(one, None).alias_qualified(rn_qualifier.cloned(), rn_field.name()))
}

/// Add `aggregate` (the first value of input column `field`) to `aggregates` under a fresh
/// name, and return the output expression for the column: that value under the column's
/// name, declared non-null for a non-null column ("Physical input schema should be the same
/// ..." otherwise, e.g. under a UNION). `None` if that is impossible.
fn add_first(
    aggregates: &mut Vec<Expr>,
    aggregate: Expr,
    qualifier: Option<&datafusion::common::TableReference>,
    field: &arrow::datatypes::Field,
) -> Result<Option<Expr>> {
    let name = format!("__strata_first_{}", aggregates.len());
    aggregates.push(aggregate.alias(name.clone()));
    let first = Expr::Column(Column::from_name(name));
    Ok(not_null(first, field.is_nullable(), field.data_type())?
        .map(|first| first.alias_qualified(qualifier.cloned(), field.name())))
}

/// `first` as a non-nullable value when `nullable` is false: every group has a row, so its
/// first value is never NULL; say so, or the plan above (whose schemas were derived from the
/// window's) no longer matches the physical plan's schemas. `None` if the type has no default.
fn not_null(first: Expr, nullable: bool, data_type: &DataType) -> Result<Option<Expr>> {
    if nullable {
        return Ok(Some(first));
    }
    let Ok(default) = ScalarValue::new_default(data_type) else {
        return Ok(None);
    };
    Ok(Some(
        when(first.clone().is_not_null(), first).otherwise(lit(default))?,
    ))
}

/// Name of the per-key extreme of the ordering column in the join-back form; the physical
/// rule [`LastRowJoinBuild`] recognises the join by it.
pub(crate) const KEY_MAX: &str = "__strata_last_key_max";
const LEFT: &str = "__strata_last_m";
const RIGHT: &str = "__strata_last_l";

/// The join-back form of the window (module docs), if it applies: one non-null, non-float
/// ordering column of the input; non-float keys; an input that is a plain scan, cheap and
/// deterministic to read twice, with unique column names.
fn join_back(
    window: &datafusion::logical_expr::Window,
    index: usize,
    keys: &[Column],
    order_by: &[datafusion::logical_expr::SortExpr],
) -> Result<Option<LogicalPlan>> {
    let input = &window.input;
    let schema = input.schema();
    let [sort] = order_by else {
        return Ok(None);
    };
    let Expr::Column(order) = &sort.expr else {
        return Ok(None);
    };
    let Ok(order_idx) = schema.index_of_column(order) else {
        return Ok(None);
    };
    let order_field = schema.field(order_idx);
    let comparable = |t: &DataType| {
        (t.is_primitive() && !t.is_floating())
            || matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    };
    if order_field.is_nullable()
        || !comparable(order_field.data_type())
        || keys.contains(order)
        || !plain_scan(input)?
    {
        return Ok(None);
    }
    for k in keys {
        let Ok(i) = schema.index_of_column(k) else {
            return Ok(None);
        };
        if schema.field(i).data_type().is_floating() {
            return Ok(None);
        }
    }
    let mut names = std::collections::HashSet::new();
    if !schema.fields().iter().all(|f| names.insert(f.name())) {
        return Ok(None);
    }

    let extreme = if sort.asc {
        min(Expr::Column(order.clone()))
    } else {
        max(Expr::Column(order.clone()))
    };
    let per_key = LogicalPlanBuilder::from(Arc::clone(input))
        .aggregate(
            keys.iter().cloned().map(Expr::Column),
            vec![extreme.alias(KEY_MAX)],
        )?
        .alias(LEFT)?
        .build()?;
    let left_on = keys
        .iter()
        .map(|k| Column::new(Some(LEFT), k.name()))
        .chain([Column::new(Some(LEFT), KEY_MAX)]);
    let right_on = keys
        .iter()
        .map(|k| Column::new(Some(RIGHT), k.name()))
        .chain([Column::new(Some(RIGHT), order.name())]);
    let joined = LogicalPlanBuilder::from(per_key).join_detailed(
        LogicalPlanBuilder::from(Arc::clone(input))
            .alias(RIGHT)?
            .build()?,
        JoinType::Inner,
        (left_on.collect::<Vec<_>>(), right_on.collect::<Vec<_>>()),
        None,
        NullEquality::NullEqualsNull,
    )?;

    // One row per key even when several rows share the newest `o`.
    let mut aggregates = Vec::new();
    let mut outputs = Vec::with_capacity(schema.fields().len() + 1);
    for (qualifier, field) in schema.iter() {
        let inner = col(Column::new(Some(RIGHT), field.name()));
        let column = Column::new(qualifier.cloned(), field.name());
        if keys.contains(&column) {
            outputs.push(inner.alias_qualified(qualifier.cloned(), field.name()));
            continue;
        }
        let aggregate = if column == *order {
            max(inner)
        } else {
            first_value(inner, vec![])
        };
        let Some(output) = add_first(&mut aggregates, aggregate, qualifier, field)? else {
            return Ok(None);
        };
        outputs.push(output);
    }
    outputs.push(row_number_one(window, index)?);
    let plan = joined
        .aggregate(
            keys.iter().map(|k| col(Column::new(Some(RIGHT), k.name()))),
            aggregates,
        )?
        .project(outputs)?
        .build()?;
    Ok(Some(plan))
}

/// Whether `plan` is table scans under filters, projections and aliases, nothing volatile:
/// reading it twice costs two scans and gives the same rows.
fn plain_scan(plan: &LogicalPlan) -> Result<bool> {
    let mut plain = true;
    plan.apply(|p| {
        let ok = match p {
            LogicalPlan::TableScan(_) | LogicalPlan::SubqueryAlias(_) => true,
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
                !p.expressions().iter().any(Expr::is_volatile)
            }
            _ => false,
        };
        plain &= ok;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(plain)
}

/// The physical half of the join-back form, and of the same query written by hand
/// (`logs l JOIN (SELECT host, max(ts) AS m FROM logs GROUP BY host) a ON l.host = a.host AND
/// l.ts = a.m`): when one side of a hash join is a grouped aggregate whose group columns are
/// all join keys (at most one row per key) and it is either this rewrite's per-key side or an
/// aggregate over exactly the files the other side reads, the join holds that side whole
/// (`CollectLeft`, swapping sides if needed). It has no more rows than the other side and no
/// more than the aggregate itself held, and the bounds DataFusion then pushes into the other
/// side's scan are plain ranges that prune segments and row groups (a partitioned join's
/// filter is a per-partition `CASE` that prunes nothing; DataFusion, with no row estimate for
/// an aggregate, would otherwise often hold the raw side). Runs right after DataFusion's join
/// selection, before repartitioning is planned.
#[derive(Debug, Default)]
pub(crate) struct LastRowJoinBuild {
    pub(crate) paths: Arc<crate::paths::PathCounts>,
}

impl LastRowJoinBuild {
    /// Whether `side` (with join keys `keys`) should be the held side against `other`.
    fn holds(
        side: &Arc<dyn ExecutionPlan>,
        keys: &[usize],
        other: &Arc<dyn ExecutionPlan>,
    ) -> bool {
        if !unique_on(side, keys) {
            return false;
        }
        if side.schema().index_of(KEY_MAX).is_ok() {
            return true;
        }
        let files = scanned_files(side);
        !files.is_empty() && files == scanned_files(other)
    }
}

/// Join key columns of one side, as indices into its output (computed keys are left out).
fn key_columns<'a>(keys: impl Iterator<Item = &'a PhysicalExprRef>) -> Vec<usize> {
    keys.filter_map(|k| {
        k.downcast_ref::<PhysicalColumn>()
            .map(PhysicalColumn::index)
    })
    .collect()
}

/// Whether `plan` has at most one row per value of its output columns `keys`: it is (through
/// projections, repartitioning and coalescing) a grouped aggregate whose group columns are
/// all among `keys`.
fn unique_on(plan: &Arc<dyn ExecutionPlan>, keys: &[usize]) -> bool {
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        let inner: Vec<usize> = keys
            .iter()
            .filter_map(|k| p.expr().get(*k))
            .filter_map(|e| {
                e.expr
                    .downcast_ref::<PhysicalColumn>()
                    .map(PhysicalColumn::index)
            })
            .collect();
        return unique_on(p.input(), &inner);
    }
    if let Some(a) = plan.downcast_ref::<AggregateExec>() {
        let groups = a.group_expr();
        return matches!(
            a.mode(),
            AggregateMode::Final
                | AggregateMode::FinalPartitioned
                | AggregateMode::Single
                | AggregateMode::SinglePartitioned
        ) && !groups.expr().is_empty()
            && !groups.has_grouping_set()
            && (0..groups.expr().len()).all(|g| keys.contains(&g));
    }
    let passes_rows_through = plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
        || plan.downcast_ref::<CooperativeExec>().is_some();
    match plan.children().as_slice() {
        [child] if passes_rows_through => unique_on(child, keys),
        _ => false,
    }
}

/// The Parquet files the scans under `plan` read.
fn scanned_files(plan: &Arc<dyn ExecutionPlan>) -> std::collections::BTreeSet<String> {
    let mut files = std::collections::BTreeSet::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(p) = stack.pop() {
        if let Some(scan) = p.downcast_ref::<DataSourceExec>()
            && let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>()
        {
            for group in &config.file_groups {
                files.extend(group.iter().map(|f| f.object_meta.location.to_string()));
            }
        }
        stack.extend(p.children().into_iter().cloned());
    }
    files
}

impl PhysicalOptimizerRule for LastRowJoinBuild {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            let Some(join) = p.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(p));
            };
            let inner_or_semi = matches!(
                join.join_type(),
                JoinType::Inner | JoinType::LeftSemi | JoinType::RightSemi
            );
            if !inner_or_semi
                || *join.partition_mode() == PartitionMode::CollectLeft
                || join.filter().is_some()
            {
                return Ok(Transformed::no(p));
            }
            let left_keys = key_columns(join.on().iter().map(|(l, _)| l));
            let right_keys = key_columns(join.on().iter().map(|(_, r)| r));
            if Self::holds(join.left(), &left_keys, join.right()) {
                let built = join
                    .builder()
                    .with_partition_mode(PartitionMode::CollectLeft)
                    .build()?;
                self.paths.hit(crate::paths::Path::JoinHoldsKeySide);
                return Ok(Transformed::yes(Arc::new(built) as Arc<dyn ExecutionPlan>));
            }
            if Self::holds(join.right(), &right_keys, join.left()) {
                self.paths.hit(crate::paths::Path::JoinHoldsKeySide);
                return Ok(Transformed::yes(
                    join.swap_inputs(PartitionMode::CollectLeft)?,
                ));
            }
            Ok(Transformed::no(p))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_last_row_join_build"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
