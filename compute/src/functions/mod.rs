//! Functions Strata registers on top of (or in place of) DataFusion's defaults.

use std::sync::Arc;

use datafusion::execution::SessionStateDefaults;
use datafusion::logical_expr::AggregateUDF;

mod percentile;

/// DataFusion's default aggregate functions, with Strata's replacements swapped in by name.
pub(crate) fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    SessionStateDefaults::default_aggregate_functions()
        .into_iter()
        .map(|udaf| replacement(udaf.name()).unwrap_or(udaf))
        .collect()
}

/// Strata's implementation of the default aggregate function `name`, if it has one.
fn replacement(name: &str) -> Option<Arc<AggregateUDF>> {
    match name {
        // The same function with a groups accumulator (GROUP BY without per-group boxes).
        "approx_percentile_cont" => Some(Arc::new(AggregateUDF::from(
            percentile::ApproxPercentileContGroups::new(),
        ))),
        _ => None,
    }
}
