//! An in-memory engine for tests.
