//! A map whose values are reused for a time-to-live: the one mechanism behind the manifest
//! cache and the WAL listings. A value is aged from before it was read (so it is reused at
//! most `ttl` after it could have missed a change), and a value whose read started before an
//! invalidation is not kept (no put-after-invalidate).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// When a read started, and the map's generation then: hand it back to [`TtlMap::put`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket {
    at: Instant,
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct TtlMap<K, V> {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
    /// Bumped by every invalidation.
    generation: AtomicU64,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    /// Past `max_entries`, expired values are dropped (all, if none expired).
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The value of `key` if it is younger than the TTL.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock();
        let (at, v) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    /// The value of `key` whatever its age.
    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        self.entries.lock().get(key).map(|(_, v)| v.clone())
    }

    /// Take before reading a value to [`Self::put`].
    pub(crate) fn ticket(&self) -> ReadTicket {
        ReadTicket {
            at: Instant::now(),
            generation: self.generation.load(Ordering::SeqCst),
        }
    }

    /// Keep `value`, read since `ticket`, unless an invalidation happened meanwhile or
    /// `keep_old` says the value already held is to stay.
    pub(crate) fn put(&self, key: K, value: V, ticket: ReadTicket, keep_old: impl Fn(&V) -> bool) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock();
        if self.generation.load(Ordering::SeqCst) != ticket.generation {
            return;
        }
        if entries.get(&key).is_some_and(|(_, old)| keep_old(old)) {
            return;
        }
        if entries.len() >= self.max_entries {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (ticket.at, value));
    }

    /// Forget the values whose keys match `forget`.
    pub(crate) fn invalidate(&self, forget: impl Fn(&K) -> bool) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|k, _| !forget(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_live_for_the_ttl_and_reads_before_an_invalidation_are_dropped() {
        let m: TtlMap<&str, u32> = TtlMap::new(Duration::from_secs(60), 2);
        let t = m.ticket();
        m.put("a", 1, t, |_| false);
        assert_eq!(m.get(&"a"), Some(1));
        // A read that started before an invalidation is not kept.
        let stale = m.ticket();
        m.invalidate(|k| *k == "a");
        assert_eq!(m.get(&"a"), None);
        m.put("a", 2, stale, |_| false);
        assert_eq!(m.get(&"a"), None);
        // `keep_old` keeps the value held.
        m.put("a", 3, m.ticket(), |_| false);
        m.put("a", 1, m.ticket(), |old| *old > 1);
        assert_eq!(m.peek(&"a"), Some(3));
        // A zero TTL keeps nothing.
        let none: TtlMap<&str, u32> = TtlMap::new(Duration::ZERO, 2);
        none.put("a", 1, none.ticket(), |_| false);
        assert_eq!(none.peek(&"a"), None);
    }
}
