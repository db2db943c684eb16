//! Flight SQL metadata: server info, catalogs, schemas, tables and table types.
//!
//! Strata shows one catalog (`strata`) with one schema (`public`); its tables are the ones
//! the backend lists for the caller's tenant. Filters in the commands (catalog, schema and
//! table-name patterns, table types) are applied by arrow-flight's builders.

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, ProstMessageExt, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, SupportedSqlGrammar,
};
use arrow_flight::{FlightDescriptor, FlightInfo};
use prost::Message;
use std::sync::Arc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::StrataFlightService;
use super::encode::{DataStream, encode_batch, flight_info};
use crate::auth::Scope;
use crate::status::{internal, to_status};

/// The one catalog.
pub(crate) const CATALOG: &str = "strata";
/// The one schema.
pub(crate) const DB_SCHEMA: &str = "public";
/// Table types reported by `GetTableTypes` (tables are reported as `TABLE`).
pub(crate) const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

const WHAT: &str = "reading metadata";

impl StrataFlightService {
    fn sql_info_data(&self) -> Result<&SqlInfoData, Status> {
        if let Some(data) = self.sql_info.get() {
            return Ok(data);
        }
        let data = build_sql_info(self.config.prepared_ttl_secs)?;
        Ok(self.sql_info.get_or_init(|| data))
    }

    pub(super) fn sql_info_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        self.admit(request.metadata(), Scope::Read, WHAT)?;
        let schema = self.sql_info_data()?.schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    pub(super) fn sql_info_stream(
        &self,
        query: CommandGetSqlInfo,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        self.admit(metadata, Scope::Read, WHAT)?;
        let batch = query
            .into_builder(self.sql_info_data()?)
            .build()
            .map_err(|e| internal(format!("cannot build SqlInfo: {e}")))?;
        Ok(encode_batch(batch))
    }

    pub(super) fn catalogs_info(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        self.admit(request.metadata(), Scope::Read, WHAT)?;
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    pub(super) fn catalogs_stream(
        &self,
        query: CommandGetCatalogs,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        self.admit(metadata, Scope::Read, WHAT)?;
        let mut builder: GetCatalogsBuilder = query.into_builder();
        builder.append(CATALOG);
        let batch = builder.build().map_err(build_error)?;
        Ok(encode_batch(batch))
    }

    pub(super) fn schemas_info(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        self.admit(request.metadata(), Scope::Read, WHAT)?;
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    pub(super) fn schemas_stream(
        &self,
        query: CommandGetDbSchemas,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        self.admit(metadata, Scope::Read, WHAT)?;
        let mut builder: GetDbSchemasBuilder = query.into_builder();
        builder.append(CATALOG, DB_SCHEMA);
        let batch = builder.build().map_err(build_error)?;
        Ok(encode_batch(batch))
    }

    pub(super) fn tables_info(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        self.admit(request.metadata(), Scope::Read, WHAT)?;
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    pub(super) async fn tables_stream(
        &self,
        query: CommandGetTables,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        let ctx = self.admit(metadata, Scope::Read, WHAT)?;
        let tables = self
            .query
            .list_tables(&ctx.caller)
            .await
            .map_err(to_status)?;
        let mut builder: GetTablesBuilder = query.into_builder();
        for (name, schema) in &tables {
            builder
                .append(CATALOG, DB_SCHEMA, name, TABLE_TYPES[0], schema)
                .map_err(build_error)?;
        }
        let batch = builder.build().map_err(build_error)?;
        Ok(encode_batch(batch))
    }

    pub(super) fn table_types_info(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        self.admit(request.metadata(), Scope::Read, WHAT)?;
        flight_info(
            &table_types_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    pub(super) fn table_types_stream(
        &self,
        _query: CommandGetTableTypes,
        metadata: &MetadataMap,
    ) -> Result<DataStream, Status> {
        self.admit(metadata, Scope::Read, WHAT)?;
        let batch = RecordBatch::try_new(
            Arc::new(table_types_schema()),
            vec![Arc::new(StringArray::from_iter_values(TABLE_TYPES))],
        )
        .map_err(build_error)?;
        Ok(encode_batch(batch))
    }
}

fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}

fn build_error(e: impl std::fmt::Display) -> Status {
    internal(format!("cannot build a metadata result: {e}"))
}

/// What `GetSqlInfo` reports.
fn build_sql_info(prepared_ttl_secs: u64) -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Strata");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    let ttl_ms = i32::try_from(prepared_ttl_secs.saturating_mul(1000)).unwrap_or(i32::MAX);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, ttl_ms);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        (1 << SupportedSqlGrammar::SqlMinimumGrammar as i32)
            | (1 << SupportedSqlGrammar::SqlCoreGrammar as i32),
    );
    b.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        // Bit 0: ANSI92_ENTRY_SQL (the enum is not re-exported by arrow-flight).
        1_i32,
    );
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.build()
        .map_err(|e| internal(format!("cannot build SqlInfo: {e}")))
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, UInt32Array};

    use super::*;

    #[test]
    fn sql_info_names_the_server() {
        let data = build_sql_info(600).expect("builds");
        let batch = data
            .record_batch([SqlInfo::FlightSqlServerName as u32])
            .expect("batch");
        assert_eq!(batch.num_rows(), 1);
        let names = batch
            .column(0)
            .as_primitive::<arrow::datatypes::UInt32Type>();
        assert_eq!(
            names,
            &UInt32Array::from(vec![SqlInfo::FlightSqlServerName as u32])
        );
        let all = data.record_batch(Vec::<u32>::new()).expect("all");
        assert!(all.num_rows() > 20);
    }
}
