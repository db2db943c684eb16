//! Routing help for the engine: what kind of statement a SQL text is, with `CREATE TABLE`
//! and `DELETE FROM` parsed into plain values (the query path refuses both; the engine
//! handles them against the catalog).
//!
//! # `CREATE TABLE` syntax
//! ```sql
//! CREATE TABLE [IF NOT EXISTS] logs (
//!     ts TIMESTAMP(6) NOT NULL,   -- TIMESTAMP(0|3|6|9): s, ms, µs, ns; plain TIMESTAMP is ns
//!     host VARCHAR,               -- string types map to Arrow Utf8
//!     status INT, latency_ms DOUBLE, ...
//! ) WITH (
//!     time_column = 'ts',                  -- pruning, ordering and retention
//!     shard_key = 'host',
//!     num_shards = 8,
//!     retention = '7d',                    -- humantime: 90s, 12h, 7d, 2w, ...
//!     bloom_columns = 'request_id,trace_id'
//! )
//! ```
//! Option keys are case-insensitive; values may be quoted or bare. Unknown keys are kept in
//! [`CreateTableSpec::options`] for the engine to accept or refuse.
//!
//! Types: `TIMESTAMP(p) WITH TIME ZONE` (or `TIMESTAMPTZ`) is a UTC timestamp
//! (`Timestamp(unit, "UTC")`, as pyarrow's `timestamp[us, tz=UTC]`); `BINARY(n)`,
//! `VARBINARY`, `BYTEA` and `BLOB` are variable-length binary.
//!
//! # Other DDL
//! ```sql
//! DROP TABLE [IF EXISTS] logs                   -- gone at once; objects collected by GC
//! TRUNCATE [TABLE] logs                         -- every row written before it is deleted
//! ALTER TABLE logs ADD COLUMN [IF NOT EXISTS] region VARCHAR   -- always nullable
//! ALTER TABLE logs SET (bloom_columns = 'request_id', retention = '30d')
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{TableReference, plan_err};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::planner::ContextProvider;
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::planner::{ParserOptions, SqlToRel};
use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, ColumnDef, CreateTableOptions, DataType as SqlDataType,
    Expr as SqlExpr, FromTable, ObjectName, ObjectType, SqlOption, Statement, TableFactor, Value,
};

use crate::error::{Error, Result};

/// A column of a `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
}

impl ColumnSpec {
    pub fn to_field(&self) -> Field {
        Field::new(&self.name, self.data_type.clone(), self.nullable)
    }
}

/// A parsed `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateTableSpec {
    /// Lower-cased table name.
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnSpec>,
    pub time_column: Option<String>,
    pub shard_key: Option<String>,
    pub num_shards: Option<u32>,
    pub retention: Option<Duration>,
    pub bloom_columns: Vec<String>,
    /// Every `WITH (...)` option, keys lower-cased, values unquoted.
    pub options: BTreeMap<String, String>,
}

/// What a SQL text asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// A query (or EXPLAIN / SHOW): run it with [`QueryEngine::execute`](crate::QueryEngine::execute).
    Query,
    CreateTable(CreateTableSpec),
    /// `DELETE FROM table [WHERE predicate]`; `predicate_sql` is `None` without a WHERE.
    Delete {
        table: String,
        predicate_sql: Option<String>,
    },
    /// `DROP TABLE [IF EXISTS] table`.
    DropTable {
        table: String,
        if_exists: bool,
    },
    /// `TRUNCATE [TABLE] table`: a delete of every row written before it.
    Truncate {
        table: String,
    },
    /// `ALTER TABLE table ADD COLUMN ... / SET (...)`.
    AlterTable {
        table: String,
        if_exists: bool,
        changes: Vec<AlterChange>,
    },
    /// Anything else (the query path will refuse it).
    Other,
}

impl StatementKind {
    /// The table a DDL statement changes (`None` for queries and others).
    pub fn table(&self) -> Option<&str> {
        match self {
            StatementKind::CreateTable(spec) => Some(&spec.name),
            StatementKind::Delete { table, .. }
            | StatementKind::DropTable { table, .. }
            | StatementKind::Truncate { table }
            | StatementKind::AlterTable { table, .. } => Some(table),
            StatementKind::Query | StatementKind::Other => None,
        }
    }
}

/// One change of an `ALTER TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterChange {
    /// A new column (nullable: rows written before it have none).
    AddColumn {
        column: ColumnSpec,
        if_not_exists: bool,
    },
    /// A table option, key lower-cased, value unquoted (the same keys as `CREATE TABLE`).
    SetOption { key: String, value: String },
}

