//! Wiring of each role. `serve` is the same parts as the separate roles, in one process.
//!
//! Shutdown order (SIGTERM or Ctrl-C): readiness goes false, the gRPC and HTTP servers stop
//! accepting and finish open calls, shard writers commit and flush what they acknowledged,
//! the cache flushes its SSD tier, then the process exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_gateway::auth::Authenticator;
use strata_gateway::remote::{
    ClusterStatus, NodeSpec, RemoteIngestBackend, RemoteMetrics, RemoteQueryBackend,
};
use strata_gateway::server::GatewayServer;
use strata_gateway::{CachingQueryBackend, IngestBackend, QueryBackend, ResultCacheMetrics};
use tokio::sync::watch;

use crate::http::{self, HttpState};
use crate::local::{CatalogResolver, CatalogVersions, LocalIngest, LocalQuery, QueryShared};
use crate::settings::Settings;
use crate::tenants::Tenants;

/// A shutdown signal every part of the process can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves on SIGTERM or Ctrl-C.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Who a process lets in. `node`: a compute or ingest node behind gateways, which believes
/// the tenant a gateway names only from callers holding the cluster secret.
fn authenticator(s: &Settings, node: bool) -> Result<Arc<Authenticator>, String> {
    let mut auth = Authenticator::new(&s.gateway.auth).map_err(|e| e.to_string())?;
    if node {
        auth = auth.for_node(s.cluster.secret.as_deref());
    }
    let auth = Arc::new(auth);
    let public = |a: SocketAddr| !a.ip().is_loopback();
    if node && !auth.has_cluster_secret() {
        if public(s.node.grpc_addr) && !s.node.allow_insecure_public {
            return Err(format!(
                "refusing to listen on {} without a cluster secret: set --cluster-secret (the \
                 same on gateways and nodes) or pass --allow-insecure-public",
                s.node.grpc_addr
            ));
        }
        tracing::warn!(
            "no cluster secret: this node refuses x-strata-tenant, so gateways with auth on \
             cannot use it; set --cluster-secret on gateways and nodes"
        );
    }
    if !auth.is_enabled() && !auth.has_cluster_secret() {
        let any_public = public(s.node.grpc_addr)
            || public(s.node.http_addr)
            || s.node.otlp_grpc_addr.is_some_and(public);
        if any_public && !s.node.allow_insecure_public {
            return Err(format!(
                "refusing to listen on {} / {} without auth: configure tokens (--auth-tokens-file) \
                 or pass --allow-insecure-public",
                s.node.grpc_addr, s.node.http_addr
            ));
        }
        tracing::warn!("auth is off: every caller is the default tenant with all scopes");
    }
    Ok(auth)
}

/// Reads and checks the gRPC port's TLS files before anything else starts, so a bad file
/// fails in a moment with one line.
fn check_tls(s: &Settings) -> Result<(), String> {
    s.gateway
        .server
        .tls()
        .map(|_| ())
        .map_err(|e| format!("invalid TLS settings: {e}"))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} for {what}: {e}; pick another address with --{what}-addr")
    })
}

