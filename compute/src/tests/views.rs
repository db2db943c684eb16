//! Strings are scanned as views and answered as plain strings ([`crate::views`]).

use arrow::array::{Array, AsArray, RecordBatch, StringViewArray};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use std::sync::Arc;

use crate::QueryContext;
use crate::testing::{Cell, Fixture, query, test_config};

/// Results, `GetFlightInfo` schemas and placeholder types use `Utf8`, whatever the scan read.
#[tokio::test]
async fn answers_use_plain_strings() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let sql = "SELECT host, array_agg(level) AS levels, count(*) AS n FROM logs GROUP BY host";
    let result = engine
        .execute(sql, &QueryContext::default())
        .await
        .expect("run");
    let schema = Arc::clone(&result.schema);
    let batches = result.collect().await.expect("collect");
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert!(
        matches!(schema.field(1).data_type(), DataType::List(f) if f.data_type() == &DataType::Utf8),
        "{schema:?}"
    );
    for b in &batches {
        assert_eq!(b.schema(), schema);
    }
    let planned = engine.plan_schema(sql, None).await.expect("plan schema");
    assert_eq!(planned, schema);

    let with_param = "SELECT count(*) AS n FROM logs WHERE host = $1";
    assert_eq!(
        engine.parameter_types(with_param).await.expect("types"),
        vec![Some(DataType::Utf8)]
    );
    let host = f.rows[0].host.clone();
    let want = f.rows.iter().filter(|r| r.host == host).count();
    let ctx = QueryContext {
        params: Some(vec![ScalarValue::Utf8(Some(host))]),
        ..Default::default()
    };
    let counted = engine
        .execute(with_param, &ctx)
        .await
        .expect("bound")
        .collect()
        .await
        .expect("collect");
    let n = counted[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(n.value(0), want as i64);
}

/// The order of an `ORDER BY` over string columns survives the cast to plain strings.
#[tokio::test]
async fn ordered_answers_stay_ordered() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let got = query(
        &engine,
        "SELECT host, request_id FROM logs ORDER BY request_id",
    )
    .await;
    let mut rows: Vec<_> = f.rows.iter().collect();
    rows.sort_by_key(|r| r.request_id);
    let want: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| vec![r.host.as_str().into(), r.request_id.into()])
        .collect();
    assert_eq!(got, want);
}

/// A view batch that references far more bytes than its values use is compacted; one that
/// uses its buffers is passed through.
#[test]
fn wasteful_view_buffers_are_compacted() {
    let long: Vec<String> = (0..4096)
        .map(|i| format!("a value longer than twelve {i}"))
        .collect();
    let full = StringViewArray::from_iter_values(long.iter());
    let held = |a: &StringViewArray| a.data_buffers().iter().map(|b| b.capacity()).sum::<usize>();
    let batch = RecordBatch::try_from_iter([("s", Arc::new(full.clone()) as _)]).expect("batch");
    let kept = crate::views::compact_views(&batch).expect("compact");
    assert!(
        Arc::ptr_eq(kept.column(0), batch.column(0)),
        "nothing to compact"
    );

    let few = full.slice(0, 16);
    let batch = RecordBatch::try_from_iter([("s", Arc::new(few.clone()) as _)]).expect("batch");
    let compacted = crate::views::compact_views(&batch).expect("compact");
    let out = compacted.column(0).as_string_view();
    assert!(
        held(out) * 20 < held(&few),
        "{} vs {}",
        held(out),
        held(&few)
    );
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        few.iter().collect::<Vec<_>>()
    );
    assert_eq!(out.len(), few.len());
}
