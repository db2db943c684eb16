//! Flight SQL: statements, prepared statements, metadata.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::Schema;
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::IpcMessage;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use strata_gateway::GatewayConfig;

use crate::fakes::logs_schema;
use crate::harness::{TestServer, code_of, fetch, rows};

fn column_strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let col = b
                .column_by_name(column)
                .expect("column")
                .as_string::<i32>()
                .clone();
            (0..col.len()).map(move |i| col.value(i).to_string())
        })
        .collect()
}

#[tokio::test]
async fn statement_query_streams_the_result() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;

    let info = client
        .execute("SELECT * FROM logs".to_string(), None)
        .await
        .expect("get flight info");
    assert_eq!(
        info.clone().try_decode_schema().expect("schema"),
        *logs_schema()
    );
    // The ticket carries the statement, never a tenant.
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    assert!(String::from_utf8_lossy(&ticket.ticket).contains("SELECT * FROM logs"));

    let batches = fetch(&mut client, info).await;
    assert_eq!(rows(&batches), 4);
    assert_eq!(batches.len(), 2, "streamed batch by batch");
    assert_eq!(
        column_strings(&batches, "level"),
        ["INFO", "ERROR", "INFO", "ERROR"]
    );
    // Default tenant when auth is off.
    assert!(
        server
            .query
            .seen
            .lock()
            .iter()
            .all(|r| r.caller.tenant.is_none())
    );
    assert!(server.requests("DoGet", "OK") >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn backend_errors_keep_their_code() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;
    let err = client
        .execute("SELECT * FROM nope".to_string(), None)
        .await
        .expect_err("missing table");
    assert_eq!(code_of(&err), tonic::Code::NotFound, "{err}");
    assert!(err.to_string().contains("table `nope` not found"), "{err}");
    assert_eq!(server.requests("GetFlightInfo", "NOT_FOUND"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn prepared_statement_with_a_parameter() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;

    let mut stmt = client
        .prepare("SELECT * FROM logs WHERE level = $1".to_string(), None)
        .await
        .expect("prepare");
    assert_eq!(stmt.dataset_schema().expect("schema"), &*logs_schema());
    let params =
        RecordBatch::try_from_iter([("$1", Arc::new(StringArray::from(vec!["ERROR"])) as _)])
            .expect("params");
    stmt.set_parameters(params).expect("set");
    let info = stmt.execute().await.expect("execute");
    let batches = fetch(&mut client, info).await;
    assert_eq!(column_strings(&batches, "level"), ["ERROR", "ERROR"]);

    let executed: Vec<_> = server
        .query
        .seen
        .lock()
        .iter()
        .filter(|r| r.params.is_some() && r.sql.contains("$1"))
        .map(|r| r.params.clone())
        .collect();
    assert!(
        !executed.is_empty(),
        "the backend received the bound parameter"
    );
    stmt.close().await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn statement_update_returns_the_count() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;
    let affected = client
        .execute_update("DELETE FROM logs WHERE id = 1".to_string(), None)
        .await
        .expect("update");
    assert_eq!(affected, 3);
    let affected = client
        .execute_update("SELECT * FROM logs".to_string(), None)
        .await
        .expect("no count column");
    assert_eq!(affected, 0);
    server.stop().await;
}

#[tokio::test]
async fn get_tables_with_schemas_and_filters() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("lo%".to_string()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("get tables");
    let batches = fetch(&mut client, info).await;
    assert_eq!(column_strings(&batches, "table_name"), ["logs"]);
    assert_eq!(column_strings(&batches, "catalog_name"), ["strata"]);
    assert_eq!(column_strings(&batches, "db_schema_name"), ["public"]);
    assert_eq!(column_strings(&batches, "table_type"), ["TABLE"]);
    let schema_bytes = batches[0]
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_binary::<i32>()
        .value(0)
        .to_vec();
    let schema = Schema::try_from(IpcMessage(schema_bytes.into())).expect("ipc schema");
    assert_eq!(schema, *logs_schema());

    // No filter, no schema column: every table of the (default) tenant.
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("strata".to_string()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["TABLE".to_string()],
            include_schema: false,
        })
        .await
        .expect("get tables");
    let batches = fetch(&mut client, info).await;
    assert_eq!(column_strings(&batches, "table_name"), ["logs", "services"]);
    assert!(batches[0].column_by_name("table_schema").is_none());

    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("other".to_string()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .expect("get tables");
    assert_eq!(
        rows(&fetch(&mut client, info).await),
        0,
        "catalog filter honoured"
    );
    server.stop().await;
}

#[tokio::test]
async fn sql_info_catalogs_schemas_and_table_types() {
    let server = TestServer::start(GatewayConfig::default()).await;
    let mut client = server.sql_client(None).await;

    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .expect("sql info");
    let batches = fetch(&mut client, info).await;
    assert_eq!(rows(&batches), 2);
    let text = pretty_format_batches(&batches).expect("format").to_string();
    assert!(text.contains("Strata"), "{text}");

    let info = client.get_catalogs().await.expect("catalogs");
    assert_eq!(
        column_strings(&fetch(&mut client, info).await, "catalog_name"),
        ["strata"]
    );

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("pub%".to_string()),
        })
        .await
        .expect("schemas");
    assert_eq!(
        column_strings(&fetch(&mut client, info).await, "db_schema_name"),
        ["public"]
    );

    let info = client.get_table_types().await.expect("table types");
    assert_eq!(
        column_strings(&fetch(&mut client, info).await, "table_type"),
        ["TABLE", "VIEW"]
    );
    server.stop().await;
}