/// Parse one statement and say what it is. Syntax errors are `InvalidArgument` with the
/// parser's position.
pub fn parse_statement_kind(sql: &str) -> Result<StatementKind> {
    let mut statements = DFParser::parse_sql(sql).map_err(Error::from)?;
    if statements.len() != 1 {
        return Err(Error::InvalidArgument(format!(
            "expected exactly one SQL statement, found {}",
            statements.len()
        )));
    }
    let Some(stmt) = statements.pop_front() else {
        return Err(Error::InvalidArgument("empty SQL".into()));
    };
    Ok(match stmt {
        DFStatement::Statement(s) => match *s {
            Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. } => StatementKind::Query,
            Statement::CreateTable(ct) => StatementKind::CreateTable(create_table(ct)?),
            Statement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => {
                let [name] = names.as_slice() else {
                    return Err(Error::InvalidArgument(
                        "DROP TABLE takes exactly one table".into(),
                    ));
                };
                StatementKind::DropTable {
                    table: object_name(name),
                    if_exists,
                }
            }
            Statement::Truncate(t) => {
                let [target] = t.table_names.as_slice() else {
                    return Err(Error::InvalidArgument(
                        "TRUNCATE takes exactly one table".into(),
                    ));
                };
                if t.partitions.is_some() {
                    return Err(Error::InvalidArgument(
                        "TRUNCATE ... PARTITION is not supported".into(),
                    ));
                }
                StatementKind::Truncate {
                    table: object_name(&target.name),
                }
            }
            Statement::AlterTable(a) => alter_table(a)?,
            Statement::Delete(d) => {
                let tables = match &d.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                let [only] = tables.as_slice() else {
                    return Err(Error::InvalidArgument(
                        "DELETE takes exactly one table".into(),
                    ));
                };
                if !only.joins.is_empty()
                    || d.using.is_some()
                    || d.limit.is_some()
                    || !d.order_by.is_empty()
                {
                    return Err(Error::InvalidArgument(
                        "DELETE supports only `DELETE FROM table [WHERE predicate]`".into(),
                    ));
                }
                let TableFactor::Table { name, .. } = &only.relation else {
                    return Err(Error::InvalidArgument("DELETE needs a table name".into()));
                };
                StatementKind::Delete {
                    table: object_name(name),
                    predicate_sql: d.selection.as_ref().map(ToString::to_string),
                }
            }
            _ => StatementKind::Other,
        },
        DFStatement::Explain(_) => StatementKind::Query,
        _ => StatementKind::Other,
    })
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_ascii_lowercase()
            }
        })
        .unwrap_or_else(|| name.to_string())
}

/// Arrow columns of SQL column definitions.
fn column_specs(mut columns: Vec<ColumnDef>) -> Result<Vec<ColumnSpec>> {
    for c in &mut columns {
        // Every binary spelling is variable-length binary (a 16-byte id is a BINARY(16)).
        if matches!(
            c.data_type,
            SqlDataType::Binary(_) | SqlDataType::Varbinary(_) | SqlDataType::Blob(_)
        ) {
            c.data_type = SqlDataType::Bytea;
        }
    }
    let provider = NoTables::default();
    let planner = SqlToRel::new_with_options(
        &provider,
        ParserOptions {
            map_string_types_to_utf8view: false,
            ..ParserOptions::default()
        },
    );
    let schema = planner.build_schema(columns).map_err(Error::from)?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| ColumnSpec {
            name: f.name().clone(),
            data_type: f.data_type().clone(),
            nullable: f.is_nullable(),
        })
        .collect())
}

fn alter_table(a: AlterTable) -> Result<StatementKind> {
    let mut changes = Vec::new();
    for op in a.operations {
        match op {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                column_position: None,
                ..
            } => {
                let [mut column] = <[ColumnSpec; 1]>::try_from(column_specs(vec![column_def])?)
                    .map_err(|_| Error::Internal("one column expected".into()))?;
                if !column.nullable {
                    return Err(Error::InvalidArgument(format!(
                        "column `{}`: an added column must be nullable (rows written before it have no value)",
                        column.name
                    )));
                }
                column.nullable = true;
                changes.push(AlterChange::AddColumn {
                    column,
                    if_not_exists,
                });
            }
            AlterTableOperation::SetOptionsParens { options }
            | AlterTableOperation::SetTblProperties {
                table_properties: options,
            } => {
                for (key, value) in key_values(options)? {
                    changes.push(AlterChange::SetOption { key, value });
                }
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "ALTER TABLE supports `ADD COLUMN name type` and `SET (key = value, ...)`, not `{other}`"
                )));
            }
        }
    }
    if changes.is_empty() {
        return Err(Error::InvalidArgument("ALTER TABLE without changes".into()));
    }
    Ok(StatementKind::AlterTable {
        table: object_name(&a.name),
        if_exists: a.if_exists,
        changes,
    })
}

