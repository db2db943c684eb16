//! The service the server actually serves: [`StrataFlightService`] plus metrics and routing.
//!
//! arrow-flight's Flight SQL dispatcher decodes every ticket and `DoPut` descriptor as a
//! protobuf `Any` first, so Strata's JSON tickets (`{"log": …}`) and JSON ingest commands
//! would fail before reaching the fallbacks. [`FlightFront`] looks at those first (a protobuf
//! `Any` never starts with `{`) and hands everything else to the Flight SQL dispatcher. It
//! also times every call into [`GrpcMetrics`].

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::StrataFlightService;
use super::ingest::missing_descriptor;
use super::log::is_json;
use super::metrics::{GrpcMetrics, Observation};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves a [`StrataFlightService`] with metrics and JSON routing. Wrap it in
/// `FlightServiceServer` (as [`crate::server::GatewayServer`] does).
#[derive(Debug, Clone)]
pub struct FlightFront {
    inner: Arc<StrataFlightService>,
    metrics: Option<GrpcMetrics>,
}

impl FlightFront {
    /// Serves `service` without metrics.
    pub fn new(service: Arc<StrataFlightService>) -> Self {
        Self {
            inner: service,
            metrics: None,
        }
    }

    /// Records every call in `metrics`.
    pub fn with_metrics(mut self, metrics: GrpcMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The wrapped service.
    pub fn service(&self) -> &Arc<StrataFlightService> {
        &self.inner
    }

    fn observe(&self, method: &'static str) -> Observation {
        match &self.metrics {
            Some(m) => m.start(method),
            None => Observation::none(),
        }
    }

    async fn put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Boxed<PutResult>>, Status> {
        // Check the caller before reading (and holding) the first message.
        self.inner.auth.authenticate(request.metadata())?;
        let (metadata, _, mut stream) = request.into_parts();
        let first = stream.message().await?.ok_or_else(missing_descriptor)?;
        let descriptor = first
            .flight_descriptor
            .clone()
            .ok_or_else(missing_descriptor)?;
        let all = futures::stream::once(async move { Ok(first) })
            .chain(stream)
            .boxed();
        self.inner.put(descriptor, &metadata, all).await
    }
}

fn unary<T>(mut observation: Observation, result: Result<T, Status>) -> Result<T, Status> {
    match &result {
        Ok(_) => observation.finish(tonic::Code::Ok),
        Err(status) => failed(&mut observation, status),
    }
    result
}

/// Records and logs a call that failed before its response started. Messages never hold
/// tokens (see `crate::status`).
fn failed(observation: &mut Observation, status: &Status) {
    observation.finish(status.code());
    match status.code() {
        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
            tracing::warn!(code = ?status.code(), message = status.message(), "call failed");
        }
        code => tracing::debug!(?code, message = status.message(), "call refused"),
    }
}

fn streaming<T: Send + 'static>(
    mut observation: Observation,
    result: Result<Response<Boxed<T>>, Status>,
) -> Result<Response<Boxed<T>>, Status> {
    match result {
        Ok(response) => Ok(response.map(|s| -> Boxed<T> { Box::pin(observation.stream(s)) })),
        Err(status) => {
            failed(&mut observation, &status);
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl FlightService for FlightFront {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoExchangeStream = Boxed<FlightData>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let obs = self.observe("Handshake");
        streaming(obs, FlightService::handshake(&*self.inner, request).await)
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let obs = self.observe("ListFlights");
        streaming(
            obs,
            FlightService::list_flights(&*self.inner, request).await,
        )
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let obs = self.observe("GetFlightInfo");
        unary(
            obs,
            FlightService::get_flight_info(&*self.inner, request).await,
        )
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let obs = self.observe("PollFlightInfo");
        unary(
            obs,
            FlightService::poll_flight_info(&*self.inner, request).await,
        )
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let obs = self.observe("GetSchema");
        unary(obs, FlightService::get_schema(&*self.inner, request).await)
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let obs = self.observe("DoGet");
        let result = if is_json(&request.get_ref().ticket) {
            self.inner
                .log_stream(&request.get_ref().ticket, request.metadata())
                .await
                .map(Response::new)
        } else {
            FlightService::do_get(&*self.inner, request).await
        };
        streaming(obs, result)
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let obs = self.observe("DoPut");
        streaming(obs, self.put(request).await)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let obs = self.observe("DoExchange");
        streaming(obs, FlightService::do_exchange(&*self.inner, request).await)
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let obs = self.observe("DoAction");
        streaming(obs, FlightService::do_action(&*self.inner, request).await)
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let obs = self.observe("ListActions");
        streaming(
            obs,
            FlightService::list_actions(&*self.inner, request).await,
        )
    }
}
