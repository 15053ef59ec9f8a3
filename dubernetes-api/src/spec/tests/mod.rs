//! Tests of the spec module, beside the file each part tests.

use super::*;

mod parse;
mod spec;
mod validate;

pub(super) fn parse_one(yaml: &str) -> Result<PodSpec, SpecError> {
    let mut specs = parse_specs(yaml)?;
    assert_eq!(specs.len(), 1);
    Ok(specs.remove(0))
}

pub(super) fn invalid_fields(yaml: &str) -> Vec<String> {
    match parse_specs(yaml) {
        Err(SpecError::Invalid { source, .. }) => source.problems.into_iter().map(|p| p.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}
