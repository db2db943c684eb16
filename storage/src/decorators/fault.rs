//! [`FaultStore`]: deterministic fault injection for tests.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{StoreOp, lock};

/// What a [`FaultStore`] injects.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Seed of the RNG behind every random decision: the same seed and the same sequence of
    /// requests give the same faults. Default: 0.
    pub seed: u64,
    /// Latency added before each affected request, uniform in `[min, max]`. Default: none.
    pub latency: Option<(Duration, Duration)>,
    /// Probability that an affected request fails with a `Generic` error before reaching
    /// the inner store. Default: 0.
    pub error_rate: f64,
    /// Probability that an affected put is applied by the inner store but the caller gets a
    /// `Generic` error, as after a crash or a lost response. Default: 0.
    pub fail_after_put_rate: f64,
    /// Probability that an affected put fails at once (`Generic` error) but reaches the
    /// inner store later anyway, after up to `delayed_put_max` — a request stuck in the
    /// network that lands after its caller gave up. It is applied with its own options, so
    /// a create-only put still loses to an object created meanwhile. Default: 0.
    pub delayed_put_rate: f64,
    /// Longest delay of a delayed put. Default: 100 ms.
    pub delayed_put_max: Duration,
    /// The operations affected by the random faults and by
    /// [`FaultStore::fail_next_requests`]. Default: all of [`StoreOp::ALL`].
    pub ops: Vec<StoreOp>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            latency: None,
            error_rate: 0.0,
            fail_after_put_rate: 0.0,
            delayed_put_rate: 0.0,
            delayed_put_max: Duration::from_millis(100),
            ops: StoreOp::ALL.to_vec(),
        }
    }
}

/// Faults injected so far by a [`FaultStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultCounts {
    /// Requests failed before reaching the inner store (random or `fail_next_requests`).
    pub errors: u64,
    /// Requests failed because the store was down.
    pub outages: u64,
    /// Puts applied by the inner store whose caller got an error.
    pub failed_after_upload: u64,
    /// Requests delayed by injected latency.
    pub delays: u64,
    /// Puts reported failed and applied later.
    pub delayed_puts: u64,
}

/// Injects faults in front of the inner store, reproducibly: every random decision comes
/// from one RNG seeded by [`FaultConfig::seed`], drawn in request order.
///
/// Faults are decided when a request is made (for a listing, when `list` is called; for a
/// `delete_stream`, per location), in this order: an outage ([`FaultStore::set_down`])
/// fails any request; an affected op then takes a queued failure
/// ([`FaultStore::fail_next_requests`]) or draws latency, an error, and for puts a lost
/// response. A put applied by the inner store reports an error if it drew a lost response
/// or a [`FaultStore::fail_next_puts_after_upload`] is queued. Injected errors are
/// `object_store::Error::Generic { store: "fault", .. }`, which retry treats as transient.
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<FaultState>,
}

impl FaultStore {
    /// Wraps `inner`, injecting the faults of `config`.
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            inner,
            state: Arc::new(FaultState {
                config,
                rng: Mutex::new(rng),
                down: AtomicBool::new(false),
                blackhole: AtomicBool::new(false),
                fail_next_requests: AtomicU64::new(0),
                fail_next_puts: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                outages: AtomicU64::new(0),
                failed_after_upload: AtomicU64::new(0),
                delays: AtomicU64::new(0),
                delayed_puts: AtomicU64::new(0),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FaultConfig {
        &self.state.config
    }

    /// While `down`, every request fails with an "injected outage" error.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// While on, every put reaches the inner store and is applied, but its caller gets an
    /// error, and every other request fails: an outage that loses responses (a network
    /// that cuts connections after forwarding), so writers cannot learn what they stored.
    pub fn set_blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::SeqCst);
    }

    /// The next `n` requests of affected ops fail before reaching the inner store.
    pub fn fail_next_requests(&self, n: u64) {
        self.state.fail_next_requests.store(n, Ordering::SeqCst);
    }