/// Serve Flight (gRPC) and HTTP until shutdown.
async fn run_servers(
    s: &Settings,
    query: Arc<dyn QueryBackend>,
    ingest: Arc<dyn IngestBackend>,
    mut http_state: HttpState,
    auth: Arc<Authenticator>,
    registry: &prometheus::Registry,
    shutdown: Shutdown,
) -> Result<(), String> {
    let server = GatewayServer::builder(query, ingest)
        .with_config(s.gateway.clone())
        .with_registry(registry)
        .with_authenticator(auth)
        .build()
        .map_err(|e| e.to_string())?;
    let scheme = server.scheme();
    http_state.quotas = Some(server.quotas());
    if http_state.ingest.is_some() {
        http_state.otlp = server.otlp();
    }
    // SQL and tails over HTTP (and the console) where clients send queries; compute and
    // ingest nodes answer only the cluster.
    if matches!(http_state.role, "serve" | "gateway") {
        http_state.web = Some(server.web());
    }
    let grpc = bind(s.node.grpc_addr, "grpc").await?;
    let http_l = bind(s.node.http_addr, "http").await?;
    // The bound addresses (port 0 in the settings picks a free port).
    let grpc_addr = grpc.local_addr().unwrap_or(s.node.grpc_addr);
    let http_addr = http_l.local_addr().unwrap_or(s.node.http_addr);
    let ready = Arc::clone(&http_state.ready);
    // OTLP exporters dial 4317 by convention: a port serving only the logs service.
    let otlp_task = match (s.node.otlp_grpc_addr, server.otlp()) {
        (Some(addr), Some(otlp)) => {
            let l = bind(addr, "otlp-grpc").await?;
            let bound = l.local_addr().unwrap_or(addr);
            tracing::info!(addr = %bound, "serving OTLP logs (gRPC)");
            let config = s.gateway.server.clone();
            let stop = shutdown.clone().wait();
            Some(tokio::spawn(async move {
                GatewayServer::serve_otlp_with_listener(otlp, &config, l, stop).await
            }))
        }
        (Some(_), None) => {
            return Err("--otlp-grpc-addr needs OTLP on (gateway.otlp.enabled = true)".into());
        }
        _ => None,
    };
    let http_task = http::serve(http_l, http_state, shutdown.clone().wait());
    let grpc_task = server.serve_with_listener(grpc, shutdown.clone().wait());
    ready.store(true, Ordering::Release);
    // Printed for scripts and tests that wait for readiness; the scheme says whether the
    // gRPC port speaks TLS (`grpc+tls://`) or plaintext (`grpc://`).
    println!("strata ready: grpc={scheme}://{grpc_addr} http=http://{http_addr}");
    let (g, h) = tokio::join!(grpc_task, http_task);
    ready.store(false, Ordering::Release);
    if let Some(t) = otlp_task {
        match t.await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(e) => return Err(format!("the OTLP gRPC port failed: {e}")),
        }
    }
    g.map_err(|e| e.to_string())?;
    h.map_err(|e| e.to_string())?;
    Ok(())
}

/// `query` behind the result cache for repeated queries, unless `[gateway_cache]` turns it
/// off. Versions come from `tenants`' catalogs (manifests and WAL listings).
fn with_result_cache(
    s: &Settings,
    query: Arc<dyn QueryBackend>,
    tenants: &Arc<Tenants>,
    registry: &prometheus::Registry,
) -> Result<Arc<dyn QueryBackend>, String> {
    if !s.gateway_cache.enabled {
        return Ok(query);
    }
    // Compute engines reuse a manifest for `manifest_ttl`; wait twice that after a new
    // version appears before caching results over it.
    let settle = s.query_config().manifest_ttl.saturating_mul(2);
    let versions = Arc::new(CatalogVersions::new(
        Arc::clone(tenants),
        settle,
        s.query_config().manifest_ttl,
    ));
    let metrics = ResultCacheMetrics::new(registry).map_err(|e| e.message)?;
    Ok(Arc::new(CachingQueryBackend::new(
        query,
        versions,
        s.gateway_cache.config(),
        metrics,
    )))
}

fn http_state(
    role: &'static str,
    s: &Settings,
    registry: &prometheus::Registry,
    auth: &Arc<Authenticator>,
    ingest: Option<Arc<dyn IngestBackend>>,
    tenants: Option<Arc<Tenants>>,
) -> HttpState {
    HttpState {
        registry: registry.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        auth: Arc::clone(auth),
        ingest,
        tenants,
        max_body_bytes: s.gateway.flight.max_ingest_bytes,
        role,
        cluster: None,
        quotas: None,
        otlp: None,
        web: None,
        console: s.node.console,
        shard_owner: None,
        allow_public_hosts: s.node.allow_insecure_public,
        connections: crate::http::ConnectionLimits {
            max_connections: s.node.http_max_connections,
            idle_timeout: Duration::from_secs(s.node.http_idle_timeout_secs),
        },
    }
}

