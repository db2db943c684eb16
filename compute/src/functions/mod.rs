//! Functions Strata registers on top of (or in place of) DataFusion's defaults.

use std::sync::Arc;

use datafusion::execution::SessionStateDefaults;
use datafusion::logical_expr::AggregateUDF;

/// DataFusion's default aggregate functions, with Strata's replacements swapped in by name.
pub(crate) fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    SessionStateDefaults::default_aggregate_functions()
}
