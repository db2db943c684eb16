//! Serving the Flight service over gRPC with tonic.
//!
//! [`GatewayServer::builder`] takes the two backends and a [`GatewayConfig`] (server, Flight,
//! auth and quota settings), registers the gRPC metrics in a Prometheus registry, and serves
//! on an address or an already bound [`TcpListener`] until a shutdown future completes
//! (then it stops accepting and waits for open calls to finish).
//!
//! gzip and zstd are accepted and, when the client advertises them, used for responses.
//! Every call has a timeout until its response starts (streams may then run on, so log tails
//! and long results are not cut). HTTP/2 keepalive pings find dead peers.
//!
//! TLS is optional: with [`ServerConfig::tls_cert`] and [`ServerConfig::tls_key`] the port
//! speaks only TLS (rustls), and with [`ServerConfig::tls_client_ca`] it also requires client
//! certificates (mutual TLS). The files are read and checked by
//! [`GatewayServerBuilder::build`], so a bad file stops startup with one line.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};

use crate::auth::{AuthConfig, AuthConfigError, Authenticator};
use crate::backend::{IngestBackend, QueryBackend};
use crate::flight::{FlightConfig, FlightFront, GrpcMetrics, StrataFlightService};
use crate::otlp::{OtlpConfig, OtlpLogs};
use crate::quota::{QuotaConfig, QuotaConfigError, Quotas};
use crate::tls::{self, TlsError};

/// gRPC server settings. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time a call may take until its response starts (a streamed response may then run
    /// longer). A shorter client `grpc-timeout` wins. Default: 300 s.
    pub request_timeout_secs: u64,
    /// Interval of HTTP/2 keepalive pings. Default: 30 s.
    pub keepalive_interval_secs: u64,
    /// Time to wait for a keepalive ack before closing the connection. Default: 20 s.
    pub keepalive_timeout_secs: u64,
    /// Largest gRPC message beyond `flight.max_ingest_bytes` (IPC framing, descriptors).
    /// Default: 4 MiB.
    pub message_slack_bytes: usize,
    /// Compress responses (gzip or zstd) when the client accepts it. gRPC C++ clients
    /// (pyarrow) advertise gzip by default, which costs CPU on large results. Default: true.
    pub compress_responses: bool,
    /// Most concurrent calls per connection. Default: none (HTTP/2 default).
    pub max_concurrent_streams: Option<u32>,
    /// Size HTTP/2 flow-control windows from measured bandwidth-delay (faster large
    /// uploads and results across real networks). Default: true.
    pub http2_adaptive_window: bool,
    /// PEM certificate chain of the port. With `tls_key` the port speaks TLS only (clients
    /// dial `https://` or `grpc+tls://`). Both or neither. Default: none (plaintext).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`. Default: none.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate issued by one of them
    /// (mutual TLS). Needs `tls_cert` and `tls_key`. Default: none (no client certificates).
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: 300,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 20,
            message_slack_bytes: 4 << 20,
            compress_responses: true,
            max_concurrent_streams: None,
            http2_adaptive_window: true,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

impl ServerConfig {
    /// The port's TLS settings with the PEM files read and checked, or `None` for
    /// plaintext. Errors name the setting or file to fix.
    pub fn tls(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let identity = tls::pair(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            (
                "TLS certificate (--tls-cert, gateway.server.tls_cert)",
                "TLS key (--tls-key, gateway.server.tls_key)",
            ),
        )?;
        match identity {
            Some(identity) => tls::server_tls(identity, self.tls_client_ca.as_deref()).map(Some),
            None if self.tls_client_ca.is_some() => Err(TlsError(
                "gateway.server.tls_client_ca (--tls-client-ca) needs a server certificate: \
                 set --tls-cert and --tls-key too"
                    .into(),
            )),
            None => Ok(None),
        }
    }
}

