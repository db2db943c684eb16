//! What SQL may do, how errors are classified, and the engine's resource bounds.

use std::time::Duration;

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use crate::testing::{Cell, Fixture, query, query_err, test_config};
use crate::{ErrorKind, QueryConfig, QueryContext};

#[tokio::test]
async fn refused_statements_are_permission_denied() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    for sql in [
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp/x.parquet'",
        "COPY logs TO '/tmp/out.parquet'",
        "COPY (SELECT 1) TO 'file:///tmp/out.csv'",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/hosts'",
        "SELECT * FROM \"data.parquet\"",
        "SELECT * FROM 's3://bucket/key.parquet'",
        "INSERT INTO logs (host) VALUES ('x')",
        "UPDATE logs SET host = 'x'",
        "DELETE FROM logs WHERE host = 'x'",
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE logs",
        "SET datafusion.execution.batch_size = 1",
        "SELECT 1 INTO t2",
        "EXPLAIN COPY logs TO '/tmp/x.csv'",
        "SELECT * FROM other_catalog.public.logs",
    ] {
        let e = query_err(&engine, sql).await;
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{sql}: {e}");
    }
}

#[tokio::test]
async fn user_mistakes_are_invalid_argument_with_position() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let e = query_err(&engine, "SELEC host FROM logs").await;
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("Line: 1, Column: 1"), "{e}");
    let e = query_err(&engine, "SELECT host FROM logs WHERE host = = 'x'").await;
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("Line: 1, Column: 36"), "{e}");
    for sql in [
        "SELECT nope FROM logs",
        "SELECT * FROM missing_table",
        "SELECT host + 1 FROM logs",
        "SELECT 1; SELECT 2",
    ] {
        let e = query_err(&engine, sql).await;
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{sql}: {e}");
    }
}

#[tokio::test]
async fn show_tables_information_schema_and_explain_work() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let got = query(
        &engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(
        got,
        vec![vec![Cell::from("logs")], vec![Cell::from("services")]]
    );
    let got = query(&engine, "SHOW TABLES").await;
    assert!(
        got.iter().any(|r| r.contains(&Cell::from("logs"))),
        "{got:?}"
    );
    let got = query(&engine, "SHOW COLUMNS FROM services").await;
    assert_eq!(got.len(), 3);
    let got = query(
        &engine,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'logs'",
    )
    .await;
    assert_eq!(
        got,
        vec![vec![Cell::from(13usize)]],
        "no hidden _offset column"
    );
    let plan = query(
        &engine,
        "EXPLAIN SELECT ts FROM logs WHERE host = 'h001' ORDER BY ts DESC LIMIT 3",
    )
    .await;
    let text = format!("{plan:?}");
    assert!(text.contains("DataSourceExec"), "{text}");
    let got = query(&engine, "EXPLAIN ANALYZE SELECT count(*) FROM logs").await;
    assert!(!got.is_empty());
    let tables = engine.list_tables().await.expect("list");
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["logs", "services"]);
    assert!(tables[0].1.field_with_name("_offset").is_err());
}

#[tokio::test]
async fn parameters_and_plan_schema() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let sql = "SELECT host, count(*) AS c FROM logs WHERE status = $1 AND level = $2 GROUP BY host";
    let schema = engine.plan_schema(sql, None).await.expect("schema");
    assert_eq!(schema.field(0).name(), "host");
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    let types = engine.parameter_types(sql).await.expect("types");
    assert_eq!(types, vec![Some(DataType::Int32), Some(DataType::Utf8)]);
    let ctx = QueryContext {
        params: Some(vec![
            ScalarValue::Int32(Some(500)),
            ScalarValue::Utf8(Some("ERROR".into())),
        ]),
        ..QueryContext::default()
    };
    let batches = engine
        .execute(
            "SELECT count(*) FROM logs WHERE status = $1 AND level = $2",
            &ctx,
        )
        .await
        .expect("execute")
        .collect()
        .await
        .expect("collect");
    let expected = f
        .rows
        .iter()
        .filter(|r| r.status == 500 && r.level == "ERROR")
        .count();
    assert_eq!(
        crate::testing::cells(&batches),
        vec![vec![Cell::from(expected)]]
    );
}

#[tokio::test]
async fn a_query_over_its_memory_limit_is_resource_exhausted() {
    let f = Fixture::new().await;
    let engine = f
        .engine(QueryConfig {
            memory_limit_bytes: 256 << 10,
            ..test_config()
        })
        .await;
    let e = query_err(&engine, "SELECT message, ts FROM logs ORDER BY message, ts").await;
    assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}");
    // Small queries still run under the same limit.
    let got = query(&engine, "SELECT count(*) FROM logs").await;
    assert_eq!(got, vec![vec![Cell::from(f.rows.len())]]);
}

#[tokio::test]
async fn admission_and_deadlines() {
    let f = Fixture::new().await;
    let engine = f
        .engine(QueryConfig {
            max_concurrent_queries: 1,
            admission_wait: Duration::from_millis(50),
            ..test_config()
        })
        .await;
    let held = engine
        .execute("SELECT * FROM logs", &QueryContext::default())
        .await
        .expect("first");
    let e = query_err(&engine, "SELECT 1").await;
    assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}");
    drop(held);
    assert_eq!(query(&engine, "SELECT 1").await, vec![vec![Cell::I(1)]]);

    let ctx = QueryContext {
        timeout: Some(Duration::from_millis(100)),
        ..QueryContext::default()
    };
    let e = match engine
        .execute(
            "SELECT count(*) FROM generate_series(1, 10000000000) t(x) WHERE x % 7 = 3",
            &ctx,
        )
        .await
    {
        Err(e) => e,
        Ok(r) => r.collect().await.expect_err("must time out"),
    };
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
}
