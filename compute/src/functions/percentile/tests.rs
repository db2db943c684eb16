//! The groups accumulator against DataFusion's own `approx_percentile_cont` (a plain
//! session) and against exact percentiles from sorting.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    UInt32Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::approx_percentile_cont::ApproxPercentileCont;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;
use crate::testing::Rng;

// ---------------------------------------------------------------------------------------
// Data

/// One input row of table `t`.
#[derive(Debug, Clone)]
struct Row {
    g: Option<i64>,
    x: Option<f64>,
    keep: Option<bool>,
}

/// Latency-like values: exponential bodies with rare spikes, a scale per group, some NULLs,
/// every 13th group only NULLs, and a few rows with a NULL group key.
fn rows(seed: u64, n: usize, groups: u64) -> Vec<Row> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let g = (rng.below(100) != 0).then(|| rng.skewed(groups) as i64);
            let scale = 1.0 + g.unwrap_or(0).rem_euclid(7) as f64 * 10.0;
            let spike = if rng.below(50) == 0 { 20.0 } else { 1.0 };
            let value = -(1.0 - rng.unit()).ln() * scale * spike;
            let null = g.is_some_and(|g| g % 13 == 0) || rng.below(20) == 0;
            let keep = (rng.below(10) != 0).then(|| rng.below(2) == 0);
            Row {
                g,
                x: (!null).then_some(value),
                keep,
            }
        })
        .collect()
}

/// Table `t(g, x, i, u, f, keep)` in `partitions` partitions of `batch`-row batches;
/// `i`, `u`, `f` are `x` rounded to Int64, UInt32 and as Float32.
fn table(rows: &[Row], partitions: usize, batch: usize) -> Arc<MemTable> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("i", DataType::Int64, true),
        Field::new("u", DataType::UInt32, true),
        Field::new("f", DataType::Float32, true),
        Field::new("keep", DataType::Boolean, true),
    ]));
    let batches: Vec<RecordBatch> = rows
        .chunks(batch)
        .map(|chunk| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(chunk.iter().map(|r| r.g).collect::<Int64Array>()),
                Arc::new(chunk.iter().map(|r| r.x).collect::<Float64Array>()),
                Arc::new(
                    chunk
                        .iter()
                        .map(|r| r.x.map(|v| v.round() as i64))
                        .collect::<Int64Array>(),
                ),
                Arc::new(
                    chunk
                        .iter()
                        .map(|r| r.x.map(|v| v.round() as u32))
                        .collect::<UInt32Array>(),
                ),
                Arc::new(
                    chunk
                        .iter()
                        .map(|r| r.x.map(|v| v as f32))
                        .collect::<Float32Array>(),
                ),
                Arc::new(chunk.iter().map(|r| r.keep).collect::<BooleanArray>()),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch")
        })
        .collect();
    let per = batches.len().div_ceil(partitions);
    let partitions = batches.chunks(per).map(<[_]>::to_vec).collect();
    Arc::new(MemTable::try_new(schema, partitions).expect("table"))
}

// ---------------------------------------------------------------------------------------
// Sessions

/// A session over `table` as `t`: DataFusion's defaults, or with Strata's function set.
fn session(table: Arc<MemTable>, partitions: usize, strata: bool) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(1024);
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    if strata {
        builder = builder.with_aggregate_functions(crate::functions::aggregate_functions());
    }
    let ctx = SessionContext::new_with_state(builder.build());
    ctx.register_table("t", table).expect("register");
    ctx
}

/// `SELECT g, <agg> FROM t GROUP BY g`, as group → value (cast to Float64), with the
/// aggregate's result type, and the physical plan it ran.
async fn grouped(
    ctx: &SessionContext,
    agg: &str,
) -> (
    BTreeMap<Option<i64>, Option<f64>>,
    DataType,
    Arc<dyn ExecutionPlan>,
) {
    let sql = format!("SELECT g, {agg} AS p FROM t GROUP BY g");
    let plan = ctx
        .sql(&sql)
        .await
        .expect("plan")
        .create_physical_plan()
        .await
        .expect("physical plan");
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx())
        .await
        .expect("run");
    let data_type = plan.schema().field(1).data_type().clone();
    let mut out = BTreeMap::new();
    for batch in batches {
        let g = batch.column(0).as_primitive::<Int64Type>();
        let p = cast(batch.column(1), &DataType::Float64).expect("cast");
        let p = p.as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let key = g.is_valid(row).then(|| g.value(row));
            let value = p.is_valid(row).then(|| p.value(row));
            assert!(out.insert(key, value).is_none(), "group {key:?} twice");
        }
    }
    (out, data_type, plan)
}

