//! Per-tenant rate limits: token buckets for requests per second and ingest bytes per second.
//!
//! Both are off by default. A request over the limit fails with RESOURCE_EXHAUSTED, a
//! message that says when to retry, and the `retry-after-ms` metadata value. A single write
//! larger than the burst is admitted when the bucket is full and leaves it in debt, so the
//! long-run rate holds without making large writes impossible.
//!
//! Time is passed in (`now: Instant`) so tests are deterministic. At most
//! [`QuotaConfig::max_tenants`] tenants are tracked: idle tenants whose buckets have
//! refilled are forgotten first (which loses nothing), then the least recently seen.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, ErrorKind};
use crate::status::retry_after_ms;

/// A token-bucket rate: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate (requests or bytes per second). Must be > 0.
    pub per_second: f64,
    /// Bucket size: how much may be spent at once after an idle period. Must be > 0.
    pub burst: f64,
}

/// Quota settings. Default: no limits, 10,000 tenants tracked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Requests per second per tenant (every gRPC call counts one). Default: unlimited.
    pub requests: Option<RateLimit>,
    /// Ingest bytes per second per tenant (decoded Arrow bytes of `DoPut`). Default: unlimited.
    pub ingest_bytes: Option<RateLimit>,
    /// Most tenants tracked at once. Default: 10,000.
    pub max_tenants: usize,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            requests: None,
            ingest_bytes: None,
            max_tenants: 10_000,
        }
    }
}

/// An invalid quota setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid quota config: {0}")]
pub struct QuotaConfigError(String);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limit: &RateLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            updated: now,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.updated = now.max(self.updated);
    }

    /// Takes `amount`, or says how long until it could be taken.
    fn take(&mut self, limit: &RateLimit, amount: f64, now: Instant) -> Result<(), Duration> {
        self.refill(limit, now);
        let needed = amount.min(limit.burst);
        if self.tokens >= needed {
            self.tokens -= amount;
            return Ok(());
        }
        let wait = (needed - self.tokens) / limit.per_second;
        Err(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)))
    }

    fn is_full_at(&self, limit: &RateLimit, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(limit, now);
        probe.tokens >= limit.burst
    }
}

struct TenantState {
    requests: Option<Bucket>,
    bytes: Option<Bucket>,
    last_seen: Instant,
}

/// Per-tenant token buckets.
pub struct Quotas {
    config: QuotaConfig,
    tenants: Mutex<HashMap<Option<String>, TenantState>>,
    metrics: Option<TenantMetrics>,
}

/// `strata_tenant_requests_total{tenant}` and `strata_tenant_ingest_bytes_total{tenant}`:
/// every call admitted (or refused for its rate), and ingest bytes accepted, per tenant
/// (`default` without auth). Tenants come from the tokens file, so the label set is bounded.
#[derive(Debug, Clone)]
struct TenantMetrics {
    requests: prometheus::IntCounterVec,
    ingest_bytes: prometheus::IntCounterVec,
}

fn tenant_label(tenant: Option<&str>) -> &str {
    tenant.unwrap_or("default")
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("config", &self.config)
            .field("tenants", &self.tenants.lock().len())
            .finish()
    }
}

impl Quotas {
    /// Validates the config (rates and bursts positive and finite, `max_tenants` ≥ 1).
    pub fn new(config: QuotaConfig) -> Result<Self, QuotaConfigError> {
        for (name, limit) in [
            ("requests", &config.requests),
            ("ingest_bytes", &config.ingest_bytes),
        ] {
            if let Some(l) = limit {
                let ok = |v: f64| v.is_finite() && v > 0.0;
                if !ok(l.per_second) || !ok(l.burst) {
                    return Err(QuotaConfigError(format!(
                        "{name}: per_second and burst must be positive numbers"
                    )));
                }
            }
        }
        if config.max_tenants == 0 {
            return Err(QuotaConfigError("max_tenants must be at least 1".into()));
        }
        Ok(Self {
            config,
            tenants: Mutex::new(HashMap::new()),
            metrics: None,
        })
    }

