//! The controller against the fake engine.