/// Whether every aggregate of every `AggregateExec` in `plan` runs on a groups
/// accumulator.
fn all_groups_accumulators(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let here = plan.downcast_ref::<AggregateExec>().is_none_or(|agg| {
        agg.aggr_expr()
            .iter()
            .all(|e| e.groups_accumulator_supported())
    });
    here && plan.children().into_iter().all(all_groups_accumulators)
}

/// Sum of metric `name` over the Partial `AggregateExec`s of `plan`.
fn partial_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let here = plan
        .downcast_ref::<AggregateExec>()
        .filter(|agg| *agg.mode() == AggregateMode::Partial)
        .and_then(|agg| agg.metrics())
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize());
    here + plan
        .children()
        .into_iter()
        .map(|c| partial_metric(c, name))
        .sum::<usize>()
}

// ---------------------------------------------------------------------------------------
// Exact reference

/// Each group's (non-NULL, kept) values, sorted.
fn exact_groups(
    rows: &[Row],
    value: impl Fn(&Row) -> Option<f64>,
    keep: impl Fn(&Row) -> bool,
) -> BTreeMap<Option<i64>, Vec<f64>> {
    let mut groups: BTreeMap<Option<i64>, Vec<f64>> = BTreeMap::new();
    for row in rows {
        let values = groups.entry(row.g).or_default();
        if let Some(v) = value(row).filter(|_| keep(row)) {
            values.push(v);
        }
    }
    for values in groups.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    groups
}

/// How far `estimate` is from quantile `q` of `sorted`, in ranks over the group's size:
/// 0 when some rank between the values below `estimate` and those up to it is `q·n`.
fn rank_error(sorted: &[f64], q: f64, estimate: f64) -> f64 {
    let n = sorted.len() as f64;
    let below = sorted.partition_point(|&v| v < estimate) as f64;
    let up_to = sorted.partition_point(|&v| v <= estimate) as f64;
    let target = q * n;
    let off = if target < below {
        below - target
    } else if target > up_to {
        target - up_to
    } else {
        0.0
    };
    off / n
}

/// Error statistics of one result set against the exact quantiles.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Errors {
    /// Largest rank error over groups with at least 200 values.
    max_large: f64,
    /// Mean rank error over groups with at least 200 values.
    mean_large: f64,
    /// Mean rank error over all non-empty groups.
    mean: f64,
}

/// Checks `result` against `exact` (same groups, NULL exactly for empty groups, each
/// estimate within t-digest resolution for `centroids` centroids) and measures its rank
/// errors for quantile `q`.
fn errors(
    result: &BTreeMap<Option<i64>, Option<f64>>,
    exact: &BTreeMap<Option<i64>, Vec<f64>>,
    q: f64,
    centroids: usize,
) -> Errors {
    assert_eq!(
        result.keys().collect::<Vec<_>>(),
        exact.keys().collect::<Vec<_>>(),
        "groups"
    );
    // The t-digest's centroids are widest (in ranks) at the median: 2/centroids there.
    let resolution = 2.0 / centroids as f64;
    let (mut max_large, mut sum_large, mut large) = (0.0f64, 0.0, 0usize);
    let (mut sum, mut counted) = (0.0, 0usize);
    for (group, values) in exact {
        let estimate = result[group];
        if values.is_empty() {
            assert_eq!(estimate, None, "group {group:?} has no values");
            continue;
        }
        let estimate = estimate.unwrap_or_else(|| panic!("group {group:?}: NULL"));
        let (lo, hi) = (values[0], values[values.len() - 1]);
        assert!(
            (lo..=hi).contains(&estimate),
            "group {group:?}: {estimate} outside [{lo}, {hi}]"
        );
        let error = rank_error(values, q, estimate);
        // Few values: the digest keeps them all and interpolates between neighbours.
        assert!(
            error <= resolution.max(1.0 / values.len() as f64),
            "group {group:?} ({} values): rank error {error}",
            values.len()
        );
        if values.len() >= 200 {
            max_large = max_large.max(error);
            sum_large += error;
            large += 1;
        }
        sum += error;
        counted += 1;
    }
    Errors {
        max_large,
        mean_large: sum_large / large.max(1) as f64,
        mean: sum / counted.max(1) as f64,
    }
}

