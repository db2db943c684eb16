//! `strata status`: the gateway's `GET /v1/status` as tables: the role, the nodes (health,
//! breaker, requests in flight), the tables (shards, segments, rows, size) and the ingest
//! buffer. Fields the server leaves out are left out here too, so a newer or older server
//! still prints what it has.
//!
//! Strata serves that HTTP port in plaintext; an `https://` address (a proxy terminating TLS
//! in front of it) trusts `--tls-ca` besides the system's roots and presents
//! `--tls-client-cert` when given.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;

use super::{bearer, with_scheme};
use crate::cli::ClientArgs;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(a: &ClientArgs) -> Result<(), String> {
    let url = format!("{}/v1/status", with_scheme(&a.http));
    let mut builder = reqwest::Client::builder()
        .connect_timeout(super::CONNECT_TIMEOUT)
        .timeout(TIMEOUT);
    if strata_gateway::tls::is_tls_url(&url) {
        builder = with_tls(builder, &a.tls)?;
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut req = client.get(&url);
    if let Some(value) = bearer(a.token.as_deref()) {
        req = req.header("authorization", value);
    }
    let resp = req.send().await.map_err(|e| {
        format!(
            "cannot reach {url}: {} (is the gateway running? set --http or STRATA_HTTP)",
            super::error_chain(&e)
        )
    })?;
    let code = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
    if !code.is_success() {
        return Err(format!(
            "{url} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let status: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer JSON: {e}"))?;
    print!(
        "{}",
        render(&status).map_err(|e| format!("cannot format the status: {e}"))?
    );
    Ok(())
}

/// Trust `--tls-ca` and present `--tls-client-cert` on an `https://` status address.
fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &crate::cli::ClientTlsArgs,
) -> Result<reqwest::ClientBuilder, String> {
    strata_gateway::tls::install_crypto_provider();
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    if let Some(ca) = &tls.tls_ca {
        for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| format!("TLS CA certificate {} is not valid PEM: {e}", ca.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let identity = strata_gateway::tls::pair(
        tls.tls_client_cert.as_deref(),
        tls.tls_client_key.as_deref(),
        ("--tls-client-cert", "--tls-client-key"),
    )
    .map_err(|e| e.0)?;
    if let Some((cert, key)) = identity {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "TLS client certificate {} / key {} cannot be used: {e}",
                cert.display(),
                key.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// The whole report.
fn render(status: &Value) -> Result<String, arrow::error::ArrowError> {
    let mut out = String::new();
    if let Some(role) = status.get("role").and_then(Value::as_str) {
        out.push_str(&format!("role: {role}\n"));
    }
    let nodes = nodes(status.get("nodes"));
    if !nodes.is_empty() {
        out.push_str("\nnodes\n");
        out.push_str(&table(&nodes_columns(&nodes))?);
    }
    let tables: Vec<&Value> = status
        .get("tables")
        .and_then(Value::as_array)
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    out.push_str("\ntables\n");
    if tables.is_empty() {
        out.push_str("(none)\n");
    } else {
        out.push_str(&table(&tables_columns(&tables))?);
    }
    if let Some(ingest) = status.get("ingest") {
        let used = ingest.get("buffered_bytes").and_then(Value::as_u64);
        let limit = ingest.get("limit_bytes").and_then(Value::as_u64);
        if let Some(used) = used {
            out.push_str(&format!("\ningest buffer: {}", human_bytes(used)));
            if let Some(limit) = limit.filter(|l| *l > 0) {
                out.push_str(&format!(
                    " of {} ({:.0}%)",
                    human_bytes(limit),
                    used as f64 * 100.0 / limit as f64
                ));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// Nodes as a flat list: `nodes` is either an array, or an object of arrays keyed by role
/// (`{"compute": [...], "ingest": [...]}`), whose key is the role when a node lacks one.
fn nodes(v: Option<&Value>) -> Vec<(String, &Value)> {
    match v {
        Some(Value::Array(a)) => a.iter().map(|n| (text(n.get("role")), n)).collect(),
        Some(Value::Object(by_role)) => by_role
            .iter()
            .flat_map(|(role, list)| {
                list.as_array().into_iter().flatten().map(move |n| {
                    let r = n
                        .get("role")
                        .map_or_else(|| role.clone(), |r| text(Some(r)));
                    (r, n)
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

type Columns = Vec<(&'static str, Vec<String>)>;

fn nodes_columns(nodes: &[(String, &Value)]) -> Columns {
    let field = |names: &[&str], n: &Value| text(names.iter().find_map(|k| n.get(*k)));
    let mut cols: Columns = vec![
        (
            "address",
            nodes
                .iter()
                .map(|(_, n)| field(&["address", "node"], n))
                .collect(),
        ),
        ("role", nodes.iter().map(|(r, _)| r.clone()).collect()),
        (
            "health",
            nodes
                .iter()
                .map(|(_, n)| match n.get("healthy").and_then(Value::as_bool) {
                    Some(true) => "healthy".to_string(),
                    Some(false) => "DOWN".to_string(),
                    None => "-".to_string(),
                })
                .collect(),
        ),
        (
            "breaker",
            nodes.iter().map(|(_, n)| field(&["breaker"], n)).collect(),
        ),
        (
            "in-flight",
            nodes
                .iter()
                .map(|(_, n)| field(&["in_flight"], n))
                .collect(),
        ),
        (
            "failures",
            nodes
                .iter()
                .map(|(_, n)| field(&["consecutive_failures"], n))
                .collect(),
        ),
    ];
    if nodes
        .iter()
        .any(|(_, n)| n.get("last_error").is_some_and(|e| !e.is_null()))
    {
        cols.push((
            "last error",
            nodes
                .iter()
                .map(|(_, n)| field(&["last_error"], n))
                .collect(),
        ));
    }
    cols
}

fn tables_columns(tables: &[&Value]) -> Columns {
    let field = |k: &str| tables.iter().map(|t| text(t.get(k))).collect::<Vec<_>>();
    let mut cols: Columns = vec![
        ("tenant", field("tenant")),
        ("table", field("table")),
        ("shards", field("shards")),
        ("segments", field("segments")),
        ("rows", field("rows")),
        (
            "size",
            tables
                .iter()
                .map(|t| {
                    t.get("bytes")
                        .and_then(Value::as_u64)
                        .map_or_else(|| "-".into(), human_bytes)
                })
                .collect(),
        ),
    ];
    cols.push((
        "retention",
        tables
            .iter()
            .map(|t| match t.get("retention_secs").and_then(Value::as_u64) {
                Some(secs) => {
                    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
                }
                None => "forever".to_string(),
            })
            .collect(),
    ));
    cols.push(("delete rules", field("delete_rules")));
    if tables.iter().any(|t| t.get("wal_entries").is_some()) {
        cols.push(("wal entries", field("wal_entries")));
    }
    cols
}

/// A JSON value as a cell: strings unquoted, missing or null as `-`.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An aligned text table (arrow's pretty printer over string columns).
fn table(cols: &Columns) -> Result<String, arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(name, _)| Field::new(*name, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays = cols
        .iter()
        .map(|(_, values)| Arc::new(StringArray::from(values.clone())) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema, arrays)?;
    Ok(format!(
        "{}\n",
        arrow::util::pretty::pretty_format_batches(&[batch])?
    ))
}

/// `1.5 MiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_nodes_tables_and_ingest() {
        let status = json!({
            "role": "gateway",
            "nodes": {
                "compute": [{"role": "compute", "node": "10.0.0.1:50051", "healthy": true,
                             "breaker": "closed", "in_flight": 3, "consecutive_failures": 0,
                             "last_error": null}],
                "ingest": [{"node": "10.0.0.2:50051", "healthy": false, "breaker": "open",
                            "in_flight": 0, "consecutive_failures": 7,
                            "last_error": "connection refused"}]
            },
            "tables": [{"tenant": "default", "table": "logs", "shards": 4, "segments": 12,
                        "rows": 1000000, "bytes": 52428800}],
            "ingest": {"buffered_bytes": 1048576, "limit_bytes": 4194304}
        });
        let out = render(&status).unwrap();
        assert!(out.starts_with("role: gateway\n"), "{out}");
        assert!(out.contains("| 10.0.0.1:50051 | compute | healthy | closed  | 3         | 0        | -                  |"), "{out}");
        assert!(out.contains("| 10.0.0.2:50051 | ingest  | DOWN    | open    | 0         | 7        | connection refused |"), "{out}");
        assert!(
            out.contains("| default | logs  | 4      | 12       | 1000000 | 50.0 MiB |"),
            "{out}"
        );
        assert!(
            out.contains("ingest buffer: 1.0 MiB of 4.0 MiB (25%)"),
            "{out}"
        );
    }

    #[test]
    fn accepts_a_node_array_and_missing_fields() {
        let status = json!({
            "nodes": [{"address": "a:1", "role": "compute", "healthy": true}],
            "tables": [{"table": "t"}]
        });
        let out = render(&status).unwrap();
        assert!(
            out.contains("| a:1     | compute | healthy | -       | -         | -        |"),
            "{out}"
        );
        assert!(
            out.contains("| -      | t     | -      | -        | -    | -    |"),
            "{out}"
        );
        assert!(!out.contains("role:"));
        let out = render(&json!({"role": "serve", "tables": []})).unwrap();
        assert_eq!(out, "role: serve\n\ntables\n(none)\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
