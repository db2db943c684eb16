//! Per-call context: who is calling (auth + request quota), the request id, the deadline.

use std::time::{Duration, Instant};

use tonic::Status;
use tonic::metadata::MetadataMap;

use super::StrataFlightService;
use crate::auth::{Principal, Scope};
use crate::backend::Caller;
use crate::status::to_status;

/// Header a client may set to correlate its request with server logs.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// An admitted call.
#[derive(Debug, Clone)]
pub(crate) struct CallContext {
    pub(crate) caller: Caller,
    /// Time left for the request: the client's `grpc-timeout`, capped by the configured
    /// query timeout.
    pub(crate) timeout: Option<Duration>,
}

impl StrataFlightService {
    /// Authenticates the call, checks `scope` (`what` names the operation in the error),
    /// and counts it against the tenant's request quota.
    pub(crate) fn admit(
        &self,
        metadata: &MetadataMap,
        scope: Scope,
        what: &str,
    ) -> Result<CallContext, Status> {
        let principal = self.auth.authorize(metadata, scope, what)?;
        self.admit_principal(&principal, metadata)
    }

    pub(crate) fn admit_principal(
        &self,
        principal: &Principal,
        metadata: &MetadataMap,
    ) -> Result<CallContext, Status> {
        self.quotas
            .check_request(principal.tenant.as_deref(), Instant::now())
            .map_err(to_status)?;
        let timeout = match (grpc_timeout(metadata), self.config.query_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // On nodes behind a gateway, the principal carries the tenant the gateway
        // authenticated (`Authenticator::for_node`).
        let caller = principal.caller(request_id(metadata));
        tracing::debug!(
            request_id = caller.request_id,
            tenant = caller.tenant.as_deref().unwrap_or("default"),
            "call admitted"
        );
        Ok(CallContext { caller, timeout })
    }
}

/// The client's request id when it is short and plain, else a fresh one.
fn request_id(metadata: &MetadataMap) -> String {
    metadata
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Parses the `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(key: &'static str, value: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert(key, value.parse().expect("ascii"));
        md
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(
            grpc_timeout(&md("grpc-timeout", "250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            grpc_timeout(&md("grpc-timeout", "2S")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            grpc_timeout(&md("grpc-timeout", "1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(grpc_timeout(&md("grpc-timeout", "5x")), None);
        assert_eq!(grpc_timeout(&md("grpc-timeout", "123456789S")), None);
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[test]
    fn request_ids_are_sanitised() {
        assert_eq!(request_id(&md(REQUEST_ID_HEADER, "abc-123")), "abc-123");
        let fresh = request_id(&md(REQUEST_ID_HEADER, "has space"));
        assert_ne!(fresh, "has space");
        assert_eq!(fresh.len(), 36);
    }
}
