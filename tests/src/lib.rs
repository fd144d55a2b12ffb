//! End-to-end tests: patterns composed into one service, run against real infrastructure.
//!
//! The tests live in `tests/`:
//! - `order_pipeline.rs`: an orders service writes through the transactional outbox, a billing
//!   service consumes with the idempotent consumer, and a relay crash between Kafka's
//!   acknowledgement and the outbox commit still bills every event exactly once, in order.
//!
//! This library is intentionally empty.
