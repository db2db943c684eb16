//! SQL confinement: a query node only reads Strata tables.
//!
//! Refused with `PermissionDenied` before planning: any statement other than a query,
//! `EXPLAIN`, `SHOW`/`DESCRIBE`; `CREATE EXTERNAL TABLE`, `COPY`, DML and DDL (Strata's
//! `CREATE TABLE` and `DELETE FROM` are routed by the engine, see
//! [`parse_statement_kind`](crate::parse_statement_kind)); and table references that look
//! like files or URLs. As a second line, every plan is verified with DataFusion's
//! `SQLOptions` (no DDL, DML or session statements), the runtime's object-store registry
//! knows only the Strata store (no `file://`), and no dynamic file catalog or table
//! factory is installed.

use datafusion::common::TableReference;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::{Error, Result};
use crate::schema_provider::{CATALOG_NAME, SCHEMA_NAME};

const INFORMATION_SCHEMA: &str = "information_schema";

/// Refuse statements a query node must not run.
pub(crate) fn check_statement(stmt: &DFStatement) -> Result<()> {
    match stmt {
        DFStatement::Statement(s) => check_sql(s),
        DFStatement::Explain(e) => check_statement(&e.statement),
        DFStatement::CreateExternalTable(_) => Err(Error::PermissionDenied(
            "CREATE EXTERNAL TABLE is not allowed: Strata reads only its own tables; create one with CREATE TABLE"
                .into(),
        )),
        DFStatement::CopyTo(_) => Err(Error::PermissionDenied(
            "COPY is not allowed: export query results through the Flight SQL API instead".into(),
        )),
        DFStatement::Reset(_) => Err(Error::PermissionDenied("RESET is not allowed".into())),
    }
}

fn check_sql(s: &Statement) -> Result<()> {
    match s {
        Statement::Query(q) => {
            if let datafusion::sql::sqlparser::ast::SetExpr::Select(sel) = q.body.as_ref()
                && sel.into.is_some()
            {
                return Err(Error::PermissionDenied(
                    "SELECT ... INTO is not allowed".into(),
                ));
            }
            Ok(())
        }
        Statement::Explain { statement, .. } => check_sql(statement),
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. } => Ok(()),
        Statement::Insert(_) | Statement::Update(_) | Statement::Merge(_) => Err(
            Error::PermissionDenied("writes go through the ingest API, not SQL".into()),
        ),
        Statement::Delete(_) | Statement::CreateTable(_) => Err(Error::PermissionDenied(
            "DELETE and CREATE TABLE are handled by the Strata engine, not by the query path"
                .into(),
        )),
        other => Err(Error::PermissionDenied(format!(
            "only queries, EXPLAIN and SHOW are allowed, not `{}`",
            first_words(&other.to_string())
        ))),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Refuse references to files, URLs or other catalogs. Returns true if the query reads
/// `information_schema` (and so needs the list of tables).
/// The schema holding Strata's own views (`system.queries`).
pub(crate) const SYSTEM_SCHEMA: &str = "system";
/// Recent queries of the caller's tenant, with what each cost.
pub(crate) const QUERIES_TABLE: &str = "queries";

/// What a statement refers to beyond the tenant's tables.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct References {
    /// `information_schema` (the session must list every table).
    pub(crate) info_schema: bool,
    /// `system.queries`.
    pub(crate) system_queries: bool,
}

pub(crate) fn check_references(refs: &[TableReference]) -> Result<References> {
    let mut out = References::default();
    for r in refs {
        let table = r.table();
        if looks_like_path(table) {
            return Err(Error::PermissionDenied(format!(
                "`{table}` looks like a file or URL; only Strata tables can be queried"
            )));
        }
        if let Some(catalog) = r.catalog()
            && catalog != CATALOG_NAME
        {
            return Err(Error::PermissionDenied(format!(
                "catalog `{catalog}` is not available; tables live in `{CATALOG_NAME}.{SCHEMA_NAME}`"
            )));
        }
        match r.schema() {
            Some(INFORMATION_SCHEMA) => out.info_schema = true,
            Some(SYSTEM_SCHEMA) if table == QUERIES_TABLE => out.system_queries = true,
            Some(SYSTEM_SCHEMA) => {
                return Err(Error::PermissionDenied(format!(
                    "`{SYSTEM_SCHEMA}.{table}` does not exist; `{SYSTEM_SCHEMA}` has `{QUERIES_TABLE}`"
                )));
            }
            Some(SCHEMA_NAME) | None => {}
            Some(other) => {
                return Err(Error::PermissionDenied(format!(
                    "schema `{other}` is not available; tables live in `{SCHEMA_NAME}`"
                )));
            }
        }
    }
    Ok(out)
}

fn looks_like_path(name: &str) -> bool {
    name.contains('/')
        || name.contains('\\')
        || name.contains(':')
        || name.contains('.')
        || name.starts_with('~')
}
