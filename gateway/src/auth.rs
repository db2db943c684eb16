//! Bearer-token authentication and scopes.
//!
//! Tokens come from configuration ([`AuthConfig`], loadable from TOML): each names a tenant
//! and the scopes it grants. Clients send `authorization: Bearer <token>` on every call, or
//! exchange `Basic base64(tenant:token)` for the bearer header in a Flight `Handshake` (as
//! `pyarrow.flight`'s `authenticate_basic_token` and the Flight SQL clients do).
//!
//! Tokens are compared as SHA-256 digests in constant time, and never appear in a message,
//! a log line or a `Debug` output. With no tokens configured, auth is disabled and every
//! caller is the default tenant with every scope.
//!
//! **Nodes behind gateways** ([`Authenticator::for_node`]): a gateway authenticates the
//! client and calls compute and ingest nodes on its behalf, naming the tenant in
//! `x-strata-tenant` and proving it is part of the cluster with the shared cluster secret in
//! `x-strata-cluster-token` (see [`CLUSTER_TOKEN_HEADER`]). A node believes
//! `x-strata-tenant` only from a caller holding the secret, and refuses it (UNAUTHENTICATED)
//! from anyone else; with a secret configured it serves nobody else, unless that caller
//! presents one of the node's own bearer tokens.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::backend::{BackendError, Caller, ErrorKind};
use crate::status::to_status;

/// What a token allows. `Admin` implies the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries, metadata and log reads.
    Read,
    /// Ingest and statements that change data or schema.
    Write,
    /// Everything.
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }
}

/// Auth settings: the tokens the gateway accepts. Empty (the default) disables auth.
///
/// ```toml
/// [[tokens]]
/// token = "change-me"            # or token_sha256 = "<64 hex digits>"
/// tenant = "acme"
/// scopes = ["read", "write"]
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens. Default: none (auth disabled).
    pub tokens: Vec<TokenEntry>,
}

/// One accepted token. Exactly one of `token` and `token_sha256` must be set.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Hex SHA-256 of the token, so the config file need not hold the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The tenant every request with this token acts as.
    pub tenant: String,
    /// What the token allows.
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "token_sha256",
                &self.token_sha256.as_ref().map(|_| "<redacted>"),
            )
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A configuration that cannot be used. Messages never include a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read auth config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid auth config: {0}")]
    Parse(String),
    #[error("token #{index} (tenant `{tenant}`): {problem}")]
    Entry {
        index: usize,
        tenant: String,
        problem: &'static str,
    },
}

impl AuthConfig {
    /// Parses TOML text (see the type's docs for the format).
    pub fn from_toml_str(text: &str) -> Result<Self, AuthConfigError> {
        // toml's messages quote the offending line, which could hold a token: keep only
        // the position.
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" at byte {}", s.start))
                .unwrap_or_default();
            AuthConfigError::Parse(format!("not valid TOML for [[tokens]] entries{at}"))
        })
    }

    /// Reads and parses a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, AuthConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }
}

/// Who made a request, as far as auth is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` is the default tenant (auth disabled).
    pub tenant: Option<String>,
    scopes: u8,
}

impl Principal {
    fn all_scopes() -> Self {
        Self {
            tenant: None,
            scopes: Scope::Admin.bit(),
        }
    }

    /// True when the principal holds `scope` (directly or through `admin`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// PERMISSION_DENIED naming the missing scope, unless the principal holds it.
    pub fn require(&self, scope: Scope, what: &str) -> Result<(), Status> {
        if self.has(scope) {
            return Ok(());
        }
        let tenant = self.tenant.as_deref().unwrap_or("default");
        Err(to_status(BackendError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{what} needs the `{}` scope, which this token (tenant `{tenant}`) lacks; \
                 use a token with scopes = [\"{}\"]",
                scope.name(),
                scope.name()
            ),
        )))
    }

    /// The backend's view of the caller.
    pub fn caller(&self, request_id: String) -> Caller {
        Caller {
            tenant: self.tenant.clone(),
            request_id,
        }
    }
}

struct Credential {
    digest: [u8; 32],
    tenant: String,
    scopes: u8,
}

