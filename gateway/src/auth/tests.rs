//! Unit tests of `auth.rs`.

use super::*;
use tonic::Code;

fn config() -> AuthConfig {
    AuthConfig::from_toml_str(
        r#"
        [[tokens]]
        token = "reader-secret"
        tenant = "acme"
        scopes = ["read"]

        [[tokens]]
        token_sha256 = "ef80202ea99d7c668a9677d9242456057ac10488311cb8757674490e194a56e1"
        tenant = "globex"
        scopes = ["write", "read"]
        "#,
    )
    .expect("valid config")
}

fn with_header(value: &str) -> MetadataMap {
    let mut md = MetadataMap::new();
    md.insert("authorization", value.parse().expect("ascii"));
    md
}

#[test]
fn bearer_tokens_resolve_to_their_tenant_and_scopes() {
    let auth = Authenticator::new(&config()).expect("valid");
    let reader = auth
        .authenticate(&with_header("Bearer reader-secret"))
        .expect("known token");
    assert_eq!(reader.tenant.as_deref(), Some("acme"));
    assert!(reader.has(Scope::Read));
    assert!(!reader.has(Scope::Write));

    // sha256("writer-secret") is configured for globex.
    assert_eq!(
        hex(&digest(b"writer-secret")),
        "ef80202ea99d7c668a9677d9242456057ac10488311cb8757674490e194a56e1"
    );
    let writer = auth
        .authenticate(&with_header("bearer writer-secret"))
        .expect("hashed token");
    assert_eq!(writer.tenant.as_deref(), Some("globex"));
    assert!(writer.has(Scope::Write));
}

#[test]
fn missing_and_wrong_tokens_are_unauthenticated() {
    let auth = Authenticator::new(&config()).expect("valid");
    let missing = auth
        .authenticate(&MetadataMap::new())
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("missing bearer token"));

    let wrong = auth
        .authenticate(&with_header("Bearer reader-secreT"))
        .expect_err("wrong token");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), "invalid token");
    assert!(!wrong.message().contains("reader"));
}

#[test]
fn missing_scope_is_permission_denied_and_named() {
    let auth = Authenticator::new(&config()).expect("valid");
    let err = auth
        .authorize(&with_header("Bearer reader-secret"), Scope::Write, "ingest")
        .expect_err("reader cannot write");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("`write`"), "{}", err.message());
    assert!(!err.message().contains("reader-secret"));
}

#[test]
fn admin_implies_everything() {
    let p = Principal {
        tenant: Some("t".into()),
        scopes: Scope::Admin.bit(),
    };
    assert!(p.has(Scope::Read) && p.has(Scope::Write) && p.has(Scope::Admin));
    let r = Principal {
        tenant: None,
        scopes: Scope::Read.bit(),
    };
    assert!(!r.has(Scope::Admin));
}

#[test]
fn disabled_auth_admits_everyone_as_default_tenant() {
    let auth = Authenticator::new(&AuthConfig::default()).expect("valid");
    let p = auth.authenticate(&MetadataMap::new()).expect("open");
    assert_eq!(p.tenant, None);
    assert!(p.has(Scope::Admin));
    let p = auth
        .authenticate(&with_header("Bearer whatever"))
        .expect("token ignored");
    assert!(p.has(Scope::Write));
}

#[test]
fn handshake_exchanges_basic_for_bearer() {
    let auth = Authenticator::new(&config()).expect("valid");
    let basic = base64::engine::general_purpose::STANDARD.encode("acme:reader-secret");
    let (p, header) = auth
        .handshake(&with_header(&format!("Basic {basic}")))
        .expect("good credentials");
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(header, "Bearer reader-secret");

    // Unpadded, as arrow-go sends it.
    let creds = "globex:writer-secret";
    assert!(
        base64::engine::general_purpose::STANDARD
            .encode(creds)
            .ends_with('=')
    );
    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(creds);
    let (p, _) = auth
        .handshake(&with_header(&format!("Basic {unpadded}")))
        .expect("unpadded base64");
    assert_eq!(p.tenant.as_deref(), Some("globex"));

    let wrong_tenant = base64::engine::general_purpose::STANDARD.encode("globex:reader-secret");
    let err = auth
        .handshake(&with_header(&format!("Basic {wrong_tenant}")))
        .expect_err("tenant must match the token");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[test]
fn invalid_entries_are_rejected_without_echoing_tokens() {
    let both = AuthConfig {
        tokens: vec![TokenEntry {
            token: Some("s3cret".into()),
            token_sha256: Some("00".repeat(32)),
            tenant: "a".into(),
            scopes: vec![Scope::Read],
        }],
    };
    let err = Authenticator::new(&both).expect_err("both set");
    assert!(!err.to_string().contains("s3cret"));
    let no_scopes = AuthConfig {
        tokens: vec![TokenEntry {
            token: Some("x".into()),
            token_sha256: None,
            tenant: "a".into(),
            scopes: vec![],
        }],
    };
    assert!(Authenticator::new(&no_scopes).is_err());
    let debug = format!("{:?}", both.tokens[0]);
    assert!(!debug.contains("s3cret"), "{debug}");
    let parse = AuthConfig::from_toml_str("[[tokens]]\ntoken = \"leak-me\"\nscopes = 3\n")
        .expect_err("bad toml");
    assert!(!parse.to_string().contains("leak-me"), "{parse}");
}

#[test]
fn loads_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("auth.toml");
    std::fs::write(
        &path,
        "[[tokens]]\ntoken = \"t\"\ntenant = \"x\"\nscopes = [\"admin\"]\n",
    )
    .expect("write");
    let cfg = AuthConfig::from_toml_file(&path).expect("loads");
    assert_eq!(cfg.tokens.len(), 1);
    assert_eq!(cfg.tokens[0].scopes, vec![Scope::Admin]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
