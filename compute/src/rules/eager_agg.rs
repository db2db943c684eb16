//! Aggregate the large side of a join before joining it to a small dimension table.
//!
//! ```sql
//! SELECT s.team, count(*), sum(l.bytes)
//! FROM logs l JOIN services s ON l.service = s.service GROUP BY s.team
//! ```
//!
//! joins every `logs` row to `services` and then groups the joined rows. When the aggregates
//! read only one side (the *fact* side) and the other side is much smaller, the fact side can
//! be grouped by its join keys first, so the join sees one row per key instead of one per fact
//! row ("eager aggregation"):
//!
//! ```text
//! Aggregate: team; count(*), sum(bytes)        Aggregate: team; sum(c) AS count(*), sum(b) AS sum(bytes)
//!   Join: l.service = s.service          ==>     Join: l.service = s.service
//!     logs                                         Aggregate: l.service; count(*) AS c, sum(bytes) AS b
//!     services                                       logs
//!                                                  services
//! ```
//!
//! Applies to inner equi-joins without extra join filters, with `count`, `sum`, `min` and
//! `max` (not DISTINCT, no FILTER or ORDER BY) over fact columns, grouped by columns of
//! either side, when table statistics say the other side has at most a tenth of the fact
//! side's rows (the join keys of a fact table then usually repeat: a key per dimension row).
//! The rewritten aggregate must have the same output names and types, or the plan is kept.

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, Result};
use datafusion::datasource::source_as_provider;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, Join, JoinType, LogicalPlan, Projection, lit, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::unalias;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct AggregateBeforeJoin {
    pub(crate) paths: std::sync::Arc<crate::paths::PathCounts>,
}

/// The other side must have at most this fraction of the fact side's rows.
const MAX_DIMENSION_FRACTION: usize = 10;

/// Prefix of the partial aggregates' column names.
const PARTIAL: &str = "__strata_partial_";