/// A secret that no `Debug` output shows (the cluster secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Header carrying the cluster secret on calls from a gateway to its nodes.
pub const CLUSTER_TOKEN_HEADER: &str = "x-strata-cluster-token";

/// Header a gateway sets on calls to nodes: the tenant it authenticated.
pub const TENANT_HEADER: &str = "x-strata-tenant";

/// Checks credentials in request metadata against the configured tokens.
pub struct Authenticator {
    credentials: Vec<Credential>,
    /// Set on compute and ingest nodes: they take the tenant from the gateway's header.
    node: bool,
    /// Digest of the cluster secret, when one is configured.
    cluster: Option<[u8; 32]>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.credentials.len())
            .field("node", &self.node)
            .field("cluster_secret", &self.cluster.map(|_| "<redacted>"))
            .finish()
    }
}

impl Authenticator {
    /// An authenticator that lets everyone in as the default tenant with every scope.
    pub fn disabled() -> Self {
        Self {
            credentials: Vec::new(),
            node: false,
            cluster: None,
        }
    }

    /// Makes this the authenticator of a node behind gateways (see the module docs): the
    /// tenant comes from `x-strata-tenant` on calls that carry `cluster_secret` in
    /// [`CLUSTER_TOKEN_HEADER`]. `None` (no secret) makes the node refuse that header from
    /// everyone, so only tenant-less calls (auth off) or the node's own tokens work.
    pub fn for_node(mut self, cluster_secret: Option<&str>) -> Self {
        self.node = true;
        self.cluster = cluster_secret
            .filter(|s| !s.is_empty())
            .map(|s| digest(s.as_bytes()));
        self
    }

    /// True for a node configured with a cluster secret.
    pub fn has_cluster_secret(&self) -> bool {
        self.cluster.is_some()
    }

