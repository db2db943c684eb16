//! The Arrow Flight SQL service: SQL queries, prepared statements, metadata, ingest over
//! plain Flight `DoPut`, and log reads over plain Flight `DoGet`.
//!
//! [`StrataFlightService`] implements arrow-flight's [`FlightSqlService`] over a
//! [`QueryBackend`] and an [`IngestBackend`]. [`FlightFront`] is what the server serves: it
//! wraps the service to time every call ([`GrpcMetrics`]) and to route what the Flight SQL
//! dispatcher cannot (JSON descriptors and tickets).
//!
//! Every call is authenticated ([`crate::auth`]), checked for the scope it needs (reads for
//! queries, metadata and log reads; writes for ingest and statements that change state),
//! and counted against the tenant's request quota ([`crate::quota`]). The caller's tenant is
//! passed to the backend, which enforces isolation.
//!
//! | Client call | Handled in |
//! |---|---|
//! | `GetFlightInfo(CommandStatementQuery)` → `DoGet(TicketStatementQuery)` | `flight/sql.rs` |
//! | `DoPut(CommandStatementUpdate)` | `flight/sql.rs` |
//! | `DoAction(CreatePreparedStatement / ClosePreparedStatement)`, `DoPut(CommandPreparedStatement*)` | `flight/sql.rs`, `flight/prepared.rs` |
//! | `GetSqlInfo`, `GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes` | `flight/catalog.rs` |
//! | `DoPut` with a PATH descriptor `[table]`, a JSON CMD, or `CommandStatementIngest` | `flight/ingest.rs` |
//! | `DoGet` with a JSON `{"log": …}` ticket; `DoAction("strata.health")` | `flight/log.rs` |

mod catalog;
mod classify;
mod context;
mod encode;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
mod limits;
mod log;
mod metrics;
mod prepared;
mod sql;
mod web;

pub(crate) use context::grpc_timeout;
pub use encode::COST_METADATA_KEY;
pub(crate) use sql::statement_ticket;
pub use web::{SqlAnswer, WebApi};

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::SqlInfoData;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

pub use front::FlightFront;
pub use ingest::{DURABILITY_HEADER, PRODUCER_ID_HEADER, SEQUENCE_HEADER};
pub use log::HEALTH_ACTION;
pub use metrics::{GRPC_REQUEST_DURATION_SECONDS, GRPC_REQUESTS_TOTAL, GrpcMetrics};

use crate::auth::{Authenticator, Scope};
use crate::backend::{IngestBackend, QueryBackend};
use crate::quota::Quotas;
use crate::status::internal;
use prepared::PreparedStatements;

/// Flight service settings. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightConfig {
    /// Largest ingest request (`DoPut`), in bytes, on the wire and decoded. A larger request
    /// is refused with INVALID_ARGUMENT before anything is stored. Default: 64 MiB.
    pub max_ingest_bytes: usize,
    /// Largest set of bound parameters for one prepared statement. Default: 1 MiB.
    pub max_param_bytes: usize,
    /// Most prepared statements held in memory. Default: 10,000.
    pub prepared_max_entries: usize,
    /// Memory for prepared statements (SQL and bound parameters). Default: 256 MiB.
    pub prepared_max_bytes: usize,
    /// Idle seconds after which a prepared statement's parameters are forgotten. Default: 600.
    pub prepared_ttl_secs: u64,
    /// Longest a statement may run, passed to the backend (a shorter client `grpc-timeout`
    /// wins). Default: none.
    pub query_timeout_secs: Option<u64>,
    /// Rows a log read returns when its ticket sets no `max_rows`. Default: 100,000.
    pub log_default_max_rows: usize,
    /// Log tails (`follow: true`) one tenant may hold open at once; more are refused with
    /// RESOURCE_EXHAUSTED. Default: 64.
    pub max_log_tails_per_tenant: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            max_ingest_bytes: 64 << 20,
            max_param_bytes: 1 << 20,
            prepared_max_entries: 10_000,
            prepared_max_bytes: 256 << 20,
            prepared_ttl_secs: 600,
            query_timeout_secs: None,
            log_default_max_rows: 100_000,
            max_log_tails_per_tenant: 64,
        }
    }
}

impl FlightConfig {
    fn query_timeout(&self) -> Option<Duration> {
        self.query_timeout_secs.map(Duration::from_secs)
    }
}

/// Arrow Flight SQL over the Strata backends.
pub struct StrataFlightService {
    query: Arc<dyn QueryBackend>,
    ingest: Arc<dyn IngestBackend>,
    auth: Arc<Authenticator>,
    quotas: Arc<Quotas>,
    config: FlightConfig,
    prepared: PreparedStatements,
    sql_info: OnceLock<SqlInfoData>,
    /// Open log tails per tenant.
    tails:
        parking_lot::Mutex<std::collections::HashMap<Option<String>, Arc<tokio::sync::Semaphore>>>,
}