    /// The next `n` puts that the inner store applies report an error to the caller.
    pub fn fail_next_puts_after_upload(&self, n: u64) {
        self.state.fail_next_puts.store(n, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        let s = &self.state;
        FaultCounts {
            errors: s.errors.load(Ordering::SeqCst),
            outages: s.outages.load(Ordering::SeqCst),
            failed_after_upload: s.failed_after_upload.load(Ordering::SeqCst),
            delays: s.delays.load(Ordering::SeqCst),
            delayed_puts: s.delayed_puts.load(Ordering::SeqCst),
        }
    }

    /// A stream that first suffers the faults planned now for `op`.
    fn faulty_stream<T: Send + 'static>(
        &self,
        op: StoreOp,
        path: &str,
        inner: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        let plan = self.state.plan(op, path);
        let state = Arc::clone(&self.state);
        stream::once(async move {
            match plan.enter(&state).await {
                Ok(()) => inner,
                Err(e) => stream::iter([Err(e)]).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("config", &self.state.config)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FaultStore(seed={}, {})",
            self.state.config.seed, self.inner
        )
    }
}

struct FaultState {
    config: FaultConfig,
    rng: Mutex<StdRng>,
    down: AtomicBool,
    blackhole: AtomicBool,
    fail_next_requests: AtomicU64,
    fail_next_puts: AtomicU64,
    errors: AtomicU64,
    outages: AtomicU64,
    failed_after_upload: AtomicU64,
    delays: AtomicU64,
    delayed_puts: AtomicU64,
}

/// The faults decided for one request.
#[derive(Default)]
struct Plan {
    delay: Option<Duration>,
    error: Option<object_store::Error>,
    lose_put_response: bool,
    /// Report failure now, apply the put after this delay.
    delay_put: Option<Duration>,
}

impl FaultState {
    fn plan(&self, op: StoreOp, path: &str) -> Plan {
        if self.down.load(Ordering::SeqCst) || self.blackhole.load(Ordering::SeqCst) {
            self.outages.fetch_add(1, Ordering::SeqCst);
            return Plan {
                error: Some(fault_error("injected outage", op, path)),
                ..Plan::default()
            };
        }
        if !self.config.ops.contains(&op) {
            return Plan::default();
        }
        if take_one(&self.fail_next_requests) {
            self.errors.fetch_add(1, Ordering::SeqCst);
            return Plan {
                error: Some(fault_error("injected error", op, path)),
                ..Plan::default()
            };
        }
        let mut rng = lock(&self.rng);
        let delay = self
            .config
            .latency
            .map(|(min, max)| draw_latency(&mut rng, min, max));
        let fail = self.config.error_rate > 0.0 && rng.random::<f64>() < self.config.error_rate;
        let lose_put_response = op == StoreOp::Put
            && !fail
            && self.config.fail_after_put_rate > 0.0
            && rng.random::<f64>() < self.config.fail_after_put_rate;
        let delay_put = (op == StoreOp::Put
            && !fail
            && !lose_put_response
            && self.config.delayed_put_rate > 0.0
            && rng.random::<f64>() < self.config.delayed_put_rate)
            .then(|| draw_latency(&mut rng, Duration::ZERO, self.config.delayed_put_max));
        drop(rng);
        let error = fail.then(|| {
            self.errors.fetch_add(1, Ordering::SeqCst);
            fault_error("injected error", op, path)
        });
        Plan {
            delay,
            error,
            lose_put_response,
            delay_put,
        }
    }

    /// Whether an applied put should report an error, consuming a queued failure if any.
    fn lose_put_response(&self, plan_says: bool) -> bool {
        let lose = plan_says || take_one(&self.fail_next_puts);
        if lose {
            self.failed_after_upload.fetch_add(1, Ordering::SeqCst);
        }
        lose
    }
}

impl Plan {
    /// Sleeps the planned latency, then fails if planned.
    async fn enter(self, state: &FaultState) -> object_store::Result<()> {
        if let Some(delay) = self.delay.filter(|d| !d.is_zero()) {
            state.delays.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
        }
        self.error.map_or(Ok(()), Err)
    }
}

fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn draw_latency(rng: &mut StdRng, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
    min + Duration::from_nanos(rng.random_range(0..=span))
}

fn fault_error(what: &str, op: StoreOp, path: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault",
        source: format!("{what}: {op} of '{path}'").into(),
    }
}

fn prefix_string(prefix: Option<&Path>) -> String {
    prefix.map(Path::to_string).unwrap_or_default()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.state.blackhole.load(Ordering::SeqCst) {
            self.state.outages.fetch_add(1, Ordering::SeqCst);
            let _ = self.inner.put_opts(location, payload, opts).await;
            return Err(fault_error(
                "injected outage after upload (the object may be stored)",
                StoreOp::Put,
                location.as_ref(),
            ));
        }
        let plan = self.state.plan(StoreOp::Put, location.as_ref());
        let lose_response = plan.lose_put_response;
        if let Some(after) = plan.delay_put {
            self.state.delayed_puts.fetch_add(1, Ordering::SeqCst);
            let (inner, location2) = (Arc::clone(&self.inner), location.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = inner.put_opts(&location2, payload, opts).await;
            });
            return Err(fault_error(
                "injected timeout (the put may still land)",
                StoreOp::Put,
                location.as_ref(),
            ));
        }
        plan.enter(&self.state).await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        if self.state.lose_put_response(lose_response) {
            return Err(fault_error(
                "injected failure after upload (the object was stored)",
                StoreOp::Put,
                location.as_ref(),
            ));
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let plan = self.state.plan(StoreOp::PutMultipart, location.as_ref());
        plan.enter(&self.state).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let plan = self
            .state
            .plan(StoreOp::of_get(&options), location.as_ref());
        plan.enter(&self.state).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let plan = self.state.plan(StoreOp::GetRange, location.as_ref());
        plan.enter(&self.state).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        locations
            .then(move |location| {
                let (inner, state) = (Arc::clone(&inner), Arc::clone(&state));
                async move {
                    let location = location?;
                    let plan = state.plan(StoreOp::Delete, location.as_ref());
                    plan.enter(&state).await?;
                    inner.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.list(prefix);
        self.faulty_stream(StoreOp::List, &prefix_string(prefix), inner)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.list_with_offset(prefix, offset);
        self.faulty_stream(StoreOp::List, &prefix_string(prefix), inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let plan = self.state.plan(StoreOp::List, &prefix_string(prefix));
        plan.enter(&self.state).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let plan = self.state.plan(StoreOp::Copy, &format!("{from} -> {to}"));
        plan.enter(&self.state).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let plan = self.state.plan(StoreOp::Rename, &format!("{from} -> {to}"));
        plan.enter(&self.state).await?;
        self.inner.rename_opts(from, to, options).await
    }
}
