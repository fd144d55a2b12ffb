//! Many keys in one process: a sharded map of per-key algorithm state, bounded and swept.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio_util::sync::CancellationToken;

use crate::algorithm::Algorithm;
use crate::{Clock, ConfigError, Decision, MonotonicClock};

/// Shards in the map. Far more than cores, so two cores working on different keys almost never
/// meet on one shard lock (with 64 shards and 2 busy keys, 1.6 % of key pairs share one).
const SHARDS: usize = 64;

/// When the map is full, sweep idle keys at most this often (µs), so a flood of new keys
/// against a map full of *active* keys costs one sweep per interval, not one per request.
const MIN_SWEEP_SPACING_US: u64 = 50_000;

/// A keyed in-process limiter: any [`Algorithm`], any hashable key, bounded memory.
///
/// State lives in a [`DashMap`] with 64 shards; a decision takes one shard's write lock for the
/// few nanoseconds of the algorithm step, so different keys on different cores do not
/// serialise. At most `max_keys` keys are tracked: idle keys (whose state equals a fresh key's)
/// are swept when the map is full and by [`run_sweeper`](Self::run_sweeper); if the map is still
/// full of active keys, a *new* key is denied (fail-closed) rather than admitted unmetered, and
/// counted in [`overflow_denials`](Self::overflow_denials). Clones share the state.
///
/// # Example
/// ```
/// use rate_limiter::{Gcra, KeyedLimiter, Quota};
/// # fn main() -> Result<(), rate_limiter::ConfigError> {
/// let limiter = KeyedLimiter::builder(Gcra::new(Quota::per_second(1)?)).max_keys(10_000).build()?;
/// assert!(limiter.check("alice").is_allowed());
/// assert!(!limiter.check("alice").is_allowed());
/// assert!(limiter.check("bob").is_allowed());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KeyedLimiter<K: Eq + Hash, A: Algorithm, C: Clock = MonotonicClock> {
    /// Shared state: clones of the limiter are one limiter.
    inner: Arc<Inner<K, A, C>>,
}

impl<K: Eq + Hash, A: Algorithm, C: Clock> Clone for KeyedLimiter<K, A, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<K: Eq + Hash, A: Algorithm, C: Clock> {
    /// The algorithm (and its quota).
    algorithm: A,
    /// Source of now.
    clock: C,
    /// Per-key state.
    states: DashMap<K, A::State>,
    /// Hard bound on tracked keys.
    max_keys: usize,
    /// Tracked keys; kept separately because `DashMap::len` locks every shard.
    len: AtomicUsize,
    /// Clock time of the last sweep, µs.
    last_sweep: AtomicU64,
    /// New keys denied because the map was full of active keys.
    overflow: AtomicU64,
}

/// Builds a [`KeyedLimiter`].
#[derive(Debug)]
pub struct KeyedLimiterBuilder<A, C> {
    /// The algorithm to run per key.
    algorithm: A,
    /// The clock to read.
    clock: C,
    /// Bound on tracked keys.
    max_keys: usize,
}

impl<A: Algorithm, C: Clock> KeyedLimiterBuilder<A, C> {
    /// At most `max_keys` keys are tracked (default 100 000).
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Reads time from `clock` instead of the monotonic clock (tests use a
    /// [`ManualClock`](crate::ManualClock)).
    #[must_use]
    pub fn clock<C2: Clock>(self, clock: C2) -> KeyedLimiterBuilder<A, C2> {
        KeyedLimiterBuilder {
            algorithm: self.algorithm,
            clock,
            max_keys: self.max_keys,
        }
    }

    /// The limiter.
    ///
    /// # Errors
    /// [`ConfigError::ZeroKeys`] when `max_keys` is zero.
    pub fn build<K: Eq + Hash>(self) -> Result<KeyedLimiter<K, A, C>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::ZeroKeys);
        }
        let inner = Inner {
            algorithm: self.algorithm,
            clock: self.clock,
            states: DashMap::with_capacity_and_shard_amount(0, SHARDS),
            max_keys: self.max_keys,
            len: AtomicUsize::new(0),
            last_sweep: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        };
        Ok(KeyedLimiter {
            inner: Arc::new(inner),
        })
    }
}

impl<A: Algorithm> KeyedLimiterBuilder<A, MonotonicClock> {
    /// Starts building a limiter running `algorithm` per key.
    #[must_use]
    pub fn new(algorithm: A) -> Self {
        Self {
            algorithm,
            clock: MonotonicClock::new(),
            max_keys: 100_000,
        }
    }
}

impl<A: Algorithm> KeyedLimiter<String, A, MonotonicClock> {
    /// Starts building a limiter running `algorithm` per key; the key type is chosen by
    /// [`build`](KeyedLimiterBuilder::build) (`String` unless annotated otherwise).
    #[must_use]
    pub fn builder(algorithm: A) -> KeyedLimiterBuilder<A, MonotonicClock> {
        KeyedLimiterBuilder::new(algorithm)
    }
}

impl<K, A, C> KeyedLimiter<K, A, C>
where
    K: Eq + Hash + Send + Sync + 'static,
    A: Algorithm,
    C: Clock,
{
    /// Decides one request for `key` now.
    pub fn check<Q>(&self, key: &Q) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = self.inner.clock.now_micros();
        if let Some(mut state) = self.inner.states.get_mut(key) {
            return self.inner.algorithm.check(&mut state, now);
        }
        self.check_new(key.to_owned(), now)
    }

    /// Slow path: the key is not tracked yet.
    fn check_new(&self, key: K, now: u64) -> Decision {
        let inner = &self.inner;
        if inner.len.load(Ordering::Relaxed) >= inner.max_keys {
            self.sweep_if_due(now);
            if inner.len.load(Ordering::Relaxed) >= inner.max_keys {
                inner.overflow.fetch_add(1, Ordering::Relaxed);
                let wait = inner.algorithm.quota().interval_micros();
                return Decision::denied(inner.algorithm.quota().limit(), wait, wait);
            }
        }
        match inner.states.entry(key) {
            // Another thread inserted it between our lookup and now.
            Entry::Occupied(mut e) => inner.algorithm.check(e.get_mut(), now),
            Entry::Vacant(v) => {
                let mut state = A::State::default();
                let decision = inner.algorithm.check(&mut state, now);
                v.insert(state);
                inner.len.fetch_add(1, Ordering::Relaxed);
                decision
            }
        }
    }

    fn sweep_if_due(&self, now: u64) {
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now < last.saturating_add(MIN_SWEEP_SPACING_US) && last != 0 {
            return;
        }
        // One thread sweeps; the others go on (and may deny the new key this time).
        if self
            .inner
            .last_sweep
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.sweep();
        }
    }

    /// Drops every idle key (state indistinguishable from a fresh key). Returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.inner.clock.now_micros();
        let mut removed = 0;
        self.inner.states.retain(|_, state| {
            let idle = self.inner.algorithm.is_idle(state, now);
            removed += usize::from(idle);
            !idle
        });
        self.inner.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Sweeps every `every` until `shutdown` is cancelled. Spawn it next to the server.
    pub async fn run_sweeper(self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let removed = self.sweep();
                    tracing::trace!(removed, "swept idle rate-limit keys");
                }
            }
        }
    }

    /// Keys currently tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// `true` when no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New keys denied because the map was full of active keys.
    #[must_use]
    pub fn overflow_denials(&self) -> u64 {
        self.inner.overflow.load(Ordering::Relaxed)
    }

    /// The algorithm (and so the quota) applied per key.
    #[must_use]
    pub fn algorithm(&self) -> &A {
        &self.inner.algorithm
    }
}