    /// Counts requests and ingest bytes per tenant in `registry`.
    pub fn with_metrics(mut self, registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "strata_tenant_requests_total",
                "Calls per tenant (Flight SQL, ingest, OTLP, HTTP ingest), counted at admission.",
            ),
            &["tenant"],
        )?;
        let ingest_bytes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "strata_tenant_ingest_bytes_total",
                "Ingest bytes accepted per tenant (Arrow IPC, OTLP or JSON as received).",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(ingest_bytes.clone()))?;
        self.metrics = Some(TenantMetrics {
            requests,
            ingest_bytes,
        });
        Ok(self)
    }

    /// No limits.
    pub fn unlimited() -> Self {
        Self {
            config: QuotaConfig::default(),
            tenants: Mutex::new(HashMap::new()),
            metrics: None,
        }
    }

    /// True when any limit is configured.
    pub fn is_enabled(&self) -> bool {
        self.config.requests.is_some() || self.config.ingest_bytes.is_some()
    }

    /// Counts one request for `tenant`; RESOURCE_EXHAUSTED when over the request rate.
    pub fn check_request(&self, tenant: Option<&str>, now: Instant) -> Result<(), BackendError> {
        if let Some(m) = &self.metrics {
            m.requests.with_label_values(&[tenant_label(tenant)]).inc();
        }
        let Some(limit) = self.config.requests else {
            return Ok(());
        };
        self.with_tenant(tenant, now, |state| {
            let bucket = state
                .requests
                .get_or_insert_with(|| Bucket::full(&limit, now));
            bucket.take(&limit, 1.0, now)
        })
        .map_err(|wait| exhausted(tenant, "request rate", &limit, "requests", wait))
    }

    /// Counts `bytes` of ingest for `tenant`; RESOURCE_EXHAUSTED when over the byte rate.
    pub fn check_ingest_bytes(
        &self,
        tenant: Option<&str>,
        bytes: u64,
        now: Instant,
    ) -> Result<(), BackendError> {
        let count = || {
            if let Some(m) = &self.metrics {
                m.ingest_bytes
                    .with_label_values(&[tenant_label(tenant)])
                    .inc_by(bytes);
            }
        };
        let Some(limit) = self.config.ingest_bytes else {
            count();
            return Ok(());
        };
        self.with_tenant(tenant, now, |state| {
            let bucket = state.bytes.get_or_insert_with(|| Bucket::full(&limit, now));
            bucket.take(&limit, bytes as f64, now)
        })
        .map_err(|wait| exhausted(tenant, "ingest byte rate", &limit, "bytes", wait))?;
        count();
        Ok(())
    }

    /// How many tenants are tracked (for tests and metrics).
    pub fn tracked_tenants(&self) -> usize {
        self.tenants.lock().len()
    }

    fn with_tenant<T>(
        &self,
        tenant: Option<&str>,
        now: Instant,
        f: impl FnOnce(&mut TenantState) -> T,
    ) -> T {
        let mut tenants = self.tenants.lock();
        let key = tenant.map(str::to_string);
        if !tenants.contains_key(&key) && tenants.len() >= self.config.max_tenants {
            self.evict(&mut tenants, now);
        }
        let state = tenants.entry(key).or_insert_with(|| TenantState {
            requests: None,
            bytes: None,
            last_seen: now,
        });
        state.last_seen = now.max(state.last_seen);
        f(state)
    }

    /// Makes room for one tenant: forget every tenant whose buckets are full again (no
    /// information lost); if none, forget the least recently seen.
    fn evict(&self, tenants: &mut HashMap<Option<String>, TenantState>, now: Instant) {
        let before = tenants.len();
        tenants.retain(|_, s| {
            let full = |b: &Option<Bucket>, l: &Option<RateLimit>| match (b, l) {
                (Some(b), Some(l)) => b.is_full_at(l, now),
                _ => true,
            };
            !(full(&s.requests, &self.config.requests) && full(&s.bytes, &self.config.ingest_bytes))
        });
        if tenants.len() < before {
            return;
        }
        let oldest = tenants
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            tenants.remove(&key);
        }
    }
}

fn exhausted(
    tenant: Option<&str>,
    what: &str,
    limit: &RateLimit,
    unit: &str,
    wait: Duration,
) -> BackendError {
    let tenant = tenant.unwrap_or("default");
    BackendError::new(
        ErrorKind::ResourceExhausted,
        format!(
            "tenant `{tenant}` is over its {what} quota ({} {unit}/s, burst {}); \
             retry after {} ms",
            limit.per_second,
            limit.burst,
            retry_after_ms(wait)
        ),
    )
    .with_retry_after(wait)
}

#[cfg(test)]
mod tests;