/// Runs `agg` grouped by `g` through DataFusion's function and Strata's, with
/// `partitions` target partitions; checks both against the exact quantile `q` of the
/// `value`s of the rows `keep` keeps, and Strata's errors against DataFusion's.
async fn compare(
    rows: &[Row],
    partitions: usize,
    (agg, q, centroids): (&str, f64, usize),
    value: impl Fn(&Row) -> Option<f64>,
    keep: impl Fn(&Row) -> bool,
) -> (Errors, Errors) {
    let table = table(rows, 3, 997);
    let exact = exact_groups(rows, value, keep);
    assert!(exact.values().filter(|v| v.len() >= 200).count() >= 5);
    let (builtin, builtin_type, builtin_plan) =
        grouped(&session(Arc::clone(&table), partitions, false), agg).await;
    let (strata, strata_type, strata_plan) = grouped(&session(table, partitions, true), agg).await;
    assert!(!all_groups_accumulators(&builtin_plan), "{agg}: built-in");
    assert!(all_groups_accumulators(&strata_plan), "{agg}: Strata");
    assert_eq!(strata_type, builtin_type, "{agg}: result type");
    let builtin = errors(&builtin, &exact, q, centroids);
    let strata = errors(&strata, &exact, q, centroids);
    eprintln!("{agg}, {partitions} partitions: built-in {builtin:?}, Strata {strata:?}");
    // On average as accurate as the built-in (single groups differ either way, within
    // the digest's resolution, checked above).
    assert!(
        strata.mean_large <= builtin.mean_large * 1.25 + 0.0005,
        "{agg}, {partitions} partitions: Strata {strata:?}, built-in {builtin:?}"
    );
    assert!(
        strata.mean <= builtin.mean * 1.25 + 0.0005,
        "{agg}, {partitions} partitions: Strata {strata:?}, built-in {builtin:?}"
    );
    (builtin, strata)
}

fn x(row: &Row) -> Option<f64> {
    row.x
}

fn all(_: &Row) -> bool {
    true
}

// ---------------------------------------------------------------------------------------
// SQL: Strata's function set against DataFusion's

#[tokio::test]
async fn sql_matches_builtin_and_exact_quantiles() {
    let rows = rows(1, 60_000, 300);
    for partitions in [2, 4] {
        for (agg, q) in [
            (
                "approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY x)",
                0.99,
            ),
            ("approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY x)", 0.5),
            ("approx_percentile_cont(x, 0.9)", 0.9),
            // DESC: the 0.9 quantile from the top is the 0.1 quantile.
            (
                "approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY x DESC)",
                0.1,
            ),
            ("approx_percentile_cont(0.0) WITHIN GROUP (ORDER BY x)", 0.0),
            ("approx_percentile_cont(1.0) WITHIN GROUP (ORDER BY x)", 1.0),
        ] {
            compare(&rows, partitions, (agg, q, 100), x, all).await;
        }
    }
}

#[tokio::test]
async fn sql_null_groups_and_null_keys() {
    // Every 13th group has only NULLs; 1% of rows have a NULL key.
    let rows = rows(2, 20_000, 100);
    let exact = exact_groups(&rows, x, all);
    assert!(exact.contains_key(&None));
    assert!(exact.values().filter(|v| v.is_empty()).count() >= 3);
    let agg = "approx_percentile_cont(0.75) WITHIN GROUP (ORDER BY x)";
    compare(&rows, 4, (agg, 0.75, 100), x, all).await;
}

