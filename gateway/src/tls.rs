//! TLS for the gRPC port and for the gRPC clients (gateway → nodes, the `strata` CLI).
//!
//! rustls over *ring*. The PEM files are read and checked when a server or client is built,
//! so a missing file, a file without a certificate or key, or a key that does not match its
//! certificate stops startup with one line naming the file, never a panic or a failure at the
//! first connection.
//!
//! - [`server_tls`]: certificate chain + private key (both or neither), and optionally a CA
//!   whose client certificates are required (mutual TLS).
//! - [`client_tls`]: the CAs a client trusts (a PEM file, else the system's roots) and
//!   optionally a client certificate + key for servers that require one.
//! - [`grpc_url`]: the URI tonic dials for an address (`host:port`, `http://`, `https://`,
//!   `grpc://`, `grpc+tls://`).

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

/// Longest a TLS handshake may take on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS setting that cannot be used; the message names the file or setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Makes *ring* the process's rustls crypto provider. Servers need one installed (other
/// crates of a process may enable a second provider, and rustls then refuses to guess).
/// Does nothing if a provider is already installed.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: any installed provider works.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// `cert` and `key` given together, or neither. The names say which setting or flag is
/// missing, e.g. `("tls_cert (--tls-cert)", "tls_key (--tls-key)")`.
pub fn pair<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
    names: (&str, &str),
) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(c), None) => Err(TlsError(format!(
            "{} is set ({}) but {} is missing: give both or neither",
            names.0,
            c.display(),
            names.1
        ))),
        (None, Some(k)) => Err(TlsError(format!(
            "{} is set ({}) but {} is missing: give both or neither",
            names.1,
            k.display(),
            names.0
        ))),
    }
}

/// The TLS settings of a gRPC server: `identity` is (certificate chain, private key);
/// with `client_ca`, clients must present a certificate issued by one of its CAs.
pub fn server_tls(
    identity: (&Path, &Path),
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsError> {
    install_crypto_provider();
    let (cert_path, key_path) = identity;
    let cert = read_certificates(cert_path, "TLS certificate")?;
    let key = read_private_key(key_path)?;
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert, &key))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = client_ca {
        let ca = read_certificates(ca, "TLS client CA")?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    // Build the acceptor once now so that a key that does not match its certificate (or a
    // certificate rustls cannot use) is reported at startup.
    Server::builder().tls_config(tls.clone()).map_err(|e| {
        TlsError(format!(
            "TLS certificate {} and key {} cannot be used together: {}",
            cert_path.display(),
            key_path.display(),
            chain(&e)
        ))
    })?;
    Ok(tls)
}

/// The TLS settings of a gRPC client: trust the CAs in `ca` (else the system's roots) and,
/// with `identity` (certificate chain, key), present a client certificate.
pub fn client_tls(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, TlsError> {
    let mut tls = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
    tls = match ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read_certificates(
            ca,
            "TLS CA certificate",
        )?)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = identity {
        let cert = read_certificates(cert, "TLS client certificate")?;
        let key = read_private_key(key)?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(tls)
}

/// The URI tonic dials: `grpc+tls://` and `grpcs://` become `https://`, `grpc://` becomes
/// `http://`, `http(s)://` stay, and a bare `host:port` gets `https://` when `tls` is true,
/// else `http://`. Surrounding spaces and a trailing `/` are dropped.
pub fn grpc_url(addr: &str, tls: bool) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if let Some(rest) = strip_scheme(addr, "grpc+tls://").or_else(|| strip_scheme(addr, "grpcs://"))
    {
        format!("https://{rest}")
    } else if let Some(rest) = strip_scheme(addr, "grpc://") {
        format!("http://{rest}")
    } else if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// Whether a URL from [`grpc_url`] is dialled with TLS.
pub fn is_tls_url(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

fn strip_scheme<'a>(addr: &'a str, scheme: &str) -> Option<&'a str> {
    let head = addr.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &addr[scheme.len()..])
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read {what} {}: {e}", path.display())))
}

/// The file's bytes, after checking that it holds at least one PEM certificate.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{what} {} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The file's bytes, after checking that it holds a PEM private key.
fn read_private_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let what = "TLS private key";
    let bytes = read(path, what)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(_) => Ok(bytes),
        Err(pem::Error::NoItemsFound) => Err(TlsError(format!(
            "{what} {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ))),
        Err(e) => Err(TlsError(format!(
            "{what} {} is not valid PEM: {e}",
            path.display()
        ))),
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_scheme_tonic_dials() {
        assert_eq!(grpc_url("127.0.0.1:50051", false), "http://127.0.0.1:50051");
        assert_eq!(grpc_url("127.0.0.1:50051", true), "https://127.0.0.1:50051");
        assert_eq!(grpc_url(" grpc+tls://h:1/ ", false), "https://h:1");
        assert_eq!(grpc_url("GRPCS://h:1", false), "https://h:1");
        assert_eq!(grpc_url("grpc://h:1", true), "http://h:1");
        assert_eq!(grpc_url("http://h:1", true), "http://h:1");
        assert_eq!(grpc_url("https://h:1", false), "https://h:1");
        assert!(is_tls_url("HTTPS://h:1"));
        assert!(!is_tls_url("http://h:1"));
        assert!(!is_tls_url("h:1"));
    }

    #[test]
    fn cert_and_key_come_together() {
        let (c, k) = (Path::new("c.pem"), Path::new("k.pem"));
        let names = ("tls_cert", "tls_key");
        assert_eq!(pair(Some(c), Some(k), names), Ok(Some((c, k))));
        assert_eq!(pair(None, None, names), Ok(None));
        let e = pair(Some(c), None, names).unwrap_err().0;
        assert!(e.contains("tls_key is missing"), "{e}");
        let e = pair(None, Some(k), names).unwrap_err().0;
        assert!(e.contains("tls_cert is missing"), "{e}");
    }

    #[test]
    fn unusable_files_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = server_tls((&missing, &missing), None).unwrap_err().0;
        assert!(
            e.starts_with("cannot read TLS certificate") && e.contains("missing.pem"),
            "{e}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let e = server_tls((&garbage, &garbage), None).unwrap_err().0;
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = client_tls(Some(&garbage), None).unwrap_err().0;
        assert!(
            e.contains("TLS CA certificate") && e.contains("garbage.pem"),
            "{e}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let e = client_tls(Some(&broken), None).unwrap_err().0;
        assert!(e.contains("not valid PEM"), "{e}");
        assert!(!e.contains('\n'));
    }
}
