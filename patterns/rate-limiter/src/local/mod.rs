//! In-process limiters: one key lock-free, many keys sharded.

mod direct;
mod keyed;

pub use direct::GcraLimiter;
pub use keyed::{KeyedLimiter, KeyedLimiterBuilder};