/// `key = value` options, keys lower-cased, values unquoted.
fn key_values(options: Vec<SqlOption>) -> Result<Vec<(String, String)>> {
    options
        .into_iter()
        .map(|o| match o {
            SqlOption::KeyValue { key, value } => {
                Ok((key.value.to_ascii_lowercase(), option_value(&value)))
            }
            other => Err(Error::InvalidArgument(format!(
                "unsupported table option `{other}`; use key = value"
            ))),
        })
        .collect()
}

fn create_table(ct: datafusion::sql::sqlparser::ast::CreateTable) -> Result<CreateTableSpec> {
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(Error::InvalidArgument(
            "CREATE TABLE ... AS / LIKE / CLONE is not supported; list the columns".into(),
        ));
    }
    let mut spec = CreateTableSpec {
        name: object_name(&ct.name),
        if_not_exists: ct.if_not_exists,
        columns: column_specs(ct.columns)?,
        ..CreateTableSpec::default()
    };
    let options = match ct.table_options {
        CreateTableOptions::None => vec![],
        CreateTableOptions::With(o)
        | CreateTableOptions::Options(o)
        | CreateTableOptions::Plain(o)
        | CreateTableOptions::TableProperties(o) => o,
    };
    spec.options.extend(key_values(options)?);
    for (k, v) in &spec.options {
        match k.as_str() {
            "time_column" => spec.time_column = Some(v.clone()),
            "shard_key" => spec.shard_key = Some(v.clone()),
            "num_shards" => {
                spec.num_shards = Some(v.parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "num_shards must be a positive integer, not `{v}`"
                    ))
                })?)
            }
            "retention" => spec.retention = Some(parse_retention(v)?),
            "bloom_columns" => {
                spec.bloom_columns = v
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn option_value(v: &SqlExpr) -> String {
    match v {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// `'7d'`, `'12h'`, `'90s'`, `'2w'` (humantime), or a number of seconds.
pub fn parse_retention(v: &str) -> Result<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v.trim()).map_err(|e| {
        Error::InvalidArgument(format!(
            "retention `{v}` is not a duration like '7d' or '12h': {e}"
        ))
    })
}

/// Just enough of a planner context to convert column types. `WITH TIME ZONE` means UTC.
#[derive(Debug)]
struct NoTables {
    options: ConfigOptions,
}

impl Default for NoTables {
    fn default() -> Self {
        let mut options = ConfigOptions::default();
        options.execution.time_zone = Some("UTC".to_string());
        Self { options }
    }
}

impl ContextProvider for NoTables {
    fn get_table_source(&self, name: TableReference) -> DFResult<Arc<dyn TableSource>> {
        plan_err!("no table `{name}` here")
    }
    fn get_function_meta(&self, _name: &str) -> Option<Arc<ScalarUDF>> {
        None
    }
    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, _name: &str) -> Option<Arc<AggregateUDF>> {
        None
    }
    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }
    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        &self.options
    }
    fn udf_names(&self) -> Vec<String> {
        vec![]
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }
    fn udaf_names(&self) -> Vec<String> {
        vec![]
    }
    fn udwf_names(&self) -> Vec<String> {
        vec![]
    }
}

#[cfg(test)]
mod tests;

/// Rewrite positional `?` placeholders as `$1`, `$2`, ... (DataFusion's form), leaving `?`
/// inside string literals, quoted identifiers and comments alone. Text without `?` is
/// returned as is.
pub fn number_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                let mut prev = ' ';
                for d in chars.by_ref() {
                    out.push(d);
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            '?' => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            other => out.push(other),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod placeholder_tests {
    use super::number_placeholders;

    #[test]
    fn numbers_question_marks_outside_literals() {
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c = ? -- ?\n"),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND c = $2 -- ?\n"
        );
        assert_eq!(
            number_placeholders("SELECT \"?\" /* ? */, ?"),
            "SELECT \"?\" /* ? */, $1"
        );
    }
}