/// All gateway settings, as one TOML/serde section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// `[server]`: gRPC transport settings.
    pub server: ServerConfig,
    /// `[flight]`: request limits, prepared statements, log reads.
    pub flight: FlightConfig,
    /// `[auth]`: accepted tokens (`[[auth.tokens]]`); none disables auth.
    pub auth: AuthConfig,
    /// `[quota]`: per-tenant rate limits; none by default.
    pub quota: QuotaConfig,
    /// `[otlp]`: OpenTelemetry logs ingest.
    pub otlp: OtlpConfig,
}

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Quota(#[from] QuotaConfigError),
    #[error("cannot register gateway metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS settings: {0}")]
    Tls(#[from] TlsError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Builds a [`GatewayServer`].
pub struct GatewayServerBuilder {
    query: Arc<dyn QueryBackend>,
    ingest: Arc<dyn IngestBackend>,
    config: GatewayConfig,
    registry: Option<Registry>,
    authenticator: Option<Arc<Authenticator>>,
}

impl GatewayServerBuilder {
    /// All settings. Default: [`GatewayConfig::default`] (auth off, no quotas).
    pub fn with_config(mut self, config: GatewayConfig) -> Self {
        self.config = config;
        self
    }

    /// Registers `strata_grpc_*` metrics here. Default: no metrics.
    pub fn with_registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Uses this authenticator instead of building one from `config.auth`.
    pub fn with_authenticator(mut self, authenticator: Arc<Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Validates the settings and registers metrics.
    pub fn build(self) -> Result<GatewayServer, GatewayError> {
        let auth = match self.authenticator {
            Some(a) => a,
            None => Arc::new(Authenticator::new(&self.config.auth)?),
        };
        let mut quotas = Quotas::new(self.config.quota.clone())?;
        if let Some(registry) = &self.registry {
            quotas = quotas.with_metrics(registry)?;
        }
        let quotas = Arc::new(quotas);
        let tls = self.config.server.tls()?;
        let otlp = self.config.otlp.enabled.then(|| {
            Arc::new(OtlpLogs::new(
                Arc::clone(&self.ingest),
                Arc::clone(&self.query),
                Arc::clone(&auth),
                Arc::clone(&quotas),
                self.config.otlp.clone(),
                self.config.flight.max_ingest_bytes,
            ))
        });
        let service = StrataFlightService::new(self.query, self.ingest)
            .with_config(self.config.flight.clone())
            .with_authenticator(auth)
            .with_quotas(Arc::clone(&quotas));
        let mut front = FlightFront::new(Arc::new(service));
        if let Some(registry) = &self.registry {
            front = front.with_metrics(GrpcMetrics::register(registry)?);
        }
        Ok(GatewayServer {
            front,
            config: self.config,
            tls,
            quotas,
            otlp,
        })
    }
}

/// The gateway's gRPC server.
#[derive(Debug)]
pub struct GatewayServer {
    front: FlightFront,
    config: GatewayConfig,
    tls: Option<ServerTlsConfig>,
    quotas: Arc<Quotas>,
    otlp: Option<Arc<OtlpLogs>>,
}

impl GatewayServer {
    /// Starts building a server over the two backends.
    pub fn builder(
        query: Arc<dyn QueryBackend>,
        ingest: Arc<dyn IngestBackend>,
    ) -> GatewayServerBuilder {
        GatewayServerBuilder {
            query,
            ingest,
            config: GatewayConfig::default(),
            registry: None,
            authenticator: None,
        }
    }

    /// Whether the port speaks TLS (`gateway.server.tls_cert` and `tls_key` are set).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL scheme clients dial: `grpc+tls` with TLS, else `grpc`.
    pub fn scheme(&self) -> &'static str {
        if self.uses_tls() { "grpc+tls" } else { "grpc" }
    }

    /// The Flight service being served (e.g. to mount it in another tonic router).
    pub fn front(&self) -> &FlightFront {
        &self.front
    }

    /// The per-tenant quotas every call of this server counts against (for other
    /// front doors of the same process, such as the HTTP port).
    pub fn quotas(&self) -> Arc<Quotas> {
        Arc::clone(&self.quotas)
    }

    /// The service for HTTP clients (the web console): same auth, quotas and limits.
    pub fn web(&self) -> crate::WebApi {
        self.front.service().web()
    }

    /// The OTLP logs handler, unless `[otlp] enabled = false` (for `POST /v1/logs`).
    pub fn otlp(&self) -> Option<Arc<OtlpLogs>> {
        self.otlp.clone()
    }

    /// Serves only OTLP `LogsService` on `listener` (the conventional port 4317), with the
    /// same TLS and transport settings, until `shutdown` completes.
    pub async fn serve_otlp_with_listener(
        otlp: Arc<OtlpLogs>,
        config: &ServerConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = Server::builder();
        if let Some(tls) = config.tls()? {
            builder = builder.tls_config(tls)?;
        }
        builder
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .http2_keepalive_interval(Some(Duration::from_secs(config.keepalive_interval_secs)))
            .http2_keepalive_timeout(Some(Duration::from_secs(config.keepalive_timeout_secs)))
            .add_service(otlp.grpc_service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }

    /// Binds `addr` and serves until `shutdown` completes.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        self.serve_with_listener(listener, shutdown).await
    }

    /// Serves on an already bound listener (tests bind port 0) until `shutdown` completes;
    /// then stops accepting and waits for open calls to finish.
    ///
    /// Cancel safety: dropping the future closes the listener and every connection.
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let server = &self.config.server;
        let max_message = self
            .config
            .flight
            .max_ingest_bytes
            .saturating_add(server.message_slack_bytes);
        let mut flight = FlightServiceServer::new(self.front)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        if server.compress_responses {
            flight = flight
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip);
        }
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(
                %addr,
                tls = self.tls.is_some(),
                client_certificates = server.tls_client_ca.is_some(),
                "gateway serving Flight SQL"
            );
        }
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        builder
            .timeout(Duration::from_secs(server.request_timeout_secs))
            .http2_keepalive_interval(Some(Duration::from_secs(server.keepalive_interval_secs)))
            .http2_keepalive_timeout(Some(Duration::from_secs(server.keepalive_timeout_secs)))
            .max_concurrent_streams(server.max_concurrent_streams)
            .http2_adaptive_window(Some(server.http2_adaptive_window))
            .add_service(flight)
            .add_optional_service(self.otlp.as_ref().map(OtlpLogs::grpc_service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_from_toml_with_defaults() {
        let cfg: GatewayConfig = toml::from_str(
            r#"
            [server]
            request_timeout_secs = 10
            [flight]
            max_ingest_bytes = 1024
            [quota.requests]
            per_second = 100.0
            burst = 200.0
            [[auth.tokens]]
            token = "t"
            tenant = "acme"
            scopes = ["read", "write"]
            "#,
        )
        .expect("parses");
        assert_eq!(cfg.server.request_timeout_secs, 10);
        assert_eq!(cfg.server.keepalive_interval_secs, 30);
        assert_eq!(cfg.flight.max_ingest_bytes, 1024);
        assert_eq!(cfg.flight.prepared_max_entries, 10_000);
        assert_eq!(cfg.quota.requests.map(|r| r.burst), Some(200.0));
        assert_eq!(cfg.auth.tokens.len(), 1);
        assert!(toml::from_str::<GatewayConfig>("[server]\nrequest_timeout = 1\n").is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        let cfg: GatewayConfig = toml::from_str("[server]\ntls_cert = \"/x/cert.pem\"\n").unwrap();
        let e = cfg.server.tls().unwrap_err().0;
        assert!(
            e.contains("TLS key (--tls-key, gateway.server.tls_key) is missing"),
            "{e}"
        );
        let cfg: GatewayConfig = toml::from_str("[server]\ntls_key = \"/x/key.pem\"\n").unwrap();
        let e = cfg.server.tls().unwrap_err().0;
        assert!(e.contains("--tls-cert") && e.contains("is missing"), "{e}");
        let cfg: GatewayConfig =
            toml::from_str("[server]\ntls_client_ca = \"/x/ca.pem\"\n").unwrap();
        assert!(cfg.server.tls().is_err());
        assert!(GatewayConfig::default().server.tls().unwrap().is_none());
    }
}