#[tokio::test]
async fn sql_filter_clause() {
    let rows = rows(3, 40_000, 200);
    // NULL `keep` filters the row out, as in SQL.
    let keep = |r: &Row| r.keep == Some(true);
    let exact = exact_groups(&rows, x, keep);
    assert!(
        exact.values().any(|v| v.is_empty()) && exact.values().any(|v| v.len() > 500),
        "filtered-out groups and large groups"
    );
    for partitions in [2, 4] {
        let agg = "approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY x) FILTER (WHERE keep)";
        compare(&rows, partitions, (agg, 0.95, 100), x, keep).await;
    }
}

#[tokio::test]
async fn sql_integer_and_float32_inputs() {
    let rows = rows(4, 40_000, 150);
    type Value = fn(&Row) -> Option<f64>;
    let cases: [(&str, Value); 3] = [
        ("i", |r| r.x.map(|v| v.round() as i64 as f64)),
        ("u", |r| r.x.map(|v| f64::from(v.round() as u32))),
        ("f", |r| r.x.map(|v| f64::from(v as f32))),
    ];
    for (column, value) in cases {
        let agg = format!("approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY {column})");
        compare(&rows, 4, (&agg, 0.9, 100), value, all).await;
    }
}

#[tokio::test]
async fn sql_centroids_argument() {
    let rows = rows(5, 60_000, 100);
    for query in [
        (
            "approx_percentile_cont(0.99, 200) WITHIN GROUP (ORDER BY x)",
            0.99,
            200,
        ),
        (
            "approx_percentile_cont(0.5, 20) WITHIN GROUP (ORDER BY x)",
            0.5,
            20,
        ),
        ("approx_percentile_cont(x, 0.25, 50)", 0.25, 50),
    ] {
        compare(&rows, 2, query, x, all).await;
    }
}

#[tokio::test]
async fn sql_skipped_partial_aggregation() {
    // Nearly one group per row: the Partial stage gives up and sends `convert_to_state`
    // rows, which the Final stage merges.
    let rows: Vec<Row> = rows(6, 30_000, 1000)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Row {
            g: Some((i % 12_000) as i64),
            ..r
        })
        .collect();
    let table = table(&rows, 3, 997);
    let mut config = SessionConfig::new().with_target_partitions(2);
    let execution = &mut config.options_mut().execution;
    execution.skip_partial_aggregation_probe_rows_threshold = 1000;
    execution.skip_partial_aggregation_probe_ratio_threshold = 0.1;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_aggregate_functions(crate::functions::aggregate_functions())
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_table("t", table).expect("register");
    let (result, _, plan) = grouped(
        &ctx,
        "approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FILTER (WHERE keep)",
    )
    .await;
    assert!(all_groups_accumulators(&plan));
    assert!(partial_metric(&plan, "skipped_aggregation_rows") > 0);
    let exact = exact_groups(&rows, x, |r| r.keep == Some(true));
    // At most three values per group, all kept exactly: the median is exact.
    let errors = errors(&result, &exact, 0.5, 100);
    assert_eq!(errors.mean, 0.0);
}