/// Every role in one process.
pub async fn serve(s: Settings) -> Result<(), String> {
    check_tls(&s)?;
    let shutdown = Shutdown::on_signals();
    let registry = prometheus::Registry::new();
    let auth = authenticator(&s, false)?;
    let opened = crate::storage::open(&s, &registry).await?;
    tracing::info!(store = %opened.url, "object store ready");
    let shared = QueryShared::open(&s, Arc::clone(&opened.store), &registry).await?;
    let tenants = Arc::new(
        Tenants::new(Arc::clone(&opened.store))
            .with_ingest(s.ingest_config(), &registry)?
            .with_query(shared.cached_store(), shared.clone()),
    );
    recover_all(&tenants).await?;
    let ingest: Arc<dyn IngestBackend> = Arc::new(LocalIngest {
        tenants: Arc::clone(&tenants),
        tail_poll: Duration::from_millis(100),
    });
    let query: Arc<dyn QueryBackend> = Arc::new(LocalQuery {
        tenants: Arc::clone(&tenants),
    });
    let query = with_result_cache(&s, query, &tenants, &registry)?;
    let compactor = crate::lifecycle::spawn_background(Arc::clone(&tenants), &s, &registry)?;
    let state = http_state(
        "serve",
        &s,
        &registry,
        &auth,
        Some(Arc::clone(&ingest)),
        Some(Arc::clone(&tenants)),
    );
    let r = run_servers(&s, query, ingest, state, auth, &registry, shutdown).await;
    drop(compactor);
    flush_all(&tenants).await;
    shared.close().await;
    r
}

async fn recover_all(tenants: &Tenants) -> Result<(), String> {
    for t in tenants.known().await.map_err(|e| e.message)? {
        let tenant = tenants.get(t.as_deref()).await.map_err(|e| e.message)?;
        if let Some(node) = &tenant.ingest {
            node.recover()
                .await
                .map_err(|e| format!("WAL recovery failed: {e}"))?;
        }
    }
    Ok(())
}

async fn flush_all(tenants: &Tenants) {
    for t in tenants.opened().await {
        if let Some(node) = &t.ingest
            && let Err(e) = node.shutdown().await
        {
            tracing::error!(tenant = ?t.name, error = %e, "flush at shutdown failed; the WAL keeps the rows");
        }
    }
}

/// A gateway: Flight SQL in front of remote compute and ingest nodes.
pub async fn gateway(mut s: Settings) -> Result<(), String> {
    check_tls(&s)?;
    let shutdown = Shutdown::on_signals();
    let registry = prometheus::Registry::new();
    let auth = authenticator(&s, false)?;
    if s.cluster.compute_nodes.is_empty() || s.cluster.ingest_nodes.is_empty() {
        return Err(
            "a gateway needs --compute-nodes and --ingest-nodes (comma-separated host:port)".into(),
        );
    }
    let parse = |v: &[String]| -> Result<Vec<NodeSpec>, String> {
        v.iter()
            .map(|n| {
                n.parse::<NodeSpec>()
                    .map_err(|e| format!("bad node address `{n}`: {}", e.message))
            })
            .collect()
    };
    s.remote.cluster_secret = s
        .cluster
        .secret
        .clone()
        .filter(|v| !v.is_empty())
        .map(strata_gateway::auth::Secret);
    if s.remote.cluster_secret.is_none() && auth.is_enabled() {
        tracing::warn!(
            "no cluster secret: nodes will refuse the tenants this gateway names; set \
             --cluster-secret on the gateway and its nodes"
        );
    }
    let compute = parse(&s.cluster.compute_nodes)?;
    let ingest_nodes = parse(&s.cluster.ingest_nodes)?;
    // The gateway reads manifests (table layouts for routing) but writes nothing.
    let opened = crate::storage::open(&s, &registry).await?;
    let tenants = Arc::new(Tenants::new(Arc::clone(&opened.store)));
    let metrics = RemoteMetrics::new(&registry).map_err(|e| e.message)?;
    let remote_query =
        Arc::new(RemoteQueryBackend::new(&compute, &s.remote, &metrics).map_err(|e| e.message)?);
    let query: Arc<dyn QueryBackend> = Arc::clone(&remote_query) as _;
    let query = with_result_cache(&s, query, &tenants, &registry)?;
    let resolver = Arc::new(CatalogResolver {
        tenants: Arc::clone(&tenants),
    });
    let remote_ingest = Arc::new(
        RemoteIngestBackend::new(&ingest_nodes, &s.remote, resolver, &metrics)
            .map_err(|e| e.message)?,
    );
    let ingest: Arc<dyn IngestBackend> = Arc::clone(&remote_ingest) as _;
    let mut state = http_state(
        "gateway",
        &s,
        &registry,
        &auth,
        Some(Arc::clone(&ingest)),
        Some(tenants),
    );
    let router = Arc::clone(&remote_ingest);
    state.shard_owner = Some(Arc::new(move |shard| {
        let owner = router.owner_of(shard);
        router
            .status()
            .get(owner)
            .map(|n| n.node.clone())
            .unwrap_or_default()
    }));
    state.cluster = Some(Arc::new(move || {
        let st = ClusterStatus::collect(Some(&remote_query), Some(&remote_ingest));
        serde_json::to_value(&st).unwrap_or_default()
    }));
    run_servers(&s, query, ingest, state, auth, &registry, shutdown).await
}