impl std::fmt::Debug for StrataFlightService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataFlightService")
            .field("auth", &self.auth)
            .field("quotas", &self.quotas)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StrataFlightService {
    /// A service with default settings, auth disabled and no quotas.
    pub fn new(query: Arc<dyn QueryBackend>, ingest: Arc<dyn IngestBackend>) -> Self {
        let config = FlightConfig::default();
        Self {
            query,
            ingest,
            auth: Arc::new(Authenticator::disabled()),
            quotas: Arc::new(Quotas::unlimited()),
            prepared: prepared_map(&config),
            config,
            sql_info: OnceLock::new(),
            tails: parking_lot::Mutex::default(),
        }
    }

    /// Replaces the settings. Default: [`FlightConfig::default`].
    pub fn with_config(mut self, config: FlightConfig) -> Self {
        self.prepared = prepared_map(&config);
        self.config = config;
        self
    }

    /// Checks tokens with `auth`. Default: auth disabled.
    pub fn with_authenticator(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// Enforces `quotas`. Default: unlimited.
    pub fn with_quotas(mut self, quotas: Arc<Quotas>) -> Self {
        self.quotas = quotas;
        self
    }

    /// The settings in use.
    pub fn config(&self) -> &FlightConfig {
        &self.config
    }
}

fn prepared_map(config: &FlightConfig) -> PreparedStatements {
    PreparedStatements::new(
        config.prepared_max_entries,
        config.prepared_max_bytes,
        Duration::from_secs(config.prepared_ttl_secs),
    )
}

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type DoGetStream = <StrataFlightService as FlightService>::DoGetStream;
type DoPutStream = <StrataFlightService as FlightService>::DoPutStream;
type DoActionStream = <StrataFlightService as FlightService>::DoActionStream;

#[tonic::async_trait]
impl FlightSqlService for StrataFlightService {
    type FlightService = StrataFlightService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxedStream<HandshakeResponse>>, Status> {
        let (principal, bearer) = self.auth.handshake(request.metadata())?;
        self.admit_principal(&principal, request.metadata())?;
        let header = MetadataValue::try_from(bearer.as_str())
            .map_err(|_| internal("the token cannot be sent back as a header"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<BoxedStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    // --- statements ---

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.statement_info(query, request).await.map(Response::new)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.statement_stream(ticket, request.metadata())
            .await
            .map(Response::new)
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.statement_update(command, request.metadata()).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (metadata, _, stream) = request.into_parts();
        self.statement_ingest(command, &metadata, stream.boxed())
            .await
    }

    // --- prepared statements ---

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.create_prepared(query, request.metadata()).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let (metadata, _, stream) = request.into_parts();
        self.bind_parameters(query, &metadata, stream.boxed()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.prepared_info(query, request).await.map(Response::new)
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.prepared_stream(query, request.metadata())
            .await
            .map(Response::new)
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (metadata, _, stream) = request.into_parts();
        self.prepared_update(query, &metadata, stream.boxed()).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.close_prepared(query, request.metadata())
    }

    // --- metadata ---

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.sql_info_info(query, request).map(Response::new)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.sql_info_stream(query, request.metadata())
            .map(Response::new)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalogs_info(query, request).map(Response::new)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.catalogs_stream(query, request.metadata())
            .map(Response::new)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.schemas_info(query, request).map(Response::new)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.schemas_stream(query, request.metadata())
            .map(Response::new)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tables_info(query, request).map(Response::new)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tables_stream(query, request.metadata())
            .await
            .map(Response::new)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.table_types_info(query, request).map(Response::new)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.table_types_stream(query, request.metadata())
            .map(Response::new)
    }

    // --- plain Flight: ingest, log reads, health ---

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> Result<Response<DoPutStream>, Status> {
        let descriptor = request
            .get_mut()
            .peek()
            .await
            .and_then(|first| first.as_ref().ok())
            .and_then(|first| first.flight_descriptor.clone());
        let Some(descriptor) = descriptor else {
            return Err(ingest::missing_descriptor());
        };
        let (metadata, _, stream) = request.into_parts();
        self.put(descriptor, &metadata, stream.boxed()).await
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        if log::is_json(&request.get_ref().ticket) {
            let ticket = request.get_ref().ticket.clone();
            return self
                .log_stream(&ticket, request.metadata())
                .await
                .map(Response::new);
        }
        Err(crate::status::invalid_argument(format!(
            "unknown ticket type `{}`: use a ticket from GetFlightInfo or a JSON log ticket \
             {{\"log\": {{\"table\": …, \"shard\": …}}}}",
            message.type_url
        )))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<DoActionStream>, Status> {
        self.custom_action(request).map(Response::new)
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(log::health_action_type())])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The scope a statement needs and how to name it in a PERMISSION_DENIED message.
fn statement_scope(sql: &str) -> (Scope, &'static str) {
    match classify::required_scope(sql) {
        Scope::Read => (Scope::Read, "running a query"),
        _ => (Scope::Write, "a statement that changes data or schema"),
    }
}
