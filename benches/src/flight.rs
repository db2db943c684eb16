//! A small Flight / Flight SQL client for the benchmark: queries (`GetFlightInfo` +
//! `DoGet`), statements, ingest (`DoPut` with a PATH descriptor) and the health action.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, FlightData, FlightDescriptor};
use futures::{StreamExt, TryStreamExt};
use tonic::transport::{Channel, Endpoint};

use crate::Result;

/// The action every Strata gRPC server answers cheaply (an empty round trip).
pub const HEALTH_ACTION: &str = "strata.health";

/// A connection to a Strata gateway (or compute node).
#[derive(Debug, Clone)]
pub struct FlightClient {
    sql: FlightSqlServiceClient<Channel>,
    url: String,
}

impl FlightClient {
    /// Connect to `url` (`http://host:port`).
    pub async fn connect(url: &str) -> Result<Self> {
        let channel = Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(Self {
            sql: FlightSqlServiceClient::new_from_inner(inner),
            url: url.to_string(),
        })
    }

    /// The URL this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Send a bearer token with every call.
    pub fn set_token(&mut self, token: &str) {
        self.sql.set_token(token.to_string());
    }

    /// Run a query and materialise every batch of every endpoint.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.query_with_cost(sql).await?.0)
    }

    /// Run a query, materialise its batches, and return what the server said it cost (the
    /// `strata_cost` JSON in the last message's app_metadata), if it said.
    pub async fn query_with_cost(
        &mut self,
        sql: &str,
    ) -> Result<(Vec<RecordBatch>, Option<serde_json::Value>)> {
        let info = self
            .sql
            .execute(sql.to_string(), None)
            .await
            .map_err(|e| format!("query failed: {e}\n  SQL: {sql}"))?;
        let mut out = Vec::new();
        let mut cost = None;
        for ep in info.endpoint {
            let Some(ticket) = ep.ticket else { continue };
            let mut decoder = self
                .sql
                .do_get(ticket)
                .await
                .map_err(|e| format!("DoGet failed: {e}\n  SQL: {sql}"))?
                .into_inner();
            while let Some(d) = decoder.next().await {
                let d = d.map_err(|e| format!("reading results failed: {e}\n  SQL: {sql}"))?;
                if !d.inner.app_metadata.is_empty()
                    && let Ok(mut v) =
                        serde_json::from_slice::<serde_json::Value>(&d.inner.app_metadata)
                    && let Some(c) = v.get_mut("strata_cost")
                {
                    cost = Some(c.take());
                }
                if let arrow_flight::decode::DecodedPayload::RecordBatch(b) = d.payload {
                    out.push(b);
                }
            }
        }
        Ok((out, cost))
    }

    /// Run a statement (DDL / DML) and return the affected row count.
    pub async fn update(&mut self, sql: &str) -> Result<i64> {
        Ok(self
            .sql
            .execute_update(sql.to_string(), None)
            .await
            .map_err(|e| format!("statement failed: {e}\n  SQL: {sql}"))?)
    }

    /// One `DoAction(strata.health)` round trip.
    pub async fn health(&mut self) -> Result<()> {
        let action = Action {
            r#type: HEALTH_ACTION.to_string(),
            body: Default::default(),
        };
        let mut results = self.sql.do_action(action).await?;
        while results.next().await.transpose()?.is_some() {}
        Ok(())
    }

    /// Send one pre-encoded `DoPut` request ([`encode_put`]) and wait for its acknowledgement.
    pub async fn put(&mut self, data: Vec<FlightData>) -> Result<()> {
        let mut acks = self.sql.do_put(futures::stream::iter(data)).await?;
        while acks.message().await?.is_some() {}
        Ok(())
    }
}

/// Encode `batch` as the messages of one `DoPut` to `table` (PATH descriptor `[table]`).
pub async fn encode_put(table: &str, batch: RecordBatch) -> Result<Vec<FlightData>> {
    let stream = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![table.to_string()])))
        .build(futures::stream::iter([Ok(batch)]));
    Ok(stream.try_collect().await?)
}

/// Rows in `batches`.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
