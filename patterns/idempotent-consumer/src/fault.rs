//! Injectable crash points for tests of the commit-ordering window.

/// Where a consumer built with a fault point stops, as if its process died there.
///
/// Only for tests: they prove that a crash on either side of the database commit leaves
/// Postgres and Kafka in a state from which a restarted consumer applies every event exactly
/// once.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the batch's effects and inbox rows were written, before `COMMIT`: Postgres rolls
    /// everything back, Kafka's committed offset does not move.
    BeforeDbCommit,
    /// After `COMMIT`, before the offset commit: Postgres holds the effects, Kafka will
    /// redeliver the messages, the inbox must absorb them.
    AfterDbCommit,
}
