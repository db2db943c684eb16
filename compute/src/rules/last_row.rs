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

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::functions_aggregate::first_last::first_value;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, Filter, LogicalPlan, Operator, Projection,
    WindowFunctionDefinition, lit, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

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
            Some(new) => {
                self.paths.hit(crate::paths::Path::LastRowRewrite);
                Ok(Transformed::yes(new))
            }
            None => Ok(Transformed::no(plan)),
        }
    }
}

fn rewrite_filter(filter: &Filter) -> Result<Option<LogicalPlan>> {
    let conjuncts = split_conjunction(&filter.predicate);
    for (i, conjunct) in conjuncts.iter().enumerate() {
        let Some(column) = equals_one(conjunct) else {
            continue;
        };
        let Some(input) = rewrite_below(&filter.input, column, MAX_DEPTH)? else {
            continue;
        };
        let rest: Vec<Expr> = conjuncts
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| (*e).clone())
            .collect();
        let input = Arc::new(input);
        return Ok(Some(match conjunction(rest) {
            Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, input)?),
            None => Arc::unwrap_or_clone(input),
        }));
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
fn rewrite_below(plan: &LogicalPlan, column: &Column, depth: usize) -> Result<Option<LogicalPlan>> {
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
    let Some(new_input) = new_input else {
        return Ok(None);
    };
    // Rebuild this node over the new input, recomputing its schema.
    Ok(Some(
        plan.with_new_exprs(plan.expressions(), vec![new_input])?,
    ))
}

/// The aggregate equivalent of `window` filtered to row 1, if output `index` of the window is
/// a plain `row_number()` over plain partition columns with an ordering.
fn rewrite_window(
    window: &datafusion::logical_expr::Window,
    index: usize,
) -> Result<Option<LogicalPlan>> {
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

    // Group by the keys; every other input column becomes first_value(c ORDER BY o).
    let mut aggregates = Vec::new();
    let mut outputs = Vec::with_capacity(n_input + 1);
    for (qualifier, field) in input_schema.iter() {
        let column = Column::new(qualifier.cloned(), field.name());
        if keys.contains(&column) {
            outputs.push(Expr::Column(column));
            continue;
        }
        let name = format!("__strata_first_{}", aggregates.len());
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
        aggregates.push(aggregate.alias(name.clone()));
        let mut first = Expr::Column(Column::from_name(name));
        if !field.is_nullable() {
            // first_value is nullable, but every group has a row, so the first value of a
            // non-nullable column is never NULL. Say so, or the plan above (whose schemas
            // were derived from the window's) no longer matches the physical plan's schemas
            // ("Physical input schema should be the same ...", e.g. under a UNION).
            let Ok(default) = ScalarValue::new_default(field.data_type()) else {
                return Ok(None);
            };
            first = when(first.clone().is_not_null(), first).otherwise(lit(default))?;
        }
        outputs.push(first.alias_qualified(qualifier.cloned(), field.name()));
    }
    let (rn_qualifier, rn_field) = window.schema.qualified_field(index);
    let one = ScalarValue::UInt64(Some(1)).cast_to(rn_field.data_type())?;
    outputs.push(Expr::Literal(one, None).alias_qualified(rn_qualifier.cloned(), rn_field.name()));
    let group_by = keys.into_iter().map(Expr::Column).collect();
    let aggregate = Aggregate::try_new(Arc::clone(&window.input), group_by, aggregates)?;
    let projection = Projection::try_new(outputs, Arc::new(LogicalPlan::Aggregate(aggregate)))?;
    Ok(Some(LogicalPlan::Projection(projection)))
}
