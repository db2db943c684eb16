use std::time::Duration;

use arrow::datatypes::{DataType, TimeUnit};

use super::{AlterChange, ColumnSpec, StatementKind, parse_statement_kind};
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
        parse_statement_kind("DROP TABLE IF EXISTS logs").expect("parse"),
        StatementKind::DropTable {
            table: "logs".into(),
            if_exists: true
        }
    );
    assert_eq!(
        parse_statement_kind("DESCRIBE logs").expect("parse"),
        StatementKind::Query
    );
    let e = parse_statement_kind("CREATE TABLE t (a INT) WITH (retention = 'forever')")
        .expect_err("bad retention");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = parse_statement_kind("SELEC 1").expect_err("syntax");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("Line: 1"), "{e}");
}

/// Types as real data has them: a zoned timestamp keeps its zone (UTC), binary ids are binary.
#[test]
fn zoned_timestamps_and_binary() {
    let sql = "CREATE TABLE logs (ts TIMESTAMP(6) WITH TIME ZONE NOT NULL, t2 TIMESTAMPTZ, \
               id BINARY(16), b VARBINARY, c BYTEA, n TIMESTAMP(3))";
    let StatementKind::CreateTable(t) = parse_statement_kind(sql).expect("parse") else {
        panic!("not a create table");
    };
    let types: Vec<&DataType> = t.columns.iter().map(|c| &c.data_type).collect();
    let utc = Some("UTC".into());
    assert_eq!(
        types,
        vec![
            &DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            &DataType::Timestamp(TimeUnit::Nanosecond, utc),
            &DataType::Binary,
            &DataType::Binary,
            &DataType::Binary,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        ]
    );
}

#[test]
fn truncate_and_alter_table() {
    assert_eq!(
        parse_statement_kind("TRUNCATE TABLE Logs").expect("parse"),
        StatementKind::Truncate {
            table: "logs".into()
        }
    );
    assert_eq!(
        parse_statement_kind("TRUNCATE logs").expect("parse"),
        StatementKind::Truncate {
            table: "logs".into()
        }
    );
    assert_eq!(
        parse_statement_kind("ALTER TABLE logs ADD COLUMN IF NOT EXISTS region VARCHAR")
            .expect("parse"),
        StatementKind::AlterTable {
            table: "logs".into(),
            if_exists: false,
            changes: vec![AlterChange::AddColumn {
                column: ColumnSpec {
                    name: "region".into(),
                    data_type: DataType::Utf8,
                    nullable: true
                },
                if_not_exists: true
            }]
        }
    );
    assert_eq!(
        parse_statement_kind(
            "ALTER TABLE IF EXISTS logs SET (bloom_columns = 'request_id', RETENTION = '30d')"
        )
        .expect("parse"),
        StatementKind::AlterTable {
            table: "logs".into(),
            if_exists: true,
            changes: vec![
                AlterChange::SetOption {
                    key: "bloom_columns".into(),
                    value: "request_id".into()
                },
                AlterChange::SetOption {
                    key: "retention".into(),
                    value: "30d".into()
                }
            ]
        }
    );
    for bad in [
        "ALTER TABLE logs ADD COLUMN region VARCHAR NOT NULL",
        "ALTER TABLE logs DROP COLUMN host",
        "ALTER TABLE logs RENAME TO other",
    ] {
        let e = parse_statement_kind(bad).expect_err(bad);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
    }
}
