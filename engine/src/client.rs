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
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

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

/// Opens a channel to the gateway, failing within [`CONNECT_TIMEOUT`] if it is not there.
async fn connect(gateway: &str) -> Result<Channel, String> {
    let url = with_scheme(gateway);
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("invalid gateway address {url:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    endpoint.connect().await.map_err(|e| {
        let mut msg = format!("cannot connect to the gateway at {url}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !msg.contains(&text) {
                msg.push_str(&format!(": {text}"));
            }
            source = s.source();
        }
        msg.push_str(" (is `strata serve` running? set --gateway or STRATA_GATEWAY)");
        msg
    })
}

/// The `authorization` header value for a bearer token, if one was given.
fn bearer(token: Option<&str>) -> Option<String> {
    token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| format!("Bearer {t}"))
}

/// One line for a gRPC status: `Code: message`.
fn describe_status(s: &Status) -> String {
    let code = format!("{:?}", s.code());
    if s.message().is_empty() {
        code
    } else {
        format!("{code}: {}", s.message())
    }
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
