//! The command-line client: `strata sql`, `strata ingest FILE...` and `strata status`.
//!
//! All three talk to a gateway the way any other client would, so they double as a check
//! that the public interfaces are enough:
//!
//! * `strata sql` speaks Arrow Flight SQL (`GetFlightInfo` + `DoGet` for queries, `DoPut` of
//!   `CommandStatementUpdate` for DDL and DML). Input handling lives in [`input`], result
//!   rendering (table, CSV, JSON lines) in [`output`], the session and the shell in
//!   [`shell`].
//! * `strata ingest FILE...` ([`load`]) reads CSV, JSON lines or Parquet and sends one
//!   plain Flight `DoPut` per batch, as an idempotent producer (a random producer id and an
//!   increasing sequence per `DoPut`), so a retried `DoPut` is applied once.
//! * `strata status` ([`status`]) reads the gateway's `GET /v1/status` JSON and prints it as
//!   tables.
//!
//! The gateway address may be `host:port`, `http://`, `https://` or `grpc+tls://`; TLS
//! addresses trust `--tls-ca` (else the system's roots) and present `--tls-client-cert` when
//! given. A bare `host:port` is dialled with TLS when a TLS file is given.
//!
//! Errors reach the user as one line: the gRPC code name and the server's message
//! (`InvalidArgument: table "x" not found`).

mod input;
mod load;
mod output;
mod shell;
mod status;
#[cfg(test)]
mod testing;

use std::time::Duration;

use arrow_flight::error::FlightError;
use strata_gateway::tls;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::cli::ClientTlsArgs;

/// How long to wait for the TCP (and HTTP/2) connection to the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest gRPC message the client sends or accepts. Flight data is split into messages of
/// about 2 MiB by default, but a single wide row may be larger.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// `strata sql`: run `-e` statements (or statements piped on stdin), else an interactive shell.
pub async fn sql(a: &crate::cli::SqlArgs) -> Result<(), String> {
    shell::run(a).await
}

/// `strata status`: the cluster as the gateway sees it.
pub async fn status(a: &crate::cli::ClientArgs) -> Result<(), String> {
    status::run(a).await
}

/// `strata ingest FILE...`: load files into a table through the gateway.
pub async fn load_files(a: &crate::cli::IngestArgs) -> Result<(), String> {
    load::run(a).await
}

/// `host:port` becomes `http://host:port`; URLs with a scheme are kept.
fn with_scheme(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for the gateway address, with TLS for `https://` and `grpc+tls://` (and for
/// a bare `host:port` when a TLS file is given).
fn endpoint(gateway: &str, tls_args: &ClientTlsArgs) -> Result<Endpoint, String> {
    let url = tls::grpc_url(gateway, tls_args.any());
    let secure = tls::is_tls_url(&url);
    if tls_args.any() && !secure {
        return Err(format!(
            "--tls-ca / --tls-client-cert are given but the gateway address {url} is plaintext: \
             write https://host:port or grpc+tls://host:port"
        ));
    }
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("invalid gateway address {url:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if secure {
        let identity = tls::pair(
            tls_args.tls_client_cert.as_deref(),
            tls_args.tls_client_key.as_deref(),
            ("--tls-client-cert", "--tls-client-key"),
        )
        .map_err(|e| e.0)?;
        let config = tls::client_tls(tls_args.tls_ca.as_deref(), identity).map_err(|e| e.0)?;
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("cannot set up TLS for {url}: {}", error_chain(&e)))?;
    }
    Ok(endpoint)
}

/// Opens a channel to the gateway, failing within [`CONNECT_TIMEOUT`] if it is not there.
async fn connect(gateway: &str, tls_args: &ClientTlsArgs) -> Result<Channel, String> {
    let endpoint = endpoint(gateway, tls_args)?;
    let url = endpoint.uri().to_string();
    let url = url.trim_end_matches('/');
    endpoint.connect().await.map_err(|e| {
        let hint = if tls::is_tls_url(url) {
            " (is the gateway running with TLS, and is its certificate issued by --tls-ca for this host name?)"
        } else {
            " (is `strata serve` running? set --gateway or STRATA_GATEWAY)"
        };
        format!(
            "cannot connect to the gateway at {url}: {}{hint}",
            error_chain(&e)
        )
    })
}

/// An error and its sources on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    msg
}

/// The `authorization` header value for a bearer token, if one was given.
fn bearer(token: Option<&str>) -> Option<String> {
    token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| format!("Bearer {t}"))
}

/// One line for a gRPC status: `Code: message`, with the transport's cause when the call
/// failed before the server answered (e.g. a plaintext client on a TLS port).
fn describe_status(s: &Status) -> String {
    let code = format!("{:?}", s.code());
    let mut msg = if s.message().is_empty() {
        code
    } else {
        format!("{code}: {}", s.message())
    };
    if let Some(source) = std::error::Error::source(s) {
        let cause = error_chain(source);
        if !msg.contains(&cause) {
            msg.push_str(&format!(": {cause}"));
        }
        // A call that failed in the transport after the connection opened: what a plaintext
        // HTTP/2 client sees when the port speaks TLS (an invalid frame, a protocol error, or
        // — depending on timing — the connection closed or a broken pipe). Refusals and
        // timeouts are reported at connect time with their own hint.
        const NOT_TLS: [&str; 2] = ["refused", "timed out"];
        if !NOT_TLS.iter().any(|m| msg.contains(m)) {
            msg.push_str(
                " (does the gateway's port speak TLS? dial https://host:port with --tls-ca)",
            );
        }
    }
    msg
}

/// One line for a Flight error, keeping the gRPC code when there is one.
fn describe_flight_error(e: &FlightError) -> String {
    match e {
        FlightError::Tonic(s) => describe_status(s),
        FlightError::Arrow(e) => format!("Internal: {e}"),
        FlightError::ExternalError(e) => match e.downcast_ref::<Status>() {
            Some(s) => describe_status(s),
            None => e.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(with_scheme("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(with_scheme("http://h:1/"), "http://h:1");
        assert_eq!(with_scheme(" https://h:1 "), "https://h:1");
    }

    #[test]
    fn tls_files_make_a_bare_address_tls_and_refuse_plaintext_urls() {
        let none = ClientTlsArgs::default();
        let e = endpoint("127.0.0.1:1", &none).unwrap();
        assert_eq!(e.uri().to_string(), "http://127.0.0.1:1/");
        let e = endpoint("grpc+tls://127.0.0.1:1", &none).unwrap();
        assert_eq!(e.uri().to_string(), "https://127.0.0.1:1/");
        let with_ca = ClientTlsArgs {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = endpoint("http://127.0.0.1:1", &with_ca).unwrap_err();
        assert!(e.contains("plaintext"), "{e}");
        let e = endpoint("127.0.0.1:1", &with_ca).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let half = ClientTlsArgs {
            tls_client_cert: Some("c.pem".into()),
            ..Default::default()
        };
        let e = endpoint("https://127.0.0.1:1", &half).unwrap_err();
        assert!(e.contains("--tls-client-key is missing"), "{e}");
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("abc")).as_deref(), Some("Bearer abc"));
        assert_eq!(bearer(Some("  ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn errors_keep_the_code() {
        let e = FlightError::Tonic(Box::new(Status::invalid_argument("no such table")));
        assert_eq!(describe_flight_error(&e), "InvalidArgument: no such table");
        let e = FlightError::Tonic(Box::new(Status::unavailable("")));
        assert_eq!(describe_flight_error(&e), "Unavailable");
    }
}
