//! Strata's logical rules (`rules::optimizer_rules`) against DataFusion without them: the same
//! SQL over the same in-memory tables must return the same rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

/// A `MemTable` that reports its row count (as Strata's tables do), so that the
/// aggregate-before-join rule can compare sides.
#[derive(Debug)]
struct Counted {
    inner: MemTable,
    rows: Option<usize>,
}

#[async_trait]
impl TableProvider for Counted {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
    fn statistics(&self) -> Option<Statistics> {
        let rows = self.rows?;
        let mut stats = Statistics::new_unknown(&self.inner.schema());
        stats.num_rows = Precision::Exact(rows);
        Some(stats)
    }
}

/// Splits `batch` into batches of at most `chunk` rows, over `parts` partitions.
fn partitions(batch: &RecordBatch, chunk: usize, parts: usize) -> Vec<Vec<RecordBatch>> {
    let mut out = vec![Vec::new(); parts];
    let mut offset = 0;
    let mut i = 0;
    while offset < batch.num_rows() {
        let len = chunk.min(batch.num_rows() - offset);
        out[i % parts].push(batch.slice(offset, len));
        offset += len;
        i += 1;
    }
    out
}

fn register(ctx: &SessionContext, name: &str, batch: RecordBatch, stats: bool) {
    let rows = batch.num_rows();
    let inner = MemTable::try_new(batch.schema(), partitions(&batch, 3, 2)).unwrap();
    let table = Counted {
        inner,
        rows: stats.then_some(rows),
    };
    ctx.register_table(name, Arc::new(table)).unwrap();
}

fn context(with_rules: bool) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(3)
        .with_batch_size(4);
    let mut builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config);
    if with_rules {
        for rule in crate::rules::optimizer_rules(&Default::default()) {
            builder = builder.with_optimizer_rule(rule);
        }
        builder = builder.with_aggregate_functions(crate::functions::aggregate_functions());
    }
    SessionContext::new_with_state(builder.build())
}

/// Rows as strings, sorted.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

/// `events`: (k, o, a, s) with NULL keys, NULL orders, ties and partitions of > 10 rows;
/// `big` (fact, 40 rows) and `dim` (4 rows, a duplicate and a NULL key).
fn tables(ctx: &SessionContext, stats: bool) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("o", DataType::Int64, true),
        Field::new("a", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let mut k = Vec::new();
    let mut o = Vec::new();
    let mut a = Vec::new();
    let mut s = Vec::new();
    for i in 0..30i64 {
        k.push(match i % 3 {
            0 => Some("x"),
            1 => Some("y"),
            _ => None,
        });
        o.push(if i % 7 == 3 { None } else { Some(i / 6) });
        a.push(if i % 5 == 4 { None } else { Some(i) });
        s.push(Some(format!("s{i:02}")));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(k)),
        Arc::new(Int64Array::from(o)),
        Arc::new(Int64Array::from(a)),
        Arc::new(StringArray::from(s)),
    ];
    register(
        ctx,
        "events",
        RecordBatch::try_new(schema, columns).unwrap(),
        stats,
    );

    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let mut key = Vec::new();
    let mut v = Vec::new();
    let mut f = Vec::new();
    let mut name = Vec::new();
    for i in 0..40i64 {
        key.push(match i % 5 {
            0 => Some("a"),
            1 => Some("b"),
            2 => Some("c"),
            3 => None,
            _ => Some("zz"), // in no dimension row
        });
        v.push(if i % 6 == 0 { None } else { Some(i) });
        f.push(Some(i as f64 / 4.0));
        name.push(Some(format!("n{}", i % 4)));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(key)),
        Arc::new(Int64Array::from(v)),
        Arc::new(Float64Array::from(f)),
        Arc::new(StringArray::from(name)),
    ];
    register(
        ctx,
        "big",
        RecordBatch::try_new(schema, columns).unwrap(),
        stats,
    );

    // Non-nullable columns, many ties in `o`.
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("o", DataType::Int64, false),
        Field::new("a", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
        Field::new("f", DataType::Float64, false),
    ]));
    let n = 200i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 4))),
        Arc::new(Int64Array::from_iter_values((0..n).map(|i| (i / 40) % 2))),
        Arc::new(Int64Array::from_iter_values(
            (0..n).map(|i| (i * 7919) % 101),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("r{i}")),
        )),
        Arc::new(Float64Array::from_iter_values(
            (0..n).map(|i| ((i * 31) % 97) as f64 / 3.0),
        )),
    ];
    register(
        ctx,
        "nn",
        RecordBatch::try_new(schema, columns).unwrap(),
        stats,
    );

    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("team", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            Some("b"),
            None,
        ])),
        Arc::new(StringArray::from(vec![
            Some("t1"),
            Some("t2"),
            Some("t3"),
            Some("t4"),
        ])),
    ];
    register(
        ctx,
        "dim",
        RecordBatch::try_new(schema, columns).unwrap(),
        stats,
    );
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(rows(&batches))
}