impl OptimizerRule for AggregateBeforeJoin {
    fn name(&self) -> &str {
        "strata_aggregate_before_join"
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
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match rewrite_aggregate(agg)? {
            Some(new) => {
                self.paths.hit(crate::paths::Path::AggregateBeforeJoin);
                Ok(Transformed::yes(new))
            }
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// How a partial aggregate is combined after the join.
#[derive(Clone, Copy)]
enum Combine {
    /// A sum that is 0 (not NULL) without rows.
    Count,
    Sum,
    Min,
    Max,
}

fn rewrite_aggregate(agg: &Aggregate) -> Result<Option<LogicalPlan>> {
    // The join, possibly under a projection of plain columns (which the new plan drops).
    let join = match agg.input.as_ref() {
        LogicalPlan::Join(j) => j,
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            match p.input.as_ref() {
                LogicalPlan::Join(j) => j,
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    if join.join_type != JoinType::Inner || join.filter.is_some() || join.null_aware {
        return Ok(None);
    }
    let mut left_keys = Vec::with_capacity(join.on.len());
    let mut right_keys = Vec::with_capacity(join.on.len());
    for (l, r) in &join.on {
        match (l, r) {
            (Expr::Column(l), Expr::Column(r)) => {
                left_keys.push(l.clone());
                right_keys.push(r.clone());
            }
            _ => return Ok(None),
        }
    }
    let mut groups = Vec::with_capacity(agg.group_expr.len());
    for g in &agg.group_expr {
        match g {
            Expr::Column(c) => groups.push(c.clone()),
            _ => return Ok(None), // grouping sets, expressions
        }
    }

    // Every aggregate must be combinable and read columns of one side only.
    let mut partials = Vec::with_capacity(agg.aggr_expr.len());
    let mut referenced = Vec::new();
    for e in &agg.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(e) else {
            return Ok(None);
        };
        let combine = match func.name() {
            "count" => Combine::Count,
            "sum" => Combine::Sum,
            "min" => Combine::Min,
            "max" => Combine::Max,
            _ => return Ok(None),
        };
        if params.distinct
            || params.filter.is_some()
            || !params.order_by.is_empty()
            || params.null_treatment.is_some()
            || params.args.iter().any(Expr::is_volatile)
        {
            return Ok(None);
        }
        referenced.extend(unalias(e).column_refs().into_iter().cloned());
        partials.push((unalias(e).clone(), combine));
    }
    let (left, right) = (join.left.schema(), join.right.schema());
    let fact_is_left = if referenced.iter().all(|c| left.has_column(c)) && !referenced.is_empty() {
        true
    } else if referenced.iter().all(|c| right.has_column(c)) && !referenced.is_empty() {
        false
    } else {
        return Ok(None); // both sides, or only count(*): no side to pick by its columns
    };
    let (fact, dim, fact_keys) = if fact_is_left {
        (&join.left, &join.right, &left_keys)
    } else {
        (&join.right, &join.left, &right_keys)
    };
    match (estimated_rows(fact), estimated_rows(dim)) {
        (Some(f), Some(d)) if d.saturating_mul(MAX_DIMENSION_FRACTION) <= f => {}
        _ => return Ok(None),
    }

    // Partial aggregate of the fact side: by its join keys and its grouping columns.
    let fact_schema = fact.schema();
    let mut pre_groups: Vec<Column> = fact_keys.clone();
    for g in &groups {
        if fact_schema.has_column(g) && !pre_groups.contains(g) {
            pre_groups.push(g.clone());
        }
    }
    let pre_aggs: Vec<Expr> = partials
        .iter()
        .enumerate()
        .map(|(i, (e, _))| e.clone().alias(format!("{PARTIAL}{i}")))
        .collect();
    let pre = Aggregate::try_new(
        Arc::clone(fact),
        pre_groups.into_iter().map(Expr::Column).collect(),
        pre_aggs,
    )?;
    let pre = Arc::new(LogicalPlan::Aggregate(pre));
    let (new_left, new_right) = if fact_is_left {
        (pre, Arc::clone(&join.right))
    } else {
        (Arc::clone(&join.left), pre)
    };
    let new_join = Join::try_new(
        new_left,
        new_right,
        join.on.clone(),
        None,
        JoinType::Inner,
        join.join_constraint,
        join.null_equality,
        false,
    )?;

    // The final aggregate combines the partials under the original output names.
    let n_groups = agg.group_expr.len();
    let mut counts = Vec::new();
    let finals: Vec<Expr> = partials
        .iter()
        .enumerate()
        .map(|(i, (_, combine))| {
            let partial = Expr::Column(Column::from_name(format!("{PARTIAL}{i}")));
            let combined = match combine {
                Combine::Count => {
                    counts.push(i);
                    sum(partial)
                }
                Combine::Sum => sum(partial),
                Combine::Min => min(partial),
                Combine::Max => max(partial),
            };
            combined.alias(agg.schema.field(n_groups + i).name())
        })
        .collect();
    let new_agg = Aggregate::try_new(
        Arc::new(LogicalPlan::Join(new_join)),
        agg.group_expr.clone(),
        finals,
    )?;
    let mut new_plan = LogicalPlan::Aggregate(new_agg);
    if !counts.is_empty() {
        // A count is a sum of partial counts, which is NULL where the count is 0 (no joined
        // row: a global aggregate over an empty join) and nullable where the count is not.
        // `CASE WHEN s IS NOT NULL THEN s ELSE 0 END` restores both (DataFusion derives that
        // it is not nullable; a wrong nullability fails physical planning above this node).
        let schema = Arc::clone(new_plan.schema());
        let exprs = schema
            .iter()
            .enumerate()
            .map(|(i, (qualifier, field))| {
                let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                if i < n_groups || !counts.contains(&(i - n_groups)) {
                    return Ok(column);
                }
                Ok(when(column.clone().is_not_null(), column)
                    .otherwise(lit(0i64))?
                    .alias_qualified(qualifier.cloned(), field.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        new_plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(new_plan))?);
    }
    if !same_names_and_types(new_plan.schema(), &agg.schema) {
        return Ok(None);
    }
    Ok(Some(new_plan))
}

fn same_names_and_types(a: &DFSchema, b: &DFSchema) -> bool {
    a.fields().len() == b.fields().len()
        && a.iter().zip(b.iter()).all(|((qa, fa), (qb, fb))| {
            qa == qb && fa.name() == fb.name() && fa.data_type() == fb.data_type()
        })
}

/// Rows of the table under `plan` as its provider's statistics tell (an upper bound of the
/// plan's rows), looking through aliases, projections and filters.
fn estimated_rows(plan: &LogicalPlan) -> Option<usize> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => estimated_rows(&a.input),
        LogicalPlan::Projection(p) => estimated_rows(&p.input),
        LogicalPlan::Filter(f) => estimated_rows(&f.input),
        LogicalPlan::TableScan(scan) => {
            let rows = source_as_provider(&scan.source)
                .ok()?
                .statistics()?
                .num_rows;
            let rows = match rows {
                Precision::Exact(n) | Precision::Inexact(n) => n,
                Precision::Absent => return None,
            };
            Some(scan.fetch.map_or(rows, |f| f.min(rows)))
        }
        _ => None,
    }
}
