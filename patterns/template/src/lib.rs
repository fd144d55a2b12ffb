//! The template pattern: retry delays with capped exponential backoff and full jitter.
//!
//! This crate is deliberately small. It exists so that every part of a pattern crate (crate docs,
//! one concept per file, typed configuration errors, tests, a demo, a benchmark, and the workshop
//! mechanism) can be seen in one sitting, and copied to start a new pattern.
//!
//! # Problem
//! A client that retries a failed call immediately, or on a fixed interval, turns one server's
//! hiccup into a synchronised stampede: every client retries at the same moments.
//!
//! # Guarantees
//! - The n-th delay is drawn uniformly from `[0, min(cap, base * 2^n)]` ("full jitter"), so
//!   retries of many clients spread out instead of arriving together.
//! - No delay ever exceeds `cap`, and no arithmetic overflows for any attempt number.
//! - Invalid configuration (zero base, cap below base) is rejected at construction.
//!
//! # Not guaranteed
//! - That a retry will succeed, or that the call is safe to retry: only idempotent operations
//!   should be retried (see the idempotent-consumer pattern).
//!
//! # Layout
//! - `src/backoff.rs`: the schedule, [`Backoff`] (the workshop copy is `exercises/src/backoff.rs`).
//! - `src/error.rs`: [`BackoffError`], shared by both copies.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use template::Backoff;
//!
//! let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5))?;
//! assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
//! assert!(backoff.delay(3, &mut rand::rng()) <= Duration::from_millis(800));
//! # Ok::<(), template::BackoffError>(())
//! ```

// The workshop: with `--features exercise` the learner's copy replaces the reference module and
// the same tests run against it (`make exercise NAME=template STEP=1`).
#[cfg(not(feature = "exercise"))]
mod backoff;
#[cfg(feature = "exercise")]
#[path = "../exercises/src/backoff.rs"]
mod backoff;

mod error;

pub use backoff::Backoff;
pub use error::BackoffError;
