//! Prepared statements: self-describing handles plus a bounded, expiring map of bound
//! parameters.
//!
//! A handle is JSON `{"id": …, "sql": …}`, so any gateway can run a prepared statement
//! without parameters, even after a restart or behind a load balancer. Bound parameters
//! live in this process only, keyed by id and owned by the tenant that bound them; entries
//! expire after being idle for the TTL, and the map holds at most `max_entries` entries and
//! `max_bytes` of SQL and parameters (least recently used go first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::limits::batch_bytes;
use crate::status::invalid_argument;

/// What a client holds for a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handle {
    pub(crate) id: String,
    pub(crate) sql: String,
}

impl Handle {
    pub(crate) fn new(sql: String) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            sql,
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        // Serializing two strings cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(bytes).map_err(|_| {
            invalid_argument(
                "unknown prepared statement handle: prepare the statement on this server again",
            )
        })
    }
}

struct Entry {
    tenant: Option<String>,
    sql: String,
    params: Option<RecordBatch>,
    last_used: Instant,
    bytes: usize,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

impl State {
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.bytes -= entry.bytes;
        Some(entry)
    }
}

/// The bounded map of prepared statements.
pub(crate) struct PreparedStatements {
    max_entries: usize,
    max_bytes: usize,
    ttl: Duration,
    state: Mutex<State>,
}

impl PreparedStatements {
    pub(crate) fn new(max_entries: usize, max_bytes: usize, ttl: Duration) -> Self {
        Self {
            max_entries: max_entries.max(1),
            max_bytes,
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    /// Registers a new statement and returns its handle.
    pub(crate) fn create(&self, tenant: Option<&str>, sql: String, now: Instant) -> Handle {
        let handle = Handle::new(sql);
        let entry = Entry {
            tenant: tenant.map(str::to_string),
            sql: handle.sql.clone(),
            params: None,
            last_used: now,
            bytes: handle.sql.len(),
        };
        self.insert(handle.id.clone(), entry, now);
        handle
    }

    /// Stores parameters for a handle (re-registering it if this process does not know it).
    pub(crate) fn bind(
        &self,
        handle: &Handle,
        tenant: Option<&str>,
        params: RecordBatch,
        now: Instant,
    ) -> Result<(), Status> {
        let bytes = handle.sql.len() + batch_bytes(&params);
        if bytes > self.max_bytes {
            return Err(invalid_argument(format!(
                "bound parameters take {bytes} bytes, more than the {} allowed for prepared \
                 statements",
                self.max_bytes
            )));
        }
        let entry = Entry {
            tenant: tenant.map(str::to_string),
            sql: handle.sql.clone(),
            params: Some(params),
            last_used: now,
            bytes,
        };
        let mut state = self.state.lock();
        if let Some(old) = state.entries.get(&handle.id)
            && old.tenant.as_deref() != tenant
        {
            // Someone else's id: do not overwrite, act as if unknown to them.
            return Err(invalid_argument(
                "unknown prepared statement handle: prepare the statement again",
            ));
        }
        state.remove(&handle.id);
        drop(state);
        self.insert(handle.id.clone(), entry, now);
        Ok(())
    }

    /// The parameters bound to a handle, if this process holds them for this tenant.
    pub(crate) fn params(
        &self,
        handle: &Handle,
        tenant: Option<&str>,
        now: Instant,
    ) -> Option<RecordBatch> {
        let mut state = self.state.lock();
        let expired = {
            let entry = state.entries.get_mut(&handle.id)?;
            if entry.tenant.as_deref() != tenant || entry.sql != handle.sql {
                return None;
            }
            if now.saturating_duration_since(entry.last_used) > self.ttl {
                true
            } else {
                entry.last_used = now;
                return entry.params.clone();
            }
        };
        if expired {
            state.remove(&handle.id);
        }
        None
    }

    /// Forgets a handle (only its owner can).
    pub(crate) fn close(&self, handle: &Handle, tenant: Option<&str>) {
        let mut state = self.state.lock();
        if state
            .entries
            .get(&handle.id)
            .is_some_and(|e| e.tenant.as_deref() == tenant)
        {
            state.remove(&handle.id);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    fn insert(&self, id: String, entry: Entry, now: Instant) {
        let mut state = self.state.lock();
        let over = |s: &State, extra: usize| {
            s.entries.len() >= self.max_entries || s.bytes + extra > self.max_bytes
        };
        if over(&state, entry.bytes) {
            let ttl = self.ttl;
            let expired: Vec<String> = state
                .entries
                .iter()
                .filter(|(_, e)| now.saturating_duration_since(e.last_used) > ttl)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                state.remove(&k);
            }
        }
        while over(&state, entry.bytes) {
            let lru = state
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match lru {
                Some(k) => {
                    state.remove(&k);
                }
                None => break,
            }
        }
        state.bytes += entry.bytes;
        state.entries.insert(id, entry);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;

    use super::*;

    fn params(v: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("$1", Arc::new(Int64Array::from(vec![v])) as _)])
            .expect("batch")
    }

    #[test]
    fn handles_round_trip_and_params_are_per_tenant() {
        let p = PreparedStatements::new(10, 1 << 20, Duration::from_secs(60));
        let t0 = Instant::now();
        let h = p.create(Some("a"), "SELECT $1".into(), t0);
        assert_eq!(Handle::decode(&h.encode()).expect("decodes"), h);
        assert!(p.params(&h, Some("a"), t0).is_none());
        p.bind(&h, Some("a"), params(7), t0).expect("bind");
        assert_eq!(p.params(&h, Some("a"), t0), Some(params(7)));
        assert!(p.params(&h, Some("b"), t0).is_none(), "other tenant");
        assert!(p.bind(&h, Some("b"), params(8), t0).is_err());
        p.close(&h, Some("b"));
        assert_eq!(p.len(), 1, "only the owner can close");
        p.close(&h, Some("a"));
        assert_eq!(p.len(), 0);
        assert!(Handle::decode(b"not json").is_err());
    }

    #[test]
    fn idle_entries_expire() {
        let p = PreparedStatements::new(10, 1 << 20, Duration::from_secs(60));
        let t0 = Instant::now();
        let h = p.create(None, "SELECT $1".into(), t0);
        p.bind(&h, None, params(1), t0).expect("bind");
        assert!(p.params(&h, None, t0 + Duration::from_secs(59)).is_some());
        // Used at 59 s: still alive at 118 s, gone after 60 idle seconds.
        assert!(p.params(&h, None, t0 + Duration::from_secs(118)).is_some());
        assert!(p.params(&h, None, t0 + Duration::from_secs(179)).is_none());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let p = PreparedStatements::new(2, 1 << 20, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = p.create(None, "SELECT 1".into(), t0);
        p.bind(&a, None, params(1), t0).expect("bind");
        let b = p.create(None, "SELECT 2".into(), t0 + Duration::from_millis(1));
        let c = p.create(None, "SELECT 3".into(), t0 + Duration::from_millis(2));
        assert_eq!(p.len(), 2);
        assert!(
            p.params(&a, None, t0).is_none(),
            "least recently used evicted"
        );
        p.bind(&b, None, params(2), t0).expect("b still known");
        p.bind(&c, None, params(3), t0).expect("c still known");

        let small = PreparedStatements::new(100, 16, Duration::from_secs(60));
        let h = small.create(None, "SELECT $1".into(), t0);
        let err = small.bind(&h, None, params(1), t0).expect_err("too big");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
