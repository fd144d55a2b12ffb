//! The Lua sources, one per algorithm, each prefixed with `lua/common.lua` — except GCRA, the
//! hot path, which is standalone and leaner (see `lua/gcra.lua`).

use redis::Script;

use crate::AlgorithmKind;

/// GCRA: one string key; its own argument layout and a one-integer reply.
const GCRA: &str = include_str!("lua/gcra.lua");
/// Token bucket: one hash.
const TOKEN_BUCKET: &str = concat!(
    include_str!("lua/common.lua"),
    include_str!("lua/token_bucket.lua")
);
/// Leaky bucket (meter): one hash.
const LEAKY_BUCKET: &str = concat!(
    include_str!("lua/common.lua"),
    include_str!("lua/leaky_bucket.lua")
);
/// Fixed window: one hash.
const FIXED_WINDOW: &str = concat!(
    include_str!("lua/common.lua"),
    include_str!("lua/fixed_window.lua")
);
/// Sliding log: a sorted set and a sequence counter.
const SLIDING_LOG: &str = concat!(
    include_str!("lua/common.lua"),
    include_str!("lua/sliding_log.lua")
);

#[cfg(not(feature = "exercise"))]
/// Sliding counter: one hash.
const SLIDING_COUNTER: &str = concat!(
    include_str!("lua/common.lua"),
    include_str!("lua/sliding_counter.lua")
);
#[cfg(feature = "exercise")]
/// Sliding counter: the learner's script from `exercises/src/sliding_counter.lua`.
const SLIDING_COUNTER: &str = concat!(
    include_str!("lua/common.lua"),
    include_str!("../../exercises/src/sliding_counter.lua")
);

/// The script for `kind` (its SHA1 is computed once here, so every call is an `EVALSHA`).
pub(crate) fn script(kind: AlgorithmKind) -> Script {
    Script::new(source(kind))
}

/// The Lua source for `kind`.
pub(crate) fn source(kind: AlgorithmKind) -> &'static str {
    match kind {
        AlgorithmKind::Gcra => GCRA,
        AlgorithmKind::TokenBucket => TOKEN_BUCKET,
        AlgorithmKind::LeakyBucket => LEAKY_BUCKET,
        AlgorithmKind::FixedWindow => FIXED_WINDOW,
        AlgorithmKind::SlidingLog => SLIDING_LOG,
        AlgorithmKind::SlidingCounter => SLIDING_COUNTER,
    }
}
