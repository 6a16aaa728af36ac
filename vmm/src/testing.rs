//! Helpers for unit tests, from the test kit every test in the workspace shares.

pub use flexos_testkit::Rng;
