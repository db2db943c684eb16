//! Retries with exponential backoff and full jitter, bounded by attempts and by the
//! request's deadline (a backoff that would end past the deadline is not slept).

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::config::RetryConfig;
use crate::backend::{BackendError, ErrorKind};

/// A failed attempt, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) error: BackendError,
    pub(crate) retry: bool,
}

impl AttemptError {
    /// Retry when the error kind is retryable (UNAVAILABLE, DEADLINE_EXCEEDED).
    pub(crate) fn new(error: BackendError) -> Self {
        let retry = error.is_retryable();
        Self { error, retry }
    }

    /// Never retry this one.
    pub(crate) fn fatal(error: BackendError) -> Self {
        Self {
            error,
            retry: false,
        }
    }
}

impl From<BackendError> for AttemptError {
    fn from(error: BackendError) -> Self {
        Self::new(error)
    }
}

#[derive(Debug)]
pub(crate) struct Retrier {
    config: RetryConfig,
    rng: Mutex<StdRng>,
}

impl Retrier {
    pub(crate) fn new(config: RetryConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            config,
            rng: Mutex::new(rng),
        }
    }

    /// The sleep before retry number `retry` (1 = the first retry): uniform in
    /// `[0, min(max_backoff, initial_backoff * 2^(retry-1))]` ("full jitter").
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .config
            .initial_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.config.max_backoff);
        if cap.is_zero() {
            return cap;
        }
        cap.mul_f64(self.rng.lock().random_range(0.0..=1.0))
    }

    /// Run `op(attempt)` (attempt counts from 1) until it succeeds, fails for good, runs out
    /// of attempts (`max_attempts`, or `max_attempts` = 1 when `idempotent` is false) or of
    /// time. `on_retry` is called before each retry. The last error is returned; if the
    /// deadline passes between attempts, a DEADLINE_EXCEEDED that says what failed.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        idempotent: bool,
        deadline: Option<Instant>,
        mut on_retry: impl FnMut(),
        mut op: F,
    ) -> Result<T, BackendError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let max_attempts = if idempotent {
            self.config.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let err = match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.retry || attempt >= max_attempts {
                return Err(err.error);
            }
            let mut sleep = self.backoff(attempt);
            // A node's hint wins when it asks for more patience than the backoff.
            if let Some(hint) = err.error.retry_after {
                sleep = sleep.max(hint.min(self.config.max_backoff));
            }
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline || now + sleep >= deadline {
                    return Err(out_of_time(err.error, attempt));
                }
            }
            on_retry();
            tracing::debug!(attempt, ?sleep, error = %err.error, "retrying");
            tokio::time::sleep(sleep).await;
            attempt += 1;
        }
    }
}

/// The deadline leaves no room for another attempt: keep what failed in the message.
fn out_of_time(err: BackendError, attempts: u32) -> BackendError {
    if err.kind == ErrorKind::DeadlineExceeded {
        return err;
    }
    let mut e = BackendError::new(
        err.kind,
        format!(
            "{} (after {attempts} attempt{}; the request's deadline leaves no time to retry)",
            err.message,
            if attempts == 1 { "" } else { "s" }
        ),
    );
    e.retry_after = err.retry_after;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrier(seed: u64) -> Retrier {
        Retrier::new(RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            seed: Some(seed),
        })
    }

    #[test]
    fn backoff_is_capped_jittered_and_seeded() {
        let a = retrier(1);
        let b = retrier(1);
        for retry in 1..10 {
            let cap = Duration::from_millis((10u64 << (retry - 1)).min(40));
            let d = a.backoff(retry);
            assert!(d <= cap, "retry {retry}: {d:?} > {cap:?}");
            assert_eq!(d, b.backoff(retry));
        }
        let spread: Vec<Duration> = (0..20).map(|_| a.backoff(3)).collect();
        assert!(
            spread.iter().any(|d| *d != spread[0]),
            "no jitter: {spread:?}"
        );
    }

    #[tokio::test]
    async fn stops_on_fatal_errors_attempt_limit_and_non_idempotent_calls() {
        let r = retrier(2);
        let unavailable = || BackendError::new(ErrorKind::Unavailable, "down");
        let mut calls = 0;
        let res: Result<(), _> = r
            .run(
                true,
                None,
                || {},
                |_| {
                    calls += 1;
                    async { Err(AttemptError::new(unavailable())) }
                },
            )
            .await;
        assert_eq!(res.map_err(|e| e.kind), Err(ErrorKind::Unavailable));
        assert_eq!(calls, 4);

        let mut calls = 0;
        let _ = r
            .run::<(), _, _>(
                true,
                None,
                || {},
                |_| {
                    calls += 1;
                    async {
                        Err(AttemptError::new(BackendError::new(
                            ErrorKind::InvalidArgument,
                            "bad",
                        )))
                    }
                },
            )
            .await;
        assert_eq!(calls, 1);

        let mut calls = 0;
        let _ = r
            .run::<(), _, _>(
                false,
                None,
                || {},
                |_| {
                    calls += 1;
                    async { Err(AttemptError::new(unavailable())) }
                },
            )
            .await;
        assert_eq!(calls, 1);

        let mut retries = 0;
        let res = r
            .run(
                true,
                None,
                || retries += 1,
                |attempt| async move {
                    if attempt < 3 {
                        Err(AttemptError::new(unavailable()))
                    } else {
                        Ok(attempt)
                    }
                },
            )
            .await;
        assert_eq!(res.ok(), Some(3));
        assert_eq!(retries, 2);
    }

    #[tokio::test]
    async fn never_sleeps_past_the_deadline() {
        let r = Retrier::new(RetryConfig {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_millis(30),
            seed: Some(3),
        });
        let start = Instant::now();
        let deadline = start + Duration::from_millis(100);
        let res: Result<(), _> = r
            .run(
                true,
                Some(deadline),
                || {},
                |_| async {
                    Err(AttemptError::new(BackendError::new(
                        ErrorKind::Unavailable,
                        "down",
                    )))
                },
            )
            .await;
        let elapsed = start.elapsed();
        assert!(elapsed <= Duration::from_millis(100), "{elapsed:?}");
        let err = res.err().map(|e| e.message).unwrap_or_default();
        assert!(err.contains("deadline leaves no time"), "{err}");
    }
}