async fn plan(ctx: &SessionContext, sql: &str) -> String {
    let df = ctx.sql(sql).await.unwrap();
    format!("{}", df.into_optimized_plan().unwrap().display_indent())
}

/// Runs `sql` with and without the rules and asserts the same rows. Returns the optimized
/// plan with the rules, for checks that a rule did (or did not) fire.
async fn same(sql: &str) -> String {
    let (on, off) = (context(true), context(false));
    tables(&on, true);
    tables(&off, true);
    let expected = run(&off, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let plan = plan(&on, sql).await;
    let got = run(&on, sql)
        .await
        .unwrap_or_else(|e| panic!("with the rules: {sql}: {e}\n{plan}"));
    assert_eq!(got, expected, "{sql}\n{plan}");
    plan
}

const LAST_ROW: &str = "SELECT k, o, a, s FROM (SELECT *, row_number() OVER \
                        (PARTITION BY k ORDER BY a DESC NULLS LAST) AS rn FROM events) WHERE";

/// Only `rn = 1` (and equivalents) may become an aggregate: not literals that merely cast to
/// 1 or 2, nor comparisons of rn cast to a string or a boolean.
#[tokio::test]
async fn last_row_only_for_an_exact_first_row_filter() {
    for (predicate, rewritten) in [
        ("rn = 1.5", false),
        ("rn < 2.5", false),
        ("CAST(rn AS VARCHAR) = '01'", false),
        ("CAST(rn AS VARCHAR) < '2'", false),
        ("CAST(rn AS BOOLEAN) <= true", false),
        ("rn = 1", true),
        ("rn = 1.0", true),
        ("rn = '1'", true),
        ("CAST(rn AS INT) = 1", true),
        ("1 = rn", true),
        ("rn <= 1", true),
        ("rn < 2", true),
        ("rn = 1 AND a > 20", true),
        ("rn = 1 AND rn = 2", false),
        ("rn = 1 OR a = 3", false),
        ("rn = 2", false),
    ] {
        let plan = same(&format!("{LAST_ROW} {predicate}")).await;
        assert_eq!(
            plan.contains("first_value"),
            rewritten,
            "{predicate}\n{plan}"
        );
    }
}

/// The aggregate's first_value is nullable; non-nullable columns must stay non-nullable, or
/// physical planning fails above the rewrite (here under a UNION's distinct).
#[tokio::test]
async fn last_row_keeps_columns_non_nullable() {
    for sql in [
        "SELECT k, a FROM (SELECT k, a, row_number() OVER (PARTITION BY k ORDER BY a DESC, s) \
         AS rn FROM nn) WHERE rn = 1 UNION SELECT k, a FROM nn WHERE a = 0",
        "SELECT k, a, s, f FROM (SELECT k, a, s, f, row_number() OVER (PARTITION BY k ORDER BY \
         a DESC, s) AS rn FROM nn) WHERE rn = 1 UNION SELECT k, a, s, f FROM nn WHERE a = 0",
        "SELECT k, count(*) FROM (SELECT k, a, row_number() OVER (PARTITION BY k ORDER BY a \
         DESC, s) AS rn FROM nn) WHERE rn = 1 GROUP BY k UNION SELECT 9, 9",
    ] {
        same(sql).await;
    }
}

/// Orders (NULLS FIRST/LAST, ASC/DESC, expressions), NULL partition keys, qualifiers, rn in
/// later expressions, other windows, UNION inputs and joins. Every order ends in the unique
/// `s`, so both forms pick the same row.
#[tokio::test]
async fn last_row_matches_the_window() {
    let w = |order: &str| format!("row_number() OVER (PARTITION BY k ORDER BY {order}) AS rn");
    for (sql, rewritten) in [
        (format!("SELECT k, o, a, s, rn FROM (SELECT *, {} FROM events) WHERE rn = 1", w("o DESC, s")), true),
        (format!("SELECT k, o, a, s, rn FROM (SELECT *, {} FROM events) WHERE rn = 1", w("o ASC NULLS LAST, s DESC")), true),
        (format!("SELECT k, o, a, s, rn FROM (SELECT *, {} FROM events) WHERE rn = 1", w("o ASC NULLS FIRST, s DESC")), true),
        (format!("SELECT k, o, a, s, rn FROM (SELECT *, {} FROM events) WHERE rn = 1", w("o DESC NULLS LAST, s")), true),
        (format!("SELECT k, a, rn FROM (SELECT k, a, s, {} FROM events) WHERE rn = 1", w("a + o DESC NULLS LAST, s")), true),
        (format!("SELECT k, a, rn * 10 AS r FROM (SELECT k, a, {} FROM events) WHERE rn = 1 ORDER BY rn", w("a DESC NULLS LAST, s")), true),
        ("SELECT t.k, t.a, t.rn FROM (SELECT e.k, e.a, row_number() OVER (PARTITION BY e.k ORDER BY e.a DESC NULLS LAST, e.s) AS rn FROM events e) t WHERE t.rn = 1".to_string(), true),
        (format!("SELECT k, a, rn, c FROM (SELECT *, {}, count(*) OVER (PARTITION BY k) AS c FROM events) WHERE rn = 1", w("a DESC NULLS LAST, s")), false),
        (format!("SELECT k, a, rn, r2 FROM (SELECT *, {}, row_number() OVER (PARTITION BY k ORDER BY a ASC NULLS LAST, s) AS r2 FROM events) WHERE rn = 1", w("a DESC NULLS LAST, s")), false),
        (format!("SELECT k, a, rn, r2 FROM (SELECT *, {}, lag(a) OVER (PARTITION BY k ORDER BY a DESC NULLS LAST, s) AS r2 FROM events) WHERE r2 = 1", w("a DESC NULLS LAST, s")), false),
        ("SELECT kk, a, rn FROM (SELECT upper(k) AS kk, a, row_number() OVER (PARTITION BY upper(k) ORDER BY a DESC NULLS LAST, s) AS rn FROM events) WHERE rn = 1".to_string(), false),
        (format!("SELECT k, a, rn FROM (SELECT k, a, {} FROM events UNION ALL SELECT k, a, row_number() OVER (PARTITION BY k ORDER BY a ASC NULLS LAST, s) AS rn FROM events) WHERE rn = 1", w("a DESC NULLS LAST, s")), true),
        (format!("SELECT x.k, x.a, d.team FROM (SELECT k, a, {} FROM events) x JOIN dim d ON x.rn = 1 AND d.key = 'a'", w("a DESC NULLS LAST, s")), true),
        (format!("SELECT m FROM (SELECT k, max(a) AS m FROM (SELECT k, a, {} FROM events) WHERE rn = 1 GROUP BY k)", w("a DESC NULLS LAST, s")), true),
        (format!("SELECT k, a FROM (SELECT k, a, {} FROM events WHERE a > 5) WHERE rn = 1 AND k = 'x'", w("a DESC NULLS LAST, s")), true),
        ("SELECT k, a FROM events QUALIFY row_number() OVER (PARTITION BY k ORDER BY a DESC NULLS LAST, s) = 1".to_string(), true),
    ] {
        let plan = same(&sql).await;
        assert_eq!(plan.contains("first_value"), rewritten, "{sql}\n{plan}");
    }
}

/// With ties in the order every output row is still one input row (not columns of
/// different tied rows).
#[tokio::test]
async fn last_row_ties_give_whole_rows() {
    let sql = "SELECT count(*) FROM (SELECT k, o, a, s, f, b FROM (SELECT *, a % 2 = 0 AS b, \
               row_number() OVER (PARTITION BY k ORDER BY o DESC) AS rn FROM nn) WHERE rn = 1) r \
               WHERE NOT EXISTS (SELECT 1 FROM nn WHERE nn.k = r.k AND nn.o = r.o AND \
               nn.a = r.a AND nn.s = r.s AND nn.f = r.f AND (nn.a % 2 = 0) = r.b)";
    assert!(same(sql).await.contains("first_value"));
}

/// A count is 0 (not NULL) when the join has no row, and stays non-nullable.
#[tokio::test]
async fn eager_count_of_an_empty_join_is_zero() {
    for sql in [
        "SELECT count(b.v), sum(b.v), count(*) FROM big b JOIN dim d ON b.key = d.key \
         WHERE d.team = 'nope'",
        "SELECT c + 1 FROM (SELECT count(b.v) AS c FROM big b JOIN dim d ON b.key = d.key \
         WHERE d.team = 'none')",
        "SELECT d.team, count(b.v) AS c FROM big b JOIN dim d ON b.key = d.key \
         GROUP BY d.team UNION SELECT 'x', 0",
    ] {
        assert!(same(sql).await.contains("__strata_partial_"), "{sql}");
    }
}

/// NULL join keys (fact and dimension), a duplicated dimension key (fan-out), fact keys
/// with no dimension row, grouping by either side or the join key, USING, IS NOT DISTINCT
/// FROM, the dimension on the left, nesting.
#[tokio::test]
async fn eager_matches_the_join() {
    for (sql, rewritten) in [
        (
            "SELECT d.team, count(*), sum(b.v), min(b.name), max(b.f), count(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team",
            true,
        ),
        (
            "SELECT count(b.v), sum(b.v) FROM big b JOIN dim d ON b.key = d.key",
            true,
        ),
        (
            "SELECT b.key, count(b.v), sum(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY b.key",
            true,
        ),
        (
            "SELECT b.name, d.team, count(b.v), min(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY b.name, d.team",
            true,
        ),
        (
            "SELECT key, count(b.v) FROM big b JOIN dim d USING (key) GROUP BY key",
            true,
        ),
        (
            "SELECT d.team, count(b.v) FROM big b JOIN dim d ON b.key IS NOT DISTINCT FROM d.key GROUP BY d.team",
            true,
        ),
        (
            "SELECT d.team, count(b.v) FROM dim d JOIN big b ON b.key = d.key GROUP BY d.team",
            true,
        ),
        (
            "SELECT d.team, count(b.v) FROM big b, dim d WHERE b.key = d.key GROUP BY d.team",
            true,
        ),
        (
            "SELECT team, max(c) FROM (SELECT d.team, b.name, count(b.v) AS c FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team, b.name) GROUP BY team",
            true,
        ),
        (
            "SELECT d.team, count(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team HAVING count(b.v) > 3",
            true,
        ),
        (
            "SELECT d.team, sum(b.v * 2) + 1, max(b.v) - min(b.v), count(1), sum(2) FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team",
            true,
        ),
        (
            "SELECT d.team, sum(b.v) FROM big b JOIN (SELECT key, team FROM dim WHERE team <> 't4') d ON b.key = d.key GROUP BY d.team",
            true,
        ),
        (
            "SELECT d.team, count(b.v) FROM big b JOIN dim d ON upper(b.key) = upper(d.key) GROUP BY d.team",
            false,
        ),
        (
            "SELECT d.team, sum(b.v) FILTER (WHERE b.v > 10), count(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team",
            false,
        ),
        (
            "SELECT d.team, count(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY ROLLUP(d.team)",
            false,
        ),
        (
            "SELECT d.team, count(b.v), avg(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team",
            false,
        ),
    ] {
        let plan = same(sql).await;
        assert_eq!(
            plan.contains("__strata_partial_"),
            rewritten,
            "{sql}\n{plan}"
        );
        // Applied once: one partial aggregate however many optimizer passes ran.
        assert!(
            plan.matches("__strata_partial_0 ").count() <= 2,
            "{sql}\n{plan}"
        );
    }
}

/// Without row counts the rule keeps the plan.
#[tokio::test]
async fn eager_needs_statistics() {
    let ctx = context(true);
    tables(&ctx, false);
    let sql = "SELECT d.team, count(b.v) FROM big b JOIN dim d ON b.key = d.key GROUP BY d.team";
    assert!(!plan(&ctx, sql).await.contains("__strata_partial_"));
}

/// Groups of at most 100 values are exact in the t-digest: the groups accumulator must give
/// the built-in's answers (NULL-only, filtered-out, NaN and Float32 inputs, centroids).
#[tokio::test]
async fn percentile_groups_match_the_builtin_on_small_groups() {
    for sql in [
        "SELECT k, approx_percentile_cont(f, 0.5) FROM nn GROUP BY k",
        "SELECT k, approx_percentile_cont(a, 0.3) FROM nn GROUP BY k",
        "SELECT k, approx_percentile_cont(f, 0.5) FILTER (WHERE a > 1000) FROM nn GROUP BY k",
        "SELECT k, approx_percentile_cont(f, 0.5) FILTER (WHERE a > 50) FROM nn GROUP BY k",
        "SELECT k, approx_percentile_cont(v, 0.5) FROM (SELECT key AS k, CAST(v AS DOUBLE) AS v FROM big) GROUP BY k",
        "SELECT k, approx_percentile_cont(f / 0.0, 0.5) FROM nn GROUP BY k",
        "SELECT k, approx_percentile_cont(CAST(f AS FLOAT), 0.25) FROM nn GROUP BY k",
        "SELECT s, approx_percentile_cont(f, 0.5) FROM nn GROUP BY s",
        "SELECT a, approx_percentile_cont(f, 0.5), approx_percentile_cont(f, 0.5, 2) FROM nn GROUP BY a",
    ] {
        same(sql).await;
    }
}
