//! A per-node circuit breaker, driven by an explicit clock.
//!
//! Closed: requests pass; `failure_threshold` consecutive failures open it. Open: requests
//! are refused for `open_for` (plus jitter). Half-open: up to `half_open_max` trial requests
//! pass; a trial's success closes the breaker, its failure opens it again. Every method takes
//! `now`, so tests drive time by hand.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::config::BreakerConfig;

/// What a breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    /// The value of the `strata_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trials: u32 },
}

/// Permission to send one request; report its outcome with the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Sent while closed.
    Normal,
    /// One of the half-open trials: its outcome decides the state.
    Trial,
}

/// The circuit breaker of one node.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Inner,
    rng: StdRng,
}

impl CircuitBreaker {
    /// A closed breaker; `seed` drives the jitter of open periods.
    pub fn new(config: BreakerConfig, seed: u64) -> Self {
        Self {
            config,
            inner: Inner::Closed { failures: 0 },
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The state at `now` (an open breaker whose time is up reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether [`Self::try_acquire`] would succeed at `now`, without taking a permit.
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } => now >= until && self.config.half_open_max > 0,
            Inner::HalfOpen { trials } => trials < self.config.half_open_max,
        }
    }

    /// Time until an open breaker lets a trial through (zero when it would now).
    pub fn retry_after(&self, now: Instant) -> Duration {
        match self.inner {
            Inner::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Take a permit to send a request, or get how long to wait. Returns the state entered,
    /// if the call changed it (open → half-open).
    pub fn try_acquire(
        &mut self,
        now: Instant,
    ) -> (Result<Permit, Duration>, Option<BreakerState>) {
        let mut changed = None;
        if let Inner::Open { until } = self.inner
            && now >= until
        {
            self.inner = Inner::HalfOpen { trials: 0 };
            changed = Some(BreakerState::HalfOpen);
        }
        let permit = match &mut self.inner {
            Inner::Closed { .. } => Ok(Permit::Normal),
            Inner::Open { until } => Err(until.saturating_duration_since(now)),
            Inner::HalfOpen { trials } if *trials < self.config.half_open_max => {
                *trials += 1;
                Ok(Permit::Trial)
            }
            // All trial slots are taken: ask again about when one of them answers.
            Inner::HalfOpen { .. } => Err(Duration::from_millis(10)),
        };
        (permit, changed)
    }

    /// The request answered (any answer from a working node counts, an error for a bad
    /// query too). Returns the state entered, if any.
    pub fn on_success(&mut self, permit: Permit) -> Option<BreakerState> {
        match (&mut self.inner, permit) {
            (Inner::Closed { failures }, _) => {
                *failures = 0;
                None
            }
            (Inner::HalfOpen { .. }, Permit::Trial) => {
                self.inner = Inner::Closed { failures: 0 };
                Some(BreakerState::Closed)
            }
            // A request sent before the breaker opened: old news.
            _ => None,
        }
    }

    /// The node failed the request (unavailable, timed out). Returns the state entered, if any.
    pub fn on_failure(&mut self, permit: Permit, now: Instant) -> Option<BreakerState> {
        match (&mut self.inner, permit) {
            (Inner::Closed { failures }, _) => {
                *failures += 1;
                if *failures >= self.config.failure_threshold.max(1) {
                    self.open(now);
                    Some(BreakerState::Open)
                } else {
                    None
                }
            }
            (Inner::HalfOpen { .. }, Permit::Trial) => {
                self.open(now);
                Some(BreakerState::Open)
            }
            _ => None,
        }
    }

    /// The request was abandoned (cancelled by the caller) before an outcome: free its trial
    /// slot without judging the node.
    pub fn on_cancel(&mut self, permit: Permit) {
        if let (Inner::HalfOpen { trials }, Permit::Trial) = (&mut self.inner, permit) {
            *trials = trials.saturating_sub(1);
        }
    }

    /// Consecutive failures counted while closed.
    pub fn failures(&self) -> u32 {
        match self.inner {
            Inner::Closed { failures } => failures,
            _ => self.config.failure_threshold,
        }
    }

    fn open(&mut self, now: Instant) {
        let jitter = self.config.jitter.clamp(0.0, 10.0);
        let factor = if jitter > 0.0 {
            1.0 + self.rng.random_range(0.0..jitter)
        } else {
            1.0
        };
        self.inner = Inner::Open {
            until: now + self.config.open_for.mul_f64(factor),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: f64) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(5),
            jitter,
            half_open_max: 1,
        }
    }

    fn acquire(b: &mut CircuitBreaker, now: Instant) -> Option<Permit> {
        b.try_acquire(now).0.ok()
    }

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_and_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(0.0), 7);
        // A success in between resets the count.
        for _ in 0..2 {
            assert_eq!(b.on_failure(Permit::Normal, t0), None);
        }
        assert_eq!(b.on_success(Permit::Normal), None);
        assert_eq!(b.failures(), 0);
        assert_eq!(b.on_failure(Permit::Normal, t0), None);
        assert_eq!(b.on_failure(Permit::Normal, t0), None);
        assert_eq!(b.on_failure(Permit::Normal, t0), Some(BreakerState::Open));
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.would_allow(t0 + Duration::from_millis(4999)));
        assert_eq!(
            b.try_acquire(t0 + Duration::from_secs(1)).0,
            Err(Duration::from_secs(4))
        );

        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        let (permit, changed) = b.try_acquire(t1);
        assert_eq!(permit, Ok(Permit::Trial));
        assert_eq!(changed, Some(BreakerState::HalfOpen));
        // Only one trial at a time.
        assert!(acquire(&mut b, t1).is_none());
        assert!(!b.would_allow(t1));
        assert_eq!(b.on_success(Permit::Trial), Some(BreakerState::Closed));
        assert_eq!(b.state(t1), BreakerState::Closed);
        assert_eq!(acquire(&mut b, t1), Some(Permit::Normal));
    }

    #[test]
    fn a_failed_trial_reopens_and_a_cancelled_one_frees_its_slot() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(0.0), 7);
        for _ in 0..3 {
            b.on_failure(Permit::Normal, t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        let p = acquire(&mut b, t1);
        assert_eq!(p, Some(Permit::Trial));
        b.on_cancel(Permit::Trial);
        let p = acquire(&mut b, t1);
        assert_eq!(p, Some(Permit::Trial));
        // A late failure of a request sent while closed does not count against the trial.
        assert_eq!(b.on_failure(Permit::Normal, t1), None);
        assert_eq!(b.on_failure(Permit::Trial, t1), Some(BreakerState::Open));
        assert_eq!(
            b.state(t1 + Duration::from_millis(4999)),
            BreakerState::Open
        );
        assert_eq!(b.state(t1 + Duration::from_secs(5)), BreakerState::HalfOpen);
    }

    #[test]
    fn jitter_stretches_open_time_within_bounds_and_is_seeded() {
        let t0 = Instant::now();
        let open_until = |seed: u64| {
            let mut b = CircuitBreaker::new(config(0.2), seed);
            for _ in 0..3 {
                b.on_failure(Permit::Normal, t0);
            }
            b.retry_after(t0)
        };
        for seed in 0..50 {
            let d = open_until(seed);
            assert!(
                d >= Duration::from_secs(5) && d < Duration::from_secs(6),
                "{d:?}"
            );
            assert_eq!(d, open_until(seed));
        }
        assert_ne!(open_until(1), open_until(2));
    }
}