    /// Validates the configuration: each entry has exactly one of `token`/`token_sha256`,
    /// a non-empty tenant and at least one scope.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let mut credentials = Vec::with_capacity(config.tokens.len());
        for (index, entry) in config.tokens.iter().enumerate() {
            let problem = |problem| AuthConfigError::Entry {
                index,
                tenant: entry.tenant.clone(),
                problem,
            };
            let digest = match (&entry.token, &entry.token_sha256) {
                (Some(token), None) if !token.is_empty() => digest(token.as_bytes()),
                (None, Some(hex)) => {
                    parse_hex32(hex).ok_or_else(|| problem("token_sha256 must be 64 hex digits"))?
                }
                _ => return Err(problem("set exactly one of `token` and `token_sha256`")),
            };
            if entry.tenant.is_empty() {
                return Err(problem("tenant must not be empty"));
            }
            if entry.scopes.is_empty() {
                return Err(problem(
                    "scopes must name at least one of read, write, admin",
                ));
            }
            let scopes = entry.scopes.iter().fold(0, |acc, s| acc | s.bit());
            credentials.push(Credential {
                digest,
                tenant: entry.tenant.clone(),
                scopes,
            });
        }
        Ok(Self {
            credentials,
            node: false,
            cluster: None,
        })
    }

    /// True when tokens are configured.
    pub fn is_enabled(&self) -> bool {
        !self.credentials.is_empty()
    }

    /// Identifies the caller from `authorization: Bearer <token>` (or `Basic
    /// base64(tenant:token)`). UNAUTHENTICATED when it is missing or wrong.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        if self.node
            && let Some(principal) = self.cluster_principal(metadata)?
        {
            return Ok(principal);
        }
        if !self.is_enabled() {
            return Ok(Principal::all_scopes());
        }
        match credentials(metadata)? {
            None => Err(unauthenticated(
                "missing bearer token: send the header `authorization: Bearer <token>`",
            )),
            Some(Credentials::Bearer(token)) => self.lookup(&token, None),
            Some(Credentials::Basic { user, password }) => self.lookup(&password, Some(&user)),
        }
    }

    /// [`Self::authenticate`] followed by [`Principal::require`].
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        scope: Scope,
        what: &str,
    ) -> Result<Principal, Status> {
        let principal = self.authenticate(metadata)?;
        principal.require(scope, what)?;
        Ok(principal)
    }

    /// Flight `Handshake`: checks `Basic base64(tenant:token)` (or a bearer token) and
    /// returns the principal and the value for the response's `authorization` header.
    pub fn handshake(&self, metadata: &MetadataMap) -> Result<(Principal, String), Status> {
        let presented = credentials(metadata)?;
        if !self.is_enabled() {
            let token = match presented {
                Some(Credentials::Bearer(token)) => token,
                Some(Credentials::Basic { password, .. }) if !password.is_empty() => password,
                _ => "anonymous".to_string(),
            };
            return Ok((Principal::all_scopes(), format!("Bearer {token}")));
        }
        let (principal, token) = match presented {
            None => {
                return Err(unauthenticated(
                    "missing credentials: handshake with `authorization: Basic \
                     base64(tenant:token)` or send `authorization: Bearer <token>`",
                ));
            }
            Some(Credentials::Bearer(token)) => (self.lookup(&token, None)?, token),
            Some(Credentials::Basic { user, password }) => {
                (self.lookup(&password, Some(&user))?, password)
            }
        };
        Ok((principal, format!("Bearer {token}")))
    }

    /// On a node: the gateway's principal when the call carries the cluster secret;
    /// `None` when the call is not from a gateway and may authenticate like any other.
    fn cluster_principal(&self, metadata: &MetadataMap) -> Result<Option<Principal>, Status> {
        let presented = metadata.get(CLUSTER_TOKEN_HEADER);
        let tenant = metadata.get(TENANT_HEADER);
        match (self.cluster, presented) {
            (Some(secret), Some(token)) => {
                if !constant_time_eq(&secret, &digest(token.as_bytes())) {
                    return Err(unauthenticated(
                        "invalid cluster token: the gateway's cluster.secret differs from this \
                         node's",
                    ));
                }
                let tenant = match tenant {
                    None => None,
                    Some(v) => match v.to_str() {
                        Ok("") => None,
                        Ok(t) => Some(t.to_string()),
                        Err(_) => return Err(unauthenticated("x-strata-tenant is not ASCII")),
                    },
                };
                Ok(Some(Principal {
                    tenant,
                    scopes: Scope::Admin.bit(),
                }))
            }
            (None, Some(_)) => Err(unauthenticated(
                "this node has no cluster.secret, so it accepts no cluster token; configure the \
                 same secret on gateways and nodes",
            )),
            (_, None) if tenant.is_some() => Err(unauthenticated(
                "x-strata-tenant is accepted only from the cluster's gateways, with the cluster \
                 token (cluster.secret)",
            )),
            (Some(_), None) if !self.is_enabled() => Err(unauthenticated(
                "this node serves the cluster's gateways only: send the cluster token \
                 (cluster.secret), or query through a gateway",
            )),
            _ => Ok(None),
        }
    }

    fn lookup(&self, token: &str, tenant: Option<&str>) -> Result<Principal, Status> {
        let presented = digest(token.as_bytes());
        let mut found = None;
        // Compare against every entry, whatever matches, so timing says nothing.
        for credential in &self.credentials {
            if constant_time_eq(&credential.digest, &presented) {
                found = Some(credential);
            }
        }
        match found {
            Some(c) if tenant.is_none_or(|t| t == c.tenant) => Ok(Principal {
                tenant: Some(c.tenant.clone()),
                scopes: c.scopes,
            }),
            _ => Err(unauthenticated("invalid token")),
        }
    }
}

/// Standard base64 with or without padding (arrow-go's clients send it unpadded).
const BASE64_ANY_PADDING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

enum Credentials {
    Bearer(String),
    Basic { user: String, password: String },
}

fn credentials(metadata: &MetadataMap) -> Result<Option<Credentials>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("the authorization header is not ASCII"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Credentials::Bearer(rest.to_string())));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64_ANY_PADDING
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthenticated("basic credentials are not base64 of `tenant:token`"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| unauthenticated("basic credentials are not base64 of `tenant:token`"))?;
        return Ok(Some(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        }));
    }
    Err(unauthenticated(
        "unsupported authorization scheme: use `Bearer <token>` or `Basic base64(tenant:token)`",
    ))
}

fn unauthenticated(message: &str) -> Status {
    to_status(BackendError::new(ErrorKind::Unauthenticated, message))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
