//! A physical rule that keeps joins from running away with a node.
//!
//! - A join without a join condition (a cross join, or a nested-loop join) whose inputs'
//!   row estimates multiply past `query.max_cross_join_rows` is refused at planning with
//!   `ResourcesExhausted`, naming the estimate and the setting.
//! - Every join's output is made cooperative: each batch it emits spends tokio's task
//!   budget. A join that multiplies rows can emit batches without ever waiting on its
//!   inputs, so the operators above it would loop without yielding; a task that never
//!   yields cannot be cancelled, and the query's deadline would not stop it.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

/// See the module docs. `max_cross_join_rows == 0` turns the cap off.
#[derive(Debug)]
pub(crate) struct GuardJoins {
    pub(crate) max_cross_join_rows: u64,
}

impl PhysicalOptimizerRule for GuardJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            if !p.name().contains("Join") {
                return Ok(Transformed::no(p));
            }
            let inputs = if let Some(j) = p.downcast_ref::<CrossJoinExec>() {
                Some((j.left(), j.right()))
            } else {
                p.downcast_ref::<NestedLoopJoinExec>()
                    .map(|j| (j.left(), j.right()))
            };
            if let Some((left, right)) = inputs {
                self.check(left, right)?;
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(p)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_guard_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl GuardJoins {
    fn check(&self, left: &Arc<dyn ExecutionPlan>, right: &Arc<dyn ExecutionPlan>) -> Result<()> {
        if self.max_cross_join_rows == 0 {
            return Ok(());
        }
        let stats = StatisticsContext::new();
        let rows = |p: &Arc<dyn ExecutionPlan>| -> Result<Option<u64>> {
            Ok(stats
                .compute(p.as_ref(), &StatisticsArgs::new())?
                .num_rows
                .get_value()
                .map(|n| *n as u64))
        };
        let (Some(l), Some(r)) = (rows(left)?, rows(right)?) else {
            // No estimate: the deadline and the memory limit still bound the query.
            return Ok(());
        };
        let out = l.saturating_mul(r);
        if out > self.max_cross_join_rows {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "this query pairs every row of one input (~{l} rows) with every row of another \
                 (~{r} rows): ~{out} rows, over query.max_cross_join_rows ({}); add a join \
                 condition, or raise the setting",
                self.max_cross_join_rows
            )));
        }
        Ok(())
    }
}
