//! The pod spec, its parsing and validation: pure, so they live in
//! `dubernetes-api`; this module keeps `crate::spec::…` paths working.

pub use dubernetes_api::spec::*;
