use std::time::Duration;

use arrow::datatypes::{DataType, TimeUnit};

use super::{StatementKind, parse_statement_kind};
use crate::ErrorKind;

#[test]
fn create_table_with_options() {
    let sql = "CREATE TABLE IF NOT EXISTS Logs (
        ts TIMESTAMP(6) NOT NULL, host VARCHAR, status INT, latency DOUBLE, id BIGINT UNSIGNED
    ) WITH (time_column = 'ts', SHARD_KEY = host, num_shards = 8, retention = '7d', bloom_columns = 'id, host')";
    let StatementKind::CreateTable(t) = parse_statement_kind(sql).expect("parse") else {
        panic!("not a create table");
    };
    assert_eq!(t.name, "logs");
    assert!(t.if_not_exists);
    let cols: Vec<(&str, &DataType, bool)> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), &c.data_type, c.nullable))
        .collect();
    assert_eq!(
        cols,
        vec![
            (
                "ts",
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                false
            ),
            ("host", &DataType::Utf8, true),
            ("status", &DataType::Int32, true),
            ("latency", &DataType::Float64, true),
            ("id", &DataType::UInt64, true),
        ]
    );
    assert_eq!(t.time_column.as_deref(), Some("ts"));
    assert_eq!(t.shard_key.as_deref(), Some("host"));
    assert_eq!(t.num_shards, Some(8));
    assert_eq!(t.retention, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(t.bloom_columns, ["id", "host"]);
}

#[test]
fn delete_query_and_others() {
    assert_eq!(
        parse_statement_kind(
            "DELETE FROM logs WHERE level = 'DEBUG' AND ts < now() - INTERVAL '1 day'"
        )
        .expect("parse"),
        StatementKind::Delete {
            table: "logs".into(),
            predicate_sql: Some("level = 'DEBUG' AND ts < now() - INTERVAL '1 day'".into()),
        }
    );
    assert_eq!(
        parse_statement_kind("DELETE FROM logs").expect("parse"),
        StatementKind::Delete {
            table: "logs".into(),
            predicate_sql: None
        }
    );
    assert_eq!(
        parse_statement_kind("SELECT 1").expect("parse"),
        StatementKind::Query
    );
    assert_eq!(
        parse_statement_kind("EXPLAIN SELECT 1").expect("parse"),
        StatementKind::Query
    );
    assert_eq!(
        parse_statement_kind("SHOW TABLES").expect("parse"),
        StatementKind::Query
    );
    assert_eq!(
        parse_statement_kind("DROP TABLE logs").expect("parse"),
        StatementKind::Other
    );
    let e = parse_statement_kind("CREATE TABLE t (a INT) WITH (retention = 'forever')")
        .expect_err("bad retention");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = parse_statement_kind("SELEC 1").expect_err("syntax");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("Line: 1"), "{e}");
}