/// A query node.
pub async fn compute(s: Settings) -> Result<(), String> {
    check_tls(&s)?;
    let shutdown = Shutdown::on_signals();
    let registry = prometheus::Registry::new();
    let auth = authenticator(&s, true)?;
    let opened = crate::storage::open(&s, &registry).await?;
    let shared = QueryShared::open(&s, Arc::clone(&opened.store), &registry).await?;
    let tenants = Arc::new(
        Tenants::new(Arc::clone(&opened.store)).with_query(shared.cached_store(), shared.clone()),
    );
    let query: Arc<dyn QueryBackend> = Arc::new(LocalQuery {
        tenants: Arc::clone(&tenants),
    });
    // Compute nodes accept no writes but serve log reads from the bucket.
    let ingest: Arc<dyn IngestBackend> = Arc::new(LocalIngest {
        tenants: Arc::clone(&tenants),
        tail_poll: Duration::from_millis(100),
    });
    let state = http_state(
        "compute",
        &s,
        &registry,
        &auth,
        None,
        Some(Arc::clone(&tenants)),
    );
    let r = run_servers(&s, query, ingest, state, auth, &registry, shutdown).await;
    shared.close().await;
    r
}

/// An ingest node: shard writers for the shards it owns.
pub async fn ingest(s: Settings) -> Result<(), String> {
    check_tls(&s)?;
    let shutdown = Shutdown::on_signals();
    let registry = prometheus::Registry::new();
    let auth = authenticator(&s, true)?;
    let opened = crate::storage::open(&s, &registry).await?;
    let tenants = Arc::new(
        Tenants::new(Arc::clone(&opened.store)).with_ingest(s.ingest_config(), &registry)?,
    );
    recover_all(&tenants).await?;
    let ingest: Arc<dyn IngestBackend> = Arc::new(LocalIngest {
        tenants: Arc::clone(&tenants),
        tail_poll: Duration::from_millis(100),
    });
    // SQL sent to an ingest node (DDL) is answered from the catalog only.
    let query: Arc<dyn QueryBackend> = Arc::new(LocalQuery {
        tenants: Arc::clone(&tenants),
    });
    let state = http_state(
        "ingest",
        &s,
        &registry,
        &auth,
        Some(Arc::clone(&ingest)),
        Some(Arc::clone(&tenants)),
    );
    let r = run_servers(&s, query, ingest, state, auth, &registry, shutdown).await;
    flush_all(&tenants).await;
    r
}

/// Compaction, retention and GC as a role.
pub async fn compact(s: Settings, once: bool) -> Result<(), String> {
    let registry = prometheus::Registry::new();
    let opened = crate::storage::open(&s, &registry).await?;
    let tenants = Arc::new(Tenants::new(Arc::clone(&opened.store)));
    if once {
        let report = crate::lifecycle::run_pass(
            &tenants,
            &crate::lifecycle::LifecycleOptions::from_settings(&s),
            None,
        )
        .await?;
        println!("{report}");
        return Ok(());
    }
    let shutdown = Shutdown::on_signals();
    let task = crate::lifecycle::spawn_background(Arc::clone(&tenants), &s, &registry)?;
    // Its HTTP port serves health and metrics only; it is a node of the cluster.
    let auth = authenticator(&s, true)?;
    let state = http_state("compact", &s, &registry, &auth, None, Some(tenants));
    let http_l = bind(s.node.http_addr, "http").await?;
    state.ready.store(true, Ordering::Release);
    http::serve(http_l, state, shutdown.wait())
        .await
        .map_err(|e| e.to_string())?;
    drop(task);
    Ok(())
}