#[tokio::test]
async fn sql_without_group_by_and_errors_are_the_builtins() {
    let rows = rows(7, 5_000, 20);
    let table = table(&rows, 2, 512);
    let builtin = session(Arc::clone(&table), 2, false);
    let strata = session(table, 2, true);
    // Without GROUP BY: DataFusion's row accumulator, so the very same answer.
    let sql = "SELECT approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY x) AS p, \
               approx_percentile_cont(0.9, 50) WITHIN GROUP (ORDER BY i) AS q FROM t";
    let a = builtin.sql(sql).await.unwrap().collect().await.unwrap();
    let b = strata.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(a, b);
    // Invalid calls fail the same way.
    for agg in [
        "approx_percentile_cont(1.5) WITHIN GROUP (ORDER BY x)",
        "approx_percentile_cont(x) WITHIN GROUP (ORDER BY x)",
        "approx_percentile_cont(0.5, 0) WITHIN GROUP (ORDER BY x)",
        "approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY keep)",
        "approx_percentile_cont(0.5, g) WITHIN GROUP (ORDER BY x)",
    ] {
        let sql = format!("SELECT g, {agg} FROM t GROUP BY g");
        let run = |ctx: SessionContext| {
            let sql = sql.clone();
            async move {
                match ctx.sql(&sql).await {
                    Ok(df) => df.collect().await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        };
        let a = run(builtin.clone()).await.expect_err(agg).to_string();
        let b = run(strata.clone()).await.expect_err(agg).to_string();
        assert_eq!(a, b, "{agg}");
    }
}

#[test]
fn replaces_only_approx_percentile_cont() {
    let defaults = datafusion::execution::SessionStateDefaults::default_aggregate_functions();
    let ours = crate::functions::aggregate_functions();
    assert_eq!(
        defaults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        ours.iter().map(|f| f.name()).collect::<Vec<_>>()
    );
    for (default, ours) in defaults.iter().zip(&ours) {
        let replaced = ours.inner().is::<ApproxPercentileContGroups>();
        assert_eq!(replaced, default.name() == "approx_percentile_cont");
        if !replaced {
            assert!(Arc::ptr_eq(default.inner(), ours.inner()) || default == ours);
        } else {
            assert_eq!(default.aliases(), ours.aliases());
            assert_eq!(default.signature(), ours.signature());
            assert!(ours.supports_within_group_clause());
            assert_eq!(
                default.documentation().map(|d| &d.description),
                ours.documentation().map(|d| &d.description)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The accumulator itself, against DataFusion's row accumulator

/// Arguments of `approx_percentile_cont(x, percentile[, centroids])` over a nullable
/// Float64 `x`.
struct Args {
    schema: Schema,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    fields: Vec<FieldRef>,
}

impl Args {
    fn new(percentile: f64, centroids: Option<i64>) -> Self {
        let schema = Schema::new(vec![Field::new("x", DataType::Float64, true)]);
        let mut exprs = vec![col("x", &schema).unwrap(), lit(percentile)];
        let mut fields = vec![
            Arc::new(Field::new("x", DataType::Float64, true)),
            Arc::new(Field::new("p", DataType::Float64, false)),
        ];
        if let Some(c) = centroids {
            exprs.push(lit(c));
            fields.push(Arc::new(Field::new("c", DataType::Int64, false)));
        }
        Self {
            schema,
            exprs,
            fields,
        }
    }

    fn args(&self) -> AccumulatorArgs<'_> {
        AccumulatorArgs {
            return_field: Arc::new(Field::new("p", DataType::Float64, true)),
            schema: &self.schema,
            ignore_nulls: false,
            order_bys: &[],
            is_reversed: false,
            name: "approx_percentile_cont",
            is_distinct: false,
            exprs: &self.exprs,
            expr_fields: &self.fields,
        }
    }

    fn groups(&self) -> Box<dyn GroupsAccumulator> {
        ApproxPercentileContGroups::new()
            .create_groups_accumulator(self.args())
            .unwrap()
    }

    fn builtin(&self) -> Box<dyn Accumulator> {
        ApproxPercentileCont::new()
            .accumulator(self.args())
            .unwrap()
    }
}

/// `n` values per group for `groups` groups, interleaved; every 5th group gets none.
fn interleaved(seed: u64, groups: usize, n: usize) -> (Vec<usize>, Float64Array) {
    let mut rng = Rng::new(seed);
    let mut indices = Vec::new();
    let mut values = Vec::new();
    for _ in 0..n {
        for g in (0..groups).filter(|g| g % 5 != 4) {
            indices.push(g);
            values.push((rng.below(10) != 0).then(|| rng.unit() * (g + 1) as f64 * 100.0));
        }
    }
    (indices, values.into_iter().collect())
}

/// DataFusion's row accumulators fed the same rows, one per group (one batch each).
fn builtin_per_group(
    args: &Args,
    groups: usize,
    indices: &[usize],
    values: &Float64Array,
    filter: Option<&BooleanArray>,
) -> Vec<Box<dyn Accumulator>> {
    (0..groups)
        .map(|g| {
            let mut acc = args.builtin();
            let group: Float64Array = indices
                .iter()
                .enumerate()
                .filter(|&(row, &i)| {
                    i == g && filter.is_none_or(|f| f.is_valid(row) && f.value(row))
                })
                .map(|(row, _)| values.is_valid(row).then(|| values.value(row)))
                .collect();
            acc.update_batch(&[Arc::new(group) as ArrayRef]).unwrap();
            acc
        })
        .collect()
}

fn evaluate_all(accs: &mut [Box<dyn Accumulator>]) -> ArrayRef {
    ScalarValue::iter_to_array(accs.iter_mut().map(|a| a.evaluate().unwrap())).unwrap()
}

fn state_all(accs: &mut [Box<dyn Accumulator>]) -> Vec<ArrayRef> {
    let states: Vec<Vec<ScalarValue>> = accs.iter_mut().map(|a| a.state().unwrap()).collect();
    (0..6)
        .map(|c| ScalarValue::iter_to_array(states.iter().map(|s| s[c].clone())).unwrap())
        .collect()
}

#[test]
fn evaluate_and_state_equal_the_row_accumulator() {
    // Fewer values per group than a buffer holds: one sorted run per group, exactly what
    // one `update_batch` of the row accumulator does, so the digests are identical.
    for centroids in [None, Some(30)] {
        let args = Args::new(0.9, centroids);
        let (indices, values) = interleaved(11, 40, 300);
        let filter: BooleanArray = (0..values.len())
            .map(|i| (i % 7 != 0).then_some(i % 3 != 0))
            .collect();
        let values: ArrayRef = Arc::new(values);
        let mut groups = args.groups();
        // In several batches, with the filter.
        for start in (0..values.len()).step_by(1000) {
            let len = 1000.min(values.len() - start);
            groups
                .update_batch(
                    &[values.slice(start, len)],
                    &indices[start..start + len],
                    Some(&filter.slice(start, len)),
                    40,
                )
                .unwrap();
        }
        let mut reference = builtin_per_group(
            &args,
            40,
            &indices,
            values.as_primitive::<Float64Type>(),
            Some(&filter),
        );
        assert_eq!(
            groups.state(EmitTo::All).unwrap(),
            state_all(&mut reference)
        );

        let mut groups = args.groups();
        groups
            .update_batch(&[Arc::clone(&values)], &indices, Some(&filter), 40)
            .unwrap();
        let result = groups.evaluate(EmitTo::All).unwrap();
        assert_eq!(&result, &evaluate_all(&mut reference));
        // Groups without values are NULL.
        assert_eq!(result.null_count(), 8);
        assert!(result.is_null(4) && result.is_null(39) && result.is_valid(0));
    }
}

#[test]
fn emit_first_keeps_and_shifts_the_rest() {
    let args = Args::new(0.5, None);
    let (indices, values) = interleaved(12, 10, 50);
    let values: ArrayRef = Arc::new(values);
    let mut groups = args.groups();
    groups
        .update_batch(&[Arc::clone(&values)], &indices, None, 10)
        .unwrap();
    let mut reference = builtin_per_group(
        &args,
        10,
        &indices,
        values.as_primitive::<Float64Type>(),
        None,
    );

    // The first 3 groups, as values; the next 3, as state; then the rest (shifted by 6).
    assert_eq!(
        &groups.evaluate(EmitTo::First(3)).unwrap(),
        &evaluate_all(&mut reference[..3])
    );
    assert_eq!(
        groups.state(EmitTo::First(3)).unwrap(),
        state_all(&mut reference[3..6])
    );
    // More rows for the remaining groups (now 0..4) and a new group 4.
    let more = Float64Array::from(vec![Some(1e6), None, Some(-1.0), Some(7.0)]);
    groups
        .update_batch(&[Arc::new(more) as ArrayRef], &[0, 1, 3, 4], None, 5)
        .unwrap();
    let result = groups.evaluate(EmitTo::All).unwrap();
    let result = result.as_primitive::<Float64Type>();
    assert_eq!(result.len(), 5);
    let mut rest = reference.split_off(6);
    rest[0]
        .update_batch(&[Arc::new(Float64Array::from(vec![1e6])) as ArrayRef])
        .unwrap();
    rest[3]
        .update_batch(&[Arc::new(Float64Array::from(vec![-1.0])) as ArrayRef])
        .unwrap();
    let expected = evaluate_all(&mut rest);
    let expected = expected.as_primitive::<Float64Type>();
    // Group 0 got one more value: its digest was folded in two runs, so only close.
    for g in 0..4 {
        assert_eq!(result.is_valid(g), expected.is_valid(g), "group {g}");
    }
    // Groups 1 and 2 got nothing new, 3 (empty so far) and 4 (new) one value each.
    assert_eq!(result.value(1), expected.value(1));
    assert_eq!(result.value(2), expected.value(2));
    assert_eq!((result.value(3), expected.value(3)), (-1.0, -1.0));
    assert_eq!(result.value(4), 7.0);
    assert!((result.value(0) - expected.value(0)).abs() <= 0.05 * expected.value(0).abs());
    assert_eq!(groups.size(), args.groups().size());
}

#[test]
fn state_round_trips_with_the_row_accumulator() {
    let args = Args::new(0.99, None);
    let groups_n = 20;
    // Enough values that groups flush several buffers and compress.
    let (indices, values) = interleaved(13, groups_n, 5000);
    let values: ArrayRef = Arc::new(values);
    let exact: Vec<Vec<f64>> = (0..groups_n)
        .map(|g| {
            let mut v: Vec<f64> = indices
                .iter()
                .zip(values.as_primitive::<Float64Type>().iter())
                .filter_map(|(&i, v)| if i == g { v } else { None })
                .collect();
            v.sort_by(f64::total_cmp);
            v
        })
        .collect();
    let check = |result: &ArrayRef, what: &str| {
        let result = result.as_primitive::<Float64Type>();
        for (g, values) in exact.iter().enumerate() {
            if values.is_empty() {
                assert!(result.is_null(g), "{what}: group {g}");
            } else {
                let error = rank_error(values, 0.99, result.value(g));
                assert!(error <= 0.005, "{what}: group {g}: rank error {error}");
            }
        }
    };

    // Groups accumulator state (two halves, as two Partial partitions) → row accumulators.
    let half = values.len() / 2;
    let mut partial_a = args.groups();
    partial_a
        .update_batch(&[values.slice(0, half)], &indices[..half], None, groups_n)
        .unwrap();
    let mut partial_b = args.groups();
    partial_b
        .update_batch(
            &[values.slice(half, values.len() - half)],
            &indices[half..],
            None,
            groups_n,
        )
        .unwrap();
    let states = [
        partial_a.state(EmitTo::All).unwrap(),
        partial_b.state(EmitTo::All).unwrap(),
    ];
    let mut finals: Vec<Box<dyn Accumulator>> = (0..groups_n).map(|_| args.builtin()).collect();
    for state in &states {
        for (g, acc) in finals.iter_mut().enumerate() {
            let row: Vec<ArrayRef> = state.iter().map(|c| c.slice(g, 1)).collect();
            acc.merge_batch(&row).unwrap();
        }
    }
    check(&evaluate_all(&mut finals), "groups → row");

    // Row accumulator state → groups accumulator, in reverse group order, both halves.
    let mut final_groups = args.groups();
    for range in [0..half, half..values.len()] {
        let mut partials = builtin_per_group(
            &args,
            groups_n,
            &indices[range.clone()],
            &values
                .slice(range.start, range.len())
                .as_primitive::<Float64Type>()
                .clone(),
            None,
        );
        let state = state_all(&mut partials);
        let reversed: Vec<usize> = (0..groups_n).rev().collect();
        let reorder = UInt32Array::from_iter_values(reversed.iter().map(|&g| g as u32));
        let state: Vec<ArrayRef> = state
            .iter()
            .map(|c| arrow::compute::take(c, &reorder, None).unwrap())
            .collect();
        final_groups
            .merge_batch(&state, &reversed, groups_n)
            .unwrap();
    }
    check(&final_groups.evaluate(EmitTo::All).unwrap(), "row → groups");

    // And groups → groups.
    let mut final_groups = args.groups();
    for state in &states {
        let all: Vec<usize> = (0..groups_n).collect();
        final_groups.merge_batch(state, &all, groups_n).unwrap();
    }
    check(
        &final_groups.evaluate(EmitTo::All).unwrap(),
        "groups → groups",
    );
}

#[test]
fn convert_to_state_equals_row_accumulator_states() {
    let args = Args::new(0.5, Some(77));
    let values = Float64Array::from(vec![
        Some(1.5),
        None,
        Some(-0.0),
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
        Some(0.0),
        Some(-3.25),
        Some(1e300),
    ]);
    let filter = BooleanArray::from(vec![
        Some(true),
        Some(true),
        Some(true),
        Some(true),
        Some(true),
        Some(true),
        None,
        Some(false),
        Some(true),
    ]);
    let groups = args.groups();
    for filter in [None, Some(&filter)] {
        let ours = groups
            .convert_to_state(&[Arc::new(values.clone()) as ArrayRef], filter)
            .unwrap();
        let mut rows: Vec<Box<dyn Accumulator>> = (0..values.len())
            .map(|row| {
                let mut acc = args.builtin();
                if filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                    acc.update_batch(&[Arc::new(values.slice(row, 1)) as ArrayRef])
                        .unwrap();
                }
                acc
            })
            .collect();
        let theirs = state_all(&mut rows);
        assert_eq!(ours.len(), 6);
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.data_type(), b.data_type());
            assert_eq!(a.to_data().nulls(), b.to_data().nulls());
        }
        assert_eq!(&ours[0], &theirs[0], "max_size");
        let bits = |a: &ArrayRef| -> Vec<u64> {
            a.as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        for c in 1..5 {
            assert_eq!(bits(&ours[c]), bits(&theirs[c]), "column {c}");
        }
        let (a, b) = (ours[5].as_list::<i32>(), theirs[5].as_list::<i32>());
        assert_eq!(a.value_offsets(), b.value_offsets());
        assert_eq!(bits(a.values()), bits(b.values()));
    }
    assert!(
        groups
            .convert_to_state(
                &[Arc::new(Float64Array::from(Vec::<f64>::new())) as ArrayRef],
                None
            )
            .unwrap()
            .iter()
            .all(|c| c.is_empty())
    );
}

#[test]
fn size_counts_buffers_and_digests() {
    let args = Args::new(0.5, None);
    let mut groups = args.groups();
    let empty = groups.size();

    // One group, many values: the buffer never exceeds its bound.
    let mut rng = Rng::new(14);
    let mut peak = 0;
    for _ in 0..50 {
        let batch: Float64Array = (0..4096).map(|_| Some(rng.unit())).collect();
        groups
            .update_batch(&[Arc::new(batch) as ArrayRef], &[0; 4096], None, 1)
            .unwrap();
        peak = peak.max(groups.size());
    }
    assert!(peak >= MAX_BUFFERED * 8, "{peak}");
    assert!(peak <= MAX_BUFFERED * 8 + 16 * 1024, "{peak}");

    // 1000 groups, 100 values each: at least the values themselves.
    let indices: Vec<usize> = (0..100_000).map(|i| i % 1000).collect();
    let batch: Float64Array = (0..100_000).map(|i| Some(i as f64)).collect();
    groups
        .update_batch(&[Arc::new(batch) as ArrayRef], &indices, None, 1000)
        .unwrap();
    let full = groups.size();
    assert!(full >= 100_000 * 8, "{full}");
    assert!(full <= 1000 * (128 * 8 + 256) + 64 * 1024, "{full}");
    // Emitting groups releases what they held.
    groups.state(EmitTo::First(500)).unwrap();
    let half = groups.size();
    assert!(half < full * 6 / 10, "{half} of {full}");
    groups.evaluate(EmitTo::All).unwrap();
    assert_eq!(groups.size(), empty);
}

#[test]
fn buffers_shrink_as_groups_multiply() {
    assert_eq!(buffer_threshold(1), MAX_BUFFERED);
    assert_eq!(buffer_threshold(1000), MAX_BUFFERED);
    assert_eq!(buffer_threshold(100_000), 41.max(MIN_BUFFERED));
    assert_eq!(buffer_threshold(10_000_000), MIN_BUFFERED);
    // A million groups with full buffers hold 512 B each, a third of what a digest of
    // DataFusion's default 100 centroids takes.
    assert!(buffer_threshold(1_000_000) * 8 <= 1024);
}
