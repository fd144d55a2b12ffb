//! End-to-end tests: patterns composed into one service, run against real infrastructure.
//!
//! The tests live in `tests/`; this library is intentionally empty.
