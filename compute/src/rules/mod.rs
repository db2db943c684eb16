//! Logical optimizer rules Strata adds to DataFusion's.

use std::sync::Arc;

use datafusion::logical_expr::Expr;
use datafusion::optimizer::OptimizerRule;

mod eager_agg;
mod guard;
mod last_row;

pub(crate) use eager_agg::AggregateBeforeJoin;
pub(crate) use guard::GuardJoins;
pub(crate) use last_row::{LastRowJoinBuild, LastRowPerKey};

/// Rules appended after DataFusion's default logical optimizer rules; each counts its
/// rewrites in `paths`.
pub(crate) fn optimizer_rules(
    paths: &Arc<crate::paths::PathCounts>,
) -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    vec![
        Arc::new(LastRowPerKey {
            paths: Arc::clone(paths),
        }),
        Arc::new(AggregateBeforeJoin {
            paths: Arc::clone(paths),
        }),
    ]
}

/// `e` without the aliases wrapped around it.
fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}
