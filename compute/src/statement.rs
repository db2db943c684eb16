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
    CreateTableOptions, Expr as SqlExpr, FromTable, ObjectName, SqlOption, Statement, TableFactor,
    Value,
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
    /// Anything else (the query path will refuse it).
    Other,
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

fn create_table(ct: datafusion::sql::sqlparser::ast::CreateTable) -> Result<CreateTableSpec> {
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(Error::InvalidArgument(
            "CREATE TABLE ... AS / LIKE / CLONE is not supported; list the columns".into(),
        ));
    }
    let provider = NoTables::default();
    let planner = SqlToRel::new_with_options(
        &provider,
        ParserOptions {
            map_string_types_to_utf8view: false,
            ..ParserOptions::default()
        },
    );
    let schema = planner.build_schema(ct.columns).map_err(Error::from)?;
    let mut spec = CreateTableSpec {
        name: object_name(&ct.name),
        if_not_exists: ct.if_not_exists,
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnSpec {
                name: f.name().clone(),
                data_type: f.data_type().clone(),
                nullable: f.is_nullable(),
            })
            .collect(),
        ..CreateTableSpec::default()
    };
    let options = match ct.table_options {
        CreateTableOptions::None => vec![],
        CreateTableOptions::With(o)
        | CreateTableOptions::Options(o)
        | CreateTableOptions::Plain(o)
        | CreateTableOptions::TableProperties(o) => o,
    };
    for o in options {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(Error::InvalidArgument(format!(
                "unsupported table option `{o}`; use key = value"
            )));
        };
        spec.options
            .insert(key.value.to_ascii_lowercase(), option_value(&value));
    }
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
fn parse_retention(v: &str) -> Result<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v.trim()).map_err(|e| {
        Error::InvalidArgument(format!(
            "retention `{v}` is not a duration like '7d' or '12h': {e}"
        ))
    })
}

/// Just enough of a planner context to convert column types.
#[derive(Debug, Default)]
struct NoTables {
    options: ConfigOptions,
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
